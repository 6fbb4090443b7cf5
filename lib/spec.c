/* spec.c: patch matrix options by name, in the one grammar every front end
 * shares (sizes, shapes, padding, dtypes, names), their resolution against
 * a source into pm_matrix_opts, and the memory policy before an open. Every
 * failure leaves one line "<key>: ..." that names the value and what is
 * accepted. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "memory.h"
#include "region.h"
#include "patchmap.h"
#include "text.h"

#define MAX_READAHEAD (1 << 20)
#define ERRLEN 512
#define VALUE_MAX 255   /* longest value read, in bytes */
#define QUOTE_MAX 40    /* longest value quoted in a message */
#define QLEN (QUOTE_MAX + 8)

enum key {
	K_WINDOW,
	K_STEP,
	K_DILATION,
	K_PAD,
	K_PAD_MODE,
	K_PAD_VALUE,
	K_CHANNEL_AXIS,
	K_DTYPE,
	K_SCALE,
	K_OFFSET,
	K_ORDER,
	K_LAYOUT,
	K_ROW_PITCH,
	K_BACKEND,
	K_BUDGET,
	K_CHUNK,
	K_THREADS,
	K_READAHEAD,
	K_WRITABLE,
	K_ROW_RANGE,
	K_COUNT
};

static const char *const keys[K_COUNT] = {
	[K_WINDOW] = "window",       [K_STEP] = "step",
	[K_DILATION] = "dilation",   [K_PAD] = "pad",
	[K_PAD_MODE] = "pad_mode",   [K_PAD_VALUE] = "pad_value",
	[K_CHANNEL_AXIS] = "channel_axis", [K_DTYPE] = "dtype",
	[K_SCALE] = "scale",         [K_OFFSET] = "offset",
	[K_ORDER] = "order",         [K_LAYOUT] = "layout",
	[K_ROW_PITCH] = "row_pitch", [K_BACKEND] = "backend",
	[K_BUDGET] = "budget",       [K_CHUNK] = "chunk",
	[K_THREADS] = "threads",     [K_READAHEAD] = "readahead",
	[K_WRITABLE] = "writable",   [K_ROW_RANGE] = "row_range",
};

/* channel_axis values besides an axis number */
#define CH_AUTO INT_MIN
#define CH_NONE (INT_MIN + 1)

struct pm_spec {
	bool set[K_COUNT];
	char text[K_COUNT][QLEN];      /* each value as given, quoted for messages */
	size_t window[PM_MAX_DIMS], step[PM_MAX_DIMS], dilation[PM_MAX_DIMS];
	int nwindow, nstep, ndilation;
	bool pad_same;                 /* else npad (before, after) pairs */
	int npad;
	int64_t pad_before[PM_MAX_DIMS], pad_after[PM_MAX_DIMS];
	int pad_mode;
	double pad_value;
	bool pad_inexact;              /* a whole number pad_value does not hold */
	int channel_axis;              /* CH_AUTO, CH_NONE, or an axis (negative: from the end) */
	int dtype;
	double scale, offset;
	int order, layout;
	size_t row_pitch;
	struct pm_lazy_opts lazy;
	uint64_t range_begin, range_end; /* row_range; end UINT64_MAX: to the last window */
	char err[ERRLEN];
};

static int fail(pm_spec *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(pm_spec *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	/* one line, whatever the value held */
	for (char *p = s->err; *p; p++)
		if ((unsigned char)*p < ' ')
			*p = ' ';
	return code;
}

/* v in single quotes, cut to QUOTE_MAX characters ("..." after), control
 * characters shown as '?'. */
static const char *quote(char *buf, const char *v)
{
	size_t n = 0;

	buf[n++] = '\'';
	for (; *v && n < QUOTE_MAX + 1; v++)
		buf[n++] = (unsigned char)*v < ' ' || *v == 0x7f ? '?' : *v;
	if (*v) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n++] = '\'';
	buf[n] = 0;
	return buf;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
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

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Decimal digits into *v, at most max; *s moves past them. */
static bool eat_uint(const char **s, uint64_t max, uint64_t *v)
{
	const char *p = *s;
	uint64_t x = 0;

	if (!digit(*p))
		return false;
	for (; digit(*p); p++)
		if (__builtin_mul_overflow(x, 10, &x) ||
		    __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x) || x > max)
			return false;
	*s = p;
	*v = x;
	return true;
}

static bool word(const char *v, const char *w)
{
	return !strcasecmp(v, w);
}

/* ---------------------------------------------------------------- values */

int pm_size_parse(const char *str, bool allow_unlimited, size_t *out)
{
	const char *p, *end;
	/* 128 bits: a fraction such as 1.99999999999999999999K takes more
	 * digits than 64 bits hold, and is refused for not being whole bytes,
	 * not for its size. Zeros after the point count only once a digit
	 * follows them (1.50000000000000000000000K is 1536). */
	unsigned __int128 mant = 0;
	unsigned shift = 0;
	int frac = 0, zeros = 0;
	bool dot = false, digits = false;

	if (!str || !out)
		return -PM_ENULL;
	p = skip_blank(str);
	end = p + strlen(p);
	while (end > p && blank(end[-1]))
		end--;
	if (allow_unlimited && end - p == 9 && !strncasecmp(p, "unlimited", 9)) {
		*out = PM_BUDGET_UNLIMITED;
		return 0;
	}
	for (; p < end; p++) {
		if (digit(*p)) {
			digits = true;
			if (dot && *p == '0') {
				zeros++;
				continue;
			}
			for (; zeros >= 0; zeros--) {
				if (__builtin_mul_overflow(mant, 10, &mant) ||
				    __builtin_add_overflow(mant, (unsigned)(zeros ? 0 : *p - '0'), &mant))
					return dot ? -PM_ESPEC : -PM_ETOOBIG;
				frac += dot;
			}
			zeros = 0;
		} else if (*p == '.' && !dot) {
			dot = true;
		} else {
			break;
		}
	}
	if (!digits)
		return -PM_ESPEC;
	while (p < end && blank(*p))
		p++;
	if (p < end) {
		switch (lower(*p)) {
		case 'k': shift = 10; break;
		case 'm': shift = 20; break;
		case 'g': shift = 30; break;
		case 't': shift = 40; break;
		case 'p': shift = 50; break;
		}
		if (shift) {
			p++;
			if (p < end && lower(*p) == 'i')
				p++;
		}
		if (p < end && lower(*p) == 'b')
			p++;
		if (p != end)
			return -PM_ESPEC;
	}
	/* mant * 2^shift / 10^frac must be whole: take each 10 as a 5 from
	 * the mantissa and a 2 from the shift (or the mantissa). */
	for (; frac > 0; frac--) {
		if (mant % 5)
			return -PM_ESPEC;
		mant /= 5;
		if (shift)
			shift--;
		else if (mant % 2)
			return -PM_ESPEC;
		else
			mant /= 2;
	}
	if (mant >= (uint64_t)SIZE_MAX || (shift && mant > ((uint64_t)SIZE_MAX >> shift)))
		return -PM_ETOOBIG;
	mant <<= shift;
	if (mant >= (uint64_t)SIZE_MAX)
		return -PM_ETOOBIG;
	*out = (size_t)mant;
	return 0;
}

