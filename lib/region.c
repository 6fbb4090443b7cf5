/* region.c: the public region API, backend choice, and the lazy core: chunk
 * states, the slot pool with FIFO eviction, the filler threads and the
 * sequential read-ahead. The fault front-ends live in the backends. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "backend.h"
#include "memory.h"
#include "sys.h"

/* PM_DEFAULT_CHUNK, 4 MiB: measured on a 2-core VM where each page-table
 * change costs tens of microseconds (bench/README.md), it amortises the
 * moves and TLB shootdowns of a chunk over enough bytes, and keeps a random
 * fault short. */
#define DEFAULT_READAHEAD 8
#define MAX_THREADS 8

/* A chunk mapped for a waiting thread is not evicted for another thread's
 * fault until this long after, so that its reader gets to read it even when
 * the budget is a single chunk shared by many threads. */
#define GRACE_NS 2000000u

/* Most chunks moved in or out by one call. Each page-table change costs a
 * TLB shootdown on top of its work, and a move of a run of contiguous
 * chunks pays it once: on the 2-core VM of bench/README.md a call covering
 * 8 chunks costs a third of 8 single calls (bench-chunk). */
#define MAX_RUN 8

/* How far into the FIFO a fault looks for a chunk a reader has passed
 * before it grows the pool (passed_first): past the chunks that threads
 * reading one stream together have in hand, short enough to cost nothing
 * beside a fill when no chunk is passed (random reads). */
#define PASSED_SCAN 64

/* Copying: staging buffers beyond one per filler and one for the front-end,
 * for read-ahead chunks left READY (filled, not yet copied in). */
#define READY_BUFS 4
/* Copying: the staging buffers are the bits of one word (buf_free). */
#define MAX_BUFS 64

/* ---------------------------------------------------------------- fork */

/* The ranges of the open lazy regions. A child of fork() inherits none of
 * a userfaultfd range (MADV_DONTFORK), nor the chunks a SIGSEGV region had
 * mapped in (they carry the pool's MADV_DONTFORK): left a hole, its next
 * mapping could land there, and the parent's pointer would read that
 * mapping's data. The child handler puts an inaccessible reservation in
 * each hole instead, so that a read anywhere in the range raises SIGSEGV;
 * the child never unmaps it. The holes are filled, never what the child
 * holds (MAP_FIXED_NOREPLACE): the whole range at once where it is all a
 * hole (userfaultfd), else chunk by chunk (SIGSEGV: its reservation is
 * inherited, the chunks mapped in are not). The list is the process's
 * that made it: a child that forked without the handler (_Fork, a raw
 * clone) and forks again has a stale one, which is ignored. */
struct live_range {
	char *base;
	size_t span, chunk;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live_range *live;
static size_t live_n, live_cap;
static pid_t live_pid; /* the process the list is of */

static void live_prepare(void)
{
	pthread_mutex_lock(&live_lock);
}

static void live_parent(void)
{
	pthread_mutex_unlock(&live_lock);
}

static void *reserve_hole(char *p, size_t len)
{
	return mmap(p, len, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
}

static void live_child(void)
{
	if (live_pid == getppid())
		for (size_t i = 0; i < live_n; i++) {
			struct live_range *l = &live[i];
			void *q = reserve_hole(l->base, l->span);

			if (q == MAP_FAILED)
				for (size_t off = 0; off < l->span; off += l->chunk)
					reserve_hole(l->base + off, l->span - off < l->chunk
									    ? l->span - off
									    : l->chunk);
			else if (q != l->base) /* a kernel that took it as a hint */
				munmap(q, l->span);
		}
	/* the reservations are ordinary mappings now: a grandchild inherits
	 * them, and none of these regions is open in this process */
	live_n = 0;
	live_pid = getpid();
	pthread_mutex_init(&live_lock, NULL);
}

/* Registered when the library is loaded: before the handlers of what loads
 * later, which run after this one in a child and so find the holes
 * reserved. */
__attribute__((constructor)) static void live_init(void)
{
	live_pid = getpid();
	pthread_atfork(live_prepare, live_parent, live_child);
}

int pm__fork_reserve(char *base, size_t span, size_t chunk)
{
	int err = 0;

	pthread_mutex_lock(&live_lock);
	if (live_pid != getpid()) {
		/* a child made without the handler: the list is its parent's */
		live_n = 0;
		live_pid = getpid();
	}
	if (live_n == live_cap) {
		size_t cap = live_cap ? 2 * live_cap : 8;
		struct live_range *p = realloc(live, cap * sizeof(*p));

		if (p) {
			live = p;
			live_cap = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err)
		live[live_n++] = (struct live_range){ base, span, chunk };
	pthread_mutex_unlock(&live_lock);
	return err;
}

void pm__fork_release(char *base)
{
	pthread_mutex_lock(&live_lock);
	for (size_t i = 0; i < live_n; i++)
		if (live[i].base == base) {
			live[i] = live[--live_n];
			break;
		}
	pthread_mutex_unlock(&live_lock);
}

char *pm__reserve(size_t len, size_t align, int prot)
{
	size_t total = len + align;
	char *p, *a;

	p = pm__mmap_anon(NULL, total, prot, MAP_NORESERVE);
	if (!p)
		return NULL;
	a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (a > p)
		pm__munmap(p, (size_t)(a - p));
	if (a + len < p + total)
		pm__munmap(a + len, (size_t)(p + total - (a + len)));
	return a;
}

int pm__populate(char *p, size_t len)
{
	int err = pm__madvise(p, len, MADV_POPULATE_WRITE);

	if (err != -EINVAL)
		return err;
	for (size_t i = 0; i < len; i += 4096) /* kernels before 5.14 */
		((volatile char *)p)[i] = 0;
	return 0;
}

static pthread_once_t thp_once = PTHREAD_ONCE_INIT;
static bool thp_offered;

static void thp_probe(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	/* "always [madvise] never": the backends ask with MADV_HUGEPAGE, so
	 * anything but never gives them huge pages. No file: no THP. */
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			thp_offered = !strstr(buf, "[never]");
		fclose(f);
	}
}

bool pm__hugepages(size_t chunk)
{
	pthread_once(&thp_once, thp_probe);
	return thp_offered && chunk % PM__THP_SIZE == 0;
}

/* One access can straddle two chunks (an unaligned vector load at a chunk
 * boundary): with one slot it would evict its own first half forever. So a
 * lazy region keeps two chunks at least: an explicit budget below that is
 * refused; the default budget is not the caller's word, and grows. */
static int budget_check(const struct pm_lazy_opts *lz)
{
	size_t chunk = lz->chunk ? lz->chunk : PM_DEFAULT_CHUNK;

	return lz->budget && lz->budget / chunk < 2 ? -PM_EBUDGET : 0;
}

int pm__lazy_check(const struct pm_lazy_opts *lz)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	if (lz->backend < 0 || lz->backend >= PM_BACKEND_COUNT)
		return -PM_EBACKEND;
	if (lz->chunk && (lz->chunk < page || (lz->chunk & (lz->chunk - 1)) ||
			  lz->chunk > PM__MAX_BYTES))
		return -PM_ECHUNK;
	if (lz->threads < 0 || lz->threads > PM__MAX_THREADS)
		return -PM_ETHREADS;
	/* A lazy backend named here keeps chunks: see budget_check. ("auto"
	 * is checked at open, where it becomes one: a front end may describe
	 * with "auto" and then stream the matrix without a mapping.) */
	if (lz->backend == PM_BACKEND_UFFD || lz->backend == PM_BACKEND_SIGSEGV)
		return budget_check(lz);
	return 0;
}

_Thread_local bool pm__fill_later;

/* ------------------------------------------------------------ jobs */

/* Async-signal-safe: a pipe write of a few bytes is atomic. */
static void job_push(int fd, size_t c, pid_t tid, uint32_t kind)
{
	struct pm__job j = { c, tid, kind };

	for (;;) {
		ssize_t n = write(fd, &j, sizeof(j));

		if (n == (ssize_t)sizeof(j) || (n < 0 && errno != EINTR && errno != EAGAIN))
			return;
		sched_yield();
	}
}

/* Wakes the readers that wait on a state word, if they wait there. */
static void wake_waiters(struct pm_region *r, _Atomic uint32_t *w)
{
	if (r->ops->futex_waits)
		pm__futex_wake((uint32_t *)w);
}

/* Sets chunk c's state word (the caller owns the current state) and wakes
 * the threads that wait on it. Returns the old word. */
static uint32_t state_set(struct pm_region *r, size_t c, uint32_t to)
{
	uint32_t old = atomic_exchange_explicit(&r->state[c], to, memory_order_acq_rel);

	if (old & PM__WAITERS)
		wake_waiters(r, &r->state[c]);
	return old;
}

static void record_error(struct pm_region *r, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&r->error, &zero, err);
}

