//! Replication through a real redis-server: the active's feed and the
//! standby's mirror converge on puts, changes and removes, across a Redis
//! restart, with and without a password; what waits for Redis is bounded
//! by the calls, however many changes they make.

use std::time::{Duration, Instant};

use relay_state::{
    redis::{self as replication, Feed, Keys, Link, Mirror, RedisTarget},
    CallRecord, Change,
};

#[path = "../../tests/src/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// A call whose record says which revision of it this is.
fn call(id: &str, revision: u64) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        created_ms: 1,
        last_signal_ms: revision,
        delete_at_ms: None,
        monologues: vec![],
    }
}

fn put(id: &str, revision: u64) -> Change {
    Change::Put(call(id, revision))
}

fn target(server: &RedisServer) -> RedisTarget {
    RedisTarget::parse(&server.url(0), None).unwrap()
}

/// Waits up to 10 s for `check`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The call ids under `prefix` in Redis, sorted.
fn keys_in_redis(server: &RedisServer, prefix: &str) -> Vec<String> {
    let out = server
        .cli(&["--scan", "--pattern", &format!("{prefix}call:*")])
        .unwrap();
    let mut ids: Vec<String> = out
        .lines()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}call:")).map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// The mirror holds exactly `expected` (id, revision).
fn mirrors(mirror: &Mirror, expected: &[(&str, u64)]) -> bool {
    let state = mirror.state();
    state.calls.len() == expected.len()
        && expected.iter().all(|(id, rev)| {
            state
                .calls
                .get(*id)
                .is_some_and(|c| c.last_signal_ms == *rev)
        })
}

