/* test-region.c: the generic lazy region (pm_region_*) on every backend,
 * filled with a generated pattern that is a pure function of the byte offset
 * and knows nothing of images. Byte-exact reads in several access orders,
 * chunk sizes from one page to 4 MiB, budgets down to two chunks, ragged
 * tails, consumer threads, read-ahead, stats, errors and the environment,
 * and, in forked (or re-executed) children, what a process sees: fork,
 * failing fills, stray writes, SIGSEGV chaining, alternate signal stacks,
 * userfaultfd denied by seccomp or by privilege.
 *
 * Run as `test-region GROUP [NAME-PART]`: "unit" (single-threaded readers),
 * "threads" (consumer threads; also run under ThreadSanitizer), "process"
 * (children and signals). `test-region --scenario NAME` is one child
 * scenario, run in a fresh process so that the library's process-wide state (the SIGSEGV
 * handler it chains to, the cached userfaultfd probe) starts from nothing. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "helpers.h"
#include "ref.h"

/* Under ThreadSanitizer the loads of region memory are not instrumented:
 * TSan checks a load before it executes, that is before the fault that maps
 * the chunk in, and the chunk's bytes reach it by mremap or UFFDIO_MOVE from
 * a pool slot, which TSan cannot follow (it sees the eviction's mmap as the
 * last write). The library's own synchronisation stays instrumented. */
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifdef T_TSAN
#define REGION_READER __attribute__((no_sanitize("thread"), noinline))
#else
#define T_TSAN 0
#define REGION_READER
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static size_t page_size;
static char label[512]; /* the case being run, for failure messages */

/* Asserts cond (evaluated once), saying what failed in which case. */
#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		bool ok_ = (cond);                                                        \
		if (!ok_) {                                                               \
			fprintf(stderr, "\n  %s:%d: %s: ", __FILE__, __LINE__, label);    \
			fprintf(stderr, __VA_ARGS__);                                     \
			fprintf(stderr, "\n");                                            \
		}                                                                         \
		CU_assertImplementation(ok_, __LINE__, #cond, __FILE__, "", CU_FALSE);    \
	} while (0)

static const char *const order_names[] = { "sequential", "reverse", "strided", "random" };
enum { ORDER_SEQ, ORDER_REV, ORDER_STRIDED, ORDER_RANDOM, ORDER_COUNT };

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* ------------------------------------------------------------ the pattern */

/* Byte o of a region with seed s is byte o % 8 (little-endian) of
 * mix(s, o / 8): every byte depends on its offset and on the region. */
static inline uint64_t pat_word(uint64_t seed, uint64_t w)
{
	uint64_t x = w * 0x9e3779b97f4a7c15ull + seed;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline unsigned char pat_byte(uint64_t seed, uint64_t off)
{
	return (unsigned char)(pat_word(seed, off / 8) >> (8 * (off % 8)));
}

static void pat_fill(uint64_t seed, size_t off, unsigned char *dst, size_t len)
{
	size_t i = 0;

	for (; i < len && (off + i) % 8; i++)
		dst[i] = pat_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t v = pat_word(seed, (off + i) / 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		memcpy(dst + i, &v, 8);
#else
		for (int b = 0; b < 8; b++)
			dst[i + (size_t)b] = (unsigned char)(v >> (8 * b));
#endif
	}
	for (; i < len; i++)
		dst[i] = pat_byte(seed, off + i);
}

/* Mismatching bytes between buf[0, len) and bytes [off, off + len) of the
 * pattern. */
REGION_READER static size_t pat_diff(const unsigned char *buf, uint64_t seed, size_t off, size_t len)
{
	size_t i = 0, bad = 0;

	for (; i < len && (off + i) % 8; i++)
		bad += buf[i] != pat_byte(seed, off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t v = pat_word(seed, (off + i) / 8), got;

		memcpy(&got, buf + i, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		if (got == v)
			continue;
#endif
		for (int b = 0; b < 8; b++)
			bad += buf[i + (size_t)b] != (unsigned char)(v >> (8 * b));
	}
	for (; i < len; i++)
		bad += buf[i] != pat_byte(seed, off + i);
	return bad;
}

/* Mismatching bytes of [off, off + len) of the mapping at base. */
static size_t pat_check(const unsigned char *base, uint64_t seed, size_t off, size_t len)
{
	return pat_diff(base + off, seed, off, len);
}

/* ------------------------------------------------ an instrumented fill */

/* Set in threads that read regions: a lazy backend must never run the fill
 * callback on one of them (that would mean from inside a fault). */
static _Thread_local bool t_consumer;

struct fctx {
	uint64_t seed;
	size_t length, chunk;
	bool lazy;
	size_t fail_chunk;           /* SIZE_MAX: none */
	int fail_err;
	int fail_times;              /* failures before it succeeds; <0: always */
	_Atomic int failed;
	_Atomic uint64_t calls, ok_calls, ok_bytes, inflight;
	_Atomic uint64_t bad_args, overlaps, on_consumer, unblocked;
	_Atomic unsigned char *busy; /* per chunk: a fill is running */
	_Atomic unsigned *count;     /* per chunk: fills started */
	unsigned fill_us;            /* each fill sleeps this long first */
};

static int fill_pattern(void *vctx, size_t off, void *dst, size_t len)
{
	struct fctx *f = vctx;
	size_t c = off / f->chunk, want;
	int ret = 0;

	atomic_fetch_add(&f->calls, 1);
	atomic_fetch_add(&f->inflight, 1);
	want = off < f->length ? (f->length - off < f->chunk ? f->length - off : f->chunk) : 0;
	if (off % f->chunk || len != want || !dst)
		atomic_fetch_add(&f->bad_args, 1);
	if (f->lazy) {
		sigset_t cur;

		if (t_consumer)
			atomic_fetch_add(&f->on_consumer, 1);
		/* Fills run on library threads that leave the application's
		 * signals to the application, but take faults: the source may
		 * itself be lazy memory. */
		if (pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0 &&
		    (sigismember(&cur, SIGSEGV) || sigismember(&cur, SIGBUS) || !sigismember(&cur, SIGINT) ||
		     !sigismember(&cur, SIGUSR1)))
			atomic_fetch_add(&f->unblocked, 1);
	}
	if (f->busy && c * f->chunk < f->length) {
		atomic_fetch_add(&f->count[c], 1);
		if (atomic_exchange(&f->busy[c], 1))
			atomic_fetch_add(&f->overlaps, 1);
	}
	if (f->fill_us)
		usleep(f->fill_us);
	if (c == f->fail_chunk &&
	    (atomic_fetch_add(&f->failed, 1) < f->fail_times || f->fail_times < 0)) {
		ret = f->fail_err;
	} else if (len && off < f->length) {
		pat_fill(f->seed, off, dst, len);
		atomic_fetch_add(&f->ok_calls, 1);
		atomic_fetch_add(&f->ok_bytes, len);
	}
	if (f->busy && c * f->chunk < f->length)
		atomic_store(&f->busy[c], 0);
	atomic_fetch_sub(&f->inflight, 1);
	return ret;
}

static void fctx_init(struct fctx *f, uint64_t seed, size_t length, size_t chunk, int backend)
{
	size_t n = length / chunk + 1;

	memset(f, 0, sizeof(*f));
	f->seed = seed;
	f->length = length;
	f->chunk = chunk;
	f->lazy = backend != PM_BACKEND_EAGER;
	f->fail_chunk = SIZE_MAX;
	f->busy = calloc(n, sizeof(*f->busy));
	f->count = calloc(n, sizeof(*f->count));
	if (!f->busy || !f->count) { /* also used outside CUnit */
		perror("calloc");
		exit(1);
	}
}

static void fctx_free(struct fctx *f)
{
	free((void *)f->busy);
	free((void *)f->count);
	f->busy = NULL;
	f->count = NULL;
}

/* The callback was used as documented: whole chunks at chunk offsets, never
 * two at once for one chunk, and (lazy backends) only from filler threads
 * with every signal blocked, never from a reader's fault. */
static void fctx_verify(struct fctx *f)
{
	CHECK(atomic_load(&f->bad_args) == 0, "%" PRIu64 " fill calls with a bad offset or length",
	      (uint64_t)atomic_load(&f->bad_args));
	CHECK(atomic_load(&f->overlaps) == 0, "%" PRIu64 " fills of a chunk while another ran",
	      (uint64_t)atomic_load(&f->overlaps));
	CHECK(atomic_load(&f->on_consumer) == 0, "%" PRIu64 " fills ran on a reader thread",
	      (uint64_t)atomic_load(&f->on_consumer));
	CHECK(atomic_load(&f->unblocked) == 0, "%" PRIu64 " fills ran with a wrong signal mask",
	      (uint64_t)atomic_load(&f->unblocked));
}

/* Waits (at most 20 s) until no fill runs and the library has counted every
 * successful one: read-ahead may still be working when the readers are
 * done. Returns the settled stats. */
static void settle(const pm_region *r, struct fctx *f, struct pm_stats *st)
{
	for (int i = 0; i < 20000; i++) {
		uint64_t calls = atomic_load(&f->calls);

		pm_region_stats(r, st);
		if (!atomic_load(&f->inflight) && st->chunks_filled == atomic_load(&f->ok_calls) &&
		    calls == atomic_load(&f->calls)) {
			usleep(1000);
			if (calls == atomic_load(&f->calls)) {
				pm_region_stats(r, st);
				if (st->chunks_filled == atomic_load(&f->ok_calls))
					return;
			}
		}
		usleep(1000);
	}
	CHECK(0, "the fillers never settled: %" PRIu64 " fills counted, %" PRIu64 " done",
	      st->chunks_filled, (uint64_t)atomic_load(&f->ok_calls));
}

/* -------------------------------------------------- opening regions */

static bool backend_missing[PM_BACKEND_COUNT];

static int open_region(pm_region **r, struct fctx *f, int backend, size_t length, size_t chunk,
		       size_t budget, int readahead, int threads, unsigned flags)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = length, .fill = fill_pattern, .ctx = f };
	int ret;

	o.lazy.backend = backend;
	o.lazy.chunk = chunk;
	o.lazy.budget = budget;
	o.lazy.readahead = readahead;
	o.lazy.threads = threads;
	o.lazy.flags = flags;
	ret = pm_region_open(&o, r);
	if (ret == 0) {
		CU_ASSERT_PTR_NOT_NULL(*r);
	} else {
		CU_ASSERT_PTR_NULL(*r);
	}
	return ret;
}

/* Is the backend usable here? Says why not, once. */
static bool backend_usable(int backend)
{
	static bool probed[PM_BACKEND_COUNT];
	struct fctx f;
	pm_region *r = NULL;
	int ret;

	if (probed[backend])
		return !backend_missing[backend];
	probed[backend] = true;
	fctx_init(&f, 1, page_size, page_size, backend);
	ret = open_region(&r, &f, backend, page_size, page_size, 0, 0, 1, 0);
	pm_region_close(r);
	fctx_free(&f);
	if (ret == -EPERM || ret == -ENOSYS || ret == -EACCES) {
		printf("\n  SKIP every %s case: %s\n", pm_backend_name(backend), pm_strerror(ret));
		backend_missing[backend] = true;
	} else {
		CHECK(ret == 0, "opening a %s region: %s", pm_backend_name(backend), pm_strerror(ret));
		backend_missing[backend] = ret != 0;
	}
	return !backend_missing[backend];
}

/* ------------------------------------------------------ access orders */

/* The n block indices in one of the orders; every block exactly once. */
static size_t *make_order(size_t n, int order, size_t stride, uint64_t seed)
{
	size_t *p = malloc((n ? n : 1) * sizeof(*p)), k = 0;
	uint64_t s = seed | 1;

	if (!p) { /* also used in reader threads, outside CUnit */
		perror("malloc");
		exit(1);
	}
	switch (order) {
	case ORDER_SEQ:
		for (size_t i = 0; i < n; i++)
			p[k++] = i;
		break;
	case ORDER_REV:
		for (size_t i = n; i-- > 0;)
			p[k++] = i;
		break;
	case ORDER_STRIDED:
		if (stride < 2)
			stride = 2;
		for (size_t s0 = 0; s0 < stride; s0++)
			for (size_t i = s0; i < n; i += stride)
				p[k++] = i;
		break;
	default:
		for (size_t i = 0; i < n; i++)
			p[k++] = i;
		for (size_t i = n; i > 1; i--) {
			size_t j = (size_t)(t_rnd(&s) % i), t = p[i - 1];

			p[i - 1] = p[j];
			p[j] = t;
		}
		break;
	}
	return p;
}

/* Reads and checks every byte of [0, length) in blocks of `block`, in the
 * given order; returns the mismatching bytes. */
static size_t scan(const unsigned char *base, uint64_t seed, size_t length, size_t block, int order,
		   size_t stride, uint64_t rseed)
{
	size_t n = (length + block - 1) / block, bad = 0;
	size_t *idx = make_order(n, order, stride, rseed);

	for (size_t i = 0; i < n; i++) {
		size_t off = idx[i] * block, len = length - off < block ? length - off : block;

		bad += pat_check(base, seed, off, len);
	}
	free(idx);
	return bad;
}

/* Short reads at random offsets, many across a chunk boundary: the access
 * that needs two chunks resident at once. */
static size_t straddle_reads(const unsigned char *base, uint64_t seed, size_t length, size_t chunk,
			     size_t count, uint64_t rseed)
{
	size_t bad = 0, nchunks = (length + chunk - 1) / chunk;
	uint64_t s = rseed | 1;

	for (size_t i = 0; i < count; i++) {
		size_t off, len = 1 + (size_t)(t_rnd(&s) % 32);

		if (i % 2 && nchunks > 1) /* across the end of a chunk */
			off = (1 + (size_t)(t_rnd(&s) % (nchunks - 1))) * chunk - 1 - (size_t)(t_rnd(&s) % 8);
		else
			off = (size_t)(t_rnd(&s) % length);
		if (len > length - off)
			len = length - off;
		bad += pat_check(base, seed, off, len);
	}
	return bad;
}

/* ---------------------------------------------- catching a signal here */

/* A SIGSEGV/SIGBUS handler installed at start, before any region, so that
 * the SIGSEGV backend chains to it. Armed (per thread), it jumps back to the
 * test; unarmed, it restores the default action and lets the signal kill the
 * process, as if it were not there. */
static _Thread_local sigjmp_buf *t_jmp;
static _Thread_local volatile int t_sig, t_code;
static _Thread_local void *volatile t_addr;

static void t_handler(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *j = t_jmp;
	struct sigaction dfl;

	(void)uc;
	if (j) {
		t_jmp = NULL;
		t_sig = sig;
		t_code = si->si_code;
		t_addr = si->si_addr;
		siglongjmp(*j, 1);
	}
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	if (si->si_code <= 0) /* sent: it will not come back by itself */
		syscall(SYS_tgkill, getpid(), gettid_(), sig);
}

static void install_t_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = t_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL)) {
		perror("sigaction");
		exit(1);
	}
}

struct access {
	const unsigned char *p;
	unsigned char v;
	bool write;
};

static void do_access(struct access *a)
{
	if (a->write)
		*(volatile unsigned char *)a->p = a->v;
	else
		a->v = *(const volatile unsigned char *)a->p;
}

/* Performs the access; returns the signal it raised, 0 if none. */
static int catch_access(struct access *a)
{
	sigjmp_buf jb;

	t_sig = 0;
	if (sigsetjmp(jb, 1) == 0) {
		t_jmp = &jb;
		do_access(a);
		t_jmp = NULL;
		return 0;
	}
	return t_sig;
}

static int try_read(const void *p, unsigned char *v)
{
	struct access a = { p, 0, false };
	int sig = catch_access(&a);

	*v = a.v;
	return sig;
}

static int try_write(const void *p, unsigned char v)
{
	struct access a = { p, v, true };

	return catch_access(&a);
}

/* Is address p inside any mapping of this process? */
static bool is_mapped(const void *p)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)p;
	char line[512];
	bool in = false;

	if (!f)
		return true;
	while (!in && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi)
			in = true;
	fclose(f);
	return in;
}

/* ---------------------------------------------------------- children */

/* Runs fn in a child made by forker (fork, or _Fork: no fork handler runs)
 * that exits with its return value; returns the wait status. The child leaves with _exit: nothing of the parent's stdio or
 * CUnit state is flushed twice. */
static int in_child_by(pid_t (*forker)(void), int (*fn)(void *), void *arg)
{
	int status = 0;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = forker();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		_exit(fn(arg));
	CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
	return status;
}

static int in_child(int (*fn)(void *), void *arg)
{
	return in_child_by(fork, fn, arg);
}

static const char *self_exe;

