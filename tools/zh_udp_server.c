/* SPDX-License-Identifier: MIT */
/*
 * zerohop-udp-echo: the wire protocol (docs/PROTOCOL.md) answered by a plain kernel UDP socket, with
 * the built-in `echo` model: the fair kernel baseline for the latency benchmark
 * (tests/bench/bench_latency.sh). Requests go through the same device-side code as in zerohopd
 * (krn_serve_request: the bounded decoder, the models table, the answer encoder), so the answers are
 * byte for byte the ones the appliance sends; only the network path differs.
 *
 *   --busy-poll  a non-blocking recvmmsg loop that never sleeps (one core at 100%), the counterpart of
 *                zerohopd's polling lcore;
 *   (default)    a blocking recvmmsg, woken by the kernel for each burst.
 *
 * Datagrams larger than a request may be (1472 bytes) are answered `too_large` with a nil id, as the
 * appliance's rx lcore does. The server binds only to 198.18.0.0/15 or 127.0.0.0/8 addresses, stops
 * on SIGINT or SIGTERM (or after --duration-s) and prints its counters as one JSON line, also on
 * SIGUSR1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "krn_request.h"
#include "krn_serve.h"
#include "zh_proto.h"
#include "zh_cli.h"

#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2

#define BATCH_DEFAULT 32u
#define BATCH_MAX 64u
/* Larger than a request may be, so that an oversized one is seen whole enough to be refused. */
#define RX_BUF_BYTES 2048u
#define SOCK_BUF_BYTES (4 << 20)
/* A blocking receive wakes at least this often to see a stop request or the deadline. */
#define BLOCK_WAKE_US 100000
#define DURATION_DEFAULT_S 3600u
#define DURATION_MAX_S 86400u
#define NS_PER_S 1000000000ull

struct server_options {
	struct sockaddr_in bind_addr;
	const char *bind_text;
	int busy_poll;
	uint32_t batch;
	int cpu;                   /* -1: not pinned */
	uint64_t duration_ns;
	uint32_t model_count;
	const char *model_names[KRN_MODELS_MAX];
};

struct server_counters {
	uint64_t requests;
	uint64_t answers;
	uint64_t too_large;
	uint64_t send_errors;
	uint64_t empty_polls;
	uint64_t status[ZH_STATUS_COUNT];
};

/* Everything the loop touches, allocated once. */
struct server {
	const struct server_options *opt;
	int fd;
	struct krn_models models;
	struct krn_scratch scratch;
	struct server_counters c;
	struct mmsghdr rx_msgs[BATCH_MAX];
	struct mmsghdr tx_msgs[BATCH_MAX];
	struct iovec rx_iov[BATCH_MAX];
	struct iovec tx_iov[BATCH_MAX];
	struct sockaddr_in peers[BATCH_MAX];
	uint8_t rx_buf[BATCH_MAX][RX_BUF_BYTES];
	uint8_t tx_buf[BATCH_MAX][ZH_ANS_MAX_BYTES];
};

static volatile sig_atomic_t quit_signal;
static volatile sig_atomic_t stats_signal;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		stats_signal = 1;
	else
		quit_signal = sig;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohop-udp-echo [options]\n"
		"  --bind A.B.C.D     address to answer on (default 198.18.0.1); only 198.18.0.0/15 and 127.0.0.0/8\n"
		"  --port N           UDP port (default 9000)\n"
		"  --busy-poll        spin on a non-blocking receive instead of sleeping in it\n"
		"  --batch N          datagrams per recvmmsg/sendmmsg (default %u, max %u)\n"
		"  --cpu N            pin the server to this core\n"
		"  --model NAME       serve the echo model under NAME; repeat for more, the first is the default\n"
		"                     (default: echo)\n"
		"  --duration-s S     stop after S seconds (default %u, max %u)\n"
		"  --help\n",
		BATCH_DEFAULT, BATCH_MAX, DURATION_DEFAULT_S, DURATION_MAX_S);
}

static int parse_one(int c, const char *arg, struct server_options *opt)
{
	uint32_t v;

	switch (c) {
	case 'b': opt->bind_text = arg; return 0;
	case 'p':
		if (zh_cli_parse_u32(arg, 1, 65535, &v))
			return -EINVAL;
		opt->bind_addr.sin_port = htons((uint16_t)v);
		return 0;
	case 'B': opt->busy_poll = 1; return 0;
	case 'n': return zh_cli_parse_u32(arg, 1, BATCH_MAX, &opt->batch);
	case 'c':
		if (zh_cli_parse_u32(arg, 0, CPU_SETSIZE - 1, &v))
			return -EINVAL;
		opt->cpu = (int)v;
		return 0;
	case 'm':
		if (opt->model_count == KRN_MODELS_MAX || strlen(arg) == 0 || strlen(arg) > ZH_MODEL_NAME_MAX)
			return -EINVAL;
		opt->model_names[opt->model_count++] = arg;
		return 0;
	case 'd':
		if (zh_cli_parse_u32(arg, 1, DURATION_MAX_S, &v))
			return -EINVAL;
		opt->duration_ns = v * NS_PER_S;
		return 0;
	default: return -EINVAL;
	}
}

