//! NG under load, as a SIP proxy sees it: a client that waits a bounded
//! time for each reply and matches replies to its own cookies, and a flood
//! of pings from another address. Shared by the flood test and the flood
//! benchmark.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;
use relay_ng::{bencode, Value};

use crate::netns::Netns;

/// A proxy's NG client: sends from its own address, waits `timeout` for
/// each reply (resending the same datagram up to `retries` times, as
/// Kamailio's rtpengine module does), and skips late replies to earlier
/// requests.
#[derive(Debug)]
pub struct Proxy {
    sock: UdpSocket,
    timeout: Duration,
    retries: u32,
    buf: Vec<u8>,
}

impl Proxy {
    /// A client in `ns` bound to `source` (e.g. `127.0.0.3:0`), talking to
    /// `server`.
    pub fn new(
        ns: &Netns,
        source: SocketAddr,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<Proxy> {
        let sock = ns.run(move || UdpSocket::bind(source))??;
        sock.connect(server)?;
        Ok(Proxy {
            sock,
            timeout,
            retries: 0,
            buf: vec![0u8; 65536],
        })
    }

    /// Resends an unanswered request `retries` times, `timeout` apart
    /// (Kamailio: `rtpengine_retr`); the relay answers a resent cookie from
    /// its cache.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// One request: its reply and how long it took, or None after the
    /// timeout.
    pub fn request(&mut self, body: &Value) -> Option<(Value, Duration)> {
        // Unique in the process: the relay answers a known cookie from its
        // cache, whichever client sends it.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let cookie = format!("proxy{}_{n}", std::process::id());
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(bencode::encode(body));
        let start = Instant::now();
        let prefix = format!("{cookie} ");
        for _ in 0..=self.retries {
            let sent = Instant::now();
            self.sock.send(&msg).ok()?;
            while let Some(left) = self.timeout.checked_sub(sent.elapsed()) {
                self.sock
                    .set_read_timeout(Some(left.max(Duration::from_micros(1))))
                    .ok()?;
                let Ok(n) = self.sock.recv(&mut self.buf) else {
                    break;
                };
                if let Some(rest) = self.buf[..n].strip_prefix(prefix.as_bytes()) {
                    return bencode::decode(rest).ok().map(|v| (v, start.elapsed()));
                }
            }
        }
        None
    }

    /// Whether `body` was answered `ok` (or `pong`) in time, and how long
    /// it took.
    pub fn ok(&mut self, body: &Value) -> Option<Duration> {
        let (reply, took) = self.request(body)?;
        let result = reply.get("result").and_then(Value::as_str)?;
        matches!(result, "ok" | "pong").then_some(took)
    }
}

/// An NG `ping`.
pub fn ping() -> Value {
    Value::dict([("command", Value::str("ping"))])
}

/// Sends pings with fresh cookies (work for the relay, not cache hits) from
/// `source` in `ns` to `server` at `pps`, evenly, until `stop` or `length`;
/// returns how many it sent. Never reads the replies.
pub fn flood(
    ns: &Netns,
    source: SocketAddr,
    server: SocketAddr,
    pps: u64,
    length: Duration,
    stop: &AtomicBool,
) -> Result<u64> {
    let sock = ns.run(move || UdpSocket::bind(source))??;
    sock.set_nonblocking(true)?;
    let body = bencode::encode(&ping());
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < length {
        let owed = (start.elapsed().as_secs_f64() * pps as f64) as u64;
        while sent < owed {
            let mut msg = format!("flood{sent} ").into_bytes();
            msg.extend_from_slice(&body);
            // A full send buffer is the flood's problem, not the caller's.
            let _ = sock.send_to(&msg, server);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(sent)
}
