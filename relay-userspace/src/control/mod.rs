//! The NG control socket: datagrams in, replies out.
//!
//! One thread of its own serves the `--listen-ng` UDP socket: it drains the
//! socket into a queue per sender ([`ng_queue`]: round-robin over senders,
//! each sender's requests for existing calls first, a flood shed and
//! counted), takes the next request from it and answers it from the same
//! socket to the exact sender (Kamailio checks), and drains again. One
//! thread, not runtime tasks: under a flood a request must not wait for a
//! second busy thread to be scheduled (with the flooder on the same cores,
//! that wait is the latency tail), and the socket is drained between any
//! two requests, so a proxy's request never waits behind the kernel's whole
//! socket buffer.
//! A retransmitted cookie gets the cached reply and changes nothing;
//! anything malformed gets an error reply naming the problem (when it has a
//! cookie to answer to), and the daemon keeps serving. Work the reply does
//! not depend on (starting and stopping forwarders) runs after it is sent.
//!
//! The same handler and cookie cache ([`service`]) serve NG over TCP
//! ([`ng_tcp`]), HTTP and WebSocket ([`http`], [`websocket`]).

pub mod cli;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod ng_allow;
pub mod ng_queue;
pub mod ng_tcp;
pub mod reply;
pub mod service;
pub mod subscribe;
pub mod summary_reply;
pub mod tcp;
pub mod websocket;

use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio::net::UdpSocket;

use self::{
    ng_queue::{Class, FairQueue, Request, Shed},
    service::NgService,
};

/// Serves NG requests on `socket` until the task is dropped (the serving
/// thread stops with it), with `service` (shared with the other NG
/// transports).
pub async fn serve(socket: UdpSocket, service: Arc<NgService>) {
    let socket = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "NG socket unusable");
            return;
        }
    };
    let server = NgServer {
        socket,
        queue: FairQueue::default(),
        service,
        buf: vec![0u8; 65536],
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    // Forwarders started after a reply are runtime tasks.
    let runtime = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("ng".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            server.run(&stopped);
        });
    let _stop = match thread {
        Ok(thread) => StopOnDrop {
            stop,
            thread: Some(thread),
        },
        Err(e) => {
            tracing::error!(error = %e, "NG thread not started");
            return;
        }
    };
    // The thread does the work; this task only marks its lifetime.
    std::future::pending::<()>().await;
}

/// Stops the NG thread (and waits for it) when the serving task goes.
struct StopOnDrop {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the NG thread waits for a datagram before it checks whether it
/// should stop (and at most for room to send a reply).
const POLL_MS: u64 = 100;

/// Everything the NG thread owns.
struct NgServer {
    socket: std::net::UdpSocket,
    queue: FairQueue,
    service: Arc<NgService>,
    buf: Vec<u8>,
}

impl NgServer {
    /// Serves until `stop`. With nothing queued the thread sleeps in a
    /// blocking receive (the socket's read timeout bounds it, so `stop` is
    /// seen); then it takes whatever else waits without blocking, and
    /// answers one request. A proxy's sequential request costs three
    /// system calls: the receive that wakes the thread, the drain that
    /// finds nothing more, the reply (a poll and a second empty drain per
    /// request cost the sequential NG rate about a fifth).
    fn run(mut self, stop: &AtomicBool) {
        if let Err(e) = self.block_with_timeouts() {
            tracing::error!(error = %e, "NG socket unusable");
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            if self.queue.is_empty() {
                if let Ok((len, from)) = self.socket.recv_from(&mut self.buf) {
                    self.accept(len, from);
                }
            }
            self.drain();
            if let Some(request) = self.queue.pop() {
                self.answer(request);
            }
        }
    }

    /// Makes the socket blocking with [`POLL_MS`] read and write timeouts.
    fn block_with_timeouts(&self) -> std::io::Result<()> {
        let timeout = Some(std::time::Duration::from_millis(POLL_MS));
        self.socket.set_nonblocking(false)?;
        self.socket.set_read_timeout(timeout)?;
        self.socket.set_write_timeout(timeout)
    }

    /// One datagram already waiting, never blocking: its length (in
    /// `buf`) and sender.
    fn recv_waiting(&mut self) -> Option<(usize, SocketAddr)> {
        // SAFETY: plain data; zero is valid.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer and the address storage outlive the call and
        // their lengths are given.
        let n = unsafe {
            libc::recvfrom(
                self.socket.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut from_len,
            )
        };
        let len = usize::try_from(n).ok()?;
        // SAFETY: the kernel filled in a sockaddr of the family it names.
        let from =
            unsafe { crate::netdev::socket_addr((&from as *const libc::sockaddr_storage).cast()) }?;
        Some((len, from))
    }

    /// Queues every datagram waiting on the socket.
    fn drain(&mut self) {
        while let Some((len, from)) = self.recv_waiting() {
            self.accept(len, from);
        }
    }

    /// Queues the datagram of `len` bytes in `buf` from `from` (or sheds it).
    fn accept(&mut self, len: usize, from: SocketAddr) {
        if !self.service.allows(from.ip()) {
            self.service.stats().shed("not_allowed");
            tracing::debug!(%from, "NG request from outside --ng-allow dropped");
            return;
        }
        let datagram = self.buf[..len].to_vec();
        let class = Class::of(&datagram);
        if let Err(shed) = self.queue.push(Request { from, datagram }, class) {
            let reason = match shed {
                Shed::SourceFull => "source_full",
                Shed::BudgetFull => "budget_full",
            };
            self.service.stats().shed(reason);
            tracing::debug!(%from, reason, "NG request shed under load");
        }
    }

    /// Handles one request and sends its reply.
    fn answer(&mut self, Request { from, datagram }: Request) {
        let Some(answer) = self.service.handle(&datagram) else {
            tracing::debug!(%from, "NG datagram without cookie dropped");
            return;
        };
        // Blocking, at most the write timeout when the send buffer is full.
        if let Err(e) = self.socket.send_to(&answer.reply, from) {
            tracing::warn!(%from, error = %e, "NG reply not sent");
        }
        // Starting and stopping forwarders, and freeing the request's and
        // reply's trees, wait until the proxy has its reply (see
        // calls::deferred).
        answer.after.run();
        drop(answer.spent);
    }
}
