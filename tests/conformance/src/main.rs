//! xrelay-conformance: the same NG requests to rtpengine (the oracle) and
//! relayd, their replies compared after normalising only what must differ
//! between two relays (addresses, allocated ports, generated values).
//!
//! Both run in one network namespace with the same interface addresses.
//! The corpus is `cases/*.toml` and `sdp/*.sdp` beside this crate's
//! Cargo.toml. Prints a table by feature and a diff per differing case,
//! writes everything as JSON. Exits 0 when every case ran, whatever the
//! differences (a measurement), unless `--strict`; 1 when a relay crashed
//! or left a request unanswered; 2 on a harness error.

mod corpus;
mod deviations;
mod diff;
mod inventory;
mod normalize;
mod relays;
mod report;
mod run;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::{
    relays::{default_interfaces, Bed, Binaries, Kind, Relay},
    report::Status,
};

#[derive(Debug, Parser)]
#[command(about = "Differential NG conformance: relayd against rtpengine")]
struct Args {
    /// relayd binary to measure.
    #[arg(long)]
    relayd: PathBuf,
    /// rtpengine binary (the oracle).
    #[arg(long, default_value = "rtpengine")]
    rtpengine: PathBuf,
    /// Directory holding `cases/` and `sdp/`.
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    corpus: PathBuf,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/conformance.json")]
    json: PathBuf,
    /// Directory for the relays' logs.
    #[arg(long, default_value = "target/conformance")]
    log_dir: PathBuf,
    /// Only cases whose name contains this, or whose feature is this.
    #[arg(long)]
    filter: Option<String>,
    /// Exit 1 on any difference too.
    #[arg(long)]
    strict: bool,
    /// File naming, one per line, the cases that were identical when it was
    /// written: exit 1 if any of them differs now (a regression gate for CI;
    /// `#` starts a comment). Cases identical now but not listed are printed,
    /// so the file can grow with the work.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Markdown file whose generated block (between the conformance
    /// markers) is rewritten with the results.
    #[arg(long)]
    docs: Option<PathBuf>,
}

/// The case names a baseline file lists.
fn read_baseline(path: &std::path::Path) -> Result<std::collections::BTreeSet<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Checks the outcomes against the baseline; true when no listed case
/// regressed.
fn check_baseline(
    baseline: &std::collections::BTreeSet<String>,
    outcomes: &[report::Outcome],
) -> bool {
    let mut held = true;
    for o in outcomes {
        let listed = baseline.contains(&o.name);
        match (listed, o.status == Status::Identical) {
            (true, false) => {
                eprintln!(
                    "REGRESSED: {} was identical to rtpengine and now differs",
                    o.name
                );
                held = false;
            }
            (false, true) => eprintln!("newly identical (add it to the baseline): {}", o.name),
            _ => {}
        }
    }
    held
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C or SIGTERM stops the run after the current case, so the guards
/// still delete the namespace and stop the relays.
fn stop_on_signal() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action)? };
    }
    Ok(())
}

/// rtpengine's version line (`--version`), for the report.
fn rtpengine_version(binary: &std::path::Path) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.trim().trim_start_matches("Version: ").to_owned()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn run(args: &Args) -> Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the conformance run creates a network namespace: run it as root");
    }
    let cases = corpus::load(&args.corpus, args.filter.as_deref())?;
    let corpus = corpus::load(&args.corpus, None)?;
    let deviations = deviations::Deviations::load(&args.corpus, &corpus)?;
    let coverage = inventory::corpus_coverage(&args.corpus, &corpus)?;
    if args.docs.is_some() && args.filter.is_some() {
        bail!("--docs needs the whole corpus: drop --filter");
    }
    let baseline = args.baseline.as_deref().map(read_baseline).transpose()?;
    if let Some(listed) = &baseline {
        if let Some(unknown) = listed.iter().find(|n| !cases.iter().any(|c| &c.name == *n)) {
            if args.filter.is_none() {
                bail!("the baseline names {unknown:?}, which is not a case");
            }
        }
    }
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let bins = Binaries {
        rtpengine: args.rtpengine.clone(),
        relayd: args.relayd.clone(),
        log_dir: args.log_dir.clone(),
    };
    for kind in [Kind::Rtpengine, Kind::Relayd] {
        // A fresh log per run; restarts within it append.
        let _ = std::fs::remove_file(bins.log_dir.join(format!("{}.log", kind.name())));
    }
    stop_on_signal()?;
    let version = rtpengine_version(&args.rtpengine);
    eprintln!(
        "{} cases; rtpengine {version}; relayd {}",
        cases.len(),
        args.relayd.display()
    );
    let started = std::time::Instant::now();
    let bed = Bed::new()?;
    let mut relays: Option<(Relay, Relay)> = None;
    let mut outcomes = Vec::with_capacity(cases.len());
    for (serial, case) in cases.iter().enumerate() {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted after {serial} cases");
        }
        // A case with interfaces of its own gets relays started with them
        // (and fresh round-robin turns); the next case the default again.
        let wanted = case.interfaces.clone().unwrap_or_else(default_interfaces);
        if relays.as_ref().is_none_or(|(r, _)| r.interfaces != wanted) {
            drop(relays.take());
            relays = Some((
                Relay::start(&bed, Kind::Rtpengine, &bins, &wanted)?,
                Relay::start(&bed, Kind::Relayd, &bins, &wanted)?,
            ));
        }
        let (rtpengine, relayd) = relays.as_mut().context("relays not started")?;
        let mut a = run::run_case(case, rtpengine, serial);
        let mut b = run::run_case(case, relayd, serial);
        for (relay, transcript) in [(rtpengine, &mut a), (relayd, &mut b)] {
            if let Some(status) = relay.exited() {
                transcript
                    .problems
                    .push(format!("exited during the case: {status}"));
                // Later cases still measure something; a relay that keeps
                // dying is a harness-level failure.
                if relay.starts() >= 5 {
                    bail!("{} exited five times", relay.kind.name());
                }
                relay.restart(&bed, &bins)?;
            }
        }
        outcomes.push(report::compare(case, deviations.reason(&case.name), a, b));
    }
    report::print(&outcomes);
    report::write_json(&args.json, &version, &outcomes, &coverage)?;
    if let Some(docs) = &args.docs {
        report::write_docs(docs, &version, &outcomes, &coverage)?;
        eprintln!("rewrote the conformance block of {}", docs.display());
    }
    for o in &outcomes {
        if o.status == Status::Identical && deviations.reason(&o.name).is_some() {
            eprintln!(
                "{} is listed in deviations.toml but is identical now: remove it",
                o.name
            );
        }
    }
    eprintln!(
        "documented NG options (ng_options.toml): the corpus covers {} of {} in scope{}",
        coverage.covered,
        coverage.in_scope,
        if coverage.uncovered.is_empty() {
            String::new()
        } else {
            format!("; none uses {}", coverage.uncovered.join(", "))
        }
    );
    eprintln!(
        "{} cases in {:.1} s; JSON: {}; logs: {}",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        args.json.display(),
        args.log_dir.display()
    );
    let broken = outcomes.iter().any(|o| o.status == Status::Broken);
    let differs = outcomes.iter().any(|o| o.status == Status::Differs);
    if broken {
        eprintln!("a relay crashed or left a request unanswered (see `!!!` above)");
    }
    let regressed = match &baseline {
        Some(listed) => !check_baseline(listed, &outcomes),
        None => false,
    };
    let failed = broken || regressed || (args.strict && differs);
    Ok(!failed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
