//! A host-side model of what the XDP relay program must do with a frame,
//! written from the documented behaviour (docs/fast-path.md, "Per packet"
//! and "What the stack would refuse"), not from the C: given the installed
//! streams, shields and neighbours, the outcome counter, the stream counter
//! that moves, and for a forwarded frame exactly the bytes that leave.
//!
//! Checksums of the output are computed from scratch here. A UDP checksum
//! that was wrong on the way in stays wrong by the same amount (the program
//! updates it incrementally, and the receiver drops it as the stack would
//! have); one that was partial (a same-host sender's) is completed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use relay_common::CounterId;

use crate::packet::{ETH_LEN, IPV4_LEN, IPV6_LEN, UDP_LEN};

/// TTL / hop limit of every forwarded packet (the relay originates the hop).
pub const RELAY_TTL: u8 = 64;
/// The longest UDP datagram whose partial checksum the program completes.
pub const CSUM_MAX_LEN: usize = 4607;

/// An interface of the relay: its name (for "same as ingress") and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Interface name.
    pub name: &'static str,
    /// Its MAC address.
    pub mac: [u8; 6],
}

/// A host the FIB resolves: its address, MAC and the interface it is on.
#[derive(Clone, Debug)]
pub struct Neighbour {
    /// The host's address.
    pub addr: IpAddr,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The relay interface it is reached through.
    pub iface: Iface,
}

/// A kernel stream entry.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Counter slot.
    pub slot: u32,
    /// Relay address and port packets arrive at.
    pub local: SocketAddr,
    /// Where they go.
    pub peer: SocketAddr,
    /// Relay address and port they leave from.
    pub source: SocketAddr,
    /// Strict-source: the only sender accepted.
    pub strict: Option<SocketAddr>,
    /// A port still learning its endpoints in userspace (pass entry).
    pub to_userspace: bool,
    /// A port with an ICE-lite agent: STUN goes to relayd.
    pub ice: bool,
    /// rtcp-mux demux: RTCP takes the entry of port + 1.
    pub rtcp_demux: bool,
}

/// What the program is given: streams, shields, the FIB's neighbours.
#[derive(Clone, Debug)]
pub struct World {
    /// The interface frames arrive on.
    pub ingress: Iface,
    /// Egress MTU of every interface.
    pub mtu: usize,
    /// Installed stream entries.
    pub streams: Vec<Stream>,
    /// DoS shields: relay address and its dropped port range.
    pub shields: Vec<(IpAddr, RangeInclusive<u16>)>,
    /// Resolvable next hops; any other peer is a FIB miss.
    pub neighbours: Vec<Neighbour>,
}

/// How a stream's own counters move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEffect {
    /// `packets` +1, `bytes` + UDP payload length.
    Forwarded {
        /// UDP payload bytes.
        payload: u64,
    },
    /// `dropped` +1.
    Dropped,
    /// `passed` +1.
    Passed,
}

/// The model's verdict on one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The one program-wide counter that moves.
    pub counter: CounterId,
    /// For a forwarded frame, the exact bytes that leave.
    pub output: Option<Vec<u8>>,
    /// The stream whose counters move, and how.
    pub stream: Option<(u32, StreamEffect)>,
}

impl Expected {
    fn pass(counter: CounterId) -> Self {
        Expected {
            counter,
            output: None,
            stream: None,
        }
    }

    fn with_stream(self, slot: u32, effect: StreamEffect) -> Self {
        Expected {
            stream: Some((slot, effect)),
            ..self
        }
    }

    /// The XDP action: TX, REDIRECT, DROP or PASS (as numbered by the kernel).
    pub fn action(&self) -> u32 {
        match self.counter {
            CounterId::FwdTx => 3,
            CounterId::FwdRedirect => 4,
            c if c.is_dropped() => 1,
            _ => 2,
        }
    }
}

/// The frame's UDP packet as the model reads it.
struct Packet<'a> {
    frame: &'a [u8],
    l3: usize,
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    /// The first `udp_len` bytes after the IP header.
    datagram: &'a [u8],
}

