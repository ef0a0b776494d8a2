//! relayd: the xrelay media relay daemon. Options are rtpengine's (see
//! `relayd --help` and README.md); it runs in the foreground and stops
//! cleanly on SIGINT/SIGTERM.

use anyhow::{bail, Result};
use clap::Parser;
use relay_userspace::{
    config::{DatapathMode, Options},
    daemon,
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
    let mut config = Options::parse().load()?;

    if config.datapath != DatapathMode::Userspace {
        let missing = relay_userspace::caps::missing_for_xdp();
        if !missing.is_empty() {
            if config.datapath == DatapathMode::Xdp {
                bail!(
                    "relayd lacks {}: run it as root, or grant them (e.g. systemd \
                     AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN; CAP_SYS_ADMIN mounts bpffs)",
                    missing.join(" and ")
                );
            }
            tracing::warn!(
                missing = %missing.join(" "),
                "no privileges for XDP: forwarding in userspace (grant CAP_BPF and CAP_NET_ADMIN for the fast path)"
            );
            config.datapath = DatapathMode::Userspace;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(daemon::run(config, wait_for_shutdown_signal()))?;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}
