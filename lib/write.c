/* write.c: writes bytes of a patch matrix to a file descriptor, computed by
 * pm_matrix_read into a bounded buffer, so that it works where a kernel
 * access of the mapping cannot (UFFD_USER_MODE_ONLY, the SIGSEGV backend,
 * backend "none"). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "patchmap.h"

/* Bytes computed and written per step: large enough to amortise the write
 * calls, small enough to stay in cache and never matter for the budget. */
#define WRITE_BUFFER ((size_t)1 << 20)

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0) /* no progress and no error: would loop forever */
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int pm_matrix_write(const pm_matrix *m, int fd, size_t offset, size_t len)
{
	size_t total, chunk;
	char *buf;
	int err = 0;

	if (!m)
		return -PM_ENULL;
	if (fd < 0)
		return -EBADF;
	total = pm_matrix_bytes(m);
	if (offset > total || len > total - offset)
		return -PM_ERANGE;
	if (!len)
		return 0;
	chunk = len < WRITE_BUFFER ? len : WRITE_BUFFER;
	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	while (len && !err) {
		size_t n = len < chunk ? len : chunk;

		err = pm_matrix_read(m, offset, buf, n);
		if (!err)
			err = write_all(fd, buf, n);
		offset += n;
		len -= n;
	}
	free(buf);
	return err;
}
