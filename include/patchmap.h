/* patchmap.h: the sliding-window patch matrix (im2col) of an n-D array, and
 * any other lazily computed buffer, as ordinary contiguous read-only memory
 * whose pages are filled on first touch and evicted under a memory budget.
 *
 * Conventions. Functions return 0 (or a count) on success and a negative
 * code on failure: -errno for system errors (-ENOMEM, -EPERM, ...) or -PM_E*
 * for bad input; pm_strerror() names either in words. No function prints,
 * aborts, exits or sets errno. Option structs start with `size` (set it to
 * sizeof the struct, or 0 for "the current version"); a zero field means its
 * documented default. Handles are freed by their close function, which
 * accepts NULL. All functions are thread-safe unless said otherwise.
 *
 * Structs the library writes (pm_stats, pm_matrix_info) start with `size`
 * too: the caller sets it to sizeof the struct as it was compiled (or 0 for
 * this header's version) before the call. The library then writes exactly
 * the first `size` bytes and never more, so a program built against an
 * older, smaller version of the struct gets the fields it knows; `size`
 * itself is left as the caller set it. Later versions only append fields.
 * A size below the size field, or above this library's own struct (a
 * program newer than the library, or an uninitialised struct), is
 * -PM_EOPTSIZE and nothing is written. */
#ifndef PATCHMAP_H
#define PATCHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PM_API __attribute__((visibility("default")))

#define PM_VERSION_MAJOR 1
#define PM_VERSION_MINOR 0
#define PM_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH" (static storage). */
PM_API const char *pm_version(void);

/* ---------------------------------------------------------------- errors */

/* Input errors, returned negated. Each is a kind of EINVAL (EOVERFLOW for
 * PM_ETOOBIG, ENOMEM for PM_EMEMORY); pm_error_errno() gives that errno. */
enum pm_error {
	PM_EFIRST = 1000,
	PM_ENULL = PM_EFIRST,   /* a required pointer is NULL */
	PM_EOPTSIZE,            /* opts->size names no known version */
	PM_EDTYPE,              /* unknown source dtype */
	PM_EOUTDTYPE,           /* output dtype not SAME, F32, F64 or the source's */
	PM_ENDIM,               /* ndim is 0 or above PM_MAX_DIMS */
	PM_ECHANNEL,            /* channel axis out of range, or no spatial axis left */
	PM_ESHAPE,              /* an axis has extent 0 */
	PM_EWINDOW,             /* a window size is 0 */
	PM_ESTEP,               /* a step is 0 */
	PM_EDILATION,           /* a dilation is 0 */
	PM_EPAD,                /* padding negative or absurd (above PM_MAX_PAD) */
	PM_EPADMODE,            /* unknown padding mode */
	PM_EPADVALUE,           /* constant pad value not representable in the source dtype */
	PM_EWINDOWBIG,          /* window (with dilation) larger than the padded axis */
	PM_EORDER,              /* unknown column order */
	PM_ELAYOUT,             /* unknown layout */
	PM_EPITCH,              /* row pitch below the row, or not a multiple of the element */
	PM_EAFFINE,             /* scale/offset asked with an output other than F32/F64 */
	PM_ETOOBIG,             /* a size overflows, or exceeds what can be reserved */
	PM_EBACKEND,            /* unknown backend, or PATCHMAP_BACKEND names none */
	PM_ECHUNK,              /* chunk size not a power of two from the page size to 64 TiB */
	PM_ETHREADS,            /* a thread count below 0 or above 1024 */
	PM_ELENGTH,             /* region length 0 */
	PM_ERANGE,              /* a read past the end of the matrix */
	PM_ESPEC,               /* an option's value cannot be used: pm_spec_error() says why */
	PM_EKEY,                /* pm_spec_set: no option has this name */
	PM_EAMBIGUOUS,          /* dtype "u8"/"i8": 8 bits or numpy's 8 bytes? */
	PM_EBUDGET,             /* an explicit budget smaller than two chunks */
	PM_EROWSKIND,           /* unknown row selection kind */
	PM_EROWINDEX,           /* a selected row index at or past the number of windows */
	PM_EMASKLEN,            /* a row mask whose length is not the number of windows */
	PM_EROWSEMPTY,          /* a row selection that selects no window */
	PM_EROWRANGE,           /* a row range not within [0, windows], or begin > end */
	PM_EROWSLAYOUT,         /* a row selection with the column layout */
	PM_EFOLDSHAPE,          /* fold input rows/cols disagree with the geometry */
	PM_EFOLDMODE,           /* unknown fold mode */
	PM_EMEMORY,             /* the resident bound (budget, or the whole matrix
	                           for eager or an unlimited budget) is more than
	                           pm_memory_available() allows; errno ENOMEM */
	PM_ELAST
};

/* Text for a code returned by this library (negative or positive; 0 is
 * "success"). Static storage, never NULL. */
PM_API const char *pm_strerror(int code);

/* The errno that best describes `code` (EINVAL for input errors and for
 * codes beyond them, the errno itself for system errors), positive. For
 * callers that must set errno. */
PM_API int pm_error_errno(int code);

/* ---------------------------------------------------------------- dtypes */

