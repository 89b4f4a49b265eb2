/* SPDX-License-Identifier: MIT */
/*
 * mgmt_model.c: the model repository loader. docs/MODELS.md is the contract: every rule it lists is
 * checked here, in its order, and a refusal names the file, the tensor (or config key) and the rule.
 *
 * Loading runs in two halves. The first reads config.json and model.safetensors whole, validates the
 * config, indexes and validates the safetensors file, and matches its tensors against the ones the
 * architecture needs; nothing large is allocated until all of that has passed. The second allocates
 * the F32 arena, lets krn_llama_bind / krn_ranker_bind lay it out, and copies each tensor to its place,
 * converting F16 and BF16 on the way.
 *
 * JSON is json-c's, run strict and with UTF-8 checks. json-c keeps only the last of two equal keys and
 * accepts single-quoted keys, so scan_object() also walks the raw text json-c has just accepted: it
 * counts the keys at the top level and one level below, so that a duplicate is seen, and hands each
 * top-level key back to json-c's own string decoder, so that the names compared are the very strings
 * json-c stored.
 */
#include <errno.h>
#include <float.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>

#include "krn_llama.h"
#include "krn_ranker.h"
#include "mgmt_model.h"

/* The u64 in front of a safetensors header. */
#define ST_SIZE_FIELD_BYTES 8u
/* docs/MODELS.md, rule header-size. */
#define ST_HEADER_MAX_BYTES (100ull << 20)
/* Files are read whole into memory; a bigger one is refused before anything is allocated. */
#define MODEL_FILE_MAX_BYTES MGMT_MODEL_FILE_MAX_BYTES
#define CONFIG_FILE_MAX_BYTES MGMT_CONFIG_FILE_MAX_BYTES
/* A header nests three deep (object, entry, shape); anything much deeper is refused by json-c. */
#define JSON_DEPTH_MAX 16
/*
 * Largest config dimension (vocab, hidden, intermediate, heads). A product of two stays below 2^48, so
 * no size computed from the config overflows 64 bits, and a 4 GiB file cannot hold a bigger model.
 */
#define CONFIG_DIM_MAX (1u << 24)
#define ARENA_ALIGN_BYTES 64u
/* Bytes of a binding's name: "model.layers.63.post_attention_layernorm.weight" is 47. */
#define BINDING_NAME_SIZE 64u

ZH_STATIC_ASSERT(ST_HEADER_MAX_BYTES <= INT_MAX, "json-c takes the header's length as an int");
ZH_STATIC_ASSERT(CONFIG_FILE_MAX_BYTES <= INT_MAX, "json-c takes the config's length as an int");
ZH_STATIC_ASSERT(MODEL_FILE_MAX_BYTES <= SIZE_MAX, "a model file fits in memory");
ZH_STATIC_ASSERT(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "F32 tensors are copied as they are stored");
ZH_STATIC_ASSERT(sizeof(float) == 4, "the arena is IEEE binary32");

/* Set `why` and return err: every refusal ends here. */
static int failed(char why[MGMT_WHY_SIZE], int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int failed(char why[MGMT_WHY_SIZE], int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, MGMT_WHY_SIZE, fmt, ap);
	va_end(ap);
	return err;
}

/* ---- JSON: json-c plus a pass over the raw text ------------------------------------------------ */

/* One key at the top level of an object, as scan_object() found it in the raw text. */
struct raw_key {
	uint32_t begin;         /* offset of its opening quote */
	uint32_t len;           /* bytes up to and including its closing quote */
	uint32_t member_count;  /* keys of its value, when the value is an object */
};

static int json_is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Parse text[0..n) as one JSON object followed by nothing but whitespace (safetensors pads its header
 * with spaces). Strict mode refuses trailing commas, comments and single-quoted values; the trailing
 * bytes are checked here rather than by json-c, whose check stops at a NUL byte.
 */
static int json_parse_object(struct json_tokener *tok, const char *text, size_t n, struct json_object **root,
			     const char **detail)
{
	struct json_object *obj;
	size_t end;

	json_tokener_reset(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
					    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int)n);
	if (!obj) {
		enum json_tokener_error err = json_tokener_get_error(tok);

		/* A bare `null` parses successfully into no object at all. */
		if (err == json_tokener_success)
			*detail = "not a JSON object";
		else if (err == json_tokener_continue)
			*detail = "the JSON ends early";
		else
			*detail = json_tokener_error_desc(err);
		return -EINVAL;
	}
	end = json_tokener_get_parse_end(tok);
	while (end < n && json_is_space((uint8_t)text[end]))
		end++;
	if (end < n) {
		*detail = "bytes other than whitespace follow the JSON value";
		json_object_put(obj);
		return -EINVAL;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		*detail = "not a JSON object";
		json_object_put(obj);
		return -EINVAL;
	}
	*root = obj;
	return 0;
}

/*
 * Offset of the quote that closes the string opening at text[i], or 0 if it holds a raw control
 * character: JSON wants those escaped, json-c lets them through.
 */
static size_t string_end(const char *text, size_t n, size_t i)
{
	for (size_t j = i + 1; j < n; j++) {
		uint8_t c = (uint8_t)text[j];

		if (c == '"')
			return j;
		if (c == '\\')
			j++;
		else if (c < 0x20)
			return 0;
	}
	return 0;
}

/*
 * Walk the text of an object json-c has accepted and report its top-level keys (into keys[], when not
 * NULL) and their count. Brackets and strings are all that matter: json-c has checked the rest. A
 * depth's `want_key` says that the next string there is a key: after `{` and after `,` in an object.
 */
static int scan_object(const char *text, size_t n, struct raw_key *keys, uint32_t *count, const char **detail)
{
	uint8_t is_obj[JSON_DEPTH_MAX + 2] = { 0 }, want_key[JSON_DEPTH_MAX + 2] = { 0 };
	uint32_t k = 0;
	int depth = 0;

	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		size_t j;

		if (c == '{' || c == '[') {
			if (++depth > JSON_DEPTH_MAX + 1)
				goto deep;
			is_obj[depth] = want_key[depth] = c == '{';
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (c == ',') {
			want_key[depth] = is_obj[depth];
		} else if (c == '\'') {
			*detail = "a single-quoted key";
			return -EINVAL;
		} else if (c == '"') {
			j = string_end(text, n, i);
			if (!j) {
				*detail = "a raw control character in a string";
				return -EINVAL;
			}
			if (want_key[depth] && depth == 1 && keys)
				keys[k] = (struct raw_key){ (uint32_t)i, (uint32_t)(j - i + 1), 0 };
			if (want_key[depth] && depth == 1)
				k++;
			if (want_key[depth] && depth == 2 && k > 0 && keys)
				keys[k - 1].member_count++;
			want_key[depth] = 0;
			i = j;
		}
	}
	*count = k;
	return 0;
deep:
	*detail = "nested too deeply";
	return -EINVAL;
}

/*
 * Decode the quoted key text[key->begin..] with json-c into dst (room for key->len bytes: escapes only
 * shrink), NUL-terminated. Returns its length, or -1 if json-c does not take it back.
 */
