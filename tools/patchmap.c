/* patchmap: the command-line tool. info, apply and export here; demo in
 * demo.c; options in args.c; image files in image.c. */
#include <cblas.h>
#include <limits.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bank.h"
#include "cli.h"

/* ---------------------------------------------------------------- info */

/* The image, or its message said (a file in no known format gets the options
 * that describe a raw file). 0 or -1. */
static int open_image(const struct args *a, struct img *im, char *err)
{
	int ret;

	if (fe_image_is_vips(a->image, &a->opt))
		cli_vips_dir();
	ret = fe_image_open(a->image, &a->opt, im, err);

	if (ret)
		cli_err("%s: %s%s", a->image, err,
			ret == IMG_EFORMAT ? "; for raw data give --shape and --raw-dtype" : "");
	return ret ? -1 : 0;
}

static int cmd_info(const struct args *a)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct fe_rows sel = { 0 };
	char err[IMG_ERRLEN];
	struct img im;
	int ret = 1;

	if (open_image(a, &im, err))
		return 1;
	if (a->window_given && args_matrix(a, &im, &o, &sel, &info))
		goto out;
	if (a->json) {
		struct json j;

		json_begin(&j, stdout);
		json_str(&j, "command", "info");
		report_image_json(&j, a->image, &im);
		if (a->window_given) {
			fe_report_options(&j, &o, &info);
			fe_report_matrix(&j, &info);
			fe_report_rows(&j, &sel);
		}
		json_end(&j);
	} else if (!a->quiet) {
		report_image_text(stdout, a->image, &im);
		if (a->window_given) {
			char b1[64], b2[64], b3[64], b4[32];
			size_t v[PM_MAX_DIMS], pb[PM_MAX_DIMS], pa[PM_MAX_DIMS];
			int ns = info.nspatial;
			bool padded = false;

			for (int i = 0; i < ns; i++) {
				pb[i] = (size_t)o.window[i].pad_before;
				pa[i] = (size_t)o.window[i].pad_after;
				padded |= pb[i] || pa[i];
			}
			for (int i = 0; i < ns; i++)
				v[i] = o.window[i].size;
			printf("window %s", pm__fmt_dims(b1, sizeof(b1), v, ns));
			for (int i = 0; i < ns; i++)
				v[i] = o.window[i].step;
			printf(", step %s", pm__fmt_dims(b1, sizeof(b1), v, ns));
			for (int i = 0; i < ns; i++)
				v[i] = o.window[i].dilation;
			printf(", dilation %s", pm__fmt_dims(b1, sizeof(b1), v, ns));
			if (padded)
				printf(", %s padding %s before and %s after", pm_pad_mode_name(o.pad_mode),
				       pm__fmt_dims(b2, sizeof(b2), pb, ns), pm__fmt_dims(b3, sizeof(b3), pa, ns));
			else
				printf(", no padding");
			if (o.source.has_channels)
				printf(", channels on axis %d", o.source.channel_axis);
			printf("\n");
			printf("patch matrix %zu rows x %zu cols (ld %zu), %s: %zu bytes (%s)\n", info.rows,
			       info.cols, info.ld, pm_dtype_name(info.dtype), info.bytes,
			       pm__fmt_bytes(b4, sizeof(b4), (double)info.bytes));
			printf("windows per axis %s (%zu windows), %zu elements per window, %zu "
			       "channel%s, column order %s\n",
			       pm__fmt_dims(b1, sizeof(b1), info.out_shape, ns), info.windows,
			       info.window_elems, info.channels, info.channels == 1 ? "" : "s",
			       o.order == PM_ORDER_WINDOW ? "(y, x, c)" : "(c, y, x)");
			if (sel.rows.kind == PM_ROWS_RANGE)
				printf("rows: windows %zu to %zu\n", sel.rows.begin, sel.rows.end - 1);
			else if (sel.rows.kind == PM_ROWS_INDEX)
				printf("rows: %zu windows (%s)\n", sel.rows.count, sel.kind);
		}
	}
	ret = 0;
out:
	fe_rows_free(&sel);
	img_close(&im);
	return ret;
}

/* ---------------------------------------------------------------- apply */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* The whole filters array (any dtype, any strides) converted by the
 * library into n packed values of `dtype`, in C order: one window of one
 * sample per element, as numpy's astype converts. 0, or -1 after cli_err. */
static int convert_filters(const struct args *a, const struct pm_source *src, int dtype, void *dst,
			   size_t n)
{
	struct pm_matrix_opts c = { .size = sizeof(c), .source = *src, .dtype = dtype };
	pm_matrix *m;
	int e;

	c.source.has_channels = false;
	for (int i = 0; i < src->ndim; i++)
		c.window[i] = (struct pm_window){ .size = 1, .step = 1, .dilation = 1 };
	c.lazy.backend = PM_BACKEND_NONE;
	if ((e = pm_matrix_open(&c, &m)) ||
	    (e = pm_matrix_read(m, 0, dst, n * pm_dtype_size(dtype))) || (e = pm_matrix_close(m)))
		return cli_err("%s: %s", a->filters, pm_strerror(e));
	return 0;
}

