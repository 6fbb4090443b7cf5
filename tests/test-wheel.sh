#!/bin/sh
# test-wheel.sh SOURCEDIR PYTHON
# Builds the wheel of the checkout with pip and meson-python (pyproject.toml),
# installs it into a fresh virtualenv and uses it from outside the checkout
# with no environment variables: the ctypes loader must take the library
# bundled in the wheel; `python -m patchmap` runs; the README's interactive
# Python examples give their printed output. Exit 0 pass, 1 fail, 77 skip.
set -eu
src=$1 python=$2

"$python" -c 'import mesonpy, venv, pip' 2>/dev/null || { echo "meson-python, venv or pip missing: skipped"; exit 77; }
command -v patchelf >/dev/null || { echo "patchelf not found (meson-python needs it): skipped"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}

# No build isolation: the build tools are Debian's, and there is no index.
"$python" -m pip wheel --no-build-isolation --no-index --no-deps -q -w "$tmp/dist" "$src" \
	>"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log"; fail "pip wheel"; }
set -- "$tmp"/dist/*.whl
[ "$#" -eq 1 ] && [ -f "$1" ] || fail "expected one wheel, found: $*"
wheel=$1
echo "wheel: $(basename "$wheel")"
case "$wheel" in *-none-any.whl) fail "the wheel is tagged pure Python, but it carries a library" ;; esac

# Exactly the package's files and the library: no tool, header, .pc or shim.
"$python" - "$wheel" "$src/python/patchmap" >"$tmp/contents" <<'PY' || { cat "$tmp/contents"; fail "wheel contents"; }
import os, sys, zipfile
names = [n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".dist-info/" not in n]
want = sorted("patchmap/" + f for f in os.listdir(sys.argv[2])
              if f.endswith(".py") or f == "py.typed")
pkg = sorted(n for n in names if n.startswith("patchmap/"))
libs = [n for n in names if n.startswith(".patchmap.mesonpy.libs/libpatchmap.so.")]
other = sorted(set(names) - set(pkg) - set(libs))
print("package files:", len(pkg), "libraries:", libs, "other:", other)
sys.exit(0 if pkg == want and len(libs) == 1 and not other else 1)
PY
cat "$tmp/contents"

"$python" -m venv --system-site-packages "$tmp/venv" || fail "venv"
"$tmp/venv/bin/python" -m pip install --no-index --no-deps -q "$wheel" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "pip install of the wheel"; }

# From outside the checkout, with a clean environment.
cd "$tmp"
run() {
	env -i PATH=/usr/bin:/bin HOME="$tmp" LANG=C.UTF-8 "$tmp/venv/bin/python" "$@"
}
run -c '
import os, sys, patchmap
lib = patchmap.library_path()
print("loaded", os.path.relpath(lib, sys.prefix), "version", patchmap.library_version())
assert patchmap.__file__.startswith(sys.prefix), patchmap.__file__
assert os.path.basename(os.path.dirname(lib)) == ".patchmap.mesonpy.libs", lib
assert lib.startswith(sys.prefix), lib
' || fail "the installed package does not load the library of its wheel"
run -m patchmap >"$tmp/demo.out" 2>&1 || { cat "$tmp/demo.out"; fail "python -m patchmap"; }
tail -1 "$tmp/demo.out"
# libpatchmap-image (patchmap.imread) is never in a wheel: where none is
# installed, the message says what a wheel's user can do.
run -c '
import patchmap
try:
    patchmap.imread("x.png")
except OSError as e:
    if "cannot load libpatchmap-image" in str(e):
        assert "a wheel holds libpatchmap alone" in str(e) and "libpatchmap-image1" in str(e), e
        print("imread from a wheel: clear error")
    else:  # the library loaded, and x.png does not exist
        print("imread from a wheel: libpatchmap-image installed on this system")
' || fail "imread without libpatchmap-image"
run "$src/tests/readme-doctest.py" --without imread --without image_info \
	"$src/README.md" "$src/python/README.md" ||
	fail "the README examples against the installed wheel"
echo "wheel: ok"
