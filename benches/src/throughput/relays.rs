//! Starting the relays under test in the bed's relay namespace, each the
//! same way for every call count: every address the calls need, the same
//! port range, media timeouts far beyond the run, daemon pinned to CPU 1
//! (the generator has CPU 0).

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

use super::bed::{addresses_for, relay_addr, PORT_MAX, PORT_MIN, RELAY_IF};

/// The relays compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// relayd, forwarding in XDP (native on the veth).
    RelaydXdp,
    /// relayd, `--datapath=userspace`.
    RelaydUserspace,
    /// Debian's rtpengine, userspace (`--table=-1`: no kernel module here).
    Rtpengine,
}

impl Kind {
    /// Every relay, in the order they are measured.
    pub const ALL: [Kind; 3] = [Kind::RelaydXdp, Kind::RelaydUserspace, Kind::Rtpengine];

    /// Name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RelaydXdp => "relayd XDP",
            Kind::RelaydUserspace => "relayd userspace",
            Kind::Rtpengine => "rtpengine",
        }
    }
}

/// NG address of every relay under test (inside the relay namespace).
pub const NG: &str = "127.0.0.1:2223";
/// CPU the relay daemons are pinned to.
pub const RELAY_CPU: &str = "1";

/// A running relay; stopped (and its attachments removed) on drop.
#[derive(Debug)]
pub struct Relay {
    /// The daemon.
    pub child: ChildGuard,
    /// Where its stderr goes.
    pub log: PathBuf,
    _peer_pass: Option<PeerPass>,
    _pins: Option<PinDirGuard>,
}

impl Relay {
    /// The NG socket address.
    pub fn ng(&self) -> SocketAddr {
        NG.parse().expect("constant")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
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

/// Starts `kind` in `ns`, ready for `calls` calls.
pub fn start(kind: Kind, ns: &Netns, relayd: &Path, calls: u32) -> Result<Relay> {
    let addrs = addresses_for(calls);
    let (log, log_path) = log_file(kind, calls)?;
    let mut cmd = ns.command("taskset")?;
    cmd.args(["-c", RELAY_CPU])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let (pins, peer_pass) = match kind {
        Kind::RelaydXdp | Kind::RelaydUserspace => {
            cmd.arg(relayd);
            for k in 0..addrs {
                cmd.arg(format!("--interface=if{k}/{}", relay_addr(k)));
            }
            let pins = PinDirGuard::new("tput");
            // With the DoS shield every media port of every address has a
            // kernel entry.
            let ports = u32::from(PORT_MAX - PORT_MIN + 1) * addrs;
            cmd.args(["--listen-ng", NG, "--listen-cli", "127.0.0.1:9900"])
                .arg(format!("--port-min={PORT_MIN}"))
                .arg(format!("--port-max={PORT_MAX}"))
                .args(["--timeout", "3600", "--silent-timeout", "3600"])
                .arg(format!(
                    "--max-streams={}",
                    (ports + 4096).next_power_of_two()
                ))
                .arg("--pin-dir")
                .arg(&pins.0);
            let peer_pass = if kind == Kind::RelaydXdp {
                cmd.args(["--datapath", "xdp", "--xdp-mode", "native"]);
                None
            } else {
                cmd.args(["--datapath", "userspace"]);
                Some(peer_pass(ns)?)
            };
            (Some(pins), peer_pass)
        }
        Kind::Rtpengine => {
            cmd.arg("rtpengine");
            for k in 0..addrs {
                cmd.arg(format!("--interface=if{k}/{}", relay_addr(k)));
            }
            cmd.arg(format!("--listen-ng={NG}"))
                .args(["--table=-1", "--foreground", "--log-stderr", "-L", "4"])
                .args(["--config-file=none", "--delete-delay=0", "--timeout=3600"])
                .arg(format!("--port-min={PORT_MIN}"))
                .arg(format!("--port-max={PORT_MAX}"));
            (None, Some(peer_pass(ns)?))
        }
    };
    let child = match kind {
        Kind::Rtpengine => ChildGuard(cmd.spawn().context("starting rtpengine")?),
        _ => spawn_ready(&mut cmd)
            .with_context(|| format!("starting relayd (log: {})", log_path.display()))?,
    };
    Ok(Relay {
        child,
        log: log_path,
        _peer_pass: peer_pass,
        _pins: pins,
    })
}

/// veth delivers XDP_TX'ed frames only to a peer running an XDP program:
/// the userspace relays get the do-nothing one.
fn peer_pass(ns: &Netns) -> Result<PeerPass> {
    ns.run(|| attach_peer_pass(RELAY_IF))?
        .context("attaching relay_peer_pass to the relay veth")
}
