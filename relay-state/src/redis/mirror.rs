//! The standby's mirror: a live copy of the active's calls, read from
//! Redis.
//!
//! A thread of its own subscribes to the change channel first and then
//! reads every call key (`SCAN` + `MGET`), replacing the whole mirror, so
//! that changes made while it was away (or before it started) are caught
//! up and calls that ended meanwhile go; messages arriving during that
//! read wait in the subscription and are applied after it. Each `c:ID`
//! message is then applied by reading the call's key (its latest value:
//! several messages of one call may bring the same record); each `t:MS`
//! says the mirror holds everything the active committed before MS. A
//! value this relayd cannot read (another record format, damage) is
//! skipped and counted, never a panic.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use redis::Connection;

use super::{
    feed::scan_call_ids,
    link::{self, Backoff, LinkError},
    now_ms,
    wire::{decode_call, Keys, Message},
    Link, RedisTarget,
};
use crate::{CallRecord, State};

/// How long the subscriber waits for a message before it checks whether
/// it should stop.
const POLL: Duration = Duration::from_millis(200);
/// Keys per `MGET`.
const CHUNK: usize = 256;

/// What the mirror reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorStatus {
    /// Its link to Redis.
    pub link: Link,
    /// Calls mirrored.
    pub calls: usize,
    /// How far behind the active it may be: the age of the newest
    /// "everything before this is in Redis" it has read (the active says
    /// so every second). None before the first.
    pub lag: Option<Duration>,
    /// When it last applied a change, wall clock (ms since the epoch).
    pub last_change_ms: Option<u64>,
    /// Call changes applied.
    pub applied: u64,
    /// Values it could not read, skipped.
    pub skipped: u64,
    /// Full reads of Redis (at start and after each outage).
    pub resyncs: u64,
    /// Failed connection attempts and reads.
    pub errors: u64,
}

/// A standby's live copy of the active's calls (see the
/// [module docs](self)).
#[derive(Debug)]
pub struct Mirror {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    target: RedisTarget,
    keys: Keys,
    stop: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    calls: BTreeMap<String, CallRecord>,
    link: Link,
    synced_through_ms: Option<u64>,
    last_change_ms: Option<u64>,
    applied: u64,
    skipped: u64,
    resyncs: u64,
    errors: u64,
}

