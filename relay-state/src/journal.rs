//! [`FileJournal`]: call state kept in one append-only file of checksummed
//! frames, in a directory that one relayd at a time uses.
//!
//! # Format
//!
//! `dir/journal` is a sequence of frames, each the magic `XRJ1`, the
//! payload's length (u32 LE, at most 16 MiB), the payload's CRC-32 (u32 LE)
//! and the payload: one [`Change`] as JSON. Reading applies the frames in
//! order.
//!
//! # Crash safety
//!
//! - A commit is a single `write` on an `O_APPEND` file: once it returns,
//!   the changes are in the page cache and survive a kill of relayd. With
//!   [`SyncPolicy::Always`] they are on disk too.
//! - Compaction writes `journal.new`, syncs it and renames it over
//!   `journal`: whenever the machine stops, one of the two files is whole.
//! - A frame that a power loss tore, or a disk damaged, costs only itself:
//!   the reader skips to the next magic and reads on, then sets the damaged
//!   file aside and writes a clean one, so that appends never follow
//!   garbage.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use crate::{Change, State, Store, StoreError};

const MAGIC: [u8; 4] = *b"XRJ1";
/// Magic, length, CRC.
const HEADER_LEN: usize = 12;
/// Longest payload: a longer length field is damage, not a frame. It also
/// keeps frames from hiding inside payloads: the length's last byte is 0
/// or 1, control characters that JSON strings always escape.
const MAX_PAYLOAD: usize = 16 << 20;
/// How long an answered cookie is worth keeping (an NG client gives up on
/// a request well before).
const COOKIE_TTL_MS: u64 = 60_000;
/// A journal this small is never compacted...
const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// ...nor one under this many times the size of what it holds.
const COMPACT_RATIO: u64 = 4;

const JOURNAL: &str = "journal";
const STAGED: &str = "journal.new";
const LOCK: &str = "lock";

/// When committed changes reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Each commit is flushed to disk before it returns: it survives a
    /// power loss.
    Always,
    /// A commit reaches the page cache before it returns (it survives a
    /// crash of relayd); [`Store::sync`], called about once a second,
    /// flushes it to disk.
    #[default]
    Periodic,
}

/// A stretch of the journal that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discarded {
    /// Where it starts, in bytes from the start of the file.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
    /// Why the frame that should have started there was rejected.
    pub reason: String,
}

/// What reading a journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Frames read and applied.
    pub frames: usize,
    /// Damaged or torn stretches skipped, in file order.
    pub discarded: Vec<Discarded>,
    /// Whether the journal was replaced by a clean one of what was read.
    pub rewritten: bool,
    /// Where the damaged journal was kept, when it was replaced.
    pub damaged_copy: Option<PathBuf>,
    /// Records that break the invariants of call state (read anyway).
    pub problems: Vec<String>,
}

impl LoadReport {
    /// Whether everything was read and made sense.
    pub fn is_clean(&self) -> bool {
        self.discarded.is_empty() && self.problems.is_empty()
    }

    /// Notes damage at `offset`; a stretch that continues the previous one
    /// extends it, so one damaged spot makes one entry.
    fn discard(&mut self, offset: usize, bytes: usize, reason: &FrameError) {
        let (offset, bytes) = (offset as u64, bytes as u64);
        match self.discarded.last_mut() {
            Some(last) if last.offset + last.bytes == offset => last.bytes += bytes,
            _ => self.discarded.push(Discarded {
                offset,
                bytes,
                reason: reason.to_string(),
            }),
        }
    }
}

impl fmt::Display for LoadReport {
    /// One line, for a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames read", self.frames)?;
        if let Some(first) = self.discarded.first() {
            let bytes: u64 = self.discarded.iter().map(|d| d.bytes).sum();
            write!(
                f,
                "; skipped {bytes} damaged bytes in {} place(s), first at offset {}: {}",
                self.discarded.len(),
                first.offset,
                first.reason
            )?;
        }
        if let Some(copy) = &self.damaged_copy {
            write!(f, "; rewritten, damaged journal kept as {}", copy.display())?;
        }
        if let Some(first) = self.problems.first() {
            write!(f, "; {} problem(s), first: {first}", self.problems.len())?;
        }
        Ok(())
    }
}

