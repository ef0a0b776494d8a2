//! Call snapshots as NG reply dictionaries, in rtpengine's `query` layout
//! (key names as rtpengine spells them, spaces included), plus the split
//! between kernel and userspace counters that xrelay adds.

use std::net::SocketAddr;

use relay_ng::{Dict, Value};

use crate::calls::summary::{CallSummary, Counts, RtpSummary, StreamSummary};

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::dict(entries)
}

fn counts(c: Counts) -> Value {
    dict([
        ("packets", int(c.packets)),
        ("bytes", int(c.bytes)),
        ("errors", int(c.errors)),
    ])
}

fn endpoint(addr: SocketAddr) -> Value {
    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
    dict([
        ("family", Value::str(family)),
        ("address", Value::bytes(addr.ip().to_string())),
        ("port", int(u64::from(addr.port()))),
    ])
}

fn stream(s: &StreamSummary) -> Value {
    let mut flags = vec![if s.rtcp { "RTCP" } else { "RTP" }];
    if s.sdp_endpoint.is_some() || s.confirmed.is_some() {
        flags.push("filled");
    }
    if s.confirmed.is_some() {
        flags.push("confirmed");
    }
    if s.kernelized {
        flags.push("kernelized");
    }
    let mut total = s.user;
    total.add(s.kernel);
    let mut entries = vec![
        ("local port", int(u64::from(s.local.port()))),
        ("local address", Value::bytes(s.local.ip().to_string())),
        ("advertised endpoint", endpoint(s.advertised)),
        ("flags", Value::str_list(flags)),
        ("stats", counts(total)),
        ("kernel stats", counts(s.kernel)),
        ("userspace stats", counts(s.user)),
    ];
    if let Some(e) = s.confirmed.or(s.sdp_endpoint) {
        entries.push(("endpoint", endpoint(e)));
    }
    if let Some(q) = &s.rtp_quality {
        entries.push(("RTP quality", rtp_quality(q)));
        if let Some(ssrc) = q.ssrc {
            entries.push(("SSRC", int(u64::from(ssrc))));
        }
    }
    if let Some(age) = s.last_packet_age_ms {
        // rtpengine reports the time of the last packet, in unix seconds.
        let now = crate::calls::model::unix_now();
        entries.push(("last packet", int(now.saturating_sub(age / 1000))));
    }
    dict(entries)
}

/// A stream's RTP figures (xrelay's own dictionary; the per-SSRC summary
/// under the top-level `SSRC` key uses rtpengine's names).
fn rtp_quality(q: &RtpSummary) -> Value {
    let mut entries = vec![
        ("RTP packets", int(q.rtp_packets)),
        ("RTCP packets", int(q.rtcp_packets)),
        ("non-RTP packets", int(q.other_packets)),
        ("packets lost", int(q.lost)),
        ("SSRC changes", int(u64::from(q.ssrc_changes))),
        ("jitter units", int(u64::from(q.jitter_units))),
        ("clock rate", int(u64::from(q.clock_rate))),
    ];
    if let Some(us) = q.jitter_us {
        entries.push(("jitter us", int(us)));
    }
    if let Some(seq) = q.last_seq {
        entries.push(("last RTP seq", int(u64::from(seq))));
    }
    if let Some(pt) = q.payload_type {
        entries.push(("payload type", int(u64::from(pt))));
    }
    dict(entries)
}

/// rtpengine's top-level `SSRC` dictionary: one entry per SSRC a stream
/// currently receives, keyed by the SSRC in decimal, with rtpengine's key
/// names (`packets`, `last RTP seq`, `cumulative loss`) plus the jitter in
/// milliseconds and microseconds.
fn ssrc_dict(c: &CallSummary) -> Value {
    let mut out = Dict::new();
    let streams = c.tags.iter().flat_map(|t| {
        t.medias
            .iter()
            .flat_map(|m| m.streams.iter())
            .map(move |s| (t, s))
    });
    for (tag, s) in streams {
        let Some(q) = s.rtp_quality else { continue };
        let Some(ssrc) = q.ssrc else { continue };
        let mut entries = vec![
            ("packets", int(q.rtp_packets)),
            ("cumulative loss", int(q.lost)),
            ("tag", Value::str(&tag.tag)),
            ("local port", int(u64::from(s.local.port()))),
        ];
        if let Some(seq) = q.last_seq {
            entries.push(("last RTP seq", int(u64::from(seq))));
        }
        if let Some(us) = q.jitter_us {
            entries.push(("jitter", int(us / 1000)));
            entries.push(("jitter us", int(us)));
        }
        out.insert(ssrc.to_string().into_bytes(), dict(entries));
    }
    Value::Dict(out)
}

/// `query`/`delete` reply body (without `result`).
pub fn call_summary(c: &CallSummary) -> Dict {
    let tags: Dict = c
        .tags
        .iter()
        .map(|t| {
            let medias = t
                .medias
                .iter()
                .map(|m| {
                    dict([
                        ("index", int(m.index as u64)),
                        ("type", Value::str(&m.kind)),
                        ("protocol", Value::str(&m.protocol)),
                        ("streams", Value::list(m.streams.iter().map(stream))),
                    ])
                })
                .collect::<Vec<_>>();
            let mut entries = vec![
                ("tag", Value::str(&t.tag)),
                ("created", int(t.created)),
                ("interface", Value::str(&t.interface)),
                ("medias", Value::list(medias)),
            ];
            if let Some(peer) = &t.in_dialogue_with {
                entries.push(("in dialogue with", Value::str(peer)));
            }
            (t.tag.clone().into_bytes(), dict(entries))
        })
        .collect();
    let mut out = Dict::new();
    out.insert(b"created".to_vec(), int(c.created));
    out.insert(b"last signal".to_vec(), int(c.last_signal));
    out.insert(b"tags".to_vec(), Value::Dict(tags));
    out.insert(b"SSRC".to_vec(), ssrc_dict(c));
    out.insert(
        b"totals".to_vec(),
        dict([("RTP", counts(c.rtp)), ("RTCP", counts(c.rtcp))]),
    );
    out
}

/// `list` reply body.
pub fn list_reply(ids: &[String]) -> Dict {
    let mut out = Dict::new();
    out.insert(
        b"calls".to_vec(),
        Value::str_list(ids.iter().map(String::as_str)),
    );
    out
}

/// NG `statistics` reply body: rtpengine's `currentstatistics` and
/// `totalstatistics` keys where a figure exists, plus `controlstatistics`.
pub fn statistics(t: &crate::stats::Totals) -> Dict {
    let mut out = Dict::new();
    out.insert(
        b"currentstatistics".to_vec(),
        dict([
            ("sessionsown", int(t.sessions as u64)),
            ("sessionstotal", int(t.sessions as u64)),
        ]),
    );
    out.insert(
        b"totalstatistics".to_vec(),
        dict([
            ("managedsessions", int(t.sessions_total)),
            ("packetsuser", int(t.userspace.packets)),
            ("bytesuser", int(t.userspace.bytes)),
            ("packetskernel", int(t.kernel.packets)),
            ("byteskernel", int(t.kernel.bytes)),
        ]),
    );
    let commands =
        t.ng.iter()
            .map(|(name, s)| {
                (
                    name.as_bytes().to_vec(),
                    dict([
                        ("requests", int(s.requests)),
                        ("errors", int(s.errors)),
                        ("load limit", int(s.load_limit)),
                    ]),
                )
            })
            .collect();
    out.insert(b"controlstatistics".to_vec(), Value::Dict(commands));
    out
}
