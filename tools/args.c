/* args.c: the command line of every subcommand, its help, and the patch
 * matrix options it describes. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum opt_id {
	O_HELP = 'h',
	O_BUDGET = 256,
	O_CHUNK,
	O_BACKEND,
	O_THREADS,
	O_DTYPE,
	O_ORDER,
	O_QUIET,
	O_JSON,
	O_WINDOW,
	O_STEP,
	O_DILATION,
	O_PAD,
	O_PAD_WIDTH,
	O_SHAPE,
	O_RAW_DTYPE,
	O_RAW_OFFSET,
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
};

#define ALL (CMD_DEMO | CMD_INFO | CMD_APPLY | CMD_EXPORT)
#define IMG (CMD_INFO | CMD_APPLY | CMD_EXPORT)

static const struct {
	const char *name;
	int has_arg;
	int id;
	int cmds;
} table[] = {
	{ "help", no_argument, O_HELP, ALL },
	{ "budget", required_argument, O_BUDGET, ALL },
	{ "chunk", required_argument, O_CHUNK, ALL },
	{ "backend", required_argument, O_BACKEND, ALL },
	{ "threads", required_argument, O_THREADS, ALL },
	{ "dtype", required_argument, O_DTYPE, IMG },
	{ "order", required_argument, O_ORDER, IMG },
	{ "quiet", no_argument, O_QUIET, ALL },
	{ "json", no_argument, O_JSON, ALL },
	{ "window", required_argument, O_WINDOW, ALL },
	{ "step", required_argument, O_STEP, IMG },
	{ "dilation", required_argument, O_DILATION, IMG },
	{ "pad", required_argument, O_PAD, IMG },
	{ "pad-width", required_argument, O_PAD_WIDTH, IMG },
	{ "shape", required_argument, O_SHAPE, IMG },
	{ "raw-dtype", required_argument, O_RAW_DTYPE, IMG },
	{ "raw-offset", required_argument, O_RAW_OFFSET, IMG },
	{ "out", required_argument, O_OUT, CMD_APPLY | CMD_EXPORT },
	{ "filters", required_argument, O_FILTERS, CMD_APPLY },
	{ "random", required_argument, O_RANDOM, CMD_APPLY },
	{ "seed", required_argument, O_SEED, CMD_APPLY },
	{ "save-filters", required_argument, O_SAVE_FILTERS, CMD_APPLY },
	{ "blas-threads", required_argument, O_BLAS_THREADS, CMD_APPLY | CMD_DEMO },
	{ "small", no_argument, O_SMALL, CMD_DEMO },
	{ "size", required_argument, O_SIZE, CMD_DEMO },
	{ "nfilters", required_argument, O_NFILTERS, CMD_DEMO },
	{ "inject-error", required_argument, O_INJECT, CMD_DEMO },
};
#define NTABLE (int)(sizeof(table) / sizeof(table[0]))

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
	      "\n"
	      "`patchmap COMMAND --help` lists a command's options. Exit status: 0 done,\n"
	      "1 failed (one line on stderr says why), 2 bad usage.\n",
	      f);
}

static const char help_image[] =
	"Images: .npy (bool, uint8, int8, uint16, int16, uint32, int32, float32,\n"
	"float64; either byte order, C or Fortran order; 2-D, or 3-D with channels\n"
	"last), binary PGM/PPM (P5/P6, 8 or 16 bit), or raw samples:\n"
	"  --shape HxW[xC]        the file is raw, with this shape (C order)\n"
	"  --raw-dtype T          its sample type: u8 i8 u16 i16 u32 i32 f32 f64 (or\n"
	"                         numpy's \"<u2\", \">f4\", ...; '>' for big-endian);\n"
	"                         default u8\n"
	"  --raw-offset N         bytes to skip at the start of the file (default 0)\n"
	"Files are mapped, not copied (big-endian samples are converted in a copy).\n";

static const char help_window[] =
	"Window:\n"
	"  --window HxW           window size per spatial axis; one number for a square\n"
	"                         window. The image's axes are all spatial when the\n"
	"                         window names as many; one more is the channel axis\n"
	"                         (last). A single number windows every axis of a 1-D\n"
	"                         or 2-D image, and all but the last of a 3-D one.\n"
	"  --step SxS             distance between windows (default 1)\n"
	"  --dilation DxD         distance between a window's samples (default 1)\n"
	"  --pad MODE[:VALUE]     zero, constant:VALUE, edge, reflect, symmetric or wrap\n"
	"                         (numpy.pad's meanings); without --pad-width, pads by\n"
	"                         half the window so that step 1 keeps the image's size\n"
	"  --pad-width W          N (every side), BxA (B before and A after on every\n"
	"                         axis), or one of those per axis, comma-separated:\n"
	"                         \"2,1x3\"; zero padding unless --pad says otherwise\n"
	"  --order window|channel column order: (y, x, c) as sliding_window_view, or\n"
	"                         (c, y, x) as PyTorch's unfold (default window)\n";

static const char help_lazy[] =
	"Memory:\n"
	"  --budget SIZE          most bytes of the matrix resident at once: K, M, G\n"
	"                         suffixes (powers of 1024) or \"unlimited\" (default\n"
	"                         256M, the library's); at least two chunks\n"
	"  --chunk SIZE           bytes filled per fault, a power of two (default 4M)\n"
	"  --backend NAME         auto, uffd, sigsegv or eager (default auto)\n"
	"  --threads N            threads filling the matrix (default: the library's)\n"
	"Output:\n"
	"  --quiet                print nothing but errors\n"
	"  --json                 print the report as one JSON object (stdout; stderr with --out -)\n"
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
		      "  --dtype T              the matrix's dtype: f32, f64, or the image's own\n"
		      "                         (\"same\"); default f32\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs("  --json, --quiet, --help\n", f);
		break;
	case CMD_APPLY:
		fputs("usage: patchmap apply IMAGE --window HxW (--filters FILE | --random N)\n"
		      "                      --out FILE.npy [options]\n"
		      "\n"
		      "Responses of N linear filters at every window position: with X the patch\n"
		      "matrix (one row per window) and F the filters (one row each), the GEMM\n"
		      "F X^T, computed by OpenBLAS on the lazily filled matrix, block of rows by\n"
		      "block of rows. Written as a .npy stack of shape (N, out_h, out_w) (one\n"
		      "axis per spatial axis of the window), float32, or float64 with --dtype\n"
		      "f64. Response n at position p is sum_k F[n, k] * X[p, k]: a correlation,\n"
		      "not a flipped convolution.\n"
		      "\n"
		      "  --filters FILE         a .npy of shape (N, K), K the window's elements in\n"
		      "                         the matrix's column order (see --order), or (N, h,\n"
		      "                         w) / (N, h, w, c): the window's shape, channels\n"
		      "                         last; any readable dtype\n"
		      "  --random N             N filters of uniform random values in [-1, 1)\n"
		      "  --seed S               their seed (default 1)\n"
		      "  --save-filters FILE    write the filters used as a (N, K) .npy\n"
		      "  --out FILE.npy         the responses (written to a temporary name and\n"
		      "                         renamed when complete)\n"
		      "  --dtype f32|f64        compute and write in this type (default f32)\n"
		      "  --blas-threads N       OpenBLAS threads (default: the CPUs the filler\n"
		      "                         threads leave, at least 1)\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs(help_lazy, f);
		break;
	case CMD_EXPORT:
		fputs("usage: patchmap export IMAGE --window HxW --out FILE.npy [options]\n"
		      "\n"
		      "Writes the patch matrix as a .npy file of shape (windows, window\n"
		      "elements), streamed: it is computed piece by piece with pm_matrix_read\n"
		      "into buffers that together stay within the budget, by --threads threads\n"
		      "(default: every CPU), without a mapping. With an explicit --backend, one\n"
		      "thread copies the pieces from the lazily filled mapping instead (its\n"
		      "buffers an eighth of the budget; --threads then fill the mapping), never\n"
		      "handing the mapping itself to write(2). Written to a temporary\n"
		      "name and renamed when complete; \"-\", a device or a pipe is written\n"
		      "directly.\n"
		      "\n"
		      "  --out FILE.npy         the output\n"
		      "  --dtype T              f32 (default), f64, or the image's own (\"same\")\n",
		      f);
		fputs(help_window, f);
		fputs(help_image, f);
		fputs(help_lazy, f);
		break;
	}
}

static int usage_err(const struct args *a, const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	cli_err("%s %s (see patchmap %s --help)", a->prog_cmd, msg, a->prog_cmd);
	return EXIT_USAGE;
}

static int parse_out_dtype(const char *s, int cmd)
{
	bool big;
	int d;

	if (!strcmp(s, "same"))
		return cmd == CMD_APPLY ? -1 : PM_DTYPE_SAME;
	d = img_parse_dtype(s, &big);
	if (d < 0 || big)
		return -1;
	if (cmd == CMD_APPLY && d != PM_DTYPE_F32 && d != PM_DTYPE_F64)
		return -1;
	return d;
}

int args_parse(struct args *a, int cmd, int argc, char **argv)
{
	struct option longopts[NTABLE + 1];
	int n = 0, c;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->prog_cmd = argv[0];
	a->dtype = -1;
	a->seed = 1;
	a->raw.dtype = PM_DTYPE_U8;
	for (int i = 0; i < NTABLE; i++)
		if (table[i].cmds & cmd)
			longopts[n++] = (struct option){ table[i].name, table[i].has_arg, NULL,
							 table[i].id };
	longopts[n] = (struct option){ 0 };

	/* --json first, so that a usage error is reported as JSON too; on
	 * stderr when --out - sends the output itself to stdout. */
	opterr = 0;
	optind = 0;
	{
		/* on a copy: getopt_long permutes what it scans */
		char *copy[argc + 1];
		const char *out = NULL;
		bool json = false;

		memcpy(copy, argv, sizeof(char *) * (size_t)argc);
		copy[argc] = NULL;
		while ((c = getopt_long(argc, copy, ":h", longopts, NULL)) != -1)
			if (c == O_JSON)
				json = true;
			else if (c == O_OUT)
				out = optarg;
		if (json)
			cli_json_errors(out && !strcmp(out, "-") ? stderr : stdout);
	}
	optind = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		const char *v = optarg;
		size_t z;
		int k;

		switch (c) {
		case O_HELP:
			usage_cmd(cmd, stdout);
			return 0;
		case O_BUDGET:
			if (parse_size(v, &a->lazy.budget, true))
				return usage_err(a, "--budget: '%s' is not a size (256M, 1G, unlimited)", v);
			if (!a->lazy.budget)
				return usage_err(a, "--budget%s: a budget of 0 is too small", "");
			break;
		case O_CHUNK:
			if (parse_size(v, &a->lazy.chunk, false) || !a->lazy.chunk)
				return usage_err(a, "--chunk: '%s' is not a size (1M, 4M)", v);
			break;
		case O_BACKEND:
			k = pm_backend_parse(v);
			if (k < 0 || k == PM_BACKEND_NONE)
				return usage_err(a, "--backend: '%s' is not auto, uffd, sigsegv or eager", v);
			a->lazy.backend = k;
			a->backend_set = k != PM_BACKEND_AUTO;
			break;
		case O_THREADS:
			if (parse_count(v, 1024, &z) || !z)
				return usage_err(a, "--threads: '%s' is not a count from 1 to 1024", v);
			a->lazy.threads = (int)z;
			break;
		case O_BLAS_THREADS:
			if (parse_count(v, 1024, &z) || !z)
				return usage_err(a, "--blas-threads: '%s' is not a count from 1 to 1024", v);
			a->blas_threads = (int)z;
			break;
		case O_DTYPE:
			a->dtype = parse_out_dtype(v, cmd);
			if (a->dtype < 0)
				return usage_err(a,
						 cmd == CMD_APPLY ? "--dtype: '%s' is not f32 or f64"
								  : "--dtype: '%s' is not f32, f64, same or "
								    "the image's dtype",
						 v);
			break;
		case O_ORDER:
			if (!strcmp(v, "window"))
				a->order = PM_ORDER_WINDOW;
			else if (!strcmp(v, "channel"))
				a->order = PM_ORDER_CHANNEL;
			else
				return usage_err(a, "--order: '%s' is not window or channel", v);
			break;
		case O_QUIET:
			a->quiet = true;
			break;
		case O_JSON:
			a->json = true;
			break;
		case O_WINDOW:
			a->nwindow = parse_dims(v, a->window);
			if (a->nwindow < 0)
				return usage_err(a, "--window: '%s' is not a size like 16x16", v);
			break;
		case O_STEP:
			a->nstep = parse_dims(v, a->step);
			if (a->nstep < 0)
				return usage_err(a, "--step: '%s' is not a size like 2x2", v);
			break;
		case O_DILATION:
			a->ndilation = parse_dims(v, a->dilation);
			if (a->ndilation < 0)
				return usage_err(a, "--dilation: '%s' is not a size like 2x2", v);
			break;
		case O_PAD: {
			static const char *const modes[] = { "zero", "constant", "edge", "reflect",
							     "symmetric", "wrap" };
			size_t len = strcspn(v, ":");
			char *end;

			a->pad_mode = -1;
			for (int i = 0; i < 6; i++)
				if (strlen(modes[i]) == len && !strncmp(v, modes[i], len))
					a->pad_mode = i;
			if (a->pad_mode < 0)
				return usage_err(a, "--pad: '%s' is not zero, constant:VALUE, edge, "
						    "reflect, symmetric or wrap",
						 v);
			if ((a->pad_mode == PM_PAD_CONSTANT) != (v[len] == ':'))
				return usage_err(a, "--pad: '%s': a value goes with constant, and only "
						    "with it (constant:VALUE)",
						 v);
			if (v[len] == ':') {
				errno = 0;
				a->pad_value = strtod(v + len + 1, &end);
				if (errno || end == v + len + 1 || *end)
					return usage_err(a, "--pad: '%s' holds no number after ':'", v);
			}
			a->pad_set = true;
			break;
		}
		case O_PAD_WIDTH:
			a->npad = parse_pad_width(v, a->pad_before, a->pad_after);
			if (a->npad < 0)
				return usage_err(a, "--pad-width: '%s' is not N, BxA or a comma-separated "
						    "list of those",
						 v);
			break;
		case O_SHAPE:
			a->raw.ndim = parse_dims(v, a->raw.shape);
			if (a->raw.ndim < 0)
				return usage_err(a, "--shape: '%s' is not a shape like 480x640 or 480x640x3",
						 v);
			break;
		case O_RAW_DTYPE:
			a->raw.dtype = img_parse_dtype(v, &a->raw.big_endian);
			if (a->raw.dtype < 0)
				return usage_err(a, "--raw-dtype: '%s' is not u8, i8, u16, i16, u32, i32, "
						    "u64, i64, f16, f32, f64 or bool",
						 v);
			a->raw_dtype_set = true;
			break;
		case O_RAW_OFFSET:
			if (parse_size(v, &a->raw.offset, false))
				return usage_err(a, "--raw-offset: '%s' is not a byte count", v);
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
		case O_SEED:
			if (parse_count(v, SIZE_MAX, &z))
				return usage_err(a, "--seed: '%s' is not a non-negative integer", v);
			a->seed = z;
			break;
		case O_SAVE_FILTERS:
			a->save_filters = v;
			break;
		case O_SMALL:
			a->small = true;
			break;
		case O_SIZE:
			a->nsize = parse_dims(v, a->size);
			if (a->nsize != 2 && a->nsize != 1)
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
	if (a->raw_dtype_set && !a->raw.ndim)
		return usage_err(a, "--raw-dtype needs --shape%s", "");
	if (a->raw.offset && !a->raw.ndim)
		return usage_err(a, "--raw-offset needs --shape%s", "");
	if (cmd != CMD_INFO && !a->nwindow)
		return usage_err(a, "needs --window%s", "");
	if (cmd == CMD_INFO && !a->nwindow &&
	    (a->nstep || a->ndilation || a->pad_set || a->npad))
		return usage_err(a, "window options need --window%s", "");
	if ((cmd & (CMD_APPLY | CMD_EXPORT)) && !a->out)
		return usage_err(a, "needs --out FILE%s", "");
	if (cmd == CMD_APPLY && !a->filters == !a->random)
		return usage_err(a, "needs either --filters FILE or --random N%s", "");
	return -1;
}

