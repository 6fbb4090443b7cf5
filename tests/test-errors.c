/* test-errors.c: every input error the library can be given, one test each:
 * the exact code, a specific text for it, *out left NULL and nothing left
 * allocated (the sanitizer build checks leaks); then the small functions
 * around codes, dtypes, backends, the version and pm_source_contiguous. */
#include <CUnit/Basic.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "helpers.h"

/* A valid description to break one field of: an 8 x 6 uint8 image,
 * 3 x 3 windows, eager, so that the successful opens are cheap. */
/* Room for the 8 x 6 image in the widest dtype (8 bytes). */
static unsigned char image[8 * 6 * 8] __attribute__((aligned(8)));

static void valid(struct pm_matrix_opts *o)
{
	const size_t shape[2] = { 8, 6 };

	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o->source, image, PM_DTYPE_U8, 2, shape), 0);
	for (int a = 0; a < 2; a++)
		o->window[a] = (struct pm_window){ .size = 3, .step = 1, .dilation = 1 };
	o->lazy.backend = PM_BACKEND_EAGER;
}

/* The code's text: non-empty, specific. */
static void check_text(int code)
{
	const char *s = pm_strerror(code);

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT(strlen(s) > 10);
	CU_ASSERT(strcmp(s, "unknown error") != 0);
	CU_ASSERT(strcmp(s, "success") != 0);
}

static void open_fails(const struct pm_matrix_opts *o, int code, int line)
{
	static char sentinel;
	pm_matrix *m = (pm_matrix *)&sentinel;
	int ret = pm_matrix_open(o, &m);

	if (ret != code)
		fprintf(stderr, "\n  line %d: pm_matrix_open returned %d (%s), want %d (%s)\n", line, ret,
			pm_strerror(ret), code, pm_strerror(code));
	CU_ASSERT_EQUAL(ret, code);
	CU_ASSERT_PTR_NULL(m);
	if (ret == 0)
		pm_matrix_close(m);
	check_text(code);
}

/* Both describe and open must refuse o with `code`. */
static void fails(const struct pm_matrix_opts *o, int code, int line)
{
	struct pm_matrix_info info = { 0 };
	int ret = pm_matrix_describe(o, &info);

	if (ret != code)
		fprintf(stderr, "\n  line %d: pm_matrix_describe returned %d (%s), want %d (%s)\n", line,
			ret, pm_strerror(ret), code, pm_strerror(code));
	CU_ASSERT_EQUAL(ret, code);
	open_fails(o, code, line);
}
#define FAILS(o, code) fails(o, code, __LINE__)
#define OPEN_FAILS(o, code) open_fails(o, code, __LINE__)

/* o must open (and describe) fine. */
static void works(const struct pm_matrix_opts *o, int line)
{
	struct pm_matrix_info info = { 0 };
	pm_matrix *m = NULL;
	int ret = pm_matrix_describe(o, &info);

	if (ret)
		fprintf(stderr, "\n  line %d: pm_matrix_describe returned %d (%s)\n", line, ret,
			pm_strerror(ret));
	CU_ASSERT_EQUAL(ret, 0);
	ret = pm_matrix_open(o, &m);
	if (ret)
		fprintf(stderr, "\n  line %d: pm_matrix_open returned %d (%s)\n", line, ret, pm_strerror(ret));
	CU_ASSERT_EQUAL(ret, 0);
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
}
#define WORKS(o) works(o, __LINE__)

/* ------------------------------------------------------------ matrix opts */

static void test_null(void)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };
	pm_matrix *m = (pm_matrix *)&o;

	valid(&o);
	CU_ASSERT_EQUAL(pm_matrix_open(NULL, &m), -PM_ENULL);
	CU_ASSERT_PTR_NULL(m);
	CU_ASSERT_EQUAL(pm_matrix_open(&o, NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_describe(NULL, &info), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, NULL), -PM_ENULL);
	o.source.data = NULL;
	OPEN_FAILS(&o, -PM_ENULL);
	check_text(-PM_ENULL);

	/* The handle's functions, given NULL. */
	CU_ASSERT_EQUAL(pm_matrix_info(NULL, &info), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_read(NULL, 0, &info, 1), -PM_ENULL);
	valid(&o);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	CU_ASSERT_EQUAL(pm_matrix_info(m, NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_read(m, 0, NULL, 1), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_stats(m, NULL), -PM_ENULL);
	pm_matrix_close(m);
	CU_ASSERT_EQUAL(pm_matrix_stats(NULL, &(struct pm_stats){ 0 }), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_region_stats(NULL, &(struct pm_stats){ 0 }), -PM_ENULL);
}

static void test_opt_size(void)
{
	static const size_t sizes[] = { 1, 8, sizeof(struct pm_matrix_opts) - 8,
					sizeof(struct pm_matrix_opts) + 8, SIZE_MAX };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		valid(&o);
		o.size = sizes[i];
		FAILS(&o, -PM_EOPTSIZE);
	}
	valid(&o);
	o.size = 0; /* the current version */
	WORKS(&o);
}

static void test_dtype(void)
{
	static const int bad[] = { PM_DTYPE_SAME, -1, PM_DTYPE_COUNT, 99, INT_MIN };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		valid(&o);
		o.source.dtype = bad[i];
		FAILS(&o, -PM_EDTYPE);
	}
}

static void test_out_dtype(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.dtype = -1;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_COUNT;
	FAILS(&o, -PM_EOUTDTYPE);
	/* An integer output other than the source's own. */
	o.dtype = PM_DTYPE_I16;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_I8;
	FAILS(&o, -PM_EOUTDTYPE);
	o.source.dtype = PM_DTYPE_F32;
	o.source.strides[0] = 24;
	o.source.strides[1] = 4;
	o.dtype = PM_DTYPE_U8;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_I32;
	FAILS(&o, -PM_EOUTDTYPE);
	/* float16 and the 64-bit integers are outputs only as the source's own. */
	valid(&o);
	o.dtype = PM_DTYPE_F16;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_I64;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_BOOL;
	FAILS(&o, -PM_EOUTDTYPE);
	o.source.dtype = PM_DTYPE_F32;
	o.source.strides[0] = 24;
	o.source.strides[1] = 4;
	o.dtype = PM_DTYPE_F16;
	FAILS(&o, -PM_EOUTDTYPE);
	o.source.dtype = PM_DTYPE_F16;
	o.source.strides[0] = 12;
	o.source.strides[1] = 2;
	WORKS(&o);
	o.dtype = PM_DTYPE_SAME;
	WORKS(&o);
	o.dtype = PM_DTYPE_F32;
	WORKS(&o);
	o.source.dtype = PM_DTYPE_U64;
	o.source.strides[0] = 48;
	o.source.strides[1] = 8;
	o.dtype = PM_DTYPE_I64;
	FAILS(&o, -PM_EOUTDTYPE);
	o.dtype = PM_DTYPE_U64;
	WORKS(&o);
	/* The source's own dtype, named: fine. */
	valid(&o);
	o.dtype = PM_DTYPE_U8;
	WORKS(&o);
}

