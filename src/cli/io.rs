//! Where bytes come from and go to: standard streams, or files written through
//! a temporary file in the destination directory that is renamed into place
//! only on success (so an error or a signal never leaves a partial file and
//! never overwrites anything without -f). Only regular files are read
//! without -f, only regular files are removed (`--rm`), and an existing
//! device or FIFO given as the output (with -f) is written into, never
//! replaced.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use tempfile::NamedTempFile;

use super::signal::{self, Blocking};

pub const SUFFIX: &str = ".llmc";

/// An I/O error shown as `No such file or directory` rather than with the
/// `(os error 2)` tail that std appends.
#[derive(Debug)]
pub struct IoMsg(pub io::Error);

impl fmt::Display for IoMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&strip_os_error(&self.0.to_string()))
    }
}

/// Remove every ` (os error N)` from a message.
pub fn strip_os_error(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(" (os error ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " (os error ".len()..];
        match tail.find(')') {
            Some(j) if tail[..j].bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                rest = &tail[j + 1..];
            }
            _ => {
                out.push_str(" (os error ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

impl std::error::Error for IoMsg {}

/// Attach a name to an I/O error: `NAME: No such file or directory`.
pub fn io_err(name: impl fmt::Display, e: io::Error) -> anyhow::Error {
    anyhow!(IoMsg(e)).context(name.to_string())
}

/// An input: standard input or a named file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(p: &Path) -> Source {
        if p.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(p.to_path_buf())
        }
    }

    /// Name for messages.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// Check that the input can be read (exists, not a directory, a regular
    /// file unless `force`) and return its metadata (through symbolic
    /// links); cheap, so it runs before the model is loaded.
    pub fn check(&self, force: bool) -> Result<Option<fs::Metadata>> {
        match self {
            Source::Stdin => Ok(None),
            Source::File(p) => {
                let m = fs::metadata(p).map_err(|e| io_err(p.display(), e))?;
                if m.is_dir() {
                    return Err(anyhow!("is a directory -- ignored").context(self.name()));
                }
                if !m.is_file() && !force {
                    return Err(anyhow!(
                        "is not a regular file ({}) -- ignored (use -f to read it)",
                        kind_name(&m)
                    )
                    .context(self.name()));
                }
                Ok(Some(m))
            }
        }
    }

    /// The input as a reader (a FIFO's open waits for a writer: a signal
    /// meanwhile ends the process).
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Source::Stdin => Ok(Box::new(Guarded(io::stdin()))),
            Source::File(p) => {
                let f = {
                    let _b = Blocking::enter();
                    signal::check()?;
                    File::open(p).map_err(|e| io_err(p.display(), e))?
                };
                Ok(Box::new(Guarded(f)))
            }
        }
    }

    /// All of the input (`llmc score` and `bench` need it whole).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open()?
            .read_to_end(&mut buf)
            .map_err(|e| io_err(self.name(), e))?;
        Ok(buf)
    }

    /// Whether the input is named by a symbolic link.
    pub fn is_symlink(&self) -> bool {
        match self {
            Source::Stdin => false,
            Source::File(p) => fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()),
        }
    }

    /// After a successful operation with `--rm`: remove the input if it is
    /// a regular file (not a symbolic link, a device, a FIFO); otherwise
    /// say why it stays.
    pub fn remove(&self) -> Result<Option<String>> {
        let Source::File(p) = self else {
            return Ok(None);
        };
        let m = fs::symlink_metadata(p).map_err(|e| io_err(p.display(), e))?;
        if m.file_type().is_symlink() {
            return Ok(Some(format!(
                "{}: is a symbolic link; not removed",
                self.name()
            )));
        }
        if !m.is_file() {
            return Ok(Some(format!(
                "{}: is not a regular file ({}); not removed",
                self.name(),
                kind_name(&m)
            )));
        }
        fs::remove_file(p).map_err(|e| io_err(p.display(), e).context("cannot remove source"))?;
        Ok(None)
    }
}

/// What kind of file `m` describes, for messages.
pub fn kind_name(m: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if m.is_dir() {
        "a directory"
    } else if m.file_type().is_symlink() {
        "a symbolic link"
    } else if m.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// A reader or writer whose calls are marked [`Blocking`] (a signal during
/// one ends the process) and fail once a signal has arrived.
pub struct Guarded<T>(pub T);

impl<T: Read> Read for Guarded<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _b = Blocking::enter();
        signal::check().map_err(io::Error::other)?;
        self.0.read(buf)
    }
}

/// Where an operation's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    File(PathBuf),
    /// `-t`: decompress to nowhere.
    Null,
}

impl Dest {
    pub fn name(&self) -> String {
        match self {
            Dest::Stdout => "stdout".into(),
            Dest::File(p) => p.display().to_string(),
            Dest::Null => "(null)".into(),
        }
    }
}

