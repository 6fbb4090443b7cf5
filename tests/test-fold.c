/* test-fold.c: pm_fold against a plain fold written here (one contribution
 * at a time, in matrix order, through the definition of a window), over a
 * grid of steps, dilations, padding, modes, orders, layouts, channels,
 * input and output dtypes, per-window vectors and values, output strides
 * and row selections; a lazy matrix's mapping folded on every backend under
 * a two-chunk budget; and every error, which must leave the output as it
 * was. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>

#include "helpers.h"
#include "ref.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	return t_rnd(&rng);
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* Input dtypes and their sizes, written out here. */
static const int in_dtypes[] = { PM_DTYPE_U8, PM_DTYPE_I8, PM_DTYPE_U16, PM_DTYPE_I16,
				 PM_DTYPE_U32, PM_DTYPE_I32, PM_DTYPE_F32, PM_DTYPE_F64,
				 PM_DTYPE_I64, PM_DTYPE_U64, PM_DTYPE_BOOL };
#define NIN ((int)(sizeof(in_dtypes) / sizeof(in_dtypes[0])))

static size_t esize(int t)
{
	switch (t) {
	case PM_DTYPE_U8: case PM_DTYPE_I8: case PM_DTYPE_BOOL: return 1;
	case PM_DTYPE_U16: case PM_DTYPE_I16: case PM_DTYPE_F16: return 2;
	case PM_DTYPE_U32: case PM_DTYPE_I32: case PM_DTYPE_F32: return 4;
	default: return 8;
	}
}

/* A random value of dtype t at p, and the same value as a double. */
static double put_value(int t, unsigned char *p)
{
	uint64_t r = rnd();

	switch (t) {
	case PM_DTYPE_U8: { uint8_t v = (uint8_t)r; memcpy(p, &v, 1); return v; }
	case PM_DTYPE_I8: { int8_t v = (int8_t)r; memcpy(p, &v, 1); return v; }
	case PM_DTYPE_BOOL: { uint8_t v = (uint8_t)(r & 1); memcpy(p, &v, 1); return v; }
	case PM_DTYPE_U16: { uint16_t v = (uint16_t)r; memcpy(p, &v, 2); return v; }
	case PM_DTYPE_I16: { int16_t v = (int16_t)r; memcpy(p, &v, 2); return v; }
	case PM_DTYPE_U32: { uint32_t v = (uint32_t)r; memcpy(p, &v, 4); return v; }
	case PM_DTYPE_I32: { int32_t v = (int32_t)r; memcpy(p, &v, 4); return v; }
	case PM_DTYPE_I64: { int64_t v = (int64_t)r >> 20; memcpy(p, &v, 8); return (double)v; }
	case PM_DTYPE_U64: { uint64_t v = r >> 20; memcpy(p, &v, 8); return (double)v; }
	case PM_DTYPE_F32: {
		float v = (float)((double)(int32_t)r / 65536.0);

		memcpy(p, &v, 4);
		return v;
	}
	default: {
		double v = (double)(int64_t)r / 4294967296.0;

		memcpy(p, &v, 8);
		return v;
	}
	}
}

/* The plain fold. vals[r * nv + v]: value v of stored row r (as a double,
 * exact for every input used here); win[r]: its window. The output is
 * C-contiguous over the source's axes. Contributions are added in the
 * output type, in matrix order, as the library documents. */
