//! RTP quality figures: the host-side model of what the XDP program does to
//! [`RtpStats`] for every packet (`relay-ebpf/include/rtp.h`), in the same
//! integer arithmetic, so that relayd's userspace forwarder keeps the same
//! figures and tests can check the kernel against it.
//!
//! - Sequence numbers, wraps, reordering and restarts: RFC 3550 A.1, without
//!   the probation period (the stream was negotiated; its first packet is
//!   taken as valid).
//! - Loss: RFC 3550 A.3, expected minus received, kept across SSRC changes
//!   and sequence restarts in `lost_before`.
//! - Jitter: RFC 3550 A.8 (`J += (|D| - J) / 16`, kept times 16), with the
//!   arrival clock converted to timestamp units from the time between two
//!   packets, so nothing overflows however long the host has been up.
//! - rtcp-mux (RFC 5761 section 4): a second byte of 192..=223 is RTCP.
//!
//! Only the 12-byte fixed header is read: SRTP works the same.

use crate::abi::{RtpStats, TF_RTCP, TF_RTP};

/// RFC 3550 A.1 `RTP_SEQ_MOD`.
pub const SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1 `MAX_DROPOUT`: a jump ahead this far is still loss, not a restart.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1 `MAX_MISORDER`: this far behind is a late packet, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// `bad_seq` when no restart is pending (`RTP_SEQ_MOD + 1`).
pub const NO_BAD_SEQ: u32 = SEQ_MOD + 1;
/// Longest gap between two packets fed into the jitter (2^40 ns, ~18 min):
/// keeps `gap * clock_rate` inside 64 bits.
pub const MAX_GAP_NS: u64 = 1 << 40;
/// Largest |D| fed into the jitter, in timestamp units: keeps the ×16 figure
/// inside 32 bits whatever garbage timestamps a sender puts in.
pub const MAX_JITTER_D: u32 = 1 << 24;
/// [`RtpStats::state`] before the first RTP packet.
pub const STATE_NONE: u8 = 0;
/// [`RtpStats::state`] once an SSRC is being tracked.
pub const STATE_TRACKING: u8 = 1;

/// What a datagram on a media port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// RTP (version 2, 12-byte header, not in the RTCP type range).
    Rtp,
    /// RTCP (on the RTCP port, or multiplexed on the RTP port).
    Rtcp,
    /// Anything else: STUN, DTLS, garbage.
    Other,
}

/// Classifies a UDP payload that arrived on a port with stream flags `flags`.
pub fn classify(payload: &[u8], flags: u32) -> PacketKind {
    let rtcp_type = |b: u8| (192..=223).contains(&b);
    let version2 = payload.first().is_some_and(|b| b & 0xc0 == 0x80);
    if flags & TF_RTCP != 0 {
        return if payload.len() >= 4 && version2 && rtcp_type(payload[1]) {
            PacketKind::Rtcp
        } else {
            PacketKind::Other
        };
    }
    if payload.len() < 12 || !version2 {
        PacketKind::Other
    } else if rtcp_type(payload[1]) {
        PacketKind::Rtcp
    } else {
        PacketKind::Rtp
    }
}

/// Expected minus received for the current SSRC (A.3), never negative
/// (duplicates can make it so).
pub fn lost_now(s: &RtpStats) -> u32 {
    if s.state == STATE_NONE {
        return 0;
    }
    let extended_max = s.cycles.wrapping_add(u32::from(s.max_seq));
    let expected = extended_max.wrapping_sub(s.base_seq).wrapping_add(1);
    let lost = i64::from(expected) - s.received as i64;
    lost.clamp(0, i64::from(u32::MAX)) as u32
}

/// Packets lost over the stream's life: earlier SSRCs and restarts included.
pub fn lost_total(s: &RtpStats) -> u64 {
    u64::from(s.lost_before) + u64::from(lost_now(s))
}

/// Extended highest sequence number of the current SSRC (A.1).
pub fn extended_max_seq(s: &RtpStats) -> u32 {
    s.cycles.wrapping_add(u32::from(s.max_seq))
}

/// Interarrival jitter in timestamp units (A.8's `jitter >> 4`).
pub fn jitter_units(s: &RtpStats) -> u32 {
    s.jitter_q4 >> 4
}