/// The embedded, crash-safe [`Store`]: a journal file in a locked
/// directory (see the [module docs](self)).
///
/// Until the first [`Store::load`] it does not know what the file holds;
/// a compaction due before then reads the file first.
pub struct FileJournal {
    dir: PathBuf,
    policy: SyncPolicy,
    /// The directory's lock, held while this is open.
    _lock: Flock<File>,
    /// `dir/journal`, opened for appending.
    file: File,
    /// Its length.
    len: u64,
    /// Whether anything was written since the last fdatasync.
    unsynced: bool,
    /// What the file holds, once read: compaction writes it out.
    mirror: Option<Mirror>,
    /// No compaction before the file is this long (after a failed one,
    /// so that a full disk is not rewritten on every commit).
    compact_after: u64,
}

impl FileJournal {
    /// Opens (creating it, mode 0700, if needed) the state directory
    /// `dir` and its journal, and locks the directory for as long as the
    /// journal is open.
    ///
    /// [`StoreError::Locked`] if another journal holds the lock.
    pub fn open(dir: &Path, policy: SyncPolicy) -> Result<Self, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error("creating", dir))?;
        let lock = lock_dir(dir)?;
        // What a compaction cut short left: the journal beside it is whole.
        remove_if_present(&dir.join(STAGED))?;
        let path = dir.join(JOURNAL);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        let len = file
            .metadata()
            .map_err(io_error("reading the length of", &path))?
            .len();
        // The journal's name must last as long as what is written in it.
        sync_dir(dir)?;
        Ok(FileJournal {
            dir: dir.to_path_buf(),
            policy,
            _lock: lock,
            file,
            len,
            unsynced: false,
            mirror: None,
            compact_after: 0,
        })
    }

    /// Whether a relayd holds the state directory `dir` now: Some(true)
    /// when its lock is held, Some(false) when nobody holds it, None when
    /// there is no such directory (or no lock file in it) to tell.
    pub fn in_use(dir: &Path) -> Option<bool> {
        let file = File::open(dir.join(LOCK)).ok()?;
        // Taken and dropped at once when free.
        Some(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err())
    }

    /// Checks the journal in `dir` without locking or changing anything:
    /// reads every frame and checks that the state they make is coherent
    /// (peer indices in range, no relay port or forwarding slot used
    /// twice). Safe to run beside the relayd that uses the directory.
    pub fn verify(dir: &Path) -> Result<LoadReport, StoreError> {
        fs::metadata(dir).map_err(io_error("reading", dir))?;
        let bytes = read_if_present(&dir.join(JOURNAL))?;
        let (state, _, mut report) = read_frames(&bytes);
        report.problems = check_invariants(&state);
        Ok(report)
    }

    /// Rewrites the journal as the live calls and the cookies answered in
    /// the last minute. Commits do this by themselves when the journal has
    /// grown to several times that size.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let mirror = self.mirror()?;
        mirror.expire_cookies(cookie_cutoff(unix_ms()));
        let bytes = mirror.snapshot();
        self.replace(&bytes, false).map(drop)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The mirror, reading the file first if it has not been read yet.
    fn mirror(&mut self) -> Result<&mut Mirror, StoreError> {
        if self.mirror.is_none() {
            let (_, report) = self.read()?;
            if !report.is_clean() {
                tracing::warn!(dir = %self.dir.display(), %report, "call state journal");
            }
        }
        Ok(self.mirror.get_or_insert_with(Mirror::default))
    }

    /// Reads the file into the mirror, replacing a damaged file; returns
    /// the state it holds.
    fn read(&mut self) -> Result<(State, LoadReport), StoreError> {
        let bytes = read_if_present(&self.path(JOURNAL))?;
        let (mut state, mut mirror, mut report) = read_frames(&bytes);
        let cutoff = cookie_cutoff(unix_ms());
        mirror.expire_cookies(cutoff);
        state.expire_cookies(cutoff);
        report.problems = check_invariants(&state);
        if !report.discarded.is_empty() {
            report.damaged_copy = self.replace(&mirror.snapshot(), true)?;
            report.rewritten = true;
        }
        self.mirror = Some(mirror);
        Ok((state, report))
    }

    /// Replaces the journal with `bytes`, keeping a hard link to the old
    /// one if `keep_old` (then returned). The new file is whole on disk
    /// before it takes the journal's name.
    fn replace(&mut self, bytes: &[u8], keep_old: bool) -> Result<Option<PathBuf>, StoreError> {
        let staged = self.stage(bytes)?;
        let kept = keep_old.then(|| self.keep_damaged()).transpose()?;
        let (from, to) = (self.path(STAGED), self.path(JOURNAL));
        fs::rename(&from, &to).map_err(io_error("renaming", &from))?;
        // The staged file, opened for appending, is now the journal.
        self.file = staged;
        self.len = bytes.len() as u64;
        self.unsynced = false;
        self.compact_after = 0;
        sync_dir(&self.dir)?;
        Ok(kept)
    }

    /// Writes `bytes` to `journal.new` and syncs it.
    fn stage(&self, bytes: &[u8]) -> Result<File, StoreError> {
        let path = self.path(STAGED);
        remove_if_present(&path)?;
        let write = || {
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            Ok(file)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&path);
            io_error("writing", &path)(e)
        })
    }

    /// Links the journal as `journal.damaged-<unix seconds>`, for a post
    /// mortem.
    fn keep_damaged(&self) -> Result<PathBuf, StoreError> {
        let journal = self.path(JOURNAL);
        let secs = unix_ms() / 1000;
        let mut n = 0;
        loop {
            let name = match n {
                0 => format!("{JOURNAL}.damaged-{secs}"),
                _ => format!("{JOURNAL}.damaged-{secs}.{n}"),
            };
            let copy = self.path(&name);
            match fs::hard_link(&journal, &copy) {
                Ok(()) => return Ok(copy),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_error("linking the damaged journal as", &copy)(e)),
            }
        }
    }

    /// Appends `bytes` with one write.
    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if let Err(e) = self.file.write_all(bytes) {
            // Take back a partial write, so that later frames do not
            // follow a torn one.
            if let Err(e) = self.file.set_len(self.len) {
                tracing::warn!(error = %e, "call state journal: cutting a partial write");
            }
            return Err(io_error("appending to", &self.path(JOURNAL))(e));
        }
        self.len += bytes.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Compacts if the file has outgrown what it holds. A failure is only
    /// logged: the commit that got here did succeed.
    fn compact_if_due(&mut self) {
        if self.len <= COMPACT_MIN_BYTES.max(self.compact_after) {
            return;
        }
        let due = match &mut self.mirror {
            Some(mirror) => {
                mirror.expire_old_cookies(cookie_cutoff(unix_ms()));
                self.len > COMPACT_RATIO * mirror.live_bytes
            }
            // Unknown: compact() reads the file first.
            None => true,
        };
        if due {
            if let Err(e) = self.compact() {
                tracing::warn!(error = %e, "call state journal: compaction failed");
                self.compact_after = self.len + COMPACT_MIN_BYTES;
            }
        }
    }
}

