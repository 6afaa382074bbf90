//! End-to-end tests of the `llmc` binary, each in its own temporary directory.
//!
//! The model is located once: `LLMC_TEST_MODEL` if set, else through
//! `llmc model fetch` (which honours `LLMC_HOME` and downloads the default
//! model on first use, so CI exercises the real fetch). Inputs are small
//! because the model is slow.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cli::*;

#[test]
fn file_round_trip_keeps_source() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["a.txt"]));
    assert_eq!(listing(d.path()), ["a.txt", "a.txt.llmc"]);
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes(), "source kept");
    fs::remove_file(d.path().join("a.txt")).unwrap();
    ok(&run(d.path(), &["-d", "a.txt.llmc"]));
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
    assert_eq!(listing(d.path()), ["a.txt", "a.txt.llmc"]);
}

#[test]
fn subcommands_round_trip() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["compress", "a.txt"]));
    ok(&run(
        d.path(),
        &["decompress", "-o", "back.txt", "a.txt.llmc"],
    ));
    assert_eq!(read(d.path(), "back.txt"), TEXT.as_bytes());
}

#[test]
fn empty_file_round_trip() {
    let d = tempdir();
    write(d.path(), "e", b"");
    ok(&run(d.path(), &["e"]));
    ok(&run(d.path(), &["-d", "-o", "e2", "e.llmc"]));
    assert_eq!(read(d.path(), "e2"), b"");
}

#[test]
fn stdin_to_stdout_pipe() {
    let d = tempdir();
    let c = run_stdin(d.path(), &[], TEXT.as_bytes());
    ok(&c);
    assert!(!c.stdout.is_empty());
    assert_ne!(c.stdout, TEXT.as_bytes());
    let back = run_stdin(d.path(), &["-d"], &c.stdout);
    ok(&back);
    assert_eq!(back.stdout, TEXT.as_bytes());
    let back = run_stdin(d.path(), &["-d", "-"], &c.stdout);
    ok(&back);
    assert_eq!(back.stdout, TEXT.as_bytes());
    assert!(listing(d.path()).is_empty(), "nothing written to disk");
    // Nothing on stderr when piped and not -v.
    assert_eq!(stderr(&back), "");
}

#[test]
fn stdout_flag_writes_no_file() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let c = run(d.path(), &["-c", "a.txt"]);
    ok(&c);
    assert_eq!(listing(d.path()), ["a.txt"]);
    write(d.path(), "x.llmc", &c.stdout);
    let back = run(d.path(), &["-dc", "x.llmc"]);
    ok(&back);
    assert_eq!(back.stdout, TEXT.as_bytes());
    assert_eq!(listing(d.path()), ["a.txt", "x.llmc"]);
}

#[test]
fn concatenated_frames_decompress_to_concatenation() {
    let d = tempdir();
    write(d.path(), "a", TEXT.as_bytes());
    write(d.path(), "b", OTHER.as_bytes());
    let c = run(d.path(), &["-c", "a", "b"]);
    ok(&c);
    let back = run_stdin(d.path(), &["-d"], &c.stdout);
    ok(&back);
    assert_eq!(back.stdout, [TEXT.as_bytes(), OTHER.as_bytes()].concat());
}

#[test]
fn output_name_flag() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["-o", "packed.bin", "a.txt"]));
    assert_eq!(listing(d.path()), ["a.txt", "packed.bin"]);
    // -o lifts the suffix rule for decompression.
    ok(&run(d.path(), &["-d", "-o", "sub.txt", "packed.bin"]));
    assert_eq!(read(d.path(), "sub.txt"), TEXT.as_bytes());
    // -o with two inputs is refused before anything is written.
    write(d.path(), "b.txt", OTHER.as_bytes());
    let o = run(d.path(), &["-o", "both", "a.txt", "b.txt"]);
    fails(&o);
    assert!(stderr(&o).starts_with("llmc: "), "{}", stderr(&o));
    assert!(!d.path().join("both").exists());
}

#[test]
fn rm_removes_source_only_after_success() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["--rm", "a.txt"]));
    assert_eq!(listing(d.path()), ["a.txt.llmc"]);
    ok(&run(d.path(), &["-d", "--rm", "a.txt.llmc"]));
    assert_eq!(listing(d.path()), ["a.txt"]);
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
    // A failing operation keeps its source.
    write(d.path(), "bad.llmc", b"this is not an llmc file at all");
    fails(&run(d.path(), &["-d", "--rm", "bad.llmc"]));
    assert_eq!(listing(d.path()), ["a.txt", "bad.llmc"]);
}

