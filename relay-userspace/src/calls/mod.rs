//! Calls: the state behind `offer`, `answer`, `delete`, `query` and `list`.
//!
//! [`CallManager`] owns the calls, the port pools of the logical interfaces
//! and the kernel datapath. The NG layer translates requests into
//! [`Signal`]s and replies from the summaries returned here; the
//! forwarder tasks report confirmations through [`forwarder::PortEvent`].

pub mod batch_io;
pub mod deferred;
pub mod dtls;
pub mod forwarder;
pub(crate) mod ice;
pub mod kernel;
pub mod learning;
pub mod media_socket;
pub mod model;
pub mod persist;
pub mod port;
pub mod restore;
pub(crate) mod sdes;
mod select;
pub mod send_batch;
pub mod subscribe;
pub mod summary;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};

pub use self::model::RtcpMuxFlag;
use self::{
    deferred::Deferred,
    forwarder::PortEvent,
    kernel::Kernel,
    learning::{Learner, LearningMode},
    model::{unix_now, unix_now_subsec_us, Call, Media, MediaOffer, Monologue},
    port::MediaPort,
    summary::CallSummary,
};
use crate::{
    datapath::MediaTracking,
    interfaces::{InterfaceAlias, InterfaceSpec},
    ports::{PortError, PortPair, PortPool},
};

/// Call-related settings.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// No media on any stream of a call for this long: the call is deleted.
    pub timeout: Duration,
    /// Default delay between `delete` and the call's removal.
    pub delete_delay: Duration,
    /// Default endpoint learning.
    pub learning: LearningMode,
    /// Most calls at once (`--max-sessions`); None: no limit.
    pub max_sessions: Option<usize>,
    /// Like `timeout`, for calls whose every media is on hold or muted
    /// (sendonly, recvonly, inactive).
    pub silent_timeout: Duration,
    /// Hard cap on a call's life; None: no cap.
    pub final_timeout: Option<Duration>,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            timeout: Duration::from_secs(60),
            delete_delay: Duration::from_secs(30),
            learning: LearningMode::Heuristic,
            max_sessions: None,
            silent_timeout: Duration::from_secs(3600),
            final_timeout: None,
        }
    }
}

/// A logical interface and its ports.
#[derive(Debug)]
pub struct Interface {
    /// Name, addresses.
    pub spec: InterfaceSpec,
    /// Its RTP/RTCP pairs.
    pub pool: PortPool,
}

/// Why a request failed; the Display text is the NG `error-reason`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// No such call.
    #[error("Unknown call-id")]
    UnknownCall,
    /// The from-tag of an answer names no party of the call.
    #[error("Unknown from-tag")]
    UnknownTag,
    /// `address-family` asks for a family the interface has no address of.
    #[error("Interface '{name}' has no {family} address")]
    NoSuchFamily {
        /// Interface name.
        name: String,
        /// The family asked for.
        family: Family,
    },
    /// No port pair left.
    #[error("Ran out of ports")]
    RanOutOfPorts,
    /// Media sockets cannot be opened (e.g. the open-files limit).
    #[error("{0}")]
    Sockets(String),
    /// from-tag and to-tag name the same party.
    #[error("from-tag and to-tag are the same")]
    SameTag,
    /// The answer has more media sections than were offered.
    #[error("Answer has more media sections than the offer")]
    TooManyMedia,
    /// An SDP has more media sections than one call may have.
    #[error("Too many media sections ({count}, at most {MAX_MEDIAS})")]
    MediaLimit {
        /// How many the SDP has.
        count: usize,
    },
    /// A new party (fork) would pass the most one call may have.
    #[error("Too many parties in one call (at most {MAX_PARTIES})")]
    PartyLimit,
    /// The call would hold more port pairs than one call may.
    #[error("One call may hold at most {MAX_PORT_PAIRS} port pairs")]
    PortLimit,
}

/// Most media sections one SDP may have: no phone or browser needs more,
/// and each costs a port pair on both sides.
pub const MAX_MEDIAS: usize = 64;
/// Most parties (tags, unanswered branches) one call may have; forks
/// beyond are refused.
pub const MAX_PARTIES: usize = 128;
/// Most RTP/RTCP port pairs one call may hold, so that no call (or
/// caller) takes more than a sliver of the pool.
pub const MAX_PORT_PAIRS: usize = 512;

/// An IP address family (`IP4`/`IP6` in SDP and in `address-family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    Ip4,
    /// IPv6.
    Ip6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: std::net::IpAddr) -> Self {
        if ip.is_ipv4() {
            Family::Ip4
        } else {
            Family::Ip6
        }
    }

    /// `IP4` / `IP6` (any case); None for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("IP4") {
            Some(Family::Ip4)
        } else if name.eq_ignore_ascii_case("IP6") {
            Some(Family::Ip6)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ip4 => "IP4",
            Family::Ip6 => "IP6",
        })
    }
}

/// An offer or answer, already parsed.
#[derive(Clone, Debug)]
pub struct Signal {
    /// Call-ID.
    pub call_id: String,
    /// Tag of the party whose SDP this is (offer) / of the offerer (answer).
    pub from_tag: String,
    /// The other tag, if known.
    pub to_tag: Option<String>,
    /// via-branch, for forks.
    pub via_branch: Option<String>,
    /// `direction=[from, to]` interface names.
    pub direction: Vec<String>,
    /// Medias of the SDP, in order.
    pub medias: Vec<MediaOffer>,
    /// Endpoint learning for this call.
    pub learning: Option<LearningMode>,
    /// Drop packets from unexpected sources once learned.
    pub strict_source: bool,
    /// Send to the SDP endpoint rather than the learned source.
    pub asymmetric: bool,
    /// Family of the SDP's own media addresses (its `c=` lines), if any.
    pub sdp_family: Option<Family>,
    /// `address-family`: the family the recipient of the rewritten SDP
    /// expects (rtpengine's IPv4/IPv6 bridging); None: the SDP's own.
    pub address_family: Option<Family>,
    /// `replace: [SDP-version]`: a digest of the SDP (its `o=` line left
    /// out) and the session version it carries, so the relay can number
    /// the party's SDP versions itself.
    pub sdp_digest: Option<(u64, u64)>,
    /// `ICE=`: whether the recipient of the rewritten SDP gets the relay's
    /// ICE (and its ports an ICE-lite agent).
    pub ice: IceOption,
    /// The SDP itself used ICE (`a=ice-ufrag` or `a=candidate`).
    pub sdp_ice: bool,
    /// `rtcp-mux: [demux]` / `[reject]` of an offer.
    pub rtcp_mux_flag: RtcpMuxFlag,
    /// `transport-protocol` as asked (SDES bridging when it crosses
    /// between RTP/AVP[F] and RTP/SAVP[F]).
    pub transport_protocol: Option<String>,
    /// The `SDES-...` flags.
    pub sdes: sdes::SdesOptions,
    /// The `OSRTP` options.
    pub osrtp: sdes::OsrtpOptions,
}

