//! BPF_MAP_TYPE_HASH through the public API: create-time checks, errno paths, flags, full
//! map, iteration order and restart, program pointers, concurrency.

use bpfvfs_bpf::maps::hash::HashMap;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Errno;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

mod common;
use common::{bpf, k, keys, v};

fn hash(bpf: &Bpf, max: u32, flags: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::Hash, 4, 8, max).with_flags(flags))
        .unwrap()
}

#[test]
fn create_checks() {
    let bpf = bpf();
    let d = |ks, vs, me, fl| MapDef::new(MapType::Hash, ks, vs, me).with_flags(fl);
    let cases: &[(MapDef, Option<Errno>)] = &[
        (d(4, 8, 1, 0), None),
        (d(0, 8, 1, 0), Some(Errno::EINVAL)),
        (d(4, 0, 1, 0), Some(Errno::EINVAL)),
        (d(4, 8, 0, 0), Some(Errno::EINVAL)),
        (d(1000, 8, 1, 0), None),
        (d(8, (4 << 20) - 48 - 8, 1, 0), Some(Errno::E2BIG)),
        (d(8, (4 << 20) - 49 - 8, 1, 0), None),
        (d(4, 8, 1 << 27, 0), None),
        (d(4, 8, (1 << 27) + 1, 0), Some(Errno::E2BIG)),
        (d(4, 8, u32::MAX, 0), Some(Errno::E2BIG)),
        (d(4, 8, 4, BPF_F_NO_PREALLOC), None),
        (d(4, 8, 4, BPF_F_NUMA_NODE), None),
        (d(4, 8, 4, BPF_F_ZERO_SEED), None),
        (d(4, 8, 4, BPF_F_RDONLY_PROG), None),
        (d(4, 8, 4, BPF_F_NO_COMMON_LRU), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_MMAPABLE), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_INNER_MAP), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_PRESERVE_ELEMS), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_RDONLY | BPF_F_WRONLY), Some(Errno::EINVAL)),
        (d(4, 8, 4, 1 << 20), Some(Errno::EINVAL)),
    ];
    for (def, want) in cases {
        assert_eq!(bpf.map_create(def.clone()).err(), *want, "{def:?}");
    }
}

#[test]
fn update_flags_and_errnos() {
    let bpf = bpf();
    let h = hash(&bpf, 8, 0);
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)), Err(Errno::ENOENT));
    assert_eq!(
        bpf.map_update_elem(&h, &k(1), &v(1), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    bpf.map_update_elem(&h, &k(1), &v(1), BPF_NOEXIST).unwrap();
    assert_eq!(
        bpf.map_update_elem(&h, &k(1), &v(2), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    bpf.map_update_elem(&h, &k(1), &v(3), BPF_EXIST).unwrap();
    bpf.map_update_elem(&h, &k(1), &v(4), BPF_ANY).unwrap();
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)).unwrap(), v(4));
    for bad in [3, BPF_F_LOCK, 8, 1 << 40] {
        assert_eq!(
            bpf.map_update_elem(&h, &k(1), &v(5), bad),
            Err(Errno::EINVAL)
        );
    }
    // Wrong key / value sizes.
    assert_eq!(bpf.map_lookup_elem(&h, &[1, 2]), Err(Errno::EINVAL));
    assert_eq!(bpf.map_update_elem(&h, &k(1), &[1], 0), Err(Errno::EINVAL));
    assert_eq!(bpf.map_delete_elem(&h, &[1; 5]), Err(Errno::EINVAL));
    assert_eq!(bpf.map_get_next_key(&h, Some(&[1; 3])), Err(Errno::EINVAL));
    // Delete.
    assert_eq!(bpf.map_delete_elem(&h, &k(2)), Err(Errno::ENOENT));
    bpf.map_delete_elem(&h, &k(1)).unwrap();
    assert_eq!(bpf.map_delete_elem(&h, &k(1)), Err(Errno::ENOENT));
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)), Err(Errno::ENOENT));
    // Frozen: no more writes from user space.
    bpf.map_update_elem(&h, &k(1), &v(1), 0).unwrap();
    bpf.map_freeze(&h).unwrap();
    assert_eq!(bpf.map_update_elem(&h, &k(1), &v(1), 0), Err(Errno::EPERM));
    assert_eq!(bpf.map_delete_elem(&h, &k(1)), Err(Errno::EPERM));
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)).unwrap(), v(1));
}

#[test]
fn odd_sizes() {
    let bpf = bpf();
    let h = bpf.map_create(MapDef::new(MapType::Hash, 3, 5, 4)).unwrap();
    bpf.map_update_elem(&h, &[1, 2, 3], &[9, 8, 7, 6, 5], 0)
        .unwrap();
    assert_eq!(
        bpf.map_lookup_elem(&h, &[1, 2, 3]).unwrap(),
        [9, 8, 7, 6, 5]
    );
    assert_eq!(bpf.map_get_next_key(&h, None).unwrap(), [1, 2, 3]);
    let big = bpf
        .map_create(MapDef::new(MapType::Hash, 300, 1000, 4))
        .unwrap();
    let key: Vec<u8> = (0..300).map(|i| i as u8).collect();
    let val: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
    bpf.map_update_elem(&big, &key, &val, 0).unwrap();
    assert_eq!(bpf.map_lookup_elem(&big, &key).unwrap(), val);
    let mut other = key.clone();
    other[299] ^= 1;
    assert_eq!(bpf.map_lookup_elem(&big, &other), Err(Errno::ENOENT));
}

