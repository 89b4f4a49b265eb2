/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda_none.c: stands in for gpu_cuda.cu in builds made where nvcc was not found.
 */
#include <errno.h>
#include <stdio.h>

#include "gpu_cuda.h"

int gpu_cuda_probe(char *why, size_t why_size)
{
	snprintf(why, why_size, "built without CUDA (nvcc was not found at build time)");
	return -ENOTSUP;
}

int gpu_cuda_runtime_version(void)
{
	return 0;
}
