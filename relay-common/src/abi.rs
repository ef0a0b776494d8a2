//! Mirror of `relay-ebpf/include/relay_abi.h`. Byte order per field:
//! "net" = network byte order (store with `to_be`/from octets), "host" = CPU.

use core::{fmt, mem::offset_of};

/// `RELAY_ABI_MAGIC`: "XLRY" as a little-endian u32.
pub const ABI_MAGIC: u32 = 0x5952_4c58;
/// `RELAY_ABI_VERSION`: bump with every layout or semantic change.
pub const ABI_VERSION: u32 = 8;

/// Map names in the object (maps.h). The stream table: ARRAY of
/// [`StreamTarget`] indexed by [`RelayAddress::entry_index`].
pub const MAP_STREAMS: &str = "streams";
/// Per-stream state map: mmapable ARRAY of [`StreamState`] indexed by
/// [`StreamTarget::stats_slot`], one copy for all CPUs.
pub const MAP_STREAM_STATE: &str = "stream_state";
/// Program-wide counters map (PERCPU_ARRAY of [`Counter`]).
pub const MAP_COUNTERS: &str = "counters";
/// DEVMAP_HASH of interfaces a packet may be redirected to.
pub const MAP_TX_PORTS: &str = "tx_ports";
/// HASH ifindex -> [`IfaceStatus`] (userspace bookkeeping).
pub const MAP_IFACES: &str = "ifaces";
/// ARRAY of [`RelayAddress`] slots: the relay addresses (their rows of the
/// stream table and their DoS shields) as an open-addressed hash table, see
/// [`address_slot`].
pub const MAP_ADDRESSES: &str = "addresses";

/// ARRAY of [`IfaceMac`]: the MACs of the interfaces the program is
/// attached to, at slot `ifindex % IFACE_MAC_SLOTS`.
pub const MAP_IFACE_MACS: &str = "iface_macs";
/// `RELAY_IFACE_MAC_SLOTS`.
pub const IFACE_MAC_SLOTS: u32 = 256;

/// `RELAY_TF_STRICT_SOURCE`: drop packets whose source is not `expect_*`.
pub const TF_STRICT_SOURCE: u32 = 0x1;
/// `RELAY_TF_TO_USERSPACE`: relayd's port, not in the fast path yet: pass.
pub const TF_TO_USERSPACE: u32 = 0x2;
/// `RELAY_TF_RTP`: an RTP port: keep the RTP figures ([`RtpStats`]), and
/// count rtcp-mux and non-RTP packets apart.
pub const TF_RTP: u32 = 0x4;
/// `RELAY_TF_RTCP`: an RTCP port: count RTCP and other packets.
pub const TF_RTCP: u32 = 0x8;
/// `RELAY_TF_IN_USE`: set in every installed entry (0: no stream).
pub const TF_IN_USE: u32 = 0x10;
/// `RELAY_TF_JITTER`: RTP with a known clock rate: the program reads the
/// precise clock for the jitter.
pub const TF_JITTER: u32 = 0x20;
/// `RELAY_TF_ICE`: a port with an ICE-lite agent: STUN (the RFC 5389 magic
/// cookie at UDP payload offset 4, the first two bits 0) goes to the stack.
pub const TF_ICE: u32 = 0x40;
/// `RELAY_TF_RTCP_DEMUX`: an RTP port of a party that muxes RTCP towards a
/// party that does not: RTCP (RFC 5761 section 4, second byte 192..=223)
/// is forwarded by the entry of port + 1, the party's RTCP port, or passed
/// to the stack while that entry does not forward.
pub const TF_RTCP_DEMUX: u32 = 0x80;
/// `RELAY_SHIELD_DROP_UNKNOWN`: drop stream-less packets in the range.
pub const SHIELD_DROP_UNKNOWN: u32 = 0x1;
/// `RELAY_ADDR_IN_USE`: the address table slot holds an address.
pub const ADDR_IN_USE: u32 = 0x2;
/// `RELAY_ADDR_SLOT_BITS`: the address table has `1 << ADDR_SLOT_BITS` slots.
pub const ADDR_SLOT_BITS: u32 = 13;
/// `RELAY_ADDR_SLOTS`: slots of the address table.
pub const ADDR_SLOTS: u32 = 1 << ADDR_SLOT_BITS;
/// `RELAY_ADDR_PROBES`: an address sits in its home slot or one of the
/// `ADDR_PROBES - 1` after it.
pub const ADDR_PROBES: u32 = 8;
/// `RELAY_ADDR_HASH_MUL`: 2^32 / golden ratio.
const ADDR_HASH_MUL: u32 = 0x9e37_79b1;

