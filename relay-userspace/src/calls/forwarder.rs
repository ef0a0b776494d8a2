//! The userspace forwarder: one task per relay port, with the fast path's
//! semantics. It relays what the kernel does not (yet): the first packets of
//! every stream while its endpoints are learned, everything in
//! `--datapath=userspace`, and whatever XDP passes up (FIB misses).
//!
//! Each wake-up drains up to a batch of datagrams with one `recvmmsg` and
//! sends them on with `sendmmsg` (see [`super::batch_io`]).

use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{atomic::Ordering, Arc},
};

use tokio::{io::Interest, sync::mpsc, task::JoinHandle, time::Instant};

use super::{
    batch_io::{self, RecvBatch},
    port::MediaPort,
};

/// Quiet time after which a port's receive buffers are released.
const IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the forwarder tells the call manager.
#[derive(Debug)]
pub enum PortEvent {
    /// This port's endpoint just got confirmed: its streams may go to the kernel.
    Confirmed(Arc<MediaPort>),
}

/// Starts relaying packets that arrive on `port`.
pub fn spawn(port: Arc<MediaPort>, events: mpsc::UnboundedSender<PortEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Receive buffers are kept while packets come and dropped after a
        // quiet spell, so a busy port does not allocate per wake-up and an
        // idle one (the usual case once its stream is in the kernel) holds
        // none.
        let mut buffers: Option<Box<RecvBatch>> = None;
        loop {
            match tokio::time::timeout(IDLE, port.socket.readable()).await {
                Err(_) => {
                    buffers = None;
                    continue;
                }
                Ok(Err(_)) => continue,
                Ok(Ok(())) => {}
            }
            let batch = buffers.get_or_insert_with(Box::default);
            let fd = port.socket.as_raw_fd();
            let received = port.socket.try_io(Interest::READABLE, || batch.recv(fd));
            let count = match received {
                Ok(n) => n,
                // Spurious wake-up, or an ICMP error from an earlier send.
                Err(_) => continue,
            };
            relay_batch(&port, batch, count, &events).await;
        }
    })
}

/// Learns from, counts and forwards one received batch.
async fn relay_batch(
    port: &Arc<MediaPort>,
    batch: &RecvBatch,
    count: usize,
    events: &mpsc::UnboundedSender<PortEvent>,
) {
    let now = Instant::now();
    let now_ns = super::kernel::monotonic_ns();
    let sink = port.state().sink.upgrade();
    let mut run: Vec<&[u8]> = Vec::with_capacity(count);
    let mut run_dest: Option<SocketAddr> = None;
    for i in 0..count {
        let Some((payload, src)) = batch.get(i) else {
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let verdict = {
            let mut st = port.state();
            st.last_packet = Some(now);
            let verdict = st.learner.on_packet(src, now);
            // While the stream is in the kernel its figures are the
            // kernel's, which saw this packet already (a FIB miss).
            let in_kernel = st.kernel.is_some_and(|k| !k.to_userspace);
            if verdict.forward && !in_kernel {
                let media = st.media;
                relay_common::rtp::observe(
                    &mut st.rtp,
                    payload,
                    media.flags(),
                    media.clock_rate(),
                    now_ns,
                );
            }
            verdict
        };
        if !verdict.forward {
            port.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Counted on receipt, as rtpengine does; a failed send is an error on top.
        port.stats.packets.fetch_add(1, Ordering::Relaxed);
        port.stats
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if verdict.newly_confirmed {
            tracing::debug!(local = %port.local, %src, "endpoint confirmed");
            let _ = events.send(PortEvent::Confirmed(port.clone()));
        }
        let destination = sink.as_ref().and_then(|s| {
            let st = s.state();
            st.learner.destination(st.symmetric)
        });
        let Some(destination) = destination else {
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if run_dest != Some(destination) {
            if let (Some(sink), Some(dest)) = (&sink, run_dest) {
                send_run(port, sink, &run, dest).await;
            }
            run.clear();
            run_dest = Some(destination);
        }
        run.push(payload);
    }
    if let (Some(sink), Some(dest)) = (&sink, run_dest) {
        send_run(port, sink, &run, dest).await;
    }
}

/// Sends a run of datagrams from `sink`'s socket to `dest`: one `sendmmsg`
/// when the socket can take them, datagram by datagram (waiting) otherwise.
async fn send_run(port: &MediaPort, sink: &MediaPort, run: &[&[u8]], dest: SocketAddr) {
    let fd = sink.socket.as_raw_fd();
    let sent = sink
        .socket
        .try_io(Interest::WRITABLE, || batch_io::send_all(fd, run, dest))
        .unwrap_or(0);
    for payload in &run[sent..] {
        if let Err(e) = sink.socket.send_to(payload, dest).await {
            tracing::trace!(from = %sink.local, to = %dest, error = %e, "send error");
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
