/* SPDX-License-Identifier: MIT */
/*
 * krn_serve.c: see krn_serve.h. Host/device-neutral.
 */
#include "krn_math.h"
#include "krn_msgpack.h"
#include "krn_serve.h"

ZH_HD const char *krn_stop_name(enum krn_stop stop)
{
	switch (stop) {
	case KRN_STOP_MAX_NEW: return "max_new";
	case KRN_STOP_EOS: return "eos";
	case KRN_STOP_BOS: return "bos";
	case KRN_STOP_CONTEXT: return "context";
	}
	return "?";
}

static ZH_HD const struct krn_model *find_model(const struct krn_models *models,
						const struct krn_request *req)
{
	if (!(req->present_mask & KRN_REQ_HAS_MODEL))
		return models->count > models->default_idx ? &models->models[models->default_idx] : 0;
	for (uint32_t i = 0; i < models->count; i++) {
		const char *name = models->models[i].name;
		uint32_t k = 0;

		/* Stop at the table name's end: a request name with a NUL in it ("echo\0") is
		 * another name, not a match of the bytes before the NUL. */
		while (k < req->model_name_len && name[k] != '\0' && name[k] == req->model_name[k])
			k++;
		if (k == req->model_name_len && name[k] == '\0')
			return &models->models[i];
	}
	return 0;
}

static ZH_HD enum zh_status refuse(struct krn_job *job, enum zh_status status, const char *error)
{
	job->status = status;
	job->error = error;
	return status;
}

static ZH_HD enum zh_status tokens_below(const struct krn_request *req, uint32_t vocab, struct krn_job *job)
{
	for (uint32_t i = 0; i < req->token_count; i++)
		if (req->tokens[i] >= vocab)
			return refuse(job, ZH_STATUS_BAD_REQUEST, "token id not below the vocabulary size");
	return ZH_STATUS_OK;
}

static ZH_HD enum zh_status check_llama(const struct krn_request *req, const struct krn_llama *m,
					struct krn_scratch *scratch)
{
	struct krn_job *job = &scratch->job;

	if (job->op == ZH_OP_NONE)
		job->op = ZH_OP_GENERATE;
	if (job->op != ZH_OP_GENERATE && job->op != ZH_OP_LOGITS)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "op not supported by this model");
	if (req->token_count == 0)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "tokens must not be empty");
	if (req->token_count > m->cfg.seq_len)
		return refuse(job, ZH_STATUS_TOO_LARGE, "more tokens than the context");
	if (req->dense_count > 0)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "dense is not used by this model");
	job->max_new = req->present_mask & KRN_REQ_HAS_MAX_NEW ? req->max_new : ZH_GENERATE_DEFAULT;
	if (job->max_new == 0 || job->max_new > ZH_GENERATE_MAX)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "max_new must be 1..256");
	job->top_k = req->present_mask & KRN_REQ_HAS_TOP_K ? req->top_k : ZH_TOP_K_DEFAULT;
	if (job->top_k == 0 || job->top_k > ZH_TOP_K_MAX || job->top_k > m->cfg.vocab_size)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "top_k must be 1..64 and within the vocabulary");
	if (scratch->model_state_floats < krn_llama_state_floats(&m->cfg))
		return refuse(job, ZH_STATUS_INTERNAL, "run state too small for this model");
	return tokens_below(req, m->cfg.vocab_size, job);
}

static ZH_HD enum zh_status check_ranker(const struct krn_request *req, const struct krn_ranker *m,
					 struct krn_scratch *scratch)
{
	struct krn_job *job = &scratch->job;

	if (job->op == ZH_OP_NONE)
		job->op = ZH_OP_SCORE;
	if (job->op != ZH_OP_SCORE)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "op not supported by this model");
	if (req->dense_count != m->cfg.dense_features)
		return refuse(job, ZH_STATUS_BAD_REQUEST, "dense has the wrong number of values");
	if (scratch->model_state_floats < krn_ranker_state_floats(&m->cfg))
		return refuse(job, ZH_STATUS_INTERNAL, "run state too small for this model");
	return tokens_below(req, m->cfg.vocab_size, job);
}

