//! RTP figures of the real XDP program (BPF_PROG_TEST_RUN), packet by
//! packet against the host-side model of the same algorithm
//! (`relay_common::rtp`), which its own tests check against RFC 3550 and a
//! floating-point reference.
//!
//! The program is loaded with its test clock, so every packet "arrives" at a
//! time the schedule chooses and the jitter is deterministic. Each scenario
//! runs on its own stream; after every packet the kernel's `rtp_stats` entry
//! must equal the model's, field for field.

use std::net::SocketAddrV4;

use aya::programs::{TestRun as _, TestRunOptions};
use relay_common::{rtp, CounterId, RtpStats, TF_RTP};
use relay_tests::{
    netns::{mac_text, veth, Netns},
    packet::{g711_packet, rtp_packet, UdpFrame},
    require_root, PinDirGuard,
};
use relay_userspace::datapath::{
    xdp::{selftest::xdp_md_for, ModePolicy, XdpConfig, XdpDatapath},
    Datapath as _, MediaTracking, StreamSpec,
};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;
const RELAY: &str = "10.10.1.1";
const HOST: &str = "10.10.1.2";
const MAC_RELAY: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
const MAC_HOST: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
const CLOCK: u32 = 8000;

/// One relay port (hairpin: packets from the host go back to the host).
struct Port {
    slot: u32,
    port: u16,
    media: MediaTracking,
}

impl Port {
    const fn rtp(slot: u32) -> Self {
        Port {
            slot,
            port: 30000 + 2 * slot as u16,
            media: MediaTracking::Rtp { clock_rate: CLOCK },
        }
    }

    fn flags(&self) -> u32 {
        self.media.flags()
    }

    fn spec(&self, strict: bool) -> StreamSpec {
        let local = format!("{RELAY}:{}", self.port).parse().unwrap();
        StreamSpec {
            local,
            peer: format!("{HOST}:{}", 5000 + self.port).parse().unwrap(),
            source: local,
            strict_source: strict.then(|| format!("{HOST}:5000").parse().unwrap()),
            stats_slot: self.slot,
            to_userspace: false,
            max_pps: 0,
            media: self.media,
            ice: false,
            rtcp_demux: false,
        }
    }
}

/// A 20 ms G.711 packet of SSRC 0x1234 sent at `seq` (timestamp follows).
fn g711(seq: u16) -> Vec<u8> {
    g711_packet(seq, 0x1234)
}

struct Bench {
    dp: XdpDatapath,
    ifindex: u32,
}

