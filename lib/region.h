/* region.h: the lazy region's shared core. A region is a chunk-aligned
 * virtual range; each chunk has an atomic state; filled chunks live in a
 * fixed pool of slots whose physical pages are moved onto the chunk and back,
 * never freed. Faults reach a front-end (the userfaultfd poller thread, or
 * the SIGSEGV handler) that only does cheap, async-signal-safe steps; filler
 * threads do the fills, the eviction and the read-ahead. */
#ifndef PM_REGION_H
#define PM_REGION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "patchmap.h"

/* Chunk states. Transitional states (QUEUED aside) are owned by the thread
 * that set them; anyone may add PM__WAITERS to say "a fault waits on this
 * chunk": the owner then maps the chunk in when it is filled, re-queues it
 * when it is evicted, and wakes the futex on the state word. */
enum {
	PM__EMPTY = 0,
	PM__QUEUED,    /* waiting for a filler (demand or read-ahead) */
	PM__FILLING,   /* a filler writes its pool slot */
	PM__READY,     /* filled ahead in a slot, not mapped: the next touch maps it */
	PM__MAPPING,   /* the front-end moves a READY slot in */
	PM__RESIDENT,  /* mapped */
	PM__EVICTING,  /* being moved back to its slot */
	PM__FAILED,    /* the fill failed: every access raises SIGBUS */
	PM__STATE_MASK = 0xff,
	PM__WAITERS = 0x100,
	PM__AHEAD = 0x200,     /* RESIDENT by read-ahead, not yet known touched */
};

#define PM__NONE SIZE_MAX

/* Largest buffer we agree to reserve: half of x86-64's 47-bit user space. */
#define PM__MAX_BYTES ((size_t)1 << 46)
/* Filler threads one region may start (pm_lazy_opts.threads). */
#define PM__MAX_THREADS 1024
/* A PMD-mapped transparent huge page (x86-64). */
#define PM__THP_SIZE ((size_t)2 << 20)

struct pm__backend_ops;

struct pm_region {
	const struct pm__backend_ops *ops;
	int backend;
	_Atomic unsigned mechanism;
	char *base;                 /* aligned to the chunk (and 2 MiB) */
	size_t length;              /* bytes asked for */
	size_t span;                /* bytes reserved: whole chunks */
	size_t chunk, nchunks;
	pm_fill_fn fill;
	void *ctx;
	unsigned flags;
	pid_t pid;                  /* the process that opened it */
	uint64_t memory_available;  /* pm_memory_available() at open */
	bool budget_lowered;        /* the default budget was lowered to fit it */

	/* lazy core (unused by the eager backend) */
	_Atomic uint32_t *state;    /* per chunk */
	size_t *chunk_slot;         /* per chunk: its slot while READY/RESIDENT */
	char *pool;
	size_t nslots;
	/* Copying (the backend copies filled chunks in rather than moving
	 * pages): a slot is a place in the budget without memory of its own,
	 * and a fill writes one of nbufs staging buffers (the pool), held by
	 * the slot from the fill until the copy (slot_buf) and freed in
	 * buf_free's bits. */
	bool copy;
	size_t nbufs;
	size_t *slot_buf;
	_Atomic uint64_t buf_free;
	size_t slots_ready;         /* slots populated so far (lock) */
	size_t *slot_chunk;         /* per slot (lock) */
	_Atomic uint64_t *slot_time; /* per slot: when it was mapped */
	_Atomic pid_t *slot_tid;    /* per slot: the thread that waited for it */
	size_t *fifo;               /* slots holding chunks, oldest first (lock) */
	size_t fifo_head, fifo_count;
	size_t *free_slots;         /* (lock) */
	size_t nfree;
	size_t busy;                /* slots being filled (lock) */
	size_t last_chunk, last_slot; /* the latest slot handed out (lock) */
	pthread_mutex_t lock;
	pthread_cond_t slot_cv;
	bool stopping;              /* (lock) */

	/* read-ahead: the last few sequential streams (lock) */
	size_t ra_window;
	size_t ra_trigger;          /* every ra_trigger-th chunk ahead stays unmapped */
	struct {
		size_t first, last, ahead;
		unsigned met;       /* chunks met in order (3: reading ahead) */
		uint64_t used;
	} streams[8];
	uint64_t stream_clock;