static int64_t key_decode(struct json_tokener *tok, const char *text, const struct raw_key *key, char *dst)
{
	struct json_object *s;
	int64_t len;

	json_tokener_reset(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	s = json_tokener_parse_ex(tok, text + key->begin, (int)key->len);
	if (!s || !json_object_is_type(s, json_type_string) ||
	    (uint32_t)json_object_get_string_len(s) >= key->len) {
		json_object_put(s);
		return -1;
	}
	len = json_object_get_string_len(s);
	memcpy(dst, json_object_get_string(s), (size_t)len);
	dst[len] = '\0';
	json_object_put(s);
	return len;
}

static int str_ptr_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that appears twice, or NULL. Sorts `sorted`, a scratch copy of the names. */
static const char *first_duplicate(const char **sorted, uint32_t count)
{
	qsort(sorted, count, sizeof(*sorted), str_ptr_cmp);
	for (uint32_t i = 1; i < count; i++)
		if (strcmp(sorted[i - 1], sorted[i]) == 0)
			return sorted[i];
	return NULL;
}

/* A JSON integer that is not negative. json-c saturates beyond 64 bits, which the callers' bounds catch. */
static int json_get_u64(struct json_object *v, uint64_t *out)
{
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return -EINVAL;
	*out = json_object_get_uint64(v);
	return 0;
}

/* ---- safetensors ------------------------------------------------------------------------------- */

/* What a parse holds while it works; everything but `mem` is released when it ends. */
struct st_parse {
	const char *text;                     /* the header JSON */
	size_t text_bytes;
	const uint8_t *area;                  /* the data area that follows it */
	uint64_t area_bytes;
	struct json_tokener *tok;
	struct json_object *root;
	struct raw_key *keys;                 /* [key_count], in header order */
	const char **names;                   /* [key_count], decoded, pointing into mem */
	const char **sorted_names;            /* scratch for the duplicate check */
	const struct mgmt_tensor **by_offset; /* scratch for the overlap check */
	uint32_t key_count;
	void *mem;                            /* tensors[key_count], then the names */
	struct mgmt_tensor *tensors;
	uint32_t tensor_count;
};

static const struct {
	const char *name;
	enum mgmt_dtype dtype;
} dtype_names[] = {
	{ "F32", MGMT_DTYPE_F32 },
	{ "F16", MGMT_DTYPE_F16 },
	{ "BF16", MGMT_DTYPE_BF16 },
};

static uint32_t dtype_size(enum mgmt_dtype dtype)
{
	return dtype == MGMT_DTYPE_F32 ? 4u : 2u;
}

/* Rule header-size: the u64 is there, claims at most 100 MiB, and the header fits in the file. */
static int st_locate(const uint8_t *buf, size_t size, struct st_parse *p, char *why)
{
	uint64_t header_bytes = 0;

	if (size < ST_SIZE_FIELD_BYTES)
		return failed(why, -EINVAL, "header-size: header: the file is %zu bytes, too short for the "
			      "8-byte header size", size);
	for (uint32_t i = 0; i < ST_SIZE_FIELD_BYTES; i++)
		header_bytes |= (uint64_t)buf[i] << (8 * i);
	if (header_bytes > ST_HEADER_MAX_BYTES)
		return failed(why, -EINVAL, "header-size: header: %" PRIu64 " bytes claimed, more than %llu",
			      header_bytes, ST_HEADER_MAX_BYTES);
	if (header_bytes > size - ST_SIZE_FIELD_BYTES)
		return failed(why, -EINVAL, "header-size: header: %" PRIu64 " bytes claimed, the file has %zu "
			      "after the size", header_bytes, size - ST_SIZE_FIELD_BYTES);
	p->text = (const char *)buf + ST_SIZE_FIELD_BYTES;
	p->text_bytes = (size_t)header_bytes;
	p->area = buf + ST_SIZE_FIELD_BYTES + header_bytes;
	p->area_bytes = size - ST_SIZE_FIELD_BYTES - header_bytes;
	return 0;
}

/* A name the reader keeps: at most 255 bytes and no control characters, which would garble logs. */
static int st_name_check(const char *name, int64_t len, uint32_t key_idx, char *why)
{
	if (len > MGMT_TENSOR_NAME_MAX)
		return failed(why, -EINVAL, "tensor-entry: %.40s...: the name is %" PRId64 " bytes, more than %u",
			      name, len, MGMT_TENSOR_NAME_MAX);
	for (int64_t i = 0; i < len; i++)
		if ((uint8_t)name[i] < 0x20 || (uint8_t)name[i] == 0x7f)
			return failed(why, -EINVAL, "tensor-entry: header: the name of key %u holds a control "
				      "character", key_idx + 1);
	return 0;
}

/*
 * Rule header-json and the names: parse, find the raw keys, decode them into `mem` after the room for
 * the tensors, refuse a bad name and a name given twice. Decoded names are at most as long as their
 * quoted raw text, so the raw lengths size the names block.
 */
static int st_header(struct st_parse *p, char *why)
{
	const char *detail = NULL, *dup;
	size_t names_bytes = 0;
	char *dst;
	int ret;

	if (json_parse_object(p->tok, p->text, p->text_bytes, &p->root, &detail) ||
	    scan_object(p->text, p->text_bytes, NULL, &p->key_count, &detail))
		return failed(why, -EINVAL, "header-json: header: %s", detail);
	p->keys = calloc((size_t)p->key_count + 1, sizeof(*p->keys));
	p->names = calloc((size_t)p->key_count + 1, sizeof(*p->names));
	p->sorted_names = calloc((size_t)p->key_count + 1, sizeof(*p->sorted_names));
	if (!p->keys || !p->names || !p->sorted_names)
		return failed(why, -ENOMEM, "header-json: header: out of memory for %u keys", p->key_count);
	/* The same walk again, filling keys[] this time; it passed the first time. */
	scan_object(p->text, p->text_bytes, p->keys, &p->key_count, &detail);
	for (uint32_t i = 0; i < p->key_count; i++)
		names_bytes += p->keys[i].len;
	p->mem = malloc((size_t)p->key_count * sizeof(struct mgmt_tensor) + names_bytes + 1);
	if (!p->mem)
		return failed(why, -ENOMEM, "header-json: header: out of memory for %u keys", p->key_count);
	p->tensors = p->mem;
	dst = (char *)p->mem + (size_t)p->key_count * sizeof(struct mgmt_tensor);
	for (uint32_t i = 0; i < p->key_count; i++) {
		int64_t len = key_decode(p->tok, p->text, &p->keys[i], dst);

		if (len < 0)
			return failed(why, -EINVAL, "header-json: header: key %u does not decode", i + 1);
		ret = st_name_check(dst, len, i, why);
		if (ret)
			return ret;
		p->names[i] = p->sorted_names[i] = dst;
		dst += len + 1;
	}
	dup = first_duplicate(p->sorted_names, p->key_count);
	if (dup)
		return failed(why, -EINVAL, "header-json: %s: the name appears twice", dup);
	/* Now every name is unique, json-c must hold exactly these keys; anything else is a scan bug. */
	if (p->key_count != (uint32_t)json_object_object_length(p->root))
		return failed(why, -EINVAL, "header-json: header: %u keys found, json-c holds %d", p->key_count,
			      json_object_object_length(p->root));
	return 0;
}

/* Rule tensor-entry: an object with exactly dtype (string), shape (array), data_offsets (array of 2). */
static int st_entry_keys(const char *name, struct json_object *entry, uint32_t member_count,
			 struct json_object *v[3], char *why)
{
	static const char *const keys[3] = { "dtype", "shape", "data_offsets" };
	static const enum json_type types[3] = { json_type_string, json_type_array, json_type_array };
	struct json_object_iterator it, end;

	if (!json_object_is_type(entry, json_type_object))
		return failed(why, -EINVAL, "tensor-entry: %s: not a JSON object", name);
	if ((uint32_t)json_object_object_length(entry) != member_count)
		return failed(why, -EINVAL, "tensor-entry: %s: a key appears twice", name);
	for (uint32_t k = 0; k < 3; k++) {
		if (!json_object_object_get_ex(entry, keys[k], &v[k]))
			return failed(why, -EINVAL, "tensor-entry: %s: no %s", name, keys[k]);
		if (!json_object_is_type(v[k], types[k]))
			return failed(why, -EINVAL, "tensor-entry: %s: %s is not a JSON %s", name, keys[k],
				      json_type_to_name(types[k]));
	}
	it = json_object_iter_begin(entry);
	end = json_object_iter_end(entry);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);

		if (strcmp(key, keys[0]) && strcmp(key, keys[1]) && strcmp(key, keys[2]))
			return failed(why, -EINVAL, "tensor-entry: %s: unexpected key \"%.40s\"", name, key);
	}
	if (json_object_array_length(v[2]) != 2)
		return failed(why, -EINVAL, "tensor-entry: %s: data_offsets has %zu values, not 2", name,
			      json_object_array_length(v[2]));
	return 0;
}

