#!/usr/bin/env python3
"""llmc on a Ray cluster: compress, decompress or score many files with Ray Data.

    python examples/ray_llmc.py compress   DIR_OR_FILES... --out OUT [--results R]
    python examples/ray_llmc.py decompress DIR_OR_FILES... --out OUT [--results R]
    python examples/ray_llmc.py score      DIR_OR_FILES...           [--results R]

Each input is one row of a Ray dataset; a pool of actors does the work, each
with its own llmc model (loaded once per actor; the model file is fetched
once per node into llmc's cache, which locks against concurrent fetches).
Compressed files are those ``llmc FILE`` writes, byte for byte; scores are
those of ``llmc score --json``. Outputs keep the inputs' relative paths under
``--out`` and are written to a temporary name and renamed, so a half-written
file never carries the final name.

Every input yields a result row, failed ones too (``ok`` false, ``error``
naming the exception): ``--results NAME.jsonl`` writes them as one JSON-lines
file on the driver (floats exact, as Python's json writes them), any other
``--results DIR`` as a Parquet dataset written by Ray Data from the workers.
The script exits 1 if any input failed, after writing every other input's
output and row.

Without ``--address`` a local Ray instance is started with ``--cpus`` CPUs;
with ``--address auto`` (or ``ray://...``) the job joins a running cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List

import llmc

# One result row; every field is present in every row.
FIELDS = [
    "path",  # the input, as given (files found under a directory: joined to it)
    "ok",  # whether the input was processed
    "error",  # "ExceptionType: message" if not, else ""
    "output",  # the file written ("" for score or a failure)
    "bytes_in",  # size of the input
    "bytes_out",  # size of the output (0 for score)
    "tokens",  # score: tokens the model coded
    "bits",  # score: cross-entropy in bits
    "bits_per_byte",  # compress: output bits per input byte; score: bits / bytes_in
    "seconds",  # time the actor spent on the input
]


def find_inputs(args: List[str], op: str) -> List[tuple]:
    """(path, relative name) of every input: files as given, directories
    walked (decompress: *.llmc only; compress: all but *.llmc)."""
    out = []
    for a in args:
        if os.path.isdir(a):
            for d, _, files in sorted(os.walk(a)):
                for f in sorted(files):
                    if (op == "decompress") != f.endswith(".llmc"):
                        continue
                    p = os.path.join(d, f)
                    out.append((p, os.path.relpath(p, a)))
        else:
            out.append((a, os.path.basename(a)))
    return out


def write_atomically(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class LlmcWorker:
    """A Ray Data actor: one llmc model, reused for every batch."""

    def __init__(self, op: str, out: str, level: int, model, threads: int):
        if model is None:
            llmc.fetch_model()  # once per node: the cache is locked while fetching
        self.model = llmc.Model(model, threads)
        self.op, self.out, self.level = op, out, level

    def one(self, path: str, name: str) -> Dict:
        row = dict.fromkeys(FIELDS, 0)
        row.update(path=path, ok=False, error="", output="", bits=0.0, bits_per_byte=0.0)
        t0 = time.perf_counter()
        try:
            with open(path, "rb") as f:
                data = f.read()
            row["bytes_in"] = len(data)
            if self.op == "score":
                s = self.model.score(data, self.level)
                row.update(tokens=s.tokens, bits=s.bits, bits_per_byte=s.bits / max(len(data), 1))
            else:
                if self.op == "compress":
                    result, dest = self.model.compress(data, self.level), name + ".llmc"
                else:
                    result, dest = self.model.decompress(data), name[: -len(".llmc")]
                dest = os.path.join(self.out, dest)
                write_atomically(dest, result)
                row.update(output=dest, bytes_out=len(result))
                if self.op == "compress":
                    row["bits_per_byte"] = 8 * len(result) / max(len(data), 1)
            row["ok"] = True
        except Exception as e:  # reported in the row; the other inputs go on
            row["error"] = f"{type(e).__name__}: {e}"
        row["seconds"] = time.perf_counter() - t0
        return row

    def __call__(self, batch: Dict[str, list]) -> Dict[str, list]:
        rows = [self.one(p, n) for p, n in zip(batch["path"], batch["name"])]
        return {k: [r[k] for r in rows] for k in FIELDS}


def write_jsonl(ds, path: str) -> None:
    """The rows as JSON lines, streamed to the driver (they are small)."""
    import json

    tmp = f"{path}.partial-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for batch in ds.iter_batches(batch_size=1024, batch_format="pandas"):
            for row in batch.to_dict("records"):
                row = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
                f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("op", choices=["compress", "decompress", "score"])
    ap.add_argument("inputs", nargs="+", help="files and directories")
    ap.add_argument("--out", help="directory for the outputs (compress, decompress)")
    ap.add_argument("--results", help="NAME.jsonl, or a directory for Parquet")
    ap.add_argument("--level", type=int, default=llmc.DEFAULT_LEVEL)
    ap.add_argument("--model", help="GGUF path or model name (default: llmc's default)")
    ap.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of a local Ray instance")
    ap.add_argument("--workers", type=int, default=1, help="actors (each loads the model)")
    ap.add_argument("--threads", type=int, default=2, help="llmc threads per actor")
    a = ap.parse_args(argv)
    if a.op != "score" and not a.out:
        ap.error(f"{a.op} needs --out")

    import ray  # imported here so that --help works without Ray

    inputs = find_inputs(a.inputs, a.op)
    if not inputs:
        ap.error("no input files")
    if a.address:
        ray.init(address=a.address)
    else:
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"path": p, "name": n} for p, n in inputs])
        ds = ds.map_batches(
            LlmcWorker,
            fn_constructor_kwargs=dict(
                op=a.op,
                out=os.path.abspath(a.out) if a.out else "",
                level=a.level,
                model=a.model,
                threads=a.threads,
            ),
            batch_size=1,
            concurrency=a.workers,
            num_cpus=a.threads,
        ).materialize()
        if a.results and a.results.endswith(".jsonl"):
            write_jsonl(ds, a.results)
        elif a.results:
            ds.write_parquet(a.results)
        failed = ds.filter(lambda r: not r["ok"]).take_all()
        n = ds.count()
    finally:
        ray.shutdown()
    for r in failed:
        print(f"llmc: {r['path']}: {r['error']}", file=sys.stderr)
    print(f"{a.op}: {n - len(failed)} of {n} inputs done", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