	int demand_fd[2];           /* pipe: struct pm__job, from the front-end */
	int ahead_fd[2];            /* pipe: struct pm__job, read-ahead */
	int stop_fd;                /* eventfd, readable when closing */
	int nworkers;
	pthread_t *workers;
	bool lazy_started;

	/* counters (see struct pm_stats) */
	_Atomic uint64_t faults, chunks_filled, bytes_filled, evictions;
	_Atomic uint64_t readahead_fills, readahead_hits, fill_errors, fill_ns;
	_Atomic uint64_t resident, peak_resident;
	_Atomic int error;

	void *bk;                   /* backend state */
};

/* A message to the fillers. */
struct pm__job {
	uint64_t chunk;
	int32_t tid;                /* the faulting thread, 0 for read-ahead */
	uint32_t kind;
};

enum { PM__JOB_DEMAND = 1, PM__JOB_HINT, PM__JOB_AHEAD };

/* True on a filler thread while it fills a chunk that no reader waits for
 * (read-ahead) into a pool slot that is moved, not copied, to its place:
 * the chunk is read only later, from another CPU. */
extern _Thread_local bool pm__fill_later;

/* Front-end step for a fault on chunk c by thread tid. Never blocks, never
 * allocates: safe in a signal handler. Returns PM__RESIDENT (retry the
 * access), PM__FAILED (raise SIGBUS), or the state word to wait on (a
 * transitional state with PM__WAITERS set). A chunk that needs a fill is
 * queued for the fillers, unless !queue: then PM__QUEUED | PM__WAITERS tells
 * the caller to fill it with pm__fill_now(). */
uint32_t pm__fault(struct pm_region *r, size_t c, pid_t tid, bool queue);

/* Hands queued chunk c to the fillers. */
void pm__queue_demand(struct pm_region *r, size_t c, pid_t tid);

/* Fills and maps queued chunk c now, in the calling (ordinary) thread. */
void pm__fill_now(struct pm_region *r, size_t c, pid_t tid);

/* Validates lazy options (for regions and matrices alike): backend, chunk,
 * threads, and the budget of at least two chunks. */
int pm__lazy_check(const struct pm_lazy_opts *lz);

/* Writes the first dst->size bytes (the struct's leading size_t; 0: all
 * `ours`) of the output struct *src to dst, leaving dst's size as it is.
 * -PM_EOPTSIZE for a size below the size field or above `ours`. */
int pm__out_struct(void *dst, const void *src, size_t ours);

/* Opens a region with resolved options (checked by the caller). */
int pm__region_open(size_t length, pm_fill_fn fill, void *ctx, const struct pm_lazy_opts *lz,
		    pm_region **out);

/* Starts a library thread (filler or poller) with the application's
 * signals blocked and fault signals open, and names it. */
int pm__spawn(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);

/* Starts the fillers (after the backend reserved the range). */
int pm__lazy_start(struct pm_region *r);
/* Stops and joins them; wakes demands blocked on slots. */
void pm__lazy_stop(struct pm_region *r);

/* The memory of a pool slot: its own, or its staging buffer when copying. */
static inline char *pm__slot_addr(const struct pm_region *r, size_t slot)
{
	return r->pool + (r->copy ? r->slot_buf[slot] : slot) * r->chunk;
}

/* Chunks of memory the pool holds. */
static inline size_t pm__pool_chunks(const struct pm_region *r)
{
	return r->copy ? r->nbufs : r->nslots;
}

/* Chunk c's address in the range. */
static inline char *pm__chunk_addr(const struct pm_region *r, size_t c)
{
	return r->base + c * r->chunk;
}

/* Lists [base, base + span) as an open lazy region's range (mapped in
 * chunks of `chunk` bytes), whose holes a child of fork() gets as
 * inaccessible reservations (PROT_NONE): a read there raises SIGSEGV,
 * never reads another mapping. 0 or -ENOMEM. Release before the range is
 * unmapped. */
int pm__fork_reserve(char *base, size_t span, size_t chunk);
void pm__fork_release(char *base);

/* Reserves `len` bytes aligned to `align` (a power of two). */
char *pm__reserve(size_t len, size_t align, int prot);

/* Gives [p, p + len) its pages now (writable anonymous memory). 0 or -errno. */
int pm__populate(char *p, size_t len);

/* Whether chunks of `chunk` bytes get transparent huge pages here: the
 * kernel offers them (not "never") and a chunk is whole huge pages. Both
 * lazy backends report PM_MECH_HUGEPAGES from this one answer. */
bool pm__hugepages(size_t chunk);

#endif
