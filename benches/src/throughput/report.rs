//! The benchmark's results as Markdown: one table of every point, then the
//! ratios against rtpengine measured in the same run.

use std::fmt::Write as _;

use super::{calls_label, relays::Kind, RelayRun, Setup};

/// A rate as tables show it: 117, 24.7 k, 1.57 M.
pub(crate) fn rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} M", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} k", pps / 1e3)
    } else {
        format!("{pps:.0}")
    }
}

/// Highest forwarded rate of a run over all its points.
pub fn peak(run: &RelayRun) -> f64 {
    run.points
        .iter()
        .map(|p| p.forwarded_pps)
        .fold(0.0, f64::max)
}

/// The Markdown tables.
pub fn markdown(runs: &[RelayRun]) -> String {
    let mut out = String::new();
    out.push_str(
        "| relay | calls | offered (asked) | offered pps | forwarded pps | loss | relay process CPU | softirq CPU | CPU 0 / CPU 1 busy |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let calls = r.calls_label();
        for p in &r.points {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} % | {:.0} % | {:.0} % | {} |",
                r.kind.name(),
                calls,
                p.target.map_or("max".to_owned(), |t| rate(t as f64)),
                rate(p.offered_pps),
                rate(p.forwarded_pps),
                p.loss * 100.0,
                p.cpu.process,
                p.cpu.softirq,
                p.cpu
                    .per_cpu
                    .iter()
                    .map(|c| format!("{c:.0} %"))
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
        }
    }
    out.push('\n');
    out.push_str(
        "| calls | relayd XDP peak | relayd userspace peak | rtpengine peak | XDP / rtpengine | userspace / rtpengine |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut groups: Vec<(u32, Setup)> = runs.iter().map(|r| (r.calls, r.setup_by)).collect();
    groups.dedup();
    for (calls, setup_by) in groups {
        let group = || {
            runs.iter()
                .filter(move |r| r.calls == calls && r.setup_by == setup_by)
        };
        let get = |k: Kind| group().find(|r| r.kind == k).map(peak);
        let (x, u, e) = (
            get(Kind::RelaydXdp),
            get(Kind::RelaydUserspace),
            get(Kind::Rtpengine),
        );
        // A baseline that lost over half of what it got at every rate (rtpengine's
        // flood guard with one call) gives a ratio that means nothing.
        let collapsed = group()
            .find(|r| r.kind == Kind::Rtpengine)
            .is_some_and(|r| r.points.iter().all(|p| p.loss > 0.5));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), rate);
        let ratio = |a: Option<f64>| match (a, e) {
            _ if collapsed => "- (rtpengine lost over half at every rate)".to_owned(),
            (Some(a), Some(e)) if e > 0.0 => format!("{:.1}×", a / e),
            _ => "-".to_owned(),
        };
        // Fewer calls than asked (the open-files limit): say how many ran.
        let established = group().map(|r| r.established).min().unwrap_or(calls);
        let label = calls_label(calls, established, setup_by);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} |",
            show(x),
            show(u),
            show(e),
            ratio(x),
            ratio(u)
        );
    }
    for r in runs {
        let how = match r.setup_by {
            Setup::Ng => "set up over NG",
            Setup::Static => "installed as static streams at start-up",
        };
        let _ = write!(
            out,
            "\n{} with {} calls: {} {how} in {:.1} s",
            r.kind.name(),
            r.calls,
            r.established,
            r.setup.as_secs_f64()
        );
        if let Some(why) = &r.stopped {
            let _ = write!(out, " (stopped: {why})");
        }
        out.push('.');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throughput::measure::Point;

    fn run(kind: Kind, calls: u32, established: u32, forwarded_pps: f64) -> RelayRun {
        RelayRun {
            kind,
            calls,
            setup_by: Setup::Ng,
            established,
            setup: std::time::Duration::from_secs(1),
            stopped: None,
            points: vec![Point {
                target: None,
                offered_pps: forwarded_pps,
                forwarded_pps,
                loss: 0.0,
                cpu: Default::default(),
                rcvbuf_drops_pps: 0.0,
            }],
        }
    }

    #[test]
    fn summary_says_how_many_calls_ran_when_fewer_than_asked() {
        let runs = [
            run(Kind::RelaydXdp, 1000, 1000, 4e6),
            run(Kind::Rtpengine, 1000, 1000, 1e5),
            run(Kind::RelaydXdp, 100_000, 4800, 4e6),
            run(Kind::Rtpengine, 100_000, 4800, 2e5),
            RelayRun {
                setup_by: Setup::Static,
                ..run(Kind::RelaydXdp, 100_000, 100_000, 3e6)
            },
        ];
        let md = markdown(&runs);
        assert!(
            md.contains("\n| 1000 | 4.00 M | - | 100.0 k | 40.0× | - |"),
            "{md}"
        );
        assert!(
            md.contains("\n| 4800 of 100000 | 4.00 M | - | 200.0 k | 20.0× | - |"),
            "{md}"
        );
        // Static streams are a group of their own, without a baseline.
        assert!(
            md.contains("\n| 100000, static streams | 3.00 M | - | - | - | - |"),
            "{md}"
        );
        assert!(
            md.contains("| relayd XDP | 100000, static streams | max | 3.00 M |"),
            "{md}"
        );
        assert!(
            md.contains("100000 installed as static streams at start-up"),
            "{md}"
        );
    }
}
