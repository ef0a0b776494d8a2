// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Load generator and sink for the throughput benchmark (xrelay-bench
 * throughput). Kept apart from the relay program: nothing here is part of
 * the relay's ABI.
 *
 * bench_gen runs through BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES
 * on the traffic side's veth and returns XDP_TX, so each run emits one RTP
 * frame toward the relay. Frames are counted per CPU; with L lanes (one
 * generator thread pinned to each of L CPUs), frame i of CPU c belongs to
 * flow (i * L + c % L) % n_flows, so each CPU sends flows of its own, as
 * RSS would spread them, and every flow's RTP sequence stays in order.
 * With one lane, frame i is flow i % n_flows. Live-frame
 * pages are recycled without being reset, so every field is written on
 * every run: the varied ones (addresses, ports, IP checksum, RTP
 * sequence/timestamp/SSRC) and the MACs, because the relay's XDP_TX
 * rewrites them in the same page (veth passes pages, not copies) before it
 * returns to the pool, and a relay that drops frames sent to another
 * host's MAC (as the stack does) would otherwise drop the reused ones.
 * The UDP checksum is sent as 0, which IPv4 allows.
 *
 * bench_sink is attached to the same veth and counts (per CPU) and drops
 * every IPv4 UDP frame the relay sends back; anything else (ARP) passes.
 * test_run does not go through the attached program, so the two do not see
 * each other's frames. With latency on (bench_config[2]), it also reads
 * the paced sender's stamp (CLOCK_MONOTONIC ns at send, then the flow's
 * packet count and index, big-endian, after the RTP header) and records
 * the one-way time through the relay in a histogram of 1 us buckets, and
 * per flow the RFC 3550 transit difference |D| between consecutive
 * packets: the jitter added on the way (the sender paces evenly).
 *
 * bench_bounce stands in for a relay, for the floor of those figures: on
 * the relay-side veth it sends every IPv4 UDP frame straight back (MACs,
 * addresses and ports swapped, XDP_TX), so the sink sees what the veth
 * pair and XDP alone cost.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define BENCH_MAX_FLOWS 262144
#define RTP_HEADER_LEN 12

/* One direction of one call: who sends, to which relay port. Network byte order. */
struct bench_flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

struct bench_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct bench_flow);
} bench_flows SEC(".maps");

/* [0]: number of flows in bench_flows to cycle through; [1]: lanes (0 or 1:
 * one generator CPU); [2]: 1 = the sink records latency. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u32);
} bench_config SEC(".maps");

/* The generated frames' MACs: source, then destination. */
struct bench_macs {
	__u8 src[ETH_ALEN];
	__u8 dst[ETH_ALEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_macs);
} bench_macs SEC(".maps");

/* Frames generated on this CPU so far: picks the next flow. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_next SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_count);
} bench_sink_count SEC(".maps");

/* One-way latency histogram: bucket i counts packets that took [i, i+1) us;
 * the last bucket everything from BENCH_LAT_BUCKETS - 1 us on. */
#define BENCH_LAT_BUCKETS 20001
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BENCH_LAT_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} bench_latency SEC(".maps");

/* Per flow: the previous packet's transit time and packet count. */
struct bench_transit {
	__u64 transit_ns;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct bench_transit);
} bench_transits SEC(".maps");

/* Sum of |D| (ns) over consecutive packet pairs of a flow, and the pairs;
 * plus packets whose stamp could not be used (clock skew, short frame). */
struct bench_jitter {
	__u64 sum_abs_d_ns;
	__u64 pairs;
	__u64 unstamped;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_jitter);
} bench_jitter SEC(".maps");

/* The paced sender's stamp after the RTP header: send time, the flow's
 * packet count, the flow index (big-endian). */
struct bench_stamp {
	__be64 sent_ns;
	__be64 count;
	__be32 flow;
} __attribute__((packed));

