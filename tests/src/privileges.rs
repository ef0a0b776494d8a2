//! Deciding whether a privileged test can run here.
//!
//! Tests skip only where the machine lacks the capability (not root), and
//! then print why. Where it is root, anything missing is a failure: CI runs
//! as root and must really run these tests.

/// Whether the process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns `true` when `test` may run; otherwise prints the skip reason.
pub fn can_run(test: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: needs root (BPF, XDP and network namespaces); \
         run `cargo xtask test` as root to include it"
    );
    false
}

/// Early-returns from a test that cannot run on this machine, saying why.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privileges::can_run(module_path!()) {
            return;
        }
    };
}