/* Runs `test-region --scenario name` in a fresh process; returns its wait
 * status. */
static int scenario(const char *name)
{
	int status = 0;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--scenario", name, (char *)NULL);
		_exit(126);
	}
	CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
	return status;
}

static void describe_status(int status, char *buf, size_t n)
{
	if (WIFEXITED(status))
		snprintf(buf, n, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, n, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, n, "status %#x", status);
}

static void expect_signal(int status, int sig, const char *what)
{
	char got[64];

	describe_status(status, got, sizeof(got));
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == sig, "%s: the child ended with %s, want signal %d (%s)",
	      what, got, sig, strsignal(sig));
}

static void expect_exit0(int status, const char *what)
{
	char got[64];

	describe_status(status, got, sizeof(got));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child ended with %s", what, got);
}

/* A scenario's verdict: 0 passed, 77 skipped (says why), else failed. */
static void expect_scenario(const char *name)
{
	int status = scenario(name);

	if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP) {
		printf("\n  SKIP scenario %s (reason above)\n", name);
		return;
	}
	snprintf(label, sizeof(label), "scenario %s", name);
	expect_exit0(status, name);
}

/* ------------------------------------------------------------ stats */

static bool thp_enabled(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	bool on = false;

	if (f) {
		on = fgets(buf, sizeof(buf), f) && !strstr(buf, "[never]");
		fclose(f);
	}
	return on;
}

/* The slots a region keeps: the budget in whole chunks, at most the
 * region's chunks; the default budget grows to two chunks (an explicit one
 * below two is refused: include/patchmap.h, struct pm_lazy_opts). */
static size_t expected_slots(size_t budget, size_t chunk, size_t nchunks)
{
	size_t n = (budget ? budget : PM_DEFAULT_BUDGET) / chunk;

	if (n < 2 && !budget)
		n = 2;
	return n < nchunks ? n : nchunks;
}

/* What every region's stats must say, whatever happened. */
static void check_mechanism(const struct pm_stats *st, int backend, size_t chunk, unsigned flags)
{
	unsigned m = st->mechanism;
	const unsigned uffd_bits = PM_MECH_UFFD_FULL | PM_MECH_UFFD_USER_ONLY;

	CHECK(st->backend == backend, "stats name backend %d (%s)", st->backend,
	      pm_backend_name(st->backend) ? pm_backend_name(st->backend) : "?");
	CHECK(st->chunk_bytes == chunk, "chunk_bytes %zu", st->chunk_bytes);
	switch (backend) {
	case PM_BACKEND_UFFD:
		CHECK((m & uffd_bits) == PM_MECH_UFFD_FULL || (m & uffd_bits) == PM_MECH_UFFD_USER_ONLY,
		      "uffd mechanism %#x: not exactly one of full and user-only", m);
		if (geteuid() == 0)
			CHECK(m & PM_MECH_UFFD_FULL, "uffd as root, mechanism %#x lacks full mode", m);
		CHECK(!(m & PM_MECH_MOVE) != !(m & PM_MECH_COPY), "uffd mechanism %#x: move or copy?", m);
		CHECK(!(m & PM_MECH_MREMAP), "uffd mechanism %#x says mremap", m);
		if (flags & PM_LAZY_WRITABLE)
			CHECK(!(m & PM_MECH_WRITE_PROTECT), "writable, but mechanism %#x says protected", m);
		else if (m & PM_MECH_MOVE)
			CHECK(m & PM_MECH_WRITE_PROTECT, "mechanism %#x: resident pages not protected", m);
		CHECK(!(m & PM_MECH_HUGEPAGES) == !(chunk % (2 * MiB) == 0 && thp_enabled()),
		      "mechanism %#x: huge pages with %zu-byte chunks?", m, chunk);
		break;
	case PM_BACKEND_SIGSEGV:
		CHECK((m & (PM_MECH_MREMAP | PM_MECH_WRITE_PROTECT)) == (PM_MECH_MREMAP | PM_MECH_WRITE_PROTECT),
		      "sigsegv mechanism %#x lacks mremap or write protection", m);
		CHECK(!(m & (uffd_bits | PM_MECH_MOVE | PM_MECH_COPY | PM_MECH_POISON)),
		      "sigsegv mechanism %#x names userfaultfd features", m);
		CHECK(!(m & PM_MECH_HUGEPAGES) == !(chunk % (2 * MiB) == 0 && thp_enabled()),
		      "mechanism %#x: huge pages with %zu-byte chunks?", m, chunk);
		break;
	default:
		CHECK(!(m & (uffd_bits | PM_MECH_MOVE | PM_MECH_COPY | PM_MECH_MREMAP | PM_MECH_POISON)),
		      "eager mechanism %#x names a lazy one", m);
		break;
	}
}

/* After every byte of a region was read: settled counters against the fill
 * callback's own counts, and the budget. */
static void check_stats(const pm_region *r, struct fctx *f, int backend, size_t length, size_t chunk,
			size_t budget, int readahead, unsigned flags)
{
	size_t nchunks = (length + chunk - 1) / chunk, span = nchunks * chunk;
	struct pm_stats st = { 0 };

	CU_ASSERT_EQUAL_FATAL(pm_region_stats(r, &st), 0);
	check_mechanism(&st, backend, chunk, flags);
	if (backend == PM_BACKEND_EAGER) {
		CHECK(st.faults == 0 && st.evictions == 0 && st.readahead_fills == 0,
		      "eager: %" PRIu64 " faults, %" PRIu64 " evictions, %" PRIu64 " read ahead",
		      st.faults, st.evictions, st.readahead_fills);
		CHECK(st.chunks_filled == nchunks && st.bytes_filled == length,
		      "eager: %" PRIu64 " chunks, %" PRIu64 " bytes filled; want %zu, %zu", st.chunks_filled,
		      st.bytes_filled, nchunks, length);
		CHECK(st.chunks_filled == atomic_load(&f->ok_calls) && st.bytes_filled == atomic_load(&f->ok_bytes),
		      "eager: counted %" PRIu64 " chunks, %" PRIu64 " bytes, the callback saw %" PRIu64 ", %" PRIu64,
		      st.chunks_filled, st.bytes_filled, (uint64_t)atomic_load(&f->ok_calls),
		      (uint64_t)atomic_load(&f->ok_bytes));
		CHECK(st.resident_bytes == span && st.peak_resident_bytes <= st.budget_bytes,
		      "eager: resident %" PRIu64 ", peak %" PRIu64 ", budget %zu, span %zu", st.resident_bytes,
		      st.peak_resident_bytes, st.budget_bytes, span);
		return;
	}
	settle(r, f, &st);
	if (st.mechanism & PM_MECH_COPY) {
		/* Copying: the staging buffers come out of the budget and are
		 * counted in it, so it may exceed the region's chunks. */
		size_t want = expected_slots(budget, chunk, nchunks), most = expected_slots(budget, chunk, SIZE_MAX);

		CHECK(st.budget_bytes >= want * chunk && st.budget_bytes <= most * chunk,
		      "budget_bytes %zu, want %zu to %zu chunks of %zu", st.budget_bytes, want, most, chunk);
	} else {
		CHECK(st.budget_bytes == expected_slots(budget, chunk, nchunks) * chunk,
		      "budget_bytes %zu, want %zu chunks of %zu", st.budget_bytes,
		      expected_slots(budget, chunk, nchunks), chunk);
	}
	CHECK(st.peak_resident_bytes <= st.budget_bytes, "peak resident %" PRIu64 " above the budget %zu",
	      st.peak_resident_bytes, st.budget_bytes);
	CHECK(st.resident_bytes <= st.peak_resident_bytes && st.resident_bytes % chunk == 0,
	      "resident %" PRIu64 ", peak %" PRIu64, st.resident_bytes, st.peak_resident_bytes);
	CHECK(st.faults >= 1, "no fault counted");
	CHECK(st.chunks_filled == atomic_load(&f->ok_calls) && st.bytes_filled == atomic_load(&f->ok_bytes),
	      "counted %" PRIu64 " chunks, %" PRIu64 " bytes filled; the callback filled %" PRIu64 ", %" PRIu64,
	      st.chunks_filled, st.bytes_filled, (uint64_t)atomic_load(&f->ok_calls),
	      (uint64_t)atomic_load(&f->ok_bytes));
	CHECK(st.fill_errors == atomic_load(&f->calls) - atomic_load(&f->ok_calls),
	      "%" PRIu64 " fill errors counted, %" PRIu64 " happened", st.fill_errors,
	      (uint64_t)(atomic_load(&f->calls) - atomic_load(&f->ok_calls)));
	CHECK(st.chunks_filled >= nchunks && st.bytes_filled >= length,
	      "every byte was read, but only %" PRIu64 " chunks (%" PRIu64 " bytes) were filled",
	      st.chunks_filled, st.bytes_filled);
	/* Each fill is still held, was evicted, or (read ahead, never
	 * touched) was dropped. */
	CHECK(st.evictions + st.resident_bytes / chunk <= st.chunks_filled &&
		      st.chunks_filled <= st.evictions + st.resident_bytes / chunk + st.readahead_fills,
	      "%" PRIu64 " fills, %" PRIu64 " evictions, %" PRIu64 " resident chunks, %" PRIu64 " read ahead",
	      st.chunks_filled, st.evictions, st.resident_bytes / chunk, st.readahead_fills);
	CHECK(st.readahead_hits <= st.readahead_fills && st.readahead_fills <= st.chunks_filled,
	      "%" PRIu64 " read-ahead hits of %" PRIu64 " read-ahead fills", st.readahead_hits,
	      st.readahead_fills);
	if (readahead < 0)
		CHECK(st.readahead_fills == 0 && st.readahead_hits == 0,
		      "read-ahead off, yet %" PRIu64 " fills and %" PRIu64 " hits", st.readahead_fills,
		      st.readahead_hits);
}

/* The bytes of the last chunk past `length` read as zeros (not a stale
 * slot's content), and the first byte past the last chunk is not readable
 * (when nothing else of the process happens to be mapped there). */
static void check_tail(const pm_region *r, size_t length, size_t chunk)
{
	const unsigned char *base = pm_region_data(r);
	size_t span = (length + chunk - 1) / chunk * chunk, nonzero = 0;
	struct pm_stats before = { 0 }, after = { 0 };
	unsigned char v;
	int sig;

	for (size_t i = length; i < span; i++)
		nonzero += base[i] != 0;
	CHECK(nonzero == 0, "%zu of the %zu bytes past the length are not zero", nonzero, span - length);
	if (is_mapped(base + span)) {
		printf("\n  note: %s: another mapping follows the region; past-the-end read not tried\n", label);
		return;
	}
	pm_region_stats(r, &before);
	sig = try_read(base + span, &v);
	pm_region_stats(r, &after);
	CHECK(sig == SIGSEGV, "reading the byte after the last chunk gave %s (byte %u)",
	      sig ? strsignal(sig) : "no signal", v);
	CHECK(after.faults == before.faults, "a fault past the end was served by the region");
}

/* ----------------------------------------------------- the read grid */

/* Reads go in blocks of a page, or a quarter chunk for big chunks: each
 * chunk is entered a few times, and a scattered order refaults it as many. */
static size_t block_for(size_t chunk)
{
	return chunk >= 16 * KiB ? chunk / 4 : chunk < 4 * KiB ? chunk : 4 * KiB;
}

struct rcase {
	int backend;
	size_t chunk, length, budget;
	int readahead, fillers, order;
	uint64_t seed;
};

static unsigned long ncases;

static void run_case(const struct rcase *c)
{
	size_t nchunks = (c->length + c->chunk - 1) / c->chunk, bad;
	size_t block = block_for(c->chunk), per_chunk = c->chunk / block;
	const unsigned char *base;
	struct fctx f;
	pm_region *r = NULL;
	int ret;

	snprintf(label, sizeof(label),
		 "%s, chunk %zu, length %zu (%zu chunks), budget %zu, read-ahead %d, %d fillers, %s",
		 pm_backend_name(c->backend), c->chunk, c->length, nchunks, c->budget, c->readahead, c->fillers,
		 order_names[c->order]);
	ncases++;
	fctx_init(&f, c->seed, c->length, c->chunk, c->backend);
	ret = open_region(&r, &f, c->backend, c->length, c->chunk, c->budget, c->readahead, c->fillers, 0);
	CHECK(ret == 0, "open: %s", pm_strerror(ret));
	if (ret) {
		fctx_free(&f);
		return;
	}
	base = pm_region_data(r);
	CHECK(base && (uintptr_t)base % page_size == 0, "data %p", (const void *)base);
	CHECK(pm_region_length(r) == c->length, "length %zu", pm_region_length(r));
	t_consumer = true;
	/* Twice: the second pass reads chunks evicted by the first. */
	for (int pass = 0; pass < 2; pass++) {
		bad = scan(base, c->seed, c->length, block, c->order, per_chunk + 1, c->seed + (uint64_t)pass);
		CHECK(bad == 0, "pass %d: %zu bytes differ from the pattern", pass, bad);
	}
	bad = straddle_reads(base, c->seed, c->length, c->chunk, 4 * nchunks, c->seed);
	CHECK(bad == 0, "%zu bytes differ in short reads across chunk boundaries", bad);
	check_tail(r, c->length, c->chunk);
	t_consumer = false;
	check_stats(r, &f, c->backend, c->length, c->chunk, c->budget, c->readahead, 0);
	fctx_verify(&f);
	CHECK(pm_region_error(r) == 0, "pm_region_error %d", pm_region_error(r));
	ret = pm_region_close(r);
	CHECK(ret == 0, "close: %d", ret);
	fctx_free(&f);
}

/* Chunk sizes from a page to 4 MiB, each over a few to a few dozen chunks
 * (the length cut mid-chunk two times in three); budgets of two chunks (the
 * least accepted), three chunks and unlimited; every access order under
 * every budget, read-ahead on for half of them and off for the other half;
 * each lazy backend, and eager. */
static void test_grid(void)
{
	static const struct {
		size_t chunk, nchunks;
	} sizes[] = {
		{ 4 * KiB, 32 }, { 8 * KiB, 24 }, { 64 * KiB, 16 }, { 1 * MiB, 8 }, { 2 * MiB, 5 }, { 4 * MiB, 4 },
	};
	const size_t budgets[] = { 2, 3, 0 }; /* in chunks; 0: unlimited */
	unsigned n = 0;

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		size_t chunk = sizes[si].chunk;

		if (chunk < page_size)
			continue;
		for (int bi = 0; bi < T_NBACKENDS; bi++) {
			int backend = t_backends[bi];

			if (!backend_usable(backend))
				continue;
			for (size_t bu = 0; bu < 3; bu++)
				for (int order = 0; order < ORDER_COUNT; order++, n++) {
					struct rcase c = {
						.backend = backend,
						.chunk = chunk,
						.budget = budgets[bu] ? budgets[bu] * chunk : PM_BUDGET_UNLIMITED,
						.readahead = (bu + (size_t)order + si) % 2 ? -1 : 0,
						.fillers = (int)(n % 3), /* default, 1, 2 */
						.order = order,
						.seed = 0x51ed + n,
					};
					size_t cut = n % 3 == 0 ? 0 : chunk / 3 + 5 + n % 7;

					/* Budgets and read-ahead mean nothing to eager. */
					if (backend == PM_BACKEND_EAGER && bu)
						continue;
					c.length = sizes[si].nchunks * chunk - cut;
					run_case(&c);
				}
		}
	}
}

/* Tiny and ragged lengths: one byte, a page minus and plus one, a chunk
 * minus and plus one, a single partial chunk. */
static void test_lengths(void)
{
	const size_t chunks[] = { 4 * KiB, 64 * KiB, 2 * MiB };
	unsigned n = 0;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];

		if (!backend_usable(backend))
			continue;
		for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
			size_t chunk = chunks[ci];
			const size_t lengths[] = { 1, page_size - 1, page_size, page_size + 1, chunk - 1, chunk + 1,
						   3 * chunk + 7, chunk / 2 + 3 };

			if (chunk < page_size)
				continue;
			for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++, n++) {
				struct rcase c = {
					.backend = backend,
					.chunk = chunk,
					.length = lengths[li],
					.budget = 2 * chunk,
					.readahead = n % 2 ? -1 : 0,
					.fillers = 1,
					.order = (int)(n % ORDER_COUNT),
					.seed = 0x1e57 + n,
				};

				if (c.length == 0)
					continue;
				run_case(&c);
			}
		}
	}
}

/* ------------------------------------------------------ read-ahead */

