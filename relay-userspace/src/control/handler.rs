//! One NG request: decode, answer from the cookie cache or dispatch to the
//! call manager, encode the reply; the work the request leaves for after
//! the reply (see [`crate::calls::deferred`]) comes back with it.

use std::{net::SocketAddr, sync::Mutex, time::Duration};

use relay_ng::{
    bencode::encode_into,
    bencode_reply_to_json,
    command::{Delete, List, OfferAnswer, Query},
    encode_reply_as, parse_datagram, reply, Command, CookieCache, Format, Value,
};
use relay_sdp::{
    codecs, Direction, DtlsRewrite, MediaDtls, MediaIce, MediaRewrite, RewritePlan, RtcpAttribute,
    RtcpMux, Sdp,
};
use tokio::time::Instant;

use super::{reply::list_reply, summary_reply};
use crate::{
    calls::{
        deferred::Deferred, dtls, learning::LearningMode, model::MediaOffer, summary::CallSummary,
        CallManager, Family, IceOption, RtcpMuxFlag, SdpPlan, Signal,
    },
    state::StateKeeper,
    stats::NgStats,
};

/// The reply to one datagram, and what to do once it is sent.
#[derive(Debug)]
pub struct Answer {
    /// The encoded reply, cookie included.
    pub reply: Vec<u8>,
    /// Work for after the reply: run it with [`Deferred::run`].
    pub after: Deferred,
    /// The decoded request and the reply before encoding, kept so that
    /// freeing them also waits until the reply is sent.
    pub spent: Option<(Value, Body)>,
}

/// A reply body before encoding.
#[derive(Debug)]
pub enum Body {
    /// Any reply, as a dictionary.
    Tree(Value),
    /// The `ok` reply of a `query` or `delete`, written without a tree
    /// (see [`summary_reply`]).
    Summary(CallSummary),
}

impl Body {
    /// The reply's `result`.
    fn result(&self) -> &str {
        match self {
            Body::Tree(v) => v.get("result").and_then(Value::as_str).unwrap_or("error"),
            Body::Summary(_) => "ok",
        }
    }
}

/// Answers one datagram; None when it carries no cookie to answer to.
pub fn handle(
    datagram: &[u8],
    calls: &Mutex<CallManager>,
    cache: &mut CookieCache,
    stats: &NgStats,
    state: &StateKeeper,
) -> Option<Answer> {
    let now = std::time::Instant::now();
    let request = match parse_datagram(datagram) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "malformed NG datagram");
            return e.cookie().map(|c| Answer {
                reply: encode_reply_as(c, &reply::error(e.error_reason()), e.format()),
                after: Deferred::default(),
                spent: None,
            });
        }
    };
    if let Some(cached) = cache.get(request.cookie, now) {
        tracing::debug!("NG retransmission answered from cache");
        return Some(Answer {
            reply: cached,
            after: Deferred::default(),
            spent: None,
        });
    }
    let mut after = Deferred::default();
    let mut warnings = Vec::new();
    let mut changes = Vec::new();
    // The call manager's lock, held until the request's changes are
    // committed, so that records of one call reach the store in the order
    // they were taken.
    let mut held = None;
    let (name, body) = match relay_ng::parse(&request.body) {
        Ok(parsed) => {
            let name = parsed.command.name();
            let mut calls = crate::lock(calls);
            let body = dispatch(parsed.command, &parsed.warnings, &mut calls, stats);
            changes = calls.take_changes();
            after = calls.take_deferred();
            warnings = parsed.warnings;
            // Nothing to commit without a store: no reason to hold it.
            held = state.enabled().then_some(calls);
            (name, body)
        }
        Err(e) => {
            tracing::info!(error = %e, "bad NG request");
            ("invalid", Body::Tree(reply::error(&e.to_string())))
        }
    };
    // Room for an offer's SDP or most of a delete's summary without
    // growing the buffer several times.
    let mut bytes = Vec::with_capacity(request.cookie.len() + 1024);
    bytes.extend_from_slice(request.cookie);
    bytes.push(b' ');
    match (&body, request.format) {
        (Body::Tree(v), Format::Bencode) => encode_into(v, &mut bytes),
        (Body::Tree(v), Format::Json) => relay_ng::json::encode_into(v, &mut bytes),
        (Body::Summary(s), format) => {
            summary_reply::write(s, &warnings, crate::calls::model::unix_now(), &mut bytes);
            // The summary is written as bencode bytes (the common case,
            // kept fast); a JSON client gets it transcoded.
            if format == Format::Json {
                if let Some(json) = bencode_reply_to_json(&bytes) {
                    bytes = json;
                }
            }
        }
    }
    // Durable before the reply says it happened: the changes and the reply
    // itself (for a retransmission after a restart), in one write.
    if reply_worth_keeping(name) {
        changes.extend(state.reply_change(request.cookie, &bytes));
    }
    state.commit(&changes);
    drop(held);
    stats.record(name, body.result(), now.elapsed());
    cache.insert(request.cookie.to_vec(), bytes.clone(), now);
    Some(Answer {
        reply: bytes,
        after,
        spent: Some((request.body, body)),
    })
}

