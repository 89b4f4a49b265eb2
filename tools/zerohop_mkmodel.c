/* SPDX-License-Identifier: MIT */
/*
 * zerohop-mkmodel: write a random llama or ranker model repository of any shape (docs/MODELS.md), for
 * tests and benchmarks. The values come from one splitmix64 stream seeded with --seed and consumed in
 * the order the tensors are written, so the same options always give the same bytes, and the F16/BF16
 * files of a seed hold the F32 file's values rounded to nearest even.
 *
 * Values are uniform: a matrix with fan-in n in ±1/sqrt(n) (PyTorch's default for Linear, biases too),
 * the llama token embedding in ±1/sqrt(D), the ranker embedding in ±1/sqrt(E), RMSNorm weights in 1 ± 0.1.
 *
 * Shapes are checked for consistency only (positive sizes, heads divide the width, kv heads divide the
 * heads, even head size), not against the kernels' limits: a model the loader refuses is a test too.
 *
 * Exit status: 0 written, 1 refused or failed (the reason on stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_proto.h"
#include "zh_safetensors_write.h"

#define TOOL "zerohop-mkmodel"
/* Values generated per zh_st_put call; the writer streams them out, so memory stays small at any size. */
#define CHUNK_VALUES 65536u
/* Hidden layers of a ranker this tool accepts; the kernel's own limit is lower, on purpose. */
#define RANKER_HIDDEN_MAX 32u
/* The largest dimension accepted; it keeps every product of two dimensions well inside 64 bits. */
#define DIM_MAX (1ull << 31)

enum arch { ARCH_LLAMA, ARCH_RANKER };

struct ranker_shape {
	uint64_t vocab, embedding_dim, dense, outputs;
	uint64_t hidden[RANKER_HIDDEN_MAX];
	uint32_t hidden_count;
	const char *bag;        /* "sum" | "mean" */
	const char *activation; /* "sigmoid" | "none" */
};

struct mk_options {
	enum arch arch;
	const char *out_dir;
	const char *name; /* NULL: the output directory's last component */
	uint64_t seed;
	int seed_given;
	enum zh_st_dtype dtype;
	struct zh_llama_shape llama;
	struct ranker_shape ranker;
};

/* The generator and its scratch: one per run. */
struct gen {
	uint64_t state; /* splitmix64 */
	float *chunk;   /* [CHUNK_VALUES] */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " TOOL " llama|ranker OUT_DIR --seed N [options]\n"
		"  Write a random model as OUT_DIR/config.json and OUT_DIR/model.safetensors (docs/MODELS.md).\n"
		"  --seed N             the seed (required); the same options give the same bytes\n"
		"  --dtype f32|f16|bf16 dtype of every tensor (default f32)\n"
		"  --name NAME          model name in the metadata (default: OUT_DIR's last component)\n"
		"llama (defaults in brackets):\n"
		"  --dim N [64] --hidden N [172] --layers N [5] --heads N [8] --kv-heads N [= heads]\n"
		"  --vocab N [512] --seq-len N [512] --untied (a separate lm_head; default tied)\n"
		"ranker:\n"
		"  --vocab N [1000] --embedding-dim N [16] --dense N [4] --hidden LIST [32,16] (comma-separated;\n"
		"  \"\" for none) --outputs N [1] --bag sum|mean [sum] --activation sigmoid|none [sigmoid]\n"
		"exit status: 0 written, 1 refused or failed\n");
}

/* ---- random values --------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Fill the chunk with center ± radius. Each value is a 24-bit integer in [-2^23, 2^23) scaled by
 * radius / 2^23: exact integer arithmetic and one rounding, so every build produces the same floats.
 */
static void gen_fill(struct gen *g, uint64_t count, float center, float radius)
{
	const float scale = radius / 8388608.0f;
	uint64_t i;

	for (i = 0; i < count; i++) {
		int32_t u = (int32_t)(splitmix64(&g->state) >> 40) - 8388608;

		g->chunk[i] = center + (float)u * scale;
	}
}

