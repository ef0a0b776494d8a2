//! Canonical bencode encoding (dictionary keys in sorted order).
//!
//! Encoding recurses once per nesting level; values that came from
//! [`decode`](fn@super::decode) are at most [`MAX_DEPTH`](super::MAX_DEPTH) deep.

use super::value::Value;

/// Encodes `v` into a new buffer.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// Appends the encoding of `v` to `out`.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            // BTreeMap iterates in key order, which is bencode's canonical order.
            for (k, v) in d {
                bytes(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::decode;

    #[test]
    fn encodes_canonically() {
        let v = Value::dict([
            ("result", Value::str("pong")),
            (
                "a",
                Value::list([Value::Int(-3), Value::Int(0), Value::str("")]),
            ),
        ]);
        assert_eq!(encode(&v), b"d1:ali-3ei0e0:e6:result4:ponge");
    }

    #[test]
    fn round_trips() {
        let v = Value::dict([
            ("sdp", Value::bytes(b"v=0\r\n\x00\xff".to_vec())),
            ("n", Value::Int(i64::MIN)),
            ("m", Value::Int(i64::MAX)),
            (
                "nested",
                Value::list([Value::dict([("k", Value::List(vec![]))])]),
            ),
        ]);
        assert_eq!(decode(&encode(&v)), Ok(v));
    }

    #[test]
    fn sorts_unsorted_input() {
        let v = decode(b"d1:bi2e1:ai1ee").expect("valid");
        assert_eq!(encode(&v), b"d1:ai1e1:bi2ee");
    }
}
