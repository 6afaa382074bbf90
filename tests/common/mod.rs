//! Helpers shared by the integration tests that read the shared corpus.

use std::path::PathBuf;

/// The shared corpus beside the repository (`../shared/corpus`, as on CI),
/// or at its place on the development machines.
pub fn corpus_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for cand in [
        here.join("../shared/corpus"),
        here.join("../../shared/corpus"),
        PathBuf::from("/work/shared/corpus"),
    ] {
        if cand.join("alice29.txt").exists() {
            return cand;
        }
    }
    panic!("shared/corpus not found beside the repository");
}
