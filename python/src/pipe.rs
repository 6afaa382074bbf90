//! Work that runs while Python goes on: one-shot calls on a helper thread
//! (so that Ctrl-C is seen while the model works), and incremental streams
//! on a thread of their own, fed from Python ([`Push`]: Python writes, the
//! result goes to a file object) or feeding Python ([`Pull`]: the input
//! comes from a file object, Python reads the result).
//!
//! The GIL is released whenever Rust waits or works; a thread that calls
//! into a Python file object takes it for that call only. Waits are cut
//! into steps of at most [`STEP`], between which pending Python signals
//! run: a `KeyboardInterrupt` stops the work at its next forward pass.

use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use llmc::codec::{CodecError, CompressOptions, DecompressOptions, Progress};
use llmc::engine::Engine;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::errors::{self, LlmcError};

/// Longest wait without looking at Python's signals.
const STEP: Duration = Duration::from_millis(100);

/// Chunks in flight between Python and a stream's thread (each at most
/// what one `write` or one coded block holds).
const QUEUE: usize = 4;

/// Runs `step` without the GIL until it yields a value, running Python's
/// signal handlers between steps (each step returns within about [`STEP`]).
fn detach_until<T: Send>(
    py: Python<'_>,
    mut step: impl FnMut() -> Option<T> + Send,
) -> PyResult<T> {
    loop {
        if let Some(v) = py.detach(&mut step) {
            return Ok(v);
        }
        py.check_signals()?;
    }
}

/// A progress callback that stops the codec once `cancel` is set.
pub fn until(cancel: &AtomicBool) -> impl FnMut(Progress) -> ControlFlow<()> + Send + '_ {
    move |_| match cancel.load(Ordering::Relaxed) {
        true => ControlFlow::Break(()),
        false => ControlFlow::Continue(()),
    }
}

/// Sets its flag when dropped, panic or not.
struct Done<'a>(&'a (Mutex<bool>, Condvar));

impl Drop for Done<'_> {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0 .1.notify_all();
    }
}

/// Runs `f` on a helper thread, without the GIL, while this thread watches
/// for signals; on one (a `KeyboardInterrupt`), `f`'s cancel flag is set,
/// `f` is awaited and the signal's exception raised.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce(&AtomicBool) -> T + Send) -> PyResult<T> {
    let cancel = AtomicBool::new(false);
    let done = (Mutex::new(false), Condvar::new());
    thread::scope(|s| {
        let h = s.spawn(|| {
            let _done = Done(&done);
            f(&cancel)
        });
        let waited = detach_until(py, || {
            let g = done.0.lock().unwrap_or_else(|e| e.into_inner());
            let (g, _) = done
                .1
                .wait_timeout_while(g, STEP, |d| !*d)
                .unwrap_or_else(|e| e.into_inner());
            g.then_some(())
        });
        if let Err(e) = waited {
            cancel.store(true, Ordering::Relaxed);
            let _ = py.detach(|| h.join());
            return Err(e);
        }
        py.detach(|| h.join())
            .map_err(|_| LlmcError::new_err("internal error: llmc's worker thread panicked"))
    })
}

/// What a stream's thread does.
#[derive(Clone)]
pub enum Op {
    Compress(CompressOptions),
    Decompress(DecompressOptions),
}

impl Op {
    fn run(
        &self,
        engine: &Engine,
        input: impl Read + Send,
        output: impl Write + Send,
        cancel: &AtomicBool,
    ) -> Result<u64, CodecError> {
        let mut progress = until(cancel);
        match self {
            Op::Compress(o) => engine.compress(input, output, o, &mut progress),
            Op::Decompress(o) => engine.decompress(input, output, o, &mut progress),
        }
    }
}

/// The exception a Python file object raised inside a stream's thread,
/// kept to be raised again in the caller's thread.
type Slot = Arc<Mutex<Option<PyErr>>>;

fn keep(slot: &Slot, e: PyErr, what: &str) -> io::Error {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    io::Error::other(format!("the file object's {what}() raised an exception"))
}

/// A Python object with `write(bytes)`, as a [`Write`].
struct PyWriter {
    obj: Py<PyAny>,
    err: Slot,
}

