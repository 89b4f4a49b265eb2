/* SPDX-License-Identifier: MIT */
/*
 * krn_request.c: protocol v1 request decoder and answer encoder. Host/device-neutral.
 *
 * The decoder reads the request map once, key by key. Known keys are type-checked and bounded;
 * unknown keys are skipped (a newer client may send more) but still count toward ZH_REQ_KEYS_MAX.
 * A key seen twice is a bad request: two different `tokens` arrays have no right answer.
 */
#include "krn_request.h"
#include "krn_msgpack.h"

enum req_key {
	KEY_UNKNOWN = 0,
	KEY_ID,
	KEY_MODEL,
	KEY_OP,
	KEY_TOKENS,
	KEY_DENSE,
	KEY_MAX_NEW,
	KEY_TOP_K,
	KEY_TEMPERATURE,
	KEY_SEED,
	KEY_TRACE,
	KEY_COUNT,
};

/* Key names, indexed by enum req_key; the bit of key k in present_mask is 1 << (k - 1). */
static ZH_HD const char *key_name(int k)
{
	switch (k) {
	case KEY_ID: return "id";
	case KEY_MODEL: return "model";
	case KEY_OP: return "op";
	case KEY_TOKENS: return "tokens";
	case KEY_DENSE: return "dense";
	case KEY_MAX_NEW: return "max_new";
	case KEY_TOP_K: return "top_k";
	case KEY_TEMPERATURE: return "temperature";
	case KEY_SEED: return "seed";
	case KEY_TRACE: return "trace";
	default: return "";
	}
}

ZH_STATIC_ASSERT(KRN_REQ_HAS_TRACE == 1u << (KEY_TRACE - 1), "present bits follow enum req_key");

static ZH_HD int lookup_key(const struct krn_mp_value *key)
{
	for (int k = KEY_ID; k < KEY_COUNT; k++)
		if (krn_mp_str_eq(key, key_name(k)))
			return k;
	return KEY_UNKNOWN;
}

/* Map a reader error to a status and text. */
static ZH_HD enum zh_status reader_error(int rc, const char **error)
{
	if (rc == KRN_MP_E_INVALID) {
		*error = "not msgpack";
		return ZH_STATUS_BAD_REQUEST;
	}
	/* A container that claims more elements than the datagram holds is malformed; too_large is
	 * kept for counts over a stated bound (read_bounded_header). */
	if (rc == KRN_MP_E_TOO_LARGE) {
		*error = "container larger than the datagram";
		return ZH_STATUS_BAD_REQUEST;
	}
	*error = "truncated msgpack";
	return ZH_STATUS_BAD_REQUEST;
}

/*
 * Read a container header whose count the protocol bounds by `max`. A count over the bound is too
 * large whatever follows; a count within it that the bytes left cannot hold is a truncated request.
 */
