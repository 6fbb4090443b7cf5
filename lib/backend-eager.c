/* backend-eager.c: the whole buffer computed at open into ordinary memory,
 * then made read-only. The reference the lazy backends are measured
 * against, and the choice for small buffers. */
#include <string.h>

#include "backend.h"
#include "sys.h"

static int eager_probe(bool for_auto)
{
	(void)for_auto;
	return 0;
}

static int eager_open(struct pm_region *r)
{
	uint64_t t0 = pm__now_ns();
	int err = 0;

	r->base = pm__reserve(r->span, PM__THP_SIZE, PROT_READ | PROT_WRITE);
	if (!r->base)
		return -ENOMEM;
	/* Fresh 4 KiB pages are the slow part of materializing: ask for huge
	 * ones (a hint; the kernel may say no). */
	pm__madvise(r->base, r->span, MADV_HUGEPAGE);
	for (size_t c = 0; c < r->nchunks && !err; c++) {
		size_t off = c * r->chunk, len = r->length - off < r->chunk ? r->length - off : r->chunk;

		err = r->fill(r->ctx, off, r->base + off, len);
	}
	if (!err)
		err = pm__mprotect(r->base, r->span, PROT_READ);
	if (err) {
		pm__munmap(r->base, r->span);
		r->base = NULL;
		return err < 0 ? err : -EIO;
	}
	r->nslots = r->nchunks;
	atomic_store(&r->chunks_filled, r->nchunks);
	atomic_store(&r->bytes_filled, r->length);
	atomic_store(&r->resident, r->span);
	atomic_store(&r->peak_resident, r->span);
	atomic_store(&r->fill_ns, pm__now_ns() - t0);
	return 0;
}

static void eager_close(struct pm_region *r)
{
	if (r->base)
		pm__munmap(r->base, r->span);
}

const struct pm__backend_ops pm__backend_eager = {
	.id = PM_BACKEND_EAGER,
	.probe = eager_probe,
	.open = eager_open,
	.close = eager_close,
};
