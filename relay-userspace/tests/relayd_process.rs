//! The relayd and relayctl binaries, run as processes in network namespaces:
//! start-up, forwarding, what relayctl reports, clean shutdown, and the
//! errors operators see first.

use std::process::{Command, Output, Stdio};

use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, NgClient},
    peer::{attach_peer_pass, PeerPass},
    ready::spawn_ready,
    require_root,
    topology::{assert_delivered, bind_udp, exchange, Topology, HOST_A, HOST_B, RELAY_A, RELAY_B},
    PinDirGuard,
};

mod common;

use common::{RELAYCTL, RELAYD};

fn relayctl(pin_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(RELAYCTL)
        .arg("--pin-dir")
        .arg(pin_dir)
        .args(args)
        .output()
        .expect("relayctl runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "relayctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("relayctl --json prints JSON")
}

/// Starts relayd in `ns` and waits for its READY=1.
fn start_relayd(ns: &Netns, pins: &PinDirGuard, extra: &[&str]) -> ChildGuard {
    let mut cmd = ns.command(RELAYD).unwrap();
    cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1", "--pin-dir"])
        .arg(&pins.0)
        .args(extra);
    let child = spawn_ready(cmd.stdout(Stdio::null())).unwrap();
    child
}

/// The topology with peer programs on the hosts' veths, so relayd runs
/// native XDP.
fn native_topology(tag: &str) -> (Topology, [PeerPass; 2]) {
    let t = Topology::new(tag).unwrap();
    let pa = t.a.run(|| attach_peer_pass("a0")).unwrap().unwrap();
    let pb = t.b.run(|| attach_peer_pass("b0")).unwrap().unwrap();
    (t, [pa, pb])
}

fn static_streams() -> Vec<String> {
    vec![
        "--static-stream".into(),
        format!("{RELAY_A}:30000={HOST_B}:40000,src={RELAY_B}:30002,rtp=8000"),
        "--static-stream".into(),
        format!("{RELAY_B}:30002={HOST_A}:5000,src={RELAY_A}:30000,strict={HOST_B}:40000"),
    ]
}

#[test]
fn relayd_forwards_reports_and_cleans_up() {
    require_root!();
    let (t, _peers) = native_topology("rd");
    let pins = PinDirGuard::new("relayd");
    let streams = static_streams();
    let args: Vec<&str> = streams.iter().map(String::as_str).collect();
    let relayd = start_relayd(&t.r, &pins, &args);

    let ifaces = json(&relayctl(&pins.0, &["interfaces", "--json"]));
    for iface in ifaces.as_array().unwrap() {
        assert_eq!(iface["xdp_mode"], "native", "{iface}");
    }

    let a = bind_udp(&t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&t.b, &format!("{HOST_B}:40000")).unwrap();
    assert_delivered(
        &exchange(&a, &format!("{RELAY_A}:30000"), &b, 10).unwrap(),
        10,
        &format!("{RELAY_B}:30002"),
    );
    assert_delivered(
        &exchange(&b, &format!("{RELAY_B}:30002"), &a, 10).unwrap(),
        10,
        &format!("{RELAY_A}:30000"),
    );

    let counters = json(&relayctl(&pins.0, &["--json", "counters"]));
    assert_eq!(counters["forwarded_redirect"]["packets"], 20, "{counters}");
    let streams = json(&relayctl(&pins.0, &["--json", "streams"]));
    let list = streams.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s["packets"] == 10), "{streams}");
    assert!(list.iter().any(|s| s["strict_source"] == true));
    // The `rtp=8000` one keeps RTP figures: the test datagrams are not RTP.
    let rtp_port = list
        .iter()
        .find(|s| s["local"] == format!("{RELAY_A}:30000"))
        .unwrap();
    assert_eq!(
        (
            &rtp_port["media"],
            &rtp_port["rtp_packets"],
            &rtp_port["other_packets"]
        ),
        (
            &serde_json::json!("rtp"),
            &serde_json::json!(0),
            &serde_json::json!(10)
        ),
        "{streams}"
    );
    assert!(list
        .iter()
        .any(|s| s["media"] == "other" && s.get("other_packets").is_none()));
    let table = relayctl(&pins.0, &["counters"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("forwarded_redirect") && text.contains("20"),
        "{text}"
    );

    // `relayctl stop` (a signal would leave the program for the next relayd).
    common::stop_relayd(&t.r, relayd);
    let not_running = relayctl(&pins.0, &["counters"]);
    assert_eq!(
        not_running.status.code(),
        Some(2),
        "relayctl exit code without relayd"
    );
    for dev in ["a1", "b1"] {
        let out =
            t.r.command("ip")
                .unwrap()
                .args(["link", "show", dev])
                .output()
                .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("xdp"),
            "XDP still attached after shutdown: {text}"
        );
    }
}

