//! Soak: many offer/answer/delete cycles against one relayd, then a check
//! that nothing stayed behind (ports, sockets, kernel entries, counter
//! slots) and that its memory stayed flat (issue 19).
//!
//! Phase A drives relayd `--datapath=userspace` on loopback (the NG
//! benchmark's relayd, `ng::start_relayd`, call state kept) with the NG
//! benchmark's cycle: it is the control plane that a million cycles
//! exercise (call model, port pool, sockets, journal, cookie cache), and
//! userspace keeps it the fastest. Phase B runs relayd `--datapath=xdp`
//! between the tests' two hosts ([`Topology`]) and gives each call RTP
//! both ways, so every cycle installs pass entries, kernelizes both
//! streams (a counter slot each), forwards in XDP and removes it all.
//!
//! RSS is sampled along the way. Its first minute is not a baseline:
//! relayd caches every NG reply by cookie for two 30 s generations (as
//! rtpengine does; up to 100 000 replies each), and its call state
//! journal keeps the replies of the last 60 s in memory too (so that a
//! restarted relayd still answers retransmissions), so memory grows to a
//! working set set by the request rate of the last minute. So each phase
//! first runs warm-up cycles for at least [`CACHE_PLATEAU`], and growth is
//! judged over the counted cycles after them: the median of the last few
//! samples against that of the first few (a journal compaction holds a
//! copy of the journal for a moment, which one sample may catch).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, sdp_endpoint, NgClient},
    packet::g711_packet,
    peer::{attach_peer_pass, PeerPass},
    ready::spawn_ready,
    topology::{bind_udp, exchange_payloads, Topology, HOST_A, HOST_B},
    PinDirGuard,
};
use relay_userspace::datapath::xdp::{versioned_dir, RelayMaps};

use crate::ng::{cycle_requests, start_relayd, wait_for_ng, StateDirs};

/// Two cookie-cache generations (the journal's 60 s of replies) and a
/// little: by then both hold all they will hold at this request rate.
pub const CACHE_PLATEAU: Duration = Duration::from_secs(65);

/// RTP packets each way while the call's ends are learnt (userspace).
const LEARN_PACKETS: u16 = 2;
/// RTP packets each way once both streams are in XDP.
const KERNEL_PACKETS: u16 = 3;
/// Failed cycles tolerated before the soak gives up (each is reported).
const MAX_FAILURES: u64 = 100;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// The relayd binary.
    pub relayd: &'a Path,
    /// Phase A: offer/answer/delete cycles (0 skips it).
    pub cycles: u64,
    /// Phase B: cycles with media through XDP (0 skips it).
    pub media_cycles: u64,
    /// Cycles run before the counted ones, in each phase.
    pub warmup: Warmup,
    /// Largest RSS growth from the baseline to the end, KiB.
    pub rss_bound_kib: u64,
}

/// relayd's memory and descriptors at one point of a phase.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Cycles done.
    pub cycles: u64,
    /// Since the phase started.
    pub elapsed: Duration,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// What was left once every call was deleted.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// Calls NG `list` still shows.
    pub calls: usize,
    /// Port pairs `relayctl totals` counts as used.
    pub port_pairs: u64,
    /// UDP sockets bound in the media port range (/proc/net/udp).
    pub media_sockets: usize,
    /// Kernel stream entries (pinned stream table); None in userspace.
    pub kernel_entries: Option<usize>,
    /// Counter slots in use (`relayctl totals`); None in userspace.
    pub slots: Option<u64>,
    /// Open descriptors at the end minus before the first cycle.
    pub extra_fds: i64,
}

