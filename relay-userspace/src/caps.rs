//! Checking up front that relayd may load XDP programs, so the first error
//! an operator sees says what to grant instead of a bare "Operation not
//! permitted" from deep inside the loader.

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What relayd needs for the XDP fast path, and all it needs when bpffs is
/// mounted (packaging/xrelay.service grants exactly these): CAP_BPF for
/// maps and programs, CAP_PERFMON because the verifier refuses the
/// program's packet-pointer arithmetic (`data_end - data`) without it,
/// CAP_NET_ADMIN to attach XDP and set the net.* sysctls.
pub const FOR_XDP: [&str; 3] = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"];

/// The effective capability set of this process (from /proc/self/status).
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Names of the capabilities relayd needs but lacks; empty when it may run.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as on kernels
/// before 5.8.
pub fn missing_for_xdp() -> Vec<&'static str> {
    let Some(eff) = effective() else {
        return Vec::new(); // cannot tell: let the kernel decide
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}
