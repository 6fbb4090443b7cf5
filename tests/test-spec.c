/* test-spec.c: the option grammar every front end shares (pm_spec_* and the
 * value parsers): every key with good and bad spellings, the channel rule,
 * "same"/"valid" padding against hand-computed tables, the messages, and the
 * memory policy. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "helpers.h"

static unsigned char pixels[4096];

/* A C-contiguous uint8 source of the given shape over `pixels`. */
static struct pm_source source(int ndim, const size_t *shape)
{
	struct pm_source src;

	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&src, pixels, PM_DTYPE_U8, ndim, shape), 0);
	return src;
}

static pm_spec *spec(void)
{
	pm_spec *s = NULL;

	CU_ASSERT_EQUAL_FATAL(pm_spec_new(&s), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	return s;
}

/* Sets key = value, which must be accepted. */
#define SET(s, k, v) set_ok(s, k, v, __LINE__)
static void set_ok(pm_spec *s, const char *key, const char *value, int line)
{
	int ret = pm_spec_set(s, key, value);

	if (ret)
		fprintf(stderr, "\n  line %d: %s = '%s' refused (%d): %s\n", line, key, value, ret,
			pm_spec_error(s));
	CU_ASSERT_EQUAL(ret, 0);
	CU_ASSERT_STRING_EQUAL(pm_spec_error(s), "");
}

/* pm_spec_error(s), never NULL (so the compiler knows it). */
static const char *error_of(const pm_spec *s)
{
	const char *msg = pm_spec_error(s);

	return msg ? msg : "(null)";
}

/* The message is one line that starts with "<key>: ". */
static void check_message(const char *msg, const char *key, int line)
{
	size_t n = strlen(key);
	bool ok = !strncmp(msg, key, n) && msg[n] == ':' && msg[n + 1] == ' ' &&
		  strlen(msg) > n + 10 && !strchr(msg, '\n');

	if (!ok)
		fprintf(stderr, "\n  line %d: message for %s: \"%s\"\n", line, key, msg);
	CU_ASSERT(ok);
}

/* Sets key = value, which must be refused with `code`, a message naming the
 * key first and quoting the value (its first 40 characters), and the spec
 * left as it was. */
#define BAD(s, k, v, code) set_bad(s, k, v, code, __LINE__)
static void set_bad(pm_spec *s, const char *key, const char *value, int code, int line)
{
	bool before = pm_spec_isset(s, key);
	int ret = pm_spec_set(s, key, value);
	const char *msg = error_of(s);
	char canon[32], quoted[64];
	size_t i;

	if (ret != code)
		fprintf(stderr, "\n  line %d: %s = '%s' gave %d, want %d (%s)\n", line, key, value, ret,
			code, msg);
	CU_ASSERT_EQUAL(ret, code);
	for (i = 0; key[i] && i < sizeof(canon) - 1; i++)
		canon[i] = key[i] == '-' ? '_' : key[i];
	canon[i] = 0;
	if (code == -PM_EKEY) {
		snprintf(quoted, sizeof(quoted), "'%s'", key);
		check_message(msg, quoted, line);
		return;
	}
	check_message(msg, canon, line);
	CU_ASSERT_EQUAL(pm_spec_isset(s, key), before);
	/* the value is quoted, trimmed of blanks, cut after 40 characters */
	if (value && strspn(value, " \t") < strlen(value) && strlen(value) <= 40 &&
	    !strpbrk(value, " \t\n")) {
		snprintf(quoted, sizeof(quoted), "'%s'", value);
		if (!strstr(msg, quoted))
			fprintf(stderr, "\n  line %d: \"%s\" does not quote %s\n", line, msg, quoted);
		CU_ASSERT_PTR_NOT_NULL(strstr(msg, quoted));
	}
}

/* Resolves s against src, which must work. */
#define MATRIX(s, src, o, info) matrix_ok(s, src, o, info, __LINE__)
static void matrix_ok(pm_spec *s, const struct pm_source *src, struct pm_matrix_opts *o,
		      struct pm_matrix_info *info, int line)
{
	int ret = pm_spec_matrix(s, src, o, info);

	if (ret)
		fprintf(stderr, "\n  line %d: pm_spec_matrix: %d: %s\n", line, ret, pm_spec_error(s));
	CU_ASSERT_EQUAL_FATAL(ret, 0);
}

/* Resolves s against src, which must fail with code and a message on key
 * that contains each of the words (NULL-terminated). */
#define MATRIX_BAD(s, src, code, key, ...) \
	matrix_bad(s, src, code, key, (const char *const[]){ __VA_ARGS__, NULL }, __LINE__)
static void matrix_bad(pm_spec *s, const struct pm_source *src, int code, const char *key,
		       const char *const *words, int line)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	int ret = pm_spec_matrix(s, src, &o, &info);
	const char *msg = error_of(s);

	if (ret != code)
		fprintf(stderr, "\n  line %d: pm_spec_matrix gave %d, want %d (%s)\n", line, ret, code,
			msg);
	CU_ASSERT_EQUAL(ret, code);
	check_message(msg, key, line);
	for (; *words; words++)
		if (!strstr(msg, *words)) {
			fprintf(stderr, "\n  line %d: \"%s\" lacks \"%s\"\n", line, msg, *words);
			CU_FAIL("a word missing from the message");
		}
}

/* ---------------------------------------------------------------- keys */

static void test_keys(void)
{
	static const char *const want[] = {
		"window", "step",   "dilation",  "pad",     "pad_mode", "pad_value", "channel_axis",
		"dtype",  "scale",  "offset",    "order",   "layout",   "row_pitch", "backend",
		"budget", "chunk",  "threads",   "readahead", "writable", "row_range",
	};
	pm_spec *s = spec();
	int n = 0;

	while (pm_spec_key(n))
		n++;
	CU_ASSERT_EQUAL(n, (int)T_COUNT(want));
	for (int i = 0; i < n && i < (int)T_COUNT(want); i++)
		CU_ASSERT_STRING_EQUAL(pm_spec_key(i), want[i]);
	CU_ASSERT_PTR_NULL(pm_spec_key(-1));
	CU_ASSERT_PTR_NULL(pm_spec_key(INT_MAX));

	/* '-' and '_' alike, any case */
	SET(s, "pad-mode", "edge");
	CU_ASSERT(pm_spec_isset(s, "pad_mode"));
	CU_ASSERT(pm_spec_isset(s, "PAD-MODE"));
	SET(s, "Row_Pitch", "0");
	SET(s, "CHANNEL-AXIS", "last");
	CU_ASSERT(!pm_spec_isset(s, "window"));
	CU_ASSERT(!pm_spec_isset(s, "bogus"));
	CU_ASSERT(!pm_spec_isset(s, NULL));
	CU_ASSERT(!pm_spec_isset(NULL, "window"));

	/* unknown keys: the message lists every key */
	BAD(s, "windows", "3", -PM_EKEY);
	for (int i = 0; i < n; i++)
		CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), pm_spec_key(i)));
	BAD(s, "pad__mode", "edge", -PM_EKEY);
	BAD(s, "", "3", -PM_EKEY);
	BAD(s, "raw_dtype", "u1", -PM_EKEY); /* a front end's key, not the spec's */
	BAD(s, "window ", "3", -PM_EKEY);

	/* NULLs */
	CU_ASSERT_EQUAL(pm_spec_set(NULL, "window", "3"), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_spec_set(s, NULL, "3"), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_spec_set(s, "window", NULL), -PM_ENULL);
	check_message(pm_spec_error(s), "window", __LINE__);
	CU_ASSERT_EQUAL(pm_spec_new(NULL), -PM_ENULL);
	CU_ASSERT_STRING_EQUAL(pm_spec_error(NULL), "");
	pm_spec_free(NULL);
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- values */

