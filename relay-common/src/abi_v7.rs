//! What ABI v7 laid out differently from v8, kept so that a relayd of ABI
//! v8 taking over from a v7 relayd carries on its streams' counters and RTP
//! figures. Everything else of v7 (the stream entry, the RTP figures) has
//! v8's layout.

/// v7's per-stream counters map: PERCPU_ARRAY of [`StreamStats`].
pub const MAP_STREAM_STATS: &str = "stream_stats";
/// v7's RTP figures map: ARRAY of [`crate::RtpStats`], indexed like
/// `stream_stats`.
pub const MAP_RTP_STATS: &str = "rtp_stats";

/// v7's `struct relay_stream_stats`: one CPU's counters for one stream,
/// with that CPU's rate-cap bucket and next-hop cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// host: packets forwarded by XDP.
    pub packets: u64,
    /// host: UDP payload bytes forwarded by XDP.
    pub bytes: u64,
    /// host: packets dropped.
    pub dropped: u64,
    /// host: packets handed to the kernel stack.
    pub passed: u64,
    /// host: CLOCK_MONOTONIC(_COARSE) ns of the last packet (max over CPUs).
    pub last_seen_ns: u64,
    /// host: this CPU's rate-cap bucket.
    pub tokens_milli: u64,
    /// host: this CPU's last refill.
    pub refill_ns: u64,
    /// host: this CPU's next-hop cache expiry.
    pub nh_until_ns: u64,
    /// host: cached egress interface.
    pub nh_ifindex: u32,
    /// host: largest packet the cached lookup passed.
    pub nh_max_len: u16,
    /// Cached next-hop MAC.
    pub nh_dmac: [u8; 6],
    /// Cached egress MAC.
    pub nh_smac: [u8; 6],
    /// zero.
    pub _pad0: u16,
    /// host: the rate cap (the same in every CPU's copy).
    pub max_pps: u32,
}

const _: () = assert!(size_of::<StreamStats>() == 88);

impl StreamStats {
    /// The v8 counters of a stream whose v7 copies (one per CPU) are
    /// `per_cpu`: sums, the latest timestamp, the rate cap.
    pub fn total<'a>(per_cpu: impl IntoIterator<Item = &'a Self>) -> crate::StreamStats {
        let mut total = crate::StreamStats::default();
        for s in per_cpu {
            total.accumulate(&crate::StreamStats {
                packets: s.packets,
                bytes: s.bytes,
                dropped: s.dropped,
                passed: s.passed,
                last_seen_ns: s.last_seen_ns,
                ..crate::StreamStats::default()
            });
            total.max_pps = s.max_pps;
        }
        total
    }
}

/// The 32-byte address slot of v7 (and of the first v8 builds): every
/// address's row covered all 65536 ports, its entries at `row << 16 | port`.
/// Told apart from today's slot by the `addresses` map's value size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayAddress {
    /// net: the address, IPv4 v4-mapped.
    pub addr: [u8; 16],
    /// host: the address's entries are `row << 16 | port`.
    pub row: u32,
    /// host: lowest media port (shield).
    pub port_min: u16,
    /// host: highest media port (shield).
    pub port_max: u16,
    /// host: `ADDR_IN_USE` and `SHIELD_*` flags.
    pub flags: u32,
    /// host: update sequence.
    pub seq: u16,
    /// zero.
    pub _pad: u16,
}

const _: () = assert!(size_of::<RelayAddress>() == 32);

impl RelayAddress {
    /// The same slot in today's layout: a row of all 65536 ports.
    pub fn current(&self) -> crate::RelayAddress {
        crate::RelayAddress {
            addr: self.addr,
            row_base: self.row << 16,
            port_min: self.port_min,
            port_max: self.port_max,
            flags: self.flags,
            seq: self.seq,
            row_first_port: 0,
            row_last_port: u16::MAX,
            _pad: 0,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), fixed-width integer fields only, explicit padding.
unsafe impl aya::Pod for RelayAddress {}

#[cfg(feature = "user")]
// SAFETY: repr(C), fixed-width integer fields only, explicit padding.
unsafe impl aya::Pod for StreamStats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_copies_total_like_v8_counters() {
        let cpu = |packets, last_seen_ns| StreamStats {
            packets,
            bytes: packets * 160,
            last_seen_ns,
            max_pps: 50,
            ..StreamStats::default()
        };
        let total = StreamStats::total(&[cpu(3, 900), cpu(4, 700)]);
        assert_eq!(
            (
                total.packets,
                total.bytes,
                total.last_seen_ns,
                total.max_pps
            ),
            (7, 1120, 900, 50)
        );
    }
}
