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

/// The same socket filter and XDP program test-run by the host kernel (bpftool 7.1's `prog
/// run`) and by bpfvfs in `--cgroup host` mode (`bpfvfs prog run`), each from a shell that
/// first joined the same scratch group of the host's cgroup v2 hierarchy: both return that
/// group's id (the low 32 bits), the inode number of its directory. Skips with the reason
/// when not root, without bpftool or without cgroup v2.
#[test]
fn kernel_and_host_mode_agree_on_the_callers_group() {
    if !is_root() {
        skip("not root: the kernel side needs CAP_BPF and cgroup writes");
        return;
    }
    let cg2 = match bpfvfs_cgroup::find_host_cgroup2() {
        Ok(p) => p,
        Err(e) => {
            skip(&format!("no cgroup v2 on this host: {e}"));
            return;
        }
    };
    if std::process::Command::new("bpftool")
        .arg("version")
        .output()
        .is_err()
    {
        skip("bpftool not available");
        return;
    }
    let Some(d) = Daemon::start("clicghost", &["--cgroup", "host"]) else {
        return;
    };
    let tmp = d.tmp.path().to_path_buf();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../runtime/tests/data/current_cgroup.bpf.c");
    let Some(o) = compile_bpf(&src, &tmp) else {
        return;
    };
    let pkt = tmp.join("pkt.bin");
    std::fs::write(&pkt, [0u8; 64]).unwrap();
    // A scratch group of the host, removed at the end however the test ends.
    struct Scratch(PathBuf, PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let group = cg2.join(format!("bpfvfs-test-runcg-{}", std::process::id()));
    let bpffs_dir = PathBuf::from(format!(
        "/sys/fs/bpf/bpfvfs-test-runcg-{}",
        std::process::id()
    ));
    let _scratch = Scratch(group.clone(), bpffs_dir.clone());
    std::fs::create_dir(&group).unwrap();
    let gid = std::fs::metadata(&group).unwrap().ino();
    let in_group = |cmd: &str| -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec {cmd}",
                group.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let k = std::process::Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(&o)
        .arg(&bpffs_dir)
        .output()
        .unwrap();
    if !k.status.success() {
        skip(&format!(
            "the host kernel refused the object: {}",
            String::from_utf8_lossy(&k.stderr)
        ));
        return;
    }
    d.cli_ok(&["prog", "loadall", s(&o), "/sys/fs/bpf/cg"]);
    for prog in ["current_cgroup_skb", "current_cgroup_xdp"] {
        let kernel = in_group(&format!(
            "bpftool prog run pinned {}/{prog} data_in {}",
            bpffs_dir.display(),
            s(&pkt)
        ));
        let ours = in_group(&format!(
            "{BIN} --socket {} prog run pinned /sys/fs/bpf/cg/{prog} data_in {}",
            s(&d.sock),
            s(&pkt)
        ));
        let retval = |out: &str| -> u64 {
            out.strip_prefix("Return value: ")
                .and_then(|r| r.split(',').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{prog}: {out}"))
        };
        assert_eq!(
            retval(&kernel),
            gid & 0xffff_ffff,
            "{prog}: kernel {kernel}"
        );
        assert_eq!(retval(&ours), retval(&kernel), "{prog}: bpfvfs {ours}");
    }
}