impl Store for FileJournal {
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let lens = changes
            .iter()
            .map(|change| encode_frame(change, &mut bytes))
            .collect::<Result<Vec<_>, _>>()?;
        self.append(&bytes)?;
        if let Some(mirror) = &mut self.mirror {
            let mut at = 0;
            for (change, len) in changes.iter().zip(lens) {
                let end = at + len as usize;
                mirror.apply(change, &bytes[at..end]);
                at = end;
            }
        }
        if self.policy == SyncPolicy::Always {
            self.sync()?;
        }
        self.compact_if_due();
        Ok(())
    }

    /// Reads the journal. Damage is skipped and reported, never an error;
    /// a damaged journal is kept aside and replaced by a clean one.
    fn load(&mut self) -> Result<(State, LoadReport), StoreError> {
        let (state, report) = self.read()?;
        self.compact_if_due();
        Ok((state, report))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            let path = self.path(JOURNAL);
            self.file.sync_data().map_err(io_error("syncing", &path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn flush_job(&mut self) -> Result<Option<crate::FlushJob>, StoreError> {
        if !self.unsynced {
            return Ok(None);
        }
        // A second handle on the same file: syncing it flushes what this
        // one wrote. Should a compaction replace the file meanwhile, the
        // new one was synced before it took the name.
        let path = self.path(JOURNAL);
        let file = self
            .file
            .try_clone()
            .map_err(io_error("duplicating", &path))?;
        self.unsynced = false;
        Ok(Some(Box::new(move || {
            file.sync_data().map_err(io_error("syncing", &path))
        })))
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        let path = self.path(JOURNAL);
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error("clearing", &path))?;
        self.len = 0;
        self.unsynced = false;
        self.mirror = Some(Mirror::default());
        self.compact_after = 0;
        Ok(())
    }
}

impl Drop for FileJournal {
    /// Flushes what a periodic sync has not yet, so that a clean stop
    /// loses nothing to a later power loss.
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "call state journal: final sync");
        }
    }
}