/// Output name for compressing `input`: `input.llmc`.
pub fn compressed_name(input: &Path) -> Result<PathBuf> {
    if input
        .as_os_str()
        .as_encoded_bytes()
        .ends_with(SUFFIX.as_bytes())
    {
        return Err(anyhow!("already has {SUFFIX} suffix -- ignored"));
    }
    let mut s = input.as_os_str().to_owned();
    s.push(SUFFIX);
    Ok(PathBuf::from(s))
}

/// Output name for decompressing `input`: strip `.llmc`.
pub fn decompressed_name(input: &Path) -> Result<PathBuf> {
    let suffix = SUFFIX.as_bytes();
    let ok = input.file_name().is_some_and(|n| {
        let n = n.as_encoded_bytes();
        n.len() > suffix.len() && n.ends_with(suffix)
    });
    if !ok {
        return Err(anyhow!(
            "unknown suffix ({SUFFIX} expected) -- ignored (name the output with -o NAME, or write to standard output with -c)"
        ));
    }
    // Cut on the encoded bytes (at an ASCII boundary) so non-UTF-8 names survive.
    let bytes = input.as_os_str().as_encoded_bytes();
    Ok(PathBuf::from(os_from_bytes(
        &bytes[..bytes.len() - suffix.len()],
    )))
}

#[cfg(unix)]
fn os_from_bytes(b: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).to_owned()
}

#[cfg(not(unix))]
fn os_from_bytes(b: &[u8]) -> std::ffi::OsString {
    std::ffi::OsString::from(String::from_utf8_lossy(b).into_owned())
}

/// Refuse to start when the destination file exists and -f was not given
/// (checked before any work; the final rename checks again, race-free).
pub fn check_dest(dest: &Dest, src: &Source, force: bool) -> Result<()> {
    let Dest::File(p) = dest else { return Ok(()) };
    match fs::symlink_metadata(p) {
        Ok(m) => {
            if let Source::File(s) = src {
                if same_file(s, p) {
                    return Err(anyhow!("input and output are the same file").context(dest.name()));
                }
            }
            if m.is_dir() {
                return Err(anyhow!("is a directory; not overwritten").context(dest.name()));
            }
            if !force {
                return Err(
                    anyhow!("already exists; not overwritten (use -f to overwrite)")
                        .context(dest.name()),
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dest.name(), e)),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Where a job writes: a temporary file renamed into place at the end, an
/// existing device or FIFO written in place (`-f`), standard output, or
/// nothing (`-t`).
pub enum Output {
    Temp(OutFile),
    InPlace(File),
    Stdout(io::Stdout),
    Null,
}

impl Output {
    /// Opens the output for `dest` (after [`check_dest`]).
    pub fn open(dest: &Dest) -> Result<Output> {
        match dest {
            Dest::Stdout => Ok(Output::Stdout(io::stdout())),
            Dest::Null => Ok(Output::Null),
            Dest::File(p) => match fs::metadata(p) {
                // An existing device or FIFO (check_dest allowed it: -f) is
                // written into, not replaced by a regular file.
                Ok(m) if !m.is_file() && !m.is_dir() => {
                    let _b = Blocking::enter();
                    signal::check()?;
                    let f = fs::OpenOptions::new()
                        .write(true)
                        .open(p)
                        .map_err(|e| io_err(p.display(), e))?;
                    Ok(Output::InPlace(f))
                }
                _ => Ok(Output::Temp(OutFile::create(p)?)),
            },
        }
    }

    /// The writer, through a [`Sink`] that counts, watches for signals and
    /// remembers its own failure.
    pub fn sink(&mut self) -> Sink<'_> {
        let inner: Box<dyn Write + Send + '_> = match self {
            Output::Temp(f) => Box::new(&mut f.tmp),
            Output::InPlace(f) => Box::new(BufWriter::with_capacity(1 << 16, f)),
            Output::Stdout(s) => Box::new(BufWriter::with_capacity(1 << 16, s)),
            Output::Null => Box::new(io::sink()),
        };
        Sink {
            inner,
            count: 0,
            failed: None,
        }
    }

    /// Finish: rename a temporary file into place (synced first when the
    /// source is to be removed), or flush.
    pub fn commit(
        self,
        dest: &Dest,
        src_meta: Option<&fs::Metadata>,
        force: bool,
        sync: bool,
    ) -> Result<()> {
        match self {
            Output::Temp(f) => f.commit(src_meta, force, sync),
            Output::InPlace(mut f) => {
                f.flush().map_err(|e| io_err(dest.name(), e))?;
                Ok(())
            }
            Output::Stdout(s) => s.lock().flush().map_err(|e| io_err(dest.name(), e)),
            Output::Null => Ok(()),
        }
    }
}

/// A file being written: a temporary file next to its destination, named
/// `DEST.llmc-partial-PID-XXXXXX` so that a user recognises one left by a
/// killed run; the next run for the same destination removes those whose
/// process is gone.
pub struct OutFile {
    tmp: BufWriter<NamedTempFile>,
    dest: PathBuf,
    _registered: Registered,
}

/// Keeps the temporary file's path known to the signal handler while it exists.
struct Registered;

impl Drop for Registered {
    fn drop(&mut self) {
        signal::register_temp(None);
    }
}

/// What a temporary file for `dest` is named before its process id.
fn partial_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}.llmc-partial-")
}

