//! SDES-SRTP bridging (RFC 4568), as rtpengine does it with
//! `transport-protocol`: a plain RTP party (`RTP/AVP`, `RTP/AVPF`) and an
//! SRTP one (`RTP/SAVP`, `RTP/SAVPF` with `a=crypto`) talk through the relay,
//! which decrypts what the SRTP party sends and encrypts what it receives
//! with keys of its own.
//!
//! Two ways in:
//! - a plain offer with `transport-protocol: RTP/SAVP[F]`: the relay offers
//!   its own `a=crypto` lines to the callee; the one the callee answers (by
//!   tag) keys that side; the answer to the caller has none.
//! - an SRTP offer with `transport-protocol: RTP/AVP[F]`: the callee gets no
//!   `a=crypto`; once it answers, the relay picks the first of the caller's
//!   suites it implements and answers with its own key under the caller's tag.
//!
//! SRTP on both sides without `transport-protocol` passes end to end
//! untouched (and stays in the kernel).
//!
//! OSRTP (RFC 8643, rtpengine's `OSRTP` key) is the same bridging with the
//! plain profile kept on the `m=` line: an `RTP/AVP[F]` section with
//! `a=crypto` is an SRTP offer. `OSRTP=offer` makes the relay's offer to the
//! callee such a section (its own lines, as for `RTP/SAVP`; the callee keys
//! its side only if it answers with one of them); `OSRTP=accept` on the
//! answer makes the relay take a caller's OSRTP offer that the callee
//! declined (a plain answer), terminating SRTP toward the caller. The
//! `-legacy` forms (the section offered twice) are not built.

use std::sync::Arc;

use relay_media::{
    sdes::Crypto,
    srtp::{Direction, SrtpContext, SrtpError},
    SrtpProfile,
};

use super::{model::Media, port::MediaPort};

/// rtpengine 10.5's suites in the order (and so with the tags) it offers
/// them; relayd offers those it implements (all but AES-192 and F8, see
/// `SrtpProfile`) under the same tags, so a peer sees the same tag for the
/// same suite from either relay.
const RTPENGINE_SUITES: [&str; 12] = [
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
];

/// The `SDES-...` flags (and `SDES` list) relayd acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesOptions {
    /// `SDES-off`: offer no `a=crypto`.
    pub off: bool,
    /// `SDES-no-<SUITE>`: suites not to offer or pick.
    pub no: Vec<String>,
}

impl SdesOptions {
    /// From what followed `SDES-` in the flags. `only-<SUITE>` and the other
    /// options are accepted and ignored, as rtpengine 10.5 does with
    /// `only-` (checked against it: its offer is unchanged).
    pub fn parse(items: &[String]) -> Self {
        let mut o = SdesOptions::default();
        for item in items {
            if ["off", "no", "disable"]
                .iter()
                .any(|w| item.eq_ignore_ascii_case(w))
            {
                o.off = true;
            } else if item.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("no-")) {
                o.no.push(item.get(3..).unwrap_or_default().to_owned());
            }
        }
        o
    }

    fn excluded(&self, suite: &str) -> bool {
        self.no.iter().any(|n| n.eq_ignore_ascii_case(suite))
    }
}

/// The `OSRTP` options relayd acts on (`OSRTP-...` flags or the `OSRTP`
/// list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsrtpOptions {
    /// `offer` (`offer-RFC`): a plain offer goes out as an OSRTP one.
    pub offer: bool,
    /// `accept` (`accept-RFC`): a plain answer to a party's OSRTP offer
    /// still gives that party SRTP.
    pub accept: bool,
}

impl OsrtpOptions {
    /// As the request's flags say (relay-ng reads the values and warns
    /// about the legacy forms, which are not built, as 10.5 ignores them).
    pub fn from_flags(flags: &relay_ng::command::Flags) -> Self {
        OsrtpOptions {
            offer: flags.osrtp_offer,
            accept: flags.osrtp_accept,
        }
    }
}

/// `RTP/SAVP` or `RTP/SAVPF`: SRTP keyed by SDES (DTLS-SRTP is `UDP/TLS/...`).
pub(crate) fn is_sdes_srtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

/// `RTP/AVP` or `RTP/AVPF`.
pub(crate) fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The SDES state of one media of one party.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSdes {
    /// The usable `a=crypto` of the party's latest SDP.
    pub party: Vec<Crypto>,
    /// The relay's own keys in the SDP sent to the party.
    pub relay: Vec<Crypto>,
    /// The `a=crypto` values for the next SDP to the party (`None`: the
    /// SDP's own pass through).
    pub lines: Option<Vec<String>>,
    /// The party's SRTP ends at the relay: (the party's key, the relay's).
    pub active: Option<(Crypto, Crypto)>,
    /// The party offered SRTP towards a plain callee: the relay answers it
    /// with a key of its own once the callee answers.
    pub terminate: bool,
    /// The party's offer was OSRTP (a plain profile with `a=crypto`),
    /// passed on as it came: `OSRTP=accept` on a plain answer terminates.
    pub osrtp: bool,
}

/// What one media of an SDP said about SRTP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SdpSrtp<'a> {
    /// The `a=crypto` lines relayd can use.
    pub crypto: &'a [Crypto],
    /// Any `a=crypto` line at all (usable or not).
    pub any_crypto: bool,
    /// The `m=` line's transport protocol.
    pub protocol: &'a str,
}

