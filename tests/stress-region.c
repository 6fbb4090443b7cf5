/* stress-region.c: lazy patch matrices far larger than the machine's memory,
 * scanned end to end under a small budget on each lazy backend, checked
 * against sums worked out from the source alone, with the process's peak
 * resident memory measured by the kernel; then a threads x budget x order
 * grid on a mid-size matrix, byte for byte against the reference im2col.
 *
 * The big matrix: a uint8 image, 16x16 windows, float32 rows of 256
 * columns, one row per window. Every value is an integer from 0 to 255, so
 * each row's sum s0 and weighted sum s1 = sum_j j * v_j are computed exactly
 * in float (below 2^24) in any order. Their totals over the matrix, and
 * sum_r (r mod 65521) * s0(r) (which notices rows out of place), follow from
 * running box sums over the image, without building the matrix. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "ref.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define WIN 16
#define COLS (WIN * WIN)
#define MOD 65521u

static char label[256];

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

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static unsigned char *make_image(size_t h, size_t w, uint64_t seed)
{
	unsigned char *img = malloc(h * w);

	CU_ASSERT_PTR_NOT_NULL_FATAL(img);
	for (size_t i = 0; i < h * w; i += 8) {
		uint64_t v = mix(i * 0x9e3779b97f4a7c15ull + seed);

		for (size_t b = 0; b < 8 && i + b < h * w; b++)
			img[i + b] = (unsigned char)(v >> (8 * b));
	}
	return img;
}

/* ------------------------------------------------------------ checksums */

struct sums {
	uint64_t s0, s1, s2; /* sum of rows' sums, weighted sums, position-weighted sums */
	uint64_t bad_rows;   /* rows whose sums are not possible values */
};

/* The sums from the image alone: running 16-row column sums (c0, and c1
 * weighted by the row in the window), then running 16-column box sums. */
static struct sums expected_sums(const unsigned char *img, size_t h, size_t w)
{
	size_t oh = h - WIN + 1, ow = w - WIN + 1;
	uint64_t *c0 = calloc(w, sizeof(*c0)), *c1 = calloc(w, sizeof(*c1));
	struct sums e = { 0 };

	CU_ASSERT_FATAL(c0 && c1);
	for (size_t x = 0; x < w; x++)
		for (size_t dy = 0; dy < WIN; dy++) {
			c0[x] += img[dy * w + x];
			c1[x] += dy * img[dy * w + x];
		}
	for (size_t y = 0; y < oh; y++) {
		uint64_t box = 0, boxy = 0, boxx = 0; /* sum c0, sum c1, sum dx * c0 */

		if (y > 0)
			for (size_t x = 0; x < w; x++) {
				uint64_t in = img[(y + WIN - 1) * w + x], out = img[(y - 1) * w + x];

				c0[x] = c0[x] + in - out;
				/* sum_k k*I(y+k) moves by one row: + 16 * in - c0(y) */
				c1[x] = c1[x] + WIN * in - c0[x];
			}
		for (size_t dx = 0; dx < WIN; dx++) {
			box += c0[dx];
			boxy += c1[dx];
			boxx += dx * c0[dx];
		}
		for (size_t x = 0; x < ow; x++) {
			uint64_t r = y * ow + x;

			if (x > 0) {
				box = box + c0[x + WIN - 1] - c0[x - 1];
				boxy = boxy + c1[x + WIN - 1] - c1[x - 1];
				boxx = boxx + WIN * c0[x + WIN - 1] - box;
			}
			e.s0 += box;
			e.s1 += WIN * boxy + boxx;
			e.s2 += (r % MOD) * box;
		}
	}
	free(c0);
	free(c1);
	return e;
}

static float col_weight[COLS]; /* j, set by main */

