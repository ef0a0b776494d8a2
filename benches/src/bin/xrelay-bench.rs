//! `cargo xtask bench`'s driver: measurements that need whole daemons.
//!
//! `ng`: offer + answer + delete cycles from one NG client, sequentially,
//! against relayd and against rtpengine (Debian's `rtpengine-daemon`,
//! `--table=-1`: no kernel module here), both on loopback in a network
//! namespace of their own, in the same run. Prints cycles per second and
//! request latency percentiles, and the ratio.
//!
//! `throughput`: forwarded against offered packets per second for relayd
//! (XDP and userspace) and rtpengine, with calls set up over NG, an XDP
//! live-frames generator and a sink counter (see
//! `relay_benches::throughput`). Prints Markdown tables and writes an SVG
//! plot.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use relay_benches::throughput;
use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::{audio_sdp, NgClient},
    ready::spawn_ready,
};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// NG offer/answer/delete cycles: relayd vs rtpengine.
    Ng {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Cycles per relay.
        #[arg(long, default_value_t = 2000)]
        cycles: u32,
    },
    /// Forwarding throughput: relayd XDP, relayd userspace, rtpengine.
    Throughput {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Call counts, each measured on a freshly started relay.
        #[arg(long, value_delimiter = ',', default_value = "1,1000,100000")]
        calls: Vec<u32>,
        /// Seconds per measurement point.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Offered rates (pps) to measure besides the unpaced maximum.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "25000,100000,400000,1600000"
        )]
        rates: Vec<u64>,
        /// Longest call set-up per relay and call count, in seconds.
        #[arg(long, default_value_t = 90)]
        setup_budget: u64,
        /// Relays to measure (relayd-xdp, relayd-userspace, rtpengine).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "relayd-xdp,relayd-userspace,rtpengine"
        )]
        relays: Vec<throughput::relays::Kind>,
        /// Where to write the plot (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

/// Latencies of one relay's run.
struct Run {
    name: &'static str,
    cycles: u32,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn cycles_per_sec(&self) -> f64 {
        f64::from(self.cycles) / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
}

fn s(v: &str) -> Value {
    Value::str(v)
}

/// Times `cycles` offer/answer/delete cycles against the NG socket.
fn cycles(ng: &NgClient, name: &'static str, cycles: u32) -> Result<Run> {
    let offer_sdp = audio_sdp("127.0.0.1", 5000);
    let answer_sdp = audio_sdp("127.0.0.1", 6000);
    let mut latencies = Vec::with_capacity(cycles as usize * 3);
    let mut timed = |body: &Value| -> Result<()> {
        let t = Instant::now();
        let reply = ng.request(body)?;
        latencies.push(t.elapsed());
        if reply.get("result").and_then(Value::as_str) != Some("ok") {
            bail!("{name}: {reply:?}");
        }
        Ok(())
    };
    let start = Instant::now();
    for i in 0..cycles {
        let id = format!("bench-{i}");
        timed(&Value::dict([
            ("command", s("offer")),
            ("call-id", s(&id)),
            ("from-tag", s("a")),
            ("sdp", s(&offer_sdp)),
            ("supports", Value::str_list(["load limit"])),
        ]))?;
        timed(&Value::dict([
            ("command", s("answer")),
            ("call-id", s(&id)),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            ("sdp", s(&answer_sdp)),
        ]))?;
        timed(&Value::dict([
            ("command", s("delete")),
            ("call-id", s(&id)),
            ("from-tag", s("a")),
            ("delete-delay", Value::Int(0)),
        ]))?;
    }
    Ok(Run {
        name,
        cycles,
        elapsed: start.elapsed(),
        latencies,
    })
}

fn wait_for_ng(ng: &NgClient) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ng.request(&Value::dict([("command", s("ping"))])).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no answer to ping")
}

fn ng_bench(relayd: &PathBuf, n: u32) -> Result<()> {
    let ns = Netns::new("bng")?;
    let mut runs = Vec::new();
    {
        let mut cmd = ns.command(relayd)?;
        cmd.args([
            "-i",
            "127.0.0.1",
            "--listen-ng",
            "127.0.0.1:2223",
            "--datapath",
            "userspace",
        ])
        .args(["--listen-cli", "127.0.0.1:9900"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let relay = spawn_ready(&mut cmd).context("starting relayd")?;
        let ng = NgClient::new(&ns, "127.0.0.1:2223".parse()?)?;
        wait_for_ng(&ng)?;
        runs.push(cycles(&ng, "relayd", n)?);
        relay.terminate()?;
    }
    {
        let rtpengine = ChildGuard(
            ns.command("rtpengine")?
                .args([
                    "--interface=127.0.0.1",
                    "--listen-ng=127.0.0.1:2224",
                    "--table=-1",
                ])
                .args([
                    "--foreground",
                    "--log-stderr",
                    "-L",
                    "3",
                    "--delete-delay=0",
                    "--config-file=none",
                ])
                .args(["--port-min=30000", "--port-max=39999"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting rtpengine (apt-get install rtpengine-daemon)")?,
        );
        let ng = NgClient::new(&ns, "127.0.0.1:2224".parse()?)?;
        wait_for_ng(&ng)?;
        runs.push(cycles(&ng, "rtpengine", n)?);
        drop(rtpengine);
    }
    println!("NG offer+answer+delete, {n} sequential cycles from one client, loopback:");
    println!("| relay | cycles/s | request p50 | request p99 |");
    println!("|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.0} µs | {:.0} µs |",
            r.name,
            r.cycles_per_sec(),
            r.percentile(0.5).as_secs_f64() * 1e6,
            r.percentile(0.99).as_secs_f64() * 1e6
        );
    }
    println!(
        "ratio relayd / rtpengine: {:.2}x",
        runs[0].cycles_per_sec() / runs[1].cycles_per_sec()
    );
    Ok(())
}

fn main() -> Result<()> {
    if !relay_tests::privileges::is_root() {
        bail!("the benchmark runs daemons in network namespaces: run it as root");
    }
    relay_benches::interrupt::clean_up_on_signal()?;
    if Command::new("rtpengine").arg("--version").output().is_err() {
        bail!(
            "rtpengine missing: apt-get install rtpengine-daemon (cargo xtask bench installs it)"
        );
    }
    match Args::parse().what {
        What::Ng { relayd, cycles } => ng_bench(&relayd, cycles),
        What::Throughput {
            relayd,
            calls,
            seconds,
            rates,
            setup_budget,
            relays,
            plot,
        } => {
            let mut levels: Vec<Option<u64>> = rates.into_iter().map(Some).collect();
            levels.push(None);
            let cfg = throughput::Config {
                relayd,
                calls,
                levels,
                point: Duration::from_secs_f64(seconds),
                setup_budget: Duration::from_secs(setup_budget),
                relays,
            };
            let runs = throughput::run(&cfg)?;
            println!("{}", throughput::report::markdown(&runs));
            if let Some(path) = plot {
                let svg = throughput::plot::svg(
                    &runs,
                    "Forwarded vs offered RTP pps (172-byte payloads)",
                );
                std::fs::write(&path, svg)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("plot: {}", path.display());
            }
            Ok(())
        }
    }
}
