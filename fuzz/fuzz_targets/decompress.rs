//! Any bytes given to the decompressor end in `Ok` or a precise error:
//! never a panic, a hang or an unbounded allocation.
//!
//! The model is fuzz/seeds/gguf/tiny.gguf (made by make_seeds.py), so that
//! a model block of garbage decodes in milliseconds; `LLMC_FUZZ_MODEL`
//! names another (the default model decodes the version-1 seeds too).
#![no_main]

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llmc::codec::DecompressOptions;
use llmc::engine::{Engine, EngineOptions};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let path = std::env::var_os("LLMC_FUZZ_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds/gguf/tiny.gguf")
            });
        let opts = EngineOptions {
            model: None,
            threads: 1,
            variant: None,
            quiet: true,
        };
        Engine::open(&path, &opts).expect("the fuzz model loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let opts = DecompressOptions {
        // A hostile file may ask for many long streams: the state budget
        // bounds their memory as in the command line.
        state_budget: 256 << 20,
        ..DecompressOptions::default()
    };
    let _ = engine().decompress(data, &mut out, &opts, &mut |_| ControlFlow::Continue(()));
});
