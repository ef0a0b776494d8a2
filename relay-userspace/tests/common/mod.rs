// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

//! The test bed the NG integration tests share: hosts A and B, relayd in
//! the middle on both links (media ports 30000–30999, NG on loopback in
//! its namespace), peer programs so that native XDP works, a pin directory
//! of its own, and relayctl.

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, NgClient},
    peer::{attach_peer_pass, PeerPass},
    ready::spawn_ready,
    topology::{Topology, HOST_A, HOST_B, RELAY_A6, RELAY_B6},
    PinDirGuard,
};

pub const RELAYD: &str = env!("CARGO_BIN_EXE_relayd");
pub const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");
pub const NG: &str = "127.0.0.1:2223";

/// Namespaces, peers, pins and an NG client; relayds are started on it
/// with [`Bed::relayd`], as many times as a test needs (a restarted relayd
/// finds the same pins and call state).
pub struct Bed {
    pub t: Topology,
    _peers: [PeerPass; 2],
    pub pins: PinDirGuard,
    pub ng: NgClient,
    /// Extra addresses relayd serves (the IPv6 ones of a dual-stack bed).
    interfaces: Vec<String>,
}

impl Bed {
    /// IPv4 links only.
    pub fn new(tag: &str) -> Bed {
        Self::build(tag, false)
    }

    /// IPv6 on both links too, relayd's `a` and `b` dual-stack.
    pub fn dual_stack(tag: &str) -> Bed {
        Self::build(tag, true)
    }

    fn build(tag: &str, ipv6: bool) -> Bed {
        let t = Topology::new(tag).unwrap();
        if ipv6 {
            t.add_ipv6().unwrap();
        }
        let pa = t.a.run(|| attach_peer_pass("a0")).unwrap().unwrap();
        let pb = t.b.run(|| attach_peer_pass("b0")).unwrap().unwrap();
        let pins = PinDirGuard::new(tag);
        let ng = NgClient::new(&t.r, NG.parse().unwrap()).unwrap();
        let interfaces = if ipv6 {
            vec![format!("a/{RELAY_A6}"), format!("b/{RELAY_B6}")]
        } else {
            Vec::new()
        };
        Bed {
            t,
            _peers: [pa, pb],
            pins,
            ng,
            interfaces,
        }
    }

    /// Starts relayd with `extra` options and waits for its READY=1.
    pub fn relayd(&self, extra: &[&str]) -> ChildGuard {
        self.relayd_from(RELAYD, extra)
    }

    /// [`Self::relayd`] with the relayd binary at `bin` (an earlier build).
    pub fn relayd_from(&self, bin: &str, extra: &[&str]) -> ChildGuard {
        let mut cmd = self.t.r.command(bin).unwrap();
        cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1", "--listen-ng", NG])
            .args(["--port-min", "30000", "--port-max", "30999", "--pin-dir"])
            .arg(&self.pins.0);
        for spec in &self.interfaces {
            cmd.args(["-i", spec]);
        }
        cmd.args(extra).stdout(Stdio::null());
        spawn_ready(&mut cmd).unwrap()
    }

    /// `relayctl --json WHAT`, reading the pinned maps.
    pub fn relayctl_json(&self, what: &str) -> serde_json::Value {
        relayctl_json(&self.pins.0, what)
    }

    /// relayctl run in the relay namespace (its CLI socket is on loopback there).
    pub fn relayctl_cli(&self, args: &[&str]) -> std::process::Output {
        self.t
            .r
            .command(RELAYCTL)
            .unwrap()
            .args(args)
            .output()
            .unwrap()
    }

    /// Kernel entries that forward (not pass-to-userspace ones).
    pub fn forwarding_streams(&self) -> usize {
        let streams = self.relayctl_json("streams");
        streams
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["to_userspace"] == false)
            .count()
    }
}

