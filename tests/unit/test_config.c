/* SPDX-License-Identifier: MIT */
/*
 * test_config.c: the configuration file reader (mgmt/mgmt_config.c) against docs/MGMT.md.
 *
 * A file with every key must parse to the right values and list them back through mgmt_config_each;
 * each bad file must be refused with the error on the right line ("PATH:LINE: ..."): unknown sections
 * and keys, every bad integer form, both ends of every range, bad enumerations, CIDR lists and model
 * names, duplicates, too many entries, long lines, NUL bytes and bad UTF-8. Line numbers are checked
 * after lines longer than libinih's default buffer (200 bytes), which would otherwise be counted as
 * several lines. Finally docs/config-example.ini must parse cleanly.
 *
 * Exit status: 0 all checks passed, 1 a check failed, 77 no temporary directory could be made or
 * docs/config-example.ini was not found (every other check still runs).
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgmt_config.h"

/* ---- checks ---------------------------------------------------------------------------------- */

#define TEST_NAME "test_config"
#include "zh_check.h"

#define CHECK_STR(a, b)                                                                              \
	do {                                                                                         \
		const char *a_ = (a), *b_ = (b);                                                     \
		if (strcmp(a_, b_) == 0)                                                             \
			checks_passed++;                                                             \
		else                                                                                 \
			check_failed(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_, b_); \
	} while (0)


/* ---- files ----------------------------------------------------------------------------------- */

static char tmp_dir[] = "/tmp/test_config.XXXXXX";
static char conf_path[PATH_MAX];
/* Generated files: the largest is a line of just over 4096 bytes or 65 CIDR blocks. */
static char text[16384];

static void write_conf(const char *data, size_t len)
{
	FILE *f = fopen(conf_path, "wb");

	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "cannot write %s: %s\n", conf_path, strerror(errno));
		exit(1);
	}
}

static void text_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void text_set(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		fprintf(stderr, "test file too large\n");
		exit(1);
	}
}

/* Load `data` (len bytes, NULs allowed) as the configuration file. */
static int load_bytes(const char *data, size_t len, struct mgmt_config *cfg, char *why)
{
	write_conf(data, len);
	return mgmt_config_load(conf_path, cfg, why, MGMT_CONFIG_WHY_SIZE);
}

static int load_text(const char *data, struct mgmt_config *cfg, char *why)
{
	return load_bytes(data, strlen(data), cfg, why);
}

/* `data` must load cleanly. */
#define EXPECT_OK(data, cfg)                                                                          \
	do {                                                                                          \
		char why_[MGMT_CONFIG_WHY_SIZE];                                                      \
		int ret_ = load_text((data), (cfg), why_);                                            \
		if (ret_ == 0)                                                                        \
			checks_passed++;                                                              \
		else                                                                                  \
			check_failed(__FILE__, __LINE__, "refused (%d): %s\n---\n%.300s---", ret_, why_, \
				     (data));                                                         \
	} while (0)

/* `data` (len bytes) must be refused with -EINVAL, `why` starting "PATH:LINE: " and holding `part`. */
static void expect_error_at(const char *file, int src_line, const char *data, size_t len, unsigned line,
			    const char *part)
{
	struct mgmt_config cfg;
	char why[MGMT_CONFIG_WHY_SIZE], prefix[PATH_MAX + 32];
	int ret;

	memset(&cfg, 0xa5, sizeof(cfg));
	ret = load_bytes(data, len, &cfg, why);
	snprintf(prefix, sizeof(prefix), "%s:%u: ", conf_path, line);
	if (ret != -EINVAL) {
		check_failed(file, src_line, "expected -EINVAL at line %u, got %d (%s)\n---\n%.300s---", line, ret,
			     why, data);
		return;
	}
	if (strncmp(why, prefix, strlen(prefix)) != 0 || !strstr(why, part)) {
		check_failed(file, src_line, "why \"%s\" should start with \"%s\" and hold \"%s\"", why, prefix, part);
		return;
	}
	/* A refused file leaves nothing half-set. */
	if (cfg.set_mask != 0 || cfg.model_count != 0 || cfg.allow_count != 0) {
		check_failed(file, src_line, "a refused file left the configuration set");
		return;
	}
	checks_passed++;
}

