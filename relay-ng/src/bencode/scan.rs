//! Where a bencode value ends, without decoding it: stream framing (NG over
//! TCP) needs the end of each message as bytes arrive, and decoding the
//! whole buffer again after every read would cost a tree per read.
//!
//! The scan follows the value's structure only (integers, length-prefixed
//! strings, lists and dictionaries as containers, nesting bounded by
//! [`MAX_DEPTH`]); it never allocates and never recurses. It is looser than
//! [`decode_prefix`](super::decode_prefix) (dictionary keys and integer
//! form are not checked: the decoder reports those once the message is
//! complete), but wherever the decoder finds a complete value, the scan
//! finds the same end.

use super::MAX_DEPTH;

/// Why no value ends in the bytes scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// More bytes may complete the value; it will take at least `at_least`
    /// bytes in all (from a string's declared length, else one more).
    Incomplete {
        /// The least length of the whole value.
        at_least: usize,
    },
    /// No continuation makes this a value.
    Invalid {
        /// Where the scan stopped.
        offset: usize,
    },
}

/// The length of the bencode value `input` starts with.
pub fn scan_prefix(input: &[u8]) -> Result<usize, Scan> {
    let mut pos = 0usize;
    let mut depth = 0usize;
    let more = |input: &[u8]| Scan::Incomplete {
        at_least: input.len() + 1,
    };
    loop {
        let Some(&b) = input.get(pos) else {
            return Err(more(input));
        };
        match b {
            b'i' => {
                let rest = &input[pos + 1..];
                match rest.iter().position(|&c| c == b'e') {
                    Some(end) => {
                        let digits = rest[..end].strip_prefix(b"-").unwrap_or(&rest[..end]);
                        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                            return Err(Scan::Invalid { offset: pos });
                        }
                        pos += end + 2;
                    }
                    None => {
                        let digits = rest.strip_prefix(b"-").unwrap_or(rest);
                        if !digits.iter().all(u8::is_ascii_digit) {
                            return Err(Scan::Invalid { offset: pos });
                        }
                        return Err(more(input));
                    }
                }
            }
            b'l' | b'd' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Scan::Invalid { offset: pos });
                }
                pos += 1;
                continue;
            }
            b'e' if depth > 0 => {
                depth -= 1;
                pos += 1;
            }
            b'0'..=b'9' => {
                let rest = &input[pos..];
                let Some(colon) = rest.iter().position(|&c| c == b':') else {
                    // A length longer than any usize is not a length.
                    if rest.len() > 20 || !rest.iter().all(u8::is_ascii_digit) {
                        return Err(Scan::Invalid { offset: pos });
                    }
                    return Err(more(input));
                };
                let len = std::str::from_utf8(&rest[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or(Scan::Invalid { offset: pos })?;
                let end = (pos + colon + 1)
                    .checked_add(len)
                    .ok_or(Scan::Invalid { offset: pos })?;
                if end > input.len() {
                    return Err(Scan::Incomplete {
                        at_least: end + depth,
                    });
                }
                pos = end;
            }
            _ => return Err(Scan::Invalid { offset: pos }),
        }
        if depth == 0 {
            return Ok(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_where_the_value_ends() {
        for (input, end) in [
            (&b"i5e"[..], 3),
            (b"i-12ezz", 5),
            (b"4:pingXX", 6),
            (b"0:", 2),
            (b"le", 2),
            (b"d7:command4:pingeb2 d", 17),
            (b"ll1:aeli1eee", 12),
        ] {
            assert_eq!(scan_prefix(input), Ok(end), "{input:?}");
        }
    }

    #[test]
    fn a_declared_string_says_how_much_is_missing() {
        assert_eq!(
            scan_prefix(b"d3:sdp100:v=0"),
            Err(Scan::Incomplete { at_least: 111 })
        );
        assert_eq!(
            scan_prefix(b"d7:comm"),
            Err(Scan::Incomplete { at_least: 11 })
        );
        assert_eq!(scan_prefix(b"d"), Err(Scan::Incomplete { at_least: 2 }));
        assert_eq!(scan_prefix(b"i12"), Err(Scan::Incomplete { at_least: 4 }));
        assert_eq!(scan_prefix(b"12"), Err(Scan::Incomplete { at_least: 3 }));
    }

    #[test]
    fn garbage_is_invalid() {
        for input in [
            &b"zzz"[..],
            b"e",
            b"{}",
            b"ixe",
            b"ie",
            b"d7:commandxe",
            b"99999999999999999999999:x",
            b"18446744073709551615:x",
        ] {
            assert!(
                matches!(scan_prefix(input), Err(Scan::Invalid { .. })),
                "{input:?}"
            );
        }
        let bomb = vec![b'l'; MAX_DEPTH + 1];
        assert!(matches!(scan_prefix(&bomb), Err(Scan::Invalid { .. })));
    }
}