static void store(void *F, int dtype, size_t i, double v)
{
	if (dtype == PM_DTYPE_F32)
		((float *)F)[i] = (float)v;
	else
		((double *)F)[i] = v;
}

/* The filters as a dense N x K matrix in the compute dtype, columns in the
 * matrix's order. */
static int load_filters(const struct args *a, const struct pm_matrix_opts *o,
			const struct pm_matrix_info *info, int dtype, void **out, size_t *nout)
{
	size_t K = info->window_elems, N, es = pm_dtype_size(dtype), bytes;
	char err[IMG_ERRLEN], b1[96], b2[96];
	struct img f;
	void *F;

	if (a->random) {
		uint64_t s = a->seed;

		N = a->random;
		if (__builtin_mul_overflow(N * es, K, &bytes) || !(F = malloc(bytes)))
			return cli_err("out of memory for %zu filters of %zu elements", N, K);
		/* 24 random bits: values exact in float32, the same for f32 and f64 */
		for (size_t i = 0; i < N * K; i++)
			store(F, dtype, i, (double)(splitmix64(&s) >> 40) * 0x1p-23 - 1.0);
		*out = F;
		*nout = N;
		return 0;
	}
	if (img_open(a->filters, NULL, &f, err))
		return cli_err("%s: %s", a->filters, err);
	if (strcmp(f.format, "npy")) {
		img_close(&f);
		return cli_err("%s: the filters must be a .npy file", a->filters);
	}
	N = f.src.shape[0];
	int ns = info->nspatial, C = (int)info->channels, nd = f.src.ndim;
	bool flat = nd == 2 && f.src.shape[1] == K;
	bool shaped = nd == 1 + ns + (o->source.has_channels ? 1 : 0);
	size_t wshape[PM_MAX_DIMS + 1];

	for (int i = 0; i < ns; i++)
		wshape[i] = o->window[i].size;
	if (o->source.has_channels)
		wshape[ns] = (size_t)C;
	for (int i = 0; shaped && i < nd - 1; i++)
		shaped = f.src.shape[i + 1] == wshape[i];
	if (!flat && !shaped) {
		wshape[ns + o->source.has_channels] = 0;
		pm__fmt_dims(b1, sizeof(b1), f.src.shape, nd);
		pm__fmt_dims(b2, sizeof(b2), wshape, ns + o->source.has_channels);
		img_close(&f);
		return cli_err("%s: the filters have shape %s; this window needs Nx%zu or Nx%s",
			       a->filters, b1, K, b2);
	}
	if (!N || __builtin_mul_overflow(N * es, K, &bytes) || !(F = malloc(bytes))) {
		img_close(&f);
		return cli_err("%s: %s", a->filters, N ? "out of memory for the filters" : "no filters (N = 0)");
	}
	/* The file's values in its own C order: filter n, element k at n * K + k
	 * (k over (spatial..., c) unless flat), converted to the compute dtype. */
	void *D = malloc(bytes);
	if (!D || convert_filters(a, &f.src, dtype, D, N * K)) {
		if (!D)
			cli_err("%s: out of memory for the filters", a->filters);
		free(D);
		free(F);
		img_close(&f);
		return -1;
	}
	size_t S = K / (size_t)C; /* spatial elements per window */
	for (size_t n = 0; n < N; n++)
		for (size_t k = 0; k < K; k++) {
			size_t col = !flat && o->order == PM_ORDER_CHANNEL ? (k % (size_t)C) * S + k / (size_t)C
									   : k;

			memcpy((char *)F + (n * K + col) * es, (char *)D + (n * K + k) * es, es);
		}
	free(D);
	img_close(&f);
	*out = F;
	*nout = N;
	return 0;
}

/* Writes a (N, K) array of dtype as a .npy file into *of, closed but not
 * yet renamed into place: the caller commits it, or aborts it. 0, or -1
 * after cli_err (of then holds nothing to abort). */
static int write_npy(const struct args *a, struct outfile *of, const char *path, const void *data,
		     int dtype, size_t N, size_t K)
{
	char hdr[512];
	size_t shape[2] = { N, K }, h = npy_write_header(hdr, sizeof(hdr), dtype, 2, shape, false);
	size_t bytes = N * K * pm_dtype_size(dtype);
	int e;

	if (cli_out_open(of, path, h + bytes, a))
		return -1;
	if ((e = out_pwrite(of, hdr, h, 0)) || (e = out_pwrite(of, data, bytes, h))) {
		out_abort(of);
		return cli_err("cannot write '%s': %s", path, strerror(-e));
	}
	return cli_out_close(of);
}

/* The library's filler threads: as asked, or the library's default. */
static int filler_threads(const struct pm_matrix_opts *o)
{
	return o->lazy.threads ? o->lazy.threads : pm_default_threads();
}

int default_blas_threads(const struct args *a, const struct pm_matrix_opts *o)
{
	int cpus = online_cpus(), fillers = filler_threads(o);

	if (a->blas_threads)
		return a->blas_threads;
	return cpus - fillers < 1 ? 1 : cpus - fillers;
}

