/* SPDX-License-Identifier: MIT */
/*
 * test_split: the rx lcore on frames split between two memories, as a port with header split delivers
 * them on cuda-gpudirect: headers in a host mbuf, the payload chained after it in an mbuf of another
 * pool (GPU memory there; a second host pool here, which no code under test may read but the device).
 *
 * In process: an EAL without PCI or hugepages, a ring port (net_ring) whose rx ring this test fills
 * with hand-built chains, the real dp_lcore and the cpu device in inline mode serving `echo`. Checked:
 * a split request is answered from its payload segment and the answer leaves as one segment; every
 * other layout is dropped under its reason; ARP padding past the split point does not follow the reply;
 * the per-burst flush counter runs; and every payload mbuf is back in its pool at the end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include "dp_lcore.h"
#include "dp_port.h"
#include "gpu_device.h"

#define TEST_NAME "test_split"
#include "zh_check.h"


#define RING_SIZE 1024u
#define POOL_SIZE 1023u
#define HEAD_BYTES (RTE_ETHER_HDR_LEN + 20u + 8u)
#define WAIT_US 2000000u

static struct rte_ring *rx_ring, *tx_ring;
static struct rte_mempool *hdr_pool, *payload_pool;
static struct dp_lcore lc;
static const struct rte_ether_addr peer_mac = { { 0x02, 0, 0, 0, 0, 0x02 } };
static const rte_be32_t peer_ip_be = RTE_BE32(RTE_IPV4(198u, 18u, 0u, 2u));

/* A request frame, contiguous: Ethernet, IPv4, UDP (checksums right), then `payload`. */
static uint32_t build_request(uint8_t *f, const uint8_t *payload, uint32_t payload_size)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	memset(f, 0, HEAD_BYTES);
	rte_ether_addr_copy(&lc.self.mac, &eth->dst_addr);
	rte_ether_addr_copy(&peer_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(20 + 8 + payload_size));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = peer_ip_be;
	ip->dst_addr = lc.self.ip;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16(40000);
	udp->dst_port = lc.self.udp_port;
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(8 + payload_size));
	memcpy(udp + 1, payload, payload_size);
	udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
	return HEAD_BYTES + payload_size;
}

/* The frame as a chain: the first `head` bytes in a header mbuf, the rest in a payload mbuf (none if
 * nothing is left), with the port's checksum verdict in the flags. */
static struct rte_mbuf *split_frame(const uint8_t *f, uint32_t size, uint32_t head, uint64_t ol_flags)
{
	struct rte_mbuf *h = rte_pktmbuf_alloc(hdr_pool);

	if (!h)
		return NULL;
	memcpy(rte_pktmbuf_append(h, (uint16_t)head), f, head);
	if (size > head) {
		struct rte_mbuf *p = rte_pktmbuf_alloc(payload_pool);

		if (!p) {
			rte_pktmbuf_free(h);
			return NULL;
		}
		memcpy(rte_pktmbuf_append(p, (uint16_t)(size - head)), f + head, size - head);
		if (rte_pktmbuf_chain(h, p) != 0) {
			rte_pktmbuf_free(h);
			rte_pktmbuf_free(p);
			return NULL;
		}
	}
	h->ol_flags = ol_flags;
	return h;
}

/* Hand one chain to the port's rx ring and collect what it sends within a bounded wait. */
static uint32_t exchange(struct rte_mbuf *m, struct rte_mbuf **out, uint32_t out_cap)
{
	uint32_t got = 0;

	CHECK(m != NULL);
	if (!m || rte_ring_enqueue(rx_ring, m) != 0)
		return 0;
	for (uint32_t waited_us = 0; waited_us < WAIT_US && got == 0; waited_us += 100) {
		usleep(100);
		got = rte_ring_dequeue_burst(tx_ring, (void **)out, out_cap, NULL);
	}
	/* Anything else the lcore sends for this frame would come right behind. */
	usleep(2000);
	got += rte_ring_dequeue_burst(tx_ring, (void **)(out + got), out_cap - got, NULL);
	return got;
}

static uint64_t drops(enum dp_drop why)
{
	return __atomic_load_n(&lc.stats.drops[why], __ATOMIC_RELAXED);
}

static uint64_t counter(enum dp_counter which)
{
	return __atomic_load_n(&lc.stats.counters[which], __ATOMIC_RELAXED);
}

/* msgpack of {"id": 7, "tokens": [1, 2, 3]}, and the echo answer's bytes that must follow the headers. */
static const uint8_t REQUEST[] = { 0x82, 0xa2, 'i', 'd', 0x07, 0xa6, 't', 'o', 'k', 'e', 'n', 's', 0x93, 1, 2, 3 };