#[test]
fn relayctl_shows_why_generic_mode_was_chosen() {
    require_root!();
    let t = Topology::new("rg").unwrap();
    let pins = PinDirGuard::new("relayd-generic");
    let relayd = start_relayd(&t.r, &pins, &[]);
    let ifaces = json(&relayctl(&pins.0, &["--json", "interfaces"]));
    for iface in ifaces.as_array().unwrap() {
        assert_eq!(iface["xdp_mode"], "generic", "{iface}");
        assert!(
            iface["reason"].as_str().unwrap().contains("self-test"),
            "{iface}"
        );
    }
    let text = String::from_utf8_lossy(&relayctl(&pins.0, &["interfaces"]).stdout).into_owned();
    assert!(text.contains("generic") && text.contains("a1"), "{text}");
    // The default media range (30000-39999) overlaps the ephemeral ports
    // (32768-60999): relayd reserved it, so the shield never eats replies.
    let reserved =
        t.r.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap())
            .unwrap();
    assert!(
        reserved.contains("30000-39999"),
        "reserved ports: {reserved:?}"
    );
    assert!(relayd.terminate().unwrap().success());
}

#[test]
fn operator_errors_say_what_to_do() {
    require_root!();
    let ns = Netns::new("re").unwrap();
    let pins = PinDirGuard::new("relayd-errors");
    let run = |args: &[&str]| {
        let mut cmd = ns.command(RELAYD).unwrap();
        cmd.arg("--pin-dir")
            .arg(&pins.0)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.0.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "relayd {args:?} kept running instead of failing"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "relayd {args:?} should fail");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
        err
    };
    let err = run(&["-i", "nosuch0"]);
    assert!(
        err.contains("\"nosuch0\" is neither an IP address nor a network interface"),
        "{err}"
    );
    // Interface aliases (ALIAS=NAME) must name an interface and be new.
    let err = run(&["-i", "lo", "-i", "ext=nosuch"]);
    assert!(
        err.contains("alias \"ext\" refers to \"nosuch\", which is not the NAME of any"),
        "{err}"
    );
    let err = run(&[
        "-i",
        "pub/127.0.0.1",
        "-i",
        "priv/127.0.0.1",
        "-i",
        "pub=priv",
    ]);
    assert!(
        err.contains("alias \"pub\" is already the name of an interface"),
        "{err}"
    );
    let err = run(&["-i", "lo", "--static-stream", "10.0.0.1:1"]);
    assert!(
        err.contains("bad --static-stream") && err.contains("missing `=`"),
        "{err}"
    );
    // The namespace may inherit forwarding from the host: turn it off here.
    let off = ns
        .command("sh")
        .unwrap()
        .args(["-c", "echo 0 > /proc/sys/net/ipv4/conf/lo/forwarding"])
        .status();
    assert!(off.unwrap().success());
    let err = run(&["-i", "lo", "--datapath", "xdp", "--no-enable-forwarding"]);
    assert!(err.contains("forwarding is off on lo"), "{err}");
    let err = run(&["-i", "192.0.2.77", "--datapath", "xdp"]);
    assert!(
        err.contains("192.0.2.77 is not configured on any local network interface"),
        "{err}"
    );

    // Without privileges: nobody, every capability dropped.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([RELAYD, "-i", "lo", "--datapath", "xdp"])
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lacks CAP_BPF and CAP_PERFMON and CAP_NET_ADMIN") && err.contains("root"),
        "{err}"
    );
}

#[test]
fn media_survives_a_relayd_crash_and_a_restart_takes_over() {
    require_root!();
    let (t, _peers) = native_topology("rc");
    let pins = PinDirGuard::new("relayd-crash");
    let streams = static_streams();
    let args: Vec<&str> = streams.iter().map(String::as_str).collect();
    let mut first = start_relayd(&t.r, &pins, &args);
    first.0.kill().unwrap(); // SIGKILL: no clean shutdown
    first.0.wait().unwrap();

    // The pinned link keeps the program attached and forwarding.
    let a = bind_udp(&t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&t.b, &format!("{HOST_B}:40000")).unwrap();
    let got = exchange(&a, &format!("{RELAY_A}:30000"), &b, 5).unwrap();
    assert_delivered(&got, 5, &format!("{RELAY_B}:30002"));

    // A new relayd on the same pin directory replaces the stale link.
    let second = start_relayd(&t.r, &pins, &args);
    let got = exchange(&a, &format!("{RELAY_A}:30000"), &b, 5).unwrap();
    assert_delivered(&got, 5, &format!("{RELAY_B}:30002"));
    let counters = json(&relayctl(&pins.0, &["--json", "counters"]));
    // Counters live in the pinned map, so they span both relayd runs.
    assert_eq!(counters["forwarded_redirect"]["packets"], 10, "{counters}");

    // A relayd that starts without those streams discards the dead one's
    // stream table: nothing is listed and nothing forwarded any more.
    let mut second = second;
    second.0.kill().unwrap();
    second.0.wait().unwrap();
    let third = start_relayd(&t.r, &pins, &[]);
    let listed = json(&relayctl(&pins.0, &["--json", "streams"]));
    assert_eq!(listed, serde_json::json!([]), "stale streams listed");
    let got = exchange(&a, &format!("{RELAY_A}:30000"), &b, 1).unwrap();
    assert!(got.is_empty(), "a stale stream still forwarded: {got:?}");
    assert!(third.terminate().unwrap().success());
}

