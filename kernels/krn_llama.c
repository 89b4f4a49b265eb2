/* SPDX-License-Identifier: MIT */
/*
 * krn_llama.c: the llama forward pass, host/device-neutral. It reads like the math, one step at a
 * time, and allocates nothing: the run state is a float arena handed in by the caller.
 *
 * RoPE uses Hugging Face's rotate-half pairing (dimension j of a head with j + head_size/2). The
 * attention score sums a head's dimensions pair by pair (j, j + half, j + 1, ...), which is exactly the
 * order llama2.c sums its interleaved pairs in, so an imported llama2.c model computes the same floats.
 */
#include "krn_llama.h"
#include "krn_math.h"

static ZH_HD uint32_t head_size(const struct krn_llama_config *cfg)
{
	return cfg->dim / cfg->n_heads;
}

static ZH_HD uint32_t kv_dim(const struct krn_llama_config *cfg)
{
	return cfg->dim / cfg->n_heads * cfg->n_kv_heads;
}

ZH_HD uint64_t krn_llama_weight_floats(const struct krn_llama_config *cfg)
{
	uint64_t d = cfg->dim, h = cfg->hidden_dim, l = cfg->n_layers, kv = kv_dim(cfg);
	uint64_t rope = (uint64_t)cfg->seq_len * (head_size(cfg) / 2);
	uint64_t n = (uint64_t)cfg->vocab_size * d;   /* token_embedding */

	n += l * d;                 /* rms_att */
	n += l * d * d;             /* wq */
	n += 2 * l * kv * d;        /* wk, wv */
	n += l * d * d;             /* wo */
	n += l * d;                 /* rms_ffn */
	n += 3 * l * h * d;         /* w1, w3, w2 */
	n += d;                     /* rms_final */
	if (!cfg->tied)
		n += (uint64_t)cfg->vocab_size * d; /* wcls */
	n += 2 * rope;              /* rope_cos, rope_sin */
	return n;
}

ZH_HD void krn_llama_bind(struct krn_llama *m, const float *arena)
{
	const struct krn_llama_config *cfg = &m->cfg;
	uint64_t d = cfg->dim, h = cfg->hidden_dim, l = cfg->n_layers, kv = kv_dim(cfg);
	uint64_t rope = (uint64_t)cfg->seq_len * (head_size(cfg) / 2);
	const float *p = arena;

	/* One pointer walks the arena; offsets are 64-bit because a real model exceeds 2^32 floats. */
	m->w.token_embedding = p; p += (uint64_t)cfg->vocab_size * d;
	m->w.rms_att = p; p += l * d;
	m->w.wq = p; p += l * d * d;
	m->w.wk = p; p += l * kv * d;
	m->w.wv = p; p += l * kv * d;
	m->w.wo = p; p += l * d * d;
	m->w.rms_ffn = p; p += l * d;
	m->w.w1 = p; p += l * h * d;
	m->w.w3 = p; p += l * h * d;
	m->w.w2 = p; p += l * d * h;
	m->w.rms_final = p; p += d;
	if (cfg->tied) {
		m->w.wcls = m->w.token_embedding;
	} else {
		m->w.wcls = p;
		p += (uint64_t)cfg->vocab_size * d;
	}
	m->w.rope_cos = p; p += rope;
	m->w.rope_sin = p;
}

#if !defined(__CUDA_ARCH__)
void krn_llama_fill_rope(const struct krn_llama_config *cfg, float *arena)
{
	struct krn_llama m;
	uint32_t hs = head_size(cfg);
	uint32_t half = hs / 2;

	m.cfg = *cfg;
	krn_llama_bind(&m, arena);
	float *cos_t = (float *)m.w.rope_cos;
	float *sin_t = (float *)m.w.rope_sin;
	for (uint32_t pos = 0; pos < cfg->seq_len; pos++) {
		for (uint32_t j = 0; j < half; j++) {
			/* llama2.c's expression for its pair (2j, 2j+1), in float, step by step. */
			float freq = 1.0f / powf(cfg->rope_theta, (float)(2 * j) / (float)hs);
			float val = (float)pos * freq;

			cos_t[(size_t)pos * half + j] = cosf(val);
			sin_t[(size_t)pos * half + j] = sinf(val);
		}
	}
}
#endif

