//! The active's change feed: commits hand their changes over in
//! microseconds, and a writer thread of its own puts them in Redis, so an
//! NG reply never waits on Redis.
//!
//! The feed keeps the latest record of every live call and the set of
//! calls changed since the writer last took it. A call changed ten times
//! before the writer comes round is written once, with its latest record:
//! what waits is bounded by the calls, not by the changes. While Redis is
//! unreachable not even that is kept: the feed notes that Redis must be
//! rewritten, and the writer, once connected again (and at start), writes
//! every live call and deletes the keys of calls that ended meanwhile
//! (found with `SCAN`), so the outage costs no call and no stale one
//! comes back.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use redis::Connection;

use super::{
    link::{self, Backoff, LinkError},
    now_ms,
    wire::{encode_call, Keys, Message},
    Link, RedisTarget,
};
use crate::Change;

/// How often an idle writer tells the standby that it is current.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long the writer lets changes gather before it writes them: under
/// load one Redis round trip then carries many commits (an offer, its
/// answer and a delete often collapse into one write), for this much more
/// replication lag.
pub const GATHER: Duration = Duration::from_millis(2);
/// Calls per Redis transaction.
const CHUNK: usize = 256;

/// What the feed reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedStatus {
    /// The writer's link to Redis.
    pub link: Link,
    /// Live calls the feed holds.
    pub calls: usize,
    /// Calls whose latest change is not in Redis yet; while the link is
    /// down, every live call (they are all rewritten when it is back).
    pub pending: usize,
    /// Age of the oldest change not in Redis yet (zero when none is).
    pub lag: Duration,
    /// Last successful write to Redis, wall clock (ms since the epoch).
    pub last_write_ms: Option<u64>,
    /// Failed connection attempts and writes.
    pub errors: u64,
    /// Times the link went down after being up (or never came up).
    pub outages: u64,
    /// Full rewrites of Redis (at start and after each outage).
    pub resyncs: u64,
}

/// The change feed of an active relayd (see the [module docs](self)).
#[derive(Debug)]
pub struct Feed {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    target: RedisTarget,
    keys: Keys,
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Debug)]
struct Queue {
    /// The latest value (encoded record) of every live call.
    calls: HashMap<String, Arc<Vec<u8>>>,
    /// Calls changed since the writer last took them.
    dirty: HashSet<String>,
    /// Redis must be rewritten from `calls`: changes are not tracked
    /// one by one meanwhile.
    resync: bool,
    /// When the oldest change not yet taken by the writer was made.
    dirty_since: Option<Instant>,
    /// When the oldest change the writer is writing was made, and how
    /// many calls it is writing.
    in_flight: Option<(Instant, usize)>,
    link: Link,
    last_write_ms: Option<u64>,
    errors: u64,
    outages: u64,
    resyncs: u64,
    /// Set by [`Feed::finish`]: write what is pending, until then.
    finish_by: Option<Instant>,
    /// Set by [`Feed::abandon`]: write nothing more.
    abandoned: bool,
}

/// What the writer does next.
enum Work {
    /// Rewrite Redis from these calls, as of this time (ms).
    Resync(Vec<(String, Arc<Vec<u8>>)>, u64),
    /// Write these calls' latest values (None: deleted), as of this time.
    Batch(Vec<(String, Option<Arc<Vec<u8>>>)>, u64),
    /// Nothing changed: say the standby is current as of this time.
    Heartbeat(u64),
    /// Finished.
    Stop,
}

impl Feed {
    /// Starts the writer for `target`; it connects in the background (and
    /// keeps trying), so this never waits on Redis.
    pub fn start(target: RedisTarget, keys: Keys) -> Feed {
        Feed::start_seeded(target, keys, &[])
    }

