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
    let receiver = tokio::spawn(receive(
        socket.clone(),
        queue.clone(),
        ready.clone(),
        stats.clone(),
    ));
    // The receiver goes with this task (it is aborted when dropped).
    let _receiver = AbortOnDrop(receiver);
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

/// Receives datagrams as fast as they come and queues them by sender.
async fn receive(
    socket: Arc<UdpSocket>,
    queue: Arc<Mutex<FairQueue>>,
    ready: Arc<Notify>,
    stats: Arc<NgStats>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "NG socket receive error");
                continue;
            }
        };
        let datagram = buf[..len].to_vec();
        let class = Class::of(&datagram);
        let queued = crate::lock(&queue).push(Request { from, datagram }, class);
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

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
