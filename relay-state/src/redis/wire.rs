//! What replication puts in Redis: the key layout, the encoding of a
//! call's value, and the messages on the change channel.
//!
//! - `PREFIX call:CALL-ID`: one key per live call, its value the record
//!   format ([`RECORD_VERSION`], u32 little-endian) followed by the
//!   postcard encoding of its [`CallRecord`]. No TTL: a call ends with a
//!   `DEL`, and a resync removes keys of calls the active no longer has.
//! - `PREFIX calls`: the pub/sub channel. `c:CALL-ID` says the call's key
//!   changed (or went); `t:MS` says that every change the active committed
//!   before MS (its wall clock, milliseconds since the epoch) is in Redis.
//!   Both travel on one channel, so a standby that reads `t:MS` has seen
//!   every call message before it: MS is how current its mirror is.

use crate::{CallRecord, RECORD_VERSION};

/// The key prefix relayd uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "xrelay:";

/// Names of the keys and channel under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// Keys under `prefix`, which must hold no glob character
    /// (`*?[]\`): it starts a `SCAN MATCH` pattern.
    ///
    /// # Panics
    /// On a prefix with a glob character (a programming error: prefixes
    /// are constants, or test names).
    pub fn new(prefix: &str) -> Self {
        assert!(
            !prefix.contains(['*', '?', '[', ']', '\\']),
            "Redis key prefix {prefix:?} holds a glob character"
        );
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The key of a call.
    pub fn call(&self, call_id: &str) -> Vec<u8> {
        let mut key = self.call_prefix();
        key.extend_from_slice(call_id.as_bytes());
        key
    }

    /// What every call key starts with.
    pub fn call_prefix(&self) -> Vec<u8> {
        format!("{}call:", self.prefix).into_bytes()
    }

    /// The `SCAN MATCH` pattern of every call key.
    pub fn call_pattern(&self) -> String {
        format!("{}call:*", self.prefix)
    }

    /// The call-id a call key names, if it is one (and valid UTF-8, as
    /// every call-id relayd writes is).
    pub fn call_id_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let rest = key.strip_prefix(self.call_prefix().as_slice())?;
        std::str::from_utf8(rest).ok()
    }

    /// The change channel.
    pub fn channel(&self) -> String {
        format!("{}calls", self.prefix)
    }
}

/// The value of a call key.
pub fn encode_call(call: &CallRecord) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(call, RECORD_VERSION.to_le_bytes().to_vec())
}

/// Why a value read from Redis was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Shorter than its record format.
    #[error("value of {0} bytes is too short to be a call record")]
    Short(usize),
    /// Written by a relayd of another record format.
    #[error("call record format {found}; this relayd reads {RECORD_VERSION}")]
    Format {
        /// The format the value names.
        found: u32,
    },
    /// Not a call record of this format.
    #[error("undecodable call record: {0}")]
    Decode(String),
    /// The record names another call than its key.
    #[error("record of call {found:?} under the key of {key:?}")]
    WrongCall {
        /// The key's call-id.
        key: String,
        /// The record's.
        found: String,
    },
}

/// Reads the value of the key of `call_id`.
pub fn decode_call(call_id: &str, value: &[u8]) -> Result<CallRecord, ValueError> {
    let (format, payload) = value
        .split_first_chunk::<4>()
        .ok_or(ValueError::Short(value.len()))?;
    let found = u32::from_le_bytes(*format);
    let decode = |e: postcard::Error| ValueError::Decode(e.to_string());
    let call: CallRecord = match found {
        RECORD_VERSION => postcard::from_bytes(payload).map_err(decode)?,
        // An active of an earlier format (a rolling upgrade).
        2 => postcard::from_bytes::<crate::records::v2::CallRecord>(payload)
            .map_err(decode)?
            .into(),
        1 => postcard::from_bytes::<crate::records::v1::CallRecord>(payload)
            .map_err(decode)?
            .into(),
        _ => return Err(ValueError::Format { found }),
    };
    if call.call_id != call_id {
        return Err(ValueError::WrongCall {
            key: call_id.to_owned(),
            found: call.call_id,
        });
    }
    Ok(call)
}

/// A message on the change channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// This call's key changed or went.
    Call(String),
    /// Every change committed before this wall-clock time (ms) is in Redis.
    SyncedThrough(u64),
}

impl Message {
    /// Its payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Call(id) => [b"c:", id.as_bytes()].concat(),
            Message::SyncedThrough(ms) => format!("t:{ms}").into_bytes(),
        }
    }

    /// Reads a payload; None for anything else.
    pub fn decode(payload: &[u8]) -> Option<Message> {
        match payload.split_first_chunk::<2>()? {
            (b"c:", id) => std::str::from_utf8(id)
                .ok()
                .map(|id| Message::Call(id.to_owned())),
            (b"t:", ms) => std::str::from_utf8(ms)
                .ok()?
                .parse()
                .ok()
                .map(Message::SyncedThrough),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            created_ms: 1,
            last_signal_ms: 2,
            delete_at_ms: None,
            monologues: vec![],
        }
    }

    #[test]
    fn values_round_trip_and_bad_ones_are_named() {
        let value = encode_call(&call("a*b")).unwrap();
        assert_eq!(value[..4], RECORD_VERSION.to_le_bytes());
        assert_eq!(decode_call("a*b", &value).unwrap(), call("a*b"));
        assert!(matches!(
            decode_call("other", &value),
            Err(ValueError::WrongCall { .. })
        ));
        assert_eq!(decode_call("x", &[1, 0]), Err(ValueError::Short(2)));
        let mut newer = value.clone();
        newer[..4].copy_from_slice(&(RECORD_VERSION + 1).to_le_bytes());
        assert_eq!(
            decode_call("a*b", &newer),
            Err(ValueError::Format {
                found: RECORD_VERSION + 1
            })
        );
        let mut garbage = RECORD_VERSION.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 3]);
        assert!(matches!(
            decode_call("a*b", &garbage),
            Err(ValueError::Decode(_))
        ));
    }

    #[test]
    fn keys_and_messages() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.call("c@1"), b"t1:call:c@1");
        assert_eq!(keys.call_id_of(b"t1:call:c@1"), Some("c@1"));
        assert_eq!(keys.call_id_of(b"t2:call:c@1"), None);
        assert_eq!(keys.call_pattern(), "t1:call:*");
        assert_eq!(keys.channel(), "t1:calls");
        for m in [Message::Call("x:y".into()), Message::SyncedThrough(17)] {
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::decode(b"t:nope"), None);
        assert_eq!(Message::decode(b"z"), None);
    }
}
