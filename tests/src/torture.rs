//! Frames for the packet torture (`tests/tests/packet_torture.rs`): a
//! deterministic generator per category of the issue (truncation, IPv4
//! options, fragments, lengths, zero checksums, VLAN tags, IPv6 extension
//! headers, TTL, group destinations, the wrong family, what the stack would
//! drop, surplus bytes, random mutations), over the streams of [`world`].
//! Each frame goes through the program and the model (`xdp_model`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{
    packet::{internet_checksum, udp4_checksum, udp6_checksum, UdpFrame, ETH_LEN, IPV4_LEN},
    xdp_harness::{MAC_A_HOST, MAC_A_RELAY, MAC_B_HOST, MAC_B_RELAY},
    xdp_model::{Iface, Neighbour, Stream, World, IPV6_EXTENSION_HEADERS},
};

/// A generated frame and the category it counts under.
pub type Case = (&'static str, Vec<u8>);

/// xorshift64*: deterministic, no crate needed.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// A random byte.
    pub fn u8(&mut self) -> u8 {
        self.next_u64() as u8
    }
    /// A random 16-bit value.
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const FXA: Iface = Iface {
    name: "fxa",
    mac: MAC_A_RELAY,
};
const FXB: Iface = Iface {
    name: "fxb",
    mac: MAC_B_RELAY,
};

/// Host A's addresses: the usual sender.
const HOST_A: &str = "10.10.1.2";
const HOST_A6: &str = "2001:db8:1::2";
/// The relay's A-side addresses (shielded 30000-39999).
const RELAY_A: &str = "10.10.1.1";
const RELAY_A6: &str = "2001:db8:1::1";

fn stream(slot: u32, local: &str, peer: &str, source: &str) -> Stream {
    Stream {
        slot,
        local: sa(local),
        peer: sa(peer),
        source: sa(source),
        strict: None,
        to_userspace: false,
        ice: false,
        rtcp_demux: false,
    }
}

/// The streams, shields and neighbours the torture runs against, in the
/// fixture topology (`xdp_harness::topology`): every path (redirect and
/// `XDP_TX`, IPv4, IPv6, bridged both ways), strict sources, FIB misses, a
/// learning port and an rtcp-mux demux pair.
pub fn world() -> World {
    let strict = |s: Stream, from: &str| Stream {
        strict: Some(sa(from)),
        ..s
    };
    let learning = "10.10.1.1:30010";
    World {
        ingress: FXA,
        mtu: 1500,
        streams: vec![
            stream(1, "10.10.1.1:30000", "10.10.2.2:40000", "10.10.2.1:30002"),
            stream(2, "10.10.1.1:30004", "10.10.1.2:5004", "10.10.1.1:30004"),
            strict(
                stream(3, "10.10.1.1:30006", "10.10.2.2:40006", "10.10.2.1:30006"),
                "10.10.1.2:5006",
            ),
            stream(4, "10.10.1.1:30008", "10.10.2.3:40008", "10.10.2.1:30008"),
            Stream {
                to_userspace: true,
                ..stream(5, learning, learning, learning)
            },
            stream(
                7,
                "[2001:db8:1::1]:30020",
                "[2001:db8:2::2]:40020",
                "[2001:db8:2::1]:30020",
            ),
            stream(
                8,
                "[2001:db8:1::1]:30022",
                "10.10.2.2:40022",
                "10.10.2.1:30022",
            ),
            stream(
                9,
                "10.10.1.1:30024",
                "[2001:db8:2::2]:40024",
                "[2001:db8:2::1]:30024",
            ),
            stream(
                10,
                "10.10.1.1:30026",
                "[2001:db8:1::2]:5026",
                "[2001:db8:1::1]:30026",
            ),
            stream(
                11,
                "[2001:db8:1::1]:30028",
                "10.10.1.2:5028",
                "10.10.1.1:30028",
            ),
            strict(
                stream(
                    12,
                    "[2001:db8:1::1]:30030",
                    "[2001:db8:2::2]:40030",
                    "[2001:db8:2::1]:30030",
                ),
                "[2001:db8:1::2]:5000",
            ),
            stream(
                13,
                "[2001:db8:1::1]:30032",
                "[2001:db8:2::3]:40032",
                "[2001:db8:2::1]:30032",
            ),
            // rtcp-mux demux: RTCP on 30034 takes 30035's entry.
            Stream {
                rtcp_demux: true,
                ..stream(14, "10.10.1.1:30034", "10.10.2.2:40034", "10.10.2.1:30034")
            },
            stream(15, "10.10.1.1:30035", "10.10.2.2:40035", "10.10.2.1:30035"),
        ],
        shields: vec![
            (RELAY_A.parse().unwrap(), 30000..=39999),
            (RELAY_A6.parse().unwrap(), 30000..=39999),
        ],
        neighbours: [
            (HOST_A, MAC_A_HOST, FXA),
            ("10.10.2.2", MAC_B_HOST, FXB),
            (HOST_A6, MAC_A_HOST, FXA),
            ("2001:db8:2::2", MAC_B_HOST, FXB),
        ]
        .into_iter()
        .map(|(addr, mac, iface)| Neighbour {
            addr: addr.parse().unwrap(),
            mac,
            iface,
        })
        .collect(),
    }
}

/// Where frames are sent: every stream's port, plus ports without one
/// (shielded, unshielded) and an address of the relay's that is not a
/// relay address.
fn targets(world: &World) -> Vec<SocketAddr> {
    let mut t: Vec<SocketAddr> = world.streams.iter().map(|s| s.local).collect();
    t.extend(
        [
            "10.10.1.1:31000",
            "10.10.1.1:45000",
            "[2001:db8:1::1]:31000",
            "[2001:db8:1::1]:45000",
            "10.10.2.1:30000",
        ]
        .map(sa),
    );
    t
}

/// The streams a frame from host A is forwarded on (not learning, with a
/// neighbour), by their local address.
fn forwarding_targets(world: &World) -> Vec<SocketAddr> {
    world
        .streams
        .iter()
        .filter(|s| !s.to_userspace && world.neighbours.iter().any(|n| n.addr == s.peer.ip()))
        .map(|s| s.local)
        .collect()
}

/// Host A's sender for `target` (the expected one of a strict stream).
fn sender(world: &World, target: SocketAddr) -> SocketAddr {
    let strict = world
        .streams
        .iter()
        .find(|s| s.local == target)
        .and_then(|s| s.strict);
    strict.unwrap_or_else(|| {
        let host = if target.is_ipv4() { HOST_A } else { HOST_A6 };
        SocketAddr::new(host.parse().unwrap(), 5000)
    })
}

/// Any unicast-looking address of `target`'s family (martians included,
/// now and then, as a random sender would be).
fn random_sender(rng: &mut Rng, target: SocketAddr) -> SocketAddr {
    let ip = if target.is_ipv4() {
        IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
    } else {
        let mut o: [u8; 16] = rng.bytes(16).try_into().unwrap();
        o[0] = 0x20 | (o[0] & 0x1f); // 2000::/3, global unicast
        IpAddr::V6(Ipv6Addr::from(o))
    };
    SocketAddr::new(ip, rng.u16())
}

/// A payload length: mostly RTP-like, sometimes up to a full 1500 MTU.
fn payload_len(rng: &mut Rng, v6: bool) -> usize {
    let max = if v6 { 1452 } else { 1472 };
    match rng.below(20) {
        0..=11 => rng.range(0, 200),
        12..=16 => rng.range(200, 600),
        _ => rng.range(600, max),
    }
}

/// A frame from host A to `target` with the usual MACs and `payload`.
fn frame_to(world: &World, target: SocketAddr, payload: Vec<u8>) -> UdpFrame {
    let mut f = UdpFrame::new(sender(world, target), target);
    f.dst_mac = MAC_A_RELAY;
    f.src_mac = MAC_A_HOST;
    f.payload = payload;
    f
}

/// A well-formed frame: random target, sender (host A mostly), TTL, ID,
/// flow label, TOS, payload, and a full, zero or partial UDP checksum.
pub fn random_valid(rng: &mut Rng, world: &World) -> Vec<u8> {
    let target = *rng.pick(&targets(world));
    let len = payload_len(rng, target.is_ipv6());
    let mut f = frame_to(world, target, rng.bytes(len));
    if rng.below(5) == 0 {
        f.src = random_sender(rng, target);
    }
    f.ttl = rng.u8();
    f.ip_id = rng.u16();
    f.flow_label = rng.next_u64() as u32 & 0xf_ffff;
    match rng.below(10) {
        0 => f.zero_udp_checksum = true,
        1 => f.partial_udp_checksum = true,
        _ => {}
    }
    let mut bytes = f.build();
    set_tos(&mut bytes, rng.u8());
    bytes
}

/// Sets the IPv4 TOS (checksum fixed) or IPv6 traffic class of an untagged
/// frame.
fn set_tos(frame: &mut [u8], tos: u8) {
    let ip = &mut frame[ETH_LEN..];
    if ip[0] >> 4 == 4 {
        ip[1] = tos;
        fix_ipv4_header(frame);
    } else {
        ip[0] = 0x60 | tos >> 4;
        ip[1] = (ip[1] & 0x0f) | tos << 4;
    }
}

/// Where the network header of a frame starts (after any VLAN tags that
/// fit) and its ethertype.
pub fn network_header(frame: &[u8]) -> (usize, u16) {
    let mut l3 = ETH_LEN;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    while (ethertype == 0x8100 || ethertype == 0x88a8) && frame.len() >= l3 + 4 {
        ethertype = u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]);
        l3 += 4;
    }
    (l3, ethertype)
}

