/* vfile.c: a descriptor's virtual file: loading it (text, source, matrix,
 * .npy header), its bytes, its lazy mapping and what stat says of it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfile.h"

/* What stat reports as the preferred I/O size: readers such as cat size
 * their buffer from it, and larger reads amortise each pm_matrix_read. */
#define VF_BLKSIZE ((blksize_t)1 << 20)

struct vf_region {
	pm_region *r;
	pid_t pid;
	size_t span;
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && !memcmp(s + n - k, suffix, k);
}

/* The descriptor's text, from offset 0, leaving the file offset alone. A
 * file opened with O_DIRECT refuses unaligned reads: it is read again
 * through /proc. */
static char *read_text(int fd, size_t *len, int *err)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int rfd = fd;

	if (!buf) {
		*err = ENOMEM;
		return NULL;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb;

			if (cap > DESC_MAX_BYTES)
				break; /* the parser refuses it by its length */
			nb = realloc(buf, cap * 2);
			if (!nb) {
				*err = ENOMEM;
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		r = pread(rfd, buf + n, cap - n, (off_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EINVAL && rfd == fd) {
			char proc[64];

			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			rfd = open(proc, O_RDONLY | O_CLOEXEC);
			if (rfd >= 0)
				continue;
			errno = EINVAL;
		}
		if (r < 0) {
			*err = errno;
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (rfd != fd)
		close(rfd);
	*len = n;
	return buf;
fail:
	if (rfd != fd)
		close(rfd);
	free(buf);
	return NULL;
}

/* The directory holding the descriptor open on fd (where relative sources
 * are found), from /proc, or from the name it was opened by. */
static void descriptor_dir(int fd, const char *name, char *dir, size_t cap)
{
	char proc[64];
	ssize_t n;
	char *slash;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, dir, cap - 1);
	if (n > 0 && dir[0] == '/') {
		dir[n] = 0;
	} else {
		snprintf(dir, cap, "%s", name);
	}
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, cap, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
}

static int load_fail(char *msg, const char *name, int line, const char *what)
{
	if (line)
		snprintf(msg, VF_ERRLEN, "%s:%d: %s", name, line, what);
	else
		snprintf(msg, VF_ERRLEN, "%s: %s", name, what);
	errno = EINVAL;
	return -1;
}

/* Whether path leads to a descriptor: named like one, or through a link
 * (/dev/stdin, /dev/fd/N, a symlink) to a file that is. A descriptor read
 * as an array is only text; under the shim, opening it would load another
 * descriptor from within this one's loading, without end if it leads back
 * here. A path that does not resolve is left to the open to report. */
static bool leads_to_descriptor(const char *path)
{
	char *real;
	bool yes;

	if (ends_with(path, ".patchmap"))
		return true;
	real = realpath(path, NULL);
	yes = real && ends_with(real, ".patchmap");
	free(real);
	return yes;
}

/* The index or mask file `given` of the descriptor in dir names a
 * descriptor: the message for it in msg, and -1; else 0. */
static int selection_descriptor(const char *key, const char *given, const char *dir, const char *name,
				int line, char *msg)
{
	char what[DESC_PATH_MAX + 128], *path = NULL;
	bool yes;

	if (!given)
		return 0;
	if (given[0] == '/' || asprintf(&path, "%s/%s", dir, given) < 0)
		path = NULL;
	yes = leads_to_descriptor(path ? path : given);
	free(path);
	if (!yes)
		return 0;
	snprintf(what, sizeof(what), "%s: '%s' names a descriptor, not %s", key, given,
		 !strcmp(key, "rows") ? "a .npy of integer window numbers" : "a bool .npy or a PGM");
	return load_fail(msg, name, line, what);
}

/* The regions of this process that are open, for the shim's munmap:
 * their addresses are never the program's own memory, whether a view
 * covers them or not. A fixed table (munmap must not allocate); a region
 * that finds it full goes unlisted, as every region did before. */
#define LIVE_MAX 256
static struct {
	const char *base;
	size_t span;
} live[LIVE_MAX];
static atomic_int nlive;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static void live_add(const char *base, size_t span)
{
	pthread_mutex_lock(&live_lock);
	for (int i = 0; i < LIVE_MAX; i++)
		if (!live[i].base) {
			live[i].base = base;
			live[i].span = span;
			atomic_fetch_add(&nlive, 1);
			break;
		}
	pthread_mutex_unlock(&live_lock);
}

static void live_remove(const char *base)
{
	pthread_mutex_lock(&live_lock);
	for (int i = 0; i < LIVE_MAX; i++)
		if (live[i].base == base) {
			live[i].base = NULL;
			atomic_fetch_sub(&nlive, 1);
			break;
		}
	pthread_mutex_unlock(&live_lock);
}

void vf_live_hold(bool hold)
{
	if (hold)
		pthread_mutex_lock(&live_lock);
	else
		pthread_mutex_unlock(&live_lock);
}

bool vf_live_any(void)
{
	return atomic_load_explicit(&nlive, memory_order_acquire) != 0;
}

int vf_live_spans(const char *a, size_t len, const char **lo, const char **hi, int max)
{
	int n = 0;

	pthread_mutex_lock(&live_lock);
	for (int i = 0; i < LIVE_MAX && n < max; i++)
		if (live[i].base && a < live[i].base + live[i].span && live[i].base < a + len) {
			lo[n] = live[i].base;
			hi[n++] = live[i].base + live[i].span;
		}
	pthread_mutex_unlock(&live_lock);
	return n;
}

static void vf_free(struct vfile *vf)
{
	struct vf_region *reg = atomic_load(&vf->region);

	if (reg && reg->pid == getpid()) {
		live_remove(pm_region_data(reg->r));
		pm_region_close(reg->r);
	}
	/* In a child of fork() the parent's region is not mapped and its
	 * threads are gone: its bookkeeping is left behind, not closed. */
	if (reg && reg->pid == getpid())
		free(reg);
	pm_matrix_close(vf->m);
	img_close(&vf->im);
	free(vf->header);
	free(vf);
}

struct vfile *vf_load(int fd, const char *name, bool open_matrix, char *msg)
{
	char err[DESC_ERRLEN], dir[PATH_MAX], *text, *path = NULL;
	struct pm_matrix_opts o;
	struct fe_rows sel = { 0 };
	struct vfile *vf;
	struct desc *d;
	struct stat st;
	size_t len;
	int line, e, ret;

	msg[0] = 0;
	vf = calloc(1, sizeof(*vf));
	d = calloc(1, sizeof(*d));
	if (!vf || !d) {
		free(vf);
		free(d);
		errno = ENOMEM;
		return NULL;
	}
	atomic_init(&vf->refs, 1);
	atomic_init(&vf->region, NULL);
	text = read_text(fd, &len, &e);
	if (!text) {
		snprintf(err, sizeof(err), "cannot read the descriptor: %s", strerror(e));
		load_fail(msg, name, 0, err);
		goto fail;
	}
	if (desc_parse(text, len, d, err, &line)) {
		free(text);
		load_fail(msg, name, line, err);
		goto fail;
	}
	free(text);

	/* the source, relative to the descriptor's directory */
	line = d->line[DK_SOURCE];
	descriptor_dir(fd, name, dir, sizeof(dir));
	if (d->source[0] == '/' || asprintf(&path, "%s/%s", dir, d->source) < 0)
		path = strdup(d->source);
	if (!path) {
		errno = ENOMEM;
		goto fail;
	}
	if (ends_with(path, ".patchmap")) {
		load_fail(msg, name, line, "source: a descriptor cannot be the source of another");
		goto fail;
	}
	if (leads_to_descriptor(path)) {
		char what[DESC_PATH_MAX + 96];

		snprintf(what, sizeof(what), "source \"%s\" names a descriptor, and a descriptor cannot "
					     "be the source of another", d->source);
		load_fail(msg, name, line, what);
		goto fail;
	}
	/* Only a regular file: a stat of the descriptor must not wait on a
	 * FIFO's writer or read a device without end. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		char what[DESC_PATH_MAX + 64];

		snprintf(what, sizeof(what), "source \"%s\": not a regular file", d->source);
		load_fail(msg, name, line, what);
		goto fail;
	}
	if ((ret = fe_image_open(path, &d->opt, &vf->im, err))) {
		char what[DESC_ERRLEN + DESC_PATH_MAX + 32];
		int k = fe_raw_key_of_message(&d->opt, err);

		/* a page, level or band the image lacks: on that key's line */
		if (k >= FE_PAGE) {
			load_fail(msg, name, d->line[DK_RAW + k], err);
			goto fail;
		}
		snprintf(what, sizeof(what), "source \"%s\": %s", d->source,
			 ret == IMG_EFORMAT ? DESC_UNKNOWN_FORMAT : err);
		load_fail(msg, name,
			  d->opt.raw.ndim && strstr(err, "raw") ? d->line[DK_RAW + FE_SHAPE] : line, what);
		goto fail;
	}
	if (stat(path, &st) == 0)
		vf->source_mtime = st.st_mtim;

	if (selection_descriptor("rows", d->opt.rows_path, dir, name, d->line[desc_key("rows")], msg) ||
	    selection_descriptor("mask", d->opt.mask_path, dir, name, d->line[desc_key("mask")], msg))
		goto fail;
	if (desc_matrix(d, &vf->im.src, &o, &vf->info, err, &line) ||
	    desc_rows(d, dir, &o, &sel, &vf->info, err, &line)) {
		load_fail(msg, name, line, err);
		goto fail;
	}
	vf->lazy = o.lazy;
	if (d->format == DESC_NPY) {
		char hdr[512];
		size_t shape[2] = { vf->info.rows, vf->info.ld };

		vf->header_len = npy_write_header(hdr, sizeof(hdr), vf->info.dtype, 2, shape, false);
		vf->header = malloc(vf->header_len ? vf->header_len : 1);
		if (!vf->header_len || !vf->header) {
			errno = ENOMEM;
			goto fail;
		}
		memcpy(vf->header, hdr, vf->header_len);
	}
	if (__builtin_add_overflow((uint64_t)vf->info.bytes, (uint64_t)vf->header_len, &vf->size) ||
	    vf->size > (uint64_t)INT64_MAX) {
		load_fail(msg, name, d->line[desc_key("window")], "window: the file would be larger than a file "
							 "offset can say");
		goto fail;
	}
	/* The memory policy of every front end, when the matrix is to be
	 * opened (a stat does not): a budget or an eager matrix larger than
	 * what this process may take (its cgroup's limit) is refused, on the
	 * line of the key at fault. */
	if (open_matrix && (ret = pm_spec_check_memory(d->opt.spec, &vf->info))) {
		const char *what = pm_spec_error(d->opt.spec);
		char key[16];
		size_t n = strcspn(what, ":");
		int k = -1;

		if (n < sizeof(key)) {
			memcpy(key, what, n);
			key[n] = 0;
			k = desc_key(key);
		}
		load_fail(msg, name, k >= 0 && d->line[k] ? d->line[k] : d->line[desc_key("window")],
			  what);
		/* a budget below two chunks is a mistake in the descriptor
		 * (EINVAL); only a bound the system cannot grant is ENOMEM */
		errno = pm_error_errno(ret);
		goto fail;
	}
	if (open_matrix) {
		int code;

		o.lazy = (struct pm_lazy_opts){ .backend = PM_BACKEND_NONE };
		code = pm_matrix_open_rows(&o, &sel.rows, &vf->m);
		if (code) {
			/* describe accepted it: what is left is the system's */
			errno = pm_error_errno(code);
			goto fail;
		}
	}
	free(path);
	fe_rows_free(&sel);
	desc_free(d);
	free(d);
	return vf;
fail:
	e = errno;
	fe_rows_free(&sel);
	free(path);
	if (d)
		desc_free(d);
	free(d);
	vf_free(vf);
	errno = e;
	return NULL;
}

void vf_get(struct vfile *vf)
{
	atomic_fetch_add_explicit(&vf->refs, 1, memory_order_relaxed);
}

void vf_put(struct vfile *vf)
{
	if (vf && atomic_fetch_sub_explicit(&vf->refs, 1, memory_order_acq_rel) == 1)
		vf_free(vf);
}

int vf_read(struct vfile *vf, uint64_t off, void *dst, size_t len)
{
	char *out = dst;

	if (off < vf->header_len) {
		size_t n = vf->header_len - (size_t)off;

		if (n > len)
			n = len;
		memcpy(out, vf->header + off, n);
		out += n;
		len -= n;
		off += n;
	}
	if (len) {
		/* over a libvips image, a part that fails to decode is EIO here,
		 * not a SIGBUS in the reading thread */
		int code = img_matrix_read(&vf->im, vf->m, (size_t)(off - vf->header_len), out, len);

		if (code)
			return -pm_error_errno(code);
	}
	return 0;
}

static int region_fill(void *ctx, size_t offset, void *dst, size_t len)
{
	return vf_read(ctx, offset, dst, len);
}

const char *vf_region(struct vfile *vf, size_t *span)
{
	struct vf_region *cur = atomic_load(&vf->region), *mine;
	struct pm_region_opts ro = { .size = sizeof(ro) };
	struct pm_stats st = { 0 };
	pid_t pid = getpid();
	int code;

	for (;;) {
		if (cur && cur->pid == pid) {
			*span = cur->span;
			return pm_region_data(cur->r);
		}
		if (vf->lazy.backend == PM_BACKEND_NONE || !vf->m) {
			errno = ENODEV;
			return NULL;
		}
		mine = calloc(1, sizeof(*mine));
		if (!mine) {
			errno = ENOMEM;
			return NULL;
		}
		ro.length = (size_t)vf->size;
		ro.fill = region_fill;
		ro.ctx = vf;
		ro.lazy = vf->lazy;
		code = pm_region_open(&ro, &mine->r);
		if (code || pm_region_stats(mine->r, &st)) {
			pm_region_close(mine->r);
			free(mine);
			errno = code ? pm_error_errno(code) : EIO;
			return NULL;
		}
		mine->pid = pid;
		mine->span = (size_t)((vf->size + st.chunk_bytes - 1) / st.chunk_bytes * st.chunk_bytes);
		if (atomic_compare_exchange_strong(&vf->region, &cur, mine)) {
			/* a region inherited over fork() stays behind, unused */
			live_add(pm_region_data(mine->r), mine->span);
			cur = mine;
			continue;
		}
		/* another thread won: keep its region */
		pm_region_close(mine->r);
		free(mine);
	}
}

void vf_patch_stat(const struct vfile *vf, struct stat *st)
{
	st->st_size = (off_t)vf->size;
	st->st_blocks = (blkcnt_t)((vf->size + 511) / 512);
	st->st_mode = S_IFREG | (st->st_mode & 0444);
	st->st_blksize = VF_BLKSIZE;
	if (vf->source_mtime.tv_sec > st->st_mtim.tv_sec ||
	    (vf->source_mtime.tv_sec == st->st_mtim.tv_sec &&
	     vf->source_mtime.tv_nsec > st->st_mtim.tv_nsec))
		st->st_mtim = vf->source_mtime;
}