static void test_size_grammar(void)
{
	static const struct {
		const char *s;
		bool unlimited;
		int ret;
		size_t v;
	} t[] = {
		{ "4096", false, 0, 4096 },
		{ "0", false, 0, 0 },
		{ "64K", false, 0, 64 << 10 },
		{ "64 K", false, 0, 64 << 10 },
		{ "64KiB", false, 0, 64 << 10 },
		{ "64kib", false, 0, 64 << 10 },
		{ "64kb", false, 0, 64 << 10 },
		{ "64 KB", false, 0, 64 << 10 },
		{ "64k", false, 0, 64 << 10 },
		{ "  256M  ", false, 0, (size_t)256 << 20 },
		{ "1.5G", false, 0, (size_t)3 << 29 },
		{ "1.5 GiB", false, 0, (size_t)3 << 29 },
		{ ".5K", false, 0, 512 },
		{ "0.25k", false, 0, 256 },
		{ "2.", false, 0, 2 },
		{ "2T", false, 0, (size_t)2 << 40 },
		{ "1P", false, 0, (size_t)1 << 50 },
		{ "100b", false, 0, 100 },
		{ "100 B", false, 0, 100 },
		{ "0.0009765625K", false, 0, 1 },
		{ "unlimited", true, 0, PM_BUDGET_UNLIMITED },
		{ "UNLIMITED", true, 0, PM_BUDGET_UNLIMITED },
		{ " Unlimited ", true, 0, PM_BUDGET_UNLIMITED },
		{ "unlimited", false, -PM_ESPEC, 0 },
		{ "1.5", false, -PM_ESPEC, 0 },          /* not whole bytes */
		{ "0.3K", false, -PM_ESPEC, 0 },         /* 307.2 bytes */
		{ "1.0000000001K", false, -PM_ESPEC, 0 },
		/* fractions longer than 64 bits hold: still not whole bytes */
		{ "1.9999999999999999999999K", false, -PM_ESPEC, 0 },
		{ "15.99999999999999999999P", false, -PM_ESPEC, 0 },
		{ "1.0000000000000000000000000000000000000000000000001K", false, -PM_ESPEC, 0 },
		/* ... or whole after all */
		{ "1.50000000000000000000000K", false, 0, 1536 },
		{ "0.00000000000000088817841970012523233890533447265625P", false, 0, 1 },
		{ "", false, -PM_ESPEC, 0 },
		{ "   ", false, -PM_ESPEC, 0 },
		{ "K", false, -PM_ESPEC, 0 },
		{ "-1", false, -PM_ESPEC, 0 },
		{ "+1", false, -PM_ESPEC, 0 },
		{ "1e9", false, -PM_ESPEC, 0 },
		{ "1..5K", false, -PM_ESPEC, 0 },
		{ "64KK", false, -PM_ESPEC, 0 },
		{ "64 K B x", false, -PM_ESPEC, 0 },
		{ "64Q", false, -PM_ESPEC, 0 },
		{ "64iB", false, -PM_ESPEC, 0 },
		{ "1 2", false, -PM_ESPEC, 0 },
		{ "0x10", false, -PM_ESPEC, 0 },
		{ "16384P", false, -PM_ETOOBIG, 0 },     /* 2^64 */
		{ "18446744073709551615", false, -PM_ETOOBIG, 0 },
		{ "99999999999999999999", false, -PM_ETOOBIG, 0 },
	};

	for (size_t i = 0; i < T_COUNT(t); i++) {
		size_t v = 12345;
		int ret = pm_size_parse(t[i].s, t[i].unlimited, &v);

		if (ret != t[i].ret || (!ret && v != t[i].v))
			fprintf(stderr, "\n  '%s': %d, %zu\n", t[i].s, ret, v);
		CU_ASSERT_EQUAL(ret, t[i].ret);
		CU_ASSERT_EQUAL(v, ret ? 12345 : t[i].v); /* untouched on failure */
	}
	CU_ASSERT_EQUAL(pm_size_parse(NULL, true, &(size_t){ 0 }), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_size_parse("1", true, NULL), -PM_ENULL);
}

static void test_dims_grammar(void)
{
	static const struct {
		const char *s;
		int ret;
		size_t v[3];
	} t[] = {
		{ "16", 1, { 16 } },
		{ "16x16", 2, { 16, 16 } },
		{ "16X8", 2, { 16, 8 } },
		{ "16,16", 2, { 16, 16 } },
		{ "16, 16", 2, { 16, 16 } },
		{ "16 x 16", 2, { 16, 16 } },
		{ " 3x4,5 ", 3, { 3, 4, 5 } },
		{ "", -PM_ESPEC, { 0 } },
		{ "0", -PM_ESPEC, { 0 } },
		{ "3x0", -PM_ESPEC, { 0 } },
		{ "3x", -PM_ESPEC, { 0 } },
		{ "x3", -PM_ESPEC, { 0 } },
		{ "3,,3", -PM_ESPEC, { 0 } },
		{ "3 3", -PM_ESPEC, { 0 } },
		{ "3;3", -PM_ESPEC, { 0 } },
		{ "-3", -PM_ESPEC, { 0 } },
		{ "3.5", -PM_ESPEC, { 0 } },
		{ "(3, 3)", -PM_ESPEC, { 0 } },
		{ "1x2x3x4", -PM_ENDIM, { 0 } },         /* max 3 below */
		{ "99999999999999999999", -PM_ETOOBIG, { 0 } },
	};

	for (size_t i = 0; i < T_COUNT(t); i++) {
		size_t v[3] = { 0 };
		int ret = pm_dims_parse(t[i].s, v, 3);

		if (ret != t[i].ret)
			fprintf(stderr, "\n  '%s': %d\n", t[i].s, ret);
		CU_ASSERT_EQUAL(ret, t[i].ret);
		for (int k = 0; k < ret; k++)
			CU_ASSERT_EQUAL(v[k], t[i].v[k]);
	}
	CU_ASSERT_EQUAL(pm_dims_parse("1x2x3x4x5x6x7x8", (size_t[PM_MAX_DIMS]){ 0 }, PM_MAX_DIMS),
			PM_MAX_DIMS);
	CU_ASSERT_EQUAL(pm_dims_parse(NULL, (size_t[1]){ 0 }, 1), -PM_ENULL);
}

/* The dtype whose numpy name is `name`, or -1 if this build has none. */
static int dtype_named(const char *name)
{
	for (int d = 1; d < PM_DTYPE_COUNT; d++)
		if (pm_dtype_name(d) && !strcmp(pm_dtype_name(d), name))
			return d;
	return -1;
}

