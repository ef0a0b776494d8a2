/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The kernel/user ABI of the xrelay XDP program.
 *
 * The Rust mirror lives in relay-common/src/abi.rs. The two are tied together
 * by `relay_abi` (see relay.bpf.c): a table of every struct size and field
 * offset, compiled into the object. relayd compares it with the table Rust
 * computes and refuses to program maps from an object that disagrees, and the
 * `abi_layout` test does the same on every build. Change both files together
 * and bump RELAY_ABI_VERSION.
 *
 * Rules: fixed-width types only, explicit padding, no bool, byte order noted
 * on every field ("net" = network byte order, "host" = CPU byte order).
 */
#ifndef RELAY_ABI_H
#define RELAY_ABI_H

#include <linux/types.h>

#define RELAY_ABI_MAGIC 0x59524c58u /* "XLRY" read as a little-endian u32 */
#define RELAY_ABI_VERSION 8u

/* Map names (maps.h): streams, stream_state, counters, tx_ports, ifaces,
 * addresses, iface_macs; relay-common has the same strings as constants
 * (abi::MAP_*). */

/*
 * The stream table is indexed, not hashed: each relay address owns a row of
 * entries, one per UDP port of its row range [row_first_port,
 * row_last_port] (relayd's media port range and its static streams' ports),
 * so a packet's entry is streams[row_base + port - row_first_port] with the
 * row from the small, always-cached `addresses` map. A row sized to the
 * port range, not to all 65536 ports, is what keeps the kernel memory per
 * stream within 256 bytes: 10 000 ports take 640 KB per address, not 4 MiB.
 * IPv4 addresses are stored v4-mapped (::ffff:a.b.c.d) so that IPv4 and
 * IPv6 share both maps.
 */

/* Stream flags (relay_target.flags). */
#define RELAY_TF_STRICT_SOURCE 0x1u /* drop packets whose source != expect_* */
#define RELAY_TF_TO_USERSPACE 0x2u  /* a port of relayd's, not in the fast path
                                     * yet (learning): hand packets to the stack */
#define RELAY_TF_RTP 0x4u  /* an RTP port: keep relay_rtp_stats (RTP figures,
                            * rtcp-mux and non-RTP packets counted apart) */
#define RELAY_TF_RTCP 0x8u /* an RTCP port: count RTCP and other packets */
#define RELAY_TF_IN_USE 0x10u /* set in every installed entry (0: no stream) */
#define RELAY_TF_JITTER 0x20u /* RTP with a known clock rate: precise arrival
                               * times for the jitter */
#define RELAY_TF_ICE 0x40u /* relayd answers ICE checks on this port: STUN
                            * (magic cookie 0x2112A442 at UDP payload offset
                            * 4, first two bits 0) goes to the stack */
