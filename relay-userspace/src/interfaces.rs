//! Logical interfaces, rtpengine style: `--interface=[NAME/]ADDRESS[!ADVERTISED]`
//! and `--interface=ALIAS=NAME`.
//!
//! NAME is what `direction=` refers to (default `default`), ADDRESS the local
//! address media sockets bind to (an IP, or a netdev name meaning its first
//! IPv4 address), ADVERTISED what goes into SDP (e.g. an EC2 Elastic IP in
//! front of the private ADDRESS). The XDP program is attached to the netdev
//! that owns ADDRESS.
//!
//! As in rtpengine, a NAME may be given several times: its addresses form
//! one logical interface, the first of each family being the one media
//! uses (rtpengine offers the others only as ICE candidates). A NAME of
//! the form `BASE:SUFFIX` also belongs to the round-robin group BASE:
//! `direction=BASE` picks one of the group's interfaces in turn. An ALIAS
//! (a later rtpengine's syntax) is another name for interface NAME.

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
    /// An alias given twice.
    #[error("interface alias {0:?} is given twice")]
    Duplicate(String),
    /// `ALIAS=NAME` where no `--interface` has NAME.
    #[error("bad --interface {spec:?}: alias {alias:?} refers to {name:?}, which is not the NAME of any --interface=NAME/ADDRESS")]
    UnknownAliasTarget {
        /// The whole value.
        spec: String,
        /// The alias.
        alias: String,
        /// The name it refers to.
        name: String,
    },
    /// `ALIAS=NAME` where ALIAS is already an interface's name or a
    /// round-robin group's BASE.
    #[error("bad --interface {spec:?}: alias {alias:?} is already the name of an interface or of a BASE:SUFFIX round-robin group")]
    AliasClash {
        /// The whole value.
        spec: String,
        /// The alias.
        alias: String,
    },
}

/// `--interface=ALIAS=NAME`: `direction=ALIAS` means interface NAME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceAlias {
    /// The other name.
    pub alias: String,
    /// The interface it stands for.
    pub name: String,
}

/// The `direction` keyword rtpengine keeps for a round-robin over every
/// interface (of the family asked for).
pub const ROUND_ROBIN_ALL: &str = "round-robin-calls";

/// The round-robin group a name belongs to: BASE of `BASE:SUFFIX`, else
/// the name itself.
pub fn round_robin_base(name: &str) -> &str {
    name.split_once(':').map_or(name, |(base, _)| base)
}

/// Every `--interface` value: the addresses (in order) and the aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceSet {
    /// `[NAME/]ADDRESS[!ADVERTISED]` values, in the order given.
    pub specs: Vec<InterfaceSpec>,
    /// `ALIAS=NAME` values.
    pub aliases: Vec<InterfaceAlias>,
}

impl InterfaceSet {
    /// Parses and checks every value: an alias must name an interface
    /// given with an address (before or after it) and must not be a name
    /// in use.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, InterfaceError> {
        let mut set = InterfaceSet::default();
        let mut alias_values = Vec::new();
        for value in values {
            let value = value.as_ref();
            match split_alias(value) {
                Some((alias, name)) => {
                    if alias.is_empty() || name.is_empty() || name.contains('/') {
                        return Err(InterfaceError::Syntax(value.to_owned()));
                    }
                    alias_values.push((value, alias, name));
                }
                None => set.specs.push(InterfaceSpec::parse(value)?),
            }
        }
        for (value, alias, name) in alias_values {
            let clash = alias == ROUND_ROBIN_ALL
                || set
                    .specs
                    .iter()
                    .any(|s| s.name == alias || round_robin_base(&s.name) == alias);
            if clash {
                return Err(InterfaceError::AliasClash {
                    spec: value.to_owned(),
                    alias: alias.to_owned(),
                });
            }
            if set.aliases.iter().any(|a| a.alias == alias) {
                return Err(InterfaceError::Duplicate(alias.to_owned()));
            }
            if !set.specs.iter().any(|s| s.name == name) {
                return Err(InterfaceError::UnknownAliasTarget {
                    spec: value.to_owned(),
                    alias: alias.to_owned(),
                    name: name.to_owned(),
                });
            }
            set.aliases.push(InterfaceAlias {
                alias: alias.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(set)
    }
}

/// The distinct addresses of `specs`: each has a row in the kernel's
/// stream table.
pub fn distinct_addresses(specs: &[InterfaceSpec]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for spec in specs {
        if !out.contains(&spec.address) {
            out.push(spec.address);
        }
    }
    out
}

/// The distinct addresses media ports are opened on: the first of each
/// name and family (the others would serve only as ICE candidates, which
/// relayd does not generate, so they never get a port).
pub fn media_addresses(specs: &[InterfaceSpec]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let first = !specs[..i]
            .iter()
            .any(|s| s.name == spec.name && s.address.is_ipv4() == spec.address.is_ipv4());
        if first && !out.contains(&spec.address) {
            out.push(spec.address);
        }
    }
    out
}

/// `ALIAS=NAME` split in two, or None for an address value (whose first
/// `/` or `=` is a `/`, or which has neither).
fn split_alias(value: &str) -> Option<(&str, &str)> {
    let at = value.find(['/', '='])?;
    (value.as_bytes()[at] == b'=').then(|| (&value[..at], &value[at + 1..]))
}

impl InterfaceSpec {
    /// Parses one value, resolving netdev names in this network namespace.
    pub fn parse(spec: &str) -> Result<Self, InterfaceError> {
        let (name, rest) = match spec.split_once('/') {
            // "2001:db8::1/..." is not NAME/...; "pub:1/..." is.
            Some((name, rest))
                if !name.is_empty() && name.parse::<std::net::Ipv6Addr>().is_err() =>
            {
                (name, rest)
            }
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
    }

    #[test]
    fn several_addresses_per_name() {
        // rtpengine: "name default given twice" is no error; both are
        // addresses of one logical interface.
        let set =
            InterfaceSet::parse(&["10.0.0.1", "10.0.0.2", "x/10.0.0.3", "x/10.0.0.4"]).unwrap();
        let names: Vec<_> = set.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["default", "default", "x", "x"]);
        assert!(set.aliases.is_empty());
    }