impl Packet<'_> {
    fn sport(&self) -> u16 {
        u16::from_be_bytes([self.datagram[0], self.datagram[1]])
    }
    fn dport(&self) -> u16 {
        u16::from_be_bytes([self.datagram[2], self.datagram[3]])
    }
    fn check(&self) -> u16 {
        u16::from_be_bytes([self.datagram[6], self.datagram[7]])
    }
    fn ip(&self) -> &[u8] {
        &self.frame[self.l3..]
    }
}

type Step<T> = Result<T, Expected>;

/// What the program must do with `frame` arriving on `world.ingress`.
pub fn expect(world: &World, frame: &[u8]) -> Expected {
    decide(world, frame).unwrap_or_else(|e| e)
}

fn decide(world: &World, frame: &[u8]) -> Step<Expected> {
    let (ethertype, l3) = ethernet(frame)?;
    let pkt = match ethertype {
        0x0800 => ipv4(frame, l3)?,
        0x86dd => ipv6(frame, l3)?,
        _ => return Err(Expected::pass(CounterId::PassNotIp)),
    };
    let stream = find_stream(world, &pkt)?;
    stack_would_drop(world, &pkt)?;
    if let Some(expected) = stream.strict {
        if SocketAddr::new(pkt.src, pkt.sport()) != expected {
            let drop = Expected::pass(CounterId::DropStrictSource);
            return Err(drop.with_stream(stream.slot, StreamEffect::Dropped));
        }
    }
    let next_hop = egress(world, stream, &pkt).map_err(|counter| {
        Expected::pass(counter).with_stream(stream.slot, StreamEffect::Passed)
    })?;
    let counter = if next_hop.iface == world.ingress {
        CounterId::FwdTx
    } else {
        CounterId::FwdRedirect
    };
    let payload = (pkt.datagram.len() - UDP_LEN) as u64;
    Ok(Expected {
        counter,
        output: Some(rewrite(&pkt, stream, next_hop)),
        stream: Some((stream.slot, StreamEffect::Forwarded { payload })),
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Step 1: the ethertype and where the network header starts. Any 802.1Q
/// or 802.1ad tag passes (a tag cut short is malformed).
fn ethernet(frame: &[u8]) -> Step<(u16, usize)> {
    let ethertype = be16(frame, 12);
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        let counter = if frame.len() < ETH_LEN + 4 {
            CounterId::PassMalformed
        } else {
            CounterId::PassVlan
        };
        return Err(Expected::pass(counter));
    }
    Ok((ethertype, ETH_LEN))
}

fn malformed() -> Expected {
    Expected::pass(CounterId::PassMalformed)
}

/// Step 2, IPv4: no options, not a fragment, UDP, total length within the
/// frame, UDP length within the IP payload (checked in that order).
fn ipv4(frame: &[u8], l3: usize) -> Step<Packet<'_>> {
    let ip = frame.get(l3..l3 + IPV4_LEN).ok_or_else(malformed)?;
    let ihl = ip[0] & 0xf;
    if ip[0] >> 4 != 4 || ihl < 5 {
        return Err(malformed());
    }
    if ihl > 5 {
        return Err(Expected::pass(CounterId::PassIpOptions));
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(Expected::pass(CounterId::PassFragment));
    }
    if ip[9] != 17 {
        return Err(Expected::pass(CounterId::PassNotUdp));
    }
    let tot_len = usize::from(be16(ip, 2));
    let fits = frame.len() >= l3 + IPV4_LEN + UDP_LEN
        && tot_len >= IPV4_LEN + UDP_LEN
        && l3 + tot_len <= frame.len();
    if !fits {
        return Err(malformed());
    }
    let udp = l3 + IPV4_LEN;
    let udp_len = usize::from(be16(frame, udp + 4));
    if udp_len < UDP_LEN || udp_len > tot_len - IPV4_LEN {
        return Err(malformed());
    }
    let addr = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).unwrap());
    Ok(Packet {
        frame,
        l3,
        v6: false,
        src: addr(12),
        dst: addr(16),
        datagram: &frame[udp..udp + udp_len],
    })
}

