/* SPDX-License-Identifier: MIT */
/*
 * mgmt_http.c: HTTP/1.x on loopback: GET /metrics (Prometheus text format 0.0.4), /healthz, /readyz.
 * One request per connection, answered with `Connection: close`. Only the request line is parsed; the
 * headers are bounded and skipped.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>

#include "gpu_cuda.h"
#include "mgmt_internal.h"

#define ZEROHOP_VERSION "0.1.0"

/* Append to a bounded buffer; once it overflows, *len is set past cap and further appends do nothing. */
struct out {
	char *buf;
	uint32_t cap;
	uint32_t len;
	int overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (uint32_t)n >= o->cap - o->len)
		o->overflow = 1;
	else
		o->len += (uint32_t)n;
}

static const char *const status_names[] = {
#define ZH_X(name, code, text) text,
	ZH_STATUS_LIST(ZH_X)
#undef ZH_X
};

static const char *const stage_names[] = {
#define DP_X(name, text) text,
	DP_STAGE_LIST(DP_X)
#undef DP_X
};

/* Bucket bounds in seconds: microsecond scale up to a second. */
static const double le_seconds[] = { 1e-06, 2e-06, 5e-06, 1e-05, 2e-05, 5e-05, 0.0001, 0.0002, 0.0005,
				     0.001, 0.002, 0.005, 0.01, 0.1, 1.0 };

/* Everything the metrics read, summed over lcores at one moment. */
struct snapshot {
	struct dp_stats counters;
	struct dp_answer_stats answers;
	uint32_t in_flight;
};

static void take_snapshot(struct mgmt *m, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (uint32_t i = 0; i < m->p.lcore_count; i++) {
		const struct dp_lcore *lc = &m->p.lcores[i];

		dp_stats_add(&s->counters, &lc->stats);
		for (uint32_t st = 0; st < DP_STAGE_COUNT; st++)
			dp_hist_add(&s->answers.stages[st], &lc->answers.stages[st]);
		for (uint32_t md = 0; md <= ZH_MODEL_IDS_MAX; md++)
			for (uint32_t k = 0; k < ZH_STATUS_COUNT; k++)
				s->answers.by_model[md][k] += __atomic_load_n(&lc->answers.by_model[md][k], __ATOMIC_RELAXED);
	}
	s->in_flight = mgmt_in_flight(m);
}

static void metrics_requests(struct mgmt *m, struct out *o, const struct snapshot *s)
{
	put(o, "# HELP zerohop_requests_total Requests answered, by model and status (model \"\": answered before a model was found).\n"
	       "# TYPE zerohop_requests_total counter\n");
	for (uint32_t md = 0; md <= ZH_MODEL_IDS_MAX; md++) {
		const char *name = md < ZH_MODEL_IDS_MAX ? mgmt_registry_id_name(m->p.registry, md) : "";

		if (!name)
			continue;
		for (uint32_t k = 0; k < ZH_STATUS_COUNT; k++)
			put(o, "zerohop_requests_total{model=\"%s\",status=\"%s\"} %" PRIu64 "\n", name, status_names[k],
			    s->answers.by_model[md][k]);
	}
}

static void metrics_stages(struct out *o, const struct snapshot *s)
{
	put(o, "# HELP zerohop_stage_latency_seconds Time a request spent in each stage.\n"
	       "# TYPE zerohop_stage_latency_seconds histogram\n");
	for (uint32_t st = 0; st < DP_STAGE_COUNT; st++) {
		const struct dp_hist *h = &s->answers.stages[st];

		for (uint32_t b = 0; b < sizeof(le_seconds) / sizeof(le_seconds[0]); b++)
			put(o, "zerohop_stage_latency_seconds_bucket{stage=\"%s\",le=\"%g\"} %" PRIu64 "\n", stage_names[st],
			    le_seconds[b], dp_hist_count_le(h, (uint64_t)(le_seconds[b] * 1e9 + 0.5)));
		put(o, "zerohop_stage_latency_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", stage_names[st],
		    h->count);
		put(o, "zerohop_stage_latency_seconds_sum{stage=\"%s\"} %.9f\n", stage_names[st], (double)h->sum_ns / 1e9);
		put(o, "zerohop_stage_latency_seconds_count{stage=\"%s\"} %" PRIu64 "\n", stage_names[st], h->count);
	}
}

