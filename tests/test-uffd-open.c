/* test-uffd-open.c: the first faults on a fresh uffd matrix, read
 * sequentially so that read-ahead runs at once. The backend's poller thread
 * used to start before the core created the queues it pushes to; a plain
 * build could not tell, ThreadSanitizer reported the race. Run under TSan
 * (suite 'concurrency'). */
#include <CUnit/Basic.h>
#include <errno.h>

#include "helpers.h"

static void test_first_fault(void)
{
	static unsigned char img[64 * 64];
	const size_t shape[2] = { 64, 64 };
	struct pm_matrix_opts o = { .size = sizeof(o) };
	pm_matrix *m;
	int ret;

	for (size_t i = 0; i < sizeof(img); i++)
		img[i] = (unsigned char)i;
	CU_ASSERT_EQUAL_FATAL(pm_source_contiguous(&o.source, img, PM_DTYPE_U8, 2, shape), 0);
	o.window[0] = o.window[1] = (struct pm_window){ .size = 8, .step = 1, .dilation = 1 };
	o.lazy.backend = PM_BACKEND_UFFD;
	o.lazy.chunk = 4096;
	o.lazy.budget = 8 * 4096;
	ret = pm_matrix_open(&o, &m);
	if (ret == -EPERM || ret == -ENOSYS) {
		fprintf(stderr, "userfaultfd unavailable: %s\n", pm_strerror(ret));
		return;
	}
	CU_ASSERT_EQUAL_FATAL(ret, 0);
	{
		/* Row r (64 columns) is the window at (r / 57, r % 57); its first
		 * column, that window's top-left sample. */
		const unsigned char *p = pm_matrix_data(m);
		size_t r = 0;

		size_t bad = 0;

		/* A sequential scan: the second fault takes the read-ahead path. */
		for (size_t c = 0; c < 8; c++, r += 4096 / 64)
			bad += p[r * 64] != img[r / 57 * 64 + r % 57];
		CU_ASSERT_EQUAL(bad, 0);
	}
	CU_ASSERT_EQUAL(pm_matrix_close(m), 0);
}

int main(void)
{
	static const struct t_test tests[] = {
		{ "first fault after open", test_first_fault },
	};

	return t_run("uffd-open", tests, T_COUNT(tests), NULL);
}
