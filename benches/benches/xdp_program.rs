//! The real XDP relay program through BPF_PROG_TEST_RUN (ns/packet as the
//! kernel measures it), next to the harness floor (a program that only
//! returns XDP_PASS) measured in the same run.
//!
//! Hit path with 1, 10 000 and 1 000 000 installed streams, lookups spread
//! over all of them: the streams form a ring (stream i's peer is stream
//! i+1's address and port), so each repeat of the reused test buffer is
//! rewritten into the next stream's address and the next run looks up
//! another stream. Streams sit on relay addresses of 62 500 ports each (16
//! addresses at 1 M), as on a relay, and the ring visits them in a
//! scattered order (a stride of 7919), so consecutive packets do not find
//! their entries side by side in memory. Their counters slots follow the
//! ring (as relayd hands out slots in order), except in the last two 1 M
//! rows, which scatter those too, as arrivals on a real relay would; the
//! very last also keeps RTP figures (8 kHz clock), as a call's streams do. The
//! peers sit behind a gateway (route 11.0.0.0/8 via 10.0.0.2, whose MAC is
//! the interface's own so a rewritten frame is again one for it), so the
//! FIB lookup succeeds for all of them with one neighbour entry, and XDP_TX
//! is the verdict. Each sample starts where the previous one stopped, so a
//! benchmark visits the whole ring.
//!
//! IPv6 and IPv4<->IPv6 bridging the same way: one IPv6 stream whose peer is
//! itself (behind the gateway 2001:db8:be::2), and two streams bouncing the
//! buffer between the families, so the bridged figure is the mean of one
//! 4 -> 6 and one 6 -> 4 rewrite.
//!
//! Next to the one-stream hit, the same hit with a partial UDP checksum (a
//! same-host sender's, completed from scratch) at 172 and 1400 bytes of
//! payload: see `partial_fixed_point`.
//!
//! Needs root (BPF, a network namespace); elsewhere it prints why it skips.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use aya::{
    programs::{TestRun as _, TestRunOptions, Xdp},
    EbpfLoader,
};
use criterion::{criterion_group, criterion_main, Criterion};
use relay_tests::{
    netns::{veth, Netns},
    packet::UdpFrame,
    PinDirGuard,
};
use relay_userspace::datapath::{
    xdp::{selftest::xdp_md_for, ModePolicy, XdpConfig, XdpDatapath},
    Datapath as _, MediaTracking, StreamSpec,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const SIZES: [u32; 3] = [1, 10_000, 1_000_000];
const PORT: u16 = 30000;
/// Streams per relay address of the ring.
const PORTS_PER_ADDRESS: u32 = 62_500;
/// Ring step through the table: prime, so coprime with every size.
const STRIDE: u64 = 7919;
/// Relay addresses of the ring at the largest size, plus the other rows'.
const MAX_ADDRESSES: u32 = SIZES[2].div_ceil(PORTS_PER_ADDRESS) + 8;

/// Where ring position `i` of `n` sits in the table (and its counters slot).
fn place(i: u32, n: u32) -> u32 {
    (u64::from(i) * STRIDE % u64::from(n)) as u32
}

/// The relay address and port of table position `p`.
fn stream_addr(p: u32) -> SocketAddrV4 {
    let address = Ipv4Addr::from(0x0b00_0001 + p / PORTS_PER_ADDRESS);
    SocketAddrV4::new(address, 1024 + (p % PORTS_PER_ADDRESS) as u16)
}

fn frame_to(dst: SocketAddrV4, src: SocketAddrV4) -> Vec<u8> {
    let mut f = UdpFrame::new(src, dst);
    f.dst_mac = [0x02, 0, 0, 0, 0xbe, 1];
    f.src_mac = [0x02, 0, 0, 0, 0xbe, 2];
    f.build()
}

/// A frame that takes the partial-checksum path on every repeat of the
/// reused test buffer: already rewritten as the one-stream ring sends it
/// (from `relay` to the stream's own address `dst`, TTL 64, the next hop's
/// MACs), so each run leaves it as it was, with a full checksum that equals
/// its pseudo-header sum (two payload bytes chosen for that). The program
/// cannot tell it from a partial checksum (nor need it: the result is right
/// either way), so every run pays for the detection and the summing from
/// scratch, as a partial-checksum packet does.
fn partial_fixed_point(dst: SocketAddrV4, relay: SocketAddr, payload: usize) -> Vec<u8> {
    let mut f = UdpFrame::new(relay, dst);
    f.dst_mac = [0x02, 0, 0, 0, 0xbe, 1];
    f.src_mac = [0x02, 0, 0, 0, 0xbe, 1];
    f.ttl = 64;
    f.payload = relay_tests::packet::rtp_payload(payload);
    let mut partial = f.clone();
    partial.partial_udp_checksum = true;
    let csum_at = relay_tests::packet::ETH_LEN + relay_tests::packet::IPV4_LEN + 6;
    let want = partial.build()[csum_at..csum_at + 2].to_vec();
    let at = payload - 2;
    for w in 0..=u16::MAX {
        f.payload[at..].copy_from_slice(&w.to_be_bytes());
        let frame = f.build();
        if frame[csum_at..csum_at + 2] == want[..] {
            return frame;
        }
    }
    panic!("no payload word makes the checksum equal the pseudo-header sum");
}

/// Runs `prog` `iters` times on `frame` and returns the kernel's total time.
fn run(prog: &Xdp, ifindex: u32, frame: &[u8], iters: u64, expect: u32) -> Duration {
    let ctx = xdp_md_for(ifindex, frame.len());
    let mut out = vec![0u8; frame.len() + 64];
    let repeat = u32::try_from(iters).unwrap_or(u32::MAX).max(1);
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(r.return_value, expect, "unexpected XDP verdict");
    r.duration * repeat
}

fn bench(c: &mut Criterion) {
    if !relay_tests::privileges::is_root() {
        eprintln!("SKIPPED xdp_program bench: needs root (BPF_PROG_TEST_RUN, network namespace)");
        return;
    }
    let ns = Netns::new("bench").unwrap();
    veth(
        ns.end("bx", "10.0.0.1/24", "02:00:00:00:be:01"),
        ns.end("bx-p", "", "02:00:00:00:be:02"),
    )
    .unwrap();
    // The gateway's MAC is bx's own: a frame the program rewrites for it
    // arrives again as one sent to bx (the program drops frames for other
    // hosts' MACs), which is what lets the test buffer go round the ring.
    ns.static_neighbour("10.0.0.2", "02:00:00:00:be:01", "bx")
        .unwrap();
    ns.ip(&["route", "add", "11.0.0.0/8", "via", "10.0.0.2"])
        .unwrap();
    ns.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:be::1/64",
        "dev",
        "bx",
        "nodad",
    ])
    .unwrap();
    ns.static_neighbour("2001:db8:be::2", "02:00:00:00:be:01", "bx")
        .unwrap();
    ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:11::/48",
        "via",
        "2001:db8:be::2",
    ])
    .unwrap();
    // BPF_PROG_TEST_RUN resolves the ingress interface in the caller's
    // namespace: this whole benchmark thread moves there.
    let file = std::fs::File::open(format!("/run/netns/{}", ns.name())).unwrap();
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let ifindex = relay_userspace::netdev::ifindex("bx").unwrap();

    let pins = PinDirGuard::new("bench");
    let config = XdpConfig {
        interfaces: vec!["bx".into()],
        pin_dir: pins.0.clone(),
        mode: ModePolicy::Generic,
        max_streams: SIZES[2] + 16,
        max_addresses: MAX_ADDRESSES,
        row_ports: 0..=u16::MAX,
        enable_forwarding: true,
        test_clock: false,
        // A live stream (a packet every 20 ms) always finds its next hop
        // cached with relayd's default 500 ms; a stream of the 1 M ring is
        // revisited only once per pass (~0.4 s), so the ring needs a longer
        // cache to measure that same steady state. The FIB-every-packet
        // case has its own row below.
        next_hop_cache: Duration::from_secs(60),
    };
    let mut dp = XdpDatapath::start(&config).expect("XDP datapath");
    let relay = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), PORT));
    let sender = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 5000);

    // The floor: a program that only returns XDP_PASS.
    let floor_pins = PinDirGuard::new("bench-floor");
    relay_userspace::bpffs::ensure_pin_dir(&floor_pins.0).unwrap();
    let mut floor_obj = EbpfLoader::new()
        .default_map_pin_directory(&floor_pins.0)
        .load(relay_ebpf::relay_object())
        .unwrap();
    let floor: &mut Xdp = floor_obj
        .program_mut(relay_ebpf::PROGRAM_PEER_PASS)
        .unwrap()
        .try_into()
        .unwrap();
    floor.load().unwrap();
    let any = frame_to(stream_addr(0), sender);
    c.bench_function("xdp/floor (empty program)", |b| {
        b.iter_custom(|iters| run(floor, ifindex, &any, iters, XDP_PASS))
    });

    // Counters slots in ring order, as before the stream table was an
    // array; the last row scatters them too.
    let rows = SIZES
        .map(|n| {
            (
                n,
                false,
                MediaTracking::None,
                format!("xdp/hit, rewrite + counters, {n} streams"),
            )
        })
        .into_iter()
        .chain([
            (
                SIZES[2],
                true,
                MediaTracking::None,
                format!(
                    "xdp/hit, {} streams, counters slots scattered too",
                    SIZES[2]
                ),
            ),
            (
                SIZES[2],
                true,
                MediaTracking::Rtp { clock_rate: 8000 },
                format!(
                    "xdp/hit, {} streams, slots scattered, RTP figures",
                    SIZES[2]
                ),
            ),
        ]);
    for (n, scattered_slots, media, name) in rows {
        for i in 0..n {
            let spec = StreamSpec {
                local: SocketAddr::V4(stream_addr(place(i, n))),
                peer: SocketAddr::V4(stream_addr(place((i + 1) % n, n))),
                source: relay,
                strict_source: None,
                stats_slot: if scattered_slots { place(i, n) } else { i },
                to_userspace: false,
                max_pps: 0,
                media,
                ice: false,
                rtcp_demux: false,
            };
            dp.install(&spec).unwrap();
        }
        let mut start = 0u32;
        let prog = dp.relay_program().unwrap();
        c.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let frame = frame_to(stream_addr(place(start, n)), sender);
                start = ((u64::from(start) + iters) % u64::from(n)) as u32;
                run(prog, ifindex, &frame, iters, XDP_TX)
            })
        });
        if n == 1 {
            // The same one-stream hit when the checksum is partial (a
            // same-host sender's): detected, then summed from scratch.
            for payload in [172, 1400] {
                let frame = partial_fixed_point(stream_addr(0), relay, payload);
                c.bench_function(
                    &format!("xdp/hit, 1 stream, partial UDP checksum, {payload}-byte payload"),
                    |b| b.iter_custom(|iters| run(prog, ifindex, &frame, iters, XDP_TX)),
                );
            }
        }
    }

    let prog = dp.relay_program().unwrap();
    let miss = frame_to(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 31999), sender);
    c.bench_function("xdp/miss (pass to the stack)", |b| {
        b.iter_custom(|iters| run(prog, ifindex, &miss, iters, XDP_PASS))
    });
    let strict = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 31000);
    dp.install(&StreamSpec {
        local: SocketAddr::V4(strict),
        peer: SocketAddr::V4(stream_addr(0)),
        source: relay,
        strict_source: Some("10.0.0.3:5000".parse().unwrap()),
        stats_slot: SIZES[2] + 1,
        to_userspace: false,
        max_pps: 0,
        media: MediaTracking::None,
        ice: false,
        rtcp_demux: false,
    })
    .unwrap();
    let prog = dp.relay_program().unwrap();
    let intruder = frame_to(strict, sender);
    c.bench_function("xdp/strict-source drop", |b| {
        b.iter_custom(|iters| run(prog, ifindex, &intruder, iters, XDP_DROP))
    });

    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let v6_stream = sa("[2001:db8:11::1]:30000");
    let bridged = [sa("11.0.0.200:30010"), sa("[2001:db8:11::2]:30010")];
    let sources = [sa("[2001:db8:be::1]:30010"), sa("10.0.0.1:30010")];
    let specs = [
        (v6_stream, v6_stream, sa("[2001:db8:be::1]:30000")),
        (bridged[0], bridged[1], sources[0]),
        (bridged[1], bridged[0], sources[1]),
    ];
    for (i, (local, peer, source)) in specs.into_iter().enumerate() {
        dp.install(&StreamSpec {
            local,
            peer,
            source,
            strict_source: None,
            stats_slot: SIZES[2] + 2 + i as u32,
            to_userspace: false,
            max_pps: 0,
            media: MediaTracking::None,
            ice: false,
            rtcp_demux: false,
        })
        .unwrap();
    }
    let prog = dp.relay_program().unwrap();
    let frame = |dst: SocketAddr, src: &str| {
        let mut f = UdpFrame::new(sa(src), dst);
        f.dst_mac = [0x02, 0, 0, 0, 0xbe, 1];
        f.src_mac = [0x02, 0, 0, 0, 0xbe, 2];
        f.build()
    };
    let v6 = frame(v6_stream, "[2001:db8:be::2]:5000");
    c.bench_function("xdp/hit IPv6, 1 stream", |b| {
        b.iter_custom(|iters| run(prog, ifindex, &v6, iters, XDP_TX))
    });
    let v4 = frame(bridged[0], "10.0.0.2:5000");
    c.bench_function("xdp/hit bridged, 4 -> 6 and 6 -> 4 alternately", |b| {
        b.iter_custom(|iters| run(prog, ifindex, &v4, iters, XDP_TX))
    });

    // The cost of the RTP figures: two streams told apart only by what they
    // carry, measured back to back (the second reads the precise clock and
    // updates sequence, loss and jitter on every packet). Each sends to its
    // own key, so the rewritten buffer keeps hitting the same stream.
    for (name, port, slot, media) in [
        (
            "xdp/hit, 1 stream, no RTP figures",
            31002,
            SIZES[2] + 5,
            MediaTracking::None,
        ),
        (
            "xdp/hit, 1 stream, RTP figures (seq, loss, jitter)",
            31004,
            SIZES[2] + 6,
            MediaTracking::Rtp { clock_rate: 8000 },
        ),
    ] {
        let local = SocketAddrV4::new(Ipv4Addr::new(11, 1, 0, 1), port);
        dp.install(&StreamSpec {
            local: SocketAddr::V4(local),
            peer: SocketAddr::V4(local),
            source: relay,
            strict_source: None,
            stats_slot: slot,
            to_userspace: false,
            max_pps: 0,
            media,
            ice: false,
            rtcp_demux: false,
        })
        .unwrap();
        let prog = dp.relay_program().unwrap();
        let frame = frame_to(local, sender);
        c.bench_function(name, |b| {
            b.iter_custom(|iters| run(prog, ifindex, &frame, iters, XDP_TX))
        });
    }

    // The next-hop cache's worth: the same one-stream hit through a second
    // instance that asks the FIB for every packet (--next-hop-cache-ms=0),
    // on a second veth shaped like the first (a route via a neighbour).
    veth(
        ns.end("by", "10.0.1.1/24", "02:00:00:00:bf:01"),
        ns.end("by-p", "", "02:00:00:00:bf:02"),
    )
    .unwrap();
    // The gateway's MAC is by's own, as on bx: the rewritten frame stays
    // addressed to by, so the program's other-host check lets every
    // repeat of the test buffer through.
    ns.static_neighbour("10.0.1.2", "02:00:00:00:bf:01", "by")
        .unwrap();
    ns.ip(&["route", "add", "12.0.0.0/8", "via", "10.0.1.2"])
        .unwrap();
    let uncached_pins = PinDirGuard::new("bench-nocache");
    let mut uncached = XdpDatapath::start(&XdpConfig {
        interfaces: vec!["by".into()],
        pin_dir: uncached_pins.0.clone(),
        next_hop_cache: Duration::ZERO,
        max_streams: 16,
        ..config
    })
    .expect("second XDP datapath");
    // Sent to its own key, like the cached one-stream case.
    let local = SocketAddrV4::new(Ipv4Addr::new(12, 0, 0, 1), PORT);
    uncached
        .install(&StreamSpec {
            local: SocketAddr::V4(local),
            peer: SocketAddr::V4(local),
            source: "10.0.1.1:30000".parse().unwrap(),
            strict_source: None,
            stats_slot: 0,
            to_userspace: false,
            max_pps: 0,
            media: MediaTracking::None,
            ice: false,
            rtcp_demux: false,
        })
        .unwrap();
    let by = relay_userspace::netdev::ifindex("by").unwrap();
    let frame = {
        let mut f = UdpFrame::new(SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 5000), local);
        f.dst_mac = [0x02, 0, 0, 0, 0xbf, 1];
        f.src_mac = [0x02, 0, 0, 0, 0xbf, 2];
        f.build()
    };
    let prog = uncached.relay_program().unwrap();
    c.bench_function(
        "xdp/hit, 1 stream, FIB lookup every packet (no next-hop cache)",
        |b| b.iter_custom(|iters| run(prog, by, &frame, iters, XDP_TX)),
    );
    uncached.shutdown();
    dp.shutdown();
    drop(floor_obj);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
