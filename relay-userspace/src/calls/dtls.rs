//! DTLS-SRTP on relay ports facing a WebRTC party (relay-media does the
//! protocol): what a party's SDP said about its DTLS and what the relay
//! writes back ([`identity`]: the relay's certificate, made once per
//! process; [`port`]: the endpoint on a port, its counters and keys).

mod identity;
mod port;

pub use identity::{fingerprint, identity, init, DtlsOptions, DtlsSettings, RelayDtls};
pub(crate) use port::{on_datagram, on_tick};
pub use port::{DtlsCounters, DtlsSummary, PortDtls, PortSrtpKeys};

/// A party's DTLS as its latest SDP declared it (`a=setup`, `a=fingerprint`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerDtls {
    pub setup: Option<String>,
    pub fingerprint: Option<String>,
}

/// `UDP/TLS/RTP/SAVP` and `UDP/TLS/RTP/SAVPF`: RTP keyed by DTLS-SRTP.
pub fn is_dtls_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVP")
        || proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVPF")
}

/// The relay's `a=setup` toward a party: `actpass` in an offer; in an
/// answer the opposite of the offerer's choice, and for an offerer that
/// left it to us (`actpass` or nothing) `active`, unless `DTLS=passive`
/// asks otherwise, as rtpengine 10.5 answers.
pub fn setup_for(is_offer: bool, offerer_setup: Option<&str>, flag: Option<&str>) -> &'static str {
    if is_offer {
        return "actpass";
    }
    match offerer_setup.map(str::to_ascii_lowercase).as_deref() {
        Some("active") => "passive",
        Some("passive") => "active",
        _ if flag == Some("passive") => "passive",
        _ => "active",
    }
}

/// `DTLS=off|no|disable`: no DTLS toward the recipient.
pub fn is_off(flag: Option<&str>) -> bool {
    matches!(flag, Some("off" | "no" | "disable" | "disabled"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_follows_rtpengine() {
        assert_eq!(setup_for(true, Some("active"), Some("passive")), "actpass");
        assert_eq!(setup_for(false, Some("actpass"), None), "active");
        assert_eq!(setup_for(false, None, Some("passive")), "passive");
        assert_eq!(setup_for(false, Some("ACTIVE"), Some("active")), "passive");
        assert_eq!(setup_for(false, Some("passive"), Some("passive")), "active");
    }

    #[test]
    fn fingerprint_is_stable_and_names_its_hash() {
        let a = fingerprint(None).unwrap();
        assert!(a.starts_with("sha-256 "), "{a}");
        assert_eq!(fingerprint(Some("md5")).unwrap(), a);
        assert!(fingerprint(Some("sha-1")).unwrap().starts_with("sha-1 "));
        assert_eq!(fingerprint(Some("sha-256")).unwrap(), a);
    }
}
