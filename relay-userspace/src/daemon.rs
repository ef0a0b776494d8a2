//! relayd put together: datapath, interfaces and ports, calls, the NG
//! socket, the forwarder reports and the timers, until shutdown.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{net::UdpSocket, sync::mpsc};

use crate::{
    calls::{kernel::Kernel, CallConfig, CallManager, Interface},
    config::{Config, DatapathMode},
    control,
    datapath::{
        xdp::{XdpConfig, XdpDatapath, XdpError},
        Datapath,
    },
    ha::{Replication, Role},
    interfaces::netdev_for,
    ports::{PortError, PortPool},
    state::StateKeeper,
    static_stream,
};

/// What stops relayd from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The DTLS certificate could not be made or loaded.
    #[error("DTLS certificate: {0}")]
    Dtls(#[from] relay_media::dtls::DtlsError),
    /// `--datapath=xdp` and XDP could not start.
    #[error("XDP datapath: {0}")]
    Xdp(#[source] XdpError),
    /// An interface address is on no local netdev.
    #[error("interface address {0} is not configured on any local network interface")]
    AddressNotLocal(std::net::IpAddr),
    /// A port range problem.
    #[error("interface {name}: {source}")]
    Ports {
        /// Interface name.
        name: String,
        /// The problem.
        #[source]
        source: PortError,
    },
    /// The NG socket could not be bound.
    #[error("cannot listen for NG on {addr}: {source}")]
    ListenNg {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The CLI socket could not be bound.
    #[error("cannot listen for relayctl on {addr}: {source}")]
    ListenCli {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The NG over TCP socket could not be bound.
    #[error("cannot listen for NG over TCP on {addr}: {source}")]
    ListenTcpNg {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP socket could not be bound.
    #[error("cannot listen for HTTP (metrics, NG) on {addr}: {source}")]
    ListenHttp {
        /// Address.
        addr: std::net::SocketAddr,
        /// Error.
        #[source]
        source: std::io::Error,
    },
    /// A `--static-stream` problem.
    #[error(transparent)]
    StaticStream(#[from] static_stream::StaticStreamError),
    /// A static stream could not be installed.
    #[error("installing a static stream: {0}")]
    Install(#[from] crate::datapath::DatapathError),
    /// The kernel entries of an adopted datapath could not be read.
    #[error("reading the stream table of the running XDP program: {0}")]
    Adopt(#[source] crate::datapath::DatapathError),
    /// The datapath could not start forwarding after the restore.
    #[error("starting the datapath: {0}")]
    GoLive(#[source] crate::datapath::DatapathError),
    /// The call state directory cannot be used.
    #[error("call state: {0} (--state-dir picks another directory, --no-state keeps none)")]
    State(#[from] relay_state::StoreError),
    /// Redis refuses the password or database of `--redis`.
    #[error("--redis: {0}")]
    Redis(#[source] relay_state::redis::LinkError),
}

/// How relayd ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// A signal (restart, upgrade): calls, kernel streams and pins stay for
    /// the next relayd.
    KeepCalls,
    /// `relayctl stop`: every call ends, the program is detached and the
    /// pins and stored state are removed.
    DropCalls,
}

/// The role in an active/standby pair, and its Redis side: a password or
/// database Redis refuses stops relayd here; Redis unreachable does not.
/// `standby`: `--standby`, or a floating address that is not here.
fn start_replication(config: &Config, standby: bool) -> Result<Replication, DaemonError> {
    let Some(target) = &config.redis else {
        return Ok(Replication::default());
    };
    Replication::check(target).map_err(DaemonError::Redis)?;
    Ok(match standby {
        true => {
            tracing::info!(redis = %target, "standby: mirroring the active's calls, serving none");
            Replication::standby(target)
        }
        false => {
            tracing::info!(redis = %target, "replicating calls to Redis");
            Replication::active(target)
        }
    })
}

/// The state store, and what it held.
fn open_state(
    config: &Config,
    replication: &Replication,
) -> Result<(StateKeeper, relay_state::State), DaemonError> {
    if replication.role() == Role::Standby {
        // Its calls are the active's, in the mirror; none of its own.
        return Ok((StateKeeper::off(), relay_state::State::default()));
    }
    let (keeper, state) = match &config.state_dir {
        None => {
            tracing::info!("no call state kept (--no-state): calls end with relayd");
            (StateKeeper::off(), relay_state::State::default())
        }
        Some(dir) => {
            let (keeper, state, report) = StateKeeper::open(dir, config.state_sync)?;
            if report.is_clean() {
                tracing::info!(dir = %dir.display(), calls = state.calls.len(), "call state loaded");
            } else {
                tracing::warn!(dir = %dir.display(), calls = state.calls.len(), %report,
                    "call state damaged: what could be read is kept");
            }
            (keeper, state)
        }
    };
    let keeper = match replication.feed() {
        Some(feed) => keeper.replicated(feed),
        None => keeper,
    };
    Ok((keeper, state))
}

/// The XDP datapath on the netdevs that own the interface addresses, or
/// None for userspace forwarding (with the reason logged in `auto`).
fn start_datapath(
    config: &Config,
    statics: &[crate::datapath::StreamSpec],
) -> Result<Option<Box<dyn Datapath + Send>>, DaemonError> {
    if config.datapath == DatapathMode::Userspace {
        if let Some(spec) = config
            .interfaces
            .iter()
            .find(|s| netdev_for(s.address, config.floating_address).is_none())
        {
            return Err(DaemonError::AddressNotLocal(spec.address));
        }
        tracing::info!("datapath: userspace forwarding (--datapath=userspace)");
        // An XDP relayd before this one may have left its program attached.
        crate::datapath::xdp::adopt::remove_instance(&config.pin_dir, &[]);
        return Ok(None);
    }
    let mut netdevs: Vec<String> = Vec::new();
    for spec in &config.interfaces {
        // Media sockets bind to ADDRESS, so it must be local in every mode
        // (the floating address: or on the subnet of a local one).
        let dev = netdev_for(spec.address, config.floating_address)
            .ok_or(DaemonError::AddressNotLocal(spec.address))?;
        if !netdevs.contains(&dev) {
            netdevs.push(dev);
        }
    }
    let xdp = XdpConfig {
        interfaces: netdevs,
        pin_dir: config.pin_dir.clone(),
        mode: config.xdp_mode,
        max_streams: config.max_streams,
        max_addresses: relay_addresses(config, statics),
        row_ports: row_ports(config, statics),
        enable_forwarding: config.enable_forwarding,
        test_clock: false,
        next_hop_cache: config.next_hop_cache,
    };
    match XdpDatapath::start(&xdp) {
        Ok(dp) => {
            for a in dp.attachments() {
                tracing::info!(iface = %a.iface, mode = ?a.mode, reason = %a.reason, "datapath: XDP");
            }
            Ok(Some(Box::new(dp)))
        }
        Err(e) if config.datapath == DatapathMode::Auto => {
            tracing::warn!(error = %e, "datapath: XDP unavailable, forwarding in userspace");
            crate::datapath::xdp::adopt::remove_instance(&config.pin_dir, &[]);
            Ok(None)
        }
        Err(e) => Err(DaemonError::Xdp(e)),
    }
}

/// The NG socket; on the floating address bound with IP_FREEBIND, so a
/// standby listens there before the address arrives and answers as soon
/// as it has (Kamailio's socket is connected to that address: a reply from
/// any other would be dropped).
async fn bind_ng(config: &Config) -> std::io::Result<UdpSocket> {
    let addr = config.listen_ng;
    if config.floating_address != Some(addr.ip()) {
        return UdpSocket::bind(addr).await;
    }
    let socket = crate::ports::bind_nonblocking(addr, true)?;
    UdpSocket::from_std(socket)
}

/// Relay addresses the kernel's stream table needs a row for: every
/// interface address and every static stream's local address.
fn relay_addresses(config: &Config, statics: &[crate::datapath::StreamSpec]) -> u32 {
    let mut addresses: Vec<std::net::IpAddr> =
        crate::interfaces::distinct_addresses(&config.interfaces)
            .into_iter()
            .chain(statics.iter().map(|s| s.local.ip()))
            .collect();
    addresses.sort();
    addresses.dedup();
    addresses.len() as u32
}

/// The ports every relay address gets stream table entries for: the media
/// port range, widened to cover the static streams' ports.
fn row_ports(
    config: &Config,
    statics: &[crate::datapath::StreamSpec],
) -> std::ops::RangeInclusive<u16> {
    let ports = statics.iter().map(|s| s.local.port());
    let first = ports.clone().fold(config.port_min, u16::min);
    let last = ports.fold(config.port_max, u16::max);
    first..=last
}

/// Sockets and pools relayd serves with.
struct Served {
    interfaces: Vec<Interface>,
    ng: UdpSocket,
    cli: tokio::net::TcpListener,
    tcp_ng: Option<tokio::net::TcpListener>,
    http: Option<tokio::net::TcpListener>,
}

/// Everything after the datapath that can fail: static streams, port pools,
/// the NG and CLI sockets.
async fn set_up(
    config: &Config,
    kernel: &mut Kernel,
    statics: Vec<crate::datapath::StreamSpec>,
) -> Result<Served, DaemonError> {
    let drop = config.dos_shield == crate::config::ShieldMode::Drop;
    if drop && kernel.enabled() {
        match crate::netdev::reserve_local_ports(config.port_min, config.port_max) {
            Ok(true) => tracing::warn!(
                port_min = config.port_min,
                port_max = config.port_max,
                "reserved the media ports in net.ipv4.ip_local_reserved_ports: the DoS shield would \
                 drop replies to outgoing connections from ephemeral ports in that range"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not reserve the media ports; replies to \
                outgoing connections from ephemeral ports in the media range may be dropped"),
        }
    }
    for spec in &config.interfaces {
        kernel.shield(spec.address, config.port_min..=config.port_max, drop)?;
    }
    for spec in statics {
        kernel.install_static(spec)?;
        tracing::info!(local = %spec.local, peer = %spec.peer, "static stream installed");
    }
    let interfaces = config
        .interfaces
        .iter()
        .map(|spec| {
            PortPool::new(spec.address, config.port_min, config.port_max)
                .map(|pool| pool.with_freebind(config.floating_address == Some(spec.address)))
                .map(|pool| Interface {
                    spec: spec.clone(),
                    pool,
                })
                .map_err(|source| DaemonError::Ports {
                    name: spec.name.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ng = bind_ng(config)
        .await
        .map_err(|source| DaemonError::ListenNg {
            addr: config.listen_ng,
            source,
        })?;
    // Room for a burst while the receiver queues by sender: under a flood
    // the kernel drops at random (legitimate requests too) once this is
    // full. Beyond net.core.rmem_max (208 KiB by default, a few ms of a
    // flood) with CAP_NET_ADMIN, else as far as the sysctl allows.
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let want = 8usize << 20;
        if setsockopt(&ng, sockopt::RcvBufForce, &want).is_err() {
            if let Err(e) = setsockopt(&ng, sockopt::RcvBuf, &want) {
                tracing::debug!(error = %e, "NG socket receive buffer not raised");
            }
        }
    }
    let cli = tokio::net::TcpListener::bind(config.listen_cli)
        .await
        .map_err(|source| DaemonError::ListenCli {
            addr: config.listen_cli,
            source,
        })?;
    let tcp_ng = match config.listen_tcp_ng {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::ListenTcpNg { addr, source })?,
        ),
        None => None,
    };
    let http = match config.listen_http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::ListenHttp { addr, source })?,
        ),
        None => None,
    };
    Ok(Served {
        interfaces,
        ng,
        cli,
        tcp_ng,
        http,
    })
}

/// Runs relayd until `shutdown` completes, then removes every call, kernel
/// entry and pin.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // Validate what can be validated before touching the kernel.
    let statics = config
        .static_streams
        .iter()
        .enumerate()
        .map(|(i, text)| static_stream::parse(text, i as u32))
        .collect::<Result<Vec<_>, _>>()?;
    // With a floating address the address says which relay is active: an
    // old active restarted after a failover finds it gone and stays
    // standby (its journal is not restored, its kernel entries go).
    // Made now, so it is fresh with every start (WebRTC peers pin it per call).
    crate::calls::dtls::init(&config.dtls)?;
    let floating_local = config.floating_address.map(crate::ha::watch::is_local);
    if let (Some(ip), Some(false)) = (config.floating_address, floating_local) {
        tracing::info!(floating_address = %ip, "floating address not here: starting as the standby");
    }
    let standby = config.standby || floating_local == Some(false);
    let replication = Arc::new(start_replication(&config, standby)?);
    let (state, stored) = open_state(&config, &replication)?;
    let datapath = start_datapath(&config, &statics)?;
    // The stream table has an entry for every port of every relay address,
    // so pass entries for all media ports always fit.
    let shield_drops = datapath.is_some() && config.dos_shield == crate::config::ShieldMode::Drop;
    let mut kernel = Kernel::new(datapath, config.max_streams)
        .with_pass_entries(shield_drops)
        .with_rate_cap(config.max_stream_pps);
    if kernel.adopted() {
        // The calls' entries are there but unreadable: slots would be
        // handed out twice. Leave them to a next start.
        if let Err(e) = kernel.adopting() {
            kernel.abandon();
            return Err(DaemonError::Adopt(e));
        }
    }
    let Served {
        interfaces,
        ng,
        cli,
        tcp_ng,
        http,
    } = match set_up(&config, &mut kernel, statics).await {
        Ok(served) => served,
        Err(e) => {
            kernel.abandon();
            return Err(e);
        }
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let call_config = CallConfig {
        timeout: config.timeout,
        delete_delay: config.delete_delay,
        learning: config.endpoint_learning,
        max_sessions: config.max_sessions,
        silent_timeout: config.silent_timeout,
        final_timeout: config.final_timeout,
    };
    let mut manager = CallManager::new(call_config, interfaces, kernel, events_tx)
        .with_aliases(&config.interface_aliases)
        .with_changes(state.enabled());
    restore(&mut manager, &state, stored.calls);
    if let Err(e) = manager.go_live() {
        manager.abandon_kernel();
        return Err(DaemonError::GoLive(e));
    }
    let calls = Arc::new(Mutex::new(manager));
    let state = Arc::new(state);

    let ng_stats = Arc::new(crate::stats::NgStats::default());
    ng_stats.set_replication(replication.clone());
    ng_stats.load.set_limits(config.load_limits);
    let stop = Arc::new(tokio::sync::Notify::new());
    // One handler and cookie cache for NG over UDP, TCP, HTTP and WebSocket.
    let ng_service = Arc::new(control::service::NgService::new(
        config.ng_allow.clone(),
        calls.clone(),
        ng_stats.clone(),
        state.clone(),
        stored.cookies,
    ));
    let server = tokio::spawn(control::serve(ng, ng_service.clone()));
    let tcp_ng_server =
        tcp_ng.map(|listener| tokio::spawn(control::ng_tcp::serve(listener, ng_service.clone())));
    let (switch_tx, switch_rx) = mpsc::unbounded_channel();
    let switch = tokio::spawn(crate::ha::switch::serve(
        crate::ha::switch::Switch {
            calls: calls.clone(),
            state: state.clone(),
            replication: replication.clone(),
            state_dir: config.state_dir.clone(),
            state_sync: config.state_sync,
        },
        switch_rx,
    ));
    if let (Some(ip), Some(local)) = (config.floating_address, floating_local) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        match crate::ha::watch::spawn(ip, local, events_tx) {
            Ok(()) => {
                let switch_tx = switch_tx.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if switch_tx
                            .send(crate::ha::switch::Request::Address(event))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot watch the floating address \
                (netlink); only relayctl takeover switches roles"),
        }
    }
    let cli_server = tokio::spawn(control::cli::serve(
        cli,
        calls.clone(),
        ng_stats.clone(),
        stop.clone(),
        switch_tx,
    ));
    let http_server = http.map(|listener| {
        let service = Arc::new(control::http::HttpService {
            registry: control::metrics::registry(calls.clone(), ng_stats.clone()),
            ng: ng_service.clone(),
        });
        tokio::spawn(control::http::serve(listener, service))
    });
    let reports = {
        let calls = calls.clone();
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut calls = crate::lock(&calls);
                calls.on_event(event);
                state.commit(&calls.take_changes());
            }
        })
    };
    let ticker = {
        let calls = calls.clone();
        let state = state.clone();
        let ng_stats = ng_stats.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            let mut load = crate::load::Sampler::default();
            loop {
                every.tick().await;
                let now = tokio::time::Instant::now();
                let counts = {
                    let mut calls = crate::lock(&calls);
                    calls.tick(now);
                    state.commit(&calls.take_changes());
                    state.resync(|| calls.records());
                    load_counts(&calls)
                };
                // The load figures, once a second, so that an offer only
                // reads the latest (two small procfs reads, off the lock).
                let (loadavg, stat) = crate::load::read_proc();
                ng_stats.load.store(load.sample(
                    now.into_std(),
                    loadavg.as_deref(),
                    stat.as_deref(),
                    Some(counts),
                ));
                // A flush may block for a while: not on a runtime worker.
                let flushing = state.clone();
                let _ = tokio::task::spawn_blocking(move || flushing.sync()).await;
            }
        })
    };
    tracing::info!(listen_ng = %config.listen_ng, listen_cli = %config.listen_cli,
        role = replication.role().name(), "relayd ready");
    crate::notify::ready();

    let exit = tokio::select! {
        // Without a journal no later relayd could restore the calls: a
        // signal ends them too.
        () = shutdown => match state.durable() {
            true => Exit::KeepCalls,
            false => Exit::DropCalls,
        },
        () = stop.notified() => Exit::DropCalls,
    };
    crate::notify::stopping();
    server.abort();
    cli_server.abort();
    switch.abort();
    if let Some(h) = http_server {
        h.abort();
    }
    if let Some(h) = tcp_ng_server {
        h.abort();
    }
    ticker.abort();
    reports.abort();
    let mut calls = crate::lock(&calls);
    match exit {
        Exit::KeepCalls => {
            // The latest counters, for a next relayd that cannot adopt the
            // kernel's; the kernel goes on forwarding meanwhile.
            state.commit(&calls.records());
            state.sync();
            tracing::info!(
                calls = calls.len(),
                "relayd stopped; calls, kernel streams and pins are left for the next relayd \
                 (relayctl stop ends them)"
            );
        }
        Exit::DropCalls => {
            calls.clear();
            state.clear();
            calls.close_kernel();
            tracing::info!("relayd stopped; every call ended");
        }
    }
    drop(calls);
    // The last changes (the final records, or every call's end) to Redis.
    replication.finish();
    Ok(())
}

/// The forwarding counters the bandwidth figure is the rate of: the XDP
/// program's forwarded totals (static streams included) and the userspace
/// forwarder's (ended calls included), as the totals count them.
fn load_counts(calls: &CallManager) -> crate::load::Counts {
    let t = crate::stats::paths(calls, calls.kernel_counters().as_ref());
    crate::load::Counts {
        kernel_packets: t.0.packets,
        kernel_bytes: t.0.bytes,
        user_packets: t.1.packets,
        user_bytes: t.1.bytes,
    }
}

/// Rebuilds the calls of an earlier relayd, then ends those whose time is
/// up and records what could not be restored.
fn restore(
    calls: &mut CallManager,
    state: &StateKeeper,
    stored: std::collections::BTreeMap<String, relay_state::CallRecord>,
) {
    if stored.is_empty() && !calls.kernel_adopted() {
        return;
    }
    let report = calls.restore(stored.into_values());
    calls.tick(tokio::time::Instant::now());
    let ended = report.restored - calls.len().min(report.restored);
    state.commit(&calls.take_changes());
    tracing::info!(
        restored = report.restored,
        adopted_streams = report.adopted_streams,
        failed = report.failed.len(),
        stale_streams_removed = report.stale_streams,
        ended_while_down = ended,
        "calls of the previous relayd restored"
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn the_table_has_a_row_per_distinct_interface_or_static_stream_address() {
        let config = crate::config::Options::try_parse_from([
            "relayd",
            "-i",
            "a/127.0.0.1",
            "-i",
            "b/127.0.0.1",
            "-i",
            "c/::1",
            "-i",
            "c/127.0.0.3",
            "-i",
            "c/127.0.0.3",
            "-i",
            "d=c",
            "--port-min",
            "100",
            "--port-max",
            "199",
        ])
        .unwrap()
        .resolve()
        .unwrap();
        let statics = [
            static_stream::parse("127.0.0.1:150=10.0.0.1:5000", 0).unwrap(),
            static_stream::parse("127.0.0.2:150=10.0.0.1:5000", 1).unwrap(),
        ];
        // 127.0.0.1, ::1 and 127.0.0.3 (given twice, and a second address
        // of c) from the interfaces, 127.0.0.2 from a static stream.
        assert_eq!(relay_addresses(&config, &statics), 4);
    }
}
