/* SPDX-License-Identifier: MIT */
/*
 * zerohopctl: the operator's command line for a running zerohopd. It speaks the control protocol
 * (docs/MGMT.md, version 1) over the appliance's Unix socket: one request frame, one reply frame, then
 * it closes. A frame is a 4-byte big-endian length and one msgpack map; the request carries `v`, `id`,
 * `cmd` and the command's arguments as keys of that map, and the reply must carry the same `id`.
 *
 * msgpack-c builds requests and unpacks replies, but only after the bounded reader
 * (kernels/krn_msgpack) has walked the reply: msgpack-c 4.0 believes a container header and would try
 * to allocate 2^32-1 objects for a map that claims them.
 *
 * `doctor` talks to no appliance: it runs zerohop-doctor from the directory zerohopctl itself is in.
 *
 * Exit status: 0 ok, 1 the appliance answered with an error status, 2 usage error, 3 cannot connect,
 * timeout, malformed reply (or no zerohop-doctor).
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <msgpack.h>

#include "krn_msgpack.h"
#include "zh_cli.h"

#define TOOL "zerohopctl"

#define EXIT_OK 0
#define EXIT_STATUS 1
#define EXIT_USAGE 2
#define EXIT_ERROR 3

#define CTL_PROTO_VERSION 1
#define CTL_SOCKET_DEFAULT "/run/zerohop/zerohopd.sock"
/* The appliance refuses request frames over this many bytes (docs/MGMT.md). */
#define CTL_REQ_MAX_BYTES 65536u
/* A reply comes out of the appliance's 256 KiB per-connection send buffer, length prefix included. */
#define CTL_REPLY_MAX_BYTES (256u * 1024u)
#define CTL_TIMEOUT_MS_DEFAULT 5000u
/* load and reload read and check a whole model before they answer. */
#define CTL_LOAD_TIMEOUT_MS_DEFAULT 60000u
#define CTL_TIMEOUT_MS_MAX 3600000u
/* A connect() refused for a full backlog is retried this often until the deadline. */
#define CTL_CONNECT_RETRY_MS 10
/* Columns of the widest table (the stage table). */
#define TABLE_COLS_MAX 8
/* Arguments a command takes at most (reload NAME PATH). */
#define CMD_ARGS_MAX 2

/* Control reply status codes (docs/MGMT.md); not the dataplane's codes. */
static const char *const ctl_status_names[] = {
	"ok", "bad request", "unknown command", "not found", "failed", "busy",
};

struct ctl_options {
	const char *socket_path;
	uint32_t timeout_ms;
	int timeout_given;
	int json;
	int help;
};

/* A reply that passed every check: `error` is set when status != 0, `result` when status == 0. */
struct ctl_reply {
	msgpack_unpacked msg;
	uint64_t status;
	const msgpack_object *error;
	const msgpack_object *result;
};

typedef void (*print_fn)(const msgpack_object *result, char *const *args);

struct ctl_command {
	const char *name;
	const char *synopsis;
	const char *summary; /* one line for the global --help */
	/* The request keys the positional arguments go under, in order. */
	const char *arg_keys[CMD_ARGS_MAX];
	uint32_t args_min, args_max;
	uint32_t timeout_ms_default;
	print_fn print;   /* NULL: the command runs locally (doctor) */
	const char *help; /* what it does and prints, after the usage line */
};

static void print_status(const msgpack_object *result, char *const *args);
static void print_models(const msgpack_object *result, char *const *args);
static void print_entry(const msgpack_object *result, char *const *args);
static void print_unloaded(const msgpack_object *result, char *const *args);
static void print_stats(const msgpack_object *result, char *const *args);
static void print_draining(const msgpack_object *result, char *const *args);
static void print_config(const msgpack_object *result, char *const *args);