static int parse_args(int argc, char **argv, struct server_options *opt)
{
	static const struct option longopts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "busy-poll", no_argument, NULL, 'B' },
		{ "batch", required_argument, NULL, 'n' },
		{ "cpu", required_argument, NULL, 'c' },
		{ "model", required_argument, NULL, 'm' },
		{ "duration-s", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, idx = 0;

	memset(opt, 0, sizeof(*opt));
	opt->bind_addr.sin_family = AF_INET;
	opt->bind_addr.sin_port = htons(9000);
	opt->bind_text = "198.18.0.1";
	opt->batch = BATCH_DEFAULT;
	opt->cpu = -1;
	opt->duration_ns = DURATION_DEFAULT_S * NS_PER_S;
	while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(EXIT_OK);
		}
		if (c == '?') {
			usage(stderr);
			return -EINVAL;
		}
		if (parse_one(c, optarg, opt)) {
			fprintf(stderr, "zerohop-udp-echo: bad value '%s' for --%s\n", optarg ? optarg : "",
				longopts[idx].name);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "zerohop-udp-echo: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (opt->model_count == 0)
		opt->model_names[opt->model_count++] = "echo";
	if (inet_pton(AF_INET, opt->bind_text, &opt->bind_addr.sin_addr) != 1 ||
	    !zh_cli_dest_allowed(opt->bind_addr.sin_addr)) {
		fprintf(stderr, "zerohop-udp-echo: refusing to bind to '%s': only 198.18.0.0/15 and "
			"127.0.0.0/8 addresses\n", opt->bind_text);
		return -EINVAL;
	}
	return 0;
}

/* The models table: every name is the echo model, the first the default. Returns 0 or -EINVAL. */
static int models_setup(struct server *srv)
{
	const struct server_options *opt = srv->opt;

	memset(&srv->models, 0, sizeof(srv->models));
	for (uint32_t i = 0; i < opt->model_count; i++) {
		struct krn_model *m = &srv->models.models[i];

		for (uint32_t k = 0; k < i; k++) {
			if (strcmp(opt->model_names[k], opt->model_names[i]) == 0) {
				fprintf(stderr, "zerohop-udp-echo: model name '%s' given twice\n", opt->model_names[i]);
				return -EINVAL;
			}
		}
		snprintf(m->name, sizeof(m->name), "%s", opt->model_names[i]);
		m->arch = KRN_ARCH_ECHO;
	}
	srv->models.count = opt->model_count;
	srv->models.default_idx = 0;
	/* The echo model keeps no run state. */
	srv->scratch.model_state = NULL;
	srv->scratch.model_state_floats = 0;
	return 0;
}

