//! The sustained-rate benchmark, an operator's criterion next to the
//! throughput table's: evenly paced RTP (see [`super::paced`]) from every
//! call's parties to their relay ports, **fresh calls for every point**
//! (offer/answer over NG before, `delete` after), and a rate counts as
//! sustained when the loss over the whole window (5 s by default) stays
//! at or below 0.1 %. Each relay and call count gets its own search for
//! the highest such rate ([`search`]); the relays take turns point by
//! point, so load from elsewhere on the machine hits them alike.
//!
//! Each point also records what explains its loss: relayd XDP's
//! program-wide counters (forwarded, passed to relayd's socket while
//! endpoints are learned, passed for no stream, drops), the relay
//! namespace's UDP counters (datagrams read from sockets, receive buffer
//! drops), both veth ends' drop counters, CPU, and a timeline of
//! the deficit (sent − received) sampled during the point ([`timeline`]).
//!
//! Same bed, relays, CPU placement and sink as the throughput benchmark
//! (relays on CPU 1, the sender on CPU 0).

pub mod latency_report;
pub mod report;
pub mod search;
pub mod timeline;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _, Result};
use relay_userspace::datapath::{
    xdp::{versioned_dir, RelayMaps},
    Counters,
};

use super::{
    bed::{Bed, RELAY_IF, RELAY_MAC, TRAFFIC_IF, TRAFFIC_MAC},
    calls, cpu, limits, measure, netstat,
    paced::{PacedSender, Sent},
    relays::{self, Kind, Relay},
};
use crate::traffic::{Flow, Traffic};
use search::Search;
use timeline::Timeline;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relayd binary.
    pub relayd: PathBuf,
    /// Call counts (each on freshly started relays).
    pub calls: Vec<u32>,
    /// The relays.
    pub relays: Vec<Kind>,
    /// How long each point sends.
    pub window: Duration,
    /// Highest loss (a fraction) a sustained rate may have.
    pub max_loss: f64,
    /// Bounds of each search.
    pub limits: search::Limits,
    /// Longest call set-up of one point.
    pub setup_budget: Duration,
    /// After each search, measure one-way latency and the jitter added at
    /// [`LATENCY_LEVELS`] of the relay's sustained rate (fresh calls
    /// each); see also [`floor`].
    pub latency: bool,
}

/// Shares of a relay's sustained rate its latency is measured at.
pub const LATENCY_LEVELS: [f64; 3] = [0.1, 0.5, 0.9];

/// One latency point: a share of the sustained rate and what it measured.
#[derive(Debug, Clone)]
pub struct LatencyPoint {
    /// The share of the sustained rate (one of [`LATENCY_LEVELS`]; 0 for
    /// the floor's points, which have no relay).
    pub level: f64,
    /// The point (its `latency` is set).
    pub point: Point,
}

/// Counter changes over one point.
#[derive(Debug, Clone)]
pub struct Deltas {
    /// relayd XDP's program-wide counters.
    pub xdp: Option<Counters>,
    /// The relay namespace's UDP counters.
    pub udp: netstat::Udp,
    /// The relay-side veth.
    pub relay_link: netstat::Link,
    /// The traffic-side veth.
    pub traffic_link: netstat::Link,
    /// CPU over the sending window.
    pub cpu: cpu::Usage,
}

/// One point: a fresh set of calls at one offered rate.
#[derive(Debug, Clone)]
pub struct Point {
    /// Rate asked for (pps).
    pub target: u64,
    /// What the sender did.
    pub sent: Sent,
    /// Packets the sink counted (the point and the drain after it).
    pub received: u64,
    /// 1 − received / sent (negative if more came back than went out).
    pub loss: f64,
    /// Loss within the limit.
    pub passed: bool,
    /// The sender fell more than 5 % short of the target.
    pub short: bool,
    /// How long setting the calls up took.
    pub setup: Duration,
    /// Counter changes.
    pub deltas: Deltas,
    /// Where the deficit grew.
    pub timeline: timeline::Summary,
    /// One-way latency and added jitter (with [`Config::latency`]).
    pub latency: Option<crate::latency::Recorded>,
}

