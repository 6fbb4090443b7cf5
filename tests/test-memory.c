/* test-memory: the reading of the memory a process may take (lib/memory.c,
 * built into this test) on made-up /proc and /sys trees: the machine alone,
 * cgroup v1 and v2 hierarchies walked to their root, a container's view
 * without a cgroup namespace, escaped mount points, full and unreadable
 * cgroups; and the budget rule built on it (lib/memory.h). */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/memory.h"
#include "helpers.h"

#define MiB ((uint64_t)1 << 20)

static char root[64];

/* Writes `text` to root/path, making the directories on the way. */
__attribute__((format(printf, 2, 3))) static void put(const char *path, const char *fmt, ...)
{
	char full[512];
	va_list ap;
	FILE *f;

	snprintf(full, sizeof(full), "%s%s", root, path);
	for (char *p = full + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(full, 0755);
		*p = '/';
	}
	f = fopen(full, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fresh_root(void)
{
	if (root[0])
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	snprintf(root, sizeof(root), "/tmp/pm-memory-XXXXXX");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(root));
}

static void meminfo(uint64_t total_mib, uint64_t avail_mib)
{
	put("/proc/meminfo",
	    "MemTotal:       %llu kB\nMemFree:         1000 kB\nMemAvailable:   %llu kB\n"
	    "Buffers:           0 kB\n",
	    (unsigned long long)total_mib * 1024, (unsigned long long)avail_mib * 1024);
}

static const char *mountinfo_v1 =
	"22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
	"30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
	"31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	"34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	"40 30 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";

static struct pm_memory read_tree(void)
{
	struct pm_memory m;

	memset(&m, 0xa5, sizeof(m));
	CU_ASSERT_EQUAL(pm__memory_read(root, &m), 0);
	CU_ASSERT_EQUAL(m.size, sizeof(m));
	return m;
}

static void test_machine_only(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_MACHINE);
	CU_ASSERT_EQUAL(m.available, 22000 * MiB);
	CU_ASSERT_EQUAL(m.machine_available, 22000 * MiB);
	CU_ASSERT_EQUAL(m.limit, 24000 * MiB);
	CU_ASSERT_EQUAL(m.used, 2000 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "");
	CU_ASSERT_STRING_EQUAL(m.source, "the machine's available memory (MemAvailable)");
}

static void test_nothing_readable(void)
{
	struct pm_memory m;

	fresh_root();
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_UNKNOWN);
	CU_ASSERT_EQUAL(m.available, UINT64_MAX);
	CU_ASSERT_STRING_EQUAL(m.source, "");
	CU_ASSERT_EQUAL(pm__default_budget(&m), PM_DEFAULT_BUDGET);
}

/* v1: the process's cgroup is unlimited, its parent is not; the parent's
 * inactive file cache counts as free. */
