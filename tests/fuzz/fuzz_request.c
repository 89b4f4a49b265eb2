/* SPDX-License-Identifier: MIT */
/*
 * fuzz_request.c: libFuzzer target for the device's whole request path, krn_serve_request (decode,
 * the echo model, encode), on any bytes a datagram could carry.
 *
 * The input is copied into a malloc'ed buffer of exactly its size and the answer buffer is exactly
 * ZH_ANS_MAX_BYTES, so ASan reports a read past the request or a write past the answer. Every answer
 * must be 1..ZH_ANS_MAX_BYTES bytes of one well-formed msgpack map, per krn_mp_skip and then (guarded by
 * it) per msgpack-c, carrying `id` (uint or nil) and `status` (the status krn_serve_request returned),
 * `error` exactly when the status is not ok, and the request's tokens when it is.
 *
 * Build and run: make fuzzers && build-fuzz/fuzz_request CORPUS_DIR (see the Makefile's fuzz targets).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "krn_msgpack.h"
#include "krn_request.h"
#include "krn_serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed check is a crash, so that libFuzzer saves the input that caused it. */
#define FUZZ_CHECK(cond)                                                                    \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                            \
		}                                                                           \
	} while (0)

static const struct krn_models models = {
	.count = 1,
	.default_idx = 0,
	.models = { { .name = "echo", .arch = KRN_ARCH_ECHO } },
};

/* Static like the device's per-consumer scratch: allocated once, reused for every request. */
static struct krn_scratch scratch;

/* What the answer said, as read by krn_mp. */
struct answer_keys {
	int has_id, id_is_nil, has_status, has_error, has_tokens;
	uint64_t id, status;
};

/* The echo answer's tokens must be the request's, in order. */
static void check_tokens(struct krn_mp_reader *r, const struct krn_request *req)
{
	struct krn_mp_value v;

	FUZZ_CHECK(krn_mp_read(r, &v) == 0 && v.type == KRN_MP_ARRAY && v.size == req->token_count);
	for (uint32_t k = 0; k < req->token_count; k++)
		FUZZ_CHECK(krn_mp_read(r, &v) == 0 && v.type == KRN_MP_UINT && v.v.u == req->tokens[k]);
}

/* Walk the answer map with krn_mp; every key must be a string, the four it knows at most once each. */
static void read_answer(const uint8_t *ans, uint32_t size, const struct krn_request *req,
			struct answer_keys *a)
{
	struct krn_mp_reader r;
	struct krn_mp_value v, key;

	krn_mp_reader_init(&r, ans, size);
	FUZZ_CHECK(krn_mp_skip(&r) == 0 && krn_mp_reader_left(&r) == 0);
	krn_mp_reader_init(&r, ans, size);
	FUZZ_CHECK(krn_mp_read(&r, &v) == 0 && v.type == KRN_MP_MAP);
	uint32_t pairs = v.size;
	for (uint32_t k = 0; k < pairs; k++) {
		FUZZ_CHECK(krn_mp_read(&r, &key) == 0 && key.type == KRN_MP_STR);
		if (krn_mp_str_eq(&key, "id")) {
			FUZZ_CHECK(!a->has_id && krn_mp_read(&r, &v) == 0);
			FUZZ_CHECK(v.type == KRN_MP_UINT || v.type == KRN_MP_NIL);
			a->has_id = 1;
			a->id_is_nil = v.type == KRN_MP_NIL;
			a->id = v.type == KRN_MP_UINT ? v.v.u : 0;
		} else if (krn_mp_str_eq(&key, "status")) {
			FUZZ_CHECK(!a->has_status && krn_mp_read(&r, &v) == 0 && v.type == KRN_MP_UINT);
			a->has_status = 1;
			a->status = v.v.u;
		} else if (krn_mp_str_eq(&key, "error")) {
			FUZZ_CHECK(!a->has_error && krn_mp_read(&r, &v) == 0 && v.type == KRN_MP_STR);
			FUZZ_CHECK(v.size > 0 && v.size <= ZH_ERROR_TEXT_MAX);
			a->has_error = 1;
		} else if (krn_mp_str_eq(&key, "tokens")) {
			FUZZ_CHECK(!a->has_tokens);
			a->has_tokens = 1;
			check_tokens(&r, req);
		} else {
			/* `trace` and whatever a model adds: well-formed, and not ours to judge. */
			FUZZ_CHECK(krn_mp_skip(&r) == 0);
		}
	}
}

/* The same answer through msgpack-c, now that krn_mp_skip has vouched for its container counts. */
static void check_with_msgpack_c(const uint8_t *ans, uint32_t size, const struct answer_keys *a)
{
	msgpack_unpacked u;
	size_t off = 0;
	int seen = 0;

	msgpack_unpacked_init(&u);
	FUZZ_CHECK(msgpack_unpack_next(&u, (const char *)ans, size, &off) == MSGPACK_UNPACK_SUCCESS);
	FUZZ_CHECK(off == size && u.data.type == MSGPACK_OBJECT_MAP);
	for (uint32_t k = 0; k < u.data.via.map.size; k++) {
		const msgpack_object_kv *kv = &u.data.via.map.ptr[k];

		FUZZ_CHECK(kv->key.type == MSGPACK_OBJECT_STR);
		if (kv->key.via.str.size == 2 && memcmp(kv->key.via.str.ptr, "id", 2) == 0) {
			if (a->id_is_nil)
				FUZZ_CHECK(kv->val.type == MSGPACK_OBJECT_NIL);
			else
				FUZZ_CHECK(kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
					   kv->val.via.u64 == a->id);
			seen |= 1;
		} else if (kv->key.via.str.size == 6 && memcmp(kv->key.via.str.ptr, "status", 6) == 0) {
			FUZZ_CHECK(kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
				   kv->val.via.u64 == a->status);
			seen |= 2;
		}
	}
	FUZZ_CHECK(seen == 3);
	msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zh_slot slot = { .rx_tsc = 1, .publish_tsc = 2, .claim_dclk = 3 };
	struct answer_keys a = { 0 };
	uint16_t status = UINT16_MAX;

	if (size > UINT32_MAX)
		return 0;
	/* Exactly the input's size (one byte for an empty input: a reader needs a real base). */
	uint8_t *req = malloc(size ? size : 1);
	uint8_t *ans = malloc(ZH_ANS_MAX_BYTES);
	FUZZ_CHECK(req && ans);
	memcpy(req, data, size);

	uint32_t n = krn_serve_request(&models, req, (uint32_t)size, ans, ZH_ANS_MAX_BYTES, &scratch, &slot,
				       &status);
	FUZZ_CHECK(n >= 1 && n <= ZH_ANS_MAX_BYTES);
	FUZZ_CHECK(status < ZH_STATUS_COUNT);
	read_answer(ans, n, &scratch.req, &a);
	FUZZ_CHECK(a.has_id && a.has_status && a.status == status);
	FUZZ_CHECK(a.has_error == (status != ZH_STATUS_OK));
	FUZZ_CHECK(a.has_tokens == (status == ZH_STATUS_OK));
	if (status == ZH_STATUS_OK)
		FUZZ_CHECK(!a.id_is_nil && a.id == scratch.req.id);
	/* An answer that names a request names the one that was sent. */
	FUZZ_CHECK(a.id_is_nil == !(scratch.req.present_mask & KRN_REQ_HAS_ID));
	check_with_msgpack_c(ans, n, &a);

	free(ans);
	free(req);
	return 0;
}
