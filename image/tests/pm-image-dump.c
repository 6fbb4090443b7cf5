/* pm-image-dump.c: drives libpatchmap-image for the tests and the bench.
 *
 *   pm-image-dump MODE PATH [key=value ...]
 *
 * MODE info: prints the image's info as key=value lines.
 * MODE source: writes the decoded image (the region's bytes, read through
 *   its mapping, or with pm_matrix_read-free memcpy) to out=FILE.
 * MODE matrix: builds the patch matrix over the image's source and writes it
 *   to out=FILE, read through the matrix's mapping, or with pm_matrix_read
 *   for mbackend=none.
 * MODE scan: reads the whole matrix (mapping or pm_matrix_read, in blocks),
 *   prints a checksum of its bytes, the time, the stats of both layers and
 *   the process's peak RSS (VmHWM, KiB) and RSS before the open.
 * MODE race: rounds=N times, opens the image and its matrix (mbackend none)
 *   and lets readers=K threads read the whole matrix at once, each with
 *   pm_image_matrix_read, reader i from i/K of the way in round to it
 *   (so that their fills meet a damaged part at once); prints, per round,
 *   the readers' results and pm_image_error's code and message:
 *   "round I: RESULT... : CODE MESSAGE". With opener=FILE,FILE... a thread
 *   opens and closes those files in turn meanwhile.
 * MODE late: reads row A of the image in a thread of its own, opens the
 *   first file of opener= 100 ms later, then reads row B (rows=A,B), each
 *   row with pm_image_matrix_read of a 1 x 1 window matrix; prints
 *   "row A: RESULT" and "row B: RESULT", B first when it ends first.
 *
 * Keys: page level bands=0,2 ibackend ibudget ichunk ithreads (the image's
 * region), mbackend mbudget mchunk mthreads (the matrix), window=HxW
 * step=HxW dtype=same|float32|float64 order=window|channel out=FILE, and for
 * race rounds=N readers=K opener=FILE,FILE..., for late rows=A,B opener=FILE.
 * A failed fill read in the main thread (a SIGBUS inside the image's region)
 * is caught: the driver prints "decode error: <pm_image_error's message>"
 * on stderr and exits 3. Other errors: a message and exit 2. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "patchmap-image.h"

static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_armed;
static pid_t main_tid;

/* A SIGBUS in the main thread while it reads: jump back to main, which asks
 * the image whether a fill failed (a backend raises this SIGBUS with
 * tgkill, so si_addr does not say where). Any other SIGBUS (another thread,
 * or no fill error) takes the default action. */
