//! Strict bencode decoding with byte offsets in every error.
//!
//! Rules, all checked before anything is allocated:
//! - integers are canonical: no `i-0e`, no leading zeros, no empty `ie`, no
//!   overflow of `i64`;
//! - string lengths are canonical decimal (`0:` but not `03:`) and must fit in
//!   the remaining input;
//! - containers nest at most [`MAX_DEPTH`] levels, so recursion is bounded;
//! - dictionary keys are byte strings; they may come in any order (rtpengine
//!   accepts that), but a key repeated within one dictionary is an error,
//!   because two readers could otherwise disagree on which value counts.

use std::collections::btree_map::Entry;

use super::value::{Dict, Value};

/// The deepest nesting of lists and dictionaries accepted (the top level is 1).
pub const MAX_DEPTH: usize = 32;

/// Why some bytes are not one valid bencode value; `offset` is where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input stopped in the middle of a value.
    #[error("bencode: unexpected end of input at byte {offset}")]
    UnexpectedEnd {
        /// Length of the input.
        offset: usize,
    },
    /// A byte that cannot start or continue a value here.
    #[error("bencode: unexpected byte 0x{byte:02x} at byte {offset}")]
    UnexpectedByte {
        /// The offending byte.
        byte: u8,
        /// Its position.
        offset: usize,
    },
    /// An `i...e` integer that is empty, non-canonical or out of `i64` range.
    #[error("bencode: invalid integer at byte {offset}")]
    InvalidInteger {
        /// Position of the `i`.
        offset: usize,
    },
    /// A string length that is non-canonical or absurdly large.
    #[error("bencode: invalid string length at byte {offset}")]
    InvalidLength {
        /// Position of the first length digit.
        offset: usize,
    },
    /// A string whose declared length runs past the end of the input.
    #[error("bencode: string of {len} bytes at byte {offset} runs past the end of input")]
    StringPastEnd {
        /// Position of the first length digit.
        offset: usize,
        /// The declared length.
        len: usize,
    },
    /// Lists and dictionaries nested deeper than [`MAX_DEPTH`].
    #[error("bencode: nesting deeper than {max} levels at byte {offset}", max = MAX_DEPTH)]
    TooDeep {
        /// Position of the container that is one level too deep.
        offset: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key is not a byte string at byte {offset}")]
    NonStringKey {
        /// Position of the key.
        offset: usize,
    },
    /// The same key twice in one dictionary.
    #[error("bencode: duplicate dictionary key at byte {offset}")]
    DuplicateKey {
        /// Position of the second occurrence.
        offset: usize,
    },
    /// Bytes after the one complete value (only from [`decode`]).
    #[error("bencode: trailing data at byte {offset}")]
    TrailingData {
        /// Position of the first byte after the value.
        offset: usize,
    },
}

impl BencodeError {
    /// The byte offset the error refers to.
    pub fn offset(&self) -> usize {
        match *self {
            Self::UnexpectedEnd { offset }
            | Self::UnexpectedByte { offset, .. }
            | Self::InvalidInteger { offset }
            | Self::InvalidLength { offset }
            | Self::StringPastEnd { offset, .. }
            | Self::TooDeep { offset }
            | Self::NonStringKey { offset }
            | Self::DuplicateKey { offset }
            | Self::TrailingData { offset } => offset,
        }
    }

    /// Whether more input could still make this a valid value (a stream
    /// reader should wait for more bytes rather than give up).
    pub fn is_incomplete(&self) -> bool {
        matches!(
            self,
            Self::UnexpectedEnd { .. } | Self::StringPastEnd { .. }
        )
    }
}

/// Decodes exactly one value that spans all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(BencodeError::TrailingData { offset: used });
    }
    Ok(value)
}

/// Decodes one value at the start of `input`, returning it and the number of
/// bytes it took; what follows is left alone (stream framing).
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), BencodeError> {
    let mut d = Decoder { input, pos: 0 };
    let value = d.value(1)?;
    Ok((value, d.pos))
}

