/* outfile.c: output files written under a temporary name and renamed into
 * place, refused when they would replace an input or a file the user may
 * not write (see outfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outfile.h"
#include "text.h"

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, OUT_ERRLEN, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---------------------------------------------------------------- names */

/* The directory part of path ("." for none), malloc'd. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* Follows one symlink: replaces *cur, a malloc'd path, with the path its
 * link names (from *cur's directory when relative). False when *cur is no
 * symlink or cannot be read (*cur as it was), or when out of memory (*cur
 * NULL). */
static bool follow_link(char **cur)
{
	char link[PATH_MAX], *dir, *next;
	struct stat st;
	ssize_t n;

	if (lstat(*cur, &st) || !S_ISLNK(st.st_mode) || (n = readlink(*cur, link, sizeof(link) - 1)) < 0)
		return false;
	link[n] = 0;
	dir = dir_of(*cur);
	if (link[0] == '/' || !dir)
		next = strdup(link);
	else if (asprintf(&next, "%s/%s", dir, link) < 0)
		next = NULL;
	free(dir);
	free(*cur);
	*cur = next;
	return next != NULL;
}

/* The file that writing path replaces or creates, malloc'd: path with its
 * symlinks resolved, also when the last one dangles (a symlink to a file
 * not yet written is written through, as an existing one). NULL when out of
 * memory. */
static char *resolve(const char *path)
{
	char *p = realpath(path, NULL), *cur, *dir, *rdir;
	const char *base;

	if (p)
		return p;
	cur = strdup(path);
	for (int hops = 0; cur && hops < 40 && follow_link(&cur); hops++)
		;
	if (!cur)
		return NULL;
	/* the directory resolved, the name kept */
	dir = dir_of(cur);
	rdir = dir ? realpath(dir, NULL) : NULL;
	base = strrchr(cur, '/') ? strrchr(cur, '/') + 1 : cur;
	if (rdir && *base && asprintf(&p, "%s%s%s", rdir, strcmp(rdir, "/") ? "/" : "", base) < 0)
		p = NULL;
	else if (!rdir || !*base)
		p = strdup(cur);
	free(rdir);
	free(dir);
	free(cur);
	return p;
}

/* True when dir, a resolved path, is this process's table of descriptors:
 * /proc/PID/fd, or /proc/PID/task/TID/fd (/proc/thread-self/fd). PID as
 * /proc names it, which in another PID namespace is not getpid(). */
static bool is_own_fd_dir(const char *dir)
{
	char self[32], pre[48];
	ssize_t n = readlink("/proc/self", self, sizeof(self) - 1);
	size_t k;

	if (n <= 0)
		return false;
	self[n] = 0;
	k = (size_t)snprintf(pre, sizeof(pre), "/proc/%s/", self);
	if (strncmp(dir, pre, k))
		return false;
	dir += k;
	if (!strncmp(dir, "task/", 5)) {
		dir += 5;
		if (*dir < '0' || *dir > '9')
			return false;
		while (*dir >= '0' && *dir <= '9')
			dir++;
		if (*dir++ != '/')
			return false;
	}
	return !strcmp(dir, "fd");
}

/* A descriptor number: digits only, at most INT_MAX. */
static int parse_fd(const char *s)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return -1;
	}
	return (int)v;
}

int out_fd(const char *path)
{
	char *cur;
	int fd = -1;

	if (!strcmp(path, "-"))
		return STDOUT_FILENO;
	/* Each name on the way, before its link is followed: /dev/stdout leads
	 * to /proc/self/fd/1, whose link is the descriptor's file itself. */
	cur = strdup(path);
	for (int hops = 0; cur && hops < 40; hops++) {
		const char *base = strrchr(cur, '/') ? strrchr(cur, '/') + 1 : cur;
		char *dir = dir_of(cur), *rdir = dir ? realpath(dir, NULL) : NULL;
		bool in_table = rdir && is_own_fd_dir(rdir);

		free(rdir);
		free(dir);
		if (in_table) {
			fd = parse_fd(base);
			break;
		}
		if (!follow_link(&cur))
			break;
	}
	free(cur);
	return fd;
}

