//! The `stream_state` map, mapped into relayd's memory.
//!
//! Every kernel stream has a [`StreamState`] record (counters, rate cap,
//! next-hop cache, RTP figures) that the program updates for each packet.
//! The map is an mmapable array, so relayd and relayctl read a stream's
//! counters with plain loads instead of a system call per stream, and set
//! the two fields relayd owns in a live record (`max_pps`, `clock_rate`)
//! without rewriting the rest: a map update copies the whole value and
//! would undo additions the program makes meanwhile.
//!
//! Every access is an aligned 8- or 4-byte atomic load or store, the way
//! memory shared with the kernel must be touched. A record read while the
//! program updates it may mix fields from before and after one packet;
//! each field on its own is whole.

use std::{
    mem::{offset_of, size_of},
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};
use relay_common::{RtpStats, StreamState, StreamStats};

use super::super::DatapathError;

/// 8-byte words in one record.
const WORDS: usize = size_of::<StreamState>() / 8;
const _: () = assert!(size_of::<StreamState>().is_multiple_of(8));

/// `BPF_F_MMAPABLE` (linux/bpf.h).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The mapped `stream_state` array.
pub struct StateArray {
    base: NonNull<u64>,
    mapped_len: usize,
    entries: u32,
    /// Keeps the map alive as long as the mapping (and lets relayd pin it).
    map: MapData,
}

// SAFETY: the mapping is shared memory that is only ever accessed through
// atomic loads and stores (see the module comment), so it may be used from
// any thread.
unsafe impl Send for StateArray {}
// SAFETY: as above.
unsafe impl Sync for StateArray {}

impl std::fmt::Debug for StateArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateArray")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

fn layout_error(what: String) -> DatapathError {
    DatapathError::Io {
        op: "mapping the stream state array",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    }
}

impl StateArray {
    /// Maps `map`, which must be the program's `stream_state` array.
    pub fn new(map: Map) -> Result<Self, DatapathError> {
        let Map::Array(map) = map else {
            return Err(layout_error("stream_state is not an ARRAY map".into()));
        };
        let info = map.info().map_err(|source| DatapathError::Map {
            op: "reading the stream state map's definition",
            source,
        })?;
        if info.value_size() as usize != size_of::<StreamState>() {
            return Err(layout_error(format!(
                "stream_state values are {} bytes, this relayd's records {}",
                info.value_size(),
                size_of::<StreamState>()
            )));
        }
        if info.map_flags() & BPF_F_MMAPABLE == 0 {
            return Err(layout_error("stream_state is not mmapable".into()));
        }
        let entries = info.max_entries();
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as usize;
        let mapped_len = (entries as usize * size_of::<StreamState>()).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's whole value area (the
        // kernel allows exactly that much); nothing else aliases it in this
        // process, and it is unmapped in Drop.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(DatapathError::Io {
                op: "mapping the stream state array",
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(addr.cast::<u64>()).ok_or_else(|| layout_error("null".into()))?;
        Ok(Self {
            base,
            mapped_len,
            entries,
            map,
        })
    }

    /// The map itself.
    pub fn map(&self) -> &MapData {
        &self.map
    }

    /// Records in the array.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The record of `slot`, word `word`, as an atomic.
    fn word(&self, slot: u32, word: usize) -> Result<&AtomicU64, DatapathError> {
        if slot >= self.entries {
            return Err(DatapathError::NoSuchSlot(slot));
        }
        // SAFETY: slot < entries and word < WORDS keep the pointer inside
        // the mapping; records are 8-byte aligned (page-aligned base, size a
        // multiple of 8); the memory lives as long as `self`.
        Ok(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(slot as usize * WORDS + word)) })
    }

    /// The 4-byte field at byte `offset` of `slot`'s record.
    fn word32(&self, slot: u32, offset: usize) -> Result<&AtomicU32, DatapathError> {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= size_of::<StreamState>());
        let word = self.word(slot, offset / 8)?;
        // SAFETY: `offset` is 4-aligned inside the record, so the pointer is
        // a valid, aligned u32 within the word just bounds-checked.
        Ok(unsafe { AtomicU32::from_ptr(word.as_ptr().cast::<u32>().add(offset % 8 / 4)) })
    }

    /// `slot`'s record as it is now.
    pub fn read(&self, slot: u32) -> Result<StreamState, DatapathError> {
        let mut words = [0u64; WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.word(slot, i)?.load(Ordering::Relaxed);
        }
        // SAFETY: StreamState is repr(C), exactly WORDS * 8 bytes of plain
        // integers, so every bit pattern is a valid value.
        Ok(unsafe { std::mem::transmute::<[u64; WORDS], StreamState>(words) })
    }

    /// Overwrites `slot`'s record. Only for a slot no stream entry points
    /// to (the program cannot be adding to it).
    pub fn reset(&self, slot: u32, state: &StreamState) -> Result<(), DatapathError> {
        // SAFETY: as in `read`, the other way round.
        let words = unsafe { std::mem::transmute::<StreamState, [u64; WORDS]>(*state) };
        for (i, w) in words.iter().enumerate() {
            self.word(slot, i)?.store(*w, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Adds `delta`'s counters (the fields the program adds to atomically:
    /// [`StreamStats`] packets, bytes, dropped, passed; [`RtpStats`] packet
    /// classes and `received`) to `slot`'s live record. `received` is a
    /// plain add in the program: racing a packet of the stream in the same
    /// instant could lose one of the two.
    pub fn add_counts(&self, slot: u32, delta: &StreamState) -> Result<(), DatapathError> {
        let stats = offset_of!(StreamState, stats);
        let rtp = offset_of!(StreamState, rtp);
        let (s, r) = (&delta.stats, &delta.rtp);
        for (offset, n) in [
            (stats + offset_of!(StreamStats, packets), s.packets),
            (stats + offset_of!(StreamStats, bytes), s.bytes),
            (stats + offset_of!(StreamStats, dropped), s.dropped),
            (stats + offset_of!(StreamStats, passed), s.passed),
            (rtp + offset_of!(RtpStats, rtp_packets), r.rtp_packets),
            (rtp + offset_of!(RtpStats, rtcp_packets), r.rtcp_packets),
            (rtp + offset_of!(RtpStats, rtcp_bytes), r.rtcp_bytes),
            (rtp + offset_of!(RtpStats, other_packets), r.other_packets),
            (rtp + offset_of!(RtpStats, received), r.received),
        ] {
            if n != 0 {
                self.word(slot, offset / 8)?.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Sets the packet-rate cap of a live record.
    pub fn set_max_pps(&self, slot: u32, max_pps: u32) -> Result<(), DatapathError> {
        let offset = offset_of!(StreamState, stats) + offset_of!(StreamStats, max_pps);
        self.word32(slot, offset)?.store(max_pps, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the RTP clock rate (for the jitter) of a live record.
    pub fn set_clock_rate(&self, slot: u32, clock_rate: u32) -> Result<(), DatapathError> {
        let offset = offset_of!(StreamState, rtp) + offset_of!(RtpStats, clock_rate);
        self.word32(slot, offset)?
            .store(clock_rate, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for StateArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped_len);
        }
    }
}
