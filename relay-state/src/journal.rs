//! [`FileJournal`]: call state kept in one append-only file of checksummed
//! frames, in a directory that one relayd at a time uses.
//!
//! # Format
//!
//! `dir/journal` starts with a 16-byte header: the magic `XRJ2`, the record
//! format its payloads are in ([`RECORD_VERSION`], u32 LE) and the file's
//! salt, 8 random bytes drawn when the journal was started. Then come
//! frames, each the salt, the payload's length (u32 LE, at most 16 MiB),
//! the payload's CRC-32 (u32 LE) and the payload: one [`Change`], encoded
//! with postcard ([`Change::encode`]). Reading applies the frames in order.
//! Compaction and repair rewrite the same journal and keep its salt; a
//! journal started afresh (a new, empty or unreadable file, or
//! [`Store::clear`]) draws a new one.
//!
//! A file of a record format this relayd cannot read (a newer one) is not
//! read at all: the report names both formats, and the file is kept aside
//! and replaced by an empty journal, like a damaged one. Reading an older
//! format is a decoder of that version's frozen record types, added as an
//! arm of `decoder` (see [`crate::records`]); such a file is read, then
//! rewritten in the current format.
//!
//! # Why a salt
//!
//! Payloads hold bytes that NG clients and callers choose (call-ids, tags,
//! the reply of a `delete`), and postcard copies them as they are. After
//! damage the reader looks for the next frame by its first bytes; were
//! those a fixed magic, a payload could carry a whole forged frame (magic,
//! length, CRC and a change of the sender's choosing) that this search
//! would take for a real one once the frame around it is damaged. The
//! salt is random per journal and unknown outside it (the file is 0600 in
//! a 0700 directory), so no payload can carry a frame that the reader
//! accepts. The price: a file whose header cannot be read has no known
//! salt and cannot be resynchronised; all of it is reported discarded,
//! kept aside, and a fresh journal started.
//!
//! # Crash safety
//!
//! - A commit is a single `write` on an `O_APPEND` file: once it returns,
//!   the changes are in the page cache and survive a kill of relayd. With
//!   [`SyncPolicy::Always`] they are on disk too.
//! - Compaction writes `journal.new` (header and frames), syncs it and
//!   renames it over `journal`: whenever the machine stops, one of the two
//!   files is whole.
//! - A frame that a power loss tore, or a disk damaged, costs only itself:
//!   the reader skips to the next salt and reads on, then sets the damaged
//!   file aside and writes a clean one, so that appends never follow
//!   garbage. Damage to the header costs the whole file (see above).

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use crate::{Change, State, Store, StoreError, RECORD_VERSION};