/// Starts relayd (on 127.0.0.1 with `datapath`, 2000 media ports: 2000
/// media sockets at most) under an open-files limit of `soft`/`hard`.
fn spawn_with_open_files_limit(
    ns: &Netns,
    pins: &PinDirGuard,
    datapath: &str,
    soft: u64,
    hard: u64,
) -> ChildGuard {
    let mut cmd = ns.command(RELAYD).unwrap();
    cmd.args(["-i", "127.0.0.1", "--datapath", datapath])
        .args(["--port-min", "30000", "--port-max", "31999"])
        .args(["--listen-ng", "127.0.0.1:2223"])
        .arg("--pin-dir")
        .arg(&pins.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    limit_open_files(&mut cmd, soft, hard);
    spawn_ready(&mut cmd).unwrap()
}

/// Makes `cmd` start under an open-files limit of `soft`/`hard`.
fn limit_open_files(cmd: &mut Command, soft: u64, hard: u64) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `relayd doctor --json` in the relay namespace of `t` (relay addresses
/// on a1 and b1) with `extra` options and an open-files limit of `nofile`:
/// its exit status and its checks by name.
fn doctor(t: &Topology, extra: &[&str], nofile: u64) -> (i32, serde_json::Value) {
    let pins = PinDirGuard::new("doc");
    let mut cmd = t.r.command(RELAYD).unwrap();
    cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1", "--pin-dir"])
        .arg(&pins.0)
        .args(["--port-min", "30000", "--port-max", "30999"])
        .args(extra)
        .args(["doctor", "--json"]);
    limit_open_files(&mut cmd, nofile, nofile);
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let by_name = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect::<serde_json::Map<_, _>>();
    (
        out.status.code().unwrap(),
        serde_json::Value::Object(by_name),
    )
}

/// `relayd doctor` on veth, first as set up (a clean bill but for what a
/// veth cannot change), then with an MTU above native XDP's limit,
/// forwarding off under --no-enable-forwarding and an open-files limit
/// below the port range: each gives its verdict, and the exit status
/// says errors.
#[test]
fn doctor_names_what_is_wrong_and_how_to_fix_it() {
    require_root!();
    let t = Topology::new("doc").unwrap();
    let verdict = |checks: &serde_json::Value, name: &str| {
        checks[name]["verdict"]
            .as_str()
            .unwrap_or_else(|| panic!("no check {name}: {checks}"))
            .to_owned()
    };
    // 2000 media ports: 10 000 open files cover them, 1000 do not.
    let (_, good) = doctor(&t, &[], 10_000);
    for name in [
        "kernel",
        "capabilities",
        "open files",
        "mtu a1",
        "forwarding a1",
        "native attach a1",
    ] {
        assert_eq!(verdict(&good, name), "ok", "{name}: {}", good[name]);
    }
    assert_eq!(
        good["driver a1"]["detail"]
            .as_str()
            .map(|d| d.starts_with("veth")),
        Some(true)
    );

    // veth checks its peer's MTU for native XDP: raise both ends.
    t.r.ip(&["link", "set", "a1", "mtu", "9000"]).unwrap();
    t.a.ip(&["link", "set", "a0", "mtu", "9000"]).unwrap();
    t.r.run(|| std::fs::write("/proc/sys/net/ipv4/conf/b1/forwarding", "0"))
        .unwrap()
        .unwrap();
    let (status, bad) = doctor(
        &t,
        &["--no-enable-forwarding", "--xdp-mode", "native"],
        1000,
    );
    assert_eq!(status, 2, "errors: {bad}");
    assert_eq!(verdict(&bad, "mtu a1"), "error", "{}", bad["mtu a1"]);
    assert!(bad["mtu a1"]["fix"].as_str().unwrap().contains("mtu 3506"));
    assert_eq!(
        verdict(&bad, "forwarding b1"),
        "error",
        "{}",
        bad["forwarding b1"]
    );
    assert_eq!(verdict(&bad, "open files"), "warn", "{}", bad["open files"]);
    assert_eq!(
        verdict(&bad, "native attach a1"),
        "warn",
        "{}",
        bad["native attach a1"]
    );
    assert_eq!(verdict(&bad, "mtu b1"), "ok");
}

/// Starts relayd (userspace) under an open-files limit of `soft`/`hard`,
/// and returns its limit once ready and what it logged.
fn relayd_under_open_files_limit(ns: &Netns, soft: u64, hard: u64) -> (String, String) {
    let pins = PinDirGuard::new("rl");
    let mut relayd = spawn_with_open_files_limit(ns, &pins, "userspace", soft, hard);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relayd.0.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let mut stderr = relayd.0.stderr.take().unwrap();
    assert!(relayd.terminate().unwrap().success());
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    (open_files, log)
}

#[test]
fn relayd_raises_its_open_files_limit_and_warns_when_it_is_short() {
    require_root!();
    let ns = Netns::new("rl").unwrap();
    // systemd's default soft limit under a high hard one: raised, quietly.
    let (limit, log) = relayd_under_open_files_limit(&ns, 256, 8192);
    let fields: Vec<&str> = limit.split_whitespace().collect();
    assert_eq!(fields[3..5], ["8192", "8192"], "{limit}");
    assert!(log.contains("raised the open-files limit"), "{log}");
    assert!(!log.contains("runs out before"), "{log}");
    // A hard limit below the media ports: room for (1024 - 64) / 4 calls.
    let (limit, log) = relayd_under_open_files_limit(&ns, 256, 1024);
    let fields: Vec<&str> = limit.split_whitespace().collect();
    assert_eq!(fields[3..5], ["1024", "1024"], "{limit}");
    assert!(
        log.contains("runs out before the media ports") && log.contains("about 240 calls"),
        "{log}"
    );
}

/// Out of file descriptors, an offer gets an error reply naming the cause
/// (rtpengine answers "Ran out of ports"; the real reason is more useful),
/// relayd keeps serving, and a deleted call's sockets make room for the
/// next one: in both datapaths (XDP also holds its maps' and programs'
/// descriptors).
#[test]
fn offers_at_the_open_files_limit_fail_cleanly() {
    require_root!();
    let ns = Netns::new("rf").unwrap();
    ns.ip(&["link", "set", "lo", "up"]).unwrap();
    for datapath in ["userspace", "xdp"] {
        let pins = PinDirGuard::new("rf");
        let relayd = spawn_with_open_files_limit(&ns, &pins, datapath, 96, 96);
        let ng = NgClient::new(&ns, "127.0.0.1:2223".parse().unwrap()).unwrap();
        let offer = |id: &str| {
            ng.request(&Value::dict([
                ("command", Value::str("offer")),
                ("call-id", Value::str(id)),
                ("from-tag", Value::str("a")),
                ("sdp", Value::str(&audio_sdp("127.0.0.1", 5000))),
            ]))
            .unwrap()
        };
        let result = |reply: &Value| {
            reply
                .get("result")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut calls = Vec::new();
        let refused = loop {
            let id = format!("{datapath}-{}", calls.len());
            let reply = offer(&id);
            if result(&reply).as_deref() != Some("ok") {
                break reply;
            }
            calls.push(id);
            assert!(
                calls.len() < 48,
                "{datapath}: 96 descriptors held {} calls",
                calls.len()
            );
        };
        assert!(
            calls.len() >= 4,
            "{datapath}: only {} calls fit",
            calls.len()
        );
        eprintln!("{datapath}: {} calls fit under 96 descriptors", calls.len());
        let reason = refused
            .get("error-reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(
            reason.starts_with("Cannot open media sockets")
                && reason.contains("Too many open files"),
            "{datapath}: {refused:?}"
        );
        let pong = ng
            .request(&Value::dict([("command", Value::str("ping"))]))
            .unwrap();
        assert_eq!(
            result(&pong).as_deref(),
            Some("pong"),
            "{datapath}: still serving"
        );
        ng.ok(&Value::dict([
            ("command", Value::str("delete")),
            ("call-id", Value::str(&calls[0])),
            ("from-tag", Value::str("a")),
            ("delete-delay", Value::Int(0)),
        ]))
        .unwrap();
        // The deleted call's sockets close once its reply is out.
        let again = (0..50)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                offer(&format!("{datapath}-again"))
            })
            .find(|r| result(r).as_deref() == Some("ok"));
        assert!(again.is_some(), "{datapath}: no room after a delete");
        assert!(
            relayd.terminate().unwrap().success(),
            "{datapath}: clean exit"
        );
    }
}