static const struct ctl_command commands[] = {
	{ "status", "", "the appliance's state",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_status,
	  "Show the appliance's state: version, uptime, device, whether it is draining and healthy, the\n"
	  "number of models and of requests served, and the device clock with its calibration to the\n"
	  "host TSC (kind, reference pair, rate, error bound, age). Prints one aligned `key  value` line\n"
	  "each, then a calibrated (ns) device clock's map.\n" },
	{ "models", "", "the models being served",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_models,
	  "List the models being served, one row each: name, architecture, whether it is the default,\n"
	  "version (1 at load, +1 per reload), parameter count and repository path.\n" },
	{ "load", "NAME PATH", "serve a new model",
	  { "name", "path" }, 2, 2, CTL_LOAD_TIMEOUT_MS_DEFAULT, print_entry,
	  "Load the model repository PATH (config.json and model.safetensors, docs/MODELS.md) and serve it\n"
	  "as NAME. The appliance checks the whole model before serving it; NAME must not exist yet. A\n"
	  "relative PATH is taken from this directory. Prints the new model's row (as `models` does).\n" },
	{ "unload", "NAME", "stop serving a model",
	  { "name", NULL }, 1, 1, CTL_TIMEOUT_MS_DEFAULT, print_unloaded,
	  "Stop serving NAME. Unloading the default model makes the next one the default; the last model\n"
	  "cannot be unloaded. Prints `unloaded NAME`.\n" },
	{ "reload", "NAME [PATH]", "replace a model without stopping",
	  { "name", "path" }, 1, 2, CTL_LOAD_TIMEOUT_MS_DEFAULT, print_entry,
	  "Replace NAME by the repository PATH (default: the path it was loaded from), without stopping:\n"
	  "requests already running finish on the old version, new ones see the new version. A model that\n"
	  "fails any check is refused and the old version keeps serving. A relative PATH is taken from\n"
	  "this directory. Prints the new version's row (as `models` does).\n" },
	{ "stats", "", "counters, stage latencies, ring occupancy",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_stats,
	  "Show the counters, then per pipeline stage the number of requests and the latency percentiles\n"
	  "(p50, p90, p99, p99.9, max, in microseconds), then the request ring's occupancy.\n" },
	{ "drain", "", "answer new requests `draining`",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_draining,
	  "Drain for maintenance: new requests are answered `draining` (6), requests in flight complete,\n"
	  "/readyz answers 503. Prints `draining: yes`.\n" },
	{ "undrain", "", "serve again",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_draining,
	  "Serve again after `drain`. Prints `draining: no`.\n" },
	{ "config", "", "the effective configuration",
	  { NULL, NULL }, 0, 0, CTL_TIMEOUT_MS_DEFAULT, print_config,
	  "Show the effective configuration (file and command line together), one aligned\n"
	  "`section.key  value` line each.\n" },
	{ "doctor", "", "check this machine (zerohop-doctor)",
	  { NULL, NULL }, 0, 0, 0, NULL,
	  "Check this machine for what zerohopd needs, with zerohop-doctor from the directory zerohopctl\n"
	  "is installed in (--json is passed on); needs no running appliance. The exit status is\n"
	  "zerohop-doctor's own, or 3 when it is not installed.\n" },
};

/* ---- small helpers ---- */

static void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (!q) {
		fprintf(stderr, TOOL ": out of memory\n");
		exit(EXIT_ERROR);
	}
	return q;
}

__attribute__((format(printf, 1, 2))) static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, TOOL ": out of memory\n");
		exit(EXIT_ERROR);
	}
	return s;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	size_t len = strlen(key);

	if (!map || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == len &&
		    memcmp(kv->key.via.str.ptr, key, len) == 0)
			return &kv->val;
	}
	return NULL;
}

/* ---- human output: values as text, aligned tables ---- */

/*
 * A value as text for a human: strings as they are (control characters shown as '?', so that a
 * name cannot move the terminal's cursor), booleans yes/no, nil '-', containers as JSON.
 */
