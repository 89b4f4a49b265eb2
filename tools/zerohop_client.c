/* SPDX-License-Identifier: MIT */
/*
 * zerohop-client: send one request to a zerohop appliance over a kernel UDP socket and print the
 * answer. Packs with msgpack-c; an answer is checked with the bounded reader (kernels/krn_msgpack)
 * before msgpack-c unpacks it, because msgpack-c believes container sizes it is given.
 *
 * With --tokenizer (a llama2.c tokenizer.bin), --prompt text is encoded to the request's tokens, and
 * an ok answer's `tokens` are printed as text: exactly the bytes llama2.c's run.c prints for the same
 * ids, the prompt's included for `generate`, with no newline added.
 *
 * Exit status: 0 answer with status ok, 1 answer with another status, 2 timeout, 3 usage or I/O error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <msgpack.h>

#include "krn_msgpack.h"
#include "zh_cli.h"
#include "zh_proto.h"
#include "zh_tokenizer.h"

#define EXIT_OK 0
#define EXIT_STATUS 1
#define EXIT_TIMEOUT 2
#define EXIT_ERROR 3

struct client_options {
	const char *addr;
	uint16_t port;
	uint64_t id;
	const char *model;
	const char *op;
	uint32_t timeout_ms;
	int trace;
	int json;
	const char *tokenizer_path;
	uint32_t vocab_size;        /* the model's; the tokenizer file does not say */
	const char *prompt;
	int has_max_new, has_temperature, has_seed, has_top_k;
	uint32_t max_new;
	float temperature;
	uint64_t seed;
	uint32_t top_k;
	uint32_t token_count;
	uint32_t tokens[ZH_TOKENS_MAX];
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohop-client [options] TOKEN_ID...\n"
		"       zerohop-client [options] --tokenizer PATH [--vocab N] [--prompt TEXT | TOKEN_ID...]\n"
		"  --addr A.B.C.D     appliance address (default 198.18.0.1)\n"
		"  --port N           appliance UDP port (default 9000)\n"
		"  --id N             request id (default: from the clock)\n"
		"  --model NAME       model to ask (default: the appliance's default model)\n"
		"  --op OP            operation (default: the model's default)\n"
		"  --timeout-ms N     how long to wait for the answer (default 1000)\n"
		"  --trace            ask for stage timestamps\n"
		"  --json             print the answer as JSON\n"
		"  --tokenizer PATH   llama2.c tokenizer.bin: print an answer's tokens as text\n"
		"  --vocab N          the model's vocabulary size, for the tokenizer (default 512)\n"
		"  --prompt TEXT      send TEXT encoded with the tokenizer, BOS first, as the tokens\n"
		"  --max-new N        new tokens for generate\n"
		"  --temperature X    sampling temperature in [0, 100]; 0 is greedy\n"
		"  --seed N           sampling seed\n"
		"  --top-k N          ids returned by logits\n"
		"exit status: 0 ok, 1 answer with an error status, 2 timeout, 3 usage or I/O error\n");
}