static void test_ndim(void)
{
	static const int bad[] = { 0, PM_MAX_DIMS + 1, -1, INT_MAX };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		valid(&o);
		o.source.ndim = bad[i];
		FAILS(&o, -PM_ENDIM);
	}
}

static void test_channel_axis(void)
{
	static const int bad[] = { -1, 2, 3, PM_MAX_DIMS, INT_MAX, INT_MIN };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		valid(&o);
		o.source.has_channels = true;
		o.source.channel_axis = bad[i];
		FAILS(&o, -PM_ECHANNEL);
	}
	/* Ignored without has_channels. */
	valid(&o);
	o.source.channel_axis = -7;
	WORKS(&o);
}

static void test_channel_only(void)
{
	struct pm_matrix_opts o;
	const size_t n = 5;

	/* A 1-D source whose one axis is the channel axis: nothing to window. */
	valid(&o);
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, image, PM_DTYPE_U8, 1, &n), 0);
	o.source.has_channels = true;
	o.source.channel_axis = 0;
	FAILS(&o, -PM_ECHANNEL);
}

static void test_zero_extent(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.source.shape[1] = 0;
	FAILS(&o, -PM_ESHAPE);
	valid(&o);
	o.source.shape[0] = 0;
	FAILS(&o, -PM_ESHAPE);
	/* A channel axis of extent 0. */
	valid(&o);
	o.source.has_channels = true;
	o.source.channel_axis = 1;
	o.source.shape[1] = 0;
	FAILS(&o, -PM_ESHAPE);
}

static void test_zero_window(void)
{
	struct pm_matrix_opts o;

	for (int a = 0; a < 2; a++) {
		valid(&o);
		o.window[a].size = 0;
		FAILS(&o, -PM_EWINDOW);
	}
}

static void test_zero_step(void)
{
	struct pm_matrix_opts o;

	for (int a = 0; a < 2; a++) {
		valid(&o);
		o.window[a].step = 0;
		FAILS(&o, -PM_ESTEP);
	}
}

static void test_zero_dilation(void)
{
	struct pm_matrix_opts o;

	for (int a = 0; a < 2; a++) {
		valid(&o);
		o.window[a].dilation = 0;
		FAILS(&o, -PM_EDILATION);
	}
}

static void test_padding(void)
{
	static const int64_t bad[] = { -1, INT64_MIN, PM_MAX_PAD + 1, INT64_MAX };
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (int a = 0; a < 2; a++) {
			valid(&o);
			o.window[a].pad_before = bad[i];
			FAILS(&o, -PM_EPAD);
			valid(&o);
			o.window[a].pad_after = bad[i];
			FAILS(&o, -PM_EPAD);
		}
	/* PM_MAX_PAD itself is accepted: 2^32 + 8 rows on axis 0. */
	valid(&o);
	o.window[0].size = 1;
	o.window[1].size = 6;
	o.window[0].pad_after = PM_MAX_PAD;
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &info), 0);
	CU_ASSERT_EQUAL(info.rows, (size_t)PM_MAX_PAD + 8);
}

static void test_pad_mode(void)
{
	static const int bad[] = { -1, PM_PAD_COUNT, 42, INT_MIN };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		valid(&o);
		o.pad_mode = bad[i];
		FAILS(&o, -PM_EPADMODE);
	}
}

static void test_pad_value(void)
{
	static const struct {
		int dtype;
		double v;
		bool ok;
	} cases[] = {
		{ PM_DTYPE_U8, 300, false },
		{ PM_DTYPE_U8, 256, false },
		{ PM_DTYPE_U8, -1, false },
		{ PM_DTYPE_U8, 0.5, false },
		{ PM_DTYPE_U8, 255, true },
		{ PM_DTYPE_I8, 128, false },
		{ PM_DTYPE_I8, -129, false },
		{ PM_DTYPE_I8, -128, true },
		{ PM_DTYPE_U16, 65536, false },
		{ PM_DTYPE_U16, 65535, true },
		{ PM_DTYPE_I16, 0.5, false },
		{ PM_DTYPE_I16, -32769, false },
		{ PM_DTYPE_I16, -32768, true },
		{ PM_DTYPE_U32, 4294967296.0, false },
		{ PM_DTYPE_U32, -1, false },
		{ PM_DTYPE_U32, 4294967295.0, true },
		{ PM_DTYPE_I32, 2147483648.0, false },
		{ PM_DTYPE_I32, -2147483649.0, false },
		{ PM_DTYPE_I32, 1e-300, false },
		{ PM_DTYPE_I32, -2147483648.0, true },
		{ PM_DTYPE_F32, 1e39, false },
		{ PM_DTYPE_F32, -1e39, false },
		{ PM_DTYPE_F32, 1e300, false },
		{ PM_DTYPE_F32, FLT_MAX, true },
		{ PM_DTYPE_F32, -FLT_MAX, true },
		{ PM_DTYPE_F32, 0.1, true }, /* rounded, as numpy's float32(0.1) */
		{ PM_DTYPE_F64, DBL_MAX, true },
		/* 64-bit integers: INT64_MAX and UINT64_MAX are no doubles; the
		 * nearest doubles, 2^63 and 2^64, are out of range. */
		{ PM_DTYPE_I64, 9223372036854775807.0, false }, /* = 2^63 */
		{ PM_DTYPE_I64, -9223372036854777856.0, false }, /* -2^63 - 2048 */
		{ PM_DTYPE_I64, -9223372036854775808.0, true },
		{ PM_DTYPE_I64, 9223372036854774784.0, true },  /* 2^63 - 1024 */
		{ PM_DTYPE_I64, 9007199254740994.0, true },     /* 2^53 + 2 */
		{ PM_DTYPE_I64, 0.5, false },
		{ PM_DTYPE_I64, 1e300, false },
		{ PM_DTYPE_U64, 18446744073709551615.0, false }, /* = 2^64 */
		{ PM_DTYPE_U64, 18446744073709549568.0, true },  /* 2^64 - 2048 */
		{ PM_DTYPE_U64, -1, false },
		{ PM_DTYPE_U64, 2.5, false },
		{ PM_DTYPE_U64, 0, true },
		{ PM_DTYPE_BOOL, 0, true },
		{ PM_DTYPE_BOOL, 1, true },
		{ PM_DTYPE_BOOL, 2, false },
		{ PM_DTYPE_BOOL, -1, false },
		{ PM_DTYPE_BOOL, 0.5, false },
		{ PM_DTYPE_F16, 65504, true },
		{ PM_DTYPE_F16, -65504, true },
		{ PM_DTYPE_F16, 65505, false },
		{ PM_DTYPE_F16, 1e5, false },
		{ PM_DTYPE_F16, 0.1, true },  /* rounded, as numpy's float16(0.1) */
		{ PM_DTYPE_F16, 1e-30, false }, /* rounds to 0: refused, as overflows are */
		{ PM_DTYPE_F16, -1e-8, false },
		{ PM_DTYPE_F16, 6e-8, true },   /* rounds to the smallest subnormal */
		{ PM_DTYPE_F32, 1e-50, false },
		{ PM_DTYPE_F32, 1e-45, true },
		{ PM_DTYPE_F16, INFINITY, true },
		{ PM_DTYPE_F16, NAN, true },
	};
	struct pm_matrix_opts o;
	static double data[8 * 6];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t shape[2] = { 8, 6 };

		valid(&o);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, data, cases[i].dtype, 2, shape), 0);
		o.pad_mode = PM_PAD_CONSTANT;
		o.pad_value = cases[i].v;
		o.window[0].pad_before = 1;
		if (cases[i].ok) {
			WORKS(&o);
		} else {
			FAILS(&o, -PM_EPADVALUE);
			/* The value is not looked at in the other modes. */
			for (int mode = 0; mode < PM_PAD_COUNT; mode++)
				if (mode != PM_PAD_CONSTANT) {
					o.pad_mode = mode;
					WORKS(&o);
				}
		}
	}
	/* NaN and infinities: no integer holds them. */
	for (int dt = PM_DTYPE_U8; dt < PM_DTYPE_COUNT; dt++) {
		if (dt == PM_DTYPE_F32 || dt == PM_DTYPE_F64 || dt == PM_DTYPE_F16)
			continue;
		size_t shape[2] = { 8, 6 };

		valid(&o);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, data, dt, 2, shape), 0);
		o.pad_mode = PM_PAD_CONSTANT;
		o.pad_value = NAN;
		FAILS(&o, -PM_EPADVALUE);
		o.pad_value = INFINITY;
		FAILS(&o, -PM_EPADVALUE);
		o.pad_value = -INFINITY;
		FAILS(&o, -PM_EPADVALUE);
	}
}