/* Rule shape: at most 8 non-negative integer dimensions; the count of elements and of bytes fits 64 bits. */
static int st_shape(const char *name, struct json_object *shape, struct mgmt_tensor *t, uint64_t *count_out,
		    char *why)
{
	size_t ndim = json_object_array_length(shape);
	uint64_t count = 1;
	int zero = 0, over = 0;

	if (ndim > MGMT_TENSOR_DIMS_MAX)
		return failed(why, -EINVAL, "shape: %s: %zu dimensions, more than %u", name, ndim,
			      MGMT_TENSOR_DIMS_MAX);
	for (size_t i = 0; i < ndim; i++) {
		uint64_t d;

		if (json_get_u64(json_object_array_get_idx(shape, i), &d))
			return failed(why, -EINVAL, "shape: %s: dimension %zu is not a non-negative integer", name,
				      i);
		t->shape[i] = d;
		/* A zero anywhere makes the count zero, however large the other dimensions are. */
		if (d == 0)
			zero = 1;
		else if (count > UINT64_MAX / d)
			over = 1;
		else
			count *= d;
	}
	if (zero)
		count = 0;
	if (over && !zero)
		return failed(why, -EINVAL, "shape: %s: the element count overflows 64 bits", name);
	if (count > UINT64_MAX / dtype_size(t->dtype))
		return failed(why, -EINVAL, "shape: %s: the byte count overflows 64 bits", name);
	t->ndim = (uint32_t)ndim;
	*count_out = count;
	return 0;
}

/* Rules tensor-entry, dtype, shape, data-range, byte-size and alignment, in that order, for one entry. */
static int st_entry(const struct st_parse *p, const char *name, struct json_object *entry, uint32_t member_count,
		    struct mgmt_tensor *t, char *why)
{
	struct json_object *v[3];
	uint64_t begin, end, count = 0, size;
	const char *dtype;
	uint32_t d;
	int ret;

	memset(t, 0, sizeof(*t));
	t->name = name;
	ret = st_entry_keys(name, entry, member_count, v, why);
	if (ret)
		return ret;
	if (json_get_u64(json_object_array_get_idx(v[2], 0), &begin) ||
	    json_get_u64(json_object_array_get_idx(v[2], 1), &end))
		return failed(why, -EINVAL, "tensor-entry: %s: data_offsets are not two non-negative integers",
			      name);
	dtype = json_object_get_string(v[0]);
	for (d = 0; d < ZH_ARRAY_SIZE(dtype_names) && strcmp(dtype, dtype_names[d].name); d++)
		;
	if (d == ZH_ARRAY_SIZE(dtype_names))
		return failed(why, -EINVAL, "dtype: %s: \"%.16s\" is not F32, F16 or BF16", name, dtype);
	t->dtype = dtype_names[d].dtype;
	size = dtype_size(t->dtype);
	ret = st_shape(name, v[1], t, &count, why);
	if (ret)
		return ret;
	if (begin > end)
		return failed(why, -EINVAL, "data-range: %s: begin %" PRIu64 " is after end %" PRIu64, name, begin,
			      end);
	if (end > p->area_bytes)
		return failed(why, -EINVAL, "data-range: %s: end %" PRIu64 " is past the data area's %" PRIu64
			      " bytes", name, end, p->area_bytes);
	if (end - begin != count * size)
		return failed(why, -EINVAL, "byte-size: %s: %" PRIu64 " elements of %s are %" PRIu64 " bytes, "
			      "data_offsets span %" PRIu64, name, count, dtype, count * size, end - begin);
	if (begin % size)
		return failed(why, -EINVAL, "alignment: %s: offset %" PRIu64 " is not a multiple of %" PRIu64
			      " (%s)", name, begin, size, dtype);
	t->data = p->area + begin;
	t->size_bytes = end - begin;
	return 0;
}

/* `__metadata__`: an object of strings (rule tensor-entry, as it sits where an entry would). */
static int st_metadata(struct json_object *meta, uint32_t member_count, char *why)
{
	struct json_object_iterator it, end;

	if (!json_object_is_type(meta, json_type_object))
		return failed(why, -EINVAL, "tensor-entry: __metadata__: not a JSON object");
	if ((uint32_t)json_object_object_length(meta) != member_count)
		return failed(why, -EINVAL, "tensor-entry: __metadata__: a key appears twice");
	it = json_object_iter_begin(meta);
	end = json_object_iter_end(meta);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
		if (!json_object_is_type(json_object_iter_peek_value(&it), json_type_string))
			return failed(why, -EINVAL, "tensor-entry: __metadata__: \"%.40s\" is not a string",
				      json_object_iter_peek_name(&it));
	return 0;
}

/* Every entry in header order, so that a refusal names the first bad one in the file. */
static int st_entries(struct st_parse *p, char *why)
{
	for (uint32_t i = 0; i < p->key_count; i++) {
		struct json_object *v;
		int ret;

		if (!json_object_object_get_ex(p->root, p->names[i], &v))
			return failed(why, -EINVAL, "header-json: %s: json-c does not hold this key", p->names[i]);
		if (strcmp(p->names[i], "__metadata__") == 0)
			ret = st_metadata(v, p->keys[i].member_count, why);
		else
			ret = st_entry(p, p->names[i], v, p->keys[i].member_count, &p->tensors[p->tensor_count++],
				       why);
		if (ret)
			return ret;
	}
	return 0;
}

static int tensor_offset_cmp(const void *a, const void *b)
{
	const struct mgmt_tensor *x = *(const struct mgmt_tensor *const *)a;
	const struct mgmt_tensor *y = *(const struct mgmt_tensor *const *)b;

	if (x->data != y->data)
		return x->data < y->data ? -1 : 1;
	return (x->size_bytes > y->size_bytes) - (x->size_bytes < y->size_bytes);
}

/*
 * Rule overlap. Sorted by start, a tensor overlaps an earlier one exactly when it starts before the
 * furthest end seen so far. Empty tensors hold no bytes and overlap nothing.
 */