/// rtpengine's `ICE=`, as far as it decides who gets the relay's ICE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IceOption {
    /// `force`, `optional`, `force-relay`: always.
    Force,
    /// `remove`: never.
    Remove,
    /// Absent or `default`: when the SDP, or the recipient's own latest
    /// SDP, used ICE (an answer without ICE to an ICE offerer still gives
    /// the offerer ICE, as rtpengine does).
    #[default]
    Default,
}

impl Signal {
    /// Whether the party `recipient` gets the relay's ICE.
    fn gives_ice(&self, recipient: &Monologue) -> bool {
        match self.ice {
            IceOption::Force => true,
            IceOption::Remove => false,
            IceOption::Default => self.sdp_ice || recipient.uses_ice,
        }
    }
}

/// Where the relay wants media of one party: for the SDP sent to the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPlan {
    /// Advertised address.
    pub address: std::net::IpAddr,
    /// RTP port.
    pub rtp_port: u16,
    /// RTCP port.
    pub rtcp_port: u16,
    /// The ptime the party this plan faces declared last.
    pub ptime: Option<u32>,
    /// Whether the party this plan faces offered (or accepted) rtcp-mux.
    pub rtcp_mux: bool,
    /// The `rtcp-mux` flag of that party's offer.
    pub rtcp_mux_flag: RtcpMuxFlag,
    /// That party muxes RTCP with the relay already (both sides' SDPs
    /// agreed on it): a re-offer to it keeps RTCP on the RTP port.
    pub muxing: bool,
    /// The `a=mid` the party this plan faces declared last.
    pub mid: Option<String>,
    /// The transport protocol of the party this plan faces (its last SDP).
    pub protocol: String,
    /// The ICE credentials of the ports facing that party, when they run an
    /// ICE-lite agent (the same for the RTP and the RTCP port, kept across
    /// re-offers so that no re-offer restarts ICE).
    pub ice: Option<relay_media::IceCredentials>,
    /// The `a=crypto` values to write (`None`: the SDP's own).
    pub crypto: Option<Vec<String>>,
    /// The `a=setup` the party this plan faces declared last.
    pub dtls_setup: Option<String>,
}

/// Result of an offer/answer: what to put in the rewritten SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdpPlan {
    /// Advertised address of the interface facing the SDP's recipient.
    pub address: std::net::IpAddr,
    /// One per media, same order as the request.
    pub medias: Vec<MediaPlan>,
    /// The `o=` version to write (`replace: [SDP-version]`).
    pub origin_version: Option<u64>,
}

/// All calls.
#[derive(Debug)]
pub struct CallManager {
    config: CallConfig,
    interfaces: Vec<Interface>,
    /// Aliases and round-robin positions.
    selector: select::Selector,
    calls: HashMap<String, Call>,
    kernel: Kernel,
    events: mpsc::UnboundedSender<PortEvent>,
    /// Calls created since start (restored ones not counted).
    pub total_calls: u64,
    /// Userspace (packets, bytes, dropped) of ports already freed.
    retired_user: (u64, u64, u64),
    /// Forwarders to start and stop once the current request is answered.
    deferred: Deferred,
    /// Calls changed since the last [`CallManager::take_changes`].
    changed: ChangeSet,
    /// The call each open port belongs to (forwarder reports name ports).
    owners: HashMap<SocketAddr, String>,
}

impl CallManager {
    /// A manager over `interfaces` (the first is the default), with
    /// `kernel` for the fast path and `events` for its forwarders' reports.
    pub fn new(
        config: CallConfig,
        interfaces: Vec<Interface>,
        kernel: Kernel,
        events: mpsc::UnboundedSender<PortEvent>,
    ) -> Self {
        CallManager {
            config,
            interfaces,
            selector: select::Selector::default(),
            calls: HashMap::new(),
            kernel,
            events,
            total_calls: 0,
            retired_user: (0, 0, 0),
            deferred: Deferred::default(),
            changed: ChangeSet::default(),
            owners: HashMap::new(),
        }
    }

    /// Keeps track of changed calls for [`CallManager::take_changes`]
    /// (off by default: without a state store, nothing needs them).
    pub fn with_changes(mut self, on: bool) -> Self {
        self.set_changes(on);
        self
    }

    /// [`CallManager::with_changes`] on a running manager: on when a
    /// standby takes over (it has a store from then on), off when an
    /// active steps down (what it drops is not its to record).
    pub fn set_changes(&mut self, on: bool) {
        self.changed.enabled = on;
        if !on {
            self.changed.ids.clear();
        }
    }

