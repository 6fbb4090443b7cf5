/* system.c: what this machine and process allow the lazy backends, and why
 * (pm_system_probe), and the one report of it that `patchmap doctor` and
 * patchmap.doctor() print (pm_system_report), with what each missing piece
 * costs and the commands that enable it. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "memory.h"
#include "patchmap.h"
#include "region.h"
#include "sys.h"

/* The first line of a small file, without its newline; "" if unreadable. */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = 0;
	buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static int read_int(const char *path)
{
	char buf[32];
	char *end;
	long v;

	read_line(path, buf, sizeof(buf));
	v = strtol(buf, &end, 10);
	return end == buf || v < 0 || v > 1000 ? -1 : (int)v;
}

static int seccomp_mode(void)
{
	char line[256];
	int mode = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Seccomp:", 8)) {
			mode = atoi(line + 8);
			break;
		}
	fclose(f);
	return mode;
}

/* The bracketed word of /sys/kernel/mm/transparent_hugepage/enabled. */
static void thp_mode(char *out, size_t len)
{
	char buf[128];
	char *a, *b;

	out[0] = 0;
	read_line("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf));
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (a && b && (size_t)(b - a - 1) < len)
		snprintf(out, len, "%.*s", (int)(b - a - 1), a + 1);
}

static int uffd_fd(int flags)
{
	long fd = syscall(SYS_userfaultfd, flags | O_CLOEXEC | O_NONBLOCK);

	return fd < 0 ? -errno : (int)fd;
}

static void probe_uffd(struct pm_system *s)
{
	int fds[3] = { -1, -1, -1 };
	int dev;

	fds[0] = uffd_fd(0);
	s->uffd_full = fds[0] < 0 ? fds[0] : 0;
	fds[1] = uffd_fd(UFFD_USER_MODE_ONLY);
	s->uffd_user_only = fds[1] < 0 ? fds[1] : 0;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	s->dev_userfaultfd = dev < 0 ? -errno : 0;
	if (dev >= 0) {
		fds[2] = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (fds[2] < 0)
			s->dev_userfaultfd = -errno;
		close(dev);
	}
	s->uffd_api = fds[0] < 0 ? fds[0] : 0;
	for (int i = 0; i < 3; i++) {
		if (fds[i] < 0)
			continue;
		if (!s->uffd_features) {
			struct uffdio_api api = { .api = UFFD_API };

			s->uffd_api = ioctl(fds[i], UFFDIO_API, &api) ? -errno : 0;
			if (!s->uffd_api)
				s->uffd_features = api.features;
		}
		close(fds[i]);
	}
	s->uffd_move = s->uffd_features & UFFD_FEATURE_MOVE;
	s->uffd_poison = s->uffd_features & UFFD_FEATURE_POISON;
	s->uffd_write_protect = s->uffd_features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
}

static int zero_fill(void *ctx, size_t offset, void *dst, size_t len)
{
	(void)ctx;
	(void)offset;
	memset(dst, 0, len);
	return 0;
}

static void probe_backend(struct pm_backend_probe *p, int backend)
{
	struct pm_region_opts o = {
		.size = sizeof(o),
		.length = (size_t)8 << 20,
		.fill = zero_fill,
		.lazy = { .backend = backend, .threads = 1, .readahead = -1 },
	};
	struct pm_stats st = { 0 };
	pm_region *r;

	p->backend = backend;
	p->mechanism = 0;
	p->err = pm_region_open(&o, &r);
	if (p->err)
		return;
	if (!pm_region_stats(r, &st)) {
		p->backend = st.backend;
		p->mechanism = st.mechanism;
	}
	p->err = pm_region_close(r);
}

int pm_memory_available(struct pm_memory *out)
{
	struct pm_memory m;

	if (!out)
		return -PM_ENULL;
	pm__memory_read(NULL, &m);
	return pm__out_struct(out, &m, sizeof(m));
}

int pm_system_probe(struct pm_system *out)
{
	struct utsname u;
	const char *env;

	if (!out)
		return -PM_ENULL;
	if (out->size != sizeof(*out))
		return -PM_EOPTSIZE;
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	if (!uname(&u)) {
		snprintf(out->kernel, sizeof(out->kernel), "%s", u.release);
		snprintf(out->machine, sizeof(out->machine), "%s", u.machine);
	}
	out->unprivileged_userfaultfd = read_int("/proc/sys/vm/unprivileged_userfaultfd");
	probe_uffd(out);
	thp_mode(out->thp, sizeof(out->thp));
	out->seccomp = seccomp_mode();
	env = getenv("PATCHMAP_BACKEND");
	snprintf(out->backend_env, sizeof(out->backend_env), "%s", env ? env : "");
	for (int b = PM_BACKEND_AUTO; b < PM_BACKEND_NONE; b++)
		probe_backend(&out->probe[b], b);
	pm__memory_read(NULL, &out->memory);
	return 0;
}

/* ------------------------------------------------------------------ report */

struct out {
	char *buf;
	size_t len, used;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->used < o->len ? o->buf + o->used : NULL,
		      o->used < o->len ? o->len - o->used : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

static const char *err_name(int err)
{
	switch (-err) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOENT: return "ENOENT";
	case ENOSYS: return "ENOSYS";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	default: return NULL;
	}
}

/* "ok", or "refused (EPERM: Operation not permitted)". */
static void put_result(struct out *o, int err)
{
	const char *name = err_name(err);

	/* System errors by strerror's short text: pm_strerror's advice for
	 * them is what the rest of the report gives. */
	const char *text = -err < PM_EFIRST ? strerror(-err) : pm_strerror(err);

	if (!err)
		put(o, "ok");
	else if (name)
		put(o, "refused (%s: %s)", name, text);
	else
		put(o, "refused (%s)", text);
}

static void put_mechanism(struct out *o, unsigned m)
{
	static const struct {
		unsigned bit;
		const char *text;
	} names[] = {
		{ PM_MECH_UFFD_FULL, "full userfaultfd" },
		{ PM_MECH_UFFD_USER_ONLY, "user-mode-only userfaultfd" },
		{ PM_MECH_MOVE, "UFFDIO_MOVE" },
		{ PM_MECH_COPY, "UFFDIO_COPY" },
		{ PM_MECH_MREMAP, "mremap" },
		{ PM_MECH_HUGEPAGES, "2 MiB huge pages" },
		{ PM_MECH_WRITE_PROTECT, "write-protected" },
		{ PM_MECH_POISON, "poison on failure" },
	};
	const char *sep = "";

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (m & names[i].bit) {
			put(o, "%s%s", sep, names[i].text);
			sep = ", ";
		}
}

/* 1.5 GiB, 150 MiB, 12.0 KiB. */
static void put_bytes(struct out *o, uint64_t bytes)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5)
		v /= 1024, u++;
	if (!u)
		put(o, "%.0f bytes", v);
	else
		put(o, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* The memory lines: what may still be taken, whose limit says so, and the
 * default budget it leaves. */
static void put_memory(struct out *o, const struct pm_memory *m)
{
	static const char *const kind[] = {
		[PM_MEMORY_UNKNOWN] = "unknown",
		[PM_MEMORY_MACHINE] = "MemTotal",
		[PM_MEMORY_CGROUP_V1] = "cgroup v1 memory.limit_in_bytes",
		[PM_MEMORY_CGROUP_MAX] = "cgroup v2 memory.max",
		[PM_MEMORY_CGROUP_HIGH] = "cgroup v2 memory.high",
	};
	size_t budget = pm__default_budget(m);

	put(o, "memory available: ");
	if (m->kind == PM_MEMORY_UNKNOWN || m->kind >= PM_MEMORY_KIND_COUNT) {
		put(o, "unknown\n");
	} else {
		put_bytes(o, m->available);
		put(o, " (%s)\n", m->source);
	}
	put(o, "memory limit: ");
	if (m->kind == PM_MEMORY_UNKNOWN || m->kind >= PM_MEMORY_KIND_COUNT) {
		put(o, "unknown\n");
	} else {
		if (m->kind == PM_MEMORY_MACHINE)
			put(o, "none below the machine's (MemTotal ");
		else
			put(o, "%s of %s (", kind[m->kind], m->cgroup);
		put_bytes(o, m->limit);
		put(o, ", ");
		put_bytes(o, m->used);
		put(o, " in use)\n");
	}
	put(o, "MemAvailable: ");
	if (m->machine_available) {
		put_bytes(o, m->machine_available);
		put(o, "\n");
	} else {
		put(o, "unknown\n");
	}
	put(o, "default budget: ");
	put_bytes(o, budget < 2 * PM_DEFAULT_CHUNK ? 2 * PM_DEFAULT_CHUNK : budget);
	if (budget < PM_DEFAULT_BUDGET)
		put(o, " (1/%d of the memory available)\n", PM_DEFAULT_BUDGET_SHARE);
	else
		put(o, " (at most 1/%d of the memory available)\n", PM_DEFAULT_BUDGET_SHARE);
}

static const char *user_only_cost =
	"  Costs: kernel reads of the matrix, such as numpy.save or write(2) from it, fail\n"
	"  with EFAULT; use pm_matrix_write, patchmap.save or `patchmap export` instead.\n";

static const char *enable_full =
	"  Enable full userfaultfd for every user (as root):\n"
	"    sysctl -w vm.unprivileged_userfaultfd=1\n"
	"    echo vm.unprivileged_userfaultfd=1 > /etc/sysctl.d/60-userfaultfd.conf\n"
	"  or, Linux 6.1 and later, for the members of a group only:\n"
	"    groupadd -f userfaultfd && usermod -aG userfaultfd \"$USER\"\n"
	"    echo 'KERNEL==\"userfaultfd\", GROUP=\"userfaultfd\", MODE=\"0660\"' \\\n"
	"      > /etc/udev/rules.d/60-userfaultfd.rules\n"
	"    udevadm control --reload && udevadm trigger --sysname-match=userfaultfd\n"
	"  (then log in again for the group to take effect).\n";

int pm_system_report(const struct pm_system *s, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	bool user_only, full, any_uffd, advice = false;

	if (!s || (!buf && len))
		return -PM_ENULL;
	if (len)
		buf[0] = 0;
	full = !s->uffd_full || !s->dev_userfaultfd;
	user_only = !full && !s->uffd_user_only;
	any_uffd = !s->uffd_api;

	put(&o, "libpatchmap: %s\n", pm_version());
	put(&o, "kernel: Linux %s %s\n", s->kernel[0] ? s->kernel : "?", s->machine);
	put(&o, "userfaultfd: %s\n",
	    full ? "full (kernel accesses handled too)" :
	    user_only ? "user-mode-only (kernel accesses of absent pages fail with EFAULT)" :
	    "unavailable");
	put(&o, "userfaultfd(2): ");
	put_result(&o, s->uffd_full);
	put(&o, "\nuserfaultfd(2) user-mode-only: ");
	put_result(&o, s->uffd_user_only);
	put(&o, "\n/dev/userfaultfd: ");
	put_result(&o, s->dev_userfaultfd);
	put(&o, "\nvm.unprivileged_userfaultfd: ");
	if (s->unprivileged_userfaultfd < 0)
		put(&o, "unknown");
	else
		put(&o, "%d", s->unprivileged_userfaultfd);
	put(&o, "\nUFFDIO_MOVE: %s\n", !any_uffd ? "unknown" : s->uffd_move ? "yes" : "no");
	put(&o, "UFFDIO_POISON: %s\n", !any_uffd ? "unknown" : s->uffd_poison ? "yes" : "no");
	put(&o, "transparent huge pages: %s\n", s->thp[0] ? s->thp : "unknown");
	put(&o, "seccomp: %s\n", s->seccomp == 0 ? "none" : s->seccomp == 1 ? "strict" :
				 s->seccomp == 2 ? "filter" : "unknown");
	put(&o, "PATCHMAP_BACKEND: %s\n", s->backend_env[0] ? s->backend_env : "unset");
	for (int b = PM_BACKEND_AUTO; b < PM_BACKEND_NONE; b++) {
		const struct pm_backend_probe *p = &s->probe[b];

		put(&o, "backend %s: ", pm_backend_name(b));
		if (p->err) {
			put_result(&o, p->err);
		} else {
			if (b == PM_BACKEND_AUTO)
				put(&o, "%s", pm_backend_name(p->backend));
			else
				put(&o, "works");
			if (p->mechanism) {
				put(&o, " (");
				put_mechanism(&o, p->mechanism);
				put(&o, ")");
			} else if (p->backend == PM_BACKEND_EAGER) {
				put(&o, " (computed whole at open: memory for all of it)");
			}
		}
		put(&o, "\n");
	}
	put_memory(&o, &s->memory);

	/* What is missing, what it costs, and how to change it. */
	put(&o, "\n");
	if (s->seccomp == 2 && !any_uffd) {
		advice = true;
		put(&o, "* A seccomp filter refuses userfaultfd to this process (a container's default\n"
			"  profile does). The sigsegv backend works instead, slower to fault in, and\n"
			"  kernel reads of the matrix fail with EFAULT; use pm_matrix_write,\n"
			"  patchmap.save or `patchmap export`. To allow it, run the container with a\n"
			"  profile that permits the userfaultfd system call (docker/podman:\n"
			"  --security-opt seccomp=PROFILE.json).\n");
	} else if (!full && !user_only) {
		advice = true;
		put(&o, "* userfaultfd is unavailable (a kernel without CONFIG_USERFAULTFD, or\n"
			"  refused). The sigsegv backend works instead; kernel reads of the matrix\n"
			"  fail with EFAULT: use pm_matrix_write, patchmap.save or `patchmap export`.\n");
	} else if (user_only) {
		advice = true;
		put(&o, "* userfaultfd is user-mode-only here: vm.unprivileged_userfaultfd is %d and\n"
			"  /dev/userfaultfd is %s.\n",
		    s->unprivileged_userfaultfd,
		    s->dev_userfaultfd == -ENOENT ? "absent (Linux before 6.1)" : "not open to this user");
		put(&o, "%s%s", user_only_cost, enable_full);
	}
	if (any_uffd && !s->uffd_move) {
		advice = true;
		put(&o, "* No UFFDIO_MOVE (Linux 6.8): the uffd backend copies pages in (UFFDIO_COPY),\n"
			"  and auto takes the sigsegv backend instead. A Linux 6.8 or later kernel\n"
			"  (Debian 12: bookworm-backports) recycles pages by moving them.\n");
	}
	if (any_uffd && !s->uffd_poison) {
		advice = true;
		put(&o, "* No UFFDIO_POISON (Linux 6.6): a chunk whose fill failed still raises SIGBUS\n"
			"  in its reader, by a slower path. Nothing to change but the kernel.\n");
	}
	if (!strcmp(s->thp, "never")) {
		advice = true;
		put(&o, "* Transparent huge pages are off: the pool of recycled pages is made of\n"
			"  4 KiB pages, so every chunk moved costs 512 page-table entries instead of\n"
			"  one. Enable them for the programs that ask (as root):\n"
			"    echo madvise > /sys/kernel/mm/transparent_hugepage/enabled\n");
	}
	if (s->backend_env[0]) {
		advice = true;
		put(&o, "* PATCHMAP_BACKEND=%s overrides what auto would pick; unset it to let\n"
			"  auto choose.\n", s->backend_env);
	}
	if (s->memory.kind != PM_MEMORY_UNKNOWN && s->memory.kind != PM_MEMORY_MACHINE &&
	    pm__default_budget(&s->memory) < PM_DEFAULT_BUDGET) {
		advice = true;
		put(&o, "* %s leaves room for ", s->memory.source);
		put_bytes(&o, s->memory.available);
		put(&o, " more: the default budget is lowered to half of that, and a\n"
			"  budget (or an eager matrix) above it is refused. To give the library\n"
			"  more, raise the job's memory limit (docker run --memory, Kubernetes\n"
			"  resources.limits.memory, Slurm --mem, systemd MemoryMax=).\n");
	}
	if (!advice)
		put(&o, "Nothing is missing: every backend works at its best here.\n");
	return o.used > (size_t)INT32_MAX ? -PM_ETOOBIG : (int)o.used;
}
