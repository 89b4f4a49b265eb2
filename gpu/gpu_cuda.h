/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda.h: the thin host side of the CUDA devices, with C linkage. Built by nvcc from
 * gpu_cuda.cu when the toolkit is there, else from gpu_cuda_none.c, which says so.
 */
#ifndef GPU_CUDA_H
#define GPU_CUDA_H

#include <stddef.h>

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

#ifdef __cplusplus
}
#endif

#endif /* GPU_CUDA_H */
