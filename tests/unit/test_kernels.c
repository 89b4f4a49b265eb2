/* SPDX-License-Identifier: MIT */
/*
 * test_kernels: the model kernels against plain float64 references on random shapes, and the serving
 * logic of the llama and ranker architectures (sampling, stops, top-k, KV isolation).
 *
 * Error bounds (F32 kernels against float64): a dot product of n terms may differ from the exact value
 * by at most about n * 2^-24 * sum |w_j x_j| (each addition rounds once); we allow 4 * n * 2^-24 of the
 * absolute sum, plus 1e-30. Whole forward passes compose many such steps: logits must agree within a
 * relative 2e-4 of the largest logit magnitude, which a wrong index or a missing term exceeds by far.
 *
 * Exit: 0 pass, 1 fail.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "krn_llama.h"
#include "krn_math.h"
#include "krn_msgpack.h"
#include "krn_ranker.h"
#include "krn_serve.h"

static int checks, failures;

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		checks++;                                                        \
		if (!(cond)) {                                                   \
			failures++;                                              \
			fprintf(stderr, "test_kernels: %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                            \
			fputc('\n', stderr);                                     \
		}                                                                \
	} while (0)

static uint64_t rng = 0x1234abcd5678ef01ull;

static uint32_t rnd_u32(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static float rnd_f(float scale)
{
	return ((float)rnd_u32(2000001) / 1000000.0f - 1.0f) * scale;
}

static void fill(float *p, uint64_t n, float scale)
{
	for (uint64_t i = 0; i < n; i++)
		p[i] = rnd_f(scale);
}

static void test_matmul(int portable)
{
	const char *was = krn_matmul_force_portable(portable);

	for (int round = 0; round < 200; round++) {
		uint32_t n = 1 + rnd_u32(300), d = 1 + rnd_u32(70);
		float *w = malloc(sizeof(float) * n * d), *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * d);

		fill(w, (uint64_t)n * d, 1.0f);
		fill(x, n, 1.0f);
		krn_matmul(y, x, w, n, d, 0, 1);
		for (uint32_t i = 0; i < d; i++) {
			double exact = 0.0, mag = 0.0;

			for (uint32_t j = 0; j < n; j++) {
				exact += (double)w[(size_t)i * n + j] * x[j];
				mag += fabs((double)w[(size_t)i * n + j] * x[j]);
			}
			double bound = 4.0 * n * ldexp(1.0, -24) * mag + 1e-30;
			if (fabs(y[i] - exact) > bound) {
				CHECK(0, "matmul %s n=%u d=%u row %u: %g vs %g (bound %g)", krn_matmul_impl(), n, d, i,
				      y[i], exact, bound);
				break;
			}
		}
		free(w);
		free(x);
		free(y);
	}
	checks++;
	krn_matmul_force_portable(strcmp(was, "portable") == 0);
}

static void test_rmsnorm_softmax(void)
{
	for (int round = 0; round < 100; round++) {
		uint32_t n = 1 + rnd_u32(500);
		float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n), *o = malloc(sizeof(float) * n);
		double ss = 0.0, max = -1e300, sum = 0.0;

		fill(x, n, 3.0f);
		fill(w, n, 1.0f);
		krn_rmsnorm(o, x, w, n, 1e-5f, 0, 1);
		for (uint32_t j = 0; j < n; j++)
			ss += (double)x[j] * x[j];
		double inv = 1.0 / sqrt(ss / n + 1e-5);
		for (uint32_t j = 0; j < n; j++)
			if (fabs(o[j] - w[j] * x[j] * inv) > 1e-5 * (fabs(w[j] * x[j] * inv) + 1e-6)) {
				CHECK(0, "rmsnorm n=%u j=%u: %g vs %g", n, j, o[j], w[j] * x[j] * inv);
				break;
			}
		for (uint32_t j = 0; j < n; j++)
			if (x[j] > max)
				max = x[j];
		for (uint32_t j = 0; j < n; j++)
			sum += exp(x[j] - max);
		memcpy(o, x, sizeof(float) * n);
		krn_softmax(o, n);
		for (uint32_t j = 0; j < n; j++)
			if (fabs(o[j] - exp(x[j] - max) / sum) > 1e-6) {
				CHECK(0, "softmax n=%u j=%u: %g vs %g", n, j, o[j], exp(x[j] - max) / sum);
				break;
			}
		checks++;
		free(x);
		free(w);
		free(o);
	}
}

/* A random llama with its arena; the caller frees m->arena via the returned pointer. */
static float *random_llama(struct krn_llama *m, uint32_t dim, uint32_t hidden, uint32_t layers, uint32_t heads,
			   uint32_t kv_heads, uint32_t vocab, uint32_t seq, int tied)
{
	memset(m, 0, sizeof(*m));
	m->cfg = (struct krn_llama_config){ .dim = dim, .hidden_dim = hidden, .n_layers = layers, .n_heads = heads,
					    .n_kv_heads = kv_heads, .vocab_size = vocab, .seq_len = seq,
					    .bos_id = 1, .eos_id = 2, .tied = (uint32_t)tied, .rms_eps = 1e-5f,
					    .rope_theta = 10000.0f };
	uint64_t n = krn_llama_weight_floats(&m->cfg);
	float *arena = malloc(sizeof(float) * n);

	fill(arena, n, 0.5f);
	krn_llama_bind(m, arena);
	/* Norm weights near one, as in trained models. */
	for (uint64_t i = 0; i < (uint64_t)layers * dim; i++) {
		((float *)m->w.rms_att)[i] = 1.0f + rnd_f(0.1f);
		((float *)m->w.rms_ffn)[i] = 1.0f + rnd_f(0.1f);
	}
	krn_llama_fill_rope(&m->cfg, arena);
	return arena;
}

