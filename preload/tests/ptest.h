/* ptest.h: what the preload tests share: a scratch directory, files written
 * and read with raw system calls (never through the shim), the expected
 * matrix from the independent reference im2col (tests/ref.c), and the CUnit
 * runner. Exit codes: 0 pass, 1 fail, 77 skip. */
#ifndef PM_PRELOAD_PTEST_H
#define PM_PRELOAD_PTEST_H

#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "patchmap.h"
#include "ref.h"

#define T_SKIP 77

/* ---------------------------------------------------------------- raw I/O */

/* System calls made directly, so that the shim (when preloaded) never sees
 * them: the tests' own view of the file system. */
static inline int sys_open(const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

static inline ssize_t sys_read(int fd, void *buf, size_t n)
{
	return syscall(SYS_read, fd, buf, n);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t n)
{
	return syscall(SYS_write, fd, buf, n);
}

static inline int sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

static inline int write_file(const char *path, const void *data, size_t len)
{
	int fd = sys_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	const char *p = data;

	if (fd < 0)
		return -1;
	while (len) {
		ssize_t w = sys_write(fd, p, len);

		if (w <= 0) {
			sys_close(fd);
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return sys_close(fd);
}

static inline int write_text(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int write_text(const char *path, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return write_file(path, buf, (size_t)n);
}

/* ---------------------------------------------------------------- scratch */

static char t_dir[256];

/* A fresh directory under TMPDIR, removed (with what the tests left in it)
 * at exit. */
static inline void t_rm_dir(void)
{
	char cmd[512];

	if (t_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", t_dir);
	}
}

static inline int t_make_dir(const char *tag)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(t_dir, sizeof(t_dir), "%s/pm-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
	if (!mkdtemp(t_dir))
		return -1;
	atexit(t_rm_dir);
	return 0;
}

/* t_dir/name in a static buffer (one of four, rotating). */
static inline const char *t_path(const char *name)
{
	static char bufs[4][512];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, 512, "%s/%s", t_dir, name);
	return b;
}

/* ---------------------------------------------------------------- npy */

/* A little-endian, C-order .npy file of a 2-D or 3-D array, written by
 * hand: the tests' sources. */
static inline int write_npy(const char *path, const char *descr, int ndim, const size_t *shape,
			    const void *data, size_t bytes)
{
	char hdr[256], dims[128] = "";
	size_t used = 0, hl, total;
	char *buf;
	int n, ret;

	for (int a = 0; a < ndim; a++)
		used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%zu,%s", shape[a],
					 a + 1 < ndim ? " " : "");
	n = snprintf(hdr + 10, sizeof(hdr) - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
		     descr, dims);
	hl = 10 + (size_t)n + 1;
	hl = (hl + 63) / 64 * 64;
	memcpy(hdr, "\x93NUMPY\x01\x00", 8);
	hdr[8] = (char)((hl - 10) & 0xff);
	hdr[9] = (char)((hl - 10) >> 8);
	memset(hdr + 10 + n, ' ', hl - 10 - (size_t)n - 1);
	hdr[hl - 1] = '\n';
	total = hl + bytes;
	buf = malloc(total);
	if (!buf)
		return -1;
	memcpy(buf, hdr, hl);
	memcpy(buf + hl, data, bytes);
	ret = write_file(path, buf, total);
	free(buf);
	return ret;
}

/* The offset of the data in a .npy image, checking its magic, version and
 * 64-byte alignment; 0 if any is wrong. */
static inline size_t npy_data_offset(const unsigned char *b, size_t len)
{
	size_t hl;

	if (len < 16 || memcmp(b, "\x93NUMPY", 6))
		return 0;
	if (b[6] == 1)
		hl = 10 + (size_t)(b[8] | b[9] << 8);
	else if (b[6] == 2)
		hl = 12 + (size_t)(b[8] | b[9] << 8 | b[10] << 16 | (size_t)b[11] << 24);
	else
		return 0;
	return hl <= len && hl % 64 == 0 && b[hl - 1] == '\n' ? hl : 0;
}

/* ---------------------------------------------------------------- runner */

struct t_case {
	const char *name;
	void (*fn)(void);
};

static inline int t_run(const char *suite, const struct t_case *cases, size_t n)
{
	unsigned failed;
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite(suite, NULL, NULL);
	if (!s)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (!CU_add_test(s, cases[i].name, cases[i].fn)) {
			CU_cleanup_registry();
			return 1;
		}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

#endif
