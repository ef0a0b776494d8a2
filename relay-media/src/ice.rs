//! An ICE-lite agent (RFC 8445 §2.5) for one relay media port.
//!
//! A lite agent never sends connectivity checks of its own: it answers the
//! peer's STUN Binding requests (short-term credentials, RFC 8489 §9.1) and
//! takes the candidate pair the peer nominates (`USE-CANDIDATE`, regular or
//! aggressive nomination alike) as the address to send media to. The peer, a
//! full agent, is always the controlling one; relayd writes `a=ice-lite` so
//! that it is.
//!
//! Consent freshness (RFC 7675): after nomination, every authenticated Binding
//! request from the nominated address refreshes consent; when none came for
//! [`CONSENT_TIMEOUT`], [`IceLiteAgent::consent`] says so and the caller stops
//! sending to that address until a valid request arrives again.
//!
//! STUN parsing, MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32) are the
//! `stun-types` crate's. Parsing never panics on any input: garbage, truncated
//! or unauthenticated messages change nothing and are at most answered with an
//! error response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use stun_types::attribute::{
    AttributeStaticType, AttributeType, ErrorCode, MessageIntegrity, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials, BINDING, MAGIC_COOKIE,
};

/// How long consent lasts without a fresh authenticated Binding request
/// (RFC 7675 §5.1: 30 seconds).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `USE-CANDIDATE` (RFC 8445 §16.1), which `stun-types` does not name.
const USE_CANDIDATE: u16 = 0x0025;

/// Whether a UDP payload is a STUN message by its fixed header alone: the two
/// first bits zero, the RFC 5389 magic cookie at offset 4 and room for the
/// 20-byte header. The same test the XDP program makes to pass STUN to the
/// stack; RTP (version 2: first bits `10`) never matches.
pub fn looks_like_stun(payload: &[u8]) -> bool {
    match payload.get(..20) {
        Some(header) => header[0] & 0xc0 == 0 && header[4..8] == MAGIC_COOKIE.to_be_bytes(),
        None => false,
    }
}

/// A party's ICE credentials (`a=ice-ufrag`, `a=ice-pwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// The username fragment.
    pub ufrag: String,
    /// The password.
    pub pwd: String,
}

impl IceCredentials {
    /// Fresh random credentials: an 8-character ufrag and a 26-character
    /// password (RFC 8839 §5.4 asks for at least 4 and 22 `ice-char`s, and
    /// at least 24 and 128 bits of randomness).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        Self {
            ufrag: Alphanumeric.sample_string(&mut rng, 8),
            pwd: Alphanumeric.sample_string(&mut rng, 26),
        }
    }
}

/// What changed in the agent because of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// The peer nominated the pair whose remote side is this address: media
    /// goes there from now on.
    Nominated(SocketAddr),
    /// An authenticated request from the nominated address: consent is fresh.
    ConsentRefreshed,
}

/// The outcome of [`IceLiteAgent::handle`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handled {
    /// A response to send back to the datagram's source.
    pub response: Option<Vec<u8>>,
    /// What changed, if anything.
    pub event: Option<IceEvent>,
    /// Why the datagram was dropped or refused, for logs and counters.
    pub rejected: Option<Rejection>,
}

/// Why a STUN datagram did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a well-formed STUN message (or a bad FINGERPRINT).
    Malformed,
    /// Well-formed, but not a Binding request (a response, an indication,
    /// another method): nothing to answer.
    NotBindingRequest,
    /// No USERNAME or MESSAGE-INTEGRITY: answered 400.
    BadRequest,
    /// USERNAME not ours or MESSAGE-INTEGRITY wrong: answered 401.
    Unauthorized,
}

/// The ICE-lite agent of one media port.
#[derive(Debug, Clone)]
pub struct IceLiteAgent {
    local: IceCredentials,
    remote_ufrag: Option<String>,
    nominated: Option<SocketAddr>,
    last_consent: Option<Instant>,
}

