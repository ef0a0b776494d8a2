/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Where a forwarded packet goes next: egress interface and MAC addresses.
 *
 * bpf_fib_lookup (routing rules, table, neighbour) is the most expensive
 * step of the hit path. Its answer depends on the stream's addresses only,
 * so the stream keeps the last answer (relay_next_hop in its state record)
 * and reuses it for relay_nh_cache_ns. A route or neighbour change is
 * therefore seen within that time; relayd zeroes the record (cache
 * included) whenever it installs or changes a stream.
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
 * The cached next hop, copied into `nh` when it is fresh at `now`, holds
 * packets of `egress_len` bytes, and did not change while copied (another
 * CPU refilling it clears until_ns first and sets it last).
 */
static __always_inline int cached_next_hop(const struct relay_next_hop *cache, __u16 egress_len,
					   __u64 now, struct next_hop *nh)
{
	__u64 until = *(volatile __u64 *)&cache->until_ns;

	if (now >= until || egress_len > cache->max_len)
		return 0;
	asm volatile("" ::: "memory");
	nh->ifindex = cache->ifindex;
	__builtin_memcpy(nh->dmac, cache->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, cache->smac, ETH_ALEN);
	asm volatile("" ::: "memory");
	return until == *(volatile __u64 *)&cache->until_ns;
}

/*
 * The next hop of stream `t` for an egress IP packet of `egress_len` bytes
 * in family `out_v6`, arriving on `ingress` at `now`: from the stream's
 * cache when it is fresh and the packet no bigger than one the FIB passed
 * (MTU), else from bpf_fib_lookup (then cached). Returns the lookup's result
 * code (BPF_FIB_LKUP_RET_SUCCESS = 0 when `nh` is filled).
 */
static __always_inline long resolve_next_hop(struct xdp_md *ctx, struct relay_next_hop *cache,
					     const struct relay_target *t, __u32 out_v6,
					     __u16 egress_len, __u32 ingress, __u64 now,
					     struct next_hop *nh)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (relay_nh_cache_ns && cache && cached_next_hop(cache, egress_len, now, nh))
		return BPF_FIB_LKUP_RET_SUCCESS;

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
	if (relay_nh_cache_ns && cache) {
		*(volatile __u64 *)&cache->until_ns = 0;
		asm volatile("" ::: "memory");
		cache->ifindex = fib.ifindex;
		__builtin_memcpy(cache->dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(cache->smac, fib.smac, ETH_ALEN);
		cache->max_len = egress_len;
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&cache->until_ns = now + relay_nh_cache_ns;
	}
	return rc;
}

#endif /* RELAY_NEXTHOP_H */
