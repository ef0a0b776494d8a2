//! Moving streams into the kernel fast path and out again.
//!
//! A port's stream (packets arriving at it, from its party, leaving by its
//! sink towards the other party) goes into the kernel once both parties'
//! endpoints are confirmed, and leaves it on delete, on re-signalling that
//! changes an endpoint, and on timeout. Its kernel counters are folded into
//! the port when it leaves, so totals never go backwards.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

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
    capacity: u32,
}

impl SlotAllocator {
    /// Slots `0..capacity`.
    pub fn new(capacity: u32) -> Self {
        SlotAllocator {
            free: (0..capacity).rev().collect(),
            capacity,
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

    /// Slots handed out and not given back: with no call up, anything but
    /// 0 is a leak (the soak benchmark checks it through `relayctl totals`).
    pub fn in_use(&self) -> usize {
        (self.capacity as usize).saturating_sub(self.free.len())
    }

    /// Takes `slots` out of the free list (slots a relayd before this one
    /// handed out, adopted with the kernel's streams). Slots beyond the
    /// capacity are ignored.
    pub fn reserve(&mut self, slots: &HashSet<u32>) {
        self.free.retain(|s| !slots.contains(s));
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
    /// Entries found in an adopted kernel table that no port has claimed
    /// yet; whatever is left after restoring the calls is removed.
    leftovers: HashMap<SocketAddr, StreamSpec>,
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
            leftovers: HashMap::new(),
        }
    }

    /// Starts from the entries an earlier relayd left in the kernel (an
    /// adopted datapath): their slots are not handed out again until a
    /// restored port claims its entry ([`Kernel::adopt`]) or
    /// [`Kernel::finish_adoption`] removes what nobody claimed.
    pub fn adopting(&mut self) -> Result<(), crate::datapath::DatapathError> {
        let Some(dp) = self.datapath.as_ref() else {
            return Ok(());
        };
        let entries = dp.installed()?;
        let slots = entries
            .iter()
            .filter(|e| !e.to_userspace)
            .map(|e| e.stats_slot)
            .collect();
        self.slots.reserve(&slots);
        self.leftovers = entries.into_iter().map(|e| (e.local, e)).collect();
        Ok(())
    }

    /// Makes whatever the kernel holds for `port` (left by an earlier
    /// relayd) the port's entry, counters and RTP figures included; the
    /// next [`Kernel::sync`] brings it in line with the port's state.
    /// Returns whether there was one.
    pub fn adopt(&mut self, port: &MediaPort) -> bool {
        let Some(found) = self.leftovers.remove(&port.local) else {
            return false;
        };
        let mut st = port.state();
        // What the table cannot say (the codec's clock rate, the rate cap)
        // comes from the port and the configuration, so that an unchanged
        // stream is not rewritten.
        // (A pass entry tracks nothing, whatever the port carries.)
        let (media, max_pps) = match found.to_userspace {
            true => (crate::datapath::MediaTracking::None, 0),
            false => (st.media, self.max_pps),
        };
        // The rate cap is this relayd's configuration, which may have
        // changed since the entry was installed: set in place.
        if !found.to_userspace {
            if let Some(Err(e)) = self
                .datapath
                .as_mut()
                .map(|dp| dp.set_max_pps(found.stats_slot, max_pps))
            {
                tracing::warn!(local = %port.local, error = %e, "rate cap of an adopted stream not updated");
            }
        }
        st.kernel = Some(StreamSpec {
            media,
            max_pps,
            ..found
        });
        true
    }

    /// Removes the adopted entries no restored port claimed (their calls
    /// ended, or could not be restored), freeing their slots. Returns how
    /// many there were.
    pub fn finish_adoption(&mut self) -> usize {
        let leftovers = std::mem::take(&mut self.leftovers);
        for spec in leftovers.values() {
            self.drop_leftover(spec);
        }
        leftovers.len()
    }

    fn drop_leftover(&mut self, spec: &StreamSpec) {
        if let Some(Err(e)) = self.datapath.as_mut().map(|dp| dp.remove(spec.local)) {
            tracing::warn!(local = %spec.local, error = %e, "could not remove a stale kernel stream");
        }
        if !spec.to_userspace {
            self.slots.give(spec.stats_slot);
        }
    }

    /// Counter slots (used, free), when there is a kernel datapath.
    pub fn slot_usage(&self) -> Option<(usize, usize)> {
        self.datapath
            .as_ref()
            .map(|_| (self.slots.in_use(), self.slots.available()))
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
            ice: false,
            rtcp_demux: false,
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

    /// The forwarding entry of `port`, once its party's source is
    /// confirmed and the sink's party has a destination: the one learned,
    /// or before that the SDP's, where relayd's forwarder would send too
    /// (the entry is updated when the sink's party is confirmed elsewhere).
    /// So a call's first packet each way is all that crosses userspace, and
    /// one-way media (a party that never sends) is forwarded in the kernel.
    fn forwarding(port: &MediaPort, max_pps: u32) -> Option<StreamSpec> {
        let (sink, strict_source, media, ice, rtcp_demux) = {
            let st = port.state();
            // Copies for subscribers are made in userspace (fast-path.md);
            // SRTP ending at the relay (SDES or DTLS-SRTP) is transformed
            // there too, and so is the DTLS handshake.
            if !st.subscribers.is_empty() || st.srtp.is_some() || st.dtls.is_some() {
                return None;
            }
            let source = st.learner.confirmed()?;
            (
                st.sink.upgrade()?,
                st.learner.strict().then_some(source),
                st.media,
                st.ice.is_some(),
                st.demux_to.strong_count() > 0,
            )
        };
        let peer = {
            let st = sink.state();
            if st.closed || st.srtp.is_some() || st.dtls.is_some() {
                return None;
            }
            // An ICE peer without consent gets nothing (RFC 7675).
            super::ice::destination(&st)?
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
            ice,
            rtcp_demux,
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

    /// Counters of `port`'s current kernel entry (zero when it has none).
    pub fn live_stats(&self, port: &MediaPort) -> StreamStats {
        let slot = port
            .state()
            .kernel
            .filter(|k| !k.to_userspace)
            .map(|k| k.stats_slot);
        match (self.datapath.as_ref(), slot) {
            (Some(dp), Some(slot)) => dp.stream_stats(slot).unwrap_or_default(),
            _ => StreamStats::default(),
        }
    }

    /// Kernel counters of `port`: retired plus live.
    pub fn stats(&self, port: &MediaPort) -> StreamStats {
        let mut total = port.state().kernel_retired;
        total.accumulate(&self.live_stats(port));
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
        // A static stream replaces what an earlier relayd left for it.
        if let Some(old) = self.leftovers.remove(&spec.local) {
            if !old.to_userspace {
                self.slots.give(old.stats_slot);
            }
        }
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

    /// Lets go of the datapath after a failed start: what an earlier relayd
    /// left running (adopted, or to be taken over) stays for the next start;
    /// anything this relayd set up alone is released for good.
    pub fn abandon(&mut self) {
        if let Some(dp) = self.datapath.as_mut() {
            dp.abandon();
        }
    }

    /// Releases the datapath for good (XDP: detach and unpin).
    pub fn close(&mut self) {
        if let Some(dp) = self.datapath.as_mut() {
            dp.close();
        }
    }

    /// Starts forwarding once the restored calls are in (see
    /// [`crate::datapath::Datapath::go_live`]).
    pub fn go_live(&mut self) -> Result<(), crate::datapath::DatapathError> {
        match self.datapath.as_mut() {
            Some(dp) => dp.go_live(),
            None => Ok(()),
        }
    }

    /// Whether the datapath took over what an earlier relayd left running.
    pub fn adopted(&self) -> bool {
        self.datapath.as_ref().is_some_and(|dp| dp.adopted())
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
