//! Answers retransmitted requests with the reply already sent.
//!
//! Kamailio resends a request with the same cookie when a reply is late; the
//! command must not run twice (a second `offer` would allocate new ports).
//! Like rtpengine, the cache keeps two generations: new replies go into the
//! current one, lookups search both, and every `generation` (rtpengine: 30 s)
//! the current generation becomes the old one and the old one is dropped. So
//! an entry lives at least one and at most two generations.
//!
//! Each generation is capped in entries and bytes so that a flood of unique
//! cookies cannot exhaust memory; past the cap new replies are simply not
//! cached (counted in [`CookieCache::dropped`]).
//!
//! Time is passed in, so tests can use made-up instants. Unlike rtpengine this
//! does not make a duplicate wait for an original that is still being
//! processed; a server that handles one request at a time never needs that.

use std::collections::HashMap;
use std::mem;
use std::time::{Duration, Instant};

/// Size limits for one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries one generation may hold.
    pub max_entries: usize,
    /// Most bytes (cookies plus replies) one generation may hold.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    /// 100 000 entries and 64 MiB per generation.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// One generation of cached replies.
#[derive(Debug, Default)]
struct Generation {
    replies: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl Generation {
    fn clear(&mut self) {
        self.replies.clear();
        self.bytes = 0;
    }
}

/// Two-generation cache from request cookie to encoded reply.
#[derive(Debug)]
pub struct CookieCache {
    generation: Duration,
    limits: CacheLimits,
    /// When `current` started; set by the first call that passes a time.
    started: Option<Instant>,
    current: Generation,
    old: Generation,
    dropped: u64,
}

impl CookieCache {
    /// A cache rotating every `generation` with the default [`CacheLimits`].
    pub fn new(generation: Duration) -> Self {
        Self::with_limits(generation, CacheLimits::default())
    }

    /// A cache rotating every `generation` (at least 1 ms) with the given limits.
    pub fn with_limits(generation: Duration, limits: CacheLimits) -> Self {
        Self {
            generation: generation.max(Duration::from_millis(1)),
            limits,
            started: None,
            current: Generation::default(),
            old: Generation::default(),
            dropped: 0,
        }
    }

    /// The reply cached for `cookie`, if any.
    pub fn get(&mut self, cookie: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.rotate(now);
        self.current
            .replies
            .get(cookie)
            .or_else(|| self.old.replies.get(cookie))
            .cloned()
    }

    /// Caches `reply` for `cookie`, unless the current generation is full.
    pub fn insert(&mut self, cookie: Vec<u8>, reply: Vec<u8>, now: Instant) {
        self.rotate(now);
        let size = cookie.len().saturating_add(reply.len());
        let gen = &mut self.current;
        if let Some(previous) = gen.replies.get(&cookie) {
            let freed = cookie.len().saturating_add(previous.len());
            gen.bytes = gen.bytes.saturating_sub(freed);
        } else if gen.replies.len() >= self.limits.max_entries {
            self.dropped += 1;
            return;
        }
        let bytes = gen.bytes.saturating_add(size);
        if bytes > self.limits.max_bytes {
            // Re-account a replaced entry we are now not storing.
            gen.replies.remove(&cookie);
            self.dropped += 1;
            return;
        }
        gen.bytes = bytes;
        gen.replies.insert(cookie, reply);
    }

