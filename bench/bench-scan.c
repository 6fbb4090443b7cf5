/* bench-scan.c: a consumer that reads the whole patch matrix once, in order
 * (the float32 matrix of 16 x 16 windows of a u8 image), summed as 64-bit
 * words. The lazy backends against the eager path *with* its
 * materialization, and against a second scan of the materialized matrix.
 * --big: a matrix a few times the machine's RAM, lazy backends only.
 * --pattern: a generic region with a trivial fill, to tell the paging
 * machinery's cost from the im2col fill's.
 * --bound: also a region of the same length whose fill writes nothing: the
 * paging machinery alone, the most a scan with any fill could reach; and
 * the pre-built matrix scanned while another thread of the process moves a
 * huge page to and fro as often as the lazy scan moves its pages, which is
 * what those moves cost a reader on this kernel and hypervisor. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "bench.h"

static size_t side = 2048, window = 16, pattern_mib;
static int reps = 3;
static bool big, no_eager, bound;
static double ram_x = 3, eager_wait = 5;

static void usage(const char *prog)
{
	printf("usage: %s [options]\n"
	       "  --side N         image side (default 2048: a 4.2 GB matrix)\n"
	       "  --window K       window side (default 16)\n"
	       "  --reps N         repetitions, the median is reported (default 3; 1 with --big)\n"
	       "  --no-eager       skip the eager reference (it materializes the matrix)\n"
	       "  --eager-wait S   idle seconds before the cold materialization (default 5)\n"
	       "  --big            a matrix of --ram-x times RAM (unless --side is given);\n"
	       "                   lazy backends only, materializing is impossible\n"
	       "  --ram-x X        with --big: matrix size over RAM (default 3)\n"
	       "  --pattern MIB    scan a generic region of MIB with a trivial fill instead\n"
	       "  --bound          also scan each backend's region with a fill that writes\n"
	       "                   nothing (the paging alone, a bound on any fill's scan),\n"
	       "                   and the pre-built matrix while another thread moves a\n"
	       "                   huge page once per MiB scanned (the moves alone)\n"
	       "  --configs LIST   lazy configurations: plain (no read-ahead) and/or\n"
	       "                   ahead (the options as given); default plain,ahead\n" B_LAZY_USAGE,
	       prog);
}

/* ------------------------------------------------------------ runs */

struct result {
	double gbs, open_s, peak_mib;
	double cpu;      /* CPU seconds of every thread of the process */
	double thr, sys; /* the scanning thread's CPU seconds, and its system part */
	uint64_t sum;
	struct pm_stats st;
};

static uint64_t scan(const void *p, size_t n)
{
	return b_sum(p, n);
}

/* CPU clocks: the process's, the scanning thread's and its system part. */
static void clock_start(double t[3])
{
	t[0] = b_clock(CLOCK_PROCESS_CPUTIME_ID);
	t[1] = b_clock(CLOCK_THREAD_CPUTIME_ID);
	t[2] = b_thread_sys();
}

static void clock_stop(const double t[3], struct result *res)
{
	res->cpu = b_clock(CLOCK_PROCESS_CPUTIME_ID) - t[0];
	res->thr = b_clock(CLOCK_THREAD_CPUTIME_ID) - t[1];
	res->sys = b_thread_sys() - t[2];
}

static void scan_beside_moves(const void *p, size_t n, struct result *res, size_t *moves);

/* eager: open (materialize) + scan, then optionally a second scan of the
 * pre-built matrix, and a third with huge-page moves beside it. */
static void run_eager(const struct pm_matrix_opts *base, struct result *mat, struct result *pre,
		      struct result *beside, size_t *moves)
{
	struct pm_matrix_opts o = *base;
	pm_matrix *m;
	size_t n;
	double t0, t1, t2, c[3];

	o.lazy.backend = PM_BACKEND_EAGER;
	b_hwm_reset();
	clock_start(c);
	t0 = b_now();
	b_check(pm_matrix_open(&o, &m), "eager open");
	t1 = b_now();
	n = pm_matrix_bytes(m);
	mat->sum = scan(pm_matrix_data(m), n);
	t2 = b_now();
	clock_stop(c, mat);
	mat->gbs = (double)n / (t2 - t0) / 1e9;
	mat->open_s = t1 - t0;
	mat->peak_mib = b_hwm_mib();
	mat->st.size = sizeof(mat->st);
	pm_matrix_stats(m, &mat->st);

