/* SPDX-License-Identifier: MIT */
/*
 * test_mp_suite.c: the bounded msgpack reader (kernels/krn_msgpack.h) against msgpack-c and against the
 * values the msgpack test suite expects (tests/data/msgpack-test-suite, kawanet/msgpack-test-suite 1.0.0:
 * 85 cases, 233 encodings of nil, bool, binary, numbers, bignums, strings, arrays, maps, timestamps
 * and ext).
 *
 * Every encoding is decoded twice, into a small tree by a recursive walk over krn_mp_read and into
 * msgpack-c's object tree by msgpack_unpack_next. Both must succeed and consume every byte; their trees
 * must be equal type for type, and each must equal the suite's value (numbers by value, so that 1 and
 * 1.0f are the same number there). Every strict prefix of every encoding must be refused by
 * krn_mp_skip, which is how the device tells a truncated datagram from a whole one.
 *
 * Every encoding is held in a malloc'ed buffer of exactly its size, so an ASan build catches a read
 * one byte past the end in either decoder.
 *
 * The data is found through $ZH_TEST_DATA, then next to the executable (BUILD/tests/ -> tests/data),
 * then as tests/data below the current directory.
 *
 * Exit status: 0 all checks passed, 1 a check failed, 77 the suite's JSON was not found.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json.h>
#include <msgpack.h>

#include "krn_msgpack.h"

#define TEST_NAME "test_mp_suite"
#define SUITE_REL_PATH "msgpack-test-suite/msgpack-test-suite.json"

/* The suite's own count (its README and SOURCE.md); a different count means a damaged copy. */
#define SUITE_CASES 85u
#define SUITE_ENCODINGS 233u

/* The largest value in the suite is a 16-element array; these bounds leave room and stop a decoder
 * that loops on a bad count from running away. */
#define TREE_NODES_MAX 64u
#define TREE_DEPTH_MAX 8u
#define TREE_ARENA_BYTES 256u
#define ENCODING_BYTES_MAX 64u

/* Timestamp nanoseconds run 0..999,999,999 (msgpack spec, timestamp extension type -1). */
#define TS_NSEC_MAX 999999999u
#define TS_EXT_TYPE (-1)

/* ---- value trees ----------------------------------------------------------------------------- */

enum tv_kind {
	TV_NIL,
	TV_BOOL,
	TV_UINT,      /* non-negative integer */
	TV_INT,       /* negative integer */
	TV_FLOAT32,
	TV_FLOAT64,
	TV_STR,
	TV_BIN,
	TV_EXT,
	TV_ARRAY,
	TV_MAP,
	TV_TIMESTAMP, /* expected values only: seconds and nanoseconds, matched against ext -1 */
};

struct tv {
	enum tv_kind kind;
	int boolean;
	uint64_t u;       /* TV_UINT */
	int64_t i;        /* TV_INT; TV_TIMESTAMP seconds */
	double f;         /* TV_FLOAT32 (widened exactly), TV_FLOAT64 */
	uint32_t nsec;    /* TV_TIMESTAMP */
	const uint8_t *data; /* STR/BIN/EXT payload */
	uint32_t size;    /* payload bytes; array elements; map pairs */
	int8_t ext_type;
	uint32_t first;   /* index of the first child: arrays have `size`, maps 2 * `size` (key, value) */
};

struct tree {
	struct tv nodes[TREE_NODES_MAX];
	uint32_t used;
	uint8_t arena[TREE_ARENA_BYTES]; /* payload bytes decoded from the JSON's hex strings */
	uint32_t arena_used;
};

/* Reserve n contiguous child nodes; returns the index of the first, or UINT32_MAX if out of room. */
static uint32_t tree_alloc(struct tree *t, uint64_t n)
{
	if (n > TREE_NODES_MAX - t->used)
		return UINT32_MAX;
	uint32_t first = t->used;
	t->used += (uint32_t)n;
	memset(&t->nodes[first], 0, (size_t)n * sizeof(t->nodes[0]));
	return first;
}

