//! SDES key exchange: RFC 4568 `a=crypto` attributes, parsed and generated.
//!
//! `a=crypto:<tag> <suite> inline:<base64(key||salt)>[|<lifetime>][|<MKI>:<len>] [<session params>]`
//!
//! What relayd can use is parsed into a [`Crypto`]; what it cannot (an
//! unknown suite, MKI, several keys in one line, session parameters that turn
//! encryption or authentication off) is a distinct [`SdesError`], so the
//! caller can skip that line and offer or pick another.

use crate::srtp::{SrtpError, SrtpKey};
use crate::SrtpProfile;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use rand::RngCore;
use std::fmt;

/// Why an `a=crypto` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    /// Not `<tag> <suite> <key-params>`.
    #[error("a=crypto syntax: {0}")]
    Syntax(&'static str),
    /// A suite relayd does not implement (F8, AES-192: see [`SrtpProfile`]).
    #[error("unsupported crypto suite {0}")]
    UnknownSuite(String),
    /// A key method other than `inline`.
    #[error("unsupported key method {0}")]
    KeyMethod(String),
    /// The `inline:` key is not base64.
    #[error("a=crypto key is not base64")]
    Base64,
    /// The key||salt length does not fit the suite.
    #[error(transparent)]
    Key(#[from] SrtpError),
    /// The line carries an MKI or several keys: relayd keys one stream with
    /// one master key and sends no MKI field.
    #[error("a=crypto with MKI or several keys is not supported")]
    Mki,
    /// A session parameter relayd cannot honour (UNENCRYPTED_SRTP,
    /// UNENCRYPTED_SRTCP, UNAUTHENTICATED_SRTP, a non-zero KDR, FEC_*).
    #[error("unsupported a=crypto session parameter {0}")]
    SessionParam(String),
}

/// One usable `a=crypto` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag that pairs offer and answer lines.
    pub tag: u32,
    /// Suite, master key and salt.
    pub key: SrtpKey,
    /// Master key lifetime in packets, if given (informational: relayd does
    /// not rekey; libsrtp enforces its own hard limit of 2^48).
    pub lifetime: Option<u64>,
    /// Session parameters kept verbatim (only harmless ones, e.g. `WSH=`).
    pub params: Vec<String>,
}

impl Crypto {
    /// A fresh key for `profile` from the operating system's CSPRNG
    /// (rand's thread RNG: ChaCha, seeded and reseeded from getrandom).
    pub fn generate(tag: u32, profile: SrtpProfile) -> Crypto {
        let mut material = vec![0u8; profile.key_len() + profile.salt_len()];
        rand::rng().fill_bytes(&mut material);
        let (key, salt) = material.split_at(profile.key_len());
        Crypto {
            tag,
            key: SrtpKey::new(profile, key, salt).expect("lengths come from the profile"),
            lifetime: None,
            params: Vec::new(),
        }
    }

    /// Parses the value of an `a=crypto:` attribute (without `a=crypto:`).
    pub fn parse(value: &str) -> Result<Crypto, SdesError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .ok_or(SdesError::Syntax("empty"))?
            .parse::<u32>()
            .map_err(|_| SdesError::Syntax("tag is not a number"))?;
        let suite = fields.next().ok_or(SdesError::Syntax("no crypto suite"))?;
        let key_params = fields
            .next()
            .ok_or(SdesError::Syntax("no key parameters"))?;
        let profile = SrtpProfile::from_sdes_name(suite)
            .ok_or_else(|| SdesError::UnknownSuite(suite.to_string()))?;
        if key_params.contains(';') {
            return Err(SdesError::Mki);
        }
        let (method, info) = key_params
            .split_once(':')
            .ok_or(SdesError::Syntax("key parameter without method"))?;
        if method != "inline" {
            return Err(SdesError::KeyMethod(method.to_string()));
        }
        let mut parts = info.split('|');
        let b64 = parts.next().unwrap_or_default();
        let material = decode_key(b64)?;
        let mut lifetime = None;
        for part in parts {
            if part.contains(':') {
                return Err(SdesError::Mki);
            }
            lifetime = Some(parse_lifetime(part)?);
        }
        if material.len() != profile.key_len() + profile.salt_len() {
            return Err(SdesError::Key(SrtpError::KeyLength {
                what: "inline key||salt",
                profile,
                want: profile.key_len() + profile.salt_len(),
                got: material.len(),
            }));
        }
        let (key, salt) = material.split_at(profile.key_len());
        let key = SrtpKey::new(profile, key, salt)?;
        let mut params = Vec::new();
        for p in fields {
            let name = p.split('=').next().unwrap_or_default();
            match name {
                // Window size hint: libsrtp's window is at least as large.
                "WSH" => params.push(p.to_string()),
                "KDR" if p == "KDR=0" => {}
                _ => return Err(SdesError::SessionParam(p.to_string())),
            }
        }
        Ok(Crypto {
            tag,
            key,
            lifetime,
            params,
        })
    }

    /// The suite.
    pub fn profile(&self) -> SrtpProfile {
        self.key.profile
    }
}