/// `relay_address_hash`: the home slot of an address (16 bytes, IPv4
/// v4-mapped) in the address table. The program computes the same: the
/// halves as host-order 64-bit words, XORed, folded to 32 bits, multiplied
/// and shifted down to [`ADDR_SLOT_BITS`].
pub fn address_slot(addr: &[u8; 16]) -> u32 {
    let (lo, hi) = addr.split_at(8);
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
    let x = word(lo) ^ word(hi);
    let folded = (x ^ (x >> 32)) as u32;
    folded.wrapping_mul(ADDR_HASH_MUL) >> (32 - ADDR_SLOT_BITS)
}

/// The slots the program looks at for `addr`, in order.
pub fn address_probes(addr: &[u8; 16]) -> impl Iterator<Item = u32> {
    let home = address_slot(addr);
    (0..ADDR_PROBES).map(move |i| (home + i) & (ADDR_SLOTS - 1))
}

/// `struct relay_address`: one slot of the address table, holding a relay
/// address with its row of the stream table and its DoS shield (media port
/// range). All zero: an empty slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayAddress {
    /// net: the address, IPv4 v4-mapped.
    pub addr: [u8; 16],
    /// host: stream table index of `row_first_port`'s entry.
    pub row_base: u32,
    /// host: lowest media port (shield).
    pub port_min: u16,
    /// host: highest media port (shield).
    pub port_max: u16,
    /// host: `ADDR_IN_USE` and `SHIELD_*` flags.
    pub flags: u32,
    /// host: update sequence, odd while relayd rewrites the slot.
    pub seq: u16,
    /// host: first port of the address's row of the stream table.
    pub row_first_port: u16,
    /// host: last port of the row.
    pub row_last_port: u16,
    /// zero.
    pub _pad: u16,
}

impl RelayAddress {
    /// The stream table index of `port` of this address, as the program
    /// computes it; None for a port outside the address's row.
    pub fn entry_index(&self, port: u16) -> Option<u32> {
        (self.row_first_port..=self.row_last_port)
            .contains(&port)
            .then(|| self.row_base + u32::from(port - self.row_first_port))
    }

    /// The ports of the address's row, in entry order.
    pub fn row_ports(&self) -> core::ops::RangeInclusive<u16> {
        self.row_first_port..=self.row_last_port
    }
}

/// `struct relay_target`: one entry of the stream table, where a packet sent
/// to its relay address and port goes. All zero: no stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamTarget {
    /// net: destination (the other party), v4-mapped if IPv4. Its family is
    /// the egress family: unlike the key's, the packet is bridged.
    pub peer_addr: [u8; 16],
    /// net: relay address the packet leaves from, same family as `peer_addr`.
    pub src_addr: [u8; 16],
    /// net: expected sender (strict-source), in the key's family.
    pub expect_addr: [u8; 16],
    /// net: destination UDP port.
    pub peer_port: u16,
    /// net: relay UDP port the packet leaves from.
    pub src_port: u16,
    /// net: expected sender UDP port.
    pub expect_port: u16,
    /// host: update sequence, odd while relayd rewrites the entry (seqlock:
    /// the program passes packets that meet an entry being rewritten).
    pub seq: u16,
    /// host: `TF_*` flags; `TF_IN_USE` in every installed entry.
    pub flags: u32,
    /// host: index into the `stream_state` array.
    pub stats_slot: u32,
}

