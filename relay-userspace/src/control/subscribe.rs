//! NG `publish`, `subscribe request`, `subscribe answer` and
//! `unsubscribe`: parse the SDPs, call [`crate::calls::subscribe`], write
//! the SDPs and replies as rtpengine 10.5 does (checked with the
//! conformance cases `subscribe-*`).
//!
//! The SDP offered to a subscriber of one party is that party's own SDP
//! rewritten (relay address and ports, the negotiated codecs, `sendonly`);
//! of several parties (or to a publisher), a session of the relay's own
//! holding each source media so rewritten, with a media-level `c=`.

use relay_ng::{
    command::{OfferAnswer, Subscribe, SubscribeAnswer, Unsubscribe},
    reply, Dict, Value,
};
use relay_sdp::{codecs, MediaRewrite, RewritePlan, RtcpAttribute, RtcpMux, Sdp};
use tokio::time::Instant;

use crate::calls::{
    model::MediaOffer, subscribe::SubscribeError, CallManager, Family, IceOption, SdpPlan, Signal,
};

/// `publish`: the publisher's ports, answered `recvonly` with its first codec.
pub fn publish(oa: &OfferAnswer, calls: &mut CallManager, now: Instant) -> Value {
    let sdp = match parse(&oa.sdp) {
        Ok(sdp) => sdp,
        Err(e) => return e,
    };
    let mut sig = signal(&oa.call_id, &oa.from_tag, &sdp);
    sig.direction = oa.direction.clone();
    let plan = match calls.publish(&sig, now) {
        Ok(plan) => plan,
        Err(e) => return reply::error(&e.to_string()),
    };
    calls.remember_sdp(&oa.call_id, &oa.from_tag, &oa.sdp);
    // The answer accepts one codec per media: the publisher's first.
    let formats: Vec<Option<Vec<String>>> = sdp
        .medias()
        .iter()
        .map(|m| m.formats.first().map(|f| vec![f.clone()]))
        .collect();
    match rewritten(&sdp, &plan, formats, "a=recvonly") {
        Ok(out) => sdp_reply(own_session(&plan, &[out]), Dict::new()),
        Err(e) => e,
    }
}

/// `subscribe request`: a subscriber's ports and the SDP offer for it.
pub fn request(s: &Subscribe, calls: &mut CallManager, now: Instant) -> Value {
    let from_tags: &[String] = if s.flags.all { &[] } else { &s.from_tags };
    if from_tags.is_empty() && !s.flags.all {
        return reply::error(&SubscribeError::NothingToSubscribe.to_string());
    }
    let sub = match calls.subscribe(&s.call_id, from_tags, s.to_tag.as_deref(), now) {
        Ok(sub) => sub,
        Err(e) => return reply::error(&e.to_string()),
    };
    let mut extra = Dict::new();
    let tags = Value::list(sub.from_tags.iter().map(|t| Value::str(t)));
    if let [only] = sub.from_tags.as_slice() {
        extra.insert(b"from-tag".to_vec(), Value::str(only));
    }
    extra.insert(b"from-tags".to_vec(), tags);
    extra.insert(b"to-tag".to_vec(), Value::str(&sub.to_tag));
    // One source with a known SDP: that SDP, rewritten.
    if let Some(raw) = &sub.source_sdp {
        if let Ok(sdp) = relay_sdp::parse(raw) {
            if sdp.media_count() == sub.plan.medias.len() {
                let formats = pruned(&sdp, &sub.codecs);
                return match rewritten(&sdp, &sub.plan, formats, "a=sendonly") {
                    Ok(out) => sdp_reply(out, extra),
                    Err(e) => e,
                };
            }
        }
    }
    match sources_sdp(calls, &s.call_id, &sub) {
        Ok(out) => sdp_reply(out, extra),
        Err(e) => e,
    }
}

/// `subscribe answer`: where the subscriber wants its copies.
pub fn answer(a: &SubscribeAnswer, calls: &mut CallManager, now: Instant) -> Value {
    let sdp = match parse(&a.sdp) {
        Ok(sdp) => sdp,
        Err(e) => return e,
    };
    let sig = signal(&a.call_id, &a.to_tag, &sdp);
    match calls.subscribe_answer(&sig, now) {
        Ok(()) => reply::ok(Dict::new()),
        Err(e) => reply::error(&e.to_string()),
    }
}