/// IPv6 extension header types (IANA "IPv6 Extension Header Types"):
/// hop-by-hop, routing, fragment, ESP, AH, destination options, mobility,
/// HIP, shim6, and the two experimental values.
pub const IPV6_EXTENSION_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// Step 2, IPv6: UDP right after the fixed header (an extension header
/// passes under `passed_ipv6`, any other next header under
/// `passed_not_udp`), payload length within the frame, UDP length within
/// the payload, a non-zero UDP checksum, a destination not v4-mapped.
fn ipv6(frame: &[u8], l3: usize) -> Step<Packet<'_>> {
    let ip = frame.get(l3..l3 + IPV6_LEN).ok_or_else(malformed)?;
    if ip[0] >> 4 != 6 {
        return Err(malformed());
    }
    if ip[6] != 17 {
        let counter = if IPV6_EXTENSION_HEADERS.contains(&ip[6]) {
            CounterId::PassIpv6
        } else {
            CounterId::PassNotUdp
        };
        return Err(Expected::pass(counter));
    }
    let udp = l3 + IPV6_LEN;
    let plen = usize::from(be16(ip, 4));
    if frame.len() < udp + UDP_LEN || plen < UDP_LEN || udp + plen > frame.len() {
        return Err(malformed());
    }
    let udp_len = usize::from(be16(frame, udp + 4));
    let check = be16(frame, udp + 6);
    let addr = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&ip[at..at + 16]).unwrap());
    let dst = addr(24);
    if udp_len < UDP_LEN || udp_len > plen || check == 0 || dst.to_ipv4_mapped().is_some() {
        return Err(malformed());
    }
    Ok(Packet {
        frame,
        l3,
        v6: true,
        src: IpAddr::V6(addr(8)),
        dst: IpAddr::V6(dst),
        datagram: &frame[udp..udp + udp_len],
    })
}

/// Step 3: the stream of the destination address and port. Not a relay
/// address, or no stream outside a shield: pass; no stream inside a shield:
/// drop; a learning port: pass to relayd.
fn find_stream<'w>(world: &'w World, pkt: &Packet<'_>) -> Step<&'w Stream> {
    let key = SocketAddr::new(pkt.dst, pkt.dport());
    let is_relay_address = world.streams.iter().any(|s| s.local.ip() == pkt.dst)
        || world.shields.iter().any(|(a, _)| *a == pkt.dst);
    if !is_relay_address {
        return Err(Expected::pass(CounterId::PassNoStream));
    }
    let Some(stream) = world.streams.iter().find(|s| s.local == key) else {
        let shielded = world
            .shields
            .iter()
            .any(|(a, ports)| *a == pkt.dst && ports.contains(&pkt.dport()));
        return Err(Expected::pass(if shielded {
            CounterId::DropNoStream
        } else {
            CounterId::PassNoStream
        }));
    };
    if stream.to_userspace {
        return Err(Expected::pass(CounterId::PassToUserspace));
    }
    // ICE checks go to relayd's agent, before any other verdict.
    if stream.ice && is_stun(pkt.datagram.get(UDP_LEN..).unwrap_or_default()) {
        return Err(Expected::pass(CounterId::PassToUserspace));
    }
    // rtcp-mux demux: RTCP is forwarded by the party's RTCP port's entry,
    // or goes to relayd while that one does not forward.
    if stream.rtcp_demux && is_rtcp(pkt.datagram.get(UDP_LEN..).unwrap_or_default()) {
        let sibling = key.port().checked_add(1).and_then(|port| {
            let key = SocketAddr::new(key.ip(), port);
            world.streams.iter().find(|s| s.local == key)
        });
        return match sibling {
            Some(s) if !s.to_userspace => Ok(s),
            _ => Err(Expected::pass(CounterId::PassToUserspace)),
        };
    }
    Ok(stream)
}

