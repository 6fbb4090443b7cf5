/* cli.c: the helpers every patchmap subcommand uses (see cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static struct progress *active_bar;

static void clear_bar(void)
{
	if (active_bar && active_bar->drawn) {
		fputs("\r\033[K", stderr);
		active_bar->drawn = false;
	}
}

static FILE *json_errors;          /* NULL: plain text only */
static char first_error[1024];
static bool json_error_reported;

int cli_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line, whatever the message holds */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	clear_bar();
	if (json_errors && !first_error[0])
		snprintf(first_error, sizeof(first_error), "%s", msg);
	if (json_errors != stderr)
		fprintf(stderr, "patchmap: %s\n", msg);
	return -1;
}

void cli_json_errors(FILE *f)
{
	json_errors = f;
}

void cli_json_reported(void)
{
	json_error_reported = true;
}

int cli_exit(int code)
{
	if (code && json_errors && !json_error_reported) {
		struct json j;

		json_begin(&j, json_errors);
		json_str(&j, "error", first_error[0] ? first_error : "failed");
		json_i64(&j, "exit", code);
		json_end(&j);
	}
	return code;
}

/* ---------------------------------------------------------------- libvips' temporaries */

/* libvips decodes an image read front to back (PNG, JPEG, a striped TIFF)
 * of over 100 MB into a temporary file in $TMPDIR, and unlinks it only
 * once the decode is complete: Ctrl-C meanwhile would leave it there. The
 * tool gives libvips a directory of its own, removed with whatever is in
 * it at exit and on SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE (those
 * not ignored). */
static char vips_dir[PATH_MAX];
static int vips_dir_fd = -1;
#define VIPS_NSIG 5
static struct sigaction vips_old[VIPS_NSIG];
static const int vips_signals[VIPS_NSIG] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };

struct dirent64_raw {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* Unlinks what the directory open on fd holds, until a pass finds
 * nothing. Async-signal-safe: system calls only. */
static void unlink_all(int fd)
{
	char buf[4096] __attribute__((aligned(8)));
	bool any = true;

	while (any) {
		long n;

		any = false;
		lseek(fd, 0, SEEK_SET);
		while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
			for (long off = 0; off < n;) {
				struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);

				if (!(d->name[0] == '.' && (!d->name[1] ||
							    (d->name[1] == '.' && !d->name[2]))) &&
				    !unlinkat(fd, d->name, 0))
					any = true;
				off += d->reclen;
			}
	}
}

/* Async-signal-safe: system calls only. */
void cli_vips_dir_remove(void)
{
	int fd = vips_dir_fd;

	if (fd < 0)
		return;
	vips_dir_fd = -1;
	/* (a temporary libvips makes after the last pass, on another
	 * thread, keeps the directory: tried a few times) */
	for (int i = 0;; i++) {
		unlink_all(fd);
		close(fd);
		if (!rmdir(vips_dir) || errno != ENOTEMPTY || i == 3 ||
		    (fd = open(vips_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			break;
	}
}

static void vips_on_signal(int sig)
{
	cli_vips_dir_remove();
	out_pass_signal(sig, vips_signals, vips_old, VIPS_NSIG);
}

static void vips_at_exit(void)
{
	cli_vips_dir_remove();
}

void cli_vips_dir(void)
{
	const char *base = getenv("TMPDIR");
	sigset_t all, old;

	if (vips_dir[0])
		return;
	if (!base || !*base)
		base = "/tmp";
	if (snprintf(vips_dir, sizeof(vips_dir), "%s/patchmap-vips-XXXXXX", base) >=
	    (int)sizeof(vips_dir))
		goto none;
	/* no signal between the directory's making and its handler */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (!mkdtemp(vips_dir)) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		goto none;
	}
	vips_dir_fd = open(vips_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (vips_dir_fd < 0) {
		rmdir(vips_dir);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		goto none;
	}
	out_catch_signals(vips_signals, vips_old, VIPS_NSIG, vips_on_signal);
	atexit(vips_at_exit);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* libvips reads TMPDIR each time it makes a temporary */
	setenv("TMPDIR", vips_dir, 1);
	return;
none:
	vips_dir[0] = '/'; /* tried: libvips uses TMPDIR as it is */
	vips_dir[1] = 0;
}

/* ---------------------------------------------------------------- parsing */

int parse_count(const char *s, size_t max, size_t *out)
{
	size_t v = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (size_t)(*s - '0'), &v))
			return -1;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* ---------------------------------------------------------------- words */

const char *fmt_mechanism(char *buf, size_t n, unsigned mech)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ PM_MECH_UFFD_FULL, "userfaultfd" },
		{ PM_MECH_UFFD_USER_ONLY, "userfaultfd user-mode-only" },
		{ PM_MECH_MOVE, "UFFDIO_MOVE" },
		{ PM_MECH_COPY, "UFFDIO_COPY" },
		{ PM_MECH_MREMAP, "SIGSEGV + mremap" },
		{ PM_MECH_HUGEPAGES, "2 MiB huge pages" },
		{ PM_MECH_WRITE_PROTECT, "write-protected" },
		{ PM_MECH_POISON, "poison on failure" },
	};
	size_t k = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && k < n; i++)
		if (mech & names[i].bit)
			k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", names[i].name);
	if (!k)
		snprintf(buf, n, "ordinary memory");
	return buf;
}

