//! SRTP/SRTCP protect and unprotect (RFC 3711, RFC 7714), sans-I/O.
//!
//! One [`SrtpContext`] holds one direction's master key and salt (as SDES or
//! DTLS-SRTP hands them over) and protects *or* unprotects every SSRC that
//! arrives under it, the way a relay sees a media port: it does not know the
//! SSRCs in advance. The crypto is libsrtp2 (Cisco's reference
//! implementation, Debian's `libsrtp2`) through the `srtp` crate; see
//! docs/webrtc.md for why.
//!
//! Replay protection is libsrtp's: a packet seen before, or older than the
//! replay window, is [`SrtpError::Replay`] and the caller drops and counts it.
//! The rollover counter of each SSRC can be read and set ([`SrtpContext::roc`],
//! [`SrtpContext::set_roc`]) so a restored stream continues where it was.

use crate::SrtpProfile;
use srtp::{CryptoPolicy, Error as LibError, Session, StreamPolicy};
use std::collections::HashSet;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The authentication tag did not match: wrong key, or a forged/corrupt packet.
    #[error("SRTP authentication failed")]
    Auth,
    /// The packet index was seen before, or is older than the replay window.
    #[error("SRTP replayed or too old packet")]
    Replay,
    /// Too short or otherwise not an (S)RTP/(S)RTCP packet.
    #[error("malformed SRTP packet")]
    Malformed,
    /// Master key or salt length does not fit the profile.
    #[error("{what} is {got} bytes, {profile:?} needs {want}")]
    KeyLength {
        /// Which of the two.
        what: &'static str,
        /// The profile.
        profile: SrtpProfile,
        /// Required length.
        want: usize,
        /// Given length.
        got: usize,
    },
    /// Any other libsrtp failure (named by libsrtp's status).
    #[error("libsrtp: {0}")]
    Lib(String),
}

impl From<LibError> for SrtpError {
    fn from(e: LibError) -> Self {
        match e {
            LibError::AUTH_FAIL => SrtpError::Auth,
            LibError::REPLAY_FAIL | LibError::REPLAY_OLD => SrtpError::Replay,
            LibError::BAD_PARAM | LibError::PARSE_ERR => SrtpError::Malformed,
            other => SrtpError::Lib(format!("{other:?}")),
        }
    }
}

/// Which way a context works: it never does both (libsrtp keeps one
/// direction per stream, and a relay's two legs have different keys anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Unprotect what a peer sent (its key).
    Inbound,
    /// Protect what the relay sends (the relay's key for that side).
    Outbound,
}

/// One direction's SRTP key material: the profile with its master key and
/// salt, exactly what SDES `inline:` and the DTLS-SRTP exporter yield.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey {
    /// The crypto suite / protection profile.
    pub profile: SrtpProfile,
    /// Master key (16 or 32 bytes, as the profile says).
    pub key: Vec<u8>,
    /// Master salt (14 bytes, 12 for GCM).
    pub salt: Vec<u8>,
}

impl std::fmt::Debug for SrtpKey {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl SrtpKey {
    /// Checks the lengths against the profile.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Result<Self, SrtpError> {
        for (what, want, got) in [
            ("master key", profile.key_len(), key.len()),
            ("master salt", profile.salt_len(), salt.len()),
        ] {
            if want != got {
                return Err(SrtpError::KeyLength {
                    what,
                    profile,
                    want,
                    got,
                });
            }
        }
        Ok(SrtpKey {
            profile,
            key: key.to_vec(),
            salt: salt.to_vec(),
        })
    }

    /// key || salt, the layout both libsrtp and SDES `inline:` use.
    pub fn concatenated(&self) -> Vec<u8> {
        let mut v = self.key.clone();
        v.extend_from_slice(&self.salt);
        v
    }
}

fn policies(profile: SrtpProfile) -> (CryptoPolicy, CryptoPolicy) {
    // RFC 4568 §6.2.2 / RFC 5764 §4.1.2: the _32 suites shorten the SRTP
    // tag only; SRTCP keeps the 80-bit one.
    match profile {
        SrtpProfile::AeadAes256Gcm => (
            CryptoPolicy::aes_gcm_256_16_auth(),
            CryptoPolicy::aes_gcm_256_16_auth(),
        ),
        SrtpProfile::AeadAes128Gcm => (
            CryptoPolicy::aes_gcm_128_16_auth(),
            CryptoPolicy::aes_gcm_128_16_auth(),
        ),
        SrtpProfile::Aes256CmHmacSha1_80 => (
            CryptoPolicy::aes_cm_256_hmac_sha1_80(),
            CryptoPolicy::aes_cm_256_hmac_sha1_80(),
        ),
        SrtpProfile::Aes256CmHmacSha1_32 => (
            CryptoPolicy::aes_cm_256_hmac_sha1_32(),
            CryptoPolicy::aes_cm_256_hmac_sha1_80(),
        ),
        SrtpProfile::AesCm128HmacSha1_80 => (
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
        ),
        SrtpProfile::AesCm128HmacSha1_32 => (
            CryptoPolicy::aes_cm_128_hmac_sha1_32(),
            CryptoPolicy::aes_cm_128_hmac_sha1_80(),
        ),
        SrtpProfile::NullHmacSha1_80 => (
            CryptoPolicy::null_cipher_hmac_sha1_80(),
            CryptoPolicy::null_cipher_hmac_sha1_80(),
        ),
        SrtpProfile::NullHmacSha1_32 => (
            null_cipher_hmac_sha1_32(),
            CryptoPolicy::null_cipher_hmac_sha1_80(),
        ),
    }
}

