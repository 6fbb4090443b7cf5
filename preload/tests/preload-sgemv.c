/* preload-sgemv.c: an ordinary BLAS program under the shim. It knows
 * nothing of libpatchmap (it links OpenBLAS only): it writes a raw uint8
 * image and a descriptor for its float32 K x K patch matrix, maps the
 * descriptor, runs cblas_sgemv on the mapping and checks the responses
 * against a naive loop over the image itself. Integer weights keep every
 * sum exact in float32, so the comparison is exact.
 *
 *   preload-sgemv DIR H W K BUDGET STRIDE
 *
 * checks every STRIDE-th response (1: all) and prints the process's peak
 * RSS ("peak_rss_kib N") for the caller to judge. Exit 0 pass, 1 fail. */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static long status_kib(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static int fail(const char *what)
{
	fprintf(stderr, "preload-sgemv: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	char path[4096], desc[4096];
	size_t h, w, k, oh, ow, rows, cols, stride, bad = 0, checked = 0;
	unsigned char *img;
	float *v, *y;
	const float *x;
	struct stat st;
	FILE *f;
	int fd;

	if (argc != 7) {
		fprintf(stderr, "usage: preload-sgemv DIR H W K BUDGET STRIDE\n");
		return 2;
	}
	h = strtoul(argv[2], NULL, 10);
	w = strtoul(argv[3], NULL, 10);
	k = strtoul(argv[4], NULL, 10);
	stride = strtoul(argv[6], NULL, 10);
	if (!h || !w || !k || k > h || k > w || !stride)
		return 2;
	oh = h - k + 1;
	ow = w - k + 1;
	rows = oh * ow;
	cols = k * k;

	/* the image, and a descriptor for its patch matrix */
	img = malloc(h * w);
	if (!img)
		return fail("malloc");
	for (size_t i = 0; i < h * w; i++)
		img[i] = (unsigned char)((i * 2654435761u) >> 24 ^ i / w);
	snprintf(path, sizeof(path), "%s/sgemv.u8", argv[1]);
	f = fopen(path, "wb");
	if (!f || fwrite(img, 1, h * w, f) != h * w || fclose(f))
		return fail(path);
	snprintf(desc, sizeof(desc), "%s/sgemv.patchmap", argv[1]);
	/* under the shim an existing descriptor is a read-only file: replace it */
	unlink(desc);
	f = fopen(desc, "w");
	if (!f || fprintf(f, "# %zu x %zu uint8, %zu x %zu windows, float32\n"
			     "source = sgemv.u8\nshape = %zux%zu\nraw_dtype = uint8\nwindow = %zu\n"
			     "dtype = float32\nbudget = %s\n",
			  h, w, k, k, h, w, k, argv[5]) < 0 ||
	    fclose(f))
		return fail(desc);

	/* an ordinary program from here: open, fstat, mmap */
	fd = open(desc, O_RDONLY);
	if (fd < 0)
		return fail("open");
	if (fstat(fd, &st))
		return fail("fstat");
	if ((size_t)st.st_size != rows * cols * sizeof(float)) {
		fprintf(stderr, "preload-sgemv: %s has %lld bytes, want %zu (is the shim loaded?)\n", desc,
			(long long)st.st_size, rows * cols * sizeof(float));
		return 1;
	}
	x = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (x == MAP_FAILED)
		return fail("mmap");
	close(fd);

	v = malloc(cols * sizeof(float));
	y = malloc(rows * sizeof(float));
	if (!v || !y)
		return fail("malloc");
	for (size_t c = 0; c < cols; c++)
		v[c] = (float)((int)(c * 5 % 7) - 3);
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, x, (int)cols, v, 1, 0.0f, y, 1);

	/* the naive loop, over the image itself */
	for (size_t r = 0; r < rows; r += stride) {
		size_t i = r / ow, j = r % ow;
		int64_t sum = 0;

		for (size_t a = 0; a < k; a++)
			for (size_t b = 0; b < k; b++)
				sum += (int64_t)img[(i + a) * w + j + b] * (int64_t)v[a * k + b];
		bad += (double)y[r] != (double)sum;
		checked++;
	}
	if (munmap((void *)x, (size_t)st.st_size))
		return fail("munmap");
	printf("rows %zu cols %zu checked %zu wrong %zu\npeak_rss_kib %ld\n", rows, cols, checked, bad,
	       status_kib("VmHWM"));
	free(img);
	free(v);
	free(y);
	return bad ? 1 : 0;
}
