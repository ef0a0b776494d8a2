//! The accept loop shared by the TCP sockets (CLI, HTTP, NG over TCP): a
//! cap on concurrent connections, optionally a deadline for each, and a
//! pause after accept errors (an exhausted file table would otherwise spin).

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// How many connections a socket serves at once, and for how long each.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once; one more is closed at once.
    pub connections: usize,
    /// How long a connection may last in all, if bounded. Connections a
    /// SIP proxy keeps open (NG over TCP or WebSocket) have none: their
    /// handlers time out idle connections instead.
    pub deadline: Option<Duration>,
}

/// How often refused connections are logged at most.
const REFUSAL_LOG: Duration = Duration::from_secs(10);

/// One request and its answer (relayctl): 64 at once, 5 s each.
pub const SHORT_LIVED: Limits = Limits {
    connections: 64,
    deadline: Some(Duration::from_secs(5)),
};

/// Runs `handle` for each accepted connection until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, what: &'static str, limits: Limits, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.connections));
    // Refusals are logged as warnings at most every REFUSAL_LOG (a flood
    // of connections must not become a flood of log lines).
    let mut refused = 0u64;
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    refused += 1;
                    if logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG) {
                        tracing::warn!(what, %peer, limit = limits.connections, refused,
                            "too many connections; closing new ones");
                        logged = Some(tokio::time::Instant::now());
                        refused = 0;
                    }
                    continue;
                };
                let work = handle(stream, peer);
                tokio::spawn(async move {
                    match limits.deadline {
                        Some(deadline) => {
                            if tokio::time::timeout(deadline, work).await.is_err() {
                                tracing::debug!(what, %peer, "connection timed out");
                            }
                        }
                        None => work.await,
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(what, error = %e, "accept error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