#define EXPECT_ERROR(data, line, part) expect_error_at(__FILE__, __LINE__, (data), strlen(data), (line), (part))
#define EXPECT_ERROR_BYTES(data, len, line, part) expect_error_at(__FILE__, __LINE__, (data), (len), (line), (part))

/* ---- a file with every key ------------------------------------------------------------------- */

static const char full_file[] =
	"; every key, with comments and blank lines around\n"      /* 1 */
	"# a hash comment too\n"                                    /* 2 */
	"\n"                                                        /* 3 */
	"[network]\n"                                               /* 4 */
	"ip = 198.19.2.3\n"                                           /* 5 */
	"udp_port=7001\n"                                           /* 6 */
	"  port_id   =   3  \n"                                     /* 7 */
	"allow = 198.18.0.0/15,203.0.113.0/24 , 0.0.0.0/0\n"           /* 8 */
	"[device]\n"                                                /* 9 */
	"kind = cuda-gpudirect\n"                                   /* 10 */
	"workers = 3\n"                                             /* 11 */
	"worker_cores = 4,5, 1023\n"                                /* 12 */
	"ring_slots = 4096 ; an inline comment\n"                   /* 13 */
	"idle = backoff\n"                                          /* 14 */
	"cuda_blocks = 16\n"                                        /* 15 */
	"stall_ms = 2500\n"                                         /* 16 */
	"run_state_mib = 128\n"                                     /* 17 */
	"payload_memory = external\n"                               /* 18 */
	"[mgmt]\n"                                                  /* 19 */
	"ctl_socket = /run/zerohop/ctl.sock\n"                      /* 20 */
	"http_port = 0\n"                                           /* 21 */
	"max_connections = 64\n"                                    /* 22 */
	"stop_deadline_ms = 600000\n"                               /* 23 */
	"stats_interval_ms = 3600000\n"                             /* 24 */
	"[models]\n"                                                /* 25 */
	"stories = /srv/models/stories260K\n"                       /* 26 */
	"echo.v2 = echo\n"                                          /* 27 */
	"Rank_3-b = models/ranker dir\n";                           /* 28 */

struct each_seen {
	unsigned count;
	char lines[32][160];
};

static void each_collect(void *arg, const char *key, const char *value)
{
	struct each_seen *seen = arg;

	if (seen->count < 32)
		snprintf(seen->lines[seen->count], sizeof(seen->lines[0]), "%s=%s", key, value);
	seen->count++;
}

