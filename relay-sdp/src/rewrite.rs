//! Rewriting an SDP body so that both parties send their media to the relay.
//!
//! This is rtpengine's `offer`/`answer` rewrite in plain forwarding mode (no transcoding,
//! no SRTP termination, no ICE agent), reduced to the changes that move media through the
//! relay. Every line not listed below is copied byte for byte with its own line ending.
//!
//! # What changes
//! - **`o=`**: with [`RewritePlan::origin_address`], the address type and address are
//!   replaced (rtpengine's `replace=origin`); username, id and version stay.
//! - **Session `c=`**: gets [`RewritePlan::session_connection`], or else the address of the
//!   first media that is not rejected. rtpengine 10.5 leaves the session `c=` alone when
//!   every media has its own `c=` (it is then unused); we rewrite it anyway so the peer's
//!   address never leaks and the body stays consistent for naive parsers.
//! - **Media `c=`**: gets the media's [`MediaRewrite::address`]. When a media has no `c=`
//!   and the session-level one would not give it the right address, a media-level
//!   `c=IN IPx addr` is inserted after the `m=` line (before its first `b=`/`k=`/`a=`, as
//!   RFC 8866 orders fields).
//! - **`m=`**: the port is replaced, a `/count` suffix and everything else is kept.
//! - **`a=rtcp:` and `a=rtcp-mux`**: removed where they are and re-added as `a=rtcp:PORT`
//!   (port only, rtpengine's default without `full-rtcp-attribute`) followed by
//!   `a=rtcp-mux` when multiplexing is offered or kept. With RTCP on the RTP port
//!   (`rtcp_port: None`) the line is `a=rtcp:RTP_PORT`, as rtpengine does for
//!   `rtcp-mux=require` and accepted mux. Only RTP protocols get these lines; for others
//!   (`udptl`, SCTP) stale ones are dropped.
//! - **The attributes of an RTP media** are written in rtpengine's order (see
//!   `media_block`): the ones it does not handle as received, `a=mid`, per payload type
//!   `a=rtpmap` (added for static types), `a=fmtp` and `a=rtcp-fb`, an explicit
//!   direction, `a=rtcp`/`a=rtcp-mux`, then the first `a=ptime` (or [`MediaRewrite::ptime`]). [`MediaRewrite::formats`]
//!   thins the `m=` line and these lines out (codec stripping, answer pruning).
//! - **Session level**: a direction attribute moves into each media, and `a=group:BUNDLE`
//!   goes (every media has its own relay port).
//! - **ICE** ([`RewritePlan::remove_ice`]): `a=ice-ufrag`, `a=ice-pwd`, `a=ice-options`,
//!   `a=ice-lite`, `a=ice-mismatch`, `a=ice-pacing`, `a=candidate`,
//!   `a=remote-candidates` and `a=end-of-candidates` are dropped at both levels.
//!   With the relay's own ICE ([`MediaRewrite::ice`], the ICE-lite agent of
//!   relay-media) they are dropped too, and replaced: `a=ice-lite` at the end of
//!   the session section, and at the end of each such media (after `a=ptime`,
//!   where rtpengine writes its ICE) `a=ice-ufrag`, `a=ice-pwd` and host
//!   candidates for the relay's RTP port (component 1) and RTCP port
//!   (component 2, unless RTCP rides on the RTP port).
//! - **Holds by a zero address**: a `c=` with `0.0.0.0` or `::` is kept (moved to the other
//!   family's unspecified address if the relay address is of the other family), as
//!   rtpengine does without `replace=zero-address`, and the media is written `sendonly`
//!   (`recvonly` becomes `inactive`), with or without the flag. The exception is a media
//!   using ICE, where the zero address is a trickle placeholder, and rtpengine does
//!   replace it.
//! - **Rejected media** (port 0 in the input): the `m=` line stays, `c=` gets the relay
//!   address, and the attributes rtpengine regenerates (codecs, direction, RTCP, ICE) go;
//!   unknown ones and `a=rtcp-fb:*` stay, as rtpengine writes it.
//!
//! Checked against rtpengine 10.5 itself: the same NG request to both, the SDP compared
//! (the conformance harness).
//!
//! # Line endings
//! Copied lines keep their own ending. Added lines, and a last line that had none, get the
//! ending of the first line (CRLF if it has none), so the output is always terminated. The
//! attribute block of an RTP media, which rtpengine regenerates, ends every line with CRLF
//! as rtpengine does, whatever the input used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::attr::AttrKind;
use crate::error::SdpError;
use crate::media_block::{self, BlockSpec, Out};
use crate::model::Direction;
use crate::parse::{IndexedLine, LineKind, MediaSection, Sdp};

