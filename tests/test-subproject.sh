#!/bin/sh
# test-subproject.sh SOURCEDIR MESON
# Builds tests/subproject, a parent project whose dependency('patchmap') is
# this checkout as a subproject (a wrap file naming the directory, which is a
# symlink to the checkout), even where an installed libpatchmap exists, and
# runs its program. Exit 0 pass, 1 fail, 77 skip.
set -eu
src=$1 meson=$2
command -v ninja >/dev/null || { echo "ninja not found: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-parent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}

cp "$src/tests/subproject/meson.build" "$src/tests/subproject/parent.c" "$tmp/"
mkdir "$tmp/subprojects"
ln -s "$src" "$tmp/subprojects/patchmap"
printf '[wrap-file]\ndirectory = patchmap\n\n[provide]\npatchmap = patchmap_dep\n' \
	>"$tmp/subprojects/patchmap.wrap"
cd "$tmp"
"$meson" setup build --force-fallback-for=patchmap >setup.log 2>&1 || { cat setup.log; fail "meson setup of the parent"; }
grep -q "^Executing subproject patchmap" setup.log && grep -q "^Dependency patchmap found: YES .*(overridden)" setup.log ||
	{ cat setup.log; fail "dependency('patchmap') did not come from the subproject"; }
# Only what the parent needs: the library and its program.
ninja -C build parent >build.log 2>&1 || { cat build.log; fail "build of the parent"; }
./build/parent || fail "the parent's program"
echo "subproject: ok"
