/* SPDX-License-Identifier: MIT */
/*
 * zerohop-bench: a load generator for the zerohop wire protocol (docs/PROTOCOL.md) over kernel UDP
 * sockets. One pinned thread per core asked, each with its own connected socket (so its own source
 * port), sends requests in sendmmsg batches and takes answers in recvmmsg batches:
 *
 *   closed   every thread keeps --outstanding requests in flight;
 *   open     requests leave on a fixed schedule, --rate per second in total;
 *   poisson  the same rate, with exponential gaps from a seeded generator.
 *
 * In open and poisson modes a request's latency runs from the time the schedule said it should leave,
 * not from when it left: a client that falls behind (or a server that stalls it) shows up in the
 * latency instead of vanishing from it (coordinated omission).
 *
 * Ids carry the thread (top 8 bits), a per-run salt (next 8) and a sequence number (low 48), so an
 * answer finds its request in the thread's slot table by its sequence number. The rx lcore answers
 * `busy` and `too_large` with a nil id; such an answer is taken for the newest request of the thread
 * still waiting, which is the one most likely to have met a full ring.
 *
 * Every run is bounded by --count and by --duration-s, plus the --timeout-ms grace for the last
 * answers. Destinations are limited to the benchmarking range 198.18.0.0/15 (the dev network) and the
 * loopback; anything else is refused with exit status 2.
 *
 * --dpdk drives the appliance through a DPDK port instead (tools/zh_bench_dpdk.c), for when the client's
 * kernel UDP stack is the bottleneck: EAL arguments follow `--`, one thread polls one queue, and the
 * engine below is the same (requests, matching, modes, report); only how datagrams move and the clock
 * (the TSC) differ, through `struct bench_io` and `now_ns`, both fixed at start-up. The EAL is never
 * started without --no-pci (put first in what the EAL reads, too), so that no run probes this machine's NICs.
 *
 * Exit status: 0 the run finished (lost answers are reported, not failed), 1 an I/O error or a failed
 * --hgrm/--plot, 2 a usage error, a refused destination or source, or EAL arguments without --no-pci.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "krn_msgpack.h"
#include "zh_proto.h"
#include "zh_cli.h"
#include "zh_hist.h"
#include "zh_bench_dpdk.h"

#define EXIT_RUN_OK 0
#define EXIT_RUN_ERROR 1
#define EXIT_USAGE 2

#define THREADS_MAX 64u
#define COUNT_DEFAULT 100000ull
#define COUNT_MAX 100000000ull
#define DURATION_DEFAULT_S 10u
#define DURATION_MAX_S 3600u
#define TIMEOUT_DEFAULT_MS 1000u
#define TIMEOUT_MAX_MS 60000u
#define OUTSTANDING_MAX 4096u
#define RATE_MAX_RPS 10000000.0
#define BATCH_DEFAULT 32u
#define BATCH_MAX 64u
#define WARMUP_MAX 100000u
#define VOCAB_DEFAULT 512u
/* Larger than any answer (ZH_ANS_MAX_BYTES), so that a datagram that is not one shows as truncated. */
#define RX_BUF_BYTES 2048u
/* Slot table entries per thread: at least the requests one timeout can leave waiting. */
#define SLOTS_MIN (1u << 12)
#define SLOTS_MAX (1u << 22)
/* Socket buffers: room for a burst of an open-loop run at full rate. */
#define SOCK_BUF_BYTES (4 << 20)
/* A blocking wait wakes at least this often to expire requests and to see the deadline. */
#define BLOCK_WAKE_NS 10000000ull
/* A nil-id answer looks this far back for the request it answers. */
#define NIL_ID_SEARCH_MAX 4096u
/* Warm-up gets at most this long, whatever --warmup asks. */
#define WARMUP_LIMIT_NS 10000000000ull
/* Ids: thread + 1 in bits 56..63, the phase salt in 48..55, the sequence number in 0..47. */
#define ID_SEQ_BITS 48u
#define ID_SEQ_MASK ((UINT64_C(1) << ID_SEQ_BITS) - 1u)
#define NS_PER_S 1000000000ull
/* HdrHistogram's default resolution of the percentile walk, for the plot as for the .hgrm. */
#define PLOT_TICKS_PER_HALF 5u
/* --dpdk: source ports [SRC_PORT_FIRST, + --src-ports), and how long ARP may take to find the MAC. */
#define SRC_PORT_FIRST 49152u
#define SRC_PORTS_DEFAULT 64u
#define ARP_WAIT_MS 3000u

ZH_STATIC_ASSERT(COUNT_MAX < ID_SEQ_MASK, "sequence numbers never wrap into the salt");
ZH_STATIC_ASSERT(THREADS_MAX < 255u, "thread index + 1 fits the id's top byte");

enum bench_mode { MODE_CLOSED = 0, MODE_OPEN, MODE_POISSON, MODE_COUNT };
enum bench_wait { WAIT_SPIN = 0, WAIT_BLOCK };

static const char *const mode_names[MODE_COUNT] = { "closed", "open", "poisson" };

struct bench_options {
	struct sockaddr_in dst;
	const char *addr_text;
	enum bench_mode mode;
	enum bench_wait wait;
	uint32_t threads;
	uint32_t cpu_count;           /* entries in cpus: --cpus, or the allowed cpus in order */
	int cpus[THREADS_MAX];
	uint32_t outstanding;         /* closed: requests in flight per thread */
	double rate_rps;              /* open, poisson: requests per second, all threads together */
	uint64_t count;               /* requests, all threads together */
	uint64_t duration_ns;         /* the sending phase ends at the latest this long after start */
	uint64_t timeout_ns;          /* a request unanswered this long is lost */
	uint32_t batch;               /* messages per sendmmsg/recvmmsg */
	uint32_t warmup;              /* unrecorded round trips per thread before the run */
	uint64_t seed;
	const char *model;
	const char *op;
	uint32_t token_count;
	uint32_t tokens[ZH_TOKENS_MAX];
	uint32_t tokens_random;       /* >0: that many random ids per request instead of `tokens` */
	uint32_t vocab;
	uint32_t dense_count;
	float dense[ZH_DENSE_MAX];
	int json;
	const char *hgrm_path;
	const char *plot_path;
	const char *title;
	int dpdk;                     /* --dpdk: a DPDK port instead of kernel sockets */
	const char *src_text;         /* --dpdk: --src, this client's address */
	struct zh_bench_dpdk_config port_cfg;
	int eal_argc;                 /* --dpdk: the arguments after --, behind the program's name */
	char **eal_argv;
};

struct bench_counters {
	uint64_t sent;
	uint64_t answered;
	uint64_t lost;        /* unanswered after --timeout-ms, or at the end of the grace */
	uint64_t stray;       /* answers that matched no waiting request: late, duplicated, not ours */
	uint64_t malformed;   /* datagrams that were not one well-formed answer map */
	uint64_t send_retries;
	uint64_t icmp_errors; /* ECONNREFUSED: the destination port was closed at some point */
	uint64_t status[ZH_STATUS_COUNT + 1]; /* the last entry: codes this client does not know */
};

struct bench_thread;
/* Returns the intended send time of the request after the one at t->next_ns. */
typedef double (*bench_gap_fn)(struct bench_thread *t);

/* How a thread moves datagrams, fixed at start-up: kernel sockets or a DPDK port. `send` hands the
 * built batch over (what is not taken stays for the next call); `receive` takes at most one batch of
 * answers (`flags`: MSG_DONTWAIT, or MSG_WAITFORONE to block, sockets only). Both return >= 0 or -errno. */
struct bench_io {
	int (*send)(struct bench_thread *t, uint64_t now);
	int (*receive)(struct bench_thread *t, int flags);
};