/// `unsubscribe`.
pub fn unsubscribe(u: &Unsubscribe, calls: &mut CallManager) -> Value {
    match calls.unsubscribe(&u.call_id, &u.to_tag) {
        Ok(()) => reply::ok(Dict::new()),
        Err(e) => reply::error(&e.to_string()),
    }
}

fn parse(raw: &[u8]) -> Result<Sdp, Value> {
    match relay_sdp::parse(raw) {
        Ok(sdp) if sdp.media_count() > 0 => Ok(sdp),
        Ok(_) => Err(reply::error("Error rewriting SDP")),
        Err(e) => Err(reply::error(&format!("Failed to parse SDP: {e}"))),
    }
}

/// The signal of a publisher's or subscriber's SDP.
fn signal(call_id: &str, tag: &str, sdp: &Sdp) -> Signal {
    let formats = vec![None; sdp.media_count()];
    let medias: Vec<MediaOffer> = super::handler::media_offers(sdp, &formats, None);
    let sdp_family = sdp
        .medias()
        .iter()
        .find_map(|m| m.connection)
        .or(sdp.session_connection())
        .map(|c| Family::of(c.addr));
    Signal {
        call_id: call_id.to_owned(),
        from_tag: tag.to_owned(),
        to_tag: None,
        via_branch: None,
        direction: Vec::new(),
        medias,
        learning: None,
        strict_source: false,
        asymmetric: false,
        sdp_family,
        address_family: None,
        sdp_digest: None,
        ice: IceOption::Remove,
        sdp_ice: false,
        rtcp_mux_flag: crate::calls::RtcpMuxFlag::Default,
        transport_protocol: None,
        sdes: Default::default(),
        osrtp: Default::default(),
    }
}

/// Each media's payload types pruned to `codecs` (None: all).
fn pruned(sdp: &Sdp, codecs_of: &[Vec<codecs::Carried>]) -> Vec<Option<Vec<String>>> {
    sdp.medias()
        .iter()
        .zip(codecs_of)
        .map(|(m, c)| codecs::prune(m, c))
        .collect()
}

/// `sdp` with the relay's ports of `plan`, `formats`, and `direction`
/// instead of the direction the rewrite writes.
fn rewritten(
    sdp: &Sdp,
    plan: &SdpPlan,
    formats: Vec<Option<Vec<String>>>,
    direction: &str,
) -> Result<Vec<u8>, Value> {
    let rewrite = RewritePlan {
        session_connection: Some(plan.address),
        medias: plan
            .medias
            .iter()
            .zip(formats.into_iter().chain(std::iter::repeat(None)))
            .map(|(m, formats)| MediaRewrite {
                address: m.address,
                port: m.rtp_port,
                rtcp_port: Some(m.rtcp_port),
                rtcp_mux: RtcpMux::Remove,
                formats,
                ptime: None,
                mid: None,
                protocol: None,
                ice: None,
                crypto: None,
                dtls: relay_sdp::DtlsRewrite::Keep,
            })
            .collect(),
        remove_ice: true,
        rtcp_attribute: RtcpAttribute::Port,
        ..RewritePlan::default()
    };
    let out = relay_sdp::rewrite(sdp, &rewrite)
        .map_err(|e| reply::error(&format!("Failed to rewrite SDP: {e}")))?;
    Ok(with_direction(&out, direction))
}

