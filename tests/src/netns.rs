//! Network namespaces and veth pairs for tests, removed on drop (also when
//! the test panics).

use std::{
    fs::File,
    os::fd::{AsFd as _, AsRawFd as _},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context as _, Result};
use nix::sched::{setns, CloneFlags};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `cmd`, failing with its stderr.
fn run_checked(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `ip` with `args`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run_checked(Command::new("ip").args(args))
}

/// A MAC address as `ip` writes it (`02:00:00:00:01:02`).
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `xr-<tag>-<pid>-<n>`, unique among concurrently running tests,
    /// with `lo` up.
    pub fn new(tag: &str) -> Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("xr-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth end in this namespace (for [`veth`]): interface `name`,
    /// `addr` as `a.b.c.d/len` (empty for none), MAC `mac`.
    pub fn end<'a>(&'a self, name: &'a str, addr: &'a str, mac: &'a str) -> VethEnd<'a> {
        VethEnd {
            ns: self,
            name,
            addr,
            mac,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A permanent neighbour entry: `addr` (IPv4 or IPv6) is at `mac` on
    /// `dev`, so lookups never wait for ARP or neighbour discovery.
    pub fn static_neighbour(&self, addr: &str, mac: &str, dev: &str) -> Result<()> {
        self.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
    }

    /// Turns off transmit checksum offload on `iface` (`ethtool -K IF tx off`).
    pub fn ethtool_offload_off(&self, iface: &str) -> Result<()> {
        run_checked(Command::new("ip").args([
            "netns", "exec", &self.name, "ethtool", "-K", iface, "tx", "off",
        ]))
    }

    /// Local UDP ports bound in this namespace (from /proc, read on a
    /// thread inside it).
    pub fn udp_ports(&self) -> Result<Vec<u16>> {
        let text = self.run(|| std::fs::read_to_string("/proc/thread-self/net/udp"))??;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)?
                    .split(':')
                    .nth(1)
                    .map(str::to_owned)
            })
            .filter_map(|hex| u16::from_str_radix(&hex, 16).ok())
            .collect())
    }

    fn file(&self) -> Result<File> {
        File::open(format!("/run/netns/{}", self.name)).context("opening the netns file")
    }

    /// Runs `f` on a thread that lives in this namespace. Sockets and BPF
    /// attachments made there stay in the namespace after the thread ends.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let file = self.file()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).context("setns")?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }

    /// A command that starts inside this namespace (network only: unlike
    /// `ip netns exec` it keeps the mount namespace, so bpffs pins made by the
    /// child are visible to everyone).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        use std::os::unix::process::CommandExt as _;
        let file = self.file()?;
        let mut cmd = Command::new(program);
        // SAFETY: the closure only calls setns(2), which is async-signal-safe,
        // and keeps `file` (hence the fd) alive by moving it in.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete netns {}: {e}", self.name);
        }
    }
}

/// One end of a veth pair: namespace, name, address with prefix, MAC.
#[derive(Clone, Copy, Debug)]
pub struct VethEnd<'a> {
    /// Namespace the end lives in.
    pub ns: &'a Netns,
    /// Interface name.
    pub name: &'a str,
    /// `a.b.c.d/len`, or empty for none.
    pub addr: &'a str,
    /// MAC address `aa:bb:...`.
    pub mac: &'a str,
}

/// Creates a veth pair between two namespaces, addresses it and brings it up.
/// Deleting either namespace removes the pair.
pub fn veth(a: VethEnd<'_>, b: VethEnd<'_>) -> Result<()> {
    veth_with_queues(a, b, 1)
}

/// [`veth`] with `queues` receive and transmit queues on each end. veth
/// hands an XDP-transmitted frame to the peer's queue of the sending CPU
/// (CPU modulo the queue count), each queue with a ring and NAPI of its own,
/// so senders on several CPUs need a queue each or they overflow one ring.
pub fn veth_with_queues(a: VethEnd<'_>, b: VethEnd<'_>, queues: u32) -> Result<()> {
    let queues = queues.max(1).to_string();
    ip(&[
        "link",
        "add",
        a.name,
        "netns",
        a.ns.name(),
        "address",
        a.mac,
        "numtxqueues",
        &queues,
        "numrxqueues",
        &queues,
        "type",
        "veth",
        "peer",
        "name",
        b.name,
        "netns",
        b.ns.name(),
        "address",
        b.mac,
        "numtxqueues",
        &queues,
        "numrxqueues",
        &queues,
    ])?;
    for end in [a, b] {
        if !end.addr.is_empty() {
            end.ns.ip(&["addr", "add", end.addr, "dev", end.name])?;
        }
        end.ns.ip(&["link", "set", end.name, "up"])?;
    }
    Ok(())
}

/// A child process killed (by PID) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = self.0.wait()?;
        Ok(status)
    }
}

impl Drop for ChildGuard {
    /// SIGTERM first (daemons such as Kamailio take their children down on
    /// it), SIGKILL after 3 s, then reap.
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
