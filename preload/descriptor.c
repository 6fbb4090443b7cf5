/* descriptor.c: parsing .patchmap descriptors, and turning one into patch
 * matrix options. The parser trusts nothing in its buffer: every failure is
 * one line of text naming the key, the value and what is wrong with it. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "descriptor.h"
#include "image.h"

static const char *const key_names[DK_COUNT] = {
	[DK_SOURCE] = "source",
	[DK_SHAPE] = "shape",
	[DK_DTYPE] = "dtype",
	[DK_RAW_OFFSET] = "raw_offset",
	[DK_CHANNEL_AXIS] = "channel_axis",
	[DK_WINDOW] = "window",
	[DK_STEP] = "step",
	[DK_DILATION] = "dilation",
	[DK_PAD] = "pad",
	[DK_PAD_MODE] = "pad_mode",
	[DK_PAD_VALUE] = "pad_value",
	[DK_OUTPUT_DTYPE] = "output_dtype",
	[DK_SCALE] = "scale",
	[DK_OFFSET] = "offset",
	[DK_ORDER] = "order",
	[DK_LAYOUT] = "layout",
	[DK_ROW_PITCH] = "row_pitch",
	[DK_BUDGET] = "budget",
	[DK_CHUNK] = "chunk",
	[DK_BACKEND] = "backend",
	[DK_THREADS] = "threads",
	[DK_READAHEAD] = "readahead",
	[DK_WRITABLE] = "writable",
	[DK_FORMAT] = "format",
};

const char *desc_key_name(int key)
{
	return key >= 0 && key < DK_COUNT ? key_names[key] : NULL;
}

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, DESC_ERRLEN, fmt, ap);
	va_end(ap);
	return -1;
}

/* A value quoted in a message: at most 40 characters of it. */
#define Q(s) (int)(strlen(s) > 40 ? 40 : strlen(s)), (s), (strlen(s) > 40 ? "..." : "")

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

static const char *skip_blank(const char *s)
{
	while (blank(*s))
		s++;
	return s;
}

/* ---------------------------------------------------------------- values */

/* Decimal digits into *v (at most max); *s moves past them. */
static bool eat_uint(const char **s, uint64_t max, uint64_t *v)
{
	const char *p = *s;
	uint64_t x = 0;

	if (!digit(*p))
		return false;
	for (; digit(*p); p++)
		if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x) ||
		    x > max)
			return false;
	*s = p;
	*v = x;
	return true;
}

static bool parse_uint(const char *s, uint64_t max, uint64_t *v)
{
	return eat_uint(&s, max, v) && !*s;
}

/* An integer, maybe negative, within [-max, max]. */
static bool parse_int(const char *s, int64_t max, int64_t *v)
{
	bool neg = *s == '-';
	uint64_t u;

	if (neg)
		s++;
	if (!parse_uint(s, (uint64_t)max, &u))
		return false;
	*v = neg ? -(int64_t)u : (int64_t)u;
	return true;
}

