/* SPDX-License-Identifier: MIT */
/*
 * gpu_device.c: device selection and the `cpu` device.
 *
 * The cpu device is N worker threads, each pinned to a core, each running the same persistent loop
 * body a CUDA block runs (krn_loop_step). Everything is allocated in gpu_device_open; the workers
 * allocate nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "gpu_device.h"
#include "gpu_cuda.h"
#include "krn_math.h"

/* Empty polls before a backing-off worker starts to sleep, and its longest sleep. */
#define BACKOFF_SPIN_POLLS 4096u
#define BACKOFF_SLEEP_US_MAX 200u
#define STALL_MS_DEFAULT 1000u
#define CUDA_BLOCKS_DEFAULT 4u
#define CUDA_THREADS 32u
#define CUDA_STOP_TIMEOUT_MS 2000u
/* Test-only knob: a cpu worker stops beating and serving after this many requests, so the tests can
 * watch the watchdog turn a stalled device into `internal` answers. */
#define TEST_STALL_ENV "ZH_TEST_STALL_AFTER_REQUESTS"
/* Test-only knob: every request's compute takes this many more microseconds (cpu workers). */
#define TEST_DELAY_ENV "ZH_TEST_COMPUTE_DELAY_US"
/* Test-only knob: cpu workers stamp claim/done with CLOCK_MONOTONIC ns instead of the TSC, and the
 * device reports a calibrated (ns, TSC) map, so that the CPU tests cover what a CUDA device's
 * %globaltimer stamps go through (tests/integration/test_probe.py). */
#define TEST_DCLK_NS_ENV "ZH_TEST_DCLK_NS"
/* Brackets per calibration of the knob's clock; the tightest wins. */
#define TEST_CLOCK_TRIES 64u
#define TSC_HZ_WINDOW_NS 10000000ull

struct gpu_worker {
	pthread_t thread;
	struct gpu_device *dev;
	int core;                 /* -1: not pinned */
	int started;
	uint64_t served_count;    /* written by this worker only, read relaxed by others */
	uint32_t consumer_idx;    /* its quiescent-state slot */
	uint64_t heartbeat;       /* bumped every poll by this worker, read relaxed by the watchdog */
	uint64_t heartbeat_seen;  /* watchdog only: last value seen */
	uint64_t heartbeat_change_ns; /* watchdog only: when it last changed */
	struct krn_scratch scratch;
} ZH_ALIGNED(ZH_CACHE_LINE_SIZE);

struct gpu_device {
	enum gpu_kind kind;
	enum gpu_idle idle;
	struct gpu_cuda *cuda;            /* CUDA kinds only */
	uint32_t stall_ms;
	int healthy;                      /* written by the watchdog, read relaxed by rx lcores */
	uint64_t test_stall_after;        /* 0, or the test knob's value */
	struct zh_ring ring;              /* host view */
	/* The models tables: `tables` holds the published one and those retired but not reclaimed. */
	struct krn_models *current;       /* published (release), read (acquire) by consumers */
	uint64_t epoch;                   /* bumped (release) after each publish */
	struct krn_models *retired[GPU_RETIRED_MAX];
	uint64_t retired_epoch[GPU_RETIRED_MAX]; /* safe once every consumer has seen this epoch */
	uint32_t retired_count;
	uint32_t consumer_count;
	struct {
		uint64_t seen_epoch;      /* the epoch the consumer saw at its last quiescent point */
		uint8_t pad[ZH_CACHE_LINE_SIZE - sizeof(uint64_t)];
	} ZH_ALIGNED(ZH_CACHE_LINE_SIZE) consumers[GPU_CONSUMERS_MAX];
	uint64_t stop;                    /* set to 1 (release) to end the loop */
	uint32_t worker_count;
	struct gpu_worker *workers;       /* [worker_count] */
	uint64_t model_state_floats;      /* per consumer */
	void *ring_mem;                   /* tickets, slots and answers in one allocation */
	enum gpu_payload_memory payload_memory;
	struct gpu_payload_region payload; /* external payload memory once allocated (addr != NULL) */
	void *payload_host_map;           /* host external memory: the mapping to unmap at close */
	uint64_t tsc_hz;                  /* measured at open against CLOCK_MONOTONIC_RAW */
	int test_dclk_ns;                 /* the ZH_TEST_DCLK_NS knob is on */
	struct zh_clock_map clock;        /* cpu device: identity, or the knob's calibrated map */
	uint64_t clock_refreshed_ns;      /* control core only */
};

