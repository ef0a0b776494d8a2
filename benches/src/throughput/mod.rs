//! The netns throughput benchmark: an in-kernel generator (XDP live frames)
//! sends RTP for N calls set up over NG toward a relay, a sink XDP program
//! counts what comes back; relayd with XDP, relayd in userspace and
//! rtpengine are measured in the same run with the same generator and sink.
//!
//! CPU placement (2 cores here): the generator's thread is pinned to CPU 0,
//! the relay daemons to CPU 1. Softirq work (veth NAPI: the relay's XDP
//! program, the stack under the userspace relays, the sink) runs where the
//! kernel schedules it, mostly on the generator's CPU; the reported CPU
//! figures show it rather than hide it.

pub mod bed;
pub mod calls;
pub mod cpu;
pub mod plot;
pub mod relays;
pub mod report;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::traffic::{Flow, Traffic};
use relay_tests::netns::Netns;

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

/// One measurement point.
#[derive(Debug, Clone)]
pub struct Point {
    /// Offered rate asked for (`None`: unpaced).
    pub target: Option<u64>,
    /// Frames per second the generator emitted.
    pub offered_pps: f64,
    /// Frames per second the sink counted.
    pub forwarded_pps: f64,
    /// 1 - forwarded / offered.
    pub loss: f64,
    /// CPU during the point.
    pub cpu: cpu::Usage,
    /// Datagrams the relay namespace's UDP layer dropped for full socket
    /// receive buffers, per second (the userspace relays' usual loss).
    pub rcvbuf_drops_pps: f64,
}

/// One relay at one call count.
#[derive(Debug, Clone)]
pub struct RelayRun {
    /// Which relay.
    pub kind: Kind,
    /// Calls asked for.
    pub calls: u32,
    /// Calls set up over NG.
    pub established: u32,
    /// How long set-up took.
    pub setup: Duration,
    /// Why set-up stopped short, if it did.
    pub stopped: Option<String>,
    /// The measurements, in the order of [`Config::levels`].
    pub points: Vec<Point>,
}

/// A relay is idle once the sink has seen nothing new for this long.
const QUIET: Duration = Duration::from_millis(200);
/// Longest wait for a relay to drain its queues between points.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Target length of one unpaced generator run.
const SLICE: Duration = Duration::from_millis(250);
/// Most frames in one generator run.
const MAX_CHUNK: u64 = 1 << 22;
/// File descriptors a relay needs besides its media sockets.
const FD_HEADROOM: u64 = 800;
/// Rate of the warm-up pass that lets every relay learn every endpoint.
const WARMUP_PPS: u64 = 100_000;

/// Runs the whole benchmark (needs root).
pub fn run(cfg: &Config) -> Result<Vec<RelayRun>> {
    let max_calls = cfg.calls.iter().copied().max().context("no call counts")?;
    let fit = raise_nofile()?;
    let bed = Bed::new(cfg.relays.len(), max_calls.min(fit))?;
    let mut traffic = bed.traffic.run(|| -> Result<Traffic> {
        let ifindex = relay_userspace::netdev::ifindex(TRAFFIC_IF)?;
        Traffic::attach(TRAFFIC_IF, ifindex, TRAFFIC_MAC, RELAY_MAC)
    })??;
    let _peer_pass = if cfg.relays.contains(&Kind::RelaydXdp) {
        None
    } else {
        Some(relays::peer_pass(&bed.relay)?)
    };
    let mut runs = Vec::new();
    for &calls in &cfg.calls {
        let mut group = measure_group(cfg, &bed, &mut traffic, calls.min(fit))
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
    }
    Ok(runs)
}

/// A relay under measurement and the calls it holds.
struct Live {
    relay: relays::Relay,
    est: calls::Established,
}

