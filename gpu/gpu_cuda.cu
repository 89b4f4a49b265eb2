/* SPDX-License-Identifier: MIT */
/*
 * gpu_cuda.cu: CUDA host side. Runtime API only, linked statically, so the binary starts on machines
 * without libcuda and learns at run time that there is no driver. Every CUDA call is checked; errors
 * name the call and the CUDA error, and a failed set-up undoes what it did.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>
#include <cuda_runtime.h>

#include "gpu_cuda.h"
#include "krn_cuda.h"

/* Host memory regions registered for payloads (mbuf pools: one or a few chunks each). */
#define REGIONS_MAX 64u
#define BLOCKS_MAX 1024u
/* GPU pages as the NIC maps them (nvidia-peermem and dma-buf pin GPU memory in 64 KiB pages): DPDK's
 * external memory is registered in these pages and the allocation aligned to one. */
#define GPU_PAGE_SIZE (64u * 1024u)

/*
 * Device clock calibration: brackets per calibration (the tightest wins), how long the host waits for
 * one answer, and how long the calibration kernel may live. An answer through mapped pinned memory
 * takes a few microseconds; a persistent kernel busy with a long request answers no sooner than it
 * goes idle, and then the refresh gives up and the map is stale until the next one.
 */
#define CLOCK_TRIES 64u
#define CLOCK_ANSWER_TIMEOUT_NS 2000000ull
#define CLOCK_POLLS_MAX 10000000u
#define CLOCK_KERNEL_TIMEOUT_NS 500000000ull
#define CLOCK_KERNEL_WAIT_MS 2000u

struct region {
	uintptr_t host_base;
	uint64_t dev_base;
	size_t len;
};

struct gpu_cuda {
	struct gpu_cuda_params params;
	cudaStream_t stream;
	int launched;
	/* Mapped pinned host memory: tickets, slots, answers (host and device addresses). */
	uint8_t *ring_host;
	uint8_t *ring_dev;
	size_t ring_size;
	/* Device memory: the consumer ticket (only GPU blocks CAS it), models, per-block scratch. */
	struct zh_ring_ticket *cons_ticket_dev;
	struct krn_models *models_dev;
	struct krn_scratch *scratch_dev;
	float *arena_dev[KRN_MODELS_MAX];   /* each model's weights in GPU memory */
	float *state_dev;                   /* [block_count][model_state_floats] run state */
	/* Mapped pinned host memory the host polls: stop flag and one heartbeat per block. */
	uint32_t *stop_host;
	uint32_t *stop_dev;
	uint64_t *heartbeat_host;
	uint64_t *heartbeat_dev;
	/* Mapped pinned host memory: the clock mailbox (krn_cuda.h). */
	struct krn_clk_mailbox *clk_host;
	struct krn_clk_mailbox *clk_dev;
	uint64_t clk_seq;               /* the host's last request */
	uint64_t clk_backwards;         /* what the calibration kernel saw */
	struct zh_clock_map clock;
	/* Watchdog state, host only. */
	uint64_t *heartbeat_seen;       /* [block_count] last value seen */
	uint64_t *heartbeat_change_ns;  /* [block_count] host time it last changed */
	struct zh_ring dev_view;
	struct region regions[REGIONS_MAX];
	uint32_t region_count;
	int rdma_writes_ordered;
	int rdma_flush_supported;       /* cudaDeviceFlushGPUDirectRDMAWrites works on this device */
	/* cuda-gpudirect: GPU memory the NIC writes request payloads into. */
	void *payload_alloc;            /* what cudaMalloc returned */
	void *payload_dev;              /* 64 KiB aligned inside it */
	size_t payload_len;
};

