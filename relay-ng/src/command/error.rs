//! Request errors; each one's `Display` is the `error-reason` to send.

/// Why a decoded request cannot be executed.
///
/// The texts are rtpengine's own where it has one (daemon/control_ng.c,
/// daemon/call_interfaces.c), because SIP proxies and their operators match on
/// them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NgError {
    /// The body is not a dictionary (only reachable by calling
    /// [`parse`](super::parse) directly; framing guarantees a dictionary).
    #[error("Could not decode bencode dictionary")]
    NotADictionary,
    /// No `command` key, or its value is not a string.
    #[error("Dictionary contains no key \"command\"")]
    NoCommand,
    /// A command rtpengine does not know either.
    #[error("Unrecognized command")]
    UnknownCommand(String),
    /// A command rtpengine knows but this relay does not implement.
    #[error("No command handler")]
    NotImplemented(String),
    /// `offer`/`answer` without `sdp`.
    #[error("No SDP body in message")]
    NoSdp,
    /// No `call-id` (or an empty one).
    #[error("No call-id in message")]
    NoCallId,
    /// `offer`/`answer` without `from-tag`.
    #[error("No from-tag in message")]
    NoFromTag,
    /// `answer` without `to-tag`.
    #[error("No to-tag in message")]
    NoToTag,
    /// `list` with a negative `limit`.
    #[error("invalid limit, must be >= 0")]
    InvalidLimit,
    /// A string value that is not UTF-8 (identifiers must compare exactly,
    /// so they are never repaired); our own text, rtpengine has none.
    #[error("Invalid UTF-8 in '{0}'")]
    InvalidUtf8(String),
}
