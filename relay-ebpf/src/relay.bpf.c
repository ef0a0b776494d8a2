// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * xrelay fast path: forward RTP/RTCP (any UDP) sent to a relay port straight
 * to the other party, rewriting addresses, ports, TTL, MACs and checksums,
 * over IPv4 or IPv6 and between the two (bridge.h).
 *
 * Anything this program does not fully understand, and every packet for an
 * address/port without a stream, goes to the kernel stack untouched
 * (XDP_PASS), where relayd's sockets and its userspace forwarder see it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bridge.h"
#include "consts.h"
#include "csum.h"
#include "ipv6.h"
#include "maps.h"
#include "nexthop.h"
#include "parsing.h"
#include "relay_abi.h"
#include "rtp.h"
#include "sanity.h"
#include "udp_csum.h"
#include "view.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Whether the UDP datagram at `udp` is STUN by its fixed header (RFC 5389
 * §6): 20 bytes at least, the first two bits 0, the magic cookie at payload
 * offset 4. RTP (version 2) has `10` there and never matches. */
static __always_inline int is_stun(const struct udphdr *udp, const void *data_end)
{
	const __u8 *p = (const __u8 *)(udp + 1);
	__u32 cookie;

	if ((const void *)(p + 20) > data_end || bpf_ntohs(udp->len) < sizeof(*udp) + 20)
		return 0;
	if (p[0] & 0xc0)
		return 0;
	__builtin_memcpy(&cookie, p + 4, sizeof(cookie));
	return cookie == bpf_htonl(RELAY_STUN_MAGIC);
}

/*
 * ABI handshake (see relay_abi.h). The order of this table is the order of
 * LAYOUT in relay-common/src/abi.rs.
 */
#define OFF(type, field) ((__u32) __builtin_offsetof(struct type, field))
__attribute__((used)) volatile const struct relay_abi_meta relay_abi = {
	.magic = RELAY_ABI_MAGIC,
	.version = RELAY_ABI_VERSION,
	.counter_max = RELAY_CNT_MAX,
	.layout_len = RELAY_ABI_LAYOUT_LEN,
	.layout = {
		sizeof(struct relay_target),
		OFF(relay_target, peer_addr),
		OFF(relay_target, src_addr),
		OFF(relay_target, expect_addr),
		OFF(relay_target, peer_port),
		OFF(relay_target, src_port),
		OFF(relay_target, expect_port),
		OFF(relay_target, seq),
		OFF(relay_target, flags),
		OFF(relay_target, stats_slot),
		sizeof(struct relay_stream_stats),
		OFF(relay_stream_stats, packets),
		OFF(relay_stream_stats, bytes),
		OFF(relay_stream_stats, dropped),
		OFF(relay_stream_stats, passed),
		OFF(relay_stream_stats, last_seen_ns),
		OFF(relay_stream_stats, tokens_nano),
		OFF(relay_stream_stats, refill_ns),
		OFF(relay_stream_stats, max_pps),
		OFF(relay_stream_stats, _pad0),
		sizeof(struct relay_next_hop),
		OFF(relay_next_hop, until_ns),
		OFF(relay_next_hop, ifindex),
		OFF(relay_next_hop, max_len),
		OFF(relay_next_hop, dmac),
		OFF(relay_next_hop, smac),
		OFF(relay_next_hop, _pad),
		sizeof(struct relay_stream_state),
		OFF(relay_stream_state, stats),
		OFF(relay_stream_state, nh),
		OFF(relay_stream_state, rtp),
		OFF(relay_stream_state, _pad),
		sizeof(struct relay_counter),
		OFF(relay_counter, packets),
		OFF(relay_counter, bytes),
		sizeof(struct relay_iface_status),
		OFF(relay_iface_status, ifindex),
		OFF(relay_iface_status, mode),
		OFF(relay_iface_status, reason),
		OFF(relay_iface_status, _pad),
		OFF(relay_iface_status, name),
		sizeof(struct relay_iface_mac),
		OFF(relay_iface_mac, ifindex),
		OFF(relay_iface_mac, mac),
		OFF(relay_iface_mac, _pad),
		sizeof(struct relay_address),
		OFF(relay_address, addr),
		OFF(relay_address, row_base),
		OFF(relay_address, port_min),
		OFF(relay_address, port_max),
		OFF(relay_address, flags),
		OFF(relay_address, seq),
		OFF(relay_address, row_first_port),
		OFF(relay_address, row_last_port),
		OFF(relay_address, _pad),
		sizeof(struct relay_rtp_stats),
		OFF(relay_rtp_stats, rtp_packets),
		OFF(relay_rtp_stats, rtcp_packets),
		OFF(relay_rtp_stats, rtcp_bytes),
		OFF(relay_rtp_stats, other_packets),
		OFF(relay_rtp_stats, received),
		OFF(relay_rtp_stats, last_arrival_ns),
		OFF(relay_rtp_stats, ssrc),
		OFF(relay_rtp_stats, ssrc_changes),
		OFF(relay_rtp_stats, cycles),
		OFF(relay_rtp_stats, base_seq),
		OFF(relay_rtp_stats, bad_seq),
		OFF(relay_rtp_stats, jitter_q4),
		OFF(relay_rtp_stats, last_ts),
		OFF(relay_rtp_stats, lost_before),
		OFF(relay_rtp_stats, max_seq),
		OFF(relay_rtp_stats, payload_type),
		OFF(relay_rtp_stats, state),
		OFF(relay_rtp_stats, clock_rate),
		sizeof(struct relay_abi_meta),
	},
};