enum pm_dtype {
	PM_DTYPE_SAME = 0, /* output only: the source's dtype */
	PM_DTYPE_U8,
	PM_DTYPE_I8,
	PM_DTYPE_U16,
	PM_DTYPE_I16,
	PM_DTYPE_U32,
	PM_DTYPE_I32,
	PM_DTYPE_F32,
	PM_DTYPE_F64,
	PM_DTYPE_I64,      /* numpy's default integer */
	PM_DTYPE_U64,
	PM_DTYPE_BOOL,     /* one byte, 0 or 1; converts to 0.0 or 1.0 */
	PM_DTYPE_F16,      /* IEEE binary16; as an output only with SAME */
	PM_DTYPE_COUNT
};

/* Bytes per element of `dtype`, 0 if unknown (and for PM_DTYPE_SAME). */
PM_API size_t pm_dtype_size(int dtype);
/* numpy's short name ("uint8", "float32", ...), or NULL if unknown. */
PM_API const char *pm_dtype_name(int dtype);

/* ------------------------------------------------------- lazy memory */

enum pm_backend {
	PM_BACKEND_AUTO = 0, /* PATCHMAP_BACKEND if set, else uffd, else sigsegv */
	PM_BACKEND_UFFD,     /* userfaultfd; pages moved in from a recycled pool */
	PM_BACKEND_SIGSEGV,  /* PROT_NONE reservation + SIGSEGV handler + mremap */
	PM_BACKEND_EAGER,    /* everything computed at open, ordinary memory */
	PM_BACKEND_NONE,     /* matrices only: no mapping at all; pm_matrix_data()
	                        is NULL and pm_matrix_read() gives the bytes (for
	                        exporters and streams). Never chosen by "auto" or
	                        PATCHMAP_BACKEND. */
	PM_BACKEND_COUNT
};

/* "auto", "uffd", "sigsegv", "eager", "none"; NULL if unknown. */
PM_API const char *pm_backend_name(int backend);
/* The backend named `name` (as above), or -PM_EBACKEND. */
PM_API int pm_backend_parse(const char *name);

#define PM_BUDGET_UNLIMITED SIZE_MAX
/* The default budget: PM_DEFAULT_BUDGET, lowered at open to
 * 1/PM_DEFAULT_BUDGET_SHARE (half) of pm_memory_available() where that is
 * less (a container or batch job's memory limit, a busy machine), and never
 * below two chunks. */
#define PM_DEFAULT_BUDGET ((size_t)256 << 20)
#define PM_DEFAULT_BUDGET_SHARE 2
/* Bytes filled per fault unless pm_lazy_opts.chunk says otherwise. */
#define PM_DEFAULT_CHUNK ((size_t)4 << 20)

/* The filler threads a lazy buffer of the default budget and chunk gets when
 * pm_lazy_opts.threads is 0: half the online CPUs, at least 2 (1 on a single
 * CPU, or where the budget holds fewer than 32 chunks), at most 8. (Every
 * running thread of the process is one more target of each page-table
 * change's TLB shootdown, and the readers need the other CPUs; but one
 * filler alone would bound a scan.) */
PM_API int pm_default_threads(void);

/* How a lazy buffer is kept. Zero fields take the defaults. */
struct pm_lazy_opts {
	int backend;      /* enum pm_backend; default AUTO */
	size_t budget;    /* most bytes resident at once; default PM_DEFAULT_BUDGET
	                     (see there: at most half the memory available),
	                     PM_BUDGET_UNLIMITED for no limit; rounded down to
	                     whole chunks. At least two chunks are always kept
	                     (a single access may straddle two): an explicit
	                     budget below two chunks is -PM_EBUDGET from
	                     describe and open for uffd and sigsegv, from
	                     open for auto (describe cannot know what a
	                     front end will open: "none" streams); eager
	                     and none ignore the budget. The default
	                     budget with a chunk above half of it becomes two
	                     chunks. The resident bound (the budget, or the
	                     whole buffer for eager or an unlimited budget) must
	                     fit in pm_memory_available() at open, or the open
	                     is -PM_EMEMORY. Threads reading different chunks
	                     at once each need theirs resident (two where an
	                     access straddles): with a budget of fewer chunks
	                     they evict each other's, correct but very slow. */
	size_t chunk;     /* bytes filled per fault: a power of two, at least the
	                     page size; default PM_DEFAULT_CHUNK */
	int threads;      /* filler threads, at most 1024; default pm_default_threads() */
	int readahead;    /* chunks filled ahead of a sequential reader; default
	                     8 (bounded by half the budget); negative: none */
	unsigned flags;   /* PM_LAZY_* */
};

/* uffd backend: leave resident pages writable (no write protection). A
 * stray write then changes the page until it is evicted, instead of
 * faulting; about 15 % faster. */
#define PM_LAZY_WRITABLE 0x1u

/* What happened so far to a lazy buffer. Counters only grow. */
struct pm_stats {
	size_t size;                  /* set by the caller: sizeof(struct pm_stats) or 0 */
	int backend;                  /* enum pm_backend in force */
	unsigned mechanism;           /* PM_MECH_* bits: how the backend works here */
	int threads;                  /* filler threads in force (0: eager, none) */
	size_t chunk_bytes;
	size_t budget_bytes;          /* as enforced: a whole number of chunks
				       * (with PM_MECH_COPY, the staging
				       * buffers' chunks included) */
	uint64_t faults;              /* faults served (first touches of absent chunks) */
	uint64_t chunks_filled;       /* fill callbacks run (faults and read-ahead) */
	uint64_t bytes_filled;
	uint64_t evictions;
	uint64_t readahead_fills;     /* chunks filled before anyone touched them */
	uint64_t readahead_hits;      /* of those, chunks later touched */
	uint64_t fill_errors;         /* failed fill callbacks */
	uint64_t resident_bytes;      /* now */
	uint64_t peak_resident_bytes;
	uint64_t fill_ns;             /* time spent in the fill callback */
	uint64_t memory_available;    /* pm_memory_available() at open, bytes
	                                 (UINT64_MAX: unknown) */
	bool budget_lowered;          /* the default budget was lowered to
	                                 1/PM_DEFAULT_BUDGET_SHARE of that */
};

