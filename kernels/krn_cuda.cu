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

#include "krn_llama.c"
#include "krn_ranker.c"

enum block_cmd { CMD_IDLE = 0, CMD_SERVE = 1, CMD_STOP = 2 };

/*
 * Serve the slot thread 0 claimed, with the whole block: thread 0 decodes, every thread runs the
 * model, thread 0 encodes and publishes DONE. Barriers separate the phases; every thread calls this.
 */
static __device__ void serve_claimed(const struct zh_ring *ring, const struct krn_models *models,
				     struct krn_scratch *mine, struct zh_slot *slot, uint64_t ticket)
{
	if (threadIdx.x == 0) {
		slot->claim_dclk = zh_dclk_now();
		krn_serve_prepare(models, (const uint8_t *)(uintptr_t)slot->req_addr, slot->req_size_bytes, mine);
	}
	__syncthreads();
	krn_serve_run(mine, threadIdx.x, blockDim.x);
	__syncthreads();
	if (threadIdx.x == 0) {
		uint16_t status = ZH_STATUS_INTERNAL;
		uint32_t size = krn_serve_encode(mine, zh_ring_answer(ring, slot), zh_ring_answer_cap(ring), slot, &status);

		slot->ans_size_bytes = size;
		slot->ans_status = krn_serve_slot_status(mine, status);
		slot->model_id = mine->job.model ? mine->job.model->id : ZH_MODEL_ID_NONE;
		zh_ring_complete(ring, slot, ticket);
	}
}

/*
 * Launched once. Thread 0 of every block claims slots; the block serves each together. Each block
 * beats its heartbeat every poll, so the host can tell a stalled kernel from an idle one.
 */
static __global__ void persistent_loop(struct zh_ring ring, const struct krn_models *models,
				       struct krn_scratch *scratch, const uint32_t *stop, uint64_t *heartbeat)
{
	__shared__ uint32_t cmd;
	__shared__ struct zh_slot *slot;
	__shared__ uint64_t ticket;
	struct krn_scratch *mine = &scratch[blockIdx.x];

	for (;;) {
		if (threadIdx.x == 0) {
			/* A volatile load reaches memory every time; no data travels with the stop
			 * flag, so it needs no acquire. */
			if (*(const volatile uint32_t *)stop) {
				cmd = CMD_STOP;
			} else {
				slot = zh_ring_claim(&ring, &ticket);
				cmd = slot ? CMD_SERVE : CMD_IDLE;
			}
		}
		__syncthreads();
		if (cmd == CMD_STOP)
			break;
		if (cmd == CMD_SERVE)
			serve_claimed(&ring, models, mine, slot, ticket);
		if (threadIdx.x == 0) {
			if (cmd == CMD_IDLE)
				zh_cpu_relax();
			/* Relaxed: the host only wants to see the value change. */
			*(volatile uint64_t *)&heartbeat[blockIdx.x] = zh_dclk_now();
		}
		/* Nobody rewrites cmd/slot/ticket until every thread has read them. */
		__syncthreads();
	}
}

/* One block, one step: serve at most one READY slot and exit (a launch per request). */
static __global__ void step_once(struct zh_ring ring, const struct krn_models *models, struct krn_scratch *scratch)
{
	__shared__ struct zh_slot *slot;
	__shared__ uint64_t ticket;

	if (threadIdx.x == 0)
		slot = zh_ring_claim(&ring, &ticket);
	__syncthreads();
	if (slot)
		serve_claimed(&ring, models, scratch, slot, ticket);
}

static __global__ void serve_batch(const struct krn_models *models, const uint8_t *req_bytes,
				   const uint32_t *req_offsets, const uint32_t *req_sizes, uint8_t *answers,
				   uint32_t ans_stride_bytes, uint32_t *ans_sizes, uint16_t *statuses,
				   struct krn_scratch *scratch, uint32_t count)
{
	uint32_t i = blockIdx.x;
	struct krn_scratch *mine = &scratch[i];

	if (i >= count)
		return;
	if (threadIdx.x == 0)
		krn_serve_prepare(models, req_bytes + req_offsets[i], req_sizes[i], mine);
	__syncthreads();
	krn_serve_run(mine, threadIdx.x, blockDim.x);
	__syncthreads();
	if (threadIdx.x == 0)
		ans_sizes[i] = krn_serve_encode(mine, answers + (size_t)i * ans_stride_bytes, ans_stride_bytes, 0,
						&statuses[i]);
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
