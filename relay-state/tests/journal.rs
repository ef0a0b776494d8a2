//! The file journal against crashes, damage, growth and a second relayd.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use relay_state::{
    CallRecord, Change, CookieRecord, CountsRecord, FileJournal, KernelRecord, LearnerRecord,
    LoadReport, MediaRecord, MonologueRecord, PortRecord, RtpRecord, State, Store, StoreError,
    SyncPolicy, TrackingRecord,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

/// A port on `local`, forwarding in the kernel through `slot` if given.
fn port(local: u16, slot: Option<u32>) -> PortRecord {
    PortRecord {
        local: addr(local),
        learner: LearnerRecord {
            mode: "heuristic".into(),
            strict: false,
            sdp: Some(SocketAddr::from(([198, 51, 100, 7], 4000))),
            candidate: None,
            confirmed: Some(SocketAddr::from(([198, 51, 100, 7], 4000))),
        },
        symmetric: true,
        tracking: TrackingRecord::Rtp { clock_rate: 8000 },
        kernel: slot.map(|slot| KernelRecord {
            peer: SocketAddr::from(([203, 0, 113, 9], 5000)),
            source: addr(local),
            strict_source: None,
            slot,
            to_userspace: false,
            max_pps: 0,
        }),
        user: CountsRecord {
            packets: 12,
            bytes: 1920,
            ..CountsRecord::default()
        },
        last_packet_ms: Some(1_700_000_000_000),
        kernel_retired: CountsRecord::default(),
        kernel_live: CountsRecord::default(),
        rtp: RtpRecord {
            ssrc: 0xdead_beef,
            max_seq: 77,
            ..RtpRecord::default()
        },
        srtp: None,
        webrtc: None,
    }
}

/// A two-party call whose four ports start at `base` (and kernel slots
/// with them).
fn call(id: &str, base: u16) -> CallRecord {
    let party = |n: u16, peer| MonologueRecord {
        tag: Some(format!("tag-{id}-{n}")),
        aliases: vec![],
        via_branch: Some("z9hG4bK-1".into()),
        interface: "pub".into(),
        address: addr(0).ip(),
        peer: Some(peer),
        created_ms: 1_700_000_000_000,
        medias: vec![MediaRecord {
            index: 0,
            kind: "audio".into(),
            protocol: "RTP/AVP".into(),
            muted: false,
            rtp: port(base + 2 * n, Some(u32::from(base + 2 * n))),
            rtcp: port(base + 2 * n + 1, None),
        }],
        subscribed: vec![],
    };
    CallRecord {
        call_id: id.into(),
        created_ms: 1_700_000_000_000,
        last_signal_ms: 1_700_000_000_500,
        delete_at_ms: None,
        monologues: vec![party(0, 1), party(1, 0)],
    }
}

fn put(id: &str, base: u16) -> Change {
    Change::Put(call(id, base))
}

fn cookie(name: &str, answered_ms: u64) -> Change {
    Change::Cookie(CookieRecord {
        cookie: name.as_bytes().to_vec(),
        reply: [name.as_bytes(), b" d6:result2:oke\xff\x00"].concat(),
        answered_ms,
    })
}

fn state_of(changes: &[Change]) -> State {
    let mut state = State::default();
    changes.iter().for_each(|c| state.apply(c));
    state
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal")
}

fn journal_len(dir: &Path) -> u64 {
    fs::metadata(journal_path(dir)).unwrap().len()
}

/// A journal file's header: magic, record format, salt.
const HEADER_LEN: u64 = 16;

/// The salt of the journal in `dir`, after checking that the file starts
/// with a header of the current record format.
fn salt_of(dir: &Path) -> [u8; 8] {
    let bytes = fs::read(journal_path(dir)).unwrap();
    assert!(bytes.len() >= HEADER_LEN as usize, "{} bytes", bytes.len());
    assert_eq!(&bytes[..4], b"XRJ2");
    assert_eq!(bytes[4..8], relay_state::RECORD_VERSION.to_le_bytes());
    assert_eq!(relay_state::RECORD_VERSION, 3);
    bytes[8..16].try_into().unwrap()
}

