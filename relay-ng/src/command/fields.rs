//! Collects every key of a request dictionary (and of `rtpp-flags`) into one
//! untyped-by-command record, which [`parse`](super::parse) then checks per
//! command.
//!
//! Keys are matched after normalization (case, `-`, `_`, space). Values take
//! the forms rtpengine accepts: strings may be byte strings or integers
//! (written in decimal); where a list is expected a single string is split at
//! commas; integers may be integers or numeric strings. Unknown keys, unknown
//! flags and values of the wrong type are ignored with a warning, never fatal.

use super::error::NgError;
use super::flags::Flags;
use super::normalize::normalize;
use super::rtpp_flags;
use super::ReceivedFrom;
use crate::bencode::{Dict, Value};

/// Everything a request said, before per-command validation.
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub call_id: Option<String>,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    /// `from-tags` (subscribe request).
    pub from_tags: Vec<String>,
    pub via_branch: Option<String>,
    pub sdp: Option<Vec<u8>>,
    pub flags: Flags,
    pub replace: Vec<String>,
    pub direction: Vec<String>,
    /// `interface` (publish): the one interface for the publisher's ports.
    pub interface: Option<String>,
    pub received_from: Option<ReceivedFrom>,
    pub rtcp_mux: Vec<String>,
    pub ice: Option<String>,
    pub transport_protocol: Option<String>,
    pub dtls: Option<String>,
    pub dtls_fingerprint: Option<String>,
    pub media_address: Option<String>,
    pub address_family: Option<String>,
    pub endpoint_learning: Option<String>,
    pub supports: Vec<String>,
    pub sip_message_type: Option<String>,
    pub label: Option<String>,
    pub codec: super::CodecFlags,
    pub delete_delay: Option<u32>,
    pub limit: Option<i64>,
    pub warnings: Vec<String>,
    /// Warnings past [`MAX_WARNINGS`], counted instead of kept.
    suppressed: usize,
}

/// Most warnings kept, so a request full of junk cannot make a reply that
/// no longer fits in a datagram.
const MAX_WARNINGS: usize = 16;

/// Longest warning kept, in bytes.
const MAX_WARNING_LEN: usize = 160;

/// `replace` values rtpengine understands (normalized).
const REPLACE: &[&str] = &[
    "origin",
    "origin-full",
    "username",
    "session-name",
    "sdp-version",
    "zero-address",
    "force-increment-sdp-ver",
    // Old rtpengine's; the session-level c= is always replaced now, and
    // rtpengine takes the value silently (Kamailio examples still send it).
    "session-connection",
];

/// `rtcp-mux` values rtpengine understands.
const RTCP_MUX: &[&str] = &["offer", "require", "demux", "accept", "reject"];

impl Fields {
    /// Reads every key of `dict`, then applies `rtpp-flags` if present, so
    /// the flags string overrides single values and extends lists.
    pub fn from_dict(dict: &Dict) -> Result<Self, NgError> {
        let mut f = Self::default();
        let mut rtpp_flags = None;
        for (key, value) in dict {
            let Ok(key) = std::str::from_utf8(key) else {
                let shown = String::from_utf8_lossy(key).into_owned();
                f.warn_key(&shown);
                continue;
            };
            match normalize(key).as_str() {
                "command" => {}
                "rtpp-flags" => rtpp_flags = f.text(key, value)?,
                _ => f.apply_key(key, value)?,
            }
        }
        if let Some(raw) = rtpp_flags {
            rtpp_flags::apply(&raw, &mut f)?;
        }
        if f.suppressed > 0 {
            let more = format!("{} more warnings suppressed", f.suppressed);
            f.warnings.push(more);
        }
        Ok(f)
    }

    /// Records a warning (up to [`MAX_WARNINGS`], each shortened to
    /// [`MAX_WARNING_LEN`] bytes since they quote the request).
    pub fn warn(&mut self, mut message: String) {
        if self.warnings.len() >= MAX_WARNINGS {
            self.suppressed += 1;
            return;
        }
        if message.len() > MAX_WARNING_LEN {
            let cut = (0..=MAX_WARNING_LEN)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
            message.push_str("...");
        }
        self.warnings.push(message);
    }