	if (pre) {
		b_hwm_reset();
		clock_start(c);
		t0 = b_now();
		pre->sum = scan(pm_matrix_data(m), n);
		t1 = b_now();
		clock_stop(c, pre);
		pre->gbs = (double)n / (t1 - t0) / 1e9;
		pre->open_s = 0;
		pre->peak_mib = b_hwm_mib();
		pre->st = mat->st;
	}
	if (beside) {
		scan_beside_moves(pm_matrix_data(m), n, beside, moves);
		beside->st = mat->st;
	}
	pm_matrix_close(m);
}

static void run_lazy(const struct pm_matrix_opts *o, struct result *res)
{
	pm_matrix *m;
	size_t n;
	double t0, t1, t2, c[3];

	b_hwm_reset();
	clock_start(c);
	t0 = b_now();
	b_check(pm_matrix_open(o, &m), "lazy open");
	t1 = b_now();
	n = pm_matrix_bytes(m);
	res->sum = scan(pm_matrix_data(m), n);
	t2 = b_now();
	clock_stop(c, res);
	res->gbs = (double)n / (t2 - t0) / 1e9;
	res->open_s = t1 - t0;
	res->peak_mib = b_hwm_mib();
	res->st.size = sizeof(res->st);
	pm_matrix_stats(m, &res->st);
	b_check(pm_matrix_close(m), "a fill failed");
}

/* ------------------------------------------- moves beside a scan */

/* A reader publishes how far it has scanned; the mover moves one 2 MiB huge
 * page between two places (mremap, which clears and sets one PMD and
 * flushes it from every CPU, as the lazy backends' moves do) until it has
 * made one move per MiB scanned: the lazy scan moves each 2 MiB of the
 * matrix in and out once. */
struct mover {
	_Atomic size_t scanned; /* bytes */
	atomic_bool done;
	char *at[2];
	size_t moves;
	int err;
};

static void *mover_main(void *arg)
{
	struct mover *m = arg;
	size_t len = 2 * B_MIB;

	while (!atomic_load(&m->done)) {
		if (m->moves >= atomic_load(&m->scanned) / B_MIB)
			continue; /* the reader's CPU is the other one */
		char *from = m->at[m->moves & 1], *to = m->at[!(m->moves & 1)];

		if (mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to) ==
		    MAP_FAILED) {
			m->err = errno;
			break;
		}
		m->moves++;
	}
	return NULL;
}

/* The process's anonymous memory in huge pages, KiB (-1: unknown). */
static long anon_huge_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "AnonHugePages:", 14))
			v = strtol(line + 14, NULL, 10);
	fclose(f);
	return v;
}

/* The scan of p while a mover works beside it; GB/s in res, the moves
 * made in *moves. */
