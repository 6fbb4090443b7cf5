/* fill.c: the im2col fill. A stored row (a window; in the transposed layout,
 * one window element across all windows) is cut into lines along its
 * innermost dimension, and each line is a strided run of source samples that
 * one conversion kernel produces. Written for speed: every fault pays it. */
#include <stdlib.h>
#include <string.h>

#include "fill.h"

_Thread_local bool pm__fill_stream;

/* Samples may sit at any address (a raw file mapped at an odd offset, a byte
 * range of the matrix cut mid-element), so every access goes through these. */
typedef uint8_t u8_u;
typedef int8_t i8_u;
typedef uint16_t u16_u __attribute__((aligned(1)));
typedef int16_t i16_u __attribute__((aligned(1)));
typedef uint32_t u32_u __attribute__((aligned(1)));
typedef int32_t i32_u __attribute__((aligned(1)));
typedef float f32_u __attribute__((aligned(1)));
typedef double f64_u __attribute__((aligned(1)));
typedef int64_t i64_u __attribute__((aligned(1)));
typedef uint64_t u64_u __attribute__((aligned(1)));
typedef uint8_t b8_u;   /* bool */
typedef uint16_t f16_u __attribute__((aligned(1))); /* binary16 bits */

/* binary16 -> binary32, exact, NaN payloads kept in the leading significand
 * bits (as numpy's half casts do, which never quiet a NaN). Branch-free so
 * that the loops vectorize. */
static inline uint32_t half_bits32(uint16_t h)
{
	uint32_t a = h & 0x7fffu, r;
	uint32_t normal = (a << 13) + ((uint32_t)(127 - 15) << 23);
	uint32_t special = (a << 13) | 0x7f800000u;
	float sub = (float)a * 0x1p-24f;
	uint32_t subbits;

	memcpy(&subbits, &sub, 4);
	r = a >= 0x7c00u ? special : a >= 0x400u ? normal : subbits;
	return r | (uint32_t)(h & 0x8000u) << 16;
}

static inline float half_float(uint16_t h)
{
	uint32_t r = half_bits32(h);
	float f;

	memcpy(&f, &r, 4);
	return f;
}

/* binary16 -> binary64 through the binary32 bits, widened bit by bit: every
 * binary16 value is a normal (or zero, or special) binary32, and a hardware
 * float -> double conversion would quiet a signalling NaN. */
static inline double half_double(uint16_t h)
{
	uint32_t r = half_bits32(h), e = (r >> 23) & 0xffu;
	uint64_t e64 = e == 0 ? 0 : e == 0xffu ? 0x7ffu : e + (1023 - 127);
	uint64_t d = (uint64_t)(r & 0x80000000u) << 32 | e64 << 52 | (uint64_t)(r & 0x7fffffu) << 29;
	double f;

	memcpy(&f, &d, 8);
	return f;
}

/* Kernels for 4- and 8-byte samples are also built for AVX-512 and AVX2,
 * the best the CPU runs chosen once at load time: their vector factor (16
 * or 8 floats) fits a window line. For 1- and 2-byte samples the wider
 * targets vectorize by 32 or 64 samples, more than a typical line, and
 * would run it scalar: the baseline's 16 lanes are the right width there
 * (and already write at memory speed). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
#define WIDE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WIDE_CLONES
#endif
#define NARROW_CLONES

/* Source and destination never overlap: no alias checks per line. */
#define NO_ALIAS _Pragma("GCC ivdep")