static char *value_text(const msgpack_object *o)
{
	char *text = NULL;
	size_t size = 0;
	FILE *mem;

	if (!o)
		return xasprintf("-");
	switch (o->type) {
	case MSGPACK_OBJECT_NIL: return xasprintf("-");
	case MSGPACK_OBJECT_BOOLEAN: return xasprintf("%s", o->via.boolean ? "yes" : "no");
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return xasprintf("%" PRIu64, o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return xasprintf("%" PRId64, o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64: return xasprintf("%.6g", o->via.f64);
	case MSGPACK_OBJECT_STR:
		text = xrealloc(NULL, (size_t)o->via.str.size + 1);
		for (uint32_t i = 0; i < o->via.str.size; i++) {
			unsigned char c = (unsigned char)o->via.str.ptr[i];
			text[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		}
		text[o->via.str.size] = '\0';
		return text;
	default:
		mem = open_memstream(&text, &size);
		if (!mem) {
			fprintf(stderr, TOOL ": out of memory\n");
			exit(EXIT_ERROR);
		}
		zh_cli_print_json(mem, o);
		fclose(mem);
		return text;
	}
}

/* A latency in microseconds: integers as they are, fractions to 0.1 µs. */
static char *micros_text(const msgpack_object *o)
{
	if (o && (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) &&
	    isfinite(o->via.f64))
		return xasprintf("%.1f", o->via.f64);
	return value_text(o);
}

struct table {
	uint32_t cols, rows;
	uint32_t right_mask; /* bit c set: column c holds numbers and is right-aligned */
	char **cells;        /* rows × cols, row-major, each owned by the table */
};

static void table_init(struct table *t, uint32_t cols, uint32_t right_mask)
{
	assert(cols <= TABLE_COLS_MAX);
	t->cols = cols;
	t->rows = 0;
	t->right_mask = right_mask;
	t->cells = NULL;
}

/* Append a row; takes ownership of the `cols` strings. */
static void table_add(struct table *t, char **row)
{
	t->cells = xrealloc(t->cells, ((size_t)t->rows + 1) * t->cols * sizeof(*t->cells));
	memcpy(&t->cells[(size_t)t->rows * t->cols], row, t->cols * sizeof(*row));
	t->rows++;
}

/* Terminal columns of a UTF-8 string: one per code point (the tables hold no wide characters). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void table_print(const struct table *t, const char *indent)
{
	size_t width[TABLE_COLS_MAX] = { 0 };

	for (uint32_t r = 0; r < t->rows; r++)
		for (uint32_t c = 0; c < t->cols; c++) {
			size_t w = text_width(t->cells[(size_t)r * t->cols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (uint32_t r = 0; r < t->rows; r++) {
		fputs(indent, stdout);
		for (uint32_t c = 0; c < t->cols; c++) {
			const char *cell = t->cells[(size_t)r * t->cols + c];
			size_t pad = width[c] - text_width(cell);
			int last = c + 1 == t->cols;

			if (t->right_mask & (1u << c))
				printf("%*s%s", (int)pad, "", cell);
			else
				printf("%s%*s", cell, last ? 0 : (int)pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		fputc('\n', stdout);
	}
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < (size_t)t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->rows = 0;
}

/* A map's entries as `key  value` lines, aligned, in the order the appliance sent them. */
static void print_key_values(const msgpack_object *map, const char *indent)
{
	struct table t;

	if (!map || map->type != MSGPACK_OBJECT_MAP) {
		char *text = value_text(map);
		printf("%s%s\n", indent, text);
		free(text);
		return;
	}
	table_init(&t, 2, 0);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		char *row[2] = { value_text(&map->via.map.ptr[i].key), value_text(&map->via.map.ptr[i].val) };
		table_add(&t, row);
	}
	table_print(&t, indent);
	table_free(&t);
}

/* ---- the commands' printers ---- */

/* The device clock in one line: its kind, and for an ns clock the calibration's bound and age. */
static char *clock_summary(const msgpack_object *clock)
{
	const msgpack_object *kind = map_get(clock, "kind");
	const msgpack_object *cal = map_get(clock, "calibrated");
	const msgpack_object *stale = map_get(clock, "stale");
	char *k = value_text(kind), *b = value_text(map_get(clock, "bound_ns")), *age = value_text(map_get(clock, "age_s"));
	char *drift = value_text(map_get(clock, "drift_ppm"));
	char *text;

	if (kind && kind->type == MSGPACK_OBJECT_STR && kind->via.str.size == 3 && memcmp(kind->via.str.ptr, "tsc", 3) == 0)
		text = xasprintf("tsc: the host's TSC, no mapping needed");
	else if (cal && cal->type == MSGPACK_OBJECT_BOOLEAN && cal->via.boolean)
		text = xasprintf("%s: calibrated, +-%s ns, drift %s ppm, age %s s%s", k, b, drift, age,
				 stale && stale->type == MSGPACK_OBJECT_BOOLEAN && stale->via.boolean ?
					 " (stale: the last refresh got no answer)" : "");
	else
		text = xasprintf("%s: not calibrated", k);
	free(k);
	free(b);
	free(age);
	free(drift);
	return text;
}

/* The state as `key  value` lines; the device clock as one line there, then an ns clock's map in full. */
static void print_status(const msgpack_object *result, char *const *args)
{
	const msgpack_object *clock = map_get(result, "device_clock");
	struct table t;

	(void)args;
	if (!result || result->type != MSGPACK_OBJECT_MAP || !clock || clock->type != MSGPACK_OBJECT_MAP) {
		print_key_values(result, "");
		return;
	}
	table_init(&t, 2, 0);
	for (uint32_t i = 0; i < result->via.map.size; i++) {
		const msgpack_object *val = &result->via.map.ptr[i].val;
		char *row[2] = { value_text(&result->via.map.ptr[i].key),
				 val == clock ? clock_summary(clock) : value_text(val) };
		table_add(&t, row);
	}
	table_print(&t, "");
	table_free(&t);
	/* A TSC device clock is the identity: its map says nothing the summary did not. */
	const msgpack_object *kind = map_get(clock, "kind");
	if (kind && kind->type == MSGPACK_OBJECT_STR && kind->via.str.size == 3 && memcmp(kind->via.str.ptr, "tsc", 3) == 0)
		return;
	printf("device clock map (claim/done stamps to the host TSC, docs/MGMT.md):\n");
	print_key_values(clock, "  ");
}

static void print_config(const msgpack_object *result, char *const *args)
{
	(void)args;
	print_key_values(result, "");
}

static void model_row(struct table *t, const msgpack_object *entry)
{
	static const char *const keys[] = { "name", "arch", "default", "version", "params", "path" };
	char *row[ZH_ARRAY_SIZE(keys)];

	for (uint32_t c = 0; c < ZH_ARRAY_SIZE(keys); c++)
		row[c] = value_text(map_get(entry, keys[c]));
	table_add(t, row);
}

/* The models table: a heading, then one row per entry; `one` is a single entry (load, reload). */
static void print_model_table(const msgpack_object *list, const msgpack_object *one)
{
	char *heading[] = { xasprintf("NAME"), xasprintf("ARCH"), xasprintf("DEFAULT"), xasprintf("VERSION"),
			    xasprintf("PARAMS"), xasprintf("PATH") };
	struct table t;

	/* VERSION and PARAMS are numbers. */
	table_init(&t, 6, (1u << 3) | (1u << 4));
	table_add(&t, heading);
	if (one)
		model_row(&t, one);
	for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++)
		model_row(&t, &list->via.array.ptr[i]);
	table_print(&t, "");
	table_free(&t);
}

static void print_models(const msgpack_object *result, char *const *args)
{
	(void)args;
	print_model_table(result, NULL);
}

static void print_entry(const msgpack_object *result, char *const *args)
{
	(void)args;
	print_model_table(NULL, result);
}

static void print_unloaded(const msgpack_object *result, char *const *args)
{
	(void)result;
	printf("unloaded %s\n", args[0]);
}

static void print_draining(const msgpack_object *result, char *const *args)
{
	const msgpack_object *d = map_get(result, "draining");
	char *text = value_text(d);

	(void)args;
	printf("draining: %s\n", text);
	free(text);
}

static void print_stages(const msgpack_object *stages)
{
	static const char *const keys[] = { "count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us" };
	char *heading[] = { xasprintf("STAGE (µs)"), xasprintf("COUNT"), xasprintf("P50"), xasprintf("P90"),
			    xasprintf("P99"), xasprintf("P99.9"), xasprintf("MAX") };
	struct table t;

	/* Every column but the stage's name is a number. */
	table_init(&t, 7, 0x7eu);
	table_add(&t, heading);
	for (uint32_t i = 0; stages && stages->type == MSGPACK_OBJECT_MAP && i < stages->via.map.size; i++) {
		const msgpack_object *stage = &stages->via.map.ptr[i].val;
		char *row[7];

		row[0] = value_text(&stages->via.map.ptr[i].key);
		row[1] = value_text(map_get(stage, keys[0]));
		for (uint32_t c = 1; c < ZH_ARRAY_SIZE(keys); c++)
			row[c + 1] = micros_text(map_get(stage, keys[c]));
		table_add(&t, row);
	}
	table_print(&t, "  ");
	table_free(&t);
}

static void print_stats(const msgpack_object *result, char *const *args)
{
	const msgpack_object *ring = map_get(result, "ring");
	char *slots = value_text(map_get(ring, "slots"));
	char *occupied = value_text(map_get(ring, "occupied"));

	(void)args;
	printf("counters\n");
	print_key_values(map_get(result, "counters"), "  ");
	printf("stages\n");
	print_stages(map_get(result, "stages"));
	printf("ring\n");
	printf("  %s of %s slots occupied\n", occupied, slots);
	free(slots);
	free(occupied);
}

/* ---- the control connection ---- */

/* Connect to the appliance's socket before the deadline; returns the fd or a negative errno. */
static int ctl_connect(const char *path, int64_t deadline_ms)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A non-blocking Unix connect does not wait: EAGAIN means the backlog is full, so try again. */
	while (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = errno;

		if (err == EINTR)
			continue;
		if (err != EAGAIN || now_ms() >= deadline_ms) {
			close(fd);
			return err == EAGAIN ? -ETIMEDOUT : -err;
		}
		poll(NULL, 0, CTL_CONNECT_RETRY_MS);
	}
	return fd;
}