/// A frame as the journal lays it out: salt, length, CRC, payload.
fn raw_frame(salt: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut frame = salt.to_vec();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn encoded(change: &Change) -> Vec<u8> {
    let mut bytes = Vec::new();
    change.encode(&mut bytes).unwrap();
    bytes
}

fn journal_holds(dir: &Path, needle: &[u8]) -> bool {
    let bytes = fs::read(journal_path(dir)).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn damaged_copies(dir: &Path) -> Vec<PathBuf> {
    let mut copies: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("journal.damaged-"))
        .collect();
    copies.sort();
    copies
}

fn open(dir: &Path) -> FileJournal {
    FileJournal::open(dir, SyncPolicy::Periodic).unwrap()
}

fn load(dir: &Path) -> (State, LoadReport) {
    open(dir).load().unwrap()
}

/// Commits each change on its own; returns the journal's length before
/// each commit (where each change's frame starts) and at the end.
fn commit_each(dir: &Path, changes: &[Change]) -> Vec<u64> {
    let mut journal = open(dir);
    journal.load().unwrap();
    let mut offsets = vec![journal_len(dir)];
    for change in changes {
        journal.commit(std::slice::from_ref(change)).unwrap();
        offsets.push(journal_len(dir));
    }
    offsets
}

/// A directory whose journal is exactly `bytes`.
fn dir_with_journal(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(journal_path(dir.path()), bytes).unwrap();
    dir
}

/// Repeatable noise (xorshift64).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// The changes the damage tests start from: one frame each.
fn history() -> Vec<Change> {
    // Stamped an hour ahead: it must not expire while the test runs.
    let later = now_ms() + 3_600_000;
    vec![
        put("alpha", 10_000),
        put("bravo", 10_010),
        cookie("c1", later),
        put("charlie", 10_020),
        Change::Remove("alpha".into()),
        put("bravo", 10_030),
    ]
}

#[test]
fn round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let batches = [
        vec![put("a", 10_000), put("b", 10_010), cookie("x", now)],
        vec![Change::Remove("a".into()), put("c", 10_020)],
        vec![cookie("y", now + 1), put("b", 10_030)],
        vec![Change::Remove("never-was".into())],
    ];
    {
        let mut journal = open(dir.path());
        let (state, report) = journal.load().unwrap();
        assert_eq!(state, State::default());
        assert_eq!(report, LoadReport::default());
        for batch in &batches {
            journal.commit(batch).unwrap();
        }
        journal.commit(&[]).unwrap();
    }
    let expected = state_of(&batches.concat());
    assert_eq!(expected.calls.len(), 2);
    assert_eq!(expected.cookies.len(), 2);
    let mut journal = open(dir.path());
    let (state, report) = journal.load().unwrap();
    assert_eq!(state, expected);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.frames, 8);
    assert!(!report.rewritten);
    // Loading again, and after more commits on this handle, agrees.
    assert_eq!(journal.load().unwrap().0, expected);
    journal.commit(&[put("d", 10_040)]).unwrap();
    drop(journal);
    let (state, _) = load(dir.path());
    assert_eq!(
        state,
        state_of(&[batches.concat(), vec![put("d", 10_040)]].concat())
    );
}

#[test]
fn both_sync_policies_round_trip() {
    for policy in [SyncPolicy::Always, SyncPolicy::Periodic] {
        let dir = tempfile::tempdir().unwrap();
        let changes = [put("a", 10_000), cookie("k", now_ms()), put("b", 10_010)];
        {
            let mut journal = FileJournal::open(dir.path(), policy).unwrap();
            journal.load().unwrap();
            journal.commit(&changes[..2]).unwrap();
            journal.sync().unwrap();
            journal.sync().unwrap();
            journal.commit(&changes[2..]).unwrap();
        }
        let mut journal = FileJournal::open(dir.path(), policy).unwrap();
        let (state, report) = journal.load().unwrap();
        assert_eq!(state, state_of(&changes), "{policy:?}");
        assert!(report.is_clean(), "{policy:?}: {report}");
    }
}

#[test]
fn clear_empties_journal_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    journal.load().unwrap();
    journal
        .commit(&[put("a", 10_000), cookie("k", now_ms())])
        .unwrap();
    let salt = salt_of(dir.path());
    journal.clear().unwrap();
    // A fresh journal: a header of its own, and nothing after it.
    assert_eq!(journal_len(dir.path()), HEADER_LEN);
    assert_ne!(salt_of(dir.path()), salt);
    assert_eq!(journal.load().unwrap().0, State::default());
    journal.commit(&[put("b", 10_010)]).unwrap();
    journal.compact().unwrap();
    drop(journal);
    assert!(FileJournal::verify(dir.path()).unwrap().is_clean());
    assert_eq!(load(dir.path()).0, state_of(&[put("b", 10_010)]));
}

