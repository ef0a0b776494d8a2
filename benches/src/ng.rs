//! NG control-plane benchmark: offer + answer + delete cycles from one NG
//! client, sequentially, against relayd (`--datapath=userspace`) and
//! rtpengine (Debian's `rtpengine-daemon`, `--table=-1`), both running at
//! once on loopback in a network namespace of their own.
//!
//! Both relays' figures move a lot from one run to the next on a shared VM
//! (rtpengine's by 2× between runs), so one run of each gives a ratio that
//! is mostly noise. The cycles are measured in rounds instead, relayd and
//! rtpengine alternating (and swapping who goes first each round), so a
//! slow stretch of the machine hits both alike; the report gives each
//! relay's median round and the median of the rounds' ratios.
//!
//! With a baseline relayd binary in rtpengine's place, the same rounds A/B
//! two builds of relayd against each other.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, NgClient},
    ready::spawn_ready,
    redis_server::{self, RedisServer},
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// The relayd binary.
    pub relayd: &'a Path,
    /// Cycles per relay per round.
    pub cycles: u32,
    /// Rounds (each relay once per round).
    pub rounds: u32,
    /// A relayd binary to measure instead of rtpengine (an A/B of builds).
    pub baseline: Option<&'a Path>,
    /// Keep call state (relayd's default); false runs it with `--no-state`.
    pub state: bool,
    /// Replicate relayd's calls to a Redis started for the run (`--redis`);
    /// a baseline relayd runs without, so the rounds A/B replication.
    pub redis: bool,
    /// Both relays on CPU 1 with the namespace's loopback receive
    /// processing (RPS), the client on CPU 0: each relay has one core for
    /// everything its requests cost it.
    pub one_core: bool,
}

/// The CPU of the relays with [`Config::one_core`].
const RELAY_CPU: u32 = 1;

/// Moves every thread of `pid` to `cpu`.
fn pin_process(pid: u32, cpu: u32) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset could not pin {pid} to CPU {cpu}");
    }
    Ok(())
}

/// Steers `ns`'s loopback receive processing to `cpu` (RPS), so a relay's
/// share of the network stack runs on its own core, not the sender's.
fn steer_loopback(ns: &Netns, cpu: u32) -> Result<()> {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c"])
        .arg(format!(
            "echo {:x} > /sys/class/net/lo/queues/rx-0/rps_cpus",
            1u32 << cpu
        ))
        .status()
        .context("running ip netns exec")?;
    if !status.success() {
        bail!("could not set RPS on the loopback of {}", ns.name());
    }
    Ok(())
}

/// One relay's timings in one round.
#[derive(Debug, Clone)]
pub struct Round {
    /// Cycles timed.
    pub cycles: u32,
    /// Wall time of all of them.
    pub elapsed: Duration,
    /// Every request's round trip.
    pub latencies: Vec<Duration>,
}

impl Round {
    /// Cycles per second over the round.
    pub fn cycles_per_sec(&self) -> f64 {
        f64::from(self.cycles) / self.elapsed.as_secs_f64()
    }
}

/// One relay's rounds.
#[derive(Debug, Clone)]
pub struct Relay {
    /// "relayd", "rtpengine" or "baseline".
    pub name: &'static str,
    /// In the order measured.
    pub rounds: Vec<Round>,
}

impl Relay {
    /// The median round's cycles per second.
    pub fn median_cycles_per_sec(&self) -> f64 {
        median(self.rounds.iter().map(Round::cycles_per_sec).collect())
    }