/// RTCP by RFC 5761 §4: version 2, a second byte of 192..=223.
pub fn is_rtcp(payload: &[u8]) -> bool {
    payload.len() >= 4 && payload[0] & 0xc0 == 0x80 && (192..=223).contains(&payload[1])
}

/// STUN by its fixed header (RFC 5389 §6): at least 20 bytes, the first two
/// bits 0, the magic cookie 0x2112A442 at offset 4.
pub fn is_stun(payload: &[u8]) -> bool {
    payload.len() >= 20 && payload[0] & 0xc0 == 0 && payload[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// "What the stack would refuse", in the table's order: another host's
/// destination MAC, a wrong IPv4 header checksum, a martian source.
fn stack_would_drop(world: &World, pkt: &Packet<'_>) -> Step<()> {
    let dst_mac = &pkt.frame[..6];
    let group = dst_mac[0] & 1 == 1;
    let counter = if !group && dst_mac != world.ingress.mac {
        Some(CounterId::DropOtherHost)
    } else if !pkt.v6 && ones_sum(&pkt.ip()[..IPV4_LEN]) != 0xffff {
        Some(CounterId::DropBadHeader)
    } else if martian(pkt.src, pkt.dst) {
        Some(CounterId::DropMartian)
    } else {
        None
    };
    counter.map_or(Ok(()), |c| Err(Expected::pass(c)))
}

/// A source the stack refuses for a packet to relay address `dst`.
pub fn martian(src: IpAddr, dst: IpAddr) -> bool {
    match src {
        IpAddr::V4(s) => {
            let o = s.octets();
            o[0] == 127 || o[0] == 0 || s.is_multicast() || s.is_broadcast() || src == dst
        }
        IpAddr::V6(s) => {
            let link_local = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
            let dst_link_local = matches!(dst, IpAddr::V6(d) if link_local(&d));
            s.is_unspecified()
                || s.is_loopback()
                || s.is_multicast()
                || s.to_ipv4_mapped().is_some()
                || (link_local(&s) && !dst_link_local)
                || src == dst
        }
    }
}

/// Steps 5-7: the next hop of a forwarded packet, or the counter it passes
/// under (IPv4 without a UDP checksum bridged to IPv6, a partial checksum
/// on a datagram too long to sum, no neighbour, too big for the MTU).
fn egress<'w>(
    world: &'w World,
    stream: &Stream,
    pkt: &Packet<'_>,
) -> Result<&'w Neighbour, CounterId> {
    let out_v6 = stream.peer.is_ipv6();
    if out_v6 && !pkt.v6 && pkt.check() == 0 {
        return Err(CounterId::PassNoCsum);
    }
    if is_partial(pkt) && pkt.datagram.len() > CSUM_MAX_LEN {
        return Err(CounterId::PassNoCsum);
    }
    let ip_len = if out_v6 { IPV6_LEN } else { IPV4_LEN } + pkt.datagram.len();
    world
        .neighbours
        .iter()
        .find(|n| n.addr == stream.peer.ip())
        .filter(|_| ip_len <= world.mtu)
        .ok_or(CounterId::PassFibMiss)
}

/// Step 8: the frame that leaves: MACs of the next hop, the stream's source
/// and peer, TTL/hop limit 64, nothing past the UDP datagram.
fn rewrite(pkt: &Packet<'_>, stream: &Stream, next_hop: &Neighbour) -> Vec<u8> {
    let mut out = Vec::with_capacity(pkt.frame.len() + 20);
    out.extend_from_slice(&next_hop.mac);
    out.extend_from_slice(&next_hop.iface.mac);
    let udp_len = pkt.datagram.len() as u16;
    match (stream.source.ip(), stream.peer.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            out.extend_from_slice(&ipv4_header(pkt, src, dst, udp_len));
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            out.extend_from_slice(&0x86ddu16.to_be_bytes());
            out.extend_from_slice(&ipv6_header(pkt, src, dst, udp_len));
        }
        _ => panic!("model: a stream's source and peer are of one family"),
    }
    out.extend_from_slice(&datagram(pkt, stream));
    out
}