impl Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Python::attach(|py| {
            match self.obj.call_method1(py, "write", (PyBytes::new(py, buf),)) {
                // Raw files may write less and say so; None means all.
                Ok(n) => Ok(n
                    .extract::<Option<usize>>(py)
                    .ok()
                    .flatten()
                    .map_or(buf.len(), |n| n.min(buf.len()))),
                Err(e) => Err(keep(&self.err, e, "write")),
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A Python object with `read(n)`, as a [`Read`].
struct PyReader {
    obj: Py<PyAny>,
    err: Slot,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let want = out.len().max(64 << 10);
            let got = Python::attach(|py| -> io::Result<Vec<u8>> {
                let v = self
                    .obj
                    .call_method1(py, "read", (want,))
                    .map_err(|e| keep(&self.err, e, "read"))?;
                match v.extract::<PyBackedBytes>(py) {
                    Ok(b) => Ok(b.to_vec()),
                    Err(_) if v.is_none(py) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(keep(&self.err, e.into(), "read")),
                }
            })?;
            self.buf = got;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Chunks from Python, as a [`Read`]; the sender's end is the end of input.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(v) => (self.buf, self.pos) = (v, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Chunks to Python, as a [`Write`]; fails once the reader is gone.
struct ChannelWriter(SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the stream was closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stream's thread, its cancel flag and the exception slot of its file
/// object.
struct Worker {
    handle: Option<JoinHandle<Result<u64, CodecError>>>,
    cancel: Arc<AtomicBool>,
    err: Slot,
}

impl Worker {
    fn spawn(
        engine: Arc<Engine>,
        op: Op,
        input: impl Read + Send + 'static,
        output: impl Write + Send + 'static,
        err: Slot,
    ) -> Worker {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let handle = thread::spawn(move || op.run(&engine, input, output, &flag));
        Worker {
            handle: Some(handle),
            cancel,
            err,
        }
    }

    /// Waits for the thread; its result, or the exception that ended it
    /// (the file object's own first). Later calls return 0.
    fn join(&mut self, py: Python<'_>) -> PyResult<u64> {
        let Some(h) = self.handle.take() else {
            return Ok(0);
        };
        let r = py.detach(|| h.join());
        if let Some(e) = self.err.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        match r {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(errors::codec(e)),
            Err(_) => Err(LlmcError::new_err(
                "internal error: llmc's stream thread panicked",
            )),
        }
    }

    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Data written from Python, coded on a thread, the result written to a
/// file object (`stream_writer`).
#[pyclass(module = "llmc._llmc", name = "_Push")]
pub struct Push {
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Worker,
}

impl Push {
    pub fn start(engine: Arc<Engine>, op: Op, sink: Py<PyAny>) -> Push {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let err = Slot::default();
        let output = PyWriter {
            obj: sink,
            err: err.clone(),
        };
        let input = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        Push {
            tx: Some(tx),
            worker: Worker::spawn(engine, op, input, output, err),
        }
    }
}

#[pymethods]
impl Push {
    /// Hands `data` to the coder (waits while it is behind).
    fn write(&mut self, py: Python<'_>, data: PyBackedBytes) -> PyResult<usize> {
        let n = data.len();
        let Some(tx) = self.tx.as_ref() else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "write to a finished stream",
            ));
        };
        let mut pending = Some(data.to_vec());
        let sent = detach_until(py, || {
            let until = Instant::now() + STEP;
            loop {
                match tx.try_send(pending.take().expect("kept until sent")) {
                    Ok(()) => return Some(true),
                    Err(TrySendError::Disconnected(_)) => return Some(false),
                    Err(TrySendError::Full(v)) => pending = Some(v),
                }
                if Instant::now() >= until {
                    return None;
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        match sent {
            Ok(true) => Ok(n),
            // The coder stopped early: its error says why.
            Ok(false) => {
                self.tx = None;
                self.worker.join(py)?;
                Err(LlmcError::new_err("the stream ended early"))
            }
            Err(e) => {
                self.abort(py);
                Err(e)
            }
        }
    }

    /// Ends the input and waits for the last bytes to be written; returns
    /// the bytes written to the file object.
    fn finish(&mut self, py: Python<'_>) -> PyResult<u64> {
        self.tx = None;
        self.worker.join(py)
    }

    /// Stops the coder; what it wrote so far stays written.
    fn abort(&mut self, py: Python<'_>) {
        self.worker.cancel();
        self.tx = None;
        let _ = self.worker.join(py);
    }
}

/// A file object's data, coded on a thread, read from Python
/// (`stream_reader`).
#[pyclass(module = "llmc._llmc", name = "_Pull")]
pub struct Pull {
    rx: Option<Mutex<Receiver<Vec<u8>>>>,
    buf: Vec<u8>,
    pos: usize,
    worker: Worker,
}

impl Pull {
    pub fn start(engine: Arc<Engine>, op: Op, source: Py<PyAny>) -> Pull {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let err = Slot::default();
        let input = PyReader {
            obj: source,
            err: err.clone(),
            buf: Vec::new(),
            pos: 0,
        };
        Pull {
            rx: Some(Mutex::new(rx)),
            buf: Vec::new(),
            pos: 0,
            worker: Worker::spawn(engine, op, input, ChannelWriter(tx), err),
        }
    }

    /// The next chunk; `None` at the end (after the worker's result).
    fn next_chunk(&mut self, py: Python<'_>) -> PyResult<Option<Vec<u8>>> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(None);
        };
        let rx = rx.get_mut().unwrap_or_else(|e| e.into_inner());
        // `move`: the closure owns the `&mut`, which may cross threads.
        let got = detach_until(py, move || match rx.recv_timeout(STEP) {
            Ok(v) => Some(Some(v)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(None),
        });
        match got {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => {
                self.rx = None;
                self.worker.join(py)?;
                Ok(None)
            }
            Err(e) => {
                self.close(py);
                Err(e)
            }
        }
    }
}

#[pymethods]
impl Pull {
    /// Up to `size` bytes (all that remain if `size` < 0); empty at the end.
    #[pyo3(signature = (size = -1))]
    fn read<'py>(&mut self, py: Python<'py>, size: isize) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        loop {
            let want = match size {
                s if s < 0 => usize::MAX,
                s => s as usize - out.len(),
            };
            if want == 0 {
                break;
            }
            if self.pos < self.buf.len() {
                let n = want.min(self.buf.len() - self.pos);
                out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                // A sized read returns what is at hand, as raw files do.
                if size >= 0 {
                    break;
                }
                continue;
            }
            match self.next_chunk(py)? {
                Some(v) => (self.buf, self.pos) = (v, 0),
                None => break,
            }
        }
        Ok(PyBytes::new(py, &out))
    }

    /// Stops the coder and forgets what was not read.
    fn close(&mut self, py: Python<'_>) {
        self.worker.cancel();
        self.rx = None;
        let _ = self.worker.join(py);
        self.buf = Vec::new();
        self.pos = 0;
    }
}
