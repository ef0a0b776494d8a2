//! The HTTP socket (`--listen-http`), served by hyper: `GET /metrics`
//! (Prometheus), `GET /ping` (`pong`), NG as rtpengine offers it over HTTP
//! (`POST /ng`, body and reply `cookie SP dictionary`, content type
//! `application/x-rtpengine-ng`), and WebSocket upgrades to NG
//! (subprotocol `ng.rtpengine.com`, see [`super::websocket`]).
//!
//! Bounds: [`LIMITS`] connections at once; a request head must arrive
//! within [`HEAD_TIMEOUT`] (also how long a keep-alive connection may sit
//! idle), a body within [`BODY_TIMEOUT`] and be at most [`MAX_MESSAGE`].

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};

use super::{
    service::{finish, NgService, MAX_MESSAGE},
    tcp::Limits,
};

/// Connections at once (WebSocket ones from proxies included).
pub const LIMITS: Limits = Limits {
    connections: 256,
    deadline: None,
};
/// How long a request head may take, and a keep-alive connection idle.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may take.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of NG over HTTP, requests and replies.
pub const NG_CONTENT_TYPE: &str = "application/x-rtpengine-ng";

/// What the HTTP socket serves.
#[derive(Debug)]
pub struct HttpService {
    /// The Prometheus registry `/metrics` renders.
    pub registry: Registry,
    /// The NG handler.
    pub ng: Arc<NgService>,
}

/// The body of every response.
pub type Body = Full<Bytes>;

/// A response with a plain-text body.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(
        status,
        "text/plain",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// Serves the HTTP socket until the task is dropped.
pub async fn serve(listener: TcpListener, service: Arc<HttpService>) {
    super::tcp::serve(listener, "HTTP", LIMITS, |stream, peer| {
        connection(stream, peer, service.clone())
    })
    .await;
}

async fn connection(stream: TcpStream, peer: SocketAddr, service: Arc<HttpService>) {
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(route(request, peer, service).await) }
            }),
        )
        .with_upgrades();
    if let Err(e) = served.await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

async fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    service: Arc<HttpService>,
) -> Response<Body> {
    if super::websocket::is_upgrade(&request) {
        return super::websocket::upgrade(request, peer, service.ng.clone());
    }
    let path = request.uri().path().to_owned();
    let mut response = match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            match super::metrics::render(&service.registry) {
                Ok(body) => respond(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body.into(),
                ),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
            }
        }
        (&Method::GET | &Method::HEAD, "/ping") => text(StatusCode::OK, "pong\n"),
        (&Method::POST, "/ng") => ng(request, peer, &service.ng).await,
        (_, "/ng") => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "NG over HTTP takes POST requests\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            r
        }
        (_, "/metrics" | "/ping") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "/metrics and /ping take GET requests\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /ping, POST /ng, or a WebSocket (ng.rtpengine.com)\n",
        ),
    };
    // A proxy's NG requests keep their connection (as rtpengine's); a
    // scrape or a ping ends it, as before NG came to this socket, so that
    // a client reading to the end of the connection is not kept waiting.
    if path != "/ng" {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Whether the request's content type is `want` (parameters and case
/// aside).
fn content_type_is<B>(request: &Request<B>, want: &str) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

/// `POST /ng`: one NG message in the body, its reply in the response.
async fn ng(
    request: Request<Incoming>,
    peer: SocketAddr,
    service: &Arc<NgService>,
) -> Response<Body> {
    if !service.allows(peer.ip()) {
        service.stats().shed("not_allowed");
        tracing::debug!(%peer, "NG over HTTP from outside --ng-allow refused");
        return text(StatusCode::FORBIDDEN, "not allowed to send NG commands\n");
    }
    if !content_type_is(&request, NG_CONTENT_TYPE) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "NG over HTTP needs Content-Type: application/x-rtpengine-ng\n",
        );
    }
    let body = Limited::new(request.into_body(), MAX_MESSAGE).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("NG message larger than {MAX_MESSAGE} bytes\n"),
            )
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "NG over HTTP body not read");
            return text(StatusCode::BAD_REQUEST, "request body not read\n");
        }
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
    };
    match service.request(body.to_vec()).await {
        Some(answer) => {
            let reply = Bytes::from(answer.reply.clone());
            // hyper writes the response once this returns: the work after
            // the reply starts as it is written rather than after.
            finish(answer);
            respond(StatusCode::OK, NG_CONTENT_TYPE, reply)
        }
        None => text(
            StatusCode::BAD_REQUEST,
            "invalid NG data: no cookie (the body is `cookie SP dictionary`)\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        time::Instant,
    };

    use super::*;

    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Arc::new(HttpService {
            registry: Registry::default(),
            ng: super::super::service::test_service(),
        });
        tokio::spawn(serve(listener, service));
        addr
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_or_ping_ends_its_connection() {
        let addr = server().await;
        for path in ["/ping", "/metrics"] {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let start = Instant::now();
            let mut all = Vec::new();
            c.read_to_end(&mut all).await.unwrap();
            let text = String::from_utf8_lossy(&all);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(start.elapsed() < Duration::from_secs(1), "{path}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_closed() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let body = b"c1 d7:command4:pinge";
        let request = format!(
            "POST /ng HTTP/1.1\r\nHost: x\r\nContent-Type: {NG_CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(request.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        let start = Instant::now();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nc1 d6:result4:ponge"), "{text}");
        let idle = start.elapsed();
        assert!(idle >= HEAD_TIMEOUT && idle < 2 * HEAD_TIMEOUT, "{idle:?}");
    }
}