#[test]
fn refuses_to_overwrite_without_force() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    write(d.path(), "a.txt.llmc", b"precious");
    let o = run(d.path(), &["a.txt"]);
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: a.txt.llmc: "), "{e}");
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        read(d.path(), "a.txt.llmc"),
        b"precious",
        "existing file untouched"
    );
    assert_eq!(
        listing(d.path()),
        ["a.txt", "a.txt.llmc"],
        "no temp file left"
    );

    ok(&run(d.path(), &["-f", "a.txt"]));
    assert_ne!(read(d.path(), "a.txt.llmc"), b"precious");
    // Decompressing onto an existing file: refused, then forced.
    fails(&run(d.path(), &["-d", "a.txt.llmc"]));
    write(d.path(), "a.txt", b"old");
    ok(&run(d.path(), &["-d", "-f", "a.txt.llmc"]));
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
}

#[test]
fn missing_input_is_an_error() {
    let d = tempdir();
    let o = run(d.path(), &["nope.txt"]);
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: nope.txt: "), "{e}");
    assert!(!e.contains("os error"), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(listing(d.path()).is_empty());
}

#[test]
fn missing_input_does_not_need_the_model() {
    let d = tempdir();
    let o = llmc(d.path())
        .env("LLMC_MODEL", d.path().join("no-model.gguf"))
        .arg("nope.txt")
        .output()
        .unwrap();
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: nope.txt: "), "{e}");
}

#[test]
fn bad_model_fails_cleanly() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    write(d.path(), "b.txt", OTHER.as_bytes());
    let o = llmc(d.path())
        .env("LLMC_MODEL", d.path().join("no-model.gguf"))
        .args(["a.txt", "b.txt"])
        .output()
        .unwrap();
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: model: "), "{e}");
    assert_eq!(e.lines().count(), 1, "stops after the model fails: {e}");
    assert_eq!(listing(d.path()), ["a.txt", "b.txt"]);
}

#[test]
fn wrong_suffix_is_refused() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["-d", "a.txt"]);
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: a.txt: "), "{e}");
    assert!(e.contains("unknown suffix"), "{e}");
    assert_eq!(listing(d.path()), ["a.txt"]);
    // Compressing a file that already has the suffix is refused too.
    write(d.path(), "b.llmc", b"x");
    let o = run(d.path(), &["b.llmc"]);
    fails(&o);
    assert!(
        stderr(&o).contains("already has .llmc suffix"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listing(d.path()), ["a.txt", "b.llmc"]);
}

#[test]
fn test_mode_accepts_good_and_rejects_corrupt() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["a.txt"]));
    let t = run(d.path(), &["-t", "a.txt.llmc"]);
    ok(&t);
    assert!(t.stdout.is_empty());
    let packed = read(d.path(), "a.txt.llmc");

    // A flipped bit in the last byte, then a truncation: both must fail.
    let mut bad = packed.clone();
    *bad.last_mut().unwrap() ^= 0x10;
    write(d.path(), "flip.llmc", &bad);
    let o = run(d.path(), &["-t", "flip.llmc"]);
    fails(&o);
    assert!(
        stderr(&o).starts_with("llmc: flip.llmc: "),
        "{}",
        stderr(&o)
    );
    write(d.path(), "cut.llmc", &packed[..packed.len() / 2]);
    fails(&run(d.path(), &["-t", "cut.llmc"]));
    write(d.path(), "junk.llmc", b"not compressed");
    fails(&run(d.path(), &["-t", "junk.llmc"]));
    // -t writes nothing.
    assert_eq!(
        listing(d.path()),
        ["a.txt", "a.txt.llmc", "cut.llmc", "flip.llmc", "junk.llmc"]
    );
}

#[test]
fn list_prints_header_facts_without_the_model() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["a.txt"]));
    let packed_len = read(d.path(), "a.txt.llmc").len();
    let o = llmc(d.path())
        .env("LLMC_MODEL", d.path().join("no-model.gguf"))
        .args(["-lv", "a.txt.llmc"])
        .output()
        .unwrap();
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "Frames",
            "Blocks",
            "Compressed",
            "Uncompressed",
            "Ratio",
            "Bits/byte",
            "Model",
            "Coder",
            "Level",
            "Check",
            "Filename"
        ]
    );
    // The model column names a known model (its name has a space).
    let line = lines.next().unwrap();
    assert!(line.contains(llmc::registry::DEFAULT_MODEL.name), "{out}");
    let line = line.replace(llmc::registry::DEFAULT_MODEL.name, "MODEL");
    let row: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(row[6], "MODEL", "{out}");
    assert_eq!(row[0], "1", "one frame: {out}");
    assert_eq!(row[2], packed_len.to_string(), "{out}");
    assert_eq!(row[3], TEXT.len().to_string(), "{out}");
    let ratio: f64 = row[4].parse().unwrap();
    assert!(
        (ratio - TEXT.len() as f64 / packed_len as f64).abs() < 1e-3,
        "{out}"
    );
    assert_eq!(row[7], "arith", "{out}");
    assert_eq!(row[8], "5", "{out}");
    assert_eq!(*row.last().unwrap(), "a.txt.llmc");

    let o = run(d.path(), &["-l", "a.txt"]);
    fails(&o);
    assert!(stderr(&o).starts_with("llmc: a.txt: "), "{}", stderr(&o));
}

