/* preload-calls.c: every call the shim interposes, on descriptors, from a
 * program that does not link libpatchmap and runs under
 * LD_PRELOAD=libpatchmap-preload.so: the bytes against the reference
 * im2col (tests/ref.c), the errors a read-only file gives, fds and offsets
 * shared as the kernel shares them, mappings and their release, fork and
 * exec, and the one line a malformed descriptor prints. */
#include <dlfcn.h>
#include <dirent.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "ptest.h"

int __open_2(const char *, int);
int __open64_2(const char *, int);

#define H 67
#define W 45

static unsigned char img[H * W];
static unsigned char *want_raw, *want_npy;
static size_t raw_len, npy_len, npy_hdr;
static size_t page;

/* The matrix every descriptor below describes (5 x 4 windows, step 2 x 1,
 * float32), from the reference. */
static void reference(void)
{
	struct pm_matrix_opts o = { .size = sizeof(o) };
	struct ref_matrix r;

	o.source = (struct pm_source){ .data = img, .dtype = PM_DTYPE_U8, .ndim = 2,
				       .shape = { H, W }, .strides = { W, 1 } };
	o.window[0] = (struct pm_window){ 5, 2, 1, 0, 0 };
	o.window[1] = (struct pm_window){ 4, 1, 1, 0, 0 };
	o.dtype = PM_DTYPE_F32;
	if (ref_im2col(&o, &r))
		abort();
	raw_len = r.rows * r.pitch;
	want_raw = malloc(raw_len);
	memcpy(want_raw, r.data, raw_len);
	ref_free(&r);
}

static const char *desc(const char *name)
{
	return t_path(name);
}

static void make_files(void)
{
	size_t shape[2] = { H, W };
	static const char common[] = "source = img.npy\nwindow = 5x4\nstep = 2x1\ndtype = float32\n";

	if (write_npy(t_path("img.npy"), "|u1", 2, shape, img, sizeof(img)) ||
	    write_text(t_path("raw.patchmap"), "%schunk = 4K\nbudget = 8K\n", common) ||
	    write_text(t_path("npy.patchmap"), "%sformat = npy\n", common) ||
	    write_text(t_path("eager.patchmap"), "%sbackend = eager\n", common) ||
	    write_text(t_path("sigsegv.patchmap"), "%sbackend = sigsegv\nchunk = 8K\nbudget = 16K\n", common) ||
	    write_text(t_path("uffd.patchmap"), "%sbackend = uffd\nchunk = 4K\nbudget = 8K\nreadahead = 1\n",
		       common) ||
	    write_text(t_path("none.patchmap"), "%sbackend = none\n", common) ||
	    write_text(t_path("bad.patchmap"), "source = img.npy\nwindw = 3\n") ||
	    write_text(t_path("bad2.patchmap"), "source = img.npy\nwindow = 99\n") ||
	    symlink("raw.patchmap", t_path("link.patchmap")))
		abort();
}

/* Everything left to read on fd, up to cap bytes. */
static size_t read_all(int fd, unsigned char *buf, size_t cap, size_t piece)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, cap - n < piece ? cap - n : piece);

		if (r <= 0)
			return n;
		n += (size_t)r;
	}
}

/* The .npy image, once, through read: its header checked, its data
 * against the reference. Every other path compares with it. */
static void test_npy_image(void)
{
	int fd = open(desc("npy.patchmap"), O_RDONLY);
	char shape[64];

	CU_ASSERT_FATAL(fd >= 0);
	want_npy = malloc(raw_len + 4096);
	npy_len = read_all(fd, want_npy, raw_len + 4096, 777);
	close(fd);
	npy_hdr = npy_data_offset(want_npy, npy_len);
	CU_ASSERT_FATAL(npy_hdr > 0);
	snprintf(shape, sizeof(shape), "'shape': (%zu, %d)", raw_len / (4 * 20), 20);
	CU_ASSERT_PTR_NOT_NULL(memmem(want_npy, npy_hdr, shape, strlen(shape)));
	CU_ASSERT_PTR_NOT_NULL(memmem(want_npy, npy_hdr, "'descr': '<f4'", 14));
	CU_ASSERT_EQUAL_FATAL(npy_len, npy_hdr + raw_len);
	CU_ASSERT(!memcmp(want_npy + npy_hdr, want_raw, raw_len));
}

static void test_read(void)
{
	unsigned char *buf = malloc(raw_len + 100);
	int fd = open(desc("raw.patchmap"), O_RDONLY);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(read_all(fd, buf, raw_len + 100, 1000), raw_len);
	CU_ASSERT(!memcmp(buf, want_raw, raw_len));
	CU_ASSERT_EQUAL(read(fd, buf, 10), 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)raw_len);
	CU_ASSERT_EQUAL(read(fd, buf, 0), 0);
	close(fd);
	free(buf);
}