/// The first bytes of a journal file.
const FILE_MAGIC: [u8; 4] = *b"XRJ2";
/// What journals of relayd before [`RECORD_VERSION`] 1 (JSON frames)
/// started with.
const JSON_MAGIC: [u8; 4] = *b"XRJ1";
/// A journal's random frame marker.
type Salt = [u8; SALT_LEN];
const SALT_LEN: usize = 8;
/// File magic, record format, salt.
const FILE_HEADER_LEN: usize = 16;
/// Salt, length, CRC.
const FRAME_HEADER_LEN: usize = SALT_LEN + 8;
/// Longest payload: a longer length field is damage, not a frame.
const MAX_PAYLOAD: usize = 16 << 20;
/// How long an answered cookie is worth keeping (an NG client gives up on
/// a request well before).
const COOKIE_TTL_MS: u64 = 60_000;
/// Most answered cookies the journal remembers, and most bytes of their
/// frames: what relayd's NG cookie cache takes back at start (one
/// generation of relay_ng::CacheLimits::default()). Beyond that they were
/// dead weight: at 13 000 NG requests/s, 60 s of replies held about 800 MB
/// in memory and four times that on disk between compactions.
const MAX_COOKIES: usize = 100_000;
/// See [`MAX_COOKIES`].
const MAX_COOKIE_BYTES: u64 = 64 << 20;
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
    fn discard(&mut self, offset: usize, bytes: usize, reason: &dyn fmt::Display) {
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
/// a compaction due before then reads the file first, and so does a commit
/// when the file does not start with a header of this record format.
pub struct FileJournal {
    dir: PathBuf,
    policy: SyncPolicy,
    /// The directory's lock, held while this is open.
    _lock: Flock<File>,
    /// `dir/journal`, opened for appending.
    file: File,
    /// Its length.
    len: u64,
    /// The salt of its header; while it has no usable one, the salt of
    /// the journal that will replace it.
    salt: Salt,
    /// Whether the file starts with a header of [`RECORD_VERSION`] and
    /// this salt, so that frames can be appended to it. Until it does, a
    /// commit reads (and so replaces) it first.
    appendable: bool,
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
    /// journal is open. A missing or empty journal is started with a
    /// fresh header.
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
        // The journal holds SRTP master keys (SDES): `mode` above applies
        // only to a file it creates, so one an older relayd, an operator
        // or a restore from backup left readable is made 0600 here, and
        // its directory 0700.
        restrict(&file, &path, 0o600)?;
        let dir_handle = File::open(dir).map_err(io_error("opening", dir))?;
        restrict(&dir_handle, dir, 0o700)?;
        let len = file
            .metadata()
            .map_err(io_error("reading the length of", &path))?
            .len();
        // A header of this format: its salt; anything else is read and
        // replaced before a frame is appended.
        let current = match len {
            0 => None,
            _ => parse_header(&read_head(&path)?)
                .ok()
                .filter(|h| h.version == RECORD_VERSION),
        };
        let mut journal = FileJournal {
            dir: dir.to_path_buf(),
            policy,
            _lock: lock,
            file,
            len,
            salt: current.map_or_else(new_salt, |h| h.salt),
            appendable: current.is_some(),
            unsynced: false,
            mirror: None,
            compact_after: 0,
        };
        if len == 0 {
            journal.start_afresh(&path)?;
        }
        // The journal's name must last as long as what is written in it.
        sync_dir(dir)?;
        Ok(journal)
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
        let Contents {
            state, mut report, ..
        } = read_journal(&bytes);
        report.problems = check_invariants(&state);
        Ok(report)
    }

    /// Rewrites the journal as the live calls and the cookies answered in
    /// the last minute. Commits do this by themselves when the journal has
    /// grown to several times that size.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        self.mirror()?.expire_cookies(cookie_cutoff(unix_ms()));
        let bytes = self.snapshot();
        self.replace(&bytes, false).map(drop)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The mirror, reading the file first if it has not been read yet.
    fn mirror(&mut self) -> Result<&mut Mirror, StoreError> {
        if self.mirror.is_none() {
            self.read_unloaded()?;
        }
        Ok(self.mirror.get_or_insert_with(Mirror::default))
    }

    /// Reads the file before a load did, logging what the load would
    /// have reported.
    fn read_unloaded(&mut self) -> Result<(), StoreError> {
        let (_, report) = self.read()?;
        if !report.is_clean() {
            tracing::warn!(dir = %self.dir.display(), %report, "call state journal");
        }
        Ok(())
    }

    /// A journal of exactly what the mirror holds: header and frames.
    fn snapshot(&self) -> Vec<u8> {
        match &self.mirror {
            Some(mirror) => mirror.snapshot(&self.salt),
            None => file_header(&self.salt).to_vec(),
        }
    }

    /// Reads the file into the mirror, replacing a damaged, unreadable or
    /// headless file; returns the state it holds.
    fn read(&mut self) -> Result<(State, LoadReport), StoreError> {
        let bytes = read_if_present(&self.path(JOURNAL))?;
        let Contents {
            mut state,
            mut mirror,
            mut report,
            salt,
            appendable,
        } = read_journal(&bytes);
        let cutoff = cookie_cutoff(unix_ms());
        mirror.expire_cookies(cutoff);
        state.expire_cookies(cutoff);
        keep_newest_cookies(&mut state);
        report.problems = check_invariants(&state);
        // The mirror's frames carry the header's salt; without a header
        // there are none, and a new journal gets a new salt.
        self.salt = salt.unwrap_or_else(new_salt);
        self.mirror = Some(mirror);
        if !appendable {
            // An empty file only needs its header: nothing to keep.
            let keep = !bytes.is_empty();
            report.damaged_copy = self.replace(&self.snapshot(), keep)?;
            report.rewritten = keep;
        }
        Ok((state, report))
    }

    /// Replaces the journal with `bytes` (a header of this salt and
    /// frames), keeping a hard link to the old one if `keep_old` (then
    /// returned). The new file is whole on disk before it takes the
    /// journal's name.
    fn replace(&mut self, bytes: &[u8], keep_old: bool) -> Result<Option<PathBuf>, StoreError> {
        let staged = self.stage(bytes)?;
        let kept = keep_old.then(|| self.keep_damaged()).transpose()?;
        let (from, to) = (self.path(STAGED), self.path(JOURNAL));
        fs::rename(&from, &to).map_err(io_error("renaming", &from))?;
        // The staged file, opened for appending, is now the journal.
        self.file = staged;
        self.len = bytes.len() as u64;
        self.appendable = true;
        self.unsynced = false;
        self.compact_after = 0;
        sync_dir(&self.dir)?;
        Ok(kept)
    }

    /// Writes a fresh header to the journal, which is empty: the start of
    /// a new journal, on disk before anything is appended to it.
    fn start_afresh(&mut self, path: &Path) -> Result<(), StoreError> {
        self.salt = new_salt();
        self.file
            .write_all(&file_header(&self.salt))
            .and_then(|()| self.file.sync_data())
            .map_err(io_error("writing the header of", path))?;
        self.len = FILE_HEADER_LEN as u64;
        self.appendable = true;
        self.unsynced = false;
        Ok(())
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
        if !self.appendable {
            // A header of another format, or none: frames appended to it
            // could never be read.
            self.read_unloaded()?;
        }
        let mut bytes = Vec::new();
        let lens = changes
            .iter()
            .map(|change| encode_frame(&self.salt, change, &mut bytes))
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

    /// Empties the journal: what is left is a fresh header (and salt).
    fn clear(&mut self) -> Result<(), StoreError> {
        let path = self.path(JOURNAL);
        self.file.set_len(0).map_err(io_error("clearing", &path))?;
        // Empty, the file is a valid (headless) journal until the header
        // is written: a reader gives it a header of its own.
        self.len = 0;
        self.appendable = false;
        self.mirror = Some(Mirror::default());
        self.compact_after = 0;
        self.start_afresh(&path)
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

/// Drops the oldest of `state`'s cookies beyond [`MAX_COOKIES`] and
/// [`MAX_COOKIE_BYTES`] (a file appended to since its last compaction may
/// hold more than the mirror keeps): the NG cache, which takes them back
/// in order until it is full, then gets the newest.
fn keep_newest_cookies(state: &mut State) {
    let mut bytes = 0u64;
    let kept = state
        .cookies
        .iter()
        .rev()
        .take(MAX_COOKIES)
        .take_while(|c| {
            bytes += (c.cookie.len() + c.reply.len()) as u64;
            bytes <= MAX_COOKIE_BYTES
        })
        .count();
    let excess = state.cookies.len() - kept;
    state.cookies.drain(..excess);
}

/// What a journal holds, as the frames a compaction writes out: each live
/// call's latest Put and the cookies answered lately. Kept as encoded
/// bytes, so that a commit copies what it wrote instead of cloning records.
#[derive(Default)]
struct Mirror {
    /// Frame of each call's latest Put.
    calls: HashMap<String, Vec<u8>>,
    /// Frames of answered cookies with when they were answered, in the
    /// order they were committed; the newest [`MAX_COOKIES`] at most.
    cookies: VecDeque<(u64, Vec<u8>)>,
    /// The size of the cookies' frames, at most [`MAX_COOKIE_BYTES`].
    cookie_bytes: u64,
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
                self.cookie_bytes += len;
                // The oldest go first, as the NG cache would never take
                // them back anyway.
                while self.cookies.len() > MAX_COOKIES || self.cookie_bytes > MAX_COOKIE_BYTES {
                    self.pop_cookie();
                }
            }
        }
    }

    /// Forgets the oldest cookie.
    fn pop_cookie(&mut self) {
        if let Some((_, frame)) = self.cookies.pop_front() {
            self.live_bytes -= frame.len() as u64;
            self.cookie_bytes -= frame.len() as u64;
        }
    }

    /// Forgets cookies answered before `cutoff_ms`, from the oldest on
    /// (cheap enough for every commit).
    fn expire_old_cookies(&mut self, cutoff_ms: u64) {
        while self.cookies.front().is_some_and(|(at, _)| *at < cutoff_ms) {
            self.pop_cookie();
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
        self.cookie_bytes -= expired;
    }

    /// A journal file that holds exactly this state: the header of
    /// `salt`, which its frames carry, and the frames.
    fn snapshot(&self, salt: &Salt) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FILE_HEADER_LEN + self.live_bytes as usize);
        bytes.extend_from_slice(&file_header(salt));
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

/// The start of a journal file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    /// The record format of its payloads.
    version: u32,
    /// The first bytes of each of its frames.
    salt: Salt,
}

