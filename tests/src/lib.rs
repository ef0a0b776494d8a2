//! Support for xrelay's privileged tests: network namespaces, veth pairs,
//! packet building with independent checksum checks, and the rule that a
//! test skips (saying why) only on machines that lack the capability.

pub mod bridge;
pub mod netns;
pub mod ng_client;
pub mod ng_load;
pub mod paced;
pub mod packet;
pub mod peer;
pub mod privileges;
pub mod python;
pub mod ready;
pub mod redis_server;
pub mod topology;
pub mod torture;
pub mod xdp_harness;
pub mod xdp_model;

/// A bpffs directory removed (with every pin in it) on drop, so a failing
/// test leaves nothing behind.
#[derive(Debug)]
pub struct PinDirGuard(pub std::path::PathBuf);

impl PinDirGuard {
    /// A fresh directory name under `/sys/fs/bpf/xrelay-test/` for `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PinDirGuard(format!("/sys/fs/bpf/xrelay-test/{tag}-{}-{n}", std::process::id()).into())
    }

    /// The call state directory relayd uses with this pin directory (its
    /// default, removed with the guard).
    pub fn state_dir(&self) -> std::path::PathBuf {
        relay_userspace::config::default_state_dir(&self.0)
    }
}

impl Drop for PinDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.state_dir());
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                eprintln!("warning: could not remove {}: {e}", self.0.display());
            }
        }
        // The shared parent goes when the last test is done with it.
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