/* The filler threads in force, as the library reports them (0: none). */
int lib_threads(const struct pm_matrix_opts *o, const struct pm_stats *st)
{
	(void)o;
	return st->threads;
}

/* The report goes to stdout, unless an output (--out, or apply's
 * --save-filters) does. */
static FILE *report_stream(const struct args *a)
{
	return cli_on_stdout(a->out) || cli_on_stdout(a->save_filters) ? stderr : stdout;
}

/* The end of a command's computing: the matrix's stats into *st, the
 * matrix closed (*m NULL), the output closed (not yet renamed into
 * place). 0, or -1 after cli_err; the output is then the caller's to
 * abort (a failed close has removed its temporary already, and
 * out_abort() stays harmless). */
static int finish_output(pm_matrix **m, struct pm_stats *st, struct outfile *of)
{
	int e;

	pm_matrix_stats(*m, st);
	e = pm_matrix_close(*m);
	*m = NULL;
	if (e)
		return cli_err("filling the patch matrix failed: %s", pm_strerror(e));
	return cli_out_close(of);
}

size_t block_rows(size_t rows, size_t row_bytes, size_t nout, size_t es, size_t budget)
{
	size_t target = budget == PM_BUDGET_UNLIMITED ? (size_t)64 << 20 : budget / 4, rb;

	if (target > (size_t)64 << 20)
		target = (size_t)64 << 20;
	rb = target / row_bytes;
	if (rb > ((size_t)16 << 20) / (nout * es))
		rb = ((size_t)16 << 20) / (nout * es);
	if (rb < 1)
		rb = 1;
	if (rb > rows)
		rb = rows;
	if (rb > 1 << 30)
		rb = 1 << 30;
	return rb;
}

/* ------------------------------------------- the workers of apply and export */

/* One of the threads a command computes with. */
struct worker {
	void *x;              /* the command's shared state */
	struct progress *bar; /* worker 0 (the calling thread) draws it; others NULL */
	pthread_t tid;
};

/* Keeps the workers' first error (later ones are dropped), and whether it
 * came from writing. */
static void first_error(atomic_int *err, atomic_bool *err_write, int e, bool write)
{
	int z = 0;

	if (atomic_compare_exchange_strong(err, &z, e) && write)
		atomic_store(err_write, true);
}

/* Runs fn on n workers over x: n - 1 new threads and the calling one, which
 * draws bar. Returns how many ran (fewer when a thread cannot start). */
static int run_workers(struct worker *w, int n, void *x, struct progress *bar,
		       void *(*fn)(void *))
{
	int started;

	for (int i = 0; i < n; i++)
		w[i] = (struct worker){ .x = x, .bar = i ? NULL : bar };
	for (started = 1; started < n; started++)
		if (pthread_create(&w[started].tid, NULL, fn, &w[started]))
			break;
	fn(&w[0]);
	for (int i = 1; i < started; i++)
		pthread_join(w[i].tid, NULL);
	return started;
}

/* Apply without a mapping: each worker computes its blocks of rows with
 * pm_matrix_read into a buffer small enough to stay in its core's cache,
 * multiplies them there (float32: the filter-bank kernel of bank.h;
 * float64: one BLAS thread), and writes its slices of the output at their
 * final offsets. The workers share nothing but the block counter, the
 * progress and the first error. */
struct applier {
	pm_matrix *m;
	const struct img *im;      /* the source, whose decoding may fail */
	struct outfile *out;
	const void *F;             /* N x cols filters, compute dtype */
	const struct bank *bank;   /* float32: F's kernel */
	int dtype;
	size_t N, rows, cols, ld, es, bytes, hlen;
	size_t block;              /* rows per output block: one write per filter */
	size_t sub;                /* rows per read and GEMM */
	atomic_size_t next;
	atomic_size_t done;
	atomic_int err;            /* first error: negative errno, or PM code */
	atomic_bool err_write;     /* the error came from writing */
};

static void apply_fail(struct applier *x, int e, bool write)
{
	first_error(&x->err, &x->err_write, e, write);
}

/* Rows [r0, r0 + n) into C (N x n, ld n), sub rows at a time through X. */
static int apply_block(struct applier *x, void *X, void *C, size_t r0, size_t n)
{
	for (size_t s = 0; s < n; s += x->sub) {
		size_t k = n - s < x->sub ? n - s : x->sub, off = (r0 + s) * x->ld * x->es;
		size_t len = k * x->ld * x->es;
		int e;

		if (atomic_load(&x->err))
			return 1;
		if (len > x->bytes - off)
			len = x->bytes - off; /* the last row without its padding */
		if ((e = img_matrix_read(x->im, x->m, off, X, len))) {
			apply_fail(x, e, false);
			return 1;
		}
		if (x->dtype == PM_DTYPE_F32)
			bank_apply(x->bank, X, x->ld, k, (float *)C + s, n);
		else
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)x->N, (int)k,
				    (int)x->cols, 1.0, x->F, (int)x->cols, X, (int)x->ld, 0.0,
				    (double *)C + s, (int)n);
	}
	return 0;
}

