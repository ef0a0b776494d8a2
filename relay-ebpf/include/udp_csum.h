/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Partial UDP checksums: a sender on the same host (a container on a veth
 * peer, with the default transmit offloads) hands the stack UDP with
 * CHECKSUM_PARTIAL. Its checksum field then holds only the folded sum of the
 * pseudo-header (Linux: udp4_hwcsum's `~csum_tcpudp_magic(saddr, daddr, len,
 * IPPROTO_UDP, 0)`, udp6_set_csum's `~csum_ipv6_magic(...)`, the same form),
 * for the "hardware" to complete over the UDP header and payload. An skb
 * path completes it; a frame sent by native XDP_TX or redirect leaves as it
 * is, so an incrementally updated partial checksum arrives wrong and the
 * receiver drops the datagram.
 *
 * The program recognises the partial form by a compare (the field equals the
 * folded pseudo-header sum of the received addresses, UDP length and
 * protocol) and then computes the full checksum from scratch after the
 * rewrite: the new pseudo-header plus the UDP header and payload. That is
 * right for any datagram, so a full checksum that happens to equal its
 * pseudo-header sum (1 in 65535) only costs the extra summing.
 */
#ifndef RELAY_UDP_CSUM_H
#define RELAY_UDP_CSUM_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "view.h"

/* bpf_csum_diff sums at most 512 bytes per call, in whole 32-bit words. */
#define RELAY_CSUM_BLOCK 512
#define RELAY_CSUM_BLOCKS 8
/* The longest UDP datagram (header included) summed here: 8 blocks and a
 * tail shorter than one. Longer ones with a partial checksum (more than a
 * native XDP frame holds anyway) are passed to relayd's socket. */
#define RELAY_CSUM_MAX_LEN (RELAY_CSUM_BLOCKS * RELAY_CSUM_BLOCK + RELAY_CSUM_BLOCK - 1)
/* Bounds every frame offset for the verifier; real ones stay below
 * 255 (L2 + L3) + RELAY_CSUM_MAX_LEN. */
#define RELAY_CSUM_OFF_MASK 0x1fff
#define RELAY_CSUM_L4_OFF_MASK 0xff

_Static_assert(RELAY_CSUM_L4_OFF_MASK + RELAY_CSUM_MAX_LEN <= RELAY_CSUM_OFF_MASK,
	       "every offset summed fits the mask");

/* One's-complement sum of 16-bit words accumulated in 64 bits (32-bit words
 * may be added whole: 2^16 is 1 modulo 0xffff), folded to 16 bits with
 * end-around carries. Not complemented; never 0 for a non-zero sum. */
static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* A 16-byte address as four 32-bit words. */
static __always_inline __u64 csum_addr16(const void *addr)
{
	const __u32 *w = addr;

	return (__u64)w[0] + w[1] + w[2] + w[3];
}

/* The protocol and length words of the pseudo-header: the same sum in IPv4
 * (8-bit zero, protocol, 16-bit length) and IPv6 (32-bit length, 24-bit
 * zero, next header), words as they sit in the packet. */
static __always_inline __u64 csum_pseudo_rest(__be16 udp_len)
{
	return (__u64)bpf_htons(IPPROTO_UDP) + udp_len;
}

/* The sum of the addresses of the pseudo-header a stream's packets leave
 * with (its egress family: v4-mapped peer means IPv4). */
static __always_inline __u64 csum_egress_addrs(const struct relay_target *t, __u32 out_v6)
{
	if (out_v6)
		return csum_addr16(t->src_addr) + csum_addr16(t->peer_addr);
	return (__u64)mapped_v4(t->src_addr) + mapped_v4(t->peer_addr);
}

/*
 * Whether the received packet's UDP checksum is partial: the field equals
 * the folded pseudo-header sum of its addresses, length and protocol. A few
 * additions and one compare; an IPv4 zero ("no checksum") never matches,
 * the fold of a non-zero sum is never zero.
 */
static __always_inline int udp_csum_is_partial(const struct relay_view *v)
{
	__u64 s = csum_pseudo_rest(v->udp->len);

	if (v->v6) {
		const struct ipv6hdr *ip6 = v->l3;

		s += csum_addr16(&ip6->saddr) + csum_addr16(&ip6->daddr);
	} else {
		const struct iphdr *ip = v->l3;

		s += (__u64)ip->saddr + ip->daddr;
	}
	return v->udp->check == csum_fold64(s);
}

/* Adds the `size` bytes (a constant multiple of 4, at most 512) at frame
 * offset `off` to *sum; 0 when they are inside the frame, else -1. */
static __always_inline int csum_add_bytes(__u64 *sum, void *data, void *data_end, __u32 off,
					  __u32 size)
{
	__u8 *p = data + (off & RELAY_CSUM_OFF_MASK);

	if (p + size > (__u8 *)data_end)
		return -1;
	*sum += (__u32)bpf_csum_diff(NULL, 0, (__be32 *)p, size, 0);
	return 0;
}

/* The power-of-two piece `bit` of the 4-byte-word tail (`tail` bytes ending
 * at frame offset `end4`): pieces are placed back from the end, so each
 * offset is computed on its own (no offset carried from piece to piece,
 * which keeps the verifier's paths from multiplying). */
#define CSUM_TAIL_PIECE(bit)                                                            \
	do {                                                                            \
		if ((tail & (bit)) &&                                                   \
		    csum_add_bytes(&sum, data, data_end, end4 - (tail & (2 * (bit) - 1)), \
				   (bit)))                                              \
			return;                                                         \
	} while (0)

/*
 * Writes the full UDP checksum of the frame's datagram, whose UDP header
 * starts `l4_off` bytes into the frame (L2 + L3 of the rewritten frame):
 * the pseudo-header (addresses summing to `addr_sum`, protocol, length),
 * the UDP header and the payload, from scratch. A computed zero is sent as
 * all ones. The checksum field is summed with the rest and taken out again,
 * so the frame is only written once everything was summed.
 */
static __always_inline void udp_csum_complete(struct xdp_md *ctx, __u32 l4_off, __u64 addr_sum)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct udphdr *udp = data + (l4_off & RELAY_CSUM_L4_OFF_MASK);
	__u32 len, len4, tail, end4;
	__u8 *p, last[2] = {};
	__u64 sum;
	__u16 check;

	if ((void *)(udp + 1) > data_end)
		return;
	len = bpf_ntohs(udp->len);
	if (len > RELAY_CSUM_MAX_LEN)
		return; /* refused before the rewrite */
	sum = addr_sum + csum_pseudo_rest(udp->len) + (__u16)~udp->check;

#pragma unroll
	for (__u32 i = 0; i < RELAY_CSUM_BLOCKS; i++) {
		if (len < (i + 1) * RELAY_CSUM_BLOCK)
			break;
		if (csum_add_bytes(&sum, data, data_end, l4_off + i * RELAY_CSUM_BLOCK,
				   RELAY_CSUM_BLOCK))
			return;
	}
	len4 = len & ~3u;
	tail = len4 & (RELAY_CSUM_BLOCK - 1);
	end4 = l4_off + len4;
	CSUM_TAIL_PIECE(256);
	CSUM_TAIL_PIECE(128);
	CSUM_TAIL_PIECE(64);
	CSUM_TAIL_PIECE(32);
	CSUM_TAIL_PIECE(16);
	CSUM_TAIL_PIECE(8);
	CSUM_TAIL_PIECE(4);
	/* The last 1-3 bytes; an odd last byte is padded with a zero byte
	 * after it (RFC 1071). Words as they sit in memory, like the rest. */
	if (len & 2) {
		p = data + (end4 & RELAY_CSUM_OFF_MASK);
		if (p + 2 > (__u8 *)data_end)
			return;
		last[0] = p[0];
		last[1] = p[1];
		sum += *(__u16 *)last;
	}
	if (len & 1) {
		p = data + ((end4 + (len & 2)) & RELAY_CSUM_OFF_MASK);
		if (p + 1 > (__u8 *)data_end)
			return;
		last[0] = p[0];
		last[1] = 0;
		sum += *(__u16 *)last;
	}
	check = ~csum_fold64(sum);
	udp->check = check ? check : 0xffff;
}

#undef CSUM_TAIL_PIECE

#endif /* RELAY_UDP_CSUM_H */
