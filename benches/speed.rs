//! Speed of the forward pass as compression and decompression use it.
//!
//! ```text
//! cargo bench --bench speed -- [options]
//!   --tokens N         chunk length: first N tokens of the file (default 2048)
//!   --batch B          compression runs the chunk as batches of B tokens (default 256)
//!   --seqs S,S         decompression: S sequences in flight, one token each per step (default 16,64)
//!   --positions P,P    context lengths at which decompression steps are timed (default 0,512,1024,1536,N-8)
//!   --steps K          decompression steps timed per position (default 8)
//!   --decode-full      also decode S sequences from position 0 to N (slow: S*N tokens)
//!   --threads T,T      thread counts (default 1,2)
//!   --variants V,V     kernel variants, or `all` (default: the best one); scalar, avx2, avx512, neon, neon-dot
//!   --file PATH        text (default /work/shared/corpus/alice29.txt, else $LLMC_BENCH_FILE)
//!   --llamacpp         also run bench/llamacpp_speed.py if python's llama_cpp imports
//!   --codec-bytes N    end to end: llmc::codec compress + decompress of the first N bytes
//!                      of the file (default 16384; 0 skips; `all` = the whole file), at
//!                      --level, pieces of --batch, --max-batch streams in flight
//!   --level L          the codec's level (default: the default level)
//!   --max-batch M      streams decoded together by the codec (default: the codec's default)
//!   --codec-compress-only   skip the codec's decompression (e.g. to compare bits/byte
//!                      across levels quickly)
//!   --no-compress / --no-decompress   skip the model-level phases
//! ```
//!
//! Prints tokens/s, bytes/s (bytes of text those tokens decode to), matmul
//! multiply-adds/s as a fraction of the int8 ceiling (measured at the start
//! of each variant and thread count: `Kernels::int8_peak`, the kernels'
//! dot-product instruction on registers alone), and peak memory (VmHWM, reset before each phase via
//! /proc/self/clear_refs; "+" is the growth over the RSS at phase start).
//! The model comes from `LLMC_TEST_MODEL` or the registry.

use llmc::gguf::Gguf;
use llmc::kernels::{Kernels, Variant};
use llmc::model::{KvCache, Model, ModelOptions};
use llmc::tokenizer::ModelTokenizer;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

struct Opts {
    tokens: usize,
    batch: usize,
    seqs: Vec<usize>,
    positions: Option<Vec<usize>>,
    steps: usize,
    decode_full: bool,
    threads: Vec<usize>,
    variants: Option<Vec<Variant>>,
    file: PathBuf,
    llamacpp: bool,
    compress: bool,
    decompress: bool,
    codec_bytes: Option<usize>,
    max_batch: Option<usize>,
    level: u8,
    codec_compress_only: bool,
}

fn list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse().expect("numeric list"))
        .collect()
}

fn parse_args() -> Opts {
    let mut o = Opts {
        tokens: 2048,
        batch: 256,
        seqs: vec![16, 64],
        positions: None,
        steps: 8,
        decode_full: false,
        threads: vec![1, 2],
        variants: None,
        file: std::env::var_os("LLMC_BENCH_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/work/shared/corpus/alice29.txt")),
        llamacpp: false,
        compress: true,
        decompress: true,
        codec_bytes: Some(16384),
        max_batch: None,
        level: llmc::codec::DEFAULT_LEVEL,
        codec_compress_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--tokens" => o.tokens = val().parse().expect("--tokens N"),
            "--batch" => o.batch = val().parse().expect("--batch B"),
            "--seqs" => o.seqs = list(&val()),
            "--positions" => o.positions = Some(list(&val())),
            "--steps" => o.steps = val().parse().expect("--steps K"),
            "--decode-full" => o.decode_full = true,
            "--threads" => o.threads = list(&val()),
            "--variants" => {
                let v = val();
                o.variants = if v == "all" {
                    Some(llmc::kernels::Kernels::available())
                } else {
                    Some(
                        v.split(',')
                            .map(|s| s.parse().expect("variant name"))
                            .collect(),
                    )
                }
            }
            "--file" => o.file = PathBuf::from(val()),
            "--llamacpp" => o.llamacpp = true,
            "--no-compress" => o.compress = false,
            "--no-decompress" => o.decompress = false,
            "--codec-bytes" => {
                let v = val();
                o.codec_bytes = match v.as_str() {
                    "all" => Some(usize::MAX),
                    "0" => None,
                    n => Some(n.parse().expect("--codec-bytes N|all")),
                }
            }
            "--codec-compress-only" => o.codec_compress_only = true,
            "--max-batch" => o.max_batch = Some(val().parse().expect("--max-batch M")),
            "--level" => o.level = val().parse().expect("--level L"),
            // `cargo bench` passes --bench to harness=false targets.
            "--bench" => {}
            other => panic!("unknown option {other} (see the header of benches/speed.rs)"),
        }
    }
    assert!(o.tokens >= 16 && o.batch >= 1 && o.steps >= 1);
    o
}

