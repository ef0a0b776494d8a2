//! The DTLS-SRTP endpoint of a relay port: datagrams in from the
//! forwarder, output out of the port's socket, timers from the tick,
//! failures counted, keys kept for the SRTP transform.

use std::sync::atomic::Ordering;

use relay_media::dtls::{DtlsEndpoint, DtlsError, DtlsRole, DtlsState, Fingerprint};

use crate::calls::{model::Media, port::MediaPort, sdes::PortSrtp};

use super::identity::identity;
/// Handshake trouble on one port, counted for `query` and `relayctl`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DtlsCounters {
    /// Handshakes that did not finish in time.
    pub timeouts: u64,
    /// Peer certificates that did not match the peer's `a=fingerprint`.
    pub fingerprint_mismatches: u64,
    /// Other handshake failures (alerts, no common SRTP profile, ...).
    pub failures: u64,
}

/// The DTLS-SRTP endpoint of a port facing a WebRTC party.
#[derive(Debug)]
pub struct PortDtls {
    pub endpoint: relay_media::dtls::DtlsEndpoint,
    /// The party's fingerprint the endpoint checks against.
    pub remote: relay_media::dtls::Fingerprint,
    /// Where the party's DTLS came from last (replies go there).
    pub peer: Option<std::net::SocketAddr>,
    pub counters: DtlsCounters,
    /// Brought back by a restart with the keys of a finished handshake
    /// (their profile): the endpoint has no session, and waits, without
    /// starting one, for the party to handshake again if it ever does.
    pub restored: Option<relay_media::SrtpProfile>,
}

/// What a finished handshake gives the SRTP transform: the profile and the
/// keys this port protects with toward its party (local) and the party
/// protects with (remote).
pub type PortSrtpKeys = relay_media::dtls::SrtpKeys;

/// A port's DTLS state and counters for summaries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DtlsSummary {
    /// `new`, `connecting`, `connected`, `failed`, `closed`.
    pub state: &'static str,
    /// `client` (setup active) or `server` (passive).
    pub role: &'static str,
    /// The negotiated SRTP profile once connected (its SDES name).
    pub profile: Option<&'static str>,
    pub counters: DtlsCounters,
}

impl PortDtls {
    pub fn summary(&self) -> DtlsSummary {
        let resting = self
            .restored
            .filter(|_| self.endpoint.state() == DtlsState::New);
        DtlsSummary {
            state: match resting {
                Some(_) => "connected",
                None => self.endpoint.state().as_str(),
            },
            role: match self.endpoint.role() {
                DtlsRole::Client => "client",
                DtlsRole::Server => "server",
            },
            profile: self
                .endpoint
                .keys()
                .map(|k| k.profile)
                .or(resting)
                .map(|p| p.sdes_name()),
            counters: self.counters,
        }
    }

    /// The state store's record of this session.
    pub fn record(&self) -> relay_state::DtlsRecord {
        relay_state::DtlsRecord {
            server: self.endpoint.role() == DtlsRole::Server,
            remote_fingerprint: self.remote.to_string(),
            connected: self.endpoint.state() == DtlsState::Connected
                || (self.restored.is_some() && self.endpoint.state() == DtlsState::New),
        }
    }

    /// The session `record` describes, with a fresh endpoint of the same
    /// role and the party's fingerprint; `profile`: the recorded keys'
    /// when the handshake had finished. None without a certificate or
    /// with an unreadable fingerprint.
    pub fn from_record(
        record: &relay_state::DtlsRecord,
        profile: Option<relay_media::SrtpProfile>,
    ) -> Option<PortDtls> {
        let remote = Fingerprint::parse_sdp(&record.remote_fingerprint).ok()?;
        let role = if record.server {
            DtlsRole::Server
        } else {
            DtlsRole::Client
        };
        let id = identity()?;
        let endpoint = DtlsEndpoint::new(&id.context, role, remote.clone()).ok()?;
        Some(PortDtls {
            endpoint,
            remote,
            peer: None,
            counters: DtlsCounters::default(),
            restored: profile.filter(|_| record.connected),
        })
    }

