/* SPDX-License-Identifier: MIT */
/*
 * zh_tokenizer.c: the llama2.c tokenizer (see zh_tokenizer.h for the file format and the contract).
 *
 * Lookups go through one index of the pieces sorted by their bytes, built once at load; encoding
 * keeps the merge candidate of every adjacent pair, so a merge looks up only the two pairs it changes
 * instead of all of them, and picks the same merge llama2.c's full rescan picks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "zh_tokenizer.h"

/* The file header is one int32; a record header is a float32 and an int32. */
#define FILE_HEADER_BYTES 4u
#define RECORD_HEADER_BYTES 8u

static int refuse(char *why, size_t why_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(char *why, size_t why_size, const char *fmt, ...)
{
	va_list ap;

	if (why && why_size) {
		va_start(ap, fmt);
		vsnprintf(why, why_size, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The file is little-endian whatever the host is, so fields are assembled byte by byte. */
static uint32_t load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * The byte a "<0xHH>" piece stands for, or -1. llama2.c tests every piece with sscanf at each decode;
 * the exact six-byte form is decided once here, which is the same answer for real tokenizers (their
 * only pieces starting "<0x" are the 256 byte pieces).
 */
static int16_t byte_piece_value(const char *p, uint32_t len)
{
	int hi, lo;

	if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
		return -1;
	hi = hex_digit(p[3]);
	lo = hex_digit(p[4]);
	if (hi < 0 || lo < 0)
		return -1;
	return (int16_t)(hi << 4 | lo);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct zh_tok_entry *x = a, *y = b;
	uint32_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->piece, y->piece, n);

	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Compares by bytes only, so that bsearch finds a piece whatever its id. */
static int entry_key_cmp(const void *key, const void *elem)
{
	const struct zh_tok_entry *k = key, *e = elem;
	uint32_t n = k->len < e->len ? k->len : e->len;
	int c = memcmp(k->piece, e->piece, n);

	if (c)
		return c;
	return (k->len > e->len) - (k->len < e->len);
}

/* The id of the piece with exactly these bytes, or -1. Should a file repeat a piece, the lowest id
 * answers (the index is ordered by id among equal pieces), so encoding never depends on bsearch's
 * choice among equals. */
static int32_t lookup(const struct zh_tokenizer *t, const char *bytes, uint32_t len)
{
	struct zh_tok_entry key = { .piece = bytes, .len = len };
	const struct zh_tok_entry *e = bsearch(&key, t->index, t->vocab_size, sizeof(*e), entry_key_cmp);

	if (!e)
		return -1;
	while (e > t->index && entry_key_cmp(&key, e - 1) == 0)
		e--;
	return (int32_t)e->id;
}

/* Read the whole file into t->file; returns its size or a negative errno. */
static int64_t read_file(struct zh_tokenizer *t, const char *path, char *why, size_t why_size)
{
	struct stat st;
	size_t got = 0;
	int64_t ret;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)ZH_TOK_FILE_MAX) {
		ret = refuse(why, why_size, "not a regular file of at most %u bytes", ZH_TOK_FILE_MAX);
		goto out;
	}
	t->file = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!t->file) {
		ret = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, t->file + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0) {
			ret = refuse(why, why_size, "the file shrank while it was read");
			goto out;
		}
		got += (size_t)n;
	}
	ret = (int64_t)got;
out:
	close(fd);
	return ret;
}

