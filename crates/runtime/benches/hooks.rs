//! Cost of VFS hooks with BPF programs attached, in-process: open+close (file_open), stat
//! (inode_getattr) and create+unlink (inode_create + inode_unlink) with 0, 1 and 4 trivial
//! JIT-compiled LSM programs attached at each of those hooks, side by side in one run.
//! Target (issue 8): ≤ 100 ns added per attached program.
//!
//! Run: `cargo bench -p bpfvfs-runtime --bench hooks`.

use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::process::Command;
use std::time::Duration;

const SRC: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
SEC("lsm/file_open") int BPF_PROG(on_open, struct file *f) { return 0; }
SEC("lsm/inode_getattr") int BPF_PROG(on_getattr, const struct path *p) { return 0; }
SEC("lsm/inode_create") int BPF_PROG(on_create, struct inode *dir, struct dentry *d, umode_t m) { return 0; }
SEC("lsm/inode_unlink") int BPF_PROG(on_unlink, struct inode *dir, struct dentry *d) { return 0; }
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

fn bench(c: &mut Criterion) {
    let Some(obj) = object() else {
        eprintln!("SKIPPED: clang not available");
        return;
    };
    let root = Cred::root();
    for n in [0usize, 1, 4] {
        let vfs = Vfs::new_memfs();
        let bpf = Bpf::new(vfs.clone()).unwrap();
        let rt = Runtime::new(bpf.clone());
        let mut links = Vec::new();
        for _ in 0..n {
            let o = rt.load_object(&obj, &LoadOpts::new("h")).unwrap();
            for (_, p) in &o.progs {
                links.push(rt.attach(p, None).unwrap());
            }
        }
        vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
        vfs.write_file(&root, b"/d/f", b"x").unwrap();
        let mut g = c.benchmark_group("vfs_hooks");
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        g.bench_with_input(BenchmarkId::new("open_close", n), &n, |b, _| {
            b.iter(|| drop(vfs.open(&root, None, b"/d/f", oflags::O_RDONLY, 0).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("stat", n), &n, |b, _| {
            b.iter(|| vfs.stat(&root, None, b"/d/f", true).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("create_unlink", n), &n, |b, _| {
            b.iter(|| {
                drop(
                    vfs.open(
                        &root,
                        None,
                        b"/d/g",
                        oflags::O_CREAT | oflags::O_WRONLY,
                        0o644,
                    )
                    .unwrap(),
                );
                vfs.unlink(&root, None, b"/d/g").unwrap();
            })
        });
        g.finish();
        drop(links);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