impl Point {
    /// Packets per second the sender offered.
    pub fn offered_pps(&self) -> f64 {
        self.sent.packets as f64 / self.sent.elapsed.as_secs_f64().max(1e-9)
    }

    /// The rate the point measured: its target, or what the sender offered
    /// when it fell short (the stack under a userspace relay shares the
    /// sender's CPU, and this VM stalls now and then).
    pub fn rate(&self) -> u64 {
        if self.short {
            self.offered_pps() as u64
        } else {
            self.target
        }
    }
}

/// One relay at one call count: its search's points.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which relay.
    pub kind: Kind,
    /// Calls per point.
    pub calls: u32,
    /// Points, in the order measured.
    pub points: Vec<Point>,
    /// The sender, not the relay, ended the search upwards.
    pub sender_bound: bool,
    /// Whether the search reached its cap with a pass.
    pub capped: bool,
    /// Latency at shares of the sustained rate (with [`Config::latency`]).
    pub latency: Vec<LatencyPoint>,
}

impl Outcome {
    /// The passing point of the highest rate.
    pub fn sustained(&self) -> Option<&Point> {
        self.points
            .iter()
            .filter(|p| p.passed)
            .max_by_key(|p| p.rate())
    }

    /// The failing point of the lowest rate.
    pub fn first_failing(&self) -> Option<&Point> {
        self.points
            .iter()
            .filter(|p| !p.passed)
            .min_by_key(|p| p.rate())
    }
}

/// A relay under measurement and, for relayd XDP, its pinned maps.
struct Live {
    relay: Relay,
    maps: Option<RelayMaps>,
}

/// What a point reads besides the sink: whose CPU time, which maps.
#[derive(Clone, Copy)]
struct Measured<'a> {
    pid: u32,
    maps: Option<&'a RelayMaps>,
}

impl Live {
    fn measured(&self) -> Measured<'_> {
        Measured {
            pid: self.relay.pid(),
            maps: self.maps.as_ref(),
        }
    }
}

/// What the bed offers every point.
struct Rig<'a> {
    cfg: &'a Config,
    bed: &'a Bed,
    traffic: &'a Traffic,
    ifindex: u32,
}

/// The sink on the traffic veth, recording latency when asked to.
fn attach_sink(bed: &Bed, latency: bool) -> Result<(Traffic, u32)> {
    bed.traffic.run(|| -> Result<(Traffic, u32)> {
        let ifindex = relay_userspace::netdev::ifindex(TRAFFIC_IF)?;
        let mut traffic = Traffic::attach(TRAFFIC_IF, ifindex, TRAFFIC_MAC, RELAY_MAC)?;
        traffic.set_latency(latency)?;
        Ok((traffic, ifindex))
    })?
}

