/* bench.h: what the benchmark programs share: a clock, peak RSS from the
 * OS, the machine description, the lazy options every benchmark accepts on
 * its command line, and a scan that is not itself the bottleneck. */
#ifndef PM_BENCH_H
#define PM_BENCH_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "patchmap.h"

#define B_MIB ((size_t)1 << 20)

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* Linux 5.7; older C libraries lack the name */
#endif

/* In a loop that waits for another thread. */
static inline void b_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Seconds on clock `id`: wall time (MONOTONIC), CPU time of the process
 * (every thread, user + system) or of the calling thread. */
static inline double b_clock(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline double b_now(void)
{
	return b_clock(CLOCK_MONOTONIC);
}

/* System CPU seconds of the calling thread so far. */
static inline double b_thread_sys(void)
{
	struct rusage u;

	getrusage(RUSAGE_THREAD, &u);
	return (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds: of the process (every thread), of the calling thread, and
 * of the calling thread in the kernel. */
struct b_cpu {
	double proc, thr, sys;
};

static inline struct b_cpu b_cpu_now(void)
{
	struct b_cpu c = { b_clock(CLOCK_PROCESS_CPUTIME_ID), b_clock(CLOCK_THREAD_CPUTIME_ID),
			   b_thread_sys() };

	return c;
}

/* The CPU seconds since `from`, a b_cpu_now() of the same thread. */
static inline struct b_cpu b_cpu_since(struct b_cpu from)
{
	struct b_cpu c = b_cpu_now();

	c.proc -= from.proc;
	c.thr -= from.thr;
	c.sys -= from.sys;
	return c;
}

/* One clear line on stderr, exit 2 (bad usage) or 1 (failure). */
static inline void b_die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* Exits with pm_strerror's text if err < 0. */
static inline void b_check(int err, const char *what)
{
	if (err < 0)
		b_die(1, "%s: %s", what, pm_strerror(err));
}

/* ------------------------------------------------------------ memory */

/* A field of a /proc file of "Name: value kB" lines, in KiB, or -1. */
static inline long b_proc_kib(const char *file, const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen(file, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

/* A /proc/self/status field (VmHWM, VmRSS) in KiB, or -1. */
static inline long b_status_kib(const char *field)
{
	return b_proc_kib("/proc/self/status", field);
}

/* Resets VmHWM to the current RSS, so that the next reading is the peak of
 * the section that follows. */
static inline void b_hwm_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");

	if (!f || fputs("5", f) < 0 || fclose(f) != 0)
		b_die(1, "cannot reset the peak RSS through /proc/self/clear_refs");
}

/* Peak RSS since the last reset, MiB. */
static inline double b_hwm_mib(void)
{
	return (double)b_status_kib("VmHWM") / 1024.0;
}

static inline double b_rss_mib(void)
{
	return (double)b_status_kib("VmRSS") / 1024.0;
}

/* MemTotal in bytes, 0 if unknown. */
static inline size_t b_mem_total(void)
{
	char line[256];
	size_t kib = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "MemTotal:", 9))
			kib = strtoull(line + 9, NULL, 10);
	fclose(f);
	return kib * 1024;
}

/* A buffer of n bytes whose pages are all resident (written once). */
static inline void *b_alloc_resident(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, 2 * B_MIB, n ? n : 1))
		b_die(1, "out of memory (%zu bytes)", n);
	memset(p, 0, n);
	return p;
}

/* ------------------------------------------------------- a mover */

/* Page moves beside a reader: a thread of the process moves one 2 MiB
 * huge page between two places (mremap, which clears and sets one PMD and
 * flushes it from every CPU, as the lazy backends' moves do), one move per
 * MiB the reader says it has read (the lazy matrix moves each 2 MiB in and
 * out once), and sleeps while it is ahead. The moved page is never one the
 * reader reads: what the moves cost it is what they cost any reader. */
struct b_mover {
	_Atomic size_t read; /* bytes the reader has read */
	atomic_bool stop;
	char *base, *at[2];
	size_t moves;
	int err;
	pthread_t t;
};

