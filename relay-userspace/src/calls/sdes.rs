//! SDES-SRTP bridging (RFC 4568), as rtpengine does it with
//! `transport-protocol`: a plain RTP party (`RTP/AVP`, `RTP/AVPF`) and an
//! SRTP one (`RTP/SAVP`, `RTP/SAVPF` with `a=crypto`) talk through the relay,
//! which decrypts what the SRTP party sends and encrypts what it receives
//! with keys of its own.
//!
//! Two ways in:
//! - a plain offer with `transport-protocol: RTP/SAVP[F]`: the relay offers
//!   its own `a=crypto` lines to the callee; the one the callee answers (by
//!   tag) keys that side; the answer to the caller has none.
//! - an SRTP offer with `transport-protocol: RTP/AVP[F]`: the callee gets no
//!   `a=crypto`; once it answers, the relay picks the first of the caller's
//!   suites it implements and answers with its own key under the caller's tag.
//!
//! SRTP on both sides without `transport-protocol` passes end to end
//! untouched (and stays in the kernel).

use std::sync::Arc;

use relay_media::{
    sdes::Crypto,
    srtp::{Direction, SrtpContext, SrtpError},
    SrtpProfile,
};

use super::{model::Media, port::MediaPort};

/// rtpengine 10.5's suites in the order (and so with the tags) it offers
/// them; relayd offers those it implements under the same tags, so a peer
/// sees the same tag for the same suite from either relay.
const RTPENGINE_SUITES: [&str; 12] = [
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
];

/// The `SDES-...` flags (and `SDES` list) relayd acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesOptions {
    /// `SDES-off`: offer no `a=crypto`.
    pub off: bool,
    /// `SDES-no-<SUITE>`: suites not to offer or pick.
    pub no: Vec<String>,
}

impl SdesOptions {
    /// From what followed `SDES-` in the flags. `only-<SUITE>` and the other
    /// options are accepted and ignored, as rtpengine 10.5 does with
    /// `only-` (checked against it: its offer is unchanged).
    pub fn parse(items: &[String]) -> Self {
        let mut o = SdesOptions::default();
        for item in items {
            if item.eq_ignore_ascii_case("off") {
                o.off = true;
            } else if item.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("no-")) {
                o.no.push(item.get(3..).unwrap_or_default().to_owned());
            }
        }
        o
    }

    fn excluded(&self, suite: &str) -> bool {
        self.no.iter().any(|n| n.eq_ignore_ascii_case(suite))
    }
}

/// `RTP/SAVP` or `RTP/SAVPF`: SRTP keyed by SDES (DTLS-SRTP is `UDP/TLS/...`).
pub(crate) fn is_sdes_srtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

/// `RTP/AVP` or `RTP/AVPF`.
pub(crate) fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The SDES state of one media of one party.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSdes {
    /// The usable `a=crypto` of the party's latest SDP.
    pub party: Vec<Crypto>,
    /// The relay's own keys in the SDP sent to the party.
    pub relay: Vec<Crypto>,
    /// The `a=crypto` values for the next SDP to the party (`None`: the
    /// SDP's own pass through).
    pub lines: Option<Vec<String>>,
    /// The party's SRTP ends at the relay: (the party's key, the relay's).
    pub active: Option<(Crypto, Crypto)>,
    /// The party offered SRTP towards a plain callee: the relay answers it
    /// with a key of its own once the callee answers.
    pub terminate: bool,
}

/// An offer from the party owning `sender` (its media `offer_crypto`,
/// protocol `own`) to the one owning `recipient`, asked to arrive as
/// `asked` (`transport-protocol`).
pub(crate) fn on_offer(
    sender: &mut MediaSdes,
    recipient: &mut MediaSdes,
    offer_crypto: Vec<Crypto>,
    own: &str,
    asked: Option<&str>,
    opts: &SdesOptions,
) {
    sender.party = offer_crypto;
    sender.lines = None;
    let to = asked.unwrap_or(own);
    sender.terminate = false;
    if is_plain_rtp(own) && is_sdes_srtp(to) {
        recipient.relay = if opts.off {
            Vec::new()
        } else {
            relay_offer(&recipient.relay, opts)
        };
        recipient.lines = Some(recipient.relay.iter().map(ToString::to_string).collect());
    } else if is_sdes_srtp(own) && is_plain_rtp(to) {
        sender.terminate = true;
        recipient.relay.clear();
        recipient.lines = Some(Vec::new());
    } else {
        recipient.relay.clear();
        recipient.lines = None;
    }
}

