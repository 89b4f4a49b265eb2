/* SPDX-License-Identifier: MIT */
/*
 * krn_cuda.h: the CUDA entry points of kernels/, as C functions that launch them. gpu/ (the host side)
 * calls these and never sees a kernel declaration, so no relocatable device code is needed. Each returns
 * the cudaError_t of the launch as an int (0 = cudaSuccess); `stream` is a cudaStream_t.
 */
#ifndef KRN_CUDA_H
#define KRN_CUDA_H

#include "zh_ring.h"
#include "krn_serve.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The clock mailbox, one cache line of mapped pinned host memory, for the device clock calibration
 * (kernels/zh_clock.h): the host stamps the TSC and writes a new req_seq; the device reads
 * %globaltimer, writes it to ans_dclk and then, after a system-scope fence, req_seq to ans_seq; the
 * host sees ans_seq == its req_seq and stamps the TSC again.
 */
struct krn_clk_mailbox {
	uint64_t req_seq;      /* written by the host */
	uint64_t ans_seq;      /* written by the device, after ans_dclk */
	uint64_t ans_dclk;     /* %globaltimer when the device saw req_seq */
	uint64_t step_ns;      /* calibration kernel: the smallest step of %globaltimer it saw (0: none) */
	uint64_t backwards;    /* calibration kernel: readings lower than the one before (must be 0) */
	uint64_t done;         /* calibration kernel: 1 once the step is measured and it serves requests */
	uint64_t pad[2];
};

ZH_STATIC_ASSERT(sizeof(struct krn_clk_mailbox) == ZH_CACHE_LINE_SIZE, "the mailbox is one cache line");

/*
 * The persistent loop: one launch of `block_count` blocks serves the ring until *stop becomes non-zero.
 * `ring` holds device-side pointers. heartbeat: [block_count] device clock values, in memory the host
 * can read (mapped pinned memory). clk: the clock mailbox (device address), answered by thread 0 of
 * block 0 on its idle polls.
 */
int krn_cuda_launch_loop(struct zh_ring ring, const struct krn_models *models, struct krn_scratch *scratch,
			 const uint32_t *stop, uint64_t *heartbeat, struct krn_clk_mailbox *clk,
			 uint32_t block_count, uint32_t thread_count, void *stream);

/*
 * The calibration kernel, launched before the persistent one: one thread measures the step of
 * %globaltimer (and that it never goes back), sets clk->done, then answers up to `tries` requests
 * in the mailbox and exits, or exits after timeout_ns of %globaltimer whatever the host did.
 */
int krn_cuda_launch_clock(struct krn_clk_mailbox *clk, uint32_t tries, uint64_t timeout_ns, void *stream);

/* One block, one krn_loop_step: serves at most one READY slot and exits (a launch per request). */
int krn_cuda_launch_step(struct zh_ring ring, const struct krn_models *models, struct krn_scratch *scratch,
			 void *stream);

/*
 * Serve `count` requests from plain arrays (one block each, no ring): request i is req_bytes +
 * req_offsets[i], req_sizes[i] bytes; its answer goes to answers + i * ans_stride_bytes. Used to check
 * the device decoder and encoder against the CPU's.
 */
int krn_cuda_launch_serve_batch(const struct krn_models *models, const uint8_t *req_bytes,
				const uint32_t *req_offsets, const uint32_t *req_sizes, uint8_t *answers,
				uint32_t ans_stride_bytes, uint32_t *ans_sizes, uint16_t *statuses,
				struct krn_scratch *scratch, uint32_t count, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* KRN_CUDA_H */
