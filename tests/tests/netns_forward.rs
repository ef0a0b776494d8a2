//! Real UDP through the XDP fast path between network namespaces.
//!
//! Host A and host B talk only to the relay; streams installed through the
//! `datapath` API forward A -> B and B -> A, and the receiving sockets must
//! see the relay's address and port as the source.

use std::net::SocketAddr;

use relay_common::CounterId;
use relay_tests::{
    peer::{attach_peer_pass, PeerPass},
    require_root,
    topology::{assert_delivered, bind_udp, exchange, Topology, HOST_A, HOST_B, RELAY_A, RELAY_B},
    PinDirGuard,
};
use relay_userspace::datapath::{
    xdp::{
        selftest::TxProbe, AttachMode, ModePolicy, ModeReason, RelayMaps, XdpConfig, XdpDatapath,
        XdpError,
    },
    Datapath, MediaTracking, StreamSpec,
};

const COUNT: usize = 20;

fn config(pins: &PinDirGuard, mode: ModePolicy) -> XdpConfig {
    XdpConfig {
        interfaces: vec!["a1".into(), "b1".into()],
        pin_dir: pins.0.clone(),
        mode,
        max_streams: 1024,
        max_addresses: 8,
        row_ports: 0..=u16::MAX,
        enable_forwarding: true,
        test_clock: false,
        next_hop_cache: std::time::Duration::from_millis(500),
    }
}

/// A -> relay:30000 -> B:40000 from relay:30002, and back.
fn streams() -> [StreamSpec; 2] {
    let sa = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
    [
        StreamSpec {
            local: sa(RELAY_A, 30000),
            peer: sa(HOST_B, 40000),
            source: sa(RELAY_B, 30002),
            strict_source: None,
            stats_slot: 10,
            to_userspace: false,
            max_pps: 0,
            media: MediaTracking::None,
            ice: false,
            rtcp_demux: false,
        },
        StreamSpec {
            local: sa(RELAY_B, 30002),
            peer: sa(HOST_A, 5000),
            source: sa(RELAY_A, 30000),
            strict_source: Some(sa(HOST_B, 40000)),
            stats_slot: 11,
            to_userspace: false,
            max_pps: 0,
            media: MediaTracking::None,
            ice: false,
            rtcp_demux: false,
        },
    ]
}

/// Peer programs on a0 and b0, so native XDP transmit into them delivers.
fn peer_programs(t: &Topology) -> (PeerPass, PeerPass) {
    let a = t.a.run(|| attach_peer_pass("a0")).unwrap().unwrap();
    let b = t.b.run(|| attach_peer_pass("b0")).unwrap().unwrap();
    (a, b)
}

/// Sends COUNT each way and checks delivery, sources and kernel counters.
fn run_calls(t: &Topology, dp: &mut XdpDatapath, expect_forwarded_by: CounterId) {
    for s in streams() {
        dp.install(&s).unwrap();
    }
    let a = bind_udp(&t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&t.b, &format!("{HOST_B}:40000")).unwrap();
    let before = dp.counters().unwrap();

    let to_b = exchange(&a, &format!("{RELAY_A}:30000"), &b, COUNT).unwrap();
    assert_delivered(&to_b, COUNT, &format!("{RELAY_B}:30002"));
    let to_a = exchange(&b, &format!("{RELAY_B}:30002"), &a, COUNT).unwrap();
    assert_delivered(&to_a, COUNT, &format!("{RELAY_A}:30000"));

    let delta = dp.counters().unwrap().since(&before);
    assert_eq!(
        delta.packets(expect_forwarded_by),
        2 * COUNT as u64,
        "forwarded in XDP"
    );
    assert_eq!(delta.packets(CounterId::PassNoStream), 0);
    assert_eq!(delta.packets(CounterId::PassFibMiss), 0);
    let payload_len = "xrelay test datagram 0000".len() as u64;
    for slot in [10, 11] {
        let s = dp.stream_stats(slot).unwrap();
        assert_eq!(
            (s.packets, s.bytes),
            (COUNT as u64, COUNT as u64 * payload_len),
            "slot {slot}"
        );
        assert!(s.last_seen_ns > 0);
    }
}

