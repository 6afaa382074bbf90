//! gguf (placeholder: filled in by its owner)
