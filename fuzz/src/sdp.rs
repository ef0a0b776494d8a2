//! SDP: the body of every `offer` and `answer`, straight from SIP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use relay_ng::command::OfferAnswer;
use relay_sdp::{codecs, MediaRewrite, RewritePlan, RtcpAttribute, RtcpMux, Sdp, SdpError};

/// The relay's own address and first port in the plans built here.
const RELAY_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const RELAY_PORT: u16 = 30000;

/// `sdp`: the input up to its last NUL byte is the SDP; what follows the
/// NUL, if there is one, chooses the rewrite options (with `arbitrary`).
/// Without a NUL (the seeds: plain SDP files) the rewrite is relayd's
/// default one. Every accessor the call logic uses is read, the codec
/// manipulations run, and the body is rewritten.
pub fn sdp(data: &[u8]) {
    let (body, options) = match data.iter().rposition(|&b| b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let parsed = match relay_sdp::parse(body) {
        Ok(sdp) => sdp,
        Err(e) => {
            let _ = (e.to_string(), e.line());
            return;
        }
    };
    inspect(&parsed);
    let options = match options {
        Some(bytes) => match Options::arbitrary_take_rest(Unstructured::new(bytes)) {
            Ok(options) => options,
            Err(_) => return,
        },
        None => Options {
            session_connection: Some(Addr::V4(RELAY_V4.octets())),
            remove_ice: true,
            ..Options::default()
        },
    };
    let plan = options.plan(&parsed);
    let _ = check_rewrite(&parsed, &plan, options.checkable());
}

/// Reads what the call logic reads of a parsed SDP.
fn inspect(sdp: &Sdp) {
    assert!(sdp.as_bytes().len() <= relay_sdp::MAX_SDP_LEN);
    let origin = sdp.origin();
    let _ = (origin.ip(), origin.version_number());
    let _ = (sdp.session_connection(), sdp.session_direction());
    assert_eq!(sdp.media_count(), sdp.medias().len());
    for (i, m) in sdp.medias().iter().enumerate() {
        assert_eq!(m.index, i);
        let _ = (m.is_rtp(), m.is_rejected(), m.direction.map(|d| d.as_str()));
        for f in &m.formats {
            if let Ok(pt) = f.parse::<u8>() {
                let _ = m.codec(pt);
            }
        }
        let _ = codecs::carried(m, None);
    }
}

/// Rewrites, and checks what always holds: a plan of the wrong media
/// count is refused; a plan that fits gives an SDP that parses again with
/// the same number of media (when `checkable`: the plan's payload types
/// come from the SDP and the output is within the parser's size limit).
/// Returns the rewrite's result.
fn check_rewrite(sdp: &Sdp, plan: &RewritePlan, checkable: bool) -> Result<Vec<u8>, SdpError> {
    let result = relay_sdp::rewrite(sdp, plan);
    if plan.medias.len() != sdp.media_count() {
        assert!(
            matches!(result, Err(SdpError::PlanMediaCount { .. })),
            "{result:?}"
        );
        return result;
    }
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            assert!(
                matches!(e, SdpError::PlanRtcpConflict { .. }),
                "unexpected rewrite error {e}"
            );
            return Err(e);
        }
    };
    if checkable && out.len() <= relay_sdp::MAX_SDP_LEN {
        match relay_sdp::parse(&out) {
            Ok(again) => assert_eq!(again.media_count(), sdp.media_count()),
            Err(e) => panic!(
                "the rewritten SDP does not parse: {e}\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    Ok(out)
}

/// Rewrites an `offer`'s or `answer`'s SDP as relayd's handler does
/// (relay-userspace `control::handler`: `payload_types` and
/// `rewrite_plan`), with a fixed relay address and ports instead of the
/// call manager's; an answer is pruned to the codecs of its own SDP, as
/// if it had been the offer. Err is the reply's `error-reason`.
pub(crate) fn rewrite_for(oa: &OfferAnswer, answer: bool) -> Result<Vec<u8>, String> {
    let sdp = relay_sdp::parse(&oa.sdp).map_err(|e| format!("Failed to parse SDP: {e}"))?;
    inspect(&sdp);
    let c = &oa.codec;
    let formats: Vec<Option<Vec<String>>> = sdp
        .medias()
        .iter()
        .map(|m| {
            let stripped = codecs::strip(m, &c.strip, &c.mask, &c.except);
            if !answer {
                return stripped;
            }
            let offered = codecs::carried(m, stripped.as_deref());
            let pruned = codecs::prune(m, &offered).or(stripped);
            if !oa.flags.single_codec {
                return pruned;
            }
            codecs::single(m, pruned.as_deref()).or(pruned)
        })
        .collect();
    let has = |list: &[String], word: &str| list.iter().any(|v| v.eq_ignore_ascii_case(word));
    let rtcp_mux = if has(&oa.rtcp_mux, "demux") || has(&oa.rtcp_mux, "reject") {
        RtcpMux::Remove
    } else if has(&oa.rtcp_mux, "offer") || has(&oa.rtcp_mux, "require") {
        RtcpMux::Offer
    } else {
        RtcpMux::Keep
    };
    let keep_ice = oa
        .ice
        .as_deref()
        .is_some_and(|v| !v.eq_ignore_ascii_case("remove") && !v.eq_ignore_ascii_case("default"));
    // media-address: advertised instead of the relay's own address.
    let media_address: Option<IpAddr> = oa.media_address.as_deref().and_then(|a| a.parse().ok());
    let relay = match oa.address_family.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("IP6") => {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
        }
        _ => IpAddr::V4(RELAY_V4),
    };
    let plan = RewritePlan {
        origin_address: (has(&oa.replace, "origin") || has(&oa.replace, "origin-full"))
            .then_some(media_address.unwrap_or(relay)),
        session_connection: Some(media_address.unwrap_or(relay)),
        medias: formats
            .into_iter()
            .enumerate()
            .map(|(i, formats)| {
                let port = RELAY_PORT.wrapping_add(2 * i as u16);
                let own = sdp.medias()[i].proto.as_str();
                // transport-protocol between the plain RTP profiles (the
                // handler also sends an answer back in the offerer's).
                let protocol = oa
                    .transport_protocol
                    .as_deref()
                    .filter(|p| !answer && plain_rtp(p) && plain_rtp(own))
                    .map(str::to_ascii_uppercase)
                    .filter(|p| p != own);
                MediaRewrite {
                    address: media_address.unwrap_or(relay),
                    port,
                    rtcp_port: Some(port.wrapping_add(1)),
                    rtcp_mux,
                    formats,
                    ptime: sdp.medias()[i].ptime,
                    // generate-mid numbers the media from 1, as rtpengine.
                    mid: sdp.medias()[i]
                        .mid
                        .clone()
                        .or_else(|| oa.flags.generate_mid.then(|| (i + 1).to_string())),
                    protocol,
                    ice: None,
                    crypto: None,
                    dtls: relay_sdp::DtlsRewrite::Keep,
                }
            })
            .collect(),
        remove_ice: !keep_ice,
        replace_zero_address: has(&oa.replace, "zero-address"),
        // The call's next o= version (replace=SDP-version): any will do.
        origin_version: has(&oa.replace, "SDP-version").then_some(4_294_967_296),
        strip_extmap: oa.flags.strip_extmap,
        original_direction: oa.flags.original_sendrecv,
        session_attributes: if oa.flags.loop_protect {
            vec!["rtpengine:00fuzz0000000000".into()]
        } else {
            Vec::new()
        },
        rtcp_attribute: if oa.flags.no_rtcp_attribute {
            RtcpAttribute::Omit
        } else if oa.flags.full_rtcp_attribute {
            RtcpAttribute::Full
        } else {
            RtcpAttribute::Port
        },
    };
    check_rewrite(&sdp, &plan, true).map_err(|e| format!("Failed to rewrite SDP: {e}"))
}

/// The plain RTP profiles `transport-protocol` switches between.
fn plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// Rewrite options chosen by the fuzzer.
#[derive(Debug, Default, Arbitrary)]
struct Options {
    origin: Option<Addr>,
    session_connection: Option<Addr>,
    remove_ice: bool,
    replace_zero_address: bool,
    rtcp_attribute: RtcpAttr,
    /// `replace=SDP-version`: the `o=` line's new session version.
    origin_version: Option<u64>,
    /// `strip-extmap`.
    strip_extmap: bool,
    /// `original-sendrecv`.
    original_direction: bool,
    /// Session attributes to add (`loop-protect`'s marker).
    session_attributes: Vec<String>,
    /// Per media, cycled; none means relayd's default for every media.
    medias: Vec<MediaOptions>,
    /// Add or drop plan entries: a plan that does not fit the SDP.
    miscount: Miscount,
    strip: Vec<CodecSpec>,
    mask: Vec<CodecSpec>,
    except: Vec<CodecSpec>,
}

#[derive(Debug, Default, Arbitrary)]
enum Miscount {
    #[default]
    Exact,
    OneMore,
    OneLess,
}

#[derive(Debug, Arbitrary)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// An IPv4-mapped IPv6 address (written as IPv4).
    Mapped([u8; 4]),
    Unspecified,
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match *self {
            Addr::V4(b) => IpAddr::V4(b.into()),
            Addr::V6(b) => IpAddr::V6(b.into()),
            Addr::Mapped(b) => IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped()),
            Addr::Unspecified => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct MediaOptions {
    address: Addr,
    port: u16,
    rtcp_port: Option<u16>,
    rtcp_mux: Mux,
    formats: Formats,
    /// The `a=ptime:` to write where the media has none.
    ptime: Option<u32>,
    /// The `a=mid:` to write where the media has none (`generate-mid`).
    mid: Option<String>,
    /// The `m=` line's transport protocol instead of the SDP's.
    protocol: Option<Protocol>,
}

/// A transport protocol for the `m=` line.
#[derive(Debug, Arbitrary)]
enum Protocol {
    RtpAvp,
    RtpAvpf,
    RtpSavp,
    UdpTlsRtpSavpf,
    /// Anything (the output need not parse).
    Raw(String),
}

impl Protocol {
    fn text(&self) -> String {
        match self {
            Protocol::RtpAvp => "RTP/AVP".into(),
            Protocol::RtpAvpf => "RTP/AVPF".into(),
            Protocol::RtpSavp => "RTP/SAVP".into(),
            Protocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF".into(),
            Protocol::Raw(s) => s.clone(),
        }
    }
}

/// `full-rtcp-attribute` / `no-rtcp-attribute`.
#[derive(Debug, Default, Arbitrary)]
enum RtcpAttr {
    #[default]
    Port,
    Full,
    Omit,
}

#[derive(Debug, Arbitrary)]
enum Mux {
    Keep,
    Offer,
    Remove,
}

/// Which payload types the rewritten `m=` line lists.
#[derive(Debug, Arbitrary)]
enum Formats {
    /// The input's.
    Keep,
    /// The input's after `strip`/`mask`/`except`.
    Stripped,
    /// Stripped, then pruned to the codecs carried (an answer's path).
    Pruned,
    /// Stripped, then cut to the first codec and DTMF (`single-codec`).
    Single,
    /// The input's, those whose bit is set (bit i for the i-th type).
    Subset(u64),
    /// Strings of the fuzzer's choosing (not from the SDP: the output
    /// need not parse).
    Raw(Vec<String>),
}

/// A codec as rtpengine's `codec` options name one.
#[derive(Debug, Arbitrary)]
enum CodecSpec {
    All,
    Name(Codec),
    NameRate(Codec, u32),
    NameRateChannels(Codec, u32, u8),
    Raw(String),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Codec {
    Pcmu,
    Pcma,
    G722,
    G729,
    Opus,
    TelephoneEvent,
    H264,
    Vp8,
    T38,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "pcma",
            Codec::G722 => "G722",
            Codec::G729 => "G729",
            Codec::Opus => "opus",
            Codec::TelephoneEvent => "telephone-event",
            Codec::H264 => "H264",
            Codec::Vp8 => "VP8",
            Codec::T38 => "t38",
        }
    }
}

