/* SPDX-License-Identifier: MIT */
/*
 * test_acl.c: the allow-list of dataplane/dp_acl.c: strict parsing of "a.b.c.d/len" prefixes, the
 * 64-entry bound, and matching at the edges of /0, /32 and /15 prefixes. No EAL.
 *
 * Addresses go in as the wire has them (network byte order) and are written here as host-order
 * constants converted once, so a byte-order mistake in dp_acl shows as a wrong match.
 *
 * Exit status: 0 all checks passed, 1 a check failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_byteorder.h>

#include "dp_acl.h"

#define TEST_NAME "test_acl"

#include "zh_check.h"

#define CHECK_TEXT(cond, text)                                                                     \
	do {                                                                                       \
		if (cond)                                                                          \
			checks_passed++;                                                           \
		else                                                                               \
			check_failed(__FILE__, __LINE__, "check failed for \"%s\": %s", text, #cond); \
	} while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A host-order address. Not DPDK's RTE_IPV4, which shifts an int: undefined from 128.0.0.0 up. */
#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static rte_be32_t wire(uint32_t host)
{
	return rte_cpu_to_be_32(host);
}

/* ---- parsing --------------------------------------------------------------------------------- */

static void test_parse_good(void)
{
	static const struct {
		const char *text;
		uint32_t addr;
		uint32_t mask;
	} good[] = {
		{ "198.18.0.0/15", IP4(198, 18, 0, 0), 0xfffe0000u },
		{ "198.18.0.2/32", IP4(198, 18, 0, 2), 0xffffffffu },
		{ "0.0.0.0/0", 0, 0 },
		{ "100.0.0.0/8", IP4(100, 0, 0, 0), 0xff000000u },
		{ "128.0.0.0/1", IP4(128, 0, 0, 0), 0x80000000u },
		{ "255.255.255.255/32", 0xffffffffu, 0xffffffffu },
		{ "255.255.255.254/31", 0xfffffffeu, 0xfffffffeu },
		{ "203.0.0.0/16", IP4(203, 0, 0, 0), 0xffff0000u },
		{ "1.2.3.0/24", IP4(1, 2, 3, 0), 0xffffff00u },
		{ "0.0.0.0/32", 0, 0xffffffffu },
	};

	for (uint32_t i = 0; i < ARRAY_SIZE(good); i++) {
		struct dp_acl_prefix p = { 0x5a5a5a5a, 0x5a5a5a5a };

		CHECK_TEXT(dp_acl_parse_prefix(good[i].text, &p) == 0, good[i].text);
		CHECK_TEXT(p.addr == good[i].addr, good[i].text);
		CHECK_TEXT(p.mask == good[i].mask, good[i].text);
	}
}

static void test_parse_bad(void)
{
	static const char *const bad[] = {
		"1.2.3.4/33", "1.2.3.4/100", "1.2.3.4/4294967328", "1.2.3", "1.2.3/8", "1.2.3.4.5/32",
		"a.b.c.d/8", "", "/", "/8", "1.2.3.4", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/08",
		"1.2.3.4/ 8", " 1.2.3.4/32", "1.2.3.4/32 ", "1.2.3.4 /32", "01.2.3.4/32", "0x01.2.3.4/32",
		"1.2.3.4/3a", "256.0.0.0/8", "1.2.3.4/32/1", "1.2.3.4//32", "1..3.4/32", "::1/128",
		"1.2.3.4/32\n", "1.2.3.4000/32", "1234567890123456789.0.0.0/8",
		/* Host bits set beyond the length are refused, not masked (dp_acl.h). */
		"198.18.0.1/15", "198.19.0.0/15", "100.0.0.1/8", "0.0.0.1/0", "1.2.3.5/31", "128.0.0.0/0",
	};

	for (uint32_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct dp_acl_prefix p;

		CHECK_TEXT(dp_acl_parse_prefix(bad[i], &p) == -EINVAL, bad[i]);
	}
}

/* A failed add leaves the list as it was; the 65th prefix does not fit. */
static void test_add_bound(void)
{
	struct dp_acl acl;
	char text[32];

	dp_acl_init(&acl);
	CHECK(acl.count == 0);
	CHECK(dp_acl_add(&acl, "1.2.3.4/33") == -EINVAL);
	CHECK(dp_acl_add(&acl, "") == -EINVAL);
	CHECK(acl.count == 0);
	for (uint32_t i = 0; i < DP_ACL_PREFIXES_MAX; i++) {
		snprintf(text, sizeof(text), "100.%u.0.0/16", i);
		CHECK_TEXT(dp_acl_add(&acl, text) == 0, text);
	}
	CHECK(acl.count == DP_ACL_PREFIXES_MAX);
	CHECK(dp_acl_add(&acl, "198.18.0.0/15") == -ENOSPC);
	CHECK(dp_acl_add(&acl, "a.b.c.d/8") == -EINVAL);
	CHECK(acl.count == DP_ACL_PREFIXES_MAX);
	/* All 64 are matched, the last one included; what did not fit is not. */
	CHECK(dp_acl_allows(&acl, wire(IP4(100, 0, 9, 9))));
	CHECK(dp_acl_allows(&acl, wire(IP4(100, 63, 255, 255))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(100, 64, 0, 0))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(198, 18, 0, 2))));
}

