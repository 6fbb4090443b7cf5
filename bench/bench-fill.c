/* bench-fill.c: the fill kernels alone. Produces the patch matrix with
 * pm_matrix_read() into one reused, resident chunk-sized buffer, as a lazy
 * fill into a recycled pool slot does, and compares the rate with memcpy of
 * the same byte count (from a source far larger than the caches into the
 * same buffer) and with a plain im2col loop, all measured in this run. */
#include "bench.h"

struct fill_case {
	const char *name;
	int src_dtype;   /* of the image */
	int channels;    /* 0: a 2-D image; else side x side x channels */
	int out_dtype;
	size_t k;        /* window side (0: the --window value) */
	size_t dilation;
	int64_t pad_before, pad_after;
	int pad_mode;
	int order, layout;
	bool affine;
	int naive;       /* compare with the plain loop: 1 for u8, 2 for f32 */
};

static const struct fill_case cases[] = {
	{ "u8->f32", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 1, 0, 0, 0, 0, 0, false, 1 },
	{ "f32->f32", PM_DTYPE_F32, 0, PM_DTYPE_F32, 0, 1, 0, 0, 0, 0, 0, false, 2 },
	{ "u8->f64", PM_DTYPE_U8, 0, PM_DTYPE_F64, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->u8", PM_DTYPE_U8, 0, PM_DTYPE_SAME, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->f32 affine", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 1, 0, 0, 0, 0, 0, true, 0 },
	{ "u8 HxWx3->f32 (y,x,c)", PM_DTYPE_U8, 3, PM_DTYPE_F32, 0, 1, 0, 0, 0, PM_ORDER_WINDOW, 0,
	  false, 0 },
	{ "u8 HxWx3->f32 (c,y,x)", PM_DTYPE_U8, 3, PM_DTYPE_F32, 0, 1, 0, 0, 0, PM_ORDER_CHANNEL, 0,
	  false, 0 },
	{ "u8->f32 zero pad same", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 1, -1, -1, PM_PAD_ZERO, 0, 0,
	  false, 0 },
	{ "u8->f32 reflect pad same", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 1, -1, -1, PM_PAD_REFLECT, 0,
	  0, false, 0 },
	{ "u8->f32 transposed", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 1, 0, 0, 0, 0, PM_LAYOUT_COLS,
	  false, 0 },
	{ "u8->f32 dilation 2", PM_DTYPE_U8, 0, PM_DTYPE_F32, 0, 2, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->f32 3x3", PM_DTYPE_U8, 0, PM_DTYPE_F32, 3, 1, 0, 0, 0, 0, 0, false, 0 },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static size_t side = 4096, window = 16, buf_bytes = 2 * B_MIB, src_mib = 1024;
static double max_gb = 4;
static int reps = 3;
static const char *only;

static void usage(const char *prog)
{
	printf("usage: %s [options]\n"
	       "  --side N         image side (default 4096)\n"
	       "  --window K       window side of the main cases (default 16)\n"
	       "  --max-gb G       matrix bytes produced per case and repetition, at most\n"
	       "                   (default 4; the whole matrix if smaller)\n"
	       "  --reps N         repetitions, the median is reported (default 3)\n"
	       "  --src-mib M      memcpy source size (default 1024, far above the caches)\n"
	       "  --case TEXT      run only the cases whose name contains TEXT\n"
	       "  --chunk KIB      the destination buffer (default 2048, one chunk)\n",
	       prog);
}

/* ------------------------------------------------------------ naive */

/* The plain im2col loop: k x k windows, step 1, row-major windows, columns
 * (dy, dx), written the obvious way. Fills `rows` rows from row r0. */
static void naive_u8(float *d, const uint8_t *img, size_t w, size_t k, size_t r0, size_t rows)
{
	size_t ow = w - k + 1;

	for (size_t r = r0; r < r0 + rows; r++) {
		const uint8_t *s = img + (r / ow) * w + r % ow;

		for (size_t dy = 0; dy < k; dy++)
			for (size_t dx = 0; dx < k; dx++)
				*d++ = (float)s[dy * w + dx];
	}
}

static void naive_f32(float *d, const float *img, size_t w, size_t k, size_t r0, size_t rows)
{
	size_t ow = w - k + 1;

	for (size_t r = r0; r < r0 + rows; r++) {
		const float *s = img + (r / ow) * w + r % ow;

		for (size_t dy = 0; dy < k; dy++)
			for (size_t dx = 0; dx < k; dx++)
				*d++ = s[dy * w + dx];
	}
}

/* ------------------------------------------------------------ runs */

static volatile uint64_t sink;

/* memcpy of `total` bytes into buf, chunk by chunk, from a source that
 * cycles through `src` (src_bytes). GB/s. */
static double run_memcpy(char *buf, const char *src, size_t src_bytes, size_t total)
{
	size_t off = 0;
	double t0 = b_now();

	for (size_t done = 0; done < total; done += buf_bytes) {
		size_t n = total - done < buf_bytes ? total - done : buf_bytes;

		if (off + n > src_bytes)
			off = 0;
		memcpy(buf, src + off, n);
		off += n;
		sink += (unsigned char)buf[n - 1];
	}
	return (double)total / (b_now() - t0) / 1e9;
}

static double run_lib(const pm_matrix *m, char *buf, size_t total)
{
	double t0 = b_now();

	for (size_t off = 0; off < total; off += buf_bytes) {
		size_t n = total - off < buf_bytes ? total - off : buf_bytes;

		b_check(pm_matrix_read(m, off, buf, n), "pm_matrix_read");
		sink += (unsigned char)buf[n - 1];
	}
	return (double)total / (b_now() - t0) / 1e9;
}

/* The naive loop over whole rows, as many per buffer as fit. */
static double run_naive(int kind, const void *img, size_t k, char *buf, size_t total)
{
	size_t row_bytes = k * k * sizeof(float), per = buf_bytes / row_bytes, r = 0;
	double t0 = b_now();

	for (size_t done = 0; done < total; done += per * row_bytes, r += per) {
		if (kind == 1)
			naive_u8((float *)buf, img, side, k, r, per);
		else
			naive_f32((float *)buf, img, side, k, r, per);
		sink += (unsigned char)buf[per * row_bytes - 1];
	}
	return (double)(r * row_bytes) / (b_now() - t0) / 1e9;
}

/* The library's bytes equal the naive loop's on a few buffers spread over
 * the range: a benchmark of wrong output measures nothing. */
static void check_naive(int kind, const pm_matrix *m, const void *img, size_t k, size_t total)
{
	size_t row_bytes = k * k * sizeof(float), per = buf_bytes / row_bytes;
	size_t n = per * row_bytes, bufs = total / n;
	char *a = b_alloc_resident(n), *b = b_alloc_resident(n);

	for (size_t i = 0; i < 4 && bufs; i++) {
		size_t which = i * (bufs - 1) / 3;

		b_check(pm_matrix_read(m, which * n, a, n), "pm_matrix_read");
		if (kind == 1)
			naive_u8((float *)b, img, side, k, which * per, per);
		else
			naive_f32((float *)b, img, side, k, which * per, per);
		if (memcmp(a, b, n))
			b_die(1, "the library's matrix differs from the plain im2col loop at byte %zu",
			      which * n);
	}
	free(a);
	free(b);
}

static void opts_for(struct pm_matrix_opts *o, const struct fill_case *c, const void *img)
{
	size_t k = c->k ? c->k : window;

	if (c->channels) {
		size_t shape[3] = { side, side, (size_t)c->channels };

		b_opts_2d(o, img, c->src_dtype, side, k); /* windows and dtype */
		b_check(pm_source_contiguous(&o->source, img, c->src_dtype, 3, shape),
			"pm_source_contiguous");
		o->source.has_channels = true;
		o->source.channel_axis = 2;
	} else {
		b_opts_2d(o, img, c->src_dtype, side, k);
	}
	o->dtype = c->out_dtype;
	o->order = c->order;
	o->layout = c->layout;
	o->pad_mode = c->pad_mode;
	o->affine = c->affine;
	o->scale = 1.0 / 255;
	o->offset = -0.5;
	for (int a = 0; a < 2; a++) {
		size_t span = (k - 1) * c->dilation;

		o->window[a].dilation = c->dilation;
		/* "same": as many outputs as inputs */
		o->window[a].pad_before = c->pad_before < 0 ? (int64_t)(span / 2) : c->pad_before;
		o->window[a].pad_after = c->pad_after < 0 ? (int64_t)(span - span / 2) : c->pad_after;
	}
	/* No mapping at all: pm_matrix_read() alone. */
	o->lazy.backend = PM_BACKEND_NONE;
}

int main(int argc, char **argv)
{
	struct b_lazy lz;
	uint8_t *img8;
	float *img32;
	char *buf, *src;
	size_t src_bytes;
	double target_ratio = -1;

	b_lazy_init(&lz);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (b_lazy_arg(&lz, argc, argv, &i))
			continue;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(argv[0]);
			return 0;
		}
		if (!v)
			b_die(2, "unknown option or missing value: %s (see --help)", a);
		i++;
		if (!strcmp(a, "--side"))
			side = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--window"))
			window = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--max-gb"))
			max_gb = strtod(v, NULL);
		else if (!strcmp(a, "--reps"))
			reps = (int)b_parse_long(v, a);
		else if (!strcmp(a, "--src-mib"))
			src_mib = (size_t)b_parse_long(v, a);
		else if (!strcmp(a, "--case"))
			only = v;
		else
			b_die(2, "unknown option: %s (see --help)", a);
	}
	if (lz.lazy.chunk)
		buf_bytes = lz.lazy.chunk;
	if (side < 16 || window < 1 || window > side || reps < 1 || max_gb <= 0 || src_mib < 1 ||
	    buf_bytes < 4096 || buf_bytes % 4096 || window * window * sizeof(double) > buf_bytes)
		b_die(2, "bad sizes (see --help)");

	b_print_header(argc, argv);
	img8 = b_alloc_resident(side * side * 3);
	b_image_u8(img8, side * side * 3);
	img32 = b_alloc_resident(side * side * sizeof(float));
	for (size_t i = 0; i < side * side; i++)
		img32[i] = (float)img8[i] * 0.25f - 3.0f;
	buf = b_alloc_resident(buf_bytes);
	src_bytes = src_mib * B_MIB;
	src = b_alloc_resident(src_bytes);
	memset(src, 0x5a, src_bytes);

	size_t total_max = (size_t)(max_gb * 1e9) / buf_bytes * buf_bytes;
	double v[64], mv[64], nv[64];

	if (reps > 64)
		reps = 64;
	printf("image %zux%zu, %zu KiB destination buffer, up to %.1f GB per case, median of %d;\n"
	       "memcpy: the same byte count from a %zu MiB source into the same buffer, measured\n"
	       "alternately with each case (the machine's bandwidth drifts)\n\n",
	       side, side, buf_bytes >> 10, (double)total_max / 1e9, reps, src_mib);
	printf("%-30s %9s %7s %7s %8s %7s %7s\n", "case (window)", "matrix GB", "GB/s", "memcpy",
	       "x memcpy", "naive", "x naive");

	for (size_t ci = 0; ci < NCASES; ci++) {
		const struct fill_case *c = &cases[ci];
		size_t k = c->k ? c->k : window, total;
		const void *img = c->src_dtype == PM_DTYPE_F32 ? (void *)img32 : (void *)img8;
		struct pm_matrix_opts o;
		pm_matrix *m;
		double lib, mc, naive = 0;
		char name[64];

		if (only && !strstr(c->name, only))
			continue;
		opts_for(&o, c, img);
		b_check(pm_matrix_open(&o, &m), c->name);
		total = pm_matrix_bytes(m) < total_max ? pm_matrix_bytes(m) : total_max;
		if (c->naive)
			check_naive(c->naive, m, img, k, total);
		for (int r = 0; r < reps; r++) {
			mv[r] = run_memcpy(buf, src, src_bytes, total);
			v[r] = run_lib(m, buf, total);
			if (c->naive)
				nv[r] = run_naive(c->naive, img, k, buf, total);
		}
		lib = b_median(v, reps);
		mc = b_median(mv, reps);
		snprintf(name, sizeof(name), "%s %zux%zu", c->name, k, k);
		printf("%-30s %9.2f %7.2f %7.2f %8.2f", name, (double)pm_matrix_bytes(m) / 1e9, lib,
		       mc, lib / mc);
		if (c->naive) {
			naive = b_median(nv, reps);
			printf(" %7.2f %7.2f", naive, lib / naive);
		}
		printf("\n");
		if (ci == 0)
			target_ratio = lib / mc;
		pm_matrix_close(m);
	}
	if (target_ratio >= 0)
		printf("\ntarget: u8->f32 %zux%zu >= 0.5x memcpy on one core: %.2fx, %s\n", window,
		       window, target_ratio, target_ratio >= 0.5 ? "met" : "missed");
	b_print_footer();
	free(src);
	free(buf);
	free(img32);
	free(img8);
	return 0;
}
