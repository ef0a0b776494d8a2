//! The records a call is stored as, and the version of their encoding.
//!
//! The journal encodes them with postcard, which is positional: a record is
//! its fields in declaration order, with no names and nothing to tell a
//! missing field from the next one. So any change to a record type here
//! (a field added, removed, reordered or retyped; a variant added to an
//! enum other than at its end; `Change` itself) must raise
//! [`RECORD_VERSION`] by one and give the journal a decoder of the previous
//! version's types: keep those, frozen, in a module like `records::v1`
//! (with conversions to the current types) and add its arm to the
//! journal's `decoder`. Serde attributes that make a field optional
//! (`default`, `skip_serializing_if`) do not work in such a format and are
//! not used.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub mod v1;
pub mod v2;

/// The version of the record types' encoding that this build writes, in
/// every journal file's header. See the [module docs](self) for when it
/// changes.
pub const RECORD_VERSION: u32 = 3;

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

/// One party: a SIP tag, or a branch not answered yet. Each fork branch is
/// a party of its own with its own ports; the caller's port set for a
/// branch that is not the chosen one is recorded as a further party with
/// the caller's tag and no partner (the set comes back if that branch
/// answers again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonologueRecord {
    /// SIP tag (None until an answer names the branch).
    pub tag: Option<String>,
    /// Other to-tags aliased to this party: only in records written before
    /// fork branches got ports of their own; read, never written now.
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
    /// A subscriber's (NG `subscribe request`): per media, whose media it
    /// receives copies of. Empty for a party in dialogue. New in format 2.
    pub subscribed: Vec<SubscriptionRecord>,
}

/// The media a subscriber's media receives copies of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Position, in the record's `monologues`, of the source party.
    pub source: usize,
    /// The source's media (position in its `medias`).
    pub media: usize,
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
    pub kernel: Option<KernelRecord>,
    /// Counters of packets relayed in userspace.
    pub user: CountsRecord,
    /// Last packet relayed in userspace, wall clock (ms).
    pub last_packet_ms: Option<u64>,
    /// Kernel counters of earlier stints in the kernel.
    pub kernel_retired: CountsRecord,
    /// The kernel counters of its current entry when recorded: counted in
    /// only by a relayd that cannot adopt the entry (whose counters then
    /// start again).
    pub kernel_live: CountsRecord,
    /// RTP figures kept in userspace (the kernel's while it forwards).
    pub rtp: RtpRecord,
    /// The SDES-SRTP transform, when the relay terminates the party's
    /// SRTP on this port. New in format 3. Holds master keys: the journal
    /// is 0600 in a 0700 directory (see [`crate::journal`]).
    pub srtp: Option<SrtpRecord>,
    /// A WebRTC party's ICE-lite agent and DTLS session on this port, so a
    /// browser's call goes on after a restart without new signalling. New
    /// in format 3.
    pub webrtc: Option<WebRtcRecord>,
}

/// What a WebRTC party's port needs after a restart besides its SRTP keys
/// (which [`PortRecord::srtp`] holds, whether SDES or a DTLS handshake
/// made them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebRtcRecord {
    /// The port's ICE-lite agent, when the party was given the relay's ICE.
    pub ice: Option<IceRecord>,
    /// The port's DTLS-SRTP session, when the party keys SRTP by DTLS.
    pub dtls: Option<DtlsRecord>,
}

/// An ICE-lite agent: the relay's credentials, the party's ufrag and the
/// address it nominated.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceRecord {
    /// The relay's ufrag.
    pub ufrag: String,
    /// The relay's password (a secret: it authenticates the party's checks).
    pub pwd: String,
    /// The party's ufrag, when its SDP gave one.
    pub remote_ufrag: Option<String>,
    /// The address the party nominated, if it had.
    pub nominated: Option<SocketAddr>,
}

impl std::fmt::Debug for IceRecord {
    // The password stays out of logs and test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceRecord")
            .field("ufrag", &self.ufrag)
            .field("remote_ufrag", &self.remote_ufrag)
            .field("nominated", &self.nominated)
            .finish_non_exhaustive()
    }
}

/// A DTLS-SRTP session's outcome: who was server, the party's certificate
/// fingerprint (as its SDP gave it, `sha-256 AB:CD:...`), and whether the
/// handshake had finished (its keys are then in [`PortRecord::srtp`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsRecord {
    /// The relay was the DTLS server (`a=setup:passive` toward the party).
    pub server: bool,
    /// The party's `a=fingerprint`.
    pub remote_fingerprint: String,
    /// The handshake had finished.
    pub connected: bool,
}

/// The SDES-SRTP state of one relay port: both keys (as the `a=crypto`
/// lines that carried them) and the rollover counter of each SSRC seen in
/// each direction. Keys a DTLS handshake derived are never recorded (a
/// browser handshakes again, and a restarted relayd has no DTLS session).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrtpRecord {
    /// The party's key: what the relay unprotects what it sends with.
    pub party: SdesKeyRecord,
    /// The relay's key: what the relay protects what it sends the party
    /// with.
    pub relay: SdesKeyRecord,
    /// Per SSRC the party sends (unprotect context).
    pub inbound: Vec<RocRecord>,
    /// Per SSRC the relay sends the party (protect context).
    pub outbound: Vec<RocRecord>,
}

