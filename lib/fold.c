/* fold.c: col2im. Adds every element of every window of a matrix back into
 * the image sample it shows, in matrix order, streaming the input once; the
 * mean divides by overlap counts computed per axis (full matrix) or counted
 * (selections). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
#define ADD2(N, IT, CONV) ADD(N##_f32, IT, float, CONV) ADD(N##_f64, IT, double, CONV)

ADD2(u8, uint8_t, x)
ADD2(i8, int8_t, x)
ADD2(u16, uint16_t, x)
ADD2(i16, int16_t, x)
ADD2(u32, uint32_t, x)
ADD2(i32, int32_t, x)
ADD2(f32, float, x)
ADD2(f64, double, x)
ADD2(i64, int64_t, x)
ADD2(u64, uint64_t, x)
ADD2(b8, uint8_t, x != 0)
#ifdef __FLT16_MAX__
/* binary16 widens exactly to either float type. */
ADD2(f16, _Float16, x)
#define F16_KERNELS { add_f16_f32, add_f16_f64 }
#else
#define F16_KERNELS { NULL, NULL }
#endif

#define KROW(N) { add_##N##_f32, add_##N##_f64 }
static const add_fn add_kernels[PM_DTYPE_COUNT][2] = {
	[PM_DTYPE_U8] = KROW(u8),   [PM_DTYPE_I8] = KROW(i8),   [PM_DTYPE_U16] = KROW(u16),
	[PM_DTYPE_I16] = KROW(i16), [PM_DTYPE_U32] = KROW(u32), [PM_DTYPE_I32] = KROW(i32),
	[PM_DTYPE_F32] = KROW(f32), [PM_DTYPE_F64] = KROW(f64), [PM_DTYPE_I64] = KROW(i64),
	[PM_DTYPE_U64] = KROW(u64), [PM_DTYPE_BOOL] = KROW(b8), [PM_DTYPE_F16] = F16_KERNELS,
};

/* One window element: where it lands relative to the window's first
 * sample (out_rel bytes; disp per axis in samples) and where it is read
 * in the input row (in_rel bytes). */
struct elem {
	ptrdiff_t out_rel, in_rel;
};

/* A run of elements whose outputs and inputs advance by constant steps. */
struct run {
	size_t j, n;
	ptrdiff_t ostep, istep;
};

struct plan {
	struct pm__geom g;
	int ns;
	size_t E;                     /* window elements */
	size_t K;                     /* spatial elements of a window */
	struct elem *el;              /* E */
	int64_t *disp;                /* E * ns: the element's displacement per axis */
	struct run *runs;
	size_t nruns;
	size_t *sp_j;                 /* K: the elements of channel 0 */
	ptrdiff_t ostr[PM_MAX_DIMS];  /* output byte stride per spatial axis */
	ptrdiff_t ocstr;              /* ... and of the channel */
	size_t oes;
	add_fn add;
	/* the input */
	const char *in;
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
	size_t E = p->E, k = 0;

