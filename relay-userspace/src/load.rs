//! Load signals for traffic steering: the host's load average and CPU use
//! and the media bandwidth relayd forwards (XDP and userspace), sampled
//! once a second by the daemon's ticker, checked against `--max-load`,
//! `--max-cpu` and `--max-bandwidth` when an offer would create a new call
//! (rtpengine's options and meaning), and shown with the headroom to each
//! limit in NG `statistics`, `/metrics` and `relayctl totals`.
//!
//! The samplers are pure: they take the text of `/proc/loadavg` and
//! `/proc/stat` and the forwarding counters, so their arithmetic is tested
//! on fixed input. The NG path reads only the last sample (one uncontended
//! lock), never a file.

use std::{
    collections::VecDeque,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde::Serialize;

/// The limits (None: off; rtpengine treats 0 as off too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LoadLimits {
    /// `--max-load`: the 1-minute load average at which new calls are
    /// refused.
    pub max_load: Option<f64>,
    /// `--max-cpu`: host CPU use, percent of all CPUs.
    pub max_cpu: Option<f64>,
    /// `--max-bandwidth`: bytes per second forwarded (both paths).
    pub max_bandwidth: Option<u64>,
}

/// Why a new call is refused: rtpengine's reasons, its `message` words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `--max-sessions`.
    Sessions,
    /// `--max-load`.
    Load,
    /// `--max-cpu`.
    Cpu,
    /// `--max-bandwidth`.
    Bandwidth,
}

impl Limit {
    /// The `message` of rtpengine's `load limit` reply for this reason.
    pub fn message(self) -> &'static str {
        match self {
            Limit::Sessions => relay_ng::reply::SESSION_LIMIT_MESSAGE,
            Limit::Load => "Load limit exceeded",
            Limit::Cpu => "CPU usage limit exceeded",
            Limit::Bandwidth => "Bandwidth limit exceeded",
        }
    }
}

/// Per-second rates of the two forwarding paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rates {
    /// Packets per second forwarded by XDP.
    pub kernel_packets: u64,
    /// Bytes per second forwarded by XDP.
    pub kernel_bytes: u64,
    /// Packets per second handled by the userspace forwarder.
    pub user_packets: u64,
    /// Bytes per second handled by the userspace forwarder.
    pub user_bytes: u64,
}

impl Rates {
    /// Bytes per second on both paths: what `--max-bandwidth` limits.
    pub fn bytes(&self) -> u64 {
        self.kernel_bytes.saturating_add(self.user_bytes)
    }

    /// Packets per second on both paths.
    pub fn packets(&self) -> u64 {
        self.kernel_packets.saturating_add(self.user_packets)
    }
}

/// The latest figures (None: not measured yet, or unreadable).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadSample {
    /// 1-minute load average (`/proc/loadavg`).
    pub load_average: Option<f64>,
    /// Host CPU use over the sampling window, percent of all CPUs.
    pub cpu_percent: Option<f64>,
    /// Forwarding rates over the sampling window.
    pub rates: Option<Rates>,
}

/// Cumulative forwarding counters (program-wide XDP counters, and the
/// userspace forwarder's totals including ended calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// XDP packets forwarded.
    pub kernel_packets: u64,
    /// XDP bytes forwarded.
    pub kernel_bytes: u64,
    /// Userspace packets.
    pub user_packets: u64,
    /// Userspace bytes.
    pub user_bytes: u64,
}

impl Counts {
    /// Whether every counter is at least `earlier`'s (else one was reset,
    /// e.g. a new XDP program).
    fn not_below(&self, earlier: &Counts) -> bool {
        self.kernel_packets >= earlier.kernel_packets
            && self.kernel_bytes >= earlier.kernel_bytes
            && self.user_packets >= earlier.user_packets
            && self.user_bytes >= earlier.user_bytes
    }
}

