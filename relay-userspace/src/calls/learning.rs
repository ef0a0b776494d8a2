//! Endpoint learning: where does a party really send from?
//!
//! SDP says where a party *wants* media; NAT often makes it send from
//! somewhere else. Like rtpengine, the relay watches the first packets on
//! the party's port and latches onto a source:
//!
//! - `heuristic` (default): a packet from exactly the SDP address and port
//!   confirms at once; otherwise the best source seen (same address > same
//!   port > anything) is latched once [`LEARNING_WINDOW`] has passed since
//!   the last signalling.
//! - `delayed`: the first source seen after the window.
//! - `immediate`: the first packet.
//! - `off`: the SDP endpoint, confirmed without looking at packets.
//!
//! Until confirmation every packet is forwarded, so early media flows. After
//! it, packets from other sources are forwarded too, unless the stream is
//! strict-source (then they are dropped, in userspace and in the kernel).

use std::{net::SocketAddr, time::Duration};

use tokio::time::Instant;

/// How long after the last offer/answer heuristic learning waits for the
/// exact SDP endpoint before settling for the best other source.
pub const LEARNING_WINDOW: Duration = Duration::from_secs(3);

/// `endpoint-learning` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearningMode {
    /// Exact SDP match at once, else the best candidate after the window.
    #[default]
    Heuristic,
    /// First source after the window.
    Delayed,
    /// First packet.
    Immediate,
    /// No learning: the SDP endpoint.
    Off,
}

impl LearningMode {
    /// rtpengine's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Heuristic => "heuristic",
            Self::Delayed => "delayed",
            Self::Immediate => "immediate",
            Self::Off => "off",
        }
    }

    /// Parses rtpengine's names (`endpoint-learning=...`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "heuristic" => Some(Self::Heuristic),
            "delayed" => Some(Self::Delayed),
            "immediate" => Some(Self::Immediate),
            "off" | "no" => Some(Self::Off),
            _ => None,
        }
    }
}

/// What to do with one received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Forward it (false: strict-source mismatch, drop).
    pub forward: bool,
    /// This packet confirmed the endpoint (time to try kernelizing).
    pub newly_confirmed: bool,
}

/// One party's endpoint on one relay port.
#[derive(Clone, Debug)]
pub struct Learner {
    mode: LearningMode,
    strict: bool,
    sdp: Option<SocketAddr>,
    /// Best source seen so far and its rank (heuristic/delayed).
    candidate: Option<(SocketAddr, u8)>,
    confirmed: Option<SocketAddr>,
    /// When the window started (last signalling).
    since: Instant,
}

/// Rank of a source against the SDP endpoint: higher is better.
fn rank(src: SocketAddr, sdp: Option<SocketAddr>) -> u8 {
    match sdp {
        Some(s) if s == src => 3,
        Some(s) if s.ip() == src.ip() => 2,
        Some(s) if s.port() == src.port() => 1,
        _ => 0,
    }
}

impl Learner {
    /// A learner for an endpoint announced in SDP (None: not known yet).
    pub fn new(mode: LearningMode, strict: bool, sdp: Option<SocketAddr>, now: Instant) -> Self {
        let mut l = Learner {
            mode,
            strict,
            sdp,
            candidate: None,
            confirmed: None,
            since: now,
        };
        if mode == LearningMode::Off {
            l.confirmed = sdp;
        }
        l
    }

    /// New signalling: a (possibly different) SDP endpoint. A changed
    /// endpoint restarts learning; the same one keeps what was learned.
    /// Returns whether the confirmed endpoint was dropped.
    pub fn resignal(&mut self, sdp: Option<SocketAddr>, strict: bool, now: Instant) -> bool {
        self.strict = strict;
        if sdp == self.sdp {
            return false;
        }
        let had = self.confirmed.is_some();
        *self = Learner::new(self.mode, strict, sdp, now);
        had && self.confirmed.is_none()
    }

    /// The endpoint announced in SDP.
    pub fn sdp(&self) -> Option<SocketAddr> {
        self.sdp
    }

    /// The confirmed (latched) source, if any.
    pub fn confirmed(&self) -> Option<SocketAddr> {
        self.confirmed
    }

    /// Whether packets from other sources are dropped once confirmed.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Where packets *to* this party go: the latched source when symmetric,
    /// else (or before latching) the SDP endpoint.
    pub fn destination(&self, symmetric: bool) -> Option<SocketAddr> {
        match (symmetric, self.confirmed) {
            (true, Some(c)) => Some(c),
            _ => self.sdp.or(self.confirmed),
        }
    }

    /// The learner as a state record.
    pub fn to_record(&self) -> relay_state::LearnerRecord {
        relay_state::LearnerRecord {
            mode: self.mode.name().to_owned(),
            strict: self.strict,
            sdp: self.sdp,
            candidate: self.candidate,
            confirmed: self.confirmed,
        }
    }

    /// A learner restored from `record`; learning still under way starts
    /// its window again at `now` (what was seen before is kept).
    pub fn from_record(record: &relay_state::LearnerRecord, now: Instant) -> Self {
        Learner {
            mode: LearningMode::from_name(&record.mode).unwrap_or_default(),
            strict: record.strict,
            sdp: record.sdp,
            candidate: record.candidate,
            confirmed: record.confirmed,
            since: now,
        }
    }

    /// The peer nominated `addr` by ICE: it is the endpoint from now on,
    /// whatever was learned. Returns whether that changed anything.
    pub fn nominate(&mut self, addr: SocketAddr) -> bool {
        let changed = self.confirmed != Some(addr);
        self.confirmed = Some(addr);
        changed
    }