/* Waits (at most 20 s) until *counter reaches want. */
static bool wait_for(const pm_region *r, size_t field_off, uint64_t want)
{
	struct pm_stats st = { 0 };

	for (int i = 0; i < 20000; i++) {
		uint64_t v;

		pm_region_stats(r, &st);
		memcpy(&v, (const char *)&st + field_off, sizeof(v));
		if (v >= want)
			return true;
		usleep(1000);
	}
	return false;
}

/* A reader that touches chunks 0, 1 and 2 has started a stream (two in a
 * row are not enough: random touches make those): the chunks after them
 * are filled before anyone touches them, and reading them then fills
 * nothing again. With read-ahead off, nothing is filled ahead. One filler
 * thread: with several, the SIGSEGV backend may note the faults out of
 * order and only see the stream a chunk later. */
static void test_readahead(void)
{
	const size_t chunk = 64 * KiB, nchunks = 64, length = nchunks * chunk;

	for (int bi = 0; bi < T_NLAZY; bi++) {
		int backend = t_lazy_backends[bi];

		if (!backend_usable(backend))
			continue;
		for (int on = 1; on >= 0; on--) {
			const unsigned char *base;
			struct pm_stats st = { 0 };
			struct fctx f;
			pm_region *r = NULL;
			unsigned char v;
			size_t bad = 0;

			snprintf(label, sizeof(label), "read-ahead %s, %s", on ? "on (4 chunks)" : "off",
				 pm_backend_name(backend));
			fctx_init(&f, 0xa4ead + (uint64_t)on, length, chunk, backend);
			CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, 16 * chunk, on ? 4 : -1, 1, 0), 0);
			base = pm_region_data(r);
			t_consumer = true;
			v = *(const volatile unsigned char *)base;
			v = *(const volatile unsigned char *)(base + chunk);
			v = *(const volatile unsigned char *)(base + 2 * chunk);
			(void)v;
			if (on) {
				bool filled = wait_for(r, offsetof(struct pm_stats, readahead_fills), 4);

				CHECK(filled, "chunks 3-6 were never read ahead");
				for (size_t c = 3; c < 7; c++)
					CHECK(atomic_load(&f.count[c]) == 1, "chunk %zu filled %u times before it was read", c,
					      atomic_load(&f.count[c]));
			} else {
				usleep(50000); /* room for a read-ahead that should not happen */
				for (size_t c = 3; c < 7; c++)
					CHECK(atomic_load(&f.count[c]) == 0, "read-ahead off, yet chunk %zu was filled", c);
			}
			for (size_t c = 3; c < 7; c++)
				bad += pat_check(base, f.seed, c * chunk, chunk);
			CHECK(bad == 0, "%zu bytes differ", bad);
			for (size_t c = 3; c < 7; c++)
				CHECK(atomic_load(&f.count[c]) == 1, "chunk %zu filled %u times", c, atomic_load(&f.count[c]));
			if (on) {
				CHECK(wait_for(r, offsetof(struct pm_stats, readahead_hits), 1), "no read-ahead hit counted");
			} else {
				pm_region_stats(r, &st);
				CHECK(st.readahead_fills == 0 && st.readahead_hits == 0, "read-ahead off: %" PRIu64 " fills",
				      st.readahead_fills);
			}
			/* The rest, sequentially; then the counters. The reader
			 * pauses between chunks: one that outruns the one filler
			 * meets every chunk still queued, and that faults. */
			bad = 0;
			for (size_t c = 0; c < nchunks; c++) {
				bad += pat_check(base, f.seed, c * chunk, chunk);
				if (on)
					usleep(2000);
			}
			CHECK(bad == 0, "%zu bytes differ", bad);
			t_consumer = false;
			check_stats(r, &f, backend, length, chunk, 16 * chunk, on ? 4 : -1, 0);
			if (on) {
				pm_region_stats(r, &st);
				CHECK(st.faults < nchunks, "a sequential scan with read-ahead faulted on every chunk (%" PRIu64 " faults, %" PRIu64 " read ahead, %" PRIu64 " hits)", st.faults, st.readahead_fills, st.readahead_hits);
			}
			fctx_verify(&f);
			CU_ASSERT_EQUAL(pm_region_close(r), 0);
			fctx_free(&f);
		}
	}
}

/* A reader of every other chunk is no stream to read ahead for: the chunks
 * it skips stay empty, and filling them would double the work. Yet it
 * does go forward, so the chunks behind it are recycled rather than
 * piling up to the budget. Whole chunks (2 MiB) and copied ones (64 KiB);
 * in order, and with one pair read second first (as two fillers may tell
 * the region of a reader's chunks): the chunk told late lies between two
 * pieces of the stream, and is behind the reader all the same. */
static void test_readahead_strided(void)
{
	static const size_t chunks[] = { 64 * KiB, 2 * MiB };
	const size_t nchunks = 64;

	for (int bi = 0; bi < T_NLAZY; bi++) {
		int backend = t_lazy_backends[bi];

		if (!backend_usable(backend))
			continue;
		for (size_t ci = 0; ci < 2 * sizeof(chunks) / sizeof(chunks[0]); ci++) {
			const size_t chunk = chunks[ci % 2], length = nchunks * chunk, budget = nchunks / 2 * chunk;
			const bool swap = ci >= 2;
			const unsigned char *base;
			struct pm_stats st = { .size = sizeof(st) };
			struct fctx f;
			pm_region *r = NULL;
			size_t bad = 0, filled_odd = 0;

			snprintf(label, sizeof(label), "every other chunk of %zu KiB%s, %s", chunk / KiB,
				 swap ? ", 10 before 8" : "", pm_backend_name(backend));
			fctx_init(&f, 0x5d2 + (uint64_t)ci, length, chunk, backend);
			CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, budget, 0, 0, 0), 0);
			base = pm_region_data(r);
			t_consumer = true;
			for (size_t c = 0; c < nchunks; c += 2) {
				size_t k = swap && c == 8 ? 10 : swap && c == 10 ? 8 : c;

				bad += pat_check(base, f.seed, k * chunk, chunk);
			}
			t_consumer = false;
			CHECK(bad == 0, "%zu bytes differ", bad);
			for (size_t c = 1; c < nchunks; c += 2)
				filled_odd += atomic_load(&f.count[c]) != 0;
			CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
			CHECK(filled_odd == 0 && st.readahead_fills == 0,
			      "%zu skipped chunks filled, %" PRIu64 " read ahead", filled_odd, st.readahead_fills);
			CHECK(st.peak_resident_bytes <= budget / 2, "peak residency %" PRIu64 " of %zu chunks",
			      st.peak_resident_bytes / chunk, budget / chunk);
			fctx_verify(&f);
			CHECK(pm_region_error(r) == 0, "error %d", pm_region_error(r));
			CU_ASSERT_EQUAL(pm_region_close(r), 0);
			fctx_free(&f);
		}
	}
}

/* ----------------------------------------------- errors, environment */

static void region_fails(const struct pm_region_opts *o, int code, int line)
{
	static char sentinel;
	pm_region *r = (pm_region *)&sentinel;
	int ret = pm_region_open(o, &r);
	const char *text = pm_strerror(ret);

	snprintf(label, sizeof(label), "line %d", line);
	CHECK(ret == code, "pm_region_open returned %d (%s), want %d (%s)", ret, text, code, pm_strerror(code));
	CHECK(r == NULL, "*out not NULL after a failure");
	CHECK(text && *text && strcmp(text, "unknown error") != 0, "no words for %d", ret);
	CHECK(pm_error_errno(ret) == (code == -PM_ETOOBIG ? EOVERFLOW : EINVAL), "errno %d for %d",
	      pm_error_errno(ret), ret);
	if (ret == 0)
		pm_region_close(r);
}
#define REGION_FAILS(o, code) region_fails(o, code, __LINE__)

static void test_errors(void)
{
	struct fctx f;
	struct pm_region_opts o = { .size = sizeof(o), .length = 8192, .fill = fill_pattern, .ctx = &f };
	const size_t bad_chunks[] = { 1, 1000, page_size / 2, page_size + 1, 3 * page_size, SIZE_MAX,
				      (size_t)1 << 63 };
	const int bad_backends[] = { -1, PM_BACKEND_NONE, PM_BACKEND_COUNT, 99, INT_MIN, INT_MAX };
	pm_region *r = (pm_region *)&o;
	struct pm_stats st = { 0 };

	fctx_init(&f, 7, 8192, 4 * MiB, PM_BACKEND_SIGSEGV);
	CU_ASSERT_EQUAL(pm_region_open(NULL, &r), -PM_ENULL);
	CU_ASSERT_PTR_NULL(r);
	CU_ASSERT_EQUAL(pm_region_open(&o, NULL), -PM_ENULL);
	o.fill = NULL;
	REGION_FAILS(&o, -PM_ENULL);
	o.fill = fill_pattern;
	o.size = 1;
	REGION_FAILS(&o, -PM_EOPTSIZE);
	o.size = sizeof(o) + 8;
	REGION_FAILS(&o, -PM_EOPTSIZE);
	o.size = sizeof(o) - 8;
	REGION_FAILS(&o, -PM_EOPTSIZE);
	o.size = 0;
	o.length = 0;
	REGION_FAILS(&o, -PM_ELENGTH);
	o.length = SIZE_MAX;
	REGION_FAILS(&o, -PM_ETOOBIG);
	o.length = SIZE_MAX / 2;
	o.lazy.backend = PM_BACKEND_UFFD;
	REGION_FAILS(&o, -PM_ETOOBIG);
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	REGION_FAILS(&o, -PM_ETOOBIG);
	o.length = 8192;
	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
		o.lazy.chunk = bad_chunks[i];
		REGION_FAILS(&o, -PM_ECHUNK);
	}
	o.lazy.chunk = 0;
	o.lazy.threads = -1;
	REGION_FAILS(&o, -PM_ETHREADS);
	o.lazy.threads = INT_MIN;
	REGION_FAILS(&o, -PM_ETHREADS);
	o.lazy.threads = 0;
	for (size_t i = 0; i < sizeof(bad_backends) / sizeof(bad_backends[0]); i++) {
		o.lazy.backend = bad_backends[i];
		REGION_FAILS(&o, -PM_EBACKEND);
	}

	/* NULL handles. */
	CU_ASSERT_PTR_NULL(pm_region_data(NULL));
	CU_ASSERT_EQUAL(pm_region_length(NULL), 0);
	CU_ASSERT_EQUAL(pm_region_error(NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_region_stats(NULL, &st), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_region_close(NULL), 0);

	/* Zeros are the documented defaults: 4 MiB chunks, the default
	 * budget, filler threads, read-ahead. */
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&o, &r), 0);
	CU_ASSERT_EQUAL(pm_region_stats(r, NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
	snprintf(label, sizeof(label), "defaults");
	CHECK(st.chunk_bytes == 4 * MiB, "default chunk %zu", st.chunk_bytes);
	CHECK(pm_region_length(r) == 8192, "length %zu", pm_region_length(r));
	CHECK(pat_check(pm_region_data(r), f.seed, 0, 8192) == 0, "content");
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	fctx_free(&f);
}

/* Opens a small auto region with PATCHMAP_BACKEND set to env (NULL:
 * unset) and opts asking for `backend`; returns the open's result and the
 * backend in force. */
static int open_with_env(const char *env, int backend, int *got)
{
	struct fctx f;
	pm_region *r = NULL;
	struct pm_stats st = { 0 };
	int ret;

	if (env)
		setenv("PATCHMAP_BACKEND", env, 1);
	else
		unsetenv("PATCHMAP_BACKEND");
	fctx_init(&f, 0xe4, 3 * page_size + 5, page_size, backend);
	f.lazy = true;
	ret = open_region(&r, &f, backend, 3 * page_size + 5, page_size, 0, 0, 1, 0);
	*got = -1;
	if (ret == 0) {
		t_consumer = true;
		CHECK(pat_check(pm_region_data(r), f.seed, 0, 3 * page_size + 5) == 0, "content");
		t_consumer = false;
		pm_region_stats(r, &st);
		*got = st.backend;
		CU_ASSERT_EQUAL(pm_region_close(r), 0);
	}
	fctx_free(&f);
	return ret;
}

/* PATCHMAP_BACKEND picks the backend when the options say auto; an unknown
 * name (or one a region cannot use) is -PM_EBACKEND; a backend named in the
 * options wins over the variable. */
static void test_environment(void)
{
	static const char *const forced[] = { "uffd", "sigsegv", "eager" };
	static const int forced_id[] = { PM_BACKEND_UFFD, PM_BACKEND_SIGSEGV, PM_BACKEND_EAGER };
	static const char *const bad[] = { "bogus", "none", "auto", "uffd ", "sig", "eager2" };
	char *saved = getenv("PATCHMAP_BACKEND") ? strdup(getenv("PATCHMAP_BACKEND")) : NULL;
	int got, ret;

	for (int i = 0; i < 3; i++) {
		if (!backend_usable(forced_id[i]))
			continue;
		snprintf(label, sizeof(label), "PATCHMAP_BACKEND=%s", forced[i]);
		ret = open_with_env(forced[i], PM_BACKEND_AUTO, &got);
		CHECK(ret == 0 && got == forced_id[i], "open %d (%s), backend %d", ret, pm_strerror(ret), got);
		/* Named in the options: the variable is not even looked at. */
		for (int j = 0; j < 3; j++) {
			if (j == i || !backend_usable(forced_id[j]))
				continue;
			ret = open_with_env(forced[i], forced_id[j], &got);
			CHECK(ret == 0 && got == forced_id[j], "asked for %s: open %d, backend %d", forced[j], ret, got);
		}
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(label, sizeof(label), "PATCHMAP_BACKEND='%s'", bad[i]);
		ret = open_with_env(bad[i], PM_BACKEND_AUTO, &got);
		CHECK(ret == -PM_EBACKEND, "open returned %d (%s)", ret, pm_strerror(ret));
		ret = open_with_env(bad[i], PM_BACKEND_SIGSEGV, &got);
		CHECK(ret == 0 && got == PM_BACKEND_SIGSEGV, "with sigsegv asked: open %d", ret);
	}
	/* Empty or unset: auto, userfaultfd where it can move pages. */
	for (int empty = 0; empty < 2; empty++) {
		snprintf(label, sizeof(label), "PATCHMAP_BACKEND %s", empty ? "empty" : "unset");
		ret = open_with_env(empty ? "" : NULL, PM_BACKEND_AUTO, &got);
		CHECK(ret == 0 && (got == PM_BACKEND_UFFD || got == PM_BACKEND_SIGSEGV), "open %d, backend %d", ret, got);
		if (backend_usable(PM_BACKEND_UFFD)) {
			struct fctx f;
			pm_region *r = NULL;
			struct pm_stats st = { 0 };

			fctx_init(&f, 1, page_size, page_size, PM_BACKEND_UFFD);
			CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, PM_BACKEND_UFFD, page_size, page_size, 0, 0, 1, 0), 0);
			pm_region_stats(r, &st);
			if (st.mechanism & PM_MECH_MOVE)
				CHECK(got == PM_BACKEND_UFFD, "userfaultfd moves pages here, but auto chose %d", got);
			pm_region_close(r);
			fctx_free(&f);
		}
	}
	/* The matrix follows the same rule. */
	if (backend_usable(PM_BACKEND_SIGSEGV)) {
		static unsigned char img[32 * 32];
		const size_t shape[2] = { 32, 32 };
		struct pm_matrix_opts o = { .size = sizeof(o) };
		struct pm_stats st = { 0 };
		pm_matrix *m = NULL;

		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, shape), 0);
		o.window[0] = o.window[1] = (struct pm_window){ .size = 3, .step = 1, .dilation = 1 };
		setenv("PATCHMAP_BACKEND", "sigsegv", 1);
		snprintf(label, sizeof(label), "matrix, PATCHMAP_BACKEND=sigsegv");
		CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
		pm_matrix_stats(m, &st);
		CHECK(st.backend == PM_BACKEND_SIGSEGV, "backend %d", st.backend);
		pm_matrix_close(m);
		setenv("PATCHMAP_BACKEND", "nonsense", 1);
		m = (pm_matrix *)&o;
		CHECK(pm_matrix_open(&o, &m) == -PM_EBACKEND && m == NULL, "bad PATCHMAP_BACKEND accepted");
	}
	if (saved) {
		setenv("PATCHMAP_BACKEND", saved, 1);
		free(saved);
	} else {
		unsetenv("PATCHMAP_BACKEND");
	}
}

/* ----------------------------------------------------- stray writes */

/* Writes to a resident and to an absent chunk raise SIGSEGV (caught here),
 * change nothing, and leave the region working: it still reads right and
 * its counters still add up. With PM_LAZY_WRITABLE (uffd only), a write
 * lands and lasts until the chunk is evicted; the SIGSEGV backend ignores
 * the flag. */
