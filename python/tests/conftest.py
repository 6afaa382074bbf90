"""Shared fixtures: the repository's files and the `llmc` binary to compare
with (``LLMC_BIN``, else target/release/llmc, built by ``cargo build --release``)."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "corpus"
TINY_MODEL = ROOT / "fuzz" / "seeds" / "gguf" / "tiny.gguf"


@pytest.fixture(scope="session")
def cli():
    """Runs the llmc binary; returns the completed process."""
    binary = pathlib.Path(os.environ.get("LLMC_BIN", ROOT / "target" / "release" / "llmc"))
    if not binary.is_file():
        pytest.fail(f"{binary} not found: run `cargo build --release` or set LLMC_BIN")

    def run(*args, input=None, check=True):
        p = subprocess.run(
            [str(binary), *map(str, args)], input=input, capture_output=True, timeout=600
        )
        if check and p.returncode != 0:
            raise AssertionError(f"llmc {args} failed: {p.stderr.decode()}")
        return p

    run.binary = binary
    run.json = lambda *args: json.loads(run(*args).stdout)
    return run


@pytest.fixture(scope="session")
def corpus():
    return CORPUS


def small_text(name: str, n: int) -> bytes:
    """The first ``n`` bytes of a corpus file."""
    return (CORPUS / name).read_bytes()[:n]
