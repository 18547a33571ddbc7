//! BPF_MAP_TYPE_HASH against std's HashMap behind a RwLock and against dashmap, in the same
//! run: lookup and update of u32 keys with 8-byte values, at 1k and 1M entries, on one and two
//! threads.
//!
//! Keys are spread over u32 (i * 2654435761) and visited in a random permutation, so the
//! 1M-entry runs miss the caches as real lookups would. With two threads each thread does
//! `iters` operations at the same time; the reported time is wall time / iters, i.e. the cost
//! of one operation on each thread while the other thread runs too (equal to the one-thread
//! figure when scaling is perfect).
//!
//! bpfvfs variants:
//! - `bpfvfs_map_lookup`: `Map::lookup` (checks the key size, allocates the value Vec);
//! - `bpfvfs_ops_lookup`: `map.ops().lookup(key, &mut buf)` (no allocation);
//! - `bpfvfs_lookup_ptr`: the program path, `lookup_ptr` under a guard re-pinned every 64
//!   lookups (as a program run holds its RCU read section);
//! - `bpfvfs_update`: `Map::update(key, value, BPF_ANY)` of present keys (a new element
//!   replaces the old one, which is freed after the grace period).
//!
//! Run: `cargo bench -p bpfvfs-bpf --bench hashmap`.

use bpfvfs_bpf::uapi::BPF_ANY;
use bpfvfs_bpf::{Bpf, Map, MapDef, MapType};
use bpfvfs_vfs::Vfs;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

fn key_of(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761)
}

/// A random permutation of 0..n (xorshift Fisher-Yates, fixed seed).
fn permutation(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).map(key_of).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

struct Fixture {
    _bpf: Arc<Bpf>,
    map: Arc<Map>,
    std: RwLock<HashMap<u32, u64>>,
    dash: DashMap<u32, u64>,
    order: Vec<u32>,
}

fn fixture(n: u32) -> Fixture {
    let bpf = Bpf::new(Vfs::new_memfs()).unwrap();
    let h = bpf
        .map_create(MapDef::new(MapType::Hash, 4, 8, n).with_name("bench"))
        .unwrap();
    let map = h.map().unwrap().clone();
    let std = RwLock::new(HashMap::with_capacity(n as usize));
    let dash = DashMap::with_capacity(n as usize);
    for i in 0..n {
        let k = key_of(i);
        map.update(&k.to_ne_bytes(), &(i as u64).to_ne_bytes(), BPF_ANY)
            .unwrap();
        std.write().unwrap().insert(k, i as u64);
        dash.insert(k, i as u64);
    }
    Fixture {
        _bpf: bpf,
        map,
        std,
        dash,
        order: permutation(n),
    }
}

/// Run `op(thread, i)` for i in 0..iters on `threads` threads at once; wall time.
fn timed(threads: usize, iters: u64, op: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    if threads == 1 {
        let t = Instant::now();
        for i in 0..iters {
            op(0, i);
        }
        return t.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    op(t, i);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// As `timed`, with a guard re-pinned every 64 operations (a program run's read section),
/// and dropped at the end, so the epoch keeps advancing for the other benchmarks.
fn timed_pinned(
    threads: usize,
    iters: u64,
    op: &(dyn Fn(usize, u64, &crossbeam_epoch::Guard) + Sync),
) -> Duration {
    let run = |t: usize| {
        let mut guard = crossbeam_epoch::pin();
        for i in 0..iters {
            if i % 64 == 63 {
                drop(guard);
                guard = crossbeam_epoch::pin();
            }
            op(t, i, &guard);
        }
    };
    if threads == 1 {
        let start = Instant::now();
        run(0);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, run) = (&barrier, &run);
            s.spawn(move || {
                barrier.wait();
                run(t);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    for (label, n) in [("1k", 1_000u32), ("1M", 1_000_000u32)] {
        let f = fixture(n);
        let len = f.order.len() as u64;
        // Threads start at different points of the permutation.
        let key = |t: usize, i: u64| f.order[((i + t as u64 * len / 2) % len) as usize];
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("lookup/{label}/{threads}t"));
            g.sample_size(30)
                .warm_up_time(Duration::from_millis(700))
                .measurement_time(Duration::from_secs(3));
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_map_lookup"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        black_box(f.map.lookup(&key(t, i).to_ne_bytes()).unwrap());
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_ops_lookup"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        let mut buf = [0u8; 8];
                        f.map
                            .ops()
                            .lookup(&key(t, i).to_ne_bytes(), &mut buf)
                            .unwrap();
                        black_box(buf);
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_lookup_ptr"), |b| {
                b.iter_custom(|iters| {
                    timed_pinned(threads, iters, &|t, i, guard| {
                        let p = f.map.ops().lookup_ptr(&key(t, i).to_ne_bytes(), guard);
                        // SAFETY: valid while `guard` is pinned; 8-aligned value word.
                        let v = unsafe {
                            (*(p.unwrap() as *const std::sync::atomic::AtomicU64))
                                .load(std::sync::atomic::Ordering::Relaxed)
                        };
                        black_box(v);
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("std_rwlock_hashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        black_box(*f.std.read().unwrap().get(&key(t, i)).unwrap());
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("dashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        black_box(*f.dash.get(&key(t, i)).unwrap());
                    })
                })
            });
            g.finish();

            // The kernel anchor's pattern (../shared/anchors/kernel: one id looked up again
            // and again in a large map): cache-hot, so it measures the lookup path itself.
            let hot = f.order[len as usize / 3];
            let mut g = c.benchmark_group(format!("lookup_hot_key/{label}/{threads}t"));
            g.sample_size(30)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_ops_lookup"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|_, _| {
                        let mut buf = [0u8; 8];
                        f.map.ops().lookup(&hot.to_ne_bytes(), &mut buf).unwrap();
                        black_box(buf);
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_lookup_ptr"), |b| {
                b.iter_custom(|iters| {
                    timed_pinned(threads, iters, &|_, _, guard| {
                        let p = f.map.ops().lookup_ptr(&hot.to_ne_bytes(), guard);
                        black_box(p);
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("dashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|_, _| {
                        black_box(*f.dash.get(&hot).unwrap());
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("std_rwlock_hashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|_, _| {
                        black_box(*f.std.read().unwrap().get(&hot).unwrap());
                    })
                })
            });
            g.finish();

            let mut g = c.benchmark_group(format!("update/{label}/{threads}t"));
            g.sample_size(30)
                .warm_up_time(Duration::from_millis(700))
                .measurement_time(Duration::from_secs(3));
            g.bench_function(BenchmarkId::from_parameter("bpfvfs_update"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        f.map
                            .update(&key(t, i).to_ne_bytes(), &i.to_ne_bytes(), BPF_ANY)
                            .unwrap();
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("std_rwlock_hashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        f.std.write().unwrap().insert(key(t, i), i);
                    })
                })
            });
            g.bench_function(BenchmarkId::from_parameter("dashmap"), |b| {
                b.iter_custom(|iters| {
                    timed(threads, iters, &|t, i| {
                        f.dash.insert(key(t, i), i);
                    })
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