int pm_dims_parse(const char *s, size_t *v, int max)
{
	int n = 0;

	if (!s || !v)
		return -PM_ENULL;
	for (;;) {
		uint64_t x;

		s = skip_blank(s);
		if (!digit(*s))
			return -PM_ESPEC;
		if (!eat_uint(&s, SIZE_MAX, &x))
			return -PM_ETOOBIG;
		if (x == 0)
			return -PM_ESPEC;
		if (n >= max)
			return -PM_ENDIM;
		v[n++] = (size_t)x;
		s = skip_blank(s);
		if (!*s)
			return n;
		if (*s != 'x' && *s != 'X' && *s != ',')
			return -PM_ESPEC;
		s++;
	}
}

/* numpy's kind letter of a dtype: u, i, f or b; 0 if none. */
static char dtype_kind(int d)
{
	const char *name = pm_dtype_name(d);

	if (!name)
		return 0;
	if (!strncmp(name, "uint", 4))
		return 'u';
	if (!strncmp(name, "int", 3))
		return 'i';
	if (!strncmp(name, "float", 5))
		return 'f';
	if (!strncmp(name, "bool", 4))
		return 'b';
	return 0;
}

int pm_dtype_parse(const char *str, bool *big_endian)
{
	char buf[24];
	const char *p, *end;
	size_t len;
	char order = 0;
	int found = -PM_EDTYPE;
	bool big;

	if (big_endian)
		*big_endian = false;
	if (!str)
		return -PM_ENULL;
	p = skip_blank(str);
	end = p + strlen(p);
	while (end > p && blank(end[-1]))
		end--;
	len = (size_t)(end - p);
	if (len == 0 || len >= sizeof(buf))
		return -PM_EDTYPE;
	for (size_t i = 0; i < len; i++)
		buf[i] = lower(p[i]);
	buf[len] = 0;
	p = buf;
	if (strchr("<>=|", *p))
		order = *p++;
	for (int d = 1; d < PM_DTYPE_COUNT; d++)
		if (pm_dtype_name(d) && !strcmp(p, pm_dtype_name(d)))
			found = d;
	if (found < 0 && !order && (!strcmp(p, "u8") || !strcmp(p, "i8")))
		return -PM_EAMBIGUOUS;
	if (found < 0 && p[0] && digit(p[1]) && (!p[2] || (digit(p[2]) && !p[3]))) {
		unsigned num = (unsigned)atoi(p + 1);

		/* numpy's byte codes (u2, <f4, b1), and without a byte order
		 * the bit names (u16, f32); an 8-bit name never: see above */
		for (int d = 1; d < PM_DTYPE_COUNT; d++) {
			if (dtype_kind(d) != p[0])
				continue;
			if (pm_dtype_size(d) == num ||
			    (!order && p[0] != 'b' && num > 8 && pm_dtype_size(d) * 8 == num))
				found = d;
		}
	}
	if (found < 0)
		return found;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	big = order != '<' && pm_dtype_size(found) > 1;
#else
	big = order == '>' && pm_dtype_size(found) > 1;
#endif
	if (big && !big_endian)
		return -PM_EDTYPE;
	if (big_endian)
		*big_endian = big;
	return found;
}

/* Whether the text is a whole number, such as 9007199254740993, that the
 * double v parsed from it does not hold exactly: beyond 2^53 not every
 * whole number is a double, and an integer source would be padded with
 * its neighbour. Texts of more digits than 2^127 has are left to the
 * range check: no 64-bit integer holds them either. */
static bool inexact_whole(const char *t, double v)
{
	unsigned __int128 n = 0, max = ~(unsigned __int128)0 >> 1;
	bool neg = *t == '-';
	int digits = 0;

	t += *t == '-' || *t == '+';
	for (; *t >= '0' && *t <= '9'; t++, digits++) {
		if (digits == 38)
			return false;
		n = n * 10 + (unsigned)(*t - '0');
	}
	if (*t || !digits || n > max || !(fabs(v) < 0x1p127))
		return false;
	return (__int128)v != (neg ? -(__int128)n : (__int128)n);
}

/* What parse_double made of a text. */
enum number { NUM_OK, NUM_NOT, NUM_UNDERFLOW, NUM_OVERFLOW };

/* A number as C writes it, whatever the program's locale says. A subnormal
 * result is a number (strtod says ERANGE for it too); a nonzero text that
 * rounds to 0, or a finite one beyond the largest double, is not
 * representable and says which. */
static enum number parse_double(const char *s, double *v)
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
						__ATOMIC_ACQUIRE)) {
			loc = fresh;
		} else {
			freelocale(fresh);
			loc = expect;
		}
	}
	if (!*s || blank(*s))
		return NUM_NOT;
	errno = 0;
	*v = strtod_l(s, &end, loc);
	if (*end)
		return NUM_NOT;
	if (errno != ERANGE || (*v != 0 && isfinite(*v)))
		return NUM_OK;
	return *v == 0 ? NUM_UNDERFLOW : NUM_OVERFLOW;
}

