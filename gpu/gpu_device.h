/* SPDX-License-Identifier: MIT */
/*
 * gpu_device.h: the device runtimes behind one interface. A device owns the request ring and the
 * persistent loop that consumes it: worker threads running kernels/krn_serve on the `cpu` device, or a
 * persistent CUDA kernel on the `cuda-*` devices. The dataplane produces into the ring and reaps it.
 *
 * Life cycle: gpu_device_open (allocate everything) -> gpu_device_start (launch the loop) ->
 * gpu_device_stop (the loop exits; slots in flight are finished first) -> gpu_device_close.
 * All functions return 0 or -errno; on failure `why` holds a one-line reason for the operator.
 */
#ifndef GPU_DEVICE_H
#define GPU_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "zh_clock.h"
#include "zh_ring.h"
#include "krn_serve.h"

#define GPU_WORKERS_MAX 64u
#define GPU_WHY_SIZE 256u

enum gpu_kind {
	GPU_KIND_AUTO = 0,      /* CUDA if a driver and a GPU are there, else cpu */
	GPU_KIND_CPU,
	GPU_KIND_CUDA_HOST,
	GPU_KIND_CUDA_GPUDIRECT,
};

/* Where request payloads land (docs/ARCHITECTURE.md, "Memory placement"). */
enum gpu_payload_memory {
	GPU_PAYLOAD_PORT_POOL = 0, /* the port's own mbuf pool in hugepages, registered with the device */
	GPU_PAYLOAD_EXTERNAL,      /* memory the device allocates and the NIC writes into: GPU memory on
				    * cuda-gpudirect (always); on the cpu device, host memory set apart the
				    * same way, so that the NIC-side path of cuda-gpudirect runs anywhere */
};

enum gpu_idle {
	GPU_IDLE_POLL = 0, /* busy polling: the production default */
	GPU_IDLE_BACKOFF,  /* short sleeps when idle, for shared dev machines and tests */
};

struct gpu_config {
	enum gpu_kind kind;
	uint32_t cuda_block_count;           /* persistent kernel blocks (CUDA kinds) */
	uint32_t stall_ms;                   /* heartbeat age at which the device counts as stalled */
	enum gpu_idle idle;
	enum gpu_payload_memory payload_memory;  /* cpu and cuda-host; cuda-gpudirect is always external */
	uint32_t worker_count;               /* cpu device threads, 0..GPU_WORKERS_MAX (0: inline only) */
	int worker_cores[GPU_WORKERS_MAX];   /* core of each worker, -1 for unpinned */
	uint32_t ring_slot_count;            /* power of two, ZH_RING_SLOTS_MIN..ZH_RING_SLOTS_MAX */
	struct krn_models models;            /* what the loop serves, weights bound to host arenas */
	const float *model_arenas[KRN_MODELS_MAX];  /* each model's weight arena (NULL for echo) */
	uint64_t model_arena_floats[KRN_MODELS_MAX];
	uint64_t model_state_floats;         /* run state one consumer needs: the largest model's */
};

struct gpu_device;

int gpu_device_open(const struct gpu_config *cfg, struct gpu_device **out, char why[GPU_WHY_SIZE]);
int gpu_device_start(struct gpu_device *dev, char why[GPU_WHY_SIZE]);
void gpu_device_stop(struct gpu_device *dev);
void gpu_device_close(struct gpu_device *dev);

/* The host's view of the ring, valid from open to close. */
const struct zh_ring *gpu_device_ring(const struct gpu_device *dev);

/* The address the device uses for a request payload that the host sees at `host_ptr`; 0 if the
 * device cannot see that memory. */
uint64_t gpu_device_payload_addr(const struct gpu_device *dev, const void *host_ptr);

/* Make host memory that will hold request payloads (an mbuf pool's memory) visible to the device.
 * A no-op on the cpu device. */
int gpu_device_register_payload_memory(struct gpu_device *dev, void *addr, size_t len,
				       char why[GPU_WHY_SIZE]);

/*
 * External payload memory (GPU_PAYLOAD_EXTERNAL), for the port to build its payload mbufs on. The
 * device allocates it once, `len_bytes` rounded up to whole pages, at start-up; it lives until
 * gpu_device_close, so the port must be closed first.
 */
struct gpu_payload_region {
	void *addr;              /* what DPDK and the NIC use: a GPU virtual address on CUDA */
	size_t len_bytes;        /* a multiple of page_size_bytes */
	size_t page_size_bytes;  /* registration page: 64 KiB in GPU memory, the host page size otherwise */
	int cpu_readable;        /* 0: GPU memory, which the rx lcore must never read (header split) */
	int needs_flush;         /* 1: NIC writes must be flushed before the device may read them */
	const char *where;       /* "gpu" or "host", for start-up lines */
};