    /// What changed since the last call, for the state store: each changed
    /// call as it is now, or its removal. Commit them before answering the
    /// request that made them.
    pub fn take_changes(&mut self) -> Vec<relay_state::Change> {
        if self.changed.ids.is_empty() {
            return Vec::new();
        }
        let clock = persist::WallClock::now();
        let mut ids: Vec<String> = self.changed.ids.drain().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| match self.calls.get(&id) {
                Some(call) => self.put(call, &clock),
                None => relay_state::Change::Remove(id),
            })
            .collect()
    }

    /// Every call as it is now (a checkpoint before a restart, so counters
    /// recorded are the latest).
    pub fn records(&self) -> Vec<relay_state::Change> {
        let clock = persist::WallClock::now();
        self.calls
            .values()
            .map(|call| self.put(call, &clock))
            .collect()
    }

    fn put(&self, call: &Call, clock: &persist::WallClock) -> relay_state::Change {
        relay_state::Change::Put(persist::call_record(
            call,
            &self.interfaces,
            &self.kernel,
            clock,
        ))
    }

    /// Whether an offer for `call_id` would exceed `--max-sessions`: only
    /// new calls count against the limit, re-INVITEs of existing ones never.
    pub fn at_session_limit(&self, call_id: &str) -> bool {
        self.config
            .max_sessions
            .is_some_and(|max| self.calls.len() >= max)
            && !self.calls.contains_key(call_id)
    }

    /// `--max-sessions`.
    pub fn max_sessions(&self) -> Option<usize> {
        self.config.max_sessions
    }

    /// Whether `call_id` is a call of this relay (an offer for it creates
    /// nothing, so no limit applies).
    pub fn has_call(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    /// Number of calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether there are no calls.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Interface aliases (`--interface=ALIAS=NAME`) `direction` may use.
    pub fn with_aliases(mut self, aliases: &[InterfaceAlias]) -> Self {
        self.selector = select::Selector::new(aliases);
        self
    }

    /// What interface name `name` means for a party wanting `family`
    /// (see [`select`]); nothing changes until it is picked.
    fn resolve_interface(
        &self,
        name: Option<&String>,
        family: Option<Family>,
        required: bool,
    ) -> Result<select::Choice, CallError> {
        self.selector
            .resolve(&self.interfaces, name.map(String::as_str), family, required)
    }

    /// `offer`: the SDP of `from_tag`'s party, to be sent to the other.
    pub fn offer(&mut self, sig: &Signal, now: Instant) -> Result<SdpPlan, CallError> {
        if sig.to_tag.as_deref() == Some(sig.from_tag.as_str()) {
            return Err(CallError::SameTag);
        }
        // The offerer's ports face the offerer: its own family. The other
        // side's face the recipient: the family it expects.
        let from_if = self.resolve_interface(sig.direction.first(), sig.sdp_family, false)?;
        let to_if = self.resolve_interface(
            sig.direction.get(1),
            sig.address_family.or(sig.sdp_family),
            sig.address_family.is_some(),
        )?;
        let is_new_call = !self.calls.contains_key(&sig.call_id);
        let mut call = self.calls.remove(&sig.call_id).unwrap_or_else(|| Call {
            id: sig.call_id.clone(),
            monologues: Vec::new(),
            created_unix: unix_now(),
            created_us: unix_now_subsec_us(),
            created: now,
            last_signal: now,
            last_signal_unix: unix_now(),
            delete_at: None,
            restored: false,
        });
        let snapshot = Snapshot::of(&call);
        let result = self.offer_in(&mut call, sig, from_if, to_if, now);
        if result.is_err() {
            snapshot.restore(&mut call);
        }
        if result.is_ok() || !is_new_call {
            if result.is_ok() && is_new_call {
                self.total_calls += 1;
            }
            self.changed.mark(&call.id);
            self.calls.insert(call.id.clone(), call);
        } else {
            self.free_call(call);
        }
        result
    }

    fn offer_in(
        &mut self,
        call: &mut Call,
        sig: &Signal,
        from_if: select::Choice,
        to_if: select::Choice,
        now: Instant,
    ) -> Result<SdpPlan, CallError> {
        check_media_count(sig)?;
        let from_known = call.find(&sig.from_tag);
        let to_known = match (
            &sig.to_tag,
            from_known.and_then(|f| call.monologues[f].peer),
            &sig.via_branch,
        ) {
            (Some(tag), _, _) => call.find(tag),
            (None, Some(peer), Some(branch)) => branch_party(call, peer, branch),
            (None, peer, _) => peer,
        };
        // A party keeps the interface it has. A new one's is picked now,
        // the recipient's before the offerer's as rtpengine does (which
        // decides the turns of a round-robin group).
        let to_if = to_known
            .is_none()
            .then(|| self.selector.pick(&self.interfaces, to_if));
        let from = match (from_known, from_if) {
            (Some(i), _) => i,
            (None, choice) => {
                let iface = self.selector.pick(&self.interfaces, choice);
                let i = push_monologue(call, Some(sig.from_tag.clone()), None, iface);
                call.monologues[i].offerer = true;
                i
            }
        };
        let to = match (to_known, to_if, &sig.to_tag) {
            (Some(i), _, _) => i,
            (None, Some(iface), Some(tag)) => push_monologue(call, Some(tag.clone()), None, iface),
            (None, iface, _) => push_monologue(
                call,
                None,
                sig.via_branch.clone(),
                iface.unwrap_or_default(),
            ),
        };
        // An offerer already answered by another branch keeps those ports
        // for it and gets a set of its own for this one.
        let (from, _) = enter_dialogue(call, from, to);
        if party_count(call) > MAX_PARTIES {
            return Err(CallError::PartyLimit);
        }
        call.monologues[from].peer = Some(to);
        call.monologues[to].peer = Some(from);
        self.ensure_medias(call, &[from, to], sig.medias.len(), sig, now)?;
        self.apply_sdp(call, from, sig, now);
        for media in &mut call.monologues[from].medias {
            media.rtcp_mux_flag = sig.rtcp_mux_flag;
        }
        sdes_offer(call, from, to, sig);
        call.monologues[from].uses_ice = sig.sdp_ice;
        call.link_sinks();
        self.sync_all(call);
        call.last_signal = now;
        call.last_signal_unix = unix_now();
        call.delete_at = None;
        let ice = sig.gives_ice(&call.monologues[to]);
        let mut plan = self.plan_for(call, to, sig.medias.len(), ice);
        plan.origin_version = sig
            .sdp_digest
            .map(|(digest, sent)| call.monologues[from].sdp_version(digest, sent));
        Ok(plan)
    }

    /// `answer`: the SDP of the party answering `from_tag`'s offer.
    pub fn answer(&mut self, sig: &Signal, now: Instant) -> Result<SdpPlan, CallError> {
        let mut call = self
            .calls
            .remove(&sig.call_id)
            .ok_or(CallError::UnknownCall)?;
        let snapshot = Snapshot::of(&call);
        let result = self.answer_in(&mut call, sig, now);
        if result.is_err() {
            snapshot.restore(&mut call);
        }
        self.changed.mark(&call.id);
        self.calls.insert(call.id.clone(), call);
        result
    }

    fn answer_in(
        &mut self,
        call: &mut Call,
        sig: &Signal,
        now: Instant,
    ) -> Result<SdpPlan, CallError> {
        check_media_count(sig)?;
        let offerer = call.find(&sig.from_tag).ok_or(CallError::UnknownTag)?;
        if sig.medias.len() > call.monologues[offerer].medias.len() {
            return Err(CallError::TooManyMedia);
        }
        let to_tag = sig.to_tag.clone().unwrap_or_default();
        let unanswered = |call: &Call, i: usize| call.monologues[i].tag.is_none();
        let answerer = match call.find(&to_tag) {
            Some(i) => i,
            None => {
                // The branch the answer names by via-branch, else the one
                // the offer went to, while unanswered; else a new party:
                // another fork answered (rtpengine gives it a monologue and
                // ports of its own).
                let by_branch = sig.via_branch.as_deref().and_then(|branch| {
                    call.monologues
                        .iter()
                        .position(|m| m.tag.is_none() && m.via_branch.as_deref() == Some(branch))
                });
                let peer = call.monologues[offerer].peer;
                match by_branch.or(peer.filter(|&p| unanswered(call, p))) {
                    Some(i) => {
                        call.monologues[i].tag = Some(to_tag);
                        i
                    }
                    None => {
                        let iface = match peer {
                            Some(p) => call.monologues[p].interface,
                            None => {
                                // The offerer's interface name, in the answer's family.
                                let name = self.interfaces[call.monologues[offerer].interface]
                                    .spec
                                    .name
                                    .clone();
                                let choice =
                                    select::exact(&self.interfaces, &name, sig.sdp_family, false)?;
                                self.selector.pick(&self.interfaces, choice)
                            }
                        };
                        push_monologue(call, Some(to_tag), None, iface)
                    }
                }
            }
        };
        // The offerer's ports were chosen at the offer, in the family of its
        // SDP; an answer asking for another cannot move them.
        let offerer_family = Family::of(
            self.interfaces[call.monologues[offerer].interface]
                .spec
                .address,
        );
        if let Some(asked) = sig.address_family.filter(|f| *f != offerer_family) {
            tracing::warn!(call_id = %sig.call_id, %asked, kept = %offerer_family,
                "address-family in an answer differs from the offerer's ports; kept");
        }
        // An offerer answered before by another branch keeps those ports for
        // it and gets a set of its own for this one (or back the set it had
        // for this one).
        let (offerer, cloned_from) = enter_dialogue(call, offerer, answerer);
        if party_count(call) > MAX_PARTIES {
            return Err(CallError::PartyLimit);
        }
        call.monologues[offerer].peer = Some(answerer);
        call.monologues[answerer].peer = Some(offerer);
        self.ensure_medias(call, &[offerer, answerer], sig.medias.len(), sig, now)?;
        if let Some(original) = cloned_from {
            inherit_media_state(call, original, offerer, now);
        }
        self.apply_sdp(call, answerer, sig, now);
        for media in &mut call.monologues[answerer].medias {
            media.rtcp_mux_flag = RtcpMuxFlag::Answered;
        }
        sdes_answer(call, offerer, answerer, sig);
        call.monologues[answerer].uses_ice = sig.sdp_ice;
        call.link_sinks();
        self.sync_all(call);
        call.last_signal = now;
        call.last_signal_unix = unix_now();
        call.delete_at = None;
        let ice = sig.gives_ice(&call.monologues[offerer]);
        let mut plan = self.plan_for(call, offerer, sig.medias.len(), ice);
        plan.origin_version = sig
            .sdp_digest
            .map(|(digest, sent)| call.monologues[answerer].sdp_version(digest, sent));
        Ok(plan)
    }

    /// Allocates ports so every monologue in `who` has `count` medias. All
    /// pairs are taken before any is used, so running out leaves nothing
    /// half-built.
    fn ensure_medias(
        &mut self,
        call: &mut Call,
        who: &[usize],
        count: usize,
        sig: &Signal,
        now: Instant,
    ) -> Result<(), CallError> {
        let held: usize = call.monologues.iter().map(|m| m.medias.len()).sum();
        let wanted: usize = who
            .iter()
            .map(|&m| count.saturating_sub(call.monologues[m].medias.len()))
            .sum();
        if held + wanted > MAX_PORT_PAIRS {
            return Err(CallError::PortLimit);
        }
        let mut taken: Vec<(usize, usize, PortPair)> = Vec::new();
        for &m in who {
            let iface = call.monologues[m].interface;
            for _ in call.monologues[m].medias.len()..count {
                match self.interfaces[iface].pool.allocate() {
                    Ok(pair) => taken.push((m, iface, pair)),
                    Err(e) => {
                        for (_, i, pair) in taken {
                            self.interfaces[i].pool.release(pair.rtp_port);
                        }
                        return Err(match e {
                            PortError::Sockets(_) => CallError::Sockets(e.to_string()),
                            PortError::RanOutOfPorts
                            | PortError::EmptyRange { .. }
                            | PortError::NotInRange(_)
                            | PortError::InUse(_) => CallError::RanOutOfPorts,
                        });
                    }
                }
            }
        }
        let learning = sig.learning.unwrap_or(self.config.learning);
        let mut taken = taken.into_iter();
        while let Some((m, iface, pair)) = taken.next() {
            let index = call.monologues[m].medias.len();
            let offer = sig.medias.get(index);
            match self.open_media(index, offer, pair, learning, sig.strict_source, now) {
                Ok(media) => {
                    for port in media.ports() {
                        self.owners.insert(port.local, call.id.clone());
                    }
                    call.monologues[m].medias.push(media);
                }
                Err((port, e)) => {
                    tracing::error!(error = %e, "cannot use a bound socket");
                    self.interfaces[iface].pool.release(port);
                    for (_, i, rest) in taken {
                        self.interfaces[i].pool.release(rest.rtp_port);
                    }
                    return Err(CallError::RanOutOfPorts);
                }
            }
        }
        // Pair each media's ports with the peer's.
        if let [a, b] = *who {
            for i in 0..count {
                let (ma, mb) = (&call.monologues[a].medias[i], &call.monologues[b].medias[i]);
                MediaPort::pair(&ma.rtp, &mb.rtp);
                MediaPort::pair(&ma.rtcp, &mb.rtcp);
            }
        }
        Ok(())
    }

    fn open_media(
        &mut self,
        index: usize,
        offer: Option<&MediaOffer>,
        pair: PortPair,
        learning: LearningMode,
        strict: bool,
        now: Instant,
    ) -> Result<Media, (u16, std::io::Error)> {
        let port = pair.rtp_port;
        let (rtp_local, rtcp_local) = (pair.rtp_local(), pair.rtcp_local());
        let rtp = MediaPort::new(
            pair.rtp,
            rtp_local,
            Learner::new(learning, strict, None, now),
        )
        .map_err(|e| (port, e))?;
        let rtcp = MediaPort::new(
            pair.rtcp,
            rtcp_local,
            Learner::new(learning, strict, None, now),
        )
        .map_err(|e| (port, e))?;
        self.deferred.start(&rtp, &self.events);
        self.deferred.start(&rtcp, &self.events);
        Ok(Media {
            index,
            kind: offer.map(|o| o.kind.clone()).unwrap_or_default(),
            protocol: offer.map(|o| o.protocol.clone()).unwrap_or_default(),
            rtp,
            rtcp,
            muted: offer.is_some_and(|o| o.muted),
            codecs: offer.map(|o| o.codecs.clone()).unwrap_or_default(),
            // Both parties' media open with the sender's SDP; only the
            // sender's own (apply_sdp) says what ptime it declared.
            ptime: None,
            rtcp_mux: false,
            rtcp_mux_flag: RtcpMuxFlag::Default,
            mid: None,
            ice_ufrag: None,
            sdes: Default::default(),
            dtls: Default::default(),
        })
    }

    /// Records what `party`'s SDP says about where it wants media.
    fn apply_sdp(&mut self, call: &mut Call, party: usize, sig: &Signal, now: Instant) {
        for (media, offer) in call.monologues[party].medias.iter_mut().zip(&sig.medias) {
            media.kind = offer.kind.clone();
            media.protocol = offer.protocol.clone();
            media.muted = offer.muted;
            media.codecs = offer.codecs.clone();
            // Kept when a later SDP of the party leaves it out.
            media.ptime = offer.ptime.or(media.ptime);
            media.rtcp_mux = offer.rtcp_mux;
            media.mid = offer.mid.clone().or(media.mid.take());
            media.ice_ufrag = offer.ice_ufrag.clone();
            media.dtls = offer.dtls.clone();
            let rtcp = if offer.rtcp_mux {
                offer.rtp
            } else {
                offer.rtcp
            };
            let (rtp_media, rtcp_media) = media_tracking(offer);
            for (port, sdp, tracking) in [
                (&media.rtp, offer.rtp, rtp_media),
                (&media.rtcp, rtcp, rtcp_media),
            ] {
                let sink = {
                    let mut st = port.state();
                    st.symmetric = !sig.asymmetric;
                    // A changed endpoint restarts learning; sync_kernel then
                    // takes both directions out of the kernel.
                    st.learner.resignal(sdp, sig.strict_source, now);
                    st.media = tracking;
                    st.sink.upgrade()
                };
                // Both directions use the codecs of the latest SDP (the
                // answer's, once there is one).
                if let Some(sink) = sink {
                    sink.state().media = tracking;
                }
            }
        }
    }

    /// Brings the kernel entries of every port of `parties` (both
    /// directions: each port and its sink) in line with their state.
    fn sync_kernel(&mut self, call: &Call, parties: &[usize]) {
        for &p in parties {
            for media in &call.monologues[p].medias {
                for port in media.ports() {
                    self.kernel.sync(port);
                }
            }
        }
    }

    /// [`CallManager::sync_kernel`] for every party of `call` (a fork
    /// re-points the ports of other branches as well).
    fn sync_all(&mut self, call: &Call) {
        let all: Vec<usize> = (0..call.monologues.len()).collect();
        self.sync_kernel(call, &all);
    }

    /// The codecs each media of party `tag` of call `call_id` last carried
    /// to the other party (empty when unknown).
    pub fn carried_codecs(&self, call_id: &str, tag: &str) -> Vec<Vec<relay_sdp::codecs::Carried>> {
        self.calls
            .get(call_id)
            .and_then(|call| call.find(tag).map(|p| &call.monologues[p]))
            .map(|m| m.medias.iter().map(|md| md.codecs.clone()).collect())
            .unwrap_or_default()
    }

    /// The codecs of the media `tag`'s peer last sent (its answer), for
    /// `reuse-codecs`; empty when there is no such peer.
    pub fn peer_codecs(&self, call_id: &str, tag: &str) -> Vec<Vec<relay_sdp::codecs::Carried>> {
        self.calls
            .get(call_id)
            .and_then(|call| {
                let peer = call.monologues[call.find(tag)?].peer?;
                Some(&call.monologues[peer])
            })
            .map(|m| m.medias.iter().map(|md| md.codecs.clone()).collect())
            .unwrap_or_default()
    }

    /// The relay side of `party`: where the other party must send.
    /// What the SDP going to `party` says about its ports; with `ice`, its
    /// ports get (or keep) an ICE-lite agent, without it they lose theirs.
    fn plan_for(&self, call: &Call, party: usize, count: usize, ice: bool) -> SdpPlan {
        let m = &call.monologues[party];
        let address = self.interfaces[m.interface].spec.advertised;
        let others = call
            .sink_party(party)
            .map(|p| call.monologues[p].medias.as_slice())
            .unwrap_or_default();
        let medias = m
            .medias
            .iter()
            .take(count)
            .enumerate()
            .map(|(i, md)| MediaPlan {
                muxing: others.get(i).is_some_and(|other| md.muxes(other)),
                ice: ice::set_agent(md, ice),
                address,
                rtp_port: md.rtp.local.port(),
                rtcp_port: md.rtcp.local.port(),
                ptime: md.ptime,
                rtcp_mux: md.rtcp_mux,
                // What the party's own offer asked of its answer; having
                // answered asks nothing.
                rtcp_mux_flag: match md.rtcp_mux_flag {
                    RtcpMuxFlag::Answered => RtcpMuxFlag::Default,
                    flag => flag,
                },
                mid: md.mid.clone(),
                protocol: md.protocol.clone(),
                crypto: md.sdes.lines.clone(),
                dtls_setup: md.dtls.setup.clone(),
            })
            .collect();
        SdpPlan {
            address,
            medias,
            origin_version: None,
        }
    }

    /// A forwarder's report.
    pub fn on_event(&mut self, event: PortEvent) {
        match event {
            PortEvent::Confirmed(port) => {
                // Closed ports (a call deleted while this event was queued)
                // never go into the kernel: `sync` checks.
                if let Some(id) = self.owners.get(&port.local) {
                    self.changed.mark(id);
                }
                let sink = port.state().sink.upgrade();
                self.kernel.sync(&port);
                if let Some(sink) = sink {
                    self.kernel.sync(&sink);
                }
                // Ports of other fork branches that forward here without
                // being this port's sink.
                let pointing: Vec<_> = self
                    .owners
                    .get(&port.local)
                    .and_then(|id| self.calls.get(id))
                    .into_iter()
                    .flat_map(Call::ports)
                    .filter(|p| {
                        p.state()
                            .sink
                            .upgrade()
                            .is_some_and(|s| std::sync::Arc::ptr_eq(&s, &port))
                    })
                    .cloned()
                    .collect();
                for p in pointing {
                    self.kernel.sync(&p);
                }
            }
        }
    }

    /// `delete`: the whole call (Kamailio sends the tag of whoever hung up),
    /// or one unanswered branch when `via_branch` names one. With a delay,
    /// the call stays (and forwards) until then.
    pub fn delete(
        &mut self,
        call_id: &str,
        via_branch: Option<&str>,
        delay: Option<Duration>,
        now: Instant,
    ) -> Result<CallSummary, CallError> {
        let call = self.calls.get_mut(call_id).ok_or(CallError::UnknownCall)?;
        self.changed.mark(call_id);
        if let Some(branch) = via_branch {
            let pending = call
                .monologues
                .iter()
                .position(|m| m.tag.is_none() && m.via_branch.as_deref() == Some(branch));
            if let Some(i) = pending {
                let medias = std::mem::take(&mut call.monologues[i].medias);
                let iface = call.monologues[i].interface;
                for media in medias {
                    self.free_media(iface, media);
                }
                let call = &self.calls[call_id];
                return Ok(summary::summarize(call, &self.kernel, &self.interfaces));
            }
        }
        let delay = delay.unwrap_or(self.config.delete_delay);
        if delay.is_zero() {
            let call = self.calls.remove(call_id).ok_or(CallError::UnknownCall)?;
            let summary = summary::summarize(&call, &self.kernel, &self.interfaces);
            self.free_call(call);
            Ok(summary)
        } else {
            // An absurd delay saturates at a year rather than overflowing.
            let delay = delay.min(Duration::from_secs(365 * 24 * 3600));
            call.delete_at = Some(now + delay);
            let call = &self.calls[call_id];
            Ok(summary::summarize(call, &self.kernel, &self.interfaces))
        }
    }

    /// `delete` with rtpengine's `to-tag` flag: releases the ports of the
    /// answered branch `to_tag` names and of the port set its party kept
    /// for it, and leaves the rest of a forked call talking. When no other
    /// branch is left, the whole call goes, as rtpengine deletes a call
    /// without associations.
    pub fn delete_branch(
        &mut self,
        call_id: &str,
        to_tag: &str,
        delay: Option<Duration>,
        now: Instant,
    ) -> Result<CallSummary, CallError> {
        // Out of the map while its ports are freed and synced (both need
        // the manager mutably).
        let mut call = self.calls.remove(call_id).ok_or(CallError::UnknownCall)?;
        let released = release_branch(&mut call, to_tag);
        let Some(medias) = released else {
            self.calls.insert(call_id.to_owned(), call);
            return self.delete(call_id, None, delay, now);
        };
        self.changed.mark(call_id);
        for (iface, media) in medias {
            self.free_media(iface, media);
        }
        call.link_sinks();
        self.sync_all(&call);
        let summary = summary::summarize(&call, &self.kernel, &self.interfaces);
        self.calls.insert(call_id.to_owned(), call);
        Ok(summary)
    }

    /// `query`.
    pub fn query(&self, call_id: &str) -> Result<CallSummary, CallError> {
        let call = self.calls.get(call_id).ok_or(CallError::UnknownCall)?;
        Ok(summary::summarize(call, &self.kernel, &self.interfaces))
    }

    /// `list`: up to `limit` call-ids.
    pub fn list(&self, limit: usize) -> Vec<String> {
        let mut ids: Vec<String> = self.calls.keys().cloned().collect();
        ids.sort();
        ids.truncate(limit);
        ids
    }

    /// Periodic work: delayed deletes and media timeouts.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<(String, &'static str)> = self
            .calls
            .values()
            .filter_map(|c| {
                if c.delete_at.is_some_and(|t| now >= t) {
                    return Some((c.id.clone(), "deleted"));
                }
                if self
                    .config
                    .final_timeout
                    .is_some_and(|f| now.saturating_duration_since(c.created) >= f)
                {
                    return Some((c.id.clone(), "final timeout"));
                }
                let (timeout, why) = if is_silent(c) {
                    (self.config.silent_timeout, "silent timeout")
                } else {
                    (self.config.timeout, "timed out")
                };
                let idle = now.saturating_duration_since(self.last_activity(c));
                (idle >= timeout).then(|| (c.id.clone(), why))
            })
            .collect();
        if self.changed.enabled {
            // Userspace counters and activity reach the store a third of
            // --timeout late at most, so that a restart never takes a live
            // call for an idle one; those of kernel streams (datagrams
            // queued as they went into the kernel) within a second, and so
            // do SRTP rollover counters that moved (once per wrap, not per
            // packet: see sdes::Indices).
            let all = self.changed.refresh_due(now, self.config.timeout / 3);
            for call in self.calls.values() {
                let moved = |p: &std::sync::Arc<MediaPort>| {
                    p.srtp_unrecorded()
                        || match all {
                            true => p.unrecorded(),
                            false => p.kernel_stream_unrecorded(),
                        }
                };
                if call.ports().any(moved) {
                    self.changed.mark(&call.id);
                }
            }
        }
        // Consent (RFC 7675): a party that stopped refreshing consent gets
        // nothing more; the kernel entries sending to it leave the kernel
        // (userspace withholds the packets until consent comes back).
        let lapsed: Vec<_> = self
            .calls
            .values()
            .flat_map(Call::ports)
            .filter(|p| ice::expire_consent(p, now))
            .cloned()
            .collect();
        for port in lapsed {
            tracing::info!(local = %port.local, "ICE consent expired: sending to the party stops");
            self.on_event(PortEvent::Confirmed(port));
        }
        for port in self.calls.values().flat_map(Call::ports) {
            dtls::on_tick(port, now.into_std());
        }
        for (id, why) in expired {
            if let Some(call) = self.calls.remove(&id) {
                self.changed.mark(&id);
                let s = summary::summarize(&call, &self.kernel, &self.interfaces);
                tracing::info!(call_id = %id, why, packets = s.totals.packets, bytes = s.totals.bytes, "call removed");
                self.free_call(call);
            }
        }
        self.run_deferred();
    }

    /// Latest sign of life: signalling, a userspace packet, or a kernel one.
    fn last_activity(&self, call: &Call) -> Instant {
        let mut last = call.last_signal;
        for port in call.ports() {
            if let Some(t) = port.state().last_packet {
                last = last.max(t);
            }
            let k = self.kernel.stats(port);
            if let Some(t) = kernel::kernel_time_to_instant(k.last_seen_ns) {
                last = last.max(t);
            }
        }
        last
    }

    /// Removes every call (an explicit stop: their state goes too).
    pub fn clear(&mut self) {
        for id in self.calls.keys() {
            self.changed.mark(id);
        }
        for (_, call) in std::mem::take(&mut self.calls) {
            self.free_call(call);
        }
        self.run_deferred();
    }

    fn free_call(&mut self, call: Call) {
        for m in call.monologues {
            for media in m.medias {
                self.free_media(m.interface, media);
            }
        }
    }

    fn free_media(&mut self, iface: usize, media: Media) {
        for port in media.ports() {
            self.owners.remove(&port.local);
            port.state().closed = true;
            self.kernel.remove(port);
            let (packets, bytes, _, dropped) = port.user_counts();
            self.retired_user.0 += packets;
            self.retired_user.1 += bytes;
            self.retired_user.2 += dropped;
        }
        self.interfaces[iface].pool.release(media.rtp_port());
        self.deferred.retire(media);
    }

    /// The forwarders to start and stop that offers, answers and deletes
    /// left for after their reply ([`deferred`]); run them with
    /// [`CallManager::run_deferred`] or [`Deferred::run`] (which needs no
    /// lock on the manager). Until then, new ports queue datagrams without
    /// relaying them.
    #[must_use = "new ports relay nothing until the deferred work runs"]
    pub fn take_deferred(&mut self) -> Deferred {
        std::mem::take(&mut self.deferred)
    }

    /// Runs the deferred work now.
    pub fn run_deferred(&mut self) {
        if !self.deferred.is_empty() {
            self.take_deferred().run();
        }
    }

    /// Userspace (packets, bytes, dropped) since start, live and freed ports.
    pub fn userspace_totals(&self) -> (u64, u64, u64) {
        let (mut p, mut b, mut d) = self.retired_user;
        for port in self.calls.values().flat_map(Call::ports) {
            let (packets, bytes, _, dropped) = port.user_counts();
            p += packets;
            b += bytes;
            d += dropped;
        }
        (p, b, d)
    }

    /// RTP figures of every live port that carries RTP or RTCP.
    pub fn rtp_summaries(&self) -> Vec<summary::RtpSummary> {
        self.calls
            .values()
            .flat_map(Call::ports)
            .filter_map(|port| summary::rtp_quality(port, &self.kernel))
            .collect()
    }

    /// Whether a kernel datapath is in use.
    pub fn kernel_enabled(&self) -> bool {
        self.kernel.enabled()
    }

    /// The XDP program's counters, when there is a kernel datapath.
    pub fn kernel_counters(&self) -> Option<crate::datapath::Counters> {
        self.kernel.counters()
    }

    /// Starts the kernel datapath's forwarding once the restored calls are in.
    pub fn go_live(&mut self) -> Result<(), crate::datapath::DatapathError> {
        self.kernel.go_live()
    }

    /// Whether the kernel datapath took over an earlier relayd's streams.
    pub fn kernel_adopted(&self) -> bool {
        self.kernel.adopted()
    }

    /// Lets go of the kernel datapath after a failed start (see
    /// [`Kernel::abandon`]).
    pub fn abandon_kernel(&mut self) {
        self.kernel.abandon();
    }

    /// Releases the kernel datapath (after [`CallManager::clear`]).
    pub fn close_kernel(&mut self) {
        self.kernel.close();
    }

    /// Kernel counter slots (used, free), when there is a kernel datapath.
    pub fn slot_usage(&self) -> Option<(usize, usize)> {
        self.kernel.slot_usage()
    }

    /// Ports in use per interface: (name, used, free).
    pub fn port_usage(&self) -> Vec<(String, usize, usize)> {
        self.interfaces
            .iter()
            .map(|i| (i.spec.name.clone(), i.pool.used(), i.pool.free()))
            .collect()
    }
}