/* Chunk c, owned by the caller, failed for good: every access raises
 * SIGBUS from now on. The state first, then the backend's poison, which
 * wakes readers blocked in the kernel: woken, they must find FAILED. */
static void chunk_failed(struct pm_region *r, size_t c, int err)
{
	record_error(r, err);
	state_set(r, c, PM__FAILED);
	r->ops->poison(r, c);
}

/* -------------------------------------------------- staging buffers */

/* Takes a free staging buffer for `slot` (copying). A fill that copies its
 * chunk in right away always finds one: there is one per filler and one
 * for the front-end's own fill beyond the READY_BUFS that `hold` (a chunk
 * to be left READY) may take (unless more fillers than MAX_BUFS share them:
 * then a fill waits at most for another's). Lock-free, so that the
 * front-end can give buffers back. False if none may be taken. */
static bool buf_take(struct pm_region *r, size_t slot, bool hold)
{
	uint64_t m = atomic_load_explicit(&r->buf_free, memory_order_acquire);
	int keep = hold ? r->nworkers + 1 : 0;

	do {
		if (__builtin_popcountll(m) <= keep)
			return false;
	} while (!atomic_compare_exchange_weak(&r->buf_free, &m, m & (m - 1)));
	r->slot_buf[slot] = (size_t)__builtin_ctzll(m);
	return true;
}

/* Gives back the buffer `slot` holds, if any (copying). Async-signal-safe. */
static void buf_put(struct pm_region *r, size_t slot)
{
	size_t b;

	if (!r->copy || (b = r->slot_buf[slot]) == PM__NONE)
		return;
	r->slot_buf[slot] = PM__NONE;
	atomic_fetch_or_explicit(&r->buf_free, (uint64_t)1 << b, memory_order_release);
}

/* ------------------------------------------------------ front-end */

uint32_t pm__fault(struct pm_region *r, size_t c, pid_t tid, bool queue)
{
	_Atomic uint32_t *w = &r->state[c];
	uint32_t s = atomic_load_explicit(w, memory_order_acquire);

	for (;;) {
		switch (s & PM__STATE_MASK) {
		case PM__RESIDENT:
		case PM__FAILED:
			return s & PM__STATE_MASK;
		case PM__EMPTY:
			if (!atomic_compare_exchange_weak(w, &s, PM__QUEUED | PM__WAITERS))
				continue;
			if (queue)
				job_push(r->demand_fd[1], c, tid, PM__JOB_DEMAND);
			return PM__QUEUED | PM__WAITERS;
		case PM__READY: {
			size_t slot;
			int err;

			if (!atomic_compare_exchange_weak(w, &s, PM__MAPPING))
				continue;
			slot = r->chunk_slot[c];
			err = r->ops->map_in(r, c, slot, 1);
			buf_put(r, slot); /* copied in, or failed for good */
			if (err) {
				/* The slot stays in the FIFO: evict_one takes it
				 * back (no lock may be taken here). */
				chunk_failed(r, c, err);
				return PM__FAILED;
			}
			atomic_store_explicit(&r->slot_time[slot], pm__now_ns(), memory_order_relaxed);
			atomic_store_explicit(&r->slot_tid[slot], tid, memory_order_relaxed);
			state_set(r, c, PM__RESIDENT);
			atomic_fetch_add_explicit(&r->readahead_hits, 1, memory_order_relaxed);
			job_push(r->demand_fd[1], c, tid, PM__JOB_HINT);
			return PM__RESIDENT;
		}
		default: /* QUEUED, FILLING, MAPPING, EVICTING */
			if (!(s & PM__WAITERS)) {
				if (!atomic_compare_exchange_weak(w, &s, s | PM__WAITERS))
					continue;
				s |= PM__WAITERS;
			}
			/* A read-ahead job may sit far back in its queue. */
			if ((s & PM__STATE_MASK) == PM__QUEUED && queue)
				job_push(r->demand_fd[1], c, tid, PM__JOB_DEMAND);
			return s;
		}
	}
}

/* ------------------------------------------------------------ slots */

static void account(struct pm_region *r)
{
	uint64_t res = (uint64_t)(r->fifo_count + r->busy) * r->chunk;
	uint64_t peak = atomic_load_explicit(&r->peak_resident, memory_order_relaxed);

	atomic_store_explicit(&r->resident, res, memory_order_relaxed);
	if (res > peak)
		atomic_store_explicit(&r->peak_resident, res, memory_order_relaxed);
}

static void fifo_pop(struct pm_region *r)
{
	r->fifo_head = (r->fifo_head + 1) % r->nslots;
	r->fifo_count--;
}

static void fifo_push(struct pm_region *r, size_t slot)
{
	r->fifo[(r->fifo_head + r->fifo_count) % r->nslots] = slot;
	r->fifo_count++;
}

/* Has a sequential reader left chunk c behind (lock held)? */
static bool passed(const struct pm_region *r, size_t c)
{
	for (size_t i = 0; i < sizeof(r->streams) / sizeof(r->streams[0]); i++)
		if (r->streams[i].used && r->streams[i].first <= c && c + 2 <= r->streams[i].last)
			return true;
	return false;
}

/* May chunk c in `slot` be recycled as passed, ahead of its turn (lock
 * held)? Only if a reader has passed it, it is resident and not a
 * read-ahead chunk its stream has yet to reach (AHEAD), and it was mapped
 * GRACE_NS ago or more, whoever wanted it: "passed" is a guess, and a
 * reader going back over a chunk it just had (a window spanning two) must
 * not lose it to its next fault, again and again. The time is read after
 * the state: a chunk mapped meanwhile is then seen as young, not as
 * mapped in the future. */
static bool recyclable(const struct pm_region *r, size_t slot, size_t c)
{
	uint64_t t;

	if (atomic_load_explicit(&r->state[c], memory_order_acquire) != PM__RESIDENT || !passed(r, c))
		return false;
	t = atomic_load_explicit(&r->slot_time[slot], memory_order_relaxed);
	return pm__now_ns() - t >= GRACE_NS;
}

/* Before the pool grows: brings the oldest recyclable chunk among the
 * PASSED_SCAN oldest to the FIFO's head and returns true, or returns false
 * if there is none and leaves the FIFO as it is (lock held). The chunks
 * before it go to the back, in their order. Threads reading one stream
 * together fill its chunks out of order: the oldest may be one another
 * thread is still reading, with passed chunks behind it; recycled only
 * from the head, each such fault would grow the pool by a chunk. */