/* Generate and write count values of center ± radius, a chunk at a time. */
static int gen_put(struct zh_st_writer *w, struct gen *g, uint64_t count, float center, float radius)
{
	while (count > 0) {
		uint64_t n = count < CHUNK_VALUES ? count : CHUNK_VALUES;
		int ret;

		gen_fill(g, n, center, radius);
		ret = zh_st_put(w, g->chunk, n);
		if (ret)
			return ret;
		count -= n;
	}
	return 0;
}

static float fan_in_radius(uint64_t fan_in)
{
	return (float)(1.0 / sqrt((double)fan_in));
}

/* ---- options --------------------------------------------------------------------------------- */

static int parse_u64(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || end == text || *end != '\0' || text[0] == '-' || text[0] == '+' || v < min || v > max) {
		fprintf(stderr, TOOL ": --%s %s: expected an integer in %" PRIu64 "..%" PRIu64 "\n", opt, text, min,
			max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* "32,16" -> {32, 16}; "" -> no hidden layers. */
static int parse_hidden(const char *text, struct ranker_shape *r)
{
	char item[32];
	const char *p = text;

	r->hidden_count = 0;
	while (*p) {
		size_t len = strcspn(p, ",");

		if (r->hidden_count == RANKER_HIDDEN_MAX || len == 0 || len >= sizeof(item)) {
			fprintf(stderr, TOOL ": --hidden %s: expected up to %u comma-separated widths\n", text,
				RANKER_HIDDEN_MAX);
			return -EINVAL;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (parse_u64("hidden", item, 1, DIM_MAX, &r->hidden[r->hidden_count]) != 0)
			return -EINVAL;
		r->hidden_count++;
		p += len;
		if (*p == ',' && *++p == '\0') {
			fprintf(stderr, TOOL ": --hidden %s: trailing comma\n", text);
			return -EINVAL;
		}
	}
	return 0;
}

static void set_defaults(struct mk_options *o)
{
	memset(o, 0, sizeof(*o));
	o->dtype = ZH_ST_F32;
	o->llama = (struct zh_llama_shape){ .dim = 64, .hidden = 172, .layers = 5, .heads = 8, .kv_heads = 0,
					 .vocab = 512, .seq_len = 512, .tied = 1 };
	o->ranker = (struct ranker_shape){ .vocab = 1000, .embedding_dim = 16, .dense = 4, .outputs = 1,
					   .hidden = { 32, 16 }, .hidden_count = 2, .bag = "sum",
					   .activation = "sigmoid" };
}

enum {
	O_SEED = 256, O_DTYPE, O_NAME, O_HELP,
	O_DIM, O_HIDDEN, O_LAYERS, O_HEADS, O_KV_HEADS, O_VOCAB, O_SEQ_LEN, O_UNTIED,
	O_EMBEDDING_DIM, O_DENSE, O_OUTPUTS, O_BAG, O_ACTIVATION,
};

static const struct option longopts[] = {
	{ "seed", required_argument, NULL, O_SEED },
	{ "dtype", required_argument, NULL, O_DTYPE },
	{ "name", required_argument, NULL, O_NAME },
	{ "help", no_argument, NULL, O_HELP },
	{ "dim", required_argument, NULL, O_DIM },
	{ "hidden", required_argument, NULL, O_HIDDEN },
	{ "layers", required_argument, NULL, O_LAYERS },
	{ "heads", required_argument, NULL, O_HEADS },
	{ "kv-heads", required_argument, NULL, O_KV_HEADS },
	{ "vocab", required_argument, NULL, O_VOCAB },
	{ "seq-len", required_argument, NULL, O_SEQ_LEN },
	{ "untied", no_argument, NULL, O_UNTIED },
	{ "embedding-dim", required_argument, NULL, O_EMBEDDING_DIM },
	{ "dense", required_argument, NULL, O_DENSE },
	{ "outputs", required_argument, NULL, O_OUTPUTS },
	{ "bag", required_argument, NULL, O_BAG },
	{ "activation", required_argument, NULL, O_ACTIVATION },
	{ NULL, 0, NULL, 0 },
};

/* Options that belong to one architecture only; naming one for the other is a mistake worth refusing. */
static int option_fits(int c, enum arch arch)
{
	switch (c) {
	case O_DIM: case O_LAYERS: case O_HEADS: case O_KV_HEADS: case O_SEQ_LEN: case O_UNTIED:
		return arch == ARCH_LLAMA;
	case O_EMBEDDING_DIM: case O_DENSE: case O_OUTPUTS: case O_BAG: case O_ACTIVATION:
		return arch == ARCH_RANKER;
	default:
		return 1;
	}
}

static const char *option_name(int c)
{
	const struct option *p;

	for (p = longopts; p->name; p++)
		if (p->val == c)
			return p->name;
	return "?";
}

static int apply_option(struct mk_options *o, int c, const char *arg)
{
	struct zh_llama_shape *l = &o->llama;
	struct ranker_shape *r = &o->ranker;
	const char *name = option_name(c);

	switch (c) {
	case O_SEED:
		o->seed_given = 1;
		return parse_u64(name, arg, 0, UINT64_MAX, &o->seed);
	case O_DTYPE:
		if (zh_st_dtype_parse(arg, &o->dtype) == 0)
			return 0;
		fprintf(stderr, TOOL ": --dtype %s: expected f32, f16 or bf16\n", arg);
		return -EINVAL;
	case O_NAME:
		o->name = arg;
		return 0;
	case O_DIM: return parse_u64(name, arg, 1, DIM_MAX, &l->dim);
	case O_HIDDEN:
		return o->arch == ARCH_LLAMA ? parse_u64(name, arg, 1, DIM_MAX, &l->hidden) : parse_hidden(arg, r);
	case O_LAYERS: return parse_u64(name, arg, 1, DIM_MAX, &l->layers);
	case O_HEADS: return parse_u64(name, arg, 1, DIM_MAX, &l->heads);
	case O_KV_HEADS: return parse_u64(name, arg, 1, DIM_MAX, &l->kv_heads);
	case O_VOCAB: return parse_u64(name, arg, 1, DIM_MAX, o->arch == ARCH_LLAMA ? &l->vocab : &r->vocab);
	case O_SEQ_LEN: return parse_u64(name, arg, 1, DIM_MAX, &l->seq_len);
	case O_UNTIED:
		l->tied = 0;
		return 0;
	case O_EMBEDDING_DIM: return parse_u64(name, arg, 1, DIM_MAX, &r->embedding_dim);
	case O_DENSE: return parse_u64(name, arg, 0, DIM_MAX, &r->dense);
	case O_OUTPUTS: return parse_u64(name, arg, 1, DIM_MAX, &r->outputs);
	case O_BAG:
		if (strcmp(arg, "sum") == 0 || strcmp(arg, "mean") == 0) {
			r->bag = arg;
			return 0;
		}
		fprintf(stderr, TOOL ": --bag %s: expected sum or mean\n", arg);
		return -EINVAL;
	case O_ACTIVATION:
		if (strcmp(arg, "sigmoid") == 0 || strcmp(arg, "none") == 0) {
			r->activation = arg;
			return 0;
		}
		fprintf(stderr, TOOL ": --activation %s: expected sigmoid or none\n", arg);
		return -EINVAL;
	}
	return -EINVAL;
}

/* The llama shape must make sense as a model; the same rules as a llama2.c header. */
static int check_llama(struct zh_llama_shape *l)
{
	if (l->kv_heads == 0)
		l->kv_heads = l->heads;
	if (l->dim % l->heads != 0) {
		fprintf(stderr, TOOL ": --heads %" PRIu64 " does not divide --dim %" PRIu64 "\n", l->heads, l->dim);
		return -EINVAL;
	}
	if (l->heads % l->kv_heads != 0) {
		fprintf(stderr, TOOL ": --kv-heads %" PRIu64 " does not divide --heads %" PRIu64 "\n", l->kv_heads,
			l->heads);
		return -EINVAL;
	}
	if ((l->dim / l->heads) % 2 != 0) {
		fprintf(stderr, TOOL ": head size %" PRIu64 " (dim / heads) is odd; RoPE needs pairs\n",
			l->dim / l->heads);
		return -EINVAL;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct mk_options *o)
{
	int c;

	set_defaults(o);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		exit(0);
	}
	if (argc < 3 || (strcmp(argv[1], "llama") != 0 && strcmp(argv[1], "ranker") != 0) || argv[2][0] == '-') {
		fprintf(stderr, TOOL ": expected llama or ranker, then OUT_DIR\n");
		usage(stderr);
		return -EINVAL;
	}
	o->arch = strcmp(argv[1], "llama") == 0 ? ARCH_LLAMA : ARCH_RANKER;
	o->out_dir = argv[2];
	opterr = 0;
	optind = 3;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h' || c == O_HELP) {
			usage(stdout);
			exit(0);
		}
		if (c < O_SEED || c > O_ACTIVATION) {
			fprintf(stderr, TOOL ": unknown option or missing value: %s\n", argv[optind - 1]);
			return -EINVAL;
		}
		if (!option_fits(c, o->arch)) {
			fprintf(stderr, TOOL ": --%s is not an option of %s\n", option_name(c), argv[1]);
			return -EINVAL;
		}
		if (apply_option(o, c, optarg) != 0)
			return -EINVAL;
	}
	if (optind != argc) {
		fprintf(stderr, TOOL ": unexpected argument: %s\n", argv[optind]);
		return -EINVAL;
	}
	if (!o->seed_given) {
		fprintf(stderr, TOOL ": --seed N is required\n");
		return -EINVAL;
	}
	return o->arch == ARCH_LLAMA ? check_llama(&o->llama) : 0;
}

/* ---- llama ----------------------------------------------------------------------------------- */

static int llama_put(struct zh_st_writer *w, struct gen *g, const struct zh_llama_shape *l)
{
	const uint64_t kv_dim = l->dim / l->heads * l->kv_heads;
	const float rd = fan_in_radius(l->dim), rh = fan_in_radius(l->hidden);
	int ret;
	uint64_t i;

	ret = gen_put(w, g, l->vocab * l->dim, 0.0f, rd);
	for (i = 0; i < l->layers && ret == 0; i++) {
		if ((ret = gen_put(w, g, l->dim, 1.0f, 0.1f)) ||           /* input_layernorm */
		    (ret = gen_put(w, g, l->dim * l->dim, 0.0f, rd)) ||     /* q_proj */
		    (ret = gen_put(w, g, kv_dim * l->dim, 0.0f, rd)) ||     /* k_proj */
		    (ret = gen_put(w, g, kv_dim * l->dim, 0.0f, rd)) ||     /* v_proj */
		    (ret = gen_put(w, g, l->dim * l->dim, 0.0f, rd)) ||     /* o_proj */
		    (ret = gen_put(w, g, l->dim, 1.0f, 0.1f)) ||           /* post_attention_layernorm */
		    (ret = gen_put(w, g, l->hidden * l->dim, 0.0f, rd)) ||  /* gate_proj */
		    (ret = gen_put(w, g, l->hidden * l->dim, 0.0f, rd)) ||  /* up_proj */
		    (ret = gen_put(w, g, l->dim * l->hidden, 0.0f, rh)))    /* down_proj: fan-in H */
			break;
	}
	if (ret == 0)
		ret = gen_put(w, g, l->dim, 1.0f, 0.1f);
	if (ret == 0 && !l->tied)
		ret = gen_put(w, g, l->vocab * l->dim, 0.0f, rd);
	return ret;
}

/* ---- ranker ---------------------------------------------------------------------------------- */

/* Width of ranker layer i (hidden layers, then the output layer) and of its input. */
static uint64_t ranker_out(const struct ranker_shape *r, uint32_t i)
{
	return i < r->hidden_count ? r->hidden[i] : r->outputs;
}

static uint64_t ranker_in(const struct ranker_shape *r, uint32_t i)
{
	return i == 0 ? r->embedding_dim + r->dense : r->hidden[i - 1];
}

static int ranker_declare(struct zh_st_writer *w, const struct ranker_shape *r, enum zh_st_dtype dt)
{
	const uint64_t emb[2] = { r->vocab, r->embedding_dim };
	int ret;
	uint32_t i;

	ret = zh_st_add(w, dt, 2, emb, "embedding.weight");
	for (i = 0; i <= r->hidden_count && ret == 0; i++) {
		const uint64_t weight[2] = { ranker_out(r, i), ranker_in(r, i) }, bias[1] = { ranker_out(r, i) };

		ret = zh_st_add(w, dt, 2, weight, "mlp.%u.weight", i);
		if (ret == 0)
			ret = zh_st_add(w, dt, 1, bias, "mlp.%u.bias", i);
	}
	return ret;
}

static int ranker_put(struct zh_st_writer *w, struct gen *g, const struct ranker_shape *r)
{
	int ret;
	uint32_t i;

	ret = gen_put(w, g, r->vocab * r->embedding_dim, 0.0f, fan_in_radius(r->embedding_dim));
	for (i = 0; i <= r->hidden_count && ret == 0; i++) {
		const float radius = fan_in_radius(ranker_in(r, i));

		ret = gen_put(w, g, ranker_out(r, i) * ranker_in(r, i), 0.0f, radius);
		if (ret == 0)
			ret = gen_put(w, g, ranker_out(r, i), 0.0f, radius);
	}
	return ret;
}

static int ranker_config(const char *dir, const struct ranker_shape *r)
{
	struct zh_buf cfg, list = { 0 };
	uint32_t i;
	int ret;

	zh_buf_printf(&list, "[");
	for (i = 0; i < r->hidden_count; i++)
		zh_buf_printf(&list, "%s%" PRIu64, i ? ", " : "", r->hidden[i]);
	zh_buf_printf(&list, "]");
	zh_cfg_init(&cfg);
	zh_cfg_raw(&cfg, "architectures", "[\"ZerohopRanker\"]");
	zh_cfg_str(&cfg, "model_type", "zerohop_ranker");
	zh_cfg_u64(&cfg, "vocab_size", r->vocab);
	zh_cfg_u64(&cfg, "embedding_dim", r->embedding_dim);
	zh_cfg_str(&cfg, "bag_mode", r->bag);
	zh_cfg_u64(&cfg, "dense_features", r->dense);
	zh_cfg_raw(&cfg, "hidden_sizes", list.failed ? "[]" : list.data);
	zh_cfg_u64(&cfg, "output_size", r->outputs);
	zh_cfg_str(&cfg, "output_activation", r->activation);
	if (list.failed)
		cfg.failed = 1;
	ret = zh_cfg_write(&cfg, TOOL, dir, "config.json");
	zh_buf_free(&list);
	return ret;
}

/* ---- main ------------------------------------------------------------------------------------ */

static int write_model(const struct mk_options *o, const char *name)
{
	struct zh_st_writer w;
	struct gen g = { .state = o->seed };
	char seed[32];
	int ret;

	g.chunk = malloc(CHUNK_VALUES * sizeof(float));
	if (!g.chunk) {
		fprintf(stderr, TOOL ": out of memory\n");
		return -ENOMEM;
	}
	snprintf(seed, sizeof(seed), "%" PRIu64, o->seed);
	zh_st_init(&w, TOOL);
	if ((ret = zh_st_meta(&w, "format", "pt")) == 0 && (ret = zh_st_meta(&w, "generator", TOOL)) == 0 &&
	    (ret = zh_st_meta(&w, "seed", seed)) == 0)
		ret = zh_st_meta(&w, "name", name);
	if (ret == 0)
		ret = o->arch == ARCH_LLAMA ? zh_llama_declare(&w, &o->llama, o->dtype)
					    : ranker_declare(&w, &o->ranker, o->dtype);
	if (ret == 0)
		ret = zh_out_dir(TOOL, o->out_dir);
	if (ret == 0)
		ret = zh_st_begin(&w, o->out_dir);
	if (ret == 0)
		ret = o->arch == ARCH_LLAMA ? llama_put(&w, &g, &o->llama) : ranker_put(&w, &g, &o->ranker);
	if (ret == 0)
		ret = zh_st_commit(&w, o->out_dir, "model.safetensors");
	if (ret == 0)
		ret = o->arch == ARCH_LLAMA ? zh_llama_config(TOOL, o->out_dir, &o->llama)
					    : ranker_config(o->out_dir, &o->ranker);
	zh_st_free(&w);
	free(g.chunk);
	return ret;
}

int main(int argc, char **argv)
{
	struct mk_options o;
	char name[ZH_MODEL_NAME_MAX + 1];

	if (parse_args(argc, argv, &o) != 0)
		return 1;
	if (zh_model_name(TOOL, o.name, o.out_dir, name, sizeof(name)) != 0)
		return 1;
	return write_model(&o, name) == 0 ? 0 : 1;
}