impl SdpSrtp<'_> {
    /// SRTP keyed by SDES: an SRTP profile, or (RFC 8643) a plain one
    /// carrying `a=crypto`.
    fn is_srtp(&self) -> bool {
        is_sdes_srtp(self.protocol) || (is_plain_rtp(self.protocol) && self.any_crypto)
    }
}

/// An offer from the party owning `sender` (its media `offer`) to the one
/// owning `recipient`, asked to arrive as `asked` (`transport-protocol`).
pub(crate) fn on_offer(
    sender: &mut MediaSdes,
    recipient: &mut MediaSdes,
    offer: SdpSrtp<'_>,
    asked: Option<&str>,
    opts: &SdesOptions,
    osrtp: OsrtpOptions,
) {
    sender.party = offer.crypto.to_vec();
    sender.lines = None;
    sender.terminate = false;
    sender.osrtp = false;
    let from_srtp = offer.is_srtp();
    // An SRTP offer stays SRTP unless a plain profile is asked for; a plain
    // one goes out as SRTP when an SRTP profile is asked for, or as OSRTP.
    let to = asked.unwrap_or(offer.protocol);
    let to_srtp =
        is_sdes_srtp(to) || (asked.is_none() && from_srtp) || (osrtp.offer && is_plain_rtp(to));
    if !from_srtp && to_srtp {
        recipient.relay = if opts.off {
            Vec::new()
        } else {
            relay_offer(&recipient.relay, opts)
        };
        recipient.lines = Some(recipient.relay.iter().map(ToString::to_string).collect());
    } else if from_srtp && !to_srtp {
        sender.terminate = true;
        recipient.relay.clear();
        recipient.lines = Some(Vec::new());
    } else {
        // SRTP end to end (an OSRTP offer too): the endpoints key each
        // other, unless the answer declines an OSRTP offer.
        sender.osrtp = from_srtp && is_plain_rtp(offer.protocol);
        recipient.relay.clear();
        recipient.lines = None;
    }
}

/// The answer from the party owning `answerer` to the offer of the one
/// owning `offerer`; `osrtp` as the answer's flags say.
pub(crate) fn on_answer(
    offerer: &mut MediaSdes,
    answerer: &mut MediaSdes,
    answer: SdpSrtp<'_>,
    osrtp: OsrtpOptions,
) {
    answerer.party = answer.crypto.to_vec();
    answerer.lines = None;
    // A plain answer to an OSRTP offer declines SRTP; `OSRTP=accept` makes
    // the relay take the offer itself, as for an SRTP offer to a plain callee.
    let accepted = offerer.osrtp && osrtp.accept && !answer.any_crypto;
    if !answerer.relay.is_empty() {
        // The callee picked one of the relay's lines by tag.
        answerer.active = answerer.party.iter().find_map(|theirs| {
            answerer
                .relay
                .iter()
                .find(|ours| ours.tag == theirs.tag && ours.profile() == theirs.profile())
                .map(|ours| (theirs.clone(), ours.clone()))
        });
        offerer.active = None;
        offerer.lines = Some(Vec::new());
    } else if offerer.terminate || accepted {
        answerer.active = None;
        // The caller's first usable suite; `SDES-no-` only shapes the
        // relay's own offers (rtpengine 10.5 ignores it here too).
        let pick = offerer.party.first().cloned();
        match pick {
            Some(theirs) => {
                let ours = offerer
                    .relay
                    .iter()
                    .find(|r| r.tag == theirs.tag && r.profile() == theirs.profile())
                    .cloned()
                    .unwrap_or_else(|| Crypto::generate(theirs.tag, theirs.profile()));
                offerer.relay = vec![ours.clone()];
                offerer.lines = Some(vec![ours.to_string()]);
                offerer.active = Some((theirs, ours));
            }
            None => {
                tracing::warn!(
                    "SRTP offer without a crypto suite relayd implements: media stays plain"
                );
                offerer.relay.clear();
                offerer.lines = Some(Vec::new());
                offerer.active = None;
            }
        }
    } else {
        offerer.active = None;
        answerer.active = None;
        offerer.lines = None;
    }
}

/// The relay's `a=crypto` offer: every suite relayd implements that the
/// flags leave, tagged as rtpengine tags it; a key already offered for a
/// suite is kept (a re-offer does not rekey).
fn relay_offer(before: &[Crypto], opts: &SdesOptions) -> Vec<Crypto> {
    RTPENGINE_SUITES
        .iter()
        .filter(|s| !opts.excluded(s))
        .enumerate()
        .filter_map(|(i, name)| {
            let profile = SrtpProfile::from_sdes_name(name)?;
            let tag = u32::try_from(i + 1).ok()?;
            Some(
                before
                    .iter()
                    .find(|c| c.profile() == profile && c.tag == tag)
                    .cloned()
                    .unwrap_or_else(|| Crypto::generate(tag, profile)),
            )
        })
        .collect()
}

/// The SRTP transform of one relay port: unprotect what its party sends,
/// protect what is sent to it.
pub struct PortSrtp {
    keys: (Crypto, Crypto),
    inbound: SrtpContext,
    outbound: SrtpContext,
    /// Packet indices of the SSRCs unprotected, for the state store.
    rx: Indices,
    /// Packet indices of the SSRCs protected.
    tx: Indices,
    /// The keys came from SDES (else from a DTLS handshake). Both are
    /// recorded; a restore needs to know which signalling owns them.
    sdes: bool,
}

impl std::fmt::Debug for PortSrtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSrtp")
            .field("profile", &self.keys.0.profile())
            .finish_non_exhaustive()
    }
}

