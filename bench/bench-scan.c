/* bench-scan.c: a consumer that reads the whole patch matrix once, in order
 * (the float32 matrix of 16 x 16 windows of a u8 image), summed as 64-bit
 * words. The lazy backends against the eager path *with* its
 * materialization, and against a second scan of the materialized matrix.
 * --big: a matrix a few times the machine's RAM, lazy backends only.
 * --pattern: a generic region with a trivial fill, to tell the paging
 * machinery's cost from the im2col fill's.
 * --bound: also a region of the same length whose fill writes nothing: the
 * paging machinery alone, the most a scan with any fill could reach; that
 * bound with a fill at the store rate (one core streaming a matrix that
 * another reads, into pages just moved as a lazy fill's pool slots are);
 * and, with the eager reference, the pre-built matrix
 * scanned while another thread of the process moves a huge page to and fro
 * as often as the lazy scan moves its pages, which is what those moves cost
 * a reader on this kernel and hypervisor. */
#include <pthread.h>
#include <stdatomic.h>

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
	       "                   that bound with a fill at the store rate (a core\n"
	       "                   streaming buffers that another reads, into pages just\n"
	       "                   moved), and, with the eager reference, the pre-built\n"
	       "                   matrix while another thread moves a huge page once\n"
	       "                   per MiB scanned\n"
	       "  --configs LIST   lazy configurations: plain (no read-ahead) and/or\n"
	       "                   ahead (the options as given); default plain,ahead\n" B_LAZY_USAGE,
	       prog);
}

/* ------------------------------------------------------------ runs */

struct result {
	double gbs, open_s, peak_mib;
	double cpu;      /* CPU seconds of every thread of the process */
	size_t moves;    /* beside a scan: the mover's moves */
	int mover_err, huge;
	double thr, sys; /* the scanning thread's CPU seconds, and its system part */
	uint64_t sum;
	struct pm_stats st;
};

static uint64_t scan(const void *p, size_t n)
{
	return b_sum(p, n);
}

/* res's CPU seconds since c (b_cpu_now() on the scanning thread). */
static void cpu_since(struct result *res, struct b_cpu c)
{
	struct b_cpu d = b_cpu_since(c);

	res->cpu = d.proc;
	res->thr = d.thr;
	res->sys = d.sys;
}

static void scan_beside_moves(const void *p, size_t n, struct result *res);

/* eager: open (materialize) + scan, then optionally a second scan of the
 * pre-built matrix, and a third with huge-page moves beside it. */
static void run_eager(const struct pm_matrix_opts *base, struct result *mat, struct result *pre,
		      struct result *beside)
{
	struct pm_matrix_opts o = *base;
	pm_matrix *m;
	size_t n;
	double t0, t1, t2;
	struct b_cpu c;

	o.lazy.backend = PM_BACKEND_EAGER;
	b_hwm_reset();
	c = b_cpu_now();
	t0 = b_now();
	b_check(pm_matrix_open(&o, &m), "eager open");
	t1 = b_now();
	n = pm_matrix_bytes(m);
	mat->sum = scan(pm_matrix_data(m), n);
	t2 = b_now();
	cpu_since(mat, c);
	mat->gbs = (double)n / (t2 - t0) / 1e9;
	mat->open_s = t1 - t0;
	mat->peak_mib = b_hwm_mib();
	mat->st.size = sizeof(mat->st);
	pm_matrix_stats(m, &mat->st);

	if (pre) {
		b_hwm_reset();
		c = b_cpu_now();
		t0 = b_now();
		pre->sum = scan(pm_matrix_data(m), n);
		t1 = b_now();
		cpu_since(pre, c);
		pre->gbs = (double)n / (t1 - t0) / 1e9;
		pre->open_s = 0;
		pre->peak_mib = b_hwm_mib();
		pre->st = mat->st;
	}
	if (beside) {
		scan_beside_moves(pm_matrix_data(m), n, beside);
		beside->st = mat->st;
	}
	pm_matrix_close(m);
}

static void run_lazy(const struct pm_matrix_opts *o, struct result *res)
{
	pm_matrix *m;
	size_t n;
	double t0, t1, t2;
	struct b_cpu c;

	b_hwm_reset();
	c = b_cpu_now();
	t0 = b_now();
	b_check(pm_matrix_open(o, &m), "lazy open");
	t1 = b_now();
	n = pm_matrix_bytes(m);
	res->sum = scan(pm_matrix_data(m), n);
	t2 = b_now();
	cpu_since(res, c);
	res->gbs = (double)n / (t2 - t0) / 1e9;
	res->open_s = t1 - t0;
	res->peak_mib = b_hwm_mib();
	res->st.size = sizeof(res->st);
	pm_matrix_stats(m, &res->st);
	b_check(pm_matrix_close(m), "a fill failed");
}