static void metrics_port(struct mgmt *m, struct out *o, const struct snapshot *s)
{
	struct rte_eth_stats ps;

	memset(&ps, 0, sizeof(ps));
	rte_eth_stats_get(m->p.port_id, &ps);
	put(o, "# HELP zerohop_port_rx_frames_total Frames the port received.\n# TYPE zerohop_port_rx_frames_total counter\n"
	       "zerohop_port_rx_frames_total %" PRIu64 "\n", ps.ipackets);
	put(o, "# HELP zerohop_port_tx_frames_total Frames the port sent.\n# TYPE zerohop_port_tx_frames_total counter\n"
	       "zerohop_port_tx_frames_total %" PRIu64 "\n", ps.opackets);
	put(o, "# HELP zerohop_port_rx_bytes_total Bytes the port received.\n# TYPE zerohop_port_rx_bytes_total counter\n"
	       "zerohop_port_rx_bytes_total %" PRIu64 "\n", ps.ibytes);
	put(o, "# HELP zerohop_port_tx_bytes_total Bytes the port sent.\n# TYPE zerohop_port_tx_bytes_total counter\n"
	       "zerohop_port_tx_bytes_total %" PRIu64 "\n", ps.obytes);
	put(o, "# HELP zerohop_port_drops_total Frames dropped, by reason.\n# TYPE zerohop_port_drops_total counter\n");
	for (uint32_t d = 0; d < DP_DROP_COUNT; d++)
		put(o, "zerohop_port_drops_total{reason=\"%s\"} %" PRIu64 "\n", dp_drop_key((enum dp_drop)d) + 5,
		    s->counters.drops[d]);
	put(o, "zerohop_port_drops_total{reason=\"port_missed\"} %" PRIu64 "\n", ps.imissed);
	put(o, "zerohop_port_drops_total{reason=\"port_errors\"} %" PRIu64 "\n", ps.ierrors);
	put(o, "zerohop_port_drops_total{reason=\"no_mbuf\"} %" PRIu64 "\n", ps.rx_nombuf);
	put(o, "zerohop_port_drops_total{reason=\"tx_refused\"} %" PRIu64 "\n",
	    s->counters.counters[DP_COUNTER_tx_dropped]);
}

int mgmt_metrics_render(struct mgmt *m, char *buf, uint32_t cap, uint32_t *len)
{
	static struct snapshot s; /* large (histograms); the control core is single-threaded */
	struct out o = { .buf = buf, .cap = cap };
	const struct zh_ring *ring = gpu_device_ring(m->p.dev);

	take_snapshot(m, &s);
	put(&o, "# HELP zerohop_build_info Build information.\n# TYPE zerohop_build_info gauge\n"
		"zerohop_build_info{version=\"%s\",cuda_runtime=\"%d\",device=\"%s\"} 1\n", ZEROHOP_VERSION,
	    gpu_cuda_runtime_version(), gpu_device_kind_name(gpu_device_kind(m->p.dev)));
	metrics_requests(m, &o, &s);
	metrics_stages(&o, &s);
	put(&o, "# HELP zerohop_ring_slots Slots of the request ring.\n# TYPE zerohop_ring_slots gauge\n"
		"zerohop_ring_slots %u\n", ring->slot_count);
	put(&o, "# HELP zerohop_ring_occupied Requests on the device now.\n# TYPE zerohop_ring_occupied gauge\n"
		"zerohop_ring_occupied %u\n", s.in_flight);
	metrics_port(m, &o, &s);
	put(&o, "# HELP zerohop_busy_total Requests answered busy because the ring was full.\n"
		"# TYPE zerohop_busy_total counter\nzerohop_busy_total %" PRIu64 "\n",
	    s.counters.counters[DP_COUNTER_busy]);
	put(&o, "# HELP zerohop_model_loads_total Model loads and reloads, by result.\n"
		"# TYPE zerohop_model_loads_total counter\n"
		"zerohop_model_loads_total{result=\"ok\"} %" PRIu64 "\nzerohop_model_loads_total{result=\"failed\"} %" PRIu64 "\n",
	    m->p.registry->loads_ok, m->p.registry->loads_failed);
	put(&o, "# HELP zerohop_draining 1 while draining.\n# TYPE zerohop_draining gauge\nzerohop_draining %d\n",
	    m->p.lcore_count ? m->p.lcores[0].draining : 0);
	put(&o, "# HELP zerohop_device_healthy 1 while the device loop's heartbeat is fresh.\n"
		"# TYPE zerohop_device_healthy gauge\nzerohop_device_healthy %d\n", gpu_device_healthy(m->p.dev));
	put(&o, "# HELP zerohop_uptime_seconds Time since start.\n# TYPE zerohop_uptime_seconds gauge\n"
		"zerohop_uptime_seconds %.3f\n", (double)(mgmt_now_ns() - m->started_ns) / 1e9);
	*len = o.len;
	return o.overflow ? -ENOSPC : 0;
}