#define PM_MECH_UFFD_FULL      0x01u /* userfaultfd handles kernel accesses too */
#define PM_MECH_UFFD_USER_ONLY 0x02u /* UFFD_USER_MODE_ONLY: a kernel access of an
                                        absent page (read(2) into it, write(2)
                                        from it) fails with EFAULT */
#define PM_MECH_MOVE           0x04u /* pages recycled by UFFDIO_MOVE */
#define PM_MECH_COPY           0x08u /* pages copied in by UFFDIO_COPY from staging
				       * buffers (chunks not of whole huge pages,
				       * or kernels without UFFDIO_MOVE) */
#define PM_MECH_MREMAP         0x10u /* pages recycled by mremap */
#define PM_MECH_HUGEPAGES      0x20u /* the pool is backed by 2 MiB huge pages */
#define PM_MECH_WRITE_PROTECT  0x40u /* resident pages fault on write */
#define PM_MECH_POISON         0x80u /* failed chunks poisoned (UFFDIO_POISON) */

/* ---------------------------------------------------------------- region */

/* A lazily computed read-only buffer: a virtual range of `length` bytes whose
 * content is produced, chunk by chunk, by a fill callback. */
typedef struct pm_region pm_region;

/* Writes bytes [offset, offset + len) of the buffer to dst and returns 0, or
 * returns a negative errno. `offset` is a multiple of the chunk size and
 * `len` is at most the chunk size. Called from the region's filler threads
 * (ordinary threads with all signals blocked), concurrently for different
 * offsets; never from a signal handler. The content must be a pure function
 * of the offset: an evicted chunk is filled again on its next touch. */
typedef int (*pm_fill_fn)(void *ctx, size_t offset, void *dst, size_t len);

struct pm_region_opts {
	size_t size;               /* sizeof(struct pm_region_opts) or 0 */
	size_t length;             /* bytes, > 0 */
	pm_fill_fn fill;           /* required */
	void *ctx;                 /* passed to fill; borrowed until close */
	struct pm_lazy_opts lazy;
};

/* Reserves the range and starts its filler threads. On success *out owns the
 * region (free with pm_region_close); on failure *out is NULL and nothing is
 * left allocated. A lazy region's pages are not inherited by fork(): in the
 * child, any access to them raises SIGSEGV (the eager backend's are ordinary
 * memory and are inherited). */
PM_API int pm_region_open(const struct pm_region_opts *opts, pm_region **out);

/* Unmaps the range and stops the threads. Any pointer into the region dies
 * with it; no thread may still read it. Returns the first fill error the
 * region met (0 if none) so that a failure is never lost. NULL: no-op. */
PM_API int pm_region_close(pm_region *r);

/* The first byte of the buffer: valid until pm_region_close. Reading an
 * absent page blocks the reader until its chunk is filled; a chunk whose fill
 * failed raises SIGBUS in the reader (the error stays queryable). Writing
 * raises SIGSEGV (unless PM_LAZY_WRITABLE). */
PM_API const void *pm_region_data(const pm_region *r);
PM_API size_t pm_region_length(const pm_region *r);

/* Copies the current counters to *st (st->size bytes of it, see the top). */
PM_API int pm_region_stats(const pm_region *r, struct pm_stats *st);

/* The first fill error met (a negative errno), or 0. */
PM_API int pm_region_error(const pm_region *r);

/* ---------------------------------------------------------------- matrix */

#define PM_MAX_DIMS 8
/* Largest padding accepted on one side of one axis. */
#define PM_MAX_PAD ((int64_t)1 << 32)

/* A strided n-D array, as numpy describes one. Not copied: the data must
 * outlive every matrix built on it and must not change meanwhile (an evicted
 * page is recomputed from it). */
struct pm_source {
	const void *data;                /* the element at index (0, ..., 0) */
	int dtype;                       /* enum pm_dtype, not SAME */
	int ndim;                        /* 1..PM_MAX_DIMS */
	size_t shape[PM_MAX_DIMS];
	ptrdiff_t strides[PM_MAX_DIMS];  /* bytes; any sign, may be 0 */
	bool has_channels;               /* if true, axis channel_axis holds */
	int channel_axis;                /* channels: never windowed nor padded */
};

/* Fills src as a C-contiguous array of the given shape. Returns 0 or
 * -PM_EDTYPE / -PM_ENDIM / -PM_ENULL / -PM_ETOOBIG. */
PM_API int pm_source_contiguous(struct pm_source *src, const void *data, int dtype,
				int ndim, const size_t *shape);

/* The window along one spatial axis. */
struct pm_window {
	size_t size;        /* window extent in samples, >= 1 */
	size_t step;        /* distance between window starts, >= 1 */
	size_t dilation;    /* distance between samples of a window, >= 1 */
	int64_t pad_before; /* virtual samples added before the axis, >= 0 */
	int64_t pad_after;  /* ... and after it */
};