static void test_window_big(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.window[0].size = 9; /* axis of 8 */
	FAILS(&o, -PM_EWINDOWBIG);
	o.window[0].pad_after = 1;
	WORKS(&o);
	/* Dilation: 3 samples 4 apart span 9. */
	valid(&o);
	o.window[1].dilation = 4;
	o.window[1].size = 2; /* 5 on an axis of 6: fine */
	WORKS(&o);
	o.window[0].dilation = 4; /* 9 on an axis of 8 */
	FAILS(&o, -PM_EWINDOWBIG);
	o.window[0].pad_before = 1;
	WORKS(&o);
	/* Sizes whose span overflows. */
	valid(&o);
	o.window[0].size = SIZE_MAX;
	FAILS(&o, -PM_EWINDOWBIG);
	valid(&o);
	o.window[0].size = 2;
	o.window[0].dilation = SIZE_MAX;
	FAILS(&o, -PM_EWINDOWBIG);
	valid(&o);
	o.window[0].size = (SIZE_MAX >> 1) + 2;
	o.window[0].dilation = 2;
	FAILS(&o, -PM_EWINDOWBIG);
	/* Huge padding does not make a huge window fit. */
	valid(&o);
	o.window[0].size = (size_t)PM_MAX_PAD * 2 + 10;
	o.window[0].pad_before = PM_MAX_PAD;
	o.window[0].pad_after = PM_MAX_PAD;
	FAILS(&o, -PM_EWINDOWBIG);
}

static void test_order(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.order = -1;
	FAILS(&o, -PM_EORDER);
	o.order = PM_ORDER_COUNT;
	FAILS(&o, -PM_EORDER);
}

static void test_layout(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.layout = -1;
	FAILS(&o, -PM_ELAYOUT);
	o.layout = PM_LAYOUT_COUNT;
	FAILS(&o, -PM_ELAYOUT);
}

static void test_pitch(void)
{
	struct pm_matrix_opts o;

	/* uint8, 9 columns: a row is 9 bytes. */
	valid(&o);
	o.row_pitch = 8;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 1;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 9;
	WORKS(&o);
	o.row_pitch = 10;
	WORKS(&o);
	/* float32: 36 bytes a row; pitches must be multiples of 4. */
	o.dtype = PM_DTYPE_F32;
	o.row_pitch = 32;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 38;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 37;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 40;
	WORKS(&o);
	/* Transposed layout: a row is one window element over 24 windows. */
	o.layout = PM_LAYOUT_COLS;
	o.row_pitch = 23 * 4;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 24 * 4 + 2;
	FAILS(&o, -PM_EPITCH);
	o.row_pitch = 24 * 4;
	WORKS(&o);
}

static void test_affine(void)
{
	struct pm_matrix_opts o;

	valid(&o);
	o.affine = true;
	o.scale = 2;
	FAILS(&o, -PM_EAFFINE); /* SAME of uint8 */
	o.dtype = PM_DTYPE_U8;
	FAILS(&o, -PM_EAFFINE);
	o.dtype = PM_DTYPE_F32;
	WORKS(&o);
	o.dtype = PM_DTYPE_F64;
	WORKS(&o);
	/* An int32 source, as itself. */
	{
		static int32_t d[8 * 6];
		const size_t shape[2] = { 8, 6 };

		valid(&o);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, d, PM_DTYPE_I32, 2, shape), 0);
		o.affine = true;
		FAILS(&o, -PM_EAFFINE);
		o.dtype = PM_DTYPE_I32;
		FAILS(&o, -PM_EAFFINE);
	}
	/* float16, bool and int64 as themselves: no float arithmetic of theirs
	 * is implemented (numpy's float16 one is not IEEE single's); as f32 or
	 * f64, fine. */
	{
		static uint64_t d[8 * 6];
		const size_t shape[2] = { 8, 6 };
		static const int types[] = { PM_DTYPE_F16, PM_DTYPE_BOOL, PM_DTYPE_I64, PM_DTYPE_U64 };

		for (int i = 0; i < 4; i++) {
			valid(&o);
			CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, d, types[i], 2, shape), 0);
			o.affine = true;
			o.scale = 0.5;
			FAILS(&o, -PM_EAFFINE);
			o.dtype = types[i];
			FAILS(&o, -PM_EAFFINE);
			o.dtype = PM_DTYPE_F32;
			WORKS(&o);
			o.dtype = PM_DTYPE_F64;
			WORKS(&o);
		}
	}
}