static int st_overlap(struct st_parse *p, char *why)
{
	const struct mgmt_tensor *reach = NULL;
	const uint8_t *reach_end = p->area;

	p->by_offset = calloc((size_t)p->tensor_count + 1, sizeof(*p->by_offset));
	if (!p->by_offset)
		return failed(why, -ENOMEM, "overlap: header: out of memory for %u tensors", p->tensor_count);
	for (uint32_t i = 0; i < p->tensor_count; i++)
		p->by_offset[i] = &p->tensors[i];
	qsort(p->by_offset, p->tensor_count, sizeof(*p->by_offset), tensor_offset_cmp);
	for (uint32_t i = 0; i < p->tensor_count; i++) {
		const struct mgmt_tensor *t = p->by_offset[i];

		if (t->size_bytes == 0)
			continue;
		if (reach && t->data < reach_end)
			return failed(why, -EINVAL, "overlap: %s: bytes [%td, %td) overlap %s's [%td, %td)", t->name,
				      t->data - p->area, t->data + t->size_bytes - p->area, reach->name,
				      reach->data - p->area, reach_end - p->area);
		if (t->data + t->size_bytes > reach_end) {
			reach = t;
			reach_end = t->data + t->size_bytes;
		}
	}
	return 0;
}

static int tensor_name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mgmt_tensor *)a)->name, ((const struct mgmt_tensor *)b)->name);
}

int mgmt_safetensors_parse(const uint8_t *buf, size_t size, struct mgmt_safetensors *out,
			   char why[MGMT_WHY_SIZE])
{
	struct st_parse p;
	int ret;

	memset(&p, 0, sizeof(p));
	memset(out, 0, sizeof(*out));
	why[0] = '\0';
	ret = st_locate(buf, size, &p, why);
	if (ret)
		goto out;
	p.tok = json_tokener_new_ex(JSON_DEPTH_MAX);
	if (!p.tok) {
		ret = failed(why, -ENOMEM, "header-json: header: out of memory");
		goto out;
	}
	ret = st_header(&p, why);
	if (ret)
		goto out;
	ret = st_entries(&p, why);
	if (ret)
		goto out;
	ret = st_overlap(&p, why);
	if (ret)
		goto out;
	/* Sorted by name for mgmt_safetensors_find; the names stay where they are, in mem. */
	qsort(p.tensors, p.tensor_count, sizeof(*p.tensors), tensor_name_cmp);
	out->tensor_count = p.tensor_count;
	out->tensors = p.tensor_count ? p.tensors : NULL;
	out->mem = p.mem;
	p.mem = NULL;
out:
	free(p.by_offset);
	free(p.sorted_names);
	free(p.names);
	free(p.keys);
	free(p.mem);
	json_object_put(p.root);
	if (p.tok)
		json_tokener_free(p.tok);
	return ret;
}

const struct mgmt_tensor *mgmt_safetensors_find(const struct mgmt_safetensors *st, const char *name)
{
	struct mgmt_tensor key = { .name = name };

	if (st->tensor_count == 0)
		return NULL;
	return bsearch(&key, st->tensors, st->tensor_count, sizeof(key), tensor_name_cmp);
}

void mgmt_safetensors_free(struct mgmt_safetensors *st)
{
	free(st->mem);
	memset(st, 0, sizeof(*st));
}

/* ---- config.json -------------------------------------------------------------------------------- */

/* An integer key of a config struct: where it goes, whether it must be there, its default and range. */
struct cfg_uint_key {
	const char *key;
	size_t offset;     /* of a uint32_t in the config struct */
	int required;
	uint32_t dflt;
	uint32_t min;
	uint32_t max;
};

static const struct cfg_uint_key llama_uint_keys[] = {
	{ "hidden_size", offsetof(struct krn_llama_config, dim), 1, 0, 1, CONFIG_DIM_MAX },
	{ "intermediate_size", offsetof(struct krn_llama_config, hidden_dim), 1, 0, 1, CONFIG_DIM_MAX },
	{ "num_hidden_layers", offsetof(struct krn_llama_config, n_layers), 1, 0, 1, KRN_LLAMA_LAYERS_MAX },
	{ "num_attention_heads", offsetof(struct krn_llama_config, n_heads), 1, 0, 1, CONFIG_DIM_MAX },
	/* Absent means HF's default, one KV head per query head; 0 stands for it until the heads are known. */
	{ "num_key_value_heads", offsetof(struct krn_llama_config, n_kv_heads), 0, 0, 1, CONFIG_DIM_MAX },
	{ "vocab_size", offsetof(struct krn_llama_config, vocab_size), 1, 0, 1, CONFIG_DIM_MAX },
	{ "max_position_embeddings", offsetof(struct krn_llama_config, seq_len), 1, 0, 1, KRN_LLAMA_SEQ_MAX },
	/* HF LlamaConfig's defaults; checked against vocab_size once it is known. */
	{ "bos_token_id", offsetof(struct krn_llama_config, bos_id), 0, 1, 0, CONFIG_DIM_MAX },
	{ "eos_token_id", offsetof(struct krn_llama_config, eos_id), 0, 2, 0, CONFIG_DIM_MAX },
};

static const struct cfg_uint_key ranker_uint_keys[] = {
	{ "vocab_size", offsetof(struct krn_ranker_config, vocab_size), 1, 0, 1, CONFIG_DIM_MAX },
	{ "embedding_dim", offsetof(struct krn_ranker_config, embedding_dim), 1, 0, 1, KRN_RANKER_WIDTH_MAX },
	{ "dense_features", offsetof(struct krn_ranker_config, dense_features), 1, 0, 0, KRN_RANKER_WIDTH_MAX },
};

static const char *const bag_modes[] = { "sum", "mean" };
static const char *const output_acts[] = { "none", "sigmoid" };
ZH_STATIC_ASSERT(KRN_BAG_SUM == 0 && KRN_BAG_MEAN == 1, "bag_modes[] is indexed by enum krn_bag_mode");
ZH_STATIC_ASSERT(KRN_OUTPUT_NONE == 0 && KRN_OUTPUT_SIGMOID == 1, "output_acts[] is indexed by the enum");

/*
 * Look a key up. *v is NULL when an optional key is absent or null (it takes its default then); a
 * required key that is absent or null is refused. json-c stores a JSON null as a NULL value.
 */
static int cfg_lookup(struct json_object *root, const char *key, int required, struct json_object **v, char *why)
{
	if (!json_object_object_get_ex(root, key, v)) {
		*v = NULL;
		return required ? failed(why, -EINVAL, "config.json: config-key: %s: missing", key) : 0;
	}
	if (!*v && required)
		return failed(why, -EINVAL, "config.json: config-key: %s: null", key);
	return 0;
}

static int cfg_uint(struct json_object *root, const struct cfg_uint_key *k, uint32_t *dst, char *why)
{
	struct json_object *v;
	int64_t i;
	int ret;

	ret = cfg_lookup(root, k->key, k->required, &v, why);
	if (ret)
		return ret;
	if (!v) {
		*dst = k->dflt;
		return 0;
	}
	if (!json_object_is_type(v, json_type_int))
		return failed(why, -EINVAL, "config.json: config-key: %s: not an integer", k->key);
	/* json-c saturates beyond 64 bits, so a huge value still lands outside the range. */
	i = json_object_get_int64(v);
	if (i < k->min || i > k->max)
		return failed(why, -EINVAL, "config.json: config-value: %s: %" PRId64 " is outside %u..%u", k->key,
			      i, k->min, k->max);
	*dst = (uint32_t)i;
	return 0;
}

