/* shim.c: libpatchmap-preload.so. Interposes the C library's file calls so
 * that an unmodified program that opens a .patchmap descriptor sees a
 * read-only file whose bytes are the patch matrix (or a .npy image of it):
 * read from pm_matrix_read, mapped from a lazy region. Every other file goes
 * straight to the C library after a check of the name or of the fd table.
 *
 * An open descriptor is a real kernel fd on the descriptor's own text file,
 * so fd numbers, close-on-exec, dup and fork behave as the kernel says. The
 * kernel's file offset of that fd *is* the virtual file's offset (a regular
 * file may be positioned past its end): dup'd fds, forked children and exec'd
 * programs share it exactly as they would a real file's. */
/* The build's 64-bit offsets would rename open to open64 here: this file
 * defines each entry point under its own name. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vfile.h"

#define EXPORT __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The kernel's largest single read (MAX_RW_COUNT). */
#define MAX_RW ((size_t)0x7ffff000)

/* Declarations glibc's headers leave out or hide behind fortification. */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
ssize_t __read_chk(int, void *, size_t, size_t);
ssize_t __pread_chk(int, void *, size_t, off_t, size_t);
ssize_t __pread64_chk(int, void *, size_t, off64_t, size_t);
void __chk_fail(void) __attribute__((noreturn));
int __xstat(int, const char *, struct stat *);
int __xstat64(int, const char *, struct stat64 *);
int __lxstat(int, const char *, struct stat *);
int __lxstat64(int, const char *, struct stat64 *);
int __fxstat(int, int, struct stat *);
int __fxstat64(int, int, struct stat64 *);
int __fxstatat(int, int, const char *, struct stat *, int);
int __fxstatat64(int, int, const char *, struct stat64 *, int);

/* ---------------------------------------------------------------- libc */

static struct {
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*open_2)(const char *, int);
	int (*open64_2)(const char *, int);
	int (*openat_2)(int, const char *, int);
	int (*openat64_2)(int, const char *, int);
	int (*creat)(const char *, mode_t);
	int (*creat64)(const char *, mode_t);
	FILE *(*fopen)(const char *, const char *);
	FILE *(*fopen64)(const char *, const char *);
	FILE *(*fdopen)(int, const char *);
	int (*stat)(const char *, struct stat *);
	int (*stat64)(const char *, struct stat64 *);
	int (*lstat)(const char *, struct stat *);
	int (*lstat64)(const char *, struct stat64 *);
	int (*fstat)(int, struct stat *);
	int (*fstat64)(int, struct stat64 *);
	int (*fstatat)(int, const char *, struct stat *, int);
	int (*fstatat64)(int, const char *, struct stat64 *, int);
	int (*statx)(int, const char *, int, unsigned, struct statx *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	ssize_t (*pread64)(int, void *, size_t, off64_t);
	ssize_t (*pread_chk)(int, void *, size_t, off_t, size_t);
	ssize_t (*pread64_chk)(int, void *, size_t, off64_t, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*preadv)(int, const struct iovec *, int, off_t);
	ssize_t (*preadv64)(int, const struct iovec *, int, off64_t);
	ssize_t (*preadv2)(int, const struct iovec *, int, off_t, int);
	ssize_t (*preadv64v2)(int, const struct iovec *, int, off64_t, int);
	off_t (*lseek)(int, off_t, int);
	off64_t (*lseek64)(int, off64_t, int);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	void *(*mmap64)(void *, size_t, int, int, int, off64_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*close)(int);
	int (*close_range)(unsigned, unsigned, int);
	void (*closefrom)(int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	ssize_t (*copy_file_range)(int, off64_t *, int, off64_t *, size_t, unsigned);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off64_t *, size_t);
	ssize_t (*splice)(int, off64_t *, int, off64_t *, size_t, unsigned);
} real;

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
#define R(field, name) real.field = (__typeof__(real.field))dlsym(RTLD_NEXT, name)
	R(open, "open");
	R(open64, "open64");
	R(openat, "openat");
	R(openat64, "openat64");
	R(open_2, "__open_2");
	R(open64_2, "__open64_2");
	R(openat_2, "__openat_2");
	R(openat64_2, "__openat64_2");
	R(creat, "creat");
	R(creat64, "creat64");
	R(fopen, "fopen");
	R(fopen64, "fopen64");
	R(fdopen, "fdopen");
	R(stat, "stat");
	R(stat64, "stat64");
	R(lstat, "lstat");
	R(lstat64, "lstat64");
	R(fstat, "fstat");
	R(fstat64, "fstat64");
	R(fstatat, "fstatat");
	R(fstatat64, "fstatat64");
	R(statx, "statx");
	R(read, "read");
	R(read_chk, "__read_chk");
	R(pread, "pread");
	R(pread64, "pread64");
	R(pread_chk, "__pread_chk");
	R(pread64_chk, "__pread64_chk");
	R(readv, "readv");
	R(preadv, "preadv");
	R(preadv64, "preadv64");
	R(preadv2, "preadv2");
	R(preadv64v2, "preadv64v2");
	R(lseek, "lseek");
	R(lseek64, "lseek64");
	R(mmap, "mmap");
	R(mmap64, "mmap64");
	R(munmap, "munmap");
	R(mremap, "mremap");
	R(close, "close");
	R(close_range, "close_range");
	R(closefrom, "closefrom");
	R(dup, "dup");
	R(dup2, "dup2");
	R(dup3, "dup3");
	R(fcntl, "fcntl");
	R(fcntl64, "fcntl64");
	R(ioctl, "ioctl");
	R(copy_file_range, "copy_file_range");
	R(sendfile, "sendfile");
	R(sendfile64, "sendfile64");
	R(splice, "splice");
#undef R
}

/* The C library's function, resolved once; a missing one fails with
 * ENOSYS (a libc older than the call). */
#define REAL(name) (UNLIKELY(!real.name) ? pthread_once(&resolve_once, resolve) : 0, real.name)
#define MISSING(name, fail) \
	do { \
		if (UNLIKELY(!REAL(name))) { \
			errno = ENOSYS; \
			return fail; \
		} \
	} while (0)

/* ---------------------------------------------------------------- state */

/* One lock for the fd table's changes, the views and the message memory.
 * Never held across a call into the library or a blocking system call:
 * the library's own memory calls come back through munmap() here. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* This process, to tell a vfork()ed child (which shares our memory and
 * must not change our tables) from ourselves. */
static atomic_int self_pid;

/* The fd table: fd -> vfile, in pages allocated on first use. Readers load
 * without the lock; an entry is cleared before its fd is closed, so a
 * number the kernel hands out again is never seen as virtual. */