/// `struct relay_stream_stats`: one stream's counters and rate-cap bucket,
/// the first cache line of its [`StreamState`] (one copy for all CPUs; the
/// program adds to the counters atomically).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// host: packets forwarded by XDP.
    pub packets: u64,
    /// host: UDP payload bytes forwarded by XDP.
    pub bytes: u64,
    /// host: packets dropped (strict source, rate cap).
    pub dropped: u64,
    /// host: packets handed to the kernel stack (FIB/neighbour miss and
    /// the like).
    pub passed: u64,
    /// host: CLOCK_MONOTONIC(_COARSE) ns of the last packet.
    pub last_seen_ns: u64,
    /// host: rate-cap bucket, billionths of a packet (internal).
    pub tokens_nano: u64,
    /// host: last refill of the bucket (internal).
    pub refill_ns: u64,
    /// host: the stream's packet-rate cap, 0 = none (set by relayd).
    pub max_pps: u32,
    /// zero.
    pub _pad0: u32,
}

impl StreamStats {
    /// Adds `other`'s counts to these (the timestamp is the later of the
    /// two); the rate-cap fields are bookkeeping and are not totalled.
    pub fn accumulate(&mut self, other: &Self) {
        let Self {
            packets,
            bytes,
            dropped,
            passed,
            last_seen_ns,
            tokens_nano: _,
            refill_ns: _,
            max_pps: _,
            _pad0: _,
        } = other;
        self.packets += packets;
        self.bytes += bytes;
        self.dropped += dropped;
        self.passed += passed;
        self.last_seen_ns = self.last_seen_ns.max(*last_seen_ns);
    }
}

/// `struct relay_next_hop`: a stream's cached FIB answer (internal to the
/// program; relayd only zeroes it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// host: valid while the packet clock is below this; 0 = empty.
    pub until_ns: u64,
    /// host: egress interface.
    pub ifindex: u32,
    /// host: largest IP packet the cached lookup passed.
    pub max_len: u16,
    /// Next hop's MAC.
    pub dmac: [u8; 6],
    /// Egress interface's MAC.
    pub smac: [u8; 6],
    /// zero.
    pub _pad: [u8; 6],
}

/// `struct relay_rtp_stats`: what one stream's packets say about their RTP
/// source (RFC 3550 A.1, A.3, A.8). One copy shared by all CPUs (RSS keeps a
/// flow on one CPU); written by the XDP program and, while a stream is not in
/// the kernel, by relayd with the same algorithm ([`crate::rtp`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtpStats {
    /// host: RTP packets seen (any SSRC).
    pub rtp_packets: u64,
    /// host: RTCP packets (RTCP port, or rtcp-mux on the RTP port).
    pub rtcp_packets: u64,
    /// host: their UDP payload bytes.
    pub rtcp_bytes: u64,
    /// host: packets that are neither (STUN, DTLS, garbage).
    pub other_packets: u64,
    /// host: RTP packets of the current SSRC counted for loss (A.3 "received").
    pub received: u64,
    /// host: CLOCK_MONOTONIC ns of the previous RTP packet of this SSRC.
    pub last_arrival_ns: u64,
    /// host: current SSRC.
    pub ssrc: u32,
    /// host: times the SSRC changed after the first.
    pub ssrc_changes: u32,
    /// host: sequence number wraps, times 65536 (A.1 "cycles").
    pub cycles: u32,
    /// host: first sequence number of this SSRC (A.1 "base_seq").
    pub base_seq: u32,
    /// host: A.1 "bad_seq" (restart candidate); 65537 = none.
    pub bad_seq: u32,
    /// host: interarrival jitter times 16, in timestamp units (A.8).
    pub jitter_q4: u32,
    /// host: RTP timestamp of the previous packet of this SSRC.
    pub last_ts: u32,
    /// host: packets lost by earlier SSRCs and before sequence restarts.
    pub lost_before: u32,
    /// host: highest sequence number seen (A.1 "max_seq").
    pub max_seq: u16,
    /// Payload type of the last RTP packet.
    pub payload_type: u8,
    /// `RTP_STATE_*`: 0 until the first RTP packet.
    pub state: u8,
    /// host: RTP clock rate (Hz) for the jitter figure, 0 = unknown (no
    /// jitter); set by relayd.
    pub clock_rate: u32,
}

