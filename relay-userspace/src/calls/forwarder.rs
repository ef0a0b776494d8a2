//! The userspace forwarder: one task per relay port, with the fast path's
//! semantics. It relays what the kernel does not (yet): the first packets of
//! every stream while its endpoints are learned, everything in
//! `--datapath=userspace`, and whatever XDP passes up (FIB misses).
//!
//! Each wake-up drains up to a batch of datagrams with one `recvmmsg` and
//! sends them on with one `sendmmsg`, equal-size runs as GSO messages (see
//! [`super::batch_io`] and [`super::send_batch`]). The receive
//! buffers belong to the worker thread, not the port: a batch is relayed
//! without yielding, so one set per thread serves every port, and memory
//! does not grow with the number of busy ports.

use std::{
    cell::RefCell,
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{atomic::Ordering, Arc},
};

use relay_common::rtp;
use tokio::{io::Interest, sync::mpsc, task::JoinHandle, time::Instant};

use super::{
    batch_io::{self, RecvBatch},
    port::MediaPort,
    send_batch,
};

thread_local! {
    /// This worker thread's receive buffers (allocated on first use).
    static RECV: RefCell<Option<Box<RecvBatch>>> = const { RefCell::new(None) };
}

/// What the forwarder tells the call manager.
#[derive(Debug)]
pub enum PortEvent {
    /// This port's endpoint just got confirmed: its streams may go to the kernel.
    Confirmed(Arc<MediaPort>),
}

/// Starts `port`'s forwarder when its socket first has something to read,
/// not before: the runtime's reactor wakes the starter on a worker thread,
/// which spawns the task there. An offer's ports thus cost no task and
/// wake no worker until media arrives, and a call deleted before any
/// arrived (a failed attempt, a fork branch that lost) never had one.
/// Spawning from the signalling thread woke the idle runtime worker for
/// every port, a futex or eventfd write and a context switch each.
pub fn arm(port: &Arc<MediaPort>, events: &mpsc::UnboundedSender<PortEvent>) {
    let starter = Arc::new(Starter {
        port: Arc::downgrade(port),
        events: events.clone(),
        runtime: tokio::runtime::Handle::current(),
    });
    let waker = std::task::Waker::from(starter.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    if port.socket.poll_readable(&mut cx).is_ready() {
        starter.start();
    }
}

/// Spawns a port's forwarder when woken (see [`arm`]), unless it has one
/// or was freed.
struct Starter {
    /// Weak: a port freed before anything arrived needs no forwarder, and
    /// its socket (which holds this waker) must not keep it alive.
    port: std::sync::Weak<MediaPort>,
    events: mpsc::UnboundedSender<PortEvent>,
    runtime: tokio::runtime::Handle,
}

impl Starter {
    fn start(&self) {
        let Some(port) = self.port.upgrade() else {
            return;
        };
        // Under the port's lock, so that a port freed meanwhile (marked
        // closed under the same lock) never gets a forwarder, one freed
        // later finds the task to stop, and a second wake-up finds the
        // first one's task.
        let mut state = port.state();
        if !state.closed && state.forwarder.is_none() {
            let _runtime = self.runtime.enter();
            let task = spawn(port.clone(), self.events.clone());
            state.forwarder = Some(task.abort_handle());
        }
    }
}

impl std::task::Wake for Starter {
    fn wake(self: Arc<Self>) {
        self.start();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.start();
    }
}

/// Starts relaying packets that arrive on `port`.
pub fn spawn(port: Arc<MediaPort>, events: mpsc::UnboundedSender<PortEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if port.socket.readable().await.is_err() {
                continue;
            }
            let backlog = RECV.with(|cell| {
                let mut slot = cell.borrow_mut();
                let batch = slot.get_or_insert_with(Box::default);
                let fd = port.socket.as_raw_fd();
                let mut got = 0;
                let read = port.socket.try_io(Interest::READABLE, || {
                    got = batch.recv(fd)?;
                    // A short batch drained the socket: say so, and Tokio
                    // drops its readiness now instead of after one more
                    // recvmmsg that would only return EAGAIN. A datagram
                    // arriving meanwhile is a new edge, which Tokio keeps.
                    if got < batch_io::BATCH {
                        return Err(std::io::ErrorKind::WouldBlock.into());
                    }
                    Ok(got)
                });
                match read {
                    Ok(count) => relay_batch(&port, batch, count, &events),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => {
                        relay_batch(&port, batch, got, &events)
                    }
                    // Spurious wake-up, or an ICMP error from an earlier send.
                    Err(_) => Backlog::default(),
                }
            });
            backlog.flush(&port).await;
        }
    })
}

