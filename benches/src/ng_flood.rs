//! NG under a flood, relayd against rtpengine: one address sends pings
//! with fresh cookies at a steady rate while a SIP proxy (another address)
//! runs offer/answer/delete cycles, waiting as Kamailio does (1 s) for each
//! reply, and a monitor (a third address) pings every 50 ms. Each relay is
//! measured alone, in the same namespace set-up, one after the other.
//! Reported: the proxy's cycles that succeeded and their latency
//! percentiles, and the monitor's pings answered.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_load::{flood, ping, Proxy},
};

use crate::ng::{cycle_requests, start_relayd, start_rtpengine};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// The relayd binary.
    pub relayd: &'a std::path::Path,
    /// Flood rate, pings per second.
    pub flood_pps: u64,
    /// How long the flood (and the proxy's cycles) last.
    pub length: Duration,
}

/// How one relay fared.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which relay.
    pub name: &'static str,
    /// Pings the flood sent.
    pub flood_sent: u64,
    /// The proxy's cycles: succeeded, tried.
    pub cycles: (u32, u32),
    /// Latency of each request of the successful cycles.
    pub latencies: Vec<Duration>,
    /// The monitor's pings: answered, sent.
    pub pings: (u32, u32),
}

impl Outcome {
    /// Latency percentile `p` (0..=1) of the answered requests.
    pub fn latency(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default()
    }
}

/// How long the proxy and the monitor wait for a reply.
const PROXY_TIMEOUT: Duration = Duration::from_secs(1);
const NG: &str = "127.0.0.1:2223";

/// Measures relayd, then rtpengine.
pub fn run(cfg: &Config) -> Result<Vec<Outcome>> {
    let ns = Netns::new("bfl")?;
    let mut out = Vec::new();
    for name in ["relayd", "rtpengine"] {
        let relay = match name {
            "relayd" => start_relayd(&ns, cfg.relayd, 2223, 20000, None, None)?,
            _ => start_rtpengine(&ns, 2223, 20000)?,
        };
        out.push(measure(&ns, name, cfg)?);
        drop::<ChildGuard>(relay);
        // Let the port and the kernel's socket buffers go before the next.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(out)
}

fn measure(ns: &Netns, name: &'static str, cfg: &Config) -> Result<Outcome> {
    let server: SocketAddr = NG.parse()?;
    let proxy = |source: &str| Proxy::new(ns, source.parse()?, server, PROXY_TIMEOUT);
    let mut probe = proxy("127.0.0.4:0")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe.ok(&ping()).is_none() {
        anyhow::ensure!(Instant::now() < deadline, "{name}: no answer to ping");
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Outcome> {
        let flooder = s.spawn(|| {
            flood(
                ns,
                "127.0.0.66:0".parse()?,
                server,
                cfg.flood_pps,
                cfg.length,
                &stop,
            )
        });
        let monitor = s.spawn(|| -> Result<(u32, u32)> {
            let mut p = proxy("127.0.0.2:0")?;
            let (mut ok, mut all) = (0, 0);
            let start = Instant::now();
            while start.elapsed() < cfg.length {
                all += 1;
                ok += u32::from(p.ok(&ping()).is_some());
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok((ok, all))
        });
        // The proxy starts once the flood runs.
        std::thread::sleep(Duration::from_millis(500));
        let mut p = proxy("127.0.0.3:0")?;
        let (mut ok, mut all, mut latencies) = (0, 0, Vec::new());
        let start = Instant::now();
        while start.elapsed() + Duration::from_millis(500) < cfg.length {
            all += 1;
            let mut took = Vec::with_capacity(3);
            for body in cycle_requests(&format!("flood-{name}-{all}")) {
                match p.ok(&body) {
                    Some(t) => took.push(t),
                    None => break,
                }
            }
            if took.len() == 3 {
                ok += 1;
                latencies.extend(took);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let flood_sent = flooder
            .join()
            .map_err(|_| anyhow::anyhow!("flooder panicked"))??;
        let pings = monitor
            .join()
            .map_err(|_| anyhow::anyhow!("monitor panicked"))??;
        Ok(Outcome {
            name,
            flood_sent,
            cycles: (ok, all),
            latencies,
            pings,
        })
    })
}

/// The outcomes as a Markdown table.
pub fn markdown(cfg: &Config, outcomes: &[Outcome]) -> String {
    let mut t = format!(
        "NG under a flood: {} pings/s with fresh cookies from one address for {:.0} s; a proxy \
         (another address) runs offer/answer/delete cycles, a monitor pings every 50 ms; both \
         wait {} ms for a reply.\n\n\
         | relay | flood sent | proxy cycles ok | p50 request | p99 request | monitor pings answered |\n\
         |---|---|---|---|---|---|\n",
        cfg.flood_pps,
        cfg.length.as_secs_f64(),
        PROXY_TIMEOUT.as_millis()
    );
    for o in outcomes {
        t.push_str(&format!(
            "| {} | {} | {}/{} ({:.1} %) | {} µs | {} µs | {}/{} |\n",
            o.name,
            o.flood_sent,
            o.cycles.0,
            o.cycles.1,
            100.0 * f64::from(o.cycles.0) / f64::from(o.cycles.1.max(1)),
            o.latency(0.5).as_micros(),
            o.latency(0.99).as_micros(),
            o.pings.0,
            o.pings.1
        ));
    }
    t
}
