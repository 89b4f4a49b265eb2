/* SPDX-License-Identifier: MIT */
/*
 * test_ring.c: the request ring (kernels/zh_ring.h) one state transition at a time, under one producer
 * and one consumer on two cores, under two of each on an oversubscribed machine, and with
 * krn_loop_step (kernels/krn_serve.h) as the consumer of real msgpack requests.
 *
 * The ring lives in plain host memory here, laid out as the cpu device lays it out (tickets, slots,
 * answer buffers), so every test exercises the same code the appliance runs.
 *
 * Exit status: 0 all checks passed, 1 a check failed or a threaded case hung.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zh_ring.h"
#include "krn_msgpack.h"
#include "krn_request.h"
#include "krn_serve.h"

#define TEST_NAME "test_ring"

/* The cpu device rounds ZH_ANS_MAX_BYTES up to a cache line; 1472 already is one (23 x 64). */
#define ANS_STRIDE_BYTES 1472u
ZH_STATIC_ASSERT(ANS_STRIDE_BYTES % ZH_CACHE_LINE_SIZE == 0, "answer buffers stay cache-line aligned");
ZH_STATIC_ASSERT(ANS_STRIDE_BYTES >= ZH_ANS_MAX_BYTES, "an answer buffer holds any answer");

/* A threaded case that has not finished by then has a bug; it fails instead of hanging the runner. */
#define MT_DEADLINE_NS (30ull * 1000 * 1000 * 1000)
/* After the deadline, threads get this long to notice the stop flag before the test gives up on them. */
#define MT_GRACE_NS (5ull * 1000 * 1000 * 1000)
/* Spins with a pause before a waiting thread yields its core; with more threads than cores the
 * thread it waits for may need exactly this core. */
#define SPINS_BEFORE_YIELD 64u
/* A ring bug can also spin forever inside zh_ring_claim or zh_ring_produce_begin on one thread;
 * the whole binary gives up after this, inside the runner's 120 s. */
#define WATCHDOG_S 100u

/* ---- checks ---------------------------------------------------------------------------------- */

#include "zh_check.h"

