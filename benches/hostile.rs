//! Hostile inputs by class, counted: each case ends in a clean error, a
//! correct result, a panic, a hang (over 30 s) or wrong output; the last
//! three must stay at 0. Prints a table (figures, not assertions).
//!
//!     cargo bench --bench hostile [-- --per-seed N]
//!
//! Decompression: the golden files of tests/data with the default model
//! (fetched like everywhere), and fuzz/seeds/decompress with the tiny
//! model of fuzz/make_seeds.py (model blocks of garbage decode fast).
//! GGUF: fuzz/seeds/gguf/tiny.gguf damaged in its header, metadata and
//! tensor infos, then read, tokenizer built and model loaded.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use llmc::codec::DecompressOptions;
use llmc::engine::{Engine, EngineOptions};
use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;

const HANG: Duration = Duration::from_secs(30);

#[derive(Default, Clone, Copy)]
struct Tally {
    cases: u64,
    error: u64,
    correct: u64,
    /// Cut at a frame's end: the frames before it, exactly.
    prefix: u64,
    panic: u64,
    hang: u64,
    wrong: u64,
    slowest: Duration,
}

impl Tally {
    fn row(&self, class: &str) {
        println!(
            "| {class} | {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
            self.cases,
            self.error,
            self.correct,
            self.prefix,
            self.panic,
            self.hang,
            self.wrong,
            self.slowest.as_secs_f64()
        );
    }
}

/// xorshift64*: reproducible cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Seed<'a> {
    engine: &'a Engine,
    name: String,
    packed: Vec<u8>,
    original: Vec<u8>,
}

fn decode(engine: &Engine, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let opts = DecompressOptions {
        state_budget: 256 << 20,
        ..DecompressOptions::default()
    };
    engine
        .decompress(data, &mut out, &opts, &mut |_| ControlFlow::Continue(()))
        .map(|_| out)
        .map_err(|e| e.to_string())
}

impl Tally {
    /// Runs one case: counts it, times it, and counts a panic or a hang;
    /// otherwise returns its result for the caller to judge.
    fn run<T>(&mut self, f: impl FnOnce() -> Result<T, String>) -> Option<Result<T, String>> {
        self.cases += 1;
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f));
        let dt = t0.elapsed();
        self.slowest = self.slowest.max(dt);
        match r {
            _ if dt > HANG => self.hang += 1,
            Err(_) => self.panic += 1,
            Ok(r) => return Some(r),
        }
        None
    }
}

/// Runs one case: `want` is the output a correct decoder gives, `None`
/// where only an error is right.
fn case(t: &mut Tally, engine: &Engine, data: &[u8], want: Option<&[u8]>) {
    match (t.run(|| decode(engine, data)), want) {
        (None, _) => {}
        (Some(Err(_)), None) => t.error += 1,
        (Some(Ok(out)), Some(w)) if out == w => t.correct += 1,
        // An error where the input is valid, or output where it is not.
        _ => t.wrong += 1,
    }
}

/// A damaged copy decodes either to an error or, if the damage changed
/// nothing the format checks, to the original.
fn damaged(t: &mut Tally, s: &Seed, data: &[u8]) {
    match t.run(|| decode(s.engine, data)) {
        None => {}
        Some(Err(_)) => t.error += 1,
        Some(Ok(out)) if out == s.original => t.correct += 1,
        // A file of concatenated frames cut exactly where a frame ends is
        // a valid file of fewer frames (as with gzip, xz and zstd): it
        // decodes to those frames' output, a prefix of the original.
        Some(Ok(out)) if data.len() < s.packed.len() && s.original.starts_with(&out) => {
            t.prefix += 1
        }
        Some(Ok(_)) => t.wrong += 1,
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds<'a>(real: &'a Engine, tiny: &'a Engine) -> Vec<Seed<'a>> {
    let data = repo().join("tests/data");
    let mut out = Vec::new();
    let mut golden: Vec<_> = std::fs::read_dir(&data)
        .expect("tests/data")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "llmc"))
        .collect();
    golden.sort();
    for p in golden {
        let packed = std::fs::read(&p).expect("golden file");
        // The golden tests check what these decode to.
        let original = decode(real, &packed).expect("a golden file decodes");
        out.push(Seed {
            engine: real,
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            packed,
            original,
        });
    }
    let dir = repo().join("fuzz/seeds/decompress");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/seeds/decompress")
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let packed = std::fs::read(&p).expect("seed");
        // Seeds made with the default model (version 1) are in the list above.
        let Ok(original) = decode(tiny, &packed) else {
            continue;
        };
        out.push(Seed {
            engine: tiny,
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            packed,
            original,
        });
    }
    out
}

