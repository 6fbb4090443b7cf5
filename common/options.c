/* options.c: the front ends' options as text, the raw image keys, and the
 * report of the resolved options (see options.h). */
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
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
	[FE_ROWS] = "rows",
	[FE_MASK] = "mask",
	[FE_SAMPLE] = "sample",
	[FE_SEED] = "seed",
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
	f->seed = 1;
	return pm_spec_new(&f->spec) ? -ENOMEM : 0;
}

void fe_options_free(struct fe_options *f)
{
	pm_spec_free(f->spec);
	f->spec = NULL;
	free(f->rows_path);
	free(f->mask_path);
	f->rows_path = f->mask_path = NULL;
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
	size_t len = strlen(v);
	int n = 0;

	if (!len || len >= sizeof buf)
		goto bad;
	memcpy(buf, v, len + 1);
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
		n = pm_size_parse(v, false, &z);
		if (n == -PM_ETOOBIG)
			return fail(err, "raw_offset: '%.*s%s' is a byte count too large to be "
					 "represented here (at most %zu)",
				    Q(v), SIZE_MAX - 1);
		if (n < 0)
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
	case FE_ROWS:
	case FE_MASK: {
		char *copy = strdup(v), **slot = k == FE_ROWS ? &f->rows_path : &f->mask_path;

		if (!copy)
			return fail(err, "%s: out of memory", raw_keys[k]);
		free(*slot);
		*slot = copy;
		break;
	}
	case FE_SAMPLE: {
		char *end;
		double x;

		if (strspn(v, "0123456789") == strlen(v) && *v) {
			errno = 0;
			unsigned long long n = strtoull(v, &end, 10);

			if (errno || !n)
				goto bad_sample;
			f->sample = n;
			f->sample_fraction = 0;
			break;
		}
		errno = 0;
		x = strtod(v, &end);
		if (errno || *end || end == v || !(x > 0 && x < 1) || (*v != '0' && *v != '.'))
			goto bad_sample;
		f->sample = 0;
		f->sample_fraction = x;
		break;
bad_sample:
		return fail(err, "sample: '%.*s%s' is not a count of windows (such as 1000) or a "
				 "fraction of them between 0 and 1 (such as 0.01)",
			    Q(v));
	}
	case FE_SEED:
		if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 20 ||
		    (strlen(v) == 20 && strcmp(v, "18446744073709551615") > 0))
			return fail(err, "seed: '%.*s%s' is not a whole number from 0 to 2^64 - 1",
				    Q(v));
		f->seed = strtoull(v, NULL, 10);
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
	for (int k = FE_PAGE; k <= FE_IMAGE_CHUNK; k++)
		if (f->raw_given[k])
			return k;
	return -1;
}

