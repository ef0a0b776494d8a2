/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Incremental Internet checksum updates (RFC 1624, eqn. 3):
 *     HC' = ~(~HC + ~m + m')
 * summed over the 16-bit words that changed. One's-complement sums do not
 * depend on byte order, so words are used exactly as they sit in the packet. */
#ifndef RELAY_CSUM_H
#define RELAY_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <linux/udp.h>

/* Accumulator: start from the old checksum, add word changes, then finish. */
static __always_inline __u32 csum_start(__u16 old_check)
{
	return (__u16)~old_check;
}

static __always_inline void csum_add_change16(__u32 *acc, __u16 old_word, __u16 new_word)
{
	*acc += (__u16)~old_word;
	*acc += new_word;
}

/* A 32-bit field (an IPv4 address) is two 16-bit words. */
static __always_inline void csum_add_change32(__u32 *acc, __u32 old_val, __u32 new_val)
{
	csum_add_change16(acc, (__u16)(old_val >> 16), (__u16)(new_val >> 16));
	csum_add_change16(acc, (__u16)old_val, (__u16)new_val);
}

static __always_inline __u16 csum_finish(__u32 acc)
{
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return (__u16)~acc;
}

/* The tail every UDP rewrite shares: the port changes go into `acc` (which
 * already holds the address changes), the checksum is written (a computed
 * zero is sent as all ones: zero means "none"), then the new ports. */
static __always_inline void udp_set_ports(struct udphdr *udp, __u32 acc, __be16 sport,
					  __be16 dport)
{
	csum_add_change16(&acc, udp->source, sport);
	csum_add_change16(&acc, udp->dest, dport);
	udp->check = csum_finish(acc);
	if (!udp->check)
		udp->check = 0xffff;
	udp->source = sport;
	udp->dest = dport;
}

/* IPv4 header checksum from scratch (RFC 1071) over the 10 words of an
 * option-less header: the value to store, or 0 when verifying a header
 * whose checksum is right. */
static __always_inline __u16 ipv4_header_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 acc = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		acc += w[i];
	return csum_finish(acc);
}

#endif /* RELAY_CSUM_H */
