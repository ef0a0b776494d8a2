//! One-way latency and added jitter as the sink records them
//! (`bench_sink` with latency on, see `bpf/bench.bpf.c`): a histogram of
//! 1 us buckets of the time from the paced sender's stamp to the sink's
//! XDP program (one host clock, CLOCK_MONOTONIC both), and the RFC 3550
//! transit difference |D| between consecutive packets of each flow.

use std::time::Duration;

/// What the sink recorded (cumulative; [`Recorded::since`] gives a point's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Packets per 1 us bucket of latency; the last bucket is open-ended.
    pub buckets: Vec<u64>,
    /// Sum of |D| over consecutive packet pairs of a flow, ns.
    pub sum_abs_d_ns: u64,
    /// Those pairs.
    pub pairs: u64,
    /// Packets without a usable stamp.
    pub unstamped: u64,
}

impl Recorded {
    /// What was recorded after `earlier`.
    pub fn since(&self, earlier: &Recorded) -> Recorded {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        Recorded {
            buckets,
            sum_abs_d_ns: self.sum_abs_d_ns.saturating_sub(earlier.sum_abs_d_ns),
            pairs: self.pairs.saturating_sub(earlier.pairs),
            unstamped: self.unstamped.saturating_sub(earlier.unstamped),
        }
    }

    /// Packets in the histogram.
    pub fn packets(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The latency below which a fraction `p` (0..=1) of the packets
    /// arrived: the upper edge of the bucket holding that rank (so 1 us
    /// resolution, rounded up); None without packets. A rank in the
    /// open-ended last bucket reads as that bucket's lower edge.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let total = self.packets();
        if total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let last = self.buckets.len().saturating_sub(1);
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = if i == last { i as u64 } else { i as u64 + 1 };
                return Some(Duration::from_micros(us));
            }
        }
        None
    }

    /// Mean |D| between consecutive packets of a flow: the RFC 3550
    /// interarrival jitter before its 1/16 smoothing, which the path
    /// added to an evenly paced sender.
    pub fn jitter(&self) -> Option<Duration> {
        (self.pairs > 0).then(|| Duration::from_nanos(self.sum_abs_d_ns / self.pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(buckets: &[(usize, u64)]) -> Recorded {
        let mut r = Recorded {
            buckets: vec![0; 100],
            ..Recorded::default()
        };
        for &(i, n) in buckets {
            r.buckets[i] = n;
        }
        r
    }

    #[test]
    fn percentiles_are_the_upper_edges_of_the_rank_buckets() {
        // 90 packets took 10-11 us, 9 took 20-21 us, 1 took 50-51 us.
        let r = with(&[(10, 90), (20, 9), (50, 1)]);
        let us = |p| r.percentile(p).unwrap().as_micros();
        assert_eq!(us(0.5), 11);
        assert_eq!(us(0.9), 11);
        assert_eq!(us(0.91), 21);
        assert_eq!(us(0.99), 21);
        assert_eq!(us(0.999), 51);
        assert_eq!(us(0.0), 11, "the fastest packet's bucket");
        assert_eq!(Recorded::default().percentile(0.5), None);
    }

    #[test]
    fn the_open_ended_bucket_reads_as_its_lower_edge() {
        let r = with(&[(99, 3)]);
        assert_eq!(r.percentile(0.5), Some(Duration::from_micros(99)));
    }

    #[test]
    fn a_point_is_the_difference_of_two_readings() {
        let mut before = with(&[(10, 5)]);
        before.sum_abs_d_ns = 1000;
        before.pairs = 4;
        let mut after = with(&[(10, 7), (12, 3)]);
        after.sum_abs_d_ns = 7000;
        after.pairs = 10;
        after.unstamped = 2;
        let d = after.since(&before);
        assert_eq!(d.packets(), 5);
        assert_eq!(d.buckets[10], 2);
        assert_eq!(d.jitter(), Some(Duration::from_nanos(1000)));
        assert_eq!(d.unstamped, 2);
        assert_eq!(Recorded::default().jitter(), None);
    }
}
