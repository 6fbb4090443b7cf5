/* options.h: the front ends' options as text. The matrix options are the
 * library's pm_spec (one grammar, one set of messages: pm_spec_key lists
 * them); the front ends add the keys of the image file: a raw file's
 * (shape, raw_dtype, raw_offset) and a libvips image's (page, level, bands,
 * image_budget, image_chunk), parsed here with the library's value parsers, and report
 * what they resolved to as one JSON "options" object. The patchmap tool
 * and the descriptors of the preload shim both go through here, so that no
 * key is parsed twice. */
#ifndef PM_COMMON_OPTIONS_H
#define PM_COMMON_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"
#include "json.h"
#include "patchmap.h"

/* Room for any message these functions write. */
#define FE_ERRLEN 512

/* The image file keys, in order: a raw file's, then a libvips image's
 * (FE_PAGE on). */
enum fe_raw_key {
	FE_SHAPE, FE_RAW_DTYPE, FE_RAW_OFFSET,
	FE_PAGE, FE_LEVEL, FE_BANDS, FE_IMAGE_BUDGET, FE_IMAGE_CHUNK,
	/* the row selections read from files or drawn here (the range is the
	 * spec's row_range) */
	FE_ROWS, FE_MASK, FE_SAMPLE, FE_SEED,
	FE_RAW_COUNT
};

/* An image file key's canonical name ("raw_dtype"), NULL past the last. */
const char *fe_raw_key_name(int i);
/* The image file key named `key` ('-' and '_' alike, any case), or -1. */
int fe_raw_key(const char *key);

/* The options of one image: the spec, owned, and how to read the file. */
struct fe_options {
	pm_spec *spec;
	struct img_raw raw;           /* raw.ndim > 0: the file is raw */
	struct img_vips vips;         /* a libvips image's page, level, ... */
	bool raw_given[FE_RAW_COUNT];
	char *rows_path, *mask_path;  /* owned; as given */
	uint64_t sample;              /* a count of windows, or 0: sample_fraction */
	double sample_fraction;
	uint64_t seed;                /* default 1 */
	bool seed_other_use;          /* the caller draws with the seed too (apply --random) */
};

/* A resolved row selection: the library's, the index array it points to
 * (owned), and what the reports say of it. */
struct fe_rows {
	struct pm_rows rows;
	uint64_t *index;              /* owned */
	const char *kind;             /* all, range, index, mask, sample */
	uint64_t checksum;            /* index, mask, sample: sum of (i + 1) * w(i) mod 2^64 */
};


/* All defaults. 0, or -ENOMEM. */
int fe_options_init(struct fe_options *f);
void fe_options_free(struct fe_options *f);

/* Sets a raw key or a spec key from its text. 0; 1 when no such key exists
 * (nothing said: the caller knows its other keys); -1 with one line in err
 * (FE_ERRLEN bytes) that starts with the key's canonical name, as
 * pm_spec_error does. */
int fe_options_set(struct fe_options *f, const char *key, const char *value, char *err);

/* The file key given that a message starts with ("level: ..."), or -1:
 * where a front end says where the key was given. */
int fe_raw_key_of_message(const struct fe_options *f, const char *msg);

/* Checks the file keys together: raw_dtype and raw_offset need shape, and
 * the keys of a libvips image refuse it. 0, or -1 with err ("raw_dtype:
 * ..."), *key set to the key at fault. */
/* Checks the front-end keys together: raw_dtype and raw_offset need shape,
 * seed needs sample (unless seed_other_use). 0, or -1 with err
 * ("raw_dtype: ..."), *key set to the key at fault. */
int fe_options_check(const struct fe_options *f, int *key, char *err);

/* (vimage.c) Opens `path` with the file keys of f: img_open() for a raw file (shape
 * given), a .npy or a PGM/PPM (by their magic, or a file that is no regular
 * file), else img_open_vips() (page, level, bands, image_budget). A key of a
 * libvips image given for a file of the first kind is refused. 0, or -1
 * (IMG_EFORMAT for a format no reader knows) with one line in err
 * (IMG_ERRLEN bytes; a refused key's starts with it). */
int fe_image_open(const char *path, const struct fe_options *f, struct img *im, char *err);
/* True when fe_image_open() would give path to libpatchmap-image (libvips):
 * not raw, nor a format of img_open(). (vimage.c) */
bool fe_image_is_vips(const char *path, const struct fe_options *f);

/* The matrix options for an opened image: pm_spec_matrix. 0, or -1 with
 * pm_spec_error's line in err. */
int fe_options_matrix(struct fe_options *f, const struct img *im, struct pm_matrix_opts *o,
		      struct pm_matrix_info *info, char *err);

/* The row selection of f for the matrix options o (from
 * fe_options_matrix): at most one of row_range (the spec's), rows (a .npy
 * of integer window numbers, any shape, read in C order), mask (a bool .npy
 * or a PGM of shape out_shape, nonzero = selected) and sample (drawn as
 * doc/options.md says, from seed). Paths are relative to dir when dir is
 * not NULL and they are relative. *info becomes the selection's
 * description. 0, or -1 with one line in err starting with the key at
 * fault; sel then holds nothing. fe_rows_free() frees what sel holds. */
int fe_options_rows(struct fe_options *f, const char *dir, const struct pm_matrix_opts *o,
		    struct fe_rows *sel, struct pm_matrix_info *info, char *err);
void fe_rows_free(struct fe_rows *sel);
/* The "rows" member: kind; count (the selected rows); begin, end for a
 * range; checksum for index, mask and sample. */
void fe_report_rows(struct json *j, const struct fe_rows *sel);

/* The "options" member: what every option resolved to, the same in every
 * front end (the grammar test compares them):
 *   window, step, dilation, pad_before, pad_after: one number per spatial
 *     axis; pad_mode: its name; pad_value: a number;
 *   channel_axis: null, or the axis; dtype: the output's numpy name;
 *   affine: bool, scale, offset: numbers (1 and 0 when not affine);
 *   order, layout: names; row_pitch: bytes (0: packed);
 *   backend: its name; budget: bytes, "unlimited", or null (the library's
 *     default); chunk, threads: a number or null (default); readahead:
 *     chunks, 0 for none, or null (default); writable: bool. */
void fe_report_options(struct json *j, const struct pm_matrix_opts *o,
		       const struct pm_matrix_info *info);
/* The "matrix" member: rows, cols, ld, dtype, elem_size, bytes, out_shape,
 * windows, window_elems, channels. */
void fe_report_matrix(struct json *j, const struct pm_matrix_info *info);

#endif