/// RTCP by its packet type (RFC 5761 §4: 192-223 never clash with RTP).
fn is_rtcp(packet: &[u8]) -> bool {
    packet.get(1).is_some_and(|pt| (192..=223).contains(pt))
}

impl PortSrtp {
    /// The transform of a port whose keys came from a DTLS-SRTP handshake
    /// (RFC 5764): the party protects with `remote`, the relay with `local`.
    pub(crate) fn from_dtls(keys: &relay_media::dtls::SrtpKeys) -> Result<Self, SrtpError> {
        let key = |m: &relay_media::dtls::SrtpKeyMaterial| {
            relay_media::srtp::SrtpKey::new(keys.profile, &m.key, &m.salt)
        };
        let (remote, local) = (key(&keys.remote)?, key(&keys.local)?);
        // Tag 0: these keys were never an `a=crypto` line.
        let as_crypto = |key| Crypto {
            tag: 0,
            key,
            lifetime: None,
            params: Vec::new(),
        };
        // Due for the record at once: the keys exist nowhere else, and a
        // call on hold sends no packet that would make them due.
        let rx = Indices {
            changed: true,
            ..Indices::default()
        };
        Ok(PortSrtp {
            inbound: SrtpContext::new(remote.clone(), Direction::Inbound)?,
            outbound: SrtpContext::new(local.clone(), Direction::Outbound)?,
            keys: (as_crypto(remote), as_crypto(local)),
            rx,
            tx: Indices::default(),
            // Recorded like SDES keys: a browser keeps its DTLS association
            // across a relayd restart and would not handshake again.
            sdes: false,
        })
    }

    /// The transform of an SDES port with `keys` (the party's, the
    /// relay's), every SSRC starting afresh.
    fn from_sdes(keys: &(Crypto, Crypto)) -> Result<Self, SrtpError> {
        Ok(PortSrtp {
            keys: keys.clone(),
            inbound: SrtpContext::new(keys.0.key.clone(), Direction::Inbound)?,
            outbound: SrtpContext::new(keys.1.key.clone(), Direction::Outbound)?,
            rx: Indices::default(),
            tx: Indices::default(),
            sdes: true,
        })
    }

    /// The state store's record of this transform, and from now on the
    /// ROCs count as recorded.
    pub(crate) fn record(&mut self) -> relay_state::SrtpRecord {
        self.rx.recorded();
        self.tx.recorded();
        relay_state::SrtpRecord {
            party: key_record(&self.keys.0),
            relay: key_record(&self.keys.1),
            inbound: self.rx.records(),
            outbound: self.tx.records(),
        }
    }

    /// Whether an SSRC appeared, or one's packet index moved into another
    /// quarter of the sequence space (a ROC change among them), since the
    /// last [`PortSrtp::record`].
    pub(crate) fn unrecorded(&self) -> bool {
        self.rx.changed || self.tx.changed
    }

    /// The transform `record` describes: both keys, and each SSRC's packet
    /// index as recorded. The first packet of such an SSRC sets its ROC
    /// (see [`Indices::before`]); libsrtp's replay windows start empty.
    /// `sdes`: whether SDES made the keys (else a DTLS handshake).
    pub(crate) fn from_record(
        record: &relay_state::SrtpRecord,
        sdes: bool,
    ) -> Result<Self, SrtpError> {
        let keys = keys_of(record)?;
        let mut srtp = PortSrtp::from_sdes(&keys)?;
        srtp.sdes = sdes;
        srtp.rx = Indices::restored(&record.inbound);
        srtp.tx = Indices::restored(&record.outbound);
        Ok(srtp)
    }

    /// The suite the party's side uses.
    pub fn suite(&self) -> &'static str {
        self.keys.0.profile().sdes_name()
    }

    /// Decrypts a packet its party sent (SRTP or SRTCP) in place.
    pub fn unprotect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if is_rtcp(packet) {
            return self.inbound.unprotect_rtcp(packet);
        }
        let Some((ssrc, seq)) = ssrc_seq(packet) else {
            return self.inbound.unprotect_rtp(packet);
        };
        let index = self.rx.before(&mut self.inbound, ssrc, seq)?;
        self.inbound.unprotect_rtp(packet)?;
        self.rx.after(ssrc, seq, index);
        Ok(())
    }

    /// Encrypts a packet for its party in place.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if is_rtcp(packet) {
            return self.outbound.protect_rtcp(packet);
        }
        let Some((ssrc, seq)) = ssrc_seq(packet) else {
            return self.outbound.protect_rtp(packet);
        };
        let index = self.tx.before(&mut self.outbound, ssrc, seq)?;
        self.outbound.protect_rtp(packet)?;
        self.tx.after(ssrc, seq, index);
        Ok(())
    }
}

/// SSRC and sequence number of an RTP packet (None: too short to be one;
/// libsrtp rejects it).
fn ssrc_seq(packet: &[u8]) -> Option<(u32, u16)> {
    let seq = u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]);
    let ssrc = u32::from_be_bytes(packet.get(8..12)?.try_into().ok()?);
    Some((ssrc, seq))
}

/// Most SSRCs per direction of a port whose packet index is tracked (and
/// recorded); further ones are protected all the same, and start at ROC 0
/// after a restart.
const MAX_TRACKED_SSRCS: usize = 16;

