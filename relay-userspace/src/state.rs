//! The call state store as relayd uses it: opened at start-up, committed to
//! before every reply that changed a call, flushed every second, cleared by
//! an explicit stop. A failing store never stops the relay: the failure is
//! logged and counted, and calls go on in memory.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use relay_state::{Change, CookieRecord, FileJournal, LoadReport, State, Store, StoreError};

use crate::config::StateSync;

/// relayd's handle on its store; [`StateKeeper::off`] keeps nothing.
#[derive(Debug)]
pub struct StateKeeper {
    store: Option<Mutex<Box<dyn Store + Send>>>,
    /// Commits and flushes that failed.
    pub errors: AtomicU64,
}

impl StateKeeper {
    /// No store (`--no-state`).
    pub fn off() -> Self {
        StateKeeper {
            store: None,
            errors: AtomicU64::new(0),
        }
    }

    /// Opens the journal in `dir` and reads what it holds.
    pub fn open(dir: &Path, sync: StateSync) -> Result<(Self, State, LoadReport), StoreError> {
        let policy = match sync {
            StateSync::Interval => relay_state::SyncPolicy::Periodic,
            StateSync::Always => relay_state::SyncPolicy::Always,
        };
        let mut journal = FileJournal::open(dir, policy)?;
        let (state, report) = journal.load()?;
        let keeper = StateKeeper {
            store: Some(Mutex::new(Box::new(journal))),
            errors: AtomicU64::new(0),
        };
        Ok((keeper, state, report))
    }

    /// Whether a store is in use.
    pub fn enabled(&self) -> bool {
        self.store.is_some()
    }

    fn with_store(&self, op: &str, f: impl FnOnce(&mut dyn Store) -> Result<(), StoreError>) {
        let Some(store) = &self.store else { return };
        if let Err(e) = f(crate::lock(store).as_mut()) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, op, "call state store failed; calls go on in memory");
        }
    }

    /// Makes `changes` durable. Call it under the call manager's lock, so
    /// records of one call reach the store in the order they were taken.
    pub fn commit(&self, changes: &[Change]) {
        if !changes.is_empty() {
            self.with_store("commit", |s| s.commit(changes));
        }
    }

    /// The change that remembers the reply to `cookie`, for a
    /// retransmission after a restart (None without a store).
    pub fn reply_change(&self, cookie: &[u8], reply: &[u8]) -> Option<Change> {
        self.store.as_ref()?;
        Some(Change::Cookie(CookieRecord {
            cookie: cookie.to_vec(),
            reply: reply.to_vec(),
            answered_ms: crate::calls::persist::unix_ms(),
        }))
    }

    /// Flushes written changes to disk (every second), without holding
    /// the store meanwhile: commits go on during the flush.
    pub fn sync(&self) {
        let mut job = None;
        self.with_store("sync", |s| s.flush_job().map(|j| job = j));
        if let Some(Err(e)) = job.map(|flush| flush()) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "flushing the call state failed");
        }
    }

    /// Forgets every call (an explicit stop).
    pub fn clear(&self) {
        self.with_store("clear", |s| s.clear());
    }
}
