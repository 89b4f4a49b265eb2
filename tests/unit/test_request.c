/* SPDX-License-Identifier: MIT */
/*
 * test_request.c: the bounded msgpack reader and writer (kernels/krn_msgpack.h), the protocol v1
 * request decoder and the answer encoder (kernels/krn_request.h, kernels/krn_serve.h), checked against
 * msgpack-c, an independent implementation: what msgpack-c packs we must decode to the same values,
 * and what we write msgpack-c must read back, byte for byte as it would have written it.
 *
 * Every buffer handed to the code under test is copied into an allocation of exactly its size, so
 * that a read one byte past the end is an ASan error in the sanitized build instead of a silent pass.
 *
 * Exit status: 0 all checks passed, 1 a check failed.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "zh_proto.h"
#include "krn_msgpack.h"
#include "krn_request.h"
#include "krn_serve.h"

#define TEST_NAME "test_request"

/* ---- checks ---------------------------------------------------------------------------------- */

#include "zh_check.h"

#define CHECK_I64(a, b)                                                                          \
	do {                                                                                     \
		int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                    \
		if (a_ == b_)                                                                    \
			checks_passed++;                                                         \
		else                                                                             \
			check_failed(__FILE__, __LINE__, "%s == %s: %" PRId64 " != %" PRId64, #a, #b, \
				     a_, b_);                                                    \
	} while (0)

#define CHECK_STR(a, b)                                                                          \
	do {                                                                                     \
		const char *a_ = (a), *b_ = (b);                                                 \
		if (a_ && b_ && strcmp(a_, b_) == 0)                                             \
			checks_passed++;                                                         \
		else                                                                             \
			check_failed(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,      \
				     a_ ? a_ : "(null)", b_ ? b_ : "(null)");                    \
	} while (0)


/* ---- helpers --------------------------------------------------------------------------------- */

/* xorshift64*: small, seeded, the same sequence on every run. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rng_below(uint32_t n)
{
	return (uint32_t)(rng_next() % n);
}

/* A value of 0..bits significant bits, so that every integer encoding width comes up. */
static uint64_t rng_bits(uint32_t bits)
{
	return bits == 0 ? 0 : rng_next() >> (64 - bits);
}

/* A copy in an allocation of exactly n bytes: reading past it is an ASan error. */
static uint8_t *dup_exact(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (!q) {
		fprintf(stderr, "%s: out of memory\n", TEST_NAME);
		exit(1);
	}
	if (n)
		memcpy(q, p, n);
	return q;
}

/* A msgpack-c packer writing into a growing buffer. */
struct mpc {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void mpc_init(struct mpc *m)
{
	msgpack_sbuffer_init(&m->sb);
	msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mpc_reset(struct mpc *m)
{
	msgpack_sbuffer_clear(&m->sb);
}

static void mpc_destroy(struct mpc *m)
{
	msgpack_sbuffer_destroy(&m->sb);
}

static void mpc_cstr(struct mpc *m, const char *s)
{
	msgpack_pack_str_with_body(&m->pk, s, strlen(s));
}

/* Append bytes as they are, to splice hand-made (possibly malformed) msgpack into a request. */
static void mpc_raw(struct mpc *m, const void *p, size_t n)
{
	msgpack_sbuffer_write(&m->sb, p, n);
}

static const uint8_t *mpc_data(const struct mpc *m)
{
	return (const uint8_t *)m->sb.data;
}

/* Decode a request from an exact-size copy. */
static enum zh_status decode_exact(const uint8_t *bytes, size_t n, struct krn_request *req, const char **error)
{
	uint8_t *copy = dup_exact(bytes, n);
	enum zh_status st;

	/* Garbage first: the decoder must reset every field it reports, not rely on zeroed memory. */
	memset(req, 0xa5, sizeof(*req));
	*error = NULL;
	st = krn_request_decode(copy, (uint32_t)n, req, error);
	free(copy);
	return st;
}

/* ---- answers read back with msgpack-c -------------------------------------------------------- */

struct mpc_answer {
	int id_nil;             /* `id` was nil */
	uint64_t id;
	uint64_t status;
	int has_error;
	char error[ZH_ERROR_TEXT_MAX + 16];
	uint32_t error_len;
	int has_tokens;
	uint32_t token_count;
	uint64_t tokens[ZH_TOKENS_MAX];
	int has_trace;
	uint64_t trace[5];
	uint32_t entries;
};

static int mpc_answer_value(const msgpack_object_kv *kv, struct mpc_answer *a, uint32_t *seen)
{
	const msgpack_object_str *k = &kv->key.via.str;
	const msgpack_object *v = &kv->val;
	static const char *const keys[] = { "id", "status", "error", "tokens", "trace" };
	uint32_t key = 0;

	while (key < ZH_ARRAY_SIZE(keys) && !(k->size == strlen(keys[key]) &&
					     memcmp(k->ptr, keys[key], k->size) == 0))
		key++;
	if (key == ZH_ARRAY_SIZE(keys) || (*seen & (1u << key)))
		return -1; /* only our keys, each once */
	*seen |= 1u << key;
	switch (key) {
	case 0:
		a->id_nil = v->type == MSGPACK_OBJECT_NIL;
		a->id = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
		return a->id_nil || v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? 0 : -1;
	case 1:
		a->status = v->via.u64;
		return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? 0 : -1;
	case 2:
		if (v->type != MSGPACK_OBJECT_STR || v->via.str.size >= sizeof(a->error))
			return -1;
		a->has_error = 1;
		a->error_len = v->via.str.size;
		memcpy(a->error, v->via.str.ptr, v->via.str.size);
		a->error[v->via.str.size] = '\0';
		return 0;
	case 3:
		if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > ZH_TOKENS_MAX)
			return -1;
		a->has_tokens = 1;
		a->token_count = v->via.array.size;
		for (uint32_t i = 0; i < v->via.array.size; i++) {
			if (v->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
				return -1;
			a->tokens[i] = v->via.array.ptr[i].via.u64;
		}
		return 0;
	default:
		if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 5)
			return -1;
		a->has_trace = 1;
		for (uint32_t i = 0; i < 5; i++)
			a->trace[i] = v->via.array.ptr[i].via.u64;
		return 0;
	}
}

/* Returns 0 when the bytes are exactly one map with our keys, including id and status. */
static int mpc_parse_answer(const uint8_t *buf, size_t n, struct mpc_answer *a)
{
	msgpack_unpacked u;
	size_t off = 0;
	uint32_t seen = 0;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, (const char *)buf, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n ||
	    u.data.type != MSGPACK_OBJECT_MAP)
		goto out;
	a->entries = u.data.via.map.size;
	for (uint32_t i = 0; i < u.data.via.map.size; i++) {
		const msgpack_object_kv *kv = &u.data.via.map.ptr[i];

		if (kv->key.type != MSGPACK_OBJECT_STR || mpc_answer_value(kv, a, &seen))
			goto out;
	}
	rc = (seen & 3u) == 3u ? 0 : -1;
out:
	msgpack_unpacked_destroy(&u);
	return rc;
}

/* ---- the reader against msgpack-c ------------------------------------------------------------ */

/* Compare what krn_mp_read made of one value with msgpack-c's object for it. */
static int same_value(const struct krn_mp_value *v, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return v->type == KRN_MP_NIL;
	case MSGPACK_OBJECT_BOOLEAN:
		return v->type == KRN_MP_BOOL && !v->v.boolean == !o->via.boolean;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return v->type == KRN_MP_UINT && v->v.u == o->via.u64;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return v->type == KRN_MP_INT && v->v.i == o->via.i64;
	case MSGPACK_OBJECT_FLOAT32:
		return v->type == KRN_MP_FLOAT32 &&
		       (v->v.f32 == (float)o->via.f64 || (isnan(v->v.f32) && isnan(o->via.f64))) &&
		       !signbit(v->v.f32) == !signbit(o->via.f64);
	case MSGPACK_OBJECT_FLOAT64:
		return v->type == KRN_MP_FLOAT64 && memcmp(&v->v.f64, &o->via.f64, sizeof(double)) == 0;
	case MSGPACK_OBJECT_STR:
		return v->type == KRN_MP_STR && v->size == o->via.str.size &&
		       (v->size == 0 || memcmp(v->data, o->via.str.ptr, v->size) == 0);
	case MSGPACK_OBJECT_BIN:
		return v->type == KRN_MP_BIN && v->size == o->via.bin.size &&
		       (v->size == 0 || memcmp(v->data, o->via.bin.ptr, v->size) == 0);
	case MSGPACK_OBJECT_EXT:
		return v->type == KRN_MP_EXT && v->ext_type == o->via.ext.type && v->size == o->via.ext.size &&
		       (v->size == 0 || memcmp(v->data, o->via.ext.ptr, v->size) == 0);
	case MSGPACK_OBJECT_ARRAY:
		return v->type == KRN_MP_ARRAY && v->size == o->via.array.size;
	case MSGPACK_OBJECT_MAP:
		return v->type == KRN_MP_MAP && v->size == o->via.map.size;
	default:
		return 0;
	}
}

/* Values up to this size are also checked cut short at every length. */
#define PREFIX_CHECK_MAX_BYTES 300u

/*
 * One complete msgpack value: msgpack-c and krn_mp_read must agree on it, krn_mp_skip must consume
 * exactly its bytes, and every shorter prefix must be incomplete for both.
 */