/// The SRTP packet index (ROC << 16 | highest sequence number) of each
/// SSRC one context has handled, kept beside libsrtp (which has no way to
/// list its streams) so that the state store can record it.
///
/// A record is due when an SSRC appears or an index enters another
/// quarter of the sequence space ([`RECORD_EVERY`]): a ROC change always
/// is one, and the recorded sequence number never lags more than a
/// quarter (plus a tick's packets) behind, which is what lets a restore
/// tell a wrap since the record from a late packet (see
/// [`Indices::before`]). So a few records per 65 536 packets, never one
/// per packet.
#[derive(Debug, Default)]
struct Indices {
    entries: Vec<Tracked>,
    /// An SSRC appeared or an index moved on since the last record.
    changed: bool,
}

/// Packet indices are recorded again when they enter another stretch of
/// this many (a quarter of the sequence space).
const RECORD_EVERY: u64 = 1 << 14;

#[derive(Debug, Clone, Copy)]
struct Tracked {
    ssrc: u32,
    /// The highest packet index so far.
    index: u64,
    /// `index` when last recorded.
    recorded: u64,
    /// Restored from a record: the next packet sets libsrtp's ROC.
    restored: bool,
}

impl Indices {
    fn restored(records: &[relay_state::RocRecord]) -> Self {
        Indices {
            entries: records
                .iter()
                .take(MAX_TRACKED_SSRCS)
                .map(|r| {
                    let index = u64::from(r.roc) << 16 | u64::from(r.seq);
                    Tracked {
                        ssrc: r.ssrc,
                        index,
                        recorded: index,
                        restored: true,
                    }
                })
                .collect(),
            changed: false,
        }
    }

    fn recorded(&mut self) {
        for t in &mut self.entries {
            t.recorded = t.index;
        }
        self.changed = false;
    }

    fn records(&self) -> Vec<relay_state::RocRecord> {
        self.entries
            .iter()
            .map(|t| relay_state::RocRecord {
                ssrc: t.ssrc,
                roc: (t.index >> 16) as u32,
                seq: t.index as u16,
            })
            .collect()
    }

    /// Before `ctx` handles packet `seq` of `ssrc`: for an SSRC restored
    /// from a record, sets libsrtp's ROC for it, and returns the packet's
    /// index. The estimate is forward-biased: the stream moved on since
    /// the record (up to a quarter of the sequence space before the kill,
    /// plus what was sent while no relayd ran), by any amount up to
    /// 61 440 packets (a sequence number lower than recorded means it
    /// wrapped: ROC + 1); only one at most 4096 behind the recorded one is
    /// taken for a late packet under the recorded ROC. libsrtp itself
    /// takes a set ROC as exact, with no estimate of its own.
    fn before(
        &mut self,
        ctx: &mut SrtpContext,
        ssrc: u32,
        seq: u16,
    ) -> Result<Option<u64>, SrtpError> {
        let Some(t) = self.entries.iter().find(|t| t.ssrc == ssrc) else {
            return Ok(None);
        };
        if !t.restored {
            return Ok(None);
        }
        let ahead = seq.wrapping_sub(t.index as u16);
        let index = if ahead < 0xf000 {
            t.index + u64::from(ahead)
        } else {
            t.index.saturating_sub(u64::from(ahead.wrapping_neg()))
        };
        ctx.set_roc(ssrc, (index >> 16) as u32)?;
        Ok(Some(index))
    }

    /// After packet `seq` of `ssrc` went through (`restored_index`: what
    /// [`Indices::before`] made of it).
    fn after(&mut self, ssrc: u32, seq: u16, restored_index: Option<u64>) {
        if let Some(t) = self.entries.iter_mut().find(|t| t.ssrc == ssrc) {
            let index = restored_index.unwrap_or_else(|| estimate(t.index, seq));
            t.restored = false;
            if index > t.index {
                t.index = index;
                if index / RECORD_EVERY != t.recorded / RECORD_EVERY {
                    self.changed = true;
                }
            }
        } else if self.entries.len() < MAX_TRACKED_SSRCS {
            // libsrtp starts a new stream at ROC 0 too.
            self.entries.push(Tracked {
                ssrc,
                index: u64::from(seq),
                recorded: u64::from(seq),
                restored: false,
            });
            self.changed = true;
        }
    }
}

/// The index of packet `seq` given the highest index so far (RFC 3711
/// §3.3.1 and Appendix A, as libsrtp guesses it).
fn estimate(highest: u64, seq: u16) -> u64 {
    let roc = highest >> 16;
    let s_l = highest as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    v << 16 | u64::from(seq)
}

fn key_record(c: &Crypto) -> relay_state::SdesKeyRecord {
    relay_state::SdesKeyRecord {
        tag: c.tag,
        suite: c.profile().sdes_name().to_owned(),
        key: c.key.key.clone(),
        salt: c.key.salt.clone(),
        lifetime: c.lifetime,
        params: c.params.clone(),
    }
}

fn crypto_of(r: &relay_state::SdesKeyRecord) -> Result<Crypto, SrtpError> {
    let profile = SrtpProfile::from_sdes_name(&r.suite)
        .ok_or_else(|| SrtpError::Lib(format!("unknown crypto suite {:?}", r.suite)))?;
    Ok(Crypto {
        tag: r.tag,
        key: relay_media::srtp::SrtpKey::new(profile, &r.key, &r.salt)?,
        lifetime: r.lifetime,
        params: r.params.clone(),
    })
}

/// The (party's, relay's) keys of a recorded port.
pub(crate) fn keys_of(record: &relay_state::SrtpRecord) -> Result<(Crypto, Crypto), SrtpError> {
    Ok((crypto_of(&record.party)?, crypto_of(&record.relay)?))
}