/// Recomputes the IPv4 header checksum over the header's IHL (when the
/// frame is IPv4 and holds the whole header).
pub fn fix_ipv4_header(frame: &mut [u8]) {
    let (l3, ethertype) = network_header(frame);
    let Some(&first) = frame.get(l3) else { return };
    let ihl = usize::from(first & 0xf) * 4;
    if ethertype != 0x0800 || ihl < IPV4_LEN || frame.len() < l3 + ihl {
        return;
    }
    frame[l3 + 10..l3 + 12].fill(0);
    let c = internet_checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the UDP checksum of UDP right after an option-less IPv4 or a
/// fixed IPv6 header, over what the UDP length says (when it fits in the
/// frame). An IPv4 "none" stays none.
pub fn fix_udp(frame: &mut [u8]) {
    let (l3, ethertype) = network_header(frame);
    let (hdr, proto_at, src_at, alen) = match ethertype {
        0x0800 => (IPV4_LEN, 9, 12, 4),
        0x86dd => (40, 6, 8, 16),
        _ => return,
    };
    let udp = l3 + hdr;
    if frame.len() < udp + 8 || frame[l3 + proto_at] != 17 {
        return;
    }
    let udp_len = usize::from(u16::from_be_bytes([frame[udp + 4], frame[udp + 5]]));
    let zero_v4 = ethertype == 0x0800 && frame[udp + 6..udp + 8] == [0, 0];
    if udp_len < 8 || frame.len() < udp + udp_len || zero_v4 {
        return;
    }
    frame[udp + 6..udp + 8].fill(0);
    let (s, d) = (l3 + src_at, l3 + src_at + alen);
    let c = if alen == 4 {
        let a = |at: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&frame[at..at + 4]).unwrap());
        udp4_checksum(a(s), a(d), &frame[udp..udp + udp_len])
    } else {
        let a = |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&frame[at..at + 16]).unwrap());
        udp6_checksum(a(s), a(d), &frame[udp..udp + udp_len])
    };
    frame[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
}