/* One per thread, allocated once, touched by its thread only until it is joined. */
struct bench_thread {
	const struct bench_options *opt;
	uint32_t idx;
	int cpu;
	int fd;
	const struct bench_io *io;
	struct zh_bench_dpdk *port; /* --dpdk: the port this thread polls */
	uint64_t count;           /* requests this thread sends */
	uint64_t id_prefix;       /* the thread and salt bits of every id */
	uint64_t *slot_ns;        /* [slot_mask + 1] intended send time of a waiting seq, 0 if none */
	uint64_t slot_mask;
	uint64_t rng;             /* xorshift64* state: random tokens and poisson gaps */
	double gap_ns;            /* open: the gap; poisson: the mean gap (per thread) */
	double next_ns;           /* open, poisson: intended time of the next request */
	bench_gap_fn next_gap;
	uint64_t head_seq;        /* the next seq to build */
	uint64_t tail_seq;        /* no seq below this one is waiting */
	uint64_t waiting;         /* built, and neither answered nor lost */
	uint32_t tx_first;        /* built messages [tx_first, tx_count) the kernel has not taken yet */
	uint32_t tx_count;
	uint64_t last_send_ns;
	uint64_t last_answer_ns;
	int error;                /* -errno that stopped this thread, 0 if none */
	struct bench_counters c;
	struct zh_hist hist;
	struct mmsghdr tx_msgs[BATCH_MAX];
	struct mmsghdr rx_msgs[BATCH_MAX];
	struct iovec tx_iov[BATCH_MAX];
	struct iovec rx_iov[BATCH_MAX];
	uint8_t tx_buf[BATCH_MAX][ZH_REQ_MAX_BYTES];
	uint8_t rx_buf[BATCH_MAX][RX_BUF_BYTES];
	pthread_t tid;
} ZH_ALIGNED(ZH_CACHE_LINE_SIZE);

/* What the threads share: the start line and the start time. */
struct bench_start {
	pthread_barrier_t warmed_up;
	pthread_barrier_t go;
	uint64_t start_ns; /* written by main between the two barriers */
	uint8_t salt;
};

static struct bench_start start_line;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* The clock of every timestamp: CLOCK_MONOTONIC, or the TSC with --dpdk (set once, before any thread). */
static uint64_t (*now_ns)(void) = now_mono_ns;

static uint64_t rng_next(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545F4914F6CDD1Dull;
}

/* splitmix64: spreads a small seed over the whole state, never 0 (xorshift's fixed point). */
static uint64_t rng_seed(uint64_t seed)
{
	uint64_t z = seed + 0x9E3779B97F4A7C15ull;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return z ? z : 1;
}

static const char *status_name(uint32_t code)
{
	static const char *const names[] = {
#define ZH_X(name, code, text) text,
		ZH_STATUS_LIST(ZH_X)
#undef ZH_X
	};
	return code < ZH_ARRAY_SIZE(names) ? names[code] : "other";
}

