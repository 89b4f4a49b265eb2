/* SPDX-License-Identifier: MIT */
/*
 * krn_cpu_math.c: the cpu device's matrix-vector product, chosen once at run time: AVX-512 where the
 * CPU has it, a portable loop elsewhere. Host only (gcc); nvcc builds use krn_math.h's inline loop.
 *
 * The AVX-512 path works on four rows at a time, each with its own accumulator, so that four
 * independent FMA chains hide the FMA latency; each row's tail (n % 16) uses a masked load, so any n
 * works and nothing is read past a row.
 */
#include <stddef.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <math.h>

#include "krn_math.h"

typedef void (*matmul_fn)(float *xout, const float *x, const float *w, uint32_t n, uint32_t d);

static void matmul_portable(float *xout, const float *x, const float *w, uint32_t n, uint32_t d)
{
	for (uint32_t i = 0; i < d; i++) {
		const float *row = w + (size_t)i * n;
		float v = 0.0f;

		for (uint32_t j = 0; j < n; j++)
			v += row[j] * x[j];
		xout[i] = v;
	}
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float dot_avx512(const float *row, const float *x, uint32_t n)
{
	__m512 acc = _mm512_setzero_ps();
	uint32_t j = 0;

	for (; j + 16 <= n; j += 16)
		acc = _mm512_fmadd_ps(_mm512_loadu_ps(row + j), _mm512_loadu_ps(x + j), acc);
	if (j < n) {
		__mmask16 m = (__mmask16)((1u << (n - j)) - 1u);
		acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + j), _mm512_maskz_loadu_ps(m, x + j), acc);
	}
	return _mm512_reduce_add_ps(acc);
}

/* The four sums of a0..a3 in one vector: halve each to 256 then 128 bits, then two horizontal adds
 * finish all four at once (cheaper than four separate full reductions). */
__attribute__((target("avx512f"))) static __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
	__m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a0), 1)));
	__m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a1), 1)));
	__m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a2), 1)));
	__m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a3), 1)));
	__m128 c0 = _mm_add_ps(_mm256_castps256_ps128(b0), _mm256_extractf128_ps(b0, 1));
	__m128 c1 = _mm_add_ps(_mm256_castps256_ps128(b1), _mm256_extractf128_ps(b1, 1));
	__m128 c2 = _mm_add_ps(_mm256_castps256_ps128(b2), _mm256_extractf128_ps(b2, 1));
	__m128 c3 = _mm_add_ps(_mm256_castps256_ps128(b3), _mm256_extractf128_ps(b3, 1));

	return _mm_hadd_ps(_mm_hadd_ps(c0, c1), _mm_hadd_ps(c2, c3));
}

__attribute__((target("avx512f"))) static void matmul_avx512(float *xout, const float *x, const float *w,
							      uint32_t n, uint32_t d)
{
	__mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
	uint32_t body = n - n % 16;
	uint32_t i = 0;

	for (; i + 4 <= d; i += 4) {
		const float *r0 = w + (size_t)i * n;
		const float *r1 = r0 + n;
		const float *r2 = r1 + n;
		const float *r3 = r2 + n;
		__m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
		__m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
		uint32_t j = 0;

		for (; j < body; j += 16) {
			__m512 xv = _mm512_loadu_ps(x + j);
			a0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + j), xv, a0);
			a1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + j), xv, a1);
			a2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + j), xv, a2);
			a3 = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + j), xv, a3);
		}
		if (tail) {
			__m512 xv = _mm512_maskz_loadu_ps(tail, x + j);
			a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r0 + j), xv, a0);
			a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r1 + j), xv, a1);
			a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r2 + j), xv, a2);
			a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, r3 + j), xv, a3);
		}
		_mm_storeu_ps(xout + i, reduce4(a0, a1, a2, a3));
	}
	for (; i < d; i++)
		xout[i] = dot_avx512(w + (size_t)i * n, x, n);
}
#endif

