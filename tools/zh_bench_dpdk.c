/* SPDX-License-Identifier: MIT */
/*
 * zh_bench_dpdk.c: see zh_bench_dpdk.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ether.h>
#include <rte_arp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "zh_bench_dpdk.h"
#include "zh_cli.h"
#include "zh_clock.h"

#define RX_DESC_DEFAULT 1024u
#define TX_DESC_DEFAULT 1024u
#define MBUF_CACHE_SIZE 64u
/* EAL arguments the tools pass on (after --), program name included. */
#define EAL_ARGS_MAX 64
/* The largest payload a send takes: one datagram in a 1500-byte MTU, the appliance's largest request
 * (the mbufs' data room holds it and the headers with room to spare). */
#define PAYLOAD_MAX_BYTES 1472u
/* One rx burst and one tx burst in the bench's hands, plus ARP replies, beyond the two rings. */
#define MBUF_SLACK 256u
/* The most frames one send or receive call handles (zerohop-bench's --batch is at most 64). */
#define BURST_MAX 64u
/* ARP: a request every ARP_RETRY_MS until a reply or the configured wait runs out. */
#define ARP_RETRY_MS 200u
/* Ethernet, IPv4 without options and UDP: the headers every request carries. */
#define HDR_BYTES (sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + sizeof(struct rte_udp_hdr))
#define ARP_FRAME_BYTES (sizeof(struct rte_ether_hdr) + sizeof(struct rte_arp_hdr))
#define IP_TTL_DEFAULT 64u
/* Messages name the tool that runs the port (zerohop-bench or zerohop-probe), as its own messages do. */
#define TOOL program_invocation_short_name

struct zh_bench_dpdk {
	struct zh_bench_dpdk_config cfg;
	uint16_t port_id;
	int started;
	int resolved;                  /* dst MAC known: given, or learnt from an ARP reply */
	struct rte_mempool *pool;
	uint32_t mbuf_count;
	struct rte_ether_addr mac;     /* the port's */
	struct rte_ether_addr dst_mac;
	uint16_t next_port_idx;        /* index of the next source port in the range */
	uint16_t ip_id;
	uint8_t hdr_template[HDR_BYTES];
	struct zh_bench_dpdk_stats stats;
	char text[RTE_ETH_NAME_MAX_LEN + 32];
};

/* The TSC clock: ticks since the EAL was initialised, times ns_per_tsc_q32 / 2^32. The port takes
 * milliseconds to start after that, so no request is ever stamped 0 (the bench's "no request"). */
static uint64_t tsc_base;
static uint64_t ns_per_tsc_q32;

uint64_t zh_bench_dpdk_now_ns(void)
{
	return (uint64_t)(((unsigned __int128)(rte_rdtsc() - tsc_base) * ns_per_tsc_q32) >> 32);
}

int zh_bench_dpdk_eal_args_safe(int eal_argc, char *const *eal_argv)
{
	for (int i = 1; i < eal_argc; i++)
		if (strcmp(eal_argv[i], "--no-pci") == 0)
			return 1;
	return 0;
}

int zh_bench_dpdk_parse_mac(const char *text, uint8_t mac[6])
{
	unsigned int b[6];
	int used = 0;

	if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &used) != 6 ||
	    text[used] != '\0' || used != 17)
		return -EINVAL;
	for (uint32_t i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return 0;
}

int zh_bench_dpdk_preflight(const char *src_text, int eal_argc, char *const *eal_argv,
			    struct zh_bench_dpdk_config *cfg)
{
	if (inet_pton(AF_INET, src_text, &cfg->src_ip) != 1) {
		fprintf(stderr, "%s: --src '%s' is not an IPv4 address\n", TOOL, src_text);
		return -EINVAL;
	}
	if (!zh_cli_dest_allowed(cfg->src_ip)) {
		fprintf(stderr, "%s: refusing to send from %s: only 198.18.0.0/15 (the dev network) and "
			"127.0.0.0/8 are allowed\n", TOOL, src_text);
		return -EPERM;
	}
	if (!zh_bench_dpdk_eal_args_safe(eal_argc, eal_argv)) {
		fprintf(stderr, "%s: refusing to start the EAL without --no-pci after --: it would probe this "
			"machine's PCI devices (the client tools drive af_xdp or af_packet ports on kernel "
			"interfaces, never a PCI device)\n", TOOL);
		return -EPERM;
	}
	return 0;
}

