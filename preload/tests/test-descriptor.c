/* test-descriptor.c: the descriptor parser, the descriptor-to-matrix rules
 * and the virtual file, in-process (no preloading, so that the sanitizers
 * see them): every key, the syntax, one case per error with its line and
 * words, and the virtual file's bytes against the reference im2col. */
#include <sys/mman.h>

#include "descriptor.h"
#include "ptest.h"
#include "vfile.h"

static int parse(const char *text, struct desc *d, char *err, int *line)
{
	return desc_parse(text, strlen(text), d, err, line);
}

/* A source of this shape and dtype over one byte: only its shape is read. */
static struct pm_source fake_of(int dtype, int ndim, const size_t *shape)
{
	static const double sample;
	struct pm_source s;

	CU_ASSERT_EQUAL(pm_source_contiguous(&s, &sample, dtype, ndim, shape), 0);
	memset(s.strides, 0, sizeof(s.strides));
	return s;
}

static void test_every_key(void)
{
	static const char text[] =
		"# a descriptor with every key\n"
		"source = data/img.raw\n"
		"shape = 4x5x3\n"
		"raw_dtype = >u2\n"
		"raw_offset = 16\n"
		"channel_axis = first\n"
		"window = 3x2\n"
		"step = 2, 1\n"
		"dilation = 1x2\n"
		"pad = 1, 2x3\n"
		"pad_mode = constant\n"
		"pad_value = -2.5\n"
		"dtype = float64\n"
		"scale = 0.5\n"
		"offset = 1e-3\n"
		"order = channel\n"
		"layout = cols\n"
		"row_pitch = 1K\n"
		"budget = 64MiB\n"
		"chunk = 2M\n"
		"backend = sigsegv\n"
		"threads = 3\n"
		"readahead = 5\n"
		"writable = yes\n"
		"format = npy\n"
		"row_range = 1:3\n"
		"rows = sel/idx.npy\n"
		"mask = sel/mask.pgm\n"
		"sample = 0.5\n"
		"seed = 18446744073709551615\n";
	static const char *const order[] = {
		"source", "shape", "raw_dtype", "raw_offset", "channel_axis", "window", "step",
		"dilation", "pad", "pad_mode", "pad_value", "dtype", "scale", "offset", "order",
		"layout", "row_pitch", "budget", "chunk", "backend", "threads", "readahead",
		"writable", "format", "row_range", "rows", "mask", "sample", "seed",
	};
	static const size_t shape[] = { 4, 5, 3 };
	struct pm_source src = fake_of(PM_DTYPE_F32, 3, shape);
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	struct desc d;
	int line = -1, nkeys = 0;

	CU_ASSERT_EQUAL_FATAL(parse(text, &d, err, &line), 0);
	CU_ASSERT_EQUAL(line, 0);
	CU_ASSERT_STRING_EQUAL(d.source, "data/img.raw");
	CU_ASSERT(d.opt.raw.ndim == 3 && d.opt.raw.shape[0] == 4 && d.opt.raw.shape[1] == 5 &&
		  d.opt.raw.shape[2] == 3);
	CU_ASSERT(d.opt.raw.dtype == PM_DTYPE_U16 && d.opt.raw.big_endian);
	CU_ASSERT_EQUAL(d.opt.raw.offset, 16);
	CU_ASSERT_EQUAL(d.format, DESC_NPY);
	/* the selection keys, as given (resolved when the windows are known) */
	CU_ASSERT_STRING_EQUAL(d.opt.rows_path, "sel/idx.npy");
	CU_ASSERT_STRING_EQUAL(d.opt.mask_path, "sel/mask.pgm");
	CU_ASSERT(d.opt.sample == 0 && d.opt.sample_fraction == 0.5);
	CU_ASSERT_EQUAL(d.opt.seed, UINT64_MAX);
	CU_ASSERT(pm_spec_isset(d.opt.spec, "row_range"));
	/* the matrix keys, resolved against a float32 source of that shape */
	if (desc_matrix(&d, &src, &o, &info, err, &line))
		fprintf(stderr, "\n  %s (line %d)\n", err, line);
	CU_ASSERT_EQUAL_FATAL(desc_matrix(&d, &src, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 0);
	CU_ASSERT(o.window[0].size == 3 && o.window[1].size == 2);
	CU_ASSERT(o.window[0].step == 2 && o.window[1].step == 1);
	CU_ASSERT(o.window[0].dilation == 1 && o.window[1].dilation == 2);
	CU_ASSERT(o.window[0].pad_before == 1 && o.window[0].pad_after == 1 &&
		  o.window[1].pad_before == 2 && o.window[1].pad_after == 3);
	CU_ASSERT(o.pad_mode == PM_PAD_CONSTANT && o.pad_value == -2.5);
	CU_ASSERT_EQUAL(info.dtype, PM_DTYPE_F64);
	CU_ASSERT(o.affine && o.scale == 0.5 && o.offset == 1e-3);
	CU_ASSERT(o.order == PM_ORDER_CHANNEL && o.layout == PM_LAYOUT_COLS);
	CU_ASSERT_EQUAL(o.row_pitch, 1024);
	CU_ASSERT_EQUAL(o.lazy.budget, (size_t)64 << 20);
	CU_ASSERT_EQUAL(o.lazy.chunk, (size_t)2 << 20);
	CU_ASSERT_EQUAL(o.lazy.backend, PM_BACKEND_SIGSEGV);
	CU_ASSERT_EQUAL(o.lazy.threads, 3);
	CU_ASSERT_EQUAL(o.lazy.readahead, 5);
	CU_ASSERT_EQUAL(o.lazy.flags, PM_LAZY_WRITABLE);
	/* every key is on its line, and every key of a descriptor is above */
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		CU_ASSERT(desc_key(order[i]) >= 0);
		CU_ASSERT_EQUAL(d.line[desc_key(order[i])], (int)i + 2);
	}
	while (desc_key_name(nkeys))
		nkeys++;
	CU_ASSERT(nkeys >= (int)(sizeof(order) / sizeof(order[0])));
	/* (the image keys, which a raw file refuses: test_every_image_key) */
	for (int k = 0; k < nkeys; k++)
		CU_ASSERT(d.line[k] >= 2 || (k >= DK_RAW + FE_PAGE && k < DK_SPEC));
	CU_ASSERT_PTR_NULL(desc_key_name(-1));
	CU_ASSERT_EQUAL(desc_key("Window"), -1);
	CU_ASSERT_EQUAL(desc_key("pad-mode"), -1);
	desc_free(&d);
}