ZH_HD void krn_serve_prepare(const struct krn_models *models, const uint8_t *req_bytes,
			     uint32_t req_size_bytes, struct krn_scratch *scratch)
{
	struct krn_request *req = &scratch->req;
	struct krn_job *job = &scratch->job;
	const char *error = "";

	job->model = 0;
	job->out_count = 0;
	job->done = 0;
	job->stop = KRN_STOP_MAX_NEW;
	job->status = krn_request_decode(req_bytes, req_size_bytes, req, &error);
	job->error = error;
	job->op = req->op;
	if (job->status != ZH_STATUS_OK)
		return;
	const struct krn_model *model = find_model(models, req);
	if (!model) {
		refuse(job, ZH_STATUS_UNKNOWN_MODEL, "unknown model");
		return;
	}
	switch (model->arch) {
	case KRN_ARCH_ECHO:
		if (job->op != ZH_OP_NONE && job->op != ZH_OP_ECHO)
			refuse(job, ZH_STATUS_BAD_REQUEST, "op not supported by this model");
		job->op = ZH_OP_ECHO;
		break;
	case KRN_ARCH_LLAMA:
		check_llama(req, &model->u.llama, scratch);
		break;
	case KRN_ARCH_RANKER:
		check_ranker(req, &model->u.ranker, scratch);
		break;
	default:
		refuse(job, ZH_STATUS_INTERNAL, "model has no architecture");
		break;
	}
	if (job->status == ZH_STATUS_OK)
		job->model = model;
}