/* The float64 reference forward: the same model, written independently and plainly, all positions
 * 0..pos recomputed from scratch (no cache), RoPE angles computed in double. */
static void reference_logits(const struct krn_llama *m, const uint32_t *tokens, uint32_t count, double *logits)
{
	const struct krn_llama_config *c = &m->cfg;
	uint32_t d = c->dim, hs = d / c->n_heads, half = hs / 2, kvd = hs * c->n_kv_heads, hd = c->hidden_dim;
	double *x = calloc((size_t)count * d, sizeof(double));
	double *k = calloc((size_t)count * kvd, sizeof(double)), *v = calloc((size_t)count * kvd, sizeof(double));
	double *q = calloc((size_t)count * d, sizeof(double)), *xb = calloc(d, sizeof(double));
	double *h1 = calloc(hd, sizeof(double)), *h3 = calloc(hd, sizeof(double)), *att = calloc(count, sizeof(double));
	double *out = calloc((size_t)count * d, sizeof(double));

	for (uint32_t t = 0; t < count; t++)
		for (uint32_t i = 0; i < d; i++)
			x[(size_t)t * d + i] = m->w.token_embedding[(size_t)tokens[t] * d + i];
	for (uint32_t l = 0; l < c->n_layers; l++) {
		for (uint32_t t = 0; t < count; t++) {
			double ss = 0;
			double *xt = x + (size_t)t * d;
			for (uint32_t i = 0; i < d; i++)
				ss += xt[i] * xt[i];
			double inv = 1.0 / sqrt(ss / d + c->rms_eps);
			for (uint32_t i = 0; i < d; i++)
				xb[i] = m->w.rms_att[(size_t)l * d + i] * xt[i] * inv;
			for (uint32_t r = 0; r < d; r++) {
				double acc = 0;
				for (uint32_t i = 0; i < d; i++)
					acc += m->w.wq[((size_t)l * d + r) * d + i] * xb[i];
				q[(size_t)t * d + r] = acc;
			}
			for (uint32_t r = 0; r < kvd; r++) {
				double ak = 0, av = 0;
				for (uint32_t i = 0; i < d; i++) {
					ak += m->w.wk[((size_t)l * kvd + r) * d + i] * xb[i];
					av += m->w.wv[((size_t)l * kvd + r) * d + i] * xb[i];
				}
				k[(size_t)t * kvd + r] = ak;
				v[(size_t)t * kvd + r] = av;
			}
			/* Rotate-half RoPE in double. */
			for (uint32_t hh = 0; hh < c->n_heads + c->n_kv_heads; hh++) {
				double *vec = hh < c->n_heads ? q + (size_t)t * d + hh * hs : k + (size_t)t * kvd + (hh - c->n_heads) * hs;
				for (uint32_t j = 0; j < half; j++) {
					double ang = t / pow(c->rope_theta, 2.0 * j / hs);
					double a = vec[j], b = vec[j + half];
					vec[j] = a * cos(ang) - b * sin(ang);
					vec[j + half] = a * sin(ang) + b * cos(ang);
				}
			}
		}
		for (uint32_t t = 0; t < count; t++) {
			for (uint32_t h = 0; h < c->n_heads; h++) {
				uint32_t kh = h / (c->n_heads / c->n_kv_heads);
				double mx = -1e300, sum = 0;
				for (uint32_t s = 0; s <= t; s++) {
					double sc = 0;
					for (uint32_t i = 0; i < hs; i++)
						sc += q[(size_t)t * d + h * hs + i] * k[(size_t)s * kvd + kh * hs + i];
					att[s] = sc / sqrt((double)hs);
					if (att[s] > mx)
						mx = att[s];
				}
				for (uint32_t s = 0; s <= t; s++)
					sum += (att[s] = exp(att[s] - mx));
				for (uint32_t i = 0; i < hs; i++) {
					double acc = 0;
					for (uint32_t s = 0; s <= t; s++)
						acc += att[s] / sum * v[(size_t)s * kvd + kh * hs + i];
					out[(size_t)t * d + h * hs + i] = acc;
				}
			}
		}
		for (uint32_t t = 0; t < count; t++) {
			double *xt = x + (size_t)t * d;
			for (uint32_t r = 0; r < d; r++) {
				double acc = 0;
				for (uint32_t i = 0; i < d; i++)
					acc += m->w.wo[((size_t)l * d + r) * d + i] * out[(size_t)t * d + i];
				xb[r] = acc;
			}
			for (uint32_t i = 0; i < d; i++)
				xt[i] += xb[i];
			double ss = 0;
			for (uint32_t i = 0; i < d; i++)
				ss += xt[i] * xt[i];
			double inv = 1.0 / sqrt(ss / d + c->rms_eps);
			for (uint32_t i = 0; i < d; i++)
				xb[i] = m->w.rms_ffn[(size_t)l * d + i] * xt[i] * inv;
			for (uint32_t r = 0; r < hd; r++) {
				double a1 = 0, a3 = 0;
				for (uint32_t i = 0; i < d; i++) {
					a1 += m->w.w1[((size_t)l * hd + r) * d + i] * xb[i];
					a3 += m->w.w3[((size_t)l * hd + r) * d + i] * xb[i];
				}
				h1[r] = a1 / (1.0 + exp(-a1)) * a3;
			}
			for (uint32_t r = 0; r < d; r++) {
				double acc = 0;
				for (uint32_t i = 0; i < hd; i++)
					acc += m->w.w2[((size_t)l * d + r) * hd + i] * h1[i];
				xt[r] += acc;
			}
		}
	}
	double *xl = x + (size_t)(count - 1) * d, ss = 0;
	for (uint32_t i = 0; i < d; i++)
		ss += xl[i] * xl[i];
	double inv = 1.0 / sqrt(ss / d + c->rms_eps);
	for (uint32_t i = 0; i < d; i++)
		xb[i] = m->w.rms_final[i] * xl[i] * inv;
	for (uint32_t r = 0; r < c->vocab_size; r++) {
		double acc = 0;
		for (uint32_t i = 0; i < d; i++)
			acc += m->w.wcls[(size_t)r * d + i] * xb[i];
		logits[r] = acc;
	}
	free(x); free(k); free(v); free(q); free(xb); free(h1); free(h3); free(att); free(out);
}

