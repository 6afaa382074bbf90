#!/usr/bin/env bash
# A fuzzing campaign: each target for $1 seconds (default 1800), one core,
# from fuzz/seeds/ and the growing fuzz/corpus/. Crashes land in
# fuzz/artifacts/TARGET/. Needs a nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-1800}
# The GGUF corpus is kept as a tarball (its inputs are near-copies of a
# 60 KB model); unpack it on first use.
if [ ! -d corpus/gguf ] && [ -f corpus/gguf.tar.xz ]; then
  tar -C corpus -xJf corpus/gguf.tar.xz
fi
for t in ${TARGETS:-decompress gguf}; do
  mkdir -p "corpus/$t"
  case $t in
    decompress) len=16384 ;;
    gguf) len=131072 ;;
  esac
  cargo +nightly fuzz run -O -s none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -max_len="$len" -timeout=60 -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 | tee "/tmp/fuzz-$t.log" | grep -E "^#[0-9]+ +(pulse|DONE)|stat::|ERROR|panicked|SUMMARY" || true
done