/// Whether a retransmission of this command after a restart needs the
/// first reply kept: a restored call answers a repeated offer or answer
/// exactly as before (same tags, same SDP, same ports), and queries may be
/// answered again, but a deleted call is gone.
fn reply_worth_keeping(command: &str) -> bool {
    command == "delete"
}

/// The error a standby answers offers and answers with.
pub const STANDBY_REFUSAL: &str =
    "This relay is a standby: it takes no calls until it takes over from the active";

fn ok(extra: relay_ng::Dict, warnings: &[String]) -> Value {
    if warnings.is_empty() {
        reply::ok(extra)
    } else {
        reply::ok_with_warnings(extra, warnings)
    }
}

/// `SIP-source-address` with `received-from`: the address media is
/// expected from instead of the SDP's, as rtpengine takes it.
fn sip_source(oa: &OfferAnswer) -> Option<std::net::IpAddr> {
    if !oa.flags.sip_source_address {
        return None;
    }
    oa.received_from.as_ref()?.address.parse().ok()
}

/// loop-protect's session attribute: `rtpengine:TOKEN`, the token this
/// relayd's own (random per process), so only SDP it wrote is recognised.
fn loop_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("rtpengine:{:016x}", h.finish())
    })
}

/// Whether `list` holds `word`, case aside.
fn has_word(list: &[String], word: &str) -> bool {
    list.iter().any(|v| v.eq_ignore_ascii_case(word))
}

/// A digest of an SDP without its `o=` line: whether a party sent the same
/// SDP again, for `replace: [SDP-version]`.
fn sdp_digest(sdp: &[u8]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for line in sdp.split(|&b| b == b'\n').filter(|l| !l.starts_with(b"o=")) {
        line.hash(&mut h);
    }
    h.finish()
}

/// The RTP profiles `transport-protocol` can switch between: the plain ones
/// without touching the media, SDES-SRTP by the relay's transform (see
/// `calls::sdes`), DTLS-SRTP by the relay's DTLS endpoint (`calls::dtls`).
fn switchable(proto: &str) -> bool {
    crate::calls::sdes::is_plain_rtp(proto)
        || crate::calls::sdes::is_sdes_srtp(proto)
        || dtls::is_dtls_rtp(proto)
}

/// rtpengine's words for a `delete` of a call it does not have.
const UNKNOWN_DELETE: &str = "Call-ID not found or tags didn't match";