_Static_assert(sizeof(struct relay_target) == 64, "relay_target size is ABI (one cache line)");
_Static_assert(sizeof(struct relay_stream_stats) == 64, "relay_stream_stats is one cache line");
_Static_assert(sizeof(struct relay_next_hop) == 32, "relay_next_hop size is ABI");
_Static_assert(sizeof(struct relay_stream_state) == 192, "relay_stream_state is three cache lines");
_Static_assert(sizeof(struct relay_counter) == 16, "relay_counter size is ABI");
_Static_assert(sizeof(struct relay_iface_status) == 32, "relay_iface_status size is ABI");
_Static_assert(sizeof(struct relay_address) == 36, "relay_address size is ABI");
/* relayd's own limit (MAX_ADDRESSES) is what keeps the table one eighth
 * full at most; this checks the object's default. */
_Static_assert(RELAY_MAX_ADDRESSES * 8 <= RELAY_ADDR_SLOTS,
	       "the address table stays at most one eighth full");
_Static_assert(sizeof(struct relay_rtp_stats) == 88, "relay_rtp_stats size is ABI");

static __always_inline __u32 count(__u32 id, __u64 frame_len, __u32 action)
{
	struct relay_counter *c = bpf_map_lookup_elem(&counters, &id);

	if (c) {
		c->packets++;
		c->bytes += frame_len;
	}
	return action;
}

/* Rewrite the IPv4 and UDP headers for the next hop, fixing both checksums
 * incrementally. A zero UDP checksum means "none" in IPv4 and stays zero. */
static __always_inline void rewrite_ipv4_udp(struct iphdr *ip, struct udphdr *udp,
					     __be32 saddr, __be32 daddr, __be16 sport,
					     __be16 dport)
{
	__u16 old_ttl_word = *(__u16 *)&ip->ttl;
	__u32 ip_acc = csum_start(ip->check);
	__u32 udp_acc;

	csum_add_change32(&ip_acc, ip->saddr, saddr);
	csum_add_change32(&ip_acc, ip->daddr, daddr);
	ip->ttl = RELAY_TTL;
	csum_add_change16(&ip_acc, old_ttl_word, *(__u16 *)&ip->ttl);
	ip->check = csum_finish(ip_acc);

	if (udp->check) {
		udp_acc = csum_start(udp->check);
		csum_add_change32(&udp_acc, ip->saddr, saddr);
		csum_add_change32(&udp_acc, ip->daddr, daddr);
		udp_set_ports(udp, udp_acc, sport, dport);
	} else {
		udp->source = sport;
		udp->dest = dport;
	}
	ip->saddr = saddr;
	ip->daddr = daddr;
}

