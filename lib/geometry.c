/* geometry.c: checks a matrix description and derives every size and index
 * split the fill needs. All arithmetic on user numbers is overflow-checked. */
#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "geometry.h"

static bool is_float(int dtype)
{
	return dtype == PM_DTYPE_F32 || dtype == PM_DTYPE_F64;
}

/* v as an IEEE binary16, rounded to nearest (ties to even) as numpy's
 * float64 -> float16 cast does; -1 if finite v is above the largest half. */
static int half_bits(double v, uint16_t *out)
{
	uint16_t sign = signbit(v) ? 0x8000 : 0;
	double a = fabs(v);
	int ex;

	if (isnan(v)) {
		*out = sign | 0x7e00;
		return 0;
	}
	if (isinf(v)) {
		*out = sign | 0x7c00;
		return 0;
	}
	if (a > 65504.0)
		return -1;
	if (a < 0x1p-14) {
		/* subnormal: units of 2^-24; a carry to 1024 is the smallest normal */
		*out = sign | (uint16_t)rint(a * 0x1p24);
		return 0;
	}
	frexp(a, &ex); /* a = f * 2^ex, f in [0.5, 1): exponent ex - 1 */
	/* 11 significant bits; a carry to 2048 moves into the exponent */
	*out = sign | (uint16_t)(((unsigned)(ex - 1 + 15) << 10) +
				 ((unsigned)rint(ldexp(a, 11 - ex)) - 1024));
	return 0;
}

/* Stores v as a sample of `dtype` in out, or fails if that sample would
 * not be v (floats: if v overflows the type, or a nonzero v rounds to 0;
 * it is rounded otherwise). */
static int pad_sample(int dtype, double v, unsigned char *out)
{
	switch (dtype) {
	case PM_DTYPE_F64:
		memcpy(out, &v, sizeof v);
		return 0;
	case PM_DTYPE_F32: {
		float f = (float)v;

		if (isfinite(v) && (fabs(v) > FLT_MAX || (f == 0 && v != 0)))
			return -PM_EPADVALUE; /* overflows, or rounds to 0 */
		memcpy(out, &f, sizeof f);
		return 0;
	}
	case PM_DTYPE_F16: {
		uint16_t h;

		if (half_bits(v, &h) || (!(h & 0x7fff) && v != 0))
			return -PM_EPADVALUE; /* overflows, or rounds to 0 */
		memcpy(out, &h, sizeof h);
		return 0;
	}
	}
	/* Integers: v must be one exactly. The 64-bit bounds are powers of two
	 * (2^63, 2^64), exact as doubles; INT64_MAX itself is not a double. */
	if (v != floor(v))
		return -PM_EPADVALUE;
	switch (dtype) {
	case PM_DTYPE_I64: {
		if (!(v >= -0x1p63 && v < 0x1p63))
			return -PM_EPADVALUE;
		int64_t x = (int64_t)v;
		memcpy(out, &x, 8);
		return 0;
	}
	case PM_DTYPE_U64: {
		if (!(v >= 0 && v < 0x1p64))
			return -PM_EPADVALUE;
		uint64_t x = (uint64_t)v;
		memcpy(out, &x, 8);
		return 0;
	}
	}
	static const struct {
		double lo, hi;
		size_t size;
	} range[PM_DTYPE_COUNT] = {
		[PM_DTYPE_U8] = { 0, 255, 1 },           [PM_DTYPE_I8] = { -128, 127, 1 },
		[PM_DTYPE_U16] = { 0, 65535, 2 },        [PM_DTYPE_I16] = { -32768, 32767, 2 },
		[PM_DTYPE_U32] = { 0, 4294967295.0, 4 }, [PM_DTYPE_I32] = { -2147483648.0, 2147483647.0, 4 },
		[PM_DTYPE_BOOL] = { 0, 1, 1 },
	};
	if (!(v >= range[dtype].lo && v <= range[dtype].hi))
		return -PM_EPADVALUE;
	switch (dtype) {
	case PM_DTYPE_U8: case PM_DTYPE_BOOL: { uint8_t x = (uint8_t)v; memcpy(out, &x, 1); break; }
	case PM_DTYPE_I8: { int8_t x = (int8_t)v; memcpy(out, &x, 1); break; }
	case PM_DTYPE_U16: { uint16_t x = (uint16_t)v; memcpy(out, &x, 2); break; }
	case PM_DTYPE_I16: { int16_t x = (int16_t)v; memcpy(out, &x, 2); break; }
	case PM_DTYPE_U32: { uint32_t x = (uint32_t)v; memcpy(out, &x, 4); break; }
	default: { int32_t x = (int32_t)v; memcpy(out, &x, 4); break; }
	}
	return 0;
}