/* The keys of an image file libvips reads: read here, applied when the
 * source is opened (common/vimage.c). */
static void test_every_image_key(void)
{
	static const char text[] =
		"source = slide.svs\n"
		"page = 0\n"
		"level = 2\n"
		"bands = 2, 1,0\n"
		"image_budget = 96M\n"
		"image_chunk = 1M\n"
		"window = 16\n";
	char err[DESC_ERRLEN];
	struct desc d;
	int line = -1;

	CU_ASSERT_EQUAL_FATAL(parse(text, &d, err, &line), 0);
	CU_ASSERT(d.opt.vips.page == 0 && d.opt.vips.level == 2);
	CU_ASSERT(d.opt.vips.nbands == 3 && d.opt.vips.bands[0] == 2 && d.opt.vips.bands[1] == 1 &&
		  d.opt.vips.bands[2] == 0);
	CU_ASSERT_EQUAL(d.opt.vips.budget, (size_t)96 << 20);
	CU_ASSERT_EQUAL(d.opt.vips.chunk, (size_t)1 << 20);
	CU_ASSERT_EQUAL(d.line[desc_key("level")], 3);
	CU_ASSERT_EQUAL(d.line[desc_key("image_chunk")], 6);
	desc_free(&d);
	/* not with a raw file */
	CU_ASSERT_EQUAL(parse("source = a.raw\nshape = 4x4\nwindow = 2\nlevel = 1\n", &d, err,
			      &line), -1);
	CU_ASSERT_EQUAL(line, 4);
	CU_ASSERT_STRING_EQUAL(err, "level: only for an image file libvips reads, not a raw file");
	desc_free(&d);
}

