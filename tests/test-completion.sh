#!/bin/sh
# test-completion.sh PATCHMAP PYTHON LIBRARY SOURCEDIR
# The bash completion against the tool and the library it cannot drift from:
# the options it offers after a command are those of `patchmap COMMAND
# --help`; the values it offers for --pad-mode, --backend, --dtype, --order
# and --layout are the library's names (pm_*_name); images complete by
# extension. Exit 0 pass, 1 fail, 77 skip.
set -eu
exe=$(readlink -f "$1") python=$2 library=$(readlink -f "$3") src=$(readlink -f "$4")
command -v bash >/dev/null || { echo "no bash: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-completion.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}
mkdir "$tmp/bin"
ln -s "$exe" "$tmp/bin/patchmap"
touch "$tmp/a.npy" "$tmp/b.pgm" "$tmp/c.txt" "$tmp/d.patchmap"

# complete WORD...: what the completion offers for the last word, sorted.
complete() {
	(cd "$tmp" && PATH="$tmp/bin:$PATH" bash -c '
		shopt -s extglob
		. "$1"; shift
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		_patchmap
		printf "%s\n" "${COMPREPLY[@]}" | sort' sh "$src/completion/patchmap.bash" "$@")
}

cmds=$("$exe" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
[ "$(echo $cmds | wc -w)" -ge 5 ] || fail "patchmap --help lists the commands '$cmds'"
for cmd in $cmds; do
	"$exe" "$cmd" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u >"$tmp/want"
	complete patchmap "$cmd" -- >"$tmp/got"
	diff "$tmp/want" "$tmp/got" || fail "options of $cmd: the completion (>) differs from --help (<)"
	echo "$cmd: $(wc -l <"$tmp/got") options"
done
[ "$(complete patchmap '' | tr '\n' ' ')" = "$(printf '%s\n' --help --version $cmds | sort | tr '\n' ' ')" ] ||
	fail "commands: $(complete patchmap '')"

# Values against the library's name tables.
"$python" - "$library" >"$tmp/names" <<'PY'
import ctypes, sys
L = ctypes.CDLL(sys.argv[1])
for opt, fn, extra in (("--pad-mode", "pm_pad_mode_name", []), ("--backend", "pm_backend_name", []),
                       ("--dtype", "pm_dtype_name", ["same"]), ("--order", "pm_order_name", []),
                       ("--layout", "pm_layout_name", [])):
    f = getattr(L, fn)
    f.restype = ctypes.c_char_p
    names = [f(i).decode() for i in range(64) if f(i)]
    if opt == "--backend":
        names.remove("none")  # no mapping: not a choice of the tool
    print(opt, " ".join(sorted(names + extra)))
PY
while read -r opt want; do
	got=$(complete patchmap export "$opt" '' | tr '\n' ' ')
	[ "$got" = "$want " ] || fail "$opt: the completion offers '$got', the library names '$want'"
done <"$tmp/names"
echo "values: $(wc -l <"$tmp/names") options match the library"

[ "$(complete patchmap info '' | tr '\n' ' ')" = "a.npy b.pgm bin d.patchmap " ] ||
	fail "images: $(complete patchmap info '' | tr '\n' ' ')"
[ "$(complete patchmap apply --filters '' | tr '\n' ' ')" = "a.npy bin " ] || fail "--filters"
echo "completion: ok"