static int cfg_uints(struct json_object *root, const struct cfg_uint_key *keys, size_t count, void *cfg,
		     char *why)
{
	for (size_t i = 0; i < count; i++) {
		int ret = cfg_uint(root, &keys[i], (uint32_t *)((char *)cfg + keys[i].offset), why);

		if (ret)
			return ret;
	}
	return 0;
}

/* A positive finite number that stays positive and finite as a float (the kernels compute in F32). */
static int cfg_float(struct json_object *root, const char *key, int required, float dflt, float *dst, char *why)
{
	struct json_object *v;
	double d;
	int ret;

	ret = cfg_lookup(root, key, required, &v, why);
	if (ret)
		return ret;
	if (!v) {
		*dst = dflt;
		return 0;
	}
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return failed(why, -EINVAL, "config.json: config-key: %s: not a number", key);
	d = json_object_get_double(v);
	if (!(d > 0.0 && d <= FLT_MAX) || (float)d == 0.0f)
		return failed(why, -EINVAL, "config.json: config-value: %s: %g is not a positive finite float",
			      key, d);
	*dst = (float)d;
	return 0;
}

static int cfg_bool(struct json_object *root, const char *key, uint32_t dflt, uint32_t *dst, char *why)
{
	struct json_object *v;
	int ret;

	ret = cfg_lookup(root, key, 0, &v, why);
	if (ret)
		return ret;
	if (v && !json_object_is_type(v, json_type_boolean))
		return failed(why, -EINVAL, "config.json: config-key: %s: not a boolean", key);
	*dst = v ? (uint32_t)json_object_get_boolean(v) : dflt;
	return 0;
}

/* A required string that must be one of choices[]; *dst is its index. */
static int cfg_choice(struct json_object *root, const char *key, const char *const *choices, uint32_t count,
		      uint32_t *dst, char *why)
{
	struct json_object *v;
	const char *s;
	int ret;

	ret = cfg_lookup(root, key, 1, &v, why);
	if (ret)
		return ret;
	if (!json_object_is_type(v, json_type_string))
		return failed(why, -EINVAL, "config.json: config-key: %s: not a string", key);
	s = json_object_get_string(v);
	for (uint32_t i = 0; i < count; i++) {
		if (strcmp(s, choices[i]) == 0) {
			*dst = i;
			return 0;
		}
	}
	return failed(why, -EINVAL, "config.json: config-value: %s: \"%.32s\" is not %s or %s", key, s, choices[0],
		      choices[1]);
}

/*
 * HF options this decoder does not implement. Each would change the math, so a model that sets one is
 * refused rather than served wrong; absent or null (and the one supported value) pass.
 */
static int llama_unsupported(struct json_object *root, const struct krn_llama_config *c, char *why)
{
	static const char *const no_bias[] = { "attention_bias", "mlp_bias" };
	struct json_object *v;

	if (json_object_object_get_ex(root, "hidden_act", &v) && v &&
	    !(json_object_is_type(v, json_type_string) && strcmp(json_object_get_string(v), "silu") == 0))
		return failed(why, -EINVAL, "config.json: config-value: hidden_act: only \"silu\" is supported");
	if (json_object_object_get_ex(root, "rope_scaling", &v) && v)
		return failed(why, -EINVAL, "config.json: config-value: rope_scaling: not supported (null or absent)");
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(no_bias); i++)
		if (json_object_object_get_ex(root, no_bias[i], &v) && v &&
		    !(json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v)))
			return failed(why, -EINVAL, "config.json: config-value: %s: only false is supported",
				      no_bias[i]);
	if (json_object_object_get_ex(root, "head_dim", &v) && v &&
	    !(json_object_is_type(v, json_type_int) && json_object_get_int64(v) == c->dim / c->n_heads))
		return failed(why, -EINVAL, "config.json: config-value: head_dim: must be hidden_size / "
			      "num_attention_heads = %u", c->dim / c->n_heads);
	return 0;
}

/* The relations between llama keys that the kernel relies on. */
static int llama_consistent(const struct krn_llama_config *c, char *why)
{
	uint32_t head_size;

	if (c->dim % c->n_heads)
		return failed(why, -EINVAL, "config.json: config-value: num_attention_heads: %u does not divide "
			      "hidden_size %u", c->n_heads, c->dim);
	if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
		return failed(why, -EINVAL, "config.json: config-value: num_key_value_heads: %u does not divide "
			      "num_attention_heads %u", c->n_kv_heads, c->n_heads);
	head_size = c->dim / c->n_heads;
	if (head_size % 2)
		return failed(why, -EINVAL, "config.json: config-value: hidden_size: the head size %u is odd; "
			      "RoPE rotates pairs", head_size);
	if (head_size > KRN_LLAMA_HEAD_SIZE_MAX)
		return failed(why, -EINVAL, "config.json: config-value: hidden_size: the head size %u is more "
			      "than %u", head_size, KRN_LLAMA_HEAD_SIZE_MAX);
	if (c->bos_id >= c->vocab_size)
		return failed(why, -EINVAL, "config.json: config-value: bos_token_id: %u is not below vocab_size "
			      "%u", c->bos_id, c->vocab_size);
	if (c->eos_id >= c->vocab_size)
		return failed(why, -EINVAL, "config.json: config-value: eos_token_id: %u is not below vocab_size "
			      "%u", c->eos_id, c->vocab_size);
	return 0;
}

static int llama_config(struct json_object *root, struct krn_llama_config *c, char *why)
{
	int ret;

	memset(c, 0, sizeof(*c));
	ret = cfg_uints(root, llama_uint_keys, ZH_ARRAY_SIZE(llama_uint_keys), c, why);
	if (ret)
		return ret;
	if (c->n_kv_heads == 0)
		c->n_kv_heads = c->n_heads;
	/* rms_norm_eps has no safe default (HF's 1e-6 is not most checkpoints' 1e-5); rope_theta takes HF's. */
	ret = cfg_float(root, "rms_norm_eps", 1, 0.0f, &c->rms_eps, why);
	if (ret)
		return ret;
	ret = cfg_float(root, "rope_theta", 0, 10000.0f, &c->rope_theta, why);
	if (ret)
		return ret;
	/* HF LlamaConfig's default is untied. */
	ret = cfg_bool(root, "tie_word_embeddings", 0, &c->tied, why);
	if (ret)
		return ret;
	ret = llama_consistent(c, why);
	if (ret)
		return ret;
	return llama_unsupported(root, c, why);
}

