/* bench-faults.c: how fast a lazy region serves faults. One byte touched per
 * chunk, chunks in random order, so every touch faults and, once the budget
 * is full, evicts. The library's generic region (a cheap pattern fill)
 * against a plain userfaultfd loop written here: a region registered MISSING,
 * a handler thread that fills a buffer and UFFDIO_COPYs it onto the chunk,
 * and MADV_DONTNEED of the oldest chunk to stay within the same budget. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "bench.h"

#define GOLDEN 0x9E3779B97F4A7C15ull

static size_t budget = 64 * B_MIB, min_touches = 256, max_mib = 2048;
static int reps = 1;

static void usage(const char *prog)
{
	printf("usage: %s [options]\n"
	       "  --chunks LIST     chunk sizes in KiB (default 4,16,64,256,1024,2048,4096,8192)\n"
	       "  --min-touches N   timed faults per chunk size, at least (default 256)\n"
	       "  --max-mib M       timed bytes per chunk size, at most (default 2048)\n"
	       "  --reps N          repetitions, the median is reported (default 1)\n"
	       "  --no-naive        skip the plain userfaultfd loop\n"
	       "  (--budget defaults to 64 MiB here; --chunk is ignored, see --chunks)\n" B_LAZY_USAGE,
	       prog);
}

/* The pattern both sides fill: word i of the buffer is i * GOLDEN. */
static int pattern_fill(void *ctx, size_t off, void *dst, size_t len)
{
	uint64_t *d = dst;

	(void)ctx;
	for (size_t i = 0; i < len / 8; i++)
		d[i] = (off / 8 + i) * GOLDEN;
	return 0;
}

static unsigned char pattern_byte(size_t off)
{
	uint64_t w = (off / 8) * GOLDEN;

	return (unsigned char)(w >> (8 * (off % 8)));
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Touches chunk order[i] for i in [from, to) at a random byte; returns the
 * number of wrong bytes read. */
static size_t touch(const unsigned char *base, size_t chunk, const size_t *order, size_t from,
		    size_t to)
{
	size_t bad = 0;

	for (size_t i = from; i < to; i++) {
		size_t off = order[i] * chunk + (size_t)(rng() % chunk);

		bad += *(const volatile unsigned char *)(base + off) != pattern_byte(off);
	}
	return bad;
}

struct result {
	double s, peak_mib;
	size_t budget;
	struct pm_stats st;
	bool has_stats;
};

/* ------------------------------------------------------------ naive */

struct naive {
	unsigned char *base;
	size_t chunk, nchunks, nslots;
	int uffd, stop;
	unsigned char *buf;
	size_t *fifo, head, count;
	unsigned char *resident;
	int error;
};

static void *naive_handler(void *arg)
{
	struct naive *n = arg;
	struct pollfd p[2] = { { .fd = n->uffd, .events = POLLIN }, { .fd = n->stop, .events = POLLIN } };
	struct uffd_msg msgs[16];

	for (;;) {
		ssize_t got;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			n->error = errno;
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		got = read(n->uffd, msgs, sizeof(msgs));
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			n->error = errno;
			return NULL;
		}
		for (size_t k = 0; k < (size_t)got / sizeof(msgs[0]); k++) {
			size_t c;
			struct uffdio_copy cp;

			if (msgs[k].event != UFFD_EVENT_PAGEFAULT)
				continue;
			c = (size_t)(msgs[k].arg.pagefault.address - (uintptr_t)n->base) / n->chunk;
			if (n->resident[c]) {
				struct uffdio_range w = { (uintptr_t)n->base + c * n->chunk, n->chunk };

				ioctl(n->uffd, UFFDIO_WAKE, &w);
				continue;
			}
			if (n->count == n->nslots) {
				size_t old = n->fifo[n->head];

				madvise(n->base + old * n->chunk, n->chunk, MADV_DONTNEED);
				n->resident[old] = 0;
				n->fifo[n->head] = c;
				n->head = (n->head + 1) % n->nslots;
			} else {
				n->fifo[n->count++] = c;
			}
			pattern_fill(NULL, c * n->chunk, n->buf, n->chunk);
			cp = (struct uffdio_copy){ .dst = (uintptr_t)n->base + c * n->chunk,
						   .src = (uintptr_t)n->buf, .len = n->chunk };
			if (ioctl(n->uffd, UFFDIO_COPY, &cp) < 0 && errno != EEXIST) {
				n->error = errno;
				return NULL;
			}
			n->resident[c] = 1;
		}
	}
}

static int run_naive(size_t chunk, size_t nchunks, const size_t *order, size_t warm,
		     struct result *res)
{
	struct naive n = { .chunk = chunk, .nchunks = nchunks };
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	pthread_t th;
	uint64_t one = 1;
	size_t bad;
	double t0;

