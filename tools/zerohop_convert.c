/* SPDX-License-Identifier: MIT */
/*
 * zerohop-convert: import a llama2.c checkpoint (the legacy .bin of llama2.c's run.c: a 7 x int32
 * header, then float32 weights) as a zerohop model repository: config.json and model.safetensors with
 * Hugging Face's tensor names (docs/MODELS.md).
 *
 * The weights are copied bit for bit, with one change: the rows of every q_proj and k_proj are
 * reordered from llama2.c's interleaved RoPE pairs (2i, 2i+1) to Hugging Face's rotate-half pairs
 * (i, i + head_size/2), as HF's own conversion script does, because the llama kernel rotates that way.
 *
 * The output depends on the input bytes and the options only, so converting twice gives identical files.
 *
 * Exit status: 0 converted, 1 refused or failed (the reason on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "zh_proto.h"
#include "zh_safetensors_write.h"

#define TOOL "zerohop-convert"
#define HEADER_BYTES 28u /* 7 x int32 */

/* The checkpoint's hyperparameters, checked, widened so that products of them cannot overflow unseen. */
struct l2c_config {
	uint64_t dim;       /* D */
	uint64_t hidden;    /* H */
	uint64_t layers;    /* L */
	uint64_t heads;
	uint64_t kv_heads;
	uint64_t vocab;
	uint64_t seq_len;
	uint64_t head_size; /* D / heads */
	uint64_t kv_dim;    /* head_size * kv_heads */
	int tied;           /* 1: the classifier is the token embedding (vocab_size was positive) */
};

/* Read-only weights pointing into the mapped file, in llama2.c's order. */
struct l2c_weights {
	const float *token_embedding; /* [vocab][D] */
	const float *rms_att;         /* [L][D] */
	const float *wq;              /* [L][D][D], interleaved RoPE rows */
	const float *wk;              /* [L][KV][D], interleaved RoPE rows */
	const float *wv;              /* [L][KV][D] */
	const float *wo;              /* [L][D][D] */
	const float *rms_ffn;         /* [L][D] */
	const float *w1;              /* [L][H][D] */
	const float *w2;              /* [L][D][H] */
	const float *w3;              /* [L][H][D] */
	const float *rms_final;       /* [D] */
	const float *wcls;            /* [vocab][D]; the token embedding when tied */
};

struct convert_options {
	const char *in_path;
	const char *out_dir;
	const char *name; /* NULL: the output directory's last component */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " TOOL " IN.bin OUT_DIR [--name NAME]\n"
		"  Import a llama2.c checkpoint as OUT_DIR/config.json and OUT_DIR/model.safetensors\n"
		"  (docs/MODELS.md). OUT_DIR is created if missing; existing files are replaced atomically.\n"
		"  --name NAME   model name recorded in the safetensors metadata (default: OUT_DIR's last\n"
		"                component); 1..31 characters of [A-Za-z0-9._-]\n"
		"exit status: 0 converted, 1 refused or failed\n");
}

static int parse_args(int argc, char **argv, struct convert_options *opt)
{
	enum { O_NAME = 256, O_HELP };
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, O_NAME },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(opt, 0, sizeof(*opt));
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_NAME:
			opt->name = optarg;
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, TOOL ": unknown option or missing value: %s\n", argv[optind - 1]);
			usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, TOOL ": expected IN.bin and OUT_DIR\n");
		usage(stderr);
		return -EINVAL;
	}
	opt->in_path = argv[optind];
	opt->out_dir = argv[optind + 1];
	return 0;
}

static int32_t le_i32(const unsigned char *p)
{
	uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

	return (int32_t)v;
}