/* ---------------------------------------------------------------- matrix */

int args_matrix(const struct args *a, const struct img *im, struct pm_matrix_opts *o,
		struct pm_matrix_info *info)
{
	int ndim = im->src.ndim, ns, err;
	char b1[64], b2[64];

	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	o->source = im->src;
	if (a->nwindow == 1)
		ns = ndim >= 3 ? ndim - 1 : ndim;
	else
		ns = a->nwindow;
	if (ndim == ns + 1) {
		o->source.has_channels = true;
		o->source.channel_axis = ndim - 1;
	} else if (ndim != ns) {
		return cli_err("the window has %d axes, the image %d (%s): give one per spatial axis, "
			       "channels last",
			       ns, ndim, fmt_dims(b1, sizeof(b1), im->src.shape, ndim));
	}
	if ((a->nstep > 1 && a->nstep != ns) || (a->ndilation > 1 && a->ndilation != ns) ||
	    (a->npad > 1 && a->npad != ns))
		return cli_err("--step, --dilation and --pad-width take one value, or one per spatial "
			       "axis (%d)",
			       ns);
	for (int i = 0; i < ns; i++) {
		struct pm_window *w = &o->window[i];

		w->size = a->window[a->nwindow == 1 ? 0 : i];
		w->step = a->nstep ? a->step[a->nstep == 1 ? 0 : i] : 1;
		w->dilation = a->ndilation ? a->dilation[a->ndilation == 1 ? 0 : i] : 1;
		if (a->npad) {
			w->pad_before = a->pad_before[a->npad == 1 ? 0 : i];
			w->pad_after = a->pad_after[a->npad == 1 ? 0 : i];
		} else if (a->pad_set) {
			/* "same": the window's reach, split as evenly as it goes */
			size_t reach;

			if (__builtin_mul_overflow(w->size - 1, w->dilation, &reach) ||
			    reach > (size_t)PM_MAX_PAD)
				return cli_err("the window's reach is too large to pad");
			w->pad_before = (int64_t)(reach / 2);
			w->pad_after = (int64_t)(reach - reach / 2);
		}
	}
	o->pad_mode = a->pad_set ? a->pad_mode : PM_PAD_ZERO;
	o->pad_value = a->pad_value;
	o->dtype = a->dtype >= 0 ? a->dtype : PM_DTYPE_F32;
	o->order = a->order;
	o->lazy = a->lazy;
	err = pm_matrix_describe(o, info);
	if (err == -PM_EWINDOWBIG) {
		size_t win[PM_MAX_DIMS], shp[PM_MAX_DIMS];
		int k = 0;

		for (int i = 0; i < ndim; i++)
			if (!(o->source.has_channels && i == o->source.channel_axis))
				shp[k++] = im->src.shape[i];
		for (int i = 0; i < ns; i++)
			win[i] = (o->window[i].size - 1) * o->window[i].dilation + 1;
		return cli_err("the window (%s with its dilation) is larger than the image (%s, "
			       "padding included)",
			       fmt_dims(b1, sizeof(b1), win, ns), fmt_dims(b2, sizeof(b2), shp, ns));
	}
	if (err == -PM_EPADVALUE)
		return cli_err("--pad constant:%g cannot be stored as %s, the image's dtype",
			       a->pad_value, pm_dtype_name(im->src.dtype));
	if (err)
		return cli_err("%s", pm_strerror(err));
	return 0;
}