static void respond(struct mgmt_conn *c, int code, const char *reason, const char *type, const char *body,
		    uint32_t body_len)
{
	int n = snprintf((char *)c->tx, MGMT_TX_BYTES,
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %u\r\nConnection: close\r\n\r\n", code,
			 reason, type, body_len);

	if (n < 0 || (uint32_t)n + body_len > MGMT_TX_BYTES) {
		c->tx_len = 0;
		return;
	}
	memmove(c->tx + n, body, body_len);
	c->tx_len = (uint32_t)n + body_len;
	c->tx_off = 0;
	c->close_after_send = 1;
}

static void respond_text(struct mgmt_conn *c, int code, const char *reason, const char *text)
{
	respond(c, code, reason, "text/plain; charset=utf-8", text, (uint32_t)strlen(text));
}

/* The request line's parts, or -1 if it is not "METHOD SP PATH SP HTTP/1.x". */
static int parse_request_line(const char *line, uint32_t len, char *method, char *path)
{
	const char *sp1 = memchr(line, ' ', len);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (uint32_t)(sp1 + 1 - line)) : NULL;
	uint32_t mlen, plen;

	if (!sp1 || !sp2)
		return -1;
	mlen = (uint32_t)(sp1 - line);
	plen = (uint32_t)(sp2 - sp1 - 1);
	if (mlen == 0 || mlen > 15 || plen == 0 || plen > 255 || sp1[1] != '/')
		return -1;
	for (uint32_t i = 0; i < mlen; i++)
		if (line[i] < 'A' || line[i] > 'Z')
			return -1;
	if (len - (uint32_t)(sp2 + 1 - line) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return -1;
	memcpy(method, line, mlen);
	method[mlen] = '\0';
	memcpy(path, sp1 + 1, plen);
	path[plen] = '\0';
	return 0;
}

void mgmt_http_handle(struct mgmt *m, struct mgmt_conn *c)
{
	static char body[MGMT_TX_BYTES];
	char method[16], path[256];
	uint32_t body_len;
	const uint8_t *end = NULL;

	if (c->close_after_send)
		return;
	/* The request line first: a malformed one is answered at once, not after the headers. */
	const uint8_t *eol = memchr(c->rx, '\n', c->rx_len);
	for (uint32_t i = 0; i < (eol ? (uint32_t)(eol - c->rx) : c->rx_len); i++) {
		if ((c->rx[i] < 0x20 && c->rx[i] != '\r') || c->rx[i] == 0x7f) {
			respond_text(c, 400, "Bad Request", "malformed request\n");
			return;
		}
	}
	if (!eol) {
		if (c->rx_len > 512)
			respond_text(c, 400, "Bad Request", "request line too long\n");
		return;
	}
	if (eol == c->rx || eol[-1] != '\r' ||
	    parse_request_line((const char *)c->rx, (uint32_t)(eol - 1 - c->rx), method, path) != 0) {
		respond_text(c, 400, "Bad Request", "malformed request\n");
		return;
	}
	for (uint32_t i = 0; i + 3 < c->rx_len; i++)
		if (memcmp(c->rx + i, "\r\n\r\n", 4) == 0) {
			end = c->rx + i;
			break;
		}
	if (!end ? c->rx_len >= MGMT_HTTP_HEADER_MAX_BYTES : (uint32_t)(end - c->rx) > MGMT_HTTP_HEADER_MAX_BYTES) {
		respond_text(c, 400, "Bad Request", "request headers too large\n");
		return;
	}
	if (!end)
		return;
	char *query = strchr(path, '?');
	if (query)
		*query = '\0';
	int known = strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0;
	if (!known) {
		respond_text(c, 404, "Not Found", "not found\n");
		return;
	}
	if (strcmp(method, "GET") != 0) {
		respond_text(c, 405, "Method Not Allowed", "only GET\n");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		if (gpu_device_healthy(m->p.dev))
			respond_text(c, 200, "OK", "ok\n");
		else
			respond_text(c, 503, "Service Unavailable", "device loop stalled\n");
	} else if (strcmp(path, "/readyz") == 0) {
		if (m->p.registry->count == 0)
			respond_text(c, 503, "Service Unavailable", "no model loaded\n");
		else if (m->p.lcore_count && m->p.lcores[0].draining)
			respond_text(c, 503, "Service Unavailable", "draining\n");
		else
			respond_text(c, 200, "OK", "ready\n");
	} else if (mgmt_metrics_render(m, body, sizeof(body) - 512, &body_len) == 0) {
		respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, body_len);
	} else {
		respond_text(c, 500, "Internal Server Error", "metrics larger than the send buffer\n");
	}
}
