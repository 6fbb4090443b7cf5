/* memory.c: how much memory this process may still take, and whose limit
 * says so: the machine's MemAvailable, and the memory limits of the cgroup
 * the process runs in and of each of its ancestors (cgroup v2 memory.max and
 * memory.high, cgroup v1 memory.limit_in_bytes), found through
 * /proc/self/cgroup and /proc/self/mountinfo. A few small files are read:
 * cheap enough for every open. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

/* A limit at or above this is no limit: cgroup v1 writes "unlimited" as
 * the largest page count in bytes (9223372036854771712 with 4 KiB pages). */
#define NO_LIMIT ((uint64_t)1 << 60)

#define PATH_LEN 4096

struct reader {
	const char *root; /* prefixed to every absolute path ("" in use) */
	struct pm_memory *m;
};

static FILE *open_at(const struct reader *rd, const char *path)
{
	char full[PATH_LEN];

	if ((size_t)snprintf(full, sizeof(full), "%s%s", rd->root, path) >= sizeof(full))
		return NULL;
	return fopen(full, "re");
}

/* A file holding one number (or "max"): 0 and *v, or -1 if absent or
 * unreadable. "max" and absurd figures are NO_LIMIT. */
static int read_u64(const struct reader *rd, const char *dir, const char *name, uint64_t *v)
{
	char path[PATH_LEN], buf[64], *end;
	unsigned long long x;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -1;
	f = open_at(rd, path);
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	if (!strncmp(buf, "max", 3)) {
		*v = NO_LIMIT;
		return 0;
	}
	if (buf[0] < '0' || buf[0] > '9')
		return -1;
	x = strtoull(buf, &end, 10);
	if (end == buf)
		return -1;
	*v = x >= NO_LIMIT ? NO_LIMIT : (uint64_t)x;
	return 0;
}

/* The value of `key` in a "key value" file (memory.stat), 0 if absent. */
static uint64_t stat_field(const struct reader *rd, const char *dir, const char *key)
{
	char path[PATH_LEN], line[256];
	size_t n = strlen(key);
	uint64_t v = 0;
	FILE *f;

	if ((size_t)snprintf(path, sizeof(path), "%s/memory.stat", dir) >= sizeof(path))
		return 0;
	f = open_at(rd, path);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* /proc/meminfo: MemAvailable and MemTotal in bytes, 0 if absent. */
static void read_meminfo(const struct reader *rd, uint64_t *avail, uint64_t *total)
{
	char line[160];
	FILE *f = open_at(rd, "/proc/meminfo");

	*avail = *total = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		uint64_t kib;

		if (!strncmp(line, "MemAvailable:", 13)) {
			kib = strtoull(line + 13, NULL, 10);
			*avail = kib > UINT64_MAX / 1024 ? UINT64_MAX : kib * 1024;
		} else if (!strncmp(line, "MemTotal:", 9)) {
			kib = strtoull(line + 9, NULL, 10);
			*total = kib > UINT64_MAX / 1024 ? UINT64_MAX : kib * 1024;
		}
	}
	fclose(f);
}

/* Offers a constraint: it replaces the current one if it leaves less. */
static void offer(struct pm_memory *m, int kind, uint64_t limit, uint64_t used, const char *cgroup)
{
	uint64_t avail = used >= limit ? 0 : limit - used;
	size_t n;

	if (avail >= m->available)
		return;
	m->kind = kind;
	m->available = avail;
	m->limit = limit;
	m->used = used;
	/* cut to the field (a path may be longer than any message) */
	n = strlen(cgroup);
	if (n >= sizeof(m->cgroup))
		n = sizeof(m->cgroup) - 1;
	memcpy(m->cgroup, cgroup, n);
	m->cgroup[n] = 0;
	switch (kind) {
	case PM_MEMORY_MACHINE:
		snprintf(m->source, sizeof(m->source), "the machine's available memory (MemAvailable)");
		break;
	case PM_MEMORY_CGROUP_HIGH:
		snprintf(m->source, sizeof(m->source), "the cgroup memory.high of %s", m->cgroup);
		break;
	default:
		snprintf(m->source, sizeof(m->source), "the cgroup memory limit of %s", m->cgroup);
		break;
	}
}

/* The mount of a cgroup hierarchy: where it is mounted and which cgroup
 * its root is (a container without a cgroup namespace sees its own cgroup
 * mounted, and /proc/self/cgroup still naming it from the host's root). */
struct mount {
	char point[PATH_LEN];
	char root[PATH_LEN];
};

/* mountinfo escapes blanks and backslashes as \ooo. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++, w++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w = *r;
		}
	}
	*w = 0;
}

/* Whether the comma-separated list `opts` holds `word`. */
static bool has_option(const char *opts, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = opts; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == 0))
			return true;
	return false;
}

/* The first mount of a cgroup2 hierarchy (v2) or of the v1 hierarchy
 * carrying the memory controller, preferring one whose root holds `path`.
 * 0, or -1 if there is none. */