static __always_inline struct relay_stream_state *lookup_stream_state(const struct relay_target *t)
{
	__u32 slot = t->stats_slot;

	return bpf_map_lookup_elem(&stream_state, &slot);
}


/* A UDP packet for a port of a relay address without a stream: dropped
 * when it is in the address's shielded media port range (nothing of
 * relayd's listens there), else left to the stack. */
static __always_inline int no_stream(const struct relay_address *a, __u16 port, __u64 frame_len)
{
	if ((a->flags & RELAY_SHIELD_DROP_UNKNOWN) && port >= a->port_min && port <= a->port_max)
		return count(RELAY_CNT_DROP_NO_STREAM, frame_len, XDP_DROP);
	return count(RELAY_CNT_PASS_NO_STREAM, frame_len, XDP_PASS);
}

/* Keeps the compiler from moving memory accesses across it (the seqlock
 * reads below); x86 does not reorder loads with loads by itself. */
#define compiler_barrier() asm volatile("" ::: "memory")

/*
 * Copies *src (a stream entry or an address slot, which relayd rewrites
 * seqlock style: `seq` odd while it writes) into *dst; true when the copy
 * is whole: `seq` was even and the same before and after it.
 */
#define seqlock_copy(dst, src)                                                  \
	({                                                                      \
		__u16 seq_ = *(volatile __u16 *)&(src)->seq;                   \
		compiler_barrier();                                             \
		__builtin_memcpy((dst), (src), sizeof(*(dst)));                 \
		compiler_barrier();                                             \
		!(seq_ & 1) && seq_ == *(volatile __u16 *)&(src)->seq;        \
	})

/*
 * Relay address `key` (16 bytes, v4-mapped), copied into `out` if its slot
 * was stable while copied (relay_abi.h: linear probing from the home slot,
 * seqlock-style rewrites). Returns 1 with `out` filled, 0 when `key` is not
 * a relay address, -1 when relayd was rewriting a slot on the way.
 */
static __always_inline int find_address(const __u8 *key, struct relay_address *out)
{
	__u32 home = relay_address_hash(key);
	__u64 k0, k1, a0, a1;

	__builtin_memcpy(&k0, key, 8);
	__builtin_memcpy(&k1, key + 8, 8);
	for (__u32 i = 0; i < RELAY_ADDR_PROBES; i++) {
		__u32 idx = (home + i) & (RELAY_ADDR_SLOTS - 1);
		struct relay_address *slot = bpf_map_lookup_elem(&addresses, &idx);

		if (!slot)
			return 0;
		if (!seqlock_copy(out, slot))
			return -1;
		if (!(out->flags & RELAY_ADDR_IN_USE))
			return 0;
		__builtin_memcpy(&a0, out->addr, 8);
		__builtin_memcpy(&a1, out->addr + 8, 8);
		if (a0 == k0 && a1 == k1)
			return 1;
	}
	return 0;
}

/*
 * The stream entry for `port` of relay address `a`, copied into `out` if it
 * was stable while copied (relay_abi.h: relayd rewrites entries seqlock
 * style). Returns 1 with `out` filled, 0 for no stream, -1 when relayd was
 * rewriting the entry.
 */
static __always_inline int read_stream(const struct relay_address *a, __u16 port,
				       struct relay_target *out)
{
	__u32 idx = a->row_base + port - a->row_first_port;
	struct relay_target *entry;

	/* A port outside the row has no entry (no stream of relayd's there). */
	if (port < a->row_first_port || port > a->row_last_port)
		return 0;
	entry = bpf_map_lookup_elem(&streams, &idx);
	if (!entry)
		return 0;
	if (!seqlock_copy(out, entry))
		return -1;
	return (out->flags & RELAY_TF_IN_USE) ? 1 : 0;
}

