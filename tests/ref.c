/* ref.c: the reference im2col. Slow on purpose: one sample at a time, the
 * padding resolved by walking the mirror (not by modular arithmetic, as the
 * library does), every value read through a double. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

/* Samples are read into a long double, whose 64-bit significand holds every
 * int64 and uint64 exactly, so each conversion below rounds once. */
static long double sample(int dtype, const char *p)
{
	switch (dtype) {
	case PM_DTYPE_U8: { uint8_t v; memcpy(&v, p, 1); return v; }
	case PM_DTYPE_I8: { int8_t v; memcpy(&v, p, 1); return v; }
	case PM_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
	case PM_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
	case PM_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
	case PM_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
	case PM_DTYPE_I64: { int64_t v; memcpy(&v, p, 8); return v; }
	case PM_DTYPE_U64: { uint64_t v; memcpy(&v, p, 8); return v; }
	case PM_DTYPE_BOOL: { uint8_t v; memcpy(&v, p, 1); return v != 0; }
	case PM_DTYPE_F16: {
		/* By the definition of binary16: sign, 5 exponent bits (bias 15),
		 * 10 fraction bits; exponent 0 is subnormal, 31 infinite or NaN
		 * (NaNs are handled by the caller). */
		uint16_t h;
		int e, f;
		long double x;

		memcpy(&h, p, 2);
		e = h >> 10 & 31;
		f = h & 1023;
		if (e == 31)
			x = f ? NAN : INFINITY;
		else if (e == 0)
			x = ldexpl(f, -24);
		else
			x = ldexpl(1024 + f, e - 25);
		return h & 0x8000 ? -x : x;
	}
	case PM_DTYPE_F32: { float v; memcpy(&v, p, 4); return v; }
	default: { double v; memcpy(&v, p, 8); return v; }
	}
}

/* x (finite, or infinite) to binary16, rounded to nearest even, by
 * searching its binade. */
static uint16_t to_half(long double x)
{
	uint16_t sign = signbit(x) ? 0x8000 : 0;
	long double a = fabsl(x), m;
	int e = -14;

	if (isinf(a) || a >= 65520)
		return sign | 0x7c00;
	if (a < ldexpl(1, -14))
		return sign | (uint16_t)rintl(ldexpl(a, 24));
	while (a >= ldexpl(1, e + 1))
		e++;
	m = rintl(ldexpl(a, 10 - e)); /* 1024..2048 */
	return sign | (uint16_t)(((e + 15) << 10) + (int)m - 1024);
}

static size_t size_of(int dtype)
{
	switch (dtype) {
	case PM_DTYPE_U8: case PM_DTYPE_I8: case PM_DTYPE_BOOL: return 1;
	case PM_DTYPE_U16: case PM_DTYPE_I16: case PM_DTYPE_F16: return 2;
	case PM_DTYPE_U32: case PM_DTYPE_I32: case PM_DTYPE_F32: return 4;
	case PM_DTYPE_U64: case PM_DTYPE_I64: case PM_DTYPE_F64: return 8;
	default: return 0;
	}
}

/* A binary16 NaN widened: numpy's half casts keep the payload in the
 * leading fraction bits and do not quiet a signalling NaN. */
static void half_nan(const char *p, int dtype, unsigned char *d)
{
	uint16_t h;

	memcpy(&h, p, 2);
	if (dtype == PM_DTYPE_F32) {
		uint32_t v = (uint32_t)(h & 0x8000) << 16 | 0x7f800000u | (uint32_t)(h & 1023) << 13;

		memcpy(d, &v, 4);
	} else {
		uint64_t v = (uint64_t)(h & 0x8000) << 48 | 0x7ff0000000000000u |
			     (uint64_t)(h & 1023) << 42;

		memcpy(d, &v, 8);
	}
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

static void store(int dtype, bool affine, double scale, double offset, long double x,
		  unsigned char *d)
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
		double v = (double)x;

		if (affine)
			v = v * scale + offset;
		memcpy(d, &v, 8);
		break;
	}
	case PM_DTYPE_F16: { uint16_t v = to_half(x); memcpy(d, &v, 2); break; }
	case PM_DTYPE_U8: case PM_DTYPE_BOOL: { uint8_t v = (uint8_t)x; memcpy(d, &v, 1); break; }
	case PM_DTYPE_I8: { int8_t v = (int8_t)x; memcpy(d, &v, 1); break; }
	case PM_DTYPE_U16: { uint16_t v = (uint16_t)x; memcpy(d, &v, 2); break; }
	case PM_DTYPE_I16: { int16_t v = (int16_t)x; memcpy(d, &v, 2); break; }
	case PM_DTYPE_U32: { uint32_t v = (uint32_t)x; memcpy(d, &v, 4); break; }
	case PM_DTYPE_I64: { int64_t v = (int64_t)x; memcpy(d, &v, 8); break; }
	case PM_DTYPE_U64: { uint64_t v = (uint64_t)x; memcpy(d, &v, 8); break; }
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
	long double pad;

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
	/* The pad is a sample of the source: rounded to a float source's type. */
	if (s->dtype == PM_DTYPE_F32)
		pad = (float)pad;
	if (s->dtype == PM_DTYPE_F16) {
		uint16_t h = to_half(pad);

		pad = sample(PM_DTYPE_F16, (const char *)&h);
	}

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
			long double x;

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
			if (!constant && s->dtype == PM_DTYPE_F16) {
				uint16_t h;

				memcpy(&h, (const char *)s->data + off, 2);
				if ((h & 0x7c00) == 0x7c00 && (h & 1023)) {
					half_nan((const char *)s->data + off, dtype, d);
					if (o->affine && dtype == PM_DTYPE_F32) {
						float v;

						memcpy(&v, d, 4);
						v = v * (float)o->scale + (float)o->offset;
						memcpy(d, &v, 4);
					} else if (o->affine) {
						double v;

						memcpy(&v, d, 8);
						v = v * o->scale + o->offset;
						memcpy(d, &v, 8);
					}
					continue;
				}
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
