/* options.c: the front ends' options as text, the raw image keys, and the
 * report of the resolved options (see options.h). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "text.h"

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, FE_ERRLEN, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *const raw_keys[FE_RAW_COUNT] = {
	[FE_SHAPE] = "shape",
	[FE_RAW_DTYPE] = "raw_dtype",
	[FE_RAW_OFFSET] = "raw_offset",
	[FE_PAGE] = "page",
	[FE_LEVEL] = "level",
	[FE_BANDS] = "bands",
	[FE_IMAGE_BUDGET] = "image_budget",
	[FE_IMAGE_CHUNK] = "image_chunk",
};

const char *fe_raw_key_name(int i)
{
	return i >= 0 && i < FE_RAW_COUNT ? raw_keys[i] : NULL;
}

/* Key names compare with '-' and '_' alike and case ignored, as the
 * spec's. */
static bool same_key(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = *a == '-' ? '_' : *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
		char y = *b == '-' ? '_' : *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;

		if (x != y)
			return false;
		if (!x)
			return true;
	}
}

int fe_raw_key(const char *key)
{
	for (int i = 0; i < FE_RAW_COUNT; i++)
		if (same_key(key, raw_keys[i]))
			return i;
	return -1;
}

int fe_options_init(struct fe_options *f)
{
	memset(f, 0, sizeof(*f));
	f->raw.dtype = PM_DTYPE_U8;
	return pm_spec_new(&f->spec) ? -ENOMEM : 0;
}

void fe_options_free(struct fe_options *f)
{
	pm_spec_free(f->spec);
	f->spec = NULL;
}

/* A value quoted in a message: at most 40 bytes of it. */
#define Q(s) (int)(strlen(s) > 40 ? 40 : strlen(s)), (s), (strlen(s) > 40 ? "..." : "")

/* A whole number from 0 to INT_MAX, blanks around it allowed. */
static bool parse_index(const char *v, int *out)
{
	char *end;
	long n;

	while (*v == ' ' || *v == '\t')
		v++;
	if (*v < '0' || *v > '9')
		return false;
	errno = 0;
	n = strtol(v, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end || errno || n > INT_MAX)
		return false;
	*out = (int)n;
	return true;
}

/* bands: band numbers from 0, separated by ',' (blanks allowed). */
static int parse_bands(const char *v, struct img_vips *iv, char *err)
{
	char buf[512], *p, *save = NULL;
	int n = 0;

	if (!*v || strlen(v) >= sizeof buf)
		goto bad;
	snprintf(buf, sizeof buf, "%s", v);
	/* no empty entry: ",1", "1,", "1,,2" */
	if (buf[0] == ',' || buf[strlen(buf) - 1] == ',' || strstr(buf, ",,"))
		goto bad;
	for (p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		if (n == IMG_MAX_BANDS)
			return fail(err, "bands: '%.*s%s' lists more than %d bands", Q(v),
				    IMG_MAX_BANDS);
		if (!parse_index(p, &iv->bands[n++]))
			goto bad;
	}
	if (!n)
		goto bad;
	iv->nbands = n;
	return 0;
bad:
	return fail(err, "bands: '%.*s%s' is not a list of band numbers from 0 such as 0 or 2,1,0",
		    Q(v));
}

static int set_raw(struct fe_options *f, int k, const char *v, char *err)
{
	size_t shape[PM_MAX_DIMS], z;
	bool big;
	int n;

	switch (k) {
	case FE_SHAPE:
		n = pm_dims_parse(v, shape, PM_MAX_DIMS);
		if (n < 0)
			return fail(err, "shape: '%.*s%s' is not the shape of a raw file such as 480x640 "
					 "or 480x640x3 (1 to %d positive sizes)",
				    Q(v), PM_MAX_DIMS);
		f->raw.ndim = n;
		memcpy(f->raw.shape, shape, sizeof(shape));
		break;
	case FE_RAW_DTYPE:
		n = pm_dtype_parse(v, &big);
		if (n == -PM_EAMBIGUOUS) {
			char q[64], m[256];

			snprintf(q, sizeof(q), "'%.*s%s'", Q(v));
			return fail(err, "%s", pm__fmt_ambiguous_dtype(m, sizeof(m), "raw_dtype", q));
		}
		if (n < 0)
			return fail(err, "raw_dtype: '%.*s%s' is not a sample type: numpy's name "
					 "(uint16), bits (u16) or numpy's code (<u2; '>' for "
					 "big-endian, >f4)",
				    Q(v));
		f->raw.dtype = n;
		f->raw.big_endian = big;
		break;
	case FE_RAW_OFFSET:
		if (pm_size_parse(v, false, &z) < 0)
			return fail(err, "raw_offset: '%.*s%s' is not a byte count such as 4096 or 64K",
				    Q(v));
		f->raw.offset = z;
		break;
	case FE_PAGE:
		if (!parse_index(v, &f->vips.page))
			return fail(err, "page: '%.*s%s' is not a page number (0 for the first)", Q(v));
		break;
	case FE_LEVEL:
		if (!parse_index(v, &f->vips.level))
			return fail(err, "level: '%.*s%s' is not a pyramid level (0 for the full "
					 "resolution, 1 the next, ...)",
				    Q(v));
		break;
	case FE_BANDS:
		if (parse_bands(v, &f->vips, err))
			return -1;
		break;
	case FE_IMAGE_BUDGET:
		if (pm_size_parse(v, true, &z) < 0 || !z)
			return fail(err, "image_budget: '%.*s%s' is not a byte count such as 64M or "
					 "1.5G, or unlimited",
				    Q(v));
		f->vips.budget = z;
		break;
	case FE_IMAGE_CHUNK:
		if (pm_size_parse(v, false, &z) < 0 || !z || (z & (z - 1)))
			return fail(err, "image_chunk: '%.*s%s' is not a power of two of bytes such as "
					 "256K or 4M",
				    Q(v));
		f->vips.chunk = z;
		break;
	}
	f->raw_given[k] = true;
	return 0;
}

