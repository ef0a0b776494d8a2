//! The sustained-rate results: a line per point while running, then
//! Markdown tables (the sustained rate per relay and call count with the
//! counters at the first failing rate, and every point).

use std::fmt::Write as _;

use relay_common::CounterId;
use relay_userspace::datapath::Counters;

use super::{Config, Deltas, Outcome, Point};
use crate::throughput::{relays::Kind, report::rate};

/// Packets relayd XDP counted under `id` during the point (0 without XDP).
fn xdp(d: &Deltas, id: CounterId) -> u64 {
    d.xdp.as_ref().map_or(0, |c| c.packets(id))
}

/// Packets relayd XDP dropped, whatever the reason.
fn xdp_dropped(d: &Deltas) -> u64 {
    d.xdp.as_ref().map_or(0, |c| {
        CounterId::ALL
            .iter()
            .filter(|id| id.is_dropped())
            .map(|&id| c.packets(id))
            .sum()
    })
}

/// relayd XDP's counters besides the ones tables have columns for.
fn xdp_others(d: &Deltas) -> String {
    let Some(c) = &d.xdp else {
        return String::new();
    };
    let shown = [
        CounterId::FwdTx,
        CounterId::FwdRedirect,
        CounterId::PassToUserspace,
        CounterId::PassNoStream,
    ];
    CounterId::ALL
        .iter()
        .filter(|id| !shown.contains(id) && c.packets(**id) > 0)
        .map(|&id| format!(" {}={}", id.name(), c.packets(id)))
        .collect()
}