    #[test]
    fn addresses_counted_once() {
        let set = InterfaceSet::parse(&[
            "a/10.0.0.1",
            "a/10.0.0.2",
            "a/2001:db8::1",
            "b/10.0.0.1",
            "c:1/10.0.0.3",
            "c:2/10.0.0.4",
            "x=a",
        ])
        .unwrap();
        assert_eq!(distinct_addresses(&set.specs).len(), 5);
        // 10.0.0.2, a's second IPv4 address, never gets a port.
        assert_eq!(
            media_addresses(&set.specs),
            [
                ip("10.0.0.1"),
                ip("2001:db8::1"),
                ip("10.0.0.3"),
                ip("10.0.0.4")
            ]
        );
    }

    #[test]
    fn round_robin_names() {
        let s = InterfaceSpec::parse("pub:1/10.0.0.5!203.0.113.7").unwrap();
        assert_eq!((s.name.as_str(), s.address), ("pub:1", ip("10.0.0.5")));
        assert_eq!(round_robin_base(&s.name), "pub");
        assert_eq!(round_robin_base("priv"), "priv");
        let s = InterfaceSpec::parse("pub:2/2001:db8::1").unwrap();
        assert_eq!((s.name.as_str(), s.address), ("pub:2", ip("2001:db8::1")));
        // Any NAME but an IPv6 address, as before.
        let s = InterfaceSpec::parse("10.0.0.1/10.0.0.2").unwrap();
        assert_eq!((s.name.as_str(), s.address), ("10.0.0.1", ip("10.0.0.2")));
    }

    #[test]
    fn aliases() {
        // rtpengine's ALIAS=NAME, the alias before or after its interface.
        let set = InterfaceSet::parse(&["ext=pub1", "pub1/10.0.0.1", "int=priv", "priv/10.0.0.2"])
            .unwrap();
        assert_eq!(set.specs.len(), 2);
        assert_eq!(
            set.aliases,
            [
                InterfaceAlias {
                    alias: "ext".into(),
                    name: "pub1".into()
                },
                InterfaceAlias {
                    alias: "int".into(),
                    name: "priv".into()
                }
            ]
        );
        // An alias of a BASE:SUFFIX interface's full name.
        assert!(InterfaceSet::parse(&["pub:1/10.0.0.1", "one=pub:1"]).is_ok());
    }

    #[test]
    fn bad_aliases() {
        let err = InterfaceSet::parse(&["pub/10.0.0.1", "ext=nope"]).unwrap_err();
        assert_eq!(
            err,
            InterfaceError::UnknownAliasTarget {
                spec: "ext=nope".into(),
                alias: "ext".into(),
                name: "nope".into()
            }
        );
        assert!(err.to_string().contains("not the NAME of any --interface"));
        for clash in ["pub=priv", "rr=pub", "round-robin-calls=pub", "default=pub"] {
            let err = InterfaceSet::parse(&[
                "pub/10.0.0.1",
                "priv/10.0.0.2",
                "rr:1/10.0.0.3",
                "10.0.0.4",
                clash,
            ])
            .unwrap_err();
            assert!(
                matches!(err, InterfaceError::AliasClash { .. }),
                "{clash}: {err}"
            );
        }
        assert_eq!(
            InterfaceSet::parse(&["pub/10.0.0.1", "a=pub", "a=pub"]),
            Err(InterfaceError::Duplicate("a".into()))
        );
        for bad in ["=pub", "a=", "a=pub/10.0.0.1"] {
            assert!(matches!(
                InterfaceSet::parse(&["pub/10.0.0.1", bad]),
                Err(InterfaceError::Syntax(_))
            ));
        }
    }

    #[test]
    fn loopback_owner() {
        assert_eq!(netdev_of(ip("127.0.0.1")).as_deref(), Some("lo"));
        assert_eq!(netdev_of(ip("192.0.2.123")), None);
    }
}