static void ref_fold(const struct pm_matrix_opts *o, const double *vals, size_t nv,
		     const uint64_t *win, size_t nrows, int mode, bool f64, void *out)
{
	const struct pm_source *s = &o->source;
	long long n[PM_MAX_DIMS], k[PM_MAX_DIMS], st[PM_MAX_DIMS], di[PM_MAX_DIMS], pb[PM_MAX_DIMS];
	long long on[PM_MAX_DIMS], C = 1, K = 1, str[PM_MAX_DIMS], cstr = 0, total = 1;
	int ns = 0, axis[PM_MAX_DIMS];
	unsigned *count;

	for (int i = s->ndim - 1; i >= 0; i--) {
		str[i] = total;
		total *= (long long)s->shape[i];
	}
	for (int i = 0; i < s->ndim; i++) {
		if (s->has_channels && i == s->channel_axis) {
			C = (long long)s->shape[i];
			cstr = str[i];
			continue;
		}
		const struct pm_window *w = &o->window[ns];

		axis[ns] = i;
		n[ns] = (long long)s->shape[i];
		k[ns] = (long long)w->size;
		st[ns] = (long long)w->step;
		di[ns] = (long long)w->dilation;
		pb[ns] = w->pad_before;
		on[ns] = (n[ns] + w->pad_before + w->pad_after - (k[ns] - 1) * di[ns] - 1) / st[ns] + 1;
		K *= k[ns];
		ns++;
	}
	count = calloc((size_t)total, sizeof(*count));
	CU_ASSERT_PTR_NOT_NULL_FATAL(count);
	memset(out, 0, (size_t)total * (f64 ? 8 : 4));
	for (size_t r = 0; r < nrows; r++) {
		long long pos[PM_MAX_DIMS], rest = (long long)win[r];

		for (int a = ns - 1; a >= 0; a--) {
			pos[a] = rest % on[a];
			rest /= on[a];
		}
		for (long long j = 0; j < K * C; j++) {
			long long c = o->order == PM_ORDER_CHANNEL ? j / K : j % C;
			long long e = o->order == PM_ORDER_CHANNEL ? j % K : j / C, ew[PM_MAX_DIMS];
			long long idx = c * cstr;
			bool inside = true;

			for (int a = ns - 1; a >= 0; a--) {
				ew[a] = e % k[a];
				e /= k[a];
			}
			for (int a = 0; a < ns; a++) {
				long long x = pos[a] * st[a] + ew[a] * di[a] - pb[a];

				if (x < 0 || x >= n[a])
					inside = false;
				idx += x * str[axis[a]];
			}
			if (!inside)
				continue;
			double v = vals[r * nv + (nv == 1 ? 0 : nv == (size_t)C && nv != (size_t)(K * C)
								   ? (size_t)c : (size_t)j)];
			count[idx]++;
			if (f64)
				((double *)out)[idx] += v;
			else
				((float *)out)[idx] += (float)v;
		}
	}
	for (long long i = 0; i < total; i++) {
		if (mode == PM_FOLD_SUM)
			continue;
		if (f64) {
			double *d = (double *)out + i;

			*d = mode == PM_FOLD_COUNT ? count[i] : count[i] ? *d / count[i] : 0;
		} else {
			float *d = (float *)out + i;

			*d = mode == PM_FOLD_COUNT ? (float)count[i] : count[i] ? *d / (float)count[i] : 0;
		}
	}
	free(count);
}

static int failures;
static char label[256];

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		bool ok_ = (cond);                                                \
		if (!ok_ && failures++ < 20) {                                    \
			fprintf(stderr, "\n  FAILED %s [%s]: ", #cond, label);    \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
		}                                                                 \
		CU_ASSERT(ok_);                                                   \
	} while (0)

static unsigned long ncases;

/* One fold: input of `nv` values per row (E, C or 1), a selection kind
 * (0 all, 1 index, 2 mask, 3 range), an output layout (0 C order, 1 every
 * axis reversed and spaced). */