static int socket_setup(struct server *srv)
{
	const struct server_options *opt = srv->opt;
	struct timeval rcv_timeout = { .tv_sec = 0, .tv_usec = BLOCK_WAKE_US };
	int buf_bytes = SOCK_BUF_BYTES, one = 1, err;

	srv->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (srv->fd < 0)
		return -errno;
	/* Root may pass net.core.rmem_max; otherwise the kernel caps the plain request. */
	if (setsockopt(srv->fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf_bytes, sizeof(buf_bytes)))
		setsockopt(srv->fd, SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof(buf_bytes));
	if (setsockopt(srv->fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf_bytes, sizeof(buf_bytes)))
		setsockopt(srv->fd, SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof(buf_bytes));
	if (setsockopt(srv->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(srv->fd, SOL_SOCKET, SO_RCVTIMEO, &rcv_timeout, sizeof(rcv_timeout)) ||
	    bind(srv->fd, (const struct sockaddr *)&opt->bind_addr, sizeof(opt->bind_addr))) {
		err = -errno;
		close(srv->fd);
		srv->fd = -1;
		return err;
	}
	for (uint32_t i = 0; i < BATCH_MAX; i++) {
		srv->rx_iov[i].iov_base = srv->rx_buf[i];
		srv->rx_iov[i].iov_len = RX_BUF_BYTES;
		srv->rx_msgs[i].msg_hdr.msg_iov = &srv->rx_iov[i];
		srv->rx_msgs[i].msg_hdr.msg_iovlen = 1;
		srv->tx_iov[i].iov_base = srv->tx_buf[i];
		srv->tx_msgs[i].msg_hdr.msg_iov = &srv->tx_iov[i];
		srv->tx_msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

/* Answer datagram i of the batch into tx slot i, addressed to its sender. */
static void answer_one(struct server *srv, uint32_t i)
{
	struct mmsghdr *rx = &srv->rx_msgs[i];
	uint32_t size = rx->msg_len;
	uint16_t status;

	srv->c.requests++;
	if (size > ZH_REQ_MAX_BYTES || (rx->msg_hdr.msg_flags & MSG_TRUNC)) {
		/* The appliance's rx lcore refuses these from the headers alone, with a nil id. */
		srv->c.too_large++;
		status = ZH_STATUS_TOO_LARGE;
		size = krn_answer_encode_error(srv->tx_buf[i], ZH_ANS_MAX_BYTES, 0, 0, ZH_STATUS_TOO_LARGE,
					       "request larger than 1472 bytes");
	} else {
		size = krn_serve_request(&srv->models, srv->rx_buf[i], size, srv->tx_buf[i], ZH_ANS_MAX_BYTES,
					 &srv->scratch, NULL, &status);
	}
	srv->c.status[status < ZH_STATUS_COUNT ? status : ZH_STATUS_INTERNAL]++;
	srv->tx_iov[i].iov_len = size;
	srv->tx_msgs[i].msg_hdr.msg_name = &srv->peers[i];
	srv->tx_msgs[i].msg_hdr.msg_namelen = rx->msg_hdr.msg_namelen;
}

/* Send the batch's answers; a full socket buffer drops the rest (UDP would anyway). */
static void send_answers(struct server *srv, uint32_t count)
{
	uint32_t done = 0;

	while (done < count) {
		int n = sendmmsg(srv->fd, &srv->tx_msgs[done], count - done, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* This message cannot go (its sender vanished, or no buffer): skip it alone. */
			srv->c.send_errors++;
			done++;
			continue;
		}
		done += (uint32_t)n;
		srv->c.answers += (uint64_t)n;
	}
}

/* One receive, one batch of answers. Returns datagrams served, 0 if none, or -errno. */
static int serve_once(struct server *srv, int flags)
{
	int n;

	for (uint32_t i = 0; i < srv->opt->batch; i++) {
		srv->rx_msgs[i].msg_hdr.msg_name = &srv->peers[i];
		srv->rx_msgs[i].msg_hdr.msg_namelen = sizeof(srv->peers[i]);
	}
	n = recvmmsg(srv->fd, srv->rx_msgs, srv->opt->batch, flags, NULL);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++)
		answer_one(srv, (uint32_t)i);
	send_answers(srv, (uint32_t)n);
	return n;
}

static void print_stats(const struct server *srv)
{
	static const char *const status_keys[] = {
#define ZH_X(name, code, text) "status_" text,
		ZH_STATUS_LIST(ZH_X)
#undef ZH_X
	};

	printf("zerohop-udp-echo: stats {\"requests\": %" PRIu64 ", \"answers\": %" PRIu64 ", \"too_large\": %" PRIu64
	       ", \"send_errors\": %" PRIu64 ", \"empty_polls\": %" PRIu64, srv->c.requests, srv->c.answers,
	       srv->c.too_large, srv->c.send_errors, srv->c.empty_polls);
	for (uint32_t s = 0; s < ZH_STATUS_COUNT; s++)
		printf(", \"%s\": %" PRIu64, status_keys[s], srv->c.status[s]);
	printf("}\n");
	fflush(stdout);
}

/* The loop: spin on a non-blocking receive, or sleep in a blocking one. Returns 0 or -errno. */
static int serve(struct server *srv)
{
	const int flags = srv->opt->busy_poll ? MSG_DONTWAIT : MSG_WAITFORONE;
	const uint64_t deadline_ns = now_ns() + srv->opt->duration_ns;
	uint32_t polls = 0;

	while (!quit_signal) {
		int n = serve_once(srv, flags);

		if (n < 0)
			return n;
		if (n == 0)
			srv->c.empty_polls++;
		if (stats_signal) {
			stats_signal = 0;
			print_stats(srv);
		}
		/* The clock every 1024 polls while spinning: it is cheap, but not free. */
		if ((!srv->opt->busy_poll || n == 0 || (++polls & 1023u) == 0) && now_ns() >= deadline_ns)
			break;
	}
	return 0;
}

static int pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int main(int argc, char **argv)
{
	static struct server srv;
	static struct server_options opt;
	struct sigaction sa = { .sa_handler = on_signal };
	int rc;

	if (parse_args(argc, argv, &opt))
		return EXIT_USAGE;
	srv.opt = &opt;
	srv.fd = -1;
	if (models_setup(&srv))
		return EXIT_USAGE;
	rc = pin(opt.cpu);
	if (rc) {
		fprintf(stderr, "zerohop-udp-echo: pinning to cpu %d: %s\n", opt.cpu, strerror(-rc));
		return EXIT_ERROR;
	}
	rc = socket_setup(&srv);
	if (rc) {
		fprintf(stderr, "zerohop-udp-echo: %s:%u: %s\n", opt.bind_text, ntohs(opt.bind_addr.sin_port),
			strerror(-rc));
		return EXIT_ERROR;
	}
	/* No SA_RESTART: a signal ends a blocking receive at once. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	printf("zerohop-udp-echo: ready on %s:%u (%s, batch %u, model %s)\n", opt.bind_text,
	       ntohs(opt.bind_addr.sin_port), opt.busy_poll ? "busy-poll" : "blocking", opt.batch, opt.model_names[0]);
	fflush(stdout);
	rc = serve(&srv);
	if (rc)
		fprintf(stderr, "zerohop-udp-echo: receive: %s\n", strerror(-rc));
	print_stats(&srv);
	close(srv.fd);
	printf("zerohop-udp-echo: stopped\n");
	return rc ? EXIT_ERROR : EXIT_OK;
}