enum pm_pad_mode {
	PM_PAD_ZERO = 0,   /* 0 */
	PM_PAD_CONSTANT,   /* pad_value */
	PM_PAD_EDGE,       /* the nearest edge sample (numpy "edge") */
	PM_PAD_REFLECT,    /* mirrored, edge not repeated: c b | a b c | b a (numpy "reflect") */
	PM_PAD_SYMMETRIC,  /* mirrored, edge repeated: b a | a b c | c b (numpy "symmetric") */
	PM_PAD_WRAP,       /* periodic: b c | a b c | a b (numpy "wrap") */
	PM_PAD_COUNT
};

enum pm_order {
	PM_ORDER_WINDOW = 0, /* columns (y, x, c): sliding_window_view(...).reshape, scikit-learn */
	PM_ORDER_CHANNEL,    /* columns (c, y, x): PyTorch unfold, Caffe im2col */
	PM_ORDER_COUNT
};

enum pm_layout {
	PM_LAYOUT_ROWS = 0, /* one row per window */
	PM_LAYOUT_COLS,     /* the transpose: one column per window */
	PM_LAYOUT_COUNT
};

struct pm_matrix_opts {
	size_t size;                           /* sizeof(struct pm_matrix_opts) or 0 */
	struct pm_source source;
	struct pm_window window[PM_MAX_DIMS];  /* one per spatial axis, in the
	                                          source's axis order, the
	                                          channel axis skipped */
	int pad_mode;                          /* enum pm_pad_mode */
	double pad_value;                      /* PM_PAD_CONSTANT: in source units;
						* PM_EPADVALUE if the source's dtype
						* cannot hold it (nor round it to a
						* nonzero value where it is nonzero) */
	int dtype;                             /* output: SAME (default), F32, F64,
	                                          or the source's dtype; converted
	                                          as numpy's astype does (integers
	                                          rounded to nearest, ties to even;
	                                          bool as 0/1; float16 exactly) */
	bool affine;                           /* apply scale * x + offset, computed
	                                          in the (float) output dtype */
	double scale;
	double offset;
	int order;                             /* enum pm_order */
	int layout;                            /* enum pm_layout */
	size_t row_pitch;                      /* bytes from one stored row to the
	                                          next (0: packed); the gap reads
	                                          as zeros */
	struct pm_lazy_opts lazy;
};

/* The shape of a patch matrix. Windows are numbered in row-major order of
 * their positions (out_shape), as sliding_window_view(...)[::step] gives
 * them; window elements in the chosen column order. */
struct pm_matrix_info {
	size_t size;                /* set by the caller: sizeof(struct pm_matrix_info) or 0 */
	size_t rows, cols;          /* of the stored matrix (after the layout) */
	size_t ld;                  /* leading dimension in elements (BLAS lda) */
	size_t elem_size;           /* bytes */
	size_t bytes;               /* rows * ld * elem_size */
	int dtype;                  /* output dtype, resolved */
	int nspatial;               /* spatial axes */
	size_t out_shape[PM_MAX_DIMS]; /* window positions per spatial axis */
	size_t windows;             /* product of out_shape */
	size_t window_elems;        /* samples per window, channels included */
	size_t channels;            /* 1 without a channel axis */
};

typedef struct pm_matrix pm_matrix;

/* Validates opts and computes the matrix's shape without allocating or
 * touching the source data. It makes every check pm_matrix_open makes, with
 * the same codes, but one: opts->source.data may be NULL here, so that a
 * front end can check options and report the shape from an image's header
 * before the pixels exist (pm_matrix_open then refuses NULL with
 * -PM_ENULL). Whatever describe accepts with a non-NULL data pointer, open
 * accepts too, system errors (memory, the kernel) aside. */
PM_API int pm_matrix_describe(const struct pm_matrix_opts *opts,
			      struct pm_matrix_info *info);

/* Builds the patch matrix of opts->source lazily (or eagerly, per
 * opts->lazy.backend). On success *out owns it (pm_matrix_close frees it);
 * on failure *out is NULL and nothing is left allocated. The source data is
 * borrowed, not copied. */
PM_API int pm_matrix_open(const struct pm_matrix_opts *opts, pm_matrix **out);

/* As pm_region_close. NULL: no-op. */
PM_API int pm_matrix_close(pm_matrix *m);

/* The matrix: `rows` rows of `ld` elements (`cols` of them used), row-major,
 * read-only, valid until pm_matrix_close. Hand it to BLAS as is. */
PM_API const void *pm_matrix_data(const pm_matrix *m);
PM_API size_t pm_matrix_rows(const pm_matrix *m);
PM_API size_t pm_matrix_cols(const pm_matrix *m);
PM_API size_t pm_matrix_ld(const pm_matrix *m);
PM_API size_t pm_matrix_elem_size(const pm_matrix *m);
PM_API size_t pm_matrix_bytes(const pm_matrix *m);
PM_API int pm_matrix_dtype(const pm_matrix *m);
/* Writes the shape to *info (info->size bytes of it, see the top). */
PM_API int pm_matrix_info(const pm_matrix *m, struct pm_matrix_info *info);

/* Computes bytes [offset, offset + len) of the matrix straight into dst,
 * without touching the mapping: for exporters, and for callers that cannot
 * take a page fault (a kernel access under UFFD_USER_MODE_ONLY). Any offset
 * and length; -PM_ERANGE past the end. */