/* Wait for `events` on fd until the deadline: 0, or -ETIMEDOUT, or a negative errno. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int64_t left_ms = deadline_ms - now_ms();
		int n;

		if (left_ms <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, (int)(left_ms > INT_MAX ? INT_MAX : left_ms));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const uint8_t *buf, size_t size, int64_t deadline_ms)
{
	while (size) {
		ssize_t n = send(fd, buf, size, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			size -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		int ret = wait_fd(fd, POLLOUT, deadline_ms);
		if (ret)
			return ret;
	}
	return 0;
}

/* Read exactly `size` bytes: 0, -ENODATA when the peer closed first, -ETIMEDOUT, or a negative errno. */
static int recv_all(int fd, uint8_t *buf, size_t size, int64_t deadline_ms)
{
	while (size) {
		ssize_t n = recv(fd, buf, size, 0);

		if (n > 0) {
			buf += n;
			size -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -ENODATA;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int ret = wait_fd(fd, POLLIN, deadline_ms);
		if (ret)
			return ret;
	}
	return 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* The request frame: the length prefix, then {v, id, cmd, <argument keys>}. */
static void pack_request(msgpack_sbuffer *sbuf, const struct ctl_command *cmd, char *const *args,
			 uint32_t nargs, uint64_t id)
{
	static const uint8_t length_placeholder[4];
	msgpack_packer pk;
	uint32_t body;

	msgpack_sbuffer_write(sbuf, (const char *)length_placeholder, sizeof(length_placeholder));
	msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3 + nargs);
	pack_str(&pk, "v");
	msgpack_pack_uint32(&pk, CTL_PROTO_VERSION);
	pack_str(&pk, "id");
	msgpack_pack_uint64(&pk, id);
	pack_str(&pk, "cmd");
	pack_str(&pk, cmd->name);
	for (uint32_t i = 0; i < nargs; i++) {
		pack_str(&pk, cmd->arg_keys[i]);
		pack_str(&pk, args[i]);
	}
	body = (uint32_t)(sbuf->size - sizeof(length_placeholder));
	sbuf->data[0] = (char)(body >> 24);
	sbuf->data[1] = (char)(body >> 16);
	sbuf->data[2] = (char)(body >> 8);
	sbuf->data[3] = (char)body;
}

/*
 * Check a reply frame's body and unpack it into `reply`: one msgpack map, nothing after it, `v` 1,
 * `status` a uint, `id` ours (or nil on an error reply: the appliance could not read the request, or
 * refused the connection before reading it), `error` a string when status != 0, `result` present when
 * status == 0. Returns 0, or -EINVAL with the reason in `why`.
 */
static int check_reply(const uint8_t *buf, uint32_t size, uint64_t id, struct ctl_reply *reply,
		       char *why, size_t why_size)
{
	const msgpack_object *v, *rid, *status;
	struct krn_mp_reader r;
	size_t off = 0;

	/* Every container count is checked against the bytes left before msgpack-c believes it. */
	krn_mp_reader_init(&r, buf, size);
	if (krn_mp_skip(&r) != KRN_MP_OK || krn_mp_reader_left(&r) != 0) {
		snprintf(why, why_size, "not one well-formed msgpack value");
		return -EINVAL;
	}
	if (msgpack_unpack_next(&reply->msg, (const char *)buf, size, &off) != MSGPACK_UNPACK_SUCCESS ||
	    reply->msg.data.type != MSGPACK_OBJECT_MAP) {
		snprintf(why, why_size, "not a msgpack map");
		return -EINVAL;
	}
	const msgpack_object *map = &reply->msg.data;
	for (uint32_t i = 0; i < map->via.map.size; i++)
		for (uint32_t j = 0; j < i; j++)
			if (msgpack_object_equal(map->via.map.ptr[i].key, map->via.map.ptr[j].key)) {
				snprintf(why, why_size, "a key appears twice");
				return -EINVAL;
			}
	v = map_get(map, "v");
	rid = map_get(map, "id");
	status = map_get(map, "status");
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != CTL_PROTO_VERSION) {
		snprintf(why, why_size, "`v` is not %u", CTL_PROTO_VERSION);
		return -EINVAL;
	}
	if (!status || status->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		snprintf(why, why_size, "no `status` uint");
		return -EINVAL;
	}
	reply->status = status->via.u64;
	if (!rid || (rid->type == MSGPACK_OBJECT_NIL && reply->status == 0) ||
	    (rid->type != MSGPACK_OBJECT_NIL &&
	     (rid->type != MSGPACK_OBJECT_POSITIVE_INTEGER || rid->via.u64 != id))) {
		snprintf(why, why_size, "the reply's `id` is not the request's (%" PRIu64 ")", id);
		return -EINVAL;
	}
	reply->error = map_get(map, "error");
	reply->result = map_get(map, "result");
	if (reply->status != 0 && (!reply->error || reply->error->type != MSGPACK_OBJECT_STR)) {
		snprintf(why, why_size, "status %" PRIu64 " without an `error` string", reply->status);
		return -EINVAL;
	}
	if (reply->status == 0 && !reply->result) {
		snprintf(why, why_size, "status 0 without a `result`");
		return -EINVAL;
	}
	return 0;
}

