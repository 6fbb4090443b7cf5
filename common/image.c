/* image.c: .npy, PGM/PPM and raw image files as pm_source arrays; header
 * parsers that trust nothing in their buffer, and the .npy header writer. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image readers assume a little-endian machine"
#endif

static const char npy_magic[6] = { '\x93', 'N', 'U', 'M', 'P', 'Y' };

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, IMG_ERRLEN, fmt, ap);
	va_end(ap);
	return -1;
}

static size_t dtype_size(int dtype)
{
	return pm_dtype_size(dtype);
}

const char *npy_descr(int dtype, char *buf)
{
	const char *name = pm_dtype_name(dtype);
	size_t es = pm_dtype_size(dtype);

	/* numpy's kind letter is the initial of its name: bool, int, uint,
	 * float; one byte has no byte order */
	if (dtype == PM_DTYPE_SAME || !name || !es || es > 9)
		return NULL;
	buf[0] = es == 1 ? '|' : '<';
	buf[1] = name[0];
	buf[2] = (char)('0' + es);
	buf[3] = 0;
	return buf;
}

/* ---------------------------------------------------------------- .npy */

/* A cursor over the header's dictionary text. */
struct cur {
	const char *p, *end;
};

static void skip_ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static bool eat(struct cur *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* A Python string literal without escapes: its text in [*s, *s + *n). */
static bool parse_str(struct cur *c, const char **s, size_t *n)
{
	char q;

	skip_ws(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return false;
	q = *c->p++;
	*s = c->p;
	while (c->p < c->end && *c->p != q) {
		if (*c->p == '\\' || *c->p == '\n')
			return false;
		c->p++;
	}
	if (c->p >= c->end)
		return false;
	*n = (size_t)(c->p - *s);
	c->p++;
	return true;
}

static bool parse_word(struct cur *c, const char *w)
{
	size_t n = strlen(w);

	skip_ws(c);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n))
		return false;
	c->p += n;
	return true;
}

/* A non-negative decimal integer (Python 2's 'L' suffix allowed). */
static bool parse_uint(struct cur *c, size_t *v)
{
	size_t x = 0;
	bool any = false;

	skip_ws(c);
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (size_t)(*c->p - '0'), &x))
			return false;
		c->p++;
		any = true;
	}
	if (any && c->p < c->end && *c->p == 'L')
		c->p++;
	*v = x;
	return any;
}

/* At most 32 bytes of header text s[0..n), for a message: control and
 * non-ASCII bytes (a NUL among them) shown as '?', "..." after a cut. */
static const char *shown(char buf[40], const char *s, size_t n)
{
	size_t k = 0;

	for (; k < n && k < 32; k++)
		buf[k] = (unsigned char)s[k] < ' ' || (unsigned char)s[k] >= 0x7f ? '?' : s[k];
	if (k < n) {
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = 0;
	return buf;
}

/* numpy's descr: a byte order, a kind letter and a byte count ("<f4"),
 * read by the library's dtype parser, the one every front end uses. */
static int parse_descr(const char *s, size_t n, struct npy_header *h, char *err)
{
	char code[16], q[40];
	size_t i = 0;
	bool big;

	if (n && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '='))
		i++;
	if (i >= n)
		return fail(err, "bad .npy header: empty dtype");
	if (i + 1 >= n)
		return fail(err, "bad .npy header: dtype '%s' has no size", shown(q, s, n));
	for (size_t k = i + 1; k < n; k++)
		if (s[k] < '0' || s[k] > '9' || n >= sizeof(code))
			return fail(err, "unsupported .npy dtype '%s'", shown(q, s, n));
	memcpy(code, s, n);
	code[n] = 0;
	h->dtype = pm_dtype_parse(code, &big);
	if (h->dtype <= 0 || strchr("biuf", s[i]) == NULL)
		return fail(err,
			    "unsupported .npy dtype '%s' (readable: bool, uint8, int8, uint16, "
			    "int16, uint32, int32, uint64, int64, float16, float32, float64)",
			    shown(q, s, n));
	h->big_endian = big;
	return 0;
}

