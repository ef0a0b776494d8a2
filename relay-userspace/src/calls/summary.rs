//! Plain snapshots of a call for `query`, `delete` replies, relayctl and
//! logs: per stream endpoints, whether it is in the kernel, and counters
//! summed over the kernel and userspace.

use std::net::SocketAddr;

use super::{kernel::Kernel, model::Call, port::MediaPort, Interface};

/// Packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Packets.
    pub packets: u64,
    /// Bytes (UDP payload).
    pub bytes: u64,
    /// Errors (not forwardable, dropped).
    pub errors: u64,
}

impl Counts {
    /// Adds `other` in. Counters wrap, like the kernel's, rather than
    /// panicking in a debug build on figures read from maps.
    pub fn add(&mut self, other: Counts) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.errors = self.errors.wrapping_add(other.errors);
    }
}

/// RTP quality of what one party sends to one relay port (RFC 3550
/// figures; see `relay_common::rtp`), from the kernel while the stream is
/// there, else from relayd's forwarder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RtpSummary {
    /// Current SSRC (None until an RTP packet came).
    pub ssrc: Option<u32>,
    /// Times the SSRC changed.
    pub ssrc_changes: u32,
    /// Payload type of the last RTP packet.
    pub payload_type: Option<u8>,
    /// RTP packets.
    pub rtp_packets: u64,
    /// RTCP packets (rtcp-mux on an RTP port, or the RTCP port's).
    pub rtcp_packets: u64,
    /// Neither (STUN, DTLS, garbage).
    pub other_packets: u64,
    /// Extended highest sequence number of the current SSRC.
    pub last_seq: Option<u32>,
    /// Packets lost over the stream's life (expected minus received).
    pub lost: u64,
    /// Interarrival jitter in timestamp units.
    pub jitter_units: u32,
    /// Interarrival jitter in microseconds (None: clock rate unknown).
    pub jitter_us: Option<u64>,
    /// Clock rate used for the jitter (Hz; 0 unknown).
    pub clock_rate: u32,
}

impl RtpSummary {
    /// The summary of `stats` at `clock_rate`.
    pub fn of(stats: &relay_common::RtpStats, clock_rate: u32) -> Self {
        use relay_common::rtp;
        let tracking = stats.state != rtp::STATE_NONE;
        RtpSummary {
            ssrc: tracking.then_some(stats.ssrc),
            ssrc_changes: stats.ssrc_changes,
            payload_type: tracking.then_some(stats.payload_type),
            rtp_packets: stats.rtp_packets,
            rtcp_packets: stats.rtcp_packets,
            other_packets: stats.other_packets,
            last_seq: tracking.then(|| rtp::extended_max_seq(stats)),
            lost: rtp::lost_total(stats),
            jitter_units: rtp::jitter_units(stats),
            jitter_us: rtp::jitter_us(stats, clock_rate),
            clock_rate,
        }
    }
}

/// The RTP figures of `port`; None for ports that carry no RTP.
pub fn rtp_quality(port: &MediaPort, kernel: &Kernel) -> Option<RtpSummary> {
    let media = port.state().media;
    (media != crate::datapath::MediaTracking::None)
        .then(|| RtpSummary::of(&kernel.rtp(port), media.clock_rate()))
}

/// One relay port of one party.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StreamSummary {
    /// Local (bind) address and port.
    pub local: SocketAddr,
    /// Address and port as advertised in SDP.
    pub advertised: SocketAddr,
    /// The party's endpoint from SDP.
    pub sdp_endpoint: Option<SocketAddr>,
    /// The learned (confirmed) endpoint.
    pub confirmed: Option<SocketAddr>,
    /// RTCP port (else RTP).
    pub rtcp: bool,
    /// In the kernel fast path now.
    pub kernelized: bool,
    /// Received from the party and forwarded, in userspace.
    pub user: Counts,
    /// Received from the party and forwarded (or dropped), in the kernel.
    pub kernel: Counts,
    /// Milliseconds since the last packet from the party (kernel or
    /// userspace); None if none came yet.
    pub last_packet_age_ms: Option<u64>,
    /// RTP figures; None for ports that carry no RTP (e.g. T.38 `udptl`).
    pub rtp_quality: Option<RtpSummary>,
    /// The relay's SRTP termination of this port's party, when it has one.
    pub srtp: Option<SrtpSummary>,
    /// The port's DTLS-SRTP endpoint, if it faces a DTLS party.
    pub dtls: Option<super::dtls::DtlsSummary>,
}

/// SRTP packets from a party that the relay dropped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SrtpSummary {
    /// The crypto suite (SDES name).
    pub suite: &'static str,
    /// Failed authentication (wrong key, forged or corrupt).
    pub auth_failures: u64,
    /// Replayed or older than the replay window.
    pub replays: u64,
}

/// One media of one party.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MediaSummary {
    /// `m=` index (1-based, as rtpengine reports it).
    pub index: usize,
    /// Media type.
    pub kind: String,
    /// Protocol.
    pub protocol: String,
    /// rtpengine's media flags: `ICE controlling` (the side the first offer
    /// went to), `initialized` (the party's SDP seen), `recv`/`send` (not
    /// held or muted).
    pub flags: Vec<&'static str>,
    /// RTP then RTCP.
    pub streams: Vec<StreamSummary>,
}

