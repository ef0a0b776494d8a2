//! A namespace's network counters, read from /proc on a thread inside it:
//! UDP (`/proc/net/snmp`: datagrams read from sockets, dropped for full
//! receive buffers...) and an interface's packets and drops
//! (`/proc/net/dev`, where veth counts frames it could not queue to its
//! peer's ring).

use anyhow::{bail, Context as _, Result};
use relay_tests::netns::Netns;

/// `Udp:` counters of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Udp {
    /// Datagrams read from a socket (Linux counts them when the
    /// application receives them, not when they are queued).
    pub in_datagrams: u64,
    /// Datagrams for a port nobody listens on.
    pub no_ports: u64,
    /// Datagrams dropped on receipt (rcvbuf drops included).
    pub in_errors: u64,
    /// Datagrams dropped because the socket's receive buffer was full.
    pub rcvbuf_errors: u64,
}

impl Udp {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Udp) -> Udp {
        Udp {
            in_datagrams: self.in_datagrams.saturating_sub(earlier.in_datagrams),
            no_ports: self.no_ports.saturating_sub(earlier.no_ports),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
        }
    }
}

/// Reads `ns`'s UDP counters.
pub fn udp(ns: &Netns) -> Result<Udp> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    let field = |name: &str| -> Result<u64> {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .with_context(|| format!("no Udp {name} in /proc/net/snmp"))
    };
    Ok(Udp {
        in_datagrams: field("InDatagrams")?,
        no_ports: field("NoPorts")?,
        in_errors: field("InErrors")?,
        rcvbuf_errors: field("RcvbufErrors")?,
    })
}

/// One interface's packet and drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames dropped on receipt.
    pub rx_dropped: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Frames dropped on transmission (veth: the peer's ring was full).
    pub tx_dropped: u64,
}

impl Link {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Link) -> Link {
        Link {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

/// Reads `iface`'s counters in `ns`.
pub fn link(ns: &Netns, iface: &str) -> Result<Link> {
    let text = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
    let fields: Vec<u64> = text
        .lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == iface).then(|| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
        })
        .with_context(|| format!("no {iface} in /proc/net/dev"))?;
    // Receive: bytes packets errs drop fifo frame compressed multicast;
    // transmit: bytes packets errs drop ...
    let at = |i: usize| fields.get(i).copied().context("short /proc/net/dev line");
    Ok(Link {
        rx_packets: at(1)?,
        rx_dropped: at(3)?,
        tx_packets: at(9)?,
        tx_dropped: at(11)?,
    })
}
