//! The SRTP protection profiles relayd speaks, one definition for both key
//! exchanges: SDES names them in `a=crypto` (RFC 4568, RFC 6188 for
//! AES-256, RFC 7714 for GCM) and DTLS-SRTP negotiates them by number in
//! `use_srtp` (RFC 5764, RFC 7714).
//!
//! These are the suites libsrtp2 implements as the RFCs specify them. Left
//! out: the F8 suites of RFC 4568 (libsrtp2 has no F8 cipher) and AES-192
//! counter mode: libsrtp2 up to 2.7 (Debian's is 2.5) derives AES-192
//! session keys with the AES-256 key derivation over a zero-padded master
//! key (cisco/libsrtp#763, fixed after 2.7), so its AES_192_CM suites would
//! not interoperate with an RFC 6188 peer; see the srtp tests.

/// An SRTP crypto suite / DTLS-SRTP protection profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// AES-256 GCM, 16-byte tag (RFC 7714).
    AeadAes256Gcm,
    /// AES-128 GCM, 16-byte tag (RFC 7714).
    AeadAes128Gcm,
    /// AES-256 counter mode, HMAC-SHA1 tag of 80 bits (RFC 6188).
    Aes256CmHmacSha1_80,
    /// AES-256 counter mode, HMAC-SHA1 tag of 32 bits (RTP only; SRTCP keeps 80).
    Aes256CmHmacSha1_32,
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 tag of 32 bits (RTP only; SRTCP keeps 80).
    AesCm128HmacSha1_32,
    /// No encryption, HMAC-SHA1 tag of 80 bits (RFC 4568 §6.2.3).
    NullHmacSha1_80,
    /// No encryption, HMAC-SHA1 tag of 32 bits (RTP only; SRTCP keeps 80).
    NullHmacSha1_32,
}

