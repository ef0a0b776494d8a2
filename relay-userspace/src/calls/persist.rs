//! Calls as state records ([`relay_state`]) and the pieces of a call back
//! from them. Records carry wall-clock times and names; the call model
//! carries monotonic instants and indices, so both directions go through
//! a [`WallClock`] read once per batch.

use std::{sync::atomic::Ordering, time::Duration};

use relay_common::{RtpStats, StreamStats};
use relay_state::{
    CallRecord, CountsRecord, KernelRecord, MediaRecord, MonologueRecord, PortRecord, RtpRecord,
    SubscriptionRecord, TrackingRecord,
};
use tokio::time::Instant;

use super::{kernel::Kernel, model::Call, port::MediaPort, Interface};
use crate::datapath::MediaTracking;

/// One reading of both clocks, to convert instants to wall-clock
/// milliseconds and back.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    now: Instant,
    now_ms: u64,
}

impl WallClock {
    /// Both clocks now.
    pub fn now() -> Self {
        WallClock {
            now: Instant::now(),
            now_ms: unix_ms(),
        }
    }

    /// Wall-clock milliseconds of the monotonic `t`.
    pub fn ms_of(&self, t: Instant) -> u64 {
        if t <= self.now {
            let ago = self.now.duration_since(t).as_millis() as u64;
            self.now_ms.saturating_sub(ago)
        } else {
            let ahead = t.duration_since(self.now).as_millis() as u64;
            self.now_ms.saturating_add(ahead)
        }
    }

    /// The monotonic instant of wall-clock `ms` (one before the monotonic
    /// clock can express is taken as now).
    pub fn instant_of(&self, ms: u64) -> Instant {
        if ms <= self.now_ms {
            let ago = Duration::from_millis(self.now_ms - ms);
            self.now.checked_sub(ago).unwrap_or(self.now)
        } else {
            self.now + Duration::from_millis(ms - self.now_ms)
        }
    }

    /// Wall-clock milliseconds now.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The monotonic instant of this reading.
    pub fn instant(&self) -> Instant {
        self.now
    }
}

/// Milliseconds since the epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The record of `call` as it is now.
pub fn call_record(
    call: &Call,
    interfaces: &[Interface],
    kernel: &Kernel,
    clock: &WallClock,
) -> CallRecord {
    CallRecord {
        call_id: call.id.clone(),
        created_ms: clock.ms_of(call.created),
        last_signal_ms: clock.ms_of(call.last_signal),
        delete_at_ms: call.delete_at.map(|t| clock.ms_of(t)),
        monologues: call
            .monologues
            .iter()
            .map(|m| {
                let spec = &interfaces[m.interface].spec;
                MonologueRecord {
                    tag: m.tag.clone(),
                    aliases: m.aliases.clone(),
                    via_branch: m.via_branch.clone(),
                    interface: spec.name.clone(),
                    address: spec.address,
                    peer: m.peer,
                    created_ms: m.created_unix.saturating_mul(1000),
                    medias: m
                        .medias
                        .iter()
                        .map(|md| MediaRecord {
                            index: md.index,
                            kind: md.kind.clone(),
                            protocol: md.protocol.clone(),
                            muted: md.muted,
                            rtp: port_record(&md.rtp, kernel, clock),
                            rtcp: port_record(&md.rtcp, kernel, clock),
                        })
                        .collect(),
                    subscribed: m
                        .subscribed
                        .iter()
                        .map(|&(source, media)| SubscriptionRecord { source, media })
                        .collect(),
                }
            })
            .collect(),
    }
}

