//! relay-media: what a relay port does with a datagram
//! that looks like STUN (the ICE-lite agent) or DTLS (the DTLS-SRTP endpoint).

use std::time::{Duration, Instant};

use relay_media::{looks_like_stun, IceCredentials, IceEvent, IceLiteAgent};

/// The credentials the seeds are made with (`corpus/stun/`).
fn credentials() -> IceCredentials {
    IceCredentials {
        ufrag: "relay1".into(),
        pwd: "relaypasswordrelaypassword".into(),
    }
}

/// One datagram to a fresh agent, then the same datagram again a minute
/// later. Properties: a response is a STUN message; a nomination comes
/// with a response (the success response), and only for the sender.
pub fn stun(data: &[u8]) {
    let from = "203.0.113.10:16500".parse().expect("address");
    let mut agent = IceLiteAgent::new(credentials(), None);
    let t0 = Instant::now();
    for now in [t0, t0 + Duration::from_secs(60)] {
        let handled = agent.handle(data, from, now);
        if let Some(response) = &handled.response {
            assert!(looks_like_stun(response), "a response is STUN");
        }
        if let Some(IceEvent::Nominated(addr)) = handled.event {
            assert_eq!(addr, from);
            assert!(handled.response.is_some(), "a nomination is answered");
        }
        let _ = agent.consent(now);
    }
}

/// One relay DTLS context for every input (a certificate per input would
/// make the target slow without reaching more code).
fn dtls_context() -> &'static relay_media::dtls::DtlsContext {
    use relay_media::dtls::{CertKey, CertSignature, DtlsCertificate, DtlsConfig, DtlsContext};
    static CTX: std::sync::OnceLock<DtlsContext> = std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let cert = DtlsCertificate::generate(CertKey::Prime256v1, CertSignature::Sha256)
            .expect("certificate");
        DtlsContext::new(&cert, DtlsConfig::default()).expect("context")
    })
}

/// Datagrams (each after a 2-byte big-endian length) to a fresh DTLS
/// server endpoint, then a timeout far ahead. Properties: no panic;
/// output only while handshaking; never connected (no input can carry a
/// certificate matching the all-zero fingerprint it expects).
pub fn dtls(data: &[u8]) {
    use relay_media::dtls::{DtlsEndpoint, DtlsRole, DtlsState, Fingerprint, FingerprintHash};
    let expected = Fingerprint {
        hash: FingerprintHash::Sha256,
        digest: vec![0; 32],
    };
    let mut ep = DtlsEndpoint::new(dtls_context(), DtlsRole::Server, expected).expect("endpoint");
    let t0 = Instant::now();
    let mut rest = data;
    // Bounded by the input: each round consumes at least two bytes.
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        let _ = ep.handle_datagram(&rest[2..end], t0);
        while let Some(out) = ep.poll_transmit() {
            assert!(relay_media::dtls::looks_like_dtls(&out), "output is DTLS");
        }
        assert_ne!(ep.state(), DtlsState::Connected);
        rest = &rest[end..];
    }
    let _ = ep.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(
        matches!(ep.state(), DtlsState::New | DtlsState::Failed),
        "{:?}",
        ep.state()
    );
}
