/* SPDX-License-Identifier: MIT */
/*
 * bench_llama: CPU forward speed of a llama model on one thread: 256 greedy tokens from BOS, as
 * llama2.c's run.c measures it (tokens/s over the whole generation, and the time per token). The
 * run-time chosen matrix kernel and the portable one run side by side in the same process, interleaved,
 * and the ratio is printed. Both produce the same tokens, which is checked.
 *
 *   bench_llama [MODEL_DIR] [--rounds N] [--steps N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "krn_llama.h"
#include "krn_math.h"
#include "mgmt_model.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Greedy generation from BOS for `steps` forward passes; returns seconds, fills tokens. */
static double generate(const struct krn_llama *m, float *state, uint32_t steps, uint32_t *tokens)
{
	uint32_t token = m->cfg.bos_id;
	double t0 = now_s();

	for (uint32_t pos = 0; pos < steps; pos++) {
		float *logits = krn_llama_forward(m, state, token, pos, 0, 1);
		uint32_t best = 0;

		for (uint32_t i = 1; i < m->cfg.vocab_size; i++)
			if (logits[i] > logits[best])
				best = i;
		tokens[pos] = best;
		token = best;
	}
	return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *dir = "models/stories260K";
	uint32_t rounds = 21, steps = 256;
	struct mgmt_model model;
	char why[MGMT_WHY_SIZE];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
			steps = (uint32_t)strtoul(argv[++i], NULL, 10);
		else
			dir = argv[i];
	}
	memset(&model, 0, sizeof(model));
	if (mgmt_model_load("bench", dir, &model, why) != 0) {
		fprintf(stderr, "bench_llama: %s\n", why);
		return 1;
	}
	const struct krn_llama *m = &model.model.u.llama;
	if (model.model.arch != KRN_ARCH_LLAMA || steps == 0 || steps > m->cfg.seq_len || rounds == 0 || rounds > 1000) {
		fprintf(stderr, "bench_llama: needs a llama model, 1..%u steps, 1..1000 rounds\n", m->cfg.seq_len);
		return 1;
	}
	float *state = aligned_alloc(64, (model.state_floats * sizeof(float) + 63) & ~(size_t)63);
	uint32_t *tok_fast = malloc(steps * sizeof(uint32_t)), *tok_plain = malloc(steps * sizeof(uint32_t));
	double *t_fast = malloc(rounds * sizeof(double)), *t_plain = malloc(rounds * sizeof(double));
	const char *fast_name = krn_matmul_impl();

	/* Interleaved so that machine noise lands on both alike; one warm-up round each. */
	for (uint32_t r = 0; r <= rounds; r++) {
		krn_matmul_force_portable(0);
		double tf = generate(m, state, steps, tok_fast);
		krn_matmul_force_portable(1);
		double tp = generate(m, state, steps, tok_plain);
		if (r > 0) {
			t_fast[r - 1] = tf;
			t_plain[r - 1] = tp;
		}
	}
	krn_matmul_force_portable(0);
	int same = memcmp(tok_fast, tok_plain, steps * sizeof(uint32_t)) == 0;
	qsort(t_fast, rounds, sizeof(double), cmp_double);
	qsort(t_plain, rounds, sizeof(double), cmp_double);
	double med_fast = t_fast[rounds / 2], med_plain = t_plain[rounds / 2];

	printf("bench_llama: %s, %u greedy tokens from BOS, one thread, median of %u rounds\n", dir, steps, rounds);
	printf("%-24s %12s %14s\n", "matrix kernel", "tokens/s", "us/token");
	printf("%-24s %12.0f %14.2f\n", fast_name, steps / med_fast, med_fast / steps * 1e6);
	printf("%-24s %12.0f %14.2f\n", "portable (plain C loop)", steps / med_plain, med_plain / steps * 1e6);
	printf("ratio %s/portable: %.2fx; same tokens: %s\n", fast_name, med_plain / med_fast, same ? "yes" : "NO");
	free(state);
	free(tok_fast);
	free(tok_plain);
	free(t_fast);
	free(t_plain);
	mgmt_model_free(&model);
	return same ? 0 : 1;
}