/* Headers of every request: only the lengths, the IPv4 id, the source port and the checksums change. */
static void build_template(struct zh_bench_dpdk *d)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d->hdr_template;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

	memset(d->hdr_template, 0, sizeof(d->hdr_template));
	rte_ether_addr_copy(&d->dst_mac, &eth->dst_addr);
	rte_ether_addr_copy(&d->mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	/* Don't fragment: a request is one datagram, and the appliance drops fragments. */
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = IP_TTL_DEFAULT;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = d->cfg.src_ip.s_addr;
	ip->dst_addr = d->cfg.dst_ip.s_addr;
	udp->dst_port = d->cfg.dst_port;
}

/* One request frame: the template, the payload, then lengths and both checksums in software (af_xdp
 * and af_packet on veth offload neither, and the appliance checks both). */
static void build_request(struct zh_bench_dpdk *d, struct rte_mbuf *m, const struct iovec *payload)
{
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + sizeof(struct rte_ether_hdr));
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	uint16_t size = (uint16_t)payload->iov_len;

	memcpy(p, d->hdr_template, HDR_BYTES);
	memcpy(p + HDR_BYTES, payload->iov_base, size);
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + sizeof(*udp) + size));
	ip->packet_id = rte_cpu_to_be_16(d->ip_id++);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = rte_cpu_to_be_16((uint16_t)(d->cfg.src_port_first + d->next_port_idx));
	if (++d->next_port_idx == d->cfg.src_port_count)
		d->next_port_idx = 0;
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(sizeof(*udp) + size));
	udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
	m->data_len = (uint16_t)(HDR_BYTES + size);
	m->pkt_len = m->data_len;
}

int zh_bench_dpdk_send(struct zh_bench_dpdk *d, const struct iovec *payloads, uint32_t count)
{
	struct rte_mbuf *m[BURST_MAX];
	uint16_t n = (uint16_t)(count < BURST_MAX ? count : BURST_MAX), sent;

	for (uint16_t i = 0; i < n; i++)
		if (payloads[i].iov_len > PAYLOAD_MAX_BYTES)
			return -EMSGSIZE;
	/* An empty pool frees up as answers are received: the bench offers the batch again. */
	if (n == 0 || rte_pktmbuf_alloc_bulk(d->pool, m, n) != 0) {
		d->stats.tx_full += n;
		return 0;
	}
	for (uint16_t i = 0; i < n; i++)
		build_request(d, m[i], &payloads[i]);
	sent = rte_eth_tx_burst(d->port_id, 0, m, n);
	/* What the PMD did not take is still ours to free. */
	if (sent < n) {
		rte_pktmbuf_free_bulk(&m[sent], n - sent);
		d->stats.tx_full += n - sent;
	}
	return sent;
}

/* An ARP frame for us: a request for our address becomes our reply, in place (returns 1: send it);
 * the destination's reply teaches us its MAC. Returns 0 when the frame is done with. */
static int on_arp(struct zh_bench_dpdk *d, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(eth + 1);
	struct rte_arp_ipv4 *a = &arp->arp_data;

	if (m->data_len < ARP_FRAME_BYTES || arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != RTE_ETHER_ADDR_LEN ||
	    arp->arp_plen != sizeof(uint32_t)) {
		d->stats.rx_other++;
		return 0;
	}
	if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) && a->arp_tip == d->cfg.src_ip.s_addr) {
		rte_ether_addr_copy(&a->arp_sha, &eth->dst_addr);
		rte_ether_addr_copy(&d->mac, &eth->src_addr);
		arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
		rte_ether_addr_copy(&a->arp_sha, &a->arp_tha);
		a->arp_tip = a->arp_sip;
		rte_ether_addr_copy(&d->mac, &a->arp_sha);
		a->arp_sip = d->cfg.src_ip.s_addr;
		m->data_len = ARP_FRAME_BYTES;
		m->pkt_len = ARP_FRAME_BYTES;
		d->stats.arp_replies++;
		return 1;
	}
	if (arp->arp_opcode == rte_cpu_to_be_16(RTE_ARP_OP_REPLY) && a->arp_sip == d->cfg.dst_ip.s_addr &&
	    !d->resolved) {
		rte_ether_addr_copy(&a->arp_sha, &d->dst_mac);
		d->resolved = 1;
		return 0;
	}
	d->stats.rx_other++;
	return 0;
}