/// Every non-zero counter, by name.
pub fn nonzero(c: &Counters) -> String {
    CounterId::ALL
        .iter()
        .filter(|&&id| c.packets(id) > 0)
        .map(|&id| format!("{}={}", id.name(), c.packets(id)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Frames the veth dropped toward the relay and back. veth counts a drop
/// at both ends (the sender's tx, the receiver's rx), so each direction
/// takes the larger of its two counts.
fn veth_drops(d: &Deltas) -> (u64, u64) {
    let (r, t) = (&d.relay_link, &d.traffic_link);
    (
        t.tx_dropped.max(r.rx_dropped),
        r.tx_dropped.max(t.rx_dropped),
    )
}

fn veth_text(d: &Deltas) -> String {
    let (to, back) = veth_drops(d);
    format!("{to} / {back}")
}

fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

/// The point's counters in one run of text.
fn counters_text(d: &Deltas) -> String {
    let mut s = String::new();
    if let Some(c) = &d.xdp {
        let _ = write!(
            s,
            "xdp fwd {} to-userspace {} no-stream {}{}; ",
            c.forwarded(),
            c.packets(CounterId::PassToUserspace),
            c.packets(CounterId::PassNoStream),
            xdp_others(d)
        );
    }
    let _ = write!(
        s,
        "udp read {} rcvbuf {} noports {}; veth drops toward relay / back {}; \
         relay {:.0} % softirq {:.0} % steal {:.0} %",
        d.udp.in_datagrams,
        d.udp.rcvbuf_errors,
        d.udp.no_ports,
        veth_text(d),
        d.cpu.process,
        d.cpu.softirq,
        d.cpu.steal
    );
    s
}

/// One point as the bench logs it while running.
pub fn line(kind: Kind, calls: u32, p: &Point) -> String {
    let t = &p.timeline;
    let mut s = format!(
        "   {:<16} {:>5} calls  target {:>8}  offered {:>8} pps{}  sent {:>8}  back {:>8}  loss {:>7.3} % {}\n      {}\n      ",
        kind.name(),
        calls,
        rate(p.target as f64),
        rate(p.offered_pps()),
        if p.short { " (short)" } else { "" },
        p.sent.packets,
        p.received,
        p.loss * 100.0,
        if p.passed { "ok" } else { "FAIL" },
        counters_text(&p.deltas),
    );
    if p.deltas.xdp.is_some() {
        let _ = write!(
            s,
            "first XDP fwd {}, passing to userspace until {}; ",
            ms(t.first_forward),
            ms(t.learning_until)
        );
    }
    let _ = write!(
        s,
        "deficit after 100 ms {}, per second {:?}",
        t.deficit_early, t.per_second
    );
    if let Some((at, d)) = t.worst {
        let _ = write!(s, ", worst 50 ms +{d} at {:.2} s", at.as_secs_f64());
    }
    let _ = write!(
        s,
        "; set-up {:.2} s; sender: largest tick {}, latest wake-up {} µs{}",
        p.setup.as_secs_f64(),
        p.sent.largest_batch,
        p.sent.worst_lateness.as_micros(),
        if p.sent.skipped > 0 || p.sent.refused > 0 {
            format!(
                ", {} skipped, {} refused by the veth",
                p.sent.skipped, p.sent.refused
            )
        } else {
            String::new()
        }
    );
    s
}

/// The sustained rate of an outcome as the table shows it.
fn sustained_text(o: &Outcome) -> String {
    let Some(p) = o.sustained() else {
        return format!(
            "< {}",
            rate(o.points.iter().map(Point::rate).min().unwrap_or(0) as f64)
        );
    };
    let mut s = rate(p.offered_pps());
    if o.capped {
        s.push_str(" (the cap)");
    } else if o.sender_bound {
        s.push_str(" (sender-bound)");
    }
    s
}

/// The Markdown tables.
pub fn markdown(cfg: &Config, outcomes: &[Outcome]) -> String {
    let limit = cfg.max_loss * 100.0;
    let mut out = format!(
        "Sustained: evenly paced RTP (172-byte payloads), fresh calls per point, \
         loss ≤ {limit} % over {:.0} s.\n\n\
         | relay | calls | sustained pps | first failing rate | loss there | \
         XDP to userspace / no stream / forwarded / dropped there | UDP read / rcvbuf drops there | \
         veth drops toward relay / back there | deficit after 100 ms / worst 50 ms there | points |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        cfg.window.as_secs_f64()
    );
    for o in outcomes {
        let fail = o.first_failing();
        let cell = |f: &dyn Fn(&Point) -> String| fail.map_or("-".into(), f);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.kind.name(),
            o.calls,
            sustained_text(o),
            cell(&|p| rate(p.offered_pps())),
            cell(&|p| format!("{:.2} %", p.loss * 100.0)),
            cell(&|p| match &p.deltas.xdp {
                Some(c) => format!(
                    "{} / {} / {} / {}",
                    c.packets(CounterId::PassToUserspace),
                    c.packets(CounterId::PassNoStream),
                    c.forwarded(),
                    xdp_dropped(&p.deltas)
                ),
                None => "-".into(),
            }),
            cell(&|p| format!(
                "{} / {}",
                p.deltas.udp.in_datagrams, p.deltas.udp.rcvbuf_errors
            )),
            cell(&|p| veth_text(&p.deltas)),
            cell(&|p| format!(
                "{} / {}",
                p.timeline.deficit_early,
                p.timeline.worst.map_or(0, |w| w.1)
            )),
            o.points.len(),
        );
    }
    out.push_str(
        "\n| relay | calls | target | offered pps | loss | XDP fwd | to userspace | no stream | \
         XDP dropped | UDP read | rcvbuf drops | veth drops toward relay / back | first XDP fwd | \
         to userspace until | deficit after 100 ms | deficit growth per s | sender skipped / latest wake-up | relay CPU | softirq |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        for p in &o.points {
            let d = &p.deltas;
            let t = &p.timeline;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}{} | {:.3} %{} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {:?} | {} / {:.0} ms | {:.0} % | {:.0} % |",
                o.kind.name(),
                o.calls,
                rate(p.target as f64),
                rate(p.offered_pps()),
                if p.short { " (short)" } else { "" },
                p.loss * 100.0,
                if p.passed { "" } else { " ✗" },
                xdp(d, CounterId::FwdTx) + xdp(d, CounterId::FwdRedirect),
                xdp(d, CounterId::PassToUserspace),
                xdp(d, CounterId::PassNoStream),
                xdp_dropped(d),
                xdp_others(d),
                d.udp.in_datagrams,
                d.udp.rcvbuf_errors,
                veth_text(d),
                ms(t.first_forward),
                ms(t.learning_until),
                t.deficit_early,
                t.per_second,
                p.sent.skipped,
                p.sent.worst_lateness.as_secs_f64() * 1e3,
                d.cpu.process,
                d.cpu.softirq,
            );
        }
    }
    out
}
