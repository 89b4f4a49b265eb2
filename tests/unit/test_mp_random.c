/* SPDX-License-Identifier: MIT */
/*
 * test_mp_random.c: krn_request_decode (kernels/krn_request.h) against a reference decoder written on
 * msgpack-c's object tree, on random protocol-v1 requests and random mutations of them.
 *
 * The generator packs requests with msgpack-c: keys in random order, optional keys present or not,
 * values of the right type mostly and of any type sometimes, bounds met, hit exactly and exceeded,
 * non-canonical encodings (a uint in an int16, a short string in a str16), unknown keys, duplicate and
 * non-string keys, trailing bytes. Each request is then mutated a few times (bits flipped, bytes
 * replaced, inserted, deleted, counts blown up, the tail cut off).
 *
 * For every buffer, krn_mp_skip over it is the guard: msgpack-c 4.0 believes container counts and
 * allocates for them (an 11-byte map32 header asks for 256 GiB), so it only sees buffers whose first
 * value krn_mp_skip accepted. When the guard refuses, krn_request_decode must refuse too. When it
 * accepts, msgpack-c must parse the same bytes, and the reference (the rules of docs/PROTOCOL.md,
 * applied in the order kernels/krn_request.c reads the map) must agree with krn_request_decode on the
 * status, on every decoded field when the status is ok, and on the id an error answer carries.
 *
 * The seed is fixed so that a failure reproduces; ZH_SEED=<n> explores another sequence.
 *
 * Exit status: 0 all buffers agreed, 1 a disagreement (each printed, up to a screenful).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "krn_msgpack.h"
#include "krn_request.h"

#define TEST_NAME "test_mp_random"

#define REQUESTS 20000u
#define MUTANTS_PER_REQUEST 5u
#define MUTATIONS_MAX 3u
/* Mutants may grow a little past a datagram, so that the size bound is crossed from both sides. */
#define MUTANT_BYTES_MAX 2048u
#define SEED_DEFAULT 0x7a65726f686f7021ull /* "zerohop!" */

/* msgpack-c's unpacker keeps a fixed stack of this many open containers and fails deeper. */
#define MPC_DEPTH_MAX 32u
/* The generator's own nesting; below msgpack-c's so that every well-formed request reaches it. */
#define GEN_DEPTH_MAX 4u

#define FAILURES_PRINTED_MAX 20u
#define DUMP_BYTES_MAX 48u

/* ---- known disagreements --------------------------------------------------------------------- */

/*
 * Two bugs this test found in kernels/krn_request.c, since fixed. The reference still tags the inputs
 * that reach them, so the summary shows how many regression inputs each run covered; a disagreement on
 * any of them fails like any other.
 */
enum known_bug {
	/* read_dense reuses its array header `v` as the element it reads, so the loop ends after the
	 * first element and the rest of the array is read as map keys and values. */
	KNOWN_DENSE_MULTI = 1u << 0,
	/* find_id reads a key with krn_mp_read (the header only) and skips one value, so a non-empty
	 * array or map key shifts every later key by its elements; the error answer can then carry an
	 * `id` taken from inside a key. */
	KNOWN_FIND_ID_CONTAINER_KEY = 1u << 1,
};
#define KNOWN_BUG_COUNT 2u

static const char *const known_bug_names[KNOWN_BUG_COUNT] = {
	"dense with 2+ elements (krn_request.c read_dense)",
	"non-empty container key before id (krn_request.c find_id)",
};

/* ---- random numbers -------------------------------------------------------------------------- */

struct rng {
	uint64_t s;
};

/* xorshift64*: small, fast, and the same sequence on every machine. */
static uint64_t rng_next(struct rng *g)
{
	g->s ^= g->s >> 12;
	g->s ^= g->s << 25;
	g->s ^= g->s >> 27;
	return g->s * 0x2545f4914f6cdd1dull;
}

/* 0..n-1 (n > 0); the modulo bias is irrelevant at these sizes. */
static uint32_t rnd(struct rng *g, uint32_t n)
{
	return (uint32_t)((rng_next(g) >> 32) % n);
}

static int chance(struct rng *g, uint32_t percent)
{
	return rnd(g, 100) < percent;
}

/* ---- the request generator ------------------------------------------------------------------- */

enum key_kind {
	K_UNKNOWN = 0,
	K_ID,
	K_MODEL,
	K_OP,
	K_TOKENS,
	K_DENSE,
	K_MAX_NEW,
	K_TOP_K,
	K_TEMPERATURE,
	K_SEED,
	K_TRACE,
	K_COUNT,
	K_NONSTR = K_COUNT, /* a key that is not a string */
};

