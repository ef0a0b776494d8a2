//! Failover of an active/standby pair (docs/ha.md; issue 17, acceptance 1
//! and 4): two relayds in two namespaces on one bridge with the media
//! endpoints and Redis, the floating address on the active. Calls with RTP
//! both ways through XDP on the active; the active is killed (`kill -9`,
//! its link down: the host is gone) and the floating address moved to the
//! standby (`ip addr add` and gratuitous ARP): every call's media resumes
//! at both receivers within 2 s of the move, and a re-offer and a delete
//! of every call succeed on the new active. The old active, started again,
//! stays standby: no forwarding entry in its XDP table, Redis untouched.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    bridge::{host_mac, Lan, PREFIX, SWITCH_ADDR},
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, sdp_endpoint, NgClient},
    ready::spawn_ready,
    redis_server::RedisServer,
    require_root, PinDirGuard,
};

mod common;

use common::{relayctl_json, stop_relayd, RELAYCTL, RELAYD};

const HOST_A: &str = "10.30.0.2";
const HOST_B: &str = "10.30.0.3";
const RELAY_1: &str = "10.30.0.11";
const RELAY_2: &str = "10.30.0.12";
const FLOATING: &str = "10.30.0.100";
const CALLS: usize = 50;
/// Packets a second each way per call (a phone's RTP).
const PPS: u64 = 50;

/// Programs run in `ns` (nsenter execs them: their PID is theirs).
fn launcher(ns: &Netns) -> relay_tests::redis_server::Launcher {
    relay_tests::redis_server::in_netns(ns.name())
}

/// Whether `program` is installed; installs Debian's `package` when root.
fn have(test: &str, program: &str, package: &str) -> bool {
    let found = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    if !found() {
        eprintln!("SKIPPED {test}: {program} not found (cargo xtask test installs {package})");
        return false;
    }
    true
}

/// A relayd of the pair in `ns`: the floating address is its one
/// interface and its NG address, as on an EC2 instance with one ENI.
fn relayd(ns: &Netns, pins: &PinDirGuard, redis: &str) -> ChildGuard {
    let mut cmd = ns.command(RELAYD).unwrap();
    cmd.args(["-i", &format!("pub/{FLOATING}")])
        .args(["--floating-address", FLOATING])
        .args(["--listen-ng", &format!("{FLOATING}:2223")])
        .args(["--listen-http", "127.0.0.1:9902"])
        .args(["--port-min", "30000", "--port-max", "30999"])
        .args(["--redis", redis, "--pin-dir"])
        .arg(&pins.0)
        .stdout(Stdio::null());
    spawn_ready(&mut cmd).unwrap()
}