impl Leftovers {
    /// Whether anything leaked.
    pub fn clean(&self) -> bool {
        self.calls == 0
            && self.port_pairs == 0
            && self.media_sockets == 0
            && self.kernel_entries.unwrap_or(0) == 0
            && self.slots.unwrap_or(0) == 0
            && self.extra_fds <= 0
    }
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct Phase {
    /// "A (NG, userspace)" or "B (NG + RTP, XDP)".
    pub name: &'static str,
    /// Warm-up cycles, run before the counted ones.
    pub warmup_cycles: u64,
    /// Counted cycles.
    pub cycles: u64,
    /// Wall time of the counted cycles.
    pub elapsed: Duration,
    /// Cycles that failed (NG error, media lost, never kernelized),
    /// warm-up included.
    pub failures: u64,
    /// The first failures' descriptions.
    pub failure_notes: Vec<String>,
    /// Before the first cycle, at the end of the warm-up (the baseline),
    /// then along the counted cycles.
    pub samples: Vec<Sample>,
    /// Index of the baseline in `samples`.
    pub baseline: usize,
    /// Whether the warm-up lasted [`CACHE_PLATEAU`] (else RSS is not
    /// judged).
    pub plateau: bool,
    /// What stayed behind.
    pub left: Leftovers,
    /// Packets XDP forwarded (phase B), and how many the cycles sent
    /// once kernelized.
    pub kernel_packets: Option<(u64, u64)>,
    /// The call state journal's size at the end, bytes (phase A).
    pub journal_bytes: Option<u64>,
}

/// How much of the start and of the end of the counted cycles the growth
/// compares (medians of the samples in each): one cookie-cache generation.
/// RSS is a sawtooth at this period (a generation of replies freed at
/// once), with brief spikes when a journal compaction holds a copy of the
/// journal; medians over a whole period see neither.
const WINDOW: Duration = Duration::from_secs(30);

impl Phase {
    fn base(&self) -> Sample {
        self.samples[self.baseline]
    }

    fn counted(&self) -> &[Sample] {
        &self.samples[self.baseline..]
    }

    fn middle(&self) -> Sample {
        let want = self.base().cycles + self.cycles / 2;
        *self
            .counted()
            .iter()
            .min_by_key(|s| s.cycles.abs_diff(want))
            .unwrap_or(&self.base())
    }

    fn end(&self) -> Sample {
        *self.samples.last().unwrap_or(&self.samples[0])
    }

    /// RSS growth over the counted cycles, KiB (negative: shrank): the
    /// median over their last [`WINDOW`] minus that over their first.
    pub fn rss_growth_kib(&self) -> i64 {
        let (from, to) = (self.base().elapsed, self.end().elapsed);
        let median_within = |keep: &dyn Fn(Duration) -> bool| {
            crate::ng::median(
                self.counted()
                    .iter()
                    .filter(|s| keep(s.elapsed))
                    .map(|s| s.rss_kib as f64)
                    .collect(),
            )
        };
        let first = median_within(&|t| t <= from + WINDOW);
        let last = median_within(&|t| t + WINDOW >= to);
        (last - first).round() as i64
    }

    /// Least-squares slope of RSS over the counted cycles, bytes per
    /// cycle.
    pub fn rss_slope(&self) -> f64 {
        slope(
            self.counted()
                .iter()
                .map(|s| (s.cycles as f64, s.rss_kib as f64 * 1024.0)),
        )
    }