/* The appliance takes [0, 100] (docs/PROTOCOL.md); it is sent as the float32 the device uses. */
static int parse_temperature(const char *text, float *out)
{
	char *end;
	float v;

	errno = 0;
	v = strtof(text, &end);
	if (errno || end == text || *end != '\0' || !isfinite(v) || v < 0.0f || v > 100.0f)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct client_options *opt)
{
	/* In the order of longopts: a bad value's message names longopts[c - O_ADDR]. */
	enum {
		O_ADDR = 256, O_PORT, O_ID, O_MODEL, O_OP, O_TIMEOUT, O_TRACE, O_JSON, O_TOKENIZER, O_VOCAB,
		O_PROMPT, O_MAX_NEW, O_TEMPERATURE, O_SEED, O_TOP_K, O_HELP
	};
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, O_ADDR },
		{ "port", required_argument, NULL, O_PORT },
		{ "id", required_argument, NULL, O_ID },
		{ "model", required_argument, NULL, O_MODEL },
		{ "op", required_argument, NULL, O_OP },
		{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
		{ "trace", no_argument, NULL, O_TRACE },
		{ "json", no_argument, NULL, O_JSON },
		{ "tokenizer", required_argument, NULL, O_TOKENIZER },
		{ "vocab", required_argument, NULL, O_VOCAB },
		{ "prompt", required_argument, NULL, O_PROMPT },
		{ "max-new", required_argument, NULL, O_MAX_NEW },
		{ "temperature", required_argument, NULL, O_TEMPERATURE },
		{ "seed", required_argument, NULL, O_SEED },
		{ "top-k", required_argument, NULL, O_TOP_K },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct timespec now;
	uint64_t v;
	int c;

	clock_gettime(CLOCK_REALTIME, &now);
	opt->addr = "198.18.0.1";
	opt->port = 9000;
	opt->id = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	opt->timeout_ms = 1000;
	opt->vocab_size = 512;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_ADDR: opt->addr = optarg; break;
		case O_PORT:
			if (zh_cli_parse_u64(optarg, 0, 65535, &v) || v == 0)
				goto bad;
			opt->port = (uint16_t)v;
			break;
		case O_ID:
			if (zh_cli_parse_u64(optarg, 0, UINT64_MAX, &opt->id))
				goto bad;
			break;
		case O_MODEL: opt->model = optarg; break;
		case O_OP: opt->op = optarg; break;
		case O_TIMEOUT:
			if (zh_cli_parse_u64(optarg, 0, 3600000, &v) || v == 0)
				goto bad;
			opt->timeout_ms = (uint32_t)v;
			break;
		case O_TRACE: opt->trace = 1; break;
		case O_JSON: opt->json = 1; break;
		case O_TOKENIZER: opt->tokenizer_path = optarg; break;
		case O_VOCAB:
			if (zh_cli_parse_u64(optarg, 0, UINT32_MAX, &v))
				goto bad;
			opt->vocab_size = (uint32_t)v;
			break;
		case O_PROMPT: opt->prompt = optarg; break;
		case O_MAX_NEW:
			if (zh_cli_parse_u64(optarg, 0, UINT32_MAX, &v))
				goto bad;
			opt->max_new = (uint32_t)v;
			opt->has_max_new = 1;
			break;
		case O_TEMPERATURE:
			if (parse_temperature(optarg, &opt->temperature))
				goto bad;
			opt->has_temperature = 1;
			break;
		case O_SEED:
			if (zh_cli_parse_u64(optarg, 0, UINT64_MAX, &opt->seed))
				goto bad;
			opt->has_seed = 1;
			break;
		case O_TOP_K:
			if (zh_cli_parse_u64(optarg, 0, UINT32_MAX, &v))
				goto bad;
			opt->top_k = (uint32_t)v;
			opt->has_top_k = 1;
			break;
		case O_HELP: usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -EINVAL;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (opt->token_count == ZH_TOKENS_MAX) {
			fprintf(stderr, "zerohop-client: at most %u tokens\n", ZH_TOKENS_MAX);
			return -EINVAL;
		}
		if (zh_cli_parse_u64(argv[i], 0, UINT32_MAX, &v)) {
			fprintf(stderr, "zerohop-client: token '%s' is not a uint32\n", argv[i]);
			return -EINVAL;
		}
		opt->tokens[opt->token_count++] = (uint32_t)v;
	}
	if (opt->prompt && !opt->tokenizer_path) {
		fprintf(stderr, "zerohop-client: --prompt needs --tokenizer\n");
		return -EINVAL;
	}
	if (opt->prompt && opt->token_count) {
		fprintf(stderr, "zerohop-client: give --prompt or TOKEN_IDs, not both\n");
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "zerohop-client: bad value '%s' for --%s\n", optarg, longopts[c - O_ADDR].name);
	return -EINVAL;
}

static void pack_key(msgpack_packer *pk, const char *key)
{
	msgpack_pack_str(pk, strlen(key));
	msgpack_pack_str_body(pk, key, strlen(key));
}

static void pack_request(msgpack_sbuffer *sbuf, const struct client_options *opt)
{
	msgpack_packer pk;
	uint32_t entries = 2 + (opt->model != NULL) + (opt->op != NULL) + (opt->trace != 0) +
			   (uint32_t)(opt->has_max_new + opt->has_temperature + opt->has_seed + opt->has_top_k);

	msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, entries);
	pack_key(&pk, "id");
	msgpack_pack_uint64(&pk, opt->id);
	if (opt->model) {
		pack_key(&pk, "model");
		pack_key(&pk, opt->model);
	}
	if (opt->op) {
		pack_key(&pk, "op");
		pack_key(&pk, opt->op);
	}
	if (opt->trace) {
		pack_key(&pk, "trace");
		msgpack_pack_true(&pk);
	}
	if (opt->has_max_new) {
		pack_key(&pk, "max_new");
		msgpack_pack_uint32(&pk, opt->max_new);
	}
	if (opt->has_temperature) {
		pack_key(&pk, "temperature");
		msgpack_pack_float(&pk, opt->temperature);
	}
	if (opt->has_seed) {
		pack_key(&pk, "seed");
		msgpack_pack_uint64(&pk, opt->seed);
	}
	if (opt->has_top_k) {
		pack_key(&pk, "top_k");
		msgpack_pack_uint32(&pk, opt->top_k);
	}
	pack_key(&pk, "tokens");
	msgpack_pack_array(&pk, opt->token_count);
	for (uint32_t i = 0; i < opt->token_count; i++)
		msgpack_pack_uint32(&pk, opt->tokens[i]);
}

