//! xrelay userspace: the library behind `relayd` and `relayctl`.
//!
//! - [`datapath`]: the forwarding backend trait and its XDP implementation.
//! - [`bpffs`]: making sure a BPF filesystem is there to pin into.
//! - [`caps`]: checking the privileges XDP needs before trying.
//! - [`netdev`]: interface lookups (index, name, MAC, drop counters).
//! - [`notify`]: systemd-style readiness notification.
//! - [`static_stream`]: the `--static-stream` syntax of relayd.

pub mod bpffs;
pub mod caps;
pub mod datapath;
pub mod netdev;
pub mod notify;
pub mod static_stream;