/// Calls changed since the state store last heard of them.
#[derive(Debug, Default)]
struct ChangeSet {
    enabled: bool,
    ids: HashSet<String>,
    /// When every call's moved counters were last recorded.
    last_refresh: Option<Instant>,
}

impl ChangeSet {
    /// Whether `every` has passed since the last refresh (which then
    /// counts as now).
    fn refresh_due(&mut self, now: Instant, every: Duration) -> bool {
        let due = self
            .last_refresh
            .is_none_or(|t| now.saturating_duration_since(t) >= every);
        if due {
            self.last_refresh = Some(now);
        }
        due
    }

    fn mark(&mut self, id: &str) {
        if self.enabled && !self.ids.contains(id) {
            self.ids.insert(id.to_owned());
        }
    }
}

/// What a failing offer/answer may have changed before failing, to put back.
struct Snapshot {
    monologues: usize,
    links: Vec<Link>,
}

impl Snapshot {
    fn of(call: &Call) -> Self {
        Snapshot {
            monologues: call.monologues.len(),
            links: call
                .monologues
                .iter()
                .map(|m| Link {
                    tag: m.tag.clone(),
                    aliases: m.aliases.clone(),
                    via_branch: m.via_branch.clone(),
                    peer: m.peer,
                })
                .collect(),
        }
    }

