/* SPDX-License-Identifier: MIT */
/*
 * test_clock.c: the device clock map of kernels/zh_clock.h: a bracket's pair and bound, the nominal
 * rate of a first pair, the measured rate of two pairs far apart and its bound, mapping stamps on both
 * sides of the reference with the bound growing with the distance, the identity of a TSC device clock,
 * and a calibration that keeps the tightest bracket, or marks the map stale when nothing answered.
 * Also a live calibration of CLOCK_MONOTONIC against the TSC, as the ZH_TEST_DCLK_NS knob does it.
 *
 * Exit status: 0 all checks passed, 1 a check failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TEST_NAME "test_clock"
#include "zh_check.h"
#include "zh_clock.h"

#define TSC_HZ 3000000000ull /* 3 ticks per ns: easy arithmetic */


static void test_bracket(void)
{
	/* 600 ticks wide (200 ns) around a reading of a clock with a 32 ns step. */
	struct zh_clock_pair p = zh_clock_bracket(1000, 1600, 5000, 32, TSC_HZ);

	CHECK_U64(p.tsc, 1300);
	CHECK_U64(p.dclk, 5016);
	/* Half the width (100 ns), one tick (1 ns, rounded up), half the step (16 ns). */
	CHECK_U64(p.bound_ns, 100 + 1 + 16);
	/* An odd width rounds the half up (2 ticks, + 1: 1 ns); no step adds nothing. */
	p = zh_clock_bracket(0, 3, 7, 0, TSC_HZ);
	CHECK_U64(p.tsc, 1);
	CHECK_U64(p.dclk, 7);
	CHECK_U64(p.bound_ns, 1);
	CHECK_U64(zh_clock_ticks_to_ns(4, TSC_HZ), 2);
	CHECK_U64(zh_clock_ticks_to_ns(0, TSC_HZ), 0);
}

static struct zh_clock_map fresh_map(void)
{
	struct zh_clock_map m;

	zh_clock_map_identity(&m, TSC_HZ);
	m.kind = ZH_CLOCK_NS;
	return m;
}

static void test_first_pair_is_nominal(void)
{
	struct zh_clock_map m = fresh_map();
	struct zh_clock_pair p = { .dclk = 1000000, .tsc = 50000000, .bound_ns = 500 };
	uint64_t bound;

	CHECK(zh_clock_map_add(&m, &p, 32, 900) == 0);
	CHECK(zh_clock_map_usable(&m));
	CHECK_U64(m.kind, ZH_CLOCK_NS);
	CHECK_U64(m.sample_count, 1);
	CHECK(!m.rate_measured && !m.stale);
	CHECK_U64(m.rate_tsc, TSC_HZ);
	CHECK_U64(m.rate_dclk, 1000000000);
	CHECK_U64(m.rate_bound_ppb, ZH_CLOCK_RATE_NOMINAL_PPB);
	CHECK_U64(m.step_ns, 32);
	CHECK_U64(m.rtt_ns, 900);
	/* At the reference: the pair's TSC and bound. */
	CHECK_U64(zh_clock_to_tsc(&m, 1000000, &bound), 50000000);
	CHECK_U64(bound, 500);
	/* 1 ms later: 3,000,000 ticks later, and 100 ppm of 1 ms (100 ns) more error. */
	CHECK_U64(zh_clock_to_tsc(&m, 2000000, &bound), 53000000);
	CHECK_U64(bound, 600);
	/* 10 us before: 30,000 ticks before, 1 ns (rounded up) more error. */
	CHECK_U64(zh_clock_to_tsc(&m, 990000, &bound), 49970000);
	CHECK_U64(bound, 501);
	CHECK(zh_clock_drift_ppm(&m) == 0.0);
	/* A stamp before the reference maps backwards while that stays at or after TSC 0 (stamp 0 lies
	 * 3,000,000 ticks back here); one that would land before TSC 0 is refused with an unbounded
	 * error, never wrapped to a TSC far in the future. */
	CHECK_U64(zh_clock_to_tsc(&m, 0, &bound), 47000000);
	struct zh_clock_pair late = { .dclk = 1000000000000ull, .tsc = 50000000, .bound_ns = 500 };
	struct zh_clock_map far = fresh_map();
	CHECK(zh_clock_map_add(&far, &late, 32, 900) == 0);
	CHECK_U64(zh_clock_to_tsc(&far, 0, &bound), 0);
	CHECK_U64(bound, UINT64_MAX);
}

