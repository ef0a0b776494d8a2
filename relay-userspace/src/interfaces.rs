//! Logical interfaces, rtpengine style: `--interface=[NAME/]ADDRESS[!ADVERTISED]`.
//!
//! NAME is what `direction=` refers to (default `default`), ADDRESS the local
//! address media sockets bind to (an IP, or a netdev name meaning its first
//! IPv4 address), ADVERTISED what goes into SDP (e.g. an EC2 Elastic IP in
//! front of the private ADDRESS). The XDP program is attached to the netdev
//! that owns ADDRESS.

use std::net::IpAddr;

/// One `--interface` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Logical name (`direction=` uses it).
    pub name: String,
    /// Address media sockets bind to.
    pub address: IpAddr,
    /// Address written into SDP.
    pub advertised: IpAddr,
}

/// A malformed or unresolvable `--interface`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterfaceError {
    /// Empty name or address part.
    #[error("bad --interface {0:?}: expected [NAME/]ADDRESS[!ADVERTISED]")]
    Syntax(String),
    /// ADDRESS is neither an IP nor a netdev with an IPv4 address.
    #[error("bad --interface {spec:?}: {what:?} is neither an IP address nor a network interface with an IPv4 address")]
    Unresolvable {
        /// The whole value.
        spec: String,
        /// The part that did not resolve.
        what: String,
    },
    /// ADVERTISED is not an IP address.
    #[error("bad --interface {spec:?}: advertised address {what:?} is not an IP address")]
    BadAdvertised {
        /// The whole value.
        spec: String,
        /// The advertised part.
        what: String,
    },
    /// Two interfaces with the same name.
    #[error("interface name {0:?} is given twice")]
    Duplicate(String),
}

impl InterfaceSpec {
    /// Parses one value, resolving netdev names in this network namespace.
    pub fn parse(spec: &str) -> Result<Self, InterfaceError> {
        let (name, rest) = match spec.split_once('/') {
            Some((name, rest)) if !name.is_empty() && !name.contains(':') => (name, rest),
            // "2001:db8::1/..." is not NAME/...: names never contain ':'.
            _ => ("default", spec),
        };
        let (addr_part, adv_part) = match rest.split_once('!') {
            Some((a, adv)) => (a, Some(adv)),
            None => (rest, None),
        };
        if addr_part.is_empty() || adv_part == Some("") {
            return Err(InterfaceError::Syntax(spec.to_owned()));
        }
        let address = match addr_part.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => netdev_ipv4(addr_part).ok_or_else(|| InterfaceError::Unresolvable {
                spec: spec.to_owned(),
                what: addr_part.to_owned(),
            })?,
        };
        let advertised = match adv_part {
            Some(adv) => adv.parse().map_err(|_| InterfaceError::BadAdvertised {
                spec: spec.to_owned(),
                what: adv.to_owned(),
            })?,
            None => address,
        };
        Ok(InterfaceSpec {
            name: name.to_owned(),
            address,
            advertised,
        })
    }
}

/// Checks that a name is not given twice for the same address family
/// (`pub/10.0.0.1` plus `pub/2001:db8::1` is rtpengine's dual-stack form).
pub fn check_unique(specs: &[InterfaceSpec]) -> Result<(), InterfaceError> {
    for (i, a) in specs.iter().enumerate() {
        let same =
            |b: &InterfaceSpec| b.name == a.name && b.address.is_ipv4() == a.address.is_ipv4();
        if specs[i + 1..].iter().any(same) {
            return Err(InterfaceError::Duplicate(a.name.clone()));
        }
    }
    Ok(())
}

/// The first (interface name, address) of this namespace matching `pick`.
fn find_ifaddr(mut pick: impl FnMut(&str, IpAddr) -> bool) -> Option<(String, IpAddr)> {
    crate::netdev::find_ifaddr(|name, ifa| {
        // SAFETY: getifaddrs' ifa_addr is null or a sockaddr of its family.
        let addr = unsafe { crate::netdev::socket_addr(ifa.ifa_addr) }?.ip();
        pick(name, addr).then(|| (name.to_owned(), addr))
    })
    .ok()
    .flatten()
}

/// The first IPv4 address of netdev `name`.
fn netdev_ipv4(name: &str) -> Option<IpAddr> {
    find_ifaddr(|n, a| n == name && a.is_ipv4()).map(|(_, a)| a)
}

/// The netdev that owns `address` (where the XDP program must go).
pub fn netdev_of(address: IpAddr) -> Option<String> {
    find_ifaddr(|_, a| a == address).map(|(n, _)| n)
}

