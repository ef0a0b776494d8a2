//! The search for the highest sustained rate of one relay at one call
//! count: double from a low start until a point fails, then bisect
//! (geometrically) between the best pass and the lowest failure until they
//! are within the precision asked for; halve instead when the start itself
//! fails. Bounded in points and by a rate cap and floor.

/// Bounds of a search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// First rate tried (pps).
    pub start: u64,
    /// Highest rate tried.
    pub cap: u64,
    /// Lowest rate tried when even the start fails.
    pub floor: u64,
    /// Stop once lowest failure / best pass ≤ 1 + this.
    pub precision: f64,
    /// Most points measured.
    pub max_points: u32,
}

/// Where one search stands.
#[derive(Debug, Clone)]
pub struct Search {
    limits: Limits,
    /// Highest target that passed.
    passed: Option<u64>,
    /// Lowest target that failed.
    failed: Option<u64>,
    points: u32,
    /// The sender fell short of a passing target: higher targets would
    /// measure the sender, not the relay.
    sender_bound: bool,
}

impl Search {
    /// A search that has measured nothing yet.
    pub fn new(limits: Limits) -> Self {
        Search {
            limits,
            passed: None,
            failed: None,
            points: 0,
            sender_bound: false,
        }
    }

    /// The next target to measure, or `None` when the search is over.
    pub fn next(&self) -> Option<u64> {
        let l = &self.limits;
        if self.points >= l.max_points {
            return None;
        }
        match (self.passed, self.failed) {
            (None, None) => Some(l.start.clamp(l.floor, l.cap)),
            (Some(p), None) => (p < l.cap && !self.sender_bound).then(|| (2 * p).min(l.cap)),
            (None, Some(f)) => Some(round(f / 2)).filter(|&r| r >= l.floor && r < f),
            (Some(p), Some(f)) => {
                let mid = round((p as f64 * f as f64).sqrt() as u64);
                (f as f64 > p as f64 * (1.0 + l.precision) && mid > p && mid < f).then_some(mid)
            }
        }
    }

    /// Records the outcome of a point that measured `rate` (its target, or
    /// what the sender offered when it fell short: `short`).
    pub fn record(&mut self, rate: u64, passed: bool, short: bool) {
        self.points += 1;
        let rate = round(rate);
        if passed {
            self.passed = Some(self.passed.map_or(rate, |p| p.max(rate)));
            self.sender_bound |= short;
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
    }

    /// Whether the sender, not the relay, ended the search upwards.
    pub fn sender_bound(&self) -> bool {
        self.sender_bound
    }

    /// The highest rate that passed so far.
    pub fn best(&self) -> Option<u64> {
        self.passed
    }
}

/// Rates in steps of 100 pps: tables stay readable.
fn round(pps: u64) -> u64 {
    (pps / 100).max(1) * 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            start: 10_000,
            cap: 400_000,
            floor: 1_000,
            precision: 0.08,
            max_points: 12,
        }
    }

    /// Runs a search against a relay that passes up to `limit` pps.
    fn run(limit: u64, l: Limits) -> (Vec<u64>, Search) {
        let mut s = Search::new(l);
        let mut tried = Vec::new();
        while let Some(r) = s.next() {
            tried.push(r);
            s.record(r, r <= limit, false);
        }
        (tried, s)
    }

    #[test]
    fn doubles_then_bisects_to_the_precision() {
        let (tried, s) = run(114_000, limits());
        assert_eq!(&tried[..5], &[10_000, 20_000, 40_000, 80_000, 160_000]);
        let (p, f) = (s.passed.unwrap(), s.failed.unwrap());
        assert!(p <= 114_000 && f > 114_000);
        assert!(f as f64 <= p as f64 * 1.08, "{p} {f}");
        assert!(tried.len() <= 12);
    }

    #[test]
    fn stops_at_the_cap() {
        let (tried, s) = run(u64::MAX, limits());
        assert_eq!(tried.last(), Some(&400_000));
        assert_eq!(s.passed, Some(400_000));
        assert_eq!(s.failed, None);
    }

    #[test]
    fn halves_when_the_start_fails_down_to_the_floor() {
        let (tried, s) = run(3_000, limits());
        assert_eq!(&tried[..4], &[10_000, 5_000, 2_500, 3_500]);
        assert!(s.passed.is_some());
        let (tried, s) = run(0, limits());
        assert_eq!(tried, vec![10_000, 5_000, 2_500, 1_200]);
        assert_eq!(s.passed, None);
    }

    #[test]
    fn a_short_sender_ends_the_way_up() {
        let mut s = Search::new(limits());
        s.record(10_000, true, true);
        assert_eq!(s.next(), None);
        assert!(s.sender_bound());
    }

    #[test]
    fn the_point_budget_holds() {
        let l = Limits {
            max_points: 3,
            ..limits()
        };
        let (tried, _) = run(114_000, l);
        assert_eq!(tried.len(), 3);
    }
}
