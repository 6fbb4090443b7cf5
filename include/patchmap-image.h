/* patchmap-image.h: image files that libvips reads (TIFF and BigTIFF, tiled,
 * striped or pyramidal, PNG, JPEG, WebP, JPEG 2000, OpenSlide slides, ...)
 * as a struct pm_source whose data is a lazy pm_region, decoded band of rows
 * by band of rows on first touch and evicted under its own budget. A patch
 * matrix over it is then a lazy region over a lazy region: neither the image
 * nor its matrix need ever be resident.
 *
 * Library libpatchmap-image (pkg-config patchmap-image), on top of
 * libpatchmap and libvips. Conventions are patchmap.h's: 0 or a negative
 * code, *out NULL on failure, close accepts NULL, nothing printed. */
#ifndef PATCHMAP_IMAGE_H
#define PATCHMAP_IMAGE_H

#include "patchmap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Input errors of this library, returned negated; pm_image_strerror() names
 * them (and every code of patchmap.h). */
enum pm_image_error {
	PM_IMAGE_EFIRST = 2000,
	PM_IMAGE_EDECODE = PM_IMAGE_EFIRST, /* the decoder refused the file or a
	                                       part of it; the message says why */
	PM_IMAGE_EFORMAT,   /* no decoder recognises the file */
	PM_IMAGE_ESAMPLE,   /* sample type without a pm_dtype (complex) */
	PM_IMAGE_EPAGE,     /* page out of range, or the format has no pages */
	PM_IMAGE_ELEVEL,    /* level out of range, or the format has no levels */
	PM_IMAGE_EBANDS,    /* a band index out of range, or nbands < 0 */
	PM_IMAGE_EINIT,     /* libvips could not start */
	PM_IMAGE_ELAST
};

/* Text for any code of this library or of patchmap.h. Static storage. */
PM_API const char *pm_image_strerror(int code);

/* Do not touch libvips' process-wide cache settings (see pm_image_open). */
#define PM_IMAGE_KEEP_VIPS_CACHE 0x1u

struct pm_image_opts {
	size_t size;               /* sizeof(struct pm_image_opts) or 0 */
	int page;                  /* page (multi-page TIFF, GIF, PDF, HEIF,
	                              WebP): 0 is the first */
	int level;                 /* pyramid level, 0 the full resolution:
	                              OpenSlide formats; a TIFF pyramid (its pages,
	                              or its SubIFDs when the file has them);
	                              JPEG 2000 resolution levels */
	const int *bands;          /* the bands kept, in this order (borrowed
	                              during the call); NULL: all */
	int nbands;                /* entries in bands */
	struct pm_lazy_opts lazy;  /* the decoded image's own region: budget,
	                              chunk, threads, backend */
	unsigned flags;            /* PM_IMAGE_* */
};

/* What the file holds, and how the image is read. */
struct pm_image_info {
	char loader[32];        /* libvips' loader ("tiffload", "pngload", ...) */
	int width, height;      /* of the image opened (after page/level) */
	int bands;              /* as opened (after band selection) */
	int file_bands;         /* in the file */
	int dtype;              /* enum pm_dtype of the samples */
	int pages;              /* pages in the file (1 if it has none) */
	int levels;             /* pyramid levels (1 if none) */
	int page, level;        /* as opened */
	bool random_access;     /* tiles or strips decoded on demand; false: the
	                           decoder reads the file front to back, and
	                           libvips decodes the whole image once at open
	                           (in memory, or in a temporary file beyond its
	                           disc threshold, VIPS_DISC_THRESHOLD) */
};

typedef struct pm_image pm_image;

