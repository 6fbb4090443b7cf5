/* cli.h: what the patchmap subcommands share: option parsing, the one-line
 * error, sizes in words, /proc figures, the progress bar, the JSON report
 * and output files written under a temporary name. */
#ifndef PM_TOOLS_CLI_H
#define PM_TOOLS_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"
#include "json.h"
#include "options.h"
#include "outfile.h"
#include "text.h"
#include "patchmap.h"

/* Exit codes: 0 success, 1 failure while working, 2 bad usage. */
enum { EXIT_USAGE = 2 };

/* Prints "patchmap: <message>" on one line of stderr (after clearing a
 * progress bar) and returns -1. Under cli_json_errors(), the first message
 * is also kept for cli_exit(). */
int cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* From now on, a failure is also reported as JSON, {"error": "...",
 * "exit": N}, on f; the line goes to stderr only when f is not stderr. */
void cli_json_errors(FILE *f);
/* The end of the program: under cli_json_errors(), a non-zero code
 * reports the first error as JSON, unless cli_json_reported() said that the
 * command's report already holds it. Returns code. */
int cli_exit(int code);
void cli_json_reported(void);

/* ---------------------------------------------------------------- parsing */

/* A non-negative integer that fits in `max`, for the tool's own counts
 * (--random, --seed): 0, or -1. */
int parse_count(const char *s, size_t max, size_t *out);

/* ---------------------------------------------------------------- words */

/* "uffd-full, move, hugepages": the PM_MECH_* bits in words. */
const char *fmt_mechanism(char *buf, size_t n, unsigned mech);

/* ---------------------------------------------------------------- system */

double now_s(void);
/* A /proc/meminfo field in bytes (MemTotal, MemAvailable), or 0. */
uint64_t meminfo_bytes(const char *field);
/* A /proc/self/status field in bytes (VmHWM, VmRSS), or 0. */
uint64_t status_bytes(const char *field);
int online_cpus(void);

/* ---------------------------------------------------------------- progress */

/* A bar on stderr for work that lasts more than about a second, drawn only
 * when stderr is a terminal and the caller allows it. Not thread-safe: one
 * thread updates it. */
struct progress {
	bool enabled, drawn;
	double t0, last;
	double total;
	const char *label;
};
void progress_start(struct progress *p, const char *label, double total, bool allowed);
void progress_update(struct progress *p, double done);
void progress_end(struct progress *p);

/* ---------------------------------------------------------------- options */

/* The subcommands, as bits of the options each accepts. */
enum {
	CMD_DEMO = 1 << 0,
	CMD_INFO = 1 << 1,
	CMD_APPLY = 1 << 2,
	CMD_EXPORT = 1 << 3,
	CMD_FOLD = 1 << 4,
};

/* Everything the command line can say. */
struct args {
	int cmd;
	const char *prog_cmd;         /* "info", ... */
	const char *image;            /* the positional argument */
	/* the image and matrix options, as the grammar reads them */
	struct fe_options opt;
	bool spec_given, window_given;
	bool backend_given;           /* --backend, even auto */
	const char *dtype_text;       /* --dtype as given, or NULL (fold) */
	/* run */
	bool quiet, json;
	int blas_threads;             /* 0: the command's default */
	const char *out;
	/* apply */
	const char *filters;
	size_t random;
	uint64_t seed;
	const char *save_filters;
	/* fold */
	size_t image_shape[PM_MAX_DIMS];
	int image_ndim;
	int fold_mode;                /* enum pm_fold_mode */
	/* demo */
	bool small;
	size_t size[2];
	int nsize;
	size_t window[PM_MAX_DIMS];   /* demo: its square window's side */
	int nwindow;
	size_t nfilters;
	const char *inject;           /* demo: spoil a response ("value", ...) */
};

/* Parses argv (argv[0] is the subcommand) into a. Returns -1 to go on, or
 * the exit code to end with: 0 after --help, EXIT_USAGE after a usage error
 * (reported). args_free() frees what a holds. */
int args_parse(struct args *a, int cmd, int argc, char **argv);
void args_free(struct args *a);
/* Prints the program's usage (to stdout). */
void usage_program(FILE *f);