fn port_record(port: &MediaPort, kernel: &Kernel, clock: &WallClock) -> PortRecord {
    let (packets, bytes, errors, dropped) = port.user_counts();
    port.stats.recorded.store(packets, Ordering::Relaxed);
    // RTP figures of a kernel stream live in the kernel; the record keeps
    // them as of now, for a relayd that cannot adopt the kernel's.
    let rtp = kernel.rtp(port);
    let live = kernel.live_stats(port);
    let mut st = port.state();
    // SRTP keys and ROCs, whether SDES or a DTLS handshake made them, and
    // a WebRTC party's ICE and DTLS, so a browser's call goes on.
    let srtp = st.srtp.as_mut().map(|s| s.record());
    let ice = st.ice.as_ref().map(|agent| relay_state::IceRecord {
        ufrag: agent.local().ufrag.clone(),
        pwd: agent.local().pwd.clone(),
        remote_ufrag: agent.remote_ufrag().map(str::to_owned),
        nominated: agent.nominated(),
    });
    let dtls = st.dtls.as_ref().map(|d| d.record());
    let webrtc =
        (ice.is_some() || dtls.is_some()).then_some(relay_state::WebRtcRecord { ice, dtls });
    PortRecord {
        local: port.local,
        learner: st.learner.to_record(),
        symmetric: st.symmetric,
        tracking: tracking_record(st.media),
        kernel: st.kernel.map(|k| KernelRecord {
            peer: k.peer,
            source: k.source,
            strict_source: k.strict_source,
            slot: k.stats_slot,
            to_userspace: k.to_userspace,
            max_pps: k.max_pps,
        }),
        user: CountsRecord {
            packets,
            bytes,
            errors,
            dropped,
            last_seen_ns: 0,
        },
        last_packet_ms: st.last_packet.map(|t| clock.ms_of(t)),
        kernel_retired: counts_record(&st.kernel_retired),
        kernel_live: counts_record(&live),
        rtp: rtp_record(&rtp),
        srtp,
        webrtc,
    }
}

/// Puts the counters and figures of `record` back into a freshly opened
/// `port`. Call [`count_unadopted`] for a port whose kernel entry was not
/// adopted.
pub fn restore_port(port: &MediaPort, record: &PortRecord, clock: &WallClock) {
    let s = &port.stats;
    s.packets.store(record.user.packets, Ordering::Relaxed);
    s.bytes.store(record.user.bytes, Ordering::Relaxed);
    s.errors.store(record.user.errors, Ordering::Relaxed);
    s.dropped.store(record.user.dropped, Ordering::Relaxed);
    s.recorded.store(record.user.packets, Ordering::Relaxed);
    let mut st = port.state();
    st.symmetric = record.symmetric;
    st.media = tracking_of(record.tracking);
    st.kernel_retired = stream_stats_of(&record.kernel_retired);
    st.rtp = rtp_stats_of(&record.rtp);
    st.last_packet = record.last_packet_ms.map(|ms| clock.instant_of(ms));
    let webrtc = record.webrtc.as_ref();
    let dtls = webrtc.and_then(|w| w.dtls.as_ref());
    if let Some(ice) = webrtc.and_then(|w| w.ice.as_ref()) {
        let credentials = relay_media::IceCredentials {
            ufrag: ice.ufrag.clone(),
            pwd: ice.pwd.clone(),
        };
        let mut agent = relay_media::IceLiteAgent::new(credentials, ice.remote_ufrag.clone());
        if let Some(addr) = ice.nominated {
            agent.resume(addr, std::time::Instant::now());
        }
        st.ice = Some(agent);
    }
    if let Some(d) = dtls {
        let profile = record
            .srtp
            .as_ref()
            .and_then(|r| relay_media::SrtpProfile::from_sdes_name(&r.party.suite));
        st.dtls = super::dtls::PortDtls::from_record(d, profile);
        if st.dtls.is_none() {
            tracing::warn!(local = %port.local, "recorded DTLS session not usable: port drops media until signalled again");
        }
    }
    st.srtp = record.srtp.as_ref().and_then(|r| {
        super::sdes::PortSrtp::from_record(r, dtls.is_none())
            .map_err(|e| {
                tracing::warn!(local = %port.local, error = %e, "recorded SRTP state not usable: port drops media until signalled again");
            })
            .ok()
            .map(Box::new)
    });
}

/// Folds the recorded counters of the kernel entry `port` had into its
/// retired ones: the entry was not adopted, so its counters are gone from
/// the kernel.
pub fn count_unadopted(port: &MediaPort, record: &PortRecord) {
    port.state()
        .kernel_retired
        .accumulate(&stream_stats_of(&record.kernel_live));
}

fn tracking_record(t: MediaTracking) -> TrackingRecord {
    match t {
        MediaTracking::None => TrackingRecord::None,
        MediaTracking::Rtp { clock_rate } => TrackingRecord::Rtp { clock_rate },
        MediaTracking::Rtcp => TrackingRecord::Rtcp,
    }
}