/* hidden_sizes: 0..KRN_RANKER_LAYERS_MAX - 1 widths, each 1..KRN_RANKER_WIDTH_MAX. */
static int ranker_hidden(struct json_object *root, struct krn_ranker_config *c, char *why)
{
	struct json_object *v;
	size_t n;
	int ret;

	ret = cfg_lookup(root, "hidden_sizes", 1, &v, why);
	if (ret)
		return ret;
	if (!json_object_is_type(v, json_type_array))
		return failed(why, -EINVAL, "config.json: config-key: hidden_sizes: not an array");
	n = json_object_array_length(v);
	if (n > KRN_RANKER_LAYERS_MAX - 1)
		return failed(why, -EINVAL, "config.json: config-value: hidden_sizes: %zu hidden layers, more than "
			      "%u", n, KRN_RANKER_LAYERS_MAX - 1);
	for (size_t i = 0; i < n; i++) {
		struct json_object *w = json_object_array_get_idx(v, i);
		int64_t width;

		if (!json_object_is_type(w, json_type_int))
			return failed(why, -EINVAL, "config.json: config-key: hidden_sizes[%zu]: not an integer", i);
		width = json_object_get_int64(w);
		if (width < 1 || width > KRN_RANKER_WIDTH_MAX)
			return failed(why, -EINVAL, "config.json: config-value: hidden_sizes[%zu]: %" PRId64
				      " is outside 1..%u", i, width, KRN_RANKER_WIDTH_MAX);
		c->layer_out[i] = (uint32_t)width;
	}
	c->layer_count = (uint32_t)n + 1;
	return 0;
}

static int ranker_config(struct json_object *root, struct krn_ranker_config *c, char *why)
{
	static const struct cfg_uint_key output_size = { "output_size", 0, 1, 0, 1, KRN_RANKER_OUTPUTS_MAX };
	uint32_t choice;
	int ret;

	memset(c, 0, sizeof(*c));
	ret = cfg_uints(root, ranker_uint_keys, ZH_ARRAY_SIZE(ranker_uint_keys), c, why);
	if (ret)
		return ret;
	/* Layer 0's input is the bag and the dense features side by side; it is a width like the others. */
	if (c->embedding_dim + c->dense_features > KRN_RANKER_WIDTH_MAX)
		return failed(why, -EINVAL, "config.json: config-value: dense_features: embedding_dim + "
			      "dense_features = %u, more than %u", c->embedding_dim + c->dense_features,
			      KRN_RANKER_WIDTH_MAX);
	ret = ranker_hidden(root, c, why);
	if (ret)
		return ret;
	ret = cfg_uint(root, &output_size, &c->layer_out[c->layer_count - 1], why);
	if (ret)
		return ret;
	ret = cfg_choice(root, "bag_mode", bag_modes, ZH_ARRAY_SIZE(bag_modes), &choice, why);
	if (ret)
		return ret;
	c->bag_mode = (enum krn_bag_mode)choice;
	ret = cfg_choice(root, "output_activation", output_acts, ZH_ARRAY_SIZE(output_acts), &choice, why);
	if (ret)
		return ret;
	c->output_act = (enum krn_output_act)choice;
	return 0;
}

/* `architectures`, when given, is an array of strings; model_type picks the architecture. */
static int config_arch(struct json_object *root, struct krn_model *km, char *why)
{
	struct json_object *v;
	const char *type;
	int ret;

	ret = cfg_lookup(root, "architectures", 0, &v, why);
	if (ret)
		return ret;
	if (v && !json_object_is_type(v, json_type_array))
		return failed(why, -EINVAL, "config.json: config-key: architectures: not an array");
	for (size_t i = 0; v && i < json_object_array_length(v); i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
			return failed(why, -EINVAL, "config.json: config-key: architectures[%zu]: not a string", i);
	ret = cfg_lookup(root, "model_type", 1, &v, why);
	if (ret)
		return ret;
	if (!json_object_is_type(v, json_type_string))
		return failed(why, -EINVAL, "config.json: config-key: model_type: not a string");
	type = json_object_get_string(v);
	if (strcmp(type, "llama") == 0) {
		km->arch = KRN_ARCH_LLAMA;
		return llama_config(root, &km->u.llama.cfg, why);
	}
	if (strcmp(type, "zerohop_ranker") == 0) {
		km->arch = KRN_ARCH_RANKER;
		return ranker_config(root, &km->u.ranker.cfg, why);
	}
	return failed(why, -EINVAL, "config.json: config-value: model_type: \"%.32s\" is not llama or "
		      "zerohop_ranker", type);
}

/* config.json: one JSON object without duplicate keys (rule config-json), then its keys. */
static int config_parse(const uint8_t *buf, size_t size, struct krn_model *km, char *why)
{
	struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH_MAX);
	struct json_object *root = NULL;
	const char *detail = NULL;
	uint32_t key_count = 0;
	int ret;

	if (!tok) {
		ret = failed(why, -ENOMEM, "config.json: out of memory");
		goto out;
	}
	if (json_parse_object(tok, (const char *)buf, size, &root, &detail) ||
	    scan_object((const char *)buf, size, NULL, &key_count, &detail)) {
		ret = failed(why, -EINVAL, "config.json: config-json: %s", detail);
		goto out;
	}
	if (key_count != (uint32_t)json_object_object_length(root)) {
		ret = failed(why, -EINVAL, "config.json: config-json: a key appears twice");
		goto out;
	}
	ret = config_arch(root, km, why);
out:
	json_object_put(root);
	if (tok)
		json_tokener_free(tok);
	return ret;
}

/* ---- tensors to the arena ----------------------------------------------------------------------- */

/*
 * Where one required tensor goes: its HF name, the shape the config implies, and its place in the
 * arena, given as the weights pointer krn_*_bind sets plus an offset, because the arena does not exist
 * yet when the bindings are matched against the file.
 */
struct binding {
	char name[BINDING_NAME_SIZE];
	uint32_t ndim;                  /* 1 or 2 */
	uint64_t shape[2];
	const float *const *field;      /* inside the mgmt_model being loaded */
	uint64_t offset_floats;         /* from where *field points, once bound */
	const struct mgmt_tensor *t;    /* the tensor found for it */
};

enum llama_sym { SYM_NONE, SYM_VOCAB, SYM_D, SYM_KV, SYM_H };

/* docs/MODELS.md's llama table; per-layer names follow "model.layers.L.", layer L at L x its size. */
static const struct llama_tensor {
	const char *name;
	uint8_t per_layer;
	uint8_t untied_only;
	uint8_t rows, cols;             /* enum llama_sym; cols SYM_NONE for a vector */
	size_t field;                   /* offsetof(struct krn_llama_weights, ...) */
} llama_tensors[] = {
	{ "model.embed_tokens.weight", 0, 0, SYM_VOCAB, SYM_D, offsetof(struct krn_llama_weights, token_embedding) },
	{ "input_layernorm.weight", 1, 0, SYM_D, SYM_NONE, offsetof(struct krn_llama_weights, rms_att) },
	{ "self_attn.q_proj.weight", 1, 0, SYM_D, SYM_D, offsetof(struct krn_llama_weights, wq) },
	{ "self_attn.k_proj.weight", 1, 0, SYM_KV, SYM_D, offsetof(struct krn_llama_weights, wk) },
	{ "self_attn.v_proj.weight", 1, 0, SYM_KV, SYM_D, offsetof(struct krn_llama_weights, wv) },
	{ "self_attn.o_proj.weight", 1, 0, SYM_D, SYM_D, offsetof(struct krn_llama_weights, wo) },
	{ "post_attention_layernorm.weight", 1, 0, SYM_D, SYM_NONE, offsetof(struct krn_llama_weights, rms_ffn) },
	{ "mlp.gate_proj.weight", 1, 0, SYM_H, SYM_D, offsetof(struct krn_llama_weights, w1) },
	{ "mlp.up_proj.weight", 1, 0, SYM_H, SYM_D, offsetof(struct krn_llama_weights, w3) },
	{ "mlp.down_proj.weight", 1, 0, SYM_D, SYM_H, offsetof(struct krn_llama_weights, w2) },
	{ "model.norm.weight", 0, 0, SYM_D, SYM_NONE, offsetof(struct krn_llama_weights, rms_final) },
	{ "lm_head.weight", 0, 1, SYM_VOCAB, SYM_D, offsetof(struct krn_llama_weights, wcls) },
};