/// `relayctl --json totals` in `ns`.
fn totals(ns: &Netns) -> serde_json::Value {
    common::relayctl_in(ns, &["--json", "totals"])
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn call_id(i: usize) -> String {
    format!("tko-{i}")
}

fn a_port(i: usize) -> u16 {
    20000 + 2 * i as u16
}

fn b_port(i: usize) -> u16 {
    40000 + 2 * i as u16
}

fn offer(i: usize) -> Value {
    Value::dict([
        ("command", s("offer")),
        ("call-id", s(&call_id(i))),
        ("from-tag", s("tag-A")),
        ("sdp", s(&audio_sdp(HOST_A, a_port(i)))),
        ("received-from", Value::str_list(["IP4", HOST_A])),
    ])
}

fn answer(i: usize) -> Value {
    Value::dict([
        ("command", s("answer")),
        ("call-id", s(&call_id(i))),
        ("from-tag", s("tag-A")),
        ("to-tag", s("tag-B")),
        ("sdp", s(&audio_sdp(HOST_B, b_port(i)))),
        ("received-from", Value::str_list(["IP4", HOST_B])),
    ])
}

fn query(i: usize) -> Value {
    Value::dict([
        ("command", s("query")),
        ("call-id", s(&call_id(i))),
        ("from-tag", s("tag-A")),
    ])
}

fn delete(i: usize) -> Value {
    Value::dict([
        ("command", s("delete")),
        ("call-id", s(&call_id(i))),
        ("from-tag", s("tag-A")),
        ("delete-delay", Value::Int(0)),
    ])
}

fn relay_endpoint(reply: &Value) -> SocketAddr {
    let (addr, port) = sdp_endpoint(reply.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    format!("{addr}:{port}").parse().unwrap()
}

/// Whether every RTP stream of `q` is in the kernel.
fn kernelized(q: &Value) -> bool {
    let tags = q.get("tags").and_then(Value::as_dict).unwrap();
    tags.values().all(|t| {
        t.get("medias")
            .and_then(Value::as_list)
            .unwrap()
            .iter()
            .all(|m| {
                let st = &m.get("streams").and_then(Value::as_list).unwrap()[0];
                st.get("flags")
                    .and_then(Value::as_list)
                    .unwrap()
                    .iter()
                    .any(|f| f.as_str() == Some("kernelized"))
            })
    })
}

/// One side's media: a socket per call, a sender for all of them, a
/// receiver noting when each call's packets arrive.
struct Side {
    sockets: Vec<UdpSocket>,
    /// Where each call's packets go (the relay port of the other side).
    to: Vec<SocketAddr>,
}

/// Media of every call both ways until stopped.
struct Media {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Arrival times per call: at A (from B), at B (from A).
    arrivals: [Arc<Mutex<Vec<Vec<Instant>>>>; 2],
}

impl Media {
    fn start(a: Side, b: Side) -> Media {
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = [
            Arc::new(Mutex::new(vec![Vec::new(); CALLS])),
            Arc::new(Mutex::new(vec![Vec::new(); CALLS])),
        ];
        let mut threads = Vec::new();
        for (side, got) in [a, b].into_iter().zip(arrivals.iter().cloned()) {
            let rx: Vec<UdpSocket> = side
                .sockets
                .iter()
                .map(|s| s.try_clone().unwrap())
                .collect();
            let stop_tx = stop.clone();
            threads.push(std::thread::spawn(move || {
                let start = Instant::now();
                let gap = Duration::from_micros(1_000_000 / PPS);
                let mut n = 0u32;
                while !stop_tx.load(Ordering::Relaxed) {
                    for (sock, to) in side.sockets.iter().zip(&side.to) {
                        // Lost while no relay serves the address: fine.
                        let _ = sock.send_to(&n.to_be_bytes(), to);
                    }
                    n += 1;
                    let next = start + gap * n;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            }));
            let stop_rx = stop.clone();
            threads.push(std::thread::spawn(move || receive(&rx, &got, &stop_rx)));
        }
        Media {
            stop,
            threads,
            arrivals,
        }
    }

    /// For each receiver (A, B), the first arrival after `t` of each call.
    fn first_after(&self, t: Instant) -> [Vec<Option<Instant>>; 2] {
        self.arrivals.clone().map(|got| {
            got.lock()
                .unwrap()
                .iter()
                .map(|times| times.iter().copied().find(|&at| at > t))
                .collect()
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Receives on all of `sockets` (non-blocking, polled), noting arrivals.
fn receive(sockets: &[UdpSocket], got: &Mutex<Vec<Vec<Instant>>>, stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }
        })
        .collect();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: a valid array of pollfds, alive for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        let now = Instant::now();
        for (i, (fd, sock)) in fds.iter_mut().zip(sockets).enumerate() {
            if fd.revents & libc::POLLIN != 0 {
                while sock.recv_from(&mut buf).is_ok() {
                    got.lock().unwrap()[i].push(now);
                }
            }
            fd.revents = 0;
        }
    }
}

/// Kernel entries of the relayd pinned at `pins` that forward.
fn forwarding_entries(pins: &PinDirGuard) -> usize {
    relayctl_json(&pins.0, "streams")
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["to_userspace"] == false)
        .count()
}

/// The call keys in Redis database 1.
fn keys_in_redis(redis: &RedisServer) -> usize {
    redis
        .cli(&["-n", "1", "--scan", "--pattern", "xrelay:call:*"])
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn the_standby_takes_over_every_call_when_the_floating_address_moves() {
    require_root!();
    let test = "the_standby_takes_over_every_call_when_the_floating_address_moves";
    if !have(test, "arping", "iputils-arping") {
        return;
    }
    let began = Instant::now();
    let mut lan = Lan::new("tko").unwrap();
    let a = lan.host("a", HOST_A).unwrap();
    let b = lan.host("b", HOST_B).unwrap();
    let r1 = lan.host("r1", RELAY_1).unwrap();
    let r2 = lan.host("r2", RELAY_2).unwrap();
    // The relays know the endpoints' MACs (XDP's first lookups do not wait
    // for ARP); the endpoints learn the floating address's by ARP, so the
    // move is seen through gratuitous ARP as on a real segment.
    for r in [&r1, &r2] {
        r.static_neighbour(HOST_A, &host_mac(1), "eth0").unwrap();
        r.static_neighbour(HOST_B, &host_mac(2), "eth0").unwrap();
    }
    let floating = format!("{FLOATING}/{PREFIX}");
    r1.ip(&["addr", "add", &floating, "dev", "eth0"]).unwrap();
    let Some(redis) = RedisServer::start_on(test, None, launcher(&lan.switch), SWITCH_ADDR) else {
        return;
    };
    let url = redis.url(1);
    let (pins1, pins2) = (PinDirGuard::new("tko-r1"), PinDirGuard::new("tko-r2"));
    let active = relayd(&r1, &pins1, &url);
    let standby = relayd(&r2, &pins2, &url);
    assert_eq!(totals(&r1)["replication"]["role"], "active");
    assert_eq!(totals(&r2)["replication"]["role"], "standby");

    // The proxy's NG client talks to the floating address and, as
    // Kamailio does, takes replies from that address only.
    let ng = NgClient::new(&a, format!("{FLOATING}:2223").parse().unwrap()).unwrap();
    let mut to_relay_a = Vec::new();
    let mut to_relay_b = Vec::new();
    let set_up = Instant::now();
    for i in 0..CALLS {
        to_relay_b.push(relay_endpoint(&ng.ok(&offer(i)).unwrap()));
        to_relay_a.push(relay_endpoint(&ng.ok(&answer(i)).unwrap()));
    }
    let bind = |ns: &Netns, addr: String| {
        let addr: SocketAddr = addr.parse().unwrap();
        ns.run(move || UdpSocket::bind(addr)).unwrap().unwrap()
    };
    let side_a = Side {
        sockets: (0..CALLS)
            .map(|i| bind(&a, format!("{HOST_A}:{}", a_port(i))))
            .collect(),
        to: to_relay_a.clone(),
    };
    let side_b = Side {
        sockets: (0..CALLS)
            .map(|i| bind(&b, format!("{HOST_B}:{}", b_port(i))))
            .collect(),
        to: to_relay_b.clone(),
    };
    let media = Media::start(side_a, side_b);
    eventually(
        "every call's RTP in XDP on the active",
        Duration::from_secs(20),
        || (0..CALLS).all(|i| kernelized(&ng.ok(&query(i)).unwrap())),
    );
    eprintln!("{CALLS} calls set up and in XDP in {:?}", set_up.elapsed());
    assert!(forwarding_entries(&pins1) >= 2 * CALLS);
    // The standby has them, confirmations included.
    eventually(
        "the standby mirrors every call",
        Duration::from_secs(10),
        || {
            let t = totals(&r2);
            let a = totals(&r1);
            t["replication"]["redis"]["calls"] == CALLS
                && a["replication"]["redis"]["pending"] == 0
                && t["replication"]["redis"]["lag_ms"]
                    .as_u64()
                    .is_some_and(|lag| lag < 1500)
        },
    );
    std::thread::sleep(Duration::from_millis(300));

    // The active's host fails: relayd killed, its link gone.
    let mut active = active;
    active.0.kill().unwrap();
    active.0.wait().unwrap();
    r1.ip(&["link", "set", "eth0", "down"]).unwrap();
    r1.ip(&["addr", "del", &floating, "dev", "eth0"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // The address moves (keepalived's job on a LAN; the EC2 API's on EC2).
    let moved = Instant::now();
    r2.ip(&["addr", "add", &floating, "dev", "eth0"]).unwrap();
    let garp = r2
        .command("arping")
        .unwrap()
        .args(["-q", "-U", "-c", "3", "-I", "eth0", FLOATING])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let garp = ChildGuard(garp);
    let within = Duration::from_secs(2);
    let deadline = moved + within + Duration::from_secs(3);
    let resumed = loop {
        let firsts = media.first_after(moved);
        if firsts.iter().flatten().all(Option::is_some) || Instant::now() > deadline {
            break firsts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (receiver, firsts) in ["A", "B"].iter().zip(&resumed) {
        let worst = firsts
            .iter()
            .map(|f| f.map(|at| at.duration_since(moved)))
            .max()
            .flatten();
        eprintln!("media at {receiver}: last call resumed {worst:?} after the move");
        for (i, first) in firsts.iter().enumerate() {
            let after = first.map(|at| at.duration_since(moved));
            assert!(
                after.is_some_and(|d| d <= within),
                "call {i}: media at {receiver} resumed {after:?} after the move"
            );
        }
    }
    let t = totals(&r2);
    assert_eq!(t["replication"]["role"], "active", "{t}");
    assert_eq!(t["sessions"], CALLS, "{t}");
    assert!(forwarding_entries(&pins2) >= 2 * CALLS, "streams in XDP");
    let metrics = r2
        .run(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9902").unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        })
        .unwrap();
    assert!(
        metrics.contains("xrelay_role{role=\"active\"} 1"),
        "{metrics}"
    );

    // The old active comes back: the address is not its own any more, so
    // it stays standby and removes what its predecessor left in XDP.
    r1.ip(&["link", "set", "eth0", "up"]).unwrap();
    let old = relayd(&r1, &pins1, &url);
    let t = totals(&r1);
    assert_eq!(t["replication"]["role"], "standby", "{t}");
    assert_eq!(t["sessions"], 0, "{t}");
    assert_eq!(
        forwarding_entries(&pins1),
        0,
        "the old active forwards nothing"
    );
    let counted = |pins: &PinDirGuard| {
        let c = relayctl_json(&pins.0, "counters");
        ["forwarded_tx", "forwarded_redirect"]
            .iter()
            .map(|k| c[k]["packets"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (old_before, new_before) = (counted(&pins1), counted(&pins2));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        counted(&pins1),
        old_before,
        "the old active's XDP forwards nothing"
    );
    assert!(
        counted(&pins2) > new_before,
        "the new active's XDP forwards"
    );
    eventually(
        "the old active mirrors the calls",
        Duration::from_secs(10),
        || totals(&r1)["replication"]["redis"]["calls"] == CALLS,
    );
    assert_eq!(keys_in_redis(&redis), CALLS, "its start left Redis alone");

    // Signalling goes on at the new active: a re-offer keeps each call's
    // ports, a delete ends it.
    for (i, before) in to_relay_b.iter().enumerate() {
        let again = relay_endpoint(&ng.ok(&offer(i)).unwrap());
        assert_eq!(again, *before, "call {i}: re-offer keeps the port");
    }
    for i in 0..CALLS {
        ng.ok(&delete(i)).unwrap();
    }
    media.stop();
    eventually(
        "Redis and the old active follow the deletes",
        Duration::from_secs(10),
        || keys_in_redis(&redis) == 0 && totals(&r1)["replication"]["redis"]["calls"] == 0,
    );
    assert_eq!(totals(&r2)["sessions"], 0);
    drop(garp);
    stop_relayd(&r2, standby);
    stop_relayd(&r1, old);
    eprintln!("takeover test took {:?}", began.elapsed());
}

/// Without a floating address, `relayctl takeover` makes a standby the
/// active (and is refused on an active).
#[test]
fn relayctl_takeover_makes_a_standby_the_active() {
    require_root!();
    let test = "relayctl_takeover_makes_a_standby_the_active";
    let mut lan = Lan::new("tkc").unwrap();
    let r = lan.host("r", RELAY_1).unwrap();
    let Some(redis) = RedisServer::start_on(test, None, launcher(&lan.switch), SWITCH_ADDR) else {
        return;
    };
    let pins = PinDirGuard::new("tkc");
    let mut cmd = r.command(RELAYD).unwrap();
    cmd.args([
        "-i",
        &format!("pub/{RELAY_1}"),
        "--listen-ng",
        &format!("{RELAY_1}:2223"),
    ])
    .args([
        "--datapath",
        "userspace",
        "--standby",
        "--redis",
        &redis.url(2),
    ])
    .arg("--pin-dir")
    .arg(&pins.0)
    .stdout(Stdio::null());
    let relayd = spawn_ready(&mut cmd).unwrap();
    let ng = NgClient::new(&lan.switch, format!("{RELAY_1}:2223").parse().unwrap()).unwrap();
    let refused = ng.request(&offer(0)).unwrap();
    assert_eq!(refused.get("result").and_then(Value::as_str), Some("error"));
    let run = |args: &[&str]| r.command(RELAYCTL).unwrap().args(args).output().unwrap();
    let out = run(&["takeover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("active now"), "{text}");
    assert_eq!(totals(&r)["replication"]["role"], "active");
    ng.ok(&offer(0)).unwrap();
    ng.ok(&answer(0)).unwrap();
    eventually(
        "the new active writes to Redis",
        Duration::from_secs(10),
        || {
            redis
                .cli(&["-n", "2", "--scan", "--pattern", "xrelay:call:*"])
                .is_some_and(|keys| keys.lines().count() == 1)
        },
    );
    let again = run(&["takeover"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already the active"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    stop_relayd(&r, relayd);
}

/// An active whose floating address goes steps down: it serves no call
/// any more, and leaves the calls' keys in Redis to the new active.
#[test]
fn an_active_whose_floating_address_goes_steps_down() {
    require_root!();
    let test = "an_active_whose_floating_address_goes_steps_down";
    let mut lan = Lan::new("tkd").unwrap();
    let r = lan.host("r", RELAY_1).unwrap();
    let floating = format!("{FLOATING}/{PREFIX}");
    r.ip(&["addr", "add", &floating, "dev", "eth0"]).unwrap();
    let Some(redis) = RedisServer::start_on(test, None, launcher(&lan.switch), SWITCH_ADDR) else {
        return;
    };
    let pins = PinDirGuard::new("tkd");
    let relayd = relayd(&r, &pins, &redis.url(1));
    let ng = NgClient::new(&lan.switch, format!("{FLOATING}:2223").parse().unwrap()).unwrap();
    ng.ok(&offer(0)).unwrap();
    ng.ok(&answer(0)).unwrap();
    eventually("the call in Redis", Duration::from_secs(10), || {
        keys_in_redis(&redis) == 1
    });
    r.ip(&["addr", "del", &floating, "dev", "eth0"]).unwrap();
    eventually("it steps down", Duration::from_secs(10), || {
        let t = totals(&r);
        t["replication"]["role"] == "standby" && t["sessions"] == 0
    });
    // The key stays for the new active.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        keys_in_redis(&redis),
        1,
        "the call's key is the new active's"
    );
    eventually("it mirrors the call", Duration::from_secs(10), || {
        totals(&r)["replication"]["redis"]["calls"] == 1
    });
    stop_relayd(&r, relayd);
    assert_eq!(
        keys_in_redis(&redis),
        1,
        "a standby's stop leaves Redis alone"
    );
}
