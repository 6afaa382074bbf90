//! Decompression of arbitrary bytes with the tiny synthetic model: it must
//! return (Ok or a precise Err) without panicking, hanging or allocating
//! beyond the container's caps. Seed with small files from
//! `llmc::codec::compress` so the fuzzer starts from valid frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmc::codec::synthetic::{HashModel, PairTokenizer};
use llmc::codec::{decompress, DecompressOptions, ModelIdentity, TextTokenizer};

fuzz_target!(|data: &[u8]| {
    let tok = PairTokenizer::english();
    let mut model = HashModel::new(tok.vocab_size(), 1);
    // A small context bounds the work a forged header can ask for.
    model.context = 512;
    let id = ModelIdentity {
        name: "hash".into(),
        fingerprint: [1; 32],
    };
    let _ = decompress(data, &model, &tok, &id, &DecompressOptions { max_batch: 4, ..Default::default() });
});
