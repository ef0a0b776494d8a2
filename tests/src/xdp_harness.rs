//! The relay program under BPF_PROG_TEST_RUN, in a namespace of its own:
//! the set-up the packet fixtures and the packet torture share.
//!
//! Two veth interfaces, fxa (10.10.1.1/24, 2001:db8:1::1/64) and fxb
//! (10.10.2.1/24, 2001:db8:2::1/64), each with its far end in the same
//! namespace, and static neighbour entries for the hosts ::2/.2 on each
//! side, so `bpf_fib_lookup` gives deterministic answers. Frames "arrive" on
//! fxa ([`INGRESS`]).

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions};
use relay_common::CounterId;
use relay_userspace::datapath::{
    xdp::{selftest::xdp_md_for, ModePolicy, XdpConfig, XdpDatapath},
    Counters,
};

use crate::{
    netns::{mac_text, veth, Netns},
    PinDirGuard,
};

/// XDP return codes.
pub const XDP_DROP: u32 = 1;
/// See [`XDP_DROP`].
pub const XDP_PASS: u32 = 2;
/// See [`XDP_DROP`].
pub const XDP_TX: u32 = 3;
/// See [`XDP_DROP`].
pub const XDP_REDIRECT: u32 = 4;

/// fxa's MAC (the relay's A side).
pub const MAC_A_RELAY: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
/// Host A (10.10.1.2, 2001:db8:1::2) behind fxa.
pub const MAC_A_HOST: [u8; 6] = [0x02, 0, 0, 0, 1, 2];
/// fxb's MAC (the relay's B side).
pub const MAC_B_RELAY: [u8; 6] = [0x02, 0, 0, 0, 2, 1];
/// Host B (10.10.2.2, 2001:db8:2::2) behind fxb.
pub const MAC_B_HOST: [u8; 6] = [0x02, 0, 0, 0, 2, 2];

/// Every frame arrives on the A-side interface.
pub const INGRESS: &str = "fxa";

/// The fixture namespace (see the module comment). 10.10.2.3 and
/// 2001:db8:2::3 have no neighbour entry. The far ends have no IPv6: their
/// link-local address would send neighbour solicitations, MLD reports and
/// router solicitations into fxa and fxb in the seconds after start-up,
/// through the attached program whose counters the tests compare.
pub fn topology() -> Netns {
    let ns = Netns::new("fx").unwrap();
    let (ra, ha, rb, hb) = (
        mac_text(MAC_A_RELAY),
        mac_text(MAC_A_HOST),
        mac_text(MAC_B_RELAY),
        mac_text(MAC_B_HOST),
    );
    let ipv6 = |dev: &str, on: bool| {
        let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        ns.run(|| std::fs::write(&path, if on { "0" } else { "1" }))
            .unwrap()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    };
    // Interfaces created from here on start without IPv6.
    ipv6("default", false);
    veth(ns.end("fxa", "10.10.1.1/24", &ra), ns.end("fxa-p", "", &ha)).unwrap();
    veth(ns.end("fxb", "10.10.2.1/24", &rb), ns.end("fxb-p", "", &hb)).unwrap();
    ipv6("fxa", true);
    ipv6("fxb", true);
    // nodad: usable at once, no duplicate address detection delay.
    for (addr, dev) in [("2001:db8:1::1/64", "fxa"), ("2001:db8:2::1/64", "fxb")] {
        ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"])
            .unwrap();
    }
    for (addr, mac, dev) in [
        ("10.10.1.2", &ha, "fxa"),
        ("10.10.2.2", &hb, "fxb"),
        ("2001:db8:1::2", &ha, "fxa"),
        ("2001:db8:2::2", &hb, "fxb"),
    ] {
        ns.static_neighbour(addr, mac, dev).unwrap();
    }
    ns
}

/// The datapath of the fixtures: both interfaces of [`topology`], generic
/// mode, 64 counters slots.
pub fn fixture_config(
    pin_dir: std::path::PathBuf,
    max_addresses: u32,
    next_hop_cache: Duration,
) -> XdpConfig {
    XdpConfig {
        interfaces: vec!["fxa".into(), "fxb".into()],
        pin_dir,
        mode: ModePolicy::Generic,
        max_streams: 64,
        max_addresses,
        row_ports: 0..=u16::MAX,
        enable_forwarding: true,
        test_clock: false,
        next_hop_cache,
    }
}

/// Runs `body` in a fresh fixture topology against a datapath of
/// `max_addresses` stream-table rows and a next-hop cache of `next_hop_cache`
/// (the topology's namespace is at hand too), then shuts the datapath down.
pub fn with_datapath(
    pin_tag: &str,
    max_addresses: u32,
    next_hop_cache: Duration,
    body: impl FnOnce(&Netns, &mut XdpDatapath) + Send,
) {
    let ns = topology();
    let pins = PinDirGuard::new(pin_tag);
    let config = fixture_config(pins.0.clone(), max_addresses, next_hop_cache);
    ns.run(|| {
        let mut dp = XdpDatapath::start(&config).expect("XDP datapath starts");
        body(&ns, &mut dp);
        dp.shutdown();
    })
    .unwrap();
}

/// Runs one frame through the program as if it arrived on [`INGRESS`];
/// returns (action, output frame).
pub fn run_frame(dp: &mut XdpDatapath, frame: &[u8]) -> (u32, Vec<u8>) {
    let ifindex = relay_userspace::netdev::ifindex(INGRESS).unwrap();
    let ctx = xdp_md_for(ifindex, frame.len());
    // Room for a frame that grows (IPv4 bridged to IPv6: 20 bytes).
    let mut out = vec![0u8; frame.len() + 64];
    let result = dp
        .relay_program()
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })
        .expect("test run");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// The one counter that moved in `delta`, if exactly one moved by exactly
/// one packet of `len` bytes; otherwise a description of what moved.
pub fn only_counter(delta: &Counters, len: usize) -> Result<CounterId, String> {
    let moved: Vec<CounterId> = CounterId::ALL
        .iter()
        .copied()
        .filter(|&id| delta.packets(id) != 0 || delta.bytes(id) != 0)
        .collect();
    match moved[..] {
        [id] if (delta.packets(id), delta.bytes(id)) == (1, len as u64) => Ok(id),
        _ => Err(moved
            .iter()
            .map(|&id| format!("{} +{}/{}B", id.name(), delta.packets(id), delta.bytes(id)))
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

/// Asserts that exactly `counter` moved, by one packet of `len` bytes.
pub fn assert_only_counter(name: &str, delta: &Counters, counter: CounterId, len: usize) {
    for &id in CounterId::ALL {
        let (want_p, want_b) = if id == counter {
            (1, len as u64)
        } else {
            (0, 0)
        };
        assert_eq!(
            (delta.packets(id), delta.bytes(id)),
            (want_p, want_b),
            "{name}: counter {} moved wrongly",
            id.name()
        );
    }
}