static void test_defaults(void)
{
	static const size_t s2[] = { 20, 30 }, s3[] = { 20, 30, 3 };
	struct pm_source src2 = fake_of(PM_DTYPE_U8, 2, s2), src3 = fake_of(PM_DTYPE_U8, 3, s3);
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	struct desc d;
	int line;

	CU_ASSERT_EQUAL_FATAL(parse("source=a.npy\nwindow=3", &d, err, &line), 0);
	CU_ASSERT_STRING_EQUAL(d.source, "a.npy");
	CU_ASSERT_EQUAL(d.opt.raw.ndim, 0);
	CU_ASSERT_EQUAL(d.format, DESC_RAW);
	CU_ASSERT_EQUAL_FATAL(desc_matrix(&d, &src2, &o, &info, err, &line), 0);
	CU_ASSERT(!o.source.has_channels && info.nspatial == 2);
	CU_ASSERT(o.window[0].size == 3 && o.window[1].size == 3);
	CU_ASSERT(o.window[0].step == 1 && o.window[1].dilation == 1);
	CU_ASSERT(o.window[0].pad_before == 0 && o.window[1].pad_after == 0);
	/* float32, as in every front end */
	CU_ASSERT(o.pad_mode == PM_PAD_ZERO && info.dtype == PM_DTYPE_F32 && !o.affine);
	CU_ASSERT(o.order == PM_ORDER_WINDOW && o.layout == PM_LAYOUT_ROWS && o.row_pitch == 0);
	CU_ASSERT(o.lazy.backend == PM_BACKEND_AUTO && o.lazy.budget == 0 && o.lazy.chunk == 0);
	desc_free(&d);
	/* the other spellings */
	CU_ASSERT_EQUAL_FATAL(parse("source=a\nwindow=3\nbudget=unlimited\nreadahead=0\nwritable=false\n"
				    "channel_axis=none\npad=same\ndtype=same\n",
				    &d, err, &line),
			      0);
	CU_ASSERT_EQUAL_FATAL(desc_matrix(&d, &src3, &o, &info, err, &line), 0);
	CU_ASSERT_EQUAL(o.lazy.budget, PM_BUDGET_UNLIMITED);
	CU_ASSERT_EQUAL(o.lazy.readahead, -1);
	CU_ASSERT_EQUAL(o.lazy.flags, 0);
	CU_ASSERT(!o.source.has_channels && info.nspatial == 3);
	CU_ASSERT(o.window[0].pad_before == 1 && o.window[2].pad_after == 1);
	CU_ASSERT_EQUAL(info.dtype, PM_DTYPE_U8);
	desc_free(&d);
	CU_ASSERT_EQUAL_FATAL(parse("source=a\nwindow=3\nchannel_axis=-2\nreadahead=none\n"
				    "budget=3G\nscale=2\n",
				    &d, err, &line),
			      0);
	CU_ASSERT_EQUAL_FATAL(desc_matrix(&d, &src3, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 1);
	CU_ASSERT_EQUAL(o.lazy.readahead, -1);
	CU_ASSERT_EQUAL(o.lazy.budget, (size_t)3 << 30);
	CU_ASSERT(o.affine && o.scale == 2.0 && o.offset == 0.0);
	desc_free(&d);
}

/* The window sizes of d over a 40 x 40 source. */
static void windows(struct desc *d, size_t *w0, size_t *w1)
{
	static const size_t shape[] = { 40, 40 };
	struct pm_source src = fake_of(PM_DTYPE_U8, 2, shape);
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	int line;

	CU_ASSERT_EQUAL_FATAL(desc_matrix(d, &src, &o, &info, err, &line), 0);
	*w0 = o.window[0].size;
	*w1 = o.window[1].size;
}

static void test_syntax(void)
{
	size_t w0, w1;
	static const char text[] = "\n"
				   "   # indented comment\n"
				   "\tsource\t=  \"my dir/a #1.npy\"   # a comment after a blank\r\n"
				   "window = 3 x 4   \r\n"
				   "\r\n";
	char err[DESC_ERRLEN], more[256];
	struct desc d;
	int line;

	CU_ASSERT_EQUAL_FATAL(parse(text, &d, err, &line), 0);
	CU_ASSERT_STRING_EQUAL(d.source, "my dir/a #1.npy");
	windows(&d, &w0, &w1);
	CU_ASSERT(w0 == 3 && w1 == 4);
	CU_ASSERT_EQUAL(d.line[DK_SOURCE], 3);
	CU_ASSERT_EQUAL(d.line[desc_key("window")], 4);
	desc_free(&d);
	/* '#' right after a value is part of it: "2#..." is a bad step */
	snprintf(more, sizeof(more), "%sstep=2#not a comment\n", text);
	CU_ASSERT_EQUAL(parse(more, &d, err, &line), -1);
	CU_ASSERT_EQUAL(line, 6);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "step:"));
	CU_ASSERT_EQUAL_FATAL(parse("source = a#b.npy\nwindow = 3\n", &d, err, &line), 0);
	CU_ASSERT_STRING_EQUAL(d.source, "a#b.npy");
	desc_free(&d);
	CU_ASSERT_EQUAL_FATAL(parse("source = \"a = b\"\nwindow = 3\n", &d, err, &line), 0);
	CU_ASSERT_STRING_EQUAL(d.source, "a = b");
	desc_free(&d);
	/* a '"' inside an unquoted value is an ordinary character: it does not
	 * hide the comment after it */
	CU_ASSERT_EQUAL_FATAL(parse("source = a\"b # c\nwindow = 3 # \"\n", &d, err, &line), 0);
	CU_ASSERT_STRING_EQUAL(d.source, "a\"b");
	windows(&d, &w0, &w1);
	CU_ASSERT(w0 == 3 && w1 == 3);
	desc_free(&d);
	/* the buffer need not end with a NUL or a newline */
	CU_ASSERT_EQUAL_FATAL(desc_parse("source = x\nwindow = 7XXXX", 21, &d, err, &line), 0);
	windows(&d, &w0, &w1);
	CU_ASSERT(w0 == 7 && w1 == 7);
	desc_free(&d);
}

