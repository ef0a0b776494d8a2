//! Parsing an SDP body (RFC 8866, formerly 4566) into an index over its original bytes.
//!
//! [`parse`] keeps a copy of the input and remembers, for every line, where it is, how it
//! ends and what kind of line it is, plus the session section and each media section as
//! line ranges. Nothing is normalised, so [`rewrite`](crate::rewrite) can reproduce every
//! byte it does not mean to change.
//!
//! # What is validated
//! - The first line is `v=0`; a second `v=` (several sessions in one body) is refused.
//! - There is exactly one `o=` line, before the first `m=`, with six fields.
//! - Every line is `x=value` with `x` a lowercase ASCII letter. Type letters are not
//!   checked against RFC 8866's list, and `s=`/`t=` are not required: sloppy endpoints
//!   omit them and a relay gains nothing by refusing the call.
//! - `m=` lines parse as `media port[/count] proto [fmt...]` (an empty format list is
//!   tolerated), port 0–65535, count 1–65535.
//! - `c=` lines parse as `IN IP4|IP6 address[/ttl[/count]]`, the address matching its
//!   type. `0.0.0.0` and `::` (hold) are accepted. Host names are refused (as rtpengine
//!   does): the relay cannot send media to a name. At most one `c=` per section.
//!
//! # What is tolerated
//! - CRLF and bare-LF line endings, mixed; each line's own ending is kept.
//! - A missing line ending on the last line.
//! - Trailing spaces and tabs on any line.
//! - Blank lines at the very end (a blank line anywhere else is an error: SIP bodies end
//!   with one sometimes, but one in the middle means a truncated or spliced body).
//! - Bytes that are not UTF-8 anywhere except inside the values the relay parses (they
//!   are kept verbatim; fields shown as text are decoded lossily).
//! - Attributes that do not parse (`a=rtpmap:x`, `a=rtcp:junk`): kept, and ignored for
//!   [`MediaInfo`].
//!
//! Input larger than [`MAX_SDP_LEN`] is refused before anything else is looked at.

use std::ops::Range;

use crate::attr::{self, AttrKind};
use crate::error::{Problem, SdpError};
use crate::fields::{parse_connection, parse_media, parse_origin};
use crate::lines::{self, is_blank, trim_end, Line};
use crate::model::{ConnectionAddr, Direction, MediaInfo, Origin};

/// The largest SDP body [`parse`] accepts, in bytes.
///
/// An NG request travels in one UDP datagram (< 64 KiB) and even large WebRTC offers stay
/// far below this; the limit only bounds the work a hostile body can cause.
pub const MAX_SDP_LEN: usize = 256 * 1024;

/// What a line is, with the spans the rewriter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// `o=`; the span covers address type and address.
    Origin { addr_span: Range<usize> },
    /// `c=`; the span covers address type and address (with any TTL).
    Connection {
        addr: ConnectionAddr,
        addr_span: Range<usize>,
    },
    /// `m=`; the span covers the port digits.
    Media { port_span: Range<usize> },
    /// `a=`.
    Attr(AttrKind),
    /// `b=`, `k=`: lines a media-level `c=` has to precede (RFC 8866 §5 order).
    BandwidthOrKey,
    /// Any other line (`v=`, `s=`, `t=`, `i=`…): never changed.
    Other,
    /// A blank line at the end of the body.
    TrailingBlank,
}

/// One line with its classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedLine {
    pub line: Line,
    pub kind: LineKind,
}

/// One media section: its lines and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaSection {
    /// Line indexes, the `m=` line first.
    pub lines: Range<usize>,
    /// The section's own `c=` address, if it has a `c=` line.
    pub own_connection: Option<ConnectionAddr>,
    /// The read-side view, session defaults applied.
    pub info: MediaInfo,
}

