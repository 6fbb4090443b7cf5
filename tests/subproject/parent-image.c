/* parent-image.c: a program of a parent project built against
 * libpatchmap-image as a subproject. Opens the 6 x 4 PGM it is given
 * (sample y * 4 + x + 10 at (y, x)) through libvips and checks every pixel
 * and the 2 x 2 patch matrix over it against the file's own bytes. */
#include <patchmap-image.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct pm_matrix_opts o = { .size = sizeof(o), .dtype = PM_DTYPE_F32 };
	char msg[256];
	pm_image *im;
	pm_matrix *m;
	int err, bad = 0;

	if (argc != 2)
		return 2;
	if ((err = pm_image_open(argv[1], NULL, &im, msg, sizeof(msg)))) {
		fprintf(stderr, "parent-image: %s: %s\n", pm_image_strerror(err), msg);
		return 1;
	}
	const struct pm_source *src = pm_image_source(im);
	const uint8_t *px = src->data;

	if (src->dtype != PM_DTYPE_U8 || src->ndim != 2 || src->shape[0] != 6 || src->shape[1] != 4) {
		fprintf(stderr, "parent-image: unexpected source\n");
		pm_image_close(im);
		return 1;
	}
	for (int i = 0; i < 24; i++)
		bad += px[i] != i + 10;
	o.source = *src;
	o.window[0] = o.window[1] = (struct pm_window){ .size = 2, .step = 1, .dilation = 1 };
	if ((err = pm_matrix_open(&o, &m))) {
		fprintf(stderr, "parent-image: %s\n", pm_image_strerror(err));
		pm_image_close(im);
		return 1;
	}
	const float *X = pm_matrix_data(m);
	size_t ld = pm_matrix_ld(m), r = 0;

	for (int wy = 0; wy < 5; wy++)
		for (int wx = 0; wx < 3; wx++, r++)
			for (int k = 0; k < 4; k++)
				bad += X[r * ld + (size_t)k] != (wy + k / 2) * 4 + wx + k % 2 + 10;
	printf("libpatchmap-image: %zu x %zu matrix of a 6 x 4 PGM, %d wrong\n", pm_matrix_rows(m),
	       pm_matrix_cols(m), bad);
	bad += r != pm_matrix_rows(m);
	err = pm_matrix_close(m);
	return pm_image_close(im) || err || bad ? 1 : 0;
}