/* Opens `path` with libvips (page, level and bands per o; NULL o: all
 * defaults). The loader is asked to fail on any error (fail_on=error): a
 * truncated file, or damage the decoder detects, is refused, never
 * completed with invented pixels. Damage it cannot see reads as the file
 * holds it (libtiff does not check a deflate tile's checksum: a tile
 * altered but still inflatable decodes as altered). path must be a file
 * (regular or block device): libvips opens it by name more than once, so
 * a pipe, socket or character device is refused (-ESPIPE). On success *out owns the image (free with pm_image_close); on
 * failure *out is NULL and, if msg is not NULL, msg (msglen bytes) holds one
 * line saying why (libvips' own text for a decoder error).
 *
 * Memory: the image's region holds at most o->lazy.budget bytes; libvips adds
 * its tile cache (for a tiled TIFF, about 2.5 rows of tiles: tile height x
 * width x bands x sample size x 2.5) and per-thread buffers of one band of
 * rows per filler thread. Unless PM_IMAGE_KEEP_VIPS_CACHE, the first open
 * caps libvips' process-wide operation cache at 16 operations and 32 MiB
 * (libvips' defaults are 100 operations and 100 MiB). libvips' warnings
 * (log domain "VIPS") are dropped, since a library does not print: with
 * fail_on=error every one that matters is also an error returned here.
 * Threads: any thread may open, use and close images. */
PM_API int pm_image_open(const char *path, const struct pm_image_opts *o, pm_image **out,
			 char *msg, size_t msglen);

/* Closes the image: the region is unmapped, every pointer into it dies.
 * Returns the region's first fill error (0 if none). NULL: no-op. No thread
 * may still read the image, nor use a matrix built on it. */
PM_API int pm_image_close(pm_image *im);

/* The image as a C-contiguous array of shape (height, width) with one band,
 * (height, width, bands) with several (has_channels set, channel_axis 2),
 * in the file's sample type. Borrowed: valid until pm_image_close. Its data
 * is the lazy region: reading a part whose decoding failed raises SIGBUS in
 * the reader (pm_image_error then says why). A lazy patch matrix over it
 * reads it from its filler threads, which then get that SIGBUS; a caller
 * that must survive a damaged file reads the matrix with pm_matrix_read
 * (backend none), in its own thread, where a SIGBUS handler can catch it
 * (its si_addr lies inside pm_image_region). */
PM_API const struct pm_source *pm_image_source(const pm_image *im);

/* The region holding the decoded pixels (borrowed, until pm_image_close). */
PM_API const pm_region *pm_image_region(const pm_image *im);

PM_API int pm_image_info(const pm_image *im, struct pm_image_info *info);
PM_API int pm_image_stats(const pm_image *im, struct pm_stats *st);

/* After a decoding failure the image gives no more pixels: every later fill
 * fails too (libvips' tile cache keeps a tile that failed as black pixels,
 * and may hand them to a later request as a success; the error text it
 * posts is the only trace). libvips keeps one error buffer per process, so
 * an image fails when one of its fills finds error text there, or when
 * error text is taken while one of its fills is in libvips, whichever
 * image's decoding posted it: a decoding failure of one image can fail
 * another image read at the same time, whose message then holds the first
 * one's words or says they went elsewhere. So can an open that libvips
 * refuses (its reason is error text too), or one of a TIFF whose later
 * pages do not load, and error text from a program's own calls into
 * libvips; text cleared by such calls, or within libvips, escapes this
 * check. */

/* The first decoding error met while filling the region: its code (a
 * negative errno, -EIO for a decoder failure) or 0, and, when msg is not
 * NULL, one line, empty if none: "rows A-B: " and the decoder's words (or,
 * when the text went elsewhere, words that say so). The rows are those of
 * a fill whose own decoding failed, or, until such a fill has kept them,
 * of the first fill that failed, which can be rows that decoded well; the
 * words are the first error text a fill of this image took from libvips. */
PM_API int pm_image_error(const pm_image *im, char *msg, size_t msglen);

/* pm_matrix_read and pm_matrix_write for a matrix that reads a lazy image
 * (its source is pm_image_source, or reads one): a part of the image that
 * fails to decode makes them return -EIO (pm_image_error then says why)
 * instead of raising SIGBUS in the caller, and the bytes of dst (for
 * write, of fd) are then undefined. The SIGBUS is caught in the calling
 * thread only, while it computes: the first call installs a process-wide
 * SIGBUS handler that passes every other SIGBUS to the handler it found.
 * For a caller that must survive a damaged file and cannot handle signals
 * itself (a Python binding). Threads: any; matrix as in pm_matrix_read. */
PM_API int pm_image_matrix_read(const pm_matrix *m, size_t offset, void *dst, size_t len);
PM_API int pm_image_matrix_write(const pm_matrix *m, int fd, size_t offset, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PATCHMAP_IMAGE_H */
