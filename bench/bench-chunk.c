/* bench-chunk.c: the life of one chunk on the two lazy mechanisms, phase by
 * phase, with the same system calls the backends make: fill a pool slot,
 * move it in, protect it, wake, read it, move it out (and re-reserve the
 * hole), the fault's round trip to its handler, and a hand-off between two
 * threads. Each phase is timed with clock_gettime around the call; with
 * --batch N, N contiguous chunks go through each call at once (one
 * UFFDIO_MOVE, mremap or mprotect for all N), to show what a call costs
 * per chunk when it covers several. A bystander thread reads its own memory
 * on the other CPU meanwhile, as a consumer does, so every page-table change
 * pays the TLB shootdown it pays in real use (--no-bystander: without;
 * --bystander-process: the reader is another process, which no shootdown
 * of this one has to reach: what is left is the cost of a busy other CPU).
 * The copy life (fill a staging buffer, UFFDIO_COPY, read, drop) is the
 * library's for chunks smaller than a huge page. */
#include <fcntl.h>
#include <errno.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "bench.h"

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

static size_t chunk = 4 * B_MIB, rounds = 64;
static enum { BY_NONE, BY_THREAD, BY_PROCESS } bystander = BY_THREAD;
static const char *const by_names[] = { "off", "a thread of this process", "another process" };
static const char *batches = "1,2,4,8";

static void usage(const char *prog)
{
	printf("usage: %s [options]\n"
	       "  --chunk KIB      chunk size (default 4096, the library's default)\n"
	       "  --batch LIST     chunks per call (default 1,2,4,8)\n"
	       "  --rounds N       chunks timed per case (default 64)\n"
	       "  --no-bystander   no thread reading on the other CPU\n"
	       "  --bystander-process\n"
	       "                   the reader on the other CPU is another process\n",
	       prog);
}

/* ------------------------------------------------------------ helpers */

#define MAX_SAMPLES 4096

struct phase {
	const char *name;
	double t[MAX_SAMPLES]; /* seconds per call */
	size_t n;
};

