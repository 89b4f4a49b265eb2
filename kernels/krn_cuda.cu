/* SPDX-License-Identifier: MIT */
/*
 * krn_cuda.cu: the device loop as CUDA kernels. It compiles the same host/device-neutral sources the
 * cpu device runs (included here, so that one translation unit holds all device code) and adds only
 * what is CUDA's: the grid, the stop flag, the heartbeat, and C launchers for gpu/.
 */
#include <cuda_runtime.h>

#include "krn_msgpack.c"
#include "krn_request.c"
#include "krn_serve.c"

#include "krn_cuda.h"

/*
 * Launched once. Thread 0 of every block claims slots and serves them; the other threads of a block
 * are there for model kernels that run inside the loop. Each block beats its heartbeat every poll, so
 * the host can tell a stalled kernel from an idle one.
 */
static __global__ void persistent_loop(struct zh_ring ring, const struct krn_models *models,
				       struct krn_scratch *scratch, const uint32_t *stop, uint64_t *heartbeat)
{
	struct krn_scratch *mine = &scratch[blockIdx.x];

	if (threadIdx.x != 0)
		return;
	for (;;) {
		/* A volatile load reaches memory every time; no data travels with the stop flag, so
		 * it needs no acquire. */
		if (*(const volatile uint32_t *)stop)
			break;
		if (!krn_loop_step(&ring, models, mine))
			zh_cpu_relax();
		/* Relaxed: the host only wants to see the value change. */
		*(volatile uint64_t *)&heartbeat[blockIdx.x] = zh_dclk_now();
	}
}

static __global__ void step_once(struct zh_ring ring, const struct krn_models *models, struct krn_scratch *scratch)
{
	if (threadIdx.x == 0)
		krn_loop_step(&ring, models, scratch);
}

static __global__ void serve_batch(const struct krn_models *models, const uint8_t *req_bytes,
				   const uint32_t *req_offsets, const uint32_t *req_sizes, uint8_t *answers,
				   uint32_t ans_stride_bytes, uint32_t *ans_sizes, uint16_t *statuses,
				   struct krn_scratch *scratch, uint32_t count)
{
	uint32_t i = blockIdx.x;

	if (threadIdx.x != 0 || i >= count)
		return;
	ans_sizes[i] = krn_serve_request(models, req_bytes + req_offsets[i], req_sizes[i],
					 answers + (size_t)i * ans_stride_bytes, ans_stride_bytes, &scratch[i],
					 0, &statuses[i]);
}

extern "C" int krn_cuda_launch_loop(struct zh_ring ring, const struct krn_models *models,
				    struct krn_scratch *scratch, const uint32_t *stop, uint64_t *heartbeat,
				    uint32_t block_count, uint32_t thread_count, void *stream)
{
	persistent_loop<<<block_count, thread_count, 0, (cudaStream_t)stream>>>(ring, models, scratch, stop,
									     heartbeat);
	return (int)cudaGetLastError();
}

extern "C" int krn_cuda_launch_step(struct zh_ring ring, const struct krn_models *models,
				    struct krn_scratch *scratch, void *stream)
{
	step_once<<<1, 32, 0, (cudaStream_t)stream>>>(ring, models, scratch);
	return (int)cudaGetLastError();
}

extern "C" int krn_cuda_launch_serve_batch(const struct krn_models *models, const uint8_t *req_bytes,
					   const uint32_t *req_offsets, const uint32_t *req_sizes,
					   uint8_t *answers, uint32_t ans_stride_bytes, uint32_t *ans_sizes,
					   uint16_t *statuses, struct krn_scratch *scratch, uint32_t count,
					   void *stream)
{
	if (count == 0)
		return (int)cudaSuccess;
	serve_batch<<<count, 32, 0, (cudaStream_t)stream>>>(models, req_bytes, req_offsets, req_sizes, answers,
							    ans_stride_bytes, ans_sizes, statuses, scratch,
							    count);
	return (int)cudaGetLastError();
}