/* "4096", "64K", "64KiB", "256M", "1G", "2T" (powers of 1024). */
static bool parse_size(const char *s, size_t *out)
{
	static const char units[] = "KMGT";
	uint64_t v, mul = 1;
	const char *u;

	if (!eat_uint(&s, UINT64_MAX, &v))
		return false;
	s = skip_blank(s);
	if (*s) {
		u = strchr(units, *s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
		if (!u || !*u)
			return false;
		for (const char *k = units; k <= u; k++)
			mul *= 1024;
		s++;
		if (!strcmp(s, "iB") || !strcmp(s, "B"))
			s += strlen(s);
		if (*s)
			return false;
	}
	if (__builtin_mul_overflow(v, mul, &v) || v > SIZE_MAX)
		return false;
	*out = (size_t)v;
	return true;
}

/* A number as C writes it, whatever the program's locale says. */
static bool parse_double(const char *s, double *v)
{
	static locale_t c_locale;
	locale_t loc = __atomic_load_n(&c_locale, __ATOMIC_ACQUIRE);
	char *end;

	if (!loc) {
		locale_t fresh = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
		locale_t expect = (locale_t)0;

		if (!fresh)
			return false;
		if (__atomic_compare_exchange_n(&c_locale, &expect, fresh, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			loc = fresh;
		else {
			freelocale(fresh);
			loc = expect;
		}
	}
	if (!*s || blank(*s))
		return false;
	errno = 0;
	*v = strtod_l(s, &end, loc);
	return !*end && !isnan(*v) && errno != ERANGE;
}

/* "16", "16x16", "3, 5, 2": positive numbers separated by x or comma. */
static int parse_dims(const char *s, size_t *v)
{
	int n = 0;

	for (;;) {
		uint64_t x;

		s = skip_blank(s);
		if (n == PM_MAX_DIMS || !eat_uint(&s, SIZE_MAX, &x) || x == 0)
			return -1;
		v[n++] = (size_t)x;
		s = skip_blank(s);
		if (!*s)
			return n;
		if (*s != 'x' && *s != ',')
			return -1;
		s++;
	}
}

/* "same", or "2" (every side), "1x3" (1 before, 3 after on every axis), or
 * one of those per axis, comma-separated: "2, 1x3". */
static int parse_pad(const char *s, int64_t *before, int64_t *after)
{
	int n = 0;

	if (!strcmp(s, "same"))
		return DESC_PAD_SAME;
	for (;;) {
		uint64_t b, a;

		s = skip_blank(s);
		if (n == PM_MAX_DIMS || !eat_uint(&s, INT64_MAX, &b))
			return -1;
		s = skip_blank(s);
		a = b;
		if (*s == 'x') {
			s = skip_blank(s + 1);
			if (!eat_uint(&s, INT64_MAX, &a))
				return -1;
			s = skip_blank(s);
		}
		before[n] = (int64_t)b;
		after[n] = (int64_t)a;
		n++;
		if (!*s)
			return n;
		if (*s != ',')
			return -1;
		s++;
	}
}

static int parse_word(const char *s, const char *const *words, int count)
{
	for (int i = 0; i < count; i++)
		if (words[i] && !strcmp(s, words[i]))
			return i;
	return -1;
}

static const char *const pad_modes[PM_PAD_COUNT] = {
	[PM_PAD_ZERO] = "zero",		[PM_PAD_CONSTANT] = "constant", [PM_PAD_EDGE] = "edge",
	[PM_PAD_REFLECT] = "reflect",	[PM_PAD_SYMMETRIC] = "symmetric", [PM_PAD_WRAP] = "wrap",
};
static const char *const orders[PM_ORDER_COUNT] = { [PM_ORDER_WINDOW] = "window",
						    [PM_ORDER_CHANNEL] = "channel" };
static const char *const layouts[PM_LAYOUT_COUNT] = { [PM_LAYOUT_ROWS] = "rows",
						      [PM_LAYOUT_COLS] = "cols" };
static const char *const formats[] = { [DESC_RAW] = "raw", [DESC_NPY] = "npy" };
static const char *const yes_no[] = { "no", "yes", "false", "true", "0", "1" };

/* One key's value (v: NUL-terminated, trimmed, unquoted). */
static int parse_value(struct desc *d, int key, const char *v, char *err)
{
	const char *k = key_names[key];
	uint64_t u;
	int64_t i;
	size_t sz;
	bool big;
	int n;

	switch (key) {
	case DK_SOURCE:
		if (strlen(v) >= DESC_PATH_MAX)
			return fail(err, "source: the path is longer than %d bytes", DESC_PATH_MAX - 1);
		strcpy(d->source, v);
		return 0;
	case DK_SHAPE:
		if ((n = parse_dims(v, d->shape)) < 0)
			return fail(err, "shape: expected the raw array's shape such as 512x512 or "
					 "480x640x3 (at most %d positive sizes), got \"%.*s%s\"",
				    PM_MAX_DIMS, Q(v));
		d->raw_ndim = n;
		return 0;
	case DK_DTYPE:
		if ((n = img_parse_dtype(v, &big)) < 0)
			return fail(err, "dtype: unknown sample type \"%.*s%s\" (bool, uint8, int8, uint16, "
					 "int16, uint32, int32, uint64, int64, float16, float32, "
					 "float64, or numpy's \"<u2\", "
					 "\">f4\", ...)",
				    Q(v));
		d->raw_dtype = n;
		d->raw_big_endian = big;
		return 0;
	case DK_OUTPUT_DTYPE:
		if (!strcmp(v, "same")) {
			d->dtype = PM_DTYPE_SAME;
			return 0;
		}
		if ((n = img_parse_dtype(v, &big)) < 0 || big || *v == '>')
			return fail(err, "output_dtype: unknown or big-endian dtype \"%.*s%s\" (same, "
					 "float32, float64, or the source's own)",
				    Q(v));
		d->dtype = n;
		return 0;
	case DK_RAW_OFFSET:
	case DK_ROW_PITCH:
	case DK_CHUNK:
		if (!parse_size(v, &sz))
			return fail(err, "%s: expected a byte count such as 4096, 64K or 4M, got "
					 "\"%.*s%s\"",
				    k, Q(v));
		if (key == DK_CHUNK) {
			long page = sysconf(_SC_PAGESIZE);
			if (sz < (size_t)(page > 0 ? page : 4096) || (sz & (sz - 1)))
				return fail(err, "chunk: %zu is not a power of two of at least the "
						 "page size",
					    sz);
			d->lazy.chunk = sz;
		} else if (key == DK_ROW_PITCH) {
			d->row_pitch = sz;
		} else {
			d->raw_offset = sz;
		}
		return 0;
	case DK_BUDGET:
		if (!strcmp(v, "unlimited"))
			d->lazy.budget = PM_BUDGET_UNLIMITED;
		else if (!parse_size(v, &d->lazy.budget) || !d->lazy.budget)
			return fail(err, "budget: expected a positive byte count such as 256M or 1G, or "
					 "\"unlimited\", got \"%.*s%s\"",
				    Q(v));
		return 0;
	case DK_CHANNEL_AXIS:
		if (!strcmp(v, "none"))
			d->channel_axis = DESC_CHANNELS_NONE;
		else if (!strcmp(v, "last"))
			d->channel_axis = -1;
		else if (!strcmp(v, "first"))
			d->channel_axis = 0;
		else if (parse_int(v, PM_MAX_DIMS, &i))
			d->channel_axis = (int)i;
		else
			return fail(err, "channel_axis: expected none, first, last or an axis number, "
					 "got \"%.*s%s\"",
				    Q(v));
		return 0;
	case DK_WINDOW:
	case DK_STEP:
	case DK_DILATION: {
		size_t *dst = key == DK_WINDOW ? d->window : key == DK_STEP ? d->step : d->dilation;
		int *cnt = key == DK_WINDOW ? &d->nwindow : key == DK_STEP ? &d->nstep : &d->ndilation;

		if ((n = parse_dims(v, dst)) < 0)
			return fail(err, "%s: expected one positive size for every spatial axis, or one "
					 "for all, such as 16 or 16x16, got \"%.*s%s\"",
				    k, Q(v));
		*cnt = n;
		return 0;
	}
	case DK_PAD:
		if ((n = parse_pad(v, d->pad_before, d->pad_after)) == -1)
			return fail(err, "pad: expected \"same\", or widths such as 2 (every side), 1x3 "
					 "(before x after) or one per axis such as 2,1x3, got \"%.*s%s\"",
				    Q(v));
		d->npad = n;
		return 0;
	case DK_PAD_MODE:
		if ((n = parse_word(v, pad_modes, PM_PAD_COUNT)) < 0)
			return fail(err, "pad_mode: expected zero, constant, edge, reflect, symmetric or "
					 "wrap, got \"%.*s%s\"",
				    Q(v));
		d->pad_mode = n;
		return 0;
	case DK_PAD_VALUE:
	case DK_SCALE:
	case DK_OFFSET: {
		double x;

		if (!parse_double(v, &x))
			return fail(err, "%s: expected a number, got \"%.*s%s\"", k, Q(v));
		if (key == DK_PAD_VALUE)
			d->pad_value = x;
		else if (key == DK_SCALE)
			d->scale = x;
		else
			d->offset = x;
		return 0;
	}
	case DK_ORDER:
		if ((n = parse_word(v, orders, PM_ORDER_COUNT)) < 0)
			return fail(err, "order: expected window or channel, got \"%.*s%s\"", Q(v));
		d->order = n;
		return 0;
	case DK_LAYOUT:
		if ((n = parse_word(v, layouts, PM_LAYOUT_COUNT)) < 0)
			return fail(err, "layout: expected rows or cols, got \"%.*s%s\"", Q(v));
		d->layout = n;
		return 0;
	case DK_BACKEND:
		if ((n = pm_backend_parse(v)) < 0)
			return fail(err, "backend: expected auto, uffd, sigsegv, eager or none, got "
					 "\"%.*s%s\"",
				    Q(v));
		d->lazy.backend = n;
		return 0;
	case DK_THREADS:
		if (!parse_uint(v, 1024, &u))
			return fail(err, "threads: expected a count from 0 (the library's default) to "
					 "1024, got \"%.*s%s\"",
				    Q(v));
		d->lazy.threads = (int)u;
		return 0;
	case DK_READAHEAD:
		if (!strcmp(v, "none"))
			d->lazy.readahead = -1;
		else if (parse_uint(v, 1 << 20, &u))
			d->lazy.readahead = u ? (int)u : -1;
		else
			return fail(err, "readahead: expected a number of chunks or none, got "
					 "\"%.*s%s\"",
				    Q(v));
		return 0;
	case DK_WRITABLE:
		if ((n = parse_word(v, yes_no, (int)(sizeof(yes_no) / sizeof(yes_no[0])))) < 0)
			return fail(err, "writable: expected yes or no, got \"%.*s%s\"", Q(v));
		d->lazy.flags = n % 2 ? PM_LAZY_WRITABLE : 0;
		return 0;
	case DK_FORMAT:
		if ((n = parse_word(v, formats, 2)) < 0)
			return fail(err, "format: expected raw or npy, got \"%.*s%s\"", Q(v));
		d->format = n;
		return 0;
	}
	return fail(err, "internal error: key %d", key);
}

/* ---------------------------------------------------------------- lines */

static void defaults(struct desc *d)
{
	memset(d, 0, sizeof(*d));
	d->raw_dtype = PM_DTYPE_U8;
	d->channel_axis = DESC_CHANNELS_AUTO;
	d->scale = 1.0;
	d->format = DESC_RAW;
}

int desc_parse(const char *text, size_t len, struct desc *d, char *err, int *line)
{
	char *buf = NULL;
	size_t i = 0;
	int ln = 0;

	defaults(d);
	*line = 0;
	if (len > DESC_MAX_BYTES)
		return fail(err, "larger than %zu KiB: not a descriptor", DESC_MAX_BYTES >> 10);
	buf = malloc(len + 1);
	if (!buf)
		return fail(err, "out of memory");
	while (i < len) {
		size_t s = i, e, eq = 0, ks, ke, vs, ve;
		bool quoted = false, in_quote = false, have_eq = false, value_begun = false;
		int key;

		while (i < len && text[i] != '\n')
			i++;
		e = i;
		if (i < len)
			i++;
		*line = ++ln;
		if (memchr(text + s, 0, e - s)) {
			fail(err, "a NUL byte: not a text file");
			goto bad;
		}
		/* A '#' that starts the line or follows a blank, outside quotes,
		 * starts a comment; the first '=' ends the key. A '"' opens a
		 * quote only as the first character of the value (elsewhere it
		 * is an ordinary character), and the next '"' closes it. */
		for (size_t p = s; p < e; p++) {
			if (in_quote) {
				in_quote = text[p] != '"';
			} else if (text[p] == '#' && (p == s || blank(text[p - 1]))) {
				e = p;
				break;
			} else if (text[p] == '=' && !have_eq) {
				have_eq = true;
				eq = p;
			} else if (have_eq && !value_begun && !blank(text[p])) {
				value_begun = true;
				in_quote = text[p] == '"';
			}
		}
		while (s < e && blank(text[s]))
			s++;
		while (e > s && blank(text[e - 1]))
			e--;
		if (s == e)
			continue;
		if (!have_eq || eq >= e) {
			fail(err, "expected \"key = value\", got \"%.*s%s\"", (int)(e - s > 40 ? 40 : e - s),
			     text + s, e - s > 40 ? "..." : "");
			goto bad;
		}
		ks = s;
		ke = eq;
		while (ke > ks && blank(text[ke - 1]))
			ke--;
		vs = eq + 1;
		ve = e;
		while (vs < ve && blank(text[vs]))
			vs++;
		memcpy(buf, text + ks, ke - ks);
		buf[ke - ks] = 0;
		key = -1;
		for (int k = 0; k < DK_COUNT; k++)
			if (!strcmp(buf, key_names[k]))
				key = k;
		if (key < 0) {
			fail(err, "unknown key \"%.*s%s\"", Q(buf));
			goto bad;
		}
		if (d->line[key]) {
			fail(err, "%s given twice (first on line %d)", key_names[key], d->line[key]);
			goto bad;
		}
		if (ve > vs && text[vs] == '"') {
			if (ve - vs < 2 || text[ve - 1] != '"' || memchr(text + vs + 1, '"', ve - vs - 2)) {
				fail(err, "%s: a quoted value must end with its closing quote, and hold "
					  "no other",
				     key_names[key]);
				goto bad;
			}
			vs++;
			ve--;
			quoted = true;
		}
		if (quoted && key != DK_SOURCE) {
			fail(err, "%s: only source may be quoted", key_names[key]);
			goto bad;
		}
		if (vs == ve) {
			fail(err, "%s has no value", key_names[key]);
			goto bad;
		}
		memcpy(buf, text + vs, ve - vs);
		buf[ve - vs] = 0;
		if (parse_value(d, key, buf, err))
			goto bad;
		d->line[key] = ln;
	}
	free(buf);
	buf = NULL;
	*line = 0;
	if (!d->line[DK_SOURCE])
		return fail(err, "no \"source = PATH\" line");
	if (!d->line[DK_WINDOW])
		return fail(err, "no \"window = SIZE\" line");
	if (!d->line[DK_SHAPE]) {
		if (d->line[DK_DTYPE] || d->line[DK_RAW_OFFSET]) {
			int k = d->line[DK_DTYPE] ? DK_DTYPE : DK_RAW_OFFSET;

			*line = d->line[k];
			return fail(err, "%s is for raw sources: give their shape too", key_names[k]);
		}
	}
	if (d->line[DK_PAD_VALUE] && d->pad_mode != PM_PAD_CONSTANT) {
		*line = d->line[DK_PAD_VALUE];
		return fail(err, "pad_value needs pad_mode = constant");
	}
	d->affine = d->line[DK_SCALE] || d->line[DK_OFFSET];
	return 0;
bad:
	free(buf);
	return -1;
}

/* ---------------------------------------------------------------- matrix */

/* The key whose line an error of pm_matrix_describe concerns. */
static int error_key(int code)
{
	switch (-code) {
	case PM_EOUTDTYPE:
		return DK_OUTPUT_DTYPE;
	case PM_ECHANNEL:
		return DK_CHANNEL_AXIS;
	case PM_EWINDOW:
	case PM_EWINDOWBIG:
	case PM_ETOOBIG:
		return DK_WINDOW;
	case PM_ESTEP:
		return DK_STEP;
	case PM_EDILATION:
		return DK_DILATION;
	case PM_EPAD:
		return DK_PAD;
	case PM_EPADMODE:
		return DK_PAD_MODE;
	case PM_EPADVALUE:
		return DK_PAD_VALUE;
	case PM_EORDER:
		return DK_ORDER;
	case PM_ELAYOUT:
		return DK_LAYOUT;
	case PM_EPITCH:
		return DK_ROW_PITCH;
	case PM_EAFFINE:
		return DK_SCALE;
	case PM_EBACKEND:
		return DK_BACKEND;
	case PM_ECHUNK:
		return DK_CHUNK;
	case PM_ETHREADS:
		return DK_THREADS;
	}
	return DK_SOURCE;
}

static const char *fmt_shape(char *buf, size_t n, const size_t *v, int count)
{
	size_t used = 0;

	buf[0] = 0;
	for (int k = 0; k < count && used < n; k++) {
		int w = snprintf(buf + used, n - used, k ? "x%zu" : "%zu", v[k]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

/* A per-axis value given once (for every axis) or once per spatial axis. */
static int per_axis(const struct desc *d, int key, int count, int nsp, char *err, int *line)
{
	if (count == 1 || count == nsp)
		return 0;
	*line = d->line[key];
	return fail(err, "%s gives %d values, the source has %d spatial %s: give 1 or %d",
		    key_names[key], count, nsp, nsp == 1 ? "axis" : "axes", nsp);
}

int desc_matrix(const struct desc *d, const struct pm_source *src, struct pm_matrix_opts *o,
		struct pm_matrix_info *info, char *err, int *line)
{
	int ndim = src->ndim, ch = -1, nsp, code, key;
	char shape[128];

	*line = 0;
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->source = *src;
	fmt_shape(shape, sizeof(shape), src->shape, ndim);
	if (d->channel_axis == DESC_CHANNELS_AUTO) {
		if (d->nwindow > 1) {
			if (ndim == d->nwindow + 1) {
				ch = ndim - 1;
			} else if (ndim != d->nwindow) {
				*line = d->line[DK_WINDOW];
				return fail(err, "window names %d axes, the source has %d (shape %s): give "
						 "one size per spatial axis",
					    d->nwindow, ndim, shape);
			}
		} else if (ndim >= 3) {
			ch = ndim - 1;
		}
	} else if (d->channel_axis != DESC_CHANNELS_NONE) {
		ch = d->channel_axis < 0 ? d->channel_axis + ndim : d->channel_axis;
		if (ch < 0 || ch >= ndim) {
			*line = d->line[DK_CHANNEL_AXIS];
			return fail(err, "channel_axis: axis %d does not exist in a %d-D source (shape "
					 "%s)",
				    d->channel_axis, ndim, shape);
		}
	}
	nsp = ndim - (ch >= 0);
	if (nsp < 1) {
		*line = d->line[DK_CHANNEL_AXIS] ? d->line[DK_CHANNEL_AXIS] : d->line[DK_SOURCE];
		return fail(err, "no spatial axis left: the source (shape %s) has only its channel "
				 "axis",
			    shape);
	}
	if (per_axis(d, DK_WINDOW, d->nwindow, nsp, err, line) ||
	    (d->nstep && per_axis(d, DK_STEP, d->nstep, nsp, err, line)) ||
	    (d->ndilation && per_axis(d, DK_DILATION, d->ndilation, nsp, err, line)) ||
	    (d->npad > 0 && per_axis(d, DK_PAD, d->npad, nsp, err, line)))
		return -1;
	o->source.has_channels = ch >= 0;
	o->source.channel_axis = ch >= 0 ? ch : 0;
	for (int a = 0; a < nsp; a++) {
		struct pm_window *w = &o->window[a];

		w->size = d->window[d->nwindow == 1 ? 0 : a];
		w->step = d->nstep ? d->step[d->nstep == 1 ? 0 : a] : 1;
		w->dilation = d->ndilation ? d->dilation[d->ndilation == 1 ? 0 : a] : 1;
		if (d->npad == DESC_PAD_SAME) {
			size_t span;

			if (__builtin_mul_overflow(w->size - 1, w->dilation, &span) ||
			    span > (size_t)PM_MAX_PAD) {
				*line = d->line[DK_PAD];
				return fail(err, "pad = same: the window's span overflows");
			}
			w->pad_before = (int64_t)(span / 2);
			w->pad_after = (int64_t)(span - span / 2);
		} else if (d->npad > 0) {
			w->pad_before = d->pad_before[d->npad == 1 ? 0 : a];
			w->pad_after = d->pad_after[d->npad == 1 ? 0 : a];
		}
	}
	o->pad_mode = d->pad_mode;
	o->pad_value = d->pad_value;
	o->dtype = d->dtype;
	o->affine = d->affine;
	o->scale = d->scale;
	o->offset = d->offset;
	o->order = d->order;
	o->layout = d->layout;
	o->row_pitch = d->row_pitch;
	o->lazy = d->lazy;
	code = pm_matrix_describe(o, info);
	if (!code)
		return 0;
	key = error_key(code);
	if (key == DK_SCALE && !d->line[DK_SCALE])
		key = DK_OFFSET;
	if (!d->line[key])
		key = d->line[DK_WINDOW] ? DK_WINDOW : DK_SOURCE;
	*line = d->line[key];
	if (key == DK_WINDOW || key == DK_PAD || key == DK_STEP || key == DK_DILATION) {
		char win[128];

		return fail(err, "%s: %s (source shape %s%s, window %s)", key_names[key],
			    pm_strerror(code), shape, ch >= 0 ? " with channels" : "",
			    fmt_shape(win, sizeof(win), d->window, d->nwindow));
	}
	return fail(err, "%s: %s", key_names[key], pm_strerror(code));
}
