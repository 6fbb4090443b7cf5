#!/bin/sh
# test-install-image.sh BUILDDIR MESON SOURCEDIR
# Installs the build into a temporary directory and checks libpatchmap-image
# as a user would meet it: SONAME libpatchmap-image.so.1, exports exactly the
# header's PM_API functions under PATCHMAP_IMAGE_1, pkg-config patchmap-image
# gives flags with which a program compiles, links and runs, opening a PNG.
# Exit 0 pass, 1 fail, 77 skip.
set -eu
build=$1 meson=$2 src=$3
for tool in cc pkg-config nm readelf vips; do
	command -v "$tool" >/dev/null || { echo "$tool not found: skipped"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patchmap-image-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
fail() {
	echo "FAIL: $*"
	exit 1
}

"$meson" install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "meson install"; }
lib=$(find "$tmp/root" -name libpatchmap-image.so.1)
[ -n "$lib" ] || fail "no libpatchmap-image.so.1 installed"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = libpatchmap-image.so.1 ] || fail "SONAME is '$soname'"
[ -n "$(find "$tmp/root" -name patchmap-image.h)" ] || fail "no patchmap-image.h installed"

nm -D --defined-only "$lib" | awk '{ print $NF }' | sort >"$tmp/exports"
grep '^PM_API' "$src/include/patchmap-image.h" |
	sed 's/.*[^a-z0-9_]\(pm_[a-z0-9_]*\)(.*/\1@@PATCHMAP_IMAGE_1/' >"$tmp/want"
echo "PATCHMAP_IMAGE_1" >>"$tmp/want"
sort -o "$tmp/want" "$tmp/want"
diff "$tmp/want" "$tmp/exports" || fail "the exported symbols are not the header's"

pc=$(find "$tmp/root" -name patchmap-image.pc)
[ -n "$pc" ] || fail "no patchmap-image.pc"
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cat >"$tmp/use.c" <<'C'
#include <stdio.h>
#include <patchmap-image.h>
int main(int argc, char **argv)
{
	char msg[256];
	pm_image *im;
	const struct pm_source *s;
	int ret = pm_image_open(argc > 1 ? argv[1] : "", NULL, &im, msg, sizeof msg);

	if (ret) {
		fprintf(stderr, "%s: %s\n", pm_image_strerror(ret), msg);
		return 1;
	}
	s = pm_image_source(im);
	printf("%zu %zu %d\n", s->shape[0], s->shape[1], ((const unsigned char *)s->data)[0]);
	return pm_image_close(im) ? 1 : 0;
}
C
# shellcheck disable=SC2046
cc -o "$tmp/use" "$tmp/use.c" $(pkg-config --cflags --libs patchmap-image) ||
	fail "cannot build against pkg-config patchmap-image"
vips black "$tmp/b.png" 7 5 >/dev/null
libdir=$(dirname "$lib")
out=$(LD_LIBRARY_PATH="$libdir" "$tmp/use" "$tmp/b.png") || fail "the consumer failed"
[ "$out" = "5 7 0" ] || fail "the consumer printed '$out'"
echo "ok: $soname, $(wc -l <"$tmp/want") exports, pkg-config patchmap-image"