	n.nslots = budget / chunk ? budget / chunk : 1;
	n.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (n.uffd < 0)
		return -errno;
	if (ioctl(n.uffd, UFFDIO_API, &api) < 0)
		return -errno;
	n.base = mmap(NULL, chunk * nchunks, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (n.base == MAP_FAILED)
		return -errno;
	reg = (struct uffdio_register){ .range = { (uintptr_t)n.base, chunk * nchunks },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(n.uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	n.stop = eventfd(0, EFD_CLOEXEC);
	n.buf = b_alloc_resident(chunk);
	n.fifo = calloc(n.nslots, sizeof(*n.fifo));
	n.resident = calloc(nchunks, 1);
	if (n.stop < 0 || !n.fifo || !n.resident)
		b_die(1, "naive loop: out of resources");
	if (pthread_create(&th, NULL, naive_handler, &n))
		b_die(1, "naive loop: cannot start its thread");

	b_hwm_reset();
	bad = touch(n.base, chunk, order, 0, warm);
	t0 = b_now();
	bad += touch(n.base, chunk, order, warm, nchunks);
	res->s = b_now() - t0;
	res->peak_mib = b_hwm_mib();
	res->budget = n.nslots * chunk;
	res->has_stats = false;

	if (write(n.stop, &one, sizeof(one)) != sizeof(one))
		b_die(1, "naive loop: cannot stop its thread");
	pthread_join(th, NULL);
	munmap(n.base, chunk * nchunks);
	close(n.uffd);
	close(n.stop);
	free(n.buf);
	free(n.fifo);
	free(n.resident);
	if (n.error)
		b_die(1, "naive loop: %s", strerror(n.error));
	if (bad)
		b_die(1, "naive loop: %zu wrong bytes read", bad);
	return 0;
}

/* ------------------------------------------------------------ library */

static void run_lib_here(const struct pm_lazy_opts *lz, size_t chunk, size_t nchunks,
		    const size_t *order, size_t warm, struct result *res)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = chunk * nchunks,
				    .fill = pattern_fill };
	pm_region *r;
	size_t bad;
	double t0;

	o.lazy = *lz;
	o.lazy.chunk = chunk;
	o.lazy.budget = budget;
	b_check(pm_region_open(&o, &r), pm_backend_name(lz->backend));
	b_bus_region = r;
	b_hwm_reset();
	bad = touch(pm_region_data(r), chunk, order, 0, warm);
	t0 = b_now();
	bad += touch(pm_region_data(r), chunk, order, warm, nchunks);
	res->s = b_now() - t0;
	res->peak_mib = b_hwm_mib();
	res->st.size = sizeof(res->st);
	pm_region_stats(r, &res->st);
	res->budget = res->st.budget_bytes;
	res->has_stats = true;
	b_bus_region = NULL;
	b_check(pm_region_close(r), "a fill failed");
	if (bad)
		b_die(1, "%s: %zu wrong bytes read", pm_backend_name(lz->backend), bad);
}

/* Runs run_lib_here in a child process, so that a library failure (a
 * SIGBUS with the recorded error on stderr, or a hang) is reported as
 * such and the other cases still run. Returns false if the child failed. */
static bool run_lib(const struct pm_lazy_opts *lz, size_t chunk, size_t nchunks,
		    const size_t *order, size_t warm, struct result *res)
{
	int fd[2], status;
	struct pollfd pf;
	pid_t pid;
	ssize_t got;

	if (pipe(fd))
		b_die(1, "pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		b_die(1, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(fd[0]);
		run_lib_here(lz, chunk, nchunks, order, warm, res);
		_exit(write(fd[1], res, sizeof(*res)) == (ssize_t)sizeof(*res) ? 0 : 1);
	}
	close(fd[1]);
	/* A library that hangs must not hang the benchmark. */
	pf = (struct pollfd){ .fd = fd[0], .events = POLLIN };
	if (poll(&pf, 1, 300 * 1000) == 1) {
		got = read(fd[0], res, sizeof(*res));
	} else {
		fprintf(stderr, "no result after 300 s: the case hung; killed\n");
		kill(pid, SIGKILL);
		got = 0;
	}
	close(fd[0]);
	if (waitpid(pid, &status, 0) != pid)
		b_die(1, "waitpid: %s", strerror(errno));
	return got == (ssize_t)sizeof(*res) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The chunk size the library picks when asked for none. */
static size_t library_default_chunk(void)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = 1, .fill = pattern_fill };
	struct pm_stats st;
	pm_region *r;

	o.lazy.backend = PM_BACKEND_SIGSEGV;
	b_check(pm_region_open(&o, &r), "region open");
	pm_region_stats(r, &st);
	pm_region_close(r);
	return st.chunk_bytes;
}

static void median_of(struct result *runs, int n, struct result *out)
{
	double s[64], p[64];

	for (int i = 0; i < n; i++)
		s[i] = runs[i].s, p[i] = runs[i].peak_mib;
	*out = runs[n - 1];
	out->s = b_median(s, n);
	out->peak_mib = b_median(p, n);
}