/// `struct relay_stream_state`: everything the program keeps for one stream,
/// 192 bytes (three cache lines) whatever the CPU count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Counters and rate cap (bytes 0-63).
    pub stats: StreamStats,
    /// Next-hop cache (bytes 64-95).
    pub nh: NextHop,
    /// RTP figures (bytes 96-183).
    pub rtp: RtpStats,
    /// zero.
    pub _pad: u64,
}

/// `struct relay_counter`: one CPU's count for one [`CounterId`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// host: packets.
    pub packets: u64,
    /// host: whole frame bytes as received.
    pub bytes: u64,
}

/// `RELAY_XDP_MODE_NATIVE`.
pub const XDP_MODE_NATIVE: u32 = 1;
/// `RELAY_XDP_MODE_GENERIC`.
pub const XDP_MODE_GENERIC: u32 = 2;
/// `RELAY_MODE_REASON_NATIVE_OK`: native attach and TX self-test passed.
pub const MODE_REASON_NATIVE_OK: u32 = 0;
/// `RELAY_MODE_REASON_NATIVE_REFUSED`: the driver refused native XDP.
pub const MODE_REASON_NATIVE_REFUSED: u32 = 1;
/// `RELAY_MODE_REASON_NATIVE_TX_LOST`: native XDP_TX frames were dropped.
pub const MODE_REASON_NATIVE_TX_LOST: u32 = 2;
/// `RELAY_MODE_REASON_CONFIGURED`: the operator asked for this mode.
pub const MODE_REASON_CONFIGURED: u32 = 3;

/// `struct relay_iface_status`: how relayd attached to one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceStatus {
    /// host: interface index.
    pub ifindex: u32,
    /// host: `XDP_MODE_*`.
    pub mode: u32,
    /// host: `MODE_REASON_*`.
    pub reason: u32,
    /// zero.
    pub _pad: u32,
    /// Interface name, NUL-padded.
    pub name: [u8; 16],
}

/// `struct relay_iface_mac`: one attached interface's MAC (all zero: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceMac {
    /// host: interface index, 0 = none.
    pub ifindex: u32,
    /// The interface's MAC.
    pub mac: [u8; 6],
    /// zero.
    pub _pad: u16,
}

/// `struct relay_abi_meta`: the handshake table compiled into the object.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiMeta {
    /// host: [`ABI_MAGIC`].
    pub magic: u32,
    /// host: [`ABI_VERSION`].
    pub version: u32,
    /// host: number of program-wide counters ([`CounterId::COUNT`]).
    pub counter_max: u32,
    /// host: [`LAYOUT_LEN`].
    pub layout_len: u32,
    /// host: sizes and offsets, in the order of [`LAYOUT`].
    pub layout: [u32; LAYOUT_LEN],
}

/// `RELAY_ABI_LAYOUT_LEN`.
pub const LAYOUT_LEN: usize = 75;

macro_rules! layout {
    ($( $kind:ident $ty:ident $(. $field:ident)? ),* $(,)?) => {
        /// Every struct size and field offset of the ABI, named, in the order
        /// the C object lists them in `relay_abi.layout`.
        pub const LAYOUT: [(&str, u32); LAYOUT_LEN] = [
            $( layout!(@entry $kind $ty $(. $field)?) ),*
        ];
    };
    (@entry size $ty:ident) => {
        (concat!("sizeof(", stringify!($ty), ")"), size_of::<$ty>() as u32)
    };
    (@entry off $ty:ident . $field:ident) => {
        (concat!(stringify!($ty), ".", stringify!($field)), offset_of!($ty, $field) as u32)
    };
}