static void writes(bool uffd_writable)
{
	const size_t chunk = 64 * KiB, nchunks = 6, length = nchunks * chunk;

	for (int bi = 0; bi < T_NBACKENDS; bi++)
		for (int writable = 0; writable < 2; writable++) {
			int backend = t_backends[bi];
			unsigned flags = writable ? PM_LAZY_WRITABLE : 0;
			const unsigned char *base;
			struct fctx f;
			pm_region *r = NULL;
			unsigned char v;
			int sig;

			if (!backend_usable(backend) || (writable && backend == PM_BACKEND_EAGER) ||
			    uffd_writable != (writable && backend == PM_BACKEND_UFFD))
				continue;
			snprintf(label, sizeof(label), "writes, %s%s", pm_backend_name(backend),
				 writable ? ", PM_LAZY_WRITABLE" : "");
			fctx_init(&f, 0x3417e + (uint64_t)bi, length, chunk, backend);
			CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, 2 * chunk, -1, 1, flags), 0);
			base = pm_region_data(r);
			t_consumer = true;
			v = base[100];
			CHECK(v == pat_byte(f.seed, 100), "first read");
			sig = try_write(base + 100, (unsigned char)~v);
			if (writable && backend == PM_BACKEND_UFFD) {
				size_t bad;

				CHECK(sig == 0, "a write to a writable region raised %s", strsignal(sig));
				CHECK(base[100] == (unsigned char)~v, "the write did not land");
				/* Read the other chunks: the budget of two evicts chunk 0. */
				bad = pat_check(base, f.seed, chunk, length - chunk);
				CHECK(bad == 0, "%zu bytes differ", bad);
				CHECK(base[100] == pat_byte(f.seed, 100), "the written byte survived an eviction");
			} else {
				CHECK(sig == SIGSEGV, "a write to a resident chunk gave %s", sig ? strsignal(sig) : "no signal");
				sig = try_write(base + 100, (unsigned char)~v);
				CHECK(sig == SIGSEGV, "a second write gave %s", sig ? strsignal(sig) : "no signal");
				sig = try_write(base + 4 * chunk + 7, 0);
				CHECK(sig == SIGSEGV, "a write to an absent chunk gave %s", sig ? strsignal(sig) : "no signal");
				CHECK(base[100] == v, "a refused write changed the byte");
			}
			/* Still whole: every byte, twice, and the counters. */
			for (int pass = 0; pass < 2; pass++) {
				size_t bad = scan(base, f.seed, length, 4 * KiB, pass ? ORDER_RANDOM : ORDER_REV, 0, 5);

				CHECK(bad == 0, "after the writes, pass %d: %zu bytes differ", pass, bad);
			}
			t_consumer = false;
			check_stats(r, &f, backend, length, chunk, 2 * chunk, -1, flags);
			fctx_verify(&f);
			CHECK(pm_region_error(r) == 0, "error %d after stray writes", pm_region_error(r));
			CU_ASSERT_EQUAL(pm_region_close(r), 0);
			fctx_free(&f);
		}
}

static void test_writes(void)
{
	writes(false);
}

static void test_writes_uffd_writable(void)
{
	writes(true);
}

/* ----------------------------------------------------- failing fills */

/* A fill that fails for one chunk: touching that chunk raises SIGBUS (here
 * caught), every time; the error is kept (pm_region_error, then
 * pm_region_close); the other chunks still read right, through evictions.
 * The eager backend fails at open. */
static void test_fill_errors(void)
{
	const size_t chunk = 64 * KiB, nchunks = 8, length = nchunks * chunk, bad_chunk = 5;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];
		const unsigned char *base;
		struct pm_stats st = { 0 };
		struct fctx f;
		pm_region *r = NULL;
		unsigned char v;
		size_t bad = 0;
		int sig, ret;

		if (!backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "fill error, %s", pm_backend_name(backend));
		fctx_init(&f, 0xe10 + (uint64_t)bi, length, chunk, backend);
		f.fail_chunk = bad_chunk;
		f.fail_err = -EIO;
		f.fail_times = -1;
		ret = open_region(&r, &f, backend, length, chunk, 3 * chunk, -1, 2, 0);
		if (backend == PM_BACKEND_EAGER) {
			CHECK(ret == -EIO && r == NULL, "eager open with a failing fill returned %d", ret);
			pm_region_close(r);
			fctx_free(&f);
			continue;
		}
		CU_ASSERT_EQUAL_FATAL(ret, 0);
		base = pm_region_data(r);
		t_consumer = true;
		for (size_t c = 0; c < nchunks; c++)
			if (c != bad_chunk)
				bad += pat_check(base, f.seed, c * chunk, chunk);
		CHECK(bad == 0, "%zu bytes differ before the failure", bad);
		CHECK(pm_region_error(r) == 0, "an error (%d) before the failing chunk was touched", pm_region_error(r));
		for (int i = 0; i < 3; i++) {
			sig = try_read(base + bad_chunk * chunk + (size_t)i * 4097, &v);
			CHECK(sig == SIGBUS, "touch %d of the failed chunk gave %s (byte %u)", i,
			      sig ? strsignal(sig) : "no signal", v);
		}
		CHECK(pm_region_error(r) == -EIO, "pm_region_error %d, want %d", pm_region_error(r), -EIO);
		bad = 0;
		for (int pass = 0; pass < 2; pass++)
			for (size_t c = nchunks; c-- > 0;)
				if (c != bad_chunk)
					bad += pat_check(base, f.seed, c * chunk, chunk);
		CHECK(bad == 0, "%zu bytes differ after the failure", bad);
		t_consumer = false;
		pm_region_stats(r, &st);
		CHECK(st.fill_errors >= 1 && st.fill_errors == atomic_load(&f.calls) - atomic_load(&f.ok_calls),
		      "%" PRIu64 " fill errors counted, %" PRIu64 " happened", st.fill_errors,
		      (uint64_t)(atomic_load(&f.calls) - atomic_load(&f.ok_calls)));
		CHECK(st.peak_resident_bytes <= st.budget_bytes, "peak %" PRIu64 " above the budget", st.peak_resident_bytes);
		fctx_verify(&f);
		CHECK(pm_region_error(r) == -EIO, "pm_region_error %d", pm_region_error(r));
		ret = pm_region_close(r);
		CHECK(ret == -EIO, "close returned %d, want %d", ret, -EIO);
		fctx_free(&f);
	}
}

/* A read-ahead fill that fails once, before anyone touches its chunk: the
 * touch fills it again and reads right. (One filler: see test_readahead.) */
static void test_readahead_error(void)
{
	const size_t chunk = 64 * KiB, nchunks = 16, length = nchunks * chunk;

	for (int bi = 0; bi < T_NLAZY; bi++) {
		int backend = t_lazy_backends[bi];
		const unsigned char *base;
		struct pm_stats st = { 0 };
		struct fctx f;
		pm_region *r = NULL;
		size_t bad;
		int ret;

		if (!backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "read-ahead error, %s", pm_backend_name(backend));
		fctx_init(&f, 0xae + (uint64_t)bi, length, chunk, backend);
		f.fail_chunk = 4;
		f.fail_err = -EIO;
		f.fail_times = 1;
		CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, 16 * chunk, 4, 1, 0), 0);
		base = pm_region_data(r);
		t_consumer = true;
		bad = pat_check(base, f.seed, 0, 3 * chunk);
		for (int i = 0; i < 20000 && atomic_load(&f.failed) == 0; i++)
			usleep(1000);
		CHECK(atomic_load(&f.failed) == 1, "chunk 4 was not read ahead");
		bad += scan(base, f.seed, length, 4 * KiB, ORDER_SEQ, 0, 0);
		CHECK(bad == 0, "%zu bytes differ", bad);
		t_consumer = false;
		settle(r, &f, &st);
		CHECK(st.fill_errors == 1, "%" PRIu64 " fill errors", st.fill_errors);
		fctx_verify(&f);
		ret = pm_region_error(r);
		CHECK(pm_region_close(r) == ret, "close and pm_region_error disagree");
		fctx_free(&f);
	}
}

/* ----------------------------------------------------- kernel accesses */

/* write(2) from the region into a pipe: the kernel reads an absent chunk.
 * Full userfaultfd serves it; the SIGSEGV backend cannot (no signal for a
 * kernel access): EFAULT, until the chunk is resident. */
static void test_kernel_access(void)
{
	const size_t chunk = 64 * KiB, length = 4 * chunk, off = 2 * chunk + 10, n = 4000;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi], fd[2];
		const unsigned char *base;
		unsigned char buf[4000];
		struct pm_stats st = { 0 };
		struct fctx f;
		pm_region *r = NULL;
		ssize_t w;
		int err;

		if (!backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "kernel access, %s", pm_backend_name(backend));
		fctx_init(&f, 0x4e4 + (uint64_t)bi, length, chunk, backend);
		CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, 0, -1, 1, 0), 0);
		CU_ASSERT_EQUAL_FATAL(pipe(fd), 0);
		base = pm_region_data(r);
		pm_region_stats(r, &st);
		w = write(fd[1], base + off, n);
		err = errno;
		if (backend == PM_BACKEND_SIGSEGV ||
		    (backend == PM_BACKEND_UFFD && (st.mechanism & PM_MECH_UFFD_USER_ONLY))) {
			CHECK(w < 0 && err == EFAULT, "write(2) from an absent chunk returned %zd (%s)", w, strerror(err));
			t_consumer = true;
			CHECK(base[off] == pat_byte(f.seed, off), "touch");
			t_consumer = false;
			w = write(fd[1], base + off, n);
		}
		CHECK(w == (ssize_t)n, "write(2) from the region returned %zd (%s)", w, strerror(errno));
		if (w == (ssize_t)n) {
			CHECK(read(fd[0], buf, n) == (ssize_t)n, "pipe read");
			CHECK(pat_diff(buf, f.seed, off, n) == 0, "the bytes written are not the region's");
		}
		close(fd[0]);
		close(fd[1]);
		CU_ASSERT_EQUAL(pm_region_close(r), 0);
		fctx_free(&f);
	}
}

/* ------------------------------------------------- consumer threads */

/* Every reader reads every byte of the region, starting at its own place
 * and in its own order, so that all of them read the same chunks at once
 * and each checks everything. Assertions stay in the main thread. */
struct reader {
	const unsigned char *base;
	uint64_t seed;
	size_t length, chunk, block, rotate;
	int order;
	uint64_t rseed;
	pthread_barrier_t *go;
	size_t bad;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	size_t n = (rd->length + rd->block - 1) / rd->block, *idx;

	t_consumer = true;
	idx = make_order(n, rd->order, rd->chunk / rd->block + 1, rd->rseed);
	if (rd->go)
		pthread_barrier_wait(rd->go);
	for (size_t i = 0; i < n; i++) {
		size_t b = (idx[i] + rd->rotate) % n, off = b * rd->block;
		size_t len = rd->length - off < rd->block ? rd->length - off : rd->block;

		rd->bad += pat_check(rd->base, rd->seed, off, len);
	}
	rd->bad += straddle_reads(rd->base, rd->seed, rd->length, rd->chunk, 64, rd->rseed);
	free(idx);
	return NULL;
}

/* Starts n readers of the region and joins them; returns the bytes that
 * differed. */
static size_t run_readers(const unsigned char *base, uint64_t seed, size_t length, size_t chunk, int n,
			  uint64_t rseed)
{
	struct reader rd[8];
	pthread_t th[8];
	pthread_barrier_t go;
	size_t bad = 0;
	size_t block = block_for(chunk), nblocks = (length + block - 1) / block;

	CU_ASSERT_FATAL(n >= 1 && n <= 8);
	CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&go, NULL, (unsigned)n), 0);
	for (int t = 0; t < n; t++) {
		rd[t] = (struct reader){ base, seed, length, chunk, block, nblocks * (size_t)t / (size_t)n,
					 (int)((uint64_t)t + rseed) % ORDER_COUNT, rseed * 31 + (uint64_t)t, &go, 0 };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, reader_main, &rd[t]), 0);
	}
	for (int t = 0; t < n; t++) {
		pthread_join(th[t], NULL);
		CHECK(rd[t].bad == 0, "reader %d (%s from block %zu): %zu bytes differ", t, order_names[rd[t].order],
		      rd[t].rotate, rd[t].bad);
		bad += rd[t].bad;
	}
	pthread_barrier_destroy(&go);
	return bad;
}

/* 1, 2 and 8 readers on each backend, under budgets of two chunks (the
 * least accepted), four chunks and unlimited; chunks of 4 KiB, 64 KiB and 2 MiB in
 * turn; read-ahead on and off in turn. */
static void test_readers(void)
{
	static const int nreaders[] = { 1, 2, 8 };
	static const struct {
		size_t chunk, nchunks;
	} sizes[] = { { 4 * KiB, 48 }, { 64 * KiB, 16 }, { 2 * MiB, 5 } };
	const size_t budgets[] = { 2, 4, 0 };
	unsigned n = 0;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];

		if (!backend_usable(backend))
			continue;
		for (size_t ti = 0; ti < 3; ti++)
			for (size_t bu = 0; bu < 3; bu++, n++) {
				size_t chunk = sizes[n % 3].chunk, length = sizes[n % 3].nchunks * chunk - chunk / 2 - 3;
				size_t budget = budgets[bu] ? budgets[bu] * chunk : PM_BUDGET_UNLIMITED;
				int readahead = n % 2 ? -1 : 0, fillers = (int)(n % 3);
				struct fctx f;
				pm_region *r = NULL;
				int ret;

				if (backend == PM_BACKEND_EAGER && bu)
					continue;
				snprintf(label, sizeof(label), "%d readers, %s, chunk %zu, length %zu, budget %zu, read-ahead %d",
					 nreaders[ti], pm_backend_name(backend), chunk, length, budget, readahead);
				ncases++;
				fctx_init(&f, 0x7ead + n, length, chunk, backend);
				ret = open_region(&r, &f, backend, length, chunk, budget, readahead, fillers, 0);
				CU_ASSERT_EQUAL_FATAL(ret, 0);
				run_readers(pm_region_data(r), f.seed, length, chunk, nreaders[ti], n);
				check_stats(r, &f, backend, length, chunk, budget, readahead, 0);
				fctx_verify(&f);
				CHECK(pm_region_error(r) == 0, "error %d", pm_region_error(r));
				CU_ASSERT_EQUAL(pm_region_close(r), 0);
				fctx_free(&f);
			}
	}
}

/* Threads that read one stream together, each its part of every block and
 * then waiting for the others (as BLAS threads split the rows of a GEMM),
 * are one sequential reader: the region keeps what one reader keeps, never
 * its whole budget. The chunks behind them must be recycled at once, in
 * whatever order their faults arrive: one thread reading each pair of
 * chunks second first makes the order two such threads often make. */
struct part_reader {
	const unsigned char *base;
	uint64_t seed;
	size_t length, block;
	int t, n;
	pthread_barrier_t *step;
	size_t bad;
};

static void *part_reader_main(void *arg)
{
	struct part_reader *p = arg;

	t_consumer = true;
	if (p->n == 1) {
		for (size_t b0 = 0; b0 < p->length; b0 += 2 * p->block)
			for (size_t k = 2; k-- > 0;) {
				size_t off = b0 + k * p->block;

				if (off < p->length)
					p->bad += pat_check(p->base, p->seed, off,
							    p->length - off < p->block ? p->length - off : p->block);
			}
		return NULL;
	}
	for (size_t b0 = 0; b0 < p->length; b0 += p->block) {
		size_t len = p->length - b0 < p->block ? p->length - b0 : p->block;
		size_t from = b0 + len * (size_t)p->t / (size_t)p->n, to = b0 + len * (size_t)(p->t + 1) / (size_t)p->n;

		p->bad += pat_check(p->base, p->seed, from, to - from);
		pthread_barrier_wait(p->step);
	}
	return NULL;
}