impl fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileJournal")
            .field("dir", &self.dir)
            .field("policy", &self.policy)
            .field("len", &self.len)
            .field("unsynced", &self.unsynced)
            .field("calls", &self.mirror.as_ref().map(|m| m.calls.len()))
            .finish_non_exhaustive()
    }
}

/// What a journal holds, as the frames a compaction writes out: each live
/// call's latest Put and the cookies answered lately. Kept as encoded
/// bytes, so that a commit copies what it wrote instead of cloning records.
#[derive(Default)]
struct Mirror {
    /// Frame of each call's latest Put.
    calls: HashMap<String, Vec<u8>>,
    /// Frames of answered cookies with when they were answered, in the
    /// order they were committed.
    cookies: VecDeque<(u64, Vec<u8>)>,
    /// The size of all of them: what compaction would write.
    live_bytes: u64,
}

impl Mirror {
    /// Applies `change`, whose frame is `frame`.
    fn apply(&mut self, change: &Change, frame: &[u8]) {
        let len = frame.len() as u64;
        match change {
            Change::Put(call) => {
                let old = self.calls.insert(call.call_id.clone(), frame.to_vec());
                self.live_bytes = self.live_bytes + len - old.map_or(0, |f| f.len() as u64);
            }
            Change::Remove(id) => {
                self.live_bytes -= self.calls.remove(id).map_or(0, |f| f.len() as u64);
            }
            Change::Cookie(c) => {
                self.cookies.push_back((c.answered_ms, frame.to_vec()));
                self.live_bytes += len;
            }
        }
    }

    /// Forgets cookies answered before `cutoff_ms`, from the oldest on
    /// (cheap enough for every commit).
    fn expire_old_cookies(&mut self, cutoff_ms: u64) {
        while let Some((_, frame)) = self
            .cookies
            .front()
            .is_some_and(|(at, _)| *at < cutoff_ms)
            .then(|| self.cookies.pop_front())
            .flatten()
        {
            self.live_bytes -= frame.len() as u64;
        }
    }

    /// Forgets every cookie answered before `cutoff_ms`, wherever it is
    /// (a clock step back can put an old one behind newer ones).
    fn expire_cookies(&mut self, cutoff_ms: u64) {
        let mut expired = 0;
        self.cookies.retain(|(at, frame)| {
            let keep = *at >= cutoff_ms;
            if !keep {
                expired += frame.len() as u64;
            }
            keep
        });
        self.live_bytes -= expired;
    }

    /// The frames of a journal that holds exactly this state.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.live_bytes as usize);
        for frame in self
            .calls
            .values()
            .chain(self.cookies.iter().map(|(_, f)| f))
        {
            bytes.extend_from_slice(frame);
        }
        bytes
    }
}