/* Sizes that overflow size_t somewhere on the way to the matrix. Sources
 * with stride 0 make huge logical arrays out of one element. */
static void test_overflow(void)
{
	struct pm_matrix_opts o;

	/* The source's own byte span: (2^62 - 1) * 8. */
	valid(&o);
	o.source.shape[0] = (size_t)1 << 62;
	o.source.strides[0] = 8;
	FAILS(&o, -PM_ETOOBIG);
	valid(&o);
	o.source.shape[1] = SIZE_MAX;
	o.source.strides[1] = -1;
	FAILS(&o, -PM_ETOOBIG);
	/* Windows: 2^40 x 2^40 positions. */
	valid(&o);
	o.source.shape[0] = o.source.shape[1] = (size_t)1 << 40;
	o.source.strides[0] = o.source.strides[1] = 0;
	o.window[0].size = o.window[1].size = 1;
	FAILS(&o, -PM_ETOOBIG);
	/* Window elements: 2^40 x 2^40 per window. */
	o.window[0].size = o.window[1].size = (size_t)1 << 40;
	FAILS(&o, -PM_ETOOBIG);
	/* Window elements (2^44) times channels (2^20). */
	{
		const size_t shape[3] = { (size_t)1 << 22, (size_t)1 << 22, 1 << 20 };

		valid(&o);
		CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, image, PM_DTYPE_U8, 3, shape), -PM_ETOOBIG);
		o.source.ndim = 3;
		for (int i = 0; i < 3; i++) {
			o.source.shape[i] = shape[i];
			o.source.strides[i] = 0;
		}
		o.source.has_channels = true;
		o.source.channel_axis = 2;
		o.window[0].size = o.window[1].size = (size_t)1 << 22;
		FAILS(&o, -PM_ETOOBIG);
	}
	/* Bytes: rows times pitch, and cols times element size. */
	valid(&o);
	o.row_pitch = (size_t)1 << 62;
	FAILS(&o, -PM_ETOOBIG);
	/* One window of 2^62 float64 elements: a row of 2^65 bytes. */
	valid(&o);
	o.source.shape[0] = o.source.shape[1] = (size_t)1 << 31;
	o.source.strides[0] = o.source.strides[1] = 0;
	o.window[0].size = o.window[1].size = (size_t)1 << 31;
	o.dtype = PM_DTYPE_F64;
	FAILS(&o, -PM_ETOOBIG);
}

/* A matrix beyond the 64 TiB that can be reserved: refused at once, with
 * nothing reserved. Exactly 64 TiB describes fine (not opened). */
static void test_too_big(void)
{
	const size_t limit = (size_t)64 << 40;
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 };

	valid(&o);
	o.source.ndim = 1;
	o.source.shape[0] = limit;
	o.source.strides[0] = 0;
	o.window[0] = (struct pm_window){ .size = 1, .step = 1, .dilation = 1 };
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &info), 0);
	CU_ASSERT_EQUAL(info.bytes, limit);
	o.source.shape[0] = limit + 1;
	for (int b = PM_BACKEND_AUTO; b < PM_BACKEND_COUNT; b++) {
		o.lazy.backend = b;
		FAILS(&o, -PM_ETOOBIG);
	}
	/* 2^24 x 2^24 windows of 4 bytes: 1 PiB, no overflow. */
	valid(&o);
	o.source.shape[0] = o.source.shape[1] = (size_t)1 << 24;
	o.source.strides[0] = o.source.strides[1] = 0;
	o.window[0].size = o.window[1].size = 1;
	o.dtype = PM_DTYPE_F32;
	o.lazy.backend = PM_BACKEND_UFFD;
	FAILS(&o, -PM_ETOOBIG);
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	FAILS(&o, -PM_ETOOBIG);
}

static void test_lazy_opts(void)
{
	static const int bad_backends[] = { -1, PM_BACKEND_COUNT, 99, INT_MIN };
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const size_t bad_chunks[] = { 1, page / 2, page + 1, 3 * page, page * 3 / 2, SIZE_MAX,
				      (size_t)1 << 63 };
	struct pm_matrix_opts o;

	for (size_t i = 0; i < sizeof(bad_backends) / sizeof(bad_backends[0]); i++) {
		valid(&o);
		o.lazy.backend = bad_backends[i];
		FAILS(&o, -PM_EBACKEND);
	}
	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
		valid(&o);
		o.lazy.backend = PM_BACKEND_SIGSEGV;
		o.lazy.chunk = bad_chunks[i];
		FAILS(&o, -PM_ECHUNK);
	}
	valid(&o);
	o.lazy.threads = -1;
	FAILS(&o, -PM_ETHREADS);
	o.lazy.threads = INT_MIN;
	FAILS(&o, -PM_ETHREADS);
	/* more than the grammar's 1024: refused, not tried until EAGAIN */
	o.lazy.threads = 1025;
	FAILS(&o, -PM_ETHREADS);
	o.lazy.threads = 100000;
	FAILS(&o, -PM_ETHREADS);
	/* The smallest valid chunk. */
	valid(&o);
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	o.lazy.chunk = page;
	WORKS(&o);
}

/* PATCHMAP_BACKEND steers "auto" only; a name it does not know (or "none",
 * or "auto") is an error at open. */
static void test_backend_env(void)
{
	static const char *const bad[] = { "bogus", "none", "auto", "eager2" };
	const char *saved = getenv("PATCHMAP_BACKEND");
	char *keep = saved ? strdup(saved) : NULL;
	struct pm_matrix_opts o;
	struct pm_stats st = { 0 };
	pm_matrix *m = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL_FATAL(setenv("PATCHMAP_BACKEND", bad[i], 1), 0);
		valid(&o);
		o.lazy.backend = PM_BACKEND_AUTO;
		OPEN_FAILS(&o, -PM_EBACKEND);
		o.lazy.backend = PM_BACKEND_EAGER; /* named backends ignore it */
		WORKS(&o);
	}
	CU_ASSERT_EQUAL_FATAL(setenv("PATCHMAP_BACKEND", "eager", 1), 0);
	valid(&o);
	o.lazy.backend = PM_BACKEND_AUTO;
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	CU_ASSERT_EQUAL(pm_matrix_stats(m, &st), 0);
	CU_ASSERT_EQUAL(st.backend, PM_BACKEND_EAGER);
	pm_matrix_close(m);
	if (keep) {
		setenv("PATCHMAP_BACKEND", keep, 1);
		free(keep);
	} else {
		unsetenv("PATCHMAP_BACKEND");
	}
}