/* The message for a text parse_double refused; `what` is what was wanted. */
static int bad_number(pm_spec *t, int k, const char *v, enum number r, const char *what)
{
	char q[QLEN];

	if (r == NUM_UNDERFLOW)
		return fail(t, -PM_ESPEC, "%s: %s is a number too small to be represented: it "
					  "underflows to 0 (the smallest double above 0 is about "
					  "4.9e-324); give 0 if that is meant",
			    keys[k], quote(q, v));
	if (r == NUM_OVERFLOW)
		return fail(t, -PM_ESPEC, "%s: %s is a number too large to be represented: it "
					  "overflows (the largest double is about 1.8e308)",
			    keys[k], quote(q, v));
	return fail(t, -PM_ESPEC, "%s: %s is not %s", keys[k], quote(q, v), what);
}

/* An integer in [-max, max]. */
static bool parse_int(const char *s, int64_t max, int64_t *v)
{
	bool neg = *s == '-';
	uint64_t u;

	if (neg || *s == '+')
		s++;
	if (!eat_uint(&s, (uint64_t)max, &u) || *s)
		return false;
	*v = neg ? -(int64_t)u : (int64_t)u;
	return true;
}

/* "same", "valid", or per axis "N" / "BxA", comma-separated. 0, or
 * -PM_ESPEC (syntax), -PM_EPAD (a width above PM_MAX_PAD), -PM_ENDIM. */
static int parse_pad(pm_spec *t, const char *s)
{
	int n = 0;

	if (word(s, "same")) {
		t->pad_same = true;
		t->npad = 0;
		return 0;
	}
	if (word(s, "valid")) {
		t->pad_same = false;
		t->npad = 1;
		t->pad_before[0] = t->pad_after[0] = 0;
		return 0;
	}
	for (;;) {
		uint64_t b, a;

		s = skip_blank(s);
		if (!digit(*s))
			return -PM_ESPEC;
		if (!eat_uint(&s, (uint64_t)PM_MAX_PAD, &b))
			return -PM_EPAD;
		s = skip_blank(s);
		a = b;
		if (*s == 'x' || *s == 'X') {
			s = skip_blank(s + 1);
			if (!digit(*s))
				return -PM_ESPEC;
			if (!eat_uint(&s, (uint64_t)PM_MAX_PAD, &a))
				return -PM_EPAD;
			s = skip_blank(s);
		}
		if (n == PM_MAX_DIMS)
			return -PM_ENDIM;
		t->pad_before[n] = (int64_t)b;
		t->pad_after[n] = (int64_t)a;
		n++;
		if (!*s)
			break;
		if (*s != ',')
			return -PM_ESPEC;
		s++;
	}
	t->pad_same = false;
	t->npad = n;
	return 0;
}

/* ---------------------------------------------------------------- the spec */

int pm_spec_new(pm_spec **out)
{
	pm_spec *s;

	if (!out)
		return -PM_ENULL;
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pad_mode = PM_PAD_ZERO;
	s->channel_axis = CH_AUTO;
	s->dtype = PM_DTYPE_F32;
	s->scale = 1.0;
	s->order = PM_ORDER_WINDOW;
	s->layout = PM_LAYOUT_ROWS;
	*out = s;
	return 0;
}

void pm_spec_free(pm_spec *s)
{
	free(s);
}

const char *pm_spec_error(const pm_spec *s)
{
	return s ? s->err : "";
}

const char *pm_spec_key(int i)
{
	return i >= 0 && i < K_COUNT ? keys[i] : NULL;
}

/* The key's index ('-' as '_', any case), or -1. */
static int find_key(const char *key)
{
	for (int k = 0; k < K_COUNT; k++) {
		const char *a = key, *b = keys[k];

		while (*a && (lower(*a) == *b || (*a == '-' && *b == '_')))
			a++, b++;
		if (!*a && !*b)
			return k;
	}
	return -1;
}

bool pm_spec_isset(const pm_spec *s, const char *key)
{
	int k = s && key ? find_key(key) : -1;

	return k >= 0 && s->set[k];
}

static int bad_dims(pm_spec *s, int k, const char *v, int code, const char *what)
{
	char q[QLEN];

	if (code == -PM_ENDIM)
		return fail(s, -PM_ESPEC, "%s: %s gives more than %d sizes (one per spatial axis, "
					  "or one for all)",
			    keys[k], quote(q, v), PM_MAX_DIMS);
	return fail(s, -PM_ESPEC, "%s: %s is not %s: one positive size for every spatial axis, or "
				  "one for all, such as 3, 3x3 or 3,3",
		    keys[k], quote(q, v), what);
}

/* "A:B", "A:" (to the last window) or ":B" (from the first): windows A
 * to B - 1, as a Python slice without negatives or a step. */
static int parse_range(pm_spec *t, const char *v)
{
	const char *p = skip_blank(v);
	uint64_t a = 0, b = UINT64_MAX;
	char q[QLEN];

	if (digit(*p) && !eat_uint(&p, UINT64_MAX - 1, &a))
		goto bad;
	p = skip_blank(p);
	if (*p++ != ':')
		goto bad;
	p = skip_blank(p);
	if (digit(*p) && !eat_uint(&p, UINT64_MAX - 1, &b))
		goto bad;
	if (*skip_blank(p))
		goto bad;
	if (b != UINT64_MAX && a >= b)
		return fail(t, -PM_ESPEC, "row_range: %s selects no window: the end must be past "
					  "the beginning",
			    quote(q, v));
	t->range_begin = a;
	t->range_end = b;
	return 0;
bad:
	return fail(t, -PM_ESPEC, "row_range: %s is not A:B (windows A to B - 1, counted from 0), "
				  "A: or :B",
		    quote(q, v));
}