static void tree_init(struct tree *t)
{
	t->used = 0;
	t->arena_used = 0;
	tree_alloc(t, 1); /* the root is node 0 */
}

static uint32_t tv_children(const struct tv *v)
{
	if (v->kind == TV_ARRAY)
		return v->size;
	if (v->kind == TV_MAP)
		return 2 * v->size;
	return 0;
}

/* ---- the tree from krn_mp -------------------------------------------------------------------- */

#define E_TREE_FULL (-100)

static int tree_from_krn(struct tree *t, struct krn_mp_reader *r, uint32_t idx, uint32_t depth)
{
	struct krn_mp_value v;
	int rc = krn_mp_read(r, &v);

	if (rc)
		return rc;
	struct tv *n = &t->nodes[idx];
	switch (v.type) {
	case KRN_MP_NIL: n->kind = TV_NIL; break;
	case KRN_MP_BOOL: n->kind = TV_BOOL; n->boolean = v.v.boolean; break;
	case KRN_MP_UINT: n->kind = TV_UINT; n->u = v.v.u; break;
	case KRN_MP_INT: n->kind = TV_INT; n->i = v.v.i; break;
	case KRN_MP_FLOAT32: n->kind = TV_FLOAT32; n->f = v.v.f32; break;
	case KRN_MP_FLOAT64: n->kind = TV_FLOAT64; n->f = v.v.f64; break;
	case KRN_MP_STR: n->kind = TV_STR; break;
	case KRN_MP_BIN: n->kind = TV_BIN; break;
	case KRN_MP_EXT: n->kind = TV_EXT; n->ext_type = v.ext_type; break;
	case KRN_MP_ARRAY: n->kind = TV_ARRAY; break;
	case KRN_MP_MAP: n->kind = TV_MAP; break;
	}
	n->data = v.data;
	n->size = v.size;
	uint32_t children = tv_children(n);
	if (children == 0)
		return 0;
	if (depth >= TREE_DEPTH_MAX)
		return E_TREE_FULL;
	uint32_t first = tree_alloc(t, children);
	if (first == UINT32_MAX)
		return E_TREE_FULL;
	n->first = first;
	for (uint32_t k = 0; k < children; k++) {
		rc = tree_from_krn(t, r, first + k, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the tree from msgpack-c ----------------------------------------------------------------- */

static int tree_from_mpc(struct tree *t, const msgpack_object *o, uint32_t idx, uint32_t depth)
{
	struct tv *n = &t->nodes[idx];
	const msgpack_object *kids = NULL;
	const msgpack_object_kv *pairs = NULL;

	switch (o->type) {
	case MSGPACK_OBJECT_NIL: n->kind = TV_NIL; break;
	case MSGPACK_OBJECT_BOOLEAN: n->kind = TV_BOOL; n->boolean = o->via.boolean; break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: n->kind = TV_UINT; n->u = o->via.u64; break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: n->kind = TV_INT; n->i = o->via.i64; break;
	case MSGPACK_OBJECT_FLOAT32: n->kind = TV_FLOAT32; n->f = o->via.f64; break;
	case MSGPACK_OBJECT_FLOAT64: n->kind = TV_FLOAT64; n->f = o->via.f64; break;
	case MSGPACK_OBJECT_STR:
		n->kind = TV_STR;
		n->data = (const uint8_t *)o->via.str.ptr;
		n->size = o->via.str.size;
		break;
	case MSGPACK_OBJECT_BIN:
		n->kind = TV_BIN;
		n->data = (const uint8_t *)o->via.bin.ptr;
		n->size = o->via.bin.size;
		break;
	case MSGPACK_OBJECT_EXT:
		n->kind = TV_EXT;
		n->ext_type = o->via.ext.type;
		n->data = (const uint8_t *)o->via.ext.ptr;
		n->size = o->via.ext.size;
		break;
	case MSGPACK_OBJECT_ARRAY:
		n->kind = TV_ARRAY;
		n->size = o->via.array.size;
		kids = o->via.array.ptr;
		break;
	case MSGPACK_OBJECT_MAP:
		n->kind = TV_MAP;
		n->size = o->via.map.size;
		pairs = o->via.map.ptr;
		break;
	default:
		return -1;
	}
	uint32_t children = tv_children(n);
	if (children == 0)
		return 0;
	if (depth >= TREE_DEPTH_MAX)
		return E_TREE_FULL;
	uint32_t first = tree_alloc(t, children);
	if (first == UINT32_MAX)
		return E_TREE_FULL;
	t->nodes[idx].first = first;
	for (uint32_t k = 0; k < children; k++) {
		const msgpack_object *c = kids ? &kids[k] : (k % 2 ? &pairs[k / 2].val : &pairs[k / 2].key);
		int rc = tree_from_mpc(t, c, first + k, depth + 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the tree from the suite's JSON ---------------------------------------------------------- */

/* "c4-02-00-ff" -> bytes. Returns the byte count, or -1 if the text is not dash-separated hex pairs. */
static int parse_hex(const char *s, uint8_t *out, uint32_t cap)
{
	uint32_t n = 0;

	while (*s) {
		unsigned int b;
		int used;

		if (n > 0 && *s++ != '-')
			return -1;
		if (n == cap || sscanf(s, "%2x%n", &b, &used) != 1 || used != 2)
			return -1;
		out[n++] = (uint8_t)b;
		s += 2;
	}
	return (int)n;
}

static int tv_set_hex(struct tree *t, struct tv *n, const char *hex)
{
	int len = parse_hex(hex, t->arena + t->arena_used, TREE_ARENA_BYTES - t->arena_used);

	if (len < 0)
		return -1;
	n->data = t->arena + t->arena_used;
	n->size = (uint32_t)len;
	t->arena_used += (uint32_t)len;
	return 0;
}

/* A JSON integer as the suite means it; json-c keeps values above INT64_MAX as uint64. */
static void tv_set_json_int(struct tv *n, const json_object *j)
{
	int64_t i = json_object_get_int64(j);

	if (i == INT64_MAX && json_object_get_uint64(j) > (uint64_t)INT64_MAX) {
		n->kind = TV_UINT;
		n->u = json_object_get_uint64(j);
	} else if (i >= 0) {
		n->kind = TV_UINT;
		n->u = (uint64_t)i;
	} else {
		n->kind = TV_INT;
		n->i = i;
	}
}

/* A bignum is a decimal string so that JavaScript readers of the suite keep all 64 bits. */
static int tv_set_bignum(struct tv *n, const char *s)
{
	char *end;

	errno = 0;
	if (s[0] == '-') {
		n->kind = TV_INT;
		n->i = strtoll(s, &end, 10);
	} else {
		n->kind = TV_UINT;
		n->u = strtoull(s, &end, 10);
	}
	return errno || end == s || *end != '\0' ? -1 : 0;
}

static int tree_from_json(struct tree *t, const json_object *j, uint32_t idx, uint32_t depth);

static int tv_set_json_children(struct tree *t, const json_object *j, uint32_t idx, uint32_t depth)
{
	struct tv *n = &t->nodes[idx];
	uint32_t children;

	if (json_object_is_type(j, json_type_array)) {
		n->kind = TV_ARRAY;
		n->size = (uint32_t)json_object_array_length(j);
	} else {
		n->kind = TV_MAP;
		n->size = (uint32_t)json_object_object_length(j);
	}
	children = tv_children(n);
	if (children == 0)
		return 0;
	if (depth >= TREE_DEPTH_MAX)
		return E_TREE_FULL;
	uint32_t first = tree_alloc(t, children);
	if (first == UINT32_MAX)
		return E_TREE_FULL;
	t->nodes[idx].first = first;
	if (t->nodes[idx].kind == TV_ARRAY) {
		for (uint32_t k = 0; k < children; k++)
			if (tree_from_json(t, json_object_array_get_idx(j, k), first + k, depth + 1))
				return -1;
		return 0;
	}
	uint32_t k = 0;
	json_object_object_foreach((json_object *)j, key, val) {
		struct tv *kn = &t->nodes[first + k];

		kn->kind = TV_STR;
		kn->data = (const uint8_t *)key;
		kn->size = (uint32_t)strlen(key);
		if (tree_from_json(t, val, first + k + 1, depth + 1))
			return -1;
		k += 2;
	}
	return 0;
}

/* Plain JSON: null, booleans, numbers, strings, arrays and objects. */
static int tree_from_json(struct tree *t, const json_object *j, uint32_t idx, uint32_t depth)
{
	struct tv *n = &t->nodes[idx];

	switch (json_object_get_type(j)) {
	case json_type_null:
		n->kind = TV_NIL;
		return 0;
	case json_type_boolean:
		n->kind = TV_BOOL;
		n->boolean = json_object_get_boolean(j);
		return 0;
	case json_type_int:
		tv_set_json_int(n, j);
		return 0;
	case json_type_double:
		n->kind = TV_FLOAT64;
		n->f = json_object_get_double(j);
		return 0;
	case json_type_string:
		n->kind = TV_STR;
		n->data = (const uint8_t *)json_object_get_string((json_object *)j);
		n->size = (uint32_t)json_object_get_string_len(j);
		return 0;
	case json_type_array:
	case json_type_object:
		return tv_set_json_children(t, j, idx, depth);
	}
	return -1;
}

/* The expected value of one case under one of its kind keys ("number", "bignum", "ext", ...). */
static int tree_from_expected(struct tree *t, const char *kind, const json_object *j)
{
	struct tv *n = &t->nodes[0];
	const char *text = json_object_is_type(j, json_type_string) ?
				   json_object_get_string((json_object *)j) : NULL;

	if (strcmp(kind, "binary") == 0) {
		n->kind = TV_BIN;
		return text ? tv_set_hex(t, n, text) : -1;
	}
	if (strcmp(kind, "bignum") == 0)
		return text ? tv_set_bignum(n, text) : -1;
	if (strcmp(kind, "ext") == 0 || strcmp(kind, "timestamp") == 0) {
		if (!json_object_is_type(j, json_type_array) || json_object_array_length(j) != 2)
			return -1;
		const json_object *a = json_object_array_get_idx(j, 0);
		const json_object *b = json_object_array_get_idx(j, 1);
		if (kind[0] == 'e') {
			n->kind = TV_EXT;
			n->ext_type = (int8_t)json_object_get_int(a);
			return tv_set_hex(t, n, json_object_get_string((json_object *)b));
		}
		n->kind = TV_TIMESTAMP;
		n->i = json_object_get_int64(a);
		n->nsec = (uint32_t)json_object_get_int64(b);
		return 0;
	}
	if (strcmp(kind, "nil") && strcmp(kind, "bool") && strcmp(kind, "number") && strcmp(kind, "string") &&
	    strcmp(kind, "array") && strcmp(kind, "map"))
		return -1;
	return tree_from_json(t, j, 0, 0);
}

/* ---- comparing trees ------------------------------------------------------------------------- */

/* A number widened to double, and whether the widening was exact (doubles hold 53-bit integers). */
static int tv_as_exact_double(const struct tv *v, double *out)
{
	switch (v->kind) {
	case TV_FLOAT32:
	case TV_FLOAT64:
		*out = v->f;
		return 1;
	case TV_UINT:
		*out = (double)v->u;
		/* 2^64 itself does not convert back; every other double below it does. */
		return *out < 18446744073709551616.0 && (uint64_t)*out == v->u;
	case TV_INT:
		*out = (double)v->i;
		return (int64_t)*out == v->i;
	default:
		return 0;
	}
}

static int tv_is_number(const struct tv *v)
{
	return v->kind == TV_UINT || v->kind == TV_INT || v->kind == TV_FLOAT32 || v->kind == TV_FLOAT64;
}

static int bytes_equal(const struct tv *a, const struct tv *b)
{
	return a->size == b->size && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

/* A timestamp extension payload (4, 8 or 12 bytes, msgpack spec) against seconds and nanoseconds. */
static int timestamp_equal(const struct tv *ext, const struct tv *ts)
{
	const uint8_t *p = ext->data;
	uint64_t hi = 0, lo = 0;
	int64_t sec;
	uint32_t nsec;

	if (ext->kind != TV_EXT || ext->ext_type != TS_EXT_TYPE)
		return 0;
	for (uint32_t k = 0; k < ext->size && k < 4; k++)
		hi = (hi << 8) | p[k];
	for (uint32_t k = 4; k < ext->size; k++)
		lo = (lo << 8) | p[k];
	if (ext->size == 4) {
		sec = (int64_t)hi;
		nsec = 0;
	} else if (ext->size == 8) {
		uint64_t all = (hi << 32) | lo;
		nsec = (uint32_t)(all >> 34);
		sec = (int64_t)(all & ((1ull << 34) - 1));
	} else if (ext->size == 12) {
		nsec = (uint32_t)hi;
		sec = (int64_t)lo;
	} else {
		return 0;
	}
	return nsec <= TS_NSEC_MAX && sec == ts->i && nsec == ts->nsec;
}

enum cmp_mode {
	CMP_STRICT, /* two decoders: same kinds, same bits */
	CMP_VALUE,  /* decoded against expected: numbers by value, maps in any order, timestamps decoded */
};

static int tv_equal(const struct tree *ta, uint32_t ia, const struct tree *tb, uint32_t ib,
		    enum cmp_mode mode);

static int map_equal_any_order(const struct tree *ta, const struct tv *a, const struct tree *tb,
			       const struct tv *b)
{
	for (uint32_t k = 0; k < a->size; k++) {
		uint32_t found = 0;

		for (uint32_t m = 0; m < b->size && !found; m++)
			found = tv_equal(ta, a->first + 2 * k, tb, b->first + 2 * m, CMP_VALUE) &&
				tv_equal(ta, a->first + 2 * k + 1, tb, b->first + 2 * m + 1, CMP_VALUE);
		if (!found)
			return 0;
	}
	return 1;
}

static int tv_equal(const struct tree *ta, uint32_t ia, const struct tree *tb, uint32_t ib,
		    enum cmp_mode mode)
{
	const struct tv *a = &ta->nodes[ia], *b = &tb->nodes[ib];
	double da, db;

	if (mode == CMP_VALUE && b->kind == TV_TIMESTAMP)
		return timestamp_equal(a, b);
	int any_float = a->kind == TV_FLOAT32 || a->kind == TV_FLOAT64 || b->kind == TV_FLOAT32 ||
			b->kind == TV_FLOAT64;
	if (mode == CMP_VALUE && tv_is_number(a) && tv_is_number(b) && any_float)
		return tv_as_exact_double(a, &da) && tv_as_exact_double(b, &db) && da == db;
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case TV_NIL: return 1;
	case TV_BOOL: return a->boolean == b->boolean;
	case TV_UINT: return a->u == b->u;
	case TV_INT: return a->i == b->i;
	case TV_FLOAT32:
	case TV_FLOAT64: return memcmp(&a->f, &b->f, sizeof(a->f)) == 0;
	case TV_STR:
	case TV_BIN: return bytes_equal(a, b);
	case TV_EXT: return a->ext_type == b->ext_type && bytes_equal(a, b);
	case TV_TIMESTAMP: return a->i == b->i && a->nsec == b->nsec;
	case TV_ARRAY:
	case TV_MAP:
		break;
	}
	if (a->size != b->size)
		return 0;
	if (a->kind == TV_MAP && mode == CMP_VALUE)
		return map_equal_any_order(ta, a, tb, b);
	for (uint32_t k = 0; k < tv_children(a); k++)
		if (!tv_equal(ta, a->first + k, tb, b->first + k, mode))
			return 0;
	return 1;
}

/* ---- one encoding ---------------------------------------------------------------------------- */

struct suite_stats {
	uint32_t cases;
	uint32_t encodings;
	uint32_t prefixes;
	uint32_t failed;
};

/* Print one line per failing encoding, naming the case and the first check that failed. */
static void encoding_failed(struct suite_stats *st, const char *where, const char *hex, const char *why)
{
	st->failed++;
	printf("FAIL %s %s: %s\n", where, hex, why);
}

/* Every strict prefix must be refused by krn_mp_skip, and msgpack-c must ask for more. */
static const char *check_prefixes(const uint8_t *bytes, uint32_t len, msgpack_unpacked *mpc,
				  uint32_t *checked)
{
	for (uint32_t k = 0; k < len; k++) {
		/* malloc(0) may return NULL, and a NULL reader base is not a buffer. */
		uint8_t *p = malloc(k ? k : 1);
		struct krn_mp_reader r;
		size_t off = 0;

		if (!p)
			return "out of memory";
		memcpy(p, bytes, k);
		krn_mp_reader_init(&r, p, k);
		int rc = krn_mp_skip(&r);
		int mrc = msgpack_unpack_next(mpc, (const char *)p, k, &off);
		free(p);
		(*checked)++;
		if (rc == 0)
			return "krn_mp_skip accepted a strict prefix";
		if (mrc != MSGPACK_UNPACK_CONTINUE)
			return "msgpack-c did not ask for more on a strict prefix";
	}
	return NULL;
}

static struct tree t_krn, t_mpc, t_exp;

/* Decode one encoding both ways and compare against every expected value of its case. */
static const char *check_encoding(const uint8_t *bytes, uint32_t len, json_object *jcase,
				  msgpack_unpacked *mpc)
{
	struct krn_mp_reader r;
	size_t off = 0;

	tree_init(&t_krn);
	krn_mp_reader_init(&r, bytes, len);
	if (tree_from_krn(&t_krn, &r, 0, 0))
		return "krn_mp_read failed";
	if (krn_mp_reader_left(&r) != 0)
		return "krn_mp_read left bytes unread";
	krn_mp_reader_init(&r, bytes, len);
	if (krn_mp_skip(&r) || krn_mp_reader_left(&r) != 0)
		return "krn_mp_skip did not consume exactly the encoding";

	if (msgpack_unpack_next(mpc, (const char *)bytes, len, &off) != MSGPACK_UNPACK_SUCCESS)
		return "msgpack-c failed";
	if (off != len)
		return "msgpack-c left bytes unread";
	tree_init(&t_mpc);
	if (tree_from_mpc(&t_mpc, &mpc->data, 0, 0))
		return "msgpack-c's tree does not fit the test's bounds";
	if (!tv_equal(&t_krn, 0, &t_mpc, 0, CMP_STRICT))
		return "krn_mp and msgpack-c decode different values";

	json_object_object_foreach(jcase, kind, jval) {
		if (strcmp(kind, "msgpack") == 0)
			continue;
		tree_init(&t_exp);
		if (tree_from_expected(&t_exp, kind, jval))
			return "the suite's expected value is not understood";
		if (!tv_equal(&t_krn, 0, &t_exp, 0, CMP_VALUE))
			return "krn_mp's value differs from the suite's";
		if (!tv_equal(&t_mpc, 0, &t_exp, 0, CMP_VALUE))
			return "msgpack-c's value differs from the suite's";
	}
	return NULL;
}

static void run_case(struct suite_stats *st, const char *file, uint32_t case_idx, json_object *jcase,
		     msgpack_unpacked *mpc)
{
	json_object *encodings;
	char where[128];

	snprintf(where, sizeof(where), "%s#%u", file, case_idx);
	st->cases++;
	if (!json_object_object_get_ex(jcase, "msgpack", &encodings) ||
	    !json_object_is_type(encodings, json_type_array)) {
		encoding_failed(st, where, "-", "case has no msgpack list");
		return;
	}
	for (size_t e = 0; e < json_object_array_length(encodings); e++) {
		const char *hex = json_object_get_string(json_object_array_get_idx(encodings, e));
		uint8_t tmp[ENCODING_BYTES_MAX];
		int len = hex ? parse_hex(hex, tmp, sizeof(tmp)) : -1;

		st->encodings++;
		if (len <= 0) {
			encoding_failed(st, where, hex ? hex : "-", "not a hex encoding");
			continue;
		}
		/* Exactly the encoding's size, so that ASan sees a read past its end. */
		uint8_t *bytes = malloc((size_t)len);
		if (!bytes) {
			encoding_failed(st, where, hex, "out of memory");
			continue;
		}
		memcpy(bytes, tmp, (size_t)len);
		const char *why = check_encoding(bytes, (uint32_t)len, jcase, mpc);
		if (!why)
			why = check_prefixes(bytes, (uint32_t)len, mpc, &st->prefixes);
		if (why)
			encoding_failed(st, where, hex, why);
		free(bytes);
	}
}

/* ---- finding the data ------------------------------------------------------------------------ */

static int try_path(char *out, size_t cap, const char *dir)
{
	int n = snprintf(out, cap, "%s/%s", dir, SUITE_REL_PATH);

	return n > 0 && (size_t)n < cap && access(out, R_OK) == 0;
}

/* $ZH_TEST_DATA, then ../../tests/data from the executable (BUILD/tests/), then ./tests/data. */
static int find_suite(char *out, size_t cap)
{
	const char *env = getenv("ZH_TEST_DATA");
	char exe[PATH_MAX], dir[PATH_MAX + 32];

	if (env && env[0])
		return try_path(out, cap, env);
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/../../tests/data", exe);
			if (try_path(out, cap, dir))
				return 1;
		}
	}
	return try_path(out, cap, "tests/data");
}

int main(void)
{
	char path[PATH_MAX + 64];
	struct suite_stats st = { 0 };
	msgpack_unpacked mpc;

	if (!find_suite(path, sizeof(path))) {
		printf("%s: SKIP: %s not found under $ZH_TEST_DATA, next to the executable or in "
		       "./tests/data\n", TEST_NAME, SUITE_REL_PATH);
		return 77;
	}
	json_object *root = json_object_from_file(path);
	if (!root || !json_object_is_type(root, json_type_object)) {
		printf("%s: FAIL: %s is not a JSON object: %s\n", TEST_NAME, path, json_util_get_last_err());
		json_object_put(root);
		return 1;
	}
	msgpack_unpacked_init(&mpc);
	json_object_object_foreach(root, file, cases) {
		if (!json_object_is_type(cases, json_type_array)) {
			encoding_failed(&st, file, "-", "not a list of cases");
			continue;
		}
		for (size_t c = 0; c < json_object_array_length(cases); c++)
			run_case(&st, file, (uint32_t)c, json_object_array_get_idx(cases, c), &mpc);
	}
	msgpack_unpacked_destroy(&mpc);
	json_object_put(root);

	if (st.cases != SUITE_CASES || st.encodings != SUITE_ENCODINGS) {
		printf("FAIL %s holds %u cases, %u encodings; expected %u, %u\n", path, st.cases,
		       st.encodings, SUITE_CASES, SUITE_ENCODINGS);
		st.failed++;
	}
	printf("%s: %u cases, %u encodings, %u strict prefixes: %s (%u failed)\n", TEST_NAME, st.cases,
	       st.encodings, st.prefixes, st.failed ? "FAIL" : "ok", st.failed);
	return st.failed ? 1 : 0;
}
