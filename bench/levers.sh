#!/usr/bin/env bash
# The lever table of docs/FORMAT.md section 8.7: bits/byte per file for
# each lever, from `llmc score` (the predictor rows from one model run per
# file with --levers). Usage: bench/levers.sh [LLMC] [LLMC_V1] > out.txt
#   LLMC     the llmc binary to measure (default target/release/llmc)
#   LLMC_V1  a version-1 build (git checkout d729cc0; cargo build --release),
#            for the v1 row; skipped if absent
# lcet10.txt and plrabn12.txt are cut to their first 150 KB (time budget);
# every other file is whole. Needs ../shared/corpus and bench/data
# (python3 bench/make_data.py).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
llmc=${1:-$here/target/release/llmc}
v1=${2:-}
corpus=${LLMC_SHARED_DIR:-$here/../shared}/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=()
for f in alice29.txt asyoulik.txt lcet10.txt plrabn12.txt cp.html fields.c xargs.1 grammar.lsp; do
    head -c 153600 "$corpus/$f" > "$tmp/$f"
    files+=("$tmp/$f")
done
for f in source.rs records.json dpkg.log; do files+=("$here/bench/data/$f"); done
crlf=("$tmp/alice29.txt" "$tmp/lcet10.txt" "$tmp/plrabn12.txt")
run() { echo "## $*"; "$@"; echo; }
lscpu | grep -m1 "Model name" || true
# The first table's level 5 (windows restart, no primer), with the
# predictor's settings; then sliding windows without the primer; then the
# second table's level 5 (sliding windows and the primer); then the level 5
# this build writes, without the reflow transform and with it (the shared
# n-gram, then the reflow of wrapped paragraphs).
run "$llmc" score -q --levers --no-reflow --sinks 0 --primer 0 --carry 512 "${files[@]}"
run "$llmc" score -q --primer 0 --no-ngram --no-reflow "${files[@]}"
run "$llmc" score -q --no-ngram --no-reflow "${files[@]}"
run "$llmc" score -q --no-reflow "${files[@]}"
run "$llmc" score -q "${files[@]}"
[ -n "$v1" ] && [ -x "$v1" ] && run "$v1" score -q "${files[@]}"
run "$llmc" score -q --levers --no-crlf --no-reflow --sinks 0 --primer 0 --carry 512 "${crlf[@]}"
run "$llmc" score -q -9 "${files[@]}"
run "$llmc" score -q -1 "${files[@]}"