    /// [`Feed::start`] with `calls` (every live call, as records) already
    /// in the feed: the writer's first rewrite of Redis then keeps them.
    /// A standby taking over starts its feed so; started empty, that first
    /// rewrite would delete every key before the calls were pushed.
    pub fn start_seeded(target: RedisTarget, keys: Keys, calls: &[Change]) -> Feed {
        let shared = Arc::new(Shared {
            target,
            keys,
            queue: Mutex::new(Queue {
                calls: HashMap::new(),
                dirty: HashSet::new(),
                resync: true,
                dirty_since: None,
                in_flight: None,
                link: Link::Connecting,
                last_write_ms: None,
                errors: 0,
                outages: 0,
                resyncs: 0,
                finish_by: None,
                abandoned: false,
            }),
            wake: Condvar::new(),
        });
        for (id, value) in encode(calls) {
            if let Some(value) = value {
                crate::redis::lock(&shared.queue)
                    .calls
                    .insert(id.to_owned(), value);
            }
        }
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("redis-feed".into())
                .spawn(move || shared.run())
        };
        let writer = match writer {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "Redis writer thread not started: calls are not replicated");
                None
            }
        };
        Feed {
            shared,
            writer: Mutex::new(writer),
        }
    }

    /// Takes `changes` (committed in this order) for Redis; never waits
    /// on Redis. Cookies are not replicated (see docs/ha.md).
    pub fn push(&self, changes: &[Change]) {
        // Encoded outside the lock: the writer only copies pointers.
        let encoded = encode(changes);
        if encoded.is_empty() {
            return;
        }
        let mut q = self.shared.lock();
        for (id, value) in encoded {
            match value {
                Some(value) => q.calls.insert(id.to_owned(), value),
                None => q.calls.remove(id),
            };
            if !q.resync {
                q.dirty.insert(id.to_owned());
            }
        }
        // Only the first change of a batch wakes the writer: it then
        // gathers the rest for GATHER without being woken for each.
        let first = q.dirty_since.is_none();
        q.dirty_since.get_or_insert_with(Instant::now);
        drop(q);
        if first {
            self.shared.wake.notify_one();
        }
    }

    /// Stops the writer at once, writing nothing more, not even what is
    /// pending: this relay stepped down and the keys are the new active's.
    pub fn abandon(&self) {
        self.shared.lock().abandoned = true;
        self.shared.wake.notify_one();
        let writer = crate::redis::lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Every call ended (an operator's stop): their keys go.
    pub fn clear(&self) {
        let mut q = self.shared.lock();
        let ids: Vec<String> = q.calls.drain().map(|(id, _)| id).collect();
        if !q.resync {
            q.dirty.extend(ids);
        }
        q.dirty_since.get_or_insert_with(Instant::now);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// What the feed reports.
    pub fn status(&self) -> FeedStatus {
        let q = self.shared.lock();
        let now = Instant::now();
        let oldest = [q.dirty_since, q.in_flight.map(|(since, _)| since)]
            .into_iter()
            .flatten()
            .min();
        let pending = match q.resync {
            true => q.calls.len(),
            false => q.dirty.len() + q.in_flight.map_or(0, |(_, n)| n),
        };
        FeedStatus {
            link: q.link,
            calls: q.calls.len(),
            pending,
            lag: oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            last_write_ms: q.last_write_ms,
            errors: q.errors,
            outages: q.outages,
            resyncs: q.resyncs,
        }
    }

    /// Writes what is pending (waiting up to `within` for Redis), then
    /// stops the writer. Later changes are not written.
    pub fn finish(&self, within: Duration) {
        self.shared.lock().finish_by = Some(Instant::now() + within);
        self.shared.wake.notify_one();
        let writer = crate::redis::lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.finish(Duration::ZERO);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        crate::redis::lock(&self.queue)
    }

    /// The writer: connect, rewrite, then write changes as they come,
    /// until finished.
    fn run(&self) {
        let mut con: Option<Connection> = None;
        let mut backoff = Backoff::default();
        loop {
            if con.is_none() {
                match link::connect(&self.target) {
                    Ok(c) => {
                        backoff.reset();
                        self.link_up();
                        con = Some(c);
                    }
                    Err(e) => {
                        self.failed(&e);
                        if !self.pause(backoff.wait()) {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(c) = con.as_mut() else { continue };
            let result = match self.next_work() {
                Work::Stop => return,
                Work::Resync(calls, as_of) => self.resync(c, &calls, as_of),
                Work::Batch(calls, as_of) => self.write(c, &calls, as_of),
                Work::Heartbeat(as_of) => publish_synced(c, &self.keys, as_of),
            };
            match result {
                Ok(()) => self.written(),
                Err(e) => {
                    con = None;
                    let e = LinkError::of(&self.target, &e);
                    self.failed(&e);
                }
            }
        }
    }

    /// Sleeps `wait` (less if finishing); false when the writer should
    /// stop instead of trying again.
    fn pause(&self, wait: Duration) -> bool {
        let q = self.lock();
        let until = Instant::now() + wait;
        let until = q.finish_by.map_or(until, |by| by.min(until));
        let (q, _) = self
            .wake
            .wait_timeout_while(q, until.saturating_duration_since(Instant::now()), |q| {
                !q.abandoned
                    && q.finish_by.is_none_or(|by| Instant::now() < by)
                    && Instant::now() < until
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !q.abandoned && q.finish_by.is_none_or(|by| Instant::now() < by)
    }

    /// Waits for something to write (a heartbeat's worth at most).
    fn next_work(&self) -> Work {
        let mut q = self.lock();
        let idle =
            |q: &Queue| !q.resync && q.dirty.is_empty() && q.finish_by.is_none() && !q.abandoned;
        if idle(&q) {
            q = self
                .wake
                .wait_timeout_while(q, HEARTBEAT, |q| idle(q))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        // Let a burst of changes gather (not when resyncing or stopping).
        let gathering = |q: &Queue| !q.abandoned && !q.resync && q.finish_by.is_none();
        if let Some(since) = q.dirty_since.filter(|_| gathering(&q)) {
            let left = (since + GATHER).saturating_duration_since(Instant::now());
            if !left.is_zero() {
                q = self
                    .wake
                    .wait_timeout_while(q, left, |q| gathering(q))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        if q.abandoned {
            return Work::Stop;
        }
        let as_of = now_ms();
        let since = q.dirty_since.take();
        if q.resync {
            q.resync = false;
            q.dirty.clear();
            let calls: Vec<_> = q
                .calls
                .iter()
                .map(|(id, v)| (id.clone(), v.clone()))
                .collect();
            q.in_flight = Some((since.unwrap_or_else(Instant::now), calls.len()));
            return Work::Resync(calls, as_of);
        }
        if q.dirty.is_empty() {
            return match q.finish_by {
                Some(_) => Work::Stop,
                None => Work::Heartbeat(as_of),
            };
        }
        if q.finish_by.is_some_and(|by| Instant::now() >= by) {
            return Work::Stop;
        }
        let ids: Vec<String> = q.dirty.drain().collect();
        let calls: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let value = q.calls.get(&id).cloned();
                (id, value)
            })
            .collect();
        q.in_flight = Some((since.unwrap_or_else(Instant::now), calls.len()));
        Work::Batch(calls, as_of)
    }

    /// Writes every live call and deletes the keys of calls that ended.
    fn resync(
        &self,
        con: &mut Connection,
        calls: &[(String, Arc<Vec<u8>>)],
        as_of: u64,
    ) -> redis::RedisResult<()> {
        let live: HashSet<&str> = calls.iter().map(|(id, _)| id.as_str()).collect();
        let stale: Vec<String> = scan_call_ids(con, &self.keys)?
            .into_iter()
            .filter(|id| !live.contains(id.as_str()))
            .collect();
        let writes = calls
            .iter()
            .map(|(id, v)| (id.as_str(), Some(v.as_slice())))
            .chain(stale.iter().map(|id| (id.as_str(), None)));
        write_chunked(con, &self.keys, writes, as_of)?;
        let mut q = self.lock();
        q.resyncs += 1;
        tracing::info!(
            calls = calls.len(),
            removed = stale.len(),
            "Redis resynchronised with the live calls"
        );
        drop(q);
        Ok(())
    }

    fn write(
        &self,
        con: &mut Connection,
        calls: &[(String, Option<Arc<Vec<u8>>>)],
        as_of: u64,
    ) -> redis::RedisResult<()> {
        let writes = calls
            .iter()
            .map(|(id, v)| (id.as_str(), v.as_deref().map(Vec::as_slice)));
        write_chunked(con, &self.keys, writes, as_of)
    }

    fn link_up(&self) {
        let mut q = self.lock();
        if q.link != Link::Up {
            tracing::info!(redis = %self.target, calls = q.calls.len(), "Redis link up: replicating calls");
        }
        q.link = Link::Up;
        // Whatever happened while down is not known one by one.
        q.resync = true;
        q.dirty.clear();
    }

    fn written(&self) {
        let mut q = self.lock();
        q.in_flight = None;
        q.last_write_ms = Some(now_ms());
    }

    /// A connection attempt or a write failed: the link is down until a
    /// connection works again, and Redis will then be rewritten.
    fn failed(&self, e: &LinkError) {
        let mut q = self.lock();
        q.errors += 1;
        if q.link != Link::Down {
            q.outages += 1;
            tracing::warn!(error = %e, calls = q.calls.len(),
                "Redis link down: calls go on but are not replicated until it is back");
        } else {
            tracing::debug!(error = %e, "Redis still unavailable");
        }
        q.link = Link::Down;
        q.resync = true;
        q.dirty.clear();
        // What was being written is unwritten again.
        if let Some((since, _)) = q.in_flight.take() {
            q.dirty_since = Some(q.dirty_since.map_or(since, |d| d.min(since)));
        }
    }
}

/// Encodes the call changes of `changes` for Redis: a value per put call,
/// None per removed one (cookies are not replicated).
fn encode(changes: &[Change]) -> Vec<(&str, Option<Arc<Vec<u8>>>)> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Put(call) => match encode_call(call) {
                Ok(value) => Some((call.call_id.as_str(), Some(Arc::new(value)))),
                Err(e) => {
                    tracing::error!(call_id = %call.call_id, error = %e, "call record not encoded for Redis");
                    None
                }
            },
            Change::Remove(id) => Some((id.as_str(), None)),
            Change::Cookie(_) => None,
        })
        .collect()
}

/// Writes `calls` (a value, or None to delete), each followed by its
/// change message, in transactions of [`CHUNK`] calls, the last one
/// closed by a `t:AS_OF` message.
fn write_chunked<'a>(
    con: &mut Connection,
    keys: &Keys,
    calls: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    as_of: u64,
) -> redis::RedisResult<()> {
    let channel = keys.channel();
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for (id, value) in calls {
        if queued == 0 {
            pipe.atomic();
        }
        let key = keys.call(id);
        match value {
            Some(v) => pipe.cmd("SET").arg(key).arg(v).ignore(),
            None => pipe.cmd("DEL").arg(key).ignore(),
        };
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg(Message::Call(id.to_owned()).encode())
            .ignore();
        queued += 1;
        if queued == CHUNK {
            pipe.query::<()>(con)?;
            pipe.clear();
            queued = 0;
        }
    }
    if queued == 0 {
        pipe.atomic();
    }
    pipe.cmd("PUBLISH")
        .arg(&channel)
        .arg(Message::SyncedThrough(as_of).encode())
        .ignore();
    pipe.query::<()>(con)
}

/// Tells the standby it is current as of `as_of`.
fn publish_synced(con: &mut Connection, keys: &Keys, as_of: u64) -> redis::RedisResult<()> {
    redis::cmd("PUBLISH")
        .arg(keys.channel())
        .arg(Message::SyncedThrough(as_of).encode())
        .query(con)
}

/// The call-ids of every call key in Redis.
pub(crate) fn scan_call_ids(con: &mut Connection, keys: &Keys) -> redis::RedisResult<Vec<String>> {
    let pattern = keys.call_pattern();
    let mut ids = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        ids.extend(
            batch
                .iter()
                .filter_map(|key| keys.call_id_of(key).map(str::to_owned)),
        );
        if next == 0 {
            // SCAN may return a key twice.
            ids.sort_unstable();
            ids.dedup();
            return Ok(ids);
        }
        cursor = next;
    }
}
