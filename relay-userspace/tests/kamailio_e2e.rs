//! End to end: a real Kamailio (Debian's, its rtpengine module) in front of
//! relayd, sipp calling through it with G.711 RTP from the shipped capture,
//! sipp answering and echoing RTP, in three network namespaces:
//!
//! ```text
//!  caller 10.30.1.2 ---- c1 10.30.1.1 [core: Kamailio + relayd] e1 10.30.2.1 ---- callee 10.30.2.2
//! ```
//!
//! The Kamailio configuration (tests/e2e/kamailio.cfg) is an ordinary
//! rtpengine one (`direction=caller direction=callee` because the relay sits
//! between two networks); only its addresses are filled in. Captures on the
//! caller's and callee's links count what arrived and from where.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsString,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use relay_tests::{
    netns::{veth, ChildGuard, Netns},
    peer::{attach_peer_pass, PeerPass},
    ready::spawn_ready,
    require_root, PinDirGuard,
};

const RELAYD: &str = env!("CARGO_BIN_EXE_relayd");
const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");
const CALLER: &str = "10.30.1.2";
const CALLER_SIDE: &str = "10.30.1.1";
const CALLEE_SIDE: &str = "10.30.2.1";
const CALLEE: &str = "10.30.2.2";
/// RTP packets in /usr/share/sip-tester/g711a.pcap.
const PCAP_PACKETS: u64 = 236;
const MEDIA_PORTS: std::ops::RangeInclusive<u16> = 30000..=30999;

/// The scenarios run one at a time: each plays real-time media with
/// thousands of packets, and on a 2-core CI machine running them side by
/// side would measure the machine, not the relay.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e")
}

struct Site {
    caller: Netns,
    core: Netns,
    callee: Netns,
    _peers: [PeerPass; 2],
    work: PathBuf,
    relays: Vec<Relayd>,
    kamailio: ChildGuard,
}

/// A relayd instance of the site.
struct Relayd {
    child: ChildGuard,
    pins: PinDirGuard,
    cli: String,
    log: PathBuf,
    /// Its command line, to start it again the same way.
    args: Vec<OsString>,
}

/// Runs relayd in `core` with `args`, its stderr appended to `log`, and
/// waits for its `READY=1`.
fn spawn_relayd(core: &Netns, args: &[OsString], log: &Path) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = core.command(RELAYD).unwrap();
    cmd.args(args).stdout(Stdio::null()).stderr(log);
    spawn_ready(&mut cmd).unwrap()
}

impl Relayd {
    /// Stops it with SIGTERM (which leaves its calls and pinned program
    /// behind), waits for the exit and starts it again with the same
    /// arguments, so the same pin and state directories.
    fn restart(self, core: &Netns) -> Relayd {
        let Relayd {
            child,
            pins,
            cli,
            log,
            args,
        } = self;
        let status = child.terminate().unwrap();
        assert!(status.success(), "relayd exit on SIGTERM: {status}");
        let child = spawn_relayd(core, &args, &log);
        Relayd {
            child,
            pins,
            cli,
            log,
            args,
        }
    }
}