/* Whether the UDP datagram at `udp` is RTCP by RFC 5761 §4: version 2 and a
 * second byte (packet type, marker bit included) of 192..=223. */
static __always_inline int is_rtcp(const struct udphdr *udp, const void *data_end)
{
	const __u8 *p = (const __u8 *)(udp + 1);

	if ((const void *)(p + 4) > data_end || bpf_ntohs(udp->len) < sizeof(*udp) + 4)
		return 0;
	return (p[0] & 0xc0) == 0x80 && p[1] >= 192 && p[1] <= 223;
}

/* One packet in the rate-cap bucket's units. */
#define RELAY_TOKEN 1000000000ull

/*
 * Per-stream packet-rate cap: a token bucket, refilled at max_pps and holding
 * at most one second of packets. It counts billionths of a packet, so any
 * gap earns exactly gap_ns x max_pps with no division: thousandths rounded
 * the sub-microsecond gaps of a flood down to nothing and starved the stream.
 *
 * RSS keeps a flow on one CPU, but a flood from many sources is spread over
 * all of them, which is when the cap matters. So each stretch of time is
 * earned by the one CPU whose compare-and-swap moves refill_ns over it (a
 * clock read on another CPU may lag: time never runs backwards here), and
 * the bucket itself changes only by compare-and-swap: no token is earned or
 * spent twice. Should the bucket stay contended for four tries the packet is
 * dropped, which errs towards the cap.
 */
static __always_inline int take_token(struct relay_stream_stats *st, __u64 now)
{
	__u64 max_pps = st->max_pps;
	__u64 cap = max_pps * RELAY_TOKEN;
	__u64 last = st->refill_ns;
	__u64 earned = 0, tokens, left;
	int i, pass;

	if (now > last && __sync_val_compare_and_swap(&st->refill_ns, last, now) == last)
		earned = now - last >= 1000000000ull ? cap : (now - last) * max_pps;
#pragma unroll
	for (i = 0; i < 4; i++) {
		tokens = st->tokens_nano;
		/* No overflow: both terms are at most cap < 2^63. */
		left = tokens + earned < cap ? tokens + earned : cap;
		pass = left >= RELAY_TOKEN;
		if (pass)
			left -= RELAY_TOKEN;
		if (__sync_val_compare_and_swap(&st->tokens_nano, tokens, left) == tokens)
			return pass;
	}
	return 0;
}

