//! A small NG client for tests: bencode requests over UDP with a cookie,
//! replies checked to carry the same cookie.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use relay_ng::{bencode, Value};

use crate::netns::Netns;

/// An NG client bound in a namespace.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    /// The receive buffer (64 KiB, the largest datagram), kept between
    /// requests: allocating a fresh one per request made glibc's malloc,
    /// and its consolidation of the freed chunk, most of the NG
    /// benchmark client's CPU time, which sits between every reply and
    /// the next request.
    buf: Mutex<Vec<u8>>,
}

impl NgClient {
    /// A client in `ns` talking to `server`.
    pub fn new(ns: &Netns, server: SocketAddr) -> Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()?;
        let sock = ns.run(move || UdpSocket::bind(bind))??;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(NgClient {
            sock,
            server,
            buf: Mutex::new(vec![0u8; 65536]),
        })
    }

    /// How long to wait for a reply (5 s unless changed).
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        Ok(self.sock.set_read_timeout(Some(timeout))?)
    }

    /// Sends raw bytes and returns the raw reply.
    pub fn raw(&self, datagram: &[u8]) -> Result<Vec<u8>> {
        self.sock.send_to(datagram, self.server)?;
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let (n, from) = self
            .sock
            .recv_from(&mut buf)
            .context("waiting for the NG reply")?;
        if from != self.server {
            bail!("reply from {from}, not {}", self.server);
        }
        Ok(buf[..n].to_vec())
    }

    /// Sends `body` with `cookie` and decodes the reply dictionary.
    pub fn request_with_cookie(&self, cookie: &str, body: &Value) -> Result<Value> {
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(bencode::encode(body));
        let reply = self.raw(&msg)?;
        let rest = reply
            .strip_prefix(cookie.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
            .context("reply does not start with the request's cookie")?;
        Ok(bencode::decode(rest)?)
    }

    /// Sends `body` with a fresh cookie, unique in this process: the server
    /// caches replies by cookie, so two clients must never share one.
    pub fn request(&self, body: &Value) -> Result<Value> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let cookie = format!(
            "{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.request_with_cookie(&cookie, body)
    }

    /// Like [`NgClient::request`], failing unless `result` is `ok` (or `pong`).
    pub fn ok(&self, body: &Value) -> Result<Value> {
        let reply = self.request(body)?;
        match reply.get("result").and_then(Value::as_str) {
            Some("ok" | "pong") => Ok(reply),
            _ => bail!("NG error: {reply:?}"),
        }
    }
}

/// A minimal audio SDP for a party at `addr:port` (IPv4 or IPv6).
pub fn audio_sdp(addr: &str, port: u16) -> String {
    let family = if addr.contains(':') { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=- 1545997027 1 IN {family} {addr}\r\ns=xrelay test\r\nc=IN {family} {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// The `c=` address and the first `m=` port of an SDP.
pub fn sdp_endpoint(sdp: &[u8]) -> Option<(String, u16)> {
    let text = std::str::from_utf8(sdp).ok()?;
    let mut addr = None;
    let mut port = None;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("c=IN IP4 ")
            .or_else(|| line.strip_prefix("c=IN IP6 "))
        {
            addr.get_or_insert_with(|| rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("m=") {
            port = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        }
    }
    Some((addr?, port?))
}