static void test_split_request(void)
{
	uint8_t f[256];
	struct rte_mbuf *out[4];
	uint32_t size = build_request(f, REQUEST, sizeof(REQUEST));
	uint64_t answers = counter(DP_COUNTER_answers);
	uint32_t n = exchange(split_frame(f, size, HEAD_BYTES, RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD),
			      out, 4);

	CHECK_U64(n, 1);
	CHECK_U64(counter(DP_COUNTER_answers), answers + 1);
	if (n != 1)
		return;
	/* One segment: the answer's headers and the answer the device wrote, nothing of the request. */
	CHECK_U64(out[0]->nb_segs, 1);
	CHECK_U64(out[0]->pkt_len, out[0]->data_len);
	const uint8_t *a = rte_pktmbuf_mtod(out[0], const uint8_t *);
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(a + RTE_ETHER_HDR_LEN + 20);
	CHECK(out[0]->pkt_len > HEAD_BYTES + 8);
	CHECK_U64(rte_be_to_cpu_16(udp->dst_port), 40000);
	/* The echo answer carries the id and the tokens it read from the payload segment. */
	const uint8_t *ans = a + HEAD_BYTES;
	uint32_t ans_size = out[0]->pkt_len - HEAD_BYTES;
	static const uint8_t id7[] = { 0xa2, 'i', 'd', 0x07 };
	static const uint8_t tokens[] = { 0xa6, 't', 'o', 'k', 'e', 'n', 's', 0x93, 1, 2, 3 };
	CHECK(memmem(ans, ans_size, id7, sizeof(id7)) != NULL);
	CHECK(memmem(ans, ans_size, tokens, sizeof(tokens)) != NULL);
	rte_pktmbuf_free_bulk(out, n);
}

static void test_split_drops(void)
{
	uint8_t f[256];
	struct rte_mbuf *out[4];
	uint32_t size = build_request(f, REQUEST, sizeof(REQUEST));
	const uint64_t good = RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD;
	uint64_t unverified = drops(DP_DROP_UDP_UNVERIFIED);
	uint64_t layout = drops(DP_DROP_SPLIT_LAYOUT);
	uint64_t multi = drops(DP_DROP_MULTI_SEGMENT);

	/* The port did not verify the UDP checksum: the CPU may not read the payload to do it. */
	CHECK_U64(exchange(split_frame(f, size, HEAD_BYTES, RTE_MBUF_F_RX_IP_CKSUM_GOOD), out, 4), 0);
	CHECK_U64(drops(DP_DROP_UDP_UNVERIFIED), unverified + 1);
	/* Headers cut by the split point. */
	CHECK_U64(exchange(split_frame(f, size, 30, good), out, 4), 0);
	CHECK_U64(drops(DP_DROP_SPLIT_LAYOUT), layout + 1);
	/* The payload begins in the header segment: the device could not read it as one run. */
	CHECK_U64(exchange(split_frame(f, size, HEAD_BYTES + 4, good), out, 4), 0);
	CHECK_U64(drops(DP_DROP_SPLIT_LAYOUT), layout + 2);
	/* A frame delivered whole to the payload pool (device memory): dropped unread. */
	struct rte_mbuf *whole = rte_pktmbuf_alloc(payload_pool);
	CHECK(whole != NULL);
	if (whole) {
		memcpy(rte_pktmbuf_append(whole, (uint16_t)size), f, size);
		whole->ol_flags = good;
		CHECK_U64(exchange(whole, out, 4), 0);
		CHECK_U64(drops(DP_DROP_SPLIT_LAYOUT), layout + 3);
	}
	/* Three segments are no split this port makes. */
	struct rte_mbuf *m = split_frame(f, size, HEAD_BYTES, good);
	struct rte_mbuf *extra = rte_pktmbuf_alloc(payload_pool);
	CHECK(m != NULL && extra != NULL);
	if (m && extra) {
		memcpy(rte_pktmbuf_append(extra, 1), "x", 1);
		CHECK(rte_pktmbuf_chain(m, extra) == 0);
		CHECK_U64(exchange(m, out, 4), 0);
		CHECK_U64(drops(DP_DROP_MULTI_SEGMENT), multi + 1);
	}
}

