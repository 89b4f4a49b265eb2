/* SPDX-License-Identifier: MIT */
/*
 * mgmt_ctl.c: the control protocol (docs/MGMT.md): length-prefixed msgpack frames, one reply per
 * request, and the model loader that reads files through the ring and publishes the result.
 *
 * Frames come from a local, root-owned socket, but are still treated as untrusted: the length is
 * bounded before the frame is buffered, and the bounded reader (kernels/krn_msgpack) checks every
 * container count before msgpack-c, which trusts them, unpacks anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "krn_msgpack.h"
#include "mgmt_internal.h"

#define ZEROHOP_VERSION "0.1.0"
#define PROTOCOL_VERSION 1

enum ctl_status {
	CTL_OK = 0,
	CTL_BAD_REQUEST = 1,
	CTL_UNKNOWN_COMMAND = 2,
	CTL_NOT_FOUND = 3,
	CTL_FAILED = 4,
	CTL_BUSY = 5,
};

/* A reply under construction. */
struct reply {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void reply_begin(struct reply *r, int has_id, uint64_t id, enum ctl_status status, const char *error)
{
	msgpack_sbuffer_init(&r->sb);
	msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
	msgpack_pack_map(&r->pk, 4);
	pack_str(&r->pk, "v");
	msgpack_pack_uint32(&r->pk, PROTOCOL_VERSION);
	pack_str(&r->pk, "id");
	if (has_id)
		msgpack_pack_uint64(&r->pk, id);
	else
		msgpack_pack_nil(&r->pk);
	pack_str(&r->pk, "status");
	msgpack_pack_uint32(&r->pk, status);
	pack_str(&r->pk, status == CTL_OK ? "result" : "error");
	if (status != CTL_OK)
		pack_str(&r->pk, error);
}

/* Append the reply as a frame to the connection's send buffer. Returns 0, or -ENOSPC. */
static int reply_end(struct reply *r, struct mgmt_conn *c)
{
	int rc = 0;

	if (c->tx_len + 4 + r->sb.size > MGMT_TX_BYTES) {
		rc = -ENOSPC;
	} else {
		uint32_t n = (uint32_t)r->sb.size;
		uint8_t *p = c->tx + c->tx_len;

		p[0] = (uint8_t)(n >> 24);
		p[1] = (uint8_t)(n >> 16);
		p[2] = (uint8_t)(n >> 8);
		p[3] = (uint8_t)n;
		memcpy(p + 4, r->sb.data, n);
		c->tx_len += 4 + n;
	}
	msgpack_sbuffer_destroy(&r->sb);
	return rc;
}

static void reply_error(struct mgmt_conn *c, int has_id, uint64_t id, enum ctl_status status, const char *error)
{
	struct reply r;

	reply_begin(&r, has_id, id, status, error);
	reply_end(&r, c);
}

void mgmt_ctl_refuse(struct mgmt_conn *c)
{
	reply_error(c, 0, 0, CTL_BUSY, "too many connections");
}

/* Look up key in a msgpack map object. */
static const msgpack_object *get(const msgpack_object *map, const char *key)
{
	size_t n = strlen(key);

	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];

		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
		    memcmp(kv->key.via.str.ptr, key, n) == 0)
			return &kv->val;
	}
	return NULL;
}

/* A string argument copied into out (cap bytes with the NUL); -1 if absent, not a string or too long. */
static int get_str(const msgpack_object *map, const char *key, char *out, size_t cap)
{
	const msgpack_object *o = get(map, key);

	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size >= cap ||
	    memchr(o->via.str.ptr, '\0', o->via.str.size))
		return -1;
	memcpy(out, o->via.str.ptr, o->via.str.size);
	out[o->via.str.size] = '\0';
	return 0;
}

static const char *arch_name(enum krn_arch arch)
{
	switch (arch) {
	case KRN_ARCH_ECHO: return "echo";
	case KRN_ARCH_LLAMA: return "llama";
	case KRN_ARCH_RANKER: return "ranker";
	default: return "none";
	}
}