int npy_parse_header(const void *buf, size_t len, struct npy_header *h, char *err)
{
	const unsigned char *b = buf;
	size_t start, hlen, n, es;
	bool seen_descr = false, seen_order = false, seen_shape = false;
	char q[40];
	struct cur c;
	const char *s;

	memset(h, 0, sizeof(*h));
	if (len < sizeof(npy_magic) || memcmp(b, npy_magic, sizeof(npy_magic)))
		return fail(err, len < sizeof(npy_magic) && !memcmp(b, npy_magic, len)
					 ? "truncated .npy header"
					 : "not a .npy file (bad magic)");
	if (len < 10)
		return fail(err, "truncated .npy header");
	if (b[6] == 1) {
		start = 10;
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
	} else if (b[6] == 2 || b[6] == 3) {
		if (len < 12)
			return fail(err, "truncated .npy header");
		start = 12;
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
	} else {
		return fail(err, "unsupported .npy format version %u.%u", b[6], b[7]);
	}
	if (hlen > len - start)
		return fail(err, "truncated .npy header (%zu bytes announced, %zu present)", hlen,
			    len - start);
	h->data_offset = start + hlen;

	c.p = (const char *)b + start;
	c.end = c.p + hlen;
	if (!eat(&c, '{'))
		return fail(err, "bad .npy header: no dictionary");
	while (!eat(&c, '}')) {
		if (!parse_str(&c, &s, &n))
			return fail(err, "bad .npy header: expected a quoted key");
		if (!eat(&c, ':'))
			return fail(err, "bad .npy header: expected ':' after a key");
		if (n == 5 && !memcmp(s, "descr", 5) && !seen_descr) {
			seen_descr = true;
			skip_ws(&c);
			if (c.p < c.end && *c.p == '[')
				return fail(err, "unsupported .npy dtype: structured arrays are not images");
			if (!parse_str(&c, &s, &n))
				return fail(err, "bad .npy header: descr is not a string");
			if (parse_descr(s, n, h, err))
				return -1;
		} else if (n == 13 && !memcmp(s, "fortran_order", 13) && !seen_order) {
			seen_order = true;
			if (parse_word(&c, "True"))
				h->fortran_order = true;
			else if (!parse_word(&c, "False"))
				return fail(err, "bad .npy header: fortran_order is not True or False");
		} else if (n == 5 && !memcmp(s, "shape", 5) && !seen_shape) {
			seen_shape = true;
			if (!eat(&c, '('))
				return fail(err, "bad .npy header: shape is not a tuple");
			while (!eat(&c, ')')) {
				if (h->ndim == PM_MAX_DIMS)
					return fail(err, "the .npy array has more than %d dimensions",
						    PM_MAX_DIMS);
				if (!parse_uint(&c, &h->shape[h->ndim]))
					return fail(err, "bad .npy header: shape holds a bad extent");
				h->ndim++;
				if (!eat(&c, ',')) {
					if (!eat(&c, ')'))
						return fail(err, "bad .npy header: unterminated shape");
					break;
				}
			}
		} else {
			return fail(err, "bad .npy header: unexpected or repeated key '%s'",
				    shown(q, s, n));
		}
		if (!eat(&c, ',')) {
			if (!eat(&c, '}'))
				return fail(err, "bad .npy header: expected ',' or '}'");
			break;
		}
	}
	skip_ws(&c);
	if (c.p != c.end && *c.p != '\0')
		return fail(err, "bad .npy header: text after the dictionary");
	if (!seen_descr || !seen_order || !seen_shape)
		return fail(err, "bad .npy header: missing %s",
			    !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
	if (h->ndim == 0)
		return fail(err, "the .npy array is 0-dimensional (a scalar), not an image");
	es = dtype_size(h->dtype);
	h->data_bytes = es;
	for (int a = 0; a < h->ndim; a++)
		if (__builtin_mul_overflow(h->data_bytes, h->shape[a], &h->data_bytes))
			return fail(err, "the .npy shape overflows");
	return 0;
}

size_t npy_write_header(char *buf, size_t cap, int dtype, int ndim, const size_t *shape,
			bool fortran_order)
{
	char dict[64 + PM_MAX_DIMS * 24], dbuf[NPY_DESCR_LEN];
	const char *descr = npy_descr(dtype, dbuf);
	size_t n, total, start;
	int k;

	if (!descr || ndim < 1 || ndim > PM_MAX_DIMS || !shape)
		return 0;
	k = snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': %s, 'shape': (", descr,
		     fortran_order ? "True" : "False");
	n = (size_t)k;
	for (int a = 0; a < ndim; a++)
		n += (size_t)snprintf(dict + n, sizeof(dict) - n, a + 1 < ndim ? "%zu, " : "%zu,",
				      shape[a]);
	if (ndim > 1)
		n--; /* numpy writes (5,) for one axis and (3, 4) for two */
	n += (size_t)snprintf(dict + n, sizeof(dict) - n, "), }");
	/* magic, version 1.0, length, the dictionary, padding, '\n': the
	 * dictionary is short (at most 8 axes), so 1.0's 16-bit length fits */
	start = 10;
	total = (start + n + 1 + 63) / 64 * 64;
	if (total > cap)
		return 0;
	memcpy(buf, npy_magic, sizeof(npy_magic));
	buf[6] = 1;
	buf[7] = 0;
	buf[8] = (char)((total - start) & 0xff);
	buf[9] = (char)((total - start) >> 8);
	memcpy(buf + start, dict, n);
	memset(buf + start + n, ' ', total - start - n - 1);
	buf[total - 1] = '\n';
	return total;
}

