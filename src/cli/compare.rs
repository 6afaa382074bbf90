//! `llmc score --model A --model B FILE...`: every file scored with each
//! model, side by side (one model loaded at a time), as people rank models
//! by how well they compress held-out text.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::engine::{self, CodecOptions};
use super::io::Source;
use super::json::{self, Report};
use super::ops::{is_interrupt, render, Ctx};
use super::progress::Bar;
use super::signal;
use super::table::Table;

/// One model's score of one file.
#[derive(Debug, Clone, Copy)]
struct Cell {
    bits: f64,
}

/// Scores `files` with each of `models` and prints a table with a
/// bits/byte column per model (and a total row), or a JSON object per
/// (file, model) with the fields of `llmc score --json`. Exit status 1 if
/// any file or model failed.
pub fn score_models(
    ctx: &mut Ctx,
    models: &[PathBuf],
    files: &[PathBuf],
    codec: CodecOptions,
) -> i32 {
    let (level, custom) = match codec.compress_options() {
        Ok(o) => (
            codec.level.unwrap_or(llmc::codec::DEFAULT_LEVEL),
            o.level == 0,
        ),
        Err(e) => {
            ctx.error(&e);
            return 1;
        }
    };
    let mut report = ctx.json.map(Report::new);
    let mut status = 0;
    let mut sizes: Vec<Option<u64>> = vec![None; files.len()];
    // cells[m][f]
    let mut cells: Vec<Vec<Option<Cell>>> = Vec::with_capacity(models.len());
    let mut labels = Vec::with_capacity(models.len());
    for m in models {
        let lazy = ctx.engine.with_model(m.clone());
        let saved = std::mem::replace(&mut ctx.engine, lazy);
        let mut row = vec![None; files.len()];
        let mut label = m.display().to_string();
        for (f, p) in files.iter().enumerate() {
            let src = Source::from_arg(p);
            let r = score_one(ctx, &src, &codec);
            match r {
                Ok((bytes, s, model, fingerprint)) => {
                    label = model.clone();
                    sizes[f] = Some(bytes);
                    row[f] = Some(Cell { bits: s.bits });
                    if let Some(rep) = report.as_mut() {
                        rep.push(json!({
                            "file": src.name(),
                            "bytes": bytes,
                            "tokens": s.tokens,
                            "bits": s.bits,
                            "bits_per_token": json::ratio(s.bits, s.tokens),
                            "bits_per_byte": json::ratio(s.bits, bytes),
                            "ideal_size": (s.bits / 8.0).ceil() as u64,
                            "model": model,
                            "fingerprint": fingerprint,
                            "level": level,
                            "custom": custom,
                        }));
                    }
                }
                Err(e) if is_interrupt(&e) => {
                    ctx.error(&e);
                    return signal::exit_status();
                }
                Err(e) => {
                    let e = e.context(format!("model {}", m.display()));
                    ctx.error(&e);
                    if let Some(rep) = report.as_mut() {
                        rep.error(&src.name(), &render(&e));
                    }
                    status = 1;
                    if ctx.engine.failed {
                        break;
                    }
                }
            }
        }
        // Free this model before loading the next.
        ctx.engine = saved;
        cells.push(row);
        labels.push(label);
    }
    if let Some(r) = report {
        r.finish();
        return status;
    }
    print_table(files, &sizes, &labels, &cells);
    status
}

/// The score of one file with the context's engine: bytes, score, the
/// model's name (a known model's, else the file's) and fingerprint (hex).
fn score_one(
    ctx: &mut Ctx,
    src: &Source,
    codec: &CodecOptions,
) -> Result<(u64, llmc::codec::Score, String, String)> {
    src.check(true)?;
    let input = src.read_all()?;
    let (level, show) = (ctx.level, ctx.progress);
    let e = ctx.engine.get(level)?;
    let bar = Bar::new(show, &src.name(), Some(input.len() as u64));
    let s =
        engine::score(e, &input, codec, &mut |p| bar.tick(p)).map_err(|e| e.context(src.name()))?;
    let id = e.identity();
    let fingerprint = id.fingerprint.iter().map(|b| format!("{b:02x}")).collect();
    let prefix: [u8; 8] = id.fingerprint[..8].try_into().expect("8 bytes");
    let model = match llmc::registry::known_by_fingerprint(&prefix) {
        Some(m) => m.id.to_string(),
        None => id.name.clone(),
    };
    Ok((input.len() as u64, s, model, fingerprint))
}

/// `Bytes | <model> bits/byte ... | File`, then the totals over the files
/// every model scored.
fn print_table(
    files: &[PathBuf],
    sizes: &[Option<u64>],
    labels: &[String],
    cells: &[Vec<Option<Cell>>],
) {
    let mut head = vec!["Bytes".to_string()];
    head.extend(labels.iter().map(|l| format!("{l} bits/byte")));
    head.push("File".into());
    let head_refs: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(&head_refs);
    let per = |c: Option<Cell>, bytes: u64| match c {
        Some(c) if bytes > 0 => format!("{:.4}", c.bits / bytes as f64),
        Some(_) => "-".into(),
        None => "failed".into(),
    };
    let (mut total_bytes, mut total_bits, mut n) = (0u64, vec![0f64; labels.len()], 0usize);
    for (f, p) in files.iter().enumerate() {
        let Some(bytes) = sizes[f] else { continue };
        let mut row = vec![bytes.to_string()];
        row.extend(cells.iter().map(|m| per(m[f], bytes)));
        row.push(Source::from_arg(p).name());
        t.row(row);
        if cells.iter().all(|m| m[f].is_some()) {
            total_bytes += bytes;
            n += 1;
            for (tb, m) in total_bits.iter_mut().zip(cells) {
                *tb += m[f].map_or(0.0, |c| c.bits);
            }
        }
    }
    if n > 1 {
        t.rule();
        let mut row = vec![total_bytes.to_string()];
        row.extend(
            total_bits
                .iter()
                .map(|&b| per(Some(Cell { bits: b }), total_bytes)),
        );
        row.push(format!("{n} files"));
        t.row(row);
    }
    if sizes.iter().any(|s| s.is_some()) {
        let mut left = vec![false; labels.len() + 1];
        left.push(true);
        print!("{}", t.render(&left));
    }
}
