//! Path-walk benchmarks: a cached 5-component path, one thread and two threads.
//!
//! `cargo bench -p bpfvfs-vfs --bench lookup`
//! - `resolve/5comp/1thread`: time per resolution on one thread (target <= 200 ns median).
//! - `resolve/5comp/2threads`: wall time for 2 x N resolutions run concurrently on two threads,
//!   reported per resolution; throughput scaling = 1thread / 2threads (target >= 1.7x).
//! - `resolve/5comp/locked`: the locked walk alone, for comparison (forced by a rename
//!   sequence that never settles is not possible from outside, so this measures a path whose
//!   last component misses the dcache fast path: a lookup of a missing name).

use bpfvfs_vfs::{Cred, Vfs, LOOKUP_FOLLOW};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn tree() -> Arc<Vfs> {
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    vfs.mkdir(&root, None, b"/usr", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/usr/share", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/usr/share/doc", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/usr/share/doc/bpfvfs", 0o755)
        .unwrap();
    vfs.write_file(&root, b"/usr/share/doc/bpfvfs/README", b"x")
        .unwrap();
    vfs.write_file(&root, b"/usr/share/doc/bpfvfs/README1", b"x")
        .unwrap();
    // Some siblings so the hash is not trivially empty.
    for i in 0..1000 {
        vfs.write_file(&root, format!("/usr/share/doc/f{i}").as_bytes(), b"")
            .unwrap();
    }
    vfs
}

const PATH: &[u8] = b"/usr/share/doc/bpfvfs/README";
const PATH1: &[u8] = b"/usr/share/doc/bpfvfs/README1";

fn bench(c: &mut Criterion) {
    let vfs = tree();
    let user = Cred::user(1000, 1000);
    let mut g = c.benchmark_group("resolve/5comp");
    g.bench_function("1thread", |b| {
        b.iter(|| {
            black_box(
                vfs.resolve(&user, None, black_box(PATH), LOOKUP_FOLLOW)
                    .unwrap(),
            )
        })
    });
    g.bench_function("2threads", |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(3));
            let hs: Vec<_> = (0..2)
                .map(|t| {
                    let vfs = vfs.clone();
                    let user = user.clone();
                    let barrier = barrier.clone();
                    // Each thread its own file in the same directories (shared path, own leaf).
                    let path: &'static [u8] = if t == 0 { PATH } else { PATH1 };
                    std::thread::spawn(move || {
                        barrier.wait();
                        for _ in 0..iters {
                            black_box(
                                vfs.resolve(&user, None, black_box(path), LOOKUP_FOLLOW)
                                    .unwrap(),
                            );
                        }
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            for h in hs {
                h.join().unwrap();
            }
            // Per resolution: total work is 2 * iters.
            t.elapsed() / 2
        })
    });
    g.bench_function("stat", |b| {
        b.iter(|| black_box(vfs.stat(&user, None, black_box(PATH), true).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
