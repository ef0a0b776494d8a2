//! The read-side view of an SDP body: what the call logic needs to know about the origin,
//! the connection addresses and each media section.

use std::net::IpAddr;

/// An address from a `c=` line (`c=IN IP4 198.51.100.1`, `c=IN IP6 2001:db8::1`) or from
/// the optional address part of `a=rtcp:`.
///
/// A multicast TTL or address count (`/127`, `/2`) is not kept: a unicast relay has no use
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionAddr {
    /// The address; its family matches the `IP4` / `IP6` token of the line.
    pub addr: IpAddr,
}

impl ConnectionAddr {
    /// Whether this is `0.0.0.0` or `::`, the RFC 2543 way to put a stream on hold (or, with
    /// trickle ICE, a placeholder until candidates arrive).
    pub fn is_unspecified(&self) -> bool {
        self.addr.is_unspecified()
    }
}

/// The fields of the `o=` line (`o=username sess-id sess-version nettype addrtype address`).
///
/// All fields are kept as written. The address is not required to be an IP address:
/// phones do put host names there, and nothing routes on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The username, `-` when the endpoint has none.
    pub username: String,
    /// The session id.
    pub session_id: String,
    /// The session version, as written.
    pub session_version: String,
    /// The network type, normally `IN`.
    pub net_type: String,
    /// The address type, normally `IP4` or `IP6`.
    pub addr_type: String,
    /// The unicast address, as written.
    pub address: String,
}

impl Origin {
    /// The address parsed as an IP address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// The session version as a number, if it is one.
    pub fn version_number(&self) -> Option<u64> {
        self.session_version.parse().ok()
    }
}

/// A media direction attribute (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// The attribute name, as it appears after `a=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// Recognises an attribute name.
    pub fn from_attr(name: &[u8]) -> Option<Self> {
        match name {
            b"sendrecv" => Some(Self::SendRecv),
            b"sendonly" => Some(Self::SendOnly),
            b"recvonly" => Some(Self::RecvOnly),
            b"inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// An `a=rtcp:PORT [IN IP4|IP6 ADDRESS]` attribute (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtcpAttr {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address when given, else RTCP goes to the media's connection address.
    pub address: Option<ConnectionAddr>,
}

/// An `a=rtpmap:PT ENCODING/CLOCK[/CHANNELS]` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The RTP payload type (0–127).
    pub payload_type: u8,
    /// The encoding name as written (`PCMU`, `opus`, `telephone-event`…).
    pub encoding: String,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The channel count when given (audio only).
    pub channels: Option<u8>,
}

/// What one `m=` section says, with session-level defaults already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// 0-based position among the `m=` lines.
    pub index: usize,
    /// The media type: `audio`, `video`, `image`, `application`, `text`…
    pub kind: String,
    /// The port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The port count from `port/count`, 1 when absent.
    pub port_count: u16,
    /// The transport protocol: `RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, `udptl`…
    pub proto: String,
    /// The format list (payload types for RTP).
    pub formats: Vec<String>,
    /// The media-level `c=` address, else the session-level one.
    pub connection: Option<ConnectionAddr>,
    /// The first parsable `a=rtcp:` attribute of the section.
    pub rtcp: Option<RtcpAttr>,
    /// Whether the section has `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// Whether ICE is in use: `a=ice-ufrag` or `a=candidate` in the section, or
    /// `a=ice-ufrag` at session level.
    pub has_ice: bool,
    /// The direction attribute of the section, else the session-level one.
    pub direction: Option<Direction>,
    /// The parsable `a=rtpmap:` attributes, in order.
    pub rtpmaps: Vec<RtpMap>,
    /// The first parsable `a=ptime:` of the section, in whole milliseconds.
    pub ptime: Option<u32>,
    /// The value of the section's first `a=mid:`.
    pub mid: Option<String>,
    /// The section's `a=ice-ufrag`, else the session's (its change is an
    /// ICE restart, RFC 8445 §9).
    pub ice_ufrag: Option<String>,
    /// The values of the section's `a=crypto:` lines (SDES, RFC 4568), in order.
    pub crypto: Vec<String>,
    /// The section's `a=setup` value, else the session's (RFC 4145).
    pub setup: Option<String>,
    /// The section's first `a=fingerprint` value, else the session's
    /// (`sha-256 AB:CD:…`, RFC 8122).
    pub fingerprint: Option<String>,
}

impl MediaInfo {
    /// Whether the protocol carries RTP (and so RTCP): `RTP/AVP`, `RTP/SAVPF`,
    /// `UDP/TLS/RTP/SAVPF`…, as opposed to `udptl` (T.38) or `UDP/DTLS/SCTP`.
    pub fn is_rtp(&self) -> bool {
        proto_is_rtp(&self.proto)
    }

    /// Whether the stream is rejected or disabled (port 0).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// The codec of a payload type: its `a=rtpmap:` if present, else the RFC 3551 static
    /// assignment for the well-known static payload types.
    pub fn codec(&self, payload_type: u8) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|m| m.payload_type == payload_type)
            .cloned()
            .or_else(|| RtpMap::static_payload(payload_type))
    }
}

impl RtpMap {
    /// The RFC 3551 static assignment of a payload type, for the common audio and video
    /// static types (SDP may omit `a=rtpmap` for these).
    pub fn static_payload(payload_type: u8) -> Option<Self> {
        let (encoding, clock_rate, channels) = match payload_type {
            0 => ("PCMU", 8000, Some(1)),
            3 => ("GSM", 8000, Some(1)),
            4 => ("G723", 8000, Some(1)),
            5 => ("DVI4", 8000, Some(1)),
            6 => ("DVI4", 16000, Some(1)),
            7 => ("LPC", 8000, Some(1)),
            8 => ("PCMA", 8000, Some(1)),
            9 => ("G722", 8000, Some(1)),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, Some(1)),
            12 => ("QCELP", 8000, Some(1)),
            13 => ("CN", 8000, Some(1)),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, Some(1)),
            16 => ("DVI4", 11025, Some(1)),
            17 => ("DVI4", 22050, Some(1)),
            18 => ("G729", 8000, Some(1)),
            25 => ("CelB", 90000, None),
            26 => ("JPEG", 90000, None),
            28 => ("nv", 90000, None),
            31 => ("H261", 90000, None),
            32 => ("MPV", 90000, None),
            33 => ("MP2T", 90000, None),
            34 => ("H263", 90000, None),
            _ => return None,
        };
        Some(Self {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }
}

/// Whether an `m=` protocol token carries RTP.
pub(crate) fn proto_is_rtp(proto: &str) -> bool {
    proto
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("RTP"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_protocols() {
        for p in ["RTP/AVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "rtp/avp"] {
            assert!(proto_is_rtp(p), "{p}");
        }
        for p in ["udptl", "UDP/DTLS/SCTP", "TCP/MSRP", "UDP/BFCP", ""] {
            assert!(!proto_is_rtp(p), "{p}");
        }
    }

    #[test]
    fn static_payload_types() {
        let pcma = RtpMap::static_payload(8).expect("PCMA is static");
        assert_eq!((pcma.encoding.as_str(), pcma.clock_rate), ("PCMA", 8000));
        assert_eq!(RtpMap::static_payload(9).map(|m| m.clock_rate), Some(8000));
        assert!(RtpMap::static_payload(96).is_none());
    }

    #[test]
    fn direction_names_round_trip() {
        for d in [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ] {
            assert_eq!(Direction::from_attr(d.as_str().as_bytes()), Some(d));
        }
        assert_eq!(Direction::from_attr(b"sendrecv "), None);
    }
}