static void *apply_worker(void *arg)
{
	struct applier *x = ((struct worker *)arg)->x;
	struct progress *bar = ((struct worker *)arg)->bar;
	size_t nblocks = (x->rows + x->block - 1) / x->block;
	void *X = malloc(x->sub * x->ld * x->es), *C = malloc(x->N * x->block * x->es);

	if (!X || !C) {
		apply_fail(x, -ENOMEM, false);
		goto out;
	}
	while (!atomic_load(&x->err)) {
		size_t i = atomic_fetch_add(&x->next, 1), r0 = i * x->block, n;
		int e;

		if (i >= nblocks)
			break;
		n = x->rows - r0 < x->block ? x->rows - r0 : x->block;
		if (apply_block(x, X, C, r0, n))
			break;
		for (size_t f = 0; f < x->N; f++)
			if ((e = out_pwrite(x->out, (char *)C + f * n * x->es, n * x->es,
					    x->hlen + (f * x->rows + r0) * x->es))) {
				apply_fail(x, e, true);
				goto out;
			}
		atomic_fetch_add(&x->done, n);
		if (bar)
			progress_update(bar, (double)atomic_load(&x->done));
	}
out:
	free(X);
	free(C);
	return NULL;
}

/* The streamed apply's sizes: each worker's two buffers (read rows, about
 * 256 KiB, and responses, about 4 MiB), each at most a sixteenth of the
 * budget, and at most 8 workers under a budget. The sizes, and so the
 * GEMMs and their results, do not depend on the thread count. */
static void apply_plan(struct applier *x, const struct pm_matrix_opts *o, int *nthreads)
{
	size_t budget = args_budget(o), share, row = x->ld * x->es, resp = x->N * x->es;
	int t = o->lazy.threads ? o->lazy.threads : online_cpus();

	if (t > (budget == PM_BUDGET_UNLIMITED ? 64 : 8))
		t = budget == PM_BUDGET_UNLIMITED ? 64 : 8;
	if (t < 1)
		t = 1;
	share = budget == PM_BUDGET_UNLIMITED ? (size_t)8 << 20 : budget / 16;
	x->sub = (share < ((size_t)256 << 10) ? share : (size_t)256 << 10) / row;
	x->block = (share < ((size_t)4 << 20) ? share : (size_t)4 << 20) / resp;
	if (x->sub < 1)
		x->sub = 1;
	if (x->block < x->sub)
		x->block = x->sub;
	x->block -= x->block % x->sub;
	if (x->block > x->rows)
		x->block = x->rows ? x->rows : 1;
	if ((size_t)t > (x->rows + x->block - 1) / x->block)
		t = (int)((x->rows + x->block - 1) / x->block);
	*nthreads = t < 1 ? 1 : t;
}

