/* SPDX-License-Identifier: MIT */
/*
 * dp_lcore.c: see dp_lcore.h.
 *
 * The loop: receive a burst; classify each frame by its headers; answer ARP and ICMP in place; publish
 * requests to the ring (or answer busy/too_large at once); reap the slots this lcore published that
 * are DONE, in order, turning each request mbuf into its answer; transmit everything gathered in one
 * burst. Nothing blocks, nothing allocates, nothing logs per packet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "dp_lcore.h"
#include "krn_request.h"

#define RX_BURST_MAX 32u
#define REAP_MAX 32u
#define TX_BURST_MAX (RX_BURST_MAX + REAP_MAX)
#define PREFETCH_OFFSET 3u
/* Idle loops before a backing-off lcore sleeps, and its longest sleep. */
#define BACKOFF_SPIN_LOOPS 4096u
#define BACKOFF_SLEEP_US_MAX 200u
/* How long a stopping lcore waits for the device to finish what it published. */
#define STOP_DRAIN_US 1000000u

/* The port freed a zero-copy answer: its slot can take the next lap. Runs on the lcore that owns the
 * slot (the one whose tx queue freed the mbuf), or at port close. */
static void answer_released(void *addr, void *opaque)
{
	struct dp_lcore *lc = opaque;
	const struct zh_ring *ring = &lc->ring;
	uint32_t idx = (uint32_t)(((uint8_t *)addr - ring->ans_base) / ring->ans_stride_bytes);

	zh_ring_release(ring, &ring->slots[idx], lc->release_tickets[idx]);
}

int dp_lcore_init(struct dp_lcore *lc, struct gpu_device *dev)
{
	const struct zh_ring *ring = gpu_device_ring(dev);

	lc->dev = dev;
	lc->ring = *ring;
	lc->pending_head = 0;
	lc->pending_count = 0;
	lc->pending_tickets = rte_zmalloc("zh_pending", ring->slot_count * sizeof(uint64_t), 0);
	lc->slot_mbufs = rte_zmalloc("zh_slot_mbufs", ring->slot_count * sizeof(struct rte_mbuf *), 0);
	lc->slot_nic_tsc = rte_zmalloc("zh_slot_nic_tsc", ring->slot_count * sizeof(uint64_t), 0);
	lc->inline_scratch = NULL;
	lc->ext_pool = NULL;
	lc->shinfo = NULL;
	lc->release_tickets = NULL;
	/* Zero-copy tx needs the answers' bus addresses: with IOVA as VA they are their addresses.
	 * Otherwise (IOVA as PA) answers are copied into the request's mbuf. */
	if (lc->zero_copy && rte_eal_iova_mode() != RTE_IOVA_VA)
		lc->zero_copy = 0;
	if (lc->zero_copy) {
		char name[RTE_MEMPOOL_NAMESIZE];

		snprintf(name, sizeof(name), "zh_ext_%u_%u", lc->port_id, lc->queue_idx);
		/* One attachable mbuf per slot is enough: each holds one slot's answer. */
		lc->ext_pool = rte_pktmbuf_pool_create(name, ring->slot_count + 64, 0, 0, 0, (int)rte_socket_id());
		lc->shinfo = rte_zmalloc("zh_shinfo", ring->slot_count * sizeof(*lc->shinfo), RTE_CACHE_LINE_SIZE);
		lc->release_tickets = rte_zmalloc("zh_release", ring->slot_count * sizeof(uint64_t), 0);
		if (!lc->ext_pool || !lc->shinfo || !lc->release_tickets) {
			dp_lcore_free(lc);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < ring->slot_count; i++) {
			lc->shinfo[i].free_cb = answer_released;
			lc->shinfo[i].fcb_opaque = lc;
		}
	}
	struct zh_clock_map clock;
	/* The device's own clock, not its kind: a cpu device under ZH_TEST_DCLK_NS stamps in ns. */
	(void)gpu_device_clock_map(dev, &clock);
	lc->device_clock_is_tsc = clock.kind == ZH_CLOCK_TSC;
	lc->ns_per_tsc_q32 = (uint64_t)(((unsigned __int128)1000000000ull << 32) / rte_get_tsc_hz());
	memset(&lc->answers, 0, sizeof(lc->answers));
	if (gpu_device_is_inline(dev)) {
		int idx = gpu_device_add_consumer(dev);

		if (idx < 0) {
			dp_lcore_free(lc);
			return idx;
		}
		lc->inline_consumer_idx = idx;
		lc->inline_scratch = rte_zmalloc("zh_inline_scratch", sizeof(struct krn_scratch), RTE_CACHE_LINE_SIZE);
		if (!lc->inline_scratch) {
			dp_lcore_free(lc);
			return -ENOMEM;
		}
		/* The lcore serves one request at a time, with a KV cache of its own. */
		uint64_t floats = gpu_device_model_state_floats(dev);
		if (floats > 0) {
			lc->inline_scratch->model_state = rte_malloc("zh_inline_state", floats * sizeof(float),
								     RTE_CACHE_LINE_SIZE);
			if (!lc->inline_scratch->model_state) {
				dp_lcore_free(lc);
				return -ENOMEM;
			}
			lc->inline_scratch->model_state_floats = floats;
		}
	}
	if (!lc->pending_tickets || !lc->slot_mbufs || !lc->slot_nic_tsc) {
		dp_lcore_free(lc);
		return -ENOMEM;
	}
	memset(&lc->stats, 0, sizeof(lc->stats));
	return 0;
}