static void test_read_range(void)
{
	struct pm_matrix_opts o;
	pm_matrix *m;
	unsigned char buf[64];
	size_t bytes;

	valid(&o);
	for (int b = PM_BACKEND_AUTO; b < PM_BACKEND_COUNT; b++) {
		o.lazy.backend = b;
		CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
		bytes = pm_matrix_bytes(m);
		CU_ASSERT_EQUAL(bytes, 6 * 4 * 9);
		CU_ASSERT_EQUAL(pm_matrix_read(m, bytes, buf, 0), 0);
		CU_ASSERT_EQUAL(pm_matrix_read(m, bytes - 1, buf, 1), 0);
		CU_ASSERT_EQUAL(pm_matrix_read(m, bytes, buf, 1), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_read(m, bytes + 1, buf, 0), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_read(m, bytes - 8, buf, 9), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_read(m, SIZE_MAX, buf, 2), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_read(m, 1, buf, SIZE_MAX), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_read(m, SIZE_MAX, buf, SIZE_MAX), -PM_ERANGE);
		CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
	}
	check_text(-PM_ERANGE);
}

/* ------------------------------------------------------------ regions */

static int fill_index(void *ctx, size_t off, void *dst, size_t len)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++)
		((unsigned char *)dst)[i] = (unsigned char)(off + i);
	return 0;
}

static void region_fails(const struct pm_region_opts *o, int code, int line)
{
	static char sentinel;
	pm_region *r = (pm_region *)&sentinel;
	int ret = pm_region_open(o, &r);

	if (ret != code)
		fprintf(stderr, "\n  line %d: pm_region_open returned %d (%s), want %d\n", line, ret,
			pm_strerror(ret), code);
	CU_ASSERT_EQUAL(ret, code);
	CU_ASSERT_PTR_NULL(r);
	if (ret == 0)
		pm_region_close(r);
	check_text(code);
}
#define REGION_FAILS(o, code) region_fails(o, code, __LINE__)

static void test_region(void)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = 4096, .fill = fill_index };
	pm_region *r = (pm_region *)&o;

	o.lazy.backend = PM_BACKEND_EAGER;
	CU_ASSERT_EQUAL(pm_region_open(NULL, &r), -PM_ENULL);
	CU_ASSERT_PTR_NULL(r);
	CU_ASSERT_EQUAL(pm_region_open(&o, NULL), -PM_ENULL);
	o.fill = NULL;
	REGION_FAILS(&o, -PM_ENULL);
	o.fill = fill_index;
	o.size = 3;
	REGION_FAILS(&o, -PM_EOPTSIZE);
	o.size = 0;
	o.length = 0;
	REGION_FAILS(&o, -PM_ELENGTH);
	o.length = ((size_t)64 << 40) + 1;
	REGION_FAILS(&o, -PM_ETOOBIG);
	o.length = SIZE_MAX;
	REGION_FAILS(&o, -PM_ETOOBIG);
	o.length = 4096;
	o.lazy.backend = PM_BACKEND_NONE; /* a region is its mapping */
	REGION_FAILS(&o, -PM_EBACKEND);
	o.lazy.backend = -1;
	REGION_FAILS(&o, -PM_EBACKEND);
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	o.lazy.chunk = 1000;
	REGION_FAILS(&o, -PM_ECHUNK);
	o.lazy.chunk = 0;
	o.lazy.threads = -2;
	REGION_FAILS(&o, -PM_ETHREADS);
	o.lazy.threads = 0;
	o.lazy.chunk = 4096;
	o.lazy.budget = 2 * 4096 - 1;
	REGION_FAILS(&o, -PM_EBUDGET);
	o.lazy.chunk = 0;
	o.lazy.budget = 0;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&o, &r), 0);
	CU_ASSERT_EQUAL(((const unsigned char *)pm_region_data(r))[300], 300 & 0xff);
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
}

/* One policy for "at least two chunks": an explicit budget below two chunks
 * is refused, by describe and open alike, on every lazy backend; two chunks (or
 * anything that rounds down to two) work; the default budget with a chunk
 * above half of it is kept as two chunks. */
static void test_budget(void)
{
	static const int backends[] = { PM_BACKEND_SIGSEGV, PM_BACKEND_UFFD };
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct pm_matrix_opts o;

	for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		valid(&o);
		o.lazy.backend = backends[b];
		o.lazy.chunk = page;
		o.lazy.budget = 1;
		FAILS(&o, -PM_EBUDGET);
		o.lazy.budget = page;
		FAILS(&o, -PM_EBUDGET);
		o.lazy.budget = 2 * page - 1;
		FAILS(&o, -PM_EBUDGET);
		/* The default chunk, 4 MiB: a budget of 7 MiB is below two. */
		o.lazy.chunk = 0;
		o.lazy.budget = 2 * PM_DEFAULT_CHUNK - 1;
		FAILS(&o, -PM_EBUDGET);
		if (backends[b] == PM_BACKEND_UFFD)
			continue; /* may lack privilege here: region tests cover it */
		o.lazy.chunk = page;
		o.lazy.budget = 2 * page;
		WORKS(&o);
		o.lazy.budget = 3 * page - 1;
		WORKS(&o);
	}
	/* "auto": refused at open, where it becomes a lazy backend. */
	valid(&o);
	o.lazy.backend = PM_BACKEND_AUTO;
	o.lazy.chunk = page;
	o.lazy.budget = page;
	OPEN_FAILS(&o, -PM_EBUDGET);
	/* Eager and "none" keep no chunks: any budget is theirs to ignore. */
	valid(&o);
	o.lazy.chunk = page;
	o.lazy.budget = 1;
	WORKS(&o);
	o.lazy.backend = PM_BACKEND_NONE;
	WORKS(&o);
	check_text(-PM_EBUDGET);
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_strerror(-PM_EBUDGET), "raise the budget or lower the chunk"));

	/* The default budget (256 MiB) with 512 MiB chunks: two chunks, which
	 * must fit in the memory available (a small container has less). */
	struct pm_region_opts ro = { .size = sizeof(ro), .length = 4096, .fill = fill_index };
	struct pm_stats st = { .size = sizeof(st) };
	struct pm_memory mem = { .size = sizeof(mem) };
	pm_region *r = NULL;

	CU_ASSERT_EQUAL_FATAL(pm_memory_available(&mem), 0);
	if (mem.available < (uint64_t)2 << 30) {
		printf("\n  two 512 MiB chunks of the default budget not opened: %" PRIu64
		       " MiB available, 2048 wanted\n",
		       mem.available >> 20);
		return;
	}
	ro.lazy.backend = PM_BACKEND_SIGSEGV;
	ro.lazy.chunk = (size_t)512 << 20;
	ro.length = 3 * ro.lazy.chunk;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&ro, &r), 0);
	CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
	CU_ASSERT_EQUAL(st.budget_bytes, 2 * ro.lazy.chunk);
	CU_ASSERT_EQUAL(st.chunk_bytes, ro.lazy.chunk);
	pm_region_close(r);
}

