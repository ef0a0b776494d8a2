//! The far end of a veth pair needs an XDP program for native XDP transmit
//! into it to deliver anything; this attaches the object's do-nothing
//! `relay_peer_pass` there.

use anyhow::{Context as _, Result};
use aya::{
    programs::{Xdp, XdpMode},
    Ebpf, EbpfLoader,
};

/// Keeps `relay_peer_pass` attached while alive; detaches and removes its
/// pins on drop.
#[derive(Debug)]
pub struct PeerPass {
    _ebpf: Ebpf,
    _pins: crate::PinDirGuard,
}

/// Attaches `relay_peer_pass` natively to `iface` (call from its netns).
/// The object's maps get pinned, unused, in a directory of their own.
pub fn attach_peer_pass(iface: &str) -> Result<PeerPass> {
    let pins = crate::PinDirGuard::new(&format!("peer-{iface}"));
    relay_userspace::bpffs::ensure_pin_dir(&pins.0)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&pins.0)
        .load(relay_ebpf::relay_object())
        .context("loading the relay object")?;
    let program: &mut Xdp = ebpf
        .program_mut(relay_ebpf::PROGRAM_PEER_PASS)
        .context("relay_peer_pass missing")?
        .try_into()?;
    program.load()?;
    program
        .attach(iface, XdpMode::Driver)
        .with_context(|| format!("attaching to {iface}"))?;
    Ok(PeerPass {
        _ebpf: ebpf,
        _pins: pins,
    })
}