/// Why a frame was rejected.
#[derive(Debug)]
enum FrameError {
    Magic,
    Oversize(usize),
    Truncated { needed: usize, left: usize },
    Crc,
    Json(serde_json::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Magic => write!(f, "no frame magic"),
            FrameError::Oversize(len) => {
                write!(f, "length {len} over the {MAX_PAYLOAD}-byte limit")
            }
            FrameError::Truncated { needed, left } => {
                write!(f, "truncated frame: {needed} bytes needed, {left} left")
            }
            FrameError::Crc => write!(f, "CRC mismatch"),
            FrameError::Json(e) => write!(f, "undecodable change: {e}"),
        }
    }
}

/// Appends the frame of `change` to `out`; returns its length.
fn encode_frame(change: &Change, out: &mut Vec<u8>) -> Result<u64, StoreError> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; HEADER_LEN - MAGIC.len()]);
    let encoded = serde_json::to_writer(&mut *out, change).map_err(StoreError::Encode);
    let payload_len = out.len() - start - HEADER_LEN;
    let checked = encoded.and_then(|()| match payload_len {
        len if len > MAX_PAYLOAD => Err(StoreError::Encode(serde::ser::Error::custom(
            format_args!("a change of {len} bytes is over the {MAX_PAYLOAD}-byte frame limit"),
        ))),
        _ => Ok(()),
    });
    if let Err(e) = checked {
        out.truncate(start);
        return Err(e);
    }
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok((out.len() - start) as u64)
}

/// Reads the frame at the start of `bytes`: its change and its length.
fn decode_frame(bytes: &[u8]) -> Result<(Change, usize), FrameError> {
    let seen = bytes.len().min(MAGIC.len());
    if bytes[..seen] != MAGIC[..seen] {
        return Err(FrameError::Magic);
    }
    let truncated = |needed| FrameError::Truncated {
        needed,
        left: bytes.len(),
    };
    let header = bytes.get(..HEADER_LEN).ok_or(truncated(HEADER_LEN))?;
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let len = field(4) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversize(len));
    }
    let end = HEADER_LEN + len;
    let payload = bytes.get(HEADER_LEN..end).ok_or(truncated(end))?;
    if crc32fast::hash(payload) != field(8) {
        return Err(FrameError::Crc);
    }
    let change = serde_json::from_slice(payload).map_err(FrameError::Json)?;
    Ok((change, end))
}

/// Applies every frame of `bytes` that can still be read; skips what
/// cannot, up to the next magic, and reports it.
fn read_frames(bytes: &[u8]) -> (State, Mirror, LoadReport) {
    let mut state = State::default();
    let mut mirror = Mirror::default();
    let mut report = LoadReport::default();
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            Ok((change, len)) => {
                mirror.apply(&change, &bytes[at..at + len]);
                state.apply(&change);
                report.frames += 1;
                at += len;
            }
            Err(e) => {
                let next = find_magic(bytes, at + 1);
                report.discard(at, next - at, &e);
                at = next;
            }
        }
    }
    (state, mirror, report)
}

/// Offset of the first magic at or after `from` (the end if none).
fn find_magic(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(MAGIC.len()).position(|w| w == MAGIC))
        .map_or(bytes.len(), |i| from + i)
}

/// What is wrong with `state`: peers out of range, relay ports or kernel
/// counter slots used twice.
fn check_invariants(state: &State) -> Vec<String> {
    let mut problems = Vec::new();
    let mut locals: HashMap<SocketAddr, &str> = HashMap::new();
    let mut slots: HashMap<u32, (&str, SocketAddr)> = HashMap::new();
    for call in state.calls.values() {
        let id = call.call_id.as_str();
        let parties = call.monologues.len();
        for (i, m) in call.monologues.iter().enumerate() {
            if let Some(peer) = m.peer.filter(|&p| p >= parties) {
                problems.push(format!(
                    "call {id:?}: party {i} has peer {peer}, of {parties} parties"
                ));
            }
        }
        for port in call.ports() {
            if let Some(other) = locals.insert(port.local, id) {
                problems.push(format!(
                    "port {} is in calls {other:?} and {id:?}",
                    port.local
                ));
            }
            // Pass-to-userspace entries count nothing: they share a slot.
            let Some(kernel) = port.kernel.filter(|k| !k.to_userspace) else {
                continue;
            };
            if let Some((other, at)) = slots.insert(kernel.slot, (id, port.local)) {
                problems.push(format!(
                    "kernel slot {} is used by port {at} (call {other:?}) and port {} (call {id:?})",
                    kernel.slot, port.local
                ));
            }
        }
    }
    problems
}