/// Both checksums recomputed (IPv4 header, then UDP).
pub fn fix_checksums(frame: &mut [u8]) {
    fix_ipv4_header(frame);
    fix_udp(frame);
}

/// A frame of host A to `target` with `len` bytes of payload.
fn plain(world: &World, target: &str, len: usize) -> Vec<u8> {
    frame_to(world, sa(target), crate::packet::rtp_payload(len)).build()
}

/// Every length from an Ethernet header (shorter ones never reach XDP) to
/// the whole frame, of frames on every path, tagged, padded and full-size.
pub fn truncations(world: &World) -> Vec<Case> {
    let mut padded = plain(world, "10.10.1.1:30004", 20);
    padded.extend_from_slice(&[0xee; 30]);
    let bases = [
        plain(world, "10.10.1.1:30000", 40),
        plain(world, "10.10.1.1:30004", 0),
        plain(world, "[2001:db8:1::1]:30020", 40),
        plain(world, "[2001:db8:1::1]:30022", 20),
        plain(world, "10.10.1.1:30024", 20),
        plain(world, "10.10.1.1:30000", 1472),
        plain(world, "[2001:db8:1::1]:30020", 1452),
        with_tags(&plain(world, "10.10.1.1:30000", 20), &[0x8100]),
        with_tags(&plain(world, "10.10.1.1:30000", 20), &[0x88a8, 0x8100]),
        with_ext_headers(&plain(world, "[2001:db8:1::1]:30020", 16), &[60, 0], 17),
        padded,
    ];
    bases
        .iter()
        .flat_map(|b| (ETH_LEN..=b.len()).map(|n| ("truncation at every byte", b[..n].to_vec())))
        .collect()
}