    /// Drops monologues created since (they own no ports: port allocation
    /// is all-or-nothing) and restores tags, aliases, via-branches and
    /// peers.
    fn restore(self, call: &mut Call) {
        call.monologues.truncate(self.monologues);
        for (m, link) in call.monologues.iter_mut().zip(self.links) {
            m.tag = link.tag;
            m.aliases = link.aliases;
            m.via_branch = link.via_branch;
            m.peer = link.peer;
        }
    }
}

/// What [`Snapshot`] keeps of one monologue.
struct Link {
    tag: Option<String>,
    aliases: Vec<String>,
    via_branch: Option<String>,
    peer: Option<usize>,
}

/// The party an offer carrying `branch` goes to, given the offerer's peer
/// (rtpengine's rule): that peer when it has no via-branch yet (it takes
/// this one) or has this one; else the party an earlier offer of this
/// via-branch created; None: a new branch, which gets a party (and ports)
/// of its own.
fn branch_party(call: &mut Call, peer: usize, branch: &str) -> Option<usize> {
    let p = &mut call.monologues[peer];
    match p.via_branch.as_deref() {
        None => {
            p.via_branch = Some(branch.to_owned());
            Some(peer)
        }
        Some(b) if b == branch => Some(peer),
        Some(_) => call
            .monologues
            .iter()
            .position(|m| m.via_branch.as_deref() == Some(branch)),
    }
}

