/* SPDX-License-Identifier: MIT */
/*
 * gpu_check: the CUDA tests and the doorbell benchmark, in one program for `make gpu-check`.
 *
 *   1. decode/encode on the device against the CPU: the same requests (valid, malformed, mutated)
 *      served by krn_serve_request on both; answers must match byte for byte, and every byte of the
 *      poisoned answer buffers past each answer must still hold the poison.
 *   2. the ring under load: CPU producer threads publish into the cuda-host ring served by the
 *      persistent kernel; every request is answered exactly once, in its own slot.
 *   3. cuda-gpudirect's device half: payloads in GPU payload memory, written where a NIC would write
 *      them, flushed when the GPU needs it, served by the persistent kernel (skipped with the reason on
 *      a GPU without GPUDirect RDMA).
 *   4. the doorbell benchmark: host publishes a request -> the device serves it -> the host sees DONE,
 *      one request in flight, measured three ways in one run: the persistent kernel, one kernel launch
 *      per request, one CUDA graph launch per request. p50/p99/p99.9 over >= 100k round trips.
 *   4. the device clock calibration (kernels/zh_clock.h): the calibration kernel's pair before the
 *      persistent kernel starts, then the persistent kernel's 1 s and 2 s later. %globaltimer never went
 *      back and its step is measured; every bound is under CLOCK_BOUND_NS_MAX; the first pair with the
 *      nominal rate predicts the second within their bounds, and the rate of the first two predicts
 *      the third within its bounds.
 *
 * Without a GPU it says so and exits 0: nothing is measured, nothing pretends.
 * Exit: 0 all passed (or no GPU), 1 a check failed, 2 usage.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include <cuda_runtime.h>

#include "gpu_cuda.h"
#include "krn_cuda.h"
#include "krn_msgpack.h"
#include "krn_request.h"
#include "krn_serve.h"
#include "zh_ring.h"

/* The loader is C (gcc-built); the kernel headers above were already seen with C++ linkage. */
extern "C" {
#include "mgmt_model.h"
}

#define ANS_STRIDE 1472u
#define BATCH_COUNT 4096u
#define LOAD_REQUESTS 1000000ull
#define LOAD_PRODUCERS 2u
#define BENCH_WARMUP 2000u
#define PAYLOAD_STRIDE 64u
/* The calibration's bound must stay under this: half a mapped-memory round trip (the doorbell
 * benchmark's persistent p50 is a couple of microseconds), a TSC tick and half a %globaltimer step (up
 * to 1 us on some parts) come to about 2 us; 5 us leaves room and still makes the probe's device stages
 * worth reading. */
#define CLOCK_BOUND_NS_MAX 5000u

static int failures;
static FILE *results;

#define CHECK(cond, ...)                                                   \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "gpu_check: %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CUDA_OK(call)                                                                      \
	do {                                                                               \
		cudaError_t e_ = (call);                                                   \
		if (e_ != cudaSuccess) {                                                   \
			fprintf(stderr, "gpu_check: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
				cudaGetErrorString(e_));                                   \
			exit(1);                                                           \
		}                                                                          \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct krn_models echo_models(void)
{
	struct krn_models m;

	memset(&m, 0, sizeof(m));
	m.count = 1;
	snprintf(m.models[0].name, sizeof(m.models[0].name), "echo");
	m.models[0].arch = KRN_ARCH_ECHO;
	return m;
}

/* An echo request {id, tokens} with the krn_mp writer; returns its size. */
static uint32_t make_request(uint8_t *buf, uint32_t cap, uint64_t id, const uint32_t *tokens, uint32_t count)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, cap);
	krn_mp_put_map(&w, 2);
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, id);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, count);
	for (uint32_t i = 0; i < count; i++)
		krn_mp_put_uint(&w, tokens[i]);
	return w.overflow ? 0 : krn_mp_writer_size(&w, buf);
}

