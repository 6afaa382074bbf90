//! Helpers shared by the integration tests that use the real model and the
//! shared corpus. Each test crate uses a part of them.
#![allow(dead_code)]

pub mod cli;

use std::path::PathBuf;
use std::sync::OnceLock;

use llmc::codec::ModelIdentity;
use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;

/// The default model, loaded once per test crate.
pub struct Real {
    pub model: Model,
    pub tok: Tokenizer,
    pub id: ModelIdentity,
}

/// The default model (located like every test: `LLMC_TEST_MODEL` or the
/// registry), its tokenizer and identity.
pub fn real() -> &'static Real {
    static R: OnceLock<Real> = OnceLock::new();
    R.get_or_init(|| {
        let path = llmc::registry::model_for_tests().expect("locate the model");
        let g = Gguf::open(&path).expect("open the model");
        Real {
            model: Model::load(&g, &ModelOptions::default()).expect("load"),
            tok: Tokenizer::from_gguf(&g).expect("tokenizer"),
            id: ModelIdentity {
                name: llmc::registry::DEFAULT_MODEL.name.into(),
                fingerprint: g.fingerprint(),
            },
        }
    })
}

/// `tests/data/<sub>/<file>`: the public test texts (Canterbury corpus) and
/// the reference figures, copied from the project's shared folder so that a
/// clone of the repository alone runs every test.
pub fn shared(sub: &str, file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(sub)
        .join(file);
    assert!(
        p.is_file(),
        "{} is missing from the repository",
        p.display()
    );
    p
}

/// The shared corpus directory.
pub fn corpus_dir() -> PathBuf {
    shared("corpus", "alice29.txt")
        .parent()
        .expect("corpus file has a directory")
        .to_path_buf()
}
