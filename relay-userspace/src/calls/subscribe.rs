//! Media forking, as rtpengine's `publish`, `subscribe request`,
//! `subscribe answer` and `unsubscribe`: a subscriber is a party of the
//! call with ports of its own and no peer; each of its medias receives a
//! copy of what one source party sends (checked against rtpengine 10.5).
//!
//! Copies are made by the userspace forwarder ([`Copies`]): a source port
//! with subscribers stays out of the kernel (see `Kernel::forwarding` and
//! docs/fast-path.md), since XDP can send a frame once only.

use std::{
    borrow::Cow,
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{atomic::Ordering, Arc},
};

use tokio::{io::Interest, time::Instant};

use super::{
    model::{Call, MediaOffer},
    port::MediaPort,
    push_monologue, CallError, CallManager, IceOption, SdpPlan, Signal,
};

/// Why a subscription request failed; the Display text is rtpengine's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    /// No such call.
    #[error("Unknown call-ID")]
    UnknownCall,
    /// A from-tag names no party of the call.
    #[error("From-tag given, but no such tag exists")]
    UnknownFromTag,
    /// The to-tag of `subscribe answer` names no subscriber.
    #[error("To-tag not found")]
    UnknownToTag,
    /// Nothing to subscribe to (no from-tag and no `all`, or no media).
    #[error("No monologues matched")]
    NothingToSubscribe,
    /// The `to-tag` of `subscribe request` names a party in dialogue or
    /// publishing (xrelay's own text: one tag, one party).
    #[error("To-tag names a party of the call that is no subscriber")]
    TagInUse,
    /// A `subscribe answer` whose codecs are none of those offered.
    #[error("Failed to process subscription answer")]
    AnswerCodecs,
    /// Ports, limits.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// What `subscribe request` created.
#[derive(Debug)]
pub struct Subscription {
    /// The subscriber's tag (made up when the request had none).
    pub to_tag: String,
    /// The tags of the parties subscribed to, in media order.
    pub from_tags: Vec<String>,
    /// The SDP of the only source party, when there is one: the offer to
    /// the subscriber is that SDP rewritten (rtpengine's shape); with
    /// several, the relay writes one of its own.
    pub source_sdp: Option<Vec<u8>>,
    /// Per media: the codecs of the source's media as negotiated (its
    /// peer's answer, else its own).
    pub codecs: Vec<Vec<relay_sdp::codecs::Carried>>,
    /// Where the subscriber must send (its ports), for the SDP.
    pub plan: SdpPlan,
}

impl CallManager {
    /// `publish`: a party whose media nobody receives until it is
    /// subscribed to; the plan faces the publisher (its own ports).
    pub fn publish(&mut self, sig: &Signal, now: Instant) -> Result<SdpPlan, CallError> {
        super::check_media_count(sig)?;
        let choice = self.resolve_interface(sig.direction.first(), sig.sdp_family, false)?;
        let is_new = !self.calls.contains_key(&sig.call_id);
        let mut call = self
            .calls
            .remove(&sig.call_id)
            .unwrap_or_else(|| new_call(&sig.call_id, now));
        let before = call.monologues.len();
        let party = match call.find(&sig.from_tag) {
            Some(p) => p,
            None => {
                let iface = self.selector.pick(&self.interfaces, choice);
                push_monologue(&mut call, Some(sig.from_tag.clone()), None, iface)
            }
        };
        let result = self.ensure_medias(&mut call, &[party], sig.medias.len(), sig, now);
        if let Err(e) = result {
            // Port allocation is all-or-nothing: a new party owns none.
            call.monologues.truncate(before);
            if is_new {
                self.free_call(call);
            } else {
                self.calls.insert(call.id.clone(), call);
            }
            return Err(e);
        }
        self.apply_sdp(&mut call, party, sig, now);
        // The answer accepts the first codec only: subscribers get that one.
        for md in &mut call.monologues[party].medias {
            md.codecs.truncate(1);
        }
        call.last_signal = now;
        call.delete_at = None;
        let plan = self.plan_for(&call, party, sig.medias.len(), false);
        if is_new {
            self.total_calls += 1;
        }
        self.changed.mark(&call.id);
        self.calls.insert(call.id.clone(), call);
        Ok(plan)
    }