/// Runs the benchmark (needs root).
pub fn run(cfg: &Config) -> Result<Vec<Outcome>> {
    let max_calls = cfg.calls.iter().copied().max().context("no call counts")?;
    let fit = limits::raise_nofile()?;
    if max_calls > fit {
        bail!("{max_calls} calls do not fit the open-files limit here ({fit} do)");
    }
    let bed = Bed::new(&vec![max_calls; cfg.relays.len()])?;
    let (traffic, ifindex) = attach_sink(&bed, cfg.latency)?;
    // As in the throughput benchmark: the userspace relays' packets meet
    // an XDP program on the relay veth either way.
    let _peer_pass = if cfg.relays.contains(&Kind::RelaydXdp) {
        None
    } else {
        Some(relays::peer_pass(&bed.relay)?)
    };
    let rig = Rig {
        cfg,
        bed: &bed,
        traffic: &traffic,
        ifindex,
    };
    let mut outcomes = Vec::new();
    let mut round = 0u32;
    for &calls in &cfg.calls {
        let mut live = start(cfg, &bed, calls).with_context(|| format!("{calls} calls"))?;
        let searched = search_group(&rig, &mut live, calls, &mut round)?;
        let latency = if cfg.latency {
            latency_group(&rig, &live, calls, &searched, &mut round)?
        } else {
            vec![Vec::new(); live.len()]
        };
        for l in &live {
            // What `relayctl counters` would show now: every point of the
            // group together, the other relays' traffic included (their
            // addresses are not relayd's: passed_no_stream).
            if let Some(c) = l.maps.as_ref().and_then(|m| m.counters().ok()) {
                eprintln!(
                    "   relayd XDP counters since its start: {}",
                    report::nonzero(&c)
                );
            }
        }
        for ((l, (points, sender_bound)), latency) in live.into_iter().zip(searched).zip(latency) {
            let capped = points
                .iter()
                .any(|p| p.passed && p.rate() >= cfg.limits.cap);
            outcomes.push(Outcome {
                kind: l.relay.kind,
                calls,
                points,
                sender_bound,
                capped,
                latency,
            });
            // The log only matters when something failed.
            let _ = std::fs::remove_file(&l.relay.log);
        }
    }
    Ok(outcomes)
}

/// Runs every relay's search at `calls` calls, one point per relay per
/// round until every search is over; returns each relay's points and
/// whether the sender ended its search.
fn search_group(
    rig: &Rig<'_>,
    live: &mut [Live],
    calls: u32,
    round: &mut u32,
) -> Result<Vec<(Vec<Point>, bool)>> {
    let mut searches = vec![Search::new(rig.cfg.limits); live.len()];
    let mut points: Vec<Vec<Point>> = vec![Vec::new(); live.len()];
    loop {
        let mut measured = false;
        for ((l, s), pts) in live.iter_mut().zip(&mut searches).zip(&mut points) {
            let Some(target) = s.next() else { continue };
            measured = true;
            *round += 1;
            let p = point(rig, l, calls, target, *round).with_context(|| {
                format!(
                    "{} at {calls} calls, {target} pps (relay log: {})",
                    l.relay.kind.name(),
                    l.relay.log.display()
                )
            })?;
            if let Ok(Some(status)) = l.relay.child.0.try_wait() {
                bail!(
                    "{} exited during a point: {status} (log: {})",
                    l.relay.kind.name(),
                    l.relay.log.display()
                );
            }
            eprintln!("{}", report::line(l.relay.kind, calls, &p));
            s.record(p.rate(), p.passed, p.short);
            pts.push(p);
        }
        if !measured {
            break;
        }
    }
    Ok(points
        .into_iter()
        .zip(searches)
        .map(|(p, s)| (p, s.sender_bound()))
        .collect())
}

/// Latency points of every relay at `calls` calls: each share of
/// [`LATENCY_LEVELS`] of its sustained rate, the relays taking turns.
fn latency_group(
    rig: &Rig<'_>,
    live: &[Live],
    calls: u32,
    searched: &[(Vec<Point>, bool)],
    round: &mut u32,
) -> Result<Vec<Vec<LatencyPoint>>> {
    let mut out = vec![Vec::new(); live.len()];
    for level in LATENCY_LEVELS {
        for ((l, (points, _)), pts) in live.iter().zip(searched).zip(&mut out) {
            let Some(sustained) = points.iter().filter(|p| p.passed).map(Point::rate).max() else {
                continue;
            };
            let target = ((sustained as f64 * level) as u64).max(1);
            *round += 1;
            let point = warm_point(rig, l, calls, target, *round)?;
            eprintln!(
                "{}  [latency at {:.0} % of {sustained}]",
                report::line(l.relay.kind, calls, &point),
                level * 100.0
            );
            pts.push(LatencyPoint { level, point });
        }
    }
    Ok(out)
}

