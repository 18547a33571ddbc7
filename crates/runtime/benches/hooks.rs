//! Cost of VFS hooks with BPF programs attached: open+close (file_open), stat
//! (inode_getattr) and create+unlink (inode_create + inode_unlink) with 0, 1 and 4 trivial
//! JIT-compiled LSM programs attached at each of those hooks, in-process and through a FUSE
//! mount of the same trees, side by side in one run. Target (issue 8): ≤ 100 ns added per
//! attached program in-process.
//!
//! The FUSE mounts cache no attributes or names (TTL 0), so every `stat` reaches the daemon
//! and its hook (with the daemon's default TTL of 1 s most would be answered by the kernel).
//! FUSE rows need root and /dev/fuse; they are skipped with the reason printed otherwise.
//!
//! A fourth tree, "hooks on", has one program at inode_mkdir only, which none of the
//! operations reaches: the hooks are switched on (every hook site calls into the runtime)
//! with nothing to run.
//!
//! After criterion, a paired summary: rounds of one 64-operation block per (operation,
//! tree, path), the tree order rotating, median per-operation time over the rounds, and from
//! it the cost added by the first program (N=1 − N=0; and N=1 − hooks on, the program's run
//! without the switch-on) and by each of the next three ((N=4 − N=1) / 3). `HOOKS_BENCH_ROUNDS` sets the rounds (default 200);
//! `HOOKS_BENCH_NO_FUSE=1` leaves the FUSE rows out; `-- nomatch` (a criterion filter
//! matching nothing) gives the summary alone.
//!
//! Run: `cargo bench -p bpfvfs-runtime --bench hooks`.

use bpfvfs_bpf::Bpf;
use bpfvfs_fuse::{MountHandle, MountOptions};
use bpfvfs_runtime::{LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};
use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SRC: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
SEC("lsm/file_open") int BPF_PROG(on_open, struct file *f) { return 0; }
SEC("lsm/inode_getattr") int BPF_PROG(on_getattr, const struct path *p) { return 0; }
SEC("lsm/inode_create") int BPF_PROG(on_create, struct inode *dir, struct dentry *d, umode_t m) { return 0; }
SEC("lsm/inode_unlink") int BPF_PROG(on_unlink, struct inode *dir, struct dentry *d) { return 0; }
SEC("lsm/inode_mkdir") int BPF_PROG(on_mkdir, struct inode *dir, struct dentry *d, umode_t m) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"#;

fn object() -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-hook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let c = dir.join("h.bpf.c");
    let o = dir.join("h.bpf.o");
    std::fs::write(&c, SRC).ok()?;
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/bpfvfs");
    let ok = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!("-I{inc}"))
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .ok()?
        .success();
    ok.then(|| std::fs::read(&o).ok()).flatten()
}

/// One tree with `n` programs at each measured hook, and its FUSE mount if one could be
/// made. `n == ON`: one program at inode_mkdir only, which no measured operation reaches:
/// hooks switched on, nothing to run.
struct Setup {
    n: usize,
    vfs: Arc<Vfs>,
    _rt: Arc<Runtime>,
    _links: Vec<bpfvfs_bpf::Handle>,
    mount: Option<(MountHandle, PathBuf)>,
}

const OPS: [&str; 3] = ["open_close", "stat", "create_unlink"];

const ON: usize = usize::MAX;

fn setup(obj: &[u8], n: usize, fuse: bool) -> Setup {
    let root = Cred::root();
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    let rt = Runtime::new(bpf.clone());
    let mut links = Vec::new();
    let (copies, mkdir) = if n == ON { (1, true) } else { (n, false) };
    for _ in 0..copies {
        let o = rt.load_object(obj, &LoadOpts::new("h")).unwrap();
        for (_, p) in &o.progs {
            let at_mkdir = p
                .obj
                .as_prog()
                .unwrap()
                .info()
                .attach_to
                .ends_with("inode_mkdir");
            if at_mkdir == mkdir {
                links.push(rt.attach(p, None).unwrap());
            }
        }
    }
    vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
    vfs.write_file(&root, b"/d/f", b"x").unwrap();
    let mount = fuse.then(|| {
        let dir =
            std::env::temp_dir().join(format!("bpfvfs-hook-bench-mnt-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = MountOptions {
            attr_ttl: Duration::ZERO,
            entry_ttl: Duration::ZERO,
            ..MountOptions::default()
        };
        let m = bpfvfs_fuse::mount(vfs.clone(), &dir, &opts).expect("FUSE mount");
        (m, dir)
    });
    Setup {
        n,
        vfs,
        _rt: rt,
        _links: links,
        mount,
    }
}

/// Why FUSE rows cannot run here, if they cannot.
fn fuse_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (mounting needs CAP_SYS_ADMIN)".into());
    }
    std::fs::metadata("/dev/fuse")
        .err()
        .map(|e| format!("/dev/fuse: {e}"))
}