/// Consent to send to the nominated address (RFC 7675).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Nothing nominated yet.
    Pending,
    /// Consent is fresh: send to this address.
    Fresh(SocketAddr),
    /// No authenticated request from this address for [`CONSENT_TIMEOUT`].
    Expired(SocketAddr),
}

impl IceLiteAgent {
    /// An agent answering with `local` credentials. `remote_ufrag` is the
    /// peer's `a=ice-ufrag` when its SDP had one; requests must then name it
    /// after the colon of USERNAME.
    pub fn new(local: IceCredentials, remote_ufrag: Option<String>) -> Self {
        Self {
            local,
            remote_ufrag,
            nominated: None,
            last_consent: None,
        }
    }

    /// The credentials the relay advertised for this port.
    pub fn local(&self) -> &IceCredentials {
        &self.local
    }

    /// Sets the peer's ufrag (from a later SDP: an answer, an ICE restart).
    pub fn set_remote_ufrag(&mut self, ufrag: Option<String>) {
        self.remote_ufrag = ufrag;
    }

    /// The peer's ufrag, when its SDP had one.
    pub fn remote_ufrag(&self) -> Option<&str> {
        self.remote_ufrag.as_deref()
    }

    /// An agent brought back after a restart: the pair the peer had
    /// nominated, with consent as of `now` (the peer's next check, a few
    /// seconds away, refreshes it; none for 30 s and it lapses as usual).
    pub fn resume(&mut self, nominated: SocketAddr, now: Instant) {
        self.nominated = Some(nominated);
        self.last_consent = Some(now);
    }

    /// The nominated remote address, if any.
    pub fn nominated(&self) -> Option<SocketAddr> {
        self.nominated
    }

    /// Whether the relay may send to the nominated address at `now`.
    pub fn consent(&self, now: Instant) -> Consent {
        match (self.nominated, self.last_consent) {
            (None, _) => Consent::Pending,
            (Some(addr), Some(at)) if now.saturating_duration_since(at) < CONSENT_TIMEOUT => {
                Consent::Fresh(addr)
            }
            (Some(addr), _) => Consent::Expired(addr),
        }
    }

    /// Handles a datagram that [`looks_like_stun`], received from `from` at
    /// `now`.
    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) -> Handled {
        let Ok(msg) = Message::from_bytes(datagram) else {
            return rejected(None, Rejection::Malformed);
        };
        if !(msg.has_class(MessageClass::Request) && msg.has_method(BINDING)) {
            return rejected(None, Rejection::NotBindingRequest);
        }
        let username = msg.attribute::<Username>().ok();
        let has_integrity = msg.has_attribute(MessageIntegrity::TYPE);
        let Some(username) = username.filter(|_| has_integrity) else {
            return rejected(error_response(&msg, 400), Rejection::BadRequest);
        };
        if !self.username_matches(username.username()) {
            return rejected(error_response(&msg, 401), Rejection::Unauthorized);
        }
        let credentials =
            MessageIntegrityCredentials::from(ShortTermCredentials::new(self.local.pwd.clone()));
        if msg.validate_integrity(&credentials).is_err() {
            return rejected(error_response(&msg, 401), Rejection::Unauthorized);
        }

        let nominate = msg.has_attribute(AttributeType::new(USE_CANDIDATE));
        let event = if nominate && self.nominated != Some(from) {
            self.nominated = Some(from);
            self.last_consent = Some(now);
            Some(IceEvent::Nominated(from))
        } else if self.nominated == Some(from) {
            self.last_consent = Some(now);
            Some(IceEvent::ConsentRefreshed)
        } else {
            None
        };
        Handled {
            response: success_response(&msg, from, &credentials),
            event,
            rejected: None,
        }
    }

    /// USERNAME is `LOCAL:REMOTE` for a request to us (RFC 8445 §7.2.2).
    fn username_matches(&self, username: &str) -> bool {
        let Some((local, remote)) = username.split_once(':') else {
            return false;
        };
        local == self.local.ufrag && self.remote_ufrag.as_deref().is_none_or(|r| r == remote)
    }
}