static void test_dtype_grammar(void)
{
	static const struct {
		const char *s;
		const char *name; /* NULL: refused */
		bool big;
	} t[] = {
		{ "uint8", "uint8", false },    { "int8", "int8", false },
		{ "uint16", "uint16", false },  { "int16", "int16", false },
		{ "uint32", "uint32", false },  { "int32", "int32", false },
		{ "float32", "float32", false }, { "float64", "float64", false },
		{ "Float32", "float32", false }, { " UINT16 ", "uint16", false },
		{ "u16", "uint16", false },     { "i16", "int16", false },
		{ "u32", "uint32", false },     { "i32", "int32", false },
		{ "f32", "float32", false },    { "f64", "float64", false },
		{ "u1", "uint8", false },       { "i1", "int8", false },
		{ "u2", "uint16", false },      { "i2", "int16", false },
		{ "u4", "uint32", false },      { "i4", "int32", false },
		{ "f4", "float32", false },     { "f8", "float64", false },
		{ "<u2", "uint16", false },     { "|u1", "uint8", false },
		{ "=i4", "int32", false },      { ">u1", "uint8", false },
		{ ">u2", "uint16", true },      { ">f8", "float64", true },
		{ ">F4", "float32", true },     { "<float32", "float32", false },
		{ "int64", "int64", false },    { "uint64", "uint64", false },
		{ "bool", "bool", false },      { "float16", "float16", false },
		{ "i64", "int64", false },      { "u64", "uint64", false },
		{ "f16", "float16", false },    { "F2", "float16", false },
		{ "b1", "bool", false },        { "|b1", "bool", false },
		{ "<i8", "int64", false },      { "<u8", "uint64", false },
		{ ">i8", "int64", true },       { "=u8", "uint64", false },
		{ "<f2", "float16", false },    { ">f2", "float16", true },
		{ "Int64", "int64", false },    { ">b1", "bool", false },
		{ "same", NULL, false },        { "", NULL, false },
		{ "float", NULL, false },       { "u3", NULL, false },
		{ "f1", NULL, false },          { "<u16", NULL, false }, /* bits after a byte order */
		{ "<f32", NULL, false },        { "u128", NULL, false },
		{ "x4", NULL, false },          { "<", NULL, false },
		{ "uint8x", NULL, false },      { "b8", NULL, false },
		{ "u 2", NULL, false },         { "<b8", NULL, false },
		{ "<i64", NULL, false },        { "bool8", NULL, false },
		{ "float128", NULL, false },    { "int", NULL, false },
	};

	for (size_t i = 0; i < T_COUNT(t); i++) {
		bool big = !t[i].big;
		int d = pm_dtype_parse(t[i].s, &big);

		if (!t[i].name) {
			if (d != -PM_EDTYPE)
				fprintf(stderr, "\n  '%s' gave %d\n", t[i].s, d);
			CU_ASSERT_EQUAL(d, -PM_EDTYPE);
			continue;
		}
		if (d <= 0 || strcmp(pm_dtype_name(d), t[i].name))
			fprintf(stderr, "\n  '%s' gave %d\n", t[i].s, d);
		CU_ASSERT_EQUAL(d, dtype_named(t[i].name));
		CU_ASSERT_EQUAL(big, t[i].big);
		/* without somewhere to say so, big-endian is refused */
		CU_ASSERT_EQUAL(pm_dtype_parse(t[i].s, NULL), t[i].big ? -PM_EDTYPE : d);
	}
	/* "u8" and "i8" are ambiguous bare; with a byte order they are numpy's
	 * 8-byte codes */
	CU_ASSERT_EQUAL(pm_dtype_parse("u8", NULL), -PM_EAMBIGUOUS);
	CU_ASSERT_EQUAL(pm_dtype_parse("I8", NULL), -PM_EAMBIGUOUS);
	CU_ASSERT_EQUAL(pm_dtype_parse(" i8 ", NULL), -PM_EAMBIGUOUS);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_strerror(-PM_EAMBIGUOUS), "uint64"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_strerror(-PM_EAMBIGUOUS), "uint8"));
	CU_ASSERT_EQUAL(pm_dtype_parse("<u8", NULL), PM_DTYPE_U64);
	CU_ASSERT_EQUAL(pm_dtype_parse("<i8", NULL), PM_DTYPE_I64);
	CU_ASSERT_EQUAL(pm_dtype_parse("|u8", NULL), PM_DTYPE_U64);
	CU_ASSERT_EQUAL(pm_dtype_parse(NULL, NULL), -PM_ENULL);
}

static void test_names(void)
{
	static const char *const modes[] = { "zero", "constant", "edge", "reflect", "symmetric",
					     "wrap" };
	static const char *const orders[] = { "window", "channel" };
	static const char *const layouts[] = { "rows", "cols" };

	CU_ASSERT_EQUAL(T_COUNT(modes), PM_PAD_COUNT);
	for (int i = 0; i < PM_PAD_COUNT; i++) {
		char up[16];

		CU_ASSERT_STRING_EQUAL(pm_pad_mode_name(i), modes[i]);
		CU_ASSERT_EQUAL(pm_pad_mode_parse(modes[i]), i);
		for (size_t k = 0; k <= strlen(modes[i]); k++)
			up[k] = modes[i][k] >= 'a' ? (char)(modes[i][k] - 32) : modes[i][k];
		CU_ASSERT_EQUAL(pm_pad_mode_parse(up), i);
	}
	for (int i = 0; i < PM_ORDER_COUNT; i++) {
		CU_ASSERT_STRING_EQUAL(pm_order_name(i), orders[i]);
		CU_ASSERT_EQUAL(pm_order_parse(orders[i]), i);
	}
	for (int i = 0; i < PM_LAYOUT_COUNT; i++) {
		CU_ASSERT_STRING_EQUAL(pm_layout_name(i), layouts[i]);
		CU_ASSERT_EQUAL(pm_layout_parse(layouts[i]), i);
	}
	CU_ASSERT_EQUAL(pm_layout_parse("Columns"), PM_LAYOUT_COLS);
	CU_ASSERT_EQUAL(pm_order_parse("Channel"), PM_ORDER_CHANNEL);
	CU_ASSERT_EQUAL(pm_order_parse(" channel"), -PM_EORDER); /* pm_spec_set trims */
	CU_ASSERT_EQUAL(pm_pad_mode_parse("mirror"), -PM_EPADMODE);
	CU_ASSERT_EQUAL(pm_pad_mode_parse(""), -PM_EPADMODE);
	CU_ASSERT_EQUAL(pm_pad_mode_parse(NULL), -PM_EPADMODE);
	CU_ASSERT_EQUAL(pm_pad_mode_parse("edges"), -PM_EPADMODE);
	CU_ASSERT_EQUAL(pm_order_parse("windows"), -PM_EORDER);
	CU_ASSERT_EQUAL(pm_order_parse(NULL), -PM_EORDER);
	CU_ASSERT_EQUAL(pm_layout_parse("col"), -PM_ELAYOUT);
	CU_ASSERT_EQUAL(pm_layout_parse(NULL), -PM_ELAYOUT);
	for (int bad = -1; bad <= 0; bad++) {
		CU_ASSERT_PTR_NULL(pm_pad_mode_name(bad ? bad : PM_PAD_COUNT));
		CU_ASSERT_PTR_NULL(pm_order_name(bad ? bad : PM_ORDER_COUNT));
		CU_ASSERT_PTR_NULL(pm_layout_name(bad ? bad : PM_LAYOUT_COUNT));
	}
}

/* ---------------------------------------------------------------- every key */