    /// Percentile `p` (0..=1) of every request of every round.
    pub fn latency(&self, p: f64) -> Duration {
        let mut all: Vec<Duration> = self
            .rounds
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort();
        if all.is_empty() {
            return Duration::ZERO;
        }
        all[((all.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Both relays' results.
#[derive(Debug, Clone)]
pub struct Results {
    /// relayd's rounds.
    pub relayd: Relay,
    /// What relayd is compared with: rtpengine's or the baseline's rounds.
    pub reference: Relay,
}

impl Results {
    /// relayd / reference cycles per second, round by round.
    pub fn ratios(&self) -> Vec<f64> {
        self.relayd
            .rounds
            .iter()
            .zip(&self.reference.rounds)
            .map(|(a, b)| a.cycles_per_sec() / b.cycles_per_sec())
            .collect()
    }

    /// A Markdown table and the ratio lines.
    pub fn markdown(&self, cfg: &Config) -> String {
        let state = match (cfg.state, cfg.redis) {
            (true, false) => "call state kept (default)",
            (false, false) => "relayd with --no-state",
            (true, true) => "call state kept, relayd replicating to Redis (--redis)",
            (false, true) => "relayd with --no-state, replicating to Redis (--redis)",
        };
        let cores = if cfg.one_core {
            ", each relay on CPU 1 with its loopback receive processing (RPS), the client on CPU 0"
        } else {
            ""
        };
        let mut out = format!(
            "NG offer+answer+delete, {} sequential cycles from one client per relay and round, \
             {} rounds alternating, loopback{cores}, {state}:\n\
             | relay | cycles/s (median round) | rounds | request p50 | request p99 |\n\
             |---|---|---|---|---|\n",
            cfg.cycles, cfg.rounds
        );
        for r in [&self.relayd, &self.reference] {
            let rounds: Vec<String> = r
                .rounds
                .iter()
                .map(|x| format!("{:.0}", x.cycles_per_sec()))
                .collect();
            out += &format!(
                "| {} | {:.0} | {} | {:.0} µs | {:.0} µs |\n",
                r.name,
                r.median_cycles_per_sec(),
                rounds.join(", "),
                r.latency(0.5).as_secs_f64() * 1e6,
                r.latency(0.99).as_secs_f64() * 1e6
            );
        }
        let ratios = self.ratios();
        let listed: Vec<String> = ratios.iter().map(|x| format!("{x:.2}")).collect();
        out += &format!(
            "ratio relayd / {}: {:.2}x (median of rounds; rounds {})\n",
            self.reference.name,
            median(ratios),
            listed.join(", ")
        );
        out
    }
}

fn s(v: &str) -> Value {
    Value::str(v)
}

/// The offer, answer and delete of one call cycle, call-id `id`.
pub(crate) fn cycle_requests(id: &str) -> [Value; 3] {
    [
        Value::dict([
            ("command", s("offer")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("sdp", s(&audio_sdp("127.0.0.1", 5000))),
            ("supports", Value::str_list(["load limit"])),
        ]),
        Value::dict([
            ("command", s("answer")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            ("sdp", s(&audio_sdp("127.0.0.1", 6000))),
        ]),
        Value::dict([
            ("command", s("delete")),
            ("call-id", s(id)),
            ("from-tag", s("a")),
            ("delete-delay", Value::Int(0)),
        ]),
    ]
}

/// Times `cycles` offer/answer/delete cycles against the NG socket, with
/// call-ids of their own (`tag`).
fn time_cycles(ng: &NgClient, name: &str, tag: &str, cycles: u32) -> Result<Round> {
    let mut latencies = Vec::with_capacity(cycles as usize * 3);
    let start = Instant::now();
    for i in 0..cycles {
        for body in cycle_requests(&format!("bench-{tag}-{i}")) {
            let t = Instant::now();
            let reply = ng.request(&body)?;
            latencies.push(t.elapsed());
            if reply.get("result").and_then(Value::as_str) != Some("ok") {
                bail!("{name}: {reply:?}");
            }
        }
    }
    Ok(Round {
        cycles,
        elapsed: start.elapsed(),
        latencies,
    })
}

pub(crate) fn wait_for_ng(ng: &NgClient, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ng.request(&Value::dict([("command", s("ping"))])).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{name}: no answer to ping")
}

/// Starts both relays in a fresh namespace and measures them in alternating
/// rounds. Both stop (and the namespace goes) when this returns.
pub fn run(cfg: &Config) -> Result<Results> {
    if cfg.rounds == 0 || cfg.cycles == 0 {
        bail!("need at least one round of at least one cycle");
    }
    let ns = Netns::new("bng")?;
    let state = cfg.state.then(StateDirs::new);
    let redis = if cfg.redis {
        let server =
            RedisServer::start_with("xrelay-bench ng", None, redis_server::in_netns(ns.name()))
                .context("--redis: redis-server is not available")?;
        Some(server)
    } else {
        None
    };
    let redis_url = redis.as_ref().map(|r| r.url(0));
    let relayd = start_relayd(
        &ns,
        cfg.relayd,
        2223,
        20000,
        state.as_ref(),
        redis_url.as_deref(),
    )?;
    let (reference_name, reference) = match cfg.baseline {
        Some(path) => (
            "baseline",
            start_relayd(&ns, path, 2224, 30000, state.as_ref(), None)?,
        ),
        None => ("rtpengine", start_rtpengine(&ns, 2224, 30000)?),
    };
    let clients = [
        ("relayd", NgClient::new(&ns, "127.0.0.1:2223".parse()?)?),
        (
            reference_name,
            NgClient::new(&ns, "127.0.0.1:2224".parse()?)?,
        ),
    ];
    for (name, ng) in &clients {
        wait_for_ng(ng, name)?;
    }
    if cfg.one_core {
        for child in [&relayd, &reference] {
            pin_process(child.0.id(), RELAY_CPU)?;
        }
        steer_loopback(&ns, RELAY_CPU)?;
        crate::throughput::measure::pin_to_cpu0()?;
    }
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for round in 0..cfg.rounds {
        // Swap who goes first, so neither always follows the other's
        // clean-up work (rtpengine frees a deleted call's ports in a timer).
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, ng) = &clients[i];
            let tag = format!("r{round}");
            rounds[i].push(time_cycles(ng, name, &tag, cfg.cycles)?);
        }
    }
    drop(relayd);
    drop(reference);
    drop(redis);
    let [relayd_rounds, reference_rounds] = rounds;
    Ok(Results {
        relayd: Relay {
            name: "relayd",
            rounds: relayd_rounds,
        },
        reference: Relay {
            name: reference_name,
            rounds: reference_rounds,
        },
    })
}

/// Call state directories of the relayds of one run, removed with it.
pub(crate) struct StateDirs(std::path::PathBuf);

impl StateDirs {
    pub(crate) fn new() -> Self {
        StateDirs(std::env::temp_dir().join(format!("xrelay-ng-bench-{}", std::process::id())))
    }

    /// The state directory of the relayd serving NG on `ng_port`.
    pub(crate) fn of(&self, ng_port: u16) -> std::path::PathBuf {
        self.0.join(ng_port.to_string())
    }
}

impl Drop for StateDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// relayd in userspace mode with its NG socket on `ng_port` and 10 000
/// media ports from `port_min`, CLI on `ng_port + 7677`, keeping call state
/// under `state` (none without), replicating to `redis` if given.
pub(crate) fn start_relayd(
    ns: &Netns,
    binary: &Path,
    ng_port: u16,
    port_min: u16,
    state: Option<&StateDirs>,
    redis: Option<&str>,
) -> Result<ChildGuard> {
    let mut cmd = ns.command(binary)?;
    match state {
        Some(dirs) => cmd.arg("--state-dir").arg(dirs.of(ng_port)),
        None => cmd.arg("--no-state"),
    };
    if let Some(url) = redis {
        cmd.arg(format!("--redis={url}"));
    }
    cmd.args(["-i", "127.0.0.1", "--datapath", "userspace"])
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .arg(format!("--listen-cli=127.0.0.1:{}", ng_port + 7677))
        .arg(format!("--port-min={port_min}"))
        .arg(format!("--port-max={}", port_min + 9999))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_ready(&mut cmd).with_context(|| format!("starting {}", binary.display()))
}

/// rtpengine without its kernel module, NG on `ng_port`, 10 000 media
/// ports from `port_min`, calls freed as soon as they are deleted.
pub(crate) fn start_rtpengine(ns: &Netns, ng_port: u16, port_min: u16) -> Result<ChildGuard> {
    let child = ns
        .command("rtpengine")?
        .args(["--interface=127.0.0.1", "--table=-1"])
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .args(["--foreground", "--log-stderr", "-L", "3"])
        .args(["--delete-delay=0", "--config-file=none"])
        .arg(format!("--port-min={port_min}"))
        .arg(format!("--port-max={}", port_min + 9999))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting rtpengine (apt-get install rtpengine-daemon)")?;
    Ok(ChildGuard(child))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    fn round(cycles_per_sec: f64, latencies_us: &[u64]) -> Round {
        Round {
            cycles: 1000,
            elapsed: Duration::from_secs_f64(1000.0 / cycles_per_sec),
            latencies: latencies_us
                .iter()
                .map(|&u| Duration::from_micros(u))
                .collect(),
        }
    }

    #[test]
    fn ratios_pair_rounds_and_latencies_pool_them() {
        let results = Results {
            relayd: Relay {
                name: "relayd",
                rounds: vec![round(4000.0, &[10, 30]), round(6000.0, &[20, 40])],
            },
            reference: Relay {
                name: "rtpengine",
                rounds: vec![round(2000.0, &[50]), round(1500.0, &[60])],
            },
        };
        let r = results.ratios();
        assert!(
            (r[0] - 2.0).abs() < 1e-6 && (r[1] - 4.0).abs() < 1e-6,
            "{r:?}"
        );
        assert!((results.relayd.median_cycles_per_sec() - 5000.0).abs() < 1e-3);
        assert_eq!(results.relayd.latency(0.0), Duration::from_micros(10));
        assert_eq!(results.relayd.latency(1.0), Duration::from_micros(40));
        let cfg = Config {
            relayd: Path::new("relayd"),
            cycles: 1000,
            rounds: 2,
            baseline: None,
            state: true,
            redis: false,
            one_core: false,
        };
        let md = results.markdown(&cfg);
        assert!(md.contains("ratio relayd / rtpengine: 3.00x"), "{md}");
        assert!(md.contains("| relayd | 5000 | 4000, 6000 |"), "{md}");
        let ab = Results {
            reference: Relay {
                name: "baseline",
                ..results.reference.clone()
            },
            ..results
        };
        assert!(
            ab.markdown(&cfg).contains("ratio relayd / baseline: 3.00x"),
            "{md}"
        );
    }
}
