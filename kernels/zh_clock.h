/* SPDX-License-Identifier: MIT */
/*
 * zh_clock.h: how the device clock (claim_dclk, done_dclk) maps to the host's TSC, with an error bound.
 * Host-side, header-only and free of DPDK and CUDA, so that gpu/ (which calibrates), mgmt/ (which
 * reports) and the probe (which applies the map) share one copy of the arithmetic.
 *
 * A calibration pair comes from a bracket: the host reads the TSC (t0), asks the device for its clock,
 * the device answers with d, the host reads the TSC again (t1). d was read between t0 and t1, so
 * the TSC at d is (t0 + t1) / 2 within (t1 - t0) / 2, plus one TSC tick for the TSC's own resolution.
 * A device clock that moves in steps of s (%globaltimer on some parts) names the last step, so the true
 * time is d + s / 2 within s / 2 more. The tightest of several brackets is kept.
 *
 * The rate (TSC ticks per device tick) is an exact ratio of two integer spans: nominal (the measured
 * TSC frequency over 1 GHz) until two pairs at least ZH_CLOCK_RATE_SPAN_NS_MIN apart give it, with an
 * error of the two pairs' bounds over the span (re-measured every ZH_CLOCK_RATE_SPAN_NS_MAX). A stamp
 * d maps to
 *     tsc(d) = tsc_ref + (d - dclk_ref) * rate_tsc / rate_dclk
 * within bound_ns + |d - dclk_ref| * rate_bound_ppb / 10^9.
 */
#ifndef ZH_CLOCK_H
#define ZH_CLOCK_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* The clock of claim_dclk and done_dclk. */
enum zh_clock_kind {
	ZH_CLOCK_TSC = 0, /* the host's TSC itself (the cpu device): the map is the identity */
	ZH_CLOCK_NS = 1,  /* nanoseconds of the device's own clock (%globaltimer on CUDA) */
};

/* Until two pairs give the rate, the device's nanoseconds are taken to be the host's: good to the
 * TSC frequency's error and the two oscillators' drift, which this states generously. */
#define ZH_CLOCK_RATE_NOMINAL_PPB 100000u /* 100 ppm */
/* Two pairs closer than this leave the rate nominal: their bounds would swamp the span. */
#define ZH_CLOCK_RATE_SPAN_NS_MIN 500000000ull
/* Once the rate's span reaches this, the anchor moves to the newest pair: the rate is re-measured over
 * each such window, so that a rate that wanders (oscillators age and warm) is not averaged over hours
 * behind a bound that only counts the pairs' errors. The last rate holds until the next window's. */
#define ZH_CLOCK_RATE_SPAN_NS_MAX 60000000000ull

/* One calibration bracket, as the host saw it. */
struct zh_clock_pair {
	uint64_t dclk;      /* the device clock, moved to the middle of its step */
	uint64_t tsc;       /* the host TSC at that instant: the bracket's middle */
	uint64_t bound_ns;  /* |true TSC at dclk - tsc| <= bound_ns */
};

/* The mapping, as the appliance reports it (`zerohopctl status`, docs/MGMT.md). */
struct zh_clock_map {
	uint32_t kind;            /* enum zh_clock_kind */
	uint32_t sample_count;    /* pairs taken so far; 0 for a TSC device clock or before the first */
	uint32_t stale;           /* 1 when the last refresh got no answer: the map is older than it should be */
	uint32_t rate_measured;   /* 1 once two pairs far enough apart gave the rate, 0 while nominal */
	uint64_t tsc_hz;          /* the host TSC's frequency the bounds were converted with */
	uint64_t dclk_ref;        /* the latest pair */
	uint64_t tsc_ref;
	uint64_t bound_ns;        /* its bound */
	uint64_t rate_tsc;        /* TSC ticks ... */
	uint64_t rate_dclk;       /* ... per this many device ticks */
	uint64_t rate_bound_ppb;  /* the rate's error, parts per 10^9 */
	uint64_t step_ns;         /* the device clock's step (resolution) seen during calibration */
	uint64_t rtt_ns;          /* the latest pair's round trip (t1 - t0) */
	uint64_t first_dclk;      /* the rate's anchor: the first pair of its window */
	uint64_t first_tsc;
	uint64_t first_bound_ns;
	uint64_t rate_span_ns;    /* the span the rate in use was measured over (0 while nominal) */
};

