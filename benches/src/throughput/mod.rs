//! The netns throughput benchmark: an in-kernel generator (XDP live frames)
//! sends RTP for N calls set up over NG toward a relay, a sink XDP program
//! counts what comes back; relayd with XDP, relayd in userspace and
//! rtpengine run side by side and each offered level is measured on each of
//! them in turn, with the same generator and sink.
//!
//! CPU placement (2 cores here): the generator's thread is pinned to CPU 0,
//! the relay daemons to CPU 1; the unpaced point adds a generator thread on
//! every other CPU (see [`generator_lanes`]). Softirq work (veth NAPI: the relay's XDP
//! program, the stack under the userspace relays, the sink) runs where the
//! kernel schedules it, mostly on the generator's CPU; the reported CPU
//! figures show it rather than hide it.

pub mod bed;
pub mod calls;
pub mod cpu;
pub mod limits;
pub mod measure;
pub mod netstat;
pub mod paced;
pub mod plot;
pub mod queues;
pub mod relays;
pub mod report;
pub mod srtp;
pub mod sustained;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::traffic::Traffic;

use bed::{Bed, RELAY_MAC, TRAFFIC_IF, TRAFFIC_MAC};
use relays::Kind;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relayd binary.
    pub relayd: PathBuf,
    /// Call counts (each a fresh relay).
    pub calls: Vec<u32>,
    /// Offered rates in frames per second; `None`: as fast as the generator goes.
    pub levels: Vec<Option<u64>>,
    /// Length of each measurement point.
    pub point: Duration,
    /// Longest call set-up per relay and call count.
    pub setup_budget: Duration,
    /// The relays.
    pub relays: Vec<Kind>,
}

/// How a run's calls were set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Over NG, as an SBC would.
    Ng,
    /// As static streams at relayd's start (relayd XDP only): for call
    /// counts whose sockets the open-files limit does not allow.
    Static,
}

/// One relay at one call count.
#[derive(Debug, Clone)]
pub struct RelayRun {
    /// Which relay.
    pub kind: Kind,
    /// Calls asked for.
    pub calls: u32,
    /// How they were set up.
    pub setup_by: Setup,
    /// Calls set up.
    pub established: u32,
    /// How long set-up took.
    pub setup: Duration,
    /// Why set-up stopped short, if it did.
    pub stopped: Option<String>,
    /// The measurements, in the order of [`Config::levels`].
    pub points: Vec<measure::Point>,
}

impl RelayRun {
    /// The run's calls as tables and plots name them: how many ran when
    /// fewer than asked, and how they were set up when not over NG.
    pub fn calls_label(&self) -> String {
        calls_label(self.calls, self.established, self.setup_by)
    }
}

/// See [`RelayRun::calls_label`].
pub fn calls_label(calls: u32, established: u32, setup_by: Setup) -> String {
    let n = if established == calls {
        calls.to_string()
    } else {
        format!("{established} of {calls}")
    };
    match setup_by {
        Setup::Ng => n,
        Setup::Static => format!("{n}, static streams"),
    }
}

/// Runs the whole benchmark (needs root).
pub fn run(cfg: &Config) -> Result<Vec<RelayRun>> {
    let max_calls = cfg.calls.iter().copied().max().context("no call counts")?;
    let fit = limits::raise_nofile()?;
    // Call counts beyond what fits are also measured on relayd XDP alone
    // with static streams, which need no sockets.
    let xdp_slot = cfg.relays.iter().position(|k| *k == Kind::RelaydXdp);
    let bed_calls: Vec<u32> = (0..cfg.relays.len())
        .map(|slot| match xdp_slot {
            Some(s) if s == slot => max_calls,
            _ => max_calls.min(fit),
        })
        .collect();
    let bed = Bed::new(&bed_calls)?;
    let mut traffic = bed.traffic.run(|| -> Result<Traffic> {
        let ifindex = relay_userspace::netdev::ifindex(TRAFFIC_IF)?;
        Traffic::attach(TRAFFIC_IF, ifindex, TRAFFIC_MAC, RELAY_MAC)
    })??;
    let _peer_pass = if xdp_slot.is_some() {
        None
    } else {
        Some(relays::peer_pass(&bed.relay)?)
    };
    let mut runs = Vec::new();
    for &calls in &cfg.calls {
        let live =
            start_over_ng(cfg, &bed, calls.min(fit)).with_context(|| format!("{calls} calls"))?;
        let mut group = measure_group(cfg, &bed, &mut traffic, live, calls.min(fit), Setup::Ng)
            .with_context(|| format!("{calls} calls"))?;
        if calls > fit {
            for run in &mut group {
                run.calls = calls;
                run.stopped.get_or_insert_with(|| {
                    format!(
                        "{fit} calls is what RLIMIT_NOFILE allows here: every relay holds \
                         4 sockets per call and the hard limit cannot be raised without \
                         CAP_SYS_RESOURCE"
                    )
                });
            }
        }
        runs.extend(group);
        if let (true, Some(slot)) = (calls > fit, xdp_slot) {
            eprintln!("== relayd XDP with {calls} calls as static streams");
            let (relay, flows, elapsed) =
                relays::start_static(slot, &bed.relay, &cfg.relayd, calls)
                    .with_context(|| format!("{calls} calls as static streams"))?;
            eprintln!("   installed in {:.1} s", elapsed.as_secs_f64());
            let est = calls::Established {
                flows,
                elapsed,
                stopped: None,
            };
            let live = vec![Live { relay, est }];
            runs.extend(
                measure_group(cfg, &bed, &mut traffic, live, calls, Setup::Static)
                    .with_context(|| format!("{calls} calls as static streams"))?,
            );
        }
    }
    Ok(runs)
}