PM_API int pm_matrix_read(const pm_matrix *m, size_t offset, void *dst, size_t len);

/* Writes bytes [offset, offset + len) of the matrix to fd at its current
 * position, computed by pm_matrix_read through a buffer of at most 1 MiB
 * (allocated and freed here): the mapping is never touched, so it works on
 * every backend and mechanism, including backend "none" and a process with
 * user-mode-only userfaultfd, where write(fd, pm_matrix_data(m), n) fails
 * with EFAULT. Short writes and EINTR are retried. The caller keeps fd (not
 * closed, no lseek; a pipe or socket works). Returns 0, -PM_ERANGE past the
 * end, -EBADF for a negative fd, or the write's -errno (the file then holds
 * a prefix of the bytes). Thread-safe, concurrently with readers of the
 * matrix; calls on one fd from several threads interleave as write(2)s do. */
PM_API int pm_matrix_write(const pm_matrix *m, int fd, size_t offset, size_t len);

PM_API int pm_matrix_stats(const pm_matrix *m, struct pm_stats *st);
PM_API int pm_matrix_error(const pm_matrix *m);

/* ------------------------------------------------------- options by name */

/* One grammar for every front end (the patchmap tool's --key-name VALUE, a
 * descriptor's key_name = VALUE, Python's key_name=VALUE): a pm_spec collects
 * options as text, checks each value when it is set, and resolves them
 * against a source into a pm_matrix_opts. doc/options.md lists the keys, the
 * accepted values and their defaults.
 *
 * A pm_spec is owned by its creator and used by one thread at a time;
 * different specs are independent. */
typedef struct pm_spec pm_spec;

/* A spec holding every default: dtype float32, order window, layout rows,
 * no padding (pad_mode zero), channel_axis auto, backend auto, the lazy
 * defaults of struct pm_lazy_opts (zero fields), not writable. On success
 * *out owns it (free with pm_spec_free); on failure *out is NULL. Returns 0,
 * -PM_ENULL or -ENOMEM. */
PM_API int pm_spec_new(pm_spec **out);

/* Frees s. NULL: no-op. */
PM_API void pm_spec_free(pm_spec *s);

/* Sets option `key` (see pm_spec_key; '-' and '_' are alike, case is
 * ignored) from its text `value` (blanks around it ignored). Setting a key
 * again replaces its value. Returns 0, or -PM_EKEY for an unknown key,
 * -PM_ESPEC for a value that cannot be read, -PM_ENULL; then pm_spec_error()
 * holds one line "<key>: <what was given, what is accepted>" and the spec is
 * unchanged. */
PM_API int pm_spec_set(pm_spec *s, const char *key, const char *value);

/* The message of the last failed call on s ("" if none): one line, owned by
 * s, valid until the next call on s. NULL s: "". */
PM_API const char *pm_spec_error(const pm_spec *s);

/* Whether `key` was set on s (false for unknown keys). For front ends that
 * treat a missing option specially. */
PM_API bool pm_spec_isset(const pm_spec *s, const char *key);

/* The spec's keys in their canonical spelling (with '_'), in order: i from 0;
 * NULL past the last. Static storage. */
PM_API const char *pm_spec_key(int i);

/* Resolves s against the source into *o (every field written, o->size set),
 * and checks the result with pm_matrix_describe, filling *info if info is
 * not NULL. src is copied; its has_channels and channel_axis are ignored
 * (the spec's channel_axis decides, see doc/options.md):
 *  - channel_axis auto, w window sizes, n-D source: w > 1: w == n means no
 *    channels, w == n - 1 the last axis holds channels, anything else is
 *    refused; w == 1: no channels for n <= 2, channels last for n >= 3;
 *  - window, step, dilation and pad take one value (every spatial axis) or
 *    one per spatial axis;
 *  - pad "same" (TensorFlow's): ceil(n / step) windows per axis, the total
 *    padding max((out - 1) * step + (k - 1) * dilation + 1 - n, 0) split
 *    with the odd sample after; a pad_mode or pad_value without pad means
 *    pad "same".
 * Returns 0; -PM_ESPEC when the options do not fit the source (no window, a
 * count of values that matches no axis count); the code of
 * pm_matrix_describe when it refuses. Either way pm_spec_error() names the
 * key concerned and the shapes involved. s is not changed but its message. */
PM_API int pm_spec_matrix(pm_spec *s, const struct pm_source *src, struct pm_matrix_opts *o,
			  struct pm_matrix_info *info);

/* The memory policy of every front end, for a matrix described by info
 * (from pm_spec_matrix) under s's lazy options, the one the library applies
 * again at open: refuses an explicit budget smaller than two chunks
 * (-PM_EBUDGET), and a resident bound (the budget; the whole matrix for
 * backend eager or an unlimited budget; nothing for backend none) larger
 * than pm_memory_available() (-PM_EMEMORY). The default budget is not
 * refused: it is lowered to fit (see PM_DEFAULT_BUDGET). Returns 0 or that
 * code, pm_spec_error() then holding one line that names the limit and
 * where it comes from, the figures, and what to change ("budget: the cgroup
 * memory limit of /job allows 150 MiB more; the budget asks 256 MiB; ..."). */
PM_API int pm_spec_check_memory(pm_spec *s, const struct pm_matrix_info *info);