/// Puts party `o` in dialogue with party `w` as far as `o`'s ports go, and
/// returns the monologue holding `o`'s ports for `w` (and, when that is a
/// new set, the monologue it copies the media state of). `o` keeps its
/// ports while its peer has not answered (rtpengine fills in the same
/// wildcard ports for whichever branch answers first). Once a branch has
/// answered, `o`'s ports stay with that branch and `o` gets a new set for
/// `w` (rtpengine allocates new ports for an answer from another
/// endpoint), or back the set it kept for `w`; the set not in dialogue is
/// kept, without a peer, until the call ends.
fn enter_dialogue(call: &mut Call, o: usize, w: usize) -> (usize, Option<usize>) {
    let current = call.monologues[o].peer;
    let Some(tag) = call.monologues[o].tag.clone() else {
        return (o, None);
    };
    if current == Some(w) || current.is_none() {
        return (o, None);
    }
    let kept = call.monologues[w].peer.filter(|&k| {
        k != o
            && call.monologues[k].peer.is_none()
            && call.monologues[k].tag.as_deref() == Some(&tag)
    });
    if let Some(k) = kept {
        call.monologues[o].peer = None;
        call.monologues[k].peer = Some(w);
        return (k, None);
    }
    let answered = current.is_some_and(|p| call.monologues[p].tag.is_some());
    if !answered {
        return (o, None);
    }
    let iface = call.monologues[o].interface;
    let created_unix = call.monologues[o].created_unix;
    let k = push_monologue(call, Some(tag), None, iface);
    call.monologues[k].created_unix = created_unix;
    call.monologues[k].offerer = call.monologues[o].offerer;
    call.monologues[o].peer = None;
    call.monologues[k].peer = Some(w);
    (k, Some(o))
}

