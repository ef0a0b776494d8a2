//! The records a call is stored as. Field names are the format: renaming one
//! makes older state unreadable, so add fields with `#[serde(default)]`
//! instead.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Whether `value` is its type's default: such fields are left out of a
/// record (most counters of a call being set up are zero), and read back
/// as the default.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A call (one Call-ID) and everything needed to rebuild it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The Call-ID.
    pub call_id: String,
    /// Creation, wall clock (ms since the epoch).
    pub created_ms: u64,
    /// Last offer or answer, wall clock.
    pub last_signal_ms: u64,
    /// When a delayed `delete` takes effect, wall clock.
    pub delete_at_ms: Option<u64>,
    /// The parties, in the call's order.
    pub monologues: Vec<MonologueRecord>,
}

impl CallRecord {
    /// Every port of the call.
    pub fn ports(&self) -> impl Iterator<Item = &PortRecord> {
        self.monologues
            .iter()
            .flat_map(|m| &m.medias)
            .flat_map(|md| [&md.rtp, &md.rtcp])
    }
}

/// One party: a SIP tag, or a branch not answered yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonologueRecord {
    /// SIP tag (None until an answer names the branch).
    pub tag: Option<String>,
    /// Other to-tags aliased to this party (forks).
    pub aliases: Vec<String>,
    /// via-branch of the offer that created it.
    pub via_branch: Option<String>,
    /// Name of the logical interface its ports are on.
    pub interface: String,
    /// That interface's local address (a name has one per family).
    pub address: IpAddr,
    /// Position, in this record's `monologues`, of the party it talks to.
    pub peer: Option<usize>,
    /// Creation, wall clock (ms).
    pub created_ms: u64,
    /// Medias by `m=` index.
    pub medias: Vec<MediaRecord>,
}

/// One `m=` section of one party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// `m=` index.
    pub index: usize,
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport protocol.
    pub protocol: String,
    /// sendonly, recvonly or inactive in the party's SDP.
    pub muted: bool,
    /// The RTP port.
    pub rtp: PortRecord,
    /// The RTCP port.
    pub rtcp: PortRecord,
}

/// One relay port: where its party's packets arrive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortRecord {
    /// Relay address and port.
    pub local: SocketAddr,
    /// The party's endpoint: from SDP and as learned.
    pub learner: LearnerRecord,
    /// Send to the learned source (not `asymmetric`).
    pub symmetric: bool,
    /// What it carries, for the RTP figures.
    pub tracking: TrackingRecord,
    /// Its stream as installed in the kernel, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelRecord>,
    /// Counters of packets relayed in userspace.
    #[serde(default, skip_serializing_if = "is_default")]
    pub user: CountsRecord,
    /// Last packet relayed in userspace, wall clock (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_packet_ms: Option<u64>,
    /// Kernel counters of earlier stints in the kernel.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kernel_retired: CountsRecord,
    /// The kernel counters of its current entry when recorded: counted in
    /// only by a relayd that cannot adopt the entry (whose counters then
    /// start again).
    #[serde(default, skip_serializing_if = "is_default")]
    pub kernel_live: CountsRecord,
    /// RTP figures kept in userspace (the kernel's while it forwards).
    #[serde(default, skip_serializing_if = "is_default")]
    pub rtp: RtpRecord,
}

/// Endpoint learning state of a port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnerRecord {
    /// `heuristic`, `delayed`, `immediate` or `off`.
    pub mode: String,
    /// strict-source.
    pub strict: bool,
    /// Where the SDP says the party wants media.
    pub sdp: Option<SocketAddr>,
    /// The best source seen so far, and its rank, while learning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<(SocketAddr, u8)>,
    /// The latched source.
    pub confirmed: Option<SocketAddr>,
}

/// What a port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackingRecord {
    /// Not RTP.
    None,
    /// RTP at this clock rate (0: unknown).
    Rtp {
        /// Hz.
        clock_rate: u32,
    },
    /// RTCP.
    Rtcp,
}