fn dispatch(
    command: Command,
    warnings: &[String],
    calls: &mut CallManager,
    stats: &NgStats,
) -> Body {
    let now = Instant::now();
    let summary = |result: Result<CallSummary, crate::calls::CallError>| match result {
        Ok(summary) => Body::Summary(summary),
        Err(e) => Body::Tree(reply::error(&e.to_string())),
    };
    let tree = match command {
        Command::Ping => {
            // Proxies ping once a minute or so; worth a line for operators
            // checking that their proxy sees the relay.
            tracing::info!("NG ping");
            reply::pong()
        }
        // A standby mirrors the active's calls and serves none until it
        // takes over: a proxy that reaches it is misconfigured, and a
        // clear error says so where a half-made call would not.
        Command::Offer(oa) | Command::Answer(oa) if stats.is_standby() => {
            tracing::info!(call_id = %oa.call_id, "standby: offer or answer refused");
            reply::error(STANDBY_REFUSAL)
        }
        Command::Offer(oa) => match new_call_limit(&oa.call_id, calls, stats) {
            Some(limit) => {
                tracing::info!(call_id = %oa.call_id, reason = limit.message(), "offer for a new call refused");
                reply::limit_reached(limit.message(), oa.supports_load_limit())
            }
            None => offer_answer(&oa, true, warnings, calls, now),
        },
        Command::Answer(oa) => offer_answer(&oa, false, warnings, calls, now),
        Command::Delete(Delete {
            call_id,
            to_tag,
            via_branch,
            delete_delay,
            flags,
            ..
        }) => {
            let delay = delete_delay.map(|s| Duration::from_secs(u64::from(s)));
            let result = match to_tag.filter(|_| flags.to_tag_flag) {
                Some(tag) => calls.delete_branch(&call_id, &tag, delay, now),
                None => calls.delete(&call_id, via_branch.as_deref(), delay, now),
            };
            match result {
                // A proxy deleting a call twice (a BYE and its retransmission,
                // a CANCEL racing a 200) is routine: rtpengine answers ok
                // with a warning, and an error only when asked (`fatal`).
                Err(crate::calls::CallError::UnknownCall) if !flags.fatal => {
                    let mut all = warnings.to_vec();
                    all.push(UNKNOWN_DELETE.to_owned());
                    reply::ok_with_warnings(relay_ng::Dict::new(), &all)
                }
                Err(crate::calls::CallError::UnknownCall) => reply::error(UNKNOWN_DELETE),
                other => return summary(other),
            }
        }
        Command::Query(Query { call_id, .. }) => return summary(calls.query(&call_id)),
        Command::List(List { limit }) => ok(list_reply(&calls.list(limit as usize)), warnings),
        Command::Publish(_)
        | Command::SubscribeRequest(_)
        | Command::SubscribeAnswer(_)
        | Command::Unsubscribe(_)
            if stats.is_standby() =>
        {
            reply::error(STANDBY_REFUSAL)
        }
        Command::Publish(oa) => {
            reply::with_warnings(super::subscribe::publish(&oa, calls, now), warnings)
        }
        Command::SubscribeRequest(s) => {
            reply::with_warnings(super::subscribe::request(&s, calls, now), warnings)
        }
        Command::SubscribeAnswer(a) => {
            reply::with_warnings(super::subscribe::answer(&a, calls, now), warnings)
        }
        Command::Unsubscribe(u) => {
            reply::with_warnings(super::subscribe::unsubscribe(&u, calls), warnings)
        }
        Command::Statistics => ok(
            super::reply::statistics(&crate::stats::totals(calls, stats)),
            warnings,
        ),
    };
    Body::Tree(tree)
}

/// The limit an offer for `call_id` runs into, in rtpengine's order
/// (sessions, load, CPU, bandwidth); offers for existing calls (re-INVITEs)
/// never do.
fn new_call_limit(
    call_id: &str,
    calls: &CallManager,
    stats: &NgStats,
) -> Option<crate::load::Limit> {
    if calls.has_call(call_id) {
        return None;
    }
    if calls.at_session_limit(call_id) {
        return Some(crate::load::Limit::Sessions);
    }
    stats.load.exceeded()
}

/// A trickle-ICE SDP fragment (`fragment` flag): more candidates of a
/// party. relayd's ICE is lite: it answers the checks that reach it from
/// wherever they come and makes none of its own, so a peer's candidates
/// change nothing here. The call's media is left as it is and the reply
/// carries no SDP, as rtpengine answers a fragment.
fn trickle_fragment(
    oa: &OfferAnswer,
    sdp: &relay_sdp::Sdp,
    warnings: &[String],
    calls: &CallManager,
) -> Value {
    let known = calls.has_call(&oa.call_id);
    tracing::debug!(call_id = %oa.call_id, medias = sdp.media_count(), known,
        "trickle ICE fragment: nothing to do for an ICE-lite relay");
    ok(relay_ng::Dict::new(), warnings)
}