    /// Whether the phase passes: no failed cycle, no leftover, XDP
    /// forwarded what it should, RSS within `bound_kib` (when judged).
    pub fn passed(&self, bound_kib: u64) -> bool {
        let kernel_ok = self.kernel_packets.is_none_or(|(got, want)| got >= want);
        let rss_ok = !self.plateau || self.rss_growth_kib() <= bound_kib as i64;
        self.failures == 0 && self.left.clean() && kernel_ok && rss_ok
    }
}

/// The slope of the least-squares line through `points` (0 for fewer
/// than two distinct x).
pub fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let pts: Vec<(f64, f64)> = points.collect();
    let n = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in &pts {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// VmRSS (KiB) and open descriptors of `pid`.
fn probe(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok((rss, fds))
}

/// How long a phase warms up: at least this many cycles and this long.
#[derive(Debug, Clone, Copy)]
pub struct Warmup {
    /// Cycles.
    pub cycles: u64,
    /// Wall time ([`CACHE_PLATEAU`] for a judged RSS).
    pub time: Duration,
}

/// Runs a phase's cycles, sampling relayd, printing progress, counting
/// failures.
struct Driver {
    name: &'static str,
    pid: u32,
    started: Instant,
    samples: Vec<Sample>,
    failures: u64,
    notes: Vec<String>,
}

impl Driver {
    fn new(name: &'static str, pid: u32) -> Result<Self> {
        let mut d = Driver {
            name,
            pid,
            started: Instant::now(),
            samples: Vec::new(),
            failures: 0,
            notes: Vec::new(),
        };
        d.sample(0)?;
        Ok(d)
    }

    fn sample(&mut self, cycles: u64) -> Result<()> {
        let (rss_kib, fds) = probe(self.pid).context("relayd gone?")?;
        self.samples.push(Sample {
            cycles,
            elapsed: self.started.elapsed(),
            rss_kib,
            fds,
        });
        Ok(())
    }

    /// Counts a failed cycle; gives up after [`MAX_FAILURES`].
    fn check(&mut self, id: &str, outcome: Result<()>) -> Result<()> {
        let Err(e) = outcome else {
            return Ok(());
        };
        self.failures += 1;
        if self.notes.len() < 5 {
            self.notes.push(format!("{id}: {e:#}"));
        }
        if self.failures > MAX_FAILURES {
            bail!(
                "{}: {} failed cycles: {:?}",
                self.name,
                self.failures,
                self.notes
            );
        }
        Ok(())
    }

    /// Warms up, then runs `count` cycles (`cycle` is given each one's
    /// call-id), sampling about 200 times; returns the baseline's index
    /// and how many warm-up cycles ran.
    fn run(
        &mut self,
        warmup: Warmup,
        count: u64,
        mut cycle: impl FnMut(&str) -> Result<()>,
    ) -> Result<(usize, u64)> {
        let mut warm = 0;
        while warm < warmup.cycles || self.started.elapsed() < warmup.time {
            let id = format!("warm-{warm}");
            let outcome = cycle(&id);
            self.check(&id, outcome)?;
            warm += 1;
        }
        self.sample(warm)?;
        let baseline = self.samples.len() - 1;
        eprintln!("soak {}: warmed up with {warm} cycles", self.name);
        let every = (count / 200).max(1);
        let t0 = self.started.elapsed();
        for i in 0..count {
            let id = format!("soak-{i}");
            let outcome = cycle(&id);
            self.check(&id, outcome)?;
            let done = i + 1;
            if done.is_multiple_of(every) || done == count {
                self.sample(warm + done)?;
                if done.is_multiple_of(every * 20) || done == count {
                    self.progress(done, count, t0);
                }
            }
        }
        Ok((baseline, warm))
    }

    fn progress(&self, done: u64, count: u64, t0: Duration) {
        let s = self.samples[self.samples.len() - 1];
        let secs = (s.elapsed - t0).as_secs_f64();
        eprintln!(
            "soak {}: {done}/{count} cycles, {secs:.0} s, {:.0}/s, RSS {} KiB, {} fds, {} failed",
            self.name,
            done as f64 / secs,
            s.rss_kib,
            s.fds,
            self.failures
        );
    }

    /// The phase's figures.
    fn finish(self, run: (usize, u64), warmup: Warmup, left: Leftovers) -> Phase {
        let (baseline, warmup_cycles) = run;
        let end = self.samples.last().map_or(Duration::ZERO, |s| s.elapsed);
        let elapsed = end.saturating_sub(self.samples[baseline].elapsed);
        let cycles = self.samples.last().map_or(0, |s| s.cycles) - warmup_cycles;
        Phase {
            name: self.name,
            warmup_cycles,
            cycles,
            elapsed,
            failures: self.failures,
            failure_notes: self.notes,
            samples: self.samples,
            baseline,
            plateau: warmup.time >= CACHE_PLATEAU,
            left,
            kernel_packets: None,
            journal_bytes: None,
        }
    }
}

/// `{"command": "totals"}` to relayd's CLI socket `cli` in `ns`.
fn cli_totals(ns: &Netns, cli: SocketAddr) -> Result<serde_json::Value> {
    let mut stream = ns.run(move || TcpStream::connect(cli))??;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"{\"command\":\"totals\"}\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let reply: serde_json::Value = serde_json::from_str(&line).context("totals reply")?;
    if reply["ok"] != true {
        bail!("totals: {line}");
    }
    Ok(reply["data"].clone())
}

/// Port pairs in use over every interface of `totals`.
fn pairs_used(totals: &serde_json::Value) -> u64 {
    totals["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["used"].as_u64())
        .sum()
}

/// How many calls NG `list` shows.
fn listed_calls(ng: &NgClient) -> Result<usize> {
    let reply = ng.ok(&Value::dict([("command", Value::str("list"))]))?;
    Ok(reply
        .get("calls")
        .and_then(Value::as_list)
        .map_or(0, |l| l.len()))
}

/// What stays behind once every call is gone. Forwarders stop and sockets
/// close just after a delete's reply, so this waits (up to 3 s) for the
/// totals to say no port is used before counting.
fn leftovers(
    ns: &Netns,
    ng: &NgClient,
    cli: SocketAddr,
    media_ports: std::ops::RangeInclusive<u16>,
    fds_before: u64,
    pid: u32,
) -> Result<(Leftovers, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut totals = cli_totals(ns, cli)?;
    while pairs_used(&totals) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        totals = cli_totals(ns, cli)?;
    }
    // The sockets close on the forwarders' threads, a little later still.
    std::thread::sleep(Duration::from_millis(300));
    let media_sockets = ns
        .udp_ports()?
        .into_iter()
        .filter(|p| media_ports.contains(p))
        .count();
    let (_, fds) = probe(pid)?;
    let left = Leftovers {
        calls: listed_calls(ng)?,
        port_pairs: pairs_used(&totals),
        media_sockets,
        kernel_entries: None,
        slots: totals["kernel_slots"]["used"].as_u64(),
        extra_fds: fds as i64 - fds_before as i64,
    };
    Ok((left, totals))
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Phase A: `cycles` offer/answer/delete cycles from one client, relayd
/// in userspace on loopback, call state kept.
pub fn phase_a(cfg: &Config) -> Result<Phase> {
    const NG_PORT: u16 = 2223;
    const PORT_MIN: u16 = 20000;
    let ns = Netns::new("soak")?;
    let state = StateDirs::new();
    let relayd = start_relayd(&ns, cfg.relayd, NG_PORT, PORT_MIN, Some(&state), None)?;
    let ng = NgClient::new(&ns, SocketAddr::from(([127, 0, 0, 1], NG_PORT)))?;
    wait_for_ng(&ng, "relayd")?;
    let mut d = Driver::new("A", relayd.0.id())?;
    let fds_before = d.samples[0].fds;
    let run = d.run(cfg.warmup, cfg.cycles, |id| signalling_cycle(&ng, id))?;
    // relayd's CLI port, as start_relayd sets it.
    let cli = SocketAddr::from(([127, 0, 0, 1], NG_PORT + 7677));
    let media = PORT_MIN..=PORT_MIN + 9999;
    let (left, _) = leftovers(&ns, &ng, cli, media, fds_before, d.pid)?;
    let mut phase = d.finish(run, cfg.warmup, left);
    phase.journal_bytes = Some(dir_bytes(&state.of(NG_PORT)));
    drop(relayd);
    Ok(phase)
}

/// One offer/answer/delete cycle of the NG benchmark.
fn signalling_cycle(ng: &NgClient, id: &str) -> Result<()> {
    for body in cycle_requests(id) {
        let reply = ng.request(&body)?;
        if reply.get("result").and_then(Value::as_str) != Some("ok") {
            bail!("{reply:?}");
        }
    }
    Ok(())
}

/// relayd XDP between the topology's hosts, with the peers' programs that
/// native XDP transmit needs; everything goes on drop (relayd first).
struct MediaBed {
    relayd: Option<ChildGuard>,
    ng: NgClient,
    pins: PinDirGuard,
    log: PathBuf,
    _peers: [PeerPass; 2],
    t: Topology,
}

impl Drop for MediaBed {
    fn drop(&mut self) {
        drop(self.relayd.take());
        let _ = std::fs::remove_file(&self.log);
    }
}

const MEDIA_PORT_MIN: u16 = 30000;
const MEDIA_PORT_MAX: u16 = 31999;
const MEDIA_CLI: &str = "127.0.0.1:9900";

fn media_bed(relayd: &Path) -> Result<MediaBed> {
    let t = Topology::new("sk")?;
    let pa = t.a.run(|| attach_peer_pass("a0"))??;
    let pb = t.b.run(|| attach_peer_pass("b0"))??;
    let pins = PinDirGuard::new("soak");
    let log = std::env::temp_dir().join(format!("xrelay-soak-{}.log", std::process::id()));
    let mut cmd = t.r.command(relayd)?;
    cmd.args(["-i", "a/10.20.1.1", "-i", "b/10.20.2.1"])
        .args(["--listen-ng", "127.0.0.1:2223", "--listen-cli", MEDIA_CLI])
        .arg(format!("--port-min={MEDIA_PORT_MIN}"))
        .arg(format!("--port-max={MEDIA_PORT_MAX}"))
        .args(["--datapath", "xdp", "--delete-delay", "0"])
        .arg("--pin-dir")
        .arg(&pins.0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let child = spawn_ready(&mut cmd)
        .with_context(|| format!("starting relayd XDP (log: {})", log.display()))?;
    let ng = NgClient::new(&t.r, "127.0.0.1:2223".parse()?)?;
    wait_for_ng(&ng, "relayd")?;
    Ok(MediaBed {
        relayd: Some(child),
        ng,
        pins,
        log,
        _peers: [pa, pb],
        t,
    })
}

/// Offer from A, answer from B (each side on its own relay interface),
/// delete at once: what a proxy sends for a call between the two hosts.
fn media_requests(id: &str) -> [Value; 3] {
    let s = Value::str;
    [
        Value::dict([
            ("command", s("offer")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("sdp", s(&audio_sdp(HOST_A, 5000))),
            ("direction", Value::str_list(["a", "b"])),
            ("received-from", Value::str_list(["IP4", HOST_A])),
        ]),
        Value::dict([
            ("command", s("answer")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            ("sdp", s(&audio_sdp(HOST_B, 40000))),
            ("received-from", Value::str_list(["IP4", HOST_B])),
        ]),
        Value::dict([
            ("command", s("delete")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("delete-delay", Value::Int(0)),
        ]),
    ]
}

/// The relay address a reply's SDP points the other party at.
fn relay_endpoint(reply: &Value) -> Result<String> {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_bytes)
        .context("no SDP")?;
    let (addr, port) = sdp_endpoint(sdp).context("no endpoint in the SDP")?;
    Ok(format!("{addr}:{port}"))
}

/// Whether every RTP stream (the first of each media) of a `query` reply
/// is in the kernel.
fn kernelized(query: &Value) -> bool {
    let Some(tags) = query.get("tags").and_then(Value::as_dict) else {
        return false;
    };
    let mut streams = tags
        .values()
        .flat_map(|t| t.get("medias").and_then(Value::as_list).unwrap_or(&[]))
        .filter_map(|m| m.get("streams").and_then(Value::as_list)?.first());
    let flagged = |st: &Value| {
        st.get("flags")
            .and_then(Value::as_list)
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("kernelized")))
    };
    let mut any = false;
    streams.all(|st| {
        any = true;
        flagged(st)
    }) && any
}

/// The two parties' sockets and the next RTP sequence number.
struct Parties {
    a: UdpSocket,
    b: UdpSocket,
    seq: u16,
}

impl Parties {
    /// `n` G.711 packets from A to `to_a` (the relay's A side), each
    /// received by B before the next goes, then the same from B.
    fn both_ways(&mut self, to_a: &str, to_b: &str, n: u16) -> Result<()> {
        for (from, to, rx, ssrc) in [(&self.a, to_a, &self.b, 0xa), (&self.b, to_b, &self.a, 0xb)] {
            let seq = self.seq;
            let packets = (0..n).map(|k| g711_packet(seq.wrapping_add(k), ssrc));
            let got = exchange_payloads(from, to, rx, packets, Duration::ZERO)?;
            if got.len() != usize::from(n) {
                bail!("{} of {n} packets to {to} arrived", got.len());
            }
        }
        self.seq = self.seq.wrapping_add(n);
        Ok(())
    }
}

/// One call with media: offer, answer, RTP until both streams are in XDP
/// (waiting up to 2 s), RTP through XDP, delete.
fn media_cycle(ng: &NgClient, parties: &mut Parties, id: &str) -> Result<()> {
    let [offer, answer, delete] = media_requests(id);
    let to_b = relay_endpoint(&ng.ok(&offer)?)?;
    let to_a = relay_endpoint(&ng.ok(&answer)?)?;
    let media = (|| {
        parties.both_ways(&to_a, &to_b, LEARN_PACKETS)?;
        let query = Value::dict([
            ("command", Value::str("query")),
            ("call-id", Value::str(id)),
        ]);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !kernelized(&ng.ok(&query)?) {
            if Instant::now() > deadline {
                bail!("streams not kernelized within 2 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        parties.both_ways(&to_a, &to_b, KERNEL_PACKETS)
    })();
    // Deleted whatever happened to the media, so a failure leaks nothing.
    ng.ok(&delete)?;
    media
}

/// Phase B: `media_cycles` calls with RTP through XDP, one at a time.
pub fn phase_b(cfg: &Config) -> Result<Phase> {
    let bed = media_bed(cfg.relayd)?;
    let pid = bed.relayd.as_ref().context("relayd")?.0.id();
    let mut parties = Parties {
        a: bind_udp(&bed.t.a, &format!("{HOST_A}:5000"))?,
        b: bind_udp(&bed.t.b, &format!("{HOST_B}:40000"))?,
        seq: 0,
    };
    let cli: SocketAddr = MEDIA_CLI.parse()?;
    let kernel_before = cli_totals(&bed.t.r, cli)?["kernel"]["packets"]
        .as_u64()
        .unwrap_or(0);
    let mut d = Driver::new("B", pid)?;
    let fds_before = d.samples[0].fds;
    let run = d.run(cfg.warmup, cfg.media_cycles, |id| {
        media_cycle(&bed.ng, &mut parties, id)
    })?;
    let media = MEDIA_PORT_MIN..=MEDIA_PORT_MAX;
    let (mut left, totals) = leftovers(&bed.t.r, &bed.ng, cli, media, fds_before, pid)?;
    let maps = RelayMaps::open_pinned(&versioned_dir(&bed.pins.0))?;
    left.kernel_entries = Some(maps.installed()?.len());
    let forwarded = totals["kernel"]["packets"].as_u64().unwrap_or(0) - kernel_before;
    let completed = cfg.media_cycles + run.1 - d.failures;
    let mut phase = d.finish(run, cfg.warmup, left);
    phase.kernel_packets = Some((forwarded, completed * 2 * u64::from(KERNEL_PACKETS)));
    Ok(phase)
}

/// Both phases (either skipped with 0 cycles).
pub fn run(cfg: &Config) -> Result<Vec<Phase>> {
    let mut phases = Vec::new();
    if cfg.cycles > 0 {
        phases.push(Phase {
            name: "A (NG, userspace)",
            ..phase_a(cfg)?
        });
    }
    if cfg.media_cycles > 0 {
        phases.push(Phase {
            name: "B (NG + RTP, XDP)",
            ..phase_b(cfg)?
        });
    }
    Ok(phases)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("n/a".into(), |v| v.to_string())
}

/// A Markdown report with a verdict line per phase.
pub fn markdown(cfg: &Config, phases: &[Phase]) -> String {
    let mut out = String::from(
        "| phase | warm-up | cycles | time | failed | RSS start | RSS after warm-up | RSS middle | \
         RSS end | growth | slope | fds before/after |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let (start, base, mid, end) = (p.samples[0], p.base(), p.middle(), p.end());
        out += &format!(
            "| {} | {} cycles, {:.0} s | {} | {:.0} s ({:.0}/s) | {} | {} | {} | {} | {} | \
             {:+} KiB | {:+.2} B/cycle | {}/{} |\n",
            p.name,
            p.warmup_cycles,
            base.elapsed.as_secs_f64(),
            p.cycles,
            p.elapsed.as_secs_f64(),
            p.cycles as f64 / p.elapsed.as_secs_f64(),
            p.failures,
            mib(start.rss_kib),
            mib(base.rss_kib),
            mib(mid.rss_kib),
            mib(end.rss_kib),
            p.rss_growth_kib(),
            p.rss_slope(),
            start.fds,
            start.fds as i64 + p.left.extra_fds,
        );
    }
    for p in phases {
        out += &leftover_line(p);
        out += &verdict_line(cfg, p);
    }
    out
}

/// Every sample as CSV: phase, cycles (warm-up included), seconds, RSS
/// KiB, descriptors.
pub fn csv(phases: &[Phase]) -> String {
    let mut out = String::from("phase,cycles,seconds,rss_kib,fds\n");
    for p in phases {
        for s in &p.samples {
            out += &format!(
                "{},{},{:.3},{},{}\n",
                &p.name[..1],
                s.cycles,
                s.elapsed.as_secs_f64(),
                s.rss_kib,
                s.fds
            );
        }
    }
    out
}

fn leftover_line(p: &Phase) -> String {
    let l = &p.left;
    let mut line = format!(
        "{}: left after the last delete: {} calls, {} port pairs, {} media sockets, \
         {} kernel entries, {} counter slots, {:+} fds",
        p.name,
        l.calls,
        l.port_pairs,
        l.media_sockets,
        opt(l.kernel_entries),
        opt(l.slots),
        l.extra_fds
    );
    if let Some((got, want)) = p.kernel_packets {
        line += &format!("; XDP forwarded {got} packets (cycles sent {want} once kernelized)");
    }
    if let Some(bytes) = p.journal_bytes {
        line += &format!("; state journal {bytes} bytes");
    }
    for note in &p.failure_notes {
        line += &format!("\n  failed {note}");
    }
    line + "\n"
}

fn verdict_line(cfg: &Config, p: &Phase) -> String {
    let rss = if p.plateau {
        format!(
            "RSS {:+} KiB over the counted cycles (medians of their first and last {} s; \
             bound {} KiB)",
            p.rss_growth_kib(),
            WINDOW.as_secs(),
            cfg.rss_bound_kib
        )
    } else {
        format!(
            "RSS not judged: a warm-up shorter than the cookie caches' plateau ({} s)",
            CACHE_PLATEAU.as_secs()
        )
    };
    let verdict = if p.passed(cfg.rss_bound_kib) {
        "PASS"
    } else {
        "FAIL"
    };
    format!("{}: {verdict}: {rss}\n", p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_point() {
        let s = slope([(0.0, 1.0), (10.0, 21.0), (20.0, 41.0)].into_iter());
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(slope([(5.0, 1.0)].into_iter()), 0.0);
    }

    fn sample(cycles: u64, secs: u64, rss_kib: u64) -> Sample {
        Sample {
            cycles,
            elapsed: Duration::from_secs(secs),
            rss_kib,
            fds: 20,
        }
    }

    #[test]
    fn verdict_judges_rss_growth_from_the_warm_up_on() {
        // A sample a second for 100 s after the warm-up: a 30 s sawtooth
        // (a dip every 10th second), a compaction spike, 20 KiB a second.
        let mut samples = vec![sample(0, 0, 1000)];
        for i in 0..=100 {
            let rss = match i {
                55 => 90000,
                i if i % 10 == 9 => 8000,
                i => 10000 + 20 * i,
            };
            samples.push(sample(100 + i, 66 + i, rss));
        }
        let mut p = Phase {
            name: "A",
            warmup_cycles: 100,
            cycles: 100,
            elapsed: Duration::from_secs(100),
            failures: 0,
            failure_notes: Vec::new(),
            samples,
            baseline: 1,
            plateau: true,
            left: Leftovers::default(),
            kernel_packets: None,
            journal_bytes: None,
        };
        // Medians of seconds 0..=30 (10260) and 70..=100 (11660).
        assert_eq!(p.rss_growth_kib(), 1400);
        assert_eq!(p.middle().cycles, 150);
        assert!(p.passed(1400) && !p.passed(1399));
        p.plateau = false;
        assert!(p.passed(1), "a short warm-up's RSS is not judged");
        p.left.slots = Some(1);
        assert!(!p.passed(2000), "a slot left in use is a leak");
        p.left.slots = Some(0);
        p.kernel_packets = Some((5, 6));
        assert!(!p.passed(2000), "XDP forwarded less than sent");
    }
}