/// A parsed SDP body: the original bytes plus an index of its lines and sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    raw: Vec<u8>,
    lines: Vec<IndexedLine>,
    /// Line indexes of the session section (from `v=` up to the first `m=`).
    session_lines: Range<usize>,
    medias: Vec<MediaSection>,
    /// Line indexes of blank lines at the end.
    trailer_lines: Range<usize>,
    origin: Origin,
    session_connection: Option<ConnectionAddr>,
    session_direction: Option<Direction>,
    media_infos: Vec<MediaInfo>,
}

impl Sdp {
    /// The original body, byte for byte.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The fields of the `o=` line.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The session-level `c=` address, if there is one.
    pub fn session_connection(&self) -> Option<ConnectionAddr> {
        self.session_connection
    }

    /// The session-level direction attribute, if there is one.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }

    /// One entry per `m=` line, in order, with session-level defaults applied.
    pub fn medias(&self) -> &[MediaInfo] {
        &self.media_infos
    }

    /// The number of `m=` lines.
    pub fn media_count(&self) -> usize {
        self.medias.len()
    }

    /// The line ending to use for lines the rewriter adds: that of the first line, so
    /// that an LF-only body stays LF-only; CRLF if the first line has none.
    /// Whether the session section (before the first `m=`) has the line
    /// `line` (content without its ending).
    pub fn session_has_line(&self, line: &[u8]) -> bool {
        self.lines
            .get(self.session_lines.clone())
            .unwrap_or_default()
            .iter()
            .any(|l| l.line.content(&self.raw) == line)
    }

    pub(crate) fn default_eol(&self) -> &[u8] {
        match self.lines.first() {
            Some(first) if !first.line.eol(&self.raw).is_empty() => first.line.eol(&self.raw),
            _ => b"\r\n",
        }
    }

    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub(crate) fn lines(&self) -> &[IndexedLine] {
        &self.lines
    }

    pub(crate) fn session_lines(&self) -> Range<usize> {
        self.session_lines.clone()
    }

    pub(crate) fn media_sections(&self) -> &[MediaSection] {
        &self.medias
    }

    pub(crate) fn trailer_lines(&self) -> Range<usize> {
        self.trailer_lines.clone()
    }
}

/// Parses an SDP body. See the module docs for what is validated and what is tolerated.
pub fn parse(input: &[u8]) -> Result<Sdp, SdpError> {
    if input.len() > MAX_SDP_LEN {
        let prefix = input.get(..MAX_SDP_LEN).unwrap_or_default();
        let line = 1 + prefix.iter().filter(|&&b| b == b'\n').count();
        return Err(SdpError::syntax(
            line,
            Problem::TooLarge,
            b"",
            "over the 256 KiB limit",
        ));
    }
    let raw_lines = lines::split(input);
    // Everything after the last non-blank line is an allowed trailer of blank lines.
    let Some(last) = raw_lines.iter().rposition(|l| !is_blank(l.content(input))) else {
        return Err(SdpError::syntax(1, Problem::Empty, b"", ""));
    };
    let content_end = last + 1;

    let mut builder = Builder::new(input);
    for (index, line) in raw_lines.iter().take(content_end).enumerate() {
        builder.line(index, *line)?;
    }
    builder.finish(raw_lines, content_end)
}

/// Session-level facts gathered while walking the lines.
#[derive(Debug, Default)]
struct SessionFacts {
    origin: Option<Origin>,
    connection: Option<ConnectionAddr>,
    direction: Option<Direction>,
    signals_ice: bool,
    ice_ufrag: Option<String>,
    setup: Option<String>,
    fingerprint: Option<String>,
}

/// Per-media facts gathered while walking the lines.
#[derive(Debug)]
struct MediaFacts {
    first_line: usize,
    info: MediaInfo,
    own_connection: Option<ConnectionAddr>,
    own_direction: Option<Direction>,
    signals_ice: bool,
}

/// Walks the lines once, classifying each and collecting session and media facts.
#[derive(Debug)]
struct Builder<'a> {
    input: &'a [u8],
    kinds: Vec<LineKind>,
    session: SessionFacts,
    medias: Vec<MediaFacts>,
}

