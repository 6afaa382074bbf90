"""The Python API: round trips, byte equality with the command line, scores
equal to `llmc score --json`, file objects, exceptions and threads."""

import io
import threading
import time

import pytest

import llmc
from conftest import TINY_MODEL, small_text

TEXT = small_text("alice29.txt", 1500)


def test_round_trip_and_empty():
    for data in [TEXT, b"", b"\x00\xff" * 40, "héllo wörld\r\n".encode()]:
        packed = llmc.compress(data)
        assert llmc.decompress(packed) == data
    assert llmc.decompress(bytearray(llmc.compress(memoryview(TEXT)))) == TEXT
    assert len(llmc.compress(b"")) <= 32


@pytest.mark.parametrize("level", [1, llmc.DEFAULT_LEVEL])
def test_same_bytes_as_the_cli(cli, tmp_path, level):
    for name in ["grammar.lsp", "xargs.1"]:
        data = small_text(name, 2500)
        src = tmp_path / name
        src.write_bytes(data)
        cli(f"-{level}", "-q", "-f", src)
        assert llmc.compress(data, level) == (tmp_path / (name + ".llmc")).read_bytes()


def test_cli_output_decompresses_in_python(cli, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(TEXT)
    packed = cli("-c", src).stdout
    assert llmc.decompress(packed) == TEXT


def test_score_equals_cli_json(cli, tmp_path):
    names = ["grammar.lsp", "xargs.1"]
    for n in names:
        (tmp_path / n).write_bytes(small_text(n, 1500))
    corpus = tmp_path
    rows = cli.json("score", "--json", *[corpus / n for n in names])
    scores = llmc.score([(corpus / n).read_bytes() for n in names])
    assert len(scores) == 2
    for row, s in zip(rows, scores):
        assert (s.bytes, s.tokens) == (row["bytes"], row["tokens"])
        assert s.bits == row["bits"]  # the same f64, not approximately
        assert s.bits_per_byte == row["bits_per_byte"]
        assert s.ideal_size == row["ideal_size"]
        assert s.size == row["size"]
    one = llmc.score((corpus / names[0]).read_text())
    assert one.bits == scores[0].bits
    fast = llmc.score((corpus / names[0]).read_bytes(), 1)
    assert fast.bits == cli.json("score", "--json", "-1", corpus / names[0])[0]["bits"]


def test_compressor_streams_match_one_shot():
    c = llmc.LlmcCompressor(level=1)
    one = c.compress(TEXT)

    out = io.BytesIO()
    with c.stream_writer(out, closefd=False) as w:
        for i in range(0, len(TEXT), 97):
            w.write(TEXT[i : i + 97])
    assert out.getvalue() == one

    r = c.stream_reader(io.BytesIO(TEXT))
    assert r.read() == one
    r.close()

    d = llmc.LlmcDecompressor()
    r = d.stream_reader(io.BytesIO(one))
    got = b""
    while chunk := r.read(7):
        got += chunk
    assert got == TEXT
    r.close()

    out = io.BytesIO()
    with d.stream_writer(out, closefd=False) as w:
        w.write(one[:10])
        w.write(one[10:])
    assert out.getvalue() == TEXT

    src, dst = io.BytesIO(TEXT), io.BytesIO()
    assert c.copy_stream(src, dst) == (len(TEXT), len(one))
    assert dst.getvalue() == one
    back = io.BytesIO()
    assert d.copy_stream(io.BytesIO(one), back) == (len(one), len(TEXT))
    assert back.getvalue() == TEXT


def test_open_text_binary_and_append(tmp_path, cli):
    p = tmp_path / "notes.txt.llmc"
    with llmc.open(p, "wt", level=1, encoding="utf-8") as f:
        f.write("first line\nsecond: é\n")
    with llmc.open(p, "ab", level=1) as f:
        f.write(b"appended frame\n")
    with llmc.open(p, "rt", encoding="utf-8") as f:
        assert f.readlines() == ["first line\n", "second: é\n", "appended frame\n"]
    # The command line reads what Python wrote (two frames).
    assert cli("-dc", p).stdout == "first line\nsecond: é\nappended frame\n".encode()
    with pytest.raises(ValueError):
        llmc.open(p, "rw")
    with pytest.raises(FileExistsError):
        llmc.open(p, "xb")


def test_errors_are_precise(tmp_path):
    packed = llmc.compress(TEXT, 1)
    with pytest.raises(llmc.CorruptError) as e:
        llmc.decompress(b"not an llmc file at all")
    assert isinstance(e.value, llmc.LlmcError)
    with pytest.raises(llmc.CorruptError):
        llmc.decompress(packed[: len(packed) // 2])
    damaged = bytearray(packed)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(llmc.CorruptError):
        llmc.decompress(bytes(damaged))
    with pytest.raises(llmc.CorruptError):
        llmc.decompress(b"")
    # The stream reader gives nothing unverified, then the same error.
    r = llmc.LlmcDecompressor().stream_reader(io.BytesIO(bytes(damaged)))
    with pytest.raises(llmc.CorruptError):
        r.read()

    other = llmc.compress(b"made with another model", model=TINY_MODEL)
    assert llmc.decompress(other, model=TINY_MODEL) == b"made with another model"
    with pytest.raises(llmc.ModelMismatchError) as e:
        llmc.decompress(other)
    assert "model" in str(e.value)

    with pytest.raises(llmc.ModelError):
        llmc.Model(tmp_path / "missing.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(llmc.ModelError):
        llmc.Model(tmp_path / "bad.gguf")
    with pytest.raises(ValueError):
        llmc.compress(TEXT, 10)
    with pytest.raises(ValueError):
        llmc.LlmcCompressor(level=0)


def test_a_failing_sink_raises_its_own_error():
    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(28, "No space left on device")

    w = llmc.LlmcCompressor(level=1).stream_writer(Full())
    w.write(TEXT)
    with pytest.raises(OSError, match="No space left"):
        w.close()


def test_threads_share_the_model_and_release_the_gil():
    inputs = [TEXT[i * 150 :] + bytes([i]) for i in range(8)]
    serial = [llmc.compress(x, 1) for x in inputs]
    results = [None] * len(inputs)

    def work(k):
        for i in range(k, len(inputs), 2):
            results[i] = llmc.compress(inputs[i], 1)

    ticks = 0
    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        ticks += 1  # runs only if the coding threads let go of the GIL
        time.sleep(0.001)
    for t in threads:
        t.join()
    assert results == serial
    assert ticks > 10


def test_model_object():
    m = llmc.Model()
    assert len(m.fingerprint) == 64
    assert m.threads >= 1
    assert "smollm2-135m" in llmc.known_models()
    assert llmc.Model("smollm2-135m").fingerprint == m.fingerprint
    assert m.decompress(m.compress(b"abc", 1)) == b"abc"
    assert llmc.__version__


def test_ctrl_c_stops_a_long_call():
    import _thread
    import signal

    big = small_text("alice29.txt", 150_000)
    # Python's own SIGINT handler, which a process started in the background
    # of a shell (SIGINT ignored) does not get; interrupt_main needs it.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    t = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            llmc.compress(big, 9)  # about a minute of work uninterrupted
    finally:
        signal.signal(signal.SIGINT, old)
    elapsed = time.perf_counter() - t
    timer.join()
    assert elapsed < 20, elapsed
    # The shared model is still good.
    assert llmc.decompress(llmc.compress(b"after the interrupt", 1)) == b"after the interrupt"


def _child_compress(q):
    q.put(llmc.compress(b"compressed in a forked child", 1))


def test_forked_child_loads_the_model_again():
    import multiprocessing

    want = llmc.compress(b"compressed in a forked child", 1)  # loaded here first
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_compress, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(timeout=60)
    assert p.exitcode == 0
    assert got == want


def test_gemma_by_name():
    # The second known model, fetched by name like the CLI fetches it.
    assert "gemma3-270m" in llmc.known_models()
    text = b"Gemma reads this line.\r\nAnd this one."
    packed = llmc.compress(text, 1, model="gemma3-270m")
    assert llmc.decompress(packed, model="gemma3-270m") == text
    with pytest.raises(llmc.ModelMismatchError) as e:
        llmc.decompress(packed)
    assert "--model gemma3-270m" in str(e.value)
    (s,) = llmc.score([text.decode()], 1, model="gemma3-270m")
    assert s.tokens > 0 and s.bits > 0
