#!/bin/sh
# test-install.sh BUILDDIR MESON VERSION SANITIZE SOURCEDIR [PYTHON]
# Installs the build into a temporary directory and uses it as a user
# would: pkg-config finds it, a program compiles and links against it and
# runs; the library exports exactly the symbols lib/libpatchmap.map lists,
# which are exactly the header's PM_API functions, under the version node
# PATCHMAP_1.0, with SONAME libpatchmap.so.1. The installed tree runs where
# it lies, without LD_LIBRARY_PATH (as an install under a user's prefix
# must): the tool and the preload shim through their $ORIGIN run paths, a
# consumer linked with -Wl,-rpath as the README says, the Python package
# (when installed) through its record of where the library went.
# Exit 0 pass, 1 fail, 77 skip.
set -eu
build=$1 meson=$2 version=$3 sanitize=$4 src=$5 python=${6:-}
unset LD_LIBRARY_PATH PATCHMAP_LIBRARY

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

soname_want=libpatchmap.so.${version%%.*}
node=PATCHMAP_1.0
lib=$(find "$tmp/root" -name "$soname_want")
[ -n "$lib" ] || fail "no $soname_want installed"
libdir=$(dirname "$lib")
[ -L "$libdir/libpatchmap.so" ] || fail "no libpatchmap.so development link"
[ -f "$libdir/libpatchmap.so.$version" ] || fail "no libpatchmap.so.$version"
hdr=$(find "$tmp/root" -name patchmap.h)
[ -n "$hdr" ] && cmp -s "$hdr" "$src/include/patchmap.h" || fail "installed patchmap.h differs from the source's"

# SONAME, and no run path into the build tree.
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "$soname_want" ] || fail "SONAME is '$soname', want $soname_want"
if readelf -d "$lib" | grep -E '\((RPATH|RUNPATH)\)' | grep -qF "$build"; then
	fail "the installed library has a run path into the build directory"
fi

# The map names every symbol (no wildcard), in the one node of this ABI.
map="$src/lib/libpatchmap.map"
grep -q '^[[:space:]]*pm_[a-z0-9_]*\*' "$map" && fail "the symbol map has a wildcard"
grep -q "^$node {" "$map" || fail "the symbol map has no node $node"
sed -n 's/^[[:space:]]*\(pm_[a-z0-9_]*\);.*/\1/p' "$map" | sort >"$tmp/map"
# Exports: exactly the map's symbols, each at version $node, plus the node
# itself; and the map's symbols are exactly the header's PM_API functions.
nm -D --defined-only "$lib" | awk '{ print $NF }' | sort >"$tmp/exports"
sed "s/\$/@@$node/" "$tmp/map" >"$tmp/want"
echo "$node" >>"$tmp/want"
sort -o "$tmp/want" "$tmp/want"
if ! cmp -s "$tmp/exports" "$tmp/want"; then
	echo "exported (<) versus the map (>):"
	diff "$tmp/exports" "$tmp/want" || true
	fail "the exported symbols are not the map's"
fi
grep '^PM_API' "$src/include/patchmap.h" | sed 's/.*[^a-z0-9_]\(pm_[a-z0-9_]*\)(.*/\1/' |
	sort >"$tmp/api"
[ "$(wc -l <"$tmp/api")" -ge 20 ] || fail "found only $(wc -l <"$tmp/api") PM_API declarations"
if ! cmp -s "$tmp/map" "$tmp/api"; then
	echo "in the map (<) versus declared PM_API in patchmap.h (>):"
	diff "$tmp/map" "$tmp/api" || true
	fail "the symbol map and the header's PM_API declarations differ"
fi
echo "exports: $(wc -l <"$tmp/map") pm_* functions at $node, as the map lists them"

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

# Without LD_LIBRARY_PATH: linked with a run path, as README.md tells users
# of a prefix outside the loader's search path.
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror $san $cflags "$src/tests/install-consumer.c" -o "$tmp/consumer-rpath" \
	$libs -Wl,-rpath,"$libdir" || fail "the consumer does not link with -Wl,-rpath"
