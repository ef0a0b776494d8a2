/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * IPv4 <-> IPv6 bridging (rtpengine's address-family): a stream received on
 * one family leaves on the other. The IPv6 header is 20 bytes longer, so the
 * frame grows (4 -> 6) or shrinks (6 -> 4) at the front with
 * bpf_xdp_adjust_head; the Ethernet header moves with it and the UDP header
 * and payload stay where they are (tagged frames never get here: the
 * program passes them).
 *
 * The UDP checksum is updated from the two pseudo-headers: they share the
 * protocol and length words (one's-complement sums do not care that IPv6
 * carries them as 32-bit fields), so only the addresses and ports change.
 */
#ifndef RELAY_BRIDGE_H
#define RELAY_BRIDGE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "csum.h"
#include "ipv6.h"
#include "parsing.h"

#define RELAY_V6_GROWTH ((int)(sizeof(struct ipv6hdr) - sizeof(struct iphdr)))
#define IP_DF 0x4000

/* Writes the ethertype of the frame's Ethernet header and returns where
 * the network header starts, or NULL if the frame is shorter than
 * Ethernet + `l3_len` + UDP. */
static __always_inline void *set_l2(void *data, void *data_end, __be16 ethertype, __u32 l3_len)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) + l3_len + sizeof(struct udphdr) > data_end)
		return NULL;
	eth->h_proto = ethertype;
	return eth + 1;
}

/*
 * IPv4 -> IPv6. The caller has checked that the UDP checksum is not zero
 * (IPv6 requires one; see RELAY_CNT_PASS_NO_CSUM). Returns the Ethernet
 * header of the grown frame, or NULL when there is no headroom to grow it,
 * in which case the frame is untouched.
 */
static __always_inline struct ethhdr *bridge_4to6(struct xdp_md *ctx, struct relay_view *v,
						  const struct relay_target *t)
{
	struct iphdr *ip = v->l3;
	struct ethhdr *eth = (void *)(long)ctx->data;
	void *data, *data_end = (void *)(long)ctx->data_end;
	__be32 saddr = ip->saddr, daddr = ip->daddr, first;
	__be16 udp_len = v->udp->len;
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	__u32 acc;

	if ((void *)(eth + 1) > data_end)
		return NULL;
	/* Traffic class from the IPv4 TOS byte (DSCP, ECN); no flow label. */
	first = bpf_htonl(0x60000000 | ((__u32)ip->tos << 20));
	if (bpf_xdp_adjust_head(ctx, -RELAY_V6_GROWTH))
		return NULL;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	ip6 = set_l2(data, data_end, bpf_htons(ETH_P_IPV6), sizeof(*ip6));
	if (!ip6)
		return NULL; /* cannot happen: the frame only grew */
	udp = (void *)(ip6 + 1);
	*(__be32 *)ip6 = first;
	ip6->payload_len = udp_len;
	ip6->nexthdr = IPPROTO_UDP;
	ip6->hop_limit = RELAY_TTL;
	__builtin_memcpy(&ip6->saddr, t->src_addr, 16);
	__builtin_memcpy(&ip6->daddr, t->peer_addr, 16);

	acc = csum_start(udp->check);
	csum_add_change32(&acc, saddr, 0);
	csum_add_change32(&acc, daddr, 0);
	csum_add_change128(&acc, (__u32[4]){}, t->src_addr);
	csum_add_change128(&acc, (__u32[4]){}, t->peer_addr);
	udp_set_ports(udp, acc, t->src_port, t->peer_port);
	return data;
}

/*
 * IPv6 -> IPv4. The new IPv4 header and L2 header are written over the end
 * of the IPv6 header, then the front is cut. The IPv4 header carries the
 * traffic class as TOS, DF set and ID 0 (an atomic datagram, RFC 6864).
 * Returns the Ethernet header of the shrunk frame.
 */
static __always_inline struct ethhdr *bridge_6to4(struct xdp_md *ctx, struct relay_view *v,
						  const struct relay_target *t)
{
	struct ipv6hdr *ip6 = v->l3;
	struct udphdr *udp = v->udp;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr ip = {};
	void *l3;
	__u32 acc;

	if ((void *)(eth + 1) > data_end)
		return NULL;

	ip.version = 4;
	ip.ihl = 5;
	ip.tos = bpf_ntohl(*(__be32 *)ip6) >> 20;
	ip.tot_len = bpf_htons(sizeof(ip) + bpf_ntohs(udp->len));
	ip.frag_off = bpf_htons(IP_DF);
	ip.ttl = RELAY_TTL;
	ip.protocol = IPPROTO_UDP;
	ip.saddr = mapped_v4(t->src_addr);
	ip.daddr = mapped_v4(t->peer_addr);
	ip.check = ipv4_header_csum(&ip);

	acc = csum_start(udp->check);
	csum_add_change128(&acc, &ip6->saddr, (__u32[4]){});
	csum_add_change128(&acc, &ip6->daddr, (__u32[4]){});
	csum_add_change32(&acc, 0, ip.saddr);
	csum_add_change32(&acc, 0, ip.daddr);
	udp_set_ports(udp, acc, t->src_port, t->peer_port);

	/* New L2 + IPv4 end where the IPv6 header ended. */
	l3 = set_l2(data + RELAY_V6_GROWTH, data_end, bpf_htons(ETH_P_IP), sizeof(ip));
	if (!l3)
		return NULL; /* cannot happen: the parse saw the longer IPv6 frame */
	__builtin_memcpy(l3, &ip, sizeof(ip));
	if (bpf_xdp_adjust_head(ctx, RELAY_V6_GROWTH))
		return NULL;
	data = (void *)(long)ctx->data;
	eth = data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return NULL;
	return eth;
}

#endif /* RELAY_BRIDGE_H */
