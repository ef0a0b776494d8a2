//! The kernel/user ABI of the xrelay XDP program, as Rust types.
//!
//! `#![no_std]` and `#[repr(C)]` so the same definitions could serve a Rust
//! BPF program one day. The C side is `relay-ebpf/include/relay_abi.h`; the
//! two are checked against each other through [`abi::LAYOUT`] (see
//! [`abi::check_meta`]).
#![no_std]

pub mod abi;
pub mod abi_v7;
pub mod addr;
pub mod rtp;

pub use abi::*;