static void test_stream_parts(void)
{
	const size_t chunk = 2 * MiB, nchunks = 96, budget = 48 * chunk, length = nchunks * chunk - 12345;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];

		if (backend == PM_BACKEND_EAGER || !backend_usable(backend))
			continue;
		for (int n = 1; n <= 4; n++)
			for (int rep = 0; rep < 4; rep++) {
				/* parts within a chunk, then parts of three chunks
				 * each; one thread: chunk pairs, second first */
				size_t block = n == 1 ? chunk : rep % 2 ? 3 * (size_t)n * chunk : 2 * chunk;
				struct part_reader pr[4];
				pthread_t th[4];
				pthread_barrier_t step;
				struct pm_stats st = { .size = sizeof(st) };
				struct fctx f;
				pm_region *r = NULL;

				if (n == 1)
					snprintf(label, sizeof(label), "one thread reading chunk pairs second first, %s, run %d",
						 pm_backend_name(backend), rep);
				else
					snprintf(label, sizeof(label), "%d threads reading parts of blocks of %zu MiB, %s, run %d",
						 n, block / MiB, pm_backend_name(backend), rep);
				ncases++;
				fctx_init(&f, 0x5a7 + (uint64_t)rep, length, chunk, backend);
				CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, budget, 0, 0, 0), 0);
				CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&step, NULL, (unsigned)n), 0);
				for (int t = 0; t < n; t++) {
					pr[t] = (struct part_reader){ pm_region_data(r), f.seed, length, block, t, n, &step, 0 };
					CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, part_reader_main, &pr[t]), 0);
				}
				for (int t = 0; t < n; t++) {
					pthread_join(th[t], NULL);
					CHECK(pr[t].bad == 0, "reader %d: %zu bytes differ", t, pr[t].bad);
				}
				pthread_barrier_destroy(&step);
				CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
				CHECK(st.peak_resident_bytes <= budget / 2,
				      "peak residency %" PRIu64 " MiB of a %zu MiB budget", st.peak_resident_bytes / MiB,
				      budget / MiB);
				fctx_verify(&f);
				CHECK(pm_region_error(r) == 0, "error %d", pm_region_error(r));
				CU_ASSERT_EQUAL(pm_region_close(r), 0);
				fctx_free(&f);
			}
	}
}

/* A chunk read far ahead first (a program that looks at the last rows,
 * then scans from the top) sits at the FIFO's head until the scan reaches
 * it, and is not passed. The chunks the scan leaves behind must still be
 * recycled, not the pool grown to the whole budget. The reader takes
 * longer than the grace period over each chunk, as BLAS does on 4 MiB. */
static void test_far_chunk_first(void)
{
	const size_t chunk = 256 * KiB, nchunks = 96, budget = 48 * chunk, length = nchunks * chunk;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];

		if (backend == PM_BACKEND_EAGER || !backend_usable(backend))
			continue;
		/* the default window, and a short one (without read-ahead no
		 * stream is followed, and the pool fills up to the budget) */
		for (int readahead = 0; readahead <= 2; readahead += 2) {
			struct pm_stats st = { .size = sizeof(st) };
			const unsigned char *base;
			struct fctx f;
			pm_region *r = NULL;
			size_t bad;

			snprintf(label, sizeof(label), "chunk %zu read first, then a scan, %s, read-ahead %s",
				 nchunks - 4, pm_backend_name(backend), readahead ? "2 chunks" : "default");
			ncases++;
			fctx_init(&f, 0xfa4 + (uint64_t)readahead, length, chunk, backend);
			CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, budget, readahead, 0, 0), 0);
			base = pm_region_data(r);
			bad = pat_check(base, f.seed, (nchunks - 4) * chunk, chunk);
			for (size_t c = 0; c < nchunks - 8; c++) {
				bad += pat_check(base, f.seed, c * chunk, chunk);
				usleep(3000);
			}
			CHECK(bad == 0, "%zu bytes differ", bad);
			CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
			CHECK(st.peak_resident_bytes <= budget / 2,
			      "peak residency %" PRIu64 " of a budget of %zu chunks", st.peak_resident_bytes / chunk,
			      budget / chunk);
			fctx_verify(&f);
			CHECK(pm_region_error(r) == 0, "error %d", pm_region_error(r));
			CU_ASSERT_EQUAL(pm_region_close(r), 0);
			fctx_free(&f);
		}
	}
}

/* A reader whose reads span its last three chunks (a window of rows that
 * crosses chunk ends), slow fills, a budget far above what it holds: a
 * chunk it has passed may be recycled before the pool grows, but only that
 * chunk, not the chunks the same call would take with it (the read-ahead
 * after it, or the chunks still under the reader), which would then be
 * filled again and again. Chunks this small are copied on userfaultfd,
 * which drops them in batches: that is the case this checks. On the
 * backends that move chunks, one reader's runs out never reach its last
 * two chunks or the read-ahead; they are run too. */
static void test_wide_reader(void)
{
	const size_t chunk = 256 * KiB, nchunks = 96, budget = 48 * chunk, length = nchunks * chunk;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];
		struct pm_stats st = { .size = sizeof(st) };
		const unsigned char *base;
		struct fctx f;
		pm_region *r = NULL;
		size_t bad = 0;

		if (backend == PM_BACKEND_EAGER || !backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "reads over three chunks, slow fills, %s", pm_backend_name(backend));
		ncases++;
		fctx_init(&f, 0x3c4, length, chunk, backend);
		f.fill_us = 3000;
		CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, budget, 0, 0, 0), 0);
		base = pm_region_data(r);
		for (size_t c = 0; c < nchunks; c++) {
			for (size_t k = c < 2 ? 0 : c - 2; k <= c; k++)
				bad += pat_check(base, f.seed, k * chunk, chunk);
			usleep(4000);
		}
		CHECK(bad == 0, "%zu bytes differ", bad);
		CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
		/* A few refills at most. */
		CHECK(st.chunks_filled <= nchunks + nchunks / 4,
		      "%" PRIu64 " chunks filled for %zu", st.chunks_filled, nchunks);
		fctx_verify(&f);
		CHECK(pm_region_error(r) == 0, "error %d", pm_region_error(r));
		CU_ASSERT_EQUAL(pm_region_close(r), 0);
		fctx_free(&f);
	}
}

/* ------------------------------------------- the matrix, threaded */

struct mreader {
	const unsigned char *data, *want;
	size_t bytes, block;
	int order;
	uint64_t rseed;
	size_t bad;
};

/* Differing bytes (memcmp is intercepted by TSan: see REGION_READER). */
REGION_READER static size_t bytes_differ(const unsigned char *a, const unsigned char *b, size_t n)
{
	size_t d = 0;

	for (size_t i = 0; i < n; i++)
		d += a[i] != b[i];
	return d;
}

static void *mreader_main(void *arg)
{
	struct mreader *m = arg;
	size_t n = (m->bytes + m->block - 1) / m->block, *idx = make_order(n, m->order, 3, m->rseed);

	t_consumer = true;
	for (size_t i = 0; i < n; i++) {
		size_t off = idx[i] * m->block, len = m->bytes - off < m->block ? m->bytes - off : m->block;

		m->bad += bytes_differ(m->data + off, m->want + off, len) != 0;
	}
	free(idx);
	return NULL;
}

/* A few patch matrices on the lazy backends under tight budgets, read by
 * 1, 2 and 8 threads at once, against the reference im2col (ref.c). */
static void test_matrix_threads(void)
{
	static unsigned char img8[40 * 50];
	static uint16_t img16[40 * 50 * 3];
	static double sig64[3000];
	static const int nreaders[] = { 1, 2, 8 };
	unsigned n = 0;

	for (size_t i = 0; i < sizeof(img8); i++)
		img8[i] = (unsigned char)pat_word(1, i);
	for (size_t i = 0; i < sizeof(img16) / 2; i++)
		img16[i] = (uint16_t)pat_word(2, i);
	for (size_t i = 0; i < 3000; i++)
		sig64[i] = (double)(int64_t)(pat_word(3, i) % 2000001) / 1000.0 - 1000.0;

	for (int shape = 0; shape < 3; shape++) {
		struct pm_matrix_opts o = { .size = sizeof(o) };
		struct ref_matrix want;
		const char *what;
		size_t budget;

		switch (shape) {
		case 0: {
			const size_t sh[2] = { 40, 50 };

			what = "u8 40x50, 5x7 windows, float32";
			pm_source_contiguous(&o.source, img8, PM_DTYPE_U8, 2, sh);
			o.window[0] = (struct pm_window){ .size = 5, .step = 1, .dilation = 1 };
			o.window[1] = (struct pm_window){ .size = 7, .step = 1, .dilation = 1 };
			o.dtype = PM_DTYPE_F32;
			o.lazy.chunk = 4 * KiB;
			o.lazy.budget = 4 * 4 * KiB;
			break;
		}
		case 1: {
			const size_t sh[3] = { 40, 50, 3 };

			what = "u16 40x50x3, 3x3 windows, dilation 2, reflect 2, channel order, columns";
			pm_source_contiguous(&o.source, img16, PM_DTYPE_U16, 3, sh);
			o.source.has_channels = true;
			o.source.channel_axis = 2;
			for (int a = 0; a < 2; a++)
				o.window[a] = (struct pm_window){ .size = 3, .step = 1, .dilation = 2, .pad_before = 2,
								  .pad_after = 2 };
			o.pad_mode = PM_PAD_REFLECT;
			o.order = PM_ORDER_CHANNEL;
			o.layout = PM_LAYOUT_COLS;
			o.lazy.chunk = 8 * KiB;
			o.lazy.budget = 3 * 8 * KiB;
			break;
		}
		default: {
			const size_t sh[1] = { 3000 };

			what = "f64 3000, 16-sample windows, step 3, affine, pitched rows";
			pm_source_contiguous(&o.source, sig64, PM_DTYPE_F64, 1, sh);
			o.window[0] = (struct pm_window){ .size = 16, .step = 3, .dilation = 1 };
			o.affine = true;
			o.scale = 0.5;
			o.offset = -1;
			o.row_pitch = 19 * 8;
			o.lazy.chunk = 4 * KiB;
			o.lazy.budget = 2 * 4 * KiB;
			break;
		}
		}
		CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &want), 0);
		budget = o.lazy.budget;
		for (int bi = 0; bi < T_NLAZY; bi++) {
			if (!backend_usable(t_lazy_backends[bi]))
				continue;
			for (int ti = 0; ti < 3; ti++, n++) {
				struct mreader mr[8];
				pthread_t th[8];
				struct pm_stats st = { 0 };
				pm_matrix *m = NULL;
				size_t bytes;
				int ret;

				o.lazy.backend = t_lazy_backends[bi];
				/* Eight readers get at least three chunks: a load that
				 * straddles two chunks needs both at once, and eight
				 * threads doing that under two chunks thrash for minutes
				 * (see README, Guarantees and limits). */
				o.lazy.budget = nreaders[ti] == 8 && budget < 3 * o.lazy.chunk ? 3 * o.lazy.chunk : budget;
				o.lazy.threads = 1 + (int)(n % 2);
				o.lazy.readahead = n % 3 == 2 ? -1 : 0;
				snprintf(label, sizeof(label), "matrix %s, %s, %d readers", what,
					 pm_backend_name(o.lazy.backend), nreaders[ti]);
				ret = pm_matrix_open(&o, &m);
				CHECK(ret == 0, "open: %s", pm_strerror(ret));
				if (ret)
					continue;
				bytes = pm_matrix_bytes(m);
				CHECK(bytes == want.rows * want.pitch, "%zu bytes, want %zu", bytes, want.rows * want.pitch);
				CU_ASSERT_FATAL(bytes > 4 * o.lazy.budget);
				for (int t = 0; t < nreaders[ti]; t++) {
					mr[t] = (struct mreader){ pm_matrix_data(m), want.data, bytes, 3000 + 24 * (size_t)t,
								  (t + ti) % ORDER_COUNT, n * 8 + (uint64_t)t, 0 };
					CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, mreader_main, &mr[t]), 0);
				}
				for (int t = 0; t < nreaders[ti]; t++) {
					pthread_join(th[t], NULL);
					CHECK(mr[t].bad == 0, "reader %d (%s): %zu blocks differ from the reference", t,
					      order_names[mr[t].order], mr[t].bad);
				}
				pm_matrix_stats(m, &st);
				CHECK(st.evictions > 0 && st.peak_resident_bytes <= st.budget_bytes,
				      "%" PRIu64 " evictions, peak %" PRIu64 ", budget %zu", st.evictions,
				      st.peak_resident_bytes, st.budget_bytes);
				CHECK(pm_matrix_error(m) == 0, "error %d", pm_matrix_error(m));
				CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
			}
		}
		ref_free(&want);
	}
}

/* --------------------------------------- many regions, many threads */

/* One thread reads region A over and over while others open, read and
 * close regions of their own, two at a time, each closing the one another
 * thread opened: the SIGSEGV backend's registry changes under a thread
 * inside its handler. Contents are checked, so a fault served from the
 * wrong region would show. */
struct many {
	_Atomic bool stop;
	_Atomic int opened;
	_Atomic(pm_region *) handoff[3];
	struct fctx handed[3][6];   /* the handed-over regions' contexts */
	const unsigned char *a_base;
	uint64_t a_seed;
	size_t a_len;
	size_t a_bad, a_scans;
	size_t bad[3];
	int err[3];
};

#define MANY_ROUNDS 12

static void *many_reader(void *arg)
{
	struct many *m = arg;
	uint64_t s = 99;

	t_consumer = true;
	while (!atomic_load(&m->stop) || m->a_scans < 2) {
		m->a_bad += scan(m->a_base, m->a_seed, m->a_len, 4 * KiB, (int)(m->a_scans % ORDER_COUNT), 3,
				 t_rnd(&s));
		m->a_scans++;
	}
	return NULL;
}

struct worker_arg {
	struct many *m;
	int id;
};

static void *many_worker(void *arg)
{
	struct worker_arg *w = arg;
	struct many *m = w->m;
	const size_t chunk = 4 * KiB, length = 16 * chunk - 100;
	int *err = &m->err[w->id];

	t_consumer = true;
	/* Two regions open at once, read in turns, closed in either order;
	 * every third round the second one is a userfaultfd region. */
	for (int it = 0; it < MANY_ROUNDS && !*err; it++) {
		struct fctx f[2];
		pm_region *r[2] = { NULL, NULL };

		for (int k = 0; k < 2; k++) {
			int backend = k == 1 && it % 3 == 2 && !backend_missing[PM_BACKEND_UFFD] ? PM_BACKEND_UFFD
												   : PM_BACKEND_SIGSEGV;
			struct pm_region_opts o = { .size = sizeof(o), .length = length, .fill = fill_pattern,
						    .ctx = &f[k] };

			fctx_init(&f[k], (uint64_t)(w->id * 1000 + it * 2 + k) + 0x3a1, length, chunk, backend);
			o.lazy.backend = backend;
			o.lazy.chunk = chunk;
			o.lazy.budget = 2 * chunk;
			o.lazy.threads = 1;
			if (!*err && !(*err = pm_region_open(&o, &r[k])))
				atomic_fetch_add(&m->opened, 1);
		}
		if (!*err) {
			m->bad[w->id] += scan(pm_region_data(r[0]), f[0].seed, length, 4 * KiB, ORDER_STRIDED, 3, 1);
			m->bad[w->id] += scan(pm_region_data(r[1]), f[1].seed, length, 4 * KiB, ORDER_RANDOM, 3, 2);
			m->bad[w->id] += scan(pm_region_data(r[0]), f[0].seed, length, 4 * KiB, ORDER_REV, 3, 3);
		}
		for (int k = 0; k < 2; k++) {
			int which = it % 2 ? k : 1 - k;

			if (pm_region_close(r[which]) && !*err)
				*err = -EPROTO;
		}
		fctx_free(&f[0]);
		fctx_free(&f[1]);
	}
	/* Regions handed across threads: opened here, closed by the next
	 * worker (or at the end). */
	for (int it = 0; it < 6 && !*err; it++) {
		struct fctx *f = &m->handed[w->id][it];
		struct pm_region_opts o = { .size = sizeof(o), .length = 8 * 4 * KiB, .fill = fill_pattern, .ctx = f };
		pm_region *r = NULL, *theirs;

		fctx_init(f, 0xabc0 + (uint64_t)(w->id * 10 + it), o.length, 4 * KiB, PM_BACKEND_SIGSEGV);
		o.lazy.backend = PM_BACKEND_SIGSEGV;
		o.lazy.chunk = 4 * KiB;
		o.lazy.threads = 1;
		if ((*err = pm_region_open(&o, &r)))
			break;
		atomic_fetch_add(&m->opened, 1);
		m->bad[w->id] += scan(pm_region_data(r), f->seed, o.length, 4 * KiB, ORDER_RANDOM, 3, 4);
		theirs = atomic_exchange(&m->handoff[(w->id + 1) % 3], r);
		if (theirs && pm_region_close(theirs))
			*err = -EPROTO;
	}
	return NULL;
}

