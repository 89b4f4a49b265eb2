/* SPDX-License-Identifier: MIT */
/*
 * test_tokenizer.c: the llama2.c tokenizer (tools/zh_tokenizer.h) against llama2.c's own reference run,
 * and zerohop-client's text path against a fake appliance on the loopback.
 *
 * The reference (tests/data/SOURCES.md): karpathy/llama2.c's test_all.py runs stories260K at
 * temperature 0 for 200 steps from BOS and expects stories260K_t0_n200_expected.txt; the 200 greedy
 * ids it samples are GREEDY_IDS below. Decoding those ids after BOS must give that text byte for byte.
 *
 * Encoding has no such reference: the model's greedy ids need not be the BPE encoding of its text.
 * Where the test asserts that they coincide it says why it must hold.
 *
 * The data is found through $ZH_TEST_DATA, then next to the executable (BUILD/tests/ -> tests/data),
 * then as tests/data below the current directory; the client through $ZH_CLIENT, then as
 * BUILD/zerohop-client next to BUILD/tests/. A missing client skips only the client case.
 *
 * Exit status: 0 all checks passed, 1 a check failed, 77 the data was not found.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "krn_msgpack.h"
#include "krn_request.h"
#include "zh_proto.h"
#include "zh_tokenizer.h"

#define TEST_NAME "test_tokenizer"
#define TOKENIZER_FILE "tok512.bin"
#define EXPECTED_FILE "stories260K_t0_n200_expected.txt"
#define VOCAB_SIZE 512u
#define GREEDY_COUNT 200u

/* A client that neither asks nor exits in this long has hung; the case fails instead of waiting. */
#define CLIENT_WAIT_MS 10000
/* The whole binary gives up after this, inside the runner's per-test timeout. */
#define WATCHDOG_S 100u

/* The 200 ids llama2.c's run.c samples greedily after BOS (the fixtures' SOURCES.txt). */
static const uint32_t GREEDY_IDS[GREEDY_COUNT] = {
	403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
	410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
	266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415,
	426, 13,  438, 310, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316, 439, 419, 298, 414, 267,
	265, 282, 295, 433, 426, 436, 317, 286, 296, 418, 269, 279, 292, 416, 439, 413, 409, 416, 327, 263,
	415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 391, 267, 337, 335, 364, 420, 268, 388, 432, 398,
	359, 280, 303, 439, 413, 272, 417, 264, 312, 426, 436, 13,  438, 310, 286, 296, 418, 269, 279, 292,
	416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 439, 423, 262,
	304, 420, 422, 432, 317, 426, 359, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400,
	426, 436, 13,  438, 310, 279, 292, 416, 439, 413, 391, 267, 281, 421, 427, 311, 357, 432, 384, 358,
};

/* The pieces of the first 20 greedy ids, as SOURCES.txt lists them. */
static const char *const FIRST_PIECES[20] = {
	" Once", " upon", " a", " time", ",", " there", " was", " a", " little", " g",
	"ir", "l", " named", " Lily", ".", " She", " lo", "ved", " to", " play",
};

/* ---- checks ---------------------------------------------------------------------------------- */

#include "zh_check.h"

static unsigned long cases_skipped;

#define CHECK_I64(a, b)                                                                          \
	do {                                                                                     \
		int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                    \
		if (a_ == b_)                                                                    \
			checks_passed++;                                                         \
		else                                                                             \
			check_failed(__FILE__, __LINE__, "%s == %s: %" PRId64 " != %" PRId64, #a, #b, \
				     a_, b_);                                                    \
	} while (0)

/* Byte strings: on a mismatch, say where the first difference is. */
#define CHECK_BYTES(a, a_len, b, b_len)                                                          \
	do {                                                                                     \
		size_t al_ = (a_len), bl_ = (b_len), i_ = 0;                                     \
		while (i_ < al_ && i_ < bl_ && ((const char *)(a))[i_] == ((const char *)(b))[i_]) \
			i_++;                                                                    \
		if (al_ == bl_ && i_ == al_)                                                     \
			checks_passed++;                                                         \
		else                                                                             \
			check_failed(__FILE__, __LINE__, "%s != %s: lengths %zu, %zu; first difference at %zu", \
				     #a, #b, al_, bl_, i_);                                      \
	} while (0)


static void watchdog_fired(int sig)
{
	static const char msg[] = TEST_NAME ": watchdog: hung in ";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
	    write(STDERR_FILENO, case_name, strlen(case_name)) < 0 || write(STDERR_FILENO, "\n", 1) < 0)
		_exit(1);
	_exit(1);
}

/* ---- data -------------------------------------------------------------------------------------- */

static char data_dir[PATH_MAX];
static char exe_dir[PATH_MAX];
static struct zh_tokenizer tok;
static char *expected;
static size_t expected_len;

