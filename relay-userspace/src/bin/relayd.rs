//! relayd: the xrelay media relay daemon.
//!
//! For now it attaches the XDP fast path to the given interfaces, installs
//! any `--static-stream` entries and runs until SIGINT/SIGTERM, then detaches
//! and unpins. The NG control plane comes next.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use relay_userspace::{
    datapath::{
        xdp::{ModePolicy, XdpConfig, XdpDatapath, XdpError, DEFAULT_PIN_DIR},
        Datapath as _,
    },
    static_stream,
};
use tracing_subscriber::EnvFilter;

/// xrelay media relay daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Network interface to attach the fast path to (repeatable).
    #[arg(
        long = "interface",
        short = 'i',
        value_name = "IFNAME",
        required = true
    )]
    interfaces: Vec<String>,
    /// bpffs directory of this instance (maps and links are pinned below it).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// XDP attach mode: auto tries native and falls back to generic when the
    /// driver refuses it or its transmit self-test loses frames.
    #[arg(long, value_enum, default_value_t = ModePolicy::Auto)]
    xdp_mode: ModePolicy,
    /// Size of the kernel forwarding table (streams).
    #[arg(long, default_value_t = 65536)]
    max_streams: u32,
    /// Do not turn on IPv4 forwarding on the interfaces (the XDP next-hop
    /// lookup needs it); fail instead when it is off.
    #[arg(long)]
    no_enable_forwarding: bool,
    /// Forwarding entry installed at start-up:
    /// LOCAL=PEER[,src=IP:PORT][,strict=IP:PORT] (repeatable).
    #[arg(long = "static-stream", value_name = "SPEC")]
    static_streams: Vec<String>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();

    let streams = args
        .static_streams
        .iter()
        .enumerate()
        .map(|(slot, spec)| static_stream::parse(spec, slot as u32))
        .collect::<Result<Vec<_>, _>>()?;
    if streams.len() as u64 > u64::from(args.max_streams) {
        bail!(
            "{} static streams do not fit in --max-streams {}",
            streams.len(),
            args.max_streams
        );
    }

    let missing = relay_userspace::caps::missing_for_xdp();
    if !missing.is_empty() {
        bail!(
            "relayd lacks {}: run it as root, or grant them (e.g. systemd \
             AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN; CAP_SYS_ADMIN mounts bpffs)",
            missing.join(" and ")
        );
    }

    let config = XdpConfig {
        interfaces: args.interfaces.clone(),
        pin_dir: args.pin_dir.clone(),
        mode: args.xdp_mode,
        max_streams: args.max_streams,
        enable_forwarding: !args.no_enable_forwarding,
    };
    let mut datapath = XdpDatapath::start(&config).map_err(explain)?;
    for a in datapath.attachments() {
        tracing::info!(iface = %a.iface, mode = ?a.mode, reason = %a.reason, "interface ready");
    }
    for spec in &streams {
        if let Err(e) = datapath.install(spec) {
            datapath.shutdown();
            return Err(e).context("installing a static stream");
        }
        tracing::info!(local = %spec.local, peer = %spec.peer, source = %spec.source,
            strict = ?spec.strict_source, "static stream installed");
    }
    tracing::info!(pin_dir = %datapath.pin_dir().display(), "relayd ready");
    relay_userspace::notify::ready();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = runtime.block_on(wait_for_shutdown_signal());
    tracing::info!(signal, "shutting down");
    relay_userspace::notify::stopping();
    datapath.shutdown();
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names the one that came.
async fn wait_for_shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Adds what to do to the errors operators hit first.
fn explain(e: XdpError) -> anyhow::Error {
    if e.is_permission_denied() {
        return anyhow::Error::new(e)
            .context("relayd needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, to load XDP");
    }
    anyhow::Error::new(e)
}