/// A field of /proc/self/status in kB (0 where /proc is missing).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds used by this process so far (user + system, all threads),
/// from /proc/self/stat (clock ticks of 10 ms); 0 where /proc is missing.
fn cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime, stime are 14, 15.
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// Wall and CPU time of a phase: under load from other processes, a CPU
/// share well below `threads` means the figures are pessimistic.
struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: cpu_secs(),
        }
    }
    fn secs(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }
    fn report(&self) -> String {
        let wall = self.secs();
        format!(
            "cpu {:.2}s ({:.2} cores busy)",
            cpu_secs() - self.cpu,
            (cpu_secs() - self.cpu) / wall
        )
    }
}

/// Peak-memory probe: resets VmHWM to the current RSS (Linux `clear_refs` 5).
struct Peak {
    start_kb: u64,
}

impl Peak {
    fn start() -> Peak {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Peak {
            start_kb: status_kb("VmRSS:"),
        }
    }
    fn report(&self) -> String {
        let hwm = status_kb("VmHWM:");
        format!(
            "peak RSS {:.0} MB (+{:.0} MB)",
            hwm as f64 / 1024.0,
            hwm.saturating_sub(self.start_kb) as f64 / 1024.0
        )
    }
}

struct Text {
    ids: Vec<u32>,
    /// `bytes[i]`: bytes that `ids[..i]` decode to.
    bytes: Vec<usize>,
}

impl Text {
    fn bytes_of(&self, r: std::ops::Range<usize>) -> usize {
        self.bytes[r.end] - self.bytes[r.start]
    }
}

fn load_text(tok: &ModelTokenizer, path: &PathBuf) -> Text {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ids = tok.encode(&data);
    let mut bytes = Vec::with_capacity(ids.len() + 1);
    bytes.push(0);
    let mut total = 0;
    for &id in &ids {
        // Escape pairs count their byte on the second id; close enough here.
        total += tok.decode(&[id]).map_or(1, |b| b.len());
        bytes.push(total);
    }
    Text { ids, bytes }
}

/// The int8 ceiling of `m`'s kernels on its threads, measured once per
/// (variant, threads) in this run ([`Kernels::int8_peak`]).
fn ceiling(m: &Model) -> f64 {
    static SEEN: Mutex<Vec<(Variant, usize, f64)>> = Mutex::new(Vec::new());
    let (v, t) = (m.kernels().variant(), m.threads());
    let mut seen = SEEN.lock().unwrap();
    if let Some(&(_, _, c)) = seen.iter().find(|(sv, st, _)| *sv == v && *st == t) {
        return c;
    }
    let c = m.kernels().int8_peak(t);
    println!(
        "  int8 ceiling measured ({v}, {t} thread(s), dot-product instruction on registers): {:.1} G MAC/s",
        c / 1e9
    );
    seen.push((v, t, c));
    c
}

fn mac_report(tokens: f64, secs: f64, macs_per_token: f64, m: &Model) -> String {
    let rate = tokens * macs_per_token / secs;
    format!(
        "{:.1} G MAC/s = {:.1}% of int8 ceiling",
        rate / 1e9,
        100.0 * rate / ceiling(m)
    )
}

/// Compression-style: the chunk `ids[..n]` as batches of `batch` tokens with
/// logits. Returns the final cache (reused for decompression positions).
fn compress(m: &Model, text: &Text, o: &Opts) -> KvCache {
    let v = m.config().vocab;
    let n = o.tokens.min(text.ids.len());
    let macs = m.config().matmul_macs_per_token() as f64;
    let peak = Peak::start();
    let mut cache = m.new_cache();
    let mut logits = vec![0f32; o.batch.min(n) * v];
    let mut per_batch = Vec::new();
    let clock = Clock::start();
    for (i, b) in text.ids[..n].chunks(o.batch).enumerate() {
        let t = Instant::now();
        m.forward(&mut [&mut cache], &[b], &mut logits[..b.len() * v])
            .expect("forward");
        per_batch.push((i * o.batch, b.len(), t.elapsed().as_secs_f64()));
    }
    let dt = clock.secs();
    let bytes = text.bytes_of(0..n);
    println!(
        "  compress {n} tokens ({bytes} bytes) in batches of {}: {:.2}s  {:.1} tokens/s  {:.0} bytes/s  {}  {}  {}",
        o.batch,
        dt,
        n as f64 / dt,
        bytes as f64 / dt,
        mac_report(n as f64, dt, macs, m),
        clock.report(),
        peak.report()
    );
    let line: Vec<String> = per_batch
        .iter()
        .map(|&(s, len, t)| format!("{s}..{}: {:.0}", s + len, len as f64 / t))
        .collect();
    println!("    tokens/s by position: {}", line.join("  "));
    cache
}