fn decompression(real: &Engine, tiny: &Engine, per_seed: usize) {
    let seeds = seeds(real, tiny);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut flips, mut cuts, mut tails, mut cats) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    for s in &seeds {
        let n = s.packed.len();
        for _ in 0..per_seed {
            let mut d = s.packed.clone();
            for _ in 0..=rng.below(3) {
                let i = rng.below(n);
                d[i] ^= 1 << rng.below(8);
            }
            damaged(&mut flips, s, &d);
        }
        // Every length when short, else `per_seed` of them.
        let lens: Vec<usize> = if n <= 4 * per_seed {
            (0..n).collect()
        } else {
            (0..per_seed).map(|_| rng.below(n)).collect()
        };
        for len in lens {
            damaged(&mut cuts, s, &s.packed[..len]);
        }
        for k in 0..per_seed.div_ceil(4) {
            let mut d = s.packed.clone();
            match k % 3 {
                0 => d.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8)),
                // A frame's start and then garbage.
                1 => {
                    d.extend_from_slice(&s.packed[..s.packed.len().min(16)]);
                    d.extend((0..rng.below(32)).map(|_| rng.next() as u8));
                }
                _ => d.push(0),
            }
            case(&mut tails, s.engine, &d, None);
        }
    }
    // Concatenations: two whole frames decode to both outputs; a whole
    // frame and a cut one is an error.
    for a in &seeds {
        for b in seeds
            .iter()
            .filter(|b| std::ptr::eq(b.engine, a.engine))
            .take(4)
        {
            let mut d = a.packed.clone();
            d.extend_from_slice(&b.packed);
            let mut want = a.original.clone();
            want.extend_from_slice(&b.original);
            case(&mut cats, a.engine, &d, Some(&want));
            let mut d = a.packed.clone();
            d.extend_from_slice(&b.packed[..b.packed.len() - 1]);
            case(&mut cats, a.engine, &d, None);
        }
    }
    println!("decompression: {} seed files", seeds.len());
    header();
    flips.row("bit flips (1-3 bits)");
    cuts.row("truncations");
    tails.row("appended garbage");
    cats.row("concatenations");
    if let Some(s) = seeds.iter().find(|s| s.name.contains("level5")) {
        println!("(e.g. {}: {} bytes)", s.name, s.packed.len());
    }
}

fn header() {
    println!(
        "| class | cases | clean error | intact | whole frames before a cut | panic | hang \
         | wrong output | slowest |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

fn gguf(per_seed: usize) {
    let bytes = std::fs::read(repo().join("fuzz/seeds/gguf/tiny.gguf")).expect("tiny.gguf");
    let g = Gguf::from_bytes(bytes.clone()).expect("tiny.gguf parses");
    let head = g.data_start() as usize;
    drop(g);
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    let mut t = Tally::default();
    let load = |d: Vec<u8>| -> Result<(), String> {
        let g = Gguf::from_bytes(d).map_err(|e| e.to_string())?;
        Tokenizer::from_gguf(&g).map_err(|e| e.to_string())?;
        let opts = ModelOptions {
            threads: 1,
            variant: None,
        };
        Model::load(&g, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for k in 0..per_seed * 20 {
        let mut d = bytes.clone();
        match k % 4 {
            0 => {
                let i = rng.below(head);
                d[i] ^= 1 << rng.below(8);
            }
            // A huge or odd count, length, type or offset.
            1 => {
                let i = rng.below(head - 8);
                let v = [u64::MAX, 1 << 40, 0, 1 << 31, rng.next()][rng.below(5)];
                d[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            2 => {
                let i = rng.below(head - 4);
                let v = [u32::MAX, 0, 1 << 20, rng.next() as u32][rng.below(4)];
                d[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => d.truncate(rng.below(bytes.len())),
        }
        match t.run(|| load(d)) {
            None => {}
            Some(Err(_)) => t.error += 1,
            Some(Ok(())) => t.correct += 1,
        }
    }
    println!(
        "GGUF: tiny.gguf ({} bytes, header {head} bytes)",
        bytes.len()
    );
    header();
    t.row("hostile GGUF headers (flips, counts, cuts)");
    println!("(\"intact\" here: the damaged file still loads as a valid model)");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let per_seed = args
        .iter()
        .position(|a| a == "--per-seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let opts = EngineOptions {
        threads: 0,
        quiet: true,
        ..EngineOptions::default()
    };
    let real = Engine::load(&opts).expect("the default model");
    let tiny_path: &Path = &repo().join("fuzz/seeds/gguf/tiny.gguf");
    let tiny = Engine::open(tiny_path, &opts).expect("the tiny model");
    // Panics are counted, not printed.
    std::panic::set_hook(Box::new(|_| {}));
    let t0 = Instant::now();
    decompression(&real, &tiny, per_seed);
    gguf(per_seed);
    println!("{:.0} s in all", t0.elapsed().as_secs_f64());
}