#define FD_PAGE_BITS 10
#define FD_PAGE (1 << FD_PAGE_BITS)
#define FD_PAGES 1024
#define FD_MAX (FD_PAGE * FD_PAGES)
typedef _Atomic(struct vfile *) slot_t;
static _Atomic(slot_t *) fd_pages[FD_PAGES];

static inline struct vfile *peek(int fd)
{
	slot_t *p;

	if ((unsigned)fd >= FD_MAX)
		return NULL;
	p = atomic_load_explicit(&fd_pages[(unsigned)fd >> FD_PAGE_BITS], memory_order_acquire);
	return p ? atomic_load_explicit(&p[fd & (FD_PAGE - 1)], memory_order_acquire) : NULL;
}

/* The vfile of fd with a reference, or NULL. */
static struct vfile *get(int fd)
{
	struct vfile *vf;

	if (!peek(fd))
		return NULL;
	pthread_mutex_lock(&lock);
	vf = peek(fd);
	if (vf)
		vf_get(vf);
	pthread_mutex_unlock(&lock);
	return vf;
}

static bool own_memory(void)
{
	return getpid() == atomic_load_explicit(&self_pid, memory_order_relaxed);
}

/* Sets fd's entry (taking over a reference of vf, or clearing it with
 * NULL); returns the entry it replaced, for the caller to vf_put() once
 * the lock is released. Caller holds the lock. */
static struct vfile *set_locked(int fd, struct vfile *vf)
{
	unsigned page = (unsigned)fd >> FD_PAGE_BITS;
	slot_t *p;

	if ((unsigned)fd >= FD_MAX)
		return vf; /* never stored: handed back to be dropped */
	p = atomic_load_explicit(&fd_pages[page], memory_order_relaxed);
	if (!p) {
		if (!vf)
			return NULL;
		p = calloc(FD_PAGE, sizeof(*p));
		if (!p)
			return vf;
		atomic_store_explicit(&fd_pages[page], p, memory_order_release);
	}
	return atomic_exchange_explicit(&p[fd & (FD_PAGE - 1)], vf, memory_order_acq_rel);
}

static struct vfile *set(int fd, struct vfile *vf)
{
	struct vfile *old;

	pthread_mutex_lock(&lock);
	old = set_locked(fd, vf);
	pthread_mutex_unlock(&lock);
	return old;
}

/* Forgets fd (after a close the kernel did without us, or before ours). */
static void forget(int fd)
{
	if (peek(fd))
		vf_put(set(fd, NULL));
}

/* Drops a reference keeping errno: vf_put may call into the library. */
static void put_keep_errno(struct vfile *vf)
{
	int e = errno;

	vf_put(vf);
	errno = e;
}

/* ---------------------------------------------------------------- messages */

/* Writes "libpatchmap-preload: MSG" on one line of stderr, once per
 * message: a program that stats a bad descriptor and then opens it learns
 * why once. */
static void report(const char *msg)
{
	static uint64_t seen[16];
	static unsigned next;
	char line[VF_ERRLEN + 32];
	uint64_t h = 1469598103934665603u;
	bool dup = false;
	int n;

	for (const char *c = msg; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211u;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < 16; i++)
		dup |= seen[i] == h;
	if (!dup)
		seen[next++ % 16] = h;
	pthread_mutex_unlock(&lock);
	if (dup)
		return;
	n = snprintf(line, sizeof(line), "libpatchmap-preload: %s\n", msg);
	if (n > (int)sizeof(line) - 1) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	for (int off = 0; off < n;) {
		ssize_t w = write(2, line + off, (size_t)(n - off));
		if (w <= 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (int)w;
	}
}

/* ---------------------------------------------------------------- names */

static inline bool desc_name(const char *path)
{
	size_t n = strlen(path);

	return n >= 9 && !memcmp(path + n - 9, ".patchmap", 9);
}

/* "/dev/fd/N", "/proc/self/fd/N", "/dev/stdin" naming a virtual fd: N, or -1. */
static int proc_fd(const char *path)
{
	const char *p = NULL;
	long fd = 0;

	if (!strncmp(path, "/dev/fd/", 8))
		p = path + 8;
	else if (!strncmp(path, "/proc/self/fd/", 14))
		p = path + 14;
	else if (!strcmp(path, "/dev/stdin"))
		return peek(0) ? 0 : -1;
	if (!p || !*p)
		return -1;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || fd > FD_MAX)
			return -1;
		fd = fd * 10 + (*p - '0');
	}
	return peek((int)fd) ? (int)fd : -1;
}

/* The C library declares paths nonnull, but a program may still pass NULL
 * (and get EFAULT): keep the compiler from assuming otherwise. */
static inline const char *launder(const char *p)
{
	__asm__("" : "+r"(p));
	return p;
}

/* Set while this thread loads a descriptor. What the loader opens and
 * stats (source, rows, mask, and what libvips reads) is then a plain file,
 * even named like a descriptor or reached through /dev/stdin while stdin
 * is one: a descriptor that leads back to itself is refused by vf_load,
 * and must never be loaded from within its own loading, without end. Per
 * thread: another thread opening a descriptor meanwhile gets its virtual
 * file. */
static _Thread_local unsigned loading;

static inline bool interesting(const char *path)
{
	path = launder(path);
	if (!path)
		return false;
	if (desc_name(path))
		return !loading;
	return path[0] == '/' && (path[1] == 'd' || path[1] == 'p') && proc_fd(path) >= 0 && !loading;
}

/* vf_load with this thread marked as loading (see `loading`). */
static struct vfile *load(int fd, const char *name, bool open_matrix, char *msg)
{
	struct vfile *vf;

	loading++;
	vf = vf_load(fd, name, open_matrix, msg);
	loading--;
	return vf;
}

/* The name to give in messages: as the program wrote it, or resolved when
 * relative to a directory fd. */
static const char *msg_name(int dirfd, const char *path, char *buf, size_t cap)
{
	char proc[64];
	ssize_t n;

	if (dirfd == AT_FDCWD || path[0] == '/')
		return path;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
	n = readlink(proc, buf, cap - 1);
	if (n <= 0 || (size_t)n + strlen(path) + 2 > cap)
		return path;
	buf[n] = 0;
	strcat(buf, "/");
	strcat(buf, path);
	return buf;
}

/* ---------------------------------------------------------------- open */