#[test]
fn several_files_continue_after_an_error() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    write(d.path(), "c.txt", OTHER.as_bytes());
    let o = run(d.path(), &["a.txt", "missing.txt", "c.txt"]);
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: missing.txt: "), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert_eq!(
        listing(d.path()),
        ["a.txt", "a.txt.llmc", "c.txt", "c.txt.llmc"]
    );
    fs::remove_file(d.path().join("a.txt")).unwrap();
    fs::remove_file(d.path().join("c.txt")).unwrap();
    ok(&run(d.path(), &["-d", "a.txt.llmc", "c.txt.llmc"]));
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
    assert_eq!(read(d.path(), "c.txt"), OTHER.as_bytes());
}

#[test]
fn failed_decompression_leaves_no_partial_output() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["--rm", "a.txt"]));
    let mut bad = read(d.path(), "a.txt.llmc");
    *bad.last_mut().unwrap() ^= 0x01;
    write(d.path(), "a.txt.llmc", &bad);
    fails(&run(d.path(), &["-d", "a.txt.llmc"]));
    assert_eq!(listing(d.path()), ["a.txt.llmc"], "no a.txt, no temp file");
    fails(&run(d.path(), &["-d", "-f", "-o", "out", "a.txt.llmc"]));
    assert_eq!(listing(d.path()), ["a.txt.llmc"]);
}

#[test]
fn verbose_prints_zstd_style_summary() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["-v", "a.txt"]);
    ok(&o);
    let n = read(d.path(), "a.txt.llmc").len();
    let e = stderr(&o);
    let pct = 100.0 * n as f64 / TEXT.len() as f64;
    let want = format!(
        "a.txt : {pct:.2}%   ({} => {n} bytes, a.txt.llmc)",
        TEXT.len()
    );
    assert_eq!(e.trim_end(), want);
    // -q silences, default prints nothing when piped.
    let o = run(d.path(), &["-q", "-d", "-c", "a.txt.llmc"]);
    ok(&o);
    assert_eq!(stderr(&o), "");
}

#[test]
fn usage_errors_exit_1_help_exits_0() {
    let d = tempdir();
    let o = run(d.path(), &["--no-such-option"]);
    fails(&o);
    let o = run(d.path(), &["-d", "compress", "x"]);
    fails(&o);
    let o = run(d.path(), &["--help"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: llmc"));
    let o = run(d.path(), &["--version"]);
    ok(&o);
}

#[test]
fn directory_input_is_ignored_with_error() {
    let d = tempdir();
    fs::create_dir(d.path().join("sub")).unwrap();
    let o = run(d.path(), &["sub"]);
    fails(&o);
    assert!(stderr(&o).starts_with("llmc: sub: "), "{}", stderr(&o));
    assert_eq!(listing(d.path()), ["sub"]);
}

#[test]
fn model_path_prints_the_model_in_use() {
    let d = tempdir();
    let o = run(d.path(), &["model", "path"]);
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        model().display().to_string()
    );
    let o = run(d.path(), &["model", "path", "--model", "nope.gguf"]);
    fails(&o);
    assert!(stderr(&o).starts_with("llmc: model: "), "{}", stderr(&o));
}

#[test]
fn model_info_names_the_model() {
    let d = tempdir();
    let o = run(d.path(), &["model", "info"]);
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&*model().display().to_string()), "{out}");
}

/// Send SIGINT to a child with the system's `kill`.
#[cfg(unix)]
fn sigint(child: &std::process::Child) {
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
}

/// Ctrl-C while the input is still being read: the operation stops at the
/// next check, exits 130, and leaves neither output nor temporary file.
#[cfg(unix)]
#[test]
fn ctrl_c_leaves_no_file() {
    let d = tempdir();
    let mut child = llmc(d.path())
        .args(["-o", "out.llmc", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(TEXT.as_bytes()).unwrap();
    // Give the process time to install its handler and block in read.
    std::thread::sleep(std::time::Duration::from_millis(500));
    sigint(&child);
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));
}

