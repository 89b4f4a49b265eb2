/* SPDX-License-Identifier: MIT */
/*
 * dp_port.h: one DPDK port: its mbuf pool, queues and start/stop.
 */
#ifndef DP_PORT_H
#define DP_PORT_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_mempool.h>

#define DP_WHY_SIZE 256u

struct dp_port {
	uint16_t port_id;
	uint16_t queue_count;
	struct rte_mempool *pool;
	struct rte_ether_addr mac;
	char name[RTE_ETH_NAME_MAX_LEN];
	int started;
	int rss;          /* the port spreads flows over its queues by hash */
};

/*
 * Configure and start `port_id` with `queue_count` rx/tx queue pairs and a pool large enough for the
 * rings, the bursts in flight and `held_mbuf_count` mbufs held by the device ring. Returns 0 or -errno
 * with a reason in `why`.
 */
int dp_port_open(struct dp_port *port, uint16_t port_id, uint16_t queue_count, uint32_t held_mbuf_count,
		 char why[DP_WHY_SIZE]);
void dp_port_close(struct dp_port *port);

#endif /* DP_PORT_H */
