/* SPDX-License-Identifier: MIT */
/*
 * zerohop-probe: where the time of a request goes, stage by stage (docs/PROBE.md).
 *
 * The probe sends requests with "trace": true over a kernel UDP socket and stamps each send and each
 * receive with the TSC. An answer's trace is [rx_tsc, publish_tsc, claim_dclk, done_dclk, nic_rx_tsc]
 * (docs/PROTOCOL.md), so one request gives six stamps, on one clock when the probe runs on the
 * appliance's host (it must) and the device is the cpu device:
 *
 *   send -wire + rx poll-> rx_tsc -ring publish-> publish_tsc -device claim-> claim_dclk
 *        -device compute-> done_dclk -done -> tx -> client-> receive
 *
 * Where the appliance's port stamps frames (nic_rx_tsc != 0, the NIC's clock mapped to the TSC by the
 * appliance within a bound `zerohopctl status` states), the first stage splits at that stamp into
 * "wire" (send -> nic_rx_tsc) and "NIC rx -> rx poll"; --nic-bound-ns adds the bound to those stages'
 * error bound. A point is split only when every one of its answers carries a stamp.
 *
 * Each stage is the difference of two adjacent stamps, so a request's stages add up to its end-to-end
 * time exactly. In rate mode (open loop) a request's time starts when the schedule said it should leave,
 * and a "client send lag" stage comes first. The TSC's rate is calibrated against CLOCK_MONOTONIC, and
 * the offset between cores is bounded by a ping-pong between pinned threads: that bound is the error of
 * a stage whose two stamps were taken on different cores. On a CUDA device claim_dclk and done_dclk are
 * %globaltimer nanoseconds; given the appliance's control socket, the probe fetches the map the
 * appliance calibrated (kernels/zh_clock.h), places them on the TSC and adds the map's bound to the
 * stages that cross between the clocks. Without a map those stages are reported as uncalibrated,
 * never guessed.
 *
 * Modes: single (one request in flight, paced), rate (open loop at each rate, the knee marked), payload
 * (token counts), idle (one request after each idle gap). Every point is bounded by --count and
 * --seconds and the whole run by --max-seconds; destinations are limited to the benchmarking range
 * 198.18.0.0/15 (the dev network) and the loopback.
 *
 * --dpdk sends and receives through a DPDK port on the client's veth instead of the kernel's UDP stack
 * (tools/zh_bench_dpdk.c, zerohop-bench's port: af_xdp or af_packet, frames and checksums built in
 * software, ARP), so that the client's kernel stack leaves the first and last stages. Only the transport
 * changes: the stamps stay the probe's own TSC reads (the module's nanosecond clock is not used), and
 * every mode runs as over the socket. One port goes to one destination, so --dpdk takes one target;
 * the EAL's -l chooses the probe's core and pins it, so --dpdk takes no --cpu. The EAL never starts
 * without --no-pci (and puts it first in what the EAL reads), nor with a source or destination outside the allowed ranges.
 *
 * Exit status: 0 the run finished, 1 an I/O error, a target that gave no traced answer, or a failed
 * --csv, --raw or --plot, 2 a usage error, a refused destination or source, or EAL arguments without
 * --no-pci.
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
#include <sys/un.h>
#include <sys/wait.h>

#include "krn_msgpack.h"
#include "zh_clock.h"
#include "zh_proto.h"
#include "zh_cli.h"
#include "zh_bench_dpdk.h"

#define EXIT_RUN_OK 0
#define EXIT_RUN_ERROR 1
#define EXIT_USAGE 2

/* Requests per point: every record of a point is kept until the point is analysed. */
#define COUNT_DEFAULT 10000ull
#define COUNT_MAX 1000000ull
#define MAX_SECONDS_DEFAULT 60.0
#define MAX_SECONDS_MAX 3600.0
/* How long a rate is offered, and how long a closed-loop point may take at most. */
#define RATE_SECONDS_DEFAULT 2.0
#define CLOSED_SECONDS_DEFAULT 10.0
#define INTERVAL_US_DEFAULT 100u
#define INTERVAL_US_MAX 1000000u
#define GAP_US_MAX 10000000u
#define TOKENS_DEFAULT 4u
#define TIMEOUT_MS_DEFAULT 1000u
#define TIMEOUT_MS_MAX 10000u
#define WARMUP_DEFAULT 200u
#define WARMUP_MAX 10000u
#define RATE_MAX_RPS 1000000.0
#define POINTS_MAX 32u
#define TARGETS_MAX 3u
/* The appliance's control socket (docs/MGMT.md), asked for the device clock's map: the whole exchange
 * is bounded by CTL_TIMEOUT_MS, a reply by CTL_REPLY_MAX_BYTES. */
#define CTL_TIMEOUT_MS 2000u
#define CTL_REPLY_MAX_BYTES 65536u
/* Larger than any answer (ZH_ANS_MAX_BYTES), so that a datagram that is not one shows as truncated. */
#define RX_BUF_BYTES 2048u
/* Socket buffers: room for a burst of an open-loop point. */
#define SOCK_BUF_BYTES (4 << 20)
/* Open loop: sends in a row before answers are taken again, and answers taken in a row. */
#define SEND_BURST_MAX 64u
#define TAKE_BURST_MAX 256u
/* --dpdk: the one UDP source port (one flow, as the kernel mode's one socket), how long ARP may take to
 * find the appliance's MAC, and the frames taken from the port per poll. */
#define DPDK_SRC_PORT 49152u
#define DPDK_ARP_WAIT_MS 3000u
#define DPDK_RX_BURST 32u
/* --dpdk without --spin: the nap between empty polls of the port. A polling probe that never sleeps takes
 * the core from whichever appliance thread shares it on a small machine (on the 2-core dev VM, yielding
 * instead of napping left 300 us in "done -> tx -> client", the rx lcore waiting for the core); naps of
 * 10 us and less woke so often that the rx lcore beside the probe fell milliseconds behind. 50 us kept
 * both stages lowest there. The nap's wake-up lands in "done -> tx -> client", as the socket's does. */
#define DPDK_NAP_NS 50000u
/* A wait wakes at least this often to see its deadline. */
#define WAKE_MAX_NS 1000000ull
/* A sleep ends this much early and the rest is spun: a timer wake-up is late by tens of microseconds
 * (about 60 us on the dev VM), which would otherwise land in the client send lag and the idle gaps. */
#define SLEEP_MARGIN_NS 60000ull
/* TSC calibration: the window, and the tries at each end for the tightest (TSC, clock, TSC) bracket. */
#define CALIB_WINDOW_NS 100000000ull
#define CALIB_TRIES 64u
/* Cross-core ping-pong: rounds per pair of cores, and the time one pair may take. */
#define PINGPONG_ROUNDS 20000u
#define PINGPONG_NS_MAX 200000000ull
#define CROSS_CPUS_MAX 64u
/* All pairs together: a machine with many cores measures the ones this leaves time for. */
#define CROSS_TOTAL_NS_MAX 1000000000ull
/* Points of an end-to-end percentile curve: ten per decade of 1 / (1 - q), six decades. */
#define CURVE_MAX 64u
#define CURVE_STEPS_PER_DECADE 10u
#define PLOT_TIMEOUT_S 30u
/* A device stamp this far from the host's TSC was not taken on the host's TSC. */
#define CLOCK_SUSPECT_NS 10000000000.0
/* The knee: the first rate whose p99 is over this factor times the lowest rate's, or that gets fewer
 * answers than this share of what it sent. */
#define KNEE_P99_FACTOR 2.0
#define KNEE_ANSWERED_MIN 0.99

/* Tokens 1..127 pack in one byte each, so a request's size is its token count plus a constant, and
 * every id is inside any model's vocabulary. */
#define TOKEN_ID_SPAN 127u

/* Request ids: the point's tag above, the request's sequence number below. */
#define ID_SEQ_BITS 32u
#define ID_SEQ_MASK ((UINT64_C(1) << ID_SEQ_BITS) - 1)

ZH_STATIC_ASSERT(COUNT_MAX <= ID_SEQ_MASK, "a sequence number fits the id's low bits");
ZH_STATIC_ASSERT(WARMUP_MAX <= COUNT_MAX, "the warm-up fits the records");
ZH_STATIC_ASSERT(RX_BUF_BYTES > ZH_ANS_MAX_BYTES, "an oversized datagram shows as one");

/* The stages, in the order a request meets them; the last is the whole. */
enum stage {
	STAGE_SEND_LAG,
	STAGE_WIRE_RX,
	STAGE_WIRE,
	STAGE_NIC_RX_POLL,
	STAGE_PUBLISH,
	STAGE_CLAIM,
	STAGE_COMPUTE,
	STAGE_DONE_TX,
	STAGE_CLAIM_TX,
	STAGE_E2E,
	STAGE_COUNT
};

static const struct stage_info {
	const char *key;
	const char *label;
	const char *span; /* the stamps it runs between */
} STAGES[STAGE_COUNT] = {
	[STAGE_SEND_LAG] = { "send_lag", "client send lag", "intended send -> send" },
	[STAGE_WIRE_RX] = { "wire_rx_poll", "wire + rx poll", "send -> rx_tsc" },
	[STAGE_WIRE] = { "wire", "wire (to NIC rx)", "send -> nic_rx_tsc" },
	[STAGE_NIC_RX_POLL] = { "nic_rx_poll", "NIC rx -> rx poll", "nic_rx_tsc -> rx_tsc" },
	[STAGE_PUBLISH] = { "ring_publish", "ring publish", "rx_tsc -> publish_tsc" },
	[STAGE_CLAIM] = { "device_claim", "device claim", "publish_tsc -> claim_dclk" },
	[STAGE_COMPUTE] = { "device_compute", "device compute", "claim_dclk -> done_dclk" },
	[STAGE_DONE_TX] = { "done_tx_client", "done -> tx -> client", "done_dclk -> receive" },
	[STAGE_CLAIM_TX] = { "claim_and_tx", "claim + done -> client", "publish_tsc -> receive, less compute" },
	[STAGE_E2E] = { "end_to_end", "end to end", "intended send -> receive" },
};

/* How a stage appears in a point's report. */
enum row_kind {
	ROW_OFF,          /* not part of this mode or this device clock */
	ROW_UNCALIBRATED, /* its two stamps are on clocks with no known mapping */
	ROW_MEASURED,
};

/* The clock of claim_dclk and done_dclk. */
enum dclk_kind {
	DCLK_TSC, /* the cpu device: the host's TSC */
	DCLK_NS,  /* CUDA: %globaltimer nanoseconds */
};

/* What the probe knows of its own clock. */
struct host_clock {
	double tsc_hz;
	double ns_per_tick;
	double tsc_hz_err_ppm;       /* from the calibration brackets */
	uint64_t tsc0;               /* one (TSC, CLOCK_MONOTONIC) pair, for mapping raw stamps */
	uint64_t mono0_ns;
	int constant_tsc, nonstop_tsc; /* -1: unknown */
	uint32_t cross_cpu_count;
	int cross_cpus[CROSS_CPUS_MAX];
	double cross_lo_ns[CROSS_CPUS_MAX]; /* core i's offset from the first core lies in [lo, hi] */
	double cross_hi_ns[CROSS_CPUS_MAX];
	double cross_bound_ns;       /* the largest offset between any two of those cores */
	uint32_t cross_rounds;       /* the fewest rounds any pair completed */
};

struct stage_stats {
	uint64_t count;
	double p50_us, p90_us, p99_us, p999_us, max_us, min_us, mean_us;
	uint64_t below_bound; /* values below minus the cross-core bound: stamps out of order */
};

struct point_result {
	double param;              /* the rate, the token count or the gap; 0 for single */
	uint32_t tokens;
	uint32_t datagram_bytes;   /* the request's UDP payload */
	uint64_t planned;          /* requests the point meant to send */
	uint64_t slots;            /* records in use: requests sent or tried */
	uint64_t sent, answered, busy, errors, untraced, late, malformed, send_failed;
	uint16_t first_error_status;
	char first_error[ZH_ERROR_TEXT_MAX + 1];
	double seconds;
	double gap_us_mean;        /* closed loop: the measured idle time before each request */
	const char *capped;        /* what cut the point short: "count", "time", "run", "signal" or NULL */
	uint8_t rows[STAGE_COUNT];
	struct stage_stats st[STAGE_COUNT];
	uint32_t curve_count;
	double curve_x[CURVE_MAX]; /* 1 / (1 - q) */
	double curve_us[CURVE_MAX];
	uint64_t nic_stamped;      /* answers whose trace carries a NIC rx time */
	uint64_t nic_bound_ns;     /* the NIC clock map's bound used: --nic-bound-ns, else the appliance's */
	int nic_split;             /* every answer did: the first stage is split at the NIC rx time */
	double bound_ns[STAGE_COUNT]; /* each stage's error bound: cross-core, plus the device map's */
	double map_bound_ns;       /* the device clock map's largest bound over the point's stamps */
	int clock_suspect;         /* device stamps far from the host's TSC although it was named */
	int host_suspect;          /* the appliance's host stamps far from this TSC: another host */
};

struct probe_target {
	const char *name;          /* the placement: one of PLACEMENTS, or "cuda" for a lone CUDA appliance */
	char addr_text[32];
	struct sockaddr_in addr;
	enum dclk_kind dclk;
	char ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* its control socket, "" if none */
	int map_ok;                /* map holds the appliance's device clock map, fetched after each point */
	struct zh_clock_map map;
	char map_why[160];         /* why there is no map, when ctl_path is set */
	uint64_t nic_bound_ns;     /* the appliance's NIC clock map bound from its status; 0: none known */
	int fd;
	uint32_t point_count;      /* points measured */
	struct point_result points[POINTS_MAX];
	int knee;                  /* rate mode: the knee's point, -1 none */
	char knee_why[96];
};

/* One request of the current point. */
enum rec_state { REC_UNSENT, REC_SENT, REC_OK, REC_BUSY, REC_ERROR, REC_UNTRACED, REC_LOST };

struct probe_rec {
	uint64_t intended_tsc;
	uint64_t send_tsc;
	uint64_t recv_tsc;
	uint64_t trace[5];
	uint8_t state;
};

struct probe;

/* A mode: how one point is measured. Chosen once at start-up. */
struct mode_ops {
	const char *name;
	const char *list_option; /* the option that lists its points; NULL: one point */
	const char *param_head;  /* the summary's first column */
	int open_loop;
	int (*run_point)(struct probe *p, struct probe_target *t, uint32_t point_idx);
};

struct probe_options {
	const struct mode_ops *mode;
	double points[POINTS_MAX];
	uint32_t point_count;
	uint64_t count;
	double point_seconds;
	double max_seconds;
	uint32_t interval_us;
	uint32_t tokens;
	uint32_t timeout_ms;
	uint32_t warmup;
	const char *model;
	const char *op;
	int spin;
	int json;
	int cpu;                  /* pin the probe's thread; -1: no */
	const char *csv_path;
	const char *raw_path;
	const char *plot_prefix;
	const char *addr;
	uint16_t port;
	int device_clock_set;
	enum dclk_kind device_clock;
	uint64_t nic_bound_ns;    /* --nic-bound-ns: the appliance's NIC clock map bound; 0: not given */
	const char *ctl_socket;   /* the lone appliance's (or single placement's) control socket */
	const char *placement_list;
	uint32_t target_arg_count;
	const char *target_args[TARGETS_MAX];
	int dpdk;                 /* --dpdk: a DPDK port instead of a kernel UDP socket */
	const char *src_text;     /* --dpdk: --src, the client's address */
	struct zh_bench_dpdk_config port_cfg; /* --dpdk: --dst-mac, and the rest once the target is known */
	int eal_argc;             /* the arguments after --, behind the program's name */
	char **eal_argv;
};

struct probe {
	struct probe_options opt;
	struct host_clock clock;
	uint32_t target_count;
	struct probe_target targets[TARGETS_MAX];
	uint64_t rec_capacity;
	struct probe_rec *recs;
	double *values[STAGE_COUNT]; /* one point's values of each stage, ns */
	uint64_t run_deadline_tsc;
	uint64_t timeout_tsc;
	int truncated;               /* --max-seconds ended the run before every point */
	FILE *raw;
	struct zh_bench_dpdk *port;  /* --dpdk: the open port; NULL before it opens and once it is closed */
	int port_opened;             /* --dpdk: it opened, so port_stats are its final counters once closed */
	char port_text[96];          /* --dpdk: the port's name and MAC */
	struct zh_bench_dpdk_stats port_stats;
	uint8_t req[ZH_REQ_MAX_BYTES];
	uint32_t req_size_bytes;
	uint32_t id_offset;          /* where the 8 bytes of the id sit in req */
	uint8_t rx_buf[RX_BUF_BYTES];
};

