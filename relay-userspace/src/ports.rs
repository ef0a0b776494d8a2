//! RTP/RTCP port pairs for one interface address, as rtpengine hands them
//! out: an even RTP port and the odd RTCP port above it, taken from a free
//! queue (so a just-released pair is the last to be reused, which keeps late
//! packets of an old call away from a new one), each bound to a real socket
//! on the interface address so nothing else can take it.

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
};

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

/// Why no pair could be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    /// Every pair of the range is in use (or could not be bound).
    #[error("Ran out of ports")]
    RanOutOfPorts,
    /// Sockets could not be opened at all (e.g. the open-files limit):
    /// not a shortage of ports, and not worth trying other pairs.
    #[error("Cannot open media sockets: {0}")]
    Sockets(String),
    /// A pair asked for by number is outside the configured range.
    #[error("port {0} is not an RTP port of the configured range")]
    NotInRange(u16),
    /// A pair asked for by number is taken (by this relay or another program).
    #[error("port pair {0} is in use")]
    InUse(u16),
    /// The configured range holds no even/odd pair.
    #[error("port range {min}-{max} holds no RTP/RTCP pair")]
    EmptyRange {
        /// Lowest port.
        min: u16,
        /// Highest port.
        max: u16,
    },
}

/// A bound RTP/RTCP pair. Give it back with [`PortPool::release`].
#[derive(Debug)]
pub struct PortPair {
    /// The address both sockets are bound to.
    pub address: IpAddr,
    /// The even port.
    pub rtp_port: u16,
    /// Non-blocking socket bound to the RTP port.
    pub rtp: UdpSocket,
    /// Non-blocking socket bound to the RTCP port (RTP + 1).
    pub rtcp: UdpSocket,
}

impl PortPair {
    /// The RTP socket's local address (what `getsockname` would say: the
    /// pool binds a concrete port on a concrete address).
    pub fn rtp_local(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.rtp_port)
    }

    /// The RTCP socket's local address.
    pub fn rtcp_local(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.rtp_port + 1)
    }
}

/// The free pairs of one address's range.
#[derive(Debug)]
pub struct PortPool {
    address: IpAddr,
    free: VecDeque<u16>,
    /// Lowest RTP port of the pool.
    first: u16,
    /// Whether pair i (RTP port `first + 2 i`) is handed out: makes a double
    /// release detectable without scanning the free queue.
    in_use: Vec<bool>,
    /// Bind even while the address is not local (IP_FREEBIND): the
    /// floating address of an active/standby pair, which a takeover may
    /// bind just before it arrives.
    freebind: bool,
}