#[test]
fn torn_last_frame_at_every_offset() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    let offsets = commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();
    let (last_start, end) = (offsets[changes.len() - 1], offsets[changes.len()]);
    let before_last = state_of(&changes[..changes.len() - 1]);
    let after = put("delta", 10_040);

    // Cut exactly between frames: nothing is torn.
    let dir = dir_with_journal(&whole[..last_start as usize]);
    let (state, report) = load(dir.path());
    assert_eq!(state, before_last);
    assert!(report.is_clean() && !report.rewritten, "{report}");

    for cut in last_start + 1..end {
        let dir = dir_with_journal(&whole[..cut as usize]);
        let mut journal = open(dir.path());
        let (state, report) = journal.load().unwrap();
        assert_eq!(state, before_last, "cut at {cut}");
        assert_eq!(report.frames, changes.len() - 1, "cut at {cut}");
        assert_eq!(report.discarded.len(), 1, "cut at {cut}: {report}");
        let torn = &report.discarded[0];
        assert_eq!((torn.offset, torn.bytes), (last_start, cut - last_start));
        assert!(torn.reason.contains("truncated"), "{}", torn.reason);
        assert!(report.rewritten, "cut at {cut}");
        // The torn file is kept as it was; the journal is clean.
        let copies = damaged_copies(dir.path());
        assert_eq!(copies.len(), 1);
        assert_eq!(report.damaged_copy.as_ref(), Some(&copies[0]));
        assert_eq!(fs::read(&copies[0]).unwrap(), &whole[..cut as usize]);
        assert!(FileJournal::verify(dir.path()).unwrap().is_clean());
        // Repair rewrites the same journal: its header and salt stay.
        assert_eq!(salt_of(dir.path()), salt_of(source.path()));

        journal.commit(std::slice::from_ref(&after)).unwrap();
        drop(journal);
        let (state, report) = load(dir.path());
        let mut expected = before_last.clone();
        expected.apply(&after);
        assert_eq!(state, expected, "cut at {cut}");
        assert!(
            report.is_clean() && !report.rewritten,
            "cut at {cut}: {report}"
        );
    }
}

#[test]
fn damage_inside_a_frame_loses_only_that_frame() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    let offsets = commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();
    let k = 3; // put("charlie"): neither first nor last
    let (start, end) = (offsets[k], offsets[k + 1]);
    let without_k = state_of(&[&changes[..k], &changes[k + 1..]].concat());
    assert_ne!(without_k, state_of(&changes));

    // Every byte of the frame, header and payload alike.
    for at in start..end {
        let mut bytes = whole.clone();
        bytes[at as usize] ^= 0xff;
        let dir = dir_with_journal(&bytes);
        let (state, report) = load(dir.path());
        assert_eq!(state, without_k, "byte {at} flipped");
        assert_eq!(report.frames, changes.len() - 1, "byte {at}: {report}");
        assert_eq!(report.discarded.len(), 1, "byte {at}: {report}");
        let lost = &report.discarded[0];
        assert_eq!((lost.offset, lost.bytes), (start, end - start), "byte {at}");
        assert!(report.rewritten);
        assert_eq!(fs::read(&damaged_copies(dir.path())[0]).unwrap(), bytes);
        let check = FileJournal::verify(dir.path()).unwrap();
        // Rewritten as a snapshot: one frame per call and cookie.
        let live = without_k.calls.len() + without_k.cookies.len();
        assert!(check.is_clean() && check.frames == live, "{check}");
    }

    // A run of garbage over the end of frame k and the start of k+1
    // loses both, and nothing else.
    let mut bytes = whole.clone();
    bytes[end as usize - 5..end as usize + 5].fill(0x55);
    let (state, report) = load(dir_with_journal(&bytes).path());
    let mut expected = state_of(&changes[..k]);
    changes[k + 2..].iter().for_each(|c| expected.apply(c));
    assert_eq!(state, expected);
    assert_eq!(report.discarded.len(), 1, "{report}");
    assert_eq!(report.discarded[0].offset, start);
    assert_eq!(report.discarded[0].bytes, offsets[k + 2] - start);
}

#[test]
fn well_formed_frame_of_an_unknown_change_is_skipped() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    let offsets = commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();
    // Variant 3 of Change (there are three: Put, Remove, Cookie), say a
    // Rename("a", "b") of a later relayd's that forgot its format version.
    let payload = [3, 1, b'a', 1, b'b'];
    let odd = raw_frame(&salt_of(source.path()), &payload);
    let split = offsets[2] as usize;
    let bytes = [&whole[..split], &odd, &whole[split..]].concat();
    let (state, report) = load(dir_with_journal(&bytes).path());
    assert_eq!(state, state_of(&changes));
    assert_eq!(report.frames, changes.len());
    assert_eq!(report.discarded.len(), 1);
    let lost = &report.discarded[0];
    assert_eq!((lost.offset, lost.bytes), (split as u64, odd.len() as u64));
    assert!(
        lost.reason.starts_with("undecodable change"),
        "{}",
        lost.reason
    );
}

