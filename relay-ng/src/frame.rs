//! NG datagram framing: `cookie SP payload`.
//!
//! The cookie is everything before the first space; the payload is a bencode
//! dictionary (first byte `d`) or a JSON object (first byte `{`), as rtpengine
//! decides. A datagram without a cookie cannot be answered (the reply must
//! echo it), so rtpengine drops it; every other failure is answerable, and
//! [`FrameError::cookie`] and [`FrameError::error_reason`] give what the
//! error reply needs.

use crate::bencode::{self, BencodeError, Value};
use crate::json::{self, JsonError};

/// A request datagram split into cookie and decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The cookie, without the separating space; echoed in the reply.
    pub cookie: &'a [u8],
    /// The decoded body, always a [`Value::Dict`].
    pub body: Value,
    /// How the body was written; the reply is written the same way.
    pub format: Format,
}

/// The two encodings of an NG body. rtpengine answers each request in the
/// encoding it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A bencode dictionary (what Kamailio and OpenSIPS send).
    Bencode,
    /// A JSON object.
    Json,
}

impl Format {
    /// The encoding a payload is in, judged by its first byte as rtpengine
    /// does (anything not `{` is answered in bencode).
    pub fn of_payload(payload: &[u8]) -> Format {
        if payload.first() == Some(&b'{') {
            Format::Json
        } else {
            Format::Bencode
        }
    }
}

/// Why a datagram is not a valid NG request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No space, or nothing before it: there is no cookie to answer with.
    #[error("invalid NG data: no cookie")]
    NoCookie,
    /// Nothing after the cookie.
    #[error("invalid NG data: no payload")]
    NoPayload {
        /// The request's cookie.
        cookie: Vec<u8>,
    },
    /// The payload starts with neither `d` nor `{`.
    #[error("invalid NG data: payload is neither a bencode dictionary nor a JSON object")]
    UnknownFormat {
        /// The request's cookie.
        cookie: Vec<u8>,
    },
    /// The payload starts with `d` but is not valid bencode (offsets count
    /// from the start of the payload).
    #[error("{source}")]
    Bencode {
        /// The request's cookie.
        cookie: Vec<u8>,
        /// What is wrong with it.
        source: BencodeError,
    },
    /// The payload starts with `{` but is not valid JSON.
    #[error("{source}")]
    Json {
        /// The request's cookie.
        cookie: Vec<u8>,
        /// What is wrong with it.
        source: JsonError,
    },
}

impl FrameError {
    /// The cookie to answer with, or `None` if the datagram must be dropped.
    pub fn cookie(&self) -> Option<&[u8]> {
        match self {
            Self::NoCookie => None,
            Self::NoPayload { cookie }
            | Self::UnknownFormat { cookie }
            | Self::Bencode { cookie, .. }
            | Self::Json { cookie, .. } => Some(cookie),
        }
    }

    /// The encoding the error reply is written in.
    pub fn format(&self) -> Format {
        match self {
            Self::Json { .. } => Format::Json,
            _ => Format::Bencode,
        }
    }

    /// The `error-reason` rtpengine sends for this failure.
    pub fn error_reason(&self) -> &'static str {
        match self {
            Self::NoCookie => "Invalid NG data (no cookie)",
            Self::NoPayload { .. } => "Invalid data (no payload)",
            Self::UnknownFormat { .. } => "Invalid NG data format",
            Self::Bencode { .. } => "Could not decode bencode dictionary",
            Self::Json { .. } => "Failed to parse JSON document",
        }
    }
}

/// Splits a datagram at its first space into `(cookie, payload)`; `None`
/// when there is no space or the cookie is empty.
///
/// Cheap, so a server can look the cookie up in its
/// [`CookieCache`](crate::CookieCache) before decoding anything.
pub fn split_cookie(d: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = d.iter().position(|&b| b == b' ')?;
    let cookie = d.get(..space)?;
    let payload = d.get(space + 1..)?;
    if cookie.is_empty() {
        return None;
    }
    Some((cookie, payload))
}

/// Splits and decodes one request datagram.
pub fn parse_datagram(d: &[u8]) -> Result<Request<'_>, FrameError> {
    let (cookie, payload) = split_cookie(d).ok_or(FrameError::NoCookie)?;
    let format = Format::of_payload(payload);
    let body = match payload.first() {
        None => {
            return Err(FrameError::NoPayload {
                cookie: cookie.to_vec(),
            })
        }
        Some(b'd') => bencode::decode(payload).map_err(|source| FrameError::Bencode {
            cookie: cookie.to_vec(),
            source,
        })?,
        Some(b'{') => json::decode(payload).map_err(|source| FrameError::Json {
            cookie: cookie.to_vec(),
            source,
        })?,
        Some(_) => {
            return Err(FrameError::UnknownFormat {
                cookie: cookie.to_vec(),
            })
        }
    };
    Ok(Request {
        cookie,
        body,
        format,
    })
}