/// Busy and idle time of all CPUs together (`/proc/stat`'s `cpu` line, in
/// clock ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// The 1-minute load average: the first field of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    let v: f64 = text.split_whitespace().next()?.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// The aggregate `cpu` line of `/proc/stat`. Unlike rtpengine (user, nice
/// and system only), softirq and irq count as busy: XDP forwarding runs in
/// softirq, so without them a relay forwarding in XDP would look idle.
/// Steal counts as busy too (on a VM it is capacity the relay does not
/// have).
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    if fields.len() < 4 {
        return None;
    }
    // Columns a kernel does not have (iowait and later) are 0.
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    let (user, nice, system, idle) = (at(0), at(1), at(2), at(3));
    let (iowait, irq, softirq, steal) = (at(4), at(5), at(6), at(7));
    let busy = [user, nice, system, irq, softirq, steal]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b));
    Some(CpuTimes {
        busy,
        idle: idle.saturating_add(iowait),
    })
}

/// CPU use between two readings, percent (None when no time passed or a
/// counter went backwards).
pub fn cpu_percent(earlier: CpuTimes, later: CpuTimes) -> Option<f64> {
    let busy = later.busy.checked_sub(earlier.busy)?;
    let idle = later.idle.checked_sub(earlier.idle)?;
    let total = busy.checked_add(idle)?;
    (total > 0).then(|| busy as f64 * 100.0 / total as f64)
}

/// How many seconds of history the CPU and bandwidth figures average over.
pub const WINDOW: Duration = Duration::from_secs(5);

/// One reading kept for the window.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    cpu: Option<CpuTimes>,
    counts: Option<Counts>,
}

/// Turns readings taken about once a second into figures averaged over
/// the last [`WINDOW`] (a sliding window: the difference between the
/// newest reading and the oldest one within it).
#[derive(Debug, Default)]
pub struct Sampler {
    readings: VecDeque<Reading>,
}

impl Sampler {
    /// Adds a reading taken at `at` and returns the figures.
    pub fn sample(
        &mut self,
        at: Instant,
        loadavg: Option<&str>,
        proc_stat: Option<&str>,
        counts: Option<Counts>,
    ) -> LoadSample {
        let now = Reading {
            at,
            cpu: proc_stat.and_then(parse_proc_stat),
            counts,
        };
        // A counter that went backwards (a new XDP program) starts the
        // window again rather than report a nonsense rate.
        if let (Some(c), Some(last)) = (counts, self.readings.back().and_then(|r| r.counts)) {
            if !c.not_below(&last) {
                self.readings.clear();
            }
        }
        while self
            .readings
            .front()
            .is_some_and(|r| at.saturating_duration_since(r.at) > WINDOW + WINDOW / 10)
        {
            self.readings.pop_front();
        }
        self.readings.push_back(now);
        let oldest = self.readings.front().copied();
        let mut sample = LoadSample {
            load_average: loadavg.and_then(parse_loadavg),
            ..LoadSample::default()
        };
        let Some(oldest) = oldest.filter(|o| o.at < at) else {
            return sample;
        };
        if let (Some(a), Some(b)) = (oldest.cpu, now.cpu) {
            sample.cpu_percent = cpu_percent(a, b);
        }
        if let (Some(a), Some(b)) = (oldest.counts, now.counts) {
            let secs = at.saturating_duration_since(oldest.at).as_secs_f64();
            let rate = |x: u64, y: u64| (y.saturating_sub(x) as f64 / secs).round() as u64;
            sample.rates = Some(Rates {
                kernel_packets: rate(a.kernel_packets, b.kernel_packets),
                kernel_bytes: rate(a.kernel_bytes, b.kernel_bytes),
                user_packets: rate(a.user_packets, b.user_packets),
                user_bytes: rate(a.user_bytes, b.user_bytes),
            });
        }
        sample
    }
}

/// Reads what [`Sampler::sample`] needs from `/proc` (a missing file gives
/// None: that figure is then not measured).
pub fn read_proc() -> (Option<String>, Option<String>) {
    (
        std::fs::read_to_string("/proc/loadavg").ok(),
        std::fs::read_to_string("/proc/stat").ok(),
    )
}

/// The limits and the latest sample, shared between the ticker (which
/// writes) and the NG handler, relayctl and /metrics (which read).
#[derive(Debug, Default)]
pub struct LoadGauge {
    limits: OnceLock<LoadLimits>,
    latest: Mutex<LoadSample>,
}