static void test_two_pairs_give_the_rate(void)
{
	struct zh_clock_map m = fresh_map();
	struct zh_clock_pair a = { .dclk = 1000000000, .tsc = 9000000000ull, .bound_ns = 400 };
	/* 2 s of device time later the TSC moved 6,000,060,000 ticks: the device runs 10 ppm slow. */
	struct zh_clock_pair b = { .dclk = 3000000000ull, .tsc = 15000060000ull, .bound_ns = 600 };
	struct zh_clock_pair near = { .dclk = 1100000000, .tsc = 9300000000ull, .bound_ns = 300 };
	uint64_t bound;

	CHECK(zh_clock_map_add(&m, &a, 0, 0) == 0);
	/* 100 ms after the first: too close to give the rate, but it becomes the reference. */
	CHECK(zh_clock_map_add(&m, &near, 0, 0) == 0);
	CHECK(!m.rate_measured);
	CHECK_U64(m.dclk_ref, near.dclk);
	CHECK_U64(m.bound_ns, 300);
	CHECK(zh_clock_map_add(&m, &b, 0, 0) == 0);
	CHECK(m.rate_measured);
	CHECK_U64(m.sample_count, 3);
	CHECK_U64(m.rate_tsc, 6000060000ull);
	CHECK_U64(m.rate_dclk, 2000000000ull);
	/* (400 + 600) ns over 2 s: 500 ppb. */
	CHECK_U64(m.rate_bound_ppb, 500);
	CHECK(zh_clock_drift_ppm(&m) > 9.999 && zh_clock_drift_ppm(&m) < 10.001);
	/* The newest pair is the reference; 1 s before it, the measured rate and 500 ns more error. */
	CHECK_U64(zh_clock_to_tsc(&m, 3000000000ull, &bound), 15000060000ull);
	CHECK_U64(bound, 600);
	CHECK_U64(zh_clock_to_tsc(&m, 2000000000ull, &bound), 15000060000ull - 3000030000ull);
	CHECK_U64(bound, 600 + 500);
	/* 60 s after the anchor: the rate over that window, and the anchor moves to the new pair ... */
	struct zh_clock_pair late = { .dclk = 61000000000ull, .tsc = 9000000000ull + 180000000000ull, .bound_ns = 600 };
	CHECK(zh_clock_map_add(&m, &late, 0, 0) == 0);
	CHECK_U64(m.rate_tsc, 180000000000ull);
	CHECK_U64(m.rate_dclk, 60000000000ull);
	CHECK_U64(m.rate_bound_ppb, 17); /* 1000 ns over 60 s, rounded up */
	CHECK_U64(m.first_dclk, late.dclk);
	/* ... and a pair 0.1 s later keeps that rate until the new window is long enough. */
	struct zh_clock_pair next = { .dclk = late.dclk + 100000000, .tsc = late.tsc + 300000000, .bound_ns = 500 };
	CHECK(zh_clock_map_add(&m, &next, 0, 0) == 0);
	CHECK(m.rate_measured);
	CHECK_U64(m.rate_dclk, 60000000000ull);
	CHECK_U64(m.dclk_ref, next.dclk);
	CHECK_U64(m.sample_count, 5);
	/* One second into the new window is past the 0.5 s minimum, yet a shorter span than the rate in
	 * use: the 60 s rate and its 17 ppb hold (a 1 s rate would be 1100 ppb). */
	struct zh_clock_pair second = { .dclk = late.dclk + 1000000000, .tsc = late.tsc + 3000000000ull, .bound_ns = 500 };
	CHECK(zh_clock_map_add(&m, &second, 0, 0) == 0);
	CHECK_U64(m.rate_dclk, 60000000000ull);
	CHECK_U64(m.rate_bound_ppb, 17);
	CHECK_U64(m.sample_count, 6);

	/* A pair before the anchor on either clock is refused and changes nothing. */
	struct zh_clock_pair back = { .dclk = 10, .tsc = 20000000000ull, .bound_ns = 1 };
	CHECK(zh_clock_map_add(&m, &back, 0, 0) == -EINVAL);
	CHECK_U64(m.sample_count, 6);
}

static void test_identity(void)
{
	struct zh_clock_map m;
	uint64_t bound = 7;

	zh_clock_map_identity(&m, TSC_HZ);
	CHECK(zh_clock_map_usable(&m));
	CHECK_U64(m.kind, ZH_CLOCK_TSC);
	CHECK_U64(zh_clock_to_tsc(&m, 123456789, &bound), 123456789);
	CHECK_U64(bound, 0);
	CHECK(zh_clock_drift_ppm(&m) == 0.0);
	/* An ns map with no pair cannot be used. */
	m.kind = ZH_CLOCK_NS;
	CHECK(!zh_clock_map_usable(&m));
}