static int data_at(const char *dir)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, TOKENIZER_FILE);
	if (access(path, R_OK) != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, EXPECTED_FILE);
	if (access(path, R_OK) != 0)
		return 0;
	snprintf(data_dir, sizeof(data_dir), "%s", dir);
	return 1;
}

/* The executable's directory (BUILD/tests/), which the data and the client are found from. */
static void find_exe_dir(void)
{
	ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof(exe_dir) - 1);
	char *slash;

	exe_dir[n > 0 ? n : 0] = '\0';
	slash = strrchr(exe_dir, '/');
	if (slash)
		*slash = '\0';
	else
		exe_dir[0] = '\0';
}

/* $ZH_TEST_DATA, then ../../tests/data from the executable (BUILD/tests/), then ./tests/data. */
static int find_data(void)
{
	const char *env = getenv("ZH_TEST_DATA");
	char dir[PATH_MAX + 32];

	if (env && env[0])
		return data_at(env);
	if (exe_dir[0]) {
		snprintf(dir, sizeof(dir), "%s/../../tests/data", exe_dir);
		if (data_at(dir))
			return 1;
	}
	return data_at("tests/data");
}

static char *read_all(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*size = (size_t)n;
	}
	fclose(f);
	return buf;
}

static void data_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", data_dir, name);
}

/* What zh_tok_fprint writes for ids, captured in memory; the caller frees it. */
static char *render(const uint32_t *ids, uint32_t count, size_t *len, int *ret)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (!f) {
		*ret = -errno;
		return NULL;
	}
	*ret = zh_tok_fprint(&tok, f, ids, count);
	fclose(f);
	return buf;
}

/* The raw bytes of ids[1..count), each decoded after its predecessor; no printing rule applied. */
static size_t decode_raw(const uint32_t *ids, uint32_t count, char *out, size_t cap)
{
	size_t n = 0;

	for (uint32_t i = 1; i < count; i++) {
		uint32_t len;
		const char *p = zh_tok_decode(&tok, ids[i - 1], ids[i], &len);
		if (!p || n + len > cap)
			return SIZE_MAX;
		memcpy(out + n, p, len);
		n += len;
	}
	return n;
}

/* ---- the reference tokenizer ---------------------------------------------------------------- */

static void test_load_reference(void)
{
	uint32_t len;
	const char *p;

	CHECK_I64(tok.vocab_size, VOCAB_SIZE);
	CHECK_I64(tok.piece_len_max, 7);
	p = zh_tok_piece(&tok, ZH_TOK_BOS, &len);
	CHECK(p && len == 5 && memcmp(p, "\n<s>\n", 5) == 0);
	p = zh_tok_piece(&tok, ZH_TOK_EOS, &len);
	CHECK(p && len == 6 && memcmp(p, "\n</s>\n", 6) == 0);
	p = zh_tok_piece(&tok, 259, &len);
	CHECK(p && len == 2 && memcmp(p, " t", 2) == 0);
	p = zh_tok_piece(&tok, 3 + 0xAB, &len);
	CHECK(p && len == 6 && memcmp(p, "<0xAB>", 6) == 0);
	CHECK(zh_tok_piece(&tok, VOCAB_SIZE, &len) == NULL);
	CHECK(zh_tok_decode(&tok, 0, VOCAB_SIZE, &len) == NULL);
	/* Merges score -(id - 259): the lower the id, the earlier it merges. */
	for (uint32_t id = 259; id < VOCAB_SIZE; id++)
		CHECK(tok.score[id] == -(float)(id - 259));
}

static void test_first20_pieces(void)
{
	uint32_t prev = ZH_TOK_BOS, len;

	for (uint32_t i = 0; i < 20; i++) {
		const char *want = FIRST_PIECES[i];
		const char *p = zh_tok_piece(&tok, GREEDY_IDS[i], &len);
		CHECK(p != NULL);
		if (p)
			CHECK_BYTES(p, len, want, strlen(want));
		p = zh_tok_decode(&tok, prev, GREEDY_IDS[i], &len);
		/* Only the piece right after BOS loses its leading space. */
		if (i == 0)
			want++;
		CHECK(p != NULL);
		if (p)
			CHECK_BYTES(p, len, want, strlen(want));
		prev = GREEDY_IDS[i];
	}
}

