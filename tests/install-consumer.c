/* install-consumer.c: a program built the way a user builds one, against an
 * installed libpatchmap found with pkg-config (test-install.sh). It opens a
 * small matrix and prints a checksum of it three ways: through the mapping,
 * through pm_matrix_read, and from its own naive im2col; plus the version
 * and the path the library was loaded from. */
#include <patchmap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H 7
#define W 6
#define C 2
#define KH 3
#define KW 2

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* numpy's "reflect": the edge sample is not repeated. */
static int reflect(int p, int n)
{
	while (p < 0 || p >= n)
		p = p < 0 ? -p : 2 * (n - 1) - p;
	return p;
}

static void library_path(char *out, size_t n)
{
	char line[1024];
	FILE *f = fopen("/proc/self/maps", "r");

	snprintf(out, n, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');

		if (p && strstr(p, "libpatchmap.so")) {
			p[strcspn(p, "\n")] = 0;
			snprintf(out, n, "%s", p);
			break;
		}
	}
	fclose(f);
}

int main(void)
{
	static uint8_t img[H][W][C];
	const size_t shape[3] = { H, W, C };
	struct pm_matrix_opts o = { .size = sizeof(o) };
	uint64_t h_map, h_read, h_own = 0xcbf29ce484222325ull;
	size_t rows = 0;
	char path[1024];
	pm_matrix *m;
	float *buf;
	int err;

	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++)
			for (int c = 0; c < C; c++)
				img[y][x][c] = (uint8_t)((y * 31 + x * 7 + c * 101 + 11) & 0xff);
	err = pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 3, shape);
	if (err) {
		fprintf(stderr, "pm_source_contiguous: %s\n", pm_strerror(err));
		return 1;
	}
	o.source.has_channels = true;
	o.source.channel_axis = 2;
	o.window[0] = (struct pm_window){ .size = KH, .step = 2, .dilation = 1, .pad_before = 1, .pad_after = 1 };
	o.window[1] = (struct pm_window){ .size = KW, .step = 1, .dilation = 2, .pad_before = 0, .pad_after = 2 };
	o.pad_mode = PM_PAD_REFLECT;
	o.dtype = PM_DTYPE_F32;
	o.affine = true;
	o.scale = 0.5;
	o.offset = -3;
	err = pm_matrix_open(&o, &m);
	if (err) {
		fprintf(stderr, "pm_matrix_open: %s\n", pm_strerror(err));
		return 1;
	}
	h_map = fnv(0xcbf29ce484222325ull, pm_matrix_data(m), pm_matrix_bytes(m));
	buf = malloc(pm_matrix_bytes(m));
	if (!buf || pm_matrix_read(m, 0, buf, pm_matrix_bytes(m))) {
		fprintf(stderr, "pm_matrix_read failed\n");
		return 1;
	}
	h_read = fnv(0xcbf29ce484222325ull, buf, pm_matrix_bytes(m));
	free(buf);

	/* The same matrix, by hand: windows in row-major order, columns
	 * (y, x, c), values x * 0.5 - 3 in float. */
	for (int wy = -1; wy + KH - 1 <= H; wy += 2)
		for (int wx = 0; wx + (KW - 1) * 2 <= W + 1; wx++, rows++)
			for (int ky = 0; ky < KH; ky++)
				for (int kx = 0; kx < KW; kx++)
					for (int c = 0; c < C; c++) {
						int sy = reflect(wy + ky, H), sx = reflect(wx + kx * 2, W);
						float v = (float)img[sy][sx][c] * 0.5f + -3.0f;

						h_own = fnv(h_own, &v, sizeof(v));
					}
	library_path(path, sizeof(path));
	printf("version %s\n", pm_version());
	printf("shape %zu %zu %zu\n", pm_matrix_rows(m), pm_matrix_cols(m), rows);
	printf("map %016llx\n", (unsigned long long)h_map);
	printf("read %016llx\n", (unsigned long long)h_read);
	printf("own %016llx\n", (unsigned long long)h_own);
	printf("library %s\n", path);
	return pm_matrix_close(m) ? 1 : 0;
}