const char *gpu_device_kind_name(enum gpu_kind kind)
{
	switch (kind) {
	case GPU_KIND_AUTO: return "auto";
	case GPU_KIND_CPU: return "cpu";
	case GPU_KIND_CUDA_HOST: return "cuda-host";
	case GPU_KIND_CUDA_GPUDIRECT: return "cuda-gpudirect";
	}
	return "?";
}

int gpu_kind_parse(const char *text, enum gpu_kind *out)
{
	static const enum gpu_kind kinds[] = { GPU_KIND_AUTO, GPU_KIND_CPU, GPU_KIND_CUDA_HOST,
					       GPU_KIND_CUDA_GPUDIRECT };

	for (size_t i = 0; i < ZH_ARRAY_SIZE(kinds); i++) {
		if (strcmp(text, gpu_device_kind_name(kinds[i])) == 0) {
			*out = kinds[i];
			return 0;
		}
	}
	return -EINVAL;
}

enum gpu_kind gpu_device_kind(const struct gpu_device *dev)
{
	return dev->kind;
}

const struct zh_ring *gpu_device_ring(const struct gpu_device *dev)
{
	return &dev->ring;
}

uint64_t gpu_device_payload_addr(const struct gpu_device *dev, const void *host_ptr)
{
	if (dev->cuda)
		return gpu_cuda_payload_addr(dev->cuda, host_ptr);
	return (uint64_t)(uintptr_t)host_ptr; /* the cpu device reads host memory where it lies */
}

int gpu_device_payload_external(const struct gpu_device *dev)
{
	return dev->payload_memory == GPU_PAYLOAD_EXTERNAL;
}

/* Host external memory: whole pages of its own, populated now so the fast path never faults. */
static int map_host_payload(struct gpu_device *dev, size_t len_bytes, char why[GPU_WHY_SIZE])
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t rounded = (len_bytes + page - 1) & ~(page - 1);
	void *p = mmap(NULL, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		snprintf(why, GPU_WHY_SIZE, "mapping %zu bytes of payload memory: %s", rounded, strerror(errno));
		return -ENOMEM;
	}
	if (dev->cuda) {
		int rc = gpu_cuda_register_host(dev->cuda, p, rounded, why, GPU_WHY_SIZE);

		if (rc) {
			munmap(p, rounded);
			return rc;
		}
	}
	dev->payload_host_map = p;
	dev->payload = (struct gpu_payload_region){
		.addr = p,
		.len_bytes = rounded,
		.page_size_bytes = page,
		.cpu_readable = 1,
		.needs_flush = 0,
		.where = "host",
	};
	return 0;
}

int gpu_device_payload_region(struct gpu_device *dev, size_t len_bytes, struct gpu_payload_region *out,
			      char why[GPU_WHY_SIZE])
{
	int rc;

	if (dev->payload_memory != GPU_PAYLOAD_EXTERNAL) {
		snprintf(why, GPU_WHY_SIZE, "the %s device takes payloads in the port's pool", gpu_device_kind_name(dev->kind));
		return -EINVAL;
	}
	if (dev->payload.addr) {
		if (len_bytes > dev->payload.len_bytes) {
			snprintf(why, GPU_WHY_SIZE, "payload memory of %zu bytes is already set, %zu asked",
				 dev->payload.len_bytes, len_bytes);
			return -ENOSPC;
		}
		*out = dev->payload;
		return 0;
	}
	if (len_bytes == 0) {
		snprintf(why, GPU_WHY_SIZE, "no payload memory asked for");
		return -EINVAL;
	}
	if (dev->kind == GPU_KIND_CUDA_GPUDIRECT) {
		char cuda_why[GPU_WHY_SIZE / 2];
		void *addr = NULL;
		size_t len = 0, page = 0;
		int needs_flush = 0;

		rc = gpu_cuda_alloc_payload(dev->cuda, len_bytes, &addr, &len, &page, &needs_flush, cuda_why,
					    sizeof(cuda_why));
		if (rc) {
			snprintf(why, GPU_WHY_SIZE, "GPU payload memory: %s", cuda_why);
			return rc;
		}
		dev->payload = (struct gpu_payload_region){
			.addr = addr,
			.len_bytes = len,
			.page_size_bytes = page,
			.cpu_readable = 0,
			.needs_flush = needs_flush,
			.where = "gpu",
		};
	} else {
		rc = map_host_payload(dev, len_bytes, why);
		if (rc)
			return rc;
	}
	*out = dev->payload;
	return 0;
}

