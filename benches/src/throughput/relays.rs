//! Starting the relays under test in the bed's relay namespace, side by
//! side, each the same way: addresses of its own (as many as the calls
//! need), the same port range, media timeouts far beyond the run, daemon
//! pinned to CPU 1 (the generator has CPU 0).

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result};
use relay_tests::{
    netns::{ChildGuard, Netns},
    peer::{attach_peer_pass, PeerPass},
    ready::spawn_ready,
    PinDirGuard,
};

use super::bed::{addresses_for, relay_addr, static_call, PORT_MAX, PORT_MIN, RELAY_IF};
use crate::traffic::Flow;

/// The relays compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// relayd, forwarding in XDP (native on the veth).
    RelaydXdp,
    /// relayd, `--datapath=userspace`.
    RelaydUserspace,
    /// Debian's rtpengine, userspace (`--table=-1`: no kernel module here).
    Rtpengine,
    /// relayd as an operator starts it: no `--datapath` (auto: XDP native,
    /// else generic, else userspace).
    RelaydDefault,
}

impl Kind {
    /// Name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RelaydXdp => "relayd XDP",
            Kind::RelaydUserspace => "relayd userspace",
            Kind::Rtpengine => "rtpengine",
            Kind::RelaydDefault => "relayd",
        }
    }
}

/// CPU the relay daemons are pinned to.
pub const RELAY_CPU: &str = "1";

/// A running relay; stopped on drop.
#[derive(Debug)]
pub struct Relay {
    /// Which relay.
    pub kind: Kind,
    /// The daemon.
    pub child: ChildGuard,
    /// Where its stderr goes.
    pub log: PathBuf,
    /// Its NG socket (inside the relay namespace).
    pub ng: SocketAddr,
    _pins: Option<PinDirGuard>,
    _config: Option<Scratch>,
}

impl Relay {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// relayd's `--pin-dir` (`None` for rtpengine).
    pub fn pin_dir(&self) -> Option<&Path> {
        self._pins.as_ref().map(|p| p.0.as_path())
    }
}

fn log_file(kind: Kind, calls: u32) -> Result<(File, PathBuf)> {
    let tag = kind.name().replace(' ', "-");
    let path = std::env::temp_dir().join(format!(
        "xrelay-bench-{tag}-{calls}-{}.log",
        std::process::id()
    ));
    Ok((File::create(&path)?, path))
}

/// Starts `kind` in `ns` on the addresses and control ports of `slot`,
/// ready for `calls` calls.
pub fn start(kind: Kind, slot: usize, ns: &Netns, relayd: &Path, calls: u32) -> Result<Relay> {
    start_with(kind, slot, ns, relayd, calls, None)
}

/// A file removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts relayd XDP in `slot` with `calls` calls installed at start as
/// static streams (`static-stream` in a `--config` file): no NG and no
/// sockets, so call counts that the open-files limit keeps from being set
/// up over NG can still load the fast path. Returns it with the calls'
/// flows and how long start-up took.
pub fn start_static(
    slot: usize,
    ns: &Netns,
    relayd: &Path,
    calls: u32,
) -> Result<(Relay, Vec<Flow>, std::time::Duration)> {
    let mut specs = Vec::with_capacity(2 * calls as usize);
    let mut flows = Vec::with_capacity(2 * calls as usize);
    for i in 0..calls {
        let (streams, pair) = static_call(slot, i);
        specs.extend(streams);
        flows.extend(pair);
    }
    let (relay, elapsed) = start_static_streams(slot, ns, relayd, calls, &specs)?;
    Ok((relay, flows, elapsed))
}