size_t args_budget(const struct args *a)
{
	return a->lazy.budget ? a->lazy.budget : PM_DEFAULT_BUDGET;
}

size_t args_chunk(const struct args *a)
{
	return a->lazy.chunk ? a->lazy.chunk : (size_t)4 << 20;
}

int args_check_memory(const struct args *a, int backend, size_t matrix_bytes)
{
	size_t budget = args_budget(a), chunk = args_chunk(a), resident;
	uint64_t avail = meminfo_bytes("MemAvailable");
	char b1[32], b2[32], b3[32];

	if (backend != PM_BACKEND_EAGER && budget != PM_BUDGET_UNLIMITED && budget / 2 < chunk)
		return cli_err("budget %s is too small: it must hold at least two chunks of %s "
			       "(%s); raise --budget or lower --chunk",
			       fmt_size(b1, sizeof(b1), budget), fmt_size(b2, sizeof(b2), chunk),
			       fmt_size(b3, sizeof(b3), 2 * chunk));
	resident = backend == PM_BACKEND_EAGER || budget > matrix_bytes ? matrix_bytes : budget;
	if (avail && resident > avail)
		return cli_err("%s %s of the matrix resident, more than the %s of memory available; "
			       "%s",
			       backend == PM_BACKEND_EAGER ? "the eager backend would keep all"
							   : "the budget lets",
			       fmt_bytes(b1, sizeof(b1), (double)resident),
			       fmt_bytes(b2, sizeof(b2), (double)avail),
			       backend == PM_BACKEND_EAGER ? "use a lazy backend"
							   : "give a smaller --budget");
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
		fmt_size(b1, sizeof(b1), st->budget_bytes), fmt_size(b2, sizeof(b2), st->chunk_bytes));
	fprintf(f,
		"  faults      %llu served; %llu chunks filled (%s), %llu evicted; peak %s "
		"resident\n",
		(unsigned long long)st->faults, (unsigned long long)st->chunks_filled,
		fmt_bytes(b1, sizeof(b1), (double)st->bytes_filled),
		(unsigned long long)st->evictions,
		fmt_bytes(b2, sizeof(b2), (double)st->peak_resident_bytes));
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

void report_info_json(struct json *j, const struct pm_matrix_info *info)
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
	json_close(j, '}');
}

void report_image_text(FILE *f, const char *path, const struct img *im)
{
	char b1[64], b2[32];

	fprintf(f, "image %s: %s, %s %s (%s order)%s, %s file\n", path, im->format,
		fmt_dims(b1, sizeof(b1), im->src.shape, im->src.ndim), pm_dtype_name(im->src.dtype),
		im->layout, im->converted ? ", byte-swapped into a copy" : "",
		fmt_bytes(b2, sizeof(b2), (double)im->file_bytes));
}