static void test_llama_forward(void)
{
	static const uint32_t shapes[][7] = {
		/* dim hidden layers heads kv vocab seq */
		{ 64, 172, 2, 8, 4, 512, 32 },
		{ 48, 96, 3, 6, 6, 300, 20 },
		{ 32, 80, 1, 2, 1, 97, 16 },
		{ 128, 256, 2, 4, 2, 1000, 24 },
	};
	for (uint32_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const uint32_t *sh = shapes[s];
		struct krn_llama m;
		float *arena = random_llama(&m, sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], s % 2);
		float *state = malloc(sizeof(float) * krn_llama_state_floats(&m.cfg));
		uint32_t tokens[32];
		uint32_t count = 1 + rnd_u32(sh[6] - 1);
		double *ref = malloc(sizeof(double) * sh[5]);
		float *logits = NULL;

		for (uint32_t t = 0; t < count; t++) {
			tokens[t] = rnd_u32(sh[5]);
			logits = krn_llama_forward(&m, state, tokens[t], t, 0, 1);
		}
		reference_logits(&m, tokens, count, ref);
		double scale = 0, worst = 0;
		for (uint32_t i = 0; i < sh[5]; i++)
			scale = fmax(scale, fabs(ref[i]));
		for (uint32_t i = 0; i < sh[5]; i++)
			worst = fmax(worst, fabs(logits[i] - ref[i]));
		CHECK(worst <= 2e-4 * scale, "llama forward shape %u (%u positions): worst %g vs scale %g", s, count, worst,
		      scale);
		free(arena);
		free(state);
		free(ref);
	}
}

