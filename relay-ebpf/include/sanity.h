/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the kernel stack would refuse, refused here too. A packet relayd's
 * userspace path relays has passed the stack's checks first; one the fast
 * path forwards must pass the same ones, or XDP would forward frames no
 * socket would ever have seen:
 * - a destination MAC of another host (PACKET_OTHERHOST: a promiscuous or
 *   bridged port sees them; ip_rcv drops them);
 * - an IPv4 header whose checksum is wrong (ip_rcv_core);
 * - martian sources (ip_route_input_slow, ipv6_rcv): loopback, the
 *   unspecified address, multicast, limited broadcast, v4-mapped in IPv6,
 *   link-local to a global address, and the relay address itself.
 * Each is dropped under its own counter. A bad UDP checksum is forwarded as
 * it is (the rewrite keeps it bad, and the receiver drops it as the stack
 * would have). Bytes past the IP or UDP length are trimmed before the
 * frame leaves (trim_surplus), as the stack trims them.
 */
#ifndef RELAY_SANITY_H
#define RELAY_SANITY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "csum.h"
#include "ipv6.h"
#include "maps.h"
#include "relay_abi.h"
#include "view.h"

static __always_inline int martian_v4(__be32 saddr, __be32 daddr)
{
	__u32 s = bpf_ntohl(saddr);

	return (s >> 24) == 127 || (s >> 24) == 0 || (s >> 28) == 0xe || s == 0xffffffffu ||
	       saddr == daddr;
}

static __always_inline int martian_v6(const struct ipv6hdr *ip6)
{
	const __u8 *s = (const __u8 *)&ip6->saddr;
	const __u8 *d = (const __u8 *)&ip6->daddr;
	const __u32 *w = (const __u32 *)s;
	int link_local_s = s[0] == 0xfe && (s[1] & 0xc0) == 0x80;
	int link_local_d = d[0] == 0xfe && (d[1] & 0xc0) == 0x80;

	if (s[0] == 0xff) /* multicast */
		return 1;
	if (!w[0] && !w[1] && !w[2] && (!w[3] || w[3] == bpf_htonl(1))) /* ::, ::1 */
		return 1;
	if (is_mapped_v4(s))
		return 1;
	if (link_local_s && !link_local_d)
		return 1;
	return addr6_eq(s, d);
}

/*
 * Whether the frame was sent to this interface's MAC (or to a group
 * address, which the stack accepts too). relayd writes each attached
 * interface's MAC into iface_macs at ifindex modulo the table size; a slot
 * holding another interface (two attached interfaces on one slot) cannot
 * say, and the frame is taken as ours.
 */
static __always_inline int sent_to_us(const struct ethhdr *eth, __u32 ingress)
{
	__u32 slot = ingress & (RELAY_IFACE_MAC_SLOTS - 1);
	struct relay_iface_mac *m = bpf_map_lookup_elem(&iface_macs, &slot);

	if (!m || m->ifindex != ingress || (eth->h_dest[0] & 1))
		return 1;
	return !__builtin_memcmp(eth->h_dest, m->mac, ETH_ALEN);
}

/* The RELAY_CNT_DROP_* counter to drop the packet under, or 0 to go on. */
static __always_inline __u32 stack_would_drop(const struct ethhdr *eth, const struct relay_view *v,
					      __u32 ingress)
{
	if (!sent_to_us(eth, ingress))
		return RELAY_CNT_DROP_OTHER_HOST;
	if (v->v6)
		return martian_v6(v->l3) ? RELAY_CNT_DROP_MARTIAN : 0;
	if (ipv4_header_csum(v->l3))
		return RELAY_CNT_DROP_BAD_HEADER;
	return martian_v4(((struct iphdr *)v->l3)->saddr, ((struct iphdr *)v->l3)->daddr) ?
		       RELAY_CNT_DROP_MARTIAN :
		       0;
}

/*
 * Cuts what the frame carries past its UDP datagram: Ethernet padding, or
 * bytes beyond the IP length, or an IP length beyond the UDP length (then
 * shortened to it, IPv4 header checksum updated). `l3` is the outgoing IP
 * header `l3_off` bytes into the frame, `v6` its family, `udp_len` the UDP
 * length. The frame only shrinks, so this cannot fail in a way that
 * matters: on an error the frame goes out untrimmed.
 */
static __always_inline void trim_surplus(struct xdp_md *ctx, __u32 l3_off, __u32 v6,
					 __u16 udp_len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ip_len = (v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + udp_len;
	__u32 frame_len = data_end - data;
	__u32 want = l3_off + ip_len;

	if (l3_off > 64)
		return;
	if (v6) {
		struct ipv6hdr *ip6 = data + l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return;
		ip6->payload_len = bpf_htons(udp_len);
	} else {
		struct iphdr *ip = data + l3_off;
		__u32 acc;

		if ((void *)(ip + 1) > data_end)
			return;
		if (bpf_ntohs(ip->tot_len) != ip_len) {
			acc = csum_start(ip->check);
			csum_add_change16(&acc, ip->tot_len, bpf_htons(ip_len));
			ip->tot_len = bpf_htons(ip_len);
			ip->check = csum_finish(acc);
		}
	}
	if (frame_len > want)
		bpf_xdp_adjust_tail(ctx, -(int)(frame_len - want));
}

#endif /* RELAY_SANITY_H */