static void reader_agrees(int line, const uint8_t *bytes, size_t n)
{
	uint8_t *buf = dup_exact(bytes, n);
	msgpack_unpacked u;
	size_t off = 0;
	struct krn_mp_reader r;
	struct krn_mp_value v;

	msgpack_unpacked_init(&u);
	CHECK_AT(line, msgpack_unpack_next(&u, (const char *)buf, n, &off) == MSGPACK_UNPACK_SUCCESS);
	CHECK_U64_AT(line, off, n);
	krn_mp_reader_init(&r, buf, (uint32_t)n);
	CHECK_AT(line, krn_mp_read(&r, &v) == KRN_MP_OK);
	CHECK_AT(line, same_value(&v, &u.data));
	/* A scalar's header is the whole value; a container's elements follow its header. */
	if (v.type != KRN_MP_ARRAY && v.type != KRN_MP_MAP)
		CHECK_U64_AT(line, krn_mp_reader_left(&r), 0);
	krn_mp_reader_init(&r, buf, (uint32_t)n);
	CHECK_AT(line, krn_mp_skip(&r) == KRN_MP_OK);
	CHECK_U64_AT(line, krn_mp_reader_left(&r), 0);
	msgpack_unpacked_destroy(&u);
	free(buf);

	/* One byte more: skip stops at the end of the value. */
	buf = malloc(n + 1);
	if (buf) {
		memcpy(buf, bytes, n);
		buf[n] = 0xc0;
		krn_mp_reader_init(&r, buf, (uint32_t)n + 1);
		CHECK_AT(line, krn_mp_skip(&r) == KRN_MP_OK && krn_mp_reader_left(&r) == 1);
		free(buf);
	}

	/* Cut short: an error from us, "need more" from msgpack-c, never a value. Long values are cut
	 * just after the header and one byte before the end, which covers each length check. */
	for (size_t cut = 0; cut < n; cut++) {
		if (n > PREFIX_CHECK_MAX_BYTES && cut > 9 && cut != n - 1)
			continue;
		uint8_t *prefix = dup_exact(bytes, cut);
		int rc;

		krn_mp_reader_init(&r, prefix, (uint32_t)cut);
		rc = krn_mp_skip(&r);
		CHECK_AT(line, rc == KRN_MP_E_TRUNCATED || rc == KRN_MP_E_TOO_LARGE);
		off = 0;
		msgpack_unpacked_init(&u);
		CHECK_AT(line, msgpack_unpack_next(&u, (const char *)prefix, cut, &off) == MSGPACK_UNPACK_CONTINUE);
		msgpack_unpacked_destroy(&u);
		free(prefix);
	}
}

/* Hand-made encodings: msgpack-c's packer always picks the shortest, the reader must take any. */
struct raw {
	uint8_t b[400000]; /* a map16 of 65535 mixed pairs is about 340 KB */
	size_t n;
};

static void raw_byte(struct raw *r, uint8_t b)
{
	r->b[r->n++] = b;
}

static void raw_be(struct raw *r, uint64_t v, uint32_t width)
{
	for (uint32_t i = 0; i < width; i++)
		raw_byte(r, (uint8_t)(v >> (8 * (width - 1 - i))));
}

static void raw_fill(struct raw *r, size_t len)
{
	for (size_t i = 0; i < len; i++)
		raw_byte(r, (uint8_t)(i * 31 + 7));
}

/* A header with an explicit marker and field width, then `len` payload bytes. */
static struct raw *raw_make(struct raw *r, uint8_t marker, uint64_t field, uint32_t width, size_t len)
{
	r->n = 0;
	raw_byte(r, marker);
	raw_be(r, field, width);
	raw_fill(r, len);
	return r;
}

#define READER_AGREES(r) reader_agrees(__LINE__, (r)->b, (r)->n)

static void test_reader_scalars(void)
{
	static struct raw r;

	/* Integers in every encoding, including non-negative values in signed encodings. */
	static const uint8_t fixints[] = { 0x00, 0x01, 0x7f, 0xff, 0xe0, 0xf0 };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(fixints); i++)
		READER_AGREES(raw_make(&r, fixints[i], 0, 0, 0));
	static const struct {
		uint8_t marker;
		uint32_t width;
		uint64_t value;
	} ints[] = {
		{ 0xcc, 1, 0 }, { 0xcc, 1, 0xff }, { 0xcd, 2, 5 }, { 0xcd, 2, 0xffff },
		{ 0xce, 4, 0x12345678 }, { 0xce, 4, 0xffffffff }, { 0xcf, 8, 0 }, { 0xcf, 8, UINT64_MAX },
		{ 0xd0, 1, 0x80 }, { 0xd0, 1, 0x7f }, { 0xd0, 1, 0xff }, { 0xd1, 2, 0x8000 },
		{ 0xd1, 2, 0x0005 }, { 0xd2, 4, 0x80000000 }, { 0xd2, 4, 0xfffffffe },
		{ 0xd2, 4, 0x7fffffff }, { 0xd3, 8, 0x8000000000000000ull }, { 0xd3, 8, UINT64_MAX },
		{ 0xd3, 8, 0x7fffffffffffffffull }, { 0xd3, 8, 42 },
	};
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(ints); i++)
		READER_AGREES(raw_make(&r, ints[i].marker, ints[i].value, ints[i].width, 0));

	READER_AGREES(raw_make(&r, 0xc0, 0, 0, 0));
	READER_AGREES(raw_make(&r, 0xc2, 0, 0, 0));
	READER_AGREES(raw_make(&r, 0xc3, 0, 0, 0));

	static const uint32_t f32_bits[] = { 0x3fc00000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
					     0x00000001, 0x7f7fffff };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(f32_bits); i++)
		READER_AGREES(raw_make(&r, 0xca, f32_bits[i], 4, 0));
	static const uint64_t f64_bits[] = { 0x400921fb54442d18ull, 0x8000000000000000ull, 0x7ff0000000000000ull,
					     0x7ff8000000000000ull, 0x0000000000000001ull, 0x7e37e43c8800759cull };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(f64_bits); i++)
		READER_AGREES(raw_make(&r, 0xcb, f64_bits[i], 8, 0));
}

static void test_reader_bytes(void)
{
	static struct raw r;
	static const uint32_t fix_lens[] = { 0, 1, 31 };
	static const uint32_t lens[] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 70000 };

	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(fix_lens); i++)
		READER_AGREES(raw_make(&r, (uint8_t)(0xa0 | fix_lens[i]), 0, 0, fix_lens[i]));
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(lens); i++) {
		uint32_t len = lens[i];

		/* Every width that can hold the length, shortest or not, for str and bin. */
		if (len <= 0xff) {
			READER_AGREES(raw_make(&r, 0xd9, len, 1, len));
			READER_AGREES(raw_make(&r, 0xc4, len, 1, len));
		}
		if (len <= 0xffff) {
			READER_AGREES(raw_make(&r, 0xda, len, 2, len));
			READER_AGREES(raw_make(&r, 0xc5, len, 2, len));
		}
		READER_AGREES(raw_make(&r, 0xdb, len, 4, len));
		READER_AGREES(raw_make(&r, 0xc6, len, 4, len));
	}

	/* fixext 1..16 and ext 8/16/32, with a negative and a positive type. */
	static const int8_t types[] = { -1, 5 };
	for (uint32_t t = 0; t < ZH_ARRAY_SIZE(types); t++) {
		for (uint32_t k = 0; k < 5; k++)
			READER_AGREES(raw_make(&r, (uint8_t)(0xd4 + k), (uint8_t)types[t], 1, 1u << k));
		static const uint32_t ext_lens[] = { 0, 3, 255, 256, 65535, 65536 };
		for (uint32_t i = 0; i < ZH_ARRAY_SIZE(ext_lens); i++) {
			uint32_t len = ext_lens[i];

			if (len <= 0xff)
				READER_AGREES(raw_make(&r, 0xc7, ((uint64_t)len << 8) | (uint8_t)types[t], 2, len));
			if (len <= 0xffff)
				READER_AGREES(raw_make(&r, 0xc8, ((uint64_t)len << 8) | (uint8_t)types[t], 3, len));
			READER_AGREES(raw_make(&r, 0xc9, ((uint64_t)len << 8) | (uint8_t)types[t], 5, len));
		}
	}
}

/* Container elements of mixed kinds, some nested, so that skip walks real structure. */
static void raw_elements(struct raw *r, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		switch (i % 5) {
		case 0: raw_byte(r, (uint8_t)(i & 0x7f)); break;
		case 1: raw_byte(r, 0xa2); raw_byte(r, 'a'); raw_byte(r, 'b'); break;
		case 2: raw_byte(r, 0x91); raw_byte(r, 0xc0); break;
		case 3: raw_byte(r, 0x81); raw_byte(r, 0xa1); raw_byte(r, 'k'); raw_byte(r, 0xc3); break;
		default: raw_byte(r, 0xcd); raw_be(r, i, 2); break;
		}
	}
}

static void test_reader_containers(void)
{
	static struct raw r;
	static const uint32_t counts[] = { 0, 1, 15, 16, 255, 256, 65535, 65536 };

	for (uint32_t n = 0; n <= 15; n += 15) {
		raw_make(&r, (uint8_t)(0x90 | n), 0, 0, 0);
		raw_elements(&r, n);
		READER_AGREES(&r);
		raw_make(&r, (uint8_t)(0x80 | n), 0, 0, 0);
		raw_elements(&r, 2 * n);
		READER_AGREES(&r);
	}
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(counts); i++) {
		uint32_t n = counts[i];

		if (n <= 0xffff) {
			raw_make(&r, 0xdc, n, 2, 0);
			raw_elements(&r, n);
			READER_AGREES(&r);
			raw_make(&r, 0xde, n, 2, 0);
			raw_elements(&r, 2 * n);
			READER_AGREES(&r);
		}
		if (n <= 0xffff) { /* a map32 of 2^16 mixed pairs would not fit struct raw */
			raw_make(&r, 0xdf, n, 4, 0);
			raw_elements(&r, 2 * n);
			READER_AGREES(&r);
		}
		raw_make(&r, 0xdd, n, 4, 0);
		raw_elements(&r, n);
		READER_AGREES(&r);
	}

	/* Nesting as msgpack-c writes it: [1, [2, {"a": [3, nil]}], "x", bin, ext]. */
	struct mpc m;
	mpc_init(&m);
	msgpack_pack_array(&m.pk, 5);
	msgpack_pack_uint8(&m.pk, 1);
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_int8(&m.pk, -2);
	msgpack_pack_map(&m.pk, 1);
	mpc_cstr(&m, "a");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_double(&m.pk, 3.25);
	msgpack_pack_nil(&m.pk);
	mpc_cstr(&m, "x");
	msgpack_pack_bin_with_body(&m.pk, "\0\1\2", 3);
	msgpack_pack_ext_with_body(&m.pk, "abcd", 4, 7);
	reader_agrees(__LINE__, mpc_data(&m), m.sb.size);
	mpc_destroy(&m);

	/* Deep nesting is walked without recursion: 5000 one-element arrays around a nil. */
	r.n = 0;
	for (uint32_t i = 0; i < 5000; i++)
		raw_byte(&r, 0x91);
	raw_byte(&r, 0xc0);
	struct krn_mp_reader rd;
	uint8_t *deep = dup_exact(r.b, r.n);
	krn_mp_reader_init(&rd, deep, (uint32_t)r.n);
	CHECK(krn_mp_skip(&rd) == KRN_MP_OK && krn_mp_reader_left(&rd) == 0);
	krn_mp_reader_init(&rd, deep, (uint32_t)r.n - 1);
	CHECK(krn_mp_skip(&rd) < 0);
	free(deep);
}

