/* SPDX-License-Identifier: MIT */
/*
 * dp_lcore.h: the rx/tx lcore. Each polls one port queue, answers ARP and ICMP itself, publishes
 * requests for its UDP port into the device ring as descriptors, reaps the slots it published when
 * the device marks them DONE and sends the answers. Counters are per lcore, cache-aligned, and
 * updated once per burst.
 */
#ifndef DP_LCORE_H
#define DP_LCORE_H

#include <stdint.h>

#include <rte_common.h>
#include <rte_mbuf.h>

#include "dp_hist.h"
#include "dp_acl.h"
#include "dp_nicclk.h"
#include "dp_parse.h"
#include "gpu_device.h"

/* Counters other than drops; drops come from DP_DROP_LIST. */
#define DP_COUNTER_LIST(X)                                                          \
	X(rx_frames, "frames received")                                             \
	X(tx_frames, "frames the port accepted for transmission")                   \
	X(tx_dropped, "frames the port refused (freed and counted)")                \
	X(arp_replies, "ARP requests for our address answered")                     \
	X(icmp_replies, "ICMP echo requests answered")                              \
	X(requests, "datagrams published to the device ring")                       \
	X(answers, "answers from the device sent")                                  \
	X(busy, "requests answered busy by the rx lcore because the ring was full") \
	X(too_large, "requests answered too_large by the rx lcore")                \
	X(answers_unsent, "answers that could not be built into a frame")          \
	X(served_inline, "requests this lcore served itself (inline mode)")       \
	X(device_stalled, "requests answered internal because the device stalled") \
	X(device_unmapped, "requests answered internal: payload not visible to the device") \
	X(draining, "requests answered draining")                                  \
	X(answers_zero_copy, "answers sent from the device's answer buffer")     \
	X(answers_copied, "answers copied into the request's mbuf")                \
	X(payload_flushes, "bursts whose NIC writes were flushed to the device before READY") \
	X(payload_flush_failed, "requests answered internal: the flush before READY failed") \
	X(rx_stamps_mapped, "frames whose NIC rx timestamp was mapped to the TSC")  \
	X(rx_stamps_unmapped, "frames with a NIC rx timestamp the clock map could not place")

enum dp_counter {
#define DP_X(name, text) DP_COUNTER_##name,
	DP_COUNTER_LIST(DP_X)
#undef DP_X
	DP_COUNTER_COUNT
};

struct dp_stats {
	uint64_t counters[DP_COUNTER_COUNT];
	uint64_t drops[DP_DROP_COUNT];
	uint64_t status[ZH_STATUS_COUNT]; /* answers sent, by status */
} __rte_cache_aligned;

/* Stages of a request's time, as exported (docs/MGMT.md). */
#define DP_STAGE_LIST(X)                 \
	X(WIRE_TO_RX, "wire_to_rx")      \
	X(RX_TO_RING, "rx_to_ring")      \
	X(RING_TO_CLAIM, "ring_to_claim") \
	X(DEVICE_COMPUTE, "device_compute") \
	X(DEVICE_TO_TX, "device_to_tx")  \
	X(END_TO_END, "end_to_end")

enum dp_stage {
#define DP_X(name, text) DP_STAGE_##name,
	DP_STAGE_LIST(DP_X)
#undef DP_X
	DP_STAGE_COUNT
};

/* Per-answer statistics: latency by stage, answers by model and status. One lcore writes its own;
 * the control core reads them relaxed. Row ZH_MODEL_IDS_MAX counts answers no model gave. */
struct dp_answer_stats {
	struct dp_hist stages[DP_STAGE_COUNT];
	uint64_t by_model[ZH_MODEL_IDS_MAX + 1][ZH_STATUS_COUNT];
} __rte_cache_aligned;

enum dp_idle {
	DP_IDLE_POLL = 0, /* busy polling, the production default */
	DP_IDLE_BACKOFF,  /* short sleeps when idle, for shared dev machines and tests */
};

