#!/bin/sh
# test-doctor-frontends.sh PATCHMAP PYTHON LIBRARY SOURCEDIR
# `patchmap doctor` and patchmap.doctor() print the same report, as they are
# and as uid nobody (setpriv); --json holds the same facts as the Python
# object; a bad argument is a usage error. Exit 0 pass, 1 fail.
set -eu
exe=$1 python=$2 library=$3 src=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-doctor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}
unset PATCHMAP_BACKEND
py() {
	env PYTHONPATH="$src/python" PATCHMAP_LIBRARY="$library" PYTHONDONTWRITEBYTECODE=1 "$python" "$@"
}

# The memory figures move between two reads: compared without them.
steady() {
	sed -E '/^(memory available|memory limit|MemAvailable|default budget|\* the)/s/[0-9.]+ (bytes|KiB|MiB|GiB|TiB|PiB)/N/g' "$1" >"$1.steady"
}
"$exe" doctor >"$tmp/tool" || fail "patchmap doctor exited $?"
py -m patchmap doctor >"$tmp/python" || fail "python -m patchmap doctor"
steady "$tmp/tool"
steady "$tmp/python"
diff "$tmp/tool.steady" "$tmp/python.steady" || fail "the tool and Python print different reports"
grep -q '^backend auto: ' "$tmp/tool" || fail "no backend line: $(cat "$tmp/tool")"
echo "as is: the same $(wc -l <"$tmp/tool") lines"

# README.md shows the report: its fact lines name what the tool prints, in
# order (the values are one machine's).
names() { sed -n '/^$/q; s/^\([^:]*\):.*/\1/p' "$1"; }
# The first block after the heading that opens with a bare fence.
awk '/^### Does it work here/ { s = 1; next }
	s && /^```/ { if (open) { if (bare) exit; open = 0 } else { open = 1; bare = ($0 == "```") } next }
	s && open && bare { print }' "$src/README.md" >"$tmp/readme"
[ -s "$tmp/readme" ] || fail "README.md shows no doctor report"
names "$tmp/readme" >"$tmp/readme.names"
names "$tmp/tool" >"$tmp/tool.names"
diff "$tmp/readme.names" "$tmp/tool.names" || fail "README.md's doctor report names other facts than the tool"
echo "README: the same $(wc -l <"$tmp/tool.names") facts"

"$exe" doctor --json >"$tmp/json" || fail "patchmap doctor --json"
py - "$tmp/json" <<'PY' || fail "--json and patchmap.doctor() disagree"
import json, sys, patchmap
j = json.load(open(sys.argv[1]))
d = patchmap.doctor()
for k in ("kernel", "machine", "unprivileged_userfaultfd", "uffd_full", "uffd_user_only",
          "dev_userfaultfd", "uffd_api", "uffd_features", "uffd_move", "uffd_poison", "thp",
          "seccomp", "backend_env"):
    assert j[k] == getattr(d, k), (k, j[k], getattr(d, k))
for name, p in d.backends.items():
    assert j["backends"][name]["error"] == p.error, name
    assert j["backends"][name]["backend"] == p.backend, name
assert d.backends["eager"].works
m = patchmap.memory_available()
assert j["memory"]["source"] == d.memory.source == m.source, (j["memory"], d.memory, m)
assert j["memory"]["cgroup"] == d.memory.cgroup == m.cgroup
assert 0 < m.available <= m.machine_available and m.kind != "unknown", m
print("json: the same facts;", "auto takes", d.backends["auto"].backend)
PY

if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
	$nobody "$exe" doctor >"$tmp/tool-nobody" || fail "patchmap doctor as nobody"
	$nobody env PYTHONPATH="$src/python" PATCHMAP_LIBRARY="$library" PYTHONDONTWRITEBYTECODE=1 \
		"$python" -m patchmap doctor >"$tmp/python-nobody" || fail "python -m patchmap doctor as nobody"
	steady "$tmp/tool-nobody"
	steady "$tmp/python-nobody"
	diff "$tmp/tool-nobody.steady" "$tmp/python-nobody.steady" || fail "as nobody, the tool and Python differ"
	if grep -q '^vm.unprivileged_userfaultfd: 0$' "$tmp/tool-nobody" &&
		grep -q '^/dev/userfaultfd: refused' "$tmp/tool-nobody"; then
		grep -q '^userfaultfd: user-mode-only' "$tmp/tool-nobody" || fail "nobody: $(cat "$tmp/tool-nobody")"
		grep -q '^    sysctl -w vm.unprivileged_userfaultfd=1$' "$tmp/tool-nobody" || fail "nobody: no sysctl advice"
	fi
	echo "as nobody: the same $(wc -l <"$tmp/tool-nobody") lines"
else
	echo "not root or no setpriv: the unprivileged comparison was not run"
fi

set +e
"$exe" doctor --bogus >"$tmp/out" 2>"$tmp/err"
st=$?
set -e
[ "$st" -eq 2 ] || fail "doctor --bogus exited $st, want 2"
grep -q "unknown argument '--bogus'" "$tmp/err" || fail "doctor --bogus said: $(cat "$tmp/err")"
echo "doctor: ok"