    /// Applies one `key: value` pair (from the dictionary or `rtpp-flags`).
    pub fn apply_key(&mut self, key: &str, value: &Value) -> Result<(), NgError> {
        match normalize(key).as_str() {
            "call-id" => self.call_id = self.text(key, value)?,
            "from-tag" => self.from_tag = self.text(key, value)?,
            "to-tag" => self.to_tag = self.text(key, value)?,
            "from-tags" => {
                let tags = self.texts(key, value)?;
                self.from_tags.extend(tags);
            }
            "via-branch" => self.via_branch = self.text(key, value)?,
            "interface" => self.interface = self.text(key, value)?,
            "sdp" => match value {
                Value::Bytes(b) => self.sdp = Some(b.clone()),
                _ => self.warn_type(key),
            },
            "flags" => {
                for flag in self.texts(key, value)? {
                    self.apply_flag(&flag);
                }
            }
            "replace" => {
                for v in self.texts(key, value)? {
                    self.apply_replace(&v);
                }
            }
            "rtcp-mux" => {
                for v in self.texts(key, value)? {
                    self.apply_rtcp_mux(&v);
                }
            }
            "direction" => self.apply_direction(key, value)?,
            "from-interface" => self.set_direction(0, key, value)?,
            "to-interface" => self.set_direction(1, key, value)?,
            "received-from" => self.apply_received_from(key, value)?,
            "ice" => {
                // rtpengine takes a list here too (`[force, trickle]`): the
                // last mode wins; `trickle` (trickle ICE, not implemented)
                // is no mode and leaves it alone.
                let modes = self.texts(key, value)?;
                if let Some(v) = modes
                    .iter()
                    .rev()
                    .map(|v| normalize(v))
                    .find(|v| v != "trickle")
                {
                    self.ice = Some(v);
                }
            }
            // relayd's ICE is always ICE-lite (it answers checks, it makes
            // none), toward whichever party gets the relay's ICE: every
            // value of rtpengine's `ICE-lite` is what relayd does already.
            "ice-lite" => {
                self.text(key, value)?;
            }
            "transport-protocol" => self.transport_protocol = self.text(key, value)?,
            // DTLS-SRTP toward the SDP's recipient: `off`/`no`/`disable`,
            // `passive`, `active`; and the fingerprint's hash (`sha-256`).
            "dtls" => self.dtls = self.text(key, value)?.map(|v| normalize(&v)),
            "dtls-fingerprint" => {
                self.dtls_fingerprint = self.text(key, value)?.map(|v| normalize(&v));
            }
            "sdes" => {
                for item in self.texts(key, value)? {
                    self.push_sdes(item);
                }
            }
            "osrtp" => {
                for item in self.texts(key, value)? {
                    self.push_osrtp(item);
                }
            }
            "media-address" => self.media_address = self.text(key, value)?,
            "address-family" => self.address_family = self.text(key, value)?,
            "endpoint-learning" => {
                self.endpoint_learning = self.text(key, value)?.map(|v| normalize(&v));
            }
            "supports" => {
                let items = self.texts(key, value)?;
                self.supports.extend(items);
            }
            "sip-message-type" => self.sip_message_type = self.text(key, value)?,
            "label" | "from-label" => self.label = self.text(key, value)?,
            "codec" => match value {
                Value::Dict(d) => {
                    for (k, v) in d {
                        let k = String::from_utf8_lossy(k).into_owned();
                        self.apply_codec(&k, v)?;
                    }
                }
                _ => self.warn_type(key),
            },
            "codec-strip" | "codec-mask" | "codec-except" => {
                let which = normalize(key);
                self.apply_codec(which.trim_start_matches("codec-"), value)?;
            }
            "delete-delay" => {
                if let Some(d) = self.integer(key, value) {
                    // Negative means "the configured default", as in rtpengine.
                    self.delete_delay = (d >= 0).then(|| u32::try_from(d).unwrap_or(u32::MAX));
                }
            }
            "limit" => {
                if let Some(l) = self.integer(key, value) {
                    self.limit = Some(l);
                }
            }
            "all" => match self.text(key, value)?.map(|v| normalize(&v)).as_deref() {
                Some("all") => self.flags.all = true,
                Some("none") => self.flags.all = false,
                Some(other) => {
                    self.warn(format!("Ignored unsupported value '{other}' for '{key}'"))
                }
                None => {}
            },
            "record-call" => match self.text(key, value)?.map(|v| normalize(&v)).as_deref() {
                Some("yes" | "on" | "true" | "1") => self.flags.record_call = true,
                Some("no" | "off" | "false" | "0") => self.flags.record_call = false,
                Some(other) => {
                    self.warn(format!("Ignored unsupported value '{other}' for '{key}'"))
                }
                None => {}
            },
            _ => self.warn_key(key),
        }
        Ok(())
    }

