//! Load signals against a real relayd (issue 20): `--max-bandwidth` with
//! media flowing through XDP refuses offers for new calls with rtpengine's
//! `load limit` reply while existing calls go on, and takes them again once
//! the media stops; `--max-load` and `--max-cpu` trip against the figures
//! relayd sampled; NG `statistics`, `/metrics` and `relayctl totals` show
//! the figures and the headroom.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    ng_client::sdp_endpoint,
    require_root,
    topology::{assert_delivered, bind_udp, exchange, HOST_A, HOST_B},
};

mod common;

use common::{answer, command, http_get, metric, offer, s, wait_kernelized, Bed};

fn statistics(bed: &Bed) -> Value {
    bed.ng
        .ok(&Value::dict([("command", s("statistics"))]))
        .unwrap()
}

fn load_stats(stats: &Value) -> &Value {
    stats.get("loadstatistics").expect("loadstatistics")
}

/// Asks for `statistics` until `done` holds (at most `secs` seconds: the
/// figures are sampled once a second over a 5 s window).
fn wait_statistics(bed: &Bed, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let stats = statistics(bed);
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "not within {secs} s: {:?}",
            load_stats(&stats)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("no integer {key} in {v:?}"))
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn number(v: &Value, key: &str) -> Option<f64> {
    text(v, key).map(|t| t.parse().unwrap())
}

/// An offer from a client without `supports: ["load limit"]`.
fn old_client_offer(call_id: &str) -> Value {
    let mut o = offer(call_id);
    if let Value::Dict(d) = &mut o {
        d.remove(b"supports".as_slice());
    }
    o
}

fn assert_refused(bed: &Bed, call_id: &str, message: &str) {
    let refused = bed.ng.request(&offer(call_id)).unwrap();
    assert_eq!(refused.get("result"), Some(&s("load limit")), "{refused:?}");
    assert_eq!(refused.get("message"), Some(&s(message)), "{refused:?}");
    // rtpengine answers older clients with this error whatever the limit.
    let refused = bed.ng.request(&old_client_offer(call_id)).unwrap();
    assert_eq!(refused.get("result"), Some(&s("error")), "{refused:?}");
    assert_eq!(
        refused.get("error-reason"),
        Some(&s("Parallel session limit reached"))
    );
}

