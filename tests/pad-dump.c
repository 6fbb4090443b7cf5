/* pad-dump.c: prints the patch matrix of a small float64 array, as the
 * library and as the reference build it, for test-pad-numpy.py to compare
 * with numpy.pad + sliding_window_view. One case per input line:
 *   MODE 1 N PB PA K STEP DIL
 *   MODE 2 H W C PB0 PA0 PB1 PA1 K0 K1 STEP0 STEP1 DIL0 DIL1 ORDER
 * (MODE: zero constant edge reflect symmetric wrap; ORDER: window channel;
 * the constant is -7.5). Sample i, in C order, is 1 + 1.25 * i. Prints
 * "lib ROWS COLS v..." and "ref ROWS COLS v..." per case. */
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
	char line[512];
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
