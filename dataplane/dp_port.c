/* SPDX-License-Identifier: MIT */
/*
 * dp_port.c: see dp_port.h.
 */
/* Still experimental in DPDK 22.11, and the only API for what they do: rte_eth_read_clock (a port's
 * clock), rte_extmem's DMA mapping, the external-buffer pool and protocol-based buffer split
 * (payloads in device memory). */
#define ALLOW_EXPERIMENTAL_API 1
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_bus.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_memory.h>

#include "dp_port.h"

#define RX_DESC_DEFAULT 1024u
#define TX_DESC_DEFAULT 1024u
#define MBUF_CACHE_SIZE 256u
/* Bursts in flight on each queue beyond the descriptor rings (rx burst + tx burst, both sides). */
#define MBUF_SLACK 512u
/* One payload buffer in external memory: the default mbuf data room, a whole number of cache lines. */
#define EXT_ELT_SIZE RTE_ALIGN_CEIL(RTE_MBUF_DEFAULT_BUF_SIZE, RTE_CACHE_LINE_SIZE)
/* The fixed split point where a port cannot split by protocol: untagged Ethernet, IPv4 without
 * options, UDP. Other layouts reach past it and are dropped (dp_classify_split). */
#define SPLIT_HEAD_BYTES (RTE_ETHER_HDR_LEN + 20u + 8u)

static uint32_t mbuf_count_for(uint16_t queue_count, uint16_t rx_desc, uint16_t tx_desc, uint32_t held_mbuf_count)
{
	return queue_count * ((uint32_t)rx_desc + tx_desc + MBUF_SLACK) + held_mbuf_count;
}

size_t dp_port_payload_bytes(uint16_t queue_count, uint32_t held_mbuf_count)
{
	/* The default descriptor counts: a port may only lower them (or round them up a little, which
	 * the slack covers), and dp_port_open checks the memory it was given against what it needs. */
	return (size_t)mbuf_count_for(queue_count, RX_DESC_DEFAULT, TX_DESC_DEFAULT, held_mbuf_count) * EXT_ELT_SIZE;
}

/* A port on the virtual device bus (af_packet, af_xdp, pcap, ring): the CPU copies its frames, so it
 * has nothing to map for DMA. */
static int is_virtual_port(const struct rte_eth_dev_info *info)
{
	const struct rte_bus *bus = rte_dev_bus(info->device);

	return bus && strcmp(rte_bus_name(bus), "vdev") == 0;
}

/*
 * Register external payload memory with DPDK and map it for the port's DMA. The memory's IOVA is its
 * virtual address, so IOVA-as-VA is required: in IOVA-as-PA mode (UIO, VFIO without an IOMMU) there is
 * no bus address to give the NIC for memory DPDK did not allocate, and a NIC told a wrong one would
 * write anywhere. A virtual port needs no mapping; any other port must take one.
 */
static int register_ext(struct dp_port *port, const struct rte_eth_dev_info *info, const struct dp_payload_mem *ext,
			char why[DP_WHY_SIZE])
{
	rte_iova_t iova = (rte_iova_t)(uintptr_t)ext->addr;
	int virtual_port = is_virtual_port(info);

	if (!virtual_port && rte_eal_iova_mode() != RTE_IOVA_VA) {
		snprintf(why, DP_WHY_SIZE, "external payload memory needs IOVA as VA (vfio-pci with an IOMMU, or a "
			 "bifurcated driver such as mlx5): port %s runs with IOVA as PA", port->name);
		return -ENOTSUP;
	}
	if (((uintptr_t)ext->addr % ext->page_size_bytes) != 0 || (ext->len_bytes % ext->page_size_bytes) != 0) {
		snprintf(why, DP_WHY_SIZE, "payload memory is not in whole %zu-byte pages", ext->page_size_bytes);
		return -EINVAL;
	}
	if (rte_extmem_register(ext->addr, ext->len_bytes, NULL, 0, ext->page_size_bytes) != 0) {
		snprintf(why, DP_WHY_SIZE, "rte_extmem_register of %zu bytes: %s", ext->len_bytes, rte_strerror(rte_errno));
		return -rte_errno;
	}
	port->ext = *ext;
	if (virtual_port)
		return 0;
	if (rte_dev_dma_map(info->device, ext->addr, iova, ext->len_bytes) != 0) {
		snprintf(why, DP_WHY_SIZE, "rte_dev_dma_map of payload memory for %s: %s", port->name,
			 rte_strerror(rte_errno));
		return -rte_errno;
	}
	port->dma_mapped = 1;
	return 0;
}