/// The header of a journal of [`RECORD_VERSION`] whose frames start with
/// `salt`.
fn file_header(salt: &Salt) -> [u8; FILE_HEADER_LEN] {
    let mut header = [0; FILE_HEADER_LEN];
    header[..4].copy_from_slice(&FILE_MAGIC);
    header[4..8].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    header[8..].copy_from_slice(salt);
    header
}

/// Reads the header at the start of a journal file.
fn parse_header(bytes: &[u8]) -> Result<Header, HeaderError> {
    let seen = bytes.len().min(FILE_MAGIC.len());
    if bytes[..seen] != FILE_MAGIC[..seen] {
        return Err(match bytes.starts_with(&JSON_MAGIC) {
            true => HeaderError::Json,
            false => HeaderError::Magic,
        });
    }
    let header = bytes
        .get(..FILE_HEADER_LEN)
        .ok_or(HeaderError::Truncated(bytes.len()))?;
    let mut salt = [0; SALT_LEN];
    salt.copy_from_slice(&header[8..]);
    Ok(Header {
        version: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        salt,
    })
}

/// The first [`FILE_HEADER_LEN`] bytes of the file at `path` (fewer if it
/// is shorter).
fn read_head(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut head = Vec::with_capacity(FILE_HEADER_LEN);
    File::open(path)
        .and_then(|file| file.take(FILE_HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(io_error("reading the header of", path))?;
    Ok(head)
}

/// A fresh salt: 8 bytes from /dev/urandom, or failing that a hash of the
/// time and the process id under std's randomly keyed hasher.
fn new_salt() -> Salt {
    let mut salt = [0; SALT_LEN];
    match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt)) {
        Ok(()) => salt,
        Err(e) => {
            tracing::warn!(error = %e, "call state journal: reading /dev/urandom for a salt");
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            hasher.finish().to_le_bytes()
        }
    }
}