impl Bench {
    /// Runs the program on `payload` from the host's `from_port` to `port`
    /// at `now_ns`: its verdict and the frame it left.
    fn run(
        &mut self,
        port: &Port,
        payload: &[u8],
        (now_ns, from_port): (u64, u16),
    ) -> (u32, Vec<u8>) {
        let src: SocketAddrV4 = format!("{HOST}:{from_port}").parse().unwrap();
        let dst: SocketAddrV4 = format!("{RELAY}:{}", port.port).parse().unwrap();
        let mut frame = UdpFrame::new(src, dst);
        frame.src_mac = MAC_HOST;
        frame.dst_mac = MAC_RELAY;
        frame.payload = payload.to_vec();
        let input = frame.build();
        self.dp.set_test_clock(now_ns).unwrap();
        let ctx = xdp_md_for(self.ifindex, input.len());
        let mut out = vec![0u8; input.len() + 64];
        let result = self
            .dp
            .relay_program()
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(&input),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .expect("test run");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// Sends `payload` from the host's `from_port` to `port` at `now_ns`; checks the
    /// action and that the kernel's figures equal `model` fed the same.
    fn send(
        &mut self,
        what: &str,
        port: &Port,
        payload: &[u8],
        (now_ns, from_port): (u64, u16),
        model: &mut RtpStats,
        action: u32,
    ) {
        let (verdict, out) = self.run(port, payload, (now_ns, from_port));
        assert_eq!(verdict, action, "{what}: action");
        if action == XDP_TX {
            // Only addresses and ports change: the payload (SRTP or not)
            // leaves byte for byte as it came.
            assert_eq!(
                &out[out.len() - payload.len()..],
                payload,
                "{what}: payload"
            );
            rtp::observe(
                model,
                payload,
                port.flags(),
                port.media.clock_rate(),
                now_ns,
            );
        }
        let kernel = self.dp.rtp_stats(port.slot).unwrap();
        assert_eq!(
            &kernel, model,
            "{what}: kernel figures differ from the model"
        );
    }
}

fn topology() -> Netns {
    let ns = Netns::new("rtpfx").unwrap();
    let (relay_mac, host_mac) = (mac_text(MAC_RELAY), mac_text(MAC_HOST));
    veth(
        ns.end("rfa", "10.10.1.1/24", &relay_mac),
        ns.end("rfa-p", "", &host_mac),
    )
    .unwrap();
    ns.static_neighbour(HOST, &host_mac, "rfa").unwrap();
    ns
}

/// Sends `seqs` of SSRC 0x1234, 20 ms apart, on `port`.
fn play(b: &mut Bench, what: &str, port: &Port, seqs: &[u16], model: &mut RtpStats) {
    for (i, &seq) in seqs.iter().enumerate() {
        let now = 1_000_000_000 + i as u64 * 20_000_000;
        b.send(
            &format!("{what} #{i}"),
            port,
            &g711(seq),
            (now, 5000),
            model,
            XDP_TX,
        );
    }
}

/// Runs `f` against a freshly started datapath (test clock on) in its own
/// namespace, then detaches it.
fn with_bench(tag: &str, f: impl FnOnce(&mut Bench) + Send) {
    let ns = topology();
    let pins = PinDirGuard::new(tag);
    let pin_dir = pins.0.clone();
    ns.run(move || {
        let config = XdpConfig {
            interfaces: vec!["rfa".into()],
            pin_dir,
            mode: ModePolicy::Generic,
            max_streams: 64,
            max_addresses: 8,
            row_ports: 0..=u16::MAX,
            enable_forwarding: true,
            test_clock: true,
            next_hop_cache: std::time::Duration::from_millis(500),
        };
        let dp = XdpDatapath::start(&config).expect("XDP datapath starts");
        let ifindex = relay_userspace::netdev::ifindex("rfa").unwrap();
        let mut b = Bench { dp, ifindex };
        f(&mut b);
        b.dp.shutdown();
    })
    .unwrap();
}

#[test]
fn rtp_figures_match_the_model() {
    require_root!();
    with_bench("rtpfx", |b| {
        let wrap = Port::rtp(1);
        let reorder = Port::rtp(2);
        let burst = Port::rtp(3);
        let ssrc_change = Port::rtp(4);
        let jitter = Port::rtp(5);
        let mixed = Port::rtp(6);
        let rtcp_port = Port {
            slot: 7,
            port: 30015,
            media: MediaTracking::Rtcp,
        };
        let strict = Port::rtp(8);
        let plain = Port {
            slot: 9,
            port: 30018,
            media: MediaTracking::None,
        };
        for p in [
            &wrap,
            &reorder,
            &burst,
            &ssrc_change,
            &jitter,
            &mixed,
            &rtcp_port,
            &plain,
        ] {
            b.dp.install(&p.spec(false)).unwrap();
        }
        b.dp.install(&strict.spec(true)).unwrap();

        // Sequence wrap: one cycle, nothing lost.
        let mut m = RtpStats::default();
        play(b, "wrap", &wrap, &[65533, 65534, 65535, 0, 1, 2], &mut m);
        assert_eq!((m.cycles, rtp::lost_total(&m)), (rtp::SEQ_MOD, 0));

        // Reordering: late packets are not loss.
        let mut m = RtpStats::default();
        play(
            b,
            "reorder",
            &reorder,
            &[10, 12, 11, 13, 16, 14, 15],
            &mut m,
        );
        assert_eq!((m.received, rtp::lost_total(&m)), (7, 0));

        // A burst of 5 lost packets, then a wild jump (ignored), then a
        // restart confirmed by two packets in a row.
        let mut m = RtpStats::default();
        play(
            b,
            "burst",
            &burst,
            &[100, 101, 102, 108, 109, 30000, 110, 40000, 40001, 40002],
            &mut m,
        );
        assert_eq!(rtp::lost_total(&m), 5);
        assert_eq!(m.base_seq, 40001);

        // SSRC change: counted, sequence restarts, earlier loss kept.
        let mut m = RtpStats::default();
        play(b, "ssrc", &ssrc_change, &[1, 2, 4], &mut m);
        let other = rtp_packet(7000, 99, 0xbeef, 8);
        b.send(
            "ssrc new",
            &ssrc_change,
            &other,
            (2_000_000_000, 5000),
            &mut m,
            XDP_TX,
        );
        assert_eq!((m.ssrc, m.ssrc_changes, m.payload_type), (0xbeef, 1, 8));
        assert_eq!(rtp::lost_total(&m), 1);

        // Jitter on a synthetic arrival schedule: 20 ms packets delayed by a
        // repeating pattern (a 25 ms delay lets the next one overtake).
        let delays_us = [0u64, 3000, 500, 12000, 0, 7000, 1500, 0, 25000, 4000];
        let mut schedule: Vec<(u64, u16)> = (0..200u64)
            .map(|i| {
                let arrival = 5_000_000_000 + i * 20_000_000 + delays_us[(i % 10) as usize] * 1000;
                (arrival, i as u16)
            })
            .collect();
        schedule.sort_unstable();
        let mut m = RtpStats::default();
        let mut exact = 0f64;
        let mut prev_transit: Option<f64> = None;
        for (i, &(arrival, seq)) in schedule.iter().enumerate() {
            b.send(
                &format!("jitter #{i}"),
                &jitter,
                &g711(seq),
                (arrival, 5000),
                &mut m,
                XDP_TX,
            );
            let transit = arrival as f64 * f64::from(CLOCK) / 1e9 - f64::from(seq) * 160.0;
            if let Some(p) = prev_transit {
                exact += ((transit - p).abs() - exact) / 16.0;
            }
            prev_transit = Some(transit);
        }
        let kernel_jitter = f64::from(b.dp.rtp_stats(jitter.slot).unwrap().jitter_q4) / 16.0;
        assert!(
            (kernel_jitter - exact).abs() <= 1.5,
            "kernel jitter {kernel_jitter} units vs RFC 3550 {exact}"
        );
        assert!(exact > 20.0, "the schedule is jittery ({exact})");

        // Non-RTP on an RTP port (STUN, DTLS, short garbage) and rtcp-mux:
        // forwarded, counted apart, the RTP figures untouched.
        let mut m = RtpStats::default();
        play(b, "mixed", &mixed, &[1, 2], &mut m);
        let stun = [
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 1, 2, 3];
        let mut sr = vec![0u8; 28];
        sr[..2].copy_from_slice(&[0x80, 200]);
        for (what, payload) in [
            ("stun", &stun[..]),
            ("dtls", &dtls[..]),
            ("garbage", &b"xy"[..]),
            ("rtcp-mux", &sr[..]),
        ] {
            b.send(what, &mixed, payload, (3_000_000_000, 5000), &mut m, XDP_TX);
        }
        play(b, "mixed after", &mixed, &[3], &mut m);
        assert_eq!((m.other_packets, m.rtcp_packets, m.rtp_packets), (3, 1, 3));
        assert_eq!(m.rtcp_bytes, 28);
        assert_eq!(rtp::lost_total(&m), 0);

        // The RTCP port: RTCP counted, anything else apart.
        let mut m = RtpStats::default();
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
        b.send("rtcp rr", &rtcp_port, &rr, (1, 5001), &mut m, XDP_TX);
        b.send("rtcp sr", &rtcp_port, &sr, (2, 5001), &mut m, XDP_TX);
        b.send("rtcp junk", &rtcp_port, &g711(1), (3, 5001), &mut m, XDP_TX);
        assert_eq!((m.rtcp_packets, m.other_packets), (2, 1));

        // Strict source: a stranger's packets are dropped and never reach
        // the figures.
        let mut m = RtpStats::default();
        b.send("strict ok", &strict, &g711(1), (1, 5000), &mut m, XDP_TX);
        let before = b.dp.counters().unwrap();
        b.send(
            "strict stranger",
            &strict,
            &g711(500),
            (2, 6666),
            &mut m,
            XDP_DROP,
        );
        let delta = b.dp.counters().unwrap().since(&before);
        assert_eq!(delta.packets(CounterId::DropStrictSource), 1);
        assert_eq!(m.received, 1);

        // A stream that is not RTP keeps no figures at all.
        let mut m = RtpStats::default();
        b.send("plain", &plain, &g711(1), (1, 5000), &mut m, XDP_TX);
        assert_eq!(m, RtpStats::default());
    });
}

#[test]
fn installing_seeds_the_figures() {
    require_root!();
    with_bench("rtpseed", |b| {
        let port = Port::rtp(1);

        // What userspace saw before the stream moved into the kernel.
        let mut m = RtpStats::default();
        for seq in [10u16, 11, 12] {
            rtp::observe(
                &mut m,
                &g711(seq),
                TF_RTP,
                CLOCK,
                1_000_000_000 + u64::from(seq) * 20_000_000,
            );
        }
        b.dp.install_seeded(&port.spec(false), &m).unwrap();
        assert_eq!(b.dp.rtp_stats(port.slot).unwrap(), m);
        // The kernel carries on: 13 follows, 15 shows one lost.
        b.send(
            "13",
            &port,
            &g711(13),
            (1_260_000_000, 5000),
            &mut m,
            XDP_TX,
        );
        b.send(
            "15",
            &port,
            &g711(15),
            (1_300_000_000, 5000),
            &mut m,
            XDP_TX,
        );
        assert_eq!((m.received, rtp::lost_total(&m)), (5, 1));
    });
}

/// XDP's verdict on one G.711 packet from the host to `port` at `now_ns`
/// (no model: for rate-cap scenarios, where only pass or drop matters).
fn verdict(b: &mut Bench, port: &Port, seq: u16, now_ns: u64) -> u32 {
    b.run(port, &g711(seq), (now_ns, 5000)).0
}

/// A flood denser than one packet per millionth of a second over the cap
/// (here one every 500 ns against 1000 pps) must still let the cap's rate
/// through: the bucket once earned nothing from such short gaps (rounded
/// down to zero thousandths of a packet) and starved the stream, its own
/// packets included, for as long as the flood lasted. RTP streams read the
/// precise clock, which is where gaps that short are seen.
#[test]
fn rate_cap_lets_its_rate_through_a_dense_flood() {
    require_root!();
    with_bench("rtpcap", |b| {
        const CAP: u32 = 1000;
        const GAP_NS: u64 = 500;
        let port = Port::rtp(10);
        b.dp.install(&StreamSpec {
            max_pps: CAP,
            ..port.spec(false)
        })
        .unwrap();
        let start = 5_000_000_000u64;
        let passed_in = |b: &mut Bench, from: u64, packets: u64| -> u64 {
            (0..packets)
                .filter(|i| {
                    let seq = (from + i) as u16;
                    verdict(b, &port, seq, start + (from + i) * GAP_NS) == XDP_TX
                })
                .count() as u64
        };
        // One second of burst: the first CAP pass, then the bucket is dry
        // (the 1 ms these packets take earns the next one, due at 1 ms).
        let burst = passed_in(b, 0, 2 * u64::from(CAP));
        assert_eq!(burst, u64::from(CAP), "the burst");
        // 20 ms more of the flood: the cap's 20 packets, give or take one.
        let later = passed_in(b, 2 * u64::from(CAP), 40_000);
        assert!(
            (19..=21).contains(&later),
            "{later} packets passed in 20 ms of flood under a {CAP} pps cap"
        );
        let stats = b.dp.stream_stats(port.slot).unwrap();
        assert_eq!(stats.packets, burst + later);
        assert_eq!(stats.dropped, 42_000 - burst - later);
    });
}