static void test_decode_greedy200(void)
{
	uint32_t ids[1 + GREEDY_COUNT] = { ZH_TOK_BOS };
	size_t len;
	int ret;

	memcpy(ids + 1, GREEDY_IDS, sizeof(GREEDY_IDS));
	char *text = render(ids, 1 + GREEDY_COUNT, &len, &ret);
	CHECK_I64(ret, 0);
	CHECK(text != NULL);
	if (text)
		CHECK_BYTES(text, len, expected, expected_len);
	free(text);
	/* run.c's loop ends at BOS without printing it; what came before is printed. */
	ids[5] = ZH_TOK_BOS;
	text = render(ids, 1 + GREEDY_COUNT, &len, &ret);
	CHECK_I64(ret, 0);
	if (text)
		CHECK_BYTES(text, len, "Once upon a time", 16u);
	free(text);
	/* An id outside the vocabulary writes nothing at all. */
	ids[5] = VOCAB_SIZE;
	text = render(ids, 1 + GREEDY_COUNT, &len, &ret);
	CHECK_I64(ret, -EINVAL);
	CHECK_I64(len, 0);
	free(text);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static void test_encode_once(void)
{
	static const char text[] = "Once upon a time";
	static const uint32_t want[] = { ZH_TOK_BOS, 403, 407, 261, 378 };
	uint32_t ids[16], count = 0;
	char back[64];
	size_t len;
	int ret;

	/*
	 * This must match GREEDY_IDS[0..4): no tok512 piece holds a space after its first byte, so no
	 * merge crosses a word boundary and each " word" (the dummy prefix makes the first one " Once")
	 * is encoded on its own; and each of these four is one piece that BPE reaches from its letters.
	 */
	CHECK_I64(zh_tok_encode(&tok, text, strlen(text), 1, ids, 16, &count), 0);
	CHECK_I64(count, 5);
	for (uint32_t i = 0; i < count && i < 5; i++)
		CHECK_I64(ids[i], want[i]);
	len = decode_raw(ids, count, back, sizeof(back));
	CHECK_BYTES(back, len, text, strlen(text));
	char *printed = render(ids, count, &len, &ret);
	CHECK_I64(ret, 0);
	if (printed)
		CHECK_BYTES(printed, len, text, strlen(text));
	free(printed);
	/* Without BOS the dummy prefix stays: " Once". */
	CHECK_I64(zh_tok_encode(&tok, "Once", 4, 0, ids, 16, &count), 0);
	CHECK(count == 1 && ids[0] == 403);
}

static void test_encode_expected(void)
{
	static uint32_t ids[ZH_TOK_TEXT_MAX + 2];
	const char *dot = memchr(expected, '.', expected_len);
	size_t first_len = dot ? (size_t)(dot - expected) + 1 : 0;
	uint32_t count = 0;

	/*
	 * The first sentence, "Once upon a time, there was a little girl named Lily.", encodes to the first
	 * 15 greedy ids. Words are encoded independently as above, and the only tok512 piece with
	 * punctuation and more than one byte is ' "', so "," and "." stay pieces of their own. " girl" can
	 * only end as the sampled " g" "ir" "l": tok512 has " g" and "ir" but no "gi", "rl", "gir", "irl",
	 * " gir" or " girl". The remaining words are single pieces BPE reaches, as for "Once upon a time".
	 */
	CHECK(first_len == 53);
	CHECK_I64(zh_tok_encode(&tok, expected, first_len, 1, ids, ZH_TOK_TEXT_MAX + 2, &count), 0);
	CHECK_I64(count, 1 + 15);
	for (uint32_t i = 0; i < 15 && i + 1 < count; i++)
		CHECK_I64(ids[1 + i], GREEDY_IDS[i]);
	/*
	 * The whole 464-byte text happens to encode to all 200 greedy ids too: worked out with a separate
	 * implementation of llama2.c's merge loop before this test was written. It is a fact about this
	 * text and this tokenizer, not a property of greedy decoding.
	 */
	CHECK_I64(zh_tok_encode(&tok, expected, expected_len, 1, ids, ZH_TOK_TEXT_MAX + 2, &count), 0);
	CHECK_I64(count, 1 + GREEDY_COUNT);
	CHECK(count == 1 + GREEDY_COUNT && memcmp(ids + 1, GREEDY_IDS, sizeof(GREEDY_IDS)) == 0);
}

static void test_byte_fallback(void)
{
	/* U+65E5 U+672C: not in tok512, so each byte becomes <0xHH>, id byte + 3. */
	static const char cjk[] = "\xe6\x97\xa5\xe6\x9c\xac";
	uint32_t ids[16], count = 0;
	char back[64];
	size_t len;
	int ret;

	CHECK_I64(zh_tok_encode(&tok, cjk, 6, 1, ids, 16, &count), 0);
	CHECK_I64(count, 1 + 1 + 6);
	CHECK_I64(ids[1], 410); /* the dummy prefix alone: no " <0xE6>" piece */
	for (uint32_t i = 0; i < 6 && 2 + i < count; i++)
		CHECK_I64(ids[2 + i], (uint8_t)cjk[i] + ZH_TOK_BYTE0);
	len = decode_raw(ids, count, back, sizeof(back));
	CHECK_BYTES(back, len, cjk, 6u);
	/* Each byte piece alone is one high byte, which run.c's safe_printf drops. */
	char *printed = render(ids, count, &len, &ret);
	CHECK_I64(ret, 0);
	CHECK_I64(len, 0);
	free(printed);

	/* A control byte between letters: " a", <0x01>, "b"; printing skips the control byte. */
	CHECK_I64(zh_tok_encode(&tok, "a\x01" "b", 3, 1, ids, 16, &count), 0);
	CHECK(count == 4 && ids[1] == 261 && ids[2] == 4 && ids[3] == 430);
	len = decode_raw(ids, count, back, sizeof(back));
	CHECK_BYTES(back, len, "a\x01" "b", 3u);
	printed = render(ids, count, &len, &ret);
	if (printed)
		CHECK_BYTES(printed, len, "ab", 2u);
	free(printed);

	/* NUL is a byte like any other: <0x00> is id 3. */
	CHECK_I64(zh_tok_encode(&tok, "a\0b", 3, 0, ids, 16, &count), 0);
	CHECK(count == 3 && ids[0] == 261 && ids[1] == 3 && ids[2] == 430);

	/* "€" (E2 82 AC) is a piece of its own in tok512 (id 503), so it needs no fallback. */
	CHECK_I64(zh_tok_encode(&tok, "\xe2\x82\xac", 3, 1, ids, 16, &count), 0);
	CHECK(count == 3 && ids[1] == 410 && ids[2] == 503);
	len = decode_raw(ids, count, back, sizeof(back));
	CHECK_BYTES(back, len, "\xe2\x82\xac", 3u);
}

/* All 256 byte values, in order and reversed, come back unchanged. */
static void test_all_bytes_round_trip(void)
{
	static uint32_t ids[ZH_TOK_TEXT_MAX + 2];
	char text[512], back[4096];
	uint32_t count = 0;
	size_t len;

	for (int i = 0; i < 256; i++) {
		text[i] = (char)i;
		text[511 - i] = (char)i;
	}
	CHECK_I64(zh_tok_encode(&tok, text, sizeof(text), 1, ids, ZH_TOK_TEXT_MAX + 2, &count), 0);
	CHECK(count > 1 && ids[0] == ZH_TOK_BOS);
	for (uint32_t i = 1; i < count; i++)
		CHECK(ids[i] > ZH_TOK_EOS && ids[i] < VOCAB_SIZE);
	len = decode_raw(ids, count, back, sizeof(back));
	CHECK_BYTES(back, len, text, sizeof(text));
}

static void test_empty(void)
{
	uint32_t ids[4] = { 7, 7, 7, 7 }, count = 99;
	size_t len;
	int ret;

	CHECK_I64(zh_tok_encode(&tok, "", 0, 1, ids, 4, &count), 0);
	CHECK(count == 1 && ids[0] == ZH_TOK_BOS && ids[1] == 7);
	CHECK_I64(zh_tok_encode(&tok, "", 0, 0, ids, 4, &count), 0);
	CHECK_I64(count, 0);
	/* BOS alone prints nothing. */
	char *printed = render(ids, 1, &len, &ret);
	CHECK(ret == 0 && len == 0);
	free(printed);
	printed = render(ids, 0, &len, &ret);
	CHECK(ret == 0 && len == 0);
	free(printed);
}

static void test_bounds(void)
{
	static uint32_t ids[ZH_TOK_TEXT_MAX + 2];
	static char text[ZH_TOK_TEXT_MAX + 1];
	uint32_t count = 0;

	/* "Once upon a time" is 5 ids with BOS: a 4-id buffer is refused and told how many. */
	CHECK_I64(zh_tok_encode(&tok, "Once upon a time", 16, 1, ids, 4, &count), -ENOSPC);
	CHECK_I64(count, 5);
	CHECK_I64(zh_tok_encode(&tok, "Once upon a time", 16, 1, ids, 5, &count), 0);
	/* '{' is not in tok512: the longest text gives the most ids, BOS + prefix + one per byte. */
	memset(text, '{', sizeof(text));
	CHECK_I64(zh_tok_encode(&tok, text, ZH_TOK_TEXT_MAX, 1, ids, ZH_TOK_TEXT_MAX + 2, &count), 0);
	CHECK_I64(count, ZH_TOK_TEXT_MAX + 2);
	CHECK(ids[ZH_TOK_TEXT_MAX + 1] == '{' + ZH_TOK_BYTE0);
	CHECK_I64(zh_tok_encode(&tok, text, ZH_TOK_TEXT_MAX, 1, ids, ZH_TOK_TEXT_MAX + 1, &count), -ENOSPC);
	CHECK_I64(zh_tok_encode(&tok, text, ZH_TOK_TEXT_MAX + 1, 1, ids, ZH_TOK_TEXT_MAX + 2, &count),
		  -E2BIG);
	CHECK_I64(count, 0);
	/* The longest text of mergeable words: 1024 x "the " is 4096 bytes of merges, ending in " the"
	 * (id 265) each after the dummy prefix, and the last space alone (410). */
	for (uint32_t i = 0; i < ZH_TOK_TEXT_MAX; i += 4)
		memcpy(text + i, "the ", 4);
	CHECK_I64(zh_tok_encode(&tok, text, ZH_TOK_TEXT_MAX, 1, ids, ZH_TOK_TEXT_MAX + 2, &count), 0);
	CHECK_I64(count, 1 + ZH_TOK_TEXT_MAX / 4 + 1);
	uint32_t words = 0;
	for (uint32_t i = 1; i + 1 < count; i++)
		words += ids[i] == 265;
	CHECK_I64(words, ZH_TOK_TEXT_MAX / 4);
	CHECK_I64(ids[count - 1], 410);
}

/* ---- malformed files ------------------------------------------------------------------------- */

static uint8_t *ref_file;
static size_t ref_size;

static void store_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Where record `id` starts in the reference file. */
static size_t record_offset(uint32_t id)
{
	size_t off = 4;

	for (uint32_t i = 0; i < id; i++)
		off += 8 + (ref_file[off + 4] | (size_t)ref_file[off + 5] << 8);
	return off;
}

/* Load `size` bytes of `bytes` through a temporary file; returns zh_tok_load's result. */
static int load_bytes(const uint8_t *bytes, size_t size, uint32_t vocab_size, char *why, size_t why_size)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX];
	struct zh_tokenizer t;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/test_tokenizer.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || (size && write(fd, bytes, size) != (ssize_t)size)) {
		check_failed(__FILE__, __LINE__, "temporary file %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	close(fd);
	why[0] = '\0';
	ret = zh_tok_load(&t, path, vocab_size, why, why_size);
	unlink(path);
	if (ret == 0)
		zh_tok_free(&t);
	else
		CHECK(t.file == NULL && t.index == NULL && t.vocab_size == 0);
	return ret;
}

/* The file is refused as malformed, with a reason. */
#define CHECK_REFUSED(bytes, size, vocab, label)                                                 \
	do {                                                                                     \
		char why_[160];                                                                  \
		int ret_ = load_bytes(bytes, size, vocab, why_, sizeof(why_));                   \
		if (ret_ == -EINVAL && why_[0])                                                  \
			checks_passed++;                                                         \
		else                                                                             \
			check_failed(__FILE__, __LINE__, "%s: load returned %d, reason '%s'", label, \
				     ret_, why_);                                                \
	} while (0)

static void test_malformed(void)
{
	uint8_t *bad = malloc(ref_size + 16);
	size_t last = record_offset(VOCAB_SIZE - 1);
	size_t rec300 = record_offset(300);
	char why[160];
	uint32_t nan_bits = 0x7fc00000u;
	struct zh_tokenizer t;

	if (!bad) {
		CHECK(bad != NULL);
		return;
	}
	CHECK_I64(record_offset(VOCAB_SIZE), ref_size);
	/* The harness itself: an unchanged copy loads. */
	CHECK_I64(load_bytes(ref_file, ref_size, VOCAB_SIZE, why, sizeof(why)), 0);

	/* Truncated anywhere: in the header, in a record header, in the last piece. */
	const size_t cuts[] = { 0, 3, 4, 11, 100, last, last + 5, last + 8, ref_size - 1 };
	for (size_t i = 0; i < ZH_ARRAY_SIZE(cuts); i++)
		CHECK_REFUSED(ref_file, cuts[i], VOCAB_SIZE, "truncated");

	/* A file too short for vocab_size records, and one with records left over. */
	CHECK_REFUSED(ref_file, ref_size, VOCAB_SIZE + 1, "vocab_size 513");
	CHECK_REFUSED(ref_file, ref_size, 100000, "vocab_size 100000");
	CHECK_REFUSED(ref_file, ref_size, UINT32_MAX, "vocab_size 2^32-1");
	CHECK_REFUSED(ref_file, ref_size, VOCAB_SIZE - 1, "vocab_size 511");
	CHECK_REFUSED(ref_file, ref_size, 258, "vocab_size 258");

	/* A negative length, and lengths over max_token_length. */
	memcpy(bad, ref_file, ref_size);
	store_le32(bad + rec300 + 4, UINT32_MAX);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "length -1");
	store_le32(bad + rec300 + 4, 0x80000000u);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "length INT32_MIN");
	store_le32(bad + rec300 + 4, 8);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "length 8 > 7");
	store_le32(bad + rec300 + 4, 0);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "length 0");
	/* A length that runs past the end of the file, in the last record. */
	memcpy(bad, ref_file, ref_size);
	store_le32(bad + last + 4, 7);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "past the end");

	/* max_token_length out of range, or smaller than a piece. */
	const uint32_t max_lens[] = { 0, UINT32_MAX, ZH_TOK_PIECE_MAX + 1, 6 };
	for (size_t i = 0; i < ZH_ARRAY_SIZE(max_lens); i++) {
		memcpy(bad, ref_file, ref_size);
		store_le32(bad, max_lens[i]);
		CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "max_token_length");
	}

	/* A score that is not a number. */
	memcpy(bad, ref_file, ref_size);
	store_le32(bad + rec300, nan_bits);
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "NaN score");

	/* Ids 3..258 must be the byte pieces in order: "<0x00>" at id 3 becomes "<0x01>". */
	memcpy(bad, ref_file, ref_size);
	bad[record_offset(3) + 8 + 4] = '1';
	CHECK_REFUSED(bad, ref_size, VOCAB_SIZE, "byte piece");

	/* Not there at all: the errno, not -EINVAL. */
	CHECK_I64(zh_tok_load(&t, "/nonexistent/tok512.bin", VOCAB_SIZE, why, sizeof(why)), -ENOENT);
	free(bad);
}

