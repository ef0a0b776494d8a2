//! The call model, as rtpengine has it: a call holds monologues (one per SIP
//! tag, i.e. per party), a monologue holds medias (one per `m=` line), a
//! media holds the party's RTP and RTCP relay ports.
//!
//! A monologue's ports are where *its party* sends media; they live on the
//! interface facing that party. Packets arriving there leave from the
//! matching port of the monologue it is in dialogue with.

use std::{
    net::SocketAddr,
    sync::{Arc, Weak},
};

use tokio::time::Instant;

use super::port::MediaPort;

/// One media section of one party.
#[derive(Debug)]
pub struct Media {
    /// `m=` line index.
    pub index: usize,
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport protocol (`RTP/AVP`, ...).
    pub protocol: String,
    /// RTP port.
    pub rtp: Arc<MediaPort>,
    /// RTCP port (RTP + 1).
    pub rtcp: Arc<MediaPort>,
    /// The party's SDP marks it sendonly, recvonly or inactive.
    pub muted: bool,
    /// The codecs the party's latest SDP carried to the other party (after
    /// codec stripping): what an answer to it is pruned to. Not kept in the
    /// state store: an answer after a restart is not pruned.
    pub codecs: Vec<relay_sdp::codecs::Carried>,
    /// The latest `a=ptime` the party declared for this media: written into
    /// SDP sent to it that has none, as rtpengine does. Not kept in the
    /// state store either.
    pub ptime: Option<u32>,
    /// The party's latest SDP offered or accepted `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// `rtcp-mux: [demux]` / `[reject]` of the party's offer (what the
    /// relay answers its mux with), or that the party answered (see
    /// [`Media::muxes`] and [`Call::link_sinks`]). Not in the state store.
    pub rtcp_mux_flag: RtcpMuxFlag,
    /// The latest `a=mid` the party declared (written into SDP sent to it
    /// that has none, as rtpengine does). Not in the state store.
    pub mid: Option<String>,
    /// The party's latest `a=ice-ufrag`: a new one is an ICE restart,
    /// answered with new credentials. Not in the state store.
    pub ice_ufrag: Option<String>,
    /// SDES keys and whether the relay terminates the party's SRTP.
    pub sdes: super::sdes::MediaSdes,
    /// The party's latest `a=setup` and `a=fingerprint`. Not in the state store.
    pub dtls: super::dtls::PeerDtls,
}

impl Media {
    /// Both ports.
    pub fn ports(&self) -> [&Arc<MediaPort>; 2] {
        [&self.rtp, &self.rtcp]
    }

    /// Whether the party sends and expects RTCP on its RTP port: it said
    /// `a=rtcp-mux`, and so did the relay's SDP to it (`other` is the
    /// media of the party it talks to).
    pub fn muxes(&self, other: &Media) -> bool {
        self.rtcp_mux
            && match self.rtcp_mux_flag {
                RtcpMuxFlag::Demux | RtcpMuxFlag::Answered => true,
                RtcpMuxFlag::Reject => false,
                RtcpMuxFlag::Default => other.rtcp_mux,
            }
    }

    /// The even port, as the pool knows the pair.
    pub fn rtp_port(&self) -> u16 {
        self.rtp.local.port()
    }
}

/// rtpengine's `rtcp-mux` flags that decide how the relay answers an
/// offerer's `a=rtcp-mux`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtcpMuxFlag {
    /// Mux towards the offerer only when the answerer muxes too.
    #[default]
    Default,
    /// `demux`: accept the offerer's mux, offer none to the answerer, and
    /// split the offerer's RTCP off its RTP port.
    Demux,
    /// `reject`: refuse the offerer's mux (and pass it on to the answerer).
    Reject,
    /// The party answered: its answer can accept mux only where the
    /// relay's offer had it, so it muxes when it says so.
    Answered,
}

