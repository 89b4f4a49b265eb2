/* SPDX-License-Identifier: MIT */
/*
 * krn_llama.h: the llama decoder (RMSNorm, RoPE, grouped-query attention with a per-request KV cache,
 * SwiGLU, tied or untied classifier), host/device-neutral. docs/MODELS.md gives the format.
 *
 * Structs are split by lifetime, as in llama2.c: the hyperparameters, the read-only weights (pointers
 * into one arena the loader fills; device addresses on CUDA), and the run state (activations and the KV
 * cache), which lives in the scratch of one consumer and serves one request at a time.
 */
#ifndef KRN_LLAMA_H
#define KRN_LLAMA_H

#include "zh_defs.h"

#define KRN_LLAMA_LAYERS_MAX 64u
#define KRN_LLAMA_SEQ_MAX 8192u
#define KRN_LLAMA_HEAD_SIZE_MAX 256u

struct krn_llama_config {
	uint32_t dim;           /* D, hidden_size */
	uint32_t hidden_dim;    /* H, intermediate_size */
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;    /* divides n_heads */
	uint32_t vocab_size;
	uint32_t seq_len;       /* max_position_embeddings: the context */
	uint32_t bos_id;
	uint32_t eos_id;
	uint32_t tied;          /* 1: the classifier is the token embedding */
	float rms_eps;
	float rope_theta;
};

/* Row-major F32. Shapes in brackets; L = n_layers, KV = dim / n_heads * n_kv_heads. */
struct krn_llama_weights {
	const float *token_embedding; /* [vocab][D] */
	const float *rms_att;         /* [L][D] */
	const float *wq;              /* [L][D][D]  rows in HF (rotate-half) order */
	const float *wk;              /* [L][KV][D] rows in HF (rotate-half) order */
	const float *wv;              /* [L][KV][D] */
	const float *wo;              /* [L][D][D] */
	const float *rms_ffn;         /* [L][D] */
	const float *w1;              /* [L][H][D] gate_proj */
	const float *w3;              /* [L][H][D] up_proj */
	const float *w2;              /* [L][D][H] down_proj */
	const float *rms_final;       /* [D] */
	const float *wcls;            /* [vocab][D], == token_embedding when tied */
	const float *rope_cos;        /* [seq_len][head_size / 2], precomputed at load */
	const float *rope_sin;        /* [seq_len][head_size / 2] */
};

struct krn_llama {
	struct krn_llama_config cfg;
	struct krn_llama_weights w;
};

/* Floats of weights in the arena for cfg, in the order krn_llama_bind lays them out. */
ZH_HD uint64_t krn_llama_weight_floats(const struct krn_llama_config *cfg);
/* Point the weights at an arena of krn_llama_weight_floats floats (host or device address). */
ZH_HD void krn_llama_bind(struct krn_llama *m, const float *arena);
/* Fill the RoPE tables of an arena (host side, at load). */
void krn_llama_fill_rope(const struct krn_llama_config *cfg, float *arena);

/* Floats of run state one consumer needs for cfg (activations, KV cache for seq_len positions). */
ZH_HD uint64_t krn_llama_state_floats(const struct krn_llama_config *cfg);

/*
 * Forward one token at position pos with the state in `state` (krn_llama_state_floats floats), whose
 * KV cache holds positions 0..pos-1 of this request. Returns the logits ([vocab], inside state).
 * thread_idx/thread_count split the work of one CUDA block (0/1 on the cpu device).
 */
ZH_HD float *krn_llama_forward(const struct krn_llama *m, float *state, uint32_t token, uint32_t pos,
			       uint32_t thread_idx, uint32_t thread_count);

#endif /* KRN_LLAMA_H */