static const char *status_name(uint64_t status)
{
	static const char *const names[] = {
#define ZH_X(name, code, text) text,
		ZH_STATUS_LIST(ZH_X)
#undef ZH_X
	};
	return status < ZH_ARRAY_SIZE(names) ? names[status] : "unknown";
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	size_t len = strlen(key);

	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == len &&
		    memcmp(kv->key.via.str.ptr, key, len) == 0)
			return &kv->val;
	}
	return NULL;
}

/*
 * Print an ok answer's `tokens` (an array) as text. A `generate` answer (the op asked for, or a `stop` key, which
 * only generate answers carry) holds only the new ids, so the request's ids go first: run.c prints the
 * prompt after its first id and then each generated token, and so does zh_tok_fprint. Another answer's
 * `tokens` are the whole sequence. Returns the exit status.
 */
static int print_text(const msgpack_object *answer, const msgpack_object *tokens,
		      const struct zh_tokenizer *tok, const struct client_options *opt)
{
	int generate = (opt->op && strcmp(opt->op, "generate") == 0) || map_get(answer, "stop") != NULL;
	uint32_t prompt_count = generate ? opt->token_count : 0;
	uint32_t count, *seq;
	int ret;

	/* The answer came in one datagram of at most 64 KiB, so the count is small. */
	count = prompt_count + tokens->via.array.size;
	seq = malloc(((size_t)count + 1) * sizeof(*seq));
	if (!seq) {
		fprintf(stderr, "zerohop-client: out of memory\n");
		return EXIT_ERROR;
	}
	memcpy(seq, opt->tokens, prompt_count * sizeof(*seq));
	ret = 0;
	for (uint32_t i = 0; i < tokens->via.array.size; i++) {
		const msgpack_object *o = &tokens->via.array.ptr[i];
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 >= tok->vocab_size) {
			ret = -EINVAL;
			break;
		}
		seq[prompt_count + i] = (uint32_t)o->via.u64;
	}
	if (!ret)
		ret = zh_tok_fprint(tok, stdout, seq, count);
	free(seq);
	if (fflush(stdout) && !ret)
		ret = -EIO;
	if (ret == -EINVAL)
		fprintf(stderr, "zerohop-client: an id is not below the tokenizer's vocabulary size %u\n",
			tok->vocab_size);
	else if (ret)
		fprintf(stderr, "zerohop-client: writing the text: %s\n", strerror(-ret));
	return ret ? EXIT_ERROR : EXIT_OK;
}

/* Print the answer; returns the exit status it deserves. */
static int print_answer(const uint8_t *buf, uint32_t size, const struct client_options *opt,
			const struct zh_tokenizer *tok)
{
	struct krn_mp_reader r;
	msgpack_unpacked msg;
	size_t off = 0;
	int rc = EXIT_ERROR;

	/* Every container count is checked against the bytes left before msgpack-c sees them. */
	krn_mp_reader_init(&r, buf, size);
	if (krn_mp_skip(&r) != KRN_MP_OK || krn_mp_reader_left(&r) != 0) {
		fprintf(stderr, "zerohop-client: the answer is not one well-formed msgpack value\n");
		return EXIT_ERROR;
	}
	msgpack_unpacked_init(&msg);
	if (msgpack_unpack_next(&msg, (const char *)buf, size, &off) != MSGPACK_UNPACK_SUCCESS ||
	    msg.data.type != MSGPACK_OBJECT_MAP) {
		fprintf(stderr, "zerohop-client: the answer is not a msgpack map\n");
		goto out;
	}
	uint64_t status = UINT64_MAX;
	for (uint32_t i = 0; i < msg.data.via.map.size; i++) {
		const msgpack_object_kv *kv = &msg.data.via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6 &&
		    memcmp(kv->key.via.str.ptr, "status", 6) == 0 &&
		    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			status = kv->val.via.u64;
	}
	/* Text only for an ok answer with tokens; anything else (an error, `logits`) prints as before. */
	const msgpack_object *tokens = map_get(&msg.data, "tokens");
	if (tok && !opt->json && status == ZH_STATUS_OK && tokens && tokens->type == MSGPACK_OBJECT_ARRAY) {
		rc = print_text(&msg.data, tokens, tok, opt);
		goto out;
	}
	if (opt->json) {
		zh_cli_print_json(stdout, &msg.data);
		fputc('\n', stdout);
	} else {
		printf("status %" PRIu64 " (%s)\n", status, status_name(status));
		for (uint32_t i = 0; i < msg.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &msg.data.via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6 &&
			    memcmp(kv->key.via.str.ptr, "status", 6) == 0)
				continue;
			zh_cli_print_json(stdout, &kv->key);
			fputs(": ", stdout);
			zh_cli_print_json(stdout, &kv->val);
			fputc('\n', stdout);
		}
	}
	rc = status == ZH_STATUS_OK ? EXIT_OK : EXIT_STATUS;