/// The frame with VLAN tags (outermost first) inserted after the MACs.
pub fn with_tags(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, tpid) in tpids.iter().enumerate() {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(100 + i as u16).to_be_bytes()); // TCI: VLAN 100, 101
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// An IPv6 frame with a chain of 8-byte extension headers of `kinds` before
/// its UDP header, the last one naming `last` as its next header. The UDP
/// checksum stays right (extension headers are not in the pseudo-header).
pub fn with_ext_headers(frame: &[u8], kinds: &[u8], last: u8) -> Vec<u8> {
    let l3 = ETH_LEN;
    let mut out = frame[..l3 + 40].to_vec();
    let mut next_of = kinds.iter().skip(1).copied().chain([last]);
    out[l3 + 6] = kinds[0];
    for _ in kinds {
        // Next header, length 0 (8 bytes), PadN of 4.
        out.extend_from_slice(&[next_of.next().unwrap(), 0, 1, 4, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&frame[l3 + 40..]);
    let plen = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) + 8 * kinds.len() as u16;
    out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

/// `len` bytes of IPv4 options of kind `fill`: NOPs, EOLs, a record route,
/// random bytes.
fn ipv4_option_bytes(rng: &mut Rng, fill: usize, len: usize) -> Vec<u8> {
    match fill {
        0 => vec![1; len],
        1 => vec![0; len],
        2 => [7, len.min(39) as u8, 4]
            .into_iter()
            .chain(std::iter::repeat(0))
            .take(len)
            .collect(),
        _ => rng.bytes(len),
    }
}

/// IHL 0 to 15: below 5 malformed, above it options (NOPs, an EOL, a record
/// route, random bytes), lengths and header checksum kept consistent.
pub fn ipv4_options(rng: &mut Rng, world: &World) -> Vec<Case> {
    let base = plain(world, "10.10.1.1:30000", 40);
    let mut out = Vec::new();
    for ihl in 0..=15u8 {
        for fill in 0..4 {
            let options = ipv4_option_bytes(rng, fill, usize::from(ihl.saturating_sub(5)) * 4);
            let mut f = base[..ETH_LEN + IPV4_LEN].to_vec();
            f.extend_from_slice(&options);
            f.extend_from_slice(&base[ETH_LEN + IPV4_LEN..]);
            f[ETH_LEN] = 0x40 | ihl;
            let tot = (f.len() - ETH_LEN) as u16;
            f[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&tot.to_be_bytes());
            fix_ipv4_header(&mut f);
            out.push(("IPv4 options / IHL", f));
        }
    }
    out
}

/// Flags and fragment offsets: MF, offsets, both, DF, the reserved bit, and
/// random words, on IPv4 streams of every path.
pub fn fragments(rng: &mut Rng, world: &World) -> Vec<Case> {
    let mut words = vec![
        0x2000, 0x0001, 0x1fff, 0x2001, 0x4000, 0x6000, 0x8000, 0xc000, 0x4001,
    ];
    words.extend((0..40).map(|_| rng.u16()));
    let mut out = Vec::new();
    for target in ["10.10.1.1:30000", "10.10.1.1:30004", "10.10.1.1:30024"] {
        for &w in &words {
            let mut f = plain(world, target, 60);
            f[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&u16::to_be_bytes(w));
            fix_ipv4_header(&mut f);
            out.push(("IPv4 fragments and flags", f));
        }
    }
    out
}

/// The frame with the 16-bit field at `at` set to `value`; checksums fixed
/// or not.
fn with_field(frame: &[u8], at: usize, value: u16, fix: bool) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at..at + 2].copy_from_slice(&value.to_be_bytes());
    if fix {
        fix_checksums(&mut f);
    } else {
        fix_ipv4_header(&mut f);
    }
    f
}

