/* SPDX-License-Identifier: MIT */
/*
 * zh_safetensors_write.h: what zerohop-convert and zerohop-mkmodel share: writing a model repository's
 * model.safetensors and config.json (docs/MODELS.md). Every file is written to OUT_DIR/.tmp-NAME.XXXXXX,
 * synced and renamed into place, so a reader sees the old file or the new one, never half of one.
 *
 * A safetensors file is written in three steps. zh_st_add declares each tensor (name, dtype, shape) in
 * the order it is to appear; zh_st_begin lays the tensors out back to back in that order and writes the
 * header; zh_st_put then streams the float32 values of the tensors in the same order, in pieces of any
 * size, converting each piece to its tensor's dtype (round to nearest even). zh_st_commit renames the
 * finished file into place. zh_st_free releases everything and removes an uncommitted temporary file.
 *
 * Every function reports its own errors on stderr, prefixed with the tool's name, and returns a
 * negative errno; the callers only pass the failure on.
 */
#ifndef ZH_SAFETENSORS_WRITE_H
#define ZH_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#define ZH_ST_NAME_MAX 127u  /* bytes of a tensor name */
#define ZH_ST_DIMS_MAX 8u    /* dimensions of a tensor, as docs/MODELS.md allows */
#define ZH_ST_META_MAX 8u    /* `__metadata__` entries */

enum zh_st_dtype { ZH_ST_F32 = 0, ZH_ST_F16, ZH_ST_BF16 };

struct zh_st_tensor {
	char name[ZH_ST_NAME_MAX + 1];
	enum zh_st_dtype dtype;
	uint32_t ndim;
	uint64_t shape[ZH_ST_DIMS_MAX];
	uint64_t count;        /* elements: the product of shape */
	uint64_t begin_bytes;  /* offset in the data area; set by zh_st_begin */
};

/* A growable string; once an allocation fails it stays failed and the owner reports it at the end. */
struct zh_buf {
	char *data;  /* NUL-terminated while not failed */
	size_t len;
	size_t cap;
	int failed;
};

struct zh_st_writer {
	const char *tool;             /* prefix of error messages */
	struct zh_st_tensor *tensors; /* [tensor_cap], declared ones first */
	uint32_t tensor_count;
	uint32_t tensor_cap;
	char *meta_key[ZH_ST_META_MAX];
	char *meta_value[ZH_ST_META_MAX];
	uint32_t meta_count;
	uint64_t data_bytes;          /* size of the data area, known after zh_st_begin */
	uint32_t put_tensor;          /* the tensor zh_st_put fills next */
	uint64_t put_done;            /* elements of it already written */
	int fd;                       /* the temporary file, -1 when none is open */
	char *tmp_path;               /* its name, NULL when none exists */
	void *stage;                  /* conversion buffer for F16/BF16 pieces */
};

void zh_st_init(struct zh_st_writer *w, const char *tool);
void zh_st_free(struct zh_st_writer *w);
/* Add a `__metadata__` string entry; entries appear in the order they are added. */
int zh_st_meta(struct zh_st_writer *w, const char *key, const char *value);
/* Declare the next tensor; the name is formatted like printf. */
int zh_st_add(struct zh_st_writer *w, enum zh_st_dtype dtype, uint32_t ndim, const uint64_t *shape,
	      const char *name_fmt, ...) __attribute__((format(printf, 5, 6)));
/* Create the temporary file in dir and write the size and the header. */
int zh_st_begin(struct zh_st_writer *w, const char *dir);
/* Write the next count values, continuing the current tensor and moving on to the next ones. */
int zh_st_put(struct zh_st_writer *w, const float *values, uint64_t count);
/* Check that every tensor is complete, sync, and rename the file to dir/name. */
int zh_st_commit(struct zh_st_writer *w, const char *dir, const char *name);

/* Bytes per element of a dtype, and its name in the header. */
uint32_t zh_st_dtype_bytes(enum zh_st_dtype dtype);
const char *zh_st_dtype_name(enum zh_st_dtype dtype);
/* Parse "f32", "f16" or "bf16"; -EINVAL for anything else. */
int zh_st_dtype_parse(const char *text, enum zh_st_dtype *out);
/* Round to nearest even; NaN stays a (quiet) NaN with its sign, overflow becomes infinity. */
uint16_t zh_f32_to_f16(float value);
uint16_t zh_f32_to_bf16(float value);

/* A llama's shape, as its config.json gives it (docs/MODELS.md, `llama`). */
struct zh_llama_shape {
	uint64_t dim;      /* hidden_size, D */
	uint64_t hidden;   /* intermediate_size, H */
	uint64_t layers;   /* num_hidden_layers, L */
	uint64_t heads;    /* num_attention_heads; divides D, D / heads even */
	uint64_t kv_heads; /* num_key_value_heads; divides heads */
	uint64_t vocab;
	uint64_t seq_len;  /* max_position_embeddings */
	int tied;          /* tie_word_embeddings: no lm_head */
};

/*
 * Declare a llama's tensors, all of one dtype, with HF names, in the order both tools write them: the
 * embedding; per layer input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down; the final
 * norm; lm_head when untied.
 */
int zh_llama_declare(struct zh_st_writer *w, const struct zh_llama_shape *s, enum zh_st_dtype dtype);
/* Write dir/config.json for the shape, with llama2.c's constants (eps 1e-05, theta 10000, BOS 1, EOS 2). */
int zh_llama_config(const char *tool, const char *dir, const struct zh_llama_shape *s);

/*
 * config.json: a JSON object with one key per line, keys in the order they are added. Values are
 * strings (escaped), unsigned integers, or JSON text given as is ("1e-05", "true", "[32, 16]").
 */
void zh_cfg_init(struct zh_buf *cfg);
void zh_cfg_str(struct zh_buf *cfg, const char *key, const char *value);
void zh_cfg_u64(struct zh_buf *cfg, const char *key, uint64_t value);
void zh_cfg_raw(struct zh_buf *cfg, const char *key, const char *json);
/* Close the object and write it atomically to dir/name. Frees the buffer either way. */
int zh_cfg_write(struct zh_buf *cfg, const char *tool, const char *dir, const char *name);

void zh_buf_free(struct zh_buf *b);
void zh_buf_printf(struct zh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append text as a JSON string: quoted; '"', '\\' and control bytes escaped; bytes >= 0x80 become '?'. */
void zh_buf_json_str(struct zh_buf *b, const char *text);

/* Create dir and its missing parents, as mkdir -p does; fine if it is already a directory. */
int zh_out_dir(const char *tool, const char *dir);
/* Write len bytes to dir/name through a synced temporary file and a rename. */
int zh_write_atomic(const char *tool, const char *dir, const char *name, const void *data, size_t len);

/* The last component of a path, trailing slashes dropped, into out; empty when it does not fit. */
void zh_path_last(const char *path, char *out, size_t out_size);
/*
 * The model name recorded in the metadata: `given` (from --name) or else out_dir's last component. It
 * must be 1..31 bytes of [A-Za-z0-9._-], as zerohopd's model names are. -EINVAL, said on stderr, if not.
 */
int zh_model_name(const char *tool, const char *given, const char *out_dir, char *out, size_t out_size);

#endif /* ZH_SAFETENSORS_WRITE_H */
