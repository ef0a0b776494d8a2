//! The NG control socket: datagrams in, replies out.
//!
//! One task drains the `--listen-ng` UDP socket into a queue per sender
//! ([`ng_queue`]: round-robin over senders, requests for existing calls
//! first, a flood shed and counted); another takes requests from it and
//! answers each from the same socket to the exact sender (Kamailio checks).
//! A retransmitted cookie gets the cached reply and changes nothing;
//! anything malformed gets an error reply naming the problem (when it has a
//! cookie to answer to), and the daemon keeps serving. Work the reply does
//! not depend on (starting and stopping forwarders) runs after it is sent.

pub mod cli;
pub mod handler;
pub mod metrics;
pub mod ng_queue;
pub mod reply;
pub mod summary_reply;
pub mod tcp;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use relay_ng::CookieCache;
use tokio::{net::UdpSocket, sync::Notify};

use self::ng_queue::{Class, FairQueue, Request, Shed};

use crate::{calls::CallManager, state::StateKeeper, stats::NgStats};

/// rtpengine keeps answered cookies for two 30-second generations.
const COOKIE_GENERATION: Duration = Duration::from_secs(30);

/// Serves NG requests on `socket` until the task is dropped; `replies`
/// are answers an earlier relayd gave (restored from the state store).
pub async fn serve(
    socket: UdpSocket,
    calls: Arc<Mutex<CallManager>>,
    stats: Arc<NgStats>,
    state: Arc<StateKeeper>,
    replies: Vec<relay_state::CookieRecord>,
) {
    let socket = Arc::new(socket);
    let queue = Arc::new(Mutex::new(FairQueue::default()));
    let ready = Arc::new(Notify::new());
    // The receiver stops with this task.
    let _receiver = Receiver::spawn(socket.clone(), queue.clone(), ready.clone(), stats.clone());
    let mut cache = CookieCache::new(COOKIE_GENERATION);
    let now = std::time::Instant::now();
    for r in replies {
        cache.insert(r.cookie, r.reply, now);
    }
    loop {
        let next = crate::lock(&queue).pop();
        let Some(Request { from, datagram }) = next else {
            ready.notified().await;
            continue;
        };
        let Some(answer) = handler::handle(&datagram, &calls, &mut cache, &stats, &state) else {
            tracing::debug!(%from, "NG datagram without cookie dropped");
            continue;
        };
        if let Err(e) = socket.send_to(&answer.reply, from).await {
            tracing::warn!(%from, error = %e, "NG reply not sent");
        }
        // Starting and stopping forwarders, and freeing the request's and
        // reply's trees, wait until the proxy has its reply (see
        // calls::deferred).
        answer.after.run();
        drop(answer.spent);
    }
}

/// The thread that drains the NG socket into the queue. A thread of its
/// own, reading with plain system calls, not a runtime task: under a flood
/// it must keep up with the datagrams arriving while the runtime's threads
/// handle requests, or the kernel's socket buffer fills and a proxy's
/// request waits behind the whole buffer (or is dropped) before fairness
/// can apply. The runtime's side of the socket only ever sends.
struct Receiver {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn spawn(
        socket: Arc<UdpSocket>,
        queue: Arc<Mutex<FairQueue>>,
        ready: Arc<Notify>,
        stats: Arc<NgStats>,
    ) -> Receiver {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let run = move || receive(&socket, &queue, &ready, &stats, &stopped);
        if let Err(e) = std::thread::Builder::new()
            .name("ng-receiver".into())
            .spawn(run)
        {
            tracing::error!(error = %e, "NG receiver thread not started");
        }
        Receiver { stop }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long the receiver waits for a datagram before it checks whether it
/// should stop.
const RECEIVE_POLL_MS: i32 = 100;

/// Receives datagrams as fast as they come and queues them by sender,
/// until `stop`.
fn receive(
    socket: &UdpSocket,
    queue: &Mutex<FairQueue>,
    ready: &Notify,
    stats: &NgStats,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::os::fd::AsRawFd as _;
    let fd = socket.as_raw_fd();
    let mut buf = vec![0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call.
        if unsafe { libc::poll(&mut pfd, 1, RECEIVE_POLL_MS) } <= 0 {
            continue;
        }
        // The socket is non-blocking (the runtime's): drain it.
        while let Some((len, from)) = recv_from(fd, &mut buf) {
            let datagram = buf[..len].to_vec();
            let class = Class::of(&datagram);
            let queued = crate::lock(queue).push(Request { from, datagram }, class);
            match queued {
                Ok(()) => ready.notify_one(),
                Err(shed) => {
                    let reason = match shed {
                        Shed::SourceFull => "source_full",
                        Shed::BudgetFull => "budget_full",
                    };
                    stats.shed(reason);
                    tracing::debug!(%from, reason, "NG request shed under load");
                }
            }
        }
    }
}

/// One datagram from the non-blocking socket `fd`, or None when none waits
/// (or on an error, which the next poll meets again).
fn recv_from(fd: std::os::fd::RawFd, buf: &mut [u8]) -> Option<(usize, std::net::SocketAddr)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: buf and addr are valid for the lengths given, for the call.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut addr_len,
        )
    };
    if n < 0 {
        return None;
    }
    let from = socket_addr(&addr)?;
    Some((n as usize, from))
}

/// The address in a `sockaddr_storage` filled by recvfrom.
fn socket_addr(addr: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(std::net::SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
