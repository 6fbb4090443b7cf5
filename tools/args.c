/* args.c: the command line of every subcommand, its help, and the patch
 * matrix options it describes. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

/* The tool's own options; the matrix options are the library's spec keys
 * (pm_spec_key) and the raw image keys (fe_raw_key_name), spelled with '-'
 * and numbered from O_SPEC and O_RAW. */
enum opt_id {
	O_HELP = 'h',
	O_QUIET = 256,
	O_JSON,
	O_OUT,
	O_FILTERS,
	O_RANDOM,
	O_SEED,
	O_SAVE_FILTERS,
	O_BLAS_THREADS,
	O_SMALL,
	O_SIZE,
	O_NFILTERS,
	O_INJECT,
	O_IMAGE_SHAPE,
	O_MODE,
	O_RAW = 512,
	O_SPEC = 1024,
};

#define ALL (CMD_DEMO | CMD_INFO | CMD_APPLY | CMD_EXPORT | CMD_FOLD)
#define IMG (CMD_INFO | CMD_APPLY | CMD_EXPORT)

static const struct {
	const char *name;
	int has_arg;
	int id;
	int cmds;
} table[] = {
	{ "help", no_argument, O_HELP, ALL },
	{ "quiet", no_argument, O_QUIET, ALL },
	{ "json", no_argument, O_JSON, ALL },
	{ "out", required_argument, O_OUT, CMD_APPLY | CMD_EXPORT | CMD_FOLD },
	{ "image-shape", required_argument, O_IMAGE_SHAPE, CMD_FOLD },
	{ "mode", required_argument, O_MODE, CMD_FOLD },
	{ "filters", required_argument, O_FILTERS, CMD_APPLY },
	{ "random", required_argument, O_RANDOM, CMD_APPLY },
	{ "save-filters", required_argument, O_SAVE_FILTERS, CMD_APPLY },
	{ "blas-threads", required_argument, O_BLAS_THREADS, CMD_APPLY | CMD_DEMO },
	{ "small", no_argument, O_SMALL, CMD_DEMO },
	{ "size", required_argument, O_SIZE, CMD_DEMO },
	{ "nfilters", required_argument, O_NFILTERS, CMD_DEMO },
	{ "inject-error", required_argument, O_INJECT, CMD_DEMO },
};
#define NTABLE (int)(sizeof(table) / sizeof(table[0]))
/* Room for the spec's keys. */
#define MAX_SPEC_KEYS 64

/* The spec keys fold takes: the geometry, the output dtype, the row
 * selection and its own thread count; nothing else of a lazy mapping or
 * of the conversion into the matrix, which fold does not make. */
static bool fold_key(const char *key)
{
	static const char *const no[] = { "pad_value", "scale", "offset", "backend", "budget",
					  "chunk", "readahead", "writable" };

	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (!strcmp(key, no[i]))
			return false;
	return true;
}

/* The spec keys the demo takes: it builds its own image and window. */
static bool demo_key(const char *key)
{
	return !strcmp(key, "window") || !strcmp(key, "budget") || !strcmp(key, "chunk") ||
	       !strcmp(key, "backend") || !strcmp(key, "threads");
}

void usage_program(FILE *f)
{
	fputs("usage: patchmap COMMAND [options]\n"
	      "\n"
	      "The sliding-window patch matrix (im2col) of an image, as memory filled on\n"
	      "first touch and evicted under a budget: never materialized.\n"
	      "\n"
	      "commands:\n"
	      "  demo     a bank of filters over every window of a synthetic image whose patch\n"
	      "           matrix is larger than RAM, with cblas_sgemm on the matrix; checked\n"
	      "  info     the patch matrix's geometry and size, without computing it\n"
	      "  apply    the responses of linear filters at every window position (.npy)\n"
	      "  export   the patch matrix itself as a .npy file, streamed\n"
	      "  fold     a matrix of windows (or a value per window) added back into its\n"
	      "           image: sum, mean or count of the overlaps (.npy)\n"
	      "  doctor   which backends work here and why, and how to enable the rest\n"
	      "\n"
	      "`patchmap COMMAND --help` lists a command's options. Exit status: 0 done,\n"
	      "1 failed (one line on stderr says why), 2 bad usage.\n",
	      f);
}