static inline uint64_t zh_clock_ticks_to_ns(uint64_t ticks, uint64_t tsc_hz)
{
	return tsc_hz ? (uint64_t)(((unsigned __int128)ticks * 1000000000u + tsc_hz - 1) / tsc_hz) : 0;
}

/* The TSC read after every earlier load has completed: a stamp taken after seeing an answer. */
static inline uint64_t zh_clock_tsc_fenced(void)
{
#if defined(__x86_64__) || defined(__i386__)
	uint32_t lo, hi;

	/* lfence: rdtsc does not execute before the loads before it (the poll that saw the answer). */
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi)::"memory");
	return ((uint64_t)hi << 32) | lo;
#else
	uint64_t t;

	/* isb: the counter read is not hoisted above the poll. */
	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(t)::"memory");
	return t;
#endif
}

/* The TSC's frequency against CLOCK_MONOTONIC_RAW over window_ns (busy: called at start-up only). */
static inline uint64_t zh_clock_measure_tsc_hz(uint64_t window_ns)
{
	struct timespec a, b;
	uint64_t t0, t1, span_ns = 0;

	clock_gettime(CLOCK_MONOTONIC_RAW, &a);
	t0 = zh_clock_tsc_fenced();
	/* Bounded by the window; a clock that stood still would still end after 2^30 reads. */
	for (uint32_t i = 0; i < (1u << 30) && span_ns < window_ns; i++) {
		clock_gettime(CLOCK_MONOTONIC_RAW, &b);
		span_ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
	}
	t1 = zh_clock_tsc_fenced();
	return span_ns ? (uint64_t)((unsigned __int128)(t1 - t0) * 1000000000u / span_ns) : 0;
}

/* A TSC device clock: the identity. */
static inline void zh_clock_map_identity(struct zh_clock_map *m, uint64_t tsc_hz)
{
	memset(m, 0, sizeof(*m));
	m->kind = ZH_CLOCK_TSC;
	m->tsc_hz = tsc_hz;
	m->rate_tsc = 1;
	m->rate_dclk = 1;
	m->rate_measured = 1;
}

/* A pair from one bracket [t0_tsc, t1_tsc] around a device reading dclk of step step_ns (ns kind). */
static inline struct zh_clock_pair zh_clock_bracket(uint64_t t0_tsc, uint64_t t1_tsc, uint64_t dclk,
						    uint64_t step_ns, uint64_t tsc_hz)
{
	struct zh_clock_pair p;
	uint64_t width = t1_tsc - t0_tsc;

	p.dclk = dclk + step_ns / 2;
	p.tsc = t0_tsc + width / 2;
	/* Half the width (rounded up), one tick for the TSC's resolution, half a step of the device's. */
	p.bound_ns = zh_clock_ticks_to_ns(width - width / 2 + 1, tsc_hz) + (step_ns + 1) / 2;
	return p;
}

/* Fold a new pair into an ns map: it becomes the reference; with the first pair far enough away it
 * also gives the rate. Returns 0, or -EINVAL for a pair that goes back in time on either clock. */
static inline int zh_clock_map_add(struct zh_clock_map *m, const struct zh_clock_pair *p, uint64_t step_ns,
				   uint64_t rtt_ns)
{
	if (m->sample_count == 0) {
		m->first_dclk = p->dclk;
		m->first_tsc = p->tsc;
		m->first_bound_ns = p->bound_ns;
		m->rate_tsc = m->tsc_hz;
		m->rate_dclk = 1000000000u;
		m->rate_bound_ppb = ZH_CLOCK_RATE_NOMINAL_PPB;
		m->rate_measured = 0;
	} else if (p->dclk < m->first_dclk || p->tsc < m->first_tsc) {
		return -EINVAL;
	} else if (p->dclk - m->first_dclk >= ZH_CLOCK_RATE_SPAN_NS_MIN) {
		uint64_t span_ns = p->dclk - m->first_dclk;

		/* A rate over a shorter span than the one in use is a worse rate: after the anchor moves
		 * (below), the rate measured over the whole last window holds until the new window is
		 * as long. */
		if (span_ns >= m->rate_span_ns) {
			m->rate_tsc = p->tsc - m->first_tsc;
			m->rate_dclk = span_ns;
			/* Each end is off by up to its bound: the span is off by up to their sum. */
			m->rate_bound_ppb = (uint64_t)(((unsigned __int128)(p->bound_ns + m->first_bound_ns) *
							1000000000u + span_ns - 1) / span_ns);
			m->rate_measured = 1;
			m->rate_span_ns = span_ns;
		}
		if (span_ns >= ZH_CLOCK_RATE_SPAN_NS_MAX) {
			m->first_dclk = p->dclk;
			m->first_tsc = p->tsc;
			m->first_bound_ns = p->bound_ns;
		}
	}
	m->kind = ZH_CLOCK_NS;
	m->dclk_ref = p->dclk;
	m->tsc_ref = p->tsc;
	m->bound_ns = p->bound_ns;
	m->step_ns = step_ns;
	m->rtt_ns = rtt_ns;
	m->sample_count++;
	m->stale = 0;
	return 0;
}

