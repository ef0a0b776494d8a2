//! The two relays under comparison, side by side in one network namespace
//! with the same interface addresses and disjoint media port ranges.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use relay_ng::Value;
use relay_tests::{
    netns::{ChildGuard, Netns},
    ng_client::NgClient,
    ready::spawn_ready,
    PinDirGuard,
};

/// The addresses of the bed, with the placeholder each becomes in
/// normalised replies. Documentation and benchmarking ranges: nothing here
/// routes anywhere outside the namespace.
pub const ADDRESSES: &[(&str, &str)] = &[
    ("192.0.2.1", "{PUB4}"),
    ("2001:db8::1", "{PUB6}"),
    ("198.18.0.1", "{PRIV4}"),
    ("2001:db8:18::1", "{PRIV6}"),
    // For cases with interfaces of their own (several addresses on one).
    ("192.0.2.2", "{PUB4-2}"),
    ("192.0.2.3", "{PUB4-3}"),
    ("2001:db8::2", "{PUB6-2}"),
    ("198.18.0.2", "{PRIV4-2}"),
];

/// Both relays' `--interface` values unless a case gives its own:
/// `pub` (first, so the default) and `priv`, each dual-stack.
pub const DEFAULT_INTERFACES: &[&str] = &[
    "pub/192.0.2.1",
    "pub/2001:db8::1",
    "priv/198.18.0.1",
    "priv/2001:db8:18::1",
];

/// [`DEFAULT_INTERFACES`] as owned strings.
pub fn default_interfaces() -> Vec<String> {
    DEFAULT_INTERFACES.iter().map(|s| (*s).to_owned()).collect()
}

/// The lowest media port of either relay; the corpus's endpoints use
/// ports below it.
pub const LOWEST_RELAY_PORT: u16 = 30000;

/// Which relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The oracle: Debian's rtpengine, userspace only (`--table=-1`).
    Rtpengine,
    /// relayd, userspace datapath.
    Relayd,
}

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rtpengine => "rtpengine",
            Kind::Relayd => "relayd",
        }
    }

    /// NG port (loopback of the namespace) and media port range. The ranges
    /// are disjoint and above every port the corpus's SDP uses, so a port in
    /// a relay's range in its reply is one that relay allocated.
    fn ports(self) -> (u16, u16, u16) {
        match self {
            Kind::Rtpengine => (2223, 40000, 40999),
            Kind::Relayd => (2224, LOWEST_RELAY_PORT, 30999),
        }
    }
}

/// The network namespace both relays run in, deleted on drop.
#[derive(Debug)]
pub struct Bed {
    ns: Netns,
}

impl Bed {
    /// A namespace with a veth pair (both ends inside) carrying
    /// [`ADDRESSES`]. IPv6 addresses skip duplicate address
    /// detection so they are usable at once.
    pub fn new() -> Result<Self> {
        let ns = Netns::new("conf")?;
        ns.ip(&[
            "link", "add", "conf0", "type", "veth", "peer", "name", "conf1",
        ])?;
        for dev in ["conf0", "conf1"] {
            ns.ip(&["link", "set", dev, "up"])?;
        }
        for (addr, _) in ADDRESSES {
            let prefix = if addr.contains(':') { "/64" } else { "/24" };
            let cidr = format!("{addr}{prefix}");
            let mut args = vec!["addr", "add", &cidr, "dev", "conf0"];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.ip(&args)?;
        }
        Ok(Bed { ns })
    }

    /// The namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
}

/// One running relay and an NG client talking to it.
#[derive(Debug)]
pub struct Relay {
    /// Which one.
    pub kind: Kind,
    /// Lowest and highest media port it allocates.
    pub port_range: (u16, u16),
    /// Its `--interface` values.
    pub interfaces: Vec<String>,
    child: ChildGuard,
    client: NgClient,
    starts: u32,
    // Drop order: the process (above) before its pin directory.
    _pin_dir: Option<PinDirGuard>,
}

/// How to start the relays.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// rtpengine executable.
    pub rtpengine: PathBuf,
    /// relayd executable.
    pub relayd: PathBuf,
    /// Directory for the relays' logs.
    pub log_dir: PathBuf,
}

/// How long one NG request may take before it counts as unanswered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