static void test_many_regions(void)
{
	const size_t chunk = 4 * KiB, a_len = 64 * chunk;
	static struct many m;
	struct worker_arg wa[3];
	pthread_t reader, workers[3];
	struct fctx fa;
	pm_region *a = NULL;

	if (!backend_usable(PM_BACKEND_SIGSEGV))
		return;
	snprintf(label, sizeof(label), "many regions");
	memset(&m, 0, sizeof(m));
	fctx_init(&fa, 0xa11, a_len, chunk, PM_BACKEND_SIGSEGV);
	CU_ASSERT_EQUAL_FATAL(open_region(&a, &fa, PM_BACKEND_SIGSEGV, a_len, chunk, 2 * chunk, -1, 1, 0), 0);
	m.a_base = pm_region_data(a);
	m.a_seed = fa.seed;
	m.a_len = a_len;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&reader, NULL, many_reader, &m), 0);
	for (int i = 0; i < 3; i++) {
		wa[i] = (struct worker_arg){ &m, i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&workers[i], NULL, many_worker, &wa[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(workers[i], NULL);
	for (int i = 0; i < 3; i++)
		CHECK(pm_region_close(atomic_exchange(&m.handoff[i], NULL)) == 0, "closing a handed-over region");
	atomic_store(&m.stop, true);
	pthread_join(reader, NULL);
	for (int i = 0; i < 3; i++) {
		CHECK(m.err[i] == 0, "worker %d: %d (%s)", i, m.err[i], pm_strerror(m.err[i]));
		CHECK(m.bad[i] == 0, "worker %d: %zu bytes differ", i, m.bad[i]);
		for (int it = 0; it < 6; it++) {
			if (m.handed[i][it].busy)
				fctx_verify(&m.handed[i][it]);
			fctx_free(&m.handed[i][it]);
		}
	}
	CHECK(m.a_bad == 0, "the steady reader: %zu bytes differ over %zu scans", m.a_bad, m.a_scans);
	CHECK(atomic_load(&m.opened) == 3 * (MANY_ROUNDS * 2 + 6), "%d regions opened", atomic_load(&m.opened));
	fctx_verify(&fa);
	CU_ASSERT_EQUAL(pm_region_close(a), 0);
	fctx_free(&fa);
}

/* ------------------------------------------- alternate signal stack */

#define ALTSTACK_SIZE (16 * KiB)

struct alt {
	const unsigned char *base;
	uint64_t seed;
	size_t length;
	unsigned char *stack;
	size_t bad, dirty;
	int err, onstack;
};

static void *alt_main(void *arg)
{
	struct alt *a = arg;
	stack_t ss = { .ss_sp = a->stack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 }, cur;

	t_consumer = true;
	memset(a->stack, 0xa5, ALTSTACK_SIZE);
	if (sigaltstack(&ss, NULL)) {
		a->err = errno;
		return NULL;
	}
	for (int order = 0; order < ORDER_COUNT; order++)
		a->bad += scan(a->base, a->seed, a->length, 4 * KiB, order, 3, (uint64_t)order);
	sigaltstack(NULL, &cur);
	a->onstack = cur.ss_flags & SS_ONSTACK;
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	for (size_t i = 0; i < ALTSTACK_SIZE; i++)
		a->dirty += a->stack[i] != 0xa5;
	return NULL;
}

/* A thread with a modest alternate signal stack reads a SIGSEGV region: the
 * handler runs there (the stack was written), fits, and the thread's reads
 * are right. */
static void test_altstack(void)
{
	const size_t chunk = 4 * KiB, length = 32 * chunk;
	struct alt a = { 0 };
	struct fctx f;
	pm_region *r = NULL;
	pthread_t th;

	if (!backend_usable(PM_BACKEND_SIGSEGV))
		return;
	snprintf(label, sizeof(label), "sigaltstack of %zu bytes", ALTSTACK_SIZE);
	fctx_init(&f, 0xa175, length, chunk, PM_BACKEND_SIGSEGV);
	CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, PM_BACKEND_SIGSEGV, length, chunk, 2 * chunk, -1, 1, 0), 0);
	a.base = pm_region_data(r);
	a.seed = f.seed;
	a.length = length;
	a.stack = malloc(ALTSTACK_SIZE);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a.stack);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, alt_main, &a), 0);
	pthread_join(th, NULL);
	CHECK(a.err == 0, "sigaltstack: %s", strerror(a.err));
	CHECK(a.bad == 0, "%zu bytes differ", a.bad);
	CHECK(a.dirty > 0, "the alternate stack was never used");
	CHECK(!a.onstack, "still on the alternate stack after the reads");
	free(a.stack);
	fctx_verify(&f);
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	fctx_free(&f);
}

/* ---------------------------------------------------- process: fork */

struct child_read {
	const unsigned char *p;
	uint64_t seed;
	size_t off, len;
};

/* Reads one byte: returns 3 if it read zero, 4 if the right byte, 5 if
 * anything else. A lazy region's child should never return. */
static int child_read_byte(void *arg)
{
	struct child_read *c = arg;
	unsigned char v = *(const volatile unsigned char *)(c->p + c->off);

	return v == 0 ? 3 : v == pat_byte(c->seed, c->off) ? 4 : 5;
}

static int child_read_all(void *arg)
{
	struct child_read *c = arg;

	return pat_check(c->p, c->seed, c->off, c->len) == 0 ? 0 : 1;
}

/* Maps off + len bytes of its own asking for the region's address, then
 * reads the region: a child whose copy of the range had a hole there
 * would get the new mapping in it, and read its bytes (7) as the
 * matrix's. */
static int child_map_then_read(void *arg)
{
	struct child_read *c = arg;
	size_t len = c->off + c->len;
	void *q = mmap((void *)(uintptr_t)c->p, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (q == MAP_FAILED)
		return 6;
	memset(q, 7, len);
	return child_read_byte(arg);
}

/* Run in a child made without the fork handlers (_Fork): maps memory of
 * its own where the parent's first chunk is (a hole in it), then forks as
 * usual; the grandchild must keep that memory: the handler fills holes,
 * never what a process holds, and ignores a list that is not its
 * parent's. */
static int child_unhandled_fork(void *arg)
{
	struct child_read *c = arg;
	size_t len = c->off + c->len;
	unsigned char *q;
	int status;
	pid_t pid;

	q = mmap((void *)(uintptr_t)c->p, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (q == MAP_FAILED)
		return 8;
	memset(q, 42, len);
	pid = fork();
	if (pid < 0)
		return 9;
	if (pid == 0)
		_exit(*(volatile unsigned char *)q == 42 && q[len - 1] == 42 ? 0 : 10);
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : 11;
}

/* A child can open regions of its own, on every backend. */
static int child_own_regions(void *arg)
{
	(void)arg;
	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		struct pm_region_opts o = { .size = sizeof(o), .length = 5 * 4 * KiB + 3, .fill = fill_pattern };
		struct fctx f;
		pm_region *r = NULL;

		if (backend_missing[t_backends[bi]])
			continue;
		fctx_init(&f, 0xc41d + (uint64_t)bi, o.length, 4 * KiB, t_backends[bi]);
		o.ctx = &f;
		o.lazy.backend = t_backends[bi];
		o.lazy.chunk = 4 * KiB;
		o.lazy.budget = 2 * 4 * KiB;
		if (pm_region_open(&o, &r))
			return 10 + bi;
		if (scan(pm_region_data(r), f.seed, o.length, 4 * KiB, ORDER_REV, 0, 0))
			return 20 + bi;
		if (pm_region_close(r))
			return 30 + bi;
		fctx_free(&f);
	}
	return 0;
}

/* A child closes the parent's region (a Python worker dropping a matrix it
 * inherited): that must free the child's copy and leave the parent's
 * fillers and fault service alone. */
static int child_close(void *arg)
{
	return pm_region_close(arg) == 0 ? 0 : 1;
}

/* After fork, a child touching a lazy region (a chunk resident in the
 * parent, or an absent one) dies of SIGSEGV and never reads zeros; an
 * eager region is ordinary memory and reads right. The parent's region is
 * unharmed, also by a child that closes it, and a child may open regions
 * of its own. */
static void test_fork(void)
{
	const size_t chunk = 64 * KiB, length = 4 * chunk;

	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi], status;
		struct child_read c;
		struct fctx f;
		pm_region *r = NULL;

		if (!backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "fork, %s", pm_backend_name(backend));
		fctx_init(&f, 0xf04c + (uint64_t)bi, length, chunk, backend);
		CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, 0, -1, 1, 0), 0);
		c = (struct child_read){ pm_region_data(r), f.seed, 10, length - 10 };
		t_consumer = true;
		CHECK(pat_check(c.p, f.seed, 0, 2 * chunk) == 0, "parent read");
		t_consumer = false;
		if (backend == PM_BACKEND_EAGER) {
			expect_exit0(in_child(child_read_all, &c), "eager child reading everything");
		} else {
			status = in_child(child_read_byte, &c);
			expect_signal(status, SIGSEGV, "child reading a chunk resident in the parent");
			c.off = 3 * chunk + 10;
			status = in_child(child_read_byte, &c);
			expect_signal(status, SIGSEGV, "child reading an absent chunk");
			/* one chunk at the first one's address, which the parent
			 * read: resident there, and on the SIGSEGV backend its
			 * pages (the pool's) are not inherited either */
			c.off = 10;
			c.len = chunk - 10;
			status = in_child(child_map_then_read, &c);
			expect_signal(status, SIGSEGV, "child mapping memory at the region's address, "
						       "then reading the region");
			expect_exit0(in_child_by(_Fork, child_unhandled_fork, &c),
				     "grandchild of a child forked without the handlers keeps the "
				     "child's memory");
		}
		expect_exit0(in_child(child_own_regions, NULL), "child opening its own regions");
		expect_exit0(in_child(child_close, r), "child closing the parent's region");
		t_consumer = true;
		CHECK(scan(c.p, f.seed, length, 4 * KiB, ORDER_RANDOM, 0, 1) == 0, "the parent's region after the children");
		t_consumer = false;
		CU_ASSERT_EQUAL(pm_region_close(r), 0);
		fctx_free(&f);
	}
}

/* Read-ahead maps the chunks between two trigger chunks together, and a
 * sequential reader's passed chunks leave together, one move per run of
 * neighbours. Windows that make runs of 0, 3 and 7 chunks, huge-page and
 * small chunks, a ragged tail (the last run cut by the end), two passes of
 * a sequential scan over twice the budget, and a chunk whose fill always
 * fails inside a run: its pages, and only its, raise SIGBUS, its neighbours
 * read right; every chunk of a run refuses writes; the budget holds; a
 * child after fork gets SIGSEGV, never data.
 * (Whether a run moved in one call the stats cannot say; bench-chunk and
 * bench-scan show its cost.) */
static void test_runs(void)
{
	static const size_t chunks[] = { 64 * KiB, 2 * MiB };
	static const int windows[] = { 2, 8, 16 };
	const size_t nchunks = 64, budget_chunks = 32, bad_chunk = 6;

	for (int bi = 0; bi < T_NLAZY; bi++) {
		int backend = t_lazy_backends[bi];

		if (!backend_usable(backend))
			continue;
		for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
			for (size_t wi = 0; wi < sizeof(windows) / sizeof(windows[0]); wi++) {
				size_t chunk = chunks[ci], length = nchunks * chunk - 1000, bad = 0;
				const unsigned char *base;
				struct pm_stats st = { 0 };
				struct child_read cr;
				unsigned char v;
				struct fctx f;
				pm_region *r = NULL;
				int sig, ret;

				snprintf(label, sizeof(label), "runs, %s, chunk %zu KiB, read-ahead %d",
					 pm_backend_name(backend), chunk / KiB, windows[wi]);
				fctx_init(&f, 0x7a9 + (uint64_t)(bi * 16 + ci * 4 + wi), length, chunk, backend);
				f.fail_chunk = bad_chunk;
				f.fail_err = -EIO;
				f.fail_times = -1;
				CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, backend, length, chunk, budget_chunks * chunk,
								  windows[wi], 1, 0),
						      0);
				base = pm_region_data(r);
				t_consumer = true;
				for (int pass = 0; pass < 2; pass++)
					for (size_t c = 0; c < nchunks; c++) {
						if (c != bad_chunk)
							bad += pat_check(base, f.seed, c * chunk,
									 c + 1 < nchunks ? chunk : length - c * chunk);
						/* A chunk moved in as part of a run refuses
						 * writes like one moved in alone: the run's
						 * protection covers the whole run. */
						if (pass == 1 && c != bad_chunk) {
							sig = try_write(base + c * chunk + 5, 0);
							CHECK(sig == SIGSEGV, "a write into chunk %zu gave %s", c,
							      sig ? strsignal(sig) : "no signal");
							sig = try_read(base + c * chunk + 5, &v);
							CHECK(sig == 0 && v == pat_byte(f.seed, c * chunk + 5),
							      "chunk %zu after a refused write: %s", c,
							      sig ? strsignal(sig) : "wrong value");
						}
						/* The third chunk starts the stream. A chunk the
						 * reader waits for counts as its fill, not as
						 * read-ahead, and a loaded machine can keep the
						 * filler behind the reader through both passes:
						 * the reader gives it time here, once (10 s at
						 * most), so that the check below is not a race. */
						if (pass == 0 && c == 2 && windows[wi] > 2)
							for (int ms = 0; ms < 10000; ms++) {
								pm_region_stats(r, &st);
								if (st.readahead_fills > 0)
									break;
								usleep(1000);
							}
					}
				CHECK(bad == 0, "%zu bytes differ", bad);
				for (size_t off = 0; off < chunk; off += chunk / 4) {
					sig = try_read(base + bad_chunk * chunk + off, &v);
					CHECK(sig == SIGBUS, "offset %zu of the failed chunk gave %s", off,
					      sig ? strsignal(sig) : "no signal");
				}
				sig = try_read(base + bad_chunk * chunk - 1, &v);
				CHECK(sig == 0 && v == pat_byte(f.seed, bad_chunk * chunk - 1),
				      "the byte before the failed chunk: %s", sig ? strsignal(sig) : "wrong value");
				sig = try_read(base + (bad_chunk + 1) * chunk, &v);
				CHECK(sig == 0 && v == pat_byte(f.seed, (bad_chunk + 1) * chunk),
				      "the byte after the failed chunk: %s", sig ? strsignal(sig) : "wrong value");
				t_consumer = false;
				settle(r, &f, &st);
				CHECK(st.peak_resident_bytes <= st.budget_bytes,
				      "peak %" PRIu64 " above the budget %" PRIu64, st.peak_resident_bytes,
				      st.budget_bytes);
				CHECK(st.evictions > 0, "no eviction in two passes over twice the budget");
				if (windows[wi] > 2)
					CHECK(st.readahead_fills > 0, "no read-ahead");
				fctx_verify(&f);
				cr = (struct child_read){ base, f.seed, (nchunks - 1) * chunk, 1 };
				expect_signal(in_child(child_read_byte, &cr), SIGSEGV,
					      "child reading a chunk resident in the parent");
				ret = pm_region_close(r);
				CHECK(ret == -EIO, "close returned %d, want %d", ret, -EIO);
				fctx_free(&f);
			}
		}
	}
}

/* ----------------------------- process: failing fills, stray writes */

struct child_case {
	int backend;
	size_t touch;      /* a chunk to read first */
	size_t target;     /* the chunk to read or write */
	bool write, fail;  /* write to target; target's fill fails */
};

static int child_case_main(void *arg)
{
	struct child_case *k = arg;
	const size_t chunk = 64 * KiB, length = 6 * chunk;
	struct pm_region_opts o = { .size = sizeof(o), .length = length, .fill = fill_pattern };
	const unsigned char *p;
	struct fctx f;
	pm_region *r = NULL;

	fctx_init(&f, 0xc4, length, chunk, k->backend);
	if (k->fail) {
		f.fail_chunk = k->target;
		f.fail_err = -EIO;
		f.fail_times = -1;
	}
	o.ctx = &f;
	o.lazy.backend = k->backend;
	o.lazy.chunk = chunk;
	o.lazy.budget = 3 * chunk;
	o.lazy.readahead = -1;
	if (pm_region_open(&o, &r))
		return 10;
	p = pm_region_data(r);
	if (pat_check(p, f.seed, k->touch * chunk, chunk))
		return 11;
	if (k->write)
		*(volatile unsigned char *)(p + k->target * chunk + 5) = 1;
	else if (*(const volatile unsigned char *)(p + k->target * chunk + 5) == 0)
		return 3; /* read a zero */
	return 4; /* survived */
}

/* In a child with default signal actions: reading a chunk whose fill fails
 * raises SIGBUS; writing to a resident or an absent chunk raises SIGSEGV. */
