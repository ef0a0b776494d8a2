//! relayd: the xrelay media relay daemon. Options are rtpengine's (see
//! `relayd --help` and README.md); it runs in the foreground and stops
//! cleanly on SIGINT/SIGTERM.

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use relay_userspace::{
    config::{DatapathMode, Options, Subcommand},
    daemon, open_files,
};
use tracing_subscriber::EnvFilter;

// Every NG request builds and frees many small objects (bencode values, SDP,
// sockets and tasks per port) from several threads; glibc's malloc spent a
// quarter of relayd's CPU on that in the NG benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let options = Options::parse().merged()?;
    if options.check_state {
        return check_state(&options.state_dir_named());
    }
    if options.command == Some(Subcommand::Cleanup) {
        // Before resolve(): the configuration need not name an interface.
        for line in relay_userspace::cleanup::run(&options)? {
            println!("{line}");
        }
        return Ok(());
    }
    let doctor = options.command.clone();
    let mut config = options.resolve()?;
    if let Some(Subcommand::Doctor { json }) = doctor {
        let report = relay_userspace::doctor::run(&config, true);
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{report}");
        }
        std::process::exit(report.exit_code());
    }
    relay_userspace::doctor::log_warnings(&config);
    report_open_files(&config);

    if config.datapath != DatapathMode::Userspace {
        let missing = relay_userspace::caps::missing_for_xdp();
        if !missing.is_empty() {
            if config.datapath == DatapathMode::Xdp {
                bail!(
                    "relayd lacks {}: run it as root, or grant them (e.g. systemd \
                     AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN, as the packaged \
                     xrelay.service does; CAP_SYS_ADMIN too if bpffs is not mounted)",
                    missing.join(" and ")
                );
            }
            tracing::warn!(
                missing = %missing.join(" "),
                "no privileges for XDP: forwarding in userspace (grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN for the fast path)"
            );
            config.datapath = DatapathMode::Userspace;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Handlers go in before anything starts: relayd says READY=1 before
        // it first waits for the signal, and a SIGTERM in between must stop
        // it cleanly, not kill it.
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        daemon::run(config, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

/// `--check-state`: reads the journal in `dir` without changing it and
/// says what it holds; fails when it is damaged or inconsistent.
fn check_state(dir: &std::path::Path) -> Result<()> {
    let report = relay_state::FileJournal::verify(dir)
        .with_context(|| format!("checking the call state in {}", dir.display()))?;
    println!("{}: {report}", dir.display());
    if !report.is_clean() {
        bail!(
            "the call state in {} is damaged or inconsistent",
            dir.display()
        );
    }
    Ok(())
}

/// Raises the open-files limit as far as allowed and says how many calls
/// it leaves room for: a socket per media port is the usual ceiling.
fn report_open_files(config: &relay_userspace::config::Config) {
    let ports_per_interface = u64::from(config.port_max.saturating_sub(config.port_min)) + 1;
    // Ports are opened on the first address of each name and family.
    let media_addresses = relay_userspace::interfaces::media_addresses(&config.interfaces).len();
    let media_ports = ports_per_interface * media_addresses as u64;
    let files = match open_files::raise_to_hard() {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            return;
        }
    };
    let calls = files.call_capacity(media_ports);
    if files.below_port_ranges(media_ports) {
        tracing::warn!(
            limit = files.limit,
            media_ports,
            calls,
            "the open-files limit runs out before the media ports: room for about {calls} \
             calls (a socket per media port, 4 per call); raise the hard limit \
             (systemd: LimitNOFILE=, shell: ulimit -Hn)"
        );
    } else if let Some(before) = files.raised_from {
        tracing::info!(
            limit = files.limit,
            raised_from = before,
            calls,
            "raised the open-files limit"
        );
    }
}

/// Installs the SIGINT and SIGTERM handlers now; the future completes on
/// the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}
