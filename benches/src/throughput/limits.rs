//! File-descriptor limits: every relay holds 4 sockets per call.

use anyhow::{Context as _, Result};

/// File descriptors a relay needs besides its media sockets.
const FD_HEADROOM: u64 = 800;

/// 100 000 calls are 400 000 sockets in a userspace relay (and in relayd
/// with XDP, which holds its ports as sockets too); the daemons inherit this
/// limit. Raising the hard limit needs CAP_SYS_RESOURCE, which containers
/// often lack: then the soft limit goes up to the hard one. Returns how many
/// calls fit, keeping room for everything else a relay opens (at the limit
/// relayd cannot even write per-CPU maps: aya opens a sysfs file for each).
pub fn raise_nofile() -> Result<u32> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let mut limit = libc::rlimit {
        rlim_cur: nr_open,
        rlim_max: nr_open,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        // SAFETY: getrlimit writes the struct we pass and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
        }
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
        }
    }
    let fit = limit.rlim_max.saturating_sub(FD_HEADROOM) / 4 / 100 * 100;
    let fit = u32::try_from(fit).unwrap_or(u32::MAX).max(1);
    eprintln!(
        "RLIMIT_NOFILE {}: up to {fit} calls per relay (4 sockets each)",
        limit.rlim_max
    );
    Ok(fit)
}
