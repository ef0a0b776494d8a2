//! NG over WebSocket on `--listen-http`, as rtpengine offers it: a client
//! upgrades (any path) asking for the subprotocol `ng.rtpengine.com`; each
//! message (text or binary) is one `cookie SP dictionary` request, each
//! reply one binary message `cookie SP reply`, in order.
//!
//! An upgrade without that subprotocol is refused with `400` naming it
//! (rtpengine drops the connection without an answer). Messages are at
//! most [`MAX_MESSAGE`] (a larger one closes the connection with 1009); a
//! connection quiet for [`IDLE`] is closed (1000); pings are answered.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::{body::Incoming, header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig},
        Error as WsError, Message,
    },
    WebSocketStream,
};

use super::{
    http::{text, Body},
    service::{finish, NgService, MAX_MESSAGE},
};

/// rtpengine's NG subprotocol.
pub const SUBPROTOCOL: &str = "ng.rtpengine.com";
/// A connection without a message for this long is closed.
pub const IDLE: Duration = super::ng_tcp::IDLE;
/// A client that takes no reply for this long is dropped.
const WRITE: Duration = Duration::from_secs(30);

/// Whether `request` asks to become a WebSocket.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// Whether the client offers `ng.rtpengine.com`.
fn offers_subprotocol<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Answers an upgrade request: `101` and the NG loop on the upgraded
/// connection, or an error saying what is wrong.
pub fn upgrade(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    service: Arc<NgService>,
) -> Response<Body> {
    if !service.allows(peer.ip()) {
        service.stats().shed("not_allowed");
        tracing::debug!(%peer, "NG over WebSocket from outside --ng-allow refused");
        return text(StatusCode::FORBIDDEN, "not allowed to send NG commands\n");
    }
    if request.method() != hyper::Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET\n",
        );
    }
    let version_ok = request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 is the one supported\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing\n");
    };
    if !offers_subprotocol(&request) {
        tracing::info!(%peer, "WebSocket upgrade without the ng.rtpengine.com subprotocol refused");
        return text(
            StatusCode::BAD_REQUEST,
            "WebSocket subprotocol must be ng.rtpengine.com (Sec-WebSocket-Protocol)\n",
        );
    }
    let accept = derive_accept_key(key.as_bytes());
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(io) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_MESSAGE))
                    .max_frame_size(Some(MAX_MESSAGE));
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config))
                        .await;
                connection(ws, peer, service).await;
            }
            Err(e) => tracing::info!(%peer, error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        header::HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Ok(v) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// The NG loop of one WebSocket connection.
async fn connection<S>(mut ws: WebSocketStream<S>, peer: SocketAddr, service: Arc<NgService>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tracing::info!(%peer, "NG over WebSocket connection");
    let _open = service
        .stats()
        .connection(crate::stats::NgTransport::WebSocket);
    loop {
        let message = match tokio::time::timeout(IDLE, ws.next()).await {
            Err(_) => {
                tracing::info!(%peer, "NG over WebSocket connection idle; closing");
                close(&mut ws, CloseCode::Normal, "idle").await;
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(WsError::Capacity(e)))) => {
                tracing::info!(%peer, error = %e, "NG over WebSocket message too large; closing");
                close(&mut ws, CloseCode::Size, "message too large").await;
                super::ng_tcp::linger(ws.get_mut()).await;
                return;
            }
            Ok(Some(Err(e))) => {
                tracing::info!(%peer, error = %e, "NG over WebSocket connection failed");
                return;
            }
        };
        let data = match message {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            // Pings are answered by the library; pongs need nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => {
                tracing::info!(%peer, "NG over WebSocket connection closed by the peer");
                return;
            }
        };
        let Some(answer) = service.request(data).await else {
            tracing::debug!(%peer, "NG over WebSocket message without cookie dropped");
            continue;
        };
        let reply = Message::Binary(answer.reply.clone().into());
        let sent = tokio::time::timeout(WRITE, ws.send(reply)).await;
        finish(answer);
        if !matches!(sent, Ok(Ok(()))) {
            tracing::info!(%peer, "NG over WebSocket reply not sent; closing");
            return;
        }
    }
}

async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(WRITE, ws.close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use tokio::{net::TcpStream, time::Instant};
    use tokio_tungstenite::{client_async, tungstenite::client::IntoClientRequest as _};

    use super::*;

    /// relayd's HTTP socket on a loopback port, its address.
    async fn server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Arc::new(super::super::http::HttpService {
            registry: prometheus_client::registry::Registry::default(),
            ng: super::super::service::test_service(),
        });
        tokio::spawn(super::super::http::serve(listener, service));
        addr
    }

    async fn connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(SUBPROTOCOL),
        );
        let stream = TcpStream::connect(addr).await.unwrap();
        client_async(request, stream).await.unwrap().0
    }

    async fn ping(ws: &mut WebSocketStream<TcpStream>, cookie: &str) {
        ws.send(Message::text(format!("{cookie} d7:command4:pinge")))
            .await
            .unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(
            reply,
            Message::binary(format!("{cookie} d6:result4:ponge").into_bytes())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxys_websocket_lives_until_it_is_idle() {
        let addr = server().await;
        let mut ws = connect(addr).await;
        ping(&mut ws, "a").await;
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        ping(&mut ws, "b").await;
        let start = Instant::now();
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() >= IDLE,
            "closed after {:?}",
            start.elapsed()
        );
    }
}
