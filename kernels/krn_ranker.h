/* SPDX-License-Identifier: MIT */
/*
 * krn_ranker.h: the ranker for ads and trading scores: an embedding bag (sum or mean) over the
 * request's token ids, the dense features appended, an MLP with ReLU between layers, and a sigmoid or
 * raw output. Host/device-neutral. docs/MODELS.md gives the format.
 */
#ifndef KRN_RANKER_H
#define KRN_RANKER_H

#include "zh_defs.h"

#define KRN_RANKER_LAYERS_MAX 8u   /* hidden layers + the output layer */
#define KRN_RANKER_WIDTH_MAX 4096u
#define KRN_RANKER_OUTPUTS_MAX 64u

enum krn_bag_mode { KRN_BAG_SUM = 0, KRN_BAG_MEAN = 1 };
enum krn_output_act { KRN_OUTPUT_NONE = 0, KRN_OUTPUT_SIGMOID = 1 };

struct krn_ranker_config {
	uint32_t vocab_size;
	uint32_t embedding_dim;        /* E */
	uint32_t dense_features;       /* F */
	uint32_t layer_count;          /* 1..KRN_RANKER_LAYERS_MAX, the last is the output layer */
	uint32_t layer_out[KRN_RANKER_LAYERS_MAX]; /* widths; layer 0's input is E + F */
	enum krn_bag_mode bag_mode;
	enum krn_output_act output_act;
};

struct krn_ranker_weights {
	const float *embedding;                      /* [vocab][E] */
	const float *weight[KRN_RANKER_LAYERS_MAX];  /* layer i: [out_i][in_i] */
	const float *bias[KRN_RANKER_LAYERS_MAX];    /* layer i: [out_i] */
};

struct krn_ranker {
	struct krn_ranker_config cfg;
	struct krn_ranker_weights w;
};

/* Input width of layer i. */
ZH_HD uint32_t krn_ranker_layer_in(const struct krn_ranker_config *cfg, uint32_t i);
ZH_HD uint64_t krn_ranker_weight_floats(const struct krn_ranker_config *cfg);
/* Point the weights at an arena: embedding, then weight[0], bias[0], weight[1], bias[1], ... */
ZH_HD void krn_ranker_bind(struct krn_ranker *m, const float *arena);
ZH_HD uint64_t krn_ranker_state_floats(const struct krn_ranker_config *cfg);

/*
 * Score one request: tokens (each < vocab_size, checked by the caller) and exactly dense_features
 * dense values. Writes output_size floats to `out`. `state`: krn_ranker_state_floats floats.
 */
ZH_HD void krn_ranker_forward(const struct krn_ranker *m, const uint32_t *tokens, uint32_t token_count,
			      const float *dense, float *state, float *out);

#endif /* KRN_RANKER_H */
