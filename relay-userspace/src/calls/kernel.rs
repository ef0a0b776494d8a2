//! Moving streams into the kernel fast path and out again.
//!
//! A port's stream (packets arriving at it, from its party, leaving by its
//! sink towards the other party) goes into the kernel once both parties'
//! endpoints are confirmed, and leaves it on delete, on re-signalling that
//! changes an endpoint, and on timeout. Its kernel counters are folded into
//! the port when it leaves, so totals never go backwards.

use std::sync::Arc;

use relay_common::StreamStats;

use super::port::MediaPort;
use crate::datapath::{Datapath, StreamSpec};

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
        }
    }

    /// Whether streams can go into the kernel at all.
    pub fn enabled(&self) -> bool {
        self.datapath.is_some()
    }

    /// Puts `port`'s stream into the kernel if both ends are confirmed and it
    /// is not there yet. Returns whether it is in the kernel afterwards.
    pub fn try_install(&mut self, port: &Arc<MediaPort>) -> bool {
        let Some(dp) = self.datapath.as_mut() else {
            return false;
        };
        let (sink, strict_source) = {
            let st = port.state();
            if st.kernel_slot.is_some() {
                return true;
            }
            let Some(source) = st.learner.confirmed() else {
                return false;
            };
            (st.sink.upgrade(), st.learner.strict().then_some(source))
        };
        let Some(sink) = sink else { return false };
        let peer = {
            let st = sink.state();
            if st.learner.confirmed().is_none() {
                return false;
            }
            st.learner.destination(st.symmetric)
        };
        let Some(peer) = peer else { return false };
        let Some(slot) = self.slots.take() else {
            tracing::warn!(local = %port.local, "no kernel stream slot free; stream stays in userspace");
            return false;
        };
        let spec = StreamSpec {
            local: port.local,
            peer,
            source: sink.local,
            strict_source,
            stats_slot: slot,
        };
        match dp.install(&spec) {
            Ok(()) => {
                port.state().kernel_slot = Some(slot);
                tracing::debug!(local = %port.local, %peer, source = %sink.local, "stream kernelized");
                true
            }
            Err(e) => {
                self.slots.give(slot);
                tracing::info!(local = %port.local, error = %e, "stream stays in userspace");
                false
            }
        }
    }

    /// Takes `port`'s stream out of the kernel (if it is there), keeping its
    /// counters.
    pub fn remove(&mut self, port: &MediaPort) {
        let Some(dp) = self.datapath.as_mut() else {
            return;
        };
        let Some(slot) = port.state().kernel_slot.take() else {
            return;
        };
        if let Ok(stats) = dp.stream_stats(slot) {
            port.state().kernel_retired.accumulate(&stats);
        }
        if let Err(e) = dp.remove(port.local) {
            tracing::warn!(local = %port.local, error = %e, "could not remove kernel stream");
        }
        self.slots.give(slot);
    }

    /// Kernel counters of `port`: retired plus live.
    pub fn stats(&self, port: &MediaPort) -> StreamStats {
        let (slot, mut total) = {
            let st = port.state();
            (st.kernel_slot, st.kernel_retired)
        };
        if let (Some(dp), Some(slot)) = (self.datapath.as_ref(), slot) {
            if let Ok(live) = dp.stream_stats(slot) {
                total.accumulate(&live);
            }
        }
        total
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

    /// Releases the datapath (XDP: detach and unpin).
    pub fn close(&mut self) {
        if let Some(dp) = self.datapath.as_mut() {
            dp.close();
        }
    }

    /// Program-wide counters, when there is a kernel datapath.
    pub fn counters(&self) -> Option<crate::datapath::Counters> {
        self.datapath.as_ref().and_then(|dp| dp.counters().ok())
    }
}
