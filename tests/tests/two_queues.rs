//! Stream counters stay exact when two CPUs carry one stream through a real
//! interface (ABI v8: one shared record per stream, atomic adds).
//!
//! ```text
//!  ns A                    ns R (relay)                ns B
//!  a0 10.30.1.2/24 ------- a1 10.30.1.1/24
//!                          b1 10.30.2.1/24 ------- b0 10.30.2.2/24
//! ```
//!
//! Every veth has two queues. veth runs the receiving end's XDP program in
//! the NAPI of the receive queue numbered like the sender's transmit queue,
//! scheduled on the sending CPU. XPS on a0 maps transmit queue 0 to one CPU
//! and queue 1 to another, and one unconnected UDP socket (no cached route,
//! so no cached queue: XPS picks one per packet by the sending CPU) sends
//! one stream's packets from a thread on each CPU. The relay's program thus
//! runs for the same stream on two CPUs at once.

use std::{
    net::{SocketAddr, UdpSocket},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use relay_common::CounterId;
use relay_tests::{
    netns::{veth_with_queues, Netns},
    packet::rtp_payload,
    peer::{attach_peer_pass, PeerPass},
    require_root,
    topology::{bind_udp, exchange},
    PinDirGuard,
};
use relay_userspace::datapath::{
    xdp::{AttachMode, ModePolicy, XdpConfig, XdpDatapath},
    Datapath, MediaTracking, StreamSpec,
};

const HOST_A: &str = "10.30.1.2";
const RELAY_A: &str = "10.30.1.1";
const RELAY_B: &str = "10.30.2.1";
const HOST_B: &str = "10.30.2.2";
const MAC_A0: &str = "02:00:00:30:01:02";
const MAC_A1: &str = "02:00:00:30:01:01";
const MAC_B1: &str = "02:00:00:30:02:01";
const MAC_B0: &str = "02:00:00:30:02:02";

/// Packets each sender thread sends, unless [`SEND_LIMIT`] comes first.
const PER_THREAD: u64 = 200_000;
/// Bound on the sending, so a slow machine ends the test rather than hangs.
const SEND_LIMIT: Duration = Duration::from_secs(60);
const SLOT: u32 = 10;

/// The first two CPUs this process may run on, if it has two.
fn two_cpus() -> Option<[usize; 2]> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let mut cpus = (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    Some([cpus.next()?, cpus.next()?])
}

fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// `cpu` as a sysfs CPU mask: hex, in comma-separated 32-bit words.
fn cpu_mask(cpu: usize) -> String {
    let mut words = vec![0u32; cpu / 32 + 1];
    words[cpu / 32] = 1 << (cpu % 32);
    let words: Vec<String> = words.iter().rev().map(|w| format!("{w:08x}")).collect();
    words.join(",")
}

/// XPS: packets sent on `cpu` leave `dev` by transmit queue `queue`. Written
/// through `ip netns exec`, which mounts the namespace's own /sys (a thread
/// that only joined the namespace still sees the host's devices there).
fn set_xps(ns: &Netns, dev: &str, queue: usize, cpu: usize) {
    let path = format!("/sys/class/net/{dev}/queues/tx-{queue}/xps_cpus");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg(format!("echo {} > {path}", cpu_mask(cpu)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setting {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rx_queue_<n>_xdp_packets` of `dev` for each of its two queues
/// (`ethtool -S`: frames its XDP program saw on that queue).
fn xdp_packets_per_queue(ns: &Netns, dev: &str) -> [u64; 2] {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "ethtool", "-S", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    [0, 1].map(|q| {
        let name = format!("rx_queue_{q}_xdp_packets:");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&name))
            .unwrap_or_else(|| panic!("no {name} in ethtool -S {dev}: {text}"))
            .trim()
            .parse()
            .unwrap()
    })
}

/// forwarded_redirect packets by CPU.
fn redirected_per_cpu(dp: &XdpDatapath) -> Vec<u64> {
    let values = dp
        .maps()
        .counters
        .get(&(CounterId::FwdRedirect as u32), 0)
        .unwrap();
    values.iter().map(|c| c.packets).collect()
}

/// Sends up to [`PER_THREAD`] copies of `payload` to `to` from `cpu`;
/// returns how many went.
fn send_from(cpu: usize, sock: &UdpSocket, to: SocketAddr, payload: &[u8]) -> u64 {
    pin_to(cpu);
    let deadline = Instant::now() + SEND_LIMIT;
    let mut sent = 0;
    while sent < PER_THREAD && Instant::now() < deadline {
        sock.send_to(payload, to).expect("send");
        sent += 1;
    }
    sent
}

/// The three namespaces, wired with two-queue veths and XPS, and relayd's
/// datapath on the relay's side in native mode.
struct TwoQueueBed {
    cpus: [usize; 2],
    a: Netns,
    r: Netns,
    b: Netns,
    dp: XdpDatapath,
    /// The far ends' pass programs, which native XDP transmit needs.
    _peers: [PeerPass; 2],
    _pins: PinDirGuard,
}

/// Two tests would share the two CPUs and spoil each other's load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl TwoQueueBed {
    /// `None` (after saying why) on a machine with fewer than two CPUs.
    fn new(tag: &str) -> Option<Self> {
        let Some(cpus) = two_cpus() else {
            eprintln!("SKIPPED {tag}: fewer than two CPUs available");
            return None;
        };
        let (a, r, b) = (
            Netns::new(&format!("{tag}a")).unwrap(),
            Netns::new(&format!("{tag}r")).unwrap(),
            Netns::new(&format!("{tag}b")).unwrap(),
        );
        veth_with_queues(
            a.end("a0", "10.30.1.2/24", MAC_A0),
            r.end("a1", "10.30.1.1/24", MAC_A1),
            2,
        )
        .unwrap();
        // Two queues here too: each CPU redirects into b0's queue of its own.
        veth_with_queues(
            r.end("b1", "10.30.2.1/24", MAC_B1),
            b.end("b0", "10.30.2.2/24", MAC_B0),
            2,
        )
        .unwrap();
        r.static_neighbour(HOST_A, MAC_A0, "a1").unwrap();
        r.static_neighbour(HOST_B, MAC_B0, "b1").unwrap();
        for (queue, cpu) in cpus.into_iter().enumerate() {
            set_xps(&a, "a0", queue, cpu);
        }
        let peers = [
            a.run(|| attach_peer_pass("a0")).unwrap().unwrap(),
            b.run(|| attach_peer_pass("b0")).unwrap().unwrap(),
        ];

        let pins = PinDirGuard::new(tag);
        let config = XdpConfig {
            interfaces: vec!["a1".into(), "b1".into()],
            pin_dir: pins.0.clone(),
            mode: ModePolicy::Native,
            max_streams: 1024,
            max_addresses: 8,
            row_ports: 0..=u16::MAX,
            enable_forwarding: true,
            test_clock: false,
            next_hop_cache: Duration::from_millis(500),
        };
        let dp = r.run(|| XdpDatapath::start(&config)).unwrap().unwrap();
        for att in dp.attachments() {
            assert_eq!(att.mode, AttachMode::Native, "{}", att.iface);
        }
        Some(TwoQueueBed {
            cpus,
            a,
            r,
            b,
            dp,
            _peers: peers,
            _pins: pins,
        })
    }

    /// A to B through the relay's port 30000, as slot [`SLOT`].
    fn install(&mut self, max_pps: u32, media: MediaTracking) -> SocketAddr {
        let sa = |ip: &str, port: u16| SocketAddr::new(ip.parse().unwrap(), port);
        let to = sa(RELAY_A, 30000);
        self.dp
            .install(&StreamSpec {
                local: to,
                peer: sa(HOST_B, 40000),
                source: sa(RELAY_B, 30002),
                strict_source: None,
                stats_slot: SLOT,
                to_userspace: false,
                max_pps,
                media,
                ice: false,
                rtcp_demux: false,
            })
            .unwrap();
        to
    }

    /// Sends `payload` to `to` from a thread on each CPU (up to
    /// [`PER_THREAD`] each) while B drains; returns what was sent, what B
    /// received and how long the sending took.
    fn flood(
        &self,
        tx: &UdpSocket,
        rx: &UdpSocket,
        to: SocketAddr,
        payload: &[u8],
    ) -> (u64, u64, Duration) {
        let done = AtomicBool::new(false);
        let started = Instant::now();
        std::thread::scope(|s| {
            // Drains B so its stack does not answer with ICMP; what B's socket
            // drops under load does not matter, the program counts forwarding.
            let receiver = s.spawn(|| {
                rx.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 2048];
                let mut got = 0u64;
                loop {
                    match rx.recv_from(&mut buf) {
                        Ok(_) => got += 1,
                        Err(_) if done.load(Ordering::Relaxed) => return got,
                        Err(_) => {}
                    }
                }
            });
            let senders = self
                .cpus
                .map(|cpu| s.spawn(move || send_from(cpu, tx, to, payload)));
            let sent: u64 = senders.into_iter().map(|h| h.join().unwrap()).sum();
            let took = started.elapsed();
            done.store(true, Ordering::Relaxed);
            (sent, receiver.join().unwrap(), took)
        })
    }

    /// The stream's record once the last frames have left their queues.
    fn settled_stats(&self) -> relay_common::StreamStats {
        let mut stats = self.dp.stream_stats(SLOT).unwrap();
        let settle = Instant::now() + Duration::from_secs(5);
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.dp.stream_stats(SLOT).unwrap();
            let settled = now.packets == stats.packets && now.dropped == stats.dropped;
            stats = now;
            if settled || Instant::now() > settle {
                return stats;
            }
        }
    }

    /// XDP packets per receive queue of a1 since `before`.
    fn queues_since(&self, before: [u64; 2]) -> [u64; 2] {
        let after = xdp_packets_per_queue(&self.r, "a1");
        [0, 1].map(|q| after[q] - before[q])
    }
}

#[test]
fn stream_counters_stay_exact_with_two_receive_queues() {
    require_root!();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut bed) = TwoQueueBed::new("2q") else {
        return;
    };
    let to = bed.install(0, MediaTracking::Rtp { clock_rate: 0 });
    let cpus = bed.cpus;
    let tx = bind_udp(&bed.a, &format!("{HOST_A}:5000")).unwrap();
    let rx = bind_udp(&bed.b, &format!("{HOST_B}:40000")).unwrap();
    // The path works before the load starts.
    assert_eq!(exchange(&tx, &to.to_string(), &rx, 1).unwrap().len(), 1);

    let payload = rtp_payload(172);
    let stats_before = bed.dp.stream_stats(SLOT).unwrap();
    let rtp_before = bed.dp.rtp_stats(SLOT).unwrap();
    let cpu_before = redirected_per_cpu(&bed.dp);
    let queues_before = xdp_packets_per_queue(&bed.r, "a1");

    let (sent, received, _) = bed.flood(&tx, &rx, to, &payload);

    let stats = bed.settled_stats();
    let rtp = bed.dp.rtp_stats(SLOT).unwrap();
    let per_cpu: Vec<u64> = redirected_per_cpu(&bed.dp)
        .iter()
        .zip(&cpu_before)
        .map(|(after, before)| after - before)
        .collect();
    let per_queue = bed.queues_since(queues_before);
    let packets = stats.packets - stats_before.packets;
    let bytes = stats.bytes - stats_before.bytes;
    let forwarded: u64 = per_cpu.iter().sum();
    eprintln!(
        "sent {sent} from CPUs {cpus:?}; a1 XDP packets by queue {per_queue:?}; \
         forwarded by CPU {per_cpu:?}; stream counted {packets}; B received {received}"
    );

    // The load really ran on two queues and two CPUs: each carried a fair
    // share (a tenth of the total at least), or the test proves nothing.
    let share = |n: u64| n * 10 >= forwarded;
    assert!(
        per_queue.iter().all(|&n| share(n)),
        "the stream did not arrive on both receive queues of a1 \
         (XDP packets by queue {per_queue:?}): is XPS working on a0?"
    );
    for cpu in cpus {
        assert!(
            share(per_cpu[cpu]),
            "CPU {cpu} forwarded {} of {forwarded}: the program did not run on both CPUs \
             (forwarded by CPU {per_cpu:?})",
            per_cpu[cpu]
        );
    }
    assert!(
        packets * 10 >= sent * 9,
        "only {packets} of {sent} sent packets were forwarded"
    );
    // The per-CPU counters are exact by construction; the stream's shared
    // record must match them with no increment lost.
    assert_eq!(
        packets, forwarded,
        "stream packets vs forwarded_redirect summed over CPUs"
    );
    assert_eq!(bytes, packets * payload.len() as u64, "stream bytes");
    assert_eq!(
        rtp.rtp_packets - rtp_before.rtp_packets,
        packets,
        "stream RTP packets"
    );
    bed.dp.shutdown();
}

/// The per-stream rate cap holds when two CPUs carry the stream (a flood
/// that RSS spreads over receive queues): each CPU used to read and write
/// the bucket without the other, so tokens could be earned or spent twice,
/// and the flood's sub-microsecond gaps earned nothing at all.
#[test]
fn rate_cap_holds_with_two_receive_queues() {
    require_root!();
    // An RTP stream with a known clock, as calls have, runs on the precise
    // clock; one without on the coarse clock (ticks of 1-10 ms).
    rate_cap_holds_for("2qcap", MediaTracking::Rtp { clock_rate: 8000 });
    rate_cap_holds_for("2qcapc", MediaTracking::None);
}

fn rate_cap_holds_for(tag: &str, media: MediaTracking) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut bed) = TwoQueueBed::new(tag) else {
        return;
    };
    const CAP: u64 = 2000;
    let to = bed.install(CAP as u32, media);
    let tx = bind_udp(&bed.a, &format!("{HOST_A}:5000")).unwrap();
    let rx = bind_udp(&bed.b, &format!("{HOST_B}:40000")).unwrap();
    assert_eq!(exchange(&tx, &to.to_string(), &rx, 1).unwrap().len(), 1);
    let before = bed.dp.stream_stats(SLOT).unwrap();
    let queues_before = xdp_packets_per_queue(&bed.r, "a1");

    let (sent, _, took) = bed.flood(&tx, &rx, to, &rtp_payload(172));

    let stats = bed.settled_stats();
    let passed = stats.packets - before.packets;
    let dropped = stats.dropped - before.dropped;
    let per_queue = bed.queues_since(queues_before);
    let secs = took.as_secs_f64();
    // The bucket starts with a second's worth (less the one packet of the
    // check above) and earns CAP a second while the flood lasts, and for
    // the moment the queues take to drain after it (50 ms allowed).
    let due = CAP as f64 * (1.0 + secs);
    let most = due + CAP as f64 * 0.05;
    eprintln!(
        "{media:?}: sent {sent} in {secs:.2} s; a1 XDP packets by queue {per_queue:?}; \
         passed {passed}, dropped {dropped}; the cap allows {due:.0}"
    );
    assert!(
        per_queue.iter().all(|&n| n * 10 >= sent),
        "the flood did not arrive on both receive queues (by queue {per_queue:?})"
    );
    assert!(
        sent as f64 > 5.0 * most,
        "the flood ({sent} packets) was too thin to test a {CAP} pps cap"
    );
    assert_eq!(passed + dropped, sent, "every packet passed or dropped");
    // Near the cap: not more (tokens earned or spent twice), and not much
    // less (a flood's short gaps earning nothing).
    assert!(
        passed as f64 <= most,
        "{passed} packets passed a {CAP} pps cap in {secs:.2} s (at most {most:.0})"
    );
    assert!(
        passed as f64 >= 0.9 * due,
        "only {passed} packets passed a {CAP} pps cap in {secs:.2} s ({due:.0} due)"
    );
    bed.dp.shutdown();
}