#define KERNEL(NAME, ST, DT, EXPR, CLONES)                                          \
	CLONES                                                                      \
	static void line_##NAME(void *dst, const char *src, size_t n, ptrdiff_t ss, \
				const struct pm__affine *af)                        \
	{                                                                           \
		DT##_u *restrict d = dst;                                           \
		(void)af;                                                           \
		if (ss == (ptrdiff_t)sizeof(ST##_u)) {                              \
			const ST##_u *restrict s = (const ST##_u *)src;             \
			NO_ALIAS                                                    \
			for (size_t i = 0; i < n; i++) {                            \
				ST##_u x = s[i];                                    \
				d[i] = EXPR;                                        \
			}                                                           \
			return;                                                     \
		}                                                                   \
		for (size_t i = 0; i < n; i++) {                                    \
			ST##_u x = *(const ST##_u *)(src + (ptrdiff_t)i * ss);      \
			d[i] = EXPR;                                                \
		}                                                                   \
	}                                                                           \
	CLONES                                                                      \
	static void block_##NAME(char *dst, size_t dstep, const char *src,          \
				 ptrdiff_t sstep, size_t lines, size_t n,           \
				 const struct pm__affine *af)                       \
	{                                                                           \
		(void)af;                                                           \
		for (size_t l = 0; l < lines; l++) {                                \
			DT##_u *restrict d = (DT##_u *)(dst + l * dstep);           \
			const ST##_u *restrict s =                                  \
				(const ST##_u *)(src + (ptrdiff_t)l * sstep);       \
			NO_ALIAS                                                    \
			for (size_t i = 0; i < n; i++) {                            \
				ST##_u x = s[i];                                    \
				d[i] = EXPR;                                        \
			}                                                           \
		}                                                                   \
	}

/* The affine step is done in the output type, as numpy's
 * x.astype(t) * t(scale) + t(offset) does; fill.c is built without FMA
 * contraction so that the rounding is the same. */
#define FOR_OUTPUTS(ST, CLONES) FOR_OUTPUTS_AS(ST, ST, (float)x, (double)x, CLONES)
#define FOR_OUTPUTS_AS(NAME, ST, F32X, F64X, CLONES)                               \
	KERNEL(NAME##_f32, ST, f32, F32X, CLONES)                                  \
	KERNEL(NAME##_f64, ST, f64, F64X, CLONES)                                  \
	KERNEL(NAME##_f32a, ST, f32, (F32X) * af->fscale + af->foffset, CLONES)    \
	KERNEL(NAME##_f64a, ST, f64, (F64X) * af->dscale + af->doffset, CLONES)

FOR_OUTPUTS(u8, NARROW_CLONES)
FOR_OUTPUTS(i8, NARROW_CLONES)
FOR_OUTPUTS(u16, NARROW_CLONES)
FOR_OUTPUTS(i16, NARROW_CLONES)
FOR_OUTPUTS(u32, WIDE_CLONES)
FOR_OUTPUTS(i32, WIDE_CLONES)
FOR_OUTPUTS(f32, WIDE_CLONES)
FOR_OUTPUTS(f64, WIDE_CLONES)
/* 64-bit integers round to nearest, ties to even, as C's conversion (and
 * so numpy's astype) does: one rounding, never through a double. */
FOR_OUTPUTS(i64, WIDE_CLONES)
FOR_OUTPUTS(u64, WIDE_CLONES)
FOR_OUTPUTS_AS(b8, b8, (float)(x != 0), (double)(x != 0), NARROW_CLONES)
FOR_OUTPUTS_AS(f16, f16, half_float(x), half_double(x), NARROW_CLONES)
KERNEL(u8_u8, u8, u8, x, NARROW_CLONES)
KERNEL(i8_i8, i8, i8, x, NARROW_CLONES)
KERNEL(u16_u16, u16, u16, x, NARROW_CLONES)
KERNEL(i16_i16, i16, i16, x, NARROW_CLONES)
KERNEL(u32_u32, u32, u32, x, WIDE_CLONES)
KERNEL(i32_i32, i32, i32, x, WIDE_CLONES)
KERNEL(u64_u64, u64, u64, x, WIDE_CLONES)

#define ROW(ST, SAME)                                                            \
	{ { line_##SAME, line_##ST##_f32, line_##ST##_f64 },                     \
	  { line_##SAME, line_##ST##_f32a, line_##ST##_f64a } }
#define BROW(ST, SAME)                                                           \
	{ { block_##SAME, block_##ST##_f32, block_##ST##_f64 },                  \
	  { block_##SAME, block_##ST##_f32a, block_##ST##_f64a } }

/* [source dtype][affine][0: same type (a bit copy), 1: f32, 2: f64]; float16
 * with affine and the same type is refused by the geometry. */
static const pm__line_fn line_kernels[PM_DTYPE_COUNT][2][3] = {
	[PM_DTYPE_U8] = ROW(u8, u8_u8),     [PM_DTYPE_I8] = ROW(i8, i8_i8),
	[PM_DTYPE_U16] = ROW(u16, u16_u16), [PM_DTYPE_I16] = ROW(i16, i16_i16),
	[PM_DTYPE_U32] = ROW(u32, u32_u32), [PM_DTYPE_I32] = ROW(i32, i32_i32),
	[PM_DTYPE_F32] = ROW(f32, f32_f32), [PM_DTYPE_F64] = ROW(f64, f64_f64),
	[PM_DTYPE_I64] = ROW(i64, u64_u64), [PM_DTYPE_U64] = ROW(u64, u64_u64),
	[PM_DTYPE_BOOL] = ROW(b8, u8_u8),   [PM_DTYPE_F16] = ROW(f16, u16_u16),
};
static const pm__block_fn block_kernels[PM_DTYPE_COUNT][2][3] = {
	[PM_DTYPE_U8] = BROW(u8, u8_u8),     [PM_DTYPE_I8] = BROW(i8, i8_i8),
	[PM_DTYPE_U16] = BROW(u16, u16_u16), [PM_DTYPE_I16] = BROW(i16, i16_i16),
	[PM_DTYPE_U32] = BROW(u32, u32_u32), [PM_DTYPE_I32] = BROW(i32, i32_i32),
	[PM_DTYPE_F32] = BROW(f32, f32_f32), [PM_DTYPE_F64] = BROW(f64, f64_f64),
	[PM_DTYPE_I64] = BROW(i64, u64_u64), [PM_DTYPE_U64] = BROW(u64, u64_u64),
	[PM_DTYPE_BOOL] = BROW(b8, u8_u8),   [PM_DTYPE_F16] = BROW(f16, u16_u16),
};

/* Hand-written kernels for the commonest conversions (u8 -> f32, plain and
 * affine, and bit copies: f32 -> f32, u8 -> u8), contiguous lines only.
 * Whole vectors, the tail as one more vector ending at the line's end
 * (overlapping the previous one: the same values written twice), so any n
 * runs at full width; the compiler's loops vectorize by 32 or 64 samples
 * and run a 20-sample line scalar. AVX2 when the CPU has it, chosen at
 * init; the portable kernels above otherwise. The affine step is a
 * multiply then an add, as in the portable kernels: the same bits. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1
#define AVX2_FN __attribute__((target("avx2"))) static
#define AVX512_FN __attribute__((target("avx512f"))) static

/* n bytes, n >= 1. Vectors of 32, the tail overlapping. */
AVX2_FN inline void copy_avx2(char *restrict d, const char *restrict s, size_t n)
{
	if (n >= 32) {
		size_t i = 0;

		for (; i + 32 < n; i += 32)
			_mm256_storeu_si256((__m256i *)(d + i), _mm256_loadu_si256((const __m256i *)(s + i)));
		_mm256_storeu_si256((__m256i *)(d + n - 32), _mm256_loadu_si256((const __m256i *)(s + n - 32)));
	} else if (n >= 16) {
		_mm_storeu_si128((__m128i *)d, _mm_loadu_si128((const __m128i *)s));
		_mm_storeu_si128((__m128i *)(d + n - 16), _mm_loadu_si128((const __m128i *)(s + n - 16)));
	} else if (n >= 8) {
		__builtin_memcpy(d, s, 8);
		__builtin_memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		__builtin_memcpy(d, s, 4);
		__builtin_memcpy(d + n - 4, s + n - 4, 4);
	} else {
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	}
}

AVX2_FN inline __m256 u8x8_f32(const uint8_t *s)
{
	__m128i v = _mm_loadl_epi64((const __m128i *)s);

	return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}

#define U8F32_AVX2(NAME, XF)                                                             \
	AVX2_FN inline void NAME##_n(f32_u *restrict d, const uint8_t *restrict s, size_t n, \
				     __m256 sc, __m256 of, float fsc, float fof)          \
	{                                                                                \
		(void)sc, (void)of, (void)fsc, (void)fof;                                \
		if (n >= 8) {                                                            \
			size_t i = 0;                                                    \
			for (; i + 16 <= n; i += 16) {                                   \
				__m256 x = u8x8_f32(s + i), y = u8x8_f32(s + i + 8);     \
				_mm256_storeu_ps((float *)(d + i), XF(x));               \
				_mm256_storeu_ps((float *)(d + i + 8), XF(y));           \
			}                                                                \
			if (i + 8 <= n) {                                                \
				__m256 x = u8x8_f32(s + i);                              \
				_mm256_storeu_ps((float *)(d + i), XF(x));               \
				i += 8;                                                  \
			}                                                                \
			if (i < n) {                                                     \
				__m256 x = u8x8_f32(s + n - 8);                          \
				_mm256_storeu_ps((float *)(d + n - 8), XF(x));           \
			}                                                                \
			return;                                                          \
		}                                                                        \
		for (size_t i = 0; i < n; i++) {                                         \
			float x = (float)s[i];                                           \
			d[i] = XF##_1(x);                                                \
		}                                                                        \
	}
#define XF_PLAIN(x) (x)
#define XF_PLAIN_1(x) (x)
#define XF_AFFINE(x) _mm256_add_ps(_mm256_mul_ps((x), sc), of)
#define XF_AFFINE_1(x) ((x) * fsc + fof)
U8F32_AVX2(u8f32_avx2, XF_PLAIN)
U8F32_AVX2(u8f32a_avx2, XF_AFFINE)

/* The kernels' signatures. A strided line goes to the portable kernel. */
#define AVX2_KERNELS(NAME, BODY, PORTABLE)                                                   \
	AVX2_FN void line_##NAME(void *dst, const char *src, size_t n, ptrdiff_t ss,         \
				 const struct pm__affine *af)                                \
	{                                                                                    \
		__m256 sc = _mm256_set1_ps(af->fscale), of = _mm256_set1_ps(af->foffset);    \
		(void)sc, (void)of;                                                          \
		if (ss != ES) {                                                              \
			line_##PORTABLE(dst, src, n, ss, af);                                \
			return;                                                              \
		}                                                                            \
		char *d = dst;                                                               \
		const char *s = src;                                                         \
		BODY;                                                                        \
	}                                                                                    \
	AVX2_FN void block_##NAME(char *dst, size_t dstep, const char *src, ptrdiff_t sstep, \
				  size_t lines, size_t n, const struct pm__affine *af)       \
	{                                                                                    \
		__m256 sc = _mm256_set1_ps(af->fscale), of = _mm256_set1_ps(af->foffset);    \
		(void)sc, (void)of;                                                          \
		for (size_t l = 0; l < lines; l++) {                                         \
			char *d = dst + l * dstep;                                           \
			const char *s = src + (ptrdiff_t)l * sstep;                          \
			BODY;                                                                \
		}                                                                            \
	}
#define ES 1
AVX2_KERNELS(avx2_u8_f32, u8f32_avx2_n((f32_u *)d, (const uint8_t *)s, n, sc, of, 0, 0), u8_f32)
AVX2_KERNELS(avx2_u8_f32a,
	     u8f32a_avx2_n((f32_u *)d, (const uint8_t *)s, n, sc, of, af->fscale, af->foffset),
	     u8_f32a)
AVX2_KERNELS(avx2_u8_u8, copy_avx2(d, s, n), u8_u8)
#undef ES
#define ES 4
AVX2_KERNELS(avx2_f32_f32, copy_avx2(d, s, 4 * n), f32_f32)
#undef ES

/* The AVX2 kernel for this conversion, if there is one (a bit copy of a
 * 1-byte type is one for every such type), or NULL. */
static void avx2_kernels(int src, bool affine, int out, pm__line_fn *line, pm__block_fn *block)
{
	if (!__builtin_cpu_supports("avx2"))
		return;
	if (out == 0 && !affine && (src == PM_DTYPE_U8 || src == PM_DTYPE_I8 || src == PM_DTYPE_BOOL)) {
		*line = line_avx2_u8_u8;
		*block = block_avx2_u8_u8;
	} else if (src == PM_DTYPE_F32 && !affine && out <= 1) {
		*line = line_avx2_f32_f32;
		*block = block_avx2_f32_f32;
	} else if (src == PM_DTYPE_U8 && out == 1) {
		*line = affine ? line_avx2_u8_f32a : line_avx2_u8_f32;
		*block = affine ? block_avx2_u8_f32a : block_avx2_u8_f32;
	}
}
#else
static void avx2_kernels(int src, bool affine, int out, pm__line_fn *line, pm__block_fn *block)
{
	(void)src, (void)affine, (void)out, (void)line, (void)block;
}
#endif

/* The bytes between consecutive indices of a dimension that moves `inc`
 * samples of `stride` bytes. Validation keeps (extent - 1) * inc inside the
 * source, so only a dimension of extent 1, whose index never moves, can
 * overflow here (a step or dilation near INT64_MAX): it gets 0. */
static ptrdiff_t step_bytes(int64_t inc, ptrdiff_t stride)
{
	ptrdiff_t r;

	return __builtin_mul_overflow((ptrdiff_t)inc, stride, &r) ? 0 : r;
}

#ifdef HAVE_AVX2_KERNELS
#define VBMI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi"))) static

/* Loads from the source are masked to its samples: the bytes between may
 * be on a page the process cannot read. A masked load costs a quarter of
 * a packing kernel's time here, so it is taken only where the load's n
 * bytes cross a page boundary: within one page, the unused bytes share a
 * page with the first, a sample read, so reading them cannot fault (nor
 * enter a lazy source's handler). AddressSanitizer checks the whole of a
 * plain load against the source's object: its builds mask every load. */
#if defined(__SANITIZE_ADDRESS__)
#define PM__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM__ASAN 1
#endif
#endif
static inline bool in_one_page(const char *p, size_t n)
{
#ifdef PM__ASAN
	(void)p;
	(void)n;
	return false;
#else
	return ((uintptr_t)p & 4095) <= 4096 - n;
#endif
}

/* The two byte tables of a packed vector: load e of K (16 bytes at base +
 * off[e], masked to used[e] where used is given and the load crosses a
 * page boundary) in lane e % 4 of the
 * first table (e < 4) or the second. */
VBMI_FN inline __attribute__((always_inline)) void pack_tables(const char *base, const int32_t *off,
							       const uint16_t *used, int K, __m512i *A,
							       __m512i *B)
{
	*A = *B = _mm512_setzero_si512();
	for (int e = 0; e < K; e++) {
		__m128i x = used && !in_one_page(base + off[e], 16)
				    ? _mm_maskz_loadu_epi8(used[e], base + off[e])
				    : _mm_loadu_si128((const __m128i *)(base + off[e]));
		__mmask16 lane = (__mmask16)(0xfu << 4 * (e & 3));

		if (e < 4)
			*A = _mm512_mask_broadcast_i32x4(*A, lane, x);
		else
			*B = _mm512_mask_broadcast_i32x4(*B, lane, x);
	}
}

/* The 64 bytes that index ix picks from the tables of K loads. */
VBMI_FN inline __attribute__((always_inline)) __m512i pack_permute(__m512i A, __m512i B, __m512i ix, int K)
{
	return K > 4 ? _mm512_permutex2var_epi8(A, ix, B) : _mm512_permutexvar_epi8(ix, A);
}

/* One period of packed rows: V vectors of K parts each. Inlined with K a
 * constant, so the loads unroll. */
VBMI_FN inline __attribute__((always_inline)) void pack_period(char *d, const char *sc, const int32_t *at,
							       const unsigned char (*idx)[64], int V, int K)
{
	for (int v = 0; v < V; v++) {
		__m512i A, B;

		pack_tables(sc, at + v * K, NULL, K, &A, &B);
		_mm512_storeu_si512(d + 64 * v, pack_permute(A, B, _mm512_loadu_si512(idx[v]), K));
	}
}

/* The whole periods of packed rows among the run's nw rows (see
 * pack_init), to d; returns the rows written. */
VBMI_FN int64_t pack_rows(const struct pm__fill *f, char *d, const char *sc, int64_t nw, int64_t count)
{
	int64_t G = f->pack_rows, np = nw / G;
	int V = f->pack_vecs, K = f->pack_parts;
	size_t es = f->g.out_size, span = (size_t)G * f->g.row_bytes;
	int32_t at[PM__PACK_VECS * 8];

	if (!np)
		return 0;
	for (int e = 0; e < V * K; e++)
		at[e] = (int32_t)((size_t)f->pack_array[e] * (size_t)count * es) + f->pack_off[e];
#define PACK_K(KK)                                                                \
	case KK:                                                                  \
		for (int64_t p = 0; p < np; p++, d += span, sc += f->pack_shift) \
			pack_period(d, sc, at, f->pack_idx, V, KK);               \
		break;
	switch (K) {
	PACK_K(1) PACK_K(2) PACK_K(3) PACK_K(4) PACK_K(5) PACK_K(6) PACK_K(7) PACK_K(8)
	}
#undef PACK_K
	return np * G;
}

/* One period of packed rows from the source (see spack_init): groups of
 * vectors of 64 samples, each group's K loads masked to their samples
 * where they cross a page boundary (see in_one_page), each vector permuted
 * from them and stored as bytes (`bytes`: a bit copy) or converted to
 * float32 (from signed bytes if `sgn`; from bool if `bin`, any nonzero
 * byte as 1, as the bool kernels read it) and scaled (plain: by 1 and 0,
 * which changes no integer's float). K, bytes, sgn and bin are constants
 * in each instance; `nt`: store past the caches (d is 64-byte aligned
 * then). */
VBMI_FN inline __attribute__((always_inline)) void spack_period(const struct pm__fill *f, char *d,
								const char *src, int K, bool bytes,
								bool sgn, bool bin, __m512 sc, __m512 of,
								bool nt)
{
	const int32_t *off = f->pack_off;
	const uint16_t *used = f->pack_used;
	const unsigned char(*idx)[64] = f->pack_idx;

	for (int gi = 0; gi < f->pack_groups; gi++, off += K, used += K) {
		__m512i A, B;

		pack_tables(src, off, used, K, &A, &B);
		for (int m = f->pack_gm[gi]; m > 0; m--, idx++, d += bytes ? 64 : 256) {
			__m512i y = pack_permute(A, B, _mm512_loadu_si512(*idx), K);

			if (bytes) {
				if (nt)
					_mm512_stream_si512((void *)d, y);
				else
					_mm512_storeu_si512(d, y);
				continue;
			}
			if (bin)
				y = _mm512_min_epu8(y, _mm512_set1_epi8(1));
			for (int l = 0; l < 4; l++) {
				__m128i b = l == 0 ? _mm512_castsi512_si128(y)
					    : l == 1 ? _mm512_extracti32x4_epi32(y, 1)
					    : l == 2 ? _mm512_extracti32x4_epi32(y, 2)
						     : _mm512_extracti32x4_epi32(y, 3);
				__m512 x = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));

				x = _mm512_add_ps(_mm512_mul_ps(x, sc), of);
				if (nt)
					_mm512_stream_ps((float *)d + 16 * l, x);
				else
					_mm512_storeu_ps((float *)d + 16 * l, x);
			}
		}
	}
}

/* 16 samples of 4 bytes from p, the lanes in `used` (the first of them
 * at p itself; see in_one_page). */
VBMI_FN inline __attribute__((always_inline)) __m512 wpack_load(const char *p, __mmask16 used)
{
	return in_one_page(p, 64) ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(used, p);
}

/* One period of packed rows from a source of 4-byte samples: groups of
 * vectors of 16 samples, each group's K loads of 64 bytes masked to their
 * samples where they cross a page boundary, each vector permuted from
 * loads 0-1 and, when K > 2, from loads 2-3 where its index has bit 5 set;
 * scaled by sc and of if `aff`. */
VBMI_FN inline __attribute__((always_inline)) void wpack_period(const struct pm__fill *f, char *d,
								const char *src, int K, bool aff,
								__m512 sc, __m512 of, bool nt)
{
	const int32_t *off = f->pack_off;
	const uint16_t *used = f->pack_used;
	const unsigned char(*idx)[64] = f->pack_idx;

	for (int gi = 0; gi < f->pack_groups; gi++, off += K, used += K) {
		__m512 A = wpack_load(src + off[0], used[0]);
		__m512 B = K > 1 ? wpack_load(src + off[1], used[1]) : A;
		__m512 C = K > 2 ? wpack_load(src + off[2], used[2]) : A;
		__m512 D = K > 3 ? wpack_load(src + off[3], used[3]) : C;

		for (int m = f->pack_gm[gi]; m > 0; m--, idx++, d += 64) {
			__m512i ix = _mm512_loadu_si512(*idx);
			__m512 y = K == 1 ? _mm512_permutexvar_ps(ix, A) : _mm512_permutex2var_ps(A, ix, B);

			if (K > 2)
				y = _mm512_mask_blend_ps(_mm512_test_epi32_mask(ix, _mm512_set1_epi32(32)), y,
							 _mm512_permutex2var_ps(C, ix, D));
			if (aff)
				y = _mm512_add_ps(_mm512_mul_ps(y, sc), of);
			if (nt)
				_mm512_stream_ps((float *)d, y);
			else
				_mm512_storeu_ps(d, y);
		}
	}
}

/* The whole periods of rows packed from the source among the run's nw
 * rows, the first window's samples at src, to d; returns the rows written.
 * Past the caches (pm__fill_stream) where every store is aligned. */
VBMI_FN int64_t spack_rows(const struct pm__fill *f, char *d, const char *src, int64_t nw)
{
	const struct pm__geom *g = &f->g;
	int64_t G = f->pack_rows, np = nw / G;
	size_t span = (size_t)G * g->row_bytes;
	bool nt = pm__fill_stream && !((uintptr_t)d & 63) && !(span & 63);
	bool sgn = g->src_dtype == PM_DTYPE_I8, bin = g->src_dtype == PM_DTYPE_BOOL;
	bool bytes = g->out_size == 1, wide = g->in_size == 4, aff = g->affine;
	__m512 sc = _mm512_set1_ps(g->affine ? f->af.fscale : 1.0f);
	__m512 of = _mm512_set1_ps(g->affine ? f->af.foffset : 0.0f);

#define SPACK_K(KK)                                                                       \
	case KK:                                                                          \
		for (int64_t p = 0; p < np; p++, d += span, src += f->pack_shift)         \
			if (wide && KK <= 4 && aff)                                       \
				wpack_period(f, d, src, KK, true, sc, of, nt);                \
			else if (wide && KK <= 4)                                         \
				wpack_period(f, d, src, KK, false, sc, of, nt);               \
			else if (bytes)                                                   \
				spack_period(f, d, src, KK, true, false, false, sc, of, nt);  \
			else if (sgn)                                                     \
				spack_period(f, d, src, KK, false, true, false, sc, of, nt);  \
			else if (bin)                                                     \
				spack_period(f, d, src, KK, false, false, true, sc, of, nt);  \
			else                                                              \
				spack_period(f, d, src, KK, false, false, false, sc, of, nt); \
		break;
	switch (f->pack_parts) {
	SPACK_K(1) SPACK_K(2) SPACK_K(3) SPACK_K(4) SPACK_K(5) SPACK_K(6) SPACK_K(7) SPACK_K(8)
	}
#undef SPACK_K
	return np * G;
}

/* The VBMI paths of the runs (packed rows, gathered strided lines): where
 * the CPU has AVX-512 VBMI, BW and VL, unless PATCHMAP_NO_VBMI is set (the
 * other paths give the same bytes; the tests run both). */
static bool vbmi_ok(void)
{
	return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && !getenv("PATCHMAP_NO_VBMI");
}

/* Lanes [0, k) of 16. */
static inline __mmask16 lanes16(int64_t k)
{
	return k <= 0 ? 0 : k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << k) - 1);
}

/* Strided lines of a run: samples s = 2..4 apart (a channel of three or
 * four, or a phase of dilation 2..4), 16 at a time, gathered by a
 * permutation of the 64 bytes (1-byte samples) or 64 floats that hold them.
 * The loads are masked to the bytes that hold samples, so nothing past the
 * line's last sample is read. */
#define U8_STRIDED(NAME, OUT)                                                                      \
	VBMI_FN void NAME(void *dst, const char *src, size_t n, ptrdiff_t ss, const struct pm__affine *af) \
	{                                                                                          \
		int64_t s = ss;                                                                    \
		unsigned char ib[64] __attribute__((aligned(64))) = { 0 };                         \
		__m512 sc = _mm512_set1_ps(af->fscale), of = _mm512_set1_ps(af->foffset);          \
		(void)sc, (void)of;                                                                \
		for (int i = 0; i < 16; i++)                                                       \
			ib[i] = (unsigned char)(i * s);                                            \
		__m512i ix = _mm512_load_si512(ib);                                                \
		for (size_t i = 0; i < n; i += 16) {                                               \
			int64_t r = n - i < 16 ? (int64_t)(n - i) : 16, need = s * (r - 1) + 1;    \
			__mmask64 lm = need >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << need) - 1;    \
			__m512i x = _mm512_maskz_loadu_epi8(lm, src + (int64_t)i * s);             \
			__m128i b = _mm512_castsi512_si128(_mm512_permutexvar_epi8(ix, x));        \
			__mmask16 m = lanes16(r);                                                  \
			OUT;                                                                       \
		}                                                                                  \
	}
U8_STRIDED(strided_u8_u8, _mm_mask_storeu_epi8((char *)dst + i, m, b))
U8_STRIDED(strided_u8_f32,
	   _mm512_mask_storeu_ps((float *)dst + i, m, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b))))
U8_STRIDED(strided_u8_f32a,
	   _mm512_mask_storeu_ps((float *)dst + i, m,
				 _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), sc), of)))
