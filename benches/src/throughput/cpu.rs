//! CPU accounting for one measurement point: the whole machine from
//! /proc/stat (where XDP and the veth/stack work show up, as softirq) and
//! the relay daemon from /proc/PID/stat (its user + system time, all
//! threads).

use anyhow::{Context as _, Result};

/// Jiffies counters at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    busy: u64,
    softirq: u64,
    steal: u64,
    total: u64,
    process: u64,
    /// (busy, total) of each CPU.
    per_cpu: Vec<(u64, u64)>,
}

/// CPU use over an interval, in percent of one core.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Each CPU's busy share.
    pub per_cpu: Vec<f64>,
    /// All cores busy (user, system, irq, softirq...): up to 100 × cores.
    pub machine: f64,
    /// The softirq part of `machine`.
    pub softirq: f64,
    /// Time the hypervisor ran something else on these CPUs (a VM's
    /// stalls), all cores.
    pub steal: f64,
    /// The relay daemon's own user + system time.
    pub process: f64,
}

/// Reads the counters now, `pid` being the relay daemon.
pub fn snapshot(pid: u32) -> Result<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    // cpu user nice system idle iowait irq softirq steal ...
    let fields = |line: &str| -> Vec<u64> {
        line.split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect()
    };
    let busy_total = |v: &[u64]| {
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        (total - idle, total)
    };
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v = fields(line);
    let (busy, total) = busy_total(&v);
    let per_cpu = stat
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("cpu"))
        .map(|l| busy_total(&fields(l)))
        .collect();
    let proc_stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: utime is the 12th, stime the 13th.
    let process = proc_stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            n(11) + n(12)
        })
        .unwrap_or(0);
    Ok(Snapshot {
        busy,
        softirq: v.get(6).copied().unwrap_or(0),
        steal: v.get(7).copied().unwrap_or(0),
        total,
        process,
        per_cpu,
    })
}

/// Usage between two snapshots, `cores` being the number of CPUs.
pub fn usage(before: &Snapshot, after: &Snapshot, cores: u32) -> Usage {
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    // /proc/stat sums all cores; scale to "percent of one core".
    let pct = |d: u64| d as f64 / total * 100.0 * f64::from(cores);
    Usage {
        per_cpu: before
            .per_cpu
            .iter()
            .zip(&after.per_cpu)
            .map(|(b, a)| {
                let t = a.1.saturating_sub(b.1).max(1) as f64;
                a.0.saturating_sub(b.0) as f64 / t * 100.0
            })
            .collect(),
        machine: pct(after.busy.saturating_sub(before.busy)),
        softirq: pct(after.softirq.saturating_sub(before.softirq)),
        steal: pct(after.steal.saturating_sub(before.steal)),
        process: pct(after.process.saturating_sub(before.process)),
    }
}