fn offer_answer(
    oa: &OfferAnswer,
    is_offer: bool,
    warnings: &[String],
    calls: &mut CallManager,
    now: Instant,
) -> Value {
    let sdp = match relay_sdp::parse(&oa.sdp) {
        Ok(sdp) => sdp,
        Err(e) => {
            tracing::info!(call_id = %oa.call_id, error = %e, "bad SDP");
            return reply::error(&format!("Failed to parse SDP: {e}"));
        }
    };
    if oa.flags.fragment {
        return trickle_fragment(oa, &sdp, warnings, calls);
    }
    if sdp.media_count() == 0 {
        // Nothing to relay; rtpengine refuses it the same way.
        return reply::error("Error rewriting SDP");
    }
    // loop-protect: an SDP this relay already wrote comes back unchanged.
    if oa.flags.loop_protect && sdp.session_has_line(format!("a={}", loop_marker()).as_bytes()) {
        tracing::info!(call_id = %oa.call_id, "SDP already rewritten by this relay (loop-protect): passed through");
        let mut extra = relay_ng::Dict::new();
        extra.insert(b"sdp".to_vec(), Value::Bytes(oa.sdp.clone()));
        return ok(extra, warnings);
    }
    let learning = match oa.endpoint_learning.as_deref().map(LearningMode::from_name) {
        Some(None) => return reply::error("Invalid 'endpoint-learning' value"),
        Some(Some(mode)) => Some(mode),
        None => None,
    };
    let address_family = match oa.address_family.as_deref().map(Family::from_name) {
        // rtpengine ignores a value other than IP4/IP6.
        Some(None) => {
            tracing::info!(call_id = %oa.call_id, "invalid address-family ignored");
            None
        }
        Some(Some(family)) => Some(family),
        None => None,
    };
    let sdp_family = sdp
        .medias()
        .iter()
        .find_map(|m| m.connection)
        .or(sdp.session_connection())
        .map(|c| Family::of(c.addr));
    let formats = payload_types(oa, is_offer, &sdp, calls);
    let signal = Signal {
        call_id: oa.call_id.clone(),
        from_tag: oa.from_tag.clone(),
        to_tag: oa.to_tag.clone(),
        via_branch: oa.via_branch.clone(),
        direction: oa.direction.clone(),
        medias: media_offers(&sdp, &formats, sip_source(oa)),
        learning,
        strict_source: oa.flags.strict_source,
        asymmetric: oa.flags.asymmetric,
        sdp_family,
        address_family,
        sdp_digest: has_word(&oa.replace, "sdp-version").then(|| {
            let sent = sdp.origin().session_version.parse().unwrap_or(0);
            (sdp_digest(&oa.sdp), sent)
        }),
        ice: ice_option(oa.ice.as_deref()),
        sdp_ice: sdp.medias().iter().any(|m| m.has_ice),
        rtcp_mux_flag: rtcp_mux_flag(&oa.rtcp_mux),
        transport_protocol: oa.transport_protocol.clone(),
        sdes: crate::calls::sdes::SdesOptions::parse(&oa.flags.sdes),
        osrtp: crate::calls::sdes::OsrtpOptions::from_flags(&oa.flags),
    };
    let planned = if is_offer {
        calls.offer(&signal, now)
    } else {
        calls.answer(&signal, now)
    };
    let plan = match planned {
        Ok(plan) => plan,
        Err(e) => return reply::error(&e.to_string()),
    };
    // A later subscription to this party is offered its SDP.
    let party = if is_offer {
        Some(&oa.from_tag)
    } else {
        oa.to_tag.as_ref()
    };
    if let Some(tag) = party {
        calls.remember_sdp(&oa.call_id, tag, &oa.sdp);
    }
    let rewrite = rewrite_plan(oa, is_offer, &sdp, &plan, formats);
    match relay_sdp::rewrite(&sdp, &rewrite) {
        Ok(out) => {
            if !is_offer {
                start_dtls(calls, oa, &sdp, &rewrite);
            }
            let mut extra = relay_ng::Dict::new();
            extra.insert(b"sdp".to_vec(), Value::Bytes(out));
            ok(extra, warnings)
        }
        Err(e) => reply::error(&format!("Failed to rewrite SDP: {e}")),
    }
}

/// The payload types each media of the rewritten SDP lists, where they
/// differ from the input's: an offer's (or answer's) codecs stripped and
/// masked as `codec` asks, and an answer's pruned to the codecs the offer
/// carried, as rtpengine does.
fn payload_types(
    oa: &OfferAnswer,
    is_offer: bool,
    sdp: &Sdp,
    calls: &CallManager,
) -> Vec<Option<Vec<String>>> {
    let c = &oa.codec;
    let offered = if is_offer {
        Vec::new()
    } else {
        calls.carried_codecs(&oa.call_id, &oa.from_tag)
    };
    let answered = if is_offer && oa.flags.reuse_codecs {
        calls.peer_codecs(&oa.call_id, &oa.from_tag)
    } else {
        Vec::new()
    };
    sdp.medias()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let stripped = codecs::strip(m, &c.strip, &c.mask, &c.except);
            let media = match &stripped {
                Some(formats) => &relay_sdp::MediaInfo {
                    formats: formats.clone(),
                    ..m.clone()
                },
                None => m,
            };
            let formats = offered
                .get(i)
                .and_then(|o| codecs::prune(media, o))
                .or(stripped);
            if let Some(answered) = answered.get(i) {
                return codecs::reuse(m, formats.as_deref(), answered).or(formats);
            }
            if is_offer || !oa.flags.single_codec {
                return formats;
            }
            codecs::single(m, formats.as_deref()).or(formats)
        })
        .collect()
}

