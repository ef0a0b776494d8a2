/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Every map of the relay program. Names are the ABI (relay_abi.h); all are
 * pinned by name under relayd's --pin-dir so media keeps flowing while relayd
 * restarts. */
#ifndef RELAY_MAPS_H
#define RELAY_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "relay_abi.h"

/* The stream table: one row per relay address, one entry per port of its
 * row range -> where to forward (see relay_abi.h). An array, so a lookup is
 * an index, not a hash and a bucket walk: at a million streams that is one
 * cache miss instead of three. relayd sizes it at load time (addresses x
 * ports of the range). Written only by relayd. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RELAY_MAX_ADDRESSES * 65536);
	__type(key, __u32);
	__type(value, struct relay_target);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} streams SEC(".maps");

/* The relay addresses, their rows of `streams` and their DoS shields: an
 * open-addressed hash table in an array (relay_abi.h). Written only by
 * relayd. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RELAY_ADDR_SLOTS);
	__type(key, __u32);
	__type(value, struct relay_address);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} addresses SEC(".maps");

/* Everything kept per stream (counters, rate cap, next hop, RTP figures),
 * indexed by relay_target.stats_slot: one shared copy, so the kernel memory
 * per stream does not grow with the CPU count. Mmapable: relayd reads the
 * counters of every stream without a system call each. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, RELAY_MAX_STATS_SLOTS);
	__type(key, __u32);
	__type(value, struct relay_stream_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stream_state SEC(".maps");

/* A counter of a stream record: an atomic add keeps it exact when two CPUs
 * carry one stream (uncontended, a locked add on a line the CPU holds).
 * RELAY_PLAIN_COUNTERS makes it a plain add: a measurement build that
 * prices the atomics in the benchmarks, never relayd's object. */
#ifdef RELAY_PLAIN_COUNTERS
#define stream_add(field, n) ((void)((field) += (n)))
#else
#define stream_add(field, n) ((void)__sync_fetch_and_add(&(field), (n)))
#endif

/* The arrival clock of packet fixtures (entry 0, ns), read instead of
 * bpf_ktime_get_ns() only by an object loaded with relay_test_clock set.
 * Not pinned: relayd never uses it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} test_clock SEC(".maps");

/* Program-wide outcome counters, indexed by enum relay_counter_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RELAY_CNT_MAX);
	__type(key, __u32);
	__type(value, struct relay_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

/* Interfaces a packet may leave by when it is not the one it came in on:
 * ifindex -> {ifindex, no egress program}. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, RELAY_MAX_TX_PORTS);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tx_ports SEC(".maps");

/* The MACs of the interfaces relayd attached to, by ifindex modulo the
 * table size (relay_abi.h). Written only by relayd. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RELAY_IFACE_MAC_SLOTS);
	__type(key, __u32);
	__type(value, struct relay_iface_mac);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iface_macs SEC(".maps");

/* ifindex -> how relayd attached to it (userspace bookkeeping, see relay_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RELAY_MAX_TX_PORTS);
	__type(key, __u32);
	__type(value, struct relay_iface_status);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ifaces SEC(".maps");

#endif /* RELAY_MAPS_H */