/* ---- the client against a fake appliance ----------------------------------------------------- */

static char client_path[PATH_MAX + 32];

static int find_client(void)
{
	const char *env = getenv("ZH_CLIENT");

	if (env && env[0])
		snprintf(client_path, sizeof(client_path), "%s", env);
	else if (exe_dir[0])
		snprintf(client_path, sizeof(client_path), "%s/../zerohop-client", exe_dir);
	else
		return 0;
	return access(client_path, X_OK) == 0;
}

/* What the fake appliance answers. */
struct fake_answer {
	enum zh_status status;
	const uint32_t *ids;
	uint32_t count;
	int with_stop;
	int as_ids;             /* a `logits` answer: the ids under "ids", no "tokens" */
};

struct client_run {
	struct krn_request req; /* the request the client sent */
	int got_request;
	int exit_status;        /* the client's, or -1 when it did not exit normally */
	char out[4096];         /* its stdout */
	size_t out_len;
	char err[1024];         /* the start of its stderr, NUL-terminated */
};

static uint32_t encode_answer(uint8_t *buf, uint32_t cap, uint64_t id, const struct fake_answer *a)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, cap);
	if (a->status != ZH_STATUS_OK) {
		krn_answer_head(&w, 0, 1, id, a->status, "unknown model");
		return krn_mp_writer_size(&w, buf);
	}
	krn_answer_head(&w, 1 + (a->with_stop != 0), 1, id, a->status, NULL);
	krn_mp_put_cstr(&w, a->as_ids ? "ids" : "tokens");
	krn_mp_put_array(&w, a->count);
	for (uint32_t i = 0; i < a->count; i++)
		krn_mp_put_uint(&w, a->ids[i]);
	if (a->with_stop) {
		krn_mp_put_cstr(&w, "stop");
		krn_mp_put_cstr(&w, "max_new");
	}
	return krn_mp_writer_size(&w, buf);
}

