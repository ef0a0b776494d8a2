//! Call state machine tests: real sockets on loopback, a fake datapath that
//! records what would go into the kernel, explicit time for timers.

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    sync::{Arc, Mutex},
    time::Duration,
};

use relay_common::StreamStats;
use tokio::{sync::mpsc, time::Instant};

use super::*;
use crate::datapath::{Counters, Datapath, DatapathError, StreamSpec};

/// Records kernel entries instead of programming BPF maps: forwarding ones
/// in `entries`, pass-to-userspace ones in `passes`.
#[derive(Clone, Default)]
struct FakeDatapath {
    entries: Arc<Mutex<HashMap<SocketAddr, StreamSpec>>>,
    passes: Arc<Mutex<HashMap<SocketAddr, StreamSpec>>>,
}

impl Datapath for FakeDatapath {
    fn install_seeded(
        &mut self,
        stream: &StreamSpec,
        _rtp: &relay_common::RtpStats,
    ) -> Result<(), DatapathError> {
        let (into, other) = if stream.to_userspace {
            (&self.passes, &self.entries)
        } else {
            (&self.entries, &self.passes)
        };
        other.lock().unwrap().remove(&stream.local);
        into.lock().unwrap().insert(stream.local, *stream);
        Ok(())
    }
    fn remove(&mut self, local: SocketAddr) -> Result<(), DatapathError> {
        let a = self.entries.lock().unwrap().remove(&local);
        let b = self.passes.lock().unwrap().remove(&local);
        a.or(b)
            .map(|_| ())
            .ok_or(DatapathError::NoSuchStream(local))
    }
    fn stream_stats(&self, _slot: u32) -> Result<StreamStats, DatapathError> {
        Ok(StreamStats::default())
    }
    fn counters(&self) -> Result<Counters, DatapathError> {
        Ok(Counters::default())
    }
    fn adopted(&self) -> bool {
        true
    }
    fn installed(&self) -> Result<Vec<StreamSpec>, DatapathError> {
        let entries = self.entries.lock().unwrap();
        let passes = self.passes.lock().unwrap();
        Ok(entries.values().chain(passes.values()).copied().collect())
    }
}

struct Harness {
    mgr: CallManager,
    events: mpsc::UnboundedReceiver<PortEvent>,
    kernel: FakeDatapath,
}

impl Harness {
    /// The next forwarder event (within 2 s).
    async fn next_event(&mut self) -> PortEvent {
        tokio::time::timeout(Duration::from_secs(2), self.events.recv())
            .await
            .expect("a forwarder event within 2 s")
            .expect("the event channel is open")
    }

    /// `offer`, then the work left for after the reply, as relayd does.
    fn offer(&mut self, sig: &Signal, now: Instant) -> Result<SdpPlan, CallError> {
        let plan = self.mgr.offer(sig, now);
        self.mgr.run_deferred();
        plan
    }

    /// `answer`, then the work left for after the reply.
    fn answer(&mut self, sig: &Signal, now: Instant) -> Result<SdpPlan, CallError> {
        let plan = self.mgr.answer(sig, now);
        self.mgr.run_deferred();
        plan
    }

    /// `delete`, then the work left for after the reply.
    fn delete(
        &mut self,
        call_id: &str,
        via_branch: Option<&str>,
        delay: Option<Duration>,
        now: Instant,
    ) -> Result<CallSummary, CallError> {
        let summary = self.mgr.delete(call_id, via_branch, delay, now);
        self.mgr.run_deferred();
        summary
    }

    /// Takes `n` forwarder events and lets the manager act on them.
    async fn handle_events(&mut self, n: usize) {
        for _ in 0..n {
            let ev = self.next_event().await;
            self.mgr.on_event(ev);
        }
    }
}

fn harness(port_min: u16, port_max: u16) -> Harness {
    harness_on(port_min, port_max, FakeDatapath::default())
}

/// A harness whose kernel is `kernel` (shared with an earlier harness: a
/// restarted relayd finding the kernel's entries).
fn harness_on(port_min: u16, port_max: u16, kernel: FakeDatapath) -> Harness {
    let spec = InterfaceSpec {
        name: "default".into(),
        address: "127.0.0.1".parse().unwrap(),
        advertised: "203.0.113.1".parse().unwrap(),
    };
    let pool = PortPool::new(spec.address, port_min, port_max).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mgr = CallManager::new(
        CallConfig::default(),
        vec![Interface { spec, pool }],
        Kernel::new(Some(Box::new(kernel.clone())), 1024).with_pass_entries(true),
        tx,
    )
    .with_changes(true);
    Harness {
        mgr,
        events: rx,
        kernel,
    }
}

fn media(rtp: SocketAddr) -> MediaOffer {
    MediaOffer {
        ptime: None,
        mid: None,
        kind: "audio".into(),
        protocol: "RTP/AVP".into(),
        rtp: Some(rtp),
        rtcp: Some(SocketAddr::new(rtp.ip(), rtp.port() + 1)),
        rtcp_mux: false,
        muted: false,
        is_rtp: true,
        clock_rate: Some(8000),
        codecs: Vec::new(),
        ice_ufrag: None,
        crypto: Vec::new(),
        any_crypto: false,
        dtls: Default::default(),
    }
}