/* Every key, good spellings and what they become in pm_matrix_opts. */
static void test_key_values(void)
{
	const size_t shape[2] = { 40, 50 };
	struct pm_source src = source(2, shape);
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	pm_spec *s = spec();

	/* the defaults */
	SET(s, "window", "3");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.size, sizeof(o));
	for (int a = 0; a < 2; a++) {
		CU_ASSERT_EQUAL(o.window[a].size, 3);
		CU_ASSERT_EQUAL(o.window[a].step, 1);
		CU_ASSERT_EQUAL(o.window[a].dilation, 1);
		CU_ASSERT_EQUAL(o.window[a].pad_before, 0);
		CU_ASSERT_EQUAL(o.window[a].pad_after, 0);
	}
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_ZERO);
	CU_ASSERT_EQUAL(o.pad_value, 0);
	CU_ASSERT(!o.source.has_channels);
	CU_ASSERT_EQUAL(o.dtype, PM_DTYPE_F32);
	CU_ASSERT_EQUAL(info.dtype, PM_DTYPE_F32);
	CU_ASSERT(!o.affine);
	CU_ASSERT_EQUAL(o.order, PM_ORDER_WINDOW);
	CU_ASSERT_EQUAL(o.layout, PM_LAYOUT_ROWS);
	CU_ASSERT_EQUAL(o.row_pitch, 0);
	CU_ASSERT_EQUAL(o.lazy.backend, PM_BACKEND_AUTO);
	CU_ASSERT_EQUAL(o.lazy.budget, 0);
	CU_ASSERT_EQUAL(o.lazy.chunk, 0);
	CU_ASSERT_EQUAL(o.lazy.threads, 0);
	CU_ASSERT_EQUAL(o.lazy.readahead, 0);
	CU_ASSERT_EQUAL(o.lazy.flags, 0);
	CU_ASSERT_EQUAL(info.rows, 38 * 48);
	CU_ASSERT_EQUAL(info.cols, 9);

	SET(s, "window", "3x4");
	SET(s, "step", "2, 3");
	SET(s, "dilation", "2 x 1");
	SET(s, "pad", "1x2, 3");
	SET(s, "pad_mode", " Reflect\t");
	SET(s, "dtype", "same");
	SET(s, "order", "channel");
	SET(s, "layout", "cols");
	SET(s, "row_pitch", "1K");
	SET(s, "backend", "eager");
	SET(s, "budget", "64 MiB");
	SET(s, "chunk", "1M");
	SET(s, "threads", "3");
	SET(s, "readahead", "16");
	SET(s, "writable", "yes");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.window[0].size, 3);
	CU_ASSERT_EQUAL(o.window[1].size, 4);
	CU_ASSERT_EQUAL(o.window[0].step, 2);
	CU_ASSERT_EQUAL(o.window[1].step, 3);
	CU_ASSERT_EQUAL(o.window[0].dilation, 2);
	CU_ASSERT_EQUAL(o.window[1].dilation, 1);
	CU_ASSERT_EQUAL(o.window[0].pad_before, 1);
	CU_ASSERT_EQUAL(o.window[0].pad_after, 2);
	CU_ASSERT_EQUAL(o.window[1].pad_before, 3);
	CU_ASSERT_EQUAL(o.window[1].pad_after, 3);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_REFLECT);
	CU_ASSERT_EQUAL(o.dtype, PM_DTYPE_SAME);
	CU_ASSERT_EQUAL(info.dtype, PM_DTYPE_U8);
	CU_ASSERT_EQUAL(o.order, PM_ORDER_CHANNEL);
	CU_ASSERT_EQUAL(o.layout, PM_LAYOUT_COLS);
	CU_ASSERT_EQUAL(o.row_pitch, 1024);
	CU_ASSERT_EQUAL(o.lazy.backend, PM_BACKEND_EAGER);
	CU_ASSERT_EQUAL(o.lazy.budget, (size_t)64 << 20);
	CU_ASSERT_EQUAL(o.lazy.chunk, (size_t)1 << 20);
	CU_ASSERT_EQUAL(o.lazy.threads, 3);
	CU_ASSERT_EQUAL(o.lazy.readahead, 16);
	CU_ASSERT_EQUAL(o.lazy.flags, PM_LAZY_WRITABLE);
	/* (40 + 3 - 5) / 2 + 1 = 20 by (50 + 6 - 4) / 3 + 1 = 18 windows, in columns */
	CU_ASSERT_EQUAL(info.out_shape[0], 20);
	CU_ASSERT_EQUAL(info.out_shape[1], 18);
	CU_ASSERT_EQUAL(info.rows, 12);
	CU_ASSERT_EQUAL(info.cols, 360);
	CU_ASSERT_EQUAL(info.ld, 1024);

	/* the other spellings of each */
	SET(s, "pad", "valid");
	SET(s, "pad_mode", "constant");
	SET(s, "pad_value", "7");
	SET(s, "dtype", "float64");
	SET(s, "scale", "0.5");
	SET(s, "offset", "-1e2");
	SET(s, "row_pitch", "0");
	SET(s, "layout", "rows");
	SET(s, "backend", "AUTO");
	SET(s, "budget", "Unlimited");
	SET(s, "threads", "auto");
	SET(s, "readahead", "none");
	SET(s, "writable", "off");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.window[0].pad_before + o.window[0].pad_after + o.window[1].pad_before +
				o.window[1].pad_after,
			0);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_CONSTANT);
	CU_ASSERT_EQUAL(o.pad_value, 7);
	CU_ASSERT_EQUAL(o.dtype, PM_DTYPE_F64);
	CU_ASSERT(o.affine);
	CU_ASSERT_EQUAL(o.scale, 0.5);
	CU_ASSERT_EQUAL(o.offset, -100);
	CU_ASSERT_EQUAL(o.lazy.backend, PM_BACKEND_AUTO);
	CU_ASSERT_EQUAL(o.lazy.budget, PM_BUDGET_UNLIMITED);
	CU_ASSERT_EQUAL(o.lazy.threads, 0);
	CU_ASSERT_EQUAL(o.lazy.readahead, -1);
	CU_ASSERT_EQUAL(o.lazy.flags, 0);
	SET(s, "readahead", "0");
	SET(s, "threads", "0");
	SET(s, "writable", "TRUE");
	SET(s, "backend", "none");
	SET(s, "readahead", "auto");
	SET(s, "pad_value", "nan");
	SET(s, "pad_value", "-inf");
	/* a pad value a float source can hold */
	{
		static float samples[40 * 50];
		struct pm_source fsrc;

		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&fsrc, samples, PM_DTYPE_F32, 2, shape), 0);
		MATRIX(s, &fsrc, &o, &info);
		CU_ASSERT(isinf(o.pad_value) && o.pad_value < 0);
		SET(s, "pad_value", "NaN");
		MATRIX(s, &fsrc, &o, &info);
		CU_ASSERT(isnan(o.pad_value));
	}
	CU_ASSERT_EQUAL(o.lazy.readahead, 0);
	CU_ASSERT_EQUAL(o.lazy.flags, PM_LAZY_WRITABLE);
	CU_ASSERT_EQUAL(o.lazy.backend, PM_BACKEND_NONE);
	pm_spec_free(s);
}

/* Every key's bad spellings: refused, named, the spec unchanged. */
static void test_key_errors(void)
{
	static const struct {
		const char *key, *value;
	} t[] = {
		{ "window", "0" },        { "window", "3x0" },     { "window", "3.5" },
		{ "window", "-3" },       { "window", "3;3" },      { "window", "1x2x3x4x5x6x7x8x9" },
		{ "window", "same" },     { "step", "0" },          { "step", "x" },
		{ "dilation", "0" },      { "dilation", "2y2" },    { "pad", "same2" },
		{ "pad", "-1" },          { "pad", "1x2x3" },       { "pad", "1x" },
		{ "pad", "1,,2" },        { "pad", "4294967297" },  { "pad", "1,1,1,1,1,1,1,1,1" },
		{ "pad", "full" },        { "pad_mode", "mirror" }, { "pad_mode", "zeros" },
		{ "pad_value", "x" },     { "pad_value", "1,5" },   { "pad_value", "1e999" },
		{ "channel_axis", "8" },  { "channel_axis", "-9" }, { "channel_axis", "middle" },
		{ "channel_axis", "1.0" }, { "dtype", "float" },    { "dtype", "u8" },
		{ "dtype", "i8" },        { "dtype", ">f4" },       { "dtype", "complex64" },
		{ "scale", "inf" },       { "scale", "nan" },       { "scale", "two" },
		{ "offset", "1 2" },      { "order", "windows" },   { "order", "c" },
		{ "layout", "col" },      { "layout", "row" },      { "row_pitch", "-1" },
		{ "row_pitch", "1.5" },   { "backend", "fast" },    { "backend", "mmap" },
		{ "budget", "0" },        { "budget", "0K" },       { "budget", "lots" },
		{ "budget", "1.5" },      { "chunk", "0" },         { "chunk", "3000" },
		{ "chunk", "1K" },        { "chunk", "unlimited" }, { "chunk", "6M" },
		{ "threads", "-1" },      { "threads", "1025" },    { "threads", "two" },
		{ "readahead", "-2" },    { "readahead", "1048577" }, { "readahead", "many" },
		{ "writable", "maybe" },  { "writable", "2" },
	};
	pm_spec *s = spec();

	SET(s, "window", "3");
	for (size_t i = 0; i < T_COUNT(t); i++)
		BAD(s, t[i].key, t[i].value, -PM_ESPEC);
	/* what is accepted is named */
	BAD(s, "pad_mode", "mirror", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "symmetric"));
	BAD(s, "dtype", "u8", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "uint8"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "uint64"));
	BAD(s, "dtype", "i8", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "int8"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "int64"));
	BAD(s, "budget", "lots", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "unlimited"));
	/* a power of two past what can be reserved: the limit is named */
	BAD(s, "chunk", "256T", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "64 TiB"));
	/* empty and blank values */
	BAD(s, "window", "", -PM_ESPEC);
	BAD(s, "order", "   ", -PM_ESPEC);
	/* a long value is cut in the message, a control character shown as ? */
	BAD(s, "order", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "'abcdefghijklmnopqrstuvwxyzabcdefghijklmn...'"));
	BAD(s, "order", "win\ndow", -PM_ESPEC);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "'win?dow'"));
	{
		char huge[600];

		memset(huge, '1', sizeof(huge) - 1);
		huge[sizeof(huge) - 1] = 0;
		BAD(s, "window", huge, -PM_ESPEC);
	}
	/* a refused value leaves the earlier one; a good one clears the message */
	SET(s, "order", "channel");
	BAD(s, "order", "bogus", -PM_ESPEC);
	{
		const size_t shape[2] = { 8, 8 };
		struct pm_source src = source(2, shape);
		struct pm_matrix_opts o;

		MATRIX(s, &src, &o, NULL);
		CU_ASSERT_EQUAL(o.order, PM_ORDER_CHANNEL);
		/* the last value wins */
		SET(s, "order", "window");
		MATRIX(s, &src, &o, NULL);
		CU_ASSERT_EQUAL(o.order, PM_ORDER_WINDOW);
		SET(s, "window", "2");
		SET(s, "window", "4");
		MATRIX(s, &src, &o, NULL);
		CU_ASSERT_EQUAL(o.window[1].size, 4);
	}
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- channels */

