//! The BPF filesystem that maps and links are pinned into.
//!
//! Many hosts (these test machines among them) boot without bpffs mounted.
//! relayd mounts it when it can (root) and otherwise says exactly how.

use std::path::{Path, PathBuf};

use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};

/// Where bpffs lives by convention.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// Why no usable bpffs could be found or mounted.
#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    /// The pin directory is not below a bpffs mount and mounting one failed.
    #[error(
        "{path} is not on a BPF filesystem and mounting one at {mount_point} failed ({source}); \
         run `mount -t bpf bpf {mount_point}` as root, or pass --pin-dir on an existing bpffs"
    )]
    NotMounted {
        /// The pin directory asked for.
        path: PathBuf,
        /// Where the mount was attempted.
        mount_point: PathBuf,
        /// The mount error.
        #[source]
        source: nix::Error,
    },
    /// Creating the pin directory failed.
    #[error("cannot create pin directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Whether `path` (which must exist) is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path)
        .map(|s| s.filesystem_type() == BPF_FS_MAGIC)
        .unwrap_or(false)
}

/// Makes sure `dir` exists on a bpffs, mounting bpffs at [`DEFAULT_MOUNT`]
/// first when `dir` lies below it and nothing is mounted there yet.
pub fn ensure_pin_dir(dir: &Path) -> Result<(), BpffsError> {
    let mount_point = Path::new(DEFAULT_MOUNT);
    if dir.starts_with(mount_point) && !is_bpffs(mount_point) {
        std::fs::create_dir_all(mount_point).map_err(|source| BpffsError::CreateDir {
            path: mount_point.to_owned(),
            source,
        })?;
        mount(
            Some("bpf"),
            mount_point,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| BpffsError::NotMounted {
            path: dir.to_owned(),
            mount_point: mount_point.to_owned(),
            source,
        })?;
        tracing::info!(mount_point = %mount_point.display(), "mounted bpffs");
    }
    std::fs::create_dir_all(dir).map_err(|source| BpffsError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    if !is_bpffs(dir) {
        return Err(BpffsError::NotMounted {
            path: dir.to_owned(),
            mount_point: mount_point.to_owned(),
            source: nix::Error::ENOTSUP,
        });
    }
    Ok(())
}
