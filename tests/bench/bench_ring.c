/* SPDX-License-Identifier: MIT */
/*
 * bench_ring.c: the request ring (kernels/zh_ring.h) handing requests from one core to the other, beside
 * DPDK's rte_ring doing the same hand-off in the same process, and the ratio of the two.
 *
 * Scenarios, each run for both rings with the same item counts:
 *   latency   one request in flight, paced: the producer stamps the TSC into the descriptor just
 *             before publishing, the consumer stamps once it has the descriptor; p50/p99 of the
 *             difference. The producer waits for the answer and a short gap before the next request,
 *             so the figure is the hand-off, not queueing.
 *   burst N   requests/s of the full cycle, up to the ring's 1024 entries in flight. zh: produce,
 *             consumer claims and completes, producer reaps in order and releases. rte_ring: a request
 *             ring to the consumer and a completion ring back, SP/SC, enqueue/dequeue bursts of N.
 * rte_ring carries pointers to 64-byte descriptors (struct zh_slot, used here only as a descriptor),
 * and both consumers read the request and write an answer field in it, so each ring moves the same
 * data; the zh ring keeps the descriptor inside its slot, rte_ring beside its entry.
 *
 * The two vCPUs of the machines this was written on sit "near" or "far" from each other at the host's
 * whim, changing every few tens of seconds (docs/BENCHMARKS.md), so every round starts and ends with a
 * cache-line ping-pong, the rings run back to back within a round (in alternating order), and the
 * summary keeps near and far rounds apart. Ratios are medians of the per-round ratios.
 *
 * rte_ring is initialised in plain aligned memory: rte_ring_init needs no EAL, so none is started.
 *
 * Exit status: 0 ran, 1 a ring lost, reordered or corrupted a request, or set-up failed, 77 skipped
 * (fewer than two cpus to pin to).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <rte_cycles.h>
#include <rte_ring.h>

#include "zh_ring.h"

#define BENCH_NAME "bench_ring"

#define RING_SLOTS 1024u
#define BURST_MAX 32u /* the large burst; the burst-32 scenario and the object arrays */
/* rte_ring without RING_F_EXACT_SZ holds count - 1 entries; the rte_ring producer keeps at most that
 * many in flight, the zh ring RING_SLOTS. */
#define RTE_IN_FLIGHT_MAX (RING_SLOTS - 1u)
ZH_STATIC_ASSERT((RING_SLOTS & (RING_SLOTS - 1u)) == 0, "both rings want a power of two");
ZH_STATIC_ASSERT(RING_SLOTS >= ZH_RING_SLOTS_MIN && RING_SLOTS <= ZH_RING_SLOTS_MAX, "a valid zh ring");
ZH_STATIC_ASSERT(BURST_MAX <= RTE_IN_FLIGHT_MAX, "a burst fits the ring");

#define CPU_PRODUCER 0
#define CPU_CONSUMER 1

#define ROUNDS_DEFAULT 7u
#define ROUNDS_MAX 99u
#define SECONDS_DEFAULT 50u
#define SECONDS_MIN 5u
#define SECONDS_MAX 3600u
#define LAT_ITEMS_DEFAULT 200000u
#define TPUT_ITEMS_DEFAULT 4000000u
#define ITEMS_MIN 1000u
#define ITEMS_MAX 100000000u
/* Gap between paced latency requests: the consumer is back in its poll loop well before it ends. */
#define LAT_GAP_NS 200u
/* Placement probe: bare round trips timed in blocks, then stamped ones; ~2 ms near, ~6 ms far. */
#define PROBE_BLOCKS 64u
#define PROBE_BLOCK_TRIPS 128u
#define PROBE_STAMPED_TRIPS 2000u
ZH_STATIC_ASSERT(PROBE_BLOCKS <= ITEMS_MIN, "probe blocks fit the sample array");
/* Between the ~120 ns (near) and ~390 ns (far) round trips measured on these VMs. */
#define PLACEMENT_FAR_RTT_NS 250.0
#define TSC_CALIBRATE_NS 100000000ull
/* Set-up, probes and sorting take well under this much of the --seconds budget. */
#define SECONDS_OVERHEAD 2u
/* A run that has not ended this long after the time bound has hung: the process is killed. */
#define HANG_GRACE_SECONDS 30u
/* The throughput producer reads the TSC once per this many loop passes. */
#define DEADLINE_CHECK_PASSES 64u

/* ---- clocks ---------------------------------------------------------------------------------- */

static double tsc_hz;

static inline uint64_t tsc_now(void)
{
	return rte_rdtsc();
}

/*
 * The TSC once every earlier load has completed, so a stamp taken after reading the descriptor counts
 * the cache-line transfer that brought it. rdtscp is not exposed by these VMs; lfence is
 * dispatch-serialising on Intel and on AMD Zen 2 and later. Later stores may still be in flight.
 */
static inline uint64_t tsc_after_loads(void)
{
#if defined(__x86_64__) || defined(__i386__)
	_mm_lfence();
	return __rdtsc();
#else
	return rte_rdtsc_precise();
#endif
}