/* ------------------------------------------------------------- PGM/PPM */

/* Whitespace and '#' comments (to the end of the line) between tokens. */
static size_t pnm_skip(const unsigned char *b, size_t len, size_t i)
{
	while (i < len) {
		if (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == '\v' ||
		    b[i] == '\f') {
			i++;
		} else if (b[i] == '#') {
			while (i < len && b[i] != '\n' && b[i] != '\r')
				i++;
		} else {
			break;
		}
	}
	return i;
}

/* The next header number: 0 and its value, or -1 (err says why). */
static int pnm_number(const unsigned char *b, size_t len, size_t *i, size_t *v, const char *what,
		      char *err)
{
	size_t j = pnm_skip(b, len, *i), x = 0;

	if (j == *i)
		return fail(err, j >= len ? "truncated PGM/PPM header"
					  : "bad PGM/PPM header: no space before the %s", what);
	if (j >= len)
		return fail(err, "truncated PGM/PPM header");
	if (b[j] < '0' || b[j] > '9')
		return fail(err, "bad PGM/PPM header: the %s is not a number", what);
	while (j < len && b[j] >= '0' && b[j] <= '9') {
		x = x * 10 + (size_t)(b[j] - '0');
		if (x > (size_t)1 << 40)
			return fail(err, "bad PGM/PPM header: the %s is too large", what);
		j++;
	}
	*v = x;
	*i = j;
	return 0;
}

