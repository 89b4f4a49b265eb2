/* SPDX-License-Identifier: MIT */
/*
 * zh_bench_dpdk.h: zerohop-bench's DPDK port: one Ethernet port (a --vdev such as net_af_xdp or
 * net_af_packet on the dev network's client veth), one queue, polled by one thread. The port builds
 * Ethernet/IPv4/UDP frames around request payloads (full IPv4 and UDP checksums in software, since
 * af_xdp and af_packet on veth offload neither), spreads them over a range of UDP source ports, hands
 * the UDP payload of every answer from the destination to a callback, resolves the destination's MAC
 * with one ARP exchange and answers ARP requests for its own address.
 *
 * Time is the TSC (rte_rdtsc) converted to nanoseconds with rte_get_tsc_hz(), from the moment the
 * EAL was initialised. Every mbuf the port allocates is handed to the PMD or freed (rejected by the
 * PMD, or received); zh_bench_dpdk_close() reports any the pool is still missing.
 *
 * zerohop-bench and zerohop-probe both use it; its messages name the tool that runs it.
 */
#ifndef ZH_BENCH_DPDK_H
#define ZH_BENCH_DPDK_H

#include <stdint.h>
#include <netinet/in.h>
#include <sys/uio.h>

struct zh_bench_dpdk;

/* What the port needs to know. Addresses and ports in network byte order. */
struct zh_bench_dpdk_config {
	struct in_addr src_ip;      /* this client's address (the client namespace's) */
	struct in_addr dst_ip;      /* the appliance */
	uint16_t dst_port;
	uint16_t src_port_first;    /* host order: source ports [first, first + count) in turn */
	uint16_t src_port_count;
	uint8_t dst_mac[6];
	int dst_mac_given;          /* 0: resolve it with ARP at open */
	uint32_t arp_wait_ms;       /* how long ARP resolution may take in all */
};

/* Counters of what the port saw besides answers (printed in the report). */
struct zh_bench_dpdk_stats {
	uint64_t tx_full;           /* frames the PMD did not take at once (sent again later) */
	uint64_t rx_other;          /* frames that were not answers from the destination, nor ARP for us */
	uint64_t rx_bad_checksum;   /* answers dropped for a wrong IPv4 or UDP checksum */
	uint64_t arp_replies;       /* ARP requests for our address answered */
	/* Set by zh_bench_dpdk_close(): mbufs missing from the pool once the port is closed. 0 with
	 * net_af_packet; net_af_xdp (22.11) keeps the mbufs of its fill ring, about the rx ring's size,
	 * whatever the run's length. The pool holds only the rings plus a few bursts, so a bench that
	 * lost an mbuf per request would run dry within a few thousand requests. */
	uint64_t mbufs_unreturned;
};

/*
 * Whether the EAL arguments keep DPDK off this machine's PCI devices: they must hold --no-pci (the
 * client tools drive af_xdp or af_packet ports on kernel interfaces, never a PCI device). Returns 1 if
 * they do. zh_bench_dpdk_open puts --no-pci first in what the EAL reads in any case.
 */
int zh_bench_dpdk_eal_args_safe(int eal_argc, char *const *eal_argv);

/* A MAC as six colon-separated pairs of hex digits ("02:00:00:00:00:01"): 0, or -EINVAL. */
int zh_bench_dpdk_parse_mac(const char *text, uint8_t mac[6]);

/*
 * The checks a tool makes before it starts the EAL: `src_text` (--src) is an IPv4 address inside the
 * ranges a tool may use (zh_cli_dest_allowed), and the EAL arguments keep DPDK off this machine's PCI
 * devices (zh_bench_dpdk_eal_args_safe). Sets cfg->src_ip. Says why it refuses, on stderr. Returns 0,
 * -EINVAL (not an address) or -EPERM (refused).
 */
int zh_bench_dpdk_preflight(const char *src_text, int eal_argc, char *const *eal_argv,
			    struct zh_bench_dpdk_config *cfg);

/*
 * Initialise the EAL with eal_argv (eal_argv[0] is the program name; the caller checked the safety
 * rule above), open its first port with one queue, and resolve the destination's MAC unless given.
 * Prints why it failed. Returns 0 and *out, or -errno after undoing everything (rte_eal_cleanup too).
 */
int zh_bench_dpdk_open(int eal_argc, char **eal_argv, const struct zh_bench_dpdk_config *cfg,
		       struct zh_bench_dpdk **out);

/* The calling thread polls the port: give it an lcore id, so that it has its own mempool cache. */
void zh_bench_dpdk_thread_attach(void);
void zh_bench_dpdk_thread_detach(void);

/* Nanoseconds from the TSC, since open. */
uint64_t zh_bench_dpdk_now_ns(void);

/*
 * Send each payload (at most 1472 bytes) in its own datagram. Returns how many the port took (the rest
 * were freed and may be offered again), or -errno: -EMSGSIZE for a larger payload.
 */
int zh_bench_dpdk_send(struct zh_bench_dpdk *d, const struct iovec *payloads, uint32_t count);

/*
 * Take at most `burst` frames from the port: answer ARP, and for every UDP datagram from the
 * destination to one of our source ports call fn with its payload and the time the burst was taken.
 * Returns the frames taken (0 if none), or -errno.
 */
typedef void (*zh_bench_dpdk_answer_fn)(void *ctx, const uint8_t *payload, uint32_t size, uint64_t rx_ns);
int zh_bench_dpdk_receive(struct zh_bench_dpdk *d, uint32_t burst, zh_bench_dpdk_answer_fn fn, void *ctx);

/* The port's name and MAC as text ("net_af_xdp0 02:..."), and its counters. */
const char *zh_bench_dpdk_describe(const struct zh_bench_dpdk *d);
void zh_bench_dpdk_get_stats(const struct zh_bench_dpdk *d, struct zh_bench_dpdk_stats *stats);

/* Stop and close the port, free the pool (counting missing mbufs into *stats), rte_eal_cleanup() and
 * remove the runtime directory if it is empty (with --no-shconf --no-telemetry). */
void zh_bench_dpdk_close(struct zh_bench_dpdk *d, struct zh_bench_dpdk_stats *stats);

#endif /* ZH_BENCH_DPDK_H */
