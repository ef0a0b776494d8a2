//! The latency points of a sustained run: a Markdown table (p50, p99,
//! p99.9 one-way, added jitter, per relay and share of its sustained rate,
//! beside the no-relay floor at the same rates) and an SVG plot of the
//! percentiles against the offered rate.

use std::fmt::Write as _;

use super::{LatencyPoint, Outcome};
use crate::throughput::relays::Kind;

fn us(d: Option<std::time::Duration>) -> String {
    d.map_or("-".into(), |d| format!("{}", d.as_micros()))
}

fn jitter_us(p: &LatencyPoint) -> String {
    p.point
        .latency
        .as_ref()
        .and_then(|l| l.jitter())
        .map_or("-".into(), |d| {
            format!("{:.1}", d.as_nanos() as f64 / 1000.0)
        })
}

/// The row of `p`: offered rate, loss, percentiles and jitter.
fn cells(p: &LatencyPoint) -> String {
    let l = p.point.latency.as_ref();
    let pct = |q| us(l.and_then(|l| l.percentile(q)));
    format!(
        "{:.0} | {:.3} % | {} | {} | {} | {}",
        p.point.offered_pps(),
        p.point.loss * 100.0,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        jitter_us(p)
    )
}

/// The floor's point nearest to `rate`.
fn nearest(floor: &[LatencyPoint], rate: f64) -> Option<&LatencyPoint> {
    floor.iter().min_by(|a, b| {
        let d = |p: &LatencyPoint| (p.point.offered_pps() - rate).abs();
        d(a).total_cmp(&d(b))
    })
}

/// The Markdown table.
pub fn markdown(outcomes: &[Outcome], floor: &[LatencyPoint]) -> String {
    let mut out = String::from(
        "One-way latency through the relay (sender's stamp to the sink's XDP \
         program, one host clock, 1 µs buckets) and the jitter it adds (mean \
         |D| of consecutive packets of a flow, RFC 3550), fresh calls per \
         point; floor: no relay, an XDP program bouncing the frames on the \
         relay veth, at the nearest rate.\n\n\
         | relay | calls | share of sustained | offered pps | loss | p50 µs | p99 µs | p99.9 µs | jitter µs | \
         floor pps | floor loss | floor p50 | floor p99 | floor p99.9 | floor jitter |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        for p in &o.latency {
            let f =
                nearest(floor, p.point.offered_pps()).map_or("- | - | - | - | - | -".into(), cells);
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} % | {} | {f} |",
                o.kind.name(),
                o.calls,
                p.level * 100.0,
                cells(p)
            );
        }
    }
    out
}

const W: f64 = 900.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 260.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

fn colour(k: Option<Kind>) -> &'static str {
    match k {
        Some(Kind::RelaydXdp) => "#1f77b4",
        Some(Kind::RelaydUserspace) => "#2ca02c",
        Some(Kind::Rtpengine) => "#d62728",
        Some(Kind::RelaydDefault) => "#9467bd",
        None => "#777777",
    }
}

/// Percentiles drawn, with their dash patterns.
const LINES: [(f64, &str, &str); 3] = [
    (0.5, "", "p50"),
    (0.99, "6,4", "p99"),
    (0.999, "2,3", "p99.9"),
];

/// The plot: latency percentiles (µs, log) against offered pps (log), one
/// colour per relay (grey: the floor), one dash per percentile.
pub fn svg(outcomes: &[Outcome], floor: &[LatencyPoint], title: &str) -> String {
    let mut series: Vec<(Option<Kind>, u32, &[LatencyPoint])> = outcomes
        .iter()
        .filter(|o| !o.latency.is_empty())
        .map(|o| (Some(o.kind), o.calls, o.latency.as_slice()))
        .collect();
    if !floor.is_empty() {
        series.push((None, 0, floor));
    }
    let values = |f: &dyn Fn(&LatencyPoint) -> Option<f64>| -> Vec<f64> {
        series
            .iter()
            .flat_map(|(_, _, pts)| pts.iter())
            .filter_map(f)
            .filter(|v| *v > 0.0)
            .collect()
    };
    let xs = values(&|p| Some(p.point.offered_pps()));
    let ys = values(&|p| {
        let l = p.point.latency.as_ref()?;
        Some(l.percentile(0.999)?.as_micros() as f64)
    });
    let lows = values(&|p| {
        let l = p.point.latency.as_ref()?;
        Some(l.percentile(0.5)?.as_micros() as f64)
    });
    let range = |v: &[f64], lo_default: f64| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min).min(lo_default);
        let hi = v.iter().copied().fold(1.0, f64::max);
        let lo_e = lo.max(1.0).log10().floor() as i32;
        (lo_e, (hi.log10().ceil() as i32).max(lo_e + 1))
    };
    let (x_lo, x_hi) = range(&xs, 1e4);
    let (y_lo, y_hi) = range(&[ys, lows].concat(), 10.0);
    let x = |v: f64| {
        LEFT + (v.max(1.0).log10() - f64::from(x_lo)) / f64::from(x_hi - x_lo) * (W - LEFT - RIGHT)
    };
    let y = |v: f64| {
        H - BOTTOM
            - (v.max(1.0).log10() - f64::from(y_lo)) / f64::from(y_hi - y_lo) * (H - TOP - BOTTOM)
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>"#,
        (W - RIGHT + LEFT) / 2.0
    );
    for e in x_lo..=x_hi {
        let px = x(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{px}" y1="{TOP}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            10f64.powi(e)
        );
    }
    for e in y_lo..=y_hi {
        let py = y(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            10f64.powi(e)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">offered packets per second</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">one-way latency, µs</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        H - 12.0,
        H / 2.0,
        H / 2.0
    );
    let mut legend_y = TOP + 10.0;
    for (kind, calls, pts) in &series {
        let name = match kind {
            Some(k) => format!("{} ({calls} calls)", k.name()),
            None => "floor: XDP bounce, no relay".into(),
        };
        for (q, dash, qname) in LINES {
            let mut sorted: Vec<&LatencyPoint> = pts.iter().collect();
            sorted.sort_by(|a, b| a.point.offered_pps().total_cmp(&b.point.offered_pps()));
            let path: Vec<String> = sorted
                .iter()
                .filter_map(|p| {
                    let v = p.point.latency.as_ref()?.percentile(q)?.as_micros() as f64;
                    Some(format!("{:.1},{:.1}", x(p.point.offered_pps()), y(v)))
                })
                .collect();
            if path.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                path.join(" "),
                colour(*kind)
            );
            let lx = W - RIGHT + 12.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{name} {qname}</text>"#,
                lx + 24.0,
                colour(*kind),
                lx + 30.0,
                legend_y + 4.0
            );
            legend_y += 16.0;
        }
    }
    s.push_str("</svg>\n");
    s
}
