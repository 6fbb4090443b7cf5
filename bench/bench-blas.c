/* bench-blas.c: OpenBLAS straight on the patch matrix pointer. A filter bank
 * applied to every window: cblas_sgemv (one filter) and cblas_sgemm (16 and
 * 64 filters) over blocks of rows, on the lazy matrix (the budget resident
 * at most), against the eager path with its materialization, and against the
 * BLAS call alone on a matrix that already exists. */
#include <cblas.h>

#include "bench.h"

static size_t side = 1448, window = 16, block = 8192;
static int reps = 3, eager_reps = 1;
static bool bound;
static double eager_wait = 5;

struct kernel {
	const char *name;
	int ncol; /* 1: sgemv */
};

static const struct kernel kernels[] = { { "sgemv", 1 }, { "sgemm16", 16 }, { "sgemm64", 64 } };
#define NKERNELS (int)(sizeof(kernels) / sizeof(kernels[0]))

static void usage(const char *prog)
{
	printf("usage: %s [options]\n"
	       "  --side N          image side (default 1448: a 2.1 GB float32 matrix)\n"
	       "  --window K        window side (default 16)\n"
	       "  --block ROWS      rows per BLAS call (default 8192; 0: one call on the whole\n"
	       "                    matrix, which needs rows x 64 floats of output)\n"
	       "  --blas-threads L  OpenBLAS thread counts, comma-separated (default: the\n"
	       "                    OPENBLAS_NUM_THREADS environment variable, else 1,2)\n"
	       "  --kernels L       sgemv,sgemm16,sgemm64 (default all)\n"
	       "  --reps N          repetitions of the BLAS-alone and lazy cases, median (3)\n"
	       "  --eager-reps N    repetitions of materialize + BLAS (default 1: slow)\n"
	       "  --eager-wait S    idle seconds before a cold materialization (default 5)\n"
	       "  --bound           also BLAS on the pre-built matrix while another thread\n"
	       "                    moves a huge page once per MiB read (the moves alone;\n"
	       "                    told after each call, so they come a block at a time)\n" B_LAZY_USAGE,
	       prog);
}

struct result {
	double s, cpu, thr, sys, peak_mib; /* thr, sys: the calling thread's CPU s, system s */
	double check;
	struct pm_stats st;
	uint64_t resident_max; /* the region's peak residency, the most of any run */
};

/* C = A W over blocks of rows; returns a checksum of a few outputs. Tells
 * the mover, if any, how far it has read. */
static double apply(const float *A, size_t rows, size_t ld, int k, int ncol, const float *W,
		    float *C, struct b_mover *mv)
{
	size_t blk = block ? block : rows;
	double sum = 0;

	for (size_t r0 = 0; r0 < rows; r0 += blk) {
		size_t m = rows - r0 < blk ? rows - r0 : blk;

		if (ncol == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, k, 1.0f, A + r0 * ld, (int)ld,
				    W, 1, 0.0f, C, 1);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, ncol, k, 1.0f,
				    A + r0 * ld, (int)ld, W, ncol, 0.0f, C, ncol);
		sum += (double)C[0] + (double)C[(m - 1) * (size_t)ncol + (size_t)ncol - 1] +
		       (double)C[m / 2 * (size_t)ncol];
		if (mv)
			b_mover_progress(mv, (r0 + m) * ld * sizeof(float));
	}
	return sum;
}

/* Opens the matrix with `backend`, applies the kernel; times both. */
static void run(const struct pm_matrix_opts *base, int backend, const struct pm_lazy_opts *lz,
		int ncol, const float *W, float *C, struct result *res)
{
	struct pm_matrix_opts o = *base;
	pm_matrix *m;
	struct b_cpu c0, c;
	double t0;

	o.lazy = *lz;
	o.lazy.backend = backend;
	b_hwm_reset();
	c0 = b_cpu_now();
	t0 = b_now();
	b_check(pm_matrix_open(&o, &m), pm_backend_name(backend));
	res->check = apply(pm_matrix_data(m), pm_matrix_rows(m), pm_matrix_ld(m),
			   (int)pm_matrix_cols(m), ncol, W, C, NULL);
	res->s = b_now() - t0;
	c = b_cpu_since(c0);
	res->cpu = c.proc;
	res->thr = c.thr;
	res->sys = c.sys;
	res->peak_mib = b_hwm_mib();
	res->st.size = sizeof(res->st);
	pm_matrix_stats(m, &res->st);
	b_check(pm_matrix_close(m), "a fill failed");
}

