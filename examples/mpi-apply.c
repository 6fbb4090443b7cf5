/* mpi-apply.c: `patchmap apply` across the ranks of an MPI job. Each rank
 * opens its own row range of the patch matrix (a lazy matrix of only those
 * windows, touching only the source rows they read), runs the filter bank
 * over it with cblas_sgemm, and writes its slice of one .npy file with
 * MPI-IO; rank 0 writes the header. The file equals `patchmap apply`'s for
 * the same image, filters, options and --block-rows, with one BLAS thread
 * per rank: the ranks make the same GEMM calls on the same blocks of rows.
 *
 *   mpirun -np 2 patchmap-mpi-apply IMAGE FILTERS.npy OUT.npy --window 16 [options]
 *
 * IMAGE is a .npy or PGM/PPM file; FILTERS a float32 .npy of shape (N, K),
 * K the window's elements in the matrix's column order (what `patchmap apply
 * --save-filters` writes). Options are the patchmap tool's matrix options
 * (--window, --step, --pad, --dtype f32 only, --budget per rank, ...), plus
 * --block-rows R (default: 64 MiB of matrix rows; give the block_rows that
 * `patchmap apply --json` reports for a file equal to its output) and
 * --blas-threads N (default 1). The output is (N, out_h, out_w) float32.
 * Written under a temporary name and renamed when every rank has finished;
 * on any error no output is left. */
#include <cblas.h>
#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "outfile.h"
#include "patchmap.h"

void openblas_set_num_threads(int num_threads);

struct job {
	int rank, ranks;
	const char *image, *filters, *out;
	size_t block_rows;
	int blas_threads;
	pm_spec *spec;
};