/* Indexed by enum key_kind; key k owns bit 1 << (k - 1) of present_mask, as KRN_REQ_HAS_* say. */
static const char *const key_names[K_COUNT] = {
	"", "id", "model", "op", "tokens", "dense", "max_new", "top_k", "temperature", "seed", "trace",
};
ZH_STATIC_ASSERT(KRN_REQ_HAS_ID == 1u << (K_ID - 1), "bit of id");
ZH_STATIC_ASSERT(KRN_REQ_HAS_TOKENS == 1u << (K_TOKENS - 1), "bit of tokens");
ZH_STATIC_ASSERT(KRN_REQ_HAS_TRACE == 1u << (K_TRACE - 1), "bit of trace");

/* Near misses of real key names, and names a newer client might send. */
static const char *const unknown_names[] = {
	"x", "meta", "ID", "Id", "ids", "i", "token", "tokens ", "idd", "", "modelx", "trace_", "temperatur",
	"priority", "deadline_us", "op2",
};

static const char *const op_names[] = { "echo", "score", "logits", "generate", "ECHO", "", "echoo", "gen" };

struct gen {
	struct rng rng;
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void put_raw(struct gen *g, const uint8_t *bytes, size_t n)
{
	msgpack_sbuffer_write(&g->sb, (const char *)bytes, n);
}

/* A header with an n-byte big-endian length after `marker`. */
static void put_header(struct gen *g, uint8_t marker, uint32_t value, uint32_t n)
{
	uint8_t b[5] = { marker };

	for (uint32_t k = 0; k < n; k++)
		b[1 + k] = (uint8_t)(value >> (8 * (n - 1 - k)));
	put_raw(g, b, 1 + n);
}

/* Containers and strings get their smallest header mostly, a wider legal one sometimes. */
static void put_container(struct gen *g, int is_map, uint32_t count)
{
	uint32_t pick = rnd(&g->rng, 10);

	if (pick == 0 && count <= 0xffff)
		put_header(g, is_map ? 0xde : 0xdc, count, 2);
	else if (pick == 1)
		put_header(g, is_map ? 0xdf : 0xdd, count, 4);
	else if (is_map)
		msgpack_pack_map(&g->pk, count);
	else
		msgpack_pack_array(&g->pk, count);
}

static void put_str(struct gen *g, const void *s, uint32_t len)
{
	uint32_t pick = rnd(&g->rng, 10);

	if (pick == 0 && len <= 0xff)
		put_header(g, 0xd9, len, 1);
	else if (pick == 1 && len <= 0xffff)
		put_header(g, 0xda, len, 2);
	else if (pick == 2)
		put_header(g, 0xdb, len, 4);
	else
		msgpack_pack_str(&g->pk, len);
	msgpack_pack_str_body(&g->pk, s, len);
}

static void put_random_str(struct gen *g, uint32_t len)
{
	char s[64];

	for (uint32_t k = 0; k < len && k < sizeof(s); k++)
		s[k] = chance(&g->rng, 90) ? (char)('a' + rnd(&g->rng, 26)) : (char)rnd(&g->rng, 256);
	put_str(g, s, len < sizeof(s) ? len : (uint32_t)sizeof(s));
}

/* A random magnitude: the bit length is uniform, so small and huge values are both common. */
static uint64_t rand_bits(struct gen *g, uint32_t max_bits)
{
	uint32_t bits = rnd(&g->rng, max_bits + 1);

	return bits == 0 ? 0 : rng_next(&g->rng) >> (64 - bits);
}

/* A non-negative integer in its smallest encoding, a wider unsigned one, or a signed one. */
static void put_uint(struct gen *g, uint64_t v)
{
	switch (rnd(&g->rng, 6)) {
	case 0:
		if (v <= 0xffff) {
			msgpack_pack_fix_uint16(&g->pk, (uint16_t)v);
			return;
		}
		break;
	case 1:
		if (v <= 0xffffffffu) {
			msgpack_pack_fix_uint32(&g->pk, (uint32_t)v);
			return;
		}
		break;
	case 2:
		msgpack_pack_fix_uint64(&g->pk, v);
		return;
	case 3:
		if (v <= INT8_MAX) {
			msgpack_pack_fix_int8(&g->pk, (int8_t)v);
			return;
		}
		if (v <= INT32_MAX) {
			msgpack_pack_fix_int32(&g->pk, (int32_t)v);
			return;
		}
		if (v <= INT64_MAX) {
			msgpack_pack_fix_int64(&g->pk, (int64_t)v);
			return;
		}
		break;
	default:
		break;
	}
	msgpack_pack_uint64(&g->pk, v);
}

static void put_neg(struct gen *g)
{
	int64_t v = -1 - (int64_t)rand_bits(g, 63);

	if (chance(&g->rng, 20) && v >= INT16_MIN)
		msgpack_pack_fix_int16(&g->pk, (int16_t)v);
	else
		msgpack_pack_int64(&g->pk, v);
}

/* A float that is usually a plain number, sometimes a special one. */
static double rand_double(struct gen *g)
{
	switch (rnd(&g->rng, 12)) {
	case 0: return NAN;
	case 1: return INFINITY;
	case 2: return -INFINITY;
	case 3: return -0.0;
	case 4: {
		uint64_t bits = rng_next(&g->rng);
		double d;
		memcpy(&d, &bits, sizeof(d));
		return d;
	}
	default: return ((double)rnd(&g->rng, 200001) - 100000.0) / 64.0;
	}
}

static void put_number(struct gen *g)
{
	switch (rnd(&g->rng, 4)) {
	case 0: msgpack_pack_float(&g->pk, (float)rand_double(g)); break;
	case 1: msgpack_pack_double(&g->pk, rand_double(g)); break;
	case 2: put_uint(g, rand_bits(g, 64)); break;
	default: put_neg(g); break;
	}
}

static void put_any(struct gen *g, uint32_t depth);

static void put_any_container(struct gen *g, uint32_t depth)
{
	int is_map = chance(&g->rng, 40);
	uint32_t count = rnd(&g->rng, 5);

	put_container(g, is_map, count);
	for (uint32_t k = 0; k < count * (is_map ? 2u : 1u); k++) {
		if (is_map && k % 2 == 0 && chance(&g->rng, 80))
			put_random_str(g, rnd(&g->rng, 8));
		else
			put_any(g, depth - 1);
	}
}

/* A value of any msgpack type. */
static void put_any(struct gen *g, uint32_t depth)
{
	uint8_t bytes[24];
	uint32_t len;

	switch (rnd(&g->rng, depth > 0 ? 11 : 9)) {
	case 0: msgpack_pack_nil(&g->pk); break;
	case 1: chance(&g->rng, 50) ? msgpack_pack_true(&g->pk) : msgpack_pack_false(&g->pk); break;
	case 2: put_uint(g, rand_bits(g, 64)); break;
	case 3: put_neg(g); break;
	case 4: msgpack_pack_float(&g->pk, (float)rand_double(g)); break;
	case 5: msgpack_pack_double(&g->pk, rand_double(g)); break;
	case 6: put_random_str(g, rnd(&g->rng, 40)); break;
	case 7:
		len = rnd(&g->rng, sizeof(bytes));
		for (uint32_t k = 0; k < len; k++)
			bytes[k] = (uint8_t)rnd(&g->rng, 256);
		if (chance(&g->rng, 50)) {
			msgpack_pack_bin(&g->pk, len);
			msgpack_pack_bin_body(&g->pk, bytes, len);
		} else {
			msgpack_pack_ext(&g->pk, len, (int8_t)rnd(&g->rng, 256));
			msgpack_pack_ext_body(&g->pk, bytes, len);
		}
		break;
	case 8: put_str(g, "id", 2); break; /* a string that is a key name, as a value */
	default: put_any_container(g, depth); break;
	}
}

/* How many elements a bounded array gets: small mostly, around the bound sometimes. */
static uint32_t rand_count(struct gen *g, uint32_t bound)
{
	uint32_t r = rnd(&g->rng, 100);

	if (r < 80)
		return rnd(&g->rng, 5);
	if (r < 90)
		return rnd(&g->rng, 40);
	switch (rnd(&g->rng, 4)) {
	case 0: return bound - 1;
	case 1: return bound;
	case 2: return bound + 1;
	default: return rnd(&g->rng, bound + bound / 4);
	}
}

static void put_tokens(struct gen *g)
{
	uint32_t count = rand_count(g, ZH_TOKENS_MAX);

	put_container(g, 0, count);
	for (uint32_t k = 0; k < count; k++) {
		uint32_t r = rnd(&g->rng, 1000);

		if (r < 970)
			put_uint(g, rand_bits(g, 32));
		else if (r < 990)
			put_uint(g, rand_bits(g, 64));
		else
			put_any(g, 1);
	}
}

static void put_dense(struct gen *g)
{
	uint32_t count = rand_count(g, ZH_DENSE_MAX);

	put_container(g, 0, count);
	for (uint32_t k = 0; k < count; k++) {
		if (chance(&g->rng, 98))
			put_number(g);
		else
			put_any(g, 1);
	}
}

static void put_temperature(struct gen *g)
{
	switch (rnd(&g->rng, 8)) {
	case 0: msgpack_pack_double(&g->pk, 0.0); break;
	case 1: msgpack_pack_double(&g->pk, 100.0); break;
	case 2: msgpack_pack_double(&g->pk, nextafter(100.0, 200.0)); break;
	case 3: msgpack_pack_float(&g->pk, (float)rnd(&g->rng, 1100) / 10.0f); break;
	case 4: put_uint(g, rnd(&g->rng, 120)); break;
	case 5: put_number(g); break;
	default: msgpack_pack_double(&g->pk, ((double)rnd(&g->rng, 11001) - 500.0) / 100.0); break;
	}
}

/* The right type for the key, mostly; any type sometimes. */
static void put_value(struct gen *g, enum key_kind k)
{
	if (k == K_UNKNOWN || k == K_NONSTR || chance(&g->rng, 6)) {
		put_any(g, rnd(&g->rng, GEN_DEPTH_MAX));
		return;
	}
	switch (k) {
	case K_ID:
	case K_SEED: put_uint(g, rand_bits(g, 64)); break;
	case K_MODEL:
		if (chance(&g->rng, 50))
			put_str(g, "echo", 4);
		else
			put_random_str(g, rnd(&g->rng, ZH_MODEL_NAME_MAX + 10));
		break;
	case K_OP: {
		/* The four real names mostly, near misses sometimes. */
		const char *op = op_names[rnd(&g->rng, chance(&g->rng, 80) ? 4 : ZH_ARRAY_SIZE(op_names))];
		put_str(g, op, (uint32_t)strlen(op));
		break;
	}
	case K_TOKENS: put_tokens(g); break;
	case K_DENSE: put_dense(g); break;
	case K_MAX_NEW:
	case K_TOP_K: put_uint(g, rand_bits(g, chance(&g->rng, 90) ? 32 : 64)); break;
	case K_TEMPERATURE: put_temperature(g); break;
	case K_TRACE: chance(&g->rng, 50) ? msgpack_pack_true(&g->pk) : msgpack_pack_false(&g->pk); break;
	default: break;
	}
}

static void put_key(struct gen *g, enum key_kind k)
{
	if (k == K_NONSTR) {
		put_any(g, 2);
	} else if (k == K_UNKNOWN) {
		if (chance(&g->rng, 70)) {
			const char *name = unknown_names[rnd(&g->rng, ZH_ARRAY_SIZE(unknown_names))];
			put_str(g, name, (uint32_t)strlen(name));
		} else {
			put_random_str(g, rnd(&g->rng, 12));
		}
	} else {
		put_str(g, key_names[k], (uint32_t)strlen(key_names[k]));
	}
}

#define GEN_KEYS_MAX 48u

/* One request into g->sb: a map mostly, keys shuffled, bounds met and crossed. */
static void gen_request(struct gen *g)
{
	uint8_t keys[GEN_KEYS_MAX];
	uint32_t n = 0;

	if (chance(&g->rng, 3)) {
		put_any(g, GEN_DEPTH_MAX);
		return;
	}
	for (uint32_t k = K_ID; k < K_COUNT; k++)
		if (chance(&g->rng, k == K_ID ? 92 : 40))
			keys[n++] = (uint8_t)k;
	uint32_t unknown = chance(&g->rng, 4) ? ZH_REQ_KEYS_MAX - 12 + rnd(&g->rng, 20) : rnd(&g->rng, 3);
	for (uint32_t k = 0; k < unknown && n < GEN_KEYS_MAX - 2; k++)
		keys[n++] = K_UNKNOWN;
	if (n > 0 && chance(&g->rng, 4)) {
		uint8_t dup = keys[rnd(&g->rng, n)];
		keys[n++] = dup;
	}
	if (chance(&g->rng, 4))
		keys[n++] = K_NONSTR;
	for (uint32_t k = n; k > 1; k--) {
		uint32_t j = rnd(&g->rng, k);
		uint8_t t = keys[k - 1];
		keys[k - 1] = keys[j];
		keys[j] = t;
	}
	put_container(g, 1, n);
	for (uint32_t k = 0; k < n; k++) {
		put_key(g, (enum key_kind)keys[k]);
		put_value(g, (enum key_kind)keys[k]);
	}
	if (chance(&g->rng, 2))
		put_any(g, 1);
}

/* ---- mutations ------------------------------------------------------------------------------- */

static const uint8_t interesting_bytes[] = {
	0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc7, 0xca, 0xcb, 0xcf, 0xd3,
	0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
};

/* Apply 1..MUTATIONS_MAX edits to buf (len bytes, room for MUTANT_BYTES_MAX); returns the new length. */
static uint32_t mutate(struct rng *g, uint8_t *buf, uint32_t len)
{
	uint32_t edits = 1 + rnd(g, MUTATIONS_MAX);

	for (uint32_t e = 0; e < edits && len > 0; e++) {
		uint32_t at = rnd(g, len), n = 1 + rnd(g, 4);

		switch (rnd(g, 7)) {
		case 0: buf[at] ^= (uint8_t)(1u << rnd(g, 8)); break;
		case 1: buf[at] = (uint8_t)rnd(g, 256); break;
		case 2: buf[at] = interesting_bytes[rnd(g, ZH_ARRAY_SIZE(interesting_bytes))]; break;
		case 3:
			if (len + n > MUTANT_BYTES_MAX)
				break;
			memmove(buf + at + n, buf + at, len - at);
			for (uint32_t k = 0; k < n; k++)
				buf[at + k] = (uint8_t)rnd(g, 256);
			len += n;
			break;
		case 4:
			n = n < len - at ? n : len - at;
			memmove(buf + at, buf + at + n, len - at - n);
			len -= n;
			break;
		case 5: len = at; break;
		default:
			/* A length or count field turned huge: the case the guard exists for. */
			for (uint32_t k = 0; k < n && at + k < len; k++)
				buf[at + k] = 0xff;
			break;
		}
	}
	return len;
}

/* ---- the reference decoder ------------------------------------------------------------------- */

static int obj_is_number(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
	       o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64;
}

static double obj_as_double(const msgpack_object *o)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (double)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return (double)o->via.i64;
	return o->via.f64; /* msgpack-c widens float32 to double exactly */
}

