//! SIGINT, SIGTERM and SIGHUP: stop cleanly, promptly, with the shell's
//! status for the signal (128 + its number: 130, 143, 129).
//!
//! A thread waits for the signals (signal-hook). The first one raises a
//! flag; the codec's progress callback and every read and write of the
//! command line see it and unwind, so the temporary output is removed by
//! its `Drop`. The work is not always at such a point: a read from a FIFO
//! that nobody writes, or a write to a stalled pipe, blocks in the kernel
//! and is restarted after the signal. So while a thread waits on input or
//! output ([`Blocking`]), a signal ends the process at once; otherwise it
//! does after [`GRACE`] (one forward pass takes well under that) or at a
//! second signal. Ending at once removes the registered temporary file
//! first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long the work may take to unwind after a signal.
pub const GRACE: Duration = Duration::from_millis(1500);

/// The first signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Threads now blocked in a read or write that may never return.
static BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// The temporary output file being written, if any.
static CURRENT_TEMP: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The operation was stopped by a signal.
#[derive(Debug, Clone, Copy)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Install the handler thread (once, at start-up). Failure to install only
/// loses the clean-up: the default action still stops the process.
pub fn install() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let first = SIGNAL
                .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if !first || BLOCKED.load(Ordering::SeqCst) > 0 {
                end_now();
            }
            std::thread::spawn(|| {
                std::thread::sleep(GRACE);
                end_now();
            });
        }
    });
}

/// Remove the temporary file and exit with the signal's status.
fn end_now() -> ! {
    if let Ok(guard) = CURRENT_TEMP.try_lock() {
        if let Some(path) = guard.as_ref() {
            let _ = std::fs::remove_file(path);
        }
    }
    eprintln!("\nllmc: interrupted");
    std::process::exit(exit_status());
}

/// The exit status after an interruption: 128 + the signal's number (130
/// when none is recorded).
pub fn exit_status() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 128 + SIGINT,
        s => 128 + s,
    }
}

/// Err once a signal has arrived.
pub fn check() -> Result<(), Interrupted> {
    if SIGNAL.load(Ordering::SeqCst) != 0 {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Remember (or forget, with `None`) the temporary file to remove when the
/// process ends at once.
pub fn register_temp(path: Option<PathBuf>) {
    if let Ok(mut guard) = CURRENT_TEMP.lock() {
        *guard = path;
    }
}

/// Marks the current thread as waiting on input or output for as long as
/// it lives: a signal meanwhile ends the process at once.
pub struct Blocking(());

impl Blocking {
    pub fn enter() -> Blocking {
        BLOCKED.fetch_add(1, Ordering::SeqCst);
        Blocking(())
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        BLOCKED.fetch_sub(1, Ordering::SeqCst);
    }
}
