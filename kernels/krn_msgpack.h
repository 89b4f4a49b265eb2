/* SPDX-License-Identifier: MIT */
/*
 * krn_msgpack.h: a bounded msgpack pull reader and writer that run on the host and inside CUDA
 * kernels. The request payload may sit in GPU memory where msgpack-c cannot run, so the device loop
 * decodes it with this; msgpack-c stays the reference it is tested against (tests/unit/test_msgpack.c)
 * and what the host-side tools use.
 *
 * Nothing here allocates. Every read checks the bytes left before touching them, and every container
 * header is checked against the bytes left (each element needs at least one byte) before its count is
 * believed, so a header that claims 2^32-1 entries fails at once instead of driving any allocation.
 */
#ifndef KRN_MSGPACK_H
#define KRN_MSGPACK_H

#include "zh_defs.h"

enum krn_mp_type {
	KRN_MP_NIL = 0,
	KRN_MP_BOOL,
	KRN_MP_UINT,    /* non-negative integer of any encoding */
	KRN_MP_INT,     /* negative integer */
	KRN_MP_FLOAT32,
	KRN_MP_FLOAT64,
	KRN_MP_STR,
	KRN_MP_BIN,
	KRN_MP_ARRAY,
	KRN_MP_MAP,
	KRN_MP_EXT,
};

/* Reader errors (negative, so that 0 means a value was read). */
enum krn_mp_error {
	KRN_MP_OK = 0,
	KRN_MP_E_TRUNCATED = -1, /* the value runs past the end of the buffer */
	KRN_MP_E_INVALID = -2,   /* 0xc1, the one byte msgpack never uses */
	KRN_MP_E_TOO_LARGE = -3, /* a container claims more elements than bytes remain */
};

struct krn_mp_value {
	enum krn_mp_type type;
	union {
		int boolean;
		uint64_t u;  /* KRN_MP_UINT */
		int64_t i;   /* KRN_MP_INT (always < 0) */
		float f32;   /* KRN_MP_FLOAT32 */
		double f64;  /* KRN_MP_FLOAT64 */
	} v;
	const uint8_t *data; /* STR/BIN/EXT payload, inside the reader's buffer */
	uint32_t size;       /* STR/BIN/EXT payload bytes; ARRAY elements; MAP key/value pairs */
	int8_t ext_type;     /* KRN_MP_EXT only */
};

struct krn_mp_reader {
	const uint8_t *pos;
	const uint8_t *end;
};

struct krn_mp_writer {
	uint8_t *pos;
	uint8_t *end;
	int overflow; /* set once any write did not fit; the buffer content is then unusable */
};

ZH_HD void krn_mp_reader_init(struct krn_mp_reader *r, const uint8_t *buf, uint32_t size_bytes);
ZH_HD uint32_t krn_mp_reader_left(const struct krn_mp_reader *r);

/* Read one value header (for containers, only the header: the elements follow). Returns 0 or a
 * negative enum krn_mp_error; on error the reader position is unspecified. On KRN_MP_E_TOO_LARGE
 * `out` still holds the container's type and claimed count. */
ZH_HD int krn_mp_read(struct krn_mp_reader *r, struct krn_mp_value *out);

/* Skip one complete value including nested elements, iteratively (no recursion on the device). */
ZH_HD int krn_mp_skip(struct krn_mp_reader *r);

/* Widen any numeric value to double; returns 0, or -1 if the value is not a number. */
ZH_HD int krn_mp_as_double(const struct krn_mp_value *v, double *out);

ZH_HD int krn_mp_str_eq(const struct krn_mp_value *v, const char *s);

ZH_HD void krn_mp_writer_init(struct krn_mp_writer *w, uint8_t *buf, uint32_t size_bytes);
ZH_HD uint32_t krn_mp_writer_size(const struct krn_mp_writer *w, const uint8_t *buf);
ZH_HD void krn_mp_put_nil(struct krn_mp_writer *w);
ZH_HD void krn_mp_put_bool(struct krn_mp_writer *w, int value);
ZH_HD void krn_mp_put_uint(struct krn_mp_writer *w, uint64_t value);
/* Always the 9-byte form (0xcf and 8 bytes), for a value someone fills in later in place. */
ZH_HD void krn_mp_put_uint64_wide(struct krn_mp_writer *w, uint64_t value);
ZH_HD void krn_mp_put_int(struct krn_mp_writer *w, int64_t value);
ZH_HD void krn_mp_put_float32(struct krn_mp_writer *w, float value);
ZH_HD void krn_mp_put_float64(struct krn_mp_writer *w, double value);
ZH_HD void krn_mp_put_str(struct krn_mp_writer *w, const char *s, uint32_t len);
ZH_HD void krn_mp_put_cstr(struct krn_mp_writer *w, const char *s);
ZH_HD void krn_mp_put_array(struct krn_mp_writer *w, uint32_t count);
ZH_HD void krn_mp_put_map(struct krn_mp_writer *w, uint32_t count);

#endif /* KRN_MSGPACK_H */
