/* preload-threads.c: descriptors used from many threads at once under
 * LD_PRELOAD=libpatchmap-preload.so: separate fds, one shared fd read with
 * pread and with read (whose claims must tile the file exactly, as the
 * kernel's shared offset would), mappings made and released concurrently,
 * and fds opened, duplicated and closed while others read. */
#include <pthread.h>
#include <sys/mman.h>

#include "ptest.h"

#define NTHREADS 8
#define RAMP (1u << 20)   /* uint32 samples 0, 1, 2, ... */
#define H 150
#define W 121

static unsigned char img[H * W];
static unsigned char *want;  /* the .npy image of desc2d */
static size_t want_len, want_hdr;
static size_t page;
static char img_path[512], d2_path[512], d2s_path[512], ramp_path[512], self_path[512];

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void make_files(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	uint32_t *ramp = malloc(RAMP * 4);
	struct ref_matrix r;
	unsigned char *buf;
	size_t hl;
	int fd;

	for (uint32_t i = 0; i < RAMP; i++)
		ramp[i] = i;
	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (unsigned char)(i * 97 + (i >> 8));
	if (write_file(t_path("ramp.u32"), ramp, RAMP * 4) ||
	    write_npy(t_path("img.npy"), "|u1", 2, (size_t[]){ H, W }, img, sizeof(img)) ||
	    write_text(t_path("ramp.patchmap"), "source = ramp.u32\nshape = %u\nraw_dtype = u32\ndtype = same\nwindow = 1\n", RAMP) ||
	    write_text(t_path("d2.patchmap"), "source = img.npy\nwindow = 6x5\nstep = 1x2\npad = 1\n"
					      "dtype = float32\nformat = npy\nchunk = 64K\nbudget = 256K\n") ||
	    write_text(t_path("d2s.patchmap"), "source = img.npy\nwindow = 6x5\nstep = 1x2\npad = 1\n"
					       "dtype = float32\nformat = npy\nbackend = sigsegv\n"
					       "chunk = 64K\nbudget = 128K\n") ||
	    write_text(t_path("self.patchmap"), "source = img.npy\nwindow = 3\nrows = self.patchmap\n"))
		abort();
	free(ramp);
	/* t_path's buffers are not for threads */
	snprintf(img_path, sizeof(img_path), "%s", t_path("img.npy"));
	snprintf(d2_path, sizeof(d2_path), "%s", t_path("d2.patchmap"));
	snprintf(d2s_path, sizeof(d2s_path), "%s", t_path("d2s.patchmap"));
	snprintf(ramp_path, sizeof(ramp_path), "%s", t_path("ramp.patchmap"));
	snprintf(self_path, sizeof(self_path), "%s", t_path("self.patchmap"));
	o.source = (struct pm_source){ .data = img, .dtype = PM_DTYPE_U8, .ndim = 2, .shape = { H, W },
				       .strides = { W, 1 } };
	o.window[0] = (struct pm_window){ 6, 1, 1, 1, 1 };
	o.window[1] = (struct pm_window){ 5, 2, 1, 1, 1 };
	o.dtype = PM_DTYPE_F32;
	if (ref_im2col(&o, &r))
		abort();
	/* the header as the shim writes it, checked; the data from the reference */
	fd = open(d2_path, O_RDONLY);
	buf = malloc(4096);
	if (fd < 0 || read(fd, buf, 4096) != 4096 || !(hl = npy_data_offset(buf, 4096)))
		abort();
	close(fd);
	want_hdr = hl;
	want_len = hl + r.rows * r.pitch;
	want = malloc(want_len);
	memcpy(want, buf, hl);
	memcpy(want + hl, r.data, r.rows * r.pitch);
	ref_free(&r);
	free(buf);
}

/* ---------------------------------------------------------------- workers */

struct job {
	int fd;              /* shared, or -1: open your own */
	const char *path;
	bool bad;            /* open a descriptor that must be refused */
	uint64_t seed;
	int errors;
	/* shared read(): the claims this thread got */
	uint32_t *starts, *lens;
	size_t nclaims, cap;
};

