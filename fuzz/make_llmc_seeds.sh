#!/usr/bin/env bash
# Writes fuzz/seeds/decompress/: small .llmc files of every block kind,
# level, coder and line-ending form, made with the tiny model of
# make_seeds.py (run that first) and the llmc binary given as $1.
set -euo pipefail
cd "$(dirname "$0")"
LLMC=${1:-../target/release/llmc}
L="$LLMC --model seeds/gguf/tiny.gguf -q"
D=seeds/decompress
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rm -rf "$D" && mkdir -p "$D"
python3 - "$T" <<'PY'
import random, sys
t = sys.argv[1]
def w(name, data):
    open(f"{t}/{name}", "wb").write(data)
# Long runs of one letter: the tiny model predicts "the same again", so
# these become model blocks.
w("runs.txt", b"".join(c * 900 + b"\n" for c in (b"a", b"b")))
w("runs-crlf.txt", b"".join(c * 700 + b"\r\n" for c in (b"a", b"b", b"c", b"d")))
w("runs-mixed.txt", b"a" * 800 + b"\r\n" + b"b" * 800 + b"\n" + b"c" * 800 + b"\r")
rng = random.Random(3)
w("random.bin", bytes(rng.randrange(256) for _ in range(2000)))
w("text.txt", b"The quick brown fox jumps over the lazy dog.\n" * 6)
w("empty.txt", b"")
PY
for lv in 1 5 9; do $L -$lv -c -f "$T/runs.txt" > "$D/runs-l$lv.llmc"; done
$L -c -f "$T/runs-crlf.txt" > "$D/runs-crlf.llmc"
$L -c -f "$T/runs-mixed.txt" > "$D/runs-mixed.llmc"
$L --coder rank -c -f "$T/runs.txt" > "$D/runs-rank.llmc"
$L --window 64 --carry 16 -c -f "$T/runs.txt" > "$D/runs-window64.llmc"
$L --no-bias --no-match -c -f "$T/runs.txt" > "$D/runs-plain.llmc"
$L -c -f "$T/random.bin" > "$D/stored.llmc"
$L -c -f "$T/text.txt" > "$D/text.llmc"
$L -c -f "$T/empty.txt" > "$D/empty.llmc"
cat "$D/runs-l1.llmc" "$D/empty.llmc" "$D/text.llmc" > "$D/concat.llmc"
# A version-1 file (made with the default model: this one stops at the
# model check unless LLMC_FUZZ_MODEL names the default model).
cp ../tests/data/golden-v1.arith.llmc "$D/v1-arith.llmc"
$LLMC -l "$D"/*.llmc