fn tracking_of(t: TrackingRecord) -> MediaTracking {
    match t {
        TrackingRecord::None => MediaTracking::None,
        TrackingRecord::Rtp { clock_rate } => MediaTracking::Rtp { clock_rate },
        TrackingRecord::Rtcp => MediaTracking::Rtcp,
    }
}

fn counts_record(s: &StreamStats) -> CountsRecord {
    CountsRecord {
        packets: s.packets,
        bytes: s.bytes,
        errors: s.passed,
        dropped: s.dropped,
        last_seen_ns: s.last_seen_ns,
    }
}

fn stream_stats_of(c: &CountsRecord) -> StreamStats {
    StreamStats {
        packets: c.packets,
        bytes: c.bytes,
        passed: c.errors,
        dropped: c.dropped,
        last_seen_ns: this_boot(c.last_seen_ns, libc::CLOCK_MONOTONIC_COARSE),
        ..StreamStats::default()
    }
}

/// `ns` on `clock`, or 0 when it lies ahead of the clock: a time of an
/// earlier boot (the host rebooted while no relayd ran), which would make
/// a dead stream look active for as long as the old uptime.
fn this_boot(ns: u64, clock: libc::clockid_t) -> u64 {
    if ns > super::kernel::clock_ns(clock) {
        0
    } else {
        ns
    }
}

macro_rules! same_fields {
    ($from:expr, $to:ident { $($f:ident),* }) => {
        $to { $($f: $from.$f),* }
    };
}

fn rtp_record(r: &RtpStats) -> RtpRecord {
    same_fields!(
        r,
        RtpRecord {
            rtp_packets,
            rtcp_packets,
            rtcp_bytes,
            other_packets,
            received,
            last_arrival_ns,
            ssrc,
            ssrc_changes,
            cycles,
            base_seq,
            bad_seq,
            jitter_q4,
            last_ts,
            lost_before,
            max_seq,
            payload_type,
            state,
            clock_rate
        }
    )
}

fn rtp_stats_of(r: &RtpRecord) -> RtpStats {
    same_fields!(
        r,
        RtpStats {
            rtp_packets,
            rtcp_packets,
            rtcp_bytes,
            other_packets,
            received,
            last_arrival_ns,
            ssrc,
            ssrc_changes,
            cycles,
            base_seq,
            bad_seq,
            jitter_q4,
            last_ts,
            lost_before,
            max_seq,
            payload_type,
            state,
            clock_rate
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_round_trips_instants() {
        let clock = WallClock::now();
        for offset in [0u64, 1, 1500, 3_600_000] {
            let past = clock.instant() - Duration::from_millis(offset);
            let future = clock.instant() + Duration::from_millis(offset);
            assert_eq!(clock.ms_of(past), clock.now_ms() - offset);
            assert_eq!(clock.ms_of(future), clock.now_ms() + offset);
            assert_eq!(clock.instant_of(clock.ms_of(future)), future);
        }
    }

    #[test]
    fn times_of_an_earlier_boot_are_dropped() {
        let now = super::super::kernel::clock_ns(libc::CLOCK_MONOTONIC_COARSE);
        let ahead = CountsRecord {
            last_seen_ns: now + 3_600_000_000_000,
            ..CountsRecord::default()
        };
        assert_eq!(stream_stats_of(&ahead).last_seen_ns, 0);
        let earlier = CountsRecord {
            last_seen_ns: now / 2,
            ..CountsRecord::default()
        };
        assert_eq!(stream_stats_of(&earlier).last_seen_ns, now / 2);
    }

    #[test]
    fn rtp_figures_round_trip() {
        let r = RtpStats {
            rtp_packets: 1,
            rtcp_packets: 2,
            rtcp_bytes: 3,
            other_packets: 4,
            received: 5,
            last_arrival_ns: 6,
            ssrc: 7,
            ssrc_changes: 8,
            cycles: 9,
            base_seq: 10,
            bad_seq: 11,
            jitter_q4: 12,
            last_ts: 13,
            lost_before: 14,
            max_seq: 15,
            payload_type: 16,
            state: 17,
            clock_rate: 18,
        };
        assert_eq!(rtp_stats_of(&rtp_record(&r)), r);
    }
}
