//! Bencode written straight into a buffer, without building a [`Value`]
//! tree first.
//!
//! For large replies built from the relay's own state (a `delete`'s call
//! summary), allocating a tree of dictionaries only to walk it once was a
//! visible share of the request. The writer leaves canonical order to its
//! caller: dictionary keys must come in sorted byte order, each once, as
//! [`encode`](fn@super::encode) would write them; debug builds check it.
//!
//! [`Value`]: super::Value

use super::encode::{bytes, decimal};

/// Appends bencode to a byte buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Per open container, to check key order in debug builds: None for a
    /// list, `Some(last key written)` for a dictionary.
    #[cfg(debug_assertions)]
    open: Vec<Option<Option<Vec<u8>>>>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer {
            out,
            #[cfg(debug_assertions)]
            open: Vec::new(),
        }
    }

    /// Writes an integer.
    #[inline]
    pub fn int(&mut self, i: i64) -> &mut Self {
        self.out.push(b'i');
        if i < 0 {
            self.out.push(b'-');
        }
        decimal(i.unsigned_abs(), self.out);
        self.out.push(b'e');
        self
    }

    /// Writes an unsigned integer, saturating at `i64::MAX` as
    /// [`Value::Int`](super::Value::Int) holds it.
    #[inline]
    pub fn uint(&mut self, u: u64) -> &mut Self {
        self.int(i64::try_from(u).unwrap_or(i64::MAX))
    }

    /// Writes a byte string.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        bytes(b, self.out);
        self
    }

    /// Writes a string.
    #[inline]
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Opens a list; close it with [`Writer::end`].
    #[inline]
    pub fn list(&mut self) -> &mut Self {
        self.out.push(b'l');
        #[cfg(debug_assertions)]
        self.open.push(None);
        self
    }

    /// Opens a dictionary; write [`Writer::key`] and value pairs, then
    /// [`Writer::end`].
    #[inline]
    pub fn dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        #[cfg(debug_assertions)]
        self.open.push(Some(None));
        self
    }

    /// Writes a dictionary key; it must sort after the previous one.
    #[inline]
    pub fn key(&mut self, key: &[u8]) -> &mut Self {
        #[cfg(debug_assertions)]
        if let Some(Some(last)) = self.open.last_mut() {
            if let Some(last) = last {
                debug_assert!(
                    last.as_slice() < key,
                    "bencode keys out of order: {:?} after {:?}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(last),
                );
            }
            *last = Some(key.to_vec());
        }
        self.bytes(key)
    }

    /// Closes the innermost list or dictionary.
    #[inline]
    pub fn end(&mut self) -> &mut Self {
        #[cfg(debug_assertions)]
        self.open.pop();
        self.out.push(b'e');
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{encode, Value};

    #[test]
    fn writes_what_the_tree_encoder_writes() {
        let tree = Value::dict([
            (
                "a",
                Value::list([Value::Int(-3), Value::Int(0), Value::str("")]),
            ),
            ("b", Value::dict([("x", Value::Int(i64::MAX))])),
            ("result", Value::str("ok")),
        ]);
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.dict();
        w.key(b"a").list().int(-3).int(0).str("").end();
        w.key(b"b").dict().key(b"x").uint(u64::MAX).end();
        w.key(b"result").str("ok");
        w.end();
        assert_eq!(out, encode(&tree));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of order")]
    fn debug_builds_refuse_unsorted_keys() {
        let mut out = Vec::new();
        Writer::new(&mut out).dict().key(b"b").int(1).key(b"a");
    }
}
