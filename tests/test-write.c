/* test-write.c: pm_matrix_write against the reference im2col on every
 * backend and "none" (whole matrix, ranges, empty), without a fault in the
 * mapping; its errors; short writes and EINTR (a pipe drained slowly under
 * an interval timer) and a write that stops part way (RLIMIT_FSIZE). */
#include <CUnit/Basic.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "ref.h"

#define H 200
#define W 150

static uint16_t image[H * W];

/* 4.6 MB of float64 with padded rows: several of the writer's buffers, a
 * ragged tail, and pitch gaps that must read as zeros. */
static void opts(struct pm_matrix_opts *o, int backend)
{
	const size_t shape[2] = { H, W };

	memset(o, 0, sizeof(*o));
	o->size = sizeof(*o);
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o->source, image, PM_DTYPE_U16, 2, shape), 0);
	o->window[0] = (struct pm_window){ .size = 4, .step = 1, .dilation = 1 };
	o->window[1] = (struct pm_window){ .size = 5, .step = 1, .dilation = 2, .pad_before = 1, .pad_after = 3 };
	o->pad_mode = PM_PAD_REFLECT;
	o->dtype = PM_DTYPE_F64;
	o->row_pitch = 20 * 8 + 24;
	o->lazy.backend = backend;
	o->lazy.chunk = 64 << 10;
	o->lazy.budget = 256 << 10;
}

/* Opens o; false (and a note) if a lazy backend is not available here. */
static bool open_or_skip(const struct pm_matrix_opts *o, pm_matrix **m)
{
	int ret = pm_matrix_open(o, m);

	if ((ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP) &&
	    (o->lazy.backend == PM_BACKEND_UFFD || o->lazy.backend == PM_BACKEND_SIGSEGV)) {
		fprintf(stderr, "\n  backend %s unavailable here (%s): its cases are NOT run\n",
			pm_backend_name(o->lazy.backend), pm_strerror(ret));
		return false;
	}
	CU_ASSERT_EQUAL_FATAL(ret, 0);
	return true;
}

/* The whole content of fd, from offset 0, into a new buffer of *n bytes. */
static unsigned char *slurp(int fd, size_t *n)
{
	off_t end = lseek(fd, 0, SEEK_END);
	unsigned char *p;

	CU_ASSERT_FATAL(end >= 0);
	p = malloc((size_t)end + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(pread(fd, p, (size_t)end, 0), end);
	*n = (size_t)end;
	return p;
}

static void test_every_backend(void)
{
	const int backends[] = { PM_BACKEND_EAGER, PM_BACKEND_UFFD, PM_BACKEND_SIGSEGV, PM_BACKEND_NONE };
	/* (offset, len) pieces written one after the other */
	const size_t pieces[][2] = { { 0, 0 }, { 1, 3 }, { 12345, 3000001 }, { 7, 1 } };

	for (size_t b = 0; b < T_COUNT(backends); b++) {
		struct pm_matrix_opts o;
		struct ref_matrix r;
		struct pm_stats st = { 0 };
		pm_matrix *m;
		unsigned char *got;
		size_t n, bytes, at = 0;
		int fd;

		opts(&o, backends[b]);
		CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &r), 0);
		if (!open_or_skip(&o, &m)) {
			ref_free(&r);
			continue;
		}
		bytes = pm_matrix_bytes(m);
		CU_ASSERT_EQUAL_FATAL(bytes, r.rows * r.pitch);
		CU_ASSERT(bytes > (3u << 20)); /* several buffers' worth */
		fd = memfd_create("pm-write", MFD_CLOEXEC);
		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL(pm_matrix_write(m, fd, 0, bytes), 0);
		for (size_t i = 0; i < T_COUNT(pieces); i++)
			CU_ASSERT_EQUAL(pm_matrix_write(m, fd, pieces[i][0], pieces[i][1]), 0);
		CU_ASSERT_EQUAL(pm_matrix_write(m, fd, bytes, 0), 0); /* empty, at the end */
		got = slurp(fd, &n);
		CU_ASSERT_EQUAL(n, bytes + 3 + 3000001 + 1);
		if (n == bytes + 3000005) {
			CU_ASSERT(memcmp(got, r.data, bytes) == 0);
			at = bytes;
			for (size_t i = 0; i < T_COUNT(pieces); i++) {
				CU_ASSERT(memcmp(got + at, r.data + pieces[i][0], pieces[i][1]) == 0);
				at += pieces[i][1];
			}
		}
		/* Never through the mapping: not one fault, nothing resident. */
		CU_ASSERT_EQUAL(pm_matrix_stats(m, &st), 0);
		CU_ASSERT_EQUAL(st.faults, 0);
		if (backends[b] != PM_BACKEND_EAGER) { /* eager fills all at open */
			CU_ASSERT_EQUAL(st.chunks_filled, 0);
			CU_ASSERT_EQUAL(st.resident_bytes, 0);
		}
		free(got);
		close(fd);
		CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
		ref_free(&r);
	}
}

