//! `cargo xtask`: the project's two front doors and their set-up.
//!
//! - `cargo xtask demo`: build, then run the forwarding demo (needs root).
//! - `cargo xtask test`: fmt, clippy, and every test, privileged ones
//!   included (needs root to run those; without root they skip and say so);
//!   as root also the conformance run against its baseline.
//! - `cargo xtask bench [--quick]`: criterion micro-benchmarks, NG cycles
//!   and netns forwarding throughput and sustained rate against rtpengine
//!   (needs root).
//! - `cargo xtask conformance [--strict]`: the same NG requests to rtpengine
//!   and relayd, replies compared (needs root); fails when a relay crashes
//!   or goes silent, or a case of tests/conformance/identical.txt differs
//!   (any difference with `--strict`).
//! - `cargo xtask deps`: install the Debian packages the build and tests use.
//! - `cargo xtask build-ebpf`: compile the XDP object alone (clang check).
//!
//! This crate depends on nothing that needs clang, so it can run on a fresh
//! machine and install clang first.

use std::process::Command;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "xrelay developer tasks")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install missing Debian packages (as root), then build and run the demo.
    Demo,
    /// Install missing Debian packages (as root), then fmt, clippy and all tests.
    Test,
    /// Benchmarks: criterion micro-benchmarks, NG cycles and forwarding
    /// throughput against rtpengine (writes docs/throughput.svg).
    Bench {
        /// Skip criterion; NG and throughput with fewer cycles, calls and
        /// seconds (a couple of minutes instead of about ten).
        #[arg(long)]
        quick: bool,
    },
    /// Differential NG conformance against rtpengine (tests/conformance):
    /// table by feature and diffs on stdout, JSON in target/conformance.json.
    Conformance {
        /// Fail on any difference, not only on crashes and silences.
        #[arg(long)]
        strict: bool,
        /// Only cases whose name contains this, or of this feature.
        #[arg(long)]
        filter: Option<String>,
        /// Rewrite the generated results in docs/ng-compatibility.md.
        #[arg(long)]
        docs: bool,
    },
    /// Install missing Debian packages (needs root).
    Deps,
    /// Compile the XDP program (relay-ebpf) only.
    BuildEbpf,
}

/// Debian packages and a file or command each one provides.
const PACKAGES: &[(&str, Probe)] = &[
    ("clang-19", Probe::Command("clang-19")),
    ("libbpf-dev", Probe::File("/usr/include/bpf/bpf_helpers.h")),
    ("linux-libc-dev", Probe::File("/usr/include/linux/bpf.h")),
    ("iproute2", Probe::Command("ip")),
    ("ethtool", Probe::Command("ethtool")),
    ("util-linux", Probe::Command("setpriv")),
    // rtpengine's own NG client, used as an outside client in the tests.
    ("rtpengine-utils", Probe::Command("rtpengine-ng-client")),
    // The end-to-end tests: a real SIP proxy, SIP endpoints, captures.
    ("kamailio", Probe::Command("kamailio")),
    ("sip-tester", Probe::Command("sipp")),
    ("tcpdump", Probe::Command("tcpdump")),
    // relayctl top is tested on a real terminal.
    ("tmux", Probe::Command("tmux")),
    // Replication (--redis) is tested against a real Redis.
    ("redis-server", Probe::Command("redis-server")),
    // The takeover test moves an address and announces it (gratuitous ARP).
    ("iputils-arping", Probe::Command("arping")),
];

/// Extra packages only the benchmarks need: rtpengine, measured beside relayd.
const BENCH_PACKAGES: &[(&str, Probe)] = &[("rtpengine-daemon", Probe::Command("rtpengine"))];

