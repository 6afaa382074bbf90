//! Helpers of the command-line tests: run the `llmc` binary in a temporary
//! directory with the test model.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_llmc");

pub const TEXT: &str = "The quick brown fox jumps over the lazy dog. \
It was the best of times, it was the worst of times.\n";

pub const OTHER: &str =
    "Alice was beginning to get very tired of sitting by her sister on the bank.\n";

pub fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        if let Some(p) = std::env::var_os("LLMC_TEST_MODEL") {
            return PathBuf::from(p);
        }
        let out = Command::new(BIN)
            .args(["model", "fetch"])
            .env_remove("LLMC_MODEL")
            .stdin(Stdio::null())
            .output()
            .expect("run llmc model fetch");
        assert!(
            out.status.success(),
            "llmc model fetch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8(out.stdout).expect("utf-8 path");
        PathBuf::from(s.trim_end_matches('\n'))
    })
}

pub fn llmc(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("LLMC_MODEL", model())
        .stdin(Stdio::null());
    c
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    llmc(dir).args(args).output().expect("run llmc")
}

pub fn run_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = llmc(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmc");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait llmc");
    writer.join().expect("writer thread");
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn ok(o: &Output) {
    assert!(o.status.success(), "failed ({:?}): {}", o.status, stderr(o));
}

#[track_caller]
pub fn fails(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1; stderr: {}",
        stderr(o)
    );
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn write(dir: &Path, name: &str, data: &[u8]) {
    fs::write(dir.join(name), data).expect("write input");
}

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}
