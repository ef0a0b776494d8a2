//! NG under a flood (issue 25, part 3): one address sends pings as fast as
//! a paced sender goes while another, the SIP proxy, runs offer / answer /
//! delete cycles and pings every 50 ms. relayd queues requests per sender
//! and serves existing calls first, so the proxy's requests wait one turn
//! behind the flood, not behind all of it.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use relay_ng::{bencode, Value};
use relay_tests::require_root;

mod common;

use common::{answer, command, offer, Bed, NG};

/// Flood rate and length (the abuse report's: 500 000 pings in 10 s).
const FLOOD_PPS: u64 = 50_000;
const FLOOD_FOR: Duration = Duration::from_secs(5);
/// How long the proxy waits for a reply before it counts a request lost
/// (Kamailio's rtpengine module waits 1 s, then retries).
const PROXY_TIMEOUT: Duration = Duration::from_millis(500);

/// A client that matches replies to its own cookies (a late reply to an
/// earlier request is skipped, not mistaken for the current one).
struct Proxy {
    sock: UdpSocket,
    next: u32,
}

impl Proxy {
    fn new(bed: &Bed, source: &str) -> Proxy {
        let source: SocketAddr = source.parse().unwrap();
        let sock = bed
            .t
            .r
            .run(move || UdpSocket::bind(source))
            .unwrap()
            .unwrap();
        sock.connect(NG).unwrap();
        Proxy { sock, next: 0 }
    }

    /// One request; its reply, or None after [`PROXY_TIMEOUT`].
    fn request(&mut self, body: &Value) -> Option<Value> {
        self.next += 1;
        let cookie = format!("proxy{}", self.next);
        let mut msg = format!("{cookie} ").into_bytes();
        msg.extend(bencode::encode(body));
        self.sock.send(&msg).unwrap();
        let deadline = Instant::now() + PROXY_TIMEOUT;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock.set_read_timeout(Some(left)).unwrap();
            let n = self.sock.recv(&mut buf).ok()?;
            if let Some(rest) = buf[..n].strip_prefix(format!("{cookie} ").as_bytes()) {
                return bencode::decode(rest).ok();
            }
        }
    }

    fn ok(&mut self, body: &Value) -> bool {
        self.request(body)
            .and_then(|r| r.get("result").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|r| r == "ok" || r == "pong")
    }
}

fn ping() -> Value {
    Value::dict([("command", Value::str("ping"))])
}

/// Sends pings from `source` at [`FLOOD_PPS`] until `stop` or
/// [`FLOOD_FOR`]; returns how many it sent.
fn flood(bed: &Bed, source: &str, stop: &AtomicBool) -> u64 {
    let source: SocketAddr = source.parse().unwrap();
    let sock = bed
        .t
        .r
        .run(move || UdpSocket::bind(source))
        .unwrap()
        .unwrap();
    sock.set_nonblocking(true).unwrap();
    let body = bencode::encode(&ping());
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD_FOR {
        let owed = (start.elapsed().as_secs_f64() * FLOOD_PPS as f64) as u64;
        while sent < owed {
            // Fresh cookies: each one is work for relayd, not a cache hit.
            let mut msg = format!("flood{sent} ").into_bytes();
            msg.extend_from_slice(&body);
            // A full send buffer is the flood's problem, not the test's.
            let _ = sock.send_to(&msg, NG);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    sent
}

#[test]
fn a_flooding_address_does_not_starve_the_proxy() {
    require_root!();
    let bed = Bed::new("ngf");
    // Deleted calls free their ports at once: the proxy runs hundreds.
    let relayd = bed.relayd(&["--datapath", "userspace", "--delete-delay", "0"]);
    let stop = AtomicBool::new(false);
    let (sent, cycles, pings) = std::thread::scope(|s| {
        let flooder = s.spawn(|| flood(&bed, "127.0.0.66:0", &stop));
        let pinger = s.spawn(|| {
            let mut p = Proxy::new(&bed, "127.0.0.2:0");
            let (mut ok, mut all) = (0, 0);
            let start = Instant::now();
            while start.elapsed() < FLOOD_FOR {
                all += 1;
                ok += u32::from(p.ok(&ping()));
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, all)
        });
        // Let the flood build up before the proxy's calls start.
        std::thread::sleep(Duration::from_millis(500));
        let mut proxy = Proxy::new(&bed, "127.0.0.3:0");
        let (mut ok, mut all) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < FLOOD_FOR - Duration::from_secs(1) {
            let id = format!("flood-call-{all}");
            all += 1;
            let done = proxy.ok(&offer(&id))
                && proxy.ok(&answer(&id))
                && proxy.ok(&command("delete", &id));
            ok += u32::from(done);
        }
        stop.store(true, Ordering::Relaxed);
        (flooder.join().unwrap(), (ok, all), pinger.join().unwrap())
    });
    let totals = bed.relayctl_cli(&["totals", "--json"]);
    let totals: serde_json::Value = serde_json::from_slice(&totals.stdout).unwrap();
    let answered_pings = totals["ng"]["ping"]["requests"].as_u64().unwrap_or(0);
    eprintln!(
        "flood: {sent} pings sent, {answered_pings} pings answered in all, shed {}; \
         proxy: {}/{} cycles, {}/{} pings answered within {PROXY_TIMEOUT:?}",
        totals["ng_shed"], cycles.0, cycles.1, pings.0, pings.1
    );
    assert!(sent > FLOOD_PPS, "the flood ran ({sent} pings)");
    assert!(cycles.1 >= 10, "the proxy ran {} cycles", cycles.1);
    assert_eq!(
        cycles.0, cycles.1,
        "every offer/answer/delete cycle of the proxy succeeded"
    );
    assert_eq!(pings.0, pings.1, "every ping of the proxy was answered");
    drop(relayd);
}
