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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// An echo server taking two connections at once.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            connections: 2,
            deadline: None,
        };
        tokio::spawn(serve(listener, "test", limits, |mut s, _| async move {
            let mut b = [0u8; 64];
            while let Ok(n @ 1..) = s.read(&mut b).await {
                let _ = s.write_all(&b[..n]).await;
            }
        }));
        addr
    }

    async fn echoes(c: &mut TcpStream) -> bool {
        if c.write_all(b"x").await.is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        matches!(c.read(&mut b).await, Ok(1))
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_others_go_on() {
        let addr = echo().await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert!(echoes(&mut a).await && echoes(&mut b).await);
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(!echoes(&mut c).await, "a third connection is closed");
        assert!(echoes(&mut a).await, "the first two are not disturbed");
        drop(a);
        // Its slot is free again once its task has seen the close.
        let mut tries = 0;
        loop {
            let mut d = TcpStream::connect(addr).await.unwrap();
            if echoes(&mut d).await {
                break;
            }
            tries += 1;
            assert!(tries < 100, "the freed slot is never taken");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(echoes(&mut b).await);
    }
}