fn rejected(response: Option<Vec<u8>>, why: Rejection) -> Handled {
    Handled {
        response,
        event: None,
        rejected: Some(why),
    }
}

/// A Binding success response: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY with
/// the local password, FINGERPRINT (RFC 8445 §7.3.1.4).
fn success_response(
    request: &Message<'_>,
    from: SocketAddr,
    credentials: &MessageIntegrityCredentials,
) -> Option<Vec<u8>> {
    let mut out = Message::builder_success(request, MessageWriteVec::new());
    out.add_attribute(&XorMappedAddress::new(from, request.transaction_id()))
        .ok()?;
    out.add_message_integrity(credentials, IntegrityAlgorithm::Sha1)
        .ok()?;
    out.add_fingerprint().ok()?;
    Some(out.finish())
}

/// An error response without MESSAGE-INTEGRITY (the request could not be
/// authenticated, RFC 8489 §9.1.3), with FINGERPRINT.
fn error_response(request: &Message<'_>, code: u16) -> Option<Vec<u8>> {
    let mut out = Message::builder_error(request, MessageWriteVec::new());
    out.add_attribute(&ErrorCode::builder(code).build().ok()?)
        .ok()?;
    out.add_fingerprint().ok()?;
    Some(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::attribute::RawAttribute;

    fn creds() -> IceCredentials {
        IceCredentials {
            ufrag: "relay1".into(),
            pwd: "relaypasswordrelaypassword".into(),
        }
    }

    fn peer() -> SocketAddr {
        "203.0.113.10:16500".parse().unwrap()
    }

    /// A peer's Binding request as a full agent writes it.
    fn request(username: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
        let mut m = Message::builder_request(BINDING, MessageWriteVec::new());
        m.add_attribute(&Username::new(username).unwrap()).unwrap();
        if use_candidate {
            let raw = RawAttribute::new(AttributeType::new(USE_CANDIDATE), &[]);
            m.add_attribute(&raw).unwrap();
        }
        let c = MessageIntegrityCredentials::from(ShortTermCredentials::new(pwd.into()));
        m.add_message_integrity(&c, IntegrityAlgorithm::Sha1)
            .unwrap();
        m.add_fingerprint().unwrap();
        m.finish()
    }

    #[test]
    fn answers_a_valid_request_with_the_mapped_address_and_integrity() {
        let mut agent = IceLiteAgent::new(creds(), Some("peer".into()));
        let req = request("relay1:peer", &creds().pwd, false);
        assert!(looks_like_stun(&req));
        let now = Instant::now();
        let out = agent.handle(&req, peer(), now);
        assert_eq!(out.rejected, None);
        assert_eq!(out.event, None, "no USE-CANDIDATE: nothing nominated");
        let bytes = out.response.unwrap();
        let resp = Message::from_bytes(&bytes).unwrap();
        assert!(resp.has_class(MessageClass::Success));
        let mapped = resp.attribute::<XorMappedAddress>().unwrap();
        assert_eq!(mapped.addr(resp.transaction_id()), peer());
        let c = MessageIntegrityCredentials::from(ShortTermCredentials::new(creds().pwd));
        assert!(resp.validate_integrity(&c).is_ok());
        assert_eq!(agent.consent(now), Consent::Pending);
    }

    #[test]
    fn use_candidate_nominates_and_consent_expires_after_30_s() {
        let mut agent = IceLiteAgent::new(creds(), None);
        let t0 = Instant::now();
        let out = agent.handle(&request("relay1:x", &creds().pwd, true), peer(), t0);
        assert_eq!(out.event, Some(IceEvent::Nominated(peer())));
        assert_eq!(agent.consent(t0), Consent::Fresh(peer()));
        let t1 = t0 + Duration::from_secs(20);
        let out = agent.handle(&request("relay1:x", &creds().pwd, false), peer(), t1);
        assert_eq!(out.event, Some(IceEvent::ConsentRefreshed));
        assert_eq!(
            agent.consent(t1 + Duration::from_secs(29)),
            Consent::Fresh(peer())
        );
        assert_eq!(
            agent.consent(t1 + CONSENT_TIMEOUT),
            Consent::Expired(peer())
        );
        // A later valid request gives consent back.
        let t2 = t1 + Duration::from_secs(40);
        agent.handle(&request("relay1:x", &creds().pwd, false), peer(), t2);
        assert_eq!(agent.consent(t2), Consent::Fresh(peer()));
    }

    #[test]
    fn a_wrong_password_or_username_gets_401_and_changes_nothing() {
        let mut agent = IceLiteAgent::new(creds(), Some("peer".into()));
        let now = Instant::now();
        for req in [
            request("relay1:peer", "not-the-password-at-all!!", true),
            request("other:peer", &creds().pwd, true),
            request("relay1:someoneelse", &creds().pwd, true),
            request("relay1", &creds().pwd, true),
        ] {
            let out = agent.handle(&req, peer(), now);
            assert_eq!(out.rejected, Some(Rejection::Unauthorized));
            assert_eq!(out.event, None);
            let bytes = out.response.unwrap();
            let resp = Message::from_bytes(&bytes).unwrap();
            assert!(resp.has_class(MessageClass::Error));
            assert_eq!(resp.attribute::<ErrorCode>().unwrap().code(), 401);
        }
        assert_eq!(agent.nominated(), None);
    }

    #[test]
    fn missing_credentials_get_400() {
        let mut agent = IceLiteAgent::new(creds(), None);
        let bare = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
        let out = agent.handle(&bare, peer(), Instant::now());
        assert_eq!(out.rejected, Some(Rejection::BadRequest));
        let bytes = out.response.unwrap();
        let resp = Message::from_bytes(&bytes).unwrap();
        assert_eq!(resp.attribute::<ErrorCode>().unwrap().code(), 400);
    }

    #[test]
    fn garbage_is_dropped_without_a_response() {
        let mut agent = IceLiteAgent::new(creds(), None);
        let now = Instant::now();
        let mut valid = request("relay1:x", &creds().pwd, true);
        // Every truncation and every single-byte corruption of a valid request.
        for len in 0..valid.len() {
            let out = agent.handle(&valid[..len], peer(), now);
            assert_eq!(out.event, None);
        }
        // Up to FINGERPRINT (the last 8 bytes): corrupting its type makes it
        // an unknown optional attribute, and a request without FINGERPRINT
        // is still a valid one.
        for i in 0..valid.len() - 8 {
            valid[i] ^= 0x5a;
            let out = agent.handle(&valid, peer(), now);
            assert_eq!(out.event, None, "byte {i} corrupted");
            valid[i] ^= 0x5a;
        }
        let out = agent.handle(&[0u8; 20], peer(), now);
        assert_eq!(out.rejected, Some(Rejection::Malformed));
        // A response is not answered.
        let req = request("relay1:x", &creds().pwd, false);
        let resp = agent.handle(&req, peer(), now).response.unwrap();
        assert_eq!(
            agent.handle(&resp, peer(), now).rejected,
            Some(Rejection::NotBindingRequest)
        );
        assert_eq!(agent.nominated(), None);
    }

    #[test]
    fn rtp_is_not_stun() {
        let mut rtp = [0u8; 32];
        rtp[0] = 0x80;
        rtp[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert!(!looks_like_stun(&rtp));
        assert!(!looks_like_stun(&[0u8; 19]));
    }

    #[test]
    fn generated_credentials_are_long_enough() {
        let c = IceCredentials::generate();
        assert_eq!(c.ufrag.len(), 8);
        assert_eq!(c.pwd.len(), 26);
        assert_ne!(c, IceCredentials::generate());
    }
}