static uint64_t mono_raw_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* No EAL, so no rte_get_tsc_hz(): count TSC cycles against CLOCK_MONOTONIC_RAW. */
static double tsc_calibrate_hz(void)
{
	struct timespec nap = { .tv_sec = 0, .tv_nsec = (long)TSC_CALIBRATE_NS };
	uint64_t ns0 = mono_raw_ns(), tsc0 = tsc_now();
	uint64_t ns1, tsc1;

	nanosleep(&nap, NULL);
	ns1 = mono_raw_ns();
	tsc1 = tsc_now();
	return (double)(tsc1 - tsc0) * 1e9 / (double)(ns1 - ns0);
}

static inline double tsc_to_ns(double tsc)
{
	return tsc * 1e9 / tsc_hz;
}

/* ---- shared state ---------------------------------------------------------------------------- */

/* A word the two threads both write, alone in its cache line. */
struct flag {
	uint64_t value;
	uint8_t pad[ZH_CACHE_LINE_SIZE - sizeof(uint64_t)];
} ZH_ALIGNED(ZH_CACHE_LINE_SIZE);

/* Everything one run needs, allocated once at start-up and reset between runs. */
struct bench {
	/* rings, built once */
	struct zh_ring zh;
	uint8_t *zh_mem;
	size_t zh_reset_bytes;   /* tickets and slots; answer buffers are never touched */
	struct rte_ring *rte_req;
	struct rte_ring *rte_cpl;
	struct zh_slot *descs;   /* [RING_SLOTS] the descriptors rte_ring carries by pointer */
	int64_t *samples_tsc;    /* [samples_max] latencies (consumer) or probe round trips (producer) */
	uint64_t samples_max;

	/* this run, set by the main thread before the threads start */
	uint64_t items;
	uint32_t burst;
	uint64_t gap_tsc;
	uint64_t deadline_tsc;

	/* results, each written by one thread before it returns */
	uint64_t done;           /* producer: requests answered (or probe round trips) */
	uint64_t elapsed_tsc;    /* producer: first request to last answer */
	uint64_t errors;         /* producer: lost, reordered or wrongly answered requests */
	uint64_t sample_count;   /* consumer (producer for probes): samples_tsc entries written */
	int64_t ab_min_tsc;      /* probe: least cpu0 stamp -> cpu1 stamp */
	int64_t ba_min_tsc;      /* probe: least cpu1 stamp -> cpu0 stamp */

	struct flag ready;       /* threads at the start line */
	struct flag stop;        /* producer finished: the consumer leaves once the ring is empty */
	struct flag ping;        /* probe: cpu0 -> cpu1 */
	struct flag pong;        /* probe: cpu1 -> cpu0 */
};

/* Both threads arrive before either starts its clock. Returns 0 if the run was called off. */
static int start_line(struct bench *b)
{
	__atomic_fetch_add(&b->ready.value, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&b->ready.value, __ATOMIC_ACQUIRE) < 2) {
		if (__atomic_load_n(&b->stop.value, __ATOMIC_ACQUIRE))
			return 0;
		zh_cpu_relax();
	}
	return 1;
}

static inline int stopped(struct bench *b)
{
	return __atomic_load_n(&b->stop.value, __ATOMIC_ACQUIRE) != 0;
}

static void producer_finish(struct bench *b, uint64_t done, uint64_t elapsed_tsc, uint64_t errors)
{
	b->done = done;
	b->elapsed_tsc = elapsed_tsc;
	b->errors = errors;
	__atomic_store_n(&b->stop.value, 1, __ATOMIC_RELEASE);
}

/*
 * The consumer's latency samples. Counted in the consumer's own copy and stored once at the end: a
 * count in struct bench would share a line with the run parameters the producer reads.
 */
struct lat_log {
	int64_t *samples_tsc;
	uint64_t count;
	uint64_t count_max;
};

static inline void lat_log_add(struct lat_log *log, uint64_t publish_tsc, uint64_t claim_tsc)
{
	if (log->count < log->count_max)
		log->samples_tsc[log->count++] = (int64_t)(claim_tsc - publish_tsc);
}

/* Spin for the pacing gap; returns 0 once the run's time is up. */
static inline int pace(uint64_t gap_tsc, uint64_t deadline_tsc)
{
	uint64_t now = tsc_now();

	if (now > deadline_tsc)
		return 0;
	while (tsc_now() - now < gap_tsc)
		zh_cpu_relax();
	return 1;
}

/* ---- zh ring --------------------------------------------------------------------------------- */

static void *zh_latency_producer(void *arg)
{
	struct bench *b = arg;
	const struct zh_ring ring = b->zh;
	const uint64_t items = b->items, gap_tsc = b->gap_tsc, deadline_tsc = b->deadline_tsc;
	uint64_t errors = 0, i, t_start;

	if (!start_line(b))
		return NULL;
	t_start = tsc_now();
	for (i = 0; i < items; i++) {
		uint64_t ticket;
		struct zh_slot *slot = zh_ring_produce_begin(&ring, &ticket);

		if (!slot || ticket != i) { /* one request in flight: never full, tickets in order */
			errors++;
			break;
		}
		slot->req_addr = i;
		slot->publish_tsc = tsc_now();
		zh_ring_publish(&ring, slot, ticket);
		while (!zh_ring_is_done(&ring, slot, ticket)) {
			zh_cpu_relax();
			if (tsc_now() > deadline_tsc)
				goto out; /* the consumer completes it; nobody reuses the slot */
		}
		errors += slot->done_dclk != i + 1;
		zh_ring_release(&ring, slot, ticket);
		if (!pace(gap_tsc, deadline_tsc)) {
			i++;
			break;
		}
	}
out:
	producer_finish(b, i, tsc_now() - t_start, errors);
	return NULL;
}