static uint64_t request_id(void)
{
	uint64_t id;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) == (ssize_t)sizeof(id))
		return id;
	return (uint64_t)now_ms() * 1000003u ^ (uint64_t)getpid();
}

/*
 * One exchange: connect, send the request, read one reply frame into *body (malloc'd).
 * Returns 0, or an exit status after saying why.
 */
static int exchange(const struct ctl_options *opt, const char *name, const msgpack_sbuffer *request,
		    uint8_t **body, uint32_t *body_size)
{
	int64_t deadline_ms = now_ms() + opt->timeout_ms;
	uint8_t prefix[4];
	uint32_t size;
	int fd, ret;

	fd = ctl_connect(opt->socket_path, deadline_ms);
	if (fd < 0) {
		fprintf(stderr, TOOL ": %s: cannot connect to %s: %s\n", name, opt->socket_path,
			fd == -ETIMEDOUT ? "the appliance's backlog stayed full" : strerror(-fd));
		return EXIT_ERROR;
	}
	ret = send_all(fd, (const uint8_t *)request->data, request->size, deadline_ms);
	if (!ret)
		ret = recv_all(fd, prefix, sizeof(prefix), deadline_ms);
	if (!ret) {
		size = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 | (uint32_t)prefix[2] << 8 | prefix[3];
		if (size == 0 || size > CTL_REPLY_MAX_BYTES) {
			close(fd);
			fprintf(stderr, TOOL ": %s: malformed reply: a frame of %" PRIu32 " bytes\n", name, size);
			return EXIT_ERROR;
		}
		*body = xrealloc(NULL, size);
		*body_size = size;
		ret = recv_all(fd, *body, size, deadline_ms);
	}
	close(fd);
	if (ret == -ETIMEDOUT)
		fprintf(stderr, TOOL ": %s: no reply within %" PRIu32 " ms\n", name, opt->timeout_ms);
	else if (ret == -ENODATA)
		fprintf(stderr, TOOL ": %s: the appliance closed the connection without a whole reply\n", name);
	else if (ret)
		fprintf(stderr, TOOL ": %s: %s\n", name, strerror(-ret));
	return ret ? EXIT_ERROR : EXIT_OK;
}

