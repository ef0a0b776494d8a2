//! JSON documents mapped onto the bencode [`Value`] model.
//!
//! rtpengine accepts an NG payload that starts with `{` as JSON. The mapping:
//! object → [`Value::Dict`], array → [`Value::List`], string →
//! [`Value::Bytes`] (UTF-8), integer → [`Value::Int`], `true`/`false` →
//! `Int(1)`/`Int(0)`. A number with a fraction or exponent is truncated
//! toward zero, as rtpengine's JSON reader does when it wants an integer; a
//! number outside `i64` and `null` are errors (bencode has no equivalent).
//! A key repeated in one object keeps its last value (serde_json's rule;
//! bencode input is stricter). Nesting is limited to
//! [`MAX_DEPTH`] levels like bencode.
//!
//! Replies go the other way ([`encode_into`]): rtpengine answers a JSON
//! request in JSON, byte strings as JSON strings and integers as numbers.

use crate::bencode::{Dict, Value, MAX_DEPTH};

/// Why some bytes are not a JSON document this crate can represent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not well-formed JSON.
    #[error("json: {message} at line {line} column {column}")]
    Syntax {
        /// serde_json's description.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// `null`, which has no bencode equivalent.
    #[error("json: null values are not supported")]
    Null,
    /// A number that does not fit in an `i64`.
    #[error("json: number {0} is out of range")]
    NumberOutOfRange(String),
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("json: nesting deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep,
}

/// Decodes one JSON document (surrounding whitespace allowed) into a [`Value`].
pub fn decode(input: &[u8]) -> Result<Value, JsonError> {
    // serde_json bounds its own recursion (128 levels), so this cannot
    // overflow the stack; our tighter limit is applied while converting.
    let doc: serde_json::Value = serde_json::from_slice(input).map_err(|e| JsonError::Syntax {
        message: syntax_message(&e),
        line: e.line(),
        column: e.column(),
    })?;
    convert(doc, 1)
}

/// serde_json's message without its own " at line X column Y" suffix.
fn syntax_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(cut) => full.get(..cut).unwrap_or(&full).to_owned(),
        None => full,
    }
}

/// Appends `v` as a JSON document. Byte strings that are not UTF-8 (never
/// in relayd's replies, which hold text it wrote or was sent as JSON) are
/// written with U+FFFD in place of the bad bytes rather than refused.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Bytes(b) => string(b, out),
        Value::List(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                encode_into(item, out);
            }
            out.push(b']');
        }
        Value::Dict(d) => {
            out.push(b'{');
            for (n, (k, item)) in d.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                encode_into(item, out);
            }
            out.push(b'}');
        }
    }
}

fn string(b: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(b);
    // Writing a str into a Vec cannot fail; serde_json does the escaping.
    let _ = serde_json::to_writer(&mut *out, text.as_ref());
}

/// Converts one JSON value; `depth` is the level a container here would have.
fn convert(v: serde_json::Value, depth: usize) -> Result<Value, JsonError> {
    use serde_json::Value as J;
    match v {
        J::Null => Err(JsonError::Null),
        J::Bool(b) => Ok(Value::Int(i64::from(b))),
        J::Number(n) => number(&n).map(Value::Int),
        J::String(s) => Ok(Value::Bytes(s.into_bytes())),
        J::Array(_) | J::Object(_) if depth > MAX_DEPTH => Err(JsonError::TooDeep),
        J::Array(items) => items
            .into_iter()
            .map(|item| convert(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        J::Object(map) => map
            .into_iter()
            .map(|(k, v)| Ok((k.into_bytes(), convert(v, depth + 1)?)))
            .collect::<Result<Dict, _>>()
            .map(Value::Dict),
    }
}

fn number(n: &serde_json::Number) -> Result<i64, JsonError> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    let out_of_range = || JsonError::NumberOutOfRange(n.to_string());
    if n.is_u64() {
        return Err(out_of_range());
    }
    let f = n.as_f64().ok_or_else(out_of_range)?;
    // i64::MAX is not exactly representable; 2^63 is the first float past it.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let t = f.trunc();
    if t.is_finite() && (-LIMIT..LIMIT).contains(&t) {
        // In range and integral, so the conversion is exact.
        Ok(t as i64)
    } else {
        Err(out_of_range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_offer() {
        let v = decode(
            br#"{ "command": "offer", "call-id": "abc", "from-tag": "t1",
                 "sdp": "v=0\r\n", "flags": ["trust address"],
                 "received-from": ["IP4", "10.65.31.43"], "ptime": 20,
                 "fast": true, "slow": false }"#,
        )
        .expect("valid");
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(
            v.get("sdp").and_then(Value::as_bytes),
            Some(&b"v=0\r\n"[..])
        );
        assert_eq!(
            v.get("received-from"),
            Some(&Value::str_list(["IP4", "10.65.31.43"]))
        );
        assert_eq!(v.get("ptime"), Some(&Value::Int(20)));
        assert_eq!(v.get("fast"), Some(&Value::Int(1)));
        assert_eq!(v.get("slow"), Some(&Value::Int(0)));
    }

    #[test]
    fn encodes_what_it_decodes() {
        let text =
            br#"{"flags":["trust-address"],"ptime":-20,"sdp":"v=0\r\ns=caf\u00e9 \"q\"\r\n"}"#;
        let v = decode(text).expect("valid");
        let mut out = Vec::new();
        encode_into(&v, &mut out);
        assert_eq!(decode(&out), Ok(v));
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"flags\":[\"trust-address\"],\"ptime\":-20,\"sdp\":\"v=0\\r\\ns=café \\\"q\\\"\\r\\n\"}"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(decode(b"-12"), Ok(Value::Int(-12)));
        assert_eq!(decode(b"2.9"), Ok(Value::Int(2)));
        assert_eq!(decode(b"-2.9"), Ok(Value::Int(-2)));
        assert_eq!(decode(b"1e3"), Ok(Value::Int(1000)));
        assert!(matches!(
            decode(b"18446744073709551615"),
            Err(JsonError::NumberOutOfRange(_))
        ));
        assert!(matches!(
            decode(b"1e300"),
            Err(JsonError::NumberOutOfRange(_))
        ));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{'a': 1}",
            b"{\"a\": 1,}",
            b"[1, 2",
            b"{\"a\": 1} x",
            b"\"\xff\"",
        ] {
            assert!(
                matches!(decode(bad), Err(JsonError::Syntax { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(decode(b"{\"a\": null}"), Err(JsonError::Null));
    }

    #[test]
    fn syntax_error_display() {
        let e = decode(b"{\n  \"a\" 1}").expect_err("malformed");
        assert_eq!(e.to_string(), "json: expected `:` at line 2 column 7");
    }

    #[test]
    fn nesting_limit() {
        let ok = [b"[".repeat(MAX_DEPTH), b"]".repeat(MAX_DEPTH)].concat();
        assert!(decode(&ok).is_ok());
        let deep = [b"[".repeat(MAX_DEPTH + 1), b"]".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(decode(&deep), Err(JsonError::TooDeep));
        // Past serde_json's own limit: still an error, not a stack overflow.
        let bomb = b"[".repeat(100_000);
        assert!(decode(&bomb).is_err());
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        assert_eq!(
            decode(br#"{"a": 1, "a": 2}"#),
            Ok(Value::dict([("a", Value::Int(2))]))
        );
    }
}
