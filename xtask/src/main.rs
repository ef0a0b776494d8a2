//! `cargo xtask`: the project's two front doors and their set-up.
//!
//! - `cargo xtask demo`: build, then run the forwarding demo (needs root).
//! - `cargo xtask test`: fmt, clippy, and every test, privileged ones
//!   included (needs root to run those; without root they skip and say so);
//!   as root also the conformance run against its baseline.
//! - `cargo xtask bench [--quick] [--only srtp]`: criterion
//!   micro-benchmarks, NG cycles and netns forwarding throughput, sustained
//!   rate and SRTP ↔ RTP bridging against rtpengine (needs root; `--only
//!   srtp` runs the bridging group alone).
//! - `cargo xtask conformance [--strict]`: the same NG requests to rtpengine
//!   and relayd, replies compared (needs root); fails when a relay crashes
//!   or goes silent, or a case of tests/conformance/identical.txt differs
//!   (any difference with `--strict`).
//! - `cargo xtask deps`: install the Debian packages the build and tests use.
//! - `cargo xtask build-ebpf`: compile the XDP object alone (clang check).
//! - `cargo xtask fuzz [--seconds N] [TARGET]`: run the fuzz targets of
//!   `fuzz/` with cargo-fuzz (nightly; installs cargo-fuzz if missing).
//! - `cargo xtask deb`: build the Debian package into target/debian/
//!   (installs cargo-deb if missing); `cargo xtask deb --test` also
//!   installs it here, runs a call through it and purges it (root).
//!
//! This crate depends on nothing that needs clang, so it can run on a fresh
//! machine and install clang first.

use std::process::Command;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

mod deb;
mod earlier;

#[derive(Debug, Parser)]
#[command(about = "xrelay developer tasks")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

/// A group of `cargo xtask bench` that can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchGroup {
    /// SRTP ↔ RTP bridging, relayd vs rtpengine.
    Srtp,
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
        /// Run one group only (after the build and package checks).
        #[arg(long, value_enum)]
        only: Option<BenchGroup>,
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
    /// Build the Debian package (cargo-deb) into target/debian/ and print
    /// its path.
    Deb {
        /// Then install it here, run a call through relayd as its unit
        /// would run it, and purge it (needs root).
        #[arg(long)]
        test: bool,
    },
    /// Install missing Debian packages (needs root).
    Deps,
    /// Compile the XDP program (relay-ebpf) only.
    BuildEbpf,
    /// Build the relayd of each earlier kernel layout (ABI v7, the first
    /// v8) under target/earlier/ for the upgrade test, and print the
    /// XRELAY_EARLIER_RELAYDS setting that test reads.
    EarlierRelayd,
    /// Run the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer; needs the
    /// nightly toolchain, installs cargo-fuzz if missing), one after the
    /// other; fails if one crashes or hangs (the input is in the message).
    Fuzz {
        /// Seconds per target (libFuzzer's -max_total_time).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Also stop a target after this many executions (-runs).
        #[arg(long)]
        runs: Option<u64>,
        /// cargo-fuzz's sanitizer: `address` (its default) or `none`
        /// (about four times the executions per second; the parsers are
        /// safe Rust, overflow checks and debug assertions stay on).
        #[arg(long, default_value = "address", value_parser = ["address", "none"])]
        sanitizer: String,
        /// Only this target (see fuzz/fuzz_targets/); default all.
        target: Option<String>,
    },
}

