//! Calls rebuilt from the state store at start-up.
//!
//! A restored call goes through the same pieces as a live one: its port
//! pairs are claimed from the pools and bound again, its ports get their
//! learners, counters and RTP figures back, are paired as the offer and
//! answer paired them, and their kernel entries are adopted from the
//! running program (counters continue) or installed the way a live
//! confirmation installs them. A call that cannot be rebuilt whole is
//! released and reported, never half restored.

use relay_state::{CallRecord, MediaRecord, PortRecord};

use super::{
    learning::Learner,
    model::{Call, Media, Monologue, RtcpMuxFlag},
    persist::{self, WallClock},
    port::MediaPort,
    CallManager,
};
use crate::ports::{PortError, PortPair};

/// Why a stored call could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The call names an interface this relayd does not have.
    #[error("interface {name} ({address}) is not configured")]
    UnknownInterface {
        /// Its name.
        name: String,
        /// Its address.
        address: std::net::IpAddr,
    },
    /// A port pair could not be bound again.
    #[error("port {port} on {address}: {source}")]
    Port {
        /// The relay address.
        address: std::net::IpAddr,
        /// The RTP port.
        port: u16,
        /// Why.
        #[source]
        source: PortError,
    },
    /// The record contradicts itself.
    #[error("inconsistent record: {0}")]
    Inconsistent(&'static str),
    /// A bound socket could not be registered with the runtime.
    #[error("media socket: {0}")]
    Socket(#[source] std::io::Error),
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Calls restored.
    pub restored: usize,
    /// Ports whose kernel entry was adopted from the running program.
    pub adopted_streams: usize,
    /// Calls that could not be restored, and why (they are released).
    pub failed: Vec<(String, RestoreError)>,
    /// Kernel entries nobody claimed, removed.
    pub stale_streams: usize,
}

impl CallManager {
    /// Rebuilds `records` (from the state store), then removes kernel
    /// entries no restored call claimed. Calls whose time is up
    /// (timeouts, delete-delay) go on the next [`CallManager::tick`].
    pub fn restore(&mut self, records: impl IntoIterator<Item = CallRecord>) -> RestoreReport {
        let clock = WallClock::now();
        let mut report = RestoreReport::default();
        for record in records {
            match self.restore_call(&record, &clock) {
                Ok(adopted) => {
                    report.restored += 1;
                    report.adopted_streams += adopted;
                }
                Err(e) => {
                    tracing::warn!(call_id = %record.call_id, error = %e, "stored call not restored; released");
                    // The store still has it: say it is gone.
                    self.changed.mark(&record.call_id);
                    report.failed.push((record.call_id, e));
                }
            }
        }
        report.stale_streams = self.kernel.finish_adoption();
        report
    }

    /// Restores one call; returns how many kernel entries it adopted.
    fn restore_call(
        &mut self,
        record: &CallRecord,
        clock: &WallClock,
    ) -> Result<usize, RestoreError> {
        let count = record.monologues.len();
        if record.monologues.iter().any(|m| {
            m.peer.is_some_and(|p| p >= count) || m.subscribed.iter().any(|s| s.source >= count)
        }) {
            return Err(RestoreError::Inconsistent("a party's peer is out of range"));
        }
        if self.calls.contains_key(&record.call_id) {
            return Err(RestoreError::Inconsistent("call-id restored twice"));
        }
        let interfaces = record
            .monologues
            .iter()
            .map(|m| {
                self.interfaces
                    .iter()
                    .position(|i| i.spec.name == m.interface && i.spec.address == m.address)
                    .ok_or_else(|| RestoreError::UnknownInterface {
                        name: m.interface.clone(),
                        address: m.address,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pairs = self.claim_pairs(record, &interfaces)?;
        let mut call = Call {
            id: record.call_id.clone(),
            monologues: Vec::with_capacity(count),
            created_unix: record.created_ms / 1000,
            created_us: u32::try_from(record.created_ms % 1000).unwrap_or(0) * 1000,
            created: clock.instant_of(record.created_ms),
            last_signal: clock.instant_of(record.last_signal_ms),
            last_signal_unix: record.last_signal_ms / 1000,
            delete_at: record.delete_at_ms.map(|ms| clock.instant_of(ms)),
            restored: true,
        };
        let mut pairs = pairs.into_iter();
        for (m, &interface) in record.monologues.iter().zip(&interfaces) {
            let mut medias = Vec::with_capacity(m.medias.len());
            for md in &m.medias {
                let Some(pair) = pairs.next() else {
                    unreachable!("a pair was claimed for every media")
                };
                match self.restore_media(md, pair, clock) {
                    Ok(media) => medias.push(media),
                    Err(e) => {
                        // Free what is built so far, and the pairs not used
                        // yet; its counters are an earlier relayd's, not
                        // this one's totals.
                        call.monologues.push(monologue_of(m, interface, medias));
                        for port in call.ports() {
                            port.forget_counts();
                        }
                        self.free_call(call);
                        for (i, rest) in pairs {
                            self.interfaces[i].pool.release(rest.rtp_port);
                        }
                        return Err(e);
                    }
                }
            }
            call.monologues.push(monologue_of(m, interface, medias));
        }
        // The record does not say who offered: the first party did.
        let first = call.monologues.first().and_then(|m| m.tag.clone());
        for m in &mut call.monologues {
            m.offerer = m.tag.is_some() && m.tag == first;
        }
        pair_with_peers(&call);
        // Subscriptions before the kernel: a source with subscribers stays
        // out of it, as live.
        if let Err(e) = super::subscribe::relink(&mut call, record) {
            for port in call.ports() {
                port.forget_counts();
            }
            self.free_call(call);
            return Err(e);
        }
        let mut adopted = 0;
        for (port, rec) in call.ports().zip(record.ports()) {
            self.owners.insert(port.local, call.id.clone());
            if self.kernel.adopt(port) {
                adopted += 1;
            } else {
                persist::count_unadopted(port, rec);
            }
        }
        for port in call.ports() {
            self.kernel.sync(port);
            self.deferred.start(port, &self.events);
        }
        self.calls.insert(call.id.clone(), call);
        Ok(adopted)
    }

    /// Binds every media's pair again, all or nothing.
    fn claim_pairs(
        &mut self,
        record: &CallRecord,
        interfaces: &[usize],
    ) -> Result<Vec<(usize, PortPair)>, RestoreError> {
        let mut claimed: Vec<(usize, PortPair)> = Vec::new();
        let release = |this: &mut Self, claimed: Vec<(usize, PortPair)>| {
            for (i, pair) in claimed {
                this.interfaces[i].pool.release(pair.rtp_port);
            }
        };
        for (m, &i) in record.monologues.iter().zip(interfaces) {
            for md in &m.medias {
                let port = md.rtp.local.port();
                let consistent = md.rtcp.local.port() == port.wrapping_add(1)
                    && md.rtp.local.ip() == m.address
                    && md.rtcp.local.ip() == m.address;
                if !consistent {
                    release(self, claimed);
                    return Err(RestoreError::Inconsistent(
                        "a media's ports are not an RTP/RTCP pair on its interface",
                    ));
                }
                match self.interfaces[i].pool.claim(port) {
                    Ok(pair) => claimed.push((i, pair)),
                    Err(source) => {
                        release(self, claimed);
                        return Err(RestoreError::Port {
                            address: m.address,
                            port,
                            source,
                        });
                    }
                }
            }
        }
        Ok(claimed)
    }

    fn restore_media(
        &mut self,
        record: &MediaRecord,
        pair: (usize, PortPair),
        clock: &WallClock,
    ) -> Result<Media, RestoreError> {
        let (iface, pair) = pair;
        let port = pair.rtp_port;
        let (rtp_local, rtcp_local) = (pair.rtp_local(), pair.rtcp_local());
        let open = |socket, local, rec: &PortRecord| {
            let learner = Learner::from_record(&rec.learner, clock.instant());
            let p = MediaPort::new(socket, local, learner).map_err(RestoreError::Socket)?;
            persist::restore_port(&p, rec, clock);
            Ok::<_, RestoreError>(p)
        };
        let opened = open(pair.rtp, rtp_local, &record.rtp)
            .and_then(|rtp| Ok((rtp, open(pair.rtcp, rtcp_local, &record.rtcp)?)));
        let webrtc = record.rtp.webrtc.as_ref();
        let dtls = webrtc.and_then(|w| w.dtls.as_ref());
        match opened {
            Ok((rtp, rtcp)) => Ok(Media {
                ptime: None,
                rtcp_mux: false,
                rtcp_mux_flag: RtcpMuxFlag::Default,
                mid: None,
                ice_ufrag: webrtc
                    .and_then(|w| w.ice.as_ref())
                    .and_then(|i| i.remote_ufrag.clone()),
                // A DTLS party's keys are its handshake's, not SDES's.
                sdes: match dtls {
                    Some(_) => Default::default(),
                    None => super::sdes::restored_media(record.rtp.srtp.as_ref()),
                },
                dtls: dtls
                    .map(|d| super::dtls::PeerDtls {
                        // The party's a=setup: the other role than the relay's.
                        setup: Some(if d.server { "active" } else { "passive" }.to_owned()),
                        fingerprint: Some(d.remote_fingerprint.clone()),
                    })
                    .unwrap_or_default(),
                codecs: Vec::new(),
                index: record.index,
                kind: record.kind.clone(),
                protocol: record.protocol.clone(),
                rtp,
                rtcp,
                muted: record.muted,
            }),
            Err(e) => {
                self.interfaces[iface].pool.release(port);
                Err(e)
            }
        }
    }
}

fn monologue_of(
    record: &relay_state::MonologueRecord,
    interface: usize,
    medias: Vec<Media>,
) -> Monologue {
    Monologue {
        tag: record.tag.clone(),
        aliases: record.aliases.clone(),
        via_branch: record.via_branch.clone(),
        interface,
        peer: record.peer,
        medias,
        created_unix: record.created_ms / 1000,
        sdp_version: None,
        uses_ice: false,
        subscribed: Vec::new(),
        sdp: None,
        offerer: false,
    }
}

/// Points each party's ports at its peer's matching ports, media by media,
/// as the offer and answer did (see [`Call::link_sinks`]).
fn pair_with_peers(call: &Call) {
    call.link_sinks();
}
