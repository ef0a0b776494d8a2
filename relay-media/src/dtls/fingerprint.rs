//! Certificate fingerprints as SDP writes them (`a=fingerprint:sha-256 AB:CD:…`,
//! RFC 8122): the hash function's name and the colon-separated digest.

use openssl::hash::MessageDigest;
use openssl::x509::X509Ref;
use std::fmt;

use super::DtlsError;

/// A hash function RFC 8122 names for fingerprints (the ones OpenSSL has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FingerprintHash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl FingerprintHash {
    /// Every hash, strongest last; rtpengine's `DTLS-fingerprint=` takes these names.
    pub const ALL: [FingerprintHash; 5] = [
        FingerprintHash::Sha1,
        FingerprintHash::Sha224,
        FingerprintHash::Sha256,
        FingerprintHash::Sha384,
        FingerprintHash::Sha512,
    ];

    /// The name in `a=fingerprint` (lower case, as browsers and rtpengine write it).
    pub fn sdp_name(self) -> &'static str {
        match self {
            FingerprintHash::Sha1 => "sha-1",
            FingerprintHash::Sha224 => "sha-224",
            FingerprintHash::Sha256 => "sha-256",
            FingerprintHash::Sha384 => "sha-384",
            FingerprintHash::Sha512 => "sha-512",
        }
    }

    /// The hash a name stands for; case-insensitive (RFC 8122 says so).
    pub fn from_sdp_name(name: &str) -> Option<FingerprintHash> {
        FingerprintHash::ALL
            .into_iter()
            .find(|h| h.sdp_name().eq_ignore_ascii_case(name))
    }

    fn digest(self) -> MessageDigest {
        match self {
            FingerprintHash::Sha1 => MessageDigest::sha1(),
            FingerprintHash::Sha224 => MessageDigest::sha224(),
            FingerprintHash::Sha256 => MessageDigest::sha256(),
            FingerprintHash::Sha384 => MessageDigest::sha384(),
            FingerprintHash::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// A certificate fingerprint: hash function and digest bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub hash: FingerprintHash,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a certificate (of its DER encoding, RFC 8122 §5).
    pub fn of(cert: &X509Ref, hash: FingerprintHash) -> Result<Fingerprint, DtlsError> {
        let digest = cert.digest(hash.digest()).map_err(DtlsError::Crypto)?;
        Ok(Fingerprint {
            hash,
            digest: digest.to_vec(),
        })
    }

    /// Parse an `a=fingerprint` value: `sha-256 AB:CD:…`.
    pub fn parse_sdp(value: &str) -> Result<Fingerprint, DtlsError> {
        let bad = || DtlsError::BadFingerprint(value.chars().take(200).collect());
        let mut parts = value.split_whitespace();
        let hash = parts
            .next()
            .and_then(FingerprintHash::from_sdp_name)
            .ok_or_else(bad)?;
        let hex = parts.next().ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        let digest = hex
            .split(':')
            .map(|b| {
                if b.len() == 2 {
                    u8::from_str_radix(b, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        if digest.len() != hash.digest().size() {
            return Err(bad());
        }
        Ok(Fingerprint { hash, digest })
    }

    /// The digest as SDP writes it: upper-case hex pairs joined by colons.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(self.digest.len() * 3);
        for (i, b) in self.digest.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&format!("{b:02X}"));
        }
        s
    }
}

/// `sha-256 AB:CD:…`, the `a=fingerprint` value.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.hash.sdp_name(), self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sdp_values() {
        let hex = (0..32)
            .map(|i| format!("{i:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let fp = Fingerprint::parse_sdp(&format!("SHA-256 {hex}")).unwrap();
        assert_eq!(fp.hash, FingerprintHash::Sha256);
        assert_eq!(fp.digest, (0..32).collect::<Vec<u8>>());
        assert_eq!(fp.to_string(), format!("sha-256 {}", hex.to_uppercase()));
        assert_eq!(Fingerprint::parse_sdp(&fp.to_string()).unwrap(), fp);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "sha-256",
            "md5 00:11",
            "sha-1 00:11",
            "sha-256 zz",
            "sha-1 000:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33",
            "sha-1 00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33 extra",
        ] {
            assert!(Fingerprint::parse_sdp(bad).is_err(), "{bad:?}");
        }
        let ok = "sha-1 00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33";
        assert!(Fingerprint::parse_sdp(ok).is_ok());
    }
}