/* The value grammar, for front-end keys outside the spec (a raw file's shape,
 * offset and sample type) and for callers that parse one value. Sizes,
 * dims and dtypes ignore blanks around them; names (pad modes, orders,
 * layouts, backends) are the whole string, in any case (pm_spec_set trims
 * blanks before it parses). Thread-safe. */

/* A byte count: "4096", "64K", "64 K", "64KiB", "64kb", "1.5G" (K, M, G, T,
 * P: powers of 1024; an optional "i" and "B" after the unit; "B" alone),
 * coming to whole bytes; "unlimited" (PM_BUDGET_UNLIMITED) if
 * allow_unlimited. 0 and *out set, or -PM_ESPEC (not a size),
 * -PM_ETOOBIG (above SIZE_MAX, or SIZE_MAX itself). */
PM_API int pm_size_parse(const char *s, bool allow_unlimited, size_t *out);

/* Positive sizes separated by 'x' or ',' with optional blanks: "16",
 * "16x16", "16,16", "16 x 16", into v[0..]. The count (1..max), or
 * -PM_ESPEC (not such a list, or a 0), -PM_ENDIM (more than max). */
PM_API int pm_dims_parse(const char *s, size_t *v, int max);

/* A dtype (enum pm_dtype, > 0) from numpy's name ("uint8", "float32"), a bit
 * name ("u16", "f32"), or numpy's byte code ("u2", "f4", "b1"), the code
 * optionally after a byte-order character < = | or >. Bare "u8" and "i8" are
 * -PM_EAMBIGUOUS (8 bits, or numpy's 8 bytes?); anything else unknown,
 * "same" included, is -PM_EDTYPE. *big_endian (if not NULL) tells whether
 * the samples are big-endian (only with '>' and more than one byte); with
 * big_endian NULL, '>' on a multi-byte dtype is -PM_EDTYPE. */
PM_API int pm_dtype_parse(const char *s, bool *big_endian);

/* zero, constant, edge, reflect, symmetric, wrap: the mode, or -PM_EPADMODE. */
PM_API int pm_pad_mode_parse(const char *s);
/* The name of a mode, NULL if unknown. Static storage. */
PM_API const char *pm_pad_mode_name(int mode);
/* window, channel: the order, or -PM_EORDER. */
PM_API int pm_order_parse(const char *s);
PM_API const char *pm_order_name(int order);
/* rows, cols (or columns): the layout, or -PM_ELAYOUT. */
PM_API int pm_layout_parse(const char *s);
PM_API const char *pm_layout_name(int layout);

/* ------------------------------------------------------- row selections */

/* A patch matrix of some of the windows: stored row i is window w(i) of the
 * full matrix (windows numbered as in struct pm_matrix_info), where
 *   PM_ROWS_ALL:   w(i) = i (the full matrix);
 *   PM_ROWS_INDEX: w(i) = index[i], i < count: any order, repeats allowed;
 *   PM_ROWS_MASK:  the windows p with mask[p] != 0, in ascending order;
 *                  count must equal pm_matrix_info.windows (the mask is the
 *                  out_shape array in row-major order);
 *   PM_ROWS_RANGE: w(i) = begin + i, for the windows [begin, end).
 * Selections need layout rows (a stored row is a window). Everything else
 * (dtype, padding, order, pitch, affine, backends, budget) is as for the
 * full matrix, and so is the laziness: a chunk computes only the rows it
 * holds, so a range touches only the source pages that hold samples of
 * the lines its windows cover (a line: the samples along the innermost
 * window axis from the range's first window on it to its last, the samples
 * between windows included).
 * An index array or mask is read during the open call and copied (as one
 * 8-byte index per selected row): the caller may free it as soon as the
 * call returns. A selection of no window (count 0, a mask of zeros,
 * begin == end) is refused with -PM_EROWSEMPTY. */
enum pm_rows_kind {
	PM_ROWS_ALL = 0,
	PM_ROWS_INDEX,
	PM_ROWS_MASK,
	PM_ROWS_RANGE,
	PM_ROWS_COUNT
};

struct pm_rows {
	size_t size;              /* sizeof(struct pm_rows) or 0 */
	int kind;                 /* enum pm_rows_kind */
	const uint64_t *index;    /* PM_ROWS_INDEX: count window numbers */
	const uint8_t *mask;      /* PM_ROWS_MASK: count bytes, nonzero = selected */
	size_t count;             /* elements of index or mask */
	size_t begin, end;        /* PM_ROWS_RANGE: windows [begin, end) */
};

/* As pm_matrix_describe, for the selection `rows` (NULL: all windows).
 * info->rows is the number of selected rows; info->windows and out_shape
 * still describe all window positions. Errors as pm_matrix_describe, and
 * -PM_EROWSKIND, -PM_EROWINDEX, -PM_EMASKLEN, -PM_EROWSEMPTY,
 * -PM_EROWRANGE, -PM_EROWSLAYOUT. Reads the index or mask array. */
PM_API int pm_matrix_describe_rows(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
				   struct pm_matrix_info *info);

/* As pm_matrix_open, for the selection `rows` (NULL: all windows). The
 * matrix keeps its own copy of the selection. */
PM_API int pm_matrix_open_rows(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
			       pm_matrix **out);