/// Takes the exclusive lock of `dir` (without waiting). flock(2) through
/// nix: `File::try_lock` is younger than the workspace's rust-version.
fn lock_dir(dir: &Path) -> Result<Flock<File>, StoreError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("opening", &path))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        Errno::EWOULDBLOCK => StoreError::Locked(dir.to_path_buf()),
        _ => io_error("locking", &path)(errno.into()),
    })
}

/// The contents of `path`; nothing if there is no such file.
fn read_if_present(path: &Path) -> Result<Vec<u8>, StoreError> {
    match fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        read => read.map_err(io_error("reading", path)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        removed => removed.map_err(io_error("removing", path)),
    }
}

/// Makes the names in `dir` (a new or renamed journal) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Cookies answered before this are no longer worth keeping.
fn cookie_cutoff(now_ms: u64) -> u64 {
    now_ms.saturating_sub(COOKIE_TTL_MS)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CookieRecord;

    fn cookie(n: u8) -> Change {
        Change::Cookie(CookieRecord {
            cookie: vec![n; 4],
            reply: vec![0xff, n],
            answered_ms: 1,
        })
    }

    fn frame(change: &Change) -> Vec<u8> {
        let mut bytes = Vec::new();
        let len = encode_frame(change, &mut bytes).unwrap();
        assert_eq!(len as usize, bytes.len());
        bytes
    }

    /// A frame with a correct header around any payload.
    fn raw_frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn reject(bytes: &[u8]) -> FrameError {
        decode_frame(bytes).expect_err("frame accepted")
    }

    #[test]
    fn frame_layout() {
        let change = Change::Remove("c".into());
        let bytes = frame(&change);
        let payload = br#"{"Remove":"c"}"#;
        assert_eq!(bytes, raw_frame(payload));
        assert_eq!(decode_frame(&bytes).unwrap(), (change, bytes.len()));
    }

    #[test]
    fn each_rejection() {
        let good = frame(&cookie(1));
        let mut bytes = good.clone();
        bytes[0] = b'Y';
        assert!(matches!(reject(&bytes), FrameError::Magic));
        assert!(matches!(reject(b"XRJ2"), FrameError::Magic));
        // A prefix of the magic is a torn frame, not garbage.
        assert!(matches!(
            reject(b"XR"),
            FrameError::Truncated {
                needed: 12,
                left: 2
            }
        ));
        assert!(matches!(
            reject(&good[..good.len() - 1]),
            FrameError::Truncated { left, .. } if left == good.len() - 1
        ));
        let mut bytes = good.clone();
        bytes[4..8].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(reject(&bytes), FrameError::Oversize(_)));
        let mut bytes = good.clone();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(matches!(reject(&bytes), FrameError::Crc));
        let err = reject(&raw_frame(br#"{"Put":42}"#));
        assert!(matches!(err, FrameError::Json(_)));
        assert!(err.to_string().starts_with("undecodable change"), "{err}");
    }

    #[test]
    fn the_largest_payload_is_accepted() {
        let payload = format!("{{\"Remove\":\"{}\"}}", "x".repeat(MAX_PAYLOAD - 13));
        assert_eq!(payload.len(), MAX_PAYLOAD);
        let bytes = raw_frame(payload.as_bytes());
        assert_eq!(decode_frame(&bytes).unwrap().1, bytes.len());
    }

    #[test]
    fn oversize_change_is_refused_at_commit() {
        let mut bytes = b"before".to_vec();
        let huge = Change::Remove("x".repeat(MAX_PAYLOAD));
        assert!(matches!(
            encode_frame(&huge, &mut bytes),
            Err(StoreError::Encode(_))
        ));
        assert_eq!(bytes, b"before", "a refused frame leaves nothing behind");
    }

    #[test]
    fn magic_search() {
        let bytes = b"..XRJ1..XRJ1";
        assert_eq!(find_magic(bytes, 0), 2);
        assert_eq!(find_magic(bytes, 3), 8);
        assert_eq!(find_magic(bytes, 9), bytes.len());
        assert_eq!(find_magic(bytes, 100), bytes.len());
    }

    #[test]
    fn resync_skips_to_the_next_frame_and_merges_adjacent_damage() {
        let mut bytes = frame(&cookie(1));
        let first = bytes.len();
        // Garbage holding a false magic, then a good frame.
        bytes.extend_from_slice(b"junkXRJ1junk");
        bytes.extend_from_slice(&frame(&cookie(2)));
        let (state, mirror, report) = read_frames(&bytes);
        assert_eq!(report.frames, 2);
        assert_eq!((state.cookies.len(), mirror.cookies.len()), (2, 2));
        assert_eq!(
            report.discarded,
            [Discarded {
                offset: first as u64,
                bytes: 12,
                reason: "no frame magic".into(),
            }]
        );
    }

    #[test]
    fn mirror_keeps_the_latest_frames() {
        let mut mirror = Mirror::default();
        let put = |n: u64| {
            Change::Put(crate::CallRecord {
                call_id: "a".into(),
                created_ms: n,
                last_signal_ms: 0,
                delete_at_ms: None,
                monologues: vec![],
            })
        };
        let stamped = |ms| {
            Change::Cookie(CookieRecord {
                cookie: vec![1],
                reply: vec![2],
                answered_ms: ms,
            })
        };
        let apply = |mirror: &mut Mirror, change: &Change| mirror.apply(change, &frame(change));
        apply(&mut mirror, &put(1));
        apply(&mut mirror, &put(22));
        assert_eq!(mirror.live_bytes, frame(&put(22)).len() as u64);
        apply(&mut mirror, &stamped(5));
        apply(&mut mirror, &stamped(7));
        mirror.expire_old_cookies(6);
        assert_eq!(
            mirror.snapshot(),
            [frame(&put(22)), frame(&stamped(7))].concat()
        );
        apply(&mut mirror, &Change::Remove("a".into()));
        apply(&mut mirror, &Change::Remove("unknown".into()));
        assert_eq!(mirror.snapshot(), frame(&stamped(7)));
        assert_eq!(mirror.live_bytes, frame(&stamped(7)).len() as u64);
        // A clock step back: an old cookie behind a newer one.
        apply(&mut mirror, &stamped(3));
        mirror.expire_old_cookies(6);
        assert_eq!(mirror.cookies.len(), 2, "only the oldest end is looked at");
        mirror.expire_cookies(6);
        assert_eq!(mirror.snapshot(), frame(&stamped(7)));
        assert_eq!(mirror.live_bytes, frame(&stamped(7)).len() as u64);
    }

    #[test]
    fn report_summary_is_one_line() {
        let report = LoadReport {
            frames: 3,
            discarded: vec![
                Discarded {
                    offset: 10,
                    bytes: 5,
                    reason: "CRC mismatch".into(),
                },
                Discarded {
                    offset: 40,
                    bytes: 7,
                    reason: "no frame magic".into(),
                },
            ],
            rewritten: true,
            damaged_copy: Some("/s/journal.damaged-9".into()),
            problems: vec!["port 1.2.3.4:5 is in calls \"a\\nb\" and \"c\"".into()],
        };
        assert_eq!(
            report.to_string(),
            "3 frames read; skipped 12 damaged bytes in 2 place(s), first at offset 10: \
             CRC mismatch; rewritten, damaged journal kept as /s/journal.damaged-9; \
             1 problem(s), first: port 1.2.3.4:5 is in calls \"a\\nb\" and \"c\""
        );
        assert!(!report.to_string().contains('\n'));
        assert_eq!(LoadReport::default().to_string(), "0 frames read");
    }
}
