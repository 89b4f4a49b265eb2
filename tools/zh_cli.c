/* SPDX-License-Identifier: MIT */
/*
 * zh_cli.c: see zh_cli.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <msgpack.h>

#include "zh_cli.h"

/* msgpack-c stops unpacking deeper than 32 levels; this is a second bound for the printer. */
#define JSON_DEPTH_MAX 64
/* The status zerohop-client and zerohopctl exit with for an I/O error. */
#define EXIT_ERROR 3

int zh_cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end != '\0' || text[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int zh_cli_parse_u32(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	int rc = zh_cli_parse_u64(text, min, max, &v);

	if (!rc)
		*out = (uint32_t)v;
	return rc;
}

int zh_cli_parse_double(const char *text, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || *end != '\0' || !isfinite(v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int zh_cli_dest_allowed(struct in_addr a)
{
	uint32_t h = ntohl(a.s_addr);

	return (h & 0xfffe0000u) == 0xc6120000u || (h & 0xff000000u) == 0x7f000000u;
}

/*
 * The length of the well-formed UTF-8 sequence at `s` (Unicode table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
 */
static uint32_t utf8_seq_len(const unsigned char *s, uint32_t left)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	uint32_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	/* Only the second byte's range depends on the first. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (uint32_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/*
 * Print bytes as a JSON string: the quote, the backslash and every control character escaped, and
 * U+FFFD in place of each byte that does not begin well-formed UTF-8, so that the output is valid
 * JSON whatever bytes the appliance sent.
 */
static void json_string(FILE *out, const char *s, uint32_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	fputc('"', out);
	for (uint32_t i = 0; i < len;) {
		uint32_t n = utf8_seq_len(u + i, len - i);

		if (n == 0) {
			fputs("\\ufffd", out);
			i++;
			continue;
		}
		if (n > 1) {
			fwrite(u + i, 1, n, out);
			i += n;
			continue;
		}
		switch (u[i]) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\b': fputs("\\b", out); break;
		case '\f': fputs("\\f", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (u[i] < 0x20)
				fprintf(out, "\\u%04x", u[i]);
			else
				fputc(u[i], out);
		}
		i++;
	}
	fputc('"', out);
}

static void json_hex(FILE *out, const char *s, uint32_t len)
{
	fputc('"', out);
	for (uint32_t i = 0; i < len; i++)
		fprintf(out, "%02x", (unsigned char)s[i]);
	fputc('"', out);
}

/*
 * A finite float with the digits that bring it back exactly (9 for float32, 17 for float64), and a
 * ".0" when it would otherwise read as an integer, so that JSON readers keep it a float.
 */
static void json_float(FILE *out, double v, int digits)
{
	char text[40];

	snprintf(text, sizeof(text), "%.*g", digits, v);
	fputs(text, out);
	if (!strpbrk(text, ".eE"))
		fputs(".0", out);
}

static void json_value(FILE *out, const msgpack_object *o, int depth);

/* JSON keys are strings: another key type is printed as JSON and that text becomes the key. */
static void json_key(FILE *out, const msgpack_object *key, int depth)
{
	char *text = NULL;
	size_t size = 0;
	FILE *mem;

	if (key->type == MSGPACK_OBJECT_STR) {
		json_string(out, key->via.str.ptr, key->via.str.size);
		return;
	}
	mem = open_memstream(&text, &size);
	if (!mem) {
		fprintf(stderr, "%s: out of memory\n", program_invocation_short_name);
		exit(EXIT_ERROR);
	}
	json_value(mem, key, depth);
	fclose(mem);
	json_string(out, text, (uint32_t)size);
	free(text);
}

static void json_value(FILE *out, const msgpack_object *o, int depth)
{
	if (depth > JSON_DEPTH_MAX) {
		fputs("null", out);
		return;
	}
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: fputs("null", out); break;
	case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", out); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(out, "%" PRIu64, o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(out, "%" PRId64, o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			fputs("null", out);
		else
			json_float(out, o->via.f64, o->type == MSGPACK_OBJECT_FLOAT32 ? 9 : 17);
		break;
	case MSGPACK_OBJECT_STR: json_string(out, o->via.str.ptr, o->via.str.size); break;
	case MSGPACK_OBJECT_BIN: json_hex(out, o->via.bin.ptr, o->via.bin.size); break;
	case MSGPACK_OBJECT_EXT:
		fprintf(out, "{\"ext_type\": %d, \"data\": ", o->via.ext.type);
		json_hex(out, o->via.ext.ptr, o->via.ext.size);
		fputc('}', out);
		break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', out);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputs(", ", out);
			json_value(out, &o->via.array.ptr[i], depth + 1);
		}
		fputc(']', out);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', out);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				fputs(", ", out);
			json_key(out, &o->via.map.ptr[i].key, depth + 1);
			fputs(": ", out);
			json_value(out, &o->via.map.ptr[i].val, depth + 1);
		}
		fputc('}', out);
		break;
	default: fputs("null", out); break;
	}
}

void zh_cli_print_json(FILE *out, const msgpack_object *o)
{
	json_value(out, o, 0);
}