/// What to do with `a=rtcp-mux` in a media section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpMux {
    /// Keep what the input says (present stays present, absent stays absent).
    #[default]
    Keep,
    /// Add `a=rtcp-mux` (rtpengine `rtcp-mux=offer`, or accepting the peer's mux).
    Offer,
    /// Strip `a=rtcp-mux` (rtpengine `rtcp-mux=demux`); needs a separate RTCP port.
    Remove,
}

/// How `a=rtcp` is written (rtpengine's `full-rtcp-attribute` and
/// `no-rtcp-attribute` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpAttribute {
    /// `a=rtcp:PORT`.
    #[default]
    Port,
    /// `a=rtcp:PORT IN IP4 ADDRESS`.
    Full,
    /// No `a=rtcp` line.
    Omit,
}

/// How to rewrite one `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRewrite {
    /// The relay address the peer should send this media to. An IPv4-mapped IPv6 address
    /// is written as IPv4.
    pub address: IpAddr,
    /// The relay's RTP port.
    pub port: u16,
    /// The relay's RTCP port; `None` means RTCP is multiplexed on the RTP port.
    pub rtcp_port: Option<u16>,
    /// What to do with `a=rtcp-mux`.
    pub rtcp_mux: RtcpMux,
    /// The payload types to offer, in order (codec stripping and masking,
    /// an answer pruned to what was offered); `None` keeps the `m=` line's.
    pub formats: Option<Vec<String>>,
    /// The packetization time to write when the SDP's media has no
    /// `a=ptime` (rtpengine writes the one the recipient declared before).
    pub ptime: Option<u32>,
    /// The `a=mid` to write when the SDP's media has none (the recipient's
    /// own, or a generated one).
    pub mid: Option<String>,
    /// The transport protocol to write on the `m=` line instead of the
    /// SDP's (`transport-protocol`, or the offerer's own in an answer).
    pub protocol: Option<String>,
    /// The relay's own ICE for this media (`ICE=force`, or an ICE offer by
    /// default): the peer's ICE attributes go whatever
    /// [`RewritePlan::remove_ice`] says, these are written at the end of the
    /// media, and `a=ice-lite` at session level.
    pub ice: Option<MediaIce>,
    /// SDES: the `a=crypto:` values to write instead of the SDP's (empty: none,
    /// the recipient speaks plain RTP); `None` keeps the SDP's. Either way
    /// they follow `a=rtcp`/`a=rtcp-mux`, where rtpengine writes them.
    pub crypto: Option<Vec<String>>,
    /// What becomes of DTLS-SRTP's `a=setup`, `a=fingerprint`, `a=tls-id`.
    pub dtls: DtlsRewrite,
}

/// DTLS attributes of one media.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DtlsRewrite {
    /// As the SDP has them.
    #[default]
    Keep,
    /// None (the recipient speaks no DTLS).
    Strip,
    /// The relay's own instead of the peer's (it terminates DTLS), written
    /// before its ICE.
    Relay(MediaDtls),
}

/// The relay's DTLS attributes for one media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDtls {
    /// `actpass`, `active` or `passive`.
    pub setup: String,
    /// `sha-256 AB:CD:…`.
    pub fingerprint: String,
}

/// The relay as the only ICE candidate of a media (an ICE-lite agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaIce {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
    /// The addresses to list as host candidates, most preferred first (the
    /// media's relay address, then an advertised one in front of it). Each
    /// gets a candidate for the RTP port (component 1) and, unless RTCP is
    /// multiplexed, one for the RTCP port (component 2).
    pub addresses: Vec<IpAddr>,
}