/// Every IP and UDP length from 0 to past the frame (and random ones), on
/// frames with and without surplus bytes, over IPv4, IPv6 and both bridges;
/// UDP checksums recomputed for the claimed length, or left.
pub fn lengths(rng: &mut Rng, world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    for target in [
        "10.10.1.1:30000",
        "10.10.1.1:30024",
        "[2001:db8:1::1]:30020",
        "[2001:db8:1::1]:30022",
    ] {
        for surplus in [0, 20] {
            let mut base = plain(world, target, 32);
            base.extend(std::iter::repeat_n(0xa5, surplus));
            let v6 = target.starts_with('[');
            let (ip_len_at, udp_len_at) = if v6 {
                (ETH_LEN + 4, ETH_LEN + 44)
            } else {
                (ETH_LEN + 2, ETH_LEN + 24)
            };
            let mut values: Vec<u16> = (0..=base.len() as u16 + 8).collect();
            values.extend((0..10).map(|_| rng.u16()));
            for &v in &values {
                for (at, fix) in [(ip_len_at, false), (udp_len_at, false), (udp_len_at, true)] {
                    let f = with_field(&base, at, v, fix);
                    let beyond = at == udp_len_at && usize::from(v) > base.len() - at + 4;
                    let category = if beyond {
                        "UDP length beyond the frame"
                    } else {
                        "IP/UDP lengths"
                    };
                    out.push((category, f));
                }
            }
        }
    }
    out
}

/// A zero UDP checksum on every stream: "none" in IPv4 (forwarded as
/// none, or passed when bridged to IPv6), illegal in IPv6.
pub fn zero_checksums(rng: &mut Rng, world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    for target in targets(world) {
        for _ in 0..4 {
            let len = payload_len(rng, target.is_ipv6());
            let mut f = frame_to(world, target, rng.bytes(len));
            f.zero_udp_checksum = true;
            out.push(("zero UDP checksum", f.build()));
        }
    }
    out
}

/// 802.1Q, 802.1ad, QinQ both ways, an unknown TPID, on IPv4 and IPv6
/// frames to forwarding streams; and tags cut short.
pub fn vlans(world: &World) -> Vec<Case> {
    let tag_sets: [&[u16]; 6] = [
        &[0x8100],
        &[0x88a8],
        &[0x88a8, 0x8100],
        &[0x8100, 0x8100],
        &[0x9100],
        &[0x8100, 0x88a8],
    ];
    let mut out = Vec::new();
    for target in [
        "10.10.1.1:30000",
        "10.10.1.1:30004",
        "[2001:db8:1::1]:30020",
        "10.10.1.1:30024",
    ] {
        for tags in tag_sets {
            let f = with_tags(&plain(world, target, 40), tags);
            for n in [
                ETH_LEN,
                ETH_LEN + 1,
                ETH_LEN + 2,
                ETH_LEN + 3,
                ETH_LEN + 4,
                ETH_LEN + 6,
            ] {
                out.push(("VLAN and QinQ", f[..n].to_vec()));
            }
            out.push(("VLAN and QinQ", f));
        }
    }
    out
}

