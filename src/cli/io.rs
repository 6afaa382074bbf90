//! Where bytes come from and go to: standard streams, or files written through
//! a temporary file in the destination directory that is renamed into place
//! only on success (so an error or Ctrl-C never leaves a partial file and never
//! overwrites anything without -f).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use tempfile::NamedTempFile;

use super::progress;

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

    /// Check that the input can be read (exists, not a directory) and return
    /// its metadata; cheap, so it runs before the model is loaded.
    pub fn check(&self) -> Result<Option<fs::Metadata>> {
        match self {
            Source::Stdin => Ok(None),
            Source::File(p) => {
                let m = fs::metadata(p).map_err(|e| io_err(p.display(), e))?;
                if m.is_dir() {
                    return Err(anyhow!("is a directory -- ignored").context(self.name()));
                }
                Ok(Some(m))
            }
        }
    }

    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        match self {
            Source::Stdin => io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(|e| io_err("stdin", e))?,
            Source::File(p) => File::open(p)
                .and_then(|mut f| f.read_to_end(&mut buf))
                .map_err(|e| io_err(p.display(), e))?,
        };
        Ok(buf)
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
        return Err(anyhow!("unknown suffix ({SUFFIX} expected) -- ignored"));
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

/// A file being written: a temporary file next to its destination.
pub struct OutFile {
    tmp: BufWriter<NamedTempFile>,
    dest: PathBuf,
    _registered: Registered,
}

/// Keeps the temporary file's path known to the Ctrl-C handler while it exists.
struct Registered;

impl Drop for Registered {
    fn drop(&mut self) {
        progress::register_temp(None);
    }
}

impl OutFile {
    pub fn create(dest: &Path) -> Result<OutFile> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut b = tempfile::Builder::new();
        b.prefix(".llmc-").suffix(".tmp");
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
        progress::register_temp(Some(tmp.path().to_path_buf()));
        Ok(OutFile {
            tmp: BufWriter::with_capacity(1 << 16, tmp),
            dest: dest.to_path_buf(),
            _registered: Registered,
        })
    }

    pub fn writer(&mut self) -> &mut (dyn Write + Send) {
        &mut self.tmp
    }

    /// Flush, give the file the source's permissions and modification time,
    /// and rename it to its destination.
    pub fn commit(self, src_meta: Option<&fs::Metadata>, force: bool) -> Result<()> {
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
        let r = if force {
            tmp.persist(&dest).map(|_| ())
        } else {
            tmp.persist_noclobber(&dest).map(|_| ())
        };
        drop(_registered);
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                Err(anyhow!("already exists; not overwritten (use -f to overwrite)").context(name))
            }
            Err(e) => Err(io_err(name, e.error)),
        }
    }
}

/// Counts bytes passing through a writer, and fails writes after Ctrl-C (a
/// backstop: the codec's progress callback already stops it after the next
/// forward pass).
pub struct Counting<'a> {
    pub inner: &'a mut (dyn Write + Send),
    pub count: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        progress::check_interrupt().map_err(io::Error::other)?;
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
