/* SPDX-License-Identifier: MIT */
/*
 * zerohop-client: send one request to a zerohop appliance over a kernel UDP socket and print the
 * answer. Packs with msgpack-c; an answer is checked with the bounded reader (kernels/krn_msgpack)
 * before msgpack-c unpacks it, because msgpack-c believes container sizes it is given.
 *
 * Exit status: 0 answer with status ok, 1 answer with another status, 2 timeout, 3 usage or I/O error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "zh_proto.h"

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
	uint32_t token_count;
	uint32_t tokens[ZH_TOKENS_MAX];
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohop-client [options] TOKEN_ID...\n"
		"  --addr A.B.C.D     appliance address (default 198.18.0.1)\n"
		"  --port N           appliance UDP port (default 9000)\n"
		"  --id N             request id (default: from the clock)\n"
		"  --model NAME       model to ask (default: the appliance's default model)\n"
		"  --op OP            operation (default: the model's default)\n"
		"  --timeout-ms N     how long to wait for the answer (default 1000)\n"
		"  --trace            ask for stage timestamps\n"
		"  --json             print the answer as JSON\n"
		"exit status: 0 ok, 1 answer with an error status, 2 timeout, 3 usage or I/O error\n");
}

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end != '\0' || text[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct client_options *opt)
{
	enum { O_ADDR = 256, O_PORT, O_ID, O_MODEL, O_OP, O_TIMEOUT, O_TRACE, O_JSON, O_HELP };
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, O_ADDR },
		{ "port", required_argument, NULL, O_PORT },
		{ "id", required_argument, NULL, O_ID },
		{ "model", required_argument, NULL, O_MODEL },
		{ "op", required_argument, NULL, O_OP },
		{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
		{ "trace", no_argument, NULL, O_TRACE },
		{ "json", no_argument, NULL, O_JSON },
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
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_ADDR: opt->addr = optarg; break;
		case O_PORT:
			if (parse_u64(optarg, 65535, &v) || v == 0)
				goto bad;
			opt->port = (uint16_t)v;
			break;
		case O_ID:
			if (parse_u64(optarg, UINT64_MAX, &opt->id))
				goto bad;
			break;
		case O_MODEL: opt->model = optarg; break;
		case O_OP: opt->op = optarg; break;
		case O_TIMEOUT:
			if (parse_u64(optarg, 3600000, &v) || v == 0)
				goto bad;
			opt->timeout_ms = (uint32_t)v;
			break;
		case O_TRACE: opt->trace = 1; break;
		case O_JSON: opt->json = 1; break;
		case O_HELP: usage(stdout); exit(EXIT_OK);
		default: usage(stderr); return -EINVAL;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (opt->token_count == ZH_TOKENS_MAX) {
			fprintf(stderr, "zerohop-client: at most %u tokens\n", ZH_TOKENS_MAX);
			return -EINVAL;
		}
		if (parse_u64(argv[i], UINT32_MAX, &v)) {
			fprintf(stderr, "zerohop-client: token '%s' is not a uint32\n", argv[i]);
			return -EINVAL;
		}
		opt->tokens[opt->token_count++] = (uint32_t)v;
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
	uint32_t entries = 2 + (opt->model != NULL) + (opt->op != NULL) + (opt->trace != 0);

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
	pack_key(&pk, "tokens");
	msgpack_pack_array(&pk, opt->token_count);
	for (uint32_t i = 0; i < opt->token_count; i++)
		msgpack_pack_uint32(&pk, opt->tokens[i]);
}

/* Print a msgpack object as JSON (strings are printed raw between quotes, escaping " and \). */
static void print_json(FILE *out, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: fputs("null", out); break;
	case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", out); break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(out, "%" PRIu64, o->via.u64); break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(out, "%" PRId64, o->via.i64); break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: fprintf(out, "%.9g", o->via.f64); break;
	case MSGPACK_OBJECT_STR:
		fputc('"', out);
		for (uint32_t i = 0; i < o->via.str.size; i++) {
			char ch = o->via.str.ptr[i];
			if (ch == '"' || ch == '\\')
				fputc('\\', out);
			if ((unsigned char)ch < 0x20)
				fprintf(out, "\\u%04x", ch);
			else
				fputc(ch, out);
		}
		fputc('"', out);
		break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', out);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputs(", ", out);
			print_json(out, &o->via.array.ptr[i]);
		}
		fputc(']', out);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', out);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				fputs(", ", out);
			print_json(out, &o->via.map.ptr[i].key);
			fputs(": ", out);
			print_json(out, &o->via.map.ptr[i].val);
		}
		fputc('}', out);
		break;
	default: fputs("\"<unsupported>\"", out); break;
	}
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

/* Print the answer; returns the exit status it deserves. */
static int print_answer(const uint8_t *buf, uint32_t size, const struct client_options *opt)
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
	if (opt->json) {
		print_json(stdout, &msg.data);
		fputc('\n', stdout);
	} else {
		printf("status %" PRIu64 " (%s)\n", status, status_name(status));
		for (uint32_t i = 0; i < msg.data.via.map.size; i++) {
			const msgpack_object_kv *kv = &msg.data.via.map.ptr[i];
			if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 6 &&
			    memcmp(kv->key.via.str.ptr, "status", 6) == 0)
				continue;
			print_json(stdout, &kv->key);
			fputs(": ", stdout);
			print_json(stdout, &kv->val);
			fputc('\n', stdout);
		}
	}
	rc = status == ZH_STATUS_OK ? EXIT_OK : EXIT_STATUS;
out:
	msgpack_unpacked_destroy(&msg);
	return rc;
}

int main(int argc, char **argv)
{
	struct client_options opt = { 0 };
	struct sockaddr_in to = { .sin_family = AF_INET };
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
	rc = print_answer(answer, (uint32_t)n, &opt);
out:
	if (fd >= 0)
		close(fd);
	msgpack_sbuffer_destroy(&sbuf);
	return rc;
}
