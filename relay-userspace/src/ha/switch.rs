//! The role changes of an active/standby pair.
//!
//! **Taking over** (the floating address arrived, or `relayctl takeover`):
//! the mirror's calls go through the restore a restart uses
//! ([`CallManager::restore`]: ports bound again, kernel entries installed
//! the way a confirmation installs them, timers and forwarders started),
//! so a taken-over call cannot differ from a restored one. The local
//! journal is emptied and refilled with them (the active's records in
//! Redis are newer than anything it holds), a feed seeded with them starts
//! writing (this relay owns the keys now), and offers are served from then
//! on.
//!
//! **Stepping down** (the floating address left an active): the feed stops
//! at once, writing nothing more (the keys are the new active's), every
//! call is dropped here without a word to Redis (kernel entries removed,
//! ports released, forwarders stopped), the journal is emptied, and a
//! mirror starts.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use relay_state::{
    redis::{Feed, Keys, Replicated},
    Store,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{watch::AddressEvent, Replication, Role};
use crate::{calls::CallManager, config::StateSync, state::StateKeeper};

/// Why a role change was not made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SwitchError {
    /// Taking over on an active.
    #[error("this relay is already the active")]
    AlreadyActive,
    /// Stepping down on a standby.
    #[error("this relay is already a standby")]
    AlreadyStandby,
    /// No `--redis`: no pair.
    #[error("not part of an active/standby pair (no --redis)")]
    NoRedis,
}

/// What a takeover did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Takeover {
    /// Calls the mirror held.
    pub mirrored: usize,
    /// Calls restored and now served.
    pub restored: usize,
    /// Calls that could not be restored (logged; their keys go).
    pub failed: usize,
    /// Calls whose time had run out (ended at once).
    pub ended: usize,
    /// How long it took, ms.
    pub took_ms: u64,
}

/// Everything a role change touches.
#[derive(Debug)]
pub struct Switch {
    /// The calls.
    pub calls: Arc<Mutex<CallManager>>,
    /// Their store.
    pub state: Arc<StateKeeper>,
    /// The role and its Redis side.
    pub replication: Arc<Replication>,
    /// `--state-dir` (None with `--no-state`).
    pub state_dir: Option<PathBuf>,
    /// `--state-sync`.
    pub state_sync: StateSync,
}

impl Switch {
    /// Makes this standby the active (see the [module docs](self)).
    pub fn take_over(&self) -> Result<Takeover, SwitchError> {
        let started = Instant::now();
        let target = self
            .replication
            .target()
            .cloned()
            .ok_or(SwitchError::NoRedis)?;
        if self.replication.role() == Role::Active {
            return Err(SwitchError::AlreadyActive);
        }
        let local = self.empty_journal();
        let mirrored = self.replication.take_mirror().unwrap_or_default();
        let mut calls = crate::lock(&self.calls);
        calls.set_changes(true);
        let report = calls.restore(mirrored.calls.into_values());
        // Ends the calls whose time ran out meanwhile, starts forwarders.
        calls.tick(tokio::time::Instant::now());
        // Failed and ended calls: the seeded feed's first rewrite of Redis
        // removes their keys, as it removes any key of no live call.
        drop(calls.take_changes());
        let records = calls.records();
        let durable = local.is_some();
        let local = local.and_then(|mut journal| match journal.commit(&records) {
            Ok(()) => Some(journal),
            Err(e) => {
                tracing::error!(error = %e, "call state journal not written at the takeover; \
                    calls are kept in Redis only");
                None
            }
        });
        let feed = Arc::new(Feed::start_seeded(target, Keys::default(), &records));
        self.state
            .install(Box::new(Replicated::new(local, feed.clone())), durable);
        self.replication.set_active(feed);
        calls.run_deferred();
        let took = Takeover {
            mirrored: report.restored + report.failed.len(),
            restored: report.restored,
            failed: report.failed.len(),
            ended: report.restored - calls.len().min(report.restored),
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        tracing::info!(
            restored = took.restored,
            failed = took.failed,
            ended = took.ended,
            took_ms = took.took_ms,
            "took over: this relay is the active"
        );
        Ok(took)
    }

    /// The journal of `--state-dir`, emptied; None without one, or when it
    /// cannot be opened (logged: the takeover goes on with Redis alone).
    fn empty_journal(&self) -> Option<Box<dyn Store + Send>> {
        let dir = self.state_dir.as_ref()?;
        let opened =
            crate::state::open_journal(dir, self.state_sync).and_then(|(mut j, old, _)| {
                if !old.calls.is_empty() {
                    tracing::info!(
                        calls = old.calls.len(),
                        "journal calls dropped: \
                    the active's calls in Redis replace them"
                    );
                }
                j.clear().map(|()| j)
            });
        match opened {
            Ok(journal) => Some(Box::new(journal)),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "call state journal unusable \
                    at the takeover; calls are kept in Redis only");
                None
            }
        }
    }

    /// Makes this active a standby (see the [module docs](self)); returns
    /// how many calls it let go.
    pub fn step_down(&self) -> Result<usize, SwitchError> {
        if self.replication.target().is_none() {
            return Err(SwitchError::NoRedis);
        }
        if self.replication.role() == Role::Standby {
            return Err(SwitchError::AlreadyStandby);
        }
        // The feed first: nothing below may reach Redis.
        self.replication.set_standby();
        let mut calls = crate::lock(&self.calls);
        calls.set_changes(false);
        let dropped = calls.len();
        calls.clear();
        self.state.release();
        tracing::warn!(
            calls = dropped,
            "stepped down: this relay is a standby; its calls, kernel streams and ports \
             are released (the new active serves them)"
        );
        Ok(dropped)
    }
}

/// A role change asked for.
#[derive(Debug)]
pub enum Request {
    /// `relayctl takeover`, answered on the channel.
    Takeover(oneshot::Sender<Result<Takeover, SwitchError>>),
    /// The floating address arrived or left.
    Address(AddressEvent),
}

/// Makes the role changes `requests` ask for, one at a time, until the
/// senders go.
pub async fn serve(switch: Switch, mut requests: mpsc::UnboundedReceiver<Request>) {
    let switch = Arc::new(switch);
    while let Some(request) = requests.recv().await {
        let switch = switch.clone();
        // Binding ports and installing streams: off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || match request {
            Request::Takeover(reply) => {
                let _ = reply.send(switch.take_over());
            }
            Request::Address(AddressEvent::Appeared) => match switch.take_over() {
                Ok(_) | Err(SwitchError::AlreadyActive) => {}
                Err(e) => tracing::warn!(error = %e, "floating address arrived; no takeover"),
            },
            Request::Address(AddressEvent::Gone) => match switch.step_down() {
                Ok(_) | Err(SwitchError::AlreadyStandby) => {}
                Err(e) => tracing::warn!(error = %e, "floating address left; not stepping down"),
            },
        })
        .await;
    }
}