/*
 * Header/payload split: the first SPLIT_HEAD_BYTES of every frame (headers) into a host pool, the rest
 * (the payload) into the external pool. A fixed length rather than a protocol split, on purpose: with
 * a protocol split a frame that does not match (ARP above all) lands whole in device memory, where the
 * rx lcore may not read it, and the appliance would stop answering ARP. At 42 bytes an ARP request is
 * whole in the host segment; what does not fit (802.1Q tags, IPv4 options, ICMP echo data) is a
 * counted drop_split_layout.
 */
static int setup_split_rxq(struct dp_port *port, uint16_t q, uint16_t rx_desc, int socket,
			   const struct rte_eth_dev_info *info, char why[DP_WHY_SIZE])
{
	union rte_eth_rxseg segs[2];
	struct rte_eth_rxconf rxconf = info->default_rxconf;

	memset(segs, 0, sizeof(segs));
	segs[0].split.mp = port->hdr_pool;
	segs[0].split.length = SPLIT_HEAD_BYTES;
	port->split_head_bytes = SPLIT_HEAD_BYTES;
	segs[1].split.mp = port->pool;
	rxconf.offloads |= RTE_ETH_RX_OFFLOAD_BUFFER_SPLIT;
	rxconf.rx_seg = segs;
	rxconf.rx_nseg = 2;
	int rc = rte_eth_rx_queue_setup(port->port_id, q, rx_desc, (unsigned)socket, &rxconf, NULL);
	if (rc)
		snprintf(why, DP_WHY_SIZE, "rx queue %u with header split: %s", q, strerror(-rc));
	return rc;
}

/* Rx timestamps: brackets per clock sample (the tightest is kept), how often the control core samples,
 * the pause between the two samples taken at start-up (so that the first map is known before the
 * first frame), and how far from the newest sample a stamp may lie and still be mapped: three refresh
 * periods, so that a late control core costs no stamps, and the stated bound covers that reach (a
 * control core stalled longer leaves stamps unmapped and counted, never mapped beyond their bound). */
#define CLOCK_SAMPLE_TRIES 8u
#define CLOCK_REFRESH_MS 100u
#define CLOCK_STARTUP_GAP_US 20000u
#define CLOCK_HORIZON_NS (3ull * CLOCK_REFRESH_MS * 1000000ull)

/*
 * PMDs whose stamps' clock is known without rte_eth_read_clock. Returns 1 and the clock, the units of
 * that clock per stamp unit and the stamps' resolution when `driver` is one of them.
 *
 * net_pcap (drivers/net/pcap/pcap_ethdev.c) stamps each frame with libpcap's capture time, which is
 * the kernel's CLOCK_REALTIME stamp of the frame, and implements no read_clock. DPDK 22.11 stamps
 * every frame in microseconds (tv_sec * 10^6 + tv_usec) without offering RTE_ETH_RX_OFFLOAD_TIMESTAMP;
 * later versions offer the offload and stamp in nanoseconds.
 */
static int known_stamp_clock(const char *driver, int offered, enum dp_rx_clock *clock, uint32_t *stamp_scale,
			     uint64_t *resolution_ns)
{
	if (driver && strcmp(driver, "net_pcap") == 0) {
		*clock = DP_RX_CLOCK_REALTIME;
		*stamp_scale = offered ? 1 : 1000;
		*resolution_ns = offered ? 0 : 1000;
		return 1;
	}
	return 0;
}

static int clock_read(const struct dp_port *port, uint64_t *nic)
{
	struct timespec ts;

	if (port->rx_clock == DP_RX_CLOCK_ETHDEV)
		return rte_eth_read_clock(port->port_id, nic);
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -errno;
	*nic = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return 0;
}

/* One sample: the tightest of a few (TSC, clock, TSC) brackets, then a new fit published. */
static int clock_sample(struct dp_port *port)
{
	uint64_t best_before = 0, best_nic = 0, best_width = UINT64_MAX;

	for (uint32_t i = 0; i < CLOCK_SAMPLE_TRIES; i++) {
		uint64_t nic;
		/* rte_rdtsc_precise fences: the clock read stays between the two TSC reads. */
		uint64_t before = rte_rdtsc_precise();
		int rc = clock_read(port, &nic);
		uint64_t after = rte_rdtsc_precise();

		if (rc)
			return rc;
		if (after - before < best_width) {
			best_width = after - before;
			best_before = before;
			best_nic = nic;
		}
	}
	dp_nicclk_add(&port->clock, best_before, best_nic, best_before + best_width);
	return dp_nicclk_update(&port->clock);
}

/* Before configure: does the port stamp, and is the offload to be asked for? */
static void rx_stamp_choose(struct dp_port *port, const struct rte_eth_dev_info *info, struct rte_eth_conf *conf)
{
	int offered = (info->rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP) != 0;
	enum dp_rx_clock clock;
	uint32_t scale;
	uint64_t resolution_ns;

	if (!offered && !known_stamp_clock(info->driver_name, 0, &clock, &scale, &resolution_ns))
		port->rx_stamp = DP_RX_STAMP_NONE;
	else if (port->no_rx_stamp)
		port->rx_stamp = DP_RX_STAMP_OFF;
	else
		port->rx_stamp = DP_RX_STAMP_NIC;
	if (offered && port->rx_stamp == DP_RX_STAMP_NIC)
		conf->rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
}

