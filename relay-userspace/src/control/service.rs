//! The transport-neutral NG service: one handler and one cookie cache for
//! every transport (UDP `--listen-ng`, TCP `--listen-tcp-ng`, HTTP `POST
//! /ng` and WebSocket `ng.rtpengine.com` on `--listen-http`).
//!
//! A request is handled under the cache's lock, so the same cookie arriving
//! on two transports at once is handled once and answered twice from the
//! cache (as rtpengine's one cache does); the call manager's lock
//! serialises requests anyway. Stream transports call [`NgService::request`]
//! from the runtime: the work runs on a blocking thread, since it takes
//! locks and may write the state journal.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use relay_ng::CookieCache;

use super::{
    handler::{self, Answer},
    ng_allow::NgAllow,
};
use crate::{calls::CallManager, state::StateKeeper, stats::NgStats};

/// rtpengine keeps answered cookies for two 30-second generations.
pub const COOKIE_GENERATION: Duration = Duration::from_secs(30);

/// Largest NG message a stream transport (TCP, HTTP, WebSocket) takes; a
/// UDP datagram is at most 64 KiB, and an offer with a large SDP a few KiB.
pub const MAX_MESSAGE: usize = 256 << 10;

/// The handler, its cookie cache and what it works on.
#[derive(Debug)]
pub struct NgService {
    cache: Mutex<CookieCache>,
    calls: Arc<Mutex<CallManager>>,
    stats: Arc<NgStats>,
    state: Arc<StateKeeper>,
    allow: NgAllow,
}

impl NgService {
    /// The service, its cache holding `replies` (answers an earlier relayd
    /// gave, restored from the state store).
    pub fn new(
        allow: NgAllow,
        calls: Arc<Mutex<CallManager>>,
        stats: Arc<NgStats>,
        state: Arc<StateKeeper>,
        replies: Vec<relay_state::CookieRecord>,
    ) -> Self {
        let mut cache = CookieCache::new(COOKIE_GENERATION);
        let now = std::time::Instant::now();
        for r in replies {
            cache.insert(r.cookie, r.reply, now);
        }
        NgService {
            cache: Mutex::new(cache),
            calls,
            stats,
            state,
            allow,
        }
    }

    /// Whether `--ng-allow` lets `ip` send NG commands.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.allows(ip)
    }

    /// The counters, for sheds and refusals a transport counts.
    pub fn stats(&self) -> &Arc<NgStats> {
        &self.stats
    }

    /// Answers one `cookie SP payload` message (a retransmitted cookie from
    /// the cache); None when it carries no cookie to answer to. Blocking.
    pub fn handle(&self, message: &[u8]) -> Option<Answer> {
        let mut cache = crate::lock(&self.cache);
        handler::handle(message, &self.calls, &mut cache, &self.stats, &self.state)
    }

    /// [`Self::handle`] on a blocking thread, for the stream transports.
    /// The caller sends the reply, then hands the answer to [`finish`].
    pub async fn request(self: &Arc<Self>, message: Vec<u8>) -> Option<Answer> {
        let service = self.clone();
        match tokio::task::spawn_blocking(move || service.handle(&message)).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, "NG request handling failed");
                None
            }
        }
    }
}

/// The work an answer leaves for after its reply is sent (starting and
/// stopping forwarders, freeing the request's trees), off the runtime's
/// workers.
pub fn finish(answer: Answer) {
    let Answer { after, spent, .. } = answer;
    tokio::task::spawn_blocking(move || {
        after.run();
        drop(spent);
    });
}

/// A service over no interfaces and no kernel, enough for `ping`, `list`
/// and errors (the transports' tests).
#[cfg(test)]
pub(crate) fn test_service() -> Arc<NgService> {
    test_service_allowing(NgAllow::default())
}

/// [`test_service`] taking commands only from `allow`.
#[cfg(test)]
pub(crate) fn test_service_allowing(allow: NgAllow) -> Arc<NgService> {
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let calls = CallManager::new(
        crate::calls::CallConfig::default(),
        Vec::new(),
        crate::calls::kernel::Kernel::new(None, 16),
        events,
    );
    Arc::new(NgService::new(
        allow,
        Arc::new(Mutex::new(calls)),
        Arc::new(NgStats::default()),
        Arc::new(StateKeeper::off()),
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::control::ng_allow::Prefix;

    /// `request` to `addr`, everything the server sends back.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request).await.unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all).await;
        String::from_utf8_lossy(&all).into_owned()
    }

    #[tokio::test]
    async fn ng_allow_applies_to_every_transport() {
        let allow = NgAllow::new(vec![Prefix::parse("10.0.0.0/8").unwrap()]);
        let service = test_service_allowing(allow);
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        tokio::spawn(super::super::ng_tcp::serve(tcp, service.clone()));
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let http_service = Arc::new(super::super::http::HttpService {
            registry: prometheus_client::registry::Registry::default(),
            ng: service.clone(),
        });
        tokio::spawn(super::super::http::serve(http, http_service));

        // TCP: closed without an answer.
        assert_eq!(exchange(tcp_addr, b"c1 d7:command4:pinge").await, "");
        // HTTP and WebSocket: 403.
        let body = "c2 d7:command4:pinge";
        let post = format!(
            "POST /ng HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-rtpengine-ng\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(http_addr, post.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
        let upgrade =
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: ng.rtpengine.com\r\n\r\n";
        let answer = exchange(http_addr, upgrade.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
        // /metrics is not NG: still served.
        let answer = exchange(
            http_addr,
            b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
}
