#!/bin/sh
# run-fuzz.sh FUZZER SEEDS [libFuzzer options]: a bounded libFuzzer run from
# the committed seed corpus, which stays untouched: new inputs go to a
# temporary directory, removed afterwards. A crash leaves its input in the
# current directory (crash-*) and fails the test.
set -eu
fuzzer=$1
seeds=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzzer" "$@" "$work" "$seeds"