/* xorshift64*: a small, seedable generator whose sequence is the same on every device. */
static ZH_HD float random_f32(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

/* The next token from the logits: argmax at temperature 0 (the first of equal maxima), else a sample
 * from softmax(logits / temperature). Runs on one thread; may overwrite the logits. */
static ZH_HD uint32_t choose_next(float *logits, uint32_t vocab, float temperature, uint64_t *rng)
{
	if (temperature == 0.0f) {
		uint32_t best = 0;

		for (uint32_t i = 1; i < vocab; i++)
			if (logits[i] > logits[best])
				best = i;
		return best;
	}
	for (uint32_t i = 0; i < vocab; i++)
		logits[i] /= temperature;
	krn_softmax(logits, vocab);
	float coin = random_f32(rng);
	float cdf = 0.0f;
	for (uint32_t i = 0; i < vocab; i++) {
		cdf += logits[i];
		if (coin < cdf)
			return i;
	}
	return vocab - 1; /* rounding left the cdf just under coin */
}

/* The k largest logits, largest first, ties to the lower id. One thread. */
static ZH_HD void top_k(const float *logits, uint32_t vocab, uint32_t k, struct krn_job *job)
{
	job->out_count = 0;
	for (uint32_t i = 0; i < vocab; i++) {
		float v = logits[i];
		uint32_t n = job->out_count;

		if (n == k && !(v > job->out_vals[n - 1]))
			continue;
		if (n < k)
			n++;
		/* Insert in order; an equal value stays behind the earlier id. */
		uint32_t at = n - 1;
		while (at > 0 && v > job->out_vals[at - 1]) {
			job->out_vals[at] = job->out_vals[at - 1];
			job->out_ids[at] = job->out_ids[at - 1];
			at--;
		}
		job->out_vals[at] = v;
		job->out_ids[at] = i;
		job->out_count = n;
	}
}

/*
 * generate and logits, as llama2.c runs them: the prompt's tokens go through one position at a time
 * (forcing the next prompt token), then each chosen token is fed back. Every thread runs the forward
 * pass; thread 0 chooses, and a barrier hands its choice to the others.
 */
static ZH_HD void run_llama(struct krn_scratch *scratch, uint32_t thread_idx, uint32_t thread_count)
{
	struct krn_job *job = &scratch->job;
	const struct krn_request *req = &scratch->req;
	const struct krn_llama *m = &job->model->u.llama;
	uint32_t prompt = req->token_count;
	uint32_t token = req->tokens[0];

	if (thread_idx == 0) {
		job->rng_state = req->seed ^ 0x9e3779b97f4a7c15ull;
		if (job->rng_state == 0)
			job->rng_state = 1;
	}
	for (uint32_t pos = 0; pos < m->cfg.seq_len; pos++) {
		float *logits = krn_llama_forward(m, scratch->model_state, token, pos, thread_idx, thread_count);

		if (pos + 1 < prompt) {
			token = req->tokens[pos + 1];
			continue;
		}
		if (thread_idx == 0) {
			if (job->op == ZH_OP_LOGITS) {
				top_k(logits, m->cfg.vocab_size, job->top_k, job);
				job->done = 1;
			} else {
				uint32_t next = choose_next(logits, m->cfg.vocab_size, req->temperature, &job->rng_state);

				if (next == m->cfg.bos_id || next == m->cfg.eos_id) {
					job->stop = next == m->cfg.eos_id ? KRN_STOP_EOS : KRN_STOP_BOS;
					job->done = 1;
				} else {
					job->out_ids[job->out_count++] = next;
					job->done = job->out_count == job->max_new;
				}
				job->next_token = next;
			}
		}
		KRN_SYNC();
		if (job->done)
			return;
		token = job->next_token;
	}
	if (thread_idx == 0)
		job->stop = KRN_STOP_CONTEXT;
}

ZH_HD void krn_serve_run(struct krn_scratch *scratch, uint32_t thread_idx, uint32_t thread_count)
{
	struct krn_job *job = &scratch->job;
	const struct krn_request *req = &scratch->req;

	if (job->status != ZH_STATUS_OK)
		return;
	switch (job->model->arch) {
	case KRN_ARCH_LLAMA:
		run_llama(scratch, thread_idx, thread_count);
		break;
	case KRN_ARCH_RANKER:
		if (thread_idx == 0) {
			const struct krn_ranker *r = &job->model->u.ranker;

			krn_ranker_forward(r, req->tokens, req->token_count, req->dense, scratch->model_state,
					   job->out_vals);
			job->out_count = r->cfg.layer_out[r->cfg.layer_count - 1];
		}
		break;
	default: /* echo: the answer is the request's tokens, written by encode */
		break;
	}
}

/* Trace fields appended to an answer: "trace": [rx_tsc, publish_tsc, claim_dclk, done_dclk, nic_rx_tsc].
 * The last is written here as a wide 0 and filled in by the rx lcore (ZH_ANS_F_NIC_RX_TAIL): it must
 * stay the answer's last bytes. */
static ZH_HD void put_trace(struct krn_mp_writer *w, const struct zh_slot *slot)
{
	krn_mp_put_cstr(w, "trace");
	krn_mp_put_array(w, 5);
	krn_mp_put_uint(w, slot->rx_tsc);
	krn_mp_put_uint(w, slot->publish_tsc);
	krn_mp_put_uint(w, slot->claim_dclk);
	krn_mp_put_uint(w, slot->done_dclk);
	krn_mp_put_uint64_wide(w, 0);
}

static ZH_HD void put_ids(struct krn_mp_writer *w, const char *key, const uint32_t *ids, uint32_t count)
{
	krn_mp_put_cstr(w, key);
	krn_mp_put_array(w, count);
	for (uint32_t i = 0; i < count; i++)
		krn_mp_put_uint(w, ids[i]);
}

static ZH_HD void put_floats(struct krn_mp_writer *w, const char *key, const float *vals, uint32_t count)
{
	krn_mp_put_cstr(w, key);
	krn_mp_put_array(w, count);
	for (uint32_t i = 0; i < count; i++)
		krn_mp_put_float32(w, vals[i]);
}

/* The answer of a served request: the head, the op's results, the trace. */
static ZH_HD void put_results(struct krn_mp_writer *w, const struct krn_scratch *scratch, const struct zh_slot *slot)
{
	const struct krn_job *job = &scratch->job;
	const struct krn_request *req = &scratch->req;
	uint32_t trace = req->trace && slot;

	switch (job->op) {
	case ZH_OP_GENERATE:
		krn_answer_head(w, 2 + trace, 1, req->id, ZH_STATUS_OK, 0);
		put_ids(w, "tokens", job->out_ids, job->out_count);
		krn_mp_put_cstr(w, "stop");
		krn_mp_put_cstr(w, krn_stop_name(job->stop));
		break;
	case ZH_OP_LOGITS:
		krn_answer_head(w, 2 + trace, 1, req->id, ZH_STATUS_OK, 0);
		put_ids(w, "ids", job->out_ids, job->out_count);
		put_floats(w, "logits", job->out_vals, job->out_count);
		break;
	case ZH_OP_SCORE:
		krn_answer_head(w, 1 + trace, 1, req->id, ZH_STATUS_OK, 0);
		put_floats(w, "scores", job->out_vals, job->out_count);
		break;
	default: /* echo */
		krn_answer_head(w, 1 + trace, 1, req->id, ZH_STATUS_OK, 0);
		put_ids(w, "tokens", req->tokens, req->token_count);
		break;
	}
	if (trace)
		put_trace(w, slot);
}

/* The device clock, or on the cpu device the test knob's clock (ZH_TEST_DCLK_NS, gpu/gpu_device.c). */
static ZH_HD uint64_t serve_dclk_now(const struct krn_scratch *scratch)
{
#if !defined(__CUDA_ARCH__)
	if (scratch->test_dclk_now)
		return scratch->test_dclk_now();
#else
	(void)scratch;
#endif
	return zh_dclk_now();
}

ZH_HD uint32_t krn_serve_encode(struct krn_scratch *scratch, uint8_t *ans, uint32_t ans_cap_bytes,
				struct zh_slot *slot, uint16_t *status)
{
	const struct krn_job *job = &scratch->job;
	const struct krn_request *req = &scratch->req;
	enum zh_status st = job->status;
	const char *error = job->error;
	struct krn_mp_writer w;

	/* The device's work ends here; what follows is writing the answer. */
	if (slot)
		slot->done_dclk = serve_dclk_now(scratch);
	krn_mp_writer_init(&w, ans, ans_cap_bytes);
	if (st == ZH_STATUS_OK)
		put_results(&w, scratch, slot);
	if (st == ZH_STATUS_OK && !w.overflow) {
		*status = (uint16_t)st;
		return krn_mp_writer_size(&w, ans);
	}
	if (st == ZH_STATUS_OK) {
		/* Programmer error: ZH_ANS_MAX_BYTES is sized for every answer. Say so rather than
		 * send a cut answer. */
		st = ZH_STATUS_INTERNAL;
		error = "answer does not fit";
	}
	*status = (uint16_t)st;
	return krn_answer_encode_error(ans, ans_cap_bytes, (req->present_mask & KRN_REQ_HAS_ID) != 0, req->id,
				       st, error);
}

ZH_HD uint32_t krn_serve_request(const struct krn_models *models, const uint8_t *req_bytes,
				 uint32_t req_size_bytes, uint8_t *ans, uint32_t ans_cap_bytes,
				 struct krn_scratch *scratch, struct zh_slot *slot, uint16_t *status)
{
	krn_serve_prepare(models, req_bytes, req_size_bytes, scratch);
	krn_serve_run(scratch, 0, 1);
	/* Test-only knob (ZH_TEST_COMPUTE_DELAY_US on the cpu device): a known delay inside the compute
	 * stage, so that a stage-by-stage probe can be shown to put it there and nowhere else. */
	if (scratch->test_delay_dclk) {
		uint64_t until = serve_dclk_now(scratch) + scratch->test_delay_dclk;

		while (serve_dclk_now(scratch) < until)
			zh_cpu_relax();
	}
	return krn_serve_encode(scratch, ans, ans_cap_bytes, slot, status);
}

ZH_HD uint16_t krn_serve_slot_status(const struct krn_scratch *scratch, uint16_t status)
{
	/* An OK answer to a traced request ends with the NIC rx placeholder (put_trace). */
	if (status == ZH_STATUS_OK && scratch->req.trace)
		return (uint16_t)(status | ZH_ANS_F_NIC_RX_TAIL);
	return status;
}

ZH_HD int krn_loop_step(const struct zh_ring *ring, const struct krn_models *models,
			struct krn_scratch *scratch)
{
	uint64_t ticket;
	struct zh_slot *slot = zh_ring_claim(ring, &ticket);

	if (!slot)
		return 0;
	slot->claim_dclk = serve_dclk_now(scratch);
	uint16_t status = ZH_STATUS_INTERNAL;
	uint8_t *ans = zh_ring_answer(ring, slot);
	const uint8_t *req = (const uint8_t *)(uintptr_t)slot->req_addr;
	uint32_t size = krn_serve_request(models, req, slot->req_size_bytes, ans, zh_ring_answer_cap(ring),
					  scratch, slot, &status);

	slot->ans_size_bytes = size;
	slot->ans_status = krn_serve_slot_status(scratch, status);
	slot->model_id = scratch->job.model ? scratch->job.model->id : ZH_MODEL_ID_NONE;
	zh_ring_complete(ring, slot, ticket);
	return 1;
}