static void test_v1_ancestor(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	put("/proc/self/cgroup", "5:devices:/job/step\n4:memory:/job/step\n"
				 "2:cpu,cpuacct:/job\n0::/\n");
	put("/proc/self/mountinfo", "%s", mountinfo_v1);
	put("/sys/fs/cgroup/memory/job/step/memory.limit_in_bytes", "9223372036854771712\n");
	put("/sys/fs/cgroup/memory/job/step/memory.usage_in_bytes", "%llu\n",
	    (unsigned long long)(60 * MiB));
	put("/sys/fs/cgroup/memory/job/memory.limit_in_bytes", "%llu\n",
	    (unsigned long long)(200 * MiB));
	put("/sys/fs/cgroup/memory/job/memory.usage_in_bytes", "%llu\n",
	    (unsigned long long)(120 * MiB));
	put("/sys/fs/cgroup/memory/job/memory.stat", "cache 1\ninactive_file 7\n"
						    "total_inactive_file %llu\n",
	    (unsigned long long)(20 * MiB));
	put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
	put("/sys/fs/cgroup/memory/memory.usage_in_bytes", "%llu\n",
	    (unsigned long long)(3000 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_V1);
	CU_ASSERT_EQUAL(m.available, 100 * MiB);
	CU_ASSERT_EQUAL(m.limit, 200 * MiB);
	CU_ASSERT_EQUAL(m.used, 100 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/job");
	CU_ASSERT_STRING_EQUAL(m.source, "the cgroup memory limit of /job");
	CU_ASSERT_EQUAL(m.machine_available, 22000 * MiB);
	CU_ASSERT_EQUAL(pm__default_budget(&m), 50 * MiB);

	/* the step's own limit, tighter, wins */
	put("/sys/fs/cgroup/memory/job/step/memory.limit_in_bytes", "%llu\n",
	    (unsigned long long)(100 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.available, 40 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/job/step");

	/* usage above the limit: nothing left, not a wrapped figure */
	put("/sys/fs/cgroup/memory/job/step/memory.usage_in_bytes", "%llu\n",
	    (unsigned long long)(150 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_V1);
	CU_ASSERT_EQUAL(m.available, 0);
	CU_ASSERT_EQUAL(pm__default_budget(&m), 0);
}

/* v2: memory.max and memory.high on every level, the least left wins. */
static void test_v2_levels(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	put("/proc/self/cgroup", "0::/a/b\n");
	put("/proc/self/mountinfo", "25 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 "
				    "rw,nsdelegate\n");
	put("/sys/fs/cgroup/a/b/memory.max", "max\n");
	put("/sys/fs/cgroup/a/b/memory.high", "%llu\n", (unsigned long long)(300 * MiB));
	put("/sys/fs/cgroup/a/b/memory.current", "%llu\n", (unsigned long long)(100 * MiB));
	put("/sys/fs/cgroup/a/b/memory.stat", "anon 1\ninactive_file %llu\nactive_file 9\n",
	    (unsigned long long)(10 * MiB));
	put("/sys/fs/cgroup/a/memory.max", "%llu\n", (unsigned long long)(1000 * MiB));
	put("/sys/fs/cgroup/a/memory.high", "max\n");
	put("/sys/fs/cgroup/a/memory.current", "%llu\n", (unsigned long long)(200 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_HIGH);
	CU_ASSERT_EQUAL(m.available, 210 * MiB);
	CU_ASSERT_EQUAL(m.limit, 300 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/a/b");
	CU_ASSERT_STRING_EQUAL(m.source, "the cgroup memory.high of /a/b");

	put("/sys/fs/cgroup/a/memory.max", "%llu\n", (unsigned long long)(250 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_MAX);
	CU_ASSERT_EQUAL(m.available, 50 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/a");
	CU_ASSERT_STRING_EQUAL(m.source, "the cgroup memory limit of /a");

	/* a machine with less left than any cgroup */
	meminfo(24000, 30);
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_MACHINE);
	CU_ASSERT_EQUAL(m.available, 30 * MiB);

	/* garbage in a file is no limit */
	meminfo(24000, 22000);
	put("/sys/fs/cgroup/a/memory.max", "lots\n");
	put("/sys/fs/cgroup/a/b/memory.high", "\n");
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_MACHINE);
}

/* v2 in a container with its own cgroup namespace: the process is at "/",
 * whose limit is the mount's root. */
static void test_v2_namespace_root(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	put("/proc/self/cgroup", "0::/\n");
	put("/proc/self/mountinfo", "25 1 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n");
	put("/sys/fs/cgroup/memory.max", "%llu\n", (unsigned long long)(512 * MiB));
	put("/sys/fs/cgroup/memory.current", "%llu\n", (unsigned long long)(12 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_MAX);
	CU_ASSERT_EQUAL(m.available, 500 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/");
}

/* v1 in a container without a cgroup namespace: /proc/self/cgroup names
 * the host's path, the mount's root is that cgroup, and the limit is at
 * the mount point. A mount point with a blank comes escaped. */
static void test_v1_container_view(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	put("/proc/self/cgroup", "9:memory:/docker/abc123\n");
	put("/proc/self/mountinfo",
	    "34 30 0:31 /docker/abc123 /sys/fs/cgroup/my\\040memory ro,relatime master:15 - "
	    "cgroup cgroup rw,memory\n");
	put("/sys/fs/cgroup/my memory/memory.limit_in_bytes", "%llu\n",
	    (unsigned long long)(300 * MiB));
	put("/sys/fs/cgroup/my memory/memory.usage_in_bytes", "%llu\n",
	    (unsigned long long)(44 * MiB));
	m = read_tree();
	CU_ASSERT_EQUAL(m.kind, PM_MEMORY_CGROUP_V1);
	CU_ASSERT_EQUAL(m.available, 256 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/docker/abc123");
	CU_ASSERT_EQUAL(pm__default_budget(&m), 128 * MiB);

	/* a path outside the mount's root (another namespace's view): the
	 * mount's root is the nearest cgroup there is */
	put("/proc/self/cgroup", "9:memory:/elsewhere\n");
	m = read_tree();
	CU_ASSERT_EQUAL(m.available, 256 * MiB);
}

/* The hierarchy carrying the memory controller, not another v1 one. */
static void test_v1_which_hierarchy(void)
{
	struct pm_memory m;

	fresh_root();
	meminfo(24000, 22000);
	put("/proc/self/cgroup", "3:cpu,cpuacct:/x\n4:memory:/y\n");
	put("/proc/self/mountinfo", "%s", mountinfo_v1);
	put("/sys/fs/cgroup/cpu,cpuacct/x/memory.limit_in_bytes", "%llu\n",
	    (unsigned long long)(10 * MiB));
	put("/sys/fs/cgroup/cpu,cpuacct/x/memory.usage_in_bytes", "0\n");
	put("/sys/fs/cgroup/memory/y/memory.limit_in_bytes", "%llu\n",
	    (unsigned long long)(100 * MiB));
	put("/sys/fs/cgroup/memory/y/memory.usage_in_bytes", "0\n");
	m = read_tree();
	CU_ASSERT_EQUAL(m.available, 100 * MiB);
	CU_ASSERT_STRING_EQUAL(m.cgroup, "/y");
}

static void test_resident_bound(void)
{
	size_t c = 4 * MiB;

	CU_ASSERT_EQUAL(pm__resident_bound(100 * MiB, c, false, 8 * MiB), 100 * MiB);
	CU_ASSERT_EQUAL(pm__resident_bound(100 * MiB + 1, c, false, 8 * MiB), 104 * MiB);
	CU_ASSERT_EQUAL(pm__resident_bound(100 * MiB, c, true, PM_BUDGET_UNLIMITED), 100 * MiB);
	CU_ASSERT_EQUAL(pm__resident_bound(100 * MiB, c, true, 10 * MiB), 8 * MiB);
	CU_ASSERT_EQUAL(pm__resident_bound(100 * MiB, c, true, 1), 8 * MiB);
	CU_ASSERT_EQUAL(pm__resident_bound(5 * MiB, c, true, 1024 * MiB), 8 * MiB);
}

/* The public call, on this machine: whatever binds, the figures agree. */
static void test_public(void)
{
	struct pm_memory m = { .size = sizeof(m) };
	struct { size_t size; uint64_t available; } small = { .size = sizeof(small) };

	CU_ASSERT_EQUAL(pm_memory_available(&m), 0);
	CU_ASSERT(m.kind > PM_MEMORY_UNKNOWN && m.kind < PM_MEMORY_KIND_COUNT);
	CU_ASSERT(m.available <= m.machine_available || m.kind == PM_MEMORY_UNKNOWN);
	CU_ASSERT(m.source[0] != 0);
	CU_ASSERT_EQUAL(pm_memory_available((struct pm_memory *)&small), 0);
	CU_ASSERT_EQUAL(small.size, sizeof(small));
	CU_ASSERT(small.available > 0);
	m.size = sizeof(m) + 8;
	CU_ASSERT_EQUAL(pm_memory_available(&m), -PM_EOPTSIZE);
	CU_ASSERT_EQUAL(pm_memory_available(NULL), -PM_ENULL);
	CU_ASSERT_EQUAL(pm_error_errno(-PM_EMEMORY), ENOMEM);
	CU_ASSERT(strstr(pm_strerror(-PM_EMEMORY), "cgroup") != NULL);
}

int main(int argc, char **argv)
{
	static const struct t_test tests[] = {
		{ "machine_only", test_machine_only },
		{ "nothing_readable", test_nothing_readable },
		{ "v1_ancestor", test_v1_ancestor },
		{ "v2_levels", test_v2_levels },
		{ "v2_namespace_root", test_v2_namespace_root },
		{ "v1_container_view", test_v1_container_view },
		{ "v1_which_hierarchy", test_v1_which_hierarchy },
		{ "resident_bound", test_resident_bound },
		{ "public", test_public },
	};
	int code;

	if (CU_initialize_registry() != CUE_SUCCESS ||
	    !t_add_suite("memory", tests, T_COUNT(tests), argc > 1 ? argv[1] : NULL))
		return 1;
	code = t_run_registered();
	if (root[0])
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return code;
}
