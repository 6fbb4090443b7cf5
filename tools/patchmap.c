/* patchmap: the command-line tool. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchmap.h"

static int demo(void)
{
	enum { H = 512, W = 512, K = 16 };
	static uint8_t img[H][W];
	struct pm_matrix_opts o = { .size = sizeof(o), .dtype = PM_DTYPE_F32 };
	struct pm_stats st;
	pm_matrix *m;
	size_t shape[2] = { H, W };
	double sum = 0;
	int err;

	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++)
			img[y][x] = (uint8_t)((x * 7 + y * 13) ^ (x * y));
	pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, shape);
	for (int a = 0; a < 2; a++)
		o.window[a] = (struct pm_window){ .size = K, .step = 1, .dilation = 1 };
	err = pm_matrix_open(&o, &m);
	if (err) {
		fprintf(stderr, "patchmap: %s\n", pm_strerror(err));
		return 1;
	}
	const float *x = pm_matrix_data(m);
	for (size_t i = 0; i < pm_matrix_rows(m) * pm_matrix_ld(m); i++)
		sum += x[i];
	pm_matrix_stats(m, &st);
	printf("matrix %zu x %zu float32 (%.1f MiB), backend %s, checksum %.0f, faults %" PRIu64 "\n",
	       pm_matrix_rows(m), pm_matrix_cols(m), pm_matrix_bytes(m) / 1048576.0,
	       pm_backend_name(st.backend), sum, st.faults);
	return pm_matrix_close(m) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "demo"))
		return demo();
	fprintf(stderr, "usage: patchmap demo\n");
	return 2;
}