impl MediaIce {
    /// The `a=candidate` lines (RFC 8839 §5.1), in rtpengine's order: every
    /// address's component 1, then every address's component 2. Priorities
    /// as RFC 8445 §5.1.2.1 computes them with rtpengine's preferences:
    /// type 126 (host), local preference 65535 less the address's rank.
    pub fn candidate_lines(&self, rtp_port: u16, rtcp_port: Option<u16>) -> Vec<String> {
        let components = [(1u32, Some(rtp_port)), (2, rtcp_port)];
        let mut out = Vec::new();
        for (component, port) in components {
            let Some(port) = port else { continue };
            for (rank, addr) in self.addresses.iter().enumerate() {
                let addr = canonical(*addr);
                let local_pref = 65535u32.saturating_sub(u32::try_from(rank).unwrap_or(65535));
                let priority = (126u32 << 24) + (local_pref << 8) + (256 - component);
                out.push(format!(
                    "a=candidate:{} {component} UDP {priority} {addr} {port} typ host",
                    foundation(addr)
                ));
            }
        }
        out
    }
}

/// A candidate foundation: the same for the same address (RFC 8445 §5.1.1.3:
/// same type, base address and protocol), letters and digits only.
fn foundation(addr: IpAddr) -> String {
    // FNV-1a over the address bytes: stable and short, not a secret.
    let bytes = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let hash = bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("x{hash:08x}")
}

/// Everything [`rewrite`] needs to know, decided by the call logic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewritePlan {
    /// `replace=origin`: the address for the `o=` line (its `IP4`/`IP6` token follows).
    pub origin_address: Option<IpAddr>,
    /// The address for the session-level `c=`; `None` uses the first non-rejected media's.
    /// Ignored when the SDP has no session-level `c=` (none is added).
    pub session_connection: Option<IpAddr>,
    /// One entry per `m=` line, in order.
    pub medias: Vec<MediaRewrite>,
    /// `ICE=remove`: strip all ICE attributes.
    pub remove_ice: bool,
    /// `replace=zero-address`: a zero connection address (a hold) becomes the
    /// relay's too (the media is still written `sendonly`).
    pub replace_zero_address: bool,
    /// How `a=rtcp` is written.
    pub rtcp_attribute: RtcpAttribute,
    /// `replace: [SDP-version]`: the session version for the `o=` line.
    pub origin_version: Option<u64>,
    /// `strip-extmap`: drop every media's `a=extmap` lines.
    pub strip_extmap: bool,
    /// `original-sendrecv`: direction attributes stay as and where the SDP
    /// has them; none is added or derived from a zero-address hold.
    pub original_direction: bool,
    /// Attribute lines added at the end of the session section unless
    /// there already (without `a=`: `loop-protect`'s `rtpengine:TOKEN`).
    pub session_attributes: Vec<String>,
}

/// Rewrites `sdp` according to `plan`; see the module docs for exactly what changes.
///
/// Fails only on a plan that does not fit: a media count different from the number of
/// `m=` lines, or RTCP on the RTP port together with [`RtcpMux::Remove`].
pub fn rewrite(sdp: &Sdp, plan: &RewritePlan) -> Result<Vec<u8>, SdpError> {
    let sections = sdp.media_sections();
    if plan.medias.len() != sections.len() {
        return Err(SdpError::PlanMediaCount {
            expected: sections.len(),
            got: plan.medias.len(),
        });
    }
    for (index, (section, media)) in sections.iter().zip(&plan.medias).enumerate() {
        let applies = !section.info.is_rejected() && section.info.is_rtp();
        if applies && media.rtcp_port.is_none() && media.rtcp_mux == RtcpMux::Remove {
            return Err(SdpError::PlanRtcpConflict { media: index });
        }
    }

    let mut w = Writer {
        raw: sdp.raw(),
        eol: sdp.default_eol(),
        out: Vec::with_capacity(sdp.raw().len() + 64 * sections.len() + 64),
    };
    let session = session_rewrite(sdp, plan);
    w.session(sdp, plan, &session);
    for (section, media) in sections.iter().zip(&plan.medias) {
        w.media(sdp.lines(), section, media, &session, plan);
    }
    for line in slice(sdp.lines(), sdp.trailer_lines()) {
        w.copy(line);
    }
    Ok(w.out)
}

/// Whether an `a=group:` line groups by BUNDLE.
fn is_bundle(content: &[u8]) -> bool {
    content
        .get(..15)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"a=group:BUNDLE "))
        || content.eq_ignore_ascii_case(b"a=group:BUNDLE")
}

/// The decisions about the session level, needed by the media sections too.
#[derive(Debug)]
struct SessionRewrite {
    /// The session `c=` address as received.
    input: Option<IpAddr>,
    /// The session-level direction attribute, which moves into each media.
    direction: Option<Direction>,
    /// The address for the session `c=`, if it is rewritten at all.
    target: Option<IpAddr>,
    /// What the session `c=` says after the rewrite (what media without `c=` inherit).
    effective: Option<IpAddr>,
    /// Whether a zero address in the session `c=` is a hold to keep.
    keep_zero: bool,
}