#define RELAY_STUN_MAGIC 0x2112A442u
#define RELAY_TF_RTCP_DEMUX 0x80u /* rtcp-mux demux on this RTP port: RTCP
                                   * (RFC 5761 §4: version 2, second byte
                                   * 192..=223) takes the entry of port + 1
                                   * (the party's RTCP port), or goes to the
                                   * stack while that one does not forward */

/* Forwarding entry: where a packet sent to the entry's address and port
 * goes. The family of peer_addr is the egress family (src_addr has the same
 * one): when it differs from the packet's, it is bridged between IPv4 and
 * IPv6.
 *
 * relayd rewrites an entry in three writes, seqlock style: `seq` made odd
 * (nothing else changed), the new content (seq still odd), seq made even.
 * The program reads seq, copies the entry, reads seq again, and passes the
 * packet to the stack (relayd's socket) unless both reads saw the same even
 * value, so it never acts on a half-written entry. One cache line. */
struct relay_target {
	__u8 peer_addr[16];   /* net: destination (the other party), v4-mapped if IPv4 */
	__u8 src_addr[16];    /* net: relay address the packet leaves from, same family */
	__u8 expect_addr[16]; /* net: expected sender (strict-source), key's family */
	__be16 peer_port;     /* net: destination UDP port */
	__be16 src_port;      /* net: relay UDP port the packet leaves from */
	__be16 expect_port;   /* net: expected sender UDP port */
	__u16 seq;            /* host: update sequence, odd while relayd rewrites the entry */
	__u32 flags;          /* host: RELAY_TF_*; 0 = no stream */
	__u32 stats_slot;     /* host: index into stream_state */
};

/*
 * A stream's counters and rate-cap bucket: the first cache line of its
 * relay_stream_state, the one every packet of the stream touches.
 *
 * One copy shared by all CPUs (ABI v8; v7 kept one per CPU, which made the
 * kernel memory per stream grow with the CPU count). RSS keeps a flow on one
 * receive queue, so a stream has one writer almost always; the counters are
 * still added atomically so that they stay exact when it has two.
 */
struct relay_stream_stats {
	__u64 packets;      /* host: packets forwarded by XDP (atomic adds) */
	__u64 bytes;        /* host: UDP payload bytes forwarded by XDP (atomic adds) */
	__u64 dropped;      /* host: packets dropped: strict source, rate cap (atomic adds) */
	__u64 passed;       /* host: packets handed to the kernel stack: FIB/neighbour
	                     * miss, no checksum, no headroom (atomic adds) */
	__u64 last_seen_ns; /* host: CLOCK_MONOTONIC(_COARSE) of the last packet */
	__u64 tokens_nano;  /* host: rate-cap bucket, billionths of a packet */
	__u64 refill_ns;    /* host: when the bucket was last refilled */
	__u32 max_pps;      /* host: the stream's packet-rate cap, 0 = none (set by relayd) */
	__u32 _pad0;        /* zero */
};

/*
 * The last bpf_fib_lookup answer for a stream, reused until until_ns so most
 * packets skip the FIB (nexthop.h). Shared by all CPUs: a writer clears
 * until_ns first and sets it last, and a reader that sees until_ns change
 * while it copies asks the FIB instead.
 */
struct relay_next_hop {
	__u64 until_ns;  /* host: valid while the packet clock is below; 0 = empty */
	__u32 ifindex;   /* host: egress interface */
	__u16 max_len;   /* host: largest IP packet the lookup passed (MTU) */
	__u8 dmac[6];    /* next hop's MAC */
	__u8 smac[6];    /* egress interface's MAC */
	__u8 _pad[6];    /* zero */
};

/*
 * What one stream's packets say about their RTP source (RFC 3550 A.1, A.3,
 * A.8), part of the stream's relay_stream_state. The figures describe the
 * whole flow and assume one writer at a time (RSS keeps a flow on one CPU);
 * the four packet-class counters are added atomically. relay-common's rtp.rs
 * is the same algorithm on the host.
 */
struct relay_rtp_stats {
	__u64 rtp_packets;     /* host: RTP packets seen (any SSRC) */
	__u64 rtcp_packets;    /* host: RTCP packets (RTCP port, or rtcp-mux) */
	__u64 rtcp_bytes;      /* host: their UDP payload bytes */
	__u64 other_packets;   /* host: neither (STUN, DTLS, garbage) */
	__u64 received;        /* host: RTP packets of this SSRC counted for loss */
	__u64 last_arrival_ns; /* host: CLOCK_MONOTONIC of the previous RTP packet */
	__u32 ssrc;            /* host: current SSRC */
	__u32 ssrc_changes;    /* host: SSRC changes after the first */
	__u32 cycles;          /* host: sequence wraps, times 65536 */
	__u32 base_seq;        /* host: first sequence number of this SSRC */
	__u32 bad_seq;         /* host: restart candidate, 65537 = none */
	__u32 jitter_q4;       /* host: interarrival jitter x16, timestamp units */
	__u32 last_ts;         /* host: RTP timestamp of the previous packet */
	__u32 lost_before;     /* host: lost by earlier SSRCs and restarts */
	__u16 max_seq;         /* host: highest sequence number seen */
	__u8 payload_type;     /* last RTP payload type */
	__u8 state;            /* RELAY_RTP_STATE_* */
	__u32 clock_rate;      /* host: RTP clock rate in Hz for jitter, 0 = unknown (set by relayd) */
};

/*
 * Everything the program keeps for one stream, indexed by stats_slot in the
 * `stream_state` ARRAY: 192 bytes, three cache lines, whatever the CPU count.
 * A packet of a stream touches the counters line and the next-hop line; an
 * RTP or RTCP packet also the RTP line. The array is mmapable: relayd reads
 * counters and sets max_pps and clock_rate through the mapping, word by
 * word, and writes a whole record only to a slot no entry points to.
 */
struct relay_stream_state {
	struct relay_stream_stats stats; /* bytes 0-63 */
	struct relay_next_hop nh;        /* bytes 64-95 */
	struct relay_rtp_stats rtp;      /* bytes 96-183 */
	__u64 _pad;                      /* zero; rounds the record to three lines */
};

#define RELAY_RTP_STATE_NONE 0     /* no RTP packet yet */
#define RELAY_RTP_STATE_TRACKING 1 /* an SSRC is being tracked */

/* One program-wide counter (PERCPU_ARRAY indexed by enum relay_counter_id). */
struct relay_counter {
	__u64 packets; /* host */
	__u64 bytes;   /* host: whole frame bytes as received */
};

/*
 * One relay address: its row of the stream table, and its DoS shield: UDP
 * to a port in [port_min, port_max] without a stream is dropped in XDP
 * instead of reaching the stack.
 *
 * The `addresses` map is an ARRAY of these used as an open-addressed hash
 * table: every packet looks its destination up here, and a kernel HASH
 * lookup of a 16-byte key measured ~25 ns on the development VM against
 * ~2 ns for an array index. An address sits in slot relay_address_hash(addr)
 * or one of the RELAY_ADDR_PROBES - 1 slots after it (wrapping); a slot
 * without RELAY_ADDR_IN_USE ends the search. Slots are never emptied (a
 * table lives as long as its relayd, which never drops an address), and
 * relayd rewrites one seqlock style, like a stream entry.
 */
#define RELAY_ADDR_SLOT_BITS 13
#define RELAY_ADDR_SLOTS (1u << RELAY_ADDR_SLOT_BITS)
#define RELAY_ADDR_PROBES 8
/* Multiplier of the slot hash: 2^32 / golden ratio (Fibonacci hashing). */
#define RELAY_ADDR_HASH_MUL 0x9e3779b1u

struct relay_address {
	__u8 addr[16];  /* net: the address, IPv4 v4-mapped (::ffff:a.b.c.d) */
	__u32 row_base;       /* host: stream table index of row_first_port's entry */
	__u16 port_min;       /* host: shielded range */
	__u16 port_max;       /* host */
	__u32 flags;          /* host: RELAY_ADDR_IN_USE | RELAY_SHIELD_* */
	__u16 seq;            /* host: update sequence, odd while relayd rewrites the slot */
	__u16 row_first_port; /* host: the row's ports: streams[row_base + port - */
	__u16 row_last_port;  /* host:   row_first_port] for port in [first, last] */
	__u16 _pad;           /* zero */
};

#define RELAY_SHIELD_DROP_UNKNOWN 0x1u /* drop (else pass, counted apart) */
#define RELAY_ADDR_IN_USE 0x2u         /* the slot holds an address */

/*
 * The home slot of `addr` (16 bytes): the two halves, read as host-order
 * 64-bit words, XORed and folded to 32 bits, then multiplied and shifted
 * down to RELAY_ADDR_SLOT_BITS. relay-common's address_slot() is the same
 * function; the fixtures check that the two agree.
 */
static inline __u32 relay_address_hash(const __u8 *addr)
{
	__u64 lo, hi, x;

	__builtin_memcpy(&lo, addr, 8);
	__builtin_memcpy(&hi, addr + 8, 8);
	x = lo ^ hi;
	x ^= x >> 32;
	return ((__u32)x * RELAY_ADDR_HASH_MUL) >> (32 - RELAY_ADDR_SLOT_BITS);
}

/*
 * The MAC of an interface the program is attached to (the `iface_macs`
 * ARRAY, slot ifindex % RELAY_IFACE_MAC_SLOTS): frames sent to another
 * host's MAC are not forwarded (sanity.h). A slot whose ifindex is not the
 * ingress interface's (two interfaces on one slot, or none) skips the check.
 */
#define RELAY_IFACE_MAC_SLOTS 256

struct relay_iface_mac {
	__u32 ifindex; /* host: 0 = none */
	__u8 mac[6];   /* the interface's MAC */
	__u16 _pad;    /* zero */
};

/* relay_iface_status.mode */
#define RELAY_XDP_MODE_NATIVE 1u
#define RELAY_XDP_MODE_GENERIC 2u

/* relay_iface_status.reason: why the interface runs in that mode. */
#define RELAY_MODE_REASON_NATIVE_OK 0u       /* native attach and TX self-test passed */
#define RELAY_MODE_REASON_NATIVE_REFUSED 1u  /* the driver refused native XDP */
#define RELAY_MODE_REASON_NATIVE_TX_LOST 2u  /* native XDP_TX frames were dropped */
#define RELAY_MODE_REASON_CONFIGURED 3u      /* the operator asked for this mode */

/*
 * How relayd attached the program to one interface (the `ifaces` map). Only
 * userspace reads it (relayctl); it lives in the object so that it is pinned
 * with the rest and outlives relayd the same way.
 */
struct relay_iface_status {
	__u32 ifindex; /* host */
	__u32 mode;    /* host: RELAY_XDP_MODE_* */
	__u32 reason;  /* host: RELAY_MODE_REASON_* */
	__u32 _pad;    /* zero */
	char name[16]; /* interface name, NUL-padded */
};

/*
 * Program-wide outcomes. Append only: the index is the ABI. The names are in
 * relay-common (CounterId) for relayctl and metrics.
 */
enum relay_counter_id {
	RELAY_CNT_FWD_TX = 0,         /* forwarded out of the ingress interface */
	RELAY_CNT_FWD_REDIRECT = 1,   /* forwarded to another interface (DEVMAP) */
	RELAY_CNT_PASS_NOT_IP = 2,    /* ARP and other non-IP ethertypes */
	RELAY_CNT_PASS_IPV6 = 3,      /* IPv6 with an extension header (fragments included) */
	RELAY_CNT_PASS_NOT_UDP = 4,   /* not UDP (ICMPv6 and neighbour discovery included) */
	RELAY_CNT_PASS_IP_OPTIONS = 5,/* IPv4 header with options (IHL > 5) */
	RELAY_CNT_PASS_FRAGMENT = 6,  /* any IPv4 fragment, first or later */
	RELAY_CNT_PASS_MALFORMED = 7, /* truncated or inconsistent headers */
	RELAY_CNT_PASS_NO_STREAM = 8, /* UDP to an address/port with no stream */
	RELAY_CNT_PASS_FIB_MISS = 9,  /* no route or no neighbour entry yet */
	RELAY_CNT_PASS_NO_TX_PORT = 10,/* egress interface not in tx_ports */
	RELAY_CNT_DROP_STRICT_SOURCE = 11, /* strict stream, unexpected sender */
	RELAY_CNT_PASS_TO_USERSPACE = 12,  /* relayd's port, still learning */
	RELAY_CNT_DROP_NO_STREAM = 13,     /* media port range, no stream (shield) */
	RELAY_CNT_DROP_RATE = 14,          /* stream over its packet-rate cap */
	RELAY_CNT_PASS_NO_CSUM = 15,       /* IPv4 without UDP checksum bridged to IPv6; partial checksum on a datagram over RELAY_CSUM_MAX_LEN */
	RELAY_CNT_PASS_NO_HEADROOM = 16,   /* no room to grow the frame (IPv4 -> IPv6) */
	RELAY_CNT_PASS_UPDATING = 17,      /* relayd was rewriting its stream entry or address slot */
	RELAY_CNT_PASS_VLAN = 18,          /* 802.1Q/802.1ad-tagged frame: the stack sorts out VLANs */
	RELAY_CNT_DROP_BAD_HEADER = 19,    /* IPv4 header checksum wrong (sanity.h) */
	RELAY_CNT_DROP_OTHER_HOST = 20,    /* destination MAC is another host's (sanity.h) */
	RELAY_CNT_DROP_MARTIAN = 21,       /* martian source address (sanity.h) */
	RELAY_CNT_MAX = 22,
};

/*
 * Layout table compiled into the object (`relay_abi`): magic, version, then
 * RELAY_ABI_LAYOUT_LEN numbers (struct sizes and field offsets, in the order
 * of RELAY_ABI_LAYOUT in relay.bpf.c and LAYOUT in relay-common).
 */
#define RELAY_ABI_LAYOUT_LEN 75

struct relay_abi_meta {
	__u32 magic;                        /* host: RELAY_ABI_MAGIC */
	__u32 version;                      /* host: RELAY_ABI_VERSION */
	__u32 counter_max;                  /* host: RELAY_CNT_MAX */
	__u32 layout_len;                   /* host: RELAY_ABI_LAYOUT_LEN */
	__u32 layout[RELAY_ABI_LAYOUT_LEN]; /* host: sizes and offsets */
};

#endif /* RELAY_ABI_H */