/* A UDP answer from the destination to one of our source ports: its payload, or NULL. Both checksums
 * are verified in software, as the kernel mode's socket verifies them. */
static const uint8_t *answer_payload(struct zh_bench_dpdk *d, struct rte_mbuf *m, uint32_t *size)
{
	struct rte_ipv4_hdr *ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, sizeof(struct rte_ether_hdr));
	uint32_t frame_bytes = m->data_len, ihl_bytes, total_bytes, udp_bytes;
	struct rte_udp_hdr *udp;
	uint16_t sport, cksum;

	if (frame_bytes < sizeof(struct rte_ether_hdr) + sizeof(*ip) || (ip->version_ihl >> 4) != 4)
		return NULL;
	ihl_bytes = (ip->version_ihl & 0xfu) * 4u;
	total_bytes = rte_be_to_cpu_16(ip->total_length);
	if (ihl_bytes < sizeof(*ip) || total_bytes < ihl_bytes + sizeof(*udp) ||
	    sizeof(struct rte_ether_hdr) + total_bytes > frame_bytes || ip->next_proto_id != IPPROTO_UDP ||
	    ip->src_addr != d->cfg.dst_ip.s_addr || ip->dst_addr != d->cfg.src_ip.s_addr ||
	    (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)))
		return NULL;
	udp = (struct rte_udp_hdr *)((uint8_t *)ip + ihl_bytes);
	udp_bytes = rte_be_to_cpu_16(udp->dgram_len);
	sport = rte_be_to_cpu_16(udp->dst_port);
	if (udp_bytes < sizeof(*udp) || udp_bytes > total_bytes - ihl_bytes || udp->src_port != d->cfg.dst_port ||
	    (uint16_t)(sport - d->cfg.src_port_first) >= d->cfg.src_port_count)
		return NULL;
	if (rte_raw_cksum(ip, ihl_bytes) != 0xffff) {
		d->stats.rx_bad_checksum++;
		return NULL;
	}
	/* 0 is "no checksum"; otherwise recompute it over the frame as sent and compare. */
	cksum = udp->dgram_cksum;
	if (cksum) {
		udp->dgram_cksum = 0;
		if (rte_ipv4_udptcp_cksum(ip, udp) != cksum) {
			d->stats.rx_bad_checksum++;
			return NULL;
		}
	}
	*size = udp_bytes - (uint32_t)sizeof(*udp);
	return (const uint8_t *)(udp + 1);
}

int zh_bench_dpdk_receive(struct zh_bench_dpdk *d, uint32_t burst, zh_bench_dpdk_answer_fn fn, void *ctx)
{
	struct rte_mbuf *m[BURST_MAX], *reply[BURST_MAX], *done[BURST_MAX];
	uint16_t n = rte_eth_rx_burst(d->port_id, 0, m, (uint16_t)(burst < BURST_MAX ? burst : BURST_MAX));
	uint16_t reply_count = 0, done_count = 0, sent;
	uint64_t now;

	if (n == 0)
		return 0;
	now = zh_bench_dpdk_now_ns();
	for (uint16_t i = 0; i < n; i++) {
		const struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m[i], const struct rte_ether_hdr *);
		const uint8_t *payload;
		uint32_t size;

		/* Chained mbufs never carry an answer (it fits one buffer): not ours to read in pieces. */
		if (m[i]->nb_segs != 1 || m[i]->data_len < sizeof(*eth)) {
			d->stats.rx_other++;
		} else if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
			if (on_arp(d, m[i])) {
				reply[reply_count++] = m[i];
				continue;
			}
		} else if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) &&
			   (payload = answer_payload(d, m[i], &size)) != NULL) {
			fn(ctx, payload, size, now);
		} else {
			d->stats.rx_other++;
		}
		done[done_count++] = m[i];
	}
	rte_pktmbuf_free_bulk(done, done_count);
	if (reply_count) {
		sent = rte_eth_tx_burst(d->port_id, 0, reply, reply_count);
		if (sent < reply_count)
			rte_pktmbuf_free_bulk(&reply[sent], reply_count - sent);
	}
	return n;
}