/* One row's sums, exactly (see the top); lanes so that it vectorizes. */
static inline void row_sums(const float *v, float *s0, float *s1)
{
	float a[8] = { 0 }, b[8] = { 0 };

	for (size_t j = 0; j < COLS; j += 8)
		for (size_t l = 0; l < 8; l++) {
			a[l] += v[j + l];
			b[l] += col_weight[j + l] * v[j + l];
		}
	*s0 = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
	*s1 = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

static void add_rows(struct sums *t, const float *m, size_t from, size_t to)
{
	for (size_t r = from; r < to; r++) {
		float s0, s1;

		row_sums(m + r * COLS, &s0, &s1);
		/* Only integers in range convert; anything else is a bad row. */
		if (!(s0 >= 0.0f && s0 <= 255.0f * COLS && s1 >= 0.0f && s1 <= 255.0f * COLS * COLS)) {
			t->bad_rows++;
			continue;
		}
		t->s0 += (uint64_t)s0;
		t->s1 += (uint64_t)s1;
		t->s2 += (r % MOD) * (uint64_t)s0;
	}
}

/* The checksum code itself, against the reference im2col on small images. */
static void test_sums_small(void)
{
	const size_t shapes[][2] = { { 16, 16 }, { 17, 40 }, { 33, 20 }, { 50, 61 } };

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		size_t h = shapes[i][0], w = shapes[i][1];
		unsigned char *img = make_image(h, w, i);
		struct pm_matrix_opts o = { .size = sizeof(o) };
		struct ref_matrix ref;
		struct sums want, got = { 0 };

		snprintf(label, sizeof(label), "sums of a %zux%zu image", h, w);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, (size_t[]){ h, w }), 0);
		o.window[0] = o.window[1] = (struct pm_window){ .size = WIN, .step = 1, .dilation = 1 };
		o.dtype = PM_DTYPE_F32;
		CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &ref), 0);
		CU_ASSERT_EQUAL_FATAL(ref.cols, COLS);
		want = expected_sums(img, h, w);
		add_rows(&got, (const float *)ref.data, 0, ref.rows);
		CHECK(got.bad_rows == 0 && got.s0 == want.s0 && got.s1 == want.s1 && got.s2 == want.s2,
		      "reference %" PRIu64 "/%" PRIu64 "/%" PRIu64 ", box sums %" PRIu64 "/%" PRIu64 "/%" PRIu64,
		      got.s0, got.s1, got.s2, want.s0, want.s1, want.s2);
		ref_free(&ref);
		free(img);
	}
}

/* ------------------------------------------------------------ the big scan */

struct scan_part {
	const float *m;
	size_t from, to;
	struct sums t;
};

static void *scan_main(void *arg)
{
	struct scan_part *p = arg;

	add_rows(&p->t, p->m, p->from, p->to);
	return NULL;
}

static size_t big_side(void)
{
	const char *env = getenv("PM_STRESS_SIDE"); /* for sizing by hand */

	if (env && atol(env) > WIN)
		return (size_t)atol(env);
	/* 6000 x 6000: 35.8 M windows, a 34 GiB matrix (the machine the
	 * suite is sized for has 24 GiB). Sanitizers slow every load the
	 * checksum makes: a quarter of the area there. */
	return T_SANITIZED ? 3000 : 6000;
}