static void test_fatal_children(void)
{
	for (int bi = 0; bi < T_NBACKENDS; bi++) {
		int backend = t_backends[bi];
		struct child_case k = { .backend = backend, .touch = 1 };

		if (!backend_usable(backend))
			continue;
		snprintf(label, sizeof(label), "fatal children, %s", pm_backend_name(backend));
		if (backend != PM_BACKEND_EAGER) {
			k.target = 4;
			k.fail = true;
			expect_signal(in_child(child_case_main, &k), SIGBUS, "child reading a chunk whose fill failed");
			k.fail = false;
		}
		k.write = true;
		k.target = 1;
		expect_signal(in_child(child_case_main, &k), SIGSEGV, "child writing to a resident chunk");
		k.target = 4;
		expect_signal(in_child(child_case_main, &k), SIGSEGV, "child writing to an absent chunk");
	}
}

/* --------------------------------------------- process: scenarios */

static void test_chain(void)
{
	static const char *const names[] = { "chain-siginfo", "chain-plain", "default-null", "default-protnone",
					     "default-write", "ignored", "closed" };

	if (!backend_usable(PM_BACKEND_SIGSEGV))
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int status = scenario(names[i]);

		snprintf(label, sizeof(label), "scenario %s", names[i]);
		if (!strncmp(names[i], "chain", 5))
			expect_exit0(status, names[i]);
		else
			expect_signal(status, SIGSEGV, names[i]);
	}
}

static void test_seccomp(void)
{
	expect_scenario("seccomp");
}

static void test_nobody(void)
{
	expect_scenario("nobody");
}

static void test_no_poison(void)
{
	int status = scenario("no-poison");

	if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP) {
		printf("\n  SKIP scenario no-poison (reason above)\n");
		return;
	}
	snprintf(label, sizeof(label), "scenario no-poison");
	expect_signal(status, SIGBUS, "reading a failed chunk without UFFDIO_POISON");
}

/* ------------------------------------------- scenario implementations */

static const char *sc_name;

#define SC(cond, ...)                                                                    \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "scenario %s, line %d: ", sc_name, __LINE__);    \
			fprintf(stderr, __VA_ARGS__);                                    \
			fputc('\n', stderr);                                             \
			return 1;                                                        \
		}                                                                        \
	} while (0)

struct sc_region {
	struct fctx f;
	pm_region *r;
	const unsigned char *p;
	size_t length;
};

static int sc_open(struct sc_region *s, int backend, uint64_t seed)
{
	struct pm_region_opts o = { .size = sizeof(o), .fill = fill_pattern };

	s->length = 12 * 4 * KiB + 17;
	fctx_init(&s->f, seed, s->length, 4 * KiB, backend);
	o.length = s->length;
	o.ctx = &s->f;
	o.lazy.backend = backend;
	o.lazy.chunk = 4 * KiB;
	o.lazy.budget = 2 * 4 * KiB;
	s->r = NULL;
	s->p = NULL;
	int ret = pm_region_open(&o, &s->r);
	if (ret == 0)
		s->p = pm_region_data(s->r);
	return ret;
}

static size_t sc_scan(struct sc_region *s)
{
	return scan(s->p, s->f.seed, s->length, 4 * KiB, ORDER_RANDOM, 0, 7) +
	       scan(s->p, s->f.seed, s->length, 4 * KiB, ORDER_SEQ, 0, 0);
}

static int sc_close(struct sc_region *s)
{
	int ret = pm_region_close(s->r);

	fctx_free(&s->f);
	return ret;
}

static void set_action(int sig, void (*h)(int), void (*sa)(int, siginfo_t *, void *))
{
	struct sigaction act;

	memset(&act, 0, sizeof(act));
	sigemptyset(&act.sa_mask);
	if (sa) {
		act.sa_sigaction = sa;
		act.sa_flags = SA_SIGINFO;
	} else {
		act.sa_handler = h;
	}
	sigaction(sig, &act, NULL);
}

static char *own_page;
static volatile int own_calls;

/* The application's own handler: it owns own_page, and makes it readable. */
static void own_handler(int sig, siginfo_t *si, void *uc)
{
	char *a = si->si_addr;

	(void)uc;
	if (own_page && a >= own_page && a < own_page + page_size) {
		own_calls++;
		mprotect(own_page, page_size, PROT_READ);
		return;
	}
	set_action(sig, SIG_DFL, NULL);
}

static char *sc_protnone_page(void)
{
	char *p = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	p[5] = 42;
	mprotect(p, page_size, PROT_NONE);
	return p;
}

/* A handler installed before the library's keeps working for its own
 * addresses, while regions come and go. */
static int sc_chain_siginfo(void)
{
	struct sc_region a, b;

	SC((own_page = sc_protnone_page()) != NULL, "mmap");
	set_action(SIGSEGV, NULL, own_handler);
	SC(sc_open(&a, PM_BACKEND_SIGSEGV, 0xc1) == 0, "open");
	SC(sc_scan(&a) == 0, "region a reads wrong");
	SC(*(volatile char *)(own_page + 5) == 42 && own_calls == 1, "own page: %d calls", own_calls);
	SC(sc_scan(&a) == 0, "region a reads wrong after");
	SC(own_calls == 1, "the application's handler saw the region's faults");
	SC(sc_open(&b, PM_BACKEND_SIGSEGV, 0xc2) == 0, "open b");
	SC(sc_close(&a) == 0, "close a");
	mprotect(own_page, page_size, PROT_NONE);
	SC(*(volatile char *)(own_page + 5) == 42 && own_calls == 2, "own page with b: %d calls", own_calls);
	SC(sc_scan(&b) == 0, "region b reads wrong");
	SC(sc_close(&b) == 0, "close b");
	mprotect(own_page, page_size, PROT_NONE);
	SC(*(volatile char *)(own_page + 5) == 42 && own_calls == 3, "own page, no region: %d calls", own_calls);
	return 0;
}

static sigjmp_buf plain_jmp;
static volatile int plain_calls;

static void plain_handler(int sig)
{
	(void)sig;
	plain_calls++;
	siglongjmp(plain_jmp, 1);
}

/* A handler without SA_SIGINFO that leaves by siglongjmp: it is called for
 * foreign faults, and jumping out of the library's handler leaves the
 * library able to serve faults and to close (nothing held). */
static int sc_chain_plain(void)
{
	struct sc_region a;
	char *page;

	SC((page = sc_protnone_page()) != NULL, "mmap");
	set_action(SIGSEGV, plain_handler, NULL);
	SC(sc_open(&a, PM_BACKEND_SIGSEGV, 0xc3) == 0, "open");
	for (int i = 0; i < 3; i++) {
		plain_calls = 0;
		if (sigsetjmp(plain_jmp, 1) == 0) {
			(void)*(volatile char *)(page + 5);
			SC(0, "a PROT_NONE read went through");
		}
		SC(plain_calls == 1, "%d calls after a foreign read", plain_calls);
		SC(sc_scan(&a) == 0, "region reads wrong after a foreign fault");
		/* A write to the region is foreign too. */
		if (sigsetjmp(plain_jmp, 1) == 0) {
			*(volatile unsigned char *)(a.p + 100) = 1;
			SC(0, "a write to the region went through");
		}
		SC(plain_calls == 2, "%d calls after a write", plain_calls);
		SC(sc_scan(&a) == 0, "region reads wrong after a write");
	}
	SC(sc_close(&a) == 0, "close");
	return 0;
}

/* With the default action, foreign faults still kill: these return only if
 * they survived (the parent wants SIGSEGV). */
static int sc_default(int what)
{
	struct sc_region a;
	volatile uintptr_t low = 8;
	char *page = sc_protnone_page();

	SC(page != NULL, "mmap");
	set_action(SIGSEGV, what == 3 ? SIG_IGN : SIG_DFL, NULL);
	SC(sc_open(&a, PM_BACKEND_SIGSEGV, 0xd0 + (uint64_t)what) == 0, "open");
	SC(sc_scan(&a) == 0, "region reads wrong");
	switch (what) {
	case 0: /* near NULL */
		(void)*(volatile char *)low;
		break;
	case 1:
	case 3: /* a PROT_NONE page of the application */
		(void)*(volatile char *)(page + 5);
		break;
	case 2: /* a write to a resident chunk */
		*(volatile unsigned char *)(a.p + 100) = 1;
		break;
	default: { /* a region closed */
		const unsigned char *old = a.p;

		SC(sc_close(&a) == 0, "close");
		(void)*(const volatile unsigned char *)(old + 100);
		break;
	}
	}
	fprintf(stderr, "scenario %s: the access went through\n", sc_name);
	return 0;
}

#if defined(__x86_64__)
/* Installs a seccomp filter on every thread of the process. */
static int install_filter(struct sock_filter *code, size_t n)
{
	struct sock_fprog prog = { (unsigned short)n, code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog))
		return -errno;
	return 0;
}
#endif

/* Installs a seccomp filter making userfaultfd(2) fail with EPERM. */
static int deny_userfaultfd(void)
{
#if defined(__x86_64__)
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};

	return install_filter(code, sizeof(code) / sizeof(code[0]));
#else
	return -ENOSYS;
#endif
}

/* UFFDIO_POISON's request number, spelled out: the system headers may
 * predate it (Linux 6.6). */
struct t_uffdio_poison {
	uint64_t start, len, mode;
	int64_t updated;
};
#define T_UFFDIO_POISON _IOWR(0xAA, 0x08, struct t_uffdio_poison)

/* Installs a seccomp filter making ioctl(fd, req, ...) fail with err, as a
 * container runtime's filter that predates req would. */
static int refuse_ioctl(unsigned long req, int err)
{
#if defined(__x86_64__)
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),
		/* the request's low 32 bits (little-endian) */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)req, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};

	return install_filter(code, sizeof(code) / sizeof(code[0]));
#else
	(void)req;
	(void)err;
	return -ENOSYS;
#endif
}

/* userfaultfd without UFFDIO_POISON (refused here; absent before Linux
 * 6.6): a reader of a chunk whose fill fails is woken into a refault and
 * gets SIGBUS, instead of waiting in the kernel forever. */
static int sc_no_poison(void)
{
	struct sc_region a;
	int ret;

	ret = refuse_ioctl(T_UFFDIO_POISON, EINVAL);
	if (ret) {
		printf("scenario %s: SKIP: no seccomp filter: %s\n", sc_name, strerror(-ret));
		return T_SKIP;
	}
	ret = sc_open(&a, PM_BACKEND_UFFD, 0x9015);
	if (ret == -EPERM || ret == -ENOSYS) {
		printf("scenario %s: SKIP: no userfaultfd here: %s\n", sc_name, pm_strerror(ret));
		return T_SKIP;
	}
	SC(ret == 0, "open: %s", pm_strerror(ret));
	SC(sc_scan(&a) == 0, "region reads wrong");
	a.f.fail_chunk = 5;
	a.f.fail_err = -EIO;
	a.f.fail_times = -1;
	alarm(60); /* a reader left waiting ends as SIGALRM, not as a hung test */
	set_action(SIGBUS, SIG_DFL, NULL); /* not a sanitizer's report */
	(void)*(const volatile unsigned char *)(a.p + 5 * 4 * KiB + 1);
	fprintf(stderr, "scenario %s: read a chunk whose fill failed\n", sc_name);
	return 1;
}

/* Becomes uid/gid nobody. 77 (skip) if this process cannot. */
static int become_nobody(void)
{
	if (geteuid() != 0) {
		printf("scenario %s: SKIP: needs root to become nobody\n", sc_name);
		return T_SKIP;
	}
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
		printf("scenario %s: SKIP: cannot become nobody: %s\n", sc_name, strerror(errno));
		return T_SKIP;
	}
	/* Changing uid made the process undumpable; LeakSanitizer's exit
	 * check needs to ptrace its own threads. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	return 0;
}

/* userfaultfd denied (seccomp) and /dev/userfaultfd refused (uid nobody):
 * a forced uffd backend fails with a clear code, auto picks sigsegv. */
static int sc_seccomp(void)
{
	struct sc_region a;
	int ret, fd;

	ret = deny_userfaultfd();
	if (ret) {
		printf("scenario %s: SKIP: no seccomp filter: %s\n", sc_name, strerror(-ret));
		return T_SKIP;
	}
	if ((ret = become_nobody()))
		return ret;
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	SC(fd < 0 && errno == EPERM, "the filter let userfaultfd through (%d, %s)", fd, strerror(errno));
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	SC(fd < 0 && errno == EPERM, "user-mode-only userfaultfd went through");
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		printf("scenario %s: SKIP: /dev/userfaultfd opens for nobody here\n", sc_name);
		return T_SKIP;
	}

	ret = sc_open(&a, PM_BACKEND_UFFD, 1);
	SC(ret == -EPERM && a.r == NULL, "forced uffd: %d (%s), want %d", ret, pm_strerror(ret), -EPERM);
	SC(strstr(pm_strerror(ret), "userfaultfd") != NULL, "unclear message: %s", pm_strerror(ret));
	fctx_free(&a.f);
	setenv("PATCHMAP_BACKEND", "uffd", 1);
	ret = sc_open(&a, PM_BACKEND_AUTO, 2);
	SC(ret == -EPERM && a.r == NULL, "PATCHMAP_BACKEND=uffd: %d (%s)", ret, pm_strerror(ret));
	fctx_free(&a.f);
	{
		static unsigned char img[16 * 16];
		const size_t shape[2] = { 16, 16 };
		struct pm_matrix_opts o = { .size = sizeof(o) };
		pm_matrix *m = (pm_matrix *)&o;

		pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, shape);
		o.window[0] = o.window[1] = (struct pm_window){ .size = 3, .step = 1, .dilation = 1 };
		o.lazy.backend = PM_BACKEND_UFFD;
		ret = pm_matrix_open(&o, &m);
		SC(ret == -EPERM && m == NULL, "forced uffd matrix: %d", ret);
	}
	unsetenv("PATCHMAP_BACKEND");
	for (int i = 0; i < 2; i++) {
		struct pm_stats st = { 0 };

		ret = sc_open(&a, PM_BACKEND_AUTO, 3 + (uint64_t)i);
		SC(ret == 0, "auto: %d (%s)", ret, pm_strerror(ret));
		pm_region_stats(a.r, &st);
		SC(st.backend == PM_BACKEND_SIGSEGV, "auto chose %s", pm_backend_name(st.backend));
		SC(sc_scan(&a) == 0, "auto region reads wrong");
		SC(sc_close(&a) == 0, "close");
	}
	return 0;
}

/* As nobody, with vm.unprivileged_userfaultfd = 0: the uffd backend works in
 * user-mode-only, says so, and a kernel access of an absent page fails with
 * EFAULT (then works once the chunk is resident). */
static int sc_nobody(void)
{
	struct sc_region a;
	struct pm_stats st = { 0 };
	unsigned char buf[1000];
	int ret, fd, p[2];
	ssize_t w;

	if ((ret = become_nobody()))
		return ret;
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd >= 0) {
		printf("scenario %s: SKIP: unprivileged userfaultfd is allowed here "
		       "(vm.unprivileged_userfaultfd = 1)\n", sc_name);
		return T_SKIP;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	if (fd < 0) {
		printf("scenario %s: SKIP: no user-mode-only userfaultfd: %s\n", sc_name, strerror(errno));
		return T_SKIP;
	}
	close(fd);
	SC(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC) < 0, "/dev/userfaultfd opens for nobody");

	ret = sc_open(&a, PM_BACKEND_UFFD, 0x0b0);
	SC(ret == 0, "forced uffd as nobody: %d (%s)", ret, pm_strerror(ret));
	pm_region_stats(a.r, &st);
	SC((st.mechanism & (PM_MECH_UFFD_USER_ONLY | PM_MECH_UFFD_FULL)) == PM_MECH_UFFD_USER_ONLY,
	   "mechanism %#x, want user-only", st.mechanism);
	SC(pipe(p) == 0, "pipe");
	w = write(p[1], a.p + 7 * 4 * KiB + 3, sizeof(buf));
	SC(w < 0 && errno == EFAULT, "write(2) from an absent page: %zd (%s), want EFAULT", w, strerror(errno));
	SC(a.p[7 * 4 * KiB + 3] == pat_byte(a.f.seed, 7 * 4 * KiB + 3), "touch");
	w = write(p[1], a.p + 7 * 4 * KiB + 3, sizeof(buf));
	SC(w == (ssize_t)sizeof(buf), "write(2) from a resident page: %zd (%s)", w, strerror(errno));
	SC(read(p[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf) &&
		   pat_diff(buf, a.f.seed, 7 * 4 * KiB + 3, sizeof(buf)) == 0,
	   "the bytes written are not the region's");
	SC(sc_scan(&a) == 0, "user-mode-only region reads wrong");
	SC(sc_close(&a) == 0, "close");
	/* auto works too (whichever it picks) */
	SC(sc_open(&a, PM_BACKEND_AUTO, 0x0b1) == 0, "auto as nobody");
	SC(sc_scan(&a) == 0, "auto region reads wrong");
	SC(sc_close(&a) == 0, "close");
	return 0;
}

