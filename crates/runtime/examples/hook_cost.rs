//! Instruction-count companion of `benches/hooks.rs`: runs one operation ITERS times with N
//! trivial JIT-compiled LSM programs attached, for `valgrind --tool=callgrind` (compare the
//! totals of two ITERS values to get instructions per operation; repeatable where timings
//! are not).
//!
//! Run: `cargo run --release -p bpfvfs-runtime --example hook_cost -- OP N ITERS`
//! with OP one of open_close, stat, create_unlink (programs at file_open, inode_getattr,
//! inode_create and inode_unlink, as in the bench).

use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};
use std::process::Command;

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

fn object() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-hook-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (c, o) = (dir.join("h.bpf.c"), dir.join("h.bpf.o"));
    std::fs::write(&c, SRC).expect("write source");
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/bpfvfs");
    let ok = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!("-I{inc}"))
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .expect("clang")
        .success();
    assert!(ok, "clang failed");
    let bytes = std::fs::read(&o).expect("object");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: hook_cost open_close|stat|create_unlink N ITERS");
        std::process::exit(2);
    }
    let (op, n, iters): (&str, usize, u64) = (
        &args[1],
        args[2].parse().expect("N"),
        args[3].parse().expect("ITERS"),
    );
    let root = Cred::root();
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).expect("bpf");
    let rt = Runtime::new(bpf);
    let obj = object();
    let mut links = Vec::new();
    for _ in 0..n {
        let o = rt.load_object(&obj, &LoadOpts::new("h")).expect("load");
        // `HOOK_COST_ONLY=SECTION_SUFFIX` (e.g. inode_getattr): attach only that program, so
        // the other operations measure hooks switched on with nothing to run.
        let only = std::env::var("HOOK_COST_ONLY").ok();
        for (_, p) in &o.progs {
            let sec = p
                .obj
                .as_prog()
                .map(|p| p.info().attach_to.clone())
                .unwrap_or_default();
            if only.as_ref().is_some_and(|o| !sec.ends_with(o.as_str())) {
                continue;
            }
            links.push(rt.attach(p, None).expect("attach"));
        }
    }
    vfs.mkdir(&root, None, b"/d", 0o755).expect("mkdir");
    vfs.write_file(&root, b"/d/f", b"x").expect("write");
    for _ in 0..iters {
        match op {
            "open_close" => drop(
                vfs.open(&root, None, b"/d/f", oflags::O_RDONLY, 0)
                    .expect("open"),
            ),
            "stat" => drop(vfs.stat(&root, None, b"/d/f", true).expect("stat")),
            "create_unlink" => {
                drop(
                    vfs.open(
                        &root,
                        None,
                        b"/d/g",
                        oflags::O_CREAT | oflags::O_WRONLY,
                        0o644,
                    )
                    .expect("create"),
                );
                vfs.unlink(&root, None, b"/d/g").expect("unlink");
            }
            _ => panic!("unknown op {op}"),
        }
    }
    drop(links);
}
