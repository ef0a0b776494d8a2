//! Network interface facts relayd needs: index, name, MAC, driver and
//! statistics.
//!
//! Everything goes through sockets (ioctl, getifaddrs' netlink dump) rather
//! than /sys/class/net, because sysfs shows the network namespace it was
//! mounted in, not the one the calling thread is in.

use std::{
    ffi::{CStr, CString},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// Why an interface fact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// No interface of that name in this network namespace.
    #[error("no network interface named {0:?} here (see `ip link`)")]
    NoSuchInterface(String),
    /// A system call failed.
    #[error("{call} on {iface}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The interface.
        iface: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> Result<u32, NetdevError> {
    let c = CString::new(name).map_err(|_| NetdevError::NoSuchInterface(name.to_owned()))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(NetdevError::NoSuchInterface(name.to_owned()));
    }
    Ok(index)
}

fn sys_err(call: &'static str, iface: &str) -> NetdevError {
    NetdevError::Sys {
        call,
        iface: iface.to_owned(),
        source: std::io::Error::last_os_error(),
    }
}

/// A datagram socket to issue interface ioctls on (in this thread's netns).
fn ioctl_socket(iface: &str) -> Result<OwnedFd, NetdevError> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys_err("socket", iface));
    }
    // SAFETY: fd is a freshly created, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(iface: &str) -> Result<libc::ifreq, NetdevError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IF_NAMESIZE || bytes.contains(&0) {
        return Err(NetdevError::NoSuchInterface(iface.to_owned()));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// The interface's MTU (an ioctl in the calling thread's network namespace,
/// not sysfs, which may show another namespace's interfaces).
pub fn mtu(iface: &str) -> Result<u32, NetdevError> {
    let sock = ioctl_socket(iface)?;
    let mut req = ifreq_for(iface)?;
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu inside `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(sys_err("SIOCGIFMTU", iface));
    }
    // SAFETY: the ioctl succeeded, so the mtu member of the union is set.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// The interface's MAC address.
pub fn mac(iface: &str) -> Result<[u8; 6], NetdevError> {
    let sock = ioctl_socket(iface)?;
    let mut req = ifreq_for(iface)?;
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr inside `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
        return Err(sys_err("SIOCGIFHWADDR", iface));
    }
    // SAFETY: the ioctl succeeded, so the hwaddr member of the union is set.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// Walks this namespace's interface addresses (getifaddrs: a netlink dump
/// in the calling thread's network namespace) and returns the first answer
/// `pick` gives for an (interface name, entry).
pub(crate) fn find_ifaddr<T>(
    mut pick: impl FnMut(&str, &libc::ifaddrs) -> Option<T>,
) -> std::io::Result<Option<T>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() && found.is_none() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
        found = pick(&name, ifa);
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// The IPv4/IPv6 socket address a `sockaddr` holds; None for other families.
///
/// # Safety
/// `sa` must be null or point at a sockaddr whose family says what it is
/// (a `sockaddr_in` for AF_INET, a `sockaddr_in6` for AF_INET6), such as a
/// `sockaddr_storage` or getifaddrs' `ifa_addr`.
pub(crate) unsafe fn socket_addr(sa: *const libc::sockaddr) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller promises a sockaddr.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Index of `tx_dropped` in `struct rtnl_link_stats` (linux/if_link.h).
const RTNL_TX_DROPPED: usize = 7;

/// The interface's `tx_dropped` counter (from the kernel's link statistics).
pub fn tx_dropped(iface: &str) -> Result<u64, NetdevError> {
    let found = find_ifaddr(|name, ifa| {
        // SAFETY: a non-null ifa_addr points at a sockaddr.
        let is_link = !ifa.ifa_addr.is_null()
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_PACKET;
        if !is_link || name != iface || ifa.ifa_data.is_null() {
            return None;
        }
        // SAFETY: for AF_PACKET entries ifa_data points at a struct
        // rtnl_link_stats: 23 u32 counters, of which we read the first 8.
        let stats = unsafe { std::slice::from_raw_parts(ifa.ifa_data as *const u32, 8) };
        Some(u64::from(stats[RTNL_TX_DROPPED]))
    })
    .map_err(|source| NetdevError::Sys {
        call: "getifaddrs",
        iface: iface.to_owned(),
        source,
    })?;
    found.ok_or_else(|| NetdevError::NoSuchInterface(iface.to_owned()))
}

