/* test-bank.c: the filter-bank kernels of `patchmap apply` (tools/bank.c)
 * against a plain loop written here: each response a fused multiply-add
 * chain from zero in column order, a NaN as the quiet NaN 0x7fc00000,
 * compared bit for bit, over
 * a grid of filter counts, window sizes, row counts and strides; BLAS
 * against the sums in double within float rounding. Rows are allocated to
 * their last element and responses surrounded by a guard, so that a read
 * or a write outside them shows (under ASan, or in the guard). */
#include <CUnit/Basic.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "../tools/bank.h"
#include "helpers.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Values of several magnitudes and signs; `special` adds -0, infinities
 * and NaNs of both signs and other payloads (whichever an FMA passes on,
 * the kernels write one NaN). */
static float value(bool special)
{
	uint64_t r = t_rnd(&rng);

	if (special && r % 16 == 0) {
		static const uint32_t u[] = { 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
					      0xffc00000, 0x7fc12345, 0xffe00001 };

		return bits(u[(r >> 8) % (sizeof(u) / sizeof(u[0]))]);
	}
	return (float)((int64_t)(r >> 40) - (1 << 23)) * ldexpf(1.0f, (int)((r >> 4) % 24) - 30);
}

static const int kernels[] = { BANK_BLAS, BANK_AVX2, BANK_AVX512 };
static unsigned long ncases, nskipped;

static bool same(float a, float b)
{
	return !memcmp(&a, &b, sizeof(a));
}

/* One case, on every kernel the CPU has. */
static void check(size_t N, size_t K, size_t n, size_t ldx, size_t ldc, bool special)
{
	const float guard = -1234.5f;
	size_t xlen = (n - 1) * ldx + K, clen = (N - 1) * ldc + n + 16;
	float *F = malloc(N * K * sizeof(float)), *X = malloc(xlen * sizeof(float));
	float *want = malloc(N * n * sizeof(float)), *C = malloc(clen * sizeof(float));
	double *exact = malloc(N * n * sizeof(double)), *mag = malloc(N * n * sizeof(double));

	CU_ASSERT_FATAL(F && X && want && C && exact && mag);
	for (size_t i = 0; i < N * K; i++)
		F[i] = value(special);
	for (size_t i = 0; i < xlen; i++)
		X[i] = value(special);
	for (size_t f = 0; f < N; f++)
		for (size_t r = 0; r < n; r++) {
			float s = 0.0f;
			double e = 0, m = 0;

			for (size_t k = 0; k < K; k++) {
				s = fmaf(X[r * ldx + k], F[f * K + k], s);
				e += (double)X[r * ldx + k] * F[f * K + k];
				m += fabs((double)X[r * ldx + k] * F[f * K + k]);
			}
			want[f * n + r] = isnan(s) ? bits(0x7fc00000) : s;
			exact[f * n + r] = e;
			mag[f * n + r] = m;
		}
	for (size_t i = 0; i < T_COUNT(kernels); i++) {
		struct bank b;
		int e = bank_init(&b, F, N, K, kernels[i]);
		size_t bad = 0;

		if (e == -ENOTSUP) {
			nskipped++;
			continue;
		}
		CU_ASSERT_EQUAL_FATAL(e, 0);
		CU_ASSERT_EQUAL(b.kernel, kernels[i]);
		for (size_t j = 0; j < clen; j++)
			C[j] = guard;
		bank_apply(&b, X, ldx, n, C, ldc);
		for (size_t f = 0; f < N; f++) {
			for (size_t r = 0; r < n; r++) {
				float got = C[f * ldc + r], w = want[f * n + r];

				if (kernels[i] != BANK_BLAS)
					bad += !same(got, w);
				else if (special)
					bad += isnan(got) != isnan(w);
				else
					bad += fabs(got - exact[f * n + r]) >
					       (double)K * FLT_EPSILON * mag[f * n + r] + 1e-30;
			}
			for (size_t r = n; r < (f + 1 < N ? ldc : n + 16); r++)
				bad += C[f * ldc + r] != guard;
		}
		if (bad)
			printf("\n%s: N %zu K %zu n %zu ldx %zu ldc %zu%s: %zu wrong\n",
			       bank_kernel_name(kernels[i]), N, K, n, ldx, ldc,
			       special ? " (-0, inf, NaN)" : "", bad);
		CU_ASSERT_EQUAL(bad, 0);
		bank_free(&b);
		ncases++;
	}
	free(F);
	free(X);
	free(want);
	free(C);
	free(exact);
	free(mag);
}

static void test_grid(void)
{
	static const size_t Ns[] = { 1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40 };
	static const size_t Ks[] = { 1, 2, 3, 9, 16, 27, 49, 256, 300 };
	static const size_t ns[] = { 1, 5, 7, 8, 9, 15, 16, 17, 24, 31, 33, 100 };

	for (size_t a = 0; a < T_COUNT(Ns); a++)
		for (size_t c = 0; c < T_COUNT(Ks); c++)
			for (size_t d = 0; d < T_COUNT(ns); d++) {
				check(Ns[a], Ks[c], ns[d], Ks[c], ns[d], false);
				check(Ns[a], Ks[c], ns[d], Ks[c] + 3, ns[d] + 5, false);
			}
}

static void test_special(void)
{
	for (size_t n = 1; n < 40; n += 6)
		for (size_t K = 1; K < 30; K += 7) {
			check(19, K, n, K + 1, n + 2, true);
			check(5, K, n, K, n, true);
		}
}

/* The AVX kernels agree with each other on a large case too: the same
 * bytes whatever the CPU, within the chain's definition. */
static void test_large(void)
{
	check(64, 1024, 300, 1030, 301, false);
	check(3, 4096, 70, 4096, 70, false);
}

static void test_names_and_errors(void)
{
	static const float F[4] = { 1, 2, 3, 4 };
	struct bank b;

	CU_ASSERT_EQUAL(bank_kernel_parse(NULL), BANK_AUTO);
	for (int k = BANK_BLAS; k <= BANK_AVX512; k++)
		CU_ASSERT_EQUAL(bank_kernel_parse(bank_kernel_name(k)), k);
	CU_ASSERT_EQUAL(bank_kernel_parse("sse"), -1);
	CU_ASSERT_EQUAL(bank_kernel_parse(""), -1);
	CU_ASSERT_EQUAL(bank_init(&b, F, 0, 4, BANK_AUTO), -EINVAL);
	CU_ASSERT_EQUAL(bank_init(&b, F, 1, 0, BANK_AUTO), -EINVAL);
	CU_ASSERT_EQUAL(bank_init(&b, F, (size_t)1 << 31, 4, BANK_AUTO), -EINVAL);
	CU_ASSERT_EQUAL_FATAL(bank_init(&b, F, 1, 4, BANK_AUTO), 0);
	CU_ASSERT(b.kernel != BANK_AUTO);
	printf("\nfastest kernel here: %s\n", bank_kernel_name(b.kernel));
	bank_free(&b);
}

int main(void)
{
	static const struct t_test tests[] = {
		{ "bank kernels against the plain chain: grid", test_grid },
		{ "bank kernels on -0, infinities and NaN", test_special },
		{ "bank kernels on large windows", test_large },
		{ "bank kernel names and errors", test_names_and_errors },
	};
	int ret = t_run("bank", tests, T_COUNT(tests), NULL);

	printf("%lu kernel cases checked, %lu skipped (kernel not on this CPU)\n", ncases,
	       nskipped);
	return ret;
}
