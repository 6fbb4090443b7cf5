/* helpers.h: what several test programs share. Exit codes follow the
 * automake convention meson understands: 0 pass, 1 fail, 77 skip. */
#ifndef PM_TEST_HELPERS_H
#define PM_TEST_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchmap.h"

#define T_SKIP 77

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