static int obj_str_eq(const msgpack_object *o, const char *s)
{
	size_t len = strlen(s);

	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == len && memcmp(o->via.str.ptr, s, len) == 0;
}

static int obj_is_uint_max(const msgpack_object *o, uint64_t max)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= max;
}

static enum key_kind ref_lookup(const msgpack_object *key)
{
	for (uint32_t k = K_ID; k < K_COUNT; k++)
		if (obj_str_eq(key, key_names[k]))
			return (enum key_kind)k;
	return K_UNKNOWN;
}

/* An array bounded by the protocol: not an array is a bad request, too many elements too large. */
static enum zh_status ref_array(const msgpack_object *o, uint32_t max)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return ZH_STATUS_BAD_REQUEST;
	return o->via.array.size > max ? ZH_STATUS_TOO_LARGE : ZH_STATUS_OK;
}

static enum zh_status ref_tokens(const msgpack_object *o, struct krn_request *req)
{
	enum zh_status st = ref_array(o, ZH_TOKENS_MAX);

	if (st != ZH_STATUS_OK)
		return st;
	req->token_count = o->via.array.size;
	for (uint32_t k = 0; k < o->via.array.size; k++) {
		if (!obj_is_uint_max(&o->via.array.ptr[k], UINT32_MAX))
			return ZH_STATUS_BAD_REQUEST;
		req->tokens[k] = (uint32_t)o->via.array.ptr[k].via.u64;
	}
	return ZH_STATUS_OK;
}