void dp_lcore_free(struct dp_lcore *lc)
{
	rte_free(lc->pending_tickets);
	rte_free(lc->slot_mbufs);
	rte_free(lc->slot_nic_tsc);
	if (lc->inline_scratch)
		rte_free(lc->inline_scratch->model_state);
	rte_free(lc->inline_scratch);
	/* After the port closed: mbufs the port still held have been freed and their slots released. */
	rte_mempool_free(lc->ext_pool);
	rte_free(lc->shinfo);
	rte_free(lc->release_tickets);
	lc->ext_pool = NULL;
	lc->shinfo = NULL;
	lc->release_tickets = NULL;
	lc->pending_tickets = NULL;
	lc->slot_mbufs = NULL;
	lc->slot_nic_tsc = NULL;
	lc->inline_scratch = NULL;
}

void dp_stats_add(struct dp_stats *to, const struct dp_stats *from)
{
	/* One writer per `to` (its lcore, or the main lcore summing into a private copy); relaxed
	 * stores keep concurrent readers race-free without ordering anything. */
	for (uint32_t i = 0; i < DP_COUNTER_COUNT; i++)
		__atomic_store_n(&to->counters[i], to->counters[i] + __atomic_load_n(&from->counters[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < DP_DROP_COUNT; i++)
		__atomic_store_n(&to->drops[i], to->drops[i] + __atomic_load_n(&from->drops[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < ZH_STATUS_COUNT; i++)
		__atomic_store_n(&to->status[i], to->status[i] + __atomic_load_n(&from->status[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
}

void dp_stats_print_json(FILE *out, const char *prefix, const struct dp_stats *stats)
{
	static const char *const counter_keys[] = {
#define DP_X(name, text) #name,
		DP_COUNTER_LIST(DP_X)
#undef DP_X
	};
	static const char *const status_keys[] = {
#define ZH_X(name, code, text) "status_" text,
		ZH_STATUS_LIST(ZH_X)
#undef ZH_X
	};

	fprintf(out, "%s{", prefix);
	for (uint32_t i = 0; i < DP_COUNTER_COUNT; i++)
		fprintf(out, "%s\"%s\": %" PRIu64, i ? ", " : "", counter_keys[i], stats->counters[i]);
	for (uint32_t i = 0; i < DP_DROP_COUNT; i++)
		fprintf(out, ", \"%s\": %" PRIu64, dp_drop_key((enum dp_drop)i), stats->drops[i]);
	for (uint32_t i = 0; i < ZH_STATUS_COUNT; i++)
		fprintf(out, ", \"%s\": %" PRIu64, status_keys[i], stats->status[i]);
	fprintf(out, "}\n");
	fflush(out);
}

/*
 * A split frame's payload segment (device memory) goes back to its pool once nothing will read it, so
 * that whatever is built over the headers (an answer, a reply) is one segment in host memory.
 */
static inline void drop_payload_segment(struct rte_mbuf *m)
{
	if (likely(m->next == NULL))
		return;
	rte_pktmbuf_free(m->next);
	m->next = NULL;
	m->nb_segs = 1;
	m->pkt_len = m->data_len;
}

/*
 * Where the request payload lies: in the frame, or in a split frame's second segment, which it must
 * begin and fit in (the device reads it as one run of bytes). NULL for any other layout.
 */
static inline const uint8_t *payload_of(const struct rte_mbuf *m, const struct dp_frame_info *info)
{
	const struct rte_mbuf *p = m->next;

	if (likely(p == NULL))
		return rte_pktmbuf_mtod_offset(m, const uint8_t *, info->payload_offset);
	if (info->payload_offset != m->data_len || info->payload_size > p->data_len)
		return NULL;
	return rte_pktmbuf_mtod(p, const uint8_t *);
}

/* Answer a request from the rx lcore itself (busy, too_large): headers only, id unknown (nil). */
static int answer_now(struct dp_lcore *lc, struct rte_mbuf *m, const struct dp_frame_info *info,
		      enum zh_status status, const char *error, struct dp_stats *local)
{
	uint8_t ans[ZH_ERROR_ANS_MAX_BYTES];
	uint32_t ans_size = krn_answer_encode_error(ans, sizeof(ans), 0, 0, status, error);
	uint8_t *frame;

	drop_payload_segment(m);
	frame = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t frame_size = dp_make_udp_answer(&lc->self, frame, m->buf_len - m->data_off, info, ans,
						 ans_size);

	if (unlikely(frame_size == 0)) {
		local->counters[DP_COUNTER_answers_unsent]++;
		return -1;
	}
	m->data_len = (uint16_t)frame_size;
	m->pkt_len = frame_size;
	local->status[status]++;
	uint64_t *cell = &lc->answers.by_model[ZH_MODEL_IDS_MAX][status];
	__atomic_store_n(cell, *cell + 1, __ATOMIC_RELAXED);
	return 0;
}

/* Publish a request to the ring. Returns 1 if the mbuf now belongs to the ring, 0 if it was
 * answered at once and goes to tx, -1 if it must be freed. */
static int publish_request(struct dp_lcore *lc, struct rte_mbuf *m, const struct dp_frame_info *info,
			   uint64_t rx_tsc, uint64_t nic_tsc, struct dp_stats *local)
{
	uint64_t ticket;
	struct zh_slot *slot;

	if (unlikely(info->payload_size > ZH_REQ_MAX_BYTES)) {
		local->counters[DP_COUNTER_too_large]++;
		return answer_now(lc, m, info, ZH_STATUS_TOO_LARGE, "request larger than 1472 bytes", local);
	}
	if (unlikely(lc->draining)) {
		local->counters[DP_COUNTER_draining]++;
		return answer_now(lc, m, info, ZH_STATUS_DRAINING, "draining", local);
	}
	/* A stalled device would never answer: say so at once rather than queue behind it. */
	if (unlikely(!lc->device_healthy)) {
		local->counters[DP_COUNTER_device_stalled]++;
		return answer_now(lc, m, info, ZH_STATUS_INTERNAL, "device stalled", local);
	}
	/* GPUDirect RDMA on a GPU that does not order the NIC's writes: one flush covers every frame the
	 * port has completed so far, so the burst's first request takes it before anything is published,
	 * and a burst of ARP alone takes none. */
	if (unlikely(lc->flush_payload) && !lc->burst_flushed) {
		lc->burst_unflushed = gpu_device_flush_payload_writes(lc->dev) != 0;
		lc->burst_flushed = 1;
		local->counters[DP_COUNTER_payload_flushes]++;
	}
	/* A failed flush leaves the NIC's writes of this burst possibly unseen by the device. */
	if (unlikely(lc->burst_unflushed)) {
		local->counters[DP_COUNTER_payload_flush_failed]++;
		return answer_now(lc, m, info, ZH_STATUS_INTERNAL, "payload flush failed", local);
	}
	uint64_t req_addr = gpu_device_payload_addr(lc->dev, payload_of(m, info));
	if (unlikely(req_addr == 0)) {
		local->counters[DP_COUNTER_device_unmapped]++;
		return answer_now(lc, m, info, ZH_STATUS_INTERNAL, "payload not visible to the device", local);
	}
	slot = zh_ring_produce_begin(&lc->ring, &ticket);
	if (unlikely(!slot)) {
		local->counters[DP_COUNTER_busy]++;
		return answer_now(lc, m, info, ZH_STATUS_BUSY, "ring full", local);
	}
	/* The tx side needs the header sizes back when it turns this mbuf into the answer. */
	m->l2_len = info->l3_offset;
	m->l3_len = (uint16_t)(info->l4_offset - info->l3_offset);
	lc->slot_mbufs[ticket & lc->ring.slot_mask] = m;
	lc->slot_nic_tsc[ticket & lc->ring.slot_mask] = nic_tsc;
	lc->pending_tickets[(lc->pending_head + lc->pending_count) & lc->ring.slot_mask] = ticket;
	lc->pending_count++;

	slot->req_addr = req_addr;
	slot->req_size_bytes = info->payload_size;
	slot->ans_size_bytes = 0;
	slot->ans_status = ZH_STATUS_INTERNAL;
	slot->model_id = ZH_MODEL_ID_NONE;
	slot->producer_idx = lc->producer_idx;
	slot->rx_tsc = rx_tsc;
	slot->publish_tsc = rte_rdtsc();
	zh_ring_publish(&lc->ring, slot, ticket);
	local->counters[DP_COUNTER_requests]++;
	return 1;
}

/* The port's checksum verdicts in dp_parse's terms (dp_parse.h). NONE (the checksum in the frame is
 * wrong but the data was verified intact) counts as good; UNKNOWN leaves it to software. */
static uint32_t rx_cksum_flags(uint64_t ol_flags)
{
	uint64_t ip = ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
	uint64_t l4 = ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	uint32_t flags = DP_RX_CKSUM_UNKNOWN;

	if (ip == RTE_MBUF_F_RX_IP_CKSUM_GOOD || ip == RTE_MBUF_F_RX_IP_CKSUM_NONE)
		flags |= DP_RX_IP_CKSUM_GOOD;
	else if (ip == RTE_MBUF_F_RX_IP_CKSUM_BAD)
		flags |= DP_RX_IP_CKSUM_BAD;
	if (l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD || l4 == RTE_MBUF_F_RX_L4_CKSUM_NONE)
		flags |= DP_RX_L4_CKSUM_GOOD;
	else if (l4 == RTE_MBUF_F_RX_L4_CKSUM_BAD)
		flags |= DP_RX_L4_CKSUM_BAD;
	return flags;
}

/* Classify one frame and act on it. Returns 1 if `m` was added to tx, 0 if the ring owns it or it
 * was freed. */
static int handle_frame(struct dp_lcore *lc, struct rte_mbuf *m, uint64_t rx_tsc, uint64_t nic_tsc,
			struct rte_mbuf **tx, uint32_t *tx_count, struct dp_stats *local)
{
	struct dp_frame_info info;
	uint8_t *frame = rte_pktmbuf_mtod(m, uint8_t *);
	enum dp_verdict verdict;
	uint32_t size;
	int rc;

	/* One segment, or with header split, headers and payload (dp_port.h). */
	if (unlikely(m->nb_segs != 1) && !(lc->split && m->nb_segs == 2)) {
		local->drops[DP_DROP_MULTI_SEGMENT]++;
		rte_pktmbuf_free(m);
		return 0;
	}
	/* With header split, a first segment from anywhere but the host pool lies in device memory
	 * (a port that delivered a frame whole to the payload pool): not one byte of it may be read. */
	if (unlikely(lc->split && m->pool != lc->hdr_pool)) {
		local->drops[DP_DROP_SPLIT_LAYOUT]++;
		rte_pktmbuf_free(m);
		return 0;
	}
	verdict = dp_classify_split(&lc->self, frame, rte_pktmbuf_data_len(m), rte_pktmbuf_pkt_len(m),
				    rx_cksum_flags(m->ol_flags), &info);
	if (unlikely(verdict == DP_VERDICT_REQUEST && m->next != NULL && payload_of(m, &info) == NULL)) {
		verdict = DP_VERDICT_DROP;
		info.drop = DP_DROP_SPLIT_LAYOUT;
	}
	/* A source off the allow-list gets no answer of any kind, ARP and ICMP included. */
	if (verdict != DP_VERDICT_DROP && !dp_acl_allows(&lc->acl, info.src_ip)) {
		verdict = DP_VERDICT_DROP;
		info.drop = DP_DROP_ACL;
	}
	switch (verdict) {
	case DP_VERDICT_REQUEST:
		rc = publish_request(lc, m, &info, rx_tsc, nic_tsc, local);
		if (rc > 0)
			return 0;
		if (rc < 0) {
			rte_pktmbuf_free(m);
			return 0;
		}
		tx[(*tx_count)++] = m;
		return 1;
	case DP_VERDICT_ARP_REQUEST:
		drop_payload_segment(m); /* Ethernet padding past a split point */
		size = dp_make_arp_reply(&lc->self, frame, &info);
		local->counters[DP_COUNTER_arp_replies]++;
		break;
	case DP_VERDICT_ICMP_ECHO:
		drop_payload_segment(m);
		size = dp_make_icmp_reply(&lc->self, frame, &info);
		local->counters[DP_COUNTER_icmp_replies]++;
		break;
	default:
		local->drops[info.drop]++;
		rte_pktmbuf_free(m);
		return 0;
	}
	m->data_len = (uint16_t)size;
	m->pkt_len = size;
	tx[(*tx_count)++] = m;
	return 1;
}

/* Turn DONE slots into answer frames, oldest first, stopping at the first one not yet DONE. */
static uint64_t tsc_to_ns(const struct dp_lcore *lc, uint64_t ticks)
{
	return (uint64_t)(((unsigned __int128)ticks * lc->ns_per_tsc_q32) >> 32);
}

/* A stage's length in ns. Stamps taken on two cores may disagree by a few ns (the TSC offset between
 * cores): a negative difference is a zero-length stage, not a skipped one. */
static uint64_t stage_ns(const struct dp_lcore *lc, uint64_t from, uint64_t to)
{
	return to > from ? tsc_to_ns(lc, to - from) : 0;
}

/* One answer's stage times and its (model, status) count. Stamps from another clock than the TSC
 * (a GPU's) are left to the probe, which maps the clocks; only the host stages are recorded then. */
static void record_answer(struct dp_lcore *lc, const struct zh_slot *slot, uint16_t status, uint64_t nic_tsc,
			  uint64_t tx_tsc)
{
	struct dp_answer_stats *a = &lc->answers;
	uint32_t model = slot->model_id < ZH_MODEL_IDS_MAX ? slot->model_id : ZH_MODEL_IDS_MAX;
	uint64_t *cell = &a->by_model[model][status < ZH_STATUS_COUNT ? status : ZH_STATUS_INTERNAL];

	__atomic_store_n(cell, *cell + 1, __ATOMIC_RELAXED);
	/* A mapped NIC stamp may lie after rx_tsc by up to the map's bound: stage_ns makes that zero. */
	if (nic_tsc != 0)
		dp_hist_record(&a->stages[DP_STAGE_WIRE_TO_RX], stage_ns(lc, nic_tsc, slot->rx_tsc));
	dp_hist_record(&a->stages[DP_STAGE_RX_TO_RING], stage_ns(lc, slot->rx_tsc, slot->publish_tsc));
	dp_hist_record(&a->stages[DP_STAGE_END_TO_END], stage_ns(lc, slot->rx_tsc, tx_tsc));
	if (lc->device_clock_is_tsc) {
		dp_hist_record(&a->stages[DP_STAGE_RING_TO_CLAIM], stage_ns(lc, slot->publish_tsc, slot->claim_dclk));
		dp_hist_record(&a->stages[DP_STAGE_DEVICE_COMPUTE], stage_ns(lc, slot->claim_dclk, slot->done_dclk));
		dp_hist_record(&a->stages[DP_STAGE_DEVICE_TO_TX], stage_ns(lc, slot->done_dclk, tx_tsc));
	}
}

/*
 * Zero-copy tx: an mbuf with no data room of its own, attached to the slot's answer buffer; the
 * headers are written into the headroom the device left in front of the answer. NULL when it cannot
 * (no mbuf free): the caller copies instead.
 */
static struct rte_mbuf *attach_answer(struct dp_lcore *lc, struct zh_slot *slot, uint64_t ticket,
				      const struct rte_mbuf *req, const struct dp_frame_info *info, uint32_t ans_size)
{
	const struct zh_ring *ring = &lc->ring;
	uint32_t idx = (uint32_t)(slot - ring->slots);
	uint8_t *buf = ring->ans_base + (size_t)idx * ring->ans_stride_bytes;
	uint32_t hdr_size = dp_answer_header_size(info);
	struct rte_mbuf_ext_shared_info *sh = &lc->shinfo[idx];
	struct rte_mbuf *z;

	if (unlikely(hdr_size > ring->ans_headroom_bytes))
		return NULL;
	z = rte_pktmbuf_alloc(lc->ext_pool);
	if (unlikely(!z))
		return NULL;
	lc->release_tickets[idx] = ticket;
	rte_mbuf_ext_refcnt_set(sh, 1);
	/* IOVA-as-VA (checked at init): the buffer's virtual address is what a device would use. */
	rte_pktmbuf_attach_extbuf(z, buf, (rte_iova_t)(uintptr_t)buf, (uint16_t)ring->ans_stride_bytes, sh);
	z->data_off = (uint16_t)(ring->ans_headroom_bytes - hdr_size);
	uint32_t frame_size = dp_make_udp_answer_headers(&lc->self, rte_pktmbuf_mtod(req, const uint8_t *), info,
							 buf + z->data_off, ans_size);
	z->data_len = (uint16_t)frame_size;
	z->pkt_len = frame_size;
	z->port = req->port;
	return z;
}

/* The trace's last value: the device left a 9-byte msgpack uint64 placeholder (0) at the end of the
 * answer for the rx lcore, which alone knows the frame's NIC stamp. Written before the answer is framed,
 * so that a UDP checksum covers it. */
static void put_nic_rx(uint8_t *tail, uint64_t nic_tsc)
{
	uint64_t be = rte_cpu_to_be_64(nic_tsc);

	memcpy(tail, &be, sizeof(be));
}

static uint32_t reap_done(struct dp_lcore *lc, struct rte_mbuf **tx, uint32_t *tx_count,
			  struct dp_stats *local)
{
	const struct zh_ring *ring = &lc->ring;
	uint32_t reaped = 0;
	uint64_t tx_tsc = lc->pending_count ? rte_rdtsc() : 0;

	while (lc->pending_count > 0 && reaped < REAP_MAX) {
		uint64_t ticket = lc->pending_tickets[lc->pending_head];
		struct zh_slot *slot = zh_ring_slot(ring, ticket);

		if (!zh_ring_is_done(ring, slot, ticket))
			break;
		struct rte_mbuf *m = lc->slot_mbufs[ticket & ring->slot_mask];
		struct dp_frame_info info = {
			.l3_offset = m->l2_len,
			.l4_offset = (uint16_t)(m->l2_len + m->l3_len),
		};
		uint32_t ans_size = slot->ans_size_bytes;
		uint16_t status = slot->ans_status & ZH_ANS_STATUS_MASK;
		int nic_tail = (slot->ans_status & ZH_ANS_F_NIC_RX_TAIL) != 0;
		uint64_t nic_tsc = lc->slot_nic_tsc[ticket & ring->slot_mask];
		uint32_t frame_size = 0;

		record_answer(lc, slot, status, nic_tsc, tx_tsc);
		/* DONE: the device has read the payload for good. */
		drop_payload_segment(m);
		lc->pending_head = (lc->pending_head + 1) & ring->slot_mask;
		lc->pending_count--;
		reaped++;
		/* A size outside the answer buffer is a device bug; never send beyond the buffer. */
		if (unlikely(ans_size == 0 || ans_size > zh_ring_answer_cap(ring))) {
			zh_ring_release(ring, slot, ticket);
			local->counters[DP_COUNTER_answers_unsent]++;
			rte_pktmbuf_free(m);
			continue;
		}
		if (nic_tail && nic_tsc != 0 && ans_size >= ZH_ANS_NIC_RX_TAIL_BYTES)
			put_nic_rx(zh_ring_answer(ring, slot) + ans_size - sizeof(uint64_t), nic_tsc);
		struct rte_mbuf *z = lc->zero_copy ? attach_answer(lc, slot, ticket, m, &info, ans_size) : NULL;
		if (likely(z != NULL)) {
			/* Sent where the device wrote it; the slot goes back when the port frees z. */
			rte_pktmbuf_free(m);
			m = z;
			frame_size = z->pkt_len;
			local->counters[DP_COUNTER_answers_zero_copy]++;
		} else {
			frame_size = dp_make_udp_answer(&lc->self, rte_pktmbuf_mtod(m, uint8_t *),
							m->buf_len - m->data_off, &info,
							zh_ring_answer(ring, slot), ans_size);
			/* The answer has been copied into the frame: the slot can take the next lap. */
			zh_ring_release(ring, slot, ticket);
			local->counters[DP_COUNTER_answers_copied]++;
		}
		if (unlikely(frame_size == 0)) {
			local->counters[DP_COUNTER_answers_unsent]++;
			rte_pktmbuf_free(m);
			continue;
		}
		m->data_len = (uint16_t)frame_size;
		m->pkt_len = frame_size;
		local->counters[DP_COUNTER_answers]++;
		local->status[status < ZH_STATUS_COUNT ? status : ZH_STATUS_INTERNAL]++;
		tx[(*tx_count)++] = m;
	}
	return reaped;
}

static void transmit(struct dp_lcore *lc, struct rte_mbuf **tx, uint32_t tx_count)
{
	uint16_t sent = rte_eth_tx_burst(lc->port_id, lc->queue_idx, tx, (uint16_t)tx_count);
	uint64_t *counters = lc->stats.counters;

	/* Whatever the port refused is still ours to free. */
	if (unlikely(sent < tx_count)) {
		rte_pktmbuf_free_bulk(&tx[sent], tx_count - sent);
		__atomic_store_n(&counters[DP_COUNTER_tx_dropped], counters[DP_COUNTER_tx_dropped] + tx_count - sent,
				 __ATOMIC_RELAXED);
	}
	__atomic_store_n(&counters[DP_COUNTER_tx_frames], counters[DP_COUNTER_tx_frames] + sent, __ATOMIC_RELAXED);
}

static void idle_sleep(uint32_t sleep_us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)sleep_us * 1000 };

	nanosleep(&ts, NULL);
}

/* Each frame's NIC rx stamp mapped to the TSC, 0 where it has none or it cannot be mapped. The map is
 * read once per burst. */
static void rx_stamps(struct dp_lcore *lc, struct rte_mbuf **rx, uint16_t n, uint64_t *nic_tsc,
		      struct dp_stats *local)
{
	const struct dp_nicclk_map *map = &lc->rx_clock_last;
	uint32_t good = 0, bad = 0;

	if (lc->rx_stamp_flag == 0) {
		memset(nic_tsc, 0, n * sizeof(*nic_tsc));
		return;
	}
	/* A burst that meets the control core publishing keeps the previous map, which was valid a
	 * refresh ago and is still within its horizon (the map refuses stamps past it). */
	struct dp_nicclk_map fresh;
	if (lc->rx_clock && dp_nicclk_read(lc->rx_clock, &fresh) == 0) {
		lc->rx_clock_last = fresh; /* only a whole read replaces it: a failed one may be torn */
		lc->rx_clock_last_valid = 1;
	}
	int mapped = lc->rx_clock_last_valid;
	for (uint16_t i = 0; i < n; i++) {
		nic_tsc[i] = 0;
		if (!(rx[i]->ol_flags & lc->rx_stamp_flag))
			continue;
		uint64_t stamp = *RTE_MBUF_DYNFIELD(rx[i], lc->rx_stamp_offset, rte_mbuf_timestamp_t *);
		if (mapped && dp_nicclk_to_tsc(map, stamp, &nic_tsc[i]) == 0)
			good++;
		else
			bad++;
	}
	local->counters[DP_COUNTER_rx_stamps_mapped] += good;
	local->counters[DP_COUNTER_rx_stamps_unmapped] += bad;
}

/* One pass of the loop. Returns the number of frames received plus slots reaped. */
static uint32_t poll_once(struct dp_lcore *lc)
{
	struct rte_mbuf *rx[RX_BURST_MAX];
	struct rte_mbuf *tx[TX_BURST_MAX];
	uint32_t tx_count = 0;
	struct dp_stats local;
	uint16_t n = rte_eth_rx_burst(lc->port_id, lc->queue_idx, rx, RX_BURST_MAX);
	uint32_t reaped;

	if (n == 0 && lc->pending_count == 0)
		return 0;
	memset(&local, 0, sizeof(local));
	if (n > 0) {
		uint64_t rx_tsc = rte_rdtsc();
		uint64_t nic_tsc[RX_BURST_MAX];

		rx_stamps(lc, rx, n, nic_tsc, &local);

		/* Read once per burst: the watchdog's verdict changes on a scale of milliseconds. */
		lc->device_healthy = gpu_device_healthy(lc->dev);
		/* The flush before READY is taken with the burst's first request (publish_request). */
		lc->burst_flushed = 0;
		local.counters[DP_COUNTER_rx_frames] = n;
		for (uint32_t i = 0; i < PREFETCH_OFFSET && i < n; i++)
			rte_prefetch0(rte_pktmbuf_mtod(rx[i], void *));
		for (uint32_t i = 0; i < n; i++) {
			if (i + PREFETCH_OFFSET < n)
				rte_prefetch0(rte_pktmbuf_mtod(rx[i + PREFETCH_OFFSET], void *));
			handle_frame(lc, rx[i], rx_tsc, nic_tsc[i], tx, &tx_count, &local);
		}
	}
	/* Inline mode: run the device loop here until the ring is empty (at most one ring's worth),
	 * so this burst's answers leave with this burst. */
	if (lc->inline_scratch) {
		uint32_t served = 0;

		while (served < lc->ring.slot_count &&
		       krn_loop_step(&lc->ring, gpu_device_enter(lc->dev, (uint32_t)lc->inline_consumer_idx),
				     lc->inline_scratch))
			served++;
		local.counters[DP_COUNTER_served_inline] += served;
	}
	reaped = reap_done(lc, tx, &tx_count, &local);
	/* Counters are published before the frames leave, so whoever sees an answer sees it counted. */
	if (n > 0 || reaped > 0)
		dp_stats_add(&lc->stats, &local);
	if (tx_count > 0)
		transmit(lc, tx, tx_count);
	return n + reaped;
}

/* Stopping: let the device finish what this lcore published, send those answers, and free what is
 * left. A slot the device never finished keeps its mbuf (the device may still read it). */
static void drain_pending(struct dp_lcore *lc)
{
	uint64_t deadline_tsc = rte_rdtsc() + rte_get_tsc_hz() / 1000000 * STOP_DRAIN_US;

	while (lc->pending_count > 0 && rte_rdtsc() < deadline_tsc) {
		if (poll_once(lc) == 0)
			idle_sleep(10);
	}
	if (lc->pending_count > 0)
		fprintf(stderr, "zerohopd: lcore %u: %u requests still on the device at stop\n",
			rte_lcore_id(), lc->pending_count);
}

int dp_lcore_main(void *arg)
{
	struct dp_lcore *lc = arg;
	uint32_t idle_loops = 0;
	uint32_t sleep_us = 0;

	/* Sleeps of a few microseconds are worthless with the default 50 us timer slack. */
	if (lc->idle == DP_IDLE_BACKOFF)
		prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	while (!lc->stop) {
		if (poll_once(lc) > 0 || lc->pending_count > 0) {
			idle_loops = 0;
			sleep_us = 0;
			continue;
		}
		if (lc->idle == DP_IDLE_POLL || ++idle_loops < BACKOFF_SPIN_LOOPS) {
			rte_pause();
			continue;
		}
		sleep_us = sleep_us == 0 ? 1 : RTE_MIN(sleep_us * 2, BACKOFF_SLEEP_US_MAX);
		idle_sleep(sleep_us);
	}
	drain_pending(lc);
	return 0;
}