static void test_full_file(void)
{
	static const char *const each_expected[] = {
		"network.ip=198.19.2.3", "network.udp_port=7001", "network.port_id=3",
		"network.allow=198.18.0.0/15,203.0.113.0/24,0.0.0.0/0", "device.kind=cuda-gpudirect",
		"device.workers=3", "device.worker_cores=4,5,1023", "device.ring_slots=4096",
		"device.idle=backoff", "device.cuda_blocks=16", "device.stall_ms=2500", "device.run_state_mib=128",
		"device.payload_memory=external",
		"mgmt.ctl_socket=/run/zerohop/ctl.sock", "mgmt.http_port=0", "mgmt.max_connections=64",
		"mgmt.stop_deadline_ms=600000", "mgmt.stats_interval_ms=3600000",
		"models.stories=/srv/models/stories260K", "models.echo.v2=echo", "models.Rank_3-b=models/ranker dir",
	};
	struct each_seen seen = { 0 };
	struct mgmt_config cfg;

	EXPECT_OK(full_file, &cfg);
	CHECK_U64(cfg.set_mask, (1ull << MGMT_CFG_KEY_COUNT) - 1);
	CHECK_STR(cfg.ip, "198.19.2.3");
	CHECK_U64(cfg.udp_port, 7001);
	CHECK_U64(cfg.port_id, 3);
	CHECK_U64(cfg.allow_count, 3);
	CHECK_STR(cfg.allow[0], "198.18.0.0/15");
	CHECK_STR(cfg.allow[1], "203.0.113.0/24");
	CHECK_STR(cfg.allow[2], "0.0.0.0/0");
	CHECK_STR(cfg.kind, "cuda-gpudirect");
	CHECK_U64(cfg.workers, 3);
	CHECK_U64(cfg.worker_core_count, 3);
	CHECK_U64(cfg.worker_cores[0], 4);
	CHECK_U64(cfg.worker_cores[1], 5);
	CHECK_U64(cfg.worker_cores[2], 1023);
	CHECK_U64(cfg.ring_slots, 4096);
	CHECK_STR(cfg.idle, "backoff");
	CHECK_U64(cfg.cuda_blocks, 16);
	CHECK_U64(cfg.stall_ms, 2500);
	CHECK_U64(cfg.run_state_mib, 128);
	CHECK_STR(cfg.payload_memory, "external");
	CHECK_STR(cfg.ctl_socket, "/run/zerohop/ctl.sock");
	CHECK_U64(cfg.http_port, 0);
	CHECK_U64(cfg.max_connections, 64);
	CHECK_U64(cfg.stop_deadline_ms, 600000);
	CHECK_U64(cfg.stats_interval_ms, 3600000);
	CHECK_U64(cfg.model_count, 3);
	CHECK_STR(cfg.models[0].name, "stories");
	CHECK_STR(cfg.models[0].dir, "/srv/models/stories260K");
	CHECK_STR(cfg.models[1].name, "echo.v2");
	CHECK_STR(cfg.models[1].dir, "echo");
	CHECK_STR(cfg.models[2].name, "Rank_3-b");
	CHECK_STR(cfg.models[2].dir, "models/ranker dir");

	mgmt_config_each(&cfg, each_collect, &seen);
	CHECK_U64(seen.count, sizeof(each_expected) / sizeof(each_expected[0]));
	for (unsigned i = 0; i < seen.count && i < sizeof(each_expected) / sizeof(each_expected[0]); i++)
		CHECK_STR(seen.lines[i], each_expected[i]);
}

/* An empty file, and one with only comments, set nothing; mgmt_config_each then reports nothing. */
static void test_empty_and_comments(void)
{
	struct each_seen seen = { 0 };
	struct mgmt_config cfg;

	EXPECT_OK("", &cfg);
	CHECK_U64(cfg.set_mask, 0);
	EXPECT_OK("; nothing\n# at all\n\n   \n\t; indented comment\n[device]\n[models]\n", &cfg);
	CHECK_U64(cfg.set_mask, 0);
	mgmt_config_each(&cfg, each_collect, &seen);
	CHECK_U64(seen.count, 0);
	/* CRLF line ends, no final line end, tabs around '=', an indented key (no continuation lines). */
	EXPECT_OK("[device]\r\nworkers\t=\t2\r\n    idle = poll\r\nring_slots = 8", &cfg);
	CHECK_U64(cfg.workers, 2);
	CHECK_STR(cfg.idle, "poll");
	CHECK_U64(cfg.ring_slots, 8);
	/* A UTF-8 byte order mark before the first section. */
	EXPECT_OK("\xef\xbb\xbf[network]\nudp_port = 1\n", &cfg);
	CHECK_U64(cfg.udp_port, 1);
	/* Non-ASCII UTF-8 in a comment and in a path. */
	EXPECT_OK("; caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n[mgmt]\nctl_socket = /run/caf\xc3\xa9.sock\n", &cfg);
	CHECK_STR(cfg.ctl_socket, "/run/caf\xc3\xa9.sock");
	/* Sections may come back; their keys still count once. */
	EXPECT_OK("[device]\nworkers = 1\n[mgmt]\nhttp_port = 80\n[device]\nidle = poll\n", &cfg);
	CHECK_U64(cfg.set_mask, MGMT_CFG_WORKERS | MGMT_CFG_HTTP_PORT | MGMT_CFG_IDLE);
}

/* ---- structure ------------------------------------------------------------------------------- */

