//! Calls outlive relayd: a relayd killed (`kill -9`) or stopped by a signal
//! and started again on the same pin directory and state keeps every call,
//! its ports and its counters; kernel streams lose no packet meanwhile.
//! Real relayd processes in network namespaces, real XDP, real UDP at a
//! phone's 50 packets a second.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    netns::ChildGuard,
    ng_client::{sdp_endpoint, NgClient},
    paced::PacedStream,
    require_root,
    topology::{bind_udp, exchange, HOST_A, HOST_B},
};

mod common;

use common::{
    answer, command, offer, port_is_free, rtp_streams, s, wait_kernelized, Bed, RELAYCTL, RELAYD,
};

/// `relayd --check-state` on the bed's state directory: its verdict and output.
fn check_state(bed: &Bed) -> (bool, String) {
    let out = Command::new(RELAYD)
        .arg("--check-state")
        .arg("--pin-dir")
        .arg(&bed.pins.0)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn delete(call_id: &str) -> Value {
    Value::dict([
        ("command", s("delete")),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
        ("delete-delay", Value::Int(0)),
    ])
}

fn kill_9(mut child: ChildGuard) {
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

fn relay_endpoint(reply: &Value) -> SocketAddr {
    let (addr, port) = sdp_endpoint(reply.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    format!("{addr}:{port}").parse().unwrap()
}

/// Offer and answer; the relay ports A and B send to.
fn set_up_call(ng: &NgClient, call_id: &str) -> (SocketAddr, SocketAddr) {
    let relay_b = relay_endpoint(&ng.ok(&offer(call_id)).unwrap());
    let relay_a = relay_endpoint(&ng.ok(&answer(call_id)).unwrap());
    (relay_a, relay_b)
}

/// Endpoints A and B, their first packets through the relay (learning),
/// then a steady 50 pps each way.
fn start_media(bed: &Bed, relay_a: SocketAddr, relay_b: SocketAddr) -> [PacedStream; 2] {
    let a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    assert_eq!(exchange(&a, &relay_a.to_string(), &b, 3).unwrap().len(), 3);
    assert_eq!(exchange(&b, &relay_b.to_string(), &a, 3).unwrap().len(), 3);
    let clone = |s: &UdpSocket| s.try_clone().unwrap();
    [
        PacedStream::start(clone(&a), relay_a, clone(&b), 50),
        PacedStream::start(b, relay_b, a, 50),
    ]
}

#[test]
fn kill_9_loses_no_kernelized_packet_and_keeps_the_call() {
    require_root!();
    let bed = Bed::new("rsk");
    let relayd = bed.relayd(&[]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-k");
    let streams = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-k");
    // Long enough for relayd's once-a-second check to record the userspace
    // counters of packets relayed while the streams went into the kernel.
    std::thread::sleep(Duration::from_millis(1500));

    // The maps a restart must adopt (the same kernel objects), not replace.
    let map_ids = || -> Vec<u32> {
        let dir = versioned(&bed, relay_common::ABI_VERSION);
        ["streams", "stream_state", "counters"]
            .iter()
            .map(|m| aya::maps::MapInfo::from_pin(dir.join(m)).unwrap().id())
            .collect()
    };
    let before = map_ids();
    kill_9(relayd);
    std::thread::sleep(Duration::from_secs(2));
    let relayd = bed.relayd(&[]);
    assert_eq!(map_ids(), before, "the restarted relayd adopted the maps");
    std::thread::sleep(Duration::from_millis(500));
    let [ab, ba] = streams.map(PacedStream::stop);

    for (name, o) in [("A to B", &ab), ("B to A", &ba)] {
        assert!(o.sent.len() > 100, "{name}: {} sent", o.sent.len());
        assert_eq!(
            o.lost(),
            Vec::<u32>::new(),
            "{name}: packets lost across kill -9 and restart"
        );
    }
    // The call is there, with counters that include the packets forwarded
    // before and while no relayd ran.
    let q = bed.ng.ok(&command("query", "call-k")).unwrap();
    let streams = rtp_streams(&q);
    assert_eq!(streams.len(), 2, "{q:?}");
    let sent = ab.sent.len() as i64 + ba.sent.len() as i64 + 6;
    let counted: i64 = streams
        .iter()
        .map(|(_, _, user, kernel)| user + kernel)
        .sum();
    assert_eq!(counted, sent, "every packet counted once: {streams:?}");
    assert!(streams
        .iter()
        .all(|(_, f, _, _)| f.iter().any(|f| f == "kernelized")));
    let calls = bed.relayctl_cli(&["calls", "--json"]);
    let calls: serde_json::Value = serde_json::from_slice(&calls.stdout).unwrap();
    assert_eq!(calls[0]["call_id"], "call-k");
    assert_eq!(
        calls[0]["restored"], true,
        "relayctl calls marks restored calls"
    );

    // A re-offer on the same tags keeps the ports.
    let again = bed.ng.ok(&offer("call-k")).unwrap();
    assert_eq!(relay_endpoint(&again), relay_b);
    // delete frees ports, sockets and kernel entries.
    assert_eq!(bed.forwarding_streams(), 2);
    bed.ng
        .ok(&Value::dict([
            ("command", s("delete")),
            ("call-id", s("call-k")),
            ("from-tag", s("tag-A")),
            ("delete-delay", Value::Int(0)),
        ]))
        .unwrap();
    assert_eq!(bed.forwarding_streams(), 0);
    assert!(port_is_free(&bed.t.r, relay_a) && port_is_free(&bed.t.r, relay_b));
    drop(relayd);
}

#[test]
fn a_userspace_call_resumes_after_kill_9() {
    require_root!();
    let bed = Bed::new("rsu");
    // Media for longer than --timeout before the kill: what the journal
    // knows of it (recorded every third of the timeout) must keep the call
    // alive across a restart shorter than the rest of the timeout.
    let args = ["--datapath", "userspace", "--timeout", "3"];
    let relayd = bed.relayd(&args);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-u");
    let streams = start_media(&bed, relay_a, relay_b);
    std::thread::sleep(Duration::from_secs(4));

    // Datagrams already queued in the killed relayd's sockets go with it:
    // count those sent just before the kill as sent while it was down.
    let down = Instant::now() - Duration::from_millis(100);
    kill_9(relayd);
    std::thread::sleep(Duration::from_millis(500));
    let relayd = bed.relayd(&args);
    let up = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let [ab, ba] = streams.map(PacedStream::stop);

    for (name, o) in [("A to B", &ab), ("B to A", &ba)] {
        assert_eq!(
            o.lost_outside(down..up),
            Vec::<u32>::new(),
            "{name}: lost while a relayd ran"
        );
        assert!(
            o.received_after(up) >= 40,
            "{name}: media resumed after the restart ({} arrived)",
            o.received_after(up)
        );
    }
    let q = bed.ng.ok(&command("query", "call-u")).unwrap();
    assert_eq!(rtp_streams(&q).len(), 2);
    assert_eq!(
        relay_endpoint(&bed.ng.ok(&offer("call-u")).unwrap()),
        relay_b
    );
    drop(relayd);
}

#[test]
fn a_userspace_relayd_removes_the_xdp_program_it_finds() {
    require_root!();
    let bed = Bed::new("rss");
    let relayd = bed.relayd(&[]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-old");
    let [ab, ba] = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-old");
    drop((ab.stop(), ba.stop()));
    let owned = Command::new(RELAYCTL)
        .arg("--pin-dir")
        .arg(&bed.pins.0)
        .arg("streams")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&owned.stderr).contains("no relayd owns"));
    kill_9(relayd);
    // relayctl tells an operator that nobody programs the program now.
    let orphan = Command::new(RELAYCTL)
        .arg("--pin-dir")
        .arg(&bed.pins.0)
        .arg("streams")
        .output()
        .unwrap();
    let warning = String::from_utf8_lossy(&orphan.stderr);
    assert!(
        warning.contains("no relayd owns") && warning.contains("a1, b1"),
        "{warning}"
    );

    // The operator falls back to userspace forwarding, keeping no state.
    let relayd = bed.relayd(&["--datapath", "userspace", "--no-state"]);
    assert!(
        !bed.pins.0.exists(),
        "the pins (and so the program) of the XDP relayd are gone"
    );
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-new");
    let a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    assert_eq!(exchange(&a, &relay_a.to_string(), &b, 5).unwrap().len(), 5);
    assert_eq!(exchange(&b, &relay_b.to_string(), &a, 5).unwrap().len(), 5);
    drop(relayd);
}

#[test]
fn sigterm_keeps_calls_and_relayctl_stop_ends_them() {
    require_root!();
    let bed = Bed::new("rst");
    let relayd = bed.relayd(&[]);
    let (relay_a, _) = set_up_call(&bed.ng, "call-t");
    let status = relayd.terminate().unwrap();
    assert!(status.success(), "relayd exit {status}");
    assert!(
        bed.pins.0.exists(),
        "a signal keeps the pins for the next relayd"
    );

    let relayd = bed.relayd(&[]);
    let q = bed.ng.ok(&command("query", "call-t")).unwrap();
    assert_eq!(q.get("result"), Some(&s("ok")));
    common::stop_relayd(&bed.t.r, relayd);
    assert!(!bed.pins.0.exists(), "relayctl stop removes the pins");
    assert!(port_is_free(&bed.t.r, relay_a));

    // Nothing comes back.
    let relayd = bed.relayd(&[]);
    let q = bed.ng.request(&command("query", "call-t")).unwrap();
    assert_eq!(q.get("result"), Some(&s("error")), "{q:?}");
    drop(relayd);
}

#[test]
fn kill_9_during_200_offers_a_second_loses_no_answered_offer() {
    require_root!();
    let bed = Bed::new("rso");
    let relayd = bed.relayd(&[]);
    // A delete answered before the kill; its retransmission after the
    // restart must get the same reply, not "Unknown call-id".
    set_up_call(&bed.ng, "call-del");
    let first = bed
        .ng
        .request_with_cookie("kept-cookie", &delete("call-del"))
        .unwrap();
    assert_eq!(first.get("result"), Some(&s("ok")));

    bed.ng.set_timeout(Duration::from_millis(500)).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1100));
        kill_9(relayd);
    });
    let mut answered = Vec::new();
    let start = Instant::now();
    for n in 0u32.. {
        let id = format!("offer-{n}");
        match bed.ng.request(&offer(&id)) {
            Ok(reply) => {
                assert_eq!(reply.get("result"), Some(&s("ok")), "{reply:?}");
                answered.push(id);
            }
            Err(_) => break, // relayd is gone
        }
        let next = start + Duration::from_millis(5) * (n + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    killer.join().unwrap();
    assert!(answered.len() > 150, "{} offers answered", answered.len());

    let (clean, report) = check_state(&bed);
    assert!(clean, "the journal after kill -9 is consistent: {report}");

    bed.ng.set_timeout(Duration::from_secs(5)).unwrap();
    let relayd = bed.relayd(&[]);
    for id in &answered {
        let q = bed.ng.request(&command("query", id)).unwrap();
        assert_eq!(
            q.get("result"),
            Some(&s("ok")),
            "{id} was answered ok, then lost"
        );
    }
    let again = bed
        .ng
        .request_with_cookie("kept-cookie", &delete("call-del"))
        .unwrap();
    assert_eq!(
        again, first,
        "a retransmission is answered from the restored cache"
    );
    drop(relayd);
}

#[test]
fn a_damaged_journal_loses_only_what_cannot_be_read() {
    require_root!();
    let bed = Bed::new("rsd");
    let relayd = bed.relayd(&[]);
    set_up_call(&bed.ng, "call-1");
    set_up_call(&bed.ng, "call-2");
    kill_9(relayd);

    // Garbage, then a frame cut short, after what relayd wrote.
    let journal = bed.pins.state_dir().join("journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"\x00garbage\xffnot a frame");
    bytes.extend_from_slice(b"XRJ1\x40\x00\x00\x00\x01\x02\x03\x04{\"Put\"");
    std::fs::write(&journal, bytes).unwrap();
    let (clean, report) = check_state(&bed);
    assert!(!clean, "--check-state reports the damage: {report}");
    assert!(report.contains("damaged"), "{report}");

    let relayd = bed.relayd(&[]);
    for id in ["call-1", "call-2"] {
        let q = bed.ng.request(&command("query", id)).unwrap();
        assert_eq!(q.get("result"), Some(&s("ok")), "{id}: {q:?}");
    }
    let kept_aside = std::fs::read_dir(bed.pins.state_dir())
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("journal.damaged-")
        });
    assert!(kept_aside, "the damaged journal is kept for a look");
    let (clean, report) = check_state(&bed);
    assert!(clean, "the journal was rewritten clean: {report}");
    drop(relayd);

    // Nothing readable at all: relayd still starts, with no calls.
    std::fs::write(&journal, b"\xde\xad\xbe\xef garbage only").unwrap();
    let relayd = bed.relayd(&[]);
    let q = bed.ng.request(&command("query", "call-1")).unwrap();
    assert_eq!(q.get("result"), Some(&s("error")));
    bed.ng.ok(&Value::dict([("command", s("ping"))])).unwrap();
    drop(relayd);
}

