/* SPDX-License-Identifier: MIT */
/*
 * zh_tokenizer.h: the llama2.c tokenizer on the host. Loads a llama2.c tokenizer.bin, encodes text to
 * token ids as llama2.c's encode() does (SentencePiece-style: a dummy-prefix space, one piece per UTF-8
 * codepoint with byte fallback, then greedy BPE merges by score) and decodes ids to the bytes
 * llama2.c's run.c prints for them.
 *
 * The file is `int32 max_token_length`, then one record per id, `{float32 score; int32 len; len bytes}`,
 * all little-endian. The file does not store the record count: it is the model's vocab_size, so the
 * caller gives it, and a file that does not hold exactly that many well-formed records is refused.
 *
 * Everything is allocated by zh_tok_load; encode and decode allocate nothing. Encoding uses scratch
 * inside the tokenizer, so one tokenizer encodes one text at a time; decoding only reads it.
 */
#ifndef ZH_TOKENIZER_H
#define ZH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The ids llama2.c's tokenizers give their special pieces. */
#define ZH_TOK_BOS 1u
#define ZH_TOK_EOS 2u
/* Byte fallback: the piece "<0xHH>" of byte b is id b + ZH_TOK_BYTE0, for all 256 bytes. */
#define ZH_TOK_BYTE0 3u
#define ZH_TOK_VOCAB_MIN (ZH_TOK_BYTE0 + 256u)

/* The longest text zh_tok_encode takes, in bytes; it bounds the encoder's scratch and its O(n^2)
 * worst case (every merge rescans the pairs). A request carries at most 256 ids anyway. */
#define ZH_TOK_TEXT_MAX 4096u
/* The largest max_token_length accepted; llama2.c's tokenizers use 7 (tok512) to 27 (Llama 2). */
#define ZH_TOK_PIECE_MAX 1024u
/* The largest tokenizer file read; Llama 2's 32000-piece tokenizer.bin is 434 KiB. */
#define ZH_TOK_FILE_MAX (64u << 20)

/* One piece in the lookup index, which is sorted by the piece's bytes and then by id. */
struct zh_tok_entry {
	const char *piece;
	uint32_t len;
	uint32_t id;
};

struct zh_tokenizer {
	uint32_t vocab_size;
	uint32_t piece_len_max;      /* the file's max_token_length */
	uint8_t *file;               /* the whole file; pieces point into it */
	const char **piece;          /* [vocab_size] the piece's bytes, not NUL-terminated */
	uint32_t *piece_len;         /* [vocab_size] */
	float *score;                /* [vocab_size] merge priority: higher merges first */
	int16_t *byte_of;            /* [vocab_size] the byte an "<0xHH>" piece stands for, else -1 */
	struct zh_tok_entry *index;  /* [vocab_size] for bsearch */
	uint32_t *work_ids;          /* [ZH_TOK_TEXT_MAX + 2] encode scratch: BOS, dummy prefix, a byte each */
	int32_t *pair_id;            /* [ZH_TOK_TEXT_MAX + 2] id of the merge of work_ids[i], [i + 1], or -1 */
	char *concat;                /* [2 * piece_len_max] two pieces side by side, for lookup */
	char bytes[256];             /* bytes[b] == b: what a byte piece decodes to */
};

/*
 * Load `path` as a tokenizer of `vocab_size` pieces. Returns 0, -EINVAL for a malformed file or a
 * vocab_size below ZH_TOK_VOCAB_MIN (with the reason in `why`), -ENOMEM, or the negative errno of the
 * failed open or read. On failure nothing stays allocated and zh_tok_free is harmless.
 */
int zh_tok_load(struct zh_tokenizer *t, const char *path, uint32_t vocab_size, char *why, size_t why_size);
void zh_tok_free(struct zh_tokenizer *t);

/*
 * Encode text_len bytes of text (any bytes; NUL is byte-fallback id 3), with BOS first when `bos`.
 * Non-empty text gets a leading space first, as SentencePiece's add_dummy_prefix does. Returns 0 with
 * the ids in ids[0..*count), -E2BIG for text longer than ZH_TOK_TEXT_MAX, or -ENOSPC when more than
 * ids_max ids result (*count says how many).
 */
int zh_tok_encode(struct zh_tokenizer *t, const char *text, size_t text_len, int bos, uint32_t *ids,
		  uint32_t ids_max, uint32_t *count);

/* The piece of `id` as stored, or NULL when id is not below vocab_size. */
const char *zh_tok_piece(const struct zh_tokenizer *t, uint32_t id, uint32_t *len);

/*
 * The bytes `id` decodes to when it follows `prev_id`, as llama2.c's decode(): a byte piece "<0xHH>"
 * is the one raw byte, and after BOS one leading space is dropped (the dummy prefix). NULL when id is
 * not below vocab_size. The bytes may be anything, NUL included; see zh_tok_fprint for printing.
 */
const char *zh_tok_decode(const struct zh_tokenizer *t, uint32_t prev_id, uint32_t id, uint32_t *len);

/*
 * Write what llama2.c's run.c prints for the token sequence ids[0..count): ids[0] is the token it
 * starts from and is not printed; each later id is decoded after its predecessor and written as
 * run.c's safe_printf writes it (up to an embedded NUL; a lone byte that is neither printable ASCII
 * nor whitespace is skipped); a BOS ends the text, as it ends run.c's loop. No newline is added.
 * Returns 0, -EINVAL (nothing written) when an id is not below vocab_size, or -EIO.
 */
int zh_tok_fprint(const struct zh_tokenizer *t, FILE *out, const uint32_t *ids, uint32_t count);

#endif /* ZH_TOKENIZER_H */