/// A media's SDES state as a restore rebuilds it from its RTP port's
/// record: bridged with the recorded keys, which a re-offer or re-answer
/// with the same keys keeps (and so the ports' contexts and ROCs).
pub(crate) fn restored_media(record: Option<&relay_state::SrtpRecord>) -> MediaSdes {
    let Some(keys) = record.and_then(|r| keys_of(r).ok()) else {
        return MediaSdes::default();
    };
    MediaSdes {
        party: vec![keys.0.clone()],
        relay: vec![keys.1.clone()],
        lines: None,
        active: Some(keys),
        terminate: false,
        osrtp: false,
    }
}

/// Brings the ports of `media` in line with its SDES state (contexts kept
/// while the keys stay, so ROC and replay windows continue).
pub(crate) fn sync_ports(media: &Media) {
    for port in media.ports() {
        set_port(port, media.sdes.active.as_ref());
    }
}

fn set_port(port: &Arc<MediaPort>, keys: Option<&(Crypto, Crypto)>) {
    let mut st = port.state();
    let Some(keys) = keys else {
        // A DTLS-SRTP port's transform is its handshake's, not SDES's.
        if st.dtls.is_none() {
            st.srtp = None;
        }
        return;
    };
    if st.srtp.as_ref().is_some_and(|s| &s.keys == keys) {
        return;
    }
    st.srtp = match PortSrtp::from_sdes(keys) {
        Ok(s) => Some(Box::new(s)),
        Err(e) => {
            tracing::warn!(local = %port.local, error = %e, "SRTP context not built: port drops media");
            None
        }
    };
}