static int run_scenario(const char *name)
{
	sc_name = name;
	if (!strcmp(name, "chain-siginfo"))
		return sc_chain_siginfo();
	if (!strcmp(name, "chain-plain"))
		return sc_chain_plain();
	if (!strcmp(name, "default-null"))
		return sc_default(0);
	if (!strcmp(name, "default-protnone"))
		return sc_default(1);
	if (!strcmp(name, "default-write"))
		return sc_default(2);
	if (!strcmp(name, "ignored"))
		return sc_default(3);
	if (!strcmp(name, "closed"))
		return sc_default(4);
	if (!strcmp(name, "seccomp"))
		return sc_seccomp();
	if (!strcmp(name, "nobody"))
		return sc_nobody();
	if (!strcmp(name, "no-poison"))
		return sc_no_poison();
	fprintf(stderr, "unknown scenario %s\n", name);
	return 2;
}

/* ------------------------------------------------ signals while waiting */

/* A reader waiting in the SIGSEGV handler for a slow fill still gets its
 * other signals: Ctrl-C's SIGINT runs the application's handler while the
 * fill goes on (the fill here goes on only once the handler ran, or gives up
 * after 20 s), and the reader then reads the right bytes. */
static _Atomic int sigint_runs;
static _Atomic int slow_fill_started;
static _Atomic bool slow_fill_saw_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	atomic_fetch_add(&sigint_runs, 1);
}

static int fill_slow(void *ctx, size_t off, void *dst, size_t len)
{
	(void)ctx;
	if (atomic_fetch_add(&slow_fill_started, 1) == 0) {
		/* The first fill (the reader's first chunk) waits. */
		for (int i = 0; i < 20000 && !atomic_load(&sigint_runs); i++)
			usleep(1000);
		atomic_store(&slow_fill_saw_sigint, atomic_load(&sigint_runs) != 0);
	}
	for (size_t i = 0; i < len; i++)
		((unsigned char *)dst)[i] = (unsigned char)((off + i) * 7 + 1);
	return 0;
}

struct slow_reader {
	const unsigned char *p;
	size_t len, bad;
};

static void *slow_read(void *arg)
{
	struct slow_reader *sr = arg;
	sigset_t unblock;

	sigemptyset(&unblock);
	sigaddset(&unblock, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
	for (size_t i = 0; i < sr->len; i++)
		sr->bad += sr->p[i] != (unsigned char)(i * 7 + 1);
	return NULL;
}

static void test_sigint_while_waiting(void)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = 64 * KiB, .fill = fill_slow };
	struct sigaction sa, old;
	struct slow_reader sr = { 0 };
	sigset_t block, saved;
	pm_region *r = NULL;
	pthread_t th;

	if (!backend_usable(PM_BACKEND_SIGSEGV))
		return;
	snprintf(label, sizeof(label), "SIGINT while waiting, sigsegv");
	o.lazy = (struct pm_lazy_opts){ .backend = PM_BACKEND_SIGSEGV, .chunk = 16 * KiB, .readahead = -1,
					.threads = 1 };
	atomic_store(&sigint_runs, 0);
	atomic_store(&slow_fill_started, 0);
	atomic_store(&slow_fill_saw_sigint, false);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	CU_ASSERT_EQUAL_FATAL(sigaction(SIGINT, &sa, &old), 0);
	/* Only the reader may take the SIGINT (the fillers block everything). */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &saved);
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&o, &r), 0);
	sr.p = pm_region_data(r);
	sr.len = o.length;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, slow_read, &sr), 0);
	while (!atomic_load(&slow_fill_started))
		usleep(1000);
	usleep(20000); /* the reader is asleep in the handler by now */
	pthread_kill(th, SIGINT);
	pthread_join(th, NULL);
	CHECK(atomic_load(&sigint_runs) == 1, "the SIGINT handler ran %d times", atomic_load(&sigint_runs));
	/* ThreadSanitizer's runtime defers an asynchronous signal until the
	 * thread next enters instrumented code or an intercepted call; a
	 * reader asleep in the SIGSEGV handler (a raw futex wait) is in
	 * neither, so under TSan the SIGINT arrives when the fill ends (20 s
	 * later) and only the plain and ASan builds can check that it came
	 * during the wait. */
	if (!T_TSAN)
		CHECK(atomic_load(&slow_fill_saw_sigint), "SIGINT was held back until the fill ended");
	CHECK(sr.bad == 0, "%zu bytes differ", sr.bad);
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	sigaction(SIGINT, &old, NULL);
}

/* Pages of [p, p + len) present in this process (mincore), an account
 * independent of the library's own. */
static size_t pages_present(const void *p, size_t len)
{
	size_t n = len / 4096, count = 0;
	unsigned char *v = malloc(n);

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT_EQUAL_FATAL(mincore((void *)p, len, v), 0);
	for (size_t i = 0; i < n; i++)
		count += v[i] & 1;
	free(v);
	return count;
}

/* Chunks smaller than a huge page are copied in from staging buffers
 * (userfaultfd): the data is exact in every order, touches that land
 * mid-chunk get their page first and the rest after, the range holds no
 * more pages than the budget less the buffers, evictions drop several
 * chunks per call, and a budget with no room for the buffers moves. */
static void test_copying(void)
{
	const size_t chunk = 64 * KiB, nchunks = 256, length = nchunks * chunk, budget = 32 * chunk;
	size_t move_chunk = 4 * MiB;
	bool kernel_moves;
	pm_region *r = NULL;
	struct pm_stats st = { 0 };
	struct fctx f;

	if (!backend_usable(PM_BACKEND_UFFD))
		return;
	/* Does this kernel move at all (a 4 MiB chunk says)? */
	fctx_init(&f, 0xc0b1, 2 * move_chunk, move_chunk, PM_BACKEND_UFFD);
	CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, PM_BACKEND_UFFD, 2 * move_chunk, move_chunk, 0, -1, 1, 0), 0);
	pm_region_stats(r, &st);
	kernel_moves = st.mechanism & PM_MECH_MOVE;
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	fctx_free(&f);

	for (int i = 0; i < 3; i++) {
		static const int orders[] = { ORDER_SEQ, ORDER_REV, ORDER_RANDOM };
		static const char *const names[] = { "sequential", "reverse", "random, mid-chunk first" };
		const int order = orders[i];
		const unsigned char *base;
		size_t bad = 0, most = 0;
		uint64_t rng = 0x5eed + (uint64_t)i;
		size_t *perm = make_order(nchunks, order, 0, rng);

		snprintf(label, sizeof(label), "copying, 64 KiB chunks, budget 32 chunks, %s", names[i]);
		fctx_init(&f, 0xc0b2 + (uint64_t)i, length, chunk, PM_BACKEND_UFFD);
		CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, PM_BACKEND_UFFD, length, chunk, budget, 0, 2, 0), 0);
		base = pm_region_data(r);
		t_consumer = true;
		for (size_t pass = 0; pass < 2; pass++) {
			for (size_t k = 0; k < nchunks; k++) {
				size_t c = perm[k], present;

				if (order == ORDER_RANDOM) /* a byte deep inside first, then the whole chunk */
					bad += pat_check(base, f.seed, c * chunk + (size_t)(t_rnd(&rng) % chunk), 1);
				bad += pat_check(base, f.seed, c * chunk, chunk);
				present = pages_present(base, length);
				most = present > most ? present : most;
			}
		}
		t_consumer = false;
		CHECK(bad == 0, "%zu bytes differ", bad);
		pm_region_stats(r, &st);
		CHECK((st.mechanism & (PM_MECH_COPY | PM_MECH_MOVE | PM_MECH_WRITE_PROTECT)) == PM_MECH_COPY,
		      "mechanism %#x: small chunks not copied", st.mechanism);
		CHECK(st.budget_bytes == budget, "budget_bytes %zu, asked %zu", st.budget_bytes, budget);
		/* The range's pages: at most the slots the buffers leave. */
		CHECK(most * 4096 < budget && most * 4096 >= 2 * chunk,
		      "%zu pages present at most, budget %zu bytes", most, budget);
		CHECK(st.peak_resident_bytes <= st.budget_bytes, "peak %" PRIu64 " above budget %zu",
		      st.peak_resident_bytes, st.budget_bytes);
		CHECK(st.evictions >= nchunks, "%" PRIu64 " evictions for two passes over %zu chunks", st.evictions,
		      nchunks);
		check_stats(r, &f, PM_BACKEND_UFFD, length, chunk, budget, 0, 0);
		CU_ASSERT_EQUAL(pm_region_close(r), 0);
		fctx_free(&f);
		free(perm);
	}

	/* A budget of two chunks has no room for the buffers: move, if
	 * the kernel can (else copy with the buffers on top). */
	snprintf(label, sizeof(label), "copying, budget of two chunks");
	fctx_init(&f, 0xc0b5, length, chunk, PM_BACKEND_UFFD);
	CU_ASSERT_EQUAL_FATAL(open_region(&r, &f, PM_BACKEND_UFFD, length, chunk, 2 * chunk, 0, 1, 0), 0);
	t_consumer = true;
	CHECK(pat_check(pm_region_data(r), f.seed, 0, length) == 0, "bytes differ");
	t_consumer = false;
	pm_region_stats(r, &st);
	CHECK(!(st.mechanism & PM_MECH_MOVE) == !kernel_moves, "mechanism %#x: the kernel %s", st.mechanism,
	      kernel_moves ? "moves" : "does not move");
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	fctx_free(&f);
}

/* Many fillers with small chunks: one staging buffer per filler, the
 * front-end and the read-ahead would be more than the free bitmap holds
 * (64, or past it): the reads must still complete, byte-exact. */
struct many_fillers {
	int threads, readahead;
};

static int many_fillers_child(void *arg)
{
	const struct many_fillers *m = arg;
	const size_t chunk = 4 * KiB, length = 1024 * chunk;
	pm_region *r = NULL;
	struct fctx f;
	size_t bad;

	alarm(60); /* a fill that finds no buffer spins: SIGALRM, not a hung test */
	fctx_init(&f, 0xb0f5 + (uint64_t)m->threads, length, chunk, PM_BACKEND_UFFD);
	if (open_region(&r, &f, PM_BACKEND_UFFD, length, chunk, 512 * chunk, m->readahead, m->threads, 0))
		return 2;
	bad = pat_check(pm_region_data(r), f.seed, 0, length);
	if (pm_region_close(r))
		return 3;
	return bad ? 1 : 0;
}

static void test_copying_many_fillers(void)
{
	static const struct many_fillers cases[] = { { 59, 0 }, { 63, -1 }, { 64, 0 }, { 70, -1 } };

	if (!backend_usable(PM_BACKEND_UFFD))
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(label, sizeof(label), "copying, 4 KiB chunks, %d threads, read-ahead %d", cases[i].threads,
			 cases[i].readahead);
		expect_exit0(in_child(many_fillers_child, (void *)&cases[i]), "reading it all");
	}
}

/* Chunks the application mlock()ed among those that one call drops
 * (copying): the call fails, and the chunks it dropped before the locked
 * one must leave, not be kept as resident with their pages gone (a touch
 * would fault forever); the locked one stays, whole. */
static int locked_child(void *arg)
{
	const size_t chunk = 16 * KiB, nchunks = 256, length = nchunks * chunk;
	struct pm_stats st = { 0 };
	const unsigned char *p;
	pm_region *r = NULL;
	struct fctx f;
	size_t bad;

	(void)arg;
	alarm(60); /* a reader left faulting: SIGALRM, not a hung test */
	fctx_init(&f, 0x10c4, length, chunk, PM_BACKEND_UFFD);
	if (open_region(&r, &f, PM_BACKEND_UFFD, length, chunk, 34 * chunk, -1, 1, 0))
		return 2;
	pm_region_stats(r, &st);
	if (!(st.mechanism & PM_MECH_COPY)) {
		printf("\n  SKIP: 16 KiB chunks are not copied here (mechanism %#x)\n", st.mechanism);
		return T_SKIP;
	}
	p = pm_region_data(r);
	bad = pat_check(p, f.seed, 0, 8 * chunk);
	if (mlock(p + 2 * chunk, chunk) || mlock(p + 5 * chunk, chunk)) {
		printf("\n  SKIP: mlock: %s\n", strerror(errno));
		return T_SKIP;
	}
	/* Fills every slot: the oldest chunks, the locked ones among them,
	 * then leave in batches. */
	bad += pat_check(p, f.seed, 8 * chunk, 24 * chunk);
	for (int i = 0; i < 5000 && !st.evictions; i++) {
		usleep(1000);
		pm_region_stats(r, &st);
	}
	/* Chunk 1 first: chunk 0 had room to leave alone. */
	bad += pat_check(p, f.seed, chunk, 7 * chunk);
	bad += scan(p, f.seed, length, chunk, ORDER_RANDOM, 0, 0x10c5);
	bad += scan(p, f.seed, length, chunk / 2, ORDER_SEQ, 0, 0);
	pm_region_stats(r, &st);
	if (bad || !st.evictions || st.fill_errors)
		return 1;
	return pm_region_close(r) ? 3 : 0;
}

static void test_copying_locked(void)
{
	int status;

	if (!backend_usable(PM_BACKEND_UFFD))
		return;
	snprintf(label, sizeof(label), "copying, 16 KiB chunks, some locked");
	status = in_child(locked_child, NULL);
	if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP)
		return;
	expect_exit0(status, "reading it all");
}

/* ------------------------------------------------------------ main */

static const struct t_test unit_tests[] = {
	{ "errors", test_errors },
	{ "PATCHMAP_BACKEND", test_environment },
	{ "chunk x budget x read-ahead x order grid", test_grid },
	{ "tiny and ragged lengths", test_lengths },
	{ "read-ahead", test_readahead },
	{ "read-ahead skips a reader of every other chunk", test_readahead_strided },
	{ "small chunks are copied", test_copying },
	{ "small chunks with more fillers than staging buffers", test_copying_many_fillers },
	{ "small chunks, some locked by the application", test_copying_locked },
	{ "stray writes", test_writes },
	{ "PM_LAZY_WRITABLE on uffd", test_writes_uffd_writable },
	{ "failing fills", test_fill_errors },
	{ "a failed read-ahead is retried", test_readahead_error },
	{ "kernel accesses (write(2) from the region)", test_kernel_access },
	{ "SIGINT reaches a reader waiting for a fill", test_sigint_while_waiting },
};

static const struct t_test thread_tests[] = {
	{ "1, 2 and 8 readers", test_readers },
	{ "threads reading parts of one stream", test_stream_parts },
	{ "a far chunk read first, then a scan", test_far_chunk_first },
	{ "reads over three chunks, slow fills", test_wide_reader },
	{ "patch matrices, threaded, against the reference", test_matrix_threads },
	{ "many regions opened and closed by threads", test_many_regions },
	{ "alternate signal stack", test_altstack },
};

static const struct t_test process_tests[] = {
	{ "fork", test_fork },
	{ "read-ahead and eviction in runs", test_runs },
	{ "failing fills and writes kill children", test_fatal_children },
	{ "SIGSEGV chaining", test_chain },
	{ "userfaultfd denied by seccomp", test_seccomp },
	{ "userfaultfd as nobody", test_nobody },
	{ "failing fills without UFFDIO_POISON", test_no_poison },
};

static const char *only; /* run only the tests whose name contains this */

#define GROUP(t) t, T_COUNT(t), only

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : "all";
	bool all = !strcmp(group, "all"), ok = true;
	int ret;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	self_exe = "/proc/self/exe";
	if (argc == 3 && !strcmp(argv[1], "--scenario"))
		return run_scenario(argv[2]);
	if (!all && strcmp(group, "unit") && strcmp(group, "threads") && strcmp(group, "process")) {
		fprintf(stderr, "usage: %s [all|unit|threads|process [NAME-PART]]\n", argv[0]);
		return 2;
	}
	only = argc > 2 ? argv[2] : NULL;
	if (T_TSAN)
		printf("ThreadSanitizer: the tests' loads of region memory are not instrumented (pages\n"
		       "move in by mremap/UFFDIO_MOVE, which it cannot follow); the library's are\n");
	install_t_handler();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if (all || !strcmp(group, "unit"))
		ok = ok && t_add_suite("region", GROUP(unit_tests));
	if (all || !strcmp(group, "threads"))
		ok = ok && t_add_suite("region-threads", GROUP(thread_tests));
	if (all || !strcmp(group, "process"))
		ok = ok && t_add_suite("region-process", GROUP(process_tests));
	if (!ok) {
		CU_cleanup_registry();
		return 1;
	}
	ret = t_run_registered();
	printf("%lu region cases\n", ncases);
	return ret;
}