/*
 * State layout, in floats: x[D] xb[D] xb2[D] hb[H] hb2[H] q[D] k[KV] att[heads][seq] logits[vocab]
 * key_cache[L][kv_heads][head_size][seq] value_cache[L][seq][KV]. The key cache is transposed (a
 * position's key is scattered over head_size rows) so that attention reads all positions of one
 * dimension contiguously.
 */
ZH_HD uint64_t krn_llama_state_floats(const struct krn_llama_config *cfg)
{
	uint64_t d = cfg->dim, h = cfg->hidden_dim;
	uint64_t cache = (uint64_t)cfg->n_layers * cfg->seq_len * kv_dim(cfg);

	return 4 * d + kv_dim(cfg) + 2 * h + (uint64_t)cfg->n_heads * cfg->seq_len + cfg->vocab_size + 2 * cache;
}

struct run_state {
	float *x, *xb, *xb2, *hb, *hb2, *q, *k, *att, *logits, *key_cache, *value_cache;
};

static KRN_INLINE ZH_HD struct run_state carve(const struct krn_llama_config *cfg, float *state)
{
	uint64_t d = cfg->dim, h = cfg->hidden_dim;
	uint64_t cache = (uint64_t)cfg->n_layers * cfg->seq_len * kv_dim(cfg);
	struct run_state s;

	s.x = state; state += d;
	s.xb = state; state += d;
	s.xb2 = state; state += d;
	s.hb = state; state += h;
	s.hb2 = state; state += h;
	s.q = state; state += d;
	s.k = state; state += kv_dim(cfg);
	s.att = state; state += (uint64_t)cfg->n_heads * cfg->seq_len;
	s.logits = state; state += cfg->vocab_size;
	s.key_cache = state; state += cache;
	s.value_cache = state;
	return s;
}

/* Rotate each head's pairs (j, j + half) of vec by the angle of position pos. */
static KRN_INLINE ZH_HD void rope(float *vec, uint32_t heads, uint32_t hs, const float *cos_row, const float *sin_row,
		       uint32_t thread_idx, uint32_t thread_count)
{
	uint32_t half = hs / 2;

	for (uint32_t k = thread_idx; k < heads * half; k += thread_count) {
		uint32_t h = k / half, j = k % half;
		float *v = vec + h * hs;
		float a = v[j], b = v[j + half];

		v[j] = a * cos_row[j] - b * sin_row[j];
		v[j + half] = a * sin_row[j] + b * cos_row[j];
	}
}

/* Multi-head attention of position pos over positions 0..pos of layer l, heads split over threads.
 * layer_off: the layer's offset in either cache (both hold seq * KV floats per layer). */
static KRN_INLINE ZH_HD void attention(const struct krn_llama_config *cfg, struct run_state *s, uint64_t layer_off,
				       uint32_t pos, uint32_t thread_idx, uint32_t thread_count)
{
	uint32_t hs = head_size(cfg), kvd = kv_dim(cfg);
	uint32_t kv_mul = cfg->n_heads / cfg->n_kv_heads;

	for (uint32_t h = thread_idx; h < cfg->n_heads; h += thread_count) {
		uint32_t kvh = h / kv_mul;

		krn_attend(s->xb + h * hs, s->q + h * hs, s->key_cache + layer_off + (size_t)kvh * hs * cfg->seq_len,
			   cfg->seq_len, s->value_cache + layer_off + (size_t)kvh * hs, kvd, pos + 1, hs,
			   s->att + (size_t)h * cfg->seq_len);
	}
}

/* On the cpu device the whole pass is compiled for x86-64-v4 (AVX-512 with FMA) too, and the loader
 * picks the clone the CPU runs (an ifunc resolved once at start-up): the small loops around the matrix
 * products vectorize. */
/* Not under ThreadSanitizer: the clone's ifunc resolver runs at load time, before TSan's runtime is
 * up, and TSan's instrumentation of it crashes the process. */
