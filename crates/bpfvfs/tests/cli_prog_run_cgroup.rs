//! `bpfvfs prog run` of programs calling `bpf_get_current_cgroup_id` against a live daemon:
//! the kernel runs BPF_PROG_TEST_RUN in the calling task, so the helper reports the cgroup of
//! the process that ran the command. A shell moves itself into a group of the daemon's tree
//! (`echo $$ > cgroup.procs`) and execs the CLI (same pid): the syscall program's ctx_out and
//! the socket filter's return value are that group's id, the inode number `stat` shows for
//! its directory; from the root group, the root's. Program:
//! crates/runtime/tests/data/current_cgroup.bpf.c.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `bpfvfs prog run` from a shell that first joins `group` (a path under sys/fs/cgroup).
fn run_in_group(d: &Daemon, group: &str, run_args: &str) -> String {
    let procs = if group.is_empty() {
        "sys/fs/cgroup/cgroup.procs".to_string()
    } else {
        format!("sys/fs/cgroup/{group}/cgroup.procs")
    };
    d.sh_ok(&format!(
        "echo $$ > {procs} && exec {} --socket {} prog run {run_args}",
        BIN,
        s(&d.sock)
    ))
}

#[test]
fn prog_run_reports_the_cli_process_group() {
    let Some(d) = Daemon::start("cliruncg", &[]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/data/current_cgroup.bpf.c");
    let Some(o) = compile_bpf(&src, &tmp) else {
        return;
    };
    d.cli_ok(&["prog", "loadall", s(&o), "/sys/fs/bpf/cg"]);
    d.sh_ok("mkdir -p sys/fs/cgroup/a/b");
    let ino = |p: &str| std::fs::metadata(d.mnt.join(p)).unwrap().ino();
    let (root_id, b_id) = (ino("sys/fs/cgroup"), ino("sys/fs/cgroup/a/b"));
    assert_ne!(root_id, b_id);

    let ctx = tmp.join("ctx.bin");
    std::fs::write(&ctx, [0xffu8; 8]).unwrap();
    let pkt = tmp.join("pkt.bin");
    std::fs::write(&pkt, [0u8; 64]).unwrap();
    for (group, want) in [("a/b", b_id), ("", root_id)] {
        let ctx_out = tmp.join("ctx.out");
        let out = run_in_group(
            &d,
            group,
            &format!(
                "pinned /sys/fs/bpf/cg/current_cgroup ctx_in {} ctx_out {}",
                s(&ctx),
                s(&ctx_out)
            ),
        );
        assert!(out.starts_with("Return value: 0, duration: "), "{out}");
        let word = std::fs::read(&ctx_out).unwrap();
        assert_eq!(
            u64::from_ne_bytes(word[..8].try_into().unwrap()),
            want,
            "group {group:?}"
        );
        let out = run_in_group(
            &d,
            group,
            &format!(
                "pinned /sys/fs/bpf/cg/current_cgroup_skb data_in {}",
                s(&pkt)
            ),
        );
        assert!(
            out.starts_with(&format!("Return value: {}, duration", want as u32)),
            "group {group:?}: {out}"
        );
    }
}
