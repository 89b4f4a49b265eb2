/* SPDX-License-Identifier: MIT */
/*
 * test_nicclk.c: the NIC-clock-to-TSC map of dataplane/dp_nicclk.c: no map before two samples far
 * enough apart, the fitted rate and offset on an exact line, a NIC clock that runs fast (rate drift), a
 * jittered clock whose every mapped stamp must fall within the stated bound, a 64-bit counter that
 * wraps inside the window, microsecond stamps on a nanosecond clock, the horizon, a clock that runs
 * backwards, and the seqlock under a concurrent writer. No EAL.
 *
 * Exit status: 0 all checks passed, 1 a check failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_nicclk.h"
#define TEST_NAME "test_nicclk"
#include "zh_check.h"


#define TSC_HZ 3000000000ull           /* 3 GHz: 3 ticks per ns */
#define REFRESH_TSC (TSC_HZ / 10)      /* a fit every 100 ms */
#define HORIZON_NS 300000000ull        /* 300 ms: three refresh periods, as dp_port maps them */
#define STEP_NS 100000000ull           /* samples 100 ms apart */

/* |a - b| as a signed TSC difference. */
static uint64_t tsc_dist(uint64_t a, uint64_t b)
{
	int64_t d = (int64_t)(a - b);

	return d < 0 ? -(uint64_t)d : (uint64_t)d;
}

static uint64_t ns_to_tsc(uint64_t ns)
{
	return ns * (TSC_HZ / 1000000000ull);
}

/* Samples on the exact line tsc = tsc0 + 3 * (nic - nic0), each bracketed by ±half_width_tsc. */
static void add_line(struct dp_nicclk *c, uint64_t nic0, uint64_t tsc0, uint32_t count, uint64_t half_width_tsc)
{
	for (uint32_t i = 0; i < count; i++) {
		uint64_t nic = nic0 + i * STEP_NS;
		uint64_t tsc = tsc0 + ns_to_tsc(i * STEP_NS);

		dp_nicclk_add(c, tsc - half_width_tsc, nic, tsc + half_width_tsc);
	}
}

static void test_needs_two_far_samples(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;

	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	CHECK(dp_nicclk_read(&c.pub, &m) == -EAGAIN);
	CHECK(dp_nicclk_fit(&c, &m) == -EAGAIN && !m.valid);
	dp_nicclk_add(&c, 1000, 5000, 1100);
	CHECK(dp_nicclk_update(&c) == -EAGAIN);
	CHECK(dp_nicclk_read(&c.pub, &m) == -EAGAIN);
	/* A second sample 1 us later with 100-tick brackets: the rate is known to 3%, far too little. */
	dp_nicclk_add(&c, 4000, 6000, 4100);
	CHECK(dp_nicclk_fit(&c, &m) == -EAGAIN);
	/* One 100 ms later: now the rate is known to 1e-6. */
	dp_nicclk_add(&c, 1000 + ns_to_tsc(STEP_NS), 5000 + STEP_NS, 1100 + ns_to_tsc(STEP_NS));
	CHECK(dp_nicclk_update(&c) == 0);
	CHECK(dp_nicclk_read(&c.pub, &m) == 0 && m.valid);
	CHECK_U64(c.fits, 1);
}

static void test_exact_line(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	uint64_t tsc;

	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	add_line(&c, 1000000000000ull, 77777777777ull, 8, 15);
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	/* 3.0 in 32.32 fixed point, to the last bit or so. */
	CHECK(tsc_dist(m.tsc_per_nic_q32, 3ull << 32) <= 2);
	/* A stamp 50 ms after the last sample maps onto the line. */
	uint64_t nic = 1000000000000ull + 7 * STEP_NS + 50000000ull;
	CHECK(dp_nicclk_to_tsc(&m, nic, &tsc) == 0);
	CHECK(tsc_dist(tsc, 77777777777ull + ns_to_tsc(7 * STEP_NS + 50000000ull)) <= 2);
	/* And one before the newest sample, on the other side of the base. */
	CHECK(dp_nicclk_to_tsc(&m, 1000000000000ull + 7 * STEP_NS - 1000, &tsc) == 0);
	CHECK(tsc_dist(tsc, 77777777777ull + ns_to_tsc(7 * STEP_NS) - 3000) <= 2);
	/* The first sample lies 700 ms back, past the 300 ms horizon the bound covers: refused. */
	CHECK(dp_nicclk_to_tsc(&m, 1000000000000ull - 1000, &tsc) == -1);
	/* The bound: half a bracket (15 ticks = 5 ns) plus the rate's error over the horizon, no more
	 * than a few ns on a clean line. */
	CHECK(m.bound_ns >= 5 && m.bound_ns <= 20);
}