/// How long a latency point sends before its window: the calls' first
/// packets take relayd's socket until their endpoints are confirmed and
/// the streams are in the kernel (tens of ms); the latency figures are
/// the steady state's.
const WARM_UP: Duration = Duration::from_secs(1);

/// [`point`] for latency: the calls set up, [`WARM_UP`] of traffic at
/// `target`, then the measured window.
fn warm_point(rig: &Rig<'_>, l: &Live, calls: u32, target: u64, round: u32) -> Result<Point> {
    let tag = format!("lat{round}");
    let ns = &rig.bed.relay;
    let est = calls::establish_tagged(ns, l.relay.ng, &tag, calls, rig.cfg.setup_budget)?;
    let measured = match &est.stopped {
        Some(why) => Err(anyhow::anyhow!("set-up stopped: {why}")),
        None => measure_point_for(rig, l.measured(), target, &est.flows, WARM_UP)
            .and_then(|_| measure_point(rig, l.measured(), target, &est.flows)),
    };
    calls::delete(ns, l.relay.ng, &tag, calls)?;
    let mut p = measured?;
    p.setup = est.elapsed;
    Ok(p)
}

/// The floor of the latency figures: no relay, `bench_bounce` sending
/// every frame straight back on the relay veth, at each of `rates` (pps)
/// over the flows of `calls` calls. Needs a fresh bed (no relay running).
pub fn floor(cfg: &Config, calls: u32, rates: &[u64]) -> Result<Vec<LatencyPoint>> {
    let bed = Bed::new(&[calls])?;
    let (traffic, ifindex) = attach_sink(&bed, true)?;
    let _bounce = bed
        .relay
        .run(|| crate::traffic::Bounce::attach(RELAY_IF))??;
    let flows: Vec<Flow> = (0..calls)
        .flat_map(|i| super::bed::static_call(0, i).1)
        .collect();
    let rig = Rig {
        cfg,
        bed: &bed,
        traffic: &traffic,
        ifindex,
    };
    let me = Measured {
        pid: std::process::id(),
        maps: None,
    };
    let mut out = Vec::new();
    for &rate in rates {
        let point = measure_point(&rig, me, rate, &flows)?;
        eprintln!(
            "   XDP bounce (no relay), {calls} calls' flows, {rate} pps: loss {:.3} %, p50 {:?}",
            point.loss * 100.0,
            point.latency.as_ref().and_then(|l| l.percentile(0.5))
        );
        out.push(LatencyPoint { level: 0.0, point });
    }
    Ok(out)
}

/// Starts every relay for `calls` calls (no calls set up yet).
fn start(cfg: &Config, bed: &Bed, calls: u32) -> Result<Vec<Live>> {
    let mut live = Vec::new();
    for (slot, &kind) in cfg.relays.iter().enumerate() {
        eprintln!("== {} for {calls} calls per point", kind.name());
        let relay = relays::start(kind, slot, &bed.relay, &cfg.relayd, calls)?;
        calls::wait_for_ng(&bed.relay, relay.ng)
            .map_err(|e| e.context(format!("relay log: {}", relay.log.display())))?;
        let maps = match (kind, relay.pin_dir()) {
            (Kind::RelaydXdp, Some(dir)) => Some(
                RelayMaps::open_pinned(&versioned_dir(dir))
                    .context("opening relayd's pinned maps")?,
            ),
            _ => None,
        };
        live.push(Live { relay, maps });
    }
    Ok(live)
}