/// Where the SDP's party wants each media, and the codecs it carries on
/// (the payload types of `formats`, or all).
pub(super) fn media_offers(
    sdp: &Sdp,
    formats: &[Option<Vec<String>>],
    source: Option<std::net::IpAddr>,
) -> Vec<MediaOffer> {
    sdp.medias()
        .iter()
        .zip(formats)
        .map(|(m, formats)| {
            // SIP-source-address: the SIP message's source stands in for
            // the SDP's address (a hold's zero address stays a hold).
            let ip = m.connection.map(|c| match source {
                Some(src) if !c.addr.is_unspecified() => src,
                _ => c.addr,
            });
            let usable = |ip: std::net::IpAddr, port: u16| {
                (port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, port))
            };
            let rtp = ip.and_then(|ip| usable(ip, m.port));
            let rtcp = match (&m.rtcp, ip) {
                (Some(a), _) => a
                    .address
                    .map(|c| c.addr)
                    .or(ip)
                    .and_then(|ip| usable(ip, a.port)),
                (None, Some(ip)) => usable(ip, m.port.saturating_add(1)),
                (None, None) => None,
            };
            // On hold or muted: the call falls under --silent-timeout.
            let direction = m.direction.or(sdp.session_direction());
            let muted = matches!(
                direction,
                Some(Direction::SendOnly | Direction::RecvOnly | Direction::Inactive)
            );
            // The first payload type is the one the answer settles on first;
            // its clock drives the jitter figure of the media.
            let clock_rate = m
                .formats
                .first()
                .and_then(|f| f.parse::<u8>().ok())
                .and_then(|pt| m.codec(pt))
                .map(|c| c.clock_rate);
            MediaOffer {
                kind: m.kind.clone(),
                protocol: m.proto.clone(),
                rtp,
                rtcp,
                rtcp_mux: m.rtcp_mux,
                muted,
                is_rtp: m.is_rtp(),
                clock_rate,
                codecs: codecs::carried(m, formats.as_deref()),
                ptime: m.ptime,
                mid: m.mid.clone(),
                ice_ufrag: m.ice_ufrag.clone(),
                // Lines relayd cannot use (other suites, MKI) are not
                // candidates for bridging; they pass through where SRTP does.
                crypto: m
                    .crypto
                    .iter()
                    .filter_map(|v| relay_media::sdes::Crypto::parse(v).ok())
                    .collect(),
                any_crypto: !m.crypto.is_empty(),
                dtls: crate::calls::dtls::PeerDtls {
                    setup: m.setup.clone(),
                    fingerprint: m.fingerprint.clone(),
                },
            }
        })
        .collect()
}

/// The offer's `rtcp-mux` flag that the relay remembers for the answer.
fn rtcp_mux_flag(words: &[String]) -> RtcpMuxFlag {
    let has = |word: &str| words.iter().any(|v| v.eq_ignore_ascii_case(word));
    if has("demux") {
        RtcpMuxFlag::Demux
    } else if has("reject") {
        RtcpMuxFlag::Reject
    } else {
        RtcpMuxFlag::Default
    }
}

/// rtpengine's `ICE=` as far as relayd's ICE-lite goes: `force` and
/// `optional` give the recipient the relay's ICE (`optional` is `force` when
/// the SDP has no ICE, and the relay cannot be a low-priority candidate
/// beside the peer's without relaying their checks), `force-relay` too (the
/// relay is no TURN server: it replaces the candidates rather than adding
/// itself as a relay one), `remove` never, anything else is the default.
fn ice_option(mode: Option<&str>) -> IceOption {
    let is = |word: &str| mode.is_some_and(|m| m.eq_ignore_ascii_case(word));
    if is("remove") {
        IceOption::Remove
    } else if is("force") || is("optional") || is("force-relay") {
        IceOption::Force
    } else {
        IceOption::Default
    }
}

/// After an answer, who is DTLS client is settled on both sides: toward
/// the offerer the relay took the role its answer's `a=setup` says, toward
/// the answerer the opposite of the answerer's `a=setup` (the relay offered
/// actpass). Media without DTLS lose any endpoint they had.
fn start_dtls(calls: &mut CallManager, oa: &OfferAnswer, sdp: &Sdp, rewrite: &RewritePlan) {
    use relay_media::dtls::DtlsRole;
    for (i, m) in rewrite.medias.iter().enumerate() {
        let toward_offerer = match &m.dtls {
            DtlsRewrite::Relay(d) if d.setup == "active" => Some(DtlsRole::Client),
            DtlsRewrite::Relay(d) if d.setup == "passive" => Some(DtlsRole::Server),
            _ => None,
        };
        calls.set_dtls(&oa.call_id, &oa.from_tag, i, toward_offerer);
        let toward_answerer = sdp.medias().get(i).and_then(|md| {
            if !dtls::is_dtls_rtp(&md.proto) || md.fingerprint.is_none() {
                return None;
            }
            match md.setup.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("active") => Some(DtlsRole::Server),
                Some("passive") => Some(DtlsRole::Client),
                _ => None,
            }
        });
        if let Some(to_tag) = &oa.to_tag {
            calls.set_dtls(&oa.call_id, to_tag, i, toward_answerer);
        }
    }
}