static void *zh_latency_consumer(void *arg)
{
	struct bench *b = arg;
	const struct zh_ring ring = b->zh;
	struct lat_log log = { b->samples_tsc, 0, b->samples_max };

	if (!start_line(b))
		return NULL;
	for (;;) {
		uint64_t ticket, publish_tsc;
		struct zh_slot *slot = zh_ring_claim(&ring, &ticket);

		if (!slot) {
			if (stopped(b))
				break;
			zh_cpu_relax();
			continue;
		}
		publish_tsc = slot->publish_tsc;
		lat_log_add(&log, publish_tsc, tsc_after_loads());
		slot->done_dclk = slot->req_addr + 1;
		zh_ring_complete(&ring, slot, ticket);
	}
	b->sample_count = log.count;
	return NULL;
}

/* Publish up to `burst`, then reap in order up to `burst`, until every request is answered. */
static void *zh_throughput_producer(void *arg)
{
	struct bench *b = arg;
	const struct zh_ring ring = b->zh;
	const uint32_t burst = b->burst;
	const uint64_t deadline_tsc = b->deadline_tsc;
	uint64_t target = b->items, produced = 0, reaped = 0, errors = 0, t_start;
	uint32_t passes = 0;

	if (!start_line(b))
		return NULL;
	t_start = tsc_now();
	while (reaped < target) {
		uint32_t n, r;

		for (n = 0; n < burst && produced < target; n++) {
			uint64_t ticket;
			struct zh_slot *slot = zh_ring_produce_begin(&ring, &ticket);

			if (!slot)
				break;
			errors += ticket != produced;
			slot->req_addr = ticket;
			zh_ring_publish(&ring, slot, ticket);
			produced++;
		}
		for (r = 0; r < burst && reaped < produced; r++) {
			struct zh_slot *slot = zh_ring_slot(&ring, reaped);

			if (!zh_ring_is_done(&ring, slot, reaped))
				break;
			errors += slot->done_dclk != reaped + 1;
			zh_ring_release(&ring, slot, reaped);
			reaped++;
		}
		if (n == 0 && r == 0)
			zh_cpu_relax();
		/* Out of time: produce no more, answer what is in flight. */
		if (++passes % DEADLINE_CHECK_PASSES == 0 && tsc_now() > deadline_tsc)
			target = produced;
	}
	producer_finish(b, reaped, tsc_now() - t_start, errors);
	return NULL;
}

/* The zh ring has no batch claim: one claim and one completion per request, as krn_loop_step does. */
static void *zh_throughput_consumer(void *arg)
{
	struct bench *b = arg;
	const struct zh_ring ring = b->zh;

	if (!start_line(b))
		return NULL;
	for (;;) {
		uint64_t ticket;
		struct zh_slot *slot = zh_ring_claim(&ring, &ticket);

		if (!slot) {
			if (stopped(b))
				break;
			zh_cpu_relax();
			continue;
		}
		slot->done_dclk = slot->req_addr + 1;
		zh_ring_complete(&ring, slot, ticket);
	}
	return NULL;
}

/* ---- rte_ring -------------------------------------------------------------------------------- */

static void *rte_latency_producer(void *arg)
{
	struct bench *b = arg;
	struct rte_ring *const req = b->rte_req, *const cpl = b->rte_cpl;
	struct zh_slot *const descs = b->descs;
	const uint64_t items = b->items, gap_tsc = b->gap_tsc, deadline_tsc = b->deadline_tsc;
	uint64_t errors = 0, i, t_start;

	if (!start_line(b))
		return NULL;
	t_start = tsc_now();
	for (i = 0; i < items; i++) {
		struct zh_slot *d = &descs[i & (RING_SLOTS - 1)];
		void *answered;

		d->req_addr = i;
		d->publish_tsc = tsc_now();
		if (rte_ring_sp_enqueue(req, d) != 0) { /* one request in flight: never full */
			errors++;
			break;
		}
		while (rte_ring_sc_dequeue(cpl, &answered) != 0) {
			zh_cpu_relax();
			if (tsc_now() > deadline_tsc)
				goto out;
		}
		errors += answered != d || d->done_dclk != i + 1;
		if (!pace(gap_tsc, deadline_tsc)) {
			i++;
			break;
		}
	}
out:
	producer_finish(b, i, tsc_now() - t_start, errors);
	return NULL;
}

static void *rte_latency_consumer(void *arg)
{
	struct bench *b = arg;
	struct rte_ring *const req = b->rte_req, *const cpl = b->rte_cpl;
	struct lat_log log = { b->samples_tsc, 0, b->samples_max };

	if (!start_line(b))
		return NULL;
	for (;;) {
		struct zh_slot *d;
		uint64_t publish_tsc;
		void *obj;

		if (rte_ring_sc_dequeue(req, &obj) != 0) {
			if (stopped(b))
				break;
			zh_cpu_relax();
			continue;
		}
		d = obj;
		publish_tsc = d->publish_tsc;
		lat_log_add(&log, publish_tsc, tsc_after_loads());
		d->done_dclk = d->req_addr + 1;
		/* The completion ring holds every request in flight, so this cannot fail; the producer
		 * counts a lost answer if it did. */
		(void)rte_ring_sp_enqueue(cpl, d);
	}
	b->sample_count = log.count;
	return NULL;
}