/* stat, through the descriptor for a name of one ("-": standard output). */
static int stat_path(const char *path, struct stat *st)
{
	int fd = out_fd(path);

	return fd < 0 ? stat(path, st) : fstat(fd, st);
}

bool out_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	bool ea = stat_path(a, &sa) == 0, eb = stat_path(b, &sb) == 0, same;
	char *ra, *rb;

	if (ea && eb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (ea || eb || out_fd(a) >= 0 || out_fd(b) >= 0)
		return false;
	ra = resolve(a);
	rb = resolve(b);
	same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
	free(ra);
	free(rb);
	return same;
}

int out_check(const char *path, const struct out_input *inputs, int n, char *err)
{
	struct stat st;
	int fd;

	for (int i = 0; i < n; i++)
		if (inputs[i].path && out_same_file(path, inputs[i].path)) {
			if (!strcmp(inputs[i].path, path))
				return fail(err, "refusing to write '%s': it is %s", path, inputs[i].what);
			return fail(err, "refusing to write '%s': it is %s '%s' (the same file)",
				    !strcmp(path, "-") ? "standard output" : path, inputs[i].what,
				    inputs[i].path);
		}
	if (out_fd(path) >= 0)
		return 0; /* written in place: out_open says if the descriptor is not open */
	/* Only a name that does not exist yet, or a symlink to one, is created.
	 * Any other failure (a symlink loop, a component that is no directory)
	 * would send the file where the name does not lead: a loop's first
	 * link would be replaced by a regular file. */
	if (stat(path, &st))
		return errno == ENOENT ? 0
				       : fail(err, "cannot open '%s' for writing: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return fail(err, "cannot open '%s' for writing: %s", path, strerror(EISDIR));
	if (!S_ISREG(st.st_mode))
		return 0; /* a device or a pipe: opened by out_open, which says why not */
	/* An existing file is replaced only if it could be written in place, as
	 * cp, the shell's '>' and numpy.save would: a read-only file is kept.
	 * Opening without O_TRUNC changes nothing. */
	fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return fail(err, "cannot open '%s' for writing: %s", path, strerror(errno));
	close(fd);
	/* Root may open anything: a file nobody may write (0444) is kept for
	 * root too, as patchmap.save keeps it; cp as root would replace it. */
	if (!(st.st_mode & 0222))
		return fail(err, "refusing to replace '%s': it is read-only (mode %04o): remove it or "
				 "make it writable first",
			    path, (unsigned)(st.st_mode & 07777));
	return 0;
}

/* ---------------------------------------------------------------- signals */

/* The temporaries a signal must remove: copies, so the handler only reads.
 * Two slots: a command that writes two files has both written before it
 * renames either. The signal may reach any thread (OpenBLAS starts its own
 * at load), so masking it in the creating thread is not enough: while a
 * temporary is being created, and its name not yet known here, the
 * handler only notes the signal, and out_open() acts on it once the name
 * is known. */
#define PENDING_SLOTS 2
static char pending_tmp[PENDING_SLOTS][PATH_MAX];
static volatile sig_atomic_t pending_set[PENDING_SLOTS], creating, deferred;
static struct sigaction old_actions[3];
static const int cleanup_signals[3] = { SIGINT, SIGTERM, SIGHUP };
static bool guarded;

static void on_signal(int sig)
{
	if (creating) {
		deferred = sig;
		return;
	}
	for (int i = 0; i < PENDING_SLOTS; i++)
		if (pending_set[i])
			unlink(pending_tmp[i]);
	out_pass_signal(sig, cleanup_signals, old_actions, 3);
}

void out_pass_signal(int sig, const int *sigs, const struct sigaction *old, int n)
{
	for (int i = 0; i < n; i++)
		if (sigs[i] == sig && !(old[i].sa_flags & SA_SIGINFO) &&
		    old[i].sa_handler != SIG_DFL && old[i].sa_handler != SIG_IGN) {
			old[i].sa_handler(sig);
			break;
		}
	signal(sig, SIG_DFL);
	raise(sig);
}

void out_catch_signals(const int *sigs, struct sigaction *old, int n, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	/* a signal the process ignores (nohup, a background job's SIGINT,
	 * SIGPIPE for EPIPE) stays ignored */
	for (int i = 0; i < n; i++) {
		sigaction(sigs[i], NULL, &old[i]);
		if (old[i].sa_handler != SIG_IGN || (old[i].sa_flags & SA_SIGINFO))
			sigaction(sigs[i], &sa, NULL);
	}
}

static void guard(void)
{
	if (guarded)
		return;
	out_catch_signals(cleanup_signals, old_actions, 3, on_signal);
	guarded = true;
}

static bool restore_due;

static void restore_handlers(void)
{
	for (int i = 0; i < 3; i++)
		sigaction(cleanup_signals[i], &old_actions[i], NULL);
	guarded = false;
	restore_due = false;
}

/* Forgets o's temporary; the handlers go when no temporary is left. */
static void unguard(struct outfile *o)
{
	if (o->slot >= 0)
		pending_set[o->slot] = 0;
	o->slot = -1;
	for (int i = 0; i < PENDING_SLOTS; i++)
		if (pending_set[i])
			return;
	if (!guarded)
		return;
	if (creating) {
		/* a pair's commit: the handlers hold signals until it is said
		 * how it ended (out_deliver_deferred) */
		restore_due = true;
		return;
	}
	restore_handlers();
}

void out_remove_pending(void)
{
	for (int i = 0; i < PENDING_SLOTS; i++) {
		if (pending_set[i])
			unlink(pending_tmp[i]);
		pending_set[i] = 0;
	}
}

/* Creates the temporary (o->tmp, a mkostemp template) under the guard. */
static int create_tmp(struct outfile *o)
{
	int e, slot = 0;

	while (slot < PENDING_SLOTS && pending_set[slot])
		slot++;
	if (slot == PENDING_SLOTS) {
		errno = EMFILE; /* more outputs at once than the tool writes */
		return -1;
	}
	deferred = 0;
	creating = 1;
	guard();
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	e = errno;
	if (o->fd >= 0) {
		snprintf(pending_tmp[slot], sizeof(pending_tmp[slot]), "%s", o->tmp);
		pending_set[slot] = 1;
		o->slot = slot;
	}
	creating = 0;
	if (deferred)
		on_signal(deferred); /* removes the temporary and ends the process */
	if (o->fd < 0)
		unguard(o);
	errno = e;
	return o->fd;
}

/* ---------------------------------------------------------------- files */

/* The bytes a temporary's name adds to its file's: ".NAME.XXXXXX". */
#define TMP_EXTRA 8

/* A descriptor's name, a device, a pipe: written in place. A descriptor
 * is written through a copy of it, sharing its offset, as the shell's
 * redirection set it: opening /dev/stdout anew would follow its link to
 * the file behind it, and start that file over. */
static int open_direct(struct outfile *o, const char *path, int own_fd, uint64_t size,
		       const struct out_input *inputs, int n, char *err)
{
	struct stat st;

	if (own_fd < 0)
		o->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
	else if ((fcntl(own_fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
		o->fd = -1, errno = EBADF; /* also when it is not open: F_GETFL is then -1 */
	else
		o->fd = fcntl(own_fd, F_DUPFD_CLOEXEC, 0);
	if (o->fd < 0)
		return fail(err, "cannot open '%s' for writing: %s", path, strerror(errno));
	/* What the descriptor is now: a path may have changed since the check. */
	if (!fstat(o->fd, &st))
		for (int i = 0; i < n; i++) {
			struct stat si;

			if (inputs[i].path && !stat(inputs[i].path, &si) && si.st_dev == st.st_dev &&
			    si.st_ino == st.st_ino) {
				close(o->fd);
				o->fd = -1;
				return fail(err, "refusing to write '%s': it is %s '%s' (the same file)",
					    !strcmp(path, "-") ? "standard output" : path, inputs[i].what,
					    inputs[i].path);
			}
		}
	o->direct = true;
	o->size = size;
	/* Written where the descriptor stands (a shell's `>>` or a file
	 * already partly written), and in order when appending: the kernel
	 * ignores pwrite's offset under O_APPEND. */
	off_t at = lseek(o->fd, 0, SEEK_CUR);
	int fl = fcntl(o->fd, F_GETFL);
	o->seekable = at >= 0 && fl >= 0 && !(fl & O_APPEND);
	o->base = at >= 0 ? (uint64_t)at : 0;
	return 0;
}

int out_open(struct outfile *o, const char *path, uint64_t size, const struct out_input *inputs,
	     int n, char *err)
{
	struct stat st;
	const char *slash;
	size_t dirlen, base_len;
	mode_t mode;
	bool exists;
	int own_fd;

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->slot = -1;
	o->path = path;
	if (out_check(path, inputs, n, err))
		return -1;
	own_fd = out_fd(path);
	if (own_fd >= 0 || (stat(path, &st) == 0 && !S_ISREG(st.st_mode)))
		return open_direct(o, path, own_fd, size, inputs, n, err);
	exists = stat(path, &st) == 0;
	if (exists) {
		mode = st.st_mode & 0777;
	} else {
		mode_t mask = umask(0);

		umask(mask);
		mode = 0666 & ~mask;
	}
	o->dest = resolve(path);
	if (!o->dest)
		return fail(err, "out of memory");
	slash = strrchr(o->dest, '/');
	dirlen = slash ? (size_t)(slash - o->dest) + 1 : 0;
	if (!o->dest[dirlen]) {
		out_abort(o);
		return fail(err, "cannot open '%s' for writing: not a file name", path);
	}
	/* ".NAME.XXXXXX" must fit in a file name too: of a long NAME only the
	 * start is kept, the random part still telling temporaries apart. */
	base_len = strlen(o->dest + dirlen);
	if (base_len > NAME_MAX - TMP_EXTRA)
		base_len = NAME_MAX - TMP_EXTRA;
	if (asprintf(&o->tmp, "%.*s.%.*s.XXXXXX", (int)dirlen, o->dest, (int)base_len,
		     o->dest + dirlen) < 0) {
		o->tmp = NULL;
		out_abort(o);
		return fail(err, "out of memory");
	}
	if (create_tmp(o) < 0) {
		int e = errno;

		free(o->tmp);
		o->tmp = NULL;
		out_abort(o);
		if (exists)
			return fail(err, "cannot write '%s': a new file cannot be created beside it, in "
					 "its directory: %s",
				    path, strerror(e));
		return fail(err, "cannot open '%s' for writing: %s", path, strerror(e));
	}
	o->seekable = true;
	if (fchmod(o->fd, mode)) {
		int e = errno;

		out_abort(o);
		return fail(err, "cannot set the permissions of '%s': %s", path, strerror(e));
	}
	/* Reserve the space now: a full disk fails here, not hours later. File
	 * systems without fallocate are simply written. */
	if (size && fallocate(o->fd, 0, 0, (off_t)size) && errno != EOPNOTSUPP && errno != ENOSYS) {
		int e = errno;
		char b[32];

		out_abort(o);
		return fail(err, "cannot reserve %s for '%s': %s", pm__fmt_bytes(b, sizeof(b), (double)size),
			    path, strerror(e));
	}
	return 0;
}

int out_pwrite(struct outfile *o, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	if (!o->seekable && off != o->pos)
		return -ESPIPE;
	while (len) {
		ssize_t w = o->seekable ? pwrite(o->fd, p, len, (off_t)(o->base + off)) : write(o->fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	if (!o->seekable)
		o->pos = off; /* one writer only, then */
	return 0;
}

int out_close(struct outfile *o, char *err)
{
	int fd = o->fd;

	if (fd < 0)
		return 0;
	o->fd = -1;
	/* pwrite leaves the shared offset alone: move it past what was
	 * written, so that what the shell writes next follows it. */
	if (o->direct && o->seekable)
		lseek(fd, (off_t)(o->base + o->size), SEEK_SET);
	if (close(fd)) {
		int e = errno;

		out_abort(o);
		return fail(err, "cannot write '%s': %s", o->path, strerror(e));
	}
	return 0;
}

/* Forgets a committed output's names. */
static void committed(struct outfile *o)
{
	unguard(o);
	free(o->tmp);
	o->tmp = NULL;
	free(o->dest);
	o->dest = NULL;
}

int out_commit(struct outfile *o, char *err)
{
	if (out_close(o, err))
		return -1;
	if (o->direct)
		return 0;
	if (rename(o->tmp, o->dest)) {
		int e = errno;

		out_abort(o);
		return fail(err, "cannot rename the finished file onto '%s': %s", o->path, strerror(e));
	}
	committed(o);
	return 0;
}

int out_commit_pair(struct outfile *a, struct outfile *b, char *err)
{
	enum { REPLACED, CREATED, PLAIN } how;
	int e;

	if (out_close(a, err)) {
		out_abort(b);
		return -1;
	}
	if (out_close(b, err)) {
		out_abort(a);
		return -1;
	}
	/* a direct output is written already: only the other can fail */
	if (a->direct || b->direct) {
		if (out_commit(a->direct ? b : a, err))
			return -1;
		return out_commit(a->direct ? a : b, err);
	}
	/* Signals wait (as while a temporary is created) until both files are
	 * in place or neither is. The old a is swapped with its temporary, so
	 * it can come back until b has been renamed. */
	deferred = 0;
	creating = 1;
	if (renameat2(AT_FDCWD, a->tmp, AT_FDCWD, a->dest, RENAME_EXCHANGE) == 0)
		how = REPLACED;
	else if (errno == ENOENT && renameat2(AT_FDCWD, a->tmp, AT_FDCWD, a->dest, RENAME_NOREPLACE) == 0)
		how = CREATED;
	else if ((errno == EINVAL || errno == ENOSYS) && rename(a->tmp, a->dest) == 0)
		how = PLAIN; /* a file system without the exchange: as out_commit() */
	else
		goto fail_a;
	if (rename(b->tmp, b->dest)) {
		e = errno;
		if (how == REPLACED &&
		    renameat2(AT_FDCWD, a->tmp, AT_FDCWD, a->dest, RENAME_EXCHANGE)) {
			/* the old a cannot come back: it is kept, under the
			 * temporary's name, which the message gives */
			fail(err, "cannot rename the finished file onto '%s': %s; '%s' is new, its "
				  "old file is now '%s'", b->path, strerror(e), a->path, a->tmp);
			committed(a);
			out_abort(b);
			goto out;
		}
		if (how == CREATED)
			unlink(a->dest);
		out_abort(a);
		out_abort(b);
		fail(err, "cannot rename the finished file onto '%s': %s%s", b->path, strerror(e),
		     how == PLAIN ? "" : " (both old files kept)");
		goto out;
	}
	if (how == REPLACED)
		unlink(a->tmp); /* the old a */
	committed(a);
	committed(b);
	e = 0;
	goto out;
fail_a:
	e = errno;
	out_abort(a);
	out_abort(b);
	fail(err, "cannot rename the finished file onto '%s': %s", a->path, strerror(e));
out:
	/* after a failure signals keep waiting until the caller has said
	 * why (out_deliver_deferred) */
	if (!e)
		out_deliver_deferred();
	return e ? -1 : 0;
}

void out_deliver_deferred(void)
{
	creating = 0;
	if (deferred)
		on_signal(deferred);
	if (restore_due)
		restore_handlers();
}

void out_abort(struct outfile *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp) {
		unlink(o->tmp);
		unguard(o);
		free(o->tmp);
		o->tmp = NULL;
	}
	free(o->dest);
	o->dest = NULL;
}
