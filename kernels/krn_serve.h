/* SPDX-License-Identifier: MIT */
/*
 * krn_serve.h: the persistent device loop's body, shared by the cpu device (worker threads) and the
 * CUDA kernel: claim a READY slot, decode its request, run the model it names, encode the answer into
 * the slot's answer buffer, publish DONE. Host/device-neutral.
 */
#ifndef KRN_SERVE_H
#define KRN_SERVE_H

#include "zh_defs.h"
#include "zh_proto.h"
#include "zh_ring.h"
#include "krn_request.h"

/* Models a device serves at once. */
#define KRN_MODELS_MAX 8u

enum krn_arch {
	KRN_ARCH_NONE = 0,
	KRN_ARCH_ECHO, /* diagnostic: answers `tokens` with the token ids it received */
};

struct krn_model {
	char name[ZH_MODEL_NAME_MAX + 1]; /* NUL-terminated, as matched against the request's `model` */
	enum krn_arch arch;
};

/* The models table the loop reads. Written by the host only while the loop is stopped. */
struct krn_models {
	uint32_t count;         /* 0..KRN_MODELS_MAX */
	uint32_t default_idx;   /* the model a request without `model` gets */
	struct krn_model models[KRN_MODELS_MAX];
};

/* Per-consumer scratch (one per cpu worker, one per CUDA block), allocated at start-up. */
struct krn_scratch {
	struct krn_request req;
};

/*
 * Decode, run and encode one request. Writes the answer to `ans` (at most ans_cap_bytes, which must be
 * at least ZH_ANS_MAX_BYTES) and returns its size; *status receives the answer's status. If `slot` is
 * not NULL its done_dclk is stamped when the work is done, and its timestamps are written into the
 * answer when the request asks for `trace`.
 */
ZH_HD uint32_t krn_serve_request(const struct krn_models *models, const uint8_t *req_bytes,
				 uint32_t req_size_bytes, uint8_t *ans, uint32_t ans_cap_bytes,
				 struct krn_scratch *scratch, struct zh_slot *slot, uint16_t *status);

/*
 * One step of the persistent loop: claim one slot if any is READY, serve it and publish DONE.
 * Returns 1 if a request was served, 0 if the ring was empty.
 */
ZH_HD int krn_loop_step(const struct zh_ring *ring, const struct krn_models *models,
			struct krn_scratch *scratch);

#endif /* KRN_SERVE_H */