/* The output structs' size rule (patchmap.h): 0 or sizeof writes the whole
 * struct; an older, smaller size gets exactly that many bytes and not one
 * more; a size below the size field, or above the struct, is refused and
 * nothing is written. */
static void test_out_sizes(void)
{
	struct pm_matrix_opts o;
	pm_matrix *m = NULL;
	struct {
		struct pm_matrix_info info;
		unsigned char guard[64];
	} ib;
	struct {
		struct pm_stats st;
		unsigned char guard[64];
	} sb;
	struct pm_matrix_info full = { 0 };
	struct pm_stats sfull = { 0 };
	const size_t small_info = offsetof(struct pm_matrix_info, ld); /* size, rows, cols */
	const size_t small_stats = offsetof(struct pm_stats, chunk_bytes);
	unsigned char zero[sizeof(ib)];

	memset(zero, 0xa5, sizeof(zero));
	valid(&o);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_info(m, &full), 0);
	CU_ASSERT_EQUAL(full.size, 0); /* left as the caller set it */
	CU_ASSERT_EQUAL(full.rows, 24);
	CU_ASSERT_EQUAL(full.cols, 9);
	CU_ASSERT_EQUAL(full.channels, 1);
	sfull.size = sizeof(sfull);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_stats(m, &sfull), 0);
	CU_ASSERT_EQUAL(sfull.size, sizeof(sfull));
	CU_ASSERT_EQUAL(sfull.backend, PM_BACKEND_EAGER);

	/* An older, smaller pm_matrix_info: rows and cols, nothing past them. */
	memset(&ib, 0xa5, sizeof(ib));
	ib.info.size = small_info;
	CU_ASSERT_EQUAL(pm_matrix_info(m, &ib.info), 0);
	CU_ASSERT_EQUAL(ib.info.size, small_info);
	CU_ASSERT_EQUAL(ib.info.rows, full.rows);
	CU_ASSERT_EQUAL(ib.info.cols, full.cols);
	CU_ASSERT(memcmp((char *)&ib + small_info, zero, sizeof(ib) - small_info) == 0);
	memset(&ib, 0xa5, sizeof(ib));
	ib.info.size = small_info;
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &ib.info), 0);
	CU_ASSERT_EQUAL(ib.info.rows, full.rows);
	CU_ASSERT(memcmp((char *)&ib + small_info, zero, sizeof(ib) - small_info) == 0);

	/* pm_stats as far as the mechanism. */
	memset(&sb, 0xa5, sizeof(sb));
	sb.st.size = small_stats;
	CU_ASSERT_EQUAL(pm_matrix_stats(m, &sb.st), 0);
	CU_ASSERT_EQUAL(sb.st.backend, PM_BACKEND_EAGER);
	CU_ASSERT_EQUAL(sb.st.mechanism, sfull.mechanism);
	CU_ASSERT_EQUAL(sb.st.threads, sfull.threads);
	CU_ASSERT(memcmp((char *)&sb + small_stats, zero, sizeof(sb) - small_stats) == 0);

	/* The exact size writes everything, and only that. */
	memset(&sb, 0xa5, sizeof(sb));
	sb.st.size = sizeof(sb.st);
	CU_ASSERT_EQUAL(pm_matrix_stats(m, &sb.st), 0);
	CU_ASSERT_EQUAL(sb.st.chunks_filled, sfull.chunks_filled);
	CU_ASSERT(memcmp(sb.guard, zero, sizeof(sb.guard)) == 0);

	/* Refused sizes write nothing. */
	static const size_t bad[] = { 1, sizeof(size_t) - 1, sizeof(struct pm_stats) + 1, SIZE_MAX };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&sb, 0xa5, sizeof(sb));
		sb.st.size = bad[i];
		CU_ASSERT_EQUAL(pm_matrix_stats(m, &sb.st), -PM_EOPTSIZE);
		CU_ASSERT(memcmp((char *)&sb + sizeof(size_t), zero, sizeof(sb) - sizeof(size_t)) == 0);
		memset(&ib, 0xa5, sizeof(ib));
		ib.info.size = bad[i] == sizeof(struct pm_stats) + 1 ? sizeof(struct pm_matrix_info) + 1 : bad[i];
		CU_ASSERT_EQUAL(pm_matrix_info(m, &ib.info), -PM_EOPTSIZE);
		CU_ASSERT_EQUAL(pm_matrix_describe(&o, &ib.info), -PM_EOPTSIZE);
		CU_ASSERT(memcmp((char *)&ib + sizeof(size_t), zero, sizeof(ib) - sizeof(size_t)) == 0);
	}
	pm_matrix_close(m);

	/* A matrix without a mapping answers the same way. */
	valid(&o);
	o.lazy.backend = PM_BACKEND_NONE;
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	memset(&sb, 0xa5, sizeof(sb));
	sb.st.size = small_stats;
	CU_ASSERT_EQUAL(pm_matrix_stats(m, &sb.st), 0);
	CU_ASSERT_EQUAL(sb.st.backend, PM_BACKEND_NONE);
	CU_ASSERT(memcmp((char *)&sb + small_stats, zero, sizeof(sb) - small_stats) == 0);
	sb.st.size = SIZE_MAX;
	CU_ASSERT_EQUAL(pm_matrix_stats(m, &sb.st), -PM_EOPTSIZE);
	pm_matrix_close(m);
}

/* Describe takes a NULL source pointer (shapes before the data exist), and
 * otherwise answers as open does; open refuses NULL. */
static void test_describe_null_data(void)
{
	struct pm_matrix_opts o;
	struct pm_matrix_info info = { 0 }, want = { 0 };

	valid(&o);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_describe(&o, &want), 0);
	o.source.data = NULL;
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &info), 0);
	CU_ASSERT(memcmp(&info, &want, sizeof(info)) == 0);
	OPEN_FAILS(&o, -PM_ENULL);
	/* The other checks are the same with or without data. */
	o.window[0].size = 0;
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &info), -PM_EWINDOW);
	valid(&o);
	o.window[0].size = 0;
	FAILS(&o, -PM_EWINDOW);
	o.window[0].size = 3;
	o.lazy.backend = PM_BACKEND_SIGSEGV;
	o.lazy.chunk = 4096;
	o.lazy.budget = 4096;
	FAILS(&o, -PM_EBUDGET);
	o.source.data = NULL;
	CU_ASSERT_EQUAL(pm_matrix_describe(&o, &info), -PM_EBUDGET);
}