static void test_ranker(void)
{
	for (int round = 0; round < 50; round++) {
		struct krn_ranker r;
		memset(&r, 0, sizeof(r));
		r.cfg.vocab_size = 10 + rnd_u32(200);
		r.cfg.embedding_dim = 1 + rnd_u32(40);
		r.cfg.dense_features = rnd_u32(10);
		r.cfg.layer_count = 1 + rnd_u32(4);
		for (uint32_t i = 0; i < r.cfg.layer_count; i++)
			r.cfg.layer_out[i] = 1 + rnd_u32(50);
		r.cfg.bag_mode = (enum krn_bag_mode)rnd_u32(2);
		r.cfg.output_act = (enum krn_output_act)rnd_u32(2);
		uint64_t n = krn_ranker_weight_floats(&r.cfg);
		float *arena = malloc(sizeof(float) * n);
		fill(arena, n, 0.5f);
		krn_ranker_bind(&r, arena);
		float *state = malloc(sizeof(float) * krn_ranker_state_floats(&r.cfg));
		uint32_t tokens[16], count = rnd_u32(16);
		float dense[10], out[64];
		for (uint32_t t = 0; t < count; t++)
			tokens[t] = rnd_u32(r.cfg.vocab_size);
		fill(dense, r.cfg.dense_features, 2.0f);
		krn_ranker_forward(&r, tokens, count, dense, state, out);

		/* float64 reference. */
		double in[4096], act[4096];
		uint32_t e = r.cfg.embedding_dim, width = e + r.cfg.dense_features;
		for (uint32_t j = 0; j < e; j++) {
			in[j] = 0;
			for (uint32_t t = 0; t < count; t++)
				in[j] += r.w.embedding[(size_t)tokens[t] * e + j];
			if (r.cfg.bag_mode == KRN_BAG_MEAN && count)
				in[j] /= count;
		}
		for (uint32_t j = 0; j < r.cfg.dense_features; j++)
			in[e + j] = dense[j];
		for (uint32_t i = 0; i < r.cfg.layer_count; i++) {
			for (uint32_t o = 0; o < r.cfg.layer_out[i]; o++) {
				double acc = r.w.bias[i][o];
				for (uint32_t j = 0; j < width; j++)
					acc += r.w.weight[i][(size_t)o * width + j] * in[j];
				act[o] = (i + 1 < r.cfg.layer_count && acc < 0) ? 0 : acc;
			}
			width = r.cfg.layer_out[i];
			memcpy(in, act, sizeof(double) * width);
		}
		for (uint32_t o = 0; o < width; o++) {
			double want = r.cfg.output_act == KRN_OUTPUT_SIGMOID ? 1.0 / (1.0 + exp(-in[o])) : in[o];
			if (fabs(out[o] - want) > 1e-4 * (fabs(want) + 1.0)) {
				CHECK(0, "ranker round %d output %u: %g vs %g", round, o, out[o], want);
				break;
			}
		}
		checks++;
		free(arena);
		free(state);
	}
}

