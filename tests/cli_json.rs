//! `--json` and `--jsonl`: the machine-readable results of `-l`, `llmc score`
//! and `llmc bench` agree with the tables and with the files written.

mod common;

use serde_json::Value;

use common::cli::*;

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn lines_of(o: &std::process::Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn score_json_and_jsonl_agree_with_the_table() {
    let d = tempdir();
    let text = TEXT.repeat(2);
    write(d.path(), "a.txt", text.as_bytes());
    write(d.path(), "b.txt", OTHER.as_bytes());
    let doc = run(d.path(), &["score", "--json", "a.txt", "missing", "b.txt"]);
    fails(&doc);
    let doc = json_of(&doc);
    let items = doc.as_array().expect("an array");
    assert_eq!(items.len(), 3, "{doc}");
    let a = &items[0];
    assert_eq!(a["file"], "a.txt");
    assert_eq!(a["bytes"], text.len() as u64);
    assert_eq!(a["level"], 5);
    assert_eq!(a["custom"], false);
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 64);
    let bits = a["bits"].as_f64().unwrap();
    let tokens = a["tokens"].as_u64().unwrap();
    assert_eq!(
        a["bits_per_byte"].as_f64().unwrap().to_bits(),
        (bits / text.len() as f64).to_bits()
    );
    assert_eq!(a["ideal_size"], (bits / 8.0).ceil() as u64);
    assert!(items[1]["error"].as_str().unwrap().contains("missing"));
    assert_eq!(items[2]["file"], "b.txt");

    // The table's row for the same file shows the same figures.
    let t = run(d.path(), &["score", "a.txt"]);
    ok(&t);
    let out = String::from_utf8(t.stdout).unwrap();
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], tokens.to_string());
    assert_eq!(row[3], format!("{:.4}", bits / text.len() as f64));

    // --jsonl: the same objects, one per line; custom settings are marked.
    let l = run(d.path(), &["score", "--jsonl", "a.txt", "b.txt"]);
    ok(&l);
    let lines = lines_of(&l);
    assert_eq!(lines, [items[0].clone(), items[2].clone()]);
    let c = run(
        d.path(),
        &["score", "--jsonl", "--level=1", "--coder=rank", "a.txt"],
    );
    ok(&c);
    let c = &lines_of(&c)[0];
    assert_eq!(
        (c["level"].clone(), c["custom"].clone()),
        (1.into(), true.into())
    );
}

#[test]
fn list_json_describes_the_file() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    ok(&run(d.path(), &["--fast", "a.txt"]));
    let packed = read(d.path(), "a.txt.llmc").len() as u64;
    let o = run(d.path(), &["-l", "--jsonl", "a.txt.llmc"]);
    ok(&o);
    let v = &lines_of(&o)[0];
    assert_eq!(v["file"], "a.txt.llmc");
    assert_eq!(v["compressed"], packed);
    assert_eq!(v["uncompressed"], TEXT.len() as u64);
    assert_eq!(v["frames"], 1);
    assert_eq!(v["level"], "1");
    assert_eq!(v["coder"], "arith");
    assert_eq!(v["model"], "SmolLM2-135M-Instruct Q4_1");
    let bpb = v["bits_per_byte"].as_f64().unwrap();
    assert_eq!(
        bpb.to_bits(),
        (8.0 * packed as f64 / TEXT.len() as f64).to_bits()
    );
}

#[test]
fn bench_json_lists_every_method() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    let o = run(d.path(), &["bench", "--json", "a.txt"]);
    ok(&o);
    let v = json_of(&o);
    let f = &v[0];
    assert_eq!(f["file"], "a.txt");
    assert_eq!(f["bytes"], TEXT.len() as u64);
    assert!(f["threads"].as_u64().unwrap() >= 1);
    assert!(!f["cpu"].as_str().unwrap().is_empty());
    let methods: Vec<&str> = f["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["llmc arith", "llmc rank", "zstd -19", "xz -9", "gzip -9"]
    );
    let c = run(d.path(), &["-c", "a.txt"]);
    ok(&c);
    assert_eq!(f["methods"][0]["size"], c.stdout.len() as u64);
    assert!(f["methods"][0]["compress_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn json_goes_with_reports_only() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    for args in [&["--json", "a.txt"][..], &["-d", "--jsonl", "a.txt.llmc"]] {
        let o = run(d.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&o).contains("--json and --jsonl go with"),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(listing(d.path()), ["a.txt"]);
    let o = run(d.path(), &["score", "--json", "--jsonl", "a.txt"]);
    assert_eq!(o.status.code(), Some(1));
}

/// `score --model A --model B`: one JSON object per (file, model), each
/// the object `score --json --model X` gives for that file alone; the table
/// has a bits/byte column per model (the figures of those objects) and a
/// total row. Gemma is named, so the binary fetches it as users do.
#[test]
fn score_compares_models() {
    let d = tempdir();
    write(d.path(), "a.txt", TEXT.as_bytes());
    write(d.path(), "b.txt", OTHER.as_bytes());
    let smol = model().to_str().unwrap();
    let models = ["--model", smol, "--model", "gemma3-270m"];
    let both = run(
        d.path(),
        &[&models[..], &["score", "--json", "a.txt", "b.txt"]].concat(),
    );
    ok(&both);
    let both = json_of(&both);
    let items = both.as_array().expect("an array");
    assert_eq!(items.len(), 4, "{both}");
    for (i, m) in [smol, "gemma3-270m"].iter().enumerate() {
        let alone = run(
            d.path(),
            &["--model", m, "score", "--json", "a.txt", "b.txt"],
        );
        ok(&alone);
        let alone = json_of(&alone);
        assert_eq!(
            items[2 * i..2 * i + 2],
            alone.as_array().unwrap()[..],
            "{m}"
        );
    }
    assert_ne!(items[0]["fingerprint"], items[2]["fingerprint"]);

    let t = run(
        d.path(),
        &[&models[..], &["score", "a.txt", "b.txt"]].concat(),
    );
    ok(&t);
    let out = String::from_utf8(t.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("gemma3-270m bits/byte"), "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    let bpb = |v: &Value| format!("{:.4}", v["bits_per_byte"].as_f64().unwrap());
    assert_eq!(row[1], bpb(&items[0]));
    assert_eq!(row[2], bpb(&items[2]));
    assert!(lines.last().unwrap().contains("2 files"), "{out}");

    // Only score compares models.
    fails(&run(d.path(), &[&models[..], &["-c", "a.txt"]].concat()));
}
