/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Bounds-checked header parsing. Every helper advances a cursor and returns
 * NULL when the header does not fit in the frame, so callers cannot read past
 * data_end (and the verifier can see that they don't). */
#ifndef RELAY_PARSING_H
#define RELAY_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"

struct cursor {
	void *pos;
	void *end;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* Take `len` bytes at the cursor, or NULL if the frame is shorter. */
static __always_inline void *cursor_take(struct cursor *c, __u32 len)
{
	void *start = c->pos;

	if (start + len > c->end)
		return NULL;
	c->pos = start + len;
	return start;
}

/* Whether the frame carries an 802.1Q or 802.1ad tag. */
static __always_inline int eth_is_tagged(const struct ethhdr *eth)
{
	return eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet plus at most one 802.1Q/802.1ad tag. Returns the header and stores
 * the inner ethertype (network order) in *proto. */
static __always_inline struct ethhdr *parse_eth(struct cursor *c, __be16 *proto)
{
	struct ethhdr *eth = cursor_take(c, sizeof(*eth));
	struct vlan_hdr *vlan;

	if (!eth)
		return NULL;
	*proto = eth->h_proto;
	if (eth_is_tagged(eth)) {
		vlan = cursor_take(c, sizeof(*vlan));
		if (!vlan)
			return NULL;
		*proto = vlan->encapsulated_proto;
	}
	return eth;
}

/* Why an IPv4 header is not one the fast path handles. */
enum ipv4_verdict {
	IPV4_OK = 0,
	IPV4_MALFORMED,
	IPV4_OPTIONS,
	IPV4_FRAGMENT,
	IPV4_NOT_UDP,
};

/* IPv4 without options, not a fragment, carrying UDP. Lengths are checked
 * by parse_udp. */
static __always_inline enum ipv4_verdict parse_ipv4(struct cursor *c, struct iphdr **out)
{
	struct iphdr *ip = cursor_take(c, sizeof(*ip));

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return IPV4_MALFORMED;
	if (ip->ihl != 5)
		return IPV4_OPTIONS;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return IPV4_FRAGMENT;
	if (ip->protocol != IPPROTO_UDP)
		return IPV4_NOT_UDP;
	*out = ip;
	return IPV4_OK;
}

/* UDP header inside an IPv4 packet whose total length fits in the frame
 * (trailing Ethernet padding is allowed) and agrees with the UDP length.
 * The header is taken before the lengths are compared: the other way round
 * the compiler folds the header bounds check into the length check, which
 * the verifier cannot follow. */
static __always_inline struct udphdr *parse_udp(struct cursor *c, const struct iphdr *ip)
{
	struct udphdr *udp = cursor_take(c, sizeof(*udp));
	__u16 tot_len, len;

	if (!udp)
		return NULL;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < sizeof(*ip) + sizeof(*udp) || (void *)ip + tot_len > c->end)
		return NULL;
	len = bpf_ntohs(udp->len);
	if (len < sizeof(*udp) || len > tot_len - sizeof(*ip))
		return NULL;
	return udp;
}

#endif /* RELAY_PARSING_H */