static enum zh_status ref_dense(const msgpack_object *o, struct krn_request *req, unsigned *known)
{
	enum zh_status st = ref_array(o, ZH_DENSE_MAX);

	if (st != ZH_STATUS_OK)
		return st;
	if (o->via.array.size >= 2 && obj_is_number(&o->via.array.ptr[0]))
		*known |= KNOWN_DENSE_MULTI;
	req->dense_count = o->via.array.size;
	for (uint32_t k = 0; k < o->via.array.size; k++) {
		if (!obj_is_number(&o->via.array.ptr[k]))
			return ZH_STATUS_BAD_REQUEST;
		req->dense[k] = (float)obj_as_double(&o->via.array.ptr[k]);
	}
	return ZH_STATUS_OK;
}

/* Names are copied byte for byte; the model table lookup is not the decoder's business. */
static enum zh_status ref_model(const msgpack_object *o, struct krn_request *req)
{
	/* A name over its stated bound is too large, like every bound of docs/PROTOCOL.md. */
	if (o->type != MSGPACK_OBJECT_STR)
		return ZH_STATUS_BAD_REQUEST;
	if (o->via.str.size > ZH_MODEL_NAME_MAX)
		return ZH_STATUS_TOO_LARGE;
	memcpy(req->model_name, o->via.str.ptr, o->via.str.size);
	req->model_name[o->via.str.size] = '\0';
	req->model_name_len = o->via.str.size;
	return ZH_STATUS_OK;
}