/* Parses value v of key k into t (a copy of the spec). */
static int set_value(pm_spec *t, int k, const char *v)
{
	char q[QLEN];
	size_t z;
	int64_t i;
	enum number r;
	double x;
	int n;

	switch (k) {
	case K_WINDOW:
		if ((n = pm_dims_parse(v, t->window, PM_MAX_DIMS)) < 0)
			return bad_dims(t, k, v, n, "a window size");
		t->nwindow = n;
		return 0;
	case K_STEP:
		if ((n = pm_dims_parse(v, t->step, PM_MAX_DIMS)) < 0)
			return bad_dims(t, k, v, n, "a step");
		t->nstep = n;
		return 0;
	case K_DILATION:
		if ((n = pm_dims_parse(v, t->dilation, PM_MAX_DIMS)) < 0)
			return bad_dims(t, k, v, n, "a dilation");
		t->ndilation = n;
		return 0;
	case K_PAD:
		n = parse_pad(t, v);
		if (n == -PM_EPAD)
			return fail(t, -PM_ESPEC, "pad: %s asks more than the 2^32 samples accepted "
						  "per side",
				    quote(q, v));
		if (n == -PM_ENDIM)
			return fail(t, -PM_ESPEC, "pad: %s gives more than %d axes", quote(q, v),
				    PM_MAX_DIMS);
		if (n < 0)
			return fail(t, -PM_ESPEC, "pad: %s is not same, valid, N (every side), BxA "
						  "(before x after), or one of those per spatial "
						  "axis such as 2, 1x3",
				    quote(q, v));
		return 0;
	case K_PAD_MODE:
		if ((n = pm_pad_mode_parse(v)) < 0)
			return fail(t, -PM_ESPEC, "pad_mode: %s is not zero, constant, edge, reflect, "
						  "symmetric or wrap (numpy.pad's modes)",
				    quote(q, v));
		t->pad_mode = n;
		return 0;
	case K_PAD_VALUE:
		if ((r = parse_double(v, &x)) != NUM_OK)
			return bad_number(t, k, v, r, "a number (such as 0, -1.5 or nan)");
		t->pad_value = x;
		t->pad_inexact = inexact_whole(v, x);
		return 0;
	case K_CHANNEL_AXIS:
		if (word(v, "auto"))
			t->channel_axis = CH_AUTO;
		else if (word(v, "none"))
			t->channel_axis = CH_NONE;
		else if (word(v, "first"))
			t->channel_axis = 0;
		else if (word(v, "last"))
			t->channel_axis = -1;
		else if (parse_int(v, PM_MAX_DIMS, &i) && i >= -PM_MAX_DIMS && i < PM_MAX_DIMS)
			t->channel_axis = (int)i;
		else
			return fail(t, -PM_ESPEC, "channel_axis: %s is not auto, none, first, last or "
						  "an axis number from %d to %d (negative: from the "
						  "end)",
				    quote(q, v), -PM_MAX_DIMS, PM_MAX_DIMS - 1);
		return 0;
	case K_DTYPE:
		if (word(v, "same")) {
			t->dtype = PM_DTYPE_SAME;
			return 0;
		}
		n = pm_dtype_parse(v, NULL);
		if (n == -PM_EAMBIGUOUS) {
			char m[QLEN + 160];

			return fail(t, -PM_ESPEC, "%s",
				    pm__fmt_ambiguous_dtype(m, sizeof(m), "dtype", quote(q, v)));
		}
		if (n < 0 && pm_dtype_parse(v, &(bool){ false }) > 0)
			return fail(t, -PM_ESPEC, "dtype: %s is big-endian; the matrix is in this "
						  "machine's byte order: leave out the '>'",
				    quote(q, v));
		if (n < 0)
			return fail(t, -PM_ESPEC, "dtype: %s is not a dtype: same (the source's), "
						  "float32, float64, or the source's own, named as "
						  "numpy does (uint16), by bits (u16) or by numpy's "
						  "code (u2, <u2)",
				    quote(q, v));
		t->dtype = n;
		return 0;
	case K_SCALE:
	case K_OFFSET:
		if ((r = parse_double(v, &x)) == NUM_OK && !isfinite(x))
			r = NUM_NOT;
		if (r != NUM_OK)
			return bad_number(t, k, v, r, "a finite number");
		*(k == K_SCALE ? &t->scale : &t->offset) = x;
		return 0;
	case K_ORDER:
		if ((n = pm_order_parse(v)) < 0)
			return fail(t, -PM_ESPEC, "order: %s is not window (columns y, x, c) or "
						  "channel (columns c, y, x)",
				    quote(q, v));
		t->order = n;
		return 0;
	case K_LAYOUT:
		if ((n = pm_layout_parse(v)) < 0)
			return fail(t, -PM_ESPEC, "layout: %s is not rows (one row per window) or "
						  "cols (one column per window)",
				    quote(q, v));
		t->layout = n;
		return 0;
	case K_ROW_PITCH:
		if ((n = pm_size_parse(v, false, &z)) < 0)
			return fail(t, -PM_ESPEC, "row_pitch: %s is not a byte count such as 4096 or "
						  "64K (0: rows packed)",
				    quote(q, v));
		t->row_pitch = z;
		return 0;
	case K_BACKEND:
		if ((n = pm_backend_parse(v)) < 0)
			return fail(t, -PM_ESPEC, "backend: %s is not auto, uffd, sigsegv, eager or "
						  "none",
				    quote(q, v));
		t->lazy.backend = n;
		return 0;
	case K_BUDGET:
		if ((n = pm_size_parse(v, true, &z)) < 0 || z == 0)
			return fail(t, -PM_ESPEC, "budget: %s is not a positive size such as 256M, "
						  "1.5G or 64 KiB (powers of 1024), or unlimited",
				    quote(q, v));
		t->lazy.budget = z;
		return 0;
	case K_CHUNK: {
		long page = sysconf(_SC_PAGESIZE);
		size_t pg = page > 0 ? (size_t)page : 4096;

		if ((n = pm_size_parse(v, false, &z)) < 0 || z == 0)
			return fail(t, -PM_ESPEC, "chunk: %s is not a size such as 1M or 4M (powers "
						  "of 1024)",
				    quote(q, v));
		if (z < pg || (z & (z - 1)) || z > PM__MAX_BYTES)
			return fail(t, -PM_ESPEC, "chunk: %s is not a power of two from the page "
						  "size (%zu bytes) to 64 TiB, such as 1M or 4M",
				    quote(q, v), pg);
		t->lazy.chunk = z;
		return 0;
	}
	case K_THREADS:
		if (word(v, "auto"))
			i = 0;
		else if (!parse_int(v, PM__MAX_THREADS, &i) || i < 0)
			return fail(t, -PM_ESPEC, "threads: %s is not a count from 1 to %d, or auto "
						  "(or 0: the library's default)",
				    quote(q, v), PM__MAX_THREADS);
		t->lazy.threads = (int)i;
		return 0;
	case K_READAHEAD:
		if (word(v, "auto"))
			i = 0;
		else if (word(v, "none"))
			i = -1;
		else if (parse_int(v, MAX_READAHEAD, &i) && i >= 0)
			i = i ? i : -1;
		else
			return fail(t, -PM_ESPEC, "readahead: %s is not a count of chunks from 0 "
						  "(none) to %d, none, or auto (the library's "
						  "default)",
				    quote(q, v), MAX_READAHEAD);
		t->lazy.readahead = (int)i;
		return 0;
	case K_WRITABLE:
		if (word(v, "yes") || word(v, "true") || word(v, "on") || !strcmp(v, "1"))
			t->lazy.flags |= PM_LAZY_WRITABLE;
		else if (word(v, "no") || word(v, "false") || word(v, "off") || !strcmp(v, "0"))
			t->lazy.flags &= ~PM_LAZY_WRITABLE;
		else
			return fail(t, -PM_ESPEC, "writable: %s is not yes or no (true, false, on, "
						  "off, 1, 0)",
				    quote(q, v));
		return 0;
	case K_ROW_RANGE:
		return parse_range(t, v);
	}
	return fail(t, -PM_EKEY, "key number %d: not a key", k);   /* unreachable: k came from find_key */
}

