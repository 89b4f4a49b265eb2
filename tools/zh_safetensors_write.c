/* SPDX-License-Identifier: MIT */
/*
 * zh_safetensors_write.c: the safetensors and config.json writer of the model tools. See the header for
 * the three steps of writing a safetensors file and for how errors are reported.
 *
 * The layout is the one Hugging Face's own writer produces and its reader insists on: tensors back to
 * back with no gaps, in the order they were declared, the JSON header padded with spaces so that the
 * data area starts at a multiple of 8 bytes. Every offset must be a multiple of its element size
 * (docs/MODELS.md, rule `alignment`); with one dtype per file it is, and a mixed file that breaks it is
 * refused rather than padded, since readers do not accept gaps.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "zh_proto.h"
#include "zh_safetensors_write.h"

/* Floats and the header's size are written as the host holds them, which must be little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian, and so must the host be");

/* The reader refuses a larger header (docs/MODELS.md, rule `header-size`). */
#define HEADER_BYTES_MAX (100ull << 20)
/* F16/BF16 values converted per write; 128 KiB of staging. */
#define STAGE_VALUES 65536u
#define FILE_MODE 0644u

/* ---- strings --------------------------------------------------------------------------------- */

static void buf_reserve(struct zh_buf *b, size_t more)
{
	size_t cap;
	char *data;

	if (b->failed || b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	data = realloc(b->data, cap);
	if (!data) {
		b->failed = 1;
		return;
	}
	b->data = data;
	b->cap = cap;
}

static void buf_append(struct zh_buf *b, const char *text, size_t len)
{
	buf_reserve(b, len);
	if (b->failed)
		return;
	memcpy(b->data + b->len, text, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void zh_buf_free(struct zh_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void zh_buf_printf(struct zh_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	buf_reserve(b, (size_t)n);
	if (b->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void zh_buf_json_str(struct zh_buf *b, const char *text)
{
	const unsigned char *p;

	buf_append(b, "\"", 1);
	for (p = (const unsigned char *)text; *p; p++) {
		if (*p == '"' || *p == '\\')
			zh_buf_printf(b, "\\%c", *p);
		else if (*p < 0x20)
			zh_buf_printf(b, "\\u%04x", *p);
		else if (*p >= 0x80)
			buf_append(b, "?", 1); /* The header must be valid UTF-8; a stray byte would not be. */
		else
			buf_append(b, (const char *)p, 1);
	}
	buf_append(b, "\"", 1);
}

static int model_name_ok(const char *text)
{
	size_t len = strlen(text), i;

	if (len == 0 || len > ZH_MODEL_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char c = text[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void zh_path_last(const char *path, char *out, size_t out_size)
{
	size_t end = strlen(path), begin;

	while (end > 1 && path[end - 1] == '/')
		end--;
	begin = end;
	while (begin > 0 && path[begin - 1] != '/')
		begin--;
	if (end - begin >= out_size) {
		out[0] = '\0';
		return;
	}
	memcpy(out, path + begin, end - begin);
	out[end - begin] = '\0';
}

int zh_model_name(const char *tool, const char *given, const char *out_dir, char *out, size_t out_size)
{
	if (given && strlen(given) < out_size)
		memcpy(out, given, strlen(given) + 1);
	else if (given)
		out[0] = '\0';
	else
		zh_path_last(out_dir, out, out_size);
	if (model_name_ok(out))
		return 0;
	if (given)
		fprintf(stderr, "%s: --name %s: a model name is 1..%u characters of [A-Za-z0-9._-]\n", tool, given,
			ZH_MODEL_NAME_MAX);
	else
		fprintf(stderr, "%s: %s does not end in a model name (1..%u characters of [A-Za-z0-9._-]); pass --name\n",
			tool, out_dir, ZH_MODEL_NAME_MAX);
	return -EINVAL;
}

/* ---- files ----------------------------------------------------------------------------------- */

static int write_all(const char *tool, const char *path, int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			fprintf(stderr, "%s: write %s: %s\n", tool, path, strerror(err));
			return -err;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* mkdir that is content when the directory is already there. */
static int mkdir_one(const char *tool, const char *dir)
{
	struct stat st;
	int err;

	if (mkdir(dir, 0755) == 0)
		return 0;
	err = errno;
	if (err == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (err == EEXIST) {
		fprintf(stderr, "%s: %s exists and is not a directory\n", tool, dir);
		return -ENOTDIR;
	}
	fprintf(stderr, "%s: mkdir %s: %s\n", tool, dir, strerror(err));
	return -err;
}

int zh_out_dir(const char *tool, const char *dir)
{
	char *path, *p;
	int ret = 0;

	if (dir[0] == '\0') {
		fprintf(stderr, "%s: empty output directory\n", tool);
		return -EINVAL;
	}
	path = strdup(dir);
	if (!path) {
		fprintf(stderr, "%s: out of memory\n", tool);
		return -ENOMEM;
	}
	/* Each parent in turn, as mkdir -p does; a leading slash is not a component. */
	for (p = path + 1; *p && ret == 0; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		ret = mkdir_one(tool, path);
		*p = '/';
	}
	if (ret == 0)
		ret = mkdir_one(tool, path);
	free(path);
	return ret;
}

/* Create dir/.tmp-NAME.XXXXXX with the mode a plain creat() would give it. Returns the fd. */
static int tmp_create(const char *tool, const char *dir, const char *name, char **path_out)
{
	mode_t mask;
	char *path;
	int fd, err;

	if (asprintf(&path, "%s/.tmp-%s.XXXXXX", dir, name) < 0) {
		fprintf(stderr, "%s: out of memory\n", tool);
		return -ENOMEM;
	}
	fd = mkstemp(path);
	if (fd < 0) {
		err = errno;
		fprintf(stderr, "%s: create %s: %s\n", tool, path, strerror(err));
		free(path);
		return -err;
	}
	/* mkstemp makes the file private; the model is data for others to read. */
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, FILE_MODE & ~mask) != 0) {
		err = errno;
		fprintf(stderr, "%s: chmod %s: %s\n", tool, path, strerror(err));
		close(fd);
		unlink(path);
		free(path);
		return -err;
	}
	*path_out = path;
	return fd;
}

/* Sync and close fd, rename tmp_path to dir/name, and sync dir so that the rename lasts. */
static int tmp_finish(const char *tool, int fd, const char *tmp_path, const char *dir, const char *name)
{
	char *path = NULL;
	int err = 0, dfd;

	if (fsync(fd) != 0)
		err = errno;
	if (close(fd) != 0 && !err)
		err = errno;
	if (err) {
		fprintf(stderr, "%s: sync %s: %s\n", tool, tmp_path, strerror(err));
		return -err;
	}
	if (asprintf(&path, "%s/%s", dir, name) < 0) {
		fprintf(stderr, "%s: out of memory\n", tool);
		return -ENOMEM;
	}
	if (rename(tmp_path, path) != 0) {
		err = errno;
		fprintf(stderr, "%s: rename %s to %s: %s\n", tool, tmp_path, path, strerror(err));
		free(path);
		return -err;
	}
	free(path);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		(void)fsync(dfd); /* Best effort: some file systems refuse to sync a directory. */
		close(dfd);
	}
	return 0;
}

int zh_write_atomic(const char *tool, const char *dir, const char *name, const void *data, size_t len)
{
	char *tmp_path = NULL;
	int fd, ret;

	fd = tmp_create(tool, dir, name, &tmp_path);
	if (fd < 0)
		return fd;
	ret = write_all(tool, tmp_path, fd, data, len);
	if (ret == 0)
		ret = tmp_finish(tool, fd, tmp_path, dir, name);
	else
		close(fd);
	if (ret != 0)
		unlink(tmp_path);
	free(tmp_path);
	return ret;
}

/* ---- dtypes ---------------------------------------------------------------------------------- */

uint32_t zh_st_dtype_bytes(enum zh_st_dtype dtype)
{
	return dtype == ZH_ST_F32 ? 4u : 2u;
}

const char *zh_st_dtype_name(enum zh_st_dtype dtype)
{
	switch (dtype) {
	case ZH_ST_F32:
		return "F32";
	case ZH_ST_F16:
		return "F16";
	case ZH_ST_BF16:
		return "BF16";
	}
	return "?";
}

int zh_st_dtype_parse(const char *text, enum zh_st_dtype *out)
{
	if (strcmp(text, "f32") == 0)
		*out = ZH_ST_F32;
	else if (strcmp(text, "f16") == 0)
		*out = ZH_ST_F16;
	else if (strcmp(text, "bf16") == 0)
		*out = ZH_ST_BF16;
	else
		return -EINVAL;
	return 0;
}

uint16_t zh_f32_to_f16(float value)
{
	uint32_t x, sign, exp8, man, half, rem, mid, shift;
	int32_t exp5;

	memcpy(&x, &value, sizeof(x));
	sign = (x >> 16) & 0x8000u;
	exp8 = (x >> 23) & 0xffu;
	man = x & 0x7fffffu;
	if (exp8 == 0xffu) /* Infinity stays infinity; a NaN keeps its top payload bits and is made quiet. */
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
	exp5 = (int32_t)exp8 - 127 + 15;
	if (exp5 >= 0x1f)
		return (uint16_t)(sign | 0x7c00u);
	if (exp5 <= 0) {
		/* A half subnormal counts units of 2^-24: the 24-bit significand shifted right by 14 - exp5. Below
		 * 2^-25 (exp5 < -10) everything rounds to zero; 2^-25 itself is a tie and goes to the even zero. */
		if (exp5 < -10)
			return (uint16_t)sign;
		man |= 0x800000u;
		shift = (uint32_t)(14 - exp5);
		half = man >> shift;
		rem = man & ((1u << shift) - 1);
		mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1u)))
			half++; /* A carry out of the subnormals makes the smallest normal, as it should. */
		return (uint16_t)(sign | half);
	}
	half = sign | ((uint32_t)exp5 << 10) | (man >> 13);
	rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
		half++; /* A carry into the exponent is right, up to and including infinity. */
	return (uint16_t)half;
}

uint16_t zh_f32_to_bf16(float value)
{
	uint32_t x;

	memcpy(&x, &value, sizeof(x));
	if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet. */
		return (uint16_t)((x >> 16) | 0x40u);
	/* Adding 0x7fff (plus one when the kept part is odd) carries into bit 16 exactly when the dropped
	 * half-word is above the midpoint, or at it with an odd kept part: round to nearest even. */
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- safetensors ----------------------------------------------------------------------------- */

void zh_st_init(struct zh_st_writer *w, const char *tool)
{
	memset(w, 0, sizeof(*w));
	w->tool = tool;
	w->fd = -1;
}

void zh_st_free(struct zh_st_writer *w)
{
	uint32_t i;

	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp_path) {
		unlink(w->tmp_path);
		free(w->tmp_path);
	}
	for (i = 0; i < w->meta_count; i++) {
		free(w->meta_key[i]);
		free(w->meta_value[i]);
	}
	free(w->tensors);
	free(w->stage);
	zh_st_init(w, w->tool);
}

int zh_st_meta(struct zh_st_writer *w, const char *key, const char *value)
{
	uint32_t i = w->meta_count;

	if (i == ZH_ST_META_MAX) {
		fprintf(stderr, "%s: more than %u metadata entries\n", w->tool, ZH_ST_META_MAX);
		return -E2BIG;
	}
	w->meta_key[i] = strdup(key);
	w->meta_value[i] = strdup(value);
	w->meta_count++; /* Counted even when a copy failed, so that zh_st_free frees the other. */
	if (!w->meta_key[i] || !w->meta_value[i]) {
		fprintf(stderr, "%s: out of memory\n", w->tool);
		return -ENOMEM;
	}
	return 0;
}

static int tensor_grow(struct zh_st_writer *w)
{
	uint32_t cap;
	struct zh_st_tensor *t;

	if (w->tensor_count < w->tensor_cap)
		return 0;
	cap = w->tensor_cap ? w->tensor_cap * 2 : 64;
	t = realloc(w->tensors, (size_t)cap * sizeof(*t));
	if (!t) {
		fprintf(stderr, "%s: out of memory\n", w->tool);
		return -ENOMEM;
	}
	w->tensors = t;
	w->tensor_cap = cap;
	return 0;
}

int zh_st_add(struct zh_st_writer *w, enum zh_st_dtype dtype, uint32_t ndim, const uint64_t *shape,
	      const char *name_fmt, ...)
{
	struct zh_st_tensor *t;
	va_list ap;
	uint32_t i;
	int n, ret;

	ret = tensor_grow(w);
	if (ret)
		return ret;
	t = &w->tensors[w->tensor_count];
	memset(t, 0, sizeof(*t));
	va_start(ap, name_fmt);
	n = vsnprintf(t->name, sizeof(t->name), name_fmt, ap);
	va_end(ap);
	if (n <= 0 || (size_t)n >= sizeof(t->name) || strcmp(t->name, "__metadata__") == 0) {
		fprintf(stderr, "%s: bad tensor name \"%s\"\n", w->tool, t->name);
		return -EINVAL;
	}
	for (i = 0; i < w->tensor_count; i++) {
		if (strcmp(w->tensors[i].name, t->name) == 0) {
			fprintf(stderr, "%s: tensor %s declared twice\n", w->tool, t->name);
			return -EINVAL;
		}
	}
	if (ndim > ZH_ST_DIMS_MAX) {
		fprintf(stderr, "%s: tensor %s: %u dimensions, at most %u\n", w->tool, t->name, ndim, ZH_ST_DIMS_MAX);
		return -EINVAL;
	}
	t->dtype = dtype;
	t->ndim = ndim;
	t->count = 1;
	for (i = 0; i < ndim; i++) {
		t->shape[i] = shape[i];
		if (__builtin_mul_overflow(t->count, shape[i], &t->count)) {
			fprintf(stderr, "%s: tensor %s: element count overflows\n", w->tool, t->name);
			return -EOVERFLOW;
		}
	}
	w->tensor_count++;
	return 0;
}

/* Lay the tensors out back to back and build the JSON header, padded to a multiple of 8 bytes. */
static int st_header(struct zh_st_writer *w, struct zh_buf *h)
{
	uint64_t offset = 0, bytes;
	uint32_t i, d;

	buf_append(h, "{", 1);
	if (w->meta_count) {
		buf_append(h, "\"__metadata__\":{", 16);
		for (i = 0; i < w->meta_count; i++) {
			if (i)
				buf_append(h, ",", 1);
			zh_buf_json_str(h, w->meta_key[i]);
			buf_append(h, ":", 1);
			zh_buf_json_str(h, w->meta_value[i]);
		}
		buf_append(h, "}", 1);
	}
	for (i = 0; i < w->tensor_count; i++) {
		struct zh_st_tensor *t = &w->tensors[i];

		if (__builtin_mul_overflow(t->count, (uint64_t)zh_st_dtype_bytes(t->dtype), &bytes) ||
		    __builtin_add_overflow(offset, bytes, &offset)) {
			fprintf(stderr, "%s: tensor %s: data size overflows\n", w->tool, t->name);
			return -EOVERFLOW;
		}
		t->begin_bytes = offset - bytes;
		if (t->begin_bytes % zh_st_dtype_bytes(t->dtype) != 0) {
			fprintf(stderr, "%s: tensor %s would start at %" PRIu64 ", not a multiple of its element size\n",
				w->tool, t->name, t->begin_bytes);
			return -EINVAL;
		}
		if (i || w->meta_count)
			buf_append(h, ",", 1);
		zh_buf_json_str(h, t->name);
		zh_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", zh_st_dtype_name(t->dtype));
		for (d = 0; d < t->ndim; d++)
			zh_buf_printf(h, "%s%" PRIu64, d ? "," : "", t->shape[d]);
		zh_buf_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->begin_bytes, offset);
	}
	buf_append(h, "}", 1);
	while (!h->failed && h->len % 8 != 0)
		buf_append(h, " ", 1);
	if (h->failed) {
		fprintf(stderr, "%s: out of memory\n", w->tool);
		return -ENOMEM;
	}
	if (h->len > HEADER_BYTES_MAX) {
		fprintf(stderr, "%s: the header would be %zu bytes, more than readers accept\n", w->tool, h->len);
		return -E2BIG;
	}
	w->data_bytes = offset;
	return 0;
}

int zh_st_begin(struct zh_st_writer *w, const char *dir)
{
	struct zh_buf h = { 0 };
	uint64_t size;
	int ret;

	ret = st_header(w, &h);
	if (ret)
		goto out;
	w->stage = malloc(STAGE_VALUES * sizeof(uint16_t));
	if (!w->stage) {
		fprintf(stderr, "%s: out of memory\n", w->tool);
		ret = -ENOMEM;
		goto out;
	}
	ret = tmp_create(w->tool, dir, "model.safetensors", &w->tmp_path);
	if (ret < 0)
		goto out;
	w->fd = ret;
	size = h.len; /* Little-endian on a little-endian host. */
	ret = write_all(w->tool, w->tmp_path, w->fd, &size, sizeof(size));
	if (ret == 0)
		ret = write_all(w->tool, w->tmp_path, w->fd, h.data, h.len);
	w->put_tensor = 0;
	w->put_done = 0;
out:
	zh_buf_free(&h);
	return ret;
}

/* Move put_tensor past every tensor already complete, including empty ones. */
static void st_skip_full(struct zh_st_writer *w)
{
	while (w->put_tensor < w->tensor_count && w->put_done == w->tensors[w->put_tensor].count) {
		w->put_tensor++;
		w->put_done = 0;
	}
}

static int st_put_piece(struct zh_st_writer *w, enum zh_st_dtype dtype, const float *values, uint64_t count)
{
	uint16_t *stage = w->stage;
	uint64_t i;

	if (dtype == ZH_ST_F32)
		return write_all(w->tool, w->tmp_path, w->fd, values, (size_t)count * sizeof(float));
	for (i = 0; i < count; i++)
		stage[i] = dtype == ZH_ST_F16 ? zh_f32_to_f16(values[i]) : zh_f32_to_bf16(values[i]);
	return write_all(w->tool, w->tmp_path, w->fd, stage, (size_t)count * sizeof(uint16_t));
}

int zh_st_put(struct zh_st_writer *w, const float *values, uint64_t count)
{
	int ret;

	while (count > 0) {
		struct zh_st_tensor *t;
		uint64_t n;

		st_skip_full(w);
		if (w->put_tensor == w->tensor_count) {
			fprintf(stderr, "%s: %" PRIu64 " values more than the tensors hold\n", w->tool, count);
			return -EINVAL;
		}
		t = &w->tensors[w->put_tensor];
		n = t->count - w->put_done;
		if (n > count)
			n = count;
		if (n > STAGE_VALUES)
			n = STAGE_VALUES;
		ret = st_put_piece(w, t->dtype, values, n);
		if (ret)
			return ret;
		values += n;
		count -= n;
		w->put_done += n;
	}
	return 0;
}

int zh_st_commit(struct zh_st_writer *w, const char *dir, const char *name)
{
	int ret;

	st_skip_full(w);
	if (w->fd < 0 || w->put_tensor != w->tensor_count) {
		fprintf(stderr, "%s: tensor %s is incomplete\n", w->tool,
			w->put_tensor < w->tensor_count ? w->tensors[w->put_tensor].name : "?");
		return -EINVAL;
	}
	ret = tmp_finish(w->tool, w->fd, w->tmp_path, dir, name);
	w->fd = -1; /* Closed by tmp_finish whatever happened. */
	if (ret)
		return ret;
	free(w->tmp_path);
	w->tmp_path = NULL;
	return 0;
}

/* ---- config.json ----------------------------------------------------------------------------- */

/* The object is built as "{\n  \"k\": v,\n  \"k2\": v2" and closed by zh_cfg_write. */
static void cfg_key(struct zh_buf *cfg, const char *key)
{
	buf_append(cfg, cfg->len > 1 ? ",\n  " : "\n  ", cfg->len > 1 ? 4 : 3);
	zh_buf_json_str(cfg, key);
	buf_append(cfg, ": ", 2);
}

void zh_cfg_init(struct zh_buf *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	buf_append(cfg, "{", 1);
}

void zh_cfg_str(struct zh_buf *cfg, const char *key, const char *value)
{
	cfg_key(cfg, key);
	zh_buf_json_str(cfg, value);
}

void zh_cfg_u64(struct zh_buf *cfg, const char *key, uint64_t value)
{
	cfg_key(cfg, key);
	zh_buf_printf(cfg, "%" PRIu64, value);
}

void zh_cfg_raw(struct zh_buf *cfg, const char *key, const char *json)
{
	cfg_key(cfg, key);
	buf_append(cfg, json, strlen(json));
}

int zh_cfg_write(struct zh_buf *cfg, const char *tool, const char *dir, const char *name)
{
	int ret;

	buf_append(cfg, "\n}\n", 3);
	if (cfg->failed) {
		fprintf(stderr, "%s: out of memory\n", tool);
		ret = -ENOMEM;
	} else {
		ret = zh_write_atomic(tool, dir, name, cfg->data, cfg->len);
	}
	zh_buf_free(cfg);
	return ret;
}

/* ---- llama ----------------------------------------------------------------------------------- */

int zh_llama_declare(struct zh_st_writer *w, const struct zh_llama_shape *s, enum zh_st_dtype dt)
{
	const uint64_t kv_dim = s->dim / s->heads * s->kv_heads;
	const uint64_t emb[2] = { s->vocab, s->dim }, vec[1] = { s->dim }, dd[2] = { s->dim, s->dim };
	const uint64_t kd[2] = { kv_dim, s->dim }, hd[2] = { s->hidden, s->dim }, dh[2] = { s->dim, s->hidden };
	const char *pre = "model.layers.";
	uint64_t l;
	int ret;

	ret = zh_st_add(w, dt, 2, emb, "model.embed_tokens.weight");
	for (l = 0; l < s->layers && ret == 0; l++) {
		if ((ret = zh_st_add(w, dt, 1, vec, "%s%" PRIu64 ".input_layernorm.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, dd, "%s%" PRIu64 ".self_attn.q_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, kd, "%s%" PRIu64 ".self_attn.k_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, kd, "%s%" PRIu64 ".self_attn.v_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, dd, "%s%" PRIu64 ".self_attn.o_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 1, vec, "%s%" PRIu64 ".post_attention_layernorm.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, hd, "%s%" PRIu64 ".mlp.gate_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, hd, "%s%" PRIu64 ".mlp.up_proj.weight", pre, l)) ||
		    (ret = zh_st_add(w, dt, 2, dh, "%s%" PRIu64 ".mlp.down_proj.weight", pre, l)))
			break;
	}
	if (ret == 0)
		ret = zh_st_add(w, dt, 1, vec, "model.norm.weight");
	if (ret == 0 && !s->tied)
		ret = zh_st_add(w, dt, 2, emb, "lm_head.weight");
	return ret;
}

int zh_llama_config(const char *tool, const char *dir, const struct zh_llama_shape *s)
{
	struct zh_buf cfg;

	zh_cfg_init(&cfg);
	zh_cfg_raw(&cfg, "architectures", "[\"LlamaForCausalLM\"]");
	zh_cfg_str(&cfg, "model_type", "llama");
	zh_cfg_u64(&cfg, "hidden_size", s->dim);
	zh_cfg_u64(&cfg, "intermediate_size", s->hidden);
	zh_cfg_u64(&cfg, "num_hidden_layers", s->layers);
	zh_cfg_u64(&cfg, "num_attention_heads", s->heads);
	zh_cfg_u64(&cfg, "num_key_value_heads", s->kv_heads);
	zh_cfg_u64(&cfg, "vocab_size", s->vocab);
	zh_cfg_u64(&cfg, "max_position_embeddings", s->seq_len);
	zh_cfg_raw(&cfg, "rms_norm_eps", "1e-05");
	zh_cfg_raw(&cfg, "rope_theta", "10000.0");
	zh_cfg_raw(&cfg, "tie_word_embeddings", s->tied ? "true" : "false");
	zh_cfg_u64(&cfg, "bos_token_id", 1);
	zh_cfg_u64(&cfg, "eos_token_id", 2);
	return zh_cfg_write(&cfg, tool, dir, "config.json");
}