/* An ARP request padded to 60 bytes: the padding lands past the split point and must not be sent. */
static void test_split_arp(void)
{
	uint8_t f[64];
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)f;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);
	struct rte_mbuf *out[4];

	memset(f, 0, sizeof(f));
	memset(&eth->dst_addr, 0xff, RTE_ETHER_ADDR_LEN);
	rte_ether_addr_copy(&peer_mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = 4;
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
	rte_ether_addr_copy(&peer_mac, &arp->arp_data.arp_sha);
	arp->arp_data.arp_sip = peer_ip_be;
	arp->arp_data.arp_tip = lc.self.ip;
	uint32_t n = exchange(split_frame(f, 60, HEAD_BYTES, 0), out, 4);

	CHECK_U64(n, 1);
	if (n != 1)
		return;
	CHECK_U64(out[0]->nb_segs, 1);
	CHECK_U64(out[0]->pkt_len, HEAD_BYTES);
	const struct rte_arp_hdr *reply = rte_pktmbuf_mtod_offset(out[0], const struct rte_arp_hdr *, RTE_ETHER_HDR_LEN);
	CHECK_U64(rte_be_to_cpu_16(reply->arp_opcode), RTE_ARP_OP_REPLY);
	rte_pktmbuf_free_bulk(out, n);
}

int main(int argc, char **argv)
{
	char prefix[64];
	char *eal[] = { argv[0], "--no-pci", "--no-huge", "-m", "256", "--lcores", "0@0,1@0", "--file-prefix", prefix,
			"--log-level=lib.eal:warning", NULL };
	char why[GPU_WHY_SIZE];
	struct gpu_device *dev = NULL;
	struct dp_port port;
	struct gpu_config cfg;

	(void)argc;
	snprintf(prefix, sizeof(prefix), "test-split-%d", (int)getpid());
	if (rte_eal_init((int)(sizeof(eal) / sizeof(eal[0]) - 1), eal) < 0) {
		fprintf(stderr, "%s: EAL init failed\n", TEST_NAME);
		return 1;
	}
	rx_ring = rte_ring_create("ts_rx", RING_SIZE, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
	tx_ring = rte_ring_create("ts_tx", RING_SIZE, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
	hdr_pool = rte_pktmbuf_pool_create("ts_hdr", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	payload_pool = rte_pktmbuf_pool_create("ts_payload", POOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	int port_id = rte_eth_from_rings("ts_port", &rx_ring, 1, &tx_ring, 1, 0);
	if (!rx_ring || !tx_ring || !hdr_pool || !payload_pool || port_id < 0) {
		fprintf(stderr, "%s: rings, pools or port\n", TEST_NAME);
		return 1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = GPU_KIND_CPU;
	cfg.worker_count = 0; /* inline: the rx lcore serves */
	cfg.ring_slot_count = 64;
	cfg.models.count = 1;
	snprintf(cfg.models.models[0].name, sizeof(cfg.models.models[0].name), "echo");
	cfg.models.models[0].arch = KRN_ARCH_ECHO;
	if (gpu_device_open(&cfg, &dev, why) != 0 || dp_port_open(&port, (uint16_t)port_id, 1, 64, NULL, why) != 0) {
		fprintf(stderr, "%s: %s\n", TEST_NAME, why);
		return 1;
	}
	lc.port_id = port.port_id;
	lc.idle = DP_IDLE_BACKOFF;
	lc.device_healthy = 1;
	lc.zero_copy = 1;
	lc.split = 1;          /* what dp_port sets for a port that splits */
	lc.hdr_pool = hdr_pool;
	lc.flush_payload = 1;  /* the cpu device needs no flush: the call must still run and succeed */
	lc.self.mac = port.mac;
	lc.self.ip = rte_cpu_to_be_32(RTE_IPV4(198u, 18u, 0u, 1u));
	lc.self.udp_port = rte_cpu_to_be_16(9000);
	dp_acl_init(&lc.acl);
	if (dp_lcore_init(&lc, dev) != 0 || gpu_device_start(dev, why) != 0) {
		fprintf(stderr, "%s: lcore or device\n", TEST_NAME);
		return 1;
	}
	rte_eal_remote_launch(dp_lcore_main, &lc, 1);

	RUN(test_split_request);
	/* Again with the answer copied over the request's header segment (--tx-copy). */
	lc.stop = 1;
	rte_eal_wait_lcore(1);
	lc.stop = 0;
	lc.zero_copy = 0;
	rte_eal_remote_launch(dp_lcore_main, &lc, 1);
	RUN(test_split_request);
	RUN(test_split_drops);
	RUN(test_split_arp);
	/* One flush per burst that brought frames, and none failed. */
	CHECK(counter(DP_COUNTER_payload_flushes) >= 1);
	CHECK_U64(counter(DP_COUNTER_payload_flush_failed), 0);

	lc.stop = 1;
	rte_eal_wait_lcore(1);
	/* Every payload segment went back to its pool: answered, dropped, or trimmed off a reply. */
	CHECK_U64(rte_mempool_avail_count(payload_pool), POOL_SIZE);
	gpu_device_stop(dev);
	dp_port_close(&port);
	dp_lcore_free(&lc);
	gpu_device_close(dev);
	rte_eal_cleanup();
	return check_summary();
}