int pm_spec_set(pm_spec *s, const char *key, const char *value)
{
	char v[VALUE_MAX + 1], q[QLEN], list[400];
	const char *p, *end;
	pm_spec *t;
	size_t used = 0;
	int k, ret;

	if (!s)
		return -PM_ENULL;
	if (!key)
		return fail(s, -PM_ENULL, "(null): no key given");
	k = find_key(key);
	if (k < 0) {
		for (int i = 0; i < K_COUNT && used < sizeof(list); i++)
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 i ? ", " : "", keys[i]);
		return fail(s, -PM_EKEY, "%s: not a key; the keys are %s", quote(q, key), list);
	}
	if (!value)
		return fail(s, -PM_ENULL, "%s: no value given", keys[k]);
	p = skip_blank(value);
	end = p + strlen(p);
	while (end > p && blank(end[-1]))
		end--;
	if (end == p)
		return fail(s, -PM_ESPEC, "%s: the value is empty", keys[k]);
	if ((size_t)(end - p) > VALUE_MAX)
		return fail(s, -PM_ESPEC, "%s: %s is longer than %d characters", keys[k],
			    quote(q, value), VALUE_MAX);
	memcpy(v, p, (size_t)(end - p));
	v[end - p] = 0;
	/* Parse into a copy, so that a refused value leaves the spec as it was. */
	t = malloc(sizeof(*t));
	if (!t)
		return fail(s, -ENOMEM, "%s: out of memory", keys[k]);
	*t = *s;
	ret = set_value(t, k, v);
	if (ret) {
		memcpy(s->err, t->err, sizeof(s->err));
	} else {
		t->set[k] = true;
		quote(t->text[k], v);
		t->err[0] = 0;
		*s = *t;
	}
	free(t);
	return ret;
}

/* ---------------------------------------------------------------- resolution */

/* "shape 6x7x3, channels on axis 2" or "shape 6x7" */
static const char *fmt_source(char *buf, size_t n, const struct pm_source *src, int ch)
{
	char d[160];

	pm__fmt_dims(d, sizeof(d), src->shape, src->ndim);
	if (ch >= 0)
		snprintf(buf, n, "shape %s, channels on axis %d", d, ch);
	else
		snprintf(buf, n, "shape %s", d);
	return buf;
}

/* A value count that is neither 1 nor one per spatial axis. */
static int count_error(pm_spec *s, int k, int count, int nsp, const char *where)
{
	return fail(s, -PM_ESPEC, "%s: %s gives %d values for %d spatial %s (%s): give 1 or %d",
		    keys[k], s->text[k], count, nsp, nsp == 1 ? "axis" : "axes", where, nsp);
}

/* The source's channel axis under the spec's rule, -1 for none; or a
 * negative code with the message set (*code). */
static int channel_rule(pm_spec *s, const struct pm_source *src, int *code)
{
	int n = src->ndim, w = s->nwindow, ca = s->channel_axis;
	char d[160];

	*code = 0;
	pm__fmt_dims(d, sizeof(d), src->shape, n);
	if (ca == CH_NONE)
		return -1;
	if (ca == CH_AUTO) {
		if (w == 1)
			return n >= 3 ? n - 1 : -1;
		if (w == n)
			return -1;
		if (w == n - 1)
			return n - 1;
		if (n >= 2)
			*code = fail(s, -PM_ESPEC, "window: %s gives %d sizes for the %d-D source "
						   "(shape %s): give %d (no channel axis) or %d "
						   "(channels last), or set channel_axis",
				     s->text[K_WINDOW], w, n, d, n, n - 1);
		else
			*code = fail(s, -PM_ESPEC, "window: %s gives %d sizes for the 1-D source "
						   "(shape %s): give 1",
				     s->text[K_WINDOW], w, d);
		return -1;
	}
	if (ca < -n || ca >= n) {
		*code = fail(s, -PM_ECHANNEL, "channel_axis: %s: the %d-D source (shape %s) has "
					      "axes %d to %d (or %d to -1)",
			     s->text[K_CHANNEL_AXIS], n, d, 0, n - 1, -n);
		return -1;
	}
	if (n == 1) {
		*code = fail(s, -PM_ECHANNEL, "channel_axis: %s leaves no axis to window in the "
					      "1-D source (shape %s): use none",
			     s->text[K_CHANNEL_AXIS], d);
		return -1;
	}
	return ca < 0 ? ca + n : ca;
}

/* TensorFlow's "same": ceil(n / step) windows, the padding that takes, the
 * odd sample after. */
static bool pad_same(size_t n, const struct pm_window *w, int64_t *before, int64_t *after)
{
	uint64_t out = n / w->step + (n % w->step != 0), need, reach, total;

	if (__builtin_mul_overflow(out - 1, (uint64_t)w->step, &need) ||
	    __builtin_mul_overflow((uint64_t)w->size - 1, (uint64_t)w->dilation, &reach) ||
	    __builtin_add_overflow(need, reach, &need) || __builtin_add_overflow(need, 1, &need))
		return false;
	total = need > n ? need - n : 0;
	if (total > 2 * (uint64_t)PM_MAX_PAD)
		return false;
	*before = (int64_t)(total / 2);
	*after = (int64_t)(total - total / 2);
	return true;
}