static void big_scan(int backend)
{
	const size_t side = big_side(), budget = 64 * MiB;
	const size_t margin = 48 * MiB; /* threads' stacks, libc, CUnit */
	unsigned char *img;
	struct pm_matrix_opts o = { .size = sizeof(o) };
	struct sums want, got = { 0 };
	struct scan_part part[2];
	pthread_t th[2];
	struct pm_stats st = { 0 };
	pm_matrix *m = NULL;
	long rss0, hwm;
	double t0, t1;
	size_t rows;
	int ret, nthreads = getenv("PM_STRESS_READERS") ? atoi(getenv("PM_STRESS_READERS")) : 2;

	snprintf(label, sizeof(label), "%zux%zu image, 16x16 windows, float32, %s, 64 MiB budget", side, side,
		 pm_backend_name(backend));
	img = make_image(side, side, 42);
	want = expected_sums(img, side, side);
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, (size_t[]){ side, side }), 0);
	o.window[0] = o.window[1] = (struct pm_window){ .size = WIN, .step = 1, .dilation = 1 };
	o.dtype = PM_DTYPE_F32;
	o.lazy.backend = backend;
	o.lazy.budget = budget;

	CHECK(t_reset_hwm() == 0, "cannot reset VmHWM");
	rss0 = t_status_kib("VmRSS");
	ret = pm_matrix_open(&o, &m);
	if (ret == -EPERM || ret == -ENOSYS) {
		printf("\n  SKIP %s: %s\n", pm_backend_name(backend), pm_strerror(ret));
		free(img);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(ret, 0);
	rows = pm_matrix_rows(m);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_cols(m), COLS);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_ld(m), COLS);
	t0 = now();
	for (int t = 0; t < nthreads; t++) {
		part[t] = (struct scan_part){ pm_matrix_data(m), rows * (size_t)t / (size_t)nthreads,
					      rows * (size_t)(t + 1) / (size_t)nthreads, { 0 } };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, scan_main, &part[t]), 0);
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_join(th[t], NULL);
		got.s0 += part[t].t.s0;
		got.s1 += part[t].t.s1;
		got.s2 += part[t].t.s2;
		got.bad_rows += part[t].t.bad_rows;
	}
	t1 = now();
	hwm = t_status_kib("VmHWM");
	pm_matrix_stats(m, &st);
	printf("\n  %s: %.1f GiB in %.1f s (%.2f GB/s; fill %.1f s), %" PRIu64 " faults, %" PRIu64 " evictions, "
	       "peak RSS %ld MiB above the start (budget %zu MiB)\n",
	       pm_backend_name(backend), (double)pm_matrix_bytes(m) / (double)GiB, t1 - t0,
	       (double)pm_matrix_bytes(m) / (t1 - t0) / 1e9, (double)st.fill_ns * 1e-9, st.faults, st.evictions,
	       (hwm - rss0) / 1024,
	       budget / MiB);
	CHECK(got.bad_rows == 0, "%" PRIu64 " rows with impossible sums", got.bad_rows);
	CHECK(got.s0 == want.s0, "sum %" PRIu64 ", want %" PRIu64, got.s0, want.s0);
	CHECK(got.s1 == want.s1, "weighted sum %" PRIu64 ", want %" PRIu64, got.s1, want.s1);
	CHECK(got.s2 == want.s2, "row-weighted sum %" PRIu64 ", want %" PRIu64, got.s2, want.s2);
	/* AddressSanitizer keeps a shadow byte per 8 bytes the scan reads, and
	 * with the uffd backend the kernel counts those shadow pages in the
	 * process's RSS (1.1 GiB for an 8.5 GiB scan): there the bound is
	 * reported, and checked by the plain build. */
	if (T_SANITIZED)
		printf("  sanitized build: peak RSS reported, not checked (the sanitizer's shadow counts)\n");
	else
		CHECK(rss0 > 0 && hwm > 0 && (size_t)(hwm - rss0) * KiB <= budget + margin,
		      "peak RSS %ld KiB above the start, budget %zu KiB + margin %zu KiB", hwm - rss0,
		      budget / KiB, margin / KiB);
	CHECK(st.peak_resident_bytes <= st.budget_bytes && st.budget_bytes <= budget, "peak %" PRIu64 ", budget %zu",
	      st.peak_resident_bytes, st.budget_bytes);
	CHECK(pm_matrix_error(m) == 0, "error %d", pm_matrix_error(m));
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
	free(img);
}

static void test_big_uffd(void)
{
	big_scan(PM_BACKEND_UFFD);
}

static void test_big_sigsegv(void)
{
	big_scan(PM_BACKEND_SIGSEGV);
}

/* ------------------------------------------------------------ the grid */

static const char *const order_names[] = { "sequential", "reverse", "strided", "random" };

struct grid_worker {
	const unsigned char *data, *want;
	size_t bytes, block;
	const size_t *order;
	size_t nblocks;
	_Atomic size_t *next;
	size_t bad;
};

static void *grid_main(void *arg)
{
	struct grid_worker *g = arg;

	for (;;) {
		size_t i = atomic_fetch_add(g->next, 1), off, len;

		if (i >= g->nblocks)
			return NULL;
		off = g->order[i] * g->block;
		len = g->bytes - off < g->block ? g->bytes - off : g->block;
		g->bad += memcmp(g->data + off, g->want + off, len) != 0;
	}
}

static size_t *block_order(size_t n, int order, size_t stride)
{
	size_t *p = malloc(n * sizeof(*p)), k = 0;
	uint64_t s = 0x2545f4914f6cdd1dull;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	if (order == 2) {
		for (size_t s0 = 0; s0 < stride; s0++)
			for (size_t i = s0; i < n; i += stride)
				p[k++] = i;
		return p;
	}
	for (size_t i = 0; i < n; i++)
		p[i] = order == 1 ? n - 1 - i : i;
	if (order == 3)
		for (size_t i = n; i > 1; i--) {
			size_t j, t;

			s = mix(s);
			j = (size_t)(s % i);
			t = p[i - 1];
			p[i - 1] = p[j];
			p[j] = t;
		}
	return p;
}