static void check_stream(FILE *f, const unsigned char *want, size_t len)
{
	unsigned char *buf = malloc(len + 10);
	struct stat st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT(fileno(f) >= 0);
	CU_ASSERT_EQUAL(fstat(fileno(f), &st), 0);
	CU_ASSERT_EQUAL((size_t)st.st_size, len);
	CU_ASSERT_EQUAL(fread(buf, 1, len + 10, f), len);
	CU_ASSERT(!memcmp(buf, want, len));
	CU_ASSERT(feof(f));
	CU_ASSERT_EQUAL(fseek(f, 12345, SEEK_SET), 0);
	CU_ASSERT_EQUAL(ftell(f), 12345);
	CU_ASSERT_EQUAL(fread(buf, 1, 1000, f), 1000);
	CU_ASSERT(!memcmp(buf, want + 12345, 1000));
	CU_ASSERT_EQUAL(fseek(f, -10, SEEK_END), 0);
	CU_ASSERT_EQUAL(fgetc(f), want[len - 10]);
	CU_ASSERT_EQUAL(fclose(f), 0);
	free(buf);
}

static void test_open_variants(void)
{
	unsigned char buf[4096];
	int dir = open(t_dir, O_RDONLY | O_DIRECTORY);
	int fds[6], k = 0;
	FILE *f;

	CU_ASSERT_FATAL(dir >= 0);
	fds[k++] = open64(desc("raw.patchmap"), O_RDONLY);
	fds[k++] = openat(dir, "raw.patchmap", O_RDONLY);
	fds[k++] = openat64(dir, "raw.patchmap", O_RDONLY | O_CLOEXEC);
	fds[k++] = __open_2(desc("raw.patchmap"), O_RDONLY);
	fds[k++] = __open64_2(desc("link.patchmap"), O_RDONLY);
	fds[k++] = open(desc("raw.patchmap"), O_RDONLY | O_NOATIME | O_NONBLOCK);
	for (int i = 0; i < k; i++) {
		CU_ASSERT_FATAL(fds[i] >= 0);
		CU_ASSERT_EQUAL(pread(fds[i], buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
		CU_ASSERT(!memcmp(buf, want_raw + 4096, sizeof(buf)));
		CU_ASSERT_EQUAL(close(fds[i]), 0);
	}
	close(dir);

	check_stream(fopen(desc("raw.patchmap"), "r"), want_raw, raw_len);
	check_stream(fopen64(desc("npy.patchmap"), "rb"), want_npy, npy_len);
	check_stream(fdopen(open(desc("raw.patchmap"), O_RDONLY), "r"), want_raw, raw_len);
	f = fopen(desc("raw.patchmap"), "re");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT(fcntl(fileno(f), F_GETFD) & FD_CLOEXEC);
	fclose(f);
	/* a read-only file */
	errno = 0;
	CU_ASSERT_PTR_NULL(fopen(desc("raw.patchmap"), "r+"));
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_PTR_NULL(fopen(desc("raw.patchmap"), "w"));
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_PTR_NULL(fdopen(open(desc("raw.patchmap"), O_RDONLY), "w"));
	CU_ASSERT_EQUAL(errno, EINVAL);
}

static void test_write_opens(void)
{
	char text[256];
	ssize_t n;
	int fd;

	errno = 0;
	CU_ASSERT_EQUAL(open(desc("raw.patchmap"), O_RDWR), -1);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_EQUAL(open(desc("raw.patchmap"), O_WRONLY | O_TRUNC), -1);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_EQUAL(open(desc("raw.patchmap"), O_RDONLY | O_TRUNC), -1);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_EQUAL(creat(desc("raw.patchmap"), 0644), -1);
	CU_ASSERT_EQUAL(errno, EACCES);
	/* the descriptor's text is intact */
	fd = sys_open(desc("raw.patchmap"), O_RDONLY, 0);
	n = sys_read(fd, text, sizeof(text) - 1);
	sys_close(fd);
	CU_ASSERT(n > 0 && !strncmp(text, "source = img.npy\n", 17));
	/* a new descriptor can be written, and is one once written */
	fd = open(desc("new.patchmap"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	CU_ASSERT_FATAL(fd >= 0);
	snprintf(text, sizeof(text), "source = img.npy\nwindow = 5x4\nstep = 2x1\ndtype = f32\n");
	CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	fd = open(desc("new.patchmap"), O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_END), (off_t)raw_len);
	CU_ASSERT_EQUAL(write(fd, "x", 1), -1);
	CU_ASSERT_EQUAL(errno, EBADF);
	close(fd);
}

static void check_stat(const struct stat *st, size_t len)
{
	CU_ASSERT_EQUAL((size_t)st->st_size, len);
	CU_ASSERT(S_ISREG(st->st_mode));
	CU_ASSERT_EQUAL(st->st_mode & 0222, 0);
	CU_ASSERT((size_t)st->st_blocks * 512 >= len);
}

static void test_stat(void)
{
	int (*xstat)(int, const char *, struct stat *) =
		(int (*)(int, const char *, struct stat *))dlsym(RTLD_DEFAULT, "__xstat");
	int (*fxstat)(int, int, struct stat *) = (int (*)(int, int, struct stat *))dlsym(RTLD_DEFAULT, "__fxstat");
	int dir = open(t_dir, O_RDONLY | O_DIRECTORY);
	int fd = open(desc("npy.patchmap"), O_RDONLY);
	struct stat64 st64;
	struct statx sx;
	struct stat st;

	CU_ASSERT_FATAL(dir >= 0 && fd >= 0);
	CU_ASSERT_EQUAL(stat(desc("raw.patchmap"), &st), 0);
	check_stat(&st, raw_len);
	CU_ASSERT_EQUAL(stat64(desc("npy.patchmap"), &st64), 0);
	check_stat((struct stat *)&st64, npy_len);
	CU_ASSERT_EQUAL(lstat(desc("raw.patchmap"), &st), 0);
	check_stat(&st, raw_len);
	CU_ASSERT_EQUAL(lstat64(desc("raw.patchmap"), &st64), 0);
	check_stat((struct stat *)&st64, raw_len);
	/* a symlink is itself; what it points to is the virtual file */
	CU_ASSERT_EQUAL(lstat(desc("link.patchmap"), &st), 0);
	CU_ASSERT(S_ISLNK(st.st_mode));
	CU_ASSERT_EQUAL(stat(desc("link.patchmap"), &st), 0);
	check_stat(&st, raw_len);
	CU_ASSERT_EQUAL(fstat(fd, &st), 0);
	check_stat(&st, npy_len);
	CU_ASSERT_EQUAL(fstat64(fd, &st64), 0);
	check_stat((struct stat *)&st64, npy_len);
	CU_ASSERT_EQUAL(fstatat(dir, "raw.patchmap", &st, 0), 0);
	check_stat(&st, raw_len);
	CU_ASSERT_EQUAL(fstatat64(AT_FDCWD, desc("raw.patchmap"), &st64, AT_SYMLINK_NOFOLLOW), 0);
	check_stat((struct stat *)&st64, raw_len);
	CU_ASSERT_EQUAL(fstatat(fd, "", &st, AT_EMPTY_PATH), 0);
	check_stat(&st, npy_len);
	CU_ASSERT_EQUAL(fstatat(dir, "link.patchmap", &st, AT_SYMLINK_NOFOLLOW), 0);
	CU_ASSERT(S_ISLNK(st.st_mode));
	memset(&sx, 0, sizeof(sx));
	CU_ASSERT_EQUAL(statx(dir, "raw.patchmap", 0, STATX_BASIC_STATS, &sx), 0);
	CU_ASSERT_EQUAL(sx.stx_size, raw_len);
	CU_ASSERT(S_ISREG(sx.stx_mode) && !(sx.stx_mode & 0222));
	CU_ASSERT_EQUAL(statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx), 0);
	CU_ASSERT_EQUAL(sx.stx_size, npy_len);
	/* the entry points of binaries built before glibc 2.33 */
	CU_ASSERT_PTR_NOT_NULL_FATAL(xstat);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fxstat);
	CU_ASSERT_EQUAL(xstat(1, desc("raw.patchmap"), &st), 0);
	check_stat(&st, raw_len);
	CU_ASSERT_EQUAL(fxstat(1, fd, &st), 0);
	check_stat(&st, npy_len);
	close(fd);
	close(dir);
}

static void test_positioned_reads(void)
{
	unsigned char a[333], b[1000], c[7777];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	size_t total = sizeof(a) + sizeof(b) + sizeof(c);
	int fd = open(desc("npy.patchmap"), O_RDONLY);
	const unsigned char *w = want_npy;

	CU_ASSERT_FATAL(fd >= 0);
	/* across the header's end */
	CU_ASSERT_EQUAL(pread(fd, c, 200, (off_t)npy_hdr - 77), 200);
	CU_ASSERT(!memcmp(c, w + npy_hdr - 77, 200));
	CU_ASSERT_EQUAL(pread64(fd, c, 3001, 5003), 3001);
	CU_ASSERT(!memcmp(c, w + 5003, 3001));
	/* at the end: short, then nothing */
	CU_ASSERT_EQUAL(pread(fd, c, 1000, (off_t)npy_len - 300), 300);
	CU_ASSERT(!memcmp(c, w + npy_len - 300, 300));
	CU_ASSERT_EQUAL(pread(fd, c, 1000, (off_t)npy_len), 0);
	CU_ASSERT_EQUAL(pread(fd, c, 1000, (off_t)npy_len + 99999), 0);
	CU_ASSERT_EQUAL(pread(fd, c, 10, -1), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	/* pread leaves the offset alone */
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), 0);

	CU_ASSERT_EQUAL(lseek(fd, 11, SEEK_SET), 11);
	CU_ASSERT_EQUAL(readv(fd, iov, 3), (ssize_t)total);
	CU_ASSERT(!memcmp(a, w + 11, sizeof(a)));
	CU_ASSERT(!memcmp(b, w + 11 + sizeof(a), sizeof(b)));
	CU_ASSERT(!memcmp(c, w + 11 + sizeof(a) + sizeof(b), sizeof(c)));
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)(11 + total));
	CU_ASSERT_EQUAL(preadv(fd, iov, 3, 999), (ssize_t)total);
	CU_ASSERT(!memcmp(a, w + 999, sizeof(a)) && !memcmp(c, w + 999 + sizeof(a) + sizeof(b), sizeof(c)));
	CU_ASSERT_EQUAL(preadv2(fd, iov, 2, 3, 0), (ssize_t)(sizeof(a) + sizeof(b)));
	CU_ASSERT(!memcmp(a, w + 3, sizeof(a)) && !memcmp(b, w + 3 + sizeof(a), sizeof(b)));
	/* offset -1: at the file offset, moving it */
	CU_ASSERT_EQUAL(preadv2(fd, iov, 1, -1, 0), (ssize_t)sizeof(a));
	CU_ASSERT(!memcmp(a, w + 11 + total, sizeof(a)));
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)(11 + total + sizeof(a)));
	/* readv over the end: short */
	CU_ASSERT_EQUAL(lseek(fd, -(off_t)500, SEEK_END), (off_t)npy_len - 500);
	CU_ASSERT_EQUAL(readv(fd, iov, 3), 500);
	CU_ASSERT(!memcmp(a, w + npy_len - 500, sizeof(a)) && !memcmp(b, w + npy_len - 500 + sizeof(a), 167));
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)npy_len);
	close(fd);
}