fn signal(call: &str, from: &str, to: Option<&str>, rtp: SocketAddr) -> Signal {
    Signal {
        call_id: call.into(),
        from_tag: from.into(),
        to_tag: to.map(Into::into),
        via_branch: None,
        direction: Vec::new(),
        medias: vec![media(rtp)],
        learning: None,
        strict_source: false,
        asymmetric: false,
        sdp_family: Some(Family::of(rtp.ip())),
        address_family: None,
        sdp_digest: None,
        ice: Default::default(),
        sdp_ice: false,
        rtcp_mux_flag: RtcpMuxFlag::Default,
        transport_protocol: None,
        sdes: Default::default(),
        osrtp: Default::default(),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn offer_answer_reoffer_keep_ports_and_advertise() {
    let mut h = harness(42000, 42099);
    let now = Instant::now();
    let offer = h
        .offer(&signal("c1", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    assert_eq!(
        offer.address,
        "203.0.113.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(offer.medias.len(), 1);
    let m = &offer.medias[0];
    assert_eq!((m.rtp_port % 2, m.rtcp_port), (0, m.rtp_port + 1));
    let answer = h
        .answer(&signal("c1", "A", Some("B"), sa("10.0.0.2:5000")), now)
        .unwrap();
    assert_ne!(
        answer.medias[0].rtp_port, m.rtp_port,
        "each side has its own ports"
    );
    assert_eq!(h.mgr.port_usage()[0].1, 2);

    // re-INVITE from A (now with to-tag), and from B: ports stay.
    let again = h
        .offer(&signal("c1", "A", Some("B"), sa("10.0.0.1:4000")), now)
        .unwrap();
    assert_eq!(again, offer);
    let from_b = h
        .offer(&signal("c1", "B", Some("A"), sa("10.0.0.2:5000")), now)
        .unwrap();
    assert_eq!(from_b.medias, answer.medias);
    assert_eq!(h.mgr.port_usage()[0].1, 2, "no new ports for re-INVITEs");
    assert_eq!(h.mgr.list(32), vec!["c1".to_string()]);
    drop(h.events);
}

/// A party's declared ptime goes into the SDP sent to it when that SDP has
/// none (rtpengine's behaviour), and sticks when its later SDP omits it.
#[tokio::test]
async fn each_party_gets_back_the_ptime_it_declared() {
    let mut h = harness(42000, 42099);
    let now = Instant::now();
    let with_ptime = |call: &str, from: &str, to: Option<&str>, rtp: &str, ptime: Option<u32>| {
        let mut sig = signal(call, from, to, sa(rtp));
        sig.medias[0].ptime = ptime;
        sig
    };
    // The offer goes to B, who has declared nothing yet.
    let offer = h
        .offer(&with_ptime("p1", "A", None, "10.0.0.1:4000", Some(30)), now)
        .unwrap();
    assert_eq!(offer.medias[0].ptime, None);
    // The answer (no ptime of its own) goes to A: A's 30.
    let answer = h
        .answer(
            &with_ptime("p1", "A", Some("B"), "10.0.0.2:5000", None),
            now,
        )
        .unwrap();
    assert_eq!(answer.medias[0].ptime, Some(30));
    // B declares 20 in a re-offer of its own, then A re-offers without
    // one: the SDP to B carries B's 20; A's 30 stays remembered.
    h.offer(
        &with_ptime("p1", "B", Some("A"), "10.0.0.2:5000", Some(20)),
        now,
    )
    .unwrap();
    let again = h
        .offer(
            &with_ptime("p1", "A", Some("B"), "10.0.0.1:4000", None),
            now,
        )
        .unwrap();
    assert_eq!(again.medias[0].ptime, Some(20));
    let back = h
        .offer(
            &with_ptime("p1", "B", Some("A"), "10.0.0.2:5000", None),
            now,
        )
        .unwrap();
    assert_eq!(back.medias[0].ptime, Some(30));
    drop(h.events);
}

// Blocking std sockets in the test body: the forwarder needs other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_in_userspace_then_goes_to_the_kernel() {
    let mut h = harness(42100, 42199);
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let offer = h.offer(&signal("c2", "A", None, a_addr), now).unwrap();
    let answer = h
        .answer(&signal("c2", "A", Some("B"), b_addr), now)
        .unwrap();
    // Until the endpoints are confirmed, every port has a pass entry (so the
    // DoS shield lets learning packets through to userspace).
    assert_eq!(h.kernel.passes.lock().unwrap().len(), 4);
    // A sends to the port in the answer (its side); B to the one in the offer.
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port));

    let mut buf = [0u8; 64];
    a.send_to(b"from A", relay_for_a).unwrap();
    let (n, src) = b.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], src),
        (&b"from A"[..], relay_for_b),
        "B sees the relay's B-side port"
    );
    b.send_to(b"from B", relay_for_b).unwrap();
    let (n, src) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"from B"[..], relay_for_a));

    // Both endpoints matched their SDP exactly: confirmed, so both
    // directions went into the (fake) kernel.
    h.handle_events(2).await;
    let entries = h.kernel.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let a_to_b = &entries[&relay_for_a];
    assert_eq!((a_to_b.peer, a_to_b.source), (b_addr, relay_for_b));
    let b_to_a = &entries[&relay_for_b];
    assert_eq!((b_to_a.peer, b_to_a.source), (a_addr, relay_for_a));

    let q = h.mgr.query("c2").unwrap();
    assert_eq!(q.rtp.packets, 2);
    assert!(q.tags.iter().all(|t| t.medias[0].streams[0].kernelized));

    // A re-INVITE moving A elsewhere takes A's direction out of the kernel
    // until A's new source is confirmed; B's goes on in the kernel, to where
    // A's new SDP says (where userspace would send it too).
    let moved = sa("127.0.0.1:9");
    h.offer(&signal("c2", "A", Some("B"), moved), now).unwrap();
    let entries = h.kernel.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[&relay_for_b].peer, moved);

    h.delete("c2", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

// A port's forwarder task starts with the first datagram its socket
// receives, not when the port opens: signalling alone spawns no task and
// wakes no runtime worker (forwarder::arm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarders_start_with_the_first_datagram() {
    let mut h = harness(47400, 47499);
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    h.offer(&signal("lazy", "A", None, a_addr), now).unwrap();
    let answer = h
        .answer(&signal("lazy", "A", Some("B"), b_addr), now)
        .unwrap();
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let started = |h: &Harness| -> Vec<SocketAddr> {
        let mut ports: Vec<SocketAddr> = h
            .mgr
            .calls
            .values()
            .flat_map(Call::ports)
            .filter(|p| p.state().forwarder.is_some())
            .map(|p| p.local)
            .collect();
        ports.sort();
        ports
    };
    assert_eq!(
        started(&h),
        Vec::<SocketAddr>::new(),
        "no task before media"
    );

    a.send_to(b"from A", relay_for_a).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from A");
    assert_eq!(
        started(&h),
        vec![relay_for_a],
        "only the port that received"
    );

    // A call deleted before any media never had a task, and frees all.
    h.delete("lazy", None, Some(Duration::ZERO), now).unwrap();
    h.offer(&signal("lazy2", "A", None, a_addr), now).unwrap();
    h.answer(&signal("lazy2", "A", Some("B"), b_addr), now)
        .unwrap();
    assert_eq!(started(&h), Vec::<SocketAddr>::new());
    h.delete("lazy2", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

// One-way media (B never sends, as a recvonly phone or an announcement's
// listener) goes into the kernel at A's first packet; when B sends from
// elsewhere than its SDP (NAT), A's entry follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_media_goes_to_the_kernel_at_its_first_packet() {
    let mut h = harness(47200, 47299);
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nat_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b, &nat_b] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // Immediate learning (the ports' mode is set by the offer) latches
    // B's NAT address at its first packet.
    let mut offer = signal("oneway", "A", None, a_addr);
    offer.learning = Some(LearningMode::Immediate);
    let offer = h.offer(&offer, now).unwrap();
    let answer = h
        .answer(&signal("oneway", "A", Some("B"), b_addr), now)
        .unwrap();
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port));

    let mut buf = [0u8; 64];
    a.send_to(b"from A", relay_for_a).unwrap();
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from A");
    h.handle_events(1).await;
    let entries = h.kernel.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 1, "A -> B only: {entries:?}");
    let a_to_b = &entries[&relay_for_a];
    assert_eq!((a_to_b.peer, a_to_b.source), (b_addr, relay_for_b));

    // B turns out to send from another address: A's entry follows.
    let nat_addr = nat_b.local_addr().unwrap();
    nat_b.send_to(b"from B", relay_for_b).unwrap();
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from B");
    h.handle_events(1).await;
    let entries = h.kernel.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[&relay_for_a].peer, nat_addr, "A's media follows B");
    assert_eq!(entries[&relay_for_b].peer, a_addr);
    h.delete("oneway", None, Some(Duration::ZERO), now).unwrap();
}