/// Decompression-style at one context length: `s` copies of `base` truncated
/// to `pos`, `steps` forward calls of one token per sequence.
fn decode_at(m: &Model, text: &Text, base: &KvCache, s: usize, pos: usize, steps: usize) -> f64 {
    let v = m.config().vocab;
    let mut base = base.clone();
    base.truncate(pos);
    let mut caches: Vec<KvCache> = (0..s).map(|_| base.clone()).collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let mut logits = vec![0f32; s * v];
    let n = text.ids.len();
    let t0 = Instant::now();
    for k in 0..steps {
        let step: Vec<&[u32]> = (0..s)
            .map(|j| {
                let i = (pos + k + j * 997) % n;
                &text.ids[i..i + 1]
            })
            .collect();
        m.forward(&mut refs, &step, &mut logits).expect("decode");
    }
    t0.elapsed().as_secs_f64()
}

fn decompress(m: &Model, text: &Text, base: &KvCache, o: &Opts) {
    let n = o.tokens.min(text.ids.len());
    let macs = m.config().matmul_macs_per_token() as f64;
    let bytes_per_token = text.bytes_of(0..n) as f64 / n as f64;
    let positions = o.positions.clone().unwrap_or_else(|| {
        let mut p: Vec<usize> = [0, 512, 1024, 1536]
            .into_iter()
            .filter(|&p| p + o.steps < n)
            .collect();
        p.push(n.saturating_sub(o.steps));
        p
    });
    for &s in &o.seqs {
        let peak = Peak::start();
        let clock = Clock::start();
        let mut samples = Vec::new();
        for &p in &positions {
            let p = p.min(base.len()).min(n.saturating_sub(o.steps));
            let dt = decode_at(m, text, base, s, p, o.steps);
            samples.push((p, (s * o.steps) as f64 / dt));
        }
        let line: Vec<String> = samples
            .iter()
            .map(|&(p, r)| format!("@{p}: {r:.0}"))
            .collect();
        // Average over a chunk 0..n: time per token interpolated linearly
        // between the sampled positions.
        let mut time = 0.0;
        let mut covered = 0.0;
        for w in samples.windows(2) {
            let ((p0, r0), (p1, r1)) = (w[0], w[1]);
            time += (p1 - p0) as f64 * (1.0 / r0 + 1.0 / r1) / 2.0;
            covered += (p1 - p0) as f64;
        }
        let avg = if covered > 0.0 {
            covered / time
        } else {
            samples[0].1
        };
        println!(
            "  decompress {s} seqs x {} steps: tokens/s {}  | chunk 0..{n} avg ~{avg:.0} tokens/s {:.0} bytes/s  {}  {}  {}",
            o.steps,
            line.join("  "),
            avg * bytes_per_token,
            mac_report(avg, 1.0, macs, m),
            clock.report(),
            peak.report()
        );
        if o.decode_full {
            decode_full(m, text, s, n);
        }
    }
}

/// `s` sequences (different parts of the text) decoded one token per step from
/// position 0 to `n`, as a decompressor does.
fn decode_full(m: &Model, text: &Text, s: usize, n: usize) {
    let v = m.config().vocab;
    let macs = m.config().matmul_macs_per_token() as f64;
    let peak = Peak::start();
    let mut caches: Vec<KvCache> = (0..s).map(|_| m.new_cache()).collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let mut logits = vec![0f32; s * v];
    let len = text.ids.len();
    let mut bytes = 0;
    let clock = Clock::start();
    for k in 0..n {
        let step: Vec<&[u32]> = (0..s)
            .map(|j| {
                let i = (j * n + k) % len;
                bytes += text.bytes_of(i..i + 1);
                &text.ids[i..i + 1]
            })
            .collect();
        m.forward(&mut refs, &step, &mut logits).expect("decode");
    }
    let dt = clock.secs();
    let toks = (s * n) as f64;
    println!(
        "  decompress (full) {s} seqs x {n} tokens: {dt:.1}s  {:.1} tokens/s  {:.0} bytes/s  {}  {}  {}",
        toks / dt,
        bytes as f64 / dt,
        mac_report(toks, dt, macs, m),
        clock.report(),
        peak.report()
    );
}