fn session_rewrite(sdp: &Sdp, plan: &RewritePlan) -> SessionRewrite {
    let sections = sdp.media_sections();
    let first_active = sections
        .iter()
        .zip(&plan.medias)
        .find(|(s, _)| !s.info.is_rejected())
        .or_else(|| sections.iter().zip(&plan.medias).next())
        .map(|(_, m)| m.address);
    let target = plan.session_connection.or(first_active).map(canonical);
    // With ICE anywhere, a zero session address is a trickle placeholder, not a hold.
    let keep_zero = !sections.iter().any(|s| s.info.has_ice) && !plan.replace_zero_address;
    let effective = sdp
        .session_connection()
        .map(|c| target.map_or(c.addr, |t| connection_output(c.addr, t, keep_zero)));
    SessionRewrite {
        input: sdp.session_connection().map(|c| c.addr),
        direction: sdp.session_direction(),
        target,
        effective,
        keep_zero,
    }
}

/// What a `c=` that said `original` says after the rewrite to `target`.
fn connection_output(original: IpAddr, target: IpAddr, keep_zero: bool) -> IpAddr {
    if keep_zero && original.is_unspecified() {
        unspecified_like(target)
    } else {
        target
    }
}

/// The zero address of `addr`'s family.
fn unspecified_like(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Writes IPv4-mapped IPv6 addresses as IPv4: peers expect `IN IP4` for IPv4 media.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// `IP4 198.51.100.1` / `IP6 2001:db8::1`: what replaces an address-type-and-address span.
fn address_field(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    }
}

fn slice(lines: &[IndexedLine], range: Range<usize>) -> &[IndexedLine] {
    lines.get(range).unwrap_or_default()
}

/// Accumulates the output.
#[derive(Debug)]
struct Writer<'a> {
    raw: &'a [u8],
    eol: &'a [u8],
    out: Vec<u8>,
}