static int cmd_apply(const struct args *a)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct fe_rows sel = { 0 };
	struct pm_stats st = { 0 };
	struct progress bar;
	struct outfile of, ff;
	char err[IMG_ERRLEN], hdr[512];
	struct img im;
	pm_matrix *m = NULL;
	void *F = NULL, *C = NULL;
	int nshape;
	size_t N = 0, hlen, es, rb, shape[PM_MAX_DIMS + 1];
	double t0, t;
	int dtype, ret = 1, e, bt, nthreads = 1, kernel;
	bool opened = false, ff_opened = false, streamed;
	struct applier x;
	struct bank bank = { 0 };
	const char *kname = getenv("PATCHMAP_APPLY_KERNEL");
	struct worker w[64];

	if (open_image(a, &im, err))
		return 1;
	if (cli_image_guard(&im, a->image) || args_matrix(a, &im, &o, &sel, &info))
		goto out;
	/* the GEMM's types, on rows of windows */
	dtype = info.dtype;
	if (dtype != PM_DTYPE_F32 && dtype != PM_DTYPE_F64) {
		cli_err("dtype: apply computes in float32 or float64, not %s", pm_dtype_name(dtype));
		goto out;
	}
	if (o.layout != PM_LAYOUT_ROWS) {
		cli_err("layout: apply reads one row per window (rows), not cols");
		goto out;
	}
	/* No mapping unless a lazy backend, or BLAS threads for one, are asked
	 * for: each worker then reads its rows and runs one BLAS thread. */
	streamed = o.lazy.backend == PM_BACKEND_NONE || (!a->backend_given && !a->blas_threads);
	if (o.lazy.backend == PM_BACKEND_NONE && a->blas_threads) {
		cli_err("blas-threads: apply without a mapping runs one BLAS thread in each of its "
			"--threads; give --backend auto, uffd, sigsegv or eager for a mapping");
		goto out;
	}
	if ((kernel = bank_kernel_parse(kname && kname[0] ? kname : NULL)) < 0) {
		cli_err("PATCHMAP_APPLY_KERNEL=%s: give blas, avx2 or avx512, or leave it unset for "
			"the fastest this CPU has", kname);
		goto out;
	}
	if (load_filters(a, &o, &info, dtype, &F, &N))
		goto out;
	es = info.elem_size;
	if (N > INT_MAX || info.cols > INT_MAX || info.ld > INT_MAX)
		goto too_big;
	if (streamed && dtype == PM_DTYPE_F32 &&
	    (e = bank_init(&bank, F, N, info.cols, kernel))) {
		if (e == -ENOTSUP)
			cli_err("PATCHMAP_APPLY_KERNEL=%s: this CPU cannot run it; give blas, or "
				"leave it unset for the fastest this CPU has", kname);
		else
			cli_err("out of memory for %zu filters of %zu columns", N, info.cols);
		goto out;
	}
	/* Rows a multiple of 4 KiB apart put a block's rows in one set of
	 * the L1 cache (32 x 32 float32 windows, one thread: 0.74 s, against
	 * 0.57 s with rows 4160 bytes apart); unless a pitch is given, the
	 * kernel's rows are 64 bytes longer. */
	if (bank.panels && !o.row_pitch && info.ld * es % 4096 == 0) {
		o.row_pitch = info.ld * es + 64;
		if ((e = pm_matrix_describe_rows(&o, &sel.rows, &info))) {
			cli_err("cannot describe the patch matrix: %s", pm_strerror(e));
			goto out;
		}
	}
	/* Every output refused now, before the first is written. */
	if (cli_out_check(a->out, a) || (a->save_filters && cli_out_check(a->save_filters, a)))
		goto out;
	rb = block_rows(info.rows, info.ld * es, N, es, args_budget(&o));
	memset(&x, 0, sizeof(x));
	x.F = F;
	x.bank = &bank;
	x.dtype = dtype;
	x.N = N;
	x.rows = info.rows;
	x.cols = info.cols;
	x.ld = info.ld;
	x.es = es;
	x.bytes = info.bytes;
	if (streamed) {
		apply_plan(&x, &o, &nthreads);
		rb = x.block;
		o.lazy.backend = PM_BACKEND_NONE;
	}
	if (!streamed && !(C = malloc(N * rb * es))) {
		cli_err("out of memory for %zu x %zu responses", N, rb);
		goto out;
	}
	/* every window: (N, out_shape...); a selection: (N, rows) */
	shape[0] = N;
	if (sel.rows.kind == PM_ROWS_ALL) {
		memcpy(shape + 1, info.out_shape, sizeof(size_t) * (size_t)info.nspatial);
		nshape = 1 + info.nspatial;
	} else {
		shape[1] = info.rows;
		nshape = 2;
	}
	hlen = npy_write_header(hdr, sizeof(hdr), dtype, nshape, shape, false);
	size_t out_bytes;
	if (__builtin_mul_overflow(N * es, info.rows, &out_bytes))
		goto too_big;
	if (args_check_memory(a, &info))
		goto out;
	if (cli_out_open(&of, a->out, hlen + out_bytes, a))
		goto out;
	opened = true;
	if (!of.seekable) {
		cli_err("%s: apply writes its output out of order: give a file or a seekable device",
			a->out);
		goto out;
	}
	if ((e = out_pwrite(&of, hdr, hlen, 0))) {
		cli_err("cannot write '%s': %s", a->out, strerror(-e));
		goto out;
	}
	bt = streamed ? 1 : default_blas_threads(a, &o);
	openblas_set_num_threads(bt);
	t0 = now_s();
	e = pm_matrix_open_rows(&o, &sel.rows, &m);
	if (e) {
		cli_err("cannot %s the patch matrix: %s", streamed ? "open" : "map", pm_strerror(e));
		goto out;
	}
	const char *X = pm_matrix_data(m);
	progress_start(&bar, "apply", (double)info.rows, !a->quiet && !a->json);
	if (streamed) {
		x.m = m;
		x.im = &im;
		x.out = &of;
		x.hlen = hlen;
		nthreads = run_workers(w, nthreads, &x, &bar, apply_worker);
		if ((e = atomic_load(&x.err))) {
			char msg[512];

			progress_end(&bar);
			if (atomic_load(&x.err_write))
				cli_err("cannot write '%s': %s", a->out, strerror(-e));
			else if (e == -ENOMEM)
				cli_err("out of memory for the buffers of %d threads", nthreads);
			else if (img_vips_error(&im, msg, sizeof(msg)))
				cli_err("%s: %s", a->image,
					msg[0] ? msg : "a part of the image failed to decode");
			else
				cli_err("computing the patch matrix failed: %s", pm_strerror(e));
			goto out;
		}
	}
	for (size_t r0 = 0; !streamed && r0 < info.rows; r0 += rb) {
		size_t n = info.rows - r0 < rb ? info.rows - r0 : rb;

		if (dtype == PM_DTYPE_F32)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n,
				    (int)info.cols, 1.0f, F, (int)info.cols,
				    (const float *)(X + r0 * info.ld * es), (int)info.ld, 0.0f, C, (int)n);
		else
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n,
				    (int)info.cols, 1.0, F, (int)info.cols,
				    (const double *)(X + r0 * info.ld * es), (int)info.ld, 0.0, C, (int)n);
		for (size_t f = 0; f < N; f++)
			if ((e = out_pwrite(&of, (char *)C + f * n * es, n * es,
					    hlen + (f * info.rows + r0) * es))) {
				progress_end(&bar);
				cli_err("cannot write '%s': %s", a->out, strerror(-e));
				goto out;
			}
		progress_update(&bar, (double)(r0 + n));
	}
	progress_end(&bar);
	t = now_s() - t0;
	if (finish_output(&m, &st, &of))
		goto out;
	/* The filters go out with the responses, never without them: both are
	 * written in full, and closed, before either is renamed into place, so
	 * that a run that fails (a damaged image, a full disk, Ctrl-C) leaves
	 * neither file and keeps both old ones. */
	if (a->save_filters) {
		if (write_npy(a, &ff, a->save_filters, F, dtype, N, info.cols))
			goto out;
		ff_opened = true;
	}
	uint64_t hwm = status_bytes("VmHWM");
	FILE *rep = report_stream(a);

	if (a->json) {
		struct json j;

		json_begin(&j, rep);
		json_str(&j, "command", "apply");
		report_image_json(&j, a->image, &im);
		fe_report_matrix(&j, &info);
		fe_report_rows(&j, &sel);
		json_obj(&j, "output");
		json_str(&j, "path", a->out);
		json_dims(&j, "shape", shape, nshape);
		json_str(&j, "dtype", pm_dtype_name(dtype));
		json_u64(&j, "bytes", hlen + out_bytes);
		json_close(&j, '}');
		json_u64(&j, "filters", N);
		json_u64(&j, "block_rows", rb);
		json_u64(&j, "blas_threads", bank.panels ? 0 : (uint64_t)bt);
		json_str(&j, "kernel", bank.panels ? bank_kernel_name(bank.kernel) : "blas");
		if (streamed)
			json_u64(&j, "threads", (uint64_t)nthreads);
		json_num(&j, "seconds", t);
		json_num(&j, "gb_per_s", (double)info.bytes / t / 1e9);
		json_u64(&j, "peak_rss_bytes", hwm);
		report_stats_json(&j, &st);
		json_end(&j);
	} else if (!a->quiet) {
		char b1[64], b2[32], b3[32];

		fprintf(rep, "apply: %zu filters at %s window of %s -> %s, shape %zux%s %s (%s)\n", N,
		       nshape == 2 && sel.rows.kind != PM_ROWS_ALL ? "each selected" : "every",
		       a->image, a->out, N, pm__fmt_dims(b1, sizeof(b1), shape + 1, nshape - 1),
		       pm_dtype_name(dtype), pm__fmt_bytes(b2, sizeof(b2), (double)(hlen + out_bytes)));
		fprintf(rep, "  matrix      %zu x %zu %s (%s), blocks of %zu rows\n", info.rows, info.cols,
		       pm_dtype_name(info.dtype), pm__fmt_bytes(b3, sizeof(b3), (double)info.bytes), rb);
		if (streamed && bank.panels)
			fprintf(rep, "  time        %.3f s: %.2f GB/s of matrix through the %s "
				"filter-bank kernel (%d thread%s)\n",
				t, (double)info.bytes / t / 1e9, bank_kernel_name(bank.kernel),
				nthreads, nthreads == 1 ? "" : "s");
		else if (streamed)
			fprintf(rep, "  time        %.3f s: %.2f GB/s of matrix through cblas_%cgemm "
				"(%d thread%s, one BLAS thread each)\n",
				t, (double)info.bytes / t / 1e9, dtype == PM_DTYPE_F32 ? 's' : 'd',
				nthreads, nthreads == 1 ? "" : "s");
		else
			fprintf(rep, "  time        %.3f s: %.2f GB/s of matrix through cblas_%cgemm "
				"(%d BLAS thread%s)\n",
				t, (double)info.bytes / t / 1e9, dtype == PM_DTYPE_F32 ? 's' : 'd', bt,
				bt == 1 ? "" : "s");
		report_stats_text(rep, &st, lib_threads(&o, &st));
		fprintf(rep, "  peak RSS    %s (VmHWM)\n", pm__fmt_bytes(b1, sizeof(b1), (double)hwm));
	}
	/* the report first: if it fails, so does the command, old files kept */
	if (cli_report_done(rep))
		goto out;
	opened = ff_opened = false;
	if (a->save_filters ? cli_out_commit_pair(&of, &ff) : cli_out_commit(&of))
		goto out;
	ret = 0;
	goto out;