/// Starts relayd in `core` with NG on `ng_port`, CLI on `cli_port`.
fn start_relayd(
    core: &Netns,
    work: &Path,
    name: &str,
    ng_port: u16,
    cli_port: u16,
    extra: &[&str],
) -> Relayd {
    let pins = PinDirGuard::new(&format!("e2e-{name}"));
    let log = work.join(format!("{name}.log"));
    let cli = format!("127.0.0.1:{cli_port}");
    let mut args: Vec<OsString> = [
        "-i",
        "caller/10.30.1.1",
        "-i",
        "callee/10.30.2.1",
        "--delete-delay",
        "0",
        "--listen-ng",
        &format!("127.0.0.1:{ng_port}"),
        "--listen-cli",
        &cli,
        "--pin-dir",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(pins.0.clone().into_os_string());
    args.extend(extra.iter().map(OsString::from));
    let child = spawn_relayd(core, &args, &log);
    Relayd {
        child,
        pins,
        cli,
        log,
        args,
    }
}

impl Site {
    fn new(tag: &str) -> Site {
        Site::with_relays(
            tag,
            &[&["--port-min", "30000", "--port-max", "30999"]],
            "udp:127.0.0.1:2223",
        )
    }

    /// A site with one relayd per entry of `relays` (NG on 2223, 2224, ...)
    /// and Kamailio's `rtpengine_sock` set to `sock`.
    fn with_relays(tag: &str, relays: &[&[&str]], sock: &str) -> Site {
        Site::with_config(tag, relays, sock, "kamailio.cfg")
    }

    /// [`Site::with_relays`] with Kamailio running `config` (in tests/e2e).
    fn with_config(tag: &str, relays: &[&[&str]], sock: &str, config: &str) -> Site {
        for tool in ["kamailio", "sipp", "tcpdump"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "{tool} missing: cargo xtask test installs kamailio, sip-tester, tcpdump"
            );
        }
        let caller = Netns::new(&format!("{tag}c")).unwrap();
        let core = Netns::new(&format!("{tag}k")).unwrap();
        let callee = Netns::new(&format!("{tag}e")).unwrap();
        veth(
            caller.end("c0", "10.30.1.2/24", "02:00:00:30:01:02"),
            core.end("c1", "10.30.1.1/24", "02:00:00:30:01:01"),
        )
        .unwrap();
        veth(
            core.end("e1", "10.30.2.1/24", "02:00:00:30:02:01"),
            callee.end("e0", "10.30.2.2/24", "02:00:00:30:02:02"),
        )
        .unwrap();
        // The endpoints route everything via the core (so media *could* go
        // around the relay if the SDP were not rewritten), compute their own
        // UDP checksums (as hosts on a wire do) and run a pass-through XDP
        // program so that native XDP transmit into their veths delivers.
        caller
            .ip(&["route", "add", "default", "via", CALLER_SIDE])
            .unwrap();
        callee
            .ip(&["route", "add", "default", "via", CALLEE_SIDE])
            .unwrap();
        // The caller keeps default offloads (a same-host sender's partial
        // UDP checksums, as a container sends them); the callee computes
        // full ones: both forms cross the relay.
        callee.ethtool_offload_off("e0").unwrap();
        let pc = caller.run(|| attach_peer_pass("c0")).unwrap().unwrap();
        let pe = callee.run(|| attach_peer_pass("e0")).unwrap().unwrap();

        let work = std::env::temp_dir().join(format!("xrelay-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();

        let relays: Vec<Relayd> = relays
            .iter()
            .enumerate()
            .map(|(i, extra)| {
                let n = i as u16;
                start_relayd(
                    &core,
                    &work,
                    &format!("relayd{n}"),
                    2223 + n,
                    9900 + n,
                    extra,
                )
            })
            .collect();

        let cfg = std::fs::read_to_string(e2e_dir().join(config))
            .unwrap()
            .replace("@@CALLER_SIDE@@", CALLER_SIDE)
            .replace("@@CALLEE_SIDE@@", CALLEE_SIDE)
            .replace("@@CALLEE@@", &format!("{CALLEE}:5060"))
            .replace("@@RTPENGINE_SOCK@@", sock);
        std::fs::write(work.join("kamailio.cfg"), cfg).unwrap();
        let kamailio = ChildGuard(
            core.command("kamailio")
                .unwrap()
                .args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
                .arg(work.join("kamailio.cfg"))
                .arg("-P")
                .arg(work.join("kamailio.pid"))
                .arg("-Y")
                .arg(&work)
                .arg("-w")
                .arg(&work)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(work.join("kamailio.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut site = Site {
            caller,
            core,
            callee,
            _peers: [pc, pe],
            work,
            relays,
            kamailio,
        };
        site.wait_for_sip();
        site
    }

    /// Kamailio is up once its UDP sockets are bound.
    fn wait_for_sip(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                self.kamailio.0.try_wait().unwrap().is_none(),
                "kamailio exited:\n{}",
                self.log("kamailio.log")
            );
            let bound = udp_ports(&self.core).contains(&5060);
            if bound {
                // Give it a moment to ping the relay and start its children.
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not start:\n{}",
                self.log("kamailio.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(name)).unwrap_or_default()
    }

    /// Starts a capture of non-SIP UDP on `iface` in `ns`.
    fn capture(&self, ns: &Netns, iface: &str, name: &str) -> (ChildGuard, PathBuf) {
        let file = self.work.join(name);
        let child = ns
            .command("tcpdump")
            .unwrap()
            .args(["-i", iface, "-U", "-n", "-w"])
            .arg(&file)
            .args(["udp and not port 5060"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        (ChildGuard(child), file)
    }

    /// Starts SIP captures on both endpoint links: (guards, (callee file, caller file)).
    fn capture_sip(&self) -> (SipCaptures, (PathBuf, PathBuf)) {
        let file_e = self.work.join("sip-callee.pcap");
        let file_c = self.work.join("sip-caller.pcap");
        let start = |ns: &Netns, iface: &str, file: &Path| {
            ChildGuard(
                ns.command("tcpdump")
                    .unwrap()
                    .args(["-i", iface, "-U", "-n", "-s", "0", "-w"])
                    .arg(file)
                    .args(["udp port 5060"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        };
        let guards = SipCaptures(
            start(&self.callee, "e0", &file_e),
            start(&self.caller, "c0", &file_c),
        );
        std::thread::sleep(Duration::from_millis(500));
        (guards, (file_e, file_c))
    }

    /// Starts sipp in `ns`, in the work directory; [`wait_sipp`] collects it.
    fn spawn_sipp(&self, ns: &Netns, args: &[&str]) -> ChildGuard {
        ChildGuard(
            ns.command("sipp")
                .unwrap()
                .args(args)
                .current_dir(&self.work)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn callee_uas(&self, scenario: &str) -> ChildGuard {
        let child = self
            .callee
            .command("sipp")
            .unwrap()
            .arg("-sf")
            .arg(e2e_dir().join(scenario))
            .args([
                "-i",
                CALLEE,
                "-p",
                "5060",
                "-mi",
                CALLEE,
                "-mp",
                "6000",
                "-rtp_echo",
                "-nostdin",
            ])
            .current_dir(&self.work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        ChildGuard(child)
    }

    /// Places `calls` calls, `limit` at once, `rate` per second, each
    /// playing the capture and hanging up after `duration_ms`.
    fn place_calls(
        &self,
        scenario: &str,
        calls: u32,
        limit: u32,
        rate: u32,
        duration_ms: u32,
    ) -> std::process::Output {
        let sipp = self.start_calls(scenario, calls, limit, rate, duration_ms);
        wait_sipp(sipp, Duration::from_secs(180))
    }

    /// [`place_calls`] without waiting: the caller's sipp, running.
    fn start_calls(
        &self,
        scenario: &str,
        calls: u32,
        limit: u32,
        rate: u32,
        duration_ms: u32,
    ) -> ChildGuard {
        let (m, l, r, d) = (
            calls.to_string(),
            limit.to_string(),
            rate.to_string(),
            duration_ms.to_string(),
        );
        let caller_xml = e2e_dir().join(scenario);
        let args = [
            &format!("{CALLER_SIDE}:5060"),
            "-sf",
            caller_xml.to_str().unwrap(),
            "-i",
            CALLER,
            "-p",
            "5070",
            "-mi",
            CALLER,
            "-m",
            &m,
            "-l",
            &l,
            "-r",
            &r,
            "-d",
            &d,
            "-s",
            "echo",
            "-nostdin",
            "-timeout",
            "120",
            "-timeout_error",
            "-trace_err",
        ];
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        self.spawn_sipp(&self.caller, &args)
    }

    /// relayctl against relayd number `i`.
    fn relayctl_of(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let r = &self.relays[i];
        let out = self
            .core
            .command(RELAYCTL)
            .unwrap()
            .arg("--pin-dir")
            .arg(&r.pins.0)
            .arg("--cli")
            .arg(&r.cli)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "relayctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn relayctl(&self, args: &[&str]) -> serde_json::Value {
        self.relayctl_of(0, args)
    }

    /// Restarts relayd number `i` (see [`Relayd::restart`]).
    fn restart_relayd(&mut self, i: usize) {
        let relayd = self.relays.remove(i).restart(&self.core);
        self.relays.insert(i, relayd);
    }

    /// Waits until relayd 0 has `n` calls, each with its RTP streams in the
    /// kernel (both parties sending); their RTP relay addresses.
    fn wait_for_calls_in_kernel(&self, n: usize) -> BTreeMap<String, Vec<std::net::SocketAddr>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.relayctl(&["--json", "calls"]);
            let in_kernel = calls
                .as_array()
                .unwrap()
                .iter()
                .flat_map(rtp_streams)
                .all(|s| s["kernelized"] == true);
            let addresses = rtp_addresses(&calls);
            if addresses.len() == n && addresses.values().all(|a| a.len() == 2) && in_kernel {
                return addresses;
            }
            assert!(
                Instant::now() < deadline,
                "{n} calls with media in the kernel never came: {calls}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After the calls: none left, no media socket bound, both daemons alive.
    fn assert_clean(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let calls: Vec<serde_json::Value> = (0..self.relays.len())
                .map(|i| self.relayctl_of(i, &["--json", "calls"]))
                .collect();
            let ports = udp_ports(&self.core)
                .into_iter()
                .filter(|p| MEDIA_PORTS.contains(p))
                .count();
            if calls.iter().all(|c| *c == serde_json::json!([])) && ports == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "calls or ports left after BYE: {calls:?} / {ports} media sockets"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            self.relayctl(&["--json", "streams"])
                .as_array()
                .unwrap()
                .is_empty(),
            "kernel entries left"
        );
        for r in &mut self.relays {
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            assert!(
                r.child.0.try_wait().unwrap().is_none(),
                "relayd died:\n{log}"
            );
            assert!(
                log.contains("NG ping"),
                "Kamailio's pings were not answered:\n{log}"
            );
        }
        assert!(
            self.kamailio.0.try_wait().unwrap().is_none(),
            "kamailio died"
        );
        let klog = self.log("kamailio.log");
        assert!(
            !klog.contains("disabled") || !klog.contains("rtpengine"),
            "Kamailio disabled the relay:\n{klog}"
        );
    }
}

/// The two SIP captures.
struct SipCaptures(ChildGuard, ChildGuard);

impl SipCaptures {
    fn terminate(self) {
        let SipCaptures(a, b) = self;
        let _ = a.terminate();
        let _ = b.terminate();
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for r in &self.relays {
                eprintln!(
                    "--- {} ---\n{}",
                    r.log.display(),
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                );
            }
            eprintln!("--- kamailio.log ---\n{}", self.log("kamailio.log"));
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Waits for a sipp started by [`Site::spawn_sipp`] to finish (bounded by
/// `limit`) and collects its output.
fn wait_sipp(mut sipp: ChildGuard, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = sipp.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sipp did not finish in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut pipe) = sipp.0.stdout.take() {
        pipe.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut pipe) = sipp.0.stderr.take() {
        pipe.read_to_end(&mut stderr).unwrap();
    }
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// Local UDP ports bound in `ns`.
fn udp_ports(ns: &Netns) -> Vec<u16> {
    ns.udp_ports().unwrap()
}

/// The RTP streams of a call (one entry of `relayctl --json calls`).
fn rtp_streams(call: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    call["tags"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["medias"].as_array().unwrap())
        .flat_map(|m| m["streams"].as_array().unwrap())
        .filter(|s| s["rtcp"] == false)
}

/// The relay addresses of each call's RTP streams (sorted), by Call-ID.
fn rtp_addresses(calls: &serde_json::Value) -> BTreeMap<String, Vec<std::net::SocketAddr>> {
    calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut addresses: Vec<std::net::SocketAddr> = rtp_streams(c)
                .map(|s| s["local"].as_str().unwrap().parse().unwrap())
                .collect();
            addresses.sort();
            (c["call_id"].as_str().unwrap().to_owned(), addresses)
        })
        .collect()
}

/// The packets of a capture matching a tcpdump filter, one line each as
/// `tcpdump -n -tt` prints them (seconds since the epoch first).
fn packets(file: &Path, filter: &str) -> Vec<String> {
    let out = Command::new("tcpdump")
        .arg("-r")
        .arg(file)
        .args(["-n", "-tt", filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Packets in a capture matching a tcpdump filter.
fn count(file: &Path, filter: &str) -> u64 {
    packets(file, filter).len() as u64
}

/// Packets of a capture matching a tcpdump filter captured at or after
/// `since`, by source port.
fn by_source_port_since(file: &Path, filter: &str, since: SystemTime) -> HashMap<u16, u64> {
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut ports = HashMap::new();
    for line in packets(file, filter) {
        // "1712345678.123456 IP 10.30.2.1.30002 > 10.30.2.2.6000: UDP, length 172"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let time: f64 = fields[0].parse().unwrap();
        let port: u16 = fields[2].rsplit_once('.').unwrap().1.parse().unwrap();
        if time >= since {
            *ports.entry(port).or_insert(0) += 1;
        }
    }
    ports
}

/// Media checks for `calls` completed calls that each played the capture.
fn assert_media(site: &Site, at_callee: &Path, at_caller: &Path, calls: u64) {
    let sent = calls * PCAP_PACKETS;
    let to_callee = count(
        at_callee,
        &format!("src host {CALLEE_SIDE} and dst host {CALLEE} and dst port 6000"),
    );
    let direct_to_callee = count(at_callee, &format!("src host {CALLER}"));
    let echoed = count(
        at_callee,
        &format!("src host {CALLEE} and dst host {CALLEE_SIDE}"),
    );
    let to_caller = count(
        at_caller,
        &format!("src host {CALLER_SIDE} and dst host {CALLER}"),
    );
    let direct_to_caller = count(at_caller, &format!("src host {CALLEE}"));
    eprintln!("media: sent {sent}, callee got {to_callee} from the relay, echoed {echoed}, caller got {to_caller}");
    assert!(
        to_callee * 100 >= sent * 95,
        "callee got {to_callee} of {sent} RTP packets from the relay"
    );
    assert!(
        to_caller * 100 >= echoed * 95,
        "caller got {to_caller} of {echoed} echoed packets from the relay"
    );
    assert_eq!(
        (direct_to_callee, direct_to_caller),
        (0, 0),
        "media bypassed the relay"
    );
    let counters = site.relayctl(&["--json", "counters"]);
    let kernel = counters["forwarded_redirect"]["packets"].as_u64().unwrap();
    assert!(
        kernel * 2 >= to_callee,
        "most media went through XDP: {kernel} kernel packets of {to_callee}"
    );
}

fn run_calls(tag: &str, calls: u32, limit: u32, rate: u32, duration_ms: u32) {
    let mut site = Site::new(tag);
    let _uas = site.callee_uas("callee.xml");
    let (cap_e, at_callee) = site.capture(&site.callee, "e0", "callee.pcap");
    let (cap_c, at_caller) = site.capture(&site.caller, "c0", "caller.pcap");
    let (cap_sip, sip) = site.capture_sip();
    let out = site.place_calls("caller.xml", calls, limit, rate, duration_ms);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipp caller failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(cap_e.terminate());
    drop(cap_c.terminate());
    cap_sip.terminate();
    assert_media(&site, &at_callee, &at_caller, u64::from(calls));
    assert_sdp_points_at_relay(&sip.0, &sip.1);
    site.assert_clean();
}

/// The SDP each endpoint received names the relay, never the other party.
fn assert_sdp_points_at_relay(at_callee: &Path, at_caller: &Path) {
    let callee_saw = sip_text(at_callee);
    assert!(
        callee_saw.contains(&format!("c=IN IP4 {CALLEE_SIDE}")),
        "INVITE SDP at the callee:\n{callee_saw}"
    );
    assert!(
        !callee_saw.contains(&format!("c=IN IP4 {CALLER}")),
        "caller address leaked to the callee"
    );
    let caller_saw = sip_text(at_caller);
    assert!(
        caller_saw.contains(&format!("c=IN IP4 {CALLER_SIDE}")),
        "200 OK SDP at the caller:\n{caller_saw}"
    );
    assert!(
        !caller_saw.contains(&format!("c=IN IP4 {CALLEE}")),
        "callee address leaked to the caller"
    );
}

/// A SIP capture as text.
fn sip_text(file: &Path) -> String {
    let out = Command::new("tcpdump")
        .arg("-r")
        .arg(file)
        .args(["-n", "-A"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The relay ports in the SDP bodies of a SIP capture, in order.
fn sdp_ports(file: &Path) -> Vec<u16> {
    sip_text(file)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("m=audio "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn one_call() {
    require_root!();
    let _serial = serial();
    run_calls("k1", 1, 1, 1, 8000);
}

#[test]
fn ten_concurrent_calls() {
    require_root!();
    let _serial = serial();
    run_calls("k10", 10, 10, 10, 8000);
}

#[test]
fn hundred_calls_at_a_steady_rate() {
    require_root!();
    let _serial = serial();
    run_calls("k100", 100, 100, 10, 8000);
}

#[test]
fn rejected_call_is_deleted() {
    require_root!();
    let _serial = serial();
    let mut site = Site::new("krj");
    let _uas = site.callee_uas("callee_reject.xml");
    let out = site.place_calls("caller.xml", 1, 1, 1, 1000);
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    site.assert_clean();
}

#[test]
fn reinvite_keeps_the_relay_ports() {
    require_root!();
    let _serial = serial();
    let mut site = Site::new("kri");
    let _uas = site.callee_uas("callee.xml");
    let (cap_e, at_callee) = site.capture(&site.callee, "e0", "callee.pcap");
    let (cap_c, at_caller) = site.capture(&site.caller, "c0", "caller.pcap");
    let (cap_sip, sip) = site.capture_sip();
    let out = site.place_calls("caller_reinvite.xml", 1, 1, 1, 8000);
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(cap_e.terminate());
    drop(cap_c.terminate());
    cap_sip.terminate();
    // INVITE and re-INVITE as the callee saw them, and both 200 OKs as the
    // caller saw them: the relay ports must not change.
    let (to_callee, to_caller) = (sdp_ports(&sip.0), sdp_ports(&sip.1));
    let relay_b: Vec<u16> = to_callee
        .iter()
        .copied()
        .filter(|p| MEDIA_PORTS.contains(p))
        .collect();
    let relay_a: Vec<u16> = to_caller
        .iter()
        .copied()
        .filter(|p| MEDIA_PORTS.contains(p))
        .collect();
    assert!(
        relay_b.len() >= 2 && relay_b.windows(2).all(|w| w[0] == w[1]),
        "callee-side ports: {to_callee:?}"
    );
    assert!(
        relay_a.len() >= 2 && relay_a.windows(2).all(|w| w[0] == w[1]),
        "caller-side ports: {to_caller:?}"
    );
    // The capture played twice.
    assert_media(&site, &at_callee, &at_caller, 2);
    site.assert_clean();
}

/// Two relays in one Kamailio set, the first (weighted to get most calls)
/// capped at two sessions: it answers `load limit` and Kamailio places the
/// other calls on the second relay.
#[test]
fn load_limit_moves_calls_to_the_other_relay() {
    require_root!();
    let _serial = serial();
    let first: &[&str] = &[
        "--port-min",
        "30000",
        "--port-max",
        "30499",
        "--max-sessions",
        "2",
    ];
    // Only one XDP program per interface: the second relay forwards in userspace.
    let second: &[&str] = &[
        "--port-min",
        "30500",
        "--port-max",
        "30999",
        "--datapath",
        "userspace",
    ];
    let mut site = Site::with_relays(
        "kll",
        &[first, second],
        "udp:127.0.0.1:2223=10 udp:127.0.0.1:2224=1",
    );
    let _uas = site.callee_uas("callee.xml");
    let calls = 8;
    let placing = {
        let site = &site;
        std::thread::scope(|s| {
            let handle = s.spawn(|| site.place_calls("caller.xml", calls, calls, calls, 6000));
            std::thread::sleep(Duration::from_secs(3));
            let on_first = site
                .relayctl_of(0, &["--json", "calls"])
                .as_array()
                .unwrap()
                .len();
            let on_second = site
                .relayctl_of(1, &["--json", "calls"])
                .as_array()
                .unwrap()
                .len();
            (handle.join().unwrap(), on_first, on_second)
        })
    };
    let (out, on_first, on_second) = placing;
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        (on_first, on_first + on_second),
        (2, calls as usize),
        "calls per relay mid-call"
    );
    let first_log = std::fs::read_to_string(&site.relays[0].log).unwrap();
    assert!(
        first_log.contains("session limit reached"),
        "the first relay never refused a call"
    );
    site.assert_clean();
}

/// Twenty calls through Kamailio, with G.711 both ways, while relayd is
/// restarted (SIGTERM, then the same command line): it restores every call
/// with its ports, every call's media goes on both ways through them, and
/// each call's BYE deletes it on the new relayd.
#[test]
fn calls_survive_a_relayd_restart() {
    require_root!();
    let _serial = serial();
    const CALLS: u32 = 20;
    let mut site = Site::new("krs");
    let _uas = site.callee_uas("callee.xml");
    let (cap_e, at_callee) = site.capture(&site.callee, "e0", "callee.pcap");
    let (cap_c, at_caller) = site.capture(&site.caller, "c0", "caller.pcap");
    // All at once, each playing the capture's 7 s and hanging up after 9 s.
    let sipp = site.start_calls("caller.xml", CALLS, CALLS, CALLS, 9000);
    let before = site.wait_for_calls_in_kernel(CALLS as usize);
    let restart = Instant::now();
    site.restart_relayd(0);
    let up = SystemTime::now();
    eprintln!("relayd restarted in {:?}", restart.elapsed());

    let calls = site.relayctl(&["--json", "calls"]);
    assert_eq!(
        rtp_addresses(&calls),
        before,
        "the calls and their relay ports after the restart"
    );
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["restored"] == true),
        "calls not marked restored: {calls}"
    );
    let out = wait_sipp(sipp, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "sipp caller failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(cap_e.terminate());
    drop(cap_c.terminate());
    assert_media(&site, &at_callee, &at_caller, u64::from(CALLS));

    // Each call's media, both ways, through its own relay ports after the
    // restart: at least a second's worth (the capture sends 33 a second).
    let to_callee = by_source_port_since(
        &at_callee,
        &format!("src host {CALLEE_SIDE} and dst host {CALLEE}"),
        up,
    );
    let to_caller = by_source_port_since(
        &at_caller,
        &format!("src host {CALLER_SIDE} and dst host {CALLER}"),
        up,
    );
    let mut least = u64::MAX;
    for (call, addresses) in &before {
        for address in addresses {
            let got = if address.ip().to_string() == CALLEE_SIDE {
                &to_callee
            } else {
                &to_caller
            };
            let n = got.get(&address.port()).copied().unwrap_or(0);
            assert!(
                n >= 33,
                "{call}: {n} packets from {address} after the restart"
            );
            least = least.min(n);
        }
    }
    eprintln!("after the restart: at least {least} packets per call and direction");

    // The BYEs went to the new relayd, and each deleted its call.
    let totals = site.relayctl(&["--json", "totals"]);
    let delete = &totals["ng"]["delete"];
    assert_eq!(
        (delete["requests"].as_u64(), delete["errors"].as_u64()),
        (Some(u64::from(CALLS)), Some(0)),
        "deletes on the new relayd: {}",
        totals["ng"]
    );
    site.assert_clean();
}

/// The WebRTC gateway as operators configure it: Kamailio
/// (tests/e2e/kamailio_webrtc.cfg, the usual rtpengine-module flags) bridges
/// a WebRTC caller (aiortc: ICE, DTLS-SRTP, rtcp-mux, over a small SIP UAC)
/// to a plain SIP phone (sipp, echoing RTP). Each side gets the SDP it
/// speaks, and the caller's tone comes back to it decoded after crossing
/// the relay twice in each form (SRTP -> RTP -> echo -> RTP -> SRTP).
#[test]
fn a_webrtc_caller_reaches_a_sip_phone_through_kamailio() {
    require_root!();
    let _serial = serial();
    if let Err(why) = relay_tests::python::ensure_module("aiortc", "aiortc") {
        eprintln!("SKIPPED: aiortc unavailable: {why}");
        return;
    }
    let mut site = Site::with_config(
        "kwr",
        &[&["--port-min", "30000", "--port-max", "30999"]],
        "udp:127.0.0.1:2223",
        "kamailio_webrtc.cfg",
    );
    let _uas = site.callee_uas("callee.xml");
    let (cap_sip, sip) = site.capture_sip();
    let caller = ChildGuard(
        site.caller
            .command("python3")
            .unwrap()
            .arg(e2e_dir().join("webrtc_caller.py"))
            .args([CALLER, CALLER_SIDE, "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Mid-call, relayd shows the browser's stream terminated in userspace.
    std::thread::sleep(Duration::from_secs(4));
    let calls = site.relayctl(&["--json", "calls"]);
    let out = wait_sipp(caller, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("caller output ({e}): {stderr}"));
    std::thread::sleep(Duration::from_millis(300));
    cap_sip.terminate();

    // relayd terminated SRTP for the browser only, with the DTLS keys.
    let tags = calls[0]["tags"].as_array().cloned().unwrap_or_default();
    let rtp_of = |interface: &str| {
        let tag = tags
            .iter()
            .find(|t| t["interface"] == interface)
            .unwrap_or_else(|| panic!("no {interface} party: {calls:#}"));
        let media = &tag["medias"][0];
        let stream = media["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["rtcp"] == false)
            .unwrap()
            .clone();
        (media["protocol"].clone(), stream)
    };
    let (protocol, browser) = rtp_of("caller");
    assert_eq!(protocol, "UDP/TLS/RTP/SAVPF", "{calls:#}");
    assert_eq!(browser["dtls"]["state"], "connected", "{browser:#}");
    assert_eq!(browser["dtls"]["role"], "server", "{browser:#}");
    assert_eq!(
        browser["srtp"]["suite"], browser["dtls"]["profile"],
        "{browser:#}"
    );
    assert_eq!(browser["srtp"]["auth_failures"], 0, "{browser:#}");
    assert_eq!(browser["rtp_quality"]["payload_type"], 8, "{browser:#}");
    let (protocol, phone) = rtp_of("callee");
    assert_eq!(protocol, "RTP/AVP", "{calls:#}");
    assert!(
        phone["srtp"].is_null() && phone["dtls"].is_null(),
        "{phone:#}"
    );
    assert_eq!(phone["rtp_quality"]["payload_type"], 8, "{phone:#}");

    // The browser got WebRTC: ICE (relay candidates), DTLS-SRTP with the
    // relay passive, RTCP muxed.
    let answer = result["answer"].as_str().unwrap_or_default();
    assert_eq!(result["invite"], 200, "{result:#}\n{stderr}");
    for wanted in [
        " UDP/TLS/RTP/SAVPF ",
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=candidate:",
        &format!(" {CALLER_SIDE} "),
        "a=fingerprint:sha-256 ",
        "a=setup:passive",
        "a=rtcp-mux",
    ] {
        assert!(
            answer.contains(wanted),
            "{wanted:?} not in the answer:\n{answer}"
        );
    }
    assert!(!answer.contains("a=crypto"), "{answer}");
    // The phone got plain SIP media: RTP/AVP, no ICE, no DTLS, RTCP apart.
    let at_callee = sip_text(&sip.0);
    // tcpdump names the request in its summary line, then dumps the packet.
    let invite = at_callee
        .split("INVITE sip:")
        .find(|text| text.contains("m=audio"))
        .unwrap_or_else(|| panic!("no INVITE SDP at the callee:\n{at_callee}"));
    let invite = invite.split("SIP/2.0 200").next().unwrap_or(invite);
    assert!(invite.contains(" RTP/AVP "), "{invite}");
    for unwanted in [
        "SAVP",
        "a=ice-",
        "a=candidate",
        "a=fingerprint",
        "a=setup",
        "a=rtcp-mux",
        "a=crypto",
    ] {
        assert!(
            !invite.contains(unwanted),
            "{unwanted:?} reached the phone:\n{invite}"
        );
    }
    assert!(
        invite.contains(&format!("c=IN IP4 {CALLEE_SIDE}")),
        "{invite}"
    );

    // Media: DTLS up, the tone heard back after the echo.
    assert_eq!(result["dtls"], "connected", "{result:#}\n{stderr}");
    let frames = result["frames"].as_u64().unwrap_or(0);
    let level = result["level"].as_f64().unwrap_or(0.0);
    assert!(frames >= 100, "{frames} frames came back: {result:#}");
    assert!(
        level > 0.05,
        "the echoed tone not heard (level {level}): {result:#}"
    );
    assert_eq!(result["bye"], 200, "{result:#}");
    eprintln!("WebRTC caller through Kamailio: {frames} frames back, level {level:.3}");
    site.assert_clean();
}