/* Serve one request through krn_serve_request; returns the answer size. */
static uint32_t serve(const struct krn_models *models, struct krn_scratch *scratch, const uint8_t *req,
		      uint32_t size, uint8_t *ans, uint16_t *status)
{
	return krn_serve_request(models, req, size, ans, ZH_ANS_MAX_BYTES, scratch, NULL, status);
}

static uint32_t gen_request(uint8_t *buf, uint64_t id, const uint32_t *tokens, uint32_t count, uint32_t max_new,
			    float temperature, uint64_t seed, const char *op)
{
	struct krn_mp_writer w;

	krn_mp_writer_init(&w, buf, ZH_REQ_MAX_BYTES);
	krn_mp_put_map(&w, 6);
	krn_mp_put_cstr(&w, "id");
	krn_mp_put_uint(&w, id);
	krn_mp_put_cstr(&w, "op");
	krn_mp_put_cstr(&w, op);
	krn_mp_put_cstr(&w, "tokens");
	krn_mp_put_array(&w, count);
	for (uint32_t i = 0; i < count; i++)
		krn_mp_put_uint(&w, tokens[i]);
	krn_mp_put_cstr(&w, "max_new");
	krn_mp_put_uint(&w, max_new);
	krn_mp_put_cstr(&w, "temperature");
	krn_mp_put_float32(&w, temperature);
	krn_mp_put_cstr(&w, "seed");
	krn_mp_put_uint(&w, seed);
	return krn_mp_writer_size(&w, buf);
}