too_big:
	cli_err("the problem is too large for BLAS's 32-bit sizes (%zu filters, %zu columns)", N,
		info.cols);
out:
	if (opened)
		out_abort(&of);
	if (ff_opened)
		out_abort(&ff);
	pm_matrix_close(m);
	cli_image_unguard();
	bank_free(&bank);
	free(F);
	free(C);
	fe_rows_free(&sel);
	img_close(&im);
	return ret;
}

/* ---------------------------------------------------------------- export */

struct exporter {
	pm_matrix *m;
	const struct img *im;      /* the source, whose decoding may fail */
	const char *data;          /* the mapping, or NULL: pm_matrix_read */
	struct outfile *out;
	size_t hlen, total, piece;
	atomic_size_t next;
	atomic_uint_fast64_t done;
	atomic_int err;            /* first error: negative errno, or PM code */
	atomic_bool err_write;     /* the error came from writing */
};

static void *export_worker(void *arg)
{
	struct exporter *x = ((struct worker *)arg)->x;
	struct progress *bar = ((struct worker *)arg)->bar;
	void *buf = malloc(x->piece);

	if (!buf) {
		first_error(&x->err, &x->err_write, -ENOMEM, false);
		return NULL;
	}
	while (!atomic_load(&x->err)) {
		size_t i = atomic_fetch_add(&x->next, 1), off, len;
		int e;

		if (i >= (x->total + x->piece - 1) / x->piece)
			break;
		off = i * x->piece;
		len = x->total - off < x->piece ? x->total - off : x->piece;
		if (x->data)
			memcpy(buf, x->data + off, len);
		else if ((e = img_matrix_read(x->im, x->m, off, buf, len))) {
			first_error(&x->err, &x->err_write, e, false);
			break;
		}
		if ((e = out_pwrite(x->out, buf, len, x->hlen + off))) {
			first_error(&x->err, &x->err_write, e, true);
			break;
		}
		atomic_fetch_add(&x->done, len);
		if (bar)
			progress_update(bar, (double)atomic_load(&x->done));
	}
	free(buf);
	return NULL;
}