/* Answer the client's request, if it sends one. */
static void answer_request(int sock, const struct fake_answer *a, struct client_run *run)
{
	uint8_t buf[ZH_ANS_MAX_BYTES + 64];
	struct sockaddr_in from;
	socklen_t from_len = sizeof(from);
	const char *error = NULL;
	ssize_t n = recvfrom(sock, buf, sizeof(buf), 0, (struct sockaddr *)&from, &from_len);

	if (n <= 0 || krn_request_decode(buf, (uint32_t)n, &run->req, &error) != ZH_STATUS_OK) {
		check_failed(__FILE__, __LINE__, "the client's request was refused: %s", error ? error : "empty");
		return;
	}
	uint32_t size = encode_answer(buf, sizeof(buf), run->req.id, a);
	run->got_request = 1;
	CHECK(size > 0 && sendto(sock, buf, size, 0, (struct sockaddr *)&from, from_len) == size);
}

/*
 * Serve the client's request, if any, and collect its stdout until it closes it; a client refusing
 * its arguments closes it without asking. Its stderr is read last: a few lines, well inside a pipe's
 * buffer, so the client never blocks on it.
 */
static void serve_client(int sock, int out_fd, int err_fd, pid_t pid, const struct fake_answer *a,
			 struct client_run *run)
{
	struct pollfd pfd[2] = { { .fd = sock, .events = POLLIN }, { .fd = out_fd, .events = POLLIN } };
	int status, eof = 0;