/// A call with media at 50 pps each way through XDP; relayd killed, then
/// `between` run on the bed, then a relayd started with `args`: no packet
/// may be lost, every packet must be counted once (the new relayd carries
/// on the old program's counters, including what it forwarded while no
/// relayd ran), and the call must be in the kernel of the new relayd.
fn takeover_loses_no_packet(tag: &str, between: impl FnOnce(&Bed), args: &[&str]) -> Bed {
    takeover_from(RELAYD, tag, between, args)
}

/// [`takeover_loses_no_packet`] from a relayd run from the binary `first`.
fn takeover_from(first: &str, tag: &str, between: impl FnOnce(&Bed), args: &[&str]) -> Bed {
    let bed = Bed::new(tag);
    let relayd = bed.relayd_from(first, &[]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-v");
    let streams = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-v");
    // Long enough for relayd's once-a-second check to record the userspace
    // counters of packets relayed while the streams went into the kernel.
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(relayd);
    between(&bed);
    std::thread::sleep(Duration::from_millis(500));

    let relayd = bed.relayd(args);
    std::thread::sleep(Duration::from_millis(500));
    let [ab, ba] = streams.map(PacedStream::stop);
    for (name, o) in [("A to B", &ab), ("B to A", &ba)] {
        assert!(o.sent.len() > 50, "{name}: {} sent", o.sent.len());
        assert_eq!(
            o.lost(),
            Vec::<u32>::new(),
            "{name}: packets lost in the takeover"
        );
    }
    let q = bed.ng.ok(&command("query", "call-v")).unwrap();
    let counted = rtp_streams(&q);
    assert!(counted
        .iter()
        .all(|(_, f, _, _)| f.iter().any(|f| f == "kernelized")));
    let sent = ab.sent.len() as i64 + ba.sent.len() as i64 + 6;
    let total: i64 = counted
        .iter()
        .map(|(_, _, user, kernel)| user + kernel)
        .sum();
    assert_eq!(total, sent, "every packet counted once: {counted:?}");
    // The RTP figures carried on too: no packet looks lost.
    for (tag, t) in q.get("tags").and_then(Value::as_dict).unwrap() {
        for m in t.get("medias").and_then(Value::as_list).unwrap() {
            let st = &m.get("streams").and_then(Value::as_list).unwrap()[0];
            let lost = st
                .get("RTP quality")
                .and_then(|r| r.get("packets lost"))
                .and_then(Value::as_int);
            let tag = String::from_utf8_lossy(tag);
            assert_eq!(lost, Some(0), "{tag}: RTP figures across the takeover");
        }
    }
    assert_eq!(bed.forwarding_streams(), 2);
    bed.ng.ok(&delete("call-v")).unwrap();
    assert_eq!(bed.forwarding_streams(), 0);
    drop(relayd);
    bed
}

fn versioned(bed: &Bed, version: u32) -> std::path::PathBuf {
    bed.pins.0.join(format!("abi-v{version}"))
}

#[test]
fn a_relayd_of_another_abi_version_takes_over_without_losing_a_packet() {
    require_root!();
    let ours = relay_common::ABI_VERSION;
    // What a relayd of another ABI version leaves: its program attached
    // and its maps and links pinned under its own abi-vN directory, which
    // is all relayds tell versions apart by. This relayd's own pins, moved
    // there, stand for them; their streams and counters are read in v8's
    // layout (a v7 relayd's in v7's, which needs a v7 build to run).
    let bed = takeover_loses_no_packet(
        "rsv",
        |bed| std::fs::rename(versioned(bed, ours), versioned(bed, ours - 1)).unwrap(),
        &[],
    );
    assert!(
        !versioned(&bed, ours - 1).exists(),
        "the old version's pins are gone"
    );
    for pin in ["link_a1", "link_b1", "streams"] {
        assert!(
            versioned(&bed, ours).join(pin).exists(),
            "{pin} pinned anew"
        );
    }
}

/// The upgrade an operator makes: a relayd of an earlier build (ABI v7,
/// per-CPU counters and rows of all 65536 ports; or the first v8 build,
/// rows of all ports) runs a call through XDP and is killed; this build
/// takes over its program and maps without losing a packet, counters and
/// RTP figures carried on. `cargo xtask test` builds the earlier relayds
/// (`cargo xtask earlier-relayd`) and names them in
/// XRELAY_EARLIER_RELAYDS (colon-separated paths).
#[test]
fn a_relayd_of_an_earlier_build_takes_over_without_losing_a_packet() {
    require_root!();
    let Ok(paths) = std::env::var("XRELAY_EARLIER_RELAYDS") else {
        eprintln!(
            "skipped: XRELAY_EARLIER_RELAYDS is not set (cargo xtask test builds the earlier \
             relayds and sets it; by hand: cargo xtask earlier-relayd)"
        );
        return;
    };
    for (i, bin) in paths.split(':').filter(|p| !p.is_empty()).enumerate() {
        assert!(std::path::Path::new(bin).exists(), "{bin} is not built");
        let bed = takeover_from(bin, &format!("rse{i}"), |_| {}, &[]);
        let dir = versioned(&bed, relay_common::ABI_VERSION);
        assert!(
            dir.join("link_a1").exists(),
            "{bin}: this build's link pinned"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&bed.pins.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy() != format!("abi-v{}", relay_common::ABI_VERSION))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{bin}: earlier pins left: {leftovers:?}"
        );
    }
}