static void test_sections_and_keys(void)
{
	struct mgmt_config cfg;

	EXPECT_ERROR("[network]\nip = 1.2.3.4\n[bogus]\n", 3, "unknown section [bogus]");
	EXPECT_ERROR("; c\n\n[Network]\nip = 1.2.3.4\n", 3, "unknown section [Network]");
	EXPECT_ERROR("[ network ]\n", 1, "unknown section");
	EXPECT_ERROR("[network\nip = 1.2.3.4\n", 1, "without ']'");
	EXPECT_ERROR("[network] ip = 1.2.3.4\n", 1, "text after the section header");
	EXPECT_OK("[network] ; a comment\n[device] # another\n", &cfg);
	EXPECT_ERROR("ip = 1.2.3.4\n", 1, "before any [section]");
	EXPECT_ERROR("[network]\nip = 1.2.3.4\nport = 3\n", 3, "unknown key 'port' in [network]");
	EXPECT_ERROR("[device]\n\n\nworkers = 1\nudp_port = 7000\n", 5, "unknown key 'udp_port' in [device]");
	EXPECT_ERROR("[mgmt]\nIP = 1.2.3.4\n", 2, "unknown key 'IP'");
	EXPECT_ERROR("[mgmt]\n= 5\n", 2, "unknown key ''");
	EXPECT_ERROR("[mgmt]\nhttp_port\n", 2, "expected 'key = value'");
	EXPECT_ERROR("[mgmt]\nhttp_port: 80\n", 2, "not ':'");
	EXPECT_ERROR("[mgmt]\nhttp_port ; note = 80\n", 2, "expected 'key = value'");
	/* Duplicates name both lines. */
	EXPECT_ERROR("[device]\nworkers = 1\nidle = poll\nworkers = 1\n", 4, "duplicate key device.workers (first set on line 2)");
	EXPECT_ERROR("[device]\nidle = poll\n[mgmt]\n[device]\nidle = poll\n", 5, "duplicate key device.idle");
	/* The first error is the one reported. */
	EXPECT_ERROR("[network]\nudp_port = 0\nbogus = 1\n", 2, "network.udp_port");
	EXPECT_ERROR("[network]\nbogus = 1\nudp_port = 0\n", 2, "unknown key 'bogus'");
}

/* ---- values ---------------------------------------------------------------------------------- */

struct ranged_key {
	const char *section;
	const char *name;
	uint32_t min, max;
};

static const struct ranged_key ranged_keys[] = {
	{ "network", "udp_port", 1, 65535 },
	{ "network", "port_id", 0, MGMT_CONFIG_PORT_ID_MAX },
	{ "device", "workers", 0, 64 },
	{ "device", "cuda_blocks", 1, 1024 },
	{ "device", "stall_ms", 10, 600000 },
	{ "device", "run_state_mib", 1, 65536 },
	{ "mgmt", "http_port", 0, 65535 },
	{ "mgmt", "max_connections", 1, MGMT_CONFIG_CONNECTIONS_MAX },
	{ "mgmt", "stop_deadline_ms", 0, 600000 },
	{ "mgmt", "stats_interval_ms", 0, 3600000 },
};

static void test_integers(void)
{
	static const char *const bad_forms[] = { "12x", "-1", "+1", "0x10", "", "99999999999", "1 2", "1.0",
						 "18446744073709551617", " ", "1e3", "\xc2\xb2" };
	struct mgmt_config cfg;
	char range[64];

	for (size_t i = 0; i < sizeof(ranged_keys) / sizeof(ranged_keys[0]); i++) {
		const struct ranged_key *k = &ranged_keys[i];

		snprintf(range, sizeof(range), "%s.%s: expected a decimal integer %u..%u", k->section, k->name, k->min,
			 k->max);
		text_set("; %s\n[%s]\n%s = %u\n", k->name, k->section, k->name, k->min);
		EXPECT_OK(text, &cfg);
		text_set("; %s\n[%s]\n%s = %u\n", k->name, k->section, k->name, k->max);
		EXPECT_OK(text, &cfg);
		/* Leading zeros are still decimal. */
		text_set("[%s]\n%s = 000%u\n", k->section, k->name, k->max);
		EXPECT_OK(text, &cfg);
		if (k->min > 0) {
			text_set("; %s\n[%s]\n%s = %u\n", k->name, k->section, k->name, k->min - 1);
			EXPECT_ERROR(text, 3, range);
		}
		text_set("; %s\n[%s]\n%s = %" PRIu64 "\n", k->name, k->section, k->name, (uint64_t)k->max + 1);
		EXPECT_ERROR(text, 3, range);
		for (size_t f = 0; f < sizeof(bad_forms) / sizeof(bad_forms[0]); f++) {
			text_set("[%s]\n\n%s = %s\n", k->section, k->name, bad_forms[f]);
			EXPECT_ERROR(text, 3, range);
		}
	}
}