static void pack_entry(msgpack_packer *pk, const struct mgmt_registry *reg, uint32_t i)
{
	const struct mgmt_entry *e = &reg->entries[i];

	msgpack_pack_map(pk, 7);
	pack_str(pk, "name");
	pack_str(pk, e->name);
	pack_str(pk, "arch");
	pack_str(pk, arch_name(e->arch));
	pack_str(pk, "path");
	pack_str(pk, e->path);
	pack_str(pk, "default");
	if (i == 0)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pack_str(pk, "version");
	msgpack_pack_uint32(pk, e->version);
	pack_str(pk, "params");
	msgpack_pack_uint64(pk, mgmt_registry_params(e));
	pack_str(pk, "id");
	msgpack_pack_uint32(pk, e->id);
}

static void pack_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
	pack_str(pk, key);
	msgpack_pack_uint64(pk, v);
}

static void pack_bool(msgpack_packer *pk, const char *key, int v)
{
	pack_str(pk, key);
	if (v)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

/*
 * The device clock and its map to the host TSC (docs/MGMT.md, "Device clock"): the integers are the
 * map itself, exactly (zerohop-probe applies them with kernels/zh_clock.h); the doubles are for people.
 */
static void pack_device_clock(struct mgmt *m, msgpack_packer *pk)
{
	struct zh_clock_map map;
	int calibrated = gpu_device_clock_map(m->p.dev, &map) == 0 && map.kind == ZH_CLOCK_NS;
	uint64_t now_tsc = zh_clock_tsc_fenced();

	msgpack_pack_map(pk, 17);
	pack_str(pk, "kind");
	pack_str(pk, map.kind == ZH_CLOCK_TSC ? "tsc" : "ns");
	pack_bool(pk, "calibrated", calibrated);
	pack_bool(pk, "stale", map.stale);
	pack_u64(pk, "samples", map.sample_count);
	pack_u64(pk, "tsc_hz", map.tsc_hz);
	pack_u64(pk, "dclk_ref", map.dclk_ref);
	pack_u64(pk, "tsc_ref", map.tsc_ref);
	pack_u64(pk, "bound_ns", map.bound_ns);
	pack_u64(pk, "rate_tsc", map.rate_tsc);
	pack_u64(pk, "rate_dclk", map.rate_dclk);
	pack_bool(pk, "rate_measured", map.rate_measured);
	pack_u64(pk, "rate_bound_ppb", map.rate_bound_ppb);
	pack_str(pk, "drift_ppm");
	msgpack_pack_double(pk, zh_clock_drift_ppm(&map));
	pack_u64(pk, "step_ns", map.step_ns);
	pack_u64(pk, "rtt_ns", map.rtt_ns);
	pack_str(pk, "age_s");
	if (calibrated && now_tsc >= map.tsc_ref)
		msgpack_pack_double(pk, (double)zh_clock_ticks_to_ns(now_tsc - map.tsc_ref, map.tsc_hz) / 1e9);
	else
		msgpack_pack_nil(pk);
	pack_u64(pk, "first_dclk", map.first_dclk);
}

static void cmd_status(struct mgmt *m, struct reply *r)
{
	uint64_t requests = 0;

	for (uint32_t i = 0; i < m->p.lcore_count; i++)
		requests += __atomic_load_n(&m->p.lcores[i].stats.counters[DP_COUNTER_requests], __ATOMIC_RELAXED);
	msgpack_pack_map(&r->pk, 11);
	pack_str(&r->pk, "version");
	pack_str(&r->pk, ZEROHOP_VERSION);
	pack_str(&r->pk, "uptime_s");
	msgpack_pack_double(&r->pk, (double)(mgmt_now_ns() - m->started_ns) / 1e9);
	pack_str(&r->pk, "device");
	pack_str(&r->pk, gpu_device_kind_name(gpu_device_kind(m->p.dev)));
	pack_str(&r->pk, "draining");
	if (m->p.lcore_count && m->p.lcores[0].draining)
		msgpack_pack_true(&r->pk);
	else
		msgpack_pack_false(&r->pk);
	pack_str(&r->pk, "healthy");
	if (gpu_device_healthy(m->p.dev))
		msgpack_pack_true(&r->pk);
	else
		msgpack_pack_false(&r->pk);
	pack_str(&r->pk, "models");
	msgpack_pack_uint32(&r->pk, m->p.registry->count);
	pack_str(&r->pk, "requests");
	msgpack_pack_uint64(&r->pk, requests);
	pack_str(&r->pk, "in_flight");
	msgpack_pack_uint32(&r->pk, mgmt_in_flight(m));
	pack_str(&r->pk, "rx_timestamps");
	if (m->p.port) {
		char text[DP_RX_STAMP_TEXT_SIZE];

		dp_port_rx_stamp_text(m->p.port, text);
		pack_str(&r->pk, text);
	} else {
		pack_str(&r->pk, "tsc (port offers none)");
	}
	pack_str(&r->pk, "rx_timestamp_bound_ns");
	msgpack_pack_uint64(&r->pk, m->p.port ? dp_port_rx_stamp_bound_ns(m->p.port) : 0);
	pack_str(&r->pk, "device_clock");
	pack_device_clock(m, &r->pk);
}

static void cmd_models(struct mgmt *m, struct reply *r)
{
	msgpack_pack_array(&r->pk, m->p.registry->count);
	for (uint32_t i = 0; i < m->p.registry->count; i++)
		pack_entry(&r->pk, m->p.registry, i);
}

static void cmd_stats(struct mgmt *m, struct reply *r)
{
	static const char *const counter_names[] = {
#define DP_X(name, text) #name,
		DP_COUNTER_LIST(DP_X)
#undef DP_X
	};
	static const char *const stage_names[] = {
#define DP_X(name, text) text,
		DP_STAGE_LIST(DP_X)
#undef DP_X
	};
	static struct dp_hist stages[DP_STAGE_COUNT];
	struct dp_stats sum;

	memset(&sum, 0, sizeof(sum));
	memset(stages, 0, sizeof(stages));
	for (uint32_t i = 0; i < m->p.lcore_count; i++) {
		dp_stats_add(&sum, &m->p.lcores[i].stats);
		for (uint32_t s = 0; s < DP_STAGE_COUNT; s++)
			dp_hist_add(&stages[s], &m->p.lcores[i].answers.stages[s]);
	}
	msgpack_pack_map(&r->pk, 3);
	pack_str(&r->pk, "counters");
	msgpack_pack_map(&r->pk, DP_COUNTER_COUNT + DP_DROP_COUNT);
	for (uint32_t i = 0; i < DP_COUNTER_COUNT; i++) {
		pack_str(&r->pk, counter_names[i]);
		msgpack_pack_uint64(&r->pk, sum.counters[i]);
	}
	for (uint32_t i = 0; i < DP_DROP_COUNT; i++) {
		pack_str(&r->pk, dp_drop_key((enum dp_drop)i));
		msgpack_pack_uint64(&r->pk, sum.drops[i]);
	}
	pack_str(&r->pk, "stages");
	msgpack_pack_map(&r->pk, DP_STAGE_COUNT);
	for (uint32_t s = 0; s < DP_STAGE_COUNT; s++) {
		static const double q[] = { 0.5, 0.9, 0.99, 0.999 };
		static const char *const qn[] = { "p50_us", "p90_us", "p99_us", "p999_us" };

		pack_str(&r->pk, stage_names[s]);
		msgpack_pack_map(&r->pk, 6);
		pack_str(&r->pk, "count");
		msgpack_pack_uint64(&r->pk, stages[s].count);
		for (uint32_t k = 0; k < 4; k++) {
			pack_str(&r->pk, qn[k]);
			msgpack_pack_double(&r->pk, (double)dp_hist_quantile(&stages[s], q[k]) / 1000.0);
		}
		pack_str(&r->pk, "max_us");
		msgpack_pack_double(&r->pk, (double)stages[s].max_ns / 1000.0);
	}
	pack_str(&r->pk, "ring");
	msgpack_pack_map(&r->pk, 2);
	pack_str(&r->pk, "slots");
	msgpack_pack_uint32(&r->pk, gpu_device_ring(m->p.dev)->slot_count);
	pack_str(&r->pk, "occupied");
	msgpack_pack_uint32(&r->pk, mgmt_in_flight(m));
}

static void cmd_config(struct mgmt *m, struct reply *r)
{
	msgpack_pack_map(&r->pk, m->p.config_count);
	for (uint32_t i = 0; i < m->p.config_count; i++) {
		pack_str(&r->pk, m->p.config[i][0]);
		pack_str(&r->pk, m->p.config[i][1]);
	}
}

static void cmd_unload(struct mgmt *m, struct mgmt_conn *c, const msgpack_object *req, uint64_t id)
{
	char name[ZH_MODEL_NAME_MAX + 1];
	char why[MGMT_WHY_SIZE];
	struct reply r;
	int rc;

	if (get_str(req, "name", name, sizeof(name)) != 0) {
		reply_error(c, 1, id, CTL_BAD_REQUEST, "unload needs a string `name`");
		return;
	}
	rc = mgmt_registry_stage_remove(m->p.registry, m->next, name, why);
	if (rc == 0) {
		rc = mgmt_publish(m, why);
		if (rc)
			mgmt_registry_stage_abort(m->p.registry, m->next);
	}
	if (rc) {
		reply_error(c, 1, id, rc == -ENOENT ? CTL_NOT_FOUND : CTL_FAILED, why);
		return;
	}
	printf("zerohopd: model %s unloaded\n", name);
	reply_begin(&r, 1, id, CTL_OK, NULL);
	msgpack_pack_map(&r.pk, 0);
	reply_end(&r, c);
}

/* ---- the model loader: files read through the ring, then checked, then published ------------- */

static void load_reset(struct mgmt *m)
{
	struct mgmt_load *l = &m->load;

	if (l->fd >= 0)
		close(l->fd);
	free(l->cfg_buf);
	free(l->st_buf);
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}

/* Deliver the load's reply to its connection (if it is still the same one) and end the load. */
static void load_finish(struct mgmt *m, enum ctl_status status, const char *error)
{
	struct mgmt_load *l = &m->load;
	struct mgmt_conn *c = &m->conns[l->conn_idx];
	const struct mgmt_entry *e = mgmt_registry_find(m->p.registry, l->name);

	if (status == CTL_OK) {
		m->p.registry->loads_ok++;
		printf("zerohopd: model %s %s from %s (version %u) in %.1f ms\n", l->name, l->replace ? "reloaded" : "loaded",
		       l->path, e ? e->version : 0, (double)(mgmt_now_ns() - l->started_ns) / 1e6);
	} else {
		m->p.registry->loads_failed++;
		printf("zerohopd: model %s: %s refused: %s\n", l->name, l->replace ? "reload" : "load", error);
	}
	if (c->state == CONN_OPEN && c->gen == l->conn_gen) {
		c->waiting = 0;
		if (status == CTL_OK && e) {
			struct reply r;

			reply_begin(&r, 1, l->request_id, CTL_OK, NULL);
			pack_entry(&r.pk, m->p.registry, (uint32_t)(e - m->p.registry->entries));
			reply_end(&r, c);
		} else {
			reply_error(c, 1, l->request_id, status, error);
		}
		mgmt_conn_flush(m, c);
		/* Frames that arrived while this one waited. */
		if (c->rx_len > 0) {
			mgmt_ctl_handle(m, c);
			mgmt_conn_flush(m, c);
		}
	}
	load_reset(m);
}

static void load_failed(struct mgmt *m, const char *what, int err)
{
	char why[MGMT_WHY_SIZE];

	snprintf(why, sizeof(why), "%s: %s", what, strerror(-err));
	load_finish(m, CTL_FAILED, why);
}

static int load_open(struct mgmt *m, const char *file, int flags)
{
	struct mgmt_load *l = &m->load;
	struct io_uring_sqe *sqe;
	int rc;

	snprintf(l->file, sizeof(l->file), "%s/%s", l->path, file);
	rc = mgmt_submit_load_op(m, &sqe);
	if (rc)
		return rc;
	io_uring_prep_openat(sqe, AT_FDCWD, l->file, flags | O_RDONLY | O_CLOEXEC, 0);
	return 0;
}

/* Read the next chunk of the model file into the registered staging buffer. */
static int load_read_chunk(struct mgmt *m)
{
	struct mgmt_load *l = &m->load;
	struct io_uring_sqe *sqe;
	uint64_t left = l->st_size - l->st_off;
	/* O_DIRECT wants block-sized reads: round up; the file's end stops the read short. */
	uint32_t len = left >= MGMT_STAGING_BYTES ? MGMT_STAGING_BYTES : (uint32_t)((left + 4095) & ~4095ull);
	int rc = mgmt_submit_load_op(m, &sqe);

	if (rc)
		return rc;
	io_uring_prep_read_fixed(sqe, l->fd, m->staging, len, l->st_off, 0);
	return 0;
}

static void load_publish(struct mgmt *m)
{
	struct mgmt_load *l = &m->load;
	struct mgmt_model model;
	char why[MGMT_WHY_SIZE];
	int rc;

	memset(&model, 0, sizeof(model));
	rc = mgmt_model_load_mem(l->name, l->cfg_buf, l->cfg_len, l->st_buf, l->st_size, &model, why);
	if (rc) {
		load_finish(m, CTL_FAILED, why);
		return;
	}
	rc = mgmt_registry_stage_put(m->p.registry, m->next, l->name, l->path, &model, l->replace, why);
	if (rc) {
		mgmt_model_free(&model);
		load_finish(m, rc == -ENOENT ? CTL_NOT_FOUND : CTL_FAILED, why);
		return;
	}
	rc = mgmt_publish(m, why);
	if (rc) {
		mgmt_registry_stage_abort(m->p.registry, m->next);
		load_finish(m, CTL_FAILED, why);
		return;
	}
	load_finish(m, CTL_OK, NULL);
}

void mgmt_load_complete(struct mgmt *m, int res)
{
	struct mgmt_load *l = &m->load;
	struct io_uring_sqe *sqe;
	uint64_t n;
	int rc = 0;

	switch (l->step) {
	case LOAD_OPEN_CONFIG:
		if (res < 0) {
			load_failed(m, l->file, res);
			return;
		}
		l->fd = res;
		l->cfg_buf = malloc(MGMT_CONFIG_FILE_MAX_BYTES + 1);
		if (!l->cfg_buf) {
			load_failed(m, "config.json", -ENOMEM);
			return;
		}
		rc = mgmt_submit_load_op(m, &sqe);
		if (rc)
			break;
		io_uring_prep_read(sqe, l->fd, l->cfg_buf, MGMT_CONFIG_FILE_MAX_BYTES + 1, 0);
		l->step = LOAD_READ_CONFIG;
		return;
	case LOAD_READ_CONFIG:
		if (res < 0) {
			load_failed(m, l->file, res);
			return;
		}
		if ((uint32_t)res > MGMT_CONFIG_FILE_MAX_BYTES) {
			load_failed(m, l->file, -EFBIG);
			return;
		}
		l->cfg_len = (uint32_t)res;
		close(l->fd);
		l->fd = -1;
		l->direct = 1;
		rc = load_open(m, "model.safetensors", O_DIRECT);
		l->step = LOAD_OPEN_MODEL;
		break;
	case LOAD_OPEN_MODEL:
		if (res == -EINVAL && l->direct) {
			/* The file system takes no O_DIRECT: buffered reads, same path. */
			l->direct = 0;
			rc = load_open(m, "model.safetensors", 0);
			break;
		}
		if (res < 0) {
			load_failed(m, l->file, res);
			return;
		}
		l->fd = res;
		rc = mgmt_submit_load_op(m, &sqe);
		if (rc)
			break;
		io_uring_prep_statx(sqe, l->fd, "", AT_EMPTY_PATH, STATX_SIZE, &l->stx);
		l->step = LOAD_STATX_MODEL;
		return;
	case LOAD_STATX_MODEL:
		if (res < 0) {
			load_failed(m, l->file, res);
			return;
		}
		if (l->stx.stx_size > MGMT_MODEL_FILE_MAX_BYTES) {
			load_failed(m, l->file, -EFBIG);
			return;
		}
		l->st_size = l->stx.stx_size;
		l->st_buf = malloc(l->st_size ? l->st_size : 1);
		if (!l->st_buf) {
			load_failed(m, l->file, -ENOMEM);
			return;
		}
		l->st_off = 0;
		l->step = LOAD_READ_MODEL;
		if (l->st_size == 0) {
			close(l->fd);
			l->fd = -1;
			load_publish(m);
			return;
		}
		rc = load_read_chunk(m);
		break;
	case LOAD_READ_MODEL:
		if (res < 0) {
			load_failed(m, l->file, res);
			return;
		}
		if (res == 0) { /* the file shrank under us */
			load_failed(m, l->file, -EIO);
			return;
		}
		n = (uint64_t)res < l->st_size - l->st_off ? (uint64_t)res : l->st_size - l->st_off;
		memcpy(l->st_buf + l->st_off, m->staging, n);
		l->st_off += n;
		if (l->st_off < l->st_size) {
			rc = load_read_chunk(m);
			break;
		}
		close(l->fd);
		l->fd = -1;
		load_publish(m);
		return;
	default:
		return;
	}
	if (rc)
		load_failed(m, "io_uring", rc);
}

static void cmd_load(struct mgmt *m, struct mgmt_conn *c, const msgpack_object *req, uint64_t id, int replace)
{
	struct mgmt_load *l = &m->load;
	char name[ZH_MODEL_NAME_MAX + 1];
	char path[PATH_MAX];
	int rc;

	if (get_str(req, "name", name, sizeof(name)) != 0) {
		reply_error(c, 1, id, CTL_BAD_REQUEST, "a string `name` of 1..31 bytes is needed");
		return;
	}
	if (get(req, "path") && get_str(req, "path", path, sizeof(path)) != 0) {
		reply_error(c, 1, id, CTL_BAD_REQUEST, "`path` must be a string");
		return;
	}
	if (!get(req, "path")) {
		const struct mgmt_entry *e = mgmt_registry_find(m->p.registry, name);

		if (!replace) {
			reply_error(c, 1, id, CTL_BAD_REQUEST, "load needs a `path`");
			return;
		}
		if (!e) {
			reply_error(c, 1, id, CTL_NOT_FOUND, "no such model");
			return;
		}
		if (e->path[0] == '\0') {
			reply_error(c, 1, id, CTL_FAILED, "a built-in model has no path to reload from");
			return;
		}
		snprintf(path, sizeof(path), "%s", e->path);
	}
	if (l->step != LOAD_IDLE) {
		reply_error(c, 1, id, CTL_BUSY, "another load is in progress");
		return;
	}
	if (replace && !mgmt_registry_find(m->p.registry, name)) {
		reply_error(c, 1, id, CTL_NOT_FOUND, "no such model");
		return;
	}
	if (!replace && mgmt_registry_find(m->p.registry, name)) {
		reply_error(c, 1, id, CTL_FAILED, "already loaded (reload replaces it)");
		return;
	}
	load_reset(m);
	l->conn_idx = mgmt_conn_idx(m, c);
	l->conn_gen = c->gen;
	l->request_id = id;
	l->replace = replace;
	l->started_ns = mgmt_now_ns();
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->path, sizeof(l->path), "%s", path);
	rc = load_open(m, "config.json", 0);
	if (rc) {
		reply_error(c, 1, id, CTL_BUSY, "the ring is full; try again");
		load_reset(m);
		return;
	}
	l->step = LOAD_OPEN_CONFIG;
	c->waiting = 1;
}