impl PortPool {
    /// A pool of every even port `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(address: IpAddr, min: u16, max: u16) -> Result<Self, PortError> {
        let first = min
            .checked_add(min % 2)
            .ok_or(PortError::EmptyRange { min, max })?;
        let free: VecDeque<u16> = (first..max)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|q| q <= max))
            .collect();
        if free.is_empty() {
            return Err(PortError::EmptyRange { min, max });
        }
        let in_use = vec![false; free.len()];
        Ok(PortPool {
            address,
            free,
            first,
            in_use,
            freebind: false,
        })
    }

    /// Binds its sockets with IP_FREEBIND (see the field).
    pub fn with_freebind(mut self, on: bool) -> Self {
        self.freebind = on;
        self
    }

    /// The address the pool binds on.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// Pairs not in use.
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Pairs in use.
    pub fn used(&self) -> usize {
        self.in_use.len() - self.free.len()
    }

    /// Takes the next free pair and binds both sockets. A pair some other
    /// program holds is skipped and goes to the back of the queue, to be
    /// tried again later; when every free pair has been tried, the answer is
    /// rtpengine's "Ran out of ports".
    pub fn allocate(&mut self) -> Result<PortPair, PortError> {
        for _ in 0..self.free.len() {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            match self.bind_pair(port) {
                Ok((rtp, rtcp)) => {
                    if let Some(used) = self.slot(port) {
                        *used = true;
                    }
                    return Ok(PortPair {
                        address: self.address,
                        rtp_port: port,
                        rtp,
                        rtcp,
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                    ) =>
                {
                    tracing::warn!(address = %self.address, port, "port pair busy, skipping it");
                    self.free.push_back(port);
                }
                Err(e) => {
                    // Out of file descriptors or memory: every other pair
                    // would fail the same way.
                    self.free.push_front(port);
                    tracing::error!(address = %self.address, port, error = %e, "cannot open media sockets");
                    return Err(PortError::Sockets(e.to_string()));
                }
            }
        }
        Err(PortError::RanOutOfPorts)
    }

    /// Takes the pair starting at `rtp_port` (a restored call's) and binds
    /// both sockets.
    pub fn claim(&mut self, rtp_port: u16) -> Result<PortPair, PortError> {
        match self.slot(rtp_port) {
            None => return Err(PortError::NotInRange(rtp_port)),
            Some(used) if *used => return Err(PortError::InUse(rtp_port)),
            Some(_) => {}
        }
        let (rtp, rtcp) = self.bind_pair(rtp_port).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied => {
                PortError::InUse(rtp_port)
            }
            _ => PortError::Sockets(e.to_string()),
        })?;
        if let Some(used) = self.slot(rtp_port) {
            *used = true;
        }
        self.free.retain(|&p| p != rtp_port);
        Ok(PortPair {
            address: self.address,
            rtp_port,
            rtp,
            rtcp,
        })
    }

    fn bind_pair(&self, port: u16) -> std::io::Result<(UdpSocket, UdpSocket)> {
        let rtp = bind_nonblocking(SocketAddr::new(self.address, port), self.freebind)?;
        let rtcp = bind_nonblocking(SocketAddr::new(self.address, port + 1), self.freebind)?;
        Ok((rtp, rtcp))
    }

    /// Returns a pair's port to the back of the queue. The sockets must be
    /// closed by the caller (dropping the [`PortPair`] or its sockets).
    pub fn release(&mut self, rtp_port: u16) {
        match self.slot(rtp_port) {
            Some(used) if *used => {
                *used = false;
                self.free.push_back(rtp_port);
            }
            _ => debug_assert!(
                false,
                "port {rtp_port} released twice or not from this pool"
            ),
        }
    }

    /// The in-use flag of the pair starting at `rtp_port`, if it is one of ours.
    fn slot(&mut self, rtp_port: u16) -> Option<&mut bool> {
        let offset = rtp_port.checked_sub(self.first)?;
        if offset % 2 != 0 {
            return None;
        }
        self.in_use.get_mut(usize::from(offset / 2))
    }
}

/// A UDP socket bound to `addr`, as `std::net::UdpSocket::bind` makes it
/// (`SOCK_CLOEXEC`, no `IPV6_V6ONLY`, so an IPv6 one follows
/// `net.ipv6.bindv6only` just the same) but created non-blocking (the
/// runtime needs it so, and asking for it in `socket(2)` saves setting it
/// with another system call for every media port) and with receive
/// timestamps on; with `freebind`, bound whether or not the address is
/// local yet.
pub(crate) fn bind_nonblocking(addr: SocketAddr, freebind: bool) -> std::io::Result<UdpSocket> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = match addr {
        SocketAddr::V4(a) => {
            let fd = socket(AddressFamily::Inet, SockType::Datagram, flags, None)?;
            if freebind {
                setsockopt(&fd, sockopt::IpFreebind, &true)?;
            }
            bind(fd.as_raw_fd(), &SockaddrIn::from(a))?;
            fd
        }
        SocketAddr::V6(a) => {
            let fd = socket(AddressFamily::Inet6, SockType::Datagram, flags, None)?;
            if freebind {
                set_ipv6_freebind(&fd)?;
            }
            bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?;
            fd
        }
    };
    // Every datagram carries its kernel receive time, for RTP jitter (as
    // rtpengine's media sockets do).
    setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
    Ok(UdpSocket::from(fd))
}

