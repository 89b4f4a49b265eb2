/* SPDX-License-Identifier: MIT */
/*
 * dp_port.h: one DPDK port: its mbuf pool, queues and start/stop.
 */
#ifndef DP_PORT_H
#define DP_PORT_H

#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mempool.h>

#include "dp_nicclk.h"

#define DP_WHY_SIZE 256u
#define DP_RX_STAMP_TEXT_SIZE 160u

/* Where a request's trace starts. */
enum dp_rx_stamp {
	DP_RX_STAMP_NONE = 0, /* the port offers no rx timestamps: traces start at the rx poll (TSC) */
	DP_RX_STAMP_OFF,      /* the port offers them, turned off (--no-rx-timestamp) */
	DP_RX_STAMP_NIC,      /* the port stamps frames (mbuf dynfield); mapped where its clock is known */
};

/* How the control core reads the clock the port's stamps are on. */
enum dp_rx_clock {
	DP_RX_CLOCK_UNKNOWN = 0, /* no way to read it: stamps stay unmapped and are counted */
	DP_RX_CLOCK_ETHDEV,      /* rte_eth_read_clock */
	DP_RX_CLOCK_REALTIME,    /* CLOCK_REALTIME (net_pcap: the kernel's capture time) */
};

/*
 * External memory for request payloads (the device's: GPU memory on cuda-gpudirect), which the port's
 * payload mbufs are built on instead of hugepages: registered with DPDK (rte_extmem_register) and
 * mapped for the port's DMA (rte_dev_dma_map). Memory the CPU may not read takes a port that splits
 * headers (into a host pool, for the rx lcore) from payloads (into this memory, for the device).
 */
struct dp_payload_mem {
	void *addr;
	size_t len_bytes;
	size_t page_size_bytes;
	int cpu_readable;
};

struct dp_port {
	uint16_t port_id;
	uint16_t queue_count;
	struct rte_mempool *pool;        /* where payloads land: hugepages, or external payload memory */
	struct rte_mempool *hdr_pool;    /* header split: the host pool the headers land in; else NULL */
	struct rte_ether_addr mac;
	char name[RTE_ETH_NAME_MAX_LEN];
	int started;
	int rss;          /* the port spreads flows over its queues by hash */
	int split;        /* frames arrive as two segments: headers (host), payload (external memory) */
	uint16_t split_head_bytes; /* the split point: bytes of each frame in the host segment */
	int dma_mapped;   /* external memory was mapped for the port's DMA (a virtual port needs none) */
	struct dp_payload_mem ext;       /* external payload memory, registered; addr NULL if none */
	/* Rx timestamps. no_rx_stamp is set before dp_port_open (which keeps it); the rest it fills. */
	int no_rx_stamp;
	enum dp_rx_stamp rx_stamp;
	enum dp_rx_clock rx_clock;
	int rx_stamp_offset;      /* the mbuf dynfield of the stamp */
	uint64_t rx_stamp_flag;   /* the ol_flags bit that says a frame carries one */
	uint64_t clock_next_tsc;  /* when the control core samples the clock next */
	struct dp_nicclk clock;   /* the stamps' clock -> TSC; published to the rx lcores via clock.pub */
};

/* Bytes of external payload memory dp_port_open needs for these queues and held mbufs. */
size_t dp_port_payload_bytes(uint16_t queue_count, uint32_t held_mbuf_count);

/*
 * Configure and start `port_id` with `queue_count` rx/tx queue pairs and a pool large enough for the
 * rings, the bursts in flight and `held_mbuf_count` mbufs held by the device ring; the pool in `ext`
 * when given (NULL: hugepages). Returns 0 or -errno with a reason in `why`: -ENOTSUP when payload
 * memory the CPU may not read meets a port that cannot split headers or verify UDP checksums.
 */
int dp_port_open(struct dp_port *port, uint16_t port_id, uint16_t queue_count, uint32_t held_mbuf_count,
		 const struct dp_payload_mem *ext, char why[DP_WHY_SIZE]);
void dp_port_close(struct dp_port *port);

/* Control core, periodically: sample the stamps' clock against the TSC when it is due and publish a new
 * map. Does nothing for a port whose stamps cannot be mapped. */
void dp_port_clock_tick(struct dp_port *port);

/* The rx timestamps in words, for the start-up line and `zerohopctl status`, e.g.
 * "nic (mapped, bound ±1250 ns)" or "tsc (port offers none)". */
void dp_port_rx_stamp_text(const struct dp_port *port, char text[DP_RX_STAMP_TEXT_SIZE]);
/* The bound of the NIC clock's map in ns, for tools that add it to their own; 0 when no map is valid. */
uint64_t dp_port_rx_stamp_bound_ns(const struct dp_port *port);

#endif /* DP_PORT_H */