/* Bindings a model can have: every llama tensor in every layer is the most. */
#define BINDINGS_MAX (ZH_ARRAY_SIZE(llama_tensors) * KRN_LLAMA_LAYERS_MAX)
ZH_STATIC_ASSERT(1 + 2 * KRN_RANKER_LAYERS_MAX <= ZH_ARRAY_SIZE(llama_tensors) * KRN_LLAMA_LAYERS_MAX,
		 "BINDINGS_MAX covers the ranker too");

static uint64_t llama_dim(const struct krn_llama_config *c, uint8_t sym)
{
	switch (sym) {
	case SYM_VOCAB:
		return c->vocab_size;
	case SYM_D:
		return c->dim;
	case SYM_KV:
		return (uint64_t)c->dim / c->n_heads * c->n_kv_heads;
	case SYM_H:
		return c->hidden_dim;
	default:
		return 1;
	}
}

static void binding_set(struct binding *b, uint32_t ndim, uint64_t rows, uint64_t cols,
			const float *const *field, uint64_t offset_floats)
{
	b->ndim = ndim;
	b->shape[0] = rows;
	b->shape[1] = ndim == 2 ? cols : 0;
	b->field = field;
	b->offset_floats = offset_floats;
}

static uint32_t llama_bindings(struct krn_llama *m, struct binding *b)
{
	const struct krn_llama_config *c = &m->cfg;
	uint32_t n = 0;

	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(llama_tensors); i++) {
		const struct llama_tensor *lt = &llama_tensors[i];
		const float *const *field = (const float *const *)((const char *)&m->w + lt->field);
		uint64_t rows = llama_dim(c, lt->rows), cols = llama_dim(c, lt->cols);

		if (lt->untied_only && c->tied)
			continue;
		for (uint32_t l = 0; l < (lt->per_layer ? c->n_layers : 1); l++, n++) {
			if (lt->per_layer)
				snprintf(b[n].name, sizeof(b[n].name), "model.layers.%u.%s", l, lt->name);
			else
				snprintf(b[n].name, sizeof(b[n].name), "%s", lt->name);
			binding_set(&b[n], lt->cols == SYM_NONE ? 1 : 2, rows, cols, field, l * rows * cols);
		}
	}
	return n;
}

/* docs/MODELS.md's ranker: embedding.weight, then mlp.i.weight [out, in] and mlp.i.bias [out] per layer. */
static uint32_t ranker_bindings(struct krn_ranker *m, struct binding *b)
{
	const struct krn_ranker_config *c = &m->cfg;
	uint32_t n = 0;

	snprintf(b[n].name, sizeof(b[n].name), "embedding.weight");
	binding_set(&b[n++], 2, c->vocab_size, c->embedding_dim, &m->w.embedding, 0);
	for (uint32_t i = 0; i < c->layer_count; i++) {
		snprintf(b[n].name, sizeof(b[n].name), "mlp.%u.weight", i);
		binding_set(&b[n++], 2, c->layer_out[i], krn_ranker_layer_in(c, i), &m->w.weight[i], 0);
		snprintf(b[n].name, sizeof(b[n].name), "mlp.%u.bias", i);
		binding_set(&b[n++], 1, c->layer_out[i], 0, &m->w.bias[i], 0);
	}
	return n;
}

static void shape_format(char *out, size_t cap, uint32_t ndim, const uint64_t *shape)
{
	size_t len = (size_t)snprintf(out, cap, "[");

	for (uint32_t i = 0; i < ndim && len < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s%" PRIu64, i ? ", " : "", shape[i]);
	if (len < cap)
		snprintf(out + len, cap - len, "]");
}

/* Rules required and tensor-shape: each binding's tensor is there with the shape the config implies. */
static int bindings_match(struct binding *b, uint32_t count, const struct mgmt_safetensors *st, uint8_t *used,
			  char *why)
{
	char have[96], want[48];

	for (uint32_t i = 0; i < count; i++) {
		const struct mgmt_tensor *t = mgmt_safetensors_find(st, b[i].name);
		int same;

		if (!t)
			return failed(why, -EINVAL, "model.safetensors: required: %s: missing", b[i].name);
		same = t->ndim == b[i].ndim && t->shape[0] == b[i].shape[0] &&
		       (b[i].ndim == 1 || t->shape[1] == b[i].shape[1]);
		if (!same) {
			shape_format(have, sizeof(have), t->ndim, t->shape);
			shape_format(want, sizeof(want), b[i].ndim, b[i].shape);
			return failed(why, -EINVAL, "model.safetensors: tensor-shape: %s: %s, the config implies %s",
				      b[i].name, have, want);
		}
		used[t - st->tensors] = 1;
		b[i].t = t;
	}
	return 0;
}

/* Rule unknown: a tensor no binding took is a warning, printed once, never silently dropped. */
static uint32_t unknown_warn(const char *model, enum krn_arch arch, const struct mgmt_safetensors *st,
			     const uint8_t *used)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < st->tensor_count; i++) {
		if (used[i])
			continue;
		fprintf(stderr, "zerohop: model %s: unknown: %s: not used by %s, ignored\n", model,
			st->tensors[i].name, arch == KRN_ARCH_LLAMA ? "llama" : "ranker");
		n++;
	}
	return n;
}

/* IEEE binary16 to binary32, exactly: subnormals are normalised, infinities and NaN payloads kept. */
static uint32_t f16_to_f32_bits(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;

	if (exp == 0x1fu)
		return sign | 0x7f800000u | mant << 13;
	if (exp != 0)
		return sign | (exp + 127 - 15) << 23 | mant << 13;
	if (mant == 0)
		return sign;
	/* mant x 2^-24: shift the leading one up to the implicit bit, one exponent step per shift. */
	exp = 127 - 15 + 1;
	while (!(mant & 0x400u)) {
		mant <<= 1;
		exp--;
	}
	return sign | exp << 23 | (mant & 0x3ffu) << 13;
}

/* The conversion loops are standalone: on a large model they are most of the load's time. */
static void convert_f16(float *dst, const uint8_t *src, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t bits = f16_to_f32_bits((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));

		memcpy(&dst[i], &bits, sizeof(bits));
	}
}

/* bfloat16 is the top half of a binary32, so widening is a shift. */
static void convert_bf16(float *dst, const uint8_t *src, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;

		memcpy(&dst[i], &bits, sizeof(bits));
	}
}

static void tensor_copy(float *dst, const struct mgmt_tensor *t)
{
	uint64_t n = t->size_bytes / dtype_size(t->dtype);

	if (t->dtype == MGMT_DTYPE_F32)
		memcpy(dst, t->data, (size_t)t->size_bytes);
	else if (t->dtype == MGMT_DTYPE_F16)
		convert_f16(dst, t->data, n);
	else
		convert_bf16(dst, t->data, n);
}

