/* descriptor.h: the .patchmap descriptor format (preload/README.md): a few
 * `key = value` lines naming a source image and the options of its patch
 * matrix. Parsing is a pure function of a buffer (fuzzed on its own);
 * desc_matrix() turns a parsed descriptor and the loaded source into matrix
 * options. Nothing here prints, opens files or calls into the library's
 * lazy machinery. */
#ifndef PM_PRELOAD_DESCRIPTOR_H
#define PM_PRELOAD_DESCRIPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchmap.h"

/* Room for any message these functions write. */
#define DESC_ERRLEN 320
/* Longest descriptor accepted: a guard against naming the wrong file. */
#define DESC_MAX_BYTES ((size_t)64 << 10)
/* Longest source path. */
#define DESC_PATH_MAX 4096

enum desc_key {
	DK_SOURCE,
	DK_SHAPE,
	DK_DTYPE,
	DK_RAW_OFFSET,
	DK_CHANNEL_AXIS,
	DK_WINDOW,
	DK_STEP,
	DK_DILATION,
	DK_PAD,
	DK_PAD_MODE,
	DK_PAD_VALUE,
	DK_OUTPUT_DTYPE,
	DK_SCALE,
	DK_OFFSET,
	DK_ORDER,
	DK_LAYOUT,
	DK_ROW_PITCH,
	DK_BUDGET,
	DK_CHUNK,
	DK_BACKEND,
	DK_THREADS,
	DK_READAHEAD,
	DK_WRITABLE,
	DK_FORMAT,
	DK_COUNT
};

/* The key's name as written in a descriptor. */
const char *desc_key_name(int key);

enum desc_format { DESC_RAW = 0, DESC_NPY };

/* channel_axis: an axis number (negative counts from the end), or one of: */
#define DESC_CHANNELS_AUTO INT32_MIN
#define DESC_CHANNELS_NONE (INT32_MIN + 1)

/* pad = same: resolved against the window by desc_matrix(). */
#define DESC_PAD_SAME (-2)

struct desc {
	int line[DK_COUNT];            /* where each key was given; 0: not given */
	char source[DESC_PATH_MAX];    /* as written (relative or absolute) */
	/* raw sources (shape given) */
	int raw_ndim;
	size_t shape[PM_MAX_DIMS];
	int raw_dtype;                 /* enum pm_dtype; default U8 */
	bool raw_big_endian;
	size_t raw_offset;
	int channel_axis;              /* DESC_CHANNELS_* or an axis */
	/* window: 1 value (every spatial axis) or one per spatial axis */
	int nwindow, nstep, ndilation, npad;
	size_t window[PM_MAX_DIMS], step[PM_MAX_DIMS], dilation[PM_MAX_DIMS];
	int64_t pad_before[PM_MAX_DIMS], pad_after[PM_MAX_DIMS]; /* npad == DESC_PAD_SAME: unused */
	int pad_mode;
	double pad_value;
	int dtype;                     /* output */
	bool affine;
	double scale, offset;
	int order, layout;
	size_t row_pitch;
	struct pm_lazy_opts lazy;      /* for the mapping; backend AUTO by default */
	int format;                    /* enum desc_format */
};

/* Parses text[0, len) (need not be NUL-terminated). Returns 0, or -1 with
 * one line in err (DESC_ERRLEN bytes) and the descriptor line it concerns
 * in *line (0 when it concerns no single line, e.g. a missing key). Never
 * reads outside the buffer. */
int desc_parse(const char *text, size_t len, struct desc *d, char *err, int *line);

/* Fills o from the descriptor and the loaded source array (its data pointer
 * may be NULL: only the shape is used here), resolving the channel axis and
 * the per-axis values, and checks it with pm_matrix_describe into *info.
 * Returns 0, or -1 with a message in err and its line in *line. */
int desc_matrix(const struct desc *d, const struct pm_source *src, struct pm_matrix_opts *o,
		struct pm_matrix_info *info, char *err, int *line);

#endif