/// The outgoing IPv4 header. IPv4 in: TOS, ID and flags kept. IPv6 in: the
/// traffic class as TOS, ID 0 and DF (an atomic datagram).
fn ipv4_header(pkt: &Packet<'_>, src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; IPV4_LEN] {
    let ip = pkt.ip();
    let (tos, id, flags) = if pkt.v6 {
        (traffic_class(ip), [0, 0], [0x40, 0])
    } else {
        (ip[1], [ip[4], ip[5]], [ip[6], ip[7]])
    };
    let mut h = [0u8; IPV4_LEN];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(IPV4_LEN as u16 + udp_len).to_be_bytes());
    h[4..6].copy_from_slice(&id);
    h[6..8].copy_from_slice(&flags);
    h[8] = RELAY_TTL;
    h[9] = 17;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let check = !ones_sum(&h);
    h[10..12].copy_from_slice(&check.to_be_bytes());
    h
}

fn traffic_class(ip6: &[u8]) -> u8 {
    (be16(ip6, 0) >> 4) as u8
}

/// The outgoing IPv6 header. IPv6 in: version, traffic class and flow label
/// kept. IPv4 in: the TOS as traffic class, no flow label.
fn ipv6_header(pkt: &Packet<'_>, src: Ipv6Addr, dst: Ipv6Addr, udp_len: u16) -> [u8; IPV6_LEN] {
    let ip = pkt.ip();
    let mut h = [0u8; IPV6_LEN];
    if pkt.v6 {
        h[..4].copy_from_slice(&ip[..4]);
    } else {
        h[..4].copy_from_slice(&((6u32 << 28) | (u32::from(ip[1]) << 20)).to_be_bytes());
    }
    h[4..6].copy_from_slice(&udp_len.to_be_bytes());
    h[6] = 17;
    h[7] = RELAY_TTL;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

/// The outgoing UDP datagram: the stream's ports and the checksum the
/// rules give (see [`udp_checksum`]).
fn datagram(pkt: &Packet<'_>, stream: &Stream) -> Vec<u8> {
    let mut udp = pkt.datagram.to_vec();
    udp[0..2].copy_from_slice(&stream.source.port().to_be_bytes());
    udp[2..4].copy_from_slice(&stream.peer.port().to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let check = udp_checksum(pkt, stream.source.ip(), stream.peer.ip(), &udp);
    udp[6..8].copy_from_slice(&check.to_be_bytes());
    udp
}

/// The outgoing UDP checksum for `udp` (its field zero) from `src` to
/// `dst`. IPv4's zero ("none") stays zero; a partial one is computed from
/// scratch; any other keeps the received datagram's one's-complement
/// residual (zero for a right checksum, the same error for a wrong one).
/// A computed zero is sent as 0xffff.
fn udp_checksum(pkt: &Packet<'_>, src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    if pkt.check() == 0 {
        return 0; // only IPv4 to IPv4 gets here with it
    }
    let out = fold(sum16(&pseudo_header(src, dst, udp.len())) + sum16(udp));
    let check = if is_partial(pkt) {
        !out
    } else {
        let received =
            fold(sum16(&pseudo_header(pkt.src, pkt.dst, udp.len())) + sum16(pkt.datagram));
        fold(u64::from(received) + u64::from(!out))
    };
    if check == 0 || check == 0xffff {
        0xffff
    } else {
        check
    }
}

/// Whether the received checksum is a same-host sender's partial one: the
/// folded sum of its own pseudo-header.
fn is_partial(pkt: &Packet<'_>) -> bool {
    let pseudo = pseudo_header(pkt.src, pkt.dst, pkt.datagram.len());
    pkt.check() == fold(sum16(&pseudo))
}

/// The UDP pseudo-header of either family (RFC 768, RFC 8200 §8.1).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
        }
        _ => panic!("model: pseudo-header of mixed families"),
    }
    p
}