int gpu_device_flush_payload_writes(struct gpu_device *dev)
{
	if (!dev->payload.needs_flush)
		return 0;
	return gpu_cuda_flush_rdma_writes(dev->cuda);
}

int gpu_device_register_payload_memory(struct gpu_device *dev, void *addr, size_t len, char why[GPU_WHY_SIZE])
{
	if (!dev->cuda)
		return 0;
	return gpu_cuda_register_host(dev->cuda, addr, len, why, GPU_WHY_SIZE);
}

int gpu_device_healthy(const struct gpu_device *dev)
{
	return __atomic_load_n(&dev->healthy, __ATOMIC_RELAXED);
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t workers_heartbeat_age_ms(struct gpu_device *dev, uint64_t now)
{
	uint64_t oldest = 0;

	for (uint32_t i = 0; i < dev->worker_count; i++) {
		struct gpu_worker *w = &dev->workers[i];
		uint64_t beat = __atomic_load_n(&w->heartbeat, __ATOMIC_RELAXED);

		if (beat != w->heartbeat_seen) {
			w->heartbeat_seen = beat;
			w->heartbeat_change_ns = now;
		}
		if (now - w->heartbeat_change_ns > oldest)
			oldest = now - w->heartbeat_change_ns;
	}
	return oldest / 1000000ull;
}

uint64_t gpu_device_watchdog(struct gpu_device *dev, int *changed)
{
	uint64_t now = monotonic_ns();
	uint64_t age_ms = dev->cuda ? gpu_cuda_heartbeat_age_ms(dev->cuda, now) : workers_heartbeat_age_ms(dev, now);
	int healthy = age_ms < dev->stall_ms;

	*changed = healthy != dev->healthy;
	if (*changed)
		__atomic_store_n(&dev->healthy, healthy, __ATOMIC_RELAXED);
	return age_ms;
}

uint64_t gpu_device_served_count(const struct gpu_device *dev)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < dev->worker_count; i++)
		sum += __atomic_load_n(&dev->workers[i].served_count, __ATOMIC_RELAXED);
	return sum;
}

int gpu_device_is_inline(const struct gpu_device *dev)
{
	return dev->kind == GPU_KIND_CPU && dev->worker_count == 0;
}

const struct krn_models *gpu_device_models(const struct gpu_device *dev)
{
	return dev->current;
}

int gpu_device_add_consumer(struct gpu_device *dev)
{
	if (dev->consumer_count == GPU_CONSUMERS_MAX)
		return -ENOSPC;
	dev->consumers[dev->consumer_count].seen_epoch = __atomic_load_n(&dev->epoch, __ATOMIC_ACQUIRE);
	return (int)dev->consumer_count++;
}

const struct krn_models *gpu_device_enter(struct gpu_device *dev, uint32_t consumer_idx)
{
	/* Acquire the epoch, then the table: a consumer that has seen epoch E also sees the table
	 * published before E was stored, so announcing E means it holds no table retired by E. */
	uint64_t e = __atomic_load_n(&dev->epoch, __ATOMIC_ACQUIRE);

	/* Release: the announcement comes after everything this consumer did with the old table. */
	__atomic_store_n(&dev->consumers[consumer_idx].seen_epoch, e, __ATOMIC_RELEASE);
	return __atomic_load_n(&dev->current, __ATOMIC_ACQUIRE);
}

