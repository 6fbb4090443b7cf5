/* bank.c: the float32 filter-bank kernels of bank.h. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bank.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BANK_X86 1
#include <immintrin.h>
#define AVX512_FN __attribute__((target("avx512f"))) static
#define AVX2_FN __attribute__((target("avx2,fma"))) static
#endif

static const char *const names[] = { [BANK_BLAS] = "blas", [BANK_AVX2] = "avx2",
				     [BANK_AVX512] = "avx512" };

const char *bank_kernel_name(int kernel)
{
	return kernel > BANK_AUTO && kernel <= BANK_AVX512 ? names[kernel] : "auto";
}

int bank_kernel_parse(const char *name)
{
	if (!name)
		return BANK_AUTO;
	for (int k = BANK_BLAS; k <= BANK_AVX512; k++)
		if (!strcmp(name, names[k]))
			return k;
	return -1;
}

static bool has_kernel(int kernel)
{
#ifdef BANK_X86
	if (kernel == BANK_AVX512)
		return __builtin_cpu_supports("avx512f");
	if (kernel == BANK_AVX2)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
	return kernel == BANK_BLAS;
}

int bank_init(struct bank *b, const float *F, size_t N, size_t K, int kernel)
{
	size_t np = (N + 15) / 16, bytes;

	memset(b, 0, sizeof(*b));
	if (!N || !K || N > INT_MAX || K > INT_MAX)
		return -EINVAL;
	/* Measured (patchmap apply, one thread): AVX2 is the faster up to 8
	 * filters (16 x 16 windows, 8 filters: 0.150 s against 0.164), where
	 * AVX-512's 16-row blocks fill half their lanes */
	if (kernel == BANK_AUTO)
		kernel = has_kernel(BANK_AVX512) && (N > 8 || !has_kernel(BANK_AVX2)) ? BANK_AVX512 :
			 has_kernel(BANK_AVX2) ? BANK_AVX2 : BANK_BLAS;
	if (!has_kernel(kernel))
		return -ENOTSUP;
	*b = (struct bank){ .kernel = kernel, .N = N, .K = K, .F = F };
	if (kernel == BANK_BLAS)
		return 0;
	/* panel p: P[k * 16 + j] = F[16p + j][k], zero past the last filter */
	if (__builtin_mul_overflow(np * 16 * sizeof(float), K, &bytes) ||
	    !(b->panels = aligned_alloc(64, bytes)))
		return -ENOMEM;
	for (size_t p = 0; p < np; p++)
		for (size_t k = 0; k < K; k++)
			for (size_t j = 0; j < 16; j++)
				b->panels[(p * K + k) * 16 + j] = 16 * p + j < N ? F[(16 * p + j) * K + k] : 0.0f;
	return 0;
}

void bank_free(struct bank *b)
{
	free(b->panels);
	b->panels = NULL;
}

#ifdef BANK_X86
/* NaN responses as the one quiet NaN: which operand's NaN an FMA passes on
 * depends on the instruction form the compiler picked. */
#define QNAN 0x7fc00000

AVX512_FN inline __m512 nan512(__m512 v)
{
	return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
				  _mm512_castsi512_ps(_mm512_set1_epi32(QNAN)));
}

AVX2_FN inline __m256 nan256(__m256 v)
{
	return _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(QNAN)),
				_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

/* A kernel's block: R rows of x (ldx apart) by the nf <= W filters of
 * panel P (a row of 16 floats per column), responses to C (ldc apart);
 * and one row by the same filters, in the same order, for fewer rows. */
typedef void block_fn(const float *x, size_t ldx, size_t K, const float *P, float *C,
		      size_t ldc, size_t nf);
typedef void row_fn(const float *x, size_t K, const float *P, float *C, size_t ldc,
		    size_t nf);

/* 16 rows x the nf <= 16 filters of panel P: a[i] holds row i's responses
 * to the panel's 16 filters; transposed in registers (within 128-bit
 * lanes, then across them) into one vector of 16 rows per filter. */