impl Relay {
    /// Starts `kind` in `bed` with `interfaces` (`--interface` values)
    /// and waits until it answers NG.
    pub fn start(bed: &Bed, kind: Kind, bins: &Binaries, interfaces: &[String]) -> Result<Self> {
        let (ng, min, max) = kind.ports();
        let ng_addr: SocketAddr = ([127, 0, 0, 1], ng).into();
        let log = bins.log_dir.join(format!("{}.log", kind.name()));
        let (child, pin_dir) = match kind {
            Kind::Rtpengine => (
                start_rtpengine(bed, &bins.rtpengine, &log, interfaces, ng_addr, min, max)?,
                None,
            ),
            Kind::Relayd => {
                let pin_dir = PinDirGuard::new("conformance");
                let child = start_relayd(
                    bed,
                    &bins.relayd,
                    &log,
                    &pin_dir.0,
                    interfaces,
                    ng_addr,
                    min,
                    max,
                )?;
                (child, Some(pin_dir))
            }
        };
        let client = NgClient::new(bed.ns(), ng_addr)?;
        let mut relay = Relay {
            kind,
            port_range: (min, max),
            interfaces: interfaces.to_vec(),
            child,
            client,
            starts: 1,
            _pin_dir: pin_dir,
        };
        relay.wait_for_pong()?;
        Ok(relay)
    }

    /// Pings until a pong (rtpengine has no readiness notification), at
    /// most 15 s.
    fn wait_for_pong(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        self.client.set_timeout(Duration::from_millis(200))?;
        let ping = Value::dict([("command", Value::str("ping"))]);
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                bail!("{} exited during start-up: {status}", self.kind.name());
            }
            if self.client.request(&ping).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} did not answer a ping within 15 s", self.kind.name());
            }
        }
        self.client.set_timeout(REPLY_TIMEOUT)?;
        Ok(())
    }

    /// Sends one request; `Err` is a reply that never came (or was not NG).
    pub fn request(&self, body: &Value) -> Result<Value> {
        self.client.request(body).map_err(|e| {
            let timed_out = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            });
            if timed_out {
                anyhow::anyhow!("no reply within {} s", REPLY_TIMEOUT.as_secs())
            } else {
                e
            }
        })
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().ok().flatten()
    }

    /// How many times this relay was started (restarts after crashes).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Starts a fresh process after a crash (only then: the NG port must
    /// be free), keeping the log (appended).
    pub fn restart(&mut self, bed: &Bed, bins: &Binaries) -> Result<()> {
        let starts = self.starts;
        let interfaces = self.interfaces.clone();
        *self = Relay::start(bed, self.kind, bins, &interfaces)?;
        self.starts = starts + 1;
        Ok(())
    }
}

fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn start_rtpengine(
    bed: &Bed,
    binary: &Path,
    log: &Path,
    interfaces: &[String],
    ng: SocketAddr,
    min: u16,
    max: u16,
) -> Result<ChildGuard> {
    let mut cmd = bed.ns().command(binary)?;
    for spec in interfaces {
        cmd.arg(format!("--interface={spec}"));
    }
    let child = cmd
        .args(["--table=-1", "--foreground", "--log-stderr", "-L", "6"])
        .arg(format!("--listen-ng={ng}"))
        // No config file: Debian's /etc/rtpengine/rtpengine.conf must not
        // change what is measured. Deleted calls free their ports at once.
        .args(["--config-file=none", "--delete-delay=0"])
        .arg(format!("--port-min={min}"))
        .arg(format!("--port-max={max}"))
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (apt-get install rtpengine-daemon)",
                binary.display()
            )
        })?;
    Ok(ChildGuard(child))
}

#[allow(clippy::too_many_arguments)]
fn start_relayd(
    bed: &Bed,
    binary: &Path,
    log: &Path,
    pin_dir: &Path,
    interfaces: &[String],
    ng: SocketAddr,
    min: u16,
    max: u16,
) -> Result<ChildGuard> {
    let mut cmd = bed.ns().command(binary)?;
    for spec in interfaces {
        cmd.arg(format!("--interface={spec}"));
    }
    cmd.args(["--datapath=userspace", "--no-state", "--delete-delay=0"])
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg(format!("--listen-ng={ng}"))
        .arg("--listen-cli=127.0.0.1:9911")
        .arg(format!("--port-min={min}"))
        .arg(format!("--port-max={max}"))
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    spawn_ready(&mut cmd).with_context(|| format!("starting {}", binary.display()))
}