int gpu_device_publish(struct gpu_device *dev, const struct krn_models *table, uint64_t state_floats,
		       char why[GPU_WHY_SIZE])
{
	struct krn_models *next;

	if (dev->cuda) {
		snprintf(why, GPU_WHY_SIZE, "hot swap on CUDA devices is not built yet: restart zerohopd");
		return -ENOTSUP;
	}
	if (state_floats > dev->model_state_floats) {
		snprintf(why, GPU_WHY_SIZE, "the models need %" PRIu64 " floats of run state per consumer; %" PRIu64
			 " were allocated at start-up (raise --run-state-mib)", state_floats, dev->model_state_floats);
		return -ENOSPC;
	}
	if (table->count == 0 || table->count > KRN_MODELS_MAX || table->default_idx >= table->count) {
		snprintf(why, GPU_WHY_SIZE, "a table of 1..%u models with a valid default", KRN_MODELS_MAX);
		return -EINVAL;
	}
	if (dev->retired_count == GPU_RETIRED_MAX) {
		snprintf(why, GPU_WHY_SIZE, "%u earlier tables are still in use; try again", GPU_RETIRED_MAX);
		return -EBUSY;
	}
	next = malloc(sizeof(*next));
	if (!next) {
		snprintf(why, GPU_WHY_SIZE, "out of memory");
		return -ENOMEM;
	}
	*next = *table;
	struct krn_models *old = dev->current;
	/* Release: the table's contents before its pointer. */
	__atomic_store_n(&dev->current, next, __ATOMIC_RELEASE);
	/* Release: the new pointer before the new epoch (see gpu_device_enter). */
	uint64_t e = __atomic_add_fetch(&dev->epoch, 1, __ATOMIC_ACQ_REL);
	dev->retired[dev->retired_count] = old;
	dev->retired_epoch[dev->retired_count] = e;
	dev->retired_count++;
	return 0;
}

uint32_t gpu_device_reclaim(struct gpu_device *dev, void (*release)(void *arg, const struct krn_models *table),
			    void *arg)
{
	uint64_t oldest_seen = UINT64_MAX;
	uint32_t freed = 0;

	for (uint32_t i = 0; i < dev->consumer_count; i++) {
		uint64_t seen = __atomic_load_n(&dev->consumers[i].seen_epoch, __ATOMIC_ACQUIRE);

		if (seen < oldest_seen)
			oldest_seen = seen;
	}
	for (uint32_t i = 0; i < dev->retired_count;) {
		if (dev->retired_epoch[i] > oldest_seen) {
			i++;
			continue;
		}
		if (release)
			release(arg, dev->retired[i]);
		free(dev->retired[i]);
		dev->retired[i] = dev->retired[dev->retired_count - 1];
		dev->retired_epoch[i] = dev->retired_epoch[dev->retired_count - 1];
		dev->retired_count--;
		freed++;
	}
	return freed;
}

uint64_t gpu_device_model_state_floats(const struct gpu_device *dev)
{
	return dev->model_state_floats;
}

/* The knob's device clock: CLOCK_MONOTONIC, as the brackets below read it. */
static uint64_t test_dclk_now(void)
{
	return monotonic_ns();
}

/* One bracket around the knob's clock: the same (TSC, device clock, TSC) a CUDA device answers. */
static int test_clock_sample(void *arg, uint64_t *t0_tsc, uint64_t *dclk, uint64_t *t1_tsc)
{
	(void)arg;
	*t0_tsc = zh_clock_tsc_fenced();
	*dclk = monotonic_ns();
	*t1_tsc = zh_clock_tsc_fenced();
	return 0;
}

/* The smallest step of CLOCK_MONOTONIC between consecutive distinct readings, over 64 changes. */
static uint64_t monotonic_step_ns(void)
{
	uint64_t prev = monotonic_ns(), step = 0;
	uint32_t changes = 0;

	for (uint32_t i = 0; i < 1000000u && changes < 64u; i++) {
		uint64_t t = monotonic_ns();

		if (t > prev && (step == 0 || t - prev < step))
			step = t - prev;
		changes += t != prev;
		prev = t;
	}
	return step;
}

