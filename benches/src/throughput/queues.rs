//! Does the fast path scale with receive queues? relayd XDP forwarding
//! `calls` calls (static streams: no NG, no learning) flooded unpaced by one
//! generator lane (one CPU, one veth queue) and by two (each CPU sending
//! flows of its own into its own queue, as RSS spreads flows), beside the
//! same two runs through an XDP program that only bounces the frames: the
//! bounce's ratio is what the veth pair and the generator allow, so a
//! relay ratio below it is the relay's own shared state (program-wide
//! counters, the address table, stream records) limiting it.
//!
//! Then one stream alone, its packets sent from both lanes (as when a
//! flood from many sources is spread over the queues): both CPUs write the
//! same stream record (atomic counter adds, the RTP figures), and once more
//! with a rate cap above anything offered, which adds the bucket's
//! compare-and-swaps on that record without dropping anything.
//!
//! The rounds alternate 1 and 2 lanes so load from elsewhere hits both.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Result;

use super::{
    bed::{static_call, Bed, RELAY_IF, RELAY_MAC, TRAFFIC_IF, TRAFFIC_MAC},
    measure::{self, Point},
    relays,
};
use crate::traffic::{Bounce, Flow, Traffic};

/// One measured run.
#[derive(Debug, Clone)]
pub struct Run {
    /// "relayd XDP" or the bounce.
    pub what: &'static str,
    /// Generator lanes (= receive queues in use).
    pub lanes: u32,
    /// What it measured.
    pub point: Point,
}

/// Runs `rounds` rounds of 1 and 2 lanes, `seconds` each, through relayd
/// XDP and then through the bounce (needs root and two CPUs).
pub fn run(relayd: &Path, calls: u32, rounds: u32, seconds: f64) -> Result<Vec<Run>> {
    if measure::cores() < 2 {
        anyhow::bail!("needs two CPUs, this machine has {}", measure::cores());
    }
    let length = Duration::from_secs_f64(seconds);
    let bed = Bed::new(&[calls])?;
    let (mut traffic, _) = bed.traffic.run(|| -> Result<(Traffic, u32)> {
        let ifindex = relay_userspace::netdev::ifindex(TRAFFIC_IF)?;
        Ok((
            Traffic::attach(TRAFFIC_IF, ifindex, TRAFFIC_MAC, RELAY_MAC)?,
            ifindex,
        ))
    })??;
    let mut runs = Vec::new();
    {
        let (relay, flows, _) = relays::start_static(0, &bed.relay, relayd, calls)?;
        runs.extend(rounds_of(
            &bed,
            &mut traffic,
            &flows,
            relay.pid(),
            "relayd XDP",
            rounds,
            length,
        )?);
        print_counters(&relay)?;
    }
    // One stream (the caller's direction of the first call, RTP figures on).
    let ([spec, _], [flow, _]) = static_call(0, 0);
    for (what, spec) in [
        ("relayd XDP, one stream", spec.clone()),
        (
            "relayd XDP, one stream, rate cap",
            format!("{spec},max-pps={CAP_ABOVE_ANY}"),
        ),
    ] {
        let (relay, _) = relays::start_static_streams(0, &bed.relay, relayd, 1, &[spec])?;
        runs.extend(rounds_of(
            &bed,
            &mut traffic,
            std::slice::from_ref(&flow),
            relay.pid(),
            what,
            rounds,
            length,
        )?);
        print_counters(&relay)?;
    }
    // relayd stopped and its pins removed: the veth is free for the bounce.
    let flows: Vec<Flow> = (0..calls).flat_map(|i| static_call(0, i).1).collect();
    let _bounce = bed.relay.run(|| Bounce::attach(RELAY_IF))??;
    runs.extend(rounds_of(
        &bed,
        &mut traffic,
        &flows,
        std::process::id(),
        "XDP bounce (no relay)",
        rounds,
        length,
    )?);
    Ok(runs)
}

/// A rate cap no generator here reaches: the bucket is worked on for every
/// packet and never runs dry.
const CAP_ABOVE_ANY: u32 = 1_000_000_000;

/// Prints relayd's program-wide counters (what happened to the packets).
fn print_counters(relay: &relays::Relay) -> Result<()> {
    if let Some(dir) = relay.pin_dir() {
        let maps = relay_userspace::datapath::xdp::RelayMaps::open_pinned(
            &relay_userspace::datapath::xdp::versioned_dir(dir),
        )?;
        eprintln!(
            "   relayd XDP counters: {}",
            super::sustained::report::nonzero(&maps.counters()?)
        );
    }
    Ok(())
}

fn rounds_of(
    bed: &Bed,
    traffic: &mut Traffic,
    flows: &[Flow],
    pid: u32,
    what: &'static str,
    rounds: u32,
    length: Duration,
) -> Result<Vec<Run>> {
    traffic.set_flows(flows)?;
    traffic.set_lanes(1)?;
    let t = &*traffic;
    bed.traffic
        .run(|| measure::pin_to_cpu0().and_then(|()| measure::warm_up(t, flows)))??;
    let mut runs = Vec::new();
    for _ in 0..rounds {
        for lanes in [1, 2] {
            traffic.set_lanes(lanes)?;
            let t = &*traffic;
            let point = bed.traffic.run(|| -> Result<Point> {
                measure::pin_to_cpu0()?;
                measure::settle(t)?;
                measure::measure(t, &bed.relay, pid, None, lanes, length)
            })??;
            eprintln!(
                "   {what:<22} {lanes} lane(s): offered {:>9.0} pps, forwarded {:>9.0} pps, loss {:>5.1} %, CPUs {:?} % busy, softirq {:.0} %",
                point.offered_pps,
                point.forwarded_pps,
                point.loss * 100.0,
                point.cpu.per_cpu.iter().map(|c| c.round()).collect::<Vec<_>>(),
                point.cpu.softirq
            );
            runs.push(Run { what, lanes, point });
        }
    }
    Ok(runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// The Markdown table: median forwarded pps per lane count, and the ratio.
pub fn markdown(runs: &[Run], calls: u32) -> String {
    let mut out = format!(
        "Unpaced flood of {calls} calls' flows (one stream's for the one-stream rows), \
         generator lanes = receive queues in use, median of the rounds.\n\n\
         | path | 1 queue: forwarded pps | 2 queues: forwarded pps | 2 / 1 | softirq, 1 / 2 queues | rounds |\n\
         |---|---|---|---|---|---|\n"
    );
    let mut names: Vec<&str> = runs.iter().map(|r| r.what).collect();
    names.dedup();
    for name in names {
        let of = |lanes: u32, f: &dyn Fn(&Point) -> f64| {
            median(
                runs.iter()
                    .filter(|r| r.what == name && r.lanes == lanes)
                    .map(|r| f(&r.point))
                    .collect(),
            )
        };
        let (one, two) = (of(1, &|p| p.forwarded_pps), of(2, &|p| p.forwarded_pps));
        let _ = writeln!(
            out,
            "| {name} | {one:.0} | {two:.0} | {:.2} | {:.0} % / {:.0} % | {} |",
            two / one.max(1.0),
            of(1, &|p| p.cpu.softirq),
            of(2, &|p| p.cpu.softirq),
            runs.iter()
                .filter(|r| r.what == name && r.lanes == 1)
                .count()
        );
    }
    out
}