/* The spec's row selection (its row_range key, "A:B", "A:" or ":B"; see
 * doc/options.md) for the matrix options o (from pm_spec_matrix with the
 * same spec): *rows is PM_ROWS_ALL when row_range is not set, else
 * PM_ROWS_RANGE with the range resolved against the windows; *info (if not
 * NULL) is pm_matrix_describe_rows of that selection, so that
 * pm_spec_check_memory then sees the selected rows' bytes. Returns 0, or
 * -PM_EROWRANGE (the range ends past the last window or begins at or past
 * its end), -PM_EROWSLAYOUT (layout cols), a code of
 * pm_matrix_describe_rows, -PM_ENULL; pm_spec_error() then names the value,
 * the number of windows and out_shape. s is not changed but its message. */
PM_API int pm_spec_rows(pm_spec *s, const struct pm_matrix_opts *o, struct pm_rows *rows,
			struct pm_matrix_info *info);

/* ------------------------------------------------------------------ fold */

/* Fold (col2im): the way back from a patch matrix to an image. Every
 * element of every window is added into the image sample it was taken
 * from; contributions that fall in the padding are dropped, in every
 * padding mode (as torch.nn.functional.fold drops them), so fold is the
 * adjoint of the zero-padded unfold. Modes:
 *   PM_FOLD_SUM:   the sum of the contributions (torch's fold);
 *   PM_FOLD_MEAN:  that sum divided by the number of contributions, the
 *                  overlap count (scikit-learn's reconstruct_from_patches_2d
 *                  where its divisor is the overlap count, see README);
 *   PM_FOLD_COUNT: the number of contributions (the input is not read).
 * A sample no window covers is 0 in every mode.
 *
 * Summation order: each output sample starts at +0 and adds its
 * contributions in matrix order (stored row by stored row, and within a
 * row in column order), in the output dtype: exact for integer inputs as
 * long as the sums stay below 2^24 (float32) or 2^53 (float64). The mean
 * divides once at the end, in the output dtype.
 *
 * Memory: the output image, a table of one window's elements and, for the
 * mean or count of a row selection (the full matrix's counts are
 * computed per axis), 4 bytes per pixel, and with f->matrix a buffer of
 * about 1 MiB per thread. The input is read once, in order, so a lazy
 * matrix's mapping can be folded under its budget.
 *
 * Threads: opts->lazy.threads threads (0: the online CPUs, at most 8, and
 * one for a fold of fewer than 2^20 values) share the output in bands of
 * its first spatial axis; each adds only into its own band and reads the
 * windows that reach it in matrix order, so the order above, and the
 * result, do not depend on the thread count. The windows at a band's edge
 * are read by both threads; an index or mask selection is read whole by
 * each thread. */
enum pm_fold_mode {
	PM_FOLD_SUM = 0,
	PM_FOLD_MEAN,
	PM_FOLD_COUNT,
	PM_FOLD_MODE_COUNT
};

struct pm_fold_opts {
	size_t size;                /* sizeof(struct pm_fold_opts) or 0 */
	int mode;                   /* enum pm_fold_mode */
	/* The input, as stored for the geometry's layout: with layout rows,
	 * `rows` rows (one per window, or per selected row) of `cols` values,
	 * where cols is window_elems (a patch matrix), the channels (one vector
	 * per window: value c goes to channel c of every pixel the window
	 * covers) or 1 (one value per window, to every sample it covers); with
	 * layout cols, the transpose. */
	const void *data;           /* NULL only for PM_FOLD_COUNT */
	int dtype;                  /* enum pm_dtype of the input, not SAME */
	size_t rows, cols;
	ptrdiff_t row_stride;       /* bytes between rows; both strides 0: packed, */
	ptrdiff_t col_stride;       /*   rows the geometry's row_pitch apart if set */
	/* The output: an array of the source's shape (channel axis included). */
	void *out;
	int out_dtype;              /* PM_DTYPE_F32 or PM_DTYPE_F64 (SAME: F64) */
	ptrdiff_t out_strides[PM_MAX_DIMS]; /* bytes; all 0: C-contiguous */
	/* Instead of data: an open matrix (layout rows) whose stored rows are
	 * the input; its dtype, rows, cols and row pitch replace those fields.
	 * Each thread reads its rows with pm_matrix_read into a buffer of its
	 * own (about 1 MiB), so the mapping is never touched: no faults, no
	 * evictions, and backend "none" works. The caller keeps it open
	 * during the call. (A struct without this field, size up to
	 * out_strides, is accepted.) */
	const pm_matrix *matrix;
};

/* Folds f->data, the matrix of geometry `opts` (its source's shape and
 * channel axis, windows, padding, order, layout, row_pitch; its source data
 * pointer, dtype conversion and lazy options are not used) restricted to
 * the selection `rows` (NULL: all windows), into f->out, which it
 * overwrites entirely. Returns 0 or a negative code: the geometry's and the
 * selection's errors, -PM_EFOLDSHAPE if rows/cols disagree with them,
 * -PM_EFOLDMODE, -PM_EDTYPE, -PM_EOUTDTYPE, -PM_ENULL, -ENOMEM,
 * -PM_EROWSLAYOUT for a matrix input with layout cols; on error
 * f->out is not written, except for an error of f->matrix's reads (its
 * fill's), returned as pm_matrix_read returns it, after which f->out holds
 * no result. Runs in the calling thread and the threads it
 * starts and joins (see Threads above); f->data is only read, and must not
 * overlap f->out. */
PM_API int pm_fold(const struct pm_matrix_opts *opts, const struct pm_rows *rows,
		   const struct pm_fold_opts *f);

