//! The test bed: a relay namespace and a traffic namespace joined by one
//! veth pair, on one /16. The relay side holds the relay addresses; the
//! traffic side is where every caller and callee lives (their frames come
//! from the in-kernel generator, so the addresses need no sockets there,
//! only permanent neighbour entries on the relay side pointing at the
//! traffic veth).

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{bail, Context as _, Result};
use relay_tests::netns::{mac_text, veth_with_queues, Netns};

use crate::traffic::Flow;

/// Relay-side veth.
pub const RELAY_IF: &str = "xrb0";
/// Traffic-side veth (generator and sink).
pub const TRAFFIC_IF: &str = "xtg0";
/// MAC of [`RELAY_IF`].
pub const RELAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb0, 0x01];
/// MAC of [`TRAFFIC_IF`].
pub const TRAFFIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb0, 0x02];
/// Calls placed on each relay address: 4 ports each (RTP+RTCP per side),
/// inside [`PORT_MIN`]..=[`PORT_MAX`] with room to spare.
pub const CALLS_PER_ADDRESS: u32 = 7_000;
/// Media port range of every relay under test: below the ephemeral range
/// (32768-60999), which relayd's DoS shield would otherwise reserve away
/// from the NG clients in the same namespace.
pub const PORT_MIN: u16 = 2_000;
/// See [`PORT_MIN`].
pub const PORT_MAX: u16 = 31_999;
/// Party ports per traffic-side address (even ports from 1024).
const PARTY_PORTS: u32 = 30_000;

/// Address `k` of the relay in slot `slot` (10.77.(10 + slot).(10 + k)):
/// the relays run side by side, each on addresses of its own.
pub fn relay_addr(slot: usize, k: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 10 + slot as u8, 10 + k as u8)
}

/// Where party `side` (0 caller, 1 callee) of call `i` sends from, as its
/// SDP says.
pub fn party(i: u32, side: u32) -> SocketAddrV4 {
    let third = 100 + 50 * side + i / PARTY_PORTS;
    let port = 1024 + 2 * (i % PARTY_PORTS);
    SocketAddrV4::new(Ipv4Addr::new(10, 77, third as u8, 1), port as u16)
}

/// Relay addresses needed for `calls` calls.
pub fn addresses_for(calls: u32) -> u32 {
    calls.div_ceil(CALLS_PER_ADDRESS).max(1)
}

/// Call `i` as two static streams of the relay in slot `slot` (what relayd
/// would install for it after an offer and answer, RTP ports only: the
/// generator sends no RTCP), and its two flows (caller, then callee). The
/// call's relay ports are the pair `2j`, `2j + 1` of its address's range.
pub fn static_call(slot: usize, i: u32) -> ([String; 2], [Flow; 2]) {
    let (caller, callee) = (party(i, 0), party(i, 1));
    let addr = relay_addr(slot, i / CALLS_PER_ADDRESS);
    let first = PORT_MIN + 2 * (i % CALLS_PER_ADDRESS) as u16;
    let (to_callee, to_caller) = (
        SocketAddrV4::new(addr, first),
        SocketAddrV4::new(addr, first + 1),
    );
    // What reaches the port the caller sends to goes to the callee from the
    // callee's relay port, and back; PCMU's 8 kHz clock for the jitter.
    (
        [
            format!("{to_callee}={callee},src={to_caller},rtp=8000"),
            format!("{to_caller}={caller},src={to_callee},rtp=8000"),
        ],
        [
            Flow {
                from: caller,
                to: to_callee,
            },
            Flow {
                from: callee,
                to: to_caller,
            },
        ],
    )
}

/// The two namespaces, removed on drop.
#[derive(Debug)]
pub struct Bed {
    /// Where the relay runs.
    pub relay: Netns,
    /// Where the generator and the sink run.
    pub traffic: Netns,
}

impl Bed {
    /// Builds the bed for relays holding up to `calls[slot]` calls each.
    pub fn new(calls: &[u32]) -> Result<Self> {
        let relay = Netns::new("tpr")?;
        let traffic = Netns::new("tpt")?;
        let (relay_mac, traffic_mac) = (mac_text(RELAY_MAC), mac_text(TRAFFIC_MAC));
        // A queue per CPU: the unpaced point generates on every CPU.
        veth_with_queues(
            relay.end(RELAY_IF, "", &relay_mac),
            traffic.end(TRAFFIC_IF, "10.77.1.1/16", &traffic_mac),
            super::measure::cores(),
        )?;
        for (slot, &n) in calls.iter().enumerate() {
            for k in 0..addresses_for(n) {
                let addr = format!("{}/16", relay_addr(slot, k));
                relay.ip(&["addr", "add", &addr, "dev", RELAY_IF])?;
            }
        }
        let max_calls = calls.iter().copied().max().unwrap_or(1);
        let parties = max_calls.div_ceil(PARTY_PORTS).max(1);
        for side in 0..2 {
            for j in 0..parties {
                let addr = party(j * PARTY_PORTS, side);
                relay.static_neighbour(&addr.ip().to_string(), &traffic_mac, RELAY_IF)?;
            }
        }
        Ok(Bed { relay, traffic })
    }
}