int fe_options_check(const struct fe_options *f, int *key, char *err)
{
	int k = vips_key_given(f);

	if (f->raw_given[FE_SEED] && !f->raw_given[FE_SAMPLE] && !f->seed_other_use) {
		*key = FE_SEED;
		return fail(err, "seed: only with sample, whose draw it seeds");
	}

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

/* ---------------------------------------------------------------- rows */

/* splitmix64 (Steele, Lea and Flood 2014): the tool's sampler draws from it. */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static const char *fmt_shape(char *buf, size_t n, const size_t *v, int count)
{
	size_t k = 0;

	buf[0] = 0;
	for (int a = 0; a < count && k < n; a++)
		k += (size_t)snprintf(buf + k, n - k, a ? "x%zu" : "%zu", v[a]);
	return buf;
}

/* path, or dir/path for a relative path under dir: malloc'ed. */
static char *full_path(const char *dir, const char *path)
{
	char *p;

	if (!dir || path[0] == '/')
		return strdup(path);
	if (asprintf(&p, "%s/%s", dir, path) < 0)
		return NULL;
	return p;
}

/* Element i (in C order) of an n-D integer array, as a signed or unsigned
 * 64-bit value. */
static void element(const struct pm_source *src, size_t i, int64_t *sv, uint64_t *uv, bool *neg)
{
	const char *p = src->data;

	for (int a = src->ndim - 1; a >= 0; a--) {
		p += (ptrdiff_t)(i % src->shape[a]) * src->strides[a];
		i /= src->shape[a];
	}
	*neg = false;
	switch (src->dtype) {
	case PM_DTYPE_BOOL:
	case PM_DTYPE_U8: *uv = *(const uint8_t *)p; return;
	case PM_DTYPE_U16: *uv = *(const uint16_t *)p; return;
	case PM_DTYPE_U32: *uv = *(const uint32_t *)p; return;
	case PM_DTYPE_U64: *uv = *(const uint64_t *)p; return;
	case PM_DTYPE_I8: *sv = *(const int8_t *)p; break;
	case PM_DTYPE_I16: *sv = *(const int16_t *)p; break;
	case PM_DTYPE_I32: *sv = *(const int32_t *)p; break;
	default: *sv = *(const int64_t *)p; break;
	}
	*neg = *sv < 0;
	*uv = (uint64_t)*sv;
}

static bool integer_dtype(int d)
{
	return d == PM_DTYPE_U8 || d == PM_DTYPE_U16 || d == PM_DTYPE_U32 || d == PM_DTYPE_U64 ||
	       d == PM_DTYPE_I8 || d == PM_DTYPE_I16 || d == PM_DTYPE_I32 || d == PM_DTYPE_I64;
}

static size_t elements(const struct pm_source *src)
{
	size_t n = 1;

	for (int a = 0; a < src->ndim; a++)
		n *= src->shape[a];
	return n;
}

static int read_index(struct fe_options *f, const char *dir, const struct pm_matrix_info *info,
		      const char *where, struct fe_rows *sel, char *err)
{
	char ierr[IMG_ERRLEN], *path = full_path(dir, f->rows_path);
	struct img im;
	size_t n;
	int ret = -1;

	if (!path)
		return fail(err, "rows: out of memory");
	if (img_open(path, NULL, &im, ierr)) {
		fail(err, "rows: '%.*s%s': %s", Q(f->rows_path), ierr);
		free(path);
		return -1;
	}
	free(path);
	if (strcmp(im.format, "npy") || !integer_dtype(im.src.dtype)) {
		fail(err, "rows: '%.*s%s' holds %s %s, not a .npy of integer window numbers",
		     Q(f->rows_path), im.format, pm_dtype_name(im.src.dtype));
		goto out;
	}
	n = elements(&im.src);
	if (!n) {
		fail(err, "rows: '%.*s%s' selects no window (it is empty)", Q(f->rows_path));
		goto out;
	}
	sel->index = malloc(n * sizeof(uint64_t));
	if (!sel->index) {
		fail(err, "rows: out of memory for %zu window numbers", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t sv = 0;
		uint64_t uv = 0;
		bool neg;

		element(&im.src, i, &sv, &uv, &neg);
		if (neg || uv >= info->windows) {
			if (neg)
				fail(err, "rows: '%.*s%s': window number %" PRId64 " at position %zu is "
					  "negative (%s)",
				     Q(f->rows_path), sv, i, where);
			else
				fail(err, "rows: '%.*s%s': window number %" PRIu64 " at position %zu is "
					  "past the last window (%s): give numbers below %zu",
				     Q(f->rows_path), uv, i, where, info->windows);
			goto out;
		}
		sel->index[i] = uv;
	}
	sel->rows.kind = PM_ROWS_INDEX;
	sel->rows.index = sel->index;
	sel->rows.count = n;
	sel->kind = "index";
	ret = 0;
out:
	img_close(&im);
	return ret;
}

static int read_mask(struct fe_options *f, const char *dir, const struct pm_matrix_info *info,
		     struct fe_rows *sel, char *err)
{
	char ierr[IMG_ERRLEN], b1[160], *path = full_path(dir, f->mask_path);
	bool pgm, same;
	struct img im;
	size_t n = 0, k = 0;
	int ret = -1;

	if (!path)
		return fail(err, "mask: out of memory");
	if (img_open(path, NULL, &im, ierr)) {
		fail(err, "mask: '%.*s%s': %s", Q(f->mask_path), ierr);
		free(path);
		return -1;
	}
	free(path);
	pgm = !strcmp(im.format, "pgm");
	if (!pgm && !(im.src.dtype == PM_DTYPE_BOOL || !strcmp(im.format, "npy"))) {
		fail(err, "mask: '%.*s%s' is a %s file: give a bool .npy or a PGM of the windows' "
			  "out_shape",
		     Q(f->mask_path), im.format);
		goto out;
	}
	if (!pgm && im.src.dtype != PM_DTYPE_BOOL) {
		fail(err, "mask: '%.*s%s' holds %s, not bool: give a bool .npy or a PGM",
		     Q(f->mask_path), pm_dtype_name(im.src.dtype));
		goto out;
	}
	same = im.src.ndim == info->nspatial;
	for (int a = 0; same && a < im.src.ndim; a++)
		same = im.src.shape[a] == info->out_shape[a];
	if (!same) {
		fail(err, "mask: '%.*s%s' has shape %s; it must have the windows' out_shape %s (%zu "
			  "windows)",
		     Q(f->mask_path), fmt_shape(b1, sizeof(b1), im.src.shape, im.src.ndim),
		     fmt_shape(ierr, sizeof(ierr), info->out_shape, info->nspatial), info->windows);
		goto out;
	}
	for (size_t i = 0; i < info->windows; i++) {
		int64_t sv = 0;
		uint64_t uv = 0;
		bool neg;

		element(&im.src, i, &sv, &uv, &neg);
		n += uv != 0;
	}
	if (!n) {
		fail(err, "mask: '%.*s%s' selects no window (it is all false)", Q(f->mask_path));
		goto out;
	}
	/* kept as the index it stands for: the reports and the checksum */
	sel->index = malloc(n * sizeof(uint64_t));
	if (!sel->index) {
		fail(err, "mask: out of memory for %zu window numbers", n);
		goto out;
	}
	for (size_t i = 0; i < info->windows; i++) {
		int64_t sv = 0;
		uint64_t uv = 0;
		bool neg;

		element(&im.src, i, &sv, &uv, &neg);
		if (uv)
			sel->index[k++] = i;
	}
	sel->rows.kind = PM_ROWS_INDEX;
	sel->rows.index = sel->index;
	sel->rows.count = n;
	sel->kind = "mask";
	ret = 0;
out:
	img_close(&im);
	return ret;
}

/* The tool's sampler (doc/options.md): n draws with replacement, each the
 * first splitmix64 output x (state seeded with `seed`) below the largest
 * multiple of the window count W, taken mod W. */
static int draw_sample(struct fe_options *f, const struct pm_matrix_info *info,
		       const char *where, struct fe_rows *sel, char *err)
{
	uint64_t W = info->windows, n = f->sample, state = f->seed, limit;

	if (f->sample_fraction > 0) {
		n = (uint64_t)(f->sample_fraction * (double)W);
		if (!n)
			return fail(err, "sample: %.17g of the %s is no window: give a larger fraction "
					 "or a count",
				    f->sample_fraction, where);
	} else if (n > W) {
		return fail(err, "sample: %" PRIu64 " is more than the %s: give at most %" PRIu64,
			    n, where, W);
	}
	sel->index = malloc(n * sizeof(uint64_t));
	if (!sel->index)
		return fail(err, "sample: out of memory for %" PRIu64 " window numbers", n);
	limit = UINT64_MAX - UINT64_MAX % W; /* draws at or above are redrawn */
	if (UINT64_MAX % W == W - 1)
		limit = 0; /* W divides 2^64: every draw is kept */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t x;

		do
			x = splitmix64(&state);
		while (limit && x >= limit);
		sel->index[i] = x % W;
	}
	sel->rows.kind = PM_ROWS_INDEX;
	sel->rows.index = sel->index;
	sel->rows.count = n;
	sel->kind = "sample";
	return 0;
}

void fe_rows_free(struct fe_rows *sel)
{
	free(sel->index);
	memset(sel, 0, sizeof(*sel));
}

int fe_options_rows(struct fe_options *f, const char *dir, const struct pm_matrix_opts *o,
		    struct fe_rows *sel, struct pm_matrix_info *info, char *err)
{
	static const int sel_keys[] = { FE_ROWS, FE_MASK, FE_SAMPLE };
	char where[200], d[160];
	const char *first = pm_spec_isset(f->spec, "row_range") ? "row_range" : NULL;
	int ret, code;

	memset(sel, 0, sizeof(*sel));
	for (size_t i = 0; i < sizeof(sel_keys) / sizeof(sel_keys[0]); i++) {
		if (!f->raw_given[sel_keys[i]])
			continue;
		if (first)
			return fail(err, "%s: give one of row_range, rows, mask and sample, not %s "
					 "and %s",
				    raw_keys[sel_keys[i]], first, raw_keys[sel_keys[i]]);
		first = raw_keys[sel_keys[i]];
	}
	if (pm_spec_rows(f->spec, o, &sel->rows, info))
		return fail(err, "%s", pm_spec_error(f->spec));
	sel->kind = sel->rows.kind == PM_ROWS_RANGE ? "range" : "all";
	if (!first || !strcmp(first, "row_range"))
		return 0;
	snprintf(where, sizeof(where), "%zu windows, out_shape %s", info->windows,
		 fmt_shape(d, sizeof(d), info->out_shape, info->nspatial));
	if (o->layout != PM_LAYOUT_ROWS)
		return fail(err, "%s: a row selection needs layout rows (one row per window), not %s",
			    first, pm_layout_name(o->layout));
	if (f->raw_given[FE_ROWS])
		ret = read_index(f, dir, info, where, sel, err);
	else if (f->raw_given[FE_MASK])
		ret = read_mask(f, dir, info, sel, err);
	else
		ret = draw_sample(f, info, where, sel, err);
	if (ret) {
		fe_rows_free(sel);
		return ret;
	}
	sel->rows.size = sizeof(sel->rows);
	for (size_t i = 0; i < sel->rows.count; i++)
		sel->checksum += (uint64_t)(i + 1) * sel->index[i];
	code = pm_matrix_describe_rows(o, &sel->rows, info);
	if (code) {
		fail(err, "%s: %s (%s)", first, pm_strerror(code), where);
		fe_rows_free(sel);
		return -1;
	}
	return 0;
}

void fe_report_rows(struct json *j, const struct fe_rows *sel)
{
	json_obj(j, "rows");
	json_str(j, "kind", sel->kind ? sel->kind : "all");
	if (sel->rows.kind == PM_ROWS_RANGE) {
		json_u64(j, "begin", sel->rows.begin);
		json_u64(j, "end", sel->rows.end);
	}
	if (sel->rows.kind == PM_ROWS_INDEX) {
		json_u64(j, "count", sel->rows.count);
		json_u64(j, "checksum", sel->checksum);
	}
	json_close(j, '}');
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