/// The real codec end to end on the first `o.codec_bytes` bytes of the file.
fn codec(m: &Model, tok: &ModelTokenizer, g: &Gguf, o: &Opts) {
    use llmc::codec::{compress, decompress, CompressOptions, DecompressOptions, ModelIdentity};
    let Some(limit) = o.codec_bytes else {
        return;
    };
    let data = std::fs::read(&o.file).expect("read file");
    let data = &data[..limit.min(data.len())];
    let id = ModelIdentity {
        name: "bench".into(),
        fingerprint: g.fingerprint(),
    };
    let copts = CompressOptions {
        level: o.level,
        params: llmc::codec::Params::level(o.level).expect("--level 1..=9"),
        piece_tokens: o.batch,
        ..Default::default()
    };
    let mut dopts = DecompressOptions::default();
    if let Some(b) = o.max_batch {
        dopts.max_batch = b;
    }
    let macs = m.config().matmul_macs_per_token() as f64;
    let n_tokens = tok.encode(data).len();
    let peak = Peak::start();
    let clock = Clock::start();
    let packed = m
        .install(|| compress(data, m, tok, &id, &copts))
        .expect("compress");
    let dt = clock.secs();
    println!(
        "  codec compress {} bytes ({n_tokens} tokens, level {}): {dt:.2}s  {:.0} bytes/s  {:.1} tokens/s  {:.3} bits/byte  {}  {}  {}",
        data.len(),
        o.level,
        data.len() as f64 / dt,
        n_tokens as f64 / dt,
        packed.len() as f64 * 8.0 / data.len() as f64,
        mac_report(n_tokens as f64, dt, macs, m),
        clock.report(),
        peak.report()
    );
    if o.codec_compress_only {
        return;
    }
    let peak = Peak::start();
    let clock = Clock::start();
    let out = m
        .install(|| decompress(&packed, m, tok, &id, &dopts))
        .expect("decompress");
    let dt = clock.secs();
    assert!(out == data, "round trip differs");
    println!(
        "  codec decompress (up to {} streams in flight): {dt:.2}s  {:.0} bytes/s  {:.1} tokens/s  {}  {}  {}",
        dopts.max_batch,
        data.len() as f64 / dt,
        n_tokens as f64 / dt,
        mac_report(n_tokens as f64, dt, macs, m),
        clock.report(),
        peak.report()
    );
}

fn llamacpp(model: &std::path::Path, o: &Opts) {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import llama_cpp"])
        .output()
        .is_ok_and(|r| r.status.success());
    if !ok {
        println!("llama.cpp: python3 cannot import llama_cpp; skipped");
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/llamacpp_speed.py");
    for &t in &o.threads {
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg("--model")
            .arg(model)
            .args(["--threads", &t.to_string()])
            .args(["--tokens", &o.tokens.to_string()])
            .args(["--batch", &o.batch.to_string()])
            .arg(&o.file)
            .output()
            .expect("run python3");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            print!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let o = parse_args();
    let path = llmc::registry::model_for_tests().expect("locate the model");
    let g = Gguf::open(&path).expect("open model");
    let tok = ModelTokenizer::from_gguf(&g).expect("tokenizer");
    let text = load_text(&tok, &o.file);
    assert!(
        text.ids.len() > o.tokens,
        "{} has only {} tokens",
        o.file.display(),
        text.ids.len()
    );
    let variants = o
        .variants
        .clone()
        .unwrap_or_else(|| vec![Kernels::best().variant()]);
    println!(
        "llmc speed: {} ({} tokens), chunk {} tokens, {}, {} cores, load average {}",
        o.file.display(),
        text.ids.len(),
        o.tokens,
        llmc::kernels::cpu_name(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg()
    );
    for &variant in &variants {
        for &threads in &o.threads {
            let t = Instant::now();
            let m = Model::load(
                &g,
                &ModelOptions {
                    threads,
                    variant: Some(variant),
                },
            )
            .expect("load model");
            println!(
                "variant {variant}, {threads} thread(s): load {:.2}s, {:.1} M matmul MAC/token",
                t.elapsed().as_secs_f64(),
                m.config().matmul_macs_per_token() as f64 / 1e6
            );
            ceiling(&m);
            let base = if o.compress || o.decompress {
                compress(&m, &text, &o)
            } else {
                m.new_cache()
            };
            if o.decompress {
                decompress(&m, &text, &base, &o);
            }
            drop(base);
            codec(&m, &tok, &g, &o);
        }
    }
    if o.llamacpp {
        llamacpp(&path, &o);
    }
    println!("load average at end {}", load_avg());
}
