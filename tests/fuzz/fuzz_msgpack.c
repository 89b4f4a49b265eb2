/* SPDX-License-Identifier: MIT */
/*
 * fuzz_msgpack.c: libFuzzer target for the bounded msgpack reader and writer (kernels/krn_msgpack.h).
 *
 * The input, copied into a malloc'ed buffer of exactly its size so that ASan sees any over-read, is
 * read two ways:
 *   - header by header with krn_mp_read, checking what each value claims against where the reader
 *     stands, and writing every header back with the krn_mp writer, which must produce msgpack-c's
 *     (smallest) encoding byte for byte and read back to the same value;
 *   - value by value with krn_mp_skip; each value it accepts is handed to msgpack-c (safe only
 *     because krn_mp_skip vouched for its container counts: msgpack-c 4.0 allocates whatever a
 *     header claims), which must consume the same bytes and build the same tree.
 *
 * Build and run: make fuzzers && build-fuzz/fuzz_msgpack CORPUS_DIR (see the Makefile's fuzz targets).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "krn_msgpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed check is a crash, so that libFuzzer saves the input that caused it. */
#define FUZZ_CHECK(cond)                                                                    \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                            \
		}                                                                           \
	} while (0)

/* msgpack-c's unpacker keeps a fixed stack of this many open containers and fails deeper. */
#define MPC_DEPTH_MAX 32u
/* Re-encoded values: a 5-byte header and a payload no longer than the input (-max_len). */
#define REWRITE_BYTES_MAX (64u * 1024u)

/* ---- writing a header back ------------------------------------------------------------------- */

/* A msgpack-c packer target with a fixed buffer: no allocation per value. */
struct fixed_buf {
	uint8_t bytes[REWRITE_BYTES_MAX];
	size_t used;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
	struct fixed_buf *f = data;

	if (len > sizeof(f->bytes) - f->used)
		return -1;
	memcpy(f->bytes + f->used, buf, len);
	f->used += len;
	return 0;
}

static struct fixed_buf mpc_out;
static uint8_t krn_out[REWRITE_BYTES_MAX];

/* Encode v with both writers; returns 0 if the type has no krn_mp writer (bin, ext). */
static int encode_both(const struct krn_mp_value *v, struct krn_mp_writer *w, msgpack_packer *pk)
{
	switch (v->type) {
	case KRN_MP_NIL: krn_mp_put_nil(w); msgpack_pack_nil(pk); return 1;
	case KRN_MP_BOOL:
		krn_mp_put_bool(w, v->v.boolean);
		v->v.boolean ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		return 1;
	case KRN_MP_UINT: krn_mp_put_uint(w, v->v.u); msgpack_pack_uint64(pk, v->v.u); return 1;
	case KRN_MP_INT: krn_mp_put_int(w, v->v.i); msgpack_pack_int64(pk, v->v.i); return 1;
	case KRN_MP_FLOAT32: krn_mp_put_float32(w, v->v.f32); msgpack_pack_float(pk, v->v.f32); return 1;
	case KRN_MP_FLOAT64: krn_mp_put_float64(w, v->v.f64); msgpack_pack_double(pk, v->v.f64); return 1;
	case KRN_MP_STR:
		krn_mp_put_str(w, (const char *)v->data, v->size);
		msgpack_pack_str_with_body(pk, v->data, v->size);
		return 1;
	case KRN_MP_ARRAY: krn_mp_put_array(w, v->size); msgpack_pack_array(pk, v->size); return 1;
	case KRN_MP_MAP: krn_mp_put_map(w, v->size); msgpack_pack_map(pk, v->size); return 1;
	default: return 0;
	}
}

static int same_value(const struct krn_mp_value *a, const struct krn_mp_value *b)
{
	if (a->type != b->type || a->size != b->size)
		return 0;
	switch (a->type) {
	case KRN_MP_BOOL: return a->v.boolean == b->v.boolean;
	case KRN_MP_UINT: return a->v.u == b->v.u;
	case KRN_MP_INT: return a->v.i == b->v.i;
	case KRN_MP_FLOAT32: return memcmp(&a->v.f32, &b->v.f32, sizeof(float)) == 0;
	case KRN_MP_FLOAT64: return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
	case KRN_MP_STR: return a->size == 0 || memcmp(a->data, b->data, a->size) == 0;
	default: return 1;
	}
}

