"""The cluster recipe (examples/ray_llmc.py) on a local Ray instance of 2
CPUs, started and stopped by the script: every .llmc it writes is the
CLI's, every score is `llmc score --json`'s, and a corrupt input is reported
without losing the other results. Needs Ray (`pip install .[ray]`); CI sets
LLMC_REQUIRE_RAY=1 so that a missing Ray fails instead of skipping."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, small_text

if os.environ.get("LLMC_REQUIRE_RAY") != "1":
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")

RECIPE = ROOT / "examples" / "ray_llmc.py"
INPUTS = {"grammar.lsp": 1800, "xargs.1": 1500, "sub/fields.c": 1200}


def recipe(*args):
    return subprocess.run(
        [sys.executable, str(RECIPE), *map(str, args), "--workers", "2", "--threads", "1"],
        capture_output=True,
        timeout=900,
    )


def rows_of(path):
    with open(path, encoding="utf-8") as f:
        return {r["path"]: r for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    for name, n in INPUTS.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(small_text(os.path.basename(name), n))
    return d


def test_compress_then_decompress_with_one_corrupt_input(cli, inputs, tmp_path):
    out = tmp_path / "out"
    p = recipe("compress", inputs, "--out", out, "--results", tmp_path / "c.jsonl")
    assert p.returncode == 0, p.stderr.decode()
    rows = rows_of(tmp_path / "c.jsonl")
    assert len(rows) == len(INPUTS)
    for name in INPUTS:
        packed = (out / (name + ".llmc")).read_bytes()
        assert packed == cli("-c", inputs / name).stdout, name
        r = rows[str(inputs / name)]
        assert (r["ok"], r["bytes_out"], r["output"]) == (True, len(packed), str(out / (name + ".llmc")))

    # One damaged file among good ones: reported, the others decompressed.
    good = (out / "grammar.lsp.llmc").read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x08
    (out / "bad.txt.llmc").write_bytes(bytes(bad))
    back = tmp_path / "back"
    p = recipe("decompress", out, "--out", back, "--results", tmp_path / "d.jsonl")
    assert p.returncode == 1, p.stderr.decode()
    assert "bad.txt.llmc: CorruptError" in p.stderr.decode()
    rows = rows_of(tmp_path / "d.jsonl")
    assert len(rows) == len(INPUTS) + 1
    r = rows[str(out / "bad.txt.llmc")]
    assert not r["ok"] and r["error"].startswith("CorruptError:")
    assert not (back / "bad.txt").exists()
    for name in INPUTS:
        assert rows[str(out / (name + ".llmc"))]["ok"]
        assert (back / name).read_bytes() == (inputs / name).read_bytes()


def test_scores_equal_the_cli(cli, inputs, tmp_path):
    import pyarrow.parquet as pq

    p = recipe("score", inputs, "--results", tmp_path / "scores")
    assert p.returncode == 0, p.stderr.decode()
    table = pq.read_table(tmp_path / "scores").to_pylist()
    assert len(table) == len(INPUTS)
    for r in table:
        want = cli.json("score", "--json", r["path"])[0]
        assert r["ok"], r
        assert (r["bytes_in"], r["tokens"]) == (want["bytes"], want["tokens"])
        assert r["bits"] == want["bits"]  # the same f64
