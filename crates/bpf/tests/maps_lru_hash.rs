//! BPF_MAP_TYPE_LRU_HASH through the public API: create-time checks, eviction instead of
//! E2BIG, second chance for referenced elements, per-CPU lists, concurrency.

use bpfvfs_bpf::maps::lru_hash::LruHash;
use bpfvfs_bpf::maps::{nr_cpus, set_current_cpu, ENOTSUPP};
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Errno;
use std::collections::HashSet;

mod common;
use common::{bpf, k, v};

fn keys(bpf: &Bpf, h: &Handle) -> HashSet<u32> {
    common::keys(bpf, h).into_iter().collect()
}

fn lru(bpf: &Bpf, max: u32, flags: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::LruHash, 4, 8, max).with_flags(flags))
        .unwrap()
}

#[test]
fn create_checks() {
    let bpf = bpf();
    let d = |ks, vs, me, fl| MapDef::new(MapType::LruHash, ks, vs, me).with_flags(fl);
    let cases: &[(MapDef, Option<Errno>)] = &[
        (d(4, 8, 4, 0), None),
        (d(4, 8, 4, BPF_F_NO_PREALLOC), Some(ENOTSUPP)),
        (d(4, 8, 4, BPF_F_NO_COMMON_LRU), None),
        (d(4, 8, 4, BPF_F_NUMA_NODE), None),
        (
            d(4, 8, 4, BPF_F_NUMA_NODE | BPF_F_NO_COMMON_LRU),
            Some(Errno::EINVAL),
        ),
        (d(4, 8, 4, BPF_F_ZERO_SEED), None),
        (d(4, 8, 4, BPF_F_MMAPABLE), Some(Errno::EINVAL)),
        (d(0, 8, 4, 0), Some(Errno::EINVAL)),
        (d(4, 0, 4, 0), Some(Errno::EINVAL)),
        (d(4, 8, 0, 0), Some(Errno::EINVAL)),
        (d(8, (4 << 20) - 48 - 8, 1, 0), Some(Errno::E2BIG)),
        (d(4, 8, (1 << 27) + 1, 0), Some(Errno::E2BIG)),
    ];
    for (def, want) in cases {
        assert_eq!(bpf.map_create(def.clone()).err(), *want, "{def:?}");
    }
    assert_eq!(ENOTSUPP.0, 524);
}