static void test_ring_slots(void)
{
	static const uint32_t good[] = { 2, 4, 1024, 65536 };
	static const uint32_t bad[] = { 0, 1, 3, 6, 1000, 65535, 131072 };
	struct mgmt_config cfg;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		text_set("[device]\nring_slots = %u\n", good[i]);
		EXPECT_OK(text, &cfg);
		CHECK_U64(cfg.ring_slots, good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text_set("[device]\nidle = poll\nring_slots = %u\n", bad[i]);
		EXPECT_ERROR(text, 3, "device.ring_slots: expected a power of two 2..65536");
	}
	EXPECT_ERROR("[device]\nring_slots = 0x10\n", 2, "power of two");
}

static void test_strings(void)
{
	static const char *const kinds[] = { "auto", "cpu", "cuda-host", "cuda-gpudirect" };
	static const char *const bad_kinds[] = { "gpu", "CPU", "cuda", "auto cpu", "", "cuda-gpudirect2" };
	static const char *const bad_ips[] = { "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "a.b.c.d", "",
					       "1.2.3.4/8", "::1", " 1.2.3.4x", "1.2.3.4 5" };
	struct mgmt_config cfg;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		text_set("[device]\nkind = %s\n", kinds[i]);
		EXPECT_OK(text, &cfg);
		CHECK_STR(cfg.kind, kinds[i]);
	}
	for (size_t i = 0; i < sizeof(bad_kinds) / sizeof(bad_kinds[0]); i++) {
		text_set("[device]\nkind = %s\n", bad_kinds[i]);
		EXPECT_ERROR(text, 2, "expected one of auto, cpu, cuda-host, cuda-gpudirect");
	}
	EXPECT_ERROR("[device]\n\nidle = busy\n", 3, "device.idle: expected one of poll, backoff");
	EXPECT_ERROR("[device]\nidle = Poll\n", 2, "device.idle");
	EXPECT_OK("[device]\npayload_memory = external\n", &cfg);
	CHECK_U64(cfg.set_mask, MGMT_CFG_PAYLOAD_MEMORY);
	CHECK_STR(cfg.payload_memory, "external");
	EXPECT_OK("[device]\npayload_memory = pool\n", &cfg);
	CHECK_STR(cfg.payload_memory, "pool");
	EXPECT_ERROR("[device]\npayload_memory = gpu\n", 2, "device.payload_memory: expected one of pool, external");
	for (size_t i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
		text_set("[network]\nip = %s\n", bad_ips[i]);
		EXPECT_ERROR(text, 2, "network.ip: expected an IPv4 address");
	}
	EXPECT_OK("[network]\nip = 255.255.255.255\n", &cfg);
	CHECK_STR(cfg.ip, "255.255.255.255");

	/* The control socket: 1..107 bytes. */
	text_set("[mgmt]\nctl_socket = /%0106d\n", 0);
	EXPECT_OK(text, &cfg);
	CHECK_U64(strlen(cfg.ctl_socket), 107);
	text_set("[mgmt]\nctl_socket = /%0107d\n", 0);
	EXPECT_ERROR(text, 2, "mgmt.ctl_socket: expected a path of at most 107 bytes");
	/* Empty: no control socket, as --ctl-socket "". */
	EXPECT_OK("[mgmt]\nctl_socket =\n", &cfg);
	CHECK_U64(cfg.set_mask, MGMT_CFG_CTL_SOCKET);
	CHECK_STR(cfg.ctl_socket, "");
	EXPECT_ERROR("[mgmt]\nctl_socket = /run/a\x01.sock\n", 2, "control character");
}

