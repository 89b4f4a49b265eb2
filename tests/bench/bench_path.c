/* SPDX-License-Identifier: MIT */
/*
 * bench_path: requests per second through zerohop's whole path on one core, on an in-process port,
 * beside a 5-tuple-swap forwarder on the same port in the same run.
 *
 * The port is DPDK's ring PMD (rte_eth_from_rings): a generator on the main lcore puts request frames
 * into the port's rx ring and takes whatever the port transmits out of its tx ring. On lcore 1 runs,
 * in turn:
 *   zerohop   the rx/tx lcore of zerohopd in inline mode (parse, ring, device loop with the echo model,
 *             msgpack decode and encode, answer headers and checksums, zero-copy tx);
 *   5tswap    the forwarding testpmd's --forward-mode=5tswap does (swap the MAC, IPv4 and UDP
 *             addresses, send back): the cost of touching the headers and nothing else.
 * Debian 12's DPDK ships no dpdk-testpmd, so the peer is that mode's work, written here. The ratio
 * zerohop/5tswap is how much of the port's forwarding rate the whole appliance path keeps.
 *
 *   bench_path [--seconds S] [--rounds N]      (EAL arguments are fixed: --no-pci --no-huge)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include "dp_lcore.h"
#include "dp_port.h"
#include "gpu_device.h"
#include "krn_msgpack.h"

#define RING_SIZE 4096u
#define BURST 32u
#define IN_FLIGHT_MAX 512u
#define GEN_POOL_SIZE 8191u

static struct rte_ring *rx_ring, *tx_ring;
static struct rte_mempool *gen_pool;
static uint8_t template_frame[256];
static uint32_t template_size;
static volatile int swap_stop;

/* A request frame: Ethernet, IPv4 to 198.18.0.1, UDP to port 9000, {id, tokens: [1, 2, 3]}. */
static void build_template(const struct rte_ether_addr *dst_mac)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)template_frame;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint8_t *payload = (uint8_t *)(udp + 1);
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, payload, 128);
	krn_mp_put_map(&w, 2);
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, 7);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, 3);
	for (uint32_t i = 1; i <= 3; i++)
		krn_mp_put_uint(&w, i);
	uint32_t len = krn_mp_writer_size(&w, payload);

	rte_ether_addr_copy(dst_mac, &eth->dst_addr);
	eth->src_addr = (struct rte_ether_addr){ { 0x02, 0, 0, 0, 0, 2 } };
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	memset(ip, 0, sizeof(*ip));
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + sizeof(*udp) + len));
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = rte_cpu_to_be_32(RTE_IPV4(198, 18, 0, 2));
	ip->dst_addr = rte_cpu_to_be_32(RTE_IPV4(198, 18, 0, 1));
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16(40000);
	udp->dst_port = rte_cpu_to_be_16(9000);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(sizeof(*udp) + len));
	udp->dgram_cksum = 0;
	udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
	template_size = (uint32_t)(sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + len);
}

/* The peer: testpmd's 5tswap forwarding, a burst at a time. */
static int swap_main(void *arg)
{
	uint16_t port = *(uint16_t *)arg;
	struct rte_mbuf *pkts[BURST];

	while (!swap_stop) {
		uint16_t n = rte_eth_rx_burst(port, 0, pkts, BURST);

		for (uint16_t i = 0; i < n; i++) {
			struct rte_ether_hdr *eth = rte_pktmbuf_mtod(pkts[i], struct rte_ether_hdr *);
			struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
			struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
			struct rte_ether_addr a = eth->src_addr;
			rte_be32_t addr = ip->src_addr;
			rte_be16_t p = udp->src_port;

			eth->src_addr = eth->dst_addr;
			eth->dst_addr = a;
			ip->src_addr = ip->dst_addr;
			ip->dst_addr = addr;
			udp->src_port = udp->dst_port;
			udp->dst_port = p;
		}
		uint16_t sent = n ? rte_eth_tx_burst(port, 0, pkts, n) : 0;
		if (sent < n)
			rte_pktmbuf_free_bulk(&pkts[sent], n - sent);
	}
	return 0;
}

/* Feed requests for `seconds`, keeping at most IN_FLIGHT_MAX outstanding; returns answers/s.
 * *bad counts answers that are not an ok echo answer (checked on every 64th). */