/* ---------------------------------------------------------------- system */

double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t proc_field(const char *file, const char *field)
{
	char line[256];
	size_t n = strlen(field);
	uint64_t v = 0;
	FILE *f = fopen(file, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			v = strtoull(line + n + 1, NULL, 10) * 1024; /* the files say kB */
			break;
		}
	fclose(f);
	return v;
}

uint64_t meminfo_bytes(const char *field)
{
	return proc_field("/proc/meminfo", field);
}

uint64_t status_bytes(const char *field)
{
	return proc_field("/proc/self/status", field);
}

int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* ---------------------------------------------------------------- progress */

void progress_start(struct progress *p, const char *label, double total, bool allowed)
{
	memset(p, 0, sizeof(*p));
	p->enabled = allowed && isatty(STDERR_FILENO);
	p->t0 = now_s();
	p->total = total > 0 ? total : 1;
	p->label = label;
	active_bar = p;
}

void progress_update(struct progress *p, double done)
{
	enum { WIDTH = 30 };
	char bar[WIDTH + 1];
	double t, frac, eta;
	int fill;

	if (!p->enabled)
		return;
	t = now_s();
	if (t - p->t0 < 1.0 || t - p->last < 0.1)
		return;
	p->last = t;
	frac = done / p->total;
	frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
	fill = (int)(frac * WIDTH);
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(WIDTH - fill));
	bar[WIDTH] = 0;
	eta = frac > 0 ? (t - p->t0) * (1 - frac) / frac : 0;
	fprintf(stderr, "\r%s [%s] %3.0f%%  %.0f s, %.0f s left\033[K", p->label, bar, frac * 100,
		t - p->t0, eta);
	p->drawn = true;
}

void progress_end(struct progress *p)
{
	if (active_bar == p)
		clear_bar();
	if (active_bar == p)
		active_bar = NULL;
}


/* ---------------------------------------------------------------- output */

/* The files an output of this command must not be. */
static int inputs_of(const char *path, const struct args *a, struct out_input *in)
{
	int n = 0;

	in[n++] = (struct out_input){ a->image, a->cmd == CMD_FOLD ? "the input matrix" : "the image" };
	if (a->opt.rows_path)
		in[n++] = (struct out_input){ a->opt.rows_path, "the --rows file" };
	if (a->opt.mask_path)
		in[n++] = (struct out_input){ a->opt.mask_path, "the --mask file" };
	if (a->filters)
		in[n++] = (struct out_input){ a->filters, "the filters file" };
	if (a->out && path != a->out)
		in[n++] = (struct out_input){ a->out, "the --out file" };
	if (a->save_filters && path != a->save_filters)
		in[n++] = (struct out_input){ a->save_filters, "the --save-filters file" };
	return n;
}

int cli_out_check(const char *path, const struct args *a)
{
	struct out_input in[6];
	char err[OUT_ERRLEN];

	if (out_check(path, in, inputs_of(path, a, in), err))
		return cli_err("%s", err);
	return 0;
}

int cli_out_open(struct outfile *o, const char *path, uint64_t size, const struct args *a)
{
	struct out_input in[6];
	char err[OUT_ERRLEN];

	if (out_open(o, path, size, in, inputs_of(path, a, in), err))
		return cli_err("%s", err);
	return 0;
}

bool cli_on_stdout(const char *path)
{
	return path && out_fd(path) == STDOUT_FILENO;
}

int cli_report_done(FILE *f)
{
	if (f == stdout && (fflush(f) || ferror(f)))
		return cli_err("standard output: %s", strerror(errno ? errno : EIO));
	return 0;
}

int cli_out_close(struct outfile *o)
{
	char err[OUT_ERRLEN];

	if (out_close(o, err))
		return cli_err("%s", err);
	return 0;
}

