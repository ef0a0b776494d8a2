//! Who may send NG commands (`--ng-allow`): a list of address prefixes.
//! rtpengine has no such list and leaves NG to the firewall; a relay whose
//! NG port faces the Internet (`--listen-ng` on a public address) takes
//! commands from anyone, who can then open and tear down calls. With a list,
//! a datagram from elsewhere is dropped unanswered before it costs any work
//! and counted (`xrelay_ng_shed_requests{reason="not_allowed"}`).

use std::net::IpAddr;

/// One `ADDRESS[/LEN]` prefix. IPv4 prefixes also match IPv4-mapped IPv6
/// sources (a dual-stack socket sees IPv4 senders that way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    /// Not `ADDRESS` or `ADDRESS/LEN`.
    #[error("{0:?} is not an address or ADDRESS/LEN prefix")]
    Syntax(String),
    /// LEN beyond the family's bits.
    #[error("{0:?}: the prefix length is longer than the address")]
    Length(String),
}

impl Prefix {
    /// Parses `ADDRESS` (a single host) or `ADDRESS/LEN`.
    pub fn parse(text: &str) -> Result<Self, PrefixError> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| PrefixError::Syntax(text.to_owned()))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .map_err(|_| PrefixError::Syntax(text.to_owned()))?,
            None => bits,
        };
        if len > bits {
            return Err(PrefixError::Length(text.to_owned()));
        }
        Ok(Prefix { addr, len })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.len,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.len)
            }
            _ => false,
        }
    }
}

/// Whether the first `len` of `bits` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, bits: u8, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let shift = u32::from(bits - len);
    (a >> shift) == (b >> shift)
}

/// The allow-list; empty allows everyone (rtpengine's behaviour).
#[derive(Clone, Debug, Default)]
pub struct NgAllow(Vec<Prefix>);

impl NgAllow {
    /// From the prefixes given.
    pub fn new(prefixes: Vec<Prefix>) -> Self {
        NgAllow(prefixes)
    }

    /// Whether a command from `ip` is taken.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_match_what_they_cover() {
        let p = Prefix::parse("10.20.0.0/16").unwrap();
        assert!(p.contains(ip("10.20.255.1")));
        assert!(!p.contains(ip("10.21.0.1")));
        assert!(p.contains(ip("::ffff:10.20.3.4")), "IPv4-mapped sender");
        assert!(!p.contains(ip("2001:db8::1")));
        let host = Prefix::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6 = Prefix::parse("2001:db8:1::/48").unwrap();
        assert!(v6.contains(ip("2001:db8:1:ffff::9")));
        assert!(!v6.contains(ip("2001:db8:2::9")));
        assert!(Prefix::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        assert!(Prefix::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert_eq!(
            Prefix::parse("10.0.0.0/33"),
            Err(PrefixError::Length("10.0.0.0/33".into()))
        );
        assert!(matches!(Prefix::parse("nope"), Err(PrefixError::Syntax(_))));
        assert!(matches!(
            Prefix::parse("10.0.0.0/x"),
            Err(PrefixError::Syntax(_))
        ));
        assert!(Prefix::parse("2001:db8::/129").is_err());
    }

    #[test]
    fn an_empty_list_allows_everyone() {
        assert!(NgAllow::default().allows(ip("203.0.113.1")));
        let list = NgAllow::new(vec![Prefix::parse("127.0.0.2").unwrap()]);
        assert!(list.allows(ip("127.0.0.2")));
        assert!(!list.allows(ip("127.0.0.66")));
    }
}