/* Check the header's values and derive the shapes. Prints the first broken rule. */
static int parse_header(const char *path, const unsigned char *p, struct l2c_config *cfg)
{
	static const char *const names[7] = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
					      "vocab_size", "seq_len" };
	int32_t h[7];
	int i;

	for (i = 0; i < 7; i++)
		h[i] = le_i32(p + 4 * i);
	for (i = 0; i < 7; i++) {
		/* vocab_size carries the tying in its sign; its magnitude must still be positive. */
		if (h[i] > 0 || (i == 5 && h[i] < 0 && h[i] != INT32_MIN))
			continue;
		fprintf(stderr, TOOL ": %s: bad header: %s is %" PRId32 ", must be %s\n", path, names[i], h[i],
			i == 5 ? "nonzero" : "positive");
		return -EINVAL;
	}
	cfg->dim = (uint64_t)h[0];
	cfg->hidden = (uint64_t)h[1];
	cfg->layers = (uint64_t)h[2];
	cfg->heads = (uint64_t)h[3];
	cfg->kv_heads = (uint64_t)h[4];
	cfg->tied = h[5] > 0;
	cfg->vocab = (uint64_t)(h[5] > 0 ? h[5] : -h[5]);
	cfg->seq_len = (uint64_t)h[6];
	if (cfg->dim % cfg->heads != 0) {
		fprintf(stderr, TOOL ": %s: bad header: n_heads %" PRIu64 " does not divide dim %" PRIu64 "\n", path,
			cfg->heads, cfg->dim);
		return -EINVAL;
	}
	if (cfg->heads % cfg->kv_heads != 0) {
		fprintf(stderr, TOOL ": %s: bad header: n_kv_heads %" PRIu64 " does not divide n_heads %" PRIu64 "\n",
			path, cfg->kv_heads, cfg->heads);
		return -EINVAL;
	}
	cfg->head_size = cfg->dim / cfg->heads;
	if (cfg->head_size % 2 != 0) {
		fprintf(stderr, TOOL ": %s: bad header: head size %" PRIu64 " (dim / n_heads) is odd; RoPE needs pairs\n",
			path, cfg->head_size);
		return -EINVAL;
	}
	cfg->kv_dim = cfg->head_size * cfg->kv_heads;
	return 0;
}

/*
 * Floats after the header: the weights, the two legacy RoPE tables (seq_len * head_size / 2 each), and
 * the classifier when untied. Every term is below 2^62, but sums and products of them need not be.
 */
static int checkpoint_floats(const struct l2c_config *c, int with_wcls, uint64_t *out)
{
	uint64_t dd, kd, hd, per_layer, total, t;
	int bad = 0;

	bad |= __builtin_mul_overflow(c->dim, c->dim, &dd);
	bad |= __builtin_mul_overflow(c->kv_dim, c->dim, &kd);
	bad |= __builtin_mul_overflow(c->hidden, c->dim, &hd);
	/* rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3 */
	bad |= __builtin_mul_overflow(hd, 3, &per_layer);
	bad |= __builtin_mul_overflow(dd, 2, &t) || __builtin_add_overflow(per_layer, t, &per_layer);
	bad |= __builtin_mul_overflow(kd, 2, &t) || __builtin_add_overflow(per_layer, t, &per_layer);
	bad |= __builtin_mul_overflow(c->dim, 2, &t) || __builtin_add_overflow(per_layer, t, &per_layer);
	bad |= __builtin_mul_overflow(per_layer, c->layers, &total);
	bad |= __builtin_mul_overflow(c->vocab, c->dim, &t) || __builtin_add_overflow(total, t, &total);
	bad |= __builtin_add_overflow(total, c->dim, &total);
	bad |= __builtin_mul_overflow(c->seq_len, c->head_size, &t) || __builtin_add_overflow(total, t, &total);
	if (with_wcls)
		bad |= __builtin_mul_overflow(c->vocab, c->dim, &t) || __builtin_add_overflow(total, t, &total);
	bad |= total > (UINT64_MAX - HEADER_BYTES) / sizeof(float);
	*out = total;
	return bad ? -EOVERFLOW : 0;
}

