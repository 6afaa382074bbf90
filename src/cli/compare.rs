//! `llmc score --model A --model B FILE...`: every file scored with each
//! model, side by side (one model loaded at a time), as people rank models
//! by how well they compress held-out text.

use std::path::PathBuf;

use super::engine::CodecOptions;
use super::io::Source;
use super::json::Report;
use super::ops::{is_interrupt, render, Ctx};
use super::signal;
use super::table::Table;
use super::tools::{score_file, score_settings};

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
    let Some(settings) = score_settings(ctx, &codec) else {
        return 1;
    };
    let mut report = ctx.json.map(Report::new);
    let mut status = 0;
    let mut sizes: Vec<Option<u64>> = vec![None; files.len()];
    // cells[m][f]: model m's bits for file f.
    let mut cells: Vec<Vec<Option<f64>>> = Vec::with_capacity(models.len());
    let mut labels = Vec::with_capacity(models.len());
    for m in models {
        let lazy = ctx.engine.with_model(m.clone());
        let saved = std::mem::replace(&mut ctx.engine, lazy);
        let mut row = vec![None; files.len()];
        let mut label = m.display().to_string();
        for (f, p) in files.iter().enumerate() {
            let src = Source::from_arg(p);
            match score_file(ctx, &src, &codec, false) {
                Ok(scored) => {
                    let s = scored.scores[0];
                    label = scored
                        .known_id
                        .map_or_else(|| scored.model.clone(), String::from);
                    sizes[f] = Some(scored.bytes);
                    row[f] = Some(s.bits);
                    if let Some(rep) = report.as_mut() {
                        rep.push(scored.json(&src, &s, settings));
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

/// `Bytes | <model> bits/byte ... | File`, then the totals over the files
/// every model scored.
fn print_table(
    files: &[PathBuf],
    sizes: &[Option<u64>],
    labels: &[String],
    cells: &[Vec<Option<f64>>],
) {
    let mut head = vec!["Bytes".to_string()];
    head.extend(labels.iter().map(|l| format!("{l} bits/byte")));
    head.push("File".into());
    let head_refs: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut t = Table::new(&head_refs);
    let per = |bits: Option<f64>, bytes: u64| match bits {
        Some(b) if bytes > 0 => format!("{:.4}", b / bytes as f64),
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
                *tb += m[f].unwrap_or(0.0);
            }
        }
    }
    if n > 1 {
        t.rule();
        let mut row = vec![total_bytes.to_string()];
        row.extend(total_bits.iter().map(|&b| per(Some(b), total_bytes)));
        row.push(format!("{n} files"));
        t.row(row);
    }
    if sizes.iter().any(|s| s.is_some()) {
        let mut left = vec![false; labels.len() + 1];
        left.push(true);
        print!("{}", t.render(&left));
    }
}