/* Test 1: krn_serve_request on the device and on the CPU must agree byte for byte. */
static void check_codec_on_device(void)
{
	struct krn_models models = echo_models();
	std::vector<uint8_t> reqs;
	std::vector<uint32_t> offsets, sizes;
	uint64_t seed = 0x5eed;
	uint8_t buf[ZH_REQ_MAX_BYTES];

	for (uint32_t i = 0; i < BATCH_COUNT; i++) {
		uint32_t tokens[ZH_TOKENS_MAX + 1];
		uint32_t count = (uint32_t)(xorshift(&seed) % (i % 7 == 0 ? ZH_TOKENS_MAX + 1 : 16));
		for (uint32_t k = 0; k < count; k++)
			tokens[k] = (uint32_t)xorshift(&seed);
		uint32_t size = make_request(buf, sizeof(buf), xorshift(&seed), tokens, count);
		/* A third are mutated: flipped bytes, cut short, or garbage. */
		switch (i % 3) {
		case 1:
			for (int f = 0; f < 3 && size > 0; f++)
				buf[xorshift(&seed) % size] ^= (uint8_t)(1u << (xorshift(&seed) % 8));
			break;
		case 2:
			size = size ? (uint32_t)(xorshift(&seed) % size) : 0;
			break;
		}
		offsets.push_back((uint32_t)reqs.size());
		sizes.push_back(size);
		reqs.insert(reqs.end(), buf, buf + size);
	}
	reqs.push_back(0); /* never a zero-sized allocation */

	std::vector<uint8_t> cpu_ans((size_t)BATCH_COUNT * ANS_STRIDE, 0xa5), gpu_ans(cpu_ans.size());
	std::vector<uint32_t> cpu_sizes(BATCH_COUNT), gpu_sizes(BATCH_COUNT);
	std::vector<uint16_t> cpu_status(BATCH_COUNT), gpu_status(BATCH_COUNT);
	struct krn_scratch scratch;
	for (uint32_t i = 0; i < BATCH_COUNT; i++)
		cpu_sizes[i] = krn_serve_request(&models, reqs.data() + offsets[i], sizes[i],
						 cpu_ans.data() + (size_t)i * ANS_STRIDE, ANS_STRIDE, &scratch, NULL,
						 &cpu_status[i]);

	uint8_t *d_reqs, *d_ans;
	uint32_t *d_off, *d_size, *d_ans_size;
	uint16_t *d_status;
	struct krn_models *d_models;
	struct krn_scratch *d_scratch;
	CUDA_OK(cudaMalloc(&d_reqs, reqs.size()));
	CUDA_OK(cudaMalloc(&d_ans, gpu_ans.size()));
	CUDA_OK(cudaMalloc(&d_off, BATCH_COUNT * sizeof(uint32_t)));
	CUDA_OK(cudaMalloc(&d_size, BATCH_COUNT * sizeof(uint32_t)));
	CUDA_OK(cudaMalloc(&d_ans_size, BATCH_COUNT * sizeof(uint32_t)));
	CUDA_OK(cudaMalloc(&d_status, BATCH_COUNT * sizeof(uint16_t)));
	CUDA_OK(cudaMalloc(&d_models, sizeof(models)));
	CUDA_OK(cudaMalloc(&d_scratch, BATCH_COUNT * sizeof(struct krn_scratch)));
	CUDA_OK(cudaMemcpy(d_reqs, reqs.data(), reqs.size(), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(d_off, offsets.data(), BATCH_COUNT * sizeof(uint32_t), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(d_size, sizes.data(), BATCH_COUNT * sizeof(uint32_t), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(d_models, &models, sizeof(models), cudaMemcpyHostToDevice));
	/* Poison: any byte the device writes past its answer shows up as a difference. */
	CUDA_OK(cudaMemset(d_ans, 0xa5, gpu_ans.size()));
	CUDA_OK((cudaError_t)krn_cuda_launch_serve_batch(d_models, d_reqs, d_off, d_size, d_ans, ANS_STRIDE,
							 d_ans_size, d_status, d_scratch, BATCH_COUNT, 0));
	CUDA_OK(cudaDeviceSynchronize());
	CUDA_OK(cudaMemcpy(gpu_ans.data(), d_ans, gpu_ans.size(), cudaMemcpyDeviceToHost));
	CUDA_OK(cudaMemcpy(gpu_sizes.data(), d_ans_size, BATCH_COUNT * sizeof(uint32_t), cudaMemcpyDeviceToHost));
	CUDA_OK(cudaMemcpy(gpu_status.data(), d_status, BATCH_COUNT * sizeof(uint16_t), cudaMemcpyDeviceToHost));

	uint32_t mismatches = 0, ok_count = 0;
	for (uint32_t i = 0; i < BATCH_COUNT; i++) {
		const uint8_t *c = cpu_ans.data() + (size_t)i * ANS_STRIDE;
		const uint8_t *g = gpu_ans.data() + (size_t)i * ANS_STRIDE;
		/* Whole stride compared: the answer bytes and the untouched poison after them. */
		if (cpu_sizes[i] != gpu_sizes[i] || cpu_status[i] != gpu_status[i] || memcmp(c, g, ANS_STRIDE) != 0)
			mismatches++;
		ok_count += cpu_status[i] == ZH_STATUS_OK;
	}
	CHECK(mismatches == 0, "codec: %u of %u answers differ between device and CPU", mismatches, BATCH_COUNT);
	CHECK(ok_count > BATCH_COUNT / 4 && ok_count < BATCH_COUNT, "codec: the batch mixes good and bad requests (%u ok)", ok_count);
	printf("gpu_check: codec on the device: %u requests (%u ok), %u differences\n", BATCH_COUNT, ok_count, mismatches);
	fprintf(results, "codec requests=%u ok=%u differences=%u\n", BATCH_COUNT, ok_count, mismatches);
	cudaFree(d_reqs); cudaFree(d_ans); cudaFree(d_off); cudaFree(d_size); cudaFree(d_ans_size);
	cudaFree(d_status); cudaFree(d_models); cudaFree(d_scratch);
}

/* Test 1b: the models on the device against the CPU: stories260K's generate and logits, a random
 * ranker's score, each served by a whole block (thread 0 decodes and encodes, all threads compute). */
static uint32_t model_request(uint8_t *buf, const char *model, const char *op, const uint32_t *tokens, uint32_t count,
			      uint32_t max_new, uint32_t dense)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, ZH_REQ_MAX_BYTES);
	krn_mp_put_map(&w, 4 + (max_new != 0) + (dense != 0));
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, 9);
	krn_mp_put_cstr(&w, "model");
	krn_mp_put_cstr(&w, model);
	krn_mp_put_cstr(&w, "op");
	krn_mp_put_cstr(&w, op);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, count);
	for (uint32_t i = 0; i < count; i++)
		krn_mp_put_uint(&w, tokens[i]);
	if (max_new) {
		krn_mp_put_cstr(&w, "max_new");
		krn_mp_put_uint(&w, max_new);
	}
	if (dense) {
		krn_mp_put_cstr(&w, "dense");
		krn_mp_put_array(&w, dense);
		for (uint32_t i = 0; i < dense; i++)
			krn_mp_put_float32(&w, 0.5f - 0.1f * (float)i);
	}
	return krn_mp_writer_size(&w, buf);
}