/* The channel rule for 1-D to 4-D sources: window counts and channel_axis
 * against the axis holding channels (-1: none) or an error. */
static void test_channel_rule(void)
{
	static const struct {
		int ndim;
		const char *window, *channel_axis; /* NULL: auto */
		int ch;                            /* -1 none, -2 refused */
		const char *key;                   /* of the refusal */
	} t[] = {
		/* auto, one size: n <= 2 no channels, n >= 3 channels last */
		{ 1, "3", NULL, -1, NULL },
		{ 2, "3", NULL, -1, NULL },
		{ 3, "3", NULL, 2, NULL },
		{ 4, "3", NULL, 3, NULL },
		/* auto, w > 1 sizes: w == n none, w == n - 1 last, else refused */
		{ 1, "3x3", NULL, -2, "window" },
		{ 2, "3x3", NULL, -1, NULL },
		{ 3, "3x3", NULL, 2, NULL },
		{ 3, "3x3x2", NULL, -1, NULL },
		{ 4, "3x3", NULL, -2, "window" },
		{ 4, "3x3x2", NULL, 3, NULL },
		{ 4, "3x3x2x2", NULL, -1, NULL },
		{ 2, "3x3x3", NULL, -2, "window" },
		/* explicit */
		{ 3, "3", "none", -1, NULL },
		{ 3, "3x3x2", "none", -1, NULL },
		{ 3, "3x3", "none", -2, "window" },
		{ 3, "3", "first", 0, NULL },
		{ 3, "3x3", "first", 0, NULL },
		{ 3, "3x3", "0", 0, NULL },
		{ 3, "3x3", "1", 1, NULL },
		{ 3, "3x3", "-2", 1, NULL },
		{ 3, "3x3", "last", 2, NULL },
		{ 3, "3x3", "-1", 2, NULL },
		{ 2, "3", "last", 1, NULL },
		{ 2, "3", "0", 0, NULL },
		{ 4, "3x3x2", "1", 1, NULL },
		{ 4, "3x3", "1", -2, "window" },
		{ 3, "3x3", "3", -2, "channel_axis" },
		{ 3, "3x3", "-4", -2, "channel_axis" },
		{ 1, "3", "last", -2, "channel_axis" },
		{ 1, "3", "0", -2, "channel_axis" },
		{ 3, "3x3x2", "auto", -1, NULL },
	};
	const size_t shape[4] = { 6, 7, 3, 2 };

	for (size_t i = 0; i < T_COUNT(t); i++) {
		struct pm_source src = source(t[i].ndim, shape);
		struct pm_matrix_opts o;
		struct pm_matrix_info info = { 0 };
		pm_spec *s = spec();
		int ret;

		SET(s, "window", t[i].window);
		if (t[i].channel_axis)
			SET(s, "channel_axis", t[i].channel_axis);
		ret = pm_spec_matrix(s, &src, &o, &info);
		if ((ret != 0) != (t[i].ch == -2) ||
		    (!ret && (o.source.has_channels != (t[i].ch >= 0) ||
			      (t[i].ch >= 0 && o.source.channel_axis != t[i].ch))))
			fprintf(stderr, "\n  case %zu (%d-D, window %s, channel_axis %s): %d %s\n", i,
				t[i].ndim, t[i].window, t[i].channel_axis ? t[i].channel_axis : "auto",
				ret, pm_spec_error(s));
		if (t[i].ch == -2) {
			CU_ASSERT(ret < 0);
			check_message(pm_spec_error(s), t[i].key, __LINE__);
		} else {
			size_t windows = 1, elems = 1;
			int a = 0;

			CU_ASSERT_EQUAL_FATAL(ret, 0);
			CU_ASSERT_EQUAL(o.source.has_channels, t[i].ch >= 0);
			if (t[i].ch >= 0)
				CU_ASSERT_EQUAL(o.source.channel_axis, t[i].ch);
			/* the spatial axes get the window sizes, in order */
			for (int d = 0; d < t[i].ndim; d++) {
				size_t k;

				if (d == t[i].ch) {
					elems *= shape[d];
					continue;
				}
				k = strlen(t[i].window) == 1 ? 3 : (size_t)(t[i].window[2 * a] - '0');
				CU_ASSERT_EQUAL(o.window[a].size, k);
				windows *= shape[d] - k + 1;
				elems *= k;
				a++;
			}
			CU_ASSERT_EQUAL(info.nspatial, a);
			CU_ASSERT_EQUAL(info.windows, windows);
			CU_ASSERT_EQUAL(info.window_elems, elems);
		}
		pm_spec_free(s);
	}
}

/* The message for a window that names neither count: both counts, the
 * shape, and channel_axis. */
