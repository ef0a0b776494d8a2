//! Calls set up over NG against a real relayd in network namespaces, with
//! real RTP-sized UDP both ways: the SDP points each side at the relay, the
//! receivers see the relay's addresses, media moves into the kernel once both
//! ends are confirmed, `query` reports it, `delete` frees everything.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, sdp_endpoint},
    require_root,
    topology::{
        assert_delivered, bind_udp, exchange, Topology, HOST_A, HOST_A6, HOST_B, HOST_B6, RELAY_A,
        RELAY_A6, RELAY_B, RELAY_B6,
    },
};

mod common;

use common::{
    answer, command, http_get, metric, offer, port_is_free, rtp_streams, s, wait_kernelized, Bed,
    RELAYCTL,
};

/// A [`Bed`] with relayd running on it.
struct Relay {
    bed: Bed,
    relayd: Option<ChildGuard>,
}

impl std::ops::Deref for Relay {
    type Target = Bed;
    fn deref(&self) -> &Bed {
        &self.bed
    }
}

impl Relay {
    fn start(tag: &str, extra: &[&str]) -> Relay {
        Self::on(Bed::new(tag), extra)
    }

    /// The same, with IPv6 on both links and relayd on the IPv6 addresses
    /// too (`a` and `b` each dual-stack).
    fn start_dual_stack(tag: &str) -> Relay {
        Self::on(Bed::dual_stack(tag), &[])
    }

    fn on(bed: Bed, extra: &[&str]) -> Relay {
        let relayd = Some(bed.relayd(extra));
        Relay { bed, relayd }
    }

    fn stop(self) {
        drop(self.stop_keep_topology());
    }

    /// Stops relayd for good (`relayctl stop`: a signal would leave its
    /// program for a next relayd), keeping the namespaces for checks
    /// afterwards.
    fn stop_keep_topology(mut self) -> Topology {
        common::stop_relayd(&self.bed.t.r, self.relayd.take().unwrap());
        self.bed.t
    }
}

/// Offer, answer, RTP both ways; returns the relay ports (A side, B side).
fn set_up_call(r: &Relay, call_id: &str) -> (SocketAddr, SocketAddr) {
    set_up_call_with(r, call_id, &[])
}

