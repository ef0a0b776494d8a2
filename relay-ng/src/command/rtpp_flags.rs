//! `rtpp-flags`: Kamailio's raw flags string, parsed here instead of in
//! the proxy (rtpengine mr12.4 and later).
//!
//! The string is split at spaces. Supported subset:
//! - `key=value` is the dictionary key `key` with string value `value`
//!   (`ICE=remove`, `via-branch=z9`, `address-family=IP6`, `delete-delay=0`,
//!   `replace=origin`, ...); `key=` with an empty value is the flag `key`;
//! - `key=[a b c]` is the key with a list value; nested lists (rtpengine's
//!   `codec=[transcode=[...]]`) are skipped with a warning;
//! - `direction=NAME`, `internal` and `external` append to `direction`
//!   (two at most);
//! - `to-tag=TAG` sets the to-tag and the `to-tag` flag, as rtpengine does;
//! - transport tokens set `transport-protocol`: the full names `RTP/AVP`,
//!   `RTP/SAVP`, `RTP/AVPF`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP`,
//!   `UDP/TLS/RTP/SAVPF`, and the parts `RTP`, `AVP`, `SRTP`, `AVPF`,
//!   `DTLS`, combined (`SRTP AVPF` is `RTP/SAVPF`);
//! - any other bare token is a flag: `replace-origin`, `rtcp-mux-demux`,
//!   `strict-source`, ...
//!
//! Not supported: rtpengine's `--`/`..` escapes for `=` and space.

use super::error::NgError;
use super::fields::Fields;
use super::normalize::normalize;
use crate::bencode::Value;

/// Applies the flags string `raw` to `f`.
pub(super) fn apply(raw: &str, f: &mut Fields) -> Result<(), NgError> {
    let mut tokens = raw.split(' ').filter(|t| !t.is_empty());
    let mut transport = Transport::default();
    while let Some(token) = tokens.next() {
        let Some((key, value)) = token.split_once('=') else {
            if !transport.apply(token) {
                match token {
                    "internal" | "external" => f.push_direction(token),
                    _ => f.apply_flag(token),
                }
            }
            continue;
        };
        if value.is_empty() {
            f.apply_flag(key);
        } else if let Some(first) = value.strip_prefix('[') {
            match list(first, &mut tokens) {
                Some(items) => f.apply_key(key, &Value::list(items.into_iter().map(Value::str)))?,
                None => f.warn(format!("Ignored unsupported rtpp-flags list for '{key}'")),
            }
        } else {
            match normalize(key).as_str() {
                "direction" => f.push_direction(value),
                "to-tag" => {
                    f.to_tag = Some(value.to_owned());
                    f.flags.to_tag_flag = true;
                }
                _ => f.apply_key(key, &Value::str(value))?,
            }
        }
    }
    if let Some(name) = transport.name() {
        f.transport_protocol = Some(name.to_owned());
    }
    Ok(())
}

/// The items of a bracketed list whose first token (after `[`) is `first`;
/// consumes tokens up to the closing `]`. `None` for nested or unterminated
/// lists (the tokens of a nested list are consumed all the same).
fn list<'a>(first: &'a str, rest: &mut impl Iterator<Item = &'a str>) -> Option<Vec<&'a str>> {
    let mut items = Vec::new();
    let mut depth: usize = 1;
    let mut nested = false;
    let mut token = Some(first);
    while let Some(t) = token {
        let opens = t.matches('[').count();
        let closes = t.matches(']').count();
        nested |= opens > 0;
        depth = (depth + opens).saturating_sub(closes);
        let item = t.trim_end_matches(']');
        if !item.is_empty() {
            items.push(item);
        }
        if depth == 0 {
            return (!nested).then_some(items);
        }
        token = rest.next();
    }
    None
}

/// Transport profile assembled from tokens, like rtpengine's bit set.
#[derive(Debug, Default)]
struct Transport {
    seen: bool,
    srtp: bool,
    avpf: bool,
    dtls: bool,
}

impl Transport {
    /// Takes `token` if it names a profile or a part of one.
    fn apply(&mut self, token: &str) -> bool {
        let (srtp, avpf, dtls) = match token {
            "RTP/AVP" => (false, false, false),
            "RTP/SAVP" => (true, false, false),
            "RTP/AVPF" => (false, true, false),
            "RTP/SAVPF" => (true, true, false),
            "UDP/TLS/RTP/SAVP" => (true, false, true),
            "UDP/TLS/RTP/SAVPF" => (true, true, true),
            "RTP" => (false, self.avpf, self.dtls),
            "AVP" => (self.srtp, false, self.dtls),
            "SRTP" => (true, self.avpf, self.dtls),
            "AVPF" => (self.srtp, true, self.dtls),
            "DTLS" => (self.srtp, self.avpf, true),
            _ => return false,
        };
        *self = Self {
            seen: true,
            srtp,
            avpf,
            dtls,
        };
        true
    }