/// Whether IPv4 forwarding is on for `iface`.
///
/// XDP's `bpf_fib_lookup` answers "forwarding disabled" for packets that
/// arrive on an interface without it, so the fast path needs it on.
/// /proc/sys/net shows the calling thread's network namespace.
pub fn ipv4_forwarding(iface: &str) -> Result<bool, NetdevError> {
    read_flag(
        &format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"),
        iface,
    )
}

/// Turns IPv4 forwarding on for `iface`.
pub fn enable_ipv4_forwarding(iface: &str) -> Result<(), NetdevError> {
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"),
        iface,
        "1",
    )
}

/// Whether IPv6 forwarding is on for `iface`; None when the interface has
/// no IPv6 (disabled, or no IPv6 in the kernel). The IPv6 FIB lookup checks
/// the ingress interface's flag, for IPv6 and for IPv4 bridged to IPv6.
/// Unlike `all.forwarding`, the per-interface flag does not make the host
/// route IPv6 between interfaces.
pub fn ipv6_forwarding(iface: &str) -> Result<Option<bool>, NetdevError> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/forwarding");
    if !std::path::Path::new(&path).exists() {
        return Ok(None);
    }
    read_flag(&path, iface).map(Some)
}

/// Turns IPv6 forwarding on for `iface`. An interface with forwarding on
/// ignores router advertisements unless `accept_ra` is 2, so an
/// `accept_ra` of 1 (the host default: the default route comes from RAs,
/// as on EC2) is raised to 2. Returns whether accept_ra was changed.
pub fn enable_ipv6_forwarding(iface: &str) -> Result<bool, NetdevError> {
    let ra = format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra");
    let raised = std::fs::read_to_string(&ra).is_ok_and(|v| v.trim() == "1");
    if raised {
        write_sysctl(&ra, iface, "2")?;
    }
    write_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"),
        iface,
        "1",
    )?;
    Ok(raised)
}

fn read_flag(path: &str, iface: &str) -> Result<bool, NetdevError> {
    let text = std::fs::read_to_string(path).map_err(|source| NetdevError::Sys {
        call: "reading a sysctl",
        iface: iface.to_owned(),
        source,
    })?;
    Ok(text.trim() == "1")
}

fn write_sysctl(path: &str, iface: &str, value: &str) -> Result<(), NetdevError> {
    std::fs::write(path, value).map_err(|source| NetdevError::Sys {
        call: "writing a sysctl",
        iface: iface.to_owned(),
        source,
    })
}

/// Makes sure the kernel never picks a port of `min..=max` as the source
/// port of an outgoing connection (DNS queries, HTTP clients, ...): with the
/// DoS shield dropping stream-less packets to the media range, the replies
/// to such a connection would be dropped. Adds the range to
/// `net.ipv4.ip_local_reserved_ports` (which also covers IPv6) when the
/// ephemeral range overlaps it. Returns whether anything was changed.
pub fn reserve_local_ports(min: u16, max: u16) -> Result<bool, NetdevError> {
    let sys = |call: &'static str, source: std::io::Error| NetdevError::Sys {
        call,
        iface: "-".into(),
        source,
    };
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map_err(|e| sys("reading ip_local_port_range", e))?;
    let mut bounds = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    let (Some(lo), Some(hi)) = (bounds.next(), bounds.next()) else {
        return Ok(false);
    };
    if hi < min || lo > max {
        return Ok(false);
    }
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let reserved =
        std::fs::read_to_string(path).map_err(|e| sys("reading ip_local_reserved_ports", e))?;
    let covered = reserved
        .trim()
        .split(',')
        .filter(|r| !r.is_empty())
        .any(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            a.trim().parse::<u16>().is_ok_and(|a| a <= min)
                && b.trim().parse::<u16>().is_ok_and(|b| b >= max)
        });
    if covered {
        return Ok(false);
    }
    let mut list = reserved.trim().to_owned();
    if !list.is_empty() {
        list.push(',');
    }
    list.push_str(&format!("{min}-{max}"));
    std::fs::write(path, list).map_err(|e| sys("writing ip_local_reserved_ports", e))?;
    Ok(true)
}