/* A ring of `slot_count` slots served by `block_count` blocks of `thread_count` threads, with `models`;
 * everything else zero (cuda-host, no weights). */
static struct gpu_cuda_params ring_params(const struct krn_models *models, uint32_t slot_count, uint32_t block_count,
					 uint32_t thread_count)
{
	struct gpu_cuda_params params;

	memset(&params, 0, sizeof(params));
	params.slot_count = slot_count;
	params.ans_stride_bytes = ANS_STRIDE;
	params.block_count = block_count;
	params.thread_count = thread_count;
	params.models = models;
	return params;
}

static void check_models_on_device(void)
{
	static struct mgmt_model story;
	struct krn_models models;
	struct krn_ranker ranker;
	char why[256];
	uint64_t seed = 99;

	memset(&story, 0, sizeof(story));
	if (mgmt_model_load("stories260K", "models/stories260K", &story, why) != 0) {
		CHECK(0, "models: %s", why);
		return;
	}
	/* A random ranker: 1000 ids, 16-wide embedding, 4 dense, 32 -> 16 -> 2, mean bag, sigmoid. */
	memset(&ranker, 0, sizeof(ranker));
	ranker.cfg.vocab_size = 1000;
	ranker.cfg.embedding_dim = 16;
	ranker.cfg.dense_features = 4;
	ranker.cfg.layer_count = 3;
	ranker.cfg.layer_out[0] = 32;
	ranker.cfg.layer_out[1] = 16;
	ranker.cfg.layer_out[2] = 2;
	ranker.cfg.bag_mode = KRN_BAG_MEAN;
	ranker.cfg.output_act = KRN_OUTPUT_SIGMOID;
	uint64_t rn = krn_ranker_weight_floats(&ranker.cfg);
	std::vector<float> rarena(rn);
	for (uint64_t i = 0; i < rn; i++)
		rarena[i] = (float)((int64_t)(xorshift(&seed) % 2001) - 1000) / 2000.0f;
	krn_ranker_bind(&ranker, rarena.data());

	memset(&models, 0, sizeof(models));
	models.count = 2;
	models.models[0] = story.model;
	models.models[1].arch = KRN_ARCH_RANKER;
	models.models[1].u.ranker = ranker;
	snprintf(models.models[1].name, sizeof(models.models[1].name), "rank");
	uint64_t state = story.state_floats > krn_ranker_state_floats(&ranker.cfg) ? story.state_floats
										     : krn_ranker_state_floats(&ranker.cfg);

	struct gpu_cuda_params params;
	struct gpu_cuda_internals in;
	struct gpu_cuda *cuda = NULL;
	struct zh_ring ring;
	params = ring_params(&models, 16, 4, 128);
	params.model_arenas[0] = story.arena;
	params.model_arena_floats[0] = story.arena_floats;
	params.model_arenas[1] = rarena.data();
	params.model_arena_floats[1] = rn;
	params.model_state_floats = state;
	if (gpu_cuda_open(&params, &cuda, &ring, why, sizeof(why)) != 0) {
		CHECK(0, "models: open: %s", why);
		mgmt_model_free(&story);
		return;
	}
	gpu_cuda_get_internals(cuda, &in);

	static uint8_t reqs[4][ZH_REQ_MAX_BYTES];
	uint32_t sizes[4], offsets[4];
	uint32_t bos = 1, prompt[3] = { 1, 403, 407 }, bag[5] = { 3, 77, 512, 999, 3 };
	sizes[0] = model_request(reqs[0], "stories260K", "generate", &bos, 1, 40, 0);
	sizes[1] = model_request(reqs[1], "stories260K", "logits", prompt, 3, 0, 0);
	sizes[2] = model_request(reqs[2], "rank", "score", bag, 5, 0, 4);
	sizes[3] = model_request(reqs[3], "stories260K", "generate", prompt, 3, 60, 0);
	std::vector<uint8_t> flat;
	for (int i = 0; i < 4; i++) {
		offsets[i] = (uint32_t)flat.size();
		flat.insert(flat.end(), reqs[i], reqs[i] + sizes[i]);
	}

	/* The CPU's answers, through the same serving code. */
	struct krn_scratch cpu;
	memset(&cpu, 0, sizeof(cpu));
	std::vector<float> cpu_state(state);
	cpu.model_state = cpu_state.data();
	cpu.model_state_floats = state;
	uint8_t cpu_ans[4][ANS_STRIDE];
	uint32_t cpu_size[4];
	uint16_t cpu_status[4];
	for (int i = 0; i < 4; i++)
		cpu_size[i] = krn_serve_request(&models, reqs[i], sizes[i], cpu_ans[i], ANS_STRIDE, &cpu, NULL, &cpu_status[i]);

	uint8_t *d_reqs, *d_ans;
	uint32_t *d_off, *d_size, *d_ans_size;
	uint16_t *d_status;
	CUDA_OK(cudaMalloc(&d_reqs, flat.size()));
	CUDA_OK(cudaMalloc(&d_ans, 4 * ANS_STRIDE));
	CUDA_OK(cudaMalloc(&d_off, sizeof(offsets)));
	CUDA_OK(cudaMalloc(&d_size, sizeof(sizes)));
	CUDA_OK(cudaMalloc(&d_ans_size, 4 * sizeof(uint32_t)));
	CUDA_OK(cudaMalloc(&d_status, 4 * sizeof(uint16_t)));
	CUDA_OK(cudaMemcpy(d_reqs, flat.data(), flat.size(), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(d_off, offsets, sizeof(offsets), cudaMemcpyHostToDevice));
	CUDA_OK(cudaMemcpy(d_size, sizes, sizeof(sizes), cudaMemcpyHostToDevice));
	CUDA_OK((cudaError_t)krn_cuda_launch_serve_batch(in.models_dev, d_reqs, d_off, d_size, d_ans, ANS_STRIDE,
							 d_ans_size, d_status, in.scratch_dev, 4, in.stream));
	CUDA_OK(cudaStreamSynchronize((cudaStream_t)in.stream));
	uint8_t gpu_ans[4][ANS_STRIDE];
	uint32_t gpu_size[4];
	uint16_t gpu_status[4];
	CUDA_OK(cudaMemcpy(gpu_ans, d_ans, sizeof(gpu_ans), cudaMemcpyDeviceToHost));
	CUDA_OK(cudaMemcpy(gpu_size, d_ans_size, sizeof(gpu_size), cudaMemcpyDeviceToHost));
	CUDA_OK(cudaMemcpy(gpu_status, d_status, sizeof(gpu_status), cudaMemcpyDeviceToHost));

	static const char *const names[4] = { "generate 40 from BOS", "logits top-5", "ranker score",
					      "generate 60 from a prompt" };
	uint32_t same = 0;
	for (int i = 0; i < 4; i++) {
		int ok = cpu_status[i] == ZH_STATUS_OK && gpu_status[i] == ZH_STATUS_OK;
		/* Token ids must agree exactly; floats (logits, scores) may differ in their last bits
		 * (the GPU's expf is not glibc's), so byte equality is reported, not required. */
		int exact = ok && cpu_size[i] == gpu_size[i] && memcmp(cpu_ans[i], gpu_ans[i], cpu_size[i]) == 0;
		CHECK(ok, "models: %s: status cpu %u gpu %u", names[i], cpu_status[i], gpu_status[i]);
		if (i == 0 || i == 3)
			CHECK(exact, "models: %s: the device generated other tokens than the CPU", names[i]);
		same += (uint32_t)exact;
		printf("gpu_check: model on the device: %-26s status %u/%u, %s\n", names[i], cpu_status[i], gpu_status[i],
		       exact ? "byte-identical to the CPU" : "differs from the CPU in its bytes");
		fprintf(results, "model %s cpu_status=%u gpu_status=%u identical=%d\n", names[i], cpu_status[i],
			gpu_status[i], exact);
	}
	(void)same;
	cudaFree(d_reqs); cudaFree(d_ans); cudaFree(d_off); cudaFree(d_size); cudaFree(d_ans_size); cudaFree(d_status);
	gpu_cuda_close(cuda);
	mgmt_model_free(&story);
}

/* Test 2: CPU producers against the persistent kernel through the cuda-host ring. */
struct producer {
	pthread_t thread;
	uint32_t idx;
	const struct zh_ring *ring;
	uint8_t *payloads;          /* [slot_count][PAYLOAD_STRIDE], registered with the GPU */
	struct gpu_cuda *cuda;
	uint64_t count;
	uint64_t answered;
	uint64_t wrong;
};

/* The echo answer to a two-token request: {id, status, tokens}, built the way the device builds it. */
static uint32_t echo_answer(uint8_t *buf, uint32_t cap, uint64_t id, const uint32_t tokens[2])
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, cap);
	krn_answer_head(&w, 1, 1, id, ZH_STATUS_OK, NULL);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, 2);
	krn_mp_put_uint(&w, tokens[0]);
	krn_mp_put_uint(&w, tokens[1]);
	return krn_mp_writer_size(&w, buf);
}