impl LoadGauge {
    /// Sets the limits (once, at start-up).
    pub fn set_limits(&self, limits: LoadLimits) {
        let _ = self.limits.set(limits);
    }

    /// The limits.
    pub fn limits(&self) -> LoadLimits {
        self.limits.get().copied().unwrap_or_default()
    }

    /// Stores a new sample.
    pub fn store(&self, sample: LoadSample) {
        *crate::lock(&self.latest) = sample;
    }

    /// The latest sample.
    pub fn latest(&self) -> LoadSample {
        *crate::lock(&self.latest)
    }

    /// The first limit (in rtpengine's order: load, CPU, bandwidth) the
    /// latest sample reaches; a figure not measured yet reaches none.
    pub fn exceeded(&self) -> Option<Limit> {
        exceeded(&self.limits(), &self.latest())
    }
}

/// See [`LoadGauge::exceeded`]: like rtpengine, a limit is reached when the
/// figure is at least the limit.
pub fn exceeded(limits: &LoadLimits, s: &LoadSample) -> Option<Limit> {
    let reached = |limit: Option<f64>, value: Option<f64>| matches!((limit, value), (Some(l), Some(v)) if v >= l);
    if reached(limits.max_load, s.load_average) {
        return Some(Limit::Load);
    }
    if reached(limits.max_cpu, s.cpu_percent) {
        return Some(Limit::Cpu);
    }
    if let (Some(l), Some(r)) = (limits.max_bandwidth, s.rates) {
        if r.bytes() >= l {
            return Some(Limit::Bandwidth);
        }
    }
    None
}

/// What is left before each configured limit (0: new calls are refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Headroom {
    /// Calls before `--max-sessions`.
    pub sessions: Option<u64>,
    /// Load average before `--max-load`.
    pub load: Option<f64>,
    /// CPU percent before `--max-cpu`.
    pub cpu: Option<f64>,
    /// Bytes per second before `--max-bandwidth`.
    pub bandwidth: Option<u64>,
    /// The smallest of those as a fraction of its limit (0 to 1; 1 without
    /// limits): one figure to steer new calls by, the highest relay first.
    pub ratio: f64,
}

/// The load figures relayctl, NG `statistics` and `/metrics` show.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadTotals {
    /// 1-minute load average of the host.
    pub load_average: Option<f64>,
    /// Host CPU use over the last seconds, percent of all CPUs.
    pub cpu_percent: Option<f64>,
    /// Forwarding rates over the last seconds.
    pub rates: Rates,
    /// `--max-sessions`.
    pub max_sessions: Option<u64>,
    /// `--max-load`, `--max-cpu`, `--max-bandwidth`.
    pub limits: LoadLimits,
    /// Room left before each limit.
    pub headroom: Headroom,
    /// The `message` new calls are refused with now, if any.
    pub refusing: Option<String>,
}