/* Every rank reaches the same verdict on the arguments; rank 0 says it. */
static int say(const struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int say(const struct job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->rank == 0) {
		va_start(ap, fmt);
		fputs("patchmap-mpi-apply: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	return -1;
}

/* Errors met by one rank only (a write) are reported by that rank. */
static int say_mine(const struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int say_mine(const struct job *j, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "patchmap-mpi-apply: rank %d: ", j->rank);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

/* True on every rank if any rank says bad. */
static bool any(bool bad)
{
	int mine = bad, all = 0;

	MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
	return all;
}

static int parse_count(const char *s, size_t max, size_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (*end || v == 0 || v > max)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int parse_args(struct job *j, int argc, char **argv)
{
	int pos = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--", 2)) {
			const char **slot[] = { &j->image, &j->filters, &j->out };

			if (pos == 3)
				return say(j, "one argument too many: '%s'", a);
			*slot[pos++] = a;
			continue;
		}
		if (i + 1 == argc)
			return say(j, "option %s needs a value", a);
		const char *v = argv[++i];
		size_t n;

		if (!strcmp(a, "--block-rows")) {
			if (parse_count(v, (size_t)INT_MAX, &j->block_rows))
				return say(j, "--block-rows: '%s' is not a count from 1 to %d", v, INT_MAX);
		} else if (!strcmp(a, "--blas-threads")) {
			if (parse_count(v, 1024, &n))
				return say(j, "--blas-threads: '%s' is not a count from 1 to 1024", v);
			j->blas_threads = (int)n;
		} else if (pm_spec_set(j->spec, a + 2, v)) {
			return say(j, "%s", pm_spec_error(j->spec));
		}
	}
	if (pos < 3)
		return say(j, "usage: patchmap-mpi-apply IMAGE FILTERS.npy OUT.npy --window K "
			      "[options]");
	if (!pm_spec_isset(j->spec, "window"))
		return say(j, "needs --window");
	return 0;
}

/* The rows of this rank: whole blocks of block_rows rows, as evenly as they
 * go, so that every GEMM call is the one `patchmap apply` makes. */
static void my_rows(const struct job *j, size_t rows, size_t *r0, size_t *r1)
{
	size_t nblocks = (rows + j->block_rows - 1) / j->block_rows;
	size_t b0 = nblocks * (size_t)j->rank / (size_t)j->ranks;
	size_t b1 = nblocks * (size_t)(j->rank + 1) / (size_t)j->ranks;

	*r0 = b0 * j->block_rows;
	*r1 = b1 * j->block_rows < rows ? b1 * j->block_rows : rows;
}

static uint64_t vm_hwm(void)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb << 10;
}

static int run(struct job *j)
{
	char err[OUT_ERRLEN > IMG_ERRLEN ? OUT_ERRLEN : IMG_ERRLEN], hdr[512];
	struct img im = { 0 }, fl = { 0 };
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct outfile of;
	pm_matrix *m = NULL;
	MPI_File fh = MPI_FILE_NULL;
	float *C = NULL;
	size_t N, K, r0, r1, hlen, shape[PM_MAX_DIMS + 1];
	bool opened = false, bad;
	int ret = -1, e;
	double t0;

	bad = img_open(j->image, NULL, &im, err) != 0;
	if (any(bad))
		return bad ? say_mine(j, "%s: %s", j->image, err) : -1;
	bad = img_open(j->filters, NULL, &fl, err) != 0;
	if (any(bad)) {
		img_close(&im);
		return bad ? say_mine(j, "%s: %s", j->filters, err) : -1;
	}
	if (pm_spec_matrix(j->spec, &im.src, &o, &info)) {
		say(j, "%s", pm_spec_error(j->spec));
		goto out;
	}
	N = fl.src.shape[0];
	K = fl.src.ndim == 2 ? fl.src.shape[1] : 0;
	if (fl.src.dtype != PM_DTYPE_F32 || fl.src.ndim != 2 || K != info.cols ||
	    fl.src.strides[1] != sizeof(float) || fl.src.strides[0] != (ptrdiff_t)(K * sizeof(float))) {
		say(j, "%s: the filters must be a C-ordered float32 array of shape (N, %zu)",
		    j->filters, info.cols);
		goto out;
	}
	if (info.dtype != PM_DTYPE_F32) {
		say(j, "--dtype: the filter bank runs in float32 here");
		goto out;
	}
	if (N > INT_MAX || info.cols > INT_MAX || info.ld > INT_MAX) {
		say(j, "the problem is too large for BLAS's 32-bit sizes");
		goto out;
	}
	if (!j->block_rows)
		j->block_rows = ((size_t)64 << 20) / (info.ld * sizeof(float)) ?
					((size_t)64 << 20) / (info.ld * sizeof(float)) : 1;
	/* The memory available may differ from host to host: a vote. */
	bad = pm_spec_check_memory(j->spec, &info) != 0;
	if (any(bad)) {
		if (bad)
			say_mine(j, "%s", pm_spec_error(j->spec));
		goto out;
	}
	if ((info.rows + j->block_rows - 1) / j->block_rows < (size_t)j->ranks) {
		size_t nb = (info.rows + j->block_rows - 1) / j->block_rows;

		say(j, "%d ranks for %zu block%s of %zu rows (%zu in all): some ranks would have "
		       "no rows; run fewer ranks or give a smaller --block-rows",
		    j->ranks, nb, nb == 1 ? "" : "s", j->block_rows, info.rows);
		goto out;
	}
	my_rows(j, info.rows, &r0, &r1);

	/* Rank 0 creates the temporary (after refusing an output that is an
	 * input or may not be written); everyone opens it by name. */
	shape[0] = N;
	memcpy(shape + 1, info.out_shape, sizeof(size_t) * (size_t)info.nspatial);
	hlen = npy_write_header(hdr, sizeof(hdr), PM_DTYPE_F32, 1 + info.nspatial, shape, false);
	if (j->rank == 0) {
		struct out_input in[] = { { j->image, "the image" }, { j->filters, "the filters" } };

		bad = out_open(&of, j->out, hlen + (uint64_t)N * info.windows * sizeof(float), in, 2,
			       err) != 0;
		if (!bad && of.direct) {
			out_abort(&of);
			bad = true;
			snprintf(err, sizeof(err), "%s: the output must be a regular file", j->out);
		}
		opened = !bad;
	}
	if (any(bad)) {
		if (j->rank == 0)
			fprintf(stderr, "patchmap-mpi-apply: %s\n", err);
		goto out;
	}
	int tlen = j->rank == 0 ? (int)strlen(of.tmp) + 1 : 0;
	MPI_Bcast(&tlen, 1, MPI_INT, 0, MPI_COMM_WORLD);
	char *tmp = malloc((size_t)tlen);
	if (any(!tmp))
		goto out;
	if (j->rank == 0)
		memcpy(tmp, of.tmp, (size_t)tlen);
	MPI_Bcast(tmp, tlen, MPI_CHAR, 0, MPI_COMM_WORLD);
	e = MPI_File_open(MPI_COMM_WORLD, tmp, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
	free(tmp);
	if (any(e != MPI_SUCCESS)) {
		say(j, "%s: MPI-IO cannot open the output for writing", j->out);
		goto out;
	}
	if (j->rank == 0)
		bad = MPI_File_write_at(fh, 0, hdr, (int)hlen, MPI_CHAR, MPI_STATUS_IGNORE) != MPI_SUCCESS;

	struct pm_rows sel = { .size = sizeof(sel), .kind = PM_ROWS_RANGE, .begin = r0, .end = r1 };
	t0 = MPI_Wtime();
	e = pm_matrix_open_rows(&o, &sel, &m);
	if (e) {
		say_mine(j, "cannot map rows [%zu, %zu) of the patch matrix: %s", r0, r1, pm_strerror(e));
		bad = true;
	}
	C = malloc(N * j->block_rows * sizeof(float));
	if (!bad && !C) {
		say_mine(j, "out of memory for %zu x %zu responses", N, j->block_rows);
		bad = true;
	}
	openblas_set_num_threads(j->blas_threads);
	const float *X = bad ? NULL : pm_matrix_data(m);
	for (size_t r = r0; !bad && r < r1; r += j->block_rows) {
		size_t n = r1 - r < j->block_rows ? r1 - r : j->block_rows;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)n, (int)info.cols,
			    1.0f, fl.src.data, (int)info.cols, X + (r - r0) * info.ld, (int)info.ld,
			    0.0f, C, (int)n);
		for (size_t f = 0; f < N && !bad; f++) {
			MPI_Offset at = (MPI_Offset)(hlen + (f * info.windows + r) * sizeof(float));

			if (MPI_File_write_at(fh, at, C + f * n, (int)n, MPI_FLOAT, MPI_STATUS_IGNORE) !=
			    MPI_SUCCESS)
				bad = say_mine(j, "%s: cannot write", j->out) != 0;
		}
	}
	e = pm_matrix_close(m);
	m = NULL;
	if (e && !bad)
		bad = say_mine(j, "a chunk fill failed: %s", pm_strerror(e)) != 0;
	if (MPI_File_close(&fh) != MPI_SUCCESS)
		bad = true;
	if (any(bad))
		goto out;
	double secs = MPI_Wtime() - t0;
	uint64_t hwm = vm_hwm(), *hwms = j->rank == 0 ? calloc((size_t)j->ranks, 8) : NULL;
	MPI_Gather(&hwm, 1, MPI_UINT64_T, hwms, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	MPI_Reduce(j->rank == 0 ? MPI_IN_PLACE : &secs, &secs, 1, MPI_DOUBLE, MPI_MAX, 0,
		   MPI_COMM_WORLD);
	if (j->rank == 0) {
		opened = false;
		if (out_commit(&of, err)) {
			fprintf(stderr, "patchmap-mpi-apply: %s\n", err);
			free(hwms);
			goto out;
		}
		printf("mpi-apply: %zu filters at every window of %s -> %s: %zu rows in blocks of "
		       "%zu over %d ranks, %.3f s, %.2f GB/s of matrix\n",
		       N, j->image, j->out, info.rows, j->block_rows, j->ranks, secs,
		       (double)info.bytes / secs / 1e9);
		for (int i = 0; hwms && i < j->ranks; i++)
			printf("  rank %d peak RSS %.1f MiB\n", i, (double)hwms[i] / (1 << 20));
		free(hwms);
	}
	ret = 0;
out:
	if (opened && ret)
		out_abort(&of);
	pm_matrix_close(m);
	free(C);
	img_close(&fl);
	img_close(&im);
	return ret;
}

int main(int argc, char **argv)
{
	struct job j = { .blas_threads = 1 };
	int ret = 1;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &j.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &j.ranks);
	if (pm_spec_new(&j.spec)) {
		fprintf(stderr, "patchmap-mpi-apply: out of memory\n");
	} else if (!parse_args(&j, argc, argv) && !run(&j)) {
		ret = 0;
	}
	pm_spec_free(j.spec);
	MPI_Finalize();
	return ret;
}
