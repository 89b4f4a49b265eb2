/* SPDX-License-Identifier: MIT */
/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader, mgmt_safetensors_parse, on any
 * bytes a model.safetensors file could hold.
 *
 * The input is copied into a malloc'ed buffer of exactly its size, so ASan reports any read past the
 * file. A refusal must be -EINVAL or -ENOMEM with a NUL-terminated reason naming one of the rules and
 * leave the output zeroed. An accepted file must index tensors that all lie inside the data area, do not
 * overlap, have a size matching their shape and dtype, are sorted by name and are found by name; every
 * byte of every tensor is read, so that ASan checks the ranges too.
 *
 * Build and run: make fuzz-safetensors (FUZZ_SECONDS, default 300), or
 * build-fuzz/fuzz_safetensors -dict=tests/data/models/safetensors.dict CORPUS_DIR SEED_DIR.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed check is a crash, so that libFuzzer saves the input that caused it. */
#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                 \
		}                                                                                \
	} while (0)

/* Pairwise overlap checks cost n^2; past this many tensors only neighbours in the offset order matter. */
#define PAIRWISE_MAX 64u

static const char *const rules[] = {
	"header-size: ", "header-json: ", "tensor-entry: ", "dtype: ", "shape: ",
	"byte-size: ", "data-range: ", "overlap: ", "alignment: ",
};

static void check_refusal(int ret, const struct mgmt_safetensors *st, const char *why)
{
	int named = 0;

	FUZZ_CHECK(ret == -EINVAL || ret == -ENOMEM);
	FUZZ_CHECK(memchr(why, '\0', MGMT_WHY_SIZE) != NULL);
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		named |= strncmp(why, rules[i], strlen(rules[i])) == 0;
	FUZZ_CHECK(named);
	FUZZ_CHECK(st->tensor_count == 0 && st->tensors == NULL && st->mem == NULL);
}

/* Read every byte, so that ASan sees a range that leaves the buffer. */
static uint8_t touch(const uint8_t *p, uint64_t n)
{
	uint8_t x = 0;

	for (uint64_t i = 0; i < n; i++)
		x ^= p[i];
	return x;
}

/* area: where the data area starts, after the size field and the header it claims. */
static void check_tensor(const struct mgmt_tensor *t, const uint8_t *area, const uint8_t *buf, size_t size)
{
	uint64_t count = 1, bytes, esize = t->dtype == MGMT_DTYPE_F32 ? 4 : 2;
	int zero = 0, over = 0;

	FUZZ_CHECK(t->dtype == MGMT_DTYPE_F32 || t->dtype == MGMT_DTYPE_F16 || t->dtype == MGMT_DTYPE_BF16);
	FUZZ_CHECK(t->ndim <= MGMT_TENSOR_DIMS_MAX);
	FUZZ_CHECK(strlen(t->name) <= MGMT_TENSOR_NAME_MAX && strcmp(t->name, "__metadata__") != 0);
	for (uint32_t d = 0; d < t->ndim; d++) {
		zero |= t->shape[d] == 0;
		over |= __builtin_mul_overflow(count, t->shape[d], &count);
	}
	FUZZ_CHECK(zero || !over);
	FUZZ_CHECK(!__builtin_mul_overflow(zero ? 0 : count, esize, &bytes) && bytes == t->size_bytes);
	FUZZ_CHECK(t->data >= area && t->data <= buf + size);
	FUZZ_CHECK(t->size_bytes <= (uint64_t)(buf + size - t->data));
	FUZZ_CHECK((uint64_t)(t->data - area) % esize == 0);
	(void)touch(t->data, t->size_bytes);
}

static void check_accepted(const struct mgmt_safetensors *st, const uint8_t *buf, size_t size, const char *why)
{
	uint64_t header_bytes = 0;

	FUZZ_CHECK(why[0] == '\0' && size >= 8);
	for (uint32_t i = 0; i < 8; i++)
		header_bytes |= (uint64_t)buf[i] << (8 * i);
	FUZZ_CHECK(header_bytes <= size - 8);
	FUZZ_CHECK((st->tensor_count == 0) == (st->tensors == NULL));
	for (uint32_t i = 0; i < st->tensor_count; i++) {
		const struct mgmt_tensor *t = &st->tensors[i];

		check_tensor(t, buf + 8 + header_bytes, buf, size);
		FUZZ_CHECK(i == 0 || strcmp(st->tensors[i - 1].name, t->name) < 0);
		FUZZ_CHECK(mgmt_safetensors_find(st, t->name) == t);
		for (uint32_t j = 0; j < i && st->tensor_count <= PAIRWISE_MAX; j++) {
			const struct mgmt_tensor *u = &st->tensors[j];
			int apart = t->size_bytes == 0 || u->size_bytes == 0 || t->data + t->size_bytes <= u->data ||
				    u->data + u->size_bytes <= t->data;

			FUZZ_CHECK(apart);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mgmt_safetensors st;
	char why[MGMT_WHY_SIZE];
	uint8_t *buf = malloc(size ? size : 1);
	int ret;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	memset(why, 0x7f, sizeof(why));
	ret = mgmt_safetensors_parse(buf, size, &st, why);
	if (ret)
		check_refusal(ret, &st, why);
	else
		check_accepted(&st, buf, size, why);
	mgmt_safetensors_free(&st);
	FUZZ_CHECK(st.tensor_count == 0 && st.mem == NULL);
	free(buf);
	return 0;
}