/// Logs a dropped SRTP packet at most every 10 s per port (a call's
/// ports share its flood of wrong-key packets).
pub(crate) fn warn_dropped(port: &MediaPort, error: &SrtpError) {
    use std::sync::atomic::Ordering;
    let now = super::kernel::monotonic_ns() / 1_000_000_000;
    let last = port.stats.srtp_warned_s.load(Ordering::Relaxed);
    if last != 0 && now < last + 10 {
        return;
    }
    if port
        .stats
        .srtp_warned_s
        .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        let s = &port.stats;
        tracing::warn!(
            local = %port.local,
            %error,
            auth_failures = s.srtp_auth_failures.load(Ordering::Relaxed),
            replays = s.srtp_replays.load(Ordering::Relaxed),
            "SRTP packet dropped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp<'a>(crypto: &'a [Crypto], protocol: &'a str) -> SdpSrtp<'a> {
        SdpSrtp {
            crypto,
            any_crypto: !crypto.is_empty(),
            protocol,
        }
    }

    const NO_OSRTP: OsrtpOptions = OsrtpOptions {
        offer: false,
        accept: false,
    };

    fn opts(items: &[&str]) -> SdesOptions {
        SdesOptions::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn relay_offer_uses_rtpengine_tags_and_flags() {
        let offer = |o: &SdesOptions| -> Vec<(u32, &'static str)> {
            relay_offer(&[], o)
                .iter()
                .map(|c| (c.tag, c.profile().sdes_name()))
                .collect()
        };
        assert_eq!(
            offer(&opts(&[])),
            [
                (1, "AEAD_AES_256_GCM"),
                (2, "AEAD_AES_128_GCM"),
                (3, "AES_256_CM_HMAC_SHA1_80"),
                (4, "AES_256_CM_HMAC_SHA1_32"),
                (7, "AES_CM_128_HMAC_SHA1_80"),
                (8, "AES_CM_128_HMAC_SHA1_32"),
                (11, "NULL_HMAC_SHA1_80"),
                (12, "NULL_HMAC_SHA1_32")
            ]
        );
        // As rtpengine: excluded suites close the gap in the numbering.
        assert_eq!(
            offer(&opts(&[
                "no-AEAD_AES_256_GCM",
                "no-F8_128_HMAC_SHA1_80",
                "only-x"
            ])),
            [
                (1, "AEAD_AES_128_GCM"),
                (2, "AES_256_CM_HMAC_SHA1_80"),
                (3, "AES_256_CM_HMAC_SHA1_32"),
                (6, "AES_CM_128_HMAC_SHA1_80"),
                (7, "AES_CM_128_HMAC_SHA1_32"),
                (9, "NULL_HMAC_SHA1_80"),
                (10, "NULL_HMAC_SHA1_32")
            ]
        );
        assert!(opts(&["off"]).off);
    }

    #[test]
    fn plain_caller_srtp_callee_keys_the_callee_side_by_tag() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        on_offer(
            &mut a,
            &mut b,
            sdp(&[], "RTP/AVP"),
            Some("RTP/SAVP"),
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(b.lines.as_ref().map(Vec::len), Some(8));
        let first = b.relay.clone();
        // A re-offer keeps the keys.
        on_offer(
            &mut a,
            &mut b,
            sdp(&[], "RTP/AVP"),
            Some("RTP/SAVP"),
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(b.relay, first);
        let theirs = Crypto::generate(7, SrtpProfile::AesCm128HmacSha1_80);
        on_answer(
            &mut a,
            &mut b,
            sdp(std::slice::from_ref(&theirs), "RTP/SAVP"),
            NO_OSRTP,
        );
        let (party, relay) = b.active.clone().expect("bridged");
        assert_eq!(party, theirs);
        assert_eq!(
            (relay.tag, relay.profile()),
            (7, SrtpProfile::AesCm128HmacSha1_80)
        );
        assert_eq!(a.lines, Some(vec![]));
        assert!(a.active.is_none());
    }

    #[test]
    fn srtp_caller_plain_callee_gets_the_relays_key_under_its_tag() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        let offered = vec![
            Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_32),
            Crypto::generate(2, SrtpProfile::AesCm128HmacSha1_80),
        ];
        on_offer(
            &mut a,
            &mut b,
            sdp(&offered, "RTP/SAVP"),
            Some("RTP/AVP"),
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(b.lines, Some(vec![]));
        // SDES-no- does not steer the pick (rtpengine 10.5 neither).
        on_answer(&mut a, &mut b, sdp(&[], "RTP/AVP"), NO_OSRTP);
        let (party, relay) = a.active.clone().expect("bridged");
        assert_eq!(party, offered[0]);
        assert_eq!(
            (relay.tag, relay.profile()),
            (1, SrtpProfile::AesCm128HmacSha1_32)
        );
        assert_ne!(relay.key, party.key);
        assert_eq!(a.lines, Some(vec![relay.to_string()]));
    }

    #[test]
    fn srtp_end_to_end_passes_through() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        let offered = vec![Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_80)];
        on_offer(
            &mut a,
            &mut b,
            sdp(&offered, "RTP/SAVP"),
            None,
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(b.lines, None);
        on_answer(&mut a, &mut b, sdp(&offered[..1], "RTP/SAVP"), NO_OSRTP);
        assert!(a.active.is_none() && b.active.is_none());
        assert_eq!(a.lines, None);
    }

    const OFFER: OsrtpOptions = OsrtpOptions {
        offer: true,
        accept: false,
    };
    const ACCEPT: OsrtpOptions = OsrtpOptions {
        offer: false,
        accept: true,
    };

    #[test]
    fn osrtp_offer_keys_the_callee_on_the_plain_profile_if_it_answers_with_crypto() {
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        on_offer(&mut a, &mut b, sdp(&[], "RTP/AVP"), None, &opts(&[]), OFFER);
        assert_eq!(b.lines.as_ref().map(Vec::len), Some(8));
        // Without the flag a plain offer stays plain.
        let (mut c, mut d) = (MediaSdes::default(), MediaSdes::default());
        on_offer(
            &mut c,
            &mut d,
            sdp(&[], "RTP/AVP"),
            None,
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(d.lines, None);
        let theirs = Crypto::generate(7, SrtpProfile::AesCm128HmacSha1_80);
        on_answer(
            &mut a,
            &mut b,
            sdp(std::slice::from_ref(&theirs), "RTP/AVP"),
            NO_OSRTP,
        );
        let (party, relay) = b.active.clone().expect("the callee side is SRTP");
        assert_eq!((party, relay.tag), (theirs, 7));
        assert_eq!(a.lines, Some(vec![]), "the caller gets plain RTP");
        assert!(a.active.is_none());
        // A plain answer declines: plain on both sides.
        on_offer(&mut a, &mut b, sdp(&[], "RTP/AVP"), None, &opts(&[]), OFFER);
        on_answer(&mut a, &mut b, sdp(&[], "RTP/AVP"), ACCEPT);
        assert!(a.active.is_none() && b.active.is_none());
        assert_eq!(a.lines, Some(vec![]));
    }

    #[test]
    fn osrtp_accept_terminates_toward_a_caller_the_callee_declined() {
        let offered = [Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_80)];
        let offer = |a: &mut MediaSdes, b: &mut MediaSdes| {
            on_offer(a, b, sdp(&offered, "RTP/AVP"), None, &opts(&[]), NO_OSRTP);
            // Passed on as it came: the callee may key the caller directly.
            assert_eq!(b.lines, None);
            assert!(a.osrtp);
        };
        // Without accept a plain answer leaves the call plain.
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        offer(&mut a, &mut b);
        on_answer(&mut a, &mut b, sdp(&[], "RTP/AVP"), NO_OSRTP);
        assert!(a.active.is_none());
        assert_eq!(a.lines, None);
        // With it the relay answers the caller with its own key.
        offer(&mut a, &mut b);
        on_answer(&mut a, &mut b, sdp(&[], "RTP/AVP"), ACCEPT);
        let (party, relay) = a.active.clone().expect("the caller side is SRTP");
        assert_eq!(party, offered[0]);
        assert_eq!((relay.tag, relay.profile()), (1, offered[0].profile()));
        assert_ne!(relay.key, party.key);
        assert_eq!(a.lines, Some(vec![relay.to_string()]));
        assert!(b.active.is_none());
        // An answer with crypto keys the caller end to end: nothing to do.
        offer(&mut a, &mut b);
        on_answer(&mut a, &mut b, sdp(&offered, "RTP/AVP"), ACCEPT);
        assert!(a.active.is_none() && b.active.is_none());
        assert_eq!(a.lines, None);
        // An unusable line still keys end to end: not a decline.
        offer(&mut a, &mut b);
        let unusable = SdpSrtp {
            crypto: &[],
            any_crypto: true,
            protocol: "RTP/AVP",
        };
        on_answer(&mut a, &mut b, unusable, ACCEPT);
        assert!(a.active.is_none());
    }

    #[test]
    fn osrtp_offer_to_a_plain_profile_is_bridged_like_savp() {
        let offered = [Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_32)];
        let (mut a, mut b) = (MediaSdes::default(), MediaSdes::default());
        on_offer(
            &mut a,
            &mut b,
            sdp(&offered, "RTP/AVP"),
            Some("RTP/AVP"),
            &opts(&[]),
            NO_OSRTP,
        );
        assert_eq!(b.lines, Some(vec![]), "the callee gets no crypto");
        on_answer(&mut a, &mut b, sdp(&[], "RTP/AVP"), NO_OSRTP);
        assert_eq!(a.active.as_ref().map(|k| k.1.tag), Some(1));
    }

    #[test]
    fn port_transform_round_trips_rtp_and_rtcp() {
        let k1 = Crypto::generate(1, SrtpProfile::AeadAes128Gcm);
        let k2 = Crypto::generate(1, SrtpProfile::AeadAes128Gcm);
        // The port's party encrypts with k1; the relay answers with k2.
        let mut party_tx = SrtpContext::new(k1.key.clone(), Direction::Outbound).unwrap();
        let mut party_rx = SrtpContext::new(k2.key.clone(), Direction::Inbound).unwrap();
        let mut port = PortSrtp::from_sdes(&(k1.clone(), k2.clone())).unwrap();
        let rtp = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3];
        let mut p = rtp.to_vec();
        party_tx.protect_rtp(&mut p).unwrap();
        port.unprotect(&mut p).unwrap();
        assert_eq!(p, rtp);
        port.protect(&mut p).unwrap();
        party_rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, rtp);
        let rtcp = [0x80, 200, 0, 1, 0, 0, 0, 9];
        let mut r = rtcp.to_vec();
        party_tx.protect_rtcp(&mut r).unwrap();
        port.unprotect(&mut r).unwrap();
        assert_eq!(r, rtcp);
    }

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![
            0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef,
        ];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    /// What a port relays across a sequence wrap: the party protects
    /// seqs `from..` (wrapping) with `party_tx`, the port unprotects them;
    /// the port protects the same seqs towards the party.
    struct Run {
        party_tx: SrtpContext,
        party_rx: SrtpContext,
    }

    impl Run {
        fn new(keys: &(Crypto, Crypto)) -> Self {
            Run {
                party_tx: SrtpContext::new(keys.0.key.clone(), Direction::Outbound).unwrap(),
                party_rx: SrtpContext::new(keys.1.key.clone(), Direction::Inbound).unwrap(),
            }
        }

        /// One packet each way through `ports` (all of which must agree
        /// byte for byte); true when every one worked.
        fn step(&mut self, ports: &mut [&mut PortSrtp], seq: u16) -> bool {
            let mut sent = rtp(seq, 0x1234);
            self.party_tx.protect_rtp(&mut sent).unwrap();
            let mut ok = true;
            let mut protected = Vec::new();
            for port in ports.iter_mut() {
                let mut p = sent.clone();
                ok &= port.unprotect(&mut p).is_ok() && p == rtp(seq, 0x1234);
                let mut out = rtp(seq, 0x5678);
                port.protect(&mut out).unwrap();
                protected.push(out);
            }
            ok &= protected.windows(2).all(|w| w[0] == w[1]);
            let mut back = protected[0].clone();
            ok && self.party_rx.unprotect_rtp(&mut back).is_ok() && back == rtp(seq, 0x5678)
        }
    }

    fn keys() -> (Crypto, Crypto) {
        (
            Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_80),
            Crypto::generate(1, SrtpProfile::AesCm128HmacSha1_80),
        )
    }

    #[test]
    fn a_recorded_roc_continues_after_a_wrap() {
        let keys = keys();
        let mut run = Run::new(&keys);
        let mut live = PortSrtp::from_sdes(&keys).unwrap();
        let mut uninterrupted = PortSrtp::from_sdes(&keys).unwrap();
        for seq in (65530..=65535).chain(0..5) {
            assert!(
                run.step(&mut [&mut live, &mut uninterrupted], seq),
                "seq {seq}"
            );
        }
        assert_eq!(live.inbound.roc(0x1234), Some(1));
        assert_eq!(live.outbound.roc(0x5678), Some(1));
        let record = live.record();
        let roc = |r: &[relay_state::RocRecord]| {
            r.iter().map(|r| (r.ssrc, r.roc, r.seq)).collect::<Vec<_>>()
        };
        assert_eq!(roc(&record.inbound), [(0x1234, 1, 4)]);
        assert_eq!(roc(&record.outbound), [(0x5678, 1, 4)]);
        // A fresh transform from the record (relay-state's tests check
        // that it comes back from the journal as it went in).
        let mut restored = PortSrtp::from_record(&record, true).unwrap();
        for seq in 5..20 {
            assert!(
                run.step(&mut [&mut restored, &mut uninterrupted], seq),
                "seq {seq}"
            );
        }
        assert_eq!(restored.inbound.roc(0x1234), Some(1));
        // A context that lost the ROC does not: the restore is what works.
        let mut fresh = PortSrtp::from_sdes(&keys).unwrap();
        assert!(!run.step(&mut [&mut fresh, &mut uninterrupted], 20));
    }

    #[test]
    fn a_wrap_after_the_last_record_is_estimated_from_the_sequence_number() {
        let keys = keys();
        let mut run = Run::new(&keys);
        let mut live = PortSrtp::from_sdes(&keys).unwrap();
        let mut uninterrupted = PortSrtp::from_sdes(&keys).unwrap();
        for seq in 30000..30010 {
            assert!(run.step(&mut [&mut live, &mut uninterrupted], seq));
        }
        // Recorded at ROC 0, seq 30009; relayd goes on, wraps, and dies
        // before the next record.
        let record = live.record();
        for seq in (30010..=65535).step_by(1000).chain([65535, 0, 1, 2]) {
            assert!(run.step(&mut [&mut live, &mut uninterrupted], seq));
        }
        assert!(live.unrecorded(), "the wrap is due for a record");
        let mut restored = PortSrtp::from_record(&record, true).unwrap();
        // The first packet after the restart is seq 3 < 30009: wrapped.
        for seq in 3..10 {
            assert!(
                run.step(&mut [&mut restored, &mut uninterrupted], seq),
                "seq {seq}"
            );
        }
        let record = restored.record();
        assert_eq!(record.inbound[0].roc, 1);
        assert_eq!(record.outbound[0].roc, 1);
    }

    #[test]
    fn indices_are_due_for_a_record_on_a_new_ssrc_or_a_new_quarter_only() {
        let keys = keys();
        let mut run = Run::new(&keys);
        let mut port = PortSrtp::from_sdes(&keys).unwrap();
        assert!(!port.unrecorded());
        assert!(run.step(&mut [&mut port], 65000));
        assert!(port.unrecorded(), "new SSRCs");
        port.record();
        for seq in 65001..65100 {
            assert!(run.step(&mut [&mut port], seq));
        }
        assert!(!port.unrecorded(), "not per packet");
        for seq in (65100..=65535).chain(0..3) {
            assert!(run.step(&mut [&mut port], seq));
        }
        assert!(port.unrecorded(), "wrapped");
        port.record();
        for seq in (3..16384).step_by(1000) {
            assert!(run.step(&mut [&mut port], seq));
        }
        assert!(!port.unrecorded());
        // Without a wrap, but a quarter on: the recorded sequence number
        // must keep up, or a restore could not tell a wrap from a late
        // packet.
        assert!(run.step(&mut [&mut port], 16384));
        assert!(port.unrecorded(), "a quarter on");
        let record = port.record();
        assert_eq!((record.inbound[0].roc, record.inbound[0].seq), (1, 16384));
        assert!(!port.unrecorded());
    }

    #[test]
    fn a_restore_from_a_record_a_quarter_behind_finds_the_wrap() {
        let keys = keys();
        let mut run = Run::new(&keys);
        let mut live = PortSrtp::from_sdes(&keys).unwrap();
        let mut uninterrupted = PortSrtp::from_sdes(&keys).unwrap();
        for seq in (0..=65535).step_by(2000).chain([65535, 0, 10]) {
            assert!(run.step(&mut [&mut live, &mut uninterrupted], seq));
        }
        // ROC 1 from here on; recorded as the tick would, whenever due.
        let mut record = live.record();
        for seq in (20..=65535).step_by(100).chain([65535, 0, 1]) {
            assert!(run.step(&mut [&mut live, &mut uninterrupted], seq));
            if live.unrecorded() && seq != 0 && seq != 1 {
                record = live.record();
            }
        }
        // The kill came after the wrap to ROC 2, before its record.
        assert_eq!(record.inbound[0].roc, 1);
        let mut restored = PortSrtp::from_record(&record, true).unwrap();
        for seq in 2..10 {
            assert!(
                run.step(&mut [&mut restored, &mut uninterrupted], seq),
                "seq {seq}"
            );
        }
        assert_eq!(restored.record().inbound[0].roc, 2);
    }

    #[test]
    fn every_suite_is_recorded_by_name_and_restored() {
        // The state store keeps the suite's SDES name, so records written
        // before a suite existed still read, and each new one comes back.
        for profile in SrtpProfile::ALL {
            let keys = (Crypto::generate(3, profile), Crypto::generate(3, profile));
            let mut run = Run::new(&keys);
            let mut live = PortSrtp::from_sdes(&keys).unwrap();
            assert!(run.step(&mut [&mut live], 1), "{profile:?}");
            let record = live.record();
            assert_eq!(record.party.suite, profile.sdes_name());
            let mut restored = PortSrtp::from_record(&record, true).unwrap();
            assert_eq!(restored.suite(), profile.sdes_name());
            assert!(run.step(&mut [&mut restored], 2), "{profile:?}");
        }
        let mut record = PortSrtp::from_sdes(&keys()).unwrap().record();
        record.party.suite = "AES_192_CM_HMAC_SHA1_80".into();
        assert!(matches!(
            PortSrtp::from_record(&record, true),
            Err(SrtpError::Lib(_))
        ));
    }

    #[test]
    fn dtls_derived_keys_are_recorded_and_come_back_as_dtls_keys() {
        let material = |b| relay_media::dtls::SrtpKeyMaterial {
            key: vec![b; 16],
            salt: vec![b; 14],
        };
        let keys = relay_media::dtls::SrtpKeys {
            profile: SrtpProfile::AesCm128HmacSha1_80,
            local: material(1),
            remote: material(2),
        };
        let mut live = PortSrtp::from_dtls(&keys).unwrap();
        let mut p = rtp(1, 9);
        assert!(live.unrecorded(), "new keys are due for the record");
        live.protect(&mut p).unwrap();
        let record = live.record();
        assert!(!live.unrecorded());
        let mut restored = PortSrtp::from_record(&record, false).unwrap();
        assert!(!restored.sdes, "still the handshake's keys");
        // The next packet comes out the same from both.
        let (mut a, mut b) = (rtp(2, 9), rtp(2, 9));
        live.protect(&mut a).unwrap();
        restored.protect(&mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn estimate_follows_rfc_3711() {
        assert_eq!(estimate(5, 6), 6);
        assert_eq!(estimate(65535, 0), 1 << 16);
        assert_eq!(estimate(1 << 16, 65535), 65535);
        assert_eq!(estimate((1 << 16) | 40000, 100), (2 << 16) | 100);
        assert_eq!(estimate((1 << 16) | 40000, 20000), (1 << 16) | 20000);
        assert_eq!(estimate(100, 65000), 65000);
    }
}