/// A second Ctrl-C exits at once, even while blocked.
#[cfg(unix)]
#[test]
fn second_ctrl_c_exits_at_once() {
    let d = tempdir();
    let mut child = llmc(d.path())
        .args(["-o", "out.llmc", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    sigint(&child);
    std::thread::sleep(std::time::Duration::from_millis(100));
    sigint(&child);
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(o.status.code(), Some(130), "stderr: {}", stderr(&o));
    assert!(listing(d.path()).is_empty(), "{:?}", listing(d.path()));
}

/// Run `llmc ARGS` under `script` so that stdin and stdout are a terminal.
/// None if `script` (util-linux) is not installed.
fn in_terminal(dir: &Path, args: &str) -> Option<Output> {
    let cmd = format!("{BIN} {args}");
    Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir)
        .env("LLMC_MODEL", model())
        .stdin(Stdio::null())
        .output()
        .ok()
}

#[test]
fn refuses_compressed_data_on_a_terminal() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let Some(o) = in_terminal(d.path(), "-c a.txt") else {
        eprintln!("script(1) not available: skipped");
        return;
    };
    fails(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("llmc: stdout is a terminal"), "{out}");
    // -f forces; decompressed data may go to a terminal without -f.
    let o = in_terminal(d.path(), "-f -c a.txt").unwrap();
    ok(&o);
    ok(&run(d.path(), &["a.txt"]));
    let o = in_terminal(d.path(), "-dc a.txt.llmc").unwrap();
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("quick brown fox"));
    // No file and stdin a terminal: refused.
    let o = in_terminal(d.path(), "-d").unwrap();
    fails(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("stdin is a terminal"));
}

#[test]
fn output_into_missing_directory_fails_cleanly() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["-o", "nodir/x.llmc", "a.txt"]);
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: nodir/x.llmc: "), "{e}");
    assert!(!e.contains(".tmp"), "no temp name in the message: {e}");
    assert_eq!(listing(d.path()), ["a.txt"]);
}

/// Ctrl-C in the middle of model coding: stops at the codec's next write,
/// exits 130, removes the temporary file, writes no output.
#[cfg(unix)]
#[test]
fn ctrl_c_during_coding_cleans_up() {
    let d = tempdir();
    let text = TEXT.repeat(20);
    write(d.path(), "big.txt", text.as_bytes());
    let mut child = llmc(d.path())
        .args(["--chunk-tokens", "16", "big.txt"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the temporary output file: coding has started.
    let t0 = std::time::Instant::now();
    while !listing(d.path())
        .iter()
        .any(|n| n.contains(".llmc-partial-"))
    {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("finished before it could be interrupted: {st:?}");
        }
        assert!(t0.elapsed().as_secs() < 120, "no temp file appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sigint(&child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "stderr: {}", stderr(&o));
    assert_eq!(listing(d.path()), ["big.txt"]);
}

#[test]
fn score_agrees_with_the_compressed_size() {
    let d = tempdir();
    let text = TEXT.repeat(3);
    write(d.path(), "a.txt", text.as_bytes());
    let o = run(d.path(), &["score", "a.txt"]);
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    let mut lines = out.lines();
    let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "Bytes",
            "Tokens",
            "Bits/token",
            "Bits/byte",
            "Ideal",
            "size",
            "Size",
            "File"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], text.len().to_string(), "{out}");
    let tokens: u64 = row[1].parse().unwrap();
    assert!(tokens > 0 && tokens < text.len() as u64, "{out}");
    let bpb: f64 = row[3].parse().unwrap();
    let ideal: u64 = row[4].parse().unwrap();
    let size: u64 = row[5].parse().unwrap();
    assert!(bpb > 0.0 && bpb < 8.0, "{out}");
    assert_eq!(row[6], "a.txt");

    // The codec's output (header and end record included) is within a
    // small overhead above the model's cross-entropy, and the size column
    // is that output but for the coder's last byte (at most one per
    // stream; this input is one stream).
    ok(&run(d.path(), &["a.txt"]));
    let packed = read(d.path(), "a.txt.llmc").len() as u64;
    assert!(packed >= ideal, "packed {packed} < ideal {ideal}: {out}");
    assert!(
        packed <= ideal + 128,
        "packed {packed} vs ideal {ideal}: {out}"
    );
    assert!(
        size <= packed && packed <= size + 1,
        "packed {packed} vs size {size}: {out}"
    );
}

#[test]
fn bench_table_lists_every_method() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["bench", "a.txt"]);
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("a.txt: {} bytes", TEXT.len()));
    let methods: Vec<String> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        methods,
        ["llmc arith", "llmc rank", "zstd -19", "xz -9", "gzip -9"]
    );
    // The llmc arith row is the size `llmc -c` writes.
    let c = run(d.path(), &["-c", "a.txt"]);
    ok(&c);
    let size: usize = lines[2].split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(size, c.stdout.len(), "{out}");
}
