//! Building test frames and checking checksums from scratch.
//!
//! The builder computes every checksum over the whole header/pseudo-header,
//! independently of the incremental updates the XDP program makes, so a
//! byte-exact comparison with a built "expected" frame verifies them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Ethernet header length without VLAN tag.
pub const ETH_LEN: usize = 14;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
/// UDP header.
pub const UDP_LEN: usize = 8;

/// RFC 1071 Internet checksum of `data` (odd length padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// UDP checksum over the IPv4 pseudo-header and `udp` (header + payload,
/// checksum field as given). 0 is sent as 0xffff.
pub fn udp4_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(12 + udp.len());
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&[0, 17]);
    buf.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    buf.extend_from_slice(udp);
    match internet_checksum(&buf) {
        0 => 0xffff,
        c => c,
    }
}

/// UDP checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and `udp`
/// (header + payload, checksum field as given). 0 is sent as 0xffff.
pub fn udp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(40 + udp.len());
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&(udp.len() as u32).to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 17]);
    buf.extend_from_slice(udp);
    match internet_checksum(&buf) {
        0 => 0xffff,
        c => c,
    }
}

/// The partial UDP checksum Linux leaves for checksum offload
/// (CHECKSUM_PARTIAL, e.g. a sender on a veth with default offloads): the
/// folded sum of the IPv4 pseudo-header alone, not complemented
/// (`~csum_tcpudp_magic(saddr, daddr, len, IPPROTO_UDP, 0)`).
pub fn udp4_partial_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    !internet_checksum(&pseudo)
}

/// The IPv6 form of [`udp4_partial_checksum`] (`~csum_ipv6_magic(saddr,
/// daddr, len, IPPROTO_UDP, 0)`, as `udp6_set_csum` leaves it).
pub fn udp6_partial_checksum(src: Ipv6Addr, dst: Ipv6Addr, udp_len: u16) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    !internet_checksum(&pseudo)
}

/// An Ethernet/IP/UDP frame description; the family follows the addresses
/// (both of one family).
#[derive(Clone, Debug)]
pub struct UdpFrame {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// One 802.1Q tag (TCI), if any.
    pub vlan: Option<u16>,
    /// Source.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (IPv6: unused).
    pub ip_id: u16,
    /// IPv6 flow label (IPv4: unused).
    pub flow_label: u32,
    /// IPv6: an 8-byte destination options header before UDP.
    pub ext_header: bool,
    /// Send a zero ("none") UDP checksum.
    pub zero_udp_checksum: bool,
    /// Send the partial UDP checksum a same-host sender leaves for offload
    /// ([`udp4_partial_checksum`], [`udp6_partial_checksum`]) instead of a
    /// full one.
    pub partial_udp_checksum: bool,
    /// UDP payload.
    pub payload: Vec<u8>,
}

impl UdpFrame {
    /// A frame with sensible defaults and an RTP-sized payload.
    pub fn new(src: impl Into<SocketAddr>, dst: impl Into<SocketAddr>) -> Self {
        UdpFrame {
            dst_mac: [0x02, 0, 0, 0, 0, 0xfe],
            src_mac: [0x02, 0, 0, 0, 0, 0xfd],
            vlan: None,
            src: src.into(),
            dst: dst.into(),
            ttl: 61,
            ip_id: 0x1234,
            flow_label: 0,
            ext_header: false,
            zero_udp_checksum: false,
            partial_udp_checksum: false,
            payload: rtp_payload(172),
        }
    }

    /// Offset of the IP header.
    pub fn l3_offset(&self) -> usize {
        ETH_LEN + if self.vlan.is_some() { 4 } else { 0 }
    }