impl Writer<'_> {
    /// Copies a line verbatim, terminating it if it was the unterminated last line.
    fn copy(&mut self, line: &IndexedLine) {
        self.out.extend_from_slice(line.line.content(self.raw));
        self.end_line(line);
    }

    /// Copies a line with `span` (relative to the line start) replaced by `with`.
    fn replace(&mut self, line: &IndexedLine, span: &Range<usize>, with: &str) {
        let content = line.line.content(self.raw);
        match (content.get(..span.start), content.get(span.end..)) {
            (Some(before), Some(after)) => {
                self.out.extend_from_slice(before);
                self.out.extend_from_slice(with.as_bytes());
                self.out.extend_from_slice(after);
                self.end_line(line);
            }
            // Spans come from parsing this very line; keep it rather than panic if not.
            _ => self.copy(line),
        }
    }

    fn end_line(&mut self, line: &IndexedLine) {
        let eol = line.line.eol(self.raw);
        self.out
            .extend_from_slice(if eol.is_empty() { self.eol } else { eol });
    }

    /// Writes a line of a media's regenerated attribute block: always CRLF.
    fn regenerated(&mut self, content: &[u8]) {
        self.out.extend_from_slice(content);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Writes a line the relay adds.
    fn add(&mut self, content: &str) {
        self.out.extend_from_slice(content.as_bytes());
        self.out.extend_from_slice(self.eol);
    }

    /// Writes a `c=` line: verbatim if its address does not change, else rewritten.
    fn connection(
        &mut self,
        line: &IndexedLine,
        original: IpAddr,
        span: &Range<usize>,
        new: IpAddr,
    ) {
        if new == original {
            self.copy(line);
        } else {
            self.replace(line, span, &address_field(new));
        }
    }

    fn session(&mut self, sdp: &Sdp, plan: &RewritePlan, session: &SessionRewrite) {
        // The relay answers checks but makes none: the peer must control.
        let ice_lite = plan.medias.iter().any(|m| m.ice.is_some());
        for line in slice(sdp.lines(), sdp.session_lines()) {
            match &line.kind {
                LineKind::Origin { addr_span } => {
                    match (plan.origin_address, plan.origin_version) {
                        (None, None) => self.copy(line),
                        (Some(addr), None) => {
                            self.replace(line, addr_span, &address_field(canonical(addr)))
                        }
                        (addr, Some(version)) => {
                            let content =
                                origin_with(line.line.content(self.raw), addr_span, addr, version);
                            self.out.extend_from_slice(&content);
                            self.end_line(line);
                        }
                    }
                }
                LineKind::Connection { addr, addr_span } => match session.target {
                    Some(target) => {
                        let new = connection_output(addr.addr, target, session.keep_zero);
                        self.connection(line, addr.addr, addr_span, new);
                    }
                    None => self.copy(line),
                },
                LineKind::Attr(AttrKind::Ice { .. }) if plan.remove_ice || ice_lite => {}
                LineKind::Attr(AttrKind::Dtls)
                    if plan.medias.iter().any(|m| m.dtls != DtlsRewrite::Keep) => {}
                // Written into each media instead (media_block), unless
                // kept as they are.
                LineKind::Attr(AttrKind::Direction(_)) if !plan.original_direction => {}
                // The relay gives each media its own port: nothing is bundled.
                LineKind::Attr(AttrKind::Group) if is_bundle(line.line.content(self.raw)) => {}
                _ => self.copy(line),
            }
        }
        let extra = plan
            .session_attributes
            .iter()
            .map(String::as_str)
            .chain(ice_lite.then_some("ice-lite"));
        for attribute in extra {
            let line = format!("a={attribute}");
            // Once is enough: a rewritten SDP rewritten again stays the same
            // (the peer's `a=ice-lite` is gone already, ours goes in).
            let present = attribute != "ice-lite"
                && slice(sdp.lines(), sdp.session_lines())
                    .iter()
                    .any(|l| l.line.content(self.raw) == line.as_bytes());
            if !present {
                self.add(&line);
            }
        }
    }

    fn media(
        &mut self,
        lines: &[IndexedLine],
        section: &MediaSection,
        media: &MediaRewrite,
        session: &SessionRewrite,
        plan: &RewritePlan,
    ) {
        let info = &section.info;
        let active = !info.is_rejected();
        // The relay's own ICE replaces the peer's anywhere in the SDP.
        let ice_lite = plan.medias.iter().any(|m| m.ice.is_some());
        let address = canonical(media.address);
        let keep_zero = !info.has_ice && !plan.replace_zero_address;
        let lines = slice(lines, section.lines.clone());
        let formats = media.formats.as_deref().unwrap_or(&info.formats);

        // A media without `c=` inherits the session's; add one if that is not right.
        let mut pending_c = None;
        if active && section.own_connection.is_none() {
            let wanted = match session.effective {
                Some(eff) if eff.is_unspecified() && keep_zero => eff,
                _ => address,
            };
            if session.effective != Some(wanted) {
                pending_c = Some(format!("c=IN {}", address_field(wanted)));
            }
        }

        // The lines before the attributes, in place (RFC 8866 order).
        for line in lines {
            if matches!(line.kind, LineKind::Attr(_) | LineKind::BandwidthOrKey) {
                if let Some(c) = pending_c.take() {
                    self.add(&c);
                }
            }
            match &line.kind {
                LineKind::Media { port_span } if active => {
                    let proto = media.protocol.as_deref().unwrap_or(&info.proto);
                    if media.formats.is_some() || proto != info.proto {
                        self.add(&media_line(info, media.port, proto, formats));
                    } else {
                        self.replace(line, port_span, &media.port.to_string());
                    }
                }
                LineKind::Connection { addr, addr_span } => {
                    let new = connection_output(addr.addr, address, keep_zero && active);
                    self.connection(line, addr.addr, addr_span, new);
                }
                LineKind::Attr(_) => {}
                _ => self.copy(line),
            }
        }
        if let Some(c) = pending_c {
            self.add(&c);
        }
        if !active {
            // What rtpengine does not regenerate (a=rtcp-fb:*, unknown
            // attributes) it keeps even here; codecs, direction and RTCP go.
            for line in lines {
                if let LineKind::Attr(AttrKind::Other | AttrKind::RtcpFb { wildcard: true }) =
                    line.kind
                {
                    self.regenerated(line.line.content(self.raw));
                }
            }
            return;
        }
        if !info.is_rtp() {
            // No codecs to regenerate (T.38, SCTP): attributes as received.
            for line in lines {
                match &line.kind {
                    LineKind::Attr(AttrKind::Rtcp | AttrKind::RtcpMux) => {}
                    LineKind::Attr(AttrKind::Ice { .. }) if plan.remove_ice || ice_lite => {}
                    LineKind::Attr(AttrKind::Dtls) if media.dtls != DtlsRewrite::Keep => {}
                    LineKind::Attr(_) => self.copy(line),
                    _ => {}
                }
            }
            return;
        }

        let effective = section.own_connection.map(|c| c.addr).or(session.input);
        let zero_hold = !info.has_ice && effective.is_some_and(|a| a.is_unspecified());
        let block = media_block::block(
            self.raw,
            lines,
            BlockSpec {
                formats,
                direction: media_block::direction(info.direction, session.direction, zero_hold),
                remove_ice: plan.remove_ice || ice_lite,
                keep_dtls: media.dtls == DtlsRewrite::Keep,
                strip_extmap: plan.strip_extmap,
                original_direction: plan.original_direction,
                mid: media.mid.as_deref(),
            },
        );
        let is_crypto = |out: &Out<'_>| matches!(out, Out::Copy(line) if line.line.content(self.raw).starts_with(b"a=crypto:"));
        for out in block.head.iter().filter(|o| !is_crypto(o)) {
            match out {
                Out::Copy(line) => self.regenerated(line.line.content(self.raw)),
                Out::Add(content) => self.regenerated(content.as_bytes()),
            }
        }
        let rtcp_port = media.rtcp_port.unwrap_or(media.port);
        match plan.rtcp_attribute {
            RtcpAttribute::Port => self.regenerated(format!("a=rtcp:{rtcp_port}").as_bytes()),
            RtcpAttribute::Full => self.regenerated(
                format!("a=rtcp:{rtcp_port} IN {}", address_field(address)).as_bytes(),
            ),
            RtcpAttribute::Omit => {}
        }
        let mux = match media.rtcp_mux {
            RtcpMux::Offer => true,
            RtcpMux::Remove => false,
            // No RTCP port of its own means RTCP rides on the RTP port: that is mux.
            RtcpMux::Keep => info.rtcp_mux || media.rtcp_port.is_none(),
        };
        if mux {
            self.regenerated(b"a=rtcp-mux");
        }
        match &media.crypto {
            Some(values) => {
                for v in values {
                    self.regenerated(format!("a=crypto:{v}").as_bytes());
                }
            }
            None => {
                for out in block.head.iter().filter(|o| is_crypto(o)) {
                    if let Out::Copy(line) = out {
                        self.regenerated(line.line.content(self.raw));
                    }
                }
            }
        }
        // Where rtpengine writes them: after RTCP, before ptime and ICE.
        if let DtlsRewrite::Relay(dtls) = &media.dtls {
            self.regenerated(format!("a=setup:{}", dtls.setup).as_bytes());
            self.regenerated(format!("a=fingerprint:{}", dtls.fingerprint).as_bytes());
        }
        match (block.ptime, media.ptime) {
            (Some(line), _) => self.regenerated(line.line.content(self.raw)),
            (None, Some(ms)) => self.regenerated(format!("a=ptime:{ms}").as_bytes()),
            (None, None) => {}
        }
        if let Some(ice) = &media.ice {
            self.regenerated(format!("a=ice-ufrag:{}", ice.ufrag).as_bytes());
            self.regenerated(format!("a=ice-pwd:{}", ice.pwd).as_bytes());
            for line in ice.candidate_lines(media.port, media.rtcp_port) {
                self.regenerated(line.as_bytes());
            }
        }
    }
}

