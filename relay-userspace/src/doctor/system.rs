//! Host-wide checks: kernel and BPF features, bpffs, capabilities, the
//! open-files limit against the port range, kernel memory for
//! `--max-streams`, the ephemeral port range, and a program left attached
//! with no relayd owning it.

use std::path::Path;

use super::Check;
use crate::{
    config::{default_state_dir, Config, DatapathMode},
    datapath::xdp::versioned_dir,
    open_files::{RESERVED, SOCKETS_PER_CALL},
};

/// Kernel memory per stream state record (ABI v8, any CPU count).
pub const STATE_BYTES_PER_STREAM: u64 = 192;
/// Stream table bytes per port of a relay address's row (one 64-byte
/// entry per port of the media port range).
pub const TABLE_BYTES_PER_PORT: u64 = 64;
/// Share of the host's memory the maps may take before doctor warns.
const MEMORY_SHARE_PERCENT: u64 = 10;

/// The system checks.
pub fn checks(config: &Config) -> Vec<Check> {
    let xdp = config.datapath != DatapathMode::Userspace;
    let mut out = vec![
        kernel(),
        open_files(config),
        memory(config),
        local_ports(config),
    ];
    if xdp {
        out.extend([btf(), bpffs(), capabilities(), unowned_program(config)]);
    }
    out
}

/// `major.minor` of a kernel release string.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel() -> Check {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    // BPF links for XDP (5.9), bpf_link_update and mmapable arrays (5.5),
    // DEVMAP_HASH (5.4), bpf_fib_lookup (4.18): 5.10 LTS is the floor.
    match kernel_version(&release) {
        Some(v) if v >= (5, 10) => Check::ok("kernel", format!("{release}: XDP links, DEVMAP_HASH, FIB lookup, mmapable maps")),
        Some(_) => Check::error(
            "kernel",
            format!("{release}: older than 5.10, which the XDP program and its links need"),
            "run a 5.10 or later kernel (Amazon Linux 2023, Debian 12, Ubuntu 22.04), or --datapath=userspace",
        ),
        None => Check::warn("kernel", format!("cannot read the kernel version ({release:?})"), "check `uname -r`"),
    }
}

fn btf() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Check::ok("btf", "/sys/kernel/btf/vmlinux present")
    } else {
        Check::warn(
            "btf",
            "no /sys/kernel/btf/vmlinux: the kernel was built without BTF",
            "use a distribution kernel with CONFIG_DEBUG_INFO_BTF=y",
        )
    }
}

fn bpffs() -> Check {
    if crate::bpffs::is_bpffs(Path::new("/sys/fs/bpf")) {
        Check::ok("bpffs", "/sys/fs/bpf is a BPF filesystem")
    } else {
        Check::warn(
            "bpffs",
            "/sys/fs/bpf is not mounted as bpffs: relayd mounts it at start (needs CAP_SYS_ADMIN)",
            "mount -t bpf bpf /sys/fs/bpf (or let systemd do it)",
        )
    }
}

fn capabilities() -> Check {
    let missing = crate::caps::missing_for_xdp();
    if missing.is_empty() {
        Check::ok(
            "capabilities",
            "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or root)",
        )
    } else {
        Check::error(
            "capabilities",
            format!(
                "lacks {}: no XDP, media would go through userspace",
                missing.join(" and ")
            ),
            "run as root or grant AmbientCapabilities=CAP_BPF CAP_PERFMON CAP_NET_ADMIN (packaged xrelay.service)",
        )
    }
}

/// Media ports of every address media uses.
fn media_ports(config: &Config) -> u64 {
    let per = u64::from(config.port_max.saturating_sub(config.port_min)) + 1;
    per * crate::interfaces::media_addresses(&config.interfaces)
        .len()
        .max(1) as u64
}

