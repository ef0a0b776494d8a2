//! The call state store as relayd uses it: opened at start-up, committed to
//! before every reply that changed a call, flushed every second, cleared by
//! an explicit stop. A failing store never stops the relay: the failure is
//! logged and counted, and calls go on in memory.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
};

use relay_state::{Change, CookieRecord, FileJournal, LoadReport, State, Store, StoreError};

use crate::config::StateSync;

/// relayd's handle on its store; [`StateKeeper::off`] keeps nothing. The
/// store can change while relayd runs: a standby has none, and gets one
/// when it takes over ([`StateKeeper::install`]); an active that steps
/// down lets go of its own ([`StateKeeper::release`]).
#[derive(Debug)]
pub struct StateKeeper {
    store: Mutex<Option<Box<dyn Store + Send>>>,
    /// Whether the store keeps calls for a next relayd on this host (a
    /// journal; not Redis alone).
    durable: AtomicBool,
    /// Commits and flushes that failed.
    pub errors: AtomicU64,
    /// A commit failed: the store no longer matches the calls, until it is
    /// rewritten from them ([`StateKeeper::resync`]).
    stale: AtomicBool,
}

impl StateKeeper {
    /// No store (`--no-state`).
    pub fn off() -> Self {
        StateKeeper {
            store: Mutex::new(None),
            durable: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            stale: AtomicBool::new(false),
        }
    }

    /// Opens the journal in `dir` and reads what it holds.
    pub fn open(dir: &Path, sync: StateSync) -> Result<(Self, State, LoadReport), StoreError> {
        let (journal, state, report) = open_journal(dir, sync)?;
        let keeper = StateKeeper::with_store(Box::new(journal));
        Ok((keeper, state, report))
    }

    /// A keeper of `store` (tests, and stores other than the journal).
    pub fn with_store(store: Box<dyn Store + Send>) -> Self {
        StateKeeper {
            store: Mutex::new(Some(store)),
            durable: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            stale: AtomicBool::new(false),
        }
    }

    /// This keeper's store (the journal, or none) teed into a Redis feed:
    /// every change also goes to Redis, asynchronously.
    pub fn replicated(self, feed: std::sync::Arc<relay_state::redis::Feed>) -> Self {
        let local = self.store.into_inner().unwrap_or_else(|e| e.into_inner());
        let durable = local.is_some();
        StateKeeper {
            durable: AtomicBool::new(durable),
            store: Mutex::new(Some(Box::new(relay_state::redis::Replicated::new(
                local, feed,
            )))),
            errors: self.errors,
            stale: self.stale,
        }
    }

    /// Starts keeping calls in `store` (a takeover); `durable` as for
    /// [`StateKeeper::durable`].
    pub fn install(&self, store: Box<dyn Store + Send>, durable: bool) {
        *crate::lock(&self.store) = Some(store);
        self.durable.store(durable, Ordering::Relaxed);
        self.stale.store(false, Ordering::Relaxed);
    }

    /// Empties the store and keeps nothing from now on (stepping down:
    /// the calls are the new active's, and a later start of this relayd
    /// must not bring them back from its journal).
    pub fn release(&self) {
        self.clear();
        *crate::lock(&self.store) = None;
        self.durable.store(false, Ordering::Relaxed);
    }
}

/// Opens the journal in `dir` and reads what it holds.
pub fn open_journal(
    dir: &Path,
    sync: StateSync,
) -> Result<(FileJournal, State, LoadReport), StoreError> {
    let policy = match sync {
        StateSync::Interval => relay_state::SyncPolicy::Periodic,
        StateSync::Always => relay_state::SyncPolicy::Always,
    };
    // relayctl takes the lock for an instant to see whether a relayd
    // holds it: try again for a second before giving up.
    let mut tries = 0;
    let mut journal = loop {
        match FileJournal::open(dir, policy) {
            Err(StoreError::Locked(_)) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => break opened?,
        }
    };
    let (state, report) = journal.load()?;
    Ok((journal, state, report))
}

impl StateKeeper {
    /// Whether a store is in use (changes are taken and committed).
    pub fn enabled(&self) -> bool {
        crate::lock(&self.store).is_some()
    }