/// An `m=` line written anew with `port` and `formats`.
fn media_line(
    info: &crate::model::MediaInfo,
    port: u16,
    proto: &str,
    formats: &[String],
) -> String {
    let count = if info.port_count > 1 {
        format!("/{}", info.port_count)
    } else {
        String::new()
    };
    format!(
        "m={} {port}{count} {proto} {}",
        info.kind,
        formats.join(" ")
    )
}

/// An `o=` line's content with its session version set to `version` and,
/// if given, its address (at `addr_span`) set to `addr`. The version is
/// the third field (RFC 8866: `o=username sess-id sess-version ...`).
///
/// Works on bytes: an `o=` line may carry bytes that are not UTF-8, and
/// they stay as they were.
fn origin_with(
    content: &[u8],
    addr_span: &Range<usize>,
    addr: Option<IpAddr>,
    version: u64,
) -> Vec<u8> {
    let cut = addr_span.start.min(content.len());
    let (head, tail) = content.split_at(cut);
    // The third run of non-blank bytes, separators kept as they were (the
    // parser takes any run of blanks between fields).
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &b) in head.iter().enumerate() {
        match (b == b' ' || b == b'\t', start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    runs.extend(start.map(|s| s..head.len()));
    let mut out = Vec::with_capacity(content.len() + 8);
    match runs.get(2) {
        Some(field) => {
            out.extend_from_slice(&head[..field.start]);
            out.extend_from_slice(version.to_string().as_bytes());
            out.extend_from_slice(&head[field.end..]);
        }
        None => out.extend_from_slice(head),
    }
    match addr {
        Some(a) => out.extend_from_slice(address_field(canonical(a)).as_bytes()),
        None => out.extend_from_slice(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn zero_addresses_stay_zero_in_the_target_family() {
        let zero4 = ip("0.0.0.0");
        assert_eq!(connection_output(zero4, ip("203.0.113.1"), true), zero4);
        assert_eq!(connection_output(zero4, ip("2001:db8::1"), true), ip("::"));
        assert_eq!(connection_output(ip("::"), ip("203.0.113.1"), true), zero4);
        // Trickle-ICE placeholder: replaced.
        assert_eq!(
            connection_output(zero4, ip("203.0.113.1"), false),
            ip("203.0.113.1")
        );
        assert_eq!(
            connection_output(ip("198.51.100.1"), ip("2001:db8::1"), true),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn candidates_as_rtpengine_prioritises_them() {
        let ice = MediaIce {
            ufrag: "u".into(),
            pwd: "p".into(),
            addresses: vec![ip("192.0.2.1"), ip("::ffff:198.51.100.1")],
        };
        let lines = ice.candidate_lines(30000, Some(30001));
        let f1 = foundation(ip("192.0.2.1"));
        let f2 = foundation(ip("198.51.100.1"));
        assert_eq!(
            lines,
            [
                format!("a=candidate:{f1} 1 UDP 2130706431 192.0.2.1 30000 typ host"),
                format!("a=candidate:{f2} 1 UDP 2130706175 198.51.100.1 30000 typ host"),
                format!("a=candidate:{f1} 2 UDP 2130706430 192.0.2.1 30001 typ host"),
                format!("a=candidate:{f2} 2 UDP 2130706174 198.51.100.1 30001 typ host"),
            ]
        );
        assert_ne!(f1, f2);
        assert_eq!(ice.candidate_lines(30000, None).len(), 2);
    }

    #[test]
    fn the_relays_ice_replaces_the_peers() {
        let input = "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
                     t=0 0\r\na=ice-lite\r\nm=audio 16500 RTP/AVP 0\r\na=ice-ufrag:peer\r\n\
                     a=ice-pwd:peerpasswordpeerpassword\r\n\
                     a=candidate:1 1 UDP 2130706431 203.0.113.10 16500 typ host\r\na=sendrecv\r\n";
        let sdp = crate::parse(input.as_bytes()).expect("valid");
        assert_eq!(sdp.medias()[0].ice_ufrag.as_deref(), Some("peer"));
        let plan = RewritePlan {
            medias: vec![MediaRewrite {
                address: ip("192.0.2.1"),
                port: 30000,
                rtcp_port: Some(30001),
                rtcp_mux: RtcpMux::Keep,
                formats: None,
                ptime: None,
                mid: None,
                protocol: None,
                ice: Some(MediaIce {
                    ufrag: "relayufr".into(),
                    pwd: "relaypasswordrelaypasswor".into(),
                    addresses: vec![ip("192.0.2.1")],
                }),
                crypto: None,
                dtls: DtlsRewrite::Keep,
            }],
            ..RewritePlan::default()
        };
        let out = String::from_utf8(rewrite(&sdp, &plan).expect("fits")).expect("utf8");
        let f = foundation(ip("192.0.2.1"));
        assert_eq!(
            out,
            format!(
                "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 a=ice-lite\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
                 a=rtcp:30001\r\na=ice-ufrag:relayufr\r\na=ice-pwd:relaypasswordrelaypasswor\r\n\
                 a=candidate:{f} 1 UDP 2130706431 192.0.2.1 30000 typ host\r\n\
                 a=candidate:{f} 2 UDP 2130706430 192.0.2.1 30001 typ host\r\n"
            )
        );
    }

    #[test]
    fn crypto_lines_follow_rtcp_and_can_be_replaced() {
        let input = "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
                     t=0 0\r\nm=audio 16500 RTP/SAVP 0\r\n\
                     a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
                     a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=ptime:20\r\n";
        let sdp = crate::parse(input.as_bytes()).expect("valid");
        assert_eq!(
            sdp.medias()[0].crypto,
            ["1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"]
        );
        let media = |protocol: Option<&str>, crypto: Option<Vec<String>>| MediaRewrite {
            address: ip("192.0.2.1"),
            port: 30000,
            rtcp_port: Some(30001),
            rtcp_mux: RtcpMux::Keep,
            formats: None,
            ptime: None,
            mid: None,
            protocol: protocol.map(str::to_owned),
            ice: None,
            crypto,
            dtls: DtlsRewrite::Keep,
        };
        let out = |m: MediaRewrite| {
            let plan = RewritePlan {
                medias: vec![m],
                ..RewritePlan::default()
            };
            String::from_utf8(rewrite(&sdp, &plan).expect("fits")).expect("utf8")
        };
        let head = "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        // Kept, but after a=rtcp, as rtpengine writes it.
        assert_eq!(
            out(media(None, None)),
            format!(
                "{head}m=audio 30000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
                 a=rtcp:30001\r\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
                 a=ptime:20\r\n"
            )
        );
        // Towards a plain RTP party: none.
        assert_eq!(
            out(media(Some("RTP/AVP"), Some(Vec::new()))),
            format!(
                "{head}m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
                 a=rtcp:30001\r\na=ptime:20\r\n"
            )
        );
        // The relay's own.
        assert!(out(media(
            None,
            Some(vec!["7 AEAD_AES_128_GCM inline:x".into()])
        ))
        .contains("a=rtcp:30001\r\na=crypto:7 AEAD_AES_128_GCM inline:x\r\na=ptime:20\r\n"));
    }

    #[test]
    fn address_fields() {
        assert_eq!(address_field(ip("203.0.113.1")), "IP4 203.0.113.1");
        assert_eq!(address_field(ip("2001:db8::1")), "IP6 2001:db8::1");
        assert_eq!(canonical(ip("::ffff:203.0.113.1")), ip("203.0.113.1"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn the_relays_dtls_replaces_the_peers_before_its_ice() {
        let input = "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
                     t=0 0\r\na=fingerprint:sha-1 00:11\r\n\
                     m=audio 16500 UDP/TLS/RTP/SAVPF 0\r\na=setup:actpass\r\n\
                     a=fingerprint:sha-256 AA:BB\r\na=tls-id:abc\r\na=rtcp-mux\r\na=sendrecv\r\n";
        let sdp = crate::parse(input.as_bytes()).expect("valid");
        assert_eq!(sdp.medias()[0].setup.as_deref(), Some("actpass"));
        assert_eq!(
            sdp.medias()[0].fingerprint.as_deref(),
            Some("sha-256 AA:BB")
        );
        let media = MediaRewrite {
            address: ip("192.0.2.1"),
            port: 30000,
            rtcp_port: None,
            rtcp_mux: RtcpMux::Keep,
            formats: None,
            ptime: None,
            mid: None,
            protocol: Some("RTP/AVP".into()),
            ice: None,
            crypto: None,
            dtls: DtlsRewrite::Strip,
        };
        let plan = RewritePlan {
            medias: vec![media.clone()],
            ..RewritePlan::default()
        };
        // To a plain RTP party: the peer's DTLS goes, session level too.
        let out = String::from_utf8(rewrite(&sdp, &plan).expect("fits")).expect("utf8");
        assert!(!out.contains("setup") && !out.contains("fingerprint") && !out.contains("tls-id"));
        let plan = RewritePlan {
            medias: vec![MediaRewrite {
                protocol: None,
                dtls: DtlsRewrite::Relay(MediaDtls {
                    setup: "passive".into(),
                    fingerprint: "sha-256 CC:DD".into(),
                }),
                ..media
            }],
            ..RewritePlan::default()
        };
        let out = String::from_utf8(rewrite(&sdp, &plan).expect("fits")).expect("utf8");
        assert_eq!(
            out,
            "v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 30000 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
             a=rtcp:30000\r\na=rtcp-mux\r\na=setup:passive\r\na=fingerprint:sha-256 CC:DD\r\n"
        );
    }
}