/* ---------------------------------------------------------------- system */

/* The memory this process may still take, and whose limit says so. */
enum pm_memory_kind {
	PM_MEMORY_UNKNOWN = 0, /* nothing could be read: no limit applies */
	PM_MEMORY_MACHINE,     /* the machine's MemAvailable (/proc/meminfo) */
	PM_MEMORY_CGROUP_V1,   /* cgroup v1 memory.limit_in_bytes */
	PM_MEMORY_CGROUP_MAX,  /* cgroup v2 memory.max */
	PM_MEMORY_CGROUP_HIGH, /* cgroup v2 memory.high (throttled above it) */
	PM_MEMORY_KIND_COUNT
};

struct pm_memory {
	size_t size;                /* set by the caller: sizeof(struct pm_memory) or 0 */
	uint64_t available;         /* bytes: the tightest of the limits below,
	                               less what already counts against it;
	                               UINT64_MAX if nothing could be read */
	int kind;                   /* enum pm_memory_kind of that limit */
	uint64_t limit;             /* that limit: the cgroup's, or MemTotal */
	uint64_t used;              /* what counts against it now: the cgroup's
	                               usage less its inactive file cache (which
	                               the kernel reclaims first), or MemTotal
	                               less MemAvailable */
	char cgroup[256];           /* the cgroup of that limit, as
	                               /proc/self/cgroup names it ("" for the
	                               machine); cut at 255 bytes */
	char source[320];           /* in words, for messages: "the cgroup memory
	                               limit of /job", "the cgroup memory.high of
	                               /job", "the machine's available memory
	                               (MemAvailable)"; "" if unknown */
	uint64_t machine_available; /* MemAvailable alone (0 if unknown) */
};

/* Fills *out (out->size bytes of it, see the top) with the memory this
 * process may still take: the least of the machine's MemAvailable and, for
 * the cgroup of this process and each of its ancestors, cgroup v2
 * memory.max and memory.high less memory.current, and cgroup v1
 * memory.limit_in_bytes less memory.usage_in_bytes (a cgroup's inactive
 * file cache counts as free, as MemAvailable counts it). The cgroups are
 * found through /proc/self/cgroup and /proc/self/mountinfo, so a container
 * with or without its own cgroup namespace sees its own limit. Reads a few
 * small files each call (the library calls it at every open of a lazy or
 * eager buffer). Returns 0, or -PM_ENULL / -PM_EOPTSIZE. Any thread. */
PM_API int pm_memory_available(struct pm_memory *out);

/* What one backend did when a small region was opened on it. */
struct pm_backend_probe {
	int err;            /* 0, or the negative code pm_region_open returned */
	int backend;        /* enum pm_backend in force (for auto: the one it took) */
	unsigned mechanism; /* PM_MECH_* bits of that region */
};

/* What this machine and process allow, for the lazy backends: the facts
 * behind `patchmap doctor` and patchmap.doctor(). Fields that could not be
 * read are -1 (numbers) or "" (text). */
struct pm_system {
	size_t size;                 /* sizeof(struct pm_system), set by the caller */
	char kernel[65];             /* uname: release */
	char machine[65];            /* uname: machine */
	int unprivileged_userfaultfd; /* the sysctl vm.unprivileged_userfaultfd */
	int uffd_full;               /* userfaultfd(2) in full mode: 0 or -errno */
	int uffd_user_only;          /* userfaultfd(UFFD_USER_MODE_ONLY): 0 or -errno */
	int dev_userfaultfd;         /* opening /dev/userfaultfd read-write: 0 or -errno */
	int uffd_api;                /* UFFDIO_API on the first of those that worked:
	                                0, or -errno (no userfaultfd at all) */
	uint64_t uffd_features;      /* UFFD_FEATURE_* bits the kernel offers */
	bool uffd_move;              /* UFFDIO_MOVE (Linux 6.8) */
	bool uffd_poison;            /* UFFDIO_POISON (Linux 6.6) */
	bool uffd_write_protect;     /* write-protect faults on anonymous memory */
	char thp[16];                /* transparent huge pages: always, madvise, never */
	int seccomp;                 /* /proc/self/status Seccomp: 0 none, 1 strict, 2 filter */
	char backend_env[16];        /* PATCHMAP_BACKEND, as set ("" unset) */
	/* Indexed by enum pm_backend: auto, uffd, sigsegv, eager. */
	struct pm_backend_probe probe[PM_BACKEND_NONE];
	struct pm_memory memory;     /* pm_memory_available() */
};

/* Fills *out (out->size must be sizeof(struct pm_system)): reads the kernel
 * version, the sysctl, transparent huge page mode and seccomp mode, asks the
 * kernel for userfaultfd each way this process may, and opens and closes an
 * 8 MiB region with default chunks on each backend (which installs the
 * SIGSEGV backend's handler, as a first use of that backend does). Returns 0,
 * or -PM_ENULL / -PM_EOPTSIZE. Any thread. */
PM_API int pm_system_probe(struct pm_system *out);

/* Writes the report of `patchmap doctor` about *s to buf (at most len bytes,
 * NUL-terminated when len > 0): one "name: value" line per fact, the same
 * lines on every machine, then, after a blank line, what each missing piece
 * costs and the commands that enable it. Returns the length of the whole
 * report (as snprintf: a result >= len means it was cut), or -PM_ENULL. */
PM_API int pm_system_report(const struct pm_system *s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PATCHMAP_H */