static inline void *b_mover_main(void *arg)
{
	struct b_mover *m = arg;
	const struct timespec nap = { 0, 20000 };

	while (!atomic_load(&m->stop)) {
		char *from = m->at[m->moves & 1], *to = m->at[!(m->moves & 1)];

		if (m->moves >= atomic_load_explicit(&m->read, memory_order_relaxed) / B_MIB) {
			nanosleep(&nap, NULL);
			continue;
		}
		if (mremap(from, 2 * B_MIB, 2 * B_MIB, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			   to) == MAP_FAILED) {
			m->err = errno;
			break;
		}
		m->moves++;
	}
	return NULL;
}

/* Starts the mover; 1 if its page is one huge page, 0 if not, -1 if that
 * cannot be told. */
static inline int b_mover_start(struct b_mover *m)
{
	size_t len = 2 * B_MIB;
	long huge;

	memset(m, 0, sizeof(*m));
	m->base = mmap(NULL, 3 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->base == MAP_FAILED)
		b_die(1, "mmap: %s", strerror(errno));
	m->at[0] = (char *)(((uintptr_t)m->base + len - 1) & ~(uintptr_t)(len - 1));
	m->at[1] = m->at[0] + len;
	madvise(m->at[0], len, MADV_HUGEPAGE);
	huge = b_proc_kib("/proc/self/smaps_rollup", "AnonHugePages");
	memset(m->at[0], 1, len);
	if (huge >= 0)
		huge = b_proc_kib("/proc/self/smaps_rollup", "AnonHugePages") - huge;
	if (pthread_create(&m->t, NULL, b_mover_main, m))
		b_die(1, "pthread_create failed");
	return huge < 0 ? -1 : huge >= 2048;
}

static inline void b_mover_progress(struct b_mover *m, size_t bytes)
{
	atomic_store_explicit(&m->read, bytes, memory_order_relaxed);
}

/* Stops the mover; the moves it made (m->err: why it stopped early, or 0). */
static inline size_t b_mover_stop(struct b_mover *m)
{
	atomic_store(&m->stop, true);
	pthread_join(m->t, NULL);
	munmap(m->base, 6 * B_MIB);
	return m->moves;
}

/* What the movers of a row's repetitions did: the fewest and most moves,
 * against one per MiB of the `mib` read; err: a failed move (the row is
 * then not measured), huge: b_mover_start's answer. */
static inline void b_mover_report(const char *indent, size_t fewest, size_t most, size_t mib,
				  int err, int huge)
{
	if (err) {
		printf("%s[moves beside: not measured: mremap: %s]\n", indent, strerror(err));
		return;
	}
	printf("%s[another thread moved a 2 MiB huge page %zu-%zu times in a repetition, for "
	       "%zu MiB read: the lazy matrix's page moves, without the paging]\n",
	       indent, fewest, most, mib);
	if ((double)fewest < 0.9 * (double)mib)
		printf("%s[the mover fell behind one move per MiB: the row shows less than the "
		       "moves cost]\n", indent);
	if (huge == 0)
		printf("%s[the moved page is not one huge page here: each move is 512 page-table "
		       "entries]\n", indent);
	else if (huge < 0)
		printf("%s[whether the moved page is one huge page is unknown here]\n", indent);
}

/* ------------------------------------------------------------ SIGBUS */

/* A lazy buffer whose fill failed raises SIGBUS in the reader: say which
 * error the library recorded instead of dying silently. */
static pm_region *b_bus_region;
static pm_matrix *b_bus_matrix;

static void b_on_sigbus(int sig)
{
	int err = b_bus_region ? pm_region_error(b_bus_region)
		  : b_bus_matrix ? pm_matrix_error(b_bus_matrix) : 0;
	const char *t = "SIGBUS: reading the lazy buffer failed: ";
	const char *e = err ? pm_strerror(err) : "no fill error recorded";

	(void)sig;
	if (write(2, t, strlen(t)) < 0 || write(2, e, strlen(e)) < 0 || write(2, "\n", 1) < 0)
		_exit(1);
	_exit(1);
}

static inline void b_catch_sigbus(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = b_on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
}

/* The load average: the machine may be shared, and a busy one skews
 * every figure. */