static bool passed_first(struct pm_region *r)
{
	size_t n = r->fifo_count < PASSED_SCAN ? r->fifo_count : PASSED_SCAN, k = 0;

	while (k < n) {
		size_t slot = r->fifo[(r->fifo_head + k) % r->nslots];

		if (recyclable(r, slot, r->slot_chunk[slot]))
			break;
		k++;
	}
	if (k == n)
		return false;
	while (k-- > 0) {
		size_t slot = r->fifo[r->fifo_head];

		fifo_pop(r);
		fifo_push(r, slot);
	}
	return true;
}

/* Chunk c in `slot`, RESIDENT, is to be evicted: claims the chunks that
 * follow it in the FIFO while they are its neighbours in both the range and
 * the pool, resident, and passed by a reader, so that one move takes them
 * all out (lock held). Returns the run's length, c's included; the chunks
 * claimed are EVICTING. */
static size_t evict_extend(struct pm_region *r, size_t c, size_t slot, pid_t tid)
{
	size_t n = 1;

	while (n < MAX_RUN && n < r->fifo_count && c + n < r->nchunks && slot + n < r->nslots) {
		size_t s = r->fifo[(r->fifo_head + n) % r->nslots];
		_Atomic uint32_t *w = &r->state[c + n];
		uint32_t st = atomic_load_explicit(w, memory_order_acquire);
		pid_t owner = atomic_load_explicit(&r->slot_tid[s], memory_order_relaxed);

		if (s != slot + n || r->slot_chunk[s] != c + n || !passed(r, c + n))
			break;
		if (owner && owner != tid &&
		    pm__now_ns() - atomic_load_explicit(&r->slot_time[s], memory_order_relaxed) < GRACE_NS)
			break;
		if ((st & PM__STATE_MASK) != PM__RESIDENT ||
		    !atomic_compare_exchange_strong(w, &st, PM__EVICTING | (st & PM__WAITERS)))
			break;
		n++;
	}
	return n;
}

/* Copying: chunk c, the FIFO's head, is to be evicted: claims the resident
 * chunks that follow it in the FIFO, the oldest, so that one call drops
 * them all (lock held). An eighth of the slots at most leave at once. When
 * c goes because a reader passed it (`as_passed`), each chunk that joins
 * it must be recyclable: the chunks after it may be read-ahead or still in
 * hand.
 * Returns the number of chunks in chunks[], c first; all are EVICTING. */
static size_t evict_batch(struct pm_region *r, size_t c, pid_t tid, bool as_passed,
			  size_t chunks[PM__MAX_DROP])
{
	size_t n = 1, most = r->nslots / 8;

	chunks[0] = c;
	if (most > PM__MAX_DROP)
		most = PM__MAX_DROP;
	while (n < most && n < r->fifo_count) {
		size_t s = r->fifo[(r->fifo_head + n) % r->nslots], k = r->slot_chunk[s];
		_Atomic uint32_t *w = &r->state[k];
		uint32_t st = atomic_load_explicit(w, memory_order_acquire);
		pid_t owner = atomic_load_explicit(&r->slot_tid[s], memory_order_relaxed);

		if (owner && owner != tid &&
		    pm__now_ns() - atomic_load_explicit(&r->slot_time[s], memory_order_relaxed) < GRACE_NS)
			break;
		if (as_passed && !recyclable(r, s, k))
			break;
		if ((st & PM__STATE_MASK) != PM__RESIDENT || r->chunk_slot[k] != s ||
		    !atomic_compare_exchange_strong(w, &st, PM__EVICTING | (st & PM__WAITERS)))
			break;
		chunks[n++] = k;
	}
	return n;
}

/* Chunk c, EVICTING, has left the range: empty it, or queue it again for a
 * reader that came meanwhile. */
static void evicted(struct pm_region *r, size_t c)
{
	_Atomic uint32_t *w = &r->state[c];
	uint32_t old = atomic_load_explicit(w, memory_order_acquire);

	while (!atomic_compare_exchange_weak(w, &old,
					     old & PM__WAITERS ? PM__QUEUED | PM__WAITERS : PM__EMPTY))
		;
	if (old & PM__WAITERS) {
		wake_waiters(r, w);
		job_push(r->demand_fd[1], c, 0, PM__JOB_DEMAND);
	}
	atomic_fetch_add_explicit(&r->evictions, 1, memory_order_relaxed);
}

/* Copying: the batch chunks[0..n), EVICTING at the FIFO's head, were
 * dropped by one call, or the call failed (`dropped` false) and may have
 * dropped some of them: those are gone, and must not be kept as resident,
 * so each goes out again by map_out, and the ones that will not go stay
 * resident at the FIFO's tail. Returns a freed slot (the others join the
 * free list), or NONE with *err_out set if none went (lock held). */
static size_t evict_dropped(struct pm_region *r, const size_t *chunks, size_t n, bool dropped, int *err_out)
{
	size_t got = PM__NONE;

	for (size_t k = 0; k < n; k++) {
		size_t slot = r->fifo[r->fifo_head];
		int err;

		fifo_pop(r);
		if (!dropped && (err = r->ops->map_out(r, chunks[k], slot, 1))) {
			state_set(r, chunks[k], PM__RESIDENT);
			*err_out = err;
			fifo_push(r, slot);
			continue;
		}
		evicted(r, chunks[k]);
		if (got == PM__NONE)
			got = slot;
		else
			r->free_slots[r->nfree++] = slot;
	}
	pthread_cond_broadcast(&r->slot_cv);
	return got;
}

/* Frees the oldest evictable slot (lock held). Returns the slot, or NONE
 * with *wait_ns the time until the head may be taken (0: nothing evictable
 * until a fill completes) and *err the last failed move-out, if any. With
 * `run`, the head's resident neighbours that a reader has passed leave with
 * it, in one move, and their slots join the free list. */
