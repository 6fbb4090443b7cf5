/* backend-uffd.c: userfaultfd. The range is registered for missing faults; a
 * poller thread turns each fault into a pm__fault() step. Chunks of whole
 * 2 MiB huge pages are moved: filled pool slots go onto the chunk with
 * UFFDIO_MOVE (one page-table entry per huge page) and back on eviction, so
 * physical pages are recycled, never freed, and resident chunks are write-
 * protected, so a stray write faults as on read-only memory. Smaller chunks
 * are copied: a fill writes a staging buffer whose pages never move, and
 * UFFDIO_COPY puts a copy of it in a read-only range; evictions drop the
 * pages of several chunks in one call. A move of small pages pays a TLB
 * flush per page, and the next write to each moved page costs about as
 * much as a copy of it (bench/README.md, section 5). Kernels without
 * UFFDIO_MOVE copy always. */
#include <sched.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "sys.h"

struct uffd {
	int fd;
	int stop_fd;
	pthread_t poller;
	bool poller_started;
	bool move, wp;
	_Atomic int pidfd;    /* for dropping many chunks in one call, or -1 */
	int pidfd_own;        /* the descriptor to close, or -1 */
	/* The poller's own fill: the page its reader waits for (copied
	 * first), and the chunk (the poller's alone). */
	size_t first_chunk, first_off;
	_Atomic bool poison;  /* UFFDIO_POISON granted, and not refused since */
	uint64_t reg_mode;
};

/* ---------------------------------------------------------------- setup */

/* Opens a userfaultfd the way this process may: the system call, then
 * /dev/userfaultfd, then user-mode-only (kernel accesses not handled). */
static int uffd_new(bool *user_only)
{
	int fd = pm__userfaultfd(O_CLOEXEC | O_NONBLOCK);
	int err = fd, dev;

	*user_only = false;
	if (fd >= 0)
		return fd;
	dev = pm__open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		/* The ioctl's argument is the flags, by value. */
		fd = pm__ioctl(dev, USERFAULTFD_IOC_NEW, (void *)(uintptr_t)(O_CLOEXEC | O_NONBLOCK));
		pm__close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = pm__userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		*user_only = true;
		return fd;
	}
	return err;
}

static int uffd_api(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };
	int err = pm__ioctl(fd, UFFDIO_API, &api);

	/* The kernel answers with every feature it supports, not only those
	 * asked for: what is in force is the intersection (all, when probing). */
	if (!err && got)
		*got = want ? api.features & want : api.features;
	return err;
}

/* What the kernel offers, asked once per process. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_err;
static uint64_t probe_features;

static void probe_run(void)
{
	bool user_only;
	int fd = uffd_new(&user_only);

	if (fd < 0) {
		probe_err = fd;
	} else {
		probe_err = uffd_api(fd, 0, &probe_features);
		pm__close(fd);
	}
}

static int uffd_probe(bool for_auto)
{
	pthread_once(&probe_once, probe_run);
	if (probe_err)
		return probe_err;
	if (!(probe_features & UFFD_FEATURE_THREAD_ID))
		return -ENOSYS;
	/* Without MOVE it works, slowly (UFFDIO_COPY): "auto" then prefers
	 * the SIGSEGV backend. */
	return !for_auto || probe_features & UFFD_FEATURE_MOVE ? 0 : -ENOSYS;
}

static bool uffd_copies(size_t chunk, bool tight)
{
	pthread_once(&probe_once, probe_run);
	return !(probe_features & UFFD_FEATURE_MOVE) || (!tight && !pm__hugepages(chunk));
}

static int range_ioctl(int fd, unsigned long req, void *addr, size_t len)
{
	struct uffdio_range rg = { (uintptr_t)addr, len };

	return pm__ioctl(fd, req, &rg);
}

