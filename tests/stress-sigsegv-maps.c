/* stress-sigsegv-maps.c: the SIGSEGV backend must keep its mapping count
 * bounded by its budget, whatever the access order. Found by bench-faults
 * (small chunks, random order): every chunk ever evicted used to stay a
 * mapping of its own, so after about 32k distinct chunks the process reached
 * vm.max_map_count, mremap failed with ENOMEM and the reader got SIGBUS. */
#include <CUnit/Basic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define CHUNK ((size_t)4096)
#define BUDGET ((size_t)16 << 20)

static int fill(void *ctx, size_t off, void *dst, size_t len)
{
	uint64_t *d = dst;

	(void)ctx;
	for (size_t i = 0; i < len / 8; i++)
		d[i] = off / 8 + i;
	return 0;
}

static size_t count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	size_t n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Chunks 0..n-1 in a fixed pseudo-random order. */
static size_t *shuffled(size_t n)
{
	size_t *p = malloc(n * sizeof(*p));
	uint64_t x = 88172645463325252ull;

	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++)
		p[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (size_t)(x % (i + 1));
		t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static pm_region *open_region(size_t nchunks, int readahead)
{
	struct pm_region_opts o = { .size = sizeof(o), .length = nchunks * CHUNK, .fill = fill };
	pm_region *r = NULL;

	o.lazy.backend = PM_BACKEND_SIGSEGV;
	o.lazy.chunk = CHUNK;
	o.lazy.budget = BUDGET;
	o.lazy.readahead = readahead;
	CU_ASSERT_EQUAL_FATAL(pm_region_open(&o, &r), 0);
	return r;
}

/* Reads one word of each chunk in `order`, counting them in *done if not
 * NULL; returns how many were wrong. */
static size_t touch(const pm_region *r, const size_t *order, size_t n, volatile size_t *done)
{
	const volatile uint64_t *p = pm_region_data(r);
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		bad += p[order[i] * (CHUNK / 8)] != order[i] * (CHUNK / 8);
		if (done)
			*done = i + 1;
	}
	return bad;
}

/* After touching 4x the budget's chunks in random order, the region adds at
 * most about two mappings per resident chunk. */
static void test_maps_bounded(void)
{
	size_t slots = BUDGET / CHUNK, n = 4 * slots, before, after;
	size_t *order = shuffled(n);
	pm_region *r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(order);
	r = open_region(n, -1);
	before = count_maps();
	CU_ASSERT_EQUAL(touch(r, order, n, NULL), 0);
	after = count_maps();
	printf("\n  mappings: %zu before, %zu after %zu random touches (%zu slots)\n", before,
	       after, n, slots);
	CU_ASSERT(after <= before + 2 * slots + 64);
	CU_ASSERT_EQUAL(pm_region_close(r), 0);
	free(order);
}

/* The symptoms: 70000 distinct chunks in random order. Once the mapping
 * count reaches the limit, eviction fails (ENOMEM): without read-ahead the
 * reader then waits forever inside the SIGSEGV handler, with every signal
 * but SIGKILL blocked; with read-ahead it gets SIGBUS. Run in a child,
 * killed once it has touched no chunk for a minute, so that the suite
 * survives both (the whole run takes 10 s alone, minutes on a busy machine
 * under a sanitizer). */
static void many_chunks(int readahead)
{
	size_t n = 70000, *order = shuffled(n), seen = 0;
	volatile size_t *done = mmap(NULL, sizeof(*done), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int status = 0, still = 0;
	pid_t pid, got;

	CU_ASSERT_PTR_NOT_NULL_FATAL(order);
	CU_ASSERT_FATAL(done != MAP_FAILED);
	*done = 0;
	fflush(stdout);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		pm_region *r = open_region(n, readahead);
		size_t bad = touch(r, order, n, done);

		_exit(bad == 0 && pm_region_close(r) == 0 ? 0 : 3);
	}
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 && still < 600) {
		usleep(100000);
		still = *done == seen ? still + 1 : 0;
		seen = *done;
	}
	if (got == 0) {
		printf("\n  the reader hung: no chunk touched for %d s, %zu of %zu done\n", still / 10, seen, n);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CU_FAIL("the reader hung");
	} else if (WIFSIGNALED(status)) {
		printf("\n  the reader died of signal %d\n", WTERMSIG(status));
	}
	CU_ASSERT(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	munmap((void *)done, sizeof(*done));
	free(order);
}

static void test_many_chunks(void)
{
	many_chunks(-1);
}

static void test_many_chunks_ahead(void)
{
	many_chunks(0);
}

int main(void)
{
	static const struct t_test tests[] = {
		{ "mappings bounded by the budget", test_maps_bounded },
		{ "70000 random chunks", test_many_chunks },
		{ "70000 random chunks, read-ahead on", test_many_chunks_ahead },
	};

	return t_run("sigsegv-maps", tests, T_COUNT(tests), NULL);
}