/* The file must be exactly as long as its header says, with the classifier exactly when untied. */
static int check_size(const char *path, const struct l2c_config *cfg, uint64_t file_bytes)
{
	uint64_t floats, other, want;
	int other_ok;

	if (checkpoint_floats(cfg, !cfg->tied, &floats) != 0) {
		fprintf(stderr, TOOL ": %s: bad header: the sizes it implies overflow\n", path);
		return -EOVERFLOW;
	}
	want = HEADER_BYTES + floats * sizeof(float);
	if (file_bytes == want)
		return 0;
	fprintf(stderr,
		TOOL ": %s: %" PRIu64 " bytes, but the header (dim %" PRIu64 ", hidden_dim %" PRIu64
		     ", n_layers %" PRIu64 ", n_heads %" PRIu64 ", n_kv_heads %" PRIu64 ", vocab %" PRIu64
		     ", seq_len %" PRIu64 ", %s classifier) implies %" PRIu64 " (%s)\n",
		path, file_bytes, cfg->dim, cfg->hidden, cfg->layers, cfg->heads, cfg->kv_heads, cfg->vocab,
		cfg->seq_len, cfg->tied ? "shared" : "separate", want,
		file_bytes < want ? "truncated" : "trailing bytes");
	other_ok = checkpoint_floats(cfg, cfg->tied, &other) == 0;
	if (other_ok && file_bytes == HEADER_BYTES + other * sizeof(float))
		fprintf(stderr, TOOL ": %s: the size fits a %s classifier: is the sign of vocab_size wrong?\n", path,
			cfg->tied ? "separate" : "shared");
	return -EINVAL;
}

/* One pointer walks the mapped file; offsets are 64-bit because a checkpoint may exceed 4 GiB. */
static void map_weights(const struct l2c_config *c, const float *p, struct l2c_weights *w)
{
	w->token_embedding = p;
	p += c->vocab * c->dim;
	w->rms_att = p;
	p += c->layers * c->dim;
	w->wq = p;
	p += c->layers * c->dim * c->dim;
	w->wk = p;
	p += c->layers * c->kv_dim * c->dim;
	w->wv = p;
	p += c->layers * c->kv_dim * c->dim;
	w->wo = p;
	p += c->layers * c->dim * c->dim;
	w->rms_ffn = p;
	p += c->layers * c->dim;
	w->w1 = p;
	p += c->layers * c->hidden * c->dim;
	w->w2 = p;
	p += c->layers * c->dim * c->hidden;
	w->w3 = p;
	p += c->layers * c->hidden * c->dim;
	w->rms_final = p;
	p += c->dim;
	p += c->seq_len * c->head_size; /* freq_cis_real and freq_cis_imag: recomputed at load, skipped */
	w->wcls = c->tied ? w->token_embedding : p;
}

/*
 * Reorder the rows of one projection [heads * hs][cols] from llama2.c's interleaved pairs to HF's
 * rotate-half pairs: within each head, HF row i is llama2.c row 2i and HF row i + hs/2 is row 2i + 1.
 */
static void permute_rope_rows(float *dst, const float *src, uint64_t heads, uint64_t hs, uint64_t cols)
{
	uint64_t h, i, half = hs / 2;
	size_t row_bytes = (size_t)cols * sizeof(float);

	for (h = 0; h < heads; h++) {
		const float *s = src + h * hs * cols;
		float *d = dst + h * hs * cols;

		for (i = 0; i < half; i++) {
			memcpy(d + i * cols, s + (2 * i) * cols, row_bytes);
			memcpy(d + (i + half) * cols, s + (2 * i + 1) * cols, row_bytes);
		}
	}
}

static void llama_shape(const struct l2c_config *c, struct zh_llama_shape *s)
{
	*s = (struct zh_llama_shape){ .dim = c->dim, .hidden = c->hidden, .layers = c->layers, .heads = c->heads,
				      .kv_heads = c->kv_heads, .vocab = c->vocab, .seq_len = c->seq_len,
				      .tied = c->tied };
}

/* Stream the values in zh_llama_declare's order; q and k go through `scratch` ([D][D] floats) to be permuted. */
static int put_tensors(struct zh_st_writer *w, const struct l2c_config *c, const struct l2c_weights *m,
		       float *scratch)
{
	uint64_t dd = c->dim * c->dim, kd = c->kv_dim * c->dim, hd = c->hidden * c->dim, l;
	int ret;

	ret = zh_st_put(w, m->token_embedding, c->vocab * c->dim);
	for (l = 0; l < c->layers && ret == 0; l++) {
		ret = zh_st_put(w, m->rms_att + l * c->dim, c->dim);
		if (ret == 0) {
			permute_rope_rows(scratch, m->wq + l * dd, c->heads, c->head_size, c->dim);
			ret = zh_st_put(w, scratch, dd);
		}
		if (ret == 0) {
			permute_rope_rows(scratch, m->wk + l * kd, c->kv_heads, c->head_size, c->dim);
			ret = zh_st_put(w, scratch, kd);
		}
		if (ret == 0)
			ret = zh_st_put(w, m->wv + l * kd, kd);
		if (ret == 0)
			ret = zh_st_put(w, m->wo + l * dd, dd);
		if (ret == 0)
			ret = zh_st_put(w, m->rms_ffn + l * c->dim, c->dim);
		if (ret == 0)
			ret = zh_st_put(w, m->w1 + l * hd, hd);
		if (ret == 0)
			ret = zh_st_put(w, m->w3 + l * hd, hd);
		if (ret == 0)
			ret = zh_st_put(w, m->w2 + l * hd, hd);
	}
	if (ret == 0)
		ret = zh_st_put(w, m->rms_final, c->dim);
	if (ret == 0 && !c->tied)
		ret = zh_st_put(w, m->wcls, c->vocab * c->dim);
	return ret;
}