/* One malformed descriptor: the line the error names and a word it says. */
static const struct {
	const char *text;
	int line;
	const char *words;
} bad[] = {
	{ "source = a\nwindw = 3\n", 2, "unknown key \"windw\"" },
	{ "source = a\nwindow = 3\nsource = b\n", 3, "source given twice (first on line 1)" },
	{ "source = a\nwindow 3\n", 2, "expected \"key = value\"" },
	{ "source = a\nwindow =\n", 2, "window has no value" },
	{ "source = a\nwindow = \"\"\n", 2, "only source may be quoted" },
	{ "source = \"a\nwindow = 3\n", 1, "closing quote" },
	{ "source = a\nwindow = 0\n", 2, "window: '0' is not a window size" },
	{ "source = a\nwindow = 3x\n", 2, "window:" },
	{ "source = a\nwindow = x3\n", 2, "window:" },
	{ "source = a\nwindow = 1x1x1x1x1x1x1x1x1\n", 2, "window:" },
	{ "source = a\nwindow = 3\nstep = two\n", 3, "step:" },
	{ "source = a\nwindow = 3\ndilation = -1\n", 3, "dilation:" },
	{ "source = a\nwindow = 99999999999999999999999\n", 2, "window:" },
	{ "source = a\nwindow = 3\nshape = 4x0\n", 3, "shape:" },
	{ "source = a\nwindow = 3\nshape = 4\nraw_dtype = complex64\n", 4,
	  "raw_dtype: 'complex64' is not a sample type" },
	{ "source = a\nwindow = 3\nshape = 4\nraw_dtype = u8\n", 4, "raw_dtype: 'u8' is ambiguous" },
	{ "source = a\nwindow = 3\noutput_dtype = float32\n", 3,
	  "unknown key \"output_dtype\": the matrix's dtype is \"dtype\"" },
	{ "source = a\nwindow = 3\ndtype = >f4\n", 3, "dtype:" },
	{ "source = a\nwindow = 3\ndtype = int128\n", 3, "dtype:" },
	{ "source = a\nwindow = 3\ndtype = u8\n", 3, "dtype: 'u8' is ambiguous" },
	{ "source = a\nwindow = 3\npad-mode = edge\n", 3, "unknown key \"pad-mode\"" },
	{ "source = a\nwindow = 3\nraw_offset = 4Q\n", 3, "raw_offset: '4Q' is not a byte count" },
	{ "source = a\nwindow = 3\nrow_pitch = 99999999999T\n", 3, "row_pitch:" },
	{ "source = a\nwindow = 3\nchunk = 5000\n", 3, "chunk: '5000' is not a power of two" },
	{ "source = a\nwindow = 3\nchunk = 1K\n", 3, "chunk:" },
	{ "source = a\nwindow = 3\nbudget = 0\n", 3, "budget:" },
	{ "source = a\nwindow = 3\nchannel_axis = middle\n", 3, "channel_axis:" },
	{ "source = a\nwindow = 3\npad = 1x\n", 3, "pad:" },
	{ "source = a\nwindow = 3\npad = 1,,2\n", 3, "pad:" },
	{ "source = a\nwindow = 3\npad = -1\n", 3, "pad:" },
	{ "source = a\nwindow = 3\npad = 99999999999\n", 3, "pad:" },
	{ "source = a\nwindow = 3\npad_mode = mirror\n", 3, "pad_mode: 'mirror' is not zero, constant" },
	{ "source = a\nwindow = 3\npad_mode = constant\npad_value = one\n", 4,
	  "pad_value: 'one' is not a number" },
	{ "source = a\nwindow = 3\nscale = 1,5\n", 3, "scale: '1,5' is not a finite number" },
	{ "source = a\nwindow = 3\noffset = 1e999\n", 3, "offset:" },
	{ "source = a\nwindow = 3\norder = rows\n", 3, "order: 'rows' is not window" },
	{ "source = a\nwindow = 3\nlayout = transposed\n", 3, "layout: 'transposed' is not rows" },
	{ "source = a\nwindow = 3\nbackend = mmap\n", 3, "backend: 'mmap' is not auto" },
	{ "source = a\nwindow = 3\nthreads = 2000\n", 3, "threads:" },
	{ "source = a\nwindow = 3\nreadahead = -3\n", 3, "readahead:" },
	{ "source = a\nwindow = 3\nwritable = maybe\n", 3, "writable:" },
	{ "source = a\nwindow = 3\nformat = hdf5\n", 3, "format: expected raw or npy" },
	{ "window = 3\n", 0, "no \"source = PATH\" line" },
	{ "source = a\n", 0, "no \"window = SIZE\" line" },
	{ "# nothing\n\n", 0, "no \"source" },
	{ "source = a\nwindow = 3\nraw_dtype = u16\n", 3, "raw_dtype: only for a raw file" },
	{ "source = a\nwindow = 3\nraw_offset = 8\n", 3, "raw_offset: only for a raw file" },
};

static void test_errors(void)
{
	char err[DESC_ERRLEN];
	struct desc d;
	int line;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i].text, &d, err, &line);

		if (r != -1 || line != bad[i].line || !strstr(err, bad[i].words))
			fprintf(stderr, "\n  case %zu: r %d line %d (want %d) \"%s\" (want \"%s\")\n", i, r,
				line, bad[i].line, r ? err : "", bad[i].words);
		CU_ASSERT_EQUAL(r, -1);
		CU_ASSERT_EQUAL(line, bad[i].line);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].words));
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
	}
}

static void test_binary_and_size(void)
{
	char text[80] = "source = a\nwindow = 3\n", err[DESC_ERRLEN];
	struct desc d;
	char *big;
	int line;

	text[13] = 0; /* a NUL in line 2 */
	CU_ASSERT_EQUAL(desc_parse(text, 22, &d, err, &line), -1);
	CU_ASSERT_EQUAL(line, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL byte"));
	big = malloc(DESC_MAX_BYTES + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, '\n', DESC_MAX_BYTES + 1);
	CU_ASSERT_EQUAL(desc_parse(big, DESC_MAX_BYTES + 1, &d, err, &line), -1);
	CU_ASSERT_EQUAL(line, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a descriptor"));
	CU_ASSERT_EQUAL(desc_parse(big, DESC_MAX_BYTES, &d, err, &line), -1); /* no source */
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no \"source"));
	free(big);
	/* a long unknown key is quoted shortened */
	CU_ASSERT_EQUAL(parse("source = a\nwindow = 3\n"
			      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa = 1\n",
			      &d, err, &line),
			-1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "...\""));
}

