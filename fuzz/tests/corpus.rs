//! Every seed of `corpus/TARGET/` through the code of fuzz target TARGET,
//! on stable Rust and without libFuzzer: the seeds (and the crashes a
//! campaign found, which are kept among them as `crash-*`) are checked by
//! a plain test run, in CI, in seconds.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features`
//! (`cargo xtask test` runs it).

use std::{fs, path::PathBuf};

use xrelay_fuzz::TARGETS;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Runs every file of `corpus/NAME/` through `target`; fails naming the
/// file that panicked.
fn replay(name: &str) {
    let target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .expect("a target of that name");
    let dir = corpus_dir().join(name);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            panic!("fuzz target {name} panicked on {}", file.display());
        }
    }
    eprintln!("{name}: {} inputs", files.len());
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { replay(stringify!($name)); } )*

        #[test]
        fn every_target_has_a_test_a_binary_and_seeds() {
            let tested = [$(stringify!($name)),*];
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "no replay test for {name}");
                assert!(
                    root.join("fuzz_targets").join(format!("{name}.rs")).is_file(),
                    "no fuzz_targets/{name}.rs"
                );
                assert!(
                    manifest.contains(&format!("name = \"{name}\"")),
                    "no [[bin]] {name} in fuzz/Cargo.toml"
                );
            }
            for entry in fs::read_dir(corpus_dir()).expect("corpus/") {
                let name = entry.expect("entry").file_name().into_string().expect("UTF-8");
                assert!(
                    TARGETS.iter().any(|(n, _)| *n == name),
                    "corpus/{name} belongs to no target"
                );
            }
        }
    };
}

replay_tests!(
    bencode,
    ng_datagram,
    ng_json,
    rtpp_flags,
    sdp,
    config_toml,
    static_stream,
    state_journal,
    stun,
    dtls,
    state_record,
);

