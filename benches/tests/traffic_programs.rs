//! The throughput benchmark's generator and sink through plain
//! BPF_PROG_TEST_RUN: the generator cycles through its flows writing valid
//! frames (addresses, ports, IP checksum, zero UDP checksum, RTP fields);
//! the sink counts and drops IPv4 UDP and passes anything else.

use std::net::SocketAddrV4;

use relay_benches::traffic::{Flow, Traffic};
use relay_tests::{
    packet::{ipv4_checksum_ok, UdpFrame, ETH_LEN},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// `lo`: present in every namespace, so test runs may name it.
const LO: u32 = 1;

fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

#[test]
fn generator_cycles_through_flows_with_valid_frames() {
    require_root!();
    let mut t = Traffic::load(LO, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]).unwrap();
    let flows = [
        Flow {
            from: sa("10.77.100.1:1024"),
            to: sa("10.77.0.10:2000"),
        },
        Flow {
            from: sa("10.77.150.1:1024"),
            to: sa("10.77.0.10:2002"),
        },
    ];
    t.set_flows(&flows).unwrap();
    let before = t.generated().unwrap();
    for i in 0..4u32 {
        let f = t.generate_one().unwrap();
        let flow = flows[(i % 2) as usize];
        assert_eq!(f.len(), t.template().len());
        assert_eq!(&f[..12], &t.template()[..12], "MACs kept");
        assert!(ipv4_checksum_ok(&f, ETH_LEN), "IPv4 checksum of frame {i}");
        let ip = &f[ETH_LEN..];
        assert_eq!(&ip[12..16], &flow.from.ip().octets());
        assert_eq!(&ip[16..20], &flow.to.ip().octets());
        let udp = &ip[20..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), flow.from.port());
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), flow.to.port());
        assert_eq!(&udp[6..8], &[0, 0], "UDP checksum 0 (none)");
        let rtp = &udp[8..];
        assert_eq!(rtp[0], 0x80, "RTP version 2");
        assert_eq!(
            u16::from_be_bytes([rtp[2], rtp[3]]),
            (i / 2) as u16,
            "sequence"
        );
        assert_eq!(
            u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]),
            (i / 2) * 160,
            "timestamp"
        );
        assert_eq!(
            u32::from_be_bytes([rtp[8], rtp[9], rtp[10], rtp[11]]),
            i % 2 + 1,
            "SSRC per flow"
        );
    }
    assert_eq!(t.generated().unwrap() - before, 4);
}

/// A live-frames page comes back holding what the relay made of the last
/// frame (its XDP_TX swapped the MACs in place): the generator writes its
/// MACs again, or a relay checking the destination MAC drops the frame.
#[test]
fn generator_rewrites_the_macs_of_a_reused_page() {
    require_root!();
    let (ours, relay) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let mut t = Traffic::load(LO, ours, relay).unwrap();
    t.set_flows(&[Flow {
        from: sa("10.77.100.1:1024"),
        to: sa("10.77.0.10:2000"),
    }])
    .unwrap();
    let mut returned = t.template().to_vec();
    returned[..6].copy_from_slice(&ours);
    returned[6..12].copy_from_slice(&relay);
    let f = t.generate_from(&returned).unwrap();
    assert_eq!(&f[..6], &relay, "to the relay again");
    assert_eq!(&f[6..12], &ours);
}

#[test]
fn lanes_give_each_cpu_flows_of_its_own_in_sequence() {
    require_root!();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("SKIPPED: needs two CPUs to pin the generator to CPU 1, this machine has {cpus}");
        return;
    }
    let mut t = Traffic::load(LO, [0; 6], [0; 6]).unwrap();
    let flows: Vec<Flow> = (0..4u16)
        .map(|k| Flow {
            from: SocketAddrV4::new([10, 77, 100, 1].into(), 1024 + k),
            to: SocketAddrV4::new([10, 77, 0, 10].into(), 2000 + 2 * k),
        })
        .collect();
    t.set_flows(&flows).unwrap();
    t.set_lanes(2).unwrap();
    // On CPU 1 of two lanes: flows 1 and 3 only, each in sequence.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut set = nix::sched::CpuSet::new();
            set.set(1).unwrap();
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
            for i in 0..4u16 {
                let f = t.generate_one().unwrap();
                let udp = &f[ETH_LEN + 20..];
                let flow = flows[usize::from(1 + 2 * (i % 2))];
                assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), flow.from.port());
                assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), flow.to.port());
                let seq = u16::from_be_bytes([udp[10], udp[11]]);
                assert_eq!(seq, i / 2, "sequence of frame {i}");
            }
        });
    });
}