#[test]
fn full_map_e2big() {
    let bpf = bpf();
    for flags in [0, BPF_F_NO_PREALLOC] {
        let h = hash(&bpf, 4, flags);
        for i in 0..4 {
            bpf.map_update_elem(&h, &k(i), &v(i as u64), 0).unwrap();
        }
        assert_eq!(
            bpf.map_update_elem(&h, &k(9), &v(9), BPF_ANY),
            Err(Errno::E2BIG)
        );
        assert_eq!(
            bpf.map_update_elem(&h, &k(9), &v(9), BPF_NOEXIST),
            Err(Errno::E2BIG)
        );
        // Flags are checked before the size.
        assert_eq!(
            bpf.map_update_elem(&h, &k(9), &v(9), BPF_EXIST),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            bpf.map_update_elem(&h, &k(1), &v(9), BPF_NOEXIST),
            Err(Errno::EEXIST)
        );
        // Replacing a present key is fine when full.
        bpf.map_update_elem(&h, &k(1), &v(11), BPF_ANY).unwrap();
        bpf.map_update_elem(&h, &k(2), &v(12), BPF_EXIST).unwrap();
        assert_eq!(h.map().unwrap().ops().elem_count(), 4);
        bpf.map_delete_elem(&h, &k(0)).unwrap();
        bpf.map_update_elem(&h, &k(9), &v(9), BPF_NOEXIST).unwrap();
        assert_eq!(bpf.map_update_elem(&h, &k(10), &v(9), 0), Err(Errno::E2BIG));
        let mut ks = keys(&bpf, &h);
        ks.sort();
        assert_eq!(ks, vec![1, 2, 3, 9]);
    }
}

#[test]
fn iteration_order_and_restart() {
    let bpf = bpf();
    let h = hash(&bpf, 64, BPF_F_ZERO_SEED);
    assert_eq!(bpf.map_get_next_key(&h, None), Err(Errno::ENOENT));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(3))), Err(Errno::ENOENT));
    for i in 0..40 {
        bpf.map_update_elem(&h, &k(i * 5), &v(i as u64), 0).unwrap();
    }
    let order = keys(&bpf, &h);
    assert_eq!(order.len(), 40);
    assert_eq!(
        order.iter().copied().collect::<BTreeSet<_>>(),
        (0..40).map(|i| i * 5).collect()
    );
    // Missing key: restart from the first key.
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(1))).unwrap(), k(order[0]));
    // Each key leads to the next one in the same order; the last one is the end.
    for w in order.windows(2) {
        assert_eq!(bpf.map_get_next_key(&h, Some(&k(w[0]))).unwrap(), k(w[1]));
    }
    assert_eq!(
        bpf.map_get_next_key(&h, Some(&k(*order.last().unwrap()))),
        Err(Errno::ENOENT)
    );
    // Zero seed: a second map with the same history lists keys in the same order.
    let h2 = hash(&bpf, 64, BPF_F_ZERO_SEED);
    for i in 0..40 {
        bpf.map_update_elem(&h2, &k(i * 5), &v(0), 0).unwrap();
    }
    assert_eq!(keys(&bpf, &h2), order);
    // Replacing a key moves it to the head of its bucket (as the kernel does).
    let n_buckets = h
        .map()
        .unwrap()
        .ops()
        .as_any()
        .downcast_ref::<HashMap>()
        .unwrap()
        .n_buckets();
    assert_eq!(n_buckets, 64);
    // Deleting the current key while iterating: get_next_key restarts from the start.
    let first = order[0];
    let second = bpf.map_get_next_key(&h, Some(&k(first))).unwrap();
    bpf.map_delete_elem(&h, &k(first)).unwrap();
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(first))).unwrap(), second);
    // entries() walks everything.
    assert_eq!(h.map().unwrap().entries().unwrap().len(), 39);
}

#[test]
fn mem_usage_counts_elements() {
    let bpf = bpf();
    let h = hash(&bpf, 1024, 0);
    let m = h.map().unwrap();
    let empty = m.mem_usage();
    assert!(empty >= 1024 * 8, "buckets counted: {empty}");
    for i in 0..100 {
        bpf.map_update_elem(&h, &k(i), &v(0), 0).unwrap();
    }
    let full = m.mem_usage();
    assert!(full >= empty + 100 * (4 + 8), "{empty} -> {full}");
    assert_eq!(m.ops().elem_count(), 100);
}

