/* preload-plain.c: under the shim, every file that is not a descriptor is
 * left alone: each interposed call on ordinary files, directories (even one
 * named *.patchmap), pipes and devices gives what the system call made
 * directly gives. Runs under LD_PRELOAD=libpatchmap-preload.so. */
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>

#include "ptest.h"

#define LEN 300001

static unsigned char content[LEN];

/* struct stat without the access time (a read may move it). */
static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
	       a->st_nlink == b->st_nlink && a->st_uid == b->st_uid && a->st_size == b->st_size &&
	       a->st_blksize == b->st_blksize && a->st_blocks == b->st_blocks &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void sys_stat(const char *path, struct stat *st, int flags)
{
	CU_ASSERT_EQUAL(syscall(SYS_newfstatat, AT_FDCWD, path, st, flags), 0);
}

static void test_files(void)
{
	static const char *const names[] = { "data.bin", "x.patchmap.txt", "patchmap", "y.PATCHMAP" };

	for (int i = 0; i < 4; i++) {
		const char *p = t_path(names[i]);
		unsigned char *buf = malloc(LEN + 10), *m;
		struct stat a, b;
		struct statx sa, sb;
		int fd;

		CU_ASSERT_EQUAL_FATAL(write_file(p, content, LEN), 0);
		fd = open(p, O_RDONLY);
		CU_ASSERT_FATAL(fd >= 0);
		CU_ASSERT_EQUAL(read(fd, buf, LEN + 10), LEN);
		CU_ASSERT(!memcmp(buf, content, LEN));
		CU_ASSERT_EQUAL(fstat(fd, &a), 0);
		CU_ASSERT_EQUAL(syscall(SYS_fstat, fd, &b), 0);
		CU_ASSERT(same_stat(&a, &b));
		CU_ASSERT_EQUAL(stat(p, &a), 0);
		sys_stat(p, &b, 0);
		CU_ASSERT(same_stat(&a, &b));
		CU_ASSERT_EQUAL(lstat(p, &a), 0);
		CU_ASSERT(same_stat(&a, &b));
		CU_ASSERT_EQUAL(fstatat(AT_FDCWD, p, &a, 0), 0);
		CU_ASSERT(same_stat(&a, &b));
		CU_ASSERT_EQUAL(fstatat(fd, "", &a, AT_EMPTY_PATH), 0);
		CU_ASSERT(same_stat(&a, &b));
		CU_ASSERT_EQUAL(statx(AT_FDCWD, p, 0, STATX_BASIC_STATS, &sa), 0);
		CU_ASSERT_EQUAL(syscall(SYS_statx, AT_FDCWD, p, 0, STATX_BASIC_STATS, &sb), 0);
		CU_ASSERT(sa.stx_size == sb.stx_size && sa.stx_mode == sb.stx_mode && sa.stx_ino == sb.stx_ino &&
			  sa.stx_blocks == sb.stx_blocks && sa.stx_blksize == sb.stx_blksize);
		CU_ASSERT_EQUAL(pread(fd, buf, 1000, 777), 1000);
		CU_ASSERT(!memcmp(buf, content + 777, 1000));
		CU_ASSERT_EQUAL(lseek(fd, -5, SEEK_END), LEN - 5);
		CU_ASSERT_EQUAL(lseek(fd, 10, SEEK_DATA), syscall(SYS_lseek, fd, 10, SEEK_DATA));
		CU_ASSERT_EQUAL(lseek(fd, 10, SEEK_HOLE), syscall(SYS_lseek, fd, 10, SEEK_HOLE));
		CU_ASSERT_EQUAL(lseek(fd, 3, SEEK_SET), 3);
		{
			unsigned char x[10], y[20];
			struct iovec iov[2] = { { x, 10 }, { y, 20 } };

			CU_ASSERT_EQUAL(readv(fd, iov, 2), 30);
			CU_ASSERT(!memcmp(x, content + 3, 10) && !memcmp(y, content + 13, 20));
			CU_ASSERT_EQUAL(preadv(fd, iov, 2, 100), 30);
			CU_ASSERT(!memcmp(x, content + 100, 10) && !memcmp(y, content + 110, 20));
		}
		m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		CU_ASSERT_FATAL(m != MAP_FAILED);
		CU_ASSERT(!memcmp(m, content, LEN));
		m[0] ^= 1; /* a private writable mapping of an ordinary file */
		CU_ASSERT_EQUAL(munmap(m, LEN), 0);
		CU_ASSERT_EQUAL(close(fd), 0);
		free(buf);
	}
}