/// Sum of big-endian 16-bit words, an odd last byte padded with zero.
fn sum16(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// A sum folded to 16 bits with end-around carries (one's complement).
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The folded one's-complement sum of `data` (0xffff for a header whose
/// checksum is right).
pub fn ones_sum(data: &[u8]) -> u16 {
    fold(sum16(data))
}

/// Why `frame` is internally inconsistent (a frame nobody should forward),
/// if it is: headers cut short, lengths that disagree with each other or
/// with the frame, a wrong IPv4 header checksum, an IPv6 datagram without
/// UDP checksum. Written apart from [`expect`] as a second opinion: the
/// torture checks that the program never forwards such a frame.
pub fn inconsistency(frame: &[u8]) -> Option<&'static str> {
    let mut l3 = ETH_LEN;
    let mut ethertype = be16(frame, 12);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        if frame.len() < l3 + 4 {
            return Some("VLAN tag cut short");
        }
        ethertype = be16(frame, l3 + 2);
        l3 += 4;
    }
    let ip = &frame[l3..];
    match ethertype {
        0x0800 => ipv4_inconsistency(ip),
        0x86dd => ipv6_inconsistency(ip),
        _ => None,
    }
}

fn ipv4_inconsistency(ip: &[u8]) -> Option<&'static str> {
    if ip.len() < IPV4_LEN {
        return Some("IPv4 header cut short");
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let tot_len = usize::from(be16(ip, 2));
    if ip[0] >> 4 != 4 || ihl < IPV4_LEN || ip.len() < ihl {
        return Some("IPv4 version or header length wrong");
    }
    if ones_sum(&ip[..ihl]) != 0xffff {
        return Some("IPv4 header checksum wrong");
    }
    if tot_len < ihl || tot_len > ip.len() {
        return Some("IPv4 total length outside the frame");
    }
    let unfragmented_udp = ip[9] == 17 && be16(ip, 6) & 0x3fff == 0;
    if unfragmented_udp {
        return udp_inconsistency(&ip[ihl..tot_len], false);
    }
    None
}

fn ipv6_inconsistency(ip: &[u8]) -> Option<&'static str> {
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return Some("IPv6 header cut short or version wrong");
    }
    let end = IPV6_LEN + usize::from(be16(ip, 4));
    if end > ip.len() {
        return Some("IPv6 payload length outside the frame");
    }
    if ip[6] == 17 {
        return udp_inconsistency(&ip[IPV6_LEN..end], true);
    }
    None
}