/* Enqueue up to `burst` requests, then dequeue up to `burst` answers, until every one is answered. */
static void *rte_throughput_producer(void *arg)
{
	struct bench *b = arg;
	struct rte_ring *const req = b->rte_req, *const cpl = b->rte_cpl;
	struct zh_slot *const descs = b->descs;
	const uint32_t burst = b->burst;
	const uint64_t deadline_tsc = b->deadline_tsc;
	uint64_t target = b->items, produced = 0, reaped = 0, errors = 0, t_start;
	uint32_t passes = 0;
	void *objs[BURST_MAX];

	if (!start_line(b))
		return NULL;
	t_start = tsc_now();
	while (reaped < target) {
		uint64_t room = RTE_IN_FLIGHT_MAX - (produced - reaped);
		uint32_t want = burst, n = 0, r;

		if (want > room)
			want = (uint32_t)room;
		if (want > target - produced)
			want = (uint32_t)(target - produced);
		if (want > 0) {
			for (uint32_t i = 0; i < want; i++) {
				struct zh_slot *d = &descs[(produced + i) & (RING_SLOTS - 1)];

				d->req_addr = produced + i;
				objs[i] = d;
			}
			n = rte_ring_sp_enqueue_burst(req, objs, want, NULL);
			produced += n;
		}
		r = rte_ring_sc_dequeue_burst(cpl, objs, burst, NULL);
		for (uint32_t i = 0; i < r; i++) {
			const struct zh_slot *d = objs[i];

			errors += d->req_addr != reaped || d->done_dclk != reaped + 1;
			reaped++;
		}
		if (n == 0 && r == 0)
			zh_cpu_relax();
		if (++passes % DEADLINE_CHECK_PASSES == 0 && tsc_now() > deadline_tsc)
			target = produced;
	}
	producer_finish(b, reaped, tsc_now() - t_start, errors);
	return NULL;
}

static void *rte_throughput_consumer(void *arg)
{
	struct bench *b = arg;
	struct rte_ring *const req = b->rte_req, *const cpl = b->rte_cpl;
	const uint32_t burst = b->burst;
	void *objs[BURST_MAX];

	if (!start_line(b))
		return NULL;
	for (;;) {
		uint32_t n = rte_ring_sc_dequeue_burst(req, objs, burst, NULL);
		uint32_t sent = 0;

		if (n == 0) {
			if (stopped(b))
				break;
			zh_cpu_relax();
			continue;
		}
		for (uint32_t i = 0; i < n; i++) {
			struct zh_slot *d = objs[i];

			d->done_dclk = d->req_addr + 1;
		}
		/* Never loops: the completion ring holds every request in flight. */
		while (sent < n)
			sent += rte_ring_sp_enqueue_burst(cpl, objs + sent, n - sent, NULL);
	}
	return NULL;
}

/* ---- placement probe ------------------------------------------------------------------------- */

/*
 * A cache line bounced between the two cpus. First bare round trips, timed in blocks: the median block
 * tells near from far. Then round trips in which each side stamps the TSC: the least one-way
 * differences in each direction bound the TSC offset between the cpus (offset = (ab - ba) / 2, within
 * +-(ab + ba) / 2), which the latency figures rely on being small.
 */
static void *probe_cpu0(void *arg)
{
	struct bench *b = arg;
	int64_t ab_min = INT64_MAX, ba_min = INT64_MAX;
	uint64_t seq = 0, last_pong;

	if (!start_line(b))
		return NULL;
	for (uint32_t k = 0; k < PROBE_BLOCKS; k++) {
		uint64_t t0 = tsc_now();

		for (uint32_t i = 0; i < PROBE_BLOCK_TRIPS; i++) {
			seq++;
			__atomic_store_n(&b->ping.value, seq, __ATOMIC_RELEASE);
			while (__atomic_load_n(&b->pong.value, __ATOMIC_ACQUIRE) != seq)
				;
		}
		b->samples_tsc[k] = (int64_t)(tsc_now() - t0);
	}
	last_pong = seq;
	for (uint32_t i = 0; i < PROBE_STAMPED_TRIPS; i++) {
		uint64_t t0 = tsc_now(), t1, t2;

		__atomic_store_n(&b->ping.value, ++seq, __ATOMIC_RELEASE);
		while ((t1 = __atomic_load_n(&b->pong.value, __ATOMIC_ACQUIRE)) == last_pong)
			;
		t2 = tsc_after_loads();
		last_pong = t1;
		if ((int64_t)(t1 - t0) < ab_min)
			ab_min = (int64_t)(t1 - t0);
		if ((int64_t)(t2 - t1) < ba_min)
			ba_min = (int64_t)(t2 - t1);
	}
	b->sample_count = PROBE_BLOCKS;
	b->ab_min_tsc = ab_min;
	b->ba_min_tsc = ba_min;
	producer_finish(b, seq, 0, 0);
	return NULL;
}

