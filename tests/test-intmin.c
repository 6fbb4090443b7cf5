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
	static const struct t_test tests[] = {
		{ "pm_strerror and pm_error_errno of INT_MIN", test_intmin },
	};

	return t_run("names", tests, T_COUNT(tests), NULL);
}
