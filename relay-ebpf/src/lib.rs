//! The compiled xrelay XDP object, embedded so `relayd` is self-contained.
//!
//! Built from `src/relay.bpf.c` by `build.rs`; the kernel/user ABI it uses is
//! `include/relay_abi.h`, mirrored by the `relay-common` crate.
#![no_std]

/// Aligns embedded bytes to 8 so the ELF parser can read them in place.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static RELAY_OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/relay.bpf.o")));

/// The ELF object holding the `relay_xdp`, `relay_tx_probe` and
/// `relay_peer_pass` programs.
pub fn relay_object() -> &'static [u8] {
    &RELAY_OBJECT.0
}

/// Name of the forwarding program in [`relay_object`].
pub const PROGRAM_RELAY: &str = "relay_xdp";
/// Name of the transmit self-test program in [`relay_object`].
pub const PROGRAM_TX_PROBE: &str = "relay_tx_probe";
/// Name of the do-nothing program for the far end of a veth pair.
pub const PROGRAM_PEER_PASS: &str = "relay_peer_pass";
/// Name of the ABI table symbol in [`relay_object`].
pub const SYMBOL_ABI: &str = "relay_abi";