/* The range of values a dtype holds, for a message. */
static const char *dtype_range(char *buf, size_t n, int dtype)
{
	char kind = dtype_kind(dtype);
	unsigned bits = (unsigned)pm_dtype_size(dtype) * 8;

	if (kind == 'b')
		snprintf(buf, n, "0 or 1");
	else if (kind == 'u' && bits >= 8 && bits <= 64)
		snprintf(buf, n, "whole numbers from 0 to %" PRIu64,
			 bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1);
	else if (kind == 'i' && bits >= 8 && bits <= 64)
		snprintf(buf, n, "whole numbers from %" PRId64 " to %" PRId64,
			 bits == 64 ? INT64_MIN : -((int64_t)1 << (bits - 1)),
			 bits == 64 ? INT64_MAX : ((int64_t)1 << (bits - 1)) - 1);
	else if (dtype == PM_DTYPE_F16 || dtype == PM_DTYPE_F32)
		snprintf(buf, n, "numbers of magnitude at most %g, none so near 0 that it rounds "
				 "to 0", dtype == PM_DTYPE_F16 ? 65504.0 : (double)FLT_MAX);
	else
		snprintf(buf, n, "numbers up to its largest finite magnitude");
	return buf;
}

/* The budget a lazy matrix keeps, as the library enforces it, and the
 * message for one below two chunks. */
static int budget_error(pm_spec *s, int code)
{
	size_t chunk = s->lazy.chunk ? s->lazy.chunk : PM_DEFAULT_CHUNK;
	size_t budget = s->lazy.budget ? s->lazy.budget : PM_DEFAULT_BUDGET;
	char b1[32], b2[32], b3[32];

	return fail(s, code, "budget: %s is too small: it must hold at least two chunks of %s "
			     "(%s); raise budget or lower chunk",
		    pm__fmt_size(b1, sizeof(b1), budget), pm__fmt_size(b2, sizeof(b2), chunk),
		    pm__fmt_size(b3, sizeof(b3), 2 * chunk));
}

/* When the padding, not the window, makes the matrix too large to reserve
 * (it fits with only the padding the window needs to fit the source): the
 * message on pad, and true. */
static bool too_big_padded(pm_spec *s, const struct pm_matrix_opts *o, int ch)
{
	struct pm_matrix_opts bare = *o;
	struct pm_matrix_info info = { 0 };
	size_t padded[PM_MAX_DIMS];
	bool any = false;
	char b[160];
	int a = 0;

	for (int i = 0; i < o->source.ndim; i++) {
		struct pm_window *w = &bare.window[a];

		if (i == ch)
			continue;
		uint64_t total = (uint64_t)w->pad_before + (uint64_t)w->pad_after, need = 0, reach;

		any |= total != 0;
		padded[a++] = o->source.shape[i] + total;
		if (!__builtin_mul_overflow((uint64_t)w->size - 1, (uint64_t)w->dilation, &reach) &&
		    reach + 1 > o->source.shape[i])
			need = reach + 1 - o->source.shape[i];
		w->pad_before = (int64_t)(need < total ? need : total);
		w->pad_after = 0;
	}
	bare.row_pitch = 0;
	if (!any || pm_matrix_describe(&bare, &info))
		return false;
	fail(s, -PM_ETOOBIG, "pad: %s makes the padded source (%s) so large that the matrix "
			     "overflows or exceeds the 64 TiB that can be reserved: pad less",
	     s->set[K_PAD] ? s->text[K_PAD] : "same", pm__fmt_dims(b, sizeof(b), padded, a));
	return true;
}

/* The message for a code of pm_matrix_describe, on the key it concerns. */
static int describe_error(pm_spec *s, int code, const struct pm_matrix_opts *o, int ch)
{
	const struct pm_source *src = &o->source;
	char where[200], b1[160], b2[160];
	int nsp = src->ndim - (ch >= 0), k = -1;

	fmt_source(where, sizeof(where), src, ch);
	switch (-code) {
	case PM_EWINDOWBIG: {
		size_t eff[PM_MAX_DIMS], padded[PM_MAX_DIMS];

		for (int a = 0, i = 0; i < src->ndim; i++) {
			const struct pm_window *w = &o->window[a];

			if (i == ch)
				continue;
			if (__builtin_mul_overflow(w->size - 1, w->dilation, &eff[a]) ||
			    __builtin_add_overflow(eff[a], 1, &eff[a]))
				eff[a] = SIZE_MAX;
			padded[a] = src->shape[i] + (size_t)w->pad_before + (size_t)w->pad_after;
			a++;
		}
		return fail(s, code, "window: %s%s spans %s samples, more than the source's %s "
				     "(%s%s): give a smaller window%s, or pad",
			    s->text[K_WINDOW], s->set[K_DILATION] ? " with its dilation" : "",
			    pm__fmt_dims(b1, sizeof(b1), eff, nsp), pm__fmt_dims(b2, sizeof(b2), padded, nsp),
			    where, s->set[K_PAD] || s->set[K_PAD_MODE] ? ", padding included" : "",
			    s->set[K_DILATION] ? " or dilation" : "");
	}
	case PM_EPADVALUE:
		return fail(s, code, "pad_value: %s cannot be stored as %s, the source's dtype, "
				     "which holds %s",
			    s->set[K_PAD_VALUE] ? s->text[K_PAD_VALUE] : "0",
			    pm_dtype_name(src->dtype),
			    dtype_range(b1, sizeof(b1), src->dtype));
	case PM_EOUTDTYPE:
		return fail(s, code, "dtype: %s is neither float32, float64 nor the source's own "
				     "(%s); same keeps the source's",
			    s->text[K_DTYPE], pm_dtype_name(src->dtype) ? pm_dtype_name(src->dtype) : "?");
	case PM_EAFFINE:
		return fail(s, code, "%s: scale and offset need a float32 or float64 output, and "
				     "dtype is %s",
			    s->set[K_SCALE] ? "scale" : "offset",
			    pm_dtype_name(o->dtype ? o->dtype : src->dtype));
	case PM_EPITCH: {
		struct pm_matrix_opts packed = *o;
		struct pm_matrix_info info = { 0 };

		packed.row_pitch = 0;
		if (pm_matrix_describe(&packed, &info) == 0) {
			size_t row = info.cols * info.elem_size;

			if (o->row_pitch < row)
				snprintf(b1, sizeof(b1), "less than a row (%zu x %zu = %zu bytes)",
					 info.cols, info.elem_size, row);
			else
				snprintf(b1, sizeof(b1), "not a multiple of the element size (%zu "
							 "bytes)",
					 info.elem_size);
			return fail(s, code, "row_pitch: %s is %s: give 0 (rows packed) or a "
					     "multiple of %zu of at least %zu",
				    s->text[K_ROW_PITCH], b1, info.elem_size, row);
		}
		k = K_ROW_PITCH;
		break;
	}
	case PM_ETOOBIG: {
		struct pm_matrix_opts packed = *o;
		struct pm_matrix_info info = { 0 };

		packed.row_pitch = 0;
		if (o->row_pitch && pm_matrix_describe(&packed, &info) == 0)
			return fail(s, code, "row_pitch: %s makes the matrix (%zu rows) larger than "
					     "can be reserved",
				    s->text[K_ROW_PITCH], info.rows);
		if (too_big_padded(s, o, ch))
			return code;
		return fail(s, code, "window: %s over the source (%s) makes a matrix whose size "
				     "overflows or exceeds the 64 TiB that can be reserved: a larger "
				     "step, or a smaller source",
			    s->text[K_WINDOW], where);
	}
	case PM_ECHANNEL:
		k = K_CHANNEL_AXIS;
		break;
	case PM_EWINDOW:
		k = K_WINDOW;
		break;
	case PM_ESTEP:
		k = K_STEP;
		break;
	case PM_EDILATION:
		k = K_DILATION;
		break;
	case PM_EPAD:
		k = K_PAD;
		break;
	case PM_EPADMODE:
		k = K_PAD_MODE;
		break;
	case PM_EORDER:
		k = K_ORDER;
		break;
	case PM_ELAYOUT:
		k = K_LAYOUT;
		break;
	case PM_EBACKEND:
		k = K_BACKEND;
		break;
	case PM_ECHUNK:
		k = K_CHUNK;
		break;
	case PM_ETHREADS:
		k = K_THREADS;
		break;
	case PM_EBUDGET:
		return budget_error(s, code);
	}
	if (k < 0)
		return fail(s, code, "source: %s (%s, dtype %s)", pm_strerror(code), where,
			    pm_dtype_name(src->dtype) ? pm_dtype_name(src->dtype) : "unknown");
	/* the source's shape, where the key is about the source */
	if (k == K_CHUNK || k == K_THREADS || k == K_BACKEND || k == K_ORDER || k == K_LAYOUT)
		return fail(s, code, "%s: %s%s%s", keys[k], s->set[k] ? s->text[k] : "",
			    s->set[k] ? ": " : "", pm_strerror(code));
	return fail(s, code, "%s: %s%s%s (%s)", keys[k], s->set[k] ? s->text[k] : "", s->set[k] ? ": " : "",
		    pm_strerror(code), where);
}

