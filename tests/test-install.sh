#!/bin/sh
# test-install.sh BUILDDIR MESON VERSION SANITIZE SOURCEDIR
# Installs the build into a temporary directory and uses it as a user
# would: pkg-config finds it, a program compiles and links against it and
# runs; the library exports the public functions only, under its version
# node, with SONAME libpatchmap.so.0. Exit 0 pass, 1 fail, 77 skip.
set -eu
build=$1 meson=$2 version=$3 sanitize=$4 src=$5

for tool in cc pkg-config nm readelf; do
	command -v "$tool" >/dev/null || { echo "$tool not found: skipped"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}

"$meson" install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "meson install"; }

pc=$(find "$tmp/root" -name patchmap.pc)
[ -n "$pc" ] && [ "$(echo "$pc" | wc -l)" -eq 1 ] || fail "expected one patchmap.pc, found: $pc"
# Only the installed copy: the sysroot prefixes its paths with the destdir.
export PKG_CONFIG_LIBDIR="$(dirname "$pc")" PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR="$tmp/root"
[ "$(pkg-config --modversion patchmap)" = "$version" ] ||
	fail "pkg-config says version $(pkg-config --modversion patchmap), want $version"
cflags=$(pkg-config --cflags patchmap)
libs=$(pkg-config --libs patchmap)
echo "cflags: $cflags"
echo "libs: $libs"
case "$libs" in *"$tmp/root"*) ;; *) fail "libs do not point into the install: $libs" ;; esac

lib=$(find "$tmp/root" -name libpatchmap.so.0)
[ -n "$lib" ] || fail "no libpatchmap.so.0 installed"
libdir=$(dirname "$lib")
[ -L "$libdir/libpatchmap.so" ] || fail "no libpatchmap.so development link"
[ -f "$libdir/libpatchmap.so.$version" ] || fail "no libpatchmap.so.$version"
hdr=$(find "$tmp/root" -name patchmap.h)
[ -n "$hdr" ] && cmp -s "$hdr" "$src/include/patchmap.h" || fail "installed patchmap.h differs from the source's"

# SONAME, and no run path into the build tree.
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = libpatchmap.so.0 ] || fail "SONAME is '$soname', want libpatchmap.so.0"
if readelf -d "$lib" | grep -E '\((RPATH|RUNPATH)\)' | grep -qF "$build"; then
	fail "the installed library has a run path into the build directory"
fi

# Exports: exactly the header's PM_API functions, each at version PATCHMAP_0,
# plus the version node itself.
nm -D --defined-only "$lib" | awk '{ print $NF }' | sort >"$tmp/exports"
grep '^PM_API' "$src/include/patchmap.h" | sed 's/.*[^a-z0-9_]\(pm_[a-z0-9_]*\)(.*/\1/' |
	sed 's/$/@@PATCHMAP_0/' >"$tmp/api"
echo PATCHMAP_0 >>"$tmp/api"
sort -o "$tmp/api" "$tmp/api"
[ "$(wc -l <"$tmp/api")" -ge 20 ] || fail "found only $(wc -l <"$tmp/api") PM_API declarations"
if ! cmp -s "$tmp/exports" "$tmp/api"; then
	echo "exported (<) versus declared PM_API (>):"
	diff "$tmp/exports" "$tmp/api" || true
	fail "the exported symbols are not the public API"
fi
echo "exports: $(grep -c '^pm_' "$tmp/exports") pm_* functions at PATCHMAP_0"

# A consumer, built as a user would build it (with the sanitizers the
# library was built with: its runtime must come from the program).
san=
[ "$sanitize" = none ] || san="-fsanitize=$sanitize"
# shellcheck disable=SC2086 # word splitting of the flags is intended
cc -std=c11 -Wall -Wextra -Werror $san $cflags "$src/tests/install-consumer.c" -o "$tmp/consumer" $libs ||
	fail "the consumer does not build against the installed library"
LD_LIBRARY_PATH="$libdir" "$tmp/consumer" >"$tmp/out" || { cat "$tmp/out"; fail "the consumer failed"; }
cat "$tmp/out"
field() { sed -n "s/^$1 //p" "$tmp/out"; }
[ "$(field version)" = "$version" ] || fail "pm_version() is '$(field version)', want $version"
case "$(field library)" in "$libdir"/*) ;; *) fail "the consumer loaded $(field library), not the installed library" ;; esac
set -- $(field shape)
[ "$#" -eq 3 ] && [ "$1" -gt 1 ] && [ "$1" = "$3" ] && [ "$2" -eq 12 ] || fail "matrix shape: $*"
[ -n "$(field own)" ] || fail "no checksum printed"
[ "$(field map)" = "$(field own)" ] || fail "checksum through the mapping $(field map), by hand $(field own)"
[ "$(field read)" = "$(field own)" ] || fail "checksum through pm_matrix_read $(field read), by hand $(field own)"

# The header also compiles as C++ (extern "C", no C-only syntax).
if command -v c++ >/dev/null; then
	printf '#include <patchmap.h>\nint main() { return pm_version()[0] == 0; }\n' >"$tmp/consumer.cc"
	# shellcheck disable=SC2086
	c++ -Wall -Wextra -Werror $san $cflags "$tmp/consumer.cc" -o "$tmp/consumer-cxx" $libs ||
		fail "a C++ program does not build against the installed header"
	LD_LIBRARY_PATH="$libdir" "$tmp/consumer-cxx" || fail "the C++ consumer failed"
	echo "C++ consumer: ok"
else
	echo "no C++ compiler: the C++ check was not run"
fi
echo "install: ok"