/* Headers that lie: counts and lengths larger than the buffer, and the one unused byte. */
static void test_reader_hostile(void)
{
	static struct raw r;
	struct krn_mp_reader rd;
	struct krn_mp_value v;
	uint8_t *buf;

	/* 0xc1 never appears in msgpack, alone or inside a container. */
	static const uint8_t invalid[] = { 0xc1 };
	static const uint8_t invalid_nested[] = { 0x92, 0x01, 0xc1 };
	krn_mp_reader_init(&rd, invalid, sizeof(invalid));
	CHECK(krn_mp_read(&rd, &v) == KRN_MP_E_INVALID);
	krn_mp_reader_init(&rd, invalid_nested, sizeof(invalid_nested));
	CHECK(krn_mp_skip(&rd) == KRN_MP_E_INVALID);
	msgpack_unpacked u;
	size_t off = 0;
	msgpack_unpacked_init(&u);
	CHECK(msgpack_unpack_next(&u, (const char *)invalid, 1, &off) == MSGPACK_UNPACK_PARSE_ERROR);
	msgpack_unpacked_destroy(&u);

	/* A container that claims 2^32-1 elements, followed by a few real bytes: refused from the
	 * header alone, before any element is looked at. */
	static const uint8_t huge_markers[] = { 0xdd, 0xdf };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(huge_markers); i++) {
		raw_make(&r, huge_markers[i], 0xffffffffu, 4, 16);
		buf = dup_exact(r.b, r.n);
		krn_mp_reader_init(&rd, buf, (uint32_t)r.n);
		CHECK(krn_mp_read(&rd, &v) == KRN_MP_E_TOO_LARGE);
		/* The refused header is still reported, so callers can weigh the count themselves. */
		CHECK(v.type == (i ? KRN_MP_MAP : KRN_MP_ARRAY) && v.size == 0xffffffffu);
		krn_mp_reader_init(&rd, buf, (uint32_t)r.n);
		CHECK(krn_mp_skip(&rd) == KRN_MP_E_TOO_LARGE);
		free(buf);
	}
	/* The bound is exact: n elements need n bytes (a map 2n); one byte less is refused. */
	static const struct {
		uint8_t marker;
		uint32_t width;
		uint32_t count;
		uint32_t per_element;
	} bounds[] = {
		{ 0x9f, 0, 15, 1 }, { 0x8f, 0, 15, 2 }, { 0xdc, 2, 300, 1 }, { 0xde, 2, 300, 2 },
		{ 0xdd, 4, 70000, 1 }, { 0xdf, 4, 70000, 2 },
	};
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(bounds); i++) {
		uint32_t need = bounds[i].count * bounds[i].per_element;

		for (uint32_t less = 0; less <= 1; less++) {
			r.n = 0;
			raw_byte(&r, bounds[i].marker);
			raw_be(&r, bounds[i].count, bounds[i].width);
			for (uint32_t k = 0; k < need - less; k++)
				raw_byte(&r, 0xc0);
			buf = dup_exact(r.b, r.n);
			krn_mp_reader_init(&rd, buf, (uint32_t)r.n);
			int rc = krn_mp_read(&rd, &v);
			CHECK(less ? rc == KRN_MP_E_TOO_LARGE : rc == KRN_MP_OK && v.size == bounds[i].count);
			free(buf);
		}
	}
	/* str32, bin32 and ext32 that claim 2^32-1 payload bytes. */
	static const uint8_t long_markers[] = { 0xdb, 0xc6 };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(long_markers); i++) {
		raw_make(&r, long_markers[i], 0xffffffffu, 4, 8);
		buf = dup_exact(r.b, r.n);
		krn_mp_reader_init(&rd, buf, (uint32_t)r.n);
		CHECK(krn_mp_read(&rd, &v) == KRN_MP_E_TRUNCATED);
		free(buf);
	}
	raw_make(&r, 0xc9, 0xffffffff01ull, 5, 8);
	buf = dup_exact(r.b, r.n);
	krn_mp_reader_init(&rd, buf, (uint32_t)r.n);
	CHECK(krn_mp_read(&rd, &v) == KRN_MP_E_TRUNCATED);
	free(buf);
	/* Nothing at all. */
	krn_mp_reader_init(&rd, invalid, 0);
	CHECK(krn_mp_read(&rd, &v) == KRN_MP_E_TRUNCATED);
	CHECK(krn_mp_skip(&rd) == KRN_MP_E_TRUNCATED);
}

static void test_reader_helpers(void)
{
	struct krn_mp_value v = { .type = KRN_MP_STR, .data = (const uint8_t *)"tokens", .size = 6 };
	double d = 0;

	CHECK(krn_mp_str_eq(&v, "tokens"));
	CHECK(!krn_mp_str_eq(&v, "token"));
	CHECK(!krn_mp_str_eq(&v, "tokens2"));
	CHECK(!krn_mp_str_eq(&v, ""));
	v.size = 0;
	CHECK(krn_mp_str_eq(&v, ""));
	v.type = KRN_MP_BIN;
	CHECK(!krn_mp_str_eq(&v, ""));
	CHECK(krn_mp_as_double(&v, &d) == -1);

	v.type = KRN_MP_UINT;
	v.v.u = UINT64_MAX;
	CHECK(krn_mp_as_double(&v, &d) == 0 && d == 18446744073709551615.0);
	v.type = KRN_MP_INT;
	v.v.i = -7;
	CHECK(krn_mp_as_double(&v, &d) == 0 && d == -7.0);
	v.type = KRN_MP_FLOAT32;
	v.v.f32 = 0.1f;
	CHECK(krn_mp_as_double(&v, &d) == 0 && d == (double)0.1f);
	v.type = KRN_MP_FLOAT64;
	v.v.f64 = -2.5e300;
	CHECK(krn_mp_as_double(&v, &d) == 0 && d == -2.5e300);
	v.type = KRN_MP_NIL;
	CHECK(krn_mp_as_double(&v, &d) == -1);
}

/* ---- the writer against msgpack-c ------------------------------------------------------------ */

/* Our bytes must be msgpack-c's bytes: msgpack-c always writes the shortest form. */
static void writer_matches(int line, const uint8_t *ours, uint32_t ours_size, int overflow, const struct mpc *m)
{
	CHECK_AT(line, !overflow);
	CHECK_U64_AT(line, ours_size, m->sb.size);
	CHECK_AT(line, ours_size == m->sb.size && memcmp(ours, m->sb.data, ours_size) == 0);
}

/* Writing into exactly `need` bytes works; into one byte less it overflows without writing past. */
#define WRITER_BOUNDS(need, put)                                                       \
	do {                                                                           \
		for (uint32_t wb_less = 0; wb_less <= 1; wb_less++) {                  \
			uint32_t wb_cap = (uint32_t)(need)-wb_less;                    \
			uint8_t *wb = malloc(wb_cap ? wb_cap : 1);                     \
			struct krn_mp_writer ww;                                       \
			if (!wb)                                                       \
				break;                                                 \
			krn_mp_writer_init(&ww, wb, wb_cap);                           \
			put;                                                           \
			CHECK(ww.overflow == (int)wb_less);                            \
			CHECK(krn_mp_writer_size(&ww, wb) <= wb_cap);                  \
			if (!wb_less)                                                  \
				CHECK_U64(krn_mp_writer_size(&ww, wb), need);          \
			free(wb);                                                      \
		}                                                                      \
	} while (0)

static const uint64_t uint_boundaries[] = {
	0, 1, 15, 16, 31, 32, 127, 128, 255, 256, 65535, 65536, 0xffffffffull, 0x100000000ull,
	0x7fffffffffffffffull, UINT64_MAX,
};

static const int64_t int_boundaries[] = {
	-1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769, -2147483647ll,
	-2147483647ll - 1, -2147483647ll - 2, INT64_MIN + 1, INT64_MIN,
};

static void test_writer_ints(void)
{
	struct mpc m;
	uint8_t buf[16];
	struct krn_mp_writer w;

	mpc_init(&m);
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(uint_boundaries); i++) {
		uint64_t u = uint_boundaries[i];

		mpc_reset(&m);
		msgpack_pack_uint64(&m.pk, u);
		krn_mp_writer_init(&w, buf, sizeof(buf));
		krn_mp_put_uint(&w, u);
		writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		reader_agrees(__LINE__, buf, krn_mp_writer_size(&w, buf));
		WRITER_BOUNDS(m.sb.size, krn_mp_put_uint(&ww, u));
		/* A non-negative int64 is written as msgpack-c writes it: the unsigned encodings. */
		if (u <= INT64_MAX) {
			krn_mp_writer_init(&w, buf, sizeof(buf));
			krn_mp_put_int(&w, (int64_t)u);
			writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
			mpc_reset(&m);
			msgpack_pack_int64(&m.pk, (int64_t)u);
			writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		}
	}
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(int_boundaries); i++) {
		int64_t s = int_boundaries[i];

		mpc_reset(&m);
		msgpack_pack_int64(&m.pk, s);
		krn_mp_writer_init(&w, buf, sizeof(buf));
		krn_mp_put_int(&w, s);
		writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		reader_agrees(__LINE__, buf, krn_mp_writer_size(&w, buf));
		WRITER_BOUNDS(m.sb.size, krn_mp_put_int(&ww, s));
	}
	mpc_destroy(&m);
}