/// Jitter in microseconds at `clock_rate` (None when the rate is unknown).
pub fn jitter_us(s: &RtpStats, clock_rate: u32) -> Option<u64> {
    (clock_rate != 0).then(|| u64::from(jitter_units(s)) * 1_000_000 / u64::from(clock_rate))
}

/// A.1 `init_seq`, folding what the previous sequence run lost into
/// `lost_before` first.
fn init_seq(s: &mut RtpStats, seq: u16) {
    s.lost_before = s.lost_before.wrapping_add(lost_now(s));
    s.base_seq = u32::from(seq);
    s.max_seq = seq;
    s.bad_seq = NO_BAD_SEQ;
    s.cycles = 0;
    s.received = 0;
}

/// A.1 `update_seq`: whether the packet counts as received (false for the
/// first packet of a suspected restart, which only arms `bad_seq`). A
/// confirmed restart re-initialises the sequence state.
fn update_seq(s: &mut RtpStats, seq: u16) -> SeqVerdict {
    let udelta = seq.wrapping_sub(s.max_seq);
    let verdict = if udelta < MAX_DROPOUT {
        // In order, with a permissible gap.
        if seq < s.max_seq {
            s.cycles = s.cycles.wrapping_add(SEQ_MOD);
        }
        s.max_seq = seq;
        SeqVerdict::Counted
    } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
        // A very large jump: a restart if the next packet follows it.
        if u32::from(seq) == s.bad_seq {
            init_seq(s, seq);
            SeqVerdict::Restarted
        } else {
            s.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
            return SeqVerdict::Ignored;
        }
    } else {
        // Duplicate or reordered.
        SeqVerdict::Counted
    };
    s.received += 1;
    verdict
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SeqVerdict {
    Counted,
    Restarted,
    Ignored,
}

/// RFC 3550 A.8 with the arrival delta converted to timestamp units.
fn update_jitter(s: &mut RtpStats, ts: u32, clock_rate: u32, now_ns: u64) {
    let gap_ns = now_ns.saturating_sub(s.last_arrival_ns).min(MAX_GAP_NS);
    // Rounded to the nearest unit so truncation does not bias D.
    let arrival_units = ((gap_ns * u64::from(clock_rate) + 500_000_000) / 1_000_000_000) as u32;
    let d = arrival_units.wrapping_sub(ts.wrapping_sub(s.last_ts)) as i32;
    let abs_d = d.unsigned_abs().min(MAX_JITTER_D);
    s.jitter_q4 = s
        .jitter_q4
        .wrapping_add(abs_d)
        .wrapping_sub(s.jitter_q4.wrapping_add(8) >> 4);
}

/// Feeds one packet (its UDP payload) that arrived at `now_ns`
/// (CLOCK_MONOTONIC) on a stream with `flags` and `clock_rate`.
pub fn observe(s: &mut RtpStats, payload: &[u8], flags: u32, clock_rate: u32, now_ns: u64) {
    if flags & (TF_RTP | TF_RTCP) == 0 {
        return;
    }
    // The kernel's copy carries the clock its jitter is in (relayd writes
    // it on install); the model keeps it the same way.
    s.clock_rate = clock_rate;
    match classify(payload, flags) {
        PacketKind::Other => s.other_packets += 1,
        PacketKind::Rtcp => {
            s.rtcp_packets += 1;
            s.rtcp_bytes += payload.len() as u64;
        }
        PacketKind::Rtp => observe_rtp(s, payload, clock_rate, now_ns),
    }
}

