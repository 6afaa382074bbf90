//! Any bytes given as a model file end in a loaded model or a precise
//! error: never a panic, a hang or an unbounded allocation; whatever the
//! reader accepts is safe to use. Parsing, every getter, the tensors'
//! bounds, the tokenizer and the model's shape checks and packing all run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, _) in g.metadata() {
        let _ = g.get_u32(key);
        let _ = g.get_u64(key);
        let _ = g.get_f32(key);
        let _ = g.get_str(key);
        let _ = g.get_str_array(key);
        let _ = g.get_i32_array(key);
        let _ = g.get_f32_array(key);
    }
    for info in g.tensors() {
        let t = g.tensor(&info.name).expect("listed tensor is present");
        assert_eq!(t.data.len() as u64, info.n_bytes());
        assert!(g.data_start() + info.offset + info.n_bytes() <= g.file_len());
    }
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
