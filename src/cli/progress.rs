//! Progress bar on stderr and Ctrl-C handling.
//!
//! SIGTERM and SIGHUP are handled like Ctrl-C (ctrlc's `termination`
//! feature). The first Ctrl-C only raises a flag; the codec's progress callback sees it
//! and returns an error, so the operation unwinds normally and the temporary
//! output file is removed by its `Drop`. A second Ctrl-C removes the current
//! temporary file itself and exits at once (exit status 130, as a shell
//! reports a SIGINT death).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Exit status after an interruption (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The temporary output file being written, if any, so that a second Ctrl-C
/// (which does not unwind) can still remove it.
static CURRENT_TEMP: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The operation was stopped by Ctrl-C.
#[derive(Debug, Clone, Copy)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Install the Ctrl-C handler (once, at start-up).
pub fn install_interrupt_handler() {
    // Failure to install (e.g. a handler already present) only loses the
    // clean-up on Ctrl-C; the default action still stops the process.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            if let Ok(guard) = CURRENT_TEMP.try_lock() {
                if let Some(path) = guard.as_ref() {
                    let _ = std::fs::remove_file(path);
                }
            }
            eprintln!();
            std::process::exit(EXIT_INTERRUPTED);
        }
    });
}

/// Err once Ctrl-C has been pressed.
pub fn check_interrupt() -> Result<(), Interrupted> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Remember (or forget, with `None`) the temporary file a second Ctrl-C must remove.
pub fn register_temp(path: Option<PathBuf>) {
    if let Ok(mut guard) = CURRENT_TEMP.lock() {
        *guard = path;
    }
}

/// How far an operation has come, as the codec reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Original (uncompressed) bytes done.
    pub bytes: u64,
    /// Original bytes in all, when known (the container header gives it when decompressing).
    pub total: Option<u64>,
    /// Tokens done.
    pub tokens: u64,
}

/// A progress bar that draws nothing unless enabled (stderr is a terminal and not -q).
pub struct Bar {
    pb: Option<ProgressBar>,
    tokens: Arc<AtomicU64>,
}

impl Bar {
    pub fn new(enabled: bool, label: &str, total: Option<u64>) -> Bar {
        let tokens = Arc::new(AtomicU64::new(0));
        if !enabled {
            return Bar { pb: None, tokens };
        }
        let rate_tokens = Arc::clone(&tokens);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:25}] {bytes}/{total_bytes} {tok_rate} ETA {eta}",
        )
        .expect("static template is valid")
        .progress_chars("=> ")
        .with_key(
            "tok_rate",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = state.elapsed().as_secs_f64();
                let t = rate_tokens.load(Ordering::Relaxed) as f64;
                let rate = if secs > 0.0 { t / secs } else { 0.0 };
                let _ = write!(w, "{rate:.0} tok/s");
            },
        );
        let pb = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(4));
        pb.set_style(style);
        pb.set_prefix(label.to_string());
        pb.enable_steady_tick(Duration::from_millis(500));
        Bar {
            pb: Some(pb),
            tokens,
        }
    }

    /// Progress callback for the codec: updates the bar, Err on Ctrl-C.
    pub fn tick(&self, p: Progress) -> Result<(), Interrupted> {
        self.tokens.store(p.tokens, Ordering::Relaxed);
        if let Some(pb) = &self.pb {
            if let Some(t) = p.total {
                if pb.length() != Some(t) {
                    pb.set_length(t);
                }
            }
            pb.set_position(p.bytes);
        }
        check_interrupt()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
    }
}