/// One operation, in-process on the VFS or through the mount.
fn op(s: &Setup, name: &str, fuse: bool) {
    let root = Cred::root();
    match (name, fuse.then(|| s.mount.as_ref().map(|m| &m.1)).flatten()) {
        ("open_close", None) => drop(
            s.vfs
                .open(&root, None, b"/d/f", oflags::O_RDONLY, 0)
                .unwrap(),
        ),
        ("stat", None) => drop(black_box(s.vfs.stat(&root, None, b"/d/f", true).unwrap())),
        ("create_unlink", None) => {
            drop(
                s.vfs
                    .open(
                        &root,
                        None,
                        b"/d/g",
                        oflags::O_CREAT | oflags::O_WRONLY,
                        0o644,
                    )
                    .unwrap(),
            );
            s.vfs.unlink(&root, None, b"/d/g").unwrap();
        }
        ("open_close", Some(m)) => drop(std::fs::File::open(m.join("d/f")).unwrap()),
        ("stat", Some(m)) => drop(black_box(std::fs::metadata(m.join("d/f")).unwrap())),
        ("create_unlink", Some(m)) => {
            let g = m.join("d/g");
            drop(std::fs::File::create(&g).unwrap());
            std::fs::remove_file(&g).unwrap();
        }
        _ => unreachable!("{name}"),
    }
}

fn bench(c: &mut Criterion, setups: &[Setup]) {
    for fuse in [false, true] {
        if fuse && setups.iter().any(|s| s.mount.is_none()) {
            continue;
        }
        let mut g = c.benchmark_group(if fuse { "fuse_hooks" } else { "vfs_hooks" });
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(if fuse { 3 } else { 2 }));
        for name in OPS {
            for s in setups {
                let id = match s.n {
                    ON => "on".to_string(),
                    n => n.to_string(),
                };
                g.bench_with_input(BenchmarkId::new(name, id), &s.n, |b, _| {
                    b.iter(|| op(s, name, fuse))
                });
            }
        }
        g.finish();
    }
}

/// Paired medians (see the module docs): per (operation, path), ns per operation at N = 0,
/// 1, 4 and the added costs.
fn summary(setups: &[Setup]) {
    const BLOCK: usize = 64;
    let rounds: usize = std::env::var("HOOKS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!(
        "\nhook cost, median of {rounds} paired rounds of {BLOCK}-op blocks (ns per operation):"
    );
    println!(
        "{:<8} {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>13} {:>9}",
        "path",
        "operation",
        "N=0",
        "hooks on",
        "N=1",
        "N=4",
        "1st prog",
        "(after on)",
        "each 2nd-4th",
        "avg of 4"
    );
    for fuse in [false, true] {
        if fuse && setups.iter().any(|s| s.mount.is_none()) {
            continue;
        }
        let rounds = if fuse { rounds / 4 } else { rounds };
        for name in OPS {
            let mut t: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); setups.len()];
            for r in 0..rounds {
                for k in 0..setups.len() {
                    let i = (r + k) % setups.len();
                    let start = Instant::now();
                    for _ in 0..BLOCK {
                        op(&setups[i], name, fuse);
                    }
                    t[i].push(start.elapsed().as_nanos() as f64 / BLOCK as f64);
                }
            }
            let m: Vec<f64> = t.into_iter().map(median).collect();
            // Setups in order: N=0, hooks on, N=1, N=4.
            println!(
                "{:<8} {:<14} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>13.1} {:>9.1}",
                if fuse { "fuse" } else { "process" },
                name,
                m[0],
                m[1],
                m[2],
                m[3],
                m[2] - m[0],
                m[2] - m[1],
                (m[3] - m[2]) / 3.0,
                (m[3] - m[0]) / 4.0
            );
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(obj) = object() else {
        eprintln!("SKIPPED: clang not available");
        return;
    };
    // `HOOKS_BENCH_NO_FUSE=1`: in-process rows only.
    let why = match std::env::var_os("HOOKS_BENCH_NO_FUSE") {
        Some(_) => Some("HOOKS_BENCH_NO_FUSE is set".to_string()),
        None => fuse_unavailable(),
    };
    if let Some(w) = &why {
        eprintln!("FUSE rows SKIPPED: {w}");
    }
    let setups: Vec<Setup> = [0, ON, 1, 4]
        .into_iter()
        .map(|n| setup(&obj, n, why.is_none()))
        .collect();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &setups);
    summary(&setups);
    c.final_summary();
    for s in setups {
        if let Some((m, dir)) = s.mount {
            let _ = m.unmount();
            let _ = std::fs::remove_dir(dir);
        }
    }
}