out:
	msgpack_unpacked_destroy(&msg);
	return rc;
}

/* Load the tokenizer and encode --prompt into the request's tokens; prints why on failure. */
static int load_tokenizer(struct zh_tokenizer *tok, struct client_options *opt)
{
	char why[160] = "";
	int ret = zh_tok_load(tok, opt->tokenizer_path, opt->vocab_size, why, sizeof(why));

	if (ret) {
		fprintf(stderr, "zerohop-client: tokenizer %s: %s\n", opt->tokenizer_path,
			ret == -EINVAL ? why : strerror(-ret));
		return ret;
	}
	if (!opt->prompt)
		return 0;
	ret = zh_tok_encode(tok, opt->prompt, strlen(opt->prompt), 1, opt->tokens, ZH_TOKENS_MAX,
			    &opt->token_count);
	if (ret == -E2BIG)
		fprintf(stderr, "zerohop-client: the prompt is longer than %u bytes\n", ZH_TOK_TEXT_MAX);
	else if (ret == -ENOSPC)
		fprintf(stderr, "zerohop-client: the prompt is %u tokens; a request holds at most %u\n",
			opt->token_count, ZH_TOKENS_MAX);
	return ret;
}

int main(int argc, char **argv)
{
	struct client_options opt = { 0 };
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct zh_tokenizer tok = { 0 };
	msgpack_sbuffer sbuf;
	uint8_t answer[65536];
	int fd = -1;
	int rc = EXIT_ERROR;

	if (parse_args(argc, argv, &opt))
		return EXIT_ERROR;
	to.sin_port = htons(opt.port);
	if (inet_pton(AF_INET, opt.addr, &to.sin_addr) != 1) {
		fprintf(stderr, "zerohop-client: '%s' is not an IPv4 address\n", opt.addr);
		return EXIT_ERROR;
	}
	msgpack_sbuffer_init(&sbuf);
	if (opt.tokenizer_path && load_tokenizer(&tok, &opt))
		goto out;
	pack_request(&sbuf, &opt);
	if (sbuf.size > ZH_REQ_MAX_BYTES) {
		fprintf(stderr, "zerohop-client: request of %zu bytes exceeds %u\n", sbuf.size, ZH_REQ_MAX_BYTES);
		goto out;
	}
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	/* connect() makes the kernel drop datagrams from anyone but the appliance. */
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0 ||
	    send(fd, sbuf.data, sbuf.size, 0) != (ssize_t)sbuf.size) {
		fprintf(stderr, "zerohop-client: send to %s:%u: %s\n", opt.addr, opt.port, strerror(errno));
		goto out;
	}
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int ready = poll(&pfd, 1, (int)opt.timeout_ms);
	if (ready == 0) {
		fprintf(stderr, "zerohop-client: no answer from %s:%u within %u ms\n", opt.addr, opt.port,
			opt.timeout_ms);
		rc = EXIT_TIMEOUT;
		goto out;
	}
	ssize_t n = ready > 0 ? recv(fd, answer, sizeof(answer), 0) : -1;
	if (n < 0) {
		fprintf(stderr, "zerohop-client: receive: %s\n", strerror(errno));
		goto out;
	}
	rc = print_answer(answer, (uint32_t)n, &opt, opt.tokenizer_path ? &tok : NULL);
out:
	if (fd >= 0)
		close(fd);
	msgpack_sbuffer_destroy(&sbuf);
	zh_tok_free(&tok);
	return rc;
}
