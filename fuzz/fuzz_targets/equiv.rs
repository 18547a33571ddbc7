#![no_main]
//! See bpfvfs_fuzz::equiv and docs/fuzzing.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| bpfvfs_fuzz::equiv::run(data));