static int do_register(struct uffd *u, void *addr, size_t len)
{
	struct uffdio_register reg = { .range = { (uintptr_t)addr, len }, .mode = u->reg_mode };

	return pm__ioctl(u->fd, UFFDIO_REGISTER, &reg);
}

/* Moves len bytes. The kernel may stop early or refuse for a moment
 * (-EAGAIN: a page under migration or lock contention; -EBUSY: a page
 * briefly pinned); both pass, so retry them a bounded number of times. */
static int move_pages(int fd, char *dst, char *src, size_t len, uint64_t mode, size_t *moved)
{
	int tries = 0;

	if (moved)
		*moved = 0;
	while (len) {
		struct uffdio_move m = { (uintptr_t)dst, (uintptr_t)src, len, mode, 0 };
		int err = pm__ioctl(fd, UFFDIO_MOVE, &m);

		if (!err)
			return 0;
		if (m.move > 0) {
			dst += m.move;
			src += m.move;
			len -= (size_t)m.move;
			if (moved)
				*moved += (size_t)m.move;
			tries = 0;
			continue;
		}
		if ((err != -EAGAIN && err != -EBUSY) || ++tries > 200)
			return err;
		sched_yield();
	}
	return 0;
}

static int copy_pages(int fd, char *dst, char *src, size_t len)
{
	while (len) {
		struct uffdio_copy cp = { (uintptr_t)dst, (uintptr_t)src, len, 0, 0 };
		int err = pm__ioctl(fd, UFFDIO_COPY, &cp);

		if (err && !(err == -EAGAIN && cp.copy > 0))
			return err;
		if (!err)
			return 0;
		dst += cp.copy;
		src += cp.copy;
		len -= (size_t)cp.copy;
	}
	return 0;
}

/* The region whose poller this thread is, if any. */
static _Thread_local struct uffd *poller_of;

/* Async-signal-safe, like every op the front-end calls. */
static int uffd_map_in(struct pm_region *r, size_t c, size_t slot, size_t n)
{
	struct uffd *u = r->bk;
	char *dst = pm__chunk_addr(r, c), *src = pm__slot_addr(r, slot);
	size_t len = n * r->chunk, moved;
	int err;

	if (!u->move) {
		/* Copying: each slot has its own staging buffer. The poller's
		 * reader gets its page first and runs while the rest comes. */
		size_t first = poller_of == u && n == 1 && c == u->first_chunk ? u->first_off : 0;

		err = 0;
		for (size_t k = 0; k < n && !err; k++) {
			char *d = dst + k * r->chunk, *s = pm__slot_addr(r, slot + k);

			err = copy_pages(u->fd, d + first, s + first, r->chunk - first);
			if (!err)
				err = copy_pages(u->fd, d, s, first);
		}
		if (err) /* a failed map_in maps nothing */
			pm__madvise(dst, len, MADV_DONTNEED);
		return err; /* a copy wakes the readers */
	}
	err = move_pages(u->fd, dst, src, len, u->wp ? UFFDIO_MOVE_MODE_DONTWAKE : 0, &moved);
	if (err && moved) /* the slot keeps the whole chunk, or nothing moved */
		move_pages(u->fd, src, dst, moved, UFFDIO_MOVE_MODE_DONTWAKE, NULL);
	if (err || !u->wp)
		return err;
	/* Protect before anyone is woken: no window for a stray write.
	 * (Protecting never wakes; DONTWAKE is refused with it.) */
	struct uffdio_writeprotect wp = { { (uintptr_t)dst, len }, UFFDIO_WRITEPROTECT_MODE_WP };
	err = pm__ioctl(u->fd, UFFDIO_WRITEPROTECT, &wp);
	if (err) {
		move_pages(u->fd, src, dst, len, UFFDIO_MOVE_MODE_DONTWAKE, NULL);
		return err;
	}
	return range_ioctl(u->fd, UFFDIO_WAKE, dst, len);
}