#[test]
fn full_map_evicts_instead_of_e2big() {
    let bpf = bpf();
    let h = lru(&bpf, 8, 0);
    for i in 0..100u32 {
        bpf.map_update_elem(&h, &k(i), &v(i as u64), BPF_ANY)
            .unwrap();
        // The key just inserted is always there, and the map never exceeds max_entries.
        assert_eq!(bpf.map_lookup_elem(&h, &k(i)).unwrap(), v(i as u64));
        assert!(h.map().unwrap().ops().elem_count() <= 8);
    }
    assert_eq!(h.map().unwrap().ops().elem_count(), 8);
    assert_eq!(keys(&bpf, &h).len(), 8);
    // Flags errors are the hash map's.
    assert_eq!(
        bpf.map_update_elem(&h, &k(99), &v(0), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        bpf.map_update_elem(&h, &k(1000), &v(0), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    assert_eq!(bpf.map_update_elem(&h, &k(1), &v(0), 3), Err(Errno::EINVAL));
    assert_eq!(bpf.map_delete_elem(&h, &k(1000)), Err(Errno::ENOENT));
}

#[test]
fn not_full_no_eviction() {
    let bpf = bpf();
    let h = lru(&bpf, 16, 0);
    for i in 0..16 {
        bpf.map_update_elem(&h, &k(i), &v(0), 0).unwrap();
    }
    assert_eq!(keys(&bpf, &h), (0..16).collect());
    // Replacing keys of a non-full map keeps every key.
    bpf.map_delete_elem(&h, &k(0)).unwrap();
    for _ in 0..5 {
        for i in 1..16 {
            bpf.map_update_elem(&h, &k(i), &v(1), BPF_EXIST).unwrap();
        }
    }
    assert_eq!(keys(&bpf, &h), (1..16).collect());
}

#[test]
fn failed_update_on_full_map_still_evicts() {
    // As the kernel (checked by the differential test): the node is taken before the flags
    // are checked.
    let bpf = bpf();
    let h = lru(&bpf, 4, 0);
    for i in 0..4 {
        bpf.map_update_elem(&h, &k(i), &v(0), 0).unwrap();
    }
    assert_eq!(
        bpf.map_update_elem(&h, &k(50), &v(0), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    assert_eq!(keys(&bpf, &h).len(), 3);
}

#[test]
fn referenced_elements_get_a_second_chance() {
    let bpf = bpf();
    let h = lru(&bpf, 4, 0);
    let m = h.map().unwrap().clone();
    for i in 0..4 {
        bpf.map_update_elem(&h, &k(i), &v(i as u64), 0).unwrap();
    }
    // A program touches key 0 and key 2 before each insertion; they survive every eviction.
    for new in 10..30u32 {
        let guard = crossbeam_epoch::pin();
        assert!(m.ops().lookup_ptr(&k(0), &guard).is_some());
        assert!(m.ops().lookup_ptr(&k(2), &guard).is_some());
        drop(guard);
        bpf.map_update_elem(&h, &k(new), &v(0), 0).unwrap();
        let ks = keys(&bpf, &h);
        assert!(
            ks.contains(&0) && ks.contains(&2) && ks.contains(&new),
            "{ks:?}"
        );
        assert_eq!(ks.len(), 4);
    }
    // User-space lookups do not protect: key 0 untouched by programs is evicted eventually.
    for new in 100..110u32 {
        bpf.map_lookup_elem(&h, &k(0)).unwrap_or_default();
        bpf.map_update_elem(&h, &k(new), &v(0), 0).unwrap();
    }
    assert!(!keys(&bpf, &h).contains(&0));
    assert!(m
        .ops()
        .as_any()
        .downcast_ref::<LruHash>()
        .is_some_and(|l| l.capacity() == 4));
}

#[test]
fn no_common_lru_per_cpu_share() {
    let bpf = bpf();
    let n = nr_cpus() as u32;
    let h = lru(&bpf, 3, BPF_F_NO_COMMON_LRU);
    let m = h.map().unwrap().clone();
    let cap = m
        .ops()
        .as_any()
        .downcast_ref::<LruHash>()
        .unwrap()
        .capacity();
    assert_eq!(cap, 3u32.div_ceil(n) * n);
    let share = cap / n;
    // One "CPU" alone can hold only its share; it evicts its own elements.
    let m2 = m.clone();
    std::thread::spawn(move || {
        set_current_cpu(0);
        for i in 0..50u32 {
            m2.update(&k(i), &v(0), 0).unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(m.ops().elem_count(), share as u64);
    // Every CPU together fills the whole map.
    for cpu in 0..n {
        let m2 = m.clone();
        std::thread::spawn(move || {
            set_current_cpu(cpu as usize);
            for i in 0..50u32 {
                m2.update(&k(1000 * (cpu + 1) + i), &v(0), 0).unwrap();
            }
        })
        .join()
        .unwrap();
    }
    assert_eq!(m.ops().elem_count(), cap as u64);
}

#[test]
fn concurrent_churn() {
    let bpf = bpf();
    let h = lru(&bpf, 256, 0);
    let m = h.map().unwrap().clone();
    let ts: Vec<_> = (0..4u32)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut x = t as u64 * 7 + 1;
                for _ in 0..30_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = (x % 2048) as u32;
                    match x % 5 {
                        0 => {
                            let _ = m.delete(&k(key));
                        }
                        1 => {
                            let guard = crossbeam_epoch::pin();
                            if let Some(p) = m.ops().lookup_ptr(&k(key), &guard) {
                                // SAFETY: valid while `guard` is pinned; 8-aligned word.
                                let w = unsafe {
                                    (*(p as *const std::sync::atomic::AtomicU64))
                                        .load(std::sync::atomic::Ordering::Relaxed)
                                };
                                assert_eq!(w >> 32, key as u64);
                            }
                        }
                        _ => {
                            match m.update(&k(key), &v(((key as u64) << 32) | t as u64), BPF_ANY) {
                                Ok(()) | Err(Errno::ENOMEM) => {}
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let n = keys(&bpf, &h).len() as u64;
    assert_eq!(m.ops().elem_count(), n);
    assert!(n <= 256);
}
