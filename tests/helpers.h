/* helpers.h: what several test programs share. Exit codes follow the
 * automake convention meson understands: 0 pass, 1 fail, 77 skip. */
#ifndef PM_TEST_HELPERS_H
#define PM_TEST_HELPERS_H

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchmap.h"

#define T_SKIP 77

/* A sanitized build (ASan or TSan), where sizes and memory bounds differ. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif

/* The tests' reproducible random numbers: xorshift64* on the state *s,
 * which must not be 0. */
static inline uint64_t t_rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* A named CUnit test. */
struct t_test {
	const char *name;
	void (*fn)(void);
};

#define T_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Registers a suite of the tests whose name contains `only` (all when
 * NULL). False if CUnit could not. */
static inline bool t_add_suite(const char *suite, const struct t_test *t, size_t n, const char *only)
{
	CU_pSuite s = CU_add_suite(suite, NULL, NULL);

	if (!s)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((!only || strstr(t[i].name, only)) && !CU_add_test(s, t[i].name, t[i].fn))
			return false;
	return true;
}

/* Runs what is registered, verbosely, and frees the registry: the exit
 * code, 0 if every test passed, else 1. */
static inline int t_run_registered(void)
{
	unsigned failed;

	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

/* The whole main() of a one-suite test program: the exit code. */
static inline int t_run(const char *suite, const struct t_test *t, size_t n, const char *only)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if (!t_add_suite(suite, t, n, only)) {
		CU_cleanup_registry();
		return 1;
	}
	return t_run_registered();
}

/* Every backend, forced; correctness tests run once per entry. */
static const int t_backends[] = { PM_BACKEND_EAGER, PM_BACKEND_UFFD, PM_BACKEND_SIGSEGV };
#define T_NBACKENDS ((int)(sizeof(t_backends) / sizeof(t_backends[0])))
#define FOR_ALL_BACKENDS(b) \
	for (int b##_i = 0, b = t_backends[0]; b##_i < T_NBACKENDS; b = t_backends[++b##_i < T_NBACKENDS ? b##_i : 0])

/* The lazy ones only. */
static const int t_lazy_backends[] = { PM_BACKEND_UFFD, PM_BACKEND_SIGSEGV };
#define T_NLAZY ((int)(sizeof(t_lazy_backends) / sizeof(t_lazy_backends[0])))

/* A /proc/self/status field in KiB (VmHWM, VmRSS), or -1. */
static inline long t_status_kib(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0), so a test can measure
 * its own peak. Returns 0 on success. */
static inline int t_reset_hwm(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int ok;

	if (!f)
		return -1;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

#endif