static int uffd_map_out(struct pm_region *r, size_t c, size_t slot, size_t n)
{
	struct uffd *u = r->bk;
	char *src = pm__chunk_addr(r, c), *dst;
	size_t len = n * r->chunk, moved = 0;
	int err;

	if (!u->move)
		return pm__madvise(src, len, MADV_DONTNEED); /* the slot has no buffer now */
	dst = pm__slot_addr(r, slot);
	err = move_pages(u->fd, dst, src, len, UFFDIO_MOVE_MODE_DONTWAKE, &moved);
	/* Half a chunk would read as holes that fault forever: put back what
	 * moved, so that a failure leaves the chunk wholly resident. */
	if (err && moved)
		move_pages(u->fd, src, dst, moved, UFFDIO_MOVE_MODE_DONTWAKE, NULL);
	return err;
}

static int uffd_drop(struct pm_region *r, const size_t *chunks, size_t n)
{
	struct uffd *u = r->bk;
	struct iovec iov[PM__MAX_DROP];
	int pidfd = atomic_load_explicit(&u->pidfd, memory_order_relaxed);

	for (size_t k = 0; k < n; k++)
		iov[k] = (struct iovec){ pm__chunk_addr(r, chunks[k]), r->chunk };
	if (pidfd >= 0) {
		ssize_t done = pm__process_madvise(pidfd, iov, n, MADV_DONTNEED);

		if (done == (ssize_t)(n * r->chunk))
			return 0;
		if (done < 0 && done != -EAGAIN && done != -EINTR)
			atomic_store(&u->pidfd, -1); /* refused here: stop asking */
	}
	for (size_t k = 0; k < n; k++) {
		int err = pm__madvise(iov[k].iov_base, r->chunk, MADV_DONTNEED);

		if (err)
			return err;
	}
	return 0;
}

static int uffd_slot_prepare(struct pm_region *r, size_t slot, bool fresh)
{
	struct uffd *u = r->bk;
	char *p = pm__slot_addr(r, slot);
	int err;

	if (!fresh || !u->move)
		return 0; /* copying: a staging buffer fills in on first use */
	/* Populate first, then register: a move needs its destination
	 * registered, and a registered missing page would fault to us. */
	err = pm__populate(p, r->chunk);
	if (!err && u->move)
		err = do_register(u, p, r->chunk);
	return err;
}

static void uffd_poison(struct pm_region *r, size_t c)
{
	struct uffd *u = r->bk;
	struct uffdio_poison p = { { (uintptr_t)pm__chunk_addr(r, c), r->chunk }, 0, 0 };

	/* Without poison (before Linux 6.6, or refused: a seccomp filter may
	 * know no newer ioctl) the readers are woken into a refault, which
	 * finds the chunk FAILED and sends them SIGBUS. */
	if (atomic_load(&u->poison) && pm__ioctl(u->fd, UFFDIO_POISON, &p) == 0)
		return;
	if (atomic_exchange(&u->poison, false))
		atomic_fetch_and(&r->mechanism, ~(unsigned)PM_MECH_POISON);
	range_ioctl(u->fd, UFFDIO_WAKE, pm__chunk_addr(r, c), r->chunk);
}

/* Serves one fault message. Returns the chunk if it needs a fill, else
 * PM__NONE. */
static size_t on_fault(struct pm_region *r, struct uffd *u, const struct uffd_msg *m)
{
	char *a = (char *)(uintptr_t)m->arg.pagefault.address;
	pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
	size_t c;
	uint32_t st;

	if (a < r->base || a >= r->base + r->span) {
		/* A pool page went missing: never expected. Give it a page so
		 * that no filler hangs; the chunk's content is refilled anyway. */
		struct uffdio_zeropage z = { { (uintptr_t)a & ~(uintptr_t)4095, 4096 }, 0, 0 };

		pm__ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
		return PM__NONE;
	}
	if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
		/* A write to a resident, read-only chunk: what the MMU would do. */
		pm__tgkill(r->pid, tid, SIGSEGV);
		return PM__NONE;
	}
	c = (size_t)(a - r->base) / r->chunk;
	atomic_fetch_add_explicit(&r->faults, 1, memory_order_relaxed);
	st = pm__fault(r, c, tid, false);
	if (st == PM__RESIDENT || (st == PM__FAILED && atomic_load(&u->poison)))
		range_ioctl(u->fd, UFFDIO_WAKE, pm__chunk_addr(r, c), r->chunk);
	else if (st == PM__FAILED)
		pm__tgkill(r->pid, tid, SIGBUS);
	return (st & PM__STATE_MASK) == PM__QUEUED ? c : PM__NONE;
}