/// Debian packages and a file or command each one provides.
const PACKAGES: &[(&str, Probe)] = &[
    ("clang-19", Probe::Command("clang-19")),
    ("libbpf-dev", Probe::File("/usr/include/bpf/bpf_helpers.h")),
    ("linux-libc-dev", Probe::File("/usr/include/linux/bpf.h")),
    // SRTP (relay-media) links Cisco's libsrtp2, Debian's build.
    ("libsrtp2-dev", Probe::File("/usr/include/srtp2/srtp.h")),
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
    // The WebRTC gateway is tested against a real browser.
    ("chromium", Probe::Command("chromium")),
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

/// XRELAY_EARLIER_RELAYDS's value: the paths, colon-separated.
fn earlier_setting(bins: &[std::path::PathBuf]) -> String {
    let paths: Vec<String> = bins.iter().map(|b| b.display().to_string()).collect();
    paths.join(":")
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
    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    if is_root() {
        // The upgrade test takes over from relayds of earlier layouts.
        match earlier::build() {
            Ok(bins) => {
                tests.env("XRELAY_EARLIER_RELAYDS", earlier_setting(&bins));
            }
            Err(e) => eprintln!("note: the upgrade test will print SKIPPED: {e:#}"),
        }
    }
    run(&mut tests)?;
    fuzz_checks()?;
    if is_root() {
        // SDP and replies that matched rtpengine's must keep matching.
        conformance(Conformance {
            strict: false,
            filter: None,
            baseline: true,
            docs: false,
        })?;
        // The package's install, a call through it, and its removal.
        deb::test()?;
    }
    Ok(())
}

/// The fuzz crate (not a workspace member, so the steps above skip it):
/// fmt, clippy and its corpus replay test on stable, always; then a
/// few seconds of each fuzz target when the nightly toolchain is there.
fn fuzz_checks() -> Result<()> {
    let manifest = workspace_root()?.join("fuzz/Cargo.toml");
    run(cargo()
        .args(["fmt", "--manifest-path"])
        .arg(&manifest)
        .args(["--", "--check"]))?;
    // Without the libfuzzer feature: the library and the replay test.
    run(cargo()
        .args(["clippy", "--manifest-path"])
        .arg(&manifest)
        .args([
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    run(cargo()
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .arg("--no-default-features"))?;
    match nightly_missing() {
        None => fuzz(FuzzRun {
            seconds: 5,
            runs: None,
            sanitizer: "address".into(),
            target: None,
        }),
        Some(why) => {
            eprintln!("SKIPPED fuzz smoke (cargo xtask fuzz --seconds 5): {why}");
            Ok(())
        }
    }
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

fn bench(quick: bool, only: Option<BenchGroup>) -> Result<()> {
    deps(PACKAGES, true)?;
    deps(BENCH_PACKAGES, true)?;
    if !is_root() {
        bail!("the benchmarks load XDP programs and run daemons in namespaces: run them as root");
    }
    if only == Some(BenchGroup::Srtp) {
        let target = build_release_bins(&["relay-userspace", "relay-benches"])?;
        return srtp_bench(
            &target.join("release/xrelay-bench"),
            &target.join("release/relayd"),
            quick,
        );
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
    // Leaks: a million cycles (a hundred thousand with media through XDP).
    let mut soak = Command::new(&driver);
    soak.args(["soak", "--relayd"]).arg(&relayd);
    if quick {
        // Too short a warm-up for the RSS verdict; the leak checks stand.
        soak.args(["--cycles", "20000", "--media-cycles", "2000"])
            .args(["--warmup", "1000", "--warmup-secs", "2"]);
    }
    run(&mut soak)?;
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
    // With the latency and jitter each relay adds at 10/50/90 % of it.
    let mut sustained = Command::new(&driver);
    sustained.args(["sustained", "--relayd"]).arg(&relayd);
    if quick {
        sustained.args(["--calls", "1000", "--window", "2", "--max-points", "5"]);
    } else {
        sustained
            .arg("--latency-plot")
            .arg(root.join("docs/latency.svg"));
    }
    run(&mut sustained)?;
    srtp_bench(&driver, &relayd, quick)
}

/// SRTP ↔ RTP bridging, relayd against rtpengine (`cargo xtask bench`'s
/// last group; `cargo xtask bench --only srtp` runs it alone).
fn srtp_bench(driver: &std::path::Path, relayd: &std::path::Path, quick: bool) -> Result<()> {
    let mut srtp = Command::new(driver);
    srtp.args(["srtp", "--relayd"]).arg(relayd);
    if quick {
        srtp.args(["--calls", "1,10", "--seconds", "0.5"]).args([
            "--flood-frames",
            "200000",
            "--window",
            "0.5",
            "--max-points",
            "3",
        ]);
    }
    run(&mut srtp)
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

struct FuzzRun {
    seconds: u64,
    runs: Option<u64>,
    sanitizer: String,
    target: Option<String>,
}

/// What one target's run gave, from libFuzzer's output.
#[derive(Default)]
struct FuzzOutcome {
    target: String,
    executions: Option<u64>,
    /// Wall time (libFuzzer's, and cargo-fuzz's start-up).
    seconds: f64,
    /// libFuzzer's own average.
    exec_per_sec: Option<u64>,
    /// `cov: .. ft: .. corp: ..` of libFuzzer's last status line.
    coverage: String,
    /// None: ran to its time or run limit. Some: why it stopped early,
    /// with the input that did it when libFuzzer saved one.
    failure: Option<String>,
}

/// Runs the fuzz targets one after the other; see `Task::Fuzz`.
///
/// Each target reads a work corpus under fuzz/target (which libFuzzer
/// grows: the first directory) and the checked-in seeds of
/// fuzz/corpus/TARGET (only read), so fuzzing leaves git clean; inputs
/// that crash or hang go to fuzz/target/artifacts/TARGET/.
fn fuzz(
    FuzzRun {
        seconds,
        runs,
        sanitizer,
        target,
    }: FuzzRun,
) -> Result<()> {
    if let Some(why) = nightly_missing() {
        bail!("cargo fuzz needs the nightly toolchain: {why}");
    }
    let fuzz_dir = workspace_root()?.join("fuzz");
    let targets = fuzz_targets(&fuzz_dir)?;
    let selected = match target {
        Some(t) if targets.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t}; there are {}", targets.join(", ")),
        None => targets,
    };
    if Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    // Each sanitizer builds into a directory of its own: switching would
    // otherwise rebuild every crate.
    let target_dir = match sanitizer.as_str() {
        "address" => fuzz_dir.join("target"),
        other => fuzz_dir.join("target").join(other),
    };
    let mut build = cargo_fuzz("build", &fuzz_dir, &sanitizer, &target_dir);
    if let [only] = selected.as_slice() {
        build.arg(only);
    }
    run(&mut build)?;

    let mut outcomes = Vec::new();
    for t in &selected {
        outcomes.push(fuzz_one(
            t,
            seconds,
            runs,
            &fuzz_dir,
            &sanitizer,
            &target_dir,
        )?);
    }
    eprintln!(
        "\n{:<14} {:>12} {:>8} {:>9}  coverage (libFuzzer's last status)",
        "target", "executions", "seconds", "exec/s"
    );
    for o in &outcomes {
        let execs = o.executions.map_or("?".into(), |n| n.to_string());
        // libFuzzer's own figure; it says 0 for a run under a second.
        let rate = match (o.exec_per_sec, o.executions) {
            (Some(rate), _) if rate > 0 => rate.to_string(),
            (_, Some(n)) => format!("{:.0}", n as f64 / o.seconds.max(0.001)),
            _ => "?".into(),
        };
        eprintln!(
            "{:<14} {:>12} {:>8.0} {:>9}  {}{}",
            o.target,
            execs,
            o.seconds,
            rate,
            o.coverage,
            if o.failure.is_some() { "  FAILED" } else { "" }
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.target)))
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzzing found a problem (reproduce with `cargo +nightly fuzz run --fuzz-dir fuzz TARGET INPUT`):\n  {}",
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// One target for `seconds`, its output shown (but for libFuzzer's
/// NEW/REDUCE lines) and kept whole in fuzz/target/fuzz-logs/.
fn fuzz_one(
    target: &str,
    seconds: u64,
    runs: Option<u64>,
    fuzz_dir: &std::path::Path,
    sanitizer: &str,
    target_dir: &std::path::Path,
) -> Result<FuzzOutcome> {
    use std::io::{BufRead as _, Write as _};

    // Not per sanitizer: an input is as good to one build as to another.
    let work = fuzz_dir.join("target/corpus-work").join(target);
    let artifacts = fuzz_dir.join("target/artifacts").join(target);
    let logs = fuzz_dir.join("target/fuzz-logs");
    for dir in [&work, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;

    let mut cmd = cargo_fuzz("run", fuzz_dir, sanitizer, target_dir);
    cmd.arg(target)
        .arg(&work)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // One input running this long is a hang.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        // After cargo-fuzz's own (fuzz/artifacts), so this one wins.
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(runs) = runs {
        cmd.arg(format!("-runs={runs}"));
    }
    cmd.stderr(std::process::Stdio::piped());
    eprintln!("+ {cmd:?}");
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stderr = child.stderr.take().context("libFuzzer's stderr")?;

    let mut outcome = FuzzOutcome {
        target: target.into(),
        ..FuzzOutcome::default()
    };
    let mut artifact = None;
    for line in std::io::BufReader::new(stderr).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).into_owned();
        writeln!(log, "{line}")?;
        // `#1234\tNEW    cov: ...` and `\tNEW_FUNC[1/2]: ...`: a line per
        // input or function found, too many to show.
        let status_line = line.starts_with('#');
        let event = line.split_whitespace().nth(usize::from(status_line));
        if matches!(event, Some("NEW" | "REDUCE")) && status_line
            || event.is_some_and(|e| e.starts_with("NEW_FUNC["))
        {
            continue;
        }
        eprintln!("{line}");
        if status_line {
            if let Some(at) = line.find("cov: ") {
                let end = [" lim: ", " exec/s: "]
                    .iter()
                    .filter_map(|end| line.find(end))
                    .min()
                    .unwrap_or(line.len());
                outcome.coverage = line[at..end.max(at)].trim().to_string();
            }
        } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            outcome.executions = n.trim().parse().ok();
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            outcome.exec_per_sec = n.trim().parse().ok();
        } else if let Some(at) = line.find("Test unit written to ") {
            artifact = Some(
                line[at + "Test unit written to ".len()..]
                    .trim()
                    .to_string(),
            );
        }
    }
    let status = child.wait()?;
    outcome.seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        outcome.failure = Some(match artifact {
            Some(input) => format!("{status}, input {input} (log {})", log_path.display()),
            None => format!("{status}, see {}", log_path.display()),
        });
    }
    Ok(outcome)
}

/// `cargo +nightly fuzz SUBCOMMAND` on the fuzz crate.
fn cargo_fuzz(
    subcommand: &str,
    fuzz_dir: &std::path::Path,
    sanitizer: &str,
    target_dir: &std::path::Path,
) -> Command {
    // rustup's proxy, for `+nightly` (CARGO is the stable toolchain's own).
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz", subcommand, "--fuzz-dir"])
        .arg(fuzz_dir)
        .args(["--sanitizer", sanitizer, "--target-dir"])
        .arg(target_dir);
    cmd
}

/// The fuzz targets: fuzz/fuzz_targets/NAME.rs, sorted.
fn fuzz_targets(fuzz_dir: &std::path::Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Why `cargo +nightly` cannot run, if it cannot.
fn nightly_missing() -> Option<String> {
    match Command::new("cargo").args(["+nightly", "--version"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "no nightly toolchain (`cargo +nightly --version`: {}); install it with `rustup toolchain install nightly`",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run cargo (rustup's proxy): {e}")),
    }
}

fn main() -> Result<()> {
    match Args::parse().task {
        Task::Demo => demo(),
        Task::Test => test(),
        Task::Bench { quick, only } => bench(quick, only),
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
        Task::Deb { test: false } => deb::build().map(drop),
        Task::Deb { test: true } => deb::test(),
        Task::Deps => deps(PACKAGES, true).and_then(|()| deps(BENCH_PACKAGES, true)),
        Task::EarlierRelayd => {
            let bins = earlier::build()?;
            println!("XRELAY_EARLIER_RELAYDS={}", earlier_setting(&bins));
            Ok(())
        }
        Task::BuildEbpf => {
            deps(PACKAGES, false)?;
            run(cargo().args(["build", "-p", "relay-ebpf"]))
        }
        Task::Fuzz {
            seconds,
            runs,
            sanitizer,
            target,
        } => fuzz(FuzzRun {
            seconds,
            runs,
            sanitizer,
            target,
        }),
    }
}