static void *producer_main(void *arg)
{
	struct producer *p = (struct producer *)arg;
	const struct zh_ring *ring = p->ring;
	std::vector<uint64_t> fifo(ring->slot_count);
	std::vector<uint64_t> seq_of(ring->slot_count);
	uint32_t head = 0, pending = 0;
	uint64_t sent = 0;
	uint64_t deadline = now_ns() + 120ull * 1000000000ull;

	while (p->answered < p->count && now_ns() < deadline) {
		uint64_t ticket;
		struct zh_slot *slot;

		if (sent < p->count && (slot = zh_ring_produce_begin(ring, &ticket)) != NULL) {
			uint32_t idx = (uint32_t)(ticket & ring->slot_mask);
			uint8_t *payload = p->payloads + (size_t)idx * PAYLOAD_STRIDE;
			uint32_t tokens[2] = { p->idx, (uint32_t)sent };

			slot->req_size_bytes = make_request(payload, PAYLOAD_STRIDE, sent, tokens, 2);
			slot->req_addr = gpu_cuda_payload_addr(p->cuda, payload);
			slot->producer_idx = p->idx;
			seq_of[idx] = sent;
			zh_ring_publish(ring, slot, ticket);
			fifo[(head + pending++) & ring->slot_mask] = ticket;
			sent++;
		}
		while (pending > 0) {
			uint64_t t = fifo[head];
			struct zh_slot *s = zh_ring_slot(ring, t);
			if (!zh_ring_is_done(ring, s, t))
				break;
			uint32_t idx = (uint32_t)(t & ring->slot_mask);
			uint8_t expect[64];
			uint32_t tokens[2] = { p->idx, (uint32_t)seq_of[idx] };
			uint32_t n = echo_answer(expect, sizeof(expect), seq_of[idx], tokens);
			if (s->ans_size_bytes != n || memcmp(zh_ring_answer(ring, s), expect, n) != 0)
				p->wrong++;
			zh_ring_release(ring, s, t);
			head = (head + 1) & ring->slot_mask;
			pending--;
			p->answered++;
		}
	}
	return NULL;
}