int pnm_parse_header(const void *buf, size_t len, struct pnm_header *h, char *err)
{
	const unsigned char *b = buf;
	size_t i = 2, maxval;

	memset(h, 0, sizeof(*h));
	if (len < 2 || b[0] != 'P')
		return fail(err, len < 2 && len && b[0] == 'P' ? "truncated PGM/PPM header"
							    : "not a PGM/PPM file (bad magic)");
	if (b[1] == '5')
		h->channels = 1;
	else if (b[1] == '6')
		h->channels = 3;
	else if (b[1] >= '1' && b[1] <= '4')
		return fail(err, "P%c (plain text or bitmap) netpbm files are not supported: use "
				 "binary PGM (P5) or PPM (P6)", b[1]);
	else if (b[1] == '7')
		return fail(err, "PAM (P7) files are not supported: use binary PGM (P5) or PPM (P6)");
	else
		return fail(err, "not a PGM/PPM file (bad magic)");
	if (pnm_number(b, len, &i, &h->width, "width", err) ||
	    pnm_number(b, len, &i, &h->height, "height", err) ||
	    pnm_number(b, len, &i, &maxval, "maximum value", err))
		return -1;
	/* exactly one whitespace character, then the samples */
	if (i >= len)
		return fail(err, "truncated PGM/PPM header");
	if (b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' && b[i] != '\v' &&
	    b[i] != '\f')
		return fail(err, "bad PGM/PPM header: no space after the maximum value");
	h->data_offset = i + 1;
	if (!h->width || !h->height)
		return fail(err, "the PGM/PPM image is empty (%zu x %zu)", h->width, h->height);
	if (maxval < 1 || maxval > 65535)
		return fail(err, "bad PGM/PPM header: maximum value %zu is not in 1..65535", maxval);
	h->maxval = (unsigned)maxval;
	h->dtype = maxval < 256 ? PM_DTYPE_U8 : PM_DTYPE_U16;
	if (__builtin_mul_overflow(h->width, h->height, &h->data_bytes) ||
	    __builtin_mul_overflow(h->data_bytes, (size_t)h->channels * dtype_size(h->dtype),
				   &h->data_bytes))
		return fail(err, "the PGM/PPM image size overflows");
	return 0;
}

/* ------------------------------------------------------------- files */

