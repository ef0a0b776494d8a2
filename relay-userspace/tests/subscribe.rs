//! Media forking over NG against a real relayd in network namespaces:
//! `subscribe request`/`subscribe answer` mid-call give a third party a
//! copy of one party's RTP while the call's own media keeps flowing,
//! `unsubscribe` stops the copies and frees the ports (and the stream goes
//! back into XDP), `delete` frees a subscriber too, and a `publish`er's
//! media reaches its subscriber.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use relay_ng::Value;
use relay_tests::{
    ng_client::{audio_sdp, sdp_endpoint},
    require_root,
    topology::{assert_delivered, bind_udp, exchange, HOST_A, HOST_B},
};

mod common;

use common::{answer, command, offer, port_is_free, rtp_streams, s, wait_kernelized, Bed};

fn endpoint(reply: &Value) -> SocketAddr {
    let sdp = reply.get("sdp").and_then(Value::as_bytes).expect("an SDP");
    let (addr, port) = sdp_endpoint(sdp).unwrap();
    format!("{addr}:{port}").parse().unwrap()
}

fn with(body: Value, extra: &[(&str, Value)]) -> Value {
    let Value::Dict(mut d) = body else {
        unreachable!()
    };
    for (k, v) in extra {
        d.insert(k.as_bytes().to_vec(), v.clone());
    }
    Value::Dict(d)
}

/// The subscriber's SDP answer: it receives only.
fn recvonly_sdp(host: &str, port: u16) -> String {
    audio_sdp(host, port).replace("a=sendrecv", "a=recvonly")
}

/// `subscribe request` for `from_tag` then `subscribe answer` from a
/// subscriber at `host:port`; returns (subscriber's relay port, to-tag).
fn subscribe(
    bed: &Bed,
    call_id: &str,
    from_tag: &str,
    host: &str,
    port: u16,
) -> (SocketAddr, String) {
    let req = Value::dict([
        ("command", s("subscribe request")),
        ("call-id", s(call_id)),
        ("from-tag", s(from_tag)),
    ]);
    let reply = bed.ng.ok(&req).unwrap();
    let sdp =
        String::from_utf8_lossy(reply.get("sdp").and_then(Value::as_bytes).unwrap()).into_owned();
    assert!(
        sdp.contains("a=sendonly"),
        "the offer to a subscriber is sendonly: {sdp}"
    );
    assert_eq!(reply.get("from-tag"), Some(&s(from_tag)));
    let to_tag = reply
        .get("to-tag")
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let ans = Value::dict([
        ("command", s("subscribe answer")),
        ("call-id", s(call_id)),
        ("to-tag", s(&to_tag)),
        ("sdp", s(&recvonly_sdp(host, port))),
    ]);
    bed.ng.ok(&ans).unwrap();
    (endpoint(&reply), to_tag)
}

/// Reads `count` datagrams and checks them as [`assert_delivered`] does.
fn receive(sock: &UdpSocket, count: usize, from: SocketAddr) {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < count {
        match sock.recv_from(&mut buf) {
            Ok((n, src)) => got.push((src, buf[..n].to_vec())),
            Err(_) => break,
        }
    }
    assert_delivered(&got, count, &from.to_string());
}

/// Nothing arrives on `sock` within 300 ms.
fn silent(sock: &UdpSocket) {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let got = sock.recv_from(&mut [0u8; 2048]);
    assert!(got.is_err(), "unexpected datagram: {got:?}");
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
}

/// Packets of `tag`'s RTP stream, userspace and kernel together.
fn packets_of(q: &Value, tag: &str) -> i64 {
    rtp_streams(q)
        .iter()
        .filter(|st| st.0 == tag)
        .map(|st| st.2 + st.3)
        .sum()
}

fn delete_now(bed: &Bed, call_id: &str) {
    let del = with(
        command("delete", call_id),
        &[("delete-delay", Value::Int(0))],
    );
    bed.ng.ok(&del).unwrap();
}

