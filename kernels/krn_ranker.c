/* SPDX-License-Identifier: MIT */
/*
 * krn_ranker.c: the ranker's forward pass, host/device-neutral; allocates nothing.
 */
#include "krn_math.h"
#include "krn_ranker.h"

ZH_HD uint32_t krn_ranker_layer_in(const struct krn_ranker_config *cfg, uint32_t i)
{
	return i == 0 ? cfg->embedding_dim + cfg->dense_features : cfg->layer_out[i - 1];
}

ZH_HD uint64_t krn_ranker_weight_floats(const struct krn_ranker_config *cfg)
{
	uint64_t n = (uint64_t)cfg->vocab_size * cfg->embedding_dim;

	for (uint32_t i = 0; i < cfg->layer_count; i++)
		n += (uint64_t)cfg->layer_out[i] * krn_ranker_layer_in(cfg, i) + cfg->layer_out[i];
	return n;
}

ZH_HD void krn_ranker_bind(struct krn_ranker *m, const float *arena)
{
	const struct krn_ranker_config *cfg = &m->cfg;
	const float *p = arena;

	m->w.embedding = p;
	p += (uint64_t)cfg->vocab_size * cfg->embedding_dim;
	for (uint32_t i = 0; i < cfg->layer_count; i++) {
		m->w.weight[i] = p;
		p += (uint64_t)cfg->layer_out[i] * krn_ranker_layer_in(cfg, i);
		m->w.bias[i] = p;
		p += cfg->layer_out[i];
	}
}

/* Two activation vectors as wide as the widest layer input or output. */
ZH_HD uint64_t krn_ranker_state_floats(const struct krn_ranker_config *cfg)
{
	uint32_t widest = cfg->embedding_dim + cfg->dense_features;

	for (uint32_t i = 0; i < cfg->layer_count; i++)
		if (cfg->layer_out[i] > widest)
			widest = cfg->layer_out[i];
	return 2ull * widest;
}

ZH_HD void krn_ranker_forward(const struct krn_ranker *m, const uint32_t *tokens, uint32_t token_count,
			      const float *dense, float *state, float *out)
{
	const struct krn_ranker_config *cfg = &m->cfg;
	uint32_t e = cfg->embedding_dim;
	uint64_t half = krn_ranker_state_floats(cfg) / 2;
	float *in = state;
	float *act = state + half;

	/* The bag: sum (or mean) of the tokens' embedding rows, then the dense features. */
	for (uint32_t j = 0; j < e; j++)
		in[j] = 0.0f;
	for (uint32_t t = 0; t < token_count; t++) {
		const float *row = m->w.embedding + (uint64_t)tokens[t] * e;

		for (uint32_t j = 0; j < e; j++)
			in[j] += row[j];
	}
	if (cfg->bag_mode == KRN_BAG_MEAN && token_count > 0)
		for (uint32_t j = 0; j < e; j++)
			in[j] /= (float)token_count;
	for (uint32_t j = 0; j < cfg->dense_features; j++)
		in[e + j] = dense[j];

	/* The MLP: ReLU after every layer but the last. */
	for (uint32_t i = 0; i < cfg->layer_count; i++) {
		uint32_t n_in = krn_ranker_layer_in(cfg, i), n_out = cfg->layer_out[i];
		int last = i + 1 == cfg->layer_count;

		krn_matmul(act, in, m->w.weight[i], n_in, n_out, 0, 1);
		for (uint32_t j = 0; j < n_out; j++) {
			float v = act[j] + m->w.bias[i][j];

			act[j] = last || v > 0.0f ? v : 0.0f;
		}
		float *tmp = in;
		in = act;
		act = tmp;
	}
	for (uint32_t j = 0; j < cfg->layer_out[cfg->layer_count - 1]; j++)
		out[j] = cfg->output_act == KRN_OUTPUT_SIGMOID ? 1.0f / (1.0f + expf(-in[j])) : in[j];
}