#if !defined(__CUDACC__) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
	!defined(__SANITIZE_THREAD__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
ZH_HD float *krn_llama_forward(const struct krn_llama *m, float *state, uint32_t token, uint32_t pos,
			       uint32_t thread_idx, uint32_t thread_count)
{
	const struct krn_llama_config *cfg = &m->cfg;
	const struct krn_llama_weights *w = &m->w;
	struct run_state s = carve(cfg, state);
	uint32_t d = cfg->dim, hdim = cfg->hidden_dim, kvd = kv_dim(cfg), hs = head_size(cfg);
	const float *cos_row = w->rope_cos + (size_t)pos * (hs / 2);
	const float *sin_row = w->rope_sin + (size_t)pos * (hs / 2);

	/* The token's embedding row. */
	for (uint32_t i = thread_idx; i < d; i += thread_count)
		s.x[i] = w->token_embedding[(size_t)token * d + i];
	KRN_SYNC();

	for (uint64_t l = 0; l < cfg->n_layers; l++) {
		uint64_t layer_off = l * cfg->seq_len * kvd;
		float *v = s.value_cache + layer_off + (size_t)pos * kvd;

		/* Attention: RMSNorm, q/k/v projections (v straight into the cache), RoPE, then k into the
		 * transposed key cache: dimension i of this position at row i, column pos. */
		krn_rmsnorm(s.xb, s.x, w->rms_att + l * d, d, cfg->rms_eps, thread_idx, thread_count);
		KRN_SYNC();
		krn_matmul(s.q, s.xb, w->wq + l * d * d, d, d, thread_idx, thread_count);
		krn_matmul(s.k, s.xb, w->wk + l * kvd * d, d, kvd, thread_idx, thread_count);
		krn_matmul(v, s.xb, w->wv + l * kvd * d, d, kvd, thread_idx, thread_count);
		KRN_SYNC();
		rope(s.q, cfg->n_heads, hs, cos_row, sin_row, thread_idx, thread_count);
		rope(s.k, cfg->n_kv_heads, hs, cos_row, sin_row, thread_idx, thread_count);
		KRN_SYNC();
		for (uint32_t i = thread_idx; i < kvd; i += thread_count)
			s.key_cache[layer_off + (size_t)i * cfg->seq_len + pos] = s.k[i];
		KRN_SYNC();
		attention(cfg, &s, layer_off, pos, thread_idx, thread_count);
		KRN_SYNC();
		krn_matmul(s.xb2, s.xb, w->wo + l * d * d, d, d, thread_idx, thread_count);
		KRN_SYNC();
		for (uint32_t i = thread_idx; i < d; i += thread_count)
			s.x[i] += s.xb2[i];
		KRN_SYNC();

		/* Feed-forward: RMSNorm, SwiGLU (silu(w1 x) * w3 x), w2, residual. */
		krn_rmsnorm(s.xb, s.x, w->rms_ffn + l * d, d, cfg->rms_eps, thread_idx, thread_count);
		KRN_SYNC();
		krn_matmul(s.hb, s.xb, w->w1 + l * hdim * d, d, hdim, thread_idx, thread_count);
		krn_matmul(s.hb2, s.xb, w->w3 + l * hdim * d, d, hdim, thread_idx, thread_count);
		KRN_SYNC();
		krn_silu_mul(s.hb, s.hb2, hdim, thread_idx, thread_count);
		KRN_SYNC();
		krn_matmul(s.xb, s.hb, w->w2 + l * d * hdim, hdim, d, thread_idx, thread_count);
		KRN_SYNC();
		for (uint32_t i = thread_idx; i < d; i += thread_count)
			s.x[i] += s.xb[i];
		KRN_SYNC();
	}

	krn_rmsnorm(s.x, s.x, w->rms_final, d, cfg->rms_eps, thread_idx, thread_count);
	KRN_SYNC();
	krn_matmul(s.logits, s.x, w->wcls, d, cfg->vocab_size, thread_idx, thread_count);
	KRN_SYNC();
	return s.logits;
}
