/* cli.c: the helpers every patchmap subcommand uses (see cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
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
	fprintf(stderr, "patchmap: %s\n", msg);
	return -1;
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

int parse_size(const char *s, size_t *out, bool allow_unlimited)
{
	unsigned shift = 0;
	char *end;
	double v;

	if (!s || !*s)
		return -1;
	if (allow_unlimited && !strcasecmp(s, "unlimited")) {
		*out = PM_BUDGET_UNLIMITED;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (shift && (!strcasecmp(end, "ib") || !strcasecmp(end, "b")))
		end += strlen(end);
	else if (!shift && !strcasecmp(end, "b"))
		end++;
	if (*end)
		return -1;
	v *= (double)((uint64_t)1 << shift);
	if (!(v >= 0) || v >= 18446744073709551616.0 || v != floor(v))
		return -1;
	*out = (size_t)v;
	return 0;
}

int parse_dims(const char *s, size_t *v)
{
	int n = 0;

	if (!s || !*s)
		return -1;
	for (;;) {
		char buf[32];
		size_t len = strcspn(s, "xX");

		if (n == PM_MAX_DIMS || len == 0 || len >= sizeof(buf))
			return -1;
		memcpy(buf, s, len);
		buf[len] = 0;
		if (parse_count(buf, (size_t)1 << 40, &v[n]) || v[n] == 0)
			return -1;
		n++;
		s += len;
		if (!*s)
			return n;
		s++;
	}
}

int parse_pad_width(const char *s, int64_t *before, int64_t *after)
{
	int n = 0;

	if (!s || !*s)
		return -1;
	for (;;) {
		char buf[64];
		size_t len = strcspn(s, ","), d[PM_MAX_DIMS], b;
		int k;

		if (n == PM_MAX_DIMS || len == 0 || len >= sizeof(buf))
			return -1;
		memcpy(buf, s, len);
		buf[len] = 0;
		/* N or BxA; a zero pad is allowed, so parse the parts by hand */
		k = 0;
		for (char *p = buf, *q;; p = q + 1) {
			q = p + strcspn(p, "xX");
			char c = *q;
			*q = 0;
			if (k == 2 || parse_count(p, (size_t)PM_MAX_PAD, &b))
				return -1;
			d[k++] = b;
			if (!c)
				break;
		}
		before[n] = (int64_t)d[0];
		after[n] = (int64_t)(k == 2 ? d[1] : d[0]);
		n++;
		s += len;
		if (!*s)
			return n;
		s++;
	}
}

/* ---------------------------------------------------------------- words */

const char *fmt_bytes(char *buf, size_t n, double bytes)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int u = 0;

	while (bytes >= 1024 && u < 5)
		bytes /= 1024, u++;
	if (u == 0)
		snprintf(buf, n, "%.0f bytes", bytes);
	else
		snprintf(buf, n, bytes < 10 ? "%.2f %s" : bytes < 100 ? "%.1f %s" : "%.0f %s", bytes,
			 unit[u]);
	return buf;
}

const char *fmt_size(char *buf, size_t n, size_t bytes)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	if (bytes == PM_BUDGET_UNLIMITED) {
		snprintf(buf, n, "unlimited");
		return buf;
	}
	while (u < 4 && bytes >= 1024 && bytes % 1024 == 0)
		bytes /= 1024, u++;
	snprintf(buf, n, "%zu %s", bytes, unit[u]);
	return buf;
}

const char *fmt_dims(char *buf, size_t n, const size_t *v, int count)
{
	size_t k = 0;

	buf[0] = 0;
	for (int a = 0; a < count && k < n; a++)
		k += (size_t)snprintf(buf + k, n - k, a ? "x%zu" : "%zu", v[a]);
	return buf;
}

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

/* ---------------------------------------------------------------- JSON */

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2;
	else if (*p >= 0xe0 && *p <= 0xef)
		n = 3, lo = *p == 0xe0 ? 0xa0 : 0x80, hi = *p == 0xed ? 0x9f : 0xbf;
	else if (*p >= 0xf0 && *p <= 0xf4)
		n = 4, lo = *p == 0xf0 ? 0x90 : 0x80, hi = *p == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* A JSON string; a byte that is not UTF-8 (a file name may hold any)
 * becomes U+FFFD, so that the report stays valid JSON. */
static void put_str(FILE *f, const char *v)
{
	if (!v) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)v; *p;) {
		size_t n = utf8_len(p);

		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else if (n)
			fwrite(p, 1, n, f);
		else
			fputs("\\ufffd", f);
		p += n ? n : 1;
	}
	fputc('"', f);
}

/* The comma before a member, and its key inside an object. */
static void json_key(struct json *j, const char *key)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = false;
	if (key) {
		put_str(j->f, key);
		fputc(':', j->f);
	}
}

void json_begin(struct json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	fputc('{', f);
	j->first[0] = true;
}