/* Everything one rx/tx lcore owns. Filled by dp_lcore_init, read by its lcore only. */
struct dp_lcore {
	uint16_t port_id;
	uint16_t queue_idx;
	uint32_t producer_idx;
	enum dp_idle idle;
	struct dp_self self;
	struct dp_acl acl;                /* sources this lcore answers (empty: all) */
	struct zh_ring ring;              /* host view of the device ring */
	struct gpu_device *dev;
	/* Tickets this lcore published, in order; slot index -> mbuf of the request. */
	uint64_t *pending_tickets;        /* [ring.slot_count] FIFO */
	uint32_t pending_head;            /* oldest, index into pending_tickets (mod slot_count) */
	uint32_t pending_count;
	struct rte_mbuf **slot_mbufs;     /* [ring.slot_count] */
	/* NIC rx timestamps, where the port has them: set before dp_lcore_init. The stamp of each request
	 * in flight, mapped to the TSC (0: none), is kept here rather than in the ring slot, which is full
	 * and shared with the device. */
	const struct dp_nicclk_pub *rx_clock; /* the port's clock map; NULL: the port does not stamp */
	uint64_t rx_stamp_flag;
	int rx_stamp_offset;
	struct dp_nicclk_map rx_clock_last; /* the last map read whole: used while the writer holds the lock */
	int rx_clock_last_valid;
	uint64_t *slot_nic_tsc;           /* [ring.slot_count] */
	/* Zero-copy tx (answers sent where the device wrote them): set before dp_lcore_init, which
	 * clears it where the port cannot take it. */
	int zero_copy;
	struct rte_mempool *ext_pool;     /* mbufs without data room, attached to answer buffers */
	struct rte_mbuf_ext_shared_info *shinfo; /* [ring.slot_count] */
	uint64_t *release_tickets;        /* [ring.slot_count] the ticket to release when freed */
	/* Inline mode: this lcore's scratch for the device loop; NULL otherwise. */
	struct krn_scratch *inline_scratch;
	int device_healthy;               /* the watchdog's verdict, read once per burst */
	int split;                        /* the port splits headers (host) from payloads (device memory) */
	struct rte_mempool *hdr_pool;     /* with split: the host pool every frame's first segment comes from */
	int flush_payload;                /* flush NIC writes to the device once per burst (gpudirect) */
	int burst_flushed;                /* this burst's flush was taken */
	int burst_unflushed;              /* this burst's flush failed: publish nothing from it */
	int device_clock_is_tsc;          /* 1 when claim/done stamps are TSC (the cpu device) */
	int inline_consumer_idx;          /* inline mode: the device's quiescent-state slot */
	uint64_t ns_per_tsc_q32;          /* TSC ticks to ns, fixed point 32.32 */
	struct dp_stats stats;            /* written by this lcore; read by the main lcore */
	struct dp_answer_stats answers;   /* written by this lcore; read by the main lcore */
	volatile int stop;                /* set by the main lcore */
	volatile int draining;            /* set by the main lcore: answer new requests `draining` */
} __rte_cache_aligned;

/* Allocate the lcore's pending FIFO for the device's ring. Returns 0 or -errno. */
int dp_lcore_init(struct dp_lcore *lc, struct gpu_device *dev);
void dp_lcore_free(struct dp_lcore *lc);

/* The lcore body, for rte_eal_remote_launch. Returns 0 when `stop` is set. */
int dp_lcore_main(void *arg);

/* Add `from` into `to` (the main lcore's view; counters may be mid-burst, which is fine). */
void dp_stats_add(struct dp_stats *to, const struct dp_stats *from);

/* Print all counters as one JSON object on one line, prefixed by `prefix`. */
void dp_stats_print_json(FILE *out, const char *prefix, const struct dp_stats *stats);

#endif /* DP_LCORE_H */