/* ------------------------------------------- moves beside a scan */

/* The scan of p while a mover works beside it. */
static void scan_beside_moves(const void *p, size_t n, struct result *res)
{
	struct b_mover m;
	double t0;
	struct b_cpu c;
	uint64_t sum = 0;

	res->huge = b_mover_start(&m);
	b_hwm_reset();
	c = b_cpu_now();
	t0 = b_now();
	for (size_t off = 0; off < n; off += B_MIB) {
		sum += b_sum((const char *)p + off, n - off < B_MIB ? n - off : B_MIB);
		b_mover_progress(&m, off + B_MIB);
	}
	res->gbs = (double)n / (b_now() - t0) / 1e9;
	cpu_since(res, c);
	res->moves = b_mover_stop(&m);
	res->mover_err = m.err;
	res->sum = sum;
	res->open_s = 0;
	res->peak_mib = b_hwm_mib();
}

/* ------------------------------------------------ the store rate */

/* One thread writes 4 MiB buffers in turn over a 64 MiB arena, another
 * reads each once it is written (at most 15 behind): the rate at which a
 * core can write a matrix that another core reads, the least a fill of
 * the matrix streamed past the caches can cost (the writer's time in its
 * stores, not its waits for the reader), as read-ahead fills store it.
 * (Demand fills use ordinary stores into slots partly in the caches.) */
#define RING_BUF (4 * B_MIB)
#define RING_N 16

struct ring {
	char *arena, *away; /* away: where a buffer moves to and back from */
	size_t total, buf;  /* buffers, and the bytes of one */
	bool moved;         /* each buffer moved away and back before it is written */
	int err;
	double write_s;     /* the writer's time in its stores */
	_Atomic size_t written, read;
};

/* A 2 MiB-aligned mapping of n bytes in huge pages where there are any,
 * touched; NULL if it cannot be had. (*base, *len: what to unmap.) */
static char *huge_map(size_t n, char **base, size_t *len)
{
	*len = n + 2 * B_MIB;
	*base = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*base == MAP_FAILED)
		return NULL;
	char *p = (char *)(((uintptr_t)*base + 2 * B_MIB - 1) & ~(uintptr_t)(2 * B_MIB - 1));

	madvise(p, n, MADV_HUGEPAGE);
	memset(p, 1, n);
	return p;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Buffer k: 64-byte stores past the caches where the CPU has AVX-512,
 * else 16-byte ones. */
__attribute__((target("avx512f"))) static void ring_write64(char *d, size_t k)
{
	__m512i v = _mm512_set1_epi64((long long)k), one = _mm512_set1_epi64(1);

	for (size_t i = 0; i < RING_BUF; i += 64) {
		_mm512_stream_si512((void *)(d + i), v);
		v = _mm512_add_epi64(v, one);
	}
	_mm_sfence();
}

static void ring_write16(char *d, size_t k)
{
	__m128i v = _mm_set1_epi64x((long long)k), one = _mm_set1_epi64x(1);

	for (size_t i = 0; i < RING_BUF; i += 16) {
		_mm_stream_si128((__m128i *)(d + i), v);
		v = _mm_add_epi64(v, one);
	}
	_mm_sfence();
}
#endif

static void *ring_writer(void *arg)
{
	struct ring *g = arg;
#if defined(__x86_64__)
	bool wide = __builtin_cpu_supports("avx512f");
#endif

	for (size_t k = 0; k < g->total; k++) {
		char *d = g->arena + (k % RING_N) * RING_BUF;

		while (k - atomic_load(&g->read) >= RING_N)
			b_pause();
		if (g->moved &&
		    (mremap(d, RING_BUF, RING_BUF, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			    g->away) == MAP_FAILED ||
		     mremap(g->away, RING_BUF, RING_BUF,
			    MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, d) == MAP_FAILED)) {
			g->err = errno;
			g->moved = false; /* the buffer is where it was, or lost: */
			memset(d, 0, RING_BUF); /* (the reader waits on it all the same) */
		}
		double t0 = b_now();
#if defined(__x86_64__)
		if (wide)
			ring_write64(d, k);
		else
			ring_write16(d, k);
#else
		for (size_t i = 0; i < RING_BUF / 8; i++)
			((uint64_t *)d)[i] = k + i;
#endif
		g->write_s += b_now() - t0;
		atomic_store(&g->written, k + 1);
	}
	return NULL;
}

/* GB/s of the ring's writer over `bytes` (rounded up to whole buffers, at
 * most 4 GiB), in the time it spends storing; with `moved`, into buffers
 * moved away and back just before (as a lazy fill writes a pool slot whose
 * pages just came out of the region). 0 if it cannot be measured here.
 * Measured once per run. */
