/* demo.c: `patchmap demo`. A filter bank over every window of a synthetic
 * image whose float32 patch matrix is larger than RAM, by cblas_sgemm on the
 * lazily filled matrix, checked against sums computed from the image alone.
 *
 * The check. The filters have small integer taps and the image is uint8, so
 * every response is an integer below 2^24: float32 GEMM computes it exactly,
 * in any summation order. Over all windows (y, x) and each filter f,
 *   sum r = sum_k F[f][k] T0[k],  sum y r = sum_k F[f][k] Ty[k],
 *   sum x r = sum_k F[f][k] Tx[k],
 * where T0[k], Ty[k], Tx[k] are sums of the image over the rectangle that
 * window offset k sweeps (plain, and weighted by the window's row and
 * column): row sums make them exact 64-bit integers in one pass over the
 * image. A response of the wrong window, or a wrong value anywhere, changes
 * them. Besides, a sample of windows is convolved directly. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ThreadSanitizer's shadow memory counts in RSS: the bound is reported but
 * cannot be held to there. */
#if defined(__SANITIZE_THREAD__)
#define RSS_ENFORCED 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RSS_ENFORCED 0
#endif
#endif
#ifndef RSS_ENFORCED
#define RSS_ENFORCED 1
#endif

struct demo {
	size_t H, W, K, N;       /* image, window side, filters */
	size_t oh, ow;           /* window positions */
	uint8_t *img;
	float *F;                /* N x K*K, integer values */
	int64_t *e0, *ey, *ex;   /* expected sums per filter, from the image */
	int64_t *g0, *gy, *gx;   /* the same sums over the GEMM's responses */
	double bound;            /* largest |response| possible */
	uint64_t bad;            /* responses not integers within the bound */
	/* the sample */
	size_t nsample, next_sample;
	size_t *sample;          /* sorted window indices */
	double *direct;          /* nsample x N, direct convolution */
	double *scale;           /* nsample x N: sum |F||x|, for the tolerance */
	double max_diff, max_rel;
	uint64_t sample_bad;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Texture, a ramp and noise: structure for the filters to respond to. */
static void make_image(struct demo *d)
{
	for (size_t y = 0; y < d->H; y++) {
		uint8_t *row = d->img + y * d->W;

		for (size_t x = 0; x < d->W; x++) {
			uint32_t h = (uint32_t)x * 0x9e3779b1u ^ (uint32_t)y * 0x85ebca77u;

			h ^= h >> 15;
			h *= 0x2c1b3c6du;
			h ^= h >> 12;
			row[x] = (uint8_t)((((x >> 3) ^ (y >> 3)) & 0x3f) + (((x + 2 * y) & 0xff) >> 2) +
					   (h & 0x3f));
		}
	}
}

/* Oriented, windowed cosines rounded to integers in [-8, 8]. */
static void make_filters(struct demo *d)
{
	size_t K = d->K;
	double c = ((double)K - 1) / 2, sigma = (double)K / 4;

	for (size_t f = 0; f < d->N; f++) {
		double th = M_PI * (double)(f / 2) / (double)((d->N + 1) / 2);
		double freq = f % 2 ? 2.0 / (double)K : 1.0 / (double)K;

		for (size_t y = 0; y < K; y++)
			for (size_t x = 0; x < K; x++) {
				double u = ((double)x - c) * cos(th) + ((double)y - c) * sin(th);
				double r2 = ((double)x - c) * ((double)x - c) + ((double)y - c) * ((double)y - c);
				double v = 8 * cos(2 * M_PI * freq * u) * exp(-r2 / (2 * sigma * sigma));

				d->F[f * K * K + y * K + x] = (float)lround(v);
			}
	}
}

/* The expected sums, from the image only (see the comment at the top). */
static int expected_sums(struct demo *d)
{
	size_t H = d->H, W = d->W, K = d->K;
	int64_t *R = calloc(H * K, sizeof(int64_t)), *XR = calloc(H * K, sizeof(int64_t));
	int64_t *P = malloc((W + 1) * sizeof(int64_t)), *Q = malloc((W + 1) * sizeof(int64_t));
	int64_t *T0 = calloc(K * K, sizeof(int64_t)), *Ty = calloc(K * K, sizeof(int64_t));
	int64_t *Tx = calloc(K * K, sizeof(int64_t));
	int ret = -1;

	if (!R || !XR || !P || !Q || !T0 || !Ty || !Tx)
		goto out;
	for (size_t y = 0; y < H; y++) {
		const uint8_t *row = d->img + y * W;

		P[0] = Q[0] = 0;
		for (size_t x = 0; x < W; x++) {
			P[x + 1] = P[x] + row[x];
			Q[x + 1] = Q[x] + (int64_t)x * row[x];
		}
		for (size_t dx = 0; dx < K; dx++) {
			int64_t r = P[dx + d->ow] - P[dx];

			R[y * K + dx] = r;
			/* weighted by the window's column x = pixel column - dx */
			XR[y * K + dx] = Q[dx + d->ow] - Q[dx] - (int64_t)dx * r;
		}
	}
	for (size_t dy = 0; dy < K; dy++)
		for (size_t dx = 0; dx < K; dx++) {
			int64_t s0 = 0, sy = 0, sx = 0;

			for (size_t y = 0; y < d->oh; y++) {
				s0 += R[(y + dy) * K + dx];
				sy += (int64_t)y * R[(y + dy) * K + dx];
				sx += XR[(y + dy) * K + dx];
			}
			T0[dy * K + dx] = s0;
			Ty[dy * K + dx] = sy;
			Tx[dy * K + dx] = sx;
		}
	for (size_t f = 0; f < d->N; f++) {
		int64_t s0 = 0, sy = 0, sx = 0;
		double mag = 0;

		for (size_t k = 0; k < K * K; k++) {
			int64_t w = (int64_t)d->F[f * K * K + k];

			s0 += w * T0[k];
			sy += w * Ty[k];
			sx += w * Tx[k];
			mag += fabs((double)w);
		}
		d->e0[f] = s0;
		d->ey[f] = sy;
		d->ex[f] = sx;
		if (255 * mag > d->bound)
			d->bound = 255 * mag;
	}
	ret = 0;
out:
	free(R);
	free(XR);
	free(P);
	free(Q);
	free(T0);
	free(Ty);
	free(Tx);
	return ret;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* A sorted sample of window positions, convolved directly from the image. */
static int make_sample(struct demo *d, size_t want)
{
	size_t windows = d->oh * d->ow, K = d->K;
	uint64_t s = 12345;

	d->nsample = want < windows ? want : windows;
	d->sample = malloc(d->nsample * sizeof(size_t));
	d->direct = malloc(d->nsample * d->N * sizeof(double));
	d->scale = malloc(d->nsample * d->N * sizeof(double));
	if (!d->sample || !d->direct || !d->scale)
		return -1;
	for (size_t i = 0; i < d->nsample; i++)
		d->sample[i] = (size_t)(mix64(s += 0x9e3779b97f4a7c15u) % windows);
	/* the first and last windows always */
	d->sample[0] = 0;
	d->sample[d->nsample - 1] = windows - 1;
	qsort(d->sample, d->nsample, sizeof(size_t), cmp_size);
	for (size_t i = 0; i < d->nsample; i++) {
		size_t y = d->sample[i] / d->ow, x = d->sample[i] % d->ow;

		for (size_t f = 0; f < d->N; f++) {
			double acc = 0, mag = 0;

			for (size_t dy = 0; dy < K; dy++)
				for (size_t dx = 0; dx < K; dx++) {
					double w = d->F[f * K * K + dy * K + dx];
					double p = d->img[(y + dy) * d->W + x + dx];

					acc += w * p;
					mag += fabs(w * p);
				}
			d->direct[i * d->N + f] = acc;
			d->scale[i * d->N + f] = mag;
		}
	}
	return 0;
}

/* The responses of windows r0 .. r0 + n - 1 (C: N rows of n): sums and
 * sample. Written for speed, it runs over every response: integer sums
 * (which vectorize, unlike float reductions), after checking that each
 * response is an integer within the bound, so that it fits in int32. */
static void check_block(struct demo *d, const float *C, size_t r0, size_t n)
{
	const float bound = (float)d->bound; /* an integer below 2^24: exact */
	uint32_t bound_bits;

	memcpy(&bound_bits, &bound, sizeof(bound_bits));

	for (size_t j = 0; j < n;) {
		size_t y = (r0 + j) / d->ow, x0 = (r0 + j) % d->ow;
		size_t len = d->ow - x0 < n - j ? d->ow - x0 : n - j;

		for (size_t f = 0; f < d->N; f++) {
			const float *c = C + f * n + j;
			int64_t s = 0, sx = 0;
			int32_t bad = 0;

			for (size_t i = 0; i < len; i++) {
				float v = c[i], cv;
				uint32_t bits;

				/* |v| <= bound by the bits (NaN's are above infinity's),
				 * without a branch; NaN and out-of-bound values then
				 * convert as 0 and differ from it */
				memcpy(&bits, &v, sizeof(bits));
				bits &= -(uint32_t)((bits & 0x7fffffffu) <= bound_bits);
				memcpy(&cv, &bits, sizeof(cv));
				int32_t iv = (int32_t)cv;

				bad |= (float)iv != v;
				s += iv;
				sx += (int64_t)i * iv;
			}
			d->bad += (uint64_t)bad;
			d->g0[f] += s;
			d->gy[f] += (int64_t)y * s;
			d->gx[f] += sx + (int64_t)x0 * s;
		}
		j += len;
	}
	for (; d->next_sample < d->nsample && d->sample[d->next_sample] < r0 + n; d->next_sample++) {
		size_t i = d->next_sample, j = d->sample[i] - r0;

		for (size_t f = 0; f < d->N; f++) {
			double got = C[f * n + j], want = d->direct[i * d->N + f];
			double diff = fabs(got - want), tol = 1e-6 * d->scale[i * d->N + f] + 1e-30;

			if (diff > d->max_diff)
				d->max_diff = diff;
			if (diff / tol > d->max_rel)
				d->max_rel = diff / tol;
			d->sample_bad += !(diff <= tol);
		}
	}
}

/* --inject-error: spoils the responses of the last window (the last of a
 * block of n, and always in the sample), to show that the checks see it. */
static void inject(const char *kind, float *C, size_t n, size_t N)
{
	size_t f = N / 2, j = n - 1, k = j;

	if (!strcmp(kind, "value")) {
		C[f * n + j] += 1;
	} else if (!strcmp(kind, "nan")) {
		C[f * n + j] = NAN;
	} else {
		/* with an earlier window of another response: the plain sum
		 * stays, the weighted ones change */
		while (k > 0 && C[f * n + k] == C[f * n + j])
			k--;
		float t = C[f * n + j];
		C[f * n + j] = C[f * n + k];
		C[f * n + k] = t;
	}
}

static uint64_t digest(const int64_t *a, const int64_t *b, const int64_t *c, size_t n)
{
	uint64_t h = 0x243f6a8885a308d3u;

	for (size_t i = 0; i < n; i++)
		h = mix64(h ^ (uint64_t)a[i]) + mix64(h ^ (uint64_t)b[i] * 3) + mix64(h ^ (uint64_t)c[i] * 5);
	return h;
}

static int reset_hwm(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	int ok;

	if (!f)
		return -1;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int cmd_demo(const struct args *a)
{
	struct demo d = { 0 };
	struct pm_matrix_opts o = { .size = sizeof(o) };
	struct pm_matrix_info info = { 0 };
	struct pm_stats st = { 0 };
	struct progress bar;
	pm_matrix *m = NULL;
	float *C = NULL;
	size_t rb, budget, shape[2];
	uint64_t memtotal = meminfo_bytes("MemTotal"), base_rss, hwm, margin;
	double t0, t, t_setup = now_s(), t_check = 0;
	int ret = 1, e, bt;
	char b1[64], b2[64], b3[64], b4[64], b5[160];

	d.H = a->nsize ? a->size[0] : a->small ? 640 : 8192;
	d.W = a->nsize ? a->size[1] : a->small ? 640 : 8192;
	d.K = a->nwindow ? a->window[0] : 16;
	d.N = a->nfilters ? a->nfilters : 16;
	if (a->nwindow > 1 && a->window[0] != a->window[1 % a->nwindow])
		return cli_err("demo: --window takes one side (a square window)");
	/* keeps every partial sum of check_block an integer below 2^53 */
	if (d.K > 32 || d.H > 32768 || d.W > 32768)
		return cli_err("demo: at most a 32768 x 32768 image and a 32 x 32 window");
	if (d.K > d.H || d.K > d.W)
		return cli_err("demo: the window (%zu) is larger than the image (%zu x %zu)", d.K, d.H,
			       d.W);
	d.oh = d.H - d.K + 1;
	d.ow = d.W - d.K + 1;

	d.img = malloc(d.H * d.W);
	d.F = malloc(d.N * d.K * d.K * sizeof(float));
	d.e0 = calloc(6 * d.N, sizeof(int64_t));
	if (!d.img || !d.F || !d.e0) {
		cli_err("demo: out of memory for the image");
		goto out;
	}
	d.ey = d.e0 + d.N;
	d.ex = d.e0 + 2 * d.N;
	d.g0 = d.e0 + 3 * d.N;
	d.gy = d.e0 + 4 * d.N;
	d.gx = d.e0 + 5 * d.N;
	make_image(&d);
	make_filters(&d);
	if (expected_sums(&d) || make_sample(&d, 4096)) {
		cli_err("demo: out of memory for the reference");
		goto out;
	}

	shape[0] = d.H;
	shape[1] = d.W;
	/* The options as any front end reads them: the window, float32, the
	 * memory options given. */
	struct pm_source src;
	char side[32];

	pm_source_contiguous(&src, d.img, PM_DTYPE_U8, 2, shape);
	snprintf(side, sizeof(side), "%zu", d.K);
	if (pm_spec_set(a->opt.spec, "window", side) ||
	    pm_spec_matrix(a->opt.spec, &src, &o, &info)) {
		cli_err("demo: %s", pm_spec_error(a->opt.spec));
		goto out;
	}
	if (o.lazy.backend == PM_BACKEND_NONE) {
		cli_err("demo: backend: the demo multiplies the mapping: auto, uffd, sigsegv or "
			"eager, not none");
		goto out;
	}
	budget = args_budget(&o);
	if (info.cols > INT_MAX || d.N > INT_MAX) {
		cli_err("demo: too large for BLAS");
		goto out;
	}
	if (args_check_memory(a, &info))
		goto out;
	rb = block_rows(info.rows, info.ld * sizeof(float), d.N, sizeof(float), budget);
	C = malloc(d.N * rb * sizeof(float));
	if (!C) {
		cli_err("demo: out of memory for the responses");
		goto out;
	}
	memset(C, 0, d.N * rb * sizeof(float));
	bt = default_blas_threads(a, &o);
	openblas_set_num_threads(bt);
	t_setup = now_s() - t_setup;

	/* What is resident before the matrix: the image, the responses and
	 * the program. The bound allows it, 64 MiB of slack (OpenBLAS's
	 * buffers, the library's threads), and the budget. */
	reset_hwm();
	base_rss = status_bytes("VmRSS");
	margin = base_rss + ((uint64_t)64 << 20);

	t0 = now_s();
	e = pm_matrix_open(&o, &m);
	if (e) {
		cli_err("demo: cannot map the patch matrix: %s", pm_strerror(e));
		goto out;
	}
	const float *X = pm_matrix_data(m);
	progress_start(&bar, "demo", (double)info.rows, !a->quiet && !a->json);
	for (size_t r0 = 0; r0 < info.rows; r0 += rb) {
		size_t n = info.rows - r0 < rb ? info.rows - r0 : rb;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d.N, (int)n, (int)info.cols,
			    1.0f, d.F, (int)info.cols, X + r0 * info.ld, (int)info.ld, 0.0f, C, (int)n);
		double tc = now_s();
		if (a->inject && r0 + n == info.rows)
			inject(a->inject, C, n, d.N);
		check_block(&d, C, r0, n);
		t_check += now_s() - tc;
		progress_update(&bar, (double)(r0 + n));
	}
	progress_end(&bar);
	t = now_s() - t0;
	pm_matrix_stats(m, &st);
	e = pm_matrix_close(m);
	m = NULL;
	hwm = status_bytes("VmHWM");
	if (e) {
		cli_err("demo: filling the patch matrix failed: %s", pm_strerror(e));
		goto out;
	}

	bool sums_ok = !memcmp(d.e0, d.g0, 3 * d.N * sizeof(int64_t)) && !d.bad;
	bool sample_ok = !d.sample_bad;
	bool ok = sums_ok && sample_ok;
	uint64_t dig_gemm = digest(d.g0, d.gy, d.gx, d.N), dig_ref = digest(d.e0, d.ey, d.ex, d.N);
	uint64_t bound = (budget == PM_BUDGET_UNLIMITED ? info.bytes : st.budget_bytes) + margin;
	bool rss_ok = (hwm && hwm <= bound) || !RSS_ENFORCED;
	bool larger = memtotal && info.bytes > memtotal;
	int64_t total = 0;
	double gbs = (double)info.bytes / t / 1e9;
	int fillers = lib_threads(&o, &st);

	int64_t total_expected = 0;
	for (size_t f = 0; f < d.N; f++) {
		total += d.g0[f];
		total_expected += d.e0[f];
	}
	char failure[160] = "";

	if (!ok)
		snprintf(failure, sizeof(failure),
			 "demo: the responses do not match the independent computation");
	else if (!rss_ok)
		snprintf(failure, sizeof(failure), "demo: peak RSS %s exceeded budget + margin %s",
			 pm__fmt_bytes(b1, sizeof(b1), (double)hwm), pm__fmt_bytes(b2, sizeof(b2), (double)bound));
	if (a->json) {
		struct json j;

		json_begin(&j, stdout);
		json_str(&j, "command", "demo");
		if (failure[0]) {
			/* the failure in the report itself, not in a second object */
			json_str(&j, "error", failure);
			json_i64(&j, "exit", 1);
			cli_json_reported();
		}
		json_dims(&j, "image_shape", shape, 2);
		json_u64(&j, "window", d.K);
		json_u64(&j, "filters", d.N);
		fe_report_matrix(&j, &info);
		json_u64(&j, "mem_total_bytes", memtotal);
		json_bool(&j, "matrix_larger_than_ram", larger);
		json_u64(&j, "block_rows", rb);
		json_u64(&j, "blas_threads", (uint64_t)bt);
		json_num(&j, "setup_seconds", t_setup);
		json_num(&j, "seconds", t);
		json_num(&j, "check_seconds", t_check);
		json_num(&j, "gb_per_s", gbs);
		json_u64(&j, "peak_rss_bytes", hwm);
		json_u64(&j, "rss_before_matrix_bytes", base_rss);
		json_u64(&j, "rss_bound_bytes", bound);
		json_bool(&j, "rss_within_bound", hwm && hwm <= bound);
		json_bool(&j, "rss_bound_enforced", RSS_ENFORCED);
		report_stats_json(&j, &st);
		json_obj(&j, "check");
		json_u64(&j, "responses", (uint64_t)info.rows * d.N);
		json_i64(&j, "sum", total);
		json_i64(&j, "sum_expected", total_expected);
		json_str(&j, "checksum", (snprintf(b5, sizeof(b5), "%016llx",
						   (unsigned long long)dig_gemm), b5));
		json_str(&j, "checksum_expected", (snprintf(b4, sizeof(b4), "%016llx",
							    (unsigned long long)dig_ref), b4));
		json_bool(&j, "sums_ok", sums_ok);
		json_u64(&j, "non_integer_or_out_of_bound", d.bad);
		json_u64(&j, "sample_windows", d.nsample);
		json_num(&j, "sample_max_abs_diff", d.max_diff);
		json_bool(&j, "sample_ok", sample_ok);
		json_bool(&j, "ok", ok);
		json_close(&j, '}');
		json_end(&j);
	} else if (!a->quiet) {
		printf("patchmap demo: %zu filters of %zux%zu over every %zux%zu window of a synthetic "
		       "%zu x %zu uint8 image\n",
		       d.N, d.K, d.K, d.K, d.K, d.H, d.W);
		printf("  matrix      %zu rows x %zu cols float32 = %.1f GB (%s), filled lazily, never "
		       "materialized\n",
		       info.rows, info.cols, (double)info.bytes / 1e9,
		       pm__fmt_bytes(b1, sizeof(b1), (double)info.bytes));
		printf("  RAM         %s (MemTotal): the matrix is %.2g times the RAM\n",
		       pm__fmt_bytes(b1, sizeof(b1), (double)memtotal),
		       memtotal ? (double)info.bytes / (double)memtotal : 0.0);
		report_stats_text(stdout, &st, fillers);
		printf("  GEMM        cblas_sgemm, %d BLAS thread%s, blocks of %zu rows (%s of "
		       "matrix, %s of responses)\n",
		       bt, bt == 1 ? "" : "s", rb,
		       pm__fmt_bytes(b1, sizeof(b1), (double)(rb * info.ld * sizeof(float))),
		       pm__fmt_bytes(b2, sizeof(b2), (double)(rb * d.N * sizeof(float))));
		printf("  time        %.1f s: %.2f GB/s of matrix consumed (of which %.1f s checking "
		       "responses; before, %.1f s for the image, reference sums and sample)\n",
		       t, gbs, t_check, t_setup);
		printf("  peak RSS    %s (VmHWM) against budget %s + margin %s (%s resident before "
		       "the matrix + 64 MiB) = %s\n",
		       pm__fmt_bytes(b1, sizeof(b1), (double)hwm),
		       pm__fmt_bytes(b2, sizeof(b2), (double)(bound - margin)),
		       pm__fmt_bytes(b3, sizeof(b3), (double)margin),
		       pm__fmt_bytes(b4, sizeof(b4), (double)base_rss),
		       pm__fmt_bytes(b5, sizeof(b5), (double)bound));
		printf("  responses   %llu (%zu x %zu x %zu), sum %lld\n",
		       (unsigned long long)info.rows * d.N, d.N, d.oh, d.ow, (long long)total);
		printf("  sums        plain, row- and column-weighted sums of every filter's responses "
		       "%s the exact integer sums from the image: checksum %016llx %s %016llx%s\n",
		       sums_ok ? "equal" : "DIFFER FROM", (unsigned long long)dig_gemm,
		       sums_ok ? "=" : "!=", (unsigned long long)dig_ref,
		       d.bad ? " (some responses are not exact integers)" : "");
		printf("  sample      %zu windows x %zu filters by direct convolution: max |diff| %g, "
		       "%s (tolerance 1e-6 x sum |f x|)\n",
		       d.nsample, d.N, d.max_diff, sample_ok ? "within tolerance" : "OUT OF TOLERANCE");
		if (larger)
			printf("The %.1f GB patch matrix was larger than this machine's %s of RAM, ",
			       (double)info.bytes / 1e9, pm__fmt_bytes(b1, sizeof(b1), (double)memtotal));
		else
			printf("The %s patch matrix fits in this machine's %s of RAM, ",
			       pm__fmt_bytes(b2, sizeof(b2), (double)info.bytes),
			       pm__fmt_bytes(b1, sizeof(b1), (double)memtotal));
		printf("and peak RSS (%s) %s under budget + margin (%s)%s.\n",
		       pm__fmt_bytes(b1, sizeof(b1), (double)hwm),
		       hwm <= bound ? "stayed" : "did NOT stay", pm__fmt_bytes(b2, sizeof(b2), (double)bound),
		       RSS_ENFORCED ? "" : " (not enforced under ThreadSanitizer)");
		printf(ok ? "checksum ok\n" : "checksum MISMATCH\n");
	}
	if (failure[0])
		cli_err("%s", failure);
	ret = ok && rss_ok ? 0 : 1;
out:
	pm_matrix_close(m);
	free(C);
	free(d.img);
	free(d.F);
	free(d.e0);
	free(d.sample);
	free(d.direct);
	free(d.scale);
	return ret;
}
