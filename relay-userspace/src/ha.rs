//! relayd's place in an active/standby pair (`--redis`, `--standby`; see
//! docs/ha.md): its role, the Redis feed an active writes its calls to or
//! the mirror a standby keeps of them, and what they report.

use std::{sync::Arc, time::Duration};

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

/// The role and its Redis side.
#[derive(Debug)]
pub struct Replication {
    role: Role,
    target: Option<String>,
    feed: Option<Arc<Feed>>,
    mirror: Option<Mirror>,
}

impl Default for Replication {
    /// An active relayd without Redis.
    fn default() -> Self {
        Replication {
            role: Role::Active,
            target: None,
            feed: None,
            mirror: None,
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
            role: Role::Active,
            target: Some(target.to_string()),
            feed: Some(Arc::new(Feed::start(target.clone(), Keys::default()))),
            mirror: None,
        }
    }

    /// A standby mirroring the calls in `target`.
    pub fn standby(target: &RedisTarget) -> Self {
        Replication {
            role: Role::Standby,
            target: Some(target.to_string()),
            feed: None,
            mirror: Some(Mirror::start(target.clone(), Keys::default())),
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The feed calls are committed to (an active with `--redis`).
    pub fn feed(&self) -> Option<&Arc<Feed>> {
        self.feed.as_ref()
    }

    /// What relayctl, NG `statistics` and /metrics show.
    pub fn totals(&self) -> ReplicationTotals {
        let redis = match (&self.feed, &self.mirror) {
            (Some(feed), _) => {
                let s = feed.status();
                Some(RedisTotals {
                    target: self.target.clone().unwrap_or_default(),
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
                    target: self.target.clone().unwrap_or_default(),
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
            role: self.role,
            redis,
        }
    }

    /// At exit: lets the feed write what is pending (a couple of seconds
    /// at most), or stops the mirror.
    pub fn finish(&self) {
        if let Some(feed) = &self.feed {
            feed.finish(FINISH_WITHIN);
        }
        if let Some(mirror) = &self.mirror {
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