static void test_errors(void)
{
	struct pm_matrix_opts o;
	pm_matrix *m;
	size_t bytes;
	int fd, p[2];

	opts(&o, PM_BACKEND_NONE);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	bytes = pm_matrix_bytes(m);
	fd = memfd_create("pm-write", MFD_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pm_matrix_write(NULL, fd, 0, 1), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_matrix_write(m, -1, 0, 1), -EBADF);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, bytes, 1), -PM_ERANGE);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, bytes + 1, 0), -PM_ERANGE);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, 1, bytes), -PM_ERANGE);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, 2, SIZE_MAX), -PM_ERANGE); /* offset + len wraps */
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_END), 0); /* nothing written by a refused call */
	close(fd);

	/* A descriptor not open for writing, and a closed one. */
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, 0, 10), -EBADF);
	close(fd);
	CU_ASSERT_EQUAL(pm_matrix_write(m, fd, 0, 10), -EBADF);

	/* A pipe nobody reads: -EPIPE (SIGPIPE ignored, as a server would). */
	CU_ASSERT_EQUAL_FATAL(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	CU_ASSERT_EQUAL(pm_matrix_write(m, p[1], 0, bytes), -EPIPE);
	signal(SIGPIPE, SIG_DFL);
	close(p[1]);
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
}

static volatile sig_atomic_t ticks;

static void tick(int sig)
{
	(void)sig;
	ticks++;
}

struct drain {
	int fd;
	unsigned char *buf;
	size_t len, got;
};

/* Reads the pipe in small pieces with pauses, so that the writer blocks on
 * a full pipe and the timer interrupts it (short writes, EINTR). */
static void *drain(void *arg)
{
	struct drain *d = arg;
	sigset_t all;
	ssize_t r;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (d->got < d->len) {
		size_t want = d->len - d->got < 3000 ? d->len - d->got : 3000;

		r = read(d->fd, d->buf + d->got, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		d->got += (size_t)r;
		if (d->got % 16 == 0)
			usleep(100);
	}
	return NULL;
}

static void test_interrupted_pipe(void)
{
	struct sigaction sa = { .sa_handler = tick }; /* no SA_RESTART: EINTR */
	struct itimerval every = { { 0, 200 }, { 0, 200 } }, off = { 0 };
	struct pm_matrix_opts o;
	struct ref_matrix r;
	struct drain d;
	pthread_t t;
	pm_matrix *m;
	int p[2], ret;

	opts(&o, PM_BACKEND_NONE);
	CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &r), 0);
	CU_ASSERT_EQUAL_FATAL(pm_matrix_open(&o, &m), 0);
	CU_ASSERT_EQUAL_FATAL(pipe2(p, O_CLOEXEC), 0);
	d = (struct drain){ .fd = p[0], .buf = malloc(r.rows * r.pitch), .len = r.rows * r.pitch };
	CU_ASSERT_PTR_NOT_NULL_FATAL(d.buf);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, drain, &d), 0);
	sigemptyset(&sa.sa_mask);
	CU_ASSERT_EQUAL_FATAL(sigaction(SIGALRM, &sa, NULL), 0);
	ticks = 0;
	CU_ASSERT_EQUAL_FATAL(setitimer(ITIMER_REAL, &every, NULL), 0);
	ret = pm_matrix_write(m, p[1], 0, d.len);
	setitimer(ITIMER_REAL, &off, NULL);
	signal(SIGALRM, SIG_DFL);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	CU_ASSERT_EQUAL(ret, 0);
	CU_ASSERT_EQUAL(d.got, d.len);
	CU_ASSERT(d.got == d.len && memcmp(d.buf, r.data, d.len) == 0);
	fprintf(stderr, "\n  %d timer signals during the write\n", (int)ticks);
	free(d.buf);
	ref_free(&r);
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
}

/* A file size limit in the middle of a buffer: the kernel writes up to it
 * (a short write), then refuses with EFBIG; the file holds exactly the
 * prefix. In a child, so that the limit stays there. */
static void test_stops_part_way(void)
{
	const size_t limit = (3u << 20) / 2 + 7;
	struct pm_matrix_opts o;
	struct ref_matrix r;
	unsigned char *got;
	size_t n;
	pid_t pid;
	int fd, status;

	opts(&o, PM_BACKEND_EAGER);
	CU_ASSERT_EQUAL_FATAL(ref_im2col(&o, &r), 0);
	fd = memfd_create("pm-write", MFD_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { limit, limit };
		pm_matrix *m;

		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) || pm_matrix_open(&o, &m))
			_exit(2);
		_exit(pm_matrix_write(m, fd, 0, pm_matrix_bytes(m)) == -EFBIG ? 0 : 1);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	got = slurp(fd, &n);
	CU_ASSERT_EQUAL(n, limit);
	CU_ASSERT(n == limit && memcmp(got, r.data, n) == 0);
	free(got);
	close(fd);
	ref_free(&r);
}

int main(int argc, char **argv)
{
	static const struct t_test tests[] = {
		{ "every_backend", test_every_backend },
		{ "errors", test_errors },
		{ "interrupted_pipe", test_interrupted_pipe },
		{ "stops_part_way", test_stops_part_way },
	};

	for (size_t i = 0; i < T_COUNT(image); i++)
		image[i] = (uint16_t)(i * 2654435761u >> 7);
	return t_run("write", tests, T_COUNT(tests), argc > 1 ? argv[1] : NULL);
}
