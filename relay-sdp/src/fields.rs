//! Parsers for the values of the `o=`, `c=` and `m=` lines.
//!
//! Each parser takes a whole line's content (`x=` included, line ending excluded) and
//! returns the parsed fields plus the byte span the rewriter replaces, so that a rewrite
//! touches exactly the address or port and leaves spacing, case and trailing junk alone.
//! Errors are short static explanations; the caller adds line number and quote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::lines::trim_end;
use crate::model::{ConnectionAddr, Origin};

/// A whitespace-separated token of a line: its bytes and its span in the line.
#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    pub bytes: &'a [u8],
    pub span: Range<usize>,
}

impl Token<'_> {
    /// Lossily decoded text of the token.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes).into_owned()
    }
}

/// Splits the value of a line (everything after `x=`) into tokens separated by runs of
/// spaces or tabs. Spans are offsets into the whole line.
pub(crate) fn tokens(content: &[u8]) -> Vec<Token<'_>> {
    let value = trim_end(content.get(2..).unwrap_or_default());
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, &b) in value.iter().enumerate() {
        let sep = b == b' ' || b == b'\t';
        match (sep, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(token(content, s + 2..i + 2));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(token(content, s + 2..value.len() + 2));
    }
    out
}

fn token(content: &[u8], span: Range<usize>) -> Token<'_> {
    Token {
        bytes: content.get(span.clone()).unwrap_or_default(),
        span,
    }
}

/// A parsed `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionLine {
    pub addr: ConnectionAddr,
    /// From the start of the address type to the end of the address (TTL included): the
    /// part a rewrite replaces with `IP4 x.x.x.x` / `IP6 x::x`.
    pub addr_span: Range<usize>,
}

/// Parses `c=IN IP4|IP6 ADDRESS[/ttl[/count]]`.
pub(crate) fn parse_connection(content: &[u8]) -> Result<ConnectionLine, &'static str> {
    let toks = tokens(content);
    let [net, atype, address] = toks.as_slice() else {
        return Err("expected: IN IP4|IP6 address");
    };
    let addr = parse_network_address(net.bytes, atype.bytes, address.bytes)?;
    Ok(ConnectionLine {
        addr: ConnectionAddr { addr },
        addr_span: atype.span.start..address.span.end,
    })
}

/// Parses the `nettype addrtype address` triple shared by `c=` and `a=rtcp:`.
///
/// Host names are refused: the relay has to know where to send media, and resolving names
/// from SDP is neither what rtpengine does nor something a media path should wait on.
pub(crate) fn parse_network_address(
    net: &[u8],
    atype: &[u8],
    address: &[u8],
) -> Result<IpAddr, &'static str> {
    if !net.eq_ignore_ascii_case(b"IN") {
        return Err("network type is not IN");
    }
    // Multicast TTL / count suffixes are irrelevant for a unicast relay.
    let host = address.split(|&b| b == b'/').next().unwrap_or_default();
    let host = std::str::from_utf8(host).map_err(|_| "address is not ASCII")?;
    if atype.eq_ignore_ascii_case(b"IP4") {
        host.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| "not an IPv4 address (host names are not supported)")
    } else if atype.eq_ignore_ascii_case(b"IP6") {
        host.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| "not an IPv6 address (host names are not supported)")
    } else {
        Err("address type is not IP4 or IP6")
    }
}

/// A parsed `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginLine {
    pub origin: Origin,
    /// From the start of the address type to the end of the address.
    pub addr_span: Range<usize>,
}

/// Parses `o=username sess-id sess-version nettype addrtype address`.
///
/// The address is kept as text (host names occur and are harmless here).
pub(crate) fn parse_origin(content: &[u8]) -> Result<OriginLine, &'static str> {
    let toks = tokens(content);
    let [user, id, version, net, atype, address] = toks.as_slice() else {
        return Err("expected 6 fields: username sess-id sess-version nettype addrtype address");
    };
    Ok(OriginLine {
        origin: Origin {
            username: user.text(),
            session_id: id.text(),
            session_version: version.text(),
            net_type: net.text(),
            addr_type: atype.text(),
            address: address.text(),
        },
        addr_span: atype.span.start..address.span.end,
    })
}

/// A parsed `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaLine {
    pub kind: String,
    pub port: u16,
    pub port_count: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// The digits of the port, without any `/count`.
    pub port_span: Range<usize>,
}