static void *probe_cpu1(void *arg)
{
	struct bench *b = arg;
	uint64_t seq = 0;

	if (!start_line(b))
		return NULL;
	for (uint32_t i = 0; i < PROBE_BLOCKS * PROBE_BLOCK_TRIPS; i++) {
		seq++;
		while (__atomic_load_n(&b->ping.value, __ATOMIC_ACQUIRE) != seq)
			;
		__atomic_store_n(&b->pong.value, seq, __ATOMIC_RELEASE);
	}
	for (uint32_t i = 0; i < PROBE_STAMPED_TRIPS; i++) {
		seq++;
		while (__atomic_load_n(&b->ping.value, __ATOMIC_ACQUIRE) != seq)
			;
		/* A TSC stamp is far above any sequence number and never repeats on one cpu. */
		__atomic_store_n(&b->pong.value, tsc_after_loads(), __ATOMIC_RELEASE);
	}
	return NULL;
}

/* ---- runs ------------------------------------------------------------------------------------ */

typedef void *(*thread_fn)(void *);

enum peer { PEER_ZH, PEER_RTE, PEER_COUNT };

static const char *const peer_names[PEER_COUNT] = { "zh_ring", "rte_ring" };

struct scenario {
	const char *name;
	uint32_t burst;
	int is_latency;
	thread_fn producer[PEER_COUNT];
	thread_fn consumer[PEER_COUNT];
};

enum scenario_id { SC_LATENCY, SC_BURST_1, SC_BURST_LARGE, SC_COUNT };

static const struct scenario scenarios[SC_COUNT] = {
	[SC_LATENCY] = { "latency", 1, 1, { zh_latency_producer, rte_latency_producer },
			 { zh_latency_consumer, rte_latency_consumer } },
	[SC_BURST_1] = { "burst 1", 1, 0, { zh_throughput_producer, rte_throughput_producer },
			 { zh_throughput_consumer, rte_throughput_consumer } },
	[SC_BURST_LARGE] = { "burst 32", BURST_MAX, 0, { zh_throughput_producer, rte_throughput_producer },
			     { zh_throughput_consumer, rte_throughput_consumer } },
};

struct run_result {
	double p50_ns;       /* latency */
	double p99_ns;       /* latency */
	double mreq_per_s;   /* throughput */
	uint64_t done;
	int time_bounded;
};

enum placement { PLACEMENT_NEAR, PLACEMENT_FAR, PLACEMENT_MIXED, PLACEMENT_COUNT };

static const char *const placement_names[PLACEMENT_COUNT] = { "near", "far", "mixed" };

struct round_result {
	double rtt_ns[2];          /* probe before, after */
	double tsc_offset_ns[2];   /* cpu1 - cpu0 estimate, before, after */
	double tsc_offset_bound_ns;
	enum placement placement;
	struct run_result run[SC_COUNT][PEER_COUNT];
};

static void bench_reset(struct bench *b)
{
	memset(b->zh_mem, 0, b->zh_reset_bytes); /* tickets 0, every slot lap 0 FREE */
	rte_ring_reset(b->rte_req);
	rte_ring_reset(b->rte_cpl);
	b->ready.value = 0;
	b->stop.value = 0;
	b->ping.value = 0;
	b->pong.value = 0;
	b->done = b->elapsed_tsc = b->errors = b->sample_count = 0;
}

