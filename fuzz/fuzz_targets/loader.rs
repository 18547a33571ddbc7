#![no_main]
//! See bpfvfs_fuzz::loader and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| bpfvfs_fuzz::loader::run(data));