	while (!eof && poll(pfd, 2, CLIENT_WAIT_MS) > 0) {
		if (pfd[0].revents & POLLIN) {
			answer_request(sock, a, run);
			pfd[0].fd = -1; /* one request per run; poll skips a negative fd */
		}
		if (pfd[1].revents) {
			size_t room = sizeof(run->out) - 1 - run->out_len;
			ssize_t n = room ? read(out_fd, run->out + run->out_len, room) : -1;
			if (n <= 0) {
				eof = n == 0;
				break;
			}
			run->out_len += (size_t)n;
		}
	}
	/* A client that closed its stdout is exiting (the watchdog covers the rest); one that did not
	 * finish in time is ended here. It is ours, by pid. */
	if (!eof) {
		check_failed(__FILE__, __LINE__, "the client did not finish within %d ms", CLIENT_WAIT_MS);
		kill(pid, SIGKILL);
	}
	if (waitpid(pid, &status, 0) != pid || !eof) {
		run->exit_status = -1;
		return;
	}
	run->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	ssize_t n = read(err_fd, run->err, sizeof(run->err) - 1);
	run->err[n > 0 ? n : 0] = '\0';
}

/* Run the client with `args` (NULL-terminated) against a fake appliance on 127.0.0.1. */
static void run_client(const char *const *args, const struct fake_answer *a, struct client_run *run)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t addr_len = sizeof(addr);
	char port[16], tokenizer[PATH_MAX + 64];
	const char *argv[32];
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, argc = 0;
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	memset(run, 0, sizeof(*run));
	run->exit_status = -1;
	if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    getsockname(sock, (struct sockaddr *)&addr, &addr_len) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(err, O_CLOEXEC | O_NONBLOCK) < 0) {
		check_failed(__FILE__, __LINE__, "loopback socket or pipe: %s", strerror(errno));
		goto out;
	}
	snprintf(port, sizeof(port), "%u", ntohs(addr.sin_port));
	data_path(tokenizer, sizeof(tokenizer), TOKENIZER_FILE);
	argv[argc++] = client_path;
	argv[argc++] = "--addr";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "--port";
	argv[argc++] = port;
	argv[argc++] = "--timeout-ms";
	argv[argc++] = "5000";
	argv[argc++] = "--tokenizer";
	argv[argc++] = tokenizer;
	for (int i = 0; args[i] && argc < 31; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		dup2(err[1], STDERR_FILENO);
		execv(client_path, (char *const *)argv);
		_exit(127);
	}
	if (pid < 0) {
		check_failed(__FILE__, __LINE__, "fork: %s", strerror(errno));
		goto out;
	}
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	serve_client(sock, out[0], err[0], pid, a, run);
out:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	if (sock >= 0)
		close(sock);
}