static size_t evict_one(struct pm_region *r, pid_t tid, uint64_t *wait_ns, int *err_out, bool run)
{
	for (size_t n = r->fifo_count; n > 0; n--) {
		size_t slot = r->fifo[r->fifo_head], c = r->slot_chunk[slot];
		_Atomic uint32_t *w = &r->state[c];
		uint32_t s = atomic_load_explicit(w, memory_order_acquire);

		if ((s & PM__STATE_MASK) == PM__READY) {
			if (atomic_compare_exchange_strong(w, &s, PM__EMPTY)) {
				buf_put(r, slot);
				fifo_pop(r);
				return slot;
			}
		}
		/* A READY chunk that failed to map in: its slot is free (the
		 * front-end that failed could not take the lock to say so). */
		if ((s & PM__STATE_MASK) == PM__FAILED && r->chunk_slot[c] == slot) {
			r->chunk_slot[c] = PM__NONE;
			fifo_pop(r);
			return slot;
		}
		if ((s & PM__STATE_MASK) == PM__RESIDENT) {
			uint64_t age = pm__now_ns() -
				       atomic_load_explicit(&r->slot_time[slot], memory_order_relaxed);
			pid_t owner = atomic_load_explicit(&r->slot_tid[slot], memory_order_relaxed);

			if (owner && owner != tid && age < GRACE_NS) {
				*wait_ns = GRACE_NS - age;
				return PM__NONE;
			}
			if (atomic_compare_exchange_strong(w, &s, PM__EVICTING | (s & PM__WAITERS))) {
				size_t len, batch[PM__MAX_DROP];
				int err;

				if (r->copy && r->ops->drop && (len = evict_batch(r, c, tid, run, batch)) > 1) {
					size_t got = evict_dropped(r, batch, len, r->ops->drop(r, batch, len) == 0,
								   err_out);

					if (got != PM__NONE)
						return got;
					continue;
				}
				len = run && !r->copy ? evict_extend(r, c, slot, tid) : 1;
				err = r->ops->map_out(r, c, slot, len);

				if (err && len > 1) {
					/* The run did not move (say, its slots are
					 * not one mapping): the head alone. */
					for (size_t k = 1; k < len; k++)
						state_set(r, c + k, PM__RESIDENT);
					len = 1;
					err = r->ops->map_out(r, c, slot, 1);
				}
				if (err) {
					/* Pinned pages (say, O_DIRECT I/O from them): keep it. */
					state_set(r, c, PM__RESIDENT);
					*err_out = err;
				} else {
					for (size_t k = 0; k < len; k++) {
						evicted(r, c + k);
						fifo_pop(r);
					}
					/* Pushed last first: taken in pool order, the
					 * next fills stay contiguous in the pool. */
					for (size_t k = len - 1; k > 0; k--)
						r->free_slots[r->nfree++] = slot + k;
					if (len > 1)
						pthread_cond_broadcast(&r->slot_cv);
					return slot;
				}
			}
		}
		/* Being mapped by a front-end right now, or just failed to move
		 * out: look at the next one. */
		fifo_pop(r);
		fifo_push(r, slot);
	}
	*wait_ns = 0;
	return PM__NONE;
}

/* How long a demand keeps retrying evictions that fail before it fails. */
#define EVICT_PATIENCE 100

/* The slot after the one the previous chunk got, if it is free or holds
 * the oldest chunk and a reader has passed that (lock held): neighbouring
 * chunks then sit in neighbouring slots, and move in and out in one call.
 * NONE if not. */
static size_t slot_next(struct pm_region *r, size_t c, pid_t tid)
{
	size_t p = r->last_slot + 1;
	uint64_t wait_ns = 0;
	int err = 0;

	if (c == 0 || c - 1 != r->last_chunk || p >= r->slots_ready)
		return PM__NONE;
	for (size_t i = 0; i < r->nfree; i++) {
		if (r->free_slots[i] == p) {
			r->free_slots[i] = r->free_slots[--r->nfree];
			return p;
		}
	}
	if (r->fifo_count && r->fifo[r->fifo_head] == p && passed(r, r->slot_chunk[p]))
		return evict_one(r, tid, &wait_ns, &err, true);
	return PM__NONE;
}

/* A slot to fill: free, never used, or evicted. Demands wait for one;
 * read-ahead does not. Returns the slot, or NONE (closing, or read-ahead
 * found none); *err is set if the slot could not be prepared. */
static size_t slot_get(struct pm_region *r, size_t c, bool demand, pid_t tid, int *err)
{
	size_t slot = PM__NONE;
	bool fresh = false;
	int failures = 0;

	*err = 0;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		uint64_t wait_ns = 0;
		struct timespec until;
		int evict_err = 0;

		if (r->stopping)
			break;
		if ((slot = slot_next(r, c, tid)) != PM__NONE)
			break;
		if (r->nfree) {
			slot = r->free_slots[--r->nfree];
			break;
		}
		/* Fresh pages are the slowest thing there is: rather than grow
		 * the pool, recycle a chunk a sequential reader has passed. */
		if (r->fifo_count && passed(r, r->slot_chunk[r->fifo[r->fifo_head]]) &&
		    (slot = evict_one(r, tid, &wait_ns, &evict_err, true)) != PM__NONE)
			break;
		if (r->slots_ready < r->nslots && passed_first(r) &&
		    (slot = evict_one(r, tid, &wait_ns, &evict_err, true)) != PM__NONE)
			break;
		if (r->slots_ready < r->nslots) {
			slot = r->slots_ready++;
			fresh = true;
			break;
		}
		slot = evict_one(r, tid, &wait_ns, &evict_err, false);
		if (slot != PM__NONE || !demand)
			break;
		/* Nothing could be moved out, again and again: fail this fill
		 * loudly (the reader gets SIGBUS, the error is kept) rather than
		 * wait forever. */
		if (evict_err && ++failures > EVICT_PATIENCE) {
			*err = evict_err;
			break;
		}
		if (evict_err)
			wait_ns = 1000000;
		clock_gettime(CLOCK_MONOTONIC, &until);
		wait_ns = wait_ns ? wait_ns : 10000000u;
		until.tv_nsec += (long)wait_ns;
		until.tv_sec += until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&r->slot_cv, &r->lock, &until);
	}
	if (slot != PM__NONE) {
		r->busy++;
		r->last_chunk = c;
		r->last_slot = slot;
		account(r);
	}
	pthread_mutex_unlock(&r->lock);
	if (slot != PM__NONE && r->ops->slot_prepare &&
	    (*err = r->ops->slot_prepare(r, slot, fresh))) {
		/* A slot that could not be populated is dropped: the budget
		 * shrinks by one chunk rather than reuse half-made memory. */
		pthread_mutex_lock(&r->lock);
		if (!fresh)
			r->free_slots[r->nfree++] = slot;
		r->busy--;
		account(r);
		pthread_mutex_unlock(&r->lock);
		slot = PM__NONE;
	}
	return slot;
}

/* Copying: once a chunk is copied in and its reader runs again, frees slots
 * for the next fills if none is free, so that evictions (a batch per call)
 * happen off the readers' path. */
