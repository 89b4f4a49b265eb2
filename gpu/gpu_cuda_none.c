/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda_none.c: stands in for gpu_cuda.cu in builds made where nvcc was not found. Every entry
 * point refuses with the same reason.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gpu_cuda.h"

#define NO_CUDA "built without CUDA (nvcc was not found at build time)"

int gpu_cuda_probe(char *why, size_t why_size)
{
	snprintf(why, why_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_runtime_version(void)
{
	return 0;
}

int gpu_cuda_describe(int device_idx, char *out, size_t out_size)
{
	(void)device_idx;
	snprintf(out, out_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_open(const struct gpu_cuda_params *params, struct gpu_cuda **out, struct zh_ring *host_view,
		  char *why, size_t why_size)
{
	(void)params;
	(void)out;
	(void)host_view;
	snprintf(why, why_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_start(struct gpu_cuda *c, char *why, size_t why_size)
{
	(void)c;
	snprintf(why, why_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_stop(struct gpu_cuda *c, uint32_t timeout_ms)
{
	(void)c;
	(void)timeout_ms;
	return 0;
}

int gpu_cuda_close(struct gpu_cuda *c)
{
	(void)c;
	return 0;
}

int gpu_cuda_register_host(struct gpu_cuda *c, void *addr, size_t len, char *why, size_t why_size)
{
	(void)c;
	(void)addr;
	(void)len;
	snprintf(why, why_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_alloc_payload(struct gpu_cuda *c, size_t len, void **addr, size_t *alloc_len, size_t *page_size,
			   int *needs_flush, char *why, size_t why_size)
{
	(void)c;
	(void)len;
	(void)addr;
	(void)alloc_len;
	(void)page_size;
	(void)needs_flush;
	snprintf(why, why_size, NO_CUDA);
	return -ENOTSUP;
}

int gpu_cuda_flush_rdma_writes(struct gpu_cuda *c)
{
	(void)c;
	return -EIO;
}

uint64_t gpu_cuda_payload_addr(const struct gpu_cuda *c, const void *host_ptr)
{
	(void)c;
	(void)host_ptr;
	return 0;
}

uint64_t gpu_cuda_heartbeat_age_ms(struct gpu_cuda *c, uint64_t now_ns)
{
	(void)c;
	(void)now_ns;
	return 0;
}

int gpu_cuda_clock_refresh(struct gpu_cuda *c)
{
	(void)c;
	return -ENOTSUP;
}

void gpu_cuda_clock_map(const struct gpu_cuda *c, struct zh_clock_map *out)
{
	(void)c;
	memset(out, 0, sizeof(*out));
}

uint64_t gpu_cuda_clock_backwards(const struct gpu_cuda *c)
{
	(void)c;
	return 0;
}

void gpu_cuda_get_internals(const struct gpu_cuda *c, struct gpu_cuda_internals *out)
{
	(void)c;
	memset(out, 0, sizeof(*out));
}