/// Writes the seeds of `state_journal` and `state_record` with the real
/// journal (their bytes depend on the record format, so they are
/// regenerated when it changes): `cargo test --manifest-path
/// fuzz/Cargo.toml --no-default-features -- --ignored write_state_seeds`.
#[test]
#[ignore = "writes corpus/state_*; run by hand after a record format change"]
fn write_state_seeds() {
    use relay_state::{
        CallRecord, Change, CookieRecord, CountsRecord, FileJournal, KernelRecord, LearnerRecord,
        MediaRecord, MonologueRecord, PortRecord, RocRecord, RtpRecord, SdesKeyRecord, SrtpRecord,
        Store, SyncPolicy, TrackingRecord,
    };
    use std::net::SocketAddr;

    let sa = |s: &str| -> SocketAddr { s.parse().expect("address") };
    // The SDES-SRTP state of a port where the relay bridges SRTP to RTP
    // (format 3): both keys, and the ROCs of an SSRC that wrapped once.
    let srtp = |ssrc: u32| SrtpRecord {
        party: SdesKeyRecord {
            tag: 1,
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key: (0..16).collect(),
            salt: (16..30).collect(),
            lifetime: Some(1 << 31),
            params: vec![],
        },
        relay: SdesKeyRecord {
            tag: 1,
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key: (100..116).collect(),
            salt: (116..130).collect(),
            lifetime: None,
            params: vec![],
        },
        inbound: vec![RocRecord {
            ssrc,
            roc: 1,
            seq: 16384,
        }],
        outbound: vec![RocRecord {
            ssrc: ssrc ^ 0xffff,
            roc: 1,
            seq: 2,
        }],
    };
    let port = |local: &str, peer: &str, slot: Option<u32>, rtcp: bool| PortRecord {
        local: sa(local),
        learner: LearnerRecord {
            mode: "heuristic".into(),
            strict: false,
            sdp: Some(sa(peer)),
            candidate: Some((sa(peer), 2)),
            confirmed: Some(sa(peer)),
        },
        symmetric: true,
        tracking: if rtcp {
            TrackingRecord::Rtcp
        } else {
            TrackingRecord::Rtp { clock_rate: 8000 }
        },
        kernel: slot.map(|slot| KernelRecord {
            peer: sa(peer),
            source: sa(local),
            strict_source: None,
            slot,
            to_userspace: false,
            max_pps: 0,
        }),
        user: CountsRecord {
            packets: 3,
            bytes: 516,
            ..CountsRecord::default()
        },
        last_packet_ms: Some(1_733_000_000_000),
        kernel_retired: CountsRecord::default(),
        kernel_live: CountsRecord {
            packets: 1500,
            bytes: 258_000,
            last_seen_ns: 912_345_678_901,
            ..CountsRecord::default()
        },
        rtp: RtpRecord {
            rtp_packets: 1500,
            ssrc: 0x1a2b_3c4d,
            max_seq: 1499,
            payload_type: 8,
            clock_rate: 8000,
            ..RtpRecord::default()
        },
        srtp: None,
        webrtc: None,
    };
    // With `sdes`, the first party speaks SDES-SRTP, which the relay
    // terminates (its ports stay out of the kernel).
    let call = |id: &str, base: u16, sdes: bool| {
        let party = |n: u16, peer_ip: &str, tag: &str| MonologueRecord {
            tag: Some(tag.into()),
            aliases: vec![],
            via_branch: Some("z9hG4bK.a1B2c3D4".into()),
            interface: "pub".into(),
            address: "203.0.113.7".parse().expect("ip"),
            peer: Some(1 - usize::from(n)),
            created_ms: 1_733_000_000_000,
            medias: vec![MediaRecord {
                index: 0,
                kind: "audio".into(),
                protocol: if sdes && n == 0 {
                    "RTP/SAVP"
                } else {
                    "RTP/AVP"
                }
                .into(),
                muted: false,
                rtp: PortRecord {
                    srtp: (sdes && n == 0).then(|| srtp(0x5eed_0000)),
                    // A browser's port: ICE-lite agent and DTLS session.
                    webrtc: (sdes && n == 0).then(|| relay_state::WebRtcRecord {
                        ice: Some(relay_state::IceRecord {
                            ufrag: "x7Qa".into(),
                            pwd: "k".repeat(24),
                            remote_ufrag: Some("b9Zp".into()),
                            nominated: Some(sa(&format!("{peer_ip}:4000"))),
                        }),
                        dtls: Some(relay_state::DtlsRecord {
                            server: true,
                            remote_fingerprint: format!("sha-256 {}", ["AB"; 32].join(":")),
                            connected: true,
                        }),
                    }),
                    ..port(
                        &format!("203.0.113.7:{}", base + 2 * n),
                        &format!("{peer_ip}:4000"),
                        (!sdes).then_some(u32::from(base + 2 * n)),
                        false,
                    )
                },
                rtcp: PortRecord {
                    srtp: (sdes && n == 0).then(|| srtp(0x5eed_0000)),
                    ..port(
                        &format!("203.0.113.7:{}", base + 2 * n + 1),
                        &format!("{peer_ip}:4001"),
                        None,
                        true,
                    )
                },
            }],
            subscribed: vec![],
        };
        CallRecord {
            call_id: id.into(),
            created_ms: 1_733_000_000_000,
            last_signal_ms: 1_733_000_000_420,
            delete_at_ms: None,
            monologues: vec![
                party(0, "192.0.2.21", "as7f3c2d1e"),
                party(1, "198.51.100.40", "8a71b3f0c2"),
            ],
        }
    };
    let changes = [
        Change::Put(call("5d8a3e1c@192.0.2.21", 30000, false)),
        Change::Put(call("0ba2cf53-9a78@203.0.113.77", 30010, true)),
        Change::Cookie(CookieRecord {
            cookie: b"3141_28491_4".to_vec(),
            reply: b"3141_28491_4 d6:result2:oke".to_vec(),
            answered_ms: 1_733_000_000_500,
        }),
        Change::Remove("5d8a3e1c@192.0.2.21".into()),
    ];

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), bytes).expect("seed");
    };
    for (i, change) in changes.iter().enumerate() {
        let mut payload = Vec::new();
        change.encode(&mut payload).expect("encode");
        let kind = ["put_call", "put_call_2", "cookie", "remove"][i];
        put("state_record", kind, &payload);
    }

    let dir = std::env::temp_dir().join(format!("xrelay-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    {
        let mut journal = FileJournal::open(&dir, SyncPolicy::Periodic).expect("open");
        journal.commit(&changes).expect("commit");
    }
    let whole = fs::read(dir.join("journal")).expect("journal");
    let _ = fs::remove_dir_all(&dir);
    put("state_journal", "four_changes", &whole);
    put("state_journal", "header_only", &whole[..16]);
    put(
        "state_journal",
        "torn_last_frame",
        &whole[..whole.len() - 7],
    );
    let mut damaged = whole.clone();
    damaged[16 + 40] ^= 0x55;
    put("state_journal", "damaged_first_frame", &damaged);
    let mut newer = whole.clone();
    newer[4..8].copy_from_slice(&99u32.to_le_bytes());
    put("state_journal", "newer_record_format", &newer);
    put(
        "state_journal",
        "json_journal_v1",
        b"XRJ1\n{\"Put\":{\"call_id\":\"x\"}}\n",
    );

    // Journals of the earlier record formats, which a restart reads and
    // rewrites: the plain call (no SRTP state) in format 2 and in format 1.
    use relay_state::records::{v1, v2};
    let Change::Put(plain) = &changes[0] else {
        unreachable!()
    };
    let v2_call = v2::Change::Put(v2::CallRecord::from_current(plain));
    let v1_call = v1::Change::Put(v1::CallRecord::from_current(plain));
    // The layout of relay-state's journal module docs, with `whole`'s
    // salt: header (magic, format, salt), then salt, length, CRC, payload.
    let older = |version: u32, payload: Vec<u8>| {
        let salt = &whole[8..16];
        let mut file = whole[..16].to_vec();
        file[4..8].copy_from_slice(&version.to_le_bytes());
        file.extend_from_slice(salt);
        file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        file
    };
    put(
        "state_journal",
        "record_format_2",
        &older(2, postcard::to_stdvec(&v2_call).expect("encode")),
    );
    put(
        "state_journal",
        "record_format_1",
        &older(1, postcard::to_stdvec(&v1_call).expect("encode")),
    );
}