static void evict_spare(struct pm_region *r, pid_t tid)
{
	uint64_t wait_ns = 0;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	if (!r->nfree && r->slots_ready == r->nslots && r->nslots < r->nchunks && !r->stopping) {
		size_t slot = evict_one(r, tid, &wait_ns, &err, false);

		if (slot != PM__NONE) {
			r->free_slots[r->nfree++] = slot;
			account(r);
			pthread_cond_broadcast(&r->slot_cv);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

static void slot_release(struct pm_region *r, size_t slot)
{
	pthread_mutex_lock(&r->lock);
	r->free_slots[r->nfree++] = slot;
	r->busy--;
	account(r);
	pthread_cond_broadcast(&r->slot_cv);
	pthread_mutex_unlock(&r->lock);
}

static void slot_commit(struct pm_region *r, size_t slot, size_t c)
{
	pthread_mutex_lock(&r->lock);
	r->slot_chunk[slot] = c;
	fifo_push(r, slot);
	r->busy--;
	account(r);
	pthread_cond_broadcast(&r->slot_cv);
	pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------- read-ahead */

/* A sequential reader that reached chunk c has read the chunks mapped ahead
 * of it on the way: count them as read-ahead hits. */
static void ahead_passed(struct pm_region *r, size_t from, size_t to)
{
	for (size_t k = from; k < to; k++) {
		uint32_t s = atomic_load_explicit(&r->state[k], memory_order_relaxed);

		while (s & PM__AHEAD) {
			if (atomic_compare_exchange_weak(&r->state[k], &s, s & ~(uint32_t)PM__AHEAD)) {
				atomic_fetch_add_explicit(&r->readahead_hits, 1, memory_order_relaxed);
				break;
			}
		}
	}
}

/* Stream i takes in the streams that end where it begins or inside it, or
 * whose read-ahead reaches that far: several threads reading one stream,
 * each its own part, start it in pieces (say, one piece per thread when
 * their parts are whole chunks), and so do faults told out of order (two
 * fillers may note a reader's chunks in either order), and the chunks of
 * the pieces are as much behind the readers as the stream's own. The
 * thread furthest ahead may start a piece just past what the stream behind
 * it reads ahead; the readers then fault on the chunks between only where
 * that read-ahead left a trigger chunk, which the stream behind hears of,
 * not the piece, so only the read-ahead tells the two are one. A reader of
 * its own part behind another's is taken for the same stream too, once it
 * reads ahead into that part: its last few chunks count as passed. A piece
 * left out would keep its chunks from being recycled as passed, and the
 * pool would grow to the whole budget. A stream not reading ahead leaves
 * the pieces that do alone: it would stop their read-ahead (lock held). */
static void stream_join(struct pm_region *r, size_t i)
{
	bool ahead = r->streams[i].met >= 3;

	for (size_t j = 0; j < sizeof(r->streams) / sizeof(r->streams[0]); j++) {
		size_t reach = r->streams[j].ahead > r->streams[j].last ? r->streams[j].ahead : r->streams[j].last;

		if (j == i || !r->streams[j].used || (!ahead && r->streams[j].met >= 3) ||
		    r->streams[j].first > r->streams[i].first || reach + 2 < r->streams[i].first ||
		    r->streams[j].last > r->streams[i].last)
			continue;
		r->streams[i].first = r->streams[j].first;
		r->streams[j].used = 0;
	}
}

/* 1 if a stream whose last chunk is `last` meets one more chunk in order
 * at c (one or two past it), else 0. A chunk skipped counts only if some
 * reader has wanted it too: two threads reading every other chunk fill
 * each other's gaps, but a reader that skips chunks (strided, or random
 * touches that land next to earlier ones) leaves them empty, and must not
 * have chunks nobody reads filled ahead of it. The stream moves on all the
 * same, so that the chunks it passed are recycled (lock held). */
static unsigned met_step(const struct pm_region *r, size_t last, size_t c)
{
	uint32_t skipped = atomic_load_explicit(&r->state[c - 1], memory_order_relaxed);

	return c == last + 1 || (skipped & PM__STATE_MASK) != PM__EMPTY;
}

/* Chunk c was just wanted by a reader. If it continues a stream (comes
 * after its last chunk, skipping one at most: two threads reading every
 * other chunk of one stream are told of their faults in any order), queue
 * the chunks ahead of it; otherwise start a stream at c. A stream reads
 * ahead only once it has met three chunks in order (met_step), so random
 * touches that happen to land next to an earlier one do not fill chunks
 * nobody reads. Read-ahead chunks are mapped as soon as they are filled,
 * except every ra_trigger-th, left unmapped: the reader's cheap fault on it
 * is what moves the stream on. */
static void ahead_note(struct pm_region *r, size_t c)
{
	size_t n = sizeof(r->streams) / sizeof(r->streams[0]), pick = 0;

	if (!r->ra_window)
		return;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		size_t last = r->streams[i].last, ahead = r->streams[i].ahead;

		if (r->streams[i].used && last < c && c <= (ahead > last ? ahead : last) + 2) {
			size_t from = c + 1 > ahead + 1 ? c + 1 : ahead + 1;
			size_t to = r->nchunks - 1 - c < r->ra_window ? r->nchunks - 1 : c + r->ra_window;

			if (r->streams[i].met < 3 && (r->streams[i].met += met_step(r, last, c)) < 3) {
				r->streams[i].last = c;
				r->streams[i].used = ++r->stream_clock;
				/* Not reading ahead (yet, or a reader that skips
				 * chunks): the pieces still join, else a chunk
				 * told late, between two pieces, would never count
				 * as passed and would hold up the recycling. */
				stream_join(r, i);
				pthread_mutex_unlock(&r->lock);
				return;
			}
			ahead_passed(r, last + 1, c);

			for (size_t k = from; k <= to; k++) {
				uint32_t s = PM__EMPTY;

				struct pm__job j = { k, 0, PM__JOB_AHEAD };

				if (!atomic_compare_exchange_strong(&r->state[k], &s, PM__QUEUED))
					continue;
				if (write(r->ahead_fd[1], &j, sizeof(j)) != (ssize_t)sizeof(j)) {
					/* Queue full: skip, unless a reader claimed
					 * it meanwhile (it queued a demand). */
					s = PM__QUEUED;
					atomic_compare_exchange_strong(&r->state[k], &s, PM__EMPTY);
					break;
				}
			}
			r->streams[i].last = c;
			if (to > ahead)
				r->streams[i].ahead = to;
			r->streams[i].used = ++r->stream_clock;
			stream_join(r, i);
			pthread_mutex_unlock(&r->lock);
			return;
		}
		if (r->streams[i].used < r->streams[pick].used)
			pick = i;
	}
	r->streams[pick].first = c;
	r->streams[pick].last = c;
	r->streams[pick].ahead = c;
	r->streams[pick].met = 1;
	r->streams[pick].used = ++r->stream_clock;
	pthread_mutex_unlock(&r->lock);
}

/* Maps the run of read-ahead chunks [c, c + n) from slots [slot, slot + n),
 * all MAPPING and owned by the caller, in one move; one by one if the run
 * does not move whole. A chunk that will not move stays READY for a reader's
 * touch to retry, unless a reader already waits on it: that one fails. */
static void map_run(struct pm_region *r, size_t c, size_t slot, size_t n)
{
	int err = r->ops->map_in(r, c, slot, n);

	if (err && n > 1) {
		for (size_t k = 0; k < n; k++)
			map_run(r, c + k, slot + k, 1);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		_Atomic uint32_t *w = &r->state[c + k];
		uint32_t s = atomic_load_explicit(w, memory_order_acquire);

		if (err) {
			if (!(s & PM__WAITERS) && atomic_compare_exchange_strong(w, &s, PM__READY))
				continue;
			chunk_failed(r, c + k, err);
			continue;
		}
		atomic_store_explicit(&r->slot_time[slot + k], pm__now_ns(), memory_order_relaxed);
		atomic_store_explicit(&r->slot_tid[slot + k], 0, memory_order_relaxed);
		while (!atomic_compare_exchange_weak(w, &s, s & PM__WAITERS ? PM__RESIDENT
									 : PM__RESIDENT | PM__AHEAD))
			;
		if (s & PM__WAITERS)
			wake_waiters(r, w);
	}
}

/* Read-ahead chunk c was filled and left READY. The read-ahead chunks
 * between two trigger chunks are mapped together once none of them is
 * being filled any more (the filler of the last one maps them): one move
 * for the lot, or one per run of contiguous slots. A reader that touches
 * one of them before maps that one itself, as any READY chunk. */
static void ahead_flush(struct pm_region *r, size_t c)
{
	size_t first = c - c % r->ra_trigger + 1, end = first + r->ra_trigger - 1;
	size_t run_c = 0, run_slot = 0, n = 0;

	if (end > r->nchunks)
		end = r->nchunks;
	for (size_t k = first; k < end; k++) {
		uint32_t s = atomic_load_explicit(&r->state[k], memory_order_acquire) & PM__STATE_MASK;

		if (s == PM__QUEUED || s == PM__FILLING)
			return;
	}
	for (size_t k = first; k < end; k++) {
		uint32_t s = PM__READY;
		size_t slot;

		if (!atomic_compare_exchange_strong(&r->state[k], &s, PM__MAPPING)) {
			if (n)
				map_run(r, run_c, run_slot, n);
			n = 0;
			continue;
		}
		/* Owned now: its slot cannot change under us. */
		slot = r->chunk_slot[k];
		if (n && (slot != run_slot + n || n == MAX_RUN)) {
			map_run(r, run_c, run_slot, n);
			n = 0;
		}
		if (!n) {
			run_c = k;
			run_slot = slot;
		}
		n++;
	}
	if (n)
		map_run(r, run_c, run_slot, n);
}

/* ---------------------------------------------------------- fillers */

static void fill_failed(struct pm_region *r, size_t c, size_t slot, int err, bool demand)
{
	_Atomic uint32_t *w = &r->state[c];
	uint32_t s = PM__FILLING;

	atomic_fetch_add_explicit(&r->fill_errors, 1, memory_order_relaxed);
	if (slot != PM__NONE) {
		buf_put(r, slot);
		slot_release(r, slot);
	}
	/* Nobody waits for a failed read-ahead: let a real touch retry it. */
	if (!demand && atomic_compare_exchange_strong(w, &s, PM__EMPTY))
		return;
	chunk_failed(r, c, err);
}

static void fill_chunk(struct pm_region *r, size_t c, bool demand, pid_t tid)
{
	_Atomic uint32_t *w = &r->state[c];
	uint32_t s = atomic_load_explicit(w, memory_order_acquire);
	size_t slot, off = c * r->chunk, len = r->length - off < r->chunk ? r->length - off : r->chunk;
	uint64_t t0, t1;
	bool hold;
	char *dst;
	int err;

	do {
		if ((s & PM__STATE_MASK) != PM__QUEUED)
			return; /* served already, or by another filler */
	} while (!atomic_compare_exchange_weak(w, &s, PM__FILLING | (s & PM__WAITERS)));
	demand = demand || (s & PM__WAITERS);

	slot = slot_get(r, c, demand, tid, &err);
	if (err) {
		/* A read-ahead nobody waits for is dropped (fill_failed checks
		 * for waiters): a real touch retries it. */
		fill_failed(r, c, PM__NONE, err, demand);
		return;
	}
	if (slot == PM__NONE) {
		/* Closing, or read-ahead found every slot busy. A reader that
		 * came meanwhile gets the chunk queued for it without the chunk
		 * ever being ownerless: a second filler would fill it twice. */
		bool stopping;
		uint32_t to;

		pthread_mutex_lock(&r->lock);
		stopping = r->stopping;
		pthread_mutex_unlock(&r->lock);
		/* While we own FILLING, others only add PM__WAITERS: one
		 * exchange decides on the word as it is (a userfaultfd reader
		 * held by the kernel has nobody to refault for it). */
		s = atomic_load_explicit(w, memory_order_acquire);
		do
			to = s & PM__WAITERS && !stopping ? PM__QUEUED | PM__WAITERS : PM__EMPTY;
		while (!atomic_compare_exchange_weak(w, &s, to));
		if (to != PM__EMPTY)
			job_push(r->demand_fd[1], c, 0, PM__JOB_DEMAND);
		else if (s & PM__WAITERS)
			wake_waiters(r, w);
		return;
	}
	/* Read-ahead is left READY, to be mapped in runs or by a touch. When
	 * copying, only a trigger chunk is (copies gain nothing from runs),
	 * and only while a staging buffer may be held for it. */
	hold = !demand && (!r->copy || c % r->ra_trigger == 0);
	if (r->copy && !(hold && buf_take(r, slot, true))) {
		hold = false;
		while (!buf_take(r, slot, false))
			sched_yield(); /* never long: see buf_take */
	}
	dst = pm__slot_addr(r, slot);
	t0 = pm__now_ns();
	pm__fill_later = !demand && !r->copy;
	err = r->fill(r->ctx, off, dst, len);
	pm__fill_later = false;
	t1 = pm__now_ns();
	atomic_fetch_add_explicit(&r->fill_ns, t1 - t0, memory_order_relaxed);
	if (err >= 0 && len < r->chunk)
		memset(dst + len, 0, r->chunk - len);
	if (err >= 0 && r->ops->slot_seal)
		err = r->ops->slot_seal(r, slot);
	if (err < 0) {
		fill_failed(r, c, slot, err, demand);
		return;
	}
	atomic_fetch_add_explicit(&r->chunks_filled, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->bytes_filled, len, memory_order_relaxed);
	r->chunk_slot[c] = slot;

	atomic_store_explicit(&r->slot_time[slot], pm__now_ns(), memory_order_relaxed);
	atomic_store_explicit(&r->slot_tid[slot], demand ? tid : 0, memory_order_relaxed);
	/* Read-ahead nobody waits for: READY. A trigger chunk stays so (the
	 * reader's fault on it moves the stream on); the others are mapped
	 * in runs by ahead_flush. */
	s = PM__FILLING;
	if (hold && atomic_compare_exchange_strong(w, &s, PM__READY)) {
		atomic_fetch_add_explicit(&r->readahead_fills, 1, memory_order_relaxed);
		slot_commit(r, slot, c);
		if (c % r->ra_trigger)
			ahead_flush(r, c);
		return;
	}
	/* A reader waits, or read-ahead maps it right away. */
	err = r->ops->map_in(r, c, slot, 1);
	buf_put(r, slot);
	if (err) {
		fill_failed(r, c, slot, err, true);
		return;
	}
	atomic_store_explicit(&r->slot_time[slot], pm__now_ns(), memory_order_relaxed);
	s = atomic_load_explicit(w, memory_order_relaxed);
	while (!atomic_compare_exchange_weak(w, &s, demand || (s & PM__WAITERS) ? PM__RESIDENT
									     : PM__RESIDENT | PM__AHEAD))
		;
	if (s & PM__WAITERS)
		wake_waiters(r, w);
	else if (!demand)
		atomic_fetch_add_explicit(&r->readahead_fills, 1, memory_order_relaxed);
	slot_commit(r, slot, c);
	if (tid)
		ahead_note(r, c);
	if (r->copy)
		evict_spare(r, tid);
}

void pm__queue_demand(struct pm_region *r, size_t c, pid_t tid)
{
	job_push(r->demand_fd[1], c, tid, PM__JOB_DEMAND);
}

void pm__fill_now(struct pm_region *r, size_t c, pid_t tid)
{
	fill_chunk(r, c, true, tid);
}

static void *filler_main(void *arg)
{
	struct pm_region *r = arg;
	struct pollfd p[3] = {
		{ .fd = r->stop_fd, .events = POLLIN },
		{ .fd = r->demand_fd[0], .events = POLLIN },
		{ .fd = r->ahead_fd[0], .events = POLLIN },
	};

	for (;;) {
		struct pm__job j;

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[0].revents)
			return NULL;
		if (!((p[1].revents & POLLIN) && read(r->demand_fd[0], &j, sizeof(j)) == sizeof(j)) &&
		    !((p[2].revents & POLLIN) && read(r->ahead_fd[0], &j, sizeof(j)) == sizeof(j)))
			continue;
		if (j.chunk >= r->nchunks)
			continue;
		if (j.kind == PM__JOB_HINT)
			ahead_note(r, j.chunk);
		else
			fill_chunk(r, j.chunk, j.kind == PM__JOB_DEMAND, j.tid);
	}
}

static int make_pipe(int fd[2], int size)
{
	if (pipe2(fd, O_CLOEXEC | O_NONBLOCK))
		return -errno;
	if (size)
		fcntl(fd[1], F_SETPIPE_SZ, size); /* best effort: writers retry when full */
	return 0;
}

/* The queues exist before the backend's front-end can push to them. */
static int lazy_queues(struct pm_region *r)
{
	int err;

	if ((err = make_pipe(r->demand_fd, 1 << 20)) || (err = make_pipe(r->ahead_fd, 0)))
		return err;
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return r->stop_fd < 0 ? -errno : 0;
}

int pm__spawn(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
	sigset_t mask, old;
	int err;

	/* The library's threads leave the application's signals to the
	 * application's threads, but not the ones a fault raises: a fill reads
	 * the source, and the source may itself be lazy memory (a matrix of a
	 * SIGSEGV-backend matrix), whose handler must run here. A blocked
	 * fault signal would kill the process instead. */
	sigfillset(&mask);
	sigdelset(&mask, SIGSEGV);
	sigdelset(&mask, SIGBUS);
	sigdelset(&mask, SIGFPE);
	sigdelset(&mask, SIGILL);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	err = -pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		pthread_setname_np(*t, name);
	return err;
}

int pm__lazy_start(struct pm_region *r)
{
	int err = 0;

	r->workers = calloc((size_t)r->nworkers, sizeof(*r->workers));
	if (!r->workers)
		return -ENOMEM;
	for (int i = 0; i < r->nworkers; i++) {
		err = pm__spawn(&r->workers[i], filler_main, r, "patchmap-fill");
		if (err) {
			r->nworkers = i;
			break;
		}
	}
	r->lazy_started = true;
	return err;
}

void pm__lazy_stop(struct pm_region *r)
{
	uint64_t one = 1;

	if (r->lazy_started) {
		pthread_mutex_lock(&r->lock);
		r->stopping = true;
		pthread_cond_broadcast(&r->slot_cv);
		pthread_mutex_unlock(&r->lock);
		if (write(r->stop_fd, &one, sizeof(one)) < 0) {
			/* cannot fail on a fresh eventfd */
		}
		for (int i = 0; i < r->nworkers; i++)
			pthread_join(r->workers[i], NULL);
	}
	free(r->workers);
	r->workers = NULL;
	for (int i = 0; i < 2; i++) {
		if (r->demand_fd[i] >= 0)
			close(r->demand_fd[i]);
		if (r->ahead_fd[i] >= 0)
			close(r->ahead_fd[i]);
	}
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	r->lazy_started = false;
}

/* ------------------------------------------------------------ API */

/* Every backend; "auto" tries those with `in_auto`, in this order, and takes
 * the first that is fast here and opens. */
static const struct pm__backend_ops *const backends[] = {
	&pm__backend_uffd,
	&pm__backend_sigsegv,
	&pm__backend_eager,
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static const struct pm__backend_ops *backend_find(int id)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (backends[i]->id == id)
			return backends[i];
	return NULL;
}

static void region_free(struct pm_region *r)
{
	free((void *)r->state);
	free(r->chunk_slot);
	free(r->slot_chunk);
	free(r->slot_time);
	free(r->slot_tid);
	free(r->fifo);
	free(r->free_slots);
	free(r->slot_buf);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->slot_cv);
	free(r);
}

static int lazy_alloc(struct pm_region *r)
{
	r->state = calloc(r->nchunks, sizeof(*r->state));
	r->chunk_slot = calloc(r->nchunks, sizeof(*r->chunk_slot));
	r->slot_chunk = calloc(r->nslots, sizeof(*r->slot_chunk));
	r->slot_time = calloc(r->nslots, sizeof(*r->slot_time));
	r->slot_tid = calloc(r->nslots, sizeof(*r->slot_tid));
	r->fifo = calloc(r->nslots, sizeof(*r->fifo));
	r->free_slots = calloc(r->nslots, sizeof(*r->free_slots));
	r->slot_buf = malloc(r->nslots * sizeof(*r->slot_buf));
	if (!r->state || !r->chunk_slot || !r->slot_chunk || !r->slot_time || !r->slot_tid ||
	    !r->fifo || !r->free_slots || !r->slot_buf)
		return -ENOMEM;
	for (size_t i = 0; i < r->nslots; i++)
		r->slot_buf[i] = PM__NONE;
	atomic_store(&r->buf_free, !r->copy ? 0 : r->nbufs == MAX_BUFS ? UINT64_MAX : ((uint64_t)1 << r->nbufs) - 1);
	return 0;
}

/* The default fillers of a region whose budget holds `slots` chunks: half
 * the CPUs, but two wherever there are two and the budget holds 32 chunks
 * or more. The readers need the other CPUs, and every running thread of the
 * process is one more target of each page-table change's TLB shootdown; yet
 * one filler alone bounds a scan, and the CPU of a reader blocked on a chunk
 * would sit idle (bench/README.md section 2: on two CPUs, two fillers scan
 * 1.25-1.3x faster than one). Under a smaller budget the chunk the second
 * filler keeps in flight is taken from those read ahead, which are evicted
 * before their reader comes: one pass over 80 chunks of 1 MiB under a
 * budget of 8 filled 90-141 chunks with two fillers, 80-85 with one. (The
 * uffd poller fills demand chunks too.) */
static int default_fillers(size_t slots)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN), n = cpus / 2;

	if (n < 2)
		n = cpus >= 2 && slots >= 32 ? 2 : 1;
	return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

