//! Work a signalling request leaves for after its reply is sent.
//!
//! Kamailio waits for each NG reply, and the NG benchmark showed that
//! starting and stopping forwarder tasks was a large part of the time before
//! it: every spawn or abort may wake another runtime worker (a futex or
//! eventfd write, then a context switch on a 2-vCPU host), and dropping the
//! last reference to a port closes its socket. None of that changes the
//! reply. Everything the reply and rtpengine's semantics need happens
//! in the request: a new port's sockets are bound (so nothing else can take
//! the port) and registered with the runtime (datagrams arriving before its
//! task starts wait in the socket and are read on the task's first poll); a
//! freed port is marked closed, taken out of the kernel and its pair is back
//! in the free queue. What is left goes here and runs once the reply is out.

use std::sync::{Arc, Weak};

use tokio::{sync::mpsc, task::AbortHandle};

use super::{
    forwarder::{self, PortEvent},
    model::Media,
    port::MediaPort,
};

/// Forwarders to start and to stop, and freed medias to drop.
#[derive(Debug, Default)]
pub struct Deferred {
    /// Ports opened by the request, whose forwarders are not running yet.
    /// Weak: a port dropped before the work runs needs no forwarder.
    start: Vec<Weak<MediaPort>>,
    /// Forwarders of freed ports.
    stop: Vec<AbortHandle>,
    /// Freed medias: dropping them may close their sockets.
    retired: Vec<Media>,
    /// Where the started forwarders report (set with the first `start`).
    events: Option<mpsc::UnboundedSender<PortEvent>>,
}

impl Deferred {
    /// A forwarder reporting to `events` is wanted for `port`.
    pub fn start(&mut self, port: &Arc<MediaPort>, events: &mpsc::UnboundedSender<PortEvent>) {
        self.start.push(Arc::downgrade(port));
        if self.events.is_none() {
            self.events = Some(events.clone());
        }
    }

    /// `media` was freed: stop its forwarders and drop it.
    pub fn retire(&mut self, media: Media) {
        for port in media.ports() {
            if let Some(task) = port.state().forwarder.take() {
                self.stop.push(task);
            }
        }
        self.retired.push(media);
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty() && self.retired.is_empty()
    }

    /// Does the work: stops the freed ports' forwarders, then arms a
    /// forwarder for every port still open, to start with its first
    /// datagram ([`forwarder::arm`]). Needs a Tokio runtime.
    pub fn run(self) {
        for task in self.stop {
            task.abort();
        }
        drop(self.retired);
        let Some(events) = self.events else { return };
        for port in self.start.iter().filter_map(Weak::upgrade) {
            forwarder::arm(&port, &events);
        }
    }
}
