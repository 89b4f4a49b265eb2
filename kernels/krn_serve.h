/* SPDX-License-Identifier: MIT */
/*
 * krn_serve.h: the persistent device loop's body, shared by the cpu device (worker threads) and the
 * CUDA kernel: claim a READY slot, decode its request, run the model it names, encode the answer into
 * the slot's answer buffer, publish DONE. Host/device-neutral.
 *
 * Serving one request has three phases so that a CUDA block can run the middle one with all its threads:
 *   krn_serve_prepare  one thread: decode, find the model, check the request against it;
 *   krn_serve_run      every thread of the block (one on the cpu device): the model's arithmetic;
 *   krn_serve_encode   one thread: the answer.
 * A block barrier separates the phases; krn_serve_request runs all three on one thread.
 */
#ifndef KRN_SERVE_H
#define KRN_SERVE_H

#include "zh_defs.h"
#include "zh_proto.h"
#include "zh_ring.h"
#include "krn_request.h"
#include "krn_llama.h"
#include "krn_ranker.h"

/* Models a device serves at once. */
#define KRN_MODELS_MAX 8u

enum krn_arch {
	KRN_ARCH_NONE = 0,
	KRN_ARCH_ECHO,   /* diagnostic: answers `tokens` with the token ids it received */
	KRN_ARCH_LLAMA,  /* decoder: ops generate (default), logits */
	KRN_ARCH_RANKER, /* embedding bag + MLP: op score (default) */
};

struct krn_model {
	char name[ZH_MODEL_NAME_MAX + 1]; /* NUL-terminated, as matched against the request's `model` */
	enum krn_arch arch;
	uint16_t id;                      /* < ZH_MODEL_IDS_MAX, stable per name: counters are kept by it */
	uint64_t host_cookie;             /* the host's handle on the model's memory; the device ignores it */
	union {
		struct krn_llama llama;   /* KRN_ARCH_LLAMA */
		struct krn_ranker ranker; /* KRN_ARCH_RANKER */
	} u;
};

/* The models table the loop reads. Written by the host only while the loop is stopped. */
struct krn_models {
	uint32_t count;         /* 0..KRN_MODELS_MAX */
	uint32_t default_idx;   /* the model a request without `model` gets */
	struct krn_model models[KRN_MODELS_MAX];
};

enum krn_stop {
	KRN_STOP_MAX_NEW = 0,
	KRN_STOP_EOS,
	KRN_STOP_BOS,
	KRN_STOP_CONTEXT,
};

/* One request in flight on one consumer: what prepare decided and what run produced. */
struct krn_job {
	enum zh_status status;
	const char *error;                 /* static text, "" when ok */
	const struct krn_model *model;     /* NULL unless status is ok */
	enum zh_op op;                     /* resolved (never ZH_OP_NONE) */
	uint32_t max_new;                  /* generate */
	uint32_t top_k;                    /* logits */
	uint32_t out_count;                /* ids in out_ids / values in out_vals */
	uint32_t out_ids[ZH_GENERATE_MAX]; /* generated ids, or top-k ids */
	float out_vals[ZH_TOP_K_MAX];      /* top-k logits, or scores (ZH_SCORES_MAX <= ZH_TOP_K_MAX) */
	enum krn_stop stop;                /* why generate stopped */
	uint32_t next_token;               /* generate: chosen by thread 0, read by all after a barrier */
	uint32_t done;                     /* generate: set by thread 0 when the loop ends */
	uint64_t rng_state;                /* generate with temperature: xorshift64* state */
};

ZH_STATIC_ASSERT(ZH_SCORES_MAX <= ZH_TOP_K_MAX, "scores share out_vals with top-k logits");

/* Per-consumer scratch (one per cpu worker, one per CUDA block), allocated at start-up. */
struct krn_scratch {
	struct krn_request req;
	struct krn_job job;
	float *model_state;           /* run state of the models: KV cache and activations */
	uint64_t model_state_floats;  /* at least the largest krn_*_state_floats of the loaded models */
	uint64_t test_delay_dclk;     /* test-only: device clock ticks to add to each compute (0: none) */
	uint64_t (*test_dclk_now)(void); /* test-only, cpu device: the clock claim/done are stamped with
					  * instead of the TSC (NULL: zh_dclk_now); never called on a GPU */
};

ZH_HD void krn_serve_prepare(const struct krn_models *models, const uint8_t *req_bytes,
			     uint32_t req_size_bytes, struct krn_scratch *scratch);
ZH_HD void krn_serve_run(struct krn_scratch *scratch, uint32_t thread_idx, uint32_t thread_count);
/* Writes the answer to `ans` (ans_cap_bytes >= ZH_ANS_MAX_BYTES) and returns its size; *status gets
 * its status. With a slot, stamps done_dclk and adds the slot's timestamps when the request asked for
 * `trace`. */
ZH_HD uint32_t krn_serve_encode(struct krn_scratch *scratch, uint8_t *ans, uint32_t ans_cap_bytes,
				struct zh_slot *slot, uint16_t *status);

/* What a consumer stores in slot->ans_status after krn_serve_encode with a slot: the status, with
 * ZH_ANS_F_NIC_RX_TAIL when the answer ends with the trace's NIC rx placeholder for the reaper. */
ZH_HD uint16_t krn_serve_slot_status(const struct krn_scratch *scratch, uint16_t status);

/* All three phases on one thread. `slot` may be NULL (tests). */
ZH_HD uint32_t krn_serve_request(const struct krn_models *models, const uint8_t *req_bytes,
				 uint32_t req_size_bytes, uint8_t *ans, uint32_t ans_cap_bytes,
				 struct krn_scratch *scratch, struct zh_slot *slot, uint16_t *status);

/*
 * One step of the persistent loop on one thread: claim one slot if any is READY, serve it and publish
 * DONE. Returns 1 if a request was served, 0 if the ring was empty.
 */
ZH_HD int krn_loop_step(const struct zh_ring *ring, const struct krn_models *models,
			struct krn_scratch *scratch);

/* Name of a krn_stop, as in answers. */
ZH_HD const char *krn_stop_name(enum krn_stop stop);

#endif /* KRN_SERVE_H */