    /// `subscribe request`: a new party `to_tag` (or a made-up tag) with a
    /// media for each media of each party of `from_tags` (every party in
    /// dialogue or publishing when `all` or none given).
    pub fn subscribe(
        &mut self,
        call_id: &str,
        from_tags: &[String],
        to_tag: Option<&str>,
        now: Instant,
    ) -> Result<Subscription, SubscribeError> {
        let call = self.calls.get(call_id).ok_or(SubscribeError::UnknownCall)?;
        let sources: Vec<usize> = if from_tags.is_empty() {
            (0..call.monologues.len())
                .filter(|&i| is_source(call, i))
                .collect()
        } else {
            from_tags
                .iter()
                .map(|t| call.find(t).ok_or(SubscribeError::UnknownFromTag))
                .collect::<Result<_, _>>()?
        };
        // A to-tag already subscribed subscribes afresh; a party's tag
        // cannot name a subscriber too.
        if let Some(tag) = to_tag {
            if call.find(tag).is_some() && subscriber(call, tag).is_none() {
                return Err(SubscribeError::TagInUse);
            }
            self.unsubscribe(call_id, tag)?;
        }
        let mut call = self
            .calls
            .remove(call_id)
            .ok_or(SubscribeError::UnknownCall)?;
        let result = self.subscribe_in(&mut call, &sources, to_tag, now);
        self.changed.mark(call_id);
        self.calls.insert(call.id.clone(), call);
        result
    }

    fn subscribe_in(
        &mut self,
        call: &mut Call,
        sources: &[usize],
        to_tag: Option<&str>,
        now: Instant,
    ) -> Result<Subscription, SubscribeError> {
        let wanted: Vec<(usize, usize)> = sources
            .iter()
            .flat_map(|&s| (0..call.monologues[s].medias.len()).map(move |i| (s, i)))
            .collect();
        if wanted.is_empty() {
            return Err(SubscribeError::NothingToSubscribe);
        }
        let medias: Vec<MediaOffer> = wanted
            .iter()
            .map(|&(s, i)| {
                let md = &call.monologues[s].medias[i];
                MediaOffer {
                    kind: md.kind.clone(),
                    protocol: md.protocol.clone(),
                    rtp: None,
                    rtcp: None,
                    rtcp_mux: false,
                    muted: false,
                    is_rtp: md.rtp.state().media.flags() != 0,
                    clock_rate: None,
                    codecs: negotiated_codecs(call, s, i),
                    ptime: md.ptime,
                    mid: None,
                    ice_ufrag: None,
                    crypto: Vec::new(),
                    any_crypto: false,
                    dtls: Default::default(),
                }
            })
            .collect();
        let tag = to_tag.map_or_else(random_tag, str::to_owned);
        let iface = call.monologues[sources[0]].interface;
        let sub = push_monologue(call, Some(tag.clone()), None, iface);
        let sig = signal(&call.id, &tag, medias);
        if let Err(e) = self.ensure_medias(call, &[sub], wanted.len(), &sig, now) {
            call.monologues.truncate(sub);
            return Err(e.into());
        }
        for (md, &(s, i)) in call.monologues[sub].medias.iter().zip(&wanted) {
            let source = &call.monologues[s].medias[i];
            for (from, to) in [(&source.rtp, &md.rtp), (&source.rtcp, &md.rtcp)] {
                let media = from.state().media;
                to.state().media = media;
                from.state().subscribers.push(Arc::downgrade(to));
            }
        }
        call.monologues[sub].subscribed = wanted.clone();
        for &(s, i) in &wanted {
            for port in call.monologues[s].medias[i].ports() {
                self.kernel.sync(port);
            }
        }
        let plan = self.plan_for(call, sub, wanted.len(), false);
        let source_sdp = match sources {
            [only] => call.monologues[*only].sdp.clone(),
            _ => None,
        };
        Ok(Subscription {
            to_tag: tag,
            from_tags: sources
                .iter()
                .filter_map(|&s| call.monologues[s].tag.clone())
                .collect(),
            source_sdp,
            codecs: sig.medias.into_iter().map(|m| m.codecs).collect(),
            plan,
        })
    }

    /// `subscribe answer`: where the subscriber `sig.from_tag` wants its
    /// copies (its SDP's endpoints).
    pub fn subscribe_answer(&mut self, sig: &Signal, now: Instant) -> Result<(), SubscribeError> {
        let mut call = self
            .calls
            .remove(&sig.call_id)
            .ok_or(SubscribeError::UnknownCall)?;
        let result = match subscriber(&call, &sig.from_tag) {
            Some(sub) if !codecs_agree(&call.monologues[sub], sig) => {
                Err(SubscribeError::AnswerCodecs)
            }
            Some(sub) => {
                self.apply_sdp(&mut call, sub, sig, now);
                call.last_signal = now;
                Ok(())
            }
            None => Err(SubscribeError::UnknownToTag),
        };
        self.changed.mark(&call.id);
        self.calls.insert(call.id.clone(), call);
        result
    }

