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
 * The persistent loop: one launch of `block_count` blocks serves the ring until *stop becomes non-zero.
 * `ring` holds device-side pointers. heartbeat: [block_count] device clock values, in memory the host
 * can read (mapped pinned memory).
 */
int krn_cuda_launch_loop(struct zh_ring ring, const struct krn_models *models, struct krn_scratch *scratch,
			 const uint32_t *stop, uint64_t *heartbeat, uint32_t block_count,
			 uint32_t thread_count, void *stream);

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