static enum zh_status ref_op(const msgpack_object *o, struct krn_request *req)
{
	static const struct {
		const char *name;
		enum zh_op op;
	} ops[] = { { "echo", ZH_OP_ECHO }, { "score", ZH_OP_SCORE }, { "logits", ZH_OP_LOGITS },
		    { "generate", ZH_OP_GENERATE } };

	for (uint32_t k = 0; k < ZH_ARRAY_SIZE(ops); k++) {
		if (obj_str_eq(o, ops[k].name)) {
			req->op = ops[k].op;
			return ZH_STATUS_OK;
		}
	}
	return ZH_STATUS_BAD_REQUEST;
}

static enum zh_status ref_value(enum key_kind k, const msgpack_object *o, struct krn_request *req,
				unsigned *known)
{
	switch (k) {
	case K_ID:
	case K_SEED:
		if (!obj_is_uint_max(o, UINT64_MAX))
			return ZH_STATUS_BAD_REQUEST;
		*(k == K_ID ? &req->id : &req->seed) = o->via.u64;
		return ZH_STATUS_OK;
	case K_MAX_NEW:
	case K_TOP_K:
		if (!obj_is_uint_max(o, UINT32_MAX))
			return ZH_STATUS_BAD_REQUEST;
		*(k == K_MAX_NEW ? &req->max_new : &req->top_k) = (uint32_t)o->via.u64;
		return ZH_STATUS_OK;
	case K_MODEL: return ref_model(o, req);
	case K_OP: return ref_op(o, req);
	case K_TOKENS: return ref_tokens(o, req);
	case K_DENSE: return ref_dense(o, req, known);
	case K_TEMPERATURE: {
		double d = obj_is_number(o) ? obj_as_double(o) : NAN;
		if (!(d >= 0.0 && d <= 100.0))
			return ZH_STATUS_BAD_REQUEST;
		req->temperature = (float)d;
		return ZH_STATUS_OK;
	}
	case K_TRACE:
		if (o->type != MSGPACK_OBJECT_BOOLEAN)
			return ZH_STATUS_BAD_REQUEST;
		req->trace = o->via.boolean ? 1 : 0;
		return ZH_STATUS_OK;
	default:
		return ZH_STATUS_OK; /* unknown keys are skipped */
	}
}