#undef U8_STRIDED

/* 16 samples from p on, s floats apart; need: the floats that hold them. */
VBMI_FN inline __attribute__((always_inline)) __m512 f32_gather16(const float *p, int64_t s, int64_t need,
								  __m512i xa, __m512i xc, __mmask16 hi)
{
	__m512 x = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lanes16(need), p), xa,
					  _mm512_maskz_loadu_ps(lanes16(need - 16), p + 16));

	if (s == 3) /* lanes 11..15: floats 33..45 */
		x = _mm512_mask_blend_ps(hi, x, _mm512_permutexvar_ps(xc, _mm512_maskz_loadu_ps(lanes16(need - 32), p + 32)));
	else if (s == 4)
		x = _mm512_mask_blend_ps(hi, x,
					 _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lanes16(need - 32), p + 32), xc,
								_mm512_maskz_loadu_ps(lanes16(need - 48), p + 48)));
	return x;
}

VBMI_FN void strided_f32_f32(void *dst, const char *src, size_t n, ptrdiff_t ss, const struct pm__affine *af)
{
	int64_t s = ss / 4, full = 15 * s + 1;
	int32_t ia[16], ic[16];
	__mmask16 hi = 0;
	size_t i = 0;

	(void)af;
	for (int k = 0; k < 16; k++) {
		ia[k] = (int32_t)(k * s & 31);
		ic[k] = (int32_t)((k * s - 32) & 31);
		if (k * s >= 32)
			hi |= (__mmask16)(1u << k);
	}
	__m512i xa = _mm512_loadu_si512(ia), xc = _mm512_loadu_si512(ic);
	/* whole vectors, s a constant in each loop */
#define F32_FULL(S)                                                                                   \
	for (; i + 16 <= n; i += 16)                                                                  \
		_mm512_storeu_ps((float *)dst + i,                                                    \
				 f32_gather16((const float *)(src + (int64_t)i * ss), S, full, xa, xc, hi));
	if (s == 2)
		F32_FULL(2)
	else if (s == 3)
		F32_FULL(3)
	else
		F32_FULL(4)
#undef F32_FULL
	if (i < n) {
		int64_t r = (int64_t)(n - i);

		_mm512_mask_storeu_ps((float *)dst + i, lanes16(r),
				      f32_gather16((const float *)(src + (int64_t)i * ss), s, s * (r - 1) + 1, xa, xc, hi));
	}
}
#endif

