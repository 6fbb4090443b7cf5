/* doctor.c: `patchmap doctor`. Which lazy backends work on this machine and
 * why, what each missing piece costs and how to enable it: the library's
 * pm_system_probe facts in the library's own report (pm_system_report, the
 * text patchmap.doctor() prints too), or as JSON for scripts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

static const char *usage =
	"usage: patchmap doctor [--json]\n"
	"Which backends work here and why: kernel, userfaultfd (system call,\n"
	"user-mode-only, /dev/userfaultfd, vm.unprivileged_userfaultfd, UFFDIO_MOVE,\n"
	"UFFDIO_POISON), transparent huge pages, seccomp; a small region opened on\n"
	"each backend; then what each missing piece costs and the commands that\n"
	"enable it.\n"
	"  --json    the facts as one JSON object\n"
	"  --help    this text\n";

static void put_json(const struct pm_system *s)
{
	struct json j;

	json_begin(&j, stdout);
	json_str(&j, "command", "doctor");
	json_str(&j, "version", pm_version());
	json_str(&j, "kernel", s->kernel);
	json_str(&j, "machine", s->machine);
	json_i64(&j, "unprivileged_userfaultfd", s->unprivileged_userfaultfd);
	json_i64(&j, "uffd_full", s->uffd_full);
	json_i64(&j, "uffd_user_only", s->uffd_user_only);
	json_i64(&j, "dev_userfaultfd", s->dev_userfaultfd);
	json_i64(&j, "uffd_api", s->uffd_api);
	json_u64(&j, "uffd_features", s->uffd_features);
	json_bool(&j, "uffd_move", s->uffd_move);
	json_bool(&j, "uffd_poison", s->uffd_poison);
	json_bool(&j, "uffd_write_protect", s->uffd_write_protect);
	json_str(&j, "thp", s->thp);
	json_i64(&j, "seccomp", s->seccomp);
	json_str(&j, "backend_env", s->backend_env);
	json_obj(&j, "backends");
	for (int b = PM_BACKEND_AUTO; b < PM_BACKEND_NONE; b++) {
		const struct pm_backend_probe *p = &s->probe[b];

		json_obj(&j, pm_backend_name(b));
		json_i64(&j, "error", p->err);
		json_str(&j, "message", p->err ? pm_strerror(p->err) : NULL);
		json_str(&j, "backend", pm_backend_name(p->backend));
		json_u64(&j, "mechanism", p->mechanism);
		json_close(&j, '}');
	}
	json_close(&j, '}');
	json_obj(&j, "memory");
	if (s->memory.kind == PM_MEMORY_UNKNOWN)
		json_null(&j, "available");
	else
		json_u64(&j, "available", s->memory.available);
	json_str(&j, "source", s->memory.source);
	json_str(&j, "cgroup", s->memory.cgroup);
	json_u64(&j, "limit", s->memory.limit);
	json_u64(&j, "used", s->memory.used);
	json_u64(&j, "machine_available", s->memory.machine_available);
	json_close(&j, '}');
	json_end(&j);
}

int cmd_doctor(int argc, char **argv)
{
	struct pm_system s = { .size = sizeof(s) };
	bool json = false;
	char *text;
	int n, err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 0;
		} else {
			cli_err("doctor: unknown argument '%s' (see patchmap doctor --help)", argv[i]);
			return cli_exit(EXIT_USAGE);
		}
	}
	if (json)
		cli_json_errors(stdout);
	if ((err = pm_system_probe(&s))) {
		cli_err("doctor: %s", pm_strerror(err));
		return cli_exit(1);
	}
	if (json) {
		put_json(&s);
	} else {
		n = pm_system_report(&s, NULL, 0);
		if (n < 0 || !(text = malloc((size_t)n + 1))) {
			cli_err("doctor: %s", n < 0 ? pm_strerror(n) : "out of memory");
			return cli_exit(1);
		}
		pm_system_report(&s, text, (size_t)n + 1);
		fputs(text, stdout);
		free(text);
	}
	if (fflush(stdout) || ferror(stdout)) {
		cli_err("standard output: %s", strerror(errno ? errno : EIO));
		return cli_exit(1);
	}
	return cli_exit(0);
}
