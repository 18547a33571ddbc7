//! Runs every file of the eBPF conformance suite (../shared/conformance/tests) through the
//! interpreter and checks that exactly the files listed in `EXPECTED_FAILURES` fail.

use bpfvfs_ebpf::conformance::{run_file, InterpEngine};

mod common;
use common::{conformance_dir, conformance_files};

/// Files that cannot pass, with the reason. Empty: the whole suite passes.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

const EXPECTED_FILES: usize = 313;

#[test]
fn conformance_suite_interp() {
    let dir = conformance_dir();
    let Some(files) = conformance_files() else {
        return;
    };
    assert_eq!(
        files.len(),
        EXPECTED_FILES,
        "unexpected number of conformance files in {}",
        dir.display()
    );
    let engine = InterpEngine::default();
    let mut failed = Vec::new();
    let mut passed = 0;
    for f in &files {
        let o = run_file(f, &engine);
        if o.passed {
            passed += 1;
        } else {
            println!("{o}");
            failed.push(o.name);
        }
    }
    println!(
        "conformance (interp): {passed} passed, {} failed",
        failed.len()
    );
    let expected: Vec<String> = EXPECTED_FAILURES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(failed, expected, "failures differ from EXPECTED_FAILURES");
}
