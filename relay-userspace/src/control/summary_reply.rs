//! The `query`/`delete` reply, written as bencode straight from a
//! [`CallSummary`], in rtpengine's `query` layout (key names as rtpengine
//! spells them, spaces included) plus the split between kernel and
//! userspace counters that xrelay adds.
//!
//! Building the reply as a tree of dictionaries first cost a few hundred
//! small allocations per `delete`, about a tenth of relayd's time in the NG
//! benchmark. Bencode wants dictionary keys in sorted byte order (capitals
//! first): every dictionary below writes its keys in that order.

use std::net::SocketAddr;

use relay_ng::bencode::Writer;

use crate::calls::summary::{CallSummary, Counts, RtpSummary, StreamSummary, TagSummary};

/// Most bytes a `query`/`delete` reply body may take: with the cookie and
/// the headers it must fit in one UDP datagram (65 507 bytes over IPv4),
/// or the SIP proxy never sees it and retries.
pub const REPLY_BUDGET: usize = 60_000;

/// How much of a call a reply describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    /// Every party, media and stream, and every SSRC.
    Full,
    /// Parties and their medias, without streams or SSRCs.
    Parties,
    /// The call's totals only (`tags` and `SSRC` empty).
    Totals,
}

/// Appends the bencoded `ok` reply for `c` (with `warnings`, joined as
/// rtpengine's single `warning` string) to `out`; `now_unix` dates the
/// streams' `last packet`. A call too large to describe within
/// [`REPLY_BUDGET`] (hundreds of forks or media sections) is described
/// with less detail, and the reply says so under `truncated`.
pub fn write(c: &CallSummary, warnings: &[String], now_unix: u64, out: &mut Vec<u8>) {
    let start = out.len();
    for detail in [Detail::Full, Detail::Parties, Detail::Totals] {
        out.truncate(start);
        write_with(c, warnings, now_unix, detail, out);
        if out.len() - start <= REPLY_BUDGET {
            return;
        }
    }
}

fn write_with(
    c: &CallSummary,
    warnings: &[String],
    now_unix: u64,
    detail: Detail,
    out: &mut Vec<u8>,
) {
    let mut w = Writer::new(out);
    w.dict();
    w.key(b"SSRC");
    if detail == Detail::Full {
        ssrcs(&mut w, c);
    } else {
        w.dict().end();
    }
    w.key(b"created").uint(c.created);
    w.key(b"created_us").uint(u64::from(c.created_us));
    w.key(b"last signal").uint(c.last_signal);
    w.key(b"result").str("ok");
    w.key(b"tags");
    if detail == Detail::Totals {
        w.dict().end();
    } else {
        tags(&mut w, c, now_unix, detail == Detail::Full);
    }
    w.key(b"totals").dict();
    w.key(b"RTCP");
    counts(&mut w, c.rtcp);
    w.key(b"RTP");
    counts(&mut w, c.rtp);
    w.end();
    match detail {
        Detail::Full => {}
        Detail::Parties => {
            w.key(b"truncated")
                .str("streams and SSRCs left out: the reply would not fit in a datagram");
        }
        Detail::Totals => {
            w.key(b"truncated")
                .str("parties and SSRCs left out: the reply would not fit in a datagram");
        }
    }
    if !warnings.is_empty() {
        w.key(b"warning").str(&warnings.join("; "));
    }
    w.end();
}

fn counts(w: &mut Writer<'_>, c: Counts) {
    w.dict();
    w.key(b"bytes").uint(c.bytes);
    w.key(b"errors").uint(c.errors);
    w.key(b"packets").uint(c.packets);
    w.end();
}

fn endpoint(w: &mut Writer<'_>, addr: SocketAddr) {
    w.dict();
    w.key(b"address").str(&addr.ip().to_string());
    w.key(b"family").str(family(addr));
    w.key(b"port").uint(u64::from(addr.port()));
    w.end();
}

fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// An endpoint not known yet: rtpengine still writes the key, with the
/// family alone.
fn unknown_endpoint(w: &mut Writer<'_>, like: SocketAddr) {
    w.dict();
    w.key(b"family").str(family(like));
    w.end();
}

/// The key of each party in `tags`: its tag, or `<untagged N>` for the
/// N-th party without one (a callee before its answer), as rtpengine
/// names them.
fn tag_keys(order: &[&TagSummary]) -> Vec<String> {
    let mut untagged = 0;
    order
        .iter()
        .map(|t| {
            if t.tag.is_empty() {
                untagged += 1;
                format!("<untagged {untagged}>")
            } else {
                t.tag.clone()
            }
        })
        .collect()
}