static void median_of(struct result *runs, int n, struct result *out)
{
	double s[64], p[64], c[64], h[64], y[64];

	*out = runs[n - 1];
	out->resident_max = 0;
	for (int i = 0; i < n; i++) {
		s[i] = runs[i].s, p[i] = runs[i].peak_mib, c[i] = runs[i].cpu;
		h[i] = runs[i].thr, y[i] = runs[i].sys;
		if (runs[i].st.peak_resident_bytes > out->resident_max)
			out->resident_max = runs[i].st.peak_resident_bytes;
	}
	out->s = b_median(s, n);
	out->cpu = b_median(c, n);
	out->thr = b_median(h, n);
	out->sys = b_median(y, n);
	out->peak_mib = b_median(p, n);
}

static void print_row(const char *name, const struct result *r, size_t bytes,
		      const struct result *alone, const struct result *cold, const struct result *warm)
{
	printf("  %-28s %7.3f %7.3f %7.3f %7.3f %7.2f %8.2f %8.2f %8.2f %9.0f\n", name, r->s, r->cpu,
	       r->thr, r->sys,
	       (double)bytes / r->s / 1e9, alone->s / r->s, cold->s / r->s, warm->s / r->s,
	       r->peak_mib);
}

static void verdict(const char *what, double ratio, double target)
{
	printf("  target: %-44s >= %.2fx: %5.2fx, %s\n", what, target, ratio,
	       ratio >= target ? "met" : "missed");
}

