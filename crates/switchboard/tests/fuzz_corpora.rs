//! Replays every committed fuzz corpus input through the checks the fuzz
//! targets run, on stable Rust and without cargo-fuzz, so that CI keeps every
//! input the fuzzers found interesting (and every crash they once found)
//! passing.
//!
//! The checks are `fuzz/src/lib.rs`, included here as they are.

#[allow(unreachable_pub, dead_code, missing_docs)]
#[path = "../../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The corpus folder of a fuzz target.
fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus; at least one must exist.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn envelope_corpus_replays() {
    replay("envelope", checks::envelope);
}

#[test]
fn router_corpus_replays() {
    replay("router", checks::router);
}

#[test]
fn static_path_corpus_replays() {
    let site = checks::StaticSite::new();
    replay("static_path", |data| site.check(data));
}

#[test]
fn config_corpus_replays() {
    replay("config", checks::config);
}
