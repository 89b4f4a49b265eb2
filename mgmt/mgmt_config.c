/* SPDX-License-Identifier: MIT */
/*
 * mgmt_config.c: the configuration file (docs/MGMT.md, "Configuration file"), read with Debian's
 * libinih.
 *
 * libinih splits the lines and strips the blanks; this file feeds it the lines and checks the values.
 * The whole file is read into memory first, and a reader of our own hands libinih one line at a time:
 * so the reader knows the number of the line whose key the handler is looking at, and it refuses, at
 * their line, what libinih would otherwise pass on quietly: a line too long (libinih would cut it in
 * pieces and count each piece as a line), a NUL byte (libinih would end the line there), bytes that are
 * not UTF-8, an unknown or malformed section header (libinih never tells the handler about a section
 * with no keys) and `key: value` (libinih takes ':' for '=').
 *
 * Debian builds libinih with its options as run-time variables (INI_RUNTIME_OPTIONS), and with
 * INI_HANDLER_LINENO=1 although its ini.h says 0: the library calls the handler with a fifth argument,
 * the line number, so the handler here takes it. The options this file relies on are set for the length
 * of the call and then put back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Debian's libinih 55 passes the line number to the handler: declare the handler as it is called. */
#define INI_HANDLER_LINENO 1
#include <ini.h>

#include "gpu_device.h"
#include "krn_serve.h"
#include "zh_proto.h"
#include "zh_ring.h"
#include "mgmt_config.h"

/* The limits here are the appliance's: a file must not accept what the command line refuses. */
_Static_assert(MGMT_CONFIG_MODELS_MAX == KRN_MODELS_MAX, "one model per serving slot");
_Static_assert(MGMT_CONFIG_CORES_MAX == GPU_WORKERS_MAX, "one core per worker");
_Static_assert(MGMT_CONFIG_MODEL_NAME_SIZE == ZH_MODEL_NAME_MAX + 1, "model names as the protocol has them");
_Static_assert(ZH_RING_SLOTS_MIN == 2 && ZH_RING_SLOTS_MAX == 65536, "device.ring_slots as documented");
#ifdef RTE_MAX_ETHPORTS
_Static_assert(MGMT_CONFIG_PORT_ID_MAX == RTE_MAX_ETHPORTS - 1, "network.port_id as DPDK allows it");
#endif
_Static_assert(MGMT_CFG_KEY_COUNT <= 64, "set_mask has a bit per key");

/* Values quoted in a reason are cut here, so that the file and the line always fit. */
#define QUOTE_MAX 64
/* Bytes of the detail a value parser gives. */
#define DETAIL_SIZE 128u
/* Bytes of one comma-separated list item: longer than any good one, so that a long one is caught. */
#define ITEM_SIZE 32u
/* Bytes mgmt_config_each formats a list value into: the allow list is the longest. */
#define EACH_VALUE_SIZE (MGMT_CONFIG_ALLOW_MAX * MGMT_CONFIG_CIDR_SIZE)

struct cfg_key;

/* Parse `value` into the key's field of cfg; 0, or -EINVAL with `detail` saying what was expected. */
typedef int (*cfg_parse_fn)(const struct cfg_key *key, const char *value, struct mgmt_config *cfg,
			    char *detail);
/* Format the key's field of cfg as the file would say it. */
typedef void (*cfg_format_fn)(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size);

struct cfg_key {
	const char *section;
	const char *name;
	uint64_t bit;                   /* MGMT_CFG_* */
	cfg_parse_fn parse;
	cfg_format_fn format;
	size_t offset;                  /* of the field in struct mgmt_config */
	size_t size;                    /* bytes of a string field */
	uint32_t min, max;              /* range of an integer field */
	const char *const *choices;     /* NULL-terminated words an enumerated field accepts */
};

/* State of one mgmt_config_load, shared by the line reader and the handler. */
struct cfg_parse {
	const char *path;
	const char *buf;                /* the whole file */
	size_t size;
	size_t pos;                     /* where the next line starts */
	uint32_t lineno;                /* of the line the reader handed out last */
	struct mgmt_config *cfg;
	uint32_t key_line[MGMT_CFG_KEY_COUNT];      /* where each key was set, 0 if not */
	uint32_t model_line[MGMT_CONFIG_MODELS_MAX];
	int err;                        /* the first error; parsing stops there */
	char *why;
	size_t why_size;
};