/// A cursor over the input.
struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd {
                offset: self.input.len(),
            })
    }

    /// One value; `depth` is the nesting level a container here would have.
    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        let start = self.pos;
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' | b'd' if depth > MAX_DEPTH => Err(BencodeError::TooDeep { offset: start }),
            b'l' => self.list(depth).map(Value::List),
            b'd' => self.dict(depth).map(Value::Dict),
            byte => Err(BencodeError::UnexpectedByte {
                byte,
                offset: start,
            }),
        }
    }

    /// `i<canonical decimal>e`.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        let invalid = BencodeError::InvalidInteger { offset: start };
        self.pos += 1; // the 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let first_digit = self.pos;
        // Accumulate negatively so that i64::MIN is representable.
        let mut acc: i64 = 0;
        loop {
            match self.peek()? {
                b'e' => break,
                c @ b'0'..=b'9' => {
                    acc = acc
                        .checked_mul(10)
                        .and_then(|a| a.checked_sub(i64::from(c - b'0')))
                        .ok_or_else(|| invalid.clone())?;
                    self.pos += 1;
                }
                _ => return Err(invalid),
            }
        }
        let digits = self.input.get(first_digit..self.pos).unwrap_or_default();
        let canonical = match digits {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            _ => true,
        };
        if !canonical {
            return Err(invalid);
        }
        self.pos += 1; // the 'e'
        if negative {
            Ok(acc)
        } else {
            acc.checked_neg().ok_or(invalid)
        }
    }

    /// `<canonical length>:<bytes>`.
    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let start = self.pos;
        let invalid = BencodeError::InvalidLength { offset: start };
        let mut len: usize = 0;
        loop {
            match self.peek()? {
                b':' => break,
                c @ b'0'..=b'9' => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(c - b'0')))
                        .ok_or_else(|| invalid.clone())?;
                    self.pos += 1;
                }
                _ => return Err(invalid),
            }
        }
        let digits = self.pos - start;
        if digits > 1 && self.input.get(start) == Some(&b'0') {
            return Err(invalid);
        }
        self.pos += 1; // the ':'
                       // Check against what is left before allocating anything.
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or(BencodeError::StringPastEnd { offset: start, len })?;
        let bytes = self.input.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        Ok(bytes)
    }

    /// `l<values>e`.
    fn list(&mut self, depth: usize) -> Result<Vec<Value>, BencodeError> {
        self.pos += 1; // the 'l'
        let mut items = Vec::new();
        while self.peek()? != b'e' {
            items.push(self.value(depth + 1)?);
        }
        self.pos += 1;
        Ok(items)
    }

    /// `d<key value>*e`, keys in any order, no duplicates.
    fn dict(&mut self, depth: usize) -> Result<Dict, BencodeError> {
        self.pos += 1; // the 'd'
        let mut dict = Dict::new();
        loop {
            let key_start = self.pos;
            match self.peek()? {
                b'e' => break,
                b'0'..=b'9' => {}
                _ => return Err(BencodeError::NonStringKey { offset: key_start }),
            }
            let key = self.bytes()?;
            let value = self.value(depth + 1)?;
            match dict.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(_) => {
                    return Err(BencodeError::DuplicateKey { offset: key_start });
                }
            }
        }
        self.pos += 1;
        Ok(dict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &[u8]) -> BencodeError {
        match decode(input) {
            Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
            Err(e) => e,
        }
    }

    #[test]
    fn decodes_each_kind() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"0:"), Ok(Value::bytes(Vec::new())));
        assert_eq!(decode(b"4:spam"), Ok(Value::str("spam")));
        assert_eq!(decode(b"le"), Ok(Value::List(Vec::new())));
        assert_eq!(
            decode(b"l4:spami1ee"),
            Ok(Value::list([Value::str("spam"), Value::Int(1)]))
        );
        assert_eq!(
            decode(b"d3:cow3:moo4:spam4:eggse"),
            Ok(Value::dict([
                ("cow", Value::str("moo")),
                ("spam", Value::str("eggs"))
            ]))
        );
    }

    #[test]
    fn integer_limits() {
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(
            err(b"i9223372036854775808e"),
            BencodeError::InvalidInteger { offset: 0 }
        );
        assert_eq!(
            err(b"i-9223372036854775809e"),
            BencodeError::InvalidInteger { offset: 0 }
        );
    }

    #[test]
    fn rejects_non_canonical_integers() {
        for bad in [
            &b"ie"[..],
            b"i-e",
            b"i-0e",
            b"i03e",
            b"i-03e",
            b"i00e",
            b"i1-e",
            b"i+1e",
            b"i 1e",
            b"i1.5e",
        ] {
            assert_eq!(
                err(bad),
                BencodeError::InvalidInteger { offset: 0 },
                "{bad:?}"
            );
        }
        assert_eq!(err(b"i12"), BencodeError::UnexpectedEnd { offset: 3 });
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(err(b"03:abc"), BencodeError::InvalidLength { offset: 0 });
        assert_eq!(
            err(b"99999999999:x"),
            BencodeError::StringPastEnd {
                offset: 0,
                len: 99_999_999_999
            }
        );
        assert_eq!(
            err(b"999999999999999999999999999:"),
            BencodeError::InvalidLength { offset: 0 }
        );
        assert_eq!(
            err(b"5:abc"),
            BencodeError::StringPastEnd { offset: 0, len: 5 }
        );
        assert_eq!(err(b"3x"), BencodeError::InvalidLength { offset: 0 });
        assert_eq!(err(b"12"), BencodeError::UnexpectedEnd { offset: 2 });
    }

    #[test]
    fn rejects_structural_errors() {
        assert_eq!(err(b""), BencodeError::UnexpectedEnd { offset: 0 });
        assert_eq!(
            err(b"x"),
            BencodeError::UnexpectedByte {
                byte: b'x',
                offset: 0
            }
        );
        assert_eq!(err(b"i1ei2e"), BencodeError::TrailingData { offset: 3 });
        assert_eq!(err(b"de "), BencodeError::TrailingData { offset: 2 });
        assert_eq!(err(b"di1e1:ae"), BencodeError::NonStringKey { offset: 1 });
        assert_eq!(err(b"dle1:ae"), BencodeError::NonStringKey { offset: 1 });
        assert_eq!(
            err(b"d1:ai1e1:ai2ee"),
            BencodeError::DuplicateKey { offset: 7 }
        );
        assert_eq!(
            err(b"d1:ae"),
            BencodeError::UnexpectedByte {
                byte: b'e',
                offset: 4
            }
        );
        assert_eq!(err(b"l"), BencodeError::UnexpectedEnd { offset: 1 });
        assert!(err(b"l").is_incomplete());
        assert!(!err(b"e").is_incomplete());
    }

    #[test]
    fn accepts_unsorted_keys() {
        assert_eq!(
            decode(b"d1:bi2e1:ai1ee"),
            Ok(Value::dict([("a", Value::Int(1)), ("b", Value::Int(2))]))
        );
    }

    #[test]
    fn nesting_limit() {
        let ok = [b"l".repeat(MAX_DEPTH), b"e".repeat(MAX_DEPTH)].concat();
        assert!(decode(&ok).is_ok());
        let deep = [b"l".repeat(MAX_DEPTH + 1), b"e".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(
            decode(&deep),
            Err(BencodeError::TooDeep { offset: MAX_DEPTH })
        );
        let bomb = b"l".repeat(1_000_000);
        assert_eq!(
            decode(&bomb),
            Err(BencodeError::TooDeep { offset: MAX_DEPTH })
        );
        let dict_bomb = b"d1:a".repeat(100);
        assert!(matches!(
            decode(&dict_bomb),
            Err(BencodeError::TooDeep { .. })
        ));
    }

    #[test]
    fn prefix_reports_bytes_used() {
        assert_eq!(
            decode_prefix(b"d1:ai1ee rest"),
            Ok((Value::dict([("a", Value::Int(1))]), 8))
        );
        assert!(decode_prefix(b"d1:a").is_err_and(|e| e.is_incomplete()));
    }

    #[test]
    fn display_names_the_offset() {
        assert_eq!(
            BencodeError::UnexpectedEnd { offset: 17 }.to_string(),
            "bencode: unexpected end of input at byte 17"
        );
        assert_eq!(err(b"d1:ai1e").offset(), 7);
    }
}
