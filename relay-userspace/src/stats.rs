//! NG request statistics (per command: requests, errors, latency), and the
//! relay-wide totals that relayctl, NG `statistics` and Prometheus all show,
//! computed in one place so they cannot disagree.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use relay_common::CounterId;
use serde::Serialize;

use crate::{calls::CallManager, datapath::Counters};

/// The NG transports that hold connections open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NgTransport {
    /// `--listen-tcp-ng`.
    Tcp = 0,
    /// WebSocket on `--listen-http`.
    WebSocket = 1,
}

impl NgTransport {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            NgTransport::Tcp => "tcp",
            NgTransport::WebSocket => "websocket",
        }
    }
}

/// One open NG connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    stats: std::sync::Arc<NgStats>,
    transport: NgTransport,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.stats.connections[self.transport as usize]
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Upper bounds of the NG latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 10] =
    [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000, 250_000];

/// One command's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommandStats {
    /// Requests answered (retransmissions answered from cache excluded).
    pub requests: u64,
    /// Of which answered with `result: error`.
    pub errors: u64,
    /// Of which answered with `result: load limit`.
    pub load_limit: u64,
    /// Sum of handling times, microseconds.
    pub latency_sum_us: u64,
    /// Requests per bucket of [`LATENCY_BUCKETS_US`]: bucket i counts the
    /// requests slower than bound i-1 and at most bound i (not cumulative);
    /// those slower than the last bound are `requests` minus the sum.
    pub latency_buckets: Vec<u64>,
}

/// NG statistics by command name (the parser's static names, so recording
/// a request allocates nothing), and the relay's role in an active/standby
/// pair: everything the NG handler and the totals read besides the calls.
#[derive(Debug, Default)]
pub struct NgStats {
    by_command: Mutex<BTreeMap<&'static str, CommandStats>>,
    shed: Mutex<BTreeMap<&'static str, u64>>,
    /// NG connections open now: TCP, WebSocket.
    connections: [std::sync::atomic::AtomicU64; 2],
    replication: std::sync::OnceLock<std::sync::Arc<crate::ha::Replication>>,
    /// Load figures and the `--max-load`/`--max-cpu`/`--max-bandwidth`
    /// limits (the ticker samples, offers check).
    pub load: crate::load::LoadGauge,
}

impl NgStats {
    /// Sets the relay's role and Redis side (once, at start-up).
    pub fn set_replication(&self, replication: std::sync::Arc<crate::ha::Replication>) {
        let _ = self.replication.set(replication);
    }

    /// The relay's role and Redis side, if set.
    pub fn replication(&self) -> Option<&crate::ha::Replication> {
        self.replication.get().map(|r| r.as_ref())
    }

    /// Whether this relay is a standby (it serves no calls).
    pub fn is_standby(&self) -> bool {
        self.replication()
            .is_some_and(|r| r.role() == crate::ha::Role::Standby)
    }

    /// Records one request shed unanswered under load, and why
    /// (`source_full`, `budget_full`).
    pub fn shed(&self, reason: &'static str) {
        *crate::lock(&self.shed).entry(reason).or_default() += 1;
    }