/// The answer from the party owning `answerer` to the offer of the one
/// owning `offerer`.
pub(crate) fn on_answer(
    offerer: &mut MediaSdes,
    answerer: &mut MediaSdes,
    answer_crypto: Vec<Crypto>,
) {
    answerer.party = answer_crypto;
    answerer.lines = None;
    if !answerer.relay.is_empty() {
        // The callee picked one of the relay's lines by tag.
        answerer.active = answerer.party.iter().find_map(|theirs| {
            answerer
                .relay
                .iter()
                .find(|ours| ours.tag == theirs.tag && ours.profile() == theirs.profile())
                .map(|ours| (theirs.clone(), ours.clone()))
        });
        offerer.active = None;
        offerer.lines = Some(Vec::new());
    } else if offerer.terminate {
        answerer.active = None;
        // The caller's first usable suite; `SDES-no-` only shapes the
        // relay's own offers (rtpengine 10.5 ignores it here too).
        let pick = offerer.party.first().cloned();
        match pick {
            Some(theirs) => {
                let ours = offerer
                    .relay
                    .iter()
                    .find(|r| r.tag == theirs.tag && r.profile() == theirs.profile())
                    .cloned()
                    .unwrap_or_else(|| Crypto::generate(theirs.tag, theirs.profile()));
                offerer.relay = vec![ours.clone()];
                offerer.lines = Some(vec![ours.to_string()]);
                offerer.active = Some((theirs, ours));
            }
            None => {
                tracing::warn!(
                    "SRTP offer without a crypto suite relayd implements: media stays plain"
                );
                offerer.relay.clear();
                offerer.lines = Some(Vec::new());
                offerer.active = None;
            }
        }
    } else {
        offerer.active = None;
        answerer.active = None;
        offerer.lines = None;
    }
}

/// The relay's `a=crypto` offer: every suite relayd implements that the
/// flags leave, tagged as rtpengine tags it; a key already offered for a
/// suite is kept (a re-offer does not rekey).
fn relay_offer(before: &[Crypto], opts: &SdesOptions) -> Vec<Crypto> {
    RTPENGINE_SUITES
        .iter()
        .filter(|s| !opts.excluded(s))
        .enumerate()
        .filter_map(|(i, name)| {
            let profile = SrtpProfile::from_sdes_name(name)?;
            let tag = u32::try_from(i + 1).ok()?;
            Some(
                before
                    .iter()
                    .find(|c| c.profile() == profile && c.tag == tag)
                    .cloned()
                    .unwrap_or_else(|| Crypto::generate(tag, profile)),
            )
        })
        .collect()
}

/// The SRTP transform of one relay port: unprotect what its party sends,
/// protect what is sent to it.
pub struct PortSrtp {
    keys: (Crypto, Crypto),
    inbound: SrtpContext,
    outbound: SrtpContext,
}

impl std::fmt::Debug for PortSrtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSrtp")
            .field("profile", &self.keys.0.profile())
            .finish_non_exhaustive()
    }
}

/// RTCP by its packet type (RFC 5761 §4: 192-223 never clash with RTP).
fn is_rtcp(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|pt| (192..=223).contains(pt))
}