void json_end(struct json *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

static void json_open(struct json *j, const char *key, char bracket)
{
	json_key(j, key);
	fputc(bracket, j->f);
	if (j->depth + 1 < (int)(sizeof(j->first) / sizeof(j->first[0])))
		j->depth++;
	j->first[j->depth] = true;
}

void json_obj(struct json *j, const char *key)
{
	json_open(j, key, '{');
}

void json_arr(struct json *j, const char *key)
{
	json_open(j, key, '[');
}

void json_close(struct json *j, char bracket)
{
	fputc(bracket, j->f);
	if (j->depth)
		j->depth--;
}

void json_str(struct json *j, const char *key, const char *v)
{
	json_key(j, key);
	put_str(j->f, v);
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	fprintf(j->f, "%lld", (long long)v);
}

void json_num(struct json *j, const char *key, double v)
{
	json_key(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.10g", v);
	else
		fputs("null", j->f);
}

void json_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", j->f);
}

void json_dims(struct json *j, const char *key, const size_t *v, int n)
{
	json_arr(j, key);
	for (int a = 0; a < n; a++)
		json_u64(j, NULL, v[a]);
	json_close(j, ']');
}

/* ---------------------------------------------------------------- output */

/* The temporary a signal must remove: a copy, so the handler only reads. */
static char pending_tmp[PATH_MAX];
static volatile sig_atomic_t pending_set;
static struct sigaction old_actions[3];
static const int cleanup_signals[3] = { SIGINT, SIGTERM, SIGHUP };

static void on_signal(int sig)
{
	if (pending_set)
		unlink(pending_tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void guard_tmp(const char *tmp)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	snprintf(pending_tmp, sizeof(pending_tmp), "%s", tmp);
	pending_set = 1;
	for (int i = 0; i < 3; i++)
		sigaction(cleanup_signals[i], &sa, &old_actions[i]);
}

static void unguard_tmp(void)
{
	if (!pending_set)
		return;
	pending_set = 0;
	for (int i = 0; i < 3; i++)
		sigaction(cleanup_signals[i], &old_actions[i], NULL);
}

int out_open(struct outfile *o, const char *path, uint64_t size)
{
	sigset_t block, old_mask;
	struct stat st;
	const char *slash, *dest;
	size_t dirlen;
	mode_t mask;

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->path = path;
	if (!strcmp(path, "-") || (stat(path, &st) == 0 && !S_ISREG(st.st_mode))) {
		if (strcmp(path, "-") && S_ISDIR(st.st_mode))
			return cli_err("%s: is a directory", path);
		o->fd = strcmp(path, "-") ? open(path, O_WRONLY | O_CLOEXEC) : dup(STDOUT_FILENO);
		if (o->fd < 0)
			return cli_err("%s: cannot open: %s", path, strerror(errno));
		o->direct = true;
		o->size = size;
		/* Written where the descriptor stands (a shell's `>>` or a file
		 * already partly written), and in order when appending: the
		 * kernel ignores pwrite's offset under O_APPEND. */
		off_t at = lseek(o->fd, 0, SEEK_CUR);
		int fl = fcntl(o->fd, F_GETFL);
		o->seekable = at >= 0 && fl >= 0 && !(fl & O_APPEND);
		o->base = at >= 0 ? (uint64_t)at : 0;
		return 0;
	}
	/* A symlink is written through: its target is replaced, not the link. */
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		o->target = realpath(path, NULL);
	dest = o->target ? o->target : path;
	slash = strrchr(dest, '/');
	dirlen = slash ? (size_t)(slash - dest) + 1 : 0;
	if (!dest[dirlen] || asprintf(&o->tmp, "%.*s.%s.XXXXXX", (int)dirlen, dest, dest + dirlen) < 0) {
		o->tmp = NULL;
		out_abort(o);
		return dest == path && !path[dirlen] ? cli_err("%s: not a file name", path)
						     : cli_err("out of memory");
	}
	/* The signals wait until the handler knows the temporary's name. */
	sigemptyset(&block);
	for (int i = 0; i < 3; i++)
		sigaddset(&block, cleanup_signals[i]);
	pthread_sigmask(SIG_BLOCK, &block, &old_mask);
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd >= 0)
		guard_tmp(o->tmp);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (o->fd < 0) {
		int e = errno;

		free(o->tmp);
		o->tmp = NULL;
		out_abort(o);
		return cli_err("%s: cannot create: %s", path, strerror(e));
	}
	o->seekable = true;
	mask = umask(0);
	umask(mask);
	if (fchmod(o->fd, 0666 & ~mask)) {
		int e = errno;
		out_abort(o);
		return cli_err("%s: cannot set permissions: %s", path, strerror(e));
	}
	/* Reserve the space now: a full disk fails here, not hours later. File
	 * systems without fallocate are simply written. */
	if (size && fallocate(o->fd, 0, 0, (off_t)size) && errno != EOPNOTSUPP && errno != ENOSYS) {
		int e = errno;
		char b[32];
		out_abort(o);
		return cli_err("%s: cannot reserve %s: %s", path, fmt_bytes(b, sizeof(b), (double)size),
			       strerror(e));
	}
	return 0;
}

int out_pwrite(struct outfile *o, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	if (!o->seekable && off != o->pos)
		return -ESPIPE;
	while (len) {
		ssize_t w = o->seekable ? pwrite(o->fd, p, len, (off_t)(o->base + off)) : write(o->fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	if (!o->seekable)
		o->pos = off; /* one writer only, then */
	return 0;
}

int out_commit(struct outfile *o)
{
	int fd = o->fd;

	o->fd = -1;
	/* pwrite leaves the shared offset alone: move it past what was
	 * written, so that what the shell writes next follows it. */
	if (o->direct && o->seekable)
		lseek(fd, (off_t)(o->base + o->size), SEEK_SET);
	if (close(fd)) {
		int e = errno;
		out_abort(o);
		return cli_err("%s: cannot write: %s", o->path, strerror(e));
	}
	if (o->direct)
		return 0;
	if (rename(o->tmp, o->target ? o->target : o->path)) {
		int e = errno;
		out_abort(o);
		return cli_err("%s: cannot rename the finished file into place: %s", o->path,
			       strerror(e));
	}
	unguard_tmp();
	free(o->tmp);
	o->tmp = NULL;
	free(o->target);
	o->target = NULL;
	return 0;
}

void out_abort(struct outfile *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp) {
		unlink(o->tmp);
		unguard_tmp();
		free(o->tmp);
		o->tmp = NULL;
	}
	free(o->target);
	o->target = NULL;
}
