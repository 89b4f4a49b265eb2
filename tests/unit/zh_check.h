/* SPDX-License-Identifier: MIT */
/*
 * zh_check.h: the unit tests' checks. Each test binary includes it once: it counts checks passed and
 * failed, and prints each failure with its file, line and the case running (case_name), up to a
 * screenful so that a check failing inside a loop stays readable. Test-specific checks build on
 * check_failed and checks_passed.
 */
#ifndef ZH_CHECK_H
#define ZH_CHECK_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

static const char *case_name = "";
static unsigned long checks_passed;
static unsigned long checks_failed;

#define FAILURES_PRINTED_MAX 40u

static void check_failed(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void check_failed(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	if (checks_failed++ >= FAILURES_PRINTED_MAX)
		return;
	fprintf(stderr, "%s:%d: [%s] ", file, line, case_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The _AT forms report the caller's line, for checks made inside helpers. */
#define CHECK_AT(line, cond)                                                     \
	do {                                                                     \
		if (cond)                                                        \
			checks_passed++;                                         \
		else                                                             \
			check_failed(__FILE__, line, "check failed: %s", #cond); \
	} while (0)

#define CHECK_U64_AT(line, a, b)                                                                  \
	do {                                                                                      \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                  \
		if (a_ == b_)                                                                     \
			checks_passed++;                                                          \
		else                                                                              \
			check_failed(__FILE__, line, "%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, a_, \
				     b_);                                                         \
	} while (0)

#define CHECK(cond) CHECK_AT(__LINE__, cond)
#define CHECK_U64(a, b) CHECK_U64_AT(__LINE__, a, b)

/* Run one case of the test: failures inside it carry its name. */
#define RUN(fn)                  \
	do {                     \
		case_name = #fn; \
		fn();            \
	} while (0)

/* The test's last line and its exit status: 1 when any check failed, else 0. TEST_NAME is the
 * including file's. */
static inline int check_summary(void)
{
	if (checks_failed) {
		printf("%s: %lu of %lu checks failed\n", TEST_NAME, checks_failed, checks_failed + checks_passed);
		return 1;
	}
	printf("%s: %lu checks passed\n", TEST_NAME, checks_passed);
	return 0;
}

#endif /* ZH_CHECK_H */