	p->el = malloc(E * sizeof(*p->el));
	p->disp = malloc(E * (size_t)p->ns * sizeof(*p->disp));
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
			p->disp[j * (size_t)p->ns + (size_t)a] = e[a] * g->ax[a].dil;
			o += (ptrdiff_t)(e[a] * g->ax[a].dil) * p->ostr[a];
		}
		o += (ptrdiff_t)c * p->ocstr;
		p->el[j].out_rel = o;
		p->el[j].in_rel = p->per == 0 ? (ptrdiff_t)j * p->estride
				: p->per == 1 ? (ptrdiff_t)c * p->estride : 0;
	}
	/* Runs of constant steps, for the windows that read no padding. */
	p->nruns = 0;
	for (size_t j = 0; j < E;) {
		struct run r = { j, 1, 0, 0 };

		if (j + 1 < E) {
			r.ostep = p->el[j + 1].out_rel - p->el[j].out_rel;
			r.istep = p->el[j + 1].in_rel - p->el[j].in_rel;
			while (j + r.n < E && p->el[j + r.n].out_rel - p->el[j + r.n - 1].out_rel == r.ostep &&
			       p->el[j + r.n].in_rel - p->el[j + r.n - 1].in_rel == r.istep)
				r.n++;
		}
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

/* Adds one window's values (at `in`) into the output. */
static void fold_window(const struct plan *p, char *out, const int64_t *base, const char *in)
{
	const struct pm__geom *g = &p->g;
	ptrdiff_t ob = 0;

	for (int a = 0; a < p->ns; a++)
		ob += (ptrdiff_t)base[a] * p->ostr[a];
	if (window_interior(g, base)) {
		for (size_t r = 0; r < p->nruns; r++) {
			const struct run *ru = &p->runs[r];

			p->add(out + ob + p->el[ru->j].out_rel, ru->ostep, in + p->el[ru->j].in_rel,
			       ru->istep, ru->n);
		}
		return;
	}
	for (size_t j = 0; j < p->E; j++) {
		const int64_t *d = &p->disp[j * (size_t)p->ns];
		bool inside = true;

		for (int a = 0; a < p->ns && inside; a++) {
			int64_t c = base[a] + d[a];

			inside = c >= 0 && c < g->ax[a].n;
		}
		if (inside)
			p->add(out + ob + p->el[j].out_rel, 0, in + p->el[j].in_rel, 0, 1);
	}
}

/* Calls fn(ctx, offset) for every output sample, in C order of the source
 * axes, with its spatial coordinates. */
struct walk {
	int ndim;
	size_t shape[PM_MAX_DIMS];
	ptrdiff_t str[PM_MAX_DIMS];
	int sp[PM_MAX_DIMS];          /* source axis -> spatial axis, -1: channel */
};

typedef void (*visit_fn)(void *ctx, char *o, const int64_t *coord);

static void walk_all(const struct walk *w, char *out, visit_fn fn, void *ctx)
{
	size_t idx[PM_MAX_DIMS] = { 0 };
	int64_t coord[PM_MAX_DIMS] = { 0 };
	char *o = out;

	for (;;) {
		fn(ctx, o, coord);
		int i = w->ndim - 1;
		for (; i >= 0; i--) {
			o += w->str[i];
			if (w->sp[i] >= 0)
				coord[w->sp[i]]++;
			if (++idx[i] < w->shape[i])
				break;
			o -= w->str[i] * (ptrdiff_t)w->shape[i];
			if (w->sp[i] >= 0)
				coord[w->sp[i]] = 0;
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
	int64_t *axcount[PM_MAX_DIMS]; /* full matrix: count per axis coordinate */
	const uint32_t *cnt;            /* selection: count per pixel */
	ptrdiff_t cstr[PM_MAX_DIMS];    /* its strides in elements */
};

static void zero_visit(void *ctx, char *o, const int64_t *coord)
{
	(void)coord;
	memset(o, 0, *(size_t *)ctx);
}

static void finish_visit(void *ctx, char *o, const int64_t *coord)
{
	const struct finish *fz = ctx;
	double n = 1;

	if (fz->cnt) {
		ptrdiff_t k = 0;

		for (int a = 0; a < fz->ns; a++)
			k += (ptrdiff_t)coord[a] * fz->cstr[a];
		n = fz->cnt[k];
	} else {
		for (int a = 0; a < fz->ns; a++)
			n *= (double)fz->axcount[a][coord[a]];
	}
	if (fz->f64) {
		double *v = (double *)o;

		*v = fz->mode == PM_FOLD_COUNT ? n : n > 0 ? *v / n : 0.0;
	} else {
		float *v = (float *)o;

		*v = fz->mode == PM_FOLD_COUNT ? (float)n : n > 0 ? *v / (float)n : 0.0f;
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

int pm_fold(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
	    const struct pm_fold_opts *f)
{
	struct plan p;
	struct walk w;
	struct finish fz;
	const struct pm_source *s;
	uint32_t *cnt = NULL;
	uint64_t *sel = NULL;
	size_t in_es, nrows, E, C, vals, cols_geom;
	ptrdiff_t rs, cs;
	bool f64, full;
	int ret, odt;

	if (!opts || !f)
		return -PM_ENULL;
	if (f->size != 0 && f->size != sizeof(*f))
		return -PM_EOPTSIZE;
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
	if (!f->out || (f->mode != PM_FOLD_COUNT && !f->data)) {
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

	/* The output's strides, per spatial axis and for the channel. */
	s = &opts->source;
	w.ndim = s->ndim;
	p.oes = f64 ? 8 : 4;
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
	p.E = E;
	p.K = E / C;
	ret = plan_tables(&p);
	if (ret)
		goto out;

	/* Counts: per axis for the full matrix, per pixel for a selection. */
	fz.mode = f->mode;
	fz.f64 = f64;
	fz.ns = p.ns;
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

	/* Nothing failed: write the output. */
	walk_all(&w, f->out, zero_visit, &p.oes);
	for (size_t r = 0; r < nrows; r++) {
		uint64_t win = p.g.sel ? p.g.sel[r] : p.g.sel_begin + r;
		int64_t base[PM_MAX_DIMS];

		window_base(&p.g, win, base);
		if (p.add)
			fold_window(&p, f->out, base, p.in + (ptrdiff_t)r * p.wstride);
		if (cnt) {
			ptrdiff_t cb = 0;
			bool interior = window_interior(&p.g, base);

			for (int a = 0; a < p.ns; a++)
				cb += (ptrdiff_t)base[a] * fz.cstr[a];
			/* The spatial elements are those of channel 0. */
			for (size_t t = 0; t < p.K; t++) {
				const int64_t *d = &p.disp[p.sp_j[t] * (size_t)p.ns];
				ptrdiff_t k = cb;
				bool inside = true;

				for (int a = 0; a < p.ns; a++) {
					if (!interior && (base[a] + d[a] < 0 || base[a] + d[a] >= p.g.ax[a].n))
						inside = false;
					k += (ptrdiff_t)d[a] * fz.cstr[a];
				}
				if (inside)
					cnt[k]++;
			}
		}
	}
	if (f->mode != PM_FOLD_SUM)
		walk_all(&w, f->out, finish_visit, &fz);
out:
	for (int a = 0; a < PM_MAX_DIMS; a++)
		free(fz.axcount[a]);
	free(cnt);
	free(sel);
	plan_free(&p);
	return ret;
}