static void run_fold(struct pm_matrix_opts *o, int in_dtype, int vals_kind, int sel, int mode,
		     bool f64, int out_kind)
{
	struct pm_matrix_info info = { 0 };
	struct pm_rows rows = { .size = sizeof(rows) };
	uint64_t *win, *index = NULL;
	uint8_t *mask = NULL;
	size_t nrows = 0, nv, es = esize(in_dtype), total = 1, oes = f64 ? 8 : 4;
	unsigned char *in;
	double *vals;
	void *want, *got;
	struct pm_fold_opts f = { .size = sizeof(f) };
	int ret;

	CU_ASSERT_EQUAL_FATAL(pm_matrix_describe(o, &info), 0);
	if (o->layout == PM_LAYOUT_COLS)
		sel = 0;
	win = malloc((2 * info.windows + 2) * sizeof(*win));
	CU_ASSERT_PTR_NOT_NULL_FATAL(win);
	switch (sel) {
	case 0:
		for (size_t i = 0; i < info.windows; i++)
			win[nrows++] = i;
		break;
	case 1:
		nrows = 1 + rnd_below(2 * info.windows);
		index = malloc(nrows * sizeof(*index));
		for (size_t i = 0; i < nrows; i++)
			win[i] = index[i] = rnd_below(info.windows);
		rows = (struct pm_rows){ .size = sizeof(rows), .kind = PM_ROWS_INDEX, .index = index,
					 .count = nrows };
		break;
	case 2:
		mask = malloc(info.windows);
		for (size_t i = 0; i < info.windows; i++)
			mask[i] = rnd_below(2) ? 1 : 0;
		mask[rnd_below(info.windows)] = 1;
		for (size_t i = 0; i < info.windows; i++)
			if (mask[i])
				win[nrows++] = i;
		rows = (struct pm_rows){ .size = sizeof(rows), .kind = PM_ROWS_MASK, .mask = mask,
					 .count = info.windows };
		break;
	default:
		rows = (struct pm_rows){ .size = sizeof(rows), .kind = PM_ROWS_RANGE,
					 .begin = rnd_below(info.windows) };
		rows.end = rows.begin + 1 + rnd_below(info.windows - rows.begin);
		for (size_t i = rows.begin; i < rows.end; i++)
			win[nrows++] = i;
		break;
	}
	nv = vals_kind == 0 ? info.window_elems : vals_kind == 1 ? info.channels : 1;
	in = malloc(nrows * nv * es);
	vals = malloc(nrows * nv * sizeof(double));
	for (int i = 0; i < o->source.ndim; i++)
		total *= o->source.shape[i];
	want = malloc(total * oes);
	got = malloc(total * oes * 4 + 64);
	CU_ASSERT_FATAL(in && vals && want && got);
	/* Stored row r value v: row-major for layout rows, transposed for cols. */
	for (size_t r = 0; r < nrows; r++)
		for (size_t v = 0; v < nv; v++) {
			size_t at = o->layout == PM_LAYOUT_COLS ? v * nrows + r : r * nv + v;

			vals[r * nv + v] = put_value(in_dtype, in + at * es);
		}
	ref_fold(o, vals, nv, win, nrows, mode, f64, want);

	f.mode = mode;
	f.data = in;
	f.dtype = in_dtype;
	f.rows = o->layout == PM_LAYOUT_COLS ? nv : nrows;
	f.cols = o->layout == PM_LAYOUT_COLS ? nrows : nv;
	f.out_dtype = f64 ? PM_DTYPE_F64 : PM_DTYPE_F32;
	memset(got, 0x5a, total * oes * 4 + 64);
	if (out_kind == 0) {
		f.out = got;
	} else {
		/* Every axis reversed, elements two apart: the output starts at
		 * the last element of the spaced C-order array. */
		ptrdiff_t stride = 2 * (ptrdiff_t)oes;

		for (int i = o->source.ndim - 1; i >= 0; i--) {
			f.out_strides[i] = -stride;
			stride *= (ptrdiff_t)o->source.shape[i];
		}
		f.out = (char *)got + (2 * total - 2) * oes;
	}
	ret = pm_fold(o, sel ? &rows : NULL, &f);
	CHECK(ret == 0, "pm_fold returned %d (%s)", ret, pm_strerror(ret));
	if (ret == 0) {
		size_t bad = total;

		for (size_t i = 0; i < total && bad == total; i++) {
			const char *g = out_kind == 0 ? (char *)got + i * oes
						      : (char *)got + (2 * total - 2 - 2 * i) * oes;

			if (memcmp(g, (char *)want + i * oes, oes))
				bad = i;
		}
		CHECK(bad == total, "in %s vals %zu sel %d mode %d %s out %d: sample %zu differs (%g, want %g)",
		      pm_dtype_name(in_dtype), nv, sel, mode, f64 ? "f64" : "f32", out_kind, bad,
		      bad < total ? (f64 ? ((double *)want)[bad] : ((float *)want)[bad]) : 0.0,
		      0.0);
		if (out_kind == 1) {
			/* The gaps between spaced samples are untouched. */
			size_t touched = 0;

			for (size_t i = 0; i < total; i++)
				for (size_t b = 0; b < oes; b++)
					touched += ((unsigned char *)got)[(2 * i + 1) * oes + b] != 0x5a &&
						   2 * i + 1 < 2 * total - 1;
			CHECK(touched == 0, "%zu gap bytes written", touched);
		}
	}
	ncases++;
	free(win);
	free(index);
	free(mask);
	free(in);
	free(vals);
	free(want);
	free(got);
}