static void rec(struct phase *p, double t0, double t1)
{
	if (p->n < MAX_SAMPLES)
		p->t[p->n++] = t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(struct phase *p)
{
	if (!p->n)
		return 0;
	qsort(p->t, p->n, sizeof(p->t[0]), cmp_double);
	return p->t[p->n / 2];
}

static char *reserve(size_t n, int prot)
{
	size_t al = 2 * B_MIB > chunk ? 2 * B_MIB : chunk;
	char *p = mmap(NULL, n + al, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		b_die(1, "mmap: %s", strerror(errno));
	a = (char *)(((uintptr_t)p + al - 1) & ~(uintptr_t)(al - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + n, (size_t)(p + n + al - (a + n)));
	return a;
}

static void fill(char *dst, size_t len, size_t off)
{
	uint64_t *d = (uint64_t *)dst;

	for (size_t i = 0; i < len / 8; i++)
		d[i] = (off / 8 + i) * 0x9E3779B97F4A7C15ull;
}

static void check(const char *p, size_t len, size_t off)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < len / 8; i += 512)
		if (q[i] != (off / 8 + i) * 0x9E3779B97F4A7C15ull)
			b_die(1, "wrong data at offset %zu", off + i * 8);
}

/* Not inlined: the reads are what is timed, at the call's own cost. */
static __attribute__((noipa)) uint64_t sum(const void *p, size_t n)
{
	return b_sum(p, n);
}

static _Atomic bool by_stop;
static _Atomic uint64_t by_sink;

/* Reads 1 MiB of its own over and over: a consumer on the other CPU. */
static void *bystander_main(void *arg)
{
	uint64_t *buf = b_alloc_resident(B_MIB), s = 0;

	(void)arg;
	while (!atomic_load_explicit(&by_stop, memory_order_relaxed))
		s += sum(buf, B_MIB);
	atomic_store(&by_sink, s);
	free(buf);
	return NULL;
}

/* Per chunk: each phase's median, their sum, and what the sum makes in
 * GB/s (the wall clock of a run on a busy machine counts its waits for a
 * CPU too; the medians mostly do not). */
static void print_row(const char *mech, size_t batch, struct phase *ph, size_t nph)
{
	double sum = 0;

	printf("%-8s %5zu", mech, batch);
	for (size_t i = 0; i < nph; i++) {
		double t = median(&ph[i]) / (double)batch;

		sum += t;
		printf(" %9.1f", t * 1e6);
	}
	printf(" %9.1f %7.2f\n", sum * 1e6, (double)chunk / sum / 1e9);
}

/* ------------------------------------------------------------ uffd */

static int uffd_fd = -1;

static int uffd_ioctl(unsigned long req, void *arg)
{
	return ioctl(uffd_fd, req, arg) < 0 ? -errno : 0;
}

static void uffd_move(char *dst, char *src, size_t len, bool wake)
{
	while (len) {
		struct uffdio_move m = { (uintptr_t)dst, (uintptr_t)src, len,
					 wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE, 0 };
		int err = uffd_ioctl(UFFDIO_MOVE, &m);

		if (!err)
			return;
		if (m.move <= 0 && err != -EAGAIN)
			b_die(1, "UFFDIO_MOVE: %s", strerror(-err));
		if (m.move > 0) {
			dst += m.move;
			src += m.move;
			len -= (size_t)m.move;
		}
	}
}

static void uffd_register(char *p, size_t len, uint64_t mode)
{
	struct uffdio_register reg = { .range = { (uintptr_t)p, len }, .mode = mode };
	int err = uffd_ioctl(UFFDIO_REGISTER, &reg);

	if (err)
		b_die(1, "UFFDIO_REGISTER: %s", strerror(-err));
}

static bool uffd_setup(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MOVE | UFFD_FEATURE_PAGEFAULT_FLAG_WP };

	uffd_fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd_fd < 0)
		uffd_fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* user mode only */);
	if (uffd_fd < 0 || ioctl(uffd_fd, UFFDIO_API, &api) < 0) {
		printf("uffd: not available here (%s)\n", strerror(errno));
		return false;
	}
	return true;
}

enum { U_FILL, U_MOVE_IN, U_WP, U_WAKE, U_READ, U_MOVE_OUT, U_N };

/* One chunk's life, batch chunks per call, no fault: what a read-ahead
 * filler does for chunks that a sequential reader will find mapped. */