int pm_default_threads(void)
{
	return default_fillers(PM_DEFAULT_BUDGET / PM_DEFAULT_CHUNK);
}

/* The memory rule of an open (see pm_lazy_opts.budget): the default budget
 * of a lazy buffer is lowered to fit the memory available, and a resident
 * bound (the budget in whole chunks, or the whole buffer for eager or an
 * unlimited budget) larger than that memory is refused. *fit is *lz with
 * the budget in force. */
static int fit_memory(size_t length, bool lazy, const struct pm_lazy_opts *lz,
		      struct pm_lazy_opts *fit, uint64_t *avail, bool *lowered)
{
	size_t chunk = lz->chunk ? lz->chunk : PM_DEFAULT_CHUNK;
	struct pm_memory m;

	pm__memory_read(NULL, &m);
	*fit = *lz;
	*avail = m.available;
	*lowered = false;
	if (lazy && !lz->budget) {
		fit->budget = pm__default_budget(&m);
		*lowered = fit->budget < PM_DEFAULT_BUDGET;
		if (fit->budget / chunk < 2)
			fit->budget = 2 * chunk;
	}
	return pm__resident_bound(length, chunk, lazy, fit->budget) > m.available ? -PM_EMEMORY
										    : 0;
}

/* Opens with one backend; all or nothing. */
static int open_with(const struct pm__backend_ops *ops, size_t length, pm_fill_fn fill, void *ctx,
		     const struct pm_lazy_opts *lz0, pm_region **out)
{
	struct pm_region *r;
	struct pm_lazy_opts fitted, *lz = &fitted;
	size_t budget;
	uint64_t avail;
	bool lowered;
	pthread_condattr_t ca;
	int err;

	if ((err = fit_memory(length, ops->lazy, lz0, &fitted, &avail, &lowered)))
		return err;
	budget = lz->budget ? lz->budget : PM_DEFAULT_BUDGET;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->memory_available = avail;
	r->budget_lowered = lowered;
	pthread_mutex_init(&r->lock, NULL);
	/* The timed waits for a slot measure intervals: immune to clock steps. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->slot_cv, &ca);
	pthread_condattr_destroy(&ca);
	r->demand_fd[0] = r->demand_fd[1] = r->ahead_fd[0] = r->ahead_fd[1] = r->stop_fd = -1;
	r->ops = ops;
	r->backend = ops->id;
	r->last_chunk = PM__NONE;
	r->length = length;
	r->fill = fill;
	r->ctx = ctx;
	r->flags = lz->flags;
	r->pid = pm__getpid();
	r->chunk = lz->chunk ? lz->chunk : PM_DEFAULT_CHUNK;
	r->nchunks = length / r->chunk + (length % r->chunk != 0);
	r->span = r->nchunks * r->chunk;
	r->nworkers = !ops->lazy ? 0 : lz->threads ? lz->threads : default_fillers(budget / r->chunk);
	r->ra_window = lz->readahead < 0 ? 0 : lz->readahead ? (size_t)lz->readahead : DEFAULT_READAHEAD;
	/* Two chunks at least (see pm__lazy_check): only the default budget
	 * can come to fewer, and it grows. */
	r->nslots = budget / r->chunk > 2 ? budget / r->chunk : 2;
	/* Copying: the staging buffers come out of the budget, so they may
	 * take a quarter of it at most (else the backend moves, or, if it
	 * cannot, the buffers come on top). */
	r->nbufs = (size_t)r->nworkers + 1 + (r->ra_window ? READY_BUFS : 0);
	/* More fillers than buffers fit in buf_free: move if the kernel can;
	 * if not, the fillers share the buffers, waiting for each other's
	 * copy (see buf_take). */
	r->copy = ops->copies && ops->copies(r->chunk, r->nslots < 4 * r->nbufs || r->nbufs > MAX_BUFS);
	if (r->nbufs > MAX_BUFS)
		r->nbufs = MAX_BUFS;
	if (r->copy && r->nslots >= 4 * r->nbufs)
		r->nslots -= r->nbufs;
	if (r->nslots > r->nchunks)
		r->nslots = r->nchunks;
	if (ops->max_slots && r->nslots > ops->max_slots)
		r->nslots = ops->max_slots;
	if (r->ra_window > r->nslots / 2)
		r->ra_window = r->nslots / 2;
	r->ra_trigger = r->ra_window / 2 ? r->ra_window / 2 : 1;

	if (ops->lazy && ((err = lazy_alloc(r)) || (err = lazy_queues(r)))) {
		pm__lazy_stop(r);
		goto fail;
	}
	err = ops->open(r);
	if (err) {
		pm__lazy_stop(r);
		goto fail;
	}
	if (ops->lazy) {
		err = pm__lazy_start(r);
		if (err) {
			pm_region_close(r);
			return err;
		}
	}
	*out = r;
	return 0;
fail:
	region_free(r);
	return err;
}

