//! The open-files limit. Every media port is a socket held for the life of
//! its call (four per call: RTP and RTCP of each side), so the limit, not
//! memory, is what caps the calls a relay can carry. systemd starts services
//! with a soft limit of 1024, room for about 250 calls; the hard limit is
//! usually far higher. relayd raises its soft limit to the hard one at
//! start-up (as e.g. Go's runtime does for every program) and says what the
//! result leaves room for.

use std::io;

/// Descriptors relayd needs besides media sockets: NG, CLI and metrics
/// sockets, the runtime's epoll and wakers, BPF maps and programs, logs.
pub const RESERVED: u64 = 64;
/// Media sockets per call (RTP and RTCP on each side).
pub const SOCKETS_PER_CALL: u64 = 4;

/// The limit after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit now in force.
    pub limit: u64,
    /// The soft limit before, when it was raised.
    pub raised_from: Option<u64>,
}

impl OpenFiles {
    /// Calls the limit leaves room for, with `media_ports` ports in the
    /// configured ranges of all interfaces (whichever runs out first).
    pub fn call_capacity(&self, media_ports: u64) -> u64 {
        self.limit.saturating_sub(RESERVED).min(media_ports) / SOCKETS_PER_CALL
    }

    /// Whether the limit runs out before the media ports do.
    pub fn below_port_ranges(&self, media_ports: u64) -> bool {
        self.limit.saturating_sub(RESERVED) < media_ports
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (which
/// needs no privilege).
pub fn raise_to_hard() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(OpenFiles {
            limit: limit.rlim_cur,
            raised_from: None,
        });
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles {
        limit: limit.rlim_cur,
        raised_from: Some(before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_what_runs_out_first() {
        let systemd_default = OpenFiles {
            limit: 1024,
            raised_from: None,
        };
        // rtpengine's default range, 10 000 ports: the limit runs out first.
        assert_eq!(systemd_default.call_capacity(10_000), 240);
        assert!(systemd_default.below_port_ranges(10_000));
        let raised = OpenFiles {
            limit: 524_288,
            raised_from: Some(1024),
        };
        assert_eq!(raised.call_capacity(10_000), 2500);
        assert!(!raised.below_port_ranges(10_000));
        let tiny = OpenFiles {
            limit: 10,
            raised_from: None,
        };
        assert_eq!(tiny.call_capacity(10_000), 0);
    }
}