static void uffd_life(size_t batch)
{
	size_t nslots = 2 * batch, nchunks = 16 * batch, span = nchunks * chunk;
	char *base = reserve(span, PROT_READ | PROT_WRITE), *pool = reserve(nslots * chunk, PROT_READ | PROT_WRITE);
	static struct phase ph[U_N];
	const char *names[U_N] = { "fill", "move in", "protect", "wake", "read", "move out" };
	double t0, t1;
	size_t done = 0, c = 0;
	uint64_t sink = 0;

	for (int i = 0; i < U_N; i++)
		ph[i] = (struct phase){ .name = names[i] };
	madvise(base, span, MADV_HUGEPAGE);
	madvise(pool, nslots * chunk, MADV_HUGEPAGE);
	memset(pool, 0, nslots * chunk);
	uffd_register(base, span, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	uffd_register(pool, nslots * chunk, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);

	while (done < rounds) {
		char *slot = pool + (c / batch % 2) * batch * chunk, *dst = base + c * chunk;
		size_t len = batch * chunk;

		t0 = b_now();
		fill(slot, len, c * chunk);
		t1 = b_now();
		rec(&ph[U_FILL], t0, t1);
		uffd_move(dst, slot, len, false);
		t0 = b_now();
		rec(&ph[U_MOVE_IN], t1, t0);
		struct uffdio_writeprotect wp = { { (uintptr_t)dst, len }, UFFDIO_WRITEPROTECT_MODE_WP };
		if (uffd_ioctl(UFFDIO_WRITEPROTECT, &wp))
			b_die(1, "UFFDIO_WRITEPROTECT failed");
		t1 = b_now();
		rec(&ph[U_WP], t0, t1);
		struct uffdio_range rg = { (uintptr_t)dst, len };
		uffd_ioctl(UFFDIO_WAKE, &rg);
		t0 = b_now();
		rec(&ph[U_WAKE], t1, t0);
		sink += sum(dst, len);
		t1 = b_now();
		rec(&ph[U_READ], t0, t1);
		check(dst, len, c * chunk);
		t0 = b_now();
		uffd_move(slot, dst, len, false);
		t1 = b_now();
		rec(&ph[U_MOVE_OUT], t0, t1);
		c = (c + batch) % nchunks;
		done += batch;
	}
	atomic_fetch_add(&by_sink, sink);
	print_row("uffd", batch, ph, U_N);
	munmap(base, span);
	munmap(pool, nslots * chunk);
}

/* The copy life, the library's for chunks not of whole huge pages: fill
 * staging buffers whose pages stay put, UFFDIO_COPY each chunk in (a copy
 * wakes), read, drop the pages; one drop covers the batch. Beside the move
 * life of the same chunk size it shows what moving small pages costs: a
 * TLB flush per page moved, and a slow first write to each moved page. */
enum { C_FILL, C_COPY, C_READ, C_DROP, C_N };

static void copy_life(size_t batch)
{
	size_t nchunks = 16 * batch, span = nchunks * chunk, len = batch * chunk;
	char *base = reserve(span, PROT_READ), *stage = reserve(len, PROT_READ | PROT_WRITE);
	static struct phase ph[C_N];
	const char *names[C_N] = { "fill", "copy in", "read", "drop" };
	double t0, t1;
	size_t done = 0, c = 0;
	uint64_t sink = 0;

	for (int i = 0; i < C_N; i++)
		ph[i] = (struct phase){ .name = names[i] };
	madvise(base, span, MADV_NOHUGEPAGE);
	madvise(stage, len, MADV_NOHUGEPAGE);
	memset(stage, 0, len);
	uffd_register(base, span, UFFDIO_REGISTER_MODE_MISSING);

	while (done < rounds) {
		char *dst = base + c * chunk;

		t0 = b_now();
		fill(stage, len, c * chunk);
		t1 = b_now();
		rec(&ph[C_FILL], t0, t1);
		for (size_t k = 0; k < batch; k++) {
			struct uffdio_copy cp = { (uintptr_t)(dst + k * chunk), (uintptr_t)(stage + k * chunk),
						  chunk, 0, 0 };

			if (uffd_ioctl(UFFDIO_COPY, &cp))
				b_die(1, "UFFDIO_COPY failed");
		}
		t0 = b_now();
		rec(&ph[C_COPY], t1, t0);
		sink += sum(dst, len);
		t1 = b_now();
		rec(&ph[C_READ], t0, t1);
		check(dst, len, c * chunk);
		t0 = b_now();
		madvise(dst, len, MADV_DONTNEED);
		t1 = b_now();
		rec(&ph[C_DROP], t0, t1);
		c = (c + batch) % nchunks;
		done += batch;
	}
	atomic_fetch_add(&by_sink, sink);
	print_row("copy", batch, ph, C_N);
	munmap(base, span);
	munmap(stage, len);
}

/* The fault's round trip: a reader touches a missing chunk; a handler
 * thread reads the message, moves a filled slot in and wakes the reader.
 * The reader's wait minus the handler's move and wake is the round trip
 * (the kernel's fault path, the message, the wake-up, the return). */
struct rt {
	char *base, *pool;
	size_t n;
	struct phase serve;
};

static void *uffd_handler(void *arg)
{
	struct rt *rt = arg;
	struct pollfd p = { .fd = uffd_fd, .events = POLLIN };

	for (size_t i = 0; i < rt->n;) {
		struct uffd_msg m;
		double t0, t1;
		char *a;
		size_t c;

		if (poll(&p, 1, 1000) <= 0)
			b_die(1, "no fault arrived");
		if (read(uffd_fd, &m, sizeof(m)) != sizeof(m) || m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		a = (char *)(uintptr_t)m.arg.pagefault.address;
		c = (size_t)(a - rt->base) / chunk;
		t0 = b_now();
		uffd_move(rt->base + c * chunk, rt->pool + (c % 2) * chunk, chunk, true);
		t1 = b_now();
		rec(&rt->serve, t0, t1);
		i++;
	}
	return NULL;
}

static void uffd_roundtrip(void)
{
	static struct rt rt;
	static struct phase wait = { .name = "wait" };
	size_t n = rounds < 64 ? rounds : 64, span = n * chunk;
	pthread_t h;

	rt.base = reserve(span, PROT_READ | PROT_WRITE);
	rt.pool = reserve(2 * chunk, PROT_READ | PROT_WRITE);
	rt.n = n;
	rt.serve.name = "serve";
	madvise(rt.base, span, MADV_HUGEPAGE);
	madvise(rt.pool, 2 * chunk, MADV_HUGEPAGE);
	memset(rt.pool, 0, 2 * chunk);
	uffd_register(rt.base, span, UFFDIO_REGISTER_MODE_MISSING);
	uffd_register(rt.pool, 2 * chunk, UFFDIO_REGISTER_MODE_MISSING);
	pthread_create(&h, NULL, uffd_handler, &rt);
	for (size_t c = 0; c < n; c++) {
		char *slot = rt.pool + (c % 2) * chunk, *dst = rt.base + c * chunk;
		double t0, t1;

		fill(slot, chunk, c * chunk);
		t0 = b_now();
		(void)*(volatile char *)dst;
		t1 = b_now();
		rec(&wait, t0, t1);
		check(dst, chunk, c * chunk);
		uffd_move(slot, dst, chunk, false);
	}
	pthread_join(h, NULL);
	printf("uffd fault: reader waits %.1f us, of which the handler's move + wake %.1f us: "
	       "round trip %.1f us\n",
	       median(&wait) * 1e6, median(&rt.serve) * 1e6, (median(&wait) - median(&rt.serve)) * 1e6);
	munmap(rt.base, span);
	munmap(rt.pool, 2 * chunk);
}

/* ------------------------------------------------------------ mremap */

static char *remap(char *src, size_t len, char *dst)
{
	void *p = mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);

	if (p == MAP_FAILED)
		b_die(1, "mremap: %s", strerror(errno));
	return p;
}

enum { M_UNSEAL, M_FILL, M_SEAL, M_MOVE_IN, M_READ, M_PROT_NONE, M_MOVE_OUT, M_REMAP_HOLE, M_N };

static void mremap_life(size_t batch)
{
	size_t nslots = 2 * batch, nchunks = 16 * batch, span = nchunks * chunk;
	char *base = reserve(span, PROT_NONE), *pool = reserve(nslots * chunk, PROT_READ | PROT_WRITE);
	static struct phase ph[M_N];
	const char *names[M_N] = { "unseal", "fill", "seal", "move in", "read", "prot none", "move out", "re-reserve" };
	double t0, t1;
	size_t done = 0, c = 0;
	uint64_t sink = 0;

	for (int i = 0; i < M_N; i++)
		ph[i] = (struct phase){ .name = names[i] };
	madvise(pool, nslots * chunk, MADV_HUGEPAGE);
	memset(pool, 0, nslots * chunk);
	while (done < rounds) {
		char *slot = pool + (c / batch % 2) * batch * chunk, *dst = base + c * chunk;
		size_t len = batch * chunk;

		t0 = b_now();
		if (mprotect(slot, len, PROT_READ | PROT_WRITE))
			b_die(1, "mprotect: %s", strerror(errno));
		t1 = b_now();
		rec(&ph[M_UNSEAL], t0, t1);
		fill(slot, len, c * chunk);
		t0 = b_now();
		rec(&ph[M_FILL], t1, t0);
		mprotect(slot, len, PROT_READ);
		t1 = b_now();
		rec(&ph[M_SEAL], t0, t1);
		remap(slot, len, dst);
		t0 = b_now();
		rec(&ph[M_MOVE_IN], t1, t0);
		sink += sum(dst, len);
		t1 = b_now();
		rec(&ph[M_READ], t0, t1);
		check(dst, len, c * chunk);
		t0 = b_now();
		mprotect(dst, len, PROT_NONE);
		t1 = b_now();
		rec(&ph[M_PROT_NONE], t0, t1);
		remap(dst, len, slot);
		t0 = b_now();
		rec(&ph[M_MOVE_OUT], t1, t0);
		mmap(dst, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		t1 = b_now();
		rec(&ph[M_REMAP_HOLE], t0, t1);
		c = (c + batch) % nchunks;
		done += batch;
	}
	atomic_fetch_add(&by_sink, sink);
	print_row("mremap", batch, ph, M_N);
	munmap(base, span);
	munmap(pool, nslots * chunk);
}

/* The SIGSEGV round trip: the handler moves a filled slot in; the reader's
 * wait minus that move is the signal's delivery and return. */
static char *sig_base, *sig_pool;
static volatile double sig_serve;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	size_t c = (size_t)((char *)si->si_addr - sig_base) / chunk;
	double t0 = b_now();

	(void)sig;
	(void)uc;
	remap(sig_pool + (c % 2) * chunk, chunk, sig_base + c * chunk);
	sig_serve = b_now() - t0;
}

static void mremap_roundtrip(void)
{
	static struct phase wait = { .name = "wait" }, serve = { .name = "serve" };
	size_t n = rounds < 64 ? rounds : 64, span = n * chunk;
	struct sigaction sa, old;

	sig_base = reserve(span, PROT_NONE);
	sig_pool = reserve(2 * chunk, PROT_READ | PROT_WRITE);
	madvise(sig_pool, 2 * chunk, MADV_HUGEPAGE);
	memset(sig_pool, 0, 2 * chunk);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, &old);
	for (size_t c = 0; c < n; c++) {
		char *slot = sig_pool + (c % 2) * chunk, *dst = sig_base + c * chunk;
		double t0, t1;

		mprotect(slot, chunk, PROT_READ | PROT_WRITE);
		fill(slot, chunk, c * chunk);
		mprotect(slot, chunk, PROT_READ);
		t0 = b_now();
		(void)*(volatile char *)dst;
		t1 = b_now();
		rec(&wait, t0, t1);
		rec(&serve, 0, sig_serve);
		check(dst, chunk, c * chunk);
		mprotect(dst, chunk, PROT_NONE);
		remap(dst, chunk, slot);
	}
	sigaction(SIGSEGV, &old, NULL);
	printf("sigsegv fault: reader waits %.1f us, of which the handler's mremap %.1f us: "
	       "round trip %.1f us\n",
	       median(&wait) * 1e6, median(&serve) * 1e6, (median(&wait) - median(&serve)) * 1e6);
	munmap(sig_base, span);
	munmap(sig_pool, 2 * chunk);
}