#[test]
fn garbage_and_empty_files_load_as_empty() {
    // Nothing at all: no file, then an empty one.
    let dir = tempfile::tempdir().unwrap();
    let (state, report) = load(dir.path());
    assert_eq!((state, report), (State::default(), LoadReport::default()));
    let dir = dir_with_journal(b"");
    let (state, report) = load(dir.path());
    assert_eq!((state, report), (State::default(), LoadReport::default()));
    assert!(damaged_copies(dir.path()).is_empty());
    assert_eq!(journal_len(dir.path()), HEADER_LEN);

    // Noise without a header, a torn header, and a header followed by
    // noise sprinkled with its salt (false frame starts).
    let source = tempfile::tempdir().unwrap();
    open(source.path());
    let header = fs::read(journal_path(source.path())).unwrap();
    let salt = salt_of(source.path());
    let mut sprinkled = noise(64 << 10, 7);
    for at in (0..sprinkled.len() - 8).step_by(997) {
        sprinkled[at..at + 8].copy_from_slice(&salt);
    }
    let sprinkled = [header, sprinkled].concat();
    for garbage in [noise(64 << 10, 1), sprinkled, b"XRJ".to_vec()] {
        let dir = dir_with_journal(&garbage);
        let mut journal = open(dir.path());
        let (state, report) = journal.load().unwrap();
        assert_eq!(state, State::default());
        assert_eq!(report.frames, 0);
        let skipped: u64 = report.discarded.iter().map(|d| d.bytes).sum();
        let header_read = garbage.starts_with(b"XRJ2") && garbage.len() > 16;
        let unread = garbage.len() as u64 - if header_read { HEADER_LEN } else { 0 };
        assert_eq!(skipped, unread, "{report}");
        assert!(report.rewritten);
        assert_eq!(journal_len(dir.path()), HEADER_LEN);
        salt_of(dir.path());
        assert_eq!(damaged_copies(dir.path()).len(), 1);
        // The journal works on from the clean file.
        journal.commit(&[put("a", 10_000)]).unwrap();
        drop(journal);
        let (state, report) = load(dir.path());
        assert_eq!(state, state_of(&[put("a", 10_000)]));
        assert!(report.is_clean(), "{report}");
    }
}

#[test]
fn a_new_journal_starts_with_a_header_and_a_salt_of_its_own() {
    // No file, and an empty one: the header is written at open.
    let (a, b) = (tempfile::tempdir().unwrap(), dir_with_journal(b""));
    let (journal_a, journal_b) = (open(a.path()), open(b.path()));
    assert_eq!(journal_len(a.path()), HEADER_LEN);
    assert_eq!(journal_len(b.path()), HEADER_LEN);
    assert_ne!(salt_of(a.path()), salt_of(b.path()));
    drop((journal_a, journal_b));
    // Frames follow it, each starting with the salt.
    let salt = salt_of(a.path());
    let offsets = commit_each(a.path(), &[put("a", 10_000), cookie("k", now_ms())]);
    assert_eq!(offsets[0], HEADER_LEN);
    let bytes = fs::read(journal_path(a.path())).unwrap();
    for &at in &offsets[..2] {
        assert_eq!(bytes[at as usize..at as usize + 8], salt);
    }
    assert_eq!(salt_of(a.path()), salt, "reopening keeps the salt");
    assert!(FileJournal::verify(a.path()).unwrap().is_clean());
    // verify() of a directory with no journal, or an empty one.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        FileJournal::verify(dir.path()).unwrap(),
        LoadReport::default()
    );
    fs::write(journal_path(dir.path()), b"").unwrap();
    assert_eq!(
        FileJournal::verify(dir.path()).unwrap(),
        LoadReport::default()
    );
}

