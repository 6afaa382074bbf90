#!/usr/bin/env python3
"""Python against the CLI on the same file, and several Python threads at once.

    python bench/python_speed.py [FILE] [--level N] [--llmc target/release/llmc]

1. Compression and decompression of FILE (default: the first 40,000 bytes
   of alice29.txt of the test corpus; --bytes 0 for all), end to end in a
   fresh process each (model load included): the `llmc` binary (`llmc -c`,
   `llmc -dc`) against `python -c` with the package; and the same calls
   inside this process with the model loaded, which is what a long-running
   Python job pays per file. Rounds are interleaved, medians printed.
2. Eight files (slices of FILE) compressed from 1 and from 2 Python threads:
   wall time and process CPU time; CPU/wall near 2 means both cores work.

Prints the CPU's name with the figures. Needs `pip install .` and the
binary (`cargo build --release`).
"""

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import threading
import time

import llmc

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file", nargs="?", default=ROOT / "tests/data/corpus/alice29.txt")
    ap.add_argument("--bytes", type=int, default=40000, help="use the file's first N bytes (0: all)")
    ap.add_argument("--level", type=int, default=llmc.DEFAULT_LEVEL)
    ap.add_argument("--llmc", default=ROOT / "target/release/llmc")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    data = pathlib.Path(a.file).read_bytes()
    if a.bytes:
        data = data[: a.bytes]
    tmp = pathlib.Path(f"/tmp/llmc-pybench-{os.getpid()}")
    tmp.mkdir()
    src, packed_path = tmp / "input", tmp / "input.llmc"
    src.write_bytes(data)
    lvl = f"-{a.level}"
    print(f"{cpu_name()}, {os.cpu_count()} cores; {a.file} ({len(data)} bytes), level {a.level}")
    print(f"median of {a.rounds} interleaved rounds; process: a fresh process, model load included")

    def cli(*args, out=subprocess.DEVNULL):
        subprocess.run([str(a.llmc), "-q", *args], stdout=out, check=True)

    with open(packed_path, "wb") as out:
        cli("-c", lvl, str(src), out=out)
    packed = packed_path.read_bytes()
    m = llmc.Model()
    assert m.compress(data, a.level) == packed, "Python's bytes differ from the CLI's"
    py = [sys.executable, "-c"]
    cases = {
        "compress   CLI (process)": lambda: cli("-c", lvl, str(src)),
        "compress   Python (process)": lambda: subprocess.run(
            py + [f"import llmc; llmc.compress(open({str(src)!r},'rb').read(), {a.level})"], check=True
        ),
        "compress   Python (call)": lambda: m.compress(data, a.level),
        "decompress CLI (process)": lambda: cli("-dc", str(packed_path)),
        "decompress Python (process)": lambda: subprocess.run(
            py + [f"import llmc; llmc.decompress(open({str(packed_path)!r},'rb').read())"], check=True
        ),
        "decompress Python (call)": lambda: m.decompress(packed),
    }
    times = {k: [] for k in cases}
    for _ in range(a.rounds):
        for k, f in cases.items():
            times[k].append(timed(f))
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"{k:30s} {t:7.2f} s  {len(data) / t / 1000:6.2f} kB/s   ({', '.join(f'{x:.2f}' for x in ts)})")
    for p in (src, packed_path):
        p.unlink()
    tmp.rmdir()

    pieces = [data[i * len(data) // 8 : (i + 1) * len(data) // 8] for i in range(8)]
    print(f"8 files of about {len(pieces[0])} bytes, level {a.level}, model threads {m.threads}:")
    for nthreads in (1, 2):
        def work(k):
            for i in range(k, 8, nthreads):
                m.compress(pieces[i], a.level)

        c0, t0 = cpu_seconds(), time.perf_counter()
        ts = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        print(f"  {nthreads} Python thread(s): wall {wall:6.2f} s, CPU {cpu:6.2f} s, CPU/wall {cpu / wall:4.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