/* A relative path means this directory, not the appliance's: send it absolute. */
static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xasprintf("%s", path);
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	return xasprintf("%s/%s", cwd, path);
}

static int run_remote(const struct ctl_command *cmd, char **args, uint32_t nargs, const struct ctl_options *opt)
{
	struct ctl_reply reply;
	msgpack_sbuffer sbuf;
	uint8_t *body = NULL;
	uint32_t body_size = 0;
	uint64_t id = request_id();
	char why[128];
	int rc;

	/* The second argument of load and reload is a path. */
	if (nargs == 2)
		args[1] = absolute_path(args[1]);
	msgpack_sbuffer_init(&sbuf);
	pack_request(&sbuf, cmd, args, nargs, id);
	if (sbuf.size - 4 > CTL_REQ_MAX_BYTES) {
		fprintf(stderr, TOOL ": %s: the request is %zu bytes, over the %u the appliance takes\n",
			cmd->name, sbuf.size - 4, CTL_REQ_MAX_BYTES);
		rc = EXIT_USAGE;
		goto out;
	}
	rc = exchange(opt, cmd->name, &sbuf, &body, &body_size);
	if (rc)
		goto out;
	msgpack_unpacked_init(&reply.msg);
	if (check_reply(body, body_size, id, &reply, why, sizeof(why))) {
		fprintf(stderr, TOOL ": %s: malformed reply: %s\n", cmd->name, why);
		rc = EXIT_ERROR;
	} else if (reply.status != 0) {
		char *error = value_text(reply.error);
		fprintf(stderr, TOOL ": %s: %s (status %" PRIu64 ", %s)\n", cmd->name, error, reply.status,
			reply.status < ZH_ARRAY_SIZE(ctl_status_names) ? ctl_status_names[reply.status] : "unknown");
		free(error);
		rc = EXIT_STATUS;
	} else if (opt->json) {
		zh_cli_print_json(stdout, reply.result);
		fputc('\n', stdout);
	} else {
		cmd->print(reply.result, args);
	}
	msgpack_unpacked_destroy(&reply.msg);
	if (!rc && fflush(stdout)) {
		fprintf(stderr, TOOL ": %s: writing the output: %s\n", cmd->name, strerror(errno));
		rc = EXIT_ERROR;
	}
out:
	if (nargs == 2)
		free(args[1]);
	free(body);
	msgpack_sbuffer_destroy(&sbuf);
	return rc;
}

