//! Typed NG commands parsed from a request dictionary.
//!
//! [`parse`] recognizes the command, reads every key it understands (see
//! `fields` for the accepted value forms and `rtpp_flags` for the flags
//! string), checks what the command requires in rtpengine's order (`sdp`,
//! `call-id`, `from-tag`, `to-tag`), and reports everything it ignored as
//! warnings so the reply can carry them. An empty `call-id`, tag or `sdp`
//! counts as missing.

mod error;
mod fields;
mod flags;
mod normalize;
mod rtpp_flags;

use std::mem;

pub use error::NgError;
pub use flags::Flags;

use crate::bencode::Value;
use fields::Fields;

/// The default `limit` of `list`, as in rtpengine.
pub const DEFAULT_LIST_LIMIT: u32 = 32;

/// A command this relay implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `ping`: answered with `pong`.
    Ping,
    /// `offer`: the caller's SDP to rewrite.
    Offer(OfferAnswer),
    /// `answer`: the callee's SDP to rewrite.
    Answer(OfferAnswer),
    /// `delete`: end a call or one branch of it.
    Delete(Delete),
    /// `query`: statistics of one call.
    Query(Query),
    /// `list`: call-ids of current calls.
    List(List),
    /// `statistics`: global counters.
    Statistics,
    /// `publish`: an SFU-style ingest; its media goes to subscribers only.
    Publish(OfferAnswer),
    /// `subscribe request`: a new party receiving copies of others' media.
    SubscribeRequest(Subscribe),
    /// `subscribe answer`: the subscriber's SDP answer.
    SubscribeAnswer(SubscribeAnswer),
    /// `unsubscribe`: ends a subscription.
    Unsubscribe(Unsubscribe),
}

impl Command {
    /// The command's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::Delete(_) => "delete",
            Self::Query(_) => "query",
            Self::List(_) => "list",
            Self::Statistics => "statistics",
            Self::Publish(_) => "publish",
            Self::SubscribeRequest(_) => "subscribe request",
            Self::SubscribeAnswer(_) => "subscribe answer",
            Self::Unsubscribe(_) => "unsubscribe",
        }
    }
}

/// A parsed command and the parts of the request that were ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The command.
    pub command: Command,
    /// One line per ignored key, flag or value (for the reply's `warning`).
    pub warnings: Vec<String>,
}

/// Where the SIP message came from (`received-from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFrom {
    /// `IP4` or `IP6` as sent (guessed from the address if only that was sent).
    pub family: String,
    /// The address as sent.
    pub address: String,
}

/// The parameters of `offer` and `answer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferAnswer {
    /// `call-id`.
    pub call_id: String,
    /// `from-tag`: the offerer's tag, in `offer` and `answer` alike (Kamailio
    /// swaps the tags of late offers so that this holds).
    pub from_tag: String,
    /// `to-tag`; required for `answer`.
    pub to_tag: Option<String>,
    /// `via-branch`: tells unanswered forks apart.
    pub via_branch: Option<String>,
    /// `sdp`, as received.
    pub sdp: Vec<u8>,
    /// Flags from `flags`, `rtpp-flags` and a few keys.
    pub flags: Flags,
    /// `replace` options, normalized (`origin`, `session-name`, ...).
    pub replace: Vec<String>,
    /// `direction`: the interface names for the two sides (at most two;
    /// `from-interface`/`to-interface` fill one slot each, an unset slot is "").
    pub direction: Vec<String>,
    /// `received-from`.
    pub received_from: Option<ReceivedFrom>,
    /// `rtcp-mux` options, normalized (`offer`, `demux`, ...).
    pub rtcp_mux: Vec<String>,
    /// `ICE`, normalized (`remove`, `force`, `force-relay`, ...).
    pub ice: Option<String>,
    /// `transport-protocol` as sent (`RTP/AVP`, ..., or `accept`).
    pub transport_protocol: Option<String>,
    /// `DTLS`, normalized (`off`, `no`, `disable`, `passive`, `active`).
    pub dtls: Option<String>,
    /// `DTLS-fingerprint`, normalized (`sha-256`, `sha-1`, ...).
    pub dtls_fingerprint: Option<String>,
    /// `media-address`.
    pub media_address: Option<String>,
    /// `address-family` (`IP4`/`IP6`).
    pub address_family: Option<String>,
    /// `endpoint-learning`, normalized (`delayed`, `immediate`, `off`, `heuristic`).
    pub endpoint_learning: Option<String>,
    /// `supports`, e.g. `load limit`.
    pub supports: Vec<String>,
    /// `sip-message-type` (`sip_request` / `sip_reply` from Kamailio).
    pub sip_message_type: Option<String>,
    /// `label` (or `from-label`).
    pub label: Option<String>,
    /// `codec` manipulations (and their `codec-strip-X` style flags).
    pub codec: CodecFlags,
}

