/* memory.h: the memory this process may still take (lib/memory.c), and the
 * budget rule built on it, shared by the region's open and the front ends'
 * check (pm_spec_check_memory). */
#ifndef PM_MEMORY_H
#define PM_MEMORY_H

#include "patchmap.h"

/* Fills the whole of *m (m->size included) from the files under `root`
 * ("" or NULL: the real /proc and /sys; a directory: a copy of them, for
 * tests). Returns 0. */
int pm__memory_read(const char *root, struct pm_memory *m);

/* The default budget where *m holds: PM_DEFAULT_BUDGET, lowered to
 * 1/PM_DEFAULT_BUDGET_SHARE of the memory available when that is less. */
static inline size_t pm__default_budget(const struct pm_memory *m)
{
	uint64_t share = m->available / PM_DEFAULT_BUDGET_SHARE;

	if (share >= PM_DEFAULT_BUDGET)
		return PM_DEFAULT_BUDGET;
	return (size_t)share;
}

/* The most bytes a buffer of `length` bytes keeps resident: the whole of it
 * in chunks if it is not lazy or its budget is unlimited, else its budget
 * (in force: not 0) in whole chunks, two at least, at most the whole. */
static inline uint64_t pm__resident_bound(size_t length, size_t chunk, bool lazy, size_t budget)
{
	uint64_t span = ((uint64_t)length / chunk + (length % chunk != 0)) * chunk;
	uint64_t b;

	if (!lazy || budget == PM_BUDGET_UNLIMITED)
		return span;
	b = budget / chunk < 2 ? 2 * (uint64_t)chunk : (uint64_t)(budget / chunk) * chunk;
	return b < span ? b : span;
}

#endif /* PM_MEMORY_H */