static void *own_fd(void *arg)
{
	struct job *j = arg;
	unsigned char *buf = malloc(want_len + 1);
	int fd = open(j->path, O_RDONLY);
	size_t n = 0;

	if (fd < 0) {
		j->errors++;
		return NULL;
	}
	for (;;) {
		size_t ask = 1 + rng_next(&j->seed) % 70000;
		ssize_t r = read(fd, buf + n, ask > want_len + 1 - n ? want_len + 1 - n : ask);

		if (r < 0)
			j->errors++;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	j->errors += n != want_len || memcmp(buf, want, want_len) != 0;
	close(fd);
	free(buf);
	return NULL;
}

static void *shared_pread(void *arg)
{
	struct job *j = arg;
	unsigned char buf[40000];

	for (int i = 0; i < 400; i++) {
		size_t off = rng_next(&j->seed) % want_len, n = 1 + rng_next(&j->seed) % sizeof(buf);
		size_t expect = want_len - off < n ? want_len - off : n;
		ssize_t r = pread(j->fd, buf, n, (off_t)off);

		j->errors += r != (ssize_t)expect || memcmp(buf, want + off, expect) != 0;
	}
	return NULL;
}

/* read() on one shared fd of the ramp: every claim must be consecutive
 * samples, and all claims together exactly the file. */
static void *shared_read(void *arg)
{
	struct job *j = arg;
	uint32_t buf[8192];

	for (;;) {
		size_t n = 4 * (1 + rng_next(&j->seed) % 8192);
		ssize_t r = read(j->fd, buf, n);

		if (r < 0)
			j->errors++;
		if (r <= 0)
			break;
		if (r % 4) {
			j->errors++;
			break;
		}
		for (size_t k = 1; k < (size_t)r / 4; k++)
			j->errors += buf[k] != buf[0] + k;
		if (j->nclaims == j->cap) {
			j->cap = j->cap ? 2 * j->cap : 1024;
			j->starts = realloc(j->starts, j->cap * 4);
			j->lens = realloc(j->lens, j->cap * 4);
		}
		j->starts[j->nclaims] = buf[0];
		j->lens[j->nclaims++] = (uint32_t)(r / 4);
	}
	return NULL;
}

static void *shared_mmap(void *arg)
{
	struct job *j = arg;
	size_t pages = (want_len + page - 1) / page;

	for (int i = 0; i < 60; i++) {
		size_t first = rng_next(&j->seed) % pages, count = 1 + rng_next(&j->seed) % 40;
		size_t len, off = first * page;
		unsigned char *p;

		if (first + count > pages)
			count = pages - first;
		len = count * page;
		p = mmap(NULL, len, PROT_READ, i % 2 ? MAP_SHARED : MAP_PRIVATE, j->fd, (off_t)off);
		if (p == MAP_FAILED) {
			j->errors++;
			continue;
		}
		if (off + len > want_len)
			len = want_len - off;
		j->errors += memcmp(p, want + off, len) != 0;
		j->errors += munmap(p, count * page) != 0;
	}
	return NULL;
}

/* fds opened, dup'd and closed while other threads read: a virtual fd is
 * never confused with an ordinary one. */
static void *churn(void *arg)
{
	struct job *j = arg;
	unsigned char buf[64];

	for (int i = 0; i < 300; i++) {
		bool virt = rng_next(&j->seed) % 2;
		int fd = open(virt ? j->path : img_path, O_RDONLY | O_CLOEXEC);
		int d = dup(fd);

		if (fd < 0 || d < 0) {
			j->errors++;
			continue;
		}
		close(fd);
		j->errors += pread(d, buf, 64, 0) != 64;
		j->errors += memcmp(buf, virt ? want : (const unsigned char *)"\x93NUMPY", virt ? 64 : 6) != 0;
		close(d);
	}
	return NULL;
}

/* Even threads open a descriptor whose rows file is itself, which must
 * fail with EINVAL; odd ones meanwhile open d2 and read it whole. While a
 * thread loads a descriptor its own opens are plain files: another
 * thread's must not be. */
static void *self_or_good(void *arg)
{
	struct job *j = arg;

	for (int k = 0; k < 40; k++) {
		if (j->bad) {
			int fd = open(self_path, O_RDONLY);

			j->errors += fd >= 0 || errno != EINVAL;
			if (fd >= 0)
				close(fd);
		} else {
			own_fd(j);
		}
	}
	return NULL;
}

static int run(void *(*fn)(void *), struct job *jobs)
{
	pthread_t t[NTHREADS];
	int errors = 0;

	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, fn, &jobs[i]))
			return -1;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		errors += jobs[i].errors;
	}
	return errors;
}

