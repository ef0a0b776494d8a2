//! Call state that outlives relayd: what a call is made of, as plain serde
//! records, and the [`Store`] that keeps them.
//!
//! Records name things (interface names and addresses, ports, tags) and
//! never hold indices into relayd's tables, sockets or monotonic instants:
//! a relayd started later, or on another host, must be able to rebuild the
//! call from them alone. Times are wall-clock milliseconds since the epoch.
//!
//! The call manager hands out [`Change`]s; relayd commits them before it
//! sends the reply that made them true. [`journal::FileJournal`] is the
//! embedded backend; a replicated one (Redis) implements the same trait.

pub mod journal;
pub mod records;

pub use journal::{Discarded, FileJournal, LoadReport, SyncPolicy};
pub use records::{
    CallRecord, CookieRecord, CountsRecord, KernelRecord, LearnerRecord, MediaRecord,
    MonologueRecord, PortRecord, RtpRecord, TrackingRecord,
};

/// One change to the stored state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// The call as it is now (replaces any earlier record of it).
    Put(CallRecord),
    /// The call is gone.
    Remove(String),
    /// An answered NG cookie, so a retransmission after a restart gets the
    /// same reply.
    Cookie(CookieRecord),
}

/// What a store holds: every live call and the cookies still worth
/// answering from cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Calls by call-id.
    pub calls: std::collections::BTreeMap<String, CallRecord>,
    /// Answered cookies, oldest first.
    pub cookies: Vec<CookieRecord>,
}

impl State {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(call) => {
                self.calls.insert(call.call_id.clone(), call.clone());
            }
            Change::Remove(id) => {
                self.calls.remove(id);
            }
            Change::Cookie(c) => self.cookies.push(c.clone()),
        }
    }

    /// Forgets cookies answered before `oldest_ms`.
    pub fn expire_cookies(&mut self, oldest_ms: u64) {
        self.cookies.retain(|c| c.answered_ms >= oldest_ms);
    }
}

/// A flush of written changes, run outside the store's lock.
pub type FlushJob = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or a file in it could not be used.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded (never expected: records are plain data).
    #[error("encoding a state record: {0}")]
    Encode(#[source] serde_json::Error),
    /// Another relayd holds this state directory.
    #[error("state directory {0} is in use by another relayd")]
    Locked(std::path::PathBuf),
}

/// Where call state is kept.
pub trait Store: std::fmt::Debug {
    /// Makes `changes` durable, in order, before returning (as durable as
    /// the store's sync policy says).
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError>;
    /// Everything the store holds, and what it had to discard to read it.
    fn load(&mut self) -> Result<(State, LoadReport), StoreError>;
    /// Pushes written changes to stable storage (called periodically).
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// [`Store::sync`] as work to run without holding the store: a flush
    /// can take milliseconds, and commits should not wait for it. None
    /// when there is nothing to flush; the default flushes in place.
    fn flush_job(&mut self) -> Result<Option<FlushJob>, StoreError> {
        self.sync().map(|()| None)
    }
    /// Drops every call (an operator stopping the relay for good).
    fn clear(&mut self) -> Result<(), StoreError>;
}
