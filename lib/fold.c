/* fold.c: col2im. Adds every element of every window of a matrix back into
 * the image sample it shows, in matrix order; the mean divides by overlap
 * counts computed per axis (full matrix) or counted (selections). The image
 * is split into bands of its first spatial axis, one thread each: a thread
 * adds only into its own band, walking the windows in matrix order, so each
 * sample still receives its contributions in matrix order. The run kernels
 * are written for speed. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "geometry.h"

/* Adds n inputs, istep bytes apart (0: one value n times), to n outputs
 * ostep bytes apart. One kernel per input dtype and output type. */
typedef void (*add_fn)(char *out, ptrdiff_t ostep, const char *in, ptrdiff_t istep, size_t n);

#define ADD(NAME, IT, OT, CONV)                                                        \
	static void add_##NAME(char *out, ptrdiff_t ostep, const char *in,             \
			       ptrdiff_t istep, size_t n)                              \
	{                                                                              \
		if (ostep == (ptrdiff_t)sizeof(OT) && istep == (ptrdiff_t)sizeof(IT)) { \
			OT *o = (OT *)out;                                             \
			for (size_t i = 0; i < n; i++) {                               \
				IT x;                                                  \
				memcpy(&x, in + i * sizeof(IT), sizeof(IT));           \
				o[i] += (OT)(CONV);                                    \
			}                                                              \
			return;                                                        \
		}                                                                      \
		for (size_t i = 0; i < n; i++) {                                       \
			IT x;                                                          \
			OT *o = (OT *)(out + (ptrdiff_t)i * ostep);                    \
			memcpy(&x, in + (ptrdiff_t)i * istep, sizeof(IT));             \
			*o += (OT)(CONV);                                              \
		}                                                                      \
	}
/* One window's runs of contiguous inputs and outputs (one kernel call per
 * window, the loop over a run vectorizable): run r adds its n values at
 * in + irel into out + orel, if its first-axis displacement d0 lies in
 * [ylo, yhi), the window's part of the band. Built twice, for AVX2 and the
 * baseline, chosen at load time where that paid: 15-30 % more values per
 * second for 2- to 8-byte inputs of 8x8 windows here, 15 % fewer for
 * 1-byte ones, which keep the baseline. The same operations in the same
 * order either way (no contraction into FMA): the same sums. */
struct run {
	size_t j, n;
	ptrdiff_t ostep, istep;
	ptrdiff_t orel, irel;
	int64_t d0;
};

typedef void (*runs_fn)(char *out, const struct run *runs, size_t nruns, const char *in,
			int64_t ylo, int64_t yhi);

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_FOLD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(PM_FOLD_TSAN) || !defined(__x86_64__)
/* The clones' resolver runs while the library is relocated, before
 * ThreadSanitizer's runtime is up (it crashed there): one build only. */
#define CLONES
#else
#define CLONES __attribute__((target_clones("avx2", "default")))
#endif
#define RUNS(NAME, IT, OT, CONV, ATTR)                                                 \
	ATTR static void runs_##NAME(char *out, const struct run *runs, size_t nruns,  \
				const char *in, int64_t ylo, int64_t yhi)              \
	{                                                                              \
		for (size_t r = 0; r < nruns; r++) {                                   \
			const struct run *ru = &runs[r];                               \
			OT *restrict o = (OT *)(out + ru->orel);                       \
			const char *restrict s = in + ru->irel;                        \
			size_t n = ru->n;                                              \
                                                                                       \
			if (ru->d0 < ylo || ru->d0 >= yhi)                             \
				continue;                                              \
			for (size_t i = 0; i < n; i++) {                               \
				IT x;                                                  \
				memcpy(&x, s + i * sizeof(IT), sizeof(IT));            \
				o[i] += (OT)(CONV);                                    \
			}                                                              \
		}                                                                      \
	}