/* A scripted device: bracket widths in ticks, in order; 0 means "no answer". */
struct script {
	const uint64_t *widths;
	uint32_t count;
	uint32_t next;
};

static int script_sample(void *arg, uint64_t *t0, uint64_t *dclk, uint64_t *t1)
{
	struct script *s = arg;
	uint32_t i = s->next++;

	if (i >= s->count || s->widths[i] == 0)
		return -ETIMEDOUT;
	*t0 = 1000000ull * (i + 1);
	*t1 = *t0 + s->widths[i];
	*dclk = 7000000ull * (i + 1);
	return 0;
}

static void test_calibrate_keeps_the_tightest(void)
{
	static const uint64_t widths[] = { 900, 300, 600, 0, 60 };
	struct script s = { widths, 5, 0 };
	struct zh_clock_map m = fresh_map();

	/* The fourth bracket times out: the calibration ends there with the tightest of the first three. */
	CHECK(zh_clock_calibrate(script_sample, &s, 5, 0, &m) == 0);
	CHECK_U64(s.next, 4);
	CHECK_U64(m.dclk_ref, 14000000);
	CHECK_U64(m.tsc_ref, 2000000 + 150);
	CHECK_U64(m.bound_ns, 51); /* 150 ticks + 1 = 151 ticks, 50.33 ns rounded up */
	CHECK_U64(m.rtt_ns, 100);
	CHECK(!m.stale);

	/* Nothing answers: an error and a stale map that keeps its pair. */
	static const uint64_t none[] = { 0 };
	struct script silent = { none, 1, 0 };
	CHECK(zh_clock_calibrate(script_sample, &silent, 8, 0, &m) == -ETIMEDOUT);
	CHECK_U64(silent.next, 1);
	CHECK(m.stale);
	CHECK_U64(m.dclk_ref, 14000000);
	CHECK(zh_clock_map_usable(&m));

	/* A device clock that went back (a reset) is refused, and the map is stale too. */
	static const uint64_t one[] = { 100 };
	struct script reset = { one, 1, 0 };
	m.stale = 0;
	CHECK(zh_clock_calibrate(script_sample, &reset, 1, 0, &m) == -EINVAL);
	CHECK(m.stale);
	CHECK_U64(m.sample_count, 1);
}

static int monotonic_sample(void *arg, uint64_t *t0, uint64_t *dclk, uint64_t *t1)
{
	struct timespec ts;

	(void)arg;
	*t0 = zh_clock_tsc_fenced();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*dclk = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	*t1 = zh_clock_tsc_fenced();
	return 0;
}

/* Live: CLOCK_MONOTONIC against the TSC, two calibrations 0.6 s apart, and a later reading placed on
 * the TSC within the stated bound (widened by the test's own bracket around that reading). */
static void test_live_monotonic(void)
{
	struct zh_clock_map m;
	uint64_t hz = zh_clock_measure_tsc_hz(20000000ull);
	struct timespec pause = { 0, 600000000 };

	CHECK(hz > 100000000ull);
	zh_clock_map_identity(&m, hz);
	m.kind = ZH_CLOCK_NS;
	CHECK(zh_clock_calibrate(monotonic_sample, NULL, 64, 1, &m) == 0);
	nanosleep(&pause, NULL);
	CHECK(zh_clock_calibrate(monotonic_sample, NULL, 64, 1, &m) == 0);
	CHECK(m.rate_measured);
	CHECK(m.bound_ns < 100000);
	/* The TSC and CLOCK_MONOTONIC tick together (NTP slews the latter by at most 500 ppm). */
	CHECK(zh_clock_drift_ppm(&m) > -600.0 && zh_clock_drift_ppm(&m) < 600.0);
	nanosleep(&pause, NULL);
	uint64_t t0, d, t1, bound;
	monotonic_sample(NULL, &t0, &d, &t1);
	uint64_t tsc = zh_clock_to_tsc(&m, d, &bound);
	uint64_t slack = bound * hz / 1000000000ull + 1;
	CHECK(tsc + slack >= t0 && tsc <= t1 + slack);
}

int main(void)
{
	RUN(test_bracket);
	RUN(test_first_pair_is_nominal);
	RUN(test_two_pairs_give_the_rate);
	RUN(test_identity);
	RUN(test_calibrate_keeps_the_tightest);
	RUN(test_live_monotonic);
	return check_summary();
}