static double store_rate(size_t bytes, bool moved)
{
	static double rates[2];
	size_t cap = (size_t)4 << 30, alen, wlen;
	struct ring g = { .total = ((bytes < cap ? bytes : cap) + RING_BUF - 1) / RING_BUF,
			  .buf = RING_BUF, .moved = moved };
	char *abase, *wbase;
	pthread_t t;
	uint64_t sum = 0;

	if (rates[moved] > 0)
		return rates[moved];
	g.arena = huge_map(RING_N * RING_BUF, &abase, &alen);
	g.away = huge_map(RING_BUF, &wbase, &wlen);
	if (!g.arena || !g.away)
		b_die(1, "mmap: %s", strerror(errno));
	if (pthread_create(&t, NULL, ring_writer, &g))
		b_die(1, "pthread_create failed");
	for (size_t k = 0; k < g.total; k++) {
		while (atomic_load(&g.written) <= k)
			b_pause();
		sum += b_sum(g.arena + (k % RING_N) * g.buf, g.buf);
		atomic_store(&g.read, k + 1);
	}
	pthread_join(t, NULL);
	munmap(abase, alen);
	munmap(wbase, wlen);
	if (sum == 1) /* keeps the reads */
		printf(" ");
	if (g.err)
		return 0;
	rates[moved] = (double)(g.total * RING_BUF) / g.write_s / 1e9;
	return rates[moved];
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
	double t0, t1, t2;
	struct b_cpu c;

	o.lazy = *lz;
	b_hwm_reset();
	c = b_cpu_now();
	t0 = b_now();
	b_check(pm_region_open(&o, &r), "region open");
	t1 = b_now();
	res->sum = scan(pm_region_data(r), len);
	t2 = b_now();
	cpu_since(res, c);
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

		/* Cold: memory the process has not used lately, as a fresh
		 * materialization gets it (on a VM that hands freed memory back
		 * to its host, this is the slow first touch). Warm: memory just
		 * freed by the cold run, taken back at once. */
		for (int r = 0; r < reps; r++) {
			if (eager_wait > 0)
				usleep((useconds_t)(eager_wait * 1e6));
			run_eager(&base, &runs[r], NULL, NULL);
			run_eager(&base, &warms[r], &pres[r], bound ? &besides[r] : NULL);
		}
		median_of(runs, reps, &mat);
		median_of(warms, reps, &warm);
		median_of(pres, reps, &pre);
		print_row("eager cold: materialize+scan", &mat, &mat, &warm, &pre);
		print_row("eager warm: materialize+scan", &warm, &mat, &warm, &pre);
		print_row("eager: pre-built scan", &pre, &mat, &warm, &pre);
		if (bound) {
			struct result bes;
			size_t fewest = SIZE_MAX, most = 0;
			int err = 0;

			for (int r = 0; r < reps; r++) {
				fewest = besides[r].moves < fewest ? besides[r].moves : fewest;
				most = besides[r].moves > most ? besides[r].moves : most;
				err = err ? err : besides[r].mover_err;
			}
			median_of(besides, reps, &bes);
			if (!err)
				print_row("pre-built, moves beside", &bes, &mat, &warm, &pre);
			b_mover_report("      ", fewest, most, bytes / B_MIB, err, besides[0].huge);
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
			if (!pattern_mib) {
				/* The fill, at least the store rate's CPU time,
				 * comes on top of the paging's, from the same
				 * CPUs: the scan takes at least that sum spread over
				 * them, and at least the no-fill scan's time. */
				long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
				double plain = store_rate(bytes, false), moved = store_rate(bytes, true);
				double rate = moved > 0 ? moved : plain, t_min = (double)bytes / res.gbs / 1e9;
				double t_cpu = (res.cpu + (double)bytes / rate / 1e9) / (double)(ncpu > 0 ? ncpu : 1);
				double g = (double)bytes / (t_cpu > t_min ? t_cpu : t_min) / 1e9;

				printf("      [store rate, one core writing past the caches as another "
				       "reads: %.1f GB/s, into pages just moved: ", plain);
				if (moved > 0)
					printf("%.1f GB/s]\n", moved);
				else
					printf("not measured (mremap failed)]\n");
				printf("      [with a fill at the %s rate: at most %.2f GB/s",
				       moved > 0 ? "second" : "first", g);
				if (!no_eager)
					printf(", %.2fx the pre-built scan", g / pre.gbs);
				if (own > 0)
					printf("; %s (read-ahead) is at %.2f of it", pm_backend_name(l.backend),
					       own / g);
				printf("]\n");
			}
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
