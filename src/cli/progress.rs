//! The progress bar on stderr: original bytes done (estimated within a
//! block from its tokens), the total when known, tokens per second and the
//! time left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::signal::{self, Interrupted};

/// How far an operation has come, as the codec reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Original (uncompressed) bytes done.
    pub bytes: u64,
    /// Original bytes in all, when known (a file's size when compressing,
    /// the frames' end records when decompressing a file).
    pub total: Option<u64>,
    /// Tokens done.
    pub tokens: u64,
}

/// A progress bar that draws nothing unless enabled (stderr is a terminal,
/// not -q, not --no-progress).
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
        let template = match total {
            Some(_) => "{prefix} [{bar:25}] {bytes}/{total_bytes} {tok_rate} ETA {eta}",
            // Standard input: no total, so no bar and no ETA.
            None => "{prefix} {spinner} {bytes} {tok_rate} {elapsed}",
        };
        let style = ProgressStyle::with_template(template)
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

    /// Progress callback for the codec: updates the bar, Err after a signal.
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
        signal::check()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb {
            pb.finish_and_clear();
        }
    }
}
