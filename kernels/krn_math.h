/* SPDX-License-Identifier: MIT */
/*
 * krn_math.h: the few numeric primitives the models are built from, host/device-neutral.
 *
 * Work is split the way a CUDA block splits it: every function takes (thread_idx, thread_count) and does
 * its share; KRN_SYNC() is the block barrier on CUDA and nothing on the cpu device, where one thread
 * does all of it (0, 1). Reductions that every thread needs (the RMS of a vector) are computed by every
 * thread in the same order, so all threads agree bit for bit.
 *
 * The matrix-vector product is the hot loop. Under nvcc it is the plain strided loop below; in the gcc
 * build it is a function chosen at run time (kernels/krn_cpu_math.c: AVX-512 where the CPU has it, a
 * portable loop elsewhere).
 */
#ifndef KRN_MATH_H
#define KRN_MATH_H

#include <math.h>

#include "zh_defs.h"

#if defined(__CUDA_ARCH__)
#define KRN_SYNC() __syncthreads()
#else
#define KRN_SYNC() \
	do {       \
	} while (0)
#endif

#if defined(__CUDACC__)
/* xout[d] = W[d][n] · x[n], rows split over the threads. */
static inline ZH_HD void krn_matmul(float *xout, const float *x, const float *w, uint32_t n, uint32_t d,
				    uint32_t thread_idx, uint32_t thread_count)
{
	for (uint32_t i = thread_idx; i < d; i += thread_count) {
		const float *row = w + (size_t)i * n;
		float v = 0.0f;

		for (uint32_t j = 0; j < n; j++)
			v += row[j] * x[j];
		xout[i] = v;
	}
}
#else
/* xout[d] = W[d][n] · x[n]; the cpu device runs all rows (thread 0 of 1). */
void krn_matmul(float *xout, const float *x, const float *w, uint32_t n, uint32_t d, uint32_t thread_idx,
		uint32_t thread_count);
/* Which implementation krn_matmul runs here: "avx512" or "portable". */
const char *krn_matmul_impl(void);
/* Force the portable path (tests compare the two); returns the previous name. */
const char *krn_matmul_force_portable(int force);
#endif

/* o = weight * x / rms(x), as llama2.c computes it. o may be x: every thread reads all of x before
 * the barrier, then writes its share. */
static inline ZH_HD void krn_rmsnorm(float *o, const float *x, const float *weight, uint32_t size, float eps,
				     uint32_t thread_idx, uint32_t thread_count)
{
	float ss = 0.0f;

	for (uint32_t j = 0; j < size; j++)
		ss += x[j] * x[j];
	ss /= (float)size;
	ss += eps;
	ss = 1.0f / sqrtf(ss);
	KRN_SYNC();
	for (uint32_t j = thread_idx; j < size; j += thread_count)
		o[j] = weight[j] * (ss * x[j]);
}

/* In-place softmax over x[size], by one thread. */
static inline ZH_HD void krn_softmax(float *x, uint32_t size)
{
	float max_val = x[0];
	float sum = 0.0f;

	for (uint32_t i = 1; i < size; i++)
		if (x[i] > max_val)
			max_val = x[i];
	for (uint32_t i = 0; i < size; i++) {
		x[i] = expf(x[i] - max_val);
		sum += x[i];
	}
	for (uint32_t i = 0; i < size; i++)
		x[i] /= sum;
}

#endif /* KRN_MATH_H */
