//! Media from senders on the relay's own host (network namespaces on veth
//! peers, as containers are) that keep the default transmit offloads: their
//! UDP leaves with a partial checksum (CHECKSUM_PARTIAL, only the
//! pseudo-header sum in the field). relayd forwards it in XDP, native and
//! generic, IPv4, IPv6 and bridged both ways, and every datagram must
//! arrive, none dropped by the receiver for a bad checksum
//! (`UdpInCsumErrors`, `Udp6InCsumErrors` in the receiver's namespace).

use std::{process::Stdio, time::Duration};

use relay_tests::{
    netns::{ChildGuard, Netns},
    peer::attach_peer_pass,
    ready::spawn_ready,
    require_root,
    topology::{
        bind_udp, exchange_payloads, tx_checksum_offload, udp_in_csum_errors, HostOffloads,
        Topology, HOST_A, HOST_A6, HOST_B, HOST_B6, RELAY_A, RELAY_A6, RELAY_B, RELAY_B6,
    },
    PinDirGuard,
};

mod common;

use common::{relayctl_json, stop_relayd, RELAYD};

/// UDP payload sizes sent each way on every pair: empty, odd tails, RTP
/// sizes, around bpf_csum_diff's 512-byte block, near the IPv6 MTU.
const SIZES: [usize; 11] = [0, 1, 3, 160, 172, 499, 511, 512, 513, 1000, 1400];

/// A pair of static streams: host A's `a_addr` sends to the relay's
/// `relay_a`, which forwards to host B's `b_addr` from `relay_b`, and back.
struct Pair {
    name: &'static str,
    a_addr: String,
    relay_a: String,
    relay_b: String,
    b_addr: String,
}

fn pairs() -> Vec<Pair> {
    let p = |name, a: String, ra: String, rb: String, b: String| Pair {
        name,
        a_addr: a,
        relay_a: ra,
        relay_b: rb,
        b_addr: b,
    };
    vec![
        p(
            "IPv4",
            format!("{HOST_A}:5000"),
            format!("{RELAY_A}:30000"),
            format!("{RELAY_B}:30002"),
            format!("{HOST_B}:40000"),
        ),
        p(
            "IPv6",
            format!("[{HOST_A6}]:5010"),
            format!("[{RELAY_A6}]:30010"),
            format!("[{RELAY_B6}]:30012"),
            format!("[{HOST_B6}]:40010"),
        ),
        p(
            "IPv4 A, IPv6 B (bridged)",
            format!("{HOST_A}:5020"),
            format!("{RELAY_A}:30020"),
            format!("[{RELAY_B6}]:30022"),
            format!("[{HOST_B6}]:40020"),
        ),
        p(
            "IPv6 A, IPv4 B (bridged)",
            format!("[{HOST_A6}]:5030"),
            format!("[{RELAY_A6}]:30030"),
            format!("{RELAY_B}:30032"),
            format!("{HOST_B}:40030"),
        ),
    ]
}

fn start_relayd(ns: &Netns, pins: &PinDirGuard, mode: &str) -> ChildGuard {
    let mut cmd = ns.command(RELAYD).unwrap();
    cmd.args(["-i", &format!("a/{RELAY_A}"), "-i", &format!("b/{RELAY_B}")])
        .args([
            "-i",
            &format!("a/{RELAY_A6}"),
            "-i",
            &format!("b/{RELAY_B6}"),
        ])
        .args(["--xdp-mode", mode, "--no-state", "--pin-dir"])
        .arg(&pins.0);
    for p in pairs() {
        cmd.arg("--static-stream")
            .arg(format!("{}={},src={}", p.relay_a, p.b_addr, p.relay_b));
        cmd.arg("--static-stream")
            .arg(format!("{}={},src={}", p.relay_b, p.a_addr, p.relay_a));
    }
    spawn_ready(cmd.stdout(Stdio::null())).unwrap()
}

/// Every size, one way; asserts each arrived whole from `expect_src`.
fn send_all(
    what: &str,
    from: &std::net::UdpSocket,
    to: &str,
    rx: &std::net::UdpSocket,
    expect_src: &str,
) -> usize {
    let payloads: Vec<Vec<u8>> = SIZES
        .iter()
        .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    let got = exchange_payloads(from, to, rx, payloads.clone(), Duration::ZERO).unwrap();
    assert_eq!(
        got.len(),
        payloads.len(),
        "{what}: datagrams delivered (sizes {SIZES:?}, the first missing one was lost)"
    );
    let src: std::net::SocketAddr = expect_src.parse().unwrap();
    for ((from, payload), sent) in got.iter().zip(&payloads) {
        assert_eq!(*from, src, "{what}: source");
        assert_eq!(payload, sent, "{what}: payload of {} bytes", sent.len());
    }
    got.len()
}

fn media_flows_with_default_offloads(mode: &str) {
    let t = Topology::with_offloads(&format!("ck{}", &mode[..1]), HostOffloads::Default).unwrap();
    t.add_ipv6().unwrap();
    for (ns, dev) in [(&t.a, "a0"), (&t.b, "b0")] {
        assert!(
            tx_checksum_offload(ns, dev).unwrap(),
            "{dev} keeps transmit checksum offload (partial checksums)"
        );
    }
    // Native transmit into a veth only delivers to a peer with a program.
    let _pa = t.a.run(|| attach_peer_pass("a0")).unwrap().unwrap();
    let _pb = t.b.run(|| attach_peer_pass("b0")).unwrap().unwrap();
    let pins = PinDirGuard::new(&format!("offload-{mode}"));
    let relayd = start_relayd(&t.r, &pins, mode);
    let ifaces = relayctl_json(&pins.0, "interfaces");
    for iface in ifaces.as_array().unwrap() {
        assert_eq!(iface["xdp_mode"], mode, "{iface}");
    }

    let errors_before = (
        udp_in_csum_errors(&t.a).unwrap(),
        udp_in_csum_errors(&t.b).unwrap(),
    );
    let counters_before = relayctl_json(&pins.0, "counters");
    let mut sent = 0;
    for p in pairs() {
        let a = bind_udp(&t.a, &p.a_addr).unwrap();
        let b = bind_udp(&t.b, &p.b_addr).unwrap();
        sent += send_all(
            &format!("{mode}, {}: A -> B", p.name),
            &a,
            &p.relay_a,
            &b,
            &p.relay_b,
        );
        sent += send_all(
            &format!("{mode}, {}: B -> A", p.name),
            &b,
            &p.relay_b,
            &a,
            &p.relay_a,
        );
    }
    let errors_after = (
        udp_in_csum_errors(&t.a).unwrap(),
        udp_in_csum_errors(&t.b).unwrap(),
    );
    assert_eq!(
        errors_after, errors_before,
        "{mode}: UDP checksum errors on (A, B)"
    );
    // All of it went through XDP (redirect between the two links).
    let counters = relayctl_json(&pins.0, "counters");
    let forwarded = |c: &serde_json::Value| c["forwarded_redirect"]["packets"].as_u64().unwrap();
    assert_eq!(
        forwarded(&counters) - forwarded(&counters_before),
        sent as u64,
        "{mode}: forwarded in XDP: {counters}"
    );
    eprintln!("{mode}: {sent} datagrams with partial checksums delivered, 0 checksum errors");

    stop_relayd(&t.r, relayd);
}

#[test]
fn partial_checksums_flow_in_native_xdp() {
    require_root!();
    media_flows_with_default_offloads("native");
}

#[test]
fn partial_checksums_flow_in_generic_xdp() {
    require_root!();
    media_flows_with_default_offloads("generic");
}