#if defined(__x86_64__)
/*
 * expf for 16 lanes: x = n ln2 + r with |r| <= ln2/2, e^r by Cephes' degree-6 polynomial, times 2^n
 * (vscalefps). Within 2 ulp of expf over the range softmax feeds it (arguments <= 0).
 */
__attribute__((target("avx512f"))) static __m512 exp_avx512(__m512 x)
{
	const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
	const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
	const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);

	x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
	x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
	r = _mm512_fnmadd_ps(n, ln2_lo, r);
	__m512 p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	__m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
	return _mm512_scalef_ps(y, n);
}

static __mmask16 lanes(uint32_t left)
{
	return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

__attribute__((target("avx512f"))) static void softmax_avx512(float *x, uint32_t size)
{
	__m512 vmax = _mm512_set1_ps(-INFINITY);
	__m512 vsum = _mm512_setzero_ps();

	for (uint32_t i = 0; i < size; i += 16)
		vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes(size - i), x + i));
	__m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
	for (uint32_t i = 0; i < size; i += 16) {
		__mmask16 m = lanes(size - i);
		__m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max));

		_mm512_mask_storeu_ps(x + i, m, e);
		vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
	}
	__m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
	for (uint32_t i = 0; i < size; i += 16) {
		__mmask16 m = lanes(size - i);

		_mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
	}
}

__attribute__((target("avx512f"))) static void silu_mul_avx512(float *h, const float *g, uint32_t n)
{
	const __m512 one = _mm512_set1_ps(1.0f);

	for (uint32_t i = 0; i < n; i += 16) {
		__mmask16 m = lanes(n - i);
		__m512 v = _mm512_maskz_loadu_ps(m, h + i);
		__m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v))));

		_mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(_mm512_mul_ps(v, sig), _mm512_maskz_loadu_ps(m, g + i)));
	}
}
#endif

static void softmax_portable(float *x, uint32_t size)
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

static void silu_mul_portable(float *h, const float *g, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		float val = h[i];

		val *= 1.0f / (1.0f + expf(-val));
		h[i] = val * g[i];
	}
}

static void (*chosen_softmax)(float *x, uint32_t size);
static void (*chosen_silu_mul)(float *h, const float *g, uint32_t n);
static matmul_fn chosen;
static const char *chosen_name;
static int forced_portable;

static void choose(void)
{
#if defined(__x86_64__)
	if (!forced_portable && __builtin_cpu_supports("avx512f")) {
		chosen = matmul_avx512;
		chosen_softmax = softmax_avx512;
		chosen_silu_mul = silu_mul_avx512;
		chosen_name = "avx512";
		return;
	}
#endif
	chosen = matmul_portable;
	chosen_softmax = softmax_portable;
	chosen_silu_mul = silu_mul_portable;
	chosen_name = "portable";
}

void krn_matmul(float *xout, const float *x, const float *w, uint32_t n, uint32_t d, uint32_t thread_idx,
		uint32_t thread_count)
{
	(void)thread_idx;
	(void)thread_count;
	/* Racy first call is benign: every thread stores the same two values. */
	if (!chosen)
		choose();
	chosen(xout, x, w, n, d);
}

void krn_softmax(float *x, uint32_t size)
{
	if (!chosen_softmax)
		choose();
	chosen_softmax(x, size);
}

void krn_silu_mul(float *h, const float *g, uint32_t n, uint32_t thread_idx, uint32_t thread_count)
{
	(void)thread_idx;
	(void)thread_count;
	if (!chosen_silu_mul)
		choose();
	chosen_silu_mul(h, g, n);
}

const char *krn_matmul_impl(void)
{
	if (!chosen)
		choose();
	return chosen_name;
}

const char *krn_matmul_force_portable(int force)
{
	const char *before = krn_matmul_impl();

	forced_portable = force;
	choose();
	return before;
}