int pm__region_open(size_t length, pm_fill_fn fill, void *ctx, const struct pm_lazy_opts *lz,
		    pm_region **out)
{
	const struct pm__backend_ops *ops;
	int backend = lz->backend, err = -ENOSYS;
	size_t chunk = lz->chunk ? lz->chunk : PM_DEFAULT_CHUNK;

	if (length > PM__MAX_BYTES || length + chunk - 1 > PM__MAX_BYTES)
		return -PM_ETOOBIG;
	if (backend == PM_BACKEND_AUTO) {
		const char *env = getenv("PATCHMAP_BACKEND");

		if (env && *env && ((backend = pm_backend_parse(env)) < 0 ||
				    backend == PM_BACKEND_NONE || backend == PM_BACKEND_AUTO))
			return -PM_EBACKEND;
	}
	if (backend == PM_BACKEND_NONE)
		return -PM_EBACKEND; /* a region is nothing but its mapping */
	if (backend != PM_BACKEND_AUTO) {
		if (!(ops = backend_find(backend)))
			return -PM_EBACKEND;
		if (ops->lazy && (err = budget_check(lz)))
			return err;
		err = ops->probe(false);
		return err ? err : open_with(ops, length, fill, ctx, lz, out);
	}
	/* auto: the first in the table that is fast here and opens; the last
	 * one's error if none does. */
	if ((err = budget_check(lz)))
		return err; /* "auto" is always a lazy backend */
	for (size_t i = 0; i < NBACKENDS; i++) {
		ops = backends[i];
		if (!ops->in_auto)
			continue;
		err = ops->probe(true);
		if (!err && (err = open_with(ops, length, fill, ctx, lz, out)) == 0)
			return 0;
	}
	return err;
}