/// The `codec` dictionary's manipulations that need no transcoding: names
/// as sent (`PCMA`, `opus/48000`, `all`), matched case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodecFlags {
    /// `strip`: codecs removed from the SDP.
    pub strip: Vec<String>,
    /// `mask`: removed from the SDP too (rtpengine would still transcode to
    /// them; without transcoding the SDP is the same as `strip`'s).
    pub mask: Vec<String>,
    /// `except`: kept despite `strip`/`mask` `all`.
    pub except: Vec<String>,
}

impl OfferAnswer {
    /// Whether the client understands a `load limit` result (otherwise the
    /// limit is reported as an error, see [`crate::reply::load_limit_or_error`]).
    pub fn supports_load_limit(&self) -> bool {
        self.supports.iter().any(|s| s == "load limit")
    }
}

/// The parameters of `delete`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// `call-id`.
    pub call_id: String,
    /// `from-tag`; without it the whole call is deleted.
    pub from_tag: Option<String>,
    /// `to-tag` (rtpengine uses it only with the `to-tag` flag).
    pub to_tag: Option<String>,
    /// `via-branch`.
    pub via_branch: Option<String>,
    /// `delete-delay` in seconds; `None` means the configured default.
    pub delete_delay: Option<u32>,
    /// Flags (`fatal`, `fast`, `to-tag`, `all`, ...).
    pub flags: Flags,
}

/// The parameters of `query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// `call-id`.
    pub call_id: String,
    /// `from-tag`.
    pub from_tag: Option<String>,
    /// `to-tag`.
    pub to_tag: Option<String>,
}

/// The parameters of `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    /// Most call-ids to return (default [`DEFAULT_LIST_LIMIT`]).
    pub limit: u32,
}

/// The parameters of `subscribe request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// `call-id`.
    pub call_id: String,
    /// The parties whose media is copied: `from-tag`, then `from-tags`
    /// (empty with `all`).
    pub from_tags: Vec<String>,
    /// `to-tag`: the subscriber's tag; the relay makes one up when absent.
    pub to_tag: Option<String>,
    /// Flags (`all` subscribes to every party).
    pub flags: Flags,
}

/// The parameters of `subscribe answer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeAnswer {
    /// `call-id`.
    pub call_id: String,
    /// `to-tag`: the subscriber, as `subscribe request` named it.
    pub to_tag: String,
    /// The subscriber's SDP answer.
    pub sdp: Vec<u8>,
    /// Flags.
    pub flags: Flags,
}

/// The parameters of `unsubscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// `call-id`.
    pub call_id: String,
    /// `to-tag`: the subscriber.
    pub to_tag: String,
}

/// What the `command` value names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    Offer,
    Answer,
    Delete,
    Query,
    List,
    Statistics,
    Publish,
    SubscribeRequest,
    SubscribeAnswer,
    Unsubscribe,
}

/// Commands rtpengine has that this relay does not implement.
const NOT_IMPLEMENTED: &[&str] = &[
    "start recording",
    "stop recording",
    "pause recording",
    "start forwarding",
    "stop forwarding",
    "block DTMF",
    "unblock DTMF",
    "block media",
    "unblock media",
    "play media",
    "stop media",
    "play DTMF",
    "silence media",
    "unsilence media",
    "inject start",
    "inject stop",
    "connect",
    "cli",
    "CLI",
    "transform",
    "create",
    "create answer",
    "mesh",
];

impl Kind {
    /// Matches the wire name exactly, as rtpengine does.
    fn from_wire(name: &[u8]) -> Result<Self, NgError> {
        Ok(match name {
            b"ping" => Self::Ping,
            b"offer" => Self::Offer,
            b"answer" => Self::Answer,
            b"delete" => Self::Delete,
            b"query" => Self::Query,
            b"list" => Self::List,
            b"statistics" => Self::Statistics,
            b"publish" => Self::Publish,
            b"subscribe request" => Self::SubscribeRequest,
            b"subscribe answer" => Self::SubscribeAnswer,
            b"unsubscribe" => Self::Unsubscribe,
            _ => {
                let name = String::from_utf8_lossy(name).into_owned();
                return Err(if NOT_IMPLEMENTED.contains(&name.as_str()) {
                    NgError::NotImplemented(name)
                } else {
                    NgError::UnknownCommand(name)
                });
            }
        })
    }
}

