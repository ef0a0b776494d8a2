//! The Debian package (`cargo xtask deb`), installed on this machine with
//! dpkg: its files, its unit checked by `systemd-analyze verify`, relayd
//! started as the unit starts it (its user, capabilities, open-files limit
//! and configuration, through setpriv since CI runs no systemd) in the
//! test topology, a call with media through XDP, a stop and restart that
//! keep the call, and `dpkg --purge` leaving nothing behind: no pins, XDP
//! program, reserved ports, state, user or process.
//!
//! Ignored by a plain `cargo test`: it needs the built package. `cargo
//! xtask deb --test` (and `cargo xtask test`, as root) builds it and runs
//! this with XRELAY_DEB set to its path.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::sdp_endpoint,
    ready::spawn_ready,
    require_root,
    topology::{bind_udp, exchange, HOST_A, HOST_B},
};

mod common;

use common::{answer, command, offer, rtp_streams, wait_kernelized, Bed};

const PACKAGE: &str = "xrelay";
const RELAYD: &str = "/usr/bin/relayd";
const RELAYCTL: &str = "/usr/bin/relayctl";
/// What the default configuration pins and stores (pin-dir, state-dir).
const PIN_ROOT: &str = "/sys/fs/bpf/xrelay";
const STATE_ROOT: &str = "/var/lib/xrelay";
/// The default media range, which relayd reserves (the ephemeral range
/// 32768-60999 overlaps it).
const MEDIA_RANGE: &str = "30000-39999";

#[test]
#[ignore = "needs root and the built package: cargo xtask deb --test"]
fn the_package_installs_relays_through_xdp_and_purges_clean() {
    require_root!();
    let deb = deb_path();
    let installed = Installed::new(&deb);
    let files = installed.files();
    check_contents(&files);
    let unit_path = files
        .iter()
        .find(|f| f.ends_with("/xrelay.service"))
        .expect("the package has xrelay.service");
    verify_unit(unit_path);
    let unit = Unit::read(unit_path);
    let uid = check_user_and_config();

    let bed = Bed::new("pkg");
    let relayd = start_as_unit(&bed, &unit);
    let call = "call-pkg";
    let relay_b = relay_endpoint(&bed.ng.ok(&offer(call)).unwrap());
    let relay_a = relay_endpoint(&bed.ng.ok(&answer(call)).unwrap());
    let a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    // The first packets teach relayd both ends; then the streams go to XDP.
    assert_eq!(exchange(&a, &relay_a.to_string(), &b, 3).unwrap().len(), 3);
    assert_eq!(exchange(&b, &relay_b.to_string(), &a, 3).unwrap().len(), 3);
    wait_kernelized(&bed.ng, call);
    assert_eq!(
        exchange(&a, &relay_a.to_string(), &b, 10).unwrap().len(),
        10
    );
    assert_eq!(
        exchange(&b, &relay_b.to_string(), &a, 10).unwrap().len(),
        10
    );
    let q = bed.ng.ok(&command("query", call)).unwrap();
    let in_kernel: i64 = rtp_streams(&q).iter().map(|(_, _, _, k)| k).sum();
    assert!(in_kernel >= 20, "forwarded in XDP: {in_kernel}: {q:?}");
    let interfaces = relayctl(&["--json", "interfaces"]);
    let interfaces: serde_json::Value = serde_json::from_slice(&interfaces.stdout).unwrap();
    assert!(
        interfaces
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["xdp_mode"] == "native"),
        "{interfaces}"
    );

    // Removal's cleanup does not pull the program from under a running relayd.
    let cleanup = bed
        .t
        .r
        .command(RELAYD)
        .unwrap()
        .args(["--config", "/etc/xrelay/relayd.toml", "cleanup"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cleanup.stderr);
    assert!(
        !cleanup.status.success() && stderr.contains("a relayd is running"),
        "{stderr}"
    );
    assert!(Path::new(PIN_ROOT).join("default").exists());

    // What `systemctl stop` / `restart` sends: the call outlives relayd,
    // media keeps flowing through XDP, and the next relayd restores it.
    let status = relayd.terminate().unwrap();
    assert!(status.success(), "relayd exit {status}");
    assert_eq!(exchange(&a, &relay_a.to_string(), &b, 5).unwrap().len(), 5);
    assert!(reserved_ports(&bed.t.r).contains(MEDIA_RANGE));
    let relayd = start_as_unit(&bed, &unit);
    let q = bed.ng.ok(&command("query", call)).unwrap();
    assert_eq!(rtp_streams(&q).len(), 2, "restored: {q:?}");
    let status = relayd.terminate().unwrap();
    assert!(status.success(), "relayd exit {status}");

    // Removal runs in relayd's network namespace, as on a host: prerm's
    // `relayd cleanup` releases the reserved range of that namespace.
    let purge = installed.purge(Some(&bed.t.r));
    eprintln!("dpkg --purge {PACKAGE}:\n{purge}");
    for done in [
        "emptied the call state in /var/lib/xrelay/default",
        "detached the XDP program and removed the pins in /sys/fs/bpf/xrelay/default",
        "removed 30000-39999 from net.ipv4.ip_local_reserved_ports",
    ] {
        assert!(purge.contains(done), "prerm's cleanup: {purge}");
    }
    assert_nothing_left(&bed, uid);
    assert_eq!(
        exchange(&a, &relay_a.to_string(), &b, 1).unwrap().len(),
        0,
        "nothing forwards any more"
    );
}