"$tmp/consumer-rpath" >"$tmp/out-rpath" || { cat "$tmp/out-rpath"; fail "the consumer with a run path failed"; }
cmp -s "$tmp/out" "$tmp/out-rpath" || fail "the consumer with a run path printed something else"
echo "consumer with -Wl,-rpath: ok"

# The installed tool and shim find the installed library by themselves.
runpath() { readelf -d "$1" | sed -n 's/.*(\(RPATH\|RUNPATH\)).*\[\(.*\)\].*/\2/p'; }
tool=$(find "$tmp/root" -path '*/bin/patchmap' -type f)
[ -n "$tool" ] || fail "no patchmap tool installed"
shim=$(find "$tmp/root" -name libpatchmap-preload.so -type f)
[ -n "$shim" ] || fail "no preload shim installed"
[ "$(dirname "$shim")" = "$libdir/patchmap" ] ||
	fail "the shim is in $(dirname "$shim"), not in the private directory $libdir/patchmap"
for f in "$tool" "$shim"; do
	rp=$(runpath "$f")
	case "$rp" in
	*"$build"* | *"$src"*) fail "$f has a run path into the build: $rp" ;;
	'$ORIGIN'/*) ;;
	*) fail "$f: run path '$rp', want one relative to \$ORIGIN" ;;
	esac
	echo "$(basename "$f") run path: $rp"
done
for f in "$tool" "$shim"; do
	got=$(ldd "$f" | sed -n "s/^[[:space:]]*libpatchmap\\.so\\.${version%%.*} => \\(.*\\) (0x.*/\\1/p")
	[ -n "$got" ] && [ "$(readlink -f "$got")" = "$(readlink -f "$libdir/$soname_want")" ] ||
		{ ldd "$f"; fail "$f does not resolve $soname_want to the installed copy"; }
done
# The tool runs (a descriptor-free command touching the library).
printf 'P5\n4 3\n255\n' >"$tmp/img.pgm"
head -c 12 /dev/zero >>"$tmp/img.pgm"
"$tool" info "$tmp/img.pgm" --window 2x2 >"$tmp/info.out" 2>&1 || { cat "$tmp/info.out"; fail "the installed tool"; }
echo "installed patchmap info: ok"
# Under the shim, a descriptor reads as its matrix. (Not in a sanitized
# build: a sanitizer's runtime must be the first library a process loads,
# which LD_PRELOAD into an uninstrumented stat(1) cannot give it.)
if [ "$sanitize" = none ]; then
	printf 'source = img.pgm\nwindow = 2\n' >"$tmp/x.patchmap"
	size=$(cd "$tmp" && LD_PRELOAD="$shim" stat -c %s x.patchmap) || fail "stat under the installed shim"
	# 6 windows x 4 samples, in the source's uint8 or in float32 (the default
	# output type of descriptors moves to float32 with the common grammar).
	[ "$size" -eq 24 ] || [ "$size" -eq 96 ] ||
		fail "under the installed shim x.patchmap is $size bytes, want 6 x 4 samples (24 or 96 bytes)"
	echo "installed shim: ok"
else
	echo "sanitized build: the shim's check was not run"
fi

# The Python package, when it was installed.
pkg=$(find "$tmp/root" -path '*/patchmap/_install.py')
if [ -n "$pkg" ] && [ -n "$python" ] && [ "$sanitize" = none ]; then
	pydir=$(dirname "$(dirname "$pkg")")
	for f in "$src"/python/patchmap/*.py; do
		[ -f "$pydir/patchmap/$(basename "$f")" ] || fail "$(basename "$f") of the Python package was not installed"
	done
	got=$(cd "$tmp" && env -i PATH=/usr/bin:/bin PYTHONPATH="$pydir" PYTHONDONTWRITEBYTECODE=1 \
		"$python" -c 'import patchmap; print(patchmap.library_path())') || fail "import of the installed Python package"
	[ "$got" = "$libdir/$soname_want" ] || fail "the installed Python package loaded $got, not $libdir/$soname_want"
	echo "installed Python package: ok"
elif [ -n "$python" ]; then
	echo "the Python package was not installed (or sanitized build): its check was not run"
fi

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
