//! Where in a point the packets went missing: the sender samples the
//! sink's count (and, for relayd XDP, its forwarded and passed-to-userspace
//! counters) as it goes, finely while the fresh calls' endpoints are
//! learned, coarsely after. The deficit (sent − received so far) then shows
//! whether loss came at the start (learning), evenly, or in spikes.

use std::time::Duration;

use relay_common::CounterId;
use relay_userspace::datapath::xdp::RelayMaps;

use crate::traffic::Traffic;

/// Fine sampling lasts this long after the first packet.
pub const EARLY: Duration = Duration::from_millis(100);
/// Sampling period while [`EARLY`] lasts.
const FINE: Duration = Duration::from_millis(2);
/// Sampling period after it.
const COARSE: Duration = Duration::from_millis(50);

/// Counters at one instant of a point.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: Duration,
    sent: u64,
    received: u64,
    /// relayd XDP: forwarded in XDP (TX + redirect).
    forwarded: u64,
    /// relayd XDP: passed to relayd's socket while learning.
    to_userspace: u64,
}

/// Samples taken during one point.
#[derive(Debug)]
pub struct Timeline<'a> {
    traffic: &'a Traffic,
    maps: Option<&'a RelayMaps>,
    next_at: Duration,
    samples: Vec<Sample>,
}

impl<'a> Timeline<'a> {
    /// Starts with a sample before anything is sent.
    pub fn new(traffic: &'a Traffic, maps: Option<&'a RelayMaps>) -> Self {
        let mut t = Timeline {
            traffic,
            maps,
            next_at: Duration::ZERO,
            samples: Vec::with_capacity(256),
        };
        t.take(Duration::ZERO, 0);
        t
    }

    /// Called by the sender after every tick; samples when one is due.
    pub fn tick(&mut self, at: Duration, sent: u64) {
        if at < self.next_at {
            return;
        }
        self.take(at, sent);
        self.next_at = at + if at < EARLY { FINE } else { COARSE };
    }

    /// A read that fails leaves the sample out rather than ending the point.
    fn take(&mut self, at: Duration, sent: u64) {
        let Ok(received) = self.traffic.received() else {
            return;
        };
        let (forwarded, to_userspace) = self.maps.map_or((0, 0), |m| {
            (
                packets(m, &[CounterId::FwdTx, CounterId::FwdRedirect]),
                packets(m, &[CounterId::PassToUserspace]),
            )
        });
        self.samples.push(Sample {
            at,
            sent,
            received,
            forwarded,
            to_userspace,
        });
    }

    /// What the samples say.
    pub fn summary(&self) -> Summary {
        let Some(first) = self.samples.first().copied() else {
            return Summary::default();
        };
        let deficit = |s: &Sample| s.sent as i64 - s.received.saturating_sub(first.received) as i64;
        let at_or_before = |t: Duration| {
            self.samples
                .iter()
                .take_while(|s| s.at <= t)
                .last()
                .map_or(0, deficit)
        };
        let xdp = self.maps.is_some();
        let first_forward = xdp
            .then(|| {
                self.samples
                    .iter()
                    .find(|s| s.forwarded > first.forwarded)
                    .map(|s| s.at)
            })
            .flatten();
        let learning_until = xdp
            .then(|| {
                self.samples
                    .windows(2)
                    .rfind(|w| w[1].to_userspace > w[0].to_userspace)
                    .map(|w| w[1].at)
            })
            .flatten();
        let worst = self
            .samples
            .windows(2)
            .filter(|w| w[0].at >= EARLY)
            .map(|w| (w[1].at, deficit(&w[1]) - deficit(&w[0])))
            .max_by_key(|&(_, d)| d)
            .filter(|&(_, d)| d > 0);
        let seconds = self
            .samples
            .last()
            .map_or(0, |s| s.at.as_secs_f64().ceil() as u64);
        let per_second = (1..=seconds)
            .map(|k| {
                at_or_before(Duration::from_secs(k)) - at_or_before(Duration::from_secs(k - 1))
            })
            .collect();
        Summary {
            deficit_early: at_or_before(EARLY),
            per_second,
            worst,
            first_forward,
            learning_until,
        }
    }
}

/// Packets counted under `ids`, all CPUs (0 if unreadable).
fn packets(maps: &RelayMaps, ids: &[CounterId]) -> u64 {
    ids.iter()
        .filter_map(|&id| maps.counters.get(&(id as u32), 0).ok())
        .map(|per_cpu| per_cpu.iter().map(|c| c.packets).sum::<u64>())
        .sum()
}

/// Where the deficit (sent − received) grew during a point.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Deficit after [`EARLY`]: packets of the fresh calls' first 100 ms
    /// not (yet) back.
    pub deficit_early: i64,
    /// Growth of the deficit in each second of the point (the first
    /// includes [`deficit_early`](Self::deficit_early)); what was still in
    /// flight at the end shows in the last one.
    pub per_second: Vec<i64>,
    /// Largest growth in one coarse sampling period after [`EARLY`], and
    /// when it ended.
    pub worst: Option<(Duration, i64)>,
    /// relayd XDP: when its first XDP forward was seen (to within
    /// [`FINE`] early on).
    pub first_forward: Option<Duration>,
    /// relayd XDP: the last sample at which packets were still being passed
    /// to relayd's socket.
    pub learning_until: Option<Duration>,
}