static void test_lseek(void)
{
	unsigned char buf[100];
	int fd = open(desc("raw.patchmap"), O_RDONLY);
	off_t size = (off_t)raw_len;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(lseek(fd, -100, SEEK_END), size - 100);
	CU_ASSERT_EQUAL(read(fd, buf, 100), 100);
	CU_ASSERT(!memcmp(buf, want_raw + raw_len - 100, 100));
	CU_ASSERT_EQUAL(lseek64(fd, 5, SEEK_DATA), 5);
	CU_ASSERT_EQUAL(lseek(fd, 5, SEEK_HOLE), size);
	errno = 0;
	CU_ASSERT_EQUAL(lseek(fd, size, SEEK_DATA), -1);
	CU_ASSERT_EQUAL(errno, ENXIO);
	CU_ASSERT_EQUAL(lseek(fd, -1, SEEK_SET), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_EQUAL(lseek(fd, -size - 1, SEEK_END), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_EQUAL(lseek(fd, 0, 99), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	/* past the end: reads give nothing and leave the offset there */
	CU_ASSERT_EQUAL(lseek(fd, size + 4096, SEEK_SET), size + 4096);
	CU_ASSERT_EQUAL(read(fd, buf, 100), 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), size + 4096);
	CU_ASSERT_EQUAL(lseek(fd, 10, SEEK_END), size + 10);
	CU_ASSERT_EQUAL(lseek(fd, -20, SEEK_CUR), size - 10);
	CU_ASSERT_EQUAL(read(fd, buf, 100), 10);
	close(fd);
}

static void test_dup(void)
{
	unsigned char buf[300];
	int fd = open(desc("raw.patchmap"), O_RDONLY), other = open(desc("npy.patchmap"), O_RDONLY);
	int d1, d2, d3, d4, d5;

	CU_ASSERT_FATAL(fd >= 0 && other >= 0);
	d1 = dup(fd);
	d2 = fcntl(fd, F_DUPFD, 100);
	d3 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	d4 = dup3(fd, 200, O_CLOEXEC);
	d5 = dup2(fd, 201);
	CU_ASSERT_FATAL(d1 >= 0 && d2 >= 100 && d3 >= 0 && d4 == 200 && d5 == 201);
	CU_ASSERT(fcntl(d3, F_GETFD) & FD_CLOEXEC);
	CU_ASSERT(fcntl(d4, F_GETFD) & FD_CLOEXEC);
	CU_ASSERT_FALSE(fcntl(d5, F_GETFD) & FD_CLOEXEC);
	CU_ASSERT_EQUAL(fcntl(d2, F_GETFL) & O_ACCMODE, O_RDONLY);
	/* one offset for all, as one open file description */
	CU_ASSERT_EQUAL(read(fd, buf, 100), 100);
	CU_ASSERT_EQUAL(read(d1, buf, 100), 100);
	CU_ASSERT(!memcmp(buf, want_raw + 100, 100));
	CU_ASSERT_EQUAL(read(d2, buf, 100), 100);
	CU_ASSERT(!memcmp(buf, want_raw + 200, 100));
	CU_ASSERT_EQUAL(lseek(d4, 0, SEEK_CUR), 300);
	/* the copies outlive the original */
	CU_ASSERT_EQUAL(close(fd), 0);
	CU_ASSERT_EQUAL(read(d3, buf, 100), 100);
	CU_ASSERT(!memcmp(buf, want_raw + 300, 100));
	/* dup2 over a virtual fd: it becomes the other file */
	CU_ASSERT_EQUAL(dup2(other, d5), d5);
	CU_ASSERT_EQUAL(pread(d5, buf, 100, 0), 100);
	CU_ASSERT(!memcmp(buf, want_npy, 100));
	CU_ASSERT_EQUAL(lseek(d5, 0, SEEK_END), (off_t)npy_len);
	/* dup2 of an fd onto itself changes nothing */
	CU_ASSERT_EQUAL(dup2(d5, d5), d5);
	CU_ASSERT_EQUAL(lseek(d5, 0, SEEK_END), (off_t)npy_len);
	/* an ordinary fd over a virtual one: ordinary again */
	CU_ASSERT_EQUAL(dup2(sys_open(desc("img.npy"), O_RDONLY | O_CLOEXEC, 0), d4), d4);
	CU_ASSERT_EQUAL(pread(d4, buf, 6, 0), 6);
	CU_ASSERT(!memcmp(buf, "\x93NUMPY", 6));
	for (int x = 0; x < 2; x++)
		close(x ? other : d1);
	close(d2);
	close(d3);
	close(d4);
	close(d5);
}

/* The bytes at p against want, as the program sees them. */
static void check_map(const void *p, const unsigned char *want, size_t len)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_FATAL(p != MAP_FAILED);
	CU_ASSERT(!memcmp(p, want, len));
}

static void test_mmap(void)
{
	int fd = open(desc("raw.patchmap"), O_RDONLY);
	size_t pages = (raw_len + page - 1) / page;
	unsigned char *a, *b, *c;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(pages > 12);
	a = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	check_map(a, want_raw, raw_len);
	/* backwards, so that the two-chunk budget evicts all along */
	for (size_t off = raw_len; off > 0; off -= off > 1000 ? 1000 : off)
		CU_ASSERT_EQUAL(a[off - 1], want_raw[off - 1]);
	b = mmap64(NULL, 5000, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, (off_t)(3 * page));
	check_map(b, want_raw + 3 * page, 5000);
	c = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	check_map(c, want_raw, raw_len);
	CU_ASSERT_EQUAL(munmap(c, raw_len), 0);
	/* mappings outlive the fd */
	CU_ASSERT_EQUAL(close(fd), 0);
	check_map(a, want_raw, raw_len);
	check_map(b, want_raw + 3 * page, 5000);
	CU_ASSERT_EQUAL(munmap(b, 5000), 0);

	/* pieces: the middle, then the head, then the tail */
	CU_ASSERT_EQUAL(munmap(a + 4 * page, 2 * page), 0);
	check_map(a, want_raw, 4 * page);
	check_map(a + 6 * page, want_raw + 6 * page, raw_len - 6 * page);
	CU_ASSERT_EQUAL(munmap(a, 4 * page), 0);
	check_map(a + 6 * page, want_raw + 6 * page, raw_len - 6 * page);
	CU_ASSERT_EQUAL(munmap(a + 6 * page, raw_len - 6 * page), 0);

	/* Two mappings of one range share an address. Unmapping one, in a
	 * piece and then whole, leaves the other whole, whether the fd stays
	 * open or not; and a mapping made afterwards reads right. */
	for (int keep_fd = 0; keep_fd < 2; keep_fd++) {
		fd = open(desc("raw.patchmap"), O_RDONLY);
		a = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
		b = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
		check_map(a, want_raw, raw_len);
		CU_ASSERT_PTR_EQUAL(b, a);
		if (!keep_fd)
			close(fd);
		CU_ASSERT_EQUAL(munmap(a + page, page), 0);
		CU_ASSERT_EQUAL(munmap(a, raw_len), 0);
		check_map(b, want_raw, raw_len);
		CU_ASSERT_EQUAL(munmap(b, raw_len), 0);
		if (keep_fd) {
			c = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
			check_map(c, want_raw, raw_len);
			CU_ASSERT_EQUAL(munmap(c, raw_len), 0);
			close(fd);
		}
	}

	/* The piece of the second mapping that the first's munmap already
	 * took is unmapped again: no view covers it, yet it is the region's,
	 * not the kernel's to unmap; the descriptor's next mapping reads it.
	 * (Unmapping the same page twice, legal for a plain file, too.) */
	fd = open(desc("raw.patchmap"), O_RDONLY);
	a = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	b = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	check_map(a, want_raw, raw_len);
	CU_ASSERT_EQUAL(munmap(a + 3 * page, page), 0);
	CU_ASSERT_EQUAL(munmap(a, raw_len), 0);
	CU_ASSERT_EQUAL(munmap(b + 3 * page, page), 0);
	CU_ASSERT_EQUAL(munmap(b + 3 * page, page), 0);
	c = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	check_map(c, want_raw, raw_len);
	CU_ASSERT_EQUAL(munmap(c, raw_len), 0);
	check_map(b, want_raw, 3 * page);
	CU_ASSERT_EQUAL(munmap(b, 3 * page), 0);
	close(fd);

	/* mremap: grows and shrinks in place, within the file */
	fd = open(desc("raw.patchmap"), O_RDONLY);
	a = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, (off_t)page);
	check_map(a, want_raw + page, page);
	b = mremap(a, page, 3 * page, MREMAP_MAYMOVE);
	CU_ASSERT_PTR_EQUAL(b, a);
	check_map(a, want_raw + page, 3 * page);
	CU_ASSERT_PTR_EQUAL(mremap(a, 3 * page, pages * page, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, ENOMEM);
	CU_ASSERT_EQUAL(munmap(a, 3 * page), 0);
	close(fd);
}

static void test_mmap_errors(void)
{
	int fd = open(desc("raw.patchmap"), O_RDONLY), none = open(desc("none.patchmap"), O_RDONLY);
	size_t limit = (raw_len + page - 1) / page * page;
	void *p;

	CU_ASSERT_FATAL(fd >= 0 && none >= 0);
	errno = 0;
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, EACCES);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 100), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ, MAP_SHARED, fd, (off_t)limit), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, ENXIO);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, limit + page, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, ENXIO);
	p = mmap(NULL, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CU_ASSERT_PTR_EQUAL(mmap(p, page, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, ENODEV);
	munmap(p, page);
	CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ, MAP_SHARED, none, 0), MAP_FAILED);
	CU_ASSERT_EQUAL(errno, ENODEV);
	/* the last page, partly beyond the end: zeros there, as a file's */
	p = mmap(NULL, limit, PROT_READ, MAP_SHARED, fd, 0);
	CU_ASSERT_FATAL(p != MAP_FAILED);
	for (size_t i = raw_len; i < limit; i++)
		CU_ASSERT_EQUAL(((unsigned char *)p)[i], 0);
	munmap(p, limit);
	close(fd);
	close(none);
}

