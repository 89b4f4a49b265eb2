/* SPDX-License-Identifier: MIT */
/*
 * dp_port.c: see dp_port.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "dp_port.h"

#define RX_DESC_DEFAULT 1024u
#define TX_DESC_DEFAULT 1024u
#define MBUF_CACHE_SIZE 256u
/* Bursts in flight on each queue beyond the descriptor rings (rx burst + tx burst, both sides). */
#define MBUF_SLACK 512u

int dp_port_open(struct dp_port *port, uint16_t port_id, uint16_t queue_count, uint32_t held_mbuf_count,
		 char why[DP_WHY_SIZE])
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t rx_desc = RX_DESC_DEFAULT;
	uint16_t tx_desc = TX_DESC_DEFAULT;
	char pool_name[RTE_MEMPOOL_NAMESIZE];
	int socket;
	int rc;

	memset(port, 0, sizeof(*port));
	port->port_id = port_id;
	port->queue_count = queue_count;
	if (!rte_eth_dev_is_valid_port(port_id)) {
		snprintf(why, DP_WHY_SIZE, "port %u does not exist (%u ports: pass --vdev)", port_id,
			 rte_eth_dev_count_avail());
		return -ENODEV;
	}
	rte_eth_dev_get_name_by_port(port_id, port->name);
	rc = rte_eth_dev_info_get(port_id, &info);
	if (rc) {
		snprintf(why, DP_WHY_SIZE, "port %u info: %s", port_id, strerror(-rc));
		return rc;
	}
	if (queue_count > info.max_rx_queues || queue_count > info.max_tx_queues) {
		snprintf(why, DP_WHY_SIZE, "port %u has at most %u rx and %u tx queues", port_id,
			 info.max_rx_queues, info.max_tx_queues);
		return -EINVAL;
	}
	memset(&conf, 0, sizeof(conf));
	/* Checksums the port verifies itself arrive as mbuf flags; the rest are checked in software. */
	conf.rxmode.offloads |= info.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
	/* Spread flows over the queues by the UDP 4-tuple where the port hashes; a port that does
	 * not (af_packet: the kernel's fanout hash does it) gets no RSS configuration. */
	uint64_t rss = info.flow_type_rss_offloads & (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_UDP);
	if (queue_count > 1 && rss) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = rss;
		port->rss = 1;
	}
	rc = rte_eth_dev_configure(port_id, queue_count, queue_count, &conf);
	if (rc) {
		snprintf(why, DP_WHY_SIZE, "configure port %u: %s", port_id, strerror(-rc));
		return rc;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc);
	if (rc) {
		snprintf(why, DP_WHY_SIZE, "descriptors of port %u: %s", port_id, strerror(-rc));
		return rc;
	}
	socket = rte_eth_dev_socket_id(port_id);
	if (socket < 0)
		socket = (int)rte_socket_id();
	snprintf(pool_name, sizeof(pool_name), "zh_pool_%u", port_id);
	uint32_t mbuf_count = queue_count * (rx_desc + tx_desc + MBUF_SLACK) + held_mbuf_count;
	port->pool = rte_pktmbuf_pool_create(pool_name, mbuf_count, MBUF_CACHE_SIZE, 0,
					     RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	if (!port->pool) {
		snprintf(why, DP_WHY_SIZE, "mbuf pool of %u: %s", mbuf_count, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	for (uint16_t q = 0; q < queue_count; q++) {
		rc = rte_eth_rx_queue_setup(port_id, q, rx_desc, (unsigned)socket, NULL, port->pool);
		if (rc) {
			snprintf(why, DP_WHY_SIZE, "rx queue %u: %s", q, strerror(-rc));
			goto fail;
		}
		rc = rte_eth_tx_queue_setup(port_id, q, tx_desc, (unsigned)socket, NULL);
		if (rc) {
			snprintf(why, DP_WHY_SIZE, "tx queue %u: %s", q, strerror(-rc));
			goto fail;
		}
	}
	rc = rte_eth_dev_start(port_id);
	if (rc) {
		snprintf(why, DP_WHY_SIZE, "start port %u: %s", port_id, strerror(-rc));
		goto fail;
	}
	port->started = 1;
	rc = rte_eth_macaddr_get(port_id, &port->mac);
	if (rc) {
		snprintf(why, DP_WHY_SIZE, "MAC of port %u: %s", port_id, strerror(-rc));
		goto fail;
	}
	return 0;
fail:
	dp_port_close(port);
	return rc;
}

void dp_port_close(struct dp_port *port)
{
	if (port->started) {
		rte_eth_dev_stop(port->port_id);
		port->started = 0;
	}
	if (port->pool) {
		rte_eth_dev_close(port->port_id);
		rte_mempool_free(port->pool);
		port->pool = NULL;
	}
}
