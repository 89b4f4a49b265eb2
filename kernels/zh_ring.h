/* SPDX-License-Identifier: MIT */
/*
 * zh_ring.h: the request ring shared by the dataplane (producers), the device loop (consumers) and
 * CUDA kernels. Header-only so that gcc and nvcc compile the same protocol.
 *
 * A slot moves FREE -> READY -> CLAIMED -> DONE -> FREE:
 *   producer (rx lcore)    takes ticket t, fills the descriptor, publishes READY;
 *   consumer (device)      takes consumer ticket t, marks CLAIMED, writes the answer, publishes DONE;
 *   reaper (the producer)  sees DONE, transmits the answer, hands the slot to lap+1 as FREE.
 *
 * Each slot has one 64-bit word, (lap << 2) | state, where lap = ticket / slot_count. Tickets are
 * 64-bit and never wrap in practice (at 10^9 requests/s that takes 584 years), so the lap in the word
 * tells a slot that belongs to this turn of the ring from one still held by the previous turn: that is
 * how a producer sees "full" and a consumer sees "empty" without a shared count (Vyukov's bounded
 * queue, with the completion states added). Producers and consumers each claim tickets by CAS, so any
 * number of either works. A full ring is reported to the caller, who answers BUSY; nothing blocks.
 */
#ifndef ZH_RING_H
#define ZH_RING_H

#include "zh_defs.h"
#include "zh_proto.h"

enum zh_slot_state {
	ZH_SLOT_FREE = 0,
	ZH_SLOT_READY = 1,
	ZH_SLOT_CLAIMED = 2,
	ZH_SLOT_DONE = 3,
};

#define ZH_SLOT_STATE_BITS 2u
#define ZH_SLOT_WORD(lap, state) (((uint64_t)(lap) << ZH_SLOT_STATE_BITS) | (uint64_t)(state))
#define ZH_SLOT_WORD_LAP(word) ((word) >> ZH_SLOT_STATE_BITS)
#define ZH_SLOT_WORD_STATE(word) ((uint32_t)((word)&3u))

/* Bounds on the ring, checked when it is created. */
#define ZH_RING_SLOTS_MIN 2u
#define ZH_RING_SLOTS_MAX 65536u

/*
 * One cache line per slot so that producers, consumers and the reaper touching neighbouring slots
 * never share a line. Fields other than `word` are written by exactly one party while it owns the slot
 * and published by the release store of `word`.
 */
struct zh_slot {
	uint64_t word;            /* (lap << 2) | enum zh_slot_state; the only concurrently written field */
	uint64_t req_addr;        /* device-visible address of the request payload (msgpack bytes) */
	uint32_t req_size_bytes;  /* payload length, 1..ZH_REQ_MAX_BYTES, set by the producer */
	uint32_t ans_size_bytes;  /* answer length, 1..ans_stride_bytes, set by the consumer */
	uint16_t ans_status;      /* enum zh_status of the answer | ZH_ANS_F_*, set by the consumer */
	uint16_t model_id;        /* krn_model.id of the model that answered, ZH_MODEL_ID_NONE if none; consumer */
	uint32_t producer_idx;    /* which producer (rx lcore) published it, for its reaper */
	uint64_t rx_tsc;          /* host TSC when the rx lcore received the packet */
	uint64_t publish_tsc;     /* host TSC just before READY was stored */
	uint64_t claim_dclk;      /* device clock at claim (TSC on the cpu device, ns of %globaltimer on CUDA) */
	uint64_t done_dclk;       /* device clock just before DONE was stored */
} ZH_ALIGNED(ZH_CACHE_LINE_SIZE);

/*
 * Flags the consumer ORs into ans_status beside the status. NIC_RX_TAIL: the answer ends with the
 * trace's last value, the frame's NIC rx time, as a 9-byte msgpack uint64 of 0 that the reaper (the rx
 * lcore, which alone keeps the frame's NIC stamp: the slot has no room for it) overwrites in place.
 */
#define ZH_ANS_STATUS_MASK 0x00ffu
#define ZH_ANS_F_NIC_RX_TAIL 0x8000u
#define ZH_ANS_NIC_RX_TAIL_BYTES 9u
ZH_STATIC_ASSERT(ZH_STATUS_COUNT <= ZH_ANS_STATUS_MASK, "every status fits below the flags");