/* ---------------------------------------------------------------- matrix */

static struct pm_source fake(int ndim, const size_t *shape)
{
	struct pm_source s;
	static const unsigned char byte;

	CU_ASSERT_EQUAL(pm_source_contiguous(&s, &byte, PM_DTYPE_U8, ndim, shape), 0);
	return s;
}

/* desc_matrix on `text` over a source of this shape: 0 or -1, with the
 * options, line and message. */
static int build(const char *text, int ndim, const size_t *shape, struct pm_matrix_opts *o,
		 struct pm_matrix_info *info, char *err, int *line)
{
	struct pm_source s = fake(ndim, shape);
	struct desc d;
	int r;

	r = parse(text, &d, err, line);
	if (r)
		fprintf(stderr, "\n  %s: %s\n", text, err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	r = desc_matrix(&d, &s, o, info, err, line);
	desc_free(&d);
	return r;
}

static void test_channels(void)
{
	static const size_t s2[] = { 20, 30 }, s3[] = { 20, 30, 3 }, s4[] = { 5, 20, 30, 3 };
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	int line;

	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3\n", 2, s2, &o, &info, err, &line), 0);
	CU_ASSERT(!o.source.has_channels && info.nspatial == 2 && info.cols == 9);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3\n", 3, s3, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 2 && info.cols == 27);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3x4\n", 3, s3, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 2 && info.cols == 36);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3x4x2\n", 3, s3, &o, &info, err, &line), 0);
	CU_ASSERT(!o.source.has_channels && info.nspatial == 3 && info.cols == 24);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3\nchannel_axis=none\n", 3, s3, &o, &info, err, &line), 0);
	CU_ASSERT(!o.source.has_channels && info.nspatial == 3 && info.cols == 27);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=2\nchannel_axis=first\n", 3, s3, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 0 && info.channels == 20);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=2\nchannel_axis=-1\n", 4, s4, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 3 && info.nspatial == 3);
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=2\n", 4, s4, &o, &info, err, &line), 0);
	CU_ASSERT(o.source.has_channels && o.source.channel_axis == 3 && info.nspatial == 3);

	CU_ASSERT_EQUAL(build("source=a\nwindow=3x3x3x3x3\n", 3, s3, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "window: '3x3x3x3x3' gives 5 sizes for the 3-D source (shape 20x30x3)"));
	CU_ASSERT_EQUAL(build("source=a\nwindow=3\nchannel_axis=3\n", 3, s3, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "channel_axis: '3': the 3-D source (shape 20x30x3) has axes 0 to 2"));
	CU_ASSERT_EQUAL(build("source=a\nwindow=3\nchannel_axis=-4\n", 3, s3, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 3);
	CU_ASSERT_EQUAL(build("source=a\nwindow=3\nchannel_axis=0\n", 1, s2, &o, &info, err, &line), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "leaves no axis to window"));
	CU_ASSERT_EQUAL(line, 3);
}

static void test_per_axis(void)
{
	static const size_t s2[] = { 20, 30 }, s3[] = { 20, 30, 3 };
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	int line;

	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=3x5\nstep=2\ndilation=1x2\npad=1,2x3\n", 2, s2, &o,
				    &info, err, &line),
			      0);
	CU_ASSERT(o.window[0].size == 3 && o.window[1].size == 5);
	CU_ASSERT(o.window[0].step == 2 && o.window[1].step == 2);
	CU_ASSERT(o.window[0].dilation == 1 && o.window[1].dilation == 2);
	CU_ASSERT(o.window[0].pad_before == 1 && o.window[0].pad_after == 1);
	CU_ASSERT(o.window[1].pad_before == 2 && o.window[1].pad_after == 3);
	/* same: (size - 1) * dilation split, the odd one after */
	CU_ASSERT_EQUAL_FATAL(build("source=a\nwindow=4x3\ndilation=1x3\npad=same\n", 2, s2, &o, &info, err,
				    &line),
			      0);
	CU_ASSERT(o.window[0].pad_before == 1 && o.window[0].pad_after == 2);
	CU_ASSERT(o.window[1].pad_before == 3 && o.window[1].pad_after == 3);
	CU_ASSERT(info.out_shape[0] == 20 && info.out_shape[1] == 30);

	CU_ASSERT_EQUAL(build("source=a\nwindow=3\nstep=1x2x3\n", 3, s3, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "step: '1x2x3' gives 3 values for 2 spatial axes"));
	CU_ASSERT_EQUAL(build("source=a\nwindow=3\npad=1,1,1\n", 2, s2, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 3);
	CU_ASSERT_EQUAL(build("source=a\nwindow=3\ndilation=2x2x2\n", 2, s2, &o, &info, err, &line), -1);
	CU_ASSERT_EQUAL(line, 3);
}