static void test_writer_scalars(void)
{
	struct mpc m;
	uint8_t buf[16];
	struct krn_mp_writer w;

	mpc_init(&m);
	msgpack_pack_nil(&m.pk);
	msgpack_pack_true(&m.pk);
	msgpack_pack_false(&m.pk);
	krn_mp_writer_init(&w, buf, sizeof(buf));
	krn_mp_put_nil(&w);
	krn_mp_put_bool(&w, 7); /* any non-zero is true */
	krn_mp_put_bool(&w, 0);
	writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);

	static const float f32s[] = { 0.0f, -0.0f, 1.5f, -3.25e-20f, FLT_MAX, FLT_MIN, 1e-45f, INFINITY, NAN };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(f32s); i++) {
		mpc_reset(&m);
		msgpack_pack_float(&m.pk, f32s[i]);
		krn_mp_writer_init(&w, buf, sizeof(buf));
		krn_mp_put_float32(&w, f32s[i]);
		writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		reader_agrees(__LINE__, buf, krn_mp_writer_size(&w, buf));
		WRITER_BOUNDS(5, krn_mp_put_float32(&ww, f32s[i]));
	}
	static const double f64s[] = { 0.0, -0.0, 3.141592653589793, -1e300, DBL_MIN, 5e-324, -INFINITY, NAN };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(f64s); i++) {
		mpc_reset(&m);
		msgpack_pack_double(&m.pk, f64s[i]);
		krn_mp_writer_init(&w, buf, sizeof(buf));
		krn_mp_put_float64(&w, f64s[i]);
		writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		reader_agrees(__LINE__, buf, krn_mp_writer_size(&w, buf));
		WRITER_BOUNDS(9, krn_mp_put_float64(&ww, f64s[i]));
	}
	WRITER_BOUNDS(1, krn_mp_put_nil(&ww));
	WRITER_BOUNDS(1, krn_mp_put_bool(&ww, 1));

	/* Overflow is sticky: once a write did not fit, a later small one does not sneak in. */
	krn_mp_writer_init(&w, buf, 4);
	krn_mp_put_uint(&w, 1);
	krn_mp_put_uint(&w, 0x10000);
	CHECK(w.overflow);
	krn_mp_put_nil(&w);
	CHECK(w.overflow);
	CHECK_U64(krn_mp_writer_size(&w, buf), 1);
	mpc_destroy(&m);
}

static const uint32_t size_boundaries[] = { 0, 1, 15, 16, 31, 32, 127, 128, 255, 256, 65535, 65536, 70000 };

static void test_writer_strs(void)
{
	static char text[70001];
	struct mpc m;
	uint32_t cap = sizeof(text) + 8;
	uint8_t *buf = malloc(cap);

	if (!buf) {
		CHECK(!"malloc");
		return;
	}
	for (uint32_t i = 0; i < sizeof(text) - 1; i++)
		text[i] = (char)('a' + i % 26);
	mpc_init(&m);
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(size_boundaries); i++) {
		uint32_t len = size_boundaries[i];
		struct krn_mp_writer w;

		mpc_reset(&m);
		msgpack_pack_str_with_body(&m.pk, text, len);
		krn_mp_writer_init(&w, buf, cap);
		krn_mp_put_str(&w, text, len);
		writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
		reader_agrees(__LINE__, buf, krn_mp_writer_size(&w, buf));
		WRITER_BOUNDS(m.sb.size, krn_mp_put_str(&ww, text, len));
	}
	/* put_cstr is put_str of strlen. */
	struct krn_mp_writer w;
	mpc_reset(&m);
	mpc_cstr(&m, "temperature");
	krn_mp_writer_init(&w, buf, cap);
	krn_mp_put_cstr(&w, "temperature");
	writer_matches(__LINE__, buf, krn_mp_writer_size(&w, buf), w.overflow, &m);
	mpc_destroy(&m);
	free(buf);
}

static void test_writer_containers(void)
{
	struct mpc m;
	uint8_t head[8];
	/* Room for the header and 2^16 pairs of nils, enough for msgpack-c to read a map16/map32 back. */
	uint8_t *full = malloc(8 + 2 * 70000);

	if (!full) {
		CHECK(!"malloc");
		return;
	}
	mpc_init(&m);
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(size_boundaries) + 1; i++) {
		/* The last round is the largest count a header can carry; only its bytes are compared. */
		uint32_t n = i < ZH_ARRAY_SIZE(size_boundaries) ? size_boundaries[i] : UINT32_MAX;
		struct krn_mp_writer w;

		for (uint32_t is_map = 0; is_map <= 1; is_map++) {
			mpc_reset(&m);
			if (is_map)
				msgpack_pack_map(&m.pk, n);
			else
				msgpack_pack_array(&m.pk, n);
			krn_mp_writer_init(&w, head, sizeof(head));
			if (is_map)
				krn_mp_put_map(&w, n);
			else
				krn_mp_put_array(&w, n);
			uint32_t head_size = krn_mp_writer_size(&w, head);
			writer_matches(__LINE__, head, head_size, w.overflow, &m);
			if (is_map)
				WRITER_BOUNDS(m.sb.size, krn_mp_put_map(&ww, n));
			else
				WRITER_BOUNDS(m.sb.size, krn_mp_put_array(&ww, n));
			if (n == UINT32_MAX)
				continue;
			/* With its elements, msgpack-c reads back the count we wrote. */
			uint32_t elements = is_map ? 2 * n : n;
			memcpy(full, head, head_size);
			memset(full + head_size, 0xc0, elements);
			reader_agrees(__LINE__, full, head_size + elements);
		}
	}
	mpc_destroy(&m);
	free(full);
}

/* ---- requests packed by msgpack-c ------------------------------------------------------------ */

static void test_decode_full(void)
{
	struct krn_request *req = malloc(sizeof(*req));
	struct mpc m;
	const char *error;

	if (!req) {
		CHECK(!"malloc");
		return;
	}
	mpc_init(&m);
	msgpack_pack_map(&m.pk, 12);
	mpc_cstr(&m, "trace");
	msgpack_pack_true(&m.pk);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 5);
	msgpack_pack_uint64(&m.pk, 0);
	msgpack_pack_uint64(&m.pk, 127);
	msgpack_pack_uint64(&m.pk, 300);
	msgpack_pack_uint64(&m.pk, 70000);
	msgpack_pack_uint64(&m.pk, 0xffffffffu);
	mpc_cstr(&m, "x-future");
	msgpack_pack_map(&m.pk, 1);
	mpc_cstr(&m, "nested");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_bin_with_body(&m.pk, "\xc1\xc1", 2);
	msgpack_pack_ext_with_body(&m.pk, "\xdd\xff\xff\xff\xff", 5, -3);
	mpc_cstr(&m, "model");
	mpc_cstr(&m, "tiny-llama");
	mpc_cstr(&m, "op");
	mpc_cstr(&m, "generate");
	mpc_cstr(&m, "dense");
	msgpack_pack_array(&m.pk, 4);
	msgpack_pack_float(&m.pk, 1.5f);
	msgpack_pack_double(&m.pk, -0.25);
	msgpack_pack_uint64(&m.pk, 3);
	msgpack_pack_int64(&m.pk, -4);
	mpc_cstr(&m, "max_new");
	msgpack_pack_uint32(&m.pk, 200);
	mpc_cstr(&m, "top_k");
	msgpack_pack_uint32(&m.pk, 0xffffffffu);
	mpc_cstr(&m, "temperature");
	msgpack_pack_double(&m.pk, 0.75);
	mpc_cstr(&m, "seed");
	msgpack_pack_uint64(&m.pk, UINT64_MAX);
	mpc_cstr(&m, "id");
	msgpack_pack_uint64(&m.pk, 0x123456789abcdefull);
	mpc_cstr(&m, "x-other");
	msgpack_pack_nil(&m.pk);

	CHECK(decode_exact(mpc_data(&m), m.sb.size, req, &error) == ZH_STATUS_OK);
	CHECK_STR(error, "");
	CHECK_U64(req->present_mask, KRN_REQ_HAS_ID | KRN_REQ_HAS_MODEL | KRN_REQ_HAS_OP | KRN_REQ_HAS_TOKENS |
				     KRN_REQ_HAS_DENSE | KRN_REQ_HAS_MAX_NEW | KRN_REQ_HAS_TOP_K |
				     KRN_REQ_HAS_TEMPERATURE | KRN_REQ_HAS_SEED | KRN_REQ_HAS_TRACE);
	CHECK_U64(req->id, 0x123456789abcdefull);
	CHECK_U64(req->model_name_len, 10);
	CHECK_STR(req->model_name, "tiny-llama");
	CHECK_U64(req->op, ZH_OP_GENERATE);
	CHECK_U64(req->token_count, 5);
	CHECK_U64(req->tokens[0], 0);
	CHECK_U64(req->tokens[1], 127);
	CHECK_U64(req->tokens[2], 300);
	CHECK_U64(req->tokens[3], 70000);
	CHECK_U64(req->tokens[4], 0xffffffffu);
	CHECK_U64(req->dense_count, 4);
	CHECK(req->dense[0] == 1.5f && req->dense[1] == -0.25f && req->dense[2] == 3.0f && req->dense[3] == -4.0f);
	CHECK_U64(req->max_new, 200);
	CHECK_U64(req->top_k, 0xffffffffu);
	CHECK(req->temperature == 0.75f);
	CHECK_U64(req->seed, UINT64_MAX);
	CHECK_U64(req->trace, 1);

	/* The smallest request: an id and nothing else; everything else reads as absent. */
	mpc_reset(&m);
	msgpack_pack_map(&m.pk, 1);
	mpc_cstr(&m, "id");
	msgpack_pack_uint64(&m.pk, 0);
	CHECK(decode_exact(mpc_data(&m), m.sb.size, req, &error) == ZH_STATUS_OK);
	CHECK_U64(req->present_mask, KRN_REQ_HAS_ID);
	CHECK_U64(req->id, 0);
	CHECK_U64(req->op, ZH_OP_NONE);
	CHECK_U64(req->model_name_len, 0);
	CHECK_STR(req->model_name, "");
	CHECK(req->token_count == 0 && req->dense_count == 0 && req->max_new == 0 && req->top_k == 0);
	CHECK(req->temperature == 0.0f && req->seed == 0 && req->trace == 0);

	/* Each op name, and a non-shortest id encoding (int64 holding 5) that msgpack allows. */
	static const struct {
		const char *name;
		enum zh_op op;
	} ops[] = { { "score", ZH_OP_SCORE }, { "logits", ZH_OP_LOGITS }, { "generate", ZH_OP_GENERATE },
		    { "echo", ZH_OP_ECHO } };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(ops); i++) {
		static const uint8_t id_int64_5[] = { 0xd3, 0, 0, 0, 0, 0, 0, 0, 5 };

		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "op");
		mpc_cstr(&m, ops[i].name);
		mpc_cstr(&m, "id");
		mpc_raw(&m, id_int64_5, sizeof(id_int64_5));
		CHECK(decode_exact(mpc_data(&m), m.sb.size, req, &error) == ZH_STATUS_OK);
		CHECK_U64(req->op, ops[i].op);
		CHECK_U64(req->id, 5);
	}
	mpc_destroy(&m);
	free(req);
}