static ZH_HD enum zh_status read_bounded_header(struct krn_mp_reader *r, enum krn_mp_type type,
						uint32_t max, struct krn_mp_value *v,
						const char *bad_type, const char *too_many,
						const char **error)
{
	int rc = krn_mp_read(r, v);

	if (rc && rc != KRN_MP_E_TOO_LARGE)
		return reader_error(rc, error);
	if (v->type != type) {
		*error = bad_type;
		return ZH_STATUS_BAD_REQUEST;
	}
	if (v->size > max) {
		*error = too_many;
		return ZH_STATUS_TOO_LARGE;
	}
	if (rc) {
		*error = "truncated msgpack";
		return ZH_STATUS_BAD_REQUEST;
	}
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_uint(struct krn_mp_reader *r, uint64_t max, uint64_t *out,
				      const char *bad_type, const char **error)
{
	struct krn_mp_value v;
	int rc = krn_mp_read(r, &v);

	if (rc)
		return reader_error(rc, error);
	if (v.type != KRN_MP_UINT || v.v.u > max) {
		*error = bad_type;
		return ZH_STATUS_BAD_REQUEST;
	}
	*out = v.v.u;
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_tokens(struct krn_mp_reader *r, struct krn_request *req,
					const char **error)
{
	struct krn_mp_value v;
	enum zh_status st = read_bounded_header(r, KRN_MP_ARRAY, ZH_TOKENS_MAX, &v, "tokens must be an array",
						"too many tokens", error);

	if (st != ZH_STATUS_OK)
		return st;
	req->token_count = v.size;
	for (uint32_t i = 0; i < v.size; i++) {
		uint64_t id;

		st = read_uint(r, 0xffffffffu, &id, "token ids must be uint32", error);
		if (st != ZH_STATUS_OK)
			return st;
		req->tokens[i] = (uint32_t)id;
	}
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_dense(struct krn_mp_reader *r, struct krn_request *req,
				       const char **error)
{
	struct krn_mp_value v;
	enum zh_status st = read_bounded_header(r, KRN_MP_ARRAY, ZH_DENSE_MAX, &v, "dense must be an array",
						"too many dense features", error);
	int rc;

	if (st != ZH_STATUS_OK)
		return st;
	req->dense_count = v.size;
	/* Each element is read into its own value: reading into `v` would clear the count the loop
	 * runs to, ending it after the first element. */
	for (uint32_t i = 0; i < req->dense_count; i++) {
		struct krn_mp_value e;
		double d;

		rc = krn_mp_read(r, &e);
		if (rc)
			return reader_error(rc, error);
		if (krn_mp_as_double(&e, &d)) {
			*error = "dense values must be numbers";
			return ZH_STATUS_BAD_REQUEST;
		}
		req->dense[i] = (float)d;
	}
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_op(struct krn_mp_reader *r, struct krn_request *req, const char **error)
{
	struct krn_mp_value v;
	int rc = krn_mp_read(r, &v);

	if (rc)
		return reader_error(rc, error);
	if (krn_mp_str_eq(&v, "score"))
		req->op = ZH_OP_SCORE;
	else if (krn_mp_str_eq(&v, "logits"))
		req->op = ZH_OP_LOGITS;
	else if (krn_mp_str_eq(&v, "generate"))
		req->op = ZH_OP_GENERATE;
	else if (krn_mp_str_eq(&v, "echo"))
		req->op = ZH_OP_ECHO;
	else {
		*error = v.type == KRN_MP_STR ? "unknown op" : "op must be a string";
		return ZH_STATUS_BAD_REQUEST;
	}
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_model(struct krn_mp_reader *r, struct krn_request *req,
				       const char **error)
{
	struct krn_mp_value v;
	int rc = krn_mp_read(r, &v);

	if (rc)
		return reader_error(rc, error);
	if (v.type != KRN_MP_STR) {
		*error = "model must be a string";
		return ZH_STATUS_BAD_REQUEST;
	}
	if (v.size > ZH_MODEL_NAME_MAX) {
		*error = "model name too long";
		return ZH_STATUS_TOO_LARGE;
	}
	for (uint32_t i = 0; i < v.size; i++)
		req->model_name[i] = (char)v.data[i];
	req->model_name[v.size] = '\0';
	req->model_name_len = v.size;
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status read_value(struct krn_mp_reader *r, int key, struct krn_request *req,
				       const char **error)
{
	struct krn_mp_value v;
	uint64_t u = 0;
	enum zh_status st;
	double d;
	int rc;

	switch (key) {
	case KEY_ID:
		return read_uint(r, UINT64_MAX, &req->id, "id must be a uint64", error);
	case KEY_MODEL:
		return read_model(r, req, error);
	case KEY_OP:
		return read_op(r, req, error);
	case KEY_TOKENS:
		return read_tokens(r, req, error);
	case KEY_DENSE:
		return read_dense(r, req, error);
	case KEY_MAX_NEW:
		st = read_uint(r, 0xffffffffu, &u, "max_new must be a uint32", error);
		req->max_new = (uint32_t)u;
		return st;
	case KEY_TOP_K:
		st = read_uint(r, 0xffffffffu, &u, "top_k must be a uint32", error);
		req->top_k = (uint32_t)u;
		return st;
	case KEY_SEED:
		return read_uint(r, UINT64_MAX, &req->seed, "seed must be a uint64", error);
	case KEY_TEMPERATURE:
		rc = krn_mp_read(r, &v);
		if (rc)
			return reader_error(rc, error);
		if (krn_mp_as_double(&v, &d) || !(d >= 0.0 && d <= 100.0)) {
			*error = "temperature must be a number in [0, 100]";
			return ZH_STATUS_BAD_REQUEST;
		}
		req->temperature = (float)d;
		return ZH_STATUS_OK;
	case KEY_TRACE:
		rc = krn_mp_read(r, &v);
		if (rc)
			return reader_error(rc, error);
		if (v.type != KRN_MP_BOOL) {
			*error = "trace must be a bool";
			return ZH_STATUS_BAD_REQUEST;
		}
		req->trace = (uint32_t)v.v.boolean;
		return ZH_STATUS_OK;
	default:
		rc = krn_mp_skip(r);
		return rc ? reader_error(rc, error) : ZH_STATUS_OK;
	}
}

/* Best effort after a failed decode: find a well-formed uint `id` so the error answer can carry it. */
static ZH_HD void find_id(const uint8_t *buf, uint32_t size_bytes, struct krn_request *req)
{
	struct krn_mp_reader r;
	struct krn_mp_value v;

	krn_mp_reader_init(&r, buf, size_bytes);
	if (krn_mp_read(&r, &v) || v.type != KRN_MP_MAP)
		return;
	for (uint32_t i = 0; i < v.size && i < ZH_REQ_KEYS_MAX; i++) {
		struct krn_mp_reader at_key = r;
		struct krn_mp_value key;

		if (krn_mp_read(&r, &key))
			return;
		if (krn_mp_str_eq(&key, "id")) {
			if (krn_mp_read(&r, &v) || v.type != KRN_MP_UINT)
				return;
			req->id = v.v.u;
			req->present_mask |= KRN_REQ_HAS_ID;
			return;
		}
		/* krn_mp_read took only the header of a container key; skip the whole key from its
		 * start, then its value, or the scan drifts into the key's elements. */
		r = at_key;
		if (krn_mp_skip(&r) || krn_mp_skip(&r))
			return;
	}
}

static ZH_HD void request_reset(struct krn_request *req)
{
	req->id = 0;
	req->present_mask = 0;
	req->op = ZH_OP_NONE;
	req->model_name_len = 0;
	req->model_name[0] = '\0';
	req->token_count = 0;
	req->dense_count = 0;
	req->max_new = 0;
	req->top_k = 0;
	req->temperature = 0.0f;
	req->trace = 0;
	req->seed = 0;
}

static ZH_HD enum zh_status decode_map(const uint8_t *buf, uint32_t size_bytes, struct krn_request *req,
				       const char **error)
{
	struct krn_mp_reader r;
	struct krn_mp_value v;
	int rc;

	krn_mp_reader_init(&r, buf, size_bytes);
	enum zh_status st = read_bounded_header(&r, KRN_MP_MAP, ZH_REQ_KEYS_MAX, &v, "request must be a map",
						"too many keys", error);
	if (st != ZH_STATUS_OK)
		return st;
	uint32_t key_count = v.size;
	for (uint32_t i = 0; i < key_count; i++) {
		rc = krn_mp_read(&r, &v);
		if (rc)
			return reader_error(rc, error);
		if (v.type != KRN_MP_STR) {
			*error = "keys must be strings";
			return ZH_STATUS_BAD_REQUEST;
		}
		int key = lookup_key(&v);
		if (key != KEY_UNKNOWN) {
			uint32_t bit = 1u << (key - 1);
			if (req->present_mask & bit) {
				*error = "duplicate key";
				return ZH_STATUS_BAD_REQUEST;
			}
			req->present_mask |= bit;
		}
		st = read_value(&r, key, req, error);
		if (st != ZH_STATUS_OK)
			return st;
	}
	if (krn_mp_reader_left(&r) != 0) {
		*error = "trailing bytes after the request";
		return ZH_STATUS_BAD_REQUEST;
	}
	if (!(req->present_mask & KRN_REQ_HAS_ID)) {
		*error = "missing id";
		return ZH_STATUS_BAD_REQUEST;
	}
	return ZH_STATUS_OK;
}

ZH_HD enum zh_status krn_request_decode(const uint8_t *buf, uint32_t size_bytes, struct krn_request *req,
					const char **error)
{
	enum zh_status st;

	request_reset(req);
	*error = "";
	if (size_bytes > ZH_REQ_MAX_BYTES) {
		*error = "request larger than the datagram bound";
		st = ZH_STATUS_TOO_LARGE;
	} else {
		st = decode_map(buf, size_bytes, req, error);
	}
	if (st != ZH_STATUS_OK) {
		/* The id read so far may come from a value that failed later; start over. */
		req->present_mask = 0;
		req->id = 0;
		if (size_bytes <= ZH_REQ_MAX_BYTES)
			find_id(buf, size_bytes, req);
	}
	return st;
}

ZH_HD void krn_answer_head(struct krn_mp_writer *w, uint32_t extra_entries, int has_id, uint64_t id,
			   enum zh_status status, const char *error)
{
	int has_error = error && error[0] != '\0';

	krn_mp_put_map(w, 2 + (uint32_t)has_error + extra_entries);
	krn_mp_put_cstr(w, "id");
	if (has_id)
		krn_mp_put_uint(w, id);
	else
		krn_mp_put_nil(w);
	krn_mp_put_cstr(w, "status");
	krn_mp_put_uint(w, (uint64_t)status);
	if (has_error) {
		uint32_t len = 0;

		while (error[len] != '\0' && len < ZH_ERROR_TEXT_MAX)
			len++;
		krn_mp_put_cstr(w, "error");
		krn_mp_put_str(w, error, len);
	}
}

ZH_HD uint32_t krn_answer_encode_error(uint8_t *buf, uint32_t cap_bytes, int has_id, uint64_t id,
				       enum zh_status status, const char *error)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, cap_bytes);
	krn_answer_head(&w, 0, has_id, id, status, error);
	return w.overflow ? 0 : krn_mp_writer_size(&w, buf);
}
