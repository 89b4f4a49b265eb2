/* SPDX-License-Identifier: MIT */
/*
 * dp_nicclk.h: the map from a port's clock (the clock of its rx timestamps) to the host TSC.
 *
 * The control core takes bracketed samples (TSC before, the port's clock, TSC after), keeps a window of
 * them, and fits a line tsc = base_tsc + (nic - base_nic) * rate by least squares, with an error bound:
 * the worst distance of a sample from the line plus half its bracket, plus what the rate's own error
 * adds over one refresh period, plus the resolution of the stamps. The rx lcores read the map through
 * a seqlock, once per burst, without locks or allocation. No map is guessed: until two samples far
 * enough apart give a rate known to DP_NICCLK_RATE_ERR_MAX, the map is invalid and stamps go unmapped.
 *
 * Pure arithmetic and atomics: nothing here needs the EAL (tests/unit/test_nicclk.c runs it alone).
 */
#ifndef DP_NICCLK_H
#define DP_NICCLK_H

#include <errno.h>
#include <stdint.h>

/* Samples kept; the oldest goes when a new one comes. */
#define DP_NICCLK_SAMPLES_MAX 16u
/* The largest relative error of the fitted rate for the map to be published. */
#define DP_NICCLK_RATE_ERR_MAX 1e-4
/* Tries of a seqlock read before the reader gives up for this burst (the writer is rare and quick). */
#define DP_NICCLK_READ_TRIES 4u

struct dp_nicclk_sample {
	uint64_t nic;       /* the port's clock, in its own units */
	uint64_t tsc;       /* the middle of the bracket */
	uint64_t width_tsc; /* TSC after minus TSC before: the true TSC lies within ±width/2 of tsc */
};

/* What the rx lcores read. tsc = base_tsc + (stamp * stamp_scale - base_nic) * tsc_per_nic_q32 / 2^32. */
struct dp_nicclk_map {
	uint64_t base_nic;
	uint64_t base_tsc;
	uint64_t tsc_per_nic_q32;  /* TSC ticks per unit of the port's clock, fixed point 32.32 */
	uint64_t horizon_nic;      /* a stamp further than this from base_nic is not mapped */
	uint64_t bound_ns;         /* a mapped stamp is within ±bound_ns of the true time */
	uint32_t stamp_scale;      /* units of the port's clock per unit of a stamp */
	uint32_t valid;
};

/* The published map: seq is odd while the control core writes it. */
struct dp_nicclk_pub {
	uint32_t seq;
	struct dp_nicclk_map map;
};

/* The control core's state: the window and the fit's parameters. */
struct dp_nicclk {
	struct dp_nicclk_sample samples[DP_NICCLK_SAMPLES_MAX];
	uint32_t sample_count;
	uint32_t sample_head;       /* where the next sample goes */
	uint64_t tsc_hz;
	uint32_t stamp_scale;
	uint64_t stamp_resolution_ns; /* a stamp is truncated: the true time is up to this much later */
	uint64_t refresh_tsc;       /* how long a fit is used before the next one */
	uint64_t horizon_ns;
	struct dp_nicclk_map last;  /* the last fit, valid or not, for status lines */
	uint64_t fits;              /* fits published */
	struct dp_nicclk_pub pub __attribute__((aligned(64)));
};

/*
 * Start an empty map for a clock whose stamps are `stamp_scale` clock units each and truncated to
 * `stamp_resolution_ns`; fits are refreshed every `refresh_tsc` ticks; stamps further than `horizon_ns`
 * from the last sample are refused.
 */
void dp_nicclk_init(struct dp_nicclk *c, uint64_t tsc_hz, uint32_t stamp_scale, uint64_t stamp_resolution_ns,
		    uint64_t refresh_tsc, uint64_t horizon_ns);

/* Add one bracketed sample (tsc_before <= tsc_after) to the window. */
void dp_nicclk_add(struct dp_nicclk *c, uint64_t tsc_before, uint64_t nic, uint64_t tsc_after);

/*
 * Fit the window into `out`. Returns 0, -EAGAIN when the samples do not yet give a rate within
 * DP_NICCLK_RATE_ERR_MAX (too few, or too close together), -ERANGE when the clock runs backwards.
 */
int dp_nicclk_fit(const struct dp_nicclk *c, struct dp_nicclk_map *out);

/* Fit and publish (an invalid map when the fit fails). Returns what dp_nicclk_fit returned. */
int dp_nicclk_update(struct dp_nicclk *c);

/* The writer's side of the seqlock: the control core only. */
void dp_nicclk_publish(struct dp_nicclk_pub *pub, const struct dp_nicclk_map *map);

/* The reader's side: copy the map. Returns 0 with a valid map, -EAGAIN when the map is not valid,
 * -EBUSY when the writer kept changing it. */
static inline int dp_nicclk_read(const struct dp_nicclk_pub *pub, struct dp_nicclk_map *out)
{
	for (uint32_t i = 0; i < DP_NICCLK_READ_TRIES; i++) {
		/* Acquire: the fields read below are no older than this even sequence number. */
		uint32_t seq = __atomic_load_n(&pub->seq, __ATOMIC_ACQUIRE);

		if (seq & 1u)
			continue;
		out->base_nic = __atomic_load_n(&pub->map.base_nic, __ATOMIC_RELAXED);
		out->base_tsc = __atomic_load_n(&pub->map.base_tsc, __ATOMIC_RELAXED);
		out->tsc_per_nic_q32 = __atomic_load_n(&pub->map.tsc_per_nic_q32, __ATOMIC_RELAXED);
		out->horizon_nic = __atomic_load_n(&pub->map.horizon_nic, __ATOMIC_RELAXED);
		out->bound_ns = __atomic_load_n(&pub->map.bound_ns, __ATOMIC_RELAXED);
		out->stamp_scale = __atomic_load_n(&pub->map.stamp_scale, __ATOMIC_RELAXED);
		out->valid = __atomic_load_n(&pub->map.valid, __ATOMIC_RELAXED);
		/* Acquire fence: the field loads above complete before the second look at seq, so an
		 * unchanged seq means no write overlapped them. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&pub->seq, __ATOMIC_RELAXED) == seq)
			return out->valid ? 0 : -EAGAIN;
	}
	return -EBUSY;
}

/*
 * One stamp to TSC. Returns 0 with *tsc set, or -1 when the stamp is beyond the map's horizon (a stamp
 * from another clock, or stale). Differences are taken modulo 2^64, so a clock that wraps its 64-bit
 * counter between the map's base and the stamp maps correctly.
 */
static inline int dp_nicclk_to_tsc(const struct dp_nicclk_map *m, uint64_t stamp, uint64_t *tsc)
{
	int64_t d = (int64_t)(stamp * m->stamp_scale - m->base_nic);
	uint64_t mag = d < 0 ? -(uint64_t)d : (uint64_t)d;

	if (mag > m->horizon_nic)
		return -1;
	unsigned __int128 off = ((unsigned __int128)mag * m->tsc_per_nic_q32) >> 32;
	uint64_t t = d < 0 ? m->base_tsc - (uint64_t)off : m->base_tsc + (uint64_t)off;

	if (t == 0) /* 0 means "no stamp" to every reader */
		t = 1;
	*tsc = t;
	return 0;
}

#endif /* DP_NICCLK_H */