/* The edges of each bound: the last value accepted and the first refused. */
static void test_decode_bounds(void)
{
	struct krn_request *req = malloc(sizeof(*req));
	struct mpc m;
	const char *error;
	static char name[ZH_MODEL_NAME_MAX + 2];

	if (!req) {
		CHECK(!"malloc");
		return;
	}
	mpc_init(&m);
	for (uint32_t extra = 0; extra <= 1; extra++) {
		enum zh_status want = extra ? ZH_STATUS_TOO_LARGE : ZH_STATUS_OK;

		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "id");
		msgpack_pack_uint64(&m.pk, 9);
		mpc_cstr(&m, "tokens");
		msgpack_pack_array(&m.pk, ZH_TOKENS_MAX + extra);
		for (uint32_t i = 0; i < ZH_TOKENS_MAX + extra; i++)
			msgpack_pack_uint32(&m.pk, i * 16777259u);
		CHECK(m.sb.size <= ZH_REQ_MAX_BYTES);
		CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error), want);
		CHECK(error && (extra ? error[0] != '\0' : error[0] == '\0'));
		if (!extra) {
			CHECK_U64(req->token_count, ZH_TOKENS_MAX);
			CHECK_U64(req->tokens[ZH_TOKENS_MAX - 1], (ZH_TOKENS_MAX - 1) * 16777259u);
		} else {
			CHECK(req->present_mask & KRN_REQ_HAS_ID);
			CHECK_U64(req->id, 9);
		}

		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "id");
		msgpack_pack_uint64(&m.pk, 9);
		mpc_cstr(&m, "dense");
		msgpack_pack_array(&m.pk, ZH_DENSE_MAX + extra);
		for (uint32_t i = 0; i < ZH_DENSE_MAX + extra; i++)
			msgpack_pack_float(&m.pk, (float)i / 8);
		CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error), want);
		if (!extra)
			CHECK(req->dense_count == ZH_DENSE_MAX && req->dense[ZH_DENSE_MAX - 1] == (float)(ZH_DENSE_MAX - 1) / 8);

		/* A model name of 31 bytes fits; 32 is over the bound, refused rather than cut. */
		memset(name, 'm', sizeof(name));
		name[ZH_MODEL_NAME_MAX + extra] = '\0';
		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "model");
		mpc_cstr(&m, name);
		mpc_cstr(&m, "id");
		msgpack_pack_uint64(&m.pk, 9);
		CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error),
			  extra ? ZH_STATUS_TOO_LARGE : ZH_STATUS_OK);
		if (!extra)
			CHECK(req->model_name_len == ZH_MODEL_NAME_MAX && strcmp(req->model_name, name) == 0);

		/* A request of exactly ZH_REQ_MAX_BYTES is fine; one byte more is too large, even
		 * though it is well-formed. An unknown key with a bin value pads it. */
		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "id");
		msgpack_pack_uint64(&m.pk, 9);
		mpc_cstr(&m, "pad");
		size_t fixed = m.sb.size + 3; /* bin16 header */
		size_t pad = ZH_REQ_MAX_BYTES + extra - fixed;
		uint8_t *zeros = calloc(1, pad);
		if (zeros) {
			msgpack_pack_bin_with_body(&m.pk, zeros, pad);
			free(zeros);
		}
		CHECK_U64(m.sb.size, ZH_REQ_MAX_BYTES + extra);
		CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error), want);
		/* The bound is checked before anything is read, so no id is recovered. */
		CHECK(!!(req->present_mask & KRN_REQ_HAS_ID) == !extra);
	}

	/* Numeric ranges of the scalar keys. */
	static const struct {
		const char *key;
		uint64_t ok;
		uint64_t bad;
	} uints[] = {
		{ "max_new", 0xffffffffull, 0x100000000ull },
		{ "top_k", 0xffffffffull, 0x100000000ull },
	};
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(uints); i++) {
		for (uint32_t bad = 0; bad <= 1; bad++) {
			mpc_reset(&m);
			msgpack_pack_map(&m.pk, 2);
			mpc_cstr(&m, "id");
			msgpack_pack_uint64(&m.pk, 1);
			mpc_cstr(&m, uints[i].key);
			msgpack_pack_uint64(&m.pk, bad ? uints[i].bad : uints[i].ok);
			CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error),
				  bad ? ZH_STATUS_BAD_REQUEST : ZH_STATUS_OK);
		}
	}
	static const double temps_ok[] = { 0.0, 100.0, 1e-9, 99.5 };
	static const double temps_bad[] = { -1e-9, -1.0, 100.0001, INFINITY, NAN };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(temps_ok) + ZH_ARRAY_SIZE(temps_bad); i++) {
		int bad = i >= ZH_ARRAY_SIZE(temps_ok);
		double t = bad ? temps_bad[i - ZH_ARRAY_SIZE(temps_ok)] : temps_ok[i];

		mpc_reset(&m);
		msgpack_pack_map(&m.pk, 2);
		mpc_cstr(&m, "temperature");
		msgpack_pack_double(&m.pk, t);
		mpc_cstr(&m, "id");
		msgpack_pack_uint64(&m.pk, 1);
		CHECK_U64(decode_exact(mpc_data(&m), m.sb.size, req, &error),
			  bad ? ZH_STATUS_BAD_REQUEST : ZH_STATUS_OK);
		if (!bad)
			CHECK(req->temperature == (float)t);
	}
	mpc_destroy(&m);
	free(req);
}

/*
 * One refused request: the decoder's status and error, whether it recovered the id, and the answer
 * krn_serve_request sends for it, read back with msgpack-c.
 */
static void expect_refused(int line, const struct mpc *m, enum zh_status want, int want_has_id, uint64_t want_id)
{
	static struct krn_scratch scratch;
	struct krn_models models = { .count = 1, .default_idx = 0 };
	struct krn_request *req = &scratch.req;
	struct mpc_answer a;
	const char *error;
	enum zh_status st = decode_exact(mpc_data(m), m->sb.size, req, &error);

	CHECK_U64_AT(line, st, want);
	CHECK_AT(line, error != NULL && error[0] != '\0');
	CHECK_U64_AT(line, !!(req->present_mask & KRN_REQ_HAS_ID), want_has_id);
	if (want_has_id)
		CHECK_U64_AT(line, req->id, want_id);

	strcpy(models.models[0].name, "echo");
	models.models[0].arch = KRN_ARCH_ECHO;
	uint8_t *copy = dup_exact(mpc_data(m), m->sb.size);
	uint8_t *ans = malloc(ZH_ANS_MAX_BYTES);
	uint16_t status = UINT16_MAX;

	if (!ans) {
		free(copy);
		CHECK_AT(line, !"malloc");
		return;
	}
	uint32_t size = krn_serve_request(&models, copy, (uint32_t)m->sb.size, ans, ZH_ANS_MAX_BYTES, &scratch,
					  NULL, &status);
	CHECK_U64_AT(line, status, want);
	CHECK_AT(line, size > 0 && mpc_parse_answer(ans, size, &a) == 0);
	CHECK_U64_AT(line, a.status, want);
	CHECK_AT(line, a.has_error && a.error_len > 0 && !a.has_tokens && a.entries == 3);
	CHECK_AT(line, a.id_nil == !want_has_id);
	if (want_has_id)
		CHECK_U64_AT(line, a.id, want_id);
	free(ans);
	free(copy);
}

#define EXPECT_REFUSED(m, want, has_id, id) expect_refused(__LINE__, m, want, has_id, id)

/* Start a request map of `entries` keys whose first key is `id`. */
static void begin_with_id(struct mpc *m, uint32_t entries, uint64_t id)
{
	mpc_reset(m);
	msgpack_pack_map(&m->pk, entries);
	mpc_cstr(m, "id");
	msgpack_pack_uint64(&m->pk, id);
}