static int find_mount(const struct reader *rd, bool v2, const char *path, struct mount *out)
{
	char line[3 * PATH_LEN];
	FILE *f = open_at(rd, "/proc/self/mountinfo");
	bool found = false;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *field[6], *sep, *fstype, *super, *save = NULL;
		int n = 0;

		line[strcspn(line, "\n")] = 0;
		sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = 0;
		fstype = strtok_r(sep + 3, " ", &save);
		strtok_r(NULL, " ", &save); /* the mount source */
		super = strtok_r(NULL, " ", &save);
		if (!fstype || strcmp(fstype, v2 ? "cgroup2" : "cgroup"))
			continue;
		if (!v2 && !has_option(super, "memory"))
			continue;
		save = NULL;
		for (char *t = strtok_r(line, " ", &save); t && n < 6; t = strtok_r(NULL, " ", &save))
			field[n++] = t;
		if (n < 5)
			continue;
		unescape(field[3]);
		unescape(field[4]);
		if (found && strncmp(path, field[3], strlen(field[3])))
			continue;
		snprintf(out->root, sizeof(out->root), "%s", field[3]);
		snprintf(out->point, sizeof(out->point), "%s", field[4]);
		found = true;
		if (!strncmp(path, field[3], strlen(field[3])))
			break;
	}
	fclose(f);
	return found ? 0 : -1;
}

/* The cgroup paths of this process from /proc/self/cgroup: the v2 one
 * ("0::/path") and the v1 memory controller's ("N:...memory...:/path"). */
static void read_self_cgroup(const struct reader *rd, char *v2, char *v1, size_t len)
{
	char line[PATH_LEN + 256];
	FILE *f = open_at(rd, "/proc/self/cgroup");

	v2[0] = v1[0] = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;

		if (!b)
			continue;
		line[strcspn(line, "\n")] = 0;
		*a = *b = 0;
		if (!strcmp(line, "0") && a + 1 == b)
			snprintf(v2, len, "%s", b + 1);
		else if (has_option(a + 1, "memory"))
			snprintf(v1, len, "%s", b + 1);
	}
	fclose(f);
}

/* Walks the cgroup `path` of a hierarchy and each ancestor up to the
 * mount's root, offering each level's limits. */
static void walk(const struct reader *rd, bool v2, const char *path)
{
	struct mount mnt;
	char rel[PATH_LEN], dir[2 * PATH_LEN + 2], name[2 * PATH_LEN + 2];
	const char *r;
	size_t rootlen;

	if (!path[0] || find_mount(rd, v2, path, &mnt))
		return;
	/* The part of the path below the mount's root; a path outside it
	 * (another namespace's view) is the mount's root itself. */
	rootlen = strcmp(mnt.root, "/") ? strlen(mnt.root) : 0;
	r = !strncmp(path, mnt.root, rootlen) && (path[rootlen] == '/' || path[rootlen] == 0)
		    ? path + rootlen : "";
	snprintf(rel, sizeof(rel), "%s", r);
	for (;;) {
		size_t n = strlen(rel);
		uint64_t limit, high, used, inactive;

		while (n && rel[n - 1] == '/')
			rel[--n] = 0;
		snprintf(dir, sizeof(dir), "%s%s", mnt.point, rel);
		snprintf(name, sizeof(name), "%s%s", rootlen ? mnt.root : "", rel);
		if (!name[0])
			snprintf(name, sizeof(name), "/");
		/* Usage counts the page cache, which the kernel reclaims before
		 * it kills: the inactive files are as good as free (as
		 * MemAvailable counts them for the machine). */
		if (v2) {
			if (!read_u64(rd, dir, "memory.current", &used)) {
				inactive = stat_field(rd, dir, "inactive_file");
				used = inactive < used ? used - inactive : 0;
				if (!read_u64(rd, dir, "memory.max", &limit) && limit < NO_LIMIT)
					offer(rd->m, PM_MEMORY_CGROUP_MAX, limit, used, name);
				if (!read_u64(rd, dir, "memory.high", &high) && high < NO_LIMIT)
					offer(rd->m, PM_MEMORY_CGROUP_HIGH, high, used, name);
			}
		} else if (!read_u64(rd, dir, "memory.limit_in_bytes", &limit) && limit < NO_LIMIT &&
			   !read_u64(rd, dir, "memory.usage_in_bytes", &used)) {
			inactive = stat_field(rd, dir, "total_inactive_file");
			used = inactive < used ? used - inactive : 0;
			offer(rd->m, PM_MEMORY_CGROUP_V1, limit, used, name);
		}
		if (!n)
			break;
		*strrchr(rel, '/') = 0;
	}
}

int pm__memory_read(const char *root, struct pm_memory *m)
{
	struct reader rd = { root ? root : "", m };
	char v2[PATH_LEN], v1[PATH_LEN];
	uint64_t avail, total;

	memset(m, 0, sizeof(*m));
	m->size = sizeof(*m);
	m->available = UINT64_MAX;
	read_meminfo(&rd, &avail, &total);
	m->machine_available = avail;
	if (total && avail <= total)
		offer(m, PM_MEMORY_MACHINE, total, total - avail, "");
	else if (avail)
		offer(m, PM_MEMORY_MACHINE, avail, 0, "");
	read_self_cgroup(&rd, v2, v1, sizeof(v2));
	walk(&rd, true, v2);
	walk(&rd, false, v1);
	return 0;
}