/// Undoes [`reserve_local_ports`] (`relayd cleanup`): removes the range
/// `min-max` from `net.ipv4.ip_local_reserved_ports` when it is there as
/// relayd wrote it. Returns whether anything was changed.
pub fn release_local_ports(min: u16, max: u16) -> Result<bool, NetdevError> {
    let path = "/proc/sys/net/ipv4/ip_local_reserved_ports";
    let sys = |call: &'static str, source: std::io::Error| NetdevError::Sys {
        call,
        iface: "-".into(),
        source,
    };
    let reserved =
        std::fs::read_to_string(path).map_err(|e| sys("reading ip_local_reserved_ports", e))?;
    let ours = format!("{min}-{max}");
    let ranges: Vec<&str> = reserved
        .trim()
        .split(',')
        .filter(|r| !r.is_empty())
        .collect();
    let kept: Vec<&str> = ranges.iter().copied().filter(|r| *r != ours).collect();
    if kept.len() == ranges.len() {
        return Ok(false);
    }
    // An empty write is not accepted as "none"; a newline is.
    let text = if kept.is_empty() {
        "\n".to_owned()
    } else {
        kept.join(",")
    };
    std::fs::write(path, text).map_err(|e| sys("writing ip_local_reserved_ports", e))?;
    Ok(true)
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// `struct ethtool_drvinfo`: size and the offset relayd reads.
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 180;

fn ethtool(iface: &str, buf: &mut [u64]) -> Result<(), NetdevError> {
    let sock = ioctl_socket(iface)?;
    let mut req = ifreq_for(iface)?;
    req.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: SIOCETHTOOL reads the command at the start of `buf` and writes
    // the command's answer into it; callers size `buf` for the largest
    // answer the driver can give (see ethtool_stats).
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) } < 0 {
        return Err(sys_err("SIOCETHTOOL", iface));
    }
    Ok(())
}

fn as_bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(buf);
    // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len) }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Number of ethtool statistics of the driver.
fn drvinfo(iface: &str) -> Result<usize, NetdevError> {
    let mut buf = vec![0u64; DRVINFO_LEN.div_ceil(8)];
    as_bytes_mut(&mut buf)[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ethtool(iface, &mut buf)?;
    Ok(u32_at(as_bytes_mut(&mut buf), DRVINFO_N_STATS) as usize)
}

/// Every driver statistic `ethtool -S` shows, by name.
pub fn ethtool_stats(iface: &str) -> Result<Vec<(String, u64)>, NetdevError> {
    let n = drvinfo(iface)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    // The kernel fills in as many entries as the driver has *now*, ignoring
    // the count passed in; a driver whose statistics grow between the calls
    // (channels changed) would write past a buffer sized for `n`. Leave
    // generous room and refuse an answer that does not fit or disagrees.
    let room = 2 * n + 64;
    let mut names = vec![0u64; (12 + room * ETH_GSTRING_LEN).div_ceil(8)];
    {
        let b = as_bytes_mut(&mut names);
        b[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        b[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        b[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
    }
    ethtool(iface, &mut names)?;
    let mut values = vec![0u64; 1 + room];
    {
        let b = as_bytes_mut(&mut values);
        b[0..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
        b[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
    }
    ethtool(iface, &mut values)?;
    let changed = |what: &'static str| NetdevError::Sys {
        call: what,
        iface: iface.to_owned(),
        source: std::io::Error::other("the driver's statistics changed while being read"),
    };
    if u32_at(as_bytes_mut(&mut names), 8) as usize != n {
        return Err(changed("ETHTOOL_GSTRINGS"));
    }
    if u32_at(as_bytes_mut(&mut values), 4) as usize != n {
        return Err(changed("ETHTOOL_GSTATS"));
    }
    let name_bytes = as_bytes_mut(&mut names);
    let out = (0..n)
        .map(|i| {
            let raw = &name_bytes[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            (
                String::from_utf8_lossy(&raw[..end]).into_owned(),
                values[1 + i],
            )
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_known() {
        ifindex("lo").expect("lo exists in every namespace");
        assert_eq!(mac("lo").unwrap(), [0; 6]);
        tx_dropped("lo").expect("lo has link stats");
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let err = ifindex("nope-not-here").unwrap_err();
        assert!(err.to_string().contains("nope-not-here"), "{err}");
        assert!(tx_dropped("nope-not-here").is_err());
        assert!(mac("nope-not-here").is_err());
    }
}