impl PortSrtp {
    /// The transform of a port whose keys came from a DTLS-SRTP handshake
    /// (RFC 5764): the party protects with `remote`, the relay with `local`.
    pub(crate) fn from_dtls(keys: &relay_media::dtls::SrtpKeys) -> Result<Self, SrtpError> {
        let key = |m: &relay_media::dtls::SrtpKeyMaterial| {
            relay_media::srtp::SrtpKey::new(keys.profile, &m.key, &m.salt)
        };
        let (remote, local) = (key(&keys.remote)?, key(&keys.local)?);
        // Tag 0: these keys were never an `a=crypto` line.
        let as_crypto = |key| Crypto {
            tag: 0,
            key,
            lifetime: None,
            params: Vec::new(),
        };
        Ok(PortSrtp {
            inbound: SrtpContext::new(remote.clone(), Direction::Inbound)?,
            outbound: SrtpContext::new(local.clone(), Direction::Outbound)?,
            keys: (as_crypto(remote), as_crypto(local)),
        })
    }

    /// The suite the party's side uses.
    pub fn suite(&self) -> &'static str {
        self.keys.0.profile().sdes_name()
    }

    /// Decrypts a packet its party sent (SRTP or SRTCP) in place.
    pub fn unprotect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if is_rtcp(packet) {
            self.inbound.unprotect_rtcp(packet)
        } else {
            self.inbound.unprotect_rtp(packet)
        }
    }

    /// Encrypts a packet for its party in place.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if is_rtcp(packet) {
            self.outbound.protect_rtcp(packet)
        } else {
            self.outbound.protect_rtp(packet)
        }
    }
}

/// Brings the ports of `media` in line with its SDES state (contexts kept
/// while the keys stay, so ROC and replay windows continue).
pub(crate) fn sync_ports(media: &Media) {
    for port in media.ports() {
        set_port(port, media.sdes.active.as_ref());
    }
}

fn set_port(port: &Arc<MediaPort>, keys: Option<&(Crypto, Crypto)>) {
    let mut st = port.state();
    let Some(keys) = keys else {
        // A DTLS-SRTP port's transform is its handshake's, not SDES's.
        if st.dtls.is_none() {
            st.srtp = None;
        }
        return;
    };
    if st.srtp.as_ref().is_some_and(|s| &s.keys == keys) {
        return;
    }
    let built = SrtpContext::new(keys.0.key.clone(), Direction::Inbound).and_then(|inbound| {
        Ok(PortSrtp {
            keys: keys.clone(),
            inbound,
            outbound: SrtpContext::new(keys.1.key.clone(), Direction::Outbound)?,
        })
    });
    st.srtp = match built {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            tracing::warn!(local = %port.local, error = %e, "SRTP context not built: port drops media");
            None
        }
    };
}