ZH_STATIC_ASSERT(sizeof(struct zh_slot) == ZH_CACHE_LINE_SIZE, "a slot is one cache line");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, word) == 0, "the state word leads the slot");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, req_addr) == 8, "slot layout is shared with CUDA");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, req_size_bytes) == 16, "slot layout is shared with CUDA");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, ans_status) == 24, "slot layout is shared with CUDA");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, rx_tsc) == 32, "slot layout is shared with CUDA");
ZH_STATIC_ASSERT(offsetof(struct zh_slot, done_dclk) == 56, "slot layout is shared with CUDA");

/* A ticket counter alone in its cache line: producers and consumers never false-share. */
struct zh_ring_ticket {
	uint64_t value;
	uint8_t pad[ZH_CACHE_LINE_SIZE - sizeof(uint64_t)];
} ZH_ALIGNED(ZH_CACHE_LINE_SIZE);

ZH_STATIC_ASSERT(sizeof(struct zh_ring_ticket) == ZH_CACHE_LINE_SIZE, "a ticket is one cache line");

/*
 * A view of a ring as seen from one side. The host and a CUDA kernel each hold a view whose pointers
 * are valid on their side (host and device addresses of the same memory); the view is passed by
 * value and never shared through memory.
 */
struct zh_ring {
	struct zh_ring_ticket *prod_ticket; /* claimed by producers */
	struct zh_ring_ticket *cons_ticket; /* claimed by consumers */
	struct zh_slot *slots;              /* [slot_count] */
	uint8_t *ans_base;                  /* [slot_count][ans_stride_bytes] answer buffers */
	uint32_t slot_count;                /* power of two, ZH_RING_SLOTS_MIN..ZH_RING_SLOTS_MAX */
	uint32_t slot_mask;                 /* slot_count - 1 */
	uint32_t lap_shift;                 /* log2(slot_count) */
	uint32_t ans_stride_bytes;          /* bytes per answer buffer, headroom included, multiple of 64 */
	uint32_t ans_headroom_bytes;        /* bytes before each answer, where the tx side writes the
					     * Ethernet/IPv4/UDP headers to send the answer where it lies */
};

/* Headroom the host runtimes leave before each answer: room for Ethernet (with one VLAN tag), IPv4
 * and UDP headers, rounded to a cache line. */
#define ZH_ANS_HEADROOM_BYTES 64u
ZH_STATIC_ASSERT(ZH_ANS_HEADROOM_BYTES >= 18u + 20u + 8u, "the headroom holds the answer's headers");

static inline ZH_HD uint64_t zh_ring_lap(const struct zh_ring *ring, uint64_t ticket)
{
	return ticket >> ring->lap_shift;
}

static inline ZH_HD struct zh_slot *zh_ring_slot(const struct zh_ring *ring, uint64_t ticket)
{
	return &ring->slots[ticket & ring->slot_mask];
}

static inline ZH_HD uint8_t *zh_ring_answer(const struct zh_ring *ring, const struct zh_slot *slot)
{
	return ring->ans_base + (size_t)(slot - ring->slots) * ring->ans_stride_bytes + ring->ans_headroom_bytes;
}

/* Bytes an answer may take. */
static inline ZH_HD uint32_t zh_ring_answer_cap(const struct zh_ring *ring)
{
	return ring->ans_stride_bytes - ring->ans_headroom_bytes;
}

/*
 * Producer: take the next ticket if its slot is FREE for this lap. Returns the slot (the caller now
 * owns it and must publish it) or NULL when the ring is full.
 */
static inline ZH_HD struct zh_slot *zh_ring_produce_begin(const struct zh_ring *ring, uint64_t *ticket)
{
	for (;;) {
		uint64_t t = zh_load_relaxed_u64(&ring->prod_ticket->value);
		struct zh_slot *slot = zh_ring_slot(ring, t);
		uint64_t lap = zh_ring_lap(ring, t);
		/* Acquire: pairs with the reaper's release of FREE, so our writes to the descriptor
		 * cannot be overtaken by the previous lap's reads of it. */
		uint64_t word = zh_load_acquire_u64(&slot->word);

		if (word == ZH_SLOT_WORD(lap, ZH_SLOT_FREE)) {
			if (zh_cas_u64(&ring->prod_ticket->value, t, t + 1)) {
				*ticket = t;
				return slot;
			}
			continue; /* another producer took t */
		}
		/* The slot still holds the previous lap: full, unless t was stale meanwhile. */
		if (ZH_SLOT_WORD_LAP(word) < lap &&
		    zh_load_relaxed_u64(&ring->prod_ticket->value) == t)
			return NULL;
	}
}

