//! Cost of the change-listener call sites on the VFS hot path (create + unlink, in
//! process, memfs), with the FUSE edge's listener (`bpfvfs_fuse::inval::Inval`).
//!
//! `cargo bench -p bpfvfs-fuse --bench inval`
//!
//! Three trees side by side:
//! - `none`: no listener installed (every tree without a FUSE mount): each change site is
//!   one relaxed load and a not-taken branch;
//! - `own`: the listener installed and the thread marked as one of the mount's workers, so
//!   every change is one its own request asked for and is skipped (what each FUSE request
//!   pays);
//! - `foreign`: the listener installed, the thread unmarked (the control socket, in-process
//!   callers): every change is queued to the notifier thread, whose sink here discards.
//!
//! A criterion sample is the median per-operation time of 32-operation blocks (the machine
//! is shared; preempted blocks are outliers). The ratios are measured paired afterwards:
//! rounds of one block per tree, the starting tree rotating, median of `own/none` and
//! `foreign/none` over the rounds. `INVAL_BENCH_SAME=1` makes all three trees `none`: the
//! method's noise floor.

use bpfvfs_fuse::inval::{Inval, KnownNodes, Sink};
use bpfvfs_vfs::{changes, oflags, Cred, Origin, Vfs};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NEW: &[u8] = b"/usr/share/doc/new";
const BLOCK: usize = 32;

struct Discard;
impl Sink for Discard {
    fn inval_entry(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn delete(&self, _: u64, _: u64, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn inval_inode(&self, _: u64, _: i64, _: i64) -> std::io::Result<()> {
        Ok(())
    }
}

struct AllKnown;
impl KnownNodes for AllKnown {
    fn nodeid_of(&self, ino: u64) -> u64 {
        ino
    }
    fn known(&self, _: u64) -> bool {
        true
    }
}

struct Tree {
    vfs: Arc<Vfs>,
    /// The origin this tree's operations run under (None: unmarked thread).
    origin: Option<Origin>,
    inval: Option<Arc<Inval>>,
}

fn tree(mode: &str) -> Tree {
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    for d in ["/usr", "/usr/share", "/usr/share/doc"] {
        vfs.mkdir(&root, None, d.as_bytes(), 0o755).unwrap();
    }
    for i in 0..1000 {
        vfs.write_file(&root, format!("/usr/share/doc/f{i}").as_bytes(), b"")
            .unwrap();
    }
    let same = std::env::var_os("INVAL_BENCH_SAME").is_some();
    if mode == "none" || same {
        return Tree {
            vfs,
            origin: None,
            inval: None,
        };
    }
    let origin = Origin::new();
    let inval = Inval::start(origin, Arc::new(AllKnown), Discard).unwrap();
    vfs.add_change_listener(inval.clone());
    Tree {
        vfs,
        origin: (mode == "own").then_some(origin),
        inval: Some(inval),
    }
}

fn create_unlink(t: &Tree, cred: &Cred) {
    changes::set_origin(t.origin);
    let f = t
        .vfs
        .open(
            cred,
            None,
            NEW,
            oflags::O_CREAT | oflags::O_EXCL | oflags::O_WRONLY,
            0o644,
        )
        .unwrap();
    drop(black_box(f));
    t.vfs.unlink(cred, None, NEW).unwrap();
    changes::set_origin(None);
}

/// Median per-op time of `BLOCK`-op blocks, `iters` ops in all.
fn timed(t: &Tree, cred: &Cred, iters: u64) -> Duration {
    let blocks = iters.div_ceil(BLOCK as u64).max(1);
    let mut per: Vec<Duration> = (0..blocks)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..BLOCK {
                create_unlink(t, cred);
            }
            s.elapsed() / BLOCK as u32
        })
        .collect();
    per.sort();
    per[per.len() / 2] * iters as u32
}

fn bench(c: &mut Criterion) {
    let cred = Cred::root();
    let modes = ["none", "own", "foreign"];
    let trees: Vec<Tree> = modes.iter().map(|m| tree(m)).collect();
    let mut g = c.benchmark_group("create_unlink");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (m, t) in modes.iter().zip(&trees) {
        g.bench_function(*m, |b| b.iter_custom(|n| timed(t, &cred, n)));
    }
    g.finish();

    // Paired ratios.
    let mut own = Vec::new();
    let mut foreign = Vec::new();
    let end = Instant::now() + Duration::from_secs(4);
    let mut r = 0usize;
    while Instant::now() < end {
        let mut ns = [0f64; 3];
        for k in 0..3 {
            let i = (r + k) % 3;
            ns[i] = timed(&trees[i], &cred, BLOCK as u64).as_nanos() as f64 / BLOCK as f64;
        }
        own.push(ns[1] / ns[0]);
        foreign.push(ns[2] / ns[0]);
        r += 1;
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "paired over {r} rounds: own/none {:.3}, foreign/none {:.3}",
        med(&mut own),
        med(&mut foreign)
    );
    for (m, t) in modes.iter().zip(&trees) {
        if let Some(i) = &t.inval {
            let s = i.stats();
            println!(
                "{m}: skipped {} queued {} dropped {} sent {}",
                s.skipped, s.queued, s.dropped, s.sent
            );
        }
    }
    for t in &trees {
        if let Some(i) = &t.inval {
            i.stop(Duration::from_secs(2));
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
