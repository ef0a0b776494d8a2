//! xrelay userspace: the library behind `relayd` and `relayctl`.
//!
//! - [`calls`]: calls, monologues, medias; learning, forwarding, kernelization.
//! - [`config`]: relayd's options and TOML file.
//! - [`control`]: the NG socket (requests to calls, replies).
//! - [`daemon`]: relayd put together.
//! - [`datapath`]: the forwarding backend trait and its XDP implementation.
//! - [`ha`]: the role in an active/standby pair, replication through Redis.
//! - [`bpffs`]: making sure a BPF filesystem is there to pin into.
//! - [`caps`]: checking the privileges XDP needs before trying.
//! - [`cleanup`]: `relayd cleanup`, what a package removal runs.
//! - [`interfaces`]: logical interfaces (`--interface=NAME/ADDRESS!ADVERTISED`).
//! - [`load`]: load signals (load average, CPU, bandwidth) and their limits.
//! - [`ports`]: RTP/RTCP port pairs per interface address.
//! - [`netdev`]: interface lookups (index, name, MAC, drop counters).
//! - [`notify`]: systemd-style readiness notification.
//! - [`open_files`]: the open-files limit (a socket per media port).
//! - [`stats`]: NG statistics and relay-wide totals (relayctl, NG, metrics).
//! - [`static_stream`]: the `--static-stream` syntax of relayd.

pub mod bpffs;
pub mod calls;
pub mod caps;
pub mod cleanup;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod doctor;
pub mod ha;
pub mod interfaces;
pub mod load;
pub mod netdev;
pub mod notify;
pub mod open_files;
pub mod ports;
pub mod state;
pub mod static_stream;
pub mod stats;

/// Locks a mutex, recovering from poisoning: the state behind relayd's locks
/// holds no invariant a panic elsewhere could leave half-broken in a way
/// that makes serving unsafe, and the daemon must keep serving.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