int pm_spec_matrix(pm_spec *s, const struct pm_source *src, struct pm_matrix_opts *o,
		   struct pm_matrix_info *info)
{
	struct pm_matrix_info local = { 0 };
	char where[200];
	int n, ch, nsp, code;
	bool padded;

	if (!s)
		return -PM_ENULL;
	s->err[0] = 0;
	if (!src || !o)
		return fail(s, -PM_ENULL, "source: no source or no options to fill");
	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->source = *src;
	o->source.has_channels = false;
	o->source.channel_axis = 0;
	n = src->ndim;
	if (n < 1 || n > PM_MAX_DIMS)
		return fail(s, -PM_ENDIM, "source: %d dimensions; 1 to %d are accepted", n,
			    PM_MAX_DIMS);
	if (!s->nwindow)
		return fail(s, -PM_ESPEC, "window: not given: give one size for every spatial "
					  "axis, or one for all, such as 16 or 16x16");
	ch = channel_rule(s, src, &code);
	if (code)
		return code;
	nsp = n - (ch >= 0);
	fmt_source(where, sizeof(where), src, ch);
	if (s->nwindow != 1 && s->nwindow != nsp)
		return count_error(s, K_WINDOW, s->nwindow, nsp, where);
	if (s->nstep > 1 && s->nstep != nsp)
		return count_error(s, K_STEP, s->nstep, nsp, where);
	if (s->ndilation > 1 && s->ndilation != nsp)
		return count_error(s, K_DILATION, s->ndilation, nsp, where);
	if (s->npad > 1 && s->npad != nsp)
		return count_error(s, K_PAD, s->npad, nsp, where);
	o->source.has_channels = ch >= 0;
	o->source.channel_axis = ch >= 0 ? ch : 0;

	/* pad_mode or pad_value alone ask for padding: "same" */
	padded = s->set[K_PAD] || s->set[K_PAD_MODE] || s->set[K_PAD_VALUE];
	for (int a = 0, i = 0; i < n; i++) {
		struct pm_window *w = &o->window[a];

		if (i == ch)
			continue;
		w->size = s->window[s->nwindow == 1 ? 0 : a];
		w->step = s->nstep ? s->step[s->nstep == 1 ? 0 : a] : 1;
		w->dilation = s->ndilation ? s->dilation[s->ndilation == 1 ? 0 : a] : 1;
		if (padded && (s->pad_same || !s->set[K_PAD])) {
			if (!pad_same(src->shape[i], w, &w->pad_before, &w->pad_after))
				return fail(s, -PM_EPAD, "pad: same needs more than the 2^32 samples "
							 "accepted per side on axis %d (%s)",
					    i, where);
		} else if (s->npad) {
			w->pad_before = s->pad_before[s->npad == 1 ? 0 : a];
			w->pad_after = s->pad_after[s->npad == 1 ? 0 : a];
		}
		a++;
	}
	o->pad_mode = s->set[K_PAD_MODE] ? s->pad_mode
					 : s->set[K_PAD_VALUE] ? PM_PAD_CONSTANT : PM_PAD_ZERO;
	if (s->set[K_PAD_VALUE] && o->pad_mode != PM_PAD_CONSTANT &&
	    !(o->pad_mode == PM_PAD_ZERO && s->pad_value == 0))
		return fail(s, -PM_ESPEC, "pad_value: %s goes with pad_mode constant, not %s",
			    s->text[K_PAD_VALUE], pm_pad_mode_name(o->pad_mode));
	o->pad_value = o->pad_mode == PM_PAD_CONSTANT ? s->pad_value : 0;
	if (o->pad_mode == PM_PAD_CONSTANT && s->set[K_PAD_VALUE] &&
	    (dtype_kind(src->dtype) == 'i' || dtype_kind(src->dtype) == 'u') &&
	    s->pad_inexact)
		return fail(s, -PM_EPADVALUE, "pad_value: %s is a whole number that the pad value, "
					      "a double, cannot hold exactly (it would be %.0f): "
					      "beyond 2^53 = 9007199254740992 in magnitude, doubles "
					      "hold only some whole numbers",
			    s->text[K_PAD_VALUE], s->pad_value);
	o->dtype = s->dtype;
	o->affine = s->set[K_SCALE] || s->set[K_OFFSET];
	o->scale = s->scale;
	o->offset = s->offset;
	o->order = s->order;
	o->layout = s->layout;
	o->row_pitch = s->row_pitch;
	o->lazy = s->lazy;
	code = pm_matrix_describe(o, info ? info : &local);
	if (code)
		return describe_error(s, code, o, ch);
	return 0;
}