static const char *const section_names[] = { "network", "device", "mgmt", "models" };
static const char *const kind_choices[] = { "auto", "cpu", "cuda-host", "cuda-gpudirect", NULL };
static const char *const idle_choices[] = { "poll", "backoff", NULL };
static const char *const payload_memory_choices[] = { "pool", "external", NULL };

static int parse_u32_key(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_ring_slots(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_ip(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_choice(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_path(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_allow(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static int parse_cores(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail);
static void format_u32(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size);
static void format_string(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size);
static void format_allow(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size);
static void format_cores(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size);

#define U32_KEY(sec, key, bit_, lo, hi) \
	{ sec, #key, bit_, parse_u32_key, format_u32, offsetof(struct mgmt_config, key), 0, lo, hi, NULL }
#define STR_KEY(sec, key, bit_, fn, choices_) \
	{ sec, #key, bit_, fn, format_string, offsetof(struct mgmt_config, key), \
	  sizeof(((struct mgmt_config *)0)->key), 0, 0, choices_ }
#define LIST_KEY(sec, key, bit_, parse_fn, format_fn) { sec, #key, bit_, parse_fn, format_fn, 0, 0, 0, 0, NULL }

/* Every key but the models, by section in file order (each entry names its MGMT_CFG_* bit); the ranges
 * are those of zerohopd's options. */
static const struct cfg_key keys[] = {
	STR_KEY("network", ip, MGMT_CFG_IP, parse_ip, NULL),
	U32_KEY("network", udp_port, MGMT_CFG_UDP_PORT, 1, 65535),
	U32_KEY("network", port_id, MGMT_CFG_PORT_ID, 0, MGMT_CONFIG_PORT_ID_MAX),
	LIST_KEY("network", allow, MGMT_CFG_ALLOW, parse_allow, format_allow),
	STR_KEY("device", kind, MGMT_CFG_KIND, parse_choice, kind_choices),
	U32_KEY("device", workers, MGMT_CFG_WORKERS, 0, GPU_WORKERS_MAX),
	LIST_KEY("device", worker_cores, MGMT_CFG_WORKER_CORES, parse_cores, format_cores),
	{ "device", "ring_slots", MGMT_CFG_RING_SLOTS, parse_ring_slots, format_u32,
	  offsetof(struct mgmt_config, ring_slots), 0, ZH_RING_SLOTS_MIN, ZH_RING_SLOTS_MAX, NULL },
	STR_KEY("device", idle, MGMT_CFG_IDLE, parse_choice, idle_choices),
	U32_KEY("device", cuda_blocks, MGMT_CFG_CUDA_BLOCKS, 1, 1024),
	U32_KEY("device", stall_ms, MGMT_CFG_STALL_MS, 10, 600000),
	U32_KEY("device", run_state_mib, MGMT_CFG_RUN_STATE_MIB, 1, 65536),
	STR_KEY("device", payload_memory, MGMT_CFG_PAYLOAD_MEMORY, parse_choice, payload_memory_choices),
	STR_KEY("mgmt", ctl_socket, MGMT_CFG_CTL_SOCKET, parse_path, NULL),
	U32_KEY("mgmt", http_port, MGMT_CFG_HTTP_PORT, 0, 65535),
	U32_KEY("mgmt", max_connections, MGMT_CFG_MAX_CONNECTIONS, 1, MGMT_CONFIG_CONNECTIONS_MAX),
	U32_KEY("mgmt", stop_deadline_ms, MGMT_CFG_STOP_DEADLINE_MS, 0, 600000),
	U32_KEY("mgmt", stats_interval_ms, MGMT_CFG_STATS_INTERVAL_MS, 0, 3600000),
};
_Static_assert(ZH_ARRAY_SIZE(keys) + 1 == MGMT_CFG_KEY_COUNT, "a table entry per key, and the models");

/* ---- values ---------------------------------------------------------------------------------- */

/* Decimal digits only, min..max; -EINVAL otherwise (also past UINT32_MAX, however many digits). */
static int parse_decimal(const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;

	if (*text == '\0')
		return -EINVAL;
	for (const char *c = text; *c; c++) {
		if (*c < '0' || *c > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*c - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static uint32_t *u32_field(const struct cfg_key *key, struct mgmt_config *cfg)
{
	return (uint32_t *)((char *)cfg + key->offset);
}

static char *str_field(const struct cfg_key *key, struct mgmt_config *cfg)
{
	return (char *)cfg + key->offset;
}

static int parse_u32_key(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	if (parse_decimal(value, key->min, key->max, u32_field(key, cfg)) == 0)
		return 0;
	snprintf(detail, DETAIL_SIZE, "expected a decimal integer %u..%u", key->min, key->max);
	return -EINVAL;
}

static int parse_ring_slots(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	uint32_t v;

	if (parse_decimal(value, key->min, key->max, &v) == 0 && (v & (v - 1)) == 0) {
		*u32_field(key, cfg) = v;
		return 0;
	}
	snprintf(detail, DETAIL_SIZE, "expected a power of two %u..%u", key->min, key->max);
	return -EINVAL;
}

/* A dotted quad as inet_pton takes it: four decimal bytes, no leading zeros. */
static int parse_ip(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	struct in_addr addr;

	if (strlen(value) < key->size && inet_pton(AF_INET, value, &addr) == 1) {
		strcpy(str_field(key, cfg), value);
		return 0;
	}
	snprintf(detail, DETAIL_SIZE, "expected an IPv4 address a.b.c.d");
	return -EINVAL;
}

static int parse_choice(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	size_t used = 0;

	for (const char *const *c = key->choices; *c; c++) {
		if (strcmp(value, *c) == 0) {
			strcpy(str_field(key, cfg), value);
			return 0;
		}
	}
	used += (size_t)snprintf(detail, DETAIL_SIZE, "expected one of");
	for (const char *const *c = key->choices; *c && used < DETAIL_SIZE; c++)
		used += (size_t)snprintf(detail + used, DETAIL_SIZE - used, "%s %s", c == key->choices ? "" : ",",
					 *c);
	return -EINVAL;
}

/*
 * A path: shorter than its field, no control characters (they would garble the logs). Empty is allowed:
 * for mgmt.ctl_socket, as for --ctl-socket "", it means no control socket.
 */
static int parse_path(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	size_t len = strlen(value);

	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
			snprintf(detail, DETAIL_SIZE, "control character at byte %zu", i);
			return -EINVAL;
		}
	}
	if (len >= key->size) {
		snprintf(detail, DETAIL_SIZE, "expected a path of at most %zu bytes", key->size - 1);
		return -EINVAL;
	}
	memcpy(str_field(key, cfg), value, len + 1);
	return 0;
}

/*
 * The next item of a comma-separated list, blanks around it trimmed, into item: 1 with an item, 0 at
 * the end of the list, -EINVAL for an empty item or one that does not fit.
 */
static int list_next(const char **list, char *item, size_t item_size)
{
	const char *start = *list, *end;
	size_t len;

	if (!start)
		return 0;
	end = strchr(start, ',');
	*list = end ? end + 1 : NULL;
	if (!end)
		end = start + strlen(start);
	while (start < end && (*start == ' ' || *start == '\t'))
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	len = (size_t)(end - start);
	if (len == 0 || len >= item_size)
		return -EINVAL;
	memcpy(item, start, len);
	item[len] = '\0';
	return 1;
}

/*
 * "a.b.c.d/len", len 0..32 in decimal without a leading zero, and no host bits set past len: as
 * dp_acl_parse_prefix takes it, which refuses "198.18.0.1/15" rather than let in more than was meant.
 */
static int cidr_check(const char *item, char *detail)
{
	const char *slash = strchr(item, '/');
	char addr_text[MGMT_CONFIG_IP_SIZE];
	struct in_addr addr;
	uint32_t len, host;

	if (!slash || (size_t)(slash - item) >= sizeof(addr_text))
		goto malformed;
	memcpy(addr_text, item, (size_t)(slash - item));
	addr_text[slash - item] = '\0';
	if (inet_pton(AF_INET, addr_text, &addr) != 1 || (slash[1] == '0' && slash[2] != '\0') ||
	    parse_decimal(slash + 1, 0, 32, &len))
		goto malformed;
	host = len == 32 ? 0 : ntohl(addr.s_addr) & (UINT32_MAX >> len);
	if (host) {
		snprintf(detail, DETAIL_SIZE, "'%s' has host bits set past /%u", item, len);
		return -EINVAL;
	}
	return 0;
malformed:
	snprintf(detail, DETAIL_SIZE, "'%s' is not a CIDR block a.b.c.d/len (len 0..32)", item);
	return -EINVAL;
}

static int parse_allow(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	char item[ITEM_SIZE];
	uint32_t count = 0;
	int ret;

	(void)key;
	while ((ret = list_next(&value, item, sizeof(item))) > 0) {
		if (cidr_check(item, detail))
			return -EINVAL;
		if (count == MGMT_CONFIG_ALLOW_MAX) {
			snprintf(detail, DETAIL_SIZE, "too many allow entries: at most %u", MGMT_CONFIG_ALLOW_MAX);
			return -EINVAL;
		}
		strcpy(cfg->allow[count++], item);
	}
	if (ret < 0) {
		snprintf(detail, DETAIL_SIZE, "expected comma-separated CIDR blocks a.b.c.d/len, none empty");
		return -EINVAL;
	}
	cfg->allow_count = count;
	return 0;
}

static int parse_cores(const struct cfg_key *key, const char *value, struct mgmt_config *cfg, char *detail)
{
	char item[ITEM_SIZE];
	uint32_t count = 0, core;
	int ret;

	(void)key;
	while ((ret = list_next(&value, item, sizeof(item))) > 0) {
		if (count == MGMT_CONFIG_CORES_MAX) {
			snprintf(detail, DETAIL_SIZE, "too many cores: at most %u", MGMT_CONFIG_CORES_MAX);
			return -EINVAL;
		}
		if (parse_decimal(item, 0, CPU_SETSIZE - 1, &core))
			break;
		cfg->worker_cores[count++] = (int)core;
	}
	if (ret != 0) {
		snprintf(detail, DETAIL_SIZE, "expected comma-separated cores 0..%u", CPU_SETSIZE - 1);
		return -EINVAL;
	}
	cfg->worker_core_count = count;
	return 0;
}

static void format_u32(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%u", *(const uint32_t *)((const char *)cfg + key->offset));
}

static void format_string(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%s", (const char *)cfg + key->offset);
}

static void format_allow(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size)
{
	size_t used = 0;

	(void)key;
	buf[0] = '\0';
	for (uint32_t i = 0; i < cfg->allow_count && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? "," : "", cfg->allow[i]);
}

static void format_cores(const struct cfg_key *key, const struct mgmt_config *cfg, char *buf, size_t size)
{
	size_t used = 0;

	(void)key;
	buf[0] = '\0';
	for (uint32_t i = 0; i < cfg->worker_core_count && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%d", i ? "," : "", cfg->worker_cores[i]);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void why_set(char *why, size_t why_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t why_size, const char *fmt, ...)
{
	va_list ap;

	if (!why || why_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, why_size, fmt, ap);
	va_end(ap);
}

static int cfg_fail(struct cfg_parse *p, uint32_t lineno, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the first error as "PATH:LINE: problem"; returns -EINVAL. */
static int cfg_fail(struct cfg_parse *p, uint32_t lineno, const char *fmt, ...)
{
	char problem[MGMT_CONFIG_WHY_SIZE];
	va_list ap;

	if (p->err)
		return p->err;
	p->err = -EINVAL;
	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	why_set(p->why, p->why_size, "%s:%u: %s", p->path, lineno, problem);
	return p->err;
}

/* ---- lines ----------------------------------------------------------------------------------- */

/*
 * Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. Returns the offset of the first
 * bad byte, or len if all are good.
 */
static size_t utf8_bad_offset(const unsigned char *s, size_t len)
{
	/* By lead byte: continuation bytes, the bits the lead byte holds, the least code point. */
	static const struct { unsigned char mask, lead; size_t n; uint32_t min; } forms[] = {
		{ 0xe0, 0xc0, 1, 0x80 }, { 0xf0, 0xe0, 2, 0x800 }, { 0xf8, 0xf0, 3, 0x10000 },
	};
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t f = 0, n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		while (f < ZH_ARRAY_SIZE(forms) && (c & forms[f].mask) != forms[f].lead)
			f++;
		if (f == ZH_ARRAY_SIZE(forms))
			return i;
		n = forms[f].n;
		cp = c & (unsigned char)~forms[f].mask;
		if (len - i <= n)
			return i;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < forms[f].min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* A "[section]" line: a known name, and after the ']' nothing but blanks and maybe a comment; 0 or
 * -EINVAL. */
static int check_section(struct cfg_parse *p, const char *line)
{
	const char *close = strchr(line, ']');
	const char *rest;
	size_t len;

	if (!close)
		return cfg_fail(p, p->lineno, "section header without ']'");
	len = (size_t)(close - line - 1);
	for (rest = close + 1; is_blank(*rest); rest++)
		;
	if (*rest != '\0' && *rest != ';' && *rest != '#')
		return cfg_fail(p, p->lineno, "text after the section header");
	for (size_t i = 0; i < ZH_ARRAY_SIZE(section_names); i++)
		if (strlen(section_names[i]) == len && memcmp(section_names[i], line + 1, len) == 0)
			return 0;
	return cfg_fail(p, p->lineno, "unknown section [%.*s] (network, device, mgmt or models)",
			(int)(len > QUOTE_MAX ? QUOTE_MAX : len), line + 1);
}

/* What libinih would take otherwise: sections checked here, `key: value` and key-less lines refused;
 * 0 or -EINVAL. */
static int check_line(struct cfg_parse *p, const char *line)
{
	const char *sep;

	/* libinih skips a UTF-8 byte order mark at the start of the file, and so does this. */
	if (p->lineno == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
		line += 3;
	while (is_blank(*line))
		line++;
	if (*line == '\0' || *line == ';' || *line == '#')
		return 0;
	if (*line == '[')
		return check_section(p, line);
	sep = strpbrk(line, "=:");
	if (!sep)
		return cfg_fail(p, p->lineno, "expected 'key = value' or '[section]'");
	if (*sep == ':')
		return cfg_fail(p, p->lineno, "expected '=' between key and value, not ':'");
	return 0;
}

/*
 * libinih's line reader (fgets-like): the next line of the file into str, after the checks that need
 * the raw bytes. NULL at the end of the file and after the first error, which ends the parse there.
 */
static char *cfg_read_line(char *str, int num, void *stream)
{
	struct cfg_parse *p = stream;
	const char *line = p->buf + p->pos;
	const char *nl, *nul;
	size_t len, content, bad;

	if (p->err || p->pos == p->size)
		return NULL;
	nl = memchr(line, '\n', p->size - p->pos);
	len = nl ? (size_t)(nl - line) : p->size - p->pos;
	p->pos += len + (nl != NULL);
	p->lineno++;
	content = len > 0 && line[len - 1] == '\r' ? len - 1 : len;
	if (content > MGMT_CONFIG_LINE_MAX) {
		cfg_fail(p, p->lineno, "line too long: %zu bytes, at most %u", content, MGMT_CONFIG_LINE_MAX);
		return NULL;
	}
	nul = memchr(line, '\0', len);
	if (nul) {
		cfg_fail(p, p->lineno, "NUL byte at column %zu", (size_t)(nul - line) + 1);
		return NULL;
	}
	bad = utf8_bad_offset((const unsigned char *)line, len);
	if (bad != len) {
		cfg_fail(p, p->lineno, "not UTF-8 at column %zu", bad + 1);
		return NULL;
	}
	/* ini_max_line leaves room for the longest line, its "\r\n" and the NUL: nothing is ever cut. */
	if (len + 1 > (size_t)num) {
		cfg_fail(p, p->lineno, "line too long for the parser");
		return NULL;
	}
	memcpy(str, line, len);
	str[len] = '\0';
	return check_line(p, str) == 0 ? str : NULL;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* Model names as the protocol carries them, limited to characters that need no quoting anywhere. */
static bool model_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > ZH_MODEL_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A [models] line: NAME = DIR, in order, each name once; 0 or -EINVAL. */
static int cfg_model(struct cfg_parse *p, const char *name, const char *dir)
{
	struct mgmt_config *cfg = p->cfg;
	struct mgmt_config_model *m;
	size_t dir_len = strlen(dir);

	if (!model_name_valid(name))
		return cfg_fail(p, p->lineno, "bad model name '%.*s': expected 1..%u bytes of A-Z a-z 0-9 . _ -",
				QUOTE_MAX, name, ZH_MODEL_NAME_MAX);
	for (uint32_t i = 0; i < cfg->model_count; i++)
		if (strcmp(cfg->models[i].name, name) == 0)
			return cfg_fail(p, p->lineno, "duplicate model '%s' (first on line %u)", name,
					p->model_line[i]);
	if (cfg->model_count == MGMT_CONFIG_MODELS_MAX)
		return cfg_fail(p, p->lineno, "too many models: at most %u", MGMT_CONFIG_MODELS_MAX);
	if (dir_len == 0 || dir_len >= MGMT_CONFIG_DIR_SIZE)
		return cfg_fail(p, p->lineno, "bad directory for model '%s': expected 1..%u bytes", name,
				MGMT_CONFIG_DIR_SIZE - 1);
	for (size_t i = 0; i < dir_len; i++)
		if ((unsigned char)dir[i] < 0x20 || dir[i] == 0x7f)
			return cfg_fail(p, p->lineno, "bad directory for model '%s': control character", name);
	m = &cfg->models[cfg->model_count];
	strcpy(m->name, name);
	memcpy(m->dir, dir, dir_len + 1);
	p->model_line[cfg->model_count++] = p->lineno;
	cfg->set_mask |= MGMT_CFG_MODELS;
	return 0;
}

static const struct cfg_key *key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < ZH_ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* One `name = value` of `section`, blanks stripped; 0 or -EINVAL (recorded in p). */
static int cfg_key_set(struct cfg_parse *p, const char *section, const char *name, const char *value)
{
	const struct cfg_key *key;
	char detail[DETAIL_SIZE];
	size_t idx;

	if (section[0] == '\0')
		return cfg_fail(p, p->lineno, "key '%.*s' before any [section]", QUOTE_MAX, name);
	if (strcmp(section, "models") == 0)
		return cfg_model(p, name, value);
	key = key_find(section, name);
	if (!key)
		return cfg_fail(p, p->lineno, "unknown key '%.*s' in [%s]", QUOTE_MAX, name, section);
	idx = (size_t)(key - keys);
	if (p->cfg->set_mask & key->bit)
		return cfg_fail(p, p->lineno, "duplicate key %s.%s (first set on line %u)", section, name,
				p->key_line[idx]);
	if (key->parse(key, value, p->cfg, detail))
		return cfg_fail(p, p->lineno, "bad value '%.*s%s' for %s.%s: %s", QUOTE_MAX, value,
				strlen(value) > QUOTE_MAX ? "..." : "", section, name, detail);
	p->cfg->set_mask |= key->bit;
	p->key_line[idx] = p->lineno;
	return 0;
}

/*
 * libinih's handler: 1 to go on, 0 to stop at an error. The line number used is the reader's: it counts
 * the same lines, and does not depend on how the library was built.
 */
static int cfg_handle(void *user, const char *section, const char *name, const char *value, int lineno)
{
	(void)lineno;
	return cfg_key_set(user, section, name, value) == 0;
}

/* What no single key can check: worker_cores names a core per worker when the file sets both. */
static void cfg_check_whole(struct cfg_parse *p)
{
	const struct mgmt_config *cfg = p->cfg;
	const uint64_t both = MGMT_CFG_WORKERS | MGMT_CFG_WORKER_CORES;
	uint32_t line_workers = 0, line_cores = 0;

	if ((cfg->set_mask & both) != both || cfg->worker_core_count == cfg->workers)
		return;
	for (size_t i = 0; i < ZH_ARRAY_SIZE(keys); i++) {
		if (keys[i].bit == MGMT_CFG_WORKERS)
			line_workers = p->key_line[i];
		if (keys[i].bit == MGMT_CFG_WORKER_CORES)
			line_cores = p->key_line[i];
	}
	cfg_fail(p, line_cores > line_workers ? line_cores : line_workers,
		 "device.worker_cores names %u cores for %u workers (device.workers, line %u)",
		 cfg->worker_core_count, cfg->workers, line_workers);
}

/* ---- the file -------------------------------------------------------------------------------- */

/* The whole file into a new buffer of at most MGMT_CONFIG_FILE_MAX bytes; 0 or -errno. */
static int read_file(const char *path, char **buf_out, size_t *size_out, char *why, size_t why_size)
{
	char *buf;
	size_t size = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		why_set(why, why_size, "%s: cannot open: %s", path, strerror(-ret));
		return ret;
	}
	buf = malloc(MGMT_CONFIG_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		why_set(why, why_size, "%s: out of memory", path);
		return -ENOMEM;
	}
	/* One byte past the cap, to tell a file at the cap from a longer one. */
	while (size <= MGMT_CONFIG_FILE_MAX) {
		ssize_t n = read(fd, buf + size, MGMT_CONFIG_FILE_MAX + 1 - size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			why_set(why, why_size, "%s: cannot read: %s", path, strerror(-ret));
			break;
		}
		if (n == 0)
			break;
		size += (size_t)n;
	}
	close(fd);
	if (ret == 0 && size > MGMT_CONFIG_FILE_MAX) {
		ret = -EFBIG;
		why_set(why, why_size, "%s: larger than %u bytes", path, MGMT_CONFIG_FILE_MAX);
	}
	if (ret) {
		free(buf);
		return ret;
	}
	*buf_out = buf;
	*size_out = size;
	return 0;
}

/* libinih's run-time options (Debian's build) that this file relies on. */
struct ini_options {
	int max_line;
	bool use_stack, multiline, inline_comments, stop_on_first_error, no_value, bom;
	char *start_prefixes, *inline_prefixes;
};

/* Exchange *o with libinih's options: once to set ours, once more to put the caller's back. */
static void ini_options_swap(struct ini_options *o)
{
	struct ini_options lib = { ini_max_line, ini_use_stack, ini_allow_multiline, ini_allow_inline_comments,
				   ini_stop_on_first_error, ini_allow_no_value, ini_allow_bom,
				   ini_start_comment_prefixes, ini_inline_comment_prefixes };

	ini_max_line = o->max_line;
	ini_use_stack = o->use_stack;
	ini_allow_multiline = o->multiline;
	ini_allow_inline_comments = o->inline_comments;
	ini_stop_on_first_error = o->stop_on_first_error;
	ini_allow_no_value = o->no_value;
	ini_allow_bom = o->bom;
	ini_start_comment_prefixes = o->start_prefixes;
	ini_inline_comment_prefixes = o->inline_prefixes;
	*o = lib;
}

int mgmt_config_load(const char *path, struct mgmt_config *out, char *why, size_t why_size)
{
	static char start_prefixes[] = ";#";
	static char inline_prefixes[] = ";";
	/* Room for the longest line, "\r\n" and the NUL, on the stack (a VLA in ini_parse_stream); no
	 * continuation lines, so that an indented key is a key; stop at the first error. */
	struct ini_options opt = { MGMT_CONFIG_LINE_MAX + 3, true, false, true, true, false, true,
				   start_prefixes, inline_prefixes };
	struct cfg_parse p = { .path = path, .cfg = out, .why = why, .why_size = why_size };
	char *buf = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	why_set(why, why_size, "%s", "");
	ret = read_file(path, &buf, &p.size, why, why_size);
	if (ret)
		return ret;
	p.buf = buf;
	ini_options_swap(&opt);
	ret = ini_parse_stream(cfg_read_line, &p, cfg_handle, &p);
	ini_options_swap(&opt);
	free(buf);
	/* A line the reader passed but libinih refused: one with an inline comment before its '='. */
	if (ret > 0)
		cfg_fail(&p, (uint32_t)ret, "expected 'key = value' or '[section]'");
	else if (ret < 0 && !p.err)
		p.err = -ENOMEM;
	if (!p.err)
		cfg_check_whole(&p);
	if (p.err)
		memset(out, 0, sizeof(*out));
	return p.err;
}

void mgmt_config_each(const struct mgmt_config *cfg, void (*fn)(void *arg, const char *key, const char *value),
		      void *arg)
{
	char key[sizeof("models.") + MGMT_CONFIG_MODEL_NAME_SIZE];
	char value[EACH_VALUE_SIZE];

	for (size_t i = 0; i < ZH_ARRAY_SIZE(keys); i++) {
		if (!(cfg->set_mask & keys[i].bit))
			continue;
		snprintf(key, sizeof(key), "%s.%s", keys[i].section, keys[i].name);
		keys[i].format(&keys[i], cfg, value, sizeof(value));
		fn(arg, key, value);
	}
	for (uint32_t i = 0; i < cfg->model_count; i++) {
		snprintf(key, sizeof(key), "models.%s", cfg->models[i].name);
		fn(arg, key, cfg->models[i].dir);
	}
}