/// Offer and answer; the relay's A-side and B-side media addresses.
fn set_up_call(bed: &Bed, call_id: &str) -> (SocketAddr, SocketAddr) {
    let o = bed.ng.ok(&offer(call_id)).unwrap();
    let (addr, port) = sdp_endpoint(o.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    let relay_b: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let a = bed.ng.ok(&answer(call_id)).unwrap();
    let (addr, port) = sdp_endpoint(a.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    (format!("{addr}:{port}").parse().unwrap(), relay_b)
}

/// Sends RTP-sized datagrams from `from` to `to` (about 500 a second) until
/// `stop` is set.
fn stream(from: UdpSocket, to: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let payload = [0x80u8; 172];
        while !stop.load(Ordering::Relaxed) {
            let _ = from.send_to(&payload, to);
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn bandwidth_limit_refuses_new_calls_while_existing_ones_go_on() {
    require_root!();
    let bed = Bed::new("ldb");
    // Load and CPU limits that cannot be reached: they must never refuse.
    let relayd = bed.relayd(&[
        "--max-bandwidth",
        "20000",
        "--max-load",
        "10000",
        "--max-cpu",
        "100.5",
        "--listen-http",
        "127.0.0.1:9100",
    ]);
    // Idle: every figure measured (two samples), nothing refused.
    let stats = wait_statistics(&bed, 10, |st| {
        let l = load_stats(st);
        l.get("cpuusage").is_some() && l.get("loadaverage").is_some()
    });
    let l = load_stats(&stats);
    assert_eq!(int(l, "byterate"), 0, "{l:?}");
    assert_eq!(int(l, "maxbandwidth"), 20000);
    assert_eq!(number(l, "maxload"), Some(10000.0));
    assert_eq!(number(l, "maxcpu"), Some(100.5));
    assert_eq!(l.get("refusing"), None, "{l:?}");
    assert!(number(l, "headroom").unwrap() > 0.0, "{l:?}");
    let cpu = number(l, "cpuusage").unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    let room = l.get("headroomto").unwrap();
    assert_eq!(int(room, "bandwidth"), 20000);
    // rtpengine 10.5 nests the dictionaries in `statistics`.
    assert!(stats
        .get("statistics")
        .and_then(|n| n.get("currentstatistics"))
        .and_then(|c| c.get("byterate"))
        .is_some());

    let (relay_a, relay_b) = set_up_call(&bed, "bw-1");
    let a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    let got = exchange(&a, &relay_a.to_string(), &b, 5).unwrap();
    assert_delivered(&got, 5, &relay_b.to_string());
    let got = exchange(&b, &relay_b.to_string(), &a, 5).unwrap();
    assert_delivered(&got, 5, &relay_a.to_string());
    wait_kernelized(&bed.ng, "bw-1");

    // About 100 kB/s through XDP, five times the limit.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = stream(a.try_clone().unwrap(), relay_a, stop.clone());
    let stats = wait_statistics(&bed, 10, |st| load_stats(st).get("refusing").is_some());
    let l = load_stats(&stats);
    assert_eq!(
        text(l, "refusing"),
        Some("Bandwidth limit exceeded"),
        "{l:?}"
    );
    assert!(int(l, "byterate") >= 20000, "{l:?}");
    assert_eq!(int(l.get("headroomto").unwrap(), "bandwidth"), 0);
    assert_eq!(text(l, "headroom"), Some("0.000"));
    let current = stats.get("currentstatistics").unwrap();
    assert!(
        int(current, "byterate_kernel") >= 20000,
        "XDP's bytes count: {current:?}"
    );
    assert_eq!(
        int(current, "byterate"),
        int(current, "byterate_kernel") + int(current, "byterate_user")
    );

    assert_refused(&bed, "bw-2", "Bandwidth limit exceeded");
    // The existing call goes on: re-offer, answer, query all answered.
    bed.ng.ok(&offer("bw-1")).unwrap();
    bed.ng.ok(&answer("bw-1")).unwrap();
    bed.ng.ok(&command("query", "bw-1")).unwrap();
    let stats = statistics(&bed);
    let offers = stats
        .get("controlstatistics")
        .and_then(|c| c.get("offer"))
        .unwrap();
    assert_eq!(int(offers, "load limit"), 1, "{offers:?}");

    let scrape = http_get(&bed.t.r, "127.0.0.1:9100", "/metrics");
    assert_eq!(metric(&scrape, "xrelay_refusing_new_calls"), 1.0);
    assert_eq!(
        metric(&scrape, "xrelay_load_headroom{signal=\"bandwidth\"}"),
        0.0
    );
    assert_eq!(
        metric(&scrape, "xrelay_load_limit{signal=\"bandwidth\"}"),
        20000.0
    );
    assert_eq!(metric(&scrape, "xrelay_headroom_ratio"), 0.0);
    assert!(
        metric(
            &scrape,
            "xrelay_forwarded_bytes_per_second{path=\"kernel\"}"
        ) >= 20000.0
    );
    assert!(metric(&scrape, "xrelay_load_average") >= 0.0);
    let totals = String::from_utf8_lossy(&bed.relayctl_cli(&["totals"]).stdout).into_owned();
    assert!(
        totals.contains("refusing new calls: Bandwidth limit exceeded")
            && totals.contains("limit 20000, headroom 0"),
        "{totals}"
    );

    // Media stops: once the window has passed, new calls are taken again.
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    wait_statistics(&bed, 15, |st| load_stats(st).get("refusing").is_none());
    bed.ng.ok(&offer("bw-2")).unwrap();
    for id in ["bw-1", "bw-2"] {
        let mut del = command("delete", id);
        if let Value::Dict(d) = &mut del {
            d.insert(b"delete-delay".to_vec(), Value::Int(0));
        }
        bed.ng.ok(&del).unwrap();
    }
    drop(b);
    common::stop_relayd(&bed.t.r, relayd);
}

#[test]
fn load_and_cpu_limits_trip_on_the_sampled_figures() {
    require_root!();
    let bed = Bed::new("ldc");
    // A busy thread for the whole test: the host's CPU use is then surely
    // above 0.01 %, and the load average not lower than it would be.
    let stop = Arc::new(AtomicBool::new(false));
    let spin = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
    };
    let relayd = bed.relayd(&[
        "--datapath",
        "userspace",
        "--max-load",
        "0.01",
        "--max-cpu",
        "0.01",
    ]);
    let stats = wait_statistics(&bed, 10, |st| load_stats(st).get("cpuusage").is_some());
    let l = load_stats(&stats);
    let load = number(l, "loadaverage").unwrap();
    let cpu = number(l, "cpuusage").unwrap();
    assert!(cpu >= 0.01, "a spinning thread: {l:?}");
    // rtpengine's order: the load average first, then CPU.
    let expected = if load >= 0.01 {
        "Load limit exceeded"
    } else {
        "CPU usage limit exceeded"
    };
    assert_eq!(text(l, "refusing"), Some(expected), "{l:?}");
    assert_refused(&bed, "lc-1", expected);
    let stats = statistics(&bed);
    let l = load_stats(&stats);
    assert_eq!(number(l.get("headroomto").unwrap(), "cpu"), Some(0.0));
    let totals = String::from_utf8_lossy(&bed.relayctl_cli(&["totals"]).stdout).into_owned();
    assert!(
        totals.contains("cpu (host, softirq included)") && totals.contains("limit 0.01"),
        "{totals}"
    );
    common::stop_relayd(&bed.t.r, relayd);

    // The CPU limit alone (no load limit to trip first), and a load limit
    // no host reaches: refused for CPU.
    let relayd = bed.relayd(&[
        "--datapath",
        "userspace",
        "--max-cpu",
        "0.01",
        "--max-load",
        "10000",
    ]);
    let stats = wait_statistics(&bed, 10, |st| load_stats(st).get("refusing").is_some());
    let l = load_stats(&stats);
    assert_eq!(
        text(l, "refusing"),
        Some("CPU usage limit exceeded"),
        "{l:?}"
    );
    assert!(number(l.get("headroomto").unwrap(), "load").unwrap() > 9000.0);
    assert_refused(&bed, "lc-2", "CPU usage limit exceeded");
    stop.store(true, Ordering::Relaxed);
    spin.join().unwrap();
    common::stop_relayd(&bed.t.r, relayd);
}