impl<'a> Builder<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            kinds: Vec::new(),
            session: SessionFacts::default(),
            medias: Vec::new(),
        }
    }

    /// Classifies line `index` (0-based) and records what it says.
    fn line(&mut self, index: usize, line: Line) -> Result<(), SdpError> {
        let number = index + 1;
        let content = line.content(self.input);
        let err = |problem, detail| SdpError::syntax(number, problem, content, detail);

        if index == 0 {
            if trim_end(content) != b"v=0" {
                return Err(err(Problem::BadVersion, ""));
            }
            self.kinds.push(LineKind::Other);
            return Ok(());
        }
        if is_blank(content) {
            return Err(err(Problem::EmptyLine, ""));
        }
        let (Some(&letter), Some(b'=')) = (content.first(), content.get(1)) else {
            return Err(err(Problem::NotALine, ""));
        };
        if !letter.is_ascii_lowercase() {
            return Err(err(Problem::NotALine, "type must be a lowercase letter"));
        }

        let kind = match letter {
            b'v' => return Err(err(Problem::MultipleSessions, "")),
            b'o' => {
                if !self.medias.is_empty() {
                    return Err(err(Problem::MisplacedOrigin, ""));
                }
                if self.session.origin.is_some() {
                    return Err(err(Problem::DuplicateOrigin, ""));
                }
                let o = parse_origin(content).map_err(|d| err(Problem::BadOrigin, d))?;
                self.session.origin = Some(o.origin);
                LineKind::Origin {
                    addr_span: o.addr_span,
                }
            }
            b'm' => {
                let m = parse_media(content).map_err(|d| err(Problem::BadMedia, d))?;
                let info = MediaInfo {
                    index: self.medias.len(),
                    kind: m.kind,
                    port: m.port,
                    port_count: m.port_count,
                    proto: m.proto,
                    formats: m.formats,
                    connection: None,
                    rtcp: None,
                    rtcp_mux: false,
                    has_ice: false,
                    direction: None,
                    rtpmaps: Vec::new(),
                    ptime: None,
                    mid: None,
                    ice_ufrag: None,
                    crypto: Vec::new(),
                    setup: None,
                    fingerprint: None,
                };
                self.medias.push(MediaFacts {
                    first_line: index,
                    info,
                    own_connection: None,
                    own_direction: None,
                    signals_ice: false,
                });
                LineKind::Media {
                    port_span: m.port_span,
                }
            }
            b'c' => {
                let c = parse_connection(content).map_err(|d| err(Problem::BadConnection, d))?;
                let slot = match self.medias.last_mut() {
                    Some(media) => &mut media.own_connection,
                    None => &mut self.session.connection,
                };
                if slot.is_some() {
                    return Err(err(Problem::DuplicateConnection, ""));
                }
                *slot = Some(c.addr);
                LineKind::Connection {
                    addr: c.addr,
                    addr_span: c.addr_span,
                }
            }
            b'a' => {
                let kind = attr::classify(content);
                self.attribute(kind, content);
                LineKind::Attr(kind)
            }
            b'b' | b'k' => LineKind::BandwidthOrKey,
            _ => LineKind::Other,
        };
        self.kinds.push(kind);
        Ok(())
    }

    /// Records what an attribute says, at media level if inside a media section.
    fn attribute(&mut self, kind: AttrKind, content: &[u8]) {
        let Some(media) = self.medias.last_mut() else {
            match kind {
                AttrKind::Direction(d) => {
                    self.session.direction.get_or_insert(d);
                }
                AttrKind::Ice { signals_ice: true } => {
                    self.session.signals_ice = true;
                    if self.session.ice_ufrag.is_none() {
                        self.session.ice_ufrag = attr::parse_ice_ufrag(content);
                    }
                }
                AttrKind::Dtls => dtls_facts(
                    &mut self.session.setup,
                    &mut self.session.fingerprint,
                    content,
                ),
                _ => {}
            }
            return;
        };
        if let Some(value) = content.strip_prefix(b"a=crypto:") {
            media
                .info
                .crypto
                .push(String::from_utf8_lossy(value).trim().to_owned());
        }
        match kind {
            AttrKind::Rtcp => {
                if media.info.rtcp.is_none() {
                    media.info.rtcp = attr::parse_rtcp(content);
                }
            }
            AttrKind::RtcpMux => media.info.rtcp_mux = true,
            AttrKind::Ice { signals_ice } => {
                media.signals_ice |= signals_ice;
                if media.info.ice_ufrag.is_none() {
                    media.info.ice_ufrag = attr::parse_ice_ufrag(content);
                }
            }
            AttrKind::Direction(d) => {
                media.own_direction.get_or_insert(d);
            }
            AttrKind::RtpMap => media.info.rtpmaps.extend(attr::parse_rtpmap(content)),
            AttrKind::Ptime => {
                if media.info.ptime.is_none() {
                    media.info.ptime = attr::parse_ptime(content);
                }
            }
            AttrKind::Mid => {
                if media.info.mid.is_none() {
                    media.info.mid = attr::parse_mid(content);
                }
            }
            AttrKind::Dtls => {
                dtls_facts(&mut media.info.setup, &mut media.info.fingerprint, content)
            }
            AttrKind::Fmtp | AttrKind::RtcpFb { .. } | AttrKind::Group | AttrKind::Other => {}
        }
    }

    /// Checks what can only be checked at the end and assembles the [`Sdp`].
    fn finish(self, raw_lines: Vec<Line>, content_end: usize) -> Result<Sdp, SdpError> {
        let Self {
            input,
            mut kinds,
            session,
            medias,
        } = self;
        let origin = session
            .origin
            .ok_or_else(|| SdpError::syntax(2, Problem::MissingOrigin, b"", ""))?;

        let total = raw_lines.len();
        kinds.resize(total, LineKind::TrailingBlank);
        let lines: Vec<IndexedLine> = raw_lines
            .into_iter()
            .zip(kinds)
            .map(|(line, kind)| IndexedLine { line, kind })
            .collect();

        let session_end = medias.first().map_or(content_end, |m| m.first_line);
        let mut sections = Vec::with_capacity(medias.len());
        let mut starts: Vec<usize> = medias.iter().map(|m| m.first_line).collect();
        starts.push(content_end);
        for (facts, end) in medias.into_iter().zip(starts.into_iter().skip(1)) {
            let mut info = facts.info;
            info.connection = facts.own_connection.or(session.connection);
            info.direction = facts.own_direction.or(session.direction);
            info.has_ice = facts.signals_ice || session.signals_ice;
            if info.ice_ufrag.is_none() {
                info.ice_ufrag = session.ice_ufrag.clone();
            }
            if info.setup.is_none() {
                info.setup = session.setup.clone();
            }
            if info.fingerprint.is_none() {
                info.fingerprint = session.fingerprint.clone();
            }
            sections.push(MediaSection {
                lines: facts.first_line..end,
                own_connection: facts.own_connection,
                info,
            });
        }
        let media_infos = sections.iter().map(|s| s.info.clone()).collect();

        Ok(Sdp {
            raw: input.to_vec(),
            lines,
            session_lines: 0..session_end,
            medias: sections,
            trailer_lines: content_end..total,
            origin,
            session_connection: session.connection,
            session_direction: session.direction,
            media_infos,
        })
    }
}

/// The first `a=setup` and `a=fingerprint` of a section (or the session).
fn dtls_facts(setup: &mut Option<String>, fingerprint: &mut Option<String>, content: &[u8]) {
    if setup.is_none() {
        *setup = attr::parse_dtls(content, b"setup");
    }
    if fingerprint.is_none() {
        *fingerprint = attr::parse_dtls(content, b"fingerprint");
    }
}