/* The writer's encoding is msgpack-c's, never longer than what was read, and reads back the same. */
static void check_rewrite(const struct krn_mp_value *v, uint32_t read_bytes)
{
	struct krn_mp_writer w;
	msgpack_packer pk;
	struct krn_mp_reader r;
	struct krn_mp_value back;

	krn_mp_writer_init(&w, krn_out, sizeof(krn_out));
	mpc_out.used = 0;
	msgpack_packer_init(&pk, &mpc_out, fixed_write);
	if (!encode_both(v, &w, &pk))
		return;
	uint32_t n = krn_mp_writer_size(&w, krn_out);
	FUZZ_CHECK(!w.overflow && n == mpc_out.used && memcmp(krn_out, mpc_out.bytes, n) == 0);
	FUZZ_CHECK(n <= read_bytes);
	krn_mp_reader_init(&r, krn_out, n);
	int rc = krn_mp_read(&r, &back);
	/* A container header alone has no room for its elements: refused, but still reported. */
	FUZZ_CHECK(rc == 0 || (rc == KRN_MP_E_TOO_LARGE && v->size > 0));
	FUZZ_CHECK(same_value(v, &back));
}

/* ---- header by header ------------------------------------------------------------------------ */

static void check_header(const struct krn_mp_value *v, const uint8_t *before, const struct krn_mp_reader *r)
{
	double d;
	int is_number = v->type == KRN_MP_UINT || v->type == KRN_MP_INT || v->type == KRN_MP_FLOAT32 ||
			v->type == KRN_MP_FLOAT64;

	FUZZ_CHECK(r->pos > before && r->pos <= r->end);
	if (v->type == KRN_MP_STR || v->type == KRN_MP_BIN || v->type == KRN_MP_EXT)
		FUZZ_CHECK(v->data > before && v->data + v->size == r->pos);
	if (v->type == KRN_MP_ARRAY || v->type == KRN_MP_MAP)
		FUZZ_CHECK((uint64_t)v->size * (v->type == KRN_MP_MAP ? 2u : 1u) <= krn_mp_reader_left(r));
	if (v->type == KRN_MP_INT)
		FUZZ_CHECK(v->v.i < 0);
	FUZZ_CHECK((krn_mp_as_double(v, &d) == 0) == is_number);
	if (v->type == KRN_MP_STR)
		FUZZ_CHECK(krn_mp_str_eq(v, "id") == (v->size == 2 && memcmp(v->data, "id", 2) == 0));
}

static void read_headers(const uint8_t *buf, uint32_t size)
{
	struct krn_mp_reader r;
	struct krn_mp_value v;

	krn_mp_reader_init(&r, buf, size);
	while (krn_mp_reader_left(&r) > 0) {
		const uint8_t *before = r.pos;
		int rc = krn_mp_read(&r, &v);

		if (rc == KRN_MP_E_INVALID)
			FUZZ_CHECK(*before == 0xc1);
		if (rc == KRN_MP_E_TOO_LARGE)
			FUZZ_CHECK(v.type == KRN_MP_ARRAY || v.type == KRN_MP_MAP);
		if (rc) {
			FUZZ_CHECK(rc == KRN_MP_E_TRUNCATED || rc == KRN_MP_E_INVALID ||
				   rc == KRN_MP_E_TOO_LARGE);
			return;
		}
		check_header(&v, before, &r);
		check_rewrite(&v, (uint32_t)(r.pos - before));
	}
}

/* ---- value by value, against msgpack-c ------------------------------------------------------- */

/* The deepest container nesting of the value at buf, counted up to MPC_DEPTH_MAX + 1. */
static uint32_t nesting_depth(const uint8_t *buf, uint32_t len)
{
	uint64_t left[MPC_DEPTH_MAX + 2];
	uint32_t depth = 0, max = 0;
	struct krn_mp_reader r;
	struct krn_mp_value v;

	krn_mp_reader_init(&r, buf, len);
	left[0] = 1;
	while (left[0] > 0 || depth > 0) {
		if (left[depth] == 0) {
			depth--;
			continue;
		}
		if (krn_mp_read(&r, &v))
			return max;
		left[depth]--;
		if (v.type == KRN_MP_ARRAY || v.type == KRN_MP_MAP) {
			if (depth + 1 > MPC_DEPTH_MAX)
				return depth + 1;
			left[++depth] = v.type == KRN_MP_MAP ? 2ull * v.size : v.size;
			max = depth > max ? depth : max;
		}
	}
	return max;
}

static int payload_equal(const struct krn_mp_value *v, const char *ptr, uint32_t size)
{
	return v->size == size && (size == 0 || memcmp(v->data, ptr, size) == 0);
}