/* The image's source and the options as matrix options (pm_spec_matrix)
 * and a row selection (fe_options_rows; free with fe_rows_free), checked by
 * pm_matrix_describe_rows into *info. 0, or -1 after cli_err. */
int args_matrix(const struct args *a, const struct img *im, struct pm_matrix_opts *o,
		struct fe_rows *sel, struct pm_matrix_info *info);
/* The library's memory policy (pm_spec_check_memory): a budget smaller
 * than two chunks, a resident bound larger than the available memory. 0,
 * or -1 after cli_err. */
int args_check_memory(const struct args *a, const struct pm_matrix_info *info);
/* The budget and chunk in force for these options (defaults resolved). */
size_t args_budget(const struct pm_matrix_opts *o);
size_t args_chunk(const struct pm_matrix_opts *o);

/* The lazy statistics, in words or as JSON members. */
void report_stats_text(FILE *f, const struct pm_stats *st, int threads);
void report_stats_json(struct json *j, const struct pm_stats *st);
void report_image_json(struct json *j, const char *path, const struct img *im);
void report_image_text(FILE *f, const char *path, const struct img *im);

/* ---------------------------------------------------------------- output */

/* out_check(), out_open(), out_close() and out_commit() against the command's inputs
 * (the image, the filters file, and the other of --out and
 * --save-filters), reporting with cli_err(): 0, or -1. */
int cli_out_check(const char *path, const struct args *a);
int cli_out_open(struct outfile *o, const char *path, uint64_t size, const struct args *a);
int cli_out_close(struct outfile *o);
int cli_out_commit(struct outfile *o);
int cli_out_commit_pair(struct outfile *a, struct outfile *b);
/* Gives libvips a temporary directory of the tool's own (TMPDIR), removed
 * with its contents at exit and on SIGINT, SIGTERM, SIGHUP, SIGQUIT and
 * SIGPIPE (those not ignored): call before
 * an image is opened. Where none can be made, TMPDIR stays. */
void cli_vips_dir(void);
/* Removes it now (async-signal-safe). */
void cli_vips_dir_remove(void);
/* True when path (NULL: no such output) is written to standard output:
 * "-", /dev/stdout, /dev/fd/1, ... (out_fd). The report then goes to
 * stderr, so as not to mix with it. */
bool cli_on_stdout(const char *path);
/* The end of a report on f, before the outputs are renamed into place: a
 * report that cannot be written to stdout fails the command, which then
 * keeps the old files, so that exit status and files agree. 0, or -1
 * after cli_err. */
int cli_report_done(FILE *f);

/* ---------------------------------------------------------------- images */

/* An image whose pixels fail in the middle of a command reaches the thread
 * that read them as SIGBUS: a thread of the tool, or a filler thread of the
 * matrix. For a libvips image (im->vips_open), a part that fails to decode
 * (the region contract); for a file img_open mapped (.npy, PGM, PPM, raw),
 * a file that shrank after it was mapped. While guarded, the tool turns
 * that into its one-line error naming the file and the cause, removes the
 * output's temporary (out_remove_pending) and exits with status 1. Nothing
 * for an image read into memory (a pipe). One image at a time. 0, or -1
 * after cli_err. cli_image_unguard() ends it (a no-op when not guarded). */
int cli_image_guard(const struct img *im, const char *path);
void cli_image_unguard(void);

/* ---------------------------------------------------------------- commands */

int cmd_demo(const struct args *a);
/* fold.c: `patchmap fold`, the way back from a matrix to an image. */
int cmd_fold(const struct args *a);
/* doctor.c: `patchmap doctor [--json]`; argv[0] is "doctor". The exit code. */
int cmd_doctor(int argc, char **argv);
/* OpenBLAS threads: --blas-threads, else the CPUs the filler threads leave. */
int default_blas_threads(const struct args *a, const struct pm_matrix_opts *o);
/* The library's filler threads for these options (0 when not lazy). */
int lib_threads(const struct pm_matrix_opts *o, const struct pm_stats *st);
/* Rows per GEMM block: a quarter of the budget of matrix rows, at most 64
 * MiB of them, and at most 16 MiB of nout responses of es bytes each. */
size_t block_rows(size_t rows, size_t row_bytes, size_t nout, size_t es, size_t budget);

#endif