static void test_cores(void)
{
	static const char *const bad_forms[] = { "", "1,,2", "1,", ",1", "1;2", "-1", "1024", "0x1", "1 2" };
	struct mgmt_config cfg;
	size_t used;

	EXPECT_OK("[device]\nworker_cores = 0\n", &cfg);
	CHECK_U64(cfg.worker_core_count, 1);
	for (size_t i = 0; i < sizeof(bad_forms) / sizeof(bad_forms[0]); i++) {
		text_set("[device]\nworker_cores = %s\n", bad_forms[i]);
		EXPECT_ERROR(text, 2, "device.worker_cores: expected comma-separated cores 0..1023");
	}
	/* 64 cores, and one more. */
	used = (size_t)snprintf(text, sizeof(text), "[device]\nworker_cores = 0");
	for (unsigned i = 1; i < 64; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, ",%u", i);
	snprintf(text + used, sizeof(text) - used, "\n");
	EXPECT_OK(text, &cfg);
	CHECK_U64(cfg.worker_core_count, 64);
	CHECK_U64(cfg.worker_cores[63], 63);
	snprintf(text + used, sizeof(text) - used, ",64\n");
	EXPECT_ERROR(text, 2, "too many cores: at most 64");
	/* A core per worker when both are set; the later of the two lines is named. */
	EXPECT_ERROR("[device]\nworkers = 2\nworker_cores = 1,2,3\n", 3, "names 3 cores for 2 workers");
	EXPECT_ERROR("[device]\nworker_cores = 1\nidle = poll\nworkers = 0\n", 4, "names 1 cores for 0 workers");
}

static void test_allow(void)
{
	static const char *const bad[] = { "198.18.0.0", "198.18.0.0/33", "198.18.0/15", "198.18.0.0/-1", "198.18.0.0/015",
					   "198.18.0.0/", "/15", "a.b.c.d/15", "198.18.0.256/15", "198.18.0.0/15/1",
					   "198.18.0.0/15 x", "198.018.0.0/15", "198.18.0.0/0xf", "198.18.0.0 /15" };
	static const char *const bad_lists[] = { "", "198.18.0.0/15,", ",198.18.0.0/15", "198.18.0.0/15,,1.2.3.4/32",
						 "255.255.255.255/32255" };
	struct mgmt_config cfg;
	size_t used;

	EXPECT_OK("[network]\nallow = 1.2.3.4/32\n", &cfg);
	CHECK_U64(cfg.allow_count, 1);
	CHECK_STR(cfg.allow[0], "1.2.3.4/32");
	EXPECT_OK("[network]\nallow = 198.18.0.0/15,\t255.255.255.255/32 , 0.0.0.0/0\n", &cfg);
	CHECK_U64(cfg.allow_count, 3);
	CHECK_STR(cfg.allow[1], "255.255.255.255/32");
	/* Host bits past the length are refused, as --allow refuses them. */
	EXPECT_ERROR("[network]\nallow = 198.18.0.1/15\n", 2, "'198.18.0.1/15' has host bits set past /15");
	EXPECT_ERROR("[network]\nallow = 198.18.0.0/15, 1.0.0.0/0\n", 2, "host bits set past /0");
	EXPECT_OK("[network]\nallow = 198.18.0.0/15, 198.18.0.1/32\n", &cfg);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text_set("[network]\nallow = 1.2.3.0/24, %s\n", bad[i]);
		EXPECT_ERROR(text, 2, "is not a CIDR block");
	}
	for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
		text_set("[network]\n\nallow = %s\n", bad_lists[i]);
		EXPECT_ERROR(text, 3, "network.allow");
	}
	/* 64 entries, and one more. */
	used = (size_t)snprintf(text, sizeof(text), "[network]\nallow = 198.18.0.0/32");
	for (unsigned i = 1; i < 64; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, ", 198.18.%u.%u/32", i / 8, i);
	snprintf(text + used, sizeof(text) - used, "\n");
	EXPECT_OK(text, &cfg);
	CHECK_U64(cfg.allow_count, 64);
	CHECK_STR(cfg.allow[63], "198.18.7.63/32");
	snprintf(text + used, sizeof(text) - used, ",203.0.113.0/24\n");
	EXPECT_ERROR(text, 2, "too many allow entries: at most 64");
	EXPECT_ERROR("[network]\nallow = 1.2.3.4/32\nallow = 1.2.3.5/32\n", 3, "duplicate key network.allow");
}