/// Every next-header value after the fixed IPv6 header, and chains of one
/// to four extension headers ending in UDP, ICMPv6, TCP or "no next".
pub fn ipv6_extension_chains(rng: &mut Rng, world: &World) -> Vec<Case> {
    let base = plain(world, "[2001:db8:1::1]:30020", 40);
    let mut out: Vec<Case> = (0..=255u8)
        .map(|nh| {
            let mut f = base.clone();
            f[ETH_LEN + 6] = nh;
            ("IPv6 next headers and extension chains", f)
        })
        .collect();
    for _ in 0..200 {
        let kinds: Vec<u8> = (0..rng.range(1, 4))
            .map(|_| *rng.pick(&IPV6_EXTENSION_HEADERS))
            .collect();
        let last = *rng.pick(&[17, 17, 58, 6, 59]);
        let target = *rng.pick(&[
            "[2001:db8:1::1]:30020",
            "[2001:db8:1::1]:30022",
            "[2001:db8:1::1]:31000",
        ]);
        let f = with_ext_headers(&plain(world, target, rng.range(0, 100)), &kinds, last);
        out.push(("IPv6 next headers and extension chains", f));
    }
    out
}

/// TTL / hop limit 0, 1, 2 and 255 on every forwarding stream: a packet to
/// the relay is delivered, not routed, so it leaves with 64 like any other.
pub fn ttls(world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    for target in forwarding_targets(world) {
        for ttl in [0, 1, 2, 255] {
            let mut f = frame_to(world, target, crate::packet::rtp_payload(60));
            f.ttl = ttl;
            out.push(("TTL / hop limit 0, 1", f.build()));
        }
    }
    out
}