static __always_inline void record_latency(const __u8 *payload, void *end)
{
	const struct bench_stamp *st = (const void *)(payload + RTP_HEADER_LEN);
	struct bench_jitter *j;
	struct bench_transit *prev;
	__u32 zero = 0, bucket, flow;
	__u64 now = bpf_ktime_get_ns(), sent, count, transit, d;

	j = bpf_map_lookup_elem(&bench_jitter, &zero);
	if (!j)
		return;
	if ((void *)(st + 1) > end) {
		j->unstamped++;
		return;
	}
	sent = bpf_be64_to_cpu(st->sent_ns);
	if (sent == 0 || sent > now) {
		j->unstamped++;
		return;
	}
	transit = now - sent;
	bucket = transit / 1000 < BENCH_LAT_BUCKETS - 1 ? transit / 1000 : BENCH_LAT_BUCKETS - 1;
	__u64 *slot = bpf_map_lookup_elem(&bench_latency, &bucket);
	if (slot)
		*slot += 1;

	flow = bpf_ntohl(st->flow);
	count = bpf_be64_to_cpu(st->count);
	prev = bpf_map_lookup_elem(&bench_transits, &flow);
	if (!prev)
		return;
	if (prev->count && prev->count + 1 == count) {
		d = transit > prev->transit_ns ? transit - prev->transit_ns : prev->transit_ns - transit;
		j->sum_abs_d_ns += d;
		j->pairs++;
	}
	prev->transit_ns = transit;
	prev->count = count;
}

static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *rtp = (void *)(udp + 1);
	__u32 zero = 0, one = 1;

	if ((void *)(rtp + RTP_HEADER_LEN) > end)
		return XDP_ABORTED;
	__u32 *n_flows = bpf_map_lookup_elem(&bench_config, &zero);
	__u32 *n_lanes = bpf_map_lookup_elem(&bench_config, &one);
	__u64 *next = bpf_map_lookup_elem(&bench_next, &zero);
	if (!n_flows || !n_lanes || !next || *n_flows == 0)
		return XDP_ABORTED;
	__u32 lanes = *n_lanes ? *n_lanes : 1;
	__u64 i = *next * lanes + bpf_get_smp_processor_id() % lanes;
	*next += 1;
	__u32 n = *n_flows;
	__u32 idx = (__u32)(i % n);
	__u32 round = (__u32)(i / n);
	struct bench_flow *f = bpf_map_lookup_elem(&bench_flows, &idx);
	struct bench_macs *macs = bpf_map_lookup_elem(&bench_macs, &zero);
	if (!f || !macs)
		return XDP_ABORTED;

	__builtin_memcpy(eth->h_source, macs->src, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, macs->dst, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->saddr = f->saddr;
	ip->daddr = f->daddr;
	ip->check = 0;
	ip->check = ipv4_csum(ip);
	udp->source = f->sport;
	udp->dest = f->dport;
	udp->check = 0;

	/* RTP: one 20 ms G.711 frame per round of the flows. */
	__u16 seq = bpf_htons((__u16)round);
	__u32 ts = bpf_htonl(round * 160);
	__u32 ssrc = bpf_htonl(idx + 1);
	__builtin_memcpy(rtp + 2, &seq, 2);
	__builtin_memcpy(rtp + 4, &ts, 4);
	__builtin_memcpy(rtp + 8, &ssrc, 4);
	return XDP_TX;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 zero = 0;

	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	struct bench_count *c = bpf_map_lookup_elem(&bench_sink_count, &zero);
	if (c) {
		c->packets++;
		c->bytes += (__u64)(end - data);
	}
	__u32 two = 2;
	__u32 *latency_on = bpf_map_lookup_elem(&bench_config, &two);
	if (latency_on && *latency_on && ip->ihl == 5)
		record_latency((const __u8 *)(ip + 1) + sizeof(struct udphdr), end);
	return XDP_DROP;
}

SEC("xdp")
int bench_bounce(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 mac[ETH_ALEN];
	__be32 addr;
	__be16 port;

	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	/* Swapping both pairs leaves every checksum valid. */
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