static void test_decode_bad(void)
{
	static const uint8_t huge_array[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t huge_map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
	struct mpc m;

	mpc_init(&m);
	/* Not msgpack, and msgpack that is not a map ("hello" starts with the fixint 0x68). */
	mpc_raw(&m, "\xc1", 1);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);
	mpc_reset(&m);
	mpc_raw(&m, "hello", 5);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);
	mpc_reset(&m);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0); /* an empty datagram */
	mpc_reset(&m);
	msgpack_pack_array(&m.pk, 1);
	msgpack_pack_uint8(&m.pk, 1);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);

	/* No id. */
	mpc_reset(&m);
	msgpack_pack_map(&m.pk, 2);
	mpc_cstr(&m, "model");
	mpc_cstr(&m, "echo");
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 0);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);
	mpc_reset(&m);
	msgpack_pack_map(&m.pk, 0);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);

	/* Wrong types: a string token keeps the id (whichever side of `tokens` it is on); a negative
	 * or fractional id is no id. */
	begin_with_id(&m, 2, 77);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_uint8(&m.pk, 1);
	mpc_cstr(&m, "2");
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 77);
	mpc_reset(&m);
	msgpack_pack_map(&m.pk, 2);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 1);
	msgpack_pack_int8(&m.pk, -1);
	mpc_cstr(&m, "id");
	msgpack_pack_uint64(&m.pk, 78);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 78);
	static const struct {
		const char *key;
		int kind; /* 0 a negative int, 1 a float, 2 a string */
	} wrong[] = {
		{ "id", 0 }, { "id", 1 }, { "id", 2 }, { "seed", 0 }, { "max_new", 1 }, { "top_k", 2 },
		{ "trace", 0 }, { "temperature", 2 }, { "model", 0 }, { "op", 0 }, { "tokens", 2 },
		{ "dense", 2 }, { "op", 2 },
	};
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(wrong); i++) {
		int is_id = strcmp(wrong[i].key, "id") == 0;

		mpc_reset(&m);
		msgpack_pack_map(&m.pk, is_id ? 1 : 2);
		if (!is_id) {
			mpc_cstr(&m, "id");
			msgpack_pack_uint64(&m.pk, 5);
		}
		mpc_cstr(&m, wrong[i].key);
		if (wrong[i].kind == 0)
			msgpack_pack_int64(&m.pk, -1);
		else if (wrong[i].kind == 1)
			msgpack_pack_double(&m.pk, 1.0);
		else
			mpc_cstr(&m, "nope"); /* also not an op name */
		EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, !is_id, 5);
	}
	/* Token ids and dense values of the wrong kind inside their arrays. */
	begin_with_id(&m, 2, 6);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 1);
	msgpack_pack_uint64(&m.pk, 0x100000000ull);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 6);
	begin_with_id(&m, 2, 6);
	mpc_cstr(&m, "dense");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_float(&m.pk, 1.0f);
	msgpack_pack_nil(&m.pk);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 6);
	/* A key that is not a string. */
	begin_with_id(&m, 2, 6);
	msgpack_pack_uint8(&m.pk, 1);
	msgpack_pack_uint8(&m.pk, 2);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 6);
	/* A container as a key, before the id: the id recovered for the error answer is the real
	 * one, not a value found by walking into the key's elements ({["x"]: "id", 666: 0, "id": 7}). */
	mpc_reset(&m);
	msgpack_pack_map(&m.pk, 3);
	msgpack_pack_array(&m.pk, 1);
	mpc_cstr(&m, "x");
	mpc_cstr(&m, "id");
	msgpack_pack_uint16(&m.pk, 666);
	msgpack_pack_uint8(&m.pk, 0);
	mpc_cstr(&m, "id");
	msgpack_pack_uint8(&m.pk, 7);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 7);

	/* More tokens than ZH_TOKENS_MAX. */
	begin_with_id(&m, 2, 8);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, ZH_TOKENS_MAX + 1);
	for (uint32_t i = 0; i <= ZH_TOKENS_MAX; i++)
		msgpack_pack_uint8(&m.pk, 1);
	EXPECT_REFUSED(&m, ZH_STATUS_TOO_LARGE, 1, 8);

	/* Containers that claim 2^32-1 entries, at the top and as values, refused from the header
	 * (docs/PROTOCOL.md): over a stated bound (keys, tokens, dense) is too_large; the wrong type,
	 * or a count with no bound of its own that the datagram cannot hold, is bad_request. */
	mpc_reset(&m);
	mpc_raw(&m, huge_map, sizeof(huge_map));
	for (uint32_t i = 0; i < 8; i++)
		msgpack_pack_nil(&m.pk);
	EXPECT_REFUSED(&m, ZH_STATUS_TOO_LARGE, 0, 0);
	mpc_reset(&m);
	mpc_raw(&m, huge_array, sizeof(huge_array));
	for (uint32_t i = 0; i < 8; i++)
		msgpack_pack_nil(&m.pk);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 0, 0);
	static const struct {
		const char *key;
		enum zh_status as_array;
		enum zh_status as_map;
	} huge_values[] = {
		{ "tokens", ZH_STATUS_TOO_LARGE, ZH_STATUS_BAD_REQUEST },
		{ "dense", ZH_STATUS_TOO_LARGE, ZH_STATUS_BAD_REQUEST },
		{ "x-unknown", ZH_STATUS_BAD_REQUEST, ZH_STATUS_BAD_REQUEST },
	};
	for (uint32_t k = 0; k < ZH_ARRAY_SIZE(huge_values); k++) {
		for (uint32_t is_map = 0; is_map <= 1; is_map++) {
			begin_with_id(&m, 2, 10 + k);
			mpc_cstr(&m, huge_values[k].key);
			mpc_raw(&m, is_map ? huge_map : huge_array, sizeof(huge_map));
			for (uint32_t i = 0; i < 8; i++)
				msgpack_pack_uint8(&m.pk, 1);
			EXPECT_REFUSED(&m, is_map ? huge_values[k].as_map : huge_values[k].as_array, 1, 10 + k);
		}
	}
	/* Within the bound but cut short: a truncated request, not a large one. */
	begin_with_id(&m, 2, 15);
	mpc_cstr(&m, "tokens");
	mpc_raw(&m, "\xdc\x00\xff", 3); /* array16 of 255, with 8 ids after it */
	for (uint32_t i = 0; i < 8; i++)
		msgpack_pack_uint8(&m.pk, 1);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 15);

	/* A key given twice, however it is spelled in msgpack. */
	begin_with_id(&m, 2, 11);
	mpc_raw(&m, "\xd9\x02id", 4); /* "id" as str8 */
	msgpack_pack_uint64(&m.pk, 12);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 11);
	begin_with_id(&m, 3, 11);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 0);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 0);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 11);

	/* Bytes after the map. */
	begin_with_id(&m, 1, 13);
	msgpack_pack_nil(&m.pk);
	EXPECT_REFUSED(&m, ZH_STATUS_BAD_REQUEST, 1, 13);

	/* More keys than ZH_REQ_KEYS_MAX: a bound exceeded, refused from the map header. */
	begin_with_id(&m, ZH_REQ_KEYS_MAX + 1, 14);
	for (uint32_t i = 1; i <= ZH_REQ_KEYS_MAX; i++) {
		char key[8];

		snprintf(key, sizeof(key), "k%u", i);
		mpc_cstr(&m, key);
		msgpack_pack_nil(&m.pk);
	}
	struct krn_request *req = malloc(sizeof(*req));
	const char *error;
	if (req) {
		EXPECT_REFUSED(&m, ZH_STATUS_TOO_LARGE, 1, 14);
		/* Exactly ZH_REQ_KEYS_MAX keys, unknown ones included, is fine. */
		begin_with_id(&m, ZH_REQ_KEYS_MAX, 14);
		for (uint32_t i = 1; i < ZH_REQ_KEYS_MAX; i++) {
			char key[8];

			snprintf(key, sizeof(key), "k%u", i);
			mpc_cstr(&m, key);
			msgpack_pack_nil(&m.pk);
		}
		CHECK(decode_exact(mpc_data(&m), m.sb.size, req, &error) == ZH_STATUS_OK);
		CHECK_U64(req->present_mask, KRN_REQ_HAS_ID);
		free(req);
	}
	mpc_destroy(&m);
}

/* A valid request cut at every length is refused, never decoded and never read past its end. */
static void test_decode_truncated(void)
{
	struct krn_request *req = malloc(sizeof(*req));
	struct mpc m;
	const char *error;
	uint32_t with_id = 0;

	if (!req) {
		CHECK(!"malloc");
		return;
	}
	mpc_init(&m);
	msgpack_pack_map(&m.pk, 9);
	mpc_cstr(&m, "id");
	msgpack_pack_uint64(&m.pk, 0xabcdef0123ull);
	mpc_cstr(&m, "model");
	mpc_cstr(&m, "echo");
	mpc_cstr(&m, "op");
	mpc_cstr(&m, "echo");
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 6);
	for (uint32_t i = 0; i < 6; i++)
		msgpack_pack_uint32(&m.pk, (uint32_t)1 << (i * 6));
	mpc_cstr(&m, "dense");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_float(&m.pk, 0.5f);
	msgpack_pack_double(&m.pk, 2.0);
	mpc_cstr(&m, "temperature");
	msgpack_pack_double(&m.pk, 0.7);
	mpc_cstr(&m, "seed");
	msgpack_pack_uint64(&m.pk, 1ull << 40);
	mpc_cstr(&m, "trace");
	msgpack_pack_true(&m.pk);
	mpc_cstr(&m, "x-ext");
	msgpack_pack_ext_with_body(&m.pk, "abcdefgh", 8, 1);

	CHECK(decode_exact(mpc_data(&m), m.sb.size, req, &error) == ZH_STATUS_OK);
	for (size_t cut = 0; cut < m.sb.size; cut++) {
		enum zh_status st = decode_exact(mpc_data(&m), cut, req, &error);

		/* No count in it is over a bound: every cut is a truncated request. */
		CHECK_U64(st, ZH_STATUS_BAD_REQUEST);
		CHECK(error != NULL && error[0] != '\0');
		/* An id recovered from a cut request is the real one, never a misread. */
		if (req->present_mask & KRN_REQ_HAS_ID) {
			CHECK_U64(req->id, 0xabcdef0123ull);
			with_id++;
		}
	}
	/* Once the map header's count fits the bytes left, the id in front is recovered. */
	CHECK(with_id > 0);
	mpc_destroy(&m);
	free(req);
}

/* ---- answers --------------------------------------------------------------------------------- */

static void test_answer_error(void)
{
	static const char long_error[] = "an error text that is longer than the forty-eight bytes allowed";
	static const uint64_t ids[] = { 0, 127, 128, 0xffffffffull, UINT64_MAX };
	static const char *const errors[] = { NULL, "", "x", "missing id", long_error };
	struct mpc_answer a;

	ZH_STATIC_ASSERT(sizeof(long_error) - 1 > ZH_ERROR_TEXT_MAX, "the long error is cut");
	for (uint32_t st = 0; st < ZH_STATUS_COUNT; st++) {
		for (uint32_t i = 0; i < ZH_ARRAY_SIZE(ids); i++) {
			for (uint32_t e = 0; e < ZH_ARRAY_SIZE(errors); e++) {
				for (int has_id = 0; has_id <= 1; has_id++) {
					uint8_t *buf = malloc(ZH_ERROR_ANS_MAX_BYTES);
					if (!buf)
						return;
					uint32_t n = krn_answer_encode_error(buf, ZH_ERROR_ANS_MAX_BYTES, has_id, ids[i],
									     st, errors[e]);
					int want_error = errors[e] && errors[e][0];
					size_t want_len = want_error ? strlen(errors[e]) : 0;

					want_len = want_len > ZH_ERROR_TEXT_MAX ? ZH_ERROR_TEXT_MAX : want_len;
					CHECK(n > 0 && mpc_parse_answer(buf, n, &a) == 0);
					CHECK_U64(a.status, st);
					CHECK(a.id_nil == !has_id && (!has_id || a.id == ids[i]));
					CHECK(a.has_error == want_error && a.entries == 2u + (uint32_t)want_error);
					CHECK(!want_error || (a.error_len == want_len &&
							      memcmp(a.error, errors[e], want_len) == 0));
					free(buf);
				}
			}
		}
	}

	/* ZH_ERROR_ANS_MAX_BYTES is exactly the worst case: the largest id and a full error. */
	for (uint32_t less = 0; less <= 1; less++) {
		uint32_t cap = ZH_ERROR_ANS_MAX_BYTES - less;
		uint8_t *buf = malloc(cap);
		if (!buf)
			return;
		uint32_t n = krn_answer_encode_error(buf, cap, 1, UINT64_MAX, ZH_STATUS_INTERNAL, long_error);
		if (less) {
			CHECK_U64(n, 0);
		} else {
			CHECK_U64(n, ZH_ERROR_ANS_MAX_BYTES);
			CHECK(mpc_parse_answer(buf, n, &a) == 0 && a.error_len == ZH_ERROR_TEXT_MAX);
		}
		free(buf);
	}
}