/* ---- doctor ---- */

static int run_doctor(const struct ctl_options *opt)
{
	char self[PATH_MAX], *slash, *doctor;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0) {
		fprintf(stderr, TOOL ": doctor: cannot find zerohopctl's own directory: %s\n", strerror(errno));
		return EXIT_ERROR;
	}
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	doctor = xasprintf("%s/zerohop-doctor", slash ? self : ".");
	if (access(doctor, X_OK) != 0) {
		fprintf(stderr, TOOL ": doctor: zerohop-doctor is not installed (looked for %s)\n", doctor);
		free(doctor);
		return EXIT_ERROR;
	}
	fflush(stdout);
	char *argv[] = { doctor, opt->json ? (char *)"--json" : NULL, NULL };
	execv(doctor, argv);
	fprintf(stderr, TOOL ": doctor: cannot run %s: %s\n", doctor, strerror(errno));
	free(doctor);
	return EXIT_ERROR;
}

/* ---- usage ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " TOOL " [--socket PATH] [--json] [--timeout-ms N] COMMAND [ARGS]\n"
		"       " TOOL " COMMAND --help\n"
		"Control a running zerohopd over its control socket (docs/MGMT.md).\n"
		"options (before or after the command):\n"
		"  --socket PATH     the appliance's control socket (default " CTL_SOCKET_DEFAULT ")\n"
		"  --json            print the reply's result as JSON instead of tables\n"
		"  --timeout-ms N    give up after N ms (default %u; load and reload %u)\n"
		"  --help            this text, or a command's with COMMAND\n"
		"commands:\n", CTL_TIMEOUT_MS_DEFAULT, CTL_LOAD_TIMEOUT_MS_DEFAULT);
	for (size_t i = 0; i < ZH_ARRAY_SIZE(commands); i++) {
		char *both = xasprintf("%s %s", commands[i].name, commands[i].synopsis);
		fprintf(out, "  %-20s %s\n", both, commands[i].summary);
		free(both);
	}
	fprintf(out,
		"exit status: 0 ok, 1 the appliance answered with an error, 2 usage error,\n"
		"             3 cannot connect, timeout or malformed reply\n");
}

static void command_usage(FILE *out, const struct ctl_command *cmd)
{
	fprintf(out, "usage: " TOOL " [--socket PATH] [--json] [--timeout-ms N] %s%s%s\n", cmd->name,
		cmd->synopsis[0] ? " " : "", cmd->synopsis);
}

static void command_help(FILE *out, const struct ctl_command *cmd)
{
	command_usage(out, cmd);
	fputs(cmd->help, out);
	if (!cmd->print)
		return;
	fprintf(out,
		"With --json, prints the reply's result as one JSON value instead.\n"
		"exit status: 0 ok; 1 the appliance refused (`" TOOL ": %s: <error>` on stderr); 2 usage error;\n"
		"             3 cannot connect, no reply within the timeout, or a malformed reply\n", cmd->name);
}

static const struct ctl_command *find_command(const char *name)
{
	for (size_t i = 0; i < ZH_ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Global options may come anywhere (getopt permutes); `--` ends them, for a path that starts with '-'. */