/// Gives the new port set `to` of a party what the party's SDP said at
/// `from`: media details and where it wants media.
fn inherit_media_state(call: &mut Call, from: usize, to: usize, now: Instant) {
    let source: Vec<_> = call.monologues[from]
        .medias
        .iter()
        .map(|md| {
            let port = |p: &MediaPort| {
                let st = p.state();
                (
                    st.learner.sdp(),
                    st.learner.strict(),
                    st.symmetric,
                    st.media,
                )
            };
            (
                md.kind.clone(),
                md.protocol.clone(),
                md.muted,
                md.codecs.clone(),
                md.ptime,
                md.rtcp_mux,
                md.mid.clone(),
                [port(&md.rtp), port(&md.rtcp)],
            )
        })
        .collect();
    for (md, (kind, protocol, muted, codecs, ptime, rtcp_mux, mid, ports)) in
        call.monologues[to].medias.iter_mut().zip(source)
    {
        md.kind = kind;
        md.protocol = protocol;
        md.muted = muted;
        md.codecs = codecs;
        md.ptime = ptime;
        md.rtcp_mux = rtcp_mux;
        md.mid = mid;
        for (port, (sdp, strict, symmetric, media)) in [&md.rtp, &md.rtcp].into_iter().zip(ports) {
            let mut st = port.state();
            st.learner.resignal(sdp, strict, now);
            st.symmetric = symmetric;
            st.media = media;
        }
    }
}