/// Loads a journal of `bytes`, whose header cannot be used: checks that
/// all of it from `lost_from` on is reported discarded (first for `reason`),
/// kept aside as it was, and that a fresh journal took its place.
fn assert_replaced_whole(bytes: &[u8], lost_from: u64, reason: &str) {
    let dir = dir_with_journal(bytes);
    // verify() says the same, and changes nothing.
    let check = FileJournal::verify(dir.path()).unwrap();
    assert_eq!(check.frames, 0, "{check}");
    assert_eq!(check.discarded.len(), 1, "{check}");
    assert_eq!(fs::read(journal_path(dir.path())).unwrap(), bytes);

    let mut journal = open(dir.path());
    let (state, report) = journal.load().expect("never an error");
    assert_eq!(state, State::default());
    assert_eq!(report.frames, 0);
    assert_eq!(report.discarded, check.discarded);
    let lost = &report.discarded[0];
    assert_eq!(
        (lost.offset, lost.bytes),
        (lost_from, bytes.len() as u64 - lost_from)
    );
    assert!(lost.reason.starts_with(reason), "{report}");
    assert!(report.to_string().contains(reason), "{report}");
    assert!(report.rewritten);
    let copies = damaged_copies(dir.path());
    assert_eq!(copies.len(), 1);
    assert_eq!(report.damaged_copy.as_ref(), Some(&copies[0]));
    assert_eq!(fs::read(&copies[0]).unwrap(), bytes);
    assert_eq!(journal_len(dir.path()), HEADER_LEN);
    let salt = salt_of(dir.path());
    if lost_from == 0 {
        // No salt could be read: a fresh journal has a fresh one.
        assert!(!bytes.windows(8).any(|w| w == salt), "salt reused");
    }
    journal.commit(&[put("a", 10_000)]).unwrap();
    drop(journal);
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&[put("a", 10_000)]));
    assert!(report.is_clean() && !report.rewritten, "{report}");
}

#[test]
fn an_unreadable_header_costs_the_whole_file_never_an_error() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();

    // A damaged magic: with no header there is no salt to find frames by.
    for at in 0..4 {
        let mut bytes = whole.clone();
        bytes[at] ^= 0x40;
        assert_replaced_whole(&bytes, 0, "no journal header");
    }
    // Garbage in front of the header.
    let bytes = [noise(1000, 3), whole.clone()].concat();
    assert_replaced_whole(&bytes, 0, "no journal header");
    // A header cut short (a torn first write).
    for cut in 1..HEADER_LEN as usize {
        assert_replaced_whole(&whole[..cut], 0, "truncated journal header");
    }
    // A damaged salt in the header: no frame starts with it.
    let mut bytes = whole.clone();
    bytes[12] ^= 1;
    assert_replaced_whole(&bytes, HEADER_LEN, "no frame start");
    // A journal of an earlier relayd, JSON frames behind a fixed magic.
    let json = br#"{"Remove":"a"}"#;
    let mut old = b"XRJ1".to_vec();
    old.extend_from_slice(&(json.len() as u32).to_le_bytes());
    old.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    old.extend_from_slice(json);
    assert_replaced_whole(&old, 0, "journal of JSON frames");
}

#[test]
fn a_journal_of_another_record_format_is_kept_aside() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();
    for version in [4u32, 0, u32::MAX] {
        let mut bytes = whole.clone();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        let reason = format!("journal written in record format {version}; this relayd reads 3");
        assert_replaced_whole(&bytes, 0, &reason);
    }
}

#[test]
fn a_commit_before_load_starts_a_fresh_journal_over_an_unreadable_one() {
    let dir = dir_with_journal(&noise(100, 5));
    let mut journal = open(dir.path());
    // No load: the commit must not append to a file it cannot be read in.
    journal.commit(&[put("a", 10_000)]).unwrap();
    drop(journal);
    assert_eq!(damaged_copies(dir.path()).len(), 1);
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&[put("a", 10_000)]));
    assert!(report.is_clean() && !report.rewritten, "{report}");
}

#[test]
fn a_frame_forged_inside_a_payload_is_not_taken_after_damage() {
    // An NG client chooses bytes that the journal stores as they are (a
    // delete's reply, a call-id, tags): here a whole frame of a call of
    // its making. It cannot know the journal's salt, so it forges one.
    let forged_salt = *b"guessed!";
    let forged = raw_frame(&forged_salt, &encoded(&put("forged", 20_000)));
    let carrier = Change::Cookie(CookieRecord {
        cookie: b"k".to_vec(),
        reply: [b"d6:result2:ok".as_slice(), &forged, b"e"].concat(),
        answered_ms: now_ms() + 3_600_000,
    });
    let changes = [put("alpha", 10_000), carrier, put("bravo", 10_010)];
    let source = tempfile::tempdir().unwrap();
    let offsets = commit_each(source.path(), &changes);
    let salt = salt_of(source.path());
    assert_ne!(salt, forged_salt);
    let whole = fs::read(journal_path(source.path())).unwrap();
    // Damage the carrier's length field: the reader must resynchronise
    // from inside the carrier, across the forged frame.
    let (start, end) = (offsets[1] as usize, offsets[2] as usize);
    let mut bytes = whole.clone();
    bytes[start + 9] ^= 0x01;
    let (state, report) = load(dir_with_journal(&bytes).path());
    let expected = state_of(&[put("alpha", 10_000), put("bravo", 10_010)]);
    assert_eq!(state, expected);
    assert!(!state.calls.contains_key("forged"));
    assert_eq!(report.frames, 2);
    assert_eq!(report.discarded.len(), 1, "{report}");
    let lost = &report.discarded[0];
    assert_eq!(
        (lost.offset, lost.bytes),
        (start as u64, (end - start) as u64)
    );

    // The same bytes under the journal's own salt (which is why it must
    // stay secret, and why a fixed magic would not do): taken.
    let at = start
        + bytes[start..end]
            .windows(8)
            .position(|w| w == forged_salt)
            .unwrap();
    bytes[at..at + 8].copy_from_slice(&salt);
    let (state, _) = load(dir_with_journal(&bytes).path());
    assert!(
        state.calls.contains_key("forged"),
        "the control forgery failed"
    );
}