/// The netdev of interface address `address`: the one that has it, or,
/// for the pair's `floating` address while it is elsewhere, the one it
/// will arrive on ([`netdev_of_subnet`]).
pub fn netdev_for(address: IpAddr, floating: Option<IpAddr>) -> Option<String> {
    netdev_of(address).or_else(|| {
        (floating == Some(address))
            .then(|| netdev_of_subnet(address))
            .flatten()
    })
}

/// The netdev with an address on the same subnet as `address` (which is
/// on none of them): where the floating address of an active/standby pair
/// arrives at a takeover, so where a standby attaches XDP before it has
/// it. On EC2 a secondary private IP is always in its ENI's subnet, as is
/// a VRRP address in keepalived's usual setup.
pub fn netdev_of_subnet(address: IpAddr) -> Option<String> {
    crate::netdev::find_ifaddr(|name, ifa| {
        // SAFETY: getifaddrs' ifa_addr and ifa_netmask are null or
        // sockaddrs of the entry's family.
        let (own, mask) = unsafe {
            (
                crate::netdev::socket_addr(ifa.ifa_addr)?.ip(),
                crate::netdev::socket_addr(ifa.ifa_netmask)?.ip(),
            )
        };
        (!own.is_loopback() && same_subnet(own, address, mask)).then(|| name.to_owned())
    })
    .ok()
    .flatten()
}

/// Whether `a` and `b` are on the subnet of netmask `mask` (all of one
/// family; a zero mask matches nothing).
fn same_subnet(a: IpAddr, b: IpAddr, mask: IpAddr) -> bool {
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let same_family = a.is_ipv4() == b.is_ipv4() && a.is_ipv4() == mask.is_ipv4();
    let m = bits(mask);
    same_family && m != 0 && bits(a) & m == bits(b) & m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        assert!(same_subnet(
            ip("10.0.1.5"),
            ip("10.0.1.200"),
            ip("255.255.255.0")
        ));
        assert!(!same_subnet(
            ip("10.0.1.5"),
            ip("10.0.2.200"),
            ip("255.255.255.0")
        ));
        assert!(!same_subnet(ip("10.0.1.5"), ip("10.0.1.6"), ip("0.0.0.0")));
        assert!(!same_subnet(
            ip("10.0.1.5"),
            ip("2001:db8::1"),
            ip("255.255.255.0")
        ));
        assert!(same_subnet(
            ip("2001:db8::1"),
            ip("2001:db8::99"),
            ip("ffff:ffff:ffff:ffff::")
        ));
    }

    #[test]
    fn forms() {
        let s = InterfaceSpec::parse("10.0.0.5").unwrap();
        assert_eq!(
            (s.name.as_str(), s.address, s.advertised),
            ("default", ip("10.0.0.5"), ip("10.0.0.5"))
        );
        let s = InterfaceSpec::parse("pub/10.0.0.5!203.0.113.7").unwrap();
        assert_eq!(
            (s.name.as_str(), s.address, s.advertised),
            ("pub", ip("10.0.0.5"), ip("203.0.113.7"))
        );
        let s = InterfaceSpec::parse("2001:db8::1").unwrap();
        assert_eq!((s.name.as_str(), s.address), ("default", ip("2001:db8::1")));
        let s = InterfaceSpec::parse("v6/2001:db8::1!2001:db8::99").unwrap();
        assert_eq!((s.name.as_str(), s.advertised), ("v6", ip("2001:db8::99")));
        let s = InterfaceSpec::parse("lo").unwrap();
        assert_eq!(s.address, ip("127.0.0.1"));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            InterfaceSpec::parse(""),
            Err(InterfaceError::Syntax(_))
        ));
        assert!(matches!(
            InterfaceSpec::parse("pub/"),
            Err(InterfaceError::Syntax(_))
        ));
        assert!(matches!(
            InterfaceSpec::parse("pub/10.0.0.1!"),
            Err(InterfaceError::Syntax(_))
        ));
        assert!(matches!(
            InterfaceSpec::parse("nosuchdev9"),
            Err(InterfaceError::Unresolvable { .. })
        ));
        assert!(matches!(
            InterfaceSpec::parse("10.0.0.1!elastic"),
            Err(InterfaceError::BadAdvertised { .. })
        ));
        let a = InterfaceSpec::parse("x/10.0.0.1").unwrap();
        assert_eq!(
            check_unique(&[a.clone(), a]),
            Err(InterfaceError::Duplicate("x".into()))
        );
    }

    #[test]
    fn loopback_owner() {
        assert_eq!(netdev_of(ip("127.0.0.1")).as_deref(), Some("lo"));
        assert_eq!(netdev_of(ip("192.0.2.123")), None);
    }
}