/// One party.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TagSummary {
    /// Tag (empty while a branch is unanswered).
    pub tag: String,
    /// Tag of the party it talks to.
    pub in_dialogue_with: Option<String>,
    /// Creation time (unix seconds).
    pub created: u64,
    /// Interface name.
    pub interface: String,
    /// Medias.
    pub medias: Vec<MediaSummary>,
}

/// A call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CallSummary {
    /// Call-ID.
    pub call_id: String,
    /// Creation time (unix seconds).
    pub created: u64,
    /// Microseconds within that second.
    pub created_us: u32,
    /// Last offer/answer (unix seconds).
    pub last_signal: u64,
    /// Parties.
    pub tags: Vec<TagSummary>,
    /// RTP totals (kernel + userspace).
    pub rtp: Counts,
    /// RTCP totals (kernel + userspace).
    pub rtcp: Counts,
    /// All packets.
    pub totals: Counts,
    /// Restored from the state store by this relayd (an earlier one set it up).
    pub restored: bool,
}

fn stream(
    port: &MediaPort,
    advertised_ip: std::net::IpAddr,
    rtcp: bool,
    kernel: &Kernel,
) -> StreamSummary {
    let (sdp_endpoint, confirmed, kernelized, user_last, suite) = {
        let st = port.state();
        (
            st.learner.sdp(),
            st.learner.confirmed(),
            st.kernel.is_some_and(|k| !k.to_userspace),
            st.last_packet,
            st.srtp.as_ref().map(|s| s.suite()),
        )
    };
    let srtp = suite.map(|suite| SrtpSummary {
        suite,
        auth_failures: port
            .stats
            .srtp_auth_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        replays: port
            .stats
            .srtp_replays
            .load(std::sync::atomic::Ordering::Relaxed),
    });
    let rtp_quality = rtp_quality(port, kernel);
    let (packets, bytes, errors, dropped) = port.user_counts();
    let k = kernel.stats(port);
    let last = user_last.max(super::kernel::kernel_time_to_instant(k.last_seen_ns));
    let last_packet_age_ms = last.map(|t| {
        u64::try_from(
            tokio::time::Instant::now()
                .saturating_duration_since(t)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    });
    StreamSummary {
        local: port.local,
        advertised: SocketAddr::new(advertised_ip, port.local.port()),
        sdp_endpoint,
        confirmed,
        rtcp,
        kernelized,
        user: Counts {
            packets,
            bytes,
            errors: errors + dropped,
        },
        kernel: Counts {
            packets: k.packets,
            bytes: k.bytes,
            errors: k.dropped,
        },
        last_packet_age_ms,
        rtp_quality,
        srtp,
        dtls: port
            .state()
            .dtls
            .as_ref()
            .map(super::dtls::PortDtls::summary),
    }
}

/// Snapshot of `call`.
pub fn summarize(call: &Call, kernel: &Kernel, interfaces: &[Interface]) -> CallSummary {
    let mut s = CallSummary {
        call_id: call.id.clone(),
        created: call.created_unix,
        created_us: call.created_us,
        last_signal: call.last_signal_unix,
        tags: Vec::new(),
        rtp: Counts::default(),
        rtcp: Counts::default(),
        totals: Counts::default(),
        restored: call.restored,
    };
    for (index, m) in call.monologues.iter().enumerate() {
        // A port set kept for a fork branch the party is not in dialogue
        // with counts in the totals, but the party shows with the set in
        // dialogue (as rtpengine shows a stream's current socket).
        let shown = !call.is_standby(index);
        let iface = interfaces.get(m.interface);
        let advertised = iface.map(|i| i.spec.advertised);
        let mut tag = TagSummary {
            tag: m.tag.clone().unwrap_or_default(),
            in_dialogue_with: m
                .peer
                .and_then(|p| call.monologues.get(p))
                .and_then(|p| p.tag.clone()),
            created: m.created_unix,
            interface: iface.map(|i| i.spec.name.clone()).unwrap_or_default(),
            medias: Vec::new(),
        };
        for md in &m.medias {
            let ip = advertised.unwrap_or(md.rtp.local.ip());
            let streams = vec![
                stream(&md.rtp, ip, false, kernel),
                stream(&md.rtcp, ip, true, kernel),
            ];
            for st in &streams {
                let bucket = if st.rtcp { &mut s.rtcp } else { &mut s.rtp };
                bucket.add(st.user);
                bucket.add(st.kernel);
                s.totals.add(st.user);
                s.totals.add(st.kernel);
            }
            // rtpengine 10.5 marks every party but those that came in by
            // offering (the parties offered to, fork branches answering) as
            // ICE controlling, ICE or not.
            let mut flags = Vec::new();
            // A subscriber only receives (rtpengine 10.5: `send` alone), and
            // is `initialized` once its subscribe answer gave an SDP.
            if !m.subscribed.is_empty() {
                if m.medias
                    .iter()
                    .any(|md| md.rtp.state().learner.sdp().is_some())
                {
                    flags.push("initialized");
                }
                flags.push("send");
            } else if !m.offerer {
                flags.push("ICE controlling");
            }
            if m.tag.is_some() && m.subscribed.is_empty() {
                flags.push("initialized");
            }
            if !md.muted && m.subscribed.is_empty() {
                flags.extend(["recv", "send"]);
            }
            tag.medias.push(MediaSummary {
                index: md.index + 1,
                kind: md.kind.clone(),
                protocol: md.protocol.clone(),
                flags,
                streams,
            });
        }
        if shown {
            s.tags.push(tag);
        }
    }
    s
}