impl std::fmt::Debug for SrtpRecord {
    // Keys stay out of logs and test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpRecord")
            .field("suite", &self.party.suite)
            .field("inbound", &self.inbound)
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

/// One SDES `a=crypto` line, taken apart.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdesKeyRecord {
    /// The tag that paired offer and answer.
    pub tag: u32,
    /// The crypto suite, by its SDES name (`AES_CM_128_HMAC_SHA1_80`, ...).
    pub suite: String,
    /// Master key.
    pub key: Vec<u8>,
    /// Master salt.
    pub salt: Vec<u8>,
    /// Master key lifetime in packets, if the line gave one.
    pub lifetime: Option<u64>,
    /// Session parameters, verbatim.
    pub params: Vec<String>,
}

impl std::fmt::Debug for SdesKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdesKeyRecord")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// Where one SSRC's SRTP packet index stood when recorded: its rollover
/// counter and the highest sequence number under it (the index is
/// `roc << 16 | seq`), so that a restore can tell whether the stream
/// wrapped in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocRecord {
    /// The SSRC.
    pub ssrc: u32,
    /// Its rollover counter.
    pub roc: u32,
    /// The highest sequence number seen under `roc`.
    pub seq: u16,
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
    pub cookie: Vec<u8>,
    /// The whole reply datagram, cookie included.
    pub reply: Vec<u8>,
    /// When it was answered, wall clock (ms).
    pub answered_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(filled: bool) -> PortRecord {
        let addr = |port| SocketAddr::from(([192, 0, 2, 1], port));
        let counts = CountsRecord {
            packets: u64::from(filled) * 3,
            last_seen_ns: u64::MAX,
            ..CountsRecord::default()
        };
        PortRecord {
            local: "[2001:db8::1]:30000".parse().unwrap(),
            learner: LearnerRecord {
                mode: "heuristic".into(),
                strict: filled,
                sdp: filled.then(|| addr(4000)),
                candidate: filled.then(|| (addr(4002), 2)),
                confirmed: filled.then(|| addr(4004)),
            },
            symmetric: filled,
            tracking: match filled {
                true => TrackingRecord::Rtp { clock_rate: 48_000 },
                false => TrackingRecord::Rtcp,
            },
            kernel: filled.then_some(KernelRecord {
                peer: addr(5000),
                source: addr(30_000),
                strict_source: Some(addr(4000)),
                slot: 7,
                to_userspace: false,
                max_pps: 1000,
            }),
            user: counts,
            last_packet_ms: filled.then_some(1_700_000_000_000),
            kernel_retired: counts,
            kernel_live: CountsRecord::default(),
            rtp: RtpRecord {
                ssrc: u32::from(filled) * 0xdead_beef,
                ..RtpRecord::default()
            },
            srtp: filled.then(|| {
                let key = |tag, params: Vec<String>| SdesKeyRecord {
                    tag,
                    suite: "AES_CM_128_HMAC_SHA1_80".into(),
                    key: vec![tag as u8; 16],
                    salt: vec![0xff; 14],
                    lifetime: Some(1 << 31),
                    params,
                };
                SrtpRecord {
                    party: key(1, vec!["WSH=64".into()]),
                    relay: key(2, vec![]),
                    inbound: vec![RocRecord {
                        ssrc: 7,
                        roc: 1,
                        seq: 3,
                    }],
                    outbound: vec![],
                }
            }),
            webrtc: filled.then(|| WebRtcRecord {
                ice: Some(IceRecord {
                    ufrag: "abcd".into(),
                    pwd: "p".repeat(22),
                    remote_ufrag: Some("efgh".into()),
                    nominated: Some("192.0.2.9:5004".parse().unwrap()),
                }),
                dtls: Some(DtlsRecord {
                    server: true,
                    remote_fingerprint: "sha-256 AB:CD".into(),
                    connected: true,
                }),
            }),
        }
    }

    /// Positional encodings have no absent fields: every field is written,
    /// set or not, default or not, and read back as it was.
    #[test]
    fn records_round_trip_through_postcard_set_or_not() {
        for filled in [true, false] {
            let record = CallRecord {
                call_id: "c\u{0}\u{ff}\"".into(),
                created_ms: 1,
                last_signal_ms: 2,
                delete_at_ms: filled.then_some(3),
                monologues: vec![MonologueRecord {
                    tag: filled.then(|| "t".into()),
                    aliases: vec!["a".into(); usize::from(filled)],
                    via_branch: None,
                    interface: "pub".into(),
                    address: "10.0.0.5".parse().unwrap(),
                    peer: filled.then_some(0),
                    created_ms: 4,
                    medias: vec![MediaRecord {
                        index: 1,
                        kind: "audio".into(),
                        protocol: "RTP/AVP".into(),
                        muted: filled,
                        rtp: port(filled),
                        rtcp: port(!filled),
                    }],
                    subscribed: vec![
                        SubscriptionRecord {
                            source: 0,
                            media: 0
                        };
                        usize::from(filled)
                    ],
                }],
            };
            let bytes = postcard::to_stdvec(&record).unwrap();
            assert_eq!(postcard::from_bytes::<CallRecord>(&bytes).unwrap(), record);
        }
        let cookie = CookieRecord {
            // Not UTF-8 (0xff, a lone continuation byte 0x80), plus NUL.
            cookie: vec![0x00, 0xff, 0x80, 0x7f, b'a'],
            reply: (0..=255).collect(),
            answered_ms: 7,
        };
        let bytes = postcard::to_stdvec(&cookie).unwrap();
        // The bytes as they are, each after its length.
        assert_eq!(bytes[..6], [5, 0x00, 0xff, 0x80, 0x7f, b'a']);
        assert_eq!(bytes[6..8], [0x80, 0x02], "varint 256");
        assert!(bytes[8..].starts_with(&cookie.reply));
        assert_eq!(
            postcard::from_bytes::<CookieRecord>(&bytes).unwrap(),
            cookie
        );
    }
}