/* ---- options ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohop-bench [options]\n"
		"       zerohop-bench --dpdk --src A.B.C.D [options] -- EAL-ARGS\n"
		"  --addr A.B.C.D       destination (default 198.18.0.1); only 198.18.0.0/15 and 127.0.0.0/8\n"
		"  --port N             destination UDP port (default 9000)\n"
		"  --threads N          sending threads, one socket and one pinned core each (default 1, max %u)\n"
		"  --cpus LIST          cores for the threads, comma-separated (default: the allowed cores in order)\n"
		"  --mode MODE          closed, open or poisson (default closed)\n"
		"  --outstanding N      closed: requests in flight per thread (default 1, max %u)\n"
		"  --rate R             open, poisson: requests per second, all threads together\n"
		"  --count N            requests in all (default %llu, max %llu)\n"
		"  --duration-s S       the sending phase lasts at most S seconds (default %u, max %u)\n"
		"  --timeout-ms N       a request unanswered this long is lost; also the final grace (default %u)\n"
		"  --batch N            messages per sendmmsg/recvmmsg (default %u, max %u)\n"
		"  --wait MODE          spin (non-blocking receive loop, the default) or block\n"
		"  --warmup N           unrecorded round trips per thread before the run (default 0)\n"
		"  --seed N             seed of random tokens and poisson gaps (default 1)\n"
		"  --model NAME         the request's model (default: none, the appliance's default)\n"
		"  --op OP              the request's op (default: none, the model's default)\n"
		"  --tokens LIST        token ids, comma-separated (default 1,2,3)\n"
		"  --tokens-random N    N random token ids per request, below --vocab (default %u)\n"
		"  --dense LIST         dense features, comma-separated numbers\n"
		"  --json               print the results as one JSON object\n"
		"  --hgrm FILE          write the latency distribution as HdrHistogram text (.hgrm, µs)\n"
		"  --plot FILE.png      draw the percentile plot with gnuplot\n"
		"  --title TEXT         the plot's title\n"
		"  --dpdk               send through a DPDK port, one thread polling one queue; the EAL arguments\n"
		"                       follow --, must hold --no-pci and name the port, e.g.\n"
		"                       -- --no-pci --no-huge -m 256 --vdev net_af_xdp0,iface=zh0c -l 0 (add\n"
		"                       --no-shconf --no-telemetry to leave no runtime directory behind)\n"
		"  --src A.B.C.D        --dpdk: this client's address (only 198.18.0.0/15 and 127.0.0.0/8)\n"
		"  --dst-mac MAC        --dpdk: the destination's MAC (default: asked with ARP, %u ms at most)\n"
		"  --src-ports N        --dpdk: UDP source ports %u.. used in turn, to spread flows (default %u)\n"
		"  --self-test          check the histogram's error bound and exit\n"
		"exit status: 0 finished, 1 I/O error or failed output, 2 usage error, refused destination or\n"
		"             source, or EAL arguments without --no-pci\n",
		THREADS_MAX, OUTSTANDING_MAX, COUNT_DEFAULT, COUNT_MAX, DURATION_DEFAULT_S, DURATION_MAX_S,
		TIMEOUT_DEFAULT_MS, BATCH_DEFAULT, BATCH_MAX, VOCAB_DEFAULT, ARP_WAIT_MS, SRC_PORT_FIRST,
		SRC_PORTS_DEFAULT);
}

/* A comma-separated list of uint32 (an empty text is an empty list). */
static int parse_u32_list(const char *text, uint32_t max_count, uint64_t max_value, uint32_t *out,
			  uint32_t *count)
{
	const char *p = text;

	*count = 0;
	while (*p) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(p, &end, 10);
		if (errno || end == p || *p == '-' || v > max_value || *count == max_count ||
		    (*end != ',' && *end != '\0'))
			return -EINVAL;
		out[(*count)++] = (uint32_t)v;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

static int parse_dense(const char *text, struct bench_options *opt)
{
	const char *p = text;

	opt->dense_count = 0;
	while (*p) {
		char *end;
		float v;

		errno = 0;
		v = strtof(p, &end);
		if (errno || end == p || !isfinite(v) || opt->dense_count == ZH_DENSE_MAX ||
		    (*end != ',' && *end != '\0'))
			return -EINVAL;
		opt->dense[opt->dense_count++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/* --cpus: each one must be in this process's affinity mask. */
static int parse_cpus(const char *text, struct bench_options *opt)
{
	uint32_t list[THREADS_MAX], count;
	cpu_set_t allowed;

	if (parse_u32_list(text, THREADS_MAX, CPU_SETSIZE - 1, list, &count) || count == 0)
		return -EINVAL;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return -errno;
	for (uint32_t i = 0; i < count; i++) {
		if (!CPU_ISSET((int)list[i], &allowed))
			return -EINVAL;
		opt->cpus[i] = (int)list[i];
	}
	opt->cpu_count = count;
	return 0;
}

static int default_cpus(struct bench_options *opt)
{
	cpu_set_t allowed;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return -errno;
	opt->cpu_count = 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && opt->cpu_count < THREADS_MAX; cpu++)
		if (CPU_ISSET(cpu, &allowed))
			opt->cpus[opt->cpu_count++] = cpu;
	return opt->cpu_count ? 0 : -ENODEV;
}

enum {
	O_ADDR = 256, O_PORT, O_THREADS, O_CPUS, O_MODE, O_OUTSTANDING, O_RATE, O_COUNT, O_DURATION,
	O_TIMEOUT, O_BATCH, O_WAIT, O_WARMUP, O_SEED, O_MODEL, O_OP, O_TOKENS, O_TOKENS_RANDOM, O_VOCAB,
	O_DENSE, O_JSON, O_HGRM, O_PLOT, O_TITLE, O_DPDK, O_SRC, O_DST_MAC, O_SRC_PORTS, O_SELF_TEST, O_HELP
};

/* In the order of the enum: a bad value's message names longopts[c - O_ADDR]. */
static const struct option longopts[] = {
	{ "addr", required_argument, NULL, O_ADDR },
	{ "port", required_argument, NULL, O_PORT },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "cpus", required_argument, NULL, O_CPUS },
	{ "mode", required_argument, NULL, O_MODE },
	{ "outstanding", required_argument, NULL, O_OUTSTANDING },
	{ "rate", required_argument, NULL, O_RATE },
	{ "count", required_argument, NULL, O_COUNT },
	{ "duration-s", required_argument, NULL, O_DURATION },
	{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
	{ "batch", required_argument, NULL, O_BATCH },
	{ "wait", required_argument, NULL, O_WAIT },
	{ "warmup", required_argument, NULL, O_WARMUP },
	{ "seed", required_argument, NULL, O_SEED },
	{ "model", required_argument, NULL, O_MODEL },
	{ "op", required_argument, NULL, O_OP },
	{ "tokens", required_argument, NULL, O_TOKENS },
	{ "tokens-random", required_argument, NULL, O_TOKENS_RANDOM },
	{ "vocab", required_argument, NULL, O_VOCAB },
	{ "dense", required_argument, NULL, O_DENSE },
	{ "json", no_argument, NULL, O_JSON },
	{ "hgrm", required_argument, NULL, O_HGRM },
	{ "plot", required_argument, NULL, O_PLOT },
	{ "title", required_argument, NULL, O_TITLE },
	{ "dpdk", no_argument, NULL, O_DPDK },
	{ "src", required_argument, NULL, O_SRC },
	{ "dst-mac", required_argument, NULL, O_DST_MAC },
	{ "src-ports", required_argument, NULL, O_SRC_PORTS },
	{ "self-test", no_argument, NULL, O_SELF_TEST },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

static int parse_mode(const char *text, enum bench_mode *mode)
{
	for (uint32_t m = 0; m < MODE_COUNT; m++) {
		if (strcmp(text, mode_names[m]) == 0) {
			*mode = (enum bench_mode)m;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_rate(const char *text, double *out)
{
	double v;

	if (zh_cli_parse_double(text, 0.0, RATE_MAX_RPS, &v) || v <= 0.0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* One option's value into opt. Returns 0, 1 for --self-test, or -EINVAL. */
static int parse_one(int c, const char *arg, struct bench_options *opt, int *given_rate, int *given_outstanding)
{
	uint64_t v;
	uint32_t n;

	switch (c) {
	case O_ADDR: opt->addr_text = arg; return 0;
	case O_PORT:
		if (zh_cli_parse_u64(arg, 1, 65535, &v))
			return -EINVAL;
		opt->dst.sin_port = htons((uint16_t)v);
		return 0;
	case O_THREADS: return zh_cli_parse_u32(arg, 1, THREADS_MAX, &opt->threads);
	case O_CPUS: return parse_cpus(arg, opt) ? -EINVAL : 0;
	case O_MODE: return parse_mode(arg, &opt->mode);
	case O_OUTSTANDING: *given_outstanding = 1; return zh_cli_parse_u32(arg, 1, OUTSTANDING_MAX, &opt->outstanding);
	case O_RATE: *given_rate = 1; return parse_rate(arg, &opt->rate_rps);
	case O_COUNT: return zh_cli_parse_u64(arg, 1, COUNT_MAX, &opt->count);
	case O_DURATION:
		if (zh_cli_parse_u64(arg, 1, DURATION_MAX_S, &v))
			return -EINVAL;
		opt->duration_ns = v * NS_PER_S;
		return 0;
	case O_TIMEOUT:
		if (zh_cli_parse_u64(arg, 1, TIMEOUT_MAX_MS, &v))
			return -EINVAL;
		opt->timeout_ns = v * 1000000ull;
		return 0;
	case O_BATCH: return zh_cli_parse_u32(arg, 1, BATCH_MAX, &opt->batch);
	case O_WAIT:
		if (strcmp(arg, "spin") && strcmp(arg, "block"))
			return -EINVAL;
		opt->wait = arg[0] == 's' ? WAIT_SPIN : WAIT_BLOCK;
		return 0;
	case O_WARMUP: return zh_cli_parse_u32(arg, 0, WARMUP_MAX, &opt->warmup);
	case O_SEED: return zh_cli_parse_u64(arg, 0, UINT64_MAX, &opt->seed);
	case O_MODEL: opt->model = arg; return strlen(arg) <= ZH_MODEL_NAME_MAX ? 0 : -EINVAL;
	case O_OP: opt->op = arg; return 0;
	case O_TOKENS: return parse_u32_list(arg, ZH_TOKENS_MAX, UINT32_MAX, opt->tokens, &opt->token_count);
	case O_TOKENS_RANDOM: return zh_cli_parse_u32(arg, 1, ZH_TOKENS_MAX, &opt->tokens_random);
	case O_VOCAB: return zh_cli_parse_u32(arg, 1, UINT32_MAX, &opt->vocab);
	case O_DENSE: return parse_dense(arg, opt);
	case O_JSON: opt->json = 1; return 0;
	case O_HGRM: opt->hgrm_path = arg; return 0;
	case O_PLOT: opt->plot_path = arg; return 0;
	case O_TITLE: opt->title = arg; return 0;
	case O_DPDK: opt->dpdk = 1; return 0;
	case O_SRC: opt->src_text = arg; return 0;
	case O_DST_MAC:
		opt->port_cfg.dst_mac_given = 1;
		return zh_bench_dpdk_parse_mac(arg, opt->port_cfg.dst_mac);
	case O_SRC_PORTS:
		if (zh_cli_parse_u32(arg, 1, 65536 - SRC_PORT_FIRST, &n))
			return -EINVAL;
		opt->port_cfg.src_port_count = (uint16_t)n;
		return 0;
	case O_SELF_TEST: return 1;
	default: return -EINVAL;
	}
}

/* --dpdk: one thread polls one queue, so nothing blocks and there is one thread; the frames need a
 * source address, and the EAL its arguments. */
static int check_dpdk_options(struct bench_options *opt)
{
	if (opt->threads != 1 || opt->wait != WAIT_SPIN) {
		fprintf(stderr, "zerohop-bench: --dpdk polls one port with one thread: no --threads, no --wait block\n");
		return -EINVAL;
	}
	if (!opt->src_text) {
		fprintf(stderr, "zerohop-bench: --dpdk needs --src (the client's address, e.g. devnet.sh env's CLIENT_IP)\n");
		return -EINVAL;
	}
	if (!opt->eal_argv) {
		fprintf(stderr, "zerohop-bench: --dpdk needs EAL arguments after --, e.g. "
			"-- --no-pci --no-huge -m 256 --vdev net_af_xdp0,iface=zh0c -l 0\n");
		return -EINVAL;
	}
	if (!opt->port_cfg.src_port_count)
		opt->port_cfg.src_port_count = SRC_PORTS_DEFAULT;
	opt->port_cfg.src_port_first = SRC_PORT_FIRST;
	opt->port_cfg.arp_wait_ms = ARP_WAIT_MS;
	return 0;
}

static int check_kernel_options(const struct bench_options *opt)
{
	if (opt->src_text || opt->port_cfg.dst_mac_given || opt->port_cfg.src_port_count) {
		fprintf(stderr, "zerohop-bench: --src, --dst-mac and --src-ports apply to --dpdk\n");
		return -EINVAL;
	}
	if (opt->eal_argv) {
		fprintf(stderr, "zerohop-bench: arguments after -- are the EAL's, for --dpdk\n");
		return -EINVAL;
	}
	return 0;
}

/* Relations between options, after all are read. */
static int check_options(struct bench_options *opt, int given_rate, int given_outstanding, int given_tokens)
{
	if (opt->mode == MODE_CLOSED && given_rate) {
		fprintf(stderr, "zerohop-bench: --rate applies to --mode open and poisson\n");
		return -EINVAL;
	}
	if (opt->mode != MODE_CLOSED && given_outstanding) {
		fprintf(stderr, "zerohop-bench: --outstanding applies to --mode closed\n");
		return -EINVAL;
	}
	if (opt->mode != MODE_CLOSED && !given_rate) {
		fprintf(stderr, "zerohop-bench: --mode %s needs --rate\n", mode_names[opt->mode]);
		return -EINVAL;
	}
	if (given_tokens && opt->tokens_random) {
		fprintf(stderr, "zerohop-bench: give --tokens or --tokens-random, not both\n");
		return -EINVAL;
	}
	if (!given_tokens && !opt->tokens_random) {
		opt->token_count = 3;
		opt->tokens[0] = 1, opt->tokens[1] = 2, opt->tokens[2] = 3;
	}
	if (opt->count < opt->threads) {
		fprintf(stderr, "zerohop-bench: --count is below --threads\n");
		return -EINVAL;
	}
	return opt->dpdk ? check_dpdk_options(opt) : check_kernel_options(opt);
}

/* Returns 0 to run, 1 for --self-test, or -EINVAL after saying why. */
static int parse_args(int argc, char **argv, struct bench_options *opt)
{
	int given_rate = 0, given_outstanding = 0, given_tokens = 0, self_test = 0, c, rc;

	memset(opt, 0, sizeof(*opt));
	opt->dst.sin_family = AF_INET;
	opt->dst.sin_port = htons(9000);
	opt->addr_text = "198.18.0.1";
	opt->threads = 1;
	opt->outstanding = 1;
	opt->count = COUNT_DEFAULT;
	opt->duration_ns = DURATION_DEFAULT_S * NS_PER_S;
	opt->timeout_ns = TIMEOUT_DEFAULT_MS * 1000000ull;
	opt->batch = BATCH_DEFAULT;
	opt->seed = 1;
	opt->vocab = VOCAB_DEFAULT;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == O_HELP) {
			usage(stdout);
			exit(EXIT_RUN_OK);
		}
		if (c < O_ADDR || c > O_HELP) {
			usage(stderr);
			return -EINVAL;
		}
		given_tokens |= c == O_TOKENS;
		rc = parse_one(c, optarg, opt, &given_rate, &given_outstanding);
		if (rc < 0) {
			fprintf(stderr, "zerohop-bench: bad value '%s' for --%s\n", optarg ? optarg : "",
				longopts[c - O_ADDR].name);
			return -EINVAL;
		}
		self_test |= rc == 1;
	}
	/* After `--` come the EAL's arguments. The EAL wants a program name first: the `--` slot of argv
	 * (ours to change) takes it. */
	if (optind > 1 && strcmp(argv[optind - 1], "--") == 0) {
		argv[optind - 1] = argv[0];
		opt->eal_argv = &argv[optind - 1];
		opt->eal_argc = argc - optind + 1;
	} else if (optind != argc) {
		fprintf(stderr, "zerohop-bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (self_test)
		return 1;
	if (check_options(opt, given_rate, given_outstanding, given_tokens))
		return -EINVAL;
	if (!opt->cpu_count && default_cpus(opt)) {
		fprintf(stderr, "zerohop-bench: cannot read this process's cpu affinity\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- requests and answers ---- */

/* Encode the request with this id into buf; returns its size, or 0 if it does not fit. */
static uint32_t encode_request(const struct bench_options *opt, uint64_t id, uint64_t *rng, uint8_t *buf)
{
	struct krn_mp_writer w;
	uint32_t token_count = opt->tokens_random ? opt->tokens_random : opt->token_count;

	krn_mp_writer_init(&w, buf, ZH_REQ_MAX_BYTES);
	krn_mp_put_map(&w, 2u + (opt->model != NULL) + (opt->op != NULL) + (opt->dense_count != 0));
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, id);
	if (opt->model) {
		krn_mp_put_cstr(&w, "model");
		krn_mp_put_cstr(&w, opt->model);
	}
	if (opt->op) {
		krn_mp_put_cstr(&w, "op");
		krn_mp_put_cstr(&w, opt->op);
	}
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, token_count);
	for (uint32_t i = 0; i < token_count; i++)
		krn_mp_put_uint(&w, opt->tokens_random ? rng_next(rng) % opt->vocab : opt->tokens[i]);
	if (opt->dense_count) {
		krn_mp_put_cstr(&w, "dense");
		krn_mp_put_array(&w, opt->dense_count);
		for (uint32_t i = 0; i < opt->dense_count; i++)
			krn_mp_put_float32(&w, opt->dense[i]);
	}
	return w.overflow ? 0 : krn_mp_writer_size(&w, buf);
}

struct answer {
	int has_id;
	uint64_t id;
	uint64_t status;
};

/* Read the answer's id and status with the bounded reader; everything else is skipped, but the
 * datagram must be exactly one map. Returns 0 or -EBADMSG. */
static int parse_answer(const uint8_t *buf, uint32_t size, struct answer *a)
{
	struct krn_mp_reader r;
	struct krn_mp_value map, key, val;
	int have_status = 0;

	krn_mp_reader_init(&r, buf, size);
	if (krn_mp_read(&r, &map) || map.type != KRN_MP_MAP)
		return -EBADMSG;
	a->has_id = 0;
	for (uint32_t i = 0; i < map.size; i++) {
		if (krn_mp_read(&r, &key) || key.type != KRN_MP_STR)
			return -EBADMSG;
		int is_id = krn_mp_str_eq(&key, "id"), is_status = krn_mp_str_eq(&key, "status");
		if (!is_id && !is_status) {
			if (krn_mp_skip(&r))
				return -EBADMSG;
			continue;
		}
		if (krn_mp_read(&r, &val))
			return -EBADMSG;
		if (is_id && val.type == KRN_MP_UINT) {
			a->has_id = 1;
			a->id = val.v.u;
		} else if (is_status && val.type == KRN_MP_UINT) {
			have_status = 1;
			a->status = val.v.u;
		} else if (!(is_id && val.type == KRN_MP_NIL)) {
			return -EBADMSG;
		}
	}
	return have_status && krn_mp_reader_left(&r) == 0 ? 0 : -EBADMSG;
}

/* ---- the per-thread engine ---- */

/* Seqs the kernel has taken: everything built except the messages still waiting in tx. */
static inline uint64_t sent_head(const struct bench_thread *t)
{
	return t->head_seq - (t->tx_count - t->tx_first);
}

/* Encode the next request into the tx batch, waiting from intended_ns. */
static void build_one(struct bench_thread *t, uint64_t intended_ns)
{
	uint64_t seq = t->head_seq++;
	uint32_t k = t->tx_count++;
	uint32_t size = encode_request(t->opt, t->id_prefix | seq, &t->rng, t->tx_buf[k]);

	/* check_request_size() proved at start-up that every request fits. */
	t->tx_iov[k].iov_len = size;
	t->slot_ns[seq & t->slot_mask] = intended_ns;
	t->waiting++;
}

/* Hand the built batch to the kernel. A full socket buffer leaves the rest for the next call.
 * Returns 0 or -errno. */
static int send_built(struct bench_thread *t, uint64_t now)
{
	while (t->tx_first < t->tx_count) {
		int n = sendmmsg(t->fd, &t->tx_msgs[t->tx_first], t->tx_count - t->tx_first, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOBUFS) {
				t->c.send_retries++;
				return 0;
			}
			/* An earlier ICMP port unreachable, reported once: the message was not sent. */
			if (errno == ECONNREFUSED) {
				t->c.icmp_errors++;
				return 0;
			}
			return -errno;
		}
		t->tx_first += (uint32_t)n;
		t->c.sent += (uint64_t)n;
		t->last_send_ns = now;
	}
	t->tx_first = t->tx_count = 0;
	return 0;
}

/* The newest waiting seq, for an answer that came without an id. Returns 0 or -ENOENT. */
static int newest_waiting(const struct bench_thread *t, uint64_t *seq)
{
	uint64_t s = sent_head(t);

	for (uint32_t i = 0; i < NIL_ID_SEARCH_MAX && s > t->tail_seq; i++) {
		s--;
		if (t->slot_ns[s & t->slot_mask]) {
			*seq = s;
			return 0;
		}
	}
	return -ENOENT;
}

static void on_answer(struct bench_thread *t, const uint8_t *buf, uint32_t size, uint64_t now)
{
	struct answer a = { 0 };
	uint64_t seq, *slot;

	if (parse_answer(buf, size, &a)) {
		t->c.malformed++;
		return;
	}
	if (a.has_id) {
		seq = a.id & ID_SEQ_MASK;
		if ((a.id & ~ID_SEQ_MASK) != t->id_prefix || seq < t->tail_seq || seq >= sent_head(t)) {
			t->c.stray++;
			return;
		}
	} else if (newest_waiting(t, &seq)) {
		t->c.stray++;
		return;
	}
	slot = &t->slot_ns[seq & t->slot_mask];
	if (*slot == 0) {
		t->c.stray++;
		return;
	}
	zh_hist_record(&t->hist, now > *slot ? now - *slot : 0);
	*slot = 0;
	t->waiting--;
	t->c.answered++;
	t->c.status[a.status < ZH_STATUS_COUNT ? a.status : ZH_STATUS_COUNT]++;
	t->last_answer_ns = now;
}

/* Take what has arrived, at most one batch. `flags` is MSG_DONTWAIT, or MSG_WAITFORONE to block
 * (for at most the socket's receive timeout). Returns the datagrams taken, or -errno. */
static int receive(struct bench_thread *t, int flags)
{
	int n = recvmmsg(t->fd, t->rx_msgs, t->opt->batch, flags, NULL);
	uint64_t now;

	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		if (errno == ECONNREFUSED) {
			t->c.icmp_errors++;
			return 0;
		}
		return -errno;
	}
	now = now_ns();
	for (int i = 0; i < n; i++) {
		const struct mmsghdr *m = &t->rx_msgs[i];

		if (m->msg_hdr.msg_flags & MSG_TRUNC)
			t->c.malformed++;
		else
			on_answer(t, t->rx_buf[i], m->msg_len, now);
	}
	return n;
}

static const struct bench_io socket_io = { .send = send_built, .receive = receive };

/* --dpdk: hand the built batch to the port, as send_built() hands it to the kernel. */
static int send_built_dpdk(struct bench_thread *t, uint64_t now)
{
	while (t->tx_first < t->tx_count) {
		int n = zh_bench_dpdk_send(t->port, &t->tx_iov[t->tx_first], t->tx_count - t->tx_first);

		if (n < 0)
			return n;
		if (n == 0) {
			t->c.send_retries++;
			return 0;
		}
		t->tx_first += (uint32_t)n;
		t->c.sent += (uint64_t)n;
		t->last_send_ns = now;
	}
	t->tx_first = t->tx_count = 0;
	return 0;
}

static void on_answer_dpdk(void *ctx, const uint8_t *payload, uint32_t size, uint64_t rx_ns)
{
	on_answer(ctx, payload, size, rx_ns);
}

/* --dpdk: a port is only ever polled, so `flags` has nothing to ask for. */
static int receive_dpdk(struct bench_thread *t, int flags)
{
	(void)flags;
	return zh_bench_dpdk_receive(t->port, t->opt->batch, on_answer_dpdk, t);
}

static const struct bench_io dpdk_io = { .send = send_built_dpdk, .receive = receive_dpdk };

/* Requests unanswered for --timeout-ms are lost. Seqs leave in order, so the oldest is at the tail. */
static void expire(struct bench_thread *t, uint64_t now)
{
	uint64_t head = sent_head(t);

	while (t->tail_seq < head) {
		uint64_t *slot = &t->slot_ns[t->tail_seq & t->slot_mask];

		if (*slot) {
			if ((int64_t)(now - *slot) < (int64_t)t->opt->timeout_ns)
				break;
			*slot = 0;
			t->waiting--;
			t->c.lost++;
		}
		t->tail_seq++;
	}
}

/* Wait until the socket is readable or timeout_ns passes; returns 1 if readable. */
static int wait_readable(struct bench_thread *t, uint64_t timeout_ns)
{
	struct pollfd pfd = { .fd = t->fd, .events = POLLIN };
	struct timespec ts = { .tv_sec = (time_t)(timeout_ns / NS_PER_S), .tv_nsec = (long)(timeout_ns % NS_PER_S) };

	return ppoll(&pfd, 1, &ts, NULL) > 0;
}

static int slot_free(const struct bench_thread *t)
{
	return t->head_seq - t->tail_seq <= t->slot_mask;
}

/* Closed loop: keep `outstanding` requests waiting until `count` have been built or end_ns. */
static void run_closed(struct bench_thread *t, uint64_t end_ns, uint32_t outstanding, uint64_t count)
{
	const int block = t->opt->wait == WAIT_BLOCK;

	while (!stop_requested) {
		uint64_t now = now_ns();
		int rc;

		if (now >= end_ns || (t->head_seq >= count && t->tx_first == t->tx_count))
			break;
		if (t->tx_first == t->tx_count) {
			uint64_t first = t->head_seq;

			while (t->waiting < outstanding && t->head_seq < count && t->tx_count < t->opt->batch &&
			       slot_free(t))
				build_one(t, 1);
			/* The clock is read after encoding, just before the send. */
			now = now_ns();
			for (uint64_t s = first; s < t->head_seq; s++)
				t->slot_ns[s & t->slot_mask] = now;
		}
		rc = t->io->send(t, now);
		if (rc == 0) {
			int idle = t->tx_first == t->tx_count && (t->waiting >= outstanding || !slot_free(t));
			rc = t->io->receive(t, block && idle ? MSG_WAITFORONE : MSG_DONTWAIT);
		}
		if (rc < 0) {
			t->error = rc;
			return;
		}
		expire(t, now);
	}
}

static double gap_fixed(struct bench_thread *t)
{
	return t->next_ns + t->gap_ns;
}

/* Exponential gaps: -ln(1 - u) times the mean, u uniform in [0, 1) from 53 random bits. */
static double gap_poisson(struct bench_thread *t)
{
	double u = (double)(rng_next(&t->rng) >> 11) * 0x1.0p-53;

	return t->next_ns - log1p(-u) * t->gap_ns;
}

/* Open and poisson: build every request whose time has come, send, take answers. */
static void run_paced(struct bench_thread *t, uint64_t end_ns)
{
	const int block = t->opt->wait == WAIT_BLOCK;

	while (!stop_requested) {
		uint64_t now = now_ns();
		int more = t->head_seq < t->count && t->next_ns < (double)end_ns, rc;

		/* Done, or a socket that takes nothing for a whole timeout past the end. */
		if ((!more && t->tx_first == t->tx_count) || now >= end_ns + t->opt->timeout_ns)
			break;
		while (more && t->tx_first == t->tx_count && t->next_ns <= (double)now && t->tx_count < t->opt->batch &&
		       slot_free(t)) {
			build_one(t, (uint64_t)t->next_ns);
			t->next_ns = t->next_gap(t);
			more = t->head_seq < t->count && t->next_ns < (double)end_ns;
		}
		rc = t->io->send(t, now);
		if (rc == 0 && block) {
			uint64_t due_ns = t->next_ns > (double)now ? (uint64_t)t->next_ns - now : 0;
			if (wait_readable(t, due_ns < BLOCK_WAKE_NS ? due_ns : BLOCK_WAKE_NS))
				rc = t->io->receive(t, MSG_DONTWAIT);
		} else if (rc == 0) {
			rc = t->io->receive(t, MSG_DONTWAIT);
		}
		if (rc < 0) {
			t->error = rc;
			return;
		}
		expire(t, now);
	}
}

/* After the sending phase: forget what was never sent, wait for the rest until deadline_ns, and
 * count whatever is still waiting then as lost. */
static void drain(struct bench_thread *t, uint64_t deadline_ns)
{
	const int block = t->opt->wait == WAIT_BLOCK;
	uint32_t unsent = t->tx_count - t->tx_first;

	for (uint32_t i = 0; i < unsent; i++)
		t->slot_ns[--t->head_seq & t->slot_mask] = 0;
	t->waiting -= unsent;
	t->tx_first = t->tx_count = 0;
	while (t->waiting > 0 && !t->error) {
		uint64_t now = now_ns();
		int rc;

		if (now >= deadline_ns)
			break;
		if (block)
			rc = wait_readable(t, BLOCK_WAKE_NS) ? t->io->receive(t, MSG_DONTWAIT) : 0;
		else
			rc = t->io->receive(t, MSG_DONTWAIT);
		if (rc < 0)
			t->error = rc;
		expire(t, now);
	}
	for (; t->tail_seq < t->head_seq; t->tail_seq++) {
		uint64_t *slot = &t->slot_ns[t->tail_seq & t->slot_mask];

		if (*slot) {
			*slot = 0;
			t->c.lost++;
		}
	}
	t->waiting = 0;
}

/* A fresh phase: counters, histogram and sequence numbers start again; the salt keeps a late answer
 * of the previous phase from matching a request of this one. */
static void reset_phase(struct bench_thread *t, uint8_t salt)
{
	memset(t->slot_ns, 0, (t->slot_mask + 1) * sizeof(*t->slot_ns));
	memset(&t->c, 0, sizeof(t->c));
	zh_hist_init(&t->hist);
	t->head_seq = t->tail_seq = t->waiting = 0;
	t->tx_first = t->tx_count = 0;
	t->last_send_ns = t->last_answer_ns = 0;
	t->id_prefix = ((uint64_t)(t->idx + 1) << 56) | ((uint64_t)salt << ID_SEQ_BITS);
}

static void pin(struct bench_thread *t)
{
	cpu_set_t set;
	int rc;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc)
		fprintf(stderr, "zerohop-bench: thread %u: pinning to cpu %d: %s\n", t->idx, t->cpu, strerror(rc));
}

static void *thread_main(void *arg)
{
	struct bench_thread *t = arg;
	const struct bench_options *opt = t->opt;
	uint64_t start_ns, end_ns;

	pin(t);
	if (t->port)
		zh_bench_dpdk_thread_attach();
	/* A blocking wait should wake when asked, not up to 50 µs later (the default timer slack). */
	if (opt->wait == WAIT_BLOCK)
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	if (opt->warmup) {
		uint64_t limit_ns = opt->duration_ns < WARMUP_LIMIT_NS ? opt->duration_ns : WARMUP_LIMIT_NS;
		uint64_t warm_start_ns = now_ns();

		reset_phase(t, start_line.salt);
		run_closed(t, warm_start_ns + limit_ns, 1, opt->warmup);
		drain(t, now_ns() + opt->timeout_ns);
	}
	reset_phase(t, (uint8_t)(start_line.salt + 1u));
	pthread_barrier_wait(&start_line.warmed_up);
	pthread_barrier_wait(&start_line.go);
	start_ns = __atomic_load_n(&start_line.start_ns, __ATOMIC_ACQUIRE);
	end_ns = start_ns + opt->duration_ns;
	/* Threads of an open run take turns: thread i starts i gaps of the whole rate after the first. */
	t->next_ns = (double)start_ns + t->gap_ns * (double)t->idx / (double)opt->threads;
	if (opt->mode == MODE_CLOSED)
		run_closed(t, end_ns, opt->outstanding, t->count);
	else
		run_paced(t, end_ns);
	drain(t, now_ns() + opt->timeout_ns);
	if (t->port)
		zh_bench_dpdk_thread_detach();
	return NULL;
}

/* ---- set-up ---- */

static int open_socket(const struct bench_options *opt, int *fd_out)
{
	struct timeval rcv_timeout = { .tv_sec = 0, .tv_usec = (suseconds_t)(BLOCK_WAKE_NS / 1000) };
	int buf_bytes = SOCK_BUF_BYTES;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* Root may pass net.core.rmem_max; otherwise the kernel caps the plain request. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf_bytes, sizeof(buf_bytes)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof(buf_bytes));
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf_bytes, sizeof(buf_bytes)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof(buf_bytes));
	/* connect() picks this socket's own source port and filters out everyone but the destination. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv_timeout, sizeof(rcv_timeout)) ||
	    connect(fd, (const struct sockaddr *)&opt->dst, sizeof(opt->dst))) {
		int err = -errno;

		close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

static uint64_t slot_count_for(const struct bench_options *opt, uint64_t count)
{
	double want = opt->mode == MODE_CLOSED ? 4.0 * opt->outstanding + BATCH_MAX :
		      2.0 * opt->rate_rps / opt->threads * ((double)opt->timeout_ns / NS_PER_S) + BATCH_MAX;
	uint64_t slots = SLOTS_MIN;

	/* Never more than the requests themselves need, never more than SLOTS_MAX. */
	if (want > (double)count)
		want = (double)count;
	while (slots < SLOTS_MAX && (double)slots < want)
		slots <<= 1;
	return slots;
}

static int thread_setup(struct bench_thread *t, const struct bench_options *opt, uint32_t idx,
			struct zh_bench_dpdk *port)
{
	uint64_t slots;
	int rc;

	memset(t, 0, sizeof(*t));
	t->opt = opt;
	t->idx = idx;
	t->cpu = opt->cpus[idx % opt->cpu_count];
	t->fd = -1;
	t->io = port ? &dpdk_io : &socket_io;
	t->port = port;
	t->count = opt->count / opt->threads + (idx < opt->count % opt->threads);
	t->rng = rng_seed(opt->seed ^ ((uint64_t)(idx + 1) * 0x9E3779B97F4A7C15ull));
	t->gap_ns = opt->mode == MODE_CLOSED ? 0.0 : (double)NS_PER_S * opt->threads / opt->rate_rps;
	t->next_gap = opt->mode == MODE_POISSON ? gap_poisson : gap_fixed;
	slots = slot_count_for(opt, t->count);
	t->slot_mask = slots - 1;
	t->slot_ns = calloc(slots, sizeof(*t->slot_ns));
	if (!t->slot_ns)
		return -ENOMEM;
	for (uint32_t i = 0; i < BATCH_MAX; i++) {
		t->tx_iov[i].iov_base = t->tx_buf[i];
		t->tx_msgs[i].msg_hdr.msg_iov = &t->tx_iov[i];
		t->tx_msgs[i].msg_hdr.msg_iovlen = 1;
		t->rx_iov[i].iov_base = t->rx_buf[i];
		t->rx_iov[i].iov_len = RX_BUF_BYTES;
		t->rx_msgs[i].msg_hdr.msg_iov = &t->rx_iov[i];
		t->rx_msgs[i].msg_hdr.msg_iovlen = 1;
	}
	zh_hist_init(&t->hist);
	rc = port ? 0 : open_socket(opt, &t->fd);
	return rc;
}

static void thread_teardown(struct bench_thread *t)
{
	if (t->fd >= 0)
		close(t->fd);
	free(t->slot_ns);
}

/* The largest request this run can build must fit a datagram. */
static int check_request_size(const struct bench_options *opt)
{
	uint8_t buf[ZH_REQ_MAX_BYTES];
	struct bench_options worst = *opt;
	uint64_t rng = 1;

	/* Random ids below the vocabulary take at most the bytes of vocab - 1. */
	if (worst.tokens_random) {
		worst.token_count = worst.tokens_random;
		worst.tokens_random = 0;
		for (uint32_t i = 0; i < worst.token_count; i++)
			worst.tokens[i] = worst.vocab - 1;
	}
	if (encode_request(&worst, UINT64_MAX, &rng, buf) == 0) {
		fprintf(stderr, "zerohop-bench: the request does not fit one datagram (%u bytes)\n", ZH_REQ_MAX_BYTES);
		return -EMSGSIZE;
	}
	return 0;
}

/* ---- results ---- */

struct bench_result {
	struct bench_counters c;
	struct zh_hist hist;
	uint64_t start_ns;
	uint64_t end_ns;       /* the later of the last send and the last answer */
	int error;
	struct zh_bench_dpdk_stats port_stats;  /* --dpdk */
	char port_text[96];                     /* --dpdk: the port's name and MAC */
};

static void counters_add(struct bench_counters *dst, const struct bench_counters *src)
{
	dst->sent += src->sent;
	dst->answered += src->answered;
	dst->lost += src->lost;
	dst->stray += src->stray;
	dst->malformed += src->malformed;
	dst->send_retries += src->send_retries;
	dst->icmp_errors += src->icmp_errors;
	for (uint32_t s = 0; s <= ZH_STATUS_COUNT; s++)
		dst->status[s] += src->status[s];
}

static void collect(struct bench_thread *const *threads, uint32_t count, struct bench_result *res)
{
	zh_hist_init(&res->hist);
	res->end_ns = res->start_ns;
	for (uint32_t i = 0; i < count; i++) {
		const struct bench_thread *t = threads[i];

		counters_add(&res->c, &t->c);
		zh_hist_merge(&res->hist, &t->hist);
		if (t->last_send_ns > res->end_ns)
			res->end_ns = t->last_send_ns;
		if (t->last_answer_ns > res->end_ns)
			res->end_ns = t->last_answer_ns;
		if (t->error && !res->error)
			res->error = t->error;
	}
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void print_text(const struct bench_options *opt, const struct bench_result *res)
{
	const struct zh_hist *h = &res->hist;
	double seconds = (double)(res->end_ns - res->start_ns) / NS_PER_S;

	printf("zerohop-bench: %s loop to %s:%u, %u thread(s), ", mode_names[opt->mode], opt->addr_text,
	       ntohs(opt->dst.sin_port), opt->threads);
	if (opt->mode == MODE_CLOSED)
		printf("%u outstanding", opt->outstanding);
	else
		printf("%.0f requests/s", opt->rate_rps);
	printf(", wait %s\n", opt->wait == WAIT_SPIN ? "spin" : "block");
	if (opt->dpdk)
		printf("  dpdk port %s, from %s, %u source ports; not answers %" PRIu64 ", bad checksum %" PRIu64
		       ", ARP replies %" PRIu64 ", tx full %" PRIu64 ", mbufs unreturned %" PRIu64 "\n", res->port_text,
		       opt->src_text, opt->port_cfg.src_port_count, res->port_stats.rx_other,
		       res->port_stats.rx_bad_checksum, res->port_stats.arp_replies, res->port_stats.tx_full,
		       res->port_stats.mbufs_unreturned);
	printf("  sent %" PRIu64 ", answered %" PRIu64 ", lost %" PRIu64 ", stray %" PRIu64 ", malformed %" PRIu64
	       "\n", res->c.sent, res->c.answered, res->c.lost, res->c.stray, res->c.malformed);
	printf("  status:");
	for (uint32_t s = 0; s <= ZH_STATUS_COUNT; s++)
		if (res->c.status[s])
			printf(" %s %" PRIu64, status_name(s), res->c.status[s]);
	printf("\n  %.3f s, %.0f answers/s\n", seconds, seconds > 0 ? (double)res->c.answered / seconds : 0.0);
	printf("  latency (µs): min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
	       us(h->total_count ? h->min_ns : 0), us(zh_hist_percentile_ns(h, 50.0)),
	       us(zh_hist_percentile_ns(h, 90.0)), us(zh_hist_percentile_ns(h, 99.0)),
	       us(zh_hist_percentile_ns(h, 99.9)), us(h->max_ns), zh_hist_mean_ns(h) / 1000.0);
	if (res->c.send_retries || res->c.icmp_errors)
		printf("  send retries %" PRIu64 ", port unreachable %" PRIu64 "\n", res->c.send_retries,
		       res->c.icmp_errors);
}

static void print_json(const struct bench_options *opt, const struct bench_result *res)
{
	const struct zh_hist *h = &res->hist;
	double seconds = (double)(res->end_ns - res->start_ns) / NS_PER_S;

	printf("{\"mode\": \"%s\", \"addr\": \"%s\", \"port\": %u, \"threads\": %u, \"outstanding\": %u, "
	       "\"rate\": %.3f, \"wait\": \"%s\", \"count\": %" PRIu64 ", ", mode_names[opt->mode], opt->addr_text,
	       ntohs(opt->dst.sin_port), opt->threads, opt->mode == MODE_CLOSED ? opt->outstanding : 0,
	       opt->mode == MODE_CLOSED ? 0.0 : opt->rate_rps, opt->wait == WAIT_SPIN ? "spin" : "block", opt->count);
	printf("\"sent\": %" PRIu64 ", \"answered\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"stray\": %" PRIu64
	       ", \"malformed\": %" PRIu64 ", \"send_retries\": %" PRIu64 ", \"icmp_errors\": %" PRIu64 ", \"status\": {",
	       res->c.sent, res->c.answered, res->c.lost, res->c.stray, res->c.malformed, res->c.send_retries,
	       res->c.icmp_errors);
	for (uint32_t s = 0; s <= ZH_STATUS_COUNT; s++)
		printf("%s\"%s\": %" PRIu64, s ? ", " : "", status_name(s), res->c.status[s]);
	printf("}, ");
	if (opt->dpdk)
		printf("\"dpdk\": {\"port\": \"%s\", \"src\": \"%s\", \"src_ports\": %u, \"rx_other\": %" PRIu64
		       ", \"rx_bad_checksum\": %" PRIu64 ", \"arp_replies\": %" PRIu64 ", \"tx_full\": %" PRIu64
		       ", \"mbufs_unreturned\": %" PRIu64 "}, ", res->port_text, opt->src_text, opt->port_cfg.src_port_count,
		       res->port_stats.rx_other, res->port_stats.rx_bad_checksum, res->port_stats.arp_replies,
		       res->port_stats.tx_full, res->port_stats.mbufs_unreturned);
	printf("\"duration_s\": %.6f, \"throughput_rps\": %.1f, ", seconds,
	       seconds > 0 ? (double)res->c.answered / seconds : 0.0);
	printf("\"latency_us\": {\"min\": %.3f, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, "
	       "\"max\": %.3f, \"mean\": %.3f, \"stddev\": %.3f}}\n",
	       us(h->total_count ? h->min_ns : 0), us(zh_hist_percentile_ns(h, 50.0)),
	       us(zh_hist_percentile_ns(h, 90.0)), us(zh_hist_percentile_ns(h, 99.0)),
	       us(zh_hist_percentile_ns(h, 99.9)), us(h->max_ns), zh_hist_mean_ns(h) / 1000.0,
	       zh_hist_stddev_ns(h) / 1000.0);
}

static int write_hgrm(const char *path, const struct zh_hist *h)
{
	FILE *f = fopen(path, "w");
	int rc;

	if (!f)
		return -errno;
	rc = zh_hist_write_hgrm(h, f, 1000.0);
	if (fclose(f) && !rc)
		rc = -EIO;
	return rc;
}

/* ---- the plot ---- */

/* A gnuplot single-quoted string: no escapes inside but '' for a quote. */
static void put_gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		if (*s != '\n')
			fputc(*s, f);
	}
	fputc('\'', f);
}

struct plot_data {
	FILE *f;
	double x_max;
};

/* One point of the datablock: x = 1/(1-p) on a log axis spreads the nines evenly. */
static int plot_point(void *ctx, uint64_t value_ns, double level_pct, uint64_t count_to_here)
{
	struct plot_data *pd = ctx;
	double x;

	(void)count_to_here;
	if (level_pct >= 100.0)
		return 0;
	x = 1.0 / (1.0 - level_pct / 100.0);
	if (x > pd->x_max)
		pd->x_max = x;
	fprintf(pd->f, "%.6f %.3f\n", x, us(value_ns));
	return 0;
}

static void write_plot_script(FILE *f, const char *png, const char *title, const struct zh_hist *h)
{
	struct plot_data pd = { .f = f, .x_max = 100.0 };
	double decade = 100.0;

	fputs("set encoding utf8\n"
	      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
	      "\tset terminal pngcairo size 1024,640 font 'sans,10'\n"
	      "} else {\n"
	      "\tset terminal png size 1024,640\n"
	      "}\n", f);
	fputs("set output ", f);
	put_gp_string(f, png);
	fputs("\nset title ", f);
	put_gp_string(f, title);
	fputs("\n$latency << EOD\n", f);
	zh_hist_walk_percentiles(h, PLOT_TICKS_PER_HALF, plot_point, &pd);
	fputs("EOD\n", f);
	while (decade < pd.x_max)
		decade *= 10.0;
	fprintf(f, "set logscale x\nset xrange [1:%.0f]\n", decade);
	/* Tic labels are formats to gnuplot: %% is a percent sign. */
	fputs("set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000, "
	      "'99.9999%%' 1000000, '99.99999%%' 10000000)\n"
	      "set xlabel 'percentile'\nset ylabel 'latency (µs)'\nset yrange [0:*]\n"
	      "set grid\nset key top left\n"
	      "plot $latency using 1:2 with lines linewidth 2 title 'latency'\n", f);
}

/* Draw the percentile plot with gnuplot, run as a child on a generated script. Returns 0 or -errno. */
static int plot_png(const char *png, const char *title, const struct zh_hist *h)
{
	char script[] = "/tmp/zerohop-bench-plot-XXXXXX";
	char *argv[] = { "gnuplot", script, NULL };
	struct stat st;
	pid_t pid;
	int fd, status, rc;
	FILE *f;

	if (h->total_count == 0) {
		fprintf(stderr, "zerohop-bench: --plot: no answers to plot\n");
		return -ENODATA;
	}
	fd = mkstemp(script);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		rc = -errno;
		fprintf(stderr, "zerohop-bench: --plot: the gnuplot script: %s\n", strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	write_plot_script(f, png, title, h);
	rc = fclose(f) ? -EIO : 0;
	if (!rc)
		rc = -posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
	if (rc == -ENOENT)
		fprintf(stderr, "zerohop-bench: --plot: gnuplot is not installed (apt-get install gnuplot-nox)\n");
	else if (rc)
		fprintf(stderr, "zerohop-bench: --plot: running gnuplot: %s\n", strerror(-rc));
	if (!rc && (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
		    stat(png, &st) || st.st_size == 0)) {
		/* The script stays for whoever wants to see why. */
		fprintf(stderr, "zerohop-bench: --plot: gnuplot did not draw %s (script %s)\n", png, script);
		return -EIO;
	}
	unlink(script);
	return rc;
}

/* ---- self-test of the histogram ---- */

static int self_test(void)
{
	static struct zh_hist h;
	uint32_t checks = 0, failed = 0;
	uint64_t rng = 7;

#define CHECK(cond)                                                                       \
	do {                                                                              \
		checks++;                                                                 \
		if (!(cond)) {                                                            \
			failed++;                                                         \
			fprintf(stderr, "zerohop-bench: self-test: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                         \
	} while (0)

	/* Every value falls into a bucket that holds it and is at most 1/128 of it wide. */
	for (uint32_t i = 0; i < 200000; i++) {
		uint64_t v = rng_next(&rng) >> (rng_next(&rng) % 64);
		if (v > ZH_HIST_VALUE_MAX_NS)
			v >>= 24;
		uint32_t idx = zh_hist_index(v);
		uint64_t lo = zh_hist_bucket_lowest_ns(idx), hi = zh_hist_bucket_highest_ns(idx);
		if (idx >= ZH_HIST_BUCKETS || lo > v || hi < v || (double)(hi - lo) > (double)lo / 128.0) {
			CHECK(0);
			break;
		}
	}
	CHECK(zh_hist_index(ZH_HIST_VALUE_MAX_NS) == ZH_HIST_BUCKETS - 1);
	CHECK(zh_hist_bucket_highest_ns(ZH_HIST_BUCKETS - 1) == ZH_HIST_VALUE_MAX_NS);
	/* 1..100000 ns once each: percentiles within 1% of the exact ones, extremes exact. */
	zh_hist_init(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		zh_hist_record(&h, v);
	const double pct[] = { 50.0, 90.0, 99.0, 99.9 };
	for (uint32_t i = 0; i < ZH_ARRAY_SIZE(pct); i++) {
		double exact = pct[i] * 1000.0, got = (double)zh_hist_percentile_ns(&h, pct[i]);
		CHECK(got >= exact && got <= exact * 1.01);
	}
	CHECK(zh_hist_percentile_ns(&h, 100.0) == 100000 && zh_hist_percentile_ns(&h, 0.0) == 1);
	CHECK(fabs(zh_hist_mean_ns(&h) - 50000.5) < 50000.5 * 0.01);
	/* Ten seconds still lands within 1%. */
	zh_hist_record(&h, 10 * NS_PER_S);
	CHECK(zh_hist_percentile_ns(&h, 100.0) == 10 * NS_PER_S && h.saturated == 0);
#undef CHECK
	printf("zerohop-bench: self-test: %u checks, %u failed\n", checks, failed);
	return failed ? EXIT_RUN_ERROR : EXIT_RUN_OK;
}

/* ---- main ---- */

/* Start the threads at one start line and wait for them; returns 0 or -errno. */
static int run_threads(struct bench_thread **threads, const struct bench_options *opt, struct bench_result *res)
{
	uint32_t started = 0;
	int rc = 0;

	pthread_barrier_init(&start_line.warmed_up, NULL, opt->threads + 1);
	pthread_barrier_init(&start_line.go, NULL, opt->threads + 1);
	start_line.salt = (uint8_t)(now_ns() >> 10);
	for (; started < opt->threads; started++) {
		rc = -pthread_create(&threads[started]->tid, NULL, thread_main, threads[started]);
		if (rc)
			break;
	}
	if (rc) {
		/* The barriers need every party: without all threads nobody may pass them. */
		fprintf(stderr, "zerohop-bench: starting thread %u: %s\n", started, strerror(-rc));
		exit(EXIT_RUN_ERROR);
	}
	pthread_barrier_wait(&start_line.warmed_up);
	/* A millisecond ahead, so that every thread is past the second barrier before it. */
	res->start_ns = now_ns() + 1000000ull;
	__atomic_store_n(&start_line.start_ns, res->start_ns, __ATOMIC_RELEASE);
	pthread_barrier_wait(&start_line.go);
	for (uint32_t i = 0; i < opt->threads; i++)
		pthread_join(threads[i]->tid, NULL);
	pthread_barrier_destroy(&start_line.warmed_up);
	pthread_barrier_destroy(&start_line.go);
	return 0;
}

static int outputs(const struct bench_options *opt, const struct bench_result *res)
{
	int rc = 0, ret;

	if (opt->json)
		print_json(opt, res);
	else
		print_text(opt, res);
	fflush(stdout);
	if (opt->hgrm_path && (ret = write_hgrm(opt->hgrm_path, &res->hist))) {
		fprintf(stderr, "zerohop-bench: --hgrm %s: %s\n", opt->hgrm_path, strerror(-ret));
		rc = ret;
	}
	if (opt->plot_path) {
		char title[160];

		if (opt->title)
			snprintf(title, sizeof(title), "%s", opt->title);
		else
			snprintf(title, sizeof(title), "zerohop-bench %s to %s:%u, %" PRIu64 " answers",
				 mode_names[opt->mode], opt->addr_text, ntohs(opt->dst.sin_port), res->c.answered);
		ret = plot_png(opt->plot_path, title, &res->hist);
		if (ret)
			rc = ret;
	}
	return rc;
}

/* --dpdk, before the EAL starts: the source address obeys the destination rule, and the EAL arguments
 * keep DPDK off this machine's PCI devices. Returns 0, or -EPERM/-EINVAL after saying why. */
static int dpdk_preflight(struct bench_options *opt)
{
	struct zh_bench_dpdk_config *cfg = &opt->port_cfg;
	int rc = zh_bench_dpdk_preflight(opt->src_text, opt->eal_argc, opt->eal_argv, cfg);

	if (rc)
		return rc;
	cfg->dst_ip = opt->dst.sin_addr;
	cfg->dst_port = opt->dst.sin_port;
	return 0;
}

/* --dpdk: the EAL and the port, and from now on the TSC clock. Returns 0 or -errno (said why). */
static int dpdk_start(struct bench_options *opt, struct bench_result *res, struct zh_bench_dpdk **port)
{
	int rc = zh_bench_dpdk_open(opt->eal_argc, opt->eal_argv, &opt->port_cfg, port);

	if (rc)
		return rc;
	snprintf(res->port_text, sizeof(res->port_text), "%s", zh_bench_dpdk_describe(*port));
	now_ns = zh_bench_dpdk_now_ns;
	return 0;
}

int main(int argc, char **argv)
{
	static struct bench_options opt;
	static struct bench_result res;
	struct bench_thread *threads[THREADS_MAX] = { NULL };
	struct zh_bench_dpdk *port = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	int rc = parse_args(argc, argv, &opt);

	if (rc == 1)
		return self_test();
	if (rc)
		return EXIT_USAGE;
	if (inet_pton(AF_INET, opt.addr_text, &opt.dst.sin_addr) != 1) {
		fprintf(stderr, "zerohop-bench: '%s' is not an IPv4 address\n", opt.addr_text);
		return EXIT_USAGE;
	}
	if (!zh_cli_dest_allowed(opt.dst.sin_addr)) {
		fprintf(stderr, "zerohop-bench: refusing to send to %s: only 198.18.0.0/15 (the dev network) "
			"and 127.0.0.0/8 are allowed\n", opt.addr_text);
		return EXIT_USAGE;
	}
	if (check_request_size(&opt))
		return EXIT_USAGE;
	if (opt.dpdk && dpdk_preflight(&opt))
		return EXIT_USAGE;
	/* Before the EAL: a Ctrl-C while it starts or while ARP is asked must still end in the clean-up
	 * below (an af_xdp port left open keeps its XDP program on the veth). */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (opt.dpdk && dpdk_start(&opt, &res, &port))
		return EXIT_RUN_ERROR;
	for (uint32_t i = 0; i < opt.threads && !rc; i++) {
		threads[i] = aligned_alloc(ZH_CACHE_LINE_SIZE, sizeof(struct bench_thread));
		rc = threads[i] ? thread_setup(threads[i], &opt, i, port) : -ENOMEM;
		if (rc)
			fprintf(stderr, "zerohop-bench: thread %u: %s\n", i, strerror(-rc));
	}
	if (!rc)
		rc = run_threads(threads, &opt, &res);
	if (!rc)
		collect(threads, opt.threads, &res);
	for (uint32_t i = 0; i < opt.threads; i++) {
		if (threads[i])
			thread_teardown(threads[i]);
		free(threads[i]);
	}
	/* Closed before the report, which says how many mbufs the pool got back. */
	if (port)
		zh_bench_dpdk_close(port, &res.port_stats);
	if (!rc) {
		if (res.error)
			fprintf(stderr, "zerohop-bench: a thread stopped early: %s\n", strerror(-res.error));
		rc = outputs(&opt, &res);
		if (!rc)
			rc = res.error;
	}
	return rc ? EXIT_RUN_ERROR : EXIT_RUN_OK;
}