/// A kernel forwarding entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// Where packets go.
    pub peer: SocketAddr,
    /// The relay port they leave from.
    pub source: SocketAddr,
    /// The only sender accepted (strict-source).
    pub strict_source: Option<SocketAddr>,
    /// Its counters slot in the kernel maps.
    pub slot: u32,
    /// A pass-to-userspace entry (learning, behind the DoS shield).
    pub to_userspace: bool,
    /// Packet-rate cap.
    pub max_pps: u32,
}

/// Packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsRecord {
    /// Packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Packets that could not be forwarded (userspace) or were handed to
    /// the stack (kernel).
    pub errors: u64,
    /// Packets dropped (strict-source).
    pub dropped: u64,
    /// Last packet, CLOCK_MONOTONIC_COARSE ns (kernel; survives relayd,
    /// not a reboot).
    #[serde(default)]
    pub last_seen_ns: u64,
}

/// RTP figures of a port (RFC 3550 A.1/A.3/A.8 state), as the kernel and
/// relayd keep them.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpRecord {
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub rtcp_bytes: u64,
    pub other_packets: u64,
    pub received: u64,
    pub last_arrival_ns: u64,
    pub ssrc: u32,
    pub ssrc_changes: u32,
    pub cycles: u32,
    pub base_seq: u32,
    pub bad_seq: u32,
    pub jitter_q4: u32,
    pub last_ts: u32,
    pub lost_before: u32,
    pub max_seq: u16,
    pub payload_type: u8,
    pub state: u8,
    pub clock_rate: u32,
}

/// An answered NG request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CookieRecord {
    /// The request's cookie.
    #[serde(with = "hex_bytes")]
    pub cookie: Vec<u8>,
    /// The whole reply datagram, cookie included.
    #[serde(with = "hex_bytes")]
    pub reply: Vec<u8>,
    /// When it was answered, wall clock (ms).
    pub answered_ms: u64,
}

/// Bytes as a lowercase hex string: serde_json writes a `Vec<u8>` as an
/// array of numbers, about four times the size, and replies are most of
/// what cookies weigh.
mod hex_bytes {
    use serde::{de, Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
            .map(char::from)
            .collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let hex = String::deserialize(d)?;
        if hex.len() % 2 != 0 {
            return Err(de::Error::custom("hex string of odd length"));
        }
        hex.as_bytes()
            .chunks_exact(2)
            .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
            .collect()
    }

    fn nibble<E: de::Error>(digit: u8) -> Result<u8, E> {
        match digit {
            b'0'..=b'9' => Ok(digit - b'0'),
            b'a'..=b'f' => Ok(digit - b'a' + 10),
            b'A'..=b'F' => Ok(digit - b'A' + 10),
            _ => Err(E::custom(format_args!(
                "{:?} is not a hex digit",
                char::from(digit)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CookieRecord;

    #[test]
    fn cookie_bytes_are_lowercase_hex() {
        let record = CookieRecord {
            // Not UTF-8 (0xff, a lone continuation byte 0x80), plus NUL.
            cookie: vec![0x00, 0xff, 0x80, 0x7f, b'a'],
            reply: (0..=255).collect(),
            answered_ms: 7,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""cookie":"00ff807f61""#), "{json}");
        let all: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        assert!(json.contains(&format!(r#""reply":"{all}""#)), "{json}");
        let back: CookieRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn empty_bytes_round_trip() {
        let record = CookieRecord {
            cookie: vec![],
            reply: vec![],
            answered_ms: 0,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""cookie":"""#), "{json}");
        assert_eq!(serde_json::from_str::<CookieRecord>(&json).unwrap(), record);
    }

    #[test]
    fn bad_hex_is_an_error() {
        for bad in [r#""abc""#, r#""zz""#, "[1,2]"] {
            let json = format!(r#"{{"cookie":{bad},"reply":"","answered_ms":0}}"#);
            assert!(
                serde_json::from_str::<CookieRecord>(&json).is_err(),
                "{bad} accepted"
            );
        }
        // Upper case is read (a hand-edited file), though never written.
        let json = r#"{"cookie":"ABcd","reply":"","answered_ms":0}"#;
        let record: CookieRecord = serde_json::from_str(json).unwrap();
        assert_eq!(record.cookie, [0xab, 0xcd]);
    }
}