/// Parses `m=media port[/count] proto fmt...`.
///
/// An empty format list is accepted (seen on rejected streams), although RFC 8866 asks
/// for at least one format.
pub(crate) fn parse_media(content: &[u8]) -> Result<MediaLine, &'static str> {
    let toks = tokens(content);
    let [kind, port_tok, proto, formats @ ..] = toks.as_slice() else {
        return Err("expected: media port proto format...");
    };
    let mut parts = port_tok.bytes.splitn(2, |&b| b == b'/');
    let port_digits = parts.next().unwrap_or_default();
    let port = parse_u16(port_digits).ok_or("port is not a number in 0-65535")?;
    let port_count = match parts.next() {
        None => 1,
        Some(count) => parse_u16(count)
            .filter(|&c| c > 0)
            .ok_or("port count is not a number in 1-65535")?,
    };
    Ok(MediaLine {
        kind: kind.text(),
        port,
        port_count,
        proto: proto.text(),
        formats: formats.iter().map(Token::text).collect(),
        port_span: port_tok.span.start..port_tok.span.start + port_digits.len(),
    })
}

/// Parses a decimal number made of ASCII digits only (no sign, no spaces).
pub(crate) fn parse_u16(digits: &[u8]) -> Option<u16> {
    parse_decimal(digits).and_then(|v| u16::try_from(v).ok())
}

/// Parses a decimal `u32` made of ASCII digits only.
pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_decimal(digits).and_then(|v| u32::try_from(v).ok())
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    // More than 10 digits cannot fit in a u32 and would only risk overflow.
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_spans_into_the_line() {
        let line = b"m=audio  49170/2\tRTP/AVP 0 ";
        let t = tokens(line);
        let texts: Vec<_> = t.iter().map(Token::text).collect();
        assert_eq!(texts, ["audio", "49170/2", "RTP/AVP", "0"]);
        for tok in &t {
            assert_eq!(&line[tok.span.clone()], tok.bytes);
        }
    }

    #[test]
    fn connection_forms() {
        let c = parse_connection(b"c=IN IP4 198.51.100.1").expect("valid");
        assert_eq!(c.addr.addr, "198.51.100.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(c.addr_span, 5..21);
        let c = parse_connection(b"c=in ip6 2001:db8::1 ").expect("lowercase is tolerated");
        assert!(c.addr.addr.is_ipv6());
        let c = parse_connection(b"c=IN IP4 224.2.1.1/127/3").expect("multicast ttl");
        assert_eq!(c.addr_span, 5..24);
        assert!(parse_connection(b"c=IN IP4 2001:db8::1").is_err());
        assert!(parse_connection(b"c=IN IP6 198.51.100.1").is_err());
        assert!(parse_connection(b"c=IN IP4 host.example.com").is_err());
        assert!(parse_connection(b"c=IN IP4").is_err());
        assert!(parse_connection(b"c=ATM NSAP 47.0091").is_err());
        assert!(parse_connection(b"c=IN IP4 1.2.3.4 extra").is_err());
    }

    #[test]
    fn origin_fields() {
        let o = parse_origin(b"o=- 1545997027 1 IN IP4 pbx.example.com").expect("valid");
        assert_eq!(o.origin.username, "-");
        assert_eq!(o.origin.address, "pbx.example.com");
        assert_eq!(o.origin.ip(), None);
        assert_eq!(o.origin.version_number(), Some(1));
        assert!(parse_origin(b"o=- 1 1 IN IP4").is_err());
    }

    #[test]
    fn media_forms() {
        let m = parse_media(b"m=video 49170/2 RTP/AVP 31 96").expect("valid");
        assert_eq!((m.port, m.port_count), (49170, 2));
        assert_eq!(m.formats, ["31", "96"]);
        assert_eq!(m.port_span, 8..13);
        let m = parse_media(b"m=audio 0 RTP/AVP").expect("no formats is tolerated");
        assert_eq!((m.port, m.port_count), (0, 1));
        for bad in [
            &b"m=audio x RTP/AVP 0"[..],
            b"m=audio 65536 RTP/AVP 0",
            b"m=audio -1 RTP/AVP 0",
            b"m=audio 1/0 RTP/AVP 0",
            b"m=audio 1/ RTP/AVP 0",
            b"m=audio 99999999999999999999 RTP/AVP 0",
            b"m=audio 5000",
        ] {
            assert!(
                parse_media(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