#[test]
fn native_xdp_forwards_between_namespaces() {
    require_root!();
    let t = Topology::new("fw").unwrap();
    let _peers = peer_programs(&t);
    let pins = PinDirGuard::new("native");
    let mut dp =
        t.r.run(|| XdpDatapath::start(&config(&pins, ModePolicy::Auto)))
            .unwrap()
            .unwrap();
    for a in dp.attachments() {
        assert_eq!(
            (a.mode, &a.reason),
            (AttachMode::Native, &ModeReason::NativeOk),
            "{}",
            a.iface
        );
    }
    run_calls(&t, &mut dp, CounterId::FwdRedirect);

    // Removing a stream sends its packets back to the stack (no stream).
    let [ab, _] = streams();
    dp.remove(ab.local).unwrap();
    let a = bind_udp(&t.a, &format!("{HOST_A}:5001")).unwrap();
    let b = bind_udp(&t.b, &format!("{HOST_B}:40001")).unwrap();
    let before = dp.counters().unwrap();
    let got = exchange(&a, &format!("{RELAY_A}:30000"), &b, 1).unwrap();
    assert!(got.is_empty(), "removed stream still forwards");
    assert_eq!(
        dp.counters()
            .unwrap()
            .since(&before)
            .packets(CounterId::PassNoStream),
        1
    );

    let dir = dp.pin_dir().to_owned();
    dp.shutdown();
    assert!(!dir.exists(), "shutdown removes the pins");
}

#[test]
fn native_tx_blackhole_is_detected_and_generic_mode_forwards() {
    require_root!();
    let t = Topology::new("bh").unwrap();
    // No XDP program on a0/b0: native XDP transmit from a1/b1 is silently
    // dropped by veth. relayd must notice and fall back.
    let pins = PinDirGuard::new("fallback");
    let native_only =
        t.r.run(|| XdpDatapath::start(&config(&pins, ModePolicy::Native)))
            .unwrap();
    match native_only {
        Err(XdpError::NativeUnusable(ModeReason::NativeTxLost { .. })) => {}
        other => panic!("--xdp-mode=native must refuse a blackholing interface, got {other:?}"),
    }

    let mut dp =
        t.r.run(|| XdpDatapath::start(&config(&pins, ModePolicy::Auto)))
            .unwrap()
            .unwrap();
    for a in dp.attachments() {
        assert_eq!(a.mode, AttachMode::Generic, "{}", a.iface);
        assert!(
            matches!(
                a.reason,
                ModeReason::NativeTxLost {
                    probe: TxProbe::Unconfirmed(_) | TxProbe::Dropped(_),
                    ..
                }
            ),
            "{}: {:?}",
            a.iface,
            a.reason
        );
    }
    let statuses = dp.maps().iface_statuses().unwrap();
    assert_eq!(statuses.len(), 2);
    assert!(statuses
        .iter()
        .all(|s| s.mode == relay_common::XDP_MODE_GENERIC
            && s.reason == relay_common::MODE_REASON_NATIVE_TX_LOST));
    run_calls(&t, &mut dp, CounterId::FwdRedirect);
    dp.shutdown();
}

/// The control for the test above: the same topology with the relay program
/// attached natively and no self-test really does lose every packet, so the
/// fallback test is not passing by accident.
#[test]
fn without_the_self_test_native_mode_blackholes_on_veth() {
    use aya::{
        programs::{Xdp, XdpMode},
        EbpfLoader,
    };
    require_root!();
    let t = Topology::new("ctl").unwrap();
    let pins = PinDirGuard::new("control");
    let (_ebpf, mut maps) =
        t.r.run(|| {
            for iface in ["a1", "b1"] {
                relay_userspace::netdev::enable_ipv4_forwarding(iface).unwrap();
            }
            relay_userspace::bpffs::ensure_pin_dir(&pins.0).unwrap();
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(&pins.0)
                .load(relay_ebpf::relay_object())
                .unwrap();
            let prog: &mut Xdp = ebpf
                .program_mut(relay_ebpf::PROGRAM_RELAY)
                .unwrap()
                .try_into()
                .unwrap();
            prog.load().unwrap();
            for iface in ["a1", "b1"] {
                prog.attach(iface, XdpMode::Driver).unwrap();
            }
            let mut maps = RelayMaps::take(&mut ebpf).unwrap();
            for iface in ["a1", "b1"] {
                let ifindex = relay_userspace::netdev::ifindex(iface).unwrap();
                maps.tx_ports.insert(ifindex, ifindex, None, 0).unwrap();
            }
            (ebpf, maps)
        })
        .unwrap();
    for s in streams() {
        maps.install(&s).unwrap();
    }
    let a = bind_udp(&t.a, &format!("{HOST_A}:5000")).unwrap();
    let b = bind_udp(&t.b, &format!("{HOST_B}:40000")).unwrap();
    for _ in 0..3 {
        let got = exchange(&a, &format!("{RELAY_A}:30000"), &b, 1).unwrap();
        assert!(
            got.is_empty(),
            "veth delivered native XDP redirects without a peer program"
        );
    }
    assert_eq!(
        maps.counters().unwrap().packets(CounterId::FwdRedirect),
        3,
        "XDP did redirect them"
    );
}
