/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Where a forwarded packet goes next: egress interface and MAC addresses.
 *
 * bpf_fib_lookup (routing rules, table, neighbour) is the most expensive
 * step of the hit path. Its answer depends on the stream's addresses only,
 * so each CPU keeps the last answer in the stream's per-CPU counters slot
 * and reuses it for relay_nh_cache_ns. A route or neighbour change is
 * therefore seen within that time; relayd zeroes the slot (cache included)
 * whenever it installs or changes a stream.
 */
#ifndef RELAY_NEXTHOP_H
#define RELAY_NEXTHOP_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "ipv6.h"
#include "relay_abi.h"
#include "view.h"

/* Set at load time (relayd --next-hop-cache-ms); 0 asks the FIB for every
 * packet, and the verifier then prunes the cache code. */
volatile const __u64 relay_nh_cache_ns = 500000000ull;

struct next_hop {
	__u32 ifindex;
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
};

/*
 * The next hop of stream `t` for an egress IP packet of `egress_len` bytes
 * in family `out_v6`, arriving on `ingress` at `now`: from this CPU's cache
 * when it is fresh and the packet no bigger than one the FIB passed (MTU),
 * else from bpf_fib_lookup (then cached). Returns the lookup's result code
 * (BPF_FIB_LKUP_RET_SUCCESS = 0 when `nh` is filled).
 */
static __always_inline long resolve_next_hop(struct xdp_md *ctx, struct relay_stream_stats *st,
					     const struct relay_target *t, __u32 out_v6,
					     __u16 egress_len, __u32 ingress, __u64 now,
					     struct next_hop *nh)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (relay_nh_cache_ns && st && now < st->nh_until_ns && egress_len <= st->nh_max_len) {
		nh->ifindex = st->nh_ifindex;
		__builtin_memcpy(nh->dmac, st->nh_dmac, ETH_ALEN);
		__builtin_memcpy(nh->smac, st->nh_smac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}

	if (out_v6) {
		fib_ipv6(&fib, t, egress_len - sizeof(struct ipv6hdr));
	} else {
		fib.family = AF_INET;
		fib.l4_protocol = IPPROTO_UDP;
		fib.sport = t->src_port;
		fib.dport = t->peer_port;
		fib.tot_len = egress_len;
		fib.ipv4_src = mapped_v4(t->src_addr);
		fib.ipv4_dst = mapped_v4(t->peer_addr);
	}
	fib.ifindex = ingress;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;

	nh->ifindex = fib.ifindex;
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	if (relay_nh_cache_ns && st) {
		st->nh_ifindex = fib.ifindex;
		__builtin_memcpy(st->nh_dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(st->nh_smac, fib.smac, ETH_ALEN);
		st->nh_max_len = egress_len;
		st->nh_until_ns = now + relay_nh_cache_ns;
	}
	return rc;
}

#endif /* RELAY_NEXTHOP_H */