static void test_mmap_backends(void)
{
	static const char *const names[] = { "eager.patchmap", "sigsegv.patchmap", "uffd.patchmap",
					     "npy.patchmap" };

	for (int i = 0; i < 4; i++) {
		int fd = open(desc(names[i]), O_RDONLY);
		bool npy = i == 3;
		size_t len = npy ? npy_len : raw_len;
		unsigned char *p;

		CU_ASSERT_FATAL(fd >= 0);
		p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		check_map(p, npy ? want_npy : want_raw, len);
		/* a second view of the same open file shares its region */
		CU_ASSERT_PTR_EQUAL(mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, (off_t)page), p + page);
		CU_ASSERT_EQUAL(munmap(p + page, page), 0);
		check_map(p, npy ? want_npy : want_raw, len);
		CU_ASSERT_EQUAL(munmap(p, len), 0);
		close(fd);
	}
}

static void test_zero_copy(void)
{
	int fd = open(desc("raw.patchmap"), O_RDONLY);
	int out = sys_open(t_path("copy.bin"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int pipefd[2];
	int avail = 0;

	CU_ASSERT_FATAL(fd >= 0 && out >= 0 && pipe(pipefd) == 0);
	errno = 0;
	CU_ASSERT_EQUAL(copy_file_range(fd, NULL, out, NULL, 4096, 0), -1);
	CU_ASSERT_EQUAL(errno, EXDEV);
	CU_ASSERT_EQUAL(sendfile(out, fd, NULL, 4096), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_EQUAL(splice(fd, NULL, pipefd[1], NULL, 4096, 0), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_EQUAL(ioctl(out, FICLONE, fd), -1);
	CU_ASSERT_EQUAL(errno, EOPNOTSUPP);
	/* nothing moved, nothing written */
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), 0);
	CU_ASSERT_EQUAL(lseek(out, 0, SEEK_END), 0);
	CU_ASSERT_EQUAL(lseek(fd, 1000, SEEK_SET), 1000);
	CU_ASSERT_EQUAL(ioctl(fd, FIONREAD, &avail), 0);
	CU_ASSERT_EQUAL((size_t)avail, raw_len - 1000);
	close(pipefd[0]);
	close(pipefd[1]);
	sys_close(out);
	close(fd);
}

/* /dev/fd/N and /proc/self/fd/N open the same virtual file anew. */
static void test_proc_paths(void)
{
	unsigned char buf[100];
	char path[64];
	struct stat st;
	int fd = open(desc("raw.patchmap"), O_RDONLY), again;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(lseek(fd, 5000, SEEK_SET), 5000);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), i ? "/proc/self/fd/%d" : "/dev/fd/%d", fd);
		CU_ASSERT_EQUAL(stat(path, &st), 0);
		CU_ASSERT_EQUAL((size_t)st.st_size, raw_len);
		again = open(path, O_RDONLY);
		CU_ASSERT_FATAL(again >= 0);
		CU_ASSERT_EQUAL(read(again, buf, 100), 100);
		CU_ASSERT(!memcmp(buf, want_raw, 100));
		CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), 5000);
		close(again);
	}
	close(fd);
}