/// IPV6_FREEBIND (Linux 4.15; nix has no option for it).
fn set_ipv6_freebind(fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_FREEBIND,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn pairs_are_even_odd_and_within_range() {
        let mut pool = PortPool::new(LO, 41001, 41010).unwrap();
        // 41002, 41004, 41006, 41008 (41010 has no 41011 within range)
        assert_eq!(pool.free(), 4);
        let p = pool.allocate().unwrap();
        assert_eq!(p.rtp_port, 41002);
        assert_eq!(p.rtp.local_addr().unwrap().port(), 41002);
        assert_eq!(p.rtcp.local_addr().unwrap().port(), 41003);
        assert_eq!(pool.used(), 1);
    }

    #[test]
    fn sockets_are_non_blocking_close_on_exec_and_bound_as_announced() {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
        let mut pool = PortPool::new(LO, 41090, 41091).unwrap();
        let p = pool.allocate().unwrap();
        for (socket, local) in [(&p.rtp, p.rtp_local()), (&p.rtcp, p.rtcp_local())] {
            assert_eq!(socket.local_addr().unwrap(), local);
            let status = OFlag::from_bits_retain(fcntl(socket, FcntlArg::F_GETFL).unwrap());
            assert!(status.contains(OFlag::O_NONBLOCK));
            let fd = FdFlag::from_bits_retain(fcntl(socket, FcntlArg::F_GETFD).unwrap());
            assert!(fd.contains(FdFlag::FD_CLOEXEC));
        }
    }

    #[test]
    fn ipv6_sockets_are_dual_stack_exactly_when_std_ones_are() {
        use nix::sys::socket::{getsockopt, sockopt::Ipv6V6Only};
        let any = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
        let Ok(reference) = UdpSocket::bind((any, 0)) else {
            eprintln!("SKIPPED: no IPv6 here");
            return;
        };
        let mut pool = PortPool::new(any, 41094, 41095).unwrap();
        let p = pool.allocate().unwrap();
        assert_eq!(p.rtp_local(), SocketAddr::new(any, 41094));
        assert_eq!(
            getsockopt(&p.rtp, Ipv6V6Only).unwrap(),
            getsockopt(&reference, Ipv6V6Only).unwrap()
        );
    }

    #[test]
    fn exhaustion_is_ran_out_of_ports_and_release_reuses_last() {
        let mut pool = PortPool::new(LO, 41020, 41025).unwrap();
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        let c = pool.allocate().unwrap();
        assert_eq!(pool.allocate().unwrap_err(), PortError::RanOutOfPorts);
        assert_eq!(pool.allocate().unwrap_err().to_string(), "Ran out of ports");
        let released = a.rtp_port;
        drop(a);
        pool.release(released);
        assert_eq!(pool.allocate().unwrap().rtp_port, released);
        drop((b, c));
    }

    #[test]
    fn no_double_allocation() {
        let mut pool = PortPool::new(LO, 41030, 41049).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut held = Vec::new();
        while let Ok(p) = pool.allocate() {
            assert!(
                seen.insert(p.rtp_port),
                "port {} handed out twice",
                p.rtp_port
            );
            held.push(p);
        }
        assert_eq!(held.len(), 10);
        assert_eq!(pool.free(), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "released twice")]
    fn double_release_is_caught() {
        let mut pool = PortPool::new(LO, 41080, 41083).unwrap();
        let p = pool.allocate().unwrap();
        pool.release(p.rtp_port);
        pool.release(p.rtp_port);
    }

    #[test]
    fn busy_ports_are_skipped() {
        let squatter = UdpSocket::bind((LO, 41061)).unwrap(); // RTCP of the first pair
        let mut pool = PortPool::new(LO, 41060, 41063).unwrap();
        assert_eq!(pool.allocate().unwrap().rtp_port, 41062);
        assert_eq!(pool.allocate().unwrap_err(), PortError::RanOutOfPorts);
        drop(squatter);
    }

    #[test]
    fn a_freebind_pool_binds_an_address_that_is_not_local_yet() {
        // TEST-NET-1: on no interface here.
        let floating: IpAddr = "192.0.2.77".parse().unwrap();
        let mut plain = PortPool::new(floating, 41100, 41103).unwrap();
        assert!(plain.allocate().is_err());
        let mut pool = PortPool::new(floating, 41100, 41103)
            .unwrap()
            .with_freebind(true);
        let pair = pool.allocate().unwrap();
        assert_eq!(pair.rtp.local_addr().unwrap(), pair.rtp_local());
    }

    #[test]
    fn empty_ranges_are_refused() {
        assert!(matches!(
            PortPool::new(LO, 41071, 41071),
            Err(PortError::EmptyRange { .. })
        ));
        assert!(matches!(
            PortPool::new(LO, 65535, 65535),
            Err(PortError::EmptyRange { .. })
        ));
    }
}