/// `relayctl ARGS` run in `ns` (its CLI socket is on that namespace's
/// loopback), its JSON output; `args` should include `--json`.
pub fn relayctl_in(ns: &relay_tests::netns::Netns, args: &[&str]) -> serde_json::Value {
    let out = ns.command(RELAYCTL).unwrap().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `relayctl --json WHAT` on the instance pinned at `pin_dir`.
pub fn relayctl_json(pin_dir: &std::path::Path, what: &str) -> serde_json::Value {
    let out = Command::new(RELAYCTL)
        .arg("--pin-dir")
        .arg(pin_dir)
        .args(["--json", what])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Stops `relayd`, running in `ns`, for good with `relayctl stop` (a signal
/// would leave its program for a next relayd) and checks that it exits
/// cleanly.
pub fn stop_relayd(ns: &Netns, mut relayd: ChildGuard) {
    let stop = ns.command(RELAYCTL).unwrap().arg("stop").output().unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let status = relayd.0.wait().unwrap();
    assert!(status.success(), "relayd exit {status}");
}

// NG requests and replies of the tests' usual call (A offers, B answers).

pub fn s(v: &str) -> Value {
    Value::str(v)
}

pub fn offer(call_id: &str) -> Value {
    Value::dict([
        ("command", s("offer")),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
        ("sdp", s(&audio_sdp(HOST_A, 5000))),
        ("direction", Value::str_list(["a", "b"])),
        ("supports", Value::str_list(["load limit"])),
        ("received-from", Value::str_list(["IP4", HOST_A])),
        ("sip-message-type", s("sip_request")),
    ])
}

pub fn answer(call_id: &str) -> Value {
    Value::dict([
        ("command", s("answer")),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
        ("to-tag", s("tag-B")),
        ("sdp", s(&audio_sdp(HOST_B, 40000))),
        ("supports", Value::str_list(["load limit"])),
        ("received-from", Value::str_list(["IP4", HOST_B])),
    ])
}

pub fn command(name: &str, call_id: &str) -> Value {
    Value::dict([
        ("command", s(name)),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
    ])
}

/// RTP streams of `query`, by tag: (flags, userspace packets, kernel packets).
pub fn rtp_streams(q: &Value) -> Vec<(String, Vec<String>, i64, i64)> {
    let mut out = Vec::new();
    for (tag, t) in q.get("tags").and_then(Value::as_dict).unwrap() {
        for m in t.get("medias").and_then(Value::as_list).unwrap() {
            let st = &m.get("streams").and_then(Value::as_list).unwrap()[0];
            let flags = st.get("flags").and_then(Value::as_list).unwrap();
            let flags = flags
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            let count = |k: &str| {
                st.get(k)
                    .and_then(|d| d.get("packets"))
                    .and_then(Value::as_int)
                    .unwrap()
            };
            out.push((
                String::from_utf8_lossy(tag).into_owned(),
                flags,
                count("userspace stats"),
                count("kernel stats"),
            ));
        }
    }
    out
}

/// Waits up to 5 s for every RTP stream of `call_id` to be in the kernel;
/// returns the `query` that showed it.
pub fn wait_kernelized(ng: &NgClient, call_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let q = ng.ok(&command("query", call_id)).unwrap();
        if rtp_streams(&q)
            .iter()
            .all(|(_, flags, _, _)| flags.iter().any(|f| f == "kernelized"))
        {
            return q;
        }
        assert!(Instant::now() < deadline, "streams never kernelized: {q:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `addr` can be bound in `ns` (nobody holds the port).
pub fn port_is_free(ns: &Netns, addr: SocketAddr) -> bool {
    ns.run(move || UdpSocket::bind(addr).is_ok()).unwrap()
}

/// `GET path` over HTTP from inside the relay namespace.
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> String {
    let addr: SocketAddr = addr.parse().unwrap();
    let path = path.to_owned();
    ns.run(move || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: relay\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

/// The value of a metric line `name{labels} value` (labels given verbatim).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}
