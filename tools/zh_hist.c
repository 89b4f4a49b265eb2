/* SPDX-License-Identifier: MIT */
/*
 * zh_hist.c: see zh_hist.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "zh_hist.h"

/* What the load generator promises: under 1% error and at least 10 s of range. */
_Static_assert(ZH_HIST_SUB_COUNT >= 100u, "a bucket is at most 1% of its values wide");
_Static_assert(ZH_HIST_VALUE_MAX_NS >= UINT64_C(10000000000), "the range reaches 10 s");

/* HdrHistogram's default: five levels per halving of the distance to 100%. */
#define HGRM_TICKS_PER_HALF 5u

void zh_hist_init(struct zh_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

void zh_hist_merge(struct zh_hist *dst, const struct zh_hist *src)
{
	for (uint32_t i = 0; i < ZH_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total_count += src->total_count;
	dst->saturated += src->saturated;
	if (src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

/* Buckets below 2 * SUB_COUNT are one nanosecond wide; above, bucket i covers SUB_COUNT..2*SUB_COUNT-1
 * shifted left by (i / SUB_COUNT - 1). */
static uint32_t bucket_shift(uint32_t idx)
{
	return idx < 2u * ZH_HIST_SUB_COUNT ? 0u : idx / ZH_HIST_SUB_COUNT - 1u;
}

uint64_t zh_hist_bucket_lowest_ns(uint32_t idx)
{
	uint32_t shift = bucket_shift(idx);

	return (uint64_t)(idx - shift * ZH_HIST_SUB_COUNT) << shift;
}

uint64_t zh_hist_bucket_highest_ns(uint32_t idx)
{
	return zh_hist_bucket_lowest_ns(idx) + (UINT64_C(1) << bucket_shift(idx)) - 1u;
}

/* A bucket's reported value: its highest, but never past what was really seen. */
static uint64_t bucket_value_ns(const struct zh_hist *h, uint32_t idx)
{
	uint64_t v = zh_hist_bucket_highest_ns(idx);

	if (v > h->max_ns)
		v = h->max_ns;
	if (v < h->min_ns)
		v = h->min_ns;
	return v;
}

uint64_t zh_hist_percentile_ns(const struct zh_hist *h, double percentile)
{
	uint64_t want, seen = 0;

	if (h->total_count == 0)
		return 0;
	if (percentile <= 0.0)
		return h->min_ns;
	if (percentile > 100.0)
		percentile = 100.0;
	/* The same rounding as HdrHistogram's getValueAtPercentile. */
	want = (uint64_t)(percentile / 100.0 * (double)h->total_count + 0.5);
	if (want == 0)
		want = 1;
	for (uint32_t i = 0; i < ZH_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= want)
			return bucket_value_ns(h, i);
	}
	return h->max_ns;
}

static double bucket_middle_ns(uint32_t idx)
{
	return (double)zh_hist_bucket_lowest_ns(idx) + (double)(UINT64_C(1) << bucket_shift(idx)) / 2.0;
}

double zh_hist_mean_ns(const struct zh_hist *h)
{
	double sum = 0.0;

	if (h->total_count == 0)
		return 0.0;
	for (uint32_t i = 0; i < ZH_HIST_BUCKETS; i++)
		if (h->counts[i])
			sum += bucket_middle_ns(i) * (double)h->counts[i];
	return sum / (double)h->total_count;
}

double zh_hist_stddev_ns(const struct zh_hist *h)
{
	double mean = zh_hist_mean_ns(h), sum = 0.0;

	if (h->total_count == 0)
		return 0.0;
	for (uint32_t i = 0; i < ZH_HIST_BUCKETS; i++) {
		if (h->counts[i]) {
			double d = bucket_middle_ns(i) - mean;
			sum += d * d * (double)h->counts[i];
		}
	}
	return sqrt(sum / (double)h->total_count);
}

/* HdrHistogram's PercentileIterator step: the distance to 100% halves every `ticks_per_half` levels. */
static double next_level(double level_pct, uint32_t ticks_per_half)
{
	double halvings = floor(log(100.0 / (100.0 - level_pct)) / log(2.0));
	double ticks = (double)ticks_per_half * pow(2.0, halvings + 1.0);

	return level_pct + 100.0 / ticks;
}

int zh_hist_walk_percentiles(const struct zh_hist *h, uint32_t ticks_per_half, zh_hist_level_fn fn, void *ctx)
{
	uint64_t total = h->total_count, seen = 0;
	double level = 0.0;
	int rc;

	if (total == 0)
		return 0;
	for (uint32_t i = 0; i < ZH_HIST_BUCKETS; i++) {
		if (h->counts[i] == 0)
			continue;
		seen += h->counts[i];
		uint64_t value = bucket_value_ns(h, i);
		/* As in HdrHistogram, the bucket that completes the count reports one level, then 100%. */
		while (100.0 * (double)seen / (double)total >= level) {
			rc = fn(ctx, value, level, seen);
			if (rc)
				return rc;
			level = next_level(level, ticks_per_half);
			if (seen == total)
				break;
		}
		if (seen == total)
			return fn(ctx, value, 100.0, seen);
	}
	return 0;
}

struct hgrm_out {
	FILE *out;
	double unit_ns;
};

static int hgrm_line(void *ctx, uint64_t value_ns, double level_pct, uint64_t count_to_here)
{
	const struct hgrm_out *ho = ctx;
	FILE *out = ho->out;
	double value = (double)value_ns / ho->unit_ns, fraction = level_pct / 100.0;

	/* HdrHistogram's layout with three decimals: "%12.3f %2.12f %10d %14.2f", the 100% line
	 * without its infinite last column. */
	if (level_pct < 100.0)
		fprintf(out, "%12.3f %2.12f %10" PRIu64 " %14.2f\n", value, fraction, count_to_here,
			1.0 / (1.0 - fraction));
	else
		fprintf(out, "%12.3f %2.12f %10" PRIu64 "\n", value, fraction, count_to_here);
	return 0;
}

int zh_hist_write_hgrm(const struct zh_hist *h, FILE *out, double unit_ns)
{
	struct hgrm_out ho = { .out = out, .unit_ns = unit_ns };
	double max = h->total_count ? (double)h->max_ns / unit_ns : 0.0;

	fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
	zh_hist_walk_percentiles(h, HGRM_TICKS_PER_HALF, hgrm_line, &ho);
	fprintf(out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", zh_hist_mean_ns(h) / unit_ns,
		zh_hist_stddev_ns(h) / unit_ns);
	fprintf(out, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n", max, h->total_count);
	fprintf(out, "#[Buckets = %12u, SubBuckets     = %12u]\n", ZH_HIST_MSB_MAX - ZH_HIST_SUB_BITS + 1u,
		2u * ZH_HIST_SUB_COUNT);
	return ferror(out) ? -EIO : 0;
}