static const char help_image[] =
	"Images: .npy (bool, uint8, int8, uint16, int16, uint32, int32, uint64, int64,\n"
	"float16, float32, float64; either byte order, C or Fortran order; 1 to 8\n"
	"axes), binary PGM/PPM (P5/P6, 8 or 16 bit), or raw samples:\n"
	"  --shape HxW[xC]        the file is raw, with this shape (C order)\n"
	"  --raw-dtype T          its sample type, named as numpy does (uint16), by\n"
	"                         bits (u16) or by numpy's code (<u2; '>' for\n"
	"                         big-endian, >f4); default uint8\n"
	"  --raw-offset N         bytes to skip at the start of the file (default 0)\n"
	"Files are mapped, not copied (big-endian samples are converted in a copy).\n"
	"Any other format libvips reads (TIFF and BigTIFF, tiled or pyramidal, PNG,\n"
	"JPEG, WebP, JPEG 2000, OpenSlide slides, ...) is decoded lazily, a band of\n"
	"rows at a time, by libpatchmap-image:\n"
	"  --page N               the page of a multi-page file (default 0, the first)\n"
	"  --level N              the pyramid level: 0 the full resolution (default),\n"
	"                         1 the next, ... (OpenSlide, pyramidal TIFF, JPEG 2000)\n"
	"  --bands LIST           the bands kept, in order: 0 or 2,1,0 (default all)\n"
	"  --image-budget SIZE    most bytes of the decoded image resident at once\n"
	"                         (default 256M), beside the matrix's --budget\n"
	"  --image-chunk SIZE     bytes of the image decoded per fault (default 4M)\n";

static const char help_window[] =
	"Window (the same keys and values as a descriptor's and Python's):\n"
	"  --window HxW           window size per spatial axis (\"16\", \"16x16\",\n"
	"                         \"16,16\"); one number for every spatial axis\n"
	"  --channel-axis A       auto (default), none, first, last or an axis number.\n"
	"                         auto: a window naming every axis means no channels,\n"
	"                         one fewer means channels last; a single number\n"
	"                         windows all axes of a 1-D or 2-D image and all but\n"
	"                         the last of a 3-D or larger one\n"
	"  --step SxS             distance between windows (default 1)\n"
	"  --dilation DxD         distance between a window's samples (default 1)\n"
	"  --pad W                same (TensorFlow's: ceil(n/step) windows per axis),\n"
	"                         valid (none, the default), N (every side), BxA\n"
	"                         (before x after), or one per spatial axis: \"2, 1x3\"\n"
	"  --pad-mode M           zero, constant, edge, reflect, symmetric or wrap\n"
	"                         (numpy.pad's); without --pad, pads \"same\"\n"
	"  --pad-value V          the constant mode's value, in the image's units\n"
	"  --dtype T              the matrix's dtype: float32 (default), float64, same\n"
	"                         (the image's), or the image's own\n"
	"  --scale S, --offset O  each sample becomes S * x + O (float outputs)\n"
	"  --order window|channel column order: (y, x, c) as sliding_window_view, or\n"
	"                         (c, y, x) as PyTorch's unfold (default window)\n"
	"  --layout rows|cols     one row per window (default), or the transpose\n"
	"  --row-pitch N          bytes from one row to the next (default packed)\n"
	"Rows (at most one; default every window, in order):\n"
	"  --row-range A:B        windows A to B - 1 (A: to the last, :B from the first)\n"
	"  --rows FILE            a .npy of integer window numbers (any order, repeats)\n"
	"  --mask FILE            a bool .npy or a PGM of the windows' out_shape: the\n"
	"                         windows where it is true (nonzero), in order\n"
	"  --sample N             N windows drawn with replacement (a fraction below 1:\n"
	"                         that share of the windows) by splitmix64 from --seed\n"
	"                         (default 1; see doc/options.md)\n";

static const char help_lazy[] =
	"Memory:\n"
	"  --budget SIZE          most bytes of the matrix resident at once: 256M, 1.5G,\n"
	"                         \"64 KiB\" (powers of 1024) or \"unlimited\" (default\n"
	"                         256M, the library's); at least two chunks\n"
	"  --chunk SIZE           bytes filled per fault, a power of two (default 4M)\n"
	"  --backend NAME         auto, uffd, sigsegv, eager or none (default auto)\n"
	"  --threads N            threads filling the matrix (default: the library's)\n"
	"  --readahead N          chunks filled ahead of a sequential reader, or none\n"
	"  --writable yes|no      resident pages without write protection (uffd)\n"
	"Output:\n"
	"  --quiet                print nothing but errors\n"
	"  --json                 print the report, or the error, as one JSON object\n"
	"                         (stdout; stderr when an output goes to stdout)\n"
	"  --help                 this text\n";

