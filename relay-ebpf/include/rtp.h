/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * RTP quality figures per stream, updated for every packet the fast path
 * accepts (relay_rtp_stats in relay_abi.h). The host-side model of exactly
 * this arithmetic is relay-common/src/rtp.rs; keep the two in step, the
 * packet fixtures compare them.
 *
 * Sequence tracking follows RFC 3550 A.1 (without probation: the stream was
 * negotiated), loss A.3, jitter A.8 in integers. Only the fixed 12-byte
 * header is read, so SRTP is handled the same and never modified.
 */
#ifndef RELAY_RTP_H
#define RELAY_RTP_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"
#include "relay_abi.h"

#define RTP_SEQ_MOD 0x10000u
#define RTP_MAX_DROPOUT 3000u
#define RTP_MAX_MISORDER 100u
#define RTP_NO_BAD_SEQ (RTP_SEQ_MOD + 1)
#define RTP_MAX_GAP_NS (1ull << 40)  /* keeps gap * clock_rate in 64 bits */
#define RTP_MAX_JITTER_D (1u << 24)  /* keeps jitter x16 in 32 bits */

/* Set at load time by packet fixtures only; the verifier prunes the test
 * branch from relayd's program, where it stays 0. */
volatile const __u8 relay_test_clock = 0;

/* The arrival clock for jitter: CLOCK_MONOTONIC, precise (the coarse clock
 * ticks in milliseconds, too slow for jitter at 8 kHz). */
static __always_inline __u64 rtp_now(void)
{
	if (relay_test_clock) {
		__u32 zero = 0;
		__u64 *fake = bpf_map_lookup_elem(&test_clock, &zero);

		if (fake)
			return *fake;
	}
	return bpf_ktime_get_ns();
}

/* RFC 5761 section 4: these second bytes are RTCP packet types, never RTP. */
static __always_inline int rtcp_type(__u8 b)
{
	return b >= 192 && b <= 223;
}

static __always_inline __u32 rtp_lost_now(const struct relay_rtp_stats *s)
{
	__u32 expected;
	__s64 lost;

	if (s->state == RELAY_RTP_STATE_NONE)
		return 0;
	expected = s->cycles + s->max_seq - s->base_seq + 1;
	lost = (__s64)expected - (__s64)s->received;
	if (lost < 0)
		return 0;
	if (lost > 0xffffffffll)
		return 0xffffffffu;
	return (__u32)lost;
}

/* A.1 init_seq, folding the loss of the run that ends into lost_before. */
static __always_inline void rtp_init_seq(struct relay_rtp_stats *s, __u16 seq)
{
	s->lost_before += rtp_lost_now(s);
	s->base_seq = seq;
	s->max_seq = seq;
	s->bad_seq = RTP_NO_BAD_SEQ;
	s->cycles = 0;
	s->received = 0;
}

enum rtp_seq_verdict { RTP_SEQ_COUNTED, RTP_SEQ_RESTARTED, RTP_SEQ_IGNORED };

/* A.1 update_seq. */
static __always_inline enum rtp_seq_verdict rtp_update_seq(struct relay_rtp_stats *s, __u16 seq)
{
	__u16 udelta = (__u16)(seq - s->max_seq);
	enum rtp_seq_verdict verdict = RTP_SEQ_COUNTED;

	if (udelta < RTP_MAX_DROPOUT) {
		if (seq < s->max_seq)
			s->cycles += RTP_SEQ_MOD;
		s->max_seq = seq;
	} else if (udelta <= RTP_SEQ_MOD - RTP_MAX_MISORDER) {
		if (seq == s->bad_seq) {
			rtp_init_seq(s, seq);
			verdict = RTP_SEQ_RESTARTED;
		} else {
			s->bad_seq = (seq + 1) & (RTP_SEQ_MOD - 1);
			return RTP_SEQ_IGNORED;
		}
	}
	/* else: a duplicate or a late packet, counted */
	s->received++;
	return verdict;
}

/* A.8, with the arrival delta turned into timestamp units (rounded). */
static __always_inline void rtp_update_jitter(struct relay_rtp_stats *s, __u32 ts,
					      __u32 clock_rate, __u64 now)
{
	__u64 gap = now > s->last_arrival_ns ? now - s->last_arrival_ns : 0;
	__u32 arrival, abs_d;
	__s32 d;

	if (gap > RTP_MAX_GAP_NS)
		gap = RTP_MAX_GAP_NS;
	arrival = (__u32)((gap * clock_rate + 500000000ull) / 1000000000ull);
	d = (__s32)(arrival - (ts - s->last_ts));
	abs_d = d < 0 ? -(__u32)d : (__u32)d;
	if (abs_d > RTP_MAX_JITTER_D)
		abs_d = RTP_MAX_JITTER_D;
	s->jitter_q4 += abs_d - ((s->jitter_q4 + 8) >> 4);
}

/*
 * Feeds one accepted packet (its UDP payload at p, len bytes by the UDP
 * header; the frame, possibly padded, ends at end) of a
 * stream flagged RELAY_TF_RTP or RELAY_TF_RTCP into its figures. The packet
 * class counts are atomic (stream_add); the sequence and jitter figures
 * assume one writer, as a flow on one receive queue has.
 */
static __always_inline void rtp_observe(struct relay_rtp_stats *s, const struct relay_target *t,
					const __u8 *p, const void *end, __u32 len, __u64 now)
{
	__u32 ts, ssrc;
	__u16 seq;

	if (t->flags & RELAY_TF_RTCP) {
		if (len >= 4 && (void *)(p + 4) <= end && (p[0] & 0xc0) == 0x80 && rtcp_type(p[1])) {
			stream_add(s->rtcp_packets, 1);
			stream_add(s->rtcp_bytes, len);
		} else {
			stream_add(s->other_packets, 1);
		}
		return;
	}
	if (len < 12 || (void *)(p + 12) > end || (p[0] & 0xc0) != 0x80) {
		stream_add(s->other_packets, 1);
		return;
	}
	if (rtcp_type(p[1])) {
		stream_add(s->rtcp_packets, 1);
		stream_add(s->rtcp_bytes, len);
		return;
	}

	seq = ((__u16)p[2] << 8) | p[3];
	ts = ((__u32)p[4] << 24) | ((__u32)p[5] << 16) | ((__u32)p[6] << 8) | p[7];
	ssrc = ((__u32)p[8] << 24) | ((__u32)p[9] << 16) | ((__u32)p[10] << 8) | p[11];
	stream_add(s->rtp_packets, 1);
	s->payload_type = p[1] & 0x7f;
	if (s->state == RELAY_RTP_STATE_NONE || ssrc != s->ssrc) {
		if (s->state != RELAY_RTP_STATE_NONE)
			s->ssrc_changes++;
		rtp_init_seq(s, seq);
		s->received = 1;
		s->ssrc = ssrc;
		s->jitter_q4 = 0;
		s->state = RELAY_RTP_STATE_TRACKING;
	} else if (rtp_update_seq(s, seq) == RTP_SEQ_COUNTED && (t->flags & RELAY_TF_JITTER) &&
		   s->clock_rate) {
		/* RELAY_TF_JITTER: `now` is the precise clock (relay.bpf.c). */
		rtp_update_jitter(s, ts, s->clock_rate, now);
	}
	s->last_ts = ts;
	s->last_arrival_ns = now;
}

#endif /* RELAY_RTP_H */