#[test]
fn frames_after_leading_garbage_are_kept() {
    let changes = history();
    let source = tempfile::tempdir().unwrap();
    commit_each(source.path(), &changes);
    let whole = fs::read(journal_path(source.path())).unwrap();
    // Garbage between the header and the first frame.
    let header = HEADER_LEN as usize;
    let bytes = [&whole[..header], &noise(1000, 3), &whole[header..]].concat();
    let (state, report) = load(dir_with_journal(&bytes).path());
    assert_eq!(state, state_of(&changes));
    assert_eq!(report.discarded.len(), 1);
    assert_eq!(
        (report.discarded[0].offset, report.discarded[0].bytes),
        (HEADER_LEN, 1000)
    );
}

#[test]
fn put_remove_cycles_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let live: Vec<Change> = (0..10)
        .map(|i| put(&format!("live-{i}"), 20_000 + 10 * i))
        .collect();
    let mut journal = open(dir.path());
    journal.load().unwrap();
    journal.commit(&live).unwrap();
    let mut largest = 0;
    let mut appended = 0;
    for i in 0..20_000u32 {
        let id = format!("gone-{i}");
        let before = journal_len(dir.path());
        journal.commit(&[put(&id, 30_000)]).unwrap();
        appended += journal_len(dir.path()).saturating_sub(before);
        journal.commit(&[Change::Remove(id)]).unwrap();
        largest = largest.max(journal_len(dir.path()));
    }
    // Uncompacted, the calls alone would be several times the bound.
    assert!(appended > 8 << 20, "{appended} bytes appended");
    assert!(largest < 2 << 20, "journal grew to {largest} bytes");
    let salt = salt_of(dir.path());
    journal.compact().unwrap();
    assert!(
        !journal_holds(dir.path(), b"gone-"),
        "a removed call outlived compaction"
    );
    // Compaction rewrites the same journal: header and salt stay.
    assert_eq!(salt_of(dir.path()), salt);
    assert!(!dir.path().join("journal.new").exists());
    drop(journal);
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&live));
    assert_eq!(report.frames, live.len());
}

#[test]
fn compaction_drops_old_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let old = cookie("old", now - 120_000);
    let fresh = cookie("fresh", now);
    let mut journal = open(dir.path());
    journal.load().unwrap();
    journal
        .commit(&[old.clone(), put("a", 10_000), fresh.clone()])
        .unwrap();
    // Loading forgets the old cookie even before compaction does.
    let (state, _) = journal.load().unwrap();
    assert_eq!(state, state_of(&[put("a", 10_000), fresh.clone()]));
    // The cookies' bytes as they are, each after its length.
    let (old_bytes, fresh_bytes) = (b"\x03old", b"\x05fresh");
    assert!(journal_holds(dir.path(), old_bytes));
    journal.compact().unwrap();
    assert!(!journal_holds(dir.path(), old_bytes));
    assert!(journal_holds(dir.path(), fresh_bytes));
    salt_of(dir.path());
    drop(journal);
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&[put("a", 10_000), fresh]));
    assert_eq!(report.frames, 2);
}

#[test]
fn expired_cookies_leave_by_themselves() {
    // Cookies stamped over a minute ago stand for a stream whose minute
    // has passed. Were they counted live for ever, the file (all cookies)
    // would never be four times their size and never be compacted.
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    journal.load().unwrap();
    let stale = now_ms() - 61_000;
    let stale_cookie = |i: u32| {
        Change::Cookie(CookieRecord {
            cookie: i.to_be_bytes().to_vec(),
            reply: vec![0xab; 1000],
            answered_ms: stale,
        })
    };
    // 2000 cookies of 1 KB: were they live, the journal would grow to
    // several MiB; expired, they go at every compaction, which happens
    // whenever the file passes the 1 MiB floor.
    for i in 0..2_000 {
        journal.commit(&[stale_cookie(i)]).unwrap();
        let len = journal_len(dir.path());
        assert!(len < (1 << 20) + (4 << 10), "{len} bytes after cookie {i}");
    }
}

