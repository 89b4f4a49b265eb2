/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda.cu: CUDA host side. Uses the runtime API only, linked statically, so the binary starts on
 * machines without libcuda and learns at run time that there is no driver.
 */
#include <errno.h>
#include <stdio.h>

#include <cuda_runtime.h>

#include "gpu_cuda.h"

extern "C" int gpu_cuda_probe(char *why, size_t why_size)
{
	int count = 0;
	cudaError_t err = cudaGetDeviceCount(&count);

	/* Check the error, not the count: without a driver the count is left untouched. */
	if (err == cudaErrorInsufficientDriver) {
		snprintf(why, why_size, "no CUDA driver (%s, %d)", cudaGetErrorName(err), (int)err);
		return -ENODEV;
	}
	if (err == cudaErrorNoDevice) {
		snprintf(why, why_size, "no CUDA device (%s)", cudaGetErrorName(err));
		return -ENODEV;
	}
	if (err != cudaSuccess) {
		snprintf(why, why_size, "CUDA unusable: %s (%d)", cudaGetErrorString(err), (int)err);
		return -ENODEV;
	}
	if (count <= 0) {
		snprintf(why, why_size, "no CUDA device");
		return -ENODEV;
	}
	snprintf(why, why_size, "%d CUDA device(s)", count);
	return count;
}

extern "C" int gpu_cuda_runtime_version(void)
{
	return CUDART_VERSION;
}