static void set_window(struct pm_window *w, size_t k, size_t step, size_t dil, int64_t pb, int64_t pa)
{
	*w = (struct pm_window){ .size = k, .step = step, .dilation = dil, .pad_before = pb,
				 .pad_after = pa };
}

/* Steps (1, 2, 3, beyond the window), dilations 1..3, padding (none, small,
 * beyond the axis), every padding mode, both orders and layouts, channels
 * none/first/last; the input dtype, values per window, selection, fold
 * mode, output type and output strides rotate through the cases. */
static void test_grid(void)
{
	static const size_t steps[] = { 1, 2, 3, 9 };
	static const size_t dils[] = { 1, 2, 3 };
	static const int64_t pads[][4] = { { 0, 0, 0, 0 }, { 1, 2, 2, 0 }, { 9, 11, 6, 13 } };
	unsigned n = 0;

	for (int si = 0; si < 4; si++)
		for (int di = 0; di < 3; di++)
			for (int pi = 0; pi < 3; pi++)
				for (int ch = 0; ch < 3; ch++)
					for (int ol = 0; ol < 4; ol++, n++) {
						struct pm_matrix_opts o = { .size = sizeof(o) };
						size_t shape[3] = { 7, 5, 3 };
						struct pm_matrix_info info = { 0 };

						if (ch == 1) { /* channels first */
							shape[0] = 2;
							shape[1] = 7;
							shape[2] = 5;
						}
						o.source.dtype = PM_DTYPE_U8;
						o.source.ndim = ch ? 3 : 2;
						memcpy(o.source.shape, shape, sizeof(shape));
						o.source.has_channels = ch != 0;
						o.source.channel_axis = ch == 1 ? 0 : 2;
						set_window(&o.window[0], 3, steps[si], dils[di], pads[pi][0], pads[pi][1]);
						set_window(&o.window[1], 2, steps[(si + 1) % 4], dils[(di + 1) % 3],
							   pads[pi][2], pads[pi][3]);
						o.pad_mode = (int)(n % PM_PAD_COUNT);
						o.order = ol % 2;
						o.layout = ol / 2;
						if (pm_matrix_describe(&o, &info) != 0)
							continue;
						snprintf(label, sizeof(label),
							 "step %zu dil %zu pad %d ch %d order %d layout %d mode %d",
							 steps[si], dils[di], pi, ch, o.order, o.layout, o.pad_mode);
						for (int fm = 0; fm < PM_FOLD_MODE_COUNT; fm++)
							run_fold(&o, in_dtypes[(n + (unsigned)fm) % NIN],
								 (int)((n + (unsigned)fm) % 3), (int)((n / 3 + (unsigned)fm) % 4),
								 fm, (n + (unsigned)fm) % 2, (int)(n / 2 % 2));
					}
}

/* The split into bands of the first spatial axis, one thread each (the
 * thread count is the geometry's threads option): ragged bands, more
 * threads than rows, steps beyond the window, dilation, channels first and
 * last, both orders, every selection kind, float and integer inputs, on
 * images large enough that most windows take the run kernels; every fold
 * bit-equal to the plain one. */
