/* image.h: image files as pm_source arrays, for the front ends. Parsers
 * of the .npy and PGM/PPM headers (pure functions of a buffer, fuzzed on
 * their own), a .npy header writer, and img_open(), which maps a file and
 * describes its pixels without copying them. Dtypes are named and sized by
 * the library (pm_dtype_parse, pm_dtype_name, pm_dtype_size): one table for
 * every front end. */
#ifndef PM_COMMON_IMAGE_H
#define PM_COMMON_IMAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "patchmap.h"

/* Room for any message these functions write. */
#define IMG_ERRLEN 512

/* ------------------------------------------------------------- .npy */

struct npy_header {
	int dtype;            /* enum pm_dtype; numpy bool ('|b1') reads as U8 */
	bool big_endian;      /* multi-byte elements stored big-endian */
	bool fortran_order;
	int ndim;             /* 1..PM_MAX_DIMS */
	size_t shape[PM_MAX_DIMS];
	size_t data_offset;   /* bytes from the start of the file to the data */
	size_t data_bytes;    /* elements * element size (overflow checked) */
};

/* Parses the header of a .npy file held in buf[0, len). Needs the whole
 * header in the buffer, not the data. Returns 0, or -1 with a one-line
 * message in err (IMG_ERRLEN bytes). Never reads outside the buffer. */
int npy_parse_header(const void *buf, size_t len, struct npy_header *h, char *err);

/* Writes the header of a little-endian .npy array (format version 1.0)
 * into buf, padded with spaces and a newline to a multiple of 64 bytes as
 * the format asks. Returns its
 * length, or 0 if cap is too small or the arguments are invalid. */
size_t npy_write_header(char *buf, size_t cap, int dtype, int ndim, const size_t *shape,
			bool fortran_order);

/* numpy's descr for a little-endian dtype ("<f4", "|u1") written into buf
 * (NPY_DESCR_LEN bytes) and returned, or NULL. */
#define NPY_DESCR_LEN 8
const char *npy_descr(int dtype, char *buf);

/* ------------------------------------------------------------- PGM/PPM */

struct pnm_header {
	int channels;        /* 1 (P5, PGM) or 3 (P6, PPM) */
	size_t width, height;
	unsigned maxval;     /* 1..65535 */
	int dtype;           /* U8 (maxval < 256) or U16 (stored big-endian) */
	size_t data_offset;
	size_t data_bytes;
};

/* Parses a binary PGM (P5) or PPM (P6) header in buf[0, len), comments
 * included. Returns 0, or -1 with a message in err. */
int pnm_parse_header(const void *buf, size_t len, struct pnm_header *h, char *err);

/* ------------------------------------------------------------- files */

/* How to read a raw file: when shape_ndim > 0, the file is raw. */
struct img_raw {
	int ndim;
	size_t shape[PM_MAX_DIMS];
	int dtype;           /* enum pm_dtype */
	bool big_endian;
	size_t offset;       /* bytes skipped at the start of the file */
};

/* How to read an image file libvips reads (see patchmap-image.h). */
#define IMG_MAX_BANDS 64
struct img_vips {
	int page, level;        /* 0: the first page, the full resolution */
	int bands[IMG_MAX_BANDS];
	int nbands;             /* 0: every band */
	size_t budget;          /* the decoded image's own budget; 0: default */
	size_t chunk;           /* and its chunk; 0: default */
};

/* What a libvips image holds (img.vips_open set). */
struct img_vips_info {
	char loader[32];        /* libvips' loader, "tiffload" */
	int pages, levels, page, level, file_bands;
	bool random_access;
};

struct img {
	struct pm_source src;   /* no channel axis set: the caller decides */
	const char *format;     /* "npy", "pgm", "ppm", "raw", or libvips' name
	                           of the format ("tiff", "png", "openslide") */
	const char *layout;     /* "C" or "Fortran" */
	bool converted;         /* byte-swapped into a private copy */
	size_t file_bytes;
	bool vips_open;         /* decoded lazily by libpatchmap-image */
	struct img_vips_info vips;
	/* owned */
	void *map;              /* the file's mapping (or a read copy) */
	size_t map_len;
	bool map_is_heap;
	void *copy;             /* the converted pixels, if any */
	void *handle;           /* the pm_image, closed by release() */
	int (*release)(void *handle);
	char format_buf[32];
};

/* img_open()'s return for a file in none of the formats it knows: the front
 * end adds how to describe a raw file, in its own spelling (the tool's
 * --shape and --raw-dtype, a descriptor's shape and raw_dtype). */
#define IMG_EFORMAT (-2)

/* Opens `path` as an image: raw if raw && raw->ndim > 0, else by its magic
 * (.npy, P5, P6). The pixels stay in the file's read-only mapping (a file
 * that cannot be mapped, a pipe, is read into memory); big-endian data is
 * converted into a private copy. Returns 0, or -1 (IMG_EFORMAT for an
 * unknown format) with a message naming the problem in err (not the path).
 * img_close() frees what img holds. */
int img_open(const char *path, const struct img_raw *raw, struct img *im, char *err);
void img_close(struct img *im);

/* Opens `path` with libpatchmap-image (loaded on first use, so that a
 * program needs libvips only when it reads such a file): a lazily decoded
 * pm_source. 0, or -1 with one line in err: the library's (a refused page,
 * level or band names the key and what the file has) or why the library
 * cannot be loaded. img_close() closes it. (vimage.c) */
int img_open_vips(const char *path, const struct img_vips *v, struct img *im, char *err);
/* (a format no reader here knows: IMG_EFORMAT, as img_open) */

/* The image's first decoding failure since it was opened: its code (0:
 * none) and, in msg, the decoder's line. Takes a lock: not for a signal
 * handler. (vimage.c) */
int img_vips_error(const struct img *im, char *msg, size_t msglen);
/* pm_matrix_read of a matrix over im; over a libvips image, a part that
 * fails to decode returns -EIO instead of raising SIGBUS in this thread
 * (pm_image_matrix_read). (vimage.c) */
int img_matrix_read(const struct img *im, const pm_matrix *m, size_t offset, void *dst,
		    size_t len);
/* The first decoding failure's code, or 0: lock-free, for a signal
 * handler. (vimage.c) */
int img_vips_failed(const struct img *im);

#endif
