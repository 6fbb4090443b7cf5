/* fail-rename.c: a test helper for LD_PRELOAD. $PM_FAIL_RENAME lists
 * names, "NAME" or "NAME:N", separated by blanks: rename() and renameat2()
 * onto a file of that name (the last component) fail with EIO, after the
 * first N calls onto it (0 if not given) have gone through. "NAME^N"
 * raises SIGINT in the call N (from 0) onto NAME, which then goes on.
 * With $PM_RAISE_ON_RESTORE set, sigaction() that puts SIGINT back to its
 * default action raises SIGINT right after. A test so reaches the paths
 * where a finished output cannot be renamed into place, and a signal that
 * comes meanwhile or just after. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused(const char *to)
{
	static unsigned calls[8];
	const char *list = getenv("PM_FAIL_RENAME"), *base = strrchr(to, '/');
	size_t len;

	base = base ? base + 1 : to;
	len = strlen(base);
	for (int i = 0; list && *list && i < 8; i++) {
		size_t n = strcspn(list, ":^ ");
		unsigned k = list[n] == ':' || list[n] == '^' ? (unsigned)strtoul(list + n + 1, NULL, 10)
							   : 0;

		if (n == len && !memcmp(list, base, n)) {
			if (list[n] == '^') {
				if (calls[i]++ == k)
					raise(SIGINT);
			} else if (calls[i]++ >= k) {
				errno = EIO;
				return 1;
			}
		}
		list += n + strcspn(list + n, " ");
		list += strspn(list, " ");
	}
	return 0;
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

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int (*real)(int, const struct sigaction *, struct sigaction *);
	int ret;

	*(void **)&real = dlsym(RTLD_NEXT, "sigaction");
	ret = real(sig, act, old);
	if (!ret && sig == SIGINT && act && !(act->sa_flags & SA_SIGINFO) &&
	    act->sa_handler == SIG_DFL && getenv("PM_RAISE_ON_RESTORE"))
		raise(SIGINT);
	return ret;
}
