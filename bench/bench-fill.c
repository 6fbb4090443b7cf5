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
	int64_t pad_before, pad_after; /* -1: "same" */
	int pad_mode;
	int order, layout;
	bool affine;
	size_t step;     /* 0: 1 */
};

#define U8 PM_DTYPE_U8
#define F32 PM_DTYPE_F32
#define WIN PM_ORDER_WINDOW
#define CHAN PM_ORDER_CHANNEL
#define SMALL(K)                                                                            \
	{ "u8->f32 " #K "x" #K, U8, 0, F32, K, 1, 0, 0, 0, 0, 0, false, 0 },                 \
	{ "f32->f32 " #K "x" #K, F32, 0, F32, K, 1, 0, 0, 0, 0, 0, false, 0 },               \
	{ "u8 x3->f32 (y,x,c) " #K "x" #K, U8, 3, F32, K, 1, 0, 0, 0, WIN, 0, false, 0 },    \
	{ "u8 x3->f32 (c,y,x) " #K "x" #K, U8, 3, F32, K, 1, 0, 0, 0, CHAN, 0, false, 0 },   \
	{ "f32 x3->f32 (y,x,c) " #K "x" #K, F32, 3, F32, K, 1, 0, 0, 0, WIN, 0, false, 0 },  \
	{ "f32 x3->f32 (c,y,x) " #K "x" #K, F32, 3, F32, K, 1, 0, 0, 0, CHAN, 0, false, 0 },

#define SMALL_MORE(K)                                                                       \
	{ "u8->f32 dilation 2 " #K "x" #K, U8, 0, F32, K, 2, 0, 0, 0, 0, 0, false, 0 },      \
	{ "u8->u8 " #K "x" #K, U8, 0, PM_DTYPE_SAME, K, 1, 0, 0, 0, 0, 0, false, 0 },        \
	{ "u8->f32 step 2 " #K "x" #K, U8, 0, F32, K, 1, 0, 0, 0, 0, 0, false, 2 },

static const struct fill_case cases[] = {
	{ "u8->f32", U8, 0, F32, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "f32->f32", F32, 0, F32, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->f64", U8, 0, PM_DTYPE_F64, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->u8", U8, 0, PM_DTYPE_SAME, 0, 1, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->f32 affine", U8, 0, F32, 0, 1, 0, 0, 0, 0, 0, true, 0 },
	{ "u8 x3->f32 (y,x,c)", U8, 3, F32, 0, 1, 0, 0, 0, WIN, 0, false, 0 },
	{ "u8 x3->f32 (c,y,x)", U8, 3, F32, 0, 1, 0, 0, 0, CHAN, 0, false, 0 },
	{ "u8->f32 zero pad same", U8, 0, F32, 0, 1, -1, -1, PM_PAD_ZERO, 0, 0, false, 0 },
	{ "u8->f32 reflect pad same", U8, 0, F32, 0, 1, -1, -1, PM_PAD_REFLECT, 0, 0, false, 0 },
	{ "u8->f32 transposed", U8, 0, F32, 0, 1, 0, 0, 0, 0, PM_LAYOUT_COLS, false, 0 },
	{ "u8->f32 dilation 2", U8, 0, F32, 0, 2, 0, 0, 0, 0, 0, false, 0 },
	{ "u8->f32 step 2", U8, 0, F32, 0, 1, 0, 0, 0, 0, 0, false, 2 },
	SMALL(3) SMALL(5) SMALL(7)
	SMALL_MORE(3) SMALL_MORE(5) SMALL_MORE(7)
	{ "u8->f32 zero pad same 3x3", U8, 0, F32, 3, 1, -1, -1, PM_PAD_ZERO, 0, 0, false, 0 },
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
	       "  --case TEXT      run only the cases whose name (as printed) contains TEXT\n"
	       "  --chunk KIB      the destination buffer (default 2048, one chunk)\n",
	       prog);
}

/* ------------------------------------------------------------ naive */

/* The plain im2col loop, written the obvious way for any case of the table
 * but the transposed layout: windows in row-major order, columns (dy, dx, c)
 * or (c, dy, dx), a sample outside the image read as the pad (zero, or the
 * reflected sample). Fills `rows` rows from row r0. Compiled three times
 * (baseline x86-64, AVX2, AVX-512) and the fastest build is the reference. */
struct naive_args {
	const void *img;
	size_t w, C, k, step, dil, ow;
	int64_t pad;
	bool reflect, channel_major, affine;
};

static inline int64_t naive_at(int64_t p, size_t n, bool reflect)
{
	if (p >= 0 && p < (int64_t)n)
		return p;
	if (!reflect)
		return -1;
	return p < 0 ? -p : 2 * ((int64_t)n - 1) - p;
}

#define NAIVE(NAME, ST, DT, ATTR)                                                          \
	ATTR static void NAME(const struct naive_args *a, DT *d, size_t r0, size_t rows)     \
	{                                                                                  \
		const ST *img = a->img;                                                    \
		size_t w = a->w, C = a->C, k = a->k, dil = a->dil;                         \
		DT sc = (DT)(1.0 / 255), of = (DT)-0.5;                                    \
                                                                                           \
		for (size_t r = r0; r < r0 + rows; r++) {                                  \
			int64_t y0 = (int64_t)((r / a->ow) * a->step) - a->pad;            \
			int64_t x0 = (int64_t)((r % a->ow) * a->step) - a->pad;            \
			int64_t span = (int64_t)((k - 1) * dil);                           \
                                                                                           \
			if (y0 >= 0 && x0 >= 0 && y0 + span < (int64_t)w &&                \
			    x0 + span < (int64_t)w) {                                      \
				const ST *s = img + ((size_t)y0 * w + (size_t)x0) * C;     \
				if (a->channel_major) {                                    \
					for (size_t c = 0; c < C; c++)                     \
						for (size_t dy = 0; dy < k; dy++)          \
							for (size_t dx = 0; dx < k; dx++)  \
								*d++ = (DT)s[(dy * dil * w + dx * dil) * C + c]; \
				} else if (a->affine) {                                    \
					for (size_t dy = 0; dy < k; dy++)                  \
						for (size_t dx = 0; dx < k * C; dx++)      \
							*d++ = (DT)s[dy * dil * w * C + dx] * sc + of; \
				} else if (dil == 1) {                                     \
					for (size_t dy = 0; dy < k; dy++)                  \
						for (size_t dx = 0; dx < k * C; dx++)      \
							*d++ = (DT)s[dy * w * C + dx];     \
				} else {                                                   \
					for (size_t dy = 0; dy < k; dy++)                  \
						for (size_t dx = 0; dx < k; dx++)          \
							for (size_t c = 0; c < C; c++)     \
								*d++ = (DT)s[(dy * dil * w + dx * dil) * C + c]; \
				}                                                          \
				continue;                                                  \
			}                                                                  \
			for (size_t e = 0; e < k * k * C; e++) {                           \
				size_t c = a->channel_major ? e / (k * k) : e % C;         \
				size_t q = a->channel_major ? e % (k * k) : e / C;         \
				int64_t y = naive_at(y0 + (int64_t)((q / k) * dil), w,     \
						     a->reflect);                          \
				int64_t x = naive_at(x0 + (int64_t)((q % k) * dil), w,     \
						     a->reflect);                          \
				DT v = y < 0 || x < 0 ? (DT)0                              \
						      : (DT)img[((size_t)y * w + (size_t)x) * C + c]; \
				*d++ = a->affine ? (DT)(v * sc + of) : v;                  \
			}                                                                  \
		}                                                                          \
	}

#define BASE __attribute__((optimize("O3")))
#if defined(__x86_64__) && defined(__GNUC__)
#define ISAS 3
/* No FMA: the affine case must round as the library does (two steps). */
#define AVX2 __attribute__((target("avx2,bmi2"), optimize("O3")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,bmi2"), optimize("O3")))
#else
#define ISAS 1
#define AVX2
#define AVX512
#endif
#define NAIVES(NAME, ST, DT) NAIVE(NAME##_base, ST, DT, BASE) NAIVE(NAME##_avx2, ST, DT, AVX2) \
	NAIVE(NAME##_avx512, ST, DT, AVX512)
NAIVES(naive_u8_f32, uint8_t, float)
NAIVES(naive_f32_f32, float, float)
NAIVES(naive_u8_f64, uint8_t, double)
NAIVES(naive_u8_u8, uint8_t, uint8_t)

typedef void (*naive_fn)(const struct naive_args *, void *, size_t, size_t);
static const char *const isa_names[] = { "x86-64", "AVX2", "AVX-512" };
static bool have_isa(int i)
{
#if defined(__x86_64__) && defined(__GNUC__)
	return i == 0 || (i == 1 && __builtin_cpu_supports("avx2")) ||
	       (i == 2 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
		__builtin_cpu_supports("avx512vl"));
#else
	return i == 0;
#endif
}

/* The plain loop for case c in build `isa`, or NULL if it has none. */
static naive_fn naive_for(const struct fill_case *c, int isa)
{
#define PICK(NAME) (naive_fn)(isa == 0 ? (void (*)(void))NAME##_base : isa == 1 ? (void (*)(void))NAME##_avx2 \
							   : (void (*)(void))NAME##_avx512)
	if (c->layout != PM_LAYOUT_ROWS || (c->pad_mode != PM_PAD_ZERO && c->pad_mode != PM_PAD_REFLECT))
		return NULL;
	if (c->src_dtype == PM_DTYPE_U8 && c->out_dtype == PM_DTYPE_F32)
		return PICK(naive_u8_f32);
	if (c->src_dtype == PM_DTYPE_F32 && c->out_dtype == PM_DTYPE_F32)
		return PICK(naive_f32_f32);
	if (c->src_dtype == PM_DTYPE_U8 && c->out_dtype == PM_DTYPE_F64)
		return PICK(naive_u8_f64);
	if (c->src_dtype == PM_DTYPE_U8 && c->out_dtype == PM_DTYPE_SAME)
		return PICK(naive_u8_u8);
	return NULL;
#undef PICK
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

static void naive_setup(struct naive_args *a, const struct fill_case *c, const void *img,
			size_t k)
{
	size_t span = (k - 1) * c->dilation, step = c->step ? c->step : 1;

	a->img = img;
	a->w = side;
	a->C = c->channels ? (size_t)c->channels : 1;
	a->k = k;
	a->step = step;
	a->dil = c->dilation;
	a->pad = c->pad_before < 0 ? (int64_t)(span / 2) : c->pad_before;
	a->ow = (side + (c->pad_before < 0 ? span : 0) - span - 1) / step + 1;
	a->reflect = c->pad_mode == PM_PAD_REFLECT;
	a->channel_major = c->order == PM_ORDER_CHANNEL;
	a->affine = c->affine;
}

/* The plain loop over whole rows, as many per buffer as fit. GB/s. */
static double run_naive(naive_fn fn, const struct naive_args *a, size_t row_bytes, char *buf,
			size_t total)
{
	size_t per = buf_bytes / row_bytes, r = 0, rows = (total / row_bytes) ? total / row_bytes : 1;
	size_t all = a->ow * a->ow;
	double t0 = b_now();

	for (size_t done = 0; done < rows; done += per) {
		if (r + per > all)
			r = 0;
		fn(a, buf, r, per);
		sink += (unsigned char)buf[per * row_bytes - 1];
		r += per;
	}
	return (double)(((rows + per - 1) / per) * per * row_bytes) / (b_now() - t0) / 1e9;
}

/* The library's bytes equal the plain loop's on a few buffers spread over
 * the range: a benchmark of wrong output measures nothing. */
static void check_naive(naive_fn fn, const struct naive_args *a, const pm_matrix *m,
			size_t row_bytes, size_t total)
{
	size_t per = buf_bytes / row_bytes;
	size_t n = per * row_bytes, bufs = total / n;
	char *x = b_alloc_resident(n), *y = b_alloc_resident(n);

	for (size_t i = 0; i < 4 && bufs; i++) {
		size_t which = i * (bufs - 1) / 3;

		b_check(pm_matrix_read(m, which * n, x, n), "pm_matrix_read");
		fn(a, y, which * per, per);
		if (memcmp(x, y, n))
			b_die(1, "the library's matrix differs from the plain im2col loop at byte %zu",
			      which * n);
	}
	free(x);
	free(y);
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
	for (int a = 0; a < 2; a++)
		o->window[a].step = c->step ? c->step : 1;
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
	img32 = b_alloc_resident(side * side * 3 * sizeof(float));
	for (size_t i = 0; i < side * side * 3; i++)
		img32[i] = (float)img8[i] * 0.25f - 3.0f;
	buf = b_alloc_resident(buf_bytes);
	src_bytes = src_mib * B_MIB;
	src = b_alloc_resident(src_bytes);
	memset(src, 0x5a, src_bytes);

	size_t total_max = (size_t)(max_gb * 1e9) / buf_bytes * buf_bytes;
	double v[64], mv[64], nv[64 * ISAS];

	if (reps > 64)
		reps = 64;
	printf("image %zux%zu, %zu KiB destination buffer, up to %.1f GB per case, median of %d;\n"
	       "memcpy: the same byte count from a %zu MiB source into the same buffer, measured\n"
	       "alternately with each case (the machine's bandwidth drifts)\n\n",
	       side, side, buf_bytes >> 10, (double)total_max / 1e9, reps, src_mib);
	printf("%-34s %9s %7s %7s %8s %7s %7s %s\n", "case (window)", "matrix GB", "GB/s", "memcpy",
	       "x memcpy", "plain", "x plain", "plain build");

	for (size_t ci = 0; ci < NCASES; ci++) {
		const struct fill_case *c = &cases[ci];
		size_t k = c->k ? c->k : window, total, row_bytes;
		const void *img = c->src_dtype == PM_DTYPE_F32 ? (void *)img32 : (void *)img8;
		struct pm_matrix_opts o;
		struct naive_args na;
		naive_fn nf = naive_for(c, 0);
		pm_matrix *m;
		double lib, mc, naive = 0, best[ISAS] = { 0 };
		char name[64];
		int isa = 0;

		/* the name as printed: the main cases with their window */
		snprintf(name, sizeof(name), "%s", c->name);
		if (!c->k)
			snprintf(name, sizeof(name), "%s %zux%zu", c->name, k, k);
		if (only && !strstr(name, only))
			continue;
		opts_for(&o, c, img);
		b_check(pm_matrix_open(&o, &m), c->name);
		total = pm_matrix_bytes(m) < total_max ? pm_matrix_bytes(m) : total_max;
		row_bytes = pm_matrix_cols(m) * pm_matrix_elem_size(m);
		if (nf) {
			naive_setup(&na, c, img, k);
			check_naive(nf, &na, m, row_bytes, total);
		}
		for (int r = 0; r < reps; r++) {
			mv[r] = run_memcpy(buf, src, src_bytes, total);
			v[r] = run_lib(m, buf, total);
			/* each build of the plain loop; the fastest is the reference */
			for (int i = 0; nf && i < ISAS; i++) {
				double x;

				if (!have_isa(i))
					continue;
				x = run_naive(naive_for(c, i), &na, row_bytes, buf, total);
				nv[r * ISAS + i] = x;
				best[i] += x;
			}
		}
		if (nf) {
			for (int i = 1; i < ISAS; i++)
				if (best[i] > best[isa])
					isa = i;
			double t[64];
			for (int r = 0; r < reps; r++)
				t[r] = nv[r * ISAS + isa];
			naive = b_median(t, reps);
		}
		lib = b_median(v, reps);
		mc = b_median(mv, reps);
		printf("%-34s %9.2f %7.2f %7.2f %8.2f", name, (double)pm_matrix_bytes(m) / 1e9, lib,
		       mc, lib / mc);
		if (nf)
			printf(" %7.2f %7.2f %s", naive, lib / naive, isa_names[isa]);
		printf("\n");
		fflush(stdout);
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