static void test_channel_messages(void)
{
	const size_t shape[4] = { 6, 7, 3, 2 };
	struct pm_source src = source(4, shape);
	pm_spec *s = spec();

	SET(s, "window", "2x2");
	MATRIX_BAD(s, &src, -PM_ESPEC, "window", "'2x2'", "2 sizes", "4-D", "6x7x3x2", "3",
		   "channel_axis");
	SET(s, "channel_axis", "none");
	MATRIX_BAD(s, &src, -PM_ESPEC, "window", "'2x2'", "2 values", "4 spatial axes", "6x7x3x2",
		   "give 1 or 4");
	SET(s, "window", "2");
	SET(s, "step", "1x2");
	MATRIX_BAD(s, &src, -PM_ESPEC, "step", "'1x2'", "give 1 or 4");
	SET(s, "step", "1");
	SET(s, "dilation", "1,1,1");
	MATRIX_BAD(s, &src, -PM_ESPEC, "dilation", "'1,1,1'", "give 1 or 4");
	SET(s, "dilation", "1");
	SET(s, "pad", "1,2");
	MATRIX_BAD(s, &src, -PM_ESPEC, "pad", "'1,2'", "give 1 or 4");
	SET(s, "channel_axis", "7");
	MATRIX_BAD(s, &src, -PM_ECHANNEL, "channel_axis", "'7'", "4-D", "6x7x3x2");
	pm_spec_free(s);

	/* no window */
	s = spec();
	MATRIX_BAD(s, &src, -PM_ESPEC, "window", "not given");
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- padding */

/* "same" and "valid" against a table computed by hand from TensorFlow's
 * rule: out = ceil(n / step), total = max((out - 1) * step + (k - 1) * dil
 * + 1 - n, 0), before = total / 2, after = the rest. */
static void test_same_valid(void)
{
	static const struct {
		size_t n, k, step, dil;
		int64_t before, after;
		size_t out;
	} t[] = {
		{ 10, 3, 1, 1, 1, 1, 10 },  /* total 2 */
		{ 10, 4, 1, 1, 1, 2, 10 },  /* total 3: the odd one after */
		{ 10, 1, 1, 1, 0, 0, 10 },
		{ 10, 3, 2, 1, 0, 1, 5 },   /* out 5: 4*2 + 3 - 10 = 1 */
		{ 10, 4, 2, 1, 1, 1, 5 },   /* 8 + 4 - 10 = 2 */
		{ 11, 3, 2, 1, 1, 1, 6 },   /* 10 + 3 - 11 = 2 */
		{ 10, 3, 3, 1, 1, 1, 4 },   /* 9 + 3 - 10 = 2 */
		{ 9, 3, 3, 1, 0, 0, 3 },    /* 6 + 3 - 9 = 0 */
		{ 9, 2, 3, 1, 0, 0, 3 },    /* 6 + 2 - 9 < 0: none */
		{ 10, 3, 1, 2, 2, 2, 10 },  /* reach 5: 9 + 5 - 10 = 4 */
		{ 7, 3, 2, 3, 3, 3, 4 },    /* 6 + 7 - 7 = 6 */
		{ 4, 6, 1, 1, 2, 3, 4 },    /* a window larger than the axis: 3 + 6 - 4 = 5 */
		{ 1, 5, 3, 1, 2, 2, 1 },    /* 0 + 5 - 1 = 4 */
	};

	for (size_t i = 0; i < T_COUNT(t); i++) {
		const size_t shape[1] = { t[i].n };
		struct pm_source src = source(1, shape);
		struct pm_matrix_opts o;
		struct pm_matrix_info info = { 0 };
		char v[32];
		pm_spec *s = spec();

		snprintf(v, sizeof(v), "%zu", t[i].k);
		SET(s, "window", v);
		snprintf(v, sizeof(v), "%zu", t[i].step);
		SET(s, "step", v);
		snprintf(v, sizeof(v), "%zu", t[i].dil);
		SET(s, "dilation", v);
		SET(s, "pad", "SAME");
		MATRIX(s, &src, &o, &info);
		if (o.window[0].pad_before != t[i].before || o.window[0].pad_after != t[i].after)
			fprintf(stderr, "\n  n %zu k %zu step %zu dil %zu: %lld, %lld\n", t[i].n,
				t[i].k, t[i].step, t[i].dil, (long long)o.window[0].pad_before,
				(long long)o.window[0].pad_after);
		CU_ASSERT_EQUAL(o.window[0].pad_before, t[i].before);
		CU_ASSERT_EQUAL(o.window[0].pad_after, t[i].after);
		CU_ASSERT_EQUAL(info.out_shape[0], t[i].out);
		/* valid: no padding, floor((n - reach - 1) / step) + 1 windows or none */
		SET(s, "pad", "valid");
		if (t[i].n >= (t[i].k - 1) * t[i].dil + 1) {
			MATRIX(s, &src, &o, &info);
			CU_ASSERT_EQUAL(o.window[0].pad_before, 0);
			CU_ASSERT_EQUAL(o.window[0].pad_after, 0);
			CU_ASSERT_EQUAL(info.out_shape[0],
					(t[i].n - (t[i].k - 1) * t[i].dil - 1) / t[i].step + 1);
		} else {
			MATRIX_BAD(s, &src, -PM_EWINDOWBIG, "window", "spans");
		}
		pm_spec_free(s);
	}
}

/* TensorFlow's "same" on steps 1 to 3, every small case: ceil(n / step)
 * windows per axis, and no padding that could be left out. */
static void test_same_steps(void)
{
	for (size_t n = 1; n <= 13; n++)
		for (size_t k = 1; k <= 6; k++)
			for (size_t step = 1; step <= 3; step++)
				for (size_t dil = 1; dil <= 2; dil++) {
					const size_t shape[2] = { n, 5 };
					struct pm_source src = source(2, shape);
					struct pm_matrix_opts o;
					struct pm_matrix_info info = { 0 };
					char v[32];
					pm_spec *s = spec();
					int64_t total, reach = (int64_t)((k - 1) * dil + 1);
					size_t out = (n + step - 1) / step;

					snprintf(v, sizeof(v), "%zux2", k);
					SET(s, "window", v);
					snprintf(v, sizeof(v), "%zu,1", step);
					SET(s, "step", v);
					snprintf(v, sizeof(v), "%zu x 1", dil);
					SET(s, "dilation", v);
					SET(s, "pad", "same");
					MATRIX(s, &src, &o, &info);
					CU_ASSERT_EQUAL(info.out_shape[0], out);
					CU_ASSERT_EQUAL(info.out_shape[1], 5);
					total = o.window[0].pad_before + o.window[0].pad_after;
					CU_ASSERT(o.window[0].pad_after - o.window[0].pad_before == 0 ||
						  o.window[0].pad_after - o.window[0].pad_before == 1);
					/* the last window ends within the padded axis, and
					 * one sample less of padding would lose it */
					CU_ASSERT((int64_t)((out - 1) * step) + reach <= (int64_t)n + total);
					if (total > 0)
						CU_ASSERT((int64_t)((out - 1) * step) + reach >
							  (int64_t)n + total - 1);
					pm_spec_free(s);
				}
}

/* pad_mode or pad_value without pad means "same"; pad without pad_mode is
 * zero; pad_value goes with constant. */
static void test_pad_implied(void)
{
	const size_t shape[2] = { 8, 9 };
	struct pm_source src = source(2, shape);
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	pm_spec *s = spec();

	SET(s, "window", "3x4");
	SET(s, "pad_mode", "edge");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_EDGE);
	CU_ASSERT_EQUAL(o.window[0].pad_before, 1);
	CU_ASSERT_EQUAL(o.window[0].pad_after, 1);
	CU_ASSERT_EQUAL(o.window[1].pad_before, 1);
	CU_ASSERT_EQUAL(o.window[1].pad_after, 2);
	CU_ASSERT_EQUAL(info.out_shape[0], 8);
	CU_ASSERT_EQUAL(info.out_shape[1], 9);
	pm_spec_free(s);

	s = spec();
	SET(s, "window", "3");
	SET(s, "pad_value", "5");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_CONSTANT);
	CU_ASSERT_EQUAL(o.pad_value, 5);
	CU_ASSERT_EQUAL(o.window[1].pad_before, 1);
	SET(s, "pad_mode", "zero");
	MATRIX_BAD(s, &src, -PM_ESPEC, "pad_value", "'5'", "constant", "zero");
	SET(s, "pad_value", "0");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_ZERO);
	SET(s, "pad_mode", "wrap");
	MATRIX_BAD(s, &src, -PM_ESPEC, "pad_value", "'0'", "constant", "wrap");
	pm_spec_free(s);

	s = spec();
	SET(s, "window", "3");
	SET(s, "pad", "2");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.pad_mode, PM_PAD_ZERO);
	CU_ASSERT_EQUAL(o.window[0].pad_before, 2);
	CU_ASSERT_EQUAL(o.window[1].pad_after, 2);
	CU_ASSERT_EQUAL(info.out_shape[0], 10);
	SET(s, "pad", "0x4");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(o.window[0].pad_before, 0);
	CU_ASSERT_EQUAL(o.window[0].pad_after, 4);
	CU_ASSERT_EQUAL(o.window[1].pad_before, 0);
	CU_ASSERT_EQUAL(o.window[1].pad_after, 4);
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- describe */