static void usage_cmd(int cmd, FILE *f)
{
	switch (cmd) {
	case CMD_DEMO:
		fputs("usage: patchmap demo [--small] [options]\n"
		      "\n"
		      "Generates a synthetic 8192 x 8192 uint8 image whose float32 patch matrix\n"
		      "(16 x 16 windows, step 1: 68.5 GB) is larger than this machine's RAM, maps\n"
		      "it lazily under the budget, runs a bank of 16 integer-valued 16 x 16\n"
		      "filters over every window with cblas_sgemm straight on the matrix pointer\n"
		      "(in blocks of rows), and reports time, throughput, peak RSS and the lazy\n"
		      "statistics. The responses are checked two ways, independently of the\n"
		      "matrix: exact integer sums over all of them (plain, and weighted by the\n"
		      "window's row and column) against sums computed from the image, and a\n"
		      "direct convolution of a sample of windows.\n"
		      "\n"
		      "  --small                a 640 x 640 image (a 381 MiB matrix): seconds\n"
		      "  --size HxW             another image size\n"
		      "  --window K             window side (default 16)\n"
		      "  --nfilters N           filters in the bank (default 16)\n"
		      "  --inject-error KIND    spoil the responses after the GEMM, to see the\n"
		      "                         check fail: value (one response off by one), swap\n"
		      "                         (two windows' responses exchanged) or nan\n"
		      "  --blas-threads N       OpenBLAS threads (default: the CPUs the filler\n"
		      "                         threads leave, at least 1)\n"
		      "\n",
		      f);
		fputs(help_lazy, f);
		break;
	case CMD_INFO:
		fputs("usage: patchmap info IMAGE [--window HxW [window options]] [options]\n"
		      "\n"
		      "Describes the image and, given a window, its patch matrix: rows, columns,\n"
		      "leading dimension, dtype, bytes, windows per axis and channels. Nothing\n"
		      "is computed or reserved.\n"
		      "\n"
		      "  --json                 the image and the resolved options and matrix as\n"
		      "                         one JSON object\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs("  --quiet, --help\n", f);
		break;
	case CMD_APPLY:
		fputs("usage: patchmap apply IMAGE --window HxW (--filters FILE | --random N)\n"
		      "                      --out FILE.npy [options]\n"
		      "\n"
		      "Responses of N linear filters at every window position: with X the patch\n"
		      "matrix (one row per window) and F the filters (one row each), the GEMM\n"
		      "F X^T, computed block of rows by block of rows. By default without a\n"
		      "mapping: --threads workers (default: every CPU) each compute their rows\n"
		      "with pm_matrix_read into a cache-sized buffer and multiply them there\n"
		      "(float32: the tool's AVX-512 or AVX2 kernel where the CPU has one, else\n"
		      "one BLAS thread, as PATCHMAP_APPLY_KERNEL chooses; float64: one BLAS\n"
		      "thread). With an explicit --backend (auto, uffd,\n"
		      "sigsegv, eager) or --blas-threads, OpenBLAS multiplies the lazily filled\n"
		      "mapping instead, --threads filling it. Written as a .npy stack of shape\n"
		      "(N, out_h, out_w) (one axis per spatial axis of the window), float32, or\n"
		      "float64 with --dtype f64. Response n at position p is\n"
		      "sum_k F[n, k] * X[p, k]: a correlation, not a flipped convolution.\n"
		      "\n"
		      "  --filters FILE         a .npy of shape (N, K), K the window's elements in\n"
		      "                         the matrix's column order (see --order), or (N, h,\n"
		      "                         w) / (N, h, w, c): the window's shape, channels\n"
		      "                         last; any readable dtype\n"
		      "  --random N             N filters of uniform random values in [-1, 1)\n"
		      "  --seed S               their seed, and --sample's (default 1)\n"
		      "  --save-filters FILE    write the filters used as a (N, K) .npy\n"
		      "  --out FILE.npy         the responses (written to a temporary name and\n"
		      "                         renamed when complete)\n"
		      "  --dtype T              compute and write in float32 (default) or float64\n"
		      "  --blas-threads N       OpenBLAS threads on the mapping (asks for one;\n"
		      "                         default: the CPUs the filler threads leave, at\n"
		      "                         least 1)\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs(help_lazy, f);
		break;
	case CMD_FOLD:
		fputs("usage: patchmap fold MATRIX.npy --image-shape HxW[xC] --window HxW\n"
		      "                     --out FILE.npy [--mode sum|mean|count] [options]\n"
		      "\n"
		      "The way back from a patch matrix to its image (col2im): every element of\n"
		      "every window is added into the image sample it was taken from, with the\n"
		      "window options the matrix was made with. MATRIX is (windows, window\n"
		      "elements), (windows, channels) (one vector per window, value c to channel\n"
		      "c of every pixel it covers) or (windows,) / (windows, 1) (one value per\n"
		      "window); one row per selected window with --rows, --mask, --sample or\n"
		      "--row-range; any dtype the library reads. Contributions that fall in\n"
		      "the padding are dropped (as torch.nn.functional.fold drops them). Read\n"
		      "once, in order, from the file's mapping: the matrix may be larger than\n"
		      "memory; the image is held whole.\n"
		      "\n"
		      "  --image-shape HxW[xC]  the image's shape (channels as the window\n"
		      "                         options say: --channel-axis)\n"
		      "  --mode M               sum (torch's fold, the default), mean (the sum\n"
		      "                         over the number of contributions, scikit-learn's\n"
		      "                         reconstruct_from_patches_2d) or count (the number\n"
		      "                         of contributions; MATRIX is not read)\n"
		      "  --dtype T              the image's dtype: float64 (the default) or\n"
		      "                         float32; sums in that dtype, in matrix order\n"
		      "  --out FILE.npy         the image (written to a temporary name and renamed\n"
		      "                         when complete; never one of the inputs)\n"
		      "  --threads N            threads that share the image in bands of rows\n"
		      "                         (default: the CPUs, at most 8); the result does\n"
		      "                         not depend on it\n",
		      f);
		fputs("Window (as the matrix was made; the same keys as everywhere):\n"
		      "  --window HxW, --step SxS, --dilation DxD, --pad W, --pad-mode M,\n"
		      "  --channel-axis A, --order window|channel, --layout rows|cols,\n"
		      "  --row-pitch N (bytes between the input's rows)\n"
		      "Rows (at most one; default every window, in order): --row-range A:B,\n"
		      "  --rows FILE, --mask FILE, --sample N with --seed S (see patchmap info\n"
		      "  --help)\n"
		      "  --quiet, --json, --help\n", f);
		break;
	case CMD_EXPORT:
		fputs("usage: patchmap export IMAGE --window HxW --out FILE.npy [options]\n"
		      "\n"
		      "Writes the patch matrix as a .npy file of shape (windows, window\n"
		      "elements), streamed: it is computed piece by piece with pm_matrix_read\n"
		      "into buffers that together stay within the budget, by --threads threads\n"
		      "(default: every CPU), without a mapping. With an explicit --backend\n"
		      "(auto, uffd, sigsegv or eager), one thread copies the pieces from the\n"
		      "lazily filled mapping instead (its buffers an eighth of the budget;\n"
		      "--threads then fill the mapping), never handing the mapping itself to\n"
		      "write(2). Written to a temporary name and renamed when complete; \"-\",\n"
		      "a device or a pipe is written directly.\n"
		      "\n"
		      "  --out FILE.npy         the output\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs(help_lazy, f);
		break;
	}
}

static int usage_err(const struct args *a, const char *fmt, const char *arg)
	__attribute__((format(printf, 2, 0)));
static int usage_err(const struct args *a, const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	cli_err("%s %s (see patchmap %s --help)", a->prog_cmd, msg, a->prog_cmd);
	return EXIT_USAGE;
}

/* A message of the grammar, whole: the same words in every front end. */
static int spec_err(const struct args *a, const char *msg)
{
	cli_err("%s: %s (see patchmap %s --help)", a->prog_cmd, msg, a->prog_cmd);
	return EXIT_USAGE;
}

/* A key as an option's name: "pad_mode" -> "pad-mode". */
static const char *option_name(char *buf, size_t n, const char *key)
{
	snprintf(buf, n, "%s", key);
	for (char *p = buf; *p; p++)
		if (*p == '_')
			*p = '-';
	return buf;
}

int args_parse(struct args *a, int cmd, int argc, char **argv)
{
	static char names[MAX_SPEC_KEYS + FE_RAW_COUNT][32];
	struct option longopts[NTABLE + MAX_SPEC_KEYS + FE_RAW_COUNT + 1];
	char err[FE_ERRLEN];
	int n = 0, c, k;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->prog_cmd = argv[0];
	a->seed = 1;
	if (fe_options_init(&a->opt))
		return cli_err("out of memory"), 1;
	for (int i = 0; i < NTABLE; i++)
		if (table[i].cmds & cmd)
			longopts[n++] = (struct option){ table[i].name, table[i].has_arg, NULL,
							 table[i].id };
	for (int i = 0; pm_spec_key(i) && i < MAX_SPEC_KEYS; i++)
		if ((cmd != CMD_DEMO || demo_key(pm_spec_key(i))) &&
		    (cmd != CMD_FOLD || fold_key(pm_spec_key(i))))
			longopts[n++] = (struct option){
				option_name(names[i], sizeof(names[i]), pm_spec_key(i)),
				required_argument, NULL, O_SPEC + i
			};
	for (int i = 0; cmd != CMD_DEMO && i < FE_RAW_COUNT; i++)
		if (cmd != CMD_FOLD || i >= FE_ROWS) /* fold reads .npy matrices */
			longopts[n++] = (struct option){
			option_name(names[MAX_SPEC_KEYS + i], sizeof(names[0]), fe_raw_key_name(i)),
			required_argument, NULL, O_RAW + i
		};
	longopts[n] = (struct option){ 0 };

	/* --json first, so that a usage error is reported as JSON too; on
	 * stderr when an output (--out -, --save-filters -) goes to stdout. */
	opterr = 0;
	optind = 0;
	{
		/* on a copy: getopt_long permutes what it scans */
		char *copy[argc + 1];
		const char *out = NULL, *filters_out = NULL;
		bool json = false;

		memcpy(copy, argv, sizeof(char *) * (size_t)argc);
		copy[argc] = NULL;
		while ((c = getopt_long(argc, copy, ":h", longopts, NULL)) != -1)
			if (c == O_JSON)
				json = true;
			else if (c == O_OUT)
				out = optarg;
			else if (c == O_SAVE_FILTERS)
				filters_out = optarg;
		if (json)
			cli_json_errors(cli_on_stdout(out) || cli_on_stdout(filters_out) ? stderr
											    : stdout);
	}
	optind = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		const char *v = optarg;
		size_t z;

		if (c >= O_SPEC || (c >= O_RAW && c < O_RAW + FE_RAW_COUNT)) {
			const char *key = c >= O_SPEC ? pm_spec_key(c - O_SPEC) : fe_raw_key_name(c - O_RAW);

			/* the library's message, as every front end gives it */
			if (fe_options_set(&a->opt, key, v, err))
				return spec_err(a, err);
			/* a row selection is a matrix option too, though read
			 * by the front end rather than the library */
			if (c >= O_SPEC || c - O_RAW >= FE_ROWS)
				a->spec_given = true;
			if (!strcmp(key, "window"))
				a->window_given = true;
			if (!strcmp(key, "backend"))
				a->backend_given = true;
			if (!strcmp(key, "dtype"))
				a->dtype_text = v;
			if (cmd == CMD_DEMO && !strcmp(key, "window")) {
				a->nwindow = pm_dims_parse(v, a->window, PM_MAX_DIMS);
				if (a->nwindow < 0)
					return usage_err(a, "--window: '%s' is not a size", v);
			}
			continue;
		}
		switch (c) {
		case O_HELP:
			usage_cmd(cmd, stdout);
			return 0;
		case O_BLAS_THREADS:
			if (parse_count(v, 1024, &z) || !z)
				return usage_err(a, "--blas-threads: '%s' is not a count from 1 to 1024", v);
			a->blas_threads = (int)z;
			break;
		case O_QUIET:
			a->quiet = true;
			break;
		case O_JSON:
			a->json = true;
			break;
		case O_OUT:
			if (!*v)
				return usage_err(a, "--out: %s an empty name", "");
			a->out = v;
			break;
		case O_FILTERS:
			a->filters = v;
			break;
		case O_RANDOM:
			if (parse_count(v, 1 << 20, &a->random) || !a->random)
				return usage_err(a, "--random: '%s' is not a filter count from 1 to 1048576",
						 v);
			break;
		case O_SAVE_FILTERS:
			a->save_filters = v;
			break;
		case O_IMAGE_SHAPE:
			a->image_ndim = pm_dims_parse(v, a->image_shape, PM_MAX_DIMS);
			if (a->image_ndim < 0)
				return usage_err(a, "--image-shape: '%s' is not the image's shape, such as "
						    "512x512 or 512x512x3", v);
			break;
		case O_MODE:
			if (!strcasecmp(v, "sum"))
				a->fold_mode = PM_FOLD_SUM;
			else if (!strcasecmp(v, "mean"))
				a->fold_mode = PM_FOLD_MEAN;
			else if (!strcasecmp(v, "count"))
				a->fold_mode = PM_FOLD_COUNT;
			else
				return usage_err(a, "--mode: '%s' is not sum, mean or count", v);
			break;
		case O_SMALL:
			a->small = true;
			break;
		case O_SIZE:
			a->nsize = pm_dims_parse(v, a->size, 2);
			if (a->nsize < 0)
				return usage_err(a, "--size: '%s' is not a size like 1024x1024", v);
			if (a->nsize == 1)
				a->size[1] = a->size[0];
			break;
		case O_NFILTERS:
			if (parse_count(v, 4096, &a->nfilters) || !a->nfilters)
				return usage_err(a, "--nfilters: '%s' is not a count from 1 to 4096", v);
			break;
		case O_INJECT:
			if (!strcmp(v, "value") || !strcmp(v, "swap") || !strcmp(v, "nan"))
				a->inject = v;
			else
				return usage_err(a, "--inject-error: '%s' is not value, swap or nan", v);
			break;
		case ':':
			return usage_err(a, "option %s needs a value", argv[optind - 1]);
		default:
			return usage_err(a, "unknown option %s", argv[optind - 1]);
		}
	}
	if (cmd == CMD_DEMO) {
		if (optind < argc)
			return usage_err(a, "takes no argument ('%s')", argv[optind]);
		return -1;
	}
	if (optind >= argc)
		return usage_err(a, "needs an IMAGE%s", "");
	if (optind + 1 < argc)
		return usage_err(a, "takes one IMAGE; '%s' is one too many", argv[optind + 1]);
	a->image = argv[optind];
	/* apply's --random filters are drawn from --seed too */
	a->opt.seed_other_use = cmd == CMD_APPLY && a->random;
	a->seed = a->opt.seed;
	if (fe_options_check(&a->opt, &k, err))
		return spec_err(a, err);
	if (cmd != CMD_INFO && !a->window_given)
		return usage_err(a, "needs --window%s", "");
	if (cmd == CMD_INFO && !a->window_given && a->spec_given)
		return usage_err(a, "matrix options need --window%s", "");
	if ((cmd & (CMD_APPLY | CMD_EXPORT)) && !a->out)
		return usage_err(a, "needs --out FILE%s", "");
	if (cmd == CMD_FOLD && !a->image_ndim)
		return usage_err(a, "needs --image-shape HxW[xC]%s", "");
	if (cmd == CMD_APPLY && !a->filters == !a->random)
		return usage_err(a, "needs either --filters FILE or --random N%s", "");
	return -1;
}

void args_free(struct args *a)
{
	fe_options_free(&a->opt);
}

/* ---------------------------------------------------------------- matrix */

int args_matrix(const struct args *a, const struct img *im, struct pm_matrix_opts *o,
		struct fe_rows *sel, struct pm_matrix_info *info)
{
	struct fe_options f = a->opt;
	char err[FE_ERRLEN];

	memset(sel, 0, sizeof(*sel));
	if (fe_options_matrix(&f, im, o, info, err) ||
	    fe_options_rows(&f, NULL, o, sel, info, err))
		return cli_err("%s", err);
	return 0;
}

size_t args_budget(const struct pm_matrix_opts *o)
{
	return o->lazy.budget ? o->lazy.budget : PM_DEFAULT_BUDGET;
}

size_t args_chunk(const struct pm_matrix_opts *o)
{
	return o->lazy.chunk ? o->lazy.chunk : PM_DEFAULT_CHUNK;
}

int args_check_memory(const struct args *a, const struct pm_matrix_info *info)
{
	if (pm_spec_check_memory(a->opt.spec, info))
		return cli_err("%s", pm_spec_error(a->opt.spec));
	return 0;
}

/* ---------------------------------------------------------------- reports */

void report_stats_text(FILE *f, const struct pm_stats *st, int threads)
{
	char b1[32], b2[32], b3[160];

	if (st->backend == PM_BACKEND_NONE) {
		fprintf(f, "  backend     none: computed with pm_matrix_read, no mapping\n");
		return;
	}
	fprintf(f, "  backend     %s (%s)", pm_backend_name(st->backend),
		fmt_mechanism(b3, sizeof(b3), st->mechanism));
	if (threads)
		fprintf(f, ", %d filler thread%s", threads, threads == 1 ? "" : "s");
	fprintf(f, "\n  budget      %s in chunks of %s\n",
		pm__fmt_size(b1, sizeof(b1), st->budget_bytes), pm__fmt_size(b2, sizeof(b2), st->chunk_bytes));
	fprintf(f,
		"  faults      %llu served; %llu chunks filled (%s), %llu evicted; peak %s "
		"resident\n",
		(unsigned long long)st->faults, (unsigned long long)st->chunks_filled,
		pm__fmt_bytes(b1, sizeof(b1), (double)st->bytes_filled),
		(unsigned long long)st->evictions,
		pm__fmt_bytes(b2, sizeof(b2), (double)st->peak_resident_bytes));
	fprintf(f, "  read-ahead  %llu chunks filled ahead of the reader, %llu of them used\n",
		(unsigned long long)st->readahead_fills, (unsigned long long)st->readahead_hits);
}

void report_stats_json(struct json *j, const struct pm_stats *st)
{
	char b[160];

	json_obj(j, "lazy");
	json_str(j, "backend", pm_backend_name(st->backend));
	json_u64(j, "mechanism_bits", st->mechanism);
	json_str(j, "mechanism", st->backend == PM_BACKEND_NONE
					 ? "pm_matrix_read"
					 : fmt_mechanism(b, sizeof(b), st->mechanism));
	json_u64(j, "chunk_bytes", st->chunk_bytes);
	json_u64(j, "budget_bytes", st->budget_bytes);
	json_u64(j, "faults", st->faults);
	json_u64(j, "chunks_filled", st->chunks_filled);
	json_u64(j, "bytes_filled", st->bytes_filled);
	json_u64(j, "evictions", st->evictions);
	json_u64(j, "readahead_fills", st->readahead_fills);
	json_u64(j, "readahead_hits", st->readahead_hits);
	json_u64(j, "fill_errors", st->fill_errors);
	json_u64(j, "peak_resident_bytes", st->peak_resident_bytes);
	json_num(j, "fill_seconds", (double)st->fill_ns * 1e-9);
	json_close(j, '}');
}

void report_image_json(struct json *j, const char *path, const struct img *im)
{
	json_obj(j, "image");
	json_str(j, "path", path);
	json_str(j, "format", im->format);
	json_str(j, "dtype", pm_dtype_name(im->src.dtype));
	json_dims(j, "shape", im->src.shape, im->src.ndim);
	json_str(j, "order", im->layout);
	json_bool(j, "converted", im->converted);
	json_u64(j, "file_bytes", im->file_bytes);
	if (im->vips_open) {
		json_str(j, "loader", im->vips.loader);
		json_i64(j, "pages", im->vips.pages);
		json_i64(j, "page", im->vips.page);
		json_i64(j, "levels", im->vips.levels);
		json_i64(j, "level", im->vips.level);
		json_i64(j, "file_bands", im->vips.file_bands);
		json_bool(j, "random_access", im->vips.random_access);
	}
	json_close(j, '}');
}

void report_image_text(FILE *f, const char *path, const struct img *im)
{
	char b1[64], b2[32];

	fprintf(f, "image %s: %s, %s %s (%s order)%s, %s file\n", path, im->format,
		pm__fmt_dims(b1, sizeof(b1), im->src.shape, im->src.ndim), pm_dtype_name(im->src.dtype),
		im->layout, im->converted ? ", byte-swapped into a copy" : "",
		pm__fmt_bytes(b2, sizeof(b2), (double)im->file_bytes));
	if (im->vips_open)
		fprintf(f, "  decoded lazily by libvips (%s%s): page %d of %d, level %d of %d, "
			"%d of the file's %d band%s\n",
			im->vips.loader, im->vips.random_access ? "" : ", read front to back",
			im->vips.page, im->vips.pages, im->vips.level, im->vips.levels,
			(int)(im->src.ndim == 3 ? im->src.shape[2] : 1), im->vips.file_bands,
			im->vips.file_bands == 1 ? "" : "s");
}
