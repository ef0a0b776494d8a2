//! DTLS-SRTP (RFC 5763/5764) key exchange, sans I/O: a DTLS 1.2 endpoint per
//! media port facing a WebRTC peer, the relay's certificate and the
//! fingerprints SDP carries.
//!
//! OpenSSL (Debian's libssl, through the `openssl` crate) does the protocol;
//! this module only moves datagrams, checks the peer's certificate against
//! its signalled fingerprint and splits the exported keying material into
//! SRTP master keys and salts.

mod cert;
mod endpoint;
mod fingerprint;

pub use cert::{CertKey, CertSignature, DtlsCertificate};
pub use endpoint::{
    looks_like_dtls, DtlsConfig, DtlsContext, DtlsEndpoint, DtlsRole, DtlsState, SrtpKeyMaterial,
    SrtpKeys, DEFAULT_CIPHERS,
};
pub use fingerprint::{Fingerprint, FingerprintHash};

/// Why a DTLS operation failed. The caller counts these per stream.
#[derive(Debug, thiserror::Error)]
pub enum DtlsError {
    #[error("OpenSSL: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("malformed fingerprint {0:?}")]
    BadFingerprint(String),
    #[error("certificate and private key do not match")]
    KeyMismatch,
    #[error("peer certificate does not match its SDP fingerprint")]
    FingerprintMismatch,
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("DTLS handshake timed out")]
    Timeout,
    #[error("no common SRTP protection profile")]
    NoSrtpProfile,
    #[error("{0:?} is not a DTLS-SRTP protection profile relayd negotiates")]
    NotDtlsProfile(crate::SrtpProfile),
    #[error("not a DTLS record")]
    NotDtls,
    #[error("DTLS client not started")]
    NotStarted,
    #[error("DTLS association failed earlier")]
    Failed,
    #[error("DTLS association closed by the peer")]
    Closed,
}

#[cfg(test)]
mod tests;