impl Mirror {
    /// Starts mirroring `target`; connects in the background (and keeps
    /// trying), so this never waits on Redis.
    pub fn start(target: RedisTarget, keys: Keys) -> Mirror {
        let shared = Arc::new(Shared {
            target,
            keys,
            stop: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                calls: BTreeMap::new(),
                link: Link::Connecting,
                synced_through_ms: None,
                last_change_ms: None,
                applied: 0,
                skipped: 0,
                resyncs: 0,
                errors: 0,
            }),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("redis-mirror".into())
                .spawn(move || shared.run())
        };
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "Redis mirror thread not started: no calls are mirrored");
                None
            }
        };
        Mirror {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// The mirrored calls, as a state (no cookies: they are not
    /// replicated).
    pub fn state(&self) -> State {
        State {
            calls: self.shared.lock().calls.clone(),
            cookies: Vec::new(),
        }
    }

    /// Stops mirroring and returns the calls it holds, without waiting for
    /// its thread (which ends within a fraction of a second, in the
    /// background): no change is applied after this returns, so the copy
    /// is final. A takeover restores it.
    pub fn finish(self) -> State {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Taken under the lock every change is applied under: a change
        // applied later sees the stop and is dropped.
        let state = self.state();
        if let Some(thread) = crate::redis::lock(&self.thread).take() {
            let _ = std::thread::Builder::new()
                .name("redis-mirror-end".into())
                .spawn(move || thread.join());
        }
        state
    }

    /// The call-ids mirrored.
    pub fn call_ids(&self) -> Vec<String> {
        self.shared.lock().calls.keys().cloned().collect()
    }

    /// What the mirror reports.
    pub fn status(&self) -> MirrorStatus {
        let i = self.shared.lock();
        MirrorStatus {
            link: i.link,
            calls: i.calls.len(),
            lag: i
                .synced_through_ms
                .map(|ms| Duration::from_millis(now_ms().saturating_sub(ms))),
            last_change_ms: i.last_change_ms,
            applied: i.applied,
            skipped: i.skipped,
            resyncs: i.resyncs,
            errors: i.errors,
        }
    }

    /// Stops mirroring (waits for the thread, a fraction of a second).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let thread = crate::redis::lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::redis::lock(&self.inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        let mut backoff = Backoff::default();
        while !self.stopping() {
            match self.session(&mut backoff) {
                Ok(()) => return,
                Err(e) => self.failed(&e),
            }
            // Sleep in steps, so a stop is not kept waiting.
            let until = Instant::now() + backoff.wait();
            while !self.stopping() && Instant::now() < until {
                std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            }
        }
    }

    /// One connection's life: subscribe, read everything, apply messages
    /// until stopped (Ok) or the link fails.
    fn session(&self, backoff: &mut Backoff) -> Result<(), LinkError> {
        let fail = |e: redis::RedisError| LinkError::of(&self.target, &e);
        let mut reader = link::connect(&self.target)?;
        let mut subscriber = link::connect(&self.target)?;
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(self.keys.channel()).map_err(fail)?;
        pubsub.set_read_timeout(Some(POLL)).map_err(fail)?;
        self.resync(&mut reader).map_err(fail)?;
        backoff.reset();
        while !self.stopping() {
            match pubsub.get_message() {
                Ok(msg) => self
                    .on_message(msg.get_payload_bytes(), &mut reader)
                    .map_err(fail)?,
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    /// Replaces the mirror with every call key's value.
    fn resync(&self, con: &mut Connection) -> redis::RedisResult<()> {
        let ids = scan_call_ids(con, &self.keys)?;
        let mut calls = BTreeMap::new();
        let mut skipped = 0;
        for chunk in ids.chunks(CHUNK) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|id| self.keys.call(id)).collect();
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query(con)?;
            for (id, value) in chunk.iter().zip(values) {
                // A key that went between SCAN and MGET: its call ended.
                let Some(value) = value else { continue };
                match decode_call(id, &value) {
                    Ok(call) => {
                        calls.insert(id.clone(), call);
                    }
                    Err(e) => {
                        skipped += 1;
                        tracing::warn!(call_id = %id, error = %e, "Redis value skipped");
                    }
                }
            }
        }
        let mut i = self.lock();
        if self.stopping() {
            return Ok(());
        }
        if i.link != Link::Up {
            tracing::info!(redis = %self.target, calls = calls.len(), "Redis link up: mirroring the active's calls");
        }
        i.link = Link::Up;
        i.calls = calls;
        i.skipped += skipped;
        i.resyncs += 1;
        i.last_change_ms = Some(now_ms());
        Ok(())
    }

    fn on_message(&self, payload: &[u8], con: &mut Connection) -> redis::RedisResult<()> {
        match Message::decode(payload) {
            Some(Message::Call(id)) => {
                let value: Option<Vec<u8>> =
                    redis::cmd("GET").arg(self.keys.call(&id)).query(con)?;
                let mut i = self.lock();
                if self.stopping() {
                    return Ok(());
                }
                match value.map(|v| decode_call(&id, &v)) {
                    Some(Ok(call)) => {
                        i.calls.insert(id, call);
                    }
                    None => {
                        i.calls.remove(&id);
                    }
                    Some(Err(e)) => {
                        i.skipped += 1;
                        tracing::warn!(call_id = %id, error = %e, "Redis value skipped");
                        return Ok(());
                    }
                }
                i.applied += 1;
                i.last_change_ms = Some(now_ms());
            }
            Some(Message::SyncedThrough(ms)) => self.lock().synced_through_ms = Some(ms),
            None => {
                self.lock().skipped += 1;
                tracing::debug!(
                    len = payload.len(),
                    "unknown message on the Redis change channel"
                );
            }
        }
        Ok(())
    }

    fn failed(&self, e: &LinkError) {
        let mut i = self.lock();
        i.errors += 1;
        if i.link != Link::Down {
            tracing::warn!(error = %e, calls = i.calls.len(),
                "Redis link down: the mirror keeps its calls and catches up when it is back");
        } else {
            tracing::debug!(error = %e, "Redis still unavailable");
        }
        i.link = Link::Down;
    }
}