int pm_region_open(const struct pm_region_opts *o, pm_region **out)
{
	int err;

	if (!out)
		return -PM_ENULL;
	*out = NULL;
	if (!o || !o->fill)
		return -PM_ENULL;
	if (o->size != 0 && o->size != sizeof(*o))
		return -PM_EOPTSIZE;
	if (o->length == 0)
		return -PM_ELENGTH;
	if ((err = pm__lazy_check(&o->lazy)))
		return err;
	return pm__region_open(o->length, o->fill, o->ctx, &o->lazy, out);
}

int pm_region_close(pm_region *r)
{
	int err;

	if (!r)
		return 0;
	if (r->ops->forget && r->pid != pm__getpid()) {
		/* A child of fork(): the fillers live in the parent, and the
		 * pipes and eventfd are shared with it (a write to stop_fd here
		 * would stop the parent's fillers). Close this process's copies
		 * only: pm__lazy_stop signals and joins only started fillers. */
		r->ops->forget(r);
		r->lazy_started = false;
		pm__lazy_stop(r);
		err = atomic_load(&r->error);
		region_free(r);
		return err;
	}
	if (r->ops->detach)
		r->ops->detach(r);
	pm__lazy_stop(r);
	r->ops->close(r);
	err = atomic_load(&r->error);
	region_free(r);
	return err;
}

const void *pm_region_data(const pm_region *r)
{
	return r ? r->base : NULL;
}

size_t pm_region_length(const pm_region *r)
{
	return r ? r->length : 0;
}

int pm_region_error(const pm_region *r)
{
	return r ? atomic_load(&((pm_region *)r)->error) : -PM_ENULL;
}

int pm__out_struct(void *dst, const void *src, size_t ours)
{
	size_t want;

	memcpy(&want, dst, sizeof(want));
	if (want == 0)
		want = ours;
	/* Larger than any version this library knows: refused rather than
	 * trusted (an uninitialised size must not make us write past the
	 * caller's struct). */
	if (want < sizeof(size_t) || want > ours)
		return -PM_EOPTSIZE;
	memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
	       want - sizeof(size_t));
	return 0;
}

int pm_region_stats(const pm_region *cr, struct pm_stats *out)
{
	pm_region *r = (pm_region *)cr;
	struct pm_stats stats, *st = &stats;

	if (!r || !out)
		return -PM_ENULL;
	memset(st, 0, sizeof(*st));
	st->threads = r->nworkers;
	st->backend = r->backend;
	st->mechanism = atomic_load(&r->mechanism);
	st->chunk_bytes = r->chunk;
	st->budget_bytes = (r->nslots + (r->copy ? r->nbufs : 0)) * r->chunk;
	st->faults = atomic_load(&r->faults);
	st->chunks_filled = atomic_load(&r->chunks_filled);
	st->bytes_filled = atomic_load(&r->bytes_filled);
	st->evictions = atomic_load(&r->evictions);
	st->readahead_fills = atomic_load(&r->readahead_fills);
	st->readahead_hits = atomic_load(&r->readahead_hits);
	st->fill_errors = atomic_load(&r->fill_errors);
	st->resident_bytes = atomic_load(&r->resident);
	st->peak_resident_bytes = atomic_load(&r->peak_resident);
	st->fill_ns = atomic_load(&r->fill_ns);
	st->memory_available = r->memory_available;
	st->budget_lowered = r->budget_lowered;
	return pm__out_struct(out, st, sizeof(*st));
}