static void ignore_answer(void *ctx, const uint8_t *payload, uint32_t size, uint64_t rx_ns)
{
	(void)ctx, (void)payload, (void)size, (void)rx_ns;
}

static int send_arp_request(struct zh_bench_dpdk *d)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(d->pool);
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *arp;

	if (!m)
		return -ENOMEM;
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	arp = (struct rte_arp_hdr *)(eth + 1);
	memset(eth, 0, ARP_FRAME_BYTES);
	memset(&eth->dst_addr, 0xff, sizeof(eth->dst_addr));
	rte_ether_addr_copy(&d->mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	arp->arp_hlen = RTE_ETHER_ADDR_LEN;
	arp->arp_plen = sizeof(uint32_t);
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
	rte_ether_addr_copy(&d->mac, &arp->arp_data.arp_sha);
	arp->arp_data.arp_sip = d->cfg.src_ip.s_addr;
	arp->arp_data.arp_tip = d->cfg.dst_ip.s_addr;
	m->data_len = ARP_FRAME_BYTES;
	m->pkt_len = ARP_FRAME_BYTES;
	if (rte_eth_tx_burst(d->port_id, 0, &m, 1) != 1) {
		rte_pktmbuf_free(m);
		return -EAGAIN;
	}
	return 0;
}

/* Ask for the destination's MAC every ARP_RETRY_MS until it answers or arp_wait_ms have passed. */
static int resolve_dst_mac(struct zh_bench_dpdk *d)
{
	uint64_t start_ns = zh_bench_dpdk_now_ns(), now = start_ns, next_ns = start_ns;
	uint64_t wait_ns = (uint64_t)d->cfg.arp_wait_ms * 1000000ull;

	while (!d->resolved && now - start_ns < wait_ns) {
		if (now >= next_ns) {
			int rc = send_arp_request(d);

			if (rc && rc != -EAGAIN)
				return rc;
			next_ns = now + ARP_RETRY_MS * 1000000ull;
		}
		if (zh_bench_dpdk_receive(d, BURST_MAX, ignore_answer, NULL) == 0)
			rte_delay_us_sleep(100);
		now = zh_bench_dpdk_now_ns();
	}
	return d->resolved ? 0 : -EHOSTUNREACH;
}

/* rte_eal_cleanup() leaves the EAL's runtime directory behind, one per --file-prefix. With --no-shconf
 * and --no-telemetry it is empty by now, and rmdir() removes it; otherwise (shared config files, the
 * telemetry socket, another process of the same prefix) rmdir() fails and leaves it as it is. */
static void eal_cleanup(void)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	rmdir(dir);
}

/* Undo whatever of the port set-up was done; safe on a half-opened port. */
static void port_teardown(struct zh_bench_dpdk *d)
{
	if (d->started) {
		rte_eth_dev_stop(d->port_id);
		d->started = 0;
	}
	if (d->pool) {
		/* Closing the port gives back the mbufs its rings still held; only then can the pool be
		 * counted. */
		rte_eth_dev_close(d->port_id);
		d->stats.mbufs_unreturned = d->mbuf_count - rte_mempool_avail_count(d->pool);
		rte_mempool_free(d->pool);
		d->pool = NULL;
	}
}

/*
 * rte_pktmbuf_pool_create() with RTE_MEMPOOL_F_NO_IOVA_CONTIG. Why: net_af_xdp registers the pool as
 * its UMEM, assuming the mbufs lie back to back from the first one (count times object size). Without
 * hugepages a default pool keeps each object inside one 4 KiB page, so a 2.3 KiB mbuf takes a whole
 * page and most of the pool lies past the registered area: the kernel drops frames sent from those
 * mbufs as invalid descriptors, silently (measured: no frame left the veth). Without the IOVA-contiguity
 * demand the objects are packed, as net_af_xdp assumes; af_packet copies every frame and does not care.
 */
