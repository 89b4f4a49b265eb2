/* SPDX-License-Identifier: MIT */
/*
 * dp_hist.h: a fixed-size log-linear latency histogram in nanoseconds: eight sub-buckets per power of
 * two, so a value is known within 12.5%, from 0 to 2^40 ns (18 minutes; larger values land in the last
 * bucket). One writer (its lcore) updates it with relaxed stores; readers sum copies.
 */
#ifndef DP_HIST_H
#define DP_HIST_H

#include <stdint.h>

#define DP_HIST_SUB_BITS 3u
#define DP_HIST_MAX_BITS 40u
#define DP_HIST_BUCKETS ((DP_HIST_MAX_BITS - DP_HIST_SUB_BITS + 1u) * (1u << DP_HIST_SUB_BITS) + \
			 (1u << DP_HIST_SUB_BITS))

struct dp_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t buckets[DP_HIST_BUCKETS];
};

static inline uint32_t dp_hist_bucket(uint64_t v)
{
	if (v >= (1ull << DP_HIST_MAX_BITS))
		v = (1ull << DP_HIST_MAX_BITS) - 1;
	if (v < (2u << DP_HIST_SUB_BITS))
		return (uint32_t)v;
	uint32_t shift = (uint32_t)(63 - __builtin_clzll(v)) - DP_HIST_SUB_BITS;
	return (shift << DP_HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

/* The largest value that lands in bucket i (its upper bound, inclusive). */
static inline uint64_t dp_hist_bucket_max(uint32_t i)
{
	if (i < (2u << DP_HIST_SUB_BITS))
		return i;
	uint32_t shift = (i >> DP_HIST_SUB_BITS) - 1;
	uint64_t m = (i & ((1u << DP_HIST_SUB_BITS) - 1)) + (1u << DP_HIST_SUB_BITS);
	return ((m + 1) << shift) - 1;
}

/* Single writer: relaxed stores keep concurrent readers race-free. */
static inline void dp_hist_record(struct dp_hist *h, uint64_t ns)
{
	uint32_t b = dp_hist_bucket(ns);

	__atomic_store_n(&h->buckets[b], h->buckets[b] + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&h->sum_ns, h->sum_ns + ns, __ATOMIC_RELAXED);
	if (ns > h->max_ns)
		__atomic_store_n(&h->max_ns, ns, __ATOMIC_RELAXED);
}

/* Sum `from` into `to` while its writer may be adding to it: the count is taken from the buckets
 * copied, not from `from->count`, so that the copy is consistent with itself (cumulative buckets end
 * at the count) even when it catches the writer between a bucket and the count. */
static inline void dp_hist_add(struct dp_hist *to, const struct dp_hist *from)
{
	to->sum_ns += __atomic_load_n(&from->sum_ns, __ATOMIC_RELAXED);
	uint64_t mx = __atomic_load_n(&from->max_ns, __ATOMIC_RELAXED);
	if (mx > to->max_ns)
		to->max_ns = mx;
	for (uint32_t i = 0; i < DP_HIST_BUCKETS; i++) {
		uint64_t b = __atomic_load_n(&from->buckets[i], __ATOMIC_RELAXED);

		to->buckets[i] += b;
		to->count += b;
	}
}

/* The value at quantile q (0..1): the upper bound of the bucket holding that rank, capped at max. */
static inline uint64_t dp_hist_quantile(const struct dp_hist *h, double q)
{
	uint64_t total = 0;
	uint64_t rank;

	for (uint32_t i = 0; i < DP_HIST_BUCKETS; i++)
		total += h->buckets[i];
	if (total == 0)
		return 0;
	rank = (uint64_t)(q * (double)(total - 1)) + 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < DP_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = dp_hist_bucket_max(i);
			return v < h->max_ns ? v : h->max_ns;
		}
	}
	return h->max_ns;
}

/* Values in the buckets wholly at or below limit_ns, for cumulative Prometheus buckets: a value up to
 * 12.5% under the limit may be counted under the next bound instead. */
static inline uint64_t dp_hist_count_le(const struct dp_hist *h, uint64_t limit_ns)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < DP_HIST_BUCKETS && dp_hist_bucket_max(i) <= limit_ns; i++)
		n += h->buckets[i];
	return n;
}

#endif /* DP_HIST_H */
