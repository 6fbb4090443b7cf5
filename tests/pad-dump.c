/* pad-dump.c: prints the patch matrix of a small float64 array, as the
 * library and as the reference build it, for test-pad-numpy.py to compare
 * with numpy.pad + sliding_window_view. One case per input line:
 *   MODE 1 N PB PA K STEP DIL
 *   MODE 2 H W C PB0 PA0 PB1 PA1 K0 K1 STEP0 STEP1 DIL0 DIL1 ORDER
 * (MODE: zero constant edge reflect symmetric wrap; ORDER: window channel;
 * the constant is -7.5). Sample i, in C order, is 1 + 1.25 * i. Prints
 * "lib ROWS COLS v..." and "ref ROWS COLS v..." per case.
 * A dtype case, for numpy's astype, is one line
 *   T SRC OUT MODE PAD_VALUE PB PA K AFFINE SCALE OFFSET HEX
 * (SRC, OUT: numpy dtype names, OUT also "same"; HEX: the 1-D source's
 * bytes, native order) and prints "lib|read|ref ROWS COLS HEX" of the
 * matrix bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchmap.h"
#include "ref.h"

static const char *const modes[] = { "zero", "constant", "edge", "reflect", "symmetric", "wrap" };

static void print(const char *who, const double *v, size_t rows, size_t cols)
{
	printf("%s %zu %zu", who, rows, cols);
	for (size_t i = 0; i < rows * cols; i++)
		printf(" %.17g", v[i]);
	putchar('\n');
}

static void print_hex(const char *who, const void *v, size_t rows, size_t cols, size_t bytes)
{
	const unsigned char *b = v;

	printf("%s %zu %zu ", who, rows, cols);
	for (size_t i = 0; i < bytes; i++)
		printf("%02x", b[i]);
	putchar('\n');
}

static int dtype_named(const char *name)
{
	if (!strcmp(name, "same"))
		return PM_DTYPE_SAME;
	for (int d = 1; d < PM_DTYPE_COUNT; d++)
		if (!strcmp(name, pm_dtype_name(d)))
			return d;
	return -1;
}

static int one_dtype(char *line)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	char src[16], out[16], mode[16], *hex;
	long long pb, pa;
	size_t k, n, es;
	int affine, consumed = 0, ret;
	unsigned char *x, *got;
	struct ref_matrix r;
	pm_matrix *m;

	if (sscanf(line, "T %15s %15s %15s %lf %lld %lld %zu %d %lf %lf %n", src, out, mode,
		   &o.pad_value, &pb, &pa, &k, &affine, &o.scale, &o.offset, &consumed) != 10 ||
	    !consumed)
		return -1;
	o.source.dtype = dtype_named(src);
	o.dtype = dtype_named(out);
	o.pad_mode = -1;
	for (int i = 0; i < PM_PAD_COUNT; i++)
		if (!strcmp(mode, modes[i]))
			o.pad_mode = i;
	if (o.source.dtype <= 0 || o.dtype < 0 || o.pad_mode < 0)
		return -1;
	o.affine = affine != 0;
	hex = line + consumed;
	es = pm_dtype_size(o.source.dtype);
	n = strlen(hex) / 2 / es;
	x = malloc(n * es + 1);
	if (!x)
		return -1;
	for (size_t i = 0; i < n * es; i++) {
		unsigned v;

		sscanf(hex + 2 * i, "%2x", &v);
		x[i] = (unsigned char)v;
	}
	ret = pm_source_contiguous(&o.source, x, o.source.dtype, 1, &n);
	o.window[0] = (struct pm_window){ k, 1, 1, pb, pa };
	for (int pass = 0; pass < 2 && !ret; pass++) {
		o.lazy.backend = pass ? PM_BACKEND_NONE : PM_BACKEND_EAGER;
		if ((ret = pm_matrix_open(&o, &m)))
			break;
		if (pass) {
			got = malloc(pm_matrix_bytes(m) + 1);
			if (got && pm_matrix_read(m, 0, got, pm_matrix_bytes(m)) == 0)
				print_hex("read", got, pm_matrix_rows(m), pm_matrix_cols(m),
					  pm_matrix_bytes(m));
			free(got);
		} else {
			print_hex("lib", pm_matrix_data(m), pm_matrix_rows(m), pm_matrix_cols(m),
				  pm_matrix_bytes(m));
		}
		pm_matrix_close(m);
	}
	if (ret) {
		fprintf(stderr, "pad-dump: %s: %s\n", line, pm_strerror(ret));
		free(x);
		return -1;
	}
	if (ref_im2col(&o, &r)) {
		free(x);
		return -1;
	}
	print_hex("ref", r.data, r.rows, r.cols, r.rows * r.pitch);
	ref_free(&r);
	free(x);
	return 0;
}

static int one(char *line)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	char mode[32], order[32] = "window";
	size_t shape[3], k[2], st[2], di[2], total;
	long long pb[2], pa[2];
	int nd, ret, nw;
	struct ref_matrix r;
	double *x, *got;
	pm_matrix *m;

	if (line[0] == 'T' && line[1] == ' ')
		return one_dtype(line);
	if (sscanf(line, "%31s %d", mode, &nd) != 2)
		return -1;
	if (nd == 1) {
		if (sscanf(line, "%*s %*d %zu %lld %lld %zu %zu %zu", &shape[0], &pb[0], &pa[0], &k[0],
			   &st[0], &di[0]) != 6)
			return -1;
		nw = 1;
	} else {
		if (sscanf(line, "%*s %*d %zu %zu %zu %lld %lld %lld %lld %zu %zu %zu %zu %zu %zu %31s",
			   &shape[0], &shape[1], &shape[2], &pb[0], &pa[0], &pb[1], &pa[1], &k[0], &k[1],
			   &st[0], &st[1], &di[0], &di[1], order) != 14)
			return -1;
		nw = 2;
		nd = 3;
	}
	o.pad_mode = -1;
	for (int i = 0; i < PM_PAD_COUNT; i++)
		if (!strcmp(mode, modes[i]))
			o.pad_mode = i;
	o.pad_value = -7.5;
	o.order = strcmp(order, "channel") ? PM_ORDER_WINDOW : PM_ORDER_CHANNEL;
	total = 1;
	for (int i = 0; i < nd; i++)
		total *= shape[i];
	x = malloc(total * sizeof(*x));
	if (!x)
		return -1;
	for (size_t i = 0; i < total; i++)
		x[i] = 1 + 1.25 * (double)i;
	ret = pm_source_contiguous(&o.source, x, PM_DTYPE_F64, nd, shape);
	o.source.has_channels = nd == 3;
	o.source.channel_axis = 2;
	for (int a = 0; a < nw; a++)
		o.window[a] = (struct pm_window){ k[a], st[a], di[a], pb[a], pa[a] };
	o.lazy.backend = PM_BACKEND_EAGER;
	if (ret || (ret = pm_matrix_open(&o, &m))) {
		fprintf(stderr, "pad-dump: %s: %s\n", line, pm_strerror(ret));
		free(x);
		return -1;
	}
	print("lib", pm_matrix_data(m), pm_matrix_rows(m), pm_matrix_cols(m));
	pm_matrix_close(m);
	/* And once more through pm_matrix_read, with no mapping at all. */
	o.lazy.backend = PM_BACKEND_NONE;
	if ((ret = pm_matrix_open(&o, &m)) == 0) {
		got = malloc(pm_matrix_bytes(m) + 1);
		if (got && pm_matrix_read(m, 0, got, pm_matrix_bytes(m)) == 0)
			print("read", got, pm_matrix_rows(m), pm_matrix_cols(m));
		free(got);
		pm_matrix_close(m);
	}
	if (ref_im2col(&o, &r)) {
		free(x);
		return -1;
	}
	print("ref", (const double *)r.data, r.rows, r.cols);
	ref_free(&r);
	free(x);
	return 0;
}

int main(void)
{
	static char line[1 << 20];
	int status = 0;

	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (*line && one(line)) {
			fprintf(stderr, "pad-dump: bad case: %s\n", line);
			status = 1;
		}
	}
	return status;
}