/// Parses a request body (a dictionary) into a typed command.
pub fn parse(body: &Value) -> Result<Parsed, NgError> {
    let dict = body.as_dict().ok_or(NgError::NotADictionary)?;
    let name = dict
        .get(b"command".as_slice())
        .and_then(Value::as_bytes)
        .ok_or(NgError::NoCommand)?;
    let kind = Kind::from_wire(name)?;
    let mut f = Fields::from_dict(dict)?;
    let mut warnings = mem::take(&mut f.warnings);
    // `interface` names a publisher's interface; the other commands take
    // `direction` (or `from-interface`/`to-interface`).
    match f.interface.take() {
        Some(name) if kind == Kind::Publish => f.direction.insert(0, name),
        Some(_) => warnings.push("Ignored 'interface' (used by publish only)".to_owned()),
        None => {}
    }
    let command = match kind {
        Kind::Ping => Command::Ping,
        Kind::Statistics => Command::Statistics,
        Kind::Offer => Command::Offer(offer_answer(f, false)?),
        Kind::Answer => Command::Answer(offer_answer(f, true)?),
        Kind::Delete => Command::Delete(Delete {
            call_id: present(f.call_id).ok_or(NgError::NoCallId)?,
            from_tag: present(f.from_tag),
            to_tag: present(f.to_tag),
            via_branch: present(f.via_branch),
            delete_delay: f.delete_delay,
            flags: f.flags,
        }),
        Kind::Query => Command::Query(Query {
            call_id: present(f.call_id).ok_or(NgError::NoCallId)?,
            from_tag: present(f.from_tag),
            to_tag: present(f.to_tag),
        }),
        Kind::Publish => Command::Publish(offer_answer(f, false)?),
        Kind::SubscribeRequest => {
            let call_id = present(f.call_id).ok_or(NgError::NoCallId)?;
            let mut from_tags: Vec<String> = present(f.from_tag).into_iter().collect();
            for tag in f.from_tags {
                if !tag.is_empty() && !from_tags.contains(&tag) {
                    from_tags.push(tag);
                }
            }
            Command::SubscribeRequest(Subscribe {
                call_id,
                from_tags,
                to_tag: present(f.to_tag),
                flags: f.flags,
            })
        }
        Kind::SubscribeAnswer => {
            let sdp = f.sdp.filter(|s| !s.is_empty()).ok_or(NgError::NoSdp)?;
            Command::SubscribeAnswer(SubscribeAnswer {
                call_id: present(f.call_id).ok_or(NgError::NoCallId)?,
                to_tag: present(f.to_tag).ok_or(NgError::NoToTag)?,
                sdp,
                flags: f.flags,
            })
        }
        Kind::Unsubscribe => Command::Unsubscribe(Unsubscribe {
            call_id: present(f.call_id).ok_or(NgError::NoCallId)?,
            to_tag: present(f.to_tag).ok_or(NgError::NoToTag)?,
        }),
        Kind::List => Command::List(List {
            limit: match f.limit {
                None => DEFAULT_LIST_LIMIT,
                Some(l) if l < 0 => return Err(NgError::InvalidLimit),
                Some(l) => u32::try_from(l).unwrap_or(u32::MAX),
            },
        }),
    };
    Ok(Parsed { command, warnings })
}

/// Checks and moves the fields of `offer` (`answer` also needs `to-tag`).
fn offer_answer(f: Fields, answer: bool) -> Result<OfferAnswer, NgError> {
    let sdp = f.sdp.filter(|s| !s.is_empty()).ok_or(NgError::NoSdp)?;
    let call_id = present(f.call_id).ok_or(NgError::NoCallId)?;
    let from_tag = present(f.from_tag).ok_or(NgError::NoFromTag)?;
    let to_tag = present(f.to_tag);
    if answer && to_tag.is_none() {
        return Err(NgError::NoToTag);
    }
    Ok(OfferAnswer {
        call_id,
        from_tag,
        to_tag,
        via_branch: present(f.via_branch),
        sdp,
        flags: f.flags,
        replace: f.replace,
        direction: f.direction,
        received_from: f.received_from,
        rtcp_mux: f.rtcp_mux,
        ice: f.ice,
        transport_protocol: f.transport_protocol,
        dtls: f.dtls,
        dtls_fingerprint: f.dtls_fingerprint,
        media_address: f.media_address,
        address_family: f.address_family,
        endpoint_learning: f.endpoint_learning,
        supports: f.supports,
        sip_message_type: f.sip_message_type,
        label: f.label,
        codec: f.codec,
    })
}

/// An identifier that is there and not empty.
fn present(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}