/// The DTLS attributes toward the SDP's recipient: the relay's own when it
/// gets DTLS-SRTP (rtpengine writes them for any `UDP/TLS/RTP/SAVP(F)`
/// unless an offer says `DTLS=off`), none when the peer's must not pass.
fn media_dtls(
    oa: &OfferAnswer,
    is_offer: bool,
    proto: &str,
    input: Option<&relay_sdp::MediaInfo>,
    m: &crate::calls::MediaPlan,
) -> DtlsRewrite {
    let off = is_offer && dtls::is_off(oa.dtls.as_deref());
    if dtls::is_dtls_rtp(proto) && !off {
        let setup = dtls::setup_for(is_offer, m.dtls_setup.as_deref(), oa.dtls.as_deref());
        if let Some(fingerprint) = dtls::fingerprint(oa.dtls_fingerprint.as_deref()) {
            return DtlsRewrite::Relay(MediaDtls {
                setup: setup.to_owned(),
                fingerprint,
            });
        }
    }
    if input.is_some_and(|i| i.setup.is_some() || i.fingerprint.is_some()) {
        DtlsRewrite::Strip
    } else {
        DtlsRewrite::Keep
    }
}

/// The rewrite for the SDP going to the other party: relay addresses and
/// ports, rtcp-mux and ICE as the flags ask.
fn rewrite_plan(
    oa: &OfferAnswer,
    is_offer: bool,
    sdp: &Sdp,
    plan: &SdpPlan,
    formats: Vec<Option<Vec<String>>>,
) -> RewritePlan {
    // media-address: the address to advertise instead of the relay's own
    // (a public address in front of this one, given per request).
    let media_address: Option<std::net::IpAddr> =
        oa.media_address.as_deref().and_then(|a| a.parse().ok());
    let advertised = media_address.unwrap_or(plan.address);
    let has = |list: &[String], word: &str| list.iter().any(|v| v.eq_ignore_ascii_case(word));
    // demux takes the offerer's mux off towards the answerer; reject
    // passes it on (and refuses it in the answer, below).
    let flagged = if has(&oa.rtcp_mux, "demux") {
        Some(RtcpMux::Remove)
    } else if has(&oa.rtcp_mux, "reject") {
        Some(RtcpMux::Keep)
    } else if has(&oa.rtcp_mux, "offer") || has(&oa.rtcp_mux, "require") {
        Some(RtcpMux::Offer)
    } else {
        None
    };
    let require = has(&oa.rtcp_mux, "require");
    // rtcp-mux as rtpengine writes it: an offer passes the offerer's on (or
    // adds it when asked; `require` leaves no separate RTCP port). An
    // answer says mux only to an offerer that offered it, and then with
    // `a=rtcp:` naming the RTP port, since both sides now mux. The
    // offer's demux accepts the offerer's mux whatever the answerer does
    // (the relay splits RTCP off); its reject refuses it.
    let mux_of = |i: usize, m: &crate::calls::MediaPlan| -> (RtcpMux, Option<u16>) {
        // The SDP being rewritten (the offer, or the answer) has a=rtcp-mux.
        let answered_mux = sdp.medias().get(i).is_some_and(|md| md.rtcp_mux);
        match flagged {
            _ if !is_offer && m.rtcp_mux && m.rtcp_mux_flag == RtcpMuxFlag::Demux => {
                (RtcpMux::Offer, None)
            }
            _ if !is_offer && m.rtcp_mux_flag == RtcpMuxFlag::Reject => {
                (RtcpMux::Remove, Some(m.rtcp_port))
            }
            Some(RtcpMux::Offer) if is_offer && require => (RtcpMux::Offer, None),
            Some(mode) => (mode, Some(m.rtcp_port)),
            // A re-offer to a party already muxing: RTCP stays on its RTP
            // port (the relay splits it off if the offerer stopped muxing),
            // as rtpengine writes it.
            None if is_offer && m.muxing => (RtcpMux::Keep, None),
            None if is_offer => (RtcpMux::Keep, Some(m.rtcp_port)),
            None if m.rtcp_mux && answered_mux => (RtcpMux::Keep, None),
            None if m.rtcp_mux => (RtcpMux::Keep, Some(m.rtcp_port)),
            None => (RtcpMux::Remove, Some(m.rtcp_port)),
        }
    };
    // The peer's ICE never passes: its candidates would let media bypass
    // the relay. The relay's own replaces it where the plan says so.
    RewritePlan {
        origin_address: (has(&oa.replace, "origin") || has(&oa.replace, "origin-full"))
            .then_some(advertised),
        session_connection: Some(advertised),
        medias: plan
            .medias
            .iter()
            .zip(formats.into_iter().chain(std::iter::repeat(None)))
            .enumerate()
            .map(|(i, (m, formats))| {
                let (rtcp_mux, rtcp_port) = mux_of(i, m);
                // generate-mid numbers the media from 1, as rtpengine.
                let mid = m
                    .mid
                    .clone()
                    .or_else(|| oa.flags.generate_mid.then(|| (i + 1).to_string()));
                let own = sdp
                    .medias()
                    .get(i)
                    .map(|md| md.proto.as_str())
                    .unwrap_or("");
                // An offer takes the profile asked for; an answer goes back
                // in the offerer's own, unless the proxy accepts the
                // answerer's (`transport-protocol: accept`), as rtpengine.
                let protocol = match oa.transport_protocol.as_deref() {
                    Some(asked) if is_offer && switchable(asked) && switchable(own) => {
                        Some(asked.to_ascii_uppercase())
                    }
                    Some(asked) if !is_offer && asked.eq_ignore_ascii_case("accept") => None,
                    _ if !is_offer && switchable(&m.protocol) && switchable(own) => {
                        Some(m.protocol.clone())
                    }
                    _ => None,
                }
                .filter(|p| p != own);
                let dtls = media_dtls(
                    oa,
                    is_offer,
                    protocol.as_deref().unwrap_or(own),
                    sdp.medias().get(i),
                    m,
                );
                MediaRewrite {
                    address: media_address.unwrap_or(m.address),
                    port: m.rtp_port,
                    rtcp_port,
                    rtcp_mux,
                    formats,
                    ptime: m.ptime,
                    mid,
                    protocol,
                    crypto: m.crypto.clone(),
                    dtls,
                    ice: m.ice.as_ref().map(|c| MediaIce {
                        ufrag: c.ufrag.clone(),
                        pwd: c.pwd.clone(),
                        // The relay's address, and the one advertised in
                        // front of it (media-address) when that differs.
                        addresses: std::iter::once(m.address)
                            .chain(media_address.filter(|a| *a != m.address))
                            .collect(),
                    }),
                }
            })
            .collect(),
        remove_ice: true,
        replace_zero_address: has(&oa.replace, "zero-address"),
        origin_version: plan.origin_version,
        strip_extmap: oa.flags.strip_extmap,
        original_direction: oa.flags.original_sendrecv,
        session_attributes: if oa.flags.loop_protect {
            vec![loop_marker().to_owned()]
        } else {
            Vec::new()
        },
        rtcp_attribute: if oa.flags.no_rtcp_attribute {
            RtcpAttribute::Omit
        } else if oa.flags.full_rtcp_attribute {
            RtcpAttribute::Full
        } else {
            RtcpAttribute::Port
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        calls::{kernel::Kernel, CallConfig, Interface},
        interfaces::InterfaceSpec,
        ports::PortPool,
    };

    /// A call manager with one loopback interface and no kernel.
    fn calls(port_min: u16) -> Mutex<CallManager> {
        let spec = InterfaceSpec {
            name: "default".into(),
            address: "127.0.0.1".parse().unwrap(),
            advertised: "127.0.0.1".parse().unwrap(),
        };
        let pool = PortPool::new(spec.address, port_min, port_min + 7).unwrap();
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Mutex::new(CallManager::new(
            CallConfig::default(),
            vec![Interface { spec, pool }],
            Kernel::new(None, 16),
            events,
        ))
    }

    fn ask(calls: &Mutex<CallManager>, cache: &mut CookieCache, datagram: &[u8]) -> String {
        let stats = NgStats::default();
        let answer = handle(datagram, calls, cache, &stats, &StateKeeper::off()).expect("answered");
        String::from_utf8(answer.reply).expect("UTF-8 reply")
    }

    /// rtpengine answers a JSON request in JSON (checked against 10.5):
    /// replies built as values, the summaries written as bencode, and the
    /// error for a document that does not parse.
    #[tokio::test]
    async fn json_requests_get_json_replies() {
        let calls = calls(47_310);
        let mut cache = CookieCache::new(Duration::from_secs(30));
        assert_eq!(
            ask(&calls, &mut cache, br#"c1 {"command":"ping"}"#),
            r#"c1 {"result":"pong"}"#
        );
        assert_eq!(
            ask(&calls, &mut cache, b"c2 d7:command4:pinge"),
            "c2 d6:result4:ponge"
        );
        let offer = br#"c3 {"command":"offer","call-id":"j1","from-tag":"a","sdp":"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=caf\u00e9\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"}"#;
        let reply: serde_json::Value =
            serde_json::from_str(ask(&calls, &mut cache, offer).strip_prefix("c3 ").unwrap())
                .expect("a JSON reply");
        assert_eq!(reply["result"], "ok");
        let sdp = reply["sdp"].as_str().expect("SDP as a JSON string");
        assert!(
            sdp.contains("s=café\r\n") && sdp.contains("m=audio 473"),
            "{sdp}"
        );
        let query = ask(
            &calls,
            &mut cache,
            br#"c4 {"command":"query","call-id":"j1"}"#,
        );
        let reply: serde_json::Value =
            serde_json::from_str(query.strip_prefix("c4 ").unwrap()).expect("a JSON reply");
        assert_eq!(reply["result"], "ok");
        assert!(reply["created"].is_u64(), "numbers stay numbers: {reply}");
        assert_eq!(reply["tags"]["a"]["tag"], "a");
        assert_eq!(
            ask(&calls, &mut cache, b"c5 {bad"),
            r#"c5 {"error-reason":"Failed to parse JSON document","result":"error"}"#
        );
        // A retransmission gets the same JSON from the cookie cache.
        assert_eq!(
            ask(&calls, &mut cache, br#"c1 {"command":"ping"}"#),
            r#"c1 {"result":"pong"}"#
        );
    }

    /// A trickle-ICE fragment (`fragment` flag) is answered `ok` without
    /// SDP, for a call offered or not, and leaves the call's media as the
    /// offer made it (it is not a re-offer).
    #[tokio::test]
    async fn a_trickle_fragment_changes_nothing_and_gets_no_sdp() {
        let calls = calls(47_320);
        let mut cache = CookieCache::new(Duration::from_secs(30));
        let fragment = |cookie: &str, call: &str| {
            format!(
                r#"{cookie} {{"command":"offer","call-id":"{call}","from-tag":"a","flags":["fragment"],"sdp":"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=ice-ufrag:F7gI\r\na=ice-pwd:x9cml7YzichV2XlhiMu8gA\r\na=candidate:3 1 UDP 16777215 198.51.100.7 26600 typ relay raddr 10.0.0.1 rport 5000\r\n"}}"#
            )
        };
        assert_eq!(
            ask(&calls, &mut cache, fragment("f1", "early").as_bytes()),
            r#"f1 {"result":"ok"}"#,
            "a fragment ahead of its offer"
        );
        assert!(
            !calls.lock().unwrap().has_call("early"),
            "it sets up no call"
        );
        let offer = br#"f2 {"command":"offer","call-id":"t1","from-tag":"a","sdp":"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 8\r\n"}"#;
        assert!(ask(&calls, &mut cache, offer).contains(r#""result":"ok""#));
        let codecs = |calls: &Mutex<CallManager>| calls.lock().unwrap().carried_codecs("t1", "a");
        let before = codecs(&calls);
        assert_eq!(before[0].len(), 2, "{before:?}");
        assert_eq!(
            ask(&calls, &mut cache, fragment("f3", "t1").as_bytes()),
            r#"f3 {"result":"ok"}"#
        );
        assert_eq!(
            codecs(&calls),
            before,
            "the fragment's one codec did not replace the offer's"
        );
    }

    /// Replies built apart from the offer/answer path (publish, subscribe)
    /// carry the warnings of what the request asked for in vain.
    #[tokio::test]
    async fn publish_replies_carry_the_request_warnings() {
        let calls = calls(47_330);
        let mut cache = CookieCache::new(Duration::from_secs(30));
        let publish = br#"p1 {"command":"publish","call-id":"p","from-tag":"pub","flags":["no-such-flag"],"sdp":"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"}"#;
        let reply: serde_json::Value = serde_json::from_str(
            ask(&calls, &mut cache, publish)
                .strip_prefix("p1 ")
                .unwrap(),
        )
        .expect("a JSON reply");
        assert_eq!(reply["result"], "ok");
        assert_eq!(reply["warning"], "Ignored unsupported flag 'no-such-flag'");
        assert!(reply["sdp"].is_string());
    }
}