static inline void b_print_load(const char *when)
{
	char line[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (!fgets(line, sizeof(line), f))
			snprintf(line, sizeof(line), "?");
		fclose(f);
	}
	line[strcspn(line, "\n")] = 0;
	printf("load average %s: %s\n", when, line);
}

static inline void b_print_footer(void)
{
	b_print_load("at the end");
}

/* ------------------------------------------------------------ machine */

/* Copies the first line of `path` whose key is `key` (up to ':') into out,
 * value only, trimmed; or "?" */
static inline void b_read_key(const char *path, const char *key, char *out, size_t len)
{
	char line[512];
	size_t n = strlen(key);
	FILE *f = fopen(path, "r");

	snprintf(out, len, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *v;

		if (strncmp(line, key, n) || (line[n] != ':' && line[n] != ' ' && line[n] != '\t'))
			continue;
		v = strchr(line, ':');
		if (!v)
			continue;
		for (v++; *v == ' ' || *v == '\t'; v++)
			;
		v[strcspn(v, "\n")] = 0;
		snprintf(out, len, "%s", v);
		break;
	}
	fclose(f);
}

/* The bracketed word of a sysfs choice file ("always [madvise] never"). */
static inline void b_read_choice(const char *path, char *out, size_t len)
{
	char line[256], *a, *b;
	FILE *f = fopen(path, "r");

	snprintf(out, len, "?");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && (a = strchr(line, '[')) && (b = strchr(a, ']'))) {
		*b = 0;
		snprintf(out, len, "%s", a + 1);
	}
	fclose(f);
}

/* Prints the machine and the command line, as the README records them. */
static inline void b_print_header(int argc, char **argv)
{
	char cpu[256], thp[64], defrag[64];
	struct utsname u;
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	char fam[16], model[16], flags[4096];

	b_read_key("/proc/cpuinfo", "model name", cpu, sizeof(cpu));
	b_read_key("/proc/cpuinfo", "cpu family", fam, sizeof(fam));
	b_read_key("/proc/cpuinfo", "model", model, sizeof(model));
	b_read_key("/proc/cpuinfo", "flags", flags, sizeof(flags));
	b_read_choice("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp));
	b_read_choice("/sys/kernel/mm/transparent_hugepage/defrag", defrag, sizeof(defrag));
	/* Line by line, so that a run cut short still shows what it did. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	b_catch_sigbus();
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	printf("machine: %s (family %s model %s)%s, %ld cores, %.1f GiB RAM, Linux %s, THP %s "
	       "(defrag %s); libpatchmap %s\n", cpu, fam, model,
	       strstr(flags, "hypervisor") ? " under a hypervisor" : "",
	       sysconf(_SC_NPROCESSORS_ONLN), (double)b_mem_total() / (1 << 30), u.release, thp,
	       defrag, pm_version());
	printf("command:");
	printf(" %s", prog);
	for (int i = 1; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	b_print_load("at the start");
}

/* ------------------------------------------------------------ options */

/* The lazy options every benchmark takes, and the backends to run. */
struct b_lazy {
	struct pm_lazy_opts lazy; /* budget, chunk, threads, readahead, flags */
	int backends[PM_BACKEND_COUNT];
	int nbackends;
};

static inline size_t b_parse_size(const char *s, size_t unit, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0)
		b_die(2, "%s: not a size: '%s'", what, s);
	return (size_t)(v * (double)unit);
}

static inline long b_parse_long(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end)
		b_die(2, "%s: not an integer: '%s'", what, s);
	return v;
}

/* A comma-separated list of backend names (lazy ones unless allow_eager). */
static inline void b_parse_backends(struct b_lazy *b, const char *list, int allow_eager)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	b->nbackends = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int id = pm_backend_parse(t);

		if (id < 0 || id == PM_BACKEND_AUTO || id == PM_BACKEND_NONE ||
		    (id == PM_BACKEND_EAGER && !allow_eager))
			b_die(2, "--backend: '%s' is not one of uffd, sigsegv", t);
		if (b->nbackends < PM_BACKEND_COUNT)
			b->backends[b->nbackends++] = id;
	}
	if (!b->nbackends)
		b_die(2, "--backend: empty list");
}