#[derive(Debug, Clone, Copy)]
enum Probe {
    Command(&'static str),
    File(&'static str),
}

impl Probe {
    fn present(self) -> bool {
        match self {
            Probe::File(path) => std::path::Path::new(path).exists(),
            Probe::Command(cmd) => Command::new("sh")
                .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false),
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Installs what is missing of `packages` when root; otherwise says what is missing.
fn deps(packages: &[(&str, Probe)], required: bool) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, probe)| !probe.present())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        let msg = format!(
            "missing Debian packages: {} (apt-get install them as root)",
            missing.join(" ")
        );
        if required {
            bail!(msg);
        }
        eprintln!("warning: {msg}");
        return Ok(());
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test() -> Result<()> {
    deps(PACKAGES, false)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    if !is_root() {
        eprintln!("note: not root: BPF/XDP/netns tests will print SKIPPED and not run");
    }
    run(cargo().args(["test", "--workspace"]))?;
    if is_root() {
        // SDP and replies that matched rtpengine's must keep matching.
        conformance(Conformance {
            strict: false,
            filter: None,
            baseline: true,
            docs: false,
        })?;
    }
    Ok(())
}

fn demo() -> Result<()> {
    deps(PACKAGES, true)?;
    if !is_root() {
        bail!("the demo creates network namespaces and loads XDP programs: run it as root");
    }
    let target = build_release_bins(&["relay-userspace", "relay-tests"])?;
    run(Command::new(target.join("release/xrelay-demo"))
        .arg("--relayd")
        .arg(target.join("release/relayd"))
        .arg("--relayctl")
        .arg(target.join("release/relayctl")))
}

fn bench(quick: bool) -> Result<()> {
    deps(PACKAGES, true)?;
    deps(BENCH_PACKAGES, true)?;
    if !is_root() {
        bail!("the benchmarks load XDP programs and run daemons in namespaces: run them as root");
    }
    if !quick {
        run(cargo().args(["bench", "-p", "relay-benches"]))?;
    }
    let target = build_release_bins(&["relay-userspace", "relay-benches"])?;
    let driver = target.join("release/xrelay-bench");
    let relayd = target.join("release/relayd");
    // With call state (relayd's default) and without, to show its cost.
    for state in [&[][..], &["--no-state"][..]] {
        run(Command::new(&driver)
            .args(["ng", "--relayd"])
            .arg(&relayd)
            .args(["--cycles", if quick { "500" } else { "2000" }])
            .args(["--rounds", if quick { "3" } else { "7" }])
            .args(state))?;
    }
    let root = workspace_root()?;
    let mut throughput = Command::new(&driver);
    throughput.args(["throughput", "--relayd"]).arg(&relayd);
    if quick {
        throughput.args(["--calls", "1,1000", "--seconds", "1"]);
    } else {
        throughput
            .arg("--plot")
            .arg(root.join("docs/throughput.svg"));
    }
    run(&mut throughput)?;
    // The operator's criterion beside the flood figures: loss <= 0.1 %.
    let mut sustained = Command::new(&driver);
    sustained.args(["sustained", "--relayd"]).arg(&relayd);
    if quick {
        sustained.args(["--calls", "1000", "--window", "2", "--max-points", "5"]);
    }
    run(&mut sustained)
}

struct Conformance {
    strict: bool,
    filter: Option<String>,
    /// Fail when a case listed in tests/conformance/identical.txt differs.
    baseline: bool,
    /// Rewrite the generated block of docs/ng-compatibility.md.
    docs: bool,
}

fn conformance(
    Conformance {
        strict,
        filter,
        baseline,
        docs,
    }: Conformance,
) -> Result<()> {
    deps(PACKAGES, true)?;
    // rtpengine-daemon: the oracle.
    deps(BENCH_PACKAGES, true)?;
    if !is_root() {
        bail!("the conformance run puts both relays in a network namespace: run it as root");
    }
    run(cargo().args([
        "build",
        "-p",
        "relay-userspace",
        "-p",
        "relay-conformance",
        "--bin",
        "relayd",
        "--bin",
        "xrelay-conformance",
    ]))?;
    let target = target_dir()?;
    let mut cmd = Command::new(target.join("debug/xrelay-conformance"));
    cmd.arg("--relayd")
        .arg(target.join("debug/relayd"))
        .arg("--json")
        .arg(target.join("conformance.json"))
        .arg("--log-dir")
        .arg(target.join("conformance"));
    if strict {
        cmd.arg("--strict");
    }
    if let Some(filter) = filter {
        cmd.args(["--filter", &filter]);
    }
    if docs {
        cmd.arg("--docs")
            .arg(workspace_root()?.join("docs/ng-compatibility.md"));
    }
    if baseline {
        cmd.arg("--baseline")
            .arg(workspace_root()?.join("tests/conformance/identical.txt"));
    }
    run(&mut cmd)
}

/// Builds the binaries of `packages` in release mode; returns the target dir.
fn build_release_bins(packages: &[&str]) -> Result<std::path::PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--bins"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    run(&mut cmd)?;
    target_dir()
}

fn target_dir() -> Result<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(dir.into());
    }
    Ok(workspace_root()?.join("target"))
}

fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest.parent().context("workspace root")?.to_path_buf())
}

fn main() -> Result<()> {
    match Args::parse().task {
        Task::Demo => demo(),
        Task::Test => test(),
        Task::Bench { quick } => bench(quick),
        Task::Conformance {
            strict,
            filter,
            docs,
        } => conformance(Conformance {
            strict,
            filter,
            baseline: true,
            docs,
        }),
        Task::Deps => deps(PACKAGES, true).and_then(|()| deps(BENCH_PACKAGES, true)),
        Task::BuildEbpf => {
            deps(PACKAGES, false)?;
            run(cargo().args(["build", "-p", "relay-ebpf"]))
        }
    }
}