static double generate(double seconds, uint64_t *bad)
{
	uint64_t hz = rte_get_tsc_hz();
	uint64_t end = rte_rdtsc() + (uint64_t)(seconds * (double)hz);
	uint64_t sent = 0, answered = 0;
	uint64_t t0 = rte_rdtsc();
	struct rte_mbuf *burst[BURST];

	while (rte_rdtsc() < end) {
		if (sent - answered < IN_FLIGHT_MAX && rte_pktmbuf_alloc_bulk(gen_pool, burst, BURST) == 0) {
			for (uint32_t i = 0; i < BURST; i++) {
				memcpy(rte_pktmbuf_mtod(burst[i], void *), template_frame, template_size);
				burst[i]->data_len = (uint16_t)template_size;
				burst[i]->pkt_len = template_size;
			}
			uint32_t n = rte_ring_enqueue_burst(rx_ring, (void **)burst, BURST, NULL);
			if (n < BURST)
				rte_pktmbuf_free_bulk(&burst[n], BURST - n);
			sent += n;
		}
		uint32_t got = rte_ring_dequeue_burst(tx_ring, (void **)burst, BURST, NULL);
		for (uint32_t i = 0; i < got; i++) {
			if (((answered + i) & 63) == 0) {
				/* An ok answer is {"id": 7, "status": 0, "tokens": [1, 2, 3]}: status 0 at a
				 * fixed place after the Ethernet/IPv4/UDP headers. */
				const uint8_t *p = rte_pktmbuf_mtod_offset(burst[i], const uint8_t *, 42);
				if (burst[i]->pkt_len < 42 + 20 || p[0] != 0x83 || p[4] != 7 || p[12] != 0)
					(*bad)++;
			}
		}
		if (got)
			rte_pktmbuf_free_bulk(burst, got);
		answered += got;
	}
	/* Let the stragglers out of the rings so the next round starts empty. */
	for (int spin = 0; spin < 1000000 && answered < sent; spin++) {
		uint32_t got = rte_ring_dequeue_burst(tx_ring, (void **)burst, BURST, NULL);
		if (got)
			rte_pktmbuf_free_bulk(burst, got);
		answered += got;
	}
	return (double)answered / ((double)(rte_rdtsc() - t0) / (double)hz);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	char *eal[] = { argv[0], "--no-pci", "--no-huge", "-m", "512", "--lcores", "0@0,1@1", "--file-prefix",
			"bench-path", "--log-level=lib.eal:warning", NULL };
	double seconds = 2.0;
	uint32_t rounds = 3;
	char why[GPU_WHY_SIZE];
	struct gpu_device *dev = NULL;
	struct dp_port port;
	static struct dp_lcore lc;
	struct gpu_config cfg;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = (uint32_t)atoi(argv[++i]);
	}
	if (seconds <= 0 || seconds > 30 || rounds == 0 || rounds > 20) {
		fprintf(stderr, "bench_path: --seconds 0..30, --rounds 1..20\n");
		return 2;
	}
	if (rte_eal_init((int)(sizeof(eal) / sizeof(eal[0]) - 1), eal) < 0) {
		fprintf(stderr, "bench_path: EAL init failed\n");
		return 1;
	}
	rx_ring = rte_ring_create("bp_rx", RING_SIZE, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
	tx_ring = rte_ring_create("bp_tx", RING_SIZE, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
	gen_pool = rte_pktmbuf_pool_create("bp_gen", GEN_POOL_SIZE, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	int port_id = rte_eth_from_rings("bp_port", &rx_ring, 1, &tx_ring, 1, 0);
	if (!rx_ring || !tx_ring || !gen_pool || port_id < 0) {
		fprintf(stderr, "bench_path: rings or port\n");
		return 1;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.kind = GPU_KIND_CPU;
	cfg.worker_count = 0; /* inline: the rx lcore runs the device loop */
	cfg.ring_slot_count = 2048;
	cfg.models.count = 1;
	snprintf(cfg.models.models[0].name, sizeof(cfg.models.models[0].name), "echo");
	cfg.models.models[0].arch = KRN_ARCH_ECHO;
	if (gpu_device_open(&cfg, &dev, why) != 0 || dp_port_open(&port, (uint16_t)port_id, 1, 1024, NULL, why) != 0) {
		fprintf(stderr, "bench_path: %s\n", why);
		return 1;
	}
	build_template(&port.mac);
	lc.port_id = port.port_id;
	lc.idle = DP_IDLE_POLL;
	lc.device_healthy = 1;
	lc.zero_copy = 1;
	lc.self.mac = port.mac;
	lc.self.ip = rte_cpu_to_be_32(RTE_IPV4(198, 18, 0, 1));
	lc.self.udp_port = rte_cpu_to_be_16(9000);
	dp_acl_init(&lc.acl);
	if (dp_lcore_init(&lc, dev) != 0 || gpu_device_start(dev, why) != 0) {
		fprintf(stderr, "bench_path: lcore or device\n");
		return 1;
	}

	double *zh = calloc(rounds, sizeof(double)), *sw = calloc(rounds, sizeof(double));
	uint64_t bad_zh = 0, bad_sw = 0;
	uint16_t pid = port.port_id;
	for (uint32_t r = 0; r < rounds; r++) {
		lc.stop = 0;
		rte_eal_remote_launch(dp_lcore_main, &lc, 1);
		zh[r] = generate(seconds, &bad_zh);
		lc.stop = 1;
		rte_eal_wait_lcore(1);
		swap_stop = 0;
		rte_eal_remote_launch(swap_main, &pid, 1);
		sw[r] = generate(seconds, &bad_sw);
		swap_stop = 1;
		rte_eal_wait_lcore(1);
		/* The peer echoes requests back unchanged but for addresses: its check is not an answer's. */
		bad_sw = 0;
	}
	qsort(zh, rounds, sizeof(double), cmp);
	qsort(sw, rounds, sizeof(double), cmp);
	double z = zh[rounds / 2], s = sw[rounds / 2];
	printf("bench_path: one core, in-process ring port, echo requests of %u bytes, median of %u rounds of %.1f s\n",
	       template_size, rounds, seconds);
	printf("%-44s %14s\n", "path", "Mreq/s");
	printf("%-44s %14.3f\n", "zerohop (inline: parse, ring, decode, encode)", z / 1e6);
	printf("%-44s %14.3f\n", "5tswap (header swap and send back)", s / 1e6);
	printf("ratio zerohop/5tswap: %.3f; zerohop answers failing the check: %" PRIu64 "\n", z / s, bad_zh);
	lc.stop = 1;
	gpu_device_stop(dev);
	return bad_zh ? 1 : 0;
}