static void check_ring_under_load(void)
{
	struct krn_models models = echo_models();
	struct gpu_cuda_params params;
	struct gpu_cuda *cuda = NULL;
	struct zh_ring ring;
	char why[256];

	params = ring_params(&models, 1024, 8, 32);
	int rc = gpu_cuda_open(&params, &cuda, &ring, why, sizeof(why));
	CHECK(rc == 0, "ring: open: %s", why);
	if (rc)
		return;
	uint8_t *payloads = (uint8_t *)aligned_alloc(4096, (size_t)ring.slot_count * PAYLOAD_STRIDE);
	CHECK(gpu_cuda_register_host(cuda, payloads, (size_t)ring.slot_count * PAYLOAD_STRIDE, why, sizeof(why)) == 0,
	      "ring: register: %s", why);
	CHECK(gpu_cuda_start(cuda, why, sizeof(why)) == 0, "ring: start: %s", why);

	/* Each producer owns the payload area of the slots it holds; slots are exclusive while held. */
	struct producer prod[LOAD_PRODUCERS];
	uint64_t started = now_ns();
	for (uint32_t i = 0; i < LOAD_PRODUCERS; i++) {
		prod[i] = producer();
		prod[i].idx = i;
		prod[i].ring = &ring;
		prod[i].payloads = payloads;
		prod[i].cuda = cuda;
		prod[i].count = LOAD_REQUESTS / LOAD_PRODUCERS;
		pthread_create(&prod[i].thread, NULL, producer_main, &prod[i]);
	}
	uint64_t answered = 0, wrong = 0;
	for (uint32_t i = 0; i < LOAD_PRODUCERS; i++) {
		pthread_join(prod[i].thread, NULL);
		answered += prod[i].answered;
		wrong += prod[i].wrong;
	}
	double seconds = (double)(now_ns() - started) / 1e9;
	uint64_t age = gpu_cuda_heartbeat_age_ms(cuda, now_ns());
	CHECK(answered == LOAD_REQUESTS, "ring: %llu of %llu answered", (unsigned long long)answered, LOAD_REQUESTS);
	CHECK(wrong == 0, "ring: %llu answers in the wrong slot or wrong", (unsigned long long)wrong);
	CHECK(gpu_cuda_stop(cuda, 2000) == 0, "ring: the persistent kernel did not stop");
	printf("gpu_check: ring under load: %llu requests from %u producers, %llu wrong, %.2f Mreq/s, heartbeat age %llu ms\n",
	       (unsigned long long)answered, LOAD_PRODUCERS, (unsigned long long)wrong, answered / seconds / 1e6,
	       (unsigned long long)age);
	fprintf(results, "ring requests=%llu producers=%u wrong=%llu mreq_per_s=%.3f\n",
		(unsigned long long)answered, LOAD_PRODUCERS, (unsigned long long)wrong, answered / seconds / 1e6);
	gpu_cuda_close(cuda);
	free(payloads);
}

/* Test 3: one request in flight, host publish -> device DONE seen by the host. */
enum mode { MODE_PERSISTENT, MODE_LAUNCH, MODE_GRAPH };
static const char *const mode_names[] = { "persistent kernel", "kernel launch per request", "CUDA graph per request" };