    /// Whether calls are kept for a next relayd on this host: without that
    /// (`--no-state`, with or without Redis) a signal ends them too.
    pub fn durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    fn on_store(&self, op: &str, f: impl FnOnce(&mut dyn Store) -> Result<(), StoreError>) {
        let mut store = crate::lock(&self.store);
        let Some(store) = store.as_mut() else { return };
        if let Err(e) = f(store.as_mut()) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, op, "call state store failed; calls go on in memory");
        }
    }

    /// Makes `changes` durable. Call it under the call manager's lock, so
    /// records of one call reach the store in the order they were taken.
    pub fn commit(&self, changes: &[Change]) {
        if !changes.is_empty() {
            let before = self.errors.load(Ordering::Relaxed);
            self.on_store("commit", |s| s.commit(changes));
            if self.errors.load(Ordering::Relaxed) != before {
                self.stale.store(true, Ordering::Relaxed);
            }
        }
    }

    /// After a failed commit, rewrites the store from `calls` (every call
    /// as it is now), so a lost change cannot bring back a deleted call or
    /// stale ports. Call it under the call manager's lock.
    pub fn resync(&self, calls: impl FnOnce() -> Vec<Change>) {
        if self.stale.swap(false, Ordering::Relaxed) {
            let before = self.errors.load(Ordering::Relaxed);
            let records = calls();
            self.on_store("rewrite", |s| {
                s.clear()?;
                s.commit(&records)
            });
            if self.errors.load(Ordering::Relaxed) != before {
                self.stale.store(true, Ordering::Relaxed);
            } else {
                tracing::warn!(
                    calls = records.len(),
                    "call state rewritten after a failed commit"
                );
            }
        }
    }

    /// The change that remembers the reply to `cookie`, for a
    /// retransmission after a restart (None without a store).
    pub fn reply_change(&self, cookie: &[u8], reply: &[u8]) -> Option<Change> {
        if !self.enabled() {
            return None;
        }
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
        self.on_store("sync", |s| s.flush_job().map(|j| job = j));
        if let Some(Err(e)) = job.map(|flush| flush()) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "flushing the call state failed");
        }
    }

    /// Forgets every call (an explicit stop).
    pub fn clear(&self) {
        self.on_store("clear", |s| s.clear());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use relay_state::{CallRecord, State};

    use super::*;

    /// A store whose next commit fails when told to.
    #[derive(Debug, Default)]
    struct Flaky {
        state: Arc<Mutex<State>>,
        fail_next: Arc<AtomicBool>,
    }

    impl Store for Flaky {
        fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
            if self.fail_next.swap(false, Ordering::Relaxed) {
                return Err(StoreError::Io {
                    op: "appending to",
                    path: "journal".into(),
                    source: std::io::ErrorKind::StorageFull.into(),
                });
            }
            let mut state = crate::lock(&self.state);
            changes.iter().for_each(|c| state.apply(c));
            Ok(())
        }
        fn load(&mut self) -> Result<(State, relay_state::LoadReport), StoreError> {
            Ok((crate::lock(&self.state).clone(), Default::default()))
        }
        fn clear(&mut self) -> Result<(), StoreError> {
            *crate::lock(&self.state) = State::default();
            Ok(())
        }
    }

    fn put(id: &str) -> Change {
        Change::Put(CallRecord {
            call_id: id.into(),
            created_ms: 0,
            last_signal_ms: 0,
            delete_at_ms: None,
            monologues: vec![],
        })
    }

    #[test]
    fn a_failed_commit_is_made_good_by_rewriting_the_store() {
        let flaky = Flaky::default();
        let (state, fail_next) = (flaky.state.clone(), flaky.fail_next.clone());
        let keeper = StateKeeper::with_store(Box::new(flaky));
        keeper.commit(&[put("a"), put("b")]);
        keeper.resync(|| unreachable!("nothing failed"));
        // A lost Remove would bring "b" back after a restart.
        fail_next.store(true, Ordering::Relaxed);
        keeper.commit(&[Change::Remove("b".into())]);
        assert_eq!(keeper.errors.load(Ordering::Relaxed), 1);
        assert!(crate::lock(&state).calls.contains_key("b"));
        keeper.resync(|| vec![put("a")]);
        let ids: Vec<String> = crate::lock(&state).calls.keys().cloned().collect();
        assert_eq!(ids, ["a"]);
        keeper.resync(|| unreachable!("rewritten once"));
    }
}
