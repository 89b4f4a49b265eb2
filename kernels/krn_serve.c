/* SPDX-License-Identifier: MIT */
/*
 * krn_serve.c: see krn_serve.h. Host/device-neutral.
 */
#include "krn_serve.h"
#include "krn_msgpack.h"

static ZH_HD const struct krn_model *find_model(const struct krn_models *models,
						const struct krn_request *req)
{
	if (!(req->present_mask & KRN_REQ_HAS_MODEL))
		return models->count > models->default_idx ? &models->models[models->default_idx] : 0;
	for (uint32_t i = 0; i < models->count; i++) {
		const char *name = models->models[i].name;
		uint32_t k = 0;

		while (k < req->model_name_len && name[k] == req->model_name[k])
			k++;
		if (k == req->model_name_len && name[k] == '\0')
			return &models->models[i];
	}
	return 0;
}

/* Trace fields appended to an answer: "trace": [rx_tsc, publish_tsc, claim_dclk, done_dclk]. */
static ZH_HD void put_trace(struct krn_mp_writer *w, const struct zh_slot *slot)
{
	krn_mp_put_cstr(w, "trace");
	krn_mp_put_array(w, 4);
	krn_mp_put_uint(w, slot->rx_tsc);
	krn_mp_put_uint(w, slot->publish_tsc);
	krn_mp_put_uint(w, slot->claim_dclk);
	krn_mp_put_uint(w, slot->done_dclk);
}

/* The echo model: the answer's `tokens` are the request's. */
static ZH_HD void run_echo(struct krn_mp_writer *w, const struct krn_request *req, struct zh_slot *slot)
{
	int trace = req->trace && slot;

	krn_answer_head(w, 1 + (uint32_t)trace, 1, req->id, ZH_STATUS_OK, 0);
	krn_mp_put_cstr(w, "tokens");
	krn_mp_put_array(w, req->token_count);
	for (uint32_t i = 0; i < req->token_count; i++)
		krn_mp_put_uint(w, req->tokens[i]);
	if (trace)
		put_trace(w, slot);
}

ZH_HD uint32_t krn_serve_request(const struct krn_models *models, const uint8_t *req_bytes,
				 uint32_t req_size_bytes, uint8_t *ans, uint32_t ans_cap_bytes,
				 struct krn_scratch *scratch, struct zh_slot *slot, uint16_t *status)
{
	struct krn_request *req = &scratch->req;
	const char *error = "";
	struct krn_mp_writer w;
	enum zh_status st = krn_request_decode(req_bytes, req_size_bytes, req, &error);
	const struct krn_model *model = 0;

	if (st == ZH_STATUS_OK) {
		model = find_model(models, req);
		if (!model) {
			st = ZH_STATUS_UNKNOWN_MODEL;
			error = "unknown model";
		}
	}
	if (st == ZH_STATUS_OK && model->arch == KRN_ARCH_ECHO && req->op != ZH_OP_NONE &&
	    req->op != ZH_OP_ECHO) {
		st = ZH_STATUS_BAD_REQUEST;
		error = "op not supported by this model";
	}

	/* The device's work ends here; what follows is writing the answer. */
	if (slot)
		slot->done_dclk = zh_dclk_now();
	krn_mp_writer_init(&w, ans, ans_cap_bytes);
	if (st == ZH_STATUS_OK)
		run_echo(&w, req, slot);
	if (st != ZH_STATUS_OK || w.overflow) {
		if (st == ZH_STATUS_OK) {
			/* Programmer error: ZH_ANS_MAX_BYTES is sized for every answer. Say so rather
			 * than send a cut answer. */
			st = ZH_STATUS_INTERNAL;
			error = "answer does not fit";
		}
		*status = (uint16_t)st;
		return krn_answer_encode_error(ans, ans_cap_bytes, (req->present_mask & KRN_REQ_HAS_ID) != 0,
					       req->id, st, error);
	}
	*status = (uint16_t)st;
	return krn_mp_writer_size(&w, ans);
}

ZH_HD int krn_loop_step(const struct zh_ring *ring, const struct krn_models *models,
			struct krn_scratch *scratch)
{
	uint64_t ticket;
	struct zh_slot *slot = zh_ring_claim(ring, &ticket);

	if (!slot)
		return 0;
	slot->claim_dclk = zh_dclk_now();
	uint16_t status = ZH_STATUS_INTERNAL;
	uint8_t *ans = zh_ring_answer(ring, slot);
	const uint8_t *req = (const uint8_t *)(uintptr_t)slot->req_addr;
	uint32_t size = krn_serve_request(models, req, slot->req_size_bytes, ans, ring->ans_stride_bytes,
					  scratch, slot, &status);

	slot->ans_size_bytes = size;
	slot->ans_status = status;
	zh_ring_complete(ring, slot, ticket);
	return 1;
}
