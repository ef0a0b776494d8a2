//! rtcp-mux demux (`rtcp-mux: [demux]`) against a real relayd in network
//! namespaces: A offers and gets rtcp-mux (RTP and RTCP on one port), B
//! gets an offer without it and keeps RTCP on its RTP port + 1. A's RTCP,
//! sent to the relay's RTP port, must reach B's RTCP port from the relay's
//! RTCP port on B's side; B's RTCP must reach A's RTP port from the relay's
//! RTP port on A's side; RTP is unaffected. In XDP (RTCP too ends up
//! forwarded in the kernel) and in the userspace datapath. And the other
//! way round: `rtcp-mux: [offer]` to B, who accepts, for an A without mux.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use relay_ng::Value;
use relay_tests::{
    netns::ChildGuard,
    ng_client::{audio_sdp, sdp_endpoint},
    require_root,
    topology::{assert_delivered, bind_udp, exchange, exchange_payloads, HOST_A, HOST_B},
};

mod common;

use common::{answer, command, offer, s, Bed};

/// An RTCP receiver report (RFC 3550 6.4.2, no report blocks) whose SSRC
/// field carries `n`, so each one is told apart.
fn rtcp(n: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&n.to_be_bytes());
    p
}

/// The `a=rtcp:` port and whether `a=rtcp-mux` is present.
fn rtcp_lines(sdp: &[u8]) -> (Option<u16>, bool) {
    let text = String::from_utf8_lossy(sdp);
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("a=rtcp:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    (port, text.lines().any(|l| l.trim() == "a=rtcp-mux"))
}

/// Sends `n` RTCP packets from `from` to `to`, each received on `rx`
/// from `expected_src`; nothing of them reaches `not_rx`.
fn rtcp_delivered(
    from: &UdpSocket,
    to: SocketAddr,
    rx: &UdpSocket,
    expected_src: SocketAddr,
    not_rx: &UdpSocket,
    n: u32,
    first: u32,
) {
    let payloads: Vec<Vec<u8>> = (first..first + n).map(rtcp).collect();
    let got =
        exchange_payloads(from, &to.to_string(), rx, payloads.clone(), Duration::ZERO).unwrap();
    assert_eq!(
        got.len(),
        n as usize,
        "RTCP delivered to {:?}",
        rx.local_addr()
    );
    for ((src, payload), sent) in got.iter().zip(&payloads) {
        assert_eq!(*src, expected_src, "RTCP source");
        assert_eq!(payload, sent);
    }
    not_rx.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    let stray = not_rx.recv_from(&mut buf);
    not_rx.set_nonblocking(false).unwrap();
    assert!(
        stray.is_err(),
        "RTCP must not reach the RTP socket: {stray:?}"
    );
}

/// Sets up the call over NG; returns (relay's RTP port for A, relay's RTP
/// port for B), having checked the SDP both ways.
fn demux_call(bed: &Bed, call_id: &str) -> (SocketAddr, SocketAddr) {
    let mut body = offer(call_id);
    if let Value::Dict(d) = &mut body {
        let sdp = format!("{}a=rtcp-mux\r\n", audio_sdp(HOST_A, 5000));
        d.insert(b"sdp".to_vec(), s(&sdp));
        d.insert(b"rtcp-mux".to_vec(), Value::str_list(["demux"]));
    }
    let o = bed.ng.ok(&body).unwrap();
    let sdp = o.get("sdp").and_then(Value::as_bytes).unwrap();
    let (addr, port) = sdp_endpoint(sdp).unwrap();
    assert_eq!(rtcp_lines(sdp), (Some(port + 1), false), "B gets no mux");
    let relay_b: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let a = bed.ng.ok(&answer(call_id)).unwrap();
    let sdp = a.get("sdp").and_then(Value::as_bytes).unwrap();
    let (addr, port) = sdp_endpoint(sdp).unwrap();
    assert_eq!(rtcp_lines(sdp), (Some(port), true), "A's mux is accepted");
    (format!("{addr}:{port}").parse().unwrap(), relay_b)
}

/// RTP both ways (5 each), then RTCP both ways (3 each).
fn media(sockets: &Sockets, relay_a: SocketAddr, relay_b: SocketAddr, first: u32) {
    let Sockets { a, b_rtp, b_rtcp } = sockets;
    let relay_b_rtcp = SocketAddr::new(relay_b.ip(), relay_b.port() + 1);
    let got = exchange(a, &relay_a.to_string(), b_rtp, 5).unwrap();
    assert_delivered(&got, 5, &relay_b.to_string());
    let got = exchange(b_rtp, &relay_b.to_string(), a, 5).unwrap();
    assert_delivered(&got, 5, &relay_a.to_string());
    // A's RTCP on the relay's RTP port: to B's RTCP port, from the relay's
    // RTCP port; none to B's RTP port.
    rtcp_delivered(a, relay_a, b_rtcp, relay_b_rtcp, b_rtp, 3, first);
    // B's RTCP on the relay's RTCP port: to A's (only) port, from the
    // relay's RTP port.
    rtcp_delivered(b_rtcp, relay_b_rtcp, a, relay_a, b_rtp, 3, first + 100);
}

struct Sockets {
    a: UdpSocket,
    b_rtp: UdpSocket,
    b_rtcp: UdpSocket,
}

fn sockets(bed: &Bed) -> Sockets {
    Sockets {
        a: bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap(),
        b_rtp: bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap(),
        b_rtcp: bind_udp(&bed.t.b, &format!("{HOST_B}:40001")).unwrap(),
    }
}

fn stop(bed: &Bed, relayd: ChildGuard) {
    common::stop_relayd(&bed.t.r, relayd);
}

#[test]
fn rtcp_mux_demux_in_xdp() {
    require_root!();
    let bed = Bed::new("mxx");
    let relayd = bed.relayd(&[]);
    let (relay_a, relay_b) = demux_call(&bed, "demux-xdp");
    let socks = sockets(&bed);
    // First packets in userspace: they confirm all four ports' endpoints.
    media(&socks, relay_a, relay_b, 1);
    // Then all four directions forward in the kernel: RTP both ways, A's
    // RTCP by its RTCP port's entry, B's RTCP to A's RTP port.
    let deadline = Instant::now() + Duration::from_secs(5);
    while bed.forwarding_streams() < 4 {
        assert!(
            Instant::now() < deadline,
            "streams never kernelized: {}",
            bed.relayctl_json("streams")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let streams = bed.relayctl_json("streams");
    let demux: Vec<_> = streams
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["rtcp_demux"] == true)
        .map(|s| s["local"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(demux, vec![relay_a.to_string()], "{streams}");
    let forwarded = |bed: &Bed| {
        bed.relayctl_json("counters")["forwarded_redirect"]["packets"]
            .as_u64()
            .unwrap()
    };
    let before = forwarded(&bed);
    let q_before = bed.ng.ok(&command("query", "demux-xdp")).unwrap();
    media(&socks, relay_a, relay_b, 1000);
    assert_eq!(
        forwarded(&bed) - before,
        10 + 6,
        "RTP (10) and RTCP (6) all forwarded by XDP"
    );
    let userspace = |q: &Value| common::rtp_streams(q).iter().map(|s| s.2).sum::<i64>();
    let q_after = bed.ng.ok(&command("query", "demux-xdp")).unwrap();
    assert_eq!(
        userspace(&q_before),
        userspace(&q_after),
        "nothing in userspace"
    );
    stop(&bed, relayd);
}

#[test]
fn rtcp_mux_demux_in_userspace() {
    require_root!();
    let bed = Bed::new("mxu");
    let relayd = bed.relayd(&["--datapath", "userspace"]);
    let (relay_a, relay_b) = demux_call(&bed, "demux-user");
    let socks = sockets(&bed);
    for round in 0..3 {
        media(&socks, relay_a, relay_b, round * 1000);
    }
    stop(&bed, relayd);
}

/// `rtcp-mux: [offer]`: A offers no mux, the relay offers it to B, B
/// accepts. B's RTCP arrives on the relay's RTP port for B and must reach
/// A's RTCP port from the relay's RTCP port on A's side, and A's RTCP the
/// other way to B's RTP port from the relay's RTP port for B.
#[test]
fn rtcp_mux_offered_to_the_answerer_only() {
    require_root!();
    for datapath in ["xdp", "userspace"] {
        let bed = Bed::new(&format!("mxo{}", &datapath[..1]));
        let relayd = bed.relayd(&["--datapath", datapath]);
        let call_id = format!("offer-{datapath}");
        let mut body = offer(&call_id);
        if let Value::Dict(d) = &mut body {
            d.insert(b"rtcp-mux".to_vec(), Value::str_list(["offer"]));
        }
        let o = bed.ng.ok(&body).unwrap();
        let sdp = o.get("sdp").and_then(Value::as_bytes).unwrap();
        assert!(rtcp_lines(sdp).1, "B is offered mux");
        let (addr, port) = sdp_endpoint(sdp).unwrap();
        let relay_b: SocketAddr = format!("{addr}:{port}").parse().unwrap();
        let mut body = answer(&call_id);
        if let Value::Dict(d) = &mut body {
            let sdp = format!("{}a=rtcp-mux\r\n", audio_sdp(HOST_B, 40000));
            d.insert(b"sdp".to_vec(), s(&sdp));
        }
        let a = bed.ng.ok(&body).unwrap();
        let sdp = a.get("sdp").and_then(Value::as_bytes).unwrap();
        let (addr, port) = sdp_endpoint(sdp).unwrap();
        assert_eq!(
            rtcp_lines(sdp),
            (Some(port + 1), false),
            "A keeps RTCP apart"
        );
        let relay_a: SocketAddr = format!("{addr}:{port}").parse().unwrap();
        let relay_a_rtcp = SocketAddr::new(relay_a.ip(), relay_a.port() + 1);
        let a_rtp = bind_udp(&bed.t.a, &format!("{HOST_A}:5000")).unwrap();
        let a_rtcp = bind_udp(&bed.t.a, &format!("{HOST_A}:5001")).unwrap();
        let b = bind_udp(&bed.t.b, &format!("{HOST_B}:40000")).unwrap();
        for round in 0..2 {
            let got = exchange(&a_rtp, &relay_a.to_string(), &b, 5).unwrap();
            assert_delivered(&got, 5, &relay_b.to_string());
            let got = exchange(&b, &relay_b.to_string(), &a_rtp, 5).unwrap();
            assert_delivered(&got, 5, &relay_a.to_string());
            rtcp_delivered(&b, relay_b, &a_rtcp, relay_a_rtcp, &a_rtp, 3, round * 10);
            rtcp_delivered(
                &a_rtcp,
                relay_a_rtcp,
                &b,
                relay_b,
                &a_rtp,
                3,
                round * 10 + 5,
            );
        }
        if datapath == "xdp" {
            let deadline = Instant::now() + Duration::from_secs(5);
            while bed.forwarding_streams() < 4 {
                assert!(
                    Instant::now() < deadline,
                    "{}",
                    bed.relayctl_json("streams")
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            rtcp_delivered(&b, relay_b, &a_rtcp, relay_a_rtcp, &a_rtp, 3, 50);
            rtcp_delivered(&a_rtcp, relay_a_rtcp, &b, relay_b, &a_rtp, 3, 60);
        }
        stop(&bed, relayd);
    }
}
