//! The Prometheus figures `GET /metrics` on `--listen-http` serves (see
//! [`super::http`]), in the text exposition format (prometheus-client).
//!
//! Every figure is read at scrape time from [`crate::stats::totals`], the
//! same numbers `relayctl totals` and NG `statistics` show.

use std::sync::{Arc, Mutex};

use crate::{
    calls::CallManager,
    stats::{totals_with, NgStats, Totals, LATENCY_BUCKETS_US},
};
use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

/// Reads the relay's state on every scrape.
#[derive(Debug)]
struct RelayCollector {
    calls: Arc<Mutex<CallManager>>,
    ng: Arc<NgStats>,
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn encode_totals(t: &Totals, mut enc: DescriptorEncoder) -> std::fmt::Result {
    gauge(&mut enc, "xrelay_sessions", "Calls now", t.sessions as i64)?;
    counter(
        &mut enc,
        "xrelay_sessions_created",
        "Calls created since start",
        t.sessions_total,
    )?;
    type PortField = fn(&crate::stats::PortTotals) -> usize;
    let port_gauges: [(&str, &str, PortField); 2] = [
        ("xrelay_ports_in_use", "RTP/RTCP port pairs in use", |p| {
            p.used
        }),
        ("xrelay_ports_free", "RTP/RTCP port pairs free", |p| p.free),
    ];
    for (name, help, value) in port_gauges {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for p in &t.ports {
            let labels = [("interface", p.interface.as_str())];
            ConstGauge::new(value(p) as i64).encode(m.encode_family(&labels)?)?;
        }
    }
    for (name, help, kernel, user) in [
        (
            "xrelay_forwarded_packets",
            "Packets forwarded, by path",
            t.kernel.packets,
            t.userspace.packets,
        ),
        (
            "xrelay_forwarded_bytes",
            "Bytes forwarded, by path",
            t.kernel.bytes,
            t.userspace.bytes,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(kernel).encode(m.encode_family(&[("path", "kernel")])?)?;
        ConstCounter::new(user).encode(m.encode_family(&[("path", "userspace")])?)?;
    }
    {
        let mut m = enc.encode_descriptor(
            "xrelay_xdp_packets",
            "XDP program outcomes",
            None,
            MetricType::Counter,
        )?;
        for (outcome, packets) in &t.xdp {
            ConstCounter::new(*packets)
                .encode(m.encode_family(&[("outcome", outcome.as_str())])?)?;
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "xrelay_ng_shed_requests",
            "NG requests dropped unanswered: shed under load (a source's queue full, or all queues' byte budget) or from outside --ng-allow",
            None,
            MetricType::Counter,
        )?;
        for reason in ["source_full", "budget_full", "not_allowed"] {
            let n = t.ng_shed.get(reason).copied().unwrap_or(0);
            ConstCounter::new(n).encode(m.encode_family(&[("reason", reason)])?)?;
        }
    }
    counter(
        &mut enc,
        "xrelay_userspace_dropped_packets",
        "Packets the userspace forwarder dropped (strict source)",
        t.userspace_dropped,
    )?;
    // RTP quality of the live calls: gauges, since a call takes its
    // figures with it when it ends.
    let r = &t.rtp;
    for (name, help, value) in [
        (
            "xrelay_rtp_streams",
            "Streams of live calls receiving RTP",
            r.streams,
        ),
        (
            "xrelay_rtp_packets",
            "RTP packets received on live calls' streams",
            r.packets,
        ),
        (
            "xrelay_rtp_packets_lost",
            "RTP packets lost (expected minus received) on live calls' streams",
            r.lost,
        ),
        (
            "xrelay_rtcp_packets",
            "RTCP packets on live calls' streams (RTCP ports and rtcp-mux)",
            r.rtcp_packets,
        ),
        (
            "xrelay_non_rtp_packets",
            "Packets neither RTP nor RTCP (STUN, DTLS, garbage) on live calls' media ports",
            r.other_packets,
        ),
        (
            "xrelay_rtp_ssrc_changes",
            "SSRC changes on live calls' streams",
            r.ssrc_changes,
        ),
        (
            "xrelay_rtp_max_jitter_microseconds",
            "Worst RFC 3550 interarrival jitter of a live stream",
            r.max_jitter_us,
        ),
    ] {
        gauge(
            &mut enc,
            name,
            help,
            i64::try_from(value).unwrap_or(i64::MAX),
        )?;
    }
    // How the live streams spread over jitter and loss, as cumulative
    // gauges with an `le` label ("streams at or below"), for alerts such as
    // "streams above 30 ms of jitter" = streams - le="0.03".
    let spreads: [(&str, &str, Vec<String>, &[u64]); 2] = [
        (
            "xrelay_rtp_streams_by_jitter",
            "Live streams whose RFC 3550 jitter is at most le seconds",
            crate::stats::JITTER_BUCKETS_US
                .iter()
                .map(|us| format!("{}", *us as f64 / 1e6))
                .collect(),
            &r.jitter_buckets,
        ),
        (
            "xrelay_rtp_streams_by_loss",
            "Live streams whose packet loss is at most le (a ratio of expected packets)",
            crate::stats::LOSS_BUCKETS_PERMILLE
                .iter()
                .map(|pm| format!("{}", *pm as f64 / 1e3))
                .collect(),
            &r.loss_buckets,
        ),
    ];
    for (name, help, bounds, counts) in spreads {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (le, count) in bounds.iter().zip(counts) {
            let labels = [("le", le.as_str())];
            ConstGauge::new(i64::try_from(*count).unwrap_or(i64::MAX))
                .encode(m.encode_family(&labels)?)?;
        }
    }
    encode_replication(&t.replication, &mut enc)?;
    encode_load(&t.load, &mut enc)?;
    {
        let mut m = enc.encode_descriptor(
            "xrelay_ng_requests",
            "NG requests, by command and result",
            None,
            MetricType::Counter,
        )?;
        for (command, s) in &t.ng {
            let ok = s.requests - s.errors - s.load_limit;
            for (result, n) in [
                ("ok", ok),
                ("error", s.errors),
                ("load limit", s.load_limit),
            ] {
                ConstCounter::new(n).encode(
                    m.encode_family(&[("command", command.as_str()), ("result", result)])?,
                )?;
            }
        }
    }
    {
        let mut m = enc.encode_descriptor(
            "xrelay_ng_request_duration_seconds",
            "NG request handling time",
            None,
            MetricType::Histogram,
        )?;
        for (command, s) in &t.ng {
            // prometheus-client accumulates the per-bucket counts itself and
            // writes `+Inf` for f64::MAX.
            let slower = s.requests.saturating_sub(s.latency_buckets.iter().sum());
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                .iter()
                .zip(&s.latency_buckets)
                .map(|(us, n)| (*us as f64 / 1e6, *n))
                .chain(std::iter::once((f64::MAX, slower)))
                .collect();
            m.encode_family(&[("command", command.as_str())])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                s.latency_sum_us as f64 / 1e6,
                s.requests,
                &buckets,
                None,
            )?;
        }
    }
    Ok(())
}

fn gauge_f64(enc: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// The load signals: figures, limits, headroom (see [`crate::load`]).
fn encode_load(l: &crate::load::LoadTotals, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    if let Some(v) = l.load_average {
        gauge_f64(
            enc,
            "xrelay_load_average",
            "1-minute load average of the host (what --max-load compares)",
            v,
        )?;
    }
    if let Some(v) = l.cpu_percent {
        gauge_f64(
            enc,
            "xrelay_cpu_usage_percent",
            "Host CPU use over the last 5 s, percent of all CPUs, softirq (XDP) included (what --max-cpu compares)",
            v,
        )?;
    }
    for (name, help, kernel, user) in [
        (
            "xrelay_forwarded_bytes_per_second",
            "Bytes per second forwarded over the last 5 s, by path (their sum is what --max-bandwidth compares)",
            l.rates.kernel_bytes,
            l.rates.user_bytes,
        ),
        (
            "xrelay_forwarded_packets_per_second",
            "Packets per second forwarded over the last 5 s, by path",
            l.rates.kernel_packets,
            l.rates.user_packets,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        ConstGauge::new(v(kernel)).encode(m.encode_family(&[("path", "kernel")])?)?;
        ConstGauge::new(v(user)).encode(m.encode_family(&[("path", "userspace")])?)?;
    }
    let h = &l.headroom;
    let limits: [(&str, Option<f64>, Option<f64>); 4] = [
        (
            "sessions",
            l.max_sessions.map(|m| m as f64),
            h.sessions.map(|v| v as f64),
        ),
        ("load", l.limits.max_load, h.load),
        ("cpu", l.limits.max_cpu, h.cpu),
        (
            "bandwidth",
            l.limits.max_bandwidth.map(|m| m as f64),
            h.bandwidth.map(|v| v as f64),
        ),
    ];
    for (name, help, pick) in [
        (
            "xrelay_load_limit",
            "Configured limit of each load signal (--max-sessions, --max-load, --max-cpu, --max-bandwidth); absent: no limit",
            0,
        ),
        (
            "xrelay_load_headroom",
            "What is left before each configured limit, in its unit (0: new calls are refused)",
            1,
        ),
    ] {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (signal, limit, room) in limits {
            let value = if pick == 0 { limit } else { room };
            if let Some(v) = value {
                ConstGauge::new(v).encode(m.encode_family(&[("signal", signal)])?)?;
            }
        }
    }
    gauge_f64(
        enc,
        "xrelay_headroom_ratio",
        "Smallest headroom as a fraction of its limit (1 without limits, 0: new calls are refused); steer new calls to the relay with the highest",
        h.ratio,
    )?;
    gauge(
        enc,
        "xrelay_refusing_new_calls",
        "1 while new calls get load limit",
        i64::from(l.refusing.is_some()),
    )
}

/// The role, and with `--redis` the state of replication.
fn encode_replication(
    r: &crate::ha::ReplicationTotals,
    enc: &mut DescriptorEncoder,
) -> std::fmt::Result {
    {
        let mut m = enc.encode_descriptor(
            "xrelay_role",
            "1 for this relay's role in an active/standby pair, 0 for the other",
            None,
            MetricType::Gauge,
        )?;
        for role in [crate::ha::Role::Active, crate::ha::Role::Standby] {
            ConstGauge::new(i64::from(r.role == role))
                .encode(m.encode_family(&[("role", role.name())])?)?;
        }
    }
    let Some(redis) = &r.redis else {
        return Ok(());
    };
    let gauges: [(&str, &str, i64); 3] = [
        (
            "xrelay_redis_link_up",
            "1 while the link to Redis (--redis) works",
            i64::from(redis.link == "up"),
        ),
        (
            "xrelay_redis_calls",
            "Calls replicated to Redis (active) or mirrored from it (standby)",
            i64::try_from(redis.calls).unwrap_or(i64::MAX),
        ),
        (
            "xrelay_redis_pending_changes",
            "Calls whose latest change is not in Redis yet (all of them while the link is down)",
            i64::try_from(redis.pending).unwrap_or(i64::MAX),
        ),
    ];
    for (name, help, value) in gauges {
        gauge(enc, name, help, value)?;
    }
    if let Some(ms) = redis.lag_ms {
        let g = ConstGauge::new(ms as f64 / 1e3);
        g.encode(enc.encode_descriptor(
            "xrelay_redis_replication_lag_seconds",
            "Active: age of the oldest change not in Redis yet. Standby: how far behind the active its mirror may be",
            None,
            g.metric_type(),
        )?)?;
    }
    counter(
        enc,
        "xrelay_redis_errors",
        "Failed connections, writes and reads to Redis",
        redis.errors,
    )?;
    counter(
        enc,
        "xrelay_redis_resyncs",
        "Full rewrites (active) or reads (standby) of Redis, at start and after each outage",
        redis.resyncs,
    )?;
    counter(
        enc,
        "xrelay_redis_skipped_values",
        "Values in Redis the standby could not read (another record format, damage)",
        redis.skipped,
    )
}

impl Collector for RelayCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        let calls = crate::lock(&self.calls);
        let counters = calls.kernel_counters();
        // Kernel counters that cannot be read would show as a drop to zero,
        // which Prometheus takes for a counter reset: fail the scrape instead.
        if calls.kernel_enabled() && counters.is_none() {
            return Err(std::fmt::Error);
        }
        let t = totals_with(&calls, &self.ng, counters);
        drop(calls);
        let mut encoder = encoder;
        let mut m = encoder.encode_descriptor(
            "xrelay_ng_connections",
            "NG connections open now (--listen-tcp-ng, WebSocket on --listen-http)",
            None,
            MetricType::Gauge,
        )?;
        for (transport, n) in self.ng.connections() {
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(m.encode_family(&[("transport", transport.name())])?)?;
        }
        encode_totals(&t, encoder)
    }
}

/// The registry relayd scrapes.
pub fn registry(calls: Arc<Mutex<CallManager>>, ng: Arc<NgStats>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(RelayCollector { calls, ng }));
    r
}

/// The scrape: the registry in the text exposition format.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    encode(&mut text, registry)?;
    Ok(text)
}
