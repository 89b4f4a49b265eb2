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

/* Forced inlining on the host: the model's helpers must land inside each target clone of the forward
 * pass (krn_llama.c) to be compiled for that clone's instruction set. */
#if defined(__CUDACC__)
#define KRN_INLINE inline
#else
#define KRN_INLINE inline __attribute__((always_inline))
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

/* h[i] = silu(h[i]) * g[i], SwiGLU's gate. */
static inline ZH_HD void krn_silu_mul(float *h, const float *g, uint32_t n, uint32_t thread_idx,
				      uint32_t thread_count)
{
	for (uint32_t i = thread_idx; i < n; i += thread_count) {
		float val = h[i];

		val *= 1.0f / (1.0f + expf(-val));
		h[i] = val * g[i];
	}
}
#else
/* xout[d] = W[d][n] · x[n]; the cpu device runs all rows (thread 0 of 1). */
void krn_matmul(float *xout, const float *x, const float *w, uint32_t n, uint32_t d, uint32_t thread_idx,
		uint32_t thread_count);
/* In-place softmax over x[size]: the exponentials 16 at a time with AVX-512 (a polynomial within 2 ulp
 * of expf), or expf one by one. */
void krn_softmax(float *x, uint32_t size);
/* h[i] = silu(h[i]) * g[i], SwiGLU's gate, with the same exponentials. */
void krn_silu_mul(float *h, const float *g, uint32_t n, uint32_t thread_idx, uint32_t thread_count);
/* Which implementation krn_matmul runs here: "avx512" or "portable". */
const char *krn_matmul_impl(void);
/* Force the portable path (tests compare the two); returns the previous name. */
const char *krn_matmul_force_portable(int force);
#endif

/* o = weight * x / rms(x), as llama2.c computes it. o may be x: every thread reads all of x before
 * the barrier, then writes its share. */
static KRN_INLINE ZH_HD void krn_rmsnorm(float *o, const float *x, const float *weight, uint32_t size, float eps,
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

/*
 * One attention head. The key cache is transposed ([dim][position], `key_stride` floats between a
 * dimension's rows) so that the scores of all positions are built dimension by dimension with
 * contiguous loads, each score still summing its pairs (j, j + hs/2) in llama2.c's order. Then the
 * softmax and the weighted sum of the values (kv_stride floats apart) into out[hs]; att[count] is
 * scratch.
 */
static KRN_INLINE ZH_HD void krn_attend(float *out, const float *q, const float *keys_t, uint32_t key_stride,
					const float *values, uint32_t kv_stride, uint32_t count, uint32_t hs,
					float *att)
{
	uint32_t half = hs / 2;
	float scale = sqrtf((float)hs);

	for (uint32_t t = 0; t < count; t++)
		att[t] = 0.0f;
	for (uint32_t j = 0; j < half; j++) {
		const float *k0 = keys_t + (size_t)j * key_stride;
		const float *k1 = keys_t + (size_t)(j + half) * key_stride;
		float q0 = q[j], q1 = q[j + half];

		for (uint32_t t = 0; t < count; t++) {
			float a = att[t] + q0 * k0[t];

			att[t] = a + q1 * k1[t];
		}
	}
	for (uint32_t t = 0; t < count; t++)
		att[t] /= scale;
	krn_softmax(att, count);
	/* Eight output dimensions at a time in a local accumulator the compiler keeps in a register
	 * (through `out` it could not: out might alias the values, as far as it can tell). */
	uint32_t i0 = 0;
	for (; i0 + 8 <= hs; i0 += 8) {
		float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };

		for (uint32_t t = 0; t < count; t++) {
			const float *v = values + (size_t)t * kv_stride + i0;
			float a = att[t];

			for (uint32_t i = 0; i < 8; i++)
				acc[i] += a * v[i];
		}
		for (uint32_t i = 0; i < 8; i++)
			out[i0 + i] = acc[i];
	}
	for (; i0 < hs; i0++) {
		float acc = 0.0f;

		for (uint32_t t = 0; t < count; t++)
			acc += att[t] * values[(size_t)t * kv_stride + i0];
		out[i0] = acc;
	}
}

#endif /* KRN_MATH_H */
