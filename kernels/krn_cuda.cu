/* SPDX-License-Identifier: MIT */
/*
 * krn_cuda.cu: the persistent device loop as one CUDA kernel. It compiles the same host/device-neutral
 * sources the cpu device runs (included here, so that one translation unit holds all device code and
 * no relocatable device code is needed), and adds only what is CUDA's: the grid, the stop flag and the
 * heartbeat.
 */
#include "krn_msgpack.c"
#include "krn_request.c"
#include "krn_serve.c"

#include "krn_cuda.h"

/*
 * Launched once. Thread 0 of every block claims slots and serves them; the other threads of the block
 * are there for the model kernels that run inside the loop. Each block beats its heartbeat every poll
 * so that the host can tell a stalled kernel from an idle one.
 */
extern "C" __global__ void krn_persistent_loop(struct zh_ring ring, const struct krn_models *models,
					       struct krn_scratch *scratch, const uint32_t *stop,
					       uint64_t *heartbeat)
{
	struct krn_scratch *mine = &scratch[blockIdx.x];

	if (threadIdx.x != 0)
		return;
	for (;;) {
		/* Acquire-free volatile read is enough: the host's store of stop needs no data with it. */
		if (*(const volatile uint32_t *)stop)
			break;
		if (!krn_loop_step(&ring, models, mine))
			zh_cpu_relax();
		/* Relaxed system-scope store: the host only wants to see it change. */
		*(volatile uint64_t *)&heartbeat[blockIdx.x] = zh_dclk_now();
	}
}
