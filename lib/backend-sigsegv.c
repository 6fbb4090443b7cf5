/* backend-sigsegv.c: no userfaultfd needed. The range is reserved PROT_NONE;
 * a SIGSEGV handler turns a read fault on it into pm__fault() steps and
 * sleeps on the chunk's state word until a filler has mapped the chunk.
 * Fillers write a pool slot off to the side, make it read-only and mremap it
 * onto the chunk (MREMAP_DONTUNMAP keeps both ranges reserved), so no thread
 * ever sees a half-filled page; eviction mprotects the chunk PROT_NONE and
 * mremaps its pages back into the slot. The handler only makes system calls
 * and touches atomics: no locks, no allocation. Faults that are not ours
 * (other addresses, writes, other processes after fork) go to the handler
 * that was installed before ours, or to the default action. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "backend.h"
#include "sys.h"

#define MAX_REGIONS 1024

/* Every mremap'd chunk is a VMA of its own, and the pool splits likewise:
 * stay far below vm.max_map_count (65530 by default). */
#define MAX_SLOTS 4096

/* Live regions, read by the handler without locks. A handler marks the
 * entry busy before it reads the pointer; removal clears the pointer and
 * waits until the entry is no longer busy. */
static struct {
	_Atomic(struct pm_region *) region;
	_Atomic int inflight;
} registry[MAX_REGIONS];
static _Atomic int registry_used; /* entries [0, used) may be live */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous;
static bool installed;

static bool is_write(const void *uc)
{
#if defined(__x86_64__)
	const ucontext_t *u = uc;

	return u->uc_mcontext.gregs[REG_ERR] & 2; /* page-fault error code: W/R */
#else
	(void)uc;
	return false;
#endif
}

/* Hands the fault to whoever had SIGSEGV before us. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	if (previous.sa_flags & SA_SIGINFO) {
		if (previous.sa_sigaction) {
			previous.sa_sigaction(sig, si, uc);
			return;
		}
	} else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
		previous.sa_handler(sig);
		return;
	}
	if (previous.sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* a sent SIGSEGV the application chose to ignore */
	/* The default action: restore it, then let the fault happen again
	 * (or re-send a sent signal, pending until this handler returns). */
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	pm__sigaction(SIGSEGV, &dfl, NULL);
	if (si->si_code <= 0)
		pm__tgkill(pm__getpid(), pm__gettid(), SIGSEGV);
}

/* Serves a read fault on r. Returns false for a write (not ours to fix). */
static bool serve(struct pm_region *r, char *a, void *uc)
{
	size_t c = (size_t)(a - r->base) / r->chunk;
	pid_t tid = pm__gettid();

	if (is_write(uc))
		return false;
	atomic_fetch_add_explicit(&r->faults, 1, memory_order_relaxed);
	for (;;) {
		uint32_t st = pm__fault(r, c, tid, true);

		if (st == PM__RESIDENT)
			return true;
		if (st == PM__FAILED) {
			/* Pending until the handler returns: the access then
			 * ends in SIGBUS, as on poisoned memory. */
			pm__tgkill(r->pid, tid, SIGBUS);
			return true;
		}
		pm__futex_wait((uint32_t *)&r->state[c], st);
	}
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	char *a = si->si_addr;

	if (si->si_code > 0) { /* raised by a fault, not sent */
		pid_t pid = pm__getpid();
		int used = atomic_load(&registry_used);

		for (int i = 0; i < used; i++) {
			struct pm_region *r;
			bool served = false, ours;

			atomic_fetch_add(&registry[i].inflight, 1);
			r = atomic_load(&registry[i].region);
			ours = r && r->pid == pid && a >= r->base && a < r->base + r->span;
			if (ours)
				served = serve(r, a, uc);
			atomic_fetch_sub(&registry[i].inflight, 1);
			if (served) {
				errno = saved;
				return;
			}
			if (ours)
				break;
		}
	}
	chain(sig, si, uc);
	errno = saved;
}

static int install(void)
{
	struct sigaction sa;
	int err;

	if (installed)
		return 0;
	/* Read the old handler first: a foreign fault in another thread may
	 * reach ours as soon as it is installed. */
	if ((err = pm__sigaction(SIGSEGV, NULL, &previous)))
		return err;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	/* The handler may wait a long time for a fill: the application's
	 * signals (Ctrl-C's SIGINT, SIGTERM, timers) must still reach the
	 * thread meanwhile, so the mask blocks only two. SIGSEGV itself (no
	 * SA_NODEFER): a fault nested in the handler is never served by a
	 * second, re-entered handler on the same chunk (the handler touches
	 * only the region's malloc'd state, never the lazy range). SIGBUS:
	 * the one the handler sends for a failed chunk must stay pending
	 * until the handler has returned and left the registry, so that it
	 * hits the access, as on poisoned memory. An application handler
	 * that runs meanwhile must return, not jump out (the region stays
	 * marked in use until this handler returns). */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGBUS);
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	if ((err = pm__sigaction(SIGSEGV, &sa, NULL)))
		return err;
	installed = true;
	return 0;
}

static int registry_add(struct pm_region *r)
{
	int err;

	pthread_mutex_lock(&registry_lock);
	err = install();
	for (int i = 0; !err && i < MAX_REGIONS; i++) {
		if (atomic_load(&registry[i].region))
			continue;
		atomic_store(&registry[i].region, r);
		if (i >= atomic_load(&registry_used))
			atomic_store(&registry_used, i + 1);
		pthread_mutex_unlock(&registry_lock);
		return 0;
	}
	pthread_mutex_unlock(&registry_lock);
	return err ? err : -EMFILE;
}