static void scan_beside_moves(const void *p, size_t n, struct result *res, size_t *moves)
{
	size_t len = 2 * B_MIB, block = B_MIB;
	struct mover m = { .err = 0 };
	char *base;
	pthread_t t;
	double t0, c[3];
	uint64_t sum = 0;
	long huge;

	base = mmap(NULL, 3 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		b_die(1, "mmap: %s", strerror(errno));
	m.at[0] = (char *)(((uintptr_t)base + len - 1) & ~(uintptr_t)(len - 1));
	m.at[1] = m.at[0] + len;
	madvise(m.at[0], len, MADV_HUGEPAGE);
	huge = anon_huge_kib();
	memset(m.at[0], 1, len);
	if (huge < 0 || anon_huge_kib() - huge < 2048)
		printf("      [the moved page is not one huge page here: each move is 512 "
		       "page-table entries]\n");
	if (pthread_create(&t, NULL, mover_main, &m))
		b_die(1, "pthread_create failed");
	b_hwm_reset();
	clock_start(c);
	t0 = b_now();
	for (size_t off = 0; off < n; off += block) {
		sum += b_sum((const char *)p + off, n - off < block ? n - off : block);
		atomic_store_explicit(&m.scanned, off + block, memory_order_relaxed);
	}
	res->gbs = (double)n / (b_now() - t0) / 1e9;
	clock_stop(c, res);
	atomic_store(&m.done, true);
	pthread_join(t, NULL);
	if (m.err)
		b_die(1, "mremap: %s", strerror(m.err));
	res->sum = sum;
	res->open_s = 0;
	res->peak_mib = b_hwm_mib();
	*moves = m.moves;
	munmap(base, 3 * len);
}

/* The trivial fill of the mechanism probes: one multiply per word. */
static int pattern_fill(void *ctx, size_t off, void *dst, size_t len)
{
	uint64_t *d = dst;

	(void)ctx;
	for (size_t i = 0; i < len / 8; i++)
		d[i] = (off / 8 + i) * 0x9E3779B97F4A7C15ull;
	return 0;
}

/* No fill at all: a chunk shows what its pool slot last held. */
static int empty_fill(void *ctx, size_t off, void *dst, size_t len)
{
	(void)ctx, (void)off, (void)dst, (void)len;
	return 0;
}

static void run_pattern(const struct pm_lazy_opts *lz, size_t len, pm_fill_fn fill,
			struct result *res)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = len, .fill = fill };
	pm_region *r;
	double t0, t1, t2, c[3];

	o.lazy = *lz;
	b_hwm_reset();
	clock_start(c);
	t0 = b_now();
	b_check(pm_region_open(&o, &r), "region open");
	t1 = b_now();
	res->sum = scan(pm_region_data(r), len);
	t2 = b_now();
	clock_stop(c, res);
	res->gbs = (double)len / (t2 - t0) / 1e9;
	res->open_s = t1 - t0;
	res->peak_mib = b_hwm_mib();
	res->st.size = sizeof(res->st);
	pm_region_stats(r, &res->st);
	b_check(pm_region_close(r), "a fill failed");
}

/* ------------------------------------------------------------ output */

static void median_of(struct result *runs, int n, struct result *out)
{
	double g[64], p[64], os[64], cp[64], th[64], sy[64];

	for (int i = 0; i < n; i++) {
		g[i] = runs[i].gbs;
		p[i] = runs[i].peak_mib;
		os[i] = runs[i].open_s;
		cp[i] = runs[i].cpu;
		th[i] = runs[i].thr;
		sy[i] = runs[i].sys;
	}
	*out = runs[n - 1];
	out->gbs = b_median(g, n);
	out->peak_mib = b_median(p, n);
	out->open_s = b_median(os, n);
	out->cpu = b_median(cp, n);
	out->thr = b_median(th, n);
	out->sys = b_median(sy, n);
}

static void print_ratio(double x, const struct result *ref)
{
	if (ref)
		printf(" %8.2f", x / ref->gbs);
	else
		printf(" %8s", "-");
}

static void print_row(const char *name, const struct result *r, const struct result *cold,
		      const struct result *warm, const struct result *pre)
{
	printf("%-30s %7.2f %7.2f", name, r->gbs, r->open_s);
	print_ratio(r->gbs, cold);
	print_ratio(r->gbs, warm);
	print_ratio(r->gbs, pre);
	printf(" %9.0f %7.3f %7.3f %7.3f\n", r->peak_mib, r->cpu, r->thr, r->sys);
}

static void verdict(const char *what, double ratio, double target)
{
	printf("target: %-46s >= %.2fx: %5.2fx, %s\n", what, target, ratio,
	       ratio >= target ? "met" : "missed");
}