#[tokio::test]
async fn running_out_of_ports_leaks_nothing() {
    // One pair only: an offer needs two (one per side).
    let mut h = harness(42200, 42201);
    let err = h
        .offer(
            &signal("c3", "A", None, sa("10.0.0.1:4000")),
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(err, CallError::RanOutOfPorts);
    assert_eq!(err.to_string(), "Ran out of ports");
    assert_eq!(h.mgr.port_usage()[0], ("default".to_string(), 0, 1));
    assert!(
        h.mgr.is_empty(),
        "a failed first offer leaves no call behind"
    );
}

#[tokio::test]
async fn errors_leave_state_alone() {
    let mut h = harness(42300, 42399);
    let now = Instant::now();
    assert_eq!(
        h.answer(&signal("nope", "A", Some("B"), sa("10.0.0.1:1")), now)
            .unwrap_err(),
        CallError::UnknownCall
    );
    assert_eq!(
        h.delete("nope", None, None, now).unwrap_err(),
        CallError::UnknownCall
    );
    assert_eq!(h.mgr.query("nope").unwrap_err(), CallError::UnknownCall);
    h.offer(&signal("c4", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    assert_eq!(
        h.answer(&signal("c4", "X", Some("B"), sa("10.0.0.1:1")), now)
            .unwrap_err(),
        CallError::UnknownTag
    );
    // An unknown interface name falls back to the default one, as in
    // rtpengine.
    let mut bad_dir = signal("c5", "A", None, sa("10.0.0.1:4000"));
    bad_dir.direction = vec!["pub".into(), "priv".into()];
    h.offer(&bad_dir, now).unwrap();
    assert_eq!(h.mgr.len(), 2);
    assert_eq!(h.mgr.port_usage()[0].1, 4);
}

#[tokio::test]
async fn delete_delay_and_media_timeout() {
    let mut h = harness(42400, 42499);
    let now = Instant::now();
    h.offer(&signal("delayed", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    h.offer(&signal("idle", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    h.delete("delayed", None, Some(Duration::from_secs(30)), now)
        .unwrap();
    h.mgr.tick(now + Duration::from_secs(29));
    assert_eq!(h.mgr.len(), 2, "delete-delay keeps the call for 30 s");
    h.mgr.tick(now + Duration::from_secs(30));
    assert_eq!(h.mgr.list(10), vec!["idle".to_string()]);
    h.mgr.tick(now + Duration::from_secs(59));
    assert_eq!(h.mgr.len(), 1);
    h.mgr.tick(now + Duration::from_secs(60));
    assert!(h.mgr.is_empty(), "no media for --timeout: deleted");
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

#[tokio::test]
async fn a_thousand_cycles_leave_nothing_allocated() {
    let mut h = harness(42500, 42519);
    let now = Instant::now();
    for i in 0..1000 {
        let id = format!("cycle-{i}");
        h.offer(&signal(&id, "A", None, sa("10.0.0.1:4000")), now)
            .unwrap();
        h.answer(&signal(&id, "A", Some("B"), sa("10.0.0.2:4000")), now)
            .unwrap();
        h.delete(&id, None, Some(Duration::ZERO), now).unwrap();
        // Let the aborted forwarder tasks drop their sockets.
        tokio::task::yield_now().await;
    }
    assert!(h.mgr.is_empty());
    assert_eq!(h.mgr.port_usage()[0], ("default".to_string(), 0, 10));
    assert!(h.kernel.entries.lock().unwrap().is_empty());
    assert!(
        h.kernel.passes.lock().unwrap().is_empty(),
        "pass entries removed with their calls"
    );
}

#[tokio::test]
async fn unanswered_branch_can_be_deleted_alone() {
    let mut h = harness(42600, 42699);
    let now = Instant::now();
    let mut s = signal("fork", "A", None, sa("10.0.0.1:4000"));
    s.via_branch = Some("z9hG4bK-1".into());
    h.offer(&s, now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 2);
    h.delete("fork", Some("z9hG4bK-1"), Some(Duration::ZERO), now)
        .unwrap();
    assert_eq!(h.mgr.len(), 1, "the call stays");
    assert_eq!(h.mgr.port_usage()[0].1, 1, "the branch's ports are free");
}

#[tokio::test]
async fn same_from_and_to_tag_is_refused() {
    let mut h = harness(42700, 42799);
    let now = Instant::now();
    let e = h
        .offer(&signal("self", "A", Some("A"), sa("10.0.0.1:4000")), now)
        .unwrap_err();
    assert_eq!(e, CallError::SameTag);
    assert!(h.mgr.is_empty());
}

#[tokio::test]
async fn a_failed_reoffer_leaves_the_call_as_it_was() {
    // Two pairs: enough for A and its first branch, not for a second one.
    let mut h = harness(42800, 42803);
    let now = Instant::now();
    h.offer(&signal("c", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    let e = h
        .offer(&signal("c", "A", Some("C"), sa("10.0.0.1:4000")), now)
        .unwrap_err();
    assert_eq!(e, CallError::RanOutOfPorts);
    let q = h.mgr.query("c").unwrap();
    assert_eq!(q.tags.len(), 2, "no monologue C left behind: {q:?}");
    // The original branch still answers normally.
    h.answer(&signal("c", "A", Some("B"), sa("10.0.0.2:4000")), now)
        .unwrap();
    let q = h.mgr.query("c").unwrap();
    assert!(q
        .tags
        .iter()
        .any(|t| t.tag == "B" && t.in_dialogue_with.as_deref() == Some("A")));
}

#[tokio::test]
async fn learning_off_goes_to_the_kernel_at_answer() {
    let mut h = harness(42900, 42999);
    let now = Instant::now();
    let mut o = signal("off", "A", None, sa("10.0.0.1:4000"));
    o.learning = Some(LearningMode::Off);
    h.offer(&o, now).unwrap();
    assert!(
        h.kernel.entries.lock().unwrap().is_empty(),
        "B's endpoint is not known yet"
    );
    let mut a = signal("off", "A", Some("B"), sa("10.0.0.2:5000"));
    a.learning = Some(LearningMode::Off);
    h.answer(&a, now).unwrap();
    // RTP both ways (RTCP too: its SDP endpoint is known as well).
    assert_eq!(h.kernel.entries.lock().unwrap().len(), 4);
    // A re-INVITE turning on strict-source replaces the entries.
    let mut strict = signal("off", "A", Some("B"), sa("10.0.0.1:4000"));
    strict.strict_source = true;
    h.offer(&strict, now).unwrap();
    let entries = h.kernel.entries.lock().unwrap().clone();
    let strict_entries = entries
        .values()
        .filter(|e| e.strict_source.is_some())
        .count();
    assert_eq!(
        strict_entries, 2,
        "A's two ports now drop other sources: {entries:?}"
    );
    h.delete("off", None, Some(Duration::ZERO), now).unwrap();
    assert!(h.kernel.entries.lock().unwrap().is_empty());
}

// Blocking std sockets in the test body: the forwarder needs other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_queued_before_a_delete_install_nothing() {
    let mut h = harness(43000, 43099);
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = h
        .offer(&signal("race", "A", None, a.local_addr().unwrap()), now)
        .unwrap();
    let answer = h
        .answer(
            &signal("race", "A", Some("B"), b.local_addr().unwrap()),
            now,
        )
        .unwrap();
    a.send_to(
        b"x",
        sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port)),
    )
    .unwrap();
    b.send_to(b"y", sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port)))
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..2 {
        events.push(h.next_event().await);
    }
    h.delete("race", None, Some(Duration::ZERO), now).unwrap();
    for ev in events {
        h.mgr.on_event(ev);
    }
    assert!(
        h.kernel.entries.lock().unwrap().is_empty(),
        "a deleted call left kernel entries"
    );
}

#[tokio::test]
async fn silent_and_final_timeouts() {
    let mut h = harness(43100, 43199);
    h.mgr.config.silent_timeout = Duration::from_secs(120);
    h.mgr.config.final_timeout = Some(Duration::from_secs(600));
    let now = Instant::now();
    let mut held = signal("held", "A", None, sa("10.0.0.1:4000"));
    held.medias[0].muted = true;
    h.offer(&held, now).unwrap();
    let mut answer = signal("held", "A", Some("B"), sa("10.0.0.2:4000"));
    answer.medias[0].muted = true;
    h.answer(&answer, now).unwrap();
    h.offer(&signal("talking", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    h.mgr.tick(now + Duration::from_secs(61));
    assert_eq!(
        h.mgr.list(10),
        vec!["held".to_string()],
        "on hold: the silent timeout applies"
    );
    h.mgr.tick(now + Duration::from_secs(120));
    assert!(h.mgr.is_empty());

    // The final timeout ends even a call that keeps signalling.
    h.offer(&signal("long", "A", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    for minute in 1..10 {
        let t = now + Duration::from_secs(60 * minute);
        h.offer(&signal("long", "A", None, sa("10.0.0.1:4000")), t)
            .unwrap();
        h.mgr.tick(t);
        assert_eq!(h.mgr.len(), 1, "minute {minute}");
    }
    h.mgr.tick(now + Duration::from_secs(600));
    assert!(h.mgr.is_empty(), "final timeout");
}

/// One interface name with an IPv4 and an IPv6 address (loopback), as
/// `-i 127.0.0.1 -i ::1`; None when this host has no IPv6 loopback.
fn dual_stack_harness(port_min: u16, port_max: u16) -> Option<Harness> {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED dual-stack call test: no IPv6 loopback here");
        return None;
    }
    let mut h = harness(port_min, port_max);
    let spec = InterfaceSpec {
        name: "default".into(),
        address: "::1".parse().unwrap(),
        advertised: "::1".parse().unwrap(),
    };
    let pool = PortPool::new(spec.address, port_min, port_max).unwrap();
    h.mgr.interfaces.push(Interface { spec, pool });
    // Advertise the real IPv4 address so the test can send to it.
    h.mgr.interfaces[0].spec.advertised = "127.0.0.1".parse().unwrap();
    Some(h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_family_bridges_ipv4_and_ipv6() {
    let Some(mut h) = dual_stack_harness(42700, 42799) else {
        return;
    };
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("[::1]:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // An IPv4 caller, `address-family=IP6` for the IPv6 callee.
    let offer = h
        .offer(
            &Signal {
                address_family: Some(Family::Ip6),
                ..signal("c9", "A", None, a_addr)
            },
            now,
        )
        .unwrap();
    assert_eq!(offer.address, "::1".parse::<std::net::IpAddr>().unwrap());
    // The callee answers in IPv6; the caller gets the IPv4 side.
    let answer = h
        .answer(&signal("c9", "A", Some("B"), b_addr), now)
        .unwrap();
    assert_eq!(
        answer.address,
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("[::1]:{}", offer.medias[0].rtp_port));

    let mut buf = [0u8; 64];
    a.send_to(b"from A", relay_for_a).unwrap();
    let (n, src) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"from A"[..], relay_for_b));
    b.send_to(b"from B", relay_for_b).unwrap();
    let (n, src) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"from B"[..], relay_for_a));

    h.handle_events(2).await;
    // Bridged kernel entries: keyed in one family, sent in the other.
    let entries = h.kernel.entries.lock().unwrap().clone();
    let a_to_b = &entries[&relay_for_a];
    assert_eq!((a_to_b.peer, a_to_b.source), (b_addr, relay_for_b));
    let b_to_a = &entries[&relay_for_b];
    assert_eq!((b_to_a.peer, b_to_a.source), (a_addr, relay_for_a));
    h.delete("c9", None, Some(Duration::ZERO), now).unwrap();

    // Without address-family, an IPv6 offer stays IPv6 on both sides.
    let v6 = h
        .offer(&signal("c10", "A", None, sa("[2001:db8::7]:4000")), now)
        .unwrap();
    assert!(v6.address.is_ipv6());
    let v6_answer = h
        .answer(
            &signal("c10", "A", Some("B"), sa("[2001:db8::8]:4000")),
            now,
        )
        .unwrap();
    assert!(v6_answer.address.is_ipv6());
}

#[tokio::test]
async fn address_family_without_such_an_interface_is_an_error() {
    let mut h = harness(42800, 42899);
    let err = h
        .offer(
            &Signal {
                address_family: Some(Family::Ip6),
                ..signal("c11", "A", None, sa("10.0.0.1:4000"))
            },
            Instant::now(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "Interface 'default' has no IP6 address");
    assert!(h.mgr.is_empty(), "nothing left behind");
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

/// Sockets on two consecutive loopback ports (RTP and RTCP of a party).
fn udp_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rtp.local_addr().unwrap().port();
        if let Some(Ok(rtcp)) = port
            .checked_add(1)
            .map(|p| UdpSocket::bind(("127.0.0.1", p)))
        {
            return (rtp, rtcp);
        }
    }
}

/// What a restarted relayd reads: the store's state after `changes`.
fn stored(changes: &[relay_state::Change]) -> relay_state::State {
    let mut state = relay_state::State::default();
    for c in changes {
        state.apply(c);
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_call_keeps_ports_tags_endpoints_and_kernel_entries() {
    let mut h = harness(42300, 42399);
    let now = Instant::now();
    let (a, a_rtcp) = udp_pair();
    let (b, b_rtcp) = udp_pair();
    for s in [&a, &b, &b_rtcp] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let offer = h.offer(&signal("c9", "A", None, a_addr), now).unwrap();
    let answer = h
        .answer(&signal("c9", "A", Some("B"), b_addr), now)
        .unwrap();
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port));
    let mut buf = [0u8; 64];
    a.send_to(b"from A", relay_for_a).unwrap();
    b.recv_from(&mut buf).unwrap();
    b.send_to(b"from B", relay_for_b).unwrap();
    a.recv_from(&mut buf).unwrap();
    h.handle_events(2).await;
    let mut changes = h.mgr.take_changes();
    assert!(
        matches!(&changes[..], [relay_state::Change::Put(r)] if r.call_id == "c9"),
        "{changes:?}"
    );
    assert!(
        h.mgr.take_changes().is_empty(),
        "changes are handed out once"
    );
    let kernel_before = h.kernel.entries.lock().unwrap().clone();
    assert_eq!(kernel_before.len(), 2);
    // A kernel entry of a call the store does not know: removed on restore.
    let stray = StreamSpec {
        local: sa("127.0.0.1:42398"),
        peer: b_addr,
        source: relay_for_b,
        strict_source: None,
        stats_slot: 7,
        to_userspace: false,
        max_pps: 0,
        media: crate::datapath::MediaTracking::None,
        ice: false,
        rtcp_demux: false,
    };
    h.kernel.entries.lock().unwrap().insert(stray.local, stray);
    // A stored call whose ports are outside this relayd's range cannot come back.
    let mut lost = match &changes[0] {
        relay_state::Change::Put(r) => r.clone(),
        _ => unreachable!(),
    };
    lost.call_id = "c-lost".into();
    for m in &mut lost.monologues {
        for md in &mut m.medias {
            md.rtp.local.set_port(50000);
            md.rtcp.local.set_port(50001);
        }
    }
    changes.push(relay_state::Change::Put(lost));

    // relayd dies: its forwarders stop and sockets close, the kernel keeps
    // its entries.
    let kernel = h.kernel.clone();
    for port in h.mgr.calls.values().flat_map(Call::ports) {
        if let Some(task) = port.state().forwarder.take() {
            task.abort();
        }
    }
    drop(h);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut h = harness_on(42300, 42399, kernel);
    h.mgr.kernel.adopting().unwrap();
    let report = h.mgr.restore(stored(&changes).calls.into_values());
    h.mgr.run_deferred();
    assert_eq!(report.restored, 1);
    assert_eq!(
        report.adopted_streams, 4,
        "two forwarding entries, two passes"
    );
    assert_eq!(report.stale_streams, 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "c-lost");
    assert_eq!(
        h.mgr.take_changes(),
        vec![relay_state::Change::Remove("c-lost".into())],
        "the store hears that the lost call is gone"
    );
    assert_eq!(
        *h.kernel.entries.lock().unwrap(),
        kernel_before,
        "adopted entries are kept as they were, the stray one is gone"
    );
    assert_eq!(
        h.mgr.port_usage()[0].1,
        2,
        "the same two pairs, bound again"
    );

    // The same ports, tags and learned endpoints: a re-INVITE changes nothing.
    let again = h.offer(&signal("c9", "A", Some("B"), a_addr), now).unwrap();
    assert_eq!(again, offer);
    let q = h.mgr.query("c9").unwrap();
    assert!(q.tags.iter().all(|t| t.medias[0].streams[0].kernelized));
    assert_eq!(q.rtp.packets, 2, "userspace counters carried over");
    // Media relayed by the restored ports' forwarders (RTCP is in userspace).
    let rtcp_for_a = SocketAddr::new(relay_for_a.ip(), relay_for_a.port() + 1);
    a_rtcp.send_to(b"rtcp from A", rtcp_for_a).unwrap();
    let (n, _) = b_rtcp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"rtcp from A");
    h.delete("c9", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
    assert!(h.kernel.entries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn one_call_cannot_take_more_than_its_share() {
    let _ = crate::open_files::raise_to_hard();
    // Its own port range: it takes hundreds of pairs, and the other tests of
    // this binary run in parallel threads with ranges of their own.
    let mut h = harness(44000, 46999);
    let now = Instant::now();
    // An SDP with more media sections than a call may have.
    let mut big = signal("c-big", "A", None, sa("10.0.0.1:4000"));
    big.medias = vec![media(sa("10.0.0.1:4000")); MAX_MEDIAS + 1];
    assert_eq!(
        h.offer(&big, now),
        Err(CallError::MediaLimit {
            count: MAX_MEDIAS + 1
        })
    );
    assert_eq!(h.mgr.port_usage()[0].1, 0, "nothing taken");

    // Offers of one call-id from ever new tags: forks up to the limit.
    let mut refused = None;
    for n in 0..1000 {
        let sig = signal("c-forks", &format!("tag-{n}"), None, sa("10.0.0.1:4000"));
        if let Err(e) = h.offer(&sig, now) {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.expect("forks are bounded");
    assert_eq!(e, CallError::PartyLimit);
    assert_eq!(n, MAX_PARTIES / 2, "each offer adds its party and a branch");
    let pairs = h.mgr.port_usage()[0].1;
    assert_eq!(
        pairs, MAX_PARTIES,
        "a pair per party, nothing of the refused offer"
    );
    // The first answer names the branch; one from another to-tag is a
    // fork: a party (with a port set for the offerer) too many.
    let answer = signal("c-forks", "tag-0", Some("first"), sa("10.0.0.2:5000"));
    h.answer(&answer, now).unwrap();
    let answer = signal("c-forks", "tag-0", Some("late-fork"), sa("10.0.0.2:5002"));
    assert_eq!(h.answer(&answer, now), Err(CallError::PartyLimit));
    assert_eq!(
        h.mgr.port_usage()[0].1,
        pairs,
        "the refused fork took nothing"
    );
    h.delete("c-forks", None, Some(Duration::ZERO), now)
        .unwrap();

    // Port pairs: four offers of 64 medias fill a call's 512 pairs.
    let wide = |tag: &str| {
        let mut sig = signal("c-wide", tag, None, sa("10.0.0.1:4000"));
        sig.medias = vec![media(sa("10.0.0.1:4000")); MAX_MEDIAS];
        sig
    };
    for tag in ["w1", "w2", "w3", "w4"] {
        h.offer(&wide(tag), now).unwrap();
    }
    assert_eq!(h.mgr.port_usage()[0].1, MAX_PORT_PAIRS);
    assert_eq!(h.offer(&wide("w5"), now), Err(CallError::PortLimit));
    assert_eq!(
        h.mgr.port_usage()[0].1,
        MAX_PORT_PAIRS,
        "the refused offer took nothing"
    );
    h.delete("c-wide", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

#[tokio::test]
async fn each_fork_branch_gets_ports_of_its_own() {
    let mut h = harness(43000, 43099);
    let now = Instant::now();
    // Serial forking: one offer per via-branch, each to a new branch.
    let mut a = signal("forked", "caller", None, sa("10.0.0.1:4000"));
    a.via_branch = Some("z9hG4bK-a".into());
    let p1 = h.offer(&a, now).unwrap().medias[0].rtp_port;
    let mut b = a.clone();
    b.via_branch = Some("z9hG4bK-b".into());
    let p2 = h.offer(&b, now).unwrap().medias[0].rtp_port;
    assert_ne!(p1, p2, "the second branch has ports of its own");
    assert_eq!(h.offer(&a, now).unwrap().medias[0].rtp_port, p1);
    assert_eq!(h.mgr.port_usage()[0].1, 3, "caller and two branches");

    // Early media from branch a, then the final answer from branch b.
    let mut ans_a = signal("forked", "caller", Some("tag-a"), sa("10.0.0.2:5000"));
    ans_a.via_branch = a.via_branch.clone();
    let c1 = h.answer(&ans_a, now).unwrap().medias[0].rtp_port;
    let mut ans_b = signal("forked", "caller", Some("tag-b"), sa("10.0.0.3:6000"));
    ans_b.via_branch = b.via_branch.clone();
    let c2 = h.answer(&ans_b, now).unwrap().medias[0].rtp_port;
    assert_ne!(c1, c2, "the caller gets a port set per answering branch");
    assert_eq!(h.mgr.port_usage()[0].1, 4);
    {
        let call = &h.mgr.calls["forked"];
        let caller = call.find("caller").unwrap();
        let branch_b = call.find("tag-b").unwrap();
        let branch_a = call.find("tag-a").unwrap();
        assert_eq!(call.monologues[caller].medias[0].rtp_port(), c2);
        assert_eq!(call.monologues[caller].peer, Some(branch_b));
        assert_eq!(call.monologues[branch_b].peer, Some(caller));
        let sink = |m: usize| {
            call.monologues[m].medias[0]
                .rtp
                .state()
                .sink
                .upgrade()
                .map(|s| s.local.port())
        };
        assert_eq!(sink(caller), Some(p2), "caller's media goes to b");
        assert_eq!(sink(branch_b), Some(c2));
        assert_eq!(
            sink(branch_a),
            Some(c2),
            "a losing branch still reaches the caller"
        );
        // The caller's set for a now forwards to b.
        let kept = (0..call.monologues.len())
            .find(|&i| call.is_standby(i))
            .unwrap();
        assert_eq!(call.monologues[kept].medias[0].rtp_port(), c1);
        assert_eq!(sink(kept), Some(p2));
    }
    let q = h.mgr.query("forked").unwrap();
    let mut tags: Vec<_> = q.tags.iter().map(|t| t.tag.clone()).collect();
    tags.sort();
    assert_eq!(tags, ["caller", "tag-a", "tag-b"], "the caller shows once");
    // Branch a answers again: the caller's set for it comes back.
    assert_eq!(h.answer(&ans_a, now).unwrap().medias[0].rtp_port, c1);
    assert_eq!(h.mgr.port_usage()[0].1, 4, "nothing new");

    h.delete("forked", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0, "every branch's ports freed");
}

#[tokio::test]
async fn an_answer_from_another_to_tag_is_a_fork() {
    let mut h = harness(43100, 43199);
    let now = Instant::now();
    let offer = signal("parallel", "caller", None, sa("10.0.0.1:4000"));
    let p1 = h.offer(&offer, now).unwrap().medias[0].rtp_port;
    let ans_a = signal("parallel", "caller", Some("tag-a"), sa("10.0.0.2:5000"));
    let c1 = h.answer(&ans_a, now).unwrap().medias[0].rtp_port;
    let ans_b = signal("parallel", "caller", Some("tag-b"), sa("10.0.0.3:6000"));
    let c2 = h.answer(&ans_b, now).unwrap().medias[0].rtp_port;
    assert_ne!(c1, c2);
    assert_eq!(h.mgr.port_usage()[0].1, 4, "b and the caller's set for it");
    let call = &h.mgr.calls["parallel"];
    let b = call.find("tag-b").unwrap();
    let a = call.find("tag-a").unwrap();
    assert_eq!(call.monologues[a].medias[0].rtp_port(), p1);
    // b was sent the offer's ports (p1): what it sends there reaches the
    // caller from the caller's current set.
    let sink = call.monologues[a].medias[0].rtp.state().sink.upgrade();
    assert_eq!(sink.map(|s| s.local.port()), Some(c2));
    assert_ne!(call.monologues[b].medias[0].rtp_port(), p1);
    h.delete("parallel", None, Some(Duration::ZERO), now)
        .unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

/// The port a media of party `tag` forwards to.
fn sink_of(h: &Harness, call: &str, tag: &str) -> Option<u16> {
    let call = &h.mgr.calls[call];
    let m = call.find(tag)?;
    let sink = call.monologues[m]
        .medias
        .first()?
        .rtp
        .state()
        .sink
        .upgrade();
    sink.map(|s| s.local.port())
}

#[tokio::test]
async fn delete_with_the_to_tag_flag_releases_one_answered_branch() {
    let mut h = harness(47000, 47099);
    let now = Instant::now();
    let offer = signal("branches", "caller", None, sa("10.0.0.1:4000"));
    let p1 = h.offer(&offer, now).unwrap().medias[0].rtp_port;
    let ans = |tag: &str, at: &str| signal("branches", "caller", Some(tag), sa(at));
    let c1 = h
        .answer(&ans("tag-a", "10.0.0.2:5000"), now)
        .unwrap()
        .medias[0]
        .rtp_port;
    let c2 = h
        .answer(&ans("tag-b", "10.0.0.3:6000"), now)
        .unwrap()
        .medias[0]
        .rtp_port;
    let p2 = h.mgr.calls["branches"].monologues[h.mgr.calls["branches"].find("tag-b").unwrap()]
        .medias[0]
        .rtp_port();
    assert_eq!(h.mgr.port_usage()[0].1, 4);

    // The branch in dialogue goes: the caller is back with a, on the set
    // it kept for a.
    h.mgr.delete_branch("branches", "tag-b", None, now).unwrap();
    h.mgr.run_deferred();
    assert_eq!(h.mgr.len(), 1, "the call stays");
    assert_eq!(
        h.mgr.port_usage()[0].1,
        2,
        "b's ports and the caller's set for b are free"
    );
    assert_eq!(
        sink_of(&h, "branches", "caller"),
        Some(p1),
        "the caller's media goes to a"
    );
    assert_eq!(sink_of(&h, "branches", "tag-a"), Some(c1));
    let call = &h.mgr.calls["branches"];
    let caller = call.find("caller").unwrap();
    assert_eq!(call.monologues[caller].medias[0].rtp_port(), c1);
    assert!(
        !h.kernel
            .entries
            .lock()
            .unwrap()
            .keys()
            .any(|k| k.port() == c2 || k.port() == p2),
        "no kernel entry is left on the released ports"
    );

    // The last branch goes: nothing is left to talk, so the call goes.
    h.mgr
        .delete_branch("branches", "tag-a", Some(Duration::ZERO), now)
        .unwrap();
    h.mgr.run_deferred();
    assert!(h.mgr.is_empty());
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

#[tokio::test]
async fn delete_with_the_to_tag_flag_of_a_losing_branch_keeps_the_dialogue() {
    let mut h = harness(47100, 47199);
    let now = Instant::now();
    h.offer(&signal("keep", "caller", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    let ans = |tag: &str, at: &str| signal("keep", "caller", Some(tag), sa(at));
    h.answer(&ans("tag-a", "10.0.0.2:5000"), now).unwrap();
    let c2 = h
        .answer(&ans("tag-b", "10.0.0.3:6000"), now)
        .unwrap()
        .medias[0]
        .rtp_port;
    let before = sink_of(&h, "keep", "caller");
    h.mgr.delete_branch("keep", "tag-a", None, now).unwrap();
    h.mgr.run_deferred();
    assert_eq!(h.mgr.port_usage()[0].1, 2);
    assert_eq!(
        sink_of(&h, "keep", "caller"),
        before,
        "the caller still talks to b"
    );
    assert_eq!(sink_of(&h, "keep", "tag-b"), Some(c2));
    let call = &h.mgr.calls["keep"];
    assert!(call.monologues[call.find("tag-a").unwrap()]
        .medias
        .is_empty());
}

#[tokio::test]
async fn a_forked_call_comes_back_from_the_store_with_every_branch() {
    let mut h = harness(43200, 43299);
    let now = Instant::now();
    h.offer(&signal("f", "caller", None, sa("10.0.0.1:4000")), now)
        .unwrap();
    let ans_a = signal("f", "caller", Some("tag-a"), sa("10.0.0.2:5000"));
    let c1 = h.answer(&ans_a, now).unwrap().medias[0].rtp_port;
    let ans_b = signal("f", "caller", Some("tag-b"), sa("10.0.0.3:6000"));
    let c2 = h.answer(&ans_b, now).unwrap().medias[0].rtp_port;
    let changes = h.mgr.take_changes();
    for port in h.mgr.calls.values().flat_map(Call::ports) {
        if let Some(task) = port.state().forwarder.take() {
            task.abort();
        }
    }
    let kernel = h.kernel.clone();
    drop(h);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut h = harness_on(43200, 43299, kernel);
    let report = h.mgr.restore(stored(&changes).calls.into_values());
    h.mgr.run_deferred();
    assert_eq!(report.restored, 1);
    assert_eq!(h.mgr.port_usage()[0].1, 4, "every branch's ports back");
    {
        let call = &h.mgr.calls["f"];
        let caller = call.find("caller").unwrap();
        assert_eq!(call.monologues[caller].medias[0].rtp_port(), c2);
        let a = call.find("tag-a").unwrap();
        let sink = call.monologues[a].medias[0].rtp.state().sink.upgrade();
        assert_eq!(sink.map(|s| s.local.port()), Some(c2));
    }
    let q = h.mgr.query("f").unwrap();
    assert_eq!(q.tags.len(), 3, "the caller shows once");
    assert_eq!(h.answer(&ans_a, now).unwrap().medias[0].rtp_port, c1);
    h.delete("f", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(h.mgr.port_usage()[0].1, 0);
}

/// A Binding request as a full ICE agent sends it (USERNAME, optionally
/// USE-CANDIDATE, MESSAGE-INTEGRITY with `pwd`, FINGERPRINT).
fn ice_check(ufrag: &str, pwd: &str, nominate: bool) -> Vec<u8> {
    use stun_types::{
        attribute::{AttributeType, RawAttribute, Username},
        message::{
            IntegrityAlgorithm, Message, MessageIntegrityCredentials, MessageWrite,
            MessageWriteExt, MessageWriteVec, ShortTermCredentials, BINDING,
        },
    };
    let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
    m.add_attribute(&Username::new(&format!("{ufrag}:peer")).unwrap())
        .unwrap();
    if nominate {
        m.add_attribute(&RawAttribute::new(AttributeType::new(0x0025), &[]))
            .unwrap();
    }
    let c = MessageIntegrityCredentials::from(ShortTermCredentials::new(pwd.into()));
    m.add_message_integrity(&c, IntegrityAlgorithm::Sha1)
        .unwrap();
    m.add_fingerprint().unwrap();
    m.finish()
}

/// ICE end to end in the call manager: the default gives an ICE offerer
/// the relay's ICE in the answer (kept across re-answers); the pair the
/// peer nominates is the endpoint, in the kernel with the ICE flag; a
/// lapsed consent takes the entry sending to the peer out of the kernel,
/// a fresh check brings it back; `ICE=remove` drops the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_nomination_consent_and_removal() {
    let mut h = harness(42300, 42399);
    let now = Instant::now();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut offer = signal("i1", "A", None, a.local_addr().unwrap());
    offer.sdp_ice = true;
    offer.ice = IceOption::Remove;
    let o = h.offer(&offer, now).unwrap();
    assert_eq!(o.medias[0].ice, None, "ICE=remove: none toward B");
    let mut answer = signal("i1", "A", Some("B"), b.local_addr().unwrap());
    let plan = h.answer(&answer, now).unwrap();
    let creds = plan.medias[0]
        .ice
        .clone()
        .expect("the ICE offerer gets ICE");
    let again = h.answer(&answer, now).unwrap();
    assert_eq!(again.medias[0].ice.as_ref(), Some(&creds), "no ICE restart");
    let relay_a = SocketAddr::new([127, 0, 0, 1].into(), plan.medias[0].rtp_port);
    let relay_b = SocketAddr::new([127, 0, 0, 1].into(), o.medias[0].rtp_port);

    // A nominates; B's media confirms B: both directions in the kernel.
    a.send_to(&ice_check(&creds.ufrag, &creds.pwd, true), relay_a)
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!(from, relay_a);
    assert!(relay_media::looks_like_stun(&buf[..n]));
    h.handle_events(1).await;
    b.send_to(&[0x80; 172], relay_b).unwrap();
    h.handle_events(1).await;
    // Read it where it went, so that it is not taken for a STUN response
    // below.
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((n, from), (172, relay_a), "B's media reaches A");
    let entry = |h: &Harness, at: SocketAddr| h.kernel.entries.lock().unwrap().get(&at).copied();
    let to_a = entry(&h, relay_b).expect("B -> A forwarded in the kernel");
    assert_eq!(to_a.peer, a.local_addr().unwrap());
    assert!(entry(&h, relay_a).expect("A -> B in the kernel").ice);
    assert!(!to_a.ice, "B's port runs no agent");

    // 30 s without a check: nothing more goes to A; a check restores it.
    h.mgr.tick(Instant::now() + Duration::from_secs(31));
    assert!(entry(&h, relay_b).is_none(), "B -> A left the kernel");
    assert!(entry(&h, relay_a).is_some(), "A -> B is not A's consent");
    a.send_to(&ice_check(&creds.ufrag, &creds.pwd, false), relay_a)
        .unwrap();
    a.recv_from(&mut buf).unwrap();
    h.handle_events(1).await;
    assert_eq!(
        entry(&h, relay_b).map(|e| e.peer),
        Some(a.local_addr().unwrap())
    );

    answer.ice = IceOption::Remove;
    let removed = h.answer(&answer, now).unwrap();
    assert_eq!(removed.medias[0].ice, None);
    a.send_to(&ice_check(&creds.ufrag, &creds.pwd, false), relay_a)
        .unwrap();
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(a.recv_from(&mut buf).is_err(), "no agent answers any more");
}

/// An ICE restart (a new `a=ice-ufrag` from the party) gets new relay
/// credentials; the same ufrag again keeps them.
#[tokio::test]
async fn ice_restart_gets_new_credentials() {
    let mut h = harness(42400, 42499);
    let now = Instant::now();
    let offer = |ufrag: &str, to: Option<&str>| {
        let mut sig = signal("r1", "A", to, sa("10.0.0.1:4000"));
        sig.sdp_ice = true;
        sig.ice = IceOption::Remove;
        sig.medias[0].ice_ufrag = Some(ufrag.into());
        sig
    };
    let answer = signal("r1", "A", Some("B"), sa("10.0.0.2:5000"));
    h.offer(&offer("a1", None), now).unwrap();
    let first = h.answer(&answer, now).unwrap().medias[0].ice.clone();
    assert!(first.is_some());
    h.offer(&offer("a1", Some("B")), now).unwrap();
    let same = h.answer(&answer, now).unwrap().medias[0].ice.clone();
    assert_eq!(same, first, "the same ufrag: no restart");
    h.offer(&offer("a2", Some("B")), now).unwrap();
    let restarted = h.answer(&answer, now).unwrap().medias[0].ice.clone();
    assert!(restarted.is_some());
    assert_ne!(restarted, first, "a new ufrag restarts ICE");
}

/// A subscription takes the source's stream out of the kernel (the copies
/// are made in userspace) and copies each packet from the subscriber's
/// port; unsubscribe frees the ports and puts the stream back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_stream_leaves_the_kernel_and_is_copied() {
    let mut h = harness(42900, 42999);
    let now = Instant::now();
    let sock = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    };
    let (a, b, tap) = (sock(), sock(), sock());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let offer = h.offer(&signal("s1", "A", None, a_addr), now).unwrap();
    let answer = h
        .answer(&signal("s1", "A", Some("B"), b_addr), now)
        .unwrap();
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port));
    let mut buf = [0u8; 64];
    a.send_to(b"a1", relay_for_a).unwrap();
    b.recv_from(&mut buf).unwrap();
    b.send_to(b"b1", relay_for_b).unwrap();
    a.recv_from(&mut buf).unwrap();
    h.handle_events(2).await;
    assert!(h.kernel.entries.lock().unwrap().contains_key(&relay_for_a));

    assert_eq!(
        h.mgr
            .subscribe("nope", &[], None, now)
            .unwrap_err()
            .to_string(),
        "Unknown call-ID"
    );
    assert_eq!(
        h.mgr
            .subscribe("s1", &["Z".into()], None, now)
            .unwrap_err()
            .to_string(),
        "From-tag given, but no such tag exists"
    );
    assert_eq!(
        h.mgr
            .subscribe("s1", &["A".into()], Some("B"), now)
            .unwrap_err(),
        super::subscribe::SubscribeError::TagInUse,
        "a party's tag names no subscriber"
    );
    let sub = h
        .mgr
        .subscribe("s1", &["A".into()], Some("T"), now)
        .unwrap();
    h.mgr.run_deferred();
    assert_eq!(
        (sub.to_tag.as_str(), sub.from_tags.as_slice()),
        ("T", &["A".to_owned()][..])
    );
    let tap_port = sa(&format!("127.0.0.1:{}", sub.plan.medias[0].rtp_port));
    assert!(
        !h.kernel.entries.lock().unwrap().contains_key(&relay_for_a),
        "A's stream is copied in userspace"
    );
    assert!(
        h.kernel.entries.lock().unwrap().contains_key(&relay_for_b),
        "B's stream is not subscribed to: still in the kernel"
    );
    let mut answer_sig = signal("s1", "T", None, tap.local_addr().unwrap());
    answer_sig.medias[0].muted = true;
    assert_eq!(
        h.mgr
            .subscribe_answer(&signal("s1", "X", None, b_addr), now)
            .unwrap_err()
            .to_string(),
        "To-tag not found"
    );
    h.mgr.subscribe_answer(&answer_sig, now).unwrap();

    a.send_to(b"a2", relay_for_a).unwrap();
    let (n, src) = b.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], src),
        (&b"a2"[..], relay_for_b),
        "B still gets A"
    );
    let (n, src) = tap.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], src),
        (&b"a2"[..], tap_port),
        "the copy, from the subscriber's port"
    );

    h.mgr.unsubscribe("s1", "T").unwrap();
    h.mgr.run_deferred();
    assert!(
        h.kernel.entries.lock().unwrap().contains_key(&relay_for_a),
        "back in the kernel once nobody subscribes"
    );
    assert!(
        h.mgr.query("s1").unwrap().tags.len() == 2,
        "the subscriber is gone"
    );
    h.mgr.unsubscribe("s1", "T").unwrap(); // again: no error, as rtpengine
    h.delete("s1", None, Some(Duration::ZERO), now).unwrap();
    assert_eq!(
        h.mgr.port_usage()[0].1,
        0,
        "every port pair back in the pool"
    );
}

/// A subscription is recorded with the call and restored: after a
/// restart the subscriber still gets its copies, and the source stays out
/// of the kernel until it unsubscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_restart() {
    let mut h = harness(43000, 43099);
    let now = Instant::now();
    let sock = || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    };
    let (a, b, tap) = (sock(), sock(), sock());
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let offer = h.offer(&signal("s2", "A", None, a_addr), now).unwrap();
    let answer = h
        .answer(&signal("s2", "A", Some("B"), b_addr), now)
        .unwrap();
    let relay_for_a = sa(&format!("127.0.0.1:{}", answer.medias[0].rtp_port));
    let relay_for_b = sa(&format!("127.0.0.1:{}", offer.medias[0].rtp_port));
    let sub = h
        .mgr
        .subscribe("s2", &["A".into()], Some("T"), now)
        .unwrap();
    h.mgr.run_deferred();
    h.mgr
        .subscribe_answer(&signal("s2", "T", None, tap.local_addr().unwrap()), now)
        .unwrap();
    let tap_port = sa(&format!("127.0.0.1:{}", sub.plan.medias[0].rtp_port));
    let changes = h.mgr.take_changes();
    let Some(relay_state::Change::Put(record)) = changes.last() else {
        panic!("a record: {changes:?}");
    };
    assert_eq!(
        record.monologues[2].subscribed,
        [relay_state::SubscriptionRecord {
            source: 0,
            media: 0
        }]
    );

    // relayd dies and a new one restores the call.
    let kernel = h.kernel.clone();
    for port in h.mgr.calls.values().flat_map(Call::ports) {
        if let Some(task) = port.state().forwarder.take() {
            task.abort();
        }
    }
    drop(h);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut h = harness_on(43000, 43099, kernel);
    h.mgr.kernel.adopting().unwrap();
    let report = h.mgr.restore(stored(&changes).calls.into_values());
    h.mgr.run_deferred();
    assert_eq!((report.restored, report.failed.len()), (1, 0));

    let mut buf = [0u8; 64];
    a.send_to(b"a1", relay_for_a).unwrap();
    let (n, src) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"a1"[..], relay_for_b));
    let (n, src) = tap.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], src),
        (&b"a1"[..], tap_port),
        "copied after the restart"
    );
    b.send_to(b"b1", relay_for_b).unwrap();
    a.recv_from(&mut buf).unwrap();
    h.handle_events(2).await;
    assert!(
        !h.kernel.entries.lock().unwrap().contains_key(&relay_for_a),
        "the restored source stays in userspace"
    );
    h.mgr.unsubscribe("s2", "T").unwrap();
    assert!(h.kernel.entries.lock().unwrap().contains_key(&relay_for_a));
}
