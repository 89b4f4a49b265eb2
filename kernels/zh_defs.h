/* SPDX-License-Identifier: MIT */
/*
 * zh_defs.h: the few definitions that let one C source run on the host (gcc, the `cpu` device) and
 * inside a CUDA kernel (nvcc, the `cuda` devices): function qualifiers, compile-time assertions and
 * the memory-ordering primitives the request ring is built on.
 *
 * Everything here is header-only and has no dependency beyond <stdint.h>, so kernels/ code can use it
 * on either side without pulling in libc or DPDK.
 */
#ifndef ZH_DEFS_H
#define ZH_DEFS_H

#include <stddef.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define ZH_HD __host__ __device__
#define ZH_DEVICE_SIDE 1
#else
#define ZH_HD
#endif

/* Both C11 and CUDA C++ accept these spellings; `_Static_assert` alone is not C++. */
#if defined(__cplusplus)
#define ZH_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define ZH_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define ZH_CACHE_LINE_SIZE 64
#define ZH_ALIGNED(n) __attribute__((aligned(n)))

#define ZH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__CUDA_ARCH__)
/*
 * Device side. The ring lives in memory the CPU also touches (mapped pinned host memory or GPU memory
 * written through a BAR mapping), so every ordering point is at system scope: `.sys` loads and stores
 * order this thread's accesses against the CPU's, not only against other GPU threads.
 */
static __device__ __forceinline__ uint64_t zh_load_acquire_u64(const uint64_t *p)
{
	uint64_t v;
	asm volatile("ld.acquire.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
	return v;
}

static __device__ __forceinline__ void zh_store_release_u64(uint64_t *p, uint64_t v)
{
	asm volatile("st.release.sys.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

static __device__ __forceinline__ uint64_t zh_load_relaxed_u64(const uint64_t *p)
{
	uint64_t v;
	asm volatile("ld.relaxed.sys.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
	return v;
}

/* Consumer tickets are only ever contended among GPU blocks, so a device-scope CAS is enough;
 * the acquire load of the slot word that follows a won CAS gives the ordering against the CPU. */
static __device__ __forceinline__ int zh_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired)
{
	return atomicCAS((unsigned long long *)p, (unsigned long long)expected,
			 (unsigned long long)desired) == (unsigned long long)expected;
}

static __device__ __forceinline__ void zh_cpu_relax(void)
{
	__nanosleep(32);
}

/* The device clock: %globaltimer, nanoseconds, shared by all SMs of a GPU. */
static __device__ __forceinline__ uint64_t zh_dclk_now(void)
{
	uint64_t t;
	asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
	return t;
}
#else
static inline uint64_t zh_load_acquire_u64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void zh_store_release_u64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint64_t zh_load_relaxed_u64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Sequentially consistent on x86 anyway (lock cmpxchg); acq_rel states what the ring needs. */
static inline int zh_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired)
{
	return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static inline void zh_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* The device clock of the cpu device: the TSC, the same clock the dataplane stamps with. */
static inline uint64_t zh_dclk_now(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	uint64_t t;
	__asm__ volatile("mrs %0, cntvct_el0" : "=r"(t));
	return t;
#endif
}
#endif

#endif /* ZH_DEFS_H */