/*
 * Allocate the arena, let the kernel lay it out, copy every binding's tensor to its place and fill
 * the RoPE tables. Zeroed first, so that anything the layout leaves between weights is defined.
 */
static int arena_fill(struct mgmt_model *m, const struct binding *b, uint32_t count, char *why)
{
	struct krn_model *km = &m->model;
	int llama = km->arch == KRN_ARCH_LLAMA;
	uint64_t floats, bytes;
	float *arena;

	floats = llama ? krn_llama_weight_floats(&km->u.llama.cfg) : krn_ranker_weight_floats(&km->u.ranker.cfg);
	/* aligned_alloc wants a multiple of the alignment. */
	bytes = (floats * sizeof(float) + ARENA_ALIGN_BYTES - 1) / ARENA_ALIGN_BYTES * ARENA_ALIGN_BYTES;
	arena = aligned_alloc(ARENA_ALIGN_BYTES, (size_t)bytes);
	if (!arena)
		return failed(why, -ENOMEM, "arena: %" PRIu64 " bytes: out of memory", bytes);
	memset(arena, 0, (size_t)bytes);
	if (llama)
		krn_llama_bind(&km->u.llama, arena);
	else
		krn_ranker_bind(&km->u.ranker, arena);
	for (uint32_t i = 0; i < count; i++) {
		uintptr_t at = (uintptr_t)*b[i].field;
		uint64_t n = b[i].t->size_bytes / dtype_size(b[i].t->dtype);
		uint64_t start = (at - (uintptr_t)arena) / sizeof(float) + b[i].offset_floats;

		/* A programmer error between this table and krn_*_bind; refused rather than written past. */
		if (at < (uintptr_t)arena || start > floats || n > floats - start) {
			free(arena);
			return failed(why, -EINVAL, "internal: %s: the kernel's layout puts it outside the arena",
				      b[i].name);
		}
		tensor_copy(arena + start, b[i].t);
	}
	if (llama) {
		krn_llama_fill_rope(&km->u.llama.cfg, arena);
		m->state_floats = krn_llama_state_floats(&km->u.llama.cfg);
	} else {
		m->state_floats = krn_ranker_state_floats(&km->u.ranker.cfg);
	}
	m->arena = arena;
	m->arena_floats = floats;
	return 0;
}

/* ---- the loader ---------------------------------------------------------------------------------- */

/*
 * Read DIR/FILE whole into a malloc'ed buffer, the size capped before anything is allocated. Plain
 * read() for now: the io_uring path replaces this one function.
 */
static int file_read(const char *dir, const char *file, uint64_t cap_bytes, uint8_t **buf_out, size_t *size_out,
		     char *why)
{
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	struct stat sb;
	size_t size, done = 0;
	int fd = -1, ret;

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path)) {
		ret = failed(why, -ENAMETOOLONG, "%s: the path is longer than %d bytes", file, PATH_MAX - 1);
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		ret = failed(why, -errno, "%s: %s", file, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = failed(why, -EINVAL, "%s: not a regular file", file);
		goto out;
	}
	if ((uint64_t)sb.st_size > cap_bytes) {
		ret = failed(why, -EFBIG, "%s: %jd bytes, more than the %" PRIu64 " this loader reads", file,
			     (intmax_t)sb.st_size, cap_bytes);
		goto out;
	}
	size = (size_t)sb.st_size;
	buf = malloc(size + 1);
	if (!buf) {
		ret = failed(why, -ENOMEM, "%s: out of memory for %zu bytes", file, size);
		goto out;
	}
	while (done < size) {
		ssize_t got = read(fd, buf + done, size - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			ret = got < 0 ? failed(why, -errno, "%s: %s", file, strerror(errno))
				      : failed(why, -EIO, "%s: ended after %zu of %zu bytes", file, done, size);
			goto out;
		}
		done += (size_t)got;
	}
	*buf_out = buf;
	*size_out = size;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* The name requests will use: 1..ZH_MODEL_NAME_MAX bytes, printable (it appears in logs). */
static int model_name_check(const char *name, char *why)
{
	size_t len = name ? strnlen(name, ZH_MODEL_NAME_MAX + 1) : 0;

	if (len == 0 || len > ZH_MODEL_NAME_MAX)
		return failed(why, -EINVAL, "model name: 1..%u bytes expected", ZH_MODEL_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if ((uint8_t)name[i] < 0x20 || (uint8_t)name[i] == 0x7f)
			return failed(why, -EINVAL, "model name: holds a control character");
	return 0;
}

int mgmt_model_load_mem(const char *name, const uint8_t *cfg_buf, size_t cfg_bytes, const uint8_t *st_buf,
			size_t st_bytes, struct mgmt_model *out, char why[MGMT_WHY_SIZE])
{
	struct mgmt_safetensors st = { 0 };
	struct binding *b = NULL;
	uint8_t *used = NULL;
	char detail[MGMT_WHY_SIZE];
	struct mgmt_model m;
	uint32_t count;
	int ret;

	memset(&m, 0, sizeof(m));
	why[0] = '\0';
	ret = model_name_check(name, why);
	if (ret)
		goto out;
	memcpy(m.model.name, name, strlen(name) + 1);
	ret = config_parse(cfg_buf, cfg_bytes, &m.model, why);
	if (ret)
		goto out;
	ret = mgmt_safetensors_parse(st_buf, st_bytes, &st, detail);
	if (ret) {
		failed(why, ret, "model.safetensors: %s", detail);
		goto out;
	}
	b = calloc(BINDINGS_MAX, sizeof(*b));
	used = calloc((size_t)st.tensor_count + 1, 1);
	if (!b || !used) {
		ret = failed(why, -ENOMEM, "model.safetensors: out of memory for %u tensors", st.tensor_count);
		goto out;
	}
	count = m.model.arch == KRN_ARCH_LLAMA ? llama_bindings(&m.model.u.llama, b)
					       : ranker_bindings(&m.model.u.ranker, b);
	ret = bindings_match(b, count, &st, used, why);
	if (ret)
		goto out;
	m.warning_count = unknown_warn(name, m.model.arch, &st, used);
	ret = arena_fill(&m, b, count, why);
	if (ret)
		goto out;
	*out = m;
out:
	free(used);
	free(b);
	mgmt_safetensors_free(&st);
	return ret;
}

int mgmt_model_load(const char *name, const char *dir, struct mgmt_model *out, char why[MGMT_WHY_SIZE])
{
	uint8_t *cfg_buf = NULL, *st_buf = NULL;
	size_t cfg_bytes = 0, st_bytes = 0;
	int ret;

	why[0] = '\0';
	ret = model_name_check(name, why);
	if (ret)
		goto out;
	if (!dir) {
		ret = failed(why, -EINVAL, "model %s: no directory", name);
		goto out;
	}
	ret = file_read(dir, "config.json", CONFIG_FILE_MAX_BYTES, &cfg_buf, &cfg_bytes, why);
	if (ret)
		goto out;
	ret = file_read(dir, "model.safetensors", MODEL_FILE_MAX_BYTES, &st_buf, &st_bytes, why);
	if (ret)
		goto out;
	ret = mgmt_model_load_mem(name, cfg_buf, cfg_bytes, st_buf, st_bytes, out, why);
out:
	free(st_buf);
	free(cfg_buf);
	return ret;
}

void mgmt_model_free(struct mgmt_model *m)
{
	free(m->arena);
	memset(m, 0, sizeof(*m));
}