/* Walk the records, checking each against the bytes left and max_token_length. */
static int parse_records(struct zh_tokenizer *t, size_t size, char *why, size_t why_size)
{
	size_t off = FILE_HEADER_BYTES;

	for (uint32_t id = 0; id < t->vocab_size; id++) {
		uint32_t bits, len;
		int32_t slen;
		float score;

		if (size - off < RECORD_HEADER_BYTES)
			return refuse(why, why_size, "record %u: the file ends inside its header at offset %zu", id,
				      off);
		bits = load_le32(t->file + off);
		memcpy(&score, &bits, sizeof(score));
		len = load_le32(t->file + off + 4);
		memcpy(&slen, &len, sizeof(slen));
		off += RECORD_HEADER_BYTES;
		/* A NaN score would make the merge order depend on where comparisons happen to fall. */
		if (!isfinite(score))
			return refuse(why, why_size, "record %u: the score is not a finite number", id);
		if (slen < 0)
			return refuse(why, why_size, "record %u: negative length %d", id, slen);
		/* An empty piece would "merge" with any neighbour into that neighbour. */
		if (slen == 0)
			return refuse(why, why_size, "record %u: empty piece", id);
		if (len > t->piece_len_max)
			return refuse(why, why_size, "record %u: length %u exceeds max_token_length %u", id, len,
				      t->piece_len_max);
		if (size - off < len)
			return refuse(why, why_size, "record %u: %u bytes at offset %zu run past the end (%zu bytes)",
				      id, len, off, size);
		t->piece[id] = (const char *)t->file + off;
		t->piece_len[id] = len;
		t->score[id] = score;
		t->byte_of[id] = byte_piece_value(t->piece[id], len);
		off += len;
	}
	/* More records than the model's vocabulary means the tokenizer belongs to another model. */
	if (off != size)
		return refuse(why, why_size, "%zu bytes left after %u records: not this model's tokenizer",
			      size - off, t->vocab_size);
	/* Byte fallback encodes byte b as id b + 3, so those ids must be exactly the byte pieces. */
	for (uint32_t b = 0; b < 256; b++)
		if (t->byte_of[ZH_TOK_BYTE0 + b] != (int16_t)b)
			return refuse(why, why_size, "id %u is not the byte piece <0x%02X>", ZH_TOK_BYTE0 + b, b);
	return 0;
}

static int alloc_tables(struct zh_tokenizer *t)
{
	size_t n = t->vocab_size;

	t->piece = calloc(n, sizeof(*t->piece));
	t->piece_len = calloc(n, sizeof(*t->piece_len));
	t->score = calloc(n, sizeof(*t->score));
	t->byte_of = calloc(n, sizeof(*t->byte_of));
	t->index = calloc(n, sizeof(*t->index));
	t->work_ids = calloc(ZH_TOK_TEXT_MAX + 2, sizeof(*t->work_ids));
	t->pair_id = calloc(ZH_TOK_TEXT_MAX + 2, sizeof(*t->pair_id));
	t->concat = calloc(2 * (size_t)t->piece_len_max, 1);
	if (!t->piece || !t->piece_len || !t->score || !t->byte_of || !t->index || !t->work_ids ||
	    !t->pair_id || !t->concat)
		return -ENOMEM;
	return 0;
}

int zh_tok_load(struct zh_tokenizer *t, const char *path, uint32_t vocab_size, char *why, size_t why_size)
{
	uint32_t max_len;
	int32_t smax_len;
	int64_t size;
	int ret;

	memset(t, 0, sizeof(*t));
	if (vocab_size < ZH_TOK_VOCAB_MIN)
		return refuse(why, why_size, "vocab_size %u is below %u: ids 3..258 must be the byte pieces",
			      vocab_size, ZH_TOK_VOCAB_MIN);
	t->vocab_size = vocab_size;
	size = read_file(t, path, why, why_size);
	if (size < 0) {
		ret = (int)size;
		goto fail;
	}
	if (size < (int64_t)FILE_HEADER_BYTES) {
		ret = refuse(why, why_size, "%" PRId64 " bytes: too short for the max_token_length header", size);
		goto fail;
	}
	max_len = load_le32(t->file);
	memcpy(&smax_len, &max_len, sizeof(smax_len));
	if (smax_len < 1 || max_len > ZH_TOK_PIECE_MAX) {
		ret = refuse(why, why_size, "max_token_length %d is not in 1..%u", smax_len, ZH_TOK_PIECE_MAX);
		goto fail;
	}
	t->piece_len_max = max_len;
	/* Checked before anything is sized by vocab_size, so a huge vocab_size allocates nothing. */
	if ((uint64_t)vocab_size * (RECORD_HEADER_BYTES + 1) > (uint64_t)size - FILE_HEADER_BYTES) {
		ret = refuse(why, why_size, "%" PRId64 " bytes cannot hold %u records of at least %u bytes", size,
			     vocab_size, RECORD_HEADER_BYTES + 1);
		goto fail;
	}
	ret = alloc_tables(t);
	if (ret)
		goto fail;
	ret = parse_records(t, (size_t)size, why, why_size);
	if (ret)
		goto fail;
	for (uint32_t id = 0; id < vocab_size; id++)
		t->index[id] = (struct zh_tok_entry){ .piece = t->piece[id], .len = t->piece_len[id], .id = id };
	qsort(t->index, vocab_size, sizeof(*t->index), entry_cmp);
	for (uint32_t b = 0; b < 256; b++)
		t->bytes[b] = (char)b;
	return 0;
fail:
	zh_tok_free(t);
	return ret;
}