    /// The keys for SRTP, once the handshake finished.
    pub fn keys(&self) -> Option<&PortSrtpKeys> {
        self.endpoint.keys()
    }

    /// Counts an error of the endpoint (input that is simply not ours,
    /// or arrives after a failure, is not a new failure).
    fn count(&mut self, local: std::net::SocketAddr, e: &DtlsError) {
        match e {
            DtlsError::FingerprintMismatch => self.counters.fingerprint_mismatches += 1,
            DtlsError::Timeout => self.counters.timeouts += 1,
            DtlsError::NotDtls | DtlsError::Failed | DtlsError::Closed | DtlsError::NotStarted => {
                return;
            }
            _ => self.counters.failures += 1,
        }
        tracing::info!(%local, error = %e, "DTLS handshake failed");
    }
}

/// Gives `media`'s ports a DTLS endpoint in `role` checking the party's
/// fingerprint (keeping one that already does), or takes it away (None).
/// A client starts its handshake at once. Returns whether anything changed.
pub(crate) fn set_endpoint(media: &Media, role: Option<DtlsRole>, now: std::time::Instant) -> bool {
    let want = role.and_then(|r| {
        let fp = media.dtls.fingerprint.as_deref()?;
        match Fingerprint::parse_sdp(fp) {
            Ok(fp) => Some((r, fp)),
            Err(e) => {
                tracing::info!(error = %e, "party's DTLS fingerprint unusable: no DTLS");
                None
            }
        }
    });
    let mut changed = false;
    for (i, port) in media.ports().into_iter().enumerate() {
        // A party muxing RTCP runs one handshake, on the RTP port (RFC 5764
        // §4.1.2); an idle endpoint on the RTCP port would only time out.
        let want = if i == 1 && media.rtcp_mux {
            &None
        } else {
            &want
        };
        let mut out = Vec::new();
        let dest = {
            let mut st = port.state();
            let same = match (&st.dtls, want) {
                (Some(d), Some((r, fp))) => d.endpoint.role() == *r && d.remote == *fp,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            changed = true;
            st.dtls = None;
            // A new handshake brings new keys; none until then.
            st.srtp = None;
            let Some((r, fp)) = want else { continue };
            let Some(id) = identity() else { continue };
            let mut endpoint = match DtlsEndpoint::new(&id.context, *r, fp.clone()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "DTLS endpoint not made");
                    continue;
                }
            };
            let _ = endpoint.start(now);
            out.extend(std::iter::from_fn(|| endpoint.poll_transmit()));
            let dest = st.learner.destination(st.symmetric);
            st.dtls = Some(PortDtls {
                endpoint,
                remote: fp.clone(),
                peer: None,
                counters: DtlsCounters::default(),
                restored: None,
            });
            dest
        };
        send(port, &out, dest);
    }
    changed
}

fn send(port: &MediaPort, datagrams: &[Vec<u8>], dest: Option<std::net::SocketAddr>) {
    let Some(dest) = dest else { return };
    for d in datagrams {
        if let Err(e) = port.socket.try_send_to(d, dest) {
            tracing::trace!(local = %port.local, %dest, error = %e, "DTLS datagram not sent");
        }
    }
}

