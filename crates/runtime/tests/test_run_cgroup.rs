//! `bpf_get_current_cgroup_id` (helper 80) in BPF_PROG_TEST_RUN: the kernel runs a test run
//! in the calling task and reports that task's cgroup v2 id, and (since Linux 6.4) allows the
//! helper in syscall programs, socket filters and XDP programs alike. Here: 0 without a cgroup
//! tree, the root group's id when no caller is recorded, and the recorded caller's group
//! otherwise — for each of the three types, on every engine. Program:
//! tests/data/current_cgroup.bpf.c, built by clang.

mod common;

use bpfvfs_cgroup::CgroupMode;
use bpfvfs_runtime::{LoadOpts, LoadedObj, Runtime, TestRunInput};
use bpfvfs_vfs::task::{set_caller, Caller};
use bpfvfs_vfs::{Cred, Vfs};
use std::path::PathBuf;

fn object() -> Option<Vec<u8>> {
    common::compile(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/current_cgroup.bpf.c"),
    )
}

fn load(rt: &Runtime, bytes: &[u8]) -> LoadedObj {
    rt.load_object(bytes, &LoadOpts::new("current_cgroup"))
        .unwrap_or_else(|e| panic!("{e}\n{}", e.verifier_log().unwrap_or("")))
}

fn prog(o: &LoadedObj, name: &str) -> std::sync::Arc<bpfvfs_bpf::Prog> {
    let h = &o.progs.iter().find(|(n, _)| n == name).expect(name).1;
    h.obj.as_prog().unwrap().clone()
}

/// What each of the three programs reports: (syscall ctx word, skb retval, xdp retval).
fn ids(rt: &Runtime, o: &LoadedObj) -> (u64, u32, u32) {
    let sys = rt
        .test_run(
            &prog(o, "current_cgroup"),
            &TestRunInput {
                ctx_in: Some(vec![0xff; 8]),
                ..Default::default()
            },
        )
        .unwrap();
    let word = u64::from_ne_bytes(sys.ctx_out.unwrap()[..8].try_into().unwrap());
    let packet = TestRunInput {
        data_in: Some(vec![0; 64]),
        ..Default::default()
    };
    let skb = rt
        .test_run(&prog(o, "current_cgroup_skb"), &packet)
        .unwrap();
    let xdp = rt
        .test_run(&prog(o, "current_cgroup_xdp"), &packet)
        .unwrap();
    (word, skb.retval, xdp.retval)
}

fn ino(vfs: &Vfs, path: &str) -> u64 {
    vfs.stat(&Cred::root(), None, path.as_bytes(), true)
        .unwrap()
        .ino
}

/// Resets the thread's recorded caller however the test ends.
struct CallerReset;
impl Drop for CallerReset {
    fn drop(&mut self) {
        set_caller(None);
    }
}

#[test]
fn no_cgroup_tree_reports_zero() {
    let Some(obj) = object() else {
        return;
    };
    for cfg in common::configs() {
        let (_vfs, _bpf, rt) = common::instance(cfg);
        let o = load(&rt, &obj);
        // The syscall program overwrites the 0xff.. context word: the helper ran.
        assert_eq!(ids(&rt, &o), (0, 0, 0), "{cfg:?}");
    }
}

#[test]
fn test_runs_report_the_callers_group() {
    let Some(obj) = object() else {
        return;
    };
    let _reset = CallerReset;
    for cfg in common::configs() {
        let (vfs, _bpf, rt) = common::instance(cfg);
        let tree = bpfvfs_cgroup::install(&vfs, CgroupMode::Local).unwrap();
        let o = load(&rt, &obj);
        let root_id = ino(&vfs, "/sys/fs/cgroup");
        assert_eq!(tree.root().id(), root_id);

        // Nobody recorded: the root group, as for a task that never left it.
        set_caller(None);
        let r = root_id as u32;
        assert_eq!(ids(&rt, &o), (root_id, r, r), "{cfg:?}");

        // This process moved into /a/b and recorded as the caller (what the control
        // socket's edge does for a test run): that group's id, the inode number of its
        // directory.
        vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a", 0o755)
            .unwrap();
        vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a/b", 0o755)
            .unwrap();
        let b = tree.by_path("/a/b").unwrap();
        let b_id = ino(&vfs, "/sys/fs/cgroup/a/b");
        assert_eq!(b.id(), b_id);
        assert_ne!(b_id, root_id);
        let me = std::process::id();
        tree.move_pid(&b, me).unwrap();
        set_caller(Some(Caller {
            pid: me,
            uid: 0,
            gid: 0,
        }));
        assert_eq!(ids(&rt, &o), (b_id, b_id as u32, b_id as u32), "{cfg:?}");

        // Moved on to /a: the next run sees /a (looked up per run, nothing cached).
        let a = tree.by_path("/a").unwrap();
        tree.move_pid(&a, me).unwrap();
        let a_id = ino(&vfs, "/sys/fs/cgroup/a");
        assert_eq!(ids(&rt, &o), (a_id, a_id as u32, a_id as u32), "{cfg:?}");

        // A caller the tree has never seen is in the root group.
        set_caller(Some(Caller {
            pid: 1,
            uid: 0,
            gid: 0,
        }));
        assert_eq!(ids(&rt, &o).0, root_id, "{cfg:?}");
        set_caller(None);
    }
}

/// Figures: ns per in-process test run of a syscall program calling helper 80 (no caller
/// recorded; a caller in a group) against one that does not call it. Release build:
/// `cargo test --release -p bpfvfs-runtime --test test_run_cgroup figures -- --ignored
/// --nocapture`.
#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn figures() {
    let Some(obj) = object() else {
        return;
    };
    let _reset = CallerReset;
    let cfg = bpfvfs_runtime::RuntimeConfig {
        engine: if cfg!(target_arch = "x86_64") {
            bpfvfs_runtime::EngineKind::Jit
        } else {
            bpfvfs_runtime::EngineKind::Interp
        },
        checked: false,
    };
    let (vfs, _bpf, rt) = common::instance(cfg);
    let tree = bpfvfs_cgroup::install(&vfs, CgroupMode::Local).unwrap();
    let o = load(&rt, &obj);
    vfs.mkdir(&Cred::root(), None, b"/sys/fs/cgroup/a", 0o755)
        .unwrap();
    let input = TestRunInput {
        ctx_in: Some(vec![0; 8]),
        ..Default::default()
    };
    let time = |name: &str| {
        let p = prog(&o, name);
        let n = 200_000u32;
        for _ in 0..1000 {
            rt.test_run(&p, &input).unwrap();
        }
        let t = std::time::Instant::now();
        for _ in 0..n {
            rt.test_run(&p, &input).unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    set_caller(None);
    let base = time("constant");
    let root = time("current_cgroup");
    let me = std::process::id();
    tree.move_pid(&tree.by_path("/a").unwrap(), me).unwrap();
    set_caller(Some(Caller {
        pid: me,
        uid: 0,
        gid: 0,
    }));
    let caller = time("current_cgroup");
    println!(
        "test run, syscall program: no helper {base:.0} ns; helper 80, no caller {root:.0} ns; \
         helper 80, caller in a group {caller:.0} ns"
    );
}