impl Bed {
    /// Puts each side's receive processing on its own core, as on a host
    /// whose NIC interrupts go to the relay's core: everything [`RELAY_IF`]
    /// receives (the relay's XDP program, the stack under the userspace
    /// relays) on the relays' CPU 1, what [`TRAFFIC_IF`] receives (the sink)
    /// on the generator's CPU 0. veth runs its receive processing on the
    /// sending CPU otherwise, so the relay's share would land on the
    /// generator's core. Each side's NAPI runs in a kernel thread pinned to
    /// its CPU (veth has NAPI with XDP or GRO on: GRO is turned on, as NICs
    /// have it), and RPS sends the relay side's stack work to CPU 1 too.
    /// Called before every measured point: attaching an XDP program makes
    /// new NAPI threads.
    pub fn confine_receive(&self) -> Result<()> {
        for (ns, ifname, cpu) in [
            (&self.relay, RELAY_IF, 1u32),
            (&self.traffic, TRAFFIC_IF, 0),
        ] {
            let mut ethtool = ns.command("ethtool")?;
            ethtool.args(["-K", ifname, "gro", "on"]);
            let status = ethtool.status().context("running ethtool")?;
            if !status.success() {
                bail!("ethtool could not turn GRO on for {ifname}");
            }
            let mut script = format!("echo 1 > /sys/class/net/{ifname}/threaded");
            if cpu == 1 {
                script.push_str(&format!(
                    " && for q in /sys/class/net/{ifname}/queues/rx-*; do echo {:x} > $q/rps_cpus; done",
                    1u32 << cpu
                ));
            }
            // `ip netns exec` mounts the namespace's own /sys.
            let mut sh = std::process::Command::new("ip");
            sh.args(["netns", "exec", ns.name(), "sh", "-c", &script]);
            if !sh.status().context("running sh")?.success() {
                bail!("could not make {ifname}'s NAPI threaded");
            }
            let pinned = pin_kernel_threads(&format!("napi/{ifname}-"), cpu)?;
            if pinned == 0 {
                bail!("{ifname} has no NAPI thread to pin");
            }
        }
        Ok(())
    }
}

/// Pins every kernel thread whose name starts with `prefix` to `cpu`;
/// how many there were.
fn pin_kernel_threads(prefix: &str, cpu: u32) -> Result<usize> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu as usize)?;
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(prefix) {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)
                .with_context(|| format!("pinning {} to CPU {cpu}", comm.trim_end()))?;
            pinned += 1;
        }
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_userspace::{datapath::MediaTracking, static_stream};
    use std::net::SocketAddr;

    /// Each static call is what relayd would install for it: a party's
    /// frames reach a port whose stream sends them on to the other party
    /// from the port that party sends to, with RTP figures at 8 kHz; no
    /// two calls share a port, and every port is in the media range.
    #[test]
    fn static_calls_forward_each_party_to_the_other() {
        let mut ports = std::collections::HashSet::new();
        for i in [0, 1, CALLS_PER_ADDRESS - 1, CALLS_PER_ADDRESS, 99_999] {
            let (specs, flows) = static_call(2, i);
            let streams: Vec<_> = specs
                .iter()
                .map(|s| static_stream::parse(s, 0).unwrap())
                .collect();
            for (stream, (flow, other)) in streams.iter().zip([(0, 1), (1, 0)]) {
                let (flow, other) = (flows[flow], flows[other]);
                assert_eq!(stream.local, SocketAddr::V4(flow.to), "call {i}");
                assert_eq!(stream.peer, SocketAddr::V4(other.from), "call {i}");
                assert_eq!(stream.source, SocketAddr::V4(other.to), "call {i}");
                assert_eq!(stream.media, MediaTracking::Rtp { clock_rate: 8000 });
                assert!((PORT_MIN..=PORT_MAX).contains(&flow.to.port()));
                assert_eq!(*flow.to.ip(), relay_addr(2, i / CALLS_PER_ADDRESS));
                assert!(ports.insert(flow.to), "{} used twice", flow.to);
            }
        }
    }
}
