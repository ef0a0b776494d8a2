//! The userspace forwarder: one task per relay port, with the fast path's
//! semantics. It relays what the kernel does not (yet): the first packets of
//! every stream while its endpoints are learned, everything in
//! `--datapath=userspace`, and whatever XDP passes up (FIB misses).

use std::sync::{atomic::Ordering, Arc};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use super::port::MediaPort;

/// Largest datagram relayed (RTP over Ethernet fits easily).
const MAX_DATAGRAM: usize = 65536;

/// What the forwarder tells the call manager.
#[derive(Debug)]
pub enum PortEvent {
    /// This port's endpoint just got confirmed: its streams may go to the kernel.
    Confirmed(Arc<MediaPort>),
}

/// Starts relaying packets that arrive on `port`.
pub fn spawn(port: Arc<MediaPort>, events: mpsc::UnboundedSender<PortEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, src) = match port.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep going.
                    tracing::trace!(local = %port.local, error = %e, "recv error");
                    continue;
                }
            };
            let now = Instant::now();
            let (verdict, sink) = {
                let mut st = port.state();
                st.last_packet = Some(now);
                (st.learner.on_packet(src, now), st.sink.upgrade())
            };
            if !verdict.forward {
                port.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Counted on receipt, as rtpengine does: a send failure shows up
            // as an error on top.
            port.stats.packets.fetch_add(1, Ordering::Relaxed);
            port.stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
            if verdict.newly_confirmed {
                tracing::debug!(local = %port.local, %src, "endpoint confirmed");
                let _ = events.send(PortEvent::Confirmed(port.clone()));
            }
            let destination = sink.as_ref().and_then(|s| {
                let st = s.state();
                st.learner.destination(st.symmetric)
            });
            let (Some(sink), Some(destination)) = (sink, destination) else {
                port.stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match sink.socket.send_to(&buf[..len], destination).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::trace!(from = %sink.local, to = %destination, error = %e, "send error");
                    port.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}
