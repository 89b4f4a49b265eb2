/* SPDX-License-Identifier: MIT */
/*
 * krn_cuda.h: the CUDA entry points of kernels/, for gpu/ to launch.
 */
#ifndef KRN_CUDA_H
#define KRN_CUDA_H

#include "zh_ring.h"
#include "krn_serve.h"

#if defined(__CUDACC__)
/* The persistent loop: one launch serves until *stop becomes non-zero. heartbeat: [gridDim.x]. */
extern "C" __global__ void krn_persistent_loop(struct zh_ring ring, const struct krn_models *models,
					       struct krn_scratch *scratch, const uint32_t *stop,
					       uint64_t *heartbeat);
#endif

#endif /* KRN_CUDA_H */