/* 1 if the map can place device stamps on the TSC. */
static inline int zh_clock_map_usable(const struct zh_clock_map *m)
{
	return m->kind == ZH_CLOCK_TSC || (m->sample_count > 0 && m->rate_dclk > 0 && m->tsc_hz > 0);
}

/* The TSC at device stamp dclk; *bound_ns gets the error of that TSC value in ns. */
static inline uint64_t zh_clock_to_tsc(const struct zh_clock_map *m, uint64_t dclk, uint64_t *bound_ns)
{
	uint64_t dist = dclk >= m->dclk_ref ? dclk - m->dclk_ref : m->dclk_ref - dclk;
	uint64_t moved;

	if (m->kind == ZH_CLOCK_TSC || m->rate_dclk == 0) {
		*bound_ns = 0;
		return dclk;
	}
	moved = (uint64_t)((unsigned __int128)dist * m->rate_tsc / m->rate_dclk);
	*bound_ns = m->bound_ns + (uint64_t)(((unsigned __int128)dist * m->rate_bound_ppb + 999999999u) / 1000000000u);
	/* A stamp that would map before TSC 0 is no stamp of this clock (a zero, a reset device): say so
	 * with a bound no stage can hide in, rather than wrap to a TSC far in the future. */
	if (dclk < m->dclk_ref && moved > m->tsc_ref) {
		*bound_ns = UINT64_MAX;
		return 0;
	}
	return dclk >= m->dclk_ref ? m->tsc_ref + moved : m->tsc_ref - moved;
}

/*
 * Calibrate: up to `tries` brackets from sample() (which stamps t0, reads the device clock, stamps t1;
 * 0, or -errno when the device did not answer in time), the tightest folded into the map. A failed
 * bracket ends the calibration: a device that did not answer once will not answer the next quicker.
 * Returns 0, or -errno with the map marked stale: the first bracket's error when none succeeded,
 * -EINVAL for a pair that went back in time.
 */
static inline int zh_clock_calibrate(int (*sample)(void *arg, uint64_t *t0_tsc, uint64_t *dclk, uint64_t *t1_tsc),
				     void *arg, uint32_t tries, uint64_t step_ns, struct zh_clock_map *m)
{
	uint64_t best_t0 = 0, best_t1 = 0, best_dclk = 0;
	uint32_t got = 0;
	int rc = 0;

	for (uint32_t i = 0; i < tries; i++) {
		uint64_t t0, t1, d;

		rc = sample(arg, &t0, &d, &t1);
		if (rc)
			break;
		/* An end before the start (the thread moved between cores) brackets nothing. */
		if (t1 < t0)
			continue;
		if (got == 0 || t1 - t0 < best_t1 - best_t0) {
			best_t0 = t0;
			best_t1 = t1;
			best_dclk = d;
		}
		got++;
	}
	if (got == 0) {
		m->stale = 1;
		return rc ? rc : -EINVAL;
	}
	struct zh_clock_pair p = zh_clock_bracket(best_t0, best_t1, best_dclk, step_ns, m->tsc_hz);
	rc = zh_clock_map_add(m, &p, step_ns, zh_clock_ticks_to_ns(best_t1 - best_t0, m->tsc_hz));
	/* A pair that went back in time (a device clock reset) is refused: the old map is all there is. */
	if (rc)
		m->stale = 1;
	return rc;
}

/* The device clock's drift from nominal in ppm (positive: it runs slow against the TSC). */
static inline double zh_clock_drift_ppm(const struct zh_clock_map *m)
{
	if (m->kind == ZH_CLOCK_TSC || m->rate_dclk == 0 || m->tsc_hz == 0)
		return 0.0;
	return ((double)m->rate_tsc * 1e9 / ((double)m->rate_dclk * (double)m->tsc_hz) - 1.0) * 1e6;
}

#endif /* ZH_CLOCK_H */
