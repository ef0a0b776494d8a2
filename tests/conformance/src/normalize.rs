//! Replies rendered as text lines with only what must differ between two
//! relays replaced by placeholders: the relay's own addresses, the ports it
//! allocated, call-ids, timestamps, and values it generates at random (ICE
//! credentials and foundations, fingerprints, keys, an o= session id it
//! made up). Everything else, line order included, is kept: the SIP
//! endpoints see it.

use std::collections::BTreeMap;

use relay_ng::Value;

/// What part of a reply a line belongs to; differences are counted by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The step header and transport problems (no reply).
    Header,
    /// `result`.
    Result,
    /// `error-reason` text.
    ErrorReason,
    /// Whether there is a `warning` (its text is free-form).
    Warning,
    /// The SDP body.
    Sdp,
    /// Everything else: query/delete statistics, other keys.
    Reply,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Result => "result",
            Part::ErrorReason => "error-reason",
            Part::Warning => "warning",
            Part::Sdp => "sdp",
            Part::Reply => "reply",
        })
    }
}

/// One rendered line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Which part of the reply.
    pub part: Part,
    /// The text.
    pub text: String,
}

/// Keys whose values are points in time.
const TIME_KEYS: &[&str] = &[
    "created",
    "created_us",
    "created us",
    "last signal",
    "last signal us",
    "last packet",
    "last redis update",
    "last_signal",
];

/// Attributes whose values a relay generates: replaced unless the line
/// came in the SDP it was sent.
const GENERATED_ATTRS: &[&str] = &[
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=fingerprint:",
    "a=rtpengine:",
];

/// `a=crypto:` keeps its tag, suite and parameters (what the relays must
/// agree on); only the random key is replaced, by its base64 length so a
/// padding difference still shows: `inline:{KEY40}`.
fn crypto_key(line: &str) -> String {
    let Some(at) = line.find("inline:") else {
        return line.to_owned();
    };
    let start = at + "inline:".len();
    let end = line[start..]
        .find(['|', ' ', ';'])
        .map_or(line.len(), |e| start + e);
    format!("{}{{KEY{}}}{}", &line[..start], end - start, &line[end..])
}

/// The normaliser of one relay's replies within one case: port placeholders
/// are numbered in order of first appearance over the whole case, so a
/// re-offer that keeps its ports shows the same names. A port is named
/// with its address (the SDP's connection address, a query's local
/// address): relays number each address's ports on their own (rtpengine
/// from a random step), so the same number on two addresses means nothing.
#[derive(Debug)]
pub struct Normalizer {
    addresses: Vec<(String, String)>,
    port_range: (u16, u16),
    ports: BTreeMap<(String, u16), String>,
    next_port: usize,
    call_ids: Vec<(String, String)>,
    versions: Vec<u64>,
}

