/* geometry.h: a validated patch-matrix description, and the index arithmetic
 * that maps a stored matrix element to the source sample it shows. */
#ifndef PM_GEOMETRY_H
#define PM_GEOMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchmap.h"
#include "region.h" /* PM__MAX_BYTES, pm__lazy_check */

/* One spatial axis of the source, with its window. */
struct pm__axis {
	int64_t n;          /* samples */
	ptrdiff_t stride;   /* bytes */
	int64_t k;          /* window size */
	int64_t step;
	int64_t dil;
	int64_t pad_before;
	int64_t out;        /* window positions */
};

/* One dimension of a stored row, or of the stored-row index: `extent` values,
 * each moving the sample coordinate on spatial axis `axis` by `inc` (axis -1:
 * the channel, inc 1). */
struct pm__dim {
	int64_t extent;
	int axis;
	int64_t inc;
};

struct pm__geom {
	const char *data;
	int src_dtype, dtype;
	size_t in_size, out_size;
	int ns;                                /* spatial axes */
	struct pm__axis ax[PM_MAX_DIMS];
	int64_t channels;                      /* 1 without a channel axis */
	ptrdiff_t cstride;
	int pad_mode;
	unsigned char pad_sample[8];           /* the constant pad, as a source sample */
	bool affine;
	double scale, offset;
	int order, layout;

	size_t rows, cols;                     /* stored matrix */
	size_t row_bytes;                      /* cols * out_size */
	size_t pitch;                          /* bytes between stored rows */
	size_t bytes;                          /* rows * pitch */
	size_t windows, window_elems;

	/* Row selection: stored row r shows window sel[r] (when sel is not
	 * NULL; owned by the matrix), else window sel_begin + r. */
	const uint64_t *sel;
	size_t sel_begin;

	/* A stored row index splits (row-major) into `nidx` dims; a stored row's
	 * elements split into `nrow` dims, outermost first. */
	int nidx, nrow;
	struct pm__dim idx[PM_MAX_DIMS + 1];
	struct pm__dim row[PM_MAX_DIMS + 1];
};

/* Validates opts into *g. Returns 0 or a negative code; allocates nothing.
 * need_data: a NULL source pointer is an error. */
int pm__geom_init(struct pm__geom *g, const struct pm_matrix_opts *opts, bool need_data);

/* Narrows a validated full-matrix g to the selection `rows` (NULL: all).
 * An index or mask selection is copied to a new array stored in *sel_out
 * (the caller frees it, after g's last use); *sel_out is NULL otherwise or
 * on failure. With sel_out NULL, the selection is only checked. */
int pm__geom_select(struct pm__geom *g, const struct pm_rows *rows, uint64_t **sel_out);

/* Maps a padded coordinate to a source coordinate in [0, n) for the edge,
 * reflect, symmetric and wrap modes. */
static inline int64_t pm__remap(int64_t p, int64_t n, int mode)
{
	int64_t m;

	switch (mode) {
	case PM_PAD_EDGE:
		return p < 0 ? 0 : p >= n ? n - 1 : p;
	case PM_PAD_REFLECT:
		if (n == 1)
			return 0;
		m = p % (2 * (n - 1));
		if (m < 0)
			m += 2 * (n - 1);
		return m < n ? m : 2 * (n - 1) - m;
	case PM_PAD_SYMMETRIC:
		m = p % (2 * n);
		if (m < 0)
			m += 2 * n;
		return m < n ? m : 2 * n - 1 - m;
	default: /* PM_PAD_WRAP */
		m = p % n;
		return m < 0 ? m + n : m;
	}
}

#endif
