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
 * Answer the clock mailbox if the host left a new request: read %globaltimer, publish it, then the
 * sequence number. Returns the sequence number answered (or `seen` when there was nothing new).
 */
static __device__ uint64_t clock_answer(struct krn_clk_mailbox *clk, uint64_t seen)
{
	/* A volatile load reaches host memory every time; the host wrote req_seq last, with nothing
	 * else to publish, so no acquire is needed. */
	uint64_t req = *(const volatile uint64_t *)&clk->req_seq;

	if (req == seen)
		return seen;
	*(volatile uint64_t *)&clk->ans_dclk = zh_dclk_now();
	/* System-scope fence: the host, which polls ans_seq, must see ans_dclk first. Without it the
	 * two stores to host memory may reach it in either order over PCIe. */
	__threadfence_system();
	*(volatile uint64_t *)&clk->ans_seq = req;
	return req;
}

/*
 * Launched once. Thread 0 of every block claims slots; the block serves each together. Each block
 * beats its heartbeat every poll, so the host can tell a stalled kernel from an idle one.
 */
static __global__ void persistent_loop(struct zh_ring ring, const struct krn_models *models,
				       struct krn_scratch *scratch, const uint32_t *stop, uint64_t *heartbeat,
				       struct krn_clk_mailbox *clk)
{
	__shared__ uint32_t cmd;
	__shared__ struct zh_slot *slot;
	__shared__ uint64_t ticket;
	struct krn_scratch *mine = &scratch[blockIdx.x];
	/* Thread 0 of block 0: the last clock request answered, so that an old one is not answered
	 * again (the calibration kernel answered the ones before this launch). */
	uint64_t clk_seen = 0;

	if (blockIdx.x == 0 && threadIdx.x == 0)
		clk_seen = *(const volatile uint64_t *)&clk->ans_seq;

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
			if (cmd == CMD_IDLE) {
				/* Clock requests are answered on idle polls only: a request never waits
				 * behind an answer, at worst behind one read of the mailbox (a PCIe round
				 * trip) when it lands during one. A busy block 0 answers nothing; the
				 * control core gives up after a few ms and tries again a second later. */
				if (blockIdx.x == 0)
					clk_seen = clock_answer(clk, clk_seen);
				zh_cpu_relax();
			}
			/* Relaxed: the host only wants to see the value change. */
			*(volatile uint64_t *)&heartbeat[blockIdx.x] = zh_dclk_now();
		}
		/* Nobody rewrites cmd/slot/ticket until every thread has read them. */
		__syncthreads();
	}
}

/*
 * The calibration kernel (one thread): first the step of %globaltimer, the smallest positive
 * difference between consecutive distinct readings (it may move in coarse steps, e.g. 1 us on some
 * parts), and any reading lower than the one before; then the mailbox's requests, each answered as the
 * persistent kernel answers them. Every loop is bounded by %globaltimer and by a count.
 */
#define CLOCK_STEPS 64u
#define CLOCK_STEP_POLLS_MAX 1000000u

static __global__ void clock_calibrate(struct krn_clk_mailbox *clk, uint32_t tries, uint64_t timeout_ns)
{
	uint64_t start = zh_dclk_now();
	uint64_t prev = start, step = 0, backwards = 0;
	uint32_t changes = 0;

	for (uint32_t i = 0; i < CLOCK_STEP_POLLS_MAX && changes < CLOCK_STEPS; i++) {
		uint64_t t = zh_dclk_now();

		if (t < prev)
			backwards++;
		else if (t > prev && (step == 0 || t - prev < step))
			step = t - prev;
		changes += t != prev;
		prev = t;
	}
	uint64_t seen = *(const volatile uint64_t *)&clk->ans_seq;
	clk->step_ns = step;
	clk->backwards = backwards;
	/* The host waits for `done` before its first request: step and backwards must be there first. */
	__threadfence_system();
	*(volatile uint64_t *)&clk->done = 1;
	for (uint32_t answered = 0; answered < tries && zh_dclk_now() - start < timeout_ns;) {
		uint64_t now_seen = clock_answer(clk, seen);

		answered += now_seen != seen;
		seen = now_seen;
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
				    struct krn_clk_mailbox *clk, uint32_t block_count, uint32_t thread_count,
				    void *stream)
{
	persistent_loop<<<block_count, thread_count, 0, (cudaStream_t)stream>>>(ring, models, scratch, stop,
									     heartbeat, clk);
	return (int)cudaGetLastError();
}

extern "C" int krn_cuda_launch_clock(struct krn_clk_mailbox *clk, uint32_t tries, uint64_t timeout_ns, void *stream)
{
	clock_calibrate<<<1, 1, 0, (cudaStream_t)stream>>>(clk, tries, timeout_ns);
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