/// Generator threads for one point: paced points run one, on CPU 0; the
/// unpaced point runs one on every CPU (each sending flows of its own), so a
/// relay that keeps up with one generator CPU is pushed further. Every relay
/// gets the same: for the userspace relays the extra generator competes with
/// the daemon, which their paced points do not show.
fn generator_lanes(target: Option<u64>, flows: usize) -> u32 {
    let cores = measure::cores();
    match target {
        None if cores > 1 && flows.is_multiple_of(cores as usize) => cores,
        _ => 1,
    }
}

/// A relay under measurement and the calls it holds.
struct Live {
    relay: relays::Relay,
    est: calls::Established,
}

/// Starts every relay and sets `calls` calls up on each over NG.
fn start_over_ng(cfg: &Config, bed: &Bed, calls: u32) -> Result<Vec<Live>> {
    let mut live = Vec::new();
    for (slot, &kind) in cfg.relays.iter().enumerate() {
        eprintln!("== {} with {calls} calls", kind.name());
        let relay = relays::start(kind, slot, &bed.relay, &cfg.relayd, calls)?;
        let fail = |e: anyhow::Error| e.context(format!("relay log: {}", relay.log.display()));
        calls::wait_for_ng(&bed.relay, relay.ng).map_err(fail)?;
        let est = calls::establish(&bed.relay, relay.ng, calls, cfg.setup_budget).map_err(fail)?;
        eprintln!(
            "   {} calls set up in {:.1} s{}",
            est.flows.len() / 2,
            est.elapsed.as_secs_f64(),
            est.stopped
                .as_deref()
                .map(|w| format!(" (stopped: {w})"))
                .unwrap_or_default()
        );
        live.push(Live { relay, est });
    }
    Ok(live)
}

/// Warms every relay of `live` up, then measures each offered level on
/// every relay in turn: relays share whatever else runs on the machine
/// during a level instead of one relay getting a quiet minute and the next
/// a busy one.
fn measure_group(
    cfg: &Config,
    bed: &Bed,
    traffic: &mut Traffic,
    live: Vec<Live>,
    calls: u32,
    setup_by: Setup,
) -> Result<Vec<RelayRun>> {
    for l in &live {
        traffic.set_flows(&l.est.flows)?;
        traffic.set_lanes(1)?;
        let t = &*traffic;
        bed.traffic
            .run(|| measure::pin_to_cpu0().and_then(|()| measure::warm_up(t, &l.est.flows)))??;
    }
    let mut points: Vec<Vec<measure::Point>> = vec![Vec::new(); live.len()];
    for &target in &cfg.levels {
        for (l, points) in live.iter().zip(&mut points) {
            traffic.set_flows(&l.est.flows)?;
            let lanes = generator_lanes(target, l.est.flows.len());
            traffic.set_lanes(lanes)?;
            let t = &*traffic;
            let pid = l.relay.pid();
            let p = bed.traffic.run(|| -> Result<measure::Point> {
                measure::pin_to_cpu0()?;
                measure::settle(t)?;
                measure::measure(t, &bed.relay, pid, target, lanes, cfg.point)
            })??;
            eprintln!(
                "   {:<16} offered {:>10.0} pps  forwarded {:>10.0} pps  loss {:>5.1}%  rcvbuf drops {:>9.0}/s  relay {:>5.1}%  softirq {:>5.1}%",
                l.relay.kind.name(),
                p.offered_pps,
                p.forwarded_pps,
                p.loss * 100.0,
                p.rcvbuf_drops_pps,
                p.cpu.process,
                p.cpu.softirq
            );
            points.push(p);
        }
    }
    let mut runs = Vec::new();
    for (mut l, points) in live.into_iter().zip(points) {
        if let Ok(Some(status)) = l.relay.child.0.try_wait() {
            bail!(
                "{} exited during the measurement: {status} (log: {})",
                l.relay.kind.name(),
                l.relay.log.display()
            );
        }
        // The log only matters when something failed.
        let _ = std::fs::remove_file(&l.relay.log);
        runs.push(RelayRun {
            kind: l.relay.kind,
            calls,
            setup_by,
            established: (l.est.flows.len() / 2) as u32,
            setup: l.est.elapsed,
            stopped: l.est.stopped.take(),
            points,
        });
    }
    Ok(runs)
}