static void test_bands(void)
{
	static const int threads[] = { 1, 2, 3, 7, 64 };
	static const int dts[] = { PM_DTYPE_F32, PM_DTYPE_F64, PM_DTYPE_I32, PM_DTYPE_U8,
				   PM_DTYPE_I16, PM_DTYPE_U64 };
	static const size_t steps[][2] = { { 1, 1 }, { 2, 3 }, { 6, 5 } };
	static const size_t dils[][2] = { { 1, 1 }, { 2, 1 }, { 1, 3 } };
	unsigned n = 0;

	for (int si = 0; si < 3; si++)
		for (int di = 0; di < 3; di++)
			for (int ch = 0; ch < 3; ch++)
				for (int ti = 0; ti < 5; ti++, n++) {
					struct pm_matrix_opts o = { .size = sizeof(o) };
					size_t sp[2] = { 29, 23 };
					int64_t pad = n % 3 == 0 ? 2 : 0;

					o.source.dtype = PM_DTYPE_U8;
					o.source.ndim = ch ? 3 : 2;
					o.source.has_channels = ch != 0;
					o.source.channel_axis = ch == 1 ? 0 : 2;
					if (ch == 1) {
						o.source.shape[0] = 2;
						o.source.shape[1] = sp[0];
						o.source.shape[2] = sp[1];
					} else {
						o.source.shape[0] = sp[0];
						o.source.shape[1] = sp[1];
						o.source.shape[2] = 3;
					}
					set_window(&o.window[0], 4, steps[si][0], dils[di][0], pad, pad);
					set_window(&o.window[1], 5, steps[si][1], dils[di][1], 0, pad);
					o.order = (int)(n / 2 % 2);
					o.lazy.threads = threads[ti];
					snprintf(label, sizeof(label), "bands: step %zu,%zu dil %zu,%zu ch %d "
						 "order %d pad %d threads %d", steps[si][0], steps[si][1],
						 dils[di][0], dils[di][1], ch, o.order, (int)pad, threads[ti]);
					for (int fm = 0; fm < PM_FOLD_MODE_COUNT; fm++)
						run_fold(&o, dts[(n + (unsigned)fm) % 6], fm == 2 ? (int)(n % 3) : 0,
							 (int)((n + (unsigned)fm) % 4), fm, (n + (unsigned)fm) % 2,
							 (int)(n / 3 % 2));
				}
	/* A 1-D source: the band axis is the line itself. */
	for (int ti = 0; ti < 5; ti++) {
		struct pm_matrix_opts o = { .size = sizeof(o) };

		o.source.dtype = PM_DTYPE_F32;
		o.source.ndim = 1;
		o.source.shape[0] = 41;
		set_window(&o.window[0], 6, 1 + (size_t)ti, 1, 1, 3);
		o.lazy.threads = threads[ti];
		snprintf(label, sizeof(label), "bands: 1-D threads %d", threads[ti]);
		for (int sel = 0; sel < 4; sel++)
			run_fold(&o, PM_DTYPE_F32, 0, sel, PM_FOLD_MEAN, false, sel % 2);
	}
}

/* 1-D and 3-D sources, and every selection kind for each fold mode. */
static void test_shapes(void)
{
	for (int sel = 0; sel < 4; sel++)
		for (int fm = 0; fm < PM_FOLD_MODE_COUNT; fm++) {
			struct pm_matrix_opts o = { .size = sizeof(o) };

			o.source.dtype = PM_DTYPE_F32;
			o.source.ndim = 1;
			o.source.shape[0] = 13;
			set_window(&o.window[0], 4, 3, 2, 2, 5);
			snprintf(label, sizeof(label), "1-D sel %d mode %d", sel, fm);
			run_fold(&o, PM_DTYPE_F64, 0, sel, fm, true, sel % 2);
			run_fold(&o, PM_DTYPE_I16, 2, sel, fm, false, 0);

			o.source.ndim = 4;
			o.source.shape[0] = 4;
			o.source.shape[1] = 3;
			o.source.shape[2] = 5;
			o.source.shape[3] = 2;
			o.source.has_channels = true;
			o.source.channel_axis = 3;
			set_window(&o.window[0], 2, 1, 1, 1, 0);
			set_window(&o.window[1], 2, 2, 1, 0, 1);
			set_window(&o.window[2], 3, 1, 2, 1, 1);
			o.order = sel % 2;
			snprintf(label, sizeof(label), "3-D sel %d mode %d", sel, fm);
			run_fold(&o, PM_DTYPE_F32, 0, sel, fm, sel % 2, 0);
			run_fold(&o, PM_DTYPE_U8, 1, sel, fm, true, 1);
		}
}