void zh_tok_free(struct zh_tokenizer *t)
{
	free(t->file);
	free(t->piece);
	free(t->piece_len);
	free(t->score);
	free(t->byte_of);
	free(t->index);
	free(t->work_ids);
	free(t->pair_id);
	free(t->concat);
	memset(t, 0, sizeof(*t));
}

/* The id of the piece that is piece a followed by piece b, or -1. */
static int32_t pair_merge(const struct zh_tokenizer *t, uint32_t a, uint32_t b)
{
	uint32_t la = t->piece_len[a], lb = t->piece_len[b];

	/* No piece is longer than max_token_length, so a longer pair cannot be one. */
	if (la + lb > t->piece_len_max)
		return -1;
	memcpy(t->concat, t->piece[a], la);
	memcpy(t->concat + la, t->piece[b], lb);
	return lookup(t, t->concat, la + lb);
}

/* Append one codepoint's bytes as its piece, or as one byte piece per byte when it has none. */
static uint32_t push_unit(const struct zh_tokenizer *t, const char *unit, uint32_t len, uint32_t n)
{
	int32_t id = lookup(t, unit, len);

	if (id >= 0) {
		t->work_ids[n++] = (uint32_t)id;
		return n;
	}
	for (uint32_t i = 0; i < len; i++)
		t->work_ids[n++] = (uint8_t)unit[i] + ZH_TOK_BYTE0;
	return n;
}

/*
 * Split text into UTF-8 units as llama2.c does: a unit is a byte and the continuation bytes
 * (10xxxxxx) that follow it, at most 4 bytes in all; malformed input just makes short units, which
 * byte fallback then covers.
 */
static uint32_t push_units(const struct zh_tokenizer *t, const char *text, size_t text_len, uint32_t n)
{
	size_t i = 0;

	while (i < text_len) {
		size_t end = i + 1;
		while (end < text_len && end - i < 4 && ((uint8_t)text[end] & 0xC0) == 0x80)
			end++;
		n = push_unit(t, text + i, (uint32_t)(end - i), n);
		i = end;
	}
	return n;
}

/*
 * Merge adjacent pieces, always the pair whose merged piece scores highest (the leftmost on a tie),
 * until no pair is a piece. pair_id[i] caches the merge of work_ids[i] and work_ids[i + 1]; a merge
 * at b changes only pairs b - 1 and b, and the rest shift left by one.
 */
