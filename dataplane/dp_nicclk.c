/* SPDX-License-Identifier: MIT */
/*
 * dp_nicclk.c: see dp_nicclk.h. Control core only, except the inline readers in the header.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "dp_nicclk.h"

void dp_nicclk_init(struct dp_nicclk *c, uint64_t tsc_hz, uint32_t stamp_scale, uint64_t stamp_resolution_ns,
		    uint64_t refresh_tsc, uint64_t horizon_ns)
{
	memset(c, 0, sizeof(*c));
	c->tsc_hz = tsc_hz;
	c->stamp_scale = stamp_scale ? stamp_scale : 1;
	c->stamp_resolution_ns = stamp_resolution_ns;
	c->refresh_tsc = refresh_tsc;
	c->horizon_ns = horizon_ns;
	c->last.stamp_scale = c->stamp_scale;
	dp_nicclk_publish(&c->pub, &c->last);
}

void dp_nicclk_add(struct dp_nicclk *c, uint64_t tsc_before, uint64_t nic, uint64_t tsc_after)
{
	struct dp_nicclk_sample *s = &c->samples[c->sample_head];

	/* A bracket whose end precedes its start (a TSC read moved across cores) brackets nothing. */
	if (tsc_after < tsc_before)
		return;
	s->nic = nic;
	s->tsc = tsc_before + (tsc_after - tsc_before) / 2;
	s->width_tsc = tsc_after - tsc_before;
	c->sample_head = (c->sample_head + 1) % DP_NICCLK_SAMPLES_MAX;
	if (c->sample_count < DP_NICCLK_SAMPLES_MAX)
		c->sample_count++;
}

int dp_nicclk_fit(const struct dp_nicclk *c, struct dp_nicclk_map *out)
{
	const struct dp_nicclk_sample *ref;
	double x[DP_NICCLK_SAMPLES_MAX], y[DP_NICCLK_SAMPLES_MAX];
	double mx = 0, my = 0, sxx = 0, sxy = 0;
	double y_lo = 0, y_hi = 0, width_max = 0, resid_max = 0;
	uint32_t n = c->sample_count;

	memset(out, 0, sizeof(*out));
	out->stamp_scale = c->stamp_scale;
	if (n < 2 || c->tsc_hz == 0)
		return -EAGAIN;
	/* Coordinates relative to the newest sample, as signed differences modulo 2^64: small numbers
	 * for the doubles, and a counter that wrapped inside the window still gives the right ones. */
	ref = &c->samples[(c->sample_head + DP_NICCLK_SAMPLES_MAX - 1) % DP_NICCLK_SAMPLES_MAX];
	for (uint32_t i = 0; i < n; i++) {
		const struct dp_nicclk_sample *s = &c->samples[i];

		x[i] = (double)(int64_t)(s->nic - ref->nic);
		y[i] = (double)(int64_t)(s->tsc - ref->tsc);
		mx += x[i];
		my += y[i];
		y_lo = fmin(y_lo, y[i]);
		y_hi = fmax(y_hi, y[i]);
		width_max = fmax(width_max, (double)s->width_tsc);
	}
	mx /= n;
	my /= n;
	for (uint32_t i = 0; i < n; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	if (sxx == 0 || y_hi - y_lo <= 0)
		return -EAGAIN;
	double rate = sxy / sxx;
	if (rate <= 0 || rate * 4294967296.0 >= 9.2e18)
		return -ERANGE;
	/* Each end of the window is known to ±width/2, so the slope is known to width/span: the two
	 * samples must be far apart compared with their brackets before the rate is worth anything. */
	double rate_err = fmax(width_max, 1.0) / (y_hi - y_lo);
	if (rate_err > DP_NICCLK_RATE_ERR_MAX)
		return -EAGAIN;
	double intercept = my - rate * mx;
	for (uint32_t i = 0; i < n; i++) {
		double resid = fabs(y[i] - (intercept + rate * x[i])) + (double)c->samples[i].width_tsc / 2;

		resid_max = fmax(resid_max, resid);
	}
	/* Stamps are mapped up to the horizon from the newest sample (one refresh period when sampling
	 * keeps up, longer when the control core is late): the rate's error grows over all of it. */
	double reach_tsc = fmax((double)c->refresh_tsc, (double)c->horizon_ns * (double)c->tsc_hz / 1e9);
	double bound_tsc = resid_max + rate_err * reach_tsc;
	double ns_per_tsc = 1e9 / (double)c->tsc_hz;

	out->base_nic = ref->nic;
	out->base_tsc = ref->tsc + (uint64_t)(int64_t)llround(intercept);
	out->tsc_per_nic_q32 = (uint64_t)llround(rate * 4294967296.0);
	out->horizon_nic = (uint64_t)((double)c->horizon_ns / ns_per_tsc / rate);
	out->bound_ns = (uint64_t)ceil(bound_tsc * ns_per_tsc) + c->stamp_resolution_ns;
	out->valid = 1;
	return 0;
}

int dp_nicclk_update(struct dp_nicclk *c)
{
	int rc = dp_nicclk_fit(c, &c->last);

	dp_nicclk_publish(&c->pub, &c->last);
	if (rc == 0)
		c->fits++;
	return rc;
}

void dp_nicclk_publish(struct dp_nicclk_pub *pub, const struct dp_nicclk_map *map)
{
	uint32_t seq = pub->seq;

	/* Odd first, and the release fence keeps the field stores below from being seen before it: a
	 * reader that catches any of them sees seq changed. */
	__atomic_store_n(&pub->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&pub->map.base_nic, map->base_nic, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.base_tsc, map->base_tsc, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.tsc_per_nic_q32, map->tsc_per_nic_q32, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.horizon_nic, map->horizon_nic, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.bound_ns, map->bound_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.stamp_scale, map->stamp_scale, __ATOMIC_RELAXED);
	__atomic_store_n(&pub->map.valid, map->valid, __ATOMIC_RELAXED);
	/* Release: a reader that sees the new even seq sees every field above. */
	__atomic_store_n(&pub->seq, seq + 2, __ATOMIC_RELEASE);
}