#[test]
fn a_subscriber_added_mid_call_gets_a_copy_until_it_unsubscribes() {
    require_root!();
    let bed = Bed::new("ngsub");
    let relayd = bed.relayd(&[]);
    let call_id = "call-sub";
    let relay_b = endpoint(&bed.ng.ok(&offer(call_id)).unwrap());
    let relay_a = endpoint(&bed.ng.ok(&answer(call_id)).unwrap());
    let a = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
    let tap = bind_udp(&bed.t.a, &format!("{HOST_A}:6000")).unwrap();
    let both_ways = |n: usize| {
        assert_delivered(
            &exchange(&a, &relay_a.to_string(), &b, n).unwrap(),
            n,
            &relay_b.to_string(),
        );
        assert_delivered(
            &exchange(&b, &relay_b.to_string(), &a, n).unwrap(),
            n,
            &relay_a.to_string(),
        );
    };
    both_ways(5);
    wait_kernelized(&bed.ng, call_id);

    // Mid-call: a tap on A's media.
    let (sub_port, to_tag) = subscribe(&bed, call_id, "tag-A", HOST_A, 6000);
    let before = bed.ng.ok(&command("query", call_id)).unwrap();
    assert!(
        rtp_streams(&before).iter().any(|st| st.0 == to_tag),
        "the subscriber is a party of the call in query: {before:?}"
    );
    let kernelized = |q: &Value, tag: &str| {
        rtp_streams(q)
            .iter()
            .any(|st| st.0 == tag && st.1.iter().any(|f| f == "kernelized"))
    };
    assert!(
        !kernelized(&before, "tag-A"),
        "A's stream is copied in userspace: {before:?}"
    );
    assert!(
        kernelized(&before, "tag-B"),
        "B's stream, not subscribed to, stays in XDP: {before:?}"
    );
    both_ways(20);
    receive(&tap, 20, sub_port);
    silent(&tap); // B's media is not copied
    let after = bed.ng.ok(&command("query", call_id)).unwrap();
    assert_eq!(
        packets_of(&after, "tag-A") - packets_of(&before, "tag-A"),
        20,
        "A's stream counts each packet once, copies aside: {after:?}"
    );
    assert_eq!(
        packets_of(&after, "tag-B") - packets_of(&before, "tag-B"),
        20
    );

    // Unsubscribed: no more copies, the ports are free, XDP again.
    let unsub = Value::dict([
        ("command", s("unsubscribe")),
        ("call-id", s(call_id)),
        ("to-tag", s(&to_tag)),
    ]);
    bed.ng.ok(&unsub).unwrap();
    both_ways(10);
    silent(&tap);
    std::thread::sleep(Duration::from_millis(200)); // the forwarder closes its socket
    assert!(
        port_is_free(&bed.t.r, sub_port),
        "{sub_port} freed at unsubscribe"
    );
    wait_kernelized(&bed.ng, call_id);

    // Subscribed again, then the call is deleted: the subscriber goes too.
    let (sub_port, _) = subscribe(&bed, call_id, "tag-A", HOST_A, 6000);
    both_ways(5);
    receive(&tap, 5, sub_port);
    delete_now(&bed, call_id);
    std::thread::sleep(Duration::from_millis(200));
    for port in [relay_a, relay_b, sub_port] {
        assert!(port_is_free(&bed.t.r, port), "{port} freed at delete");
    }
    let totals: serde_json::Value =
        serde_json::from_slice(&bed.relayctl_cli(&["--json", "totals"]).stdout).unwrap();
    assert!(
        totals["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["used"] == 0),
        "no port pair held: {totals}"
    );
    common::stop_relayd(&bed.t.r, relayd);
}

#[test]
fn a_publishers_media_reaches_its_subscriber() {
    require_root!();
    let bed = Bed::new("ngpub");
    let relayd = bed.relayd(&[]);
    let call_id = "call-pub";
    let publish = Value::dict([
        ("command", s("publish")),
        ("call-id", s(call_id)),
        ("from-tag", s("pub")),
        ("sdp", s(&audio_sdp(HOST_A, 7000))),
    ]);
    let reply = bed.ng.ok(&publish).unwrap();
    let sdp =
        String::from_utf8_lossy(reply.get("sdp").and_then(Value::as_bytes).unwrap()).into_owned();
    assert!(
        sdp.contains("a=recvonly") && sdp.contains("RTP/AVP 0\r\n"),
        "{sdp}"
    );
    let relay_pub = endpoint(&reply);
    let publisher = bind_udp(&bed.t.a, &format!("{HOST_A}:7000")).unwrap();
    let viewer = bind_udp(&bed.t.b, &format!("{HOST_B}:41000")).unwrap();

    // Nobody receives it yet.
    publisher.send_to(b"before anyone", relay_pub).unwrap();
    silent(&viewer);

    let (sub_port, _) = subscribe(&bed, call_id, "pub", HOST_B, 41000);
    assert_delivered(
        &exchange(&publisher, &relay_pub.to_string(), &viewer, 10).unwrap(),
        10,
        &sub_port.to_string(),
    );
    delete_now(&bed, call_id);
    std::thread::sleep(Duration::from_millis(200));
    for port in [relay_pub, sub_port] {
        assert!(port_is_free(&bed.t.r, port), "{port} freed at delete");
    }
    common::stop_relayd(&bed.t.r, relayd);
}