AVX512_FN void block512(const float *x, size_t ldx, size_t K, const float *P, float *C,
			       size_t ldc, size_t nf)
{
	__m512 a[16], t[16], u[16], o[16];

	for (int i = 0; i < 16; i++)
		a[i] = _mm512_setzero_ps();
	for (size_t k = 0; k < K; k++) {
		__m512 f = _mm512_load_ps(P + 16 * k);

#pragma GCC unroll 16
		for (int i = 0; i < 16; i++)
			a[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + k]), f, a[i]);
	}
	/* t[4g..4g+3], each 128-bit lane L: rows 4g..4g+3 interleaved by pairs */
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(a[i], a[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(a[i], a[i + 1]);
	}
	/* u[4g + c], lane L: rows 4g..4g+3 of filter 4L + c */
	for (int g = 0; g < 16; g += 4) {
		u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
		u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
		u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
		u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
	}
	/* o[f]: lane L of u[c], u[4 + c], u[8 + c], u[12 + c] for f = 4L + c */
	for (int c = 0; c < 4; c++) {
		__m512 v = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
		__m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
		__m512 w = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
		__m512 w2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);

		o[c] = _mm512_shuffle_f32x4(v, v2, 0x88);
		o[8 + c] = _mm512_shuffle_f32x4(v, v2, 0xDD);
		o[4 + c] = _mm512_shuffle_f32x4(w, w2, 0x88);
		o[12 + c] = _mm512_shuffle_f32x4(w, w2, 0xDD);
	}
	for (size_t f = 0; f < nf; f++)
		_mm512_storeu_ps(C + f * ldc, nan512(o[f]));
}

AVX512_FN void row512(const float *x, size_t K, const float *P, float *C, size_t ldc, size_t nf)
{
	__m512 a = _mm512_setzero_ps();
	float o[16];

	for (size_t k = 0; k < K; k++)
		a = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), _mm512_load_ps(P + 16 * k), a);
	_mm512_storeu_ps(o, nan512(a));
	for (size_t f = 0; f < nf; f++)
		C[f * ldc] = o[f];
}

/* 8 rows x the nf <= 8 filters of half a panel (a stride of 16): an 8 x 8
 * transpose as for AVX-512, the last step across the two 128-bit lanes. */
AVX2_FN void block256(const float *x, size_t ldx, size_t K, const float *P, float *C,
			     size_t ldc, size_t nf)
{
	__m256 a[8], t[8], u[8], o[8];

	for (int i = 0; i < 8; i++)
		a[i] = _mm256_setzero_ps();
	for (size_t k = 0; k < K; k++) {
		__m256 f = _mm256_load_ps(P + 16 * k);

#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			a[i] = _mm256_fmadd_ps(_mm256_set1_ps(x[i * ldx + k]), f, a[i]);
	}
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_ps(a[i], a[i + 1]);
		t[i + 1] = _mm256_unpackhi_ps(a[i], a[i + 1]);
	}
	for (int g = 0; g < 8; g += 4) {
		u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
		u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
		u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
		u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
	}
	for (int c = 0; c < 4; c++) {
		o[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
		o[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
	}
	for (size_t f = 0; f < nf; f++)
		_mm256_storeu_ps(C + f * ldc, nan256(o[f]));
}

AVX2_FN void row256(const float *x, size_t K, const float *P, float *C, size_t ldc, size_t nf)
{
	__m256 a = _mm256_setzero_ps();
	float o[8];

	for (size_t k = 0; k < K; k++)
		a = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_load_ps(P + 16 * k), a);
	_mm256_storeu_ps(o, nan256(a));
	for (size_t f = 0; f < nf; f++)
		C[f * ldc] = o[f];
}

/* Blocks of R rows by W filters (16 or 8: a panel or half of one), each
 * block of rows against every filter while it is in the L1 cache; the last
 * block of rows ends at row n, overlapping the one before it, whose
 * responses it writes again with the same values. Fewer than R rows go one
 * at a time. */
static void apply_blocks(const struct bank *b, const float *X, size_t ldx, size_t n, float *C,
			 size_t ldc, size_t R, size_t W, block_fn *block, row_fn *row)
{
	for (size_t r = 0; r < n; r += n < R ? 1 : R) {
		size_t r0 = n < R || r + R <= n ? r : n - R;

		for (size_t p = 0; p < b->N; p += W) {
			const float *P = b->panels + (p & ~(size_t)15) * b->K + (p & 15);
			size_t nf = b->N - p < W ? b->N - p : W;

			if (n < R)
				row(X + r0 * ldx, b->K, P, C + p * ldc + r0, ldc, nf);
			else
				block(X + r0 * ldx, ldx, b->K, P, C + p * ldc + r0, ldc, nf);
		}
	}
}
#endif

void bank_apply(const struct bank *b, const float *X, size_t ldx, size_t n, float *C,
		size_t ldc)
{
	if (!n)
		return;
	if (b->kernel == BANK_BLAS) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b->N, (int)n, (int)b->K,
			    1.0f, b->F, (int)b->K, X, (int)ldx, 0.0f, C, (int)ldc);
		return;
	}
#ifdef BANK_X86
	if (b->kernel == BANK_AVX512)
		apply_blocks(b, X, ldx, n, C, ldc, 16, 16, block512, row512);
	else
		apply_blocks(b, X, ldx, n, C, ldc, 8, 8, block256, row256);
#endif
}
