/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The family-independent view of a parsed UDP packet: what the stream
 * lookup, the strict-source check and the rate cap need. Each address
 * family fills it (view_ipv4 here, view_ipv6 in ipv6.h); the next hop and
 * the rewrite are family-specific again (relay.bpf.c, ipv6.h, bridge.h). */
#ifndef RELAY_VIEW_H
#define RELAY_VIEW_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "parsing.h"
#include "relay_abi.h"

/* Returned by view_* when the packet is one for the fast path; any other
 * value is the RELAY_CNT_PASS_* counter to pass it under. */
#define RELAY_VIEW_OK RELAY_CNT_MAX

/* Where a packet was sent: the relay address and port its entry is found by. */
struct relay_key {
	__u8 addr[16]; /* net: destination address, v4-mapped for IPv4 */
	__be16 port;   /* net: destination UDP port */
	__u16 _pad;    /* zero */
};

struct relay_view {
	struct relay_key key; /* destination */
	void *l3;             /* the IPv4 or IPv6 header */
	struct udphdr *udp;
	__u32 v6;             /* 1: l3 is IPv6 */
};

static __always_inline void set_mapped_v4(__u8 addr[16], __be32 v4)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	*(__be32 *)&addr[12] = v4;
}

/* The IPv4 address inside a v4-mapped IPv6 address, as it sits in a header. */
static __always_inline __be32 mapped_v4(const __u8 addr[16])
{
	return *(const __be32 *)&addr[12];
}

/* Whether an ABI address is v4-mapped (::ffff:a.b.c.d), i.e. IPv4. */
static __always_inline int is_mapped_v4(const __u8 addr[16])
{
	const __u32 *w = (const __u32 *)addr;

	return !w[0] && !w[1] && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline __u32 view_ipv4(struct cursor *c, struct relay_view *v)
{
	struct udphdr *udp;
	struct iphdr *ip;

	switch (parse_ipv4(c, &ip)) {
	case IPV4_OK:
		break;
	case IPV4_OPTIONS:
		return RELAY_CNT_PASS_IP_OPTIONS;
	case IPV4_FRAGMENT:
		return RELAY_CNT_PASS_FRAGMENT;
	case IPV4_NOT_UDP:
		return RELAY_CNT_PASS_NOT_UDP;
	default:
		return RELAY_CNT_PASS_MALFORMED;
	}
	udp = parse_udp(c, ip);
	if (!udp)
		return RELAY_CNT_PASS_MALFORMED;
	set_mapped_v4(v->key.addr, ip->daddr);
	v->key.port = udp->dest;
	v->l3 = ip;
	v->udp = udp;
	v->v6 = 0;
	return RELAY_VIEW_OK;
}

#endif /* RELAY_VIEW_H */
