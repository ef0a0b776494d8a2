//! The maps of a relayd this one takes over (another ABI version, or this
//! version in another layout), read so that the streams it forwards carry
//! on in the new maps with their counters and RTP figures.
//!
//! The new relayd copies every entry and its state record into its own
//! maps before its program runs anywhere ([`Predecessor::streams`],
//! [`Predecessor::record`]); the restored calls then adopt those entries as
//! they would adopt their own pins. The old program keeps forwarding (and
//! counting in its maps) until the links are swapped, so just before the
//! swap each record is brought up to the old one ([`Imported::catch_up`]:
//! counters and RTP figures), and once every link is swapped the last
//! counts of the old program are added to the live record
//! ([`Imported::settle`]): the program's counters are atomic adds, so
//! relayd's atomic add loses nothing.
//!
//! Readable layouts: ABI v8 (`stream_state`) and v7 (per-CPU
//! `stream_stats` plus `rtp_stats`); the stream entry is the same in both;
//! the address slot of v7 and of the first v8 builds (32 bytes, rows of all
//! 65536 ports) is told from today's (36 bytes, rows sized to the port
//! range) by its size. Anything else is not read: its calls come back from
//! the state store's counters instead.

use std::{
    net::SocketAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData, PerCpuArray};
use relay_common::{
    abi_v7, RelayAddress, RtpStats, StreamState, StreamStats, StreamTarget, MAP_ADDRESSES,
    MAP_STREAMS, MAP_STREAM_STATE,
};

use super::{
    super::DatapathError,
    maps::{array_fd, read_installed, read_rows, read_rows_as},
    state_array::StateArray,
};

/// Where a predecessor keeps its per-stream records.
enum Records {
    V8(StateArray),
    V7 {
        stats: PerCpuArray<MapData, abi_v7::StreamStats>,
        rtp: Array<MapData, RtpStats>,
    },
}

/// The pinned maps of the relayd being taken over.
pub struct Predecessor {
    dir: PathBuf,
    streams: Vec<(SocketAddr, StreamTarget)>,
    records: Records,
}

impl std::fmt::Debug for Predecessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predecessor")
            .field("dir", &self.dir)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

