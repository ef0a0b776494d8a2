//! `relayctl top`: a live view of a running relayd, refreshed every second
//! from its CLI socket, until `q` (or Ctrl-C).

use std::{
    collections::{HashMap, VecDeque},
    io::{stdout, Write as _},
    time::{Duration, Instant},
};

use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyModifiers},
    execute, queue,
    style::Print,
    terminal::{self, ClearType},
};
use serde_json::{json, Value};

use super::{request, CliError};

/// Seconds of history in the sparkline.
const HISTORY: usize = 60;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Restores the terminal however `run` ends.
struct Screen;

impl Screen {
    fn enter() -> std::io::Result<Self> {
        // The guard exists before the terminal changes, so a failure half
        // way still restores it.
        let screen = Screen;
        terminal::enable_raw_mode()?;
        execute!(stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Kernel + userspace packets of a totals or call reply.
fn packets(totals: &Value) -> u64 {
    n(&totals["kernel"]["packets"]) + n(&totals["userspace"]["packets"])
}

fn sparkline(history: &VecDeque<f64>) -> String {
    let max = history.iter().copied().fold(0.0, f64::max);
    history
        .iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// Runs until `q`; the first failure to reach relayd ends it.
pub fn run(cli: &str) -> Result<(), CliError> {
    // Fail before taking over the terminal when relayd is not there.
    request(cli, &json!({"command": "totals"}))?;
    let _screen = Screen::enter().map_err(|e| CliError::Unreachable(format!("terminal: {e}")))?;
    let mut history: VecDeque<f64> = VecDeque::with_capacity(HISTORY);
    let mut last: Option<(Instant, u64, HashMap<String, u64>)> = None;
    loop {
        let totals = request(cli, &json!({"command": "totals"}))?;
        let calls = request(cli, &json!({"command": "calls"}))?;
        let now = Instant::now();
        let total = packets(&totals);
        let per_call: HashMap<String, u64> = calls
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["call_id"].as_str().unwrap_or("").to_owned(),
                    n(&c["totals"]["packets"]),
                )
            })
            .collect();
        let (pps, mut rates): (f64, Vec<(String, f64)>) = match &last {
            Some((then, before, before_calls)) => {
                let secs = now.duration_since(*then).as_secs_f64().max(0.001);
                let rates = per_call
                    .iter()
                    .map(|(id, p)| {
                        (
                            id.clone(),
                            p.saturating_sub(*before_calls.get(id).unwrap_or(p)) as f64 / secs,
                        )
                    })
                    .collect();
                (total.saturating_sub(*before) as f64 / secs, rates)
            }
            None => (0.0, per_call.keys().map(|id| (id.clone(), 0.0)).collect()),
        };
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(pps);
        rates.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        draw(&totals, pps, &history, &rates, &calls)
            .map_err(|e| CliError::Unreachable(format!("terminal: {e}")))?;
        last = Some((now, total, per_call));
        let deadline = now + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if !event::poll(left).unwrap_or(false) {
                break;
            }
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if k.code == KeyCode::Char('q') || k.code == KeyCode::Esc || ctrl_c {
                    return Ok(());
                }
            }
        }
    }
}

/// A call's RTP loss (all streams, % of expected) and worst stream jitter,
/// as table cells ("-" before any RTP).
fn call_quality(call: &Value) -> (String, String) {
    let (mut rtp, mut lost, mut jitter) = (0u64, 0u64, None::<u64>);
    for s in super::streams_of(call) {
        let q = &s["rtp_quality"];
        rtp += n(&q["rtp_packets"]);
        lost += n(&q["lost"]);
        if let Some(us) = q["jitter_us"].as_u64() {
            jitter = Some(jitter.map_or(us, |j| j.max(us)));
        }
    }
    if rtp + lost == 0 {
        return ("-".into(), "-".into());
    }
    (
        format!("{:.1}", 100.0 * lost as f64 / (rtp + lost) as f64),
        jitter.map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
    )
}

fn draw(
    totals: &Value,
    pps: f64,
    history: &VecDeque<f64>,
    rates: &[(String, f64)],
    calls: &Value,
) -> std::io::Result<()> {
    let (_, rows) = terminal::size().unwrap_or((80, 24));
    let mut out = stdout();
    queue!(out, terminal::Clear(ClearType::All), cursor::MoveTo(0, 0))?;
    let mut line = |text: String| queue!(out, Print(text), Print("\r\n"));
    line(format!(
        "xrelay top - {} calls ({} since start)   {:.0} pkt/s   q quits",
        n(&totals["sessions"]),
        n(&totals["sessions_total"]),
        pps
    ))?;
    line(format!(
        "packets: kernel {}  userspace {}   dropped: xdp {}  userspace {}",
        n(&totals["kernel"]["packets"]),
        n(&totals["userspace"]["packets"]),
        totals["xdp"].as_object().map_or(0, |x| x
            .iter()
            .filter(|(k, _)| k.starts_with("dropped"))
            .map(|(_, v)| n(v))
            .sum()),
        n(&totals["userspace_dropped"]),
    ))?;
    for p in totals["ports"].as_array().into_iter().flatten() {
        line(format!(
            "ports {}: {} used, {} free",
            p["interface"].as_str().unwrap_or(""),
            n(&p["used"]),
            n(&p["free"])
        ))?;
    }
    let rtp = &totals["rtp"];
    line(format!(
        "rtp: {} streams  {} packets lost  worst jitter {:.1} ms",
        n(&rtp["streams"]),
        n(&rtp["lost"]),
        n(&rtp["max_jitter_us"]) as f64 / 1000.0
    ))?;
    line(format!("pkt/s {}", sparkline(history)))?;
    line(String::new())?;
    line(format!(
        "{:<40} {:>10} {:>8} {:>12} {:>7} {:>9}",
        "CALL-ID", "PKT/S", "KERNEL", "PACKETS", "LOSS%", "JITTER"
    ))?;
    let by_id: HashMap<&str, &Value> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["call_id"].as_str().unwrap_or(""), c))
        .collect();
    for (id, rate) in rates.iter().take(usize::from(rows.saturating_sub(8))) {
        let call = by_id.get(id.as_str()).copied().unwrap_or(&Value::Null);
        let kernel = super::streams_of(call)
            .iter()
            .filter(|s| s["kernelized"] == true)
            .count();
        let (loss, jitter) = call_quality(call);
        line(format!(
            "{:<40} {:>10.0} {:>8} {:>12} {:>7} {:>9}",
            id,
            rate,
            kernel,
            n(&call["totals"]["packets"]),
            loss,
            jitter
        ))?;
    }
    out.flush()
}
