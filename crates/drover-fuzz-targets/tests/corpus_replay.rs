//! Replays every saved fuzz corpus (`fuzz/corpus/<target>/`) through its target as an
//! ordinary test: what fuzzing found (the `regression-*` files are the inputs that
//! crashed a decoder before it was fixed) stays fixed under plain `cargo test`, on
//! stable Rust, without cargo-fuzz.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_decodes_without_a_panic() {
    let mut failures = Vec::new();
    for (target, run) in drover_fuzz_targets::TARGETS {
        let dir = corpus_dir(target);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        assert!(
            files.len() >= 3,
            "the corpus of {target} has {} files; fuzz it (docs/fuzzing.md)",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("read a corpus file");
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "decoders panicked on: {failures:#?}");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    // A target added to TARGETS but not to fuzz/ would never be fuzzed.
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (target, _) in drover_fuzz_targets::TARGETS {
        let path = fuzz.join(format!("{target}.rs"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            text.contains(&format!("drover_fuzz_targets::{target}(")),
            "{} does not call its target",
            path.display()
        );
    }
}