/* 1 when payloads live in external memory (gpu_device_payload_region), 0 when in the port's pool. */
int gpu_device_payload_external(const struct gpu_device *dev);
int gpu_device_payload_region(struct gpu_device *dev, size_t len_bytes, struct gpu_payload_region *out,
			      char why[GPU_WHY_SIZE]);
/*
 * Make the NIC's completed writes into external payload memory visible to the device before the
 * requests in them are published (GPUDirect RDMA on a GPU that does not order them by itself: the
 * NIC's completion says the data left the NIC, not that the GPU will see it). Called by an rx lcore
 * once per burst when the region's needs_flush is set. Returns 0 or -EIO.
 */
int gpu_device_flush_payload_writes(struct gpu_device *dev);

/*
 * Watchdog, called periodically by the control core: reads every worker's (or block's) heartbeat and
 * returns the age in ms of the stalest. Past cfg.stall_ms the device is marked stalled (and unstalled
 * when heartbeats resume); *changed is set when that verdict flips.
 */
uint64_t gpu_device_watchdog(struct gpu_device *dev, int *changed);
/* 1 while the device loop is alive; read once per burst by rx lcores. */
int gpu_device_healthy(const struct gpu_device *dev);

/*
 * The device clock (claim_dclk, done_dclk) and its map to the host TSC (kernels/zh_clock.h). The cpu
 * device's clock is the TSC: kind ZH_CLOCK_TSC, the identity (the offset between cores is the probe's
 * to bound). A CUDA device's is %globaltimer: kind ZH_CLOCK_NS, calibrated at start and refreshed by
 * gpu_device_clock_refresh, which the control core calls every tick (it calibrates at most every
 * GPU_CLOCK_REFRESH_MS). Returns 0; -EAGAIN when the map has no pair yet (out still says the kind).
 */
#define GPU_CLOCK_REFRESH_MS 1000u
int gpu_device_clock_map(const struct gpu_device *dev, struct zh_clock_map *out);
/* 0, or -errno of a calibration that failed (the map is then marked stale). */
int gpu_device_clock_refresh(struct gpu_device *dev, uint64_t now_ns);

/* "cpu", "cuda-host" or "cuda-gpudirect": what `auto` resolved to. */
const char *gpu_device_kind_name(enum gpu_kind kind);
enum gpu_kind gpu_device_kind(const struct gpu_device *dev);
int gpu_kind_parse(const char *text, enum gpu_kind *out);

/* Requests the loop served since start, summed over workers (read at any time, approximate). */
uint64_t gpu_device_served_count(const struct gpu_device *dev);

/*
 * Inline mode: a cpu device with no workers. Then each rx lcore runs the device loop itself between
 * bursts (krn_loop_step with the models below and scratch of its own): run to completion, no hop
 * between cores. The lowest-latency CPU configuration, and the one that fits a 2-core machine.
 */
int gpu_device_is_inline(const struct gpu_device *dev);

/*
 * The models table, published and reclaimed by quiescent states (docs/MGMT.md, "Hot swap").
 *
 * Every consumer (a cpu worker, an inline rx lcore) calls gpu_device_enter before each request it may
 * claim: that announces it holds nothing from earlier tables and returns the table to serve with.
 * gpu_device_publish copies a new table in and retires the old one; gpu_device_reclaim, called
 * periodically by the control core, hands back each retired table that no consumer can still be using.
 */
#define GPU_CONSUMERS_MAX (GPU_WORKERS_MAX + 64u)

/* Register an inline consumer (an rx lcore in inline mode); returns its index, or -ENOSPC. */
int gpu_device_add_consumer(struct gpu_device *dev);
const struct krn_models *gpu_device_enter(struct gpu_device *dev, uint32_t consumer_idx);
/* The table now published (control core only). */
const struct krn_models *gpu_device_models(const struct gpu_device *dev);
/* Publish `table` (copied). Refused with -ENOSPC when a model needs more run state per consumer than
 * was allocated at start-up (state_floats), -ENOTSUP on CUDA devices, -EBUSY when GPU_RETIRED_MAX
 * tables still wait for reclamation. */
#define GPU_RETIRED_MAX 16u
int gpu_device_publish(struct gpu_device *dev, const struct krn_models *table, uint64_t state_floats,
		       char why[GPU_WHY_SIZE]);
/* Hand back retired tables no consumer can still use; returns how many. */
uint32_t gpu_device_reclaim(struct gpu_device *dev, void (*release)(void *arg, const struct krn_models *table),
			    void *arg);
/* Floats of model run state each consumer (a worker, an inline lcore) must bring. */
uint64_t gpu_device_model_state_floats(const struct gpu_device *dev);

#endif /* GPU_DEVICE_H */