/* Every refusal of pm_matrix_describe lands on the key it concerns. */
static void test_describe_errors(void)
{
	const size_t shape[3] = { 6, 7, 3 };
	struct pm_source src = source(3, shape);
	struct pm_matrix_opts o;
	pm_spec *s = spec();

	SET(s, "window", "7x2");
	MATRIX_BAD(s, &src, -PM_EWINDOWBIG, "window", "'7x2'", "7x2", "6x7", "6x7x3");
	SET(s, "dilation", "1x4");
	SET(s, "window", "2x3");
	MATRIX_BAD(s, &src, -PM_EWINDOWBIG, "window", "'2x3'", "dilation", "2x9", "6x7");
	SET(s, "pad", "0x1");
	MATRIX_BAD(s, &src, -PM_EWINDOWBIG, "window", "2x9", "7x8", "padding included");
	SET(s, "pad", "0x2");
	MATRIX(s, &src, &o, NULL);
	SET(s, "dilation", "1");

	SET(s, "pad_mode", "constant");
	SET(s, "pad_value", "300");
	MATRIX_BAD(s, &src, -PM_EPADVALUE, "pad_value", "'300'", "uint8", "0 to 255");
	SET(s, "pad_value", "-1");
	MATRIX_BAD(s, &src, -PM_EPADVALUE, "pad_value", "'-1'", "uint8");
	SET(s, "pad_value", "0.5");
	MATRIX_BAD(s, &src, -PM_EPADVALUE, "pad_value", "'0.5'", "uint8");
	SET(s, "pad_value", "255");
	MATRIX(s, &src, &o, NULL);
	{
		static int16_t samples[6 * 7 * 3];
		struct pm_source isrc;

		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&isrc, samples, PM_DTYPE_I16, 3, shape), 0);
		SET(s, "pad_value", "-32769");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "'-32769'", "int16",
			   "-32768 to 32767");
		SET(s, "pad_value", "-32768");
		MATRIX(s, &isrc, &o, NULL);
		SET(s, "pad_value", "255");
	}
	{
		static int64_t samples[6 * 7 * 3];
		struct pm_source isrc;

		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&isrc, samples, PM_DTYPE_U64, 3, shape), 0);
		SET(s, "pad_value", "-1");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "'-1'", "uint64",
			   "0 to 18446744073709551615");
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&isrc, samples, PM_DTYPE_I64, 3, shape), 0);
		SET(s, "pad_value", "1e19");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "'1e19'", "int64",
			   "-9223372036854775808 to 9223372036854775807");
		/* Whole numbers beyond 2^53 that a double does not hold are
		 * refused, not padded with their neighbour; ones it holds pass. */
		SET(s, "pad_value", "9223372036854775807");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "'9223372036854775807'",
			   "cannot hold exactly", "9223372036854775808", "2^53");
		SET(s, "pad_value", "-9007199254740993");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "-9007199254740992");
		SET(s, "pad_value", "4611686018427387904");
		MATRIX(s, &isrc, &o, NULL);
		CU_ASSERT_EQUAL(o.pad_value, 0x1p62);
		SET(s, "pad_value", "-9223372036854775808");
		MATRIX(s, &isrc, &o, NULL);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&isrc, samples, PM_DTYPE_U64, 3, shape), 0);
		SET(s, "pad_value", "18446744073709551615");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "18446744073709551616");
		/* A float source rounds a whole number as it rounds any other. */
		{
			static float fsamples[6 * 7 * 3];
			struct pm_source fsrc;

			CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&fsrc, fsamples, PM_DTYPE_F32, 3, shape), 0);
			SET(s, "pad_value", "9007199254740993");
			MATRIX(s, &fsrc, &o, NULL);
			/* ... but a nonzero value that would be 0 in it is refused. */
			SET(s, "pad_value", "1e-50");
			MATRIX_BAD(s, &fsrc, -PM_EPADVALUE, "pad_value", "'1e-50'", "float32", "rounds to 0");
			SET(s, "pad_value", "-1e-46");
			MATRIX_BAD(s, &fsrc, -PM_EPADVALUE, "pad_value", "float32");
			SET(s, "pad_value", "1e-45");
			MATRIX(s, &fsrc, &o, NULL);
			SET(s, "pad_value", "-0");
			MATRIX(s, &fsrc, &o, NULL);
		}
		{
			static uint16_t hsamples[6 * 7 * 3];
			struct pm_source hsrc;

			CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&hsrc, hsamples, PM_DTYPE_F16, 3, shape), 0);
			SET(s, "pad_value", "1e-8");
			MATRIX_BAD(s, &hsrc, -PM_EPADVALUE, "pad_value", "'1e-8'", "float16", "65504");
			SET(s, "pad_value", "6e-8");
			MATRIX(s, &hsrc, &o, NULL);
		}
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&isrc, samples, PM_DTYPE_BOOL, 3, shape), 0);
		SET(s, "pad_value", "2");
		MATRIX_BAD(s, &isrc, -PM_EPADVALUE, "pad_value", "'2'", "bool", "0 or 1");
		SET(s, "pad_value", "1");
		MATRIX(s, &isrc, &o, NULL);
		SET(s, "pad_value", "255");
	}

	SET(s, "dtype", "int16");
	MATRIX_BAD(s, &src, -PM_EOUTDTYPE, "dtype", "'int16'", "uint8", "same");
	SET(s, "dtype", "uint8");
	MATRIX(s, &src, &o, NULL);
	SET(s, "scale", "2");
	MATRIX_BAD(s, &src, -PM_EAFFINE, "scale", "uint8");
	pm_spec_free(s);
	s = spec();
	SET(s, "window", "2");
	SET(s, "dtype", "same");
	SET(s, "offset", "2");
	MATRIX_BAD(s, &src, -PM_EAFFINE, "offset", "uint8");
	SET(s, "dtype", "f32");
	MATRIX(s, &src, &o, NULL);
	CU_ASSERT(o.affine);
	CU_ASSERT_EQUAL(o.scale, 1);
	CU_ASSERT_EQUAL(o.offset, 2);

	/* 5 x 6 windows of 2 x 2 x 3 float32: rows of 48 bytes */
	SET(s, "row_pitch", "40");
	MATRIX_BAD(s, &src, -PM_EPITCH, "row_pitch", "'40'", "less than", "48");
	SET(s, "row_pitch", "50");
	MATRIX_BAD(s, &src, -PM_EPITCH, "row_pitch", "'50'", "multiple", "4");
	SET(s, "row_pitch", "64");
	MATRIX(s, &src, &o, NULL);
	SET(s, "row_pitch", "4T"); /* 30 rows of 4 TiB */
	MATRIX_BAD(s, &src, -PM_ETOOBIG, "row_pitch", "'4T'");
	SET(s, "row_pitch", "0");
	pm_spec_free(s);

	/* a matrix past what can be reserved */
	{
		const size_t big[2] = { (size_t)1 << 24, (size_t)1 << 24 };
		struct pm_source b = source(2, big);

		s = spec();
		SET(s, "window", "16");
		MATRIX_BAD(s, &b, -PM_ETOOBIG, "window", "'16'", "16777216x16777216", "64 TiB");
		pm_spec_free(s);
	}

	/* the source itself */
	{
		struct pm_source bad = src;

		s = spec();
		SET(s, "window", "2");
		bad.dtype = 99;
		MATRIX_BAD(s, &bad, -PM_EDTYPE, "source", "6x7x3");
		bad = src;
		bad.shape[1] = 0;
		MATRIX_BAD(s, &bad, -PM_ESHAPE, "source", "6x0x3");
		bad.ndim = 0;
		MATRIX_BAD(s, &bad, -PM_ENDIM, "source", "0 dimensions");
		CU_ASSERT_EQUAL(pm_spec_matrix(s, NULL, &o, NULL), -PM_ENULL);
		CU_ASSERT_EQUAL(pm_spec_matrix(s, &src, NULL, NULL), -PM_ENULL);
		CU_ASSERT_EQUAL(pm_spec_matrix(NULL, &src, &o, NULL), -PM_ENULL);
		/* the source's own channel fields are ignored */
		bad = src;
		bad.has_channels = true;
		bad.channel_axis = 0;
		SET(s, "window", "2x2x2");
		MATRIX(s, &bad, &o, NULL);
		CU_ASSERT(!o.source.has_channels);
		pm_spec_free(s);
	}
}

/* The options resolved are the library's: a matrix opened from them shows
 * the source, per the reference im2col of a 3-channel image with channels
 * last and "same" edge padding. */