/// Why a file's header was rejected (and with it the whole file).
#[derive(Debug)]
enum HeaderError {
    Magic,
    /// A journal of frames of JSON, before record formats.
    Json,
    Truncated(usize),
    /// A record format this build has no decoder for.
    Version(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Magic => write!(f, "no journal header"),
            HeaderError::Json => write!(
                f,
                "journal of JSON frames, written before record formats; \
                 this relayd reads record format {RECORD_VERSION}"
            ),
            HeaderError::Truncated(len) => write!(
                f,
                "truncated journal header: {FILE_HEADER_LEN} bytes needed, {len} left"
            ),
            HeaderError::Version(version) => write!(
                f,
                "journal written in record format {version}; \
                 this relayd reads {RECORD_VERSION}"
            ),
        }
    }
}

/// Why a frame was rejected.
#[derive(Debug)]
enum FrameError {
    /// It does not start with the salt.
    Marker,
    Oversize(usize),
    Truncated {
        needed: usize,
        left: usize,
    },
    Crc,
    Decode(postcard::Error),
    /// The change ends before the payload does.
    Trailing(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Marker => write!(f, "no frame start"),
            FrameError::Oversize(len) => {
                write!(f, "length {len} over the {MAX_PAYLOAD}-byte limit")
            }
            FrameError::Truncated { needed, left } => {
                write!(f, "truncated frame: {needed} bytes needed, {left} left")
            }
            FrameError::Crc => write!(f, "CRC mismatch"),
            FrameError::Decode(e) => write!(f, "undecodable change: {e}"),
            FrameError::Trailing(n) => {
                write!(f, "undecodable change: {n} bytes after its end")
            }
        }
    }
}

/// Reads a payload of some record format into the current [`Change`].
type Decoder = fn(&[u8]) -> Result<Change, FrameError>;

/// The decoder of payloads of record format `version`, if this build
/// reads that format.
fn decoder(version: u32) -> Option<Decoder> {
    match version {
        RECORD_VERSION => Some(whole::<Change>),
        // An older format reads its frozen types and converts them.
        2 => Some(|p| whole::<crate::records::v2::Change>(p).map(Change::from)),
        1 => Some(|p| whole::<crate::records::v1::Change>(p).map(Change::from)),
        _ => None,
    }
}

/// The `T` that is the whole of `payload`.
fn whole<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes(payload).map_err(FrameError::Decode)? {
        (value, []) => Ok(value),
        (_, rest) => Err(FrameError::Trailing(rest.len())),
    }
}

/// Appends the frame of `change`, marked with `salt`, to `out`; returns its
/// length. On an error `out` is as it was.
fn encode_frame(salt: &Salt, change: &Change, out: &mut Vec<u8>) -> Result<u64, StoreError> {
    let start = out.len();
    out.extend_from_slice(salt);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN - SALT_LEN]);
    let encoded = change.encode(out);
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    let checked = match encoded {
        Ok(()) if payload_len > MAX_PAYLOAD => Err(StoreError::TooLarge {
            bytes: payload_len,
            limit: MAX_PAYLOAD,
        }),
        checked => checked,
    };
    if let Err(e) = checked {
        out.truncate(start);
        return Err(e);
    }
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_LEN..]);
    let fields = start + SALT_LEN;
    out[fields..fields + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[fields + 4..fields + 8].copy_from_slice(&crc.to_le_bytes());
    Ok((out.len() - start) as u64)
}