    /// `unsubscribe`: frees subscriber `to_tag`'s ports and stops its
    /// copies; a tag that is no subscriber is no error (rtpengine's ok).
    pub fn unsubscribe(&mut self, call_id: &str, to_tag: &str) -> Result<(), SubscribeError> {
        let call = self
            .calls
            .get_mut(call_id)
            .ok_or(SubscribeError::UnknownCall)?;
        let Some(sub) = subscriber(call, to_tag) else {
            return Ok(());
        };
        let removed = remove_monologue(call, sub);
        let sources: Vec<Arc<MediaPort>> = call.ports().cloned().collect();
        self.changed.mark(call_id);
        for media in removed.medias {
            self.free_media(removed.interface, media);
        }
        // Dead subscriber ports out of every port's list; the sources may
        // go back into the kernel.
        for port in sources {
            let had = {
                let mut st = port.state();
                let before = st.subscribers.len();
                st.subscribers
                    .retain(|w| w.upgrade().is_some_and(|p| !p.state().closed));
                before != st.subscribers.len()
            };
            if had {
                self.kernel.sync(&port);
            }
        }
        Ok(())
    }

    /// The SDP party `tag` of `call_id` last sent, if known.
    pub fn party_sdp(&self, call_id: &str, tag: &str) -> Option<Vec<u8>> {
        let call = self.calls.get(call_id)?;
        call.monologues[call.find(tag)?].sdp.clone()
    }

    /// Records the SDP party `tag` sent (a later subscription to it alone
    /// is offered this SDP).
    pub fn remember_sdp(&mut self, call_id: &str, tag: &str, sdp: &[u8]) {
        if let Some(call) = self.calls.get_mut(call_id) {
            if let Some(p) = call.find(tag) {
                call.monologues[p].sdp = Some(sdp.to_vec());
            }
        }
    }
}

/// Gives restored subscribers (from `record`) their sources again: each
/// source port lists the subscriber's matching port.
pub(crate) fn relink(
    call: &mut Call,
    record: &relay_state::CallRecord,
) -> Result<(), super::restore::RestoreError> {
    let inconsistent =
        || super::restore::RestoreError::Inconsistent("a subscription names no media");
    for (sub, m) in record.monologues.iter().enumerate() {
        if m.subscribed.is_empty() {
            continue;
        }
        if m.subscribed.len() != call.monologues[sub].medias.len() {
            return Err(inconsistent());
        }
        let wanted: Vec<(usize, usize)> =
            m.subscribed.iter().map(|s| (s.source, s.media)).collect();
        for (md, &(s, i)) in call.monologues[sub].medias.iter().zip(&wanted) {
            let source = call
                .monologues
                .get(s)
                .filter(|_| s != sub)
                .and_then(|src| src.medias.get(i))
                .ok_or_else(inconsistent)?;
            for (from, to) in [(&source.rtp, &md.rtp), (&source.rtcp, &md.rtcp)] {
                from.state().subscribers.push(Arc::downgrade(to));
            }
        }
        call.monologues[sub].subscribed = wanted;
    }
    Ok(())
}

/// The packets of one received batch to copy to a port's subscribers.
pub(crate) struct Copies<'a> {
    targets: Vec<(Arc<MediaPort>, SocketAddr)>,
    payloads: Vec<Cow<'a, [u8]>>,
}

impl<'a> Copies<'a> {
    /// The subscribers of `port` that know where their party wants media.
    pub(crate) fn of(port: &MediaPort) -> Self {
        let subs: Vec<Arc<MediaPort>> = port
            .state()
            .subscribers
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        let targets = subs
            .into_iter()
            .filter_map(|s| {
                let dest = {
                    let st = s.state();
                    if st.closed {
                        return None;
                    }
                    super::ice::destination(&st)?
                };
                Some((s, dest))
            })
            .collect();
        Copies {
            targets,
            payloads: Vec::new(),
        }
    }