fn observe_rtp(s: &mut RtpStats, p: &[u8], clock_rate: u32, now_ns: u64) {
    let seq = u16::from_be_bytes([p[2], p[3]]);
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    s.rtp_packets += 1;
    s.payload_type = p[1] & 0x7f;
    if s.state == STATE_NONE || ssrc != s.ssrc {
        if s.state != STATE_NONE {
            s.ssrc_changes = s.ssrc_changes.wrapping_add(1);
        }
        init_seq(s, seq);
        s.received = 1;
        s.ssrc = ssrc;
        s.jitter_q4 = 0;
        s.state = STATE_TRACKING;
    } else {
        let verdict = update_seq(s, seq);
        if verdict == SeqVerdict::Counted && clock_rate != 0 {
            update_jitter(s, ts, clock_rate, now_ns);
        }
    }
    s.last_ts = ts;
    s.last_arrival_ns = now_ns;
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = pt;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn feed(s: &mut RtpStats, seqs: &[u16]) {
        for &seq in seqs {
            observe(s, &rtp(seq, 0, 7, 0), TF_RTP, 0, 0);
        }
    }

    #[test]
    fn classification_follows_rfc5761_and_rfc7983() {
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0];
        let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1];
        assert_eq!(classify(&stun, TF_RTP), PacketKind::Other);
        assert_eq!(classify(&dtls, TF_RTP), PacketKind::Other);
        assert_eq!(classify(&rtp(1, 0, 1, 0), TF_RTP), PacketKind::Rtp);
        assert_eq!(classify(&rtp(1, 0, 1, 0x80 | 8), TF_RTP), PacketKind::Rtp);
        // Muxed RTCP: too short for RTP is still RTCP only when 12+ bytes
        // long on the RTP port; on the RTCP port 4 bytes do.
        let mut sr = [0u8; 28];
        sr[0] = 0x80;
        sr[1] = 200;
        assert_eq!(classify(&sr, TF_RTP), PacketKind::Rtcp);
        assert_eq!(classify(&rr, TF_RTCP), PacketKind::Rtcp);
        assert_eq!(classify(&rtp(1, 0, 1, 0), TF_RTCP), PacketKind::Other);
        assert_eq!(classify(&[0x80], TF_RTP), PacketKind::Other);
        assert_eq!(classify(&[], TF_RTCP), PacketKind::Other);
    }

    #[test]
    fn in_order_stream_has_no_loss() {
        let mut s = RtpStats::default();
        feed(&mut s, &(100..200).collect::<Vec<_>>());
        assert_eq!((s.received, lost_total(&s)), (100, 0));
        assert_eq!(extended_max_seq(&s), 199);
    }

    #[test]
    fn wrap_counts_a_cycle() {
        let mut s = RtpStats::default();
        feed(&mut s, &[65533, 65534, 65535, 0, 1, 2]);
        assert_eq!(s.cycles, SEQ_MOD);
        assert_eq!(extended_max_seq(&s), SEQ_MOD + 2);
        assert_eq!((s.received, lost_total(&s)), (6, 0));
    }

    #[test]
    fn burst_of_loss_is_counted() {
        let mut s = RtpStats::default();
        feed(&mut s, &[10, 11, 12, 18, 19, 20]);
        assert_eq!(lost_total(&s), 5);
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut s = RtpStats::default();
        feed(&mut s, &[10, 12, 11, 13, 15, 14]);
        assert_eq!((s.received, lost_total(&s), s.max_seq), (6, 0, 15));
    }

    #[test]
    fn a_restart_needs_two_packets_in_a_row() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1000, 1001, 1002, 1003]);
        // One wild packet: ignored, nothing lost.
        feed(&mut s, &[30000]);
        assert_eq!((s.received, lost_total(&s), s.max_seq), (4, 0, 1003));
        feed(&mut s, &[1004]);
        // A jump followed by its successor: a restart.
        feed(&mut s, &[40000, 40001, 40002]);
        // As A.1 has it: the sequence starts again at the packet that
        // confirmed the restart.
        assert_eq!(s.base_seq, 40001);
        assert_eq!((s.received, lost_total(&s)), (2, 0));
    }

    #[test]
    fn ssrc_change_restarts_and_keeps_earlier_loss() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1, 2, 5]);
        assert_eq!(lost_total(&s), 2);
        observe(&mut s, &rtp(900, 0, 8, 0), TF_RTP, 0, 0);
        observe(&mut s, &rtp(902, 0, 8, 0), TF_RTP, 0, 0);
        assert_eq!((s.ssrc, s.ssrc_changes), (8, 1));
        assert_eq!(s.lost_before, 2);
        assert_eq!(lost_total(&s), 3);
    }

    #[test]
    fn other_and_rtcp_do_not_touch_the_figures() {
        let mut s = RtpStats::default();
        feed(&mut s, &[1, 2]);
        let before = s;
        observe(&mut s, b"garbage!", TF_RTP, 8000, 5);
        let mut sr = [0u8; 28];
        sr[0] = 0x80;
        sr[1] = 200;
        observe(&mut s, &sr, TF_RTP, 8000, 6);
        assert_eq!((s.other_packets, s.rtcp_packets, s.rtcp_bytes), (1, 1, 28));
        assert_eq!(
            (
                s.received,
                s.max_seq,
                s.last_ts,
                s.last_arrival_ns,
                s.jitter_q4
            ),
            (
                before.received,
                before.max_seq,
                before.last_ts,
                before.last_arrival_ns,
                before.jitter_q4
            )
        );
    }

    #[test]
    fn no_flags_no_figures() {
        let mut s = RtpStats::default();
        observe(&mut s, &rtp(1, 0, 1, 0), 0, 8000, 1);
        assert_eq!(s, RtpStats::default());
    }

    /// Floating-point RFC 3550 A.8 over absolute times, the reference.
    fn float_jitter(schedule: &[(u64, u16, u32)], clock_rate: u32) -> f64 {
        let mut j = 0f64;
        let mut prev: Option<f64> = None;
        for &(arrival_ns, _, ts) in schedule {
            let transit = arrival_ns as f64 * f64::from(clock_rate) / 1e9 - f64::from(ts);
            if let Some(p) = prev {
                j += ((transit - p).abs() - j) / 16.0;
            }
            prev = Some(transit);
        }
        j
    }

    /// 20 ms G.711 packets (sequence number, timestamp at 8 kHz) delayed
    /// by a repeating pattern, in order of arrival: a 25 ms delay lets the
    /// next packet overtake, so the schedule reorders too.
    fn jittery_schedule() -> Vec<(u64, u16, u32)> {
        let delays_us = [0u64, 3000, 500, 12000, 0, 7000, 1500, 0, 25000, 4000];
        let mut schedule: Vec<(u64, u16, u32)> = (0..400u64)
            .map(|i| {
                let send = 1_000_000_000 + i * 20_000_000;
                let arrival = send + delays_us[(i % 10) as usize] * 1000;
                (arrival, i as u16, 160 * i as u32)
            })
            .collect();
        schedule.sort_unstable();
        schedule
    }

    #[test]
    fn integer_jitter_matches_the_float_reference() {
        for clock_rate in [8000u32, 16000, 48000] {
            let scale = clock_rate / 8000;
            let schedule: Vec<(u64, u16, u32)> = jittery_schedule()
                .into_iter()
                .map(|(a, seq, ts)| (a, seq, ts * scale))
                .collect();
            let mut s = RtpStats::default();
            for &(arrival, seq, ts) in &schedule {
                observe(&mut s, &rtp(seq, ts, 42, 0), TF_RTP, clock_rate, arrival);
            }
            let reference = float_jitter(&schedule, clock_rate);
            let integer = f64::from(s.jitter_q4) / 16.0;
            // Whole units per packet and the ×16 rounding keep the integer
            // figure within a unit or so of the exact one.
            assert!(
                (integer - reference).abs() <= 1.5,
                "clock {clock_rate}: integer {integer} vs float {reference}"
            );
            assert!(reference > 10.0 * f64::from(scale), "schedule is jittery");
        }
    }

    #[test]
    fn steady_stream_has_no_jitter() {
        let mut s = RtpStats::default();
        for i in 0..100u32 {
            let t = 5_000_000_000 + u64::from(i) * 20_000_000;
            observe(&mut s, &rtp(i as u16, i * 160, 1, 0), TF_RTP, 8000, t);
        }
        assert_eq!(jitter_units(&s), 0);
        assert_eq!(jitter_us(&s, 8000), Some(0));
        assert_eq!(jitter_us(&s, 0), None);
    }

    #[test]
    fn hostile_timestamps_do_not_overflow() {
        let mut s = RtpStats::default();
        for i in 0..10_000u32 {
            let ts = if i % 2 == 0 { 0 } else { 0x8000_0000 };
            observe(
                &mut s,
                &rtp(i as u16, ts, 1, 0),
                TF_RTP,
                48000,
                u64::from(i),
            );
        }
        assert!(s.jitter_q4 <= 16 * MAX_JITTER_D + 16);
    }
}