int cli_out_commit(struct outfile *o)
{
	char err[OUT_ERRLEN];

	if (out_commit(o, err))
		return cli_err("%s", err);
	return 0;
}

int cli_out_commit_pair(struct outfile *a, struct outfile *b)
{
	char err[OUT_ERRLEN];

	if (out_commit_pair(a, b, err)) {
		cli_err("%s", err);
		out_deliver_deferred();
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- images */

/* The handler may run in any thread, the library's included, and must stay
 * async-signal-safe: it only checks that the fault is the image's (an
 * address in the file's mapping, or a decoding failure: an atomic load),
 * wakes the watcher through a pipe with the cause and parks the thread
 * that faulted, whose read can never complete. The watcher, an ordinary
 * thread, does the rest. */
enum { GUARD_DECODE = 1, GUARD_SHRANK = 2 };

static const struct img *guard_img;
static const char *guard_path;
static const char *guard_lo, *guard_hi; /* the file's mapping, whole pages */
static int guard_pipe[2] = { -1, -1 };
static struct sigaction guard_old;
static pthread_t guard_thread;
static bool guarded;

static void on_image_bus(int sig, siginfo_t *si, void *uc)
{
	const char *addr = si->si_addr;
	char c = 0;

	(void)uc;
	/* BUS_ADRERR: a page of a mapping past the end of its file, which
	 * only a file that shrank after it was mapped can give */
	if (guard_img && si->si_code == BUS_ADRERR && addr >= guard_lo && addr < guard_hi)
		c = GUARD_SHRANK;
	else if (guard_img && img_vips_failed(guard_img))
		c = GUARD_DECODE;
	if (!c) {
		/* not the image's: what SIGBUS did before */
		sigaction(SIGBUS, &guard_old, NULL);
		raise(sig);
		return;
	}
	if (write(guard_pipe[1], &c, 1) < 0) {
		/* nothing to be done here: the watcher never wakes, the
		 * default action ends the process */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	for (;;)
		pause();
}

static void *guard_watch(void *arg)
{
	char c, msg[512];
	struct stat st;
	ssize_t n;

	(void)arg;
	while ((n = read(guard_pipe[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n <= 0) /* unguarded: the command ended */
		return NULL;
	out_remove_pending();
	if (c == GUARD_SHRANK) {
		/* the size now, by name: the file the tool mapped, unless
		 * it was replaced too */
		if (!stat(guard_path, &st) && (uint64_t)st.st_size < guard_img->map_len)
			snprintf(msg, sizeof(msg), "from %zu to %lld bytes", guard_img->map_len,
				 (long long)st.st_size);
		else
			snprintf(msg, sizeof(msg), "it had %zu bytes", guard_img->map_len);
		cli_err("%s: the file shrank while being read (%s): it must not change until "
			"the command ends",
			guard_path, msg);
	} else {
		img_vips_error(guard_img, msg, sizeof(msg));
		cli_err("%s: %s", guard_path, msg[0] ? msg : "a part of the image failed to decode");
	}
	cli_exit(1);
	cli_vips_dir_remove();
	fflush(stdout);
	fflush(stderr);
	_exit(1);
}

int cli_image_guard(const struct img *im, const char *path)
{
	bool mapped = im->map && !im->map_is_heap;
	struct sigaction sa;
	sigset_t all, old;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int e;

	if ((!im->vips_open && !mapped) || guarded)
		return 0;
	if (pipe2(guard_pipe, O_CLOEXEC))
		return cli_err("cannot watch the image's file: %s", strerror(errno));
	guard_img = im;
	guard_path = path;
	guard_lo = mapped ? im->map : NULL;
	guard_hi = mapped ? (const char *)im->map + (im->map_len + page - 1) / page * page : NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_image_bus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	/* the watcher takes no signal: the tool's threads handle them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&guard_thread, NULL, guard_watch, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		close(guard_pipe[0]);
		close(guard_pipe[1]);
		return cli_err("cannot watch the image's file: %s", strerror(e));
	}
	if (sigaction(SIGBUS, &sa, &guard_old)) {
		e = errno;
		close(guard_pipe[1]);
		pthread_join(guard_thread, NULL);
		close(guard_pipe[0]);
		return cli_err("cannot watch the image's file: %s", strerror(e));
	}
	guarded = true;
	return 0;
}

void cli_image_unguard(void)
{
	if (!guarded)
		return;
	sigaction(SIGBUS, &guard_old, NULL);
	close(guard_pipe[1]);
	pthread_join(guard_thread, NULL);
	close(guard_pipe[0]);
	guard_img = NULL;
	guard_lo = guard_hi = NULL;
	guarded = false;
}
