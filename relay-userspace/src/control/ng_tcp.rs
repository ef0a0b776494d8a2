//! NG over TCP (`--listen-tcp-ng`), framed as rtpengine frames it: the
//! stream is a sequence of `cookie SP bencode-dictionary` messages with
//! nothing between them, each ending where its dictionary ends; replies
//! are `cookie SP reply` written back in the order the requests came.
//! xrelay also takes a JSON object where the dictionary would be (its end
//! found the same way); rtpengine waits for bencode there.
//!
//! A connection may stay open as long as its proxy likes, but not idle for
//! longer than [`IDLE`], and a message it has begun must be complete within
//! [`PARTIAL`]. A message that cannot be framed (not bencode, not JSON, or
//! larger than [`MAX_MESSAGE`]) gets an error reply (with its cookie) and
//! the connection is closed, since the next message's start is unknown;
//! other connections and transports are not disturbed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use relay_ng::{
    bencode::{scan_prefix, Scan},
    encode_reply_as, reply,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{
    service::{finish, NgService, MAX_MESSAGE},
    tcp::Limits,
};

/// Connections from proxies served at once.
pub const LIMITS: Limits = Limits {
    connections: 256,
    deadline: None,
};
/// A connection with nothing pending is closed after this long quiet.
pub const IDLE: Duration = Duration::from_secs(600);
/// A message begun must be complete within this long.
pub const PARTIAL: Duration = Duration::from_secs(10);
/// How long a refused connection is drained before it is closed.
const LINGER: Duration = Duration::from_secs(2);
/// A client that takes no reply for this long is dropped.
const WRITE: Duration = Duration::from_secs(30);

/// Serves NG over TCP on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, service: Arc<NgService>) {
    super::tcp::serve(listener, "NG over TCP", LIMITS, |stream, peer| {
        connection(stream, peer, service.clone())
    })
    .await;
}

/// Where the first message of a buffer ends.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// The first message is the buffer's first `n` bytes.
    Complete(usize),
    /// More bytes may complete it; it takes at least this many bytes of
    /// the buffer (so a large message arriving in many reads is not
    /// scanned again before its declared strings are all there).
    Incomplete(usize),
    /// It can never be framed; answer and close.
    Invalid,
}

/// Finds the end of the first `cookie SP payload` message of `buf`.
fn frame(buf: &[u8]) -> Frame {
    let more = Frame::Incomplete(buf.len() + 1);
    let Some(space) = buf.iter().position(|&b| b == b' ') else {
        return more;
    };
    let payload = &buf[space + 1..];
    let used = match payload.first() {
        None => return more,
        Some(b'{') => {
            let mut values =
                serde_json::Deserializer::from_slice(payload).into_iter::<serde::de::IgnoredAny>();
            match values.next() {
                Some(Ok(_)) => values.byte_offset(),
                Some(Err(e)) if e.is_eof() => return more,
                _ => return Frame::Invalid,
            }
        }
        // A scan, not a decode: this runs after every read of a message
        // still arriving.
        Some(_) => match scan_prefix(payload) {
            Ok(used) => used,
            Err(Scan::Incomplete { at_least }) => return Frame::Incomplete(space + 1 + at_least),
            Err(Scan::Invalid { .. }) => return Frame::Invalid,
        },
    };
    Frame::Complete(space + 1 + used)
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, service: Arc<NgService>) {
    if !service.allows(peer.ip()) {
        service.stats().shed("not_allowed");
        tracing::debug!(%peer, "NG over TCP from outside --ng-allow refused");
        return;
    }
    tracing::info!(%peer, "NG over TCP connection");
    let _open = service.stats().connection(crate::stats::NgTransport::Tcp);
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 << 10];
    // The buffer cannot hold a whole message before it has this many bytes.
    let mut need = 0;
    loop {
        // Every complete message waiting, in order.
        while buf.len() >= need {
            need = 0;
            match frame(&buf) {
                Frame::Complete(n) => {
                    let message: Vec<u8> = buf.drain(..n).collect();
                    if !answer(&mut stream, peer, &service, message).await {
                        return;
                    }
                }
                // Refused as soon as it is known to be too large (a
                // string's declared length may say so before it arrives).
                Frame::Incomplete(at_least) if at_least > MAX_MESSAGE => {
                    tracing::info!(%peer, "NG over TCP message too large; closing");
                    refuse(&mut stream, &buf, "Message too large").await;
                    linger(&mut stream).await;
                    return;
                }
                Frame::Incomplete(at_least) => {
                    need = at_least;
                    break;
                }
                Frame::Invalid => {
                    // The handler names what is wrong (and drops it when it
                    // has no cookie to answer to).
                    tracing::info!(%peer, "NG over TCP data cannot be framed; closing");
                    let message = std::mem::take(&mut buf);
                    answer(&mut stream, peer, &service, message).await;
                    linger(&mut stream).await;
                    return;
                }
            }
        }
        let wait = if buf.is_empty() { IDLE } else { PARTIAL };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                tracing::info!(%peer, "NG over TCP connection closed by the peer");
                return;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "NG over TCP connection failed");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, idle = buf.is_empty(), "NG over TCP connection timed out");
                return;
            }
        }
    }
}

