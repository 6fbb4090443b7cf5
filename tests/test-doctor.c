/* test-doctor.c: pm_system_probe and pm_system_report against what the test
 * finds out by itself (uname, its own userfaultfd calls, /proc), in three
 * child processes: as it is; as uid nobody (userfaultfd user-mode-only when
 * vm.unprivileged_userfaultfd is 0, /dev/userfaultfd refused); and under a
 * seccomp filter refusing userfaultfd(2), as nobody too, where no
 * userfaultfd is left and auto must take the sigsegv backend. Exit 0 pass,
 * 1 fail, 77 when no scenario could run. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <patchmap.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static int failures;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                               \
			printf("\n");                                      \
			failures++;                                        \
		}                                                          \
	} while (0)

static char report[16384];

static void probe(struct pm_system *s)
{
	int n;

	memset(s, 0xa5, sizeof(*s));
	s->size = sizeof(*s);
	CHECK(pm_system_probe(s) == 0, "probe failed");
	n = pm_system_report(s, report, sizeof(report));
	CHECK(n > 0 && (size_t)n < sizeof(report) && strlen(report) == (size_t)n, "report length %d", n);
}

/* Seccomp: of /proc/self/status, as this process sees it. */
static int own_seccomp(void)
{
	char line[256];
	int mode = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp: %d", &mode) == 1)
			break;
	if (f)
		fclose(f);
	return mode;
}

static int sys_uffd(int flags)
{
	long fd = syscall(SYS_userfaultfd, flags | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	close((int)fd);
	return 0;
}

/* The fixed part: these names, in this order, each once, on every machine. */
static void check_fixed_lines(void)
{
	static const char *keys[] = {
		"libpatchmap: ", "kernel: Linux ", "userfaultfd: ", "userfaultfd(2): ",
		"userfaultfd(2) user-mode-only: ", "/dev/userfaultfd: ",
		"vm.unprivileged_userfaultfd: ", "UFFDIO_MOVE: ", "UFFDIO_POISON: ",
		"transparent huge pages: ", "seccomp: ", "PATCHMAP_BACKEND: ", "backend auto: ",
		"backend uffd: ", "backend sigsegv: ", "backend eager: ", "memory available: ",
		"memory limit: ", "MemAvailable: ", "default budget: ",
	};
	const char *p = report;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		CHECK(!strncmp(p, keys[i], strlen(keys[i])), "line %zu is not '%s...': %.40s", i, keys[i], p);
		p = strchr(p, '\n');
		if (!p)
			return;
		p++;
	}
	CHECK(*p == '\n', "no blank line after the facts");
	CHECK(p[1] != 0, "nothing after the facts");
}

/* What every scenario checks against the test's own view. */
static void check_common(const struct pm_system *s, int want_seccomp)
{
	struct utsname u;
	FILE *f;
	int sysctl = -1;

	CHECK(uname(&u) == 0 && !strcmp(s->kernel, u.release), "kernel '%s'", s->kernel);
	CHECK(!strcmp(s->machine, u.machine), "machine '%s'", s->machine);
	f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	if (f) {
		if (fscanf(f, "%d", &sysctl) != 1)
			sysctl = -1;
		fclose(f);
	}
	CHECK(s->unprivileged_userfaultfd == sysctl, "sysctl %d, read %d", s->unprivileged_userfaultfd, sysctl);
	CHECK(s->uffd_full == sys_uffd(0), "uffd_full %d", s->uffd_full);
	CHECK(s->uffd_user_only == sys_uffd(UFFD_USER_MODE_ONLY), "uffd_user_only %d", s->uffd_user_only);
	CHECK(s->seccomp == want_seccomp, "seccomp %d, want %d", s->seccomp, want_seccomp);
	CHECK(s->backend_env[0] == 0, "PATCHMAP_BACKEND '%s' (the test unsets it)", s->backend_env);
	CHECK(s->probe[PM_BACKEND_EAGER].err == 0 && s->probe[PM_BACKEND_EAGER].backend == PM_BACKEND_EAGER,
	      "eager: %d", s->probe[PM_BACKEND_EAGER].err);
	CHECK(s->probe[PM_BACKEND_AUTO].err == 0, "auto: %d", s->probe[PM_BACKEND_AUTO].err);
	/* A backend that works says how; uffd's mechanism says which mode. */
	if (!s->probe[PM_BACKEND_UFFD].err) {
		unsigned m = s->probe[PM_BACKEND_UFFD].mechanism;
		bool full = !s->uffd_full || !s->dev_userfaultfd;

		CHECK(m & (full ? PM_MECH_UFFD_FULL : PM_MECH_UFFD_USER_ONLY), "uffd mechanism %#x", m);
		CHECK(!!(m & PM_MECH_MOVE) == s->uffd_move, "uffd mechanism %#x, move %d", m, s->uffd_move);
	}
	check_fixed_lines();
}