int main(int argc, char **argv)
{
	struct b_lazy lz;
	struct pm_matrix_opts base;
	struct pm_matrix_info info = { 0 };
	const char *threads_list = getenv("OPENBLAS_NUM_THREADS");
	bool want[NKERNELS] = { true, true, true };
	char tl[128], *save = NULL;
	uint8_t *img;
	float *W, *C;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	b_lazy_init(&lz);
	if (!threads_list || !*threads_list)
		threads_list = "1,2";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (b_lazy_arg(&lz, argc, argv, &i))
			continue;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0]);
			return 0;
		}
		if (!strcmp(a, "--bound")) {
			bound = true;
			continue;
		}
		if (!v)
			b_die(2, "unknown option or missing value: %s (see --help)", a);
		i++;
		if (!strcmp(a, "--side"))
			side = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--window"))
			window = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--block"))
			block = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--blas-threads"))
			threads_list = v;
		else if (!strcmp(a, "--reps"))
			reps = (int)b_parse_long(v, a);
		else if (!strcmp(a, "--eager-wait"))
			eager_wait = strtod(v, NULL);
		else if (!strcmp(a, "--eager-reps"))
			eager_reps = (int)b_parse_long(v, a);
		else if (!strcmp(a, "--kernels"))
			for (int k = 0; k < NKERNELS; k++) {
				const char *p = strstr(v, kernels[k].name);
				size_t n = strlen(kernels[k].name);

				want[k] = p && (p[n] == 0 || p[n] == ',');
			}
		else
			b_die(2, "unknown option: %s (see --help)", a);
	}
	if (reps < 1 || reps > 64 || eager_reps < 1 || eager_reps > 64 || window < 1)
		b_die(2, "bad arguments (see --help)");
	if (bound && !block)
		b_die(2, "--bound needs --block > 0: the mover hears how far BLAS has read "
			 "between its calls");

	b_print_header(argc, argv);
	b_opts_2d(&base, NULL, PM_DTYPE_U8, side, window);
	b_check(pm_matrix_describe(&base, &info), "pm_matrix_describe");
	if (info.bytes > b_mem_total() / 3)
		b_die(2, "a %.1f GB matrix is too large to materialize here (use a smaller --side)",
		      (double)info.bytes / 1e9);
	img = b_alloc_resident(side * side);
	b_image_u8(img, side * side);
	base.source.data = img;
	W = malloc(sizeof(float) * info.cols * 64);
	C = b_alloc_resident(sizeof(float) * 64 * (block ? block : info.rows));
	if (!W)
		b_die(1, "out of memory");
	for (size_t i = 0; i < info.cols * 64; i++)
		W[i] = (float)((int)(i * 7 % 5) - 2) * 0.125f;
	printf("u8 image %zux%zu, %zux%zu windows -> float32 matrix %zu x %zu = %.2f GB; "
	       "%zu rows per BLAS call; OpenBLAS %s\n", side, side, window, window, info.rows,
	       info.cols, (double)info.bytes / 1e9, block ? block : info.rows, openblas_get_corename());
	printf("times: median of %d (materialize + BLAS: of %d); ratios are speed-ups (time of the\n"
	       "reference / time of the case) over: BLAS alone on the pre-built matrix, and eager\n"
	       "materialize + BLAS into cold memory (unused for %.0f s) and warm (just freed);\n"
	       "CPU s: every thread of the process, main s: the calling thread (with one BLAS\n"
	       "thread, the one that reads the matrix), sys s: the calling thread's in the kernel\n",
	       reps, eager_reps, eager_wait);

	snprintf(tl, sizeof(tl), "%s", threads_list);
	for (char *t = strtok_r(tl, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int nt = (int)b_parse_long(t, "--blas-threads");

		if (nt < 1)
			b_die(2, "--blas-threads: %d", nt);
		openblas_set_num_threads(nt);
		for (int k = 0; k < NKERNELS; k++) {
			struct result runs[128], warms[64], alone, mat, warm, beside;
			size_t fewest = SIZE_MAX, most = 0;
			int mover_err = 0, huge = 0;
			struct pm_matrix_opts o = base;
			pm_matrix *m;
			int ncol = kernels[k].ncol;

			if (!want[k])
				continue;
			printf("\n%s, %d BLAS thread%s\n", kernels[k].name, nt, nt > 1 ? "s" : "");
			printf("  %-28s %7s %7s %7s %7s %7s %8s %8s %8s %9s\n", "case", "s", "CPU s",
			       "main s", "sys s", "GB/s", "x alone", "x cold", "x warm", "peak MiB");
			/* materialize + BLAS, as one sequence: into memory unused
			 * for a while (cold), then at once into the memory that
			 * run just freed (warm) */
			for (int r = 0; r < eager_reps; r++) {
				if (eager_wait > 0)
					usleep((useconds_t)(eager_wait * 1e6));
				run(&base, PM_BACKEND_EAGER, &lz.lazy, ncol, W, C, &runs[r]);
				run(&base, PM_BACKEND_EAGER, &lz.lazy, ncol, W, C, &warms[r]);
			}
			median_of(runs, eager_reps, &mat);
			median_of(warms, eager_reps, &warm);
			/* BLAS alone on a matrix that already exists */
			o.lazy.backend = PM_BACKEND_EAGER;
			b_check(pm_matrix_open(&o, &m), "eager");
			for (int r = 0; r < (bound ? 2 : 1) * reps; r++) {
				struct b_cpu c0, c;
				struct b_mover mv;
				double t0;

				memset(&runs[r], 0, sizeof(runs[r]));
				if (r >= reps)
					huge = b_mover_start(&mv);
				b_hwm_reset();
				c0 = b_cpu_now();
				t0 = b_now();
				runs[r].check = apply(pm_matrix_data(m), pm_matrix_rows(m), pm_matrix_ld(m),
						      (int)pm_matrix_cols(m), ncol, W, C, r >= reps ? &mv : NULL);
				runs[r].s = b_now() - t0;
				c = b_cpu_since(c0);
				runs[r].cpu = c.proc;
				runs[r].thr = c.thr;
				runs[r].sys = c.sys;
				runs[r].peak_mib = b_hwm_mib();
				if (r >= reps) {
					size_t n = b_mover_stop(&mv);

					fewest = n < fewest ? n : fewest;
					most = n > most ? n : most;
					mover_err = mover_err ? mover_err : mv.err;
				}
			}
			pm_matrix_close(m);
			median_of(runs, reps, &alone);
			if (bound)
				median_of(runs + reps, reps, &beside);
			if (alone.check != mat.check || alone.check != warm.check)
				b_die(1, "BLAS gave different results on the same matrix");
			print_row("BLAS alone on pre-built", &alone, info.bytes, &alone, &mat, &warm);
			print_row("eager cold: materialize+BLAS", &mat, info.bytes, &alone, &mat, &warm);
			print_row("eager warm: materialize+BLAS", &warm, info.bytes, &alone, &mat, &warm);
			if (bound) {
				if (beside.check != alone.check)
					b_die(1, "BLAS gave different results on the same matrix");
				if (!mover_err)
					print_row("pre-built, moves beside", &beside, info.bytes, &alone, &mat,
						  &warm);
				b_mover_report("  ", fewest, most, info.bytes / B_MIB, mover_err, huge);
			}
			for (int bi = 0; bi < lz.nbackends; bi++) {
				int b = lz.backends[bi];
				struct result lr;
				char name[64];

				for (int r = 0; r < reps; r++) {
					run(&base, b, &lz.lazy, ncol, W, C, &runs[r]);
					if (runs[r].check != alone.check)
						b_die(1, "%s: BLAS on the lazy matrix gave other results",
						      pm_backend_name(b));
				}
				median_of(runs, reps, &lr);
				snprintf(name, sizeof(name), "lazy %s", pm_backend_name(b));
				print_row(name, &lr, info.bytes, &alone, &mat, &warm);
				printf("  ");
				b_print_stats(&lr.st);
				/* The region's own peak, the most of the runs:
				 * BLAS threads reading parts of one block are one
				 * stream, and must keep what one reader keeps. */
				printf("  residency: at most %.0f of the budget's %.0f MiB in %d runs: %s\n",
				       (double)lr.resident_max / 1048576.0,
				       (double)lr.st.budget_bytes / 1048576.0, reps,
				       lr.resident_max < lr.st.budget_bytes ? "below the budget"
									    : "the whole budget");
				if (ncol == 64) {
					snprintf(name, sizeof(name), "sgemm64 lazy %s / BLAS alone",
						 pm_backend_name(b));
					verdict(name, alone.s / lr.s, nt > 1 ? 0.85 : 0.95);
				}
				/* The lazy run does BLAS's work and the fills on
				 * ncpu CPUs: it takes at least the longer of BLAS
				 * alone and their CPU time spread over every CPU. */
				{
					double fill = (double)lr.st.fill_ns * 1e-9,
					       least = (alone.cpu + fill) / (double)ncpu;

					least = least > alone.s ? least : alone.s;
					printf("  bound: BLAS alone's %.3f CPU s + %.3f s of fills on %ld CPUs: "
					       "%.2fx BLAS alone at most\n", alone.cpu, fill, ncpu, alone.s / least);
				}
				if (ncol == 1) {
					snprintf(name, sizeof(name), "sgemv lazy %s / cold materialize+sgemv",
						 pm_backend_name(b));
					verdict(name, mat.s / lr.s, 1.0);
					snprintf(name, sizeof(name), "sgemv lazy %s / warm materialize+sgemv",
						 pm_backend_name(b));
					verdict(name, warm.s / lr.s, 1.0);
				}
			}
		}
	}
	b_print_footer();
	free(C);
	free(W);
	free(img);
	return 0;
}