impl CodecSpec {
    fn text(&self) -> String {
        match self {
            CodecSpec::All => "all".into(),
            CodecSpec::Name(c) => c.name().into(),
            CodecSpec::NameRate(c, r) => format!("{}/{r}", c.name()),
            CodecSpec::NameRateChannels(c, r, ch) => format!("{}/{r}/{ch}", c.name()),
            CodecSpec::Raw(s) => s.clone(),
        }
    }
}

fn texts(specs: &[CodecSpec]) -> Vec<String> {
    specs.iter().map(CodecSpec::text).collect()
}

impl Options {
    /// Whether the rewritten SDP must parse: no payload type or
    /// transport protocol came from outside the SDP and the profiles
    /// relayd writes, and no `mid` or session attribute holds a line
    /// break (relayd's come from a parsed `a=mid:` line or are its own).
    fn checkable(&self) -> bool {
        let one_line = |s: &str| !s.contains(['\r', '\n', '\0']);
        self.session_attributes.iter().all(|a| one_line(a))
            && self.medias.iter().all(|m| {
                !matches!(m.formats, Formats::Raw(_))
                    && !matches!(m.protocol, Some(Protocol::Raw(_)))
                    && m.mid.as_deref().is_none_or(one_line)
            })
    }

    fn plan(&self, sdp: &Sdp) -> RewritePlan {
        let (strip, mask, except) = (texts(&self.strip), texts(&self.mask), texts(&self.except));
        let mut medias: Vec<MediaRewrite> = sdp
            .medias()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let port = RELAY_PORT.wrapping_add(2 * i as u16);
                let Some(o) =
                    (!self.medias.is_empty()).then(|| &self.medias[i % self.medias.len()])
                else {
                    // relayd's default: its address, an RTP/RTCP pair.
                    return MediaRewrite {
                        address: IpAddr::V4(RELAY_V4),
                        port,
                        rtcp_port: Some(port.wrapping_add(1)),
                        rtcp_mux: RtcpMux::Keep,
                        formats: codecs::strip(m, &strip, &mask, &except),
                        ptime: None,
                        mid: None,
                        protocol: None,
                        ice: None,
                        crypto: None,
                        dtls: relay_sdp::DtlsRewrite::Keep,
                    };
                };
                let stripped = || codecs::strip(m, &strip, &mask, &except);
                let formats = match &o.formats {
                    Formats::Keep => None,
                    Formats::Stripped => stripped(),
                    Formats::Pruned => {
                        let s = stripped();
                        let offered = codecs::carried(m, s.as_deref());
                        codecs::prune(m, &offered).or(s)
                    }
                    Formats::Single => {
                        let s = stripped();
                        codecs::single(m, s.as_deref()).or(s)
                    }
                    Formats::Subset(bits) => Some(
                        m.formats
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| bits.checked_shr(*i as u32).unwrap_or(0) & 1 == 1)
                            .map(|(_, f)| f.clone())
                            .collect(),
                    ),
                    Formats::Raw(list) => Some(list.clone()),
                };
                MediaRewrite {
                    address: o.address.ip(),
                    port: o.port,
                    rtcp_port: o.rtcp_port,
                    rtcp_mux: match o.rtcp_mux {
                        Mux::Keep => RtcpMux::Keep,
                        Mux::Offer => RtcpMux::Offer,
                        Mux::Remove => RtcpMux::Remove,
                    },
                    formats,
                    ptime: o.ptime,
                    mid: o.mid.clone(),
                    protocol: o.protocol.as_ref().map(Protocol::text),
                    ice: None,
                    crypto: None,
                    dtls: relay_sdp::DtlsRewrite::Keep,
                }
            })
            .collect();
        match self.miscount {
            Miscount::Exact => {}
            Miscount::OneMore => medias.push(MediaRewrite {
                address: IpAddr::V4(RELAY_V4),
                port: RELAY_PORT,
                rtcp_port: None,
                rtcp_mux: RtcpMux::Keep,
                formats: None,
                ptime: None,
                mid: None,
                protocol: None,
                ice: None,
                crypto: None,
                dtls: relay_sdp::DtlsRewrite::Keep,
            }),
            Miscount::OneLess => {
                medias.pop();
            }
        }
        RewritePlan {
            origin_address: self.origin.as_ref().map(Addr::ip),
            session_connection: self.session_connection.as_ref().map(Addr::ip),
            medias,
            remove_ice: self.remove_ice,
            replace_zero_address: self.replace_zero_address,
            origin_version: self.origin_version,
            strip_extmap: self.strip_extmap,
            original_direction: self.original_direction,
            session_attributes: self.session_attributes.clone(),
            rtcp_attribute: match self.rtcp_attribute {
                RtcpAttr::Port => RtcpAttribute::Port,
                RtcpAttr::Full => RtcpAttribute::Full,
                RtcpAttr::Omit => RtcpAttribute::Omit,
            },
        }
    }
}
