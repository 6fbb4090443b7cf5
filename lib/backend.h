/* backend.h: what a backend provides to the region core.
 *
 * A lazy backend reserves the range and the pool, delivers faults to
 * pm__fault() from its front-end (a thread, or a signal handler), and moves
 * pages: map_in makes filled pool slots appear at chunks, map_out moves
 * chunks' pages back to slots. Both move whole chunks, n contiguous chunks
 * to or from n contiguous slots in one go (one system call where the kernel
 * allows, so that one TLB flush covers them all); afterwards the source
 * range is still reserved but empty, and reads of an empty chunk fault again.
 * A failed map_in or map_out moved nothing: every chunk is where it was.
 * A chunk is moved by one thread at a time (the owner of its transitional
 * state), so these need no locking of their own. map_in and poison are also
 * called from the front-end: they must be async-signal-safe. The eager
 * backend does everything in open and leaves the rest NULL. Backends reach
 * the kernel through sys.h only. */
#ifndef PM_BACKEND_H
#define PM_BACKEND_H

#include "region.h"

#define PM__MAX_DROP 8

struct pm__backend_ops {
	int id;
	/* Faults, fillers and a pool (else everything happens in open). */
	bool lazy;
	/* "auto" may choose it (when probe(true) says it is fast here). */
	bool in_auto;
	/* Readers wait on a chunk's state word (futex): wake it on changes.
	 * (Else the kernel holds them, and a wake would be a wasted call.) */
	bool futex_waits;
	/* Largest number of slots the backend can keep (0: no limit). */
	size_t max_slots;
	/* Whether chunks of `chunk` bytes are copied in from staging buffers
	 * rather than moved (NULL: never); `tight`: the budget has no room for
	 * the buffers, or they are too many, so copy only if moving is
	 * impossible. After probe. */
	bool (*copies)(size_t chunk, bool tight);
	/* 0 if the backend works in this process (cached), else why not.
	 * for_auto: also require it to be fast here. */
	int (*probe)(bool for_auto);
	/* Reserves r->span bytes at r->base and r->nslots chunks at r->pool,
	 * sets r->mechanism, readies the fault path. All or nothing. */
	int (*open)(struct pm_region *r);
	/* Makes the slot writable for a fill; `fresh`: its first use. */
	int (*slot_prepare)(struct pm_region *r, size_t slot, bool fresh);
	/* After a fill, before the slot may be mapped (NULL: nothing). */
	int (*slot_seal)(struct pm_region *r, size_t slot);
	/* Chunks [c, c + n) from slots [slot, slot + n). */
	int (*map_in)(struct pm_region *r, size_t c, size_t slot, size_t n);
	/* Chunks [c, c + n) back to slots [slot, slot + n). On failure the
	 * chunks must still be wholly resident. */
	int (*map_out)(struct pm_region *r, size_t c, size_t slot, size_t n);
	/* Copying: drops the pages of chunks[0..n) (anywhere in the range, n
	 * at most PM__MAX_DROP) in one call where the kernel allows, so that
	 * one TLB flush covers them all. On failure some may be resident
	 * still: map_out them one by one. NULL: map_out them one by one. */
	int (*drop)(struct pm_region *r, const size_t *chunks, size_t n);
	/* Chunk c is FAILED (already in its state word): from now on an
	 * access raises SIGBUS; wake readers the kernel holds. */
	void (*poison)(struct pm_region *r, size_t c);
	/* Stops new faults reaching the core (before the fillers stop). */
	void (*detach)(struct pm_region *r);
	/* Undoes open (after the fillers stopped). */
	void (*close)(struct pm_region *r);
	/* Close in a child of fork(): drops this process's references (file
	 * descriptors, the handler's entry) without stopping or unmapping
	 * anything: the threads and the memory are the parent's, and the
	 * child may have mapped its own memory where the range was. NULL: as
	 * in the parent. */
	void (*forget)(struct pm_region *r);
};

extern const struct pm__backend_ops pm__backend_uffd;
extern const struct pm__backend_ops pm__backend_sigsegv;
extern const struct pm__backend_ops pm__backend_eager;

#endif
