//! relayd with `--redis` against a real redis-server: the calls an active
//! relayd makes over NG appear in Redis and in a `--standby` relayd's
//! mirror, a Redis restart costs no call, the standby refuses calls, and
//! a wrong password stops relayd at start while an unreachable Redis does
//! not.

use std::{
    io::{Read as _, Write as _},
    process::Stdio,
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::NgClient,
    ready::spawn_ready,
    redis_server::{Launcher, RedisServer},
    require_root, PinDirGuard,
};

mod common;

use common::{answer, command, offer, stop_relayd, Bed, RELAYD};

/// Programs started in `ns` (nsenter execs them: their PID is theirs).
fn launcher(ns: &Netns) -> Launcher {
    relay_tests::redis_server::in_netns(ns.name())
}

/// Waits up to 10 s for `check`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The call-ids with a key in Redis database 1, sorted.
fn calls_in_redis(redis: &RedisServer) -> Vec<String> {
    let out = redis
        .cli(&["-n", "1", "--scan", "--pattern", "xrelay:call:*"])
        .unwrap_or_default();
    let mut ids: Vec<String> = out
        .lines()
        .filter_map(|k| k.strip_prefix("xrelay:call:").map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// `relayctl --cli CLI --json totals` in `ns`.
fn totals(ns: &Netns, cli: &str) -> serde_json::Value {
    common::relayctl_in(ns, &["--cli", cli, "--json", "totals"])
}

/// `GET /metrics` from `addr` in `ns`.
fn metrics(ns: &Netns, addr: &str) -> String {
    let addr = addr.to_owned();
    ns.run(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .unwrap()
}

/// The bed's relayd's relayctl socket (relayd's default).
const ACTIVE_CLI: &str = "127.0.0.1:9900";
const STANDBY_NG: &str = "127.0.0.1:2224";
const STANDBY_CLI: &str = "127.0.0.1:9901";
const STANDBY_HTTP: &str = "127.0.0.1:9902";

/// A standby relayd beside the bed's active one: its own sockets and pin
/// directory, userspace forwarding (the active's XDP owns the links).
fn standby(bed: &Bed, pins: &PinDirGuard, redis: &str) -> ChildGuard {
    let mut cmd = bed.t.r.command(RELAYD).unwrap();
    cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1"])
        .args(["--listen-ng", STANDBY_NG, "--listen-cli", STANDBY_CLI])
        .args(["--listen-http", STANDBY_HTTP, "--datapath", "userspace"])
        .args(["--port-min", "31000", "--port-max", "31999", "--pin-dir"])
        .arg(&pins.0)
        .args(["--standby", "--redis", redis])
        .stdout(Stdio::null());
    spawn_ready(&mut cmd).unwrap()
}

fn two_party_call(ng: &NgClient, id: &str) {
    ng.ok(&offer(id)).unwrap();
    ng.ok(&answer(id)).unwrap();
}

#[test]
fn an_active_replicates_its_calls_and_a_standby_mirrors_them() {
    require_root!();
    let bed = Bed::new("rha");
    let Some(mut redis) =
        RedisServer::start_with(module_path!(), Some("pa@ss"), launcher(&bed.t.r))
    else {
        return;
    };
    let url = redis.url(1);
    let active = bed.relayd(&["--redis", &url, "--delete-delay", "0"]);
    let standby_pins = PinDirGuard::new("rha-standby");
    let standby = standby(&bed, &standby_pins, &url);

    two_party_call(&bed.ng, "ha-1");
    two_party_call(&bed.ng, "ha-2");
    two_party_call(&bed.ng, "ha-3");
    bed.ng.ok(&command("delete", "ha-2")).unwrap();
    eventually("Redis holds the active's calls", || {
        calls_in_redis(&redis) == ["ha-1", "ha-3"]
    });
    let mirrored = |n: u64| {
        let t = totals(&bed.t.r, STANDBY_CLI);
        t["replication"]["redis"]["calls"] == n && t["replication"]["redis"]["link"] == "up"
    };
    eventually("the standby mirrors them", || mirrored(2));

    let t = totals(&bed.t.r, ACTIVE_CLI);
    let r = &t["replication"];
    assert_eq!(r["role"], "active", "{t}");
    assert_eq!(r["redis"]["link"], "up", "{t}");
    assert_eq!(r["redis"]["calls"], 2, "{t}");
    assert_eq!(r["redis"]["target"], format!("127.0.0.1:{}/1", redis.port));
    let text = String::from_utf8(bed.relayctl_cli(&["totals"]).stdout).unwrap();
    assert!(text.contains("role: active"), "{text}");
    assert!(text.contains("link up, 2 calls replicated"), "{text}");

    // The standby serves no calls, but answers pings.
    let standby_ng = NgClient::new(&bed.t.r, STANDBY_NG.parse().unwrap()).unwrap();
    let refused = standby_ng.request(&offer("ha-4")).unwrap();
    assert_eq!(refused.get("result").and_then(Value::as_str), Some("error"));
    let reason = refused.get("error-reason").and_then(Value::as_str).unwrap();
    assert!(reason.contains("standby"), "{reason}");
    let pong = standby_ng
        .request(&Value::dict([("command", Value::str("ping"))]))
        .unwrap();
    assert_eq!(pong.get("result").and_then(Value::as_str), Some("pong"));
    let st = totals(&bed.t.r, STANDBY_CLI);
    assert_eq!(st["replication"]["role"], "standby", "{st}");
    assert_eq!(st["sessions"], 0, "it forwards none of them: {st}");
    let m = metrics(&bed.t.r, STANDBY_HTTP);
    for line in [
        "xrelay_role{role=\"standby\"} 1",
        "xrelay_role{role=\"active\"} 0",
        "xrelay_redis_link_up 1",
        "xrelay_redis_calls 2",
    ] {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
    // The lag is known from the active's first "synced through" message
    // after the mirror subscribed (one a second when idle).
    eventually("the standby reports its lag", || {
        metrics(&bed.t.r, STANDBY_HTTP).contains("xrelay_redis_replication_lag_seconds")
    });

    // Redis restarted (empty) during the calls: none is lost on the active,
    // and Redis and the mirror converge once it is back.
    redis.restart();
    let fresh = calls_in_redis(&redis);
    assert!(fresh.len() < 2 || fresh == ["ha-1", "ha-3"], "{fresh:?}");
    two_party_call(&bed.ng, "ha-5");
    eventually("Redis is rewritten with every call", || {
        calls_in_redis(&redis) == ["ha-1", "ha-3", "ha-5"]
    });
    eventually("the standby converges", || mirrored(3));
    bed.ng.ok(&command("query", "ha-1")).unwrap();
    let t = totals(&bed.t.r, ACTIVE_CLI);
    assert_eq!(t["sessions"], 3, "{t}");
    assert!(
        t["replication"]["redis"]["resyncs"].as_u64().unwrap() >= 2,
        "{t}"
    );
    eventually("nothing pending on the active", || {
        totals(&bed.t.r, ACTIVE_CLI)["replication"]["redis"]["pending"] == 0
    });

    // An operator's stop ends every call: Redis and the mirror follow.
    stop_relayd(&bed.t.r, active);
    assert!(calls_in_redis(&redis).is_empty());
    eventually("the standby mirrors no call", || mirrored(0));
    let status = standby.terminate().unwrap();
    assert!(status.success(), "standby exit {status}");
}

#[test]
fn a_wrong_redis_password_stops_relayd_and_an_unreachable_redis_does_not() {
    require_root!();
    let bed = Bed::new("rhp");
    let Some(redis) = RedisServer::start_with(module_path!(), Some("right"), launcher(&bed.t.r))
    else {
        return;
    };
    let wrong = format!("wrong@127.0.0.1:{}/0", redis.port);
    let out = bed
        .t
        .r
        .command(RELAYD)
        .unwrap()
        .args([
            "-i",
            "a/10.20.1.1",
            "--listen-ng",
            "127.0.0.1:2225",
            "--pin-dir",
        ])
        .arg(&bed.pins.0)
        .args(["--redis", &wrong])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "relayd started with a wrong password"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--redis") && stderr.contains("refused the login"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong@"),
        "the password stays out: {stderr}"
    );

    // Nothing listens there: relayd starts, relays, and says the link is down.
    let relayd = bed.relayd(&["--redis", "127.0.0.1:1/0"]);
    two_party_call(&bed.ng, "down-1");
    let t = totals(&bed.t.r, ACTIVE_CLI);
    assert_eq!(t["sessions"], 1, "{t}");
    assert_eq!(t["replication"]["redis"]["link"], "down", "{t}");
    assert_eq!(t["replication"]["redis"]["pending"], 1, "{t}");
    let text = String::from_utf8(bed.relayctl_cli(&["totals"]).stdout).unwrap();
    assert!(text.contains("link down"), "{text}");
    stop_relayd(&bed.t.r, relayd);
}