static void *poller_main(void *arg)
{
	struct pm_region *r = arg;
	struct uffd *u = r->bk;
	struct pollfd p[2] = { { .fd = u->fd, .events = POLLIN }, { .fd = u->stop_fd, .events = POLLIN } };
	struct uffd_msg msgs[32];

	poller_of = u;
	/* The poller fills the first chunk a batch of faults needs itself: it
	 * runs on a CPU that the blocked reader left idle, and a hand-off to a
	 * filler would cost a wake-up. Further chunks go to the fillers. */
	for (;;) {
		size_t mine = PM__NONE, c;
		pid_t mine_tid = 0;
		ssize_t n;

		int err = pm__poll(p, 2, -1);

		if (err < 0 && err != -EINTR)
			return NULL;
		if (p[1].revents)
			return NULL;
		n = pm__read(u->fd, msgs, sizeof(msgs));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			c = on_fault(r, u, &msgs[i]);
			if (c == PM__NONE || c == mine)
				continue;
			if (mine == PM__NONE) {
				mine = c;
				mine_tid = (pid_t)msgs[i].arg.pagefault.feat.ptid;
				u->first_off = ((size_t)msgs[i].arg.pagefault.address - (uintptr_t)r->base) %
					       r->chunk / 4096 * 4096;
			} else {
				pm__queue_demand(r, c, (pid_t)msgs[i].arg.pagefault.feat.ptid);
			}
		}
		if (mine != PM__NONE) {
			u->first_chunk = mine;
			pm__fill_now(r, mine, mine_tid);
			u->first_chunk = PM__NONE;
		}
	}
}

/* Closes the descriptors and frees the state; the memory stays (a child of
 * fork() calls only this: the range is the parent's). */
static void uffd_forget(struct pm_region *r)
{
	struct uffd *u = r->bk;

	if (!u)
		return;
	if (u->fd >= 0)
		pm__close(u->fd);
	if (u->stop_fd >= 0)
		pm__close(u->stop_fd);
	if (u->pidfd_own >= 0)
		pm__close(u->pidfd_own);
	free(u);
	r->bk = NULL;
}

static void uffd_close(struct pm_region *r)
{
	struct uffd *u = r->bk;

	if (!u)
		return;
	if (r->base) {
		pm__fork_release(r->base);
		pm__munmap(r->base, r->span);
	}
	if (r->pool)
		pm__munmap(r->pool, pm__pool_chunks(r) * r->chunk);
	uffd_forget(r);
}

static void uffd_detach(struct pm_region *r)
{
	struct uffd *u = r->bk;
	uint64_t one = 1;

	if (u && u->poller_started) {
		pm__write(u->stop_fd, &one, sizeof(one)); /* cannot fail on an eventfd */
		pthread_join(u->poller, NULL);
		u->poller_started = false;
	}
}

