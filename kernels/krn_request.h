/* SPDX-License-Identifier: MIT */
/*
 * krn_request.h: protocol v1 request decoding and answer encoding (docs/PROTOCOL.md), on the device
 * side. Host/device-neutral; built on krn_msgpack.
 */
#ifndef KRN_REQUEST_H
#define KRN_REQUEST_H

#include "zh_defs.h"
#include "zh_proto.h"

/* Bits of krn_request.present_mask: which optional keys the request carried. */
#define KRN_REQ_HAS_ID (1u << 0)
#define KRN_REQ_HAS_MODEL (1u << 1)
#define KRN_REQ_HAS_OP (1u << 2)
#define KRN_REQ_HAS_TOKENS (1u << 3)
#define KRN_REQ_HAS_DENSE (1u << 4)
#define KRN_REQ_HAS_MAX_NEW (1u << 5)
#define KRN_REQ_HAS_TOP_K (1u << 6)
#define KRN_REQ_HAS_TEMPERATURE (1u << 7)
#define KRN_REQ_HAS_SEED (1u << 8)
#define KRN_REQ_HAS_TRACE (1u << 9)

struct krn_request {
	uint64_t id;                       /* echoed in the answer */
	uint32_t present_mask;             /* KRN_REQ_HAS_* */
	enum zh_op op;
	uint32_t model_name_len;           /* bytes in model_name, 0..ZH_MODEL_NAME_MAX */
	char model_name[ZH_MODEL_NAME_MAX + 1]; /* NUL-terminated copy */
	uint32_t token_count;              /* 0..ZH_TOKENS_MAX */
	uint32_t dense_count;              /* 0..ZH_DENSE_MAX */
	uint32_t max_new;                  /* new tokens for `generate` */
	uint32_t top_k;                    /* ids returned by `logits` */
	float temperature;                 /* 0 = greedy */
	uint32_t trace;                    /* 1 if the answer should carry stage timestamps */
	uint64_t seed;                     /* sampling seed */
	uint32_t tokens[ZH_TOKENS_MAX];    /* token ids */
	float dense[ZH_DENSE_MAX];         /* dense features */
};

/*
 * Decode one datagram payload. Returns ZH_STATUS_OK, or the status to answer with and a short static
 * error text in *error. Even on error, req->id and KRN_REQ_HAS_ID are set when the id could be found,
 * so that the error answer can name the request it refuses.
 */
ZH_HD enum zh_status krn_request_decode(const uint8_t *buf, uint32_t size_bytes, struct krn_request *req,
					const char **error);

struct krn_mp_writer;

/*
 * Start an answer map: {id, status, error?} followed by `extra_entries` key/value pairs that the
 * caller writes next (the model's results, the trace). `has_id` selects between the id and nil;
 * an empty or NULL error adds no `error` key.
 */
ZH_HD void krn_answer_head(struct krn_mp_writer *w, uint32_t extra_entries, int has_id, uint64_t id,
			   enum zh_status status, const char *error);

/* The smallest answer, status and error only; it needs at most ZH_ERROR_ANS_MAX_BYTES.
 * Returns the answer size in bytes, or 0 if cap_bytes is smaller than that. */
#define ZH_ERROR_ANS_MAX_BYTES (1 + 3 + 9 + 7 + 1 + 6 + 2 + ZH_ERROR_TEXT_MAX)
ZH_HD uint32_t krn_answer_encode_error(uint8_t *buf, uint32_t cap_bytes, int has_id, uint64_t id,
				       enum zh_status status, const char *error);

#endif /* KRN_REQUEST_H */