layout![
    size StreamTarget,
    off StreamTarget.peer_addr,
    off StreamTarget.src_addr,
    off StreamTarget.expect_addr,
    off StreamTarget.peer_port,
    off StreamTarget.src_port,
    off StreamTarget.expect_port,
    off StreamTarget.seq,
    off StreamTarget.flags,
    off StreamTarget.stats_slot,
    size StreamStats,
    off StreamStats.packets,
    off StreamStats.bytes,
    off StreamStats.dropped,
    off StreamStats.passed,
    off StreamStats.last_seen_ns,
    off StreamStats.tokens_nano,
    off StreamStats.refill_ns,
    off StreamStats.max_pps,
    off StreamStats._pad0,
    size NextHop,
    off NextHop.until_ns,
    off NextHop.ifindex,
    off NextHop.max_len,
    off NextHop.dmac,
    off NextHop.smac,
    off NextHop._pad,
    size StreamState,
    off StreamState.stats,
    off StreamState.nh,
    off StreamState.rtp,
    off StreamState._pad,
    size Counter,
    off Counter.packets,
    off Counter.bytes,
    size IfaceStatus,
    off IfaceStatus.ifindex,
    off IfaceStatus.mode,
    off IfaceStatus.reason,
    off IfaceStatus._pad,
    off IfaceStatus.name,
    size IfaceMac,
    off IfaceMac.ifindex,
    off IfaceMac.mac,
    off IfaceMac._pad,
    size RelayAddress,
    off RelayAddress.addr,
    off RelayAddress.row_base,
    off RelayAddress.port_min,
    off RelayAddress.port_max,
    off RelayAddress.flags,
    off RelayAddress.seq,
    off RelayAddress.row_first_port,
    off RelayAddress.row_last_port,
    off RelayAddress._pad,
    size RtpStats,
    off RtpStats.rtp_packets,
    off RtpStats.rtcp_packets,
    off RtpStats.rtcp_bytes,
    off RtpStats.other_packets,
    off RtpStats.received,
    off RtpStats.last_arrival_ns,
    off RtpStats.ssrc,
    off RtpStats.ssrc_changes,
    off RtpStats.cycles,
    off RtpStats.base_seq,
    off RtpStats.bad_seq,
    off RtpStats.jitter_q4,
    off RtpStats.last_ts,
    off RtpStats.lost_before,
    off RtpStats.max_seq,
    off RtpStats.payload_type,
    off RtpStats.state,
    off RtpStats.clock_rate,
    size AbiMeta,
];

const _: () = assert!(size_of::<StreamTarget>() == 64);
const _: () = assert!(size_of::<StreamStats>() == 64);
const _: () = assert!(size_of::<NextHop>() == 32);
const _: () = assert!(size_of::<StreamState>() == 192);
const _: () = assert!(size_of::<Counter>() == 16);
const _: () = assert!(size_of::<IfaceStatus>() == 32);
const _: () = assert!(size_of::<IfaceMac>() == 12);
const _: () = assert!(size_of::<RelayAddress>() == 36);
const _: () = assert!(size_of::<RtpStats>() == 88);
const _: () = assert!(size_of::<AbiMeta>() == 16 + 4 * LAYOUT_LEN);

macro_rules! counters {
    ($( $variant:ident = $value:literal, $name:literal, $doc:literal; )*) => {
        /// `enum relay_counter_id`: program-wide outcomes. The index is ABI.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CounterId {
            $( #[doc = $doc] $variant = $value, )*
        }

        impl CounterId {
            /// All counters, in index order.
            pub const ALL: &'static [CounterId] = &[$(CounterId::$variant),*];
            /// `RELAY_CNT_MAX`.
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Stable snake_case name, used by relayctl and metrics.
            pub const fn name(self) -> &'static str {
                match self { $( CounterId::$variant => $name, )* }
            }

            /// One-line explanation for humans.
            pub const fn description(self) -> &'static str {
                match self { $( CounterId::$variant => $doc, )* }
            }
        }
    };
}