int fe_options_set(struct fe_options *f, const char *key, const char *value, char *err)
{
	int k = fe_raw_key(key), e;

	if (k >= 0)
		return set_raw(f, k, value, err);
	e = pm_spec_set(f->spec, key, value);
	if (e == -PM_EKEY)
		return 1;
	if (e)
		return fail(err, "%s", pm_spec_error(f->spec));
	return 0;
}

int fe_raw_key_of_message(const struct fe_options *f, const char *msg)
{
	for (int k = 0; k < FE_RAW_COUNT; k++) {
		size_t n = strlen(raw_keys[k]);

		if (f->raw_given[k] && !strncmp(msg, raw_keys[k], n) && msg[n] == ':')
			return k;
	}
	return -1;
}

/* The first libvips image key given, or -1. */
static int vips_key_given(const struct fe_options *f)
{
	for (int k = FE_PAGE; k < FE_RAW_COUNT; k++)
		if (f->raw_given[k])
			return k;
	return -1;
}

int fe_options_check(const struct fe_options *f, int *key, char *err)
{
	int k = vips_key_given(f);

	if (f->raw_given[FE_SHAPE]) {
		if (k < 0)
			return 0;
		*key = k;
		return fail(err, "%s: only for an image file libvips reads, not a raw file",
			    raw_keys[k]);
	}
	for (k = FE_RAW_DTYPE; k < FE_PAGE; k++)
		if (f->raw_given[k]) {
			*key = k;
			return fail(err, "%s: only for a raw file, whose shape is given too", raw_keys[k]);
		}
	return 0;
}


int fe_options_matrix(struct fe_options *f, const struct img *im, struct pm_matrix_opts *o,
		      struct pm_matrix_info *info, char *err)
{
	if (pm_spec_matrix(f->spec, &im->src, o, info))
		return fail(err, "%s", pm_spec_error(f->spec));
	return 0;
}

/* ---------------------------------------------------------------- report */

void fe_report_options(struct json *j, const struct pm_matrix_opts *o,
		       const struct pm_matrix_info *info)
{
	size_t v[PM_MAX_DIMS];
	int ns = info->nspatial;

	json_obj(j, "options");
	for (int i = 0; i < ns; i++)
		v[i] = o->window[i].size;
	json_dims(j, "window", v, ns);
	for (int i = 0; i < ns; i++)
		v[i] = o->window[i].step;
	json_dims(j, "step", v, ns);
	for (int i = 0; i < ns; i++)
		v[i] = o->window[i].dilation;
	json_dims(j, "dilation", v, ns);
	for (int i = 0; i < ns; i++)
		v[i] = (size_t)o->window[i].pad_before;
	json_dims(j, "pad_before", v, ns);
	for (int i = 0; i < ns; i++)
		v[i] = (size_t)o->window[i].pad_after;
	json_dims(j, "pad_after", v, ns);
	json_str(j, "pad_mode", pm_pad_mode_name(o->pad_mode));
	json_num(j, "pad_value", o->pad_value);
	if (o->source.has_channels)
		json_i64(j, "channel_axis", o->source.channel_axis);
	else
		json_null(j, "channel_axis");
	json_str(j, "dtype", pm_dtype_name(info->dtype));
	json_bool(j, "affine", o->affine);
	json_num(j, "scale", o->affine ? o->scale : 1.0);
	json_num(j, "offset", o->affine ? o->offset : 0.0);
	json_str(j, "order", pm_order_name(o->order));
	json_str(j, "layout", pm_layout_name(o->layout));
	json_u64(j, "row_pitch", o->row_pitch);
	json_str(j, "backend", pm_backend_name(o->lazy.backend));
	if (o->lazy.budget == PM_BUDGET_UNLIMITED)
		json_str(j, "budget", "unlimited");
	else if (o->lazy.budget)
		json_u64(j, "budget", o->lazy.budget);
	else
		json_null(j, "budget");
	if (o->lazy.chunk)
		json_u64(j, "chunk", o->lazy.chunk);
	else
		json_null(j, "chunk");
	if (o->lazy.threads)
		json_i64(j, "threads", o->lazy.threads);
	else
		json_null(j, "threads");
	if (o->lazy.readahead)
		json_i64(j, "readahead", o->lazy.readahead < 0 ? 0 : o->lazy.readahead);
	else
		json_null(j, "readahead");
	json_bool(j, "writable", o->lazy.flags & PM_LAZY_WRITABLE);
	json_close(j, '}');
}

void fe_report_matrix(struct json *j, const struct pm_matrix_info *info)
{
	json_obj(j, "matrix");
	json_u64(j, "rows", info->rows);
	json_u64(j, "cols", info->cols);
	json_u64(j, "ld", info->ld);
	json_str(j, "dtype", pm_dtype_name(info->dtype));
	json_u64(j, "elem_size", info->elem_size);
	json_u64(j, "bytes", info->bytes);
	json_dims(j, "out_shape", info->out_shape, info->nspatial);
	json_u64(j, "windows", info->windows);
	json_u64(j, "window_elems", info->window_elems);
	json_u64(j, "channels", info->channels);
	json_close(j, '}');
}