static int cmd_export(const struct args *a)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct fe_rows sel = { 0 };
	struct pm_stats st = { 0 };
	struct progress bar;
	struct outfile of;
	struct exporter x;
	char err[IMG_ERRLEN], hdr[512];
	struct img im;
	pm_matrix *m = NULL;
	struct worker w[64];
	size_t budget, hlen, bufs;
	int nthreads, ret = 1, e;
	bool opened = false, lazy;
	double t0, t;

	if (open_image(a, &im, err))
		return 1;
	if (cli_image_guard(&im, a->image) || args_matrix(a, &im, &o, &sel, &info))
		goto out;
	budget = args_budget(&o);
	/* an explicit --backend, auto included, copies from the mapping, as
	 * for apply; none, or no --backend, reads without one */
	lazy = a->backend_given && o.lazy.backend != PM_BACKEND_NONE;
	if (info.ld != info.cols) {
		cli_err("--row-pitch: export writes the matrix with packed rows (a .npy has no "
			"row padding): leave the option out");
		goto out;
	}
	hlen = npy_write_header(hdr, sizeof(hdr), info.dtype, 2, (size_t[]){ info.rows, info.cols },
				false);
	nthreads = lazy ? 1 : o.lazy.threads ? o.lazy.threads : online_cpus();
	if (nthreads > 64)
		nthreads = 64;
	/* Buffers: within the budget; with a mapping, an eighth of it, the
	 * mapping keeping the rest. */
	bufs = budget == PM_BUDGET_UNLIMITED ? (size_t)nthreads * (4 << 20) : lazy ? budget / 8 : budget;
	while (nthreads > 1 && bufs / (size_t)nthreads < 65536)
		nthreads--;
	memset(&x, 0, sizeof(x));
	x.piece = bufs / (size_t)nthreads;
	if (x.piece > (size_t)4 << 20)
		x.piece = (size_t)4 << 20;
	x.piece &= ~(size_t)4095;
	if (!x.piece) {
		char b1[32];
		cli_err("budget: %s is too small: export needs at least 4 KiB of buffer%s",
			pm__fmt_size(b1, sizeof(b1), budget), lazy ? " (an eighth of the budget)" : "");
		goto out;
	}
	if (lazy) {
		size_t chunk = args_chunk(&o), need = (16 * chunk + 6) / 7;

		while (need - need / 8 < 2 * chunk)
			need++;
		need = (need + 1023) & ~(size_t)1023;
		if (budget != PM_BUDGET_UNLIMITED && budget < need) {
			char b1[32], b2[32], b3[32];
			cli_err("budget: %s is too small for export through a mapping: an eighth goes to "
				"the write buffers and the rest must hold two chunks of %s; give "
				"--budget %s or more, or lower --chunk",
				pm__fmt_size(b1, sizeof(b1), budget), pm__fmt_size(b2, sizeof(b2), chunk),
				pm__fmt_size(b3, sizeof(b3), need));
			goto out;
		}
		if (args_check_memory(a, &info))
			goto out;
		if (budget != PM_BUDGET_UNLIMITED)
			o.lazy.budget = budget - bufs;
	} else {
		o.lazy.backend = PM_BACKEND_NONE;
	}
	/* Only now the output: no file to remove if the options are wrong. */
	if (cli_out_open(&of, a->out, hlen + info.bytes, a))
		goto out;
	opened = true;
	if (!of.seekable)
		nthreads = 1; /* pieces in order: fewer buffers, same pieces */
	if ((e = out_pwrite(&of, hdr, hlen, 0))) {
		cli_err("cannot write '%s': %s", a->out, strerror(-e));
		goto out;
	}
	t0 = now_s();
	e = pm_matrix_open_rows(&o, &sel.rows, &m);
	if (e) {
		cli_err("cannot open the patch matrix: %s", pm_strerror(e));
		goto out;
	}
	x.m = m;
	x.im = &im;
	x.data = lazy ? pm_matrix_data(m) : NULL;
	x.out = &of;
	x.hlen = hlen;
	x.total = info.bytes;
	progress_start(&bar, "export", (double)info.bytes, !a->quiet && !a->json);
	run_workers(w, nthreads, &x, &bar, export_worker);
	progress_end(&bar);
	t = now_s() - t0;
	e = atomic_load(&x.err);
	if (e) {
		char msg[512];

		if (atomic_load(&x.err_write))
			cli_err("cannot write '%s': %s", a->out, strerror(-e));
		else if (img_vips_error(&im, msg, sizeof(msg)))
			cli_err("%s: %s", a->image, msg[0] ? msg : "a part of the image failed to decode");
		else
			cli_err("computing the patch matrix failed: %s", pm_strerror(e));
		goto out;
	}
	if (finish_output(&m, &st, &of))
		goto out;
	uint64_t hwm = status_bytes("VmHWM");
	FILE *rep = report_stream(a);

	if (a->json) {
		struct json j;

		json_begin(&j, rep);
		json_str(&j, "command", "export");
		report_image_json(&j, a->image, &im);
		fe_report_matrix(&j, &info);
		fe_report_rows(&j, &sel);
		json_obj(&j, "output");
		json_str(&j, "path", a->out);
		json_u64(&j, "bytes", hlen + info.bytes);
		json_u64(&j, "header_bytes", hlen);
		json_close(&j, '}');
		json_u64(&j, "threads", (uint64_t)nthreads);
		json_u64(&j, "piece_bytes", x.piece);
		json_num(&j, "seconds", t);
		json_num(&j, "gb_per_s", (double)info.bytes / t / 1e9);
		json_u64(&j, "peak_rss_bytes", hwm);
		report_stats_json(&j, &st);
		json_end(&j);
	} else if (!a->quiet) {
		char b1[32], b2[32];

		fprintf(rep, "export: %s -> %s: %zu x %zu %s (%s + %zu-byte header)\n", a->image, a->out,
		       info.rows, info.cols, pm_dtype_name(info.dtype),
		       pm__fmt_bytes(b1, sizeof(b1), (double)info.bytes), hlen);
		fprintf(rep, "  time        %.3f s: %.2f GB/s written by %d thread%s in pieces of %s\n", t,
		       (double)info.bytes / t / 1e9, nthreads, nthreads == 1 ? "" : "s",
		       pm__fmt_size(b2, sizeof(b2), x.piece));
		report_stats_text(rep, &st, lib_threads(&o, &st));
		fprintf(rep, "  peak RSS    %s (VmHWM)\n", pm__fmt_bytes(b1, sizeof(b1), (double)hwm));
	}
	/* the report first: if it fails, so does the command, old file kept */
	if (cli_report_done(rep))
		goto out;
	opened = false;
	if (cli_out_commit(&of))
		goto out;
	ret = 0;