    fn name(&self) -> Option<&'static str> {
        if !self.seen {
            return None;
        }
        Some(match (self.dtls, self.srtp, self.avpf) {
            (true, _, false) => "UDP/TLS/RTP/SAVP",
            (true, _, true) => "UDP/TLS/RTP/SAVPF",
            (false, true, false) => "RTP/SAVP",
            (false, true, true) => "RTP/SAVPF",
            (false, false, false) => "RTP/AVP",
            (false, false, true) => "RTP/AVPF",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Fields {
        let mut f = Fields::default();
        apply(raw, &mut f).expect("valid");
        f
    }

    #[test]
    fn kamailio_style_string() {
        let f = parse(
            "replace-origin replace-session-connection via-branch=auto-next strict-source \
             label=callee ICE=remove RTP/AVP address-family=IP4 direction=pub direction=priv \
             rtcp-mux-demux trust-address delete-delay=5",
        );
        assert_eq!(f.replace, ["origin", "session-connection"]);
        assert_eq!(f.via_branch.as_deref(), Some("auto-next"));
        assert!(f.flags.strict_source && f.flags.trust_address);
        assert_eq!(f.label.as_deref(), Some("callee"));
        assert_eq!(f.ice.as_deref(), Some("remove"));
        assert_eq!(f.transport_protocol.as_deref(), Some("RTP/AVP"));
        assert_eq!(f.address_family.as_deref(), Some("IP4"));
        assert_eq!(f.direction, ["pub", "priv"]);
        assert_eq!(f.rtcp_mux, ["demux"]);
        assert_eq!(f.delete_delay, Some(5));
        // session-connection is taken silently, as rtpengine does.
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }

    #[test]
    fn codec_options_in_every_spelling() {
        let f = parse("codec-strip-PCMA codec-mask=opus/48000 codec-except-G729 codec-strip=all");
        assert_eq!(f.codec.strip, ["PCMA", "all"]);
        assert_eq!(f.codec.mask, ["opus/48000"]);
        assert_eq!(f.codec.except, ["G729"]);
        let mut d = Fields::default();
        let dict = crate::bencode::Value::dict([
            ("strip", crate::bencode::Value::str_list(["PCMU", "G722"])),
            ("offer", crate::bencode::Value::str_list(["opus"])),
        ]);
        d.apply_key("codec", &dict).expect("valid");
        assert_eq!(d.codec.strip, ["PCMU", "G722"]);
        assert_eq!(
            d.warnings.len(),
            1,
            "offer needs transcoding: {:?}",
            d.warnings
        );
    }

    #[test]
    fn lists_and_nested_lists() {
        let f =
            parse("replace=[origin session-name] codec=[transcode=[PCMA PCMU] strip=[EVS]] fatal");
        assert_eq!(f.replace, ["origin", "session-name"]);
        assert!(
            f.flags.fatal,
            "tokens after a skipped nested list still count"
        );
        assert_eq!(
            f.warnings,
            ["Ignored unsupported rtpp-flags list for 'codec'"]
        );
        let f = parse("flags=[ strict-source  loop-protect ] replace=[origin");
        assert!(f.flags.strict_source && f.flags.loop_protect);
        assert!(f.replace.is_empty());
        assert_eq!(
            f.warnings,
            ["Ignored unsupported rtpp-flags list for 'replace'"]
        );
        let f = parse("direction=[a b]");
        assert_eq!(f.direction, ["a", "b"]);
    }

    #[test]
    fn transport_parts_combine() {
        for (raw, want) in [
            ("SRTP AVPF", "RTP/SAVPF"),
            ("RTP/SAVPF RTP", "RTP/AVPF"),
            ("DTLS AVPF", "UDP/TLS/RTP/SAVPF"),
            ("AVPF AVP", "RTP/AVP"),
            ("UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVP"),
        ] {
            assert_eq!(
                parse(raw).transport_protocol.as_deref(),
                Some(want),
                "{raw}"
            );
        }
        assert_eq!(
            parse("transport-protocol=RTP/SAVP")
                .transport_protocol
                .as_deref(),
            Some("RTP/SAVP")
        );
    }

    #[test]
    fn to_tag_and_directions() {
        let f = parse("to-tag=abc internal external direction=third");
        assert_eq!(f.to_tag.as_deref(), Some("abc"));
        assert!(f.flags.to_tag_flag);
        assert_eq!(f.direction, ["internal", "external"]);
        assert_eq!(
            f.warnings,
            ["Ignored direction 'third' beyond the first two"]
        );
    }

    #[test]
    fn empty_value_is_a_flag_and_unknowns_warn() {
        let f = parse(
            "  loop-protect=  SDES-off SDES-no-AES_CM_128_HMAC_SHA1_32  OSRTP-accept foo=bar bogus-flag ",
        );
        assert!(f.flags.loop_protect);
        assert_eq!(f.flags.sdes, ["off", "no-AES_CM_128_HMAC_SHA1_32"]);
        assert!(f.flags.osrtp_accept && !f.flags.osrtp_offer);
        assert_eq!(f.flags.unknown, ["bogus-flag"]);
        assert_eq!(
            f.warnings,
            [
                "Ignored unsupported key 'foo'",
                "Ignored unsupported flag 'bogus-flag'"
            ]
        );
    }
}
