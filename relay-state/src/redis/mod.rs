//! Replication of call state through Redis, for an active/standby pair
//! (docs/ha.md).
//!
//! - [`RedisTarget`]: `--redis=[PASSWORD@]HOST:PORT/DB`, as rtpengine reads it.
//! - [`link`]: connecting, and telling a wrong password from an outage.
//! - [`wire`]: the key layout, values and channel messages.
//! - [`Feed`]: the active's asynchronous, bounded change feed.
//! - [`Replicated`]: the active's store, the local journal teed into the feed.
//! - [`Mirror`]: the standby's live copy of the active's calls.
//!
//! The `redis` crate's synchronous client runs on threads of their own:
//! nothing here needs an async runtime, and nothing here blocks a caller
//! on Redis.

pub mod feed;
pub mod link;
pub mod mirror;
pub mod store;
pub mod target;
pub mod wire;

pub use feed::{Feed, FeedStatus};
pub use link::{probe, LinkError};
pub use mirror::{Mirror, MirrorStatus};
pub use store::Replicated;
pub use target::{RedisTarget, TargetError, PASSWORD_ENV};
pub use wire::Keys;

/// The state of a link to Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet since start.
    Connecting,
    /// Connected and working.
    Up,
    /// Lost or never reached; retrying.
    Down,
}

impl Link {
    /// `connecting`, `up` or `down`.
    pub fn name(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Up => "up",
            Link::Down => "down",
        }
    }
}

/// Wall clock, milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Locks `m`, whatever a panicking holder left (the data are counters and
/// records, always whole).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