static int parse_options(int argc, char **argv, struct ctl_options *opt)
{
	enum { O_SOCKET = 256, O_JSON, O_TIMEOUT, O_HELP };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "json", no_argument, NULL, O_JSON },
		{ "timeout-ms", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opt->socket_path = CTL_SOCKET_DEFAULT;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET: opt->socket_path = optarg; break;
		case O_JSON: opt->json = 1; break;
		case O_TIMEOUT:
			if (zh_cli_parse_u32(optarg, 0, CTL_TIMEOUT_MS_MAX, &opt->timeout_ms) || opt->timeout_ms == 0) {
				fprintf(stderr, TOOL ": bad value '%s' for --timeout-ms (1 to %u)\n", optarg,
					CTL_TIMEOUT_MS_MAX);
				return -EINVAL;
			}
			opt->timeout_given = 1;
			break;
		case 'h':
		case O_HELP: opt->help = 1; break;
		default: return -EINVAL;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl_options opt = { 0 };
	const struct ctl_command *cmd;
	uint32_t nargs;

	if (parse_options(argc, argv, &opt)) {
		fprintf(stderr, "Try '" TOOL " --help'.\n");
		return EXIT_USAGE;
	}
	if (optind == argc) {
		usage(opt.help ? stdout : stderr);
		return opt.help ? EXIT_OK : EXIT_USAGE;
	}
	/* `zerohopctl help [COMMAND]` is --help spelled as a command. */
	if (strcmp(argv[optind], "help") == 0) {
		if (optind + 1 == argc) {
			usage(stdout);
			return EXIT_OK;
		}
		optind++;
		opt.help = 1;
	}
	cmd = find_command(argv[optind]);
	if (!cmd) {
		fprintf(stderr, TOOL ": unknown command '%s'; try '" TOOL " --help'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (opt.help) {
		command_help(stdout, cmd);
		return EXIT_OK;
	}
	nargs = (uint32_t)(argc - optind - 1);
	if (nargs < cmd->args_min || nargs > cmd->args_max) {
		fprintf(stderr, TOOL ": %s: %s\n", cmd->name,
			nargs < cmd->args_min ? "missing arguments" : "too many arguments");
		command_usage(stderr, cmd);
		return EXIT_USAGE;
	}
	for (uint32_t i = 0; i < nargs; i++)
		if (argv[optind + 1 + i][0] == '\0') {
			fprintf(stderr, TOOL ": %s: an empty %s\n", cmd->name, cmd->arg_keys[i]);
			return EXIT_USAGE;
		}
	if (!opt.timeout_given)
		opt.timeout_ms = cmd->timeout_ms_default;
	if (!cmd->print)
		return run_doctor(&opt);
	return run_remote(cmd, &argv[optind + 1], nargs, &opt);
}