/// Reads the frame at the start of `bytes`, which must start with `salt`:
/// its change and its length.
fn decode_frame(bytes: &[u8], salt: &Salt, decode: Decoder) -> Result<(Change, usize), FrameError> {
    let seen = bytes.len().min(SALT_LEN);
    if bytes[..seen] != salt[..seen] {
        return Err(FrameError::Marker);
    }
    let truncated = |needed| FrameError::Truncated {
        needed,
        left: bytes.len(),
    };
    let header = bytes
        .get(..FRAME_HEADER_LEN)
        .ok_or(truncated(FRAME_HEADER_LEN))?;
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let len = field(SALT_LEN) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversize(len));
    }
    let end = FRAME_HEADER_LEN + len;
    let payload = bytes.get(FRAME_HEADER_LEN..end).ok_or(truncated(end))?;
    if crc32fast::hash(payload) != field(SALT_LEN + 4) {
        return Err(FrameError::Crc);
    }
    Ok((decode(payload)?, end))
}

/// What a journal file holds.
#[derive(Default)]
struct Contents {
    state: State,
    /// Its frames, in the current record format.
    mirror: Mirror,
    report: LoadReport,
    /// The salt of its header, when it has one this build reads.
    salt: Option<Salt>,
    /// Whether it is whole and in the current record format: frames can
    /// be appended to it as it is.
    appendable: bool,
}

/// Reads a journal file: its header, then every frame that can be read.
/// An empty file holds nothing and needs a header; one whose header is
/// unreadable, or of a record format this build does not read, is
/// discarded whole.
fn read_journal(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    if bytes.is_empty() {
        return contents;
    }
    let header = parse_header(bytes).and_then(|header| {
        decoder(header.version)
            .map(|decode| (header, decode))
            .ok_or(HeaderError::Version(header.version))
    });
    let (header, decode) = match header {
        Ok(read) => read,
        Err(e) => {
            contents.report.discard(0, bytes.len(), &e);
            return contents;
        }
    };
    read_frames(bytes, &header, decode, &mut contents);
    contents.salt = Some(header.salt);
    contents.appendable = header.version == RECORD_VERSION && contents.report.discarded.is_empty();
    contents
}

/// Applies every frame after the header that can still be read; skips
/// what cannot, up to the next salt, and reports it. Frames of an older
/// record format are mirrored re-encoded in the current one.
fn read_frames(bytes: &[u8], header: &Header, decode: Decoder, into: &mut Contents) {
    let salt = &header.salt;
    let mut at = FILE_HEADER_LEN;
    while at < bytes.len() {
        match decode_frame(&bytes[at..], salt, decode) {
            Ok((change, len)) => {
                let mut current = Vec::new();
                let frame = match header.version {
                    RECORD_VERSION => Ok(&bytes[at..at + len]),
                    _ => encode_frame(salt, &change, &mut current).map(|_| &current[..]),
                };
                match frame {
                    Ok(frame) => {
                        into.mirror.apply(&change, frame);
                        into.state.apply(&change);
                        into.report.frames += 1;
                    }
                    // Cannot be kept in the current format (too large).
                    Err(e) => into.report.discard(at, len, &e),
                }
                at += len;
            }
            Err(e) => {
                let next = find_salt(bytes, at + 1, salt);
                into.report.discard(at, next - at, &e);
                at = next;
            }
        }
    }
}

/// Offset of the first `salt` at or after `from` (the end if none).
fn find_salt(bytes: &[u8], from: usize, salt: &Salt) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(SALT_LEN).position(|w| w == salt))
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

