//! Reading an exposed view file in-process (issue 9's benchmark): open + read to the end +
//! close through the Vfs of a view program exposed in a cgroup directory (one program run
//! per open: the output is generated at open and served at offsets), against the same
//! sequence on a memfs file holding the same bytes. Three sizes: "opens: N" (13 bytes, the
//! size of example (a)'s view), 3968 bytes (fits the view's first 4 KiB buffer) and 64 KiB
//! (overflows it: the view is run again with doubled buffers as the kernel's seq_file
//! retries, 6 runs per open: 4, 8, 16, 32 and 64 KiB are full — exactly full counts as
//! overflowed, as in seq_file — and 128 KiB fits). The FUSE side is the ignored test `view_read_cost_through_fuse`
//! in crates/bpfvfs/tests/cgroup_examples.rs.
//! Run: `cargo bench -p bpfvfs-runtime --bench view_read`.

use bpfvfs_bpf::Bpf;
use bpfvfs_runtime::{LoadOpts, Runtime};
use bpfvfs_vfs::{oflags, Cred, Vfs};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const SRC: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

__u64 runs;

struct loop_ctx {
	struct seq_file *seq;
};

static long one_line(__u32 i, struct loop_ctx *c)
{
	BPF_SEQ_PRINTF(c->seq, "line %058u\n", i);
	return 0;
}

static int lines(struct bpf_iter__cgroup *ctx, __u32 n)
{
	struct loop_ctx c = { .seq = ctx->meta->seq };

	__sync_fetch_and_add(&runs, 1);
	if (!ctx->cgroup)
		return 0;
	bpf_loop(n, one_line, &c, 0);
	return 0;
}

SEC("view/cgroup")
int small(struct bpf_iter__cgroup *ctx)
{
	struct cgroup *cgrp = ctx->cgroup;

	__sync_fetch_and_add(&runs, 1);
	if (!cgrp)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "opens: %06llu\n", cgrp->kn->id);
	return 0;
}

SEC("view/cgroup")
int page(struct bpf_iter__cgroup *ctx)
{
	return lines(ctx, 62);
}

SEC("view/cgroup")
int big(struct bpf_iter__cgroup *ctx)
{
	return lines(ctx, 1024);
}

char LICENSE[] SEC("license") = "GPL";
"#;

fn object() -> Option<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("bpfvfs-view-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (c, o) = (dir.join("v.bpf.c"), dir.join("v.bpf.o"));
    std::fs::write(&c, SRC).ok()?;
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/bpfvfs");
    Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-c"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
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

/// open, read in 128 KiB requests (a FUSE read's size) to the end, close; the bytes read.
fn read_all(vfs: &Vfs, root: &Cred, path: &[u8], buf: &mut [u8]) -> usize {
    let f = vfs.open(root, None, path, oflags::O_RDONLY, 0).unwrap();
    let mut off = 0;
    loop {
        let n = vfs.read(&f, buf, off as u64).unwrap();
        if n == 0 {
            return off;
        }
        off += n;
    }
}

fn bench(c: &mut Criterion) {
    let Some(obj) = object() else {
        eprintln!("SKIPPED: clang not available");
        return;
    };
    let vfs: Arc<Vfs> = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    let rt = Runtime::new(bpf.clone());
    bpfvfs_cgroup::install(&vfs, bpfvfs_cgroup::CgroupMode::Local).unwrap();
    let root = Cred::root();
    let o = rt.load_object(&obj, &LoadOpts::new("v")).unwrap();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/g", 0o755).unwrap();
    let runs_map = o
        .maps
        .iter()
        .find(|(n, _)| n.ends_with(".bss"))
        .expect(".bss")
        .1
        .clone();
    let runs = || {
        let v = runs_map.map().unwrap().lookup(&0u32.to_ne_bytes()).unwrap();
        u64::from_ne_bytes(v[..8].try_into().unwrap())
    };
    let mut buf = vec![0u8; 128 * 1024];
    let mut g = c.benchmark_group("view_read");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for name in ["small", "page", "big"] {
        let h = &o.progs.iter().find(|(n, _)| n == name).unwrap().1;
        let pin = format!("/sys/fs/bpf/{name}");
        let view = format!("/sys/fs/cgroup/g/{name}");
        bpf.obj_pin(&root, h, None, pin.as_bytes(), 0).unwrap();
        bpf.obj_pin(&root, h, None, view.as_bytes(), 0).unwrap();
        // A memfs file with the same bytes.
        let f = vfs
            .open(&root, None, view.as_bytes(), oflags::O_RDONLY, 0)
            .unwrap();
        let mut bytes = Vec::new();
        loop {
            let n = vfs.read(&f, &mut buf, bytes.len() as u64).unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        drop(f);
        let plain = format!("/plain_{name}");
        vfs.write_file(&root, plain.as_bytes(), &bytes).unwrap();
        let size = bytes.len();
        let before = runs();
        assert_eq!(read_all(&vfs, &root, view.as_bytes(), &mut buf), size);
        eprintln!(
            "{name}: {size} bytes, {} program run(s) per open",
            runs() - before
        );
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("view", size), &view, |b, p| {
            b.iter(|| read_all(&vfs, &root, p.as_bytes(), &mut buf))
        });
        g.bench_with_input(BenchmarkId::new("plain", size), &plain, |b, p| {
            b.iter(|| read_all(&vfs, &root, p.as_bytes(), &mut buf))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
