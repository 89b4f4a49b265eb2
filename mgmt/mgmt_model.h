/* SPDX-License-Identifier: MIT */
/*
 * mgmt_model.h: the model repository loader (docs/MODELS.md). A model is a directory holding
 * config.json and model.safetensors; the loader checks both against the format contract, names the
 * file, the tensor (or config key) and the rule of the first thing it refuses, and only then copies the
 * weights, converted to F32, into one arena laid out by krn_llama_bind or krn_ranker_bind.
 *
 * Host only. The safetensors reader is separate from the loader so that it can be fuzzed on its own.
 */
#ifndef MGMT_MODEL_H
#define MGMT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "krn_serve.h"

/* Bytes of a reason, NUL included: "<rule>: <tensor or key>: <detail>", truncated if longer. */
#define MGMT_WHY_SIZE 256u
/* Bytes of a tensor name, as the reader accepts it. */
#define MGMT_TENSOR_NAME_MAX 255u
/* At most this many dimensions per tensor (docs/MODELS.md, rule `shape`). */
#define MGMT_TENSOR_DIMS_MAX 8u

enum mgmt_dtype { MGMT_DTYPE_F32, MGMT_DTYPE_F16, MGMT_DTYPE_BF16 };

struct mgmt_tensor {
	const char *name;                       /* NUL-terminated, owned by the mgmt_safetensors */
	enum mgmt_dtype dtype;
	uint32_t ndim;                          /* 0..MGMT_TENSOR_DIMS_MAX; 0 is a scalar */
	uint64_t shape[MGMT_TENSOR_DIMS_MAX];   /* shape[ndim..] are 0 */
	const uint8_t *data;                    /* inside the caller's buffer; little-endian, maybe unaligned */
	uint64_t size_bytes;                    /* elements x dtype size */
};

struct mgmt_safetensors {
	uint32_t tensor_count;
	struct mgmt_tensor *tensors;  /* sorted by name (bytewise); `__metadata__` is not a tensor */
	/* Private: the tensors and their names are this one allocation. */
	void *mem;
};

/*
 * Validate and index a whole safetensors file held in memory. buf stays owned by the caller and must
 * outlive *out. Applies the rules header-size, header-json, tensor-entry, dtype, shape, byte-size,
 * data-range, overlap and alignment of docs/MODELS.md. Returns 0, or -EINVAL with `why` set to
 * "<rule>: <tensor name or 'header'>: <detail>", or -ENOMEM; on failure *out is zeroed.
 */
int mgmt_safetensors_parse(const uint8_t *buf, size_t size, struct mgmt_safetensors *out,
			   char why[MGMT_WHY_SIZE]);
/* The tensor called `name`, or NULL. */
const struct mgmt_tensor *mgmt_safetensors_find(const struct mgmt_safetensors *st, const char *name);
/* Release what parse allocated; safe on a zeroed struct and twice in a row. */
void mgmt_safetensors_free(struct mgmt_safetensors *st);

struct mgmt_model {
	struct krn_model model;   /* name, arch, and the llama or ranker with weights bound to `arena` */
	float *arena;             /* aligned_alloc(64), F32, owned */
	uint64_t arena_floats;
	uint64_t state_floats;    /* krn_llama_state_floats / krn_ranker_state_floats for this config */
	uint32_t warning_count;   /* tensors the architecture does not use, each printed once to stderr */
};

/*
 * Load DIR/config.json and DIR/model.safetensors as model NAME (1..ZH_MODEL_NAME_MAX bytes). Every
 * check runs before the arena is allocated; F16 and BF16 are converted to F32 exactly. Returns 0, or a
 * negative errno with `why` naming the file, the tensor or config key and the rule: -ENOENT and other
 * open/read errors, -EFBIG for a file over the size cap, -EINVAL for a refused model, -ENOMEM.
 * On failure *out is left untouched, so a zeroed or a loaded model stays safe to free.
 */
int mgmt_model_load(const char *name, const char *dir, struct mgmt_model *out, char why[MGMT_WHY_SIZE]);
/* Release the arena and zero *m; safe on a zeroed struct and twice in a row. */
/* The same checks and result from the two files' contents already in memory (the management plane
 * reads them through io_uring). Error texts name the file as mgmt_model_load's do. */
int mgmt_model_load_mem(const char *name, const uint8_t *cfg_buf, size_t cfg_bytes, const uint8_t *st_buf,
			size_t st_bytes, struct mgmt_model *out, char why[MGMT_WHY_SIZE]);
/* Byte caps on the two files, checked before anything is read. */
#define MGMT_CONFIG_FILE_MAX_BYTES (1u << 20)
#define MGMT_MODEL_FILE_MAX_BYTES (4ull << 30)
void mgmt_model_free(struct mgmt_model *m);

#endif /* MGMT_MODEL_H */
