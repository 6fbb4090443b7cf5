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

/* The key numbered k (see descriptor.h). */
const char *desc_key_name(int k)
{
	if (k == DK_SOURCE)
		return "source";
	if (k == DK_FORMAT)
		return "format";
	if (k >= DK_RAW && k < DK_SPEC)
		return fe_raw_key_name(k - DK_RAW);
	return k >= DK_SPEC && k < DESC_MAX_KEYS ? pm_spec_key(k - DK_SPEC) : NULL;
}

int desc_key(const char *name)
{
	for (int k = 0; desc_key_name(k); k++)
		if (!strcmp(name, desc_key_name(k)))
			return k;
	return -1;
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

/* One key's value (v: NUL-terminated, trimmed, unquoted): the
 * descriptor's own keys here, the others in the front ends' core. */
static int parse_value(struct desc *d, int key, const char *v, char *err)
{
	char msg[FE_ERRLEN];

	switch (key) {
	case DK_SOURCE:
		if (strlen(v) >= DESC_PATH_MAX)
			return fail(err, "source: the path is longer than %d bytes", DESC_PATH_MAX - 1);
		strcpy(d->source, v);
		return 0;
	case DK_FORMAT:
		if (!strcmp(v, "raw"))
			d->format = DESC_RAW;
		else if (!strcmp(v, "npy"))
			d->format = DESC_NPY;
		else
			return fail(err, "format: expected raw or npy, got \"%.*s%s\"", Q(v));
		return 0;
	}
	if (fe_options_set(&d->opt, desc_key_name(key), v, msg))
		return fail(err, "%s", msg);
	return 0;
}

/* ---------------------------------------------------------------- lines */

void desc_free(struct desc *d)
{
	fe_options_free(&d->opt);
}

int desc_parse(const char *text, size_t len, struct desc *d, char *err, int *line)
{
	char *buf = NULL;
	size_t i = 0;
	int ln = 0, k;

	memset(d, 0, sizeof(*d));
	d->format = DESC_RAW;
	*line = 0;
	if (fe_options_init(&d->opt))
		return fail(err, "out of memory");
	if (len > DESC_MAX_BYTES) {
		fail(err, "larger than %zu KiB: not a descriptor", DESC_MAX_BYTES >> 10);
		goto bad;
	}
	buf = malloc(len + 1);
	if (!buf) {
		fail(err, "out of memory");
		goto bad;
	}
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
		key = desc_key(buf);
		if (key < 0 && !strcmp(buf, "output_dtype")) {
			fail(err, "unknown key \"output_dtype\": the matrix's dtype is \"dtype\", a raw "
				  "file's sample type \"raw_dtype\"");
			goto bad;
		}
		if (key < 0) {
			fail(err, "unknown key \"%.*s%s\"", Q(buf));
			goto bad;
		}
		if (d->line[key]) {
			fail(err, "%s given twice (first on line %d)", desc_key_name(key), d->line[key]);
			goto bad;
		}
		if (ve > vs && text[vs] == '"') {
			if (ve - vs < 2 || text[ve - 1] != '"' || memchr(text + vs + 1, '"', ve - vs - 2)) {
				fail(err, "%s: a quoted value must end with its closing quote, and hold "
					  "no other",
				     desc_key_name(key));
				goto bad;
			}
			vs++;
			ve--;
			quoted = true;
		}
		if (quoted && key != DK_SOURCE) {
			fail(err, "%s: only source may be quoted", desc_key_name(key));
			goto bad;
		}
		if (vs == ve) {
			fail(err, "%s has no value", desc_key_name(key));
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
	if (!d->line[DK_SOURCE]) {
		fail(err, "no \"source = PATH\" line");
		goto bad;
	}
	if (!d->line[desc_key("window")]) {
		fail(err, "no \"window = SIZE\" line");
		goto bad;
	}
	if (fe_options_check(&d->opt, &k, err)) {
		*line = d->line[DK_RAW + k];
		goto bad;
	}
	return 0;
bad:
	free(buf);
	desc_free(d);
	return -1;
}

/* ---------------------------------------------------------------- matrix */

static int key_error(struct desc *d, const char *msg, char *err, int *line);

int desc_matrix(struct desc *d, const struct pm_source *src, struct pm_matrix_opts *o,
		struct pm_matrix_info *info, char *err, int *line)
{
	struct img im = { .src = *src };
	char msg[FE_ERRLEN];

	*line = 0;
	if (!fe_options_matrix(&d->opt, &im, o, info, msg))
		return 0;
	return key_error(d, msg, err, line);
}

int desc_rows(struct desc *d, const char *dir, const struct pm_matrix_opts *o,
	      struct fe_rows *sel, struct pm_matrix_info *info, char *err, int *line)
{
	char msg[FE_ERRLEN];

	*line = 0;
	if (!fe_options_rows(&d->opt, dir, o, sel, info, msg))
		return 0;
	return key_error(d, msg, err, line);
}

/* A message that starts with the key at fault: on its line, or the
 * window's when it was not given (a default that does not fit). */
static int key_error(struct desc *d, const char *msg, char *err, int *line)
{
	char key[64];
	size_t n;
	int k;

	n = strcspn(msg, ":");
	k = -1;
	if (n < sizeof(key)) {
		memcpy(key, msg, n);
		key[n] = 0;
		k = desc_key(key);
	}
	if (k < 0 || !d->line[k])
		k = desc_key("window");
	*line = d->line[k];
	return fail(err, "%s", msg);
}