/* Unfold then fold with the mean gives back the image wherever a window
 * covers it, and with the count the overlap counts: checked on a
 * reference-built matrix, and on a lazy matrix's mapping (every backend,
 * a two-chunk budget), which must fold to the same bytes. */
static void test_lazy_input(void)
{
	const size_t shape[3] = { 37, 29, 3 };
	struct pm_matrix_opts o = { .size = sizeof(o) };
	struct ref_matrix r;
	size_t total = 37 * 29 * 3;
	uint8_t *img = malloc(total);
	double *want = malloc(total * 8), *got = malloc(total * 8);

	CU_ASSERT_FATAL(img && want && got);
	for (size_t i = 0; i < total; i++)
		img[i] = (uint8_t)rnd();
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 3, shape), 0);
	o.source.has_channels = true;
	o.source.channel_axis = 2;
	set_window(&o.window[0], 5, 2, 1, 2, 2);
	set_window(&o.window[1], 4, 1, 2, 3, 3);
	o.pad_mode = PM_PAD_REFLECT;
	o.dtype = PM_DTYPE_F32;
	CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &r), 0);
	struct pm_fold_opts f = { .size = sizeof(f), .mode = PM_FOLD_MEAN, .data = r.data,
				  .dtype = PM_DTYPE_F32, .rows = r.rows, .cols = r.cols,
				  .out = want, .out_dtype = PM_DTYPE_F64 };

	snprintf(label, sizeof(label), "lazy input");
	CU_ASSERT_EQUAL_FATAL(pm_fold(&o, NULL, &f), 0);
	/* Every pixel covered here (step 2, window 5): the mean is the image. */
	size_t off = 0;
	for (size_t i = 0; i < total; i++)
		off += want[i] != img[i];
	CHECK(off == 0, "%zu samples of the mean differ from the image", off);

	FOR_ALL_BACKENDS(backend) {
		pm_matrix *m;
		int ret;

		o.lazy = (struct pm_lazy_opts){ .backend = backend, .chunk = 4096, .budget = 2 * 4096,
						.threads = 2 };
		ret = pm_matrix_open(&o, &m);
		if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP)
			continue;
		CU_ASSERT_EQUAL_FATAL(ret, 0);
		f.data = pm_matrix_data(m);
		f.out = got;
		CU_ASSERT_EQUAL(pm_fold(&o, NULL, &f), 0);
		CHECK(memcmp(got, want, total * 8) == 0, "%s: the mapping folds differently",
		      pm_backend_name(backend));
		struct pm_stats st = { 0 };
		CU_ASSERT_EQUAL(pm_matrix_stats(m, &st), 0);
		if (backend != PM_BACKEND_EAGER)
			CHECK(st.peak_resident_bytes <= st.budget_bytes && r.rows * r.pitch > st.budget_bytes,
			      "peak %llu budget %zu", (unsigned long long)st.peak_resident_bytes,
			      st.budget_bytes);
		CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
	}

	/* The matrix itself as the input (read, not touched): every backend
	 * and none, a two-chunk budget, 1 to 5 threads, the full matrix, a
	 * range and an index selection. */
	static const int mbackends[] = { PM_BACKEND_UFFD, PM_BACKEND_SIGSEGV, PM_BACKEND_EAGER,
					 PM_BACKEND_NONE };
	size_t W = r.rows, E = r.cols;
	uint64_t idx[300];
	struct pm_rows sels[3] = {
		{ .size = sizeof(sels[0]), .kind = PM_ROWS_ALL },
		{ .size = sizeof(sels[0]), .kind = PM_ROWS_RANGE, .begin = W / 5, .end = W - 3 },
		{ .size = sizeof(sels[0]), .kind = PM_ROWS_INDEX, .index = idx, .count = 300 },
	};
	double *want2 = malloc(total * 8);

	CU_ASSERT_PTR_NOT_NULL_FATAL(want2);
	for (size_t i = 0; i < 300; i++)
		idx[i] = rnd_below(W);
	for (int si = 0; si < 3; si++) {
		const struct pm_rows *sel = si ? &sels[si] : NULL;
		size_t nrows = si == 0 ? W : si == 1 ? sels[1].end - sels[1].begin : 300;
		float *rowsel = malloc(nrows * E * sizeof(float));

		CU_ASSERT_PTR_NOT_NULL_FATAL(rowsel);
		for (size_t i = 0; i < nrows; i++) {
			size_t wi = si == 0 ? i : si == 1 ? sels[1].begin + i : idx[i];

			memcpy(rowsel + i * E, r.data + wi * r.pitch, E * sizeof(float));
		}
		/* The reference: the rows in memory, one thread. */
		o.lazy = (struct pm_lazy_opts){ .threads = 1 };
		f.data = rowsel;
		f.rows = nrows;
		f.out = want2;
		CU_ASSERT_EQUAL_FATAL(pm_fold(&o, sel, &f), 0);
		for (int bi = 0; bi < 4; bi++)
			for (int th = 1; th <= 5; th += 2) {
				struct pm_fold_opts fm = f;
				pm_matrix *m;
				int ret;

				o.lazy = (struct pm_lazy_opts){ .backend = mbackends[bi], .chunk = 4096,
								.budget = 2 * 4096, .threads = th };
				ret = pm_matrix_open_rows(&o, sel, &m);
				if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP)
					continue;
				CU_ASSERT_EQUAL_FATAL(ret, 0);
				fm.data = NULL;
				fm.dtype = PM_DTYPE_U8; /* the matrix's own are taken */
				fm.rows = fm.cols = 0;
				fm.matrix = m;
				fm.out = got;
				memset(got, 0x55, total * 8);
				snprintf(label, sizeof(label), "matrix input %s sel %d threads %d",
					 pm_backend_name(mbackends[bi]), si, th);
				ret = pm_fold(&o, sel, &fm);
				CHECK(ret == 0, "pm_fold returned %d", ret);
				CHECK(memcmp(got, want2, total * 8) == 0, "folds differently");
				struct pm_stats st = { .size = sizeof(st) };
				CU_ASSERT_EQUAL(pm_matrix_stats(m, &st), 0);
				CHECK(st.faults == 0, "%llu faults: the mapping was touched",
				      (unsigned long long)st.faults);
				CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
			}
		free(rowsel);
	}
	/* The struct as it was before the matrix field. */
	f.data = r.data;
	f.rows = r.rows;
	f.out = got;
	f.size = offsetof(struct pm_fold_opts, matrix);
	f.matrix = (const pm_matrix *)&f; /* past the given size: never read */
	o.lazy = (struct pm_lazy_opts){ 0 };
	CU_ASSERT_EQUAL(pm_fold(&o, NULL, &f), 0);
	CU_ASSERT(memcmp(got, want, total * 8) == 0);
	/* A matrix input needs layout rows. */
	f.size = sizeof(f);
	o.layout = PM_LAYOUT_COLS;
	CU_ASSERT_EQUAL(pm_fold(&o, NULL, &f), -PM_EROWSLAYOUT);
	f.rows = r.cols;
	f.cols = r.rows;
	o.layout = PM_LAYOUT_ROWS;
	free(want2);
	ref_free(&r);
	free(img);
	free(want);
	free(got);
}