/* Errors the library finds, each on the line of the key at fault. */
static void test_library_errors(void)
{
	static const size_t s2[] = { 20, 30 };
	static const struct {
		const char *text;
		int line;
		const char *words;
	} cases[] = {
		{ "source=a\n\nwindow=21\n", 3, "window: '21' spans 21x21 samples, more than the source's "
						"20x30 (shape 20x30): give a smaller window, or pad" },
		{ "source=a\nwindow=5\ndilation=6\n", 2, "window: '5' with its dilation spans 25x25 samples" },
		{ "source=a\nwindow=3\npad_mode=edge\npad_value=1\n", 4,
		  "pad_value: '1' goes with pad_mode constant" },
		{ "source=a\nwindow=23\npad=1\n", 2, "window:" },
		{ "source=a\nwindow=3\ndtype=int16\n", 3, "dtype:" },
		{ "source=a\nwindow=3\ndtype=uint8\noffset=2\n", 4, "offset:" },
		{ "source=a\nwindow=3\nscale=3\ndtype=uint8\n", 3, "scale:" },
		{ "source=a\nwindow=3\nrow_pitch=5\n", 3, "row_pitch:" },
		{ "source=a\nwindow=3\npad_mode=constant\npad_value=300\n", 4, "pad_value:" },
	};
	struct pm_matrix_info info = { 0 };
	struct pm_matrix_opts o;
	char err[DESC_ERRLEN];
	int line;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = build(cases[i].text, 2, s2, &o, &info, err, &line);

		if (r != -1 || line != cases[i].line || !strstr(err, cases[i].words))
			fprintf(stderr, "\n  case %zu: r %d line %d (want %d) \"%s\"\n", i, r, line,
				cases[i].line, r ? err : "");
		CU_ASSERT_EQUAL(r, -1);
		CU_ASSERT_EQUAL(line, cases[i].line);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].words));
	}
}

/* ---------------------------------------------------------------- files */

#define H 23
#define W 17

static unsigned char img8[H * W];
static uint16_t img16[H * W * 3];

static void make_sources(void)
{
	unsigned char *pgm;
	size_t shape[2] = { H, W }, n;
	char hdr[64];
	int hl;

	for (size_t i = 0; i < H * W; i++)
		img8[i] = (unsigned char)(i * 37 + 11);
	for (size_t i = 0; i < H * W * 3; i++)
		img16[i] = (uint16_t)(i * 2654435761u >> 16);
	CU_ASSERT_EQUAL_FATAL(write_npy(t_path("img8.npy"), "|u1", 2, shape, img8, sizeof(img8)), 0);
	/* the same 16-bit samples as a big-endian raw file after 5 bytes, and
	 * as a 16-bit PPM (big-endian by definition) */
	n = sizeof(img16);
	pgm = malloc(64 + n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pgm);
	memcpy(pgm, "junk!", 5);
	for (size_t i = 0; i < H * W * 3; i++) {
		pgm[5 + 2 * i] = (unsigned char)(img16[i] >> 8);
		pgm[5 + 2 * i + 1] = (unsigned char)img16[i];
	}
	CU_ASSERT_EQUAL_FATAL(write_file(t_path("img16.raw"), pgm, 5 + n), 0);
	hl = snprintf(hdr, sizeof(hdr), "P6\n# a comment\n%d %d\n65535\n", W, H);
	memmove(pgm + hl, pgm + 5, n);
	memcpy(pgm, hdr, (size_t)hl);
	CU_ASSERT_EQUAL_FATAL(write_file(t_path("img16.ppm"), pgm, (size_t)hl + n), 0);
	free(pgm);
}

/* Loads t_dir/name: the vfile, or NULL with the message in msg. */
static struct vfile *load(const char *name, bool open_matrix, char *msg)
{
	int fd = open(t_path(name), O_RDONLY | O_CLOEXEC);
	struct vfile *vf;

	CU_ASSERT_FATAL(fd >= 0);
	vf = vf_load(fd, name, open_matrix, msg);
	close(fd);
	return vf;
}

/* The whole file image through vf_read, piece by odd piece, against
 * `header` (its length, or 0) followed by the reference of o. */