static struct rte_mempool *pool_create(const char *name, uint32_t count, int socket)
{
	struct rte_pktmbuf_pool_private priv = { .mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE };
	struct rte_mempool *mp;

	mp = rte_mempool_create_empty(name, count, sizeof(struct rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE,
				      MBUF_CACHE_SIZE, sizeof(priv), socket, RTE_MEMPOOL_F_NO_IOVA_CONTIG);
	if (!mp)
		return NULL;
	if (rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL) != 0)
		goto fail;
	rte_pktmbuf_pool_init(mp, &priv);
	if (rte_mempool_populate_default(mp) < 0)
		goto fail;
	/* net_af_xdp registers its UMEM from the first chunk's address for count x element bytes: mbufs
	 * in a second chunk would lie outside it and their frames vanish without an error. */
	if (mp->nb_mem_chunks != 1) {
		fprintf(stderr, "%s: dpdk: the mbuf pool came in %u pieces; af_xdp needs one (more -m?)\n", TOOL,
			mp->nb_mem_chunks);
		goto fail;
	}
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
fail:
	rte_mempool_free(mp);
	return NULL;
}

static int port_setup(struct zh_bench_dpdk *d)
{
	struct rte_eth_conf conf;
	uint16_t rx_desc = RX_DESC_DEFAULT, tx_desc = TX_DESC_DEFAULT;
	char mac_text[RTE_ETHER_ADDR_FMT_SIZE], name[RTE_ETH_NAME_MAX_LEN];
	int socket = (int)rte_socket_id(), rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_configure(d->port_id, 1, 1, &conf);
	if (!rc)
		rc = rte_eth_dev_adjust_nb_rx_tx_desc(d->port_id, &rx_desc, &tx_desc);
	if (rc) {
		fprintf(stderr, "%s: dpdk: configuring port %u: %s\n", TOOL, d->port_id, strerror(-rc));
		return rc;
	}
	d->mbuf_count = rx_desc + tx_desc + MBUF_SLACK;
	d->pool = pool_create("zh_bench_pool", d->mbuf_count, socket);
	if (!d->pool) {
		fprintf(stderr, "%s: dpdk: a pool of %u mbufs: %s (with --no-huge, give -m 256)\n", TOOL,
			d->mbuf_count, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	rc = rte_eth_rx_queue_setup(d->port_id, 0, rx_desc, (unsigned)socket, NULL, d->pool);
	if (!rc)
		rc = rte_eth_tx_queue_setup(d->port_id, 0, tx_desc, (unsigned)socket, NULL);
	if (!rc)
		rc = rte_eth_dev_start(d->port_id);
	if (rc) {
		fprintf(stderr, "%s: dpdk: starting port %u: %s\n", TOOL, d->port_id, strerror(-rc));
		return rc;
	}
	d->started = 1;
	rc = rte_eth_macaddr_get(d->port_id, &d->mac);
	if (rc) {
		fprintf(stderr, "%s: dpdk: MAC of port %u: %s\n", TOOL, d->port_id, strerror(-rc));
		return rc;
	}
	rte_eth_dev_get_name_by_port(d->port_id, name);
	rte_ether_format_addr(mac_text, sizeof(mac_text), &d->mac);
	snprintf(d->text, sizeof(d->text), "%s %s", name, mac_text);
	return 0;
}

int zh_bench_dpdk_open(int eal_argc, char **eal_argv, const struct zh_bench_dpdk_config *cfg,
		       struct zh_bench_dpdk **out)
{
	struct zh_bench_dpdk *d;
	uint16_t port_id;
	int rc, used;

	/* --no-pci goes first, whatever follows: the check above finds the word, but only the EAL knows
	 * which of its options take a value, so "--file-prefix --no-pci" would pass it and still probe
	 * PCI. In front, it is read as an option before anything else. */
	char *argv_eal[EAL_ARGS_MAX + 2];
	if (eal_argc < 1 || eal_argc > EAL_ARGS_MAX) {
		fprintf(stderr, "%s: dpdk: 1 to %u EAL arguments\n", TOOL, EAL_ARGS_MAX);
		return -EINVAL;
	}
	argv_eal[0] = eal_argv[0];
	argv_eal[1] = (char *)"--no-pci";
	for (int i = 1; i < eal_argc; i++)
		argv_eal[i + 1] = eal_argv[i];
	argv_eal[eal_argc + 1] = NULL;
	int argc_eal = eal_argc + 1;

	/* DPDK logs to stdout by default; the tool's stdout is its report (one JSON object with --json). */
	rte_openlog_stream(stderr);
	used = rte_eal_init(argc_eal, argv_eal);
	if (used < 0) {
		fprintf(stderr, "%s: dpdk: EAL init failed: %s\n", TOOL, rte_strerror(rte_errno));
		return -EINVAL;
	}
	tsc_base = rte_rdtsc();
	/* Measured, not rte_get_tsc_hz(): without CPUID's or the MSR's figure (AMD, most VMs) DPDK rounds
	 * its estimate to 10 MHz, up to 0.5% off, which would skew every latency against kernel mode's
	 * CLOCK_MONOTONIC. 20 ms against CLOCK_MONOTONIC_RAW is within a few ppm. */
	uint64_t tsc_hz = zh_clock_measure_tsc_hz(20000000ull);
	if (tsc_hz == 0)
		tsc_hz = rte_get_tsc_hz();
	ns_per_tsc_q32 = (uint64_t)(((unsigned __int128)NS_PER_S << 32) / tsc_hz);
	d = calloc(1, sizeof(*d));
	if (!d) {
		rc = -ENOMEM;
		goto fail_eal;
	}
	d->cfg = *cfg;
	if (used != argc_eal - 1) {
		fprintf(stderr, "%s: dpdk: '%s' after -- is not an EAL argument\n", TOOL, argv_eal[used + 1]);
		rc = -EINVAL;
		goto fail;
	}
	rc = -ENODEV;
	RTE_ETH_FOREACH_DEV(port_id) {
		d->port_id = port_id;
		rc = 0;
		break;
	}
	if (rc) {
		fprintf(stderr, "%s: dpdk: no port: give one with --vdev, e.g. "
			"--vdev net_af_xdp0,iface=zh0c\n", TOOL);
		goto fail;
	}
	rc = port_setup(d);
	if (rc)
		goto fail;
	if (cfg->dst_mac_given) {
		memcpy(d->dst_mac.addr_bytes, cfg->dst_mac, RTE_ETHER_ADDR_LEN);
		d->resolved = 1;
	} else if ((rc = resolve_dst_mac(d)) != 0) {
		fprintf(stderr, "%s: dpdk: %s did not answer ARP within %u ms (give --dst-mac)\n", TOOL,
			inet_ntoa(cfg->dst_ip), cfg->arp_wait_ms);
		goto fail;
	}
	build_template(d);
	*out = d;
	return 0;
fail:
	port_teardown(d);
	free(d);
fail_eal:
	eal_cleanup();
	return rc;
}

void zh_bench_dpdk_thread_attach(void)
{
	/* Without an lcore id the thread still works, only without a mempool cache of its own. */
	if (rte_lcore_id() == LCORE_ID_ANY && rte_thread_register() != 0)
		fprintf(stderr, "%s: dpdk: no lcore id for the sending thread (%s): running without a "
			"mempool cache\n", TOOL, rte_strerror(rte_errno));
}

void zh_bench_dpdk_thread_detach(void)
{
	rte_thread_unregister();
}

const char *zh_bench_dpdk_describe(const struct zh_bench_dpdk *d)
{
	return d->text;
}

void zh_bench_dpdk_get_stats(const struct zh_bench_dpdk *d, struct zh_bench_dpdk_stats *stats)
{
	*stats = d->stats;
}

void zh_bench_dpdk_close(struct zh_bench_dpdk *d, struct zh_bench_dpdk_stats *stats)
{
	port_teardown(d);
	*stats = d->stats;
	free(d);
	eal_cleanup();
}