/* The filler threads by the header's rule for a budget of `slots` chunks. */
static int fillers_for(size_t slots)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus < 2 ? 1 : cpus < 4 ? (slots >= 32 ? 2 : 1) : cpus / 2 > 8 ? 8 : (int)(cpus / 2);
}

/* The defaults a front end reports instead of mirroring them. The region's
 * fillers follow its budget, lowered where memory is short (a small
 * container): computed from the memory it saw at open. */
static void test_defaults(void)
{
	struct pm_region_opts ro = { .size = sizeof(ro), .length = 3 * 4096, .fill = fill_index };
	struct pm_stats st = { 0 };
	pm_region *r = NULL;
	size_t budget;

	CU_ASSERT_EQUAL(pm_default_threads(), fillers_for(PM_DEFAULT_BUDGET / PM_DEFAULT_CHUNK));
	CU_ASSERT(PM_DEFAULT_CHUNK >= (size_t)sysconf(_SC_PAGESIZE));
	CU_ASSERT_EQUAL(PM_DEFAULT_CHUNK & (PM_DEFAULT_CHUNK - 1), 0);
	ro.lazy.backend = PM_BACKEND_SIGSEGV;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&ro, &r), 0);
	CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
	CU_ASSERT_EQUAL(st.chunk_bytes, PM_DEFAULT_CHUNK);
	budget = st.memory_available / PM_DEFAULT_BUDGET_SHARE < PM_DEFAULT_BUDGET
			 ? (size_t)(st.memory_available / PM_DEFAULT_BUDGET_SHARE)
			 : PM_DEFAULT_BUDGET;
	CU_ASSERT_EQUAL(st.threads, fillers_for(budget / PM_DEFAULT_CHUNK));
	CU_ASSERT_EQUAL(st.budget_bytes, PM_DEFAULT_CHUNK); /* no more slots than chunks */
	pm_region_close(r);
	ro.lazy.threads = 3;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&ro, &r), 0);
	CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
	CU_ASSERT_EQUAL(st.threads, 3);
	pm_region_close(r);
	ro.lazy.backend = PM_BACKEND_EAGER;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&ro, &r), 0);
	CU_ASSERT_EQUAL(pm_region_stats(r, &st), 0);
	CU_ASSERT_EQUAL(st.threads, 0);
	pm_region_close(r);
}

static void test_close_null(void)
{
	CU_ASSERT_EQUAL(pm_matrix_close(NULL), 0);
	CU_ASSERT_EQUAL(pm_region_close(NULL), 0);
}

/* ------------------------------------------------------------ names */

static void test_strerror(void)
{
	static const int sys[] = { ENOMEM, EPERM, ENOSYS, EINVAL, EFAULT, EIO, EBUSY, EAGAIN, EOVERFLOW };
	const int nsys = (int)(sizeof(sys) / sizeof(sys[0]));
	const char *seen[PM_ELAST - PM_EFIRST + 16];
	int n = 0;

	for (int c = PM_EFIRST; c < PM_ELAST; c++) {
		check_text(-c);
		CU_ASSERT_PTR_EQUAL(pm_strerror(c), pm_strerror(-c));
		seen[n++] = pm_strerror(-c);
	}
	for (int i = 0; i < nsys; i++) {
		check_text(-sys[i]);
		CU_ASSERT_STRING_EQUAL(pm_strerror(sys[i]), pm_strerror(-sys[i]));
		seen[n++] = pm_strerror(-sys[i]);
	}
	/* Every text names its own error. */
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (!strcmp(seen[i], seen[j])) {
				fprintf(stderr, "\n  two codes share the text \"%s\"\n", seen[i]);
				CU_FAIL("codes share a text");
			}
	CU_ASSERT_PTR_NOT_NULL_FATAL(pm_strerror(0));
	CU_ASSERT_STRING_EQUAL(pm_strerror(0), "success");
	/* Codes the library never returns: some text, never NULL. */
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(PM_ELAST));
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(-PM_ELAST));
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(-PM_EFIRST + 1));
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(-5000));
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(INT_MAX));
	CU_ASSERT_PTR_NOT_NULL(pm_strerror(-INT_MAX));
}

static void test_error_errno(void)
{
	for (int c = PM_EFIRST; c < PM_ELAST; c++) {
		int want = c == PM_ETOOBIG ? EOVERFLOW : c == PM_EMEMORY ? ENOMEM : EINVAL;

		CU_ASSERT_EQUAL(pm_error_errno(-c), want);
		CU_ASSERT_EQUAL(pm_error_errno(c), want);
	}
	CU_ASSERT_EQUAL(pm_error_errno(-ENOMEM), ENOMEM);
	CU_ASSERT_EQUAL(pm_error_errno(ENOMEM), ENOMEM);
	CU_ASSERT_EQUAL(pm_error_errno(-EPERM), EPERM);
	CU_ASSERT_EQUAL(pm_error_errno(-EFAULT), EFAULT);
	CU_ASSERT_EQUAL(pm_error_errno(-ENOSYS), ENOSYS);
	/* codes nobody returns: EINVAL, not a number that is no errno */
	CU_ASSERT_EQUAL(pm_error_errno(-PM_ELAST), EINVAL);
	CU_ASSERT_EQUAL(pm_error_errno(-99999), EINVAL);
	CU_ASSERT_EQUAL(pm_error_errno(INT_MAX), EINVAL);
	CU_ASSERT_EQUAL(pm_error_errno(INT_MIN), EINVAL);
}