/// Handles one message and writes its reply; false when the connection
/// is gone.
async fn answer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    service: &Arc<NgService>,
    message: Vec<u8>,
) -> bool {
    let Some(answer) = service.request(message).await else {
        tracing::debug!(%peer, "NG over TCP message without cookie dropped");
        return true;
    };
    let sent = tokio::time::timeout(WRITE, stream.write_all(&answer.reply)).await;
    finish(answer);
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "NG over TCP reply not sent");
            false
        }
        Err(_) => {
            tracing::info!(%peer, "NG over TCP peer takes no replies; closing");
            false
        }
    }
}

/// Closes our side and reads what the client still sends for a moment, so
/// that it gets the error reply before the connection goes (closing with
/// unread data would reset the connection and could lose the reply).
pub(super) async fn linger<S>(stream: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 << 10];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Answers the message `buf` begins with an error, if it has a cookie.
async fn refuse(stream: &mut TcpStream, buf: &[u8], reason: &str) {
    if let Some((cookie, payload)) = relay_ng::frame::split_cookie(buf) {
        let format = relay_ng::Format::of_payload(payload);
        let reply = encode_reply_as(cookie, &reply::error(reason), format);
        let _ = tokio::time::timeout(WRITE, stream.write_all(&reply)).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// relayd's NG over TCP on a loopback port, its address.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, super::super::service::test_service()));
        addr
    }

    async fn ping(c: &mut TcpStream, cookie: &str) {
        c.write_all(format!("{cookie} d7:command4:pinge").as_bytes())
            .await
            .unwrap();
        let want = format!("{cookie} d6:result4:ponge");
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want.as_bytes());
    }

    /// Reads until the server closes; how long that took.
    async fn closed_after(c: &mut TcpStream) -> Duration {
        let start = Instant::now();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxys_connection_lives_until_it_is_idle() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        ping(&mut c, "a").await;
        // Far beyond the 5 s relayctl's connections get.
        tokio::time::sleep(IDLE - Duration::from_secs(1)).await;
        ping(&mut c, "b").await;
        let quiet = closed_after(&mut c).await;
        assert!(quiet >= IDLE, "closed after {quiet:?}");
    }

    #[tokio::test]
    async fn a_large_message_in_small_pieces_is_answered_once_whole() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        let mut m = b"big d7:command4:ping3:sdp20000:".to_vec();
        m.resize(m.len() + 20_000, b'v');
        m.push(b'e');
        for piece in m.chunks(7) {
            c.write_all(piece).await.unwrap();
        }
        let want = b"big d6:result4:ponge";
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want);
        ping(&mut c, "after").await;
    }

    #[tokio::test]
    async fn a_message_declared_too_large_is_refused_at_once() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"huge d3:sdp999999999:v=0").await.unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&all),
            "huge d12:error-reason17:Message too large6:result5:errore"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_begun_must_be_finished_soon() {
        let addr = server().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"a d7:comm").await.unwrap();
        let waited = closed_after(&mut c).await;
        assert!(
            waited >= PARTIAL && waited < IDLE,
            "closed after {waited:?}"
        );
    }

    #[test]
    fn messages_end_where_their_payload_ends() {
        let two = b"a1 d7:command4:pingeb2 d7:command4:pinge";
        assert_eq!(frame(two), Frame::Complete(20));
        assert_eq!(frame(&two[20..]), Frame::Complete(20));
        assert_eq!(
            frame(b"j1 {\"command\":\"ping\"}k"),
            Frame::Complete(21),
            "JSON too"
        );
    }

    #[test]
    fn partial_messages_wait() {
        for partial in [
            &b""[..],
            b"cookie",
            b"c ",
            b"c d7:comm",
            b"c d7:command4:ping",
            b"c {\"command\":",
        ] {
            assert!(
                matches!(frame(partial), Frame::Incomplete(n) if n > partial.len()),
                "{partial:?}"
            );
        }
    }

    #[test]
    fn garbage_cannot_be_framed() {
        for bad in [&b"c zzz"[..], b"c d7:commandxe", b"c {]"] {
            assert_eq!(frame(bad), Frame::Invalid, "{bad:?}");
        }
        // Any bencode value frames; the handler says it is no dictionary.
        assert_eq!(frame(b"c i5e"), Frame::Complete(5));
    }
}
