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
pub mod summary_reply;
pub mod tcp;
pub mod websocket;

use std::{
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
/// should stop.
const POLL_MS: i32 = 100;

/// Everything the NG thread owns.
struct NgServer {
    socket: std::net::UdpSocket,
    queue: FairQueue,
    service: Arc<NgService>,
    buf: Vec<u8>,
}

impl NgServer {
    /// Serves until `stop`.
    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.drain();
            match self.queue.pop() {
                Some(request) => self.answer(request),
                None => self.wait(libc::POLLIN),
            }
        }
    }

    /// Waits up to [`POLL_MS`] for the socket to be ready for `events`.
    fn wait(&self, events: libc::c_short) {
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call.
        unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    }

    /// Queues every datagram waiting on the (non-blocking) socket.
    fn drain(&mut self) {
        while let Ok((len, from)) = self.socket.recv_from(&mut self.buf) {
            if !self.service.allows(from.ip()) {
                self.service.stats().shed("not_allowed");
                tracing::debug!(%from, "NG request from outside --ng-allow dropped");
                continue;
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
    }

    /// Handles one request and sends its reply.
    fn answer(&mut self, Request { from, datagram }: Request) {
        let Some(answer) = self.service.handle(&datagram) else {
            tracing::debug!(%from, "NG datagram without cookie dropped");
            return;
        };
        let mut sent = self.socket.send_to(&answer.reply, from);
        if matches!(&sent, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            self.wait(libc::POLLOUT);
            sent = self.socket.send_to(&answer.reply, from);
        }
        if let Err(e) = sent {
            tracing::warn!(%from, error = %e, "NG reply not sent");
        }
        // Starting and stopping forwarders, and freeing the request's and
        // reply's trees, wait until the proxy has its reply (see
        // calls::deferred).
        answer.after.run();
        drop(answer.spent);
    }
}