impl Normalizer {
    /// For a relay whose addresses are `addresses` (text, placeholder) and
    /// whose media ports are `port_range`.
    pub fn new(addresses: &[(&str, &str)], port_range: (u16, u16)) -> Self {
        Normalizer {
            addresses: addresses
                .iter()
                .map(|(a, p)| ((*a).to_owned(), (*p).to_owned()))
                .collect(),
            port_range,
            ports: BTreeMap::new(),
            next_port: 0,
            call_ids: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// `real` (a call-id this relay was sent) is written `placeholder`.
    pub fn call_id(&mut self, real: &str, placeholder: &str) {
        if !self.call_ids.iter().any(|(r, _)| r == real) {
            self.call_ids
                .push((real.to_owned(), placeholder.to_owned()));
        }
    }

    /// `{Pn}` for a port first seen now, `{Pn+1}` for the one above a named
    /// port (RTCP beside its RTP), the same name for a port seen before.
    #[cfg(test)]
    fn port(&mut self, port: u16) -> Option<String> {
        self.port_at("", port)
    }

    /// [`Self::port`] of a port on relay address `addr` (as the reply
    /// writes it; "" where it names none).
    fn port_at(&mut self, addr: &str, port: u16) -> Option<String> {
        if port < self.port_range.0 || port > self.port_range.1 {
            return None;
        }
        if let Some(name) = self.ports.get(&(addr.to_owned(), port)) {
            return Some(name.clone());
        }
        let name = match self.ports.get(&(addr.to_owned(), port.wrapping_sub(1))) {
            Some(below) if !below.contains('+') => format!("{}+1}}", below.trim_end_matches('}')),
            _ => {
                self.next_port += 1;
                format!("{{P{}}}", self.next_port)
            }
        };
        self.ports.insert((addr.to_owned(), port), name.clone());
        Some(name)
    }

    /// `{V}`, `{V+1}`, ... for an o= version the relay chose itself
    /// (rtpengine's `SDP-version` starts from a random number): relative
    /// to the first one chosen, so "unchanged" and "incremented" compare.
    /// A value far from every earlier one starts a new base (`{V2}`).
    fn version(&mut self, v: u64) -> String {
        let near = self.versions.iter().position(|b| b.abs_diff(v) <= 1000);
        let i = near.unwrap_or_else(|| {
            self.versions.push(v);
            self.versions.len() - 1
        });
        let base = self.versions[i];
        let name = if i == 0 {
            "V".to_owned()
        } else {
            format!("V{}", i + 1)
        };
        match v.cmp(&base) {
            std::cmp::Ordering::Equal => format!("{{{name}}}"),
            std::cmp::Ordering::Greater => format!("{{{name}+{}}}", v - base),
            std::cmp::Ordering::Less => format!("{{{name}-{}}}", base - v),
        }
    }

    /// Relay addresses and call-ids replaced in free text (whole tokens only:
    /// 192.0.2.1 is not a prefix of 192.0.2.10).
    fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (real, placeholder) in self.addresses.iter().chain(&self.call_ids) {
            out = replace_token(&out, real, placeholder);
        }
        out
    }

    /// Renders the reply to step `index` (`command`, sent with `sent_sdp`).
    pub fn reply(
        &mut self,
        index: usize,
        command: &str,
        sent_sdp: Option<&str>,
        reply: &Result<Value, String>,
    ) -> Vec<Line> {
        let mut out = vec![line(Part::Header, format!("## step {index}: {command}"))];
        let dict = match reply {
            Err(e) => {
                out.push(line(Part::Header, format!("NO REPLY: {e}")));
                return out;
            }
            Ok(Value::Dict(d)) => d,
            Ok(other) => {
                out.push(line(Part::Result, format!("not a dictionary: {other:?}")));
                return out;
            }
        };
        let get = |k: &str| dict.get(k.as_bytes());
        let result = get("result").map_or("(none)".into(), |v| self.plain(v));
        out.push(line(Part::Result, format!("result: {result}")));
        if let Some(reason) = get("error-reason") {
            let text = self.plain(reason);
            out.push(line(Part::ErrorReason, format!("error-reason: {text}")));
        }
        if get("warning").is_some() {
            out.push(line(Part::Warning, "warning: (present)".into()));
        }
        if let Some(sdp) = get("sdp") {
            let text = String::from_utf8_lossy(sdp.as_bytes().unwrap_or_default()).into_owned();
            out.push(line(Part::Sdp, "sdp:".into()));
            out.extend(
                self.sdp(&text, sent_sdp)
                    .into_iter()
                    .map(|l| line(Part::Sdp, l)),
            );
        }
        let stats = command == "query";
        let mut delete_stats = false;
        for (key, value) in dict {
            let key = String::from_utf8_lossy(key);
            if matches!(key.as_ref(), "result" | "error-reason" | "warning" | "sdp") {
                continue;
            }
            if command == "delete" {
                // A delete reply "may contain" the call's statistics (the
                // NG documentation); SIP proxies read only its result.
                delete_stats = true;
            } else if stats && key == "tags" {
                out.extend(self.tags(value).into_iter().map(|l| line(Part::Reply, l)));
            } else if stats && !STATS_KEYS.contains(&key.as_ref()) {
                // Keys outside rtpengine's documented query reply: each
                // relay's own additions, listed by name only.
                out.push(line(Part::Reply, format!("{key}: (extra key)")));
            } else {
                let v = self.value(Some(&key), value);
                out.push(line(Part::Reply, format!("{key}: {v}")));
            }
        }
        if delete_stats {
            out.push(line(Part::Reply, "statistics: (present)".into()));
        }
        out
    }

    /// A string value as its text, other values as [`Self::value`].
    fn plain(&mut self, v: &Value) -> String {
        match v.as_str() {
            Some(s) => self.text(s),
            None => self.value(None, v),
        }
    }

    /// A value on one line, normalised (JSON-like, keys sorted).
    fn value(&mut self, key: Option<&str>, v: &Value) -> String {
        if key.is_some_and(|k| TIME_KEYS.contains(&k)) {
            return "{TIME}".into();
        }
        match v {
            Value::Int(i) => match key {
                Some("local port" | "port") => u16::try_from(*i)
                    .ok()
                    .and_then(|p| self.port_at("", p))
                    .unwrap_or_else(|| i.to_string()),
                _ => i.to_string(),
            },
            Value::Bytes(b) => format!("{:?}", self.text(&String::from_utf8_lossy(b))),
            Value::List(items) => {
                let items: Vec<String> = items.iter().map(|i| self.value(None, i)).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Dict(d) => {
                let items: Vec<String> = d
                    .iter()
                    .map(|(k, v)| {
                        let k = String::from_utf8_lossy(k);
                        format!("{k}: {}", self.value(Some(&k), v))
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
        }
    }

    /// A query reply's `tags`: per party, its media and streams with
    /// the keys rtpengine documents (local port and address, endpoints,
    /// flags), in rtpengine's order of streams.
    fn tags(&mut self, tags: &Value) -> Vec<String> {
        let mut out = vec!["tags:".to_owned()];
        let Some(tags) = tags.as_dict() else {
            out.push(format!("  not a dictionary: {}", self.value(None, tags)));
            return out;
        };
        for (tag, party) in tags {
            out.push(format!("  {}:", self.text(&String::from_utf8_lossy(tag))));
            for media in party
                .get("medias")
                .and_then(Value::as_list)
                .unwrap_or_default()
            {
                let field = |k: &str| media.get(k).and_then(Value::as_str).unwrap_or("?");
                let index = media.get("index").and_then(Value::as_int).unwrap_or(-1);
                out.push(format!(
                    "    media {index} {} {} flags {}",
                    field("type"),
                    field("protocol"),
                    flags(media)
                ));
                for stream in media
                    .get("streams")
                    .and_then(Value::as_list)
                    .unwrap_or_default()
                {
                    let local = stream
                        .get("local address")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let port = stream.get("local port").map(|p| match p.as_int() {
                        Some(i) => u16::try_from(i)
                            .ok()
                            .and_then(|p| self.port_at(local, p))
                            .unwrap_or_else(|| i.to_string()),
                        None => self.value(Some("local port"), p),
                    });
                    let addr = stream.get("local address").map(|a| self.plain(a));
                    let endpoint = stream.get("endpoint").map(|e| self.endpoint(e));
                    let advertised = stream.get("advertised endpoint").map(|e| self.endpoint(e));
                    let show = |o: Option<String>| o.unwrap_or_else(|| "-".into());
                    out.push(format!(
                        "      stream local {} {} endpoint {} advertised {} flags {}",
                        show(port),
                        show(addr),
                        show(endpoint),
                        show(advertised),
                        flags(stream)
                    ));
                }
            }
        }
        out
    }

    fn endpoint(&mut self, e: &Value) -> String {
        let addr = e.get("address").and_then(Value::as_str).unwrap_or("?");
        let port = e.get("port").map_or("?".into(), |p| match p.as_int() {
            Some(i) => u16::try_from(i)
                .ok()
                .and_then(|p| self.port_at(addr, p))
                .unwrap_or_else(|| i.to_string()),
            None => self.value(Some("port"), p),
        });
        format!("{}:{port}", self.text(addr))
    }

    /// The SDP's lines, normalised; a line without its CR (in an SDP that
    /// otherwise has CRLF, or any LF-only line) is marked, since line
    /// endings reach the endpoint too.
    pub fn sdp(&mut self, sdp: &str, sent: Option<&str>) -> Vec<String> {
        let sent_lines: Vec<&str> = sent
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .collect();
        let sent_origin: Vec<&str> = sent_lines
            .iter()
            .find_map(|l| l.strip_prefix("o="))
            .map(|o| o.split(' ').collect())
            .unwrap_or_default();
        let addresses = connection_addresses(sdp);
        let mut out = Vec::new();
        let mut rest = sdp;
        let mut n = 0;
        while !rest.is_empty() {
            let (raw, tail) = match rest.find('\n') {
                Some(i) => (&rest[..=i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = tail;
            let ending = if raw.ends_with("\r\n") {
                ""
            } else if raw.ends_with('\n') {
                " [LF]"
            } else {
                " [no line end]"
            };
            let l = raw.trim_end_matches(['\r', '\n']);
            let addr = addresses.get(n).map_or("", String::as_str);
            n += 1;
            let norm = self.sdp_line(l, addr, &sent_lines, &sent_origin);
            out.push(format!("  {norm}{ending}"));
        }
        out
    }

    /// One SDP line; `addr` is the connection address of its section.
    fn sdp_line(&mut self, l: &str, addr: &str, sent: &[&str], sent_origin: &[&str]) -> String {
        let verbatim = sent.contains(&l);
        if let Some(rest) = l.strip_prefix("m=") {
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if let Some(p) = fields
                .get(1)
                .and_then(|p| p.parse().ok())
                .and_then(|p| self.port_at(addr, p))
            {
                fields[1] = p;
            }
            return self.text(&format!("m={}", fields.join(" ")));
        }
        if let Some(rest) = l.strip_prefix("a=rtcp:") {
            let (port, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            // "a=rtcp:P IN IP4 A" names its address.
            let at = tail.split(' ').nth(2).unwrap_or(addr);
            let port = port
                .parse()
                .ok()
                .and_then(|p| self.port_at(at, p))
                .unwrap_or(port.into());
            let sep = if tail.is_empty() { "" } else { " " };
            return self.text(&format!("a=rtcp:{port}{sep}{tail}"));
        }
        if let Some(rest) = l.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ T
            // [raddr A rport P]
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if !verbatim && !fields.is_empty() {
                fields[0] = "{FOUNDATION}".into();
            }
            let rport = fields.iter().position(|f| f == "rport").map(|i| i + 1);
            let raddr = fields.iter().position(|f| f == "raddr").map(|i| i + 1);
            for (i, a) in [(Some(5), Some(4)), (rport, raddr)] {
                let Some(i) = i else { continue };
                let at = a.and_then(|a| fields.get(a)).cloned().unwrap_or_default();
                if let Some(p) = fields
                    .get(i)
                    .and_then(|p| p.parse().ok())
                    .and_then(|p| self.port_at(&at, p))
                {
                    fields[i] = p;
                }
            }
            return self.text(&format!("a=candidate:{}", fields.join(" ")));
        }
        if let Some(rest) = l.strip_prefix("o=") {
            // Relays pass the offerer's session id and version through; ones
            // they made up themselves are random, hence replaced.
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if fields.len() > 2 && sent_origin.len() > 2 {
                if fields[1] != sent_origin[1] {
                    fields[1] = "{SESS-ID}".into();
                }
                if fields[2] != sent_origin[2] {
                    if let Ok(v) = fields[2].parse() {
                        fields[2] = self.version(v);
                    }
                }
            }
            return self.text(&format!("o={}", fields.join(" ")));
        }
        if !verbatim {
            if l.starts_with("a=crypto:") {
                return self.text(&crypto_key(l));
            }
            for prefix in GENERATED_ATTRS {
                if let Some(value) = l.strip_prefix(prefix) {
                    // A fingerprint's hash is chosen (DTLS-fingerprint=), not random.
                    if *prefix == "a=fingerprint:" {
                        let hash = value.split(' ').next().unwrap_or_default();
                        return format!("{prefix}{hash} {{GENERATED}}");
                    }
                    return format!("{prefix}{{GENERATED}}");
                }
            }
        }
        self.text(l)
    }
}

/// For each line of `sdp`, the connection address of its section: the
/// media's own `c=` (which follows its `m=` line), else the session's.
fn connection_addresses(sdp: &str) -> Vec<String> {
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    let address = |l: &str| {
        l.strip_prefix("c=")
            .and_then(|c| c.split(' ').nth(2))
            .map(|a| a.split('/').next().unwrap_or(a).to_owned())
    };
    let session = lines
        .iter()
        .take_while(|l| !l.starts_with("m="))
        .find_map(|l| address(l))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(lines.len());
    let mut current = session.clone();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("m=") {
            current = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with("m="))
                .find_map(|l| address(l))
                .unwrap_or_else(|| session.clone());
        }
        out.push(current.clone());
    }
    out
}

/// Keys of rtpengine's documented query reply, compared;
/// others are listed by name.
const STATS_KEYS: &[&str] = &["created", "last signal", "tags", "totals", "SSRC"];

fn line(part: Part, text: String) -> Line {
    Line { part, text }
}

/// A `flags` list, sorted and comma-joined ("-" for none).
fn flags(v: &Value) -> String {
    let mut flags: Vec<&str> = v
        .get("flags")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    flags.sort_unstable();
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

/// Replaces `needle` in `hay` where it stands as a whole token: not
/// preceded or followed by a character that could continue an address,
/// a port or an identifier.
pub fn replace_token(hay: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return hay.to_owned();
    }
    let continues = |c: Option<char>| {
        c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == ':' || c == '-' || c == '_')
    };
    let mut out = String::with_capacity(hay.len());
    let mut i = 0;
    while let Some(off) = hay[i..].find(needle) {
        let start = i + off;
        let end = start + needle.len();
        let before = hay[..start].chars().next_back();
        let after = hay[end..].chars().next();
        out.push_str(&hay[i..start]);
        if continues(before) || continues(after) {
            out.push_str(needle);
        } else {
            out.push_str(with);
        }
        i = end;
    }
    out.push_str(&hay[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm() -> Normalizer {
        Normalizer::new(
            &[("192.0.2.1", "{PUB4}"), ("2001:db8::1", "{PUB6}")],
            (30000, 30999),
        )
    }

    #[test]
    fn addresses_are_replaced_as_whole_tokens_only() {
        let n = norm();
        assert_eq!(n.text("c=IN IP4 192.0.2.1"), "c=IN IP4 {PUB4}");
        assert_eq!(n.text("c=IN IP4 192.0.2.10"), "c=IN IP4 192.0.2.10");
        assert_eq!(n.text("c=IN IP6 2001:db8::1"), "c=IN IP6 {PUB6}");
        assert_eq!(n.text("c=IN IP6 2001:db8::10"), "c=IN IP6 2001:db8::10");
    }

    #[test]
    fn relay_ports_get_names_in_order_and_rtcp_is_rtp_plus_one() {
        let mut n = norm();
        let sent = "v=0\r\no=- 5 1 IN IP4 203.0.113.10\r\nm=audio 5004 RTP/AVP 0\r\n";
        let out = n.sdp(
            "v=0\r\no=- 5 1 IN IP4 192.0.2.1\r\nm=audio 30010 RTP/AVP 0\r\na=rtcp:30011\r\nm=video 0 RTP/AVP 96\n",
            Some(sent),
        );
        assert_eq!(
            out,
            [
                "  v=0",
                "  o=- 5 1 IN IP4 {PUB4}",
                "  m=audio {P1} RTP/AVP 0",
                "  a=rtcp:{P1+1}",
                "  m=video 0 RTP/AVP 96 [LF]"
            ]
        );
        // The same port later in the case keeps its name.
        assert_eq!(n.port(30010).as_deref(), Some("{P1}"));
        assert_eq!(n.port(30020).as_deref(), Some("{P2}"));
        assert_eq!(n.port(5004), None);
    }

    #[test]
    fn ports_are_named_per_address() {
        let mut n = norm();
        let out = n.sdp(
            "c=IN IP4 192.0.2.1\r\nm=audio 30000 RTP/AVP 0\r\nm=audio 30000 RTP/AVP 0\r\n\
             c=IN IP6 2001:db8::1\r\na=rtcp:30001\r\n",
            None,
        );
        assert_eq!(
            out,
            [
                "  c=IN IP4 {PUB4}",
                "  m=audio {P1} RTP/AVP 0",
                "  m=audio {P2} RTP/AVP 0",
                "  c=IN IP6 {PUB6}",
                "  a=rtcp:{P2+1}"
            ]
        );
        assert_eq!(n.port_at("2001:db8::1", 30000).as_deref(), Some("{P2}"));
        assert_eq!(n.port_at("192.0.2.1", 30002).as_deref(), Some("{P3}"));
    }

    #[test]
    fn generated_values_are_replaced_unless_they_were_sent() {
        let mut n = norm();
        let sent = "a=ice-ufrag:abcd\r\n";
        let out = n.sdp(
            "o=- 99 2 IN IP4 192.0.2.1\r\na=ice-ufrag:abcd\r\na=ice-pwd:xyz\r\n\
             a=candidate:7 1 UDP 2130706431 192.0.2.1 30000 typ host\r\n",
            Some(&format!("o=- 5 1 IN IP4 192.0.2.7\r\n{sent}")),
        );
        assert_eq!(
            out,
            [
                "  o=- {SESS-ID} {V} IN IP4 {PUB4}",
                "  a=ice-ufrag:abcd",
                "  a=ice-pwd:{GENERATED}",
                "  a=candidate:{FOUNDATION} 1 UDP 2130706431 {PUB4} {P1} typ host"
            ]
        );
    }

    #[test]
    fn crypto_keys_are_replaced_by_their_length_only() {
        let mut n = norm();
        let out = n.sdp(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
             a=crypto:2 AEAD_AES_128_GCM inline:abcdefghijklmnopqrstuvwxyzABCDEFGHIJ==|2^31 WSH=64\r\n",
            Some("v=0\r\n"),
        );
        assert_eq!(
            out,
            [
                "  a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY40}",
                "  a=crypto:2 AEAD_AES_128_GCM inline:{KEY38}|2^31 WSH=64"
            ]
        );
        let sent = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
        assert_eq!(n.sdp(sent, Some(sent)), [format!("  {}", sent.trim_end())]);
    }

    #[test]
    fn versions_the_relay_chose_are_relative_to_its_first() {
        let mut n = norm();
        let sent = "o=- 5 1 IN IP4 203.0.113.10\r\n";
        let mut origin = |v: &str| n.sdp(&format!("o=- 5 {v} IN IP4 203.0.113.10\r\n"), Some(sent));
        assert_eq!(origin("1"), ["  o=- 5 1 IN IP4 203.0.113.10"]);
        assert_eq!(
            origin("6611628967958599880"),
            ["  o=- 5 {V} IN IP4 203.0.113.10"]
        );
        assert_eq!(
            origin("6611628967958599881"),
            ["  o=- 5 {V+1} IN IP4 203.0.113.10"]
        );
        assert_eq!(origin("42"), ["  o=- 5 {V2} IN IP4 203.0.113.10"]);
    }

    #[test]
    fn replies_render_result_reason_warning_and_timestamps() {
        let mut n = norm();
        n.call_id("real-call", "{CALL-ID}");
        let reply = Value::dict([
            ("result", Value::str("error")),
            ("error-reason", Value::str("Unknown call-id")),
            ("warning", Value::str("whatever")),
            ("created", Value::Int(1_700_000_000)),
            ("calls", Value::str_list(["real-call"])),
        ]);
        let text: Vec<String> = n
            .reply(1, "list", None, &Ok(reply))
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            text,
            [
                "## step 1: list",
                "result: error",
                "error-reason: Unknown call-id",
                "warning: (present)",
                "calls: [\"{CALL-ID}\"]",
                "created: {TIME}"
            ]
        );
    }
}