counters! {
    FwdTx = 0, "forwarded_tx", "forwarded out of the ingress interface (XDP_TX)";
    FwdRedirect = 1, "forwarded_redirect", "forwarded to another interface (DEVMAP redirect)";
    PassNotIp = 2, "passed_not_ip", "passed: ARP or another non-IP ethertype";
    PassIpv6 = 3, "passed_ipv6", "passed: IPv6 with an extension header (fragments included)";
    PassNotUdp = 4, "passed_not_udp", "passed: not UDP (ICMPv6 and neighbour discovery included)";
    PassIpOptions = 5, "passed_ip_options", "passed: IPv4 header with options";
    PassFragment = 6, "passed_fragment", "passed: IPv4 fragment";
    PassMalformed = 7, "passed_malformed", "passed: truncated or inconsistent headers";
    PassNoStream = 8, "passed_no_stream", "passed: no stream for the destination address/port";
    PassFibMiss = 9, "passed_fib_miss", "passed: no route or neighbour entry for the peer yet";
    PassNoTxPort = 10, "passed_no_tx_port", "passed: egress interface not attached to the relay";
    DropStrictSource = 11, "dropped_strict_source", "dropped: strict-source stream, unexpected sender";
    PassToUserspace = 12, "passed_to_userspace", "passed: relayd's port, endpoints still being learned";
    DropNoStream = 13, "dropped_no_stream", "dropped: media port range, no stream (DoS shield)";
    DropRate = 14, "dropped_rate", "dropped: stream over its packet-rate cap (--max-stream-pps)";
    PassNoCsum = 15, "passed_no_csum", "passed: IPv4 without UDP checksum, to be bridged to IPv6 (relayd's socket sends it)";
    PassNoHeadroom = 16, "passed_no_headroom", "passed: no room in front of the frame to grow it (IPv4 to IPv6)";
    PassUpdating = 17, "passed_updating", "passed: relayd was rewriting the stream's entry or an address slot the lookup crossed (the stack delivers it: to relayd's socket, or wherever a packet for another address goes)";
    PassVlan = 18, "passed_vlan", "passed: 802.1Q/802.1ad-tagged frame (the stack delivers it to its VLAN device, or drops it)";
    DropBadHeader = 19, "dropped_bad_header", "dropped: IPv4 header checksum wrong (the stack drops it too)";
    DropOtherHost = 20, "dropped_other_host", "dropped: destination MAC of another host (promiscuous or bridged port; the stack drops it too)";
    DropMartian = 21, "dropped_martian", "dropped: martian source (loopback, unspecified, multicast, broadcast, v4-mapped, link-local to a global address, or the relay address itself)";
}

impl CounterId {
    /// Whether this outcome forwarded the packet in the kernel.
    pub const fn is_forwarded(self) -> bool {
        matches!(self, CounterId::FwdTx | CounterId::FwdRedirect)
    }

    /// Whether this outcome dropped the packet.
    pub const fn is_dropped(self) -> bool {
        matches!(
            self,
            CounterId::DropStrictSource
                | CounterId::DropNoStream
                | CounterId::DropRate
                | CounterId::DropBadHeader
                | CounterId::DropOtherHost
                | CounterId::DropMartian
        )
    }
}

/// What the object's ABI table says is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiMismatch {
    /// Not an xrelay object at all.
    Magic {
        /// The magic number found.
        found: u32,
    },
    /// Built from another ABI version.
    Version {
        /// Version in the object.
        found: u32,
        /// Version this build expects.
        expected: u32,
    },
    /// Another number of program-wide counters.
    Counters {
        /// Count in the object.
        found: u32,
        /// Count this build expects.
        expected: u32,
    },
    /// A struct size or field offset differs.
    Layout {
        /// Which size or offset (e.g. `StreamTarget.flags`).
        what: &'static str,
        /// Value in the object.
        found: u32,
        /// Value this build computes.
        expected: u32,
    },
}