static void bench_mode(enum mode mode, uint32_t round_trips, std::vector<double> *rtt_us)
{
	struct krn_models models = echo_models();
	struct gpu_cuda_params params;
	struct gpu_cuda_internals in;
	struct gpu_cuda *cuda = NULL;
	struct zh_ring ring;
	cudaGraphExec_t exec = NULL;
	cudaGraph_t graph = NULL;
	char why[256];

	params = ring_params(&models, 64, 1, 32);
	if (gpu_cuda_open(&params, &cuda, &ring, why, sizeof(why)) != 0) {
		CHECK(0, "bench: open: %s", why);
		return;
	}
	gpu_cuda_get_internals(cuda, &in);
	uint8_t *payloads = (uint8_t *)aligned_alloc(4096, (size_t)ring.slot_count * PAYLOAD_STRIDE);
	CHECK(gpu_cuda_register_host(cuda, payloads, (size_t)ring.slot_count * PAYLOAD_STRIDE, why, sizeof(why)) == 0,
	      "bench: register: %s", why);
	if (mode == MODE_PERSISTENT) {
		CHECK(gpu_cuda_start(cuda, why, sizeof(why)) == 0, "bench: start: %s", why);
	} else if (mode == MODE_GRAPH) {
		cudaStream_t s = (cudaStream_t)in.stream;
		CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
		CUDA_OK((cudaError_t)krn_cuda_launch_step(in.dev_view, in.models_dev, in.scratch_dev, s));
		CUDA_OK(cudaStreamEndCapture(s, &graph));
		CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
	}
	uint32_t tokens[4] = { 1, 2, 3, 4 };
	for (uint32_t i = 0; i < BENCH_WARMUP + round_trips; i++) {
		uint64_t ticket;
		struct zh_slot *slot = zh_ring_produce_begin(&ring, &ticket);
		if (!slot) {
			CHECK(0, "bench: ring full with one request in flight");
			break;
		}
		uint8_t *payload = payloads + (size_t)(ticket & ring.slot_mask) * PAYLOAD_STRIDE;
		slot->req_size_bytes = make_request(payload, PAYLOAD_STRIDE, i, tokens, 4);
		slot->req_addr = gpu_cuda_payload_addr(cuda, payload);
		uint64_t t0 = now_ns();
		zh_ring_publish(&ring, slot, ticket);
		if (mode == MODE_LAUNCH)
			CUDA_OK((cudaError_t)krn_cuda_launch_step(in.dev_view, in.models_dev, in.scratch_dev, in.stream));
		else if (mode == MODE_GRAPH)
			CUDA_OK(cudaGraphLaunch(exec, (cudaStream_t)in.stream));
		uint64_t spin_deadline = t0 + 1000000000ull;
		while (!zh_ring_is_done(&ring, slot, ticket)) {
			if (now_ns() > spin_deadline) {
				CHECK(0, "bench: %s: no answer within 1 s", mode_names[mode]);
				goto out;
			}
		}
		uint64_t t1 = now_ns();
		CHECK(slot->ans_status == ZH_STATUS_OK, "bench: status %u", slot->ans_status);
		zh_ring_release(&ring, slot, ticket);
		if (mode != MODE_PERSISTENT)
			CUDA_OK(cudaStreamSynchronize((cudaStream_t)in.stream));
		if (i >= BENCH_WARMUP)
			rtt_us->push_back((double)(t1 - t0) / 1000.0);
	}
out:
	if (mode == MODE_PERSISTENT)
		CHECK(gpu_cuda_stop(cuda, 2000) == 0, "bench: the persistent kernel did not stop");
	if (exec)
		cudaGraphExecDestroy(exec);
	if (graph)
		cudaGraphDestroy(graph);
	gpu_cuda_close(cuda);
	free(payloads);
}

/* Test 4: the device clock calibration, through the calibration kernel and then the persistent one. */
static int clock_agrees(const struct zh_clock_map *from, const struct zh_clock_map *to, int64_t *err_ns,
			uint64_t *bound_ns)
{
	uint64_t map_bound_ns;
	uint64_t predicted = zh_clock_to_tsc(from, to->dclk_ref, &map_bound_ns);
	int64_t err_ticks = (int64_t)(predicted - to->tsc_ref);

	*err_ns = (int64_t)((double)err_ticks * 1e9 / (double)to->tsc_hz);
	*bound_ns = map_bound_ns + to->bound_ns;
	return (uint64_t)(*err_ns < 0 ? -*err_ns : *err_ns) <= *bound_ns;
}

static void check_clock(void)
{
	struct krn_models models = echo_models();
	struct gpu_cuda_params params;
	struct gpu_cuda *cuda = NULL;
	struct zh_clock_map m[3];
	struct zh_ring ring;
	struct timespec second = { 1, 0 };
	char why[256];

	params = ring_params(&models, 64, 2, 32);
	if (gpu_cuda_open(&params, &cuda, &ring, why, sizeof(why)) != 0) {
		CHECK(0, "clock: open: %s", why);
		return;
	}
	CHECK(gpu_cuda_start(cuda, why, sizeof(why)) == 0, "clock: start: %s", why);
	gpu_cuda_clock_map(cuda, &m[0]);
	nanosleep(&second, NULL);
	CHECK(gpu_cuda_clock_refresh(cuda) == 0, "clock: the persistent kernel did not answer (1 s)");
	gpu_cuda_clock_map(cuda, &m[1]);
	nanosleep(&second, NULL);
	CHECK(gpu_cuda_clock_refresh(cuda) == 0, "clock: the persistent kernel did not answer (2 s)");
	gpu_cuda_clock_map(cuda, &m[2]);
	CHECK(gpu_cuda_stop(cuda, 2000) == 0, "clock: the persistent kernel did not stop");

	CHECK(m[0].sample_count == 1 && m[1].sample_count == 2 && m[2].sample_count == 3,
	      "clock: %u, %u, %u samples", m[0].sample_count, m[1].sample_count, m[2].sample_count);
	CHECK(gpu_cuda_clock_backwards(cuda) == 0, "clock: %%globaltimer went back %llu times",
	      (unsigned long long)gpu_cuda_clock_backwards(cuda));
	CHECK(m[0].step_ns > 0, "clock: no %%globaltimer step measured");
	CHECK(m[0].dclk_ref < m[1].dclk_ref && m[1].dclk_ref < m[2].dclk_ref, "clock: %%globaltimer not monotonic "
	      "across calibrations");
	for (int i = 0; i < 3; i++)
		CHECK(m[i].bound_ns > 0 && m[i].bound_ns < CLOCK_BOUND_NS_MAX, "clock: calibration %d: bound %llu ns "
		      "(at most %u)", i, (unsigned long long)m[i].bound_ns, CLOCK_BOUND_NS_MAX);
	CHECK(!m[0].rate_measured && m[1].rate_measured && m[2].rate_measured, "clock: the rate was not measured");
	int64_t err01, err12;
	uint64_t bound01, bound12;
	CHECK(clock_agrees(&m[0], &m[1], &err01, &bound01), "clock: the first pair (nominal rate) misses the "
	      "second by %lld ns (bound %llu)", (long long)err01, (unsigned long long)bound01);
	CHECK(clock_agrees(&m[1], &m[2], &err12, &bound12), "clock: the measured rate misses the third pair by "
	      "%lld ns (bound %llu)", (long long)err12, (unsigned long long)bound12);

	printf("\ndevice clock calibration (%%globaltimer -> host TSC at %.3f MHz), bound limit %u ns\n",
	       (double)m[0].tsc_hz / 1e6, CLOCK_BOUND_NS_MAX);
	printf("%-34s %9s %9s %9s %9s\n", "calibration", "bound_ns", "rtt_ns", "step_ns", "samples");
	static const char *const names[] = { "calibration kernel (t = 0)", "persistent kernel (t = 1 s)",
					     "persistent kernel (t = 2 s)" };
	for (int i = 0; i < 3; i++) {
		printf("%-34s %9llu %9llu %9llu %9u\n", names[i], (unsigned long long)m[i].bound_ns,
		       (unsigned long long)m[i].rtt_ns, (unsigned long long)m[i].step_ns, m[i].sample_count);
		fprintf(results, "clock %d bound_ns=%llu rtt_ns=%llu step_ns=%llu dclk_ref=%llu tsc_ref=%llu\n", i,
			(unsigned long long)m[i].bound_ns, (unsigned long long)m[i].rtt_ns,
			(unsigned long long)m[i].step_ns, (unsigned long long)m[i].dclk_ref,
			(unsigned long long)m[i].tsc_ref);
	}
	printf("drift %+.3f ppm (+-%llu ppb); t=0 nominal -> t=1 s: %+lld ns (bound %llu); t=1 s rate -> t=2 s: "
	       "%+lld ns (bound %llu); %%globaltimer went back %llu times\n", zh_clock_drift_ppm(&m[2]),
	       (unsigned long long)m[2].rate_bound_ppb, (long long)err01, (unsigned long long)bound01,
	       (long long)err12, (unsigned long long)bound12, (unsigned long long)gpu_cuda_clock_backwards(cuda));
	fprintf(results, "clock drift_ppm=%.4f rate_bound_ppb=%llu err01_ns=%lld bound01_ns=%llu err12_ns=%lld "
		"bound12_ns=%llu backwards=%llu\n", zh_clock_drift_ppm(&m[2]), (unsigned long long)m[2].rate_bound_ppb,
		(long long)err01, (unsigned long long)bound01, (long long)err12, (unsigned long long)bound12,
		(unsigned long long)gpu_cuda_clock_backwards(cuda));
	gpu_cuda_close(cuda);
}