out:
	if (opened)
		out_abort(&of);
	pm_matrix_close(m);
	cli_image_unguard();
	fe_rows_free(&sel);
	img_close(&im);
	return ret;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int cmd;
		int (*run)(const struct args *);
	} cmds[] = {
		{ "demo", CMD_DEMO, cmd_demo },
		{ "info", CMD_INFO, cmd_info },
		{ "apply", CMD_APPLY, cmd_apply },
		{ "export", CMD_EXPORT, cmd_export },
		{ "fold", CMD_FOLD, cmd_fold },
	};
	struct args a;

	if (argc < 2) {
		usage_program(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage_program(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("patchmap %s\n", pm_version());
		return 0;
	}
	if (!strcmp(argv[1], "doctor")) /* doctor.c: no image, no matrix options */
		return cmd_doctor(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name)) {
			int r = args_parse(&a, cmds[i].cmd, argc - 1, argv + 1);

			if (r >= 0) {
				args_free(&a);
				return cli_exit(r);
			}
			r = cmds[i].run(&a) ? 1 : 0;
			args_free(&a);
			/* A report that could not be written is a failure too. */
			if (fflush(stdout) || ferror(stdout)) {
				if (!r)
					cli_err("standard output: %s", strerror(errno ? errno : EIO));
				return cli_exit(1);
			}
			return cli_exit(r);
		}
	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			cli_json_errors(stdout);
	cli_err("unknown command '%s' (demo, info, apply, export, fold or doctor; see patchmap --help)", argv[1]);
	return cli_exit(EXIT_USAGE);
}