/* Every error; the output keeps its bytes. */
static void test_errors(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	const size_t shape[2] = { 6, 5 };
	float in[20 * 4], out[30];
	unsigned char before[sizeof(out)];
	uint64_t idx[2] = { 0, 20 };

	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, NULL, PM_DTYPE_F32, 2, shape), 0);
	set_window(&o.window[0], 2, 1, 1, 0, 0);
	set_window(&o.window[1], 2, 1, 1, 0, 0);
	memset(in, 0, sizeof(in));
	memset(out, 0x77, sizeof(out));
	memcpy(before, out, sizeof(out));
	struct pm_fold_opts good = { .size = sizeof(good), .mode = PM_FOLD_SUM, .data = in,
				     .dtype = PM_DTYPE_F32, .rows = 20, .cols = 4, .out = out,
				     .out_dtype = PM_DTYPE_F32 };
	struct pm_fold_opts f;
	struct pm_rows r = { .size = sizeof(r), .kind = PM_ROWS_INDEX, .index = idx, .count = 2 };
	struct pm_rows rr = { .size = sizeof(r), .kind = PM_ROWS_RANGE, .begin = 3, .end = 21 };

#define EXPECT(call, code)                                                        \
	do {                                                                      \
		CU_ASSERT_EQUAL(call, code);                                      \
		CU_ASSERT(memcmp(out, before, sizeof(out)) == 0);                 \
	} while (0)
	f = good; f.rows = 19; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDSHAPE);
	f = good; f.cols = 3; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDSHAPE);
	f = good; f.cols = 5; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDSHAPE);
	f = good; f.rows = 4; f.cols = 20; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDSHAPE);
	f = good; f.mode = 3; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDMODE);
	f = good; f.mode = -1; EXPECT(pm_fold(&o, NULL, &f), -PM_EFOLDMODE);
	f = good; f.out_dtype = PM_DTYPE_I32; EXPECT(pm_fold(&o, NULL, &f), -PM_EOUTDTYPE);
	f = good; f.out_dtype = PM_DTYPE_F16; EXPECT(pm_fold(&o, NULL, &f), -PM_EOUTDTYPE);
	f = good; f.dtype = PM_DTYPE_SAME; EXPECT(pm_fold(&o, NULL, &f), -PM_EDTYPE);
	f = good; f.dtype = PM_DTYPE_COUNT; EXPECT(pm_fold(&o, NULL, &f), -PM_EDTYPE);
	f = good; f.data = NULL; EXPECT(pm_fold(&o, NULL, &f), -PM_ENULL);
	f = good; f.size = 8; EXPECT(pm_fold(&o, NULL, &f), -PM_EOPTSIZE);
	f = good; EXPECT(pm_fold(&o, NULL, NULL), -PM_ENULL);
	EXPECT(pm_fold(NULL, NULL, &f), -PM_ENULL);
	f = good; f.rows = 2; EXPECT(pm_fold(&o, &r, &f), -PM_EROWINDEX);
	f = good; f.rows = 18; EXPECT(pm_fold(&o, &rr, &f), -PM_EROWRANGE);
	f = good; o.window[1].step = 0; EXPECT(pm_fold(&o, NULL, &f), -PM_ESTEP);
	o.window[1].step = 1;
	f = good; o.layout = PM_LAYOUT_COLS; EXPECT(pm_fold(&o, &rr, &f), -PM_EROWSLAYOUT);
	o.layout = PM_LAYOUT_ROWS;
	/* A selection's row count decides. */
	idx[1] = 19;
	f = good; EXPECT(pm_fold(&o, &r, &f), -PM_EFOLDSHAPE);
	f.rows = 2;
	CU_ASSERT_EQUAL(pm_fold(&o, &r, &f), 0);
	/* count needs no input. */
	f = good; f.mode = PM_FOLD_COUNT; f.data = NULL; f.dtype = 0;
	CU_ASSERT_EQUAL(pm_fold(&o, NULL, &f), 0);
	CU_ASSERT_EQUAL(out[0], 1.0f);
	CU_ASSERT_EQUAL(out[6], 4.0f);
	CU_ASSERT(strstr(pm_strerror(-PM_EFOLDSHAPE), "one row per window") != NULL);
	CU_ASSERT(strstr(pm_strerror(-PM_EFOLDMODE), "sum, mean or count") != NULL);
#undef EXPECT
}

int main(void)
{
	static const struct t_test tests[] = {
		{ "fold against the plain fold: geometry grid", test_grid },
		{ "fold of 1-D and 3-D sources, every selection", test_shapes },
		{ "fold in bands of threads", test_bands },
		{ "fold of a lazy matrix's mapping", test_lazy_input },
		{ "fold errors", test_errors },
	};
	int ret = t_run("fold", tests, T_COUNT(tests), NULL);

	printf("%lu folds checked\n", ncases);
	return ret;
}