static void registry_remove(struct pm_region *r)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < atomic_load(&registry_used); i++) {
		if (atomic_load(&registry[i].region) != r)
			continue;
		atomic_store(&registry[i].region, NULL);
		while (atomic_load(&registry[i].inflight))
			sched_yield();
		break;
	}
	pthread_mutex_unlock(&registry_lock);
}

/* In a child of fork(): the lock may have been held by a thread that does
 * not exist here, and an in-flight count may be one such thread's. */
static void registry_forget(struct pm_region *r)
{
	for (int i = 0; i < atomic_load(&registry_used); i++) {
		struct pm_region *e = r;

		if (atomic_compare_exchange_strong(&registry[i].region, &e, NULL))
			break;
	}
}

static int sigsegv_probe(bool for_auto)
{
	(void)for_auto;
#if defined(__x86_64__)
	return 0;
#else
	/* Telling a write fault from a read needs the architecture's fault
	 * record; only x86-64's is read here. */
	return -ENOSYS;
#endif
}

static int sigsegv_slot_prepare(struct pm_region *r, size_t slot, bool fresh)
{
	char *p = pm__slot_addr(r, slot);

	/* Back from eviction a slot is writable already (then this changes
	 * nothing); after a move that failed it may be read-only. */
	return fresh ? pm__populate(p, r->chunk) : pm__mprotect(p, r->chunk, PROT_READ | PROT_WRITE);
}

/* The slots are made read-only here, just before they move, rather than
 * after each fill: one mprotect then covers a run of slots. (mremap moves a
 * range within one mapping only: slots whose mappings did not merge make
 * the call fail, and the caller moves them one by one.) */
static int sigsegv_map_in(struct pm_region *r, size_t c, size_t slot, size_t n)
{
	char *s = pm__slot_addr(r, slot);
	int err = pm__mprotect(s, n * r->chunk, PROT_READ);

	return err ? err : pm__mremap_move(s, n * r->chunk, pm__chunk_addr(r, c));
}

static int sigsegv_map_out(struct pm_region *r, size_t c, size_t slot, size_t n)
{
	char *p = pm__chunk_addr(r, c), *s = pm__slot_addr(r, slot);
	size_t len = n * r->chunk;
	int err;

	/* PROT_NONE first: the emptied range must fault, not read zeros. */
	err = pm__mprotect(p, len, PROT_NONE);
	if (!err && (err = pm__mremap_move(p, len, s))) {
		pm__mprotect(p, len, PROT_READ);
		return err;
	}
	/* Writable again for the next fill, all the run's slots in one call
	 * (slot_prepare's own mprotect then changes nothing). */
	pm__mprotect(s, len, PROT_READ | PROT_WRITE);
	/* The hole left behind is still the moved mapping (the pool's flags
	 * and anon_vma), which never merges with the reservation: replace it
	 * by one just like the reservation, so that it merges, and the
	 * process's mapping count stays bounded by the budget instead of
	 * growing with every chunk ever touched. MAP_FIXED replaces the range
	 * in one step: it is never free for another mmap to take. */
	/* If that fails, the hole is still correct (PROT_NONE), just a
	 * mapping of its own. */
	pm__mmap_anon(p, len, PROT_NONE, MAP_NORESERVE | MAP_FIXED);
	return 0;
}

static void sigsegv_poison(struct pm_region *r, size_t c)
{
	/* The FAILED state is the poison: the handler raises SIGBUS. */
	(void)r;
	(void)c;
}

static void sigsegv_close(struct pm_region *r)
{
	if (r->base) {
		pm__fork_release(r->base);
		pm__munmap(r->base, r->span);
	}
	if (r->pool)
		pm__munmap(r->pool, r->nslots * r->chunk);
}

static int sigsegv_open(struct pm_region *r)
{
	size_t align = r->chunk > PM__THP_SIZE ? r->chunk : PM__THP_SIZE;
	bool huge = pm__hugepages(r->chunk);
	int err;

	r->base = pm__reserve(r->span, align, PROT_NONE);
	r->pool = pm__reserve(r->nslots * r->chunk, align, PROT_READ | PROT_WRITE);
	if (!r->base || !r->pool) {
		err = -ENOMEM;
		goto fail;
	}
	/* The reservation keeps the default flags, so that holes re-reserved
	 * after an eviction merge with it. Chunks mapped in carry the pool's
	 * flags: huge pages, and not inherited by fork (a child gets the whole
	 * range reserved again, pm__fork_reserve: any access raises SIGSEGV). */
	pm__madvise(r->pool, r->nslots * r->chunk, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if ((err = pm__madvise(r->pool, r->nslots * r->chunk, MADV_DONTFORK)) ||
	    (err = pm__fork_reserve(r->base, r->span, r->chunk)))
		goto fail;
	if ((err = registry_add(r)))
		goto fail;
	atomic_store(&r->mechanism, PM_MECH_MREMAP | (huge ? PM_MECH_HUGEPAGES : 0) |
					    PM_MECH_WRITE_PROTECT);
	return 0;
fail:
	sigsegv_close(r);
	r->base = r->pool = NULL;
	return err;
}

const struct pm__backend_ops pm__backend_sigsegv = {
	.id = PM_BACKEND_SIGSEGV,
	.lazy = true,
	.in_auto = true,
	.futex_waits = true,
	.max_slots = MAX_SLOTS,
	.probe = sigsegv_probe,
	.open = sigsegv_open,
	.slot_prepare = sigsegv_slot_prepare,
	.map_in = sigsegv_map_in,
	.map_out = sigsegv_map_out,
	.poison = sigsegv_poison,
	.detach = registry_remove,
	.close = sigsegv_close,
	.forget = registry_forget,
};