static double percentile(std::vector<double> &v, double q)
{
	if (v.empty())
		return 0.0;
	size_t k = (size_t)(q * (double)(v.size() - 1) + 0.5);
	return v[k];
}

/*
 * Test 3: cuda-gpudirect's device half, without a NIC: request payloads in the GPU payload memory
 * (64 KiB aligned, SYNC_MEMOPS), written there by cudaMemcpy where a NIC would write by DMA, flushed
 * when the GPU does not order such writes, published, served by the persistent kernel. Skipped, with
 * the reason, on a GPU without GPUDirect RDMA.
 */
static void check_gpudirect_payloads(void)
{
	const uint32_t requests = 20000;
	struct krn_models models = echo_models();
	struct gpu_cuda_params params;
	struct gpu_cuda *cuda = NULL;
	struct zh_ring ring;
	char why[256];
	void *payload_dev = NULL;
	size_t len = 0, page = 0;
	int needs_flush = 0;

	params = ring_params(&models, 64, 2, 32);
	params.gpudirect = 1;
	int rc = gpu_cuda_open(&params, &cuda, &ring, why, sizeof(why));
	if (rc == -ENOTSUP) {
		printf("gpu_check: gpudirect payloads: SKIP: %s\n", why);
		fprintf(results, "gpudirect skipped=\"%s\"\n", why);
		return;
	}
	CHECK(rc == 0, "gpudirect: open: %s", why);
	if (rc)
		return;
	rc = gpu_cuda_alloc_payload(cuda, (size_t)ring.slot_count * PAYLOAD_STRIDE, &payload_dev, &len, &page,
				    &needs_flush, why, sizeof(why));
	CHECK(rc == 0, "gpudirect: payload memory: %s", why);
	if (rc) {
		gpu_cuda_close(cuda);
		return;
	}
	CHECK(((uintptr_t)payload_dev % 65536u) == 0 && len % 65536u == 0 && page == 65536u,
	      "gpudirect: payload memory %p, %zu bytes, %zu-byte pages: not whole 64 KiB pages", payload_dev, len, page);
	CHECK(gpu_cuda_payload_addr(cuda, (uint8_t *)payload_dev + 100) == (uint64_t)(uintptr_t)payload_dev + 100,
	      "gpudirect: a payload in GPU memory must be read where it lies");
	CHECK(gpu_cuda_start(cuda, why, sizeof(why)) == 0, "gpudirect: start: %s", why);

	uint64_t wrong = 0, answered = 0, flush_failed = 0;
	uint64_t deadline = now_ns() + 60ull * 1000000000ull;
	for (uint32_t i = 0; i < requests && now_ns() < deadline; i++) {
		uint64_t ticket;
		struct zh_slot *slot = zh_ring_produce_begin(&ring, &ticket);
		uint8_t req[PAYLOAD_STRIDE];
		uint32_t tokens[2] = { 7, i };

		CHECK(slot != NULL, "gpudirect: ring full with one request in flight");
		if (!slot)
			break;
		uint32_t idx = (uint32_t)(ticket & ring.slot_mask);
		uint8_t *dst = (uint8_t *)payload_dev + (size_t)idx * PAYLOAD_STRIDE;
		uint32_t size = make_request(req, sizeof(req), i, tokens, 2);
		/* Where the NIC would DMA: SYNC_MEMOPS makes this copy complete before it returns. */
		CUDA_OK(cudaMemcpy(dst, req, size, cudaMemcpyHostToDevice));
		if (needs_flush && gpu_cuda_flush_rdma_writes(cuda) != 0)
			flush_failed++;
		slot->req_addr = gpu_cuda_payload_addr(cuda, dst);
		slot->req_size_bytes = size;
		slot->producer_idx = 0;
		zh_ring_publish(&ring, slot, ticket);
		while (!zh_ring_is_done(&ring, slot, ticket) && now_ns() < deadline)
			;
		if (!zh_ring_is_done(&ring, slot, ticket))
			break;
		uint8_t expect[64];
		uint32_t n = echo_answer(expect, sizeof(expect), i, tokens);
		if (slot->ans_size_bytes != n || memcmp(zh_ring_answer(&ring, slot), expect, n) != 0)
			wrong++;
		zh_ring_release(&ring, slot, ticket);
		answered++;
	}
	CHECK(answered == requests, "gpudirect: %llu of %u answered", (unsigned long long)answered, requests);
	CHECK(wrong == 0, "gpudirect: %llu answers wrong", (unsigned long long)wrong);
	CHECK(flush_failed == 0, "gpudirect: %llu flushes failed", (unsigned long long)flush_failed);
	CHECK(gpu_cuda_stop(cuda, 2000) == 0, "gpudirect: the persistent kernel did not stop");
	printf("gpu_check: gpudirect payloads: %llu requests read from GPU memory, %llu wrong, writes %s\n",
	       (unsigned long long)answered, (unsigned long long)wrong,
	       needs_flush ? "flushed before READY (the GPU does not order them)" : "ordered by the GPU (no flush)");
	fprintf(results, "gpudirect requests=%llu wrong=%llu needs_flush=%d\n", (unsigned long long)answered,
		(unsigned long long)wrong, needs_flush);
	gpu_cuda_close(cuda);
}

