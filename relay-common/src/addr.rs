//! Addresses as the ABI stores them: 16 bytes, IPv4 v4-mapped.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address in the 16-byte form used by every ABI struct (network order;
/// IPv4 as `::ffff:a.b.c.d`).
pub fn to_abi(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inverse of [`to_abi`]: v4-mapped addresses come back as IPv4.
pub fn from_abi(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Convenience for IPv4-only callers.
pub fn v4_to_abi(addr: Ipv4Addr) -> [u8; 16] {
    to_abi(IpAddr::V4(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trips_as_mapped() {
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b = to_abi(a);
        assert_eq!(&b[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&b[12..], &[192, 0, 2, 7]);
        assert_eq!(from_abi(b), a);
    }

    #[test]
    fn v6_round_trips_unchanged() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(from_abi(to_abi(a)), a);
    }
}
