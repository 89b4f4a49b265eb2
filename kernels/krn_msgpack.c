/* SPDX-License-Identifier: MIT */
/*
 * krn_msgpack.c: see krn_msgpack.h. Host/device-neutral: compiled by gcc for the cpu device and
 * included by kernels/krn_cuda.cu for CUDA. No libc calls, no recursion, no allocation.
 */
#include "krn_msgpack.h"

ZH_HD void krn_mp_reader_init(struct krn_mp_reader *r, const uint8_t *buf, uint32_t size_bytes)
{
	r->pos = buf;
	r->end = buf + size_bytes;
}

ZH_HD uint32_t krn_mp_reader_left(const struct krn_mp_reader *r)
{
	return (uint32_t)(r->end - r->pos);
}

/* Big-endian loads of n bytes; the caller has checked that n bytes remain. */
static ZH_HD uint64_t load_be(const uint8_t *p, uint32_t n)
{
	uint64_t v = 0;

	for (uint32_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static ZH_HD float bits_to_f32(uint32_t bits)
{
	union {
		uint32_t u;
		float f;
	} c;
	c.u = bits;
	return c.f;
}

static ZH_HD double bits_to_f64(uint64_t bits)
{
	union {
		uint64_t u;
		double f;
	} c;
	c.u = bits;
	return c.f;
}

/* Consume an n-byte big-endian length or value field. */
static ZH_HD int take_be(struct krn_mp_reader *r, uint32_t n, uint64_t *out)
{
	if (krn_mp_reader_left(r) < n)
		return KRN_MP_E_TRUNCATED;
	*out = load_be(r->pos, n);
	r->pos += n;
	return KRN_MP_OK;
}

/* Consume a payload of `size` bytes (str, bin, ext) and point the value at it. */
static ZH_HD int take_payload(struct krn_mp_reader *r, struct krn_mp_value *out, uint64_t size)
{
	if (krn_mp_reader_left(r) < size)
		return KRN_MP_E_TRUNCATED;
	out->data = r->pos;
	out->size = (uint32_t)size;
	r->pos += size;
	return KRN_MP_OK;
}

/* Believe a container count only if the bytes left could hold that many elements. */
static ZH_HD int take_container(struct krn_mp_reader *r, struct krn_mp_value *out,
				enum krn_mp_type type, uint64_t count)
{
	uint64_t min_bytes = type == KRN_MP_MAP ? count * 2 : count;

	/* The header is reported even when refused, so a caller can tell a count beyond its own
	 * bound (too large) from a plausible one whose elements are missing (truncated). */
	out->type = type;
	out->size = (uint32_t)count;
	if (min_bytes > krn_mp_reader_left(r))
		return KRN_MP_E_TOO_LARGE;
	return KRN_MP_OK;
}

static ZH_HD int take_ext(struct krn_mp_reader *r, struct krn_mp_value *out, uint64_t size)
{
	if (krn_mp_reader_left(r) < 1)
		return KRN_MP_E_TRUNCATED;
	out->type = KRN_MP_EXT;
	out->ext_type = (int8_t)*r->pos++;
	return take_payload(r, out, size);
}

/* Sign-extend an n-byte two's complement value. */
static ZH_HD int64_t sign_extend(uint64_t v, uint32_t n)
{
	uint32_t shift = 64 - 8 * n;

	return (int64_t)(v << shift) >> shift;
}

static ZH_HD int read_int(struct krn_mp_reader *r, struct krn_mp_value *out, uint32_t n)
{
	uint64_t raw;
	int rc = take_be(r, n, &raw);

	if (rc)
		return rc;
	int64_t v = sign_extend(raw, n);
	/* msgpack allows a non-negative value in a signed encoding; report it as what it is. */
	if (v >= 0) {
		out->type = KRN_MP_UINT;
		out->v.u = (uint64_t)v;
	} else {
		out->type = KRN_MP_INT;
		out->v.i = v;
	}
	return KRN_MP_OK;
}

ZH_HD int krn_mp_read(struct krn_mp_reader *r, struct krn_mp_value *out)
{
	uint64_t n;
	int rc;

	out->data = 0;
	out->size = 0;
	out->ext_type = 0;
	if (r->pos >= r->end)
		return KRN_MP_E_TRUNCATED;
	uint8_t b = *r->pos++;

	if (b <= 0x7f) {
		out->type = KRN_MP_UINT;
		out->v.u = b;
		return KRN_MP_OK;
	}
	if (b >= 0xe0) {
		out->type = KRN_MP_INT;
		out->v.i = (int8_t)b;
		return KRN_MP_OK;
	}
	if ((b & 0xf0) == 0x80)
		return take_container(r, out, KRN_MP_MAP, b & 0x0f);
	if ((b & 0xf0) == 0x90)
		return take_container(r, out, KRN_MP_ARRAY, b & 0x0f);
	if ((b & 0xe0) == 0xa0) {
		out->type = KRN_MP_STR;
		return take_payload(r, out, b & 0x1f);
	}

	switch (b) {
	case 0xc0:
		out->type = KRN_MP_NIL;
		return KRN_MP_OK;
	case 0xc2:
	case 0xc3:
		out->type = KRN_MP_BOOL;
		out->v.boolean = b == 0xc3;
		return KRN_MP_OK;
	case 0xc4:
	case 0xc5:
	case 0xc6:
		rc = take_be(r, 1u << (b - 0xc4), &n);
		if (rc)
			return rc;
		out->type = KRN_MP_BIN;
		return take_payload(r, out, n);
	case 0xc7:
	case 0xc8:
	case 0xc9:
		rc = take_be(r, 1u << (b - 0xc7), &n);
		if (rc)
			return rc;
		return take_ext(r, out, n);
	case 0xca:
		rc = take_be(r, 4, &n);
		if (rc)
			return rc;
		out->type = KRN_MP_FLOAT32;
		out->v.f32 = bits_to_f32((uint32_t)n);
		return KRN_MP_OK;
	case 0xcb:
		rc = take_be(r, 8, &n);
		if (rc)
			return rc;
		out->type = KRN_MP_FLOAT64;
		out->v.f64 = bits_to_f64(n);
		return KRN_MP_OK;
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf:
		rc = take_be(r, 1u << (b - 0xcc), &n);
		if (rc)
			return rc;
		out->type = KRN_MP_UINT;
		out->v.u = n;
		return KRN_MP_OK;
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3:
		return read_int(r, out, 1u << (b - 0xd0));
	case 0xd4:
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8:
		return take_ext(r, out, 1u << (b - 0xd4));
	case 0xd9:
	case 0xda:
	case 0xdb:
		rc = take_be(r, 1u << (b - 0xd9), &n);
		if (rc)
			return rc;
		out->type = KRN_MP_STR;
		return take_payload(r, out, n);
	case 0xdc:
	case 0xdd:
		rc = take_be(r, b == 0xdc ? 2 : 4, &n);
		if (rc)
			return rc;
		return take_container(r, out, KRN_MP_ARRAY, n);
	case 0xde:
	case 0xdf:
		rc = take_be(r, b == 0xde ? 2 : 4, &n);
		if (rc)
			return rc;
		return take_container(r, out, KRN_MP_MAP, n);
	default: /* 0xc1 */
		return KRN_MP_E_INVALID;
	}
}

ZH_HD int krn_mp_skip(struct krn_mp_reader *r)
{
	/* Values still to consume. Every pending value needs at least one byte and container counts
	 * were checked against the bytes left, so this never exceeds the buffer size. */
	uint64_t pending = 1;
	struct krn_mp_value v;

	while (pending > 0) {
		int rc = krn_mp_read(r, &v);

		if (rc)
			return rc;
		pending--;
		if (v.type == KRN_MP_ARRAY)
			pending += v.size;
		else if (v.type == KRN_MP_MAP)
			pending += 2ull * v.size;
		if (pending > krn_mp_reader_left(r))
			return KRN_MP_E_TRUNCATED;
	}
	return KRN_MP_OK;
}

ZH_HD int krn_mp_as_double(const struct krn_mp_value *v, double *out)
{
	switch (v->type) {
	case KRN_MP_UINT:
		*out = (double)v->v.u;
		return 0;
	case KRN_MP_INT:
		*out = (double)v->v.i;
		return 0;
	case KRN_MP_FLOAT32:
		*out = v->v.f32;
		return 0;
	case KRN_MP_FLOAT64:
		*out = v->v.f64;
		return 0;
	default:
		return -1;
	}
}

ZH_HD int krn_mp_str_eq(const struct krn_mp_value *v, const char *s)
{
	uint32_t i = 0;

	if (v->type != KRN_MP_STR)
		return 0;
	for (; i < v->size; i++)
		if (s[i] == '\0' || (uint8_t)s[i] != v->data[i])
			return 0;
	return s[i] == '\0';
}

ZH_HD void krn_mp_writer_init(struct krn_mp_writer *w, uint8_t *buf, uint32_t size_bytes)
{
	w->pos = buf;
	w->end = buf + size_bytes;
	w->overflow = 0;
}

ZH_HD uint32_t krn_mp_writer_size(const struct krn_mp_writer *w, const uint8_t *buf)
{
	return (uint32_t)(w->pos - buf);
}

/* Reserve n bytes or mark the writer overflowed; returns where to write, or 0. */
static ZH_HD uint8_t *reserve(struct krn_mp_writer *w, uint32_t n)
{
	if (w->overflow || (uint32_t)(w->end - w->pos) < n) {
		w->overflow = 1;
		return 0;
	}
	uint8_t *p = w->pos;
	w->pos += n;
	return p;
}

/* A marker byte followed by an n-byte big-endian field. */
static ZH_HD void put_be(struct krn_mp_writer *w, uint8_t marker, uint64_t v, uint32_t n)
{
	uint8_t *p = reserve(w, 1 + n);

	if (!p)
		return;
	p[0] = marker;
	for (uint32_t i = 0; i < n; i++)
		p[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

ZH_HD void krn_mp_put_nil(struct krn_mp_writer *w)
{
	uint8_t *p = reserve(w, 1);

	if (p)
		*p = 0xc0;
}

ZH_HD void krn_mp_put_bool(struct krn_mp_writer *w, int value)
{
	uint8_t *p = reserve(w, 1);

	if (p)
		*p = value ? 0xc3 : 0xc2;
}

ZH_HD void krn_mp_put_uint(struct krn_mp_writer *w, uint64_t value)
{
	if (value <= 0x7f) {
		uint8_t *p = reserve(w, 1);
		if (p)
			*p = (uint8_t)value;
	} else if (value <= 0xff) {
		put_be(w, 0xcc, value, 1);
	} else if (value <= 0xffff) {
		put_be(w, 0xcd, value, 2);
	} else if (value <= 0xffffffffull) {
		put_be(w, 0xce, value, 4);
	} else {
		put_be(w, 0xcf, value, 8);
	}
}

ZH_HD void krn_mp_put_uint64_wide(struct krn_mp_writer *w, uint64_t value)
{
	put_be(w, 0xcf, value, 8);
}

ZH_HD void krn_mp_put_int(struct krn_mp_writer *w, int64_t value)
{
	if (value >= 0) {
		krn_mp_put_uint(w, (uint64_t)value);
	} else if (value >= -32) {
		uint8_t *p = reserve(w, 1);
		if (p)
			*p = (uint8_t)(int8_t)value;
	} else if (value >= -128) {
		put_be(w, 0xd0, (uint64_t)value & 0xff, 1);
	} else if (value >= -32768) {
		put_be(w, 0xd1, (uint64_t)value & 0xffff, 2);
	} else if (value >= -2147483647ll - 1) {
		put_be(w, 0xd2, (uint64_t)value & 0xffffffffull, 4);
	} else {
		put_be(w, 0xd3, (uint64_t)value, 8);
	}
}

ZH_HD void krn_mp_put_float32(struct krn_mp_writer *w, float value)
{
	union {
		float f;
		uint32_t u;
	} c;
	c.f = value;
	put_be(w, 0xca, c.u, 4);
}

ZH_HD void krn_mp_put_float64(struct krn_mp_writer *w, double value)
{
	union {
		double f;
		uint64_t u;
	} c;
	c.f = value;
	put_be(w, 0xcb, c.u, 8);
}

ZH_HD void krn_mp_put_str(struct krn_mp_writer *w, const char *s, uint32_t len)
{
	if (len <= 31) {
		uint8_t *p = reserve(w, 1);
		if (p)
			*p = (uint8_t)(0xa0 | len);
	} else if (len <= 0xff) {
		put_be(w, 0xd9, len, 1);
	} else if (len <= 0xffff) {
		put_be(w, 0xda, len, 2);
	} else {
		put_be(w, 0xdb, len, 4);
	}
	uint8_t *p = reserve(w, len);
	if (!p)
		return;
	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)s[i];
}

ZH_HD void krn_mp_put_cstr(struct krn_mp_writer *w, const char *s)
{
	uint32_t len = 0;

	while (s[len] != '\0')
		len++;
	krn_mp_put_str(w, s, len);
}

ZH_HD void krn_mp_put_array(struct krn_mp_writer *w, uint32_t count)
{
	if (count <= 15) {
		uint8_t *p = reserve(w, 1);
		if (p)
			*p = (uint8_t)(0x90 | count);
	} else if (count <= 0xffff) {
		put_be(w, 0xdc, count, 2);
	} else {
		put_be(w, 0xdd, count, 4);
	}
}

ZH_HD void krn_mp_put_map(struct krn_mp_writer *w, uint32_t count)
{
	if (count <= 15) {
		uint8_t *p = reserve(w, 1);
		if (p)
			*p = (uint8_t)(0x80 | count);
	} else if (count <= 0xffff) {
		put_be(w, 0xde, count, 2);
	} else {
		put_be(w, 0xdf, count, 4);
	}
}
