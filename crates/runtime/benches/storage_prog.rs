//! bpf_inode_storage_get from a JIT-compiled program: ns per get (cache hit on an existing
//! element, a miss that creates nothing, and a create followed by a delete), for each
//! storage layout, measured the way the
//! kernel anchor is (../shared/anchors/kernel: 1024 gets inside one program run, time per
//! get). Run: `cargo bench -p bpfvfs-runtime --bench storage_prog`.

use bpfvfs_bpf::maps::inode_storage::StorageLayout;
use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{HookArg, LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::process::Command;
use std::time::Duration;

const GETS: u64 = 1024;

const SRC: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
struct { __uint(type, BPF_MAP_TYPE_INODE_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u64); } st SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_INODE_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u64); } empty SEC(".maps");
struct ctx { struct inode *inode; __u64 sum; };
static int get_hit(__u32 i, struct ctx *c)
{
	__u64 *v = bpf_inode_storage_get(&st, c->inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		c->sum += *v;
	return 0;
}
static int get_miss(__u32 i, struct ctx *c)
{
	__u64 *v = bpf_inode_storage_get(&empty, c->inode, 0, 0);
	if (v)
		c->sum += *v;
	return 0;
}
SEC("lsm/inode_permission") int BPF_PROG(hit, struct inode *inode, int mask)
{
	struct ctx c = { .inode = inode };
	bpf_loop(1024, get_hit, &c, 0);
	return 0;
}
SEC("lsm/inode_permission") int BPF_PROG(miss, struct inode *inode, int mask)
{
	struct ctx c = { .inode = inode };
	bpf_loop(1024, get_miss, &c, 0);
	return 0;
}
static int create_delete(__u32 i, struct ctx *c)
{
	__u64 *v = bpf_inode_storage_get(&empty, c->inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		c->sum += *v;
	bpf_inode_storage_delete(&empty, c->inode);
	return 0;
}
SEC("lsm/inode_permission") int BPF_PROG(create, struct inode *inode, int mask)
{
	struct ctx c = { .inode = inode };
	bpf_loop(1024, create_delete, &c, 0);
	return 0;
}
static int nothing(__u32 i, struct ctx *c) { c->sum += i; return 0; }
SEC("lsm/inode_permission") int BPF_PROG(base, struct inode *inode, int mask)
{
	struct ctx c = { .inode = inode };
	bpf_loop(1024, nothing, &c, 0);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;

fn object() -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-storage-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (c, o) = (dir.join("s.bpf.c"), dir.join("s.bpf.o"));
    std::fs::write(&c, SRC).ok()?;
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/bpfvfs");
    Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!("-I{inc}"))
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .ok()?
        .success()
        .then(|| std::fs::read(&o).ok())
        .flatten()
}

fn bench(c: &mut Criterion) {
    let Some(obj) = object() else {
        eprintln!("SKIPPED: clang not available");
        return;
    };
    let mut g = c.benchmark_group("inode_storage_get_from_program");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(GETS));
    for layout in [
        StorageLayout::InodeField,
        StorageLayout::Addons,
        StorageLayout::Blob,
        StorageLayout::HashTable,
    ] {
        let vfs = Vfs::new_memfs();
        let bpf = Bpf::new_with_inode_storage(vfs.clone(), layout).unwrap();
        let rt = Runtime::new(bpf);
        let o = rt.load_object(&obj, &LoadOpts::new("s")).unwrap();
        let prog = |n: &str| {
            o.progs
                .iter()
                .find(|(p, _)| p == n)
                .unwrap()
                .1
                .obj
                .as_prog()
                .unwrap()
                .clone()
        };
        let root = Cred::root();
        let f = vfs
            .open(&root, None, b"/f", oflags::O_CREAT | oflags::O_RDWR, 0o644)
            .unwrap();
        let inode = f.inode().clone();
        for name in ["base", "hit", "miss", "create"] {
            let p = prog(name);
            // The first run of "hit" creates the element; later ones hit the cache.
            rt.run_with_args(&p, &[HookArg::Inode(&inode), HookArg::Scalar(4)])
                .unwrap();
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/{}", layout.name()), GETS),
                &p,
                |b, p| {
                    b.iter(|| {
                        rt.run_with_args(p, &[HookArg::Inode(&inode), HookArg::Scalar(4)])
                            .unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
