//! The three-namespace topology most tests use:
//!
//! ```text
//!  ns A                 ns R (relay)                  ns B
//!  a0 10.20.1.2/24 ---- a1 10.20.1.1/24
//!                       b1 10.20.2.1/24 ---- b0 10.20.2.2/24
//! ```
//!
//! The relay knows both hosts' MACs statically, so the first packet does not
//! depend on ARP timing. Host A keeps the veth's default transmit offloads,
//! so its UDP leaves with a partial checksum (CHECKSUM_PARTIAL: the field
//! holds only the pseudo-header sum), as a container on the relay's host
//! sends it; host B computes full checksums, as a host on a wire does. So
//! every test's media carries both forms, one each way
//! ([`Topology::with_offloads`] picks others). [`Topology::add_ipv6`] puts IPv6 on the same links
//! (`2001:db8:20:1::/64` on A's side, `2001:db8:20:2::/64` on B's).

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::netns::{veth, Netns};

/// Host A's address.
pub const HOST_A: &str = "10.20.1.2";
/// Relay address on A's side.
pub const RELAY_A: &str = "10.20.1.1";
/// Relay address on B's side.
pub const RELAY_B: &str = "10.20.2.1";
/// Host B's address.
pub const HOST_B: &str = "10.20.2.2";

/// Host A's IPv6 address.
pub const HOST_A6: &str = "2001:db8:20:1::2";
/// Relay IPv6 address on A's side.
pub const RELAY_A6: &str = "2001:db8:20:1::1";
/// Relay IPv6 address on B's side.
pub const RELAY_B6: &str = "2001:db8:20:2::1";
/// Host B's IPv6 address.
pub const HOST_B6: &str = "2001:db8:20:2::2";

const MAC_A0: &str = "02:00:00:20:01:02";
const MAC_A1: &str = "02:00:00:20:01:01";
const MAC_B1: &str = "02:00:00:20:02:01";
const MAC_B0: &str = "02:00:00:20:02:02";

/// Transmit checksum offload on the hosts' veths (a0, b0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOffloads {
    /// A keeps the defaults (partial UDP checksums), B turns transmit
    /// checksum offload off (full checksums): what [`Topology::new`] builds.
    Mixed,
    /// Both keep the defaults: partial checksums both ways.
    Default,
}

/// Namespaces of the topology (deleted on drop, taking the veths along).
#[derive(Debug)]
pub struct Topology {
    /// Host A.
    pub a: Netns,
    /// The relay.
    pub r: Netns,
    /// Host B.
    pub b: Netns,
}

impl Topology {
    /// Builds it with [`HostOffloads::Mixed`]; `tag` goes into the
    /// namespace names.
    pub fn new(tag: &str) -> Result<Self> {
        Self::with_offloads(tag, HostOffloads::Mixed)
    }

    /// Builds it with the hosts' transmit offloads as `offloads` says.
    pub fn with_offloads(tag: &str, offloads: HostOffloads) -> Result<Self> {
        let t = Topology {
            a: Netns::new(&format!("{tag}a"))?,
            r: Netns::new(&format!("{tag}r"))?,
            b: Netns::new(&format!("{tag}b"))?,
        };
        veth(
            t.a.end("a0", "10.20.1.2/24", MAC_A0),
            t.r.end("a1", "10.20.1.1/24", MAC_A1),
        )?;
        veth(
            t.r.end("b1", "10.20.2.1/24", MAC_B1),
            t.b.end("b0", "10.20.2.2/24", MAC_B0),
        )?;
        // A veth sender with default offloads leaves a partial UDP
        // checksum for "hardware" to complete; only an skb path completes
        // it, so the relay's XDP program must (udp_csum.h). Hosts on a wire
        // send full ones: B does, unless both keep the defaults.
        if offloads == HostOffloads::Mixed {
            t.b.ethtool_offload_off("b0")?;
        }
        t.r.static_neighbour(HOST_A, MAC_A0, "a1")?;
        t.r.static_neighbour(HOST_B, MAC_B0, "b1")?;
        Ok(t)
    }

    /// Deletes the A link (a0/a1) and creates it again as it was: what a
    /// relay sees when its netdev is recreated (the same name, a new
    /// ifindex). A's offloads stay at their defaults.
    pub fn recreate_a_link(&self) -> Result<()> {
        self.r.ip(&["link", "del", "a1"])?;
        veth(
            self.a.end("a0", "10.20.1.2/24", MAC_A0),
            self.r.end("a1", "10.20.1.1/24", MAC_A1),
        )?;
        self.r.static_neighbour(HOST_A, MAC_A0, "a1")
    }