static int run_single(struct probe *p, struct probe_target *t, uint32_t point_idx);
static int run_rate(struct probe *p, struct probe_target *t, uint32_t point_idx);
static int run_payload(struct probe *p, struct probe_target *t, uint32_t point_idx);
static int run_idle(struct probe *p, struct probe_target *t, uint32_t point_idx);

static const struct mode_ops MODES[] = {
	{ "single", NULL, "", 0, run_single },
	{ "rate", "--rates", "rate req/s", 1, run_rate },
	{ "payload", "--sizes", "tokens", 0, run_payload },
	{ "idle", "--gaps-us", "gap us", 0, run_idle },
};

static const char *const PLACEMENTS[] = { "cpu", "cuda-host", "cuda-gpudirect" };

/* SIGINT or SIGTERM: the run stops where it is and reports what it measured. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_signal = 1;
}

/* ---- clock ---- */

static inline uint64_t tsc_now(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	uint64_t t;

	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(t));
	return t;
#endif
}

/* The TSC once everything before it has completed (a receive's stamp must not run ahead of it). */
static inline uint64_t tsc_now_ordered(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_lfence();
	return __builtin_ia32_rdtsc();
#else
	uint64_t t;

	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(t) : : "memory");
	return t;
#endif
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* 1 if /proc/cpuinfo's first flags line names `flag`, 0 if not, -1 if it cannot be read. */
static int cpu_flag(const char *flag)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[8192];
	int found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		char *at = line;
		size_t len = strlen(flag);

		found = 0;
		while ((at = strstr(at, flag)) != NULL) {
			if (at[-1] == ' ' && (at[len] == ' ' || at[len] == '\n' || at[len] == '\0')) {
				found = 1;
				break;
			}
			at += len;
		}
		break;
	}
	fclose(f);
	return found;
}

/* One (TSC, CLOCK_MONOTONIC) pair from the tightest of several brackets; *width gets its TSC width. */
static void clock_pair(uint64_t *tsc, uint64_t *ns, uint64_t *width)
{
	*width = UINT64_MAX;
	for (uint32_t i = 0; i < CALIB_TRIES; i++) {
		uint64_t before = tsc_now_ordered();
		uint64_t now_ns = mono_ns();
		uint64_t after = tsc_now_ordered();

		if (after - before < *width) {
			*width = after - before;
			*tsc = before + (after - before) / 2;
			*ns = now_ns;
		}
	}
}

/* The TSC's rate against CLOCK_MONOTONIC over CALIB_WINDOW_NS; the error bound is the brackets' width
 * over the window. */
static void calibrate_tsc(struct host_clock *c)
{
	uint64_t tsc_a, ns_a, width_a, tsc_b, ns_b, width_b;
	struct timespec window = { .tv_sec = 0, .tv_nsec = (long)CALIB_WINDOW_NS };

	clock_pair(&tsc_a, &ns_a, &width_a);
	nanosleep(&window, NULL);
	clock_pair(&tsc_b, &ns_b, &width_b);
	c->tsc_hz = (double)(tsc_b - tsc_a) * 1e9 / (double)(ns_b - ns_a);
	c->ns_per_tick = 1e9 / c->tsc_hz;
	c->tsc_hz_err_ppm = ((double)width_a + (double)width_b) / 2.0 / (double)(tsc_b - tsc_a) * 1e6;
	c->tsc0 = tsc_b;
	c->mono0_ns = ns_b;
	c->constant_tsc = cpu_flag("constant_tsc");
	c->nonstop_tsc = cpu_flag("nonstop_tsc");
}

/* Two pinned threads pass a token back and forth. With the follower's TSC = the leader's + theta:
 * the leader stamps t1 and sends, the follower stamps t2 on arrival and answers, the leader stamps t4
 * on arrival; causality gives t2 - t4 < theta < t2 - t1. The tightest bounds over all rounds win. */
struct pingpong {
	_Alignas(64) uint64_t turn;      /* 2k+1: the leader's round k; 2k+2: the follower's answer */
	uint64_t follower_tsc;
	_Alignas(64) uint64_t stop;
	int cpu[2];
	uint32_t rounds;
	uint64_t deadline_tsc;
	int64_t lo_ticks, hi_ticks;
	uint32_t done_rounds;
	int pin_failed;
};

static int pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Spin until `turn` reads `want`; 0, or -1 when the pair is stopped or out of time. */
static int await_turn(struct pingpong *pp, uint64_t want)
{
	while (__atomic_load_n(&pp->turn, __ATOMIC_ACQUIRE) != want) {
		if (__atomic_load_n(&pp->stop, __ATOMIC_RELAXED))
			return -1;
		if (tsc_now() > pp->deadline_tsc) {
			__atomic_store_n(&pp->stop, 1, __ATOMIC_RELAXED);
			return -1;
		}
	}
	return 0;
}

