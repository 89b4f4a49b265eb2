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
		xout[i] = _mm512_reduce_add_ps(a0);
		xout[i + 1] = _mm512_reduce_add_ps(a1);
		xout[i + 2] = _mm512_reduce_add_ps(a2);
		xout[i + 3] = _mm512_reduce_add_ps(a3);
	}
	for (; i < d; i++)
		xout[i] = dot_avx512(w + (size_t)i * n, x, n);
}
#endif

static matmul_fn chosen;
static const char *chosen_name;
static int forced_portable;

static void choose(void)
{
#if defined(__x86_64__)
	if (!forced_portable && __builtin_cpu_supports("avx512f")) {
		chosen = matmul_avx512;
		chosen_name = "avx512";
		return;
	}
#endif
	chosen = matmul_portable;
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