    /// Adds the IPv6 addresses (`nodad`: usable at once, no duplicate
    /// address detection delay) and the relay's static IPv6 neighbours.
    pub fn add_ipv6(&self) -> Result<()> {
        for (ns, addr, dev) in [
            (&self.a, HOST_A6, "a0"),
            (&self.r, RELAY_A6, "a1"),
            (&self.r, RELAY_B6, "b1"),
            (&self.b, HOST_B6, "b0"),
        ] {
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
        }
        for (addr, mac, dev) in [(HOST_A6, MAC_A0, "a1"), (HOST_B6, MAC_B0, "b1")] {
            self.r.static_neighbour(addr, mac, dev)?;
        }
        Ok(())
    }
}

/// UDP datagrams `ns`'s stack dropped for a bad checksum:
/// `Udp: InCsumErrors` of /proc/net/snmp plus `Udp6InCsumErrors` of
/// /proc/net/snmp6 (read on a thread inside the namespace).
pub fn udp_in_csum_errors(ns: &Netns) -> Result<u64> {
    let (snmp, snmp6) = ns.run(|| {
        (
            std::fs::read_to_string("/proc/thread-self/net/snmp"),
            std::fs::read_to_string("/proc/thread-self/net/snmp6"),
        )
    })?;
    let snmp = snmp.context("/proc/net/snmp")?;
    // Two "Udp:" lines: the field names, then the values.
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next(), udp.next());
    let (Some(names), Some(values)) = (names, values) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    let v4 = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .context("Udp InCsumErrors")?
        .1
        .parse::<u64>()?;
    let v6 = snmp6
        .context("/proc/net/snmp6")?
        .lines()
        .find_map(|l| l.strip_prefix("Udp6InCsumErrors"))
        .context("Udp6InCsumErrors")?
        .trim()
        .parse::<u64>()?;
    Ok(v4 + v6)
}

/// Whether `iface` in `ns` has transmit checksum offload on (`ethtool -k`).
pub fn tx_checksum_offload(ns: &Netns, iface: &str) -> Result<bool> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "ethtool", "-k", iface])
        .output()
        .context("ethtool -k")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("tx-checksumming:"))
        .with_context(|| format!("ethtool -k {iface}: {text}"))?;
    Ok(line.contains(": on"))
}

/// A UDP socket bound in `ns` at `addr`, with a receive timeout.
pub fn bind_udp(ns: &Netns, addr: &str) -> Result<UdpSocket> {
    let addr: SocketAddr = addr.parse()?;
    let sock = ns.run(move || UdpSocket::bind(addr))??;
    sock.set_read_timeout(Some(Duration::from_millis(1500)))?;
    Ok(sock)
}

/// Sends `count` numbered datagrams from `from` to `to` and returns what
/// `rx` received: (source address, payload) per datagram, in order. Stops at
/// the first receive timeout, so a lossy path returns fewer.
pub fn exchange(
    from: &UdpSocket,
    to: &str,
    rx: &UdpSocket,
    count: usize,
) -> Result<Vec<(SocketAddr, Vec<u8>)>> {
    let payloads = (0..count).map(|i| format!("xrelay test datagram {i:04}").into_bytes());
    exchange_payloads(from, to, rx, payloads, std::time::Duration::ZERO)
}

/// Sends each of `payloads` from `from` to `to`, `gap` apart, and receives
/// each on `rx` before the next goes; stops at the first one that does not
/// arrive (receive timeout). Returns (source, payload) per arrival.
pub fn exchange_payloads(
    from: &UdpSocket,
    to: &str,
    rx: &UdpSocket,
    payloads: impl IntoIterator<Item = Vec<u8>>,
    gap: std::time::Duration,
) -> Result<Vec<(SocketAddr, Vec<u8>)>> {
    let to: SocketAddr = to.parse()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    for payload in payloads {
        from.send_to(&payload, to).context("send")?;
        match rx.recv_from(&mut buf) {
            Ok((n, src)) => got.push((src, buf[..n].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => bail!("recv: {e}"),
        }
        std::thread::sleep(gap);
    }
    Ok(got)
}

/// Asserts that `got` holds exactly `count` datagrams from `expected_src`
/// with the payloads [`exchange`] sent.
pub fn assert_delivered(got: &[(SocketAddr, Vec<u8>)], count: usize, expected_src: &str) {
    assert_eq!(got.len(), count, "datagrams delivered");
    let src: SocketAddr = expected_src.parse().unwrap();
    for (i, (from, payload)) in got.iter().enumerate() {
        assert_eq!(*from, src, "datagram {i} source");
        assert_eq!(
            payload,
            format!("xrelay test datagram {i:04}").as_bytes(),
            "datagram {i} payload"
        );
    }
}