/// Takes every permission beyond `mode` (and the file type bits) away from
/// `file`, saying so when there were any.
fn restrict(file: &File, path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = file
        .metadata()
        .map_err(io_error("reading the permissions of", path))?;
    let current = meta.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        tracing::warn!(
            path = %path.display(),
            was = format_args!("{current:o}"),
            now = format_args!("{:o}", current & mode),
            "call state holds SRTP keys: permissions tightened"
        );
        file.set_permissions(fs::Permissions::from_mode(current & mode))
            .map_err(io_error("restricting the permissions of", path))?;
    }
    Ok(())
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

    const SALT: Salt = *b"\x5a\x17\xc3\x00\x9e\x42\xff\x01";

    fn cookie(n: u8) -> Change {
        Change::Cookie(CookieRecord {
            cookie: vec![n; 4],
            reply: vec![0xff, n],
            answered_ms: 1,
        })
    }

    fn frame(change: &Change) -> Vec<u8> {
        let mut bytes = Vec::new();
        let len = encode_frame(&SALT, change, &mut bytes).unwrap();
        assert_eq!(len as usize, bytes.len());
        bytes
    }

    /// A frame with a correct header around any payload.
    fn raw_frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = SALT.to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<(Change, usize), FrameError> {
        decode_frame(bytes, &SALT, whole::<Change>)
    }

    fn reject(bytes: &[u8]) -> FrameError {
        decode(bytes).expect_err("frame accepted")
    }

    /// A journal file of `frames` under [`SALT`].
    fn file(frames: &[Vec<u8>]) -> Vec<u8> {
        [file_header(&SALT).to_vec(), frames.concat()].concat()
    }

    #[test]
    fn frame_layout() {
        let change = Change::Remove("c".into());
        let bytes = frame(&change);
        // Positional: variant 1 (Remove), the string's length, its bytes.
        let payload = [1, 1, b'c'];
        assert_eq!(bytes, raw_frame(&payload));
        assert_eq!(&bytes[..8], &SALT);
        assert_eq!(bytes[8..12], 3u32.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), (change, bytes.len()));
        // Bytes go in as they are, whatever they are.
        let bytes = frame(&cookie(0xfe));
        assert!(bytes.ends_with(&[4, 0xfe, 0xfe, 0xfe, 0xfe, 2, 0xff, 0xfe, 1]));
    }

    #[test]
    fn file_header_layout() {
        let header = file_header(&SALT);
        assert_eq!(&header[..4], b"XRJ2");
        assert_eq!(header[4..8], 3u32.to_le_bytes());
        assert_eq!(header[8..], SALT);
        assert_eq!(
            parse_header(&header).unwrap(),
            Header {
                version: RECORD_VERSION,
                salt: SALT
            }
        );
        let mut other = header;
        other[4] = 7;
        assert_eq!(parse_header(&other).unwrap().version, 7);
    }

    #[test]
    fn each_header_rejection() {
        let header = file_header(&SALT);
        let reason = |bytes: &[u8]| parse_header(bytes).expect_err("accepted").to_string();
        assert_eq!(reason(b"XRJ3 and more bytes"), "no journal header");
        assert_eq!(reason(b"\0\0\0\0garbage"), "no journal header");
        assert!(reason(b"XRJ1\x0e\0\0\0").starts_with("journal of JSON frames"));
        assert_eq!(
            reason(&header[..15]),
            "truncated journal header: 16 bytes needed, 15 left"
        );
        // A prefix of the magic is a torn header, not garbage.
        assert_eq!(
            reason(b"XR"),
            "truncated journal header: 16 bytes needed, 2 left"
        );
    }

    #[test]
    fn a_file_of_another_record_format_is_discarded_whole() {
        let mut bytes = file(&[frame(&cookie(1))]);
        bytes[4..8].copy_from_slice(&4u32.to_le_bytes());
        let contents = read_journal(&bytes);
        assert_eq!(contents.report.frames, 0);
        assert_eq!(
            contents.report.discarded,
            [Discarded {
                offset: 0,
                bytes: bytes.len() as u64,
                reason: "journal written in record format 4; this relayd reads 3".into(),
            }]
        );
        assert_eq!(contents.salt, None);
        assert!(!contents.appendable);
        assert_eq!(contents.state, State::default());
    }

    #[test]
    fn whole_files_and_empty_ones() {
        let contents = read_journal(&file(&[frame(&cookie(1)), frame(&cookie(2))]));
        assert_eq!(contents.report.frames, 2);
        assert!(contents.report.is_clean());
        assert!(contents.appendable);
        assert_eq!(contents.salt, Some(SALT));
        let contents = read_journal(&file(&[]));
        assert!(contents.appendable && contents.report.is_clean());
        // Empty: nothing lost, but a header is needed before appending.
        let contents = read_journal(b"");
        assert!(!contents.appendable && contents.report.is_clean());
        assert_eq!(contents.salt, None);
    }

    #[test]
    fn frames_of_an_older_format_are_mirrored_in_the_current_one() {
        // Stands for a decoder of an older version's frozen types: every
        // payload is a Put of call "x".
        let old: Decoder = |_| {
            Ok(Change::Put(crate::CallRecord {
                call_id: "x".into(),
                created_ms: 5,
                last_signal_ms: 0,
                delete_at_ms: None,
                monologues: vec![],
            }))
        };
        let header = Header {
            version: RECORD_VERSION - 1,
            salt: SALT,
        };
        let mut contents = Contents::default();
        read_frames(&file(&[raw_frame(b"old")]), &header, old, &mut contents);
        assert_eq!(contents.report.frames, 1);
        assert!(contents.report.is_clean());
        assert!(contents.state.calls.contains_key("x"));
        let current = frame(&old(b"").unwrap());
        assert_eq!(contents.mirror.snapshot(&SALT), file(&[current]));
    }

    #[test]
    fn frames_of_format_1_are_read() {
        let v1 = crate::records::v1::Change::Remove("gone".into());
        let payload = postcard::to_allocvec(&v1).unwrap();
        let read = decoder(1).expect("format 1 is read");
        assert_eq!(read(&payload).unwrap(), Change::Remove("gone".into()));
    }

    #[test]
    fn frames_of_format_2_are_read() {
        let v2 = crate::records::v2::Change::Remove("gone".into());
        let payload = postcard::to_allocvec(&v2).unwrap();
        let read = decoder(2).expect("format 2 is read");
        assert_eq!(read(&payload).unwrap(), Change::Remove("gone".into()));
    }

    #[test]
    fn each_rejection() {
        let good = frame(&cookie(1));
        let mut bytes = good.clone();
        bytes[0] ^= 0x20;
        assert!(matches!(reject(&bytes), FrameError::Marker));
        assert!(matches!(reject(b"XRJ1XRJ1XRJ1XRJ1"), FrameError::Marker));
        // A prefix of the salt is a torn frame, not garbage.
        assert!(matches!(
            reject(&SALT[..2]),
            FrameError::Truncated {
                needed: 16,
                left: 2
            }
        ));
        assert!(matches!(
            reject(&good[..good.len() - 1]),
            FrameError::Truncated { left, .. } if left == good.len() - 1
        ));
        let mut bytes = good.clone();
        bytes[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert!(matches!(reject(&bytes), FrameError::Oversize(_)));
        let mut bytes = good.clone();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(matches!(reject(&bytes), FrameError::Crc));
        // Well framed, but not a change: an unknown variant, a cut one.
        for payload in [&[3u8, 0][..], &[0], &[1, 5, b'a']] {
            let err = reject(&raw_frame(payload));
            assert!(matches!(err, FrameError::Decode(_)), "{payload:?}: {err}");
            assert!(err.to_string().starts_with("undecodable change"), "{err}");
        }
        // A change, and bytes after it.
        let err = reject(&raw_frame(&[1, 1, b'c', 0]));
        assert!(matches!(err, FrameError::Trailing(1)), "{err}");
        assert!(err.to_string().starts_with("undecodable change"), "{err}");
    }

    #[test]
    fn the_largest_payload_is_accepted() {
        // Variant, a 4-byte varint length, the string.
        let change = Change::Remove("x".repeat(MAX_PAYLOAD - 5));
        let payload = postcard::to_stdvec(&change).unwrap();
        assert_eq!(payload.len(), MAX_PAYLOAD);
        let bytes = raw_frame(&payload);
        assert_eq!(decode(&bytes).unwrap(), (change.clone(), bytes.len()));
        assert_eq!(frame(&change), bytes);
    }

    #[test]
    fn oversize_change_is_refused_at_commit() {
        let mut bytes = b"before".to_vec();
        let huge = Change::Remove("x".repeat(MAX_PAYLOAD));
        let err = encode_frame(&SALT, &huge, &mut bytes).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { bytes, limit: MAX_PAYLOAD } if bytes == MAX_PAYLOAD + 5),
            "{err}"
        );
        assert_eq!(bytes, b"before", "a refused frame leaves nothing behind");
    }

    #[test]
    fn salt_search() {
        let bytes = [b"..".as_slice(), &SALT, b"..", &SALT].concat();
        assert_eq!(find_salt(&bytes, 0, &SALT), 2);
        assert_eq!(find_salt(&bytes, 3, &SALT), 12);
        assert_eq!(find_salt(&bytes, 13, &SALT), bytes.len());
        assert_eq!(find_salt(&bytes, 100, &SALT), bytes.len());
        // Another journal's salt is not a frame start here.
        assert_eq!(find_salt(&bytes, 0, b"XRJ1XRJ1"), bytes.len());
    }

    #[test]
    fn resync_skips_to_the_next_frame_and_merges_adjacent_damage() {
        let first = frame(&cookie(1));
        let junk = [b"junk".as_slice(), &SALT, b"junk"].concat();
        // Garbage holding a false frame start, then a good frame.
        let bytes = file(&[first.clone(), junk, frame(&cookie(2))]);
        let contents = read_journal(&bytes);
        assert_eq!(contents.report.frames, 2);
        assert_eq!(
            (contents.state.cookies.len(), contents.mirror.cookies.len()),
            (2, 2)
        );
        assert_eq!(
            contents.report.discarded,
            [Discarded {
                offset: (FILE_HEADER_LEN + first.len()) as u64,
                bytes: 16,
                reason: "no frame start".into(),
            }]
        );
        assert!(!contents.appendable);
        assert_eq!(contents.salt, Some(SALT));
    }

    #[test]
    fn new_salts_differ() {
        let salts: std::collections::HashSet<Salt> = (0..16).map(|_| new_salt()).collect();
        assert_eq!(salts.len(), 16);
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
        apply(&mut mirror, &put(222));
        assert_eq!(mirror.live_bytes, frame(&put(222)).len() as u64);
        apply(&mut mirror, &stamped(5));
        apply(&mut mirror, &stamped(7));
        mirror.expire_old_cookies(6);
        assert_eq!(
            mirror.snapshot(&SALT),
            file(&[frame(&put(222)), frame(&stamped(7))])
        );
        apply(&mut mirror, &Change::Remove("a".into()));
        apply(&mut mirror, &Change::Remove("unknown".into()));
        assert_eq!(mirror.snapshot(&SALT), file(&[frame(&stamped(7))]));
        assert_eq!(mirror.live_bytes, frame(&stamped(7)).len() as u64);
        // A clock step back: an old cookie behind a newer one.
        apply(&mut mirror, &stamped(3));
        mirror.expire_old_cookies(6);
        assert_eq!(mirror.cookies.len(), 2, "only the oldest end is looked at");
        mirror.expire_cookies(6);
        assert_eq!(mirror.snapshot(&SALT), file(&[frame(&stamped(7))]));
        assert_eq!(mirror.live_bytes, frame(&stamped(7)).len() as u64);
        assert_eq!(Mirror::default().snapshot(&SALT), file_header(&SALT));
    }

    #[test]
    fn a_load_keeps_the_newest_cookies() {
        let mut state = State::default();
        for n in 0..MAX_COOKIES as u32 + 5 {
            state.cookies.push(CookieRecord {
                cookie: n.to_be_bytes().to_vec(),
                reply: vec![],
                answered_ms: 1,
            });
        }
        keep_newest_cookies(&mut state);
        assert_eq!(state.cookies.len(), MAX_COOKIES);
        assert_eq!(state.cookies[0].cookie, 5u32.to_be_bytes());
        state.cookies.truncate(3);
        state.cookies[1].reply = vec![0; MAX_COOKIE_BYTES as usize];
        keep_newest_cookies(&mut state);
        assert_eq!(state.cookies.len(), 1, "the newest that fit in the bytes");
        assert_eq!(state.cookies[0].cookie, 7u32.to_be_bytes());
    }

    #[test]
    fn mirror_keeps_the_newest_cookies_the_ng_cache_can_take() {
        let mut mirror = Mirror::default();
        let cookie = |n: u32, len: usize| {
            Change::Cookie(CookieRecord {
                cookie: n.to_be_bytes().to_vec(),
                reply: vec![0; len],
                answered_ms: 1,
            })
        };
        for n in 0..MAX_COOKIES as u32 + 10 {
            let change = cookie(n, 1);
            mirror.apply(&change, &frame(&change));
        }
        assert_eq!(mirror.cookies.len(), MAX_COOKIES);
        assert_eq!(mirror.cookies.front().unwrap().1, frame(&cookie(10, 1)));
        assert_eq!(mirror.live_bytes, mirror.cookie_bytes);
        // Large replies: the byte cap.
        let big = cookie(0, 1 << 20);
        for _ in 0..70 {
            mirror.apply(&big, &frame(&big));
        }
        assert!(mirror.cookie_bytes <= MAX_COOKIE_BYTES);
        assert_eq!(
            mirror.cookie_bytes,
            mirror
                .cookies
                .iter()
                .map(|(_, f)| f.len() as u64)
                .sum::<u64>()
        );
        mirror.expire_cookies(2);
        assert_eq!((mirror.cookie_bytes, mirror.live_bytes), (0, 0));
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
                    reason: "no frame start".into(),
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
