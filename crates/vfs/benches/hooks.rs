//! Cost of the security/tracing hook call sites (issue 8), in process, memfs.
//!
//! `cargo bench -p bpfvfs-vfs --bench hooks`
//!
//! Each operation is measured on three trees side by side:
//! - `none`: no hooks installed (the state of every tree that never loads an LSM/tracing
//!   program);
//! - `off`: a no-op [`VfsHooks`] installed but switched off ([`Vfs::set_hooks_enabled`]
//!   false) — each call site is one relaxed load and a not-taken branch; must match `none`;
//! - `on`: the no-op hooks switched on: every hook and trace point is called (dynamic
//!   dispatch to empty bodies), and `stat` takes a counted walk because `inode_getattr`
//!   needs the path.
//!
//! The machine is shared and loaded, so a criterion sample is the median per-operation
//! time of 32-operation blocks (a block cut by preemption is an outlier, not an average).
//! Times of separate benchmarks are still taken at different moments; the ratios are
//! measured paired after them (`ratios`, printed): rounds of one block per tree, the
//! starting tree rotating, median over rounds of `off/none` and `on/none`.
//! `HOOKS_BENCH_SAME=1` makes all three trees `none`: a control whose ratios show the
//! method's noise floor.
//!
//! Operations (root credentials, a 4-component path in a directory of 1000 entries):
//! - `open_close`: open(O_RDONLY) of an existing file, then close (drop);
//! - `stat`: `Vfs::stat` of the same file;
//! - `create_unlink`: open(O_CREAT|O_EXCL|O_WRONLY) of a new name, close, unlink.

use bpfvfs_vfs::{oflags, Cred, Vfs, VfsHooks};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE: &[u8] = b"/usr/share/doc/README";
const NEW: &[u8] = b"/usr/share/doc/new";

struct NoOp;
impl VfsHooks for NoOp {}

fn tree(mode: &str) -> Arc<Vfs> {
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    for d in ["/usr", "/usr/share", "/usr/share/doc"] {
        vfs.mkdir(&root, None, d.as_bytes(), 0o755).unwrap();
    }
    vfs.write_file(&root, FILE, b"x").unwrap();
    for i in 0..1000 {
        vfs.write_file(&root, format!("/usr/share/doc/f{i}").as_bytes(), b"")
            .unwrap();
    }
    match mode {
        "none" => {}
        "off" => vfs.set_hooks(Arc::new(NoOp)).unwrap(),
        "on" => {
            vfs.set_hooks(Arc::new(NoOp)).unwrap();
            vfs.set_hooks_enabled(true);
        }
        _ => unreachable!(),
    }
    vfs
}

const MODES: [&str; 3] = ["none", "off", "on"];

/// `iters` runs of `op` on `vfs` in blocks of 32; `iters` times the median per-operation
/// time of the blocks: on a loaded machine a block cut by preemption is an outlier, not
/// an average.
fn blocks(vfs: &Vfs, iters: u64, op: &dyn Fn(&Vfs)) -> Duration {
    const BLOCK: u64 = 32;
    let mut per_op: Vec<f64> = Vec::with_capacity((iters / BLOCK + 1) as usize);
    let mut done = 0u64;
    while done < iters {
        let n = BLOCK.min(iters - done);
        let t0 = Instant::now();
        for _ in 0..n {
            op(vfs);
        }
        per_op.push(t0.elapsed().as_nanos() as f64 / n as f64);
        done += n;
    }
    per_op.sort_by(f64::total_cmp);
    let median = per_op[per_op.len() / 2];
    Duration::from_nanos((median * iters as f64) as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Paired ratios: rounds of one 32-operation block per tree (the starting tree rotating),
/// for about `secs` seconds; the median over rounds of `off / none` and `on / none`, so
/// that load changing over time (a shared machine) cancels out.
fn paired(trees: &[Arc<Vfs>], op: &dyn Fn(&Vfs), secs: f64) -> (f64, f64, f64) {
    const BLOCK: u32 = 32;
    let (mut r_off, mut r_on, mut t_none) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    let mut round = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        let mut t = [0f64; 3];
        for k in 0..3 {
            let i = (k + round) % 3;
            let t0 = Instant::now();
            for _ in 0..BLOCK {
                op(&trees[i]);
            }
            t[i] = t0.elapsed().as_nanos() as f64 / f64::from(BLOCK);
        }
        r_off.push(t[1] / t[0]);
        r_on.push(t[2] / t[0]);
        t_none.push(t[0]);
        round += 1;
    }
    (median(t_none), median(r_off), median(r_on))
}

type Op = (&'static str, &'static dyn Fn(&Vfs));

const OPS: [Op; 3] = [
    ("open_close", &|vfs: &Vfs| {
        drop(black_box(
            vfs.open(&Cred::root(), None, black_box(FILE), oflags::O_RDONLY, 0)
                .unwrap(),
        ))
    }),
    ("stat", &|vfs: &Vfs| {
        black_box(
            vfs.stat(&Cred::root(), None, black_box(FILE), true)
                .unwrap(),
        );
    }),
    ("create_unlink", &|vfs: &Vfs| {
        let root = Cred::root();
        let f = vfs
            .open(
                &root,
                None,
                black_box(NEW),
                oflags::O_CREAT | oflags::O_EXCL | oflags::O_WRONLY,
                0o644,
            )
            .unwrap();
        drop(f);
        vfs.unlink(&root, None, NEW).unwrap();
    }),
];

fn trees() -> Vec<Arc<Vfs>> {
    let same = std::env::var_os("HOOKS_BENCH_SAME").is_some();
    MODES
        .iter()
        .map(|m| tree(if same { "none" } else { m }))
        .collect()
}

fn bench(c: &mut Criterion) {
    let trees = trees();
    for (name, op) in OPS {
        let mut g = c.benchmark_group(format!("hooks/{name}"));
        for (i, m) in MODES.iter().enumerate() {
            g.bench_function(*m, |b| b.iter_custom(|iters| blocks(&trees[i], iters, op)));
        }
        g.finish();
    }
}

/// Not a criterion measurement: the paired ratios, printed after the benchmarks.
fn ratios(_: &mut Criterion) {
    let trees = trees();
    println!("\npaired (median over rounds of interleaved 32-op blocks):");
    println!(
        "{:<14} {:>10} {:>10} {:>10}",
        "op", "none ns", "off/none", "on/none"
    );
    for (name, op) in OPS {
        let (none, off, on) = paired(&trees, op, 3.0);
        println!("{name:<14} {none:>10.1} {off:>10.3} {on:>10.3}");
    }
}

criterion_group!(benches, bench, ratios);
criterion_main!(benches);
