//! The decoded document: integers, byte strings, lists and dictionaries.

use std::collections::BTreeMap;

/// A dictionary: byte-string keys in sorted order, as bencode encodes them.
pub type Dict = BTreeMap<Vec<u8>, Value>;

/// One bencode (or JSON-mapped) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `i<n>e`; JSON integers and booleans (1/0) map here too.
    Int(i64),
    /// `<len>:<bytes>`; JSON strings map here as their UTF-8 bytes.
    Bytes(Vec<u8>),
    /// `l...e`; JSON arrays.
    List(Vec<Value>),
    /// `d...e`; JSON objects.
    Dict(Dict),
}

impl Value {
    /// A byte string holding `s`'s UTF-8 bytes.
    pub fn str(s: &str) -> Self {
        Self::Bytes(s.as_bytes().to_vec())
    }

    /// A byte string.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Self::Bytes(b.into())
    }

    /// A list of the given values.
    pub fn list(items: impl IntoIterator<Item = Value>) -> Self {
        Self::List(items.into_iter().collect())
    }

    /// A list of byte strings, e.g. `Value::str_list(["IP4", "192.0.2.1"])`.
    pub fn str_list<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        Self::List(items.into_iter().map(Self::str).collect())
    }

    /// A dictionary from `(key, value)` pairs; a repeated key keeps the last value.
    ///
    /// ```
    /// use relay_ng::bencode::Value;
    /// let v = Value::dict([("result", Value::str("ok"))]);
    /// assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
    /// ```
    pub fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        Self::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a byte string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value of an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries of a dictionary.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Self::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value under `key` if this is a dictionary holding it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key.as_bytes()))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Self::Bytes(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Self::List(l)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Self::Dict(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_match_only_their_variant() {
        let v = Value::dict([
            ("n", Value::Int(5)),
            ("s", Value::str("x")),
            ("l", Value::str_list(["a"])),
        ]);
        assert_eq!(v.get("n").and_then(Value::as_int), Some(5));
        assert_eq!(v.get("s").and_then(Value::as_str), Some("x"));
        assert_eq!(v.get("s").and_then(Value::as_int), None);
        assert_eq!(v.get("l").and_then(Value::as_list).map(<[_]>::len), Some(1));
        assert_eq!(v.get("missing"), None);
        assert_eq!(Value::Int(1).get("n"), None);
        assert_eq!(Value::bytes(vec![0xff]).as_str(), None);
        assert_eq!(Value::bytes(vec![0xff]).as_bytes(), Some(&[0xff][..]));
    }
}
