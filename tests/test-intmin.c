/* test-intmin.c: pm_strerror() and pm_error_errno() take any int, INT_MIN
 * included, whose negation would overflow (UBSan stopped there); the errno
 * promised is positive. */
#include <CUnit/Basic.h>
#include <limits.h>

#include "helpers.h"

static void test_intmin(void)
{
	const char *s = pm_strerror(INT_MIN);

	CU_ASSERT_PTR_NOT_NULL(s);
	CU_ASSERT(pm_error_errno(INT_MIN) > 0);
}

int main(void)
{
	unsigned failed;
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("names", NULL, NULL);
	if (!s || !CU_add_test(s, "pm_strerror and pm_error_errno of INT_MIN", test_intmin)) {
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