static int64_t gcd64(int64_t a, int64_t b)
{
	while (b) {
		int64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* The kernel for a run's lines when they are strided (see the strided
 * kernels above); f->line otherwise. */
static void strided_init(struct pm__fill *f)
{
#ifdef HAVE_AVX2_KERNELS
	const struct pm__geom *g = &f->g;
	int64_t s = f->run_sstride / (ptrdiff_t)g->in_size, out = g->dtype == PM_DTYPE_F32;
	int src = g->src_dtype;

	if (!vbmi_ok() || f->run_sstride % (ptrdiff_t)g->in_size || s < 2 || s > 4)
		return;
	if (g->in_size == 1 && g->out_size == 1 && !g->affine)
		f->run_line = strided_u8_u8; /* a bit copy of any 1-byte type */
	else if (src == PM_DTYPE_U8 && out)
		f->run_line = g->affine ? strided_u8_f32a : strided_u8_f32;
	else if (src == PM_DTYPE_F32 && g->out_size == 4 && !g->affine)
		f->run_line = strided_f32_f32;
#else
	(void)f;
#endif
}

/* Packed rows from the source. For 1-byte samples the permutation can
 * take the row's samples from the source itself: a row's element k lies
 * at a fixed offset from the window's first sample, and window j of a run
 * j * idx_stride further on, so each 64-sample vector of a period is a few
 * 16-byte loads of the source wherever its offsets cluster (the three
 * channels of a pixel, the next window's line), whatever line or channel
 * they belong to. Consecutive vectors of a group share the loads (a 16-byte
 * load of a u8 3 x 3 line serves 14 windows, two vectors), each vector its
 * own permutation. The samples are then converted in registers. Planned
 * for lines of at most 16 samples. Rows of 4-byte samples are planned the
 * same way with 64-byte loads, each sample a lane of a float permutation:
 * a channel-major 3 x 3 row of float32 takes three loads a vector, where
 * the scratch's plan takes six and a strided conversion of every line. */

/* Element k of a stored row: its source offset from the window's first
 * sample. A dim of extent 1 (whose dilation or stride may be near the
 * largest) adds nothing: step_bytes gives it 0 rather than an overflowing
 * product. */
static int64_t row_elem_off(const struct pm__geom *g, int64_t k)
{
	int64_t o = 0;

	for (int m = g->nrow - 1; m >= 0; m--) {
		const struct pm__dim *d = &g->row[m];

		o += k % d->extent * (d->axis < 0 ? g->cstride : step_bytes(d->inc, g->ax[d->axis].stride));
		k /= d->extent;
	}
	return o;
}

/* Plans the V vectors of a period in groups of up to M, each group's
 * loads padded to K, the most any group needs; commit: writes the plan.
 * A vector is 64 bytes of samples: 64 one-byte samples from 16-byte loads
 * (at most 8), or 16 four-byte samples from 64-byte loads (at most 4;
 * every offset then a whole number of samples, so each sample is a lane).
 * Returns K, or 0 when a group would need more loads. */
static int spack_plan(struct pm__fill *f, int64_t V, int64_t rs, int M, int K, bool commit)
{
	const struct pm__geom *g = &f->g;
	int64_t cols = (int64_t)g->cols, es = (int64_t)g->in_size, E = 64 / es, W = 16 * es;
	int most = 1, ng = 0, maxk = es == 1 ? 8 : 4;

	for (int64_t v0 = 0; v0 < V; v0 += M, ng++) {
		int m = V - v0 < M ? (int)(V - v0) : M, n = 0;
		int64_t lo[8], hi[8];

		for (int i = 0; i < E * m; i++) {
			int64_t e = E * v0 + i, o = e / cols * rs + row_elem_off(g, e % cols);
			int p = 0;

			if (o < INT32_MIN / 2 || o > INT32_MAX / 2 || o % es)
				return 0;
			/* the first load whose W bytes can take o */
			while (p < n && (o > hi[p] ? o : hi[p]) - (o < lo[p] ? o : lo[p]) > W - es)
				p++;
			if (p == n) {
				if (n == maxk)
					return 0;
				lo[n] = hi[n] = o;
				n++;
			}
			lo[p] = o < lo[p] ? o : lo[p];
			hi[p] = o > hi[p] ? o : hi[p];
		}
		most = n > most ? n : most;
		if (!commit)
			continue;
		f->pack_gm[ng] = (unsigned char)m;
		for (int e = 0; e < K; e++) {
			f->pack_off[ng * K + e] = (int32_t)lo[e < n ? e : 0];
			f->pack_used[ng * K + e] = 0;
		}
		for (int i = 0; i < E * m; i++) {
			int64_t e = E * v0 + i, o = e / cols * rs + row_elem_off(g, e % cols);
			int p = 0;
			uint32_t lane;

			while (o < lo[p] || o - lo[p] > W - es)
				p++;
			lane = (uint32_t)((o - lo[p]) / es);
			/* 1-byte samples: byte i is 16 * load + lane; 4-byte
			 * ones: 32-bit index i is, for the float permutations
			 * of loads 0-1 and 2-3, 16 * load + lane */
			if (es == 1) {
				f->pack_idx[v0 + i / 64][i % 64] = (unsigned char)(16 * p + lane);
			} else {
				lane += 16 * (uint32_t)p;
				memcpy(&f->pack_idx[v0 + i / 16][4 * (i % 16)], &lane, 4);
			}
			f->pack_used[ng * K + p] |= (uint16_t)(1u << (lane % 16));
		}
	}
	if (commit)
		f->pack_groups = ng;
	return most;
}

static void spack_init(struct pm__fill *f)
{
#ifdef HAVE_AVX2_KERNELS
	const struct pm__geom *g = &f->g;
	int64_t cols = (int64_t)g->cols, rs = f->idx_stride[g->nidx - 1], E = 64 / (int64_t)g->in_size, G, V;
	int best = 0, bestK = 0;
	int64_t best_loads = 0;
	bool to_f32 = g->dtype == PM_DTYPE_F32 &&
		      (g->src_dtype == PM_DTYPE_U8 || g->src_dtype == PM_DTYPE_I8 || g->src_dtype == PM_DTYPE_BOOL);
	/* 4-byte samples: float32 to float32 (scaled, if affine), or a bit
	 * copy of any 4-byte type */
	bool wide = g->in_size == 4 && g->dtype == g->src_dtype &&
		    (g->src_dtype == PM_DTYPE_F32 || !g->affine);

	if (!vbmi_ok() || g->pitch != g->row_bytes || f->line_elems > 16 ||
	    !(wide || (g->in_size == 1 && (to_f32 || (g->out_size == 1 && !g->affine)))))
		return;
	/* a bit copy of 16-byte lines is one move a line already */
	if (g->in_size == 1 && !to_f32 && f->line_elems == 16)
		return;
	/* Nor packing of 8 or 16 samples to float32 where windows step at
	 * most a quarter of the line (run_per: the samples a run converts per
	 * window and line): the scratch gives each such line as one move of
	 * 32 or 64 bytes. Measured (u8): 1.3-3x as fast at 8 and 16, dilated
	 * or not, steps 1-2 (8) and 1-4 (16); at 7, packing is the faster
	 * (63 against 36 GB/s). Longer steps convert samples no window reads,
	 * and lines of two pixels of four channels are few per row: packed,
	 * up to 1.9x as fast. (Square windows of 9, 11, 13 and 15 one-byte
	 * samples have periods of more than PM__PACK_VECS vectors: never
	 * packed. 10, 12 and 14 are packed, not measured against the
	 * scratch.) */
	if (to_f32 && (f->line_elems == 8 || f->line_elems == 16) &&
	    f->run_per <= (int64_t)f->line_elems / 4)
		return;
	G = E / gcd64(cols, E);
	V = G * cols / E;
	if (V > PM__PACK_VECS)
		return;
	/* The group size with the least work for the period: 2 per load
	 * (load, insert) of each of its ceil(V / M) groups, every group padded
	 * to the K loads of the most, and 3 per vector (permutation, its
	 * index, store) whatever M. Groups of up to 8 (as many as the loads
	 * allow): measured, u8 7 x 7 takes 7 (1.2x as fast as 4) and f32 x3
	 * (c, y, x) 3 x 3 takes 5. */
	for (int M = 1; M <= 8; M++) {
		int K = spack_plan(f, V, rs, M, 0, false);
		int64_t loads = K * ((V + M - 1) / M);

		if (K && (!best || loads < best_loads)) {
			best = M;
			bestK = K;
			best_loads = loads;
		}
	}
	if (!best)
		return;
	spack_plan(f, V, rs, best, bestK, true);
	f->pack_src = true;
	f->pack_rows = (int)G;
	f->pack_vecs = (int)V;
	f->pack_parts = bestK;
	f->pack_shift = (ptrdiff_t)(G * rs);
#else
	(void)f;
#endif
}

/* Packed rows. Rows of a run are contiguous (no pitch gap), so from row 0
 * of the run the output is one stream of bytes, each a byte of the
 * scratch: line t, phase (j*per) mod P, element (j*per) / P of row j.
 * After G rows (G*row_bytes a multiple of 64, G*per a multiple of P) the
 * pattern repeats, every source G*per/P elements on. Each 64-byte vector
 * of one period is planned here: the 16-byte loads (parts) of the scratch
 * that hold its bytes, at most 8, and the byte permutation (AVX-512 VBMI)
 * that puts them in place. A row of u8 3 x 3 (9 bytes) then costs a
 * seventh of a store, where a copy line by line stores three 16-byte
 * moves; lines of 16 bytes or more, one move or more each, are copied as
 * before. */
static void pack_init(struct pm__fill *f)
{
#ifdef HAVE_AVX2_KERNELS
	const struct pm__geom *g = &f->g;
	int64_t es = (int64_t)g->out_size, lb = (int64_t)f->line_bytes, rb = (int64_t)g->row_bytes;
	int64_t per = f->run_per, P = f->run_phases, G, V;
	int K = 1;

	if (!vbmi_ok() || g->pitch != g->row_bytes || rb != f->run_lines * lb || lb >= 16 ||
	    (int64_t)f->run_lines * P > UINT16_MAX)
		return;
	G = 64 / gcd64(rb, 64);
	G *= P / gcd64(G * per, P);
	V = G * rb / 64;
	if (V > PM__PACK_VECS)
		return;
	for (int pass = 0; pass < 2; pass++)
		for (int64_t v = 0; v < V; v++) {
			int64_t arr[8], base[8];
			int n = 0;

			for (int i = 0; i < 64; i++) {
				int64_t s = 64 * v + i, j = s / rb, k = s % rb, a = k / lb * P + j * per % P;
				int64_t off = j * per / P * es + k % lb;
				int e = 0;

				/* a load of this array that covers off, or a new one */
				while (e < n && !(arr[e] == a && off >= base[e] && off - base[e] < 16))
					e++;
				if (e == n) {
					if (n == 8)
						return;
					arr[n] = a;
					base[n++] = off;
				}
				f->pack_idx[v][i] = (unsigned char)(16 * e + (off - base[e]));
			}
			/* The first pass finds K, the most parts of any vector;
			 * the second pads every vector to K with its first load. */
			if (pass == 0) {
				K = n > K ? n : K;
				continue;
			}
			for (int e = 0; e < K; e++) {
				f->pack_array[v * K + e] = (uint16_t)arr[e < n ? e : 0];
				f->pack_off[v * K + e] = (int32_t)base[e < n ? e : 0];
			}
		}
	f->pack_rows = (int)G;
	f->pack_vecs = (int)V;
	f->pack_parts = K;
	f->pack_shift = (ptrdiff_t)(G * per / P * es);
#else
	(void)f;
#endif
}

/* Runs of windows. In the rows layout, stored rows r, r+1, ... are windows
 * at x, x+1, ... along the last axis as long as the other coordinates stay:
 * line t of the row of window x reads, along that axis, samples
 * x*step + u*dil (u < k; with channels innermost, each sample's C
 * channels). Converted once into a scratch per line (and per phase
 * x*step mod dil when dil > 1), every row's line is then a short copy of
 * contiguous converted elements. The conversion is the line kernel itself,
 * so the bytes are those of the other paths. Small windows gain most: their
 * lines are a few elements, too short for a kernel call each. */
static void runs_init(struct pm__fill *f)
{
	const struct pm__geom *g = &f->g;
	const struct pm__dim *D = g->row;
	int lines = 1, last = g->nidx - 1;

	if (g->layout != PM_LAYOUT_ROWS || last < 0 || g->idx[last].axis != f->line_axis ||
	    !f->merged || f->line_px < 1)
		return;
	if (f->line_ch > 1 && f->line_inc != 1)
		return; /* dilated pixels of several channels: not contiguous per phase */
	/* Lines longer than 128 bytes run at memory speed through the block
	 * kernels, one call per line; up to 128, the run's copies cost less
	 * than a conversion and a call per line. */
	if (f->line_inc > 4 || g->idx[last].extent < 2 || f->line_bytes > 128)
		return;
	for (int k = 0; k < f->line_dim; k++) {
		if (lines * D[k].extent > PM__RUN_MAX_LINES)
			return;
		lines *= (int)D[k].extent;
	}
	/* Line offsets: line t's index on each outer row dim, outermost first.
	 * An offset that overflows belongs to a window axis longer than its
	 * source axis (a one-sample axis of any stride, padded): no window
	 * is inside the source there, so no run ever starts. */
	for (int t = 0; t < lines; t++) {
		ptrdiff_t off = 0, o;
		int64_t r = t;

		for (int k = f->line_dim - 1; k >= 0; k--) {
			if (__builtin_mul_overflow((ptrdiff_t)(r % D[k].extent), f->ostride[k], &o) ||
			    __builtin_add_overflow(off, o, &off))
				return;
			r /= D[k].extent;
		}
		f->run_line_off[t] = off;
	}
	f->run_lines = lines;
	if (f->line_ch > 1) {
		f->run_phases = 1;
		f->run_sstride = f->ch_stride;
		f->run_per = g->idx[last].inc * f->line_ch;
	} else {
		f->run_phases = (int)f->line_inc;
		f->run_sstride = f->px_stride; /* dil samples: one phase */
		f->run_per = g->idx[last].inc; /* step, in samples of the axis */
	}
	f->runs = true;
	f->run_line = f->line;
#ifdef HAVE_AVX2_KERNELS
	if (__builtin_cpu_supports("avx512f") && f->line_bytes > 32 && f->line_bytes <= 64)
		f->run_moves = 64;
	else if (__builtin_cpu_supports("avx2") && (f->line_bytes + 15) / 16 % 2 == 0)
		f->run_moves = 32;
#endif
	strided_init(f);
	if (g->in_size == 4) {
		/* Measured: the scratch's plan is the faster wherever one
		 * table of four loads serves each vector, and rows with lines
		 * of 16 bytes or more are faster copied; a row of many short
		 * lines (channel-major 3 x 3: nine of 12 bytes) is faster
		 * packed from the source. */
		pack_init(f);
		if (f->pack_parts > 4)
			spack_init(f);
	} else {
		spack_init(f);
		if (!f->pack_src)
			pack_init(f);
	}
}

void pm__fill_init(struct pm__fill *f, const struct pm__geom *g)
{
	const struct pm__dim *D = g->row;
	int m = g->nrow, out = g->dtype == PM_DTYPE_F32 ? 1 : g->dtype == PM_DTYPE_F64 ? 2 : 0;

	memset(f, 0, sizeof(*f));
	f->g = *g;
	f->line = line_kernels[g->src_dtype][g->affine][out];
	f->block = block_kernels[g->src_dtype][g->affine][out];
	avx2_kernels(g->src_dtype, g->affine, out, &f->line, &f->block);
	f->af = (struct pm__affine){ (float)g->scale, (float)g->offset, g->scale, g->offset };
	f->line(f->pad_out, (const char *)g->pad_sample, 1, (ptrdiff_t)g->in_size, &f->af);

	/* A line is the innermost row dim, a spatial one; when the channel is
	 * innermost (window-major order), the line is the last window axis with
	 * all channels of each of its pixels. */
	if (m >= 2 && D[m - 1].axis < 0) {
		f->line_dim = m - 2;
		f->line_ch = D[m - 1].extent;
	} else {
		f->line_dim = m - 1;
		f->line_ch = 1;
	}
	f->line_axis = D[f->line_dim].axis;
	f->line_px = D[f->line_dim].extent;
	f->line_inc = D[f->line_dim].inc;
	f->px_stride = step_bytes(f->line_inc, g->ax[f->line_axis].stride);
	f->ch_stride = g->cstride;
	f->merged = f->line_ch == 1 || f->ch_stride * f->line_ch == f->px_stride;
	f->el_stride = f->line_ch == 1 ? f->px_stride : f->ch_stride;
	f->line_elems = (size_t)(f->line_px * f->line_ch);
	for (int k = 0; k < m; k++)
		if (D[k].axis >= 0)
			f->row_span[D[k].axis] = (D[k].extent - 1) * D[k].inc;

	for (int k = 0; k < f->line_dim; k++)
		f->ostride[k] = step_bytes(D[k].inc, D[k].axis < 0 ? g->cstride : g->ax[D[k].axis].stride);
	f->nblock = f->line_dim;
	f->block_lines = 1;
	if (f->nblock > 0) {
		f->nblock--;
		f->block_lines = (size_t)D[f->nblock].extent;
		f->block_step = f->ostride[f->nblock];
	}
	f->line_bytes = f->line_elems * g->out_size;
	f->contig = f->el_stride == (ptrdiff_t)g->in_size;
	for (int k = 0; k < g->nidx; k++) {
		const struct pm__dim *d = &g->idx[k];

		f->idx_stride[k] = step_bytes(d->inc, d->axis < 0 ? g->cstride : g->ax[d->axis].stride);
	}
	runs_init(f);
}

/* Where a stored row starts: its index split over g->idx, the resulting
 * padded coordinate of its first sample on each axis (and channel), and the
 * byte offset of that sample from the data pointer (meaningful only when it
 * is inside the source). */
struct rowpos {
	size_t row;                 /* the stored row */
	int64_t i[PM_MAX_DIMS + 1];
	int64_t base[PM_MAX_DIMS];
	int64_t ch;
	ptrdiff_t so;
};

static void rowpos_set(const struct pm__fill *f, struct rowpos *p, size_t r)
{
	const struct pm__geom *g = &f->g;

	/* A row selection maps the stored row to its window. */
	p->row = r;
	r = g->sel ? (size_t)g->sel[r] : g->sel_begin + r;
	p->so = 0;
	for (int a = 0; a < g->ns; a++) {
		p->base[a] = -g->ax[a].pad_before;
		p->so += (ptrdiff_t)p->base[a] * g->ax[a].stride;
	}
	p->ch = 0;
	for (int k = g->nidx - 1; k >= 0; k--) {
		const struct pm__dim *d = &g->idx[k];

		p->i[k] = (int64_t)(r % (size_t)d->extent);
		r /= (size_t)d->extent;
		if (d->axis < 0)
			p->ch += p->i[k];
		else
			p->base[d->axis] += p->i[k] * d->inc;
		p->so += (ptrdiff_t)p->i[k] * f->idx_stride[k];
	}
}

static void rowpos_next(const struct pm__fill *f, struct rowpos *p)
{
	const struct pm__geom *g = &f->g;

	if (g->sel) {
		rowpos_set(f, p, p->row + 1);
		return;
	}
	p->row++;
	for (int k = g->nidx - 1; k >= 0; k--) {
		const struct pm__dim *d = &g->idx[k];
		int64_t back = ++p->i[k] < d->extent ? -1 : d->extent - 1;

		if (back < 0) {
			if (d->axis < 0)
				p->ch++;
			else
				p->base[d->axis] += d->inc;
			p->so += f->idx_stride[k];
			return;
		}
		p->i[k] = 0;
		if (d->axis < 0)
			p->ch -= back;
		else
			p->base[d->axis] -= back * d->inc;
		p->so -= (ptrdiff_t)back * f->idx_stride[k];
	}
}

/* ceil(a / b) for b > 0, 0 for a <= 0; never overflows (b may be a step
 * or a dilation near INT64_MAX). */
static inline int64_t ceil_div(int64_t a, int64_t b)
{
	return a <= 0 ? 0 : a / b + (a % b != 0);
}

static void put_pad(const struct pm__fill *f, char *d, size_t n)
{
	size_t es = f->g.out_size;

	for (size_t i = 0; i < n; i++)
		memcpy(d + i * es, f->pad_out, es);
}

/* Elements [u0, u1) of line t of the row at p, to d. Exact for every case:
 * padding on any axis, any mode, unmerged channels. */
static void line_general(const struct pm__fill *f, const struct rowpos *p, size_t t,
			 size_t u0, size_t u1, char *d)
{
	const struct pm__geom *g = &f->g;
	int64_t coord[PM_MAX_DIMS], ch = p->ch, C = f->line_ch, q = f->line_inc;
	const struct pm__axis *la = &g->ax[f->line_axis];
	size_t es = g->out_size;
	ptrdiff_t so = 0;
	int64_t b, ilo, ihi;

	memcpy(coord, p->base, sizeof(int64_t) * (size_t)g->ns);
	for (int k = f->line_dim - 1; k >= 0; k--) {
		const struct pm__dim *dm = &g->row[k];
		int64_t i = (int64_t)(t % (size_t)dm->extent);

		t /= (size_t)dm->extent;
		if (dm->axis < 0)
			ch += i;
		else
			coord[dm->axis] += i * dm->inc;
	}
	so = (ptrdiff_t)ch * g->cstride;
	for (int a = 0; a < g->ns; a++) {
		int64_t c = coord[a];

		if (a == f->line_axis)
			continue;
		if (c < 0 || c >= g->ax[a].n) {
			if (g->pad_mode == PM_PAD_CONSTANT) {
				put_pad(f, d, u1 - u0);
				return;
			}
			c = pm__remap(c, g->ax[a].n, g->pad_mode);
		}
		so += (ptrdiff_t)c * g->ax[a].stride;
	}

	b = coord[f->line_axis];
	ilo = ceil_div(-b, q);
	ihi = ceil_div(la->n - b, q);
	if (ihi > f->line_px)
		ihi = f->line_px;
	if (ihi < ilo)
		ihi = ilo;

	for (size_t u = u0; u < u1;) {
		int64_t px = (int64_t)u / C;
		size_t end;

		if (px >= ilo && px < ihi) {
			end = (size_t)(ihi * C) < u1 ? (size_t)(ihi * C) : u1;
			if (f->merged) {
				const char *s = g->data + so + (ptrdiff_t)b * la->stride +
						(ptrdiff_t)u * f->el_stride;
				f->line(d, s, end - u, f->el_stride, &f->af);
			} else {
				for (size_t v = u; v < end;) {
					int64_t pp = (int64_t)v / C, c = (int64_t)v % C;
					size_t e = (size_t)((pp + 1) * C) < end ? (size_t)((pp + 1) * C) : end;
					const char *s = g->data + so +
							(ptrdiff_t)(b + pp * q) * la->stride +
							(ptrdiff_t)c * f->ch_stride;

					f->line(d + (v - u) * es, s, e - v, f->ch_stride, &f->af);
					v = e;
				}
			}
		} else {
			end = px < ilo && (size_t)(ilo * C) < u1 ? (size_t)(ilo * C) : u1;
			if (px >= ihi)
				end = u1;
			if (g->pad_mode == PM_PAD_CONSTANT) {
				put_pad(f, d, end - u);
			} else {
				for (size_t v = u; v < end; v++) {
					int64_t pp = (int64_t)v / C, c = (int64_t)v % C;
					int64_t sp = pm__remap(b + pp * q, la->n, g->pad_mode);
					const char *s = g->data + so + (ptrdiff_t)sp * la->stride +
							(ptrdiff_t)c * f->ch_stride;

					f->line(d + (v - u) * es, s, 1, (ptrdiff_t)g->in_size, &f->af);
				}
			}
		}
		d += (end - u) * es;
		u = end;
	}
}

/* Elements [e0, e1) of the row at p, to d. */
static void elems_general(const struct pm__fill *f, const struct rowpos *p, size_t e0,
			  size_t e1, char *d)
{
	size_t L = f->line_elems, t = e0 / L, u = e0 % L;

	while (e0 < e1) {
		size_t end = e1 - e0 < L - u ? u + (e1 - e0) : L;

		line_general(f, p, t, u, end, d);
		d += (end - u) * f->g.out_size;
		e0 += end - u;
		t++;
		u = 0;
	}
}

static bool row_interior(const struct pm__fill *f, const struct rowpos *p)
{
	for (int a = 0; a < f->g.ns; a++)
		if (p->base[a] < 0 || p->base[a] + f->row_span[a] >= f->g.ax[a].n)
			return false;
	return true;
}

/* A whole row that reads no padding, its first sample at s: the outer dims
 * walk blocks of lines, and each block is one kernel call. */
static void row_fast(const struct pm__fill *f, const char *s, char *d)
{
	const struct pm__dim *D = f->g.row;
	size_t nl = f->block_lines, lstep = f->line_bytes;
	int64_t i[PM_MAX_DIMS + 1] = { 0 };

	for (;;) {
		if (f->contig) {
			f->block(d, lstep, s, f->block_step, nl, f->line_elems, &f->af);
		} else {
			for (size_t l = 0; l < nl; l++)
				f->line(d + l * lstep, s + (ptrdiff_t)l * f->block_step,
					f->line_elems, f->el_stride, &f->af);
		}
		d += nl * lstep;
		int k = f->nblock - 1;
		for (; k >= 0; k--) {
			s += f->ostride[k];
			if (++i[k] < D[k].extent)
				break;
			s -= f->ostride[k] * D[k].extent;
			i[k] = 0;
		}
		if (k < 0)
			return;
	}
}

/* Bytes [b, b + n) of the row at p (a stored row is `pitch` bytes: its
 * elements, then zeros). */
static void row_bytes(const struct pm__fill *f, const struct rowpos *p, size_t b, size_t n,
		      char *d)
{
	const struct pm__geom *g = &f->g;
	size_t es = g->out_size, b0 = b, b1 = b + n, eb = b1 < g->row_bytes ? b1 : g->row_bytes;

	if (b == 0 && eb == g->row_bytes && f->merged && row_interior(f, p)) {
		row_fast(f, f->g.data + p->so, d);
		b = eb;
	}
	while (b < eb) {
		size_t e = b / es, eo = b % es;

		if (eo || b + es > eb) {
			unsigned char tmp[8];
			size_t c = es - eo < eb - b ? es - eo : eb - b;

			elems_general(f, p, e, e + 1, (char *)tmp);
			memcpy(d + (b - b0), tmp + eo, c);
			b += c;
		} else {
			size_t e1 = eb / es;

			elems_general(f, p, e, e1, d + (b - b0));
			b = e1 * es;
		}
	}
	if (b1 > g->row_bytes) {
		size_t z0 = b0 > g->row_bytes ? b0 : g->row_bytes;

		memset(d + (z0 - b0), 0, b1 - z0);
	}
}

/* Copies n bytes (at most 128 here, beyond 64 by memcpy; the same n for a whole run, so the
 * branches predict) with overlapping fixed-size moves. */
static inline void copy_small(char *restrict d, const char *restrict s, size_t n)
{
	if (n >= 16) {
		if (n > 32) {
			if (n > 64) {
				memcpy(d, s, n);
				return;
			}
			__builtin_memcpy(d + 16, s + 16, 16);
			__builtin_memcpy(d + n - 32, s + n - 32, 16);
		}
		__builtin_memcpy(d, s, 16);
		__builtin_memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		__builtin_memcpy(d, s, 8);
		__builtin_memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		__builtin_memcpy(d, s, 4);
		__builtin_memcpy(d + n - 4, s + n - 4, 4);
	} else if (n >= 2) {
		__builtin_memcpy(d, s, 2);
		__builtin_memcpy(d + n - 2, s + n - 2, 2);
	} else {
		*d = *s;
	}
}

#define RUN_SCRATCH 16384 /* bytes on the stack: fill threads and callers of pm_matrix_read */
#define RUN_SLACK 64      /* past the scratch: the last moves read into it */
#define RUN_MIN 4         /* windows below which a run is not worth it */

/* 32 bytes of any alignment, which gcc moves in one instruction where
 * memcpy's 32 are two of 16. */
typedef char pm__v32 __attribute__((vector_size(32), aligned(1), may_alias));
typedef char pm__v64 __attribute__((vector_size(64), aligned(1), may_alias));

/* One line of a row: NV moves of 16 bytes, as pairs of 32 where W is 32
 * (the same bytes read and written, half the stores), or one of 64 where
 * W is 64 and NV at most 4. The last one runs past the line's end, by up
 * to 15 bytes (W 16 or 32) or by 64 less the line's 33 or more, into
 * bytes that a later move of the same run writes (the next line, the row
 * gap, the next row): rows and lines are written in ascending order, so
 * each byte's last writer is its own line. Moves read as far past the
 * scratch's last element, into RUN_SLACK. */
#define MOVES(d, s, NV)                                                            \
	do {                                                                       \
		size_t v_ = 0;                                                     \
		if (W == 64 && (NV) <= 4) {                                        \
			if (NT)                                                    \
				stream64(d, s);                                    \
			else                                                       \
				*(pm__v64 *)(d) = *(const pm__v64 *)(s);           \
			break;                                                     \
		}                                                                  \
		for (; W == 32 && v_ + 2 <= (size_t)(NV); v_ += 2)                 \
			*(pm__v32 *)((d) + 16 * v_) = *(const pm__v32 *)((s) + 16 * v_); \
		for (; v_ < (size_t)(NV); v_++)                                    \
			__builtin_memcpy((d) + 16 * v_, (s) + 16 * v_, 16);        \
	} while (0)

/* 64 bytes from s to the aligned d past the caches. In assembly, since the
 * row loops that call it are also built for CPUs without AVX-512, where they
 * never take this path and the intrinsics would not compile. */
static inline __attribute__((always_inline)) void stream64(char *d, const char *s)
{
#if defined(__x86_64__)
	__asm__ volatile("vmovdqu64 %1, %%zmm31\n\tvmovntdq %%zmm31, %0"
			 : "=m"(*(struct { char b[64]; } *)d)
			 : "m"(*(const struct { char b[64]; } *)s)
			 : "xmm31");
#else
	__builtin_memcpy(d, s, 64);
#endif
}

/* From window j's scratch position (phase *ph, element *q) to window
 * j + 1's: per samples on, pq elements and pr phases (pr < P). */
static inline __attribute__((always_inline)) void next_window(int64_t *ph, int64_t *q, int64_t pq,
							       int64_t pr, int64_t P)
{
	*q += pq;
	*ph += pr;
	if (*ph >= P) {
		*ph -= P;
		++*q;
	}
}

/* Rows [j0, j1) of a run, lines LINES (a constant in the instances for the
 * k x k windows of one channel and 3 x 3 of three, so the line loop unrolls) and NV moves per line. */
#define ROWS_LOOP(LINES, NV)                                                           \
	for (int64_t j = j0; j < j1; j++) {                                            \
		char *row = d + (size_t)j * pitch;                                     \
		const char *src = sc + ((size_t)ph * (size_t)count + (size_t)q) * es; \
		for (size_t t = 0; t < (LINES); t++)                                   \
			MOVES(row + t * lb, src + t * ls, NV);                         \
		if (pitch > rb)                                                        \
			memset(row + rb, 0, pitch - rb);                               \
		next_window(&ph, &q, pq, pr, P);                                       \
	}

/* The rows of a run from its converted lines in sc: line t of window j is
 * phase (j*per) mod P of line t, from element (j*per) / P on. Every row
 * but the last few is written by whole 16-byte moves; the last rows, whose
 * moves would run past the run's end, exactly. */
static inline __attribute__((always_inline)) void
copy_rows_w(const struct pm__fill *f, char *d, const unsigned char *scratch, int64_t nw,
	    int64_t count, const size_t W, const bool NT)
{
	const struct pm__geom *g = &f->g;
	const char *sc = (const char *)scratch;
	size_t es = g->out_size, lb = f->line_bytes, pitch = g->pitch, rb = g->row_bytes;
	size_t lines = (size_t)f->run_lines, nv = (lb + 15) / 16;
	/* next_window's step, per samples as elements and phases */
	int64_t per = f->run_per, P = f->run_phases, pq = per / P, pr = per % P, ph, q;
	size_t ls = (size_t)P * (size_t)count * es; /* scratch bytes per line */
	/* rows whose last move could pass the run's end: those within W - 1 bytes */
	int64_t exact = 1 + (int64_t)((W - 1) / pitch), j0 = 0, j1;

#ifdef HAVE_AVX2_KERNELS
	if (f->pack_rows && !f->pack_src)
		j0 = pack_rows(f, d, sc, nw, count);
#endif
	ph = j0 * per % P;
	q = j0 * per / P;
	j1 = nw - exact < j0 ? j0 : nw - exact;
	if (nv <= 8 && (lines == 3 || lines == 5 || lines == 7 || lines == 9)) {
#define NV_CASES(LINES)                                           \
	switch (nv) {                                             \
	case 1: ROWS_LOOP(LINES, 1) break;                        \
	case 2: ROWS_LOOP(LINES, 2) break;                        \
	case 3: ROWS_LOOP(LINES, 3) break;                        \
	case 4: ROWS_LOOP(LINES, 4) break;                        \
	case 5: ROWS_LOOP(LINES, 5) break;                        \
	case 6: ROWS_LOOP(LINES, 6) break;                        \
	case 7: ROWS_LOOP(LINES, 7) break;                        \
	default: ROWS_LOOP(LINES, 8) break;                       \
	}
		if (lines == 3)
			NV_CASES(3)
		else if (lines == 5)
			NV_CASES(5)
		else if (lines == 7)
			NV_CASES(7)
		else
			NV_CASES(9) /* 3 x 3, three channels, channel-major */
#undef NV_CASES
	} else {
		switch (nv) {
		case 1: ROWS_LOOP(lines, 1) break;
		case 2: ROWS_LOOP(lines, 2) break;
		case 3: ROWS_LOOP(lines, 3) break;
		default: ROWS_LOOP(lines, nv) break;
		}
	}
	for (int64_t j = j1; j < nw; j++) {
		char *row = d + (size_t)j * pitch;
		const char *src = sc + ((size_t)ph * (size_t)count + (size_t)q) * es;

		for (size_t t = 0; t < lines; t++)
			copy_small(row + t * lb, src + t * ls, lb);
		if (pitch > rb)
			memset(row + rb, 0, pitch - rb);
		next_window(&ph, &q, pq, pr, P);
	}
}
#undef ROWS_LOOP
#undef MOVES

static void copy_rows(const struct pm__fill *f, char *d, const unsigned char *scratch,
		      int64_t nw, int64_t count)
{
	copy_rows_w(f, d, scratch, nw, count, 16, false);
}

#ifdef HAVE_AVX2_KERNELS
/* Where the CPU has AVX2 and a line takes an even number of 16-byte
 * moves; lines of three (f32 x3 (y, x, c) 3 x 3, 36 bytes) ran 4 % slower
 * as 32 + 16, so they keep three. Measured in bench/README.md, section 1. */
AVX2_FN void copy_rows32(const struct pm__fill *f, char *d, const unsigned char *scratch,
			 int64_t nw, int64_t count)
{
	copy_rows_w(f, d, scratch, nw, count, 32, false);
}

/* Where the CPU has AVX-512 and a line is 33-64 bytes: one move of 64
 * (f32 x3 (y, x, c) 3 x 3: 1.17x as fast as three of 16; f32 16 x 16:
 * 1.3x as fast as two of 32). A read-ahead fill (pm__fill_stream) of
 * aligned lines of exactly 64 bytes, none overlapping, stores them past the
 * caches, as the packed rows do (bench/README.md, section 2). */
AVX512_FN void copy_rows64(const struct pm__fill *f, char *d, const unsigned char *scratch,
			   int64_t nw, int64_t count)
{
	if (pm__fill_stream && f->line_bytes == 64 && !((uintptr_t)d & 63) && !(f->g.pitch & 63))
		copy_rows_w(f, d, scratch, nw, count, 64, true);
	else
		copy_rows_w(f, d, scratch, nw, count, 64, false);
}
#endif

/* Up to `max` whole rows from the one at p, when they are windows of one run
 * that read no padding: written to d (rows `pitch` apart, gaps zeroed) and
 * their count returned; 0 if the row at p cannot start a run. */
static size_t run_rows(const struct pm__fill *f, const struct rowpos *p, size_t max, char *d)
{
	const struct pm__geom *g = &f->g;
	int last = g->nidx - 1, xa = f->line_axis;
	int64_t step = g->idx[last].inc, span = f->row_span[xa], bx = p->base[xa], nw, hi;
	size_t es = g->out_size, L = f->line_elems;
	int64_t per = f->run_per, P = f->run_phases, count, cap;
	unsigned char scratch[RUN_SCRATCH + RUN_SLACK] __attribute__((aligned(64)));

	nw = g->idx[last].extent - p->i[last];
	if ((size_t)nw > max)
		nw = (int64_t)max;
	if (nw < RUN_MIN || bx < 0 || bx + span >= g->ax[xa].n)
		return 0;
	for (int a = 0; a < g->ns; a++)
		if (a != xa && (p->base[a] < 0 || p->base[a] + f->row_span[a] >= g->ax[a].n))
			return 0;
	/* windows j with bx + j*step + span < n */
	hi = (g->ax[xa].n - 1 - span - bx) / step + 1;
	if (nw > hi)
		nw = hi;
#ifdef HAVE_AVX2_KERNELS
	/* whole periods packed from the source; the rest is a later run */
	if (f->pack_src && nw >= f->pack_rows)
		return (size_t)spack_rows(f, d, g->data + p->so, nw);
#endif
	/* scratch elements per line and phase: (nw-1)*per/P + L, within budget */
	cap = RUN_SCRATCH / (int64_t)es / f->run_lines / P;
	if (cap < (int64_t)L + RUN_MIN * ((per + P - 1) / P))
		return 0;
	if ((nw - 1) * ((per + P - 1) / P) + (int64_t)L > cap)
		nw = (cap - (int64_t)L) / ((per + P - 1) / P) + 1;
	if (nw < RUN_MIN)
		return 0;
	count = (nw - 1) * per / P + (int64_t)L;

	/* Convert each line's samples once. Phase ph holds the samples
	 * ph, ph + dil, ... of the line (all of them when dil is 1). */
	const char *row_src = g->data + p->so;
	for (int t = 0; t < f->run_lines; t++)
		for (int64_t ph = 0; ph < P; ph++) {
			char *sc = (char *)scratch + ((size_t)t * (size_t)P + (size_t)ph) * (size_t)count * es;
			int64_t c = count;

			/* the last sample of phase ph the run reads */
			if (P > 1 && (ph + (c - 1) * P) > (nw - 1) * per + (int64_t)(L - 1) * P)
				c = ((nw - 1) * per + (int64_t)(L - 1) * P - ph) / P + 1;
			if (c > 0)
				f->run_line(sc, row_src + f->run_line_off[t] + (ptrdiff_t)ph * (f->run_sstride / P),
					    (size_t)c, f->run_sstride, &f->af);
		}

	/* Rows: line t of window j is phase (j*per) mod P of line t, from
	 * element (j*per) / P on. */
#ifdef HAVE_AVX2_KERNELS
	if (f->run_moves == 64)
		copy_rows64(f, d, scratch, nw, count);
	else if (f->run_moves == 32)
		copy_rows32(f, d, scratch, nw, count);
	else
#endif
		copy_rows(f, d, scratch, nw, count);
	return (size_t)nw;
}

/* Moves p on by n rows within one run (they differ in the last index only). */
static void rowpos_skip(const struct pm__fill *f, struct rowpos *p, size_t n)
{
	const struct pm__geom *g = &f->g;
	int last = g->nidx - 1;

	p->row += n;
	p->i[last] += (int64_t)n;
	p->base[g->idx[last].axis] += (int64_t)n * g->idx[last].inc;
	p->so += (ptrdiff_t)n * f->idx_stride[last];
}

/* Index and mask selections: stored rows are windows in any order, so the
 * source lines of each row are cache misses. Whole rows go in batches of
 * SEL_BATCH: the source addresses of the next batch are found first, and
 * while a row of this batch is written the lines of the row SEL_BATCH on
 * are requested, so that the misses of many rows overlap. (A plain gather
 * loop that requests nothing ahead is about as fast: the misses bound
 * both.) */
#define SEL_BATCH 16

/* The first source sample of each of stored rows [r, r + n) into s, or
 * NULL for a row that reads padding (or whose samples do not merge into
 * lines): that row takes the general path. */
static void sel_prepare(const struct pm__fill *f, size_t r, size_t n, const char **s)
{
	struct rowpos q;

	for (size_t j = 0; j < n; j++) {
		rowpos_set(f, &q, r + j);
		s[j] = f->merged && row_interior(f, &q) ? f->g.data + q.so : NULL;
	}
}

/* Requests the lines of the row whose first sample is s (NULL: none); of
 * each line its bytes from the first sample on (just that sample for a line
 * that runs backwards), at most 4 cache lines of them. */
static inline void sel_prefetch(const struct pm__fill *f, const char *s, size_t span)
{
	if (!s)
		return;
	for (size_t l = 0; l < f->block_lines; l++) {
		const char *a = s + (ptrdiff_t)l * f->block_step;

		for (size_t o = 0; o < span && o < 256; o += 64)
			__builtin_prefetch(a + o);
		__builtin_prefetch(a + span - 1);
	}
}

/* Whole stored rows [r, r + n) of an index or mask selection, to d. */
static void sel_rows(const struct pm__fill *f, size_t r, size_t n, char *d)
{
	const struct pm__geom *g = &f->g;
	const char *src[2][SEL_BATCH];
	size_t span = f->el_stride > 0 ?
		(f->line_elems - 1) * (size_t)f->el_stride + g->in_size : 1;
	size_t k = n < SEL_BATCH ? n : SEL_BATCH;
	int cur = 0;

	sel_prepare(f, r, k, src[0]);
	for (size_t j = 0; j < k; j++)
		sel_prefetch(f, src[0][j], span);
	for (size_t i = 0; i < n;) {
		size_t left = n - i - k, next = left < SEL_BATCH ? left : SEL_BATCH;

		sel_prepare(f, r + i + k, next, src[!cur]);
		for (size_t j = 0; j < k; j++, d += g->pitch) {
			if (j < next)
				sel_prefetch(f, src[!cur][j], span);
			if (src[cur][j]) {
				row_fast(f, src[cur][j], d);
				if (g->pitch > g->row_bytes)
					memset(d + g->row_bytes, 0, g->pitch - g->row_bytes);
			} else {
				struct rowpos p;

				rowpos_set(f, &p, r + i + j);
				row_bytes(f, &p, 0, g->pitch, d);
			}
		}
		i += k;
		k = next;
		cur = !cur;
	}
}

void pm__fill(const struct pm__fill *f, size_t off, void *dst, size_t len)
{
	const struct pm__geom *g = &f->g;
	char *d = dst;
	size_t b = off % g->pitch;
	struct rowpos p;

	if (!len)
		return;
	rowpos_set(f, &p, off / g->pitch);
	for (;;) {
		size_t take = len < g->pitch - b ? len : g->pitch - b;

		/* an index or mask selection: consecutive rows need not be
		 * consecutive windows */
		if (f->runs && !g->sel && b == 0 && len >= RUN_MIN * g->pitch) {
			size_t n = run_rows(f, &p, len / g->pitch, d);

			if (n) {
				d += n * g->pitch;
				len -= n * g->pitch;
				rowpos_skip(f, &p, n);
				if (p.i[g->nidx - 1] == g->idx[g->nidx - 1].extent) {
					/* the run ended the last index: step back one and let
					 * rowpos_next carry into the outer indices */
					rowpos_skip(f, &p, (size_t)-1);
					rowpos_next(f, &p);
				}
				continue;
			}
		}

		if (g->sel && b == 0 && len >= 2 * g->pitch) {
			size_t n = len / g->pitch;

			sel_rows(f, p.row, n, d);
			d += n * g->pitch;
			len -= n * g->pitch;
			if (!len)
				return;
			rowpos_set(f, &p, p.row + n);
			continue;
		}
		row_bytes(f, &p, b, take, d);
		d += take;
		len -= take;
		if (!len)
			return;
		b = 0;
		rowpos_next(f, &p);
	}
}