static void sc_plain(void)
{
	struct pm_system s;
	char small[8];
	int n;

	probe(&s);
	check_common(&s, own_seccomp());
	/* Cut short: the whole length, NUL-terminated. */
	n = pm_system_report(&s, small, sizeof(small));
	CHECK(n == (int)strlen(report) && !strncmp(small, report, 7) && small[7] == 0, "cut %d", n);
	CHECK(pm_system_report(&s, NULL, 0) == n, "length only");
	CHECK(pm_system_report(NULL, small, sizeof(small)) == -PM_ENULL, "NULL system");
	CHECK(pm_system_report(&s, NULL, 5) == -PM_ENULL, "NULL buffer");
	CHECK(pm_system_probe(NULL) == -PM_ENULL, "NULL probe");
	s.size = 8;
	CHECK(pm_system_probe(&s) == -PM_EOPTSIZE, "bad size");
	if (s.uffd_api == 0)
		CHECK(strstr(report, "backend uffd: works"), "%s", report);
	printf("plain:\n%s", report);
}

static int become_nobody(void)
{
	if (geteuid() != 0)
		return -1;
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		return -1;
	return 0;
}

static int sc_nobody(void)
{
	struct pm_system s;

	if (become_nobody())
		return 77;
	probe(&s);
	check_common(&s, own_seccomp());
	CHECK(s.dev_userfaultfd != 0 || access("/dev/userfaultfd", R_OK | W_OK) == 0, "dev %d", s.dev_userfaultfd);
	if (s.unprivileged_userfaultfd == 0 && s.dev_userfaultfd && !s.uffd_user_only) {
		CHECK(s.uffd_full == -EPERM, "full %d", s.uffd_full);
		CHECK(s.probe[PM_BACKEND_AUTO].mechanism & PM_MECH_UFFD_USER_ONLY || !s.uffd_move,
		      "auto %#x", s.probe[PM_BACKEND_AUTO].mechanism);
		CHECK(strstr(report, "userfaultfd: user-mode-only"), "%s", report);
		CHECK(strstr(report, "numpy.save or write(2) from it, fail\n  with EFAULT"), "%s", report);
		CHECK(strstr(report, "    sysctl -w vm.unprivileged_userfaultfd=1\n"), "%s", report);
		CHECK(strstr(report, "/etc/sysctl.d/"), "%s", report);
		CHECK(strstr(report, "'KERNEL==\"userfaultfd\", GROUP=\"userfaultfd\", MODE=\"0660\"'"), "%s", report);
	} else {
		printf("nobody: userfaultfd is not user-mode-only here; its advice was not checked\n");
	}
	printf("nobody:\n%s", report);
	return 0;
}

static int deny_userfaultfd(void)
{
#if defined(__x86_64__)
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return -errno;
	return 0;
#else
	return -ENOSYS;
#endif
}

static int sc_seccomp(void)
{
	struct pm_system s;
	bool nobody = !become_nobody();

	if (deny_userfaultfd())
		return 77;
	probe(&s);
	check_common(&s, 2);
	CHECK(s.uffd_full == -EPERM && s.uffd_user_only == -EPERM, "%d %d", s.uffd_full, s.uffd_user_only);
	CHECK(strstr(report, "seccomp: filter\n"), "%s", report);
	if (nobody || s.dev_userfaultfd) {
		CHECK(s.uffd_api < 0, "uffd_api %d", s.uffd_api);
		CHECK(s.probe[PM_BACKEND_UFFD].err < 0, "uffd %d", s.probe[PM_BACKEND_UFFD].err);
		CHECK(s.probe[PM_BACKEND_AUTO].backend == PM_BACKEND_SIGSEGV, "auto took %d",
		      s.probe[PM_BACKEND_AUTO].backend);
		CHECK(s.probe[PM_BACKEND_SIGSEGV].err == 0 &&
		      s.probe[PM_BACKEND_SIGSEGV].mechanism & PM_MECH_MREMAP, "sigsegv");
		CHECK(strstr(report, "userfaultfd: unavailable\n"), "%s", report);
		CHECK(strstr(report, "backend uffd: refused ("), "%s", report);
		CHECK(strstr(report, "backend auto: sigsegv ("), "%s", report);
		CHECK(strstr(report, "* A seccomp filter refuses userfaultfd"), "%s", report);
		CHECK(strstr(report, "--security-opt seccomp="), "%s", report);
	} else {
		printf("seccomp: /dev/userfaultfd still gives userfaultfd; only the refusals were checked\n");
	}
	printf("seccomp:\n%s", report);
	return 0;
}

static int run(const char *name, int (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int r = fn();

		fflush(stdout);
		_exit(r == 77 ? 77 : failures ? 1 : 0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
		printf("FAIL %s: the child did not exit (status %#x)\n", name, st);
		return 1;
	}
	if (WEXITSTATUS(st) == 77)
		printf("%s: skipped (needs root to become nobody, or seccomp)\n", name);
	else
		printf("%s: %s\n", name, WEXITSTATUS(st) ? "FAIL" : "ok");
	return WEXITSTATUS(st);
}

static int plain(void)
{
	sc_plain();
	return 0;
}

int main(void)
{
	int r[3], ran = 0, bad = 0;

	unsetenv("PATCHMAP_BACKEND");
	r[0] = run("plain", plain);
	r[1] = run("nobody", sc_nobody);
	r[2] = run("seccomp", sc_seccomp);
	for (int i = 0; i < 3; i++) {
		ran += r[i] != 77;
		bad += r[i] != 77 && r[i] != 0;
	}
	return bad ? 1 : ran ? 0 : 77;
}
