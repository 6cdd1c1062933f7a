#![no_main]
// The target's body is in crates/drover-fuzz-targets, shared with the corpus replay test.
libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::log_entry(data));