/* Appends the window-element dims (w_0..w_{ns-1} and the channel) in the
 * column order to d; returns the new count. */
static int window_dims(const struct pm__geom *g, struct pm__dim *d, int n)
{
	struct pm__dim c = { g->channels, -1, 1 };

	if (g->order == PM_ORDER_CHANNEL && g->channels > 1)
		d[n++] = c;
	for (int a = 0; a < g->ns; a++)
		d[n++] = (struct pm__dim){ g->ax[a].k, a, g->ax[a].dil };
	if (g->order == PM_ORDER_WINDOW && g->channels > 1)
		d[n++] = c;
	return n;
}

static int position_dims(const struct pm__geom *g, struct pm__dim *d)
{
	for (int a = 0; a < g->ns; a++)
		d[a] = (struct pm__dim){ g->ax[a].out, a, g->ax[a].step };
	return g->ns;
}

int pm__geom_init(struct pm__geom *g, const struct pm_matrix_opts *o, bool need_data)
{
	const struct pm_source *s;
	size_t windows = 1, elems = 1, span = 0, t;
	int ret;

	if (!g || !o)
		return -PM_ENULL;
	if (o->size != 0 && o->size != sizeof(*o))
		return -PM_EOPTSIZE;
	s = &o->source;
	if (need_data && !s->data)
		return -PM_ENULL;
	memset(g, 0, sizeof(*g));
	g->data = s->data;
	if (s->dtype <= PM_DTYPE_SAME || s->dtype >= PM_DTYPE_COUNT)
		return -PM_EDTYPE;
	if (s->ndim < 1 || s->ndim > PM_MAX_DIMS)
		return -PM_ENDIM;
	if (s->has_channels && (s->channel_axis < 0 || s->channel_axis >= s->ndim || s->ndim < 2))
		return -PM_ECHANNEL;
	g->src_dtype = s->dtype;
	g->in_size = pm_dtype_size(s->dtype);
	g->channels = 1;

	for (int i = 0; i < s->ndim; i++) {
		size_t mag = s->strides[i] < 0 ? -(size_t)s->strides[i] : (size_t)s->strides[i];

		if (s->shape[i] == 0)
			return -PM_ESHAPE;
		if (s->shape[i] > (size_t)INT64_MAX / 4 ||
		    __builtin_mul_overflow(s->shape[i] - 1, mag, &t) ||
		    __builtin_add_overflow(span, t, &span) || span > (size_t)PTRDIFF_MAX)
			return -PM_ETOOBIG;
		if (s->has_channels && i == s->channel_axis) {
			g->channels = (int64_t)s->shape[i];
			g->cstride = s->strides[i];
			continue;
		}
		const struct pm_window *w = &o->window[g->ns];
		struct pm__axis *ax = &g->ax[g->ns++];
		int64_t padded, eff;

		if (w->size == 0)
			return -PM_EWINDOW;
		if (w->step == 0)
			return -PM_ESTEP;
		if (w->dilation == 0)
			return -PM_EDILATION;
		if (w->pad_before < 0 || w->pad_after < 0 ||
		    w->pad_before > PM_MAX_PAD || w->pad_after > PM_MAX_PAD)
			return -PM_EPAD;
		padded = (int64_t)s->shape[i] + w->pad_before + w->pad_after;
		if (w->size > (size_t)INT64_MAX || w->dilation > (size_t)INT64_MAX ||
		    __builtin_mul_overflow((int64_t)w->size - 1, (int64_t)w->dilation, &eff) ||
		    eff >= padded)
			return -PM_EWINDOWBIG;
		ax->n = (int64_t)s->shape[i];
		/* An axis of one sample is only ever read at index 0, and its
		 * stride may be anything (numpy leaves it free): 0, so that no
		 * offset of a padded window over it overflows. */
		ax->stride = s->shape[i] == 1 ? 0 : s->strides[i];
		ax->k = (int64_t)w->size;
		ax->step = w->step > (size_t)INT64_MAX ? INT64_MAX : (int64_t)w->step;
		ax->dil = (int64_t)w->dilation;
		ax->pad_before = w->pad_before;
		ax->out = (padded - (eff + 1)) / ax->step + 1;
		if (__builtin_mul_overflow(windows, (size_t)ax->out, &windows) ||
		    __builtin_mul_overflow(elems, (size_t)ax->k, &elems))
			return -PM_ETOOBIG;
	}
	if (g->ns == 0)
		return -PM_ECHANNEL;
	if (__builtin_mul_overflow(elems, (size_t)g->channels, &elems))
		return -PM_ETOOBIG;

	if (o->pad_mode < 0 || o->pad_mode >= PM_PAD_COUNT)
		return -PM_EPADMODE;
	g->pad_mode = o->pad_mode == PM_PAD_ZERO ? PM_PAD_CONSTANT : o->pad_mode;
	ret = pad_sample(g->src_dtype, o->pad_mode == PM_PAD_CONSTANT ? o->pad_value : 0.0,
			 g->pad_sample);
	if (ret)
		return ret;

	if (o->dtype < 0 || o->dtype >= PM_DTYPE_COUNT)
		return -PM_EOUTDTYPE;
	g->dtype = o->dtype == PM_DTYPE_SAME ? g->src_dtype : o->dtype;
	if (g->dtype != g->src_dtype && !is_float(g->dtype))
		return -PM_EOUTDTYPE;
	g->out_size = pm_dtype_size(g->dtype);
	g->affine = o->affine;
	g->scale = o->scale;
	g->offset = o->offset;
	if (g->affine && !is_float(g->dtype))
		return -PM_EAFFINE;
	if (o->order < 0 || o->order >= PM_ORDER_COUNT)
		return -PM_EORDER;
	if (o->layout < 0 || o->layout >= PM_LAYOUT_COUNT)
		return -PM_ELAYOUT;
	g->order = o->order;
	g->layout = o->layout;

	g->windows = windows;
	g->window_elems = elems;
	if (g->layout == PM_LAYOUT_ROWS) {
		g->rows = windows;
		g->cols = elems;
		g->nidx = position_dims(g, g->idx);
		g->nrow = window_dims(g, g->row, 0);
	} else {
		g->rows = elems;
		g->cols = windows;
		g->nidx = window_dims(g, g->idx, 0);
		g->nrow = position_dims(g, g->row);
	}
	if (__builtin_mul_overflow(g->cols, g->out_size, &g->row_bytes))
		return -PM_ETOOBIG;
	g->pitch = o->row_pitch ? o->row_pitch : g->row_bytes;
	if (g->pitch < g->row_bytes || g->pitch % g->out_size)
		return -PM_EPITCH;
	if (__builtin_mul_overflow(g->rows, g->pitch, &g->bytes) || g->bytes > PM__MAX_BYTES)
		return -PM_ETOOBIG;
	return pm__lazy_check(&o->lazy);
}
