//! Any bytes given as a model file end in a loaded model or a precise
//! error: never a panic, a hang or an unbounded allocation. Parsing, the
//! tokenizer and the model's shape checks and packing all run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = g.fingerprint();
    let _ = Tokenizer::from_gguf(&g);
    let _ = Model::load(
        &g,
        &ModelOptions {
            threads: 1,
            variant: None,
        },
    );
});
