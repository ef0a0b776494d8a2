//! Moving streams into the kernel fast path and out again.
//!
//! A port's stream (packets arriving at it, from its party, leaving by its
//! sink towards the other party) goes into the kernel once both parties'
//! endpoints are confirmed, and leaves it on delete, on re-signalling that
//! changes an endpoint, and on timeout. Its kernel counters are folded into
//! the port when it leaves, so totals never go backwards.

use std::time::Duration;

use relay_common::StreamStats;
use tokio::time::Instant;

use super::port::MediaPort;

/// Slot of pass-to-userspace entries: they count nothing.
const NO_SLOT: u32 = u32::MAX;
use crate::datapath::{Datapath, MediaTracking, StreamSpec};

/// Hands out kernel counter slots.
#[derive(Debug)]
pub struct SlotAllocator {
    free: Vec<u32>,
}

impl SlotAllocator {
    /// Slots `0..capacity`.
    pub fn new(capacity: u32) -> Self {
        SlotAllocator {
            free: (0..capacity).rev().collect(),
        }
    }

    /// A free slot, if any.
    pub fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// Gives a slot back.
    pub fn give(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Slots free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// The kernel side of the call manager: a datapath (None in
/// `--datapath=userspace`) and its slots.
pub struct Kernel {
    datapath: Option<Box<dyn Datapath + Send>>,
    slots: SlotAllocator,
    /// Keep pass entries for ports still learning: needed when the DoS
    /// shield drops stream-less packets, wasted table space otherwise.
    pass_entries: bool,
    /// Packet-rate cap put on every forwarding entry (0: none).
    max_pps: u32,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("enabled", &self.datapath.is_some())
            .field("free_slots", &self.slots.available())
            .finish()
    }
}

impl Kernel {
    /// A kernel with `capacity` stream slots; `datapath` None disables it.
    pub fn new(datapath: Option<Box<dyn Datapath + Send>>, capacity: u32) -> Self {
        Kernel {
            datapath,
            slots: SlotAllocator::new(capacity),
            pass_entries: false,
            max_pps: 0,
        }
    }

    /// Keeps pass entries for ports still learning (the DoS shield drops).
    pub fn with_pass_entries(mut self, on: bool) -> Self {
        self.pass_entries = on;
        self
    }

    /// Caps every kernel stream at `max_pps` packets per second (0: none).
    pub fn with_rate_cap(mut self, max_pps: u32) -> Self {
        self.max_pps = max_pps;
        self
    }

    /// The pass entry of `port`.
    fn pass_entry(port: &MediaPort) -> StreamSpec {
        StreamSpec {
            local: port.local,
            peer: port.local,
            source: port.local,
            strict_source: None,
            stats_slot: NO_SLOT,
            to_userspace: true,
            max_pps: 0,
            media: MediaTracking::None,
        }
    }

    /// What `port`'s kernel entry should be: forwarding once the port and
    /// its sink are open and both parties are confirmed, a pass-to-userspace
    /// entry while learning when the DoS shield drops (so its packets get
    /// through), nothing once closed. The slot is left 0.
    fn desired(&self, port: &MediaPort) -> Option<StreamSpec> {
        if port.state().closed {
            return None;
        }
        Self::forwarding(port, self.max_pps)
            .or_else(|| self.pass_entries.then(|| Self::pass_entry(port)))
    }

    /// The forwarding entry of `port`, if both ends are ready.
    fn forwarding(port: &MediaPort, max_pps: u32) -> Option<StreamSpec> {
        let (sink, strict_source, media) = {
            let st = port.state();
            let source = st.learner.confirmed()?;
            (
                st.sink.upgrade()?,
                st.learner.strict().then_some(source),
                st.media,
            )
        };
        let peer = {
            let st = sink.state();
            if st.closed || st.learner.confirmed().is_none() {
                return None;
            }
            st.learner.destination(st.symmetric)?
        };
        Some(StreamSpec {
            local: port.local,
            peer,
            source: sink.local,
            strict_source,
            stats_slot: 0,
            to_userspace: false,
            max_pps,
            media,
        })
    }

    /// Brings `port`'s kernel entry in line with its state: a pass entry
    /// while learning, forwarding once both ends are confirmed, replaced when
    /// the peer, source or strictness changed (re-INVITE, re-pairing),
    /// removed when the port closed. Returns whether the stream is forwarded
    /// in the kernel afterwards.
    pub fn sync(&mut self, port: &MediaPort) -> bool {
        if self.datapath.is_none() {
            return false;
        }
        let want = self.desired(port);
        if self.apply(port, want) {
            return want.is_some_and(|k| !k.to_userspace);
        }
        // The forwarding entry could not go in (no slot, map error): never
        // leave a stale one behind; fall back to passing (or nothing).
        let fallback = if port.state().closed || !self.pass_entries {
            None
        } else {
            Some(Self::pass_entry(port))
        };
        if !self.apply(port, fallback) {
            self.remove(port);
        }
        false
    }

