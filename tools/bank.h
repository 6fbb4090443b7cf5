/* bank.h: a float32 filter bank, C = F X^T, for `patchmap apply`.
 *
 * A few filters (N, tens) over many rows of windows (K columns each) is a
 * GEMM whose small side a general BLAS packs and repacks for every call.
 * The kernels here keep a panel of 16 filters (K x 16, transposed once at
 * bank_init) and multiply 16 rows (AVX-512) or 8 (AVX2) by it in registers,
 * reading each row once per panel.
 *
 * Every response the kernels write is one fused multiply-add chain from
 * zero in column order: fmaf(X[r][K-1], F[f][K-1], ... fmaf(X[r][0],
 * F[f][0], 0)), a NaN written as the quiet NaN 0x7fc00000. So the AVX2
 * and AVX-512 kernels give the same bytes, whatever the rows' blocking,
 * thread count, CPU or compiler; BLAS (the fallback, and
 * PATCHMAP_APPLY_KERNEL=blas) sums in its own order, within rounding. */
#ifndef PATCHMAP_BANK_H
#define PATCHMAP_BANK_H

#include <stddef.h>

enum bank_kernel { BANK_AUTO, BANK_BLAS, BANK_AVX2, BANK_AVX512 };

struct bank {
	int kernel;        /* enum bank_kernel, never BANK_AUTO after init */
	size_t N, K;
	const float *F;    /* N x K, row-major: borrowed, for BLAS */
	float *panels;     /* ceil(N / 16) panels of K x 16, zero-padded */
};

/* Prepare F (N x K, kept by the caller until bank_free) for `kernel`;
 * BANK_AUTO takes AVX-512 for more than 8 filters, else AVX2, where the
 * CPU has them, else BLAS. 0, -ENOTSUP (the CPU lacks the
 * kernel asked for), -EINVAL (N or K zero or above INT_MAX) or -ENOMEM. */
int bank_init(struct bank *b, const float *F, size_t N, size_t K, int kernel);

/* C[f * ldc + r] = F[f] . X[r] for every filter f < N and row r < n; X's
 * rows are K floats at a stride of ldx >= K; ldc >= n, both below INT_MAX.
 * Thread-safe on one bank. The BLAS kernel runs OpenBLAS's threads as set. */
void bank_apply(const struct bank *b, const float *X, size_t ldx, size_t n, float *C,
		size_t ldc);

void bank_free(struct bank *b);

/* "blas", "avx2" or "avx512"; and back: BANK_AUTO for NULL, -1 for a name
 * not a kernel. */
const char *bank_kernel_name(int kernel);
int bank_kernel_parse(const char *name);

#endif