    /// Applies one flag token (from `flags` or a bare `rtpp-flags` token).
    ///
    /// Besides the plain flags, `replace-X`, `rtcp-mux-X`,
    /// `endpoint-learning-X` and `from-tags-X` are shorthands for the keys of
    /// those names, as in rtpengine.
    pub fn apply_flag(&mut self, token: &str) {
        let name = normalize(token);
        if self.flags.set(&name) {
            return;
        }
        if let Some(v) = name.strip_prefix("replace-") {
            self.apply_replace(v);
        } else if let Some(v) = name.strip_prefix("rtcp-mux-") {
            self.apply_rtcp_mux(v);
        } else if let Some(which) = ["strip", "mask", "except"]
            .into_iter()
            .find(|w| name.starts_with(&format!("codec-{w}-")))
        {
            // The codec keeps its spelling (`opus/48000/2`): cut the raw token.
            let codec = token.get(format!("codec-{which}-").len()..).unwrap_or("");
            self.codec_list(which).push(codec.to_owned());
        } else if let Some(v) = name.strip_prefix("endpoint-learning-") {
            self.endpoint_learning = Some(v.to_owned());
        } else if name.starts_with("from-tags-") {
            // `from-tags-TAG`, the flag form of `from-tags`: tags keep
            // their spelling, so cut the raw token.
            let tag = token.get("from-tags-".len()..).unwrap_or("");
            if !tag.is_empty() {
                self.from_tags.push(tag.to_owned());
            }
        } else if name.starts_with("sdes-") {
            // Suite names keep their spelling: cut the raw token.
            self.push_sdes(token.get(5..).unwrap_or("").to_owned());
        } else if name.starts_with("osrtp-") {
            self.push_osrtp(token.get(6..).unwrap_or("").to_owned());
        } else {
            self.flags.unknown.push(token.to_owned());
            self.warn(format!("Ignored unsupported flag '{token}'"));
        }
    }

    /// One SDES option (an item of the `SDES` list, or what follows
    /// `SDES-` in a flag), with a warning when relayd does not act on it.
    fn push_sdes(&mut self, item: String) {
        if !sdes_option_acted_on(&item) {
            self.warn(format!("Ignored unsupported SDES option '{item}'"));
        }
        self.flags.sdes.push(item);
    }

    /// One OSRTP option: `offer` and `accept` and their `-RFC` forms; the
    /// rest (the legacy forms, which are not built, and misspellings) is
    /// warned about.
    fn push_osrtp(&mut self, item: String) {
        match normalize(&item).as_str() {
            "offer" | "offer-rfc" => self.flags.osrtp_offer = true,
            "accept" | "accept-rfc" => self.flags.osrtp_accept = true,
            _ => self.warn(format!("Ignored unsupported OSRTP option '{item}'")),
        }
    }

    /// Appends one interface name to `direction` (an `rtpp-flags`
    /// `direction=NAME`, or `internal`/`external`).
    pub fn push_direction(&mut self, name: &str) {
        if self.direction.len() < 2 {
            self.direction.push(name.to_owned());
        } else {
            self.warn(format!("Ignored direction '{name}' beyond the first two"));
        }
    }

    /// One key of the `codec` dictionary.
    fn apply_codec(&mut self, key: &str, value: &Value) -> Result<(), NgError> {
        let which = normalize(key);
        if !matches!(which.as_str(), "strip" | "mask" | "except") {
            self.warn(format!(
                "Ignored 'codec' option '{key}' (transcoding is not supported)"
            ));
            return Ok(());
        }
        let names = self.texts(key, value)?;
        self.codec_list(&which).extend(names);
        Ok(())
    }

    fn codec_list(&mut self, which: &str) -> &mut Vec<String> {
        match which {
            "strip" => &mut self.codec.strip,
            "mask" => &mut self.codec.mask,
            _ => &mut self.codec.except,
        }
    }

    fn apply_replace(&mut self, value: &str) {
        let v = normalize(value);
        if REPLACE.contains(&v.as_str()) {
            push_unique(&mut self.replace, v);
        } else {
            self.warn(format!("Ignored unsupported 'replace' value '{value}'"));
        }
    }