#[test]
fn the_mirror_follows_puts_changes_and_removes() {
    let Some(server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t1:");
    let feed = Feed::start(target(&server), keys.clone());
    let mirror = Mirror::start(target(&server), keys);
    eventually("the mirror is up", || mirror.status().link == Link::Up);
    feed.push(&[put("a", 1), put("b", 1), put("c", 1)]);
    feed.push(&[put("b", 2)]);
    feed.push(&[Change::Remove("c".into())]);
    eventually("the mirror converges", || {
        mirrors(&mirror, &[("a", 1), ("b", 2)])
    });
    assert_eq!(keys_in_redis(&server, "t1:"), ["a", "b"]);
    eventually("the feed has nothing pending", || {
        let s = feed.status();
        s.link == Link::Up && s.pending == 0 && s.lag.is_zero() && s.last_write_ms.is_some()
    });
    // The active says every second how current Redis is.
    eventually("the mirror knows its lag", || {
        mirror
            .status()
            .lag
            .is_some_and(|lag| lag < Duration::from_secs(3))
    });
    let status = mirror.status();
    assert_eq!(status.calls, 2);
    assert_eq!(status.skipped, 0);
    assert!(status.applied >= 3, "{status:?}");
    feed.finish(Duration::from_secs(2));
}

#[test]
fn a_late_mirror_reads_everything_and_a_new_active_removes_what_it_lacks() {
    let Some(server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t2:");
    let first = Feed::start(target(&server), keys.clone());
    first.push(&[put("ghost", 1), put("kept", 1)]);
    first.finish(Duration::from_secs(5));
    assert_eq!(keys_in_redis(&server, "t2:"), ["ghost", "kept"]);
    // Started after the writes: it reads them all.
    let mirror = Mirror::start(target(&server), keys.clone());
    eventually("the late mirror reads the calls", || {
        mirrors(&mirror, &[("ghost", 1), ("kept", 1)])
    });
    // A relayd that restarted with only "kept" (ghost ended while none ran).
    let second = Feed::start(target(&server), keys);
    second.push(&[put("kept", 2)]);
    eventually("the stale call goes", || mirrors(&mirror, &[("kept", 2)]));
    assert_eq!(keys_in_redis(&server, "t2:"), ["kept"]);
    eventually("the resync is counted", || second.status().resyncs >= 1);
}

#[test]
fn a_redis_restart_loses_no_call_and_the_mirror_converges() {
    let Some(mut server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t3:");
    let feed = Feed::start(target(&server), keys.clone());
    let mirror = Mirror::start(target(&server), keys);
    let ids: Vec<String> = (0..50).map(|i| format!("call-{i:02}")).collect();
    let puts: Vec<Change> = ids.iter().map(|id| put(id, 1)).collect();
    feed.push(&puts);
    eventually("the mirror has 50 calls", || {
        mirror.state().calls.len() == 50
    });

    server.kill();
    // Calls go on changing while Redis is away.
    let more: Vec<Change> = (50..80).map(|i| put(&format!("call-{i:02}"), 1)).collect();
    feed.push(&more);
    let ended: Vec<Change> = ids[..10]
        .iter()
        .map(|id| Change::Remove(id.clone()))
        .collect();
    feed.push(&ended);
    feed.push(&[put("call-20", 2)]);
    eventually("the feed sees the outage", || {
        feed.status().link == Link::Down
    });
    eventually("the mirror sees the outage", || {
        mirror.status().link == Link::Down
    });
    let down = feed.status();
    assert_eq!(down.calls, 70, "nothing lost on the active: {down:?}");
    assert_eq!(down.pending, 70, "all rewritten on reconnect: {down:?}");
    assert!(down.outages >= 1 && down.errors >= 1, "{down:?}");
    // The mirror keeps what it had meanwhile.
    assert_eq!(mirror.state().calls.len(), 50);

    // Back, and empty: the feed rewrites every call.
    server.restart();
    let mut expected: Vec<(String, u64)> = (10..80).map(|i| (format!("call-{i:02}"), 1)).collect();
    expected
        .iter_mut()
        .find(|(id, _)| id == "call-20")
        .unwrap()
        .1 = 2;
    let expected: Vec<(&str, u64)> = expected.iter().map(|(id, r)| (id.as_str(), *r)).collect();
    eventually("the mirror converges after the restart", || {
        mirrors(&mirror, &expected)
    });
    assert_eq!(keys_in_redis(&server, "t3:").len(), 70);
    let up = feed.status();
    assert_eq!((up.link, up.calls), (Link::Up, 70));
    assert!(up.resyncs >= 2, "at start and after the outage: {up:?}");
    assert!(mirror.status().resyncs >= 2);
}

#[test]
fn a_password_is_checked_and_an_outage_is_not_a_misconfiguration() {
    let Some(server) = RedisServer::start(module_path!(), Some("s3cret@pw")) else {
        return;
    };
    // rtpengine's syntax: the password may hold '@' (split at the last).
    let right = RedisTarget::parse(&server.url(0), None).unwrap();
    assert_eq!(right.password.as_deref(), Some("s3cret@pw"));
    replication::probe(&right).unwrap();
    let wrong = RedisTarget::parse(&format!("nope@127.0.0.1:{}/0", server.port), None).unwrap();
    let e = replication::probe(&wrong).unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("refused the login"), "{e}");
    assert!(
        !e.to_string().contains("nope"),
        "no password in messages: {e}"
    );
    let none = RedisTarget::parse(&format!("127.0.0.1:{}/0", server.port), None).unwrap();
    assert!(replication::probe(&none).unwrap_err().is_config());
    let db = RedisTarget::parse(&format!("s3cret@pw@127.0.0.1:{}/999", server.port), None).unwrap();
    assert!(replication::probe(&db).unwrap_err().is_config());
    let closed = RedisTarget::parse("127.0.0.1:1/0", None).unwrap();
    assert!(!replication::probe(&closed).unwrap_err().is_config());

    let keys = Keys::new("t4:");
    let feed = Feed::start(right.clone(), keys.clone());
    let mirror = Mirror::start(right, keys);
    feed.push(&[put("a", 1)]);
    eventually("replicated with a password", || {
        mirrors(&mirror, &[("a", 1)])
    });
}

#[test]
fn what_waits_for_redis_is_bounded_by_the_calls() {
    let Some(server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t5:");
    let feed = Feed::start(target(&server), keys.clone());
    let mirror = Mirror::start(target(&server), keys);
    eventually("the feed is up", || feed.status().link == Link::Up);
    eventually("the mirror is up", || mirror.status().link == Link::Up);
    // A Redis that stops answering (but keeps its connections): the writer
    // waits on it while the calls keep changing.
    let pid = server.pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let started = Instant::now();
    for revision in 1..=100 {
        let changes: Vec<Change> = (0..10).map(|i| put(&format!("c{i}"), revision)).collect();
        feed.push(&changes);
    }
    // Committing never waited on the stalled Redis.
    assert!(started.elapsed() < Duration::from_millis(500));
    let stalled = feed.status();
    assert_eq!(stalled.calls, 10);
    assert!(
        stalled.pending <= 20,
        "1000 changes of 10 calls: at most 10 waiting and 10 being written: {stalled:?}"
    );
    signal("-CONT");
    let expected: Vec<(String, u64)> = (0..10).map(|i| (format!("c{i}"), 100)).collect();
    let expected: Vec<(&str, u64)> = expected.iter().map(|(id, r)| (id.as_str(), *r)).collect();
    eventually("the latest of each call arrives", || {
        mirrors(&mirror, &expected)
    });
    eventually("nothing pending", || feed.status().pending == 0);
}

#[test]
fn the_mirror_skips_values_it_cannot_read() {
    let Some(server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t6:");
    let mirror = Mirror::start(target(&server), keys.clone());
    eventually("the mirror is up", || mirror.status().link == Link::Up);
    server.cli(&["SET", "t6:call:bad", "garbage"]).unwrap();
    server.cli(&["PUBLISH", "t6:calls", "c:bad"]).unwrap();
    server.cli(&["PUBLISH", "t6:calls", "what?"]).unwrap();
    eventually("both are skipped", || mirror.status().skipped >= 2);
    let feed = Feed::start(target(&server), keys);
    feed.push(&[put("good", 1)]);
    eventually("a good call still arrives", || {
        mirrors(&mirror, &[("good", 1)])
    });
    // The feed's resync deleted the key of a call it does not have; a
    // bad value written after that is skipped by a full read too.
    server.cli(&["SET", "t6:call:bad", "garbage"]).unwrap();
    drop(mirror);
    let again = Mirror::start(target(&server), Keys::new("t6:"));
    eventually("a full read skips it", || {
        let s = again.status();
        s.resyncs >= 1 && s.skipped >= 1
    });
    assert!(mirrors(&again, &[("good", 1)]));
}

/// A takeover's handover: the standby's mirror, finished, holds the last
/// calls; the feed it starts seeded with them keeps their keys through its
/// first rewrite of Redis; an abandoned feed (an active stepping down)
/// writes nothing more.
#[test]
fn a_seeded_feed_keeps_the_mirrored_calls_and_an_abandoned_one_writes_nothing() {
    let Some(server) = RedisServer::start(module_path!(), None) else {
        return;
    };
    let keys = Keys::new("t7:");
    let old = Feed::start(target(&server), keys.clone());
    let mirror = Mirror::start(target(&server), keys.clone());
    old.push(&[put("a", 1), put("b", 1)]);
    eventually("the mirror has both", || {
        mirrors(&mirror, &[("a", 1), ("b", 1)])
    });
    // The old active steps down: what it does afterwards stays local.
    old.abandon();
    old.push(&[Change::Remove("a".into()), put("c", 1)]);
    let state = mirror.finish();
    assert_eq!(state.calls.len(), 2);
    let records: Vec<Change> = state.calls.into_values().map(Change::Put).collect();
    let new = Feed::start_seeded(target(&server), keys, &records);
    eventually("the new active's first rewrite is done", || {
        new.status().resyncs == 1
    });
    assert_eq!(keys_in_redis(&server, "t7:"), ["a", "b"]);
    new.push(&[Change::Remove("b".into())]);
    eventually("the new active writes", || {
        keys_in_redis(&server, "t7:") == ["a"]
    });
}
