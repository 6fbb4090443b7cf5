/* ref.c: the reference im2col. Slow on purpose: one sample at a time, the
 * padding resolved by walking the mirror (not by modular arithmetic, as the
 * library does), every value read through a double. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

static double sample(int dtype, const char *p)
{
	switch (dtype) {
	case PM_DTYPE_U8: { uint8_t v; memcpy(&v, p, 1); return v; }
	case PM_DTYPE_I8: { int8_t v; memcpy(&v, p, 1); return v; }
	case PM_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
	case PM_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
	case PM_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
	case PM_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
	case PM_DTYPE_F32: { float v; memcpy(&v, p, 4); return v; }
	default: { double v; memcpy(&v, p, 8); return v; }
	}
}

static size_t size_of(int dtype)
{
	static const size_t s[] = { 0, 1, 1, 2, 2, 4, 4, 4, 8 };
	return dtype > 0 && dtype <= PM_DTYPE_F64 ? s[dtype] : 0;
}

/* The source index for padded coordinate p on an axis of n samples, or -1
 * for the constant. */
static long long resolve(long long p, long long n, int mode)
{
	if (p >= 0 && p < n)
		return p;
	switch (mode) {
	case PM_PAD_EDGE:
		return p < 0 ? 0 : n - 1;
	case PM_PAD_REFLECT:
		if (n == 1)
			return 0;
		while (p < 0 || p >= n) {
			if (p < 0)
				p = -p;
			if (p >= n)
				p = 2 * (n - 1) - p;
		}
		return p;
	case PM_PAD_SYMMETRIC:
		while (p < 0 || p >= n) {
			if (p < 0)
				p = -p - 1;
			if (p >= n)
				p = 2 * n - 1 - p;
		}
		return p;
	case PM_PAD_WRAP:
		while (p < 0)
			p += n;
		while (p >= n)
			p -= n;
		return p;
	default:
		return -1;
	}
}

static void store(int dtype, bool affine, double scale, double offset, double x, unsigned char *d)
{
	switch (dtype) {
	case PM_DTYPE_F32: {
		float v = (float)x;

		if (affine)
			v = v * (float)scale + (float)offset;
		memcpy(d, &v, 4);
		break;
	}
	case PM_DTYPE_F64: {
		double v = x;

		if (affine)
			v = v * scale + offset;
		memcpy(d, &v, 8);
		break;
	}
	case PM_DTYPE_U8: { uint8_t v = (uint8_t)x; memcpy(d, &v, 1); break; }
	case PM_DTYPE_I8: { int8_t v = (int8_t)x; memcpy(d, &v, 1); break; }
	case PM_DTYPE_U16: { uint16_t v = (uint16_t)x; memcpy(d, &v, 2); break; }
	case PM_DTYPE_I16: { int16_t v = (int16_t)x; memcpy(d, &v, 2); break; }
	case PM_DTYPE_U32: { uint32_t v = (uint32_t)x; memcpy(d, &v, 4); break; }
	default: { int32_t v = (int32_t)x; memcpy(d, &v, 4); break; }
	}
}

int ref_im2col(const struct pm_matrix_opts *o, struct ref_matrix *out)
{
	const struct pm_source *s = &o->source;
	int axis[PM_MAX_DIMS], ns = 0, dtype;
	long long n[PM_MAX_DIMS], k[PM_MAX_DIMS], st[PM_MAX_DIMS], di[PM_MAX_DIMS];
	long long pb[PM_MAX_DIMS], outn[PM_MAX_DIMS], C = 1, windows = 1, kprod = 1;
	ptrdiff_t cstride = 0;
	double pad;

	memset(out, 0, sizeof(*out));
	if (!size_of(s->dtype) || s->ndim < 1 || s->ndim > PM_MAX_DIMS)
		return -1;
	for (int i = 0; i < s->ndim; i++) {
		if (s->has_channels && i == s->channel_axis) {
			C = (long long)s->shape[i];
			cstride = s->strides[i];
			continue;
		}
		const struct pm_window *w = &o->window[ns];
		long long padded = (long long)s->shape[i] + w->pad_before + w->pad_after;
		long long span = ((long long)w->size - 1) * (long long)w->dilation + 1;

		if (!w->size || !w->step || !w->dilation || span > padded)
			return -1;
		axis[ns] = i;
		n[ns] = (long long)s->shape[i];
		k[ns] = (long long)w->size;
		st[ns] = (long long)w->step;
		di[ns] = (long long)w->dilation;
		pb[ns] = w->pad_before;
		outn[ns] = (padded - span) / st[ns] + 1;
		windows *= outn[ns];
		kprod *= k[ns];
		ns++;
	}
	dtype = o->dtype == PM_DTYPE_SAME ? s->dtype : o->dtype;
	out->elem = size_of(dtype);
	out->rows = o->layout == PM_LAYOUT_COLS ? (size_t)(kprod * C) : (size_t)windows;
	out->cols = o->layout == PM_LAYOUT_COLS ? (size_t)windows : (size_t)(kprod * C);
	out->pitch = o->row_pitch ? o->row_pitch : out->cols * out->elem;
	out->data = calloc(out->rows ? out->rows : 1, out->pitch);
	if (!out->data)
		return -1;
	pad = o->pad_mode == PM_PAD_CONSTANT ? o->pad_value : 0.0;
	if (s->dtype == PM_DTYPE_F32)
		pad = (float)pad;

	for (long long r = 0; r < windows; r++) {
		long long pos[PM_MAX_DIMS], rest = r;

		for (int a = ns - 1; a >= 0; a--) {
			pos[a] = rest % outn[a];
			rest /= outn[a];
		}
		for (long long j = 0; j < kprod * C; j++) {
			long long w[PM_MAX_DIMS], c, e;
			ptrdiff_t off;
			bool constant = false;
			double x;

			if (o->order == PM_ORDER_CHANNEL) {
				c = j / kprod;
				e = j % kprod;
			} else {
				c = j % C;
				e = j / C;
			}
			for (int a = ns - 1; a >= 0; a--) {
				w[a] = e % k[a];
				e /= k[a];
			}
			off = (ptrdiff_t)c * cstride;
			for (int a = 0; a < ns; a++) {
				long long p = resolve(pos[a] * st[a] + w[a] * di[a] - pb[a], n[a], o->pad_mode);

				if (p < 0)
					constant = true;
				else
					off += (ptrdiff_t)p * s->strides[axis[a]];
			}
			size_t row = o->layout == PM_LAYOUT_COLS ? (size_t)j : (size_t)r;
			size_t col = o->layout == PM_LAYOUT_COLS ? (size_t)r : (size_t)j;
			unsigned char *d = out->data + row * out->pitch + col * out->elem;

			/* A plain copy keeps every bit, NaN payloads included. */
			if (!constant && dtype == s->dtype && !o->affine) {
				memcpy(d, (const char *)s->data + off, out->elem);
				continue;
			}
			x = constant ? pad : sample(s->dtype, (const char *)s->data + off);
			store(dtype, o->affine, o->scale, o->offset, x, d);
		}
	}
	return 0;
}

void ref_free(struct ref_matrix *m)
{
	free(m->data);
	m->data = NULL;
}
