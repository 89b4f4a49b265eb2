/* SPDX-License-Identifier: MIT */
/*
 * zh_proto.h: wire protocol v1 (docs/PROTOCOL.md): status codes, bounds and operations shared by
 * the dataplane, the device loop, the tools and the tests. Every size a peer can influence has a
 * bound here, checked before anything is allocated, copied or decoded.
 */
#ifndef ZH_PROTO_H
#define ZH_PROTO_H

#include "zh_defs.h"

#define ZH_PROTO_VERSION 1

/* One request is one UDP datagram that fits a 1500-byte MTU without IP fragmentation. */
#define ZH_REQ_MAX_BYTES 1472u
/* The answer is one datagram under the same MTU. */
#define ZH_ANS_MAX_BYTES 1472u
/* Token ids per request. 256 ids of at most 5 msgpack bytes each fit ZH_REQ_MAX_BYTES. */
#define ZH_TOKENS_MAX 256u
/* Dense float features per request (float32 is 5 msgpack bytes). */
#define ZH_DENSE_MAX 128u
/* Model names, as in `model`, without a terminating NUL. */
#define ZH_MODEL_NAME_MAX 31u
/* Keys in the request map; more is too large (the protocol defines 10). */
#define ZH_REQ_KEYS_MAX 32u
/* Stable ids the management plane gives model names (for per-model counters); NONE: no model. */
#define ZH_MODEL_IDS_MAX 64u
#define ZH_MODEL_ID_NONE 0xffffu

/* New tokens one `generate` may ask for (`max_new`), and its default. 256 ids fit an answer. */
#define ZH_GENERATE_MAX 256u
#define ZH_GENERATE_DEFAULT 16u
/* Ids returned by `logits` (`top_k`), and the default. */
#define ZH_TOP_K_MAX 64u
#define ZH_TOP_K_DEFAULT 5u
/* Scores one `score` answer carries (the ranker's outputs). */
#define ZH_SCORES_MAX 64u
/* Length of the short `error` text in answers. */
#define ZH_ERROR_TEXT_MAX 48u

ZH_STATIC_ASSERT(ZH_TOKENS_MAX * 5u + 64u <= ZH_REQ_MAX_BYTES, "a full token array fits a request");
ZH_STATIC_ASSERT(ZH_TOKENS_MAX * 5u + 128u <= ZH_ANS_MAX_BYTES, "an echo answer fits a datagram");
ZH_STATIC_ASSERT(ZH_GENERATE_MAX * 5u + 192u <= ZH_ANS_MAX_BYTES, "a generate answer fits a datagram");
ZH_STATIC_ASSERT(ZH_TOP_K_MAX * 10u + 192u <= ZH_ANS_MAX_BYTES, "a logits answer fits a datagram");

/* Stable status codes (never renumber; add at the end). */
#define ZH_STATUS_LIST(X)                                              \
	X(OK, 0, "ok")                                                 \
	X(BAD_REQUEST, 1, "bad_request")                               \
	X(UNKNOWN_MODEL, 2, "unknown_model")                           \
	X(BUSY, 3, "busy")                                             \
	X(TOO_LARGE, 4, "too_large")                                   \
	X(UNAUTHORIZED, 5, "unauthorized")                             \
	X(DRAINING, 6, "draining")                                     \
	X(INTERNAL, 7, "internal")

enum zh_status {
#define ZH_X(name, code, text) ZH_STATUS_##name = code,
	ZH_STATUS_LIST(ZH_X)
#undef ZH_X
	ZH_STATUS_COUNT
};

/* Operations named by the request's `op`. */
enum zh_op {
	ZH_OP_NONE = 0, /* `op` absent: the model's default operation */
	ZH_OP_SCORE,
	ZH_OP_LOGITS,
	ZH_OP_GENERATE,
	ZH_OP_ECHO,
};

#endif /* ZH_PROTO_H */