#[test]
fn lookup_ptr_survives_replace_and_delete() {
    let bpf = bpf();
    let h = hash(&bpf, 8, 0);
    let m = h.map().unwrap().clone();
    bpf.map_update_elem(&h, &k(1), &v(111), 0).unwrap();
    let guard = crossbeam_epoch::pin();
    let p = m.ops().lookup_ptr(&k(1), &guard).unwrap();
    assert_eq!(p as usize % 8, 0);
    // Another thread replaces and deletes the element many times while we hold the pointer.
    let m2 = m.clone();
    std::thread::spawn(move || {
        for i in 0..10_000u64 {
            m2.update(&k(1), &v(i), 0).unwrap();
            if i % 3 == 0 {
                m2.delete(&k(1)).unwrap();
            }
        }
        for _ in 0..256 {
            crossbeam_epoch::pin().flush();
        }
    })
    .join()
    .unwrap();
    // SAFETY: `p` came from lookup_ptr under `guard`, which is still pinned, so the old
    // element is not freed; its value is an 8-byte-aligned AtomicU64 word.
    let old = unsafe { (*(p as *const AtomicU64)).load(Ordering::Relaxed) };
    assert_eq!(old, 111);
    // Programs write through the pointer; user space sees it (on the live element).
    m.update(&k(1), &v(5), 0).unwrap();
    let p2 = m.ops().lookup_ptr(&k(1), &guard).unwrap();
    // SAFETY: as above, for the current element.
    unsafe { (*(p2 as *const AtomicU64)).store(42, Ordering::Relaxed) };
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)).unwrap(), v(42));
    assert!(m.ops().lookup_ptr(&k(2), &guard).is_none());
}

/// Writers on disjoint key ranges, readers everywhere: no panic, final contents and count
/// equal to what the writers did.
#[test]
fn concurrent_disjoint_writers_and_readers() {
    let bpf = bpf();
    let h = hash(&bpf, 4096, 0);
    let m = h.map().unwrap().clone();
    let writers = 4u32;
    let per = 512u32;
    let stop = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for r in 0..2 {
        let m = m.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut seen = 0u64;
            let mut i: u32 = r;
            while stop.load(Ordering::Relaxed) == 0 {
                i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let key = (i >> 8) % (writers * per);
                if let Ok(val) = m.lookup(&k(key)) {
                    // A value always belongs to its key (never another element's).
                    let val = u64::from_ne_bytes(val.try_into().unwrap());
                    assert_eq!(val >> 32, key as u64);
                    seen += 1;
                }
                if i & 63 == 0 {
                    let _ = m.entries().unwrap();
                }
            }
            seen
        }));
    }
    let ws: Vec<_> = (0..writers)
        .map(|w| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut mine = HashSet::new();
                let mut x = w as u64 + 1;
                for round in 0..20_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = w * per + (x % per as u64) as u32;
                    let val = ((key as u64) << 32) | (round & 0xffff_ffff);
                    match x % 3 {
                        0 => {
                            let r = m.delete(&k(key));
                            assert_eq!(r.is_ok(), mine.remove(&key));
                        }
                        1 => {
                            let r = m.update(&k(key), &v(val), BPF_NOEXIST);
                            assert_eq!(r.is_ok(), mine.insert(key), "{r:?}");
                        }
                        _ => {
                            m.update(&k(key), &v(val), BPF_ANY).unwrap();
                            mine.insert(key);
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = HashSet::new();
    for w in ws {
        all.extend(w.join().unwrap());
    }
    stop.store(1, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(m.ops().elem_count(), all.len() as u64);
    let listed: HashSet<u32> = keys(&bpf, &h).into_iter().collect();
    assert_eq!(listed, all);
}

/// Many threads racing to fill a map: exactly max_entries inserts succeed.
#[test]
fn concurrent_fill_is_exact() {
    let bpf = bpf();
    let h = hash(&bpf, 1000, 0);
    let m = h.map().unwrap().clone();
    let ok = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(4));
    let ts: Vec<_> = (0..4u32)
        .map(|t| {
            let (m, ok, barrier) = (m.clone(), ok.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..1000u32 {
                    match m.update(&k(t * 1000 + i), &v(0), BPF_NOEXIST) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => assert_eq!(e, Errno::E2BIG),
                    }
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), 1000);
    assert_eq!(m.ops().elem_count(), 1000);
    assert_eq!(keys(&bpf, &h).len(), 1000);
}

/// Same key hammered by writers: readers always see a whole value (old or new, never a mix).
#[test]
fn concurrent_same_key_values_not_torn() {
    let bpf = bpf();
    let h = bpf
        .map_create(MapDef::new(MapType::Hash, 4, 32, 4))
        .unwrap();
    let m = h.map().unwrap().clone();
    m.update(&k(0), &[0; 32], 0).unwrap();
    let stop = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..2u8)
        .map(|w| {
            let (m, stop) = (m.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u8;
                while stop.load(Ordering::Relaxed) == 0 {
                    i = i.wrapping_add(1);
                    m.update(&k(0), &[i ^ (w * 128); 32], 0).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..50_000 {
        let val = m.lookup(&k(0)).unwrap();
        assert!(val.iter().all(|&b| b == val[0]), "torn value {val:?}");
    }
    stop.store(1, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}