static void test_llama_serving(void)
{
	struct krn_models models;
	struct krn_scratch *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	memset(&models, 0, sizeof(models));
	models.count = 1;
	snprintf(models.models[0].name, sizeof(models.models[0].name), "tiny");
	models.models[0].arch = KRN_ARCH_LLAMA;
	float *arena = random_llama(&models.models[0].u.llama, 32, 64, 2, 4, 2, 64, 24, 1);
	uint64_t floats = krn_llama_state_floats(&models.models[0].u.llama.cfg);
	a->model_state = malloc(sizeof(float) * floats);
	b->model_state = malloc(sizeof(float) * floats);
	a->model_state_floats = b->model_state_floats = floats;
	uint8_t req[ZH_REQ_MAX_BYTES], ans1[ZH_ANS_MAX_BYTES], ans2[ZH_ANS_MAX_BYTES], ans3[ZH_ANS_MAX_BYTES];
	uint16_t st;
	uint32_t prompt[3] = { 5, 9, 13 }, other[2] = { 40, 41 };

	/* Seeded sampling repeats exactly; another seed differs somewhere over a few requests. */
	uint32_t n = gen_request(req, 1, prompt, 3, 8, 1.0f, 42, "generate");
	uint32_t s1 = serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_OK, "generate status %u (%s)", st, a->job.error);
	uint32_t s2 = serve(&models, b, req, n, ans2, &st);
	CHECK(s1 == s2 && memcmp(ans1, ans2, s1) == 0, "same seed, same answer");
	int differs = 0;
	for (uint64_t seed = 43; seed < 48 && !differs; seed++) {
		n = gen_request(req, 1, prompt, 3, 8, 1.0f, seed, "generate");
		uint32_t s3 = serve(&models, b, req, n, ans3, &st);
		differs = s3 != s1 || memcmp(ans1, ans3, s1) != 0;
	}
	CHECK(differs, "other seeds give other samples");

	/* KV isolation: interleaving another request on the same scratch between two identical requests,
	 * or running them on different scratches, changes nothing. */
	n = gen_request(req, 7, prompt, 3, 10, 0.0f, 0, "generate");
	s1 = serve(&models, a, req, n, ans1, &st);
	uint8_t req2[ZH_REQ_MAX_BYTES];
	uint32_t n2 = gen_request(req2, 8, other, 2, 20, 0.0f, 0, "generate");
	serve(&models, a, req2, n2, ans3, &st);
	s2 = serve(&models, a, req, n, ans2, &st);
	CHECK(s1 == s2 && memcmp(ans1, ans2, s1) == 0, "a request in between leaves no trace");
	s2 = serve(&models, b, req, n, ans2, &st);
	CHECK(s1 == s2 && memcmp(ans1, ans2, s1) == 0, "another consumer's scratch gives the same answer");

	/* Bad inputs answered with a clear status. */
	uint32_t big[2] = { 1, 64 };
	n = gen_request(req, 9, big, 2, 4, 0.0f, 0, "generate");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_BAD_REQUEST, "token id == vocab refused: %u", st);
	n = gen_request(req, 9, prompt, 3, 0, 0.0f, 0, "generate");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_BAD_REQUEST, "max_new 0 refused: %u", st);
	n = gen_request(req, 9, prompt, 3, 257, 0.0f, 0, "generate");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_BAD_REQUEST, "max_new 257 refused: %u", st);
	n = gen_request(req, 9, prompt, 3, 4, 0.0f, 0, "score");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_BAD_REQUEST, "score on a llama refused: %u", st);
	uint32_t longp[25];
	for (int i = 0; i < 25; i++)
		longp[i] = 3;
	n = gen_request(req, 9, longp, 25, 4, 0.0f, 0, "generate");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_TOO_LARGE, "more tokens than the context refused: %u", st);

	/* Context stop: a 20-token prompt in a 24-position context leaves room for 4 new tokens at most. */
	n = gen_request(req, 10, longp, 20, 256, 0.0f, 0, "generate");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_OK && (a->job.stop == KRN_STOP_CONTEXT || a->job.stop == KRN_STOP_EOS ||
				     a->job.stop == KRN_STOP_BOS),
	      "context-bound generate stops by itself (%u, %s)", st, krn_stop_name(a->job.stop));
	CHECK(a->job.out_count <= 5, "at most context - prompt + 1 new tokens: %u", a->job.out_count);

	/* logits: top-k sorted, equal to the largest logits of a direct forward pass. */
	n = gen_request(req, 11, prompt, 3, 4, 0.0f, 0, "logits");
	serve(&models, a, req, n, ans1, &st);
	CHECK(st == ZH_STATUS_OK && a->job.out_count == ZH_TOP_K_DEFAULT, "logits answered %u", st);
	float *logits = NULL;
	for (uint32_t t = 0; t < 3; t++)
		logits = krn_llama_forward(&models.models[0].u.llama, b->model_state, prompt[t], t, 0, 1);
	for (uint32_t i = 0; i < a->job.out_count; i++) {
		CHECK(logits[a->job.out_ids[i]] == a->job.out_vals[i], "top-k value %u matches its id", i);
		if (i > 0)
			CHECK(a->job.out_vals[i] <= a->job.out_vals[i - 1], "top-k sorted");
	}
	uint32_t above = 0;
	for (uint32_t v = 0; v < 64; v++)
		above += logits[v] > a->job.out_vals[a->job.out_count - 1];
	CHECK(above == a->job.out_count - 1 || above < a->job.out_count, "no logit outside the top-k beats it");

	free(arena);
	free(a->model_state);
	free(b->model_state);
	free(a);
	free(b);
}

int main(void)
{
	test_matmul(0);
	test_matmul(1);
	test_rmsnorm_softmax();
	test_llama_forward();
	test_ranker();
	test_llama_serving();
	if (failures) {
		fprintf(stderr, "test_kernels: %d of %d checks failed\n", failures, checks);
		return 1;
	}
	printf("test_kernels: %d checks passed (matrix kernel: %s)\n", checks, krn_matmul_impl());
	return 0;
}