static int test_clock_calibrate(struct gpu_device *dev)
{
	return zh_clock_calibrate(test_clock_sample, NULL, TEST_CLOCK_TRIES, dev->clock.step_ns ? dev->clock.step_ns :
				  monotonic_step_ns(), &dev->clock);
}

int gpu_device_clock_map(const struct gpu_device *dev, struct zh_clock_map *out)
{
	if (dev->cuda)
		gpu_cuda_clock_map(dev->cuda, out);
	else
		*out = dev->clock;
	return zh_clock_map_usable(out) ? 0 : -EAGAIN;
}

int gpu_device_clock_refresh(struct gpu_device *dev, uint64_t now_ns)
{
	int rc = 0;

	if (now_ns - dev->clock_refreshed_ns < GPU_CLOCK_REFRESH_MS * 1000000ull)
		return 0;
	dev->clock_refreshed_ns = now_ns;
	if (dev->cuda)
		rc = gpu_cuda_clock_refresh(dev->cuda);
	else if (dev->test_dclk_ns)
		rc = test_clock_calibrate(dev);
	return rc;
}

static int is_power_of_two(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Lay out tickets, slots and answer buffers in one cache-aligned, zeroed block. A zeroed slot
 * word is lap 0, FREE: the state of every slot before the first ticket. */
static int ring_alloc(struct gpu_device *dev, uint32_t slot_count)
{
	uint32_t ans_stride = (ZH_ANS_HEADROOM_BYTES + ZH_ANS_MAX_BYTES + ZH_CACHE_LINE_SIZE - 1) &
			      ~(ZH_CACHE_LINE_SIZE - 1u);
	size_t tickets_size = 2 * sizeof(struct zh_ring_ticket);
	size_t slots_size = (size_t)slot_count * sizeof(struct zh_slot);
	size_t total = tickets_size + slots_size + (size_t)slot_count * ans_stride;
	uint8_t *mem = aligned_alloc(ZH_CACHE_LINE_SIZE, total);

	if (!mem)
		return -ENOMEM;
	memset(mem, 0, total);
	dev->ring_mem = mem;
	dev->ring.prod_ticket = (struct zh_ring_ticket *)mem;
	dev->ring.cons_ticket = (struct zh_ring_ticket *)mem + 1;
	dev->ring.slots = (struct zh_slot *)(mem + tickets_size);
	dev->ring.ans_base = mem + tickets_size + slots_size;
	dev->ring.slot_count = slot_count;
	dev->ring.slot_mask = slot_count - 1;
	dev->ring.lap_shift = (uint32_t)__builtin_ctz(slot_count);
	dev->ring.ans_stride_bytes = ans_stride;
	dev->ring.ans_headroom_bytes = ZH_ANS_HEADROOM_BYTES;
	return 0;
}

/* Resolve `auto`, and refuse a CUDA kind this build or machine cannot run, with the reason. */
static int resolve_kind(enum gpu_kind asked, enum gpu_kind *out, char why[GPU_WHY_SIZE])
{
	char cuda_why[GPU_WHY_SIZE / 2];
	int rc;

	if (asked == GPU_KIND_CPU) {
		*out = GPU_KIND_CPU;
		return 0;
	}
	rc = gpu_cuda_probe(cuda_why, sizeof(cuda_why));
	if (asked == GPU_KIND_AUTO) {
		*out = rc > 0 ? GPU_KIND_CUDA_HOST : GPU_KIND_CPU;
		snprintf(why, GPU_WHY_SIZE, "%s: using the %s device", cuda_why, gpu_device_kind_name(*out));
		return 0;
	}
	if (rc <= 0) {
		snprintf(why, GPU_WHY_SIZE, "%s cannot run: %s", gpu_device_kind_name(asked), cuda_why);
		return rc < 0 ? rc : -ENODEV;
	}
	if (asked == GPU_KIND_CUDA_GPUDIRECT) {
		/* The NIC writes into GPU memory through its RDMA driver (mlx5's, through rdma-core): without
		 * an RDMA device there is no GPUDirect path, whatever the GPU can do. */
		int devices = 0;
		struct ibv_device **list = ibv_get_device_list(&devices);

		if (list)
			ibv_free_device_list(list);
		if (devices <= 0) {
			snprintf(why, GPU_WHY_SIZE, "cuda-gpudirect cannot run: rdma-core sees no RDMA device (a "
				 "GPUDirect-RDMA NIC such as ConnectX-6 Dx/7 is needed; docs/HARDWARE.md)");
			return -ENODEV;
		}
	}
	*out = asked;
	return 0;
}

static int cuda_open(struct gpu_device *dev, const struct gpu_config *cfg, char why[GPU_WHY_SIZE])
{
	uint32_t ans_stride = (ZH_ANS_HEADROOM_BYTES + ZH_ANS_MAX_BYTES + ZH_CACHE_LINE_SIZE - 1) &
			      ~(ZH_CACHE_LINE_SIZE - 1u);
	struct gpu_cuda_params params = {
		.gpudirect = dev->kind == GPU_KIND_CUDA_GPUDIRECT,
		.device_idx = 0,
		.slot_count = cfg->ring_slot_count,
		.ans_stride_bytes = ans_stride,
		.block_count = cfg->cuda_block_count ? cfg->cuda_block_count : CUDA_BLOCKS_DEFAULT,
		.thread_count = CUDA_THREADS,
		.models = &cfg->models,
		.model_state_floats = cfg->model_state_floats,
		.tsc_hz = dev->tsc_hz,
	};

	for (uint32_t i = 0; i < KRN_MODELS_MAX; i++) {
		params.model_arenas[i] = cfg->model_arenas[i];
		params.model_arena_floats[i] = cfg->model_arena_floats[i];
	}
	char cuda_why[GPU_WHY_SIZE / 2];
	int rc = gpu_cuda_open(&params, &dev->cuda, &dev->ring, cuda_why, sizeof(cuda_why));

	if (rc)
		snprintf(why, GPU_WHY_SIZE, "%s: %s", gpu_device_kind_name(dev->kind), cuda_why);
	return rc;
}

int gpu_device_open(const struct gpu_config *cfg, struct gpu_device **out, char why[GPU_WHY_SIZE])
{
	struct gpu_device *dev = NULL;
	int rc;

	why[0] = '\0';
	if (!is_power_of_two(cfg->ring_slot_count) || cfg->ring_slot_count < ZH_RING_SLOTS_MIN ||
	    cfg->ring_slot_count > ZH_RING_SLOTS_MAX) {
		snprintf(why, GPU_WHY_SIZE, "ring slots must be a power of two in %u..%u, not %u",
			 ZH_RING_SLOTS_MIN, ZH_RING_SLOTS_MAX, cfg->ring_slot_count);
		return -EINVAL;
	}
	if (cfg->worker_count > GPU_WORKERS_MAX) {
		snprintf(why, GPU_WHY_SIZE, "at most %u workers", GPU_WORKERS_MAX);
		return -EINVAL;
	}
	if (cfg->models.count == 0 || cfg->models.count > KRN_MODELS_MAX ||
	    cfg->models.default_idx >= cfg->models.count) {
		snprintf(why, GPU_WHY_SIZE, "between 1 and %u models, with a valid default", KRN_MODELS_MAX);
		return -EINVAL;
	}

	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = resolve_kind(cfg->kind, &dev->kind, why);
	if (rc)
		goto fail;
	dev->idle = cfg->idle;
	/* GPU memory is the point of cuda-gpudirect: its payloads are always external. */
	dev->payload_memory = dev->kind == GPU_KIND_CUDA_GPUDIRECT ? GPU_PAYLOAD_EXTERNAL : cfg->payload_memory;
	dev->current = malloc(sizeof(*dev->current));
	if (!dev->current) {
		rc = -ENOMEM;
		goto fail;
	}
	*dev->current = cfg->models;
	dev->model_state_floats = cfg->model_state_floats;
	/* Choose the matrix kernel now, before any worker thread races to. */
	(void)krn_matmul_impl();
	dev->stall_ms = cfg->stall_ms ? cfg->stall_ms : STALL_MS_DEFAULT;
	dev->healthy = 1;
	const char *stall = getenv(TEST_STALL_ENV);
	if (stall)
		dev->test_stall_after = strtoull(stall, NULL, 10);
	dev->tsc_hz = zh_clock_measure_tsc_hz(TSC_HZ_WINDOW_NS);
	zh_clock_map_identity(&dev->clock, dev->tsc_hz);
	const char *dclk_ns = getenv(TEST_DCLK_NS_ENV);
	dev->test_dclk_ns = dclk_ns && strcmp(dclk_ns, "1") == 0;
	if (dev->test_dclk_ns && (dev->kind != GPU_KIND_CPU || cfg->worker_count == 0)) {
		/* Inline consumers are the rx lcores' own scratch, which this knob does not reach. */
		snprintf(why, GPU_WHY_SIZE, "%s is for the cpu device with --workers >= 1", TEST_DCLK_NS_ENV);
		rc = -EINVAL;
		goto fail;
	}
	const char *delay = getenv(TEST_DELAY_ENV);
	uint64_t delay_dclk = 0;
	if (delay)
		delay_dclk = strtoull(delay, NULL, 10) * (dev->test_dclk_ns ? 1000u : dev->tsc_hz / 1000000u);
	if (dev->test_dclk_ns) {
		rc = test_clock_calibrate(dev);
		if (rc)
			goto fail;
		dev->clock_refreshed_ns = monotonic_ns();
	}
	if (dev->kind != GPU_KIND_CPU) {
		/* The CUDA kinds have no cpu workers: the persistent kernel is the device loop. */
		rc = cuda_open(dev, cfg, why);
		goto done;
	}
	dev->worker_count = cfg->worker_count;
	if (cfg->worker_count > 0) {
		dev->workers = aligned_alloc(ZH_CACHE_LINE_SIZE, cfg->worker_count * sizeof(*dev->workers));
		if (!dev->workers) {
			rc = -ENOMEM;
			goto fail;
		}
		memset(dev->workers, 0, cfg->worker_count * sizeof(*dev->workers));
	}
	for (uint32_t i = 0; i < cfg->worker_count; i++) {
		struct gpu_worker *w = &dev->workers[i];

		w->dev = dev;
		w->core = cfg->worker_cores[i];
		w->consumer_idx = (uint32_t)gpu_device_add_consumer(dev);
		w->scratch.test_delay_dclk = delay_dclk;
		w->scratch.test_dclk_now = dev->test_dclk_ns ? test_dclk_now : NULL;
		if (cfg->model_state_floats == 0)
			continue;
		/* Each worker serves one request at a time with a KV cache of its own. */
		w->scratch.model_state = aligned_alloc(ZH_CACHE_LINE_SIZE,
						       (cfg->model_state_floats * sizeof(float) + ZH_CACHE_LINE_SIZE - 1) &
							       ~(size_t)(ZH_CACHE_LINE_SIZE - 1));
		if (!w->scratch.model_state) {
			rc = -ENOMEM;
			goto fail;
		}
		w->scratch.model_state_floats = cfg->model_state_floats;
	}
	rc = ring_alloc(dev, cfg->ring_slot_count);
	if (rc)
		snprintf(why, GPU_WHY_SIZE, "cannot allocate a ring of %u slots", cfg->ring_slot_count);
done:
	if (rc)
		goto fail;
	*out = dev;
	return 0;
fail:
	if (rc == -ENOMEM && why[0] == '\0')
		snprintf(why, GPU_WHY_SIZE, "out of memory");
	gpu_device_close(dev);
	return rc;
}

static void idle_sleep(uint32_t sleep_us)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)sleep_us * 1000 };

	nanosleep(&ts, NULL);
}

