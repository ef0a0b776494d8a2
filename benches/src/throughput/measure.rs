//! One measurement point: pacing the generator to an offered rate,
//! waiting for a relay to drain, and reading the counters (generator, sink,
//! CPU, socket-buffer drops) around it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use relay_tests::netns::Netns;

use super::cpu;
use crate::traffic::{Flow, Traffic};

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

/// A relay is idle once the sink has seen nothing new for this long.
const QUIET: Duration = Duration::from_millis(200);
/// Longest wait for a relay to drain its queues between points.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Target length of one unpaced generator run.
const SLICE: Duration = Duration::from_millis(250);
/// Most frames in one generator run.
const MAX_CHUNK: u64 = 1 << 22;
/// Rate of the warm-up pass that lets every relay learn every endpoint.
const WARMUP_PPS: u64 = 100_000;

/// Two passes over every flow (at least a few thousand frames), then a
/// pause, so every relay has learned (and relayd XDP kernelized) every
/// endpoint before anything is measured.
pub fn warm_up(traffic: &Traffic, flows: &[Flow]) -> Result<()> {
    let frames = (2 * flows.len() as u64).max(4096);
    let deadline = Duration::from_secs_f64(frames as f64 / WARMUP_PPS as f64);
    pace(traffic, Some(WARMUP_PPS), deadline)?;
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// Waits until the relay has sent what it still held (socket buffers of
/// a saturated userspace relay hold seconds of traffic), so nothing of one
/// point is counted in the next.
pub fn settle(traffic: &Traffic) -> Result<()> {
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
/// Each live-frames test run sets up and tears down a page pool and takes
/// ~25 ms here however few frames it carries, so runs are sized to last
/// about [`SLICE`] at the rate the previous one achieved, and paced runs
/// send what is owed in one go (a burst every ~25 ms).
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

/// Offers `target` pps (unpaced if `None`) for `length` and measures what the
/// relay (process `pid`, in `relay_ns`) forwarded. `lanes` generator threads
/// run, pinned to CPUs 0..lanes (more than one only unpaced, after
/// [`Traffic::set_lanes`]).
pub fn measure(
    traffic: &Traffic,
    relay_ns: &Netns,
    pid: u32,
    target: Option<u64>,
    lanes: u32,
    length: Duration,
) -> Result<Point> {
    let drops0 = udp_rcvbuf_errors(relay_ns)?;
    let (gen0, sink0, cpu0) = (
        traffic.generated()?,
        traffic.received()?,
        cpu::snapshot(pid)?,
    );
    let start = Instant::now();
    if lanes > 1 {
        // Threads inherit this thread's network namespace (the traffic one).
        std::thread::scope(|s| -> Result<()> {
            let runs: Vec<_> = (1..lanes)
                .map(|cpu| {
                    s.spawn(move || {
                        pin_to(cpu).and_then(|()| pace(traffic, target, length).map(drop))
                    })
                })
                .collect();
            pace(traffic, target, length)?;
            for run in runs {
                run.join()
                    .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
            }
            Ok(())
        })?;
    } else {
        pace(traffic, target, length)?;
    }
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

/// `Udp: RcvbufErrors` of `ns`.
fn udp_rcvbuf_errors(ns: &Netns) -> Result<u64> {
    Ok(super::netstat::udp(ns)?.rcvbuf_errors)
}

/// CPUs of this machine.
pub fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Pins the calling thread (the generator's) to CPU 0.
pub fn pin_to_cpu0() -> Result<()> {
    pin_to(0)
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: u32) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu as usize)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning a generator thread to CPU {cpu}"))
}
