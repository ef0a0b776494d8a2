//! The accept loop shared by the CLI and HTTP sockets: a cap on concurrent
//! connections, a deadline for each, and a pause after accept errors (an
//! exhausted file table would otherwise spin).

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// Connections served at once per socket.
const MAX_CONNECTIONS: usize = 64;
/// A connection gets this long to send its request and take the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Runs `handle` for each accepted connection until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, what: &'static str, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(what, "too many connections; dropping one");
                    continue;
                };
                let work = handle(stream);
                tokio::spawn(async move {
                    if tokio::time::timeout(DEADLINE, work).await.is_err() {
                        tracing::debug!(what, "connection timed out");
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