static void test_open(void)
{
	const size_t shape[3] = { 5, 6, 3 };
	struct pm_source src = source(3, shape);
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	pm_matrix *m = NULL;
	const float *x;
	pm_spec *s = spec();

	for (size_t i = 0; i < 5 * 6 * 3; i++)
		pixels[i] = (unsigned char)(i * 7 + 1);
	SET(s, "window", "3x2");
	SET(s, "pad_mode", "edge");
	SET(s, "backend", "eager");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	x = pm_matrix_data(m);
	CU_ASSERT_EQUAL_FATAL(info.rows, 5 * 6);
	CU_ASSERT_EQUAL_FATAL(info.cols, 3 * 2 * 3);
	for (size_t r = 0; r < info.rows; r++) {
		long py = (long)(r / 6), px = (long)(r % 6);

		/* pad: 1 before and 1 after rows; 0 before and 1 after columns */
		for (long dy = 0; dy < 3; dy++)
			for (long dx = 0; dx < 2; dx++)
				for (long c = 0; c < 3; c++) {
					long y = py + dy - 1, xx = px + dx;

					y = y < 0 ? 0 : y > 4 ? 4 : y;
					xx = xx > 5 ? 5 : xx;
					CU_ASSERT_EQUAL(x[r * info.ld + (size_t)((dy * 2 + dx) * 3 + c)],
							(float)pixels[(y * 6 + xx) * 3 + c]);
				}
	}
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- rows */

/* row_range: its grammar, its resolution against the windows (5 x 6 source,
 * window 2: 4 x 5 = 20 windows), and the matrix it opens against a naive
 * reference. */
static void test_rows(void)
{
	const size_t shape[2] = { 5, 6 };
	struct pm_source src = source(2, shape);
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	struct pm_rows r;
	pm_matrix *m = NULL;
	const float *x;
	pm_spec *s = spec();

	for (size_t i = 0; i < 30; i++)
		pixels[i] = (unsigned char)(i * 5 + 3);
	SET(s, "window", "2");
	SET(s, "backend", "eager");
	MATRIX(s, &src, &o, &info);
	/* no row_range: every window */
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, &r, &info), 0);
	CU_ASSERT(r.kind == PM_ROWS_ALL && r.size == sizeof(r) && info.rows == 20);
	CU_ASSERT_FALSE(pm_spec_isset(s, "row_range"));

	SET(s, "row_range", "3:7");
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, &r, &info), 0);
	CU_ASSERT(r.kind == PM_ROWS_RANGE && r.begin == 3 && r.end == 7);
	CU_ASSERT(info.rows == 4 && info.windows == 20 && info.bytes == 4 * 4 * sizeof(float));
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open_rows(&o, &r, &m), 0);
	x = pm_matrix_data(m);
	for (size_t i = 0; i < 4; i++)
		for (size_t k = 0; k < 4; k++) {
			size_t w = 3 + i, y = w / 5 + k / 2, xx = w % 5 + k % 2;

			CU_ASSERT_EQUAL(x[i * info.ld + k], (float)pixels[y * 6 + xx]);
		}
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
	SET(s, "Row-Range", " 17 : ");
	CU_ASSERT(pm_spec_rows(s, &o, &r, &info) == 0 && r.begin == 17 && r.end == 20);
	SET(s, "row_range", ":2");
	CU_ASSERT(pm_spec_rows(s, &o, &r, &info) == 0 && r.begin == 0 && r.end == 2);
	SET(s, "row_range", "0:20");
	CU_ASSERT(pm_spec_rows(s, &o, &r, &info) == 0 && info.rows == 20);

	/* the grammar */
	BAD(s, "row_range", "3", -PM_ESPEC);
	BAD(s, "row_range", "a:b", -PM_ESPEC);
	BAD(s, "row_range", "-1:3", -PM_ESPEC);
	BAD(s, "row_range", "1:2:3", -PM_ESPEC);
	BAD(s, "row_range", "5:5", -PM_ESPEC);
	BAD(s, "row_range", "6:5", -PM_ESPEC);
	BAD(s, "row_range", "1:99999999999999999999999", -PM_ESPEC);

	/* against the windows */
	SET(s, "row_range", "5:21");
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, &r, &info), -PM_EROWRANGE);
	check_message(error_of(s), "row_range", __LINE__);
	CU_ASSERT_PTR_NOT_NULL(strstr(error_of(s), "20 windows, out_shape 4x5"));
	SET(s, "row_range", "20:");
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, &r, &info), -PM_EROWRANGE);
	check_message(error_of(s), "row_range", __LINE__);
	SET(s, "row_range", "1:2");
	SET(s, "layout", "cols");
	MATRIX(s, &src, &o, &info);
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, &r, &info), -PM_EROWSLAYOUT);
	check_message(error_of(s), "row_range", __LINE__);
	CU_ASSERT_EQUAL(pm_spec_rows(NULL, &o, &r, &info), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_spec_rows(s, NULL, &r, &info), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_spec_rows(s, &o, NULL, &info), -PM_ENULL);
	pm_spec_free(s);
}

/* ---------------------------------------------------------------- memory */

static void test_memory(void)
{
	const char *saved = getenv("PATCHMAP_BACKEND");
	char *keep = saved ? strdup(saved) : NULL;
	struct pm_matrix_info info = { .bytes = (size_t)1 << 30 };
	pm_spec *s = spec();

	unsetenv("PATCHMAP_BACKEND");
	/* defaults: 256 MiB resident at most */
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);
	/* an explicit budget under two chunks */
	SET(s, "budget", "4M");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EBUDGET);
	check_message(pm_spec_error(s), "budget", __LINE__);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "4 MiB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "8 MiB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "chunk"));
	SET(s, "budget", "8M");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);
	CU_ASSERT_STRING_EQUAL(pm_spec_error(s), "");
	SET(s, "chunk", "8M");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EBUDGET);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "16 MiB"));
	/* the eager backend keeps no budget */
	SET(s, "backend", "eager");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);

	/* more than the memory available: an eager whole matrix, an unlimited
	 * or a huge budget on a huge matrix */
	info.bytes = (size_t)1 << 60;
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EMEMORY);
	check_message(pm_spec_error(s), "backend", __LINE__);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "1024 PiB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), " allows "));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), " more; eager would keep all "));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "lazy backend"));
	SET(s, "backend", "auto");
	SET(s, "chunk", "4M");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);
	SET(s, "budget", "unlimited");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EMEMORY);
	check_message(pm_spec_error(s), "budget", __LINE__);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "budget unlimited would keep all"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "give a budget"));
	SET(s, "budget", "1P");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EMEMORY);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "; the budget asks 1.00 PiB; give a smaller "
							"budget, or none"));
	/* a small matrix is its own bound */
	info.bytes = 4096;
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);
	info.bytes = (size_t)1 << 60;
	/* no mapping, nothing resident */
	SET(s, "backend", "none");
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), 0);
	/* "auto" that PATCHMAP_BACKEND makes eager */
	SET(s, "backend", "auto");
	SET(s, "budget", "256M");
	CU_ASSERT_EQUAL_FATAL(setenv("PATCHMAP_BACKEND", "eager", 1), 0);
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EMEMORY);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), "PATCHMAP_BACKEND"));
	unsetenv("PATCHMAP_BACKEND");

	CU_ASSERT_EQUAL(pm_spec_check_memory(s, NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_spec_check_memory(NULL, &info), -PM_ENULL);
	if (keep) {
		setenv("PATCHMAP_BACKEND", keep, 1);
		free(keep);
	}
	pm_spec_free(s);
}

int main(int argc, char **argv)
{
	static const struct t_test tests[] = {
		{ "keys", test_keys },
		{ "size grammar", test_size_grammar },
		{ "dims grammar", test_dims_grammar },
		{ "dtype grammar", test_dtype_grammar },
		{ "pad mode, order and layout names", test_names },
		{ "every key's values", test_key_values },
		{ "every key's bad values", test_key_errors },
		{ "channel rule", test_channel_rule },
		{ "channel rule messages", test_channel_messages },
		{ "same and valid padding", test_same_valid },
		{ "same on steps 1 to 3", test_same_steps },
		{ "padding implied", test_pad_implied },
		{ "describe errors on their keys", test_describe_errors },
		{ "resolved options open", test_open },
		{ "memory policy", test_memory },
		{ "row_range", test_rows },
	};

	return t_run("spec", tests, T_COUNT(tests), argc > 1 ? argv[1] : NULL);
}