impl fmt::Display for AbiMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiMismatch::Magic { found } => {
                write!(f, "not an xrelay object (ABI magic {found:#x})")
            }
            AbiMismatch::Version { found, expected } => {
                write!(
                    f,
                    "object has ABI version {found}, this relayd speaks {expected}"
                )
            }
            AbiMismatch::Counters { found, expected } => {
                write!(
                    f,
                    "object has {found} counters, this relayd expects {expected}"
                )
            }
            AbiMismatch::Layout {
                what,
                found,
                expected,
            } => {
                write!(
                    f,
                    "{what} is {found} in the object but {expected} in relay-common"
                )
            }
        }
    }
}

impl core::error::Error for AbiMismatch {}

/// The table this build of relay-common expects the object to carry.
pub fn expected_meta() -> AbiMeta {
    let mut layout = [0u32; LAYOUT_LEN];
    for (slot, (_, value)) in layout.iter_mut().zip(LAYOUT.iter()) {
        *slot = *value;
    }
    AbiMeta {
        magic: ABI_MAGIC,
        version: ABI_VERSION,
        counter_max: CounterId::COUNT,
        layout_len: LAYOUT_LEN as u32,
        layout,
    }
}

/// Parses the raw `relay_abi` bytes of an object (host byte order).
pub fn parse_meta(bytes: &[u8]) -> Option<AbiMeta> {
    if bytes.len() < size_of::<AbiMeta>() {
        return None;
    }
    let word = |i: usize| {
        let b = &bytes[i * 4..i * 4 + 4];
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    };
    let mut layout = [0u32; LAYOUT_LEN];
    for (i, slot) in layout.iter_mut().enumerate() {
        *slot = word(4 + i);
    }
    Some(AbiMeta {
        magic: word(0),
        version: word(1),
        counter_max: word(2),
        layout_len: word(3),
        layout,
    })
}