static int write_safetensors(const struct convert_options *opt, const char *name, const struct l2c_config *c,
			     const struct l2c_weights *m)
{
	struct zh_llama_shape shape;
	struct zh_st_writer w;
	char source[256];
	float *scratch;
	int ret;

	scratch = malloc((size_t)(c->dim * c->dim) * sizeof(float));
	if (!scratch) {
		fprintf(stderr, TOOL ": out of memory\n");
		return -ENOMEM;
	}
	zh_path_last(opt->in_path, source, sizeof(source));
	zh_st_init(&w, TOOL);
	ret = zh_st_meta(&w, "format", "pt");
	if (ret == 0)
		ret = zh_st_meta(&w, "source", source);
	if (ret == 0)
		ret = zh_st_meta(&w, "converter", TOOL);
	if (ret == 0)
		ret = zh_st_meta(&w, "name", name);
	if (ret == 0) {
		llama_shape(c, &shape);
		ret = zh_llama_declare(&w, &shape, ZH_ST_F32);
	}
	if (ret == 0)
		ret = zh_st_begin(&w, opt->out_dir);
	if (ret == 0)
		ret = put_tensors(&w, c, m, scratch);
	if (ret == 0)
		ret = zh_st_commit(&w, opt->out_dir, "model.safetensors");
	zh_st_free(&w);
	free(scratch);
	return ret;
}

/* Map the checkpoint, check it, and write the repository: the weights first, then the config. */
static int convert(const struct convert_options *opt, const char *name)
{
	struct zh_llama_shape shape;
	struct l2c_config cfg;
	struct l2c_weights m;
	struct stat st;
	void *map = MAP_FAILED;
	int fd, ret;

	fd = open(opt->in_path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		ret = -errno;
		fprintf(stderr, TOOL ": %s: %s\n", opt->in_path, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < HEADER_BYTES) {
		fprintf(stderr, TOOL ": %s: %s\n", opt->in_path,
			S_ISREG(st.st_mode) ? "truncated: shorter than the 28-byte header" : "not a regular file");
		close(fd);
		return -EINVAL;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		ret = -errno;
		fprintf(stderr, TOOL ": mmap %s: %s\n", opt->in_path, strerror(-ret));
		return ret;
	}
	ret = parse_header(opt->in_path, map, &cfg);
	if (ret == 0)
		ret = check_size(opt->in_path, &cfg, (uint64_t)st.st_size);
	if (ret == 0) {
		/* The header is 28 bytes and the map page-aligned, so the floats are 4-byte aligned. */
		map_weights(&cfg, (const float *)((const char *)map + HEADER_BYTES), &m);
		ret = zh_out_dir(TOOL, opt->out_dir);
	}
	if (ret == 0)
		ret = write_safetensors(opt, name, &cfg, &m);
	if (ret == 0) {
		llama_shape(&cfg, &shape);
		ret = zh_llama_config(TOOL, opt->out_dir, &shape);
	}
	munmap(map, (size_t)st.st_size);
	return ret;
}

int main(int argc, char **argv)
{
	struct convert_options opt;
	char name[ZH_MODEL_NAME_MAX + 1];

	if (parse_args(argc, argv, &opt) != 0)
		return 1;
	if (zh_model_name(TOOL, opt.name, opt.out_dir, name, sizeof(name)) != 0)
		return 1;
	return convert(&opt, name) == 0 ? 0 : 1;
}