struct serve_env {
	struct krn_models models;
	struct krn_scratch scratch;
};

static void serve_env_init(struct serve_env *env)
{
	memset(env, 0, sizeof(*env));
	env->models.count = 2;
	env->models.default_idx = 1;
	strcpy(env->models.models[0].name, "echo-a");
	env->models.models[0].arch = KRN_ARCH_ECHO;
	strcpy(env->models.models[1].name, "echo");
	env->models.models[1].arch = KRN_ARCH_ECHO;
}

/* Serve a msgpack-c request from exact-size buffers and read the answer back with msgpack-c. */
static uint32_t serve(struct serve_env *env, const struct mpc *m, uint32_t ans_cap, struct zh_slot *slot,
		      uint16_t *status, struct mpc_answer *a)
{
	uint8_t *req = dup_exact(mpc_data(m), m->sb.size);
	uint8_t *ans = malloc(ans_cap);
	uint32_t n = 0;

	*status = UINT16_MAX;
	if (ans) {
		n = krn_serve_request(&env->models, req, (uint32_t)m->sb.size, ans, ans_cap, &env->scratch, slot,
				      status);
		if (n == 0 || n > ans_cap || mpc_parse_answer(ans, n, a) != 0)
			n = 0;
	}
	free(ans);
	free(req);
	return n;
}

static void test_serve_echo(void)
{
	struct serve_env *env = malloc(sizeof(*env));
	struct mpc_answer *a = malloc(sizeof(*a));
	struct zh_slot slot;
	struct mpc m;
	uint16_t status;

	if (!env || !a) {
		CHECK(!"malloc");
		free(env);
		free(a);
		return;
	}
	serve_env_init(env);
	mpc_init(&m);

	/* The largest echo answer: every token at its widest, the largest id, with a trace. */
	begin_with_id(&m, 4, UINT64_MAX);
	mpc_cstr(&m, "model");
	mpc_cstr(&m, "echo");
	mpc_cstr(&m, "trace");
	msgpack_pack_true(&m.pk);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, ZH_TOKENS_MAX);
	for (uint32_t i = 0; i < ZH_TOKENS_MAX; i++)
		msgpack_pack_uint32(&m.pk, 0xffffffffu - i);
	memset(&slot, 0, sizeof(slot));
	slot.rx_tsc = UINT64_MAX - 3;
	slot.publish_tsc = UINT64_MAX - 2;
	slot.claim_dclk = UINT64_MAX - 1;
	CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, &slot, &status, a) > 0);
	CHECK_U64(status, ZH_STATUS_OK);
	CHECK(a->status == ZH_STATUS_OK && !a->id_nil && a->id == UINT64_MAX && !a->has_error);
	CHECK(a->has_tokens && a->token_count == ZH_TOKENS_MAX);
	CHECK(a->tokens[0] == 0xffffffffu && a->tokens[ZH_TOKENS_MAX - 1] == 0xffffffffu - (ZH_TOKENS_MAX - 1));
	CHECK(a->has_trace && a->trace[0] == UINT64_MAX - 3 && a->trace[1] == UINT64_MAX - 2 &&
	      a->trace[2] == UINT64_MAX - 1 && a->trace[3] == slot.done_dclk && slot.done_dclk != 0);
	/* The NIC rx value is the rx lcore's to fill in: the device leaves a 9-byte 0 at the very end. */
	CHECK(a->trace[4] == 0);
	CHECK(status == ZH_STATUS_OK && krn_serve_slot_status(&env->scratch, status) == (ZH_STATUS_OK | ZH_ANS_F_NIC_RX_TAIL));

	/* No slot: no trace, even when asked. */
	CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, NULL, &status, a) > 0);
	CHECK(a->status == ZH_STATUS_OK && !a->has_trace && a->entries == 3);

	/* No `model`: the default model (index 1, "echo"); op "echo" is accepted. */
	begin_with_id(&m, 3, 3);
	mpc_cstr(&m, "op");
	mpc_cstr(&m, "echo");
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 0);
	CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, NULL, &status, a) > 0);
	CHECK(status == ZH_STATUS_OK && a->status == ZH_STATUS_OK && a->id == 3 && a->has_tokens &&
	      a->token_count == 0);
	/* ...and without a default model, a request naming none has no model. */
	env->models.default_idx = 2;
	CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, NULL, &status, a) > 0);
	CHECK(status == ZH_STATUS_UNKNOWN_MODEL && a->status == ZH_STATUS_UNKNOWN_MODEL && a->id == 3);
	env->models.default_idx = 1;

	/* Model names match whole: a prefix, an extension or an embedded NUL is another model. */
	static const struct {
		const char *name;
		uint32_t len;
		uint16_t want;
	} names[] = {
		{ "echo", 4, ZH_STATUS_OK },   { "echo-a", 6, ZH_STATUS_OK },  { "ech", 3, ZH_STATUS_UNKNOWN_MODEL },
		{ "echo-", 5, ZH_STATUS_UNKNOWN_MODEL }, { "echo-ab", 7, ZH_STATUS_UNKNOWN_MODEL },
		{ "", 0, ZH_STATUS_UNKNOWN_MODEL }, { "llama", 5, ZH_STATUS_UNKNOWN_MODEL },
		{ "echo\0", 5, ZH_STATUS_UNKNOWN_MODEL },
	};
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(names); i++) {
		begin_with_id(&m, 2, 100 + i);
		mpc_cstr(&m, "model");
		msgpack_pack_str_with_body(&m.pk, names[i].name, names[i].len);
		CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, NULL, &status, a) > 0);
		CHECK_U64(status, names[i].want);
		CHECK(a->status == names[i].want && a->id == 100 + i);
		CHECK(a->has_error == (names[i].want != ZH_STATUS_OK));
	}

	/* Operations echo does not have. */
	static const char *const ops[] = { "generate", "score", "logits" };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(ops); i++) {
		begin_with_id(&m, 2, 200 + i);
		mpc_cstr(&m, "op");
		mpc_cstr(&m, ops[i]);
		CHECK(serve(env, &m, ZH_ANS_MAX_BYTES, NULL, &status, a) > 0);
		CHECK(status == ZH_STATUS_BAD_REQUEST && a->status == ZH_STATUS_BAD_REQUEST && a->id == 200 + i &&
		      a->has_error && !a->has_tokens);
	}

	/* An answer buffer too small for the echo answer gets an internal error, never a cut answer. */
	begin_with_id(&m, 2, 300);
	mpc_cstr(&m, "tokens");
	msgpack_pack_array(&m.pk, 100);
	for (uint32_t i = 0; i < 100; i++)
		msgpack_pack_uint32(&m.pk, 70000 + i);
	CHECK(serve(env, &m, 128, NULL, &status, a) > 0);
	CHECK(status == ZH_STATUS_INTERNAL && a->status == ZH_STATUS_INTERNAL && a->id == 300 && a->has_error);

	mpc_destroy(&m);
	free(a);
	free(env);
}

/* ---- random round trip ----------------------------------------------------------------------- */

#define ROUND_TRIPS 10000u

struct rand_req {
	uint32_t mask;                     /* KRN_REQ_HAS_* the request carries */
	uint64_t id;
	uint32_t model_len;
	char model[ZH_MODEL_NAME_MAX];
	uint32_t op_idx;
	uint32_t token_count;
	uint32_t tokens[ZH_TOKENS_MAX];
	uint32_t dense_count;
	float dense[ZH_DENSE_MAX];         /* what the decoder must produce */
	uint32_t max_new;
	uint32_t top_k;
	float temperature;
	uint64_t seed;
	uint32_t trace;
	uint32_t unknown_keys;
};

static const char *const op_names[] = { "score", "logits", "generate", "echo" };
static const enum zh_op op_values[] = { ZH_OP_SCORE, ZH_OP_LOGITS, ZH_OP_GENERATE, ZH_OP_ECHO };

