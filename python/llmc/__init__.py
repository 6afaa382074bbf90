"""llmc: lossless compression with a language model as the probability model.

The calls mirror the ``zstandard`` package::

    import llmc
    packed = llmc.compress(b"Some text.\\n")          # bytes -> bytes
    assert llmc.decompress(packed) == b"Some text.\\n"
    print(llmc.score("Some text.\\n").bits_per_byte)  # what it would cost

    with llmc.open("notes.txt.llmc", "wt") as f:    # file objects
        f.write("Some text.\\n")

The model (SmolLM2-135M by default, fetched with pip into the cache on first
use) is loaded once per process and shared by all threads; every call that
codes releases the GIL, so threads compress in parallel. What is written is
byte for byte what the ``llmc`` command writes with the same level and model.
"""

from __future__ import annotations

import io
import os
from typing import IO, Iterable, List, Optional, Union, overload

from ._llmc import (
    DEFAULT_LEVEL,
    MAX_LEVEL,
    MIN_LEVEL,
    CorruptError,
    LlmcError,
    Model,
    ModelError,
    ModelMismatchError,
    Score,
    __version__,
    fetch_model,
    known_models,
)

__all__ = [
    "DEFAULT_LEVEL",
    "MAX_LEVEL",
    "MIN_LEVEL",
    "CorruptError",
    "LlmcCompressor",
    "LlmcDecompressor",
    "LlmcError",
    "Model",
    "ModelError",
    "ModelMismatchError",
    "Score",
    "compress",
    "decompress",
    "fetch_model",
    "known_models",
    "open",
    "score",
    "__version__",
]

ModelArg = Union[None, str, "os.PathLike[str]", Model]
BytesLike = Union[bytes, bytearray, memoryview]

#: Buffer of the file objects that ``open`` and the ``stream_*`` calls return.
BUFFER_SIZE = 1 << 20


def _model(model: ModelArg, threads: int) -> Model:
    if isinstance(model, Model):
        return model
    return Model(None if model is None else os.fspath(model), threads)


def _bytes(data: Union[BytesLike, str]) -> Union[bytes, bytearray]:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        return data
    return bytes(memoryview(data))


def compress(
    data: BytesLike, level: int = DEFAULT_LEVEL, *, model: ModelArg = None, threads: int = 0
) -> bytes:
    """``data`` compressed as one llmc frame (``llmc -LEVEL`` writes the same bytes)."""
    return _model(model, threads).compress(_bytes(data), level)


def decompress(data: BytesLike, *, model: ModelArg = None, threads: int = 0) -> bytes:
    """The original of ``data`` (all its frames). Raises CorruptError or
    ModelMismatchError; nothing unverified is returned."""
    return _model(model, threads).decompress(_bytes(data))


@overload
def score(
    data: Union[BytesLike, str], level: int = ..., *, model: ModelArg = ..., threads: int = ...
) -> Score: ...
@overload
def score(
    data: Iterable[Union[BytesLike, str]],
    level: int = ...,
    *,
    model: ModelArg = ...,
    threads: int = ...,
) -> List[Score]: ...
def score(data, level=DEFAULT_LEVEL, *, model=None, threads=0):
    """How many bits the model spends on ``data`` (str is scored as UTF-8)
    at ``level``: a Score, or a list of them for a list of texts. The same
    figures as ``llmc score --json``."""
    m = _model(model, threads)
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        return m.score(_bytes(data), level)
    return [m.score(_bytes(d), level) for d in data]


class _Writer(io.RawIOBase):
    """Writes go to a coder on its own thread; its output goes to ``inner``.
    Closing finishes the frame (and closes ``inner`` if ``closefd``)."""

    def __init__(self, push, inner, closefd: bool):
        super().__init__()
        self._push = push
        self._inner = inner
        self._closefd = closefd
        #: Bytes written to ``inner``, known once closed.
        self.bytes_out = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.closed:
            raise ValueError("write to a closed llmc stream")
        return self._push.write(_bytes(b))

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.bytes_out = self._push.finish()
            flush = getattr(self._inner, "flush", None)
            if flush is not None:
                flush()
        finally:
            super().close()
            if self._closefd:
                self._inner.close()


class _Reader(io.RawIOBase):
    """Reads come from a coder on its own thread, which reads ``inner``."""

    def __init__(self, pull, inner, closefd: bool):
        super().__init__()
        self._pull = pull
        self._inner = inner
        self._closefd = closefd

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.closed:
            raise ValueError("read from a closed llmc stream")
        view = memoryview(b).cast("B")
        data = self._pull.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self._pull.read(-1)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._pull.close()
        finally:
            super().close()
            if self._closefd:
                self._inner.close()