/// relayd XDP with `specs` as its static streams (`calls` sizes its
/// tables and log name); also returns how long it took to start.
pub fn start_static_streams(
    slot: usize,
    ns: &Netns,
    relayd: &Path,
    calls: u32,
    specs: &[String],
) -> Result<(Relay, std::time::Duration)> {
    let mut toml = String::from("static-stream = [\n");
    for spec in specs {
        toml.push_str(&format!("  \"{spec}\",\n"));
    }
    toml.push_str("]\n");
    let config = Scratch(std::env::temp_dir().join(format!(
        "xrelay-bench-static-{calls}-{}.toml",
        std::process::id()
    )));
    std::fs::write(&config.0, toml).context("writing the static streams' config")?;
    let started = std::time::Instant::now();
    let mut relay = start_with(Kind::RelaydXdp, slot, ns, relayd, calls, Some(&config.0))?;
    let elapsed = started.elapsed();
    relay._config = Some(config);
    Ok((relay, elapsed))
}

fn start_with(
    kind: Kind,
    slot: usize,
    ns: &Netns,
    relayd: &Path,
    calls: u32,
    config: Option<&Path>,
) -> Result<Relay> {
    let addrs = addresses_for(calls);
    let ng = SocketAddr::from(([127, 0, 0, 1], 2223 + slot as u16));
    let cli = SocketAddr::from(([127, 0, 0, 1], 9900 + slot as u16));
    let (log, log_path) = log_file(kind, calls)?;
    let mut cmd = ns.command("taskset")?;
    cmd.args(["-c", RELAY_CPU])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let pins = match kind {
        Kind::RelaydXdp | Kind::RelaydUserspace | Kind::RelaydDefault => {
            cmd.arg(relayd);
            for k in 0..addrs {
                cmd.arg(format!("--interface=if{k}/{}", relay_addr(slot, k)));
            }
            let pins = PinDirGuard::new("tput");
            // With the DoS shield every media port of every address has a
            // kernel entry.
            let ports = u32::from(PORT_MAX - PORT_MIN + 1) * addrs;
            cmd.arg(format!("--listen-ng={ng}"))
                .arg(format!("--listen-cli={cli}"))
                .arg(format!("--port-min={PORT_MIN}"))
                .arg(format!("--port-max={PORT_MAX}"))
                .args(["--timeout", "3600", "--silent-timeout", "3600"])
                .arg(format!(
                    "--max-streams={}",
                    (ports + 4096).next_power_of_two()
                ))
                .arg("--pin-dir")
                .arg(&pins.0);
            if let Some(config) = config {
                cmd.arg("--config").arg(config);
            }
            match kind {
                Kind::RelaydXdp => {
                    cmd.args(["--datapath", "xdp", "--xdp-mode", "native"]);
                }
                Kind::RelaydUserspace => {
                    cmd.args(["--datapath", "userspace"]);
                }
                _ => {}
            }
            Some(pins)
        }
        Kind::Rtpengine => {
            cmd.arg("rtpengine");
            for k in 0..addrs {
                cmd.arg(format!("--interface=if{k}/{}", relay_addr(slot, k)));
            }
            cmd.arg(format!("--listen-ng={ng}"))
                .args(["--table=-1", "--foreground", "--log-stderr", "-L", "4"])
                .args(["--config-file=none", "--delete-delay=0", "--timeout=3600"])
                .arg(format!("--port-min={PORT_MIN}"))
                .arg(format!("--port-max={PORT_MAX}"));
            None
        }
    };
    let child = match kind {
        Kind::Rtpengine => ChildGuard(cmd.spawn().context("starting rtpengine")?),
        _ => spawn_ready(&mut cmd)
            .with_context(|| format!("starting relayd (log: {})", log_path.display()))?,
    };
    Ok(Relay {
        kind,
        child,
        log: log_path,
        ng,
        _pins: pins,
        _config: None,
    })
}

/// veth delivers XDP_TX'ed frames only to a peer running an XDP program:
/// without relayd XDP in the run (whose program passes what is not its own
/// up the stack), the userspace relays get the do-nothing one.
pub fn peer_pass(ns: &Netns) -> Result<PeerPass> {
    ns.run(|| attach_peer_pass(RELAY_IF))?
        .context("attaching relay_peer_pass to the relay veth")
}