static void test_dtypes(void)
{
	static const struct {
		int dtype;
		size_t size;
		const char *name;
	} want[] = {
		{ PM_DTYPE_U8, 1, "uint8" },     { PM_DTYPE_I8, 1, "int8" },
		{ PM_DTYPE_U16, 2, "uint16" },   { PM_DTYPE_I16, 2, "int16" },
		{ PM_DTYPE_U32, 4, "uint32" },   { PM_DTYPE_I32, 4, "int32" },
		{ PM_DTYPE_F32, 4, "float32" },  { PM_DTYPE_F64, 8, "float64" },
		{ PM_DTYPE_I64, 8, "int64" },    { PM_DTYPE_U64, 8, "uint64" },
		{ PM_DTYPE_BOOL, 1, "bool" },    { PM_DTYPE_F16, 2, "float16" },
	};
	static const int bad[] = { PM_DTYPE_SAME, -1, PM_DTYPE_COUNT, 1000, INT_MIN };

	/* The values are ABI: appended, never renumbered. */
	CU_ASSERT_EQUAL(PM_DTYPE_F64, 8);
	CU_ASSERT_EQUAL(PM_DTYPE_I64, 9);
	CU_ASSERT_EQUAL(PM_DTYPE_U64, 10);
	CU_ASSERT_EQUAL(PM_DTYPE_BOOL, 11);
	CU_ASSERT_EQUAL(PM_DTYPE_F16, 12);
	CU_ASSERT_EQUAL(PM_DTYPE_COUNT, 13);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CU_ASSERT_EQUAL(pm_dtype_size(want[i].dtype), want[i].size);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pm_dtype_name(want[i].dtype));
		CU_ASSERT_STRING_EQUAL(pm_dtype_name(want[i].dtype), want[i].name);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(pm_dtype_size(bad[i]), 0);
		CU_ASSERT_PTR_NULL(pm_dtype_name(bad[i]));
	}
}

static void test_backends(void)
{
	static const char *const names[PM_BACKEND_COUNT] = {
		[PM_BACKEND_AUTO] = "auto", [PM_BACKEND_UFFD] = "uffd", [PM_BACKEND_SIGSEGV] = "sigsegv",
		[PM_BACKEND_EAGER] = "eager", [PM_BACKEND_NONE] = "none",
	};
	static const char *const bad[] = { "", "bogus", "uffd ", " eager", "sigsegv2", "autox" };

	for (int b = 0; b < PM_BACKEND_COUNT; b++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(pm_backend_name(b));
		CU_ASSERT_STRING_EQUAL(pm_backend_name(b), names[b]);
		CU_ASSERT_EQUAL(pm_backend_parse(names[b]), b);
	}
	CU_ASSERT_PTR_NULL(pm_backend_name(-1));
	CU_ASSERT_PTR_NULL(pm_backend_name(PM_BACKEND_COUNT));
	CU_ASSERT_PTR_NULL(pm_backend_name(INT_MIN));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(pm_backend_parse(bad[i]), -PM_EBACKEND);
	CU_ASSERT_EQUAL(pm_backend_parse(NULL), -PM_EBACKEND);
}

static void test_version(void)
{
	char want[64];

	snprintf(want, sizeof(want), "%d.%d.%d", PM_VERSION_MAJOR, PM_VERSION_MINOR, PM_VERSION_PATCH);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pm_version());
	CU_ASSERT_STRING_EQUAL(pm_version(), want);
	/* The header's numbers are the project's (meson.build). */
	CU_ASSERT_STRING_EQUAL(pm_version(), PROJECT_VERSION);
}

static void test_source_contiguous(void)
{
	struct pm_source s;
	const size_t shape3[3] = { 2, 3, 4 }, shape1[1] = { 7 };
	size_t shape8[8] = { 2, 2, 2, 2, 2, 2, 2, 3 };
	const size_t huge[2] = { SIZE_MAX / 2, 3 };
	static double d[64];

	memset(&s, 0xff, sizeof(s));
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&s, d, PM_DTYPE_U16, 3, shape3), 0);
	CU_ASSERT_PTR_EQUAL(s.data, d);
	CU_ASSERT_EQUAL(s.dtype, PM_DTYPE_U16);
	CU_ASSERT_EQUAL(s.ndim, 3);
	CU_ASSERT_FALSE(s.has_channels);
	CU_ASSERT(s.shape[0] == 2 && s.shape[1] == 3 && s.shape[2] == 4);
	CU_ASSERT(s.strides[0] == 24 && s.strides[1] == 8 && s.strides[2] == 2);

	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&s, d, PM_DTYPE_F64, 1, shape1), 0);
	CU_ASSERT(s.ndim == 1 && s.shape[0] == 7 && s.strides[0] == 8);

	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&s, d, PM_DTYPE_I8, 8, shape8), 0);
	for (int i = 7, st = 1; i >= 0; st *= (int)shape8[i], i--)
		CU_ASSERT_EQUAL(s.strides[i], st);

	CU_ASSERT_EQUAL(pm_source_contiguous(NULL, d, PM_DTYPE_U8, 1, shape1), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_U8, 1, NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_SAME, 1, shape1), -PM_EDTYPE);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_COUNT, 1, shape1), -PM_EDTYPE);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_U8, 0, shape1), -PM_ENDIM);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_U8, 9, shape8), -PM_ENDIM);
	CU_ASSERT_EQUAL(pm_source_contiguous(&s, d, PM_DTYPE_F64, 2, huge), -PM_ETOOBIG);
}

int main(void)
{
	static const struct t_test tests[] = {
		{ "NULL pointers", test_null },
		{ "opts->size", test_opt_size },
		{ "unknown source dtype", test_dtype },
		{ "bad output dtype", test_out_dtype },
		{ "ndim 0 and 9", test_ndim },
		{ "bad channel axis", test_channel_axis },
		{ "channel axis leaves no spatial axis", test_channel_only },
		{ "zero extent", test_zero_extent },
		{ "zero window", test_zero_window },
		{ "zero step", test_zero_step },
		{ "zero dilation", test_zero_dilation },
		{ "negative and absurd padding", test_padding },
		{ "unknown pad mode", test_pad_mode },
		{ "unrepresentable pad value", test_pad_value },
		{ "window larger than the padded axis", test_window_big },
		{ "unknown order", test_order },
		{ "unknown layout", test_layout },
		{ "bad pitch", test_pitch },
		{ "affine with integer output", test_affine },
		{ "sizes that overflow", test_overflow },
		{ "beyond the 64 TiB reservation", test_too_big },
		{ "bad lazy options", test_lazy_opts },
		{ "PATCHMAP_BACKEND", test_backend_env },
		{ "pm_matrix_read past the end", test_read_range },
		{ "region errors", test_region },
		{ "budget below two chunks", test_budget },
		{ "output struct sizes", test_out_sizes },
		{ "describe with NULL data", test_describe_null_data },
		{ "public defaults", test_defaults },
		{ "close(NULL)", test_close_null },
		{ "pm_strerror", test_strerror },
		{ "pm_error_errno", test_error_errno },
		{ "pm_dtype_size/name", test_dtypes },
		{ "pm_backend_name/parse", test_backends },
		{ "pm_version", test_version },
		{ "pm_source_contiguous", test_source_contiguous },
	};

	return t_run("errors", tests, T_COUNT(tests), NULL);
}
