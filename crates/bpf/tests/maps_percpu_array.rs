//! BPF_MAP_TYPE_PERCPU_ARRAY through the public API.

use bpfvfs_bpf::maps::percpu_array::PercpuArray;
use bpfvfs_bpf::maps::{nr_cpus, set_current_cpu};
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Errno;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::{bpf, k};

fn arr(bpf: &Bpf, vs: u32, max: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::PercpuArray, 4, vs, max))
        .unwrap()
}
fn val(base: u8, vs: usize) -> Vec<u8> {
    let stride = vs.div_ceil(8) * 8;
    (0..stride * nr_cpus())
        .map(|i| base.wrapping_add((i / stride) as u8 * 16 + (i % stride) as u8))
        .collect()
}

#[test]
fn create_checks() {
    let bpf = bpf();
    let d = |ks, vs, me, fl| MapDef::new(MapType::PercpuArray, ks, vs, me).with_flags(fl);
    let cases: &[(MapDef, Option<Errno>)] = &[
        (d(4, 8, 4, 0), None),
        (d(8, 8, 4, 0), Some(Errno::EINVAL)),
        (d(4, 0, 4, 0), Some(Errno::EINVAL)),
        (d(4, 8, 0, 0), Some(Errno::EINVAL)),
        (d(4, 32768, 4, 0), None),
        (d(4, 32769, 4, 0), Some(Errno::E2BIG)),
        (d(4, 1 << 31, 4, 0), Some(Errno::E2BIG)),
        (d(4, 8, 4, BPF_F_MMAPABLE), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_INNER_MAP), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_PRESERVE_ELEMS), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_NUMA_NODE), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_NO_PREALLOC), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_ZERO_SEED), Some(Errno::EINVAL)),
        (d(4, 8, 4, BPF_F_RDONLY_PROG), None),
        (d(4, 8, (1 << 31) + 1, 0), Some(Errno::ENOMEM)),
    ];
    for (def, want) in cases {
        assert_eq!(bpf.map_create(def.clone()).err(), *want, "{def:?}");
    }
}

#[test]
fn elements_always_exist() {
    let bpf = bpf();
    for vs in [4usize, 8, 20] {
        let h = arr(&bpf, vs as u32, 3);
        let stride = vs.div_ceil(8) * 8;
        assert_eq!(h.map().unwrap().value_size(), stride * nr_cpus());
        assert_eq!(
            bpf.map_lookup_elem(&h, &k(2)).unwrap(),
            vec![0; stride * nr_cpus()]
        );
        assert_eq!(bpf.map_lookup_elem(&h, &k(3)), Err(Errno::ENOENT));
        bpf.map_update_elem(&h, &k(2), &val(1, vs), BPF_ANY)
            .unwrap();
        assert_eq!(bpf.map_lookup_elem(&h, &k(2)).unwrap(), val(1, vs));
        bpf.map_update_elem(&h, &k(2), &val(9, vs), BPF_EXIST)
            .unwrap();
        assert_eq!(bpf.map_lookup_elem(&h, &k(2)).unwrap(), val(9, vs));
        assert_eq!(
            bpf.map_update_elem(&h, &k(2), &val(1, vs), BPF_NOEXIST),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            bpf.map_update_elem(&h, &k(3), &val(1, vs), 0),
            Err(Errno::E2BIG)
        );
        assert_eq!(
            bpf.map_update_elem(&h, &k(2), &val(1, vs), 3),
            Err(Errno::EINVAL)
        );
        assert_eq!(bpf.map_delete_elem(&h, &k(2)), Err(Errno::EINVAL));
        assert_eq!(bpf.map_delete_elem(&h, &k(7)), Err(Errno::EINVAL));
        // The other entries are untouched.
        assert_eq!(
            bpf.map_lookup_elem(&h, &k(1)).unwrap(),
            vec![0; stride * nr_cpus()]
        );
    }
}

#[test]
fn get_next_key() {
    let bpf = bpf();
    let h = arr(&bpf, 8, 3);
    assert_eq!(bpf.map_get_next_key(&h, None).unwrap(), k(0));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(0))).unwrap(), k(1));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(1))).unwrap(), k(2));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(2))), Err(Errno::ENOENT));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(3))).unwrap(), k(0));
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(u32::MAX))).unwrap(), k(0));
    assert_eq!(h.map().unwrap().entries().unwrap().len(), 3);
}

#[test]
fn programs_count_per_slot() {
    let bpf = bpf();
    let h = arr(&bpf, 8, 4);
    let m = h.map().unwrap().clone();
    let n = nr_cpus();
    let ts: Vec<_> = (0..n)
        .map(|cpu| {
            let m = m.clone();
            std::thread::spawn(move || {
                set_current_cpu(cpu);
                let guard = crossbeam_epoch::pin();
                for i in 0..10_000u32 {
                    let p = m.ops().lookup_ptr(&k(i % 4), &guard).unwrap() as *const AtomicU64;
                    assert_eq!(p as usize % 8, 0);
                    // SAFETY: array values live as long as the map; 8-aligned word; only this
                    // thread writes its slot.
                    unsafe { &*p }.fetch_add(1, Ordering::Relaxed);
                }
                assert!(m.ops().lookup_ptr(&k(4), &guard).is_none());
                let pa = m.ops().as_any().downcast_ref::<PercpuArray>().unwrap();
                assert_eq!(pa.update_current_cpu(&k(9), &[1; 8], 0), Err(Errno::E2BIG));
                assert_eq!(
                    pa.update_current_cpu(&k(0), &[1; 8], BPF_NOEXIST),
                    Err(Errno::EEXIST)
                );
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    for i in 0..4 {
        let got = bpf.map_lookup_elem(&h, &k(i)).unwrap();
        for c in 0..n {
            assert_eq!(
                u64::from_ne_bytes(got[c * 8..c * 8 + 8].try_into().unwrap()),
                2500
            );
        }
    }
    // A program-side update writes one slot only.
    std::thread::spawn(move || {
        set_current_cpu(0);
        let pa = m.ops().as_any().downcast_ref::<PercpuArray>().unwrap();
        pa.update_current_cpu(&k(3), &7u64.to_ne_bytes(), BPF_EXIST)
            .unwrap();
    })
    .join()
    .unwrap();
    let got = bpf.map_lookup_elem(&h, &k(3)).unwrap();
    assert_eq!(u64::from_ne_bytes(got[0..8].try_into().unwrap()), 7);
    if n > 1 {
        assert_eq!(u64::from_ne_bytes(got[8..16].try_into().unwrap()), 2500);
    }
}