/* A 30 MB matrix (u8 300x400, 8x8 windows, float32), 256 KiB chunks, read
 * by 1, 2 and 4 threads sharing the blocks of one order, under budgets of
 * two chunks, 8 MiB and more than the matrix; every block compared with the
 * reference. */
static void test_grid(void)
{
	const size_t h = 300, w = 400, chunk = 256 * KiB, block = 64 * KiB;
	const size_t budgets[] = { 2 * chunk, 8 * MiB, 64 * MiB };
	static const int nthreads[] = { 1, 2, 4 };
	unsigned char *img = make_image(h, w, 7);
	struct pm_matrix_opts o = { .size = sizeof(o) };
	struct ref_matrix ref;
	size_t bytes, nblocks;
	unsigned long cases = 0;
	double t0 = now();

	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, (size_t[]){ h, w }), 0);
	o.window[0] = o.window[1] = (struct pm_window){ .size = 8, .step = 1, .dilation = 1 };
	o.dtype = PM_DTYPE_F32;
	CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &ref), 0);
	bytes = ref.rows * ref.pitch;
	nblocks = (bytes + block - 1) / block;
	for (int bi = 0; bi < T_NLAZY; bi++)
		for (size_t ti = 0; ti < 3; ti++)
			for (size_t bu = 0; bu < 3; bu++)
				for (int order = 0; order < 4; order++) {
					size_t *idx = block_order(nblocks, order, chunk / block + 1);
					struct grid_worker g[4];
					pthread_t th[4];
					_Atomic size_t next = 0;
					struct pm_stats st = { 0 };
					pm_matrix *m = NULL;
					size_t bad = 0;
					int ret;

					o.lazy.backend = t_lazy_backends[bi];
					o.lazy.chunk = chunk;
					o.lazy.budget = budgets[bu];
					o.lazy.readahead = order == 0 ? 0 : -1;
					snprintf(label, sizeof(label), "grid: %s, %d threads, budget %zu, %s",
						 pm_backend_name(o.lazy.backend), nthreads[ti], budgets[bu], order_names[order]);
					ret = pm_matrix_open(&o, &m);
					if (ret == -EPERM || ret == -ENOSYS) {
						free(idx);
						continue;
					}
					CU_ASSERT_EQUAL_FATAL(ret, 0);
					CU_ASSERT_EQUAL_FATAL(pm_matrix_bytes(m), bytes);
					for (int t = 0; t < nthreads[ti]; t++) {
						g[t] = (struct grid_worker){ pm_matrix_data(m), ref.data, bytes, block, idx, nblocks,
									     &next, 0 };
						CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, grid_main, &g[t]), 0);
					}
					for (int t = 0; t < nthreads[ti]; t++) {
						pthread_join(th[t], NULL);
						bad += g[t].bad;
					}
					CHECK(bad == 0, "%zu blocks differ from the reference", bad);
					pm_matrix_stats(m, &st);
					CHECK(st.peak_resident_bytes <= st.budget_bytes, "peak %" PRIu64 " above budget %zu",
					      st.peak_resident_bytes, st.budget_bytes);
					if (budgets[bu] < bytes)
						CHECK(st.evictions > 0, "no eviction");
					CHECK(pm_matrix_error(m) == 0, "error %d", pm_matrix_error(m));
					CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
					free(idx);
					cases++;
				}
	printf("\n  %lu cases over a %.1f MB matrix in %.1f s\n", cases, (double)bytes / 1e6, now() - t0);
	ref_free(&ref);
	free(img);
}

int main(int argc, char **argv)
{
	static const struct t_test tests[] = {
		{ "checksums against the reference", test_sums_small },
		{ "big matrix, uffd", test_big_uffd },
		{ "big matrix, sigsegv", test_big_sigsegv },
		{ "threads x budget x order grid", test_grid },
	};
	const char *only = argc > 1 ? argv[1] : NULL;

	for (size_t j = 0; j < COLS; j++)
		col_weight[j] = (float)j;
	if (T_SANITIZED)
		printf("sanitized build: the big matrices are a quarter of the full size\n");
	return t_run("stress-region", tests, T_COUNT(tests), only);
}
