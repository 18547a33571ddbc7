//! `bpfvfs conformance` and `bpfvfs conformance-plugin` on the eBPF conformance suite.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn suite() -> Option<Vec<PathBuf>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    Some(files)
}

#[test]
fn whole_suite_passes_on_both_engines() {
    let Some(files) = suite() else {
        println!("SKIPPED: the conformance suite (../shared/conformance/tests) is not here");
        return;
    };
    assert!(files.len() >= 300, "suite has {} files", files.len());
    for engine in ["interp", "jit"] {
        let out = Command::new(env!("CARGO_BIN_EXE_bpfvfs"))
            .args(["conformance", "--engine", engine])
            .args(&files)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            format!("{} passed, 0 failed", files.len()),
            "{engine}:\n{stdout}"
        );
        assert!(out.status.success(), "{engine}");
        assert_eq!(
            stdout.lines().count(),
            files.len() + 1,
            "one line per file, then the total"
        );
    }
}

#[test]
fn plugin_protocol_prints_r0_and_rejects_garbage() {
    let run = |input: &str, args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bpfvfs"))
            .arg("conformance-plugin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // r0 = 7; exit
    let out = run("b7 00 00 00 07 00 00 00 95 00 00 00 00 00 00 00", &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("0x"),
        "7"
    );
    // ldxb r0, [r1+1]; exit — with MEM "aa bb", on the JIT.
    let out = run(
        "71 10 01 00 00 00 00 00 95 00 00 00 00 00 00 00",
        &["--engine", "jit", "aa bb"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("0x"),
        "bb"
    );
    // Not hex, and a truncated instruction: an error on stderr and a non-zero exit.
    for bad in ["zz", "b7 00 00"] {
        let out = run(bad, &[]);
        assert!(!out.status.success(), "{bad}");
        assert!(!out.stderr.is_empty(), "{bad}");
    }
}
