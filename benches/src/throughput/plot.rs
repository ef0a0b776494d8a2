//! Forwarded against offered pps, log-log, one colour per relay and one
//! dash pattern per call count, as a self-contained SVG (no fonts or
//! plotting library needed).

use std::fmt::Write as _;

use super::{relays::Kind, RelayRun};

const W: f64 = 900.0;
const H: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 320.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn colour(k: Kind) -> &'static str {
    match k {
        Kind::RelaydXdp => "#1f77b4",
        Kind::RelaydUserspace => "#2ca02c",
        Kind::Rtpengine => "#d62728",
        Kind::RelaydDefault => "#9467bd",
    }
}

fn dash(i: usize) -> &'static str {
    ["", "6,4", "2,3", "10,3,2,3"][i % 4]
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// The plot of `runs` as an SVG document.
pub fn svg(runs: &[RelayRun], title: &str) -> String {
    let values = runs
        .iter()
        .flat_map(|r| &r.points)
        .flat_map(|p| [p.offered_pps, p.forwarded_pps])
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo_exp = lo.min(hi).log10().floor().max(2.0) as i32;
    let hi_exp = (hi.log10().ceil() as i32).max(lo_exp + 1);
    let span = f64::from(hi_exp - lo_exp);
    let x = |v: f64| LEFT + (v.max(1.0).log10() - f64::from(lo_exp)) / span * (W - LEFT - RIGHT);
    let y =
        |v: f64| H - BOTTOM - (v.max(1.0).log10() - f64::from(lo_exp)) / span * (H - TOP - BOTTOM);
    let clamp = |v: f64| v.clamp(10f64.powi(lo_exp), 10f64.powi(hi_exp));

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
    for e in lo_exp..=hi_exp {
        let v = 10f64.powi(e);
        let (px, py) = (x(v), y(v));
        let _ = writeln!(
            s,
            r##"<line x1="{px}" y1="{TOP}" x2="{px}" y2="{}" stroke="#ddd"/><line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/>"##,
            H - BOTTOM,
            W - RIGHT
        );
        let _ = writeln!(
            s,
            r#"<text x="{px}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            H - BOTTOM + 16.0,
            label(v),
            LEFT - 6.0,
            py + 4.0,
            label(v)
        );
    }
    // Forwarded = offered: no loss.
    let (a, b) = (10f64.powi(lo_exp), 10f64.powi(hi_exp));
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="1,3"/>"##,
        x(a),
        y(a),
        x(b),
        y(b)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">offered pps (generator)</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">forwarded pps (sink)</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        (H - BOTTOM + TOP) / 2.0
    );
    let mut groups: Vec<String> = runs.iter().map(|r| r.calls_label()).collect();
    groups.dedup();
    let mut legend_y = TOP + 10.0;
    for r in runs {
        let mut pts: Vec<(f64, f64)> = r
            .points
            .iter()
            .map(|p| (clamp(p.offered_pps), clamp(p.forwarded_pps)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let label = r.calls_label();
        let d = dash(groups.iter().position(|g| *g == label).unwrap_or(0));
        let path: Vec<String> = pts
            .iter()
            .map(|(o, f)| format!("{:.1},{:.1}", x(*o), y(*f)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{d}"/>"#,
            path.join(" "),
            colour(r.kind)
        );
        for (o, f) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                x(*o),
                y(*f),
                colour(r.kind)
            );
        }
        let lx = W - RIGHT + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="2" stroke-dasharray="{d}"/><text x="{}" y="{}">{}, calls: {label}</text>"#,
            lx + 28.0,
            colour(r.kind),
            lx + 34.0,
            legend_y + 4.0,
            r.kind.name(),
        );
        legend_y += 18.0;
    }
    s.push_str("</svg>\n");
    s
}