    /// Makes `want` the port's entry; false when it could not be installed
    /// (the previous entry is then still in place).
    fn apply(&mut self, port: &MediaPort, want: Option<StreamSpec>) -> bool {
        let unslotted = |k: StreamSpec| StreamSpec { stats_slot: 0, ..k };
        let have = port.state().kernel;
        if want.map(unslotted) == have.map(unslotted) {
            return true;
        }
        let Some(mut spec) = want else {
            self.remove(port);
            return true;
        };
        if !spec.to_userspace {
            let Some(slot) = self.slots.take() else {
                tracing::warn!(local = %port.local, "no kernel stream slot free; stream stays in userspace");
                return false;
            };
            spec.stats_slot = slot;
        }
        // A forwarding entry carries on the RTP figures from where they are
        // now (a pass entry keeps none).
        let seed = if spec.to_userspace {
            relay_common::RtpStats::default()
        } else {
            self.rtp(port)
        };
        let Some(dp) = self.datapath.as_mut() else {
            return false;
        };
        // The new entry replaces the old one in a single map update: removing
        // first would leave a moment in which the DoS shield drops the
        // port's packets.
        match dp.install_seeded(&spec, &seed) {
            Ok(()) => {
                port.state().kernel = Some(spec);
                if let Some(old) = have.filter(|k| !k.to_userspace) {
                    self.retire_slot(port, old.stats_slot);
                }
                if !spec.to_userspace {
                    tracing::debug!(local = %port.local, peer = %spec.peer, source = %spec.source, "stream kernelized");
                }
                true
            }
            Err(e) => {
                if !spec.to_userspace {
                    self.slots.give(spec.stats_slot);
                }
                tracing::warn!(local = %port.local, error = %e, "kernel entry not updated");
                false
            }
        }
    }

    /// Folds a slot's counters into the port, hands its RTP figures back to
    /// userspace, and frees the slot.
    fn retire_slot(&mut self, port: &MediaPort, slot: u32) {
        if let Some(dp) = self.datapath.as_ref() {
            if let Ok(stats) = dp.stream_stats(slot) {
                port.state().kernel_retired.accumulate(&stats);
            }
            if let Ok(rtp) = dp.rtp_stats(slot) {
                port.state().rtp = rtp;
            }
        }
        self.slots.give(slot);
    }

    /// RTP figures of `port`: the kernel's while the stream is forwarded
    /// there, else relayd's own.
    pub fn rtp(&self, port: &MediaPort) -> relay_common::RtpStats {
        let (slot, own) = {
            let st = port.state();
            (
                st.kernel.filter(|k| !k.to_userspace).map(|k| k.stats_slot),
                st.rtp,
            )
        };
        match (self.datapath.as_ref(), slot) {
            (Some(dp), Some(slot)) => dp.rtp_stats(slot).unwrap_or(own),
            _ => own,
        }
    }

    /// Takes `port`'s entry out of the kernel (if it is there), keeping its
    /// counters.
    pub fn remove(&mut self, port: &MediaPort) {
        let Some(spec) = port.state().kernel.take() else {
            return;
        };
        if let Some(Err(e)) = self.datapath.as_mut().map(|dp| dp.remove(port.local)) {
            tracing::warn!(local = %port.local, error = %e, "could not remove kernel stream");
        }
        if !spec.to_userspace {
            self.retire_slot(port, spec.stats_slot);
        }
    }

    /// Kernel counters of `port`: retired plus live.
    pub fn stats(&self, port: &MediaPort) -> StreamStats {
        let (slot, mut total) = {
            let st = port.state();
            (
                st.kernel.filter(|k| !k.to_userspace).map(|k| k.stats_slot),
                st.kernel_retired,
            )
        };
        if let (Some(dp), Some(slot)) = (self.datapath.as_ref(), slot) {
            if let Ok(live) = dp.stream_stats(slot) {
                total.accumulate(&live);
            }
        }
        total
    }

    /// Whether a kernel datapath is present.
    pub fn enabled(&self) -> bool {
        self.datapath.is_some()
    }

    /// Sets the DoS shield of one relay address (no-op without a kernel).
    pub fn shield(
        &mut self,
        address: std::net::IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        drop: bool,
    ) -> Result<(), crate::datapath::DatapathError> {
        match self.datapath.as_mut() {
            Some(dp) => dp.shield(address, ports, drop),
            None => Ok(()),
        }
    }

    /// Installs a stream given on the command line (`--static-stream`),
    /// taking a counters slot for it.
    pub fn install_static(
        &mut self,
        mut spec: StreamSpec,
    ) -> Result<(), crate::datapath::DatapathError> {
        let Some(dp) = self.datapath.as_mut() else {
            return Ok(());
        };
        let slot = self
            .slots
            .take()
            .ok_or(crate::datapath::DatapathError::NoSlot)?;
        spec.stats_slot = slot;
        dp.install(&spec).inspect_err(|_| self.slots.give(slot))
    }

    /// Program-wide counters, when there is a kernel datapath.
    pub fn counters(&self) -> Option<crate::datapath::Counters> {
        self.datapath.as_ref().and_then(|dp| dp.counters().ok())
    }

    /// Releases the datapath (XDP: detach and unpin).
    pub fn close(&mut self) {
        if let Some(dp) = self.datapath.as_mut() {
            dp.close();
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the XDP program stamps packet
/// arrivals with for the RTP jitter, so figures carried between userspace
/// and the kernel stay on one time base.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `clock` in nanoseconds (0 if it cannot be read).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Converts a kernel CLOCK_MONOTONIC_COARSE timestamp (what the XDP
/// program stores as last-seen) into an Instant; None for "never".
pub fn kernel_time_to_instant(ns: u64) -> Option<Instant> {
    if ns == 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return None;
    }
    let now_ns = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    let age = Duration::from_nanos(now_ns.saturating_sub(ns));
    Instant::now().checked_sub(age)
}