static void *pingpong_follower(void *arg)
{
	struct pingpong *pp = arg;

	if (pin_self(pp->cpu[1]) != 0) {
		pp->pin_failed = 1;
		__atomic_store_n(&pp->stop, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	for (uint64_t k = 0; k < pp->rounds; k++) {
		if (await_turn(pp, 2 * k + 1) != 0)
			break;
		pp->follower_tsc = tsc_now_ordered();
		/* Release: the leader reads follower_tsc after it sees the answer. */
		__atomic_store_n(&pp->turn, 2 * k + 2, __ATOMIC_RELEASE);
	}
	return NULL;
}

static void *pingpong_leader(void *arg)
{
	struct pingpong *pp = arg;

	if (pin_self(pp->cpu[0]) != 0) {
		pp->pin_failed = 1;
		__atomic_store_n(&pp->stop, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	pp->lo_ticks = INT64_MIN;
	pp->hi_ticks = INT64_MAX;
	for (uint64_t k = 0; k < pp->rounds; k++) {
		uint64_t t1 = tsc_now_ordered();

		/* Release: nothing to publish but the turn; it only orders t1 before the handover. */
		__atomic_store_n(&pp->turn, 2 * k + 1, __ATOMIC_RELEASE);
		if (await_turn(pp, 2 * k + 2) != 0)
			break;
		uint64_t t4 = tsc_now_ordered();
		int64_t t2_t1 = (int64_t)(pp->follower_tsc - t1);
		int64_t t2_t4 = (int64_t)(pp->follower_tsc - t4);

		if (t2_t1 < pp->hi_ticks)
			pp->hi_ticks = t2_t1;
		if (t2_t4 > pp->lo_ticks)
			pp->lo_ticks = t2_t4;
		pp->done_rounds = (uint32_t)k + 1;
	}
	return NULL;
}

/* The offset of core b's TSC from core a's, bounded; -1 if the threads could not run there. */
static int measure_pair(const struct host_clock *c, int cpu_a, int cpu_b, double *lo_ns, double *hi_ns,
			uint32_t *rounds)
{
	struct pingpong pp;
	pthread_t leader, follower;

	memset(&pp, 0, sizeof(pp));
	pp.cpu[0] = cpu_a;
	pp.cpu[1] = cpu_b;
	pp.rounds = PINGPONG_ROUNDS;
	pp.deadline_tsc = tsc_now() + (uint64_t)((double)PINGPONG_NS_MAX / c->ns_per_tick);
	if (pthread_create(&follower, NULL, pingpong_follower, &pp) != 0)
		return -1;
	if (pthread_create(&leader, NULL, pingpong_leader, &pp) != 0) {
		__atomic_store_n(&pp.stop, 1, __ATOMIC_RELAXED);
		pthread_join(follower, NULL);
		return -1;
	}
	pthread_join(leader, NULL);
	__atomic_store_n(&pp.stop, 1, __ATOMIC_RELAXED);
	pthread_join(follower, NULL);
	if (pp.pin_failed || pp.done_rounds == 0)
		return -1;
	*lo_ns = (double)pp.lo_ticks * c->ns_per_tick;
	*hi_ns = (double)pp.hi_ticks * c->ns_per_tick;
	*rounds = pp.done_rounds;
	return 0;
}

/* Each allowed core against the first; the bound between any two follows from their intervals. */
static void measure_cross_core(struct host_clock *c)
{
	cpu_set_t set;
	uint64_t end_ns = mono_ns() + CROSS_TOTAL_NS_MAX;

	c->cross_cpu_count = 0;
	c->cross_bound_ns = 0.0;
	c->cross_rounds = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE && c->cross_cpu_count < CROSS_CPUS_MAX && mono_ns() < end_ns; cpu++) {
		if (!CPU_ISSET(cpu, &set))
			continue;
		uint32_t i = c->cross_cpu_count;
		uint32_t rounds = 0;

		c->cross_cpus[i] = cpu;
		c->cross_lo_ns[i] = 0.0;
		c->cross_hi_ns[i] = 0.0;
		if (i > 0 && measure_pair(c, c->cross_cpus[0], cpu, &c->cross_lo_ns[i], &c->cross_hi_ns[i],
					  &rounds) != 0)
			continue;
		if (i > 0 && (c->cross_rounds == 0 || rounds < c->cross_rounds))
			c->cross_rounds = rounds;
		c->cross_cpu_count++;
	}
	/* theta_ij = theta_j - theta_i lies in [lo_j - hi_i, hi_j - lo_i]. */
	for (uint32_t i = 0; i < c->cross_cpu_count; i++)
		for (uint32_t j = 0; j < c->cross_cpu_count; j++) {
			double worst = fmax(fabs(c->cross_lo_ns[j] - c->cross_hi_ns[i]),
					    fabs(c->cross_hi_ns[j] - c->cross_lo_ns[i]));

			if (i != j && worst > c->cross_bound_ns)
				c->cross_bound_ns = worst;
		}
}

static uint64_t ns_to_ticks(const struct probe *p, double ns)
{
	return (uint64_t)(ns / p->clock.ns_per_tick);
}

/* The run must end: --max-seconds is spent or a signal asked. */
static int run_over(const struct probe *p)
{
	return stop_signal || tsc_now() >= p->run_deadline_tsc;
}

/* ---- arguments ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: zerohop-probe [options]\n"
		"       zerohop-probe --dpdk --src A.B.C.D [options] -- EAL-ARGS\n"
		"  --addr A.B.C.D        appliance address (default 198.18.0.1; only 198.18.0.0/15 and 127.0.0.0/8)\n"
		"  --port N              appliance UDP port (default 9000)\n"
		"  --mode MODE           single (default), rate, payload or idle\n"
		"  --rates LIST          rate mode: requests per second, e.g. 1000,5000,20000\n"
		"  --sizes LIST          payload mode: token counts, e.g. 1,16,64,256\n"
		"  --gaps-us LIST        idle mode: idle microseconds before each request, e.g. 0,100,1000,10000\n"
		"  --count N             requests per point at most (default 10000, at most 1000000)\n"
		"  --seconds S           rate mode: how long each rate is offered (default 2);\n"
		"                        other modes: the most one point may take (default 10)\n"
		"  --max-seconds S       the whole run at most (default 60, at most 3600)\n"
		"  --interval-us N       single and payload: idle time between an answer and the next request\n"
		"                        (default 100)\n"
		"  --tokens N            tokens per request (default 4); payload mode sets its own\n"
		"  --model NAME          model to ask (default: the appliance's default model)\n"
		"  --op OP               operation (default: the model's default)\n"
		"  --timeout-ms N        how long an answer may take before it counts as lost (default 1000)\n"
		"  --warmup N            untimed requests before the first point of each target (default 200)\n"
		"  --spin                busy-poll the socket instead of sleeping in ppoll (costs a core)\n"
		"  --cpu N               pin the probe to core N\n"
		"  --device-clock KIND   tsc (the cpu device, default) or ns (CUDA %%globaltimer)\n"
		"  --nic-bound-ns N      the appliance's NIC rx timestamp bound (`zerohopctl status`), for the\n"
		"                        stages split at the NIC rx time\n"
		"  --placement LIST      compare placements (cpu, cuda-host, cuda-gpudirect), one appliance each\n"
		"  --target NAME=A:P[,ctl=PATH]  the appliance serving placement NAME (repeat per placement),\n"
		"                        and its control socket, for its device clock's calibration\n"
		"  --ctl-socket PATH     the lone appliance's control socket: its device clock's calibration\n"
		"                        turns CUDA (ns) device stamps into calibrated stages\n"
		"  --json                print the report as JSON instead of tables\n"
		"  --csv FILE            one row per (point, stage) with every percentile\n"
		"  --raw FILE            every request's stamps, one row each\n"
		"  --plot PREFIX         PREFIX-stages.png and PREFIX-percentiles.png, drawn with gnuplot\n"
		"  --dpdk                send and receive through a DPDK port instead of a kernel UDP socket; the\n"
		"                        EAL arguments follow --, must hold --no-pci and name the port,\n"
		"                        e.g. -- --no-pci --no-shconf --no-telemetry --no-huge -m 256\n"
		"                        --vdev net_af_xdp0,iface=zh0c -l 1 (-l chooses the probe's core: no --cpu);\n"
		"                        one target only\n"
		"  --src A.B.C.D         --dpdk: the client's address (only 198.18.0.0/15 and 127.0.0.0/8)\n"
		"  --dst-mac MAC         --dpdk: the appliance's MAC (default: asked with ARP)\n"
		"exit status: 0 done, 1 I/O error, no traced answer or failed output, 2 usage, refused address or\n"
		"             source, or EAL arguments without --no-pci\n");
}

/* A comma-separated list of whole numbers in [min, max]. */
static int parse_list(const char *text, uint64_t min, uint64_t max, double *out, uint32_t *count)
{
	char buf[512];
	char *save = NULL;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, text);
	*count = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (*count == POINTS_MAX || zh_cli_parse_u64(tok, min, max, &v) != 0)
			return -EINVAL;
		out[(*count)++] = (double)v;
	}
	return *count > 0 ? 0 : -EINVAL;
}

/* -EINVAL: not an address; -EPERM: an address outside the allowed ranges. */
static int set_address(struct probe_target *t, const char *addr, uint16_t port)
{
	memset(&t->addr, 0, sizeof(t->addr));
	t->addr.sin_family = AF_INET;
	t->addr.sin_port = htons(port);
	if (inet_pton(AF_INET, addr, &t->addr.sin_addr) != 1)
		return -EINVAL;
	if (!zh_cli_dest_allowed(t->addr.sin_addr))
		return -EPERM;
	snprintf(t->addr_text, sizeof(t->addr_text), "%s:%u", addr, port);
	return 0;
}

/* The placement of that name (a static string), or NULL. */
static const char *placement_named(const char *name)
{
	for (size_t i = 0; i < sizeof(PLACEMENTS) / sizeof(PLACEMENTS[0]); i++)
		if (strcmp(name, PLACEMENTS[i]) == 0)
			return PLACEMENTS[i];
	return NULL;
}


/* The control socket's path for a target: 0, or -EINVAL when it does not fit a socket address. */
static int set_ctl_path(struct probe_target *t, const char *path)
{
	if (!path[0] || strlen(path) >= sizeof(t->ctl_path))
		return -EINVAL;
	strcpy(t->ctl_path, path);
	return 0;
}

/* "NAME=ADDR:PORT[,ctl=PATH]" into a target; the device clock follows from the placement (or from the
 * map the control socket gives). Returns 0, -EINVAL (malformed, or not a placement) or -EPERM (an
 * address outside the allowed ranges). */
static int parse_target(const char *text, struct probe_target *t)
{
	char buf[96 + sizeof(t->ctl_path)];
	uint64_t port;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, text);
	char *ctl = strstr(buf, ",ctl=");
	if (ctl) {
		*ctl = '\0';
		if (set_ctl_path(t, ctl + 5) != 0)
			return -EINVAL;
	}
	char *eq = strchr(buf, '=');
	char *colon = strrchr(buf, ':');
	if (!eq || !colon || colon < eq)
		return -EINVAL;
	*eq = '\0';
	*colon = '\0';
	t->name = placement_named(buf);
	if (!t->name || zh_cli_parse_u64(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	t->dclk = strcmp(t->name, "cpu") == 0 ? DCLK_TSC : DCLK_NS;
	return set_address(t, eq + 1, (uint16_t)port);
}

static int address_error(int rc, const char *what)
{
	if (rc == -EPERM)
		fprintf(stderr, "zerohop-probe: refused: %s is outside 198.18.0.0/15 and 127.0.0.0/8\n", what);
	else
		fprintf(stderr, "zerohop-probe: bad address: %s (--target wants PLACEMENT=ADDR:PORT[,ctl=PATH], "
			"PLACEMENT one of cpu, cuda-host, cuda-gpudirect)\n", what);
	return EXIT_USAGE;
}

/* --placement LIST: one target per placement, each from its --target (a single placement without one
 * uses --addr and --port). Returns 0 or an exit status. */
static int resolve_placements(struct probe *p, const struct probe_target *given, uint32_t given_count)
{
	const struct probe_options *opt = &p->opt;
	char buf[128];
	char *save = NULL;
	uint32_t names = 0;
	uint32_t used = 0;

	if (strlen(opt->placement_list) >= sizeof(buf))
		return address_error(-EINVAL, opt->placement_list);
	strcpy(buf, opt->placement_list);
	for (const char *c = buf; *c; c++)
		names += *c == ',';
	names++;
	for (char *name = strtok_r(buf, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		struct probe_target *t = &p->targets[p->target_count];
		uint32_t j = 0;

		if (!placement_named(name) || p->target_count == TARGETS_MAX) {
			fprintf(stderr, "zerohop-probe: --placement takes cpu, cuda-host, cuda-gpudirect: %s\n", name);
			return EXIT_USAGE;
		}
		for (uint32_t k = 0; k < p->target_count; k++)
			if (strcmp(p->targets[k].name, name) == 0) {
				fprintf(stderr, "zerohop-probe: --placement names %s twice\n", name);
				return EXIT_USAGE;
			}
		while (j < given_count && strcmp(given[j].name, name) != 0)
			j++;
		if (j < given_count) {
			*t = given[j];
			used++;
		} else if (names == 1 && given_count == 0) {
			int rc = set_address(t, opt->addr, opt->port);

			if (rc)
				return address_error(rc, opt->addr);
			t->name = placement_named(name);
			t->dclk = strcmp(t->name, "cpu") == 0 ? DCLK_TSC : DCLK_NS;
			if (opt->ctl_socket && set_ctl_path(t, opt->ctl_socket) != 0)
				return address_error(-EINVAL, opt->ctl_socket);
		} else {
			fprintf(stderr, "zerohop-probe: placement %s has no --target %s=ADDR:PORT: this build cannot "
				"restart the appliance, so run one appliance per placement, each on its own address "
				"or port\n", name, name);
			return EXIT_USAGE;
		}
		p->target_count++;
	}
	if (used != given_count) {
		fprintf(stderr, "zerohop-probe: every --target must name a placement of --placement\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* The targets from --placement, --target, or --addr and --port. Returns 0 or an exit status. */
static int resolve_targets(struct probe *p)
{
	const struct probe_options *opt = &p->opt;
	struct probe_target given[TARGETS_MAX];

	memset(given, 0, sizeof(given));
	for (uint32_t i = 0; i < opt->target_arg_count; i++) {
		int rc = parse_target(opt->target_args[i], &given[i]);

		if (rc)
			return address_error(rc, opt->target_args[i]);
		for (uint32_t k = 0; k < i; k++)
			if (strcmp(given[k].name, given[i].name) == 0) {
				fprintf(stderr, "zerohop-probe: two --target for %s\n", given[i].name);
				return EXIT_USAGE;
			}
	}
	if ((opt->placement_list || opt->target_arg_count) && opt->device_clock_set) {
		fprintf(stderr, "zerohop-probe: --device-clock is for a lone appliance; a placement implies "
			"its clock (cpu: tsc, cuda-*: ns)\n");
		return EXIT_USAGE;
	}
	if (opt->ctl_socket && opt->target_arg_count) {
		fprintf(stderr, "zerohop-probe: --ctl-socket is for a lone appliance; give each --target its own "
			"(PLACEMENT=ADDR:PORT,ctl=PATH)\n");
		return EXIT_USAGE;
	}
	if (opt->placement_list)
		return resolve_placements(p, given, opt->target_arg_count);
	for (uint32_t i = 0; i < opt->target_arg_count; i++)
		p->targets[p->target_count++] = given[i];
	if (p->target_count == 0) {
		struct probe_target *t = &p->targets[p->target_count++];
		int rc = set_address(t, opt->addr, opt->port);

		if (rc)
			return address_error(rc, opt->addr);
		t->dclk = opt->device_clock;
		t->name = t->dclk == DCLK_TSC ? "cpu" : "cuda";
		if (opt->ctl_socket && set_ctl_path(t, opt->ctl_socket) != 0)
			return address_error(-EINVAL, opt->ctl_socket);
	}
	return 0;
}

/* --dpdk, before the EAL starts: one port sends to one destination, so one target; the source address
 * obeys the destination rule, and the EAL arguments keep DPDK off this machine's PCI devices. Returns 0
 * or an exit status, after saying why. */
static int dpdk_preflight(struct probe *p)
{
	struct zh_bench_dpdk_config *cfg = &p->opt.port_cfg;

	if (!p->opt.dpdk)
		return 0;
	if (p->target_count != 1) {
		fprintf(stderr, "zerohop-probe: --dpdk drives one port toward one appliance: give one target, not "
			"%u (run the probe once per placement)\n", p->target_count);
		return EXIT_USAGE;
	}
	if (zh_bench_dpdk_preflight(p->opt.src_text, p->opt.eal_argc, p->opt.eal_argv, cfg) != 0)
		return EXIT_USAGE;
	cfg->dst_ip = p->targets[0].addr.sin_addr;
	cfg->dst_port = p->targets[0].addr.sin_port;
	return 0;
}

/* In the order of longopts: a bad value's message names longopts[c - O_ADDR]. */
enum {
	O_ADDR = 256, O_PORT, O_MODE, O_RATES, O_SIZES, O_GAPS, O_COUNT, O_SECONDS, O_MAX_SECONDS, O_INTERVAL,
	O_TOKENS, O_MODEL, O_OP, O_TIMEOUT, O_WARMUP, O_SPIN, O_CPU, O_DEVICE_CLOCK, O_PLACEMENT, O_TARGET,
	O_CTL_SOCKET, O_JSON, O_CSV, O_RAW, O_PLOT, O_NIC_BOUND, O_DPDK, O_SRC, O_DST_MAC, O_HELP
};

static const struct option LONGOPTS[] = {
	{ "addr", required_argument, NULL, O_ADDR },
	{ "port", required_argument, NULL, O_PORT },
	{ "mode", required_argument, NULL, O_MODE },
	{ "rates", required_argument, NULL, O_RATES },
	{ "sizes", required_argument, NULL, O_SIZES },
	{ "gaps-us", required_argument, NULL, O_GAPS },
	{ "count", required_argument, NULL, O_COUNT },
	{ "seconds", required_argument, NULL, O_SECONDS },
	{ "max-seconds", required_argument, NULL, O_MAX_SECONDS },
	{ "interval-us", required_argument, NULL, O_INTERVAL },
	{ "tokens", required_argument, NULL, O_TOKENS },
	{ "model", required_argument, NULL, O_MODEL },
	{ "op", required_argument, NULL, O_OP },
	{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
	{ "warmup", required_argument, NULL, O_WARMUP },
	{ "spin", no_argument, NULL, O_SPIN },
	{ "cpu", required_argument, NULL, O_CPU },
	{ "device-clock", required_argument, NULL, O_DEVICE_CLOCK },
	{ "placement", required_argument, NULL, O_PLACEMENT },
	{ "target", required_argument, NULL, O_TARGET },
	{ "ctl-socket", required_argument, NULL, O_CTL_SOCKET },
	{ "json", no_argument, NULL, O_JSON },
	{ "csv", required_argument, NULL, O_CSV },
	{ "raw", required_argument, NULL, O_RAW },
	{ "plot", required_argument, NULL, O_PLOT },
	{ "nic-bound-ns", required_argument, NULL, O_NIC_BOUND },
	{ "dpdk", no_argument, NULL, O_DPDK },
	{ "src", required_argument, NULL, O_SRC },
	{ "dst-mac", required_argument, NULL, O_DST_MAC },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

/* The point lists as given, checked once the mode is known. */
struct list_args {
	const char *text[3]; /* --rates, --sizes, --gaps-us */
};

static int parse_number_option(int c, const char *arg, struct probe_options *opt)
{
	uint64_t v = 0;
	int rc;

	switch (c) {
	case O_PORT: rc = zh_cli_parse_u64(arg, 1, 65535, &v); opt->port = (uint16_t)v; return rc;
	case O_COUNT: rc = zh_cli_parse_u64(arg, 1, COUNT_MAX, &opt->count); return rc;
	case O_SECONDS: return zh_cli_parse_double(arg, 0.001, MAX_SECONDS_MAX, &opt->point_seconds);
	case O_MAX_SECONDS: return zh_cli_parse_double(arg, 0.1, MAX_SECONDS_MAX, &opt->max_seconds);
	case O_INTERVAL: rc = zh_cli_parse_u64(arg, 0, INTERVAL_US_MAX, &v); opt->interval_us = (uint32_t)v; return rc;
	case O_TOKENS: rc = zh_cli_parse_u64(arg, 0, ZH_TOKENS_MAX, &v); opt->tokens = (uint32_t)v; return rc;
	case O_TIMEOUT: rc = zh_cli_parse_u64(arg, 1, TIMEOUT_MS_MAX, &v); opt->timeout_ms = (uint32_t)v; return rc;
	case O_WARMUP: rc = zh_cli_parse_u64(arg, 0, WARMUP_MAX, &v); opt->warmup = (uint32_t)v; return rc;
	case O_CPU: rc = zh_cli_parse_u64(arg, 0, CPU_SETSIZE - 1, &v); opt->cpu = (int)v; return rc;
	case O_NIC_BOUND: return zh_cli_parse_u64(arg, 1, 1000000000ull, &opt->nic_bound_ns);
	}
	return -EINVAL;
}

static int parse_text_option(int c, const char *arg, struct probe_options *opt, struct list_args *lists)
{
	switch (c) {
	case O_ADDR: opt->addr = arg; return 0;
	case O_MODE:
		for (size_t i = 0; i < sizeof(MODES) / sizeof(MODES[0]); i++)
			if (strcmp(arg, MODES[i].name) == 0) {
				opt->mode = &MODES[i];
				return 0;
			}
		return -EINVAL;
	case O_RATES: lists->text[0] = arg; return 0;
	case O_SIZES: lists->text[1] = arg; return 0;
	case O_GAPS: lists->text[2] = arg; return 0;
	case O_MODEL: opt->model = arg; return arg[0] && strlen(arg) <= ZH_MODEL_NAME_MAX ? 0 : -EINVAL;
	case O_OP: opt->op = arg; return arg[0] && strlen(arg) <= 16 ? 0 : -EINVAL;
	case O_SPIN: opt->spin = 1; return 0;
	case O_DEVICE_CLOCK:
		opt->device_clock_set = 1;
		opt->device_clock = strcmp(arg, "ns") == 0 ? DCLK_NS : DCLK_TSC;
		return strcmp(arg, "ns") == 0 || strcmp(arg, "tsc") == 0 ? 0 : -EINVAL;
	case O_PLACEMENT: opt->placement_list = arg; return 0;
	case O_TARGET:
		if (opt->target_arg_count == TARGETS_MAX)
			return -EINVAL;
		opt->target_args[opt->target_arg_count++] = arg;
		return 0;
	case O_CTL_SOCKET: opt->ctl_socket = arg; return arg[0] ? 0 : -EINVAL;
	case O_JSON: opt->json = 1; return 0;
	case O_CSV: opt->csv_path = arg; return 0;
	case O_RAW: opt->raw_path = arg; return 0;
	case O_PLOT: opt->plot_prefix = arg; return 0;
	case O_DPDK: opt->dpdk = 1; return 0;
	case O_SRC: opt->src_text = arg; return 0;
	case O_DST_MAC:
		opt->port_cfg.dst_mac_given = 1;
		return zh_bench_dpdk_parse_mac(arg, opt->port_cfg.dst_mac);
	}
	return parse_number_option(c, arg, opt);
}

/* The mode's own list, and no other. */
static int check_lists(struct probe_options *opt, const struct list_args *lists)
{
	static const uint64_t mins[3] = { 1, 0, 0 };
	static const uint64_t maxs[3] = { (uint64_t)RATE_MAX_RPS, ZH_TOKENS_MAX, GAP_US_MAX };

	for (uint32_t i = 0; i < 3; i++) {
		int mine = opt->mode == &MODES[i + 1];

		if (lists->text[i] && !mine) {
			fprintf(stderr, "zerohop-probe: %s is for --mode %s\n", MODES[i + 1].list_option,
				MODES[i + 1].name);
			return EXIT_USAGE;
		}
		if (mine && (!lists->text[i] ||
			     parse_list(lists->text[i], mins[i], maxs[i], opt->points, &opt->point_count) != 0)) {
			fprintf(stderr, "zerohop-probe: --mode %s needs %s: up to %u comma-separated numbers in "
				"%" PRIu64 "..%" PRIu64 "\n", MODES[i + 1].name, MODES[i + 1].list_option, POINTS_MAX,
				mins[i], maxs[i]);
			return EXIT_USAGE;
		}
	}
	if (opt->mode == &MODES[0]) {
		opt->points[0] = 0.0;
		opt->point_count = 1;
	}
	return 0;
}

/* --dpdk and its options go together: the frames need a source address and the EAL its arguments; the
 * EAL's -l pins the probe, so --cpu would fight it. Returns 0, or EXIT_USAGE after saying why. */
static int check_dpdk_options(struct probe_options *opt)
{
	if (!opt->dpdk) {
		if (opt->src_text || opt->port_cfg.dst_mac_given) {
			fprintf(stderr, "zerohop-probe: --src and --dst-mac apply to --dpdk\n");
			return EXIT_USAGE;
		}
		if (opt->eal_argv) {
			fprintf(stderr, "zerohop-probe: arguments after -- are the EAL's, for --dpdk\n");
			return EXIT_USAGE;
		}
		return 0;
	}
	if (!opt->src_text) {
		fprintf(stderr, "zerohop-probe: --dpdk needs --src (the client's address, e.g. devnet.sh env's "
			"CLIENT_IP)\n");
		return EXIT_USAGE;
	}
	if (!opt->eal_argv) {
		fprintf(stderr, "zerohop-probe: --dpdk needs EAL arguments after --, e.g. -- --no-pci --no-shconf "
			"--no-telemetry --no-huge -m 256 --vdev net_af_xdp0,iface=zh0c -l 1\n");
		return EXIT_USAGE;
	}
	if (opt->cpu >= 0) {
		fprintf(stderr, "zerohop-probe: --cpu does not apply to --dpdk: the EAL runs the probe on the first "
			"core of its -l and pins it there\n");
		return EXIT_USAGE;
	}
	opt->port_cfg.src_port_first = DPDK_SRC_PORT;
	opt->port_cfg.src_port_count = 1;
	opt->port_cfg.arp_wait_ms = DPDK_ARP_WAIT_MS;
	return 0;
}

/* Returns 0 to run, or the exit status to leave with (0 after --help). */
static int parse_args(int argc, char **argv, struct probe_options *opt, int *leave)
{
	struct list_args lists;
	int c;

	memset(opt, 0, sizeof(*opt));
	memset(&lists, 0, sizeof(lists));
	opt->mode = &MODES[0];
	opt->count = COUNT_DEFAULT;
	opt->max_seconds = MAX_SECONDS_DEFAULT;
	opt->interval_us = INTERVAL_US_DEFAULT;
	opt->tokens = TOKENS_DEFAULT;
	opt->timeout_ms = TIMEOUT_MS_DEFAULT;
	opt->warmup = WARMUP_DEFAULT;
	opt->cpu = -1;
	opt->addr = "198.18.0.1";
	opt->port = 9000;
	*leave = 1;
	while ((c = getopt_long(argc, argv, "", LONGOPTS, NULL)) != -1) {
		if (c == O_HELP) {
			usage(stdout);
			return EXIT_RUN_OK;
		}
		if (c < O_ADDR || c > O_HELP) {
			usage(stderr);
			return EXIT_USAGE;
		}
		if (parse_text_option(c, optarg, opt, &lists) != 0) {
			fprintf(stderr, "zerohop-probe: bad value for --%s: %s\n", LONGOPTS[c - O_ADDR].name, optarg);
			return EXIT_USAGE;
		}
	}
	/* After `--` come the EAL's arguments. The EAL wants a program name first: the `--` slot of argv
	 * (ours to change) takes it. */
	if (optind > 1 && strcmp(argv[optind - 1], "--") == 0) {
		argv[optind - 1] = argv[0];
		opt->eal_argv = &argv[optind - 1];
		opt->eal_argc = argc - optind + 1;
	} else if (optind < argc) {
		fprintf(stderr, "zerohop-probe: unexpected argument: %s\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (check_lists(opt, &lists) != 0 || check_dpdk_options(opt) != 0)
		return EXIT_USAGE;
	if (opt->point_seconds == 0.0)
		opt->point_seconds = opt->mode->open_loop ? RATE_SECONDS_DEFAULT : CLOSED_SECONDS_DEFAULT;
	*leave = 0;
	return EXIT_RUN_OK;
}


/* ---- the device clock's map, from the appliance's control socket ---- */

/* Exactly n bytes from fd before deadline_ns (CLOCK_MONOTONIC): 0, or -errno. */
static int ctl_read_full(int fd, uint8_t *buf, uint32_t n, uint64_t deadline_ns)
{
	uint32_t got = 0;

	while (got < n) {
		uint64_t now = mono_ns();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (now >= deadline_ns)
			return -ETIMEDOUT;
		int rc = poll(&pfd, 1, (int)((deadline_ns - now) / 1000000u) + 1);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc <= 0)
			continue; /* the deadline check above ends it */
		ssize_t r = recv(fd, buf + got, n - got, 0);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		got += r > 0 ? (uint32_t)r : 0;
	}
	return 0;
}

/* One field of the reply's device_clock map into the map; unknown keys are skipped whole. */
static int read_clock_field(struct krn_mp_reader *rd, const struct krn_mp_value *key, struct zh_clock_map *m,
			    int *calibrated)
{
	static const struct { const char *key; size_t off; } U64S[] = {
		{ "tsc_hz", offsetof(struct zh_clock_map, tsc_hz) },
		{ "dclk_ref", offsetof(struct zh_clock_map, dclk_ref) },
		{ "tsc_ref", offsetof(struct zh_clock_map, tsc_ref) },
		{ "bound_ns", offsetof(struct zh_clock_map, bound_ns) },
		{ "rate_tsc", offsetof(struct zh_clock_map, rate_tsc) },
		{ "rate_dclk", offsetof(struct zh_clock_map, rate_dclk) },
		{ "rate_bound_ppb", offsetof(struct zh_clock_map, rate_bound_ppb) },
		{ "step_ns", offsetof(struct zh_clock_map, step_ns) },
		{ "rtt_ns", offsetof(struct zh_clock_map, rtt_ns) },
		{ "first_dclk", offsetof(struct zh_clock_map, first_dclk) },
	};
	struct krn_mp_value v;

	for (size_t i = 0; i < sizeof(U64S) / sizeof(U64S[0]); i++)
		if (krn_mp_str_eq(key, U64S[i].key)) {
			if (krn_mp_read(rd, &v) != KRN_MP_OK || v.type != KRN_MP_UINT)
				return -EINVAL;
			memcpy((uint8_t *)m + U64S[i].off, &v.v.u, sizeof(uint64_t));
			return 0;
		}
	if (krn_mp_str_eq(key, "samples")) {
		if (krn_mp_read(rd, &v) != KRN_MP_OK || v.type != KRN_MP_UINT)
			return -EINVAL;
		m->sample_count = v.v.u > UINT32_MAX ? UINT32_MAX : (uint32_t)v.v.u;
		return 0;
	}
	if (krn_mp_str_eq(key, "kind")) {
		if (krn_mp_read(rd, &v) != KRN_MP_OK || (!krn_mp_str_eq(&v, "tsc") && !krn_mp_str_eq(&v, "ns")))
			return -EINVAL;
		m->kind = krn_mp_str_eq(&v, "tsc") ? ZH_CLOCK_TSC : ZH_CLOCK_NS;
		return 0;
	}
	if (krn_mp_str_eq(key, "calibrated") || krn_mp_str_eq(key, "stale") || krn_mp_str_eq(key, "rate_measured")) {
		if (krn_mp_read(rd, &v) != KRN_MP_OK || v.type != KRN_MP_BOOL)
			return -EINVAL;
		if (krn_mp_str_eq(key, "calibrated"))
			*calibrated = v.v.boolean;
		else if (krn_mp_str_eq(key, "stale"))
			m->stale = (uint32_t)v.v.boolean;
		else
			m->rate_measured = (uint32_t)v.v.boolean;
		return 0;
	}
	return krn_mp_skip(rd) == KRN_MP_OK ? 0 : -EINVAL;
}

/* The `status` reply's result.device_clock, read with the bounded reader. 0, -ENOENT (an appliance
 * without one), or -EINVAL (malformed, or an error status). */
static int parse_status_reply(const uint8_t *buf, uint32_t len, struct zh_clock_map *m, int *calibrated,
			      uint64_t *nic_bound_ns)
{
	struct krn_mp_reader rd;
	struct krn_mp_value top, key, v;
	int found = 0;

	krn_mp_reader_init(&rd, buf, len);
	if (krn_mp_read(&rd, &top) != KRN_MP_OK || top.type != KRN_MP_MAP)
		return -EINVAL;
	for (uint32_t i = 0; i < top.size; i++) {
		if (krn_mp_read(&rd, &key) != KRN_MP_OK || key.type != KRN_MP_STR)
			return -EINVAL;
		if (krn_mp_str_eq(&key, "status")) {
			if (krn_mp_read(&rd, &v) != KRN_MP_OK || v.type != KRN_MP_UINT || v.v.u != 0)
				return -EINVAL;
			continue;
		}
		if (!krn_mp_str_eq(&key, "result")) {
			if (krn_mp_skip(&rd) != KRN_MP_OK)
				return -EINVAL;
			continue;
		}
		struct krn_mp_value result;
		if (krn_mp_read(&rd, &result) != KRN_MP_OK || result.type != KRN_MP_MAP)
			return -EINVAL;
		for (uint32_t k = 0; k < result.size; k++) {
			if (krn_mp_read(&rd, &key) != KRN_MP_OK || key.type != KRN_MP_STR)
				return -EINVAL;
			/* The appliance's NIC clock map bound: what --nic-bound-ns would say. */
			if (krn_mp_str_eq(&key, "rx_timestamp_bound_ns")) {
				if (krn_mp_read(&rd, &v) != KRN_MP_OK || v.type != KRN_MP_UINT)
					return -EINVAL;
				*nic_bound_ns = v.v.u;
				continue;
			}
			if (!krn_mp_str_eq(&key, "device_clock")) {
				if (krn_mp_skip(&rd) != KRN_MP_OK)
					return -EINVAL;
				continue;
			}
			struct krn_mp_value clock;
			if (krn_mp_read(&rd, &clock) != KRN_MP_OK || clock.type != KRN_MP_MAP)
				return -EINVAL;
			for (uint32_t f = 0; f < clock.size; f++)
				if (krn_mp_read(&rd, &key) != KRN_MP_OK || key.type != KRN_MP_STR ||
				    read_clock_field(&rd, &key, m, calibrated) != 0)
					return -EINVAL;
			found = 1;
		}
	}
	return found ? 0 : -ENOENT;
}

/*
 * Ask the appliance at ctl_path for `status` and take its device clock map. Bounded by
 * CTL_TIMEOUT_MS. 0 with *m usable, or -errno with the reason in why.
 */
static int fetch_clock_map(const char *ctl_path, struct zh_clock_map *m, uint64_t *nic_bound_ns, char *why,
			   size_t why_size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t deadline = mono_ns() + CTL_TIMEOUT_MS * 1000000ull;
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_MS / 1000, .tv_usec = (CTL_TIMEOUT_MS % 1000) * 1000 };
	uint8_t req[64], head[4];
	uint8_t *reply = NULL;
	struct krn_mp_writer w;
	int calibrated = 0;
	int rc = 0;
	int fd;

	memset(m, 0, sizeof(*m));
	strcpy(sa.sun_path, ctl_path); /* its length was checked when it was given */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, why_size, "socket: %s", strerror(-rc));
		return rc;
	}
	/* Bounds the connect and the send; the reply's reads are bounded by the deadline. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		snprintf(why, why_size, "%s: %s", ctl_path, strerror(-rc));
		goto out;
	}
	krn_mp_writer_init(&w, req + 4, sizeof(req) - 4);
	krn_mp_put_map(&w, 3);
	krn_mp_put_cstr(&w, "v");
	krn_mp_put_uint(&w, 1);
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, 1);
	krn_mp_put_cstr(&w, "cmd");
	krn_mp_put_cstr(&w, "status");
	uint32_t n = krn_mp_writer_size(&w, req + 4);
	req[0] = (uint8_t)(n >> 24);
	req[1] = (uint8_t)(n >> 16);
	req[2] = (uint8_t)(n >> 8);
	req[3] = (uint8_t)n;
	if (send(fd, req, n + 4, MSG_NOSIGNAL) != (ssize_t)(n + 4)) {
		rc = -EIO;
		snprintf(why, why_size, "%s: cannot send the request", ctl_path);
		goto out;
	}
	rc = ctl_read_full(fd, head, 4, deadline);
	uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
	if (rc == 0 && (len == 0 || len > CTL_REPLY_MAX_BYTES))
		rc = -EMSGSIZE;
	if (rc == 0 && !(reply = malloc(len)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = ctl_read_full(fd, reply, len, deadline);
	if (rc) {
		snprintf(why, why_size, "%s: no status reply: %s", ctl_path, strerror(-rc));
		goto out;
	}
	rc = parse_status_reply(reply, len, m, &calibrated, nic_bound_ns);
	if (rc == -ENOENT)
		snprintf(why, why_size, "the appliance reports no device clock (an older zerohopd?)");
	else if (rc)
		snprintf(why, why_size, "%s: a malformed status reply", ctl_path);
	else if (m->kind == ZH_CLOCK_NS && (!calibrated || !zh_clock_map_usable(m))) {
		snprintf(why, why_size, "the appliance's device clock is not calibrated (yet)");
		rc = -EAGAIN;
	}
out:
	free(reply);
	close(fd);
	return rc;
}

/* Refresh a target's map from its control socket; a kind the map gives overrides the placement's. */
static void refresh_map(struct probe_target *t)
{
	int rc;

	if (!t->ctl_path[0])
		return;
	rc = fetch_clock_map(t->ctl_path, &t->map, &t->nic_bound_ns, t->map_why, sizeof(t->map_why));
	t->map_ok = rc == 0;
	if (rc == 0 || rc == -EAGAIN)
		t->dclk = t->map.kind == ZH_CLOCK_TSC ? DCLK_TSC : DCLK_NS;
}

/* ---- requests and answers ---- */

static int open_socket(struct probe_target *t)
{
	int size = SOCK_BUF_BYTES;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc;

	if (fd < 0)
		return -errno;
	/* Best effort: the kernel caps these at its own limits. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (connect(fd, (const struct sockaddr *)&t->addr, sizeof(t->addr)) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	t->fd = fd;
	return 0;
}

/* A point's request: {"id", "tokens", "trace": true[, "model"][, "op"]}. The id is written as a uint64
 * (0xcf and 8 bytes) so that each request patches it in place. */
static int build_request(struct probe *p, uint32_t tokens)
{
	const struct probe_options *opt = &p->opt;
	struct krn_mp_writer w;
	uint32_t keys = 3 + (opt->model != NULL) + (opt->op != NULL);

	krn_mp_writer_init(&w, p->req, sizeof(p->req));
	krn_mp_put_map(&w, keys);
	krn_mp_put_cstr(&w, "id");
	p->id_offset = krn_mp_writer_size(&w, p->req) + 1;
	krn_mp_put_uint(&w, UINT64_MAX);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, tokens);
	for (uint32_t i = 0; i < tokens; i++)
		krn_mp_put_uint(&w, 1 + i % TOKEN_ID_SPAN);
	krn_mp_put_cstr(&w, "trace");
	krn_mp_put_bool(&w, 1);
	if (opt->model) {
		krn_mp_put_cstr(&w, "model");
		krn_mp_put_cstr(&w, opt->model);
	}
	if (opt->op) {
		krn_mp_put_cstr(&w, "op");
		krn_mp_put_cstr(&w, opt->op);
	}
	if (w.overflow || p->req[p->id_offset - 1] != 0xcf)
		return -EMSGSIZE;
	p->req_size_bytes = krn_mp_writer_size(&w, p->req);
	return 0;
}

static void set_request_id(struct probe *p, uint64_t id)
{
	for (uint32_t i = 0; i < 8; i++)
		p->req[p->id_offset + i] = (uint8_t)(id >> (56 - 8 * i));
}

struct answer {
	int has_id;
	uint64_t id;
	int has_status;
	uint64_t status;
	int has_trace;
	uint64_t trace[5];
	const uint8_t *error;
	uint32_t error_len;
};

static int read_trace(struct krn_mp_reader *r, struct answer *a)
{
	struct krn_mp_value v;

	/* Four values from appliances before NIC rx timestamps; the fifth (0: none) since. */
	if (krn_mp_read(r, &v) != 0 || v.type != KRN_MP_ARRAY || (v.size != 4 && v.size != 5))
		return -EPROTO;
	uint32_t count = v.size;

	a->trace[4] = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (krn_mp_read(r, &v) != 0 || v.type != KRN_MP_UINT)
			return -EPROTO;
		a->trace[i] = v.v.u;
	}
	a->has_trace = 1;
	return 0;
}

/* The keys the probe reads; everything else is skipped. */
static int read_answer_key(struct krn_mp_reader *r, const struct krn_mp_value *key, struct answer *a)
{
	struct krn_mp_value v;

	if (krn_mp_str_eq(key, "trace"))
		return read_trace(r, a);
	if (!krn_mp_str_eq(key, "id") && !krn_mp_str_eq(key, "status") && !krn_mp_str_eq(key, "error"))
		return krn_mp_skip(r) == 0 ? 0 : -EPROTO;
	if (krn_mp_read(r, &v) != 0)
		return -EPROTO;
	if (krn_mp_str_eq(key, "id")) {
		if (v.type != KRN_MP_UINT && v.type != KRN_MP_NIL)
			return -EPROTO;
		a->has_id = v.type == KRN_MP_UINT;
		a->id = a->has_id ? v.v.u : 0;
	} else if (krn_mp_str_eq(key, "status")) {
		if (v.type != KRN_MP_UINT)
			return -EPROTO;
		a->has_status = 1;
		a->status = v.v.u;
	} else if (v.type == KRN_MP_STR) {
		a->error = v.data;
		a->error_len = v.size;
	}
	return 0;
}

static int parse_answer(const uint8_t *buf, uint32_t size_bytes, struct answer *a)
{
	struct krn_mp_reader r;
	struct krn_mp_value map;

	memset(a, 0, sizeof(*a));
	krn_mp_reader_init(&r, buf, size_bytes);
	if (krn_mp_read(&r, &map) != 0 || map.type != KRN_MP_MAP)
		return -EPROTO;
	for (uint32_t i = 0; i < map.size; i++) {
		struct krn_mp_value key;

		if (krn_mp_read(&r, &key) != 0 || key.type != KRN_MP_STR || read_answer_key(&r, &key, a) != 0)
			return -EPROTO;
	}
	return a->has_status ? 0 : -EPROTO;
}

/* One point in flight: which answers are its own and what is still out. */
struct point_ctx {
	struct point_result *res;
	uint64_t tag;         /* the id's top bits for this point */
	int64_t closed_seq;   /* closed loop: the one request in flight; -1 in open loop */
	uint64_t pending;     /* sent and not yet answered */
	uint64_t nil_unplaced; /* open loop: answers with a nil id, which no request can be matched to */
};

/* Counts a refusal or an error, keeping the first error's text. */
static void note_status(struct point_result *res, const struct answer *a)
{
	if (a->status == ZH_STATUS_BUSY) {
		res->busy++;
		return;
	}
	res->errors++;
	if (res->errors == 1) {
		uint32_t n = a->error_len < ZH_ERROR_TEXT_MAX ? a->error_len : ZH_ERROR_TEXT_MAX;

		res->first_error_status = (uint16_t)a->status;
		memcpy(res->first_error, a->error ? (const char *)a->error : "", n);
		res->first_error[n] = '\0';
	}
}

/* A nil id: the rx lcore's busy (or an undecodable request). Only one request in flight can own it. */
static void handle_nil_answer(struct probe *p, struct point_ctx *ctx, const struct answer *a)
{
	note_status(ctx->res, a);
	if (ctx->closed_seq < 0) {
		ctx->nil_unplaced++;
		return;
	}
	struct probe_rec *rec = &p->recs[ctx->closed_seq];
	if (rec->state == REC_SENT) {
		rec->state = a->status == ZH_STATUS_BUSY ? REC_BUSY : REC_ERROR;
		ctx->pending--;
	}
}

/* One datagram's payload, `got` bytes (more than buf holds when the socket truncated it). */
static void handle_answer(struct probe *p, struct point_ctx *ctx, const uint8_t *buf, uint64_t got,
			  uint64_t recv_tsc)
{
	struct point_result *res = ctx->res;
	struct answer a;

	if (got > ZH_ANS_MAX_BYTES || parse_answer(buf, (uint32_t)got, &a) != 0) {
		res->malformed++;
		return;
	}
	if (!a.has_id) {
		handle_nil_answer(p, ctx, &a);
		return;
	}
	uint64_t seq = a.id & ID_SEQ_MASK;
	if (a.id >> ID_SEQ_BITS != ctx->tag || seq >= res->slots || p->recs[seq].state != REC_SENT) {
		res->late++; /* an earlier point's, or one already counted */
		return;
	}
	struct probe_rec *rec = &p->recs[seq];
	rec->recv_tsc = recv_tsc;
	ctx->pending--;
	if (a.status != ZH_STATUS_OK) {
		rec->state = a.status == ZH_STATUS_BUSY ? REC_BUSY : REC_ERROR;
		note_status(res, &a);
	} else if (!a.has_trace) {
		rec->state = REC_UNTRACED;
		res->untraced++;
	} else {
		memcpy(rec->trace, a.trace, sizeof(rec->trace));
		rec->state = REC_OK;
		res->answered++;
	}
}

/* --dpdk: what the port's receive callback needs to hand an answer on. */
struct dpdk_rx {
	struct probe *p;
	struct point_ctx *ctx;
};

/* The port's rx_ns is the module's nanosecond clock; the probe's stamps are raw TSC ticks, compared with
 * the appliance's TSC stamps, so each answer is stamped here, as the socket path stamps each recv. */
static void on_dpdk_answer(void *arg, const uint8_t *payload, uint32_t size, uint64_t rx_ns)
{
	struct dpdk_rx *rx = arg;
	uint64_t recv_tsc = tsc_now_ordered();

	(void)rx_ns;
	handle_answer(rx->p, rx->ctx, payload, size, recv_tsc);
}

/* --dpdk: takes what the port holds without waiting (ARP is answered on the way). Returns the frames
 * taken, answers or not, or -errno. */
static int take_answers_dpdk(struct probe *p, struct point_ctx *ctx)
{
	struct dpdk_rx rx = { .p = p, .ctx = ctx };
	int taken = 0;

	while (taken < (int)TAKE_BURST_MAX) {
		int n = zh_bench_dpdk_receive(p->port, DPDK_RX_BURST, on_dpdk_answer, &rx);

		if (n <= 0)
			return n < 0 ? n : taken;
		taken += n;
	}
	return taken;
}

/* Takes every answer waiting on the socket (or the port) without blocking. Returns how many, or -errno. */
static int take_answers(struct probe *p, struct probe_target *t, struct point_ctx *ctx)
{
	int taken = 0;

	if (p->port)
		return take_answers_dpdk(p, ctx);

	while (taken < (int)TAKE_BURST_MAX) {
		ssize_t got = recv(t->fd, p->rx_buf, sizeof(p->rx_buf), MSG_DONTWAIT | MSG_TRUNC);
		uint64_t recv_tsc = tsc_now_ordered();

		if (got < 0) {
			if (errno == EINTR || errno == ECONNREFUSED)
				continue; /* ECONNREFUSED: an ICMP error for an earlier send, not an answer */
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return taken;
			return -errno;
		}
		handle_answer(p, ctx, p->rx_buf, (uint64_t)got, recv_tsc);
		taken++;
	}
	return taken;
}

/* Waits until the socket is readable or until_tsc (at most WAKE_MAX_NS). With --spin it returns at once:
 * the caller polls. A DPDK port has nothing to wait on: the probe naps for at most DPDK_NAP_NS and the
 * caller polls the port again. */
static void wait_readable(struct probe *p, const struct probe_target *t, uint64_t until_tsc)
{
	uint64_t now = tsc_now();

	if (p->opt.spin || now >= until_tsc)
		return;
	double ns = fmin((double)(until_tsc - now) * p->clock.ns_per_tick, (double)WAKE_MAX_NS);
	if (p->port) {
		struct timespec nap = { .tv_sec = 0, .tv_nsec = (long)fmin(ns, (double)DPDK_NAP_NS) };

		nanosleep(&nap, NULL);
		return;
	}
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ns };
	struct pollfd pfd = { .fd = t->fd, .events = POLLIN, .revents = 0 };

	(void)ppoll(&pfd, 1, &ts, NULL);
}

/* Idle for at least `us` microseconds, but not past end_tsc: asleep but for the last SLEEP_MARGIN_NS,
 * which is spun on the TSC (all of it with --spin). */
static void idle_for(struct probe *p, uint32_t us, uint64_t end_tsc)
{
	uint64_t now = tsc_now();
	uint64_t until = now + ns_to_ticks(p, (double)us * 1000.0);

	if (until > end_tsc)
		until = end_tsc;
	if (until <= now)
		return;
	double ns = (double)(until - now) * p->clock.ns_per_tick;
	if (!p->opt.spin && ns > (double)SLEEP_MARGIN_NS) {
		ns -= (double)SLEEP_MARGIN_NS;
		struct timespec ts = { .tv_sec = (time_t)(ns / 1e9), .tv_nsec = (long)fmod(ns, 1e9) };

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_signal)
			;
	}
	while (tsc_now() < until && !stop_signal)
		;
}

/* One request through the DPDK port: 0 sent, 1 the port had no room (counted as the socket's full buffer
 * is), or -errno. */
static int send_dpdk(struct probe *p)
{
	struct iovec iov = { .iov_base = p->req, .iov_len = p->req_size_bytes };
	int n = zh_bench_dpdk_send(p->port, &iov, 1);

	return n < 0 ? n : n == 0;
}

/* Sends request `seq` of the point. A full socket buffer (or port), or an ICMP error, is counted, not
 * fatal. */
static int send_request(struct probe *p, struct probe_target *t, struct point_ctx *ctx, uint64_t seq,
			uint64_t intended_tsc)
{
	struct probe_rec *rec = &p->recs[seq];
	struct point_result *res = ctx->res;

	memset(rec, 0, sizeof(*rec));
	res->slots = seq + 1;
	set_request_id(p, ctx->tag << ID_SEQ_BITS | seq);
	rec->send_tsc = tsc_now();
	rec->intended_tsc = intended_tsc ? intended_tsc : rec->send_tsc;
	if (p->port) {
		int rc = send_dpdk(p);

		if (rc < 0)
			return rc;
		if (rc) {
			res->send_failed++;
			return 0;
		}
	} else if (send(t->fd, p->req, p->req_size_bytes, 0) < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != ECONNREFUSED &&
		    errno != EINTR)
			return -errno;
		res->send_failed++;
		return 0;
	}
	rec->state = REC_SENT;
	res->sent++;
	ctx->pending++;
	return 0;
}

/* ---- the loops ---- */

/* Closed loop: one request in flight, `gap_us` of idle before each. */
static int run_closed(struct probe *p, struct probe_target *t, uint64_t tag, uint64_t count, uint32_t gap_us,
		      struct point_result *res)
{
	struct point_ctx ctx = { .res = res, .tag = tag, .closed_seq = -1 };
	uint64_t start = tsc_now();
	uint64_t point_end = start + ns_to_ticks(p, p->opt.point_seconds * 1e9);
	uint64_t end = point_end < p->run_deadline_tsc ? point_end : p->run_deadline_tsc;
	uint64_t prev_recv = 0, gap_ticks = 0, gaps = 0;

	res->planned = count;
	for (uint64_t seq = 0; seq < count; seq++) {
		idle_for(p, gap_us, end);
		if (stop_signal || tsc_now() >= end) {
			res->capped = stop_signal ? "signal" : end == point_end ? "time" : "run";
			break;
		}
		ctx.closed_seq = (int64_t)seq;
		int rc = send_request(p, t, &ctx, seq, 0);
		if (rc)
			return rc;
		uint64_t deadline = p->recs[seq].send_tsc + p->timeout_tsc;
		if (deadline > p->run_deadline_tsc)
			deadline = p->run_deadline_tsc;
		while (ctx.pending > 0 && tsc_now() < deadline && !stop_signal) {
			rc = take_answers(p, t, &ctx);
			if (rc < 0)
				return rc;
			if (rc == 0 && ctx.pending > 0)
				wait_readable(p, t, deadline);
		}
		/* Out of time: the request is lost, and an answer that comes later counts as late. */
		if (p->recs[seq].state == REC_SENT)
			p->recs[seq].state = REC_LOST;
		ctx.pending = 0;
		if (prev_recv && p->recs[seq].state != REC_UNSENT) {
			gap_ticks += p->recs[seq].send_tsc - prev_recv;
			gaps++;
		}
		prev_recv = p->recs[seq].recv_tsc;
	}
	res->seconds = (double)(tsc_now() - start) * p->clock.ns_per_tick / 1e9;
	res->gap_us_mean = gaps ? (double)gap_ticks * p->clock.ns_per_tick / 1e3 / (double)gaps : 0.0;
	return 0;
}

/* Open loop at `rate` per second; each request's time runs from its place in the schedule. */
static int run_open(struct probe *p, struct probe_target *t, uint64_t tag, double rate, struct point_result *res)
{
	struct point_ctx ctx = { .res = res, .tag = tag, .closed_seq = -1 };
	double period = p->clock.tsc_hz / rate;
	double wanted = ceil(rate * p->opt.point_seconds);
	uint64_t planned = wanted > (double)p->opt.count ? p->opt.count : (uint64_t)wanted;
	uint64_t start = tsc_now() + ns_to_ticks(p, 1e6); /* 1 ms to spare before the first send */
	uint64_t drain_end = start + (uint64_t)((double)(planned - 1) * period) + p->timeout_tsc;
	uint64_t margin = ns_to_ticks(p, (double)SLEEP_MARGIN_NS);
	uint64_t next = 0;

	res->planned = planned;
	if (wanted > (double)p->opt.count)
		res->capped = "count";
	for (;;) {
		uint64_t now = tsc_now();
		uint32_t burst = 0;

		if (run_over(p)) {
			res->capped = stop_signal ? "signal" : "run";
			break;
		}
		for (; next < planned && burst < SEND_BURST_MAX; next++, burst++) {
			uint64_t intended = start + (uint64_t)((double)next * period);

			if (intended > now)
				break;
			int rc = send_request(p, t, &ctx, next, intended);
			if (rc)
				return rc;
		}
		int taken = take_answers(p, t, &ctx);
		if (taken < 0)
			return taken;
		if (next == planned && (ctx.pending <= ctx.nil_unplaced || now >= drain_end))
			break;
		/* Wake SLEEP_MARGIN_NS before the next send and spin the rest (wait_readable returns at once
		 * inside the margin). */
		if (burst == 0 && taken == 0)
			wait_readable(p, t, next < planned ? start + (uint64_t)((double)next * period) - margin :
				      drain_end);
	}
	res->seconds = (double)(tsc_now() - start) * p->clock.ns_per_tick / 1e9;
	return 0;
}

static uint64_t point_tag(const struct probe *p, const struct probe_target *t, uint32_t point_idx)
{
	return 1 + (uint64_t)(t - p->targets) * POINTS_MAX + point_idx;
}

/* Resets the point's result and builds its request. */
static struct point_result *begin_point(struct probe *p, struct probe_target *t, uint32_t point_idx,
					uint32_t tokens)
{
	struct point_result *res = &t->points[point_idx];

	memset(res, 0, sizeof(*res));
	res->param = p->opt.points[point_idx];
	res->tokens = tokens;
	if (build_request(p, tokens) != 0)
		return NULL;
	res->datagram_bytes = p->req_size_bytes;
	return res;
}

static int run_single(struct probe *p, struct probe_target *t, uint32_t point_idx)
{
	struct point_result *res = begin_point(p, t, point_idx, p->opt.tokens);

	if (!res)
		return -EMSGSIZE;
	return run_closed(p, t, point_tag(p, t, point_idx), p->opt.count, p->opt.interval_us, res);
}

static int run_rate(struct probe *p, struct probe_target *t, uint32_t point_idx)
{
	struct point_result *res = begin_point(p, t, point_idx, p->opt.tokens);

	if (!res)
		return -EMSGSIZE;
	return run_open(p, t, point_tag(p, t, point_idx), res->param, res);
}

static int run_payload(struct probe *p, struct probe_target *t, uint32_t point_idx)
{
	struct point_result *res = begin_point(p, t, point_idx, (uint32_t)p->opt.points[point_idx]);

	if (!res)
		return -EMSGSIZE;
	return run_closed(p, t, point_tag(p, t, point_idx), p->opt.count, p->opt.interval_us, res);
}

static int run_idle(struct probe *p, struct probe_target *t, uint32_t point_idx)
{
	struct point_result *res = begin_point(p, t, point_idx, p->opt.tokens);

	if (!res)
		return -EMSGSIZE;
	return run_closed(p, t, point_tag(p, t, point_idx), p->opt.count, (uint32_t)res->param, res);
}

/* Untimed requests first: ARP, caches and the appliance's idle back-off settle before the first point. */
static int warm_up(struct probe *p, struct probe_target *t)
{
	struct point_result scratch;
	int rc;

	if (p->opt.warmup == 0)
		return 0;
	memset(&scratch, 0, sizeof(scratch));
	if (build_request(p, p->opt.tokens) != 0)
		return -EMSGSIZE;
	rc = run_closed(p, t, 0, p->opt.warmup, 0, &scratch);
	if (rc == 0 && scratch.answered == 0)
		fprintf(stderr, "zerohop-probe: %s %s: no traced answer during the warm-up\n", t->name, t->addr_text);
	return rc;
}

/* ---- analysis ---- */

/* nic_split: the first stage is split at the NIC rx time. mapped: ns device stamps placed on the TSC by
 * the appliance's map: calibrated like TSC stamps. */
static void stage_rows(int open_loop, enum dclk_kind dclk, int nic_split, int mapped, uint8_t rows[STAGE_COUNT])
{
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		rows[s] = ROW_MEASURED;
	rows[STAGE_SEND_LAG] = open_loop ? ROW_MEASURED : ROW_OFF;
	rows[STAGE_WIRE_RX] = nic_split ? ROW_OFF : ROW_MEASURED;
	rows[STAGE_WIRE] = nic_split ? ROW_MEASURED : ROW_OFF;
	rows[STAGE_NIC_RX_POLL] = nic_split ? ROW_MEASURED : ROW_OFF;
	if (dclk == DCLK_TSC || mapped) {
		rows[STAGE_CLAIM_TX] = ROW_OFF;
	} else {
		rows[STAGE_CLAIM] = ROW_UNCALIBRATED;
		rows[STAGE_DONE_TX] = ROW_UNCALIBRATED;
	}
}

static double ticks_ns(const struct probe *p, uint64_t from, uint64_t to)
{
	return (double)(int64_t)(to - from) * p->clock.ns_per_tick;
}

/*
 * One request's stages in ns. Adjacent stages share a stamp, so they add up to the end-to-end time.
 * map: for ns device stamps, the appliance's map onto the TSC (NULL: none); *map_bound_ns gets the
 * larger of its bounds at the two device stamps.
 */
static void stage_values(const struct probe *p, enum dclk_kind dclk, const struct zh_clock_map *map,
			 const struct probe_rec *r, double v[STAGE_COUNT], uint64_t *map_bound_ns)
{
	uint64_t rx = r->trace[0], publish = r->trace[1], claim = r->trace[2], done = r->trace[3];
	uint64_t nic_rx = r->trace[4];
	uint64_t claim_bound_ns = 0, done_bound_ns = 0;

	if (dclk == DCLK_NS && map) {
		/* Both device stamps on the TSC: then the stages are TSC differences like the cpu device's. */
		claim = zh_clock_to_tsc(map, claim, &claim_bound_ns);
		done = zh_clock_to_tsc(map, done, &done_bound_ns);
		dclk = DCLK_TSC;
	}
	*map_bound_ns = claim_bound_ns > done_bound_ns ? claim_bound_ns : done_bound_ns;

	v[STAGE_SEND_LAG] = ticks_ns(p, r->intended_tsc, r->send_tsc);
	v[STAGE_WIRE_RX] = ticks_ns(p, r->send_tsc, rx);
	v[STAGE_WIRE] = nic_rx ? ticks_ns(p, r->send_tsc, nic_rx) : 0.0;
	v[STAGE_NIC_RX_POLL] = nic_rx ? ticks_ns(p, nic_rx, rx) : 0.0;
	v[STAGE_PUBLISH] = ticks_ns(p, rx, publish);
	v[STAGE_E2E] = ticks_ns(p, r->intended_tsc, r->recv_tsc);
	if (dclk == DCLK_TSC) {
		v[STAGE_CLAIM] = ticks_ns(p, publish, claim);
		v[STAGE_COMPUTE] = ticks_ns(p, claim, done);
		v[STAGE_DONE_TX] = ticks_ns(p, done, r->recv_tsc);
		v[STAGE_CLAIM_TX] = 0.0;
		return;
	}
	/* Two stamps of the device's own nanoseconds: a duration on one clock needs no mapping. */
	v[STAGE_COMPUTE] = (double)(int64_t)(done - claim);
	v[STAGE_CLAIM_TX] = ticks_ns(p, publish, r->recv_tsc) - v[STAGE_COMPUTE];
	v[STAGE_CLAIM] = 0.0;
	v[STAGE_DONE_TX] = 0.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least a share q of the values at or below it. */
static double quantile(const double *sorted, uint64_t n, double q)
{
	double rank = ceil(q * (double)n);
	uint64_t i = rank < 1.0 ? 0 : (uint64_t)rank - 1;

	return sorted[i < n ? i : n - 1];
}

/* Sorts the values in place. */
static void summarise(double *v, uint64_t n, double bound_ns, struct stage_stats *st)
{
	double sum = 0.0;

	memset(st, 0, sizeof(*st));
	if (n == 0)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	for (uint64_t i = 0; i < n; i++) {
		sum += v[i];
		st->below_bound += v[i] < -bound_ns;
	}
	st->count = n;
	st->p50_us = quantile(v, n, 0.50) / 1e3;
	st->p90_us = quantile(v, n, 0.90) / 1e3;
	st->p99_us = quantile(v, n, 0.99) / 1e3;
	st->p999_us = quantile(v, n, 0.999) / 1e3;
	st->min_us = v[0] / 1e3;
	st->max_us = v[n - 1] / 1e3;
	st->mean_us = sum / (double)n / 1e3;
}

/* The end-to-end percentile curve: ten points per decade of 1 / (1 - q), as far as the count resolves,
 * then the maximum. */
static void build_curve(const double *sorted, uint64_t n, struct point_result *res)
{
	res->curve_count = 0;
	if (n == 0)
		return;
	for (uint32_t k = 0; k < CURVE_MAX - 1; k++) {
		double x = pow(10.0, (double)k / CURVE_STEPS_PER_DECADE);

		if (x >= (double)n)
			break;
		res->curve_x[res->curve_count] = x;
		res->curve_us[res->curve_count++] = quantile(sorted, n, 1.0 - 1.0 / x) / 1e3;
	}
	res->curve_x[res->curve_count] = (double)n;
	res->curve_us[res->curve_count++] = sorted[n - 1] / 1e3;
}

static const char *rec_state_name(uint8_t state)
{
	static const char *const names[] = {
		[REC_UNSENT] = "unsent", [REC_SENT] = "lost", [REC_OK] = "ok", [REC_BUSY] = "busy",
		[REC_ERROR] = "error", [REC_UNTRACED] = "untraced", [REC_LOST] = "lost",
	};

	return state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

static void write_raw_point(struct probe *p, const struct probe_target *t, uint32_t point_idx)
{
	const struct point_result *res = &t->points[point_idx];

	for (uint64_t seq = 0; seq < res->slots; seq++) {
		const struct probe_rec *r = &p->recs[seq];

		fprintf(p->raw, "%s,%u,%g,%" PRIu64 ",%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", t->name, point_idx, res->param, seq, rec_state_name(r->state),
			r->intended_tsc, r->send_tsc, r->trace[0], r->trace[1], r->trace[2], r->trace[3], r->recv_tsc,
			r->trace[4]);
	}
}

/* Turns the point's records into its statistics; must run before the next point reuses the records. */
static void analyse_point(struct probe *p, struct probe_target *t, uint32_t point_idx)
{
	struct point_result *res = &t->points[point_idx];
	uint64_t n = 0, suspect = 0, elsewhere = 0;

	res->nic_stamped = 0;
	for (uint64_t seq = 0; seq < res->slots; seq++)
		res->nic_stamped += p->recs[seq].state == REC_OK && p->recs[seq].trace[4] != 0;
	res->nic_split = res->nic_stamped > 0 && res->nic_stamped == res->answered;
		int mapped = t->dclk == DCLK_NS && t->map_ok;
	uint64_t map_bound_max_ns = 0;

	res->nic_bound_ns = p->opt.nic_bound_ns ? p->opt.nic_bound_ns : t->nic_bound_ns;

	stage_rows(p->opt.mode->open_loop, t->dclk, res->nic_split, mapped, res->rows);
	for (uint64_t seq = 0; seq < res->slots; seq++) {
		const struct probe_rec *rec = &p->recs[seq];
		double v[STAGE_COUNT];
		uint64_t map_bound_ns;

		if (rec->state != REC_OK)
			continue;
		stage_values(p, t->dclk, mapped ? &t->map : NULL, rec, v, &map_bound_ns);
		/* A device stamp the map cannot place (zh_clock_to_tsc) tells nothing: leave the record
		 * out rather than let its bound swallow the point's. */
		if (map_bound_ns == UINT64_MAX)
			continue;
		if (map_bound_ns > map_bound_max_ns)
			map_bound_max_ns = map_bound_ns;
		for (uint32_t s = 0; s < STAGE_COUNT; s++)
			p->values[s][n] = v[s];
		suspect += (t->dclk == DCLK_TSC || mapped) && fabs(v[STAGE_CLAIM]) > CLOCK_SUSPECT_NS;
		elsewhere += fabs(v[STAGE_WIRE_RX]) > CLOCK_SUSPECT_NS;
		n++;
	}
	/* The two stages that cross between the device's clock and the TSC carry the map's bound too;
	 * compute, a difference of two device stamps, loses the map's offset error. */
	res->map_bound_ns = (double)map_bound_max_ns;
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		res->bound_ns[s] = p->clock.cross_bound_ns +
				   (s == STAGE_CLAIM || s == STAGE_DONE_TX ? res->map_bound_ns : 0.0) +
				   /* The NIC stamp is the appliance's map of the NIC clock: its bound adds too. */
				   (s == STAGE_WIRE || s == STAGE_NIC_RX_POLL ? (double)res->nic_bound_ns : 0.0);
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		if (res->rows[s] == ROW_MEASURED)
			summarise(p->values[s], n, res->bound_ns[s], &res->st[s]);
	build_curve(p->values[STAGE_E2E], n, res);
	res->clock_suspect = n > 0 && suspect * 2 > n;
	res->host_suspect = n > 0 && elsewhere * 2 > n;
	if (p->raw)
		write_raw_point(p, t, point_idx);
}

static uint64_t unanswered(const struct point_result *res)
{
	uint64_t got = res->answered + res->busy + res->errors + res->untraced;

	return res->sent > got ? res->sent - got : 0;
}

static double answered_share(const struct point_result *res)
{
	return res->sent ? (double)res->answered / (double)res->sent : 0.0;
}

/* Rate mode: the first rate, in increasing order, whose p99 is over KNEE_P99_FACTOR times the lowest
 * rate's, or that gets under KNEE_ANSWERED_MIN of its requests answered. */
static void find_knee(struct probe_target *t)
{
	uint32_t order[POINTS_MAX];
	double base_p99 = 0.0;

	t->knee = -1;
	for (uint32_t i = 0; i < t->point_count; i++) {
		uint32_t j = i;

		for (; j > 0 && t->points[order[j - 1]].param > t->points[i].param; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	if (t->point_count > 0)
		base_p99 = t->points[order[0]].st[STAGE_E2E].p99_us;
	for (uint32_t k = 0; k < t->point_count; k++) {
		const struct point_result *res = &t->points[order[k]];
		double p99 = res->st[STAGE_E2E].p99_us;

		if (answered_share(res) < KNEE_ANSWERED_MIN) {
			t->knee = (int)order[k];
			snprintf(t->knee_why, sizeof(t->knee_why), "%g req/s: %.2f%% answered (under %.0f%%)",
				 res->param, 100.0 * answered_share(res), 100.0 * KNEE_ANSWERED_MIN);
			return;
		}
		if (p99 > KNEE_P99_FACTOR * base_p99) {
			t->knee = (int)order[k];
			snprintf(t->knee_why, sizeof(t->knee_why), "%g req/s: p99 %.2f us > %.0f x %.2f us (the lowest "
				 "rate's)", res->param, p99, KNEE_P99_FACTOR, base_p99);
			return;
		}
	}
	snprintf(t->knee_why, sizeof(t->knee_why), "none up to %g req/s (p99 within %.0f x the lowest rate's, "
		 "%.0f%% answered)", t->point_count ? t->points[order[t->point_count - 1]].param : 0.0,
		 KNEE_P99_FACTOR, 100.0 * KNEE_ANSWERED_MIN);
}

/* ---- the terminal ---- */

static const char *yes_no(int v)
{
	return v < 0 ? "unknown" : v ? "yes" : "no";
}

/* The transport's name in the CSV and the JSON. */
static const char *transport_key(const struct probe *p)
{
	return p->opt.dpdk ? "dpdk" : "kernel_udp";
}

static void print_transport(const struct probe *p)
{
	const struct zh_bench_dpdk_config *cfg = &p->opt.port_cfg;

	if (!p->opt.dpdk) {
		printf("transport: kernel UDP socket (the client's kernel stack is in the first and last stages)\n");
		return;
	}
	printf("transport: DPDK port %s, from %s:%u, the appliance's MAC %s; the probe stamps each answer with "
	       "the TSC as its poll hands it over\n", p->port_text, p->opt.src_text, cfg->src_port_first,
	       cfg->dst_mac_given ? "given (--dst-mac)" : "by ARP");
}

/* --dpdk: the port's counters, final once it is closed. */
static void print_port_stats(const struct probe *p)
{
	const struct zh_bench_dpdk_stats *st = &p->port_stats;

	printf("dpdk port %s: not answers %" PRIu64 ", bad checksum %" PRIu64 ", ARP replies %" PRIu64 ", tx full %"
	       PRIu64 ", mbufs unreturned %" PRIu64 "\n", p->port_text, st->rx_other, st->rx_bad_checksum,
	       st->arp_replies, st->tx_full, st->mbufs_unreturned);
}

static void print_header(const struct probe *p)
{
	const struct host_clock *c = &p->clock;
	char cores[256] = "";
	size_t used = 0;

	for (uint32_t i = 0; i < c->cross_cpu_count && used < sizeof(cores) - 8; i++)
		used += (size_t)snprintf(cores + used, sizeof(cores) - used, "%s%d", i ? "," : "", c->cross_cpus[i]);
	printf("zerohop-probe: mode %s, %u point(s); each point at most %" PRIu64 " requests and %g s; "
	       "at most %g s in all\n", p->opt.mode->name, p->opt.point_count, p->opt.count, p->opt.point_seconds,
	       p->opt.max_seconds);
	print_transport(p);
	printf("host clock: TSC %.3f MHz by CLOCK_MONOTONIC over %llu ms (+-%.2f ppm); constant_tsc %s, "
	       "nonstop_tsc %s\n", c->tsc_hz / 1e6, CALIB_WINDOW_NS / 1000000ull, c->tsc_hz_err_ppm,
	       yes_no(c->constant_tsc), yes_no(c->nonstop_tsc));
	if (c->cross_cpu_count > 1)
		printf("cross-core: TSC offsets between cores %s within +-%.3f us (ping-pong, %u rounds a pair): "
		       "the error bound of a stage whose stamps come from two cores\n", cores,
		       c->cross_bound_ns / 1e3, c->cross_rounds);
	else
		printf("cross-core: one core (%s): no offset between cores to bound\n", cores);
	for (uint32_t i = 0; i < p->target_count; i++) {
		const struct probe_target *t = &p->targets[i];

		if (t->ctl_path[0] && !t->map_ok)
			printf("device clock of %s (%s): no calibration from %s: %s\n", t->name, t->addr_text,
			       t->ctl_path, t->map_why);
		if (t->dclk == DCLK_TSC)
			printf("device clock of %s (%s): the host's TSC (cpu device): device stamps share that bound\n",
			       t->name, t->addr_text);
		else if (t->map_ok)
			printf("device clock of %s (%s): ns, calibrated by the appliance (%s): pair (%" PRIu64 " ns, TSC %"
			       PRIu64 ") +-%" PRIu64 " ns, rate %s (%+.3f ppm, +-%" PRIu64 " ppb), step %" PRIu64 " ns, %u "
			       "samples%s; refreshed after each point, its bound added to device claim and done -> tx "
			       "-> client\n", t->name, t->addr_text, t->ctl_path, t->map.dclk_ref, t->map.tsc_ref,
			       t->map.bound_ns, t->map.rate_measured ? "measured" : "nominal", zh_clock_drift_ppm(&t->map),
			       t->map.rate_bound_ppb, t->map.step_ns, t->map.sample_count, t->map.stale ? ", STALE" : "");
		else
			printf("device clock of %s (%s): %%globaltimer ns, uncalibrated: no (globaltimer, TSC) map "
			       "from the appliance (give its control socket: --ctl-socket, or ,ctl=PATH), so device "
			       "claim and done -> tx -> client are reported together; device compute is in the device's "
			       "own ns\n", t->name, t->addr_text);
	}
	printf("NIC rx timestamp: taken from the trace's fifth value where the appliance's port stamps frames "
	       "(each point says whether it did)\n");
}

/* Whether the point's first stage was split at the NIC rx time, and how well that time is known. */
static void print_nic_rx(const struct probe *p, const struct point_result *res)
{
	if (!res->nic_split) {
		printf("   NIC rx timestamp: none (%" PRIu64 " of %" PRIu64 " answers had one): the trace starts at "
		       "the rx lcore's poll (rx_tsc), so the wire and the rx poll are one stage\n", res->nic_stamped,
		       res->answered);
		return;
	}
	if (res->nic_bound_ns)
		printf("   NIC rx timestamp: on every answer, the NIC clock mapped to the TSC by the appliance within "
		       "+-%.3f us (%s): wire and rx poll are split at it\n", (double)res->nic_bound_ns / 1e3,
		       p->opt.nic_bound_ns ? "--nic-bound-ns" : "the appliance's status");
	else
		printf("   NIC rx timestamp: on every answer, the NIC clock mapped to the TSC by the appliance; its "
		       "bound is in `zerohopctl status` (pass --ctl-socket or --nic-bound-ns to count it here): wire "
		       "and rx poll are split at it\n");
}

static void describe_point(const struct probe *p, const struct point_result *res, char *buf, size_t size)
{
	const char *mode = p->opt.mode->name;

	if (strcmp(mode, "rate") == 0)
		snprintf(buf, size, "%g req/s open loop, %" PRIu64 " requests planned, %u tokens (%u-byte datagrams)",
			 res->param, res->planned, res->tokens, res->datagram_bytes);
	else if (strcmp(mode, "idle") == 0)
		snprintf(buf, size, "idle >= %g us before each request (%.1f us measured), %u tokens (%u-byte "
			 "datagrams)", res->param, res->gap_us_mean, res->tokens, res->datagram_bytes);
	else
		snprintf(buf, size, "%u tokens (%u-byte datagrams), one in flight, >= %u us apart", res->tokens,
			 res->datagram_bytes, p->opt.interval_us);
}

static void print_stage_row(const struct point_result *res, uint32_t s)
{
	const struct stage_stats *st = &res->st[s];

	if (res->rows[s] == ROW_OFF)
		return;
	if (res->rows[s] == ROW_UNCALIBRATED) {
		printf("   %-24s uncalibrated: no (globaltimer, TSC) map from the appliance\n", STAGES[s].label);
		return;
	}
	printf("   %-24s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %6.1f%%\n", STAGES[s].label, st->p50_us, st->p90_us,
	       st->p99_us, st->p999_us, st->max_us, st->mean_us, 100.0 * st->mean_us / res->st[STAGE_E2E].mean_us);
}

static void print_sums(const struct point_result *res)
{
	double mean_sum = 0.0, p50_sum = 0.0;

	for (uint32_t s = 0; s < STAGE_E2E; s++)
		if (res->rows[s] == ROW_MEASURED) {
			mean_sum += res->st[s].mean_us;
			p50_sum += res->st[s].p50_us;
		}
	printf("   stages add up: per request exactly (adjacent stages share a stamp); sum of stage means %.2f us, "
	       "end-to-end mean %.2f us\n", mean_sum, res->st[STAGE_E2E].mean_us);
	printf("   percentiles do not add: sum of stage p50s %.2f us, end-to-end p50 %.2f us\n", p50_sum,
	       res->st[STAGE_E2E].p50_us);
}

static void print_warnings(const struct point_result *res)
{
	for (uint32_t s = 0; s < STAGE_E2E; s++)
		if (res->rows[s] == ROW_MEASURED && res->st[s].below_bound)
			printf("   warning: %s: %" PRIu64 " requests below -%.3f us: stamps out of order beyond the "
			       "stage's error bound\n", STAGES[s].label, res->st[s].below_bound, res->bound_ns[s] / 1e3);
	if (res->rows[STAGE_CLAIM] == ROW_MEASURED && res->map_bound_ns > 0.0)
		printf("   device clock map: +-%.3f us at the point's device stamps, in the bounds of device claim and "
		       "done -> tx -> client\n", res->map_bound_ns / 1e3);
	if (res->host_suspect)
		printf("   warning: the appliance's stamps are not near this host's TSC: the probe must run on the "
		       "appliance's host, where both share one TSC\n");
	if (res->clock_suspect)
		printf("   warning: the device's stamps are not near this host's TSC: is the device CUDA? "
		       "(--device-clock ns)\n");
	if (res->capped)
		printf("   note: the point was cut short by %s\n", strcmp(res->capped, "count") == 0 ? "--count" :
		       strcmp(res->capped, "time") == 0 ? "--seconds" : strcmp(res->capped, "run") == 0 ?
		       "--max-seconds" : "a signal");
}

static void print_point(const struct probe *p, const struct probe_target *t, uint32_t point_idx)
{
	const struct point_result *res = &t->points[point_idx];
	char what[192];

	describe_point(p, res, what, sizeof(what));
	printf("\n== %s %s, %s: %s\n", t->name, t->addr_text, p->opt.mode->name, what);
	printf("   sent %" PRIu64 ", answered %" PRIu64 " (%.2f%%), busy %" PRIu64 ", errors %" PRIu64 ", unanswered %"
	       PRIu64 ", late %" PRIu64 ", in %.2f s\n", res->sent, res->answered, 100.0 * answered_share(res),
	       res->busy, res->errors, unanswered(res), res->late, res->seconds);
	if (res->errors)
		printf("   first error: status %u: %s\n", res->first_error_status, res->first_error);
	if (res->malformed || res->untraced || res->send_failed)
		printf("   malformed %" PRIu64 ", without a trace %" PRIu64 ", send failed %" PRIu64 "\n",
		       res->malformed, res->untraced, res->send_failed);
	if (res->st[STAGE_E2E].count == 0) {
		printf("   no traced answer: nothing to report\n");
		return;
	}
	printf("   %-24s %9s %9s %9s %9s %9s %9s %7s\n", "stage (us)", "p50", "p90", "p99", "p99.9", "max", "mean",
	       "share");
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		print_stage_row(res, s);
	print_sums(res);
	print_nic_rx(p, res);
	print_warnings(res);
}

/* A table of the points of a multi-point mode: end to end per point, the knee or the cold cost. */
static void print_summary(const struct probe *p, const struct probe_target *t)
{
	int idle = strcmp(p->opt.mode->name, "idle") == 0;
	int rate = p->opt.mode->open_loop;
	const struct point_result *base = NULL;

	for (uint32_t i = 0; i < t->point_count; i++)
		if (t->points[i].st[STAGE_E2E].count && (!base || t->points[i].param < base->param))
			base = &t->points[i];
	printf("\n== %s %s: end to end by %s (us)\n", t->name, t->addr_text, p->opt.mode->param_head);
	printf("   %10s %6s %8s %9s %9s %9s %9s %9s %9s%s\n", p->opt.mode->param_head, "bytes", "sent", "answered",
	       "p50", "p90", "p99", "p99.9", "max", idle ? "  cold p50" : "");
	for (uint32_t i = 0; i < t->point_count; i++) {
		const struct point_result *res = &t->points[i];
		const struct stage_stats *e = &res->st[STAGE_E2E];

		printf("   %10g %6u %8" PRIu64 " %8.2f%% %9.2f %9.2f %9.2f %9.2f %9.2f", res->param,
		       res->datagram_bytes, res->sent, 100.0 * answered_share(res), e->p50_us, e->p90_us, e->p99_us,
		       e->p999_us, e->max_us);
		if (idle && base)
			printf(" %+9.2f", e->p50_us - base->st[STAGE_E2E].p50_us);
		printf("%s\n", rate && t->knee == (int)i ? "  <- knee" : "");
	}
	if (rate)
		printf("knee: %s\n", t->knee_why);
	if (idle)
		printf("   cold p50: the end-to-end p50 less the smallest gap's: what the idle time costs\n");
}

static void point_label(const struct probe *p, const struct point_result *res, char *buf, size_t size)
{
	const char *mode = p->opt.mode->name;

	if (strcmp(mode, "rate") == 0)
		snprintf(buf, size, "%g/s", res->param);
	else if (strcmp(mode, "payload") == 0)
		snprintf(buf, size, "%g tokens", res->param);
	else if (strcmp(mode, "idle") == 0)
		snprintf(buf, size, "%g us idle", res->param);
	else
		snprintf(buf, size, "single");
}

static void print_cell(const struct probe_target *t, uint32_t k, uint32_t s)
{
	const struct point_result *res = &t->points[k];
	char cell[32] = "-";

	if (k < t->point_count && res->rows[s] == ROW_UNCALIBRATED)
		snprintf(cell, sizeof(cell), "uncalibrated");
	else if (k < t->point_count && res->rows[s] == ROW_MEASURED && res->st[s].count)
		snprintf(cell, sizeof(cell), "%.2f / %.2f", res->st[s].p50_us, res->st[s].p99_us);
	printf(" %21s", cell);
}

/* --placement: one row per (point, stage), one column per placement. */
static void print_comparison(const struct probe *p)
{
	uint32_t points = 0;

	for (uint32_t i = 0; i < p->target_count; i++)
		if (p->targets[i].point_count > points)
			points = p->targets[i].point_count;
	printf("\n== placements compared: p50 / p99 (us)\n   %-14s %-24s", "point", "stage");
	for (uint32_t i = 0; i < p->target_count; i++)
		printf(" %21s", p->targets[i].name);
	printf("\n");
	for (uint32_t k = 0; k < points; k++)
		for (uint32_t s = 0; s < STAGE_COUNT; s++) {
			char label[32];
			int shown = 0;

			for (uint32_t i = 0; i < p->target_count; i++)
				shown |= k < p->targets[i].point_count && p->targets[i].points[k].rows[s] != ROW_OFF;
			if (!shown)
				continue;
			point_label(p, &p->targets[0].points[k], label, sizeof(label));
			printf("   %-14s %-24s", label, STAGES[s].label);
			for (uint32_t i = 0; i < p->target_count; i++)
				print_cell(&p->targets[i], k, s);
			printf("\n");
		}
}

/* ---- CSV and JSON ---- */

static void write_csv_row(FILE *f, const struct probe *p, const struct probe_target *t, uint32_t k, uint32_t s)
{
	const struct point_result *res = &t->points[k];
	const struct stage_stats *st = &res->st[s];

	fprintf(f, "%s,%s,%s,%s,%u,%g,%u,%u,%" PRIu64 ",%" PRIu64 ",%.2f,%s,%d,", t->name, t->addr_text,
		p->opt.mode->name, transport_key(p), k, res->param, res->tokens, res->datagram_bytes, res->sent, res->answered,
		100.0 * answered_share(res), STAGES[s].key, res->rows[s] == ROW_MEASURED);
	if (res->rows[s] == ROW_MEASURED && st->count)
		fprintf(f, "%" PRIu64 ",%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.2f,", st->count, st->p50_us, st->p90_us,
			st->p99_us, st->p999_us, st->max_us, st->mean_us,
			100.0 * st->mean_us / res->st[STAGE_E2E].mean_us);
	else
		fprintf(f, ",,,,,,,,");
	fprintf(f, "%d\n", p->opt.mode->open_loop && t->knee == (int)k);
}

static int write_csv(const struct probe *p)
{
	FILE *f = fopen(p->opt.csv_path, "w");

	if (!f)
		return -errno;
	fprintf(f, "placement,address,mode,transport,point,param,tokens,datagram_bytes,sent,answered,answered_pct,stage,"
		"calibrated,count,p50_us,p90_us,p99_us,p999_us,max_us,mean_us,share_pct,knee\n");
	for (uint32_t i = 0; i < p->target_count; i++) {
		const struct probe_target *t = &p->targets[i];

		for (uint32_t k = 0; k < t->point_count; k++) {
			const struct point_result *res = &t->points[k];

			for (uint32_t s = 0; s < STAGE_COUNT; s++)
				if (res->rows[s] != ROW_OFF)
					write_csv_row(f, p, t, k, s);
		}
	}
	int rc = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* A JSON string: quotes, backslashes and control bytes escaped; bytes past ASCII as \u00XX. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_clock(FILE *f, const struct host_clock *c)
{
	fprintf(f, "  \"clock\": {\"source\": \"tsc\", \"calibrated_against\": \"CLOCK_MONOTONIC\", \"tsc_hz\": %.1f, "
		"\"tsc_hz_err_ppm\": %.3f, \"tsc0\": %" PRIu64 ", \"monotonic0_ns\": %" PRIu64 ", ", c->tsc_hz,
		c->tsc_hz_err_ppm, c->tsc0, c->mono0_ns);
	fprintf(f, "\"constant_tsc\": %s, \"nonstop_tsc\": %s, \"cross_core_bound_ns\": %.1f, "
		"\"cross_core_rounds\": %u, \"cross_core_cpus\": [", c->constant_tsc < 0 ? "null" : c->constant_tsc ?
		"true" : "false", c->nonstop_tsc < 0 ? "null" : c->nonstop_tsc ? "true" : "false", c->cross_bound_ns,
		c->cross_rounds);
	for (uint32_t i = 0; i < c->cross_cpu_count; i++)
		fprintf(f, "%s%d", i ? ", " : "", c->cross_cpus[i]);
	fprintf(f, "]},\n");
}

static void json_stage(FILE *f, const struct point_result *res, uint32_t s)
{
	const struct stage_stats *st = &res->st[s];

	fprintf(f, "\"%s\": {\"label\": \"%s\", \"span\": \"%s\", \"calibrated\": %s", STAGES[s].key,
		STAGES[s].label, STAGES[s].span, res->rows[s] == ROW_MEASURED ? "true" : "false");
	if (res->rows[s] == ROW_MEASURED)
		fprintf(f, ", \"bound_ns\": %.1f", res->bound_ns[s]);
	if (res->rows[s] == ROW_MEASURED && st->count)
		fprintf(f, ", \"count\": %" PRIu64 ", \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
			"\"p999_us\": %.3f, \"max_us\": %.3f, \"min_us\": %.3f, \"mean_us\": %.4f, \"share\": %.5f, "
			"\"below_bound\": %" PRIu64, st->count, st->p50_us, st->p90_us, st->p99_us, st->p999_us,
			st->max_us, st->min_us, st->mean_us, st->mean_us / res->st[STAGE_E2E].mean_us, st->below_bound);
	fprintf(f, "}");
}

static void json_point(FILE *f, const struct probe *p, const struct probe_target *t, uint32_t k)
{
	const struct point_result *res = &t->points[k];
	int first = 1;

	fprintf(f, "      {\"point\": %u, \"param\": %g, \"tokens\": %u, \"datagram_bytes\": %u, \"planned\": %" PRIu64
		", \"sent\": %" PRIu64 ", \"answered\": %" PRIu64 ", \"busy\": %" PRIu64 ", \"errors\": %" PRIu64
		", \"unanswered\": %" PRIu64 ", \"late\": %" PRIu64 ", \"malformed\": %" PRIu64 ", \"untraced\": %"
		PRIu64 ", \"send_failed\": %" PRIu64 ", \"seconds\": %.3f, \"gap_us_mean\": %.2f, \"knee\": %s, "
		"\"clock_suspect\": %s, \"host_clock_suspect\": %s, \"capped\": ", k, res->param, res->tokens,
		res->datagram_bytes, res->planned, res->sent, res->answered, res->busy, res->errors, unanswered(res),
		res->late, res->malformed, res->untraced, res->send_failed, res->seconds, res->gap_us_mean,
		p->opt.mode->open_loop && t->knee == (int)k ? "true" : "false", res->clock_suspect ? "true" : "false",
		res->host_suspect ? "true" : "false");
	if (res->capped)
		json_str(f, res->capped);
	else
		fprintf(f, "null");
	fprintf(f, ", \"first_error\": ");
	json_str(f, res->first_error);
	fprintf(f, ",\n       \"stages\": {");
	for (uint32_t s = 0; s < STAGE_COUNT; s++) {
		if (res->rows[s] == ROW_OFF)
			continue;
		fprintf(f, "%s\n        ", first ? "" : ",");
		json_stage(f, res, s);
		first = 0;
	}
	fprintf(f, "},\n       \"curve\": [");
	for (uint32_t i = 0; i < res->curve_count; i++)
		fprintf(f, "%s[%.6g, %.3f]", i ? ", " : "", 1.0 - 1.0 / res->curve_x[i], res->curve_us[i]);
	fprintf(f, "]}");
}

/* Whether any point of any target had its first stage split at the NIC rx time. */
static int nic_split_any(const struct probe *p)
{
	for (uint32_t i = 0; i < p->target_count; i++)
		for (uint32_t k = 0; k < p->targets[i].point_count; k++)
			if (p->targets[i].points[k].nic_split)
				return 1;
	return 0;
}

/* The device clock map the appliance gave (the last one fetched), or null. */
static void json_clock_map(FILE *f, const struct probe_target *t)
{
	const struct zh_clock_map *m = &t->map;

	fprintf(f, ", \"device_clock_map\": ");
	if (!t->map_ok) {
		fprintf(f, "null");
		return;
	}
	fprintf(f, "{\"kind\": \"%s\", \"samples\": %u, \"stale\": %s, \"tsc_hz\": %" PRIu64 ", \"dclk_ref\": %"
		PRIu64 ", \"tsc_ref\": %" PRIu64 ", \"bound_ns\": %" PRIu64 ", \"rate_tsc\": %" PRIu64
		", \"rate_dclk\": %" PRIu64 ", \"rate_measured\": %s, \"rate_bound_ppb\": %" PRIu64 ", \"drift_ppm\": "
		"%.4f, \"step_ns\": %" PRIu64 ", \"rtt_ns\": %" PRIu64 "}", m->kind == ZH_CLOCK_TSC ? "tsc" : "ns",
		m->sample_count, m->stale ? "true" : "false", m->tsc_hz, m->dclk_ref, m->tsc_ref, m->bound_ns,
		m->rate_tsc, m->rate_dclk, m->rate_measured ? "true" : "false", m->rate_bound_ppb,
		zh_clock_drift_ppm(m), m->step_ns, m->rtt_ns);
}

/* The transport, and with --dpdk the port and its final counters. */
static void json_transport(FILE *f, const struct probe *p)
{
	const struct zh_bench_dpdk_stats *st = &p->port_stats;

	fprintf(f, "  \"transport\": \"%s\",\n  \"dpdk\": ", transport_key(p));
	if (!p->opt.dpdk) {
		fprintf(f, "null,\n");
		return;
	}
	fprintf(f, "{\"port\": ");
	json_str(f, p->port_text);
	fprintf(f, ", \"src\": ");
	json_str(f, p->opt.src_text);
	fprintf(f, ", \"src_port\": %u, \"dst_mac_given\": %s, \"rx_other\": %" PRIu64 ", \"rx_bad_checksum\": %"
		PRIu64 ", \"arp_replies\": %" PRIu64 ", \"tx_full\": %" PRIu64 ", \"mbufs_unreturned\": %" PRIu64 "},\n",
		p->opt.port_cfg.src_port_first, p->opt.port_cfg.dst_mac_given ? "true" : "false", st->rx_other,
		st->rx_bad_checksum, st->arp_replies, st->tx_full, st->mbufs_unreturned);
}

static void print_json(const struct probe *p)
{
	FILE *f = stdout;

	fprintf(f, "{\n  \"tool\": \"zerohop-probe\",\n  \"mode\": \"%s\",\n  \"truncated\": %s,\n  "
		"\"nic_rx_timestamp\": %s,\n", p->opt.mode->name, p->truncated ? "true" : "false",
		nic_split_any(p) ? "true" : "false");
	json_transport(f, p);
	if (p->opt.nic_bound_ns)
		fprintf(f, "  \"nic_bound_ns\": %" PRIu64 ",\n", p->opt.nic_bound_ns);
	else
		fprintf(f, "  \"nic_bound_ns\": null,\n");
	json_clock(f, &p->clock);
	fprintf(f, "  \"targets\": [\n");
	for (uint32_t i = 0; i < p->target_count; i++) {
		const struct probe_target *t = &p->targets[i];

		double map_bound_ns = 0.0;

		for (uint32_t k = 0; k < t->point_count; k++)
			if (t->points[k].map_bound_ns > map_bound_ns)
				map_bound_ns = t->points[k].map_bound_ns;
		fprintf(f, "    {\"placement\": \"%s\", \"address\": \"%s\", \"device_clock\": \"%s\", "
			"\"device_calibrated\": %s, \"device_bound_ns\": ", t->name, t->addr_text,
			t->dclk == DCLK_TSC ? "tsc" : "ns", t->dclk == DCLK_TSC || t->map_ok ? "true" : "false");
		if (t->dclk == DCLK_TSC || t->map_ok)
			fprintf(f, "%.1f", p->clock.cross_bound_ns + map_bound_ns);
		else
			fprintf(f, "null");
		json_clock_map(f, t);
		fprintf(f, ", \"knee\": ");
		if (p->opt.mode->open_loop && t->knee >= 0)
			fprintf(f, "%g", t->points[t->knee].param);
		else
			fprintf(f, "null");
		fprintf(f, ", \"knee_text\": ");
		json_str(f, t->knee_why);
		fprintf(f, ",\n     \"points\": [\n");
		for (uint32_t k = 0; k < t->point_count; k++) {
			json_point(f, p, t, k);
			fprintf(f, "%s\n", k + 1 < t->point_count ? "," : "");
		}
		fprintf(f, "     ]}%s\n", i + 1 < p->target_count ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
}

/* ---- plots ---- */

extern char **environ;

/* 1 if an executable gnuplot is on PATH. */
static int gnuplot_on_path(void)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	char *save = NULL;

	if (!path || strlen(path) >= sizeof(dirs))
		return 0;
	strcpy(dirs, path);
	for (char *dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char file[4200];

		snprintf(file, sizeof(file), "%s/gnuplot", dir);
		if (access(file, X_OK) == 0)
			return 1;
	}
	return 0;
}

static FILE *open_with_suffix(const char *prefix, const char *suffix, char *path, size_t size)
{
	if ((size_t)snprintf(path, size, "%s%s", prefix, suffix) >= size) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	return fopen(path, "w");
}

static int close_checked(FILE *f)
{
	int rc = ferror(f) ? -EIO : 0;

	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* A point's name on a chart: the placement, the point, and the knee where it is one. */
static void chart_label(const struct probe *p, const struct probe_target *t, uint32_t k, char *buf, size_t size)
{
	char point[32];

	point_label(p, &t->points[k], point, sizeof(point));
	snprintf(buf, size, "%s %s%s", t->name, point, p->opt.mode->open_loop && t->knee == (int)k ? " (knee)" : "");
}

/* The stages a stacked bar shows: those any point measured (end to end is the bar itself). */
static uint32_t stacked_mask(const struct probe *p)
{
	uint32_t mask = 0;

	for (uint32_t i = 0; i < p->target_count; i++)
		for (uint32_t k = 0; k < p->targets[i].point_count; k++)
			for (uint32_t s = 0; s < STAGE_E2E; s++)
				if (p->targets[i].points[k].rows[s] == ROW_MEASURED)
					mask |= 1u << s;
	return mask;
}

/* PREFIX-stages.dat (one row per point, mean us per stage) and PREFIX-percentiles.dat (one block per
 * point: 1 / (1 - q), us). */
static int write_plot_data(const struct probe *p, uint32_t mask)
{
	char path[4096];
	FILE *bars = open_with_suffix(p->opt.plot_prefix, "-stages.dat", path, sizeof(path));

	if (!bars)
		return -errno;
	fprintf(bars, "point");
	for (uint32_t s = 0; s < STAGE_E2E; s++)
		if (mask & (1u << s))
			fprintf(bars, "\t%s", STAGES[s].label);
	fprintf(bars, "\n");
	FILE *curves = open_with_suffix(p->opt.plot_prefix, "-percentiles.dat", path, sizeof(path));
	if (!curves) {
		int rc = -errno;

		fclose(bars);
		return rc;
	}
	for (uint32_t i = 0; i < p->target_count; i++)
		for (uint32_t k = 0; k < p->targets[i].point_count; k++) {
			const struct point_result *res = &p->targets[i].points[k];
			char label[64];

			chart_label(p, &p->targets[i], k, label, sizeof(label));
			fprintf(bars, "%s", label);
			for (uint32_t s = 0; s < STAGE_E2E; s++)
				if (mask & (1u << s))
					fprintf(bars, "\t%.3f",
						res->rows[s] == ROW_MEASURED ? res->st[s].mean_us : 0.0);
			fprintf(bars, "\n");
			fprintf(curves, "# %s\n", label);
			for (uint32_t j = 0; j < res->curve_count; j++)
				fprintf(curves, "%.6g\t%.3f\n", res->curve_x[j], res->curve_us[j]);
			fprintf(curves, "\n\n");
		}
	int rc = close_checked(bars);
	int rc2 = close_checked(curves);
	return rc ? rc : rc2;
}

static int write_plot_script(const struct probe *p, uint32_t mask, char *script, size_t size)
{
	const char *pre = p->opt.plot_prefix;
	FILE *f = open_with_suffix(pre, ".gp", script, size);
	uint32_t columns = (uint32_t)__builtin_popcount(mask);
	uint32_t block = 0;

	if (!f)
		return -errno;
	fprintf(f, "set terminal png size 1100,650\nset termoption noenhanced\nset datafile separator \"\\t\"\n");
	fprintf(f, "set output '%s-stages.png'\nset title \"zerohop-probe %s: mean time per stage, stacked\"\n", pre,
		p->opt.mode->name);
	fprintf(f, "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.85 border -1\n"
		"set boxwidth 0.7\nset key outside right top\nset ylabel \"microseconds (mean)\"\n"
		"set xtics rotate by -30\nset yrange [0:*]\n");
	fprintf(f, "plot for [i=2:%u] '%s-stages.dat' using i:xtic(1) title columnheader(i)\n", columns + 1, pre);
	fprintf(f, "reset\nset termoption noenhanced\nset datafile separator \"\\t\"\n");
	fprintf(f, "set output '%s-percentiles.png'\nset title \"zerohop-probe %s: end to end by percentile\"\n", pre,
		p->opt.mode->name);
	fprintf(f, "set logscale xy\nset xrange [1:*]\nset grid\nset key left top\nset xlabel \"percentile\"\n"
		"set ylabel \"microseconds\"\n");
	/* A tic label is a format for its value: "%%" in the script is one "%" on the chart. */
	fprintf(f, "set xtics (\"0%%%%\" 1, \"50%%%%\" 2, \"90%%%%\" 10, \"99%%%%\" 100, \"99.9%%%%\" 1000, "
		"\"99.99%%%%\" 10000, \"99.999%%%%\" 100000)\nplot");
	for (uint32_t i = 0; i < p->target_count; i++)
		for (uint32_t k = 0; k < p->targets[i].point_count; k++, block++) {
			char label[64];

			chart_label(p, &p->targets[i], k, label, sizeof(label));
			fprintf(f, "%s '%s-percentiles.dat' index %u using 1:2 with linespoints title \"%s\"",
				block ? "," : "", pre, block, label);
		}
	fprintf(f, "\n");
	return close_checked(f);
}

/* gnuplot SCRIPT, its output on stderr, for at most PLOT_TIMEOUT_S. */
static int run_gnuplot(const char *script)
{
	posix_spawn_file_actions_t actions;
	char arg0[] = "gnuplot";
	char arg1[4096];
	char *args[] = { arg0, arg1, NULL };
	pid_t pid;
	int status;

	snprintf(arg1, sizeof(arg1), "%s", script);
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
	int rc = posix_spawnp(&pid, "gnuplot", &actions, NULL, args, environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc)
		return -rc;
	for (uint32_t i = 0; i < PLOT_TIMEOUT_S * 100u; i++) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		struct timespec tick = { .tv_sec = 0, .tv_nsec = 10000000 };

		if (got == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
		if (got < 0 && errno != EINTR)
			return -errno;
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -ETIMEDOUT;
}

static int write_plots(const struct probe *p)
{
	uint32_t mask = stacked_mask(p);
	char script[4096];
	int rc = write_plot_data(p, mask);

	if (rc == 0)
		rc = write_plot_script(p, mask, script, sizeof(script));
	if (rc == 0)
		rc = run_gnuplot(script);
	return rc;
}

/* ---- main ---- */

/* --dpdk: the EAL and the port. After the clock's calibration: the EAL pins this thread to the first core
 * of its -l, and the cross-core bound needs every core the probe may use. Returns 0 or -errno (the module
 * said why). */
static int open_port(struct probe *p)
{
	int rc = zh_bench_dpdk_open(p->opt.eal_argc, p->opt.eal_argv, &p->opt.port_cfg, &p->port);

	if (rc)
		return rc;
	p->port_opened = 1;
	snprintf(p->port_text, sizeof(p->port_text), "%s", zh_bench_dpdk_describe(p->port));
	return 0;
}

/* Closes the port and cleans up the EAL, keeping the port's final counters (the mbufs the pool got back
 * are known only then, so it is closed before the report). Safe to call again. */
static void close_port(struct probe *p)
{
	if (!p->port)
		return;
	zh_bench_dpdk_close(p->port, &p->port_stats);
	p->port = NULL;
}

/* Clock calibration, records, sockets (or the DPDK port) and the --raw file; the run's deadline counts
 * from `started_ns`. */
static int set_up(struct probe *p, uint64_t started_ns)
{
	const struct probe_options *opt = &p->opt;

	/* Sleeps of a few microseconds are worthless with the default 50 us timer slack. */
	(void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	calibrate_tsc(&p->clock);
	measure_cross_core(&p->clock);
	if (opt->cpu >= 0 && pin_self(opt->cpu) != 0) {
		fprintf(stderr, "zerohop-probe: cannot run on core %d\n", opt->cpu);
		return -EINVAL;
	}
	double left_ns = opt->max_seconds * 1e9 - (double)(mono_ns() - started_ns);
	p->run_deadline_tsc = tsc_now() + ns_to_ticks(p, left_ns > 0.0 ? left_ns : 0.0);
	p->timeout_tsc = ns_to_ticks(p, (double)opt->timeout_ms * 1e6);
	p->rec_capacity = opt->count > opt->warmup ? opt->count : opt->warmup;
	p->recs = calloc(p->rec_capacity, sizeof(*p->recs));
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		p->values[s] = calloc(opt->count, sizeof(double));
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		if (!p->values[s] || !p->recs)
			return -ENOMEM;
	if (opt->raw_path) {
		p->raw = fopen(opt->raw_path, "w");
		if (!p->raw)
			return -errno;
		fprintf(p->raw, "placement,point,param,seq,state,intended_tsc,send_tsc,rx_tsc,publish_tsc,claim_dclk,"
			"done_dclk,recv_tsc,nic_rx_tsc\n");
	}
	for (uint32_t i = 0; i < p->target_count; i++) {
		int rc = opt->dpdk ? 0 : open_socket(&p->targets[i]);

		if (rc)
			return rc;
		/* The map says which clock the device stamps with before the header says it. */
		refresh_map(&p->targets[i]);
	}
	return opt->dpdk ? open_port(p) : 0;
}

static void tear_down(struct probe *p)
{
	close_port(p);
	for (uint32_t i = 0; i < p->target_count; i++)
		if (p->targets[i].fd > 0)
			close(p->targets[i].fd);
	for (uint32_t s = 0; s < STAGE_COUNT; s++)
		free(p->values[s]);
	free(p->recs);
}

static int measure(struct probe *p)
{
	for (uint32_t i = 0; i < p->target_count; i++) {
		struct probe_target *t = &p->targets[i];
		int rc = warm_up(p, t);

		if (rc)
			return rc;
		for (uint32_t k = 0; k < p->opt.point_count; k++) {
			if (run_over(p)) {
				p->truncated = 1;
				break;
			}
			rc = p->opt.mode->run_point(p, t, k);
			if (rc)
				return rc;
			t->point_count = k + 1;
			p->truncated |= t->points[k].capped && (strcmp(t->points[k].capped, "run") == 0 ||
								strcmp(t->points[k].capped, "signal") == 0);
			/* The freshest map: its bound grows with the distance from its reference pair. */
			refresh_map(t);
			analyse_point(p, t, k);
			if (!p->opt.json)
				print_point(p, t, k);
		}
		if (p->opt.mode->open_loop)
			find_knee(t);
		if (!p->opt.json && p->opt.mode->list_option)
			print_summary(p, t);
	}
	if (!p->opt.json && p->target_count > 1)
		print_comparison(p);
	return 0;
}

/* 0 if every target gave at least one traced answer; says which did not. */
static int check_answers(const struct probe *p)
{
	int rc = 0;

	for (uint32_t i = 0; i < p->target_count; i++) {
		const struct probe_target *t = &p->targets[i];
		uint64_t answered = 0;
		const char *error = NULL;

		for (uint32_t k = 0; k < t->point_count; k++) {
			answered += t->points[k].answered;
			if (!error && t->points[k].errors)
				error = t->points[k].first_error;
		}
		if (answered > 0)
			continue;
		if (error)
			fprintf(stderr, "zerohop-probe: %s at %s gave no traced answer: first error: %s\n", t->name,
				t->addr_text, error);
		else
			fprintf(stderr, "zerohop-probe: %s at %s gave no traced answer (is the appliance up, and is "
				"the probe in its client namespace?)\n", t->name, t->addr_text);
		rc = -ENODATA;
	}
	return rc;
}

static int write_outputs(struct probe *p, int plot_missing)
{
	int failed = 0;
	int rc;

	if (p->raw && (rc = close_checked(p->raw)) != 0) {
		fprintf(stderr, "zerohop-probe: --raw %s: %s\n", p->opt.raw_path, strerror(-rc));
		failed = 1;
	}
	p->raw = NULL;
	if (p->opt.csv_path && (rc = write_csv(p)) != 0) {
		fprintf(stderr, "zerohop-probe: --csv %s: %s\n", p->opt.csv_path, strerror(-rc));
		failed = 1;
	}
	if (p->opt.plot_prefix && plot_missing) {
		fprintf(stderr, "zerohop-probe: --plot: gnuplot is not installed (apt-get install gnuplot-nox): no "
			"charts\n");
		failed = 1;
	} else if (p->opt.plot_prefix && (rc = write_plots(p)) != 0) {
		fprintf(stderr, "zerohop-probe: --plot %s: %s\n", p->opt.plot_prefix, strerror(-rc));
		failed = 1;
	} else if (p->opt.plot_prefix && !p->opt.json) {
		printf("charts: %s-stages.png, %s-percentiles.png\n", p->opt.plot_prefix, p->opt.plot_prefix);
	}
	return failed;
}

int main(int argc, char **argv)
{
	static struct probe probe;
	struct probe *p = &probe;
	uint64_t started_ns = mono_ns();
	int leave;
	int rc = parse_args(argc, argv, &p->opt, &leave);

	if (leave)
		return rc;
	rc = resolve_targets(p);
	if (rc == 0)
		rc = dpdk_preflight(p);
	if (rc)
		return rc;
	if (p->opt.plot_prefix && strpbrk(p->opt.plot_prefix, "'\"\n")) {
		fprintf(stderr, "zerohop-probe: --plot: the prefix may not contain quotes\n");
		return EXIT_USAGE;
	}
	int plot_missing = p->opt.plot_prefix && !gnuplot_on_path();
	if (plot_missing)
		fprintf(stderr, "zerohop-probe: --plot: gnuplot is not installed; the run goes on without charts\n");
	struct sigaction stop = { .sa_handler = on_stop_signal };
	sigaction(SIGINT, &stop, NULL);
	sigaction(SIGTERM, &stop, NULL);
	rc = set_up(p, started_ns);
	if (rc == 0) {
		if (!p->opt.json)
			print_header(p);
		rc = measure(p);
	}
	close_port(p);
	if (rc) {
		fprintf(stderr, "zerohop-probe: %s\n", strerror(-rc));
		if (p->raw)
			fclose(p->raw);
		tear_down(p);
		return EXIT_RUN_ERROR;
	}
	if (p->truncated && !p->opt.json)
		printf("note: %s ended the run before every point was measured in full\n",
		       stop_signal ? "a signal" : "--max-seconds");
	if (p->port_opened && !p->opt.json)
		print_port_stats(p);
	if (p->opt.json)
		print_json(p);
	int failed = write_outputs(p, plot_missing);
	failed |= check_answers(p) != 0;
	tear_down(p);
	return failed ? EXIT_RUN_ERROR : EXIT_RUN_OK;
}
