//! The call state journal: a file relayd reads back at start-up, which a
//! crash, a full disk or a bad disk may have damaged, and whose payloads
//! quote what NG clients sent.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use relay_state::{Change, FileJournal, Store, SyncPolicy, RECORD_VERSION};

/// `state_journal`: the input is the whole `journal` file of a state
/// directory. `FileJournal::verify` reads it as `relayd --check-state`
/// does; `open` + `load` read it as a restart does, repairing it; after
/// that the journal must read clean and give the same calls, also with
/// one more change appended.
pub fn state_journal(data: &[u8]) {
    with_dir(|dir| {
        fs::write(dir.join("journal"), data).expect("writing the journal");
        let verified = FileJournal::verify(dir).expect("verify");

        let mut journal = FileJournal::open(dir, SyncPolicy::Periodic).expect("open");
        let (state, report) = journal.load().expect("load");
        assert_eq!(report.frames, verified.frames, "{report} / {verified}");
        assert_eq!(report.discarded, verified.discarded);
        // Once loaded, the journal takes commits.
        let gone = Change::Remove("fuzz-call-that-goes".into());
        journal.commit(&[gone]).expect("commit after load");
        drop(journal);

        let mut again = FileJournal::open(dir, SyncPolicy::Periodic).expect("reopen");
        let (mut reread, report) = again.load().expect("reload");
        assert!(
            report.discarded.is_empty() && !report.rewritten,
            "a repaired journal reads damaged again: {report}"
        );
        let mut expected = state.calls;
        expected.remove("fuzz-call-that-goes");
        reread.calls.retain(|id, _| id != "fuzz-call-that-goes");
        assert_eq!(reread.calls, expected, "the calls changed across a reload");
    });
}

/// `state_record`: the input is one frame's payload, a [`Change`] as
/// postcard encodes it. A change that decodes encodes back to itself; in a
/// journal frame (right salt, length and CRC) the reader takes the payload
/// exactly when it decodes with no bytes left over (the journal rejects
/// trailing bytes, which `postcard::from_bytes` would ignore).
pub fn state_record(data: &[u8]) {
    let decoded = match postcard::take_from_bytes::<Change>(data) {
        Ok((change, [])) => Some(change),
        _ => None,
    };
    if let Some(change) = &decoded {
        let mut encoded = Vec::new();
        change
            .encode(&mut encoded)
            .expect("encoding a decoded change");
        assert_eq!(
            postcard::from_bytes::<Change>(&encoded).as_ref(),
            Ok(change)
        );
    }
    with_dir(|dir| {
        fs::write(dir.join("journal"), journal_of(&[data])).expect("writing the journal");
        let report = FileJournal::verify(dir).expect("verify");
        assert_eq!(
            report.frames,
            usize::from(decoded.is_some()),
            "reader and decoder disagree: {report}"
        );
    });
}

/// A journal file of the current record format holding `payloads`, one
/// frame each (the layout of relay-state's `journal` module docs).
pub fn journal_of(payloads: &[&[u8]]) -> Vec<u8> {
    const SALT: [u8; 8] = *b"\x5a\x17\xc3\x00\x9e\x42\xff\x01";
    let mut out = b"XRJ2".to_vec();
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&SALT);
    for payload in payloads {
        out.extend_from_slice(&SALT);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Runs `f` on an empty state directory of this thread's own (in
/// /dev/shm when there is one: syncs cost nothing there), removed after.
fn with_dir(f: impl FnOnce(&Path)) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static DIR: PathBuf = {
            let base = Path::new("/dev/shm");
            let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
            base.join(format!(
                "xrelay-fuzz-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ))
        };
    }
    DIR.with(|dir| {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("creating the state directory");
        f(dir);
        let _ = fs::remove_dir_all(dir);
    });
}