/* ---------------------------------------------------------------- memory */

int pm_spec_check_memory(pm_spec *s, const struct pm_matrix_info *info)
{
	size_t chunk, budget;
	uint64_t resident;
	int backend;
	struct pm_memory m;
	char b1[32], b2[32], b3[32];
	bool from_env = false, lazy;

	if (!s)
		return -PM_ENULL;
	s->err[0] = 0;
	if (!info)
		return fail(s, -PM_ENULL, "source: no matrix description to check");
	backend = s->lazy.backend;
	if (backend == PM_BACKEND_AUTO && getenv("PATCHMAP_BACKEND") &&
	    pm_backend_parse(getenv("PATCHMAP_BACKEND")) == PM_BACKEND_EAGER) {
		backend = PM_BACKEND_EAGER;
		from_env = true;
	}
	if (backend == PM_BACKEND_NONE)
		return 0;
	lazy = backend != PM_BACKEND_EAGER;
	chunk = s->lazy.chunk ? s->lazy.chunk : PM_DEFAULT_CHUNK;
	budget = s->lazy.budget ? s->lazy.budget : PM_DEFAULT_BUDGET;
	if (lazy && s->set[K_BUDGET] && budget != PM_BUDGET_UNLIMITED && budget / 2 < chunk)
		return budget_error(s, -PM_EBUDGET);
	/* As the library decides at open (lib/region.c): the default budget
	 * lowered to fit, then the resident bound against what is left. */
	pm__memory_read(NULL, &m);
	if (!s->lazy.budget)
		budget = pm__default_budget(&m);
	resident = pm__resident_bound(info->bytes, chunk, lazy, budget);
	if (resident <= m.available)
		return 0;
	pm__fmt_bytes(b1, sizeof(b1), (double)m.available);
	pm__fmt_bytes(b2, sizeof(b2), (double)resident);
	if (!lazy)
		return fail(s, -PM_EMEMORY, "backend: %s allows %s more; %s would keep all %s of the "
					    "matrix resident; use a lazy backend",
			    m.source, b1, from_env ? "eager (from PATCHMAP_BACKEND)" : "eager", b2);
	if (budget == PM_BUDGET_UNLIMITED)
		return fail(s, -PM_EMEMORY, "budget: %s allows %s more; budget unlimited would keep "
					    "all %s of the matrix resident; give a budget, or "
					    "none: the default fits",
			    m.source, b1, b2);
	if (!s->lazy.budget)
		return fail(s, -PM_EMEMORY, "budget: %s allows %s more; even the smallest budget, two "
					    "chunks of %s, asks %s; lower chunk",
			    m.source, b1, pm__fmt_size(b3, sizeof(b3), chunk), b2);
	return fail(s, -PM_EMEMORY, "budget: %s allows %s more; the budget asks %s%s; give a smaller "
				    "budget, or none: the default fits",
		    m.source, b1, b2, resident < budget ? " (the whole matrix)" : "");
}

/* ---------------------------------------------------------------- rows */

int pm_spec_rows(pm_spec *s, const struct pm_matrix_opts *o, struct pm_rows *rows,
		 struct pm_matrix_info *info)
{
	struct pm_matrix_info local = { 0 };
	char where[200], d[160];
	uint64_t end;
	int code;

	if (!s)
		return -PM_ENULL;
	s->err[0] = 0;
	if (!o || !rows)
		return fail(s, -PM_ENULL, "row_range: no options or no selection to fill");
	memset(rows, 0, sizeof(*rows));
	rows->size = sizeof(*rows);
	rows->kind = PM_ROWS_ALL;
	if (!info)
		info = &local;
	code = pm_matrix_describe_rows(o, NULL, info);
	if (code)
		return fail(s, code, "source: %s", pm_strerror(code));
	if (!s->set[K_ROW_RANGE])
		return 0;
	snprintf(where, sizeof(where), "%zu windows, out_shape %s", info->windows,
		 pm__fmt_dims(d, sizeof(d), info->out_shape, info->nspatial));
	if (o->layout != PM_LAYOUT_ROWS)
		return fail(s, -PM_EROWSLAYOUT, "row_range: %s: a row selection needs layout rows "
						"(one row per window), not %s",
			    s->text[K_ROW_RANGE], pm_layout_name(o->layout));
	end = s->range_end == UINT64_MAX ? info->windows : s->range_end;
	if (s->range_end != UINT64_MAX && end > info->windows)
		return fail(s, -PM_EROWRANGE, "row_range: %s ends past the last window (%s): give "
					      "an end of at most %zu",
			    s->text[K_ROW_RANGE], where, info->windows);
	if (s->range_begin >= end)
		return fail(s, -PM_EROWRANGE, "row_range: %s begins at or past the end (%s): give "
					      "a beginning below %" PRIu64,
			    s->text[K_ROW_RANGE], where, end);
	rows->kind = PM_ROWS_RANGE;
	rows->begin = (size_t)s->range_begin;
	rows->end = (size_t)end;
	code = pm_matrix_describe_rows(o, rows, info);
	if (code)
		return fail(s, code, "row_range: %s: %s (%s)", s->text[K_ROW_RANGE],
			    pm_strerror(code), where);
	return 0;
}