#[test]
fn commits_before_load_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let first = put("first", 10_000);
    commit_each(dir.path(), std::slice::from_ref(&first));
    // A handle that never loads still must not compact the first call away.
    let mut journal = open(dir.path());
    for i in 0..2_000u32 {
        let id = format!("gone-{i}");
        journal
            .commit(&[put(&id, 30_000), Change::Remove(id)])
            .unwrap();
    }
    assert!(journal_len(dir.path()) < 2 << 20);
    drop(journal);
    assert_eq!(load(dir.path()).0, state_of(&[first]));
}

#[test]
fn leftover_of_an_interrupted_compaction_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let changes = [put("a", 10_000)];
    commit_each(dir.path(), &changes);
    // A crash before the rename: journal.new may be anything.
    fs::write(dir.path().join("journal.new"), noise(5000, 9)).unwrap();
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&changes));
    assert!(report.is_clean(), "{report}");
    assert!(!dir.path().join("journal.new").exists());
}

#[test]
fn second_open_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let first = open(&state_dir);
    match FileJournal::open(&state_dir, SyncPolicy::Always) {
        Err(StoreError::Locked(d)) => assert_eq!(d, state_dir),
        other => panic!("second open: {other:?}"),
    }
    drop(first);
    FileJournal::open(&state_dir, SyncPolicy::Always).unwrap();
}

#[test]
fn open_creates_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("a/b");
    open(&state_dir);
    let mode = fs::metadata(&state_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// verify() of a journal of exactly `calls`.
fn verify_calls(calls: Vec<CallRecord>) -> LoadReport {
    let dir = tempfile::tempdir().unwrap();
    let changes: Vec<Change> = calls.into_iter().map(Change::Put).collect();
    commit_each(dir.path(), &changes);
    FileJournal::verify(dir.path()).unwrap()
}

#[test]
fn verify_passes_a_coherent_journal() {
    let report = verify_calls(vec![call("a", 10_000), call("b", 10_010)]);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.frames, 2);
}

#[test]
fn verify_finds_peer_out_of_range() {
    let mut bad = call("a", 10_000);
    bad.monologues[1].peer = Some(2);
    let report = verify_calls(vec![bad]);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.problems[0].contains("peer 2"), "{report}");
}

#[test]
fn verify_finds_shared_local_port() {
    // Within a call, and across two.
    let mut inner = call("a", 10_000);
    inner.monologues[1].medias[0].rtcp.local = addr(10_001);
    let report = verify_calls(vec![inner]);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.problems[0].contains(":10001"), "{report}");

    let mut b = call("b", 10_002);
    b.monologues
        .iter_mut()
        .for_each(|m| m.medias[0].rtp.kernel = None);
    let report = verify_calls(vec![call("a", 10_000), b]);
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(report
        .problems
        .iter()
        .all(|p| p.contains("\"a\" and \"b\"")));
}