/// Removes `DIR/NAME.llmc-partial-PID-*` files of processes that no longer
/// exist (left by a run that was killed with SIGKILL or lost power).
fn remove_stale_partials(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if regular && pid != std::process::id() && !process_exists(pid) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether a process `pid` exists (Linux: /proc; elsewhere assume it does,
/// so nothing is removed).
fn process_exists(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl OutFile {
    pub fn create(dest: &Path) -> Result<OutFile> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = partial_prefix(dest);
        remove_stale_partials(&dir, &prefix);
        let mut b = tempfile::Builder::new();
        let full_prefix = format!("{prefix}{}-", std::process::id());
        b.prefix(&full_prefix).rand_bytes(6);
        #[cfg(unix)]
        {
            // Like any new file: 0666 less the umask (tempfile's default is 0600).
            use std::os::unix::fs::PermissionsExt;
            b.permissions(fs::Permissions::from_mode(0o666));
        }
        let tmp = b.tempfile_in(&dir).map_err(|e| {
            // tempfile appends `at path "..."` naming the random file; show the OS's reason only.
            let full = IoMsg(e).to_string();
            let msg = match full.find(" at path ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            anyhow!(msg).context(format!(
                "{}: cannot create a temporary file in {}",
                dest.display(),
                dir.display()
            ))
        })?;
        signal::register_temp(Some(tmp.path().to_path_buf()));
        Ok(OutFile {
            tmp: BufWriter::with_capacity(1 << 16, tmp),
            dest: dest.to_path_buf(),
            _registered: Registered,
        })
    }

    /// Flush, give the file the source's permissions and modification time,
    /// sync it to disk if `sync`, and rename it to its destination (then
    /// sync the directory too if `sync`).
    fn commit(self, src_meta: Option<&fs::Metadata>, force: bool, sync: bool) -> Result<()> {
        let OutFile {
            tmp,
            dest,
            _registered,
        } = self;
        let name = dest.display().to_string();
        let tmp = tmp
            .into_inner()
            .map_err(|e| io_err(&name, e.into_error()))?;
        if let Some(m) = src_meta {
            // Best effort, like zstd: a failure here does not fail the operation.
            let _ = tmp.as_file().set_permissions(m.permissions());
            if let Ok(t) = m.modified() {
                let _ = tmp.as_file().set_modified(t);
            }
        }
        if sync {
            tmp.as_file().sync_all().map_err(|e| io_err(&name, e))?;
        }
        let r = if force {
            tmp.persist(&dest).map(|_| ())
        } else {
            tmp.persist_noclobber(&dest).map(|_| ())
        };
        drop(_registered);
        match r {
            Ok(()) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(
                    anyhow!("already exists; not overwritten (use -f to overwrite)").context(name),
                )
            }
            Err(e) => return Err(io_err(name, e.error)),
        }
        if sync {
            let dir = match dest.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(dir.display(), e))?;
        }
        Ok(())
    }
}

/// The output writer of a job: counts bytes, is [`Guarded`], and keeps
/// the first error of the output itself, so that a full disk is reported
/// against the output's name rather than the input's.
pub struct Sink<'a> {
    inner: Box<dyn Write + Send + 'a>,
    pub count: u64,
    pub failed: Option<io::Error>,
}

impl Sink<'_> {
    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let (Err(e), None) = (&r, &self.failed) {
            self.failed = Some(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                // tempfile appends `at path "..."` (the temporary name):
                // the message names the output instead.
                None => {
                    let msg = e.to_string();
                    let msg = msg.split(" at path ").next().unwrap_or_default();
                    io::Error::new(e.kind(), msg.to_string())
                }
            });
        }
        r
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _b = Blocking::enter();
        signal::check().map_err(io::Error::other)?;
        let r = self.inner.write(buf);
        let n = self.note(r)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        let _b = Blocking::enter();
        let r = self.inner.flush();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            compressed_name(Path::new("a/b.txt")).unwrap(),
            PathBuf::from("a/b.txt.llmc")
        );
        assert!(compressed_name(Path::new("b.llmc")).is_err());
        assert_eq!(
            decompressed_name(Path::new("a/b.txt.llmc")).unwrap(),
            PathBuf::from("a/b.txt")
        );
        assert!(decompressed_name(Path::new("b.txt")).is_err());
        assert!(decompressed_name(Path::new(".llmc")).is_err());
        assert!(decompressed_name(Path::new("dir/.llmc")).is_err());
    }

    #[test]
    fn strips_os_error() {
        assert_eq!(
            strip_os_error("x: No such file (os error 2): y (os error 13)"),
            "x: No such file: y"
        );
        assert_eq!(strip_os_error("a (os error zz)"), "a (os error zz)");
    }

    #[test]
    fn io_message_drops_os_error_tail() {
        let e = io::Error::from_raw_os_error(2);
        let s = IoMsg(e).to_string();
        assert!(!s.contains("os error"), "{s}");
        assert!(!s.is_empty());
    }
}