/* The documented rules, checked in the order the map is read: the first rule broken decides. */
static enum zh_status ref_rules(const msgpack_object *root, size_t used, size_t size, struct krn_request *req,
				unsigned *known)
{
	if (size > ZH_REQ_MAX_BYTES)
		return ZH_STATUS_TOO_LARGE;
	if (root->type != MSGPACK_OBJECT_MAP)
		return ZH_STATUS_BAD_REQUEST;
	if (root->via.map.size > ZH_REQ_KEYS_MAX)
		return ZH_STATUS_TOO_LARGE;
	for (uint32_t k = 0; k < root->via.map.size; k++) {
		const msgpack_object_kv *kv = &root->via.map.ptr[k];

		if (kv->key.type != MSGPACK_OBJECT_STR)
			return ZH_STATUS_BAD_REQUEST;
		enum key_kind key = ref_lookup(&kv->key);
		if (key != K_UNKNOWN) {
			uint32_t bit = 1u << (key - 1);
			if (req->present_mask & bit)
				return ZH_STATUS_BAD_REQUEST; /* duplicate key */
			req->present_mask |= bit;
		}
		enum zh_status st = ref_value(key, &kv->val, req, known);
		if (st != ZH_STATUS_OK)
			return st;
	}
	if (used != size)
		return ZH_STATUS_BAD_REQUEST; /* trailing bytes */
	return req->present_mask & KRN_REQ_HAS_ID ? ZH_STATUS_OK : ZH_STATUS_BAD_REQUEST;
}

/* The id an error answer carries: the first `id` key among the first ZH_REQ_KEYS_MAX, if a uint. */
static void ref_error_id(const msgpack_object *root, struct krn_request *req, unsigned *known)
{
	if (root->type != MSGPACK_OBJECT_MAP)
		return;
	for (uint32_t k = 0; k < root->via.map.size && k < ZH_REQ_KEYS_MAX; k++) {
		const msgpack_object_kv *kv = &root->via.map.ptr[k];

		if (obj_str_eq(&kv->key, "id")) {
			if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
				req->id = kv->val.via.u64;
				req->present_mask = KRN_REQ_HAS_ID;
			}
			return;
		}
		if ((kv->key.type == MSGPACK_OBJECT_ARRAY && kv->key.via.array.size > 0) ||
		    (kv->key.type == MSGPACK_OBJECT_MAP && kv->key.via.map.size > 0))
			*known |= KNOWN_FIND_ID_CONTAINER_KEY;
	}
}

static enum zh_status ref_decode(const msgpack_object *root, size_t used, size_t size,
				 struct krn_request *req, unsigned *known)
{
	memset(req, 0, offsetof(struct krn_request, tokens));
	req->op = ZH_OP_NONE;
	enum zh_status st = ref_rules(root, used, size, req, known);
	if (st != ZH_STATUS_OK) {
		/* An error answer names the request only by the id it could find. */
		req->present_mask = 0;
		req->id = 0;
		if (size <= ZH_REQ_MAX_BYTES)
			ref_error_id(root, req, known);
	}
	return st;
}