/* After start: the stamps' dynfield and flag, the clock to map them from, and the first map. */
static void rx_stamp_start(struct dp_port *port, const struct rte_eth_dev_info *info)
{
	int offered = (info->rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP) != 0;
	uint32_t scale = 1;
	uint64_t resolution_ns = 0;
	uint64_t nic;

	if (port->rx_stamp != DP_RX_STAMP_NIC)
		return;
	/* Registering returns the field and flag the PMD registered, or registers them for it. */
	if (rte_mbuf_dyn_rx_timestamp_register(&port->rx_stamp_offset, &port->rx_stamp_flag) != 0) {
		port->rx_stamp = DP_RX_STAMP_NONE;
		return;
	}
	port->rx_clock = DP_RX_CLOCK_UNKNOWN;
	if (offered && rte_eth_read_clock(port->port_id, &nic) == 0)
		port->rx_clock = DP_RX_CLOCK_ETHDEV;
	else
		known_stamp_clock(info->driver_name, offered, &port->rx_clock, &scale, &resolution_ns);
	dp_nicclk_init(&port->clock, rte_get_tsc_hz(), scale, resolution_ns,
		       rte_get_tsc_hz() / 1000 * CLOCK_REFRESH_MS, CLOCK_HORIZON_NS);
	if (port->rx_clock == DP_RX_CLOCK_UNKNOWN)
		return;
	/* Two samples apart by a little, so that the first frames already find a map. */
	if (clock_sample(port) == -EAGAIN) {
		rte_delay_us_sleep(CLOCK_STARTUP_GAP_US);
		clock_sample(port);
	}
	port->clock_next_tsc = rte_rdtsc() + port->clock.refresh_tsc;
}

void dp_port_clock_tick(struct dp_port *port)
{
	uint64_t now_tsc;

	if (port->rx_stamp != DP_RX_STAMP_NIC || port->rx_clock == DP_RX_CLOCK_UNKNOWN)
		return;
	now_tsc = rte_rdtsc();
	if (now_tsc < port->clock_next_tsc)
		return;
	port->clock_next_tsc = now_tsc + port->clock.refresh_tsc;
	/* A failed read keeps the window as it was: the map ages out at its horizon if reads keep failing. */
	clock_sample(port);
}

void dp_port_rx_stamp_text(const struct dp_port *port, char text[DP_RX_STAMP_TEXT_SIZE])
{
	const struct dp_nicclk_map *map = &port->clock.last;

	switch (port->rx_stamp) {
	case DP_RX_STAMP_NONE:
		snprintf(text, DP_RX_STAMP_TEXT_SIZE, "tsc (port offers none)");
		return;
	case DP_RX_STAMP_OFF:
		snprintf(text, DP_RX_STAMP_TEXT_SIZE, "tsc (the port's are turned off: --no-rx-timestamp)");
		return;
	case DP_RX_STAMP_NIC:
		break;
	}
	if (port->rx_clock == DP_RX_CLOCK_UNKNOWN)
		snprintf(text, DP_RX_STAMP_TEXT_SIZE, "nic (unmapped: the port's clock cannot be read; "
			 "stamps counted as rx_stamps_unmapped)");
	else if (!map->valid)
		snprintf(text, DP_RX_STAMP_TEXT_SIZE, "nic (not mapped yet: too few clock samples)");
	else
		snprintf(text, DP_RX_STAMP_TEXT_SIZE, "nic (mapped, bound ±%" PRIu64 " ns) from %s, %s stamps",
			 map->bound_ns, port->rx_clock == DP_RX_CLOCK_ETHDEV ? "rte_eth_read_clock" : "CLOCK_REALTIME",
			 map->stamp_scale == 1000 ? "us" : "ns");
}

uint64_t dp_port_rx_stamp_bound_ns(const struct dp_port *port)
{
	if (port->rx_stamp != DP_RX_STAMP_NIC || port->rx_clock == DP_RX_CLOCK_UNKNOWN || !port->clock.last.valid)
		return 0;
	return port->clock.last.bound_ns;
}

