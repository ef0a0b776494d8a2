//! `relayd cleanup`: takes away what a relayd ended by a signal leaves for
//! the next one (docs/operations.md, "Restarts and upgrades"), for when
//! there will be no next one, such as the Debian package's removal:
//!
//! - the calls in the state journal (emptied, as `relayctl stop` does);
//! - the XDP program and maps pinned under `--pin-dir`: unpinning a link
//!   drops its last reference, which detaches the program;
//! - the media range relayd added to `net.ipv4.ip_local_reserved_ports`.
//!
//! It is `relayctl stop` for a relayd that is not running, and refuses to
//! run beside one (the journal's lock says whether one holds the state
//! directory). Only settings that name these things are read, so it works
//! with a configuration that has no interface yet.

use std::path::{Path, PathBuf};

use relay_state::{FileJournal, Store as _, StoreError, SyncPolicy};

use crate::{
    config::{Options, ShieldMode, DEFAULT_PORT_MAX, DEFAULT_PORT_MIN},
    datapath::xdp::{adopt, DEFAULT_PIN_DIR},
};

/// Why cleaning up failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// A relayd holds the state directory.
    #[error(
        "a relayd is running on {0}: stop it first (`relayctl stop` ends its calls and \
         takes its XDP program down itself)"
    )]
    Running(PathBuf),
    /// The journal could not be opened or emptied.
    #[error("emptying the call state: {0}")]
    State(#[source] StoreError),
    /// Something under the pin directory could not be removed.
    #[error("{0} is still there after removing relayd's pins (other files in it?)")]
    PinsLeft(PathBuf),
    /// The reserved ports could not be read or written.
    #[error(transparent)]
    Ports(#[from] crate::netdev::NetdevError),
}

/// Does it; returns one line per thing removed, for the operator.
pub fn run(options: &Options) -> Result<Vec<String>, CleanupError> {
    let mut done = Vec::new();
    // First the journal: its lock is what tells that a relayd still runs,
    // and nothing may go while one does.
    let state_dir = options.state_dir_named();
    if state_dir.exists() {
        let mut journal =
            FileJournal::open(&state_dir, SyncPolicy::Always).map_err(|e| match e {
                StoreError::Locked(dir) => CleanupError::Running(dir),
                e => CleanupError::State(e),
            })?;
        journal.clear().map_err(CleanupError::State)?;
        done.push(format!("emptied the call state in {}", state_dir.display()));
    }
    let pin_dir = options
        .pin_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_PIN_DIR.into());
    if remove_pins(&pin_dir)? {
        done.push(format!(
            "detached the XDP program and removed the pins in {}",
            pin_dir.display()
        ));
    }
    // relayd reserves the range only with the DoS shield dropping.
    if options.dos_shield.unwrap_or_default() == ShieldMode::Drop {
        let (min, max) = (
            options.port_min.unwrap_or(DEFAULT_PORT_MIN),
            options.port_max.unwrap_or(DEFAULT_PORT_MAX),
        );
        if crate::netdev::release_local_ports(min, max)? {
            done.push(format!(
                "removed {min}-{max} from net.ipv4.ip_local_reserved_ports"
            ));
        }
    }
    Ok(done)
}

/// Removes every ABI version's pins under `pin_dir`, then the directory and
/// its parent when empty (`/sys/fs/bpf/xrelay` of the default one). Whether
/// there was anything.
fn remove_pins(pin_dir: &Path) -> Result<bool, CleanupError> {
    let Ok(entries) = std::fs::read_dir(pin_dir) else {
        return Ok(false);
    };
    for entry in entries.flatten() {
        let versioned = entry.file_name().to_string_lossy().starts_with("abi-v");
        if versioned && entry.path().is_dir() {
            adopt::remove_versioned(&entry.path());
        }
    }
    if std::fs::remove_dir(pin_dir).is_err() && pin_dir.exists() {
        return Err(CleanupError::PinsLeft(pin_dir.to_owned()));
    }
    if let Some(parent) = pin_dir.parent() {
        if parent != Path::new(crate::bpffs::DEFAULT_MOUNT) {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(true)
}