static void *worker_main(void *arg)
{
	struct gpu_worker *w = arg;
	struct gpu_device *dev = w->dev;
	const struct zh_ring ring = dev->ring;
	uint32_t empty_polls = 0;
	uint32_t sleep_us = 0;

	/* Sleeps of a few microseconds are worthless with the default 50 us timer slack. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	while (!__atomic_load_n(&dev->stop, __ATOMIC_ACQUIRE)) {
		if (dev->test_stall_after && w->served_count >= dev->test_stall_after) {
			idle_sleep(1000); /* stalled on purpose: no heartbeat, no service */
			continue;
		}
		/* Relaxed: the watchdog only wants to see it move. */
		__atomic_store_n(&w->heartbeat, w->heartbeat + 1, __ATOMIC_RELAXED);
		if (krn_loop_step(&ring, gpu_device_enter(dev, w->consumer_idx), &w->scratch)) {
			/* Relaxed: a statistic, nobody orders anything by it. */
			__atomic_store_n(&w->served_count, w->served_count + 1, __ATOMIC_RELAXED);
			empty_polls = 0;
			sleep_us = 0;
			continue;
		}
		if (dev->idle == GPU_IDLE_POLL || ++empty_polls < BACKOFF_SPIN_POLLS) {
			zh_cpu_relax();
			continue;
		}
		sleep_us = sleep_us == 0 ? 1 : (sleep_us * 2 > BACKOFF_SLEEP_US_MAX ? BACKOFF_SLEEP_US_MAX : sleep_us * 2);
		idle_sleep(sleep_us);
	}
	return NULL;
}