static bool write_mode(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Opens path for a program: the descriptor's virtual file, or whatever the
 * real call gives for anything else. */
static int open_virtual(int dirfd, const char *path, int flags, mode_t mode)
{
	char namebuf[PATH_MAX + 64], msg[VF_ERRLEN];
	struct vfile *vf;
	struct stat st;
	int fd, pfd, e;

	MISSING(openat, -1);
	if (flags & (O_PATH | O_DIRECTORY))
		return real.openat(dirfd, path, flags, mode);
	pfd = proc_fd(path);
	if (write_mode(flags)) {
		/* An existing descriptor is a read-only file; creating one is
		 * not this shim's business. */
		if (pfd >= 0 || (REAL(fstatat)(dirfd, path, &st, 0) == 0 && S_ISREG(st.st_mode))) {
			errno = EACCES;
			return -1;
		}
		return real.openat(dirfd, path, flags, mode);
	}
	fd = real.openat(dirfd, path, flags, mode);
	if (fd < 0)
		return fd;
	forget(fd);
	if (pfd >= 0) {
		/* A new open file description of the same virtual file. */
		vf = get(pfd);
		if (vf)
			vf_put(set(fd, vf));
		return fd;
	}
	if (REAL(fstat)(fd, &st) || !S_ISREG(st.st_mode))
		return fd;
	vf = load(fd, msg_name(dirfd, path, namebuf, sizeof(namebuf)), true, msg);
	if (!vf) {
		e = errno;
		if (msg[0])
			report(msg);
		REAL(close)(fd);
		errno = e;
		return -1;
	}
	if ((unsigned)fd >= FD_MAX) {
		vf_put(vf);
		REAL(close)(fd);
		errno = EMFILE;
		return -1;
	}
	vf_put(set(fd, vf));
	return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

/* A pass-through open may get back the number of an fd closed behind our
 * back (by a raw system call): forget what the table said of it. */
static int fresh(int fd)
{
	if (fd >= 0 && UNLIKELY(peek(fd) != NULL))
		forget(fd);
	return fd;
}

#define OPEN_BODY(field, dirfd, ...) \
	va_list ap; \
	mode_t mode; \
	va_start(ap, flags); \
	mode = open_mode(flags, ap); \
	va_end(ap); \
	if (UNLIKELY(interesting(path))) \
		return open_virtual(dirfd, path, flags, mode); \
	MISSING(field, -1); \
	return fresh(real.field(__VA_ARGS__))

EXPORT int open(const char *path, int flags, ...)
{
	OPEN_BODY(open, AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	OPEN_BODY(open64, AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_BODY(openat, dirfd, dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_BODY(openat64, dirfd, dirfd, path, flags, mode);
}

/* The fortified entry points refuse O_CREAT without a mode: leave that to
 * the C library. */
#define OPEN2_BODY(realcall, dirfd, ...) \
	if (UNLIKELY(interesting(path)) && !(flags & O_CREAT)) \
		return open_virtual(dirfd, path, flags, 0); \
	MISSING(realcall, -1); \
	return fresh(real.realcall(__VA_ARGS__))

EXPORT int __open_2(const char *path, int flags)
{
	OPEN2_BODY(open_2, AT_FDCWD, path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	OPEN2_BODY(open64_2, AT_FDCWD, path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	OPEN2_BODY(openat_2, dirfd, dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	OPEN2_BODY(openat64_2, dirfd, dirfd, path, flags);
}

EXPORT int creat(const char *path, mode_t mode)
{
	if (UNLIKELY(interesting(path)))
		return open_virtual(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	MISSING(creat, -1);
	return fresh(real.creat(path, mode));
}

EXPORT int creat64(const char *path, mode_t mode)
{
	if (UNLIKELY(interesting(path)))
		return open_virtual(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	MISSING(creat64, -1);
	return fresh(real.creat64(path, mode));
}

/* ---------------------------------------------------------------- reading */

/* Claims up to n bytes at fd's offset: the kernel's offset moves atomically
 * by n (SEEK_CUR on a regular file holds the file's lock), then gives back
 * what lies past the end, so concurrent readers of one fd get disjoint
 * ranges and the offset ends where a real read would leave it. */
static ssize_t claim(int fd, const struct vfile *vf, size_t n, uint64_t *start)
{
	off_t end, cur;
	size_t got;

	if (n > MAX_RW)
		n = MAX_RW;
	end = REAL(lseek)(fd, (off_t)n, SEEK_CUR);
	if (end >= 0) {
		*start = (uint64_t)end - n;
		got = *start >= vf->size ? 0 : vf->size - *start < n ? (size_t)(vf->size - *start) : n;
		if (got < n)
			real.lseek(fd, -(off_t)(n - got), SEEK_CUR);
		return (ssize_t)got;
	}
	if (errno != EINVAL)
		return -1;
	/* Past what the file system lets an offset reach: one reader. */
	cur = real.lseek(fd, 0, SEEK_CUR);
	if (cur < 0)
		return -1;
	*start = (uint64_t)cur;
	got = *start >= vf->size ? 0 : vf->size - *start < n ? (size_t)(vf->size - *start) : n;
	if (got && real.lseek(fd, cur + (off_t)got, SEEK_SET) < 0) {
		/* The read ends past the limit too: a short read up to it (found
		 * by bisection; lo is reachable, hi is not), EOVERFLOW at it. */
		size_t lo = 0, hi = got;

		if (errno != EINVAL)
			return -1;
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;

			if (real.lseek(fd, cur + (off_t)mid, SEEK_SET) >= 0)
				lo = mid;
			else
				hi = mid;
		}
		if (real.lseek(fd, cur + (off_t)lo, SEEK_SET) < 0)
			return -1;
		if (!lo) {
			errno = EOVERFLOW;
			return -1;
		}
		got = lo;
	}
	return (ssize_t)got;
}

/* Gives back a claim that could not be read. */
static void unclaim(int fd, size_t n)
{
	if (n)
		real.lseek(fd, -(off_t)n, SEEK_CUR);
}

static ssize_t copy_out(struct vfile *vf, uint64_t off, void *buf, size_t n)
{
	int err = n ? vf_read(vf, off, buf, n) : 0;

	if (err) {
		errno = -err;
		return -1;
	}
	return (ssize_t)n;
}

static ssize_t scatter(struct vfile *vf, uint64_t off, const struct iovec *iov, int cnt, size_t n)
{
	size_t done = 0;

	for (int i = 0; i < cnt && done < n; i++) {
		size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;

		if (k && copy_out(vf, off + done, iov[i].iov_base, k) < 0)
			return -1;
		done += k;
	}
	return (ssize_t)done;
}

/* The bytes an iovec array asks for, as the kernel checks them. */
static ssize_t iov_total(const struct iovec *iov, int cnt)
{
	size_t total = 0;

	if (cnt < 0 || cnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < cnt; i++)
		if (__builtin_add_overflow(total, iov[i].iov_len, &total) || total > SSIZE_MAX) {
			errno = EINVAL;
			return -1;
		}
	return (ssize_t)(total > MAX_RW ? MAX_RW : total);
}

static ssize_t v_read(int fd, void *buf, size_t n, struct vfile *vf)
{
	uint64_t start;
	ssize_t got, r;

	if (!n)
		return 0;
	got = claim(fd, vf, n, &start);
	if (got <= 0)
		return got;
	r = copy_out(vf, start, buf, (size_t)got);
	if (r < 0)
		unclaim(fd, (size_t)got);
	return r;
}

static ssize_t v_pread(void *buf, size_t n, off_t off, struct vfile *vf)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	if (n > MAX_RW)
		n = MAX_RW;
	if ((uint64_t)off >= vf->size)
		return 0;
	if (vf->size - (uint64_t)off < n)
		n = (size_t)(vf->size - (uint64_t)off);
	return copy_out(vf, (uint64_t)off, buf, n);
}

static ssize_t v_readv(int fd, const struct iovec *iov, int cnt, off_t off, bool at_offset,
		       struct vfile *vf)
{
	ssize_t total = iov_total(iov, cnt), got, r;
	uint64_t start;

	if (total <= 0)
		return total;
	if (at_offset) {
		if (off < 0) {
			errno = EINVAL;
			return -1;
		}
		start = (uint64_t)off;
		got = start >= vf->size ? 0 : vf->size - start < (uint64_t)total ? (ssize_t)(vf->size - start) : total;
		return got ? scatter(vf, start, iov, cnt, (size_t)got) : 0;
	}
	got = claim(fd, vf, (size_t)total, &start);
	if (got <= 0)
		return got;
	r = scatter(vf, start, iov, cnt, (size_t)got);
	if (r < 0)
		unclaim(fd, (size_t)got);
	return r;
}

/* Runs `expr` with vf holding fd's vfile and a reference to it, or falls
 * through to `fallback` when fd is not (or no longer) virtual. */
#define WITH_VF(fd, expr, fallback) \
	do { \
		if (UNLIKELY(peek(fd) != NULL)) { \
			struct vfile *vf = get(fd); \
			if (vf) { \
				__typeof__(expr) ret_ = (expr); \
				put_keep_errno(vf); \
				return ret_; \
			} \
		} \
		return fallback; \
	} while (0)

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	WITH_VF(fd, v_read(fd, buf, n, vf), REAL(read)(fd, buf, n));
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (UNLIKELY(peek(fd) != NULL) && n > buflen)
		__chk_fail();
	WITH_VF(fd, v_read(fd, buf, n, vf), REAL(read_chk)(fd, buf, n, buflen));
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	WITH_VF(fd, v_pread(buf, n, off, vf), REAL(pread)(fd, buf, n, off));
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	WITH_VF(fd, v_pread(buf, n, off, vf), REAL(pread64)(fd, buf, n, off));
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
	if (UNLIKELY(peek(fd) != NULL) && n > buflen)
		__chk_fail();
	WITH_VF(fd, v_pread(buf, n, off, vf), REAL(pread_chk)(fd, buf, n, off, buflen));
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off64_t off, size_t buflen)
{
	if (UNLIKELY(peek(fd) != NULL) && n > buflen)
		__chk_fail();
	WITH_VF(fd, v_pread(buf, n, off, vf), REAL(pread64_chk)(fd, buf, n, off, buflen));
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	WITH_VF(fd, v_readv(fd, iov, cnt, 0, false, vf), REAL(readv)(fd, iov, cnt));
}

EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	WITH_VF(fd, v_readv(fd, iov, cnt, off, true, vf), REAL(preadv)(fd, iov, cnt, off));
}

EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	WITH_VF(fd, v_readv(fd, iov, cnt, off, true, vf), REAL(preadv64)(fd, iov, cnt, off));
}

/* preadv2's flags only hint (RWF_HIPRI, RWF_NOWAIT, ...): the bytes are the
 * same. Offset -1 reads at the file offset. */
EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	WITH_VF(fd, v_readv(fd, iov, cnt, off, off != -1, vf), REAL(preadv2)(fd, iov, cnt, off, flags));
}

EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
	WITH_VF(fd, v_readv(fd, iov, cnt, off, off != -1, vf),
		REAL(preadv64v2)(fd, iov, cnt, off, flags));
}

static off_t v_lseek(int fd, off_t off, int whence, struct vfile *vf)
{
	off_t to;

	switch (whence) {
	case SEEK_SET:
	case SEEK_CUR:
		return REAL(lseek)(fd, off, whence);
	case SEEK_END:
		if (__builtin_add_overflow((off_t)vf->size, off, &to) || to < 0) {
			errno = EINVAL;
			return -1;
		}
		return REAL(lseek)(fd, to, SEEK_SET);
	case SEEK_DATA:
	case SEEK_HOLE:
		/* no holes: data from 0 to the end */
		if (off < 0 || (uint64_t)off >= vf->size) {
			errno = ENXIO;
			return -1;
		}
		return REAL(lseek)(fd, whence == SEEK_DATA ? off : (off_t)vf->size, SEEK_SET);
	}
	errno = EINVAL;
	return -1;
}

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	WITH_VF(fd, v_lseek(fd, off, whence, vf), REAL(lseek)(fd, off, whence));
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	WITH_VF(fd, v_lseek(fd, off, whence, vf), REAL(lseek64)(fd, off, whence));
}

/* ---------------------------------------------------------------- stdio */

/* A FILE over a virtual fd: glibc's own FILE would read the descriptor's
 * text through its internal read, which no interposer sees. */
static ssize_t ck_read(void *c, char *buf, size_t n)
{
	return read((int)(intptr_t)c, buf, n);
}

static int ck_seek(void *c, off64_t *pos, int whence)
{
	off_t r = lseek((int)(intptr_t)c, *pos, whence);

	if (r < 0)
		return -1;
	*pos = r;
	return 0;
}

static int ck_close(void *c)
{
	return close((int)(intptr_t)c);
}

static FILE *cookie_file(int fd)
{
	static const cookie_io_functions_t io = { .read = ck_read, .seek = ck_seek, .close = ck_close };
	FILE *f = fopencookie((void *)(intptr_t)fd, "r", io);

	/* fileno() gives the fd (glibc marks cookie streams -2): programs
	 * fstat or mmap it. Reads, seeks and close still go through io. */
	if (f)
		f->_fileno = fd;
	return f;
}

/* fopen's mode as open flags; *reading: "r" without '+'. */
static int mode_flags(const char *mode, bool *reading)
{
	int flags = 0;

	*reading = mode[0] == 'r' && !strchr(mode, '+');
	for (const char *m = mode + 1; *m && *m != ','; m++)
		if (*m == 'e')
			flags |= O_CLOEXEC;
	return flags;
}

static FILE *fopen_virtual(const char *path, const char *mode, FILE *(*fallback)(const char *, const char *))
{
	struct stat st;
	bool reading;
	int flags = mode_flags(mode, &reading), fd;
	FILE *f;

	if (!reading) {
		if (proc_fd(path) >= 0 || (REAL(stat)(path, &st) == 0 && S_ISREG(st.st_mode))) {
			errno = EACCES;
			return NULL;
		}
		return fallback(path, mode);
	}
	fd = open_virtual(AT_FDCWD, path, O_RDONLY | flags, 0);
	if (fd < 0)
		return NULL;
	if (!peek(fd)) {
		/* not a regular file: the C library's own stream */
		REAL(close)(fd);
		return fallback(path, mode);
	}
	f = cookie_file(fd);
	if (!f) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	MISSING(fopen, NULL);
	if (UNLIKELY(interesting(path)) && mode)
		return fopen_virtual(path, mode, real.fopen);
	return real.fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	MISSING(fopen64, NULL);
	if (UNLIKELY(interesting(path)) && mode)
		return fopen_virtual(path, mode, real.fopen64);
	return real.fopen64(path, mode);
}

EXPORT FILE *fdopen(int fd, const char *mode)
{
	bool reading;

	MISSING(fdopen, NULL);
	if (UNLIKELY(peek(fd) != NULL) && mode) {
		mode_flags(mode, &reading);
		if (!reading) {
			errno = EINVAL; /* as for a read-only fd */
			return NULL;
		}
		return cookie_file(fd);
	}
	return real.fdopen(fd, mode);
}

/* ---------------------------------------------------------------- stat */

/* The vfile of the descriptor at path (for stat), or NULL with errno set
 * (EINVAL after reporting what is wrong with it). */
static struct vfile *load_path(int dirfd, const char *path, bool nofollow)
{
	char namebuf[PATH_MAX + 64], msg[VF_ERRLEN];
	struct vfile *vf;
	int fd, e, pfd = proc_fd(path);

	if (pfd >= 0 && (vf = get(pfd)))
		return vf;
	fd = REAL(openat)(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
	if (fd < 0)
		return NULL;
	vf = load(fd, msg_name(dirfd, path, namebuf, sizeof(namebuf)), false, msg);
	e = errno;
	REAL(close)(fd);
	if (!vf && msg[0])
		report(msg);
	errno = e;
	return vf;
}

static int patch_path(int dirfd, const char *path, bool nofollow, struct stat *st)
{
	struct vfile *vf;

	if (!S_ISREG(st->st_mode))
		return 0;
	vf = load_path(dirfd, path, nofollow);
	if (!vf)
		return -1;
	vf_patch_stat(vf, st);
	put_keep_errno(vf);
	return 0;
}

static int v_fstat(int fd, struct stat *st, struct vfile *vf)
{
	int r = REAL(fstat)(fd, st);

	if (!r)
		vf_patch_stat(vf, st);
	return r;
}

EXPORT int fstat(int fd, struct stat *st)
{
	WITH_VF(fd, v_fstat(fd, st, vf), REAL(fstat)(fd, st));
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	WITH_VF(fd, v_fstat(fd, (struct stat *)st, vf), REAL(fstat64)(fd, st));
}

/* stat, lstat and fstatat through fstatat's rules. */
static int stat_common(int dirfd, const char *path, struct stat *st, int flags)
{
	int r;

	if (launder(path) && !path[0] && (flags & AT_EMPTY_PATH)) {
		if (peek(dirfd))
			return fstat(dirfd, st);
		return REAL(fstatat)(dirfd, path, st, flags);
	}
	r = REAL(fstatat)(dirfd, path, st, flags);
	if (r || !interesting(path))
		return r;
	return patch_path(dirfd, path, flags & AT_SYMLINK_NOFOLLOW, st);
}

EXPORT int stat(const char *path, struct stat *st)
{
	if (UNLIKELY(interesting(path)))
		return stat_common(AT_FDCWD, path, st, 0);
	MISSING(stat, -1);
	return real.stat(path, st);
}

EXPORT int stat64(const char *path, struct stat64 *st)
{
	if (UNLIKELY(interesting(path)))
		return stat_common(AT_FDCWD, path, (struct stat *)st, 0);
	MISSING(stat64, -1);
	return real.stat64(path, st);
}

EXPORT int lstat(const char *path, struct stat *st)
{
	if (UNLIKELY(interesting(path)))
		return stat_common(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
	MISSING(lstat, -1);
	return real.lstat(path, st);
}

EXPORT int lstat64(const char *path, struct stat64 *st)
{
	if (UNLIKELY(interesting(path)))
		return stat_common(AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
	MISSING(lstat64, -1);
	return real.lstat64(path, st);
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	if (UNLIKELY(interesting(path) || (launder(path) && !path[0] && peek(dirfd))))
		return stat_common(dirfd, path, st, flags);
	MISSING(fstatat, -1);
	return real.fstatat(dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	if (UNLIKELY(interesting(path) || (launder(path) && !path[0] && peek(dirfd))))
		return stat_common(dirfd, path, (struct stat *)st, flags);
	MISSING(fstatat64, -1);
	return real.fstatat64(dirfd, path, st, flags);
}

/* The pre-2.33 entry points of old binaries (x86-64's stat version 1 is
 * today's struct stat). */
#define XSTAT_VER 1
#define XSTAT_CHECK(ver) \
	if ((ver) != XSTAT_VER) { \
		errno = EINVAL; \
		return -1; \
	}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	XSTAT_CHECK(ver);
	return stat(path, st);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	XSTAT_CHECK(ver);
	return stat64(path, st);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	XSTAT_CHECK(ver);
	return lstat(path, st);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	XSTAT_CHECK(ver);
	return lstat64(path, st);
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	XSTAT_CHECK(ver);
	return fstat(fd, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	XSTAT_CHECK(ver);
	return fstat64(fd, st);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	XSTAT_CHECK(ver);
	return fstatat(dirfd, path, st, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	XSTAT_CHECK(ver);
	return fstatat64(dirfd, path, st, flags);
}

static void patch_statx(const struct vfile *vf, struct statx *sx)
{
	struct stat st = { .st_mode = sx->stx_mode,
			   .st_mtim = { .tv_sec = sx->stx_mtime.tv_sec,
					.tv_nsec = sx->stx_mtime.tv_nsec } };

	vf_patch_stat(vf, &st);
	sx->stx_size = (uint64_t)st.st_size;
	sx->stx_blocks = (uint64_t)st.st_blocks;
	sx->stx_mode = (uint16_t)st.st_mode;
	sx->stx_blksize = (uint32_t)st.st_blksize;
	sx->stx_mtime.tv_sec = st.st_mtim.tv_sec;
	sx->stx_mtime.tv_nsec = (uint32_t)st.st_mtim.tv_nsec;
	sx->stx_mask |= STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_BLOCKS | STATX_MTIME;
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx)
{
	struct vfile *vf = NULL;
	int r;

	MISSING(statx, -1);
	if (!(interesting(path) || (launder(path) && !path[0] && (flags & AT_EMPTY_PATH) && peek(dirfd))))
		return real.statx(dirfd, path, flags, mask, sx);
	r = real.statx(dirfd, path, flags, mask, sx);
	if (r || !S_ISREG(sx->stx_mode))
		return r;
	if (!path[0])
		vf = get(dirfd);
	if (!vf)
		vf = load_path(dirfd, path, flags & AT_SYMLINK_NOFOLLOW);
	if (!vf)
		return -1;
	patch_statx(vf, sx);
	put_keep_errno(vf);
	return 0;
}

/* ---------------------------------------------------------------- fds */

static int v_close(int fd)
{
	struct vfile *vf = NULL;
	int r;

	if (own_memory()) {
		pthread_mutex_lock(&lock);
		vf = set_locked(fd, NULL);
		pthread_mutex_unlock(&lock);
	}
	r = REAL(close)(fd);
	if (vf)
		put_keep_errno(vf);
	return r;
}

EXPORT int close(int fd)
{
	if (UNLIKELY(peek(fd) != NULL))
		return v_close(fd);
	MISSING(close, -1);
	return real.close(fd);
}

/* Clears the table for fds in [first, last] (before the kernel closes
 * them, so that no new fd is forgotten). */
static void forget_range(unsigned first, unsigned last)
{
	struct vfile *drop[64];
	int ndrop;

	if (!own_memory())
		return;
	if (last >= FD_MAX)
		last = FD_MAX - 1;
	for (unsigned fd = first; fd <= last;) {
		ndrop = 0;
		pthread_mutex_lock(&lock);
		for (; fd <= last && ndrop < 64; fd++) {
			if (!atomic_load_explicit(&fd_pages[fd >> FD_PAGE_BITS], memory_order_relaxed)) {
				fd |= FD_PAGE - 1; /* to the next page */
				continue;
			}
			if (peek((int)fd))
				drop[ndrop++] = set_locked((int)fd, NULL);
		}
		pthread_mutex_unlock(&lock);
		for (int i = 0; i < ndrop; i++)
			vf_put(drop[i]);
	}
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	MISSING(close_range, -1);
	if (first <= last && !(flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) &&
	    !(flags & CLOSE_RANGE_CLOEXEC))
		forget_range(first, last);
	return real.close_range(first, last, flags);
}

EXPORT void closefrom(int lowfd)
{
	if (!REAL(closefrom))
		return;
	if (lowfd >= 0)
		forget_range((unsigned)lowfd, FD_MAX - 1);
	real.closefrom(lowfd);
}

/* Registers newfd (just made by the kernel as a copy of oldfd) as sharing
 * oldfd's vfile, dropping whatever newfd stood for before. */
static int dup_done(int newfd, struct vfile *vf)
{
	if (newfd < 0) {
		if (vf)
			put_keep_errno(vf);
		return newfd;
	}
	if (!own_memory()) {
		if (vf)
			put_keep_errno(vf);
		return newfd;
	}
	put_keep_errno(set(newfd, vf));
	return newfd;
}

EXPORT int dup(int fd)
{
	MISSING(dup, -1);
	if (UNLIKELY(peek(fd) != NULL)) {
		struct vfile *vf = get(fd);
		return dup_done(real.dup(fd), vf);
	}
	return fresh(real.dup(fd));
}

EXPORT int dup2(int fd, int newfd)
{
	MISSING(dup2, -1);
	if (UNLIKELY(peek(fd) != NULL || peek(newfd) != NULL) && fd != newfd) {
		struct vfile *vf = get(fd);
		return dup_done(real.dup2(fd, newfd), vf);
	}
	return real.dup2(fd, newfd);
}

EXPORT int dup3(int fd, int newfd, int flags)
{
	MISSING(dup3, -1);
	if (UNLIKELY(peek(fd) != NULL || peek(newfd) != NULL) && fd != newfd) {
		struct vfile *vf = get(fd);
		return dup_done(real.dup3(fd, newfd, flags), vf);
	}
	return real.dup3(fd, newfd, flags);
}

static int fcntl_common(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
		if (UNLIKELY(peek(fd) != NULL)) {
			struct vfile *vf = get(fd);
			return dup_done(fn(fd, cmd, (int)(intptr_t)arg), vf);
		}
		return fresh(fn(fd, cmd, arg));
	}
	return fn(fd, cmd, arg);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	MISSING(fcntl, -1);
	return fcntl_common(real.fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	MISSING(fcntl64, -1);
	return fcntl_common(real.fcntl64, fd, cmd, arg);
}

/* ioctls that would reach the descriptor's text: cloning or deduplicating
 * its blocks, mapping its extents. Copiers fall back to reading. */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	MISSING(ioctl, -1);
	switch (req) {
	case FICLONE:
		if (peek((int)(intptr_t)arg) || peek(fd))
			goto unsupported;
		break;
	case FICLONERANGE:
		if (arg && (peek((int)((struct file_clone_range *)arg)->src_fd) || peek(fd)))
			goto unsupported;
		break;
	case FIDEDUPERANGE:
	case FS_IOC_FIEMAP:
		if (peek(fd))
			goto unsupported;
		break;
	case FIBMAP:
		if (peek(fd)) {
			errno = EINVAL;
			return -1;
		}
		break;
	case FIONREAD:
		if (peek(fd) && arg) {
			struct vfile *vf = get(fd);
			off_t cur;

			if (!vf)
				break;
			cur = REAL(lseek)(fd, 0, SEEK_CUR);
			if (cur >= 0) {
				uint64_t left = (uint64_t)cur >= vf->size ? 0 : vf->size - (uint64_t)cur;
				*(int *)arg = left > INT_MAX ? INT_MAX : (int)left;
			}
			put_keep_errno(vf);
			return cur < 0 ? -1 : 0;
		}
		break;
	}
	return real.ioctl(fd, req, arg);
unsupported:
	errno = EOPNOTSUPP;
	return -1;
}

/* The kernel would copy the descriptor's text: refuse with the errors
 * copiers (coreutils, Python's shutil) take as "use read and write". */
EXPORT ssize_t copy_file_range(int in, off64_t *off_in, int out, off64_t *off_out, size_t len,
			       unsigned flags)
{
	MISSING(copy_file_range, -1);
	if (UNLIKELY(peek(in) != NULL)) {
		errno = EXDEV;
		return -1;
	}
	return real.copy_file_range(in, off_in, out, off_out, len, flags);
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	MISSING(sendfile, -1);
	if (UNLIKELY(peek(in) != NULL)) {
		errno = EINVAL;
		return -1;
	}
	return real.sendfile(out, in, off, count);
}

EXPORT ssize_t sendfile64(int out, int in, off64_t *off, size_t count)
{
	MISSING(sendfile64, -1);
	if (UNLIKELY(peek(in) != NULL)) {
		errno = EINVAL;
		return -1;
	}
	return real.sendfile64(out, in, off, count);
}

EXPORT ssize_t splice(int in, off64_t *off_in, int out, off64_t *off_out, size_t len, unsigned flags)
{
	MISSING(splice, -1);
	if (UNLIKELY(peek(in) != NULL)) {
		errno = EINVAL;
		return -1;
	}
	return real.splice(in, off_in, out, off_out, len, flags);
}

/* ---------------------------------------------------------------- mmap */

/* A program's mapping of a virtual file: a window into the vfile's region.
 * Two mappings of the same range get the same address (they would share
 * pages anyway); munmap releases one. A fixed table, so that munmap (which
 * free() calls) never allocates. */
struct view {
	char *addr;
	size_t len;           /* whole pages */
	char *base;           /* the region */
	size_t limit;         /* bytes of the region a view may cover */
	struct vfile *vf;     /* one reference per view */
};
#define MAX_VIEWS 16384
static struct view views[MAX_VIEWS];
static atomic_size_t nviews;

static size_t page_size(void)
{
	static atomic_size_t cached;
	size_t p = atomic_load_explicit(&cached, memory_order_relaxed);

	if (!p) {
		long v = sysconf(_SC_PAGESIZE);
		p = v > 0 ? (size_t)v : 4096;
		atomic_store_explicit(&cached, p, memory_order_relaxed);
	}
	return p;
}

static void *v_mmap(void *addr, size_t len, int prot, int flags, off_t off, struct vfile *vf)
{
	size_t page = page_size(), span, limit, n;
	const char *base;

	(void)addr;
	if (!len || off < 0 || (off & (off_t)(page - 1))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	if (prot & (PROT_WRITE | PROT_EXEC)) {
		errno = EACCES; /* a read-only file; no copy-on-write either */
		return MAP_FAILED;
	}
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_HUGETLB)) ||
	    !(flags & (MAP_SHARED | MAP_PRIVATE))) {
		errno = (flags & (MAP_SHARED | MAP_PRIVATE)) ? ENODEV : EINVAL;
		return MAP_FAILED;
	}
	limit = (size_t)((vf->size + page - 1) / page * page);
	n = (len + page - 1) / page * page;
	if (n < len || (uint64_t)off > limit || limit - (size_t)off < n) {
		errno = ENXIO;
		return MAP_FAILED;
	}
	base = vf_region(vf, &span);
	if (!base)
		return MAP_FAILED;
	pthread_mutex_lock(&lock);
	if (atomic_load_explicit(&nviews, memory_order_relaxed) == MAX_VIEWS) {
		pthread_mutex_unlock(&lock);
		errno = ENOMEM;
		return MAP_FAILED;
	}
	vf_get(vf);
	views[atomic_load_explicit(&nviews, memory_order_relaxed)] =
		(struct view){ (char *)base + off, n, (char *)base, limit, vf };
	atomic_fetch_add_explicit(&nviews, 1, memory_order_release);
	pthread_mutex_unlock(&lock);
	return (char *)base + off;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	MISSING(mmap, MAP_FAILED);
	/* An anonymous mapping ignores fd, whatever it names. */
	WITH_VF(flags & MAP_ANONYMOUS ? -1 : fd, v_mmap(addr, len, prot, flags, off, vf),
		real.mmap(addr, len, prot, flags, fd, off));
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	MISSING(mmap64, MAP_FAILED);
	/* An anonymous mapping ignores fd, whatever it names. */
	WITH_VF(flags & MAP_ANONYMOUS ? -1 : fd, v_mmap(addr, len, prot, flags, off, vf),
		real.mmap64(addr, len, prot, flags, fd, off));
}

static void view_remove_locked(size_t i)
{
	size_t n = atomic_load_explicit(&nviews, memory_order_relaxed);

	views[i] = views[n - 1];
	atomic_store_explicit(&nviews, n - 1, memory_order_release);
}

static bool overlaps(const char *a, size_t alen, const char *b, size_t blen)
{
	return a < b + blen && b < a + alen;
}

struct span {
	char *lo, *hi;
};

/* Adds region [lo, hi) to the nreg of `regions` (room for 16) unless it is
 * there; *whole turns false when there is no room left. */
static void region_note(struct span *regions, int *nreg, bool *whole, char *lo, char *hi)
{
	for (int r = 0; r < *nreg; r++)
		if (regions[r].lo == lo)
			return;
	if (*nreg < 16)
		regions[(*nreg)++] = (struct span){ lo, hi };
	else
		*whole = false;
}

/* Releases [a, a + len) of the program's views: one exact view, or one
 * layer of the views it overlaps. Pieces outside every region that has
 * views are real memory of the program's and go to the kernel. */
static int v_munmap(char *a, size_t len)
{
	struct vfile *drop[32];
	struct span regions[16], todo[32];
	size_t page = page_size(), n, i;
	int ndrop = 0, nreg = 0, ntodo = 1;
	bool mine = false, whole = true, failed = false;

	if (((uintptr_t)a & (page - 1)) || !len) {
		errno = EINVAL;
		return -1;
	}
	len = (len + page - 1) / page * page;
	pthread_mutex_lock(&lock);
	n = atomic_load_explicit(&nviews, memory_order_relaxed);
	for (i = n; i-- > 0;)
		if (views[i].addr == a && views[i].len == len) {
			drop[ndrop++] = views[i].vf;
			view_remove_locked(i);
			pthread_mutex_unlock(&lock);
			put_keep_errno(drop[0]);
			return 0;
		}
	for (i = 0; i < n; i++) {
		struct view *v = &views[i];

		if (!overlaps(a, len, v->addr, v->len))
			continue;
		mine = true;
		region_note(regions, &nreg, &whole, v->base, v->base + v->limit);
	}
	/* Regions that no view covers here are still the virtual files'
	 * (open descriptors map them again later): never the kernel's to
	 * unmap, even when a program unmaps a range twice, or a piece of one
	 * mapping after the other mapping of the same range took its views. */
	if (vf_live_any()) {
		const char *lo[16], *hi[16];
		int k = vf_live_spans(a, len, lo, hi, 16);

		for (int j = 0; j < k; j++) {
			mine = true;
			region_note(regions, &nreg, &whole, (char *)lo[j], (char *)hi[j]);
		}
	}
	if (!mine) {
		pthread_mutex_unlock(&lock);
		return REAL(munmap)(a, len);
	}
	/* One layer of views goes: where two views cover a page (two mappings
	 * of one range share its address), only one of them loses it, as the
	 * program unmaps one mapping and keeps the other. Pieces of the range
	 * wait in `todo` for the next view that covers them. */
	todo[0].lo = a;
	todo[0].hi = a + len;
	while (ntodo > 0 && ndrop < 32) {
		char *lo = todo[ntodo - 1].lo, *hi = todo[ntodo - 1].hi, *vlo, *vhi, *xlo, *xhi;
		struct view *v = NULL;

		ntodo--;
		n = atomic_load_explicit(&nviews, memory_order_relaxed);
		for (i = 0; i < n && !v; i++)
			if (overlaps(lo, (size_t)(hi - lo), views[i].addr, views[i].len))
				v = &views[i];
		if (!v)
			continue; /* no view left there */
		i--;
		vlo = v->addr;
		vhi = v->addr + v->len;
		xlo = lo > vlo ? lo : vlo;
		xhi = hi < vhi ? hi : vhi;
		if ((lo < xlo) + (xhi < hi) > (int)(sizeof(todo) / sizeof(todo[0])) - ntodo)
			break; /* the rest next time: never wrong, only late */
		if (lo < xlo)
			todo[ntodo++] = (struct span){ lo, xlo };
		if (xhi < hi)
			todo[ntodo++] = (struct span){ xhi, hi };
		if (xlo == vlo && xhi == vhi) {
			drop[ndrop++] = v->vf;
			view_remove_locked(i);
		} else if (xlo > vlo && xhi < vhi) {
			if (n == MAX_VIEWS) {
				failed = true; /* as the kernel when a split exceeds its map count */
				break;
			}
			vf_get(v->vf);
			views[n] = *v;
			views[n].addr = xhi;
			views[n].len = (size_t)(vhi - xhi);
			atomic_store_explicit(&nviews, n + 1, memory_order_release);
			v->len = (size_t)(xlo - vlo);
		} else if (xlo == vlo) {
			v->addr = xhi;
			v->len = (size_t)(vhi - xhi);
		} else {
			v->len = (size_t)(xlo - vlo);
		}
	}
	pthread_mutex_unlock(&lock);
	for (int d = 0; d < ndrop; d++)
		put_keep_errno(drop[d]);
	if (failed) {
		errno = ENOMEM;
		return -1;
	}
	/* the program's own pages around them */
	if (whole) {
		char *cur = a, *end = a + len;

		while (cur < end) {
			char *next = end, *skip = NULL;

			for (int r = 0; r < nreg; r++) {
				if (regions[r].lo <= cur && cur < regions[r].hi && (!skip || regions[r].hi > skip))
					skip = regions[r].hi;
				else if (regions[r].lo > cur && regions[r].lo < next)
					next = regions[r].lo;
			}
			if (skip) {
				cur = skip;
				continue;
			}
			REAL(munmap)(cur, (size_t)(next - cur));
			cur = next;
		}
	}
	return 0;
}

EXPORT int munmap(void *addr, size_t len)
{
	if (UNLIKELY(atomic_load_explicit(&nviews, memory_order_acquire) != 0 || vf_live_any()))
		return v_munmap(addr, len);
	MISSING(munmap, -1);
	return real.munmap(addr, len);
}

/* Resizing a view in place, within the file; a view never moves. */
EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	va_list ap;
	void *naddr;

	va_start(ap, flags);
	naddr = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
	va_end(ap);
	if (UNLIKELY(atomic_load_explicit(&nviews, memory_order_acquire) != 0)) {
		size_t page = page_size(), n = (newlen + page - 1) / page * page;
		bool found = false, partial = false;
		void *ret = MAP_FAILED;

		pthread_mutex_lock(&lock);
		for (size_t i = 0; i < atomic_load_explicit(&nviews, memory_order_relaxed); i++) {
			struct view *v = &views[i];

			if (v->addr == old && !found) {
				found = true;
				if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) || !newlen)
					errno = EINVAL;
				else if ((size_t)(v->addr - v->base) + n > v->limit)
					errno = ENOMEM;
				else {
					v->len = n;
					ret = old;
				}
			} else if (overlaps(old, oldlen ? oldlen : 1, v->addr, v->len)) {
				partial = true;
			}
		}
		pthread_mutex_unlock(&lock);
		if (found)
			return ret;
		if (partial) {
			errno = EINVAL;
			return MAP_FAILED;
		}
	}
	MISSING(mremap, MAP_FAILED);
	return real.mremap(old, oldlen, newlen, flags, naddr);
}

/* ---------------------------------------------------------------- start */

static void before_fork(void)
{
	pthread_mutex_lock(&lock);
	vf_live_hold(true);
}

static void after_fork_parent(void)
{
	vf_live_hold(false);
	pthread_mutex_unlock(&lock);
}

static void after_fork_child(void)
{
	atomic_store(&self_pid, getpid());
	vf_live_hold(false);
	pthread_mutex_unlock(&lock);
}

/* Descriptors open when the program starts (a shell's `< x.patchmap`, or
 * inherited from a parent under this shim) become virtual too, at the
 * offset they have: the kernel's. */
static void adopt_inherited(void)
{
	char msg[VF_ERRLEN], target[PATH_MAX], proc[64];
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;

	if (!dir)
		return;
	while ((e = readdir(dir))) {
		struct vfile *vf;
		struct stat st;
		ssize_t n;
		int fd, fl;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		fd = atoi(e->d_name);
		if (fd == dirfd(dir) || peek(fd))
			continue;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = readlink(proc, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!desc_name(target))
			continue;
		fl = REAL(fcntl)(fd, F_GETFL);
		if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || (fl & O_PATH) ||
		    REAL(fstat)(fd, &st) || !S_ISREG(st.st_mode))
			continue;
		vf = load(fd, target, true, msg);
		if (!vf) {
			if (msg[0])
				report(msg);
			continue;
		}
		vf_put(set(fd, vf));
	}
	closedir(dir);
	/* stdin's FILE reads fd 0 through the C library's internal read: give
	 * a program reading stdio's stdin a stream over the virtual file. */
	if (peek(0)) {
		FILE *f = cookie_file(0);

		if (f)
			stdin = f;
	}
}

__attribute__((constructor)) static void shim_start(void)
{
	pthread_once(&resolve_once, resolve);
	atomic_store(&self_pid, getpid());
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
	adopt_inherited();
}
