//! Benchmarks as library functions, so the CLI (`bpfvfs bench ...`), criterion benches and
//! tests run the same code and print the same tables.

mod storage_bench;

pub use storage_bench::{storage, StorageBenchConfig, StorageBenchReport, StorageBenchRow};
