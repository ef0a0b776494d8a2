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
