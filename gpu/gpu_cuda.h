/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda.h: the thin host side of the CUDA devices, with C linkage. Built by nvcc from gpu_cuda.cu
 * when the toolkit is there, else from gpu_cuda_none.c, which refuses every call with a reason.
 *
 * Placements (docs/ARCHITECTURE.md):
 *   cuda-host       ring, answers, stop flag and heartbeats in pinned host memory mapped into the GPU;
 *                   request payloads in host mbufs registered with the GPU (gpu_cuda_register_host).
 *   cuda-gpudirect  request payloads in GPU memory the NIC writes by DMA. Needs a GPUDirect-RDMA NIC
 *                   driven by DPDK and a GPU that can be its peer; refused otherwise, with the reason.
 */
#ifndef GPU_CUDA_H
#define GPU_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "zh_clock.h"
#include "zh_ring.h"
#include "krn_serve.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Is there a usable CUDA device? Returns the number of devices (> 0), or -errno with a one-line
 * reason: -ENODEV when the driver is missing (cudaErrorInsufficientDriver, 35) or there is no GPU,
 * -ENOTSUP when this binary was built without CUDA.
 */
int gpu_cuda_probe(char *why, size_t why_size);

/* The runtime version this binary was linked with, e.g. 13000; 0 without CUDA. */
int gpu_cuda_runtime_version(void);

struct gpu_cuda;

struct gpu_cuda_params {
	int gpudirect;                  /* 0: cuda-host, 1: cuda-gpudirect */
	int device_idx;                 /* CUDA device ordinal */
	uint32_t slot_count;            /* ring slots, a power of two */
	uint32_t ans_stride_bytes;      /* bytes per answer buffer, a multiple of 64 */
	uint32_t block_count;           /* blocks of the persistent kernel, each claiming slots */
	uint32_t thread_count;          /* threads per block */
	const struct krn_models *models;            /* weights bound to the host arenas below */
	const float *model_arenas[KRN_MODELS_MAX];  /* copied to GPU memory; NULL for echo */
	uint64_t model_arena_floats[KRN_MODELS_MAX];
	uint64_t model_state_floats;                /* run state (KV cache) per block */
	uint64_t tsc_hz;                /* the host TSC's frequency; 0: measured at open (10 ms) */
};

/* Allocate and map everything; *host_view receives the host's pointers to the ring. */
int gpu_cuda_open(const struct gpu_cuda_params *params, struct gpu_cuda **out, struct zh_ring *host_view,
		  char *why, size_t why_size);
/* Launch the persistent kernel. */
int gpu_cuda_start(struct gpu_cuda *c, char *why, size_t why_size);
/* Raise the stop flag and wait up to timeout_ms for the kernel to exit: 0, or -ETIMEDOUT. */
int gpu_cuda_stop(struct gpu_cuda *c, uint32_t timeout_ms);
/* 0, or -EBUSY when the kernel would not stop: then its memory is left mapped (leaked, on purpose), and
 * host memory registered with it must not be unmapped either. */
int gpu_cuda_close(struct gpu_cuda *c);

/* Register host memory that will hold request payloads (an mbuf pool's memory), mapped for the GPU. */
int gpu_cuda_register_host(struct gpu_cuda *c, void *addr, size_t len, char *why, size_t why_size);
/*
 * cuda-gpudirect: allocate `len` bytes (rounded up) of GPU memory for request payloads, 64 KiB aligned
 * for DPDK's external memory registration and the NIC's DMA mapping. *needs_flush is set when the GPU
 * does not order GPUDirect RDMA writes itself (gpu_cuda_flush_rdma_writes before each READY then).
 * Once per device; freed by gpu_cuda_close.
 */
int gpu_cuda_alloc_payload(struct gpu_cuda *c, size_t len, void **addr, size_t *alloc_len, size_t *page_size,
			   int *needs_flush, char *why, size_t why_size);
/* cudaDeviceFlushGPUDirectRDMAWrites for this device, from any thread: 0 or -EIO. */
int gpu_cuda_flush_rdma_writes(struct gpu_cuda *c);
/* The device address of a payload the host sees at host_ptr (GPU memory: its own address), or 0 if it
 * is in no registered region. */
uint64_t gpu_cuda_payload_addr(const struct gpu_cuda *c, const void *host_ptr);

/*
 * Watchdog: milliseconds since the least recently beating block last changed its heartbeat, as seen
 * by the host at now_ns (CLOCK_MONOTONIC). Call it periodically from one thread.
 */
uint64_t gpu_cuda_heartbeat_age_ms(struct gpu_cuda *c, uint64_t now_ns);

/*
 * The device clock's map to the host TSC (kernels/zh_clock.h). gpu_cuda_start calibrates once with a
 * small kernel before it launches the persistent one; gpu_cuda_clock_refresh calibrates again through
 * the running kernel (block 0 answers on its idle polls), from one thread, periodically: 0, -ESRCH when
 * the kernel is not running, -ETIMEDOUT when it did not answer within a few milliseconds (the map is
 * then marked stale and keeps its last pair).
 */
int gpu_cuda_clock_refresh(struct gpu_cuda *c);
void gpu_cuda_clock_map(const struct gpu_cuda *c, struct zh_clock_map *out);
/* What the calibration kernel saw of %globaltimer: readings that went back (must be 0). */
uint64_t gpu_cuda_clock_backwards(const struct gpu_cuda *c);

/*
 * For benchmarks and device tests (make gpu-check): the device-side view of the ring, the device copy
 * of the models, the blocks' scratch and the stream, so that a test can launch kernels/ entry points
 * on the same memory the persistent kernel uses (when that kernel is not running).
 */
struct gpu_cuda_internals {
	struct zh_ring dev_view;
	const struct krn_models *models_dev;
	struct krn_scratch *scratch_dev;   /* [block_count] */
	void *stream;                      /* cudaStream_t */
};
void gpu_cuda_get_internals(const struct gpu_cuda *c, struct gpu_cuda_internals *out);

/* Device name and PCI bus id, for start-up lines and the doctor. */
int gpu_cuda_describe(int device_idx, char *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif /* GPU_CUDA_H */