/* Reads a file that cannot be mapped (a pipe) into memory. */
static int read_all(int fd, void **out, size_t *len, char *err)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return fail(err, "out of memory");
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return fail(err, "out of memory reading the file");
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return fail(err, "cannot read: %s", strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* A private copy of the data with each element's bytes reversed. */
static int swap_copy(struct img *im, const unsigned char *data, size_t bytes, size_t es, char *err)
{
	unsigned char *d = malloc(bytes ? bytes : 1);

	if (!d)
		return fail(err, "out of memory converting big-endian data (%zu bytes)", bytes);
	for (size_t i = 0; i < bytes; i += es)
		for (size_t k = 0; k < es; k++)
			d[i + k] = data[i + es - 1 - k];
	im->copy = d;
	im->converted = true;
	im->src.data = d;
	return 0;
}

/* Sets shape and strides of a dense array, C or Fortran order. */
static void set_dense(struct img *im, int dtype, int ndim, const size_t *shape, bool fortran)
{
	ptrdiff_t stride = (ptrdiff_t)dtype_size(dtype);

	im->src.dtype = dtype;
	im->src.ndim = ndim;
	for (int k = 0; k < ndim; k++) {
		int a = fortran ? k : ndim - 1 - k;

		im->src.shape[a] = shape[a];
		im->src.strides[a] = stride;
		stride *= (ptrdiff_t)shape[a];
	}
	im->layout = fortran ? "Fortran" : "C";
}

/* Frees what img_open took so far; returns -1. */
static int bad(struct img *im)
{
	img_close(im);
	return -1;
}

int img_open(const char *path, const struct img_raw *raw, struct img *im, char *err)
{
	const unsigned char *b;
	size_t len = 0, off, bytes, es;
	struct stat st;
	bool big = false;
	int fd;

	memset(im, 0, sizeof(*im));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return fail(err, "cannot stat: %s", strerror(e));
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return fail(err, "is a directory");
	}
	/* Devices are no images (/dev/zero would be read until memory runs
	 * out); pipes are, read whole. */
	if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
		close(fd);
		return fail(err, "is a device, not an image file");
	}
	if (S_ISREG(st.st_mode)) {
		len = (size_t)st.st_size;
		if (len) {
			void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
			if (p == MAP_FAILED) {
				int e = errno;
				close(fd);
				return fail(err, "cannot map: %s", strerror(e));
			}
			im->map = p;
			im->map_len = len;
		}
	} else {
		if (read_all(fd, &im->map, &len, err)) {
			close(fd);
			return -1;
		}
		im->map_is_heap = true;
		im->map_len = len;
	}
	close(fd);
	im->file_bytes = len;
	if (!len)
		return fail(err, "empty file"), bad(im);
	b = im->map;

	if (raw && raw->ndim > 0) {
		es = dtype_size(raw->dtype);
		bytes = es;
		if (!es || raw->ndim > PM_MAX_DIMS)
			return fail(err, "bad raw description"), bad(im);
		for (int a = 0; a < raw->ndim; a++)
			if (__builtin_mul_overflow(bytes, raw->shape[a], &bytes))
				return fail(err, "the raw shape overflows"), bad(im);
		if (raw->offset > len)
			return fail(err, "the raw offset (%zu bytes) is beyond the end of the file (%zu "
					 "bytes)",
				    raw->offset, len),
			       img_close(im), -1;
		if (len - raw->offset < bytes && raw->offset)
			return fail(err, "truncated raw file: the shape needs %zu bytes after the offset "
					 "of %zu, the file has %zu after it",
				    bytes, raw->offset, len - raw->offset),
			       img_close(im), -1;
		if (len - raw->offset < bytes)
			return fail(err, "truncated raw file: the shape needs %zu bytes, the file has %zu",
				    bytes, len),
			       img_close(im), -1;
		if (len - raw->offset > bytes)
			return fail(err, "the raw file has %zu bytes more than the shape and dtype "
					 "describe (%zu)",
				    len - raw->offset - bytes, bytes),
			       img_close(im), -1;
		im->format = "raw";
		set_dense(im, raw->dtype, raw->ndim, raw->shape, false);
		off = raw->offset;
		big = raw->big_endian;
	} else if (len >= 1 && b[0] == (unsigned char)npy_magic[0]) {
		struct npy_header h;

		if (npy_parse_header(b, len, &h, err))
			return bad(im);
		if (len - h.data_offset < h.data_bytes)
			return fail(err, "truncated .npy file: the data needs %zu bytes, the file has %zu "
					 "after the header",
				    h.data_bytes, len - h.data_offset),
			       img_close(im), -1;
		im->format = "npy";
		set_dense(im, h.dtype, h.ndim, h.shape, h.fortran_order);
		off = h.data_offset;
		bytes = h.data_bytes;
		big = h.big_endian;
	} else if (b[0] == 'P') {
		struct pnm_header h;
		size_t shape[3];

		if (pnm_parse_header(b, len, &h, err))
			return bad(im);
		if (len - h.data_offset < h.data_bytes)
			return fail(err, "truncated %s file: the pixels need %zu bytes, the file has %zu "
					 "after the header",
				    h.channels == 1 ? "PGM" : "PPM", h.data_bytes,
				    len - h.data_offset),
			       img_close(im), -1;
		im->format = h.channels == 1 ? "pgm" : "ppm";
		shape[0] = h.height;
		shape[1] = h.width;
		shape[2] = 3;
		set_dense(im, h.dtype, h.channels == 1 ? 2 : 3, shape, false);
		off = h.data_offset;
		bytes = h.data_bytes;
		big = h.dtype == PM_DTYPE_U16; /* netpbm's 16-bit samples are big-endian */
	} else {
		return fail(err, "unknown image format (not .npy, PGM or PPM%s)",
			    im->map_is_heap ? "; a pipe can carry no other: give the image as a file"
					    : ""),
		       img_close(im), IMG_EFORMAT;
	}
	im->src.data = b + off;
	es = dtype_size(im->src.dtype);
	if (big) {
		if (swap_copy(im, b + off, bytes, es, err))
			return bad(im);
		/* the file's pages are no longer needed */
		if (im->map_is_heap)
			free(im->map);
		else
			munmap(im->map, im->map_len);
		im->map = NULL;
	}
	return 0;
}

void img_close(struct img *im)
{
	if (!im)
		return;
	if (im->map) {
		if (im->map_is_heap)
			free(im->map);
		else
			munmap(im->map, im->map_len);
	}
	free(im->copy);
	memset(im, 0, sizeof(*im));
}