static void test_stdio_and_fds(void)
{
	const char *p = t_path("data.bin");
	unsigned char *buf = malloc(LEN);
	FILE *f = fopen(p, "r");
	int fd, d, d2, out;

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(fread(buf, 1, LEN, f), LEN);
	CU_ASSERT(!memcmp(buf, content, LEN));
	fclose(f);
	f = fdopen(open(p, O_RDONLY), "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(fread(buf, 1, LEN, f), LEN);
	fclose(f);
	f = fopen(t_path("w.txt"), "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(fputs("written\n", f), 1);
	fclose(f);

	fd = open(p, O_RDONLY);
	d = dup(fd);
	d2 = fcntl(fd, F_DUPFD_CLOEXEC, 50);
	CU_ASSERT(d >= 0 && d2 >= 50);
	CU_ASSERT_EQUAL(read(d, buf, 10), 10);
	CU_ASSERT_EQUAL(lseek(d2, 0, SEEK_CUR), 10);
	/* the zero-copy calls work on ordinary files */
	out = open(t_path("copy.bin"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CU_ASSERT_FATAL(out >= 0);
	CU_ASSERT_EQUAL(copy_file_range(fd, NULL, out, NULL, 1000, 0), 1000);
	CU_ASSERT_EQUAL(sendfile(out, fd, NULL, 1000), 1000);
	close(out);
	out = sys_open(t_path("copy.bin"), O_RDONLY, 0);
	CU_ASSERT_EQUAL(sys_read(out, buf, LEN), 2000);
	CU_ASSERT(!memcmp(buf, content + 10, 2000));
	sys_close(out);
	close(fd);
	close(d);
	close(d2);
	free(buf);
}

static void test_directories_pipes_devices(void)
{
	const char *dir = t_path("dir.patchmap");
	unsigned char buf[64];
	struct stat a, b;
	int fd, p[2], avail = 0;
	void *z;
	DIR *d;

	/* a directory named like a descriptor is a directory */
	CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
	CU_ASSERT_EQUAL(stat(dir, &a), 0);
	sys_stat(dir, &b, 0);
	CU_ASSERT(same_stat(&a, &b) && S_ISDIR(a.st_mode));
	fd = open(dir, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(fstat(fd, &a), 0);
	CU_ASSERT(S_ISDIR(a.st_mode));
	CU_ASSERT_EQUAL(read(fd, buf, 10), -1);
	CU_ASSERT_EQUAL(errno, EISDIR);
	close(fd);
	CU_ASSERT_PTR_NULL(fopen(dir, "r+"));
	CU_ASSERT_EQUAL(errno, EISDIR);
	d = opendir(dir);
	CU_ASSERT_PTR_NOT_NULL(d);
	if (d)
		closedir(d);
	/* a missing descriptor: ENOENT, as for any file */
	CU_ASSERT_EQUAL(open(t_path("missing.patchmap"), O_RDONLY), -1);
	CU_ASSERT_EQUAL(errno, ENOENT);
	CU_ASSERT_EQUAL(stat(t_path("missing.patchmap"), &a), -1);
	CU_ASSERT_EQUAL(errno, ENOENT);

	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	CU_ASSERT_EQUAL(write(p[1], "hello", 5), 5);
	CU_ASSERT_EQUAL(ioctl(p[0], FIONREAD, &avail), 0);
	CU_ASSERT_EQUAL(avail, 5);
	CU_ASSERT_EQUAL(read(p[0], buf, 5), 5);
	CU_ASSERT(!memcmp(buf, "hello", 5));
	{
		int p2[2];
		CU_ASSERT_EQUAL_FATAL(pipe(p2), 0);
		CU_ASSERT_EQUAL(write(p[1], "abc", 3), 3);
		CU_ASSERT_EQUAL(splice(p[0], NULL, p2[1], NULL, 3, 0), 3);
		CU_ASSERT_EQUAL(read(p2[0], buf, 3), 3);
		CU_ASSERT(!memcmp(buf, "abc", 3));
		close(p2[0]);
		close(p2[1]);
	}
	close(p[0]);
	close(p[1]);

	fd = open("/dev/zero", O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	z = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
	CU_ASSERT_FATAL(z != MAP_FAILED);
	CU_ASSERT_EQUAL(((unsigned char *)z)[8191], 0);
	munmap(z, 8192);
	close(fd);
	fd = open("/dev/null", O_RDONLY);
	CU_ASSERT_EQUAL(read(fd, buf, 10), 0);
	close(fd);
}

/* A descriptor closed behind the shim's back (a raw system call): the
 * number, handed out again by any open, is an ordinary file again. */
static void test_stale_number(void)
{
	const char *p = t_path("data.bin");
	unsigned char buf[100], *m;
	int fd, again;

	fd = open(t_path("d.patchmap"), O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(lseek(fd, 0, SEEK_END), 81 * 4);
	sys_close(fd);
	again = open(p, O_RDONLY);
	CU_ASSERT_EQUAL_FATAL(again, fd);
	CU_ASSERT_EQUAL(read(again, buf, 100), 100);
	CU_ASSERT(!memcmp(buf, content, 100));
	CU_ASSERT_EQUAL(lseek(again, 0, SEEK_END), LEN);
	m = mmap(NULL, LEN, PROT_READ, MAP_SHARED, again, 0);
	CU_ASSERT_FATAL(m != MAP_FAILED);
	CU_ASSERT(!memcmp(m, content, LEN));
	munmap(m, LEN);
	close(again);
}

int main(void)
{
	static const struct t_case cases[] = {
		{ "ordinary files", test_files },
		{ "stdio, dup, zero-copy calls", test_stdio_and_fds },
		{ "directories, pipes, devices", test_directories_pipes_devices },
		{ "an fd closed behind the shim's back", test_stale_number },
	};
	struct stat st;

	for (size_t i = 0; i < LEN; i++)
		content[i] = (unsigned char)(i * 2654435761u >> 13);
	if (t_make_dir("plain"))
		return 1;
	/* a 10 x 10 uint8 image, 2 x 2 windows: 81 rows of 4 bytes */
	if (write_npy(t_path("src.npy"), "|u1", 2, (size_t[]){ 10, 10 }, content, 100) ||
	    write_text(t_path("d.patchmap"), "source = src.npy\nwindow = 2\ndtype = same\n") ||
	    stat(t_path("d.patchmap"), &st) || st.st_size != 81 * 4) {
		fprintf(stderr, "libpatchmap-preload.so is not loaded (LD_PRELOAD)\n");
		return 1;
	}
	return t_run("preload-plain", cases, sizeof(cases) / sizeof(cases[0]));
}