/// `<tag> <suite> inline:<base64>` as rtpengine writes it: base64 without
/// padding (RFC 4568 §6.1 leaves padding optional; rtpengine omits it).
impl fmt::Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} inline:{}",
            self.tag,
            self.key.profile.sdes_name(),
            STANDARD_NO_PAD.encode(self.key.concatenated())
        )?;
        if let Some(l) = self.lifetime {
            write!(f, "|{l}")?;
        }
        for p in &self.params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

fn decode_key(b64: &str) -> Result<Vec<u8>, SdesError> {
    STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .map_err(|_| SdesError::Base64)
}

/// `2^31` or a decimal packet count.
fn parse_lifetime(s: &str) -> Result<u64, SdesError> {
    let bad = SdesError::Syntax("lifetime");
    match s.strip_prefix("2^") {
        Some(exp) => {
            let exp: u32 = exp.parse().map_err(|_| bad.clone())?;
            1u64.checked_shl(exp).filter(|_| exp < 64).ok_or(bad)
        }
        None => s.parse().map_err(|_| bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4568 §4's example line.
    const RFC_EXAMPLE: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";

    #[test]
    fn rfc_example_with_mki_is_refused_clearly() {
        assert_eq!(Crypto::parse(RFC_EXAMPLE), Err(SdesError::Mki));
    }

    #[test]
    fn parses_key_salt_and_lifetime() {
        let c = Crypto::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
        )
        .unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.profile(), SrtpProfile::AesCm128HmacSha1_80);
        assert_eq!(c.lifetime, Some(1 << 20));
        let raw = STANDARD
            .decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
            .unwrap();
        assert_eq!(c.key.key, raw[..16]);
        assert_eq!(c.key.salt, raw[16..]);
    }

    #[test]
    fn generate_then_parse_round_trips_every_suite() {
        for (i, p) in SrtpProfile::ALL.into_iter().enumerate() {
            let c = Crypto::generate(i as u32 + 1, p);
            let line = c.to_string();
            assert!(!line.contains('='), "no padding: {line}");
            assert_eq!(Crypto::parse(&line).unwrap(), c);
            assert_ne!(Crypto::generate(1, p).key, c.key, "fresh keys differ");
        }
    }

    #[test]
    fn padded_base64_and_wsh_are_accepted() {
        let c = Crypto::generate(3, SrtpProfile::AeadAes128Gcm);
        let padded = format!(
            "3 AEAD_AES_128_GCM inline:{} WSH=128 KDR=0",
            STANDARD.encode(c.key.concatenated())
        );
        let p = Crypto::parse(&padded).unwrap();
        assert_eq!(p.key, c.key);
        assert_eq!(p.params, ["WSH=128"]);
    }

    #[test]
    fn unusable_lines_are_distinct_errors() {
        let k80 = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let cases = [
            ("".to_string(), SdesError::Syntax("empty")),
            (
                "x AES_CM_128_HMAC_SHA1_80 k".into(),
                SdesError::Syntax("tag is not a number"),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80".into(),
                SdesError::Syntax("no key parameters"),
            ),
            (
                format!("1 F8_128_HMAC_SHA1_80 {k80}"),
                SdesError::UnknownSuite("F8_128_HMAC_SHA1_80".into()),
            ),
            (
                format!("1 AES_192_CM_HMAC_SHA1_80 {k80}"),
                SdesError::UnknownSuite("AES_192_CM_HMAC_SHA1_80".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {k80};{k80}"),
                SdesError::Mki,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:x".into(),
                SdesError::KeyMethod("uri".into()),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!".into(),
                SdesError::Base64,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {k80} UNENCRYPTED_SRTP"),
                SdesError::SessionParam("UNENCRYPTED_SRTP".into()),
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 {k80}|2^99"),
                SdesError::Syntax("lifetime"),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Crypto::parse(&line), Err(want), "{line:?}");
        }
        // A 30-byte key offered for AES-256 (needs 32 + 14) and for GCM
        // (needs 28).
        assert!(matches!(
            Crypto::parse(&format!("1 AES_256_CM_HMAC_SHA1_80 {k80}")),
            Err(SdesError::Key(SrtpError::KeyLength {
                want: 46,
                got: 30,
                ..
            }))
        ));
        assert!(matches!(
            Crypto::parse("1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"),
            Err(SdesError::Key(SrtpError::KeyLength {
                want: 28,
                got: 30,
                ..
            }))
        ));
    }
}
