/* fail-rename.c: a test helper for LD_PRELOAD. rename() and renameat2()
 * onto a file named $PM_FAIL_RENAME (the last component) fail with EIO,
 * so that a test reaches the paths where a finished output cannot be
 * renamed into place. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused(const char *to)
{
	const char *name = getenv("PM_FAIL_RENAME"), *base = strrchr(to, '/');

	if (!name || strcmp(base ? base + 1 : to, name))
		return 0;
	errno = EIO;
	return 1;
}

int rename(const char *from, const char *to)
{
	int (*real)(const char *, const char *);

	if (refused(to))
		return -1;
	*(void **)&real = dlsym(RTLD_NEXT, "rename");
	return real(from, to);
}

int renameat2(int fromdir, const char *from, int todir, const char *to, unsigned flags)
{
	int (*real)(int, const char *, int, const char *, unsigned);

	if (refused(to))
		return -1;
	*(void **)&real = dlsym(RTLD_NEXT, "renameat2");
	return real(fromdir, from, todir, to, flags);
}