#[test]
fn a_relayd_with_maps_of_another_size_takes_over_without_losing_a_packet() {
    require_root!();
    let bed = takeover_loses_no_packet("rsm", |_| {}, &["--max-streams", "4096"]);
    let dir = versioned(&bed, relay_common::ABI_VERSION);
    let moved_aside = dir.with_file_name(format!("abi-v{}-replaced", relay_common::ABI_VERSION));
    assert!(!moved_aside.exists(), "the replaced pins are gone");
    assert!(dir.join("link_a1").exists());
}

/// An interface deleted and created again while no relayd ran leaves a
/// defunct link pin (its netdev is gone): the next relayd removes it and
/// attaches afresh instead of failing to update it, and new calls' media
/// goes through XDP again.
#[test]
fn a_recreated_interface_does_not_stop_the_next_relayd() {
    require_root!();
    let bed = Bed::new("rsi");
    let relayd = bed.relayd(&[]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-i");
    let streams = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-i");
    let _ = streams.map(PacedStream::stop);
    kill_9(relayd);
    bed.t.recreate_a_link().unwrap();
    let _peer = bed
        .t
        .a
        .run(|| relay_tests::peer::attach_peer_pass("a0"))
        .unwrap()
        .unwrap();

    let relayd = bed.relayd(&[]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-j");
    let streams = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-j");
    std::thread::sleep(Duration::from_millis(300));
    for (name, o) in ["A to B", "B to A"]
        .into_iter()
        .zip(streams.map(PacedStream::stop))
    {
        assert!(o.sent.len() > 10, "{name}: {} sent", o.sent.len());
        assert_eq!(o.lost(), Vec::<u32>::new(), "{name}: lost");
    }
    let ifaces = bed.relayctl_json("interfaces");
    assert!(
        ifaces
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["xdp_mode"] == "native"),
        "{ifaces}"
    );
    drop(relayd);
}

/// A restart with another `--max-stream-pps` applies it to the streams it
/// adopts, in place (their counters carry on).
#[test]
fn an_adopted_stream_takes_the_new_rate_cap() {
    require_root!();
    let bed = Bed::new("rsp");
    let relayd = bed.relayd(&["--max-stream-pps", "500"]);
    let (relay_a, relay_b) = set_up_call(&bed.ng, "call-p");
    let streams = start_media(&bed, relay_a, relay_b);
    wait_kernelized(&bed.ng, "call-p");
    let caps = |bed: &Bed| -> Vec<(u64, u64)> {
        bed.relayctl_json("streams")
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["to_userspace"] == false)
            .map(|s| {
                (
                    s["max_pps"].as_u64().unwrap(),
                    s["packets"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert!(
        caps(&bed).iter().all(|(cap, _)| *cap == 500),
        "{:?}",
        caps(&bed)
    );
    kill_9(relayd);
    let before = caps(&bed);
    let relayd = bed.relayd(&["--max-stream-pps", "300"]);
    let after = caps(&bed);
    let _ = streams.map(PacedStream::stop);
    assert_eq!(after.len(), 2, "{after:?}");
    for ((_, was), (cap, now)) in before.iter().zip(&after) {
        assert_eq!(*cap, 300, "the new cap: {after:?}");
        assert!(now >= was, "counters carried on: {before:?} -> {after:?}");
    }
    drop(relayd);
}

#[test]
fn calls_whose_time_ran_out_while_no_relayd_ran_are_not_resurrected() {
    require_root!();
    let bed = Bed::new("rse");
    let relayd = bed.relayd(&["--timeout", "2"]);
    set_up_call(&bed.ng, "call-idle");
    kill_9(relayd);
    std::thread::sleep(Duration::from_secs(3));
    let relayd = bed.relayd(&["--timeout", "2"]);
    let q = bed.ng.request(&command("query", "call-idle")).unwrap();
    assert_eq!(q.get("result"), Some(&s("error")), "{q:?}");
    drop(relayd);
    let (clean, report) = check_state(&bed);
    assert!(clean, "{report}");
    assert!(report.starts_with(&format!("{}: ", bed.pins.state_dir().display())));
}
