//! Classifying `a=` lines and parsing the few attributes the relay reads.
//!
//! Attribute names are compared case-sensitively, as RFC 8866 defines them and as
//! rtpengine does. Attributes that do not parse are not errors: they are kept verbatim
//! and simply contribute nothing to [`MediaInfo`](crate::MediaInfo).

use crate::fields::{parse_network_address, parse_u16, parse_u32, tokens};
use crate::lines::trim_end;
use crate::model::{ConnectionAddr, Direction, RtcpAttr, RtpMap};

/// The attributes that exist only for ICE (RFC 8839) and go away with `ICE=remove`.
///
/// `ice-pacing` is included although the brief list did not name it: it is an ICE
/// parameter and meaningless once the candidates are gone.
const ICE_ATTRS: &[&[u8]] = &[
    b"ice-ufrag",
    b"ice-pwd",
    b"ice-options",
    b"ice-lite",
    b"ice-mismatch",
    b"ice-pacing",
    b"candidate",
    b"remote-candidates",
    b"end-of-candidates",
];

/// What kind of attribute a line is, as far as parsing and rewriting care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrKind {
    /// `a=rtcp:` (RFC 3605).
    Rtcp,
    /// `a=rtcp-mux` (RFC 5761).
    RtcpMux,
    /// An ICE attribute; `signals_ice` for `ice-ufrag` and `candidate`, which mean ICE is
    /// actually in use.
    Ice { signals_ice: bool },
    /// A direction attribute.
    Direction(Direction),
    /// `a=rtpmap:`.
    RtpMap,
    /// `a=fmtp:PT ...`.
    Fmtp,
    /// `a=rtcp-fb:PT ...` (`wildcard` for `a=rtcp-fb:* ...`).
    RtcpFb { wildcard: bool },
    /// `a=mid:`.
    Mid,
    /// `a=ptime:`.
    Ptime,
    /// `a=group:` (BUNDLE and the like).
    Group,
    /// DTLS-SRTP's `a=setup`, `a=fingerprint`, `a=tls-id` (RFC 8842): the
    /// peer's never pass a relay that terminates or strips DTLS.
    Dtls,
    /// Anything else: kept verbatim.
    Other,
}

/// Splits an attribute line's content (`a=name[:value]`) into name and value.
pub(crate) fn split(content: &[u8]) -> (&[u8], Option<&[u8]>) {
    let body = content.get(2..).unwrap_or_default();
    match body.iter().position(|&b| b == b':') {
        Some(colon) => (body.get(..colon).unwrap_or_default(), body.get(colon + 1..)),
        // Property attributes: tolerate trailing whitespace (`a=sendrecv `).
        None => (trim_end(body), None),
    }
}

/// Classifies an attribute line's content.
pub(crate) fn classify(content: &[u8]) -> AttrKind {
    let (name, _) = split(content);
    match name {
        b"rtcp" => AttrKind::Rtcp,
        b"rtcp-mux" => AttrKind::RtcpMux,
        b"rtpmap" => AttrKind::RtpMap,
        b"fmtp" => AttrKind::Fmtp,
        b"rtcp-fb" => AttrKind::RtcpFb {
            wildcard: value_starts_with_star(content),
        },
        b"mid" => AttrKind::Mid,
        b"ptime" => AttrKind::Ptime,
        b"group" => AttrKind::Group,
        b"setup" | b"fingerprint" | b"tls-id" => AttrKind::Dtls,
        _ if ICE_ATTRS.contains(&name) => AttrKind::Ice {
            signals_ice: name == b"ice-ufrag" || name == b"candidate",
        },
        _ => Direction::from_attr(name).map_or(AttrKind::Other, AttrKind::Direction),
    }
}