static void jobs_init(struct job *jobs, int fd, const char *path)
{
	memset(jobs, 0, sizeof(struct job) * NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		jobs[i].fd = fd;
		jobs[i].path = path;
		jobs[i].seed = 0x9e3779b97f4a7c15u * (uint64_t)(i + 1);
	}
}

static void test_own_fds(void)
{
	struct job jobs[NTHREADS];

	jobs_init(jobs, -1, d2_path);
	CU_ASSERT_EQUAL(run(own_fd, jobs), 0);
}

static void test_shared_pread(void)
{
	struct job jobs[NTHREADS];
	int fd = open(d2_path, O_RDONLY);

	CU_ASSERT_FATAL(fd >= 0);
	jobs_init(jobs, fd, NULL);
	CU_ASSERT_EQUAL(run(shared_pread, jobs), 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), 0);
	close(fd);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_shared_read(void)
{
	struct job jobs[NTHREADS];
	int fd = open(ramp_path, O_RDONLY);
	size_t total = 0, k = 0;
	uint64_t *pairs;

	CU_ASSERT_FATAL(fd >= 0);
	jobs_init(jobs, fd, NULL);
	CU_ASSERT_EQUAL(run(shared_read, jobs), 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)RAMP * 4);
	for (int i = 0; i < NTHREADS; i++)
		total += jobs[i].nclaims;
	pairs = malloc(total * 8);
	for (int i = 0; i < NTHREADS; i++)
		for (size_t c = 0; c < jobs[i].nclaims; c++)
			pairs[k++] = (uint64_t)jobs[i].starts[c] << 32 | jobs[i].lens[c];
	/* sorted by start (the high half), the claims must tile the file */
	qsort(pairs, total, 8, cmp_u64);
	{
		uint64_t next = 0;
		int bad = 0;

		for (size_t c = 0; c < total; c++) {
			bad += (pairs[c] >> 32) != next;
			next = (pairs[c] >> 32) + (pairs[c] & 0xffffffffu);
		}
		CU_ASSERT_EQUAL(bad, 0);
		CU_ASSERT_EQUAL(next, RAMP);
	}
	free(pairs);
	for (int i = 0; i < NTHREADS; i++) {
		free(jobs[i].starts);
		free(jobs[i].lens);
	}
	close(fd);
}

static void test_shared_mmap(void)
{
	const char *names[] = { d2_path, d2s_path };

	for (int n = 0; n < 2; n++) {
		struct job jobs[NTHREADS];
		int fd = open(names[n], O_RDONLY);

		CU_ASSERT_FATAL(fd >= 0);
		jobs_init(jobs, fd, NULL);
		CU_ASSERT_EQUAL(run(shared_mmap, jobs), 0);
		close(fd);
	}
}

static void test_self_beside_good(void)
{
	struct job jobs[NTHREADS];

	jobs_init(jobs, -1, d2_path);
	for (int i = 0; i < NTHREADS; i++)
		jobs[i].bad = i % 2 == 0;
	CU_ASSERT_EQUAL(run(self_or_good, jobs), 0);
}

static void test_churn(void)
{
	struct job jobs[NTHREADS];

	jobs_init(jobs, -1, d2_path);
	CU_ASSERT_EQUAL(run(churn, jobs), 0);
}

int main(void)
{
	static const struct t_case cases[] = {
		{ "a fd per thread", test_own_fds },
		{ "pread on a shared fd", test_shared_pread },
		{ "read on a shared fd tiles the file", test_shared_read },
		{ "mmap and munmap on a shared fd", test_shared_mmap },
		{ "open, dup, close while reading", test_churn },
		{ "a descriptor that reads itself, beside good ones", test_self_beside_good },
	};

	page = (size_t)sysconf(_SC_PAGESIZE);
	if (t_make_dir("threads"))
		return 1;
	make_files();
	return t_run("preload-threads", cases, sizeof(cases) / sizeof(cases[0]));
}