static void test_client_text(void)
{
	struct client_run run;

	if (!find_client()) {
		printf("%s: %s: skipped: no client at %s\n", TEST_NAME, case_name, client_path);
		cases_skipped++;
		return;
	}

	/* An empty prompt is BOS alone; the sampling keys go along; the answer is the 200 new ids. */
	static const char *const gen_args[] = { "--prompt", "", "--op", "generate", "--max-new", "200",
						"--temperature", "0", "--seed", "7", "--top-k", "3", NULL };
	struct fake_answer gen = { ZH_STATUS_OK, GREEDY_IDS, GREEDY_COUNT, 1, 0 };
	run_client(gen_args, &gen, &run);
	CHECK(run.got_request);
	CHECK_I64(run.req.op, ZH_OP_GENERATE);
	CHECK(run.req.token_count == 1 && run.req.tokens[0] == ZH_TOK_BOS);
	CHECK_I64(run.req.present_mask & (KRN_REQ_HAS_MAX_NEW | KRN_REQ_HAS_TEMPERATURE | KRN_REQ_HAS_SEED |
					  KRN_REQ_HAS_TOP_K),
		  KRN_REQ_HAS_MAX_NEW | KRN_REQ_HAS_TEMPERATURE | KRN_REQ_HAS_SEED | KRN_REQ_HAS_TOP_K);
	CHECK(run.req.max_new == 200 && run.req.temperature == 0.0f && run.req.seed == 7 &&
	      run.req.top_k == 3);
	CHECK_I64(run.exit_status, 0);
	CHECK_BYTES(run.out, run.out_len, expected, expected_len);

	/* A prompt, no --op: the answer's `stop` marks it generate, so the prompt text comes first. */
	static const char *const prompt_args[] = { "--prompt", "Once upon a time", "--temperature", "0.5",
						   NULL };
	struct fake_answer rest = { ZH_STATUS_OK, GREEDY_IDS + 4, GREEDY_COUNT - 4, 1, 0 };
	run_client(prompt_args, &rest, &run);
	CHECK(run.got_request);
	CHECK(run.req.token_count == 5 && run.req.tokens[0] == ZH_TOK_BOS && run.req.tokens[1] == 403 &&
	      run.req.tokens[4] == 378);
	CHECK(!(run.req.present_mask & (KRN_REQ_HAS_OP | KRN_REQ_HAS_MAX_NEW | KRN_REQ_HAS_SEED)));
	CHECK(run.req.temperature == 0.5f);
	CHECK_I64(run.exit_status, 0);
	CHECK_BYTES(run.out, run.out_len, expected, expected_len);

	/* TOKEN_IDs as before; an echo answer's tokens are the whole sequence, its first id unprinted. */
	static const char *const echo_args[] = { "--op", "echo", "1", "403", "407", NULL };
	static const uint32_t echo_ids[] = { 1, 403, 407 };
	struct fake_answer echo = { ZH_STATUS_OK, echo_ids, 3, 0, 0 };
	run_client(echo_args, &echo, &run);
	CHECK(run.got_request && run.req.token_count == 3);
	CHECK_I64(run.exit_status, 0);
	CHECK_BYTES(run.out, run.out_len, "Once upon", 9u);

	/* --json still prints JSON. */
	static const char *const json_args[] = { "--json", "--op", "echo", "1", "403", "407", NULL };
	run_client(json_args, &echo, &run);
	CHECK_I64(run.exit_status, 0);
	CHECK(run.out_len > 2 && run.out[0] == '{' && run.out[run.out_len - 1] == '\n');
	run.out[run.out_len] = '\0';
	CHECK(strstr(run.out, "\"tokens\": [1, 403, 407]") != NULL);

	/* An error answer is printed as before, with its exit status. */
	struct fake_answer err = { ZH_STATUS_UNKNOWN_MODEL, NULL, 0, 0, 0 };
	run_client(echo_args, &err, &run);
	CHECK_I64(run.exit_status, 1);
	run.out[run.out_len] = '\0';
	CHECK(strncmp(run.out, "status 2 ", 9) == 0);

	/* An ok answer without tokens (`logits`) is printed as before too. */
	struct fake_answer logits = { ZH_STATUS_OK, echo_ids, 3, 0, 1 };
	run_client(echo_args, &logits, &run);
	CHECK_I64(run.exit_status, 0);
	run.out[run.out_len] = '\0';
	CHECK(strncmp(run.out, "status 0 (ok)\n", 14) == 0 && strstr(run.out, "\"ids\": [1, 403, 407]") != NULL);

	/* An answer id the tokenizer does not know is an error, not garbage text. */
	static const uint32_t big_ids[] = { 1, 403, VOCAB_SIZE };
	struct fake_answer big = { ZH_STATUS_OK, big_ids, 3, 0, 0 };
	run_client(echo_args, &big, &run);
	CHECK_I64(run.exit_status, 3);
	CHECK_I64(run.out_len, 0);
	CHECK(strstr(run.err, "not below the tokenizer's vocabulary size 512") != NULL);

	/* Refusals before anything is sent: usage errors exit 3 and say why. */
	static const char *const no_tok_args[] = { "--prompt", "x", "1", NULL };
	run_client(no_tok_args, &echo, &run);
	CHECK(!run.got_request && run.exit_status == 3 && strstr(run.err, "not both") != NULL);
	static const char *const vocab_args[] = { "--vocab", "511", "--prompt", "x", NULL };
	run_client(vocab_args, &echo, &run);
	CHECK(!run.got_request && run.exit_status == 3 && strstr(run.err, "tok512.bin: ") != NULL);
	static const char *const temp_args[] = { "--temperature", "101", "1", NULL };
	run_client(temp_args, &echo, &run);
	CHECK(!run.got_request && run.exit_status == 3 && strstr(run.err, "--temperature") != NULL);
}

