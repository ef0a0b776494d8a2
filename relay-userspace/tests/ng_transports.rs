//! NG over TCP (`--listen-tcp-ng`), HTTP (`POST /ng`, driven with curl) and
//! WebSocket (subprotocol `ng.rtpengine.com`, driven with the tungstenite
//! client) against a real relayd: offer, answer, query and delete on each,
//! one cookie cache shared with UDP, and bad input on each transport
//! answered with a clear error without disturbing other connections or the
//! daemon.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Stdio,
    time::Duration,
};

use relay_ng::{bencode, Value};
use relay_tests::{netns::Netns, ng_client::sdp_endpoint, require_root, topology::RELAY_B};
use tungstenite::{client::IntoClientRequest as _, Message, WebSocket};

mod common;

use common::{answer, command, offer, stop_relayd, Bed};

const TCP_NG: &str = "127.0.0.1:2224";
const HTTP: &str = "127.0.0.1:2280";
const SUBPROTOCOL: &str = "ng.rtpengine.com";

fn message(cookie: &str, body: &Value) -> Vec<u8> {
    let mut m = format!("{cookie} ").into_bytes();
    m.extend(bencode::encode(body));
    m
}

/// The dictionary of a `cookie SP dictionary` reply, checking the cookie.
fn reply_body(cookie: &str, reply: &[u8]) -> Value {
    let rest = reply
        .strip_prefix(cookie.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
        .unwrap_or_else(|| {
            panic!(
                "reply without cookie {cookie}: {}",
                String::from_utf8_lossy(reply)
            )
        });
    bencode::decode(rest).unwrap()
}

fn result(v: &Value) -> &str {
    v.get("result").and_then(Value::as_str).unwrap_or("")
}

fn error_reason(v: &Value) -> String {
    v.get("error-reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// An NG over TCP connection made in the relay's namespace.
struct TcpNg {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl TcpNg {
    fn connect(ns: &Netns) -> TcpNg {
        let stream = ns.run(|| TcpStream::connect(TCP_NG)).unwrap().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        TcpNg {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads the next reply (one bencoded dictionary after `cookie SP`).
    fn reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(space) = self.buf.iter().position(|&b| b == b' ') {
                if let Ok((_, used)) = bencode::decode_prefix(&self.buf[space + 1..]) {
                    return self.buf.drain(..space + 1 + used).collect();
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("NG over TCP reply");
            assert!(n > 0, "connection closed before a reply");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn request(&mut self, cookie: &str, body: &Value) -> (Vec<u8>, Value) {
        self.send(&message(cookie, body));
        let raw = self.reply();
        let v = reply_body(cookie, &raw);
        (raw, v)
    }

    /// Whether the server closed the connection (EOF within 5 s).
    fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(self.stream.read(&mut chunk), Ok(0))
    }
}

/// A response of curl: status and body.
struct Http {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// Runs curl in `ns` against `path` on the HTTP socket with `args`,
/// sending `body` (if any) as the request body.
fn curl(ns: &Netns, path: &str, args: &[&str], body: Option<&[u8]>) -> Http {
    let mut cmd = ns.command("curl").unwrap();
    cmd.args(["-sS", "-i", "--max-time", "10"]).args(args);
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(format!("http://{HTTP}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("curl runs");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(body) = body {
        // A large body may be refused before curl has sent all of it.
        let _ = stdin.write_all(body);
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let headers = String::from_utf8_lossy(&out.stdout[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    Http {
        status,
        headers,
        body: out.stdout[split + 4..].to_vec(),
    }
}

const NG_TYPE: &str = "Content-Type: application/x-rtpengine-ng";

/// `POST /ng` with curl.
fn http_ng(ns: &Netns, cookie: &str, body: &Value) -> (Vec<u8>, Value) {
    let r = curl(
        ns,
        "/ng",
        &["-X", "POST", "-H", NG_TYPE],
        Some(&message(cookie, body)),
    );
    assert_eq!(r.status, 200, "{}", r.headers);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("content-type: application/x-rtpengine-ng"),
        "{}",
        r.headers
    );
    let v = reply_body(cookie, &r.body);
    (r.body, v)
}

type Ws = WebSocket<TcpStream>;

/// A WebSocket client in `ns`, offering `subprotocol` (if any).
fn ws_connect(ns: &Netns, subprotocol: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let stream = ns.run(|| TcpStream::connect(HTTP)).unwrap().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!("ws://{HTTP}/").into_client_request().unwrap();
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((ws, response)) => {
            assert_eq!(
                response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok()),
                subprotocol
            );
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// The next NG reply on a WebSocket (a binary message).
fn ws_reply(ws: &mut Ws) -> Vec<u8> {
    loop {
        match ws.read().expect("a WebSocket reply") {
            Message::Binary(b) => return b.to_vec(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn ws_ng(ws: &mut Ws, cookie: &str, body: &Value) -> (Vec<u8>, Value) {
    ws.send(Message::Binary(message(cookie, body).into()))
        .unwrap();
    let raw = ws_reply(ws);
    let v = reply_body(cookie, &raw);
    (raw, v)
}

fn relayd(bed: &Bed) -> relay_tests::netns::ChildGuard {
    // Deleted calls go at once, so that `list` shows the deletes worked.
    bed.relayd(&[
        "--listen-tcp-ng",
        TCP_NG,
        "--listen-http",
        HTTP,
        "--delete-delay",
        "0",
    ])
}

/// The offer's SDP points the callee at the relay.
fn assert_relayed(reply: &Value) {
    assert_eq!(result(reply), "ok", "{reply:?}");
    let sdp = reply.get("sdp").and_then(Value::as_bytes).unwrap();
    let (addr, _) = sdp_endpoint(sdp).unwrap();
    assert_eq!(addr, RELAY_B, "the callee is sent the relay's side b");
}

#[test]
fn calls_over_tcp_http_and_websocket_share_the_handler_and_cache() {
    require_root!();
    let bed = Bed::new("ngtr");
    let relayd = relayd(&bed);
    let ns = &bed.t.r;

    // TCP: a whole call; a retransmission gets the first reply, byte for
    // byte; two requests in one write get two replies in order.
    let mut tcp = TcpNg::connect(ns);
    let (first, offered) = tcp.request("t1", &offer("call-tcp"));
    assert_relayed(&offered);
    let (again, _) = tcp.request("t1", &offer("call-tcp"));
    assert_eq!(first, again, "retransmission answered from the cache");
    let (_, answered) = tcp.request("t2", &answer("call-tcp"));
    assert_eq!(result(&answered), "ok", "{answered:?}");
    let mut two = message("p1", &Value::dict([("command", Value::str("ping"))]));
    two.extend(message(
        "p2",
        &Value::dict([("command", Value::str("ping"))]),
    ));
    tcp.send(&two);
    assert_eq!(result(&reply_body("p1", &tcp.reply())), "pong");
    assert_eq!(result(&reply_body("p2", &tcp.reply())), "pong");
    // A message split over several writes.
    let split = message("t3", &command("query", "call-tcp"));
    tcp.send(&split[..10]);
    std::thread::sleep(Duration::from_millis(100));
    tcp.send(&split[10..]);
    assert_eq!(result(&reply_body("t3", &tcp.reply())), "ok");
    // The same call seen over UDP.
    let q = bed.ng.ok(&command("query", "call-tcp")).unwrap();
    assert!(q.get("tags").is_some(), "{q:?}");

    // HTTP with curl.
    let (first, offered) = http_ng(ns, "h1", &offer("call-http"));
    assert_relayed(&offered);
    let (again, _) = http_ng(ns, "h1", &offer("call-http"));
    assert_eq!(first, again, "retransmission answered from the cache");
    let (_, answered) = http_ng(ns, "h2", &answer("call-http"));
    assert_eq!(result(&answered), "ok", "{answered:?}");

    // WebSocket.
    let mut ws = ws_connect(ns, Some(SUBPROTOCOL)).unwrap();
    let (first, offered) = ws_ng(&mut ws, "w1", &offer("call-ws"));
    assert_relayed(&offered);
    let (again, _) = ws_ng(&mut ws, "w1", &offer("call-ws"));
    assert_eq!(first, again, "retransmission answered from the cache");
    let (_, answered) = ws_ng(&mut ws, "w2", &answer("call-ws"));
    assert_eq!(result(&answered), "ok", "{answered:?}");
    // A text message is taken too; the reply is binary, as rtpengine's.
    ws.send(Message::Text("w3 d7:command4:pinge".into()))
        .unwrap();
    assert_eq!(result(&reply_body("w3", &ws_reply(&mut ws))), "pong");

    // One cache for all: a cookie answered over TCP is answered the same
    // over WebSocket, HTTP and UDP, even with another body.
    let (tcp_reply, _) = tcp.request("x1", &command("query", "call-tcp"));
    let other = command("query", "call-ws");
    assert_eq!(ws_ng(&mut ws, "x1", &other).0, tcp_reply);
    assert_eq!(http_ng(ns, "x1", &other).0, tcp_reply);
    assert_eq!(bed.ng.raw(&message("x1", &other)).unwrap(), tcp_reply);

    // Deletes, each over another transport than its call's.
    let (_, deleted) = ws_ng(&mut ws, "d1", &command("delete", "call-tcp"));
    assert_eq!(result(&deleted), "ok", "{deleted:?}");
    let (_, deleted) = tcp.request("d2", &command("delete", "call-http"));
    assert_eq!(result(&deleted), "ok", "{deleted:?}");
    let (_, deleted) = http_ng(ns, "d3", &command("delete", "call-ws"));
    assert_eq!(result(&deleted), "ok", "{deleted:?}");
    let list = bed
        .ng
        .ok(&Value::dict([("command", Value::str("list"))]))
        .unwrap();
    assert_eq!(
        list.get("calls")
            .and_then(Value::as_list)
            .map(<[Value]>::len),
        Some(0),
        "{list:?}"
    );
    // The open connections, one of each, in /metrics.
    let metrics = curl(ns, "/metrics", &[], None);
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "xrelay_ng_connections{transport=\"tcp\"} 1",
        "xrelay_ng_connections{transport=\"websocket\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    ws.close(None).unwrap();
    stop_relayd(ns, relayd);
}

#[test]
fn bad_input_gets_a_clear_error_and_harms_nothing() {
    require_root!();
    let bed = Bed::new("ngbad");
    let relayd = relayd(&bed);
    let ns = &bed.t.r;
    let ping = Value::dict([("command", Value::str("ping"))]);
    // Long-lived connections that must survive everything below.
    let mut tcp_keep = TcpNg::connect(ns);
    let mut ws_keep = ws_connect(ns, Some(SUBPROTOCOL)).unwrap();

    // TCP: what cannot be framed gets an error with its cookie, then the
    // connection is closed (the next message's start is unknown).
    let mut tcp = TcpNg::connect(ns);
    tcp.send(b"g1 zzz");
    let v = reply_body("g1", &tcp.reply());
    assert_eq!(error_reason(&v), "Invalid NG data format");
    assert!(tcp.closed());
    // Not a dictionary: an error, and the connection goes on.
    let mut tcp = TcpNg::connect(ns);
    tcp.send(b"g2 i5e");
    let v = reply_body("g2", &tcp.reply());
    assert_eq!(error_reason(&v), "Invalid NG data format");
    assert_eq!(result(&tcp.request("g3", &ping).1), "pong");
    // Larger than 256 KiB without ending: refused, closed.
    let mut tcp = TcpNg::connect(ns);
    let mut big = b"g4 d3:sdp999999:".to_vec();
    big.resize(300 << 10, b'x');
    tcp.send(&big);
    let v = reply_body("g4", &tcp.reply());
    assert_eq!(error_reason(&v), "Message too large");
    assert!(tcp.closed());

    // HTTP.
    let r = curl(
        ns,
        "/ng",
        &["-X", "POST", "-H", NG_TYPE],
        Some(b"no-cookie-here"),
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("no cookie"));
    let r = curl(ns, "/ng", &["-X", "POST", "-H", NG_TYPE], Some(b"h1 zzz"));
    assert_eq!(r.status, 200);
    assert_eq!(
        error_reason(&reply_body("h1", &r.body)),
        "Invalid NG data format"
    );
    let r = curl(
        ns,
        "/ng",
        &["-X", "POST", "-H", "Content-Type: text/plain"],
        Some(&message("h2", &ping)),
    );
    assert_eq!(r.status, 415);
    assert!(String::from_utf8_lossy(&r.body).contains("application/x-rtpengine-ng"));
    let r = curl(ns, "/ng", &[], None);
    assert_eq!(r.status, 405, "GET /ng");
    assert!(r.headers.to_ascii_lowercase().contains("allow: post"));
    let r = curl(ns, "/ng", &["-X", "PUT", "-H", NG_TYPE], Some(b"h3 de"));
    assert_eq!(r.status, 405, "PUT /ng");
    let mut big = b"h4 d3:sdp999999:".to_vec();
    big.resize(300 << 10, b'x');
    let r = curl(ns, "/ng", &["-X", "POST", "-H", NG_TYPE], Some(&big));
    assert_eq!(r.status, 413);
    let r = curl(ns, "/nowhere", &[], None);
    assert_eq!(r.status, 404);
    // /metrics and /ping still served by the same socket.
    let r = curl(ns, "/ping", &[], None);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"pong\n"[..]));
    let r = curl(ns, "/metrics", &[], None);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("xrelay_sessions"));

    // WebSocket: no subprotocol, or another one, is refused with 400.
    for offered in [None, Some("bogus.example.com")] {
        match ws_connect(ns, offered) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "{offered:?}");
                let body = response.body().clone().unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(&body).contains(SUBPROTOCOL),
                    "{offered:?}"
                );
            }
            Err(e) => panic!("{offered:?}: {e}"),
            Ok(_) => panic!("{offered:?}: upgrade accepted"),
        }
    }
    // Garbage gets an error, without cookie nothing; the connection goes on.
    let mut ws = ws_connect(ns, Some(SUBPROTOCOL)).unwrap();
    ws.send(Message::Binary(b"w1 zzz".to_vec().into())).unwrap();
    assert_eq!(
        error_reason(&reply_body("w1", &ws_reply(&mut ws))),
        "Invalid NG data format"
    );
    ws.send(Message::Binary(b"no-cookie".to_vec().into()))
        .unwrap();
    assert_eq!(result(&ws_ng(&mut ws, "w2", &ping).1), "pong");
    // A message over 256 KiB closes the connection with 1009.
    let mut big = b"w3 d3:sdp999999:".to_vec();
    big.resize(300 << 10, b'x');
    ws.send(Message::Binary(big.into())).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Ok(Message::Close(None)) => panic!("closed without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }

    // Everything else still served.
    assert_eq!(result(&tcp_keep.request("k1", &ping).1), "pong");
    assert_eq!(result(&ws_ng(&mut ws_keep, "k2", &ping).1), "pong");
    assert_eq!(result(&bed.ng.ok(&ping).unwrap()), "pong");
    // And relayd, with connections still open, stops cleanly.
    stop_relayd(ns, relayd);
}
