/* SPDX-License-Identifier: MIT */
/*
 * bench_ranker: requests/s of the ranker on the cpu device's serving path, in-process, one thread:
 * krn_serve_request on a `score` request (decode, embedding bag, MLP, encode), beside the same
 * request shape served by the echo model (decode and encode only) in the same run, interleaved. The
 * ratio says what the model costs over the protocol around it.
 *
 *   bench_ranker MODEL_DIR [--tokens N] [--seconds S] [--rounds R]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "krn_msgpack.h"
#include "krn_serve.h"
#include "mgmt_model.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t make_request(uint8_t *buf, const char *model, uint32_t tokens, uint32_t vocab, uint32_t dense)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, ZH_REQ_MAX_BYTES);
	krn_mp_put_map(&w, dense ? 4 : 3);
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, 42);
	krn_mp_put_cstr(&w, "model");
	krn_mp_put_cstr(&w, model);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, tokens);
	for (uint32_t i = 0; i < tokens; i++)
		krn_mp_put_uint(&w, (i * 7919u) % vocab);
	if (dense) {
		krn_mp_put_cstr(&w, "dense");
		krn_mp_put_array(&w, dense);
		for (uint32_t i = 0; i < dense; i++)
			krn_mp_put_float32(&w, 0.25f * (float)i);
	}
	return krn_mp_writer_size(&w, buf);
}

/* Serve `req` for about `seconds`; returns requests/s. */
static double run(const struct krn_models *models, struct krn_scratch *scratch, const uint8_t *req, uint32_t size,
		  double seconds, uint16_t *status)
{
	uint8_t ans[ZH_ANS_MAX_BYTES];
	uint64_t n = 0;
	double t0 = now_s(), t;

	do {
		for (int i = 0; i < 1000; i++)
			krn_serve_request(models, req, size, ans, sizeof(ans), scratch, NULL, status);
		n += 1000;
		t = now_s();
	} while (t - t0 < seconds);
	return (double)n / (t - t0);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	uint32_t tokens = 32, rounds = 5;
	double seconds = 1.0;
	struct mgmt_model rank;
	static struct krn_models models;
	static struct krn_scratch scratch;
	static uint8_t req_rank[ZH_REQ_MAX_BYTES], req_echo[ZH_REQ_MAX_BYTES];
	char why[MGMT_WHY_SIZE];

	if (argc < 2) {
		fprintf(stderr, "usage: bench_ranker MODEL_DIR [--tokens N] [--seconds S] [--rounds R]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--tokens") == 0)
			tokens = (uint32_t)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = (uint32_t)atoi(argv[i + 1]);
	}
	if (tokens == 0 || tokens > ZH_TOKENS_MAX || seconds <= 0 || seconds > 30 || rounds == 0 || rounds > 50) {
		fprintf(stderr, "bench_ranker: --tokens 1..%u, --seconds 0..30, --rounds 1..50\n", ZH_TOKENS_MAX);
		return 2;
	}
	memset(&rank, 0, sizeof(rank));
	if (mgmt_model_load("rank", argv[1], &rank, why) != 0 || rank.model.arch != KRN_ARCH_RANKER) {
		fprintf(stderr, "bench_ranker: %s\n", why[0] ? why : "not a ranker");
		return 1;
	}
	const struct krn_ranker_config *c = &rank.model.u.ranker.cfg;
	models.count = 2;
	models.models[0] = rank.model;
	snprintf(models.models[1].name, sizeof(models.models[1].name), "echo");
	models.models[1].arch = KRN_ARCH_ECHO;
	scratch.model_state = malloc(rank.state_floats * sizeof(float));
	scratch.model_state_floats = rank.state_floats;
	uint32_t n_rank = make_request(req_rank, "rank", tokens, c->vocab_size, c->dense_features);
	uint32_t n_echo = make_request(req_echo, "echo", tokens, c->vocab_size, 0);
	double *r = calloc(rounds, sizeof(double)), *e = calloc(rounds, sizeof(double));
	uint16_t st_rank = 0, st_echo = 0;

	for (uint32_t i = 0; i < rounds; i++) {
		r[i] = run(&models, &scratch, req_rank, n_rank, seconds, &st_rank);
		e[i] = run(&models, &scratch, req_echo, n_echo, seconds, &st_echo);
	}
	qsort(r, rounds, sizeof(double), cmp);
	qsort(e, rounds, sizeof(double), cmp);
	printf("bench_ranker: %s: vocab %u, embedding %u (%s), %u dense, layers", argv[1], c->vocab_size,
	       c->embedding_dim, c->bag_mode == KRN_BAG_MEAN ? "mean" : "sum", c->dense_features);
	for (uint32_t i = 0; i < c->layer_count; i++)
		printf(" %u", c->layer_out[i]);
	printf("; %u tokens per request; one thread, median of %u rounds of %.1f s\n", tokens, rounds, seconds);
	printf("%-36s %12s %10s\n", "request", "req/s", "us/req");
	printf("%-36s %12.0f %10.2f\n", "score (decode, model, encode)", r[rounds / 2], 1e6 / r[rounds / 2]);
	printf("%-36s %12.0f %10.2f\n", "echo (decode, encode)", e[rounds / 2], 1e6 / e[rounds / 2]);
	printf("ratio score/echo: %.3f; statuses: score %u, echo %u\n", r[rounds / 2] / e[rounds / 2], st_rank, st_echo);
	free(r);
	free(e);
	free(scratch.model_state);
	mgmt_model_free(&rank);
	return st_rank == 0 && st_echo == 0 ? 0 : 1;
}