int gpu_device_start(struct gpu_device *dev, char why[GPU_WHY_SIZE])
{
	uint64_t now = monotonic_ns();
	int rc = 0;

	if (dev->cuda)
		return gpu_cuda_start(dev->cuda, why, GPU_WHY_SIZE);
	__atomic_store_n(&dev->stop, 0, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < dev->worker_count; i++)
		dev->workers[i].heartbeat_change_ns = now;
	for (uint32_t i = 0; i < dev->worker_count; i++) {
		struct gpu_worker *w = &dev->workers[i];
		pthread_attr_t attr;
		char name[16];

		pthread_attr_init(&attr);
		if (w->core >= 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(w->core, &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		rc = -pthread_create(&w->thread, &attr, worker_main, w);
		pthread_attr_destroy(&attr);
		if (rc) {
			snprintf(why, GPU_WHY_SIZE, "worker %u on core %d: %s", i, w->core, strerror(-rc));
			gpu_device_stop(dev);
			return rc;
		}
		w->started = 1;
		snprintf(name, sizeof(name), "zh-cpu-%u", i & 0xffu);
		pthread_setname_np(w->thread, name);
	}
	return 0;
}

void gpu_device_stop(struct gpu_device *dev)
{
	if (!dev)
		return;
	if (dev->cuda && gpu_cuda_stop(dev->cuda, CUDA_STOP_TIMEOUT_MS) != 0)
		fprintf(stderr, "zerohopd: the CUDA device loop did not stop within %u ms\n", CUDA_STOP_TIMEOUT_MS);
	__atomic_store_n(&dev->stop, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < dev->worker_count; i++) {
		if (dev->workers[i].started) {
			pthread_join(dev->workers[i].thread, NULL);
			dev->workers[i].started = 0;
		}
	}
}

void gpu_device_close(struct gpu_device *dev)
{
	if (!dev)
		return;
	gpu_device_stop(dev);
	/* A CUDA kernel that would not stop may still read host payload memory registered with it. */
	int cuda_busy = gpu_cuda_close(dev->cuda) != 0;
	for (uint32_t i = 0; dev->workers && i < dev->worker_count; i++)
		free(dev->workers[i].scratch.model_state);
	free(dev->workers);
	for (uint32_t i = 0; i < dev->retired_count; i++)
		free(dev->retired[i]);
	free(dev->current);
	free(dev->ring_mem);
	if (dev->payload_host_map && !cuda_busy)
		munmap(dev->payload_host_map, dev->payload.len_bytes);
	free(dev);
}