/* msgpack-c's tree in pre-order must be exactly the sequence of krn_mp_read headers. */
static void walk_same(const msgpack_object *o, struct krn_mp_reader *r)
{
	struct krn_mp_value v;
	double f32_widened;

	FUZZ_CHECK(krn_mp_read(r, &v) == 0);
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: FUZZ_CHECK(v.type == KRN_MP_NIL); break;
	case MSGPACK_OBJECT_BOOLEAN:
		FUZZ_CHECK(v.type == KRN_MP_BOOL && v.v.boolean == o->via.boolean);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: FUZZ_CHECK(v.type == KRN_MP_UINT && v.v.u == o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: FUZZ_CHECK(v.type == KRN_MP_INT && v.v.i == o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
		FUZZ_CHECK(v.type == KRN_MP_FLOAT32);
		f32_widened = v.v.f32;
		FUZZ_CHECK(memcmp(&f32_widened, &o->via.f64, sizeof(double)) == 0);
		break;
	case MSGPACK_OBJECT_FLOAT64:
		FUZZ_CHECK(v.type == KRN_MP_FLOAT64 && memcmp(&v.v.f64, &o->via.f64, sizeof(double)) == 0);
		break;
	case MSGPACK_OBJECT_STR:
		FUZZ_CHECK(v.type == KRN_MP_STR && payload_equal(&v, o->via.str.ptr, o->via.str.size));
		break;
	case MSGPACK_OBJECT_BIN:
		FUZZ_CHECK(v.type == KRN_MP_BIN && payload_equal(&v, o->via.bin.ptr, o->via.bin.size));
		break;
	case MSGPACK_OBJECT_EXT:
		FUZZ_CHECK(v.type == KRN_MP_EXT && v.ext_type == o->via.ext.type &&
			   payload_equal(&v, o->via.ext.ptr, o->via.ext.size));
		break;
	case MSGPACK_OBJECT_ARRAY:
		FUZZ_CHECK(v.type == KRN_MP_ARRAY && v.size == o->via.array.size);
		for (uint32_t k = 0; k < o->via.array.size; k++)
			walk_same(&o->via.array.ptr[k], r);
		break;
	case MSGPACK_OBJECT_MAP:
		FUZZ_CHECK(v.type == KRN_MP_MAP && v.size == o->via.map.size);
		for (uint32_t k = 0; k < o->via.map.size; k++) {
			walk_same(&o->via.map.ptr[k].key, r);
			walk_same(&o->via.map.ptr[k].val, r);
		}
		break;
	default:
		FUZZ_CHECK(!"msgpack-c object type unknown to this target");
	}
}

static void compare_with_msgpack_c(const uint8_t *buf, uint32_t left, uint32_t used, msgpack_unpacked *u)
{
	struct krn_mp_reader r;
	size_t off = 0;
	int rc = msgpack_unpack_next(u, (const char *)buf, left, &off);

	if (rc != MSGPACK_UNPACK_SUCCESS && rc != MSGPACK_UNPACK_EXTRA_BYTES) {
		/* msgpack-c's only excuse for refusing what krn_mp_skip accepted: its nesting limit. */
		FUZZ_CHECK(rc == MSGPACK_UNPACK_NOMEM_ERROR && nesting_depth(buf, used) >= MPC_DEPTH_MAX);
		return;
	}
	FUZZ_CHECK(off == used);
	krn_mp_reader_init(&r, buf, used);
	walk_same(&u->data, &r);
	FUZZ_CHECK(krn_mp_reader_left(&r) == 0);
}

static void skip_values(const uint8_t *buf, uint32_t size)
{
	msgpack_unpacked u;
	uint32_t off = 0;

	msgpack_unpacked_init(&u);
	while (off < size) {
		struct krn_mp_reader r;

		krn_mp_reader_init(&r, buf + off, size - off);
		if (krn_mp_skip(&r) != 0)
			break;
		FUZZ_CHECK(r.pos > buf + off && r.pos <= buf + size);
		uint32_t used = (uint32_t)(r.pos - (buf + off));
		compare_with_msgpack_c(buf + off, size - off, used, &u);
		off += used;
	}
	msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > REWRITE_BYTES_MAX - 16)
		return 0; /* keeps a re-encoded string inside the fixed buffers */
	uint8_t *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);
	read_headers(buf, (uint32_t)size);
	skip_values(buf, (uint32_t)size);
	free(buf);
	return 0;
}