fn open_pinned(dir: &Path, name: &str) -> Result<Map, DatapathError> {
    let op = "opening the taken-over relayd's maps";
    let data =
        MapData::from_pin(dir.join(name)).map_err(|source| DatapathError::Map { op, source })?;
    Map::from_map_data(data).map_err(|source| DatapathError::Map { op, source })
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(map: Map) -> Result<T, DatapathError> {
    T::try_from(map).map_err(|source| DatapathError::Map {
        op: "checking the taken-over relayd's maps",
        source,
    })
}

impl Predecessor {
    /// Reads the stream table and opens the records under `dir`.
    pub fn open(dir: &Path) -> Result<Self, DatapathError> {
        // The typed views check the value sizes before anything is read.
        let addresses = open_pinned(dir, MAP_ADDRESSES)?;
        let addresses_fd = array_fd(&addresses, "duplicating the old address table")?;
        let legacy_slots = matches!(&addresses, Map::Array(data)
            if data.info().is_ok_and(|i| i.value_size() as usize == size_of::<abi_v7::RelayAddress>()));
        let rows = if legacy_slots {
            let _: Array<MapData, abi_v7::RelayAddress> = typed(addresses)?;
            read_rows_as(addresses_fd.as_fd(), |a: abi_v7::RelayAddress| a.current())?
        } else {
            let _: Array<MapData, RelayAddress> = typed(addresses)?;
            read_rows(addresses_fd.as_fd())?
        };
        let streams = open_pinned(dir, MAP_STREAMS)?;
        let streams_fd = array_fd(&streams, "duplicating the old stream table")?;
        let _: Array<MapData, StreamTarget> = typed(streams)?;
        let streams = read_installed(&rows, streams_fd.as_fd())?;

        let records = if dir.join(MAP_STREAM_STATE).exists() {
            Records::V8(StateArray::new(open_pinned(dir, MAP_STREAM_STATE)?)?)
        } else {
            Records::V7 {
                stats: typed(open_pinned(dir, abi_v7::MAP_STREAM_STATS)?)?,
                rtp: typed(open_pinned(dir, abi_v7::MAP_RTP_STATS)?)?,
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            streams,
            records,
        })
    }

    /// Every entry of its stream table, by relay address and port.
    pub fn streams(&self) -> &[(SocketAddr, StreamTarget)] {
        &self.streams
    }

    /// The record of `slot` as v8 lays it out (counters, rate cap and RTP
    /// figures; the next-hop cache is left empty, to be filled afresh).
    pub fn record(&self, slot: u32) -> Result<StreamState, DatapathError> {
        let (stats, rtp) = match &self.records {
            Records::V8(array) => {
                let s = array.read(slot)?;
                (s.stats, s.rtp)
            }
            Records::V7 { stats, rtp } => {
                let op = "reading the taken-over relayd's counters";
                let per_cpu = stats
                    .get(&slot, 0)
                    .map_err(|source| DatapathError::Map { op, source })?;
                let rtp = rtp
                    .get(&slot, 0)
                    .map_err(|source| DatapathError::Map { op, source })?;
                (abi_v7::StreamStats::total(per_cpu.iter()), rtp)
            }
        };
        Ok(StreamState {
            stats: StreamStats {
                tokens_nano: 0,
                refill_ns: 0,
                ..stats
            },
            rtp,
            ..StreamState::default()
        })
    }
}

/// A stream copied from a predecessor: where its record now lives and what
/// the predecessor's record said when it was last copied.
#[derive(Clone, Debug)]
pub struct Imported {
    /// Relay address and port.
    pub local: SocketAddr,
    /// Its slot in the predecessor's records.
    pub old_slot: u32,
    /// Its slot in this relayd's records.
    pub new_slot: u32,
    /// The predecessor's record at the last copy.
    pub copied: StreamState,
}

fn since(later: u64, earlier: u64) -> u64 {
    later.saturating_sub(earlier)
}

impl Imported {
    /// `record` (this relayd's copy, not yet live) brought up to what the
    /// predecessor's record `now` says: the counts it added since the last
    /// copy on top of `record`'s, and its latest RTP figures (keeping the
    /// clock rate relayd set). `now` becomes the last copy.
    pub fn catch_up(&mut self, record: &StreamState, now: &StreamState) -> StreamState {
        let delta = self.counts_since(now);
        self.copied = *now;
        let stats = StreamStats {
            last_seen_ns: record.stats.last_seen_ns.max(now.stats.last_seen_ns),
            ..add_counts(&record.stats, &delta.stats)
        };
        StreamState {
            stats,
            rtp: RtpStats {
                clock_rate: record.rtp.clock_rate,
                ..now.rtp
            },
            ..*record
        }
    }

    /// What the predecessor counted since the last copy, by `now`: the
    /// counters of [`StreamState`] that the program adds to, everything
    /// else zero. For a live record, added with atomic adds.
    pub fn counts_since(&self, now: &StreamState) -> StreamState {
        let (was, is) = (&self.copied, now);
        StreamState {
            stats: StreamStats {
                packets: since(is.stats.packets, was.stats.packets),
                bytes: since(is.stats.bytes, was.stats.bytes),
                dropped: since(is.stats.dropped, was.stats.dropped),
                passed: since(is.stats.passed, was.stats.passed),
                ..StreamStats::default()
            },
            rtp: RtpStats {
                rtp_packets: since(is.rtp.rtp_packets, was.rtp.rtp_packets),
                rtcp_packets: since(is.rtp.rtcp_packets, was.rtp.rtcp_packets),
                rtcp_bytes: since(is.rtp.rtcp_bytes, was.rtp.rtcp_bytes),
                other_packets: since(is.rtp.other_packets, was.rtp.other_packets),
                received: since(is.rtp.received, was.rtp.received),
                ..RtpStats::default()
            },
            ..StreamState::default()
        }
    }
}

fn add_counts(a: &StreamStats, b: &StreamStats) -> StreamStats {
    StreamStats {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
        dropped: a.dropped + b.dropped,
        passed: a.passed + b.passed,
        ..*a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_up_then_settle_carry_every_count() {
        let state = |packets, last_seen_ns| StreamState {
            stats: StreamStats {
                packets,
                bytes: packets * 160,
                last_seen_ns,
                ..StreamStats::default()
            },
            rtp: RtpStats {
                rtp_packets: packets,
                received: packets,
                ..RtpStats::default()
            },
            ..StreamState::default()
        };
        let mut imported = Imported {
            local: "10.0.0.1:30000".parse().unwrap(),
            old_slot: 3,
            new_slot: 7,
            copied: state(100, 1_000),
        };
        let mut record = state(100, 1_000);
        record.stats.max_pps = 50;
        record.rtp.clock_rate = 8000;
        let caught = imported.catch_up(&record, &state(130, 2_000));
        assert_eq!(caught.stats.packets, 130);
        assert_eq!(caught.stats.bytes, 130 * 160);
        assert_eq!(caught.stats.last_seen_ns, 2_000);
        assert_eq!(caught.stats.max_pps, 50, "relayd's rate cap kept");
        assert_eq!(caught.rtp.rtp_packets, 130);
        assert_eq!(caught.rtp.clock_rate, 8000, "relayd's clock rate kept");

        // The old program forwarded two more before its links were swapped.
        let last = imported.counts_since(&state(132, 2_040));
        assert_eq!(
            (last.stats.packets, last.stats.bytes, last.rtp.received),
            (2, 320, 2)
        );
        assert_eq!(last.stats.last_seen_ns, 0, "only counters are added");
    }
}