#define ADDA(N, IT, CONV, ATTR) ADD(N##_f32, IT, float, CONV) ADD(N##_f64, IT, double, CONV) \
	RUNS(N##_f32, IT, float, CONV, ATTR) RUNS(N##_f64, IT, double, CONV, ATTR)
#define ADD2(N, IT, CONV) ADDA(N, IT, CONV, CLONES)
#define ADD1(N, IT, CONV) ADDA(N, IT, CONV, )

ADD1(u8, uint8_t, x)
ADD1(i8, int8_t, x)
ADD2(u16, uint16_t, x)
ADD2(i16, int16_t, x)
ADD2(u32, uint32_t, x)
ADD2(i32, int32_t, x)
ADD2(f32, float, x)
ADD2(f64, double, x)
ADD2(i64, int64_t, x)
ADD2(u64, uint64_t, x)
ADD1(b8, uint8_t, x != 0)
#ifdef __FLT16_MAX__
/* binary16 widens exactly to either float type. */
ADD2(f16, _Float16, x)
#define F16_KERNELS { add_f16_f32, add_f16_f64 }
#define F16_RUNS { runs_f16_f32, runs_f16_f64 }
#else
#define F16_KERNELS { NULL, NULL }
#define F16_RUNS { NULL, NULL }
#endif

#define KROW(N) { add_##N##_f32, add_##N##_f64 }
static const add_fn add_kernels[PM_DTYPE_COUNT][2] = {
	[PM_DTYPE_U8] = KROW(u8),   [PM_DTYPE_I8] = KROW(i8),   [PM_DTYPE_U16] = KROW(u16),
	[PM_DTYPE_I16] = KROW(i16), [PM_DTYPE_U32] = KROW(u32), [PM_DTYPE_I32] = KROW(i32),
	[PM_DTYPE_F32] = KROW(f32), [PM_DTYPE_F64] = KROW(f64), [PM_DTYPE_I64] = KROW(i64),
	[PM_DTYPE_U64] = KROW(u64), [PM_DTYPE_BOOL] = KROW(b8), [PM_DTYPE_F16] = F16_KERNELS,
};

#define RROW(N) { runs_##N##_f32, runs_##N##_f64 }
static const runs_fn runs_kernels[PM_DTYPE_COUNT][2] = {
	[PM_DTYPE_U8] = RROW(u8),   [PM_DTYPE_I8] = RROW(i8),   [PM_DTYPE_U16] = RROW(u16),
	[PM_DTYPE_I16] = RROW(i16), [PM_DTYPE_U32] = RROW(u32), [PM_DTYPE_I32] = RROW(i32),
	[PM_DTYPE_F32] = RROW(f32), [PM_DTYPE_F64] = RROW(f64), [PM_DTYPE_I64] = RROW(i64),
	[PM_DTYPE_U64] = RROW(u64), [PM_DTYPE_BOOL] = RROW(b8), [PM_DTYPE_F16] = F16_RUNS,
};

/* One window element: where it lands relative to the window's first
 * sample (out_rel bytes; disp per axis in samples) and where it is read
 * in the input row (in_rel bytes). */
struct elem {
	ptrdiff_t out_rel, in_rel;
};

struct plan {
	struct pm__geom g;
	int ns;
	size_t E;                     /* window elements */
	size_t K;                     /* spatial elements of a window */
	struct elem *el;              /* E */
	int64_t *disp;                /* E * ns: the element's displacement per axis */
	struct run *runs;             /* element runs, none across two first-axis rows */
	size_t nruns;
	bool contiguous;              /* every run reads and writes consecutive values */
	size_t *sp_j;                 /* K: the elements of channel 0 */
	ptrdiff_t ostr[PM_MAX_DIMS];  /* output byte stride per spatial axis */
	ptrdiff_t ocstr;              /* ... and of the channel */
	size_t oes, ies;
	add_fn add;
	runs_fn runs_add;
	/* the input: at `in`, or read from `matrix` in blocks of block_rows */
	const char *in;
	const pm_matrix *matrix;
	size_t block_rows;
	size_t nrows;
	ptrdiff_t wstride;            /* bytes between windows' values */
	ptrdiff_t estride;            /* bytes between a window's values */
	int per;                      /* 0: per element, 1: per channel, 2: one value */
};

static size_t dtype_size(int t)
{
	return pm_dtype_size(t);
}

/* Element j of a window in the column order: its spatial offsets and
 * channel. */
static void elem_coords(const struct pm__geom *g, size_t j, int64_t *e, int64_t *c)
{
	size_t K = g->window_elems / (size_t)g->channels, s;

	if (g->order == PM_ORDER_CHANNEL) {
		*c = (int64_t)(j / K);
		s = j % K;
	} else {
		*c = (int64_t)(j % (size_t)g->channels);
		s = j / (size_t)g->channels;
	}
	for (int a = g->ns - 1; a >= 0; a--) {
		e[a] = (int64_t)(s % (size_t)g->ax[a].k);
		s /= (size_t)g->ax[a].k;
	}
}

static void plan_free(struct plan *p)
{
	free(p->el);
	free(p->disp);
	free(p->runs);
	free(p->sp_j);
}

static int plan_tables(struct plan *p)
{
	const struct pm__geom *g = &p->g;
	size_t E = p->E, k = 0, ns = (size_t)p->ns;

	p->el = malloc(E * sizeof(*p->el));
	p->disp = malloc(E * ns * sizeof(*p->disp));
	p->runs = malloc(E * sizeof(*p->runs));
	p->sp_j = malloc(p->K * sizeof(*p->sp_j));
	if (!p->el || !p->disp || !p->runs || !p->sp_j)
		return -ENOMEM;
	for (size_t j = 0; j < E; j++) {
		int64_t e[PM_MAX_DIMS], c;
		ptrdiff_t o = 0;

		elem_coords(g, j, e, &c);
		if (c == 0)
			p->sp_j[k++] = j;
		for (int a = 0; a < p->ns; a++) {
			p->disp[j * ns + (size_t)a] = e[a] * g->ax[a].dil;
			o += (ptrdiff_t)(e[a] * g->ax[a].dil) * p->ostr[a];
		}
		o += (ptrdiff_t)c * p->ocstr;
		p->el[j].out_rel = o;
		p->el[j].in_rel = p->per == 0 ? (ptrdiff_t)j * p->estride
				: p->per == 1 ? (ptrdiff_t)c * p->estride : 0;
	}
	/* Runs of constant steps, for the windows that read no padding; a run
	 * stays within one first-axis row, so that a band takes whole runs. */
	p->nruns = 0;
	p->contiguous = true;
	for (size_t j = 0; j < E;) {
		struct run r = { .j = j, .n = 1, .d0 = p->disp[j * ns] };

		if (j + 1 < E && p->disp[(j + 1) * ns] == r.d0) {
			r.ostep = p->el[j + 1].out_rel - p->el[j].out_rel;
			r.istep = p->el[j + 1].in_rel - p->el[j].in_rel;
			while (j + r.n < E && p->disp[(j + r.n) * ns] == r.d0 &&
			       p->el[j + r.n].out_rel - p->el[j + r.n - 1].out_rel == r.ostep &&
			       p->el[j + r.n].in_rel - p->el[j + r.n - 1].in_rel == r.istep)
				r.n++;
		}
		r.orel = p->el[j].out_rel;
		r.irel = p->el[j].in_rel;
		if (r.n > 1 && (r.ostep != (ptrdiff_t)p->oes || r.istep != (ptrdiff_t)p->ies))
			p->contiguous = false;
		p->runs[p->nruns++] = r;
		j += r.n;
	}
	return 0;
}

/* The window's first sample (padded coordinates) per axis. */
static void window_base(const struct pm__geom *g, uint64_t w, int64_t *base)
{
	for (int a = g->ns - 1; a >= 0; a--) {
		int64_t pos = (int64_t)(w % (uint64_t)g->ax[a].out);

		w /= (uint64_t)g->ax[a].out;
		base[a] = pos * g->ax[a].step - g->ax[a].pad_before;
	}
}

static bool window_interior(const struct pm__geom *g, const int64_t *base)
{
	for (int a = 0; a < g->ns; a++)
		if (base[a] < 0 || base[a] + (g->ax[a].k - 1) * g->ax[a].dil >= g->ax[a].n)
			return false;
	return true;
}

/* Adds the part of one window's values (at `in`) that lands in first-axis
 * rows [y0, y1) into the output. */
static void fold_window(const struct plan *p, char *out, const int64_t *base, const char *in,
			int64_t y0, int64_t y1)
{
	const struct pm__geom *g = &p->g;
	ptrdiff_t ob = 0;

	for (int a = 0; a < p->ns; a++)
		ob += (ptrdiff_t)base[a] * p->ostr[a];
	if (window_interior(g, base)) {
		if (p->contiguous) {
			p->runs_add(out + ob, p->runs, p->nruns, in, y0 - base[0], y1 - base[0]);
			return;
		}
		for (size_t r = 0; r < p->nruns; r++) {
			const struct run *ru = &p->runs[r];

			if (base[0] + ru->d0 < y0 || base[0] + ru->d0 >= y1)
				continue;
			p->add(out + ob + ru->orel, ru->ostep, in + ru->irel, ru->istep, ru->n);
		}
		return;
	}
	for (size_t j = 0; j < p->E; j++) {
		const int64_t *d = &p->disp[j * (size_t)p->ns];
		bool inside = base[0] + d[0] >= y0 && base[0] + d[0] < y1;

		for (int a = 0; a < p->ns && inside; a++) {
			int64_t c = base[a] + d[a];

			inside = c >= 0 && c < g->ax[a].n;
		}
		if (inside)
			p->add(out + ob + p->el[j].out_rel, 0, in + p->el[j].in_rel, 0, 1);
	}
}

/* Visits the output line by line (the last source axis), in C order of the
 * source axes, with the line's spatial coordinates: the first spatial axis
 * limited to a band. */
struct walk {
	int ndim;
	size_t shape[PM_MAX_DIMS];
	ptrdiff_t str[PM_MAX_DIMS];
	int sp[PM_MAX_DIMS];          /* source axis -> spatial axis, -1: channel */
};

struct line {
	size_t n;                     /* samples */
	ptrdiff_t str;                /* bytes between them */
	int sp;                       /* the spatial axis they advance, -1: the channel */
};

typedef void (*visit_fn)(void *ctx, char *o, const int64_t *coord, const struct line *ln);

static void walk_band(const struct walk *w, char *out, int64_t y0, int64_t y1, visit_fn fn,
		      void *ctx)
{
	size_t idx[PM_MAX_DIMS] = { 0 }, shape[PM_MAX_DIMS];
	int64_t coord[PM_MAX_DIMS] = { 0 }, start[PM_MAX_DIMS] = { 0 };
	int last = w->ndim - 1;
	struct line ln = { w->shape[last], w->str[last], w->sp[last] };
	char *o = out;

	for (int i = 0; i < w->ndim; i++) {
		shape[i] = w->shape[i];
		if (w->sp[i] == 0) {
			shape[i] = (size_t)(y1 - y0);
			o += (ptrdiff_t)y0 * w->str[i];
			start[0] = y0;
		}
	}
	if (last >= 0 && ln.sp == 0)
		ln.n = shape[last];
	coord[0] = start[0];
	if (!shape[0] || !ln.n)
		return;
	for (;;) {
		fn(ctx, o, coord, &ln);
		int i = last - 1;
		for (; i >= 0; i--) {
			int a = w->sp[i];

			o += w->str[i];
			if (a >= 0)
				coord[a]++;
			if (++idx[i] < shape[i])
				break;
			o -= w->str[i] * (ptrdiff_t)shape[i];
			if (a >= 0)
				coord[a] = start[a];
			idx[i] = 0;
		}
		if (i < 0)
			return;
	}
}

struct finish {
	int mode;
	bool f64;
	int ns;
	size_t oes;
	int64_t *axcount[PM_MAX_DIMS]; /* full matrix: count per axis coordinate */
	const uint32_t *cnt;            /* selection: count per pixel */
	ptrdiff_t cstr[PM_MAX_DIMS];    /* its strides in elements */
};

static void zero_visit(void *ctx, char *o, const int64_t *coord, const struct line *ln)
{
	const struct finish *fz = ctx;

	(void)coord;
	if (ln->str == (ptrdiff_t)fz->oes) {
		memset(o, 0, ln->n * fz->oes);
		return;
	}
	for (size_t i = 0; i < ln->n; i++)
		memset(o + (ptrdiff_t)i * ln->str, 0, fz->oes);
}

/* The number of contributions to the sample at coord. */
static double sample_count(const struct finish *fz, const int64_t *coord)
{
	double n = 1;

	if (fz->cnt) {
		ptrdiff_t k = 0;

		for (int a = 0; a < fz->ns; a++)
			k += (ptrdiff_t)coord[a] * fz->cstr[a];
		return fz->cnt[k];
	}
	for (int a = 0; a < fz->ns; a++)
		n *= (double)fz->axcount[a][coord[a]];
	return n;
}

static void finish_visit(void *ctx, char *line, const int64_t *line_coord, const struct line *ln)
{
	const struct finish *fz = ctx;
	int64_t coord[PM_MAX_DIMS];

	memcpy(coord, line_coord, sizeof(coord));
	for (size_t i = 0; i < ln->n; i++) {
		char *o = line + (ptrdiff_t)i * ln->str;
		double n;

		if (ln->sp >= 0)
			coord[ln->sp] = line_coord[ln->sp] + (int64_t)i;
		n = sample_count(fz, coord);
		if (fz->f64) {
			double *v = (double *)o;

			*v = fz->mode == PM_FOLD_COUNT ? n : n > 0 ? *v / n : 0.0;
		} else {
			float *v = (float *)o;

			*v = fz->mode == PM_FOLD_COUNT ? (float)n : n > 0 ? *v / (float)n : 0.0f;
		}
	}
}

/* Windows covering coordinate x of axis a: positions q with q*step + e*dil
 * - pad = x for some e in [0, k). */
static void axis_counts(const struct pm__axis *ax, int64_t *cnt)
{
	memset(cnt, 0, (size_t)ax->n * sizeof(*cnt));
	for (int64_t e = 0; e < ax->k; e++) {
		int64_t off = e * ax->dil - ax->pad_before;

		/* x = q*step + off for q in [0, out): only those inside [0, n). */
		int64_t q0 = off >= 0 ? 0 : (-off + ax->step - 1) / ax->step;

		for (int64_t q = q0; q < ax->out; q++) {
			int64_t x = q * ax->step + off;

			if (x >= ax->n)
				break;
			cnt[x]++;
		}
	}
}

/* Counts each pixel's contributions from a selection (one per window
 * covering it: a pixel is covered at most once per row). */
static void count_selection(const struct plan *p, const struct finish *fz, uint32_t *cnt)
{
	for (size_t r = 0; r < p->nrows; r++) {
		uint64_t win = p->g.sel ? p->g.sel[r] : p->g.sel_begin + r;
		int64_t base[PM_MAX_DIMS];
		ptrdiff_t cb = 0;
		bool interior;

		window_base(&p->g, win, base);
		interior = window_interior(&p->g, base);
		for (int a = 0; a < p->ns; a++)
			cb += (ptrdiff_t)base[a] * fz->cstr[a];
		/* The spatial elements are those of channel 0. */
		for (size_t t = 0; t < p->K; t++) {
			const int64_t *d = &p->disp[p->sp_j[t] * (size_t)p->ns];
			ptrdiff_t k = cb;
			bool inside = true;

			for (int a = 0; a < p->ns; a++) {
				if (!interior && (base[a] + d[a] < 0 || base[a] + d[a] >= p->g.ax[a].n))
					inside = false;
				k += (ptrdiff_t)d[a] * fz->cstr[a];
			}
			if (inside)
				cnt[k]++;
		}
	}
}

/* One band of the output: first-axis rows [y0, y1), zeroed, summed into
 * and finished by one thread. */
struct band {
	const struct plan *p;
	const struct walk *w;
	struct finish *fz;
	char *out;
	int64_t y0, y1;
	char *buf;                    /* block_rows rows of the matrix input */
	int err;                      /* the first read error */
	pthread_t thread;
	bool started;
};

/* The stored rows [*r0, *r1) whose windows can reach rows [y0, y1) when
 * the rows are consecutive windows. */
static void band_rows(const struct plan *p, int64_t y0, int64_t y1, size_t *r0, size_t *r1)
{
	const struct pm__axis *ax = &p->g.ax[0];
	uint64_t inner = (uint64_t)p->g.windows / (uint64_t)ax->out;
	int64_t lo = y0 + ax->pad_before - (ax->k - 1) * ax->dil;
	int64_t qlo = lo <= 0 ? 0 : (lo + ax->step - 1) / ax->step;
	int64_t qhi = (y1 - 1 + ax->pad_before) / ax->step + 1;
	uint64_t wlo, whi;

	if (qhi > ax->out)
		qhi = ax->out;
	if (qlo >= qhi) {
		*r0 = *r1 = 0;
		return;
	}
	wlo = (uint64_t)qlo * inner;
	whi = (uint64_t)qhi * inner;
	*r0 = wlo > p->g.sel_begin ? (size_t)(wlo - p->g.sel_begin) : 0;
	*r1 = whi > p->g.sel_begin ? (size_t)(whi - p->g.sel_begin) : 0;
	if (*r1 > p->nrows)
		*r1 = p->nrows;
	if (*r0 > *r1)
		*r0 = *r1;
}

/* The input of stored rows [r, r + n): a pointer to row r, or (matrix
 * input) the rows read into the band's buffer. NULL after a read error. */
static const char *band_input(struct band *b, size_t r, size_t n)
{
	const struct plan *p = b->p;
	int ret;

	if (!p->matrix)
		return p->in + (ptrdiff_t)r * p->wstride;
	ret = pm_matrix_read(p->matrix, r * (size_t)p->wstride, b->buf, n * (size_t)p->wstride);
	if (ret) {
		b->err = ret;
		return NULL;
	}
	return b->buf;
}

static bool reaches(const struct band *b, const int64_t *base)
{
	const struct pm__axis *ax = &b->p->g.ax[0];

	return base[0] + (ax->k - 1) * ax->dil >= b->y0 && base[0] < b->y1;
}

/* An index or mask selection: every row is looked at, in blocks. */
static void band_sum_selection(struct band *b)
{
	const struct plan *p = b->p;
	const struct pm__geom *g = &p->g;

	for (size_t r0 = 0; r0 < p->nrows; r0 += p->block_rows) {
		size_t n = p->nrows - r0 < p->block_rows ? p->nrows - r0 : p->block_rows;
		const char *in = NULL;

		for (size_t r = r0; r < r0 + n; r++) {
			int64_t base[PM_MAX_DIMS];

			window_base(g, g->sel[r], base);
			if (!reaches(b, base))
				continue;
			if (!in && !(in = band_input(b, r0, n)))
				return;
			fold_window(p, b->out, base, in + (ptrdiff_t)(r - r0) * p->wstride, b->y0, b->y1);
		}
	}
}

static void band_sum(struct band *b)
{
	const struct plan *p = b->p;
	const struct pm__geom *g = &p->g;
	size_t r0, r1;

	if (g->sel) {
		band_sum_selection(b);
		return;
	}
	band_rows(p, b->y0, b->y1, &r0, &r1);
	/* Consecutive windows: their positions advance like an odometer. */
	int64_t pos[PM_MAX_DIMS], base[PM_MAX_DIMS];
	uint64_t w = p->g.sel_begin + r0;

	for (int a = g->ns - 1; a >= 0; a--) {
		pos[a] = (int64_t)(w % (uint64_t)g->ax[a].out);
		w /= (uint64_t)g->ax[a].out;
	}
	for (size_t rb = r0; rb < r1; rb += p->block_rows) {
		size_t n = r1 - rb < p->block_rows ? r1 - rb : p->block_rows;
		const char *in = band_input(b, rb, n);

		if (!in)
			return;
		for (size_t r = 0; r < n; r++) {
			for (int a = 0; a < g->ns; a++)
				base[a] = pos[a] * g->ax[a].step - g->ax[a].pad_before;
			fold_window(p, b->out, base, in + (ptrdiff_t)r * p->wstride, b->y0, b->y1);
			for (int a = g->ns - 1; a >= 0; a--) {
				if (++pos[a] < g->ax[a].out)
					break;
				pos[a] = 0;
			}
		}
	}
}

static void *band_run(void *arg)
{
	struct band *b = arg;
	struct finish *fz = b->fz;

	walk_band(b->w, b->out, b->y0, b->y1, zero_visit, fz);
	if (b->p->add)
		band_sum(b);
	if (fz->mode != PM_FOLD_SUM)
		walk_band(b->w, b->out, b->y0, b->y1, finish_visit, fz);
	return NULL;
}

/* Below this many contributions a fold runs in the calling thread unless
 * a thread count is given. */
#define FOLD_THREAD_MIN ((size_t)1 << 20)
#define FOLD_MAX_THREADS 8

static int fold_threads(const struct pm_matrix_opts *opts, const struct plan *p)
{
	int64_t rows = p->g.ax[0].n;
	long t = opts->lazy.threads;

	if (t <= 0) {
		if (p->nrows * p->E < FOLD_THREAD_MIN)
			return 1;
		t = sysconf(_SC_NPROCESSORS_ONLN);
		if (t > FOLD_MAX_THREADS)
			t = FOLD_MAX_THREADS;
	}
	if (t < 1)
		t = 1;
	return (int)(t < rows ? t : rows);
}

/* Runs the bands, nt - 1 of them in new threads and the first in the
 * caller; a band whose thread cannot start runs in the caller too.
 * Returns the first band's read error, or 0. */
static int run_bands(struct band *bands, int nt)
{
	int ret = 0;

	for (int t = 1; t < nt; t++)
		bands[t].started = pthread_create(&bands[t].thread, NULL, band_run, &bands[t]) == 0;
	band_run(&bands[0]);
	for (int t = 1; t < nt; t++) {
		if (bands[t].started)
			pthread_join(bands[t].thread, NULL);
		else
			band_run(&bands[t]);
	}
	for (int t = 0; t < nt && !ret; t++)
		ret = bands[t].err;
	return ret;
}

/* Bytes of the matrix input each thread reads at a time. */
#define FOLD_BLOCK_BYTES ((size_t)1 << 20)

int pm_fold(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
	    const struct pm_fold_opts *f)
{
	struct plan p;
	struct walk w;
	struct finish fz;
	struct band *bands = NULL;
	const struct pm_source *s;
	uint32_t *cnt = NULL;
	uint64_t *sel = NULL;
	size_t in_es, nrows, E, C, vals, cols_geom;
	ptrdiff_t rs, cs;
	bool f64, full;
	struct pm_fold_opts fo;
	int ret, odt, nt;

	if (!opts || !f)
		return -PM_ENULL;
	/* Before the matrix field, the struct ended at out_strides. */
	if (f->size != 0 && f->size != sizeof(*f) &&
	    f->size != offsetof(struct pm_fold_opts, matrix))
		return -PM_EOPTSIZE;
	memset(&fo, 0, sizeof(fo));
	memcpy(&fo, f, f->size ? f->size : sizeof(fo));
	f = &fo;
	memset(&p, 0, sizeof(p));
	memset(&fz, 0, sizeof(fz));
	ret = pm__geom_init(&p.g, opts, false);
	if (ret)
		return ret;
	ret = pm__geom_select(&p.g, rows, &sel);
	if (ret)
		return ret;
	full = p.g.sel == NULL && p.g.sel_begin == 0 && p.g.rows == (p.g.layout == PM_LAYOUT_ROWS
								     ? p.g.windows : p.g.window_elems);
	if (f->mode < 0 || f->mode >= PM_FOLD_MODE_COUNT) {
		ret = -PM_EFOLDMODE;
		goto out;
	}
	odt = f->out_dtype == PM_DTYPE_SAME ? PM_DTYPE_F64 : f->out_dtype;
	if (odt != PM_DTYPE_F32 && odt != PM_DTYPE_F64) {
		ret = -PM_EOUTDTYPE;
		goto out;
	}
	f64 = odt == PM_DTYPE_F64;
	if (f->mode != PM_FOLD_COUNT &&
	    (f->dtype <= PM_DTYPE_SAME || f->dtype >= PM_DTYPE_COUNT || !add_kernels[f->dtype][0])) {
		ret = -PM_EDTYPE;
		goto out;
	}
	if (f->matrix && f->mode != PM_FOLD_COUNT) {
		struct pm_matrix_info mi = { .size = sizeof(mi) };

		/* A matrix input streams by windows: one stored row each. */
		if (p.g.layout != PM_LAYOUT_ROWS) {
			ret = -PM_EROWSLAYOUT;
			goto out;
		}
		ret = pm_matrix_info(f->matrix, &mi);
		if (ret)
			goto out;
		fo.data = NULL;
		fo.dtype = mi.dtype;
		fo.rows = mi.rows;
		fo.cols = mi.cols;
		fo.row_stride = (ptrdiff_t)(mi.ld * mi.elem_size);
		fo.col_stride = (ptrdiff_t)mi.elem_size;
		p.matrix = f->matrix;
	}
	if (!f->out || (f->mode != PM_FOLD_COUNT && !f->data && !p.matrix)) {
		ret = -PM_ENULL;
		goto out;
	}

	/* The input's shape: windows (or selected rows) by values per window. */
	E = p.g.window_elems;
	C = (size_t)p.g.channels;
	nrows = p.g.layout == PM_LAYOUT_ROWS ? p.g.rows : p.g.cols;
	vals = p.g.layout == PM_LAYOUT_ROWS ? f->cols : f->rows;
	if ((p.g.layout == PM_LAYOUT_ROWS ? f->rows : f->cols) != nrows ||
	    (vals != E && vals != C && vals != 1)) {
		ret = -PM_EFOLDSHAPE;
		goto out;
	}
	p.per = vals == E ? 0 : vals == 1 ? 2 : 1;
	in_es = f->mode == PM_FOLD_COUNT ? 1 : dtype_size(f->dtype);
	rs = f->row_stride;
	cs = f->col_stride;
	if (rs == 0 && cs == 0) {
		cs = (ptrdiff_t)in_es;
		cols_geom = p.g.cols;
		rs = (ptrdiff_t)(f->cols * in_es);
		/* A full-width input of a pitched geometry: rows a pitch apart. */
		if (opts->row_pitch && f->cols == cols_geom && p.g.out_size == in_es)
			rs = (ptrdiff_t)opts->row_pitch;
	}
	p.wstride = p.g.layout == PM_LAYOUT_ROWS ? rs : cs;
	p.estride = p.g.layout == PM_LAYOUT_ROWS ? cs : rs;
	p.in = f->data;
	p.nrows = nrows;
	p.block_rows = 1;
	if (p.matrix && (size_t)p.wstride < FOLD_BLOCK_BYTES)
		p.block_rows = FOLD_BLOCK_BYTES / (size_t)p.wstride;

	/* The output's strides, per spatial axis and for the channel. */
	s = &opts->source;
	w.ndim = s->ndim;
	p.oes = f64 ? 8 : 4;
	p.ies = in_es;
	p.ns = p.g.ns;
	{
		bool given = false;
		ptrdiff_t st = (ptrdiff_t)p.oes;

		for (int i = 0; i < s->ndim; i++)
			given |= f->out_strides[i] != 0;
		for (int i = s->ndim - 1, a = p.ns - 1; i >= 0; i--) {
			w.shape[i] = s->shape[i];
			w.str[i] = given ? f->out_strides[i] : st;
			st *= (ptrdiff_t)s->shape[i];
			if (s->has_channels && i == s->channel_axis) {
				w.sp[i] = -1;
				p.ocstr = w.str[i];
			} else {
				w.sp[i] = a;
				p.ostr[a--] = w.str[i];
			}
		}
	}
	p.add = f->mode == PM_FOLD_COUNT ? NULL : add_kernels[f->dtype][f64];
	p.runs_add = f->mode == PM_FOLD_COUNT ? NULL : runs_kernels[f->dtype][f64];
	p.E = E;
	p.K = E / C;
	ret = plan_tables(&p);
	if (ret)
		goto out;

	/* Counts: per axis for the full matrix, per pixel for a selection. */
	fz.mode = f->mode;
	fz.f64 = f64;
	fz.ns = p.ns;
	fz.oes = p.oes;
	if (f->mode != PM_FOLD_SUM) {
		if (full) {
			for (int a = 0; a < p.ns; a++) {
				fz.axcount[a] = malloc((size_t)p.g.ax[a].n * sizeof(int64_t));
				if (!fz.axcount[a]) {
					ret = -ENOMEM;
					goto out;
				}
				axis_counts(&p.g.ax[a], fz.axcount[a]);
			}
		} else {
			size_t px = 1;

			/* A pixel is covered at most once per row. */
			if (nrows > UINT32_MAX) {
				ret = -PM_ETOOBIG;
				goto out;
			}
			for (int a = p.ns - 1; a >= 0; a--) {
				fz.cstr[a] = (ptrdiff_t)px;
				px *= (size_t)p.g.ax[a].n;
			}
			cnt = calloc(px, sizeof(*cnt));
			if (!cnt) {
				ret = -ENOMEM;
				goto out;
			}
			fz.cnt = cnt;
		}
	}
	nt = fold_threads(opts, &p);
	bands = calloc((size_t)nt, sizeof(*bands));
	if (!bands) {
		ret = -ENOMEM;
		goto out;
	}

	for (int t = 0; t < nt; t++) {
		bands[t] = (struct band){ .p = &p, .w = &w, .fz = &fz, .out = f->out,
					  .y0 = p.g.ax[0].n * t / nt,
					  .y1 = p.g.ax[0].n * (t + 1) / nt };
		if (p.matrix && p.add && !(bands[t].buf = malloc(p.block_rows * (size_t)p.wstride))) {
			ret = -ENOMEM;
			goto out;
		}
	}

	/* Nothing failed: write the output. */
	if (cnt)
		count_selection(&p, &fz, cnt);
	ret = run_bands(bands, nt);
out:
	for (int a = 0; a < PM_MAX_DIMS; a++)
		free(fz.axcount[a]);
	for (int t = 0; bands && t < nt; t++)
		free(bands[t].buf);
	free(bands);
	free(cnt);
	free(sel);
	plan_free(&p);
	return ret;
}