static int uffd_open(struct pm_region *r)
{
	struct uffd *u = calloc(1, sizeof(*u));
	size_t align = r->chunk > PM__THP_SIZE ? r->chunk : PM__THP_SIZE;
	uint64_t want, got = 0;
	bool user_only, huge;
	int err, advice;

	if (!u)
		return -ENOMEM;
	r->bk = u;
	u->stop_fd = -1;
	u->pidfd_own = r->copy ? pm__pidfd_self() : -1;
	atomic_store(&u->pidfd, u->pidfd_own);
	u->first_chunk = PM__NONE;
	u->fd = uffd_new(&user_only);
	if (u->fd < 0) {
		err = u->fd;
		goto fail;
	}
	want = UFFD_FEATURE_THREAD_ID | (probe_features & UFFD_FEATURE_POISON);
	if (!r->copy)
		want |= probe_features & UFFD_FEATURE_MOVE;
	if ((want & UFFD_FEATURE_MOVE) && !(r->flags & PM_LAZY_WRITABLE))
		want |= probe_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if ((err = uffd_api(u->fd, want, &got)))
		goto fail;
	u->move = got & UFFD_FEATURE_MOVE;
	u->wp = got & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	atomic_store(&u->poison, (got & UFFD_FEATURE_POISON) != 0);
	u->reg_mode = UFFDIO_REGISTER_MODE_MISSING | (u->wp ? UFFDIO_REGISTER_MODE_WP : 0);

	if (!u->move && !r->copy) {
		/* The region chose moving; the kernel will not. */
		err = -ENOSYS;
		goto fail;
	}
	/* The kernel moves pages only between writable VMAs; the consumer
	 * sees a const pointer, and write protection keeps it honest. A copy
	 * into a read-only VMA gives read-only pages. */
	r->base = pm__reserve(r->span, align,
			      u->move || (r->flags & PM_LAZY_WRITABLE) ? PROT_READ | PROT_WRITE : PROT_READ);
	r->pool = pm__reserve(pm__pool_chunks(r) * r->chunk, align, PROT_READ | PROT_WRITE);
	if (!r->base || !r->pool) {
		err = -ENOMEM;
		goto fail;
	}
	huge = pm__hugepages(r->chunk);
	advice = huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
	pm__madvise(r->base, r->span, advice);
	pm__madvise(r->pool, pm__pool_chunks(r) * r->chunk, advice);
	/* A child must not share the pages (a move needs them exclusive) nor
	 * see an unserved range: there, any access raises SIGSEGV. */
	if ((err = pm__madvise(r->base, r->span, MADV_DONTFORK)) ||
	    (err = pm__madvise(r->pool, pm__pool_chunks(r) * r->chunk, MADV_DONTFORK)) ||
	    (err = pm__fork_reserve(r->base, r->span, r->chunk)))
		goto fail;
	if ((err = do_register(u, r->base, r->span)))
		goto fail;
	u->stop_fd = pm__eventfd();
	if (u->stop_fd < 0) {
		err = u->stop_fd;
		goto fail;
	}
	atomic_store(&r->mechanism, (user_only ? PM_MECH_UFFD_USER_ONLY : PM_MECH_UFFD_FULL) |
					    (u->move ? PM_MECH_MOVE : PM_MECH_COPY) |
					    (huge ? PM_MECH_HUGEPAGES : 0) |
					    (u->wp ? PM_MECH_WRITE_PROTECT : 0) |
					    (atomic_load(&u->poison) ? PM_MECH_POISON : 0));
	err = pm__spawn(&u->poller, poller_main, r, "patchmap-uffd");
	if (err)
		goto fail;
	u->poller_started = true;
	return 0;
fail:
	uffd_close(r);
	r->base = r->pool = NULL;
	return err;
}

const struct pm__backend_ops pm__backend_uffd = {
	.id = PM_BACKEND_UFFD,
	.lazy = true,
	.in_auto = true,
	.probe = uffd_probe,
	.copies = uffd_copies,
	.open = uffd_open,
	.slot_prepare = uffd_slot_prepare,
	.map_in = uffd_map_in,
	.map_out = uffd_map_out,
	.drop = uffd_drop,
	.poison = uffd_poison,
	.detach = uffd_detach,
	.close = uffd_close,
	.forget = uffd_forget,
};