#[test]
fn verify_finds_shared_kernel_slot() {
    let mut b = call("b", 10_010);
    b.monologues[0].medias[0].rtp.kernel.as_mut().unwrap().slot = 10_000;
    let report = verify_calls(vec![call("a", 10_000), b.clone()]);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.problems[0].contains("slot 10000"), "{report}");

    // Pass-to-userspace entries may share.
    let mut a = call("a", 10_000);
    a.monologues[0].medias[0]
        .rtp
        .kernel
        .as_mut()
        .unwrap()
        .to_userspace = true;
    b.monologues[0].medias[0]
        .rtp
        .kernel
        .as_mut()
        .unwrap()
        .to_userspace = true;
    let report = verify_calls(vec![a, b]);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn verify_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let changes = history();
    commit_each(dir.path(), &changes);
    let journal = open(dir.path()); // held: verify takes no lock
    let mut bytes = fs::read(journal_path(dir.path())).unwrap();
    // A torn frame: the salt and one byte of its length.
    bytes.extend_from_slice(&salt_of(dir.path()));
    bytes.push(5);
    fs::write(journal_path(dir.path()), &bytes).unwrap();
    let report = FileJournal::verify(dir.path()).unwrap();
    assert_eq!(report.frames, changes.len());
    assert_eq!(report.discarded.len(), 1, "{report}");
    assert!(!report.rewritten);
    assert_eq!(fs::read(journal_path(dir.path())).unwrap(), bytes);
    assert!(damaged_copies(dir.path()).is_empty());
    drop(journal);
    assert!(matches!(
        FileJournal::verify(&dir.path().join("missing")),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn load_reports_invariant_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = call("a", 10_000);
    bad.monologues[0].peer = Some(9);
    commit_each(dir.path(), &[Change::Put(bad.clone())]);
    let (state, report) = load(dir.path());
    assert_eq!(state, state_of(&[Change::Put(bad)]));
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(report.discarded.is_empty() && !report.rewritten);
}

#[test]
fn journal_can_live_behind_a_shared_store() {
    // relayd keeps it as a `Box<dyn Store + Send>`.
    let dir = tempfile::tempdir().unwrap();
    let store: Box<dyn Store + Send> = Box::new(open(dir.path()));
    assert!(format!("{store:?}").starts_with("FileJournal"));
}

#[test]
fn a_flush_runs_outside_the_journal_and_only_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    journal.load().unwrap();
    assert!(
        journal.flush_job().unwrap().is_none(),
        "nothing written yet"
    );
    journal.commit(&[put("a", 1)]).unwrap();
    let flush = journal.flush_job().unwrap().expect("a write to flush");
    // Commits go on while the flush has not run yet.
    journal.commit(&[put("b", 2)]).unwrap();
    flush().unwrap();
    assert!(
        journal.flush_job().unwrap().is_some(),
        "the second commit still needs one"
    );
    assert!(journal.flush_job().unwrap().is_none());
    drop(journal);
    let (state, _) = load(dir.path());
    assert_eq!(state, state_of(&[put("a", 1), put("b", 2)]));
}

#[test]
fn in_use_tells_whether_a_journal_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(FileJournal::in_use(&dir.path().join("none")), None);
    let journal = open(dir.path());
    assert_eq!(FileJournal::in_use(dir.path()), Some(true));
    drop(journal);
    assert_eq!(FileJournal::in_use(dir.path()), Some(false));
    assert!(
        FileJournal::open(dir.path(), SyncPolicy::Periodic).is_ok(),
        "in_use left no lock behind"
    );
}

/// A journal an earlier relayd wrote in record format 1 (before
/// subscriptions) loads whole, each party without subscriptions.
#[test]
fn a_journal_of_record_format_1_is_read() {
    use relay_state::records::v1;
    let current = call("a", 100);
    assert!(
        current.ports().all(|p| p.srtp.is_none()),
        "format 1 has no SRTP state"
    );
    let old = v1::Change::Put(v1::CallRecord::from_current(&current));
    let salt = *b"saltsalt";
    let mut bytes = b"XRJ2".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&salt);
    bytes.extend(raw_frame(&salt, &postcard::to_allocvec(&old).unwrap()));
    let dir = dir_with_journal(&bytes);
    let (state, report) = load(dir.path());
    assert_eq!(report.frames, 1, "{report}");
    assert!(report.discarded.is_empty(), "{report}");
    assert_eq!(state, state_of(&[put("a", 100)]));
}

/// A journal an earlier relayd wrote in record format 2 (before SDES-SRTP
/// state) loads whole, each port without SRTP state; the first commit
/// rewrites it in the current format.
#[test]
fn a_journal_of_record_format_2_is_read() {
    use relay_state::records::v2;
    let current = call("a", 100);
    assert!(
        current.ports().all(|p| p.srtp.is_none()),
        "format 2 has no SRTP state"
    );
    let old = v2::Change::Put(v2::CallRecord::from_current(&current));
    let salt = *b"saltsalt";
    let mut bytes = b"XRJ2".to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&salt);
    bytes.extend(raw_frame(&salt, &postcard::to_allocvec(&old).unwrap()));
    let dir = dir_with_journal(&bytes);
    let (state, report) = load(dir.path());
    assert_eq!(report.frames, 1, "{report}");
    assert!(report.discarded.is_empty(), "{report}");
    assert_eq!(state, state_of(&[put("a", 100)]));
}

/// The journal holds SRTP master keys: a fresh one is 0600 in a 0700
/// directory, and opening one an operator or an older relayd left
/// readable to others makes it so.
#[test]
fn the_journal_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    drop(open(&dir));
    assert_eq!(mode(&journal_path(&dir)), 0o600);
    assert_eq!(mode(&dir), 0o700);

    fs::set_permissions(journal_path(&dir), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let journal = open(&dir);
    assert_eq!(mode(&journal_path(&dir)), 0o600);
    assert_eq!(mode(&dir), 0o700);
    drop(journal);
}
