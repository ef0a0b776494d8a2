//! Call state that outlives relayd: what a call is made of, as plain serde
//! records, and the [`Store`] that keeps them.
//!
//! Records name things (interface names and addresses, ports, tags) and
//! never hold indices into relayd's tables, sockets or instants (the only
//! monotonic times, kernel last-seen and arrival stamps, are dropped by a
//! restore when they belong to an earlier boot):
//! a relayd started later, or on another host, must be able to rebuild the
//! call from them alone. Times are wall-clock milliseconds since the epoch.
//!
//! The call manager hands out [`Change`]s; relayd commits them before it
//! sends the reply that made them true. [`journal::FileJournal`] is the
//! embedded backend; [`redis::Replicated`] tees it into a Redis feed that a
//! standby mirrors ([`redis::Mirror`]).
//! Stored changes are encoded with postcard ([`Change::encode`]): compact
//! and fast, but positional, so the record types are versioned
//! ([`RECORD_VERSION`]; see [`records`]).

pub mod journal;
pub mod records;
pub mod redis;

pub use journal::{Discarded, FileJournal, LoadReport, SyncPolicy};
pub use records::{
    CallRecord, CookieRecord, CountsRecord, DtlsRecord, IceRecord, KernelRecord, LearnerRecord,
    MediaRecord, MonologueRecord, PortRecord, RocRecord, RtpRecord, SdesKeyRecord, SrtpRecord,
    SubscriptionRecord, TrackingRecord, WebRtcRecord, RECORD_VERSION,
};

/// One change to the stored state. Part of the record format, like the
/// records: see [`records`] before changing it.
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

impl Change {
    /// Appends this change's encoding (postcard, record format
    /// [`RECORD_VERSION`]) to `out`; on an error `out` is as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let start = out.len();
        postcard::serialize_with_flavor(self, AppendTo(out)).map_err(|e| {
            out.truncate(start);
            StoreError::Encode(e)
        })
    }
}

/// A postcard output that appends to a vector already holding other
/// frames.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
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
    Encode(#[source] postcard::Error),
    /// A change encodes to more than a journal frame holds.
    #[error("a change of {bytes} bytes is over the {limit}-byte frame limit")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The most a frame holds.
        limit: usize,
    },
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