/// Replaces every direction attribute line with `direction`.
fn with_direction(sdp: &[u8], direction: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(sdp);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        match bare {
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => {
                out.push_str(direction);
                out.push_str(&line[bare.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// The SDP for a subscriber of several parties: each party's SDP
/// rewritten for its share of the subscriber's ports, in one session.
fn sources_sdp(
    calls: &CallManager,
    call_id: &str,
    sub: &crate::calls::subscribe::Subscription,
) -> Result<Vec<u8>, Value> {
    let mut sections = Vec::new();
    let mut at = 0;
    for tag in &sub.from_tags {
        let raw = calls
            .party_sdp(call_id, tag)
            .ok_or_else(|| reply::error(&SubscribeError::NothingToSubscribe.to_string()))?;
        let sdp = relay_sdp::parse(&raw)
            .map_err(|e| reply::error(&format!("Failed to parse SDP: {e}")))?;
        let n = sdp.media_count();
        let share = SdpPlan {
            address: sub.plan.address,
            medias: sub.plan.medias.iter().skip(at).take(n).cloned().collect(),
            origin_version: None,
        };
        if share.medias.len() != n {
            return Err(reply::error("Error rewriting SDP"));
        }
        let formats = pruned(&sdp, sub.codecs.get(at..at + n).unwrap_or(&[]));
        sections.push(rewritten(&sdp, &share, formats, "a=sendonly")?);
        at += n;
    }
    Ok(own_session(&sub.plan, &sections))
}

/// A session of the relay's own (rtpengine's shape) around the media
/// sections of `sdps`, each with a media-level `c=`.
fn own_session(plan: &SdpPlan, sdps: &[Vec<u8>]) -> Vec<u8> {
    let family = Family::of(plan.address);
    let c = format!("c=IN {family} {}\r\n", plan.address);
    let version = crate::calls::model::unix_now();
    let mut out = format!(
        "v=0\r\no=- {version} {version} IN {family} {}\r\ns=xrelay\r\nt=0 0\r\n",
        plan.address
    );
    for sdp in sdps {
        let text = String::from_utf8_lossy(sdp);
        let mut in_media = false;
        for line in text.lines() {
            in_media |= line.starts_with("m=");
            // The session part is the relay's; each media gets its own c=.
            // rtpengine's own session leaves out the wildcard feedback lines.
            if !in_media || line.starts_with("c=") || line.starts_with("a=rtcp-fb:*") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
            if line.starts_with("m=") {
                out.push_str(&c);
            }
        }
    }
    out.into_bytes()
}

fn sdp_reply(sdp: Vec<u8>, mut extra: Dict) -> Value {
    extra.insert(b"sdp".to_vec(), Value::Bytes(sdp));
    reply::ok(extra)
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Duration};

    use relay_ng::{CookieCache, Value};

    use crate::{
        calls::{kernel::Kernel, CallConfig, CallManager, Interface},
        control::handler::handle,
        interfaces::InterfaceSpec,
        ports::PortPool,
        state::StateKeeper,
        stats::NgStats,
    };

    fn calls() -> Mutex<CallManager> {
        let spec = InterfaceSpec {
            name: "default".into(),
            address: "127.0.0.1".parse().unwrap(),
            advertised: "192.0.2.1".parse().unwrap(),
        };
        let pool = PortPool::new(spec.address, 47_400, 47_419).unwrap();
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Mutex::new(CallManager::new(
            CallConfig::default(),
            vec![Interface { spec, pool }],
            Kernel::new(None, 16),
            events,
        ))
    }

    /// Sends `entries` as one bencode request; the reply as a value.
    fn ask(calls: &Mutex<CallManager>, entries: &[(&str, &str)]) -> Value {
        let mut cache = CookieCache::new(Duration::from_secs(30));
        let body = Value::dict(entries.iter().map(|(k, v)| (*k, Value::str(v))));
        let mut datagram = b"c ".to_vec();
        relay_ng::bencode::encode_into(&body, &mut datagram);
        let answer = handle(
            &datagram,
            calls,
            &mut cache,
            &NgStats::default(),
            &StateKeeper::off(),
        )
        .expect("answered");
        let (_, reply) = answer.reply.split_at(2);
        relay_ng::bencode::decode(reply).expect("a bencode reply")
    }

    fn text(v: &Value, key: &str) -> String {
        String::from_utf8_lossy(v.get(key).and_then(Value::as_bytes).unwrap_or(b"")).into_owned()
    }

    const A: &str = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=Talk\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    const B: &str = "v=0\r\no=b 1 1 IN IP4 10.0.0.2\r\ns=Talk\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
        m=audio 5000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    /// The replies as rtpengine 10.5 gives them (checked with the
    /// conformance cases): a subscription to one party is its SDP with the
    /// answer's codecs, sendonly, and from-tag, from-tags and to-tag.
    #[tokio::test]
    async fn replies_and_errors_as_rtpengine() {
        let calls = calls();
        let offer = [
            ("command", "offer"),
            ("call-id", "x"),
            ("from-tag", "A"),
            ("sdp", A),
        ];
        assert_eq!(text(&ask(&calls, &offer), "result"), "ok");
        let answer = [
            ("command", "answer"),
            ("call-id", "x"),
            ("from-tag", "A"),
            ("to-tag", "B"),
            ("sdp", B),
        ];
        assert_eq!(text(&ask(&calls, &answer), "result"), "ok");
        let r = ask(
            &calls,
            &[
                ("command", "subscribe request"),
                ("call-id", "x"),
                ("from-tag", "A"),
            ],
        );
        assert_eq!(text(&r, "from-tag"), "A");
        assert_eq!(r.get("from-tags"), Some(&Value::list([Value::str("A")])));
        let to_tag = text(&r, "to-tag");
        assert_eq!(to_tag.len(), 64, "a made-up tag, as rtpengine's");
        let sdp = text(&r, "sdp");
        assert!(
            sdp.starts_with("v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=Talk\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("m=audio 4740"), "{sdp}");
        assert!(
            sdp.contains(" RTP/AVP 8 101\r\n"),
            "the answer's codecs: {sdp}"
        );
        assert!(
            sdp.contains("a=sendonly\r\n") && !sdp.contains("sendrecv"),
            "{sdp}"
        );

        let error = |entries: &[(&str, &str)]| text(&ask(&calls, entries), "error-reason");
        assert_eq!(
            error(&[
                ("command", "subscribe request"),
                ("call-id", "y"),
                ("from-tag", "A")
            ]),
            "Unknown call-ID"
        );
        assert_eq!(
            error(&[("command", "subscribe request"), ("call-id", "x")]),
            "No monologues matched",
            "neither a from-tag nor `all`"
        );
        assert_eq!(
            error(&[
                ("command", "subscribe request"),
                ("call-id", "x"),
                ("from-tag", "Q")
            ]),
            "From-tag given, but no such tag exists"
        );
        assert_eq!(
            error(&[
                ("command", "subscribe answer"),
                ("call-id", "x"),
                ("to-tag", "Q"),
                ("sdp", B)
            ]),
            "To-tag not found"
        );
        let ok = |entries: &[(&str, &str)]| text(&ask(&calls, entries), "result");
        let sub_answer = [
            ("command", "subscribe answer"),
            ("call-id", "x"),
            ("to-tag", to_tag.as_str()),
            ("sdp", B),
        ];
        assert_eq!(ok(&sub_answer), "ok");
        let unsub = [
            ("command", "unsubscribe"),
            ("call-id", "x"),
            ("to-tag", to_tag.as_str()),
        ];
        assert_eq!(ok(&unsub), "ok");
        assert_eq!(ok(&unsub), "ok", "twice: still ok, as rtpengine");

        // Two parties: a session of the relay's own, media-level c=.
        let r = ask(
            &calls,
            &[
                ("command", "subscribe request"),
                ("call-id", "x"),
                ("flags", "all"),
            ],
        );
        let sdp = text(&r, "sdp");
        assert_eq!(sdp.matches("m=audio").count(), 2, "{sdp}");
        assert_eq!(sdp.matches("c=IN IP4 192.0.2.1\r\n").count(), 2, "{sdp}");
        assert!(sdp.starts_with("v=0\r\no=- "), "{sdp}");

        // publish: recvonly, the publisher's first codec.
        let r = ask(
            &calls,
            &[
                ("command", "publish"),
                ("call-id", "p"),
                ("from-tag", "P"),
                ("sdp", A),
            ],
        );
        let sdp = text(&r, "sdp");
        assert!(
            sdp.contains(" RTP/AVP 0\r\n") && sdp.contains("a=recvonly\r\n"),
            "{sdp}"
        );
    }
}