/// The `stun` seeds are what they say: the valid nominating request gets
/// as far as a nomination, so the fuzzer starts from the deep end.
#[test]
fn stun_seeds_reach_the_agents_deep_end() {
    use relay_media::{IceCredentials, IceEvent, IceLiteAgent, Rejection};
    let seed = |name: &str| fs::read(corpus_dir().join("stun").join(name)).expect("seed");
    let creds = IceCredentials {
        ufrag: "relay1".into(),
        pwd: "relaypasswordrelaypassword".into(),
    };
    let from = "203.0.113.10:16500".parse().unwrap();
    let now = std::time::Instant::now();
    let mut agent = IceLiteAgent::new(creds, None);
    let out = agent.handle(&seed("valid-nominating"), from, now);
    assert_eq!(out.event, Some(IceEvent::Nominated(from)));
    let out = agent.handle(&seed("wrong-password"), from, now);
    assert_eq!(out.rejected, Some(Rejection::Unauthorized));
}

/// The seeds of earlier record formats are read whole (not set aside as
/// unreadable): they reach the older formats' decoders.
#[test]
fn older_record_format_seeds_are_read() {
    use relay_state::FileJournal;
    for name in ["record_format_1", "record_format_2"] {
        let seed = fs::read(corpus_dir().join("state_journal").join(name)).expect("seed");
        let dir = std::env::temp_dir().join(format!("xrelay-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("journal"), &seed).expect("journal");
        let report = FileJournal::verify(&dir).expect("verify");
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(report.frames, 1, "{name}: {report}");
        assert!(report.discarded.is_empty(), "{name}: {report}");
    }
}