    /// Entries held in both generations.
    pub fn len(&self) -> usize {
        self.current.replies.len() + self.old.replies.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replies not cached because a generation was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Advances generations to `now`: by one if one generation has passed,
    /// dropping everything if two have (nothing could still be due).
    fn rotate(&mut self, now: Instant) {
        let Some(started) = self.started else {
            self.started = Some(now);
            return;
        };
        // A clock that went backwards counts as no time passed.
        let elapsed = now.saturating_duration_since(started);
        if elapsed < self.generation {
            return;
        }
        let periods = elapsed.as_nanos() / self.generation.as_nanos();
        if periods == 1 {
            self.old = mem::take(&mut self.current);
        } else {
            self.old.clear();
            self.current.clear();
        }
        // Keep generation boundaries on a fixed grid so lifetimes stay within bounds.
        let into_period = elapsed.as_nanos() % self.generation.as_nanos();
        let into_period = Duration::from_nanos(u64::try_from(into_period).unwrap_or(0));
        self.started = Some(now.checked_sub(into_period).unwrap_or(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEN: Duration = Duration::from_secs(30);

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn hit_within_a_generation_and_after_one_rotation() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(GEN);
        assert_eq!(c.get(b"a", t0), None);
        c.insert(b"a".to_vec(), b"reply".to_vec(), secs(t0, 29));
        assert_eq!(c.get(b"a", secs(t0, 29)), Some(b"reply".to_vec()));
        // One rotation at 30 s: now in the old generation, still answered.
        assert_eq!(c.get(b"a", secs(t0, 31)), Some(b"reply".to_vec()));
        assert_eq!(c.get(b"a", secs(t0, 59)), Some(b"reply".to_vec()));
        // Second rotation at 60 s: gone.
        assert_eq!(c.get(b"a", secs(t0, 60)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn lives_at_least_one_generation_even_with_sparse_calls() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(GEN);
        c.get(b"x", t0);
        // Nothing happens for 55 s, then an insert: the rotation at 30 s is
        // applied late, but the boundary stays on the 30 s grid.
        c.insert(b"b".to_vec(), b"r".to_vec(), secs(t0, 55));
        assert_eq!(c.get(b"b", secs(t0, 84)), Some(b"r".to_vec()));
        assert_eq!(c.get(b"b", secs(t0, 89)), Some(b"r".to_vec()));
        assert_eq!(c.get(b"b", secs(t0, 90)), None);
    }

    #[test]
    fn long_idle_drops_everything() {
        let t0 = Instant::now();
        let mut c = CookieCache::new(GEN);
        c.insert(b"a".to_vec(), b"r".to_vec(), t0);
        assert_eq!(c.get(b"a", secs(t0, 3600)), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut c = CookieCache::new(GEN);
        c.insert(b"a".to_vec(), b"r".to_vec(), t0);
        assert_eq!(
            c.get(b"a", t0 - Duration::from_secs(50)),
            Some(b"r".to_vec())
        );
    }

    #[test]
    fn entry_cap_enforced() {
        let t0 = Instant::now();
        let limits = CacheLimits {
            max_entries: 3,
            max_bytes: usize::MAX,
        };
        let mut c = CookieCache::with_limits(GEN, limits);
        for i in 0..10u8 {
            c.insert(vec![i], vec![i], t0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.dropped(), 7);
        assert_eq!(c.get(&[0], t0), Some(vec![0]));
        assert_eq!(c.get(&[9], t0), None);
        // Replacing an existing entry is not blocked by the cap.
        c.insert(vec![0], vec![42], t0);
        assert_eq!(c.get(&[0], t0), Some(vec![42]));
        // After a rotation the new generation has room again; old entries still hit.
        c.insert(vec![9], vec![9], secs(t0, 30));
        assert_eq!(c.get(&[9], secs(t0, 30)), Some(vec![9]));
        assert_eq!(c.get(&[1], secs(t0, 30)), Some(vec![1]));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn byte_cap_enforced() {
        let t0 = Instant::now();
        let limits = CacheLimits {
            max_entries: 100,
            max_bytes: 25,
        };
        let mut c = CookieCache::with_limits(GEN, limits);
        c.insert(b"a".to_vec(), vec![0; 9], t0); // 10 bytes
        c.insert(b"b".to_vec(), vec![0; 9], t0); // 20 bytes
        c.insert(b"c".to_vec(), vec![0; 9], t0); // would be 30: dropped
        assert_eq!(c.len(), 2);
        assert_eq!(c.dropped(), 1);
        // Replacing "a" with a smaller reply frees room.
        c.insert(b"a".to_vec(), vec![0; 1], t0); // 12 bytes
        c.insert(b"c".to_vec(), vec![0; 9], t0); // 22 bytes
        assert_eq!(c.len(), 3);
    }
}
