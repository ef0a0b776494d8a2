/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* IPv6 in the fast path: the parse (no extension headers), the next-hop
 * parameters and the IPv6 -> IPv6 rewrite. ICMPv6 (neighbour discovery
 * included) is not UDP and never gets past the parse. */
#ifndef RELAY_IPV6_H
#define RELAY_IPV6_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "csum.h"
#include "parsing.h"
#include "view.h"

#define AF_INET6 10

/* Next-header values that are IPv6 extension headers (RFC 8200 §4, RFC
 * 7045's list): hop-by-hop, routing, fragment, ESP, AH, destination
 * options, mobility, HIP, shim6, experimental. */
static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0: case 43: case 44: case 50: case 51: case 60:
	case 135: case 139: case 140: case 253: case 254:
		return 1;
	default:
		return 0;
	}
}

/* IPv6 carrying UDP directly. The UDP header is taken before the lengths
 * are compared, for the verifier (see parse_udp). A zero UDP checksum is
 * illegal in IPv6 (RFC 8200 §8.1): such packets are left to the stack. */
static __always_inline __u32 view_ipv6(struct cursor *c, struct relay_view *v)
{
	struct ipv6hdr *ip6 = cursor_take(c, sizeof(*ip6));
	struct udphdr *udp;
	__u16 plen, len;

	if (!ip6 || ip6->version != 6)
		return RELAY_CNT_PASS_MALFORMED;
	if (ip6->nexthdr != IPPROTO_UDP)
		return ipv6_is_ext(ip6->nexthdr) ? RELAY_CNT_PASS_IPV6 : RELAY_CNT_PASS_NOT_UDP;
	udp = cursor_take(c, sizeof(*udp));
	if (!udp)
		return RELAY_CNT_PASS_MALFORMED;
	plen = bpf_ntohs(ip6->payload_len);
	if (plen < sizeof(*udp) || (void *)(ip6 + 1) + plen > c->end)
		return RELAY_CNT_PASS_MALFORMED;
	len = bpf_ntohs(udp->len);
	if (len < sizeof(*udp) || len > plen || !udp->check)
		return RELAY_CNT_PASS_MALFORMED;
	/* v4-mapped addresses never appear on the wire (RFC 4291 §2.5.5.2);
	 * as a key one would reach an IPv4 stream. */
	if (is_mapped_v4((const __u8 *)&ip6->daddr))
		return RELAY_CNT_PASS_MALFORMED;
	__builtin_memcpy(v->key.addr, &ip6->daddr, 16);
	v->key.port = udp->dest;
	v->l3 = ip6;
	v->udp = udp;
	v->v6 = 1;
	return RELAY_VIEW_OK;
}

static __always_inline int addr6_eq(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* Whether the packet comes from the stream's expected sender (strict-source).
 * expect_addr is in the ingress family: v4-mapped for IPv4. */
static __always_inline int view_from_expected(const struct relay_view *v,
					      const struct relay_target *t)
{
	if (v->udp->source != t->expect_port)
		return 0;
	if (!v->v6)
		return ((struct iphdr *)v->l3)->saddr == mapped_v4(t->expect_addr);
	return addr6_eq(&((struct ipv6hdr *)v->l3)->saddr, t->expect_addr);
}

/* bpf_fib_lookup parameters for an IPv6 egress. tot_len includes the IPv6
 * header, as the MTU it is checked against does. */
static __always_inline void fib_ipv6(struct bpf_fib_lookup *fib, const struct relay_target *t,
				     __u16 udp_len)
{
	fib->family = AF_INET6;
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = t->src_port;
	fib->dport = t->peer_port;
	fib->tot_len = sizeof(struct ipv6hdr) + udp_len;
	__builtin_memcpy(fib->ipv6_src, t->src_addr, 16);
	__builtin_memcpy(fib->ipv6_dst, t->peer_addr, 16);
}

/* A 16-byte address in a checksum: take the old one out, put the new in. */
static __always_inline void csum_add_change128(__u32 *acc, const void *old, const void *new)
{
	const __u32 *o = old, *n = new;

	csum_add_change32(acc, o[0], n[0]);
	csum_add_change32(acc, o[1], n[1]);
	csum_add_change32(acc, o[2], n[2]);
	csum_add_change32(acc, o[3], n[3]);
}

/* IPv6 -> IPv6: addresses, ports, hop limit. Traffic class and flow label
 * are kept; the UDP checksum (always present in IPv6) is updated
 * incrementally and a computed zero sent as all ones. */
static __always_inline void rewrite_ipv6_udp(struct ipv6hdr *ip6, struct udphdr *udp,
					     const struct relay_target *t)
{
	__u32 acc = csum_start(udp->check);

	csum_add_change128(&acc, &ip6->saddr, t->src_addr);
	csum_add_change128(&acc, &ip6->daddr, t->peer_addr);
	udp_set_ports(udp, acc, t->src_port, t->peer_port);
	__builtin_memcpy(&ip6->saddr, t->src_addr, 16);
	__builtin_memcpy(&ip6->daddr, t->peer_addr, 16);
	ip6->hop_limit = RELAY_TTL;
}

#endif /* RELAY_IPV6_H */