static void on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (bus_armed && gettid() == main_tid)
		siglongjmp(bus_jump, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void die(const char *what, int ret, const char *msg)
{
	fprintf(stderr, "%s: %s%s%s\n", what, pm_image_strerror(ret), msg && *msg ? ": " : "",
		msg ? msg : "");
	exit(2);
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	switch (*end) {
	case 'k': case 'K': v *= 1024; break;
	case 'm': case 'M': v *= 1024 * 1024; break;
	case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
	default: break;
	}
	return (size_t)v;
}

static int parse_pair(const char *s, size_t v[2])
{
	char *end;

	v[0] = strtoul(s, &end, 10);
	v[1] = *end == 'x' ? strtoul(end + 1, NULL, 10) : v[0];
	return 0;
}

static long status_kib(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void decode_failed(pm_image *im)
{
	char msg[512];
	int ret = pm_image_error(im, msg, sizeof msg);

	if (!ret) {
		signal(SIGBUS, SIG_DFL);
		raise(SIGBUS);
	}
	fprintf(stderr, "decode error: %s: %s\n", pm_image_strerror(ret), msg);
	fflush(stderr);
	_exit(3);
}

struct reader {
	pthread_t t;
	pthread_barrier_t *go;
	const pm_matrix *m;
	size_t first;               /* the block it starts at */
	int ret;
};

#define RACE_BLOCK 4096

/* One reader of the race mode: the whole matrix, a block at a time from
 * block `first` round to it, until the first error. */
static void *read_all(void *arg)
{
	struct reader *r = arg;
	size_t n = pm_matrix_bytes(r->m), blocks = (n + RACE_BLOCK - 1) / RACE_BLOCK;
	char buf[RACE_BLOCK];

	pthread_barrier_wait(r->go);
	for (size_t i = 0; i < blocks && !r->ret; i++) {
		size_t off = (r->first + i) % blocks * RACE_BLOCK;

		r->ret = pm_image_matrix_read(r->m, off, buf,
					      n - off < RACE_BLOCK ? n - off : RACE_BLOCK);
	}
	return NULL;
}

static atomic_bool race_done;

/* The matrix mo describes over im's pixels, read with pm_matrix_read. */
static pm_matrix *matrix_over(pm_image *im, struct pm_matrix_opts *mo)
{
	pm_matrix *m;
	int ret;

	mo->source = *pm_image_source(im);
	mo->lazy.backend = PM_BACKEND_NONE;
	ret = pm_matrix_open(mo, &m);
	if (ret)
		die("matrix", ret, NULL);
	return m;
}

/* Opens and closes the comma-separated files of `arg` in turn until the
 * rounds end: opens that succeed, and opens that libvips refuses. */
static void *open_in_turn(void *arg)
{
	char *names[8], *save, *p = strtok_r(arg, ",", &save);
	int n = 0;

	for (; p && n < 8; p = strtok_r(NULL, ",", &save))
		names[n++] = p;
	for (int k = 0; n && !atomic_load(&race_done); k = (k + 1) % n) {
		struct pm_image_opts io = { .size = sizeof io };
		pm_image *im;

		if (!pm_image_open(names[k], &io, &im, NULL, 0))
			pm_image_close(im);
	}
	return NULL;
}

/* MODE race: many fills at once, perhaps while other files are opened:
 * the message must be the decoder's when a fill fails, and none may fail
 * on a whole file. */
static int race(const char *path, const struct pm_image_opts *io, struct pm_matrix_opts *mo,
		int rounds, int readers, char *opener)
{
	struct reader r[16];
	pthread_barrier_t go;
	pthread_t opener_t;
	char msg[512];

	if (readers < 1 || readers > 16)
		die("readers", -EINVAL, "1 to 16");
	if (opener && pthread_create(&opener_t, NULL, open_in_turn, opener))
		die("thread", -EAGAIN, NULL);
	for (int round = 0; round < rounds; round++) {
		pm_image *im;
		pm_matrix *m;
		size_t blocks;
		int ret = pm_image_open(path, io, &im, msg, sizeof msg);

		if (ret)
			die("open", ret, msg);
		m = matrix_over(im, mo);
		blocks = (pm_matrix_bytes(m) + RACE_BLOCK - 1) / RACE_BLOCK;
		if (pthread_barrier_init(&go, NULL, (unsigned)readers))
			die("barrier", -EAGAIN, NULL);
		for (int i = 0; i < readers; i++) {
			r[i] = (struct reader){ .go = &go, .m = m,
						.first = blocks * (size_t)i / (size_t)readers };
			if (pthread_create(&r[i].t, NULL, read_all, &r[i]))
				die("thread", -EAGAIN, NULL);
		}
		printf("round %d:", round);
		for (int i = 0; i < readers; i++) {
			pthread_join(r[i].t, NULL);
			printf(" %d", r[i].ret);
		}
		pthread_barrier_destroy(&go);
		ret = pm_image_error(im, msg, sizeof msg);
		printf(" : %d %s\n", ret, msg);
		pm_matrix_close(m);
		pm_image_close(im);
	}
	atomic_store(&race_done, true);
	if (opener)
		pthread_join(opener_t, NULL);
	return 0;
}

struct row_read {
	pthread_t t;
	const pm_matrix *m;
	size_t row, row_bytes;
	int ret;
};

static void *read_row(void *arg)
{
	struct row_read *r = arg;
	unsigned char *buf = malloc(r->row_bytes);

	r->ret = buf ? pm_image_matrix_read(r->m, r->row * r->row_bytes, buf, r->row_bytes)
		     : -ENOMEM;
	printf("row %zu: %d\n", r->row, r->ret);
	fflush(stdout);
	free(buf);
	return NULL;
}

/* MODE late: a fill that starts after another image's open took the text
 * of this image's failure must still fail. */
static int late(pm_image *im, struct pm_matrix_opts *mo, const char *rows, const char *other)
{
	struct pm_image_info info;
	struct pm_image_opts io = { .size = sizeof io };
	struct row_read a, b;
	pm_matrix *m;
	pm_image *o;
	char *end;

	pm_image_info(im, &info);
	for (int i = 0; i < 2; i++)
		mo->window[i] = (struct pm_window){ .size = 1, .step = 1, .dilation = 1 };
	m = matrix_over(im, mo);
	a = (struct row_read){ .m = m, .row_bytes = pm_matrix_bytes(m) / (size_t)info.height };
	b = a;
	a.row = strtoul(rows, &end, 10);
	b.row = *end == ',' ? strtoul(end + 1, NULL, 10) : 0;
	if (pthread_create(&a.t, NULL, read_row, &a))
		die("thread", -EAGAIN, NULL);
	nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
	if (!pm_image_open(other, &io, &o, NULL, 0))
		pm_image_close(o);
	if (pthread_create(&b.t, NULL, read_row, &b))
		die("thread", -EAGAIN, NULL);
	pthread_join(b.t, NULL);
	pthread_join(a.t, NULL);
	pm_matrix_close(m);
	pm_image_close(im);
	return 0;
}

int main(int argc, char **argv)
{
	struct pm_image_opts io = { .size = sizeof io };
	struct pm_matrix_opts mo = { .size = sizeof mo };
	struct pm_image_info info;
	struct pm_stats ist = { 0 }, mst = { 0 };
	int bands[16], nbands = 0, ret, rounds = 1, readers = 2;
	char *opener = NULL, *rows = NULL;
	size_t win[2] = { 1, 1 }, step[2] = { 1, 1 };
	const char *mode, *path;
	static const char *out;
	static pm_image *im;
	static pm_matrix *m;
	char msg[512];


	struct sigaction sa = { .sa_sigaction = on_bus, .sa_flags = SA_SIGINFO | SA_NODEFER };
	long rss0;
	double t_open;

	if (argc < 3) {
		fprintf(stderr, "usage: pm-image-dump info|source|matrix|scan|race|late PATH "
			"[key=value ...]\n");
		return 2;
	}
	mode = argv[1];
	path = argv[2];
	for (int i = 3; i < argc; i++) {
		char *k = argv[i], *v = strchr(k, '=');

		if (!v) {
			fprintf(stderr, "%s: expected key=value\n", k);
			return 2;
		}
		*v++ = '\0';
		if (!strcmp(k, "page"))
			io.page = atoi(v);
		else if (!strcmp(k, "level"))
			io.level = atoi(v);
		else if (!strcmp(k, "bands")) {
			for (char *p = v; *p && nbands < 16; p = *p ? p + 1 : p)
				bands[nbands++] = (int)strtol(p, &p, 10);
			io.bands = bands;
			io.nbands = nbands;
		} else if (!strcmp(k, "ibackend"))
			io.lazy.backend = pm_backend_parse(v);
		else if (!strcmp(k, "ibudget"))
			io.lazy.budget = parse_size(v);
		else if (!strcmp(k, "ichunk"))
			io.lazy.chunk = parse_size(v);
		else if (!strcmp(k, "ithreads"))
			io.lazy.threads = atoi(v);
		else if (!strcmp(k, "mbackend"))
			mo.lazy.backend = pm_backend_parse(v);
		else if (!strcmp(k, "mbudget"))
			mo.lazy.budget = parse_size(v);
		else if (!strcmp(k, "mchunk"))
			mo.lazy.chunk = parse_size(v);
		else if (!strcmp(k, "mthreads"))
			mo.lazy.threads = atoi(v);
		else if (!strcmp(k, "window"))
			parse_pair(v, win);
		else if (!strcmp(k, "step"))
			parse_pair(v, step);
		else if (!strcmp(k, "dtype"))
			mo.dtype = !strcmp(v, "float32") ? PM_DTYPE_F32
				 : !strcmp(v, "float64") ? PM_DTYPE_F64 : PM_DTYPE_SAME;
		else if (!strcmp(k, "order"))
			mo.order = !strcmp(v, "channel") ? PM_ORDER_CHANNEL : PM_ORDER_WINDOW;
		else if (!strcmp(k, "out"))
			out = v;
		else if (!strcmp(k, "rounds"))
			rounds = atoi(v);
		else if (!strcmp(k, "readers"))
			readers = atoi(v);
		else if (!strcmp(k, "opener"))
			opener = v;
		else if (!strcmp(k, "rows"))
			rows = v;
		else {
			fprintf(stderr, "%s: unknown key\n", k);
			return 2;
		}
	}

	if (!strcmp(mode, "race")) {
		for (int a = 0; a < 2; a++)
			mo.window[a] = (struct pm_window){ .size = win[a], .step = step[a],
							   .dilation = 1 };
		return race(path, &io, &mo, rounds, readers, opener);
	}
	rss0 = status_kib("VmRSS");
	t_open = now();
	ret = pm_image_open(path, &io, &im, msg, sizeof msg);
	t_open = now() - t_open;
	if (ret)
		die("open", ret, msg);
	pm_image_info(im, &info);
	if (!strcmp(mode, "late"))
		return late(im, &mo, rows ? rows : "0,0", opener ? opener : "");
	if (!strcmp(mode, "info")) {
		printf("loader=%s\nwidth=%d\nheight=%d\nbands=%d\nfile_bands=%d\ndtype=%s\n"
		       "pages=%d\nlevels=%d\npage=%d\nlevel=%d\nrandom_access=%d\n",
		       info.loader, info.width, info.height, info.bands, info.file_bands,
		       pm_dtype_name(info.dtype), info.pages, info.levels, info.page, info.level,
		       info.random_access);
		return pm_image_close(im) ? 1 : 0;
	}

	main_tid = gettid();
	if (sigaction(SIGBUS, &sa, NULL))
		die("sigaction", -errno, NULL);
	if (sigsetjmp(bus_jump, 1))
		decode_failed(im);

	if (!strcmp(mode, "source")) {
		size_t n = pm_region_length(pm_image_region(im));
		char *buf = malloc(n);
		FILE *f = out ? fopen(out, "wb") : NULL;

		if (!buf || !f)
			die("output", -ENOMEM, out);
		bus_armed = 1;
		memcpy(buf, pm_image_source(im)->data, n);
		bus_armed = 0;
		if (fwrite(buf, 1, n, f) != n || fclose(f))
			die("write", -EIO, out);
		free(buf);
		ret = pm_image_close(im);
		return ret ? 1 : 0;
	}

	mo.source = *pm_image_source(im);
	for (int a = 0; a < 2; a++)
		mo.window[a] = (struct pm_window){ .size = win[a], .step = step[a], .dilation = 1 };
	ret = pm_matrix_open(&mo, &m);
	if (ret)
		die("matrix", ret, NULL);

	if (!strcmp(mode, "matrix")) {
		size_t n = pm_matrix_bytes(m);
		char *buf = malloc(n ? n : 1);
		FILE *f = out ? fopen(out, "wb") : NULL;

		if (!buf || !f)
			die("output", -ENOMEM, out);
		bus_armed = 1;
		if (mo.lazy.backend == PM_BACKEND_NONE)
			ret = pm_matrix_read(m, 0, buf, n);
		else
			memcpy(buf, pm_matrix_data(m), n);
		bus_armed = 0;
		if (ret)
			die("read", ret, NULL);
		if (fwrite(buf, 1, n, f) != n || fclose(f))
			die("write", -EIO, out);
		free(buf);
	} else if (!strcmp(mode, "scan")) {
		size_t n = pm_matrix_bytes(m), block = (size_t)1 << 20;
		uint64_t sum = 0;
		uint64_t *buf = malloc(block);
		double t0 = now(), t1;

		if (!buf)
			die("scan", -ENOMEM, NULL);
		bus_armed = 1;
		for (size_t off = 0; off < n; off += block) {
			size_t len = n - off < block ? n - off : block;
			const uint64_t *p = buf;

			if (mo.lazy.backend == PM_BACKEND_NONE) {
				ret = pm_matrix_read(m, off, buf, len);
				if (ret)
					die("read", ret, NULL);
			} else {
				p = (const void *)((const char *)pm_matrix_data(m) + off);
			}
			/* len is a multiple of 8 except at the very end */
			for (size_t i = 0; i < len / 8; i++)
				sum += p[i] * (((off / 8 + i) & 1023) + 1);
			for (size_t i = len / 8 * 8; i < len; i++)
				sum += (uint64_t)((const unsigned char *)p)[i];
		}
		bus_armed = 0;
		t1 = now();
		free(buf);
		pm_image_stats(im, &ist);
		pm_matrix_stats(m, &mst);
		printf("open_s=%.3f\n", t_open);
		printf("checksum=%" PRIu64 "\nbytes=%zu\nseconds=%.3f\nrss0_kib=%ld\nhwm_kib=%ld\n"
		       "image_backend=%s\nimage_budget=%zu\nimage_peak=%" PRIu64 "\nimage_fills=%" PRIu64
		       "\nimage_fill_s=%.3f\nmatrix_backend=%s\nmatrix_budget=%zu\nmatrix_peak=%" PRIu64
		       "\nmatrix_fill_s=%.3f\n",
		       sum, n, t1 - t0, rss0, status_kib("VmHWM"), pm_backend_name(ist.backend),
		       ist.budget_bytes, ist.peak_resident_bytes, ist.chunks_filled,
		       (double)ist.fill_ns * 1e-9, pm_backend_name(mst.backend), mst.budget_bytes,
		       mst.peak_resident_bytes, (double)mst.fill_ns * 1e-9);
	} else {
		fprintf(stderr, "%s: unknown mode\n", mode);
		return 2;
	}
	ret = pm_matrix_close(m);
	if (ret)
		die("matrix close", ret, NULL);
	ret = pm_image_close(im);
	if (ret)
		die("image close", ret, NULL);
	return 0;
}
