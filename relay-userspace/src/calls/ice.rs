//! The ICE-lite agents of relay ports (relay-media does the protocol).
//!
//! A media whose SDP from the relay carried the relay's ICE gets one agent
//! per port (RTP and RTCP, same credentials). STUN arriving there is
//! answered by the agent instead of being relayed; the address the peer
//! nominates becomes the port's endpoint (the learner's confirmed source);
//! without consent (RFC 7675) nothing is sent to it, in userspace or in the
//! kernel.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use relay_media::{Consent, IceCredentials, IceEvent, IceLiteAgent};
use tokio::time::Instant;

use super::{model::Media, port::MediaPort, port::PortState};

/// Gives `media`'s ports an agent (keeping the one they have) when `on`,
/// or takes it away; returns the credentials to advertise. The party's
/// ufrag (from its latest SDP) is what checks must name; a new one is an
/// ICE restart (RFC 8445 §9), answered with new credentials (the pair in
/// use stays until the peer nominates again).
pub(crate) fn set_agent(media: &Media, on: bool) -> Option<IceCredentials> {
    if !on {
        for port in media.ports() {
            let mut st = port.state();
            st.ice = None;
            st.ice_consent_lost = false;
        }
        return None;
    }
    let peer = media.ice_ufrag.clone();
    let existing = media.rtp.state().ice.as_ref().and_then(|a| {
        let restarted = a.remote_ufrag().is_some() && a.remote_ufrag() != peer.as_deref();
        (!restarted).then(|| a.local().clone())
    });
    let credentials = existing.unwrap_or_else(IceCredentials::generate);
    for port in media.ports() {
        let mut st = port.state();
        match st.ice.as_mut() {
            Some(agent) if agent.local() == &credentials => agent.set_remote_ufrag(peer.clone()),
            _ => st.ice = Some(IceLiteAgent::new(credentials.clone(), peer.clone())),
        }
    }
    Some(credentials)
}

/// What the forwarder does with a STUN datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stun {
    /// The port runs no agent: relay it like any datagram.
    NotOurs,
    /// Answered or dropped by the agent.
    Consumed,
    /// Consumed, and the endpoint changed (nomination, or consent regained):
    /// the kernel entries need a sync.
    EndpointChanged,
}

/// Hands a datagram that looks like STUN to `port`'s agent, sending its
/// response from the port's socket.
pub(crate) fn on_stun(
    port: &Arc<MediaPort>,
    payload: &[u8],
    src: SocketAddr,
    now: Instant,
) -> Stun {
    let now = now.into_std();
    let (handled, changed) = {
        let mut st = port.state();
        let st = &mut *st;
        let Some(agent) = st.ice.as_mut() else {
            return Stun::NotOurs;
        };
        let handled = agent.handle(payload, src, now);
        let changed = match handled.event {
            Some(IceEvent::Nominated(addr)) => {
                tracing::debug!(local = %port.local, %addr, "ICE pair nominated");
                st.learner.nominate(addr);
                st.ice_consent_lost = false;
                true
            }
            Some(IceEvent::ConsentRefreshed) => std::mem::take(&mut st.ice_consent_lost),
            None => false,
        };
        (handled, changed)
    };
    if let Some(why) = handled.rejected {
        tracing::trace!(local = %port.local, %src, ?why, "STUN not accepted");
        // A response or indication is no fault; a malformed or unauthorised
        // request is one, counted like any datagram the port rejects.
        if why != relay_media::Rejection::NotBindingRequest {
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(response) = handled.response {
        if let Err(e) = port.socket.try_send_to(&response, src) {
            tracing::trace!(local = %port.local, %src, error = %e, "STUN response not sent");
        }
    }
    if changed {
        Stun::EndpointChanged
    } else {
        Stun::Consumed
    }
}

/// Where packets to this port's party go: the learner's destination, unless
/// the party let ICE consent lapse (before nomination: the learner's, the
/// SDP endpoint, as without ICE).
pub(crate) fn destination(st: &PortState) -> Option<SocketAddr> {
    if st.ice_consent_lost {
        return None;
    }
    st.learner.destination(st.symmetric)
}

/// Marks `port`'s consent lost when its agent's peer sent no authenticated
/// check for [`relay_media::CONSENT_TIMEOUT`] at `now`; true when that is
/// new (what sends to the port must be brought in line).
pub(crate) fn expire_consent(port: &MediaPort, now: Instant) -> bool {
    let mut st = port.state();
    let expired = st
        .ice
        .as_ref()
        .is_some_and(|a| matches!(a.consent(now.into_std()), Consent::Expired(_)));
    if expired && !st.ice_consent_lost {
        st.ice_consent_lost = true;
        return true;
    }
    false
}