fn udp_inconsistency(payload: &[u8], v6: bool) -> Option<&'static str> {
    if payload.len() < UDP_LEN {
        return Some("UDP header cut short");
    }
    let udp_len = usize::from(be16(payload, 4));
    if udp_len < UDP_LEN || udp_len > payload.len() {
        return Some("UDP length outside the IP payload");
    }
    if v6 && be16(payload, 6) == 0 {
        return Some("IPv6 UDP without checksum");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{checksums_ok, UdpFrame};
    use crate::torture::world;
    use crate::xdp_harness::{MAC_A_HOST, MAC_A_RELAY, MAC_B_HOST, MAC_B_RELAY};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn from_a(src: &str, dst: &str) -> UdpFrame {
        let mut f = UdpFrame::new(sa(src), sa(dst));
        (f.dst_mac, f.src_mac) = (MAC_A_RELAY, MAC_A_HOST);
        f
    }

    /// What the builder makes of `input` sent on from `source` to `peer`
    /// through fxb (checksums from scratch, another code path than the
    /// model's).
    fn built_output(input: &UdpFrame, source: &str, peer: &str) -> Vec<u8> {
        let mut out = input.clone();
        (out.src, out.dst, out.ttl) = (sa(source), sa(peer), RELAY_TTL);
        (out.dst_mac, out.src_mac) = (MAC_B_HOST, MAC_B_RELAY);
        out.partial_udp_checksum = false; // completed on the way
        if out.src.is_ipv4() != input.src.is_ipv4() {
            (out.ip_id, out.flow_label) = (0, 0);
        }
        out.build()
    }

    #[test]
    fn forwarded_frames_match_the_builder_on_every_family_path() {
        let w = world();
        for (src, local, source, peer) in [
            (
                "10.10.1.2:5000",
                "10.10.1.1:30000",
                "10.10.2.1:30002",
                "10.10.2.2:40000",
            ),
            (
                "[2001:db8:1::2]:5000",
                "[2001:db8:1::1]:30020",
                "[2001:db8:2::1]:30020",
                "[2001:db8:2::2]:40020",
            ),
            (
                "[2001:db8:1::2]:5000",
                "[2001:db8:1::1]:30022",
                "10.10.2.1:30022",
                "10.10.2.2:40022",
            ),
            (
                "10.10.1.2:5000",
                "10.10.1.1:30024",
                "[2001:db8:2::1]:30024",
                "[2001:db8:2::2]:40024",
            ),
        ] {
            let mut input = from_a(src, local);
            input.flow_label = 0x12345;
            let got = expect(&w, &input.build());
            assert_eq!(got.counter, CounterId::FwdRedirect, "{local}");
            assert_eq!(
                got.output.unwrap(),
                built_output(&input, source, peer),
                "{local}"
            );
            input.partial_udp_checksum = true;
            let got = expect(&w, &input.build()).output.unwrap();
            assert_eq!(
                got,
                built_output(&input, source, peer),
                "{local}, partial in"
            );
        }
    }

    /// A payload byte changed after the checksum was computed: the output
    /// carries the checksum of the unchanged datagram, so it stays wrong,
    /// and putting the byte back makes it the builder's frame again.
    #[test]
    fn a_wrong_udp_checksum_stays_wrong_by_the_same_amount() {
        let input = from_a("10.10.1.2:5000", "10.10.1.1:30000");
        let mut frame = input.build();
        let at = frame.len() - 5;
        frame[at] ^= 0x5a;
        let mut out = expect(&world(), &frame).output.unwrap();
        assert!(!checksums_ok(&out));
        let out_at = out.len() - 5;
        out[out_at] ^= 0x5a;
        assert_eq!(
            out,
            built_output(&input, "10.10.2.1:30002", "10.10.2.2:40000")
        );
    }

    #[test]
    fn a_forwarded_frame_is_never_inconsistent() {
        let w = world();
        let mut rng = crate::torture::Rng::new(11);
        for _ in 0..2000 {
            let frame = crate::torture::random_valid(&mut rng, &w);
            if expect(&w, &frame).output.is_some() {
                assert_eq!(inconsistency(&frame), None, "{frame:02x?}");
            }
        }
    }

    #[test]
    fn martian_sources_are_the_documented_classes() {
        let relay: IpAddr = "10.10.1.1".parse().unwrap();
        let relay6: IpAddr = "2001:db8:1::1".parse().unwrap();
        for (src, dst, want) in [
            ("127.0.0.1", relay, true),
            ("0.1.2.3", relay, true),
            ("239.1.1.1", relay, true),
            ("255.255.255.255", relay, true),
            ("10.10.1.1", relay, true),
            ("240.0.0.1", relay, false),
            ("10.10.1.2", relay, false),
            ("::", relay6, true),
            ("::1", relay6, true),
            ("ff02::1", relay6, true),
            ("::ffff:10.0.0.1", relay6, true),
            ("fe80::1", relay6, true),
            ("2001:db8:1::1", relay6, true),
            ("fec0::1", relay6, false),
            ("fe80::1", "fe80::2".parse().unwrap(), false),
        ] {
            assert_eq!(martian(src.parse().unwrap(), dst), want, "{src} -> {dst}");
        }
    }
}