/* ---------------------------------------------------------------- leaks */

static int count_lines(const char *path)
{
	char buf[65536];
	int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0), n = 0;
	ssize_t r;

	while ((r = sys_read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < r; i++)
			n += buf[i] == '\n';
	sys_close(fd);
	return n;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void test_no_leaks(void)
{
	int fds0, maps0, tasks0, fds1, maps1, tasks1;
	unsigned char buf[4096];

	/* once first, so that lazily made things (the table's pages) exist */
	for (int round = 0; round < 2; round++) {
		fds0 = count_dir("/proc/self/fd");
		maps0 = count_lines("/proc/self/maps");
		tasks0 = count_dir("/proc/self/task");
		for (int i = 0; i < (round ? 20 : 1); i++) {
			int fd = open(desc(i % 2 ? "raw.patchmap" : "sigsegv.patchmap"), O_RDONLY);
			int d = dup(fd);
			unsigned char *p = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
			unsigned char *q = mmap(NULL, 2 * page, PROT_READ, MAP_PRIVATE, d, (off_t)page);
			FILE *f = fopen(desc("npy.patchmap"), "r");

			CU_ASSERT_FATAL(fd >= 0 && d >= 0 && p != MAP_FAILED && q != MAP_FAILED && f);
			CU_ASSERT_EQUAL(read(d, buf, sizeof(buf)), (ssize_t)sizeof(buf));
			CU_ASSERT(!memcmp(p, want_raw, raw_len));
			CU_ASSERT(!memcmp(q, want_raw + page, 2 * page));
			CU_ASSERT_EQUAL(fread(buf, 1, sizeof(buf), f), sizeof(buf));
			close(fd);
			CU_ASSERT_EQUAL(munmap(p, raw_len), 0);
			CU_ASSERT(!memcmp(q, want_raw + page, 2 * page));
			CU_ASSERT_EQUAL(munmap(q, 2 * page), 0);
			close(d);
			fclose(f);
		}
		fds1 = count_dir("/proc/self/fd");
		maps1 = count_lines("/proc/self/maps");
		tasks1 = count_dir("/proc/self/task");
	}
	if (fds1 != fds0 || maps1 != maps0 || tasks1 != tasks0)
		fprintf(stderr, "\n  fds %d -> %d, maps %d -> %d, threads %d -> %d\n", fds0, fds1, maps0, maps1,
			tasks0, tasks1);
	CU_ASSERT_EQUAL(fds1, fds0);
	CU_ASSERT_EQUAL(maps1, maps0);
	CU_ASSERT_EQUAL(tasks1, tasks0);
}

/* ---------------------------------------------------------------- processes */

static void test_fork(void)
{
	unsigned char buf[200], *p;
	int fd = open(desc("raw.patchmap"), O_RDONLY), status;
	pid_t pid;

	CU_ASSERT_FATAL(fd >= 0);
	p = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);
	CU_ASSERT_FATAL(p != MAP_FAILED);
	CU_ASSERT_EQUAL(read(fd, buf, 100), 100);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		/* the child: reads on from the shared offset, and maps anew
		 * (the parent's mapping is not inherited) */
		int ok = read(fd, buf, 200) == 200 && !memcmp(buf, want_raw + 100, 200);
		unsigned char *q = mmap(NULL, raw_len, PROT_READ, MAP_SHARED, fd, 0);

		ok = ok && q != MAP_FAILED && !memcmp(q, want_raw, raw_len) && munmap(q, raw_len) == 0;
		_exit(ok ? 0 : 1);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), 300);
	CU_ASSERT(!memcmp(p, want_raw, raw_len));
	munmap(p, raw_len);
	close(fd);
}