int main(int argc, char **argv)
{
	uint32_t round_trips = 100000;
	const char *results_path = argc > 1 ? argv[1] : "gpu-check-results.txt";
	char why[256];
	int count = gpu_cuda_probe(why, sizeof(why));

	if (argc > 2)
		round_trips = (uint32_t)strtoul(argv[2], NULL, 10);
	if (count <= 0) {
		printf("gpu_check: no GPU here (%s): nothing measured, nothing to check\n", why);
		return 0;
	}
	char desc[256];
	gpu_cuda_describe(0, desc, sizeof(desc));
	results = fopen(results_path, "w");
	if (!results) {
		fprintf(stderr, "gpu_check: %s: %s\n", results_path, strerror(errno));
		return 2;
	}
	int driver = 0;
	cudaDriverGetVersion(&driver);
	printf("gpu_check: %s, driver %d, runtime %d\n", desc, driver, gpu_cuda_runtime_version());
	fprintf(results, "device %s driver=%d runtime=%d\n", desc, driver, gpu_cuda_runtime_version());

	check_codec_on_device();
	check_models_on_device();
	check_ring_under_load();
	check_gpudirect_payloads();
	check_clock();

	std::vector<double> rtt[3];
	for (int m = MODE_PERSISTENT; m <= MODE_GRAPH; m++) {
		bench_mode((enum mode)m, round_trips, &rtt[m]);
		std::sort(rtt[m].begin(), rtt[m].end());
	}
	fprintf(results, "mode,samples,p50_us,p90_us,p99_us,p999_us,max_us\n");
	printf("\ndoorbell round trip (host publish -> device DONE seen by the host), one request in flight\n");
	printf("%-28s %9s %9s %9s %9s %9s\n", "mode", "samples", "p50_us", "p99_us", "p99.9_us", "max_us");
	for (int m = MODE_PERSISTENT; m <= MODE_GRAPH; m++) {
		std::vector<double> &v = rtt[m];
		double mx = v.empty() ? 0.0 : v.back();
		printf("%-28s %9zu %9.2f %9.2f %9.2f %9.2f\n", mode_names[m], v.size(), percentile(v, 0.5),
		       percentile(v, 0.99), percentile(v, 0.999), mx);
		fprintf(results, "%s,%zu,%.3f,%.3f,%.3f,%.3f,%.3f\n", mode_names[m], v.size(), percentile(v, 0.5),
			percentile(v, 0.9), percentile(v, 0.99), percentile(v, 0.999), mx);
		CHECK(v.size() == round_trips, "bench: %s: %zu of %u round trips", mode_names[m], v.size(), round_trips);
	}
	if (!rtt[MODE_PERSISTENT].empty() && !rtt[MODE_LAUNCH].empty() && !rtt[MODE_GRAPH].empty())
		printf("p50 ratio: launch/persistent %.2fx, graph/persistent %.2fx\n",
		       percentile(rtt[MODE_LAUNCH], 0.5) / percentile(rtt[MODE_PERSISTENT], 0.5),
		       percentile(rtt[MODE_GRAPH], 0.5) / percentile(rtt[MODE_PERSISTENT], 0.5));
	fclose(results);
	printf("gpu_check: %s (%d failure(s)); full results in %s\n", failures ? "FAILED" : "passed", failures,
	       results_path);
	return failures ? 1 : 0;
}