    /// Counts an NG connection (`--listen-tcp-ng`, WebSocket) open until
    /// the guard is dropped.
    pub fn connection(self: &std::sync::Arc<Self>, transport: NgTransport) -> ConnectionGuard {
        self.connections[transport as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ConnectionGuard {
            stats: self.clone(),
            transport,
        }
    }

    /// NG connections open now, by transport.
    pub fn connections(&self) -> [(NgTransport, u64); 2] {
        [NgTransport::Tcp, NgTransport::WebSocket].map(|t| {
            (
                t,
                self.connections[t as usize].load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// Requests shed so far, by reason.
    pub fn shed_snapshot(&self) -> BTreeMap<String, u64> {
        crate::lock(&self.shed)
            .iter()
            .map(|(reason, n)| ((*reason).to_owned(), *n))
            .collect()
    }

    /// Records one answered request.
    pub fn record(&self, command: &'static str, result: &str, took: Duration) {
        let mut map = crate::lock(&self.by_command);
        let s = map.entry(command).or_insert_with(|| CommandStats {
            latency_buckets: vec![0; LATENCY_BUCKETS_US.len()],
            ..CommandStats::default()
        });
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        s.requests += 1;
        s.errors += u64::from(result == "error");
        s.load_limit += u64::from(result == "load limit");
        s.latency_sum_us = s.latency_sum_us.saturating_add(us);
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|bound| us <= *bound) {
            if let Some(count) = s.latency_buckets.get_mut(i) {
                *count += 1;
            }
        }
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> BTreeMap<String, CommandStats> {
        crate::lock(&self.by_command)
            .iter()
            .map(|(name, s)| ((*name).to_owned(), s.clone()))
            .collect()
    }
}

/// Ports of one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortTotals {
    /// Interface name.
    pub interface: String,
    /// Pairs in use.
    pub used: usize,
    /// Pairs free.
    pub free: usize,
}

/// Kernel counter slots (one per stream forwarded in XDP, `--max-streams`
/// of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlotTotals {
    /// Slots held by forwarding entries.
    pub used: usize,
    /// Slots free.
    pub free: usize,
}

/// Packets and bytes on one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PathTotals {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Everything relay-wide.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Totals {
    /// Calls now.
    pub sessions: usize,
    /// Calls created since start.
    pub sessions_total: u64,
    /// Ports per interface.
    pub ports: Vec<PortTotals>,
    /// Kernel counter slots; None without a kernel datapath.
    pub kernel_slots: Option<SlotTotals>,
    /// Forwarded by XDP (program counters; includes static streams).
    pub kernel: PathTotals,
    /// Forwarded by the userspace forwarder (received from a party).
    pub userspace: PathTotals,
    /// XDP program outcomes (packets), by counter name; empty without XDP.
    pub xdp: BTreeMap<String, u64>,
    /// Packets dropped by the userspace forwarder (strict source).
    pub userspace_dropped: u64,
    /// NG commands.
    pub ng: BTreeMap<String, CommandStats>,
    /// NG requests shed unanswered under load, by reason.
    pub ng_shed: BTreeMap<String, u64>,
    /// RTP quality over the live calls.
    pub rtp: RtpTotals,
    /// The role in an active/standby pair and the Redis link.
    pub replication: crate::ha::ReplicationTotals,
    /// Load, CPU and bandwidth, the limits and the headroom to each.
    pub load: crate::load::LoadTotals,
}

/// RTP figures summed over the streams of the live calls (they leave with
/// their call, so these are gauges, not counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RtpTotals {
    /// Streams receiving RTP (an SSRC seen).
    pub streams: u64,
    /// RTP packets received.
    pub packets: u64,
    /// Packets lost (expected minus received).
    pub lost: u64,
    /// RTCP packets (RTCP ports and rtcp-mux).
    pub rtcp_packets: u64,
    /// Neither RTP nor RTCP (STUN, DTLS, garbage) on media ports.
    pub other_packets: u64,
    /// SSRC changes.
    pub ssrc_changes: u64,
    /// Worst interarrival jitter of a stream, microseconds.
    pub max_jitter_us: u64,
    /// Streams (with an SSRC and a known clock rate) whose jitter is at most
    /// each of [`JITTER_BUCKETS_US`], cumulative like histogram buckets.
    pub jitter_buckets: Vec<u64>,
    /// Streams (with an SSRC) whose loss is at most each of
    /// [`LOSS_BUCKETS_PERMILLE`], cumulative.
    pub loss_buckets: Vec<u64>,
}

/// Jitter bounds of [`RtpTotals::jitter_buckets`], microseconds.
pub const JITTER_BUCKETS_US: [u64; 8] = [
    1_000, 5_000, 10_000, 20_000, 30_000, 50_000, 100_000, 200_000,
];
/// Loss bounds of [`RtpTotals::loss_buckets`], per mille of expected packets.
pub const LOSS_BUCKETS_PERMILLE: [u64; 7] = [0, 1, 5, 10, 20, 50, 100];

impl RtpTotals {
    /// Folds the figures of the live streams.
    pub fn of(streams: &[crate::calls::summary::RtpSummary]) -> Self {
        let mut t = RtpTotals {
            jitter_buckets: vec![0; JITTER_BUCKETS_US.len()],
            loss_buckets: vec![0; LOSS_BUCKETS_PERMILLE.len()],
            ..RtpTotals::default()
        };
        for q in streams {
            if q.ssrc.is_some() {
                if let Some(us) = q.jitter_us {
                    for (count, bound) in t.jitter_buckets.iter_mut().zip(JITTER_BUCKETS_US) {
                        *count += u64::from(us <= bound);
                    }
                }
                let expected = q.rtp_packets + q.lost;
                let permille = q.lost * 1000 / expected.max(1);
                for (count, bound) in t.loss_buckets.iter_mut().zip(LOSS_BUCKETS_PERMILLE) {
                    *count += u64::from(permille <= bound);
                }
            }
            t.streams += u64::from(q.ssrc.is_some());
            t.packets += q.rtp_packets;
            t.lost += q.lost;
            t.rtcp_packets += q.rtcp_packets;
            t.other_packets += q.other_packets;
            t.ssrc_changes += u64::from(q.ssrc_changes);
            t.max_jitter_us = t.max_jitter_us.max(q.jitter_us.unwrap_or(0));
        }
        t
    }
}

/// Computes the totals.
pub fn totals(calls: &CallManager, ng: &NgStats) -> Totals {
    totals_with(calls, ng, calls.kernel_counters())
}

/// [`totals`] with the XDP program's counters already read (None: no
/// kernel datapath, or unreadable).
pub fn totals_with(calls: &CallManager, ng: &NgStats, counters: Option<Counters>) -> Totals {
    let (kernel, userspace) = paths(calls, counters.as_ref());
    let xdp = counters
        .map(|c| {
            CounterId::ALL
                .iter()
                .map(|id| (id.name().to_owned(), c.packets(*id)))
                .collect()
        })
        .unwrap_or_default();
    let (_, _, user_dropped) = calls.userspace_totals();
    Totals {
        sessions: calls.len(),
        sessions_total: calls.total_calls,
        ports: calls
            .port_usage()
            .into_iter()
            .map(|(interface, used, free)| PortTotals {
                interface,
                used,
                free,
            })
            .collect(),
        kernel_slots: calls
            .slot_usage()
            .map(|(used, free)| SlotTotals { used, free }),
        kernel,
        userspace,
        xdp,
        userspace_dropped: user_dropped,
        ng: ng.snapshot(),
        ng_shed: ng.shed_snapshot(),
        rtp: RtpTotals::of(&calls.rtp_summaries()),
        replication: ng
            .replication()
            .map(crate::ha::Replication::totals)
            .unwrap_or_default(),
        load: crate::load::LoadTotals::of(&ng.load, calls.len(), calls.max_sessions()),
    }
}

/// What XDP forwarded (its program counters) and what the userspace
/// forwarder handled.
pub fn paths(calls: &CallManager, counters: Option<&Counters>) -> (PathTotals, PathTotals) {
    let kernel = counters.map_or(PathTotals::default(), |c| PathTotals {
        packets: c.forwarded(),
        bytes: CounterId::ALL
            .iter()
            .filter(|id| id.is_forwarded())
            .map(|id| c.bytes(*id))
            .sum(),
    });
    let (packets, bytes, _) = calls.userspace_totals();
    (kernel, PathTotals { packets, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_one_bucket() {
        let s = NgStats::default();
        s.record("offer", "ok", Duration::from_micros(80));
        s.record("offer", "error", Duration::from_micros(3000));
        s.record("offer", "load limit", Duration::from_secs(1));
        let snap = s.snapshot();
        let offer = &snap["offer"];
        assert_eq!((offer.requests, offer.errors, offer.load_limit), (3, 1, 1));
        assert_eq!(offer.latency_buckets[0], 0); // <= 50 us
        assert_eq!(offer.latency_buckets[1], 1); // (50, 100] us
        assert_eq!(offer.latency_buckets[6], 1); // (2.5, 5] ms
        assert_eq!(
            offer.latency_buckets.iter().sum::<u64>(),
            2,
            "1 s is beyond the last bucket"
        );
    }
}
