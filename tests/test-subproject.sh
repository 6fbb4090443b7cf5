#!/bin/sh
# test-subproject.sh SOURCEDIR MESON [IMAGE]
# Builds tests/subproject, a parent project whose dependency('patchmap') is
# this checkout as a subproject (a wrap file naming the directory, which is a
# symlink to the checkout), even where an installed libpatchmap exists, and
# runs its program; with IMAGE "enabled" (the checkout's build has
# libpatchmap-image), its dependency('patchmap-image') too, from the same
# subproject. Exit 0 pass, 1 fail, 77 skip.
set -eu
src=$1 meson=$2 image=${3:-disabled}
command -v ninja >/dev/null || { echo "ninja not found: skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-parent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}

cp "$src/tests/subproject/meson.build" "$src/tests/subproject/meson_options.txt" \
	"$src/tests/subproject/parent.c" "$src/tests/subproject/parent-image.c" "$tmp/"
mkdir "$tmp/subprojects"
ln -s "$src" "$tmp/subprojects/patchmap"
printf '[wrap-file]\ndirectory = patchmap\n\n[provide]\npatchmap = patchmap_dep\npatchmap-image = patchmap_image_dep\n' \
	>"$tmp/subprojects/patchmap.wrap"
cd "$tmp"
"$meson" setup build --force-fallback-for=patchmap,patchmap-image -Dimage="$image" \
	-Dpatchmap:image="$image" >setup.log 2>&1 || { cat setup.log; fail "meson setup of the parent"; }
grep -q "^Executing subproject patchmap" setup.log && grep -q "^Dependency patchmap found: YES .*(overridden)" setup.log ||
	{ cat setup.log; fail "dependency('patchmap') did not come from the subproject"; }
# Only what the parent needs: the libraries and its programs.
targets=parent
if [ "$image" = enabled ]; then
	grep -q "^Dependency patchmap-image found: YES .*(overridden)" setup.log ||
		{ cat setup.log; fail "dependency('patchmap-image') did not come from the subproject"; }
	targets="parent parent-image"
fi
ninja -C build $targets >build.log 2>&1 || { cat build.log; fail "build of the parent"; }
./build/parent || fail "the parent's program"
if [ "$image" = enabled ]; then
	# A 6 x 4 PGM whose sample at (y, x) is y * 4 + x + 10.
	{ printf 'P5\n4 6\n255\n'; i=10; while [ $i -lt 34 ]; do printf "\\$(printf %o $i)"; i=$((i + 1)); done; } >img.pgm
	./build/parent-image img.pgm || fail "the parent's image program"
fi
echo "subproject: ok"
