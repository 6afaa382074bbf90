//! The command line's safety rules and zstd habits (end to end): what is
//! not a regular file is never read without -f nor ever removed, a device
//! given as the output stays a device, signals end the work promptly with
//! the shell's status, nothing unverified reaches standard output, output
//! streams while input arrives, and zstd's options behave as documented.
#![cfg(unix)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::*;

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
}

/// A character device like /dev/null at `path`; false where mknod is not
/// allowed (not root), and the test then checks the rest.
fn mknod_null(path: &Path) -> bool {
    Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_char_device(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

fn kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
}

#[test]
fn rm_never_removes_a_fifo_a_symlink_or_a_device() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    mkfifo(&d.path().join("fifo"));
    std::os::unix::fs::symlink("a.txt", d.path().join("link")).unwrap();
    let device = mknod_null(&d.path().join("null"));
    let mut names = vec!["fifo", "link"];
    if device {
        names.push("null");
    }
    for name in &names {
        let o = run(d.path(), &["--rm", name]);
        fails(&o);
        let e = stderr(&o);
        assert!(e.contains(name) && e.contains("-f"), "{e}");
    }
    let mut want = vec!["a.txt", "fifo", "link"];
    if device {
        want.push("null");
        assert!(is_char_device(&d.path().join("null")));
    }
    assert_eq!(listing(d.path()), want);
    assert!(fs::symlink_metadata(d.path().join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    // With -f a symbolic link is read through and kept; its target stays.
    let o = run(d.path(), &["-f", "--rm", "link"]);
    ok(&o);
    assert!(
        stderr(&o).contains("symbolic link; not removed"),
        "{}",
        stderr(&o)
    );
    assert!(fs::symlink_metadata(d.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
    ok(&run(d.path(), &["-t", "link.llmc"]));

    // A regular file is removed only after its output is complete.
    ok(&run(d.path(), &["--rm", "a.txt"]));
    assert!(!d.path().join("a.txt").exists());
    ok(&run(d.path(), &["-d", "a.txt.llmc"]));
    assert_eq!(read(d.path(), "a.txt"), TEXT.as_bytes());
}

#[test]
fn forced_output_onto_a_device_writes_into_it() {
    let d = tempdir();
    if !mknod_null(&d.path().join("null")) {
        eprintln!("mknod not permitted here: skipping the device case");
        return;
    }
    write(d.path(), "a.txt", TEXT.as_bytes());
    // Without -f an existing output is refused, device or not.
    fails(&run(d.path(), &["-o", "null", "a.txt"]));
    ok(&run(d.path(), &["-f", "-o", "null", "a.txt"]));
    assert!(is_char_device(&d.path().join("null")));
    ok(&run(d.path(), &["a.txt"]));
    ok(&run(d.path(), &["-d", "-f", "-o", "null", "a.txt.llmc"]));
    assert!(is_char_device(&d.path().join("null")));
    assert_eq!(listing(d.path()), ["a.txt", "a.txt.llmc", "null"]);
}

/// A signal while llmc waits on input that never comes: it exits at once
/// (within 2 s) with 128 + the signal, leaving no file.
#[test]
fn signals_end_a_blocked_read_promptly() {
    let d = tempdir();
    mkfifo(&d.path().join("fifo"));
    for (sig, code) in [("-TERM", 143), ("-INT", 130), ("-HUP", 129)] {
        // Blocked opening a FIFO that nobody writes (-f reads a FIFO).
        let child = llmc(d.path())
            .args(["-f", "-o", "out.llmc", "fifo"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // And blocked reading a pipe that stays open and empty.
        let mut piped = llmc(d.path())
            .args(["-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _writer = piped.stdin.take();
        std::thread::sleep(Duration::from_millis(700));
        for c in [child, piped] {
            let t0 = Instant::now();
            kill(c.id(), sig);
            let o = c.wait_with_output().unwrap();
            assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
            assert_eq!(o.status.code(), Some(code), "{sig}: {}", stderr(&o));
        }
        assert_eq!(listing(d.path()), ["fifo"]);
    }
}

/// 4.5 MiB of incompressible bytes with a newline every 1000: two blocks
/// (blocks hold at most 4 MiB, cut after a newline), coded without the
/// model.
fn two_block_input() -> (Vec<u8>, usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data: Vec<u8> = (0..(9usize << 19))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    for i in (999..data.len()).step_by(1000) {
        data[i] = b'\n';
    }
    let first = data[..4 << 20].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    (data, first)
}

#[test]
fn corrupt_input_releases_only_verified_bytes_to_stdout() {
    let d = tempdir();
    let (data, first) = two_block_input();
    write(d.path(), "x.bin", &data);
    ok(&run(d.path(), &["x.bin"]));
    let mut packed = read(d.path(), "x.bin.llmc");
    ok(&run(d.path(), &["-l", "-v", "x.bin.llmc"]));
    // Flip a byte inside the second block.
    let at = packed.len() - 10_000;
    packed[at] ^= 0x40;
    write(d.path(), "bad.llmc", &packed);
    let o = run(d.path(), &["-dc", "bad.llmc"]);
    fails(&o);
    // Exactly the first block, which was verified; none of the second.
    assert_eq!(o.stdout.len(), first, "{}", stderr(&o));
    assert_eq!(&o.stdout[..], &data[..first]);

    // A one-block model-coded file with a flipped payload byte: nothing.
    write(d.path(), "t.txt", TEXT.repeat(4).as_bytes());
    ok(&run(d.path(), &["t.txt"]));
    let mut packed = read(d.path(), "t.txt.llmc");
    let mid = packed.len() / 2;
    packed[mid] ^= 0x01;
    write(d.path(), "t.llmc", &packed);
    let o = run(d.path(), &["-dc", "t.llmc"]);
    fails(&o);
    assert_eq!(o.stdout.len(), 0, "{}", stderr(&o));
}

/// Output streams: the first block's compressed bytes come out while the
/// input is still open.
#[test]
fn compressed_output_streams_before_the_input_ends() {
    let d = tempdir();
    let (data, _) = two_block_input();
    let mut child = llmc(d.path())
        .args(["-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (first_block, arrived) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1 << 16];
        loop {
            let n = stdout.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            // More than a header: the first block (about 4 MiB stored).
            let before = got.len();
            got.extend_from_slice(&buf[..n]);
            if before <= 1 << 20 && got.len() > 1 << 20 {
                let _ = first_block.send(());
            }
        }
        got
    });
    stdin.write_all(&data).unwrap();
    // The input stays open: the first block must come out all the same.
    let streamed = arrived.recv_timeout(Duration::from_secs(120)).is_ok();
    drop(stdin);
    let got = reader.join().unwrap();
    let o = child.wait_with_output().unwrap();
    ok(&o);
    assert!(streamed, "no block came out while the input was open");
    write(d.path(), "x.llmc", &got);
    let o = run(d.path(), &["-dc", "x.llmc"]);
    ok(&o);
    assert!(o.stdout == data, "round trip");
}

#[test]
fn zstd_level_numbers_threads_and_recursion() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["-19", "a.txt"]);
    fails(&o);
    assert!(stderr(&o).contains("1..=9"), "{}", stderr(&o));
    ok(&run(d.path(), &["-T0", "-1", "a.txt"]));
    let o = run(d.path(), &["-T", "4096", "-t", "a.txt.llmc"]);
    fails(&o);
    let o = run(d.path(), &["-T", "64", "-t", "a.txt.llmc"]);
    ok(&o);
    fs::remove_file(d.path().join("a.txt.llmc")).unwrap();

    fs::create_dir_all(d.path().join("dir/sub")).unwrap();
    write(&d.path().join("dir"), "b.txt", OTHER.as_bytes());
    write(&d.path().join("dir/sub"), "c.txt", TEXT.as_bytes());
    // Without -r a directory is an error; with it, its files are done.
    fails(&run(d.path(), &["dir"]));
    ok(&run(d.path(), &["-r", "dir"]));
    assert_eq!(
        listing(&d.path().join("dir")),
        ["b.txt", "b.txt.llmc", "sub"]
    );
    assert_eq!(listing(&d.path().join("dir/sub")), ["c.txt", "c.txt.llmc"]);
    // Again: the .llmc files are skipped, the outputs exist (refused).
    fails(&run(d.path(), &["-r", "dir"]));
    fs::remove_file(d.path().join("dir/b.txt")).unwrap();
    fs::remove_file(d.path().join("dir/sub/c.txt")).unwrap();
    ok(&run(d.path(), &["-d", "-r", "dir"]));
    assert_eq!(read(&d.path().join("dir"), "b.txt"), OTHER.as_bytes());
    assert_eq!(read(&d.path().join("dir/sub"), "c.txt"), TEXT.as_bytes());
    // `--` ends the options: a file named like one.
    write(d.path(), "-9", TEXT.as_bytes());
    ok(&run(d.path(), &["--", "-9"]));
    assert!(d.path().join("-9.llmc").exists());
}

#[test]
fn names_version_completions_and_manual() {
    let d = tempdir();
    for (name, expect_file) in [("unllmc", true), ("llmccat", false)] {
        std::os::unix::fs::symlink(BIN, d.path().join(name)).unwrap();
        write(d.path(), "a.txt", TEXT.as_bytes());
        ok(&run(d.path(), &["-f", "a.txt"]));
        fs::remove_file(d.path().join("a.txt")).unwrap();
        let o = Command::new(d.path().join(name))
            .current_dir(d.path())
            .env("LLMC_MODEL", model())
            .arg("a.txt.llmc")
            .output()
            .unwrap();
        ok(&o);
        assert_eq!(d.path().join("a.txt").exists(), expect_file, "{name}");
        if !expect_file {
            assert_eq!(o.stdout, TEXT.as_bytes());
        }
    }
    let o = run(d.path(), &["--version"]);
    ok(&o);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.contains("reads versions 1 and 2") && v.contains("SmolLM2"),
        "{v}"
    );
    let o = run(d.path(), &["--completions", "bash"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--level"));
    let o = run(d.path(), &["--man"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(".ie"));
}

#[test]
fn output_failures_name_the_output_and_headers_are_checked_first() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["a.txt"]));
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = llmc(d.path())
        .args(["-dc", "a.txt.llmc"])
        .stdout(full)
        .output()
        .unwrap();
    fails(&o);
    assert!(stderr(&o).starts_with("llmc: stdout: "), "{}", stderr(&o));

    // Not an llmc file: refused before the model is loaded (a missing
    // model would otherwise be the error).
    write(d.path(), "x.llmc", b"hello, not compressed");
    let o = llmc(d.path())
        .args(["-d", "x.llmc"])
        .env("LLMC_MODEL", "/nonexistent/model.gguf")
        .output()
        .unwrap();
    fails(&o);
    assert!(stderr(&o).contains("bad magic"), "{}", stderr(&o));

    // -c with -o, and -M below what the model needs.
    fails(&run(d.path(), &["-c", "-o", "y", "a.txt"]));
    let o = run(d.path(), &["-M", "1M", "-t", "a.txt.llmc"]);
    fails(&o);
    assert!(stderr(&o).contains("-M"), "{}", stderr(&o));
    ok(&run(d.path(), &["-M", "2G", "-t", "a.txt.llmc"]));
}

/// A temporary file left by a killed run (its process is gone) is removed
/// by the next run for the same output; one of a live process is not.
#[test]
fn stale_partial_files_are_cleaned() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = format!("a.txt.llmc.llmc-partial-{dead}-abcdef");
    let live = format!("a.txt.llmc.llmc-partial-{}-abcdef", std::process::id());
    write(d.path(), &stale, b"partial");
    write(d.path(), &live, b"partial");
    ok(&run(d.path(), &["a.txt"]));
    assert_eq!(listing(d.path()), ["a.txt", "a.txt.llmc", live.as_str()]);
}

/// A full disk: the error names the output, and no partial file stays.
/// Needs a small tmpfs (root); skipped where mounting is not allowed.
#[test]
fn full_disk_leaves_no_partial_file() {
    let d = tempdir();
    let small = d.path().join("small");
    fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here: skipping the full-disk case");
        return;
    }
    // Fill it up.
    let mut fill = fs::File::create(small.join("fill")).unwrap();
    while fill.write_all(&[0u8; 1024]).is_ok() {}
    drop(fill);
    write(d.path(), "a.txt", TEXT.repeat(8).as_bytes());
    let o = run(d.path(), &["-o", "small/a.txt.llmc", "a.txt"]);
    let listed = listing(&small);
    let _ = Command::new("umount").arg(&small).status();
    fails(&o);
    let e = stderr(&o);
    assert!(e.starts_with("llmc: small/a.txt.llmc: "), "{e}");
    assert!(!e.contains("partial"), "{e}");
    assert_eq!(listed, ["fill"]);
}
