//! Shared test helpers: the tokenizer fixtures fetched by `scripts/fetch-fixtures.sh`.

use std::path::PathBuf;

/// The path of a fetched tokenizer fixture (`r1_llama`, `r1_qwen3`).
pub fn tokenizer_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/cache")
        .join(format!("{name}.tokenizer.json"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-fixtures.sh first",
        path.display()
    );
    path
}

/// The text of a tokenizer fixture.
#[allow(dead_code)]
pub fn tokenizer_json(name: &str) -> String {
    std::fs::read_to_string(tokenizer_path(name)).expect("fixture is readable")
}
