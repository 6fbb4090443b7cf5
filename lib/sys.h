/* sys.h: the system calls the region and the backends make, each returning 0
 * (or a count, or a descriptor) or -errno, and the userfaultfd ABI newer than
 * some distributions' headers. The backends reach the kernel through these
 * only. Everything here is async-signal-safe. */
#ifndef PM_SYS_H
#define PM_SYS_H

#include <errno.h>
#include <linux/futex.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
/* Linux 6.6 (POISON) and 6.8 (MOVE). */
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

static inline long pm__sys_ret(long r)
{
	return r < 0 ? -errno : r;
}

static inline pid_t pm__gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static inline pid_t pm__getpid(void)
{
	return (pid_t)syscall(SYS_getpid);
}

static inline int pm__tgkill(pid_t pid, pid_t tid, int sig)
{
	return (int)pm__sys_ret(syscall(SYS_tgkill, pid, tid, sig));
}

/* Sleeps while *word == val (or until woken; spurious returns happen). */
static inline int pm__futex_wait(uint32_t *word, uint32_t val)
{
	return (int)pm__sys_ret(syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0));
}

static inline int pm__futex_wake(uint32_t *word)
{
	return (int)pm__sys_ret(syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0));
}

static inline int pm__ioctl(int fd, unsigned long req, void *arg)
{
	return (int)pm__sys_ret(ioctl(fd, req, arg));
}

static inline int pm__mprotect(void *p, size_t len, int prot)
{
	return (int)pm__sys_ret(mprotect(p, len, prot));
}

static inline int pm__madvise(void *p, size_t len, int advice)
{
	return (int)pm__sys_ret(madvise(p, len, advice));
}

/* A pidfd of this process, for pm__process_madvise. */
static inline int pm__pidfd_self(void)
{
	return (int)pm__sys_ret(syscall(SYS_pidfd_open, pm__getpid(), 0));
}

/* madvise of several ranges in one call (Linux 6.13 takes any advice for
 * the calling process; older kernels refuse most). Bytes advised. */
static inline ssize_t pm__process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice)
{
	return pm__sys_ret(syscall(SYS_process_madvise, pidfd, iov, n, advice, 0u));
}

/* Anonymous private memory; NULL (not MAP_FAILED) on failure. */
static inline void *pm__mmap_anon(void *addr, size_t len, int prot, int flags)
{
	void *p = mmap(addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static inline int pm__munmap(void *p, size_t len)
{
	return (int)pm__sys_ret(munmap(p, len));
}

static inline int pm__userfaultfd(int flags)
{
	return (int)pm__sys_ret(syscall(SYS_userfaultfd, flags));
}

static inline int pm__open(const char *path, int flags)
{
	return (int)pm__sys_ret(open(path, flags));
}

static inline int pm__close(int fd)
{
	return (int)pm__sys_ret(close(fd));
}

static inline ssize_t pm__read(int fd, void *buf, size_t len)
{
	return pm__sys_ret(read(fd, buf, len));
}

static inline ssize_t pm__write(int fd, const void *buf, size_t len)
{
	return pm__sys_ret(write(fd, buf, len));
}

static inline int pm__poll(struct pollfd *p, nfds_t n, int timeout_ms)
{
	return (int)pm__sys_ret(poll(p, n, timeout_ms));
}

static inline int pm__eventfd(void)
{
	return (int)pm__sys_ret(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

static inline int pm__sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	return (int)pm__sys_ret(sigaction(sig, sa, old));
}

/* Moves the pages of [src, src + len) to dst, leaving src mapped but empty. */
static inline int pm__mremap_move(void *src, size_t len, void *dst)
{
	void *p = (void *)syscall(SYS_mremap, src, len, len,
				  MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
	return p == MAP_FAILED ? -errno : 0;
}

static inline uint64_t pm__now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#endif