/* ---- matching -------------------------------------------------------------------------------- */

static void test_empty_allows_all(void)
{
	static const uint32_t addrs[] = { 0, 1, IP4(198, 18, 0, 2), IP4(100, 0, 0, 1), 0xffffffffu };
	struct dp_acl acl;

	dp_acl_init(&acl);
	for (uint32_t i = 0; i < ARRAY_SIZE(addrs); i++)
		CHECK(dp_acl_allows(&acl, wire(addrs[i])));
}

static void test_slash0(void)
{
	static const uint32_t addrs[] = { 0, 1, IP4(127, 255, 255, 255), IP4(128, 0, 0, 0), 0xffffffffu };
	struct dp_acl acl;

	dp_acl_init(&acl);
	CHECK(dp_acl_add(&acl, "0.0.0.0/0") == 0);
	for (uint32_t i = 0; i < ARRAY_SIZE(addrs); i++)
		CHECK(dp_acl_allows(&acl, wire(addrs[i])));
}

static void test_slash32(void)
{
	struct dp_acl acl;

	dp_acl_init(&acl);
	CHECK(dp_acl_add(&acl, "198.18.0.2/32") == 0);
	CHECK(dp_acl_allows(&acl, wire(IP4(198, 18, 0, 2))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(198, 18, 0, 1))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(198, 18, 0, 3))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(198, 18, 1, 2))));
	/* The same address byte-swapped. */
	CHECK(!dp_acl_allows(&acl, wire(IP4(2, 0, 18, 198))));
	CHECK(!dp_acl_allows(&acl, wire(0)));
	CHECK(!dp_acl_allows(&acl, wire(0xffffffffu)));
	/* The two ends of the address space, each as a /32. */
	dp_acl_init(&acl);
	CHECK(dp_acl_add(&acl, "0.0.0.0/32") == 0);
	CHECK(dp_acl_add(&acl, "255.255.255.255/32") == 0);
	CHECK(dp_acl_allows(&acl, wire(0)));
	CHECK(dp_acl_allows(&acl, wire(0xffffffffu)));
	CHECK(!dp_acl_allows(&acl, wire(1)));
	CHECK(!dp_acl_allows(&acl, wire(0xfffffffeu)));
}

static void test_slash15_boundaries(void)
{
	static const struct {
		uint32_t addr;
		int allowed;
	} cases[] = {
		{ IP4(198, 17, 255, 255), 0 },  /* one below */
		{ IP4(198, 18, 0, 0), 1 },      /* first */
		{ IP4(198, 18, 0, 2), 1 },
		{ IP4(198, 18, 255, 255), 1 },
		{ IP4(198, 19, 0, 0), 1 },      /* the second half of the /15 */
		{ IP4(198, 19, 255, 255), 1 },  /* last */
		{ IP4(198, 20, 0, 0), 0 },      /* one above */
		{ IP4(199, 18, 0, 0), 0 },
		{ IP4(70, 18, 0, 0), 0 },       /* the top bit differs */
		{ IP4(18, 198, 0, 0), 0 },      /* byte-swapped halves */
	};
	struct dp_acl acl;

	dp_acl_init(&acl);
	CHECK(dp_acl_add(&acl, "198.18.0.0/15") == 0);
	for (uint32_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK(dp_acl_allows(&acl, wire(cases[i].addr)) == cases[i].allowed);
}

/* Several prefixes: any one holding the source is enough; the order does not matter. */
static void test_several(void)
{
	struct dp_acl acl;

	dp_acl_init(&acl);
	CHECK(dp_acl_add(&acl, "100.0.0.0/8") == 0);
	CHECK(dp_acl_add(&acl, "198.19.0.0/16") == 0);
	CHECK(dp_acl_add(&acl, "192.0.2.7/32") == 0);
	CHECK(dp_acl_allows(&acl, wire(IP4(100, 200, 1, 1))));
	CHECK(dp_acl_allows(&acl, wire(IP4(198, 19, 4, 4))));
	CHECK(dp_acl_allows(&acl, wire(IP4(192, 0, 2, 7))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(198, 18, 0, 2))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(192, 0, 2, 8))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(101, 0, 0, 0))));
	CHECK(!dp_acl_allows(&acl, wire(IP4(0, 0, 0, 10))));
}

int main(void)
{
	RUN(test_parse_good);
	RUN(test_parse_bad);
	RUN(test_add_bound);
	RUN(test_empty_allows_all);
	RUN(test_slash0);
	RUN(test_slash32);
	RUN(test_slash15_boundaries);
	RUN(test_several);
	return check_summary();
}