fn open_files(config: &Config) -> Check {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Check::warn(
            "open files",
            "cannot read RLIMIT_NOFILE",
            "check `ulimit -Hn`",
        );
    }
    // relayd raises the soft limit to the hard one itself.
    let hard = limit.rlim_max;
    let ports = media_ports(config);
    let calls = hard.saturating_sub(RESERVED).min(ports) / SOCKETS_PER_CALL;
    if hard.saturating_sub(RESERVED) < ports {
        Check::warn(
            "open files",
            format!(
                "hard limit {hard} runs out before the {ports} media ports: room for about {calls} calls"
            ),
            format!("raise it to {} (systemd LimitNOFILE=, ulimit -Hn)", ports + RESERVED),
        )
    } else {
        Check::ok(
            "open files",
            format!("hard limit {hard} covers the {ports} media ports ({calls} calls)"),
        )
    }
}

/// Bytes of the host's memory (`MemTotal`).
fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Kernel memory the XDP maps take for `config` (stream state records and
/// one stream table row, an entry per media port, per interface address).
pub fn kernel_bytes(config: &Config) -> u64 {
    let ports = u64::from(config.port_max - config.port_min) + 1;
    u64::from(config.max_streams) * STATE_BYTES_PER_STREAM
        + crate::interfaces::distinct_addresses(&config.interfaces).len() as u64
            * ports
            * TABLE_BYTES_PER_PORT
}

fn memory(config: &Config) -> Check {
    let need = kernel_bytes(config);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let Some(total) = mem_total() else {
        return Check::warn("memory", "cannot read MemTotal", "check /proc/meminfo");
    };
    let detail = format!(
        "--max-streams {} takes {:.0} MiB of kernel memory ({STATE_BYTES_PER_STREAM} B per stream, any CPU count, and {TABLE_BYTES_PER_PORT} B per media port of each address) of {:.0} MiB",
        config.max_streams,
        mib(need),
        mib(total)
    );
    if need * 100 > total * MEMORY_SHARE_PERCENT {
        Check::warn(
            "memory",
            detail,
            format!("lower --max-streams to what the instance carries (at most {MEMORY_SHARE_PERCENT} % of memory is advised)"),
        )
    } else {
        Check::ok("memory", detail)
    }
}

fn local_ports(config: &Config) -> Check {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut b = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    let (Some(lo), Some(hi)) = (b.next(), b.next()) else {
        return Check::warn(
            "ephemeral ports",
            "cannot read ip_local_port_range",
            "check the sysctl",
        );
    };
    let (min, max) = (config.port_min, config.port_max);
    if hi < min || lo > max {
        Check::ok(
            "ephemeral ports",
            format!("{lo}-{hi} is clear of the media range {min}-{max}"),
        )
    } else {
        Check::warn(
            "ephemeral ports",
            format!("{lo}-{hi} overlaps the media range {min}-{max}: relayd reserves the media range at start (ip_local_reserved_ports); until then an outgoing connection may take a media port"),
            format!("sysctl net.ipv4.ip_local_reserved_ports={min}-{max} at boot, or move the media range"),
        )
    }
}

/// The name of the check for a program nobody owns.
pub const UNOWNED_PROGRAM: &str = "pinned program";

/// A program pinned for this instance while no relayd holds its state
/// directory: it forwards for calls nobody manages.
fn unowned_program(config: &Config) -> Check {
    let dir = versioned_dir(&config.pin_dir);
    let state = config
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&config.pin_dir));
    let links = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("link_"))
                .count()
        })
        .unwrap_or(0);
    match (links, relay_state::FileJournal::in_use(&state)) {
        (0, _) => Check::ok(UNOWNED_PROGRAM, format!("nothing attached under {}", dir.display())),
        (_, Some(true)) => Check::ok(UNOWNED_PROGRAM, format!("attached on {links} interfaces, owned by a running relayd")),
        _ => Check::warn(
            UNOWNED_PROGRAM,
            format!("attached on {links} interfaces under {} with no relayd owning it", dir.display()),
            "start relayd with this --pin-dir to take its calls over, or `relayctl stop` to remove it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(
            kernel_version("5.10.210-201.852.amzn2.x86_64"),
            Some((5, 10))
        );
        assert_eq!(kernel_version("4.19"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