int main(int argc, char **argv)
{
	struct b_lazy lz;
	struct pm_matrix_opts base;
	struct pm_matrix_info info = { 0 };
	struct result runs[64], mat = { 0 }, warm = { 0 }, pre = { 0 };
	bool side_given = false, reps_given = false, want_plain = true, want_ahead = true;
	uint8_t *img = NULL;
	size_t bytes;

	b_lazy_init(&lz);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (b_lazy_arg(&lz, argc, argv, &i))
			continue;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0]);
			return 0;
		}
		if (!strcmp(a, "--big")) {
			big = true;
			continue;
		}
		if (!strcmp(a, "--no-eager")) {
			no_eager = true;
			continue;
		}
		if (!strcmp(a, "--bound")) {
			bound = true;
			continue;
		}
		if (!v)
			b_die(2, "unknown option or missing value: %s (see --help)", a);
		i++;
		if (!strcmp(a, "--side"))
			side = (size_t)b_parse_long(v, a), side_given = true;
		else if (!strcmp(a, "--window"))
			window = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--reps"))
			reps = (int)b_parse_long(v, a), reps_given = true;
		else if (!strcmp(a, "--eager-wait"))
			eager_wait = strtod(v, NULL);
		else if (!strcmp(a, "--ram-x"))
			ram_x = strtod(v, NULL);
		else if (!strcmp(a, "--pattern"))
			pattern_mib = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--configs"))
			want_plain = strstr(v, "plain") != NULL, want_ahead = strstr(v, "ahead") != NULL;
		else
			b_die(2, "unknown option: %s (see --help)", a);
	}
	if (big && !reps_given)
		reps = 1;
	if (reps < 1 || reps > 64 || window < 1 || ram_x <= 0 || (!want_plain && !want_ahead))
		b_die(2, "bad arguments (see --help)");
	if (big) {
		no_eager = true;
		if (!side_given) {
			/* (side - k + 1)^2 rows of k*k floats = ram_x * RAM */
			double rows = ram_x * (double)b_mem_total() / (double)(window * window * 4);

			side = (size_t)__builtin_sqrt(rows) + window - 1;
		}
	}
	b_print_header(argc, argv);

	if (pattern_mib) {
		bytes = pattern_mib * B_MIB;
		printf("generic region of %zu MiB, trivial fill (one multiply per word), median of %d\n",
		       pattern_mib, reps);
		no_eager = true;
	} else {
		b_opts_2d(&base, NULL, PM_DTYPE_U8, side, window);
		b_check(pm_matrix_describe(&base, &info), "pm_matrix_describe");
		bytes = info.bytes;
		if (!no_eager && bytes > b_mem_total() / 3)
			b_die(2, "a %.1f GB matrix is too large to materialize here: use --no-eager "
				 "(or a smaller --side)", (double)bytes / 1e9);
		img = b_alloc_resident(side * side);
		b_image_u8(img, side * side);
		base.source.data = img;
		printf("u8 image %zux%zu, %zux%zu windows -> float32 matrix %zu x %zu = %.2f GB "
		       "(%.2fx RAM), median of %d\n", side, side, window, window, info.rows, info.cols,
		       (double)bytes / 1e9, (double)bytes / (double)b_mem_total(), reps);
	}
	printf("\nratios: x cold / x warm = over eager materialize+scan, cold / warm memory;\n"
	       "x pre = over a scan of the pre-built matrix. open s: the open call alone.\n"
	       "CPU s: CPU seconds of the whole process; main s, sys s: of the scanning\n"
	       "thread, and of them in the kernel.\n");
	printf("\n%-30s %7s %7s %8s %8s %8s %9s %7s %7s %7s\n", "case", "GB/s", "open s",
	       "x cold", "x warm", "x pre", "peak MiB", "CPU s", "main s", "sys s");

	if (!no_eager) {
		struct result pres[64], warms[64], besides[64];
		size_t moves = 0;

		/* Cold: memory the process has not used lately, as a fresh
		 * materialization gets it (on a VM that hands freed memory back
		 * to its host, this is the slow first touch). Warm: memory just
		 * freed by the cold run, taken back at once. */
		for (int r = 0; r < reps; r++) {
			if (eager_wait > 0)
				usleep((useconds_t)(eager_wait * 1e6));
			run_eager(&base, &runs[r], NULL, NULL, NULL);
			run_eager(&base, &warms[r], &pres[r], bound ? &besides[r] : NULL, &moves);
		}
		median_of(runs, reps, &mat);
		median_of(warms, reps, &warm);
		median_of(pres, reps, &pre);
		print_row("eager cold: materialize+scan", &mat, &mat, &warm, &pre);
		print_row("eager warm: materialize+scan", &warm, &mat, &warm, &pre);
		print_row("eager: pre-built scan", &pre, &mat, &warm, &pre);
		if (bound) {
			struct result bes;

			median_of(besides, reps, &bes);
			print_row("pre-built, moves beside", &bes, &mat, &warm, &pre);
			printf("      [another thread moved a 2 MiB huge page %zu times (one per MiB "
			       "scanned): the lazy scan's page moves, without the paging]\n", moves);
			if (bes.sum != pre.sum)
				b_die(1, "the scans of the eager matrix differ");
		}
		if (mat.sum != pre.sum || warm.sum != pre.sum)
			b_die(1, "the scans of the eager matrix differ");
	}

	double plain_gbs[PM_BACKEND_COUNT] = { 0 }, ahead_gbs[PM_BACKEND_COUNT] = { 0 };
	uint64_t ref_sum = no_eager ? 0 : mat.sum;
	bool have_ref = !no_eager;

	for (int bi = 0; bi < lz.nbackends; bi++) {
		for (int cfg = 0; cfg < 2; cfg++) {
			struct pm_lazy_opts l = lz.lazy;
			struct result res;
			char name[64];

			if ((cfg == 0 && !want_plain) || (cfg == 1 && !want_ahead))
				continue;
			l.backend = lz.backends[bi];
			if (cfg == 0)
				l.readahead = -1;
			for (int r = 0; r < reps; r++) {
				if (pattern_mib)
					run_pattern(&l, bytes, pattern_fill, &runs[r]);
				else {
					struct pm_matrix_opts o = base;

					o.lazy = l;
					run_lazy(&o, &runs[r]);
				}
				if (!have_ref)
					ref_sum = runs[r].sum, have_ref = true;
				if (runs[r].sum != ref_sum)
					b_die(1, "%s: the scan's sum differs from the reference's",
					      pm_backend_name(l.backend));
			}
			median_of(runs, reps, &res);
			snprintf(name, sizeof(name), "%s %s", pm_backend_name(l.backend),
				 cfg == 0 ? "(no read-ahead)" : "(read-ahead)");
			print_row(name, &res, no_eager ? NULL : &mat, no_eager ? NULL : &warm,
				  no_eager ? NULL : &pre);
			b_print_stats(&res.st);
			if (cfg == 0)
				plain_gbs[l.backend] = res.gbs;
			else
				ahead_gbs[l.backend] = res.gbs;
		}
		if (bound) {
			struct pm_lazy_opts l = lz.lazy;
			struct result res;
			char name[64];
			double own = want_ahead ? ahead_gbs[lz.backends[bi]] : 0;

			l.backend = lz.backends[bi];
			for (int r = 0; r < reps; r++)
				run_pattern(&l, bytes, empty_fill, &runs[r]);
			median_of(runs, reps, &res);
			snprintf(name, sizeof(name), "%s, no fill (bound)", pm_backend_name(l.backend));
			print_row(name, &res, no_eager ? NULL : &mat, no_eager ? NULL : &warm,
				  no_eager ? NULL : &pre);
			b_print_stats(&res.st);
			if (own > 0)
				printf("      [%s (read-ahead) is at %.2f of this bound]\n",
				       pm_backend_name(l.backend), own / res.gbs);
		}
	}
	if (!no_eager) {
		printf("\n");
		for (int bi = 0; bi < lz.nbackends; bi++) {
			int b = lz.backends[bi];
			char what[96];

			if (want_plain) {
				snprintf(what, sizeof(what), "%s (no read-ahead) / cold materialize+scan",
					 pm_backend_name(b));
				verdict(what, plain_gbs[b] / mat.gbs, 1.0);
				snprintf(what, sizeof(what), "%s (no read-ahead) / warm materialize+scan",
					 pm_backend_name(b));
				verdict(what, plain_gbs[b] / warm.gbs, 1.0);
				snprintf(what, sizeof(what), "%s (no read-ahead) / pre-built scan",
					 pm_backend_name(b));
				verdict(what, plain_gbs[b] / pre.gbs, 0.67);
			}
			if (want_ahead) {
				snprintf(what, sizeof(what), "%s (read-ahead) / cold materialize+scan",
					 pm_backend_name(b));
				verdict(what, ahead_gbs[b] / mat.gbs, 1.3);
				snprintf(what, sizeof(what), "%s (read-ahead) / warm materialize+scan",
					 pm_backend_name(b));
				verdict(what, ahead_gbs[b] / warm.gbs, 1.3);
				snprintf(what, sizeof(what), "%s (read-ahead) / pre-built scan",
					 pm_backend_name(b));
				verdict(what, ahead_gbs[b] / pre.gbs, 0.67);
			}
		}
	}
	b_print_footer();
	free(img);
	return 0;
}