/* For a buffer the guard refused: does the map reach a `dense` array of 2+ elements? */
static int reaches_dense_multi(const uint8_t *buf, uint32_t len)
{
	struct krn_mp_reader r;
	struct krn_mp_value v, key;

	krn_mp_reader_init(&r, buf, len);
	if (krn_mp_read(&r, &v) || v.type != KRN_MP_MAP)
		return 0;
	for (uint32_t k = 0; k < v.size && k < ZH_REQ_KEYS_MAX; k++) {
		if (krn_mp_read(&r, &key) || key.type != KRN_MP_STR)
			return 0;
		if (krn_mp_str_eq(&key, "dense")) {
			int rc = krn_mp_read(&r, &v);
			return (rc == 0 || rc == KRN_MP_E_TOO_LARGE) && v.type == KRN_MP_ARRAY && v.size >= 2;
		}
		if (krn_mp_skip(&r))
			return 0;
	}
	return 0;
}

/* ---- comparing ------------------------------------------------------------------------------- */

/* Why two decoded requests differ, or NULL when they agree. Errors carry only the id. */
static const char *request_diff(const struct krn_request *a, const struct krn_request *b, enum zh_status st)
{
	if (a->present_mask != b->present_mask)
		return "present_mask";
	if (a->id != b->id)
		return "id";
	if (st != ZH_STATUS_OK)
		return NULL;
	if (a->op != b->op)
		return "op";
	if (a->model_name_len != b->model_name_len ||
	    memcmp(a->model_name, b->model_name, a->model_name_len + 1))
		return "model";
	if (a->token_count != b->token_count ||
	    memcmp(a->tokens, b->tokens, a->token_count * sizeof(a->tokens[0])))
		return "tokens";
	/* Bits, not values: NaN features must survive as the same NaN. */
	if (a->dense_count != b->dense_count ||
	    memcmp(a->dense, b->dense, a->dense_count * sizeof(a->dense[0])))
		return "dense";
	if (a->max_new != b->max_new || a->top_k != b->top_k || a->trace != b->trace || a->seed != b->seed)
		return "max_new, top_k, trace or seed";
	if (memcmp(&a->temperature, &b->temperature, sizeof(a->temperature)))
		return "temperature";
	return NULL;
}

struct run_stats {
	uint64_t buffers;
	uint64_t status[ZH_STATUS_COUNT];
	uint64_t requests_ok; /* unmutated requests that decoded ok: the field comparisons' coverage */
	uint64_t guard_refused;
	uint64_t deep_skipped;
	uint64_t known[KNOWN_BUG_COUNT];
	uint64_t failed;
	int strict;
};

static void report(struct run_stats *rs, int mutant, uint64_t n, const uint8_t *buf, uint32_t len,
		   const char *why, int c_st, const char *c_err, int ref_st)
{
	rs->failed++;
	if (rs->failed > FAILURES_PRINTED_MAX)
		return;
	printf("FAIL %srequest %" PRIu64 " (%u bytes): %s; krn_request_decode %d \"%s\", reference %d; bytes",
	       mutant ? "mutant of " : "", n, len, why, c_st, c_err, ref_st);
	for (uint32_t k = 0; k < len && k < DUMP_BYTES_MAX; k++)
		printf(" %02x", buf[k]);
	printf("%s\n", len > DUMP_BYTES_MAX ? " ..." : "");
}

/* A disagreement on an input that reaches a fixed bug is counted under that bug, and fails. */
static int excused(struct run_stats *rs, unsigned known)
{
	for (uint32_t b = 0; b < KNOWN_BUG_COUNT; b++) {
		if (known & (1u << b)) {
			rs->known[b]++;
			return !rs->strict;
		}
	}
	return 0;
}

static struct krn_request c_req, ref_req;

/* Open a maximum nesting count to stay inside msgpack-c's stack, without recursion. */
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
		uint64_t n = v.type == KRN_MP_ARRAY ? v.size : v.type == KRN_MP_MAP ? 2ull * v.size : 0;
		if (v.type == KRN_MP_ARRAY || v.type == KRN_MP_MAP) {
			if (depth + 1 > MPC_DEPTH_MAX)
				return depth + 1;
			left[++depth] = n;
			max = depth > max ? depth : max;
		}
	}
	return max;
}