SEC("xdp")
int relay_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 frame_len = data_end - data;
	struct cursor c = { .pos = data, .end = data_end };
	struct relay_stream_state *ss;
	struct relay_address address, *addr = &address;
	struct next_hop nh;
	struct relay_view v = {};
	struct relay_target target, *t = &target;
	struct ethhdr *eth;
	__u32 action, why, out_v6, ingress, partial;
	__u16 udp_len, egress_len, port;
	int found;
	__u64 now;
	__be16 proto;

	eth = parse_eth(&c, &proto);
	if (!eth)
		return count(RELAY_CNT_PASS_MALFORMED, frame_len, XDP_PASS);
	/* A tagged frame on the interface the program runs on: either the
	 * stack delivers it to a VLAN device (whose next hop is not this
	 * interface's) or drops it; neither is forwarding it here. Asked of
	 * the outer ethertype itself: comparing it with the inner one missed
	 * a tag inside a tag of the same type (8100 in 8100). */
	if (eth_is_tagged(eth))
		return count(RELAY_CNT_PASS_VLAN, frame_len, XDP_PASS);
	if (proto == bpf_htons(ETH_P_IP))
		why = view_ipv4(&c, &v);
	else if (proto == bpf_htons(ETH_P_IPV6))
		why = view_ipv6(&c, &v);
	else
		return count(RELAY_CNT_PASS_NOT_IP, frame_len, XDP_PASS);
	if (why != RELAY_VIEW_OK)
		return count(why, frame_len, XDP_PASS);
	found = find_address(v.key.addr, &address);
	if (found < 0)
		return count(RELAY_CNT_PASS_UPDATING, frame_len, XDP_PASS);
	if (!found)
		return count(RELAY_CNT_PASS_NO_STREAM, frame_len, XDP_PASS);
	port = bpf_ntohs(v.key.port);
	found = read_stream(addr, port, &target);
	if (found < 0)
		return count(RELAY_CNT_PASS_UPDATING, frame_len, XDP_PASS);
	if (!found)
		return no_stream(addr, port, frame_len);
	if (t->flags & RELAY_TF_TO_USERSPACE)
		return count(RELAY_CNT_PASS_TO_USERSPACE, frame_len, XDP_PASS);
	/* ICE: connectivity checks and consent refreshes are relayd's to
	 * answer, from whichever candidate they come (before strict-source). */
	if ((t->flags & RELAY_TF_ICE) && is_stun(v.udp, data_end))
		return count(RELAY_CNT_PASS_TO_USERSPACE, frame_len, XDP_PASS);
	/* rtcp-mux demux: the muxing party's RTCP is its RTCP port's to
	 * forward (to the other party's RTCP port, with that entry's checks
	 * and counters); relayd's socket takes it until that entry forwards. */
	if ((t->flags & RELAY_TF_RTCP_DEMUX) && is_rtcp(v.udp, data_end)) {
		found = port < 65535 ? read_stream(addr, port + 1, &target) : 0;
		if (found < 0)
			return count(RELAY_CNT_PASS_UPDATING, frame_len, XDP_PASS);
		if (!found || (t->flags & RELAY_TF_TO_USERSPACE))
			return count(RELAY_CNT_PASS_TO_USERSPACE, frame_len, XDP_PASS);
	}
	/* Read once: the compiler would otherwise keep ctx + offset in a
	 * register, which the verifier refuses to dereference. */
	ingress = ctx->ingress_ifindex;
	why = stack_would_drop(eth, &v, ingress);
	if (why)
		return count(why, frame_len, XDP_DROP);
	ss = lookup_stream_state(t);

	if ((t->flags & RELAY_TF_STRICT_SOURCE) && !view_from_expected(&v, t)) {
		if (ss)
			stream_add(ss->stats.dropped, 1);
		return count(RELAY_CNT_DROP_STRICT_SOURCE, frame_len, XDP_DROP);
	}

	/* One clock read per packet: the precise clock only where jitter needs it. */
	now = (t->flags & RELAY_TF_JITTER) ? rtp_now() : bpf_ktime_get_coarse_ns();
	if (ss && ss->stats.max_pps && !take_token(&ss->stats, now)) {
		stream_add(ss->stats.dropped, 1);
		return count(RELAY_CNT_DROP_RATE, frame_len, XDP_DROP);
	}
	/* RTP/RTCP figures before the next-hop lookup, so a packet passed on
	 * a FIB miss is counted here and not again by relayd. */
	if (ss && (t->flags & (RELAY_TF_RTP | RELAY_TF_RTCP)))
		rtp_observe(&ss->rtp, t, (const __u8 *)(v.udp + 1), data_end,
			    bpf_ntohs(v.udp->len) - sizeof(*v.udp), now);

	/* The peer's family is the egress family: v4-mapped means IPv4. */
	out_v6 = !is_mapped_v4(t->peer_addr);
	udp_len = bpf_ntohs(v.udp->len);
	/* IPv6 needs a UDP checksum; computing one over the payload is left
	 * to relayd's socket, which the packet reaches by passing. */
	if (out_v6 && !v.v6 && !v.udp->check) {
		if (ss)
			stream_add(ss->stats.passed, 1);
		return count(RELAY_CNT_PASS_NO_CSUM, frame_len, XDP_PASS);
	}
	/* A same-host sender's partial checksum (left for offload) is
	 * completed from scratch after the rewrite (udp_csum.h); one longer
	 * than the program sums goes to relayd's socket like the above. */
	partial = udp_csum_is_partial(&v);
	if (partial && udp_len > RELAY_CSUM_MAX_LEN) {
		if (ss)
			stream_add(ss->stats.passed, 1);
		return count(RELAY_CNT_PASS_NO_CSUM, frame_len, XDP_PASS);
	}

	/* Resolve the next hop before touching the packet, so a miss passes it
	 * on unmodified and the kernel (ARP, ICMP) and relayd can handle it. */
	if (out_v6)
		egress_len = sizeof(struct ipv6hdr) + udp_len;
	else if (v.v6)
		egress_len = sizeof(struct iphdr) + udp_len;
	else
		egress_len = bpf_ntohs(((struct iphdr *)v.l3)->tot_len);
	if (resolve_next_hop(ctx, ss ? &ss->nh : NULL, t, out_v6, egress_len, ingress, now, &nh) !=
	    BPF_FIB_LKUP_RET_SUCCESS) {
		if (ss)
			stream_add(ss->stats.passed, 1);
		return count(RELAY_CNT_PASS_FIB_MISS, frame_len, XDP_PASS);
	}

	if (nh.ifindex == ingress) {
		action = XDP_TX;
	} else {
		/* Only sets up the redirect; returns the flags value on a miss. */
		action = bpf_redirect_map(&tx_ports, nh.ifindex, XDP_PASS);
		if (action != XDP_REDIRECT) {
			if (ss)
				stream_add(ss->stats.passed, 1);
			return count(RELAY_CNT_PASS_NO_TX_PORT, frame_len, XDP_PASS);
		}
	}

	if (v.v6 == out_v6) {
		if (v.v6)
			rewrite_ipv6_udp(v.l3, v.udp, t);
		else
			rewrite_ipv4_udp(v.l3, v.udp, mapped_v4(t->src_addr),
					 mapped_v4(t->peer_addr), t->src_port, t->peer_port);
	} else {
		/* The frame changes size: every packet pointer is new after this.
		 * Only growing (4 -> 6) can fail, for lack of headroom, and it
		 * fails before touching the frame. */
		eth = v.v6 ? bridge_6to4(ctx, &v, t) : bridge_4to6(ctx, &v, t);
		if (!eth) {
			if (ss)
				stream_add(ss->stats.passed, 1);
			return count(RELAY_CNT_PASS_NO_HEADROOM, frame_len, XDP_PASS);
		}
	}
	__builtin_memcpy(eth->h_dest, nh.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh.smac, ETH_ALEN);
	if (partial)
		udp_csum_complete(ctx,
				  sizeof(*eth) + (out_v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)),
				  csum_egress_addrs(t, out_v6));
	trim_surplus(ctx, sizeof(*eth), out_v6, udp_len);

	if (ss) {
		stream_add(ss->stats.packets, 1);
		stream_add(ss->stats.bytes, udp_len - sizeof(struct udphdr));
		ss->stats.last_seen_ns = now;
	}
	return count(action == XDP_TX ? RELAY_CNT_FWD_TX : RELAY_CNT_FWD_REDIRECT, frame_len,
		     action);
}

/*
 * Transmit self-test: run with BPF_F_TEST_XDP_LIVE_FRAMES against an
 * interface, it bounces a probe frame out through the driver's XDP transmit
 * path. relayd watches the interface's drop counters to learn whether native
 * XDP_TX really transmits there (on veth it does not unless the peer runs an
 * XDP program).
 */
SEC("xdp")
int relay_tx_probe(struct xdp_md *ctx)
{
	return XDP_TX;
}

/*
 * Does nothing but let frames through. On veth, native XDP transmit only
 * delivers frames to a peer that runs an XDP program of its own: attach this
 * one to the far end of a veth pair (containers, test namespaces) so relayd
 * can use native mode on the near end.
 */
SEC("xdp")
int relay_peer_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
