/* fill.h: produce any byte range of a patch matrix from its source. */
#ifndef PM_FILL_H
#define PM_FILL_H

#include "geometry.h"

struct pm__affine {
	float fscale, foffset;
	double dscale, doffset;
};

/* Converts n source samples, `sstride` bytes apart, to n packed outputs. */
typedef void (*pm__line_fn)(void *dst, const char *src, size_t n, ptrdiff_t sstride,
			    const struct pm__affine *af);
/* Converts `lines` runs of n contiguous samples (`sstep` bytes between run
 * starts) to runs `dstep` bytes apart. */
typedef void (*pm__block_fn)(char *dst, size_t dstep, const char *src, ptrdiff_t sstep,
			     size_t lines, size_t n, const struct pm__affine *af);

#define PM__RUN_MAX_LINES 64
#define PM__PACK_VECS 64      /* 64-byte vectors in one period of packed rows */

struct pm__fill {
	struct pm__geom g;
	pm__line_fn line;
	pm__block_fn block;
	struct pm__affine af;
	unsigned char pad_out[8];   /* the constant pad, converted */

	/* How a stored row splits into lines (see fill.c). */
	int line_dim;               /* first row dim that belongs to the line */
	int line_axis;
	int64_t line_px;            /* pixels per line */
	int64_t line_ch;            /* samples per pixel (1, or the channels) */
	int64_t line_inc;
	ptrdiff_t px_stride, ch_stride, el_stride;
	bool merged;                /* the line's samples are el_stride apart */
	size_t line_elems;
	int64_t row_span[PM_MAX_DIMS]; /* per axis: coordinate range within a row */

	/* The fast path over a whole row that reads no padding: `nblock`
	 * outer dims walked by an odometer (source steps ostride), each step
	 * one kernel call over block_lines lines block_step bytes apart. */
	int nblock;
	ptrdiff_t ostride[PM_MAX_DIMS + 1];
	size_t block_lines;
	ptrdiff_t block_step;
	size_t line_bytes;
	bool contig;
	/* Source byte steps of the stored-row index dims. */
	ptrdiff_t idx_stride[PM_MAX_DIMS + 1];

	/* Runs of windows (see fill.c): consecutive stored rows that are
	 * consecutive windows along the last axis read overlapping source
	 * lines, converted once into a scratch and copied from there. */
	bool runs;
	pm__line_fn run_line;       /* the line kernel for the run's strided lines */
	int run_moves;              /* rows copied in moves of 32 (AVX2) or 64 bytes (AVX-512); 0: of 16 */
	int run_lines;              /* lines per row */
	int run_phases;             /* scratch arrays per line: the dilation */
	int64_t run_per;            /* scratch elements between windows of a phase */
	ptrdiff_t run_sstride;      /* source bytes between scratch elements */
	ptrdiff_t run_line_off[PM__RUN_MAX_LINES]; /* line starts, from the row's */

	/* Packed rows (see fill.c): rows of a run written as whole 64-byte
	 * vectors, each a byte permutation of pack_parts 16-byte loads from the
	 * run's scratch. The pattern repeats every pack_rows rows (pack_vecs
	 * vectors), the loads moving on by pack_shift bytes. 0 pack_rows: rows
	 * are copied line by line. */
	int pack_rows, pack_vecs, pack_parts;
	ptrdiff_t pack_shift;
	uint16_t pack_array[PM__PACK_VECS * 8]; /* per vector and part: line * phases + phase */
	int32_t pack_off[PM__PACK_VECS * 8];    /* and the load's offset within that array */
	unsigned char pack_idx[PM__PACK_VECS][64]; /* byte i: part * 16 + byte of that load */
	/* pack_src: the parts are loads of the source itself, per group of
	 * vectors, pack_off from the run's first sample, each masked to the
	 * samples in pack_used where it crosses a page boundary: 16-byte
	 * loads and byte indices for 1-byte samples, 64-byte loads and 32-bit
	 * float indices for 4-byte ones. */
	bool pack_src;
	int pack_groups;                        /* groups of vectors sharing their loads */
	unsigned char pack_gm[PM__PACK_VECS];   /* vectors in each group */
	uint16_t pack_used[PM__PACK_VECS * 8];
};

/* Prepares f for g. Cannot fail for a valid g. */
void pm__fill_init(struct pm__fill *f, const struct pm__geom *g);

/* Writes matrix bytes [off, off + len) to dst (any alignment). The caller
 * guarantees off + len <= g.bytes. Thread-safe: f is only read. */
void pm__fill(const struct pm__fill *f, size_t off, void *dst, size_t len);

/* Set by a caller of pm__fill, for its own thread, when what it fills is
 * read only later, from another CPU (a read-ahead chunk of a lazy matrix):
 * the kernels that can then store past the caches, which spares the read of
 * every destination line that an ordinary store makes first. Such stores
 * are weakly ordered: the caller fences (an sfence) before it publishes. */
extern _Thread_local bool pm__fill_stream;

#endif