static void test_models(void)
{
	static const char *const bad_names[] = { "a b", "a/b", "caf\xc3\xa9", "a+b", "a\"b", "a,b" };
	struct mgmt_config cfg;
	size_t used;

	EXPECT_OK("[models]\nfirst = echo\nsecond = /m/2\n", &cfg);
	CHECK_U64(cfg.model_count, 2);
	CHECK_STR(cfg.models[0].name, "first");
	CHECK_STR(cfg.models[1].dir, "/m/2");
	CHECK_U64(cfg.set_mask, MGMT_CFG_MODELS);
	EXPECT_ERROR("[models]\na = echo\nb = /m/b\na = /m/a\n", 4, "duplicate model 'a' (first on line 2)");
	/* Eight models, and a ninth. */
	used = (size_t)snprintf(text, sizeof(text), "[models]\n");
	for (unsigned i = 0; i < 8; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used, "m%u = /models/%u\n", i, i);
	EXPECT_OK(text, &cfg);
	CHECK_U64(cfg.model_count, 8);
	CHECK_STR(cfg.models[7].name, "m7");
	snprintf(text + used, sizeof(text) - used, "m8 = echo\n");
	EXPECT_ERROR(text, 10, "too many models: at most 8");
	/* Names: 31 bytes, not 32, and only A-Z a-z 0-9 . _ - */
	text_set("[models]\n%031d = echo\n", 0);
	EXPECT_OK(text, &cfg);
	CHECK_U64(strlen(cfg.models[0].name), 31);
	text_set("[models]\n%032d = echo\n", 0);
	EXPECT_ERROR(text, 2, "bad model name");
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		text_set("[models]\nok = echo\n%s = echo\n", bad_names[i]);
		EXPECT_ERROR(text, 3, "bad model name");
	}
	EXPECT_ERROR("[models]\n= echo\n", 2, "bad model name ''");
	EXPECT_ERROR("[models]\nm =\n", 2, "bad directory for model 'm'");
}

/* ---- lines and bytes ------------------------------------------------------------------------- */

static void test_lines(void)
{
	struct mgmt_config cfg;
	char pad[5000];

	/* A comment of 4096 bytes is fine, one of 4097 is not. */
	memset(pad, 'x', sizeof(pad));
	text_set("[device]\n;%.*s\nworkers = 1\n", 4095, pad);
	EXPECT_OK(text, &cfg);
	text_set("[device]\n;%.*s\r\nworkers = 1\n", 4095, pad);
	EXPECT_OK(text, &cfg);
	text_set("[device]\nworkers = 1\n;%.*s\n", 4096, pad);
	EXPECT_ERROR(text, 3, "line too long: 4097 bytes, at most 4096");
	/* A model directory on a line of 4096 bytes is read whole. */
	text_set("[models]\nm = /%.*s\n", 4096 - 5, pad);
	EXPECT_OK(text, &cfg);
	CHECK_U64(strlen(cfg.models[0].dir), 4092);
	/* Lines past libinih's default 200 bytes must count as one line each. */
	text_set("[device]\n; %.*s\n; %.*s\nworkers = 99\n", 300, pad, 1000, pad);
	EXPECT_ERROR(text, 4, "device.workers");
	text_set("[mgmt]\nctl_socket = /%.*s\nbogus = 1\n", 100, pad);
	EXPECT_ERROR(text, 3, "unknown key 'bogus'");
}