/// XRELAY_DEB, else the newest target/debian/xrelay_*.deb.
fn deb_path() -> PathBuf {
    if let Some(path) = std::env::var_os("XRELAY_DEB") {
        return path.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::read_dir(target.join("debian"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("xrelay_") && name.ends_with(".deb")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("no target/debian/xrelay_*.deb: run `cargo xtask deb` first")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn relayctl(args: &[&str]) -> Output {
    run(Command::new(RELAYCTL).args(args))
}

fn is_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", PACKAGE])
        .output()
        .is_ok_and(|o| o.stdout == b"installed")
}

/// The package installed by this test; purged on drop if the test did not
/// get that far.
struct Installed;

impl Installed {
    fn new(deb: &Path) -> Installed {
        assert!(
            !is_installed(),
            "{PACKAGE} is already installed on this machine; this test installs and purges \
             it: `dpkg --purge {PACKAGE}` first"
        );
        run(Command::new("dpkg").arg("-i").arg(deb));
        Installed
    }

    /// `dpkg -L`: what dpkg tracks.
    fn files(&self) -> Vec<String> {
        let out = run(Command::new("dpkg").args(["-L", PACKAGE]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `dpkg --purge`, in `netns` if given; its output.
    fn purge(&self, netns: Option<&Netns>) -> String {
        let mut cmd = match netns {
            Some(ns) => ns.command("dpkg").unwrap(),
            None => Command::new("dpkg"),
        };
        let out = run(cmd.args(["--purge", PACKAGE]));
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if is_installed() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).status();
        }
    }
}

/// Everything the issue lists: binaries, unit, configuration, man pages,
/// completions, the Grafana dashboard, docs.
fn check_contents(files: &[String]) {
    for wanted in [
        "/usr/bin/relayd",
        "/usr/bin/relayctl",
        "/etc/xrelay/relayd.toml",
        "/xrelay.service",
        "/man8/relayd.8.gz",
        "/man8/relayctl.8.gz",
        "/man8/relayctl-stop.8.gz",
        "/bash-completion/completions/relayd",
        "/bash-completion/completions/relayctl",
        "/zsh/vendor-completions/_relayctl",
        "/fish/vendor_completions.d/relayctl.fish",
        "/usr/share/xrelay/grafana-dashboard.json",
        "/usr/share/doc/xrelay/README.md",
        "/usr/share/doc/xrelay/operations.md",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(wanted)),
            "the package has no {wanted}: {files:#?}"
        );
    }
    // The XDP object is inside relayd: nothing to compile, no .o shipped.
    assert!(!files.iter().any(|f| f.ends_with(".o")), "{files:#?}");
    run(Command::new(RELAYD).arg("--version"));
    run(Command::new("man").args(["-w", "relayd"]));
}

fn verify_unit(path: &str) {
    let out = run(Command::new("systemd-analyze").args(["verify", path]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("xrelay.service"),
        "systemd-analyze verify {path}: {stderr}"
    );
}

/// The `xrelay` user exists, and only it (and root) reads the
/// configuration. Returns its uid.
fn check_user_and_config() -> u32 {
    let out = run(Command::new("getent").args(["passwd", "xrelay"]));
    let entry = String::from_utf8_lossy(&out.stdout);
    let uid: u32 = entry.split(':').nth(2).unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    use std::os::unix::fs::MetadataExt as _;
    let config = std::fs::metadata("/etc/xrelay/relayd.toml").unwrap();
    assert_eq!(config.mode() & 0o777, 0o640);
    let group = run(Command::new("getent").args(["group", "xrelay"]));
    let gid: u32 = String::from_utf8_lossy(&group.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config.gid(), gid);
    uid
}

/// The `[Service]` settings this test reproduces without systemd.
struct Unit {
    user: String,
    exec_start_pre: Vec<String>,
    exec_start: Vec<String>,
    /// setpriv's spelling: `bpf,perfmon,net_admin`.
    caps: String,
    bounding: String,
    nofile: String,
}

impl Unit {
    fn read(path: &str) -> Unit {
        let text = std::fs::read_to_string(path).unwrap();
        let value = |key: &str| -> String {
            text.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .next_back()
                .unwrap_or_else(|| panic!("{path}: no {key}="))
                .trim()
                .to_owned()
        };
        let caps = |key: &str| -> String {
            value(key)
                .split_whitespace()
                .map(|c| c.trim_start_matches("CAP_").to_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        };
        let words = |s: String| s.split_whitespace().map(str::to_owned).collect();
        assert_eq!(value("Type"), "notify");
        assert_eq!(value("NoNewPrivileges"), "yes");
        Unit {
            user: value("User"),
            // "+": run with full privileges (root).
            exec_start_pre: words(value("ExecStartPre").trim_start_matches('+').to_owned()),
            exec_start: words(value("ExecStart")),
            caps: caps("AmbientCapabilities"),
            bounding: caps("CapabilityBoundingSet"),
            nofile: value("LimitNOFILE"),
        }
    }
}

/// relayd as the unit runs it, in the relay's namespace: ExecStartPre as
/// root, then ExecStart under the unit's user, capabilities and open-files
/// limit, with the test's interfaces added on the command line (the
/// packaged configuration has none). Waits for its READY=1.
fn start_as_unit(bed: &Bed, unit: &Unit) -> ChildGuard {
    run(Command::new(&unit.exec_start_pre[0]).args(&unit.exec_start_pre[1..]));
    let mut cmd = bed.t.r.command("prlimit").unwrap();
    cmd.arg(format!("--nofile={0}:{0}", nofile(unit)))
        .arg("setpriv")
        .arg(format!("--reuid={}", unit.user))
        .arg(format!("--regid={}", unit.user))
        .arg("--init-groups")
        .arg("--no-new-privs")
        .arg(format!("--inh-caps=-all,+{}", unit.caps.replace(',', ",+")))
        .arg(format!(
            "--ambient-caps=-all,+{}",
            unit.caps.replace(',', ",+")
        ))
        .arg(format!(
            "--bounding-set=-all,+{}",
            unit.bounding.replace(',', ",+")
        ))
        .args(&unit.exec_start)
        .args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1"]);
    // The notify socket is the test's; relayd, as xrelay, must be allowed
    // to write to it (systemd's is world-writable too).
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let child = spawn_ready(&mut cmd);
    nix::sys::stat::umask(old);
    let child = child.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .trim()
            .to_owned()
    };
    // CAP_NET_ADMIN 12, CAP_PERFMON 38, CAP_BPF 39: nothing more.
    assert_eq!(line("CapEff:"), "000000c000001000", "{status}");
    assert!(!line("Uid:").starts_with("0\t"), "{status}");
    child
}

/// The unit's LimitNOFILE, or this machine's hard limit when that is lower
/// (raising it takes CAP_SYS_RESOURCE, which containers often lack; the
/// call needs a handful of sockets either way).
fn nofile(unit: &Unit) -> u64 {
    let wanted: u64 = unit.nofile.parse().unwrap();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|h| h.parse().ok())
        .unwrap_or(wanted);
    if hard < wanted {
        eprintln!(
            "note: LimitNOFILE={wanted} is above this machine's hard limit {hard}: using {hard}"
        );
    }
    wanted.min(hard)
}

fn relay_endpoint(reply: &Value) -> SocketAddr {
    let (addr, port) = sdp_endpoint(reply.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    format!("{addr}:{port}").parse().unwrap()
}

/// `net.ipv4.ip_local_reserved_ports` of `ns`.
fn reserved_ports(ns: &Netns) -> String {
    ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports"))
        .unwrap()
        .unwrap()
}

fn assert_nothing_left(bed: &Bed, uid: u32) {
    assert!(!is_installed());
    for path in [
        PIN_ROOT,
        STATE_ROOT,
        "/etc/xrelay",
        "/etc/systemd/system/multi-user.target.wants/xrelay.service",
    ] {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} is left after the purge"
        );
    }
    let reserved = reserved_ports(&bed.t.r);
    assert!(
        !reserved.contains(MEDIA_RANGE),
        "reserved ports left: {reserved}"
    );
    for iface in ["a1", "b1"] {
        let out = run(Command::new("ip").args(["-n", bed.t.r.name(), "link", "show", iface]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("xdp"), "XDP left on {iface}: {text}");
    }
    let user = Command::new("getent").args(["passwd", "xrelay"]).output();
    assert!(!user.unwrap().status.success(), "the xrelay user is left");
    let processes: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .is_some_and(|u| u == uid.to_string())
        })
        .collect();
    assert!(processes.is_empty(), "processes of xrelay: {processes:?}");
}
