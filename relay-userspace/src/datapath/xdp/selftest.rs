//! Does native XDP transmit really work on this interface?
//!
//! Some drivers accept a native XDP program and then silently drop what it
//! transmits: veth does unless its peer runs an XDP program too. A relay that
//! attached "successfully" and blackholes media is the worst outcome, so
//! after a native attach relayd bounces a few probe frames through the
//! driver's XDP transmit path (BPF_PROG_TEST_RUN with live frames, running
//! `relay_tx_probe`, which returns XDP_TX) and reads the driver's
//! statistics before and after. The frames count as sent only when the
//! driver's own XDP transmit counters (`ethtool -S`: names with `xdp` and
//! `xmit`/`tx`) grew by at least the number sent; any growth of its XDP
//! error/drop counters or of `tx_dropped` counts as lost. Silence counts as
//! unconfirmed, which `auto` mode treats like a loss: on this kernel veth
//! moves no counter at all when it throws the frames away.

use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp};

use crate::netdev;

/// Frames per probe; a handful is enough to see a counter move.
pub const PROBE_FRAMES: u32 = 8;
/// IEEE "local experimental" ethertype: no stack on the far side handles it.
const PROBE_ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// What the probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxProbe {
    /// The driver's XDP transmit counters account for every probe frame.
    Transmitted,
    /// The driver counted this many of the probe frames as dropped or failed.
    Dropped(u64),
    /// No counter moved enough to tell (this many were seen as sent).
    Unconfirmed(u64),
}

/// The counters the verdict is made from.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    xdp_sent: u64,
    xdp_failed: u64,
    tx_dropped: u64,
}

fn is_xdp_failure(name: &str) -> bool {
    name.contains("xdp") && ["err", "drop", "fail"].iter().any(|w| name.contains(w))
}

fn is_xdp_transmit(name: &str) -> bool {
    name.contains("xdp") && (name.contains("xmit") || name.contains("tx")) && !is_xdp_failure(name)
}

fn snapshot(iface: &str) -> Result<Snapshot, netdev::NetdevError> {
    let mut snap = Snapshot {
        tx_dropped: netdev::tx_dropped(iface)?,
        ..Snapshot::default()
    };
    // Drivers without ethtool statistics simply give no positive evidence.
    for (name, value) in netdev::ethtool_stats(iface).unwrap_or_default() {
        if is_xdp_failure(&name) {
            snap.xdp_failed += value;
        } else if is_xdp_transmit(&name) {
            snap.xdp_sent += value;
        }
    }
    Ok(snap)
}

fn verdict(before: Snapshot, after: Snapshot) -> TxProbe {
    let failed = after.xdp_failed.saturating_sub(before.xdp_failed)
        + after.tx_dropped.saturating_sub(before.tx_dropped);
    let sent = after.xdp_sent.saturating_sub(before.xdp_sent);
    if failed > 0 {
        TxProbe::Dropped(failed)
    } else if sent >= u64::from(PROBE_FRAMES) {
        TxProbe::Transmitted
    } else {
        TxProbe::Unconfirmed(sent)
    }
}

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading interface facts failed.
    #[error(transparent)]
    Netdev(#[from] netdev::NetdevError),
    /// BPF_PROG_TEST_RUN failed.
    #[error("running the transmit probe on {iface}: {source}")]
    Run {
        /// Interface.
        iface: String,
        /// aya's error.
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// The probe frame: addressed to the interface itself (so the far side's
/// stack ignores it) with an experimental ethertype.
fn probe_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&PROBE_ETHERTYPE);
    frame.extend_from_slice(b"xrelay native XDP transmit self-test");
    frame.resize(64, 0);
    frame
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it: a frame of `len` bytes
/// "arriving" on `ifindex` (so XDP_TX sends it out of that interface). The
/// kernel insists that `data_end` equals the frame length.
pub fn xdp_md_for(ifindex: u32, len: usize) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes()); // data_end
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes()); // ingress_ifindex
    ctx
}

/// Runs the probe on `iface` (must be called from the interface's network
/// namespace, with `probe` loaded and the relay program attached natively).
pub fn probe_native_tx(probe: &Xdp, iface: &str) -> Result<TxProbe, ProbeError> {
    let ifindex = netdev::ifindex(iface)?;
    let frame = probe_frame(netdev::mac(iface)?);
    let ctx = xdp_md_for(ifindex, frame.len());
    let before = snapshot(iface)?;
    let opts = TestRunOptions {
        data_in: Some(&frame),
        ctx_in: Some(&ctx),
        repeat: PROBE_FRAMES,
        attrs: TestRunAttrs::new().xdp_live_frames(PROBE_FRAMES),
        ..TestRunOptions::default()
    };
    probe.test_run(opts).map_err(|source| ProbeError::Run {
        iface: iface.to_owned(),
        source,
    })?;
    Ok(verdict(before, snapshot(iface)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_classified() {
        assert!(is_xdp_transmit("tx_queue_0_xdp_xmit"));
        assert!(is_xdp_transmit("queue_3_xdp_tx_cnt"));
        assert!(is_xdp_failure("tx_queue_0_xdp_xmit_errors"));
        assert!(is_xdp_failure("rx_queue_0_xdp_drops"));
        assert!(!is_xdp_transmit("tx_queue_0_xdp_xmit_errors"));
        assert!(!is_xdp_transmit("tx_packets"));
    }

    #[test]
    fn verdicts() {
        let base = Snapshot {
            xdp_sent: 10,
            xdp_failed: 1,
            tx_dropped: 2,
        };
        let sent = Snapshot {
            xdp_sent: 10 + u64::from(PROBE_FRAMES),
            ..base
        };
        assert_eq!(verdict(base, sent), TxProbe::Transmitted);
        assert_eq!(verdict(base, base), TxProbe::Unconfirmed(0));
        assert_eq!(
            verdict(
                base,
                Snapshot {
                    tx_dropped: 5,
                    ..sent
                }
            ),
            TxProbe::Dropped(3)
        );
        assert_eq!(
            verdict(
                base,
                Snapshot {
                    xdp_failed: 9,
                    ..base
                }
            ),
            TxProbe::Dropped(8)
        );
    }
}