/// Hands a datagram that looks like DTLS (RFC 7983: first byte 20..=63)
/// to `port`'s endpoint; false when the port runs none (relay it).
pub(crate) fn on_datagram(
    port: &MediaPort,
    payload: &[u8],
    src: std::net::SocketAddr,
    now: std::time::Instant,
) -> bool {
    let out = {
        let mut st = port.state();
        let nominated = st.ice.is_some().then(|| st.learner.confirmed()).flatten();
        let Some(d) = st.dtls.as_mut() else {
            return false;
        };
        // The handshake belongs to one party: the address ICE nominated,
        // else the first that spoke DTLS. Anyone else's DTLS is dropped and
        // counted, so a stranger can neither steer nor break it.
        if nominated.or(d.peer).is_some_and(|peer| peer != src) {
            tracing::trace!(local = %port.local, %src, "DTLS from another address dropped");
            port.stats.errors.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let was = d.endpoint.state();
        d.peer = Some(src);
        if let Err(e) = d.endpoint.handle_datagram(payload, now) {
            d.count(port.local, &e);
        }
        let out = std::iter::from_fn(|| d.endpoint.poll_transmit()).collect::<Vec<_>>();
        let connected = was != d.endpoint.state()
            && d.endpoint.state() == relay_media::dtls::DtlsState::Connected;
        let keys = d.keys().cloned().filter(|_| connected);
        if let Some(keys) = keys {
            // From now on the port's media is SRTP keyed by the handshake
            // (SRTCP too, on a muxing party's RTP port).
            match PortSrtp::from_dtls(&keys) {
                Ok(srtp) => {
                    tracing::info!(local = %port.local, %src, profile = ?keys.profile, "DTLS connected");
                    st.srtp = Some(Box::new(srtp));
                }
                Err(e) => {
                    tracing::warn!(local = %port.local, error = %e, "DTLS keys unusable: port drops media");
                    if let Some(d) = st.dtls.as_mut() {
                        d.counters.failures += 1;
                    }
                }
            }
        }
        out
    };
    send(port, &out, Some(src));
    true
}

/// Retransmits lost flights and fails handshakes that ran out of time
/// (the call manager's tick).
pub(crate) fn on_tick(port: &MediaPort, now: std::time::Instant) {
    let (out, dest) = {
        let mut st = port.state();
        let fallback = st.learner.destination(st.symmetric);
        let Some(d) = st.dtls.as_mut() else { return };
        // A restored session has nothing to time out or to start.
        if d.restored.is_some() && d.endpoint.state() == DtlsState::New {
            return;
        }
        if d.endpoint.poll_timeout().is_none()
            && d.endpoint.state() != relay_media::dtls::DtlsState::New
        {
            return;
        }
        if let Err(e) = d.endpoint.handle_timeout(now) {
            d.count(port.local, &e);
        }
        let out: Vec<_> = std::iter::from_fn(|| d.endpoint.poll_transmit()).collect();
        (out, d.peer.or(fallback))
    };
    send(port, &out, dest);
}

impl crate::calls::CallManager {
    /// Gives the ports of media `index` of party `tag` a DTLS endpoint in
    /// `role` (None: none), after an answer settled who is client; the
    /// ports and those sending to them leave the kernel while DTLS runs.
    pub fn set_dtls(&mut self, call_id: &str, tag: &str, index: usize, role: Option<DtlsRole>) {
        let Self { calls, kernel, .. } = self;
        let Some(call) = calls.get(call_id) else {
            return;
        };
        let Some(party) = call.find(tag) else { return };
        let Some(media) = call.monologues[party].medias.get(index) else {
            return;
        };
        if !set_endpoint(media, role, std::time::Instant::now()) {
            return;
        }
        for port in media.ports() {
            kernel.sync(port);
            let sink = port.state().sink.upgrade();
            if let Some(sink) = sink {
                kernel.sync(&sink);
            }
        }
        // Ports whose sink is this party's (the other direction).
        for other in &call.monologues {
            for md in &other.medias {
                for port in md.ports() {
                    let sink = port.state().sink.upgrade();
                    if sink.is_some_and(|s| {
                        media.ports().iter().any(|p| std::sync::Arc::ptr_eq(p, &s))
                    }) {
                        kernel.sync(port);
                    }
                }
            }
        }
    }

    /// The SRTP keys the DTLS handshake on the port bound to `local` gave,
    /// for the SRTP transform.
    pub fn dtls_keys(&self, local: std::net::SocketAddr) -> Option<PortSrtpKeys> {
        self.calls
            .values()
            .flat_map(crate::calls::model::Call::ports)
            .find(|p| p.local == local)
            .and_then(|p| p.state().dtls.as_ref().and_then(|d| d.keys().cloned()))
    }
}
