//! Record format 2, frozen: what relayds before persisted SDES-SRTP state
//! wrote (format 3 added [`super::PortRecord::srtp`]). Only the types that
//! contain the changed one are copied here; the records below a port
//! (learner, counters, kernel entry, RTP figures) are format 2's and 3's
//! alike, so a change to one of them must copy it here first.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{
    CookieRecord, CountsRecord, KernelRecord, LearnerRecord, RtpRecord, SubscriptionRecord,
    TrackingRecord,
};

/// Format 2's [`super::CallRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub created_ms: u64,
    pub last_signal_ms: u64,
    pub delete_at_ms: Option<u64>,
    pub monologues: Vec<MonologueRecord>,
}

/// Format 2's [`super::MonologueRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonologueRecord {
    pub tag: Option<String>,
    pub aliases: Vec<String>,
    pub via_branch: Option<String>,
    pub interface: String,
    pub address: IpAddr,
    pub peer: Option<usize>,
    pub created_ms: u64,
    pub medias: Vec<MediaRecord>,
    pub subscribed: Vec<SubscriptionRecord>,
}

/// Format 2's [`super::MediaRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub index: usize,
    pub kind: String,
    pub protocol: String,
    pub muted: bool,
    pub rtp: PortRecord,
    pub rtcp: PortRecord,
}

/// Format 2's [`super::PortRecord`]: no SRTP state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortRecord {
    pub local: SocketAddr,
    pub learner: LearnerRecord,
    pub symmetric: bool,
    pub tracking: TrackingRecord,
    pub kernel: Option<KernelRecord>,
    pub user: CountsRecord,
    pub last_packet_ms: Option<u64>,
    pub kernel_retired: CountsRecord,
    pub kernel_live: CountsRecord,
    pub rtp: RtpRecord,
}

/// Format 2's [`crate::Change`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Put(CallRecord),
    Remove(String),
    Cookie(CookieRecord),
}

impl From<PortRecord> for super::PortRecord {
    fn from(p: PortRecord) -> Self {
        super::PortRecord {
            local: p.local,
            learner: p.learner,
            symmetric: p.symmetric,
            tracking: p.tracking,
            kernel: p.kernel,
            user: p.user,
            last_packet_ms: p.last_packet_ms,
            kernel_retired: p.kernel_retired,
            kernel_live: p.kernel_live,
            rtp: p.rtp,
            // Format 2 kept no keys: an SDES call restored from it has
            // plain ports until it is signalled again (as before format 3).
            srtp: None,
            webrtc: None,
        }
    }
}

impl From<MediaRecord> for super::MediaRecord {
    fn from(m: MediaRecord) -> Self {
        super::MediaRecord {
            index: m.index,
            kind: m.kind,
            protocol: m.protocol,
            muted: m.muted,
            rtp: m.rtp.into(),
            rtcp: m.rtcp.into(),
        }
    }
}

impl From<MonologueRecord> for super::MonologueRecord {
    fn from(m: MonologueRecord) -> Self {
        super::MonologueRecord {
            tag: m.tag,
            aliases: m.aliases,
            via_branch: m.via_branch,
            interface: m.interface,
            address: m.address,
            peer: m.peer,
            created_ms: m.created_ms,
            medias: m.medias.into_iter().map(Into::into).collect(),
            subscribed: m.subscribed,
        }
    }
}

impl From<CallRecord> for super::CallRecord {
    fn from(c: CallRecord) -> Self {
        super::CallRecord {
            call_id: c.call_id,
            created_ms: c.created_ms,
            last_signal_ms: c.last_signal_ms,
            delete_at_ms: c.delete_at_ms,
            monologues: c.monologues.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Change> for crate::Change {
    fn from(c: Change) -> Self {
        match c {
            Change::Put(call) => crate::Change::Put(call.into()),
            Change::Remove(id) => crate::Change::Remove(id),
            Change::Cookie(cookie) => crate::Change::Cookie(cookie),
        }
    }
}

/// What a relayd of format 2 would have written for `c`: the current
/// record without its SRTP and WebRTC state. For tests and fuzz seeds that
/// write earlier relayds' journals; relayd itself never writes an old format.
impl CallRecord {
    pub fn from_current(c: &super::CallRecord) -> Self {
        let port = |p: &super::PortRecord| PortRecord {
            local: p.local,
            learner: p.learner.clone(),
            symmetric: p.symmetric,
            tracking: p.tracking,
            kernel: p.kernel,
            user: p.user,
            last_packet_ms: p.last_packet_ms,
            kernel_retired: p.kernel_retired,
            kernel_live: p.kernel_live,
            rtp: p.rtp,
        };
        CallRecord {
            call_id: c.call_id.clone(),
            created_ms: c.created_ms,
            last_signal_ms: c.last_signal_ms,
            delete_at_ms: c.delete_at_ms,
            monologues: c
                .monologues
                .iter()
                .map(|m| MonologueRecord {
                    tag: m.tag.clone(),
                    aliases: m.aliases.clone(),
                    via_branch: m.via_branch.clone(),
                    interface: m.interface.clone(),
                    address: m.address,
                    peer: m.peer,
                    created_ms: m.created_ms,
                    medias: m
                        .medias
                        .iter()
                        .map(|md| MediaRecord {
                            index: md.index,
                            kind: md.kind.clone(),
                            protocol: md.protocol.clone(),
                            muted: md.muted,
                            rtp: port(&md.rtp),
                            rtcp: port(&md.rtcp),
                        })
                        .collect(),
                    subscribed: m.subscribed.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format 2 change reads as the current one, without SRTP state.
    #[test]
    fn format_2_reads_as_the_current_format() {
        let port = |p| PortRecord {
            local: SocketAddr::from(([10, 0, 0, 1], p)),
            learner: LearnerRecord {
                mode: "heuristic".into(),
                strict: false,
                sdp: None,
                candidate: None,
                confirmed: None,
            },
            symmetric: true,
            tracking: TrackingRecord::Rtp { clock_rate: 8000 },
            kernel: None,
            user: CountsRecord {
                packets: 9,
                ..CountsRecord::default()
            },
            last_packet_ms: Some(5),
            kernel_retired: CountsRecord::default(),
            kernel_live: CountsRecord::default(),
            rtp: RtpRecord::default(),
        };
        let old = Change::Put(CallRecord {
            call_id: "c".into(),
            created_ms: 1,
            last_signal_ms: 2,
            delete_at_ms: None,
            monologues: vec![MonologueRecord {
                tag: Some("A".into()),
                aliases: Vec::new(),
                via_branch: None,
                interface: "pub".into(),
                address: "10.0.0.1".parse().unwrap(),
                peer: None,
                created_ms: 3,
                medias: vec![MediaRecord {
                    index: 0,
                    kind: "audio".into(),
                    protocol: "RTP/SAVP".into(),
                    muted: false,
                    rtp: port(30000),
                    rtcp: port(30001),
                }],
                subscribed: vec![SubscriptionRecord {
                    source: 0,
                    media: 0,
                }],
            }],
        });
        let bytes = postcard::to_allocvec(&old).unwrap();
        let read: Change = postcard::from_bytes(&bytes).unwrap();
        let crate::Change::Put(call) = crate::Change::from(read) else {
            panic!("not a put");
        };
        let m = &call.monologues[0];
        assert_eq!(m.subscribed.len(), 1);
        assert_eq!(m.medias[0].rtp.user.packets, 9);
        assert_eq!(m.medias[0].rtcp.local.port(), 30001);
        assert!(m.medias[0].rtp.srtp.is_none());
    }
}
