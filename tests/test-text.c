/* test-text.c: sizes and shapes in words, as the front ends' core spells
 * them (lib/text.c compiled into it): the same words as the library's own
 * messages, up to PiB. */
#include <CUnit/Basic.h>
#include <stdint.h>

#include "helpers.h"
#include "text.h"

static void test_exact_sizes(void)
{
	char b[32];

	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), 4097), "4097 bytes");
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), 4096), "4 KiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), (size_t)256 << 20), "256 MiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), (size_t)3 << 40), "3 TiB");
	/* the library's messages say PiB: so do the front ends */
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), (size_t)1 << 50), "1 PiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), (size_t)1 << 60), "1024 PiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_size(b, sizeof(b), PM_BUDGET_UNLIMITED), "unlimited");
}

static void test_approximate_sizes(void)
{
	char b[32];

	CU_ASSERT_STRING_EQUAL(pm__fmt_bytes(b, sizeof(b), 812), "812 bytes");
	CU_ASSERT_STRING_EQUAL(pm__fmt_bytes(b, sizeof(b), 1.5 * (1 << 30)), "1.50 GiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_bytes(b, sizeof(b), 50.0 * (1 << 20)), "50.0 MiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_bytes(b, sizeof(b), 812.0 * 1024), "812 KiB");
	CU_ASSERT_STRING_EQUAL(pm__fmt_bytes(b, sizeof(b), 2.0 * (1ULL << 50)), "2.00 PiB");
}

static void test_dims(void)
{
	size_t v[3] = { 16, 8, 3 };
	char b[32], tiny[6];

	CU_ASSERT_STRING_EQUAL(pm__fmt_dims(b, sizeof(b), v, 3), "16x8x3");
	CU_ASSERT_STRING_EQUAL(pm__fmt_dims(b, sizeof(b), v, 1), "16");
	/* cut short, never past the buffer */
	CU_ASSERT_STRING_EQUAL(pm__fmt_dims(tiny, sizeof(tiny), v, 3), "16x8x");
}

/* The library's message names the same size in the same words. */
static void test_library_agrees(void)
{
	pm_spec *s = NULL;
	struct pm_matrix_info info = { 0 };
	char b[32], want[128];

	CU_ASSERT_EQUAL_FATAL(pm_spec_new(&s), 0);
	/* the largest chunk: 64 TiB */
	CU_ASSERT_EQUAL(pm_spec_set(s, "budget", "64T"), 0);
	CU_ASSERT_EQUAL(pm_spec_set(s, "chunk", "64T"), 0);
	info.bytes = 4096;
	info.elem_size = 1;
	CU_ASSERT_EQUAL(pm_spec_check_memory(s, &info), -PM_EBUDGET);
	snprintf(want, sizeof(want), "budget: %s is too small", pm__fmt_size(b, sizeof(b), (size_t)1 << 46));
	CU_ASSERT_PTR_NOT_NULL(strstr(pm_spec_error(s), want));
	pm_spec_free(s);
}

int main(int argc, char **argv)
{
	static const struct t_test tests[] = {
		{ "exact sizes", test_exact_sizes },
		{ "approximate sizes", test_approximate_sizes },
		{ "dims", test_dims },
		{ "the library's messages agree", test_library_agrees },
	};

	return t_run("text", tests, T_COUNT(tests), argc > 1 ? argv[1] : NULL);
}
