//! Sans-I/O media transforms for relayd: the ICE-lite agent ([`ice`]), the
//! DTLS-SRTP key exchange ([`dtls`]), SRTP contexts ([`srtp`]), SDES
//! `a=crypto` ([`sdes`]) and the
//! SRTP profiles both key exchanges name ([`srtp_profile`]).
//!
//! Nothing here touches a socket or a clock: callers hand in datagrams, their
//! source and the current [`std::time::Instant`], and get back what to send and
//! what changed. That keeps the agent testable without root, namespaces or
//! clang, and fuzzable on its own.

pub mod dtls;
pub mod ice;
pub mod sdes;
pub mod srtp;
pub mod srtp_profile;

pub use ice::{
    looks_like_stun, Consent, Handled, IceCredentials, IceEvent, IceLiteAgent, Rejection,
    CONSENT_TIMEOUT,
};
pub use srtp_profile::SrtpProfile;
