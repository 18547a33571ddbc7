//! Path-walk benchmarks: a cached 5-component path, one thread and two threads.
//!
//! `cargo bench -p bpfvfs-vfs --bench lookup`
//! - `resolve/*`: `Vfs::resolve`, which returns a counted `PathRef` (dentry + mount refs).
//! - `lookup/*`: `Vfs::with_resolved`, the lockless walk reading the inode under the epoch
//!   guard with no reference taken (what `stat` and `access` use).
//! - `*/2threads`: wall time for 2 x N walks run concurrently on two threads, reported per
//!   walk, each thread on its own leaf file in the same directories; the throughput scaling
//!   is `1thread / 2threads` (target >= 1.7x). Target for `1thread`: <= 200 ns median.
//! - `stat/1thread`: `Vfs::stat` (walk + getattr).

use bpfvfs_vfs::{Cred, Vfs, LOOKUP_FOLLOW};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PATH: &[u8] = b"/usr/share/doc/bpfvfs/README";
const PATH1: &[u8] = b"/usr/share/doc/bpfvfs/README1";

fn tree() -> Arc<Vfs> {
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    for d in [
        "/usr",
        "/usr/share",
        "/usr/share/doc",
        "/usr/share/doc/bpfvfs",
    ] {
        vfs.mkdir(&root, None, d.as_bytes(), 0o755).unwrap();
    }
    vfs.write_file(&root, PATH, b"x").unwrap();
    vfs.write_file(&root, PATH1, b"x").unwrap();
    // Siblings so the hash is not trivially empty.
    for i in 0..1000 {
        vfs.write_file(&root, format!("/usr/share/doc/f{i}").as_bytes(), b"")
            .unwrap();
    }
    vfs
}

/// Run `op` `iters` times on each of two threads at once; time per operation.
fn two_threads(vfs: &Arc<Vfs>, iters: u64, op: fn(&Vfs, &Cred, &[u8])) -> Duration {
    let barrier = Arc::new(Barrier::new(3));
    let hs: Vec<_> = (0..2)
        .map(|t| {
            let vfs = vfs.clone();
            let barrier = barrier.clone();
            let path: &'static [u8] = if t == 0 { PATH } else { PATH1 };
            std::thread::spawn(move || {
                let user = Cred::user(1000, 1000);
                barrier.wait();
                for _ in 0..iters {
                    op(&vfs, &user, black_box(path));
                }
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed() / 2
}

/// Calibration: the same harness around work that shares nothing (a hash loop), to show how
/// much two-thread scaling this machine gives at all while the benchmark runs.
fn spin_op(_vfs: &Vfs, _user: &Cred, path: &[u8]) {
    let mut h = 0u64;
    for _ in 0..20 {
        for &b in path {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    black_box(h);
}

fn resolve_op(vfs: &Vfs, user: &Cred, path: &[u8]) {
    black_box(vfs.resolve(user, None, path, LOOKUP_FOLLOW).unwrap());
}

fn lookup_op(vfs: &Vfs, user: &Cred, path: &[u8]) {
    black_box(
        vfs.with_resolved(user, None, path, LOOKUP_FOLLOW, |i| i.ino())
            .unwrap(),
    );
}

fn bench(c: &mut Criterion) {
    let vfs = tree();
    let user = Cred::user(1000, 1000);
    for (name, op) in [
        ("calibrate", spin_op as fn(&Vfs, &Cred, &[u8])),
        ("resolve", resolve_op),
        ("lookup", lookup_op),
    ] {
        let mut g = c.benchmark_group(format!("{name}/5comp"));
        g.bench_function("1thread", |b| b.iter(|| op(&vfs, &user, black_box(PATH))));
        g.bench_function("2threads", |b| {
            b.iter_custom(|iters| two_threads(&vfs, iters, op))
        });
        g.finish();
    }
    c.bench_function("stat/5comp/1thread", |b| {
        b.iter(|| black_box(vfs.stat(&user, None, black_box(PATH), true).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