/* Any msgpack value a future client might send under a key we do not know, nested a little. */
static void pack_random_value(struct mpc *m, uint32_t depth)
{
	uint32_t kind = rng_below(depth < 2 ? 10 : 8);
	char bytes[40];

	for (uint32_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (char)rng_next();
	switch (kind) {
	case 0: msgpack_pack_nil(&m->pk); break;
	case 1: msgpack_pack_true(&m->pk); break;
	case 2: msgpack_pack_uint64(&m->pk, rng_bits(rng_below(65))); break;
	case 3: msgpack_pack_int64(&m->pk, -(int64_t)rng_bits(rng_below(63)) - 1); break;
	case 4: msgpack_pack_double(&m->pk, (double)rng_next() / 3.0); break;
	case 5: msgpack_pack_str_with_body(&m->pk, bytes, rng_below(sizeof(bytes))); break;
	case 6: msgpack_pack_bin_with_body(&m->pk, bytes, rng_below(sizeof(bytes))); break;
	case 7: msgpack_pack_ext_with_body(&m->pk, bytes, rng_below(20), (int8_t)rng_next()); break;
	case 8: {
		uint32_t n = rng_below(4);
		msgpack_pack_array(&m->pk, n);
		for (uint32_t i = 0; i < n; i++)
			pack_random_value(m, depth + 1);
		break;
	}
	default: {
		uint32_t n = rng_below(3);
		msgpack_pack_map(&m->pk, n);
		for (uint32_t i = 0; i < n; i++) {
			pack_random_value(m, depth + 1);
			pack_random_value(m, depth + 1);
		}
		break;
	}
	}
}

/* A dense value in one of msgpack's numeric encodings; returns what the decoder should store. */
static float pack_random_dense(struct mpc *m)
{
	switch (rng_below(4)) {
	case 0: {
		float f = (float)((int64_t)rng_bits(24) - (1 << 23)) / 1024.0f;
		msgpack_pack_float(&m->pk, f);
		return f;
	}
	case 1: {
		double d = ((double)rng_next() / 18446744073709551616.0 - 0.5) * 1e30;
		msgpack_pack_double(&m->pk, d);
		return (float)d;
	}
	case 2: {
		uint64_t u = rng_bits(rng_below(65));
		msgpack_pack_uint64(&m->pk, u);
		return (float)(double)u;
	}
	default: {
		int64_t s = -(int64_t)rng_bits(rng_below(64)) - 1;
		msgpack_pack_int64(&m->pk, s);
		return (float)(double)s;
	}
	}
}

/* Write key `k` (a bit of KRN_REQ_HAS_*, or 0 for an unknown key) and its value. */
static void pack_key(struct mpc *m, struct rand_req *r, uint32_t bit, uint32_t unknown_idx)
{
	switch (bit) {
	case KRN_REQ_HAS_ID:
		mpc_cstr(m, "id");
		msgpack_pack_uint64(&m->pk, r->id);
		break;
	case KRN_REQ_HAS_MODEL:
		mpc_cstr(m, "model");
		msgpack_pack_str_with_body(&m->pk, r->model, r->model_len);
		break;
	case KRN_REQ_HAS_OP:
		mpc_cstr(m, "op");
		mpc_cstr(m, op_names[r->op_idx]);
		break;
	case KRN_REQ_HAS_TOKENS:
		mpc_cstr(m, "tokens");
		msgpack_pack_array(&m->pk, r->token_count);
		for (uint32_t i = 0; i < r->token_count; i++)
			msgpack_pack_uint32(&m->pk, r->tokens[i]);
		break;
	case KRN_REQ_HAS_DENSE:
		mpc_cstr(m, "dense");
		msgpack_pack_array(&m->pk, r->dense_count);
		for (uint32_t i = 0; i < r->dense_count; i++)
			r->dense[i] = pack_random_dense(m);
		break;
	case KRN_REQ_HAS_MAX_NEW:
		mpc_cstr(m, "max_new");
		msgpack_pack_uint32(&m->pk, r->max_new);
		break;
	case KRN_REQ_HAS_TOP_K:
		mpc_cstr(m, "top_k");
		msgpack_pack_uint32(&m->pk, r->top_k);
		break;
	case KRN_REQ_HAS_TEMPERATURE:
		mpc_cstr(m, "temperature");
		/* As float32, float64 or an integer: a client may send any number. */
		switch (rng_below(3)) {
		case 0:
			r->temperature = (float)rng_below(100001) / 1000.0f;
			msgpack_pack_float(&m->pk, r->temperature);
			break;
		case 1: {
			double d = (double)rng_below(1000001) / 10000.0;
			msgpack_pack_double(&m->pk, d);
			r->temperature = (float)d;
			break;
		}
		default:
			r->temperature = (float)rng_below(101);
			msgpack_pack_uint8(&m->pk, (uint8_t)r->temperature);
			break;
		}
		break;
	case KRN_REQ_HAS_SEED:
		mpc_cstr(m, "seed");
		msgpack_pack_uint64(&m->pk, r->seed);
		break;
	case KRN_REQ_HAS_TRACE:
		mpc_cstr(m, "trace");
		if (r->trace)
			msgpack_pack_true(&m->pk);
		else
			msgpack_pack_false(&m->pk);
		break;
	default: {
		char key[24];
		/* "x-" keeps it clear of every protocol key. */
		snprintf(key, sizeof(key), "x-%u-%u", unknown_idx, rng_below(1000));
		mpc_cstr(m, key);
		pack_random_value(m, 0);
		break;
	}
	}
}

static void rand_req_make(struct rand_req *r)
{
	memset(r, 0, sizeof(*r));
	r->mask = KRN_REQ_HAS_ID | ((uint32_t)rng_next() & 0x3feu);
	r->id = rng_bits(rng_below(65));
	r->model_len = rng_below(ZH_MODEL_NAME_MAX + 1);
	for (uint32_t i = 0; i < r->model_len; i++)
		r->model[i] = (char)rng_next(); /* any bytes, NUL included: the name is length-counted */
	r->op_idx = rng_below(ZH_ARRAY_SIZE(op_names));
	/* One request in fifty carries both arrays in full and will not fit a datagram. */
	int huge = rng_below(50) == 0;
	r->token_count = huge ? ZH_TOKENS_MAX : rng_below(ZH_TOKENS_MAX + 1);
	for (uint32_t i = 0; i < r->token_count; i++)
		r->tokens[i] = (uint32_t)rng_bits(rng_below(33));
	r->dense_count = huge ? ZH_DENSE_MAX : rng_below(ZH_DENSE_MAX / 2 + 1);
	if (huge)
		r->mask |= KRN_REQ_HAS_TOKENS | KRN_REQ_HAS_DENSE;
	r->max_new = (uint32_t)rng_bits(rng_below(33));
	r->top_k = (uint32_t)rng_bits(rng_below(33));
	r->seed = rng_bits(rng_below(65));
	r->trace = rng_below(2);
	r->unknown_keys = rng_below(4);
}

/* Pack the request's keys in a random order. */
static void rand_req_pack(struct mpc *m, struct rand_req *r)
{
	uint32_t keys[16], n = 0;

	for (uint32_t bit = 1; bit <= KRN_REQ_HAS_TRACE; bit <<= 1)
		if (r->mask & bit)
			keys[n++] = bit;
	for (uint32_t i = 0; i < r->unknown_keys; i++)
		keys[n++] = 0;
	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = rng_below(i + 1), t = keys[i];
		keys[i] = keys[j];
		keys[j] = t;
	}
	mpc_reset(m);
	msgpack_pack_map(&m->pk, n);
	for (uint32_t i = 0; i < n; i++)
		pack_key(m, r, keys[i], i);
}

/* Returns NULL when the decoded request is the one packed, else the first field that differs. */
static const char *rand_req_diff(const struct rand_req *r, const struct krn_request *req)
{
	uint32_t m = r->mask;

	if (req->present_mask != m)
		return "present_mask";
	if (req->id != r->id)
		return "id";
	if (req->model_name_len != ((m & KRN_REQ_HAS_MODEL) ? r->model_len : 0) ||
	    memcmp(req->model_name, r->model, req->model_name_len) != 0 || req->model_name[req->model_name_len])
		return "model";
	if (req->op != ((m & KRN_REQ_HAS_OP) ? op_values[r->op_idx] : ZH_OP_NONE))
		return "op";
	if (req->token_count != ((m & KRN_REQ_HAS_TOKENS) ? r->token_count : 0) ||
	    memcmp(req->tokens, r->tokens, req->token_count * sizeof(req->tokens[0])) != 0)
		return "tokens";
	if (req->dense_count != ((m & KRN_REQ_HAS_DENSE) ? r->dense_count : 0) ||
	    memcmp(req->dense, r->dense, req->dense_count * sizeof(req->dense[0])) != 0)
		return "dense";
	if (req->max_new != ((m & KRN_REQ_HAS_MAX_NEW) ? r->max_new : 0))
		return "max_new";
	if (req->top_k != ((m & KRN_REQ_HAS_TOP_K) ? r->top_k : 0))
		return "top_k";
	if (req->temperature != ((m & KRN_REQ_HAS_TEMPERATURE) ? r->temperature : 0.0f))
		return "temperature";
	if (req->seed != ((m & KRN_REQ_HAS_SEED) ? r->seed : 0))
		return "seed";
	if (req->trace != ((m & KRN_REQ_HAS_TRACE) ? r->trace : 0))
		return "trace";
	return NULL;
}

static void test_round_trip(void)
{
	struct rand_req *r = malloc(sizeof(*r));
	struct krn_request *req = malloc(sizeof(*req));
	uint32_t decoded = 0, oversize = 0;
	struct mpc m;

	if (!r || !req) {
		CHECK(!"malloc");
		free(r);
		free(req);
		return;
	}
	mpc_init(&m);
	for (uint32_t i = 0; i < ROUND_TRIPS; i++) {
		const char *error;

		rand_req_make(r);
		rand_req_pack(&m, r);
		enum zh_status st = decode_exact(mpc_data(&m), m.sb.size, req, &error);

		if (m.sb.size > ZH_REQ_MAX_BYTES) {
			/* Too large for a datagram: refused before it is read. */
			oversize++;
			CHECK_U64(st, ZH_STATUS_TOO_LARGE);
			continue;
		}
		decoded++;
		const char *diff = st == ZH_STATUS_OK ? rand_req_diff(r, req) : "status";
		if (diff)
			check_failed(__FILE__, __LINE__, "request %u (%zu bytes): %s differs (status %d, %s)", i,
				     m.sb.size, diff, (int)st, error ? error : "");
		else
			checks_passed++;
	}
	printf("  %-22s %u requests decoded, %u oversize refused\n", case_name, decoded, oversize);
	CHECK(decoded > 0 && oversize > 0);
	mpc_destroy(&m);
	free(req);
	free(r);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	RUN(test_reader_scalars);
	RUN(test_reader_bytes);
	RUN(test_reader_containers);
	RUN(test_reader_hostile);
	RUN(test_reader_helpers);
	RUN(test_writer_ints);
	RUN(test_writer_scalars);
	RUN(test_writer_strs);
	RUN(test_writer_containers);
	RUN(test_decode_full);
	RUN(test_decode_bounds);
	RUN(test_decode_bad);
	RUN(test_decode_truncated);
	RUN(test_answer_error);
	RUN(test_serve_echo);
	RUN(test_round_trip);
	return check_summary();
}