#define CUDA_TRY(call, label)                                                                      \
	do {                                                                                       \
		cudaError_t err_ = (call);                                                         \
		if (err_ != cudaSuccess) {                                                         \
			snprintf(why, why_size, "%s: %s (%d)", #call, cudaGetErrorString(err_),   \
				 (int)err_);                                                       \
			rc = err_ == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;                   \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

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

extern "C" int gpu_cuda_describe(int device_idx, char *out, size_t out_size)
{
	cudaDeviceProp prop;
	char bus[32];

	if (cudaGetDeviceProperties(&prop, device_idx) != cudaSuccess ||
	    cudaDeviceGetPCIBusId(bus, sizeof(bus), device_idx) != cudaSuccess)
		return -ENODEV;
	snprintf(out, out_size, "%s (sm_%d%d, %zu MiB, PCI %s)", prop.name, prop.major, prop.minor,
		 prop.totalGlobalMem >> 20, bus);
	return 0;
}

/*
 * GPUDirect RDMA preconditions the GPU itself can tell. The NIC side (a PCI port whose driver can DMA
 * into GPU memory) is the dataplane's to check.
 */
static int check_gpudirect(struct gpu_cuda *c, char *why, size_t why_size)
{
	int supported = 0;
	int ordering = 0;
	int flush_options = 0;
	int rc = 0;

	CUDA_TRY(cudaDeviceGetAttribute(&supported, cudaDevAttrGPUDirectRDMASupported, c->params.device_idx), out);
	if (!supported) {
		snprintf(why, why_size, "this GPU does not support GPUDirect RDMA");
		return -ENOTSUP;
	}
	/* Whether NIC writes to GPU memory are seen by the GPU in order without a flush: a NIC's
	 * completion only says the data left the NIC. Where they are not ordered for the owning
	 * context, every burst is flushed before its requests are marked READY. */
	CUDA_TRY(cudaDeviceGetAttribute(&ordering, cudaDevAttrGPUDirectRDMAWritesOrdering, c->params.device_idx), out);
	c->rdma_writes_ordered = ordering >= cudaGPUDirectRDMAWritesOrderingOwner;
	CUDA_TRY(cudaDeviceGetAttribute(&flush_options, cudaDevAttrGPUDirectRDMAFlushWritesOptions,
					c->params.device_idx), out);
	c->rdma_flush_supported = (flush_options & cudaFlushGPUDirectRDMAWritesOptionHost) != 0;
	if (!c->rdma_writes_ordered && !c->rdma_flush_supported) {
		snprintf(why, why_size, "this GPU neither orders GPUDirect RDMA writes nor can flush them: a request "
			 "could be read before its bytes arrive");
		return -ENOTSUP;
	}
out:
	return rc;
}

/*
 * cuMemAlloc'd memory shared with a third-party device wants CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, so that
 * CUDA's own copies touching it are synchronous with respect to the NIC's DMA (GPUDirect RDMA guide,
 * "Synchronization"). A driver API call, reached through the runtime's entry point lookup so that this
 * binary never links libcuda and still starts where no driver is installed.
 */
static int set_sync_memops(void *dev_ptr, char *why, size_t why_size)
{
	typedef CUresult (*set_attribute_fn)(const void *value, CUpointer_attribute attribute, CUdeviceptr ptr);
	void *fn = NULL;
	cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
	unsigned int one = 1;
	int rc = 0;

	CUDA_TRY(cudaGetDriverEntryPointByVersion("cuPointerSetAttribute", &fn, 12000, cudaEnableDefault, &found), out);
	if (found != cudaDriverEntryPointSuccess || !fn) {
		snprintf(why, why_size, "the driver has no cuPointerSetAttribute");
		return -ENOTSUP;
	}
	if (((set_attribute_fn)fn)(&one, CU_POINTER_ATTRIBUTE_SYNC_MEMOPS, (CUdeviceptr)(uintptr_t)dev_ptr) != CUDA_SUCCESS) {
		snprintf(why, why_size, "cuPointerSetAttribute(SYNC_MEMOPS) failed on the payload memory");
		return -EIO;
	}
out:
	return rc;
}

extern "C" int gpu_cuda_alloc_payload(struct gpu_cuda *c, size_t len, void **addr, size_t *alloc_len,
				      size_t *page_size, int *needs_flush, char *why, size_t why_size)
{
	size_t rounded = (len + GPU_PAGE_SIZE - 1) & ~((size_t)GPU_PAGE_SIZE - 1);
	int rc = 0;

	if (!c->params.gpudirect || c->payload_alloc) {
		snprintf(why, why_size, "GPU payload memory is for one cuda-gpudirect device, once");
		return -EINVAL;
	}
	if (c->region_count == REGIONS_MAX) {
		snprintf(why, why_size, "more than %u payload memory regions", REGIONS_MAX);
		return -ENOSPC;
	}
	CUDA_TRY(cudaSetDevice(c->params.device_idx), out);
	/* cudaMalloc aligns to 256 bytes at least, not to a GPU page: take one page more and align. */
	CUDA_TRY(cudaMalloc(&c->payload_alloc, rounded + GPU_PAGE_SIZE), out);
	c->payload_dev = (void *)(((uintptr_t)c->payload_alloc + GPU_PAGE_SIZE - 1) & ~((uintptr_t)GPU_PAGE_SIZE - 1));
	c->payload_len = rounded;
	rc = set_sync_memops(c->payload_alloc, why, why_size);
	if (rc)
		goto out;
	/* The kernel reads payloads where the NIC wrote them: the device address is the address. */
	c->regions[c->region_count++] = (struct region){
		.host_base = (uintptr_t)c->payload_dev,
		.dev_base = (uint64_t)(uintptr_t)c->payload_dev,
		.len = rounded,
	};
	*addr = c->payload_dev;
	*alloc_len = rounded;
	*page_size = GPU_PAGE_SIZE;
	*needs_flush = !c->rdma_writes_ordered;
	return 0;
out:
	return rc;
}

/* The runtime's current device is per host thread: an rx lcore calling in sets it once. */
static __thread int thread_device_idx = -1;

extern "C" int gpu_cuda_flush_rdma_writes(struct gpu_cuda *c)
{
	if (thread_device_idx != c->params.device_idx) {
		if (cudaSetDevice(c->params.device_idx) != cudaSuccess)
			return -EIO;
		thread_device_idx = c->params.device_idx;
	}
	/* Blocks until the NIC's writes completed so far are visible to the context that owns the
	 * memory, which is the one the persistent kernel runs in. */
	if (cudaDeviceFlushGPUDirectRDMAWrites(cudaFlushGPUDirectRDMAWritesTargetCurrentDevice,
					       cudaFlushGPUDirectRDMAWritesToOwner) != cudaSuccess)
		return -EIO;
	return 0;
}

/* Copy each model's weights to GPU memory and give the GPU a models table that points there. */
static int upload_models(struct gpu_cuda *c, const struct gpu_cuda_params *params, char *why, size_t why_size)
{
	struct krn_models table = *params->models;
	int rc = 0;

	for (uint32_t i = 0; i < table.count; i++) {
		struct krn_model *m = &table.models[i];
		size_t bytes = params->model_arena_floats[i] * sizeof(float);

		if (!params->model_arenas[i])
			continue;
		CUDA_TRY(cudaMalloc((void **)&c->arena_dev[i], bytes), out);
		CUDA_TRY(cudaMemcpy(c->arena_dev[i], params->model_arenas[i], bytes, cudaMemcpyHostToDevice), out);
		/* Binding is pointer arithmetic only: it works on the host with device addresses. */
		if (m->arch == KRN_ARCH_LLAMA)
			krn_llama_bind(&m->u.llama, c->arena_dev[i]);
		else if (m->arch == KRN_ARCH_RANKER)
			krn_ranker_bind(&m->u.ranker, c->arena_dev[i]);
	}
	CUDA_TRY(cudaMalloc((void **)&c->models_dev, sizeof(struct krn_models)), out);
	CUDA_TRY(cudaMemcpy(c->models_dev, &table, sizeof(table), cudaMemcpyHostToDevice), out);
out:
	return rc;
}

/* Per-block scratch in GPU memory, each with its slice of run state (the block's KV cache). */
static int init_scratch(struct gpu_cuda *c, const struct gpu_cuda_params *params, char *why, size_t why_size)
{
	size_t count = params->block_count;
	struct krn_scratch *host = (struct krn_scratch *)calloc(count, sizeof(*host));
	int rc = 0;

	if (!host) {
		snprintf(why, why_size, "out of memory");
		return -ENOMEM;
	}
	if (params->model_state_floats > 0)
		CUDA_TRY(cudaMalloc((void **)&c->state_dev, count * params->model_state_floats * sizeof(float)), out);
	for (size_t b = 0; b < count; b++) {
		host[b].model_state = c->state_dev ? c->state_dev + b * params->model_state_floats : NULL;
		host[b].model_state_floats = params->model_state_floats;
	}
	CUDA_TRY(cudaMalloc((void **)&c->scratch_dev, count * sizeof(struct krn_scratch)), out);
	CUDA_TRY(cudaMemcpy(c->scratch_dev, host, count * sizeof(struct krn_scratch), cudaMemcpyHostToDevice), out);
out:
	free(host);
	return rc;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

extern "C" int gpu_cuda_open(const struct gpu_cuda_params *params, struct gpu_cuda **out,
			     struct zh_ring *host_view, char *why, size_t why_size)
{
	struct gpu_cuda *c;
	size_t tickets_size = 2 * sizeof(struct zh_ring_ticket);
	size_t slots_size = (size_t)params->slot_count * sizeof(struct zh_slot);
	int rc = 0;

	if (params->block_count == 0 || params->block_count > BLOCKS_MAX || params->thread_count == 0 ||
	    params->thread_count > 1024) {
		snprintf(why, why_size, "blocks must be 1..%u and threads 1..1024", BLOCKS_MAX);
		return -EINVAL;
	}
	c = (struct gpu_cuda *)calloc(1, sizeof(*c));
	if (!c) {
		snprintf(why, why_size, "out of memory");
		return -ENOMEM;
	}
	c->params = *params;
	c->heartbeat_seen = (uint64_t *)calloc(params->block_count, sizeof(uint64_t));
	c->heartbeat_change_ns = (uint64_t *)calloc(params->block_count, sizeof(uint64_t));
	if (!c->heartbeat_seen || !c->heartbeat_change_ns) {
		snprintf(why, why_size, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	CUDA_TRY(cudaSetDevice(params->device_idx), fail);
	if (params->gpudirect) {
		rc = check_gpudirect(c, why, why_size);
		if (rc)
			goto fail;
	}
	CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), fail);

	/* The ring in pinned host memory mapped into the GPU: the rx lcore writes descriptors and
	 * READY with plain stores; the GPU reads them over PCIe, which snoops the CPU caches. */
	c->ring_size = tickets_size + slots_size + (size_t)params->slot_count * params->ans_stride_bytes;
	CUDA_TRY(cudaHostAlloc((void **)&c->ring_host, c->ring_size, cudaHostAllocMapped | cudaHostAllocPortable), fail);
	memset(c->ring_host, 0, c->ring_size);
	CUDA_TRY(cudaHostGetDevicePointer((void **)&c->ring_dev, c->ring_host, 0), fail);

	CUDA_TRY(cudaMalloc((void **)&c->cons_ticket_dev, sizeof(struct zh_ring_ticket)), fail);
	CUDA_TRY(cudaMemset(c->cons_ticket_dev, 0, sizeof(struct zh_ring_ticket)), fail);
	rc = upload_models(c, params, why, why_size);
	if (rc)
		goto fail;
	rc = init_scratch(c, params, why, why_size);
	if (rc)
		goto fail;

	CUDA_TRY(cudaHostAlloc((void **)&c->stop_host, sizeof(uint32_t), cudaHostAllocMapped | cudaHostAllocPortable), fail);
	CUDA_TRY(cudaHostGetDevicePointer((void **)&c->stop_dev, c->stop_host, 0), fail);
	CUDA_TRY(cudaHostAlloc((void **)&c->heartbeat_host, params->block_count * sizeof(uint64_t),
			       cudaHostAllocMapped | cudaHostAllocPortable), fail);
	memset(c->heartbeat_host, 0, params->block_count * sizeof(uint64_t));
	CUDA_TRY(cudaHostGetDevicePointer((void **)&c->heartbeat_dev, c->heartbeat_host, 0), fail);
	*c->stop_host = 0;
	CUDA_TRY(cudaHostAlloc((void **)&c->clk_host, sizeof(*c->clk_host), cudaHostAllocMapped | cudaHostAllocPortable), fail);
	memset(c->clk_host, 0, sizeof(*c->clk_host));
	CUDA_TRY(cudaHostGetDevicePointer((void **)&c->clk_dev, c->clk_host, 0), fail);
	zh_clock_map_identity(&c->clock, params->tsc_hz ? params->tsc_hz : zh_clock_measure_tsc_hz(10000000ull));
	/* Not calibrated yet: an ns clock with no pair. */
	c->clock.kind = ZH_CLOCK_NS;
	c->clock.rate_measured = 0;

	/* Both views of one ring: the producer ticket is the host's (the GPU never produces), the
	 * consumer ticket lives in GPU memory where the blocks contend for it. */
	host_view->prod_ticket = (struct zh_ring_ticket *)c->ring_host;
	host_view->cons_ticket = (struct zh_ring_ticket *)c->ring_host + 1; /* unused by the host */
	host_view->slots = (struct zh_slot *)(c->ring_host + tickets_size);
	host_view->ans_base = c->ring_host + tickets_size + slots_size;
	host_view->slot_count = params->slot_count;
	host_view->slot_mask = params->slot_count - 1;
	host_view->lap_shift = (uint32_t)__builtin_ctz(params->slot_count);
	host_view->ans_stride_bytes = params->ans_stride_bytes;
	host_view->ans_headroom_bytes = params->ans_stride_bytes >= ZH_ANS_HEADROOM_BYTES + ZH_ANS_MAX_BYTES ?
					ZH_ANS_HEADROOM_BYTES : 0;
	c->dev_view = *host_view;
	c->dev_view.prod_ticket = (struct zh_ring_ticket *)c->ring_dev;
	c->dev_view.cons_ticket = c->cons_ticket_dev;
	c->dev_view.slots = (struct zh_slot *)(c->ring_dev + tickets_size);
	c->dev_view.ans_base = c->ring_dev + tickets_size + slots_size;
	*out = c;
	return 0;
fail:
	gpu_cuda_close(c);
	return rc ? rc : -EIO;
}

/*
 * One bracket through the mailbox: TSC, a new request, the device's answer, TSC. The poll is bounded
 * in time and in count, so a stalled kernel costs the caller CLOCK_ANSWER_TIMEOUT_NS at most.
 */
static int clock_sample(void *arg, uint64_t *t0_tsc, uint64_t *dclk, uint64_t *t1_tsc)
{
	struct gpu_cuda *c = (struct gpu_cuda *)arg;
	struct krn_clk_mailbox *mb = c->clk_host;
	uint64_t seq = ++c->clk_seq;
	uint64_t deadline = now_ns() + CLOCK_ANSWER_TIMEOUT_NS;
	uint32_t polls = 0;

	*t0_tsc = zh_clock_tsc_fenced();
	/* Relaxed: the request carries no data; the device only needs to see the number change. */
	__atomic_store_n(&mb->req_seq, seq, __ATOMIC_RELAXED);
	/* Acquire: pairs with the device's __threadfence_system() between ans_dclk and ans_seq. */
	while (__atomic_load_n(&mb->ans_seq, __ATOMIC_ACQUIRE) != seq) {
		if (++polls >= CLOCK_POLLS_MAX || ((polls & 255u) == 0 && now_ns() > deadline))
			return -ETIMEDOUT;
	}
	*t1_tsc = zh_clock_tsc_fenced();
	*dclk = __atomic_load_n(&mb->ans_dclk, __ATOMIC_RELAXED);
	return 0;
}

/* Wait for the stream's work (the calibration kernel) to end, bounded: 0, or -ETIMEDOUT. */
static int stream_wait(struct gpu_cuda *c, uint32_t timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (cudaStreamQuery(c->stream) == cudaErrorNotReady) {
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/*
 * The first calibration, before the persistent kernel: the calibration kernel measures the step of
 * %globaltimer, then answers the brackets. A kernel that never says it is ready, or answers nothing,
 * leaves the map uncalibrated; only a launch error or a kernel that does not end is fatal.
 */
static int clock_initial(struct gpu_cuda *c, char *why, size_t why_size)
{
	struct krn_clk_mailbox *mb = c->clk_host;
	uint64_t deadline;
	int err, rc;

	__atomic_store_n(&mb->done, 0, __ATOMIC_RELAXED);
	err = krn_cuda_launch_clock(c->clk_dev, CLOCK_TRIES, CLOCK_KERNEL_TIMEOUT_NS, c->stream);
	if (err != cudaSuccess) {
		snprintf(why, why_size, "launch of the clock calibration kernel: %s (%d)",
			 cudaGetErrorString((cudaError_t)err), err);
		return -EIO;
	}
	/* The kernel's own timeout runs from its start; a first launch may wait for its module to load. */
	deadline = now_ns() + CLOCK_KERNEL_WAIT_MS * 1000000ull;
	/* Acquire: pairs with the kernel's fence before `done`; step and backwards are then there. */
	while (!__atomic_load_n(&mb->done, __ATOMIC_ACQUIRE) && now_ns() < deadline) {
		struct timespec ts = { 0, 10000 };
		nanosleep(&ts, NULL);
	}
	if (__atomic_load_n(&mb->done, __ATOMIC_ACQUIRE)) {
		c->clk_backwards = mb->backwards;
		rc = zh_clock_calibrate(clock_sample, c, CLOCK_TRIES, mb->step_ns, &c->clock);
		if (rc)
			fprintf(stderr, "gpu_cuda: device clock: the calibration kernel answered no bracket (%s)\n",
				strerror(-rc));
	} else {
		fprintf(stderr, "gpu_cuda: device clock: the calibration kernel did not start within %u ms\n",
			CLOCK_KERNEL_WAIT_MS);
	}
	if (stream_wait(c, CLOCK_KERNEL_WAIT_MS) != 0) {
		snprintf(why, why_size, "the clock calibration kernel did not end within %u ms", CLOCK_KERNEL_WAIT_MS);
		return -ETIMEDOUT;
	}
	err = (int)cudaGetLastError();
	if (err != cudaSuccess) {
		snprintf(why, why_size, "the clock calibration kernel: %s (%d)", cudaGetErrorString((cudaError_t)err), err);
		return -EIO;
	}
	return 0;
}

extern "C" int gpu_cuda_clock_refresh(struct gpu_cuda *c)
{
	if (!c->launched)
		return -ESRCH;
	return zh_clock_calibrate(clock_sample, c, CLOCK_TRIES, c->clock.step_ns, &c->clock);
}

extern "C" void gpu_cuda_clock_map(const struct gpu_cuda *c, struct zh_clock_map *out)
{
	*out = c->clock;
}

extern "C" uint64_t gpu_cuda_clock_backwards(const struct gpu_cuda *c)
{
	return c->clk_backwards;
}

extern "C" int gpu_cuda_start(struct gpu_cuda *c, char *why, size_t why_size)
{
	uint64_t t;
	int rc = 0;
	int err;

	CUDA_TRY(cudaSetDevice(c->params.device_idx), out);
	rc = clock_initial(c, why, why_size);
	if (rc)
		return rc;
	t = now_ns();
	for (uint32_t i = 0; i < c->params.block_count; i++)
		c->heartbeat_change_ns[i] = t;
	*(volatile uint32_t *)c->stop_host = 0;
	err = krn_cuda_launch_loop(c->dev_view, c->models_dev, c->scratch_dev, c->stop_dev, c->heartbeat_dev,
				   c->clk_dev, c->params.block_count, c->params.thread_count, c->stream);
	if (err != cudaSuccess) {
		snprintf(why, why_size, "launch of the persistent kernel: %s (%d)",
			 cudaGetErrorString((cudaError_t)err), err);
		return -EIO;
	}
	c->launched = 1;
out:
	return rc;
}

extern "C" int gpu_cuda_stop(struct gpu_cuda *c, uint32_t timeout_ms)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	if (!c || !c->launched)
		return 0;
	/* A plain store to mapped host memory; the kernel's volatile load sees it over PCIe.
	 * The fence keeps it from lingering in a store buffer while we poll. */
	*(volatile uint32_t *)c->stop_host = 1;
	__sync_synchronize();
	/* Poll rather than synchronize: a stalled kernel must not hang the shutdown. */
	while (cudaStreamQuery(c->stream) == cudaErrorNotReady) {
		if (now_ns() > deadline)
			return -ETIMEDOUT;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	c->launched = 0;
	return 0;
}

extern "C" int gpu_cuda_close(struct gpu_cuda *c)
{
	if (!c)
		return 0;
	if (c->launched && gpu_cuda_stop(c, 1000) != 0) {
		/* The kernel did not stop: its memory may still be in use. Leave it to process exit. */
		fprintf(stderr, "zerohopd: CUDA kernel did not stop; leaving its memory mapped\n");
		return -EBUSY;
	}
	for (uint32_t i = 0; i < c->region_count; i++)
		if (c->regions[i].host_base != (uintptr_t)c->payload_dev)
			cudaHostUnregister((void *)c->regions[i].host_base);
	cudaFree(c->payload_alloc);
	if (c->ring_host)
		cudaFreeHost(c->ring_host);
	if (c->stop_host)
		cudaFreeHost(c->stop_host);
	if (c->heartbeat_host)
		cudaFreeHost(c->heartbeat_host);
	if (c->clk_host)
		cudaFreeHost(c->clk_host);
	cudaFree(c->cons_ticket_dev);
	cudaFree(c->models_dev);
	cudaFree(c->scratch_dev);
	cudaFree(c->state_dev);
	for (uint32_t i = 0; i < KRN_MODELS_MAX; i++)
		cudaFree(c->arena_dev[i]);
	if (c->stream)
		cudaStreamDestroy(c->stream);
	free(c->heartbeat_seen);
	free(c->heartbeat_change_ns);
	free(c);
	return 0;
}

extern "C" int gpu_cuda_register_host(struct gpu_cuda *c, void *addr, size_t len, char *why, size_t why_size)
{
	struct region *r;
	int rc = 0;

	if (c->region_count == REGIONS_MAX) {
		snprintf(why, why_size, "more than %u payload memory regions", REGIONS_MAX);
		return -ENOSPC;
	}
	r = &c->regions[c->region_count];
	CUDA_TRY(cudaHostRegister(addr, len, cudaHostRegisterMapped | cudaHostRegisterPortable), out);
	void *dev;
	CUDA_TRY(cudaHostGetDevicePointer(&dev, addr, 0), unregister);
	r->host_base = (uintptr_t)addr;
	r->dev_base = (uint64_t)(uintptr_t)dev;
	r->len = len;
	c->region_count++;
	return 0;
unregister:
	cudaHostUnregister(addr);
out:
	return rc;
}

extern "C" uint64_t gpu_cuda_payload_addr(const struct gpu_cuda *c, const void *host_ptr)
{
	uintptr_t p = (uintptr_t)host_ptr;

	/* A handful of regions: a linear scan costs less than anything cleverer. */
	for (uint32_t i = 0; i < c->region_count; i++) {
		const struct region *r = &c->regions[i];
		if (p >= r->host_base && p - r->host_base < r->len)
			return r->dev_base + (p - r->host_base);
	}
	return 0;
}

extern "C" uint64_t gpu_cuda_heartbeat_age_ms(struct gpu_cuda *c, uint64_t now)
{
	uint64_t oldest = 0;

	for (uint32_t i = 0; i < c->params.block_count; i++) {
		uint64_t beat = *(volatile uint64_t *)&c->heartbeat_host[i];

		if (beat != c->heartbeat_seen[i]) {
			c->heartbeat_seen[i] = beat;
			c->heartbeat_change_ns[i] = now;
		}
		if (now - c->heartbeat_change_ns[i] > oldest)
			oldest = now - c->heartbeat_change_ns[i];
	}
	return oldest / 1000000ull;
}

extern "C" void gpu_cuda_get_internals(const struct gpu_cuda *c, struct gpu_cuda_internals *out)
{
	out->dev_view = c->dev_view;
	out->models_dev = c->models_dev;
	out->scratch_dev = c->scratch_dev;
	out->stream = c->stream;
}
