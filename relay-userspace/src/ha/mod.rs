//! relayd's place in an active/standby pair (`--redis`, `--standby`,
//! `--floating-address`; see docs/ha.md): its role, the Redis feed an
//! active writes its calls to or the mirror a standby keeps of them, and
//! what they report.
//!
//! - [`watch`]: the floating address appearing or going (netlink).
//! - [`switch`]: the role changes themselves (takeover, stepping down).

pub mod switch;
pub mod watch;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use relay_state::redis::{Feed, Keys, LinkError, Mirror, RedisTarget};
use serde::Serialize;

/// What a relayd does with calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves NG and forwards media (with `--redis`, replicating its calls).
    Active,
    /// Mirrors an active's calls from Redis; serves none.
    Standby,
}

impl Role {
    /// `active` or `standby`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// How long a stopping relayd waits for Redis to take its last changes.
const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// The role and its Redis side. The role changes at a takeover
/// ([`switch`]), so it sits behind a lock that only role changes and
/// reports take.
#[derive(Debug)]
pub struct Replication {
    target: Option<RedisTarget>,
    inner: Mutex<Side>,
}

/// What the current role runs: an active's feed or a standby's mirror.
#[derive(Debug)]
struct Side {
    role: Role,
    feed: Option<Arc<Feed>>,
    mirror: Option<Mirror>,
}

impl Default for Replication {
    /// An active relayd without Redis.
    fn default() -> Self {
        Replication {
            target: None,
            inner: Mutex::new(Side {
                role: Role::Active,
                feed: None,
                mirror: None,
            }),
        }
    }
}

impl Replication {
    /// Checks `target` once: a password or database Redis refuses is an
    /// error (relayd does not start); Redis unreachable is only logged
    /// (relayd starts, and replication begins when Redis answers).
    pub fn check(target: &RedisTarget) -> Result<(), LinkError> {
        match relay_state::redis::probe(target) {
            Ok(()) => Ok(()),
            Err(e) if e.is_config() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable at start: relaying anyway, \
                    calls are replicated once it answers");
                Ok(())
            }
        }
    }

    /// An active relayd writing its calls to `target`.
    pub fn active(target: &RedisTarget) -> Self {
        Replication {
            target: Some(target.clone()),
            inner: Mutex::new(Side {
                role: Role::Active,
                feed: Some(Arc::new(Feed::start(target.clone(), Keys::default()))),
                mirror: None,
            }),
        }
    }

    /// A standby mirroring the calls in `target`.
    pub fn standby(target: &RedisTarget) -> Self {
        Replication {
            target: Some(target.clone()),
            inner: Mutex::new(Side {
                role: Role::Standby,
                feed: None,
                mirror: Some(Mirror::start(target.clone(), Keys::default())),
            }),
        }
    }

    fn side(&self) -> std::sync::MutexGuard<'_, Side> {
        crate::lock(&self.inner)
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.side().role
    }

    /// Where calls are replicated, with `--redis`.
    pub fn target(&self) -> Option<&RedisTarget> {
        self.target.as_ref()
    }

    /// The feed calls are committed to (an active with `--redis`).
    pub fn feed(&self) -> Option<Arc<Feed>> {
        self.side().feed.clone()
    }

    /// A standby's mirror, stopped, and what it held: the calls a takeover
    /// restores. None for an active (or without Redis).
    pub fn take_mirror(&self) -> Option<relay_state::State> {
        let mirror = self.side().mirror.take()?;
        Some(mirror.finish())
    }

    /// Becomes the active, writing through `feed`.
    pub fn set_active(&self, feed: Arc<Feed>) {
        let mut side = self.side();
        side.role = Role::Active;
        side.feed = Some(feed);
    }

    /// Becomes the standby: the feed stops at once without writing
    /// anything more (the keys are the new active's now), and a mirror
    /// starts.
    pub fn set_standby(&self) {
        let Some(target) = &self.target else { return };
        let feed = {
            let mut side = self.side();
            side.role = Role::Standby;
            side.mirror = Some(Mirror::start(target.clone(), Keys::default()));
            side.feed.take()
        };
        if let Some(feed) = feed {
            feed.abandon();
        }
    }

    /// What relayctl, NG `statistics` and /metrics show.
    pub fn totals(&self) -> ReplicationTotals {
        let side = self.side();
        let target = || {
            self.target
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let redis = match (&side.feed, &side.mirror) {
            (Some(feed), _) => {
                let s = feed.status();
                Some(RedisTotals {
                    target: target(),
                    link: s.link.name(),
                    calls: s.calls,
                    pending: s.pending,
                    lag_ms: Some(millis(s.lag)),
                    last_change_ms: s.last_write_ms,
                    errors: s.errors,
                    resyncs: s.resyncs,
                    skipped: 0,
                })
            }
            (None, Some(mirror)) => {
                let s = mirror.status();
                Some(RedisTotals {
                    target: target(),
                    link: s.link.name(),
                    calls: s.calls,
                    pending: 0,
                    lag_ms: s.lag.map(millis),
                    last_change_ms: s.last_change_ms,
                    errors: s.errors,
                    resyncs: s.resyncs,
                    skipped: s.skipped,
                })
            }
            (None, None) => None,
        };
        ReplicationTotals {
            role: side.role,
            redis,
        }
    }

    /// At exit: lets the feed write what is pending (a couple of seconds
    /// at most), or stops the mirror.
    pub fn finish(&self) {
        let (feed, mirror) = {
            let mut side = self.side();
            (side.feed.clone(), side.mirror.take())
        };
        if let Some(feed) = feed {
            feed.finish(FINISH_WITHIN);
        }
        if let Some(mirror) = mirror {
            mirror.stop();
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The role and the Redis link, for the totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicationTotals {
    /// `active` or `standby`.
    pub role: Role,
    /// The Redis side, with `--redis`.
    pub redis: Option<RedisTotals>,
}

impl Default for ReplicationTotals {
    fn default() -> Self {
        Replication::default().totals()
    }
}

/// The Redis side of the totals: the active's feed or the standby's mirror.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedisTotals {
    /// `HOST:PORT/DB` (never the password).
    pub target: String,
    /// `connecting`, `up` or `down`.
    pub link: &'static str,
    /// Calls replicated (active) or mirrored (standby).
    pub calls: usize,
    /// Calls whose latest change is not in Redis yet (active).
    pub pending: usize,
    /// Replication lag: on the active, the age of the oldest change not in
    /// Redis yet; on the standby, how far behind the active its mirror may
    /// be (None until the active's first report).
    pub lag_ms: Option<u64>,
    /// Last write to Redis (active) or change applied (standby), wall
    /// clock ms.
    pub last_change_ms: Option<u64>,
    /// Failed connection attempts, writes and reads.
    pub errors: u64,
    /// Full rewrites (active) or full reads (standby) of Redis.
    pub resyncs: u64,
    /// Values the standby could not read, skipped.
    pub skipped: u64,
}