/* A NIC clock 50 ppm fast: the map follows it, and the bound still holds 100 ms past the samples. */
static void test_rate_drift(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	const double tsc_per_nic = 3.0 / (1.0 + 50e-6);
	uint64_t tsc;

	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	for (uint32_t i = 0; i < 12; i++) {
		uint64_t nic = 5000000000ull + i * STEP_NS;
		uint64_t t = 9000000000ull + (uint64_t)((double)(i * STEP_NS) * tsc_per_nic);

		dp_nicclk_add(&c, t - 20, nic, t + 20);
	}
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	CHECK(tsc_dist(m.tsc_per_nic_q32, (uint64_t)(tsc_per_nic * 4294967296.0)) <= 4);
	uint64_t nic = 5000000000ull + 11 * STEP_NS + STEP_NS;
	uint64_t want = 9000000000ull + (uint64_t)((double)(12 * STEP_NS) * tsc_per_nic);
	CHECK(dp_nicclk_to_tsc(&m, nic, &tsc) == 0);
	CHECK(tsc_dist(tsc, want) <= m.bound_ns * 3);
	/* A map that assumed the nominal rate would be 15 us off by then (50 ppm of 300 ms): far over. */
	CHECK(m.bound_ns < 1000);
}

/* Jittered samples (brackets of varying width, the NIC read anywhere inside): every stamp within the
 * horizon before the newest sample and a refresh past it maps within the bound the fit states. */
static void test_jitter_within_bound(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	uint64_t tsc;
	uint32_t outside = 0;

	srand(7);
	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	for (uint32_t i = 0; i < DP_NICCLK_SAMPLES_MAX + 5; i++) {
		uint64_t nic = 123456789ull + i * STEP_NS;
		uint64_t truth = 555555555ull + ns_to_tsc(i * STEP_NS);
		uint64_t width = 30 + (uint64_t)(rand() % 3000);
		uint64_t before = truth - (uint64_t)(rand() % (int)width);

		dp_nicclk_add(&c, before, nic, before + width);
	}
	CHECK_U64(c.sample_count, DP_NICCLK_SAMPLES_MAX);
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	/* From 250 ms before the newest sample (inside the horizon) to one refresh after it. */
	uint64_t newest_ns = (DP_NICCLK_SAMPLES_MAX + 4) * STEP_NS;
	for (uint32_t k = 0; k < 1000; k++) {
		uint64_t off_ns = newest_ns - 250000000ull + (uint64_t)k * (250000000ull + STEP_NS) / 1000;
		uint64_t truth = 555555555ull + ns_to_tsc(off_ns);

		if (dp_nicclk_to_tsc(&m, 123456789ull + off_ns, &tsc) != 0 ||
		    tsc_dist(tsc, truth) > ns_to_tsc(m.bound_ns))
			outside++;
	}
	CHECK_U64(outside, 0);
	/* Brackets up to 1 us wide: the bound is about half the widest, not more than twice that. */
	CHECK(m.bound_ns >= 400 && m.bound_ns <= 2000);
}

/* A 64-bit counter that wraps between the window's samples and the stamps. */
static void test_counter_wrap(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	uint64_t nic0 = UINT64_MAX - 3 * STEP_NS;
	uint64_t tsc;

	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	add_line(&c, nic0, 1ull << 40, 6, 10);
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	CHECK(m.base_nic < nic0); /* the newest sample is past the wrap */
	CHECK(dp_nicclk_to_tsc(&m, nic0 + 7 * STEP_NS, &tsc) == 0);
	CHECK(tsc_dist(tsc, (1ull << 40) + ns_to_tsc(7 * STEP_NS)) <= 2);
	/* A stamp from just before the wrap (within the horizon) maps backwards across it. */
	CHECK(dp_nicclk_to_tsc(&m, nic0 + 3 * STEP_NS - 1000, &tsc) == 0);
	CHECK(tsc_dist(tsc, (1ull << 40) + ns_to_tsc(3 * STEP_NS) - 3000) <= 2);
}

/* Microsecond stamps (net_pcap's) on a clock sampled in ns: scale 1000, the truncation in the bound. */
static void test_usec_stamps(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	uint64_t tsc;
	uint64_t ns0 = 1700000000ull * 1000000000ull;

	dp_nicclk_init(&c, TSC_HZ, 1000, 1000, REFRESH_TSC, HORIZON_NS);
	add_line(&c, ns0, 1ull << 36, 4, 30);
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	CHECK_U64(m.stamp_scale, 1000);
	CHECK(m.bound_ns >= 1000 + 10 && m.bound_ns <= 1000 + 30);
	uint64_t us = ns0 / 1000 + 123456;
	CHECK(dp_nicclk_to_tsc(&m, us, &tsc) == 0);
	CHECK(tsc_dist(tsc, (1ull << 36) + ns_to_tsc(123456000ull)) <= 2);
}

