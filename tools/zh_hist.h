/* SPDX-License-Identifier: MIT */
/*
 * zh_hist.h: a fixed-size log-linear latency histogram in the manner of HdrHistogram, for the load
 * generator. Values are nanoseconds. Below 256 ns every nanosecond has its own bucket; above, each
 * power of two is split into 128 equal buckets, so a bucket is at most 1/128 (0.78%) of the values it
 * holds wide. Percentiles report a bucket's highest value (as HdrHistogram does), so a reported
 * percentile is never below the true one and at most 0.78% above it.
 *
 * The range ends at 2^40 - 1 ns (about 18 minutes); larger values are counted in the top bucket and in
 * `saturated`. One histogram is 35 KiB, allocated by the caller; recording allocates nothing and costs
 * a count-leading-zeros, a shift and an increment.
 */
#ifndef ZH_HIST_H
#define ZH_HIST_H

#include <stdint.h>
#include <stdio.h>

/* 128 linear buckets per power of two: the relative error bound is 1 / ZH_HIST_SUB_COUNT. */
#define ZH_HIST_SUB_BITS 7u
#define ZH_HIST_SUB_COUNT (1u << ZH_HIST_SUB_BITS)
/* The highest power of two tracked: values up to 2^(ZH_HIST_MSB_MAX + 1) - 1 ns. */
#define ZH_HIST_MSB_MAX 39u
#define ZH_HIST_VALUE_MAX_NS ((UINT64_C(1) << (ZH_HIST_MSB_MAX + 1)) - 1)
/* Exact buckets for [0, 256), then 128 per power of two from 2^8 to 2^39. */
#define ZH_HIST_BUCKETS (2u * ZH_HIST_SUB_COUNT + (ZH_HIST_MSB_MAX - ZH_HIST_SUB_BITS) * ZH_HIST_SUB_COUNT)

struct zh_hist {
	uint64_t total_count;
	uint64_t min_ns;    /* exact; UINT64_MAX while empty */
	uint64_t max_ns;    /* exact, even past the range */
	uint64_t saturated; /* values above ZH_HIST_VALUE_MAX_NS, counted in the top bucket */
	uint64_t counts[ZH_HIST_BUCKETS];
};

/* The bucket of a value: shift = how far the value's top 8 bits sit above bit 0. */
static inline uint32_t zh_hist_index(uint64_t value_ns)
{
	uint32_t msb = 63u - (uint32_t)__builtin_clzll(value_ns | 1u);
	uint32_t shift = msb > ZH_HIST_SUB_BITS ? msb - ZH_HIST_SUB_BITS : 0u;

	return shift * ZH_HIST_SUB_COUNT + (uint32_t)(value_ns >> shift);
}

static inline void zh_hist_record(struct zh_hist *h, uint64_t value_ns)
{
	if (value_ns < h->min_ns)
		h->min_ns = value_ns;
	if (value_ns > h->max_ns)
		h->max_ns = value_ns;
	if (value_ns > ZH_HIST_VALUE_MAX_NS) {
		h->saturated++;
		value_ns = ZH_HIST_VALUE_MAX_NS;
	}
	h->counts[zh_hist_index(value_ns)]++;
	h->total_count++;
}

void zh_hist_init(struct zh_hist *h);
void zh_hist_merge(struct zh_hist *dst, const struct zh_hist *src);

/* The lowest and highest value a bucket stands for. */
uint64_t zh_hist_bucket_lowest_ns(uint32_t idx);
uint64_t zh_hist_bucket_highest_ns(uint32_t idx);

/* The value at a percentile in [0, 100]: the highest value of the bucket holding the
 * round(percentile * count)-th value, clamped to the exact minimum and maximum. 0 when empty. */
uint64_t zh_hist_percentile_ns(const struct zh_hist *h, double percentile);
/* Mean and standard deviation from the buckets' middle values (as HdrHistogram computes them). */
double zh_hist_mean_ns(const struct zh_hist *h);
double zh_hist_stddev_ns(const struct zh_hist *h);

/*
 * Walk the distribution the way HdrHistogram's percentile iterator does: levels from 0% that halve
 * their distance to 100% every `ticks_per_half` steps, each reported at the first bucket whose
 * cumulative count reaches it, then one last step at 100%. `fn` gets the bucket's value (clamped
 * to the maximum), the level in percent and the cumulative count; a non-zero return stops the walk
 * and is returned.
 */
typedef int (*zh_hist_level_fn)(void *ctx, uint64_t value_ns, double level_pct, uint64_t count_to_here);
int zh_hist_walk_percentiles(const struct zh_hist *h, uint32_t ticks_per_half, zh_hist_level_fn fn, void *ctx);

/*
 * Write HdrHistogram's percentile distribution text (.hgrm): the header line, one line per level
 * (Value, Percentile, TotalCount, 1/(1-Percentile)), the 100% line without the last column, and the
 * #[Mean...], #[Max...] and #[Buckets...] footer. Values are divided by `unit_ns` (1000: µs).
 * Returns 0 or -EIO.
 */
int zh_hist_write_hgrm(const struct zh_hist *h, FILE *out, double unit_ns);

#endif /* ZH_HIST_H */