#[test]
fn sink_counts_udp_and_passes_the_rest() {
    require_root!();
    let t = Traffic::load(LO, [0; 6], [0; 6]).unwrap();
    let udp = UdpFrame::new(sa("10.77.0.10:2000"), sa("10.77.100.1:1024")).build();
    assert_eq!(t.sink_verdict(&udp).unwrap(), XDP_DROP);
    let mut arp = udp.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(t.sink_verdict(&arp).unwrap(), XDP_PASS);
    assert_eq!(t.received().unwrap(), 1);
}

/// A frame as the paced sender stamps it: RTP header, then the send time
/// (CLOCK_MONOTONIC ns), the flow's packet count and the flow index.
fn stamped(sent_ns: u64, count: u64, flow: u32) -> Vec<u8> {
    let mut f = UdpFrame::new(sa("10.77.0.10:2000"), sa("10.77.100.1:1024"));
    let mut payload = relay_tests::packet::rtp_payload(172);
    payload[12..20].copy_from_slice(&sent_ns.to_be_bytes());
    payload[20..28].copy_from_slice(&count.to_be_bytes());
    payload[28..32].copy_from_slice(&flow.to_be_bytes());
    f.payload = payload;
    f.build()
}

#[test]
fn sink_records_latency_and_jitter_only_when_asked() {
    require_root!();
    let mut t = Traffic::load(LO, [0; 6], [0; 6]).unwrap();
    let before = t.latency().unwrap();
    t.sink_verdict(&stamped(
        relay_benches::throughput::paced::monotonic_ns(),
        1,
        3,
    ))
    .unwrap();
    assert_eq!(t.latency().unwrap(), before, "off: nothing recorded");

    t.set_latency(true).unwrap();
    // Sent 5 ms and 2 ms ago, consecutive packets of flow 3: both at least
    // that old when the sink sees them, and one transit difference of
    // about 3 ms (the sink's own delay between the two runs shortens it).
    let now = relay_benches::throughput::paced::monotonic_ns();
    t.sink_verdict(&stamped(now - 5_000_000, 7, 3)).unwrap();
    t.sink_verdict(&stamped(now - 2_000_000, 8, 3)).unwrap();
    // Not paired: another flow, and a count that skips one.
    t.sink_verdict(&stamped(now - 2_000_000, 1, 4)).unwrap();
    t.sink_verdict(&stamped(now - 2_000_000, 10, 3)).unwrap();
    // No usable stamp: zero, and a time still to come.
    t.sink_verdict(&stamped(0, 9, 3)).unwrap();
    t.sink_verdict(&stamped(now + 60_000_000_000, 9, 3))
        .unwrap();
    let d = t.latency().unwrap().since(&before);
    assert_eq!(d.packets(), 4);
    assert_eq!(d.unstamped, 2);
    assert_eq!(d.pairs, 1, "only 7 -> 8 of flow 3 is a consecutive pair");
    assert!(d.jitter().unwrap().as_micros() <= 3_000);
    let slowest = d.percentile(1.0).unwrap().as_micros();
    let fastest = d.percentile(0.0).unwrap().as_micros();
    assert!(slowest > 5_000, "the 5 ms packet: {slowest} us");
    assert!(fastest > 2_000, "the 2 ms packets: {fastest} us");
    assert_eq!(t.received().unwrap(), 7, "every frame counted");
}

#[test]
fn bounce_sends_udp_straight_back_and_passes_the_rest() {
    require_root!();
    let b = relay_benches::traffic::Bounce::load().unwrap();
    let mut frame = UdpFrame::new(sa("10.77.100.1:1024"), sa("10.77.10.10:2000"));
    frame.src_mac = [2, 0, 0, 0, 0, 2];
    frame.dst_mac = [2, 0, 0, 0, 0, 1];
    let (verdict, out) = b.run_once(LO, &frame.build()).unwrap();
    assert_eq!(verdict, XDP_TX);
    let mut back = UdpFrame::new(sa("10.77.10.10:2000"), sa("10.77.100.1:1024"));
    back.src_mac = [2, 0, 0, 0, 0, 1];
    back.dst_mac = [2, 0, 0, 0, 0, 2];
    assert_eq!(
        out,
        back.build(),
        "addresses, ports and MACs swapped, checksums still right"
    );
    assert!(ipv4_checksum_ok(&out, ETH_LEN));
    let mut arp = frame.build();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(b.run_once(LO, &arp).unwrap().0, XDP_PASS);
}