    /// Queues one forwarded packet for every subscriber.
    /// `decrypted` stands for `received` when the source's SRTP ended here
    /// (subscribers get the plain packet).
    pub(crate) fn push(&mut self, received: &'a [u8], decrypted: Option<&[u8]>) {
        if !self.targets.is_empty() {
            self.payloads.push(match decrypted {
                Some(plain) => Cow::Owned(plain.to_vec()),
                None => Cow::Borrowed(received),
            });
        }
    }

    /// Sends the copies from each subscriber's port, without waiting: what
    /// a full socket cannot take is dropped and counted as that port's
    /// errors (a copy never delays the call's own media).
    pub(crate) fn send(self) {
        if self.payloads.is_empty() {
            return;
        }
        let payloads: Vec<&[u8]> = self.payloads.iter().map(|p| p.as_ref()).collect();
        for (sub, dest) in &self.targets {
            let fd = sub.socket.as_raw_fd();
            let sent = sub
                .socket
                .try_io(Interest::WRITABLE, || {
                    super::send_batch::send_all(fd, &payloads, *dest, &sub.gso)
                })
                .unwrap_or(0);
            let lost = payloads.len().saturating_sub(sent);
            if lost > 0 {
                sub.stats.errors.fetch_add(lost as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Whether each media of the subscriber's answer `sig` shares a codec with
/// what `sub` was offered (where both name codecs).
fn codecs_agree(sub: &super::model::Monologue, sig: &Signal) -> bool {
    sub.medias.iter().zip(&sig.medias).all(|(md, answer)| {
        md.codecs.is_empty()
            || answer.codecs.is_empty()
            || answer
                .codecs
                .iter()
                .any(|c| md.codecs.iter().any(|m| m.codec == c.codec))
    })
}

/// Whether monologue `i` can be subscribed to by `all`: a party with a
/// tag that is no subscriber itself.
fn is_source(call: &Call, i: usize) -> bool {
    let m = &call.monologues[i];
    m.tag.is_some() && m.subscribed.is_empty() && !m.medias.is_empty() && !call.is_standby(i)
}

/// The subscriber tagged `tag`, if any.
fn subscriber(call: &Call, tag: &str) -> Option<usize> {
    call.monologues
        .iter()
        .position(|m| !m.subscribed.is_empty() && m.answers_to(tag))
}

/// The codecs of source `s`'s media `i` as negotiated: those its peer's
/// SDP carried (the answer), else its own.
fn negotiated_codecs(call: &Call, s: usize, i: usize) -> Vec<relay_sdp::codecs::Carried> {
    let own = &call.monologues[s].medias[i].codecs;
    call.monologues[s]
        .peer
        .and_then(|p| call.monologues[p].medias.get(i))
        .map(|md| &md.codecs)
        .filter(|c| !c.is_empty())
        .unwrap_or(own)
        .clone()
}

/// Takes monologue `k` out of the call, renumbering the others' links.
fn remove_monologue(call: &mut Call, k: usize) -> super::model::Monologue {
    let removed = call.monologues.remove(k);
    let shift = |i: usize| if i > k { i - 1 } else { i };
    for m in &mut call.monologues {
        m.peer = m.peer.map(shift);
        for (s, _) in &mut m.subscribed {
            *s = shift(*s);
        }
    }
    removed
}

/// A made-up to-tag, as rtpengine makes one (64 hex digits).
fn random_tag() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Unique enough within one call without the OS's randomness.
        let t = super::model::unix_now_subsec_us();
        bytes[..4].copy_from_slice(&t.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A call created by `publish`.
fn new_call(id: &str, now: Instant) -> Call {
    Call {
        id: id.to_owned(),
        monologues: Vec::new(),
        created_unix: super::model::unix_now(),
        created_us: super::model::unix_now_subsec_us(),
        created: now,
        last_signal: now,
        last_signal_unix: super::model::unix_now(),
        delete_at: None,
        restored: false,
    }
}

/// The signal that opens a subscriber's ports: no endpoints yet.
fn signal(call_id: &str, tag: &str, medias: Vec<MediaOffer>) -> Signal {
    Signal {
        call_id: call_id.to_owned(),
        from_tag: tag.to_owned(),
        to_tag: None,
        via_branch: None,
        direction: Vec::new(),
        medias,
        learning: None,
        strict_source: false,
        asymmetric: false,
        sdp_family: None,
        address_family: None,
        sdp_digest: None,
        ice: IceOption::Remove,
        sdp_ice: false,
        rtcp_mux_flag: super::RtcpMuxFlag::Default,
        transport_protocol: None,
        sdes: Default::default(),
        osrtp: Default::default(),
    }
}
