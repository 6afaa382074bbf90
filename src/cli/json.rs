//! Machine-readable results: `--json` (one JSON array, printed at the end)
//! and `--jsonl` (one object per line, printed as each file is done) for
//! `-l`, `llmc score` and `llmc bench`. The fields are documented in the
//! README ("Output for programs").

use std::io::Write;

use serde_json::{json, Value};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of the per-file objects, after the last file.
    Document,
    /// One object per line, flushed as soon as it is known.
    Lines,
}

/// The objects of one command's run.
pub struct Report {
    format: Format,
    items: Vec<Value>,
}

impl Report {
    pub fn new(format: Format) -> Report {
        Report {
            format,
            items: Vec::new(),
        }
    }

    /// Adds one file's object (printed at once with `--jsonl`).
    pub fn push(&mut self, v: Value) {
        match self.format {
            Format::Lines => {
                let mut out = std::io::stdout().lock();
                // A closed stdout is noticed by the caller's next write.
                let _ = writeln!(out, "{v}");
                let _ = out.flush();
            }
            Format::Document => self.items.push(v),
        }
    }

    /// An input that failed: `{"file": NAME, "error": MESSAGE}` (the message
    /// also goes to stderr, as without JSON).
    pub fn error(&mut self, file: &str, message: &str) {
        self.push(json!({ "file": file, "error": message }));
    }

    /// Prints the array (`--json`).
    pub fn finish(self) {
        if self.format == Format::Document {
            let text = serde_json::to_string_pretty(&Value::Array(self.items))
                .unwrap_or_else(|_| "[]".into());
            println!("{text}");
        }
    }
}

/// `a / b`, or null when `b` is 0.
pub fn ratio(a: f64, b: u64) -> Value {
    if b == 0 {
        Value::Null
    } else {
        json!(a / b as f64)
    }
}