/// One party (one SIP tag, or a not yet answered branch).
#[derive(Debug)]
pub struct Monologue {
    /// SIP tag; None until an answer names the branch.
    pub tag: Option<String>,
    /// Other to-tags that answer for this party: only from records of
    /// relayds before fork branches got ports of their own (a new to-tag
    /// now makes a party of its own).
    pub aliases: Vec<String>,
    /// via-branch of the offer that created it, if given.
    pub via_branch: Option<String>,
    /// Index of the logical interface its ports are on.
    pub interface: usize,
    /// Index (in the call) of the monologue it is in dialogue with.
    pub peer: Option<usize>,
    /// Medias by `m=` index.
    pub medias: Vec<Media>,
    /// Wall-clock creation time (seconds since the epoch), for `query`.
    pub created_unix: u64,
    /// `replace: [SDP-version]`: the `o=` version the relay gave the
    /// party's SDP and the digest of that SDP. Not in the state store.
    pub sdp_version: Option<(u64, u64)>,
    /// The party's latest SDP used ICE: by default the relay's SDPs to it
    /// carry the relay's ICE. Not in the state store.
    pub uses_ice: bool,
    /// A subscriber (`subscribe request`): per media, the (monologue,
    /// media index) whose packets it receives copies of. Empty for a
    /// party in dialogue. In the state store (record format 2).
    pub subscribed: Vec<(usize, usize)>,
    /// The party's latest SDP as it sent it: a subscription to this party
    /// alone is offered this SDP, as rtpengine does. Not in the state store.
    pub sdp: Option<Vec<u8>>,
    /// The party came into the call by sending an offer (not by being
    /// offered to or by answering): rtpengine marks every other party
    /// `ICE controlling` in `query`. Not in the state store: a restored
    /// call takes the first party's tag for the offerer.
    pub offerer: bool,
}

impl Monologue {
    /// The `o=` version for the party's SDP of `digest` (that carried
    /// version `sent`), as rtpengine numbers them (checked against 10.5):
    /// the first SDP's own version, or a number of the relay's when that is
    /// 0; kept while the SDP stays the same (its `o=` aside), one more when
    /// it changes.
    pub fn sdp_version(&mut self, digest: u64, sent: u64) -> u64 {
        let version = match self.sdp_version {
            Some((v, d)) if d == digest => v,
            Some((v, _)) => v.wrapping_add(1),
            None if sent != 0 => sent,
            // Any start will do; rtpengine picks one at random as well.
            None => u64::from(unix_now_subsec_us()) + 2,
        };
        self.sdp_version = Some((version, digest));
        version
    }

    /// Whether `tag` names this monologue.
    pub fn answers_to(&self, tag: &str) -> bool {
        self.tag.as_deref() == Some(tag) || self.aliases.iter().any(|a| a == tag)
    }
}

/// A call (one Call-ID).
#[derive(Debug)]
pub struct Call {
    /// The Call-ID.
    pub id: String,
    /// Monologues; indices are stable for the call's life.
    pub monologues: Vec<Monologue>,
    /// Wall-clock creation time (seconds since the epoch).
    pub created_unix: u64,
    /// The microseconds within that second (rtpengine's `created_us`).
    pub created_us: u32,
    /// Creation, for `--final-timeout`.
    pub created: Instant,
    /// Last offer/answer.
    pub last_signal: Instant,
    /// Last offer/answer, wall clock.
    pub last_signal_unix: u64,
    /// When a delayed delete takes effect.
    pub delete_at: Option<Instant>,
    /// Rebuilt from the state store (set up by an earlier relayd).
    pub restored: bool,
}

impl Call {
    /// Index of the monologue that answers to `tag`: of a party with
    /// several port sets (one per fork branch that answered it), the one in
    /// dialogue now.
    pub fn find(&self, tag: &str) -> Option<usize> {
        let mut first = None;
        for (i, m) in self.monologues.iter().enumerate() {
            if m.answers_to(tag) {
                if m.peer.is_some() {
                    return Some(i);
                }
                first.get_or_insert(i);
            }
        }
        first
    }

    /// Whether monologue `i` is a port set its party keeps for a fork
    /// branch it is not in dialogue with now: it has no peer, and another
    /// monologue of the same tag is the one in dialogue.
    pub fn is_standby(&self, i: usize) -> bool {
        let m = &self.monologues[i];
        match (&m.tag, m.peer) {
            (Some(tag), None) => self.find(tag) != Some(i),
            _ => false,
        }
    }