/// Takes the medias of branch `tag` and of the port set its party kept for
/// it out of `call`, putting another of the party's sets in dialogue if
/// the released one was; None (nothing taken) when `tag` names no answered
/// branch or no other branch would be left talking.
fn release_branch(call: &mut Call, tag: &str) -> Option<Vec<(usize, Media)>> {
    let branch = call.find(tag)?;
    let live = |m: &Monologue| !m.medias.is_empty() && m.subscribed.is_empty();
    if !live(&call.monologues[branch]) {
        return None;
    }
    let set = call.monologues[branch].peer;
    let party = set.and_then(|s| call.monologues[s].tag.clone())?;
    // Another live set of the party, and the live branch it is kept for.
    let ms = &call.monologues;
    let next_set = (0..ms.len()).find(|&q| {
        Some(q) != set && live(&ms[q]) && ms[q].tag.as_deref() == Some(party.as_str())
    })?;
    let next_branch =
        (0..ms.len()).find(|&r| r != branch && ms[r].peer == Some(next_set) && live(&ms[r]))?;
    let mut taken = Vec::new();
    for i in [Some(branch), set].into_iter().flatten() {
        let m = &mut call.monologues[i];
        m.peer = None;
        taken.extend(
            std::mem::take(&mut m.medias)
                .into_iter()
                .map(|md| (m.interface, md)),
        );
    }
    call.monologues[next_set].peer = Some(next_branch);
    Some(taken)
}

/// Parties of a call: its monologues and the to-tags aliased to them.
fn party_count(call: &Call) -> usize {
    call.monologues.len()
        + call
            .monologues
            .iter()
            .map(|m| m.aliases.len())
            .sum::<usize>()
}

/// Refuses an SDP with more media sections than a call may have.
fn check_media_count(sig: &Signal) -> Result<(), CallError> {
    match sig.medias.len() {
        count if count > MAX_MEDIAS => Err(CallError::MediaLimit { count }),
        _ => Ok(()),
    }
}

/// Whether every media of every party is on hold or muted (rtpengine's
/// case for `--silent-timeout`).
fn is_silent(call: &Call) -> bool {
    let mut medias = call
        .monologues
        .iter()
        .flat_map(|m| m.medias.iter())
        .peekable();
    medias.peek().is_some() && medias.all(|m| m.muted)
}

fn push_monologue(
    call: &mut Call,
    tag: Option<String>,
    via_branch: Option<String>,
    interface: usize,
) -> usize {
    call.monologues.push(Monologue {
        tag,
        aliases: Vec::new(),
        via_branch,
        interface,
        peer: None,
        medias: Vec::new(),
        created_unix: unix_now(),
        sdp_version: None,
        uses_ice: false,
        subscribed: Vec::new(),
        sdp: None,
        offerer: false,
    });
    call.monologues.len() - 1
}

/// What the RTP and RTCP ports of a media carry, for their RTP figures.
fn media_tracking(offer: &MediaOffer) -> (MediaTracking, MediaTracking) {
    if !offer.is_rtp {
        return (MediaTracking::None, MediaTracking::None);
    }
    let clock_rate = offer.clock_rate.unwrap_or(0);
    (MediaTracking::Rtp { clock_rate }, MediaTracking::Rtcp)
}

/// Two distinct monologues, mutably.
fn two_mut(call: &mut Call, a: usize, b: usize) -> Option<(&mut Monologue, &mut Monologue)> {
    if a == b {
        return None;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = call.monologues.split_at_mut(hi);
    let (x, y) = (&mut left[lo], right.first_mut()?);
    Some(if a < b { (x, y) } else { (y, x) })
}

/// SDES for an offer from `from` to `to` (see [`sdes`]).
fn sdes_offer(call: &mut Call, from: usize, to: usize, sig: &Signal) {
    let Some((sender, recipient)) = two_mut(call, from, to) else {
        return;
    };
    for ((s, r), offer) in sender
        .medias
        .iter_mut()
        .zip(recipient.medias.iter_mut())
        .zip(&sig.medias)
    {
        sdes::on_offer(
            &mut s.sdes,
            &mut r.sdes,
            offer.srtp(),
            sig.transport_protocol.as_deref(),
            &sig.sdes,
            sig.osrtp,
        );
    }
}

/// SDES for `answerer`'s answer to `offerer`; the ports get their
/// transforms (or lose them).
fn sdes_answer(call: &mut Call, offerer: usize, answerer: usize, sig: &Signal) {
    let Some((o, a)) = two_mut(call, offerer, answerer) else {
        return;
    };
    for ((om, am), answer) in o
        .medias
        .iter_mut()
        .zip(a.medias.iter_mut())
        .zip(&sig.medias)
    {
        sdes::on_answer(&mut om.sdes, &mut am.sdes, answer.srtp(), sig.osrtp);
        sdes::sync_ports(om);
        sdes::sync_ports(am);
    }
}
