//! `cargo xtask bench`'s driver: measurements that need whole daemons.
//!
//! `ng`: offer + answer + delete cycles from one NG client, sequentially,
//! against relayd and against rtpengine (Debian's `rtpengine-daemon`,
//! `--table=-1`: no kernel module here), in alternating rounds (see
//! `relay_benches::ng`). Prints cycles per second, request latency
//! percentiles and the ratio.
//!
//! `ng-flood`: NG from a proxy while another address floods pings, relayd
//! against rtpengine (see `relay_benches::ng_flood`).
//!
//! `soak`: a million offer/answer/delete cycles (and a hundred thousand
//! with RTP through XDP) against one relayd, then the check that no port,
//! socket, kernel entry or counter slot stayed behind and that its memory
//! stayed flat (see `relay_benches::soak`). Exits non-zero on a leak.
//!
//! `throughput`: forwarded against offered packets per second for relayd
//! (XDP and userspace) and rtpengine, with calls set up over NG, an XDP
//! live-frames generator and a sink counter (see
//! `relay_benches::throughput`). Prints Markdown tables and writes an SVG
//! plot.
//!
//! `srtp`: SRTP ↔ RTP bridging (SDES, AES_CM_128_HMAC_SHA1_80), relayd
//! against rtpengine: flood pps per direction and, unless `--no-sustained`,
//! the sustained rate under the loss bound (see
//! `relay_benches::throughput::srtp`).
//!
//! `sustained`: the highest rate each relay sustains with loss ≤ 0.1 %
//! over a 5 s window, evenly paced RTP on fresh calls for every point, with
//! the counters that say where the loss went (see
//! `relay_benches::throughput::sustained`).

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use relay_benches::{
    ng, ng_flood, soak,
    throughput::{self, sustained},
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
        /// Cycles per relay and round.
        #[arg(long, default_value_t = 2000)]
        cycles: u32,
        /// Rounds, relayd and rtpengine alternating.
        #[arg(long, default_value_t = 7)]
        rounds: u32,
        /// Measure this relayd binary instead of rtpengine: an A/B of two
        /// builds.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Run relayd (and a baseline relayd) without call state.
        #[arg(long)]
        no_state: bool,
        /// relayd replicates its calls to a Redis started for the run
        /// (a `--baseline` relayd does not: an A/B of replication).
        #[arg(long)]
        redis: bool,
        /// Each relay on CPU 1 with its loopback receive processing, the
        /// client on CPU 0 (needs two CPUs).
        #[arg(long)]
        one_core: bool,
    },
    /// NG under a flood from one address: a proxy's cycles and a
    /// monitor's pings, relayd vs rtpengine.
    NgFlood {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Flood rate, pings per second.
        #[arg(long, default_value_t = 50_000)]
        pps: u64,
        /// Seconds of flood.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Soak: cycles against one relayd, then leak checks (ports, sockets,
    /// kernel entries, counter slots, RSS).
    Soak {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Phase A: offer/answer/delete cycles, relayd in userspace (0
        /// skips it).
        #[arg(long, default_value_t = 1_000_000)]
        cycles: u64,
        /// Phase B: cycles with RTP both ways through XDP (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        media_cycles: u64,
        /// Warm-up cycles before each phase's counted ones (at least).
        #[arg(long, default_value_t = 10_000)]
        warmup: u64,
        /// Warm-up seconds (at least): under 65, relayd's reply caches
        /// are still growing and RSS is not judged.
        #[arg(long, default_value_t = 65)]
        warmup_secs: u64,
        /// Largest RSS growth over the counted cycles, KiB.
        #[arg(long, default_value_t = 8192)]
        rss_bound_kib: u64,
        /// Write every RSS/descriptor sample here (CSV).
        #[arg(long)]
        samples: Option<PathBuf>,
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
    /// Forwarded pps of relayd XDP with one and with two receive queues
    /// (generator lanes), beside an XDP bounce doing the same (no relay).
    Queues {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Calls (static streams).
        #[arg(long, default_value_t = 1000)]
        calls: u32,
        /// Rounds of 1 and 2 queues, alternating.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// SRTP ↔ RTP bridging: relayd (default datapath) vs rtpengine, both
    /// directions, flood and sustained rate.
    Srtp {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Call counts, each on freshly started relays.
        #[arg(long, value_delimiter = ',', default_value = "1,100")]
        calls: Vec<u32>,
        /// Longest flood, seconds (shorter when the frames run out).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Most frames built ahead for one flood.
        #[arg(long, default_value_t = 1_500_000)]
        flood_frames: u64,
        /// Skip the sustained-rate search.
        #[arg(long)]
        no_sustained: bool,
        /// Seconds each sustained point sends.
        #[arg(long, default_value_t = 2.0)]
        window: f64,
        /// Highest loss of a sustained rate, in percent.
        #[arg(long, default_value_t = 0.1)]
        max_loss: f64,
        /// First rate of each search (pps).
        #[arg(long, default_value_t = 20_000)]
        start_rate: u64,
        /// Highest rate tried (pps).
        #[arg(long, default_value_t = 600_000)]
        max_rate: u64,
        /// Stop bisecting once failing / passing rate is within this, in percent.
        #[arg(long, default_value_t = 8.0)]
        precision: f64,
        /// Most points per relay, direction and call count.
        #[arg(long, default_value_t = 8)]
        max_points: u32,
    },
    /// Sustained rate (loss ≤ 0.1 % over a window) on fresh calls with
    /// evenly paced RTP: relayd XDP, relayd userspace, rtpengine.
    Sustained {
        /// The relayd binary.
        #[arg(long)]
        relayd: PathBuf,
        /// Call counts, each on freshly started relays (fresh calls for
        /// every point).
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        calls: Vec<u32>,
        /// Seconds each point sends.
        #[arg(long, default_value_t = 5.0)]
        window: f64,
        /// Highest loss of a sustained rate, in percent.
        #[arg(long, default_value_t = 0.1)]
        max_loss: f64,
        /// First rate of each search (pps).
        #[arg(long, default_value_t = 10_000)]
        start_rate: u64,
        /// Highest rate tried (pps).
        #[arg(long, default_value_t = 400_000)]
        max_rate: u64,
        /// Lowest rate tried when the first fails (pps).
        #[arg(long, default_value_t = 1_000)]
        min_rate: u64,
        /// Stop bisecting once failing / passing rate is within this, in percent.
        #[arg(long, default_value_t = 8.0)]
        precision: f64,
        /// Most points per relay and call count.
        #[arg(long, default_value_t = 10)]
        max_points: u32,
        /// Longest call set-up of one point, in seconds.
        #[arg(long, default_value_t = 60)]
        setup_budget: u64,
        /// Relays to measure (relayd-xdp, relayd-userspace, rtpengine).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "relayd-xdp,relayd-userspace,rtpengine"
        )]
        relays: Vec<throughput::relays::Kind>,
        /// Also measure one-way latency and added jitter at 10, 50 and 90 %
        /// of each relay's sustained rate, and the no-relay floor (an XDP
        /// bounce) at the same rates; writes the plot to this SVG file.
        #[arg(long)]
        latency_plot: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    if !relay_tests::privileges::is_root() {
        bail!("the benchmark runs daemons in network namespaces: run it as root");
    }
    relay_benches::interrupt::clean_up_on_signal()?;
    let args = Args::parse();
    // The soak measures relayd alone.
    let needs_rtpengine = !matches!(args.what, What::Soak { .. });
    if needs_rtpengine && Command::new("rtpengine").arg("--version").output().is_err() {
        bail!(
            "rtpengine missing: apt-get install rtpengine-daemon (cargo xtask bench installs it)"
        );
    }
    match args.what {
        What::Ng {
            relayd,
            cycles,
            rounds,
            baseline,
            no_state,
            redis,
            one_core,
        } => {
            let cfg = ng::Config {
                relayd: &relayd,
                cycles,
                rounds,
                baseline: baseline.as_deref(),
                state: !no_state,
                redis,
                one_core,
            };
            print!("{}", ng::run(&cfg)?.markdown(&cfg));
            Ok(())
        }
        What::NgFlood {
            relayd,
            pps,
            seconds,
        } => {
            let cfg = ng_flood::Config {
                relayd: &relayd,
                flood_pps: pps,
                length: Duration::from_secs_f64(seconds),
            };
            print!("{}", ng_flood::markdown(&cfg, &ng_flood::run(&cfg)?));
            Ok(())
        }
        What::Soak {
            relayd,
            cycles,
            media_cycles,
            warmup,
            warmup_secs,
            rss_bound_kib,
            samples,
        } => {
            let cfg = soak::Config {
                relayd: &relayd,
                cycles,
                media_cycles,
                warmup: soak::Warmup {
                    cycles: warmup,
                    time: Duration::from_secs(warmup_secs),
                },
                rss_bound_kib,
            };
            let phases = soak::run(&cfg)?;
            print!("{}", soak::markdown(&cfg, &phases));
            if let Some(path) = samples {
                std::fs::write(&path, soak::csv(&phases))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if !phases.iter().all(|p| p.passed(rss_bound_kib)) {
                bail!("soak: a phase failed (see above)");
            }
            Ok(())
        }
        What::Queues {
            relayd,
            calls,
            rounds,
            seconds,
        } => {
            let runs = throughput::queues::run(&relayd, calls, rounds, seconds)?;
            print!("{}", throughput::queues::markdown(&runs, calls));
            Ok(())
        }
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
        What::Srtp {
            relayd,
            calls,
            seconds,
            flood_frames,
            no_sustained,
            window,
            max_loss,
            start_rate,
            max_rate,
            precision,
            max_points,
        } => {
            let cfg = throughput::srtp::Config {
                relayd,
                calls,
                flood: Duration::from_secs_f64(seconds),
                flood_frames,
                sustained: (!no_sustained).then(|| throughput::srtp::Sustained {
                    window: Duration::from_secs_f64(window),
                    max_loss: max_loss / 100.0,
                    limits: sustained::search::Limits {
                        start: start_rate,
                        cap: max_rate,
                        floor: 1_000,
                        precision: precision / 100.0,
                        max_points,
                    },
                }),
            };
            let outcomes = throughput::srtp::run(&cfg)?;
            println!("{}", throughput::srtp::markdown(&cfg, &outcomes));
            Ok(())
        }
        What::Sustained {
            relayd,
            calls,
            window,
            max_loss,
            start_rate,
            max_rate,
            min_rate,
            precision,
            max_points,
            setup_budget,
            relays,
            latency_plot,
        } => {
            let cfg = sustained::Config {
                relayd,
                calls,
                relays,
                window: Duration::from_secs_f64(window),
                max_loss: max_loss / 100.0,
                limits: sustained::search::Limits {
                    start: start_rate,
                    cap: max_rate,
                    floor: min_rate,
                    precision: precision / 100.0,
                    max_points,
                },
                setup_budget: Duration::from_secs(setup_budget),
                latency: latency_plot.is_some(),
            };
            // Each point: set-up, the window, draining and clean-up (~1.5 s).
            let worst = cfg.calls.len() as f64
                * cfg.relays.len() as f64
                * f64::from(max_points)
                * (window + 1.5);
            eprintln!(
                "at most {} points, about {:.0} min",
                cfg.calls.len() * cfg.relays.len() * max_points as usize,
                worst / 60.0
            );
            let outcomes = sustained::run(&cfg)?;
            println!("{}", sustained::report::markdown(&cfg, &outcomes));
            if let Some(plot) = latency_plot {
                let mut floor = Vec::new();
                for &calls in &cfg.calls {
                    let rates: Vec<u64> = outcomes
                        .iter()
                        .filter(|o| o.calls == calls)
                        .flat_map(|o| &o.latency)
                        .map(|p| p.point.target)
                        .collect();
                    eprintln!("== floor: XDP bounce at {} rates", rates.len());
                    floor.extend(sustained::floor(&cfg, calls, &rates)?);
                }
                println!("{}", sustained::latency_report::markdown(&outcomes, &floor));
                let title = "One-way latency through the relay against offered load";
                std::fs::write(
                    &plot,
                    sustained::latency_report::svg(&outcomes, &floor, title),
                )
                .with_context(|| format!("writing {}", plot.display()))?;
                eprintln!("plot: {}", plot.display());
            }
            Ok(())
        }
    }
}