    /// Accounts for a packet from `src` at `now`.
    pub fn on_packet(&mut self, src: SocketAddr, now: Instant) -> Verdict {
        if let Some(c) = self.confirmed {
            return Verdict {
                forward: !self.strict || c == src,
                newly_confirmed: false,
            };
        }
        let window_over = now.saturating_duration_since(self.since) >= LEARNING_WINDOW;
        let latch = match self.mode {
            LearningMode::Immediate => Some(src),
            LearningMode::Off => None, // confirmed at creation unless SDP had none
            LearningMode::Delayed => window_over.then_some(src),
            LearningMode::Heuristic => {
                let r = rank(src, self.sdp);
                if self.candidate.is_none_or(|(_, best)| r > best) {
                    self.candidate = Some((src, r));
                }
                if r == 3 {
                    Some(src)
                } else if window_over {
                    self.candidate.map(|(c, _)| c)
                } else {
                    None
                }
            }
        };
        match latch {
            Some(addr) => {
                self.confirmed = Some(addr);
                Verdict {
                    forward: !self.strict || addr == src,
                    newly_confirmed: true,
                }
            }
            None => Verdict {
                forward: true,
                newly_confirmed: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn heuristic_exact_match_confirms_at_once() {
        let mut l = Learner::new(
            LearningMode::Heuristic,
            false,
            Some(sa("192.0.2.1:4000")),
            Instant::now(),
        );
        let v = l.on_packet(sa("192.0.2.1:4000"), Instant::now());
        assert_eq!(
            v,
            Verdict {
                forward: true,
                newly_confirmed: true
            }
        );
        assert_eq!(l.confirmed(), Some(sa("192.0.2.1:4000")));
    }

    #[tokio::test(start_paused = true)]
    async fn heuristic_waits_then_takes_the_best_candidate() {
        let start = Instant::now();
        let mut l = Learner::new(
            LearningMode::Heuristic,
            false,
            Some(sa("10.0.0.5:4000")),
            start,
        );
        // NATed: other address; then same address other port (better).
        assert!(!l.on_packet(sa("198.51.100.9:61000"), start).newly_confirmed);
        assert!(!l.on_packet(sa("10.0.0.5:5555"), start).newly_confirmed);
        assert!(
            !l.on_packet(sa("198.51.100.9:61000"), start + Duration::from_secs(1))
                .newly_confirmed
        );
        assert_eq!(l.confirmed(), None);
        let v = l.on_packet(sa("198.51.100.9:61000"), start + LEARNING_WINDOW);
        assert!(v.newly_confirmed && v.forward);
        assert_eq!(
            l.confirmed(),
            Some(sa("10.0.0.5:5555")),
            "same address ranks above anything"
        );
        assert_eq!(l.destination(true), Some(sa("10.0.0.5:5555")));
        assert_eq!(l.destination(false), Some(sa("10.0.0.5:4000")));
    }

    #[tokio::test(start_paused = true)]
    async fn immediate_delayed_and_off() {
        let now = Instant::now();
        let sdp = Some(sa("10.0.0.5:4000"));
        let mut i = Learner::new(LearningMode::Immediate, false, sdp, now);
        assert!(i.on_packet(sa("203.0.113.1:1"), now).newly_confirmed);
        assert_eq!(i.confirmed(), Some(sa("203.0.113.1:1")));

        let mut d = Learner::new(LearningMode::Delayed, false, sdp, now);
        assert!(
            !d.on_packet(sa("10.0.0.5:4000"), now).newly_confirmed,
            "delayed ignores exact match"
        );
        assert!(
            d.on_packet(sa("203.0.113.2:2"), now + LEARNING_WINDOW)
                .newly_confirmed
        );

        let mut o = Learner::new(LearningMode::Off, false, sdp, now);
        assert_eq!(o.confirmed(), sdp);
        assert!(!o.on_packet(sa("203.0.113.3:3"), now).newly_confirmed);
        assert_eq!(o.destination(true), sdp);
    }

    #[tokio::test(start_paused = true)]
    async fn strict_source_drops_others_after_confirmation() {
        let now = Instant::now();
        let mut l = Learner::new(
            LearningMode::Heuristic,
            true,
            Some(sa("10.0.0.5:4000")),
            now,
        );
        assert!(
            l.on_packet(sa("203.0.113.9:9"), now).forward,
            "before learning everything flows"
        );
        assert!(l.on_packet(sa("10.0.0.5:4000"), now).forward);
        assert!(!l.on_packet(sa("203.0.113.9:9"), now).forward);
        assert!(l.on_packet(sa("10.0.0.5:4000"), now).forward);
    }

    #[tokio::test(start_paused = true)]
    async fn resignal_keeps_or_restarts() {
        let now = Instant::now();
        let mut l = Learner::new(
            LearningMode::Heuristic,
            false,
            Some(sa("10.0.0.5:4000")),
            now,
        );
        l.on_packet(sa("10.0.0.5:4000"), now);
        assert!(
            !l.resignal(Some(sa("10.0.0.5:4000")), false, now),
            "same endpoint: kept"
        );
        assert!(l.confirmed().is_some());
        assert!(
            l.resignal(Some(sa("10.0.0.6:4000")), false, now),
            "changed: unconfirmed"
        );
        assert_eq!(l.confirmed(), None);
        assert_eq!(l.sdp(), Some(sa("10.0.0.6:4000")));
    }
}