static void print_row(const char *name, const struct result *r, size_t timed, size_t chunk,
		      double naive_s)
{
	char ratio[32] = "-";

	if (naive_s > 0)
		snprintf(ratio, sizeof(ratio), "%.2f", naive_s / r->s);
	printf("  %-22s %12.0f %8.2f %10.1f %8s %9zu %9.0f\n", name, (double)timed / r->s,
	       (double)(timed * chunk) / r->s / 1e9, r->s / (double)timed * 1e6, ratio,
	       r->budget >> 20, r->peak_mib);
}

int main(int argc, char **argv)
{
	struct b_lazy lz;
	char list[256] = "4,16,64,256,1024,2048,4096,8192", *save = NULL;
	bool naive = true;
	int failures = 0;
	size_t default_chunk;
	double target_ratio[PM_BACKEND_COUNT] = { 0 };

	b_lazy_init(&lz);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (b_lazy_arg(&lz, argc, argv, &i))
			continue;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0]);
			return 0;
		}
		if (!strcmp(a, "--no-naive")) {
			naive = false;
			continue;
		}
		if (!v)
			b_die(2, "unknown option or missing value: %s (see --help)", a);
		i++;
		if (!strcmp(a, "--chunks"))
			snprintf(list, sizeof(list), "%s", v);
		else if (!strcmp(a, "--min-touches"))
			min_touches = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--max-mib"))
			max_mib = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--reps"))
			reps = (int)b_parse_long(v, a);
		else
			b_die(2, "unknown option: %s (see --help)", a);
	}
	if (lz.lazy.budget)
		budget = lz.lazy.budget;
	if (reps < 1 || reps > 64 || min_touches < 1 || max_mib < 1)
		b_die(2, "bad arguments (see --help)");

	b_print_header(argc, argv);
	default_chunk = library_default_chunk();
	printf("one byte read per chunk, chunks in random order (every touch faults); budget %zu MiB;\n"
	       "a first pass fills the budget untimed, then at least %zu faults (at most %zu MiB) "
	       "are timed; median of %d\n", budget >> 20, min_touches, max_mib, reps);

	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t chunk = b_parse_size(t, 1024, "--chunks"), warm, timed, nchunks, *order;
		struct result runs[64], naive_res = { 0 };

		if (chunk < 4096 || (chunk & (chunk - 1)))
			b_die(2, "--chunks: %s KiB is not a power of two of at least 4", t);
		warm = budget / chunk ? budget / chunk : 1;
		timed = 3 * warm > min_touches ? 3 * warm : min_touches;
		if (timed * chunk > max_mib * B_MIB)
			timed = max_mib * B_MIB / chunk > 0 ? max_mib * B_MIB / chunk : 1;
		nchunks = warm + timed;
		order = malloc(nchunks * sizeof(*order));
		if (!order)
			b_die(1, "out of memory");
		for (size_t i = 0; i < nchunks; i++)
			order[i] = i;
		for (size_t i = nchunks - 1; i > 0; i--) {
			size_t j = (size_t)(rng() % (i + 1)), x = order[i];

			order[i] = order[j];
			order[j] = x;
		}
		printf("\nchunk %zu KiB: %zu timed faults (%.0f MiB)\n", chunk >> 10, timed,
		       (double)(timed * chunk) / B_MIB);
		printf("  %-22s %12s %8s %10s %8s %9s %9s\n", "", "chunks/s", "GB/s", "us/fault",
		       "x naive", "budget M", "peak MiB");
		if (naive) {
			for (int r = 0; r < reps; r++) {
				int err = run_naive(chunk, nchunks, order, warm, &runs[r]);

				if (err)
					b_die(1, "naive userfaultfd loop: %s", strerror(-err));
			}
			median_of(runs, reps, &naive_res);
			print_row("naive uffd copy", &naive_res, timed, chunk, 0);
		}
		for (int bi = 0; bi < lz.nbackends; bi++) {
			struct pm_lazy_opts l = lz.lazy;
			struct result res;
			char name[64];
			int r;

			l.backend = lz.backends[bi];
			snprintf(name, sizeof(name), "library %s", pm_backend_name(l.backend));
			for (r = 0; r < reps; r++)
				if (!run_lib(&l, chunk, nchunks, order, warm, &runs[r]))
					break;
			if (r < reps) {
				printf("  %-22s FAILED (the library's error is on stderr)\n", name);
				failures++;
				continue;
			}
			median_of(runs, reps, &res);
			print_row(name, &res, timed, chunk, naive ? naive_res.s : 0);
			b_print_stats(&res.st);
			if (chunk == default_chunk && naive)
				target_ratio[l.backend] = naive_res.s / res.s;
		}
		free(order);
	}
	printf("\n");
	for (int bi = 0; bi < lz.nbackends && naive; bi++) {
		double r = target_ratio[lz.backends[bi]];

		if (r > 0)
			printf("target: library %s >= 2x the naive loop at the default chunk (%zu KiB): "
			       "%.2fx, %s\n", pm_backend_name(lz.backends[bi]), default_chunk >> 10, r,
			       r >= 2 ? "met" : "missed");
	}
	b_print_footer();
	if (failures)
		printf("%d case%s FAILED\n", failures, failures > 1 ? "s" : "");
	return failures ? 1 : 0;
}