static void test_horizon_and_backwards(void)
{
	struct dp_nicclk c;
	struct dp_nicclk_map m;
	uint64_t tsc = 0;

	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	add_line(&c, 1ull << 50, 1ull << 41, 3, 10);
	CHECK(dp_nicclk_fit(&c, &m) == 0);
	CHECK(dp_nicclk_to_tsc(&m, (1ull << 50) + 2 * STEP_NS + HORIZON_NS - 1000, &tsc) == 0);
	CHECK(dp_nicclk_to_tsc(&m, (1ull << 50) + 2 * STEP_NS + HORIZON_NS + 1000, &tsc) == -1);
	/* A stamp of some other clock (here: 0) is refused, not mapped decades away. */
	CHECK(dp_nicclk_to_tsc(&m, 0, &tsc) == -1);

	/* The NIC clock runs backwards against the TSC: no map. */
	dp_nicclk_init(&c, TSC_HZ, 1, 0, REFRESH_TSC, HORIZON_NS);
	for (uint32_t i = 0; i < 4; i++)
		dp_nicclk_add(&c, 1000000 + ns_to_tsc(i * STEP_NS), (1ull << 50) - i * STEP_NS,
			      1000010 + ns_to_tsc(i * STEP_NS));
	CHECK(dp_nicclk_update(&c) == -ERANGE);
	CHECK(dp_nicclk_read(&c.pub, &m) == -EAGAIN);
}

/* The seqlock: a writer publishes maps whose fields are all derived from one number; a reader never
 * sees fields of two different maps. */
#define SEQ_ROUNDS 2000000u

static struct dp_nicclk_pub seq_pub __attribute__((aligned(64)));
static volatile int seq_done;
static volatile int seq_reader_ready;

static void *seq_writer(void *arg)
{
	(void)arg;
	/* Bounded wait for the reader, so that the two overlap. */
	for (uint32_t i = 0; i < 100000000u && !__atomic_load_n(&seq_reader_ready, __ATOMIC_ACQUIRE); i++)
		;
	for (uint64_t k = 1; k <= SEQ_ROUNDS; k++) {
		struct dp_nicclk_map m = {
			.base_nic = k, .base_tsc = 2 * k, .tsc_per_nic_q32 = 3 * k, .horizon_nic = 4 * k,
			.bound_ns = 5 * k, .stamp_scale = (uint32_t)(6 * k), .valid = 1,
		};

		dp_nicclk_publish(&seq_pub, &m);
	}
	__atomic_store_n(&seq_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_seqlock(void)
{
	pthread_t t;
	uint64_t reads = 0, torn = 0, busy = 0;
	struct dp_nicclk_map m;

	memset(&seq_pub, 0, sizeof(seq_pub));
	CHECK(pthread_create(&t, NULL, seq_writer, NULL) == 0);
	__atomic_store_n(&seq_reader_ready, 1, __ATOMIC_RELEASE);
	/* Bounded: the writer ends after SEQ_ROUNDS; the reader stops with it or after 50M tries. */
	for (uint64_t i = 0; i < 50000000ull && !__atomic_load_n(&seq_done, __ATOMIC_ACQUIRE); i++) {
		int rc = dp_nicclk_read(&seq_pub, &m);

		if (rc == -EBUSY) {
			busy++;
			continue;
		}
		if (rc != 0)
			continue;
		reads++;
		uint64_t k = m.base_nic;
		if (m.base_tsc != 2 * k || m.tsc_per_nic_q32 != 3 * k || m.horizon_nic != 4 * k ||
		    m.bound_ns != 5 * k || m.stamp_scale != (uint32_t)(6 * k))
			torn++;
	}
	pthread_join(t, NULL);
	CHECK(dp_nicclk_read(&seq_pub, &m) == 0);
	CHECK_U64(m.base_nic, SEQ_ROUNDS);
	CHECK_U64(torn, 0);
	printf("%s: seqlock: %" PRIu64 " consistent reads, %" PRIu64 " given up (writer busy)\n", TEST_NAME, reads,
	       busy);
}

int main(void)
{
	RUN(test_needs_two_far_samples);
	RUN(test_exact_line);
	RUN(test_rate_drift);
	RUN(test_jitter_within_bound);
	RUN(test_counter_wrap);
	RUN(test_usec_stamps);
	RUN(test_horizon_and_backwards);
	RUN(test_seqlock);
	return check_summary();
}