static uint32_t merge_pairs(struct zh_tokenizer *t, uint32_t n)
{
	uint32_t *ids = t->work_ids;
	int32_t *pair = t->pair_id;

	for (uint32_t i = 0; i + 1 < n; i++)
		pair[i] = pair_merge(t, ids[i], ids[i + 1]);
	while (n > 1) {
		int64_t best = -1;

		for (uint32_t i = 0; i + 1 < n; i++)
			if (pair[i] >= 0 && (best < 0 || t->score[pair[i]] > t->score[pair[best]]))
				best = i;
		if (best < 0)
			break;
		uint32_t b = (uint32_t)best;
		ids[b] = (uint32_t)pair[b];
		memmove(&ids[b + 1], &ids[b + 2], (n - b - 2) * sizeof(*ids));
		if (n >= b + 3)
			memmove(&pair[b + 1], &pair[b + 2], (n - b - 3) * sizeof(*pair));
		n--;
		if (b + 1 < n)
			pair[b] = pair_merge(t, ids[b], ids[b + 1]);
		if (b > 0)
			pair[b - 1] = pair_merge(t, ids[b - 1], ids[b]);
	}
	return n;
}

int zh_tok_encode(struct zh_tokenizer *t, const char *text, size_t text_len, int bos, uint32_t *ids,
		  uint32_t ids_max, uint32_t *count)
{
	uint32_t n = 0;

	*count = 0;
	if (text_len > ZH_TOK_TEXT_MAX)
		return -E2BIG;
	/* At most BOS, the dummy prefix and one id per byte: the scratch holds ZH_TOK_TEXT_MAX + 2. */
	if (bos)
		t->work_ids[n++] = ZH_TOK_BOS;
	/* SentencePiece's add_dummy_prefix: " " goes through the same lookup as the text, as llama2.c's. */
	if (text_len)
		n = push_unit(t, " ", 1, n);
	n = push_units(t, text, text_len, n);
	n = merge_pairs(t, n);
	*count = n;
	if (n > ids_max)
		return -ENOSPC;
	memcpy(ids, t->work_ids, n * sizeof(*ids));
	return 0;
}

const char *zh_tok_piece(const struct zh_tokenizer *t, uint32_t id, uint32_t *len)
{
	if (id >= t->vocab_size)
		return NULL;
	*len = t->piece_len[id];
	return t->piece[id];
}

const char *zh_tok_decode(const struct zh_tokenizer *t, uint32_t prev_id, uint32_t id, uint32_t *len)
{
	const char *p;

	if (id >= t->vocab_size)
		return NULL;
	if (t->byte_of[id] >= 0) {
		*len = 1;
		return &t->bytes[t->byte_of[id]];
	}
	p = t->piece[id];
	*len = t->piece_len[id];
	/* The dummy prefix made the first word's piece start with a space the text never had. */
	if (prev_id == ZH_TOK_BOS && p[0] == ' ') {
		p++;
		(*len)--;
	}
	return p;
}

/* isprint() || isspace() in the C locale, which is the locale run.c prints in. */
static int printable_or_space(uint8_t c)
{
	return (c >= 0x20 && c <= 0x7e) || (c >= '\t' && c <= '\r');
}

/* How many of a decoded piece's bytes run.c's safe_printf writes: printf("%s") stops at a NUL, and
 * a lone control or high byte (a stray byte-fallback piece) is dropped rather than sent raw. */
static uint32_t safe_len(const char *p, uint32_t len)
{
	const char *nul = memchr(p, '\0', len);
	uint32_t n = nul ? (uint32_t)(nul - p) : len;

	if (n == 1 && !printable_or_space((uint8_t)p[0]))
		return 0;
	return n;
}

int zh_tok_fprint(const struct zh_tokenizer *t, FILE *out, const uint32_t *ids, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		if (ids[i] >= t->vocab_size)
			return -EINVAL;
	for (uint32_t i = 1; i < count; i++) {
		uint32_t len;
		const char *p;

		/* run.c stops generating when BOS comes up, before printing anything for it. */
		if (ids[i] == ZH_TOK_BOS)
			break;
		p = zh_tok_decode(t, ids[i - 1], ids[i], &len);
		len = safe_len(p, len);
		if (len && fwrite(p, 1, len, out) != len)
			return -EIO;
	}
	return ferror(out) ? -EIO : 0;
}