/// The value of `a=setup:` or `a=fingerprint:` (printable, at most 256
/// bytes so a hostile one cannot grow the call state), None for other lines.
pub(crate) fn parse_dtls(content: &[u8], name: &[u8]) -> Option<String> {
    let (n, value) = split(content);
    if n != name {
        return None;
    }
    let value = trim_end(value?);
    let ok =
        !value.is_empty() && value.len() <= 256 && value.iter().all(|b| *b >= b' ' && *b < 0x7f);
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

/// Parses the value of `a=rtcp:PORT [IN IP4|IP6 ADDRESS]`.
fn value_starts_with_star(content: &[u8]) -> bool {
    split(content).1.is_some_and(|v| v.first() == Some(&b'*'))
}

/// The payload type an `a=rtpmap:`, `a=fmtp:` or `a=rtcp-fb:` line is
/// about (the digits after the colon, up to the first space).
pub(crate) fn payload_type_of(content: &[u8]) -> Option<u8> {
    let value = split(content).1?;
    let end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    parse_u16(value.get(..end)?).and_then(|pt| u8::try_from(pt).ok())
}

/// The value of `a=ptime:MS` in whole milliseconds (RFC 4566 allows a
/// fraction: `20.0` is 20); None when it is not a number.
pub(crate) fn parse_ptime(content: &[u8]) -> Option<u32> {
    let value = trim_end(split(content).1?);
    let whole = value.split(|&b| b == b'.').next()?;
    if whole.is_empty() || whole.len() > 6 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(whole).ok()?.parse().ok()
}

/// The value of `a=mid:ID` (RFC 5888: a token, at most 32 bytes kept here
/// so a hostile one cannot grow the call state).
pub(crate) fn parse_mid(content: &[u8]) -> Option<String> {
    let value = trim_end(split(content).1?);
    let ok = !value.is_empty() && value.len() <= 32 && value.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

/// The value of `a=ice-ufrag:UFRAG` (RFC 8839: 4 to 256 `ice-char`s; kept
/// when printable and at most 256 bytes), None for other ICE attributes.
pub(crate) fn parse_ice_ufrag(content: &[u8]) -> Option<String> {
    let value = content.strip_prefix(b"a=ice-ufrag:")?;
    let value = trim_end(value);
    let ok = !value.is_empty() && value.len() <= 256 && value.iter().all(u8::is_ascii_graphic);
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

pub(crate) fn parse_rtcp(content: &[u8]) -> Option<RtcpAttr> {
    let (_, value) = split(content);
    // Tokenise the value as if it were a line of its own.
    let mut line = b"x=".to_vec();
    line.extend_from_slice(value?);
    let toks = tokens(&line);
    match toks.as_slice() {
        [port] => Some(RtcpAttr {
            port: parse_u16(port.bytes)?,
            address: None,
        }),
        [port, net, atype, address] => Some(RtcpAttr {
            port: parse_u16(port.bytes)?,
            address: Some(ConnectionAddr {
                addr: parse_network_address(net.bytes, atype.bytes, address.bytes).ok()?,
            }),
        }),
        _ => None,
    }
}

/// Parses the value of `a=rtpmap:PT ENCODING/CLOCK[/CHANNELS]`.
pub(crate) fn parse_rtpmap(content: &[u8]) -> Option<RtpMap> {
    let (_, value) = split(content);
    let value = trim_end(value?);
    let space = value.iter().position(|&b| b == b' ')?;
    let payload_type = parse_u16(value.get(..space)?)
        .and_then(|pt| u8::try_from(pt).ok())
        .filter(|&pt| pt <= 127)?;
    let spec = std::str::from_utf8(value.get(space + 1..)?).ok()?.trim();
    let mut parts = spec.split('/');
    let encoding = parts.next().filter(|e| !e.is_empty())?;
    let clock_rate = parse_u32(parts.next()?.as_bytes())?;
    let channels = match parts.next() {
        None => None,
        Some(ch) => Some(parse_u16(ch.as_bytes()).and_then(|c| u8::try_from(c).ok())?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(b"a=rtcp:5001"), AttrKind::Rtcp);
        assert_eq!(classify(b"a=rtcp-mux"), AttrKind::RtcpMux);
        assert_eq!(classify(b"a=rtcp-mux "), AttrKind::RtcpMux);
        assert_eq!(
            classify(b"a=rtcp-fb:96 nack"),
            AttrKind::RtcpFb { wildcard: false }
        );
        assert_eq!(
            classify(b"a=rtcp-fb:* nack"),
            AttrKind::RtcpFb { wildcard: true }
        );
        assert_eq!(classify(b"a=fmtp:96 x=1"), AttrKind::Fmtp);
        assert_eq!(payload_type_of(b"a=fmtp:96 x=1"), Some(96));
        assert_eq!(payload_type_of(b"a=rtcp-fb:* nack"), None);
        assert_eq!(
            classify(b"a=candidate:1 1 UDP 1 198.51.100.1 5000 typ host"),
            AttrKind::Ice { signals_ice: true }
        );
        assert_eq!(
            classify(b"a=ice-options:trickle"),
            AttrKind::Ice { signals_ice: false }
        );
        assert_eq!(
            classify(b"a=sendonly"),
            AttrKind::Direction(Direction::SendOnly)
        );
        assert_eq!(classify(b"a=SENDONLY"), AttrKind::Other);
        assert_eq!(classify(b"a="), AttrKind::Other);
        assert_eq!(classify(b"a"), AttrKind::Other);
    }

    #[test]
    fn ptime_values() {
        assert_eq!(parse_ptime(b"a=ptime:20"), Some(20));
        assert_eq!(parse_ptime(b"a=ptime:30 "), Some(30));
        assert_eq!(parse_ptime(b"a=ptime:20.0"), Some(20));
        assert_eq!(parse_ptime(b"a=ptime:"), None);
        assert_eq!(parse_ptime(b"a=ptime:x"), None);
        assert_eq!(parse_ptime(b"a=ptime:-20"), None);
        assert_eq!(parse_ptime(b"a=ptime:99999999999"), None);
        assert_eq!(parse_ptime(b"a=ptime"), None);
    }

    #[test]
    fn mid_values() {
        assert_eq!(parse_mid(b"a=mid:0").as_deref(), Some("0"));
        assert_eq!(parse_mid(b"a=mid:audio "), Some("audio".into()));
        assert_eq!(parse_mid(b"a=mid:"), None);
        assert_eq!(parse_mid(b"a=mid:a b"), None);
        assert_eq!(
            parse_mid(&[b"a=mid:".as_slice(), &[b'x'; 33]].concat()),
            None
        );
    }

    #[test]
    fn rtcp_forms() {
        assert_eq!(
            parse_rtcp(b"a=rtcp:5001"),
            Some(RtcpAttr {
                port: 5001,
                address: None
            })
        );
        let with_addr = parse_rtcp(b"a=rtcp:9 IN IP4 0.0.0.0").expect("valid");
        assert_eq!(with_addr.port, 9);
        assert!(with_addr.address.is_some_and(|a| a.is_unspecified()));
        assert_eq!(parse_rtcp(b"a=rtcp:"), None);
        assert_eq!(parse_rtcp(b"a=rtcp:x"), None);
        assert_eq!(parse_rtcp(b"a=rtcp:9 IN IP4"), None);
    }

    #[test]
    fn rtpmap_forms() {
        let opus = parse_rtpmap(b"a=rtpmap:111 opus/48000/2").expect("valid");
        assert_eq!(
            (opus.payload_type, opus.clock_rate, opus.channels),
            (111, 48000, Some(2))
        );
        let te = parse_rtpmap(b"a=rtpmap:101 telephone-event/8000 ").expect("valid");
        assert_eq!(
            (te.encoding.as_str(), te.channels),
            ("telephone-event", None)
        );
        for bad in [
            &b"a=rtpmap:128 x/8000"[..],
            b"a=rtpmap:0 PCMU",
            b"a=rtpmap:0 /8000",
            b"a=rtpmap:0 PCMU/x",
            b"a=rtpmap:0 PCMU/8000/300",
            b"a=rtpmap:0 PCMU/8000/1/1",
            b"a=rtpmap:0",
        ] {
            assert_eq!(parse_rtpmap(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