    /// The frame's bytes, all checksums computed from scratch.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        if let Some(tci) = self.vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
        }
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.build_v4(f, src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.build_v6(f, src, dst),
            _ => panic!("UdpFrame: source and destination of different families"),
        }
    }

    fn udp_header(&self, udp_len: u16) -> Vec<u8> {
        let mut u = Vec::with_capacity(usize::from(udp_len));
        u.extend_from_slice(&self.src.port().to_be_bytes());
        u.extend_from_slice(&self.dst.port().to_be_bytes());
        u.extend_from_slice(&udp_len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&self.payload);
        u
    }

    fn build_v6(&self, mut f: Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        f.extend_from_slice(&[0x86, 0xdd]);
        let udp_len = (UDP_LEN + self.payload.len()) as u16;
        let ext = if self.ext_header { 8 } else { 0 };
        // Version 6, traffic class 0xb8 (DSCP EF, as RTP is), flow label.
        let first = (6u32 << 28) | (0xb8 << 20) | (self.flow_label & 0xf_ffff);
        f.extend_from_slice(&first.to_be_bytes());
        f.extend_from_slice(&(udp_len + ext).to_be_bytes());
        f.extend_from_slice(&[if self.ext_header { 60 } else { 17 }, self.ttl]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        if self.ext_header {
            // Destination options: next header UDP, length 0, PadN of 4.
            f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        }
        let mut udp = self.udp_header(udp_len);
        if self.partial_udp_checksum {
            let c = udp6_partial_checksum(src, dst, udp_len);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        } else if !self.zero_udp_checksum {
            let c = udp6_checksum(src, dst, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
        f.extend_from_slice(&udp);
        f
    }

    fn build_v4(&self, mut f: Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        f.extend_from_slice(&[0x08, 0x00]);
        let udp_len = (UDP_LEN + self.payload.len()) as u16;
        let tot_len = IPV4_LEN as u16 + udp_len;
        let l3 = f.len();
        f.extend_from_slice(&[0x45, 0xb8]); // version/IHL, DSCP EF (as RTP is)
        f.extend_from_slice(&tot_len.to_be_bytes());
        f.extend_from_slice(&self.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0x00]); // DF, offset 0
        f.extend_from_slice(&[self.ttl, 17, 0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        let ip_csum = internet_checksum(&f[l3..l3 + IPV4_LEN]);
        f[l3 + 10..l3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
        let mut udp = self.udp_header(udp_len);
        if self.partial_udp_checksum {
            let c = udp4_partial_checksum(src, dst, udp_len);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        } else if !self.zero_udp_checksum {
            let c = udp4_checksum(src, dst, &udp);
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
        f.extend_from_slice(&udp);
        f
    }
}

/// A payload shaped like RTP (version 2, PT 0, seq 1, ts 160, SSRC) padded
/// to `len` bytes.
pub fn rtp_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
    p.extend((0..len.saturating_sub(12)).map(|i| (i % 251) as u8));
    p.truncate(len);
    p
}

/// An RTP packet with 160 bytes of payload (20 ms of G.711).
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, payload_type: u8) -> Vec<u8> {
    let mut p = vec![0xd5u8; 12 + 160];
    p[0] = 0x80;
    p[1] = payload_type;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// A G.711 RTP packet (PT 0, 20 ms): sequence `seq`, timestamp `seq * 160`,
/// SSRC `ssrc`.
pub fn g711_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    rtp_packet(seq, u32::from(seq).wrapping_mul(160), ssrc, 0)
}

/// Verifies the IPv4 header checksum of a frame whose IPv4 header starts at
/// `l3` by summing the header (a valid header sums to zero).
pub fn ipv4_checksum_ok(frame: &[u8], l3: usize) -> bool {
    internet_checksum(&frame[l3..l3 + IPV4_LEN]) == 0
}

/// Verifies the UDP checksum (recomputed over the pseudo-header); a zero
/// checksum means "none" and is accepted.
pub fn udp4_checksum_ok(frame: &[u8], l3: usize) -> bool {
    let ip = &frame[l3..];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp_len = usize::from(u16::from_be_bytes([ip[24], ip[25]]));
    let udp = &ip[IPV4_LEN..IPV4_LEN + udp_len];
    if udp[6..8] == [0, 0] {
        return true;
    }
    let mut zeroed = udp.to_vec();
    zeroed[6..8].copy_from_slice(&[0, 0]);
    udp4_checksum(src, dst, &zeroed).to_be_bytes() == [udp[6], udp[7]]
}

/// Verifies the UDP checksum of an IPv6 frame whose header starts at `l3`
/// (UDP right after it); zero is never valid in IPv6.
pub fn udp6_checksum_ok(frame: &[u8], l3: usize) -> bool {
    let ip = &frame[l3..];
    let octets = |at: usize| -> [u8; 16] { ip[at..at + 16].try_into().unwrap() };
    let (src, dst) = (Ipv6Addr::from(octets(8)), Ipv6Addr::from(octets(24)));
    let udp_len = usize::from(u16::from_be_bytes([ip[IPV6_LEN + 4], ip[IPV6_LEN + 5]]));
    let udp = &ip[IPV6_LEN..IPV6_LEN + udp_len];
    if udp[6..8] == [0, 0] {
        return false;
    }
    let mut zeroed = udp.to_vec();
    zeroed[6..8].copy_from_slice(&[0, 0]);
    udp6_checksum(src, dst, &zeroed).to_be_bytes() == [udp[6], udp[7]]
}

/// Verifies every checksum of an Ethernet (+ one VLAN tag) frame carrying
/// IPv4 or IPv6 and UDP; false for anything else.
pub fn checksums_ok(frame: &[u8]) -> bool {
    let tagged = frame[12..14] == [0x81, 0x00] || frame[12..14] == [0x88, 0xa8];
    let l3 = ETH_LEN + if tagged { 4 } else { 0 };
    match &frame[l3 - 2..l3] {
        [0x08, 0x00] => ipv4_checksum_ok(frame, l3) && udp4_checksum_ok(frame, l3),
        [0x86, 0xdd] => udp6_checksum_ok(frame, l3),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn built_frames_verify() {
        let f = UdpFrame::new(
            "10.0.0.1:5000".parse::<SocketAddr>().unwrap(),
            "10.0.0.2:6000".parse::<SocketAddr>().unwrap(),
        );
        let bytes = f.build();
        assert!(ipv4_checksum_ok(&bytes, 14));
        assert!(udp4_checksum_ok(&bytes, 14));
        let mut bad = bytes.clone();
        bad[14 + 28] ^= 0xff;
        assert!(!udp4_checksum_ok(&bad, 14));
    }

    /// The partial form matches what a real veth sender with default
    /// offloads put on the wire (captured with `tcpdump -vv -x` on the
    /// receiving peer: "bad udp cksum 0x14e7", "bad udp cksum 0x5cc5"),
    /// and a frame built with it fails verification.
    #[test]
    fn partial_checksums_match_linux() {
        let (a, b) = ("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap());
        assert_eq!(udp4_partial_checksum(a, b, 13), 0x14e7);
        let (a6, b6) = (
            "2001:db8:99::1".parse().unwrap(),
            "2001:db8:99::2".parse().unwrap(),
        );
        assert_eq!(udp6_partial_checksum(a6, b6, 13), 0x5cc5);
        for (src, dst) in [
            ("10.99.0.1:5000", "10.99.0.2:6000"),
            ("[2001:db8:99::1]:5000", "[2001:db8:99::2]:6000"),
        ] {
            let mut f = UdpFrame::new(
                src.parse::<SocketAddr>().unwrap(),
                dst.parse::<SocketAddr>().unwrap(),
            );
            f.payload = b"hello".to_vec();
            f.partial_udp_checksum = true;
            let bytes = f.build();
            assert!(
                !checksums_ok(&bytes),
                "{src}: a partial checksum is not a valid one"
            );
        }
    }

    #[test]
    fn built_v6_frames_verify() {
        let f = UdpFrame::new(
            "[2001:db8::2]:5000".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:6000".parse::<SocketAddr>().unwrap(),
        );
        let bytes = f.build();
        assert_eq!(bytes.len(), ETH_LEN + IPV6_LEN + UDP_LEN + f.payload.len());
        assert!(checksums_ok(&bytes));
        let mut bad = bytes.clone();
        bad[ETH_LEN + IPV6_LEN + 20] ^= 0xff;
        assert!(!checksums_ok(&bad));
        // RFC 8200 pseudo-header over a known datagram: the sum over the
        // pseudo-header and the datagram with its checksum is all ones.
        let l3 = ETH_LEN;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&bytes[l3 + 8..l3 + 40]);
        pseudo.extend_from_slice(&((UDP_LEN + f.payload.len()) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&bytes[l3 + IPV6_LEN..]);
        assert_eq!(internet_checksum(&pseudo), 0);
    }
}