int dp_port_open(struct dp_port *port, uint16_t port_id, uint16_t queue_count, uint32_t held_mbuf_count,
		 const struct dp_payload_mem *ext, char why[DP_WHY_SIZE])
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t rx_desc = RX_DESC_DEFAULT;
	uint16_t tx_desc = TX_DESC_DEFAULT;
	char pool_name[RTE_MEMPOOL_NAMESIZE];
	int socket;
	int rc;
	int no_rx_stamp = port->no_rx_stamp;

	memset(port, 0, sizeof(*port));
	port->no_rx_stamp = no_rx_stamp;
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
	if (ext && !ext->cpu_readable) {
		/* The rx lcore must read headers and never the payload: the port has to put them in
		 * different memories, and vouch for the UDP checksum the CPU cannot compute. */
		if (!(info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_BUFFER_SPLIT)) {
			snprintf(why, DP_WHY_SIZE, "port %s cannot split headers from payloads "
				 "(no RTE_ETH_RX_OFFLOAD_BUFFER_SPLIT): with payloads in GPU memory the CPU could "
				 "not read the headers", port->name);
			return -ENOTSUP;
		}
		if (!(info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_UDP_CKSUM)) {
			snprintf(why, DP_WHY_SIZE, "port %s does not verify UDP checksums, which the CPU cannot do "
				 "over payloads in GPU memory", port->name);
			return -ENOTSUP;
		}
		port->split = 1;
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_BUFFER_SPLIT;
	}
	/* Spread flows over the queues by the UDP 4-tuple where the port hashes; a port that does
	 * not (af_packet: the kernel's fanout hash does it) gets no RSS configuration. */
	uint64_t rss = info.flow_type_rss_offloads & (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_UDP);
	if (queue_count > 1 && rss) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf = rss;
		port->rss = 1;
	}
	rx_stamp_choose(port, &info, &conf);
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
	uint32_t mbuf_count = mbuf_count_for(queue_count, rx_desc, tx_desc, held_mbuf_count);
	if (ext) {
		struct rte_pktmbuf_extmem em = {
			.buf_ptr = ext->addr,
			.buf_iova = rte_eal_iova_mode() == RTE_IOVA_VA ? (rte_iova_t)(uintptr_t)ext->addr : RTE_BAD_IOVA,
			.buf_len = ext->len_bytes,
			.elt_size = EXT_ELT_SIZE,
		};

		if ((size_t)mbuf_count * EXT_ELT_SIZE > ext->len_bytes) {
			snprintf(why, DP_WHY_SIZE, "payload memory of %zu bytes holds fewer than the %u mbufs needed",
				 ext->len_bytes, mbuf_count);
			rc = -ENOSPC;
			goto fail;
		}
		rc = register_ext(port, &info, ext, why);
		if (rc)
			goto fail;
		/* The mbuf headers stay in hugepages; only their data rooms lie in the external memory. */
		port->pool = rte_pktmbuf_pool_create_extbuf(pool_name, mbuf_count, MBUF_CACHE_SIZE, 0,
							    RTE_MBUF_DEFAULT_BUF_SIZE, socket, &em, 1);
		if (port->split) {
			snprintf(pool_name, sizeof(pool_name), "zh_hdr_%u", port_id);
			/* Headers get a full data room: answers are built in place over them. */
			port->hdr_pool = rte_pktmbuf_pool_create(pool_name, mbuf_count, MBUF_CACHE_SIZE, 0,
								 RTE_MBUF_DEFAULT_BUF_SIZE, socket);
		}
	} else {
		port->pool = rte_pktmbuf_pool_create(pool_name, mbuf_count, MBUF_CACHE_SIZE, 0,
						     RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	}
	if (!port->pool || (port->split && !port->hdr_pool)) {
		snprintf(why, DP_WHY_SIZE, "mbuf pool of %u: %s", mbuf_count, rte_strerror(rte_errno));
		rc = -ENOMEM;
		goto fail;
	}
	for (uint16_t q = 0; q < queue_count; q++) {
		if (port->split)
			rc = setup_split_rxq(port, q, rx_desc, socket, &info, why);
		else
			rc = rte_eth_rx_queue_setup(port_id, q, rx_desc, (unsigned)socket, NULL, port->pool);
		if (rc && port->split)
			goto fail;
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
	rx_stamp_start(port, &info);
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
	if (port->pool || port->ext.addr) {
		struct rte_eth_dev_info info;

		/* Unmap before the port closes: the mapping belongs to its device. */
		if (port->dma_mapped && rte_eth_dev_info_get(port->port_id, &info) == 0)
			rte_dev_dma_unmap(info.device, port->ext.addr, (rte_iova_t)(uintptr_t)port->ext.addr,
					  port->ext.len_bytes);
		port->dma_mapped = 0;
		rte_eth_dev_close(port->port_id);
	}
	rte_mempool_free(port->pool);
	rte_mempool_free(port->hdr_pool);
	port->pool = NULL;
	port->hdr_pool = NULL;
	if (port->ext.addr) {
		rte_extmem_unregister(port->ext.addr, port->ext.len_bytes);
		port->ext.addr = NULL;
	}
}