/// Sets `calls` fresh calls up on `l`, measures one point at `target` pps
/// and deletes them again (also when the measurement failed, so the next
/// point starts with none).
fn point(rig: &Rig<'_>, l: &Live, calls: u32, target: u64, round: u32) -> Result<Point> {
    let tag = format!("sus{round}");
    let ns = &rig.bed.relay;
    let est = calls::establish_tagged(ns, l.relay.ng, &tag, calls, rig.cfg.setup_budget)?;
    let measured = match &est.stopped {
        Some(why) => Err(anyhow::anyhow!(
            "set-up stopped after {} of {calls} calls: {why}",
            est.flows.len() / 2
        )),
        None => measure_point(rig, l.measured(), target, &est.flows),
    };
    calls::delete(ns, l.relay.ng, &tag, calls)?;
    let mut p = measured?;
    p.setup = est.elapsed;
    Ok(p)
}

/// Counters around a point.
struct Snapshot {
    received: u64,
    latency: Option<crate::latency::Recorded>,
    xdp: Option<Counters>,
    udp: netstat::Udp,
    relay_link: netstat::Link,
    traffic_link: netstat::Link,
    cpu: cpu::Snapshot,
}

impl Snapshot {
    fn take(rig: &Rig<'_>, l: Measured<'_>) -> Result<Self> {
        Ok(Snapshot {
            received: rig.traffic.received()?,
            latency: rig.cfg.latency.then(|| rig.traffic.latency()).transpose()?,
            xdp: l
                .maps
                .map(RelayMaps::counters)
                .transpose()
                .context("reading relayd's counters")?,
            udp: netstat::udp(&rig.bed.relay)?,
            relay_link: netstat::link(&rig.bed.relay, RELAY_IF)?,
            traffic_link: netstat::link(&rig.bed.traffic, TRAFFIC_IF)?,
            cpu: cpu::snapshot(l.pid)?,
        })
    }
}

/// Sends `target` pps over `flows` for the window, waits for the relay to
/// drain, and works out loss and counter changes.
fn measure_point(rig: &Rig<'_>, l: Measured<'_>, target: u64, flows: &[Flow]) -> Result<Point> {
    measure_point_for(rig, l, target, flows, rig.cfg.window)
}

/// [`measure_point`] sending for `window`.
fn measure_point_for(
    rig: &Rig<'_>,
    l: Measured<'_>,
    target: u64,
    flows: &[Flow],
    window: Duration,
) -> Result<Point> {
    let traffic = rig.traffic;
    // Nothing of the previous point may still be on its way.
    measure::settle(traffic)?;
    rig.bed.confine_receive()?;
    let before = Snapshot::take(rig, l)?;
    let maps = l.maps;
    let (sent, summary) = rig.bed.traffic.run(|| -> Result<_> {
        measure::pin_to_cpu0()?;
        let mut sender = PacedSender::new(rig.ifindex, TRAFFIC_MAC, RELAY_MAC, flows)?;
        let mut timeline = Timeline::new(traffic, maps);
        let sent = sender.run(target, window, |at, n| timeline.tick(at, n))?;
        Ok((sent, timeline.summary()))
    })??;
    let cpu_end = cpu::snapshot(l.pid)?;
    measure::settle(traffic)?;
    let after = Snapshot::take(rig, l)?;
    let received = after.received.saturating_sub(before.received);
    let loss = if sent.packets > 0 {
        1.0 - received as f64 / sent.packets as f64
    } else {
        0.0
    };
    Ok(Point {
        target,
        sent,
        received,
        loss,
        passed: loss <= rig.cfg.max_loss,
        short: (sent.packets as f64) < 0.95 * sent.due as f64,
        setup: Duration::ZERO,
        deltas: Deltas {
            xdp: after.xdp.zip(before.xdp).map(|(a, b)| a.since(&b)),
            udp: after.udp.since(&before.udp),
            relay_link: after.relay_link.since(&before.relay_link),
            traffic_link: after.traffic_link.since(&before.traffic_link),
            cpu: cpu::usage(&before.cpu, &cpu_end, measure::cores()),
        },
        timeline: summary,
        latency: after.latency.zip(before.latency).map(|(a, b)| a.since(&b)),
    })
}
