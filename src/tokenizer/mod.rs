//! tokenizer (placeholder: filled in by its owner)