static void test_bytes(void)
{
	static const char nul_line[] = "[device]\nworkers = 1\nidle = po\0ll\n";
	static const char nul_comment[] = "[device]\n; a\0b\nworkers = 1\n";
	static const char *const bad_utf8[] = {
		"\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80",
		"\xe2\x82", "\xf8\x88\x80\x80\x80",
	};
	struct mgmt_config cfg;
	char why[MGMT_CONFIG_WHY_SIZE];

	EXPECT_ERROR_BYTES(nul_line, sizeof(nul_line) - 1, 3, "NUL byte at column 10");
	EXPECT_ERROR_BYTES(nul_comment, sizeof(nul_comment) - 1, 2, "NUL byte");
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		text_set("[mgmt]\n; fine\n; %s\n", bad_utf8[i]);
		EXPECT_ERROR(text, 3, "not UTF-8 at column 3");
	}
	/* A missing file, and a directory, are reported without a line. */
	CHECK_U64(mgmt_config_load("/nonexistent/zerohop.ini", &cfg, why, sizeof(why)), (uint64_t)-ENOENT);
	CHECK_STR(why, "/nonexistent/zerohop.ini: cannot open: No such file or directory");
	CHECK_U64(mgmt_config_load(tmp_dir, &cfg, why, sizeof(why)), (uint64_t)-EISDIR);
	CHECK(strstr(why, "cannot read") != NULL);
	/* A short `why` is cut, never overrun; a NULL one is allowed. */
	write_conf("[x]\n", 4);
	CHECK_U64(mgmt_config_load(conf_path, &cfg, why, 8), (uint64_t)-EINVAL);
	CHECK_U64(strlen(why), 7);
	CHECK_U64(mgmt_config_load(conf_path, &cfg, NULL, 0), (uint64_t)-EINVAL);
}

/* A file over the size cap is refused as such. */
static void test_file_size(void)
{
	static const char line[] = "; a comment line, written again and again past the size cap\n";
	struct mgmt_config cfg;
	char why[MGMT_CONFIG_WHY_SIZE];
	FILE *f = fopen(conf_path, "wb");

	CHECK(f != NULL);
	if (!f)
		return;
	for (size_t written = 0; written <= MGMT_CONFIG_FILE_MAX; written += sizeof(line) - 1)
		fputs(line, f);
	fclose(f);
	CHECK_U64(mgmt_config_load(conf_path, &cfg, why, sizeof(why)), (uint64_t)-EFBIG);
	CHECK(strstr(why, "larger than") != NULL);
}

/* ---- the example ----------------------------------------------------------------------------- */

static bool example_found = true;

/* docs/config-example.ini next to the executable's build (BUILD/tests/ -> docs), or below the cwd. */
static void test_example(const char *argv0)
{
	char exe[PATH_MAX], path[PATH_MAX + 32], why[MGMT_CONFIG_WHY_SIZE];
	struct mgmt_config cfg;
	int ret;

	snprintf(exe, sizeof(exe), "%s", argv0);
	snprintf(path, sizeof(path), "%s/../../docs/config-example.ini", dirname(exe));
	if (access(path, R_OK) != 0)
		snprintf(path, sizeof(path), "docs/config-example.ini");
	if (access(path, R_OK) != 0) {
		fprintf(stderr, "docs/config-example.ini not found: not checked\n");
		example_found = false;
		return;
	}
	ret = mgmt_config_load(path, &cfg, why, sizeof(why));
	if (ret != 0) {
		check_failed(__FILE__, __LINE__, "%s refused: %s", path, why);
		return;
	}
	/* The example shows every key. */
	CHECK_U64(cfg.set_mask, (1ull << MGMT_CFG_KEY_COUNT) - 1);
	checks_passed++;
}

int main(int argc, char **argv)
{
	(void)argc;
	if (!mkdtemp(tmp_dir)) {
		fprintf(stderr, "test_config: cannot make a temporary directory: %s\n", strerror(errno));
		return 77;
	}
	snprintf(conf_path, sizeof(conf_path), "%s/zerohop.ini", tmp_dir);

	RUN(test_full_file);
	RUN(test_empty_and_comments);
	RUN(test_sections_and_keys);
	RUN(test_integers);
	RUN(test_ring_slots);
	RUN(test_strings);
	RUN(test_cores);
	RUN(test_allow);
	RUN(test_models);
	RUN(test_lines);
	RUN(test_bytes);
	RUN(test_file_size);
	case_name = "test_example";
	test_example(argv[0]);

	unlink(conf_path);
	rmdir(tmp_dir);
	printf("test_config: %lu checks passed, %lu failed\n", checks_passed, checks_failed);
	if (checks_failed)
		return 1;
	return example_found ? 0 : 77;
}