impl LoadTotals {
    /// Combines the gauge with the session count and `--max-sessions`.
    pub fn of(gauge: &LoadGauge, sessions: usize, max_sessions: Option<usize>) -> Self {
        let limits = gauge.limits();
        let sample = gauge.latest();
        let rates = sample.rates.unwrap_or_default();
        let sessions = sessions as u64;
        let max_sessions = max_sessions.map(|m| m as u64);
        let mut ratio: f64 = 1.0;
        let mut fraction = |left: f64, limit: f64| {
            if limit > 0.0 {
                ratio = ratio.min((left / limit).clamp(0.0, 1.0));
            }
        };
        let session_room = max_sessions.map(|m| m.saturating_sub(sessions));
        if let (Some(left), Some(m)) = (session_room, max_sessions) {
            fraction(left as f64, m as f64);
        }
        let room = |limit: Option<f64>, value: Option<f64>| {
            limit.map(|l| (l - value.unwrap_or(0.0)).max(0.0))
        };
        let load = room(limits.max_load, sample.load_average);
        let cpu = room(limits.max_cpu, sample.cpu_percent);
        if let (Some(left), Some(l)) = (load, limits.max_load) {
            fraction(left, l);
        }
        if let (Some(left), Some(l)) = (cpu, limits.max_cpu) {
            fraction(left, l);
        }
        let bandwidth = limits
            .max_bandwidth
            .map(|l| l.saturating_sub(rates.bytes()));
        if let (Some(left), Some(l)) = (bandwidth, limits.max_bandwidth) {
            fraction(left as f64, l as f64);
        }
        let refusing = max_sessions
            .is_some_and(|m| sessions >= m)
            .then_some(Limit::Sessions)
            .or_else(|| exceeded(&limits, &sample))
            .map(|l| l.message().to_owned());
        LoadTotals {
            load_average: sample.load_average,
            cpu_percent: sample.cpu_percent,
            rates,
            max_sessions,
            limits,
            headroom: Headroom {
                sessions: session_room,
                load,
                cpu,
                bandwidth,
                ratio,
            },
            refusing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "cpu  100 10 50 800 20 5 15 0 0 0\n\
                          cpu0 50 5 25 400 10 2 8 0 0 0\n\
                          intr 12345\n";
    const STAT_2: &str = "cpu  160 10 70 900 20 5 35 0 0 0\n\
                          cpu0 80 5 35 450 10 2 18 0 0 0\n";

    #[test]
    fn loadavg_is_the_first_field() {
        assert_eq!(parse_loadavg("0.52 0.31 0.20 2/345 6789\n"), Some(0.52));
        assert_eq!(parse_loadavg("12.00 1 1 1/1 1"), Some(12.0));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("nan 0 0"), None);
        assert_eq!(parse_loadavg("-1 0 0"), None);
    }

    #[test]
    fn proc_stat_counts_softirq_as_busy() {
        // busy = user + nice + system + irq + softirq + steal, idle = idle + iowait.
        assert_eq!(
            parse_proc_stat(STAT_1),
            Some(CpuTimes {
                busy: 100 + 10 + 50 + 5 + 15,
                idle: 800 + 20
            })
        );
        // Old kernels have fewer columns: the missing ones are 0.
        assert_eq!(
            parse_proc_stat("cpu  1 2 3 4\n"),
            Some(CpuTimes { busy: 6, idle: 4 })
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
    }

    #[test]
    fn cpu_percent_is_busy_over_all_ticks() {
        let a = parse_proc_stat(STAT_1).unwrap();
        let b = parse_proc_stat(STAT_2).unwrap();
        // busy +100 (60 user, 20 system, 20 softirq), idle +100.
        assert_eq!(cpu_percent(a, b), Some(50.0));
        assert_eq!(cpu_percent(a, a), None, "no time passed");
        assert_eq!(cpu_percent(b, a), None, "went backwards");
    }

    fn counts(kernel_bytes: u64, user_bytes: u64) -> Counts {
        Counts {
            kernel_packets: kernel_bytes / 100,
            kernel_bytes,
            user_packets: user_bytes / 100,
            user_bytes,
        }
    }

    #[test]
    fn sampler_averages_over_the_window() {
        let t0 = Instant::now();
        let mut s = Sampler::default();
        let first = s.sample(t0, Some("0.50 0 0"), Some(STAT_1), Some(counts(0, 0)));
        assert_eq!(first.load_average, Some(0.5));
        assert_eq!(
            (first.cpu_percent, first.rates),
            (None, None),
            "one reading is no rate"
        );
        let second = s.sample(
            t0 + Duration::from_secs(1),
            Some("0.60 0 0"),
            Some(STAT_2),
            Some(counts(8_000, 2_000)),
        );
        assert_eq!(second.cpu_percent, Some(50.0));
        let r = second.rates.unwrap();
        assert_eq!(
            (r.kernel_bytes, r.user_bytes, r.bytes()),
            (8_000, 2_000, 10_000)
        );
        assert_eq!(r.packets(), 100);
        // Over two seconds the average of 10 000 and 0 bytes/s.
        let third = s.sample(
            t0 + Duration::from_secs(2),
            None,
            Some(STAT_2),
            Some(counts(8_000, 2_000)),
        );
        assert_eq!(third.rates.unwrap().bytes(), 5_000);
        assert_eq!(third.load_average, None, "unreadable: not measured");
        // Readings older than the window drop out.
        for i in 3..=8 {
            s.sample(
                t0 + Duration::from_secs(i),
                None,
                None,
                Some(counts(8_000, 2_000)),
            );
        }
        let later = s.sample(
            t0 + Duration::from_secs(9),
            None,
            None,
            Some(counts(8_000, 2_000)),
        );
        assert_eq!(later.rates.unwrap().bytes(), 0);
        assert_eq!(later.cpu_percent, None);
        // A counter reset starts the window again.
        let reset = s.sample(
            t0 + Duration::from_secs(10),
            None,
            None,
            Some(counts(100, 2_000)),
        );
        assert_eq!(reset.rates, None);
    }

    #[test]
    fn limits_trip_at_or_above_in_rtpengines_order() {
        let sample = LoadSample {
            load_average: Some(2.0),
            cpu_percent: Some(80.0),
            rates: Some(Rates {
                kernel_bytes: 900,
                user_bytes: 100,
                ..Rates::default()
            }),
        };
        let none = LoadLimits::default();
        assert_eq!(exceeded(&none, &sample), None);
        let all = LoadLimits {
            max_load: Some(2.0),
            max_cpu: Some(80.0),
            max_bandwidth: Some(1000),
        };
        assert_eq!(exceeded(&all, &sample), Some(Limit::Load));
        let cpu_bw = LoadLimits {
            max_load: Some(2.01),
            ..all
        };
        assert_eq!(exceeded(&cpu_bw, &sample), Some(Limit::Cpu));
        let bw = LoadLimits {
            max_cpu: Some(80.5),
            ..cpu_bw
        };
        assert_eq!(exceeded(&bw, &sample), Some(Limit::Bandwidth));
        let under = LoadLimits {
            max_bandwidth: Some(1001),
            ..bw
        };
        assert_eq!(exceeded(&under, &sample), None);
        // Not measured yet: nothing is refused.
        assert_eq!(exceeded(&all, &LoadSample::default()), None);
        assert_eq!(Limit::Cpu.message(), "CPU usage limit exceeded");
    }

    #[test]
    fn headroom_is_what_is_left_of_each_limit() {
        let gauge = LoadGauge::default();
        gauge.set_limits(LoadLimits {
            max_load: Some(4.0),
            max_cpu: Some(50.0),
            max_bandwidth: Some(10_000),
        });
        gauge.store(LoadSample {
            load_average: Some(1.0),
            cpu_percent: Some(60.0),
            rates: Some(Rates {
                kernel_bytes: 2_000,
                user_bytes: 500,
                ..Rates::default()
            }),
        });
        let t = LoadTotals::of(&gauge, 3, Some(10));
        assert_eq!(t.headroom.sessions, Some(7));
        assert_eq!(t.headroom.load, Some(3.0));
        assert_eq!(t.headroom.cpu, Some(0.0), "over the limit: none left");
        assert_eq!(t.headroom.bandwidth, Some(7_500));
        assert_eq!(t.headroom.ratio, 0.0);
        assert_eq!(t.refusing.as_deref(), Some("CPU usage limit exceeded"));
        gauge.store(LoadSample {
            cpu_percent: Some(40.0),
            ..gauge.latest()
        });
        let t = LoadTotals::of(&gauge, 3, Some(10));
        // load 3/4, cpu 10/50, bandwidth 7500/10000, sessions 7/10.
        assert!(
            (t.headroom.ratio - 0.2).abs() < 1e-9,
            "{}",
            t.headroom.ratio
        );
        assert_eq!(t.refusing, None);
        let t = LoadTotals::of(&gauge, 10, Some(10));
        assert_eq!(
            t.refusing.as_deref(),
            Some("Parallel session limit reached")
        );
        let t = LoadTotals::of(&LoadGauge::default(), 5, None);
        assert_eq!((t.headroom.ratio, t.refusing), (1.0, None));
    }
}