/// The parties, keyed by tag in sorted order. Parties with the same tag
/// (unanswered branches, whose tag is empty) share one key: the last one
/// is reported, as a dictionary built party by party would keep it.
fn tags(w: &mut Writer<'_>, c: &CallSummary, now_unix: u64, with_streams: bool) {
    let parties: Vec<&TagSummary> = c.tags.iter().collect();
    let mut order: Vec<(String, &TagSummary)> =
        tag_keys(&parties).into_iter().zip(parties).collect();
    order.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the last of equals stays last
    w.dict();
    for (i, (key, t)) in order.iter().enumerate() {
        if order.get(i + 1).is_some_and(|next| next.0 == *key) {
            continue;
        }
        w.key(key.as_bytes()).dict();
        w.key(b"created").uint(t.created);
        if let Some(peer) = &t.in_dialogue_with {
            w.key(b"in dialogue with").str(peer);
        }
        w.key(b"interface").str(&t.interface);
        w.key(b"medias").list();
        for m in &t.medias {
            w.dict();
            w.key(b"flags").list();
            for f in &m.flags {
                w.str(f);
            }
            w.end();
            w.key(b"index").uint(m.index as u64);
            w.key(b"protocol").str(&m.protocol);
            w.key(b"streams").list();
            for s in m.streams.iter().filter(|_| with_streams) {
                stream(w, s, now_unix);
            }
            w.end();
            w.key(b"type").str(&m.kind);
            w.end();
        }
        w.end();
        w.key(b"tag").str(&t.tag);
        w.end();
    }
    w.end();
}

fn stream(w: &mut Writer<'_>, s: &StreamSummary, now_unix: u64) {
    w.dict();
    // xrelay's: the port's DTLS-SRTP endpoint (keys in bencode order).
    if let Some(d) = &s.dtls {
        w.key(b"DTLS").dict();
        w.key(b"failures").uint(d.counters.failures);
        w.key(b"fingerprint mismatches")
            .uint(d.counters.fingerprint_mismatches);
        if let Some(p) = d.profile {
            w.key(b"profile").str(p);
        }
        w.key(b"role").str(d.role);
        w.key(b"state").str(d.state);
        w.key(b"timeouts").uint(d.counters.timeouts);
        w.end();
    }
    if let Some(q) = &s.rtp_quality {
        w.key(b"RTP quality");
        rtp_quality(w, q);
    }
    // xrelay's own: SRTP packets of the party the relay dropped.
    if let Some(srtp) = &s.srtp {
        w.key(b"SRTP").dict();
        w.key(b"auth failures").uint(srtp.auth_failures);
        w.key(b"replays").uint(srtp.replays);
        w.key(b"suite").str(srtp.suite);
        w.end();
    }
    if let Some(ssrc) = s.rtp_quality.as_ref().and_then(|q| q.ssrc) {
        w.key(b"SSRC").uint(u64::from(ssrc));
    }
    // rtpengine's advertised endpoint is where the party's SDP asked for
    // media; its endpoint, where media goes (learned, else the SDP's).
    w.key(b"advertised endpoint");
    match s.sdp_endpoint {
        Some(e) => endpoint(w, e),
        None => unknown_endpoint(w, s.local),
    }
    w.key(b"endpoint");
    match s.confirmed.or(s.sdp_endpoint) {
        Some(e) => endpoint(w, e),
        None => unknown_endpoint(w, s.local),
    }
    w.key(b"flags").list();
    w.str(if s.rtcp { "RTCP" } else { "RTP" });
    if s.sdp_endpoint.is_some() || s.confirmed.is_some() {
        w.str("filled");
    }
    if s.confirmed.is_some() {
        w.str("confirmed");
    }
    if s.kernelized {
        w.str("kernelized");
    }
    w.end();
    w.key(b"kernel stats");
    counts(w, s.kernel);
    if let Some(age) = s.last_packet_age_ms {
        // rtpengine reports the time of the last packet, in unix seconds.
        w.key(b"last packet")
            .uint(now_unix.saturating_sub(age / 1000));
    }
    w.key(b"local address").str(&s.local.ip().to_string());
    w.key(b"local port").uint(u64::from(s.local.port()));
    let mut total = s.user;
    total.add(s.kernel);
    w.key(b"stats");
    counts(w, total);
    w.key(b"userspace stats");
    counts(w, s.user);
    w.end();
}