/// Datagrams the sink's socket could not take at once, copied out of the
/// thread's buffers so they can wait (in order) for it to drain.
#[derive(Default)]
struct Backlog {
    sink: Option<Arc<MediaPort>>,
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
}

impl Backlog {
    /// Sends what is left, waiting for the sink's socket.
    async fn flush(self, port: &MediaPort) {
        let Some(sink) = self.sink else { return };
        for (dest, payload) in self.datagrams {
            if let Err(e) = sink.socket.send_to(&payload, dest).await {
                tracing::trace!(from = %sink.local, to = %dest, error = %e, "send error");
                port.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Learns from, counts and forwards one received batch, without waiting:
/// what the sink's socket cannot take now comes back as a backlog.
fn relay_batch(
    port: &Arc<MediaPort>,
    batch: &RecvBatch,
    count: usize,
    events: &mpsc::UnboundedSender<PortEvent>,
) -> Backlog {
    let now = Instant::now();
    let now_ns = super::kernel::monotonic_ns();
    let (sink, demux) = {
        let st = port.state();
        (st.sink.upgrade(), st.demux_to.upgrade())
    };
    let mut copies = super::subscribe::Copies::of(port);
    let mut backlog = Backlog::default();
    // Where each relayed datagram goes, and its bytes when an SRTP
    // transform rewrote them (else the batch's own).
    let mut out: Vec<(SocketAddr, usize, Option<Vec<u8>>)> = Vec::with_capacity(count);
    for i in 0..count {
        let Some((received, src)) = batch.get(i) else {
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // STUN for the port's ICE-lite agent is answered, not relayed.
        if relay_media::looks_like_stun(received) {
            match super::ice::on_stun(port, received, src, now) {
                super::ice::Stun::NotOurs => {}
                super::ice::Stun::Consumed => continue,
                super::ice::Stun::EndpointChanged => {
                    let _ = events.send(PortEvent::Confirmed(port.clone()));
                    continue;
                }
            }
        }
        // DTLS (RFC 7983) for the port's DTLS-SRTP endpoint is handshake,
        // not media.
        if relay_media::dtls::looks_like_dtls(received)
            && super::dtls::on_datagram(port, received, src, now.into_std())
        {
            continue;
        }
        let arrival = batch.arrival_ns(i, now_ns);
        // SRTP from the party is authenticated and decrypted before anything
        // learns from it or counts it.
        let decrypted = match unprotect(port, received) {
            Ok(d) => d,
            Err(()) => continue,
        };
        let payload = decrypted.as_deref().unwrap_or(received);
        // rtcp-mux demux: the party's RTCP on its RTP port is its RTCP
        // port's to relay (RFC 5761 section 4: types 192..=223).
        if let Some(rtcp_port) = &demux {
            if rtp::classify(payload, relay_common::TF_RTCP) == rtp::PacketKind::Rtcp {
                relay_demuxed(rtcp_port, payload, src, now, arrival, events);
                continue;
            }
        }
        if !admit(port, payload, src, now, arrival, events) {
            continue;
        }
        copies.push(received, decrypted.as_deref());
        let destination = sink
            .as_ref()
            .and_then(|s| super::ice::destination(&s.state()));
        let (Some(destination), Some(sink)) = (destination, sink.as_ref()) else {
            // A port without a sink (a publisher's, a subscriber's) has
            // nobody in dialogue to fail to reach.
            if sink.is_some() {
                port.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        match protect(sink, decrypted, received) {
            Ok(bytes) => out.push((destination, i, bytes)),
            Err(()) => {
                port.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut run: Vec<&[u8]> = Vec::with_capacity(out.len());
    let mut run_dest: Option<SocketAddr> = None;
    for (destination, i, bytes) in &out {
        let Some(payload) = bytes.as_deref().or_else(|| batch.get(*i).map(|(p, _)| p)) else {
            continue;
        };
        if run_dest != Some(*destination) {
            if let (Some(sink), Some(dest)) = (&sink, run_dest) {
                send_run(sink, &run, dest, &mut backlog);
            }
            run.clear();
            run_dest = Some(*destination);
        }
        run.push(payload);
    }
    if let (Some(sink), Some(dest)) = (&sink, run_dest) {
        send_run(sink, &run, dest, &mut backlog);
    }
    copies.send();
    backlog.sink = sink;
    backlog
}

/// Learns from and counts one datagram that arrived on `port`: whether it
/// is to be forwarded (not a strict-source mismatch).
fn admit(
    port: &Arc<MediaPort>,
    payload: &[u8],
    src: SocketAddr,
    now: Instant,
    arrival_ns: u64,
    events: &mpsc::UnboundedSender<PortEvent>,
) -> bool {
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
                arrival_ns,
            );
        }
        verdict
    };
    if !verdict.forward {
        port.stats.dropped.fetch_add(1, Ordering::Relaxed);
        return false;
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
    true
}

/// Relays the party's RTCP that arrived multiplexed on its RTP port as its
/// RTCP port `rtcp_port` would: learned and counted there, sent on from
/// that port's sink (the other party's RTCP port). Rare enough (RFC 3550:
/// a few per second at most) to be sent one by one, without a backlog.
fn relay_demuxed(
    rtcp_port: &Arc<MediaPort>,
    payload: &[u8],
    src: SocketAddr,
    now: Instant,
    arrival_ns: u64,
    events: &mpsc::UnboundedSender<PortEvent>,
) {
    if !admit(rtcp_port, payload, src, now, arrival_ns, events) {
        return;
    }
    let sink = rtcp_port.state().sink.upgrade();
    let sent = sink.as_ref().and_then(|sink| {
        let dest = super::ice::destination(&sink.state())?;
        let bytes = protect(sink, None, payload).ok()?;
        let bytes = bytes.as_deref().unwrap_or(payload);
        sink.socket.try_send_to(bytes, dest).ok()
    });
    if sent.is_none() {
        rtcp_port.stats.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// `received` decrypted when `port`'s party speaks SRTP to the relay
/// (`Ok(None)`: no transform, the bytes stand). A packet that fails is
/// counted and dropped (`Err`).
fn unprotect(port: &MediaPort, received: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut st = port.state();
    let Some(srtp) = st.srtp.as_mut() else {
        if st.dtls.is_some() {
            // Media before the DTLS handshake finished: no keys to
            // check it with, so it is not the party's.
            drop(st);
            port.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(());
        }
        return Ok(None);
    };
    let mut packet = received.to_vec();
    match srtp.unprotect(&mut packet) {
        Ok(()) => Ok(Some(packet)),
        Err(e) => {
            drop(st);
            let counter = match e {
                relay_media::srtp::SrtpError::Auth => &port.stats.srtp_auth_failures,
                relay_media::srtp::SrtpError::Replay => &port.stats.srtp_replays,
                _ => &port.stats.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            super::sdes::warn_dropped(port, &e);
            Err(())
        }
    }
}

/// The bytes to send from `sink` to its party: encrypted when that party
/// speaks SRTP to the relay (`Ok(None)`: send what was received).
fn protect(
    sink: &MediaPort,
    decrypted: Option<Vec<u8>>,
    received: &[u8],
) -> Result<Option<Vec<u8>>, ()> {
    let mut st = sink.state();
    let Some(srtp) = st.srtp.as_mut() else {
        if st.dtls.is_some() {
            // No plaintext to a DTLS-SRTP party before its keys exist.
            return Err(());
        }
        return Ok(decrypted);
    };
    let mut packet = decrypted.unwrap_or_else(|| received.to_vec());
    match srtp.protect(&mut packet) {
        Ok(()) => Ok(Some(packet)),
        Err(e) => {
            tracing::trace!(local = %sink.local, error = %e, "SRTP protect failed");
            Err(())
        }
    }
}

/// Sends a run of datagrams from `sink`'s socket to `dest` with one
/// `sendmmsg` (GSO where sizes allow) when the socket can take them; the
/// rest (and everything once a backlog exists, to keep the order) goes to
/// the backlog.
fn send_run(sink: &MediaPort, run: &[&[u8]], dest: SocketAddr, backlog: &mut Backlog) {
    let sent = if backlog.datagrams.is_empty() {
        let fd = sink.socket.as_raw_fd();
        sink.socket
            .try_io(Interest::WRITABLE, || {
                send_batch::send_all(fd, run, dest, &sink.gso)
            })
            .unwrap_or(0)
    } else {
        0
    };
    backlog
        .datagrams
        .extend(run[sent..].iter().map(|p| (dest, p.to_vec())));
}
