#![no_main]
//! See bpfvfs_fuzz::verifier and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| bpfvfs_fuzz::verifier::run(data));