/// Encodes a reply datagram: the cookie, one space, the bencoded body.
pub fn encode_reply(cookie: &[u8], body: &Value) -> Vec<u8> {
    encode_reply_as(cookie, body, Format::Bencode)
}

/// Encodes a reply datagram with the body in `format`: the request's, so
/// a JSON request gets a JSON reply as from rtpengine.
pub fn encode_reply_as(cookie: &[u8], body: &Value, format: Format) -> Vec<u8> {
    // Room for an offer's SDP or most of a delete's summary without
    // growing the buffer several times.
    let mut out = Vec::with_capacity(cookie.len() + 1024);
    out.extend_from_slice(cookie);
    out.push(b' ');
    match format {
        Format::Bencode => bencode::encode_into(body, &mut out),
        Format::Json => json::encode_into(body, &mut out),
    }
    out
}

/// Rewrites a bencoded reply datagram (`cookie SP body`) with its body in
/// JSON, for replies written as bencode bytes directly (the `query` and
/// `delete` summaries). `None` if `reply` is not such a datagram.
pub fn bencode_reply_to_json(reply: &[u8]) -> Option<Vec<u8>> {
    let (cookie, body) = split_cookie(reply)?;
    let body = bencode::decode(body).ok()?;
    Some(encode_reply_as(cookie, &body, Format::Json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_round_trip() {
        let req = parse_datagram(b"5323_1 d7:command4:pinge").expect("valid");
        assert_eq!(req.cookie, b"5323_1");
        assert_eq!(req.body, Value::dict([("command", Value::str("ping"))]));
        let reply = encode_reply(req.cookie, &Value::dict([("result", Value::str("pong"))]));
        assert_eq!(reply, b"5323_1 d6:result4:ponge");
    }

    #[test]
    fn json_body() {
        let req = parse_datagram(br#"c1 {"command":"ping"}"#).expect("valid");
        assert_eq!(req.cookie, b"c1");
        assert_eq!(req.format, Format::Json);
        assert_eq!(
            req.body.get("command").and_then(Value::as_str),
            Some("ping")
        );
        let pong = Value::dict([("result", Value::str("pong"))]);
        assert_eq!(
            encode_reply_as(req.cookie, &pong, req.format),
            br#"c1 {"result":"pong"}"#
        );
        let bencoded = encode_reply(b"c2", &pong);
        assert_eq!(
            bencode_reply_to_json(&bencoded).expect("a reply"),
            br#"c2 {"result":"pong"}"#
        );
        let broken = parse_datagram(b"c3 {bad").expect_err("not JSON");
        assert_eq!(broken.format(), Format::Json);
        assert_eq!(
            parse_datagram(b"c4 d7:command4:pinge").map(|r| r.format),
            Ok(Format::Bencode)
        );
    }

    #[test]
    fn missing_cookie_cannot_be_answered() {
        for d in [&b"d7:command4:pinge"[..], b" d7:command4:pinge", b"", b" "] {
            let e = parse_datagram(d).expect_err("no cookie");
            assert_eq!(e, FrameError::NoCookie);
            assert_eq!(e.cookie(), None);
        }
    }

    #[test]
    fn body_errors_keep_the_cookie() {
        let cases: [(&[u8], &str); 5] = [
            (b"abc ", "Invalid data (no payload)"),
            (b"abc l4:pinge", "Invalid NG data format"),
            (b"abc  d7:command4:pinge", "Invalid NG data format"),
            (
                b"abc d7:command4:ping",
                "Could not decode bencode dictionary",
            ),
            (b"abc {\"command\":", "Failed to parse JSON document"),
        ];
        for (d, reason) in cases {
            let e = parse_datagram(d).expect_err("bad body");
            assert_eq!(e.cookie(), Some(&b"abc"[..]), "{e}");
            assert_eq!(e.error_reason(), reason);
        }
    }

    #[test]
    fn cookie_may_hold_any_bytes_but_space() {
        let req = parse_datagram(b"\x00\xff_1 de").expect("valid");
        assert_eq!(req.cookie, b"\x00\xff_1");
        assert_eq!(split_cookie(b"a b c"), Some((&b"a"[..], &b"b c"[..])));
    }

    #[test]
    fn bencode_error_display_is_detailed() {
        let e = parse_datagram(b"k d7:command").expect_err("truncated");
        assert_eq!(e.to_string(), "bencode: unexpected end of input at byte 10");
    }
}