    /// The monologue whose ports packets arriving at monologue `i`'s ports
    /// leave from: its peer, or, when the peer is a port set its party
    /// keeps for `i` while in dialogue with another branch, the set in
    /// dialogue (so a losing branch still reaches its party, as rtpengine
    /// keeps it subscribed). A kept set itself forwards to whom its party
    /// is in dialogue with now.
    pub fn sink_party(&self, i: usize) -> Option<usize> {
        let m = &self.monologues[i];
        if self.is_standby(i) {
            let current = self.find(m.tag.as_deref()?)?;
            return self.monologues[current].peer;
        }
        let p = m.peer?;
        if self.is_standby(p) {
            return self.find(self.monologues[p].tag.as_deref()?);
        }
        Some(p)
    }

    /// Points every port at the matching port of its [`Call::sink_party`],
    /// media by media.
    pub fn link_sinks(&self) {
        for i in 0..self.monologues.len() {
            let Some(q) = self.sink_party(i) else {
                continue;
            };
            let theirs = &self.monologues[q].medias;
            for (mine, theirs) in self.monologues[i].medias.iter().zip(theirs) {
                for (a, b) in [(&mine.rtp, &theirs.rtp), (&mine.rtcp, &theirs.rtcp)] {
                    a.state().sink = Arc::downgrade(b);
                }
                // Demux (RFC 5761 towards one party only): this party's
                // RTCP, arriving on its RTP port, is handled by its RTCP
                // port (which forwards to the other party's RTCP port), and
                // the other party's RTCP goes back to this party's RTP port.
                let demux = mine.muxes(theirs) && !theirs.muxes(mine);
                mine.rtp.state().demux_to = if demux {
                    Arc::downgrade(&mine.rtcp)
                } else {
                    Weak::new()
                };
                if theirs.muxes(mine) && !mine.muxes(theirs) {
                    mine.rtcp.state().sink = Arc::downgrade(&theirs.rtp);
                }
            }
        }
    }

    /// Every port of the call.
    pub fn ports(&self) -> impl Iterator<Item = &Arc<MediaPort>> {
        self.monologues
            .iter()
            .flat_map(|m| m.medias.iter())
            .flat_map(|md| md.ports())
    }
}

/// What the SDP of one party says about one media section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaOffer {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Transport protocol.
    pub protocol: String,
    /// Where the party wants RTP (None: port 0 / no address).
    pub rtp: Option<SocketAddr>,
    /// Where the party wants RTCP.
    pub rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// sendonly, recvonly or inactive: the party holds or mutes this media.
    pub muted: bool,
    /// The protocol carries RTP (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...; not `udptl`).
    pub is_rtp: bool,
    /// Clock rate of the first (preferred) payload type, from `a=rtpmap` or
    /// the RFC 3551 static table.
    pub clock_rate: Option<u32>,
    /// The codecs the rewritten SDP carries to the other party.
    pub codecs: Vec<relay_sdp::codecs::Carried>,
    /// `a=ptime` of the media, if any.
    pub ptime: Option<u32>,
    /// `a=mid` of the media, if any.
    pub mid: Option<String>,
    /// `a=ice-ufrag` of the media (or the session), if any.
    pub ice_ufrag: Option<String>,
    /// The usable `a=crypto` lines of the media (SDES).
    pub crypto: Vec<relay_media::sdes::Crypto>,
    /// Any `a=crypto` line, usable or not (an OSRTP offer or answer keys
    /// SRTP end to end even with a suite relayd lacks).
    pub any_crypto: bool,
    /// `a=setup` and `a=fingerprint` of the media (or the session).
    pub dtls: super::dtls::PeerDtls,
}

impl MediaOffer {
    /// What the media says about SDES-SRTP.
    pub(crate) fn srtp(&self) -> super::sdes::SdpSrtp<'_> {
        super::sdes::SdpSrtp {
            crypto: &self.crypto,
            any_crypto: self.any_crypto || !self.crypto.is_empty(),
            protocol: &self.protocol,
        }
    }
}

/// Microseconds within the current wall-clock second.
pub fn unix_now_subsec_us() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0)
}

/// Seconds since the epoch, for wall-clock fields of replies.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