/// Logs a dropped SRTP packet at most every 10 s per port (a call's
/// ports share its flood of wrong-key packets).
pub(crate) fn warn_dropped(port: &MediaPort, error: &SrtpError) {
    use std::sync::atomic::Ordering;
    let now = super::kernel::monotonic_ns() / 1_000_000_000;
    let last = port.stats.srtp_warned_s.load(Ordering::Relaxed);
    if last != 0 && now < last + 10 {
        return;
    }
    if port
        .stats
        .srtp_warned_s
        .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        let s = &port.stats;
        tracing::warn!(
            local = %port.local,
            %error,
            auth_failures = s.srtp_auth_failures.load(Ordering::Relaxed),
            replays = s.srtp_replays.load(Ordering::Relaxed),
            "SRTP packet dropped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> SdesOptions {
        SdesOptions::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn relay_offer_uses_rtpengine_tags_and_flags() {
        let offer = |o: &SdesOptions| -> Vec<(u32, &'static str)> {
            relay_offer(&[], o)
                .iter()
                .map(|c| (c.tag, c.profile().sdes_name()))
                .collect()
        };
        assert_eq!(
            offer(&opts(&[])),
            [
                (2, "AEAD_AES_128_GCM"),
                (7, "AES_CM_128_HMAC_SHA1_80"),
                (8, "AES_CM_128_HMAC_SHA1_32")
            ]
        );
        // As rtpengine: excluded suites close the gap in the numbering.
        assert_eq!(
            offer(&opts(&[
                "no-AEAD_AES_256_GCM",
                "no-F8_128_HMAC_SHA1_80",
                "only-x"
            ])),
            [
                (1, "AEAD_AES_128_GCM"),
                (6, "AES_CM_128_HMAC_SHA1_80"),
                (7, "AES_CM_128_HMAC_SHA1_32")
            ]
        );
        assert!(opts(&["off"]).off);
    }

    #[test]
    fn plain_caller_srtp_callee_keys_the_callee_side_by_tag() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        on_offer(
            &mut a,
            &mut b,
            vec![],
            "RTP/AVP",
            Some("RTP/SAVP"),
            &opts(&[]),
        );
        assert_eq!(b.lines.as_ref().map(Vec::len), Some(3));
        let first = b.relay.clone();
        // A re-offer keeps the keys.
        on_offer(
            &mut a,
            &mut b,
            vec![],
            "RTP/AVP",
            Some("RTP/SAVP"),
            &opts(&[]),
        );
        assert_eq!(b.relay, first);
        let theirs = Crypto::generate(7, SrtpProfile::AesCm128HmacSha1_80);
        on_answer(&mut a, &mut b, vec![theirs.clone()]);
        let (party, relay) = b.active.clone().expect("bridged");
        assert_eq!(party, theirs);
        assert_eq!(
            (relay.tag, relay.profile()),
            (7, SrtpProfile::AesCm128HmacSha1_80)
        );
        assert_eq!(a.lines, Some(vec![]));
        assert!(a.active.is_none());
    }

    #[test]
    fn srtp_caller_plain_callee_gets_the_relays_key_under_its_tag() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        let offered = vec![
            Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_32),
            Crypto::generate(2, SrtpProfile::AesCm128HmacSha1_80),
        ];
        on_offer(
            &mut a,
            &mut b,
            offered.clone(),
            "RTP/SAVP",
            Some("RTP/AVP"),
            &opts(&[]),
        );
        assert_eq!(b.lines, Some(vec![]));
        // SDES-no- does not steer the pick (rtpengine 10.5 neither).
        on_answer(&mut a, &mut b, vec![]);
        let (party, relay) = a.active.clone().expect("bridged");
        assert_eq!(party, offered[0]);
        assert_eq!(
            (relay.tag, relay.profile()),
            (1, SrtpProfile::AesCm128HmacSha1_32)
        );
        assert_ne!(relay.key, party.key);
        assert_eq!(a.lines, Some(vec![relay.to_string()]));
    }

    #[test]
    fn srtp_end_to_end_passes_through() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        let offered = vec![Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_80)];
        on_offer(&mut a, &mut b, offered, "RTP/SAVP", None, &opts(&[]));
        assert_eq!(b.lines, None);
        on_answer(&mut a, &mut b, vec![]);
        assert!(a.active.is_none() && b.active.is_none());
        assert_eq!(a.lines, None);
    }

    #[test]
    fn port_transform_round_trips_rtp_and_rtcp() {
        let k1 = Crypto::generate(1, SrtpProfile::AeadAes128Gcm);
        let k2 = Crypto::generate(1, SrtpProfile::AeadAes128Gcm);
        // The port's party encrypts with k1; the relay answers with k2.
        let mut party_tx = SrtpContext::new(k1.key.clone(), Direction::Outbound).unwrap();
        let mut party_rx = SrtpContext::new(k2.key.clone(), Direction::Inbound).unwrap();
        let mut port = PortSrtp {
            keys: (k1.clone(), k2.clone()),
            inbound: SrtpContext::new(k1.key.clone(), Direction::Inbound).unwrap(),
            outbound: SrtpContext::new(k2.key.clone(), Direction::Outbound).unwrap(),
        };
        let rtp = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3];
        let mut p = rtp.to_vec();
        party_tx.protect_rtp(&mut p).unwrap();
        port.unprotect(&mut p).unwrap();
        assert_eq!(p, rtp);
        port.protect(&mut p).unwrap();
        party_rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, rtp);
        let rtcp = [0x80, 200, 0, 1, 0, 0, 0, 9];
        let mut r = rtcp.to_vec();
        party_tx.protect_rtcp(&mut r).unwrap();
        port.unprotect(&mut r).unwrap();
        assert_eq!(r, rtcp);
    }
}