/// Multicast and broadcast destination addresses (never a relay address),
/// and group destination MACs on frames to streams (the stack accepts
/// those, so the program forwards them).
pub fn group_destinations(world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    let macs = [
        [0xff; 6],
        [0x01, 0, 0x5e, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
        MAC_A_RELAY,
    ];
    let groups = [
        "224.0.0.1:30000",
        "239.255.255.250:1900",
        "255.255.255.255:30000",
        "10.10.1.255:30000",
        "0.0.0.0:30000",
        "[ff02::1]:30020",
        "[ff05::1:3]:547",
        "[ff02::1:ff00:1]:30020",
    ];
    for (dst, mac) in groups
        .iter()
        .flat_map(|d| macs.iter().map(move |m| (sa(d), *m)))
    {
        let mut f = frame_to(world, dst, crate::packet::rtp_payload(40));
        f.dst_mac = mac;
        out.push(("multicast/broadcast destinations", f.build()));
    }
    for target in forwarding_targets(world) {
        for mac in &macs[..3] {
            let mut f = frame_to(world, target, crate::packet::rtp_payload(40));
            f.dst_mac = *mac;
            out.push(("multicast/broadcast destinations", f.build()));
        }
    }
    out
}

/// Frames to a stream's port in the other family (the other relay
/// address's row has no such stream), to v4-mapped and v4-compatible
/// destinations, IPv4 in an IPv6 ethertype and the reverse, and v4-mapped
/// sources.
pub fn wrong_family(world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    for s in &world.streams {
        let other = if s.local.is_ipv4() { RELAY_A6 } else { RELAY_A };
        let dst = SocketAddr::new(other.parse().unwrap(), s.local.port());
        out.push((
            "wrong family",
            frame_to(world, dst, crate::packet::rtp_payload(40)).build(),
        ));
    }
    for dst in [
        "[::ffff:10.10.1.1]:30000",
        "[::ffff:10.10.1.1]:30020",
        "[::10.10.1.1]:30000",
    ] {
        out.push(("wrong family", plain(world, dst, 40)));
    }
    for (target, ethertype) in [
        ("10.10.1.1:30000", 0x86dd_u16),
        ("[2001:db8:1::1]:30020", 0x0800),
    ] {
        let mut f = plain(world, target, 40);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        out.push(("wrong family", f));
    }
    let mut mapped_src = frame_to(
        world,
        sa("[2001:db8:1::1]:30020"),
        crate::packet::rtp_payload(40),
    );
    mapped_src.src = sa("[::ffff:10.10.1.2]:5000");
    out.push(("wrong family", mapped_src.build()));
    out
}

/// A random source of one of the martian classes the docs list, or of a
/// class next to one that is not martian (class E, fec0::/10, fe80::/10 to
/// a link-local destination is not generated: relay addresses are global).
fn edge_source(rng: &mut Rng, v6: bool) -> IpAddr {
    let r = rng.next_u64() as u32;
    if !v6 {
        let v4 = match rng.below(8) {
            0 => 0x7f00_0000 | (r & 0xff_ffff),
            1 => r & 0xff_ffff,
            2 => 0xe000_0000 | (r & 0x0fff_ffff),
            3 => 0xffff_ffff,
            4 => u32::from(RELAY_A.parse::<Ipv4Addr>().unwrap()),
            5 => 0xf000_0000 | (r & 0x0fff_fffe), // class E: not martian
            6 => 0x7e00_0000 | (r & 0xff_ffff),   // 126/8: not martian
            _ => 0x0a0a_01fe,                     // 10.10.1.254, a neighbour
        };
        return IpAddr::V4(Ipv4Addr::from(v4));
    }
    let mut o: [u8; 16] = rng.bytes(16).try_into().unwrap();
    match rng.below(8) {
        0 => o = [0; 16],
        1 => o = Ipv6Addr::LOCALHOST.octets(),
        2 => o[0] = 0xff,
        3 => o = Ipv4Addr::from(r).to_ipv6_mapped().octets(),
        4 => (o[0], o[1]) = (0xfe, 0x80 | (o[1] & 0x3f)),
        5 => o = RELAY_A6.parse::<Ipv6Addr>().unwrap().octets(),
        6 => (o[0], o[1]) = (0xfe, 0xc0 | (o[1] & 0x3f)), // site-local: not martian
        _ => o[..12].copy_from_slice(&[0; 12]),           // v4-compatible: not martian
    }
    IpAddr::V6(Ipv6Addr::from(o))
}

/// What the stack would drop (issue 25): a wrong IPv4 header checksum,
/// another host's MAC, martian sources of both families (and neighbours of
/// those classes that are not martian).
pub fn stack_would_drop(rng: &mut Rng, world: &World) -> Vec<Case> {
    let targets = forwarding_targets(world);
    let mut out = Vec::new();
    for _ in 0..300 {
        let target = *rng.pick(&targets);
        let mut f = frame_to(world, target, crate::packet::rtp_payload(rng.range(0, 200)));
        match rng.below(3) {
            0 => f.src = SocketAddr::new(edge_source(rng, target.is_ipv6()), 5000),
            1 => f.dst_mac = [0x02, rng.u8(), rng.u8(), rng.u8(), rng.u8(), rng.u8()],
            _ => {}
        }
        let mut bytes = f.build();
        if target.is_ipv4() && rng.below(2) == 0 {
            let delta = rng.range(1, 0xfffe) as u16;
            let at = ETH_LEN + 10;
            let c = u16::from_be_bytes([bytes[at], bytes[at + 1]]).wrapping_add(delta);
            bytes[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        out.push(("stack would drop", bytes));
    }
    out
}

/// Bytes past the IP length, and an IP payload longer than the UDP length:
/// trimmed, as the stack trims them; on every forwarding stream.
pub fn surplus(rng: &mut Rng, world: &World) -> Vec<Case> {
    let mut out = Vec::new();
    for target in forwarding_targets(world) {
        for _ in 0..12 {
            let len = rng.range(0, 300);
            let mut f = frame_to(world, target, rng.bytes(len));
            match rng.below(4) {
                0 => f.partial_udp_checksum = true,
                1 => f.zero_udp_checksum = true,
                _ => {}
            }
            let mut f = f.build();
            let tail_len = rng.range(1, 64);
            let tail = rng.bytes(tail_len);
            if rng.below(2) == 0 {
                f.extend_from_slice(&tail); // past the IP length
            } else {
                // Inside the IP payload, past the UDP datagram.
                let at = ETH_LEN + if target.is_ipv6() { 4 } else { 2 };
                let ip_len = u16::from_be_bytes([f[at], f[at + 1]]) + tail.len() as u16;
                f.extend_from_slice(&tail);
                f[at..at + 2].copy_from_slice(&ip_len.to_be_bytes());
                fix_ipv4_header(&mut f);
            }
            out.push(("surplus bytes trimmed", f));
        }
    }
    out
}

/// How a mutated frame's checksums are left.
#[derive(Clone, Copy, Debug)]
pub enum Fixup {
    /// As mutated.
    None,
    /// IPv4 header checksum recomputed (so the mutation meets the parse).
    Header,
    /// IPv4 header and UDP checksums recomputed.
    All,
}

/// `n` valid frames with 1 to 4 bytes changed (half the time within the
/// headers), then checksums fixed up as `fixup` says.
pub fn mutations(rng: &mut Rng, world: &World, n: usize, fixup: Fixup) -> Vec<Case> {
    let category = match fixup {
        Fixup::None => "mutation, checksums as mutated",
        Fixup::Header => "mutation, IPv4 header checksum fixed",
        Fixup::All => "mutation, all checksums fixed",
    };
    (0..n)
        .map(|_| {
            let mut f = random_valid(rng, world);
            for _ in 0..rng.range(1, 4) {
                let span = if rng.below(2) == 0 {
                    f.len().min(ETH_LEN + 48)
                } else {
                    f.len()
                };
                let at = rng.below(span);
                f[at] = if rng.below(2) == 0 {
                    rng.u8()
                } else {
                    f[at] ^ 1 << rng.below(8)
                };
            }
            match fixup {
                Fixup::None => {}
                Fixup::Header => fix_ipv4_header(&mut f),
                Fixup::All => fix_checksums(&mut f),
            }
            (category, f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksums_ok;

    #[test]
    fn generator_is_deterministic() {
        let w = world();
        let a: Vec<_> = (0..50)
            .map(|_| random_valid(&mut Rng::new(7), &w))
            .collect();
        let b: Vec<_> = (0..50)
            .map(|_| random_valid(&mut Rng::new(7), &w))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn fixups_make_checksums_right() {
        let w = world();
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut f = random_valid(&mut rng, &w);
            f[ETH_LEN + 1] ^= 0x10; // TOS / traffic class: IPv4 header checksum wrong
            fix_checksums(&mut f); // partial ones become full too
            assert!(checksums_ok(&f), "{f:02x?}");
        }
    }

    #[test]
    fn extension_chain_lengths_add_up() {
        let w = world();
        let base = plain(&w, "[2001:db8:1::1]:30020", 10);
        let chain = with_ext_headers(&base, &[0, 60], 17);
        assert_eq!(chain.len(), base.len() + 16);
        assert_eq!(
            (chain[ETH_LEN + 6], chain[ETH_LEN + 40], chain[ETH_LEN + 48]),
            (0, 60, 17)
        );
        let plen = usize::from(u16::from_be_bytes([chain[ETH_LEN + 4], chain[ETH_LEN + 5]]));
        assert_eq!(plen, chain.len() - ETH_LEN - 40);
    }
}
