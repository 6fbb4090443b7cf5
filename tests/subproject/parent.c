/* parent.c: a program of a parent project built against libpatchmap as a
 * subproject. Checks the patch matrix of a 4 x 5 image with 2 x 3 windows
 * against a naive loop and prints the library's version. */
#include <patchmap.h>
#include <stdio.h>

int main(void)
{
	uint8_t img[4][5];
	struct pm_matrix_opts o = { .size = sizeof(o), .dtype = PM_DTYPE_F32 };
	pm_matrix *m;
	int err, bad = 0;

	for (int y = 0; y < 4; y++)
		for (int x = 0; x < 5; x++)
			img[y][x] = (uint8_t)(7 * y + 3 * x + 1);
	pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, (size_t[]){ 4, 5 });
	o.window[0] = (struct pm_window){ .size = 2, .step = 1, .dilation = 1 };
	o.window[1] = (struct pm_window){ .size = 3, .step = 1, .dilation = 1 };
	if ((err = pm_matrix_open(&o, &m))) {
		fprintf(stderr, "parent: %s\n", pm_strerror(err));
		return 1;
	}
	const float *X = pm_matrix_data(m);
	size_t ld = pm_matrix_ld(m), r = 0;

	for (int wy = 0; wy < 3; wy++)
		for (int wx = 0; wx < 3; wx++, r++)
			for (int ky = 0; ky < 2; ky++)
				for (int kx = 0; kx < 3; kx++)
					bad += X[r * ld + (size_t)(ky * 3 + kx)] != img[wy + ky][wx + kx];
	size_t rows = pm_matrix_rows(m);

	printf("libpatchmap %s: %zu x %zu matrix, %d wrong\n", pm_version(), rows, pm_matrix_cols(m),
	       bad);
	err = pm_matrix_close(m);
	return bad || err || r != rows ? 1 : 0;
}