static void check_image(struct vfile *vf, const struct pm_matrix_opts *o, bool npy)
{
	struct ref_matrix ref;
	unsigned char *buf;
	size_t hl = 0, len;

	CU_ASSERT_EQUAL_FATAL(ref_im2col(o, &ref), 0);
	len = (size_t)vf->size;
	buf = malloc(len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	for (size_t off = 0, step = 1; off < len; off += step, step = step * 3 % 1021 + 1)
		CU_ASSERT_EQUAL(vf_read(vf, off, buf + off, off + step > len ? len - off : step), 0);
	if (npy) {
		char want[64];

		hl = npy_data_offset(buf, len);
		CU_ASSERT_FATAL(hl > 0);
		snprintf(want, sizeof(want), "'shape': (%zu, %zu)", ref.rows, ref.pitch / ref.elem);
		CU_ASSERT_PTR_NOT_NULL(memmem(buf, hl, want, strlen(want)));
		CU_ASSERT_PTR_NOT_NULL(memmem(buf, hl, "'fortran_order': False", 22));
	}
	CU_ASSERT_EQUAL(len, hl + ref.rows * ref.pitch);
	CU_ASSERT(len == hl + ref.rows * ref.pitch && !memcmp(buf + hl, ref.data, len - hl));
	ref_free(&ref);
	free(buf);
}

static void test_npy_source(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	char msg[VF_ERRLEN];
	struct vfile *vf;
	struct stat st;
	int fd;

	make_sources();
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("a.patchmap"), "source = img8.npy\nwindow = 4x3\n"
							       "step = 2\ndilation = 1x2\npad = same\n"
							       "pad_mode = reflect\ndtype = float32\n"
							       "scale = 0.25\noffset = -3\n"),
			      0);
	vf = load("a.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	CU_ASSERT_EQUAL(msg[0], 0);
	pm_source_contiguous(&o.source, img8, PM_DTYPE_U8, 2, (size_t[]){ H, W });
	o.window[0] = (struct pm_window){ 4, 2, 1, 1, 2 };
	o.window[1] = (struct pm_window){ 3, 2, 2, 2, 2 };
	o.pad_mode = PM_PAD_REFLECT;
	o.dtype = PM_DTYPE_F32;
	o.affine = true;
	o.scale = 0.25;
	o.offset = -3;
	check_image(vf, &o, false);
	CU_ASSERT_EQUAL(vf->header_len, 0);

	/* stat: the virtual size, read-only, the later mtime */
	fd = open(t_path("a.patchmap"), O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(fstat(fd, &st), 0);
	close(fd);
	st.st_mode |= 0222;
	st.st_mtim.tv_sec = 1;
	vf_patch_stat(vf, &st);
	CU_ASSERT_EQUAL((uint64_t)st.st_size, vf->size);
	CU_ASSERT(S_ISREG(st.st_mode) && !(st.st_mode & 0222));
	CU_ASSERT(st.st_mtim.tv_sec > 1);
	CU_ASSERT((uint64_t)st.st_blocks * 512 >= vf->size);
	vf_put(vf);

	/* the same as .npy, with channel order and a row pitch */
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("b.patchmap"), "source = img8.npy\nwindow = 5\n"
							       "row_pitch = 256\nformat = npy\ndtype = same\n"
							       "layout = cols\n"),
			      0);
	vf = load("b.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	memset(o.window, 0, sizeof(o.window));
	o.window[0] = o.window[1] = (struct pm_window){ 5, 1, 1, 0, 0 };
	o.pad_mode = PM_PAD_ZERO;
	o.dtype = PM_DTYPE_SAME;
	o.affine = false;
	o.layout = PM_LAYOUT_COLS;
	o.row_pitch = 256;
	{
		/* rows of the transpose are the 25 window elements */
		struct pm_matrix_opts t = o;
		struct ref_matrix r;

		CU_ASSERT_EQUAL_FATAL(ref_im2col(&t, &r), 0);
		CU_ASSERT_EQUAL(r.rows, 25);
		ref_free(&r);
	}
	check_image(vf, &o, true);
	vf_put(vf);
}

static void test_pnm_and_raw(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	char msg[VF_ERRLEN];
	struct vfile *vf;

	make_sources();
	pm_source_contiguous(&o.source, img16, PM_DTYPE_U16, 3, (size_t[]){ H, W, 3 });
	o.source.has_channels = true;
	o.source.channel_axis = 2;
	o.window[0] = o.window[1] = (struct pm_window){ 3, 1, 1, 0, 0 };
	o.order = PM_ORDER_CHANNEL;
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("p.patchmap"), "source=img16.ppm\nwindow=3\n"
							       "order=channel\nformat=npy\ndtype=same\n"),
			      0);
	vf = load("p.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	check_image(vf, &o, true);
	vf_put(vf);

	CU_ASSERT_EQUAL_FATAL(write_text(t_path("r.patchmap"), "source=img16.raw\nshape=%dx%dx3\n"
							       "raw_dtype=>u2\nraw_offset=5\nwindow=3x3\n"
							       "order=channel\ndtype=same\n",
					 H, W),
			      0);
	vf = load("r.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	check_image(vf, &o, false);
	vf_put(vf);
}

static void test_region(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	const char *data, *again;
	struct ref_matrix ref;
	char msg[VF_ERRLEN];
	struct vfile *vf;
	size_t span, hl;

	make_sources();
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("m.patchmap"), "source=img8.npy\nwindow=2\nformat=npy\n"
							       "dtype=f64\nchunk=4K\nbudget=8K\n"),
			      0);
	vf = load("m.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	data = vf_region(vf, &span);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	CU_ASSERT(span >= vf->size && span % 4096 == 0);
	again = vf_region(vf, &span);
	CU_ASSERT_PTR_EQUAL(again, data);
	pm_source_contiguous(&o.source, img8, PM_DTYPE_U8, 2, (size_t[]){ H, W });
	o.window[0] = o.window[1] = (struct pm_window){ 2, 1, 1, 0, 0 };
	o.dtype = PM_DTYPE_F64;
	CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &ref), 0);
	hl = npy_data_offset((const unsigned char *)data, (size_t)vf->size);
	CU_ASSERT_FATAL(hl > 0);
	CU_ASSERT_EQUAL(vf->size, hl + ref.rows * ref.pitch);
	/* backwards, so that the budget of two chunks keeps evicting */
	for (size_t off = ref.rows * ref.pitch; off > 0;) {
		size_t n = off < 1000 ? off : 1000;
		off -= n;
		CU_ASSERT(!memcmp(data + hl + off, (const char *)ref.data + off, n));
	}
	ref_free(&ref);
	vf_put(vf);

	/* backend none: no mapping */
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("n.patchmap"), "source=img8.npy\nwindow=2\nbackend=none\n"), 0);
	vf = load("n.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(vf);
	errno = 0;
	CU_ASSERT_PTR_NULL(vf_region(vf, &span));
	CU_ASSERT_EQUAL(errno, ENODEV);
	vf_put(vf);
}