/* Producer: the descriptor is written; hand the slot to the consumers. */
static inline ZH_HD void zh_ring_publish(const struct zh_ring *ring, struct zh_slot *slot, uint64_t ticket)
{
	/* Release: the descriptor fields (and, on the cpu device, the payload bytes the rx lcore
	 * wrote) become visible to whoever acquires READY. Device placements that cannot rely on
	 * this store's ordering flush before calling it (see gpu/). */
	zh_store_release_u64(&slot->word, ZH_SLOT_WORD(zh_ring_lap(ring, ticket), ZH_SLOT_READY));
}

/*
 * Consumer: claim the next READY slot. Returns it (now CLAIMED and owned by the caller) or NULL when
 * no slot is ready.
 */
static inline ZH_HD struct zh_slot *zh_ring_claim(const struct zh_ring *ring, uint64_t *ticket)
{
	for (;;) {
		uint64_t t = zh_load_relaxed_u64(&ring->cons_ticket->value);
		struct zh_slot *slot = zh_ring_slot(ring, t);
		uint64_t lap = zh_ring_lap(ring, t);
		/* Acquire: pairs with the producer's release of READY; the descriptor and payload
		 * read after a won CAS are the ones the producer wrote. */
		uint64_t word = zh_load_acquire_u64(&slot->word);

		if (word == ZH_SLOT_WORD(lap, ZH_SLOT_READY)) {
			if (zh_cas_u64(&ring->cons_ticket->value, t, t + 1)) {
				/* Release is not needed for correctness (nobody acquires CLAIMED to read
				 * our data); it keeps the state observable in order for watchdogs. */
				zh_store_release_u64(&slot->word, ZH_SLOT_WORD(lap, ZH_SLOT_CLAIMED));
				*ticket = t;
				return slot;
			}
			continue;
		}
		/* Not READY for this lap: empty (FREE, or a producer is still filling it), unless t was
		 * stale because another consumer advanced it. */
		if ((ZH_SLOT_WORD_LAP(word) < lap ||
		     (ZH_SLOT_WORD_LAP(word) == lap && ZH_SLOT_WORD_STATE(word) == ZH_SLOT_FREE)) &&
		    zh_load_relaxed_u64(&ring->cons_ticket->value) == t)
			return NULL;
	}
}

/* Consumer: the answer and its size are written; hand the slot back to its producer. */
static inline ZH_HD void zh_ring_complete(const struct zh_ring *ring, struct zh_slot *slot, uint64_t ticket)
{
	/* Release: the answer bytes and ans_size_bytes/ans_status become visible to the reaper that
	 * acquires DONE. On CUDA this is a system-scope release, ordered against the CPU. */
	zh_store_release_u64(&slot->word, ZH_SLOT_WORD(zh_ring_lap(ring, ticket), ZH_SLOT_DONE));
}

/* Reaper: has the consumer finished this ticket? */
static inline ZH_HD int zh_ring_is_done(const struct zh_ring *ring, const struct zh_slot *slot, uint64_t ticket)
{
	/* Acquire: pairs with zh_ring_complete; the answer may be read once this returns true. */
	return zh_load_acquire_u64(&slot->word) == ZH_SLOT_WORD(zh_ring_lap(ring, ticket), ZH_SLOT_DONE);
}

/* Reaper: the answer has been sent (or copied out); give the slot to the next lap's producer. */
static inline ZH_HD void zh_ring_release(const struct zh_ring *ring, struct zh_slot *slot, uint64_t ticket)
{
	/* Release: our reads of the answer finish before a producer can reuse the slot. */
	zh_store_release_u64(&slot->word, ZH_SLOT_WORD(zh_ring_lap(ring, ticket) + 1, ZH_SLOT_FREE));
}

#endif /* ZH_RING_H */