/// [`set_up_call`] with NG `flags` on the offer.
fn set_up_call_with(r: &Relay, call_id: &str, flags: &[&str]) -> (SocketAddr, SocketAddr) {
    let mut body = offer(call_id);
    if let (Value::Dict(d), false) = (&mut body, flags.is_empty()) {
        d.insert(b"flags".to_vec(), Value::str_list(flags.iter().copied()));
    }
    let o = r.ng.ok(&body).unwrap();
    let (addr, port) = sdp_endpoint(o.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    assert_eq!(
        addr, RELAY_B,
        "the offer sent to B points at the relay's B side"
    );
    let relay_b: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let a = r.ng.ok(&answer(call_id)).unwrap();
    let (addr, port) = sdp_endpoint(a.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
    assert_eq!(
        addr, RELAY_A,
        "the answer sent to A points at the relay's A side"
    );
    (format!("{addr}:{port}").parse().unwrap(), relay_b)
}

fn media_both_ways(
    r: &Relay,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    a: &UdpSocket,
    b: &UdpSocket,
    n: usize,
) {
    let got = exchange(a, &relay_a.to_string(), b, n).unwrap();
    assert_delivered(&got, n, &relay_b.to_string());
    let got = exchange(b, &relay_b.to_string(), a, n).unwrap();
    assert_delivered(&got, n, &relay_a.to_string());
    let _ = r;
}

#[test]
fn call_over_ng_moves_media_into_xdp() {
    require_root!();
    let r = Relay::start("ngx", &[]);
    assert_eq!(
        r.ng.request(&Value::dict([("command", s("ping"))]))
            .unwrap()
            .get("result"),
        Some(&s("pong"))
    );
    let (relay_a, relay_b) = set_up_call(&r, "call-xdp");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();

    // First packets: userspace (learning), which confirms both ends.
    media_both_ways(&r, relay_a, relay_b, &a, &b, 5);
    let q = wait_kernelized(&r.ng, "call-xdp");
    let before: Vec<i64> = rtp_streams(&q).iter().map(|s| s.2).collect();
    let stream_kernel_before: Vec<i64> = rtp_streams(&q).iter().map(|s| s.3).collect();
    let kernel_before = r.relayctl_json("counters")["forwarded_redirect"]["packets"]
        .as_u64()
        .unwrap();

    media_both_ways(&r, relay_a, relay_b, &a, &b, 20);
    let q = r.ng.ok(&command("query", "call-xdp")).unwrap();
    let streams = rtp_streams(&q);
    let after: Vec<i64> = streams.iter().map(|s| s.2).collect();
    assert_eq!(
        before, after,
        "no packet of a kernelized stream reached userspace"
    );
    for ((tag, _, _, kernel), earlier) in streams.iter().zip(&stream_kernel_before) {
        assert_eq!(kernel - earlier, 20, "kernel packets of {tag}'s stream");
    }
    let kernel_after = r.relayctl_json("counters")["forwarded_redirect"]["packets"]
        .as_u64()
        .unwrap();
    assert_eq!(kernel_after - kernel_before, 40);
    let totals = q
        .get("totals")
        .and_then(|t| t.get("RTP"))
        .and_then(|t| t.get("packets"))
        .and_then(Value::as_int);
    assert_eq!(totals, Some(50));
    let kernel_streams = r.relayctl_json("streams");
    let forwarding = kernel_streams
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["to_userspace"] == false)
        .count();
    assert_eq!(forwarding, 2, "{kernel_streams}");

    let listed = r.ng.ok(&Value::dict([("command", s("list"))])).unwrap();
    assert_eq!(listed.get("calls"), Some(&Value::str_list(["call-xdp"])));

    // DoS shield: an unused port of the media range is dropped in XDP.
    let shield_before = r.relayctl_json("counters")["dropped_no_stream"]["packets"]
        .as_u64()
        .unwrap();
    a.send_to(b"probe", format!("{RELAY_A}:30998")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let shield_after = r.relayctl_json("counters")["dropped_no_stream"]["packets"]
        .as_u64()
        .unwrap();
    assert_eq!(
        shield_after - shield_before,
        1,
        "stream-less packet in the media range dropped"
    );

    // relayctl sees the call through relayd's CLI socket.
    let out = r.relayctl_cli(&["calls", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls[0]["call_id"], "call-xdp");
    assert_eq!(calls[0]["rtp"]["packets"], 50);
    let table = String::from_utf8_lossy(&r.relayctl_cli(&["calls"]).stdout).into_owned();
    assert!(table.contains("call-xdp"), "{table}");
    let show = r.relayctl_cli(&["show", "call-xdp"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("tag \"tag-A\"") && text.contains("yes"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{HOST_A}:5000")),
        "learned endpoint shown: {text}"
    );
    assert_eq!(
        r.relayctl_cli(&["show", "no-such-call"]).status.code(),
        Some(3)
    );
    let mut del = command("delete", "call-xdp");
    if let Value::Dict(d) = &mut del {
        d.insert(b"delete-delay".to_vec(), Value::Int(0));
    }
    r.ng.ok(&del).unwrap();
    assert!(
        r.relayctl_json("streams").as_array().unwrap().is_empty(),
        "kernel entries removed"
    );
    let gone = r.ng.request(&command("query", "call-xdp")).unwrap();
    let empty: serde_json::Value =
        serde_json::from_slice(&r.relayctl_cli(&["--json", "calls"]).stdout).unwrap();
    assert_eq!(empty, serde_json::json!([]));
    assert_eq!(gone.get("error-reason"), Some(&s("Unknown call-id")));
    std::thread::sleep(Duration::from_millis(200)); // forwarder tasks close their sockets
    assert!(
        port_is_free(&r.t.r, relay_a) && port_is_free(&r.t.r, relay_b),
        "ports freed"
    );
    let t = r.stop_keep_topology();
    let stopped =
        t.r.command(RELAYCTL)
            .unwrap()
            .arg("calls")
            .output()
            .unwrap();
    assert_eq!(
        stopped.status.code(),
        Some(2),
        "relayctl exit code when relayd is gone"
    );
}

/// Media hijacking ("RTP bleed"): a stranger on A's network who learned
/// A's relay port sends RTP to it before A does and after the call is
/// confirmed. In the default learning mode the stranger never wins (A's
/// packets match its SDP endpoint exactly), never receives B's media, and
/// never redirects it; its packets reach B only without strict-source
/// (forwarded like any packet to that port, as rtpengine does), and with
/// strict-source they are dropped and counted. Both datapaths.
#[test]
fn a_stranger_neither_redirects_nor_receives_media() {
    require_root!();
    for (datapath, strict) in [
        ("xdp", false),
        ("xdp", true),
        ("userspace", false),
        ("userspace", true),
    ] {
        let tag = format!("hj{}{}", &datapath[..1], u8::from(strict));
        let r = Relay::start(&tag, &["--datapath", datapath]);
        r.t.a
            .ip(&["addr", "add", "10.20.1.66/24", "dev", "a0"])
            .unwrap();
        let flags: &[&str] = if strict { &["strict-source"] } else { &[] };
        let (relay_a, relay_b) = set_up_call_with(&r, "hijack", flags);
        let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
        let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
        let stranger = bind_udp(&r.t.a, "10.20.1.66:5000").unwrap();
        stranger
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let case = format!("{datapath}, strict-source {strict}");

        // During learning: the stranger sends first; A's own packets
        // (from its SDP endpoint) still win the latch.
        for _ in 0..3 {
            stranger.send_to(b"stranger first", relay_a).unwrap();
        }
        // Before a confirmation every packet is forwarded (early media):
        // what reached B of these is drained first.
        std::thread::sleep(Duration::from_millis(100));
        drain(&b);
        media_both_ways(&r, relay_a, relay_b, &a, &b, 5);
        let q = r.ng.ok(&command("query", "hijack")).unwrap();
        let text = format!("{q:?}");
        assert!(
            !text.contains("10.20.1.66"),
            "{case}: the stranger was never latched: {text}"
        );
        if datapath == "xdp" {
            wait_kernelized(&r.ng, "hijack");
        }
        let mut buf = [0u8; 2048];

        // Confirmed: the stranger sends again, then B's media flows.
        // The program's counters (userspace has no pinned maps).
        let strict_drops = || {
            r.relayctl_json("counters")["dropped_strict_source"]["packets"]
                .as_u64()
                .unwrap_or(0)
        };
        let dropped_before = if datapath == "xdp" { strict_drops() } else { 0 };
        for _ in 0..10 {
            stranger.send_to(b"injected", relay_a).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut injected = 0;
        while let Ok((_, from)) = b.recv_from(&mut buf) {
            assert_eq!(from, relay_b, "{case}: what B gets comes from the relay");
            injected += 1;
        }
        b.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        if strict {
            assert_eq!(
                injected, 0,
                "{case}: strict-source keeps the stranger's packets from B"
            );
            if datapath == "xdp" {
                let dropped = strict_drops();
                assert_eq!(
                    dropped - dropped_before,
                    10,
                    "{case}: dropped in XDP and counted"
                );
            }
        } else {
            assert_eq!(
                injected, 10,
                "{case}: without strict-source they are forwarded"
            );
        }
        // B's media still goes to A, and A's to B; none to the stranger.
        media_both_ways(&r, relay_a, relay_b, &a, &b, 10);
        assert!(
            stranger.recv_from(&mut buf).is_err(),
            "{case}: the stranger received nothing"
        );
        r.stop();
    }
}

/// Reads and drops what waits on `sock`.
fn drain(sock: &UdpSocket) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
}

/// A call between `host_a` and `host_b` (either family) with
/// `address-family` on the offer when given: the SDPs name the relay's
/// addresses `relay_b` (offer, to B) and `relay_a` (answer, to A), the first
/// packets are relayed in userspace, then RTP both ways goes through XDP
/// (redirect between a1 and b1) with no packet reaching userspace.
fn call_through_xdp(
    r: &Relay,
    call_id: &str,
    hosts: (&str, &str),
    address_family: Option<&str>,
    relays: (&str, &str),
) {
    call_through_xdp_via(r, call_id, ["a", "b"], hosts, address_family, relays);
}

/// [`call_through_xdp`] with `direction` on the offer.
fn call_through_xdp_via(
    r: &Relay,
    call_id: &str,
    direction: [&str; 2],
    (host_a, host_b): (&str, &str),
    address_family: Option<&str>,
    (relay_a, relay_b): (&str, &str),
) {
    let family = |addr: &str| if addr.contains(':') { "IP6" } else { "IP4" };
    let mut o = Value::dict([
        ("command", s("offer")),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
        ("sdp", s(&audio_sdp(host_a, 5000))),
        ("direction", Value::str_list(direction)),
        ("received-from", Value::str_list([family(host_a), host_a])),
    ]);
    if let (Value::Dict(d), Some(af)) = (&mut o, address_family) {
        d.insert(b"address-family".to_vec(), s(af));
    }
    let reply = r.ng.ok(&o).unwrap();
    let sdp = reply.get("sdp").and_then(Value::as_bytes).unwrap();
    let text = String::from_utf8_lossy(sdp).into_owned();
    assert!(
        text.contains(&format!("c=IN {} {relay_b}\r\n", family(relay_b))),
        "the offer sent to B points at {relay_b}: {text}"
    );
    let (_, port) = sdp_endpoint(sdp).unwrap();
    let to_b = std::net::SocketAddr::new(relay_b.parse().unwrap(), port);
    let a = Value::dict([
        ("command", s("answer")),
        ("call-id", s(call_id)),
        ("from-tag", s("tag-A")),
        ("to-tag", s("tag-B")),
        ("sdp", s(&audio_sdp(host_b, 40000))),
        ("received-from", Value::str_list([family(host_b), host_b])),
    ]);
    let reply = r.ng.ok(&a).unwrap();
    let sdp = reply.get("sdp").and_then(Value::as_bytes).unwrap();
    let text = String::from_utf8_lossy(sdp).into_owned();
    assert!(
        text.contains(&format!("c=IN {} {relay_a}\r\n", family(relay_a))),
        "the answer sent to A points at {relay_a}: {text}"
    );
    let (_, port) = sdp_endpoint(sdp).unwrap();
    let to_a = std::net::SocketAddr::new(relay_a.parse().unwrap(), port);
    let sock = |ns: &Netns, host: &str, port: u16| {
        bind_udp(
            ns,
            &std::net::SocketAddr::new(host.parse().unwrap(), port).to_string(),
        )
        .unwrap()
    };
    let sa = sock(&r.t.a, host_a, 5000);
    let sb = sock(&r.t.b, host_b, 40000);

    media_both_ways(r, to_a, to_b, &sa, &sb, 5);
    let q = wait_kernelized(&r.ng, call_id);
    let user_before: Vec<i64> = rtp_streams(&q).iter().map(|s| s.2).collect();
    let stream_kernel_before: Vec<i64> = rtp_streams(&q).iter().map(|s| s.3).collect();
    let redirected = |r: &Relay| {
        r.relayctl_json("counters")["forwarded_redirect"]["packets"]
            .as_u64()
            .unwrap()
    };
    let kernel_before = redirected(r);
    media_both_ways(r, to_a, to_b, &sa, &sb, 20);
    assert_eq!(redirected(r) - kernel_before, 40, "forwarded by XDP");
    let q = r.ng.ok(&command("query", call_id)).unwrap();
    let user_after: Vec<i64> = rtp_streams(&q).iter().map(|s| s.2).collect();
    assert_eq!(user_before, user_after, "nothing more reached userspace");
    for ((tag, _, _, kernel), earlier) in rtp_streams(&q).iter().zip(&stream_kernel_before) {
        assert_eq!(kernel - earlier, 20, "kernel packets of {tag}'s stream");
    }
}

#[test]
fn ipv6_call_over_ng_moves_media_into_xdp() {
    require_root!();
    let r = Relay::start_dual_stack("ng6");
    call_through_xdp(
        &r,
        "call-v6",
        (HOST_A6, HOST_B6),
        None,
        (RELAY_A6, RELAY_B6),
    );
    r.stop();
}

#[test]
fn bridged_call_ipv4_caller_ipv6_callee_through_xdp() {
    require_root!();
    let r = Relay::start_dual_stack("ngbr");
    call_through_xdp(
        &r,
        "call-bridged",
        (HOST_A, HOST_B6),
        Some("IP6"),
        (RELAY_A, RELAY_B6),
    );
    r.stop();
}

/// rtpengine's interfaces: a second address of `a` (unused: the first of a
/// family carries media), round-robin group `rr` (`rr:1`, `rr:2`) whose
/// members take turns call after call, and alias `far` for `b`; media of
/// each call goes through XDP on the address its SDP named.
#[test]
fn round_robin_and_alias_interfaces_carry_media_through_xdp() {
    require_root!();
    let bed = Bed::new("ng-rr");
    for (addr, dev) in [
        ("10.20.1.11/24", "a1"),
        ("10.20.2.11/24", "b1"),
        ("10.20.2.12/24", "b1"),
    ] {
        bed.t.r.ip(&["addr", "add", addr, "dev", dev]).unwrap();
    }
    let r = Relay::on(
        bed,
        &[
            "-i",
            "a/10.20.1.11",
            "-i",
            "rr:1/10.20.2.11",
            "-i",
            "rr:2/10.20.2.12",
            "-i",
            "far=b",
        ],
    );
    let hosts = (HOST_A, HOST_B);
    for (i, b_side) in ["10.20.2.11", "10.20.2.12", "10.20.2.11"]
        .into_iter()
        .enumerate()
    {
        let call_id = format!("rr-{i}");
        call_through_xdp_via(&r, &call_id, ["a", "rr"], hosts, None, (RELAY_A, b_side));
        r.ng.ok(&command("delete", &call_id)).unwrap();
    }
    call_through_xdp_via(&r, "alias", ["a", "far"], hosts, None, (RELAY_A, RELAY_B));
    r.stop();
}

#[test]
fn call_over_ng_in_userspace_mode() {
    require_root!();
    let r = Relay::start("ngu", &["--datapath", "userspace"]);
    let (relay_a, relay_b) = set_up_call(&r, "call-user");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    media_both_ways(&r, relay_a, relay_b, &a, &b, 25);
    let q = r.ng.ok(&command("query", "call-user")).unwrap();
    for (tag, flags, user, kernel) in rtp_streams(&q) {
        assert_eq!((user, kernel), (25, 0), "{tag}");
        assert!(flags.iter().any(|f| f == "confirmed") && !flags.iter().any(|f| f == "kernelized"));
    }
    burst_arrives_datagram_by_datagram(&a, relay_a, &b, relay_b);
    r.ng.ok(&command("delete", "call-user")).unwrap();
    r.stop();
}

/// A burst of RTP-sized datagrams sent back to back queues up on the relay
/// port, so the forwarder relays it in batches and sends equal-size runs as
/// GSO messages: each must still arrive as the datagram it was, in order
/// and from the relay.
fn burst_arrives_datagram_by_datagram(
    a: &UdpSocket,
    relay_a: SocketAddr,
    b: &UdpSocket,
    relay_b: SocketAddr,
) {
    const BURST: usize = 64;
    let payloads: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            let mut p = format!("burst {i:04} ").into_bytes();
            // G.711's 172 bytes, with a shorter one in the middle and at the end.
            let len = if i == 30 || i == BURST - 1 { 100 } else { 172 };
            p.resize(len, b'x');
            p
        })
        .collect();
    for p in &payloads {
        a.send_to(p, relay_a).unwrap();
    }
    let mut buf = [0u8; 2048];
    for (i, sent) in payloads.iter().enumerate() {
        let (n, src) = b
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("burst datagram {i}: {e}"));
        assert_eq!(src, relay_b, "burst datagram {i} source");
        assert_eq!(&buf[..n], &sent[..], "burst datagram {i}");
    }
}

/// loop-protect: the relay marks the SDP it writes, and an SDP carrying
/// its own mark (the proxy looped the call back through it) comes back
/// untouched, with no call set up for it.
#[test]
fn loop_protect_passes_its_own_sdp_through() {
    require_root!();
    let r = Relay::start("ngl", &["--datapath", "userspace"]);
    let with_flag = |mut body: Value| {
        if let Value::Dict(d) = &mut body {
            d.insert(b"flags".to_vec(), Value::str_list(["loop-protect"]));
        }
        body
    };
    let first = r.ng.ok(&with_flag(offer("loop-1"))).unwrap();
    let marked = first.get("sdp").and_then(Value::as_bytes).unwrap().to_vec();
    let text = String::from_utf8_lossy(&marked);
    assert!(text.contains("\r\na=rtpengine:"), "{text}");
    // The marked SDP offered again (a loop) on another call.
    let mut looped = with_flag(offer("loop-2"));
    if let Value::Dict(d) = &mut looped {
        d.insert(b"sdp".to_vec(), Value::Bytes(marked.clone()));
    }
    let again = r.ng.ok(&looped).unwrap();
    assert_eq!(
        again.get("sdp").and_then(Value::as_bytes),
        Some(marked.as_slice()),
        "passed through byte for byte"
    );
    let listed = r.ng.ok(&Value::dict([("command", s("list"))])).unwrap();
    assert_eq!(
        listed.get("calls"),
        Some(&Value::str_list(["loop-1"])),
        "no call for the looped offer"
    );
    r.stop();
}

#[test]
fn malformed_requests_get_errors_and_the_daemon_keeps_serving() {
    require_root!();
    let r = Relay::start("ngm", &["--datapath", "userspace"]);
    let reason = |reply: Value| {
        reply
            .get("error-reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // A datagram without cookie cannot be answered.
    assert!(
        r.ng.raw(b"garbage-without-space").is_err(),
        "no reply expected"
    );
    let raw = r.ng.raw(b"c1 xyz").unwrap();
    assert!(
        raw.starts_with(b"c1 d") && raw.windows(5).any(|w| w == b"error"),
        "{raw:?}"
    );
    let raw = r.ng.raw(b"c2 d7:command").unwrap();
    assert!(raw.starts_with(b"c2 "), "truncated bencode still answered");
    let unknown = Value::dict([("command", s("frobnicate"))]);
    assert_eq!(
        reason(r.ng.request(&unknown).unwrap()).as_deref(),
        Some("Unrecognized command")
    );
    let mut no_sdp = offer("m1");
    if let Value::Dict(d) = &mut no_sdp {
        d.remove(b"sdp".as_slice());
    }
    assert_eq!(
        reason(r.ng.request(&no_sdp).unwrap()).as_deref(),
        Some("No SDP body in message")
    );
    let mut no_to_tag = answer("m1");
    if let Value::Dict(d) = &mut no_to_tag {
        d.remove(b"to-tag".as_slice());
    }
    assert_eq!(
        reason(r.ng.request(&no_to_tag).unwrap()).as_deref(),
        Some("No to-tag in message")
    );
    // Deleting an unknown call is routine for a proxy (a retransmitted
    // BYE): ok with a warning, as rtpengine; an error with `fatal`.
    let unknown = r.ng.request(&command("delete", "nope")).unwrap();
    assert_eq!(unknown.get("result"), Some(&s("ok")));
    assert_eq!(
        unknown.get("warning"),
        Some(&s("Call-ID not found or tags didn't match"))
    );
    let mut fatal = command("delete", "nope");
    if let Value::Dict(d) = &mut fatal {
        d.insert(b"flags".to_vec(), Value::List(vec![s("fatal")]));
    }
    assert_eq!(
        reason(r.ng.request(&fatal).unwrap()).as_deref(),
        Some("Call-ID not found or tags didn't match")
    );
    let mut bad_sdp = offer("m2");
    if let Value::Dict(d) = &mut bad_sdp {
        d.insert(b"sdp".to_vec(), s("this is not SDP"));
    }
    let e = reason(r.ng.request(&bad_sdp).unwrap()).unwrap();
    assert!(e.starts_with("Failed to parse SDP"), "{e}");
    let mut bad_dir = offer("m3");
    if let Value::Dict(d) = &mut bad_dir {
        d.insert(b"direction".to_vec(), Value::str_list(["a", "nowhere"]));
    }
    // An unknown interface falls back to the default one (rtpengine's
    // behaviour): the offer succeeds.
    r.ng.ok(&bad_dir).unwrap();
    let mut delete_now = command("delete", "m3");
    if let Value::Dict(d) = &mut delete_now {
        d.insert(b"delete-delay".to_vec(), Value::Int(0));
    }
    r.ng.ok(&delete_now).unwrap();
    assert_eq!(
        r.ng.ok(&Value::dict([("command", s("list"))]))
            .unwrap()
            .get("calls"),
        Some(&Value::list([]))
    );

    // A retransmitted cookie gets the same reply and creates nothing new.
    let first = r.ng.request_with_cookie("retrans-1", &offer("rt")).unwrap();
    let again = r.ng.request_with_cookie("retrans-1", &offer("rt")).unwrap();
    assert_eq!(first, again);
    let q = r.ng.ok(&command("query", "rt")).unwrap();
    assert_eq!(
        q.get("tags").and_then(Value::as_dict).map(|t| t.len()),
        Some(2)
    );

    // Unknown keys are warnings, not errors.
    let mut extra = offer("w1");
    if let Value::Dict(d) = &mut extra {
        d.insert(b"x-vendor-key".to_vec(), s("1"));
    }
    let w = r.ng.request(&extra).unwrap();
    assert_eq!(w.get("result"), Some(&s("ok")));
    assert!(w.get("warning").is_some(), "{w:?}");
    assert_eq!(
        r.ng.request(&Value::dict([("command", s("ping"))]))
            .unwrap()
            .get("result"),
        Some(&s("pong"))
    );
    r.stop();
}

#[test]
fn a_thousand_call_cycles_leave_nothing_behind() {
    require_root!();
    let r = Relay::start("ngc", &[]);
    for i in 0..1000 {
        let id = format!("cycle-{i}");
        r.ng.ok(&offer(&id)).unwrap();
        r.ng.ok(&answer(&id)).unwrap();
        let mut del = command("delete", &id);
        if let Value::Dict(d) = &mut del {
            d.insert(b"delete-delay".to_vec(), Value::Int(0));
        }
        r.ng.ok(&del).unwrap();
    }
    assert_eq!(
        r.ng.ok(&Value::dict([("command", s("list"))]))
            .unwrap()
            .get("calls"),
        Some(&Value::list([]))
    );
    assert!(
        r.relayctl_json("streams").as_array().unwrap().is_empty(),
        "no kernel entries"
    );
    // No media port (30000-30999) is still bound in the relay namespace.
    std::thread::sleep(Duration::from_millis(300));
    let ports = r.t.r.udp_ports().unwrap();
    let media_ports = ports
        .iter()
        .filter(|p| (30000..=30999).contains(*p))
        .count();
    assert!(!ports.is_empty(), "the NG socket should be listed");
    assert_eq!(
        media_ports, 0,
        "media sockets left in the relay namespace: {ports:?}"
    );
    r.stop();
}

#[test]
fn rtpengine_ng_client_drives_relayd() {
    require_root!();
    if Command::new("rtpengine-ng-client")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("rtpengine-ng-client missing: apt-get install rtpengine-utils (cargo xtask test installs it)");
    }
    let r = Relay::start("ngr", &["--datapath", "userspace"]);
    let sdp_file = std::env::temp_dir().join(format!("xrelay-ngc-{}.sdp", std::process::id()));
    std::fs::write(&sdp_file, audio_sdp(HOST_A, 5000)).unwrap();
    let run_any = |args: &[&str]| {
        let out =
            r.t.r
                .command("rtpengine-ng-client")
                .unwrap()
                .args(["--proxy-address", "127.0.0.1", "--proxy-port", "2223"])
                .args(args)
                .output()
                .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let run = |args: &[&str]| {
        let (ok, text) = run_any(args);
        assert!(ok, "rtpengine-ng-client {args:?}: {text}");
        text
    };
    let out = run(&["ping"]);
    assert!(out.contains("pong"), "{out}");
    let sdp_arg = sdp_file.to_str().unwrap();
    let out = run(&[
        "--call-id",
        "ngc-1",
        "--from-tag",
        "tag-A",
        "--sdp-file",
        sdp_arg,
        "--direction",
        "a,b",
        "offer",
    ]);
    assert!(
        out.contains("New SDP") && out.contains(&format!("c=IN IP4 {RELAY_B}")),
        "{out}"
    );
    let out = run(&["--call-id", "ngc-1", "--from-tag", "tag-A", "query"]);
    assert!(
        out.contains("Result dictionary") && out.contains("'tag-A' => {"),
        "{out}"
    );
    let out = run(&[
        "--call-id",
        "ngc-1",
        "--from-tag",
        "tag-A",
        "--delete-delay",
        "0",
        "delete",
    ]);
    assert!(
        out.contains("Result dictionary") && !out.contains("error-reason"),
        "{out}"
    );
    let (_, out) = run_any(&["--call-id", "ngc-1", "--from-tag", "tag-A", "query"]);
    assert!(out.contains("Unknown call-id"), "{out}");
    let _ = std::fs::remove_file(&sdp_file);
    r.stop();
}

#[test]
fn session_limit_answers_load_limit() {
    require_root!();
    let r = Relay::start("ngl", &["--datapath", "userspace", "--max-sessions", "2"]);
    r.ng.ok(&offer("l1")).unwrap();
    r.ng.ok(&offer("l2")).unwrap();
    let refused = r.ng.request(&offer("l3")).unwrap();
    assert_eq!(refused.get("result"), Some(&s("load limit")), "{refused:?}");
    let mut old_client = offer("l3");
    if let Value::Dict(d) = &mut old_client {
        d.remove(b"supports".as_slice());
    }
    let refused = r.ng.request(&old_client).unwrap();
    assert_eq!(
        refused.get("error-reason"),
        Some(&s("Parallel session limit reached"))
    );
    // A re-INVITE of an existing call is not a new session.
    r.ng.ok(&offer("l1")).unwrap();
    let mut del = command("delete", "l1");
    if let Value::Dict(d) = &mut del {
        d.insert(b"delete-delay".to_vec(), Value::Int(0));
    }
    r.ng.ok(&del).unwrap();
    r.ng.ok(&offer("l3")).unwrap();
    r.stop();
}

#[test]
fn metrics_match_relayctl_totals_and_ng_statistics() {
    require_root!();
    let r = Relay::start("ngs", &["--listen-http", "127.0.0.1:9100"]);
    let (relay_a, relay_b) = set_up_call(&r, "call-metrics");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    media_both_ways(&r, relay_a, relay_b, &a, &b, 5);
    wait_kernelized(&r.ng, "call-metrics");
    media_both_ways(&r, relay_a, relay_b, &a, &b, 10);
    let _ = r.ng.request(&command("query", "no-such-call")).unwrap();

    assert!(http_get(&r.t.r, "127.0.0.1:9100", "/ping").ends_with("pong\n"));
    let scrape = http_get(&r.t.r, "127.0.0.1:9100", "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    let out = r.relayctl_cli(&["--json", "totals"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &serde_json::Value| v.as_u64().unwrap() as f64;

    assert_eq!(metric(&scrape, "xrelay_sessions"), 1.0);
    assert_eq!(num(&totals["sessions"]), 1.0);
    assert_eq!(
        metric(&scrape, "xrelay_sessions_created_total"),
        num(&totals["sessions_total"])
    );
    assert_eq!(metric(&scrape, "xrelay_ports_in_use{interface=\"a\"}"), 1.0);
    let kernel = metric(&scrape, "xrelay_forwarded_packets_total{path=\"kernel\"}");
    let user = metric(
        &scrape,
        "xrelay_forwarded_packets_total{path=\"userspace\"}",
    );
    assert_eq!(
        (kernel, user),
        (
            num(&totals["kernel"]["packets"]),
            num(&totals["userspace"]["packets"])
        )
    );
    assert!(
        kernel >= 20.0 && user >= 2.0,
        "kernel {kernel}, userspace {user}"
    );
    assert_eq!(
        kernel + user,
        30.0,
        "every packet counted once, on one path"
    );
    assert_eq!(
        metric(
            &scrape,
            "xrelay_ng_requests_total{command=\"offer\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &scrape,
            "xrelay_ng_requests_total{command=\"query\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(num(&totals["ng"]["query"]["errors"]), 1.0);
    // The histogram is cumulative and ends at +Inf == _count (one offer).
    let offer_buckets: Vec<(String, f64)> = scrape
        .lines()
        .filter(|l| {
            l.starts_with("xrelay_ng_request_duration_seconds_bucket")
                && l.contains("command=\"offer\"")
        })
        .filter_map(|l| Some((l.to_owned(), l.split_whitespace().nth(1)?.parse().ok()?)))
        .collect();
    assert!(
        offer_buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{offer_buckets:?}"
    );
    let last = offer_buckets.last().unwrap();
    assert!(
        last.0.contains("le=\"+Inf\"") && last.1 == 1.0,
        "{offer_buckets:?}"
    );
    let text = String::from_utf8_lossy(&r.relayctl_cli(&["totals"]).stdout).into_owned();
    assert!(
        text.contains("sessions: 1 now") && text.contains("offer"),
        "{text}"
    );

    let stats =
        r.ng.ok(&Value::dict([("command", s("statistics"))]))
            .unwrap();
    let managed = stats
        .get("totalstatistics")
        .and_then(|t| t.get("managedsessions"))
        .and_then(Value::as_int);
    assert_eq!(managed, Some(1));
    r.stop();
}

/// A call whose media runs only in XDP outlives --timeout while media
/// flows (activity comes from the kernel's last-seen times), and is
/// deleted within timeout + 2 s once it stops.
#[test]
fn xdp_only_media_keeps_the_call_alive_until_it_stops() {
    require_root!();
    let r = Relay::start("ngt", &["--timeout", "3", "--delete-delay", "0"]);
    let (relay_a, relay_b) = set_up_call(&r, "call-timeout");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    media_both_ways(&r, relay_a, relay_b, &a, &b, 3);
    let q = wait_kernelized(&r.ng, "call-timeout");
    let user_before: Vec<i64> = rtp_streams(&q).iter().map(|s| s.2).collect();

    // 6 s of 50 packet/s media, twice the timeout.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        a.send_to(b"rtp from A", relay_a).unwrap();
        b.send_to(b"rtp from B", relay_b).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let q =
        r.ng.ok(&command("query", "call-timeout"))
            .expect("call alive while XDP media flows");
    let user_after: Vec<i64> = rtp_streams(&q).iter().map(|s| s.2).collect();
    assert_eq!(user_before, user_after, "the media really ran in XDP only");

    let stopped = Instant::now();
    loop {
        let q = r.ng.request(&command("query", "call-timeout")).unwrap();
        if q.get("result") != Some(&s("ok")) {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "call not deleted within timeout + 2 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "deleted before the timeout: {:?}",
        stopped.elapsed()
    );
    assert!(
        r.relayctl_json("streams").as_array().unwrap().is_empty(),
        "kernel entries removed on timeout"
    );
    r.stop();
}

/// Kills a tmux session on drop.
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn relayctl_top_shows_the_call_and_quits_on_q() {
    require_root!();
    let r = Relay::start("ngtop", &[]);
    let (relay_a, relay_b) = set_up_call(&r, "call-top");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    media_both_ways(&r, relay_a, relay_b, &a, &b, 5);

    let session = TmuxSession(format!("xrelay-top-{}", std::process::id()));
    let top = format!("nsenter --net=/run/netns/{} {RELAYCTL} top", r.t.r.name());
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "120",
            "-y",
            "30",
            &top,
        ])
        .status()
        .expect("tmux runs (apt-get install tmux)");
    assert!(started.success());
    let capture = || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut screen = capture();
    while !(screen.contains("xrelay top") && screen.contains("call-top")) {
        assert!(
            Instant::now() < deadline,
            "relayctl top never showed the call:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
        screen = capture();
    }
    assert!(
        screen.contains("1 calls") && screen.contains("pkt/s"),
        "{screen}"
    );
    Command::new("tmux")
        .args(["send-keys", "-t", &session.0, "q"])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Command::new("tmux")
        .args(["has-session", "-t", &session.0])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "relayctl top did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
    r.stop();
}

/// Plays `seqs` 20 ms apart (plus `delay_ms(i)` for packet i) from `socket`
/// to `to`; returns the packets with the CLOCK_MONOTONIC time each left.
fn play_rtp(
    socket: &UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    seqs: &[(u16, u64)],
) -> Vec<(Vec<u8>, u64)> {
    let start = Instant::now();
    let mut sent = Vec::with_capacity(seqs.len());
    for (i, &(seq, delay_ms)) in seqs.iter().enumerate() {
        let due = start + Duration::from_millis(20 * i as u64 + delay_ms);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let packet = relay_tests::packet::g711_packet(seq, ssrc);
        socket.send_to(&packet, to).unwrap();
        sent.push((packet, relay_userspace::calls::kernel::monotonic_ns()));
    }
    sent
}

/// The figures relay_common's model gives for `sent`, arriving as sent.
fn model_of(sent: &[(Vec<u8>, u64)]) -> relay_common::RtpStats {
    let mut m = relay_common::RtpStats::default();
    for (packet, at) in sent {
        relay_common::rtp::observe(&mut m, packet, relay_common::TF_RTP, 8000, *at);
    }
    m
}

/// The `SSRC` entry of `ssrc` in a query reply.
fn ssrc_entry(q: &Value, ssrc: u32) -> Value {
    q.get("SSRC")
        .and_then(|d| d.get(&ssrc.to_string()))
        .unwrap_or_else(|| panic!("no SSRC {ssrc} in {q:?}"))
        .clone()
}

#[test]
fn rtp_loss_and_jitter_are_reported_as_played() {
    require_root!();
    let r = Relay::start("ngq", &["--listen-http", "127.0.0.1:9100"]);
    let (relay_a, relay_b) = set_up_call(&r, "call-rtp");
    let a = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    const SSRC_A: u32 = 0x0a0a_0001;
    const SSRC_B: u32 = 0x0b0b_0002;

    // A's schedule: 200 packets from sequence 1000; 5 never sent (a burst of
    // 3 and two singles), every tenth sent 15 ms late. B plays steadily.
    let skipped = [1040u16, 1041, 1042, 1090, 1150];
    let schedule_a: Vec<(u16, u64)> = (0..200u16)
        .map(|i| (1000 + i, if i % 10 == 5 { 15 } else { 0 }))
        .filter(|(seq, _)| !skipped.contains(seq))
        .collect();
    let schedule_b: Vec<(u16, u64)> = (0..200u16).map(|i| (7000 + i, 0)).collect();
    // The first packets go through relayd (learning), the rest through XDP
    // once both ends are confirmed: the figures must span both.
    let (sent_a, sent_b) = std::thread::scope(|s| {
        let pa = s.spawn(|| play_rtp(&a, relay_a, SSRC_A, &schedule_a));
        let pb = s.spawn(|| play_rtp(&b, relay_b, SSRC_B, &schedule_b));
        (pa.join().unwrap(), pb.join().unwrap())
    });
    std::thread::sleep(Duration::from_millis(200));

    let q = wait_kernelized(&r.ng, "call-rtp");
    let streams = rtp_streams(&q);
    assert!(
        streams
            .iter()
            .all(|(_, _, user, kernel)| *user > 0 && *kernel > 0),
        "both paths carried media: {streams:?}"
    );
    let mut jitters_us = Vec::new();
    for (ssrc, sent, lost) in [(SSRC_A, &sent_a, 5i64), (SSRC_B, &sent_b, 0)] {
        let e = ssrc_entry(&q, ssrc);
        let int = |k: &str| e.get(k).and_then(Value::as_int).unwrap();
        let model = model_of(sent);
        assert_eq!(int("packets"), sent.len() as i64, "{ssrc:#x} packets");
        assert_eq!(int("cumulative loss"), lost, "{ssrc:#x} loss");
        assert_eq!(
            int("last RTP seq"),
            i64::from(relay_common::rtp::extended_max_seq(&model)),
            "{ssrc:#x} highest sequence number"
        );
        // Arrival is send time plus the veth hop and scheduling noise: the
        // relay's jitter must match the sender's schedule within 1.5 ms
        // (a wrong unit or clock would be off by far more).
        let want_us = relay_common::rtp::jitter_us(&model, 8000).unwrap() as i64;
        let got_us = int("jitter us");
        jitters_us.push(got_us);
        eprintln!("{ssrc:#x}: jitter {got_us} us at the relay, {want_us} us by the schedule");
        assert!(
            (got_us - want_us).abs() <= 1500,
            "{ssrc:#x} jitter {got_us} us, schedule says {want_us} us"
        );
        if ssrc == SSRC_A {
            assert!(want_us > 2000, "A's schedule is jittery ({want_us} us)");
        }
    }

    // Metrics: both streams, A's 5 lost packets (2.5 % of 200), and each
    // stream's jitter (as query reported it) in the right buckets.
    let scrape = http_get(&r.t.r, "127.0.0.1:9100", "/metrics");
    let at_most = |bound_us: i64| jitters_us.iter().filter(|&&j| j <= bound_us).count() as f64;
    for (series, want) in [
        ("xrelay_rtp_streams", 2.0),
        ("xrelay_rtp_packets_lost", 5.0),
        ("xrelay_rtp_streams_by_loss{le=\"0\"}", 1.0),
        ("xrelay_rtp_streams_by_loss{le=\"0.02\"}", 1.0),
        ("xrelay_rtp_streams_by_loss{le=\"0.05\"}", 2.0),
        ("xrelay_rtp_streams_by_jitter{le=\"0.001\"}", at_most(1000)),
        ("xrelay_rtp_streams_by_jitter{le=\"0.005\"}", at_most(5000)),
        ("xrelay_rtp_streams_by_jitter{le=\"0.2\"}", 2.0),
    ] {
        assert_eq!(metric(&scrape, series), want, "{series}");
    }

    // relayctl totals sums them over the live calls.
    let out = r.relayctl_cli(&["totals"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rtp (live calls): 2 streams") && text.contains(" 5 lost,"),
        "relayctl totals: {text}"
    );

    // relayctl show prints the same figures.
    let out = r.relayctl_cli(&["show", "call-rtp"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("SSRC {SSRC_A:#010x} PT 0"))
            && text.contains(&format!("rtp {}  lost 5 ", sent_a.len())),
        "relayctl show: {text}"
    );
    r.stop();
}

#[test]
fn a_call_with_every_fork_it_may_have_still_gets_its_replies() {
    require_root!();
    let r = Relay::start("ngbig", &["--datapath", "userspace"]);
    let fork = |n: usize| {
        Value::dict([
            ("command", s("offer")),
            ("call-id", s("c-forks")),
            ("from-tag", Value::str(&format!("fork-tag-{n:03}"))),
            ("sdp", s(&audio_sdp(HOST_A, 5000))),
            ("direction", Value::str_list(["a", "b"])),
        ])
    };
    // Offers from ever new tags fill the call up to its limit of parties
    // (each offer a party and its branch); the next is refused, clearly.
    let mut n = 0;
    let refusal = loop {
        let reply = r.ng.request(&fork(n)).unwrap();
        if reply.get("result") != Some(&s("ok")) {
            break reply;
        }
        n += 1;
        assert!(n <= 1000, "forks are never refused");
    };
    assert_eq!(n, 64);
    let reason = refusal.get("error-reason").and_then(Value::as_str).unwrap();
    assert!(reason.contains("Too many parties"), "{reason}");
    // The query and delete replies of such a call are over 64 KiB in full:
    // they arrive, summarised, and say so.
    for command in ["query", "delete"] {
        let mut fields = vec![
            ("command", s(command)),
            ("call-id", s("c-forks")),
            ("from-tag", s("fork-tag-000")),
        ];
        if command == "delete" {
            fields.push(("delete-delay", Value::Int(0)));
        }
        let body = Value::dict(fields);
        let reply = r.ng.ok(&body).unwrap();
        assert!(reply.get("truncated").is_some(), "{command}: {reply:?}");
        assert_eq!(
            reply.get("tags").and_then(Value::as_dict).map(|t| t.len()),
            Some(64 * 2),
            "{command}: every party listed (each unanswered branch as `<untagged N>`)"
        );
    }
    r.stop();
}

/// Serial forking as Kamailio drives it (an offer per branch, with its
/// via-branch): each branch gets relay ports of its own, early media of
/// branch a reaches the caller, the final answer of branch b (another
/// to-tag) gives the caller a port set of its own towards b and media then
/// flows between the caller and b, through XDP. Deleting the call frees
/// every branch's ports and kernel entries.
#[test]
fn each_fork_branch_has_its_own_ports_and_the_final_answer_takes_the_media() {
    require_root!();
    let r = Relay::start("ngfork", &[]);
    let call_id = "call-fork";
    let with = |body: Value, extra: &[(&str, Value)]| {
        let Value::Dict(mut d) = body else {
            unreachable!()
        };
        for (k, v) in extra {
            d.insert(k.as_bytes().to_vec(), v.clone());
        }
        Value::Dict(d)
    };
    let endpoint = |reply: &Value| -> SocketAddr {
        let (addr, port) =
            sdp_endpoint(reply.get("sdp").and_then(Value::as_bytes).unwrap()).unwrap();
        format!("{addr}:{port}").parse().unwrap()
    };
    let offer_to = |branch: &str| {
        endpoint(
            &r.ng
                .ok(&with(offer(call_id), &[("via-branch", s(branch))]))
                .unwrap(),
        )
    };
    let answer_from = |branch: &str, tag: &str, port: u16| {
        endpoint(
            &r.ng
                .ok(&with(
                    answer(call_id),
                    &[
                        ("via-branch", s(branch)),
                        ("to-tag", s(tag)),
                        ("sdp", s(&audio_sdp(HOST_B, port))),
                    ],
                ))
                .unwrap(),
        )
    };
    let relay_b1 = offer_to("z9hG4bK-a");
    let relay_b2 = offer_to("z9hG4bK-b");
    assert_ne!(
        relay_b1, relay_b2,
        "each branch has a relay port of its own"
    );

    let caller = bind_udp(&r.t.a, &format!("{HOST_A}:5000")).unwrap();
    let branch_a = bind_udp(&r.t.b, &format!("{HOST_B}:40000")).unwrap();
    let branch_b = bind_udp(&r.t.b, &format!("{HOST_B}:40100")).unwrap();

    // Early media (183) from branch a.
    let relay_a1 = answer_from("z9hG4bK-a", "branch-a", 40000);
    media_both_ways(&r, relay_a1, relay_b1, &caller, &branch_a, 5);

    // The final answer (200) from branch b: new caller-side ports.
    let relay_a2 = answer_from("z9hG4bK-b", "branch-b", 40100);
    assert_ne!(
        relay_a2, relay_a1,
        "the caller gets ports of its own towards b"
    );
    media_both_ways(&r, relay_a2, relay_b2, &caller, &branch_b, 5);
    let q = wait_kernelized(&r.ng, call_id);
    let tags: Vec<String> = rtp_streams(&q).into_iter().map(|s| s.0).collect();
    assert_eq!(tags, ["branch-a", "branch-b", "tag-A"], "{q:?}");
    let kernel_before = r.relayctl_json("counters")["forwarded_redirect"]["packets"]
        .as_u64()
        .unwrap();
    media_both_ways(&r, relay_a2, relay_b2, &caller, &branch_b, 20);
    let kernel_after = r.relayctl_json("counters")["forwarded_redirect"]["packets"]
        .as_u64()
        .unwrap();
    assert_eq!(kernel_after - kernel_before, 40, "caller and b through XDP");
    // Nothing of it went to branch a.
    branch_a
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(branch_a.recv_from(&mut [0u8; 2048]).is_err());

    let mut del = command("delete", call_id);
    if let Value::Dict(d) = &mut del {
        d.insert(b"delete-delay".to_vec(), Value::Int(0));
    }
    r.ng.ok(&del).unwrap();
    assert!(
        r.relayctl_json("streams").as_array().unwrap().is_empty(),
        "kernel entries removed"
    );
    std::thread::sleep(Duration::from_millis(200)); // forwarder tasks close their sockets
    for port in [relay_a1, relay_a2, relay_b1, relay_b2] {
        assert!(port_is_free(&r.t.r, port), "{port} freed");
    }
    let totals: serde_json::Value =
        serde_json::from_slice(&r.relayctl_cli(&["--json", "totals"]).stdout).unwrap();
    let ports = totals["ports"].as_array().unwrap();
    assert!(
        ports.iter().all(|p| p["used"] == 0),
        "no port pair held: {totals}"
    );
    r.stop();
}