static void check_buffer(struct run_stats *rs, msgpack_unpacked *mpc, int mutant, uint64_t n,
			 const uint8_t *src, uint32_t len)
{
	/* Exactly the buffer's size, so that ASan sees a read past its end. */
	uint8_t *buf = malloc(len ? len : 1);
	struct krn_mp_reader r;
	const char *err = NULL;
	unsigned known = 0;
	size_t off = 0;

	if (!buf) {
		report(rs, mutant, n, src, 0, "out of memory", -1, "", -1);
		return;
	}
	memcpy(buf, src, len);
	rs->buffers++;
	enum zh_status st = krn_request_decode(buf, len, &c_req, &err);
	if (st >= ZH_STATUS_COUNT || !err || (st == ZH_STATUS_OK) != (err[0] == '\0') ||
	    strlen(err) > ZH_ERROR_TEXT_MAX) {
		report(rs, mutant, n, buf, len, "status or error text out of range", (int)st,
		       err ? err : "(null)", -1);
		goto out;
	}
	rs->status[st]++;
	if (st == ZH_STATUS_OK && !mutant)
		rs->requests_ok++;

	krn_mp_reader_init(&r, buf, len);
	if (krn_mp_skip(&r) != 0) {
		rs->guard_refused++;
		if (st == ZH_STATUS_OK && excused(rs, reaches_dense_multi(buf, len) ? KNOWN_DENSE_MULTI : 0))
			goto out;
		if (st != ZH_STATUS_BAD_REQUEST && st != ZH_STATUS_TOO_LARGE)
			report(rs, mutant, n, buf, len, "accepted msgpack that krn_mp_skip refuses", (int)st,
			       err, -1);
		else if (len > ZH_REQ_MAX_BYTES && st != ZH_STATUS_TOO_LARGE)
			report(rs, mutant, n, buf, len, "oversized datagram not too_large", (int)st, err, -1);
		goto out;
	}
	uint32_t used = len - krn_mp_reader_left(&r);
	int mrc = msgpack_unpack_next(mpc, (const char *)buf, len, &off);
	if (mrc == MSGPACK_UNPACK_NOMEM_ERROR && nesting_depth(buf, len) > MPC_DEPTH_MAX) {
		rs->deep_skipped++;
		goto out;
	}
	if ((mrc != MSGPACK_UNPACK_SUCCESS && mrc != MSGPACK_UNPACK_EXTRA_BYTES) || off != used) {
		report(rs, mutant, n, buf, len, "msgpack-c and krn_mp_skip disagree on the first value",
		       (int)st, err, mrc);
		goto out;
	}
	enum zh_status ref_st = ref_decode(&mpc->data, used, len, &ref_req, &known);
	const char *diff = ref_st != st ? "status" : request_diff(&c_req, &ref_req, st);
	if (diff && !excused(rs, known))
		report(rs, mutant, n, buf, len, diff, (int)st, err, (int)ref_st);
out:
	free(buf);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(void)
{
	const char *seed_env = getenv("ZH_SEED");
	struct run_stats rs = { .strict = 1 };
	static uint8_t mutant[MUTANT_BYTES_MAX];
	struct gen g;
	msgpack_unpacked mpc;
	uint64_t started_ns = now_ns();

	g.rng.s = seed_env ? strtoull(seed_env, NULL, 0) : SEED_DEFAULT;
	if (g.rng.s == 0)
		g.rng.s = SEED_DEFAULT; /* xorshift stays at zero forever */
	uint64_t seed = g.rng.s;
	msgpack_sbuffer_init(&g.sb);
	msgpack_packer_init(&g.pk, &g.sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&mpc);

	for (uint64_t i = 0; i < REQUESTS; i++) {
		msgpack_sbuffer_clear(&g.sb);
		gen_request(&g);
		uint32_t len = (uint32_t)g.sb.size;
		check_buffer(&rs, &mpc, 0, i, (const uint8_t *)g.sb.data, len);
		for (uint32_t m = 0; m < MUTANTS_PER_REQUEST && len <= MUTANT_BYTES_MAX; m++) {
			memcpy(mutant, g.sb.data, len);
			uint32_t mlen = mutate(&g.rng, mutant, len);
			check_buffer(&rs, &mpc, 1, i, mutant, mlen);
		}
	}
	msgpack_unpacked_destroy(&mpc);
	msgpack_sbuffer_destroy(&g.sb);

	printf("%s: seed %#" PRIx64 ", %u requests (%" PRIu64 " ok) and their mutants, %" PRIu64
	       " buffers in %.1f s: ok %" PRIu64 ", bad_request %" PRIu64 ", too_large %" PRIu64 "; %" PRIu64
	       " refused by the guard, %" PRIu64 " nested past msgpack-c\n",
	       TEST_NAME, seed, REQUESTS, rs.requests_ok, rs.buffers, (double)(now_ns() - started_ns) / 1e9,
	       rs.status[ZH_STATUS_OK], rs.status[ZH_STATUS_BAD_REQUEST], rs.status[ZH_STATUS_TOO_LARGE],
	       rs.guard_refused, rs.deep_skipped);
	for (uint32_t b = 0; b < KNOWN_BUG_COUNT; b++)
		printf("%s: regression inputs for the fixed bug in %s: %" PRIu64 " disagreements\n", TEST_NAME,
		       known_bug_names[b], rs.known[b]);
	printf("%s: %s (%" PRIu64 " failed)\n", TEST_NAME, rs.failed ? "FAIL" : "ok", rs.failed);
	return rs.failed ? 1 : 0;
}