/// libsrtp2 has no setter for NULL_HMAC_SHA1_32: its _80 policy with the
/// 4-byte tag (the same change its AES-CM _32 setters make).
fn null_cipher_hmac_sha1_32() -> CryptoPolicy {
    let mut raw = CryptoPolicy::null_cipher_hmac_sha1_80().into_raw();
    raw.auth_tag_len = 4;
    // SAFETY: initialised by libsrtp's own setter; only the tag length,
    // which libsrtp's HMAC accepts from 0 to 20, is changed.
    unsafe { CryptoPolicy::from_raw(raw) }
}

/// An SRTP/SRTCP context for one direction of one media port.
pub struct SrtpContext {
    session: Session,
    key: SrtpKey,
    direction: Direction,
    /// SSRCs added explicitly (to set a ROC before their first packet).
    added: HashSet<u32>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.key.profile)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// A context for `direction` under `key`; any SSRC is accepted.
    pub fn new(key: SrtpKey, direction: Direction) -> Result<Self, SrtpError> {
        let material = key.concatenated();
        let policy = stream_policy(key.profile, &material);
        let session = match direction {
            Direction::Inbound => Session::with_inbound_template(policy)?,
            Direction::Outbound => Session::with_outbound_template(policy)?,
        };
        Ok(SrtpContext {
            session,
            key,
            direction,
            added: HashSet::new(),
        })
    }

    /// From a profile, master key and master salt (the DTLS-SRTP hand-over).
    pub fn from_parts(
        profile: SrtpProfile,
        key: &[u8],
        salt: &[u8],
        direction: Direction,
    ) -> Result<Self, SrtpError> {
        SrtpContext::new(SrtpKey::new(profile, key, salt)?, direction)
    }

    /// The key this context works with.
    pub fn key(&self) -> &SrtpKey {
        &self.key
    }

    /// The direction this context works in.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Encrypts and authenticates an RTP packet in place (the buffer grows by
    /// the tag).
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_len(packet, 12)?;
        self.session.protect(packet).map_err(Into::into)
    }

    /// Authenticates and decrypts an SRTP packet in place.
    pub fn unprotect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_len(packet, 12)?;
        self.session.unprotect(packet).map_err(Into::into)
    }

    /// Encrypts and authenticates an RTCP compound packet in place.
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_len(packet, 8)?;
        self.session.protect_rtcp(packet).map_err(Into::into)
    }

    /// Authenticates and decrypts an SRTCP packet in place.
    pub fn unprotect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        check_len(packet, 8)?;
        self.session.unprotect_rtcp(packet).map_err(Into::into)
    }

    /// The rollover counter of `ssrc`, once the context has seen it.
    pub fn roc(&mut self, ssrc: u32) -> Option<u32> {
        self.session.get_stream_roc(ssrc).ok()
    }

    /// Sets the rollover counter of `ssrc` (a restored stream continues its
    /// packet index instead of starting from zero).
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) -> Result<(), SrtpError> {
        if self.session.get_stream_roc(ssrc).is_err() && self.added.insert(ssrc) {
            let material = self.key.concatenated();
            let policy = stream_policy(self.key.profile, &material);
            self.session.add_stream(ssrc, policy)?;
        }
        self.session.set_stream_roc(ssrc, roc).map_err(Into::into)
    }
}

fn stream_policy(profile: SrtpProfile, material: &[u8]) -> StreamPolicy<'_> {
    let (rtp, rtcp) = policies(profile);
    StreamPolicy {
        rtp,
        rtcp,
        key: material,
        // libsrtp's default window (128 packets), RFC 3711's minimum is 64.
        window_size: 0,
        // A relay cannot vouch that a repeated sequence number carries the
        // same payload; a duplicate from the plain side is dropped instead.
        allow_repeat_tx: false,
        encrypt_extension_headers: &[],
    }
}

fn check_len(packet: &[u8], min: usize) -> Result<(), SrtpError> {
    // libsrtp checks too, but its status for a runt varies by version.
    if packet.len() < min || packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