/// Starts every relay with `calls` calls, warms each up, then measures each
/// offered level on every relay in turn: relays share whatever else runs on
/// the machine during a level instead of one relay getting a quiet minute
/// and the next a busy one.
fn measure_group(
    cfg: &Config,
    bed: &Bed,
    traffic: &mut Traffic,
    calls: u32,
) -> Result<Vec<RelayRun>> {
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
    for l in &live {
        traffic.set_flows(&l.est.flows)?;
        let t = &*traffic;
        bed.traffic
            .run(|| pin_to_cpu0().and_then(|()| warm_up(t, &l.est.flows)))??;
    }
    let mut points: Vec<Vec<Point>> = vec![Vec::new(); live.len()];
    for &target in &cfg.levels {
        for (l, points) in live.iter().zip(&mut points) {
            traffic.set_flows(&l.est.flows)?;
            let t = &*traffic;
            let pid = l.relay.pid();
            let p = bed.traffic.run(|| -> Result<Point> {
                pin_to_cpu0()?;
                settle(t)?;
                measure(t, &bed.relay, pid, target, cfg.point)
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
        runs.push(RelayRun {
            kind: l.relay.kind,
            calls,
            established: (l.est.flows.len() / 2) as u32,
            setup: l.est.elapsed,
            stopped: l.est.stopped.take(),
            points,
        });
    }
    Ok(runs)
}

/// Two passes over every flow (at least a few thousand frames), then a
/// pause, so every relay has learned (and relayd XDP kernelized) every
/// endpoint before anything is measured.
fn warm_up(traffic: &Traffic, flows: &[Flow]) -> Result<()> {
    let frames = (2 * flows.len() as u64).max(4096);
    let deadline = Duration::from_secs_f64(frames as f64 / WARMUP_PPS as f64);
    pace(traffic, Some(WARMUP_PPS), deadline)?;
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// Waits until the relay has sent what it still held (socket buffers of
/// a saturated userspace relay hold seconds of traffic), so nothing of one
/// point is counted in the next.
fn settle(traffic: &Traffic) -> Result<()> {
    let start = Instant::now();
    let mut last = traffic.received()?;
    while start.elapsed() < DRAIN_LIMIT {
        std::thread::sleep(QUIET);
        let now = traffic.received()?;
        if now == last {
            return Ok(());
        }
        last = now;
    }
    eprintln!("   (the relay was still sending after {DRAIN_LIMIT:?}; measuring anyway)");
    Ok(())
}

/// Generates for `length` at `target` frames per second (unpaced if
/// `None`); returns the frames asked for.
///
/// Each live-frames test run sets up and tears down a page pool, which costs
/// milliseconds of waiting here, so runs are sized to last about [`SLICE`]
/// at the rate the previous one achieved, and paced runs send what is owed
/// in one go.
fn pace(traffic: &Traffic, target: Option<u64>, length: Duration) -> Result<u64> {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut achieved = 1e6f64; // frames per second of the last run; a guess at first
    loop {
        let elapsed = start.elapsed();
        if elapsed >= length {
            return Ok(sent);
        }
        let remaining = (length - elapsed).as_secs_f64();
        let size = (achieved * SLICE.as_secs_f64().min(remaining)) as u64;
        let chunk = match target {
            None => size.clamp(u64::from(crate::traffic::BATCH), MAX_CHUNK),
            Some(rate) => {
                let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
                let owed = due.saturating_sub(sent);
                if owed < u64::from(crate::traffic::BATCH) {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                owed.min(MAX_CHUNK)
            }
        } as u32;
        let t = Instant::now();
        traffic.send(chunk)?;
        achieved = f64::from(chunk) / t.elapsed().as_secs_f64().max(1e-6);
        sent += u64::from(chunk);
    }
}

fn measure(
    traffic: &Traffic,
    relay_ns: &Netns,
    pid: u32,
    target: Option<u64>,
    length: Duration,
) -> Result<Point> {
    let drops0 = udp_rcvbuf_errors(relay_ns)?;
    let (gen0, sink0, cpu0) = (
        traffic.generated()?,
        traffic.received()?,
        cpu::snapshot(pid)?,
    );
    let start = Instant::now();
    pace(traffic, target, length)?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = cpu::snapshot(pid)?;
    // Frames in flight (veth rings, a relay's current batch) still count;
    // what waits longer in a relay's socket buffers counts as lost.
    std::thread::sleep(Duration::from_millis(100));
    let (gen1, sink1) = (traffic.generated()?, traffic.received()?);
    let drops = udp_rcvbuf_errors(relay_ns)?.saturating_sub(drops0) as f64;
    let offered = gen1.saturating_sub(gen0) as f64;
    let forwarded = sink1.saturating_sub(sink0) as f64;
    Ok(Point {
        target,
        offered_pps: offered / elapsed,
        forwarded_pps: forwarded / elapsed,
        loss: if offered > 0.0 {
            (1.0 - forwarded / offered).max(0.0)
        } else {
            0.0
        },
        cpu: cpu::usage(&cpu0, &cpu1, cores()),
        rcvbuf_drops_pps: drops / elapsed,
    })
}

/// `Udp: RcvbufErrors` of `ns` (/proc/net/snmp read from inside it).
fn udp_rcvbuf_errors(ns: &Netns) -> Result<u64> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next(), udp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .context("no Udp RcvbufErrors in /proc/net/snmp")
}

fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn pin_to_cpu0() -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(0)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .context("pinning the generator to CPU 0")
}

/// 100 000 calls are 400 000 sockets in a userspace relay (and in relayd
/// with XDP, which holds its ports as sockets too); the daemons inherit this
/// limit. Raising the hard limit needs CAP_SYS_RESOURCE, which containers
/// often lack: then the soft limit goes up to the hard one. Returns how many
/// calls fit, keeping room for everything else a relay opens (at the limit
/// relayd cannot even write per-CPU maps: aya opens a sysfs file for each).
fn raise_nofile() -> Result<u32> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let mut limit = libc::rlimit {
        rlim_cur: nr_open,
        rlim_max: nr_open,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        // SAFETY: getrlimit writes the struct we pass and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
    }
    let fit = limit.rlim_max.saturating_sub(FD_HEADROOM) / 4 / 100 * 100;
    let fit = u32::try_from(fit).unwrap_or(u32::MAX).max(1);
    eprintln!(
        "RLIMIT_NOFILE {}: up to {fit} calls per relay (4 sockets each)",
        limit.rlim_max
    );
    Ok(fit)
}
