/* vfile.h: the virtual file a descriptor stands for: its source loaded, its
 * patch matrix opened without a mapping (bytes come from pm_matrix_read), the
 * .npy header if asked, and, on the first mmap, a lazy region over the whole
 * file image. Knows nothing of file descriptors or interposition. */
#ifndef PM_PRELOAD_VFILE_H
#define PM_PRELOAD_VFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "descriptor.h"
#include "image.h"
#include "patchmap.h"

/* Room for a message: the descriptor's name, its line and the problem. */
#define VF_ERRLEN (DESC_ERRLEN + 4096 + 64)

struct vf_region;

struct vfile {
	atomic_int refs;               /* table entries and mapped views */
	uint64_t size;                 /* header + matrix bytes */
	size_t header_len;
	char *header;                  /* .npy header (NULL for raw) */
	pm_matrix *m;                  /* backend NONE: read with pm_matrix_read */
	struct pm_matrix_info info;
	struct pm_lazy_opts lazy;      /* for the region */
	struct timespec source_mtime;
	struct img im;                 /* the source array, mapped */
	/* the mapping: made by vf_region() (again in a child of fork(), where
	 * the parent's is absent), kept until vf_put's last reference */
	struct vf_region *_Atomic region;
};

/* Reads the descriptor open on fd (its text, from offset 0, without moving
 * the file offset), loads its source and describes its matrix. `name` is
 * used in messages. With `open_matrix`, also opens the matrix for reading;
 * without, only size and stat fields are valid (for stat()).
 * Returns a vfile with one reference, or NULL with errno set (EINVAL for
 * anything wrong in the descriptor or its source) and, when the descriptor
 * is at fault, one line in msg ("NAME:LINE: problem"); msg is "" for a
 * system error such as ENOMEM. */
struct vfile *vf_load(int fd, const char *name, bool open_matrix, char *msg);

/* Adds a reference. */
void vf_get(struct vfile *vf);
/* Drops a reference; the last closes the region (in the process that
 * opened it), the matrix and the source. Calls into the library: never
 * call it holding a lock the library's memory calls could need. */
void vf_put(struct vfile *vf);

/* Copies bytes [off, off + len) of the file image (off + len <= size). 0 or
 * a negative errno. Thread-safe; never touches the region. */
int vf_read(struct vfile *vf, uint64_t off, void *dst, size_t len);

/* The region over the whole image, created on first use with the
 * descriptor's lazy options (thread-safe: racing creators keep one). NULL
 * with errno set (ENODEV for backend = none). */
const char *vf_region(struct vfile *vf, size_t *span);

/* Whether this process has a region open, and the spans of those that
 * overlap [a, a + len) (at most max, as [lo[i], hi[i])). Never allocate:
 * for munmap. */
bool vf_live_any(void);
/* Takes (true) or releases the list's lock, around fork(): a child must
 * not inherit it taken. */
void vf_live_hold(bool hold);
int vf_live_spans(const char *a, size_t len, const char **lo, const char **hi, int max);

/* Rewrites what stat reports for the descriptor file into what it reports
 * for the virtual file: size, blocks, read-only regular file, a large
 * preferred block size, the later modification time of descriptor and
 * source. */
void vf_patch_stat(const struct vfile *vf, struct stat *st);

#endif