impl SrtpProfile {
    /// Every profile, strongest first (the order SDES offers them in, as
    /// rtpengine lists them).
    pub const ALL: [SrtpProfile; 8] = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes256CmHmacSha1_80,
        SrtpProfile::Aes256CmHmacSha1_32,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::NullHmacSha1_80,
        SrtpProfile::NullHmacSha1_32,
    ];

    /// The profiles DTLS-SRTP offers and accepts, in order of preference.
    /// Only those with a `use_srtp` number that OpenSSL negotiates; never a
    /// NULL cipher (RFC 5764 registers them, but a browser refuses them and
    /// a handshake must not settle on cleartext media).
    pub const DTLS: [SrtpProfile; 4] = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ];

    /// The suite's name in SDES `a=crypto` lines.
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
            SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpProfile::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpProfile::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpProfile::NullHmacSha1_80 => "NULL_HMAC_SHA1_80",
            SrtpProfile::NullHmacSha1_32 => "NULL_HMAC_SHA1_32",
        }
    }

    /// The profile an SDES suite name stands for (names are case-sensitive
    /// in RFC 4568; unknown suites are simply not ours).
    pub fn from_sdes_name(name: &str) -> Option<SrtpProfile> {
        SrtpProfile::ALL.into_iter().find(|p| p.sdes_name() == name)
    }

    /// The DTLS-SRTP protection profile number (`use_srtp` extension), for
    /// the profiles that have one (RFC 5764 §4.1.2, RFC 7714 §14.2).
    pub fn dtls_id(self) -> Option<u16> {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => Some(0x0001),
            SrtpProfile::AesCm128HmacSha1_32 => Some(0x0002),
            SrtpProfile::NullHmacSha1_80 => Some(0x0005),
            SrtpProfile::NullHmacSha1_32 => Some(0x0006),
            SrtpProfile::AeadAes128Gcm => Some(0x0007),
            SrtpProfile::AeadAes256Gcm => Some(0x0008),
            // RFC 6188 registers no DTLS-SRTP profile for AES-256 CM.
            SrtpProfile::Aes256CmHmacSha1_80 | SrtpProfile::Aes256CmHmacSha1_32 => None,
        }
    }

    /// The profile a DTLS-SRTP protection profile number stands for.
    pub fn from_dtls_id(id: u16) -> Option<SrtpProfile> {
        SrtpProfile::ALL
            .into_iter()
            .find(|p| p.dtls_id() == Some(id))
    }

    /// Master key length in bytes: the AES key size (RFC 6188 for 256); 16 for the NULL
    /// suites, whose master key still feeds the AES-128 key derivation
    /// (RFC 4568 §6.2.3).
    pub fn key_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes256Gcm
            | SrtpProfile::Aes256CmHmacSha1_80
            | SrtpProfile::Aes256CmHmacSha1_32 => 32,
            SrtpProfile::AeadAes128Gcm
            | SrtpProfile::AesCm128HmacSha1_80
            | SrtpProfile::AesCm128HmacSha1_32
            | SrtpProfile::NullHmacSha1_80
            | SrtpProfile::NullHmacSha1_32 => 16,
        }
    }

    /// Master salt length in bytes: 12 for GCM (RFC 7714 §12), 14 for the
    /// rest (RFC 3711, RFC 6188).
    pub fn salt_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes256Gcm | SrtpProfile::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Authentication tag length of SRTP packets in bytes (SRTCP's is 10
    /// for every HMAC suite, RFC 4568 §6.2.2; 16 for GCM).
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpProfile::AeadAes256Gcm | SrtpProfile::AeadAes128Gcm => 16,
            SrtpProfile::Aes256CmHmacSha1_32
            | SrtpProfile::AesCm128HmacSha1_32
            | SrtpProfile::NullHmacSha1_32 => 4,
            _ => 10,
        }
    }

    /// Whether the payload is encrypted (false for the NULL suites, which
    /// only authenticate).
    pub fn encrypts(self) -> bool {
        !matches!(
            self,
            SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for p in SrtpProfile::ALL {
            assert_eq!(SrtpProfile::from_sdes_name(p.sdes_name()), Some(p));
            if let Some(id) = p.dtls_id() {
                assert_eq!(SrtpProfile::from_dtls_id(id), Some(p));
            }
        }
        assert_eq!(SrtpProfile::from_sdes_name("aes_cm_128_hmac_sha1_80"), None);
        assert_eq!(SrtpProfile::from_sdes_name("F8_128_HMAC_SHA1_80"), None);
        assert_eq!(SrtpProfile::from_sdes_name("AES_192_CM_HMAC_SHA1_80"), None);
        assert_eq!(SrtpProfile::from_dtls_id(0x0003), None);
        assert_eq!(SrtpProfile::from_dtls_id(0x0009), None);
    }

    #[test]
    fn registered_numbers_and_lengths() {
        use SrtpProfile::*;
        // (profile, DTLS-SRTP id, master key, master salt, SRTP tag)
        let table = [
            (AeadAes256Gcm, Some(0x0008), 32, 12, 16),
            (AeadAes128Gcm, Some(0x0007), 16, 12, 16),
            (Aes256CmHmacSha1_80, None, 32, 14, 10),
            (Aes256CmHmacSha1_32, None, 32, 14, 4),
            (AesCm128HmacSha1_80, Some(0x0001), 16, 14, 10),
            (AesCm128HmacSha1_32, Some(0x0002), 16, 14, 4),
            (NullHmacSha1_80, Some(0x0005), 16, 14, 10),
            (NullHmacSha1_32, Some(0x0006), 16, 14, 4),
        ];
        assert_eq!(table.len(), SrtpProfile::ALL.len());
        for (p, id, key, salt, tag) in table {
            assert_eq!(
                (p.dtls_id(), p.key_len(), p.salt_len(), p.rtp_tag_len()),
                (id, key, salt, tag),
                "{p:?}"
            );
        }
    }

    #[test]
    fn dtls_never_offers_a_null_cipher() {
        for p in SrtpProfile::DTLS {
            assert!(p.encrypts(), "{p:?}");
            assert!(p.dtls_id().is_some(), "{p:?}");
        }
    }
}