#define CHECK_PTR(a, b)                                                                      \
	do {                                                                                 \
		const void *a_ = (a), *b_ = (b);                                             \
		if (a_ == b_)                                                                \
			checks_passed++;                                                     \
		else                                                                         \
			check_failed(__FILE__, __LINE__, "%s == %s: %p != %p", #a, #b, a_, b_); \
	} while (0)


/* Name the case that hung; only async-signal-safe calls here. */
static void watchdog_fired(int sig)
{
	static const char msg[] = TEST_NAME ": watchdog: hung in ";

	ssize_t ignored;

	(void)sig;
	/* Nothing to do if stderr is gone; the exit status still says it failed. */
	ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	ignored = write(STDERR_FILENO, case_name, strlen(case_name));
	ignored = write(STDERR_FILENO, "\n", 1);
	(void)ignored;
	_exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- a ring in host memory ------------------------------------------------------------------- */

struct test_ring {
	struct zh_ring ring;
	uint8_t *mem; /* tickets, slots and answer buffers in one zeroed allocation */
};

/* Lay the ring out as gpu/gpu_device.c does. Zeroed memory is every slot at lap 0, FREE. */
static int test_ring_init(struct test_ring *tr, uint32_t slot_count)
{
	size_t tickets_bytes = 2 * sizeof(struct zh_ring_ticket);
	size_t slots_bytes = (size_t)slot_count * sizeof(struct zh_slot);
	size_t total = tickets_bytes + slots_bytes + (size_t)slot_count * ANS_STRIDE_BYTES;
	uint8_t *mem;

	if (slot_count < ZH_RING_SLOTS_MIN || slot_count > ZH_RING_SLOTS_MAX ||
	    (slot_count & (slot_count - 1)) != 0)
		return -EINVAL;
	/* aligned_alloc wants a multiple of the alignment; every part above is one. */
	mem = aligned_alloc(ZH_CACHE_LINE_SIZE, total);
	if (!mem)
		return -ENOMEM;
	memset(mem, 0, total);
	tr->mem = mem;
	tr->ring.prod_ticket = (struct zh_ring_ticket *)mem;
	tr->ring.cons_ticket = (struct zh_ring_ticket *)mem + 1;
	tr->ring.slots = (struct zh_slot *)(mem + tickets_bytes);
	tr->ring.ans_base = mem + tickets_bytes + slots_bytes;
	tr->ring.slot_count = slot_count;
	tr->ring.slot_mask = slot_count - 1;
	tr->ring.lap_shift = (uint32_t)__builtin_ctz(slot_count);
	tr->ring.ans_stride_bytes = ANS_STRIDE_BYTES;
	tr->ring.ans_headroom_bytes = 0; /* the test reads answers where they start */
	return 0;
}

static void test_ring_free(struct test_ring *tr)
{
	free(tr->mem);
	tr->mem = NULL;
}

static uint64_t slot_word(const struct zh_ring *ring, uint64_t ticket)
{
	return zh_load_acquire_u64(&zh_ring_slot(ring, ticket)->word);
}

/*
 * After `tickets` tickets were produced, served and released, slot s has been handed to the next lap
 * once for every ticket that mapped to it.
 */
static uint32_t check_ring_drained(const struct zh_ring *ring, uint64_t tickets)
{
	uint32_t bad = 0;

	for (uint32_t s = 0; s < ring->slot_count; s++) {
		uint64_t uses = tickets > s ? (tickets - s + ring->slot_count - 1) / ring->slot_count : 0;

		if (ring->slots[s].word != ZH_SLOT_WORD(uses, ZH_SLOT_FREE))
			bad++;
	}
	return bad;
}

/* Wait politely: pause for a while, then give the core away. */
static void backoff(uint32_t *spins)
{
	if (++*spins < SPINS_BEFORE_YIELD)
		zh_cpu_relax();
	else
		sched_yield();
}

/* ---- single-threaded state machine ----------------------------------------------------------- */

/* Every transition of one ticket, over several laps, with the slot word checked after each step. */
static void test_state_laps(void)
{
	struct test_ring tr;
	const uint32_t slot_count = 4;

	if (test_ring_init(&tr, slot_count)) {
		CHECK(!"test_ring_init");
		return;
	}
	const struct zh_ring *ring = &tr.ring;

	for (uint64_t expect = 0; expect < 5 * slot_count; expect++) {
		uint64_t lap = expect / slot_count, t = UINT64_MAX, c = UINT64_MAX;
		struct zh_slot *slot = zh_ring_produce_begin(ring, &t);

		CHECK_PTR(slot, &ring->slots[expect % slot_count]);
		CHECK_U64(t, expect);
		if (!slot)
			break;
		/* Taking a ticket does not touch the word: the slot is still FREE for this lap, and a
		 * consumer must not take it before it is published. */
		CHECK_U64(slot->word, ZH_SLOT_WORD(lap, ZH_SLOT_FREE));
		CHECK(zh_ring_claim(ring, &c) == NULL);
		slot->req_addr = 0x1000 + expect;
		slot->req_size_bytes = (uint32_t)expect + 1;
		zh_ring_publish(ring, slot, t);
		CHECK_U64(slot->word, ZH_SLOT_WORD(lap, ZH_SLOT_READY));
		CHECK(!zh_ring_is_done(ring, slot, t));

		struct zh_slot *claimed = zh_ring_claim(ring, &c);
		CHECK_PTR(claimed, slot);
		CHECK_U64(c, expect);
		if (!claimed)
			break;
		CHECK_U64(slot->word, ZH_SLOT_WORD(lap, ZH_SLOT_CLAIMED));
		CHECK_U64(claimed->req_addr, 0x1000 + expect);
		CHECK(zh_ring_claim(ring, &c) == NULL);
		CHECK(!zh_ring_is_done(ring, slot, t));

		zh_ring_complete(ring, claimed, c);
		CHECK_U64(slot->word, ZH_SLOT_WORD(lap, ZH_SLOT_DONE));
		CHECK(zh_ring_is_done(ring, slot, t));
		/* A DONE slot is not READY again for any consumer. */
		CHECK(zh_ring_claim(ring, &c) == NULL);

		zh_ring_release(ring, slot, t);
		CHECK_U64(slot->word, ZH_SLOT_WORD(lap + 1, ZH_SLOT_FREE));
		/* The released ticket is no longer done: its slot belongs to the next lap. */
		CHECK(!zh_ring_is_done(ring, slot, t));
	}
	CHECK_U64(ring->prod_ticket->value, 5 * slot_count);
	CHECK_U64(ring->cons_ticket->value, 5 * slot_count);
	test_ring_free(&tr);
}

/* Full, empty, and out-of-order publication, on the smallest and a larger ring. */
static void state_full_empty(uint32_t slot_count)
{
	struct test_ring tr;
	uint64_t t, c;

	if (test_ring_init(&tr, slot_count)) {
		CHECK(!"test_ring_init");
		return;
	}
	const struct zh_ring *ring = &tr.ring;

	CHECK(zh_ring_claim(ring, &c) == NULL);
	CHECK_U64(ring->cons_ticket->value, 0);

	for (uint32_t i = 0; i < slot_count; i++) {
		struct zh_slot *slot = zh_ring_produce_begin(ring, &t);

		CHECK_PTR(slot, &ring->slots[i]);
		CHECK_U64(t, i);
	}
	/* Full: every slot is taken for lap 0, none published yet. */
	CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	CHECK_U64(ring->prod_ticket->value, slot_count);
	/* Taken but not published is not claimable, whatever is published after it. */
	CHECK(zh_ring_claim(ring, &c) == NULL);
	zh_ring_publish(ring, &ring->slots[1], 1);
	CHECK(zh_ring_claim(ring, &c) == NULL);
	CHECK_U64(ring->cons_ticket->value, 0);
	CHECK_U64(ring->slots[1].word, ZH_SLOT_WORD(0, ZH_SLOT_READY));

	/* Publishing ticket 0 unblocks both, in ticket order. */
	zh_ring_publish(ring, &ring->slots[0], 0);
	CHECK_PTR(zh_ring_claim(ring, &c), &ring->slots[0]);
	CHECK_U64(c, 0);
	CHECK_PTR(zh_ring_claim(ring, &c), &ring->slots[1]);
	CHECK_U64(c, 1);
	CHECK(zh_ring_claim(ring, &c) == NULL);
	for (uint32_t i = 2; i < slot_count; i++)
		zh_ring_publish(ring, &ring->slots[i], i);
	for (uint32_t i = 2; i < slot_count; i++) {
		CHECK_PTR(zh_ring_claim(ring, &c), &ring->slots[i]);
		CHECK_U64(c, i);
	}
	CHECK(zh_ring_claim(ring, &c) == NULL);

	/* Still full while the slots are CLAIMED, and while DONE but not released. */
	CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	for (uint32_t i = 0; i < slot_count; i++)
		zh_ring_complete(ring, &ring->slots[i], i);
	CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	/* Empty for the consumer: ticket slot_count's slot still holds lap 0. */
	CHECK(zh_ring_claim(ring, &c) == NULL);
	CHECK_U64(ring->cons_ticket->value, slot_count);

	/* Releasing ticket 1 before ticket 0 frees nothing: the next ticket maps to slot 0. */
	zh_ring_release(ring, &ring->slots[1], 1);
	CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	zh_ring_release(ring, &ring->slots[0], 0);
	CHECK_PTR(zh_ring_produce_begin(ring, &t), &ring->slots[0]);
	CHECK_U64(t, slot_count);
	CHECK_U64(ring->slots[0].word, ZH_SLOT_WORD(1, ZH_SLOT_FREE));
	if (slot_count > 2) {
		CHECK_PTR(zh_ring_produce_begin(ring, &t), &ring->slots[1]);
		CHECK_U64(t, slot_count + 1);
		/* Slot 2 is DONE for lap 0, not yet released. */
		CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	} else {
		CHECK_PTR(zh_ring_produce_begin(ring, &t), &ring->slots[1]);
		CHECK(zh_ring_produce_begin(ring, &t) == NULL);
	}
	/* Lap 1 taken, not published: the consumer sees FREE at its lap and reports empty. */
	CHECK(zh_ring_claim(ring, &c) == NULL);
	zh_ring_publish(ring, &ring->slots[0], slot_count);
	CHECK_PTR(zh_ring_claim(ring, &c), &ring->slots[0]);
	CHECK_U64(c, slot_count);
	CHECK_U64(ring->slots[0].word, ZH_SLOT_WORD(1, ZH_SLOT_CLAIMED));
	test_ring_free(&tr);
}

static void test_state_full_empty(void)
{
	state_full_empty(ZH_RING_SLOTS_MIN);
	state_full_empty(8);
}

/* zh_ring_answer gives each slot its own buffer, stride apart, inside the answer area. */
static void test_answer_layout(void)
{
	struct test_ring tr;

	if (test_ring_init(&tr, 16)) {
		CHECK(!"test_ring_init");
		return;
	}
	for (uint32_t s = 0; s < 16; s++)
		CHECK_PTR(zh_ring_answer(&tr.ring, &tr.ring.slots[s]),
			  tr.ring.ans_base + (size_t)s * ANS_STRIDE_BYTES);
	CHECK_PTR(zh_ring_slot(&tr.ring, 16 * 3 + 5), &tr.ring.slots[5]);
	CHECK_U64(zh_ring_lap(&tr.ring, 16 * 3 + 5), 3);
	test_ring_free(&tr);
}

/* ---- threaded harness ------------------------------------------------------------------------ */

struct mt_ctx;

/* What a threaded case does with a request: the raw descriptor protocol, or msgpack via krn_loop_step. */
struct mt_mode {
	int tracks_served; /* the consumer knows which request it served and counts it */
	/* Producer: fill the slot's descriptor (and request bytes) for request `seq`. */
	void (*fill)(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t seq);
	/* Consumer: serve at most one request; returns 1 if it did, 0 if the ring looked empty. */
	int (*consume)(struct mt_ctx *ctx, uint32_t consumer_idx);
	/* Reaper: is the answer in the DONE slot the one for `seq`? Returns 0 or describes the error. */
	int (*verify)(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t ticket, uint64_t seq,
		      char *why, size_t why_size);
};

/* The first error a thread met, kept for the report; later ones are only counted. */
struct mt_errors {
	uint64_t count;
	char first[200];
};

static void mt_error(struct mt_errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mt_error(struct mt_errors *e, const char *fmt, ...)
{
	va_list ap;

	if (e->count++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(e->first, sizeof(e->first), fmt, ap);
	va_end(ap);
}

#define MT_THREADS_MAX 8u

struct mt_ctx {
	const struct mt_mode *mode;
	struct zh_ring ring;
	uint64_t requests;
	uint32_t producers;
	uint32_t consumers;
	int pin_cpu[MT_THREADS_MAX];  /* cpu per thread (producers first), -1 for unpinned */
	uint32_t *served;             /* [requests] consumer-side count per request (raw mode only) */
	uint32_t *answered;           /* [requests] reaper-side count; each request has one reaper */
	uint64_t served_total;        /* atomic: requests completed by consumers */
	uint32_t finished;            /* atomic: threads that returned */
	int stop;                     /* atomic: the deadline passed; every thread returns */
	int pin_failed;               /* atomic: a pthread_setaffinity_np call failed */
	uint64_t deadline_ns;
	struct mt_errors errors[MT_THREADS_MAX];
	/* krn mode: the models table, the per-slot request buffers and the per-consumer scratch. */
	struct krn_models models;
	uint8_t *req_bufs;            /* [slot_count][ZH_REQ_MAX_BYTES] */
	struct krn_scratch *scratch;  /* [consumers] */
};

struct mt_thread {
	struct mt_ctx *ctx;
	uint32_t idx;  /* 0..producers-1 are producers, then the consumers */
	pthread_t tid;
};

static int mt_should_stop(struct mt_ctx *ctx)
{
	return __atomic_load_n(&ctx->stop, __ATOMIC_RELAXED);
}

/* Called while waiting: back off, and every so often look at the clock. */
static void mt_wait(struct mt_ctx *ctx, uint32_t *spins)
{
	backoff(spins);
	if ((*spins & 1023u) == 0 && now_ns() > ctx->deadline_ns)
		__atomic_store_n(&ctx->stop, 1, __ATOMIC_RELAXED);
}

static void mt_pin(struct mt_ctx *ctx, uint32_t idx)
{
	cpu_set_t set;

	if (ctx->pin_cpu[idx] < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(ctx->pin_cpu[idx], &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		__atomic_store_n(&ctx->pin_failed, 1, __ATOMIC_RELAXED);
}

struct mt_pending {
	uint64_t ticket;
	uint64_t seq;
};

/* Reap this producer's DONE tickets in order. Returns how many were reaped. */
static uint32_t mt_reap(struct mt_ctx *ctx, struct mt_errors *err, struct mt_pending *fifo,
			uint32_t *head, uint32_t *count)
{
	const struct zh_ring *ring = &ctx->ring;
	uint32_t reaped = 0;
	char why[160];

	while (*count > 0) {
		struct mt_pending *p = &fifo[*head];
		struct zh_slot *slot = zh_ring_slot(ring, p->ticket);

		if (!zh_ring_is_done(ring, slot, p->ticket))
			break;
		if (ctx->mode->verify(ctx, slot, p->ticket, p->seq, why, sizeof(why)))
			mt_error(err, "request %" PRIu64 " (ticket %" PRIu64 "): %s", p->seq, p->ticket, why);
		ctx->answered[p->seq]++;
		/* Scribble over the answer so that a consumer that forgets to write the next one is
		 * caught by the next reaper instead of passing with our stale bytes. */
		memset(zh_ring_answer(ring, slot), 0xee, 16);
		slot->ans_size_bytes = 0;
		zh_ring_release(ring, slot, p->ticket);
		*head = (*head + 1) & ring->slot_mask;
		(*count)--;
		reaped++;
	}
	return reaped;
}

/*
 * A producer publishes its share of the requests and reaps its own tickets in order, as an rx lcore
 * does. It reaps before each attempt to produce: another producer may be waiting for a slot that
 * only our reaping frees.
 */
static void mt_producer(struct mt_ctx *ctx, uint32_t p)
{
	const struct zh_ring *ring = &ctx->ring;
	struct mt_errors *err = &ctx->errors[p];
	uint64_t seq = ctx->requests * p / ctx->producers;
	uint64_t seq_end = ctx->requests * (p + 1) / ctx->producers;
	uint64_t last_ticket = 0;
	int have_last = 0;
	uint32_t head = 0, count = 0, spins = 0;
	/* At most slot_count tickets are outstanding in the whole ring, so this FIFO never overflows. */
	struct mt_pending *fifo = calloc(ring->slot_count, sizeof(*fifo));

	if (!fifo) {
		mt_error(err, "out of memory");
		return;
	}
	while ((seq < seq_end || count > 0) && !mt_should_stop(ctx)) {
		uint32_t progress = mt_reap(ctx, err, fifo, &head, &count);
		uint64_t ticket;
		struct zh_slot *slot = NULL;

		if (seq < seq_end && count < ring->slot_count)
			slot = zh_ring_produce_begin(ring, &ticket);
		if (slot) {
			if (slot != zh_ring_slot(ring, ticket))
				mt_error(err, "ticket %" PRIu64 " got slot %td", ticket, slot - ring->slots);
			if (slot_word(ring, ticket) != ZH_SLOT_WORD(zh_ring_lap(ring, ticket), ZH_SLOT_FREE))
				mt_error(err, "ticket %" PRIu64 " slot word %#" PRIx64 " is not FREE", ticket,
					 slot_word(ring, ticket));
			if (have_last && ticket <= last_ticket)
				mt_error(err, "ticket %" PRIu64 " after %" PRIu64, ticket, last_ticket);
			if (ctx->producers == 1 && ticket != seq)
				mt_error(err, "single producer: ticket %" PRIu64 " for request %" PRIu64, ticket, seq);
			last_ticket = ticket;
			have_last = 1;
			slot->producer_idx = p;
			ctx->mode->fill(ctx, slot, seq);
			zh_ring_publish(ring, slot, ticket);
			fifo[(head + count) & ring->slot_mask] = (struct mt_pending){ ticket, seq };
			count++;
			seq++;
			progress++;
		}
		if (progress)
			spins = 0;
		else
			mt_wait(ctx, &spins);
	}
	free(fifo);
}

static void mt_consumer(struct mt_ctx *ctx, uint32_t c)
{
	uint32_t spins = 0;

	for (;;) {
		if (ctx->mode->consume(ctx, c)) {
			__atomic_fetch_add(&ctx->served_total, 1, __ATOMIC_RELEASE);
			spins = 0;
			continue;
		}
		if (__atomic_load_n(&ctx->served_total, __ATOMIC_ACQUIRE) >= ctx->requests ||
		    mt_should_stop(ctx))
			break;
		mt_wait(ctx, &spins);
	}
}

static void *mt_thread_main(void *arg)
{
	struct mt_thread *th = arg;
	struct mt_ctx *ctx = th->ctx;

	mt_pin(ctx, th->idx);
	if (th->idx < ctx->producers)
		mt_producer(ctx, th->idx);
	else
		mt_consumer(ctx, th->idx - ctx->producers);
	__atomic_fetch_add(&ctx->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* The first `want` cpus this process may run on; returns how many there are. */
static int usable_cpus(int *cpus, int want)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 0;
	for (int cpu = 0; cpu < CPU_SETSIZE && n < want; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	return n;
}

/*
 * Run the threads and wait for them with a deadline. Returns 0 when all finished, -ETIMEDOUT when some
 * never noticed the stop flag: they may be stuck inside the ring, so the caller must not free it.
 */
static int mt_run(struct mt_ctx *ctx)
{
	uint32_t nthreads = ctx->producers + ctx->consumers;
	struct mt_thread threads[MT_THREADS_MAX];
	uint64_t start = now_ns();

	ctx->deadline_ns = start + MT_DEADLINE_NS;
	for (uint32_t i = 0; i < nthreads; i++) {
		threads[i] = (struct mt_thread){ .ctx = ctx, .idx = i };
		if (pthread_create(&threads[i].tid, NULL, mt_thread_main, &threads[i]) != 0) {
			fprintf(stderr, "%s: pthread_create: %s\n", case_name, strerror(errno));
			__atomic_store_n(&ctx->stop, 1, __ATOMIC_RELAXED);
			nthreads = i;
			break;
		}
	}
	while (__atomic_load_n(&ctx->finished, __ATOMIC_ACQUIRE) < nthreads) {
		struct timespec tick = { 0, 10 * 1000 * 1000 };
		uint64_t now = now_ns();

		if (now > ctx->deadline_ns)
			__atomic_store_n(&ctx->stop, 1, __ATOMIC_RELAXED);
		if (now > ctx->deadline_ns + MT_GRACE_NS)
			return -ETIMEDOUT;
		nanosleep(&tick, NULL);
	}
	for (uint32_t i = 0; i < nthreads; i++)
		pthread_join(threads[i].tid, NULL);
	return 0;
}

/*
 * One threaded case: set up a ring, run, then check that every request was answered exactly once, by
 * the right answer, and that the ring ends drained.
 */
static void mt_case(const struct mt_mode *mode, uint32_t slot_count, uint32_t producers,
		    uint32_t consumers, uint64_t requests, int pin)
{
	struct mt_ctx *ctx = calloc(1, sizeof(*ctx));
	struct test_ring tr;
	int cpus[2];
	int ncpus = pin ? usable_cpus(cpus, 2) : 0;

	if (!ctx || producers + consumers > MT_THREADS_MAX || test_ring_init(&tr, slot_count)) {
		CHECK(!"threaded case set-up");
		free(ctx);
		return;
	}
	ctx->mode = mode;
	ctx->ring = tr.ring;
	ctx->requests = requests;
	ctx->producers = producers;
	ctx->consumers = consumers;
	/* Pinned cases put thread i on the i-th usable cpu; with fewer cpus than threads, nobody
	 * is pinned and the scheduler shares what there is. */
	for (uint32_t i = 0; i < MT_THREADS_MAX; i++)
		ctx->pin_cpu[i] = ncpus >= (int)(producers + consumers) ? cpus[i % 2] : -1;
	ctx->served = calloc(requests, sizeof(*ctx->served));
	ctx->answered = calloc(requests, sizeof(*ctx->answered));
	ctx->req_bufs = malloc((size_t)slot_count * ZH_REQ_MAX_BYTES);
	ctx->scratch = calloc(consumers, sizeof(*ctx->scratch));
	ctx->models.count = 1;
	ctx->models.default_idx = 0;
	strcpy(ctx->models.models[0].name, "echo");
	ctx->models.models[0].arch = KRN_ARCH_ECHO;
	if (!ctx->served || !ctx->answered || !ctx->req_bufs || !ctx->scratch) {
		CHECK(!"threaded case allocation");
		goto out;
	}

	uint64_t start = now_ns();
	int rc = mt_run(ctx);
	double elapsed_s = (double)(now_ns() - start) / 1e9;

	if (rc == -ETIMEDOUT) {
		/* A thread is stuck, possibly spinning inside the ring: nothing can be freed or trusted. */
		fprintf(stderr, "%s: threads did not stop within %llu s of the deadline; giving up\n",
			case_name, MT_GRACE_NS / 1000000000ull);
		printf("%s: FAILED (hung)\n", TEST_NAME);
		exit(1);
	}
	printf("  %-22s %u producer(s), %u consumer(s), %u slots, %" PRIu64 " requests: %.2f s%s%s\n",
	       case_name, producers, consumers, slot_count, requests, elapsed_s,
	       ctx->pin_cpu[0] >= 0 ? ", pinned" : "", ctx->pin_failed ? " (pinning failed)" : "");
	CHECK(!ctx->stop);

	for (uint32_t i = 0; i < producers + consumers; i++) {
		if (ctx->errors[i].count)
			check_failed(__FILE__, __LINE__, "thread %u: %" PRIu64 " errors, first: %s", i,
				     ctx->errors[i].count, ctx->errors[i].first);
		else
			checks_passed++;
	}

	uint64_t bad_answered = 0, bad_served = 0, first_bad = UINT64_MAX;

	for (uint64_t s = 0; s < requests; s++) {
		if (ctx->answered[s] != 1) {
			bad_answered++;
			first_bad = first_bad == UINT64_MAX ? s : first_bad;
		}
		/* krn_loop_step does not say which request it served; there the reaper's id check does. */
		if (mode->tracks_served && ctx->served[s] != 1)
			bad_served++;
	}
	if (bad_answered)
		check_failed(__FILE__, __LINE__, "%" PRIu64 " requests not reaped exactly once (first: %" PRIu64
			     ", count %u)", bad_answered, first_bad, ctx->answered[first_bad]);
	else
		checks_passed++;
	CHECK_U64(bad_served, 0);
	CHECK_U64(ctx->served_total, requests);
	CHECK_U64(ctx->ring.prod_ticket->value, requests);
	CHECK_U64(ctx->ring.cons_ticket->value, requests);
	CHECK_U64(check_ring_drained(&ctx->ring, requests), 0);
out:
	free(ctx->served);
	free(ctx->answered);
	free(ctx->req_bufs);
	free(ctx->scratch);
	free(ctx);
	test_ring_free(&tr);
}

/* ---- raw mode: the descriptor protocol itself ------------------------------------------------ */

#define RAW_ANS_BYTES 16u

/* What the consumer answers to request `seq`: nothing a stale or misplaced answer would match. */
static uint64_t raw_answer_value(uint64_t seq)
{
	return (seq + 1) * 0x9e3779b97f4a7c15ull ^ 0x5bd1e9955bd1e995ull;
}

static uint32_t raw_req_size(uint64_t seq)
{
	return 1 + (uint32_t)(seq % ZH_REQ_MAX_BYTES);
}

static void raw_fill(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t seq)
{
	(void)ctx;
	slot->req_addr = seq;
	slot->req_size_bytes = raw_req_size(seq);
	slot->model_id = ZH_MODEL_ID_NONE;
}

static int raw_consume(struct mt_ctx *ctx, uint32_t c)
{
	const struct zh_ring *ring = &ctx->ring;
	struct mt_errors *err = &ctx->errors[ctx->producers + c];
	uint64_t ticket;
	struct zh_slot *slot = zh_ring_claim(ring, &ticket);

	if (!slot)
		return 0;
	uint64_t seq = slot->req_addr;

	if (slot != zh_ring_slot(ring, ticket))
		mt_error(err, "claimed ticket %" PRIu64 " in slot %td", ticket, slot - ring->slots);
	/* The claimant owns the slot: nobody else may have moved the word on. */
	uint64_t word = zh_load_relaxed_u64(&slot->word);

	if (word != ZH_SLOT_WORD(zh_ring_lap(ring, ticket), ZH_SLOT_CLAIMED))
		mt_error(err, "ticket %" PRIu64 ": word %#" PRIx64 " after claim", ticket, word);
	/* The descriptor must be the one published with READY, not a torn or older one. */
	if (seq >= ctx->requests || slot->req_size_bytes != raw_req_size(seq)) {
		mt_error(err, "ticket %" PRIu64 ": descriptor req_addr %" PRIu64 " size %u", ticket, seq,
			 slot->req_size_bytes);
	} else {
		__atomic_fetch_add(&ctx->served[seq], 1, __ATOMIC_RELAXED);
	}

	uint8_t *ans = zh_ring_answer(ring, slot);
	uint64_t value = raw_answer_value(seq);

	memcpy(ans, &value, sizeof(value));
	memcpy(ans + 8, &ticket, sizeof(ticket));
	slot->ans_size_bytes = RAW_ANS_BYTES;
	slot->ans_status = (uint16_t)seq;
	zh_ring_complete(ring, slot, ticket);
	return 1;
}

static int raw_verify(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t ticket, uint64_t seq, char *why,
		      size_t why_size)
{
	const uint8_t *ans = zh_ring_answer(&ctx->ring, slot);
	uint64_t value, ans_ticket;

	memcpy(&value, ans, sizeof(value));
	memcpy(&ans_ticket, ans + 8, sizeof(ans_ticket));
	if (slot->ans_size_bytes != RAW_ANS_BYTES || value != raw_answer_value(seq) || ans_ticket != ticket ||
	    slot->ans_status != (uint16_t)seq) {
		snprintf(why, why_size, "answer size %u value %#" PRIx64 " ticket %" PRIu64 " status %u",
			 slot->ans_size_bytes, value, ans_ticket, slot->ans_status);
		return -1;
	}
	return 0;
}

static const struct mt_mode raw_mode = {
	.tracks_served = 1,
	.fill = raw_fill,
	.consume = raw_consume,
	.verify = raw_verify,
};

/* Case A: the issue's pair, one producer and one consumer on two different cores. */
static void test_mt_1p1c(void)
{
	mt_case(&raw_mode, 1024, 1, 1, 1000000, 1);
}

/* Case B: two of each on a small ring, so that slots change hands between every party all the time. */
static void test_mt_2p2c(void)
{
	mt_case(&raw_mode, 256, 2, 2, 2000000, 0);
}

/* ---- krn mode: krn_loop_step serving msgpack requests ---------------------------------------- */

/* Token ids for request `seq`: 0..5 of them, spread over every msgpack integer width. */
static uint32_t echo_tokens(uint64_t seq, uint32_t *tokens)
{
	uint32_t n = (uint32_t)(seq % 6);

	for (uint32_t k = 0; k < n; k++)
		tokens[k] = (uint32_t)((seq + 1) * 2654435761u) >> (7 * k); /* k <= 4: shift < 32 */
	return n;
}

/* A request as a client could write it, `id` last so that a request cut short loses it. */
static uint32_t build_request(uint8_t *buf, uint32_t cap, uint64_t id, const char *model, const char *op,
			      const uint32_t *tokens, uint32_t n, int trace)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, cap);
	krn_mp_put_map(&w, 2 + (model != NULL) + (op != NULL) + (trace != 0));
	if (trace) {
		krn_mp_put_cstr(&w, "trace");
		krn_mp_put_bool(&w, 1);
	}
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, n);
	for (uint32_t k = 0; k < n; k++)
		krn_mp_put_uint(&w, tokens[k]);
	if (model) {
		krn_mp_put_cstr(&w, "model");
		krn_mp_put_cstr(&w, model);
	}
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, id);
	if (op) {
		krn_mp_put_cstr(&w, "op");
		krn_mp_put_cstr(&w, op);
	}
	return w.overflow ? 0 : krn_mp_writer_size(&w, buf);
}

/* An answer as the appliance sends it, read back with the krn reader. */
struct echo_answer {
	int has_id;
	uint64_t id;
	uint64_t status;
	int has_error;
	int has_tokens;
	uint32_t token_count;
	uint32_t tokens[ZH_TOKENS_MAX];
	int has_trace;
	uint64_t trace[5];
};

static int read_uint_value(struct krn_mp_reader *r, uint64_t *out)
{
	struct krn_mp_value v;

	if (krn_mp_read(r, &v) || v.type != KRN_MP_UINT)
		return -1;
	*out = v.v.u;
	return 0;
}

static int parse_answer_value(struct krn_mp_reader *r, const struct krn_mp_value *key, struct echo_answer *a)
{
	struct krn_mp_value v;

	if (krn_mp_str_eq(key, "id") && !a->has_id) {
		if (krn_mp_read(r, &v))
			return -1;
		a->has_id = v.type == KRN_MP_UINT;
		a->id = a->has_id ? v.v.u : 0;
		return v.type == KRN_MP_UINT || v.type == KRN_MP_NIL ? 0 : -1;
	}
	if (krn_mp_str_eq(key, "status"))
		return read_uint_value(r, &a->status);
	if (krn_mp_str_eq(key, "error") && !a->has_error) {
		a->has_error = 1;
		return krn_mp_read(r, &v) || v.type != KRN_MP_STR || v.size == 0 ? -1 : 0;
	}
	if (krn_mp_str_eq(key, "tokens") && !a->has_tokens) {
		if (krn_mp_read(r, &v) || v.type != KRN_MP_ARRAY || v.size > ZH_TOKENS_MAX)
			return -1;
		a->has_tokens = 1;
		a->token_count = v.size;
		for (uint32_t i = 0; i < v.size; i++) {
			uint64_t u;

			if (read_uint_value(r, &u) || u > UINT32_MAX)
				return -1;
			a->tokens[i] = (uint32_t)u;
		}
		return 0;
	}
	if (krn_mp_str_eq(key, "trace") && !a->has_trace) {
		if (krn_mp_read(r, &v) || v.type != KRN_MP_ARRAY || v.size != 5)
			return -1;
		a->has_trace = 1;
		for (uint32_t i = 0; i < 5; i++)
			if (read_uint_value(r, &a->trace[i]))
				return -1;
		return 0;
	}
	return -1; /* an unknown or repeated key: the answer format is ours, nothing else belongs */
}

/* Returns 0 when the answer is one well-formed map of known keys, with id and status. */
static int parse_answer(const uint8_t *buf, uint32_t size, struct echo_answer *a)
{
	struct krn_mp_reader r;
	struct krn_mp_value v;
	int has_status = 0;

	memset(a, 0, sizeof(*a));
	a->status = UINT64_MAX;
	krn_mp_reader_init(&r, buf, size);
	if (krn_mp_read(&r, &v) || v.type != KRN_MP_MAP)
		return -1;
	for (uint32_t i = 0, n = v.size; i < n; i++) {
		struct krn_mp_value key;

		if (krn_mp_read(&r, &key) || key.type != KRN_MP_STR)
			return -1;
		has_status |= krn_mp_str_eq(&key, "status");
		if (parse_answer_value(&r, &key, a))
			return -1;
	}
	return krn_mp_reader_left(&r) == 0 && has_status ? 0 : -1;
}

static void krn_fill(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t seq)
{
	uint8_t *buf = ctx->req_bufs + (size_t)(slot - ctx->ring.slots) * ZH_REQ_MAX_BYTES;
	uint32_t tokens[8];
	uint32_t n = echo_tokens(seq, tokens);

	slot->req_addr = (uint64_t)(uintptr_t)buf;
	slot->req_size_bytes = build_request(buf, ZH_REQ_MAX_BYTES, seq, seq % 2 ? "echo" : NULL,
					     seq % 3 ? NULL : "echo", tokens, n, 0);
}

static int krn_consume(struct mt_ctx *ctx, uint32_t c)
{
	return krn_loop_step(&ctx->ring, &ctx->models, &ctx->scratch[c]);
}

static int krn_verify(struct mt_ctx *ctx, struct zh_slot *slot, uint64_t ticket, uint64_t seq, char *why,
		      size_t why_size)
{
	struct echo_answer a;
	uint32_t tokens[8];
	uint32_t n = echo_tokens(seq, tokens);

	(void)ticket;
	if (slot->ans_size_bytes == 0 || slot->ans_size_bytes > ctx->ring.ans_stride_bytes ||
	    parse_answer(zh_ring_answer(&ctx->ring, slot), slot->ans_size_bytes, &a)) {
		snprintf(why, why_size, "malformed answer of %u bytes", slot->ans_size_bytes);
		return -1;
	}
	if (!a.has_id || a.id != seq || a.status != ZH_STATUS_OK || slot->ans_status != ZH_STATUS_OK ||
	    a.has_error || !a.has_tokens || a.token_count != n ||
	    memcmp(a.tokens, tokens, n * sizeof(tokens[0])) != 0) {
		snprintf(why, why_size, "answer id %" PRIu64 " status %" PRIu64 "/%u tokens %u", a.id, a.status,
			 slot->ans_status, a.token_count);
		return -1;
	}
	return 0;
}

static const struct mt_mode krn_mode = {
	.tracks_served = 0,
	.fill = krn_fill,
	.consume = krn_consume,
	.verify = krn_verify,
};

/* Two cpu-device workers (each with its own scratch) serve one producer, as zerohopd runs them. */
static void test_mt_loop_step(void)
{
	mt_case(&krn_mode, 64, 1, 2, 200000, 0);
}

/* krn_loop_step one request at a time: every answer checked, including errors and the trace. */
struct step_req {
	const char *model;
	const char *op;
	uint32_t token_count;
	int trace;
	int truncate;               /* publish the request cut short by one byte, losing its id */
	uint64_t expect_status;
};

static const struct step_req step_reqs[] = {
	{ "echo", NULL, 3, 0, 0, ZH_STATUS_OK },
	{ NULL, NULL, 0, 0, 0, ZH_STATUS_OK },
	{ "echo", "echo", ZH_TOKENS_MAX, 1, 0, ZH_STATUS_OK },
	{ "llama", NULL, 2, 0, 0, ZH_STATUS_UNKNOWN_MODEL },
	{ "echo", "generate", 1, 0, 0, ZH_STATUS_BAD_REQUEST },
	{ "echo", NULL, 4, 1, 1, ZH_STATUS_BAD_REQUEST },
	{ NULL, "echo", 17, 1, 0, ZH_STATUS_OK },
};

static void check_step_answer(const struct zh_ring *ring, const struct zh_slot *slot, const struct step_req *sr,
			      uint64_t id, const uint32_t *tokens, uint64_t rx_tsc, uint64_t publish_tsc)
{
	struct echo_answer a;
	int parsed = slot->ans_size_bytes > 0 && slot->ans_size_bytes <= ring->ans_stride_bytes &&
		     parse_answer(zh_ring_answer(ring, slot), slot->ans_size_bytes, &a) == 0;

	CHECK(parsed);
	if (!parsed)
		return;
	CHECK_U64(a.status, sr->expect_status);
	CHECK_U64(slot->ans_status & ZH_ANS_STATUS_MASK, sr->expect_status);
	/* A traced OK answer ends with the NIC rx placeholder, and the slot says so to the reaper. */
	CHECK(((slot->ans_status & ZH_ANS_F_NIC_RX_TAIL) != 0) == (sr->trace && sr->expect_status == ZH_STATUS_OK));
	/* A request cut short lost its id; the error answer says so with a nil id. */
	CHECK(a.has_id == !sr->truncate);
	if (a.has_id)
		CHECK_U64(a.id, id);
	CHECK(a.has_error == (sr->expect_status != ZH_STATUS_OK));
	CHECK(a.has_tokens == (sr->expect_status == ZH_STATUS_OK));
	if (sr->expect_status != ZH_STATUS_OK)
		return;
	CHECK_U64(a.token_count, sr->token_count);
	CHECK(memcmp(a.tokens, tokens, sr->token_count * sizeof(tokens[0])) == 0);
	CHECK(a.has_trace == sr->trace);
	if (!a.has_trace)
		return;
	/* The trace carries the producer's stamps and the device clock at claim and at the end of work. */
	CHECK_U64(a.trace[0], rx_tsc);
	CHECK_U64(a.trace[1], publish_tsc);
	CHECK_U64(a.trace[2], slot->claim_dclk);
	CHECK_U64(a.trace[3], slot->done_dclk);
	CHECK(a.trace[2] != 0 && a.trace[2] <= a.trace[3]);
	CHECK_U64(a.trace[4], 0);
	const uint8_t *tail = zh_ring_answer(ring, slot) + slot->ans_size_bytes - ZH_ANS_NIC_RX_TAIL_BYTES;
	CHECK(tail[0] == 0xcf);
}

static void test_loop_step(void)
{
	enum { SLOTS = 8, ROUNDS = 5 };
	const uint32_t batch = ZH_ARRAY_SIZE(step_reqs);
	static uint8_t req_bufs[SLOTS][ZH_REQ_MAX_BYTES];
	static uint32_t tokens[ZH_ARRAY_SIZE(step_reqs)][ZH_TOKENS_MAX];
	struct krn_models models = { .count = 1, .default_idx = 0 };
	struct krn_scratch *scratch = calloc(1, sizeof(*scratch));
	struct test_ring tr;

	ZH_STATIC_ASSERT(ZH_ARRAY_SIZE(step_reqs) <= SLOTS, "one batch fits the ring");
	if (!scratch || test_ring_init(&tr, SLOTS)) {
		CHECK(!"set-up");
		free(scratch);
		return;
	}
	strcpy(models.models[0].name, "echo");
	models.models[0].arch = KRN_ARCH_ECHO;
	const struct zh_ring *ring = &tr.ring;

	CHECK(krn_loop_step(ring, &models, scratch) == 0);
	/* Several rounds so that the same slots are reused on later laps. */
	for (uint32_t round = 0; round < ROUNDS; round++) {
		uint64_t tickets[ZH_ARRAY_SIZE(step_reqs)];

		for (uint32_t i = 0; i < batch; i++) {
			const struct step_req *sr = &step_reqs[i];
			struct zh_slot *slot = zh_ring_produce_begin(ring, &tickets[i]);
			uint64_t id = 1000ull * round + i;

			CHECK(slot != NULL);
			if (!slot)
				goto out;
			uint8_t *buf = req_bufs[slot - ring->slots];
			for (uint32_t k = 0; k < sr->token_count; k++)
				tokens[i][k] = (uint32_t)(id * 7919u + k * 104729u) << (k % 4 * 8);
			uint32_t size = build_request(buf, ZH_REQ_MAX_BYTES, id, sr->model, sr->op, tokens[i],
						      sr->token_count, sr->trace);
			CHECK(size > 1);
			slot->req_addr = (uint64_t)(uintptr_t)buf;
			slot->req_size_bytes = size - (uint32_t)sr->truncate;
			slot->rx_tsc = 111 + id;
			slot->publish_tsc = 222 + id;
			zh_ring_publish(ring, slot, tickets[i]);
		}
		for (uint32_t i = 0; i < batch; i++)
			CHECK(krn_loop_step(ring, &models, scratch) == 1);
		CHECK(krn_loop_step(ring, &models, scratch) == 0);
		for (uint32_t i = 0; i < batch; i++) {
			struct zh_slot *slot = zh_ring_slot(ring, tickets[i]);
			uint64_t id = 1000ull * round + i;

			CHECK(zh_ring_is_done(ring, slot, tickets[i]));
			check_step_answer(ring, slot, &step_reqs[i], id, tokens[i], 111 + id, 222 + id);
			zh_ring_release(ring, slot, tickets[i]);
		}
	}
	CHECK_U64(check_ring_drained(ring, (uint64_t)ROUNDS * batch), 0);
out:
	test_ring_free(&tr);
	free(scratch);
}

int main(void)
{
	uint64_t start = now_ns();

	/* Timing lines reach stdout in order with stderr even when the runner captures both. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, watchdog_fired);
	alarm(WATCHDOG_S);
	RUN(test_answer_layout);
	RUN(test_state_laps);
	RUN(test_state_full_empty);
	RUN(test_loop_step);
	RUN(test_mt_1p1c);
	RUN(test_mt_2p2c);
	RUN(test_mt_loop_step);
	if (checks_failed) {
		printf("%s: %lu of %lu checks failed\n", TEST_NAME, checks_failed, checks_failed + checks_passed);
		return 1;
	}
	printf("%s: %lu checks passed (%.1f s)\n", TEST_NAME, checks_passed, (double)(now_ns() - start) / 1e9);
	return 0;
}