    fn apply_rtcp_mux(&mut self, value: &str) {
        let v = normalize(value);
        if RTCP_MUX.contains(&v.as_str()) {
            push_unique(&mut self.rtcp_mux, v);
        } else {
            self.warn(format!("Ignored unsupported 'rtcp-mux' value '{value}'"));
        }
    }

    /// `direction`: a list of interface names, of which the first two count.
    fn apply_direction(&mut self, key: &str, value: &Value) -> Result<(), NgError> {
        if !matches!(value, Value::List(_)) {
            // rtpengine ignores a non-list direction.
            self.warn_type(key);
            return Ok(());
        }
        self.direction.clear();
        for name in self.texts(key, value)? {
            self.push_direction(&name);
        }
        Ok(())
    }

    /// `from-interface` / `to-interface`: one slot of `direction`.
    fn set_direction(&mut self, slot: usize, key: &str, value: &Value) -> Result<(), NgError> {
        let Some(name) = self.text(key, value)? else {
            return Ok(());
        };
        while self.direction.len() <= slot {
            self.direction.push(String::new());
        }
        if let Some(s) = self.direction.get_mut(slot) {
            *s = name;
        }
        Ok(())
    }

    /// `received-from`: `[family, address]`, or just the address as a string
    /// (the family is then guessed from it).
    fn apply_received_from(&mut self, key: &str, value: &Value) -> Result<(), NgError> {
        match value {
            Value::List(_) => match self.texts(key, value)?.as_slice() {
                [family, address, ..] => {
                    self.received_from = Some(ReceivedFrom {
                        family: family.clone(),
                        address: address.clone(),
                    });
                }
                _ => self.warn(format!("Ignored '{key}' without family and address")),
            },
            _ => {
                if let Some(address) = self.text(key, value)? {
                    let family = if address.contains(':') { "IP6" } else { "IP4" };
                    self.received_from = Some(ReceivedFrom {
                        family: family.to_owned(),
                        address,
                    });
                }
            }
        }
        Ok(())
    }

    /// A string value: UTF-8 bytes, or an integer in decimal.
    fn text(&mut self, key: &str, value: &Value) -> Result<Option<String>, NgError> {
        match value {
            Value::Bytes(b) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|_| NgError::InvalidUtf8(key.to_owned())),
            Value::Int(i) => Ok(Some(i.to_string())),
            _ => {
                self.warn_type(key);
                Ok(None)
            }
        }
    }

    /// A list of strings: a list (non-strings skipped with a warning), or
    /// one string holding comma-separated items.
    fn texts(&mut self, key: &str, value: &Value) -> Result<Vec<String>, NgError> {
        match value {
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(s) = self.text(key, item)? {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            _ => Ok(self
                .text(key, value)?
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()),
        }
    }

    /// An integer value: an integer, or a string holding one.
    fn integer(&mut self, key: &str, value: &Value) -> Option<i64> {
        let parsed = match value {
            Value::Int(i) => Some(*i),
            Value::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            _ => None,
        };
        if parsed.is_none() {
            self.warn(format!("Ignored non-numeric value for '{key}'"));
        }
        parsed
    }

    fn warn_key(&mut self, key: &str) {
        self.warn(format!("Ignored unsupported key '{key}'"));
    }

    fn warn_type(&mut self, key: &str) {
        self.warn(format!("Ignored value of unexpected type for '{key}'"));
    }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Whether relayd acts on SDES option `item`: turning its own `a=crypto`
/// off (`off`, `no`, `disable`) or leaving a suite out (`no-SUITE`), or
/// what it does anyway (`nonew` and `prefer` describe its SDES handling,
/// the `encrypted_`/`authenticated_` parameters its transform). The rest
/// (`only-`, `order:`, `pad`, `lifetime`, `static`, the unencrypted and
/// unauthenticated parameters, misspellings) are warned about.
fn sdes_option_acted_on(item: &str) -> bool {
    let item = normalize(item);
    matches!(
        item.as_str(),
        "off"
            | "no"
            | "disable"
            | "nonew"
            | "prefer"
            | "encrypted-srtp"
            | "encrypted-srtcp"
            | "authenticated-srtp"
    ) || (item.starts_with("no-") && item.len() > 3)
}