static const char *self_exe;

/* An exec'd program under the shim finds descriptors it inherits open, at
 * their offset; its stdin stream reads the virtual file. */
static void test_exec(void)
{
	int fd = open(desc("npy.patchmap"), O_RDONLY), status;
	char len[32];
	pid_t pid;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(lseek(fd, 1000, SEEK_SET), 1000);
	snprintf(len, sizeof(len), "%zu", npy_len);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		dup2(fd, 0);
		execl(self_exe, self_exe, "--inherited", t_dir, len, (char *)NULL);
		_exit(3);
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_CUR), (off_t)npy_len);
	close(fd);
}

static int inherited(void)
{
	unsigned char *buf = malloc(npy_len + 1);
	struct stat st;
	size_t n;

	if (fstat(0, &st) || (size_t)st.st_size != npy_len || fileno(stdin) != 0)
		return 1;
	n = fread(buf, 1, npy_len + 1, stdin);
	return n == npy_len - 1000 && !memcmp(buf, want_npy + 1000, n) ? 0 : 2;
}

/* ---------------------------------------------------------------- errors */

/* What stderr receives while fn runs. */
static char *capture_stderr(void (*fn)(void))
{
	static char out[8192];
	int saved = (int)syscall(SYS_dup, 2), tmp;
	ssize_t n;

	tmp = sys_open(t_path("stderr.txt"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	syscall(SYS_dup2, tmp, 2);
	fn();
	syscall(SYS_dup2, saved, 2);
	sys_close(saved);
	syscall(SYS_lseek, tmp, 0, SEEK_SET);
	n = sys_read(tmp, out, sizeof(out) - 1);
	sys_close(tmp);
	out[n > 0 ? n : 0] = 0;
	return out;
}

static void bad_opens(void)
{
	struct stat st;

	for (int i = 0; i < 3; i++) {
		errno = 0;
		CU_ASSERT_EQUAL(open(desc("bad.patchmap"), O_RDONLY), -1);
		CU_ASSERT_EQUAL(errno, EINVAL);
		CU_ASSERT_PTR_NULL(fopen(desc("bad.patchmap"), "r"));
		CU_ASSERT_EQUAL(errno, EINVAL);
		CU_ASSERT_EQUAL(stat(desc("bad.patchmap"), &st), -1);
		CU_ASSERT_EQUAL(errno, EINVAL);
	}
	CU_ASSERT_EQUAL(open(desc("bad2.patchmap"), O_RDONLY), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
}

static void test_malformed(void)
{
	char want[1024];
	const char *got = capture_stderr(bad_opens);

	snprintf(want, sizeof(want),
		 "libpatchmap-preload: %s:2: unknown key \"windw\"\n"
		 "libpatchmap-preload: %s:2: window: '99' spans 99x99 samples, more than the source's "
		 "67x45 (shape 67x45): give a smaller window, or pad\n",
		 desc("bad.patchmap"), desc("bad2.patchmap"));
	if (strcmp(got, want))
		fprintf(stderr, "\n  stderr:\n%s  want:\n%s", got, want);
	CU_ASSERT_STRING_EQUAL(got, want);
}

int main(int argc, char **argv)
{
	static const struct t_case cases[] = {
		{ ".npy image", test_npy_image },
		{ "read", test_read },
		{ "open, openat, __open_2, fopen, fdopen", test_open_variants },
		{ "opens for writing", test_write_opens },
		{ "stat family", test_stat },
		{ "pread, readv, preadv, preadv2", test_positioned_reads },
		{ "lseek", test_lseek },
		{ "dup, dup2, dup3, fcntl", test_dup },
		{ "mmap, munmap in pieces, mremap", test_mmap },
		{ "mmap errors", test_mmap_errors },
		{ "mmap with each backend", test_mmap_backends },
		{ "copy_file_range, sendfile, splice, ioctl", test_zero_copy },
		{ "/dev/fd and /proc/self/fd", test_proc_paths },
		{ "no fd, mapping or thread left", test_no_leaks },
		{ "fork", test_fork },
		{ "exec inherits open descriptors", test_exec },
		{ "malformed descriptors", test_malformed },
	};
	struct stat st;

	page = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (unsigned char)(i * 131 + 7);
	reference();
	if (argc == 4 && !strcmp(argv[1], "--inherited")) {
		/* the exec'd child of test_exec: the .npy image from the
		 * reference, without the shim's help */
		snprintf(t_dir, sizeof(t_dir), "%s", argv[2]);
		npy_len = strtoul(argv[3], NULL, 10);
		want_npy = malloc(npy_len);
		int fd = open(desc("npy.patchmap"), O_RDONLY);
		size_t n = fd >= 0 ? read_all(fd, want_npy, npy_len, 1 << 16) : 0;

		close(fd);
		if (n != npy_len || memcmp(want_npy + npy_len - raw_len, want_raw, raw_len))
			return 4;
		t_dir[0] = 0;
		return inherited();
	}
	self_exe = argv[0];
	if (t_make_dir("calls"))
		return 1;
	make_files();
	/* without the shim, nothing here can pass */
	if (stat(desc("raw.patchmap"), &st) || (size_t)st.st_size != raw_len) {
		fprintf(stderr, "libpatchmap-preload.so is not loaded (LD_PRELOAD)\n");
		return 1;
	}
	return t_run("preload-calls", cases, sizeof(cases) / sizeof(cases[0]));
}
