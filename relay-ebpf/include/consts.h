/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Sizes and protocol constants. Map sizes are defaults: relayd may resize the
 * maps at load time (EbpfLoader::set_max_entries), and a build may override
 * them with -D. */
#ifndef RELAY_CONSTS_H
#define RELAY_CONSTS_H

#ifndef RELAY_MAX_ADDRESSES
#define RELAY_MAX_ADDRESSES 4 /* the object's stream table: 4 rows of all 65536 ports
                               * (relayd sizes it at load time) */
#endif

#ifndef RELAY_MAX_STATS_SLOTS
#define RELAY_MAX_STATS_SLOTS 65536 /* streams forwarded in XDP at once */
#endif

#ifndef RELAY_MAX_TX_PORTS
#define RELAY_MAX_TX_PORTS 64 /* interfaces a packet may be redirected to */
#endif

/* TTL put on every forwarded packet: the relay originates the new hop. */
#define RELAY_TTL 64

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_ALEN 6

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

#define AF_INET 2

#endif /* RELAY_CONSTS_H */