int main(void)
{
	char path[PATH_MAX + 64];
	char why[160] = "";
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, watchdog_fired);
	alarm(WATCHDOG_S);
	find_exe_dir();
	if (!find_data()) {
		printf("%s: SKIP: %s and %s not found under $ZH_TEST_DATA, next to the executable or in "
		       "./tests/data\n", TEST_NAME, TOKENIZER_FILE, EXPECTED_FILE);
		return 77;
	}
	data_path(path, sizeof(path), EXPECTED_FILE);
	expected = read_all(path, &expected_len);
	data_path(path, sizeof(path), TOKENIZER_FILE);
	ref_file = (uint8_t *)read_all(path, &ref_size);
	ret = zh_tok_load(&tok, path, VOCAB_SIZE, why, sizeof(why));
	if (!expected || !ref_file || ret) {
		printf("%s: FAIL: cannot load %s: %s\n", TEST_NAME, path, ret == -EINVAL ? why : strerror(-ret));
		return 1;
	}
	RUN(test_load_reference);
	RUN(test_first20_pieces);
	RUN(test_decode_greedy200);
	RUN(test_encode_once);
	RUN(test_encode_expected);
	RUN(test_byte_fallback);
	RUN(test_all_bytes_round_trip);
	RUN(test_empty);
	RUN(test_bounds);
	RUN(test_malformed);
	RUN(test_client_text);
	zh_tok_free(&tok);
	free(expected);
	free(ref_file);
	if (checks_failed) {
		printf("%s: %lu of %lu checks failed\n", TEST_NAME, checks_failed, checks_failed + checks_passed);
		return 1;
	}
	printf("%s: %lu checks passed, %lu skipped\n", TEST_NAME, checks_passed, cases_skipped);
	return 0;
}