/* One frame: check, decode, dispatch, reply (now, or when a load completes). */
static void handle_frame(struct mgmt *m, struct mgmt_conn *c, const uint8_t *frame, uint32_t len)
{
	struct krn_mp_reader rd;
	msgpack_unpacked msg;
	size_t off = 0;
	struct reply r;
	char cmd[32];
	uint64_t id = 0;
	int has_id = 0;

	krn_mp_reader_init(&rd, frame, len);
	if (krn_mp_skip(&rd) != KRN_MP_OK || krn_mp_reader_left(&rd) != 0) {
		reply_error(c, 0, 0, CTL_BAD_REQUEST, "not one msgpack value");
		return;
	}
	msgpack_unpacked_init(&msg);
	if (msgpack_unpack_next(&msg, (const char *)frame, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    msg.data.type != MSGPACK_OBJECT_MAP) {
		reply_error(c, 0, 0, CTL_BAD_REQUEST, "a request is a msgpack map");
		goto out;
	}
	const msgpack_object *req = &msg.data;
	const msgpack_object *o = get(req, "id");
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		id = o->via.u64;
		has_id = 1;
	} else if (o && o->type != MSGPACK_OBJECT_NIL) {
		reply_error(c, 0, 0, CTL_BAD_REQUEST, "`id` must be a uint");
		goto out;
	}
	o = get(req, "v");
	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 != PROTOCOL_VERSION) {
		reply_error(c, has_id, id, CTL_BAD_REQUEST, "`v` must be 1");
		goto out;
	}
	if (get_str(req, "cmd", cmd, sizeof(cmd)) != 0) {
		reply_error(c, has_id, id, CTL_BAD_REQUEST, "`cmd` must be a string");
		goto out;
	}
	if (strcmp(cmd, "load") == 0 || strcmp(cmd, "reload") == 0) {
		cmd_load(m, c, req, id, cmd[0] == 'r');
		goto out;
	}
	if (strcmp(cmd, "unload") == 0) {
		cmd_unload(m, c, req, id);
		goto out;
	}
	if (strcmp(cmd, "status") != 0 && strcmp(cmd, "models") != 0 && strcmp(cmd, "stats") != 0 &&
	    strcmp(cmd, "drain") != 0 && strcmp(cmd, "undrain") != 0 && strcmp(cmd, "config") != 0) {
		reply_error(c, has_id, id, CTL_UNKNOWN_COMMAND, "unknown command");
		goto out;
	}
	reply_begin(&r, has_id, id, CTL_OK, NULL);
	if (strcmp(cmd, "status") == 0) {
		cmd_status(m, &r);
	} else if (strcmp(cmd, "models") == 0) {
		cmd_models(m, &r);
	} else if (strcmp(cmd, "stats") == 0) {
		cmd_stats(m, &r);
	} else if (strcmp(cmd, "config") == 0) {
		cmd_config(m, &r);
	} else {
		int on = strcmp(cmd, "drain") == 0;

		mgmt_set_draining(m, on);
		printf("zerohopd: %s\n", on ? "draining: new requests are answered draining" : "drain ended");
		msgpack_pack_map(&r.pk, 1);
		pack_str(&r.pk, "draining");
		if (on)
			msgpack_pack_true(&r.pk);
		else
			msgpack_pack_false(&r.pk);
	}
	if (reply_end(&r, c) != 0)
		reply_error(c, has_id, id, CTL_FAILED, "reply larger than the send buffer");
out:
	msgpack_unpacked_destroy(&msg);
}

void mgmt_ctl_handle(struct mgmt *m, struct mgmt_conn *c)
{
	uint32_t off = 0;

	/* One request at a time per connection: while a load is pending, later frames wait. */
	while (!c->waiting && !c->close_after_send && c->rx_len - off >= 4) {
		const uint8_t *p = c->rx + off;
		uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

		if (len > MGMT_FRAME_MAX_BYTES) {
			/* The stream cannot be resynchronised after a frame we will not read. */
			reply_error(c, 0, 0, CTL_BAD_REQUEST, "frame larger than 65536 bytes");
			c->close_after_send = 1;
			off = c->rx_len;
			break;
		}
		if (c->rx_len - off < 4 + len)
			break;
		/* Room for the largest reply, or the frame waits until the send buffer drains. */
		if (MGMT_TX_BYTES - c->tx_len < 4 + MGMT_FRAME_MAX_BYTES)
			break;
		handle_frame(m, c, p + 4, len);
		off += 4 + len;
	}
	if (off > 0) {
		memmove(c->rx, c->rx + off, c->rx_len - off);
		c->rx_len -= off;
	}
}
