#!/bin/sh
# test-man.sh BUILDDIR PATCHMAP
# Every man page built renders with man --warnings and no warning, and
# patchmap(1) names every command of `patchmap --help`. Exit 0/1/77.
set -eu
build=$1 exe=$2
command -v man >/dev/null || { echo "no man: skipped"; exit 77; }
pages=$(find "$build" -maxdepth 1 -name 'patchmap.[1-8]')
[ -n "$pages" ] || { echo "no man pages built (scdoc missing): skipped"; exit 77; }
for p in $pages; do
	warn=$(MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null)
	[ -z "$warn" ] || { echo "FAIL: $p: $warn"; exit 1; }
	echo "$(basename "$p"): renders without warnings"
done
for cmd in $("$exe" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p'); do
	MANWIDTH=80 man -l "$build/patchmap.1" 2>/dev/null | grep -q "^       $cmd\$" ||
		{ echo "FAIL: patchmap(1) does not describe the command '$cmd'"; exit 1; }
	echo "patchmap(1) describes $cmd"
done