/* ------------------------------------------------------------ hand-off */

static _Atomic uint32_t ping;

static void *pong_main(void *arg)
{
	size_t n = *(size_t *)arg;

	for (size_t i = 0; i < n; i++) {
		while (atomic_load(&ping) != 2 * i + 1)
			syscall(SYS_futex, &ping, FUTEX_WAIT_PRIVATE, 2 * i, NULL, NULL, 0);
		atomic_store(&ping, 2 * i + 2);
		syscall(SYS_futex, &ping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
	return NULL;
}

/* A futex ping-pong between two threads: half of it is one hand-off (a
 * fault queued to a filler, or a filler waking the reader). */
static void handoff(void)
{
	static struct phase ph = { .name = "hand-off" };
	size_t n = 2000;
	pthread_t t;

	pthread_create(&t, NULL, pong_main, &n);
	for (size_t i = 0; i < n; i++) {
		double t0 = b_now();

		atomic_store(&ping, 2 * i + 1);
		syscall(SYS_futex, &ping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		while (atomic_load(&ping) != 2 * i + 2)
			syscall(SYS_futex, &ping, FUTEX_WAIT_PRIVATE, 2 * i + 1, NULL, NULL, 0);
		rec(&ph, t0, b_now());
	}
	pthread_join(t, NULL);
	printf("hand-off between two threads (futex wake, half a ping-pong): %.1f us\n",
	       median(&ph) / 2 * 1e6);
}

/* Runs a chunk's life once per batch size of --batch. */
static void each_batch(void (*life)(size_t batch))
{
	for (const char *s = batches; *s;) {
		size_t b = strtoul(s, (char **)&s, 10);

		if (b)
			life(b);
		s += *s == ',';
	}
}

/* The bystander as another process: it shares no page tables with this
 * one, and dies with it. */
static pid_t bystander_fork(void)
{
	pid_t parent = getpid(), pid = fork();

	if (pid < 0)
		b_die(1, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) /* the parent is gone already */
			_exit(0);
		bystander_main(NULL);
		_exit(0);
	}
	return pid;
}

int main(int argc, char **argv)
{
	pthread_t by;
	pid_t by_pid = -1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0]);
			return 0;
		}
		if (!strcmp(a, "--no-bystander") || !strcmp(a, "--bystander-process")) {
			bystander = a[2] == 'n' ? BY_NONE : BY_PROCESS;
			continue;
		}
		if (i + 1 >= argc)
			b_die(2, "unknown option or missing value: %s (see --help)", a);
		if (!strcmp(a, "--chunk"))
			chunk = b_parse_size(argv[++i], 1024, "--chunk");
		else if (!strcmp(a, "--batch"))
			batches = argv[++i];
		else if (!strcmp(a, "--rounds"))
			rounds = b_parse_size(argv[++i], 1, "--rounds");
		else
			b_die(2, "unknown option: %s (see --help)", a);
	}
	if (chunk < 4096 || (chunk & (chunk - 1)) || !rounds || rounds > MAX_SAMPLES)
		b_die(2, "--chunk: a power of two of 4 KiB or more; --rounds: 1..%d", MAX_SAMPLES);
	b_print_header(argc, argv);
	if (bystander == BY_THREAD)
		pthread_create(&by, NULL, bystander_main, NULL);
	else if (bystander == BY_PROCESS)
		by_pid = bystander_fork();
	printf("chunk %zu KiB, %zu chunks per case, bystander reader: %s; microseconds per chunk, median\n",
	       chunk >> 10, rounds, by_names[bystander]);

	if (uffd_setup()) {
		printf("%-8s %5s %9s %9s %9s %9s %9s %9s %9s %7s\n", "mech", "batch", "fill", "move in",
		       "protect", "wake", "read", "move out", "sum", "GB/s");
		each_batch(uffd_life);
		printf("%-8s %5s %9s %9s %9s %9s %9s %7s\n", "mech", "batch", "fill", "copy in", "read", "drop",
		       "sum", "GB/s");
		each_batch(copy_life);
		uffd_roundtrip();
	}
	printf("%-8s %5s %9s %9s %9s %9s %9s %9s %9s %9s %9s %7s\n", "mech", "batch", "unseal", "fill",
	       "seal", "move in", "read", "prot none", "move out", "re-reserv", "sum", "GB/s");
	each_batch(mremap_life);
	mremap_roundtrip();
	handoff();
	if (bystander == BY_THREAD) {
		atomic_store(&by_stop, true);
		pthread_join(by, NULL);
	} else if (bystander == BY_PROCESS) {
		kill(by_pid, SIGKILL);
		waitpid(by_pid, NULL, 0);
	}
	b_print_footer();
	return 0;
}