static int start_pinned(pthread_t *tid, int cpu, thread_fn fn, void *arg)
{
	pthread_attr_t attr;
	cpu_set_t set;
	int rc;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_attr_init(&attr);
	rc = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	if (rc == 0)
		rc = pthread_create(tid, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -rc;
}

/* Producer on CPU_PRODUCER, consumer on CPU_CONSUMER; returns when both have finished. */
static int run_pair(struct bench *b, thread_fn producer, thread_fn consumer)
{
	pthread_t tid[2];
	int rc;

	rc = start_pinned(&tid[0], CPU_PRODUCER, producer, b);
	if (rc)
		return rc;
	rc = start_pinned(&tid[1], CPU_CONSUMER, consumer, b);
	if (rc) {
		__atomic_store_n(&b->stop.value, 1, __ATOMIC_RELEASE); /* call the producer off */
		pthread_join(tid[0], NULL);
		return rc;
	}
	pthread_join(tid[0], NULL);
	pthread_join(tid[1], NULL);
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t percentile(const int64_t *sorted, uint64_t n, unsigned pct)
{
	uint64_t rank = (n * pct + 99) / 100;

	return sorted[rank > 0 ? rank - 1 : 0];
}

struct probe_result {
	double rtt_ns;
	double tsc_offset_ns;
	double tsc_offset_bound_ns;
};

static int probe(struct bench *b, struct probe_result *out)
{
	int rc;

	bench_reset(b);
	rc = run_pair(b, probe_cpu0, probe_cpu1);
	if (rc)
		return rc;
	qsort(b->samples_tsc, b->sample_count, sizeof(b->samples_tsc[0]), cmp_i64);
	out->rtt_ns = tsc_to_ns((double)percentile(b->samples_tsc, b->sample_count, 50) / PROBE_BLOCK_TRIPS);
	out->tsc_offset_ns = tsc_to_ns((double)(b->ab_min_tsc - b->ba_min_tsc) / 2);
	out->tsc_offset_bound_ns = tsc_to_ns((double)(b->ab_min_tsc + b->ba_min_tsc) / 2);
	return 0;
}

static int run_one(struct bench *b, const struct scenario *sc, enum peer peer, uint64_t items,
		   uint64_t run_tsc, struct run_result *out)
{
	int rc;

	bench_reset(b);
	b->items = items;
	b->burst = sc->burst;
	b->gap_tsc = (uint64_t)(tsc_hz * LAT_GAP_NS / 1e9);
	b->deadline_tsc = tsc_now() + run_tsc;
	rc = run_pair(b, sc->producer[peer], sc->consumer[peer]);
	if (rc)
		return rc;
	if (b->errors) {
		fprintf(stderr, "%s: %s %s: %" PRIu64 " requests lost, reordered or wrongly answered\n",
			BENCH_NAME, peer_names[peer], sc->name, b->errors);
		return -EPROTO;
	}
	memset(out, 0, sizeof(*out));
	out->done = b->done;
	out->time_bounded = b->done < items;
	if (sc->is_latency) {
		if (b->sample_count == 0)
			return -EPROTO;
		qsort(b->samples_tsc, b->sample_count, sizeof(b->samples_tsc[0]), cmp_i64);
		out->p50_ns = tsc_to_ns((double)percentile(b->samples_tsc, b->sample_count, 50));
		out->p99_ns = tsc_to_ns((double)percentile(b->samples_tsc, b->sample_count, 99));
	} else {
		out->mreq_per_s = (double)b->done * tsc_hz / (double)b->elapsed_tsc / 1e6;
	}
	return 0;
}

static enum placement classify(double rtt_before_ns, double rtt_after_ns)
{
	int far_before = rtt_before_ns >= PLACEMENT_FAR_RTT_NS;
	int far_after = rtt_after_ns >= PLACEMENT_FAR_RTT_NS;

	if (far_before != far_after)
		return PLACEMENT_MIXED;
	return far_before ? PLACEMENT_FAR : PLACEMENT_NEAR;
}

static void print_run(const struct scenario *sc, enum peer peer, const struct run_result *r)
{
	if (sc->is_latency)
		printf("  %-8s %-8s p50 %7.1f ns  p99 %7.1f ns  (%" PRIu64 " items%s)\n", sc->name,
		       peer_names[peer], r->p50_ns, r->p99_ns, r->done, r->time_bounded ? ", time-bounded" : "");
	else
		printf("  %-8s %-8s %8.2f Mreq/s            (%" PRIu64 " items%s)\n", sc->name,
		       peer_names[peer], r->mreq_per_s, r->done, r->time_bounded ? ", time-bounded" : "");
}

/* One round: probe, every scenario with both rings back to back, probe. Odd rounds run rte_ring first. */
static int run_round(struct bench *b, unsigned round, uint64_t lat_items, uint64_t tput_items,
		     uint64_t run_tsc, struct round_result *out)
{
	struct probe_result pr[2];
	int rc;

	rc = probe(b, &pr[0]);
	for (size_t s = 0; rc == 0 && s < SC_COUNT; s++) {
		const struct scenario *sc = &scenarios[s];

		for (unsigned k = 0; rc == 0 && k < PEER_COUNT; k++) {
			enum peer peer = (enum peer)(round % 2 ? PEER_COUNT - 1 - k : k);

			rc = run_one(b, sc, peer, sc->is_latency ? lat_items : tput_items, run_tsc,
				     &out->run[s][peer]);
		}
	}
	if (rc == 0)
		rc = probe(b, &pr[1]);
	if (rc)
		return rc;
	for (int i = 0; i < 2; i++) {
		out->rtt_ns[i] = pr[i].rtt_ns;
		out->tsc_offset_ns[i] = pr[i].tsc_offset_ns;
	}
	out->tsc_offset_bound_ns = pr[0].tsc_offset_bound_ns;
	out->placement = classify(pr[0].rtt_ns, pr[1].rtt_ns);
	printf("round %u: %s (cache-line round trip %.0f ns before, %.0f ns after; TSC cpu1-cpu0 %+.0f/%+.0f ns, +-%.0f)\n",
	       round + 1, placement_names[out->placement], pr[0].rtt_ns, pr[1].rtt_ns, pr[0].tsc_offset_ns,
	       pr[1].tsc_offset_ns, pr[0].tsc_offset_bound_ns);
	for (size_t s = 0; s < SC_COUNT; s++)
		for (unsigned p = 0; p < PEER_COUNT; p++)
			print_run(&scenarios[s], (enum peer)p, &out->run[s][p]);
	fflush(stdout);
	return 0;
}

/* ---- summary --------------------------------------------------------------------------------- */

/* The figures of the summary table: one row each. */
enum metric { METRIC_LAT_P50, METRIC_LAT_P99, METRIC_BURST1, METRIC_BURST32, METRIC_COUNT };

static const struct {
	const char *name;
	size_t scenario;
} metrics[METRIC_COUNT] = {
	[METRIC_LAT_P50] = { "latency p50 ns", SC_LATENCY },
	[METRIC_LAT_P99] = { "latency p99 ns", SC_LATENCY },
	[METRIC_BURST1] = { "burst 1 Mreq/s", SC_BURST_1 },
	[METRIC_BURST32] = { "burst 32 Mreq/s", SC_BURST_LARGE },
};

static double metric_value(const struct round_result *r, enum metric m, enum peer peer)
{
	const struct run_result *run = &r->run[metrics[m].scenario][peer];

	switch (m) {
	case METRIC_LAT_P50:
		return run->p50_ns;
	case METRIC_LAT_P99:
		return run->p99_ns;
	default:
		return run->mreq_per_s;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One block of the table: the rounds of one placement, or all rounds when `only` is PLACEMENT_COUNT. */
static void print_summary(const struct round_result *rounds, unsigned round_count, enum placement only)
{
	double zh[ROUNDS_MAX], rte[ROUNDS_MAX], ratio[ROUNDS_MAX];
	const char *label = only == PLACEMENT_COUNT ? "all" : placement_names[only];

	for (unsigned m = 0; m < METRIC_COUNT; m++) {
		unsigned n = 0;

		for (unsigned i = 0; i < round_count; i++) {
			if (only != PLACEMENT_COUNT && rounds[i].placement != only)
				continue;
			zh[n] = metric_value(&rounds[i], (enum metric)m, PEER_ZH);
			rte[n] = metric_value(&rounds[i], (enum metric)m, PEER_RTE);
			ratio[n] = zh[n] / rte[n];
			n++;
		}
		if (n == 0)
			return;
		printf("%-6s %6u  %-16s %10.2f %10.2f %8.2f\n", label, n, metrics[m].name, median(zh, n),
		       median(rte, n), median(ratio, n));
	}
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static size_t round_up(size_t n, size_t align)
{
	return (n + align - 1) / align * align;
}

/* The zh ring as the cpu device lays it out (gpu/gpu_device.c ring_alloc): tickets, slots, answers. */
static int zh_ring_build(struct bench *b)
{
	uint32_t ans_stride = (uint32_t)round_up(ZH_ANS_MAX_BYTES, ZH_CACHE_LINE_SIZE);
	size_t tickets_size = 2 * sizeof(struct zh_ring_ticket);
	size_t slots_size = (size_t)RING_SLOTS * sizeof(struct zh_slot);
	size_t total = tickets_size + slots_size + (size_t)RING_SLOTS * ans_stride;

	b->zh_mem = aligned_alloc(ZH_CACHE_LINE_SIZE, total);
	if (!b->zh_mem)
		return -ENOMEM;
	memset(b->zh_mem, 0, total);
	b->zh_reset_bytes = tickets_size + slots_size;
	b->zh.prod_ticket = (struct zh_ring_ticket *)b->zh_mem;
	b->zh.cons_ticket = (struct zh_ring_ticket *)b->zh_mem + 1;
	b->zh.slots = (struct zh_slot *)(b->zh_mem + tickets_size);
	b->zh.ans_base = b->zh_mem + tickets_size + slots_size;
	b->zh.slot_count = RING_SLOTS;
	b->zh.slot_mask = RING_SLOTS - 1;
	b->zh.lap_shift = (uint32_t)__builtin_ctz(RING_SLOTS);
	b->zh.ans_stride_bytes = ans_stride;
	b->zh.ans_headroom_bytes = 0;
	return 0;
}

static int rte_ring_build(struct rte_ring **out, const char *name)
{
	ssize_t size = rte_ring_get_memsize(RING_SLOTS);
	struct rte_ring *r;
	int rc;

	if (size < 0)
		return (int)size;
	r = aligned_alloc(RTE_CACHE_LINE_SIZE, round_up((size_t)size, RTE_CACHE_LINE_SIZE));
	if (!r)
		return -ENOMEM;
	rc = rte_ring_init(r, name, RING_SLOTS, RING_F_SP_ENQ | RING_F_SC_DEQ);
	if (rc) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static void bench_free(struct bench *b)
{
	free(b->zh_mem);
	free(b->rte_req);
	free(b->rte_cpl);
	free(b->descs);
	free(b->samples_tsc);
}

static int bench_build(struct bench *b, uint64_t samples_max)
{
	int rc;

	memset(b, 0, sizeof(*b));
	b->samples_max = samples_max;
	b->samples_tsc = calloc(samples_max, sizeof(b->samples_tsc[0]));
	b->descs = aligned_alloc(ZH_CACHE_LINE_SIZE, RING_SLOTS * sizeof(struct zh_slot));
	if (!b->samples_tsc || !b->descs) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(b->descs, 0, RING_SLOTS * sizeof(struct zh_slot));
	rc = zh_ring_build(b);
	if (rc == 0)
		rc = rte_ring_build(&b->rte_req, "bench_req");
	if (rc == 0)
		rc = rte_ring_build(&b->rte_cpl, "bench_cpl");
	if (rc == 0)
		return 0;
fail:
	bench_free(b);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------------ */

struct options {
	unsigned seconds;
	unsigned rounds;
	uint64_t lat_items;
	uint64_t tput_items;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--seconds S] [--items N] [--tput-items N] [--rounds R]\n"
		"  --seconds S      bound on the whole run (default %u, %u..%u)\n"
		"  --items N        paced latency requests per run (default %u)\n"
		"  --tput-items N   requests per throughput run (default %u)\n"
		"  --rounds R       rounds of every scenario with both rings (default %u, 1..%u)\n"
		"Threads are pinned to cpu %d (producer) and cpu %d (consumer).\n",
		BENCH_NAME, SECONDS_DEFAULT, SECONDS_MIN, SECONDS_MAX, LAT_ITEMS_DEFAULT,
		TPUT_ITEMS_DEFAULT, ROUNDS_DEFAULT, ROUNDS_MAX, CPU_PRODUCER, CPU_CONSUMER);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' }, { "items", required_argument, NULL, 'n' },
		{ "tput-items", required_argument, NULL, 't' }, { "rounds", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*o = (struct options){ SECONDS_DEFAULT, ROUNDS_DEFAULT, LAT_ITEMS_DEFAULT, TPUT_ITEMS_DEFAULT };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_u64(optarg, SECONDS_MIN, SECONDS_MAX, &v))
				goto bad;
			o->seconds = (unsigned)v;
			break;
		case 'n':
			if (parse_u64(optarg, ITEMS_MIN, ITEMS_MAX, &o->lat_items))
				goto bad;
			break;
		case 't':
			if (parse_u64(optarg, ITEMS_MIN, ITEMS_MAX, &o->tput_items))
				goto bad;
			break;
		case 'r':
			if (parse_u64(optarg, 1, ROUNDS_MAX, &v))
				goto bad;
			o->rounds = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind == argc)
		return 0;
bad:
	usage(stderr);
	return -EINVAL;
}

/* What the run can be judged by: the machine, its load and whether its TSC can be compared across cpus. */
static void print_machine(void)
{
	char line[512], model[128] = "unknown", load[64] = "?";
	int constant_tsc = 0, nonstop_tsc = 0;
	FILE *f = fopen("/proc/cpuinfo", "r");
	time_t now = time(NULL);
	char date[32];

	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0 && strcmp(model, "unknown") == 0) {
			const char *colon = strchr(line, ':');

			if (colon)
				snprintf(model, sizeof(model), "%.*s", (int)strcspn(colon + 2, "\n"), colon + 2);
		}
		if (strncmp(line, "flags", 5) == 0) {
			constant_tsc |= strstr(line, " constant_tsc") != NULL;
			nonstop_tsc |= strstr(line, " nonstop_tsc") != NULL;
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/loadavg", "r");
	if (f && fgets(load, sizeof(load), f))
		load[strcspn(load, "\n")] = '\0';
	if (f)
		fclose(f);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", localtime(&now));
	printf("%s: %s, %ld cpus online, load %s, %s\n", BENCH_NAME, model, sysconf(_SC_NPROCESSORS_ONLN),
	       load, date);
	printf("TSC %.3f MHz (against CLOCK_MONOTONIC_RAW), constant_tsc %s, nonstop_tsc %s\n", tsc_hz / 1e6,
	       constant_tsc ? "yes" : "NO", nonstop_tsc ? "yes" : "NO");
}

int main(int argc, char **argv)
{
	static struct round_result rounds[ROUNDS_MAX];
	struct options opt;
	struct bench b;
	uint64_t run_tsc;
	unsigned done_rounds = 0;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_options(argc, argv, &opt))
		return 1;
	if (sysconf(_SC_NPROCESSORS_ONLN) <= CPU_CONSUMER) {
		printf("%s: skipped, needs cpus %d and %d\n", BENCH_NAME, CPU_PRODUCER, CPU_CONSUMER);
		return 77;
	}
	/* Every run ends by its own time bound; a hang (a ring bug) ends here. */
	alarm(opt.seconds + HANG_GRACE_SECONDS);
	tsc_hz = tsc_calibrate_hz();
	print_machine();
	rc = bench_build(&b, opt.lat_items);
	if (rc) {
		fprintf(stderr, "%s: set-up: %s\n", BENCH_NAME, strerror(-rc));
		return 1;
	}
	/* Two runs per scenario per round share what is left of the budget once set-up is paid. */
	run_tsc = (uint64_t)(tsc_hz * (opt.seconds - SECONDS_OVERHEAD) / (opt.rounds * SC_COUNT * PEER_COUNT));
	printf("ring %u entries; %u rounds; latency %" PRIu64 " paced requests (gap %u ns), throughput %" PRIu64
	       " requests per run; each run bounded by %.2f s\n",
	       RING_SLOTS, opt.rounds, opt.lat_items, LAT_GAP_NS, opt.tput_items, (double)run_tsc / tsc_hz);
	for (; done_rounds < opt.rounds; done_rounds++) {
		rc = run_round(&b, done_rounds, opt.lat_items, opt.tput_items, run_tsc, &rounds[done_rounds]);
		if (rc) {
			fprintf(stderr, "%s: round %u: %s\n", BENCH_NAME, done_rounds + 1, strerror(-rc));
			bench_free(&b);
			return 1;
		}
	}
	bench_free(&b);

	printf("\nsummary: medians over rounds; zh/rte is the median of the per-round ratios "
	       "(each round ran both rings back to back)\n");
	printf("%-6s %6s  %-16s %10s %10s %8s\n", "cores", "rounds", "scenario", "zh_ring", "rte_ring", "zh/rte");
	print_summary(rounds, done_rounds, PLACEMENT_NEAR);
	print_summary(rounds, done_rounds, PLACEMENT_FAR);
	print_summary(rounds, done_rounds, PLACEMENT_MIXED);
	print_summary(rounds, done_rounds, PLACEMENT_COUNT);
	return 0;
}