/* Load failures: EINVAL and "NAME:LINE: problem". */
static void test_load_errors(void)
{
	static const struct {
		const char *text;
		const char *want; /* the message after "e.patchmap:" */
	} cases[] = {
		{ "window=3\n\nsource = missing.npy\n", "3: source \"missing.npy\": cannot open: No such file" },
		{ "source = .\nwindow=3\n", "1: source \".\": is a directory" },
		{ "source = notimage.txt\nwindow=3\n", "1: source \"notimage.txt\": not a .npy, PGM or PPM file" },
		{ "source = img8.npy\nwindow=3\nshape=100x100\n", "3: source \"img8.npy\": truncated raw file" },
		{ "source = other.patchmap\nwindow=3\n", "1: source: a descriptor cannot be the source" },
		{ "source = fifo\nwindow=3\n", "1: source \"fifo\": not a regular file" },
		{ "window=3\nsource = /dev/zero\n", "2: source \"/dev/zero\": not a regular file" },
		{ "source = img8.npy\nwindow=30\n", "2: window: '30' spans 30x30 samples, more than the source's 23x17" },
		{ "source = img8.npy\nwindow=3\nbogus=1\n", "3: unknown key \"bogus\"" },
		{ "source = img8.npy\nwindow=3\nbudget=1\n", "3: budget: 1 bytes is too small" },
		{ "", " no \"source = PATH\" line" },
	};
	char msg[VF_ERRLEN], want[VF_ERRLEN];

	make_sources();
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("notimage.txt"), "hello\n"), 0);
	CU_ASSERT_EQUAL_FATAL(mkfifo(t_path("fifo"), 0600), 0); /* opening it would wait */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vfile *vf;

		CU_ASSERT_EQUAL_FATAL(write_text(t_path("e.patchmap"), "%s", cases[i].text), 0);
		errno = 0;
		vf = load("e.patchmap", true, msg);
		snprintf(want, sizeof(want), "e.patchmap:%s", cases[i].want);
		if (vf || strncmp(msg, want, strlen(want)))
			fprintf(stderr, "\n  case %zu: \"%s\"\n  want \"%s...\"\n", i, msg, want);
		CU_ASSERT_PTR_NULL(vf);
		CU_ASSERT_EQUAL(errno, EINVAL);
		CU_ASSERT(!strncmp(msg, want, strlen(want)));
		CU_ASSERT_PTR_NULL(strchr(msg, '\n'));
		vf_put(vf);
	}
}

/* Sources relative to the descriptor's directory, even through a symlink
 * from elsewhere (the directory of the file it points to). */
static void test_relative(void)
{
	char msg[VF_ERRLEN];
	struct vfile *vf;

	make_sources();
	CU_ASSERT_EQUAL_FATAL(mkdir(t_path("sub"), 0755), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(t_path("elsewhere"), 0755), 0);
	CU_ASSERT_EQUAL_FATAL(write_text(t_path("sub/d.patchmap"), "source = ../img8.npy\nwindow = 3\n"), 0);
	CU_ASSERT_EQUAL_FATAL(symlink("../sub/d.patchmap", t_path("elsewhere/link.patchmap")), 0);
	vf = load("sub/d.patchmap", false, msg);
	CU_ASSERT_PTR_NOT_NULL(vf);
	CU_ASSERT_PTR_NULL(vf ? vf->m : NULL); /* open_matrix false: describe only */
	vf_put(vf);
	vf = load("elsewhere/link.patchmap", true, msg);
	CU_ASSERT_PTR_NOT_NULL(vf);
	vf_put(vf);
}

int main(void)
{
	static const struct t_case cases[] = {
		{ "every key", test_every_key },
		{ "every image key", test_every_image_key },
		{ "defaults and other spellings", test_defaults },
		{ "comments, blanks, quotes", test_syntax },
		{ "one error per malformed line", test_errors },
		{ "NUL bytes and size", test_binary_and_size },
		{ "channel axis", test_channels },
		{ "per-axis values and pad = same", test_per_axis },
		{ "library errors on their line", test_library_errors },
		{ ".npy source, raw and .npy images", test_npy_source },
		{ "PPM and raw big-endian sources", test_pnm_and_raw },
		{ "lazy region over the image", test_region },
		{ "load errors", test_load_errors },
		{ "relative sources", test_relative },
	};

	if (t_make_dir("desc"))
		return 1;
	return t_run("descriptor", cases, sizeof(cases) / sizeof(cases[0]));
}