static inline void b_lazy_init(struct b_lazy *b)
{
	memset(b, 0, sizeof(*b));
	b->backends[0] = PM_BACKEND_UFFD;
	b->backends[1] = PM_BACKEND_SIGSEGV;
	b->nbackends = 2;
}

/* If argv[*i] is a lazy option, consumes it (and its value) and returns 1. */
static inline int b_lazy_arg(struct b_lazy *b, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;

	if (!strcmp(a, "--writable")) {
		b->lazy.flags |= PM_LAZY_WRITABLE;
		return 1;
	}
	if (strcmp(a, "--budget") && strcmp(a, "--chunk") && strcmp(a, "--threads") &&
	    strcmp(a, "--readahead") && strcmp(a, "--backend"))
		return 0;
	if (!v)
		b_die(2, "%s needs a value", a);
	++*i;
	if (!strcmp(a, "--budget"))
		b->lazy.budget = b_parse_size(v, B_MIB, a);
	else if (!strcmp(a, "--chunk"))
		b->lazy.chunk = b_parse_size(v, 1024, a);
	else if (!strcmp(a, "--threads"))
		b->lazy.threads = (int)b_parse_long(v, a);
	else if (!strcmp(a, "--readahead"))
		b->lazy.readahead = (int)b_parse_long(v, a);
	else
		b_parse_backends(b, v, 0);
	return 1;
}

#define B_LAZY_USAGE                                                                      \
	"  --backend LIST   lazy backends to run, comma-separated (default uffd,sigsegv)\n" \
	"  --budget MIB     resident budget (default: the library's)\n"                      \
	"  --chunk KIB      bytes filled per fault (default: the library's)\n"               \
	"  --threads N      filler threads (default: the library's)\n"                       \
	"  --readahead N    chunks read ahead, negative for none (default: the library's)\n" \
	"  --writable       no write protection of resident pages (uffd)\n"

/* How the lazy options in force describe themselves, for the output. */
static inline void b_print_stats(const struct pm_stats *st)
{
	printf("      [%s mech 0x%02x chunk %zu KiB budget %zu MiB: faults %llu filled %llu "
	       "evictions %llu ahead %llu/%llu hit, fill %.2f s]\n",
	       pm_backend_name(st->backend), st->mechanism, st->chunk_bytes >> 10,
	       st->budget_bytes >> 20, (unsigned long long)st->faults,
	       (unsigned long long)st->chunks_filled, (unsigned long long)st->evictions,
	       (unsigned long long)st->readahead_fills, (unsigned long long)st->readahead_hits,
	       (double)st->fill_ns * 1e-9);
}

/* ------------------------------------------------------------ work */

/* Sums n bytes as 64-bit words (a tail shorter than a word is added byte by
 * byte). Eight independent accumulators, so the compiler vectorises it and
 * it runs far above memory bandwidth: the scan is limited by the memory it
 * reads, not by the adds. */
static inline uint64_t b_sum(const void *p, size_t n)
{
	const uint64_t *q = p;
	uint64_t s[8] = { 0 };
	size_t words = n / 8, i = 0;

	for (; i + 8 <= words; i += 8)
		for (int k = 0; k < 8; k++)
			s[k] += q[i + k];
	for (; i < words; i++)
		s[0] += q[i];
	for (size_t b = words * 8; b < n; b++)
		s[1] += ((const unsigned char *)p)[b];
	return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* A deterministic u8 image with no structure a fill could exploit. */
static inline void b_image_u8(uint8_t *img, size_t n)
{
	uint32_t x = 2463534242u;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		img[i] = (uint8_t)x;
	}
}

/* The u8 image side x side as a pm_matrix_opts with k x k windows, step 1,
 * float32 output: the headline case. */
static inline void b_opts_2d(struct pm_matrix_opts *o, const void *img, int dtype, size_t side,
			     size_t k)
{
	size_t shape[2] = { side, side };

	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	b_check(pm_source_contiguous(&o->source, img, dtype, 2, shape), "pm_source_contiguous");
	for (int a = 0; a < 2; a++) {
		o->window[a].size = k;
		o->window[a].step = 1;
		o->window[a].dilation = 1;
	}
	o->dtype = PM_DTYPE_F32;
}

static int b_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of n values (sorts them). */
static inline double b_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), b_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
