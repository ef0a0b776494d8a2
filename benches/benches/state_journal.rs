//! The call state journal on an NG request's path: encoding a typical
//! two-party call's record, and committing it with the request's reply
//! (what relayd writes before each offer/answer/delete reply).

use std::net::SocketAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use relay_state::{
    CallRecord, Change, CookieRecord, CountsRecord, FileJournal, LearnerRecord, MediaRecord,
    MonologueRecord, PortRecord, RtpRecord, Store, SyncPolicy, TrackingRecord,
};

const SDP_REPLY: &str = include_str!("../../relay-sdp/tests/golden/phone_g711.out.sdp");

fn port(local: &str, peer: &str) -> PortRecord {
    let peer: SocketAddr = peer.parse().unwrap();
    PortRecord {
        local: local.parse().unwrap(),
        learner: LearnerRecord {
            mode: "heuristic".into(),
            strict: false,
            sdp: Some(peer),
            candidate: None,
            confirmed: Some(peer),
        },
        symmetric: true,
        tracking: TrackingRecord::Rtp { clock_rate: 8000 },
        kernel: None,
        user: CountsRecord::default(),
        last_packet_ms: Some(1_700_000_000_000),
        kernel_retired: CountsRecord::default(),
        kernel_live: CountsRecord::default(),
        rtp: RtpRecord::default(),
        srtp: None,
        webrtc: None,
    }
}

fn call(id: &str) -> CallRecord {
    let party = |tag: &str, peer: usize, rtp: u16, remote: &str| MonologueRecord {
        tag: Some(tag.into()),
        aliases: vec![],
        via_branch: Some("z9hG4bK-524287-1---b33f5e1d2fa3b51a".into()),
        interface: "pub".into(),
        address: "10.0.0.5".parse().unwrap(),
        peer: Some(peer),
        created_ms: 1_700_000_000_000,
        medias: vec![MediaRecord {
            index: 0,
            kind: "audio".into(),
            protocol: "RTP/AVP".into(),
            muted: false,
            rtp: port(&format!("10.0.0.5:{rtp}"), &format!("{remote}:4000")),
            rtcp: port(&format!("10.0.0.5:{}", rtp + 1), &format!("{remote}:4001")),
        }],
        subscribed: vec![],
    };
    CallRecord {
        call_id: id.into(),
        created_ms: 1_700_000_000_000,
        last_signal_ms: 1_700_000_000_500,
        delete_at_ms: None,
        monologues: vec![
            party("as8d7f6a", 1, 30000, "192.0.2.10"),
            party("b92837ab", 0, 30002, "198.51.100.7"),
        ],
    }
}

fn bench(c: &mut Criterion) {
    let record = Change::Put(call("a84b4c76e66710@pc33.example.com"));
    c.bench_function("state/encode a call record", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            black_box(&record).encode(&mut out).unwrap();
            out
        })
    });
    for (policy, name) in [
        (
            SyncPolicy::Periodic,
            "state/commit a call record and its reply",
        ),
        (
            SyncPolicy::Always,
            "state/commit a call record and its reply, --state-sync=always",
        ),
    ] {
        let dir = std::env::temp_dir().join(format!("xrelay-bench-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut journal = FileJournal::open(&dir, policy).unwrap();
        journal.load().unwrap();
        let mut n = 0u64;
        c.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let reply = CookieRecord {
                    cookie: format!("1234_{n}").into_bytes(),
                    reply: SDP_REPLY.as_bytes().to_vec(),
                    answered_ms: 1_700_000_000_000,
                };
                journal
                    .commit(&[record.clone(), Change::Cookie(reply)])
                    .unwrap();
            })
        });
        drop(journal);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
