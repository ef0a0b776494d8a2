//! Reply dictionaries.
//!
//! Every reply has `result`: `pong` for `ping`, `ok` (optionally with a
//! `warning` string), `error` with `error-reason` and nothing else, or
//! `load limit` with a `message` (only for clients that declared
//! `supports: ["load limit"]`).

use crate::bencode::{Dict, Value};

/// The `message` rtpengine sends with `load limit` when the session limit
/// is reached, and the `error-reason` for clients that do not support
/// `load limit` (daemon/call_interfaces.c, daemon/control_ng.c).
pub const SESSION_LIMIT_MESSAGE: &str = "Parallel session limit reached";

/// Separator between several warnings in the single `warning` string.
const WARNING_SEPARATOR: &str = "; ";

/// `{result: pong}`.
pub fn pong() -> Value {
    result("pong", Dict::new())
}

/// `extra` plus `result: ok`.
pub fn ok(extra: Dict) -> Value {
    result("ok", extra)
}

/// `extra` plus `result: ok`, and `warning` (the warnings joined with "; ")
/// unless there are none. rtpengine's `warning` is a single string.
pub fn ok_with_warnings(extra: Dict, warnings: &[String]) -> Value {
    with_warnings(ok(extra), warnings)
}

/// `reply` with `warning` (as [`ok_with_warnings`] writes it) when it is an
/// `ok` reply and there are warnings; any other reply as it is.
pub fn with_warnings(reply: Value, warnings: &[String]) -> Value {
    match reply {
        Value::Dict(mut dict)
            if !warnings.is_empty()
                && dict.get(b"result".as_slice()).and_then(Value::as_str) == Some("ok") =>
        {
            dict.insert(
                b"warning".to_vec(),
                Value::str(&warnings.join(WARNING_SEPARATOR)),
            );
            Value::Dict(dict)
        }
        other => other,
    }
}

/// `{result: error, error-reason: reason}`.
pub fn error(reason: &str) -> Value {
    Value::dict([
        ("result", Value::str("error")),
        ("error-reason", Value::str(reason)),
    ])
}

/// `{result: load limit, message: "Parallel session limit reached"}`.
pub fn load_limit() -> Value {
    Value::dict([
        ("result", Value::str("load limit")),
        ("message", Value::str(SESSION_LIMIT_MESSAGE)),
    ])
}

/// The session-limit reply a client understands: [`load_limit`] if it sent
/// `supports: ["load limit"]`, else the equivalent [`error`] (what
/// rtpengine does for older clients).
pub fn load_limit_or_error(client_supports_load_limit: bool) -> Value {
    if client_supports_load_limit {
        load_limit()
    } else {
        error(SESSION_LIMIT_MESSAGE)
    }
}

/// The reply to an offer refused by any of rtpengine's limits (sessions,
/// load, CPU, bandwidth): `{result: load limit, message}` for a client that
/// sent `supports: ["load limit"]`; for older clients rtpengine answers
/// every limit with the error [`SESSION_LIMIT_MESSAGE`], whatever the
/// reason, and so does this.
pub fn limit_reached(message: &str, client_supports_load_limit: bool) -> Value {
    if client_supports_load_limit {
        Value::dict([
            ("result", Value::str("load limit")),
            ("message", Value::str(message)),
        ])
    } else {
        error(SESSION_LIMIT_MESSAGE)
    }
}

fn result(result: &str, mut extra: Dict) -> Value {
    extra.insert(b"result".to_vec(), Value::str(result));
    Value::Dict(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::encode;

    #[test]
    fn wire_forms() {
        assert_eq!(encode(&pong()), b"d6:result4:ponge");
        assert_eq!(encode(&ok(Dict::new())), b"d6:result2:oke");
        assert_eq!(
            encode(&error("Unknown call-id")),
            b"d12:error-reason15:Unknown call-id6:result5:errore"
        );
        assert_eq!(
            encode(&load_limit()),
            b"d7:message30:Parallel session limit reached6:result10:load limite"
        );
        assert_eq!(
            load_limit_or_error(false),
            error("Parallel session limit reached")
        );
        assert_eq!(
            encode(&limit_reached("Load limit exceeded", true)),
            b"d7:message19:Load limit exceeded6:result10:load limite"
        );
        assert_eq!(
            limit_reached("CPU usage limit exceeded", false),
            error("Parallel session limit reached")
        );
    }

    #[test]
    fn ok_keeps_extra_and_joins_warnings() {
        let mut extra = Dict::new();
        extra.insert(b"sdp".to_vec(), Value::str("v=0\r\n"));
        let v = ok_with_warnings(extra.clone(), &[]);
        assert_eq!(v.get("warning"), None);
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("v=0\r\n"));
        let v = ok_with_warnings(extra, &["a".to_owned(), "b".to_owned()]);
        assert_eq!(v.get("warning").and_then(Value::as_str), Some("a; b"));
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
    }
}