/// A stream's RTP figures (xrelay's own dictionary; the per-SSRC summary
/// under the top-level `SSRC` key uses rtpengine's names).
fn rtp_quality(w: &mut Writer<'_>, q: &RtpSummary) {
    w.dict();
    w.key(b"RTCP packets").uint(q.rtcp_packets);
    w.key(b"RTP packets").uint(q.rtp_packets);
    w.key(b"SSRC changes").uint(u64::from(q.ssrc_changes));
    w.key(b"clock rate").uint(u64::from(q.clock_rate));
    w.key(b"jitter units").uint(u64::from(q.jitter_units));
    if let Some(us) = q.jitter_us {
        w.key(b"jitter us").uint(us);
    }
    if let Some(seq) = q.last_seq {
        w.key(b"last RTP seq").uint(u64::from(seq));
    }
    w.key(b"non-RTP packets").uint(q.other_packets);
    w.key(b"packets lost").uint(q.lost);
    if let Some(pt) = q.payload_type {
        w.key(b"payload type").uint(u64::from(pt));
    }
    w.end();
}

/// rtpengine's top-level `SSRC` dictionary: one entry per SSRC a stream
/// currently receives, keyed by the SSRC in decimal, with rtpengine's key
/// names (`packets`, `last RTP seq`, `cumulative loss`) plus the jitter in
/// milliseconds and microseconds. Of streams with the same SSRC, the last
/// is reported.
fn ssrcs(w: &mut Writer<'_>, c: &CallSummary) {
    let mut entries: Vec<(String, &TagSummary, &StreamSummary, &RtpSummary)> = c
        .tags
        .iter()
        .flat_map(|t| {
            t.medias
                .iter()
                .flat_map(|m| m.streams.iter())
                .map(move |s| (t, s))
        })
        .filter_map(|(t, s)| {
            let q = s.rtp_quality.as_ref()?;
            Some((q.ssrc?.to_string(), t, s, q))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the last of equals stays last
    w.dict();
    for (i, (ssrc, tag, s, q)) in entries.iter().enumerate() {
        if entries.get(i + 1).is_some_and(|next| next.0 == *ssrc) {
            continue;
        }
        w.key(ssrc.as_bytes()).dict();
        w.key(b"cumulative loss").uint(q.lost);
        if let Some(us) = q.jitter_us {
            w.key(b"jitter").uint(us / 1000);
            w.key(b"jitter us").uint(us);
        }
        if let Some(seq) = q.last_seq {
            w.key(b"last RTP seq").uint(u64::from(seq));
        }
        w.key(b"local port").uint(u64::from(s.local.port()));
        w.key(b"packets").uint(q.rtp_packets);
        w.key(b"tag").str(&tag.tag);
        w.end();
    }
    w.end();
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use relay_ng::{bencode::encode, reply, Value};

    use super::*;
    use crate::calls::summary::MediaSummary;

    /// The tree-built reply this module replaced: the reference it must
    /// match byte for byte.
    mod tree {
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

        fn family(addr: SocketAddr) -> Value {
            Value::str(if addr.is_ipv4() { "IPv4" } else { "IPv6" })
        }

        fn endpoint(addr: SocketAddr) -> Value {
            dict([
                ("family", family(addr)),
                ("address", Value::bytes(addr.ip().to_string())),
                ("port", int(u64::from(addr.port()))),
            ])
        }

        fn endpoint_or_unknown(addr: Option<SocketAddr>, like: SocketAddr) -> Value {
            addr.map_or_else(|| dict([("family", family(like))]), endpoint)
        }

        fn stream(s: &StreamSummary, now: u64) -> Value {
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
                (
                    "advertised endpoint",
                    endpoint_or_unknown(s.sdp_endpoint, s.local),
                ),
                (
                    "endpoint",
                    endpoint_or_unknown(s.confirmed.or(s.sdp_endpoint), s.local),
                ),
                ("flags", Value::str_list(flags)),
                ("stats", counts(total)),
                ("kernel stats", counts(s.kernel)),
                ("userspace stats", counts(s.user)),
            ];
            if let Some(d) = &s.dtls {
                let mut e = vec![
                    ("failures", int(d.counters.failures)),
                    (
                        "fingerprint mismatches",
                        int(d.counters.fingerprint_mismatches),
                    ),
                    ("role", Value::bytes(d.role)),
                    ("state", Value::bytes(d.state)),
                    ("timeouts", int(d.counters.timeouts)),
                ];
                if let Some(p) = d.profile {
                    e.push(("profile", Value::bytes(p)));
                }
                entries.push(("DTLS", dict(e)));
            }
            if let Some(q) = &s.rtp_quality {
                entries.push(("RTP quality", rtp_quality(q)));
                if let Some(ssrc) = q.ssrc {
                    entries.push(("SSRC", int(u64::from(ssrc))));
                }
            }
            if let Some(srtp) = &s.srtp {
                entries.push((
                    "SRTP",
                    dict(vec![
                        ("auth failures", int(srtp.auth_failures)),
                        ("replays", int(srtp.replays)),
                        ("suite", Value::bytes(srtp.suite)),
                    ]),
                ));
            }
            if let Some(age) = s.last_packet_age_ms {
                // rtpengine reports the time of the last packet, in unix seconds.
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
        pub fn call_summary(c: &CallSummary, now: u64) -> Dict {
            let mut untagged = 0;
            let tags: Dict = c
                .tags
                .iter()
                .map(|t| {
                    let medias = t
                        .medias
                        .iter()
                        .map(|m| {
                            dict([
                                ("flags", Value::str_list(m.flags.iter().copied())),
                                ("index", int(m.index as u64)),
                                ("type", Value::str(&m.kind)),
                                ("protocol", Value::str(&m.protocol)),
                                (
                                    "streams",
                                    Value::list(m.streams.iter().map(|s| stream(s, now))),
                                ),
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
                    let key = if t.tag.is_empty() {
                        untagged += 1;
                        format!("<untagged {untagged}>")
                    } else {
                        t.tag.clone()
                    };
                    (key.into_bytes(), dict(entries))
                })
                .collect();
            let mut out = Dict::new();
            out.insert(b"created".to_vec(), int(c.created));
            out.insert(b"created_us".to_vec(), int(u64::from(c.created_us)));
            out.insert(b"last signal".to_vec(), int(c.last_signal));
            out.insert(b"tags".to_vec(), Value::Dict(tags));
            out.insert(b"SSRC".to_vec(), ssrc_dict(c));
            out.insert(
                b"totals".to_vec(),
                dict([("RTP", counts(c.rtp)), ("RTCP", counts(c.rtcp))]),
            );
            out
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn quality(ssrc: Option<u32>, full: bool) -> RtpSummary {
        RtpSummary {
            ssrc,
            ssrc_changes: 2,
            payload_type: full.then_some(8),
            rtp_packets: 1500,
            rtcp_packets: 7,
            other_packets: 1,
            last_seq: full.then_some(70_000),
            lost: 3,
            jitter_units: 160,
            jitter_us: full.then_some(20_000),
            clock_rate: 8000,
        }
    }

    fn stream(local: &str, rtcp: bool, variant: u8) -> StreamSummary {
        StreamSummary {
            local: addr(local),
            advertised: addr(local),
            sdp_endpoint: (variant > 0).then(|| addr("192.0.2.1:5000")),
            confirmed: (variant > 1).then(|| addr("[2001:db8::7]:5002")),
            rtcp,
            kernelized: variant > 2,
            user: Counts {
                packets: 10,
                bytes: 1720,
                errors: 1,
            },
            kernel: Counts {
                packets: 5,
                bytes: 1 << 63,
                errors: 0,
            },
            last_packet_age_ms: (variant > 1).then_some(4_500),
            rtp_quality: match variant {
                0 => None,
                1 => Some(quality(None, false)),
                2 => Some(quality(Some(0xdead_beef), true)),
                _ => Some(quality(Some(42), false)),
            },
            // An SRTP-terminated stream: its keys sort between RTP quality and SSRC.
            srtp: (variant == 2).then_some(crate::calls::summary::SrtpSummary {
                suite: "AEAD_AES_128_GCM",
                auth_failures: 3,
                replays: 1,
            }),
            // Both encoders must write the DTLS dictionary alike.
            dtls: (variant > 1).then(|| crate::calls::dtls::DtlsSummary {
                state: if variant > 2 { "connected" } else { "failed" },
                role: "server",
                profile: (variant > 2).then_some("AEAD_AES_128_GCM"),
                counters: crate::calls::dtls::DtlsCounters {
                    timeouts: 1,
                    fingerprint_mismatches: 2,
                    failures: 3,
                },
            }),
        }
    }

    fn tag(name: &str, peer: Option<&str>, variant: u8) -> TagSummary {
        TagSummary {
            tag: name.to_owned(),
            in_dialogue_with: peer.map(str::to_owned),
            created: 1_700_000_000,
            interface: "pub".to_owned(),
            medias: (0..2)
                .map(|i| MediaSummary {
                    index: i + 1,
                    kind: "audio".to_owned(),
                    protocol: "RTP/AVP".to_owned(),
                    flags: if i == 0 {
                        vec!["initialized", "recv", "send"]
                    } else {
                        vec![]
                    },
                    streams: vec![
                        stream("10.0.0.5:30000", false, variant + i as u8),
                        stream("10.0.0.5:30001", true, variant),
                    ],
                })
                .collect(),
        }
    }

    fn call(tags: Vec<TagSummary>) -> CallSummary {
        CallSummary {
            call_id: "c1".to_owned(),
            created: 1_700_000_000,
            created_us: 123_456,
            last_signal: 1_700_000_100,
            tags,
            rtp: Counts {
                packets: 1,
                bytes: 2,
                errors: 3,
            },
            rtcp: Counts {
                packets: 4,
                bytes: 5,
                errors: 6,
            },
            totals: Counts::default(),
            restored: false,
        }
    }

    fn via_tree(c: &CallSummary, warnings: &[String], now: u64) -> Vec<u8> {
        let body = if warnings.is_empty() {
            reply::ok(tree::call_summary(c, now))
        } else {
            reply::ok_with_warnings(tree::call_summary(c, now), warnings)
        };
        encode(&body)
    }

    fn direct(c: &CallSummary, warnings: &[String], now: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write(c, warnings, now, &mut out);
        out
    }

    #[test]
    fn matches_the_tree_encoder_byte_for_byte() {
        let now = 1_700_000_200;
        let calls = [
            call(vec![]),
            call(vec![tag("a", None, 0)]),
            call(vec![tag("b", Some("a"), 2), tag("a", Some("b"), 1)]),
            // Streams of both parties with the same SSRC, an unanswered
            // branch and a fork sharing the empty tag, tags needing sorting.
            call(vec![
                tag("zz", Some(""), 2),
                tag("", None, 0),
                tag("A", None, 3),
                tag("", Some("zz"), 2),
                tag("a b", None, 1),
            ]),
        ];
        for c in &calls {
            for warnings in [vec![], vec!["w1".to_owned(), "w2".to_owned()]] {
                let expected = via_tree(c, &warnings, now);
                assert_eq!(
                    String::from_utf8_lossy(&direct(c, &warnings, now)),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    #[test]
    fn is_a_reply_the_decoder_reads() {
        let c = call(vec![tag("a", Some("b"), 2)]);
        let v = relay_ng::bencode::decode(&direct(&c, &[], 0)).unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert!(v.get("tags").and_then(|t| t.get("a")).is_some());
    }

    #[test]
    fn a_call_too_large_for_a_datagram_is_summarised_and_says_so() {
        let parties = |n: usize| {
            call(
                (0..n)
                    .map(|i| tag(&format!("tag-{i:04}"), None, 2))
                    .collect(),
            )
        };
        let decode = |c: &CallSummary| {
            let bytes = direct(c, &["w".to_owned()], 0);
            assert!(bytes.len() <= REPLY_BUDGET, "{} bytes", bytes.len());
            relay_ng::bencode::decode(&bytes).unwrap()
        };
        // A few parties: everything, no flag.
        let v = decode(&parties(4));
        assert!(v.get("truncated").is_none());
        assert_eq!(
            v.get("tags").and_then(Value::as_dict).map(|t| t.len()),
            Some(4)
        );

        // Many: every party with its medias, no streams.
        let v = decode(&parties(120));
        let truncated = v.get("truncated").and_then(Value::as_str).unwrap();
        assert!(truncated.starts_with("streams"), "{truncated}");
        let tags = v.get("tags").and_then(Value::as_dict).unwrap();
        assert_eq!(tags.len(), 120);
        let media = &tags
            .values()
            .next()
            .unwrap()
            .get("medias")
            .and_then(Value::as_list)
            .unwrap()[0];
        assert_eq!(
            media
                .get("streams")
                .and_then(Value::as_list)
                .map(|l| l.len()),
            Some(0)
        );
        assert_eq!(
            v.get("SSRC").and_then(Value::as_dict).map(|d| d.len()),
            Some(0)
        );

        // Too many even for that: the totals, which rtpengine's keys keep.
        let v = decode(&parties(3000));
        let truncated = v.get("truncated").and_then(Value::as_str).unwrap();
        assert!(truncated.starts_with("parties"), "{truncated}");
        assert_eq!(
            v.get("tags").and_then(Value::as_dict).map(|t| t.len()),
            Some(0)
        );
        let rtp = v.get("totals").and_then(|t| t.get("RTP")).unwrap();
        assert_eq!(rtp.get("packets").and_then(Value::as_int), Some(1));
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("warning").and_then(Value::as_str), Some("w"));
    }
}