def _writer(push, inner, closefd: bool) -> io.BufferedWriter:
    return io.BufferedWriter(_Writer(push, inner, closefd), BUFFER_SIZE)


def _reader(pull, inner, closefd: bool) -> io.BufferedReader:
    return io.BufferedReader(_Reader(pull, inner, closefd), BUFFER_SIZE)


def _copy(reader: IO[bytes], writer: IO[bytes]) -> int:
    n = 0
    while True:
        chunk = reader.read(BUFFER_SIZE)
        if not chunk:
            return n
        n += len(chunk)
        writer.write(chunk)


class LlmcCompressor:
    """Compression at one level with one model, as ``zstandard.ZstdCompressor``."""

    def __init__(self, level: int = DEFAULT_LEVEL, *, model: ModelArg = None, threads: int = 0):
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(f"level {level} is outside {MIN_LEVEL}..={MAX_LEVEL}")
        self.level = level
        self.model = _model(model, threads)

    def compress(self, data: BytesLike) -> bytes:
        """``data`` as one frame."""
        return self.model.compress(_bytes(data), self.level)

    def stream_writer(self, writer: IO[bytes], *, closefd: bool = True) -> io.BufferedWriter:
        """A binary file object: what is written to it is compressed into
        ``writer`` as one frame, finished when it is closed."""
        return _writer(self.model._compress_writer(writer, self.level), writer, closefd)

    def stream_reader(self, source: IO[bytes], *, closefd: bool = True) -> io.BufferedReader:
        """A binary file object whose reads are ``source`` compressed."""
        return _reader(self.model._compress_reader(source, self.level), source, closefd)

    def copy_stream(self, ifh: IO[bytes], ofh: IO[bytes]) -> "tuple[int, int]":
        """Compresses ``ifh`` into ``ofh``; returns (bytes read, bytes written)."""
        w = _Writer(self.model._compress_writer(ofh, self.level), ofh, closefd=False)
        with io.BufferedWriter(w, BUFFER_SIZE) as out:
            n = _copy(ifh, out)
        return n, w.bytes_out


class LlmcDecompressor:
    """Decompression with one model, as ``zstandard.ZstdDecompressor``."""

    def __init__(self, *, model: ModelArg = None, threads: int = 0):
        self.model = _model(model, threads)

    def decompress(self, data: BytesLike) -> bytes:
        """The original of ``data``."""
        return self.model.decompress(_bytes(data))

    def stream_reader(self, source: IO[bytes], *, closefd: bool = True) -> io.BufferedReader:
        """A binary file object whose reads are ``source`` decompressed.
        Every byte it returns has passed its block's check."""
        return _reader(self.model._decompress_reader(source), source, closefd)

    def stream_writer(self, writer: IO[bytes], *, closefd: bool = True) -> io.BufferedWriter:
        """A binary file object: compressed data written to it is
        decompressed into ``writer``."""
        return _writer(self.model._decompress_writer(writer), writer, closefd)

    def copy_stream(self, ifh: IO[bytes], ofh: IO[bytes]) -> "tuple[int, int]":
        """Decompresses ``ifh`` into ``ofh``; returns (bytes read, bytes written)."""
        w = _Writer(self.model._decompress_writer(ofh), ofh, closefd=False)
        with io.BufferedWriter(w, BUFFER_SIZE) as out:
            n = _copy(ifh, out)
        return n, w.bytes_out


def open(  # noqa: A001 (as gzip.open, zstandard.open)
    file: Union[str, "os.PathLike[str]", IO[bytes]],
    mode: str = "rb",
    *,
    level: int = DEFAULT_LEVEL,
    model: ModelArg = None,
    threads: int = 0,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
) -> IO:
    """An llmc file as a file object, as ``gzip.open``: modes ``r``, ``w``,
    ``x``, ``a`` (a new frame after those there), binary (``b``, the
    default) or text (``t``). ``file`` is a path or a binary file object."""
    kind = mode.replace("b", "").replace("t", "")
    if kind not in ("r", "w", "x", "a") or ("b" in mode and "t" in mode):
        raise ValueError(f"invalid mode: {mode!r}")
    text = "t" in mode
    if not text and (encoding or errors or newline):
        raise ValueError("encoding, errors and newline go with text modes")
    if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__"):
        inner = io.open(file, kind + "b")
        closefd = True
    else:
        inner = file
        closefd = False
    try:
        if kind == "r":
            f = LlmcDecompressor(model=model, threads=threads).stream_reader(inner, closefd=closefd)
        else:
            f = LlmcCompressor(level, model=model, threads=threads).stream_writer(
                inner, closefd=closefd
            )
    except BaseException:
        if closefd:
            inner.close()
        raise
    if text:
        return io.TextIOWrapper(f, encoding=encoding, errors=errors, newline=newline)
    return f