/// Compares an object's table with [`expected_meta`]; the first difference wins.
pub fn check_meta(found: &AbiMeta) -> Result<(), AbiMismatch> {
    let expected = expected_meta();
    if found.magic != expected.magic {
        return Err(AbiMismatch::Magic { found: found.magic });
    }
    if found.version != expected.version {
        return Err(AbiMismatch::Version {
            found: found.version,
            expected: expected.version,
        });
    }
    if found.counter_max != expected.counter_max {
        return Err(AbiMismatch::Counters {
            found: found.counter_max,
            expected: expected.counter_max,
        });
    }
    if found.layout_len != expected.layout_len {
        return Err(AbiMismatch::Layout {
            what: "layout table length",
            found: found.layout_len,
            expected: expected.layout_len,
        });
    }
    for ((what, want), got) in LAYOUT.iter().zip(found.layout.iter()) {
        if want != got {
            return Err(AbiMismatch::Layout {
                what,
                found: *got,
                expected: *want,
            });
        }
    }
    Ok(())
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), fixed-width integer fields only, explicit padding, so
    // every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::StreamTarget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StreamStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IfaceStatus {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RelayAddress {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NextHop {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StreamState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IfaceMac {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v4-mapped address, as the tables store IPv4.
    fn mapped(v4: u32) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&v4.to_be_bytes());
        a
    }

    #[test]
    fn address_slots_are_in_the_table_and_spread() {
        // A /22 of consecutive addresses, as a relay's interfaces might be:
        // no slot should hold more than a few of them.
        let mut per_slot = [0u8; ADDR_SLOTS as usize];
        for i in 0..1024u32 {
            let slot = address_slot(&mapped(0x0a00_0000 + i));
            assert!(slot < ADDR_SLOTS);
            per_slot[slot as usize] += 1;
        }
        let used = per_slot.iter().filter(|&&n| n > 0).count();
        assert!(used > 900, "{used} distinct slots");
        assert!(per_slot.iter().all(|&n| n <= 3));
        // The halves are folded together: IPv6 addresses differing only in
        // the upper half land apart too.
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        let a = address_slot(&v6);
        v6[1] = 0x01;
        assert_ne!(a, address_slot(&v6));
    }

    /// Slots worked out apart from this code (the formula of relay_abi.h
    /// evaluated by hand, little-endian host): changing the hash changes
    /// where the program looks, which is an ABI change.
    #[cfg(target_endian = "little")]
    #[test]
    fn address_slots_are_the_abi_ones() {
        let v6 = |s: &str| s.parse::<core::net::Ipv6Addr>().unwrap().octets();
        for (addr, slot) in [
            (mapped(0x0a00_0001), 111),  // 10.0.0.1
            (mapped(0xc000_0201), 4465), // 192.0.2.1
            (mapped(0xcb00_71c8), 8101), // 203.0.113.200
            (v6("2001:db8::1"), 684),
            (v6("fe80::1"), 3356),
        ] {
            assert_eq!(address_slot(&addr), slot, "{addr:02x?}");
        }
    }

    #[test]
    fn probes_start_at_home_and_wrap() {
        let key = (0..)
            .map(mapped)
            .find(|k| address_slot(k) == ADDR_SLOTS - 2)
            .unwrap();
        let mut probes = address_probes(&key);
        for want in [ADDR_SLOTS - 2, ADDR_SLOTS - 1, 0, 1, 2, 3, 4, 5] {
            assert_eq!(probes.next(), Some(want));
        }
        assert_eq!(probes.next(), None, "{ADDR_PROBES} probes");
    }

    #[test]
    fn entry_index_follows_the_row_and_refuses_ports_outside() {
        let a = RelayAddress {
            row_base: 20,
            row_first_port: 30000,
            row_last_port: 30009,
            ..RelayAddress::default()
        };
        assert_eq!(a.entry_index(30000), Some(20));
        assert_eq!(a.entry_index(30009), Some(29));
        for port in [0, 29999, 30010, u16::MAX] {
            assert_eq!(a.entry_index(port), None, "{port}");
        }
        // The 32-byte slot of earlier layouts: row << 16 | port.
        let old = crate::abi_v7::RelayAddress {
            row: 3,
            flags: ADDR_IN_USE,
            ..Default::default()
        }
        .current();
        assert_eq!(old.entry_index(0), Some(3 << 16));
        assert_eq!(old.entry_index(u16::MAX), Some((3 << 16) | 0xffff));
        assert_eq!(old.flags, ADDR_IN_USE);
    }

    #[test]
    fn expected_meta_checks_clean() {
        assert_eq!(check_meta(&expected_meta()), Ok(()));
    }

    #[test]
    fn a_moved_field_is_named() {
        let mut meta = expected_meta();
        let idx = LAYOUT
            .iter()
            .position(|(n, _)| *n == "StreamTarget.flags")
            .unwrap();
        meta.layout[idx] += 4;
        let err = check_meta(&meta).unwrap_err();
        assert!(
            matches!(
                err,
                AbiMismatch::Layout {
                    what: "StreamTarget.flags",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn version_and_magic_are_checked() {
        let mut meta = expected_meta();
        meta.version += 1;
        assert!(matches!(
            check_meta(&meta),
            Err(AbiMismatch::Version { .. })
        ));
        meta = expected_meta();
        meta.magic = 0;
        assert!(matches!(
            check_meta(&meta),
            Err(AbiMismatch::Magic { found: 0 })
        ));
    }

    #[test]
    fn parse_meta_round_trips() {
        let meta = expected_meta();
        let mut bytes = [0u8; size_of::<AbiMeta>()];
        let words = [meta.magic, meta.version, meta.counter_max, meta.layout_len];
        for (i, w) in words.iter().chain(meta.layout.iter()).enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        assert_eq!(parse_meta(&bytes), Some(meta));
        assert_eq!(parse_meta(&bytes[..10]), None);
    }

    #[test]
    fn counter_names_are_unique_and_indices_dense() {
        for (i, c) in CounterId::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            for d in &CounterId::ALL[i + 1..] {
                assert_ne!(c.name(), d.name());
            }
        }
    }
}
