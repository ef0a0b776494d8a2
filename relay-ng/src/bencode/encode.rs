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
            if *i < 0 {
                out.push(b'-');
            }
            decimal(i.unsigned_abs(), out);
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

#[inline]
pub(super) fn bytes(b: &[u8], out: &mut Vec<u8>) {
    decimal(b.len() as u64, out);
    out.push(b':');
    out.extend_from_slice(b);
}

/// Appends `n` in decimal. Every integer and every string length of a reply
/// goes through here: formatting them with `to_string` allocated a String
/// each, a visible share of encoding a `delete` reply.
#[inline]
pub(super) fn decimal(mut n: u64, out: &mut Vec<u8>) {
    // Most figures are lengths and ports, short enough for a fixed-size
    // append, which compiles to a store instead of a call to memcpy.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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
    fn integers_and_lengths_in_decimal() {
        for (n, text) in [
            (0, "i0e"),
            (7, "i7e"),
            (-7, "i-7e"),
            (10, "i10e"),
            (99, "i99e"),
            (100, "i100e"),
            (-10, "i-10e"),
            (1_000_000, "i1000000e"),
            (i64::MAX, "i9223372036854775807e"),
            (i64::MIN, "i-9223372036854775808e"),
        ] {
            assert_eq!(encode(&Value::Int(n)), text.as_bytes());
        }
        assert_eq!(encode(&Value::bytes(vec![b'x'; 12])), b"12:xxxxxxxxxxxx");
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
