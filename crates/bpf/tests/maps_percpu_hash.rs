//! BPF_MAP_TYPE_PERCPU_HASH through the public API: create-time checks, the per-CPU value
//! layout seen by user space and by programs, flags, full map, concurrency.

use bpfvfs_bpf::maps::percpu_hash::PercpuHash;
use bpfvfs_bpf::maps::{current_cpu, nr_cpus, set_current_cpu};
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_vfs::Errno;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::{bpf, k};

fn pcpu(bpf: &Bpf, vs: u32, max: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::PercpuHash, 4, vs, max))
        .unwrap()
}
/// A user-space value: slot `c` holds `base + c` in its first word.
fn val(base: u64, vs: usize) -> Vec<u8> {
    let stride = vs.div_ceil(8) * 8;
    let mut out = vec![0u8; stride * nr_cpus()];
    for c in 0..nr_cpus() {
        let w = (base + c as u64).to_ne_bytes();
        let n = vs.min(8);
        out[c * stride..c * stride + n].copy_from_slice(&w[..n]);
    }
    out
}

#[test]
fn create_checks() {
    let bpf = bpf();
    let d = |vs, me, fl| MapDef::new(MapType::PercpuHash, 4, vs, me).with_flags(fl);
    let cases: &[(MapDef, Option<Errno>)] = &[
        (d(8, 4, 0), None),
        (d(32768, 4, 0), None),
        (d(32769, 4, 0), Some(Errno::E2BIG)),
        (d(0, 4, 0), Some(Errno::EINVAL)),
        (d(8, 0, 0), Some(Errno::EINVAL)),
        (d(8, 4, BPF_F_NUMA_NODE), Some(Errno::EINVAL)),
        (d(8, 4, BPF_F_NO_COMMON_LRU), Some(Errno::EINVAL)),
        (d(8, 4, BPF_F_NO_PREALLOC), None),
        (d(8, 4, BPF_F_ZERO_SEED), None),
        (d(8, 4, BPF_F_MMAPABLE), Some(Errno::EINVAL)),
    ];
    for (def, want) in cases {
        assert_eq!(bpf.map_create(def.clone()).err(), *want, "{def:?}");
    }
}

#[test]
fn user_layout_is_every_slot() {
    let bpf = bpf();
    for vs in [4usize, 8, 12, 16] {
        let h = pcpu(&bpf, vs as u32, 4);
        let m = h.map().unwrap();
        assert_eq!(m.value_size(), vs.div_ceil(8) * 8 * nr_cpus());
        assert_eq!(
            bpf.map_update_elem(&h, &k(1), &vec![0; vs], 0),
            Err(Errno::EINVAL),
            "one slot is not enough from user space"
        );
        bpf.map_update_elem(&h, &k(1), &val(100, vs), 0).unwrap();
        assert_eq!(bpf.map_lookup_elem(&h, &k(1)).unwrap(), val(100, vs));
        // In-place update.
        bpf.map_update_elem(&h, &k(1), &val(200, vs), BPF_EXIST)
            .unwrap();
        assert_eq!(bpf.map_lookup_elem(&h, &k(1)).unwrap(), val(200, vs));
    }
}

#[test]
fn program_side_sees_its_slot() {
    let bpf = bpf();
    let h = pcpu(&bpf, 8, 4);
    let m = h.map().unwrap().clone();
    bpf.map_update_elem(&h, &k(7), &val(1000, 8), 0).unwrap();
    let n = nr_cpus();
    for cpu in 0..n {
        let m = m.clone();
        std::thread::spawn(move || {
            set_current_cpu(cpu);
            assert_eq!(current_cpu(), cpu);
            let guard = crossbeam_epoch::pin();
            let p = m.ops().lookup_ptr(&k(7), &guard).unwrap() as *const AtomicU64;
            // SAFETY: lookup_ptr's address is valid while `guard` is pinned and 8-aligned.
            let w = unsafe { &*p };
            assert_eq!(w.load(Ordering::Relaxed), 1000 + cpu as u64);
            w.fetch_add(10, Ordering::Relaxed);
            // Program-side update writes only this slot.
            let ph = m.ops().as_any().downcast_ref::<PercpuHash>().unwrap();
            ph.update_current_cpu(&k(8), &(5u64 + cpu as u64).to_ne_bytes(), BPF_ANY)
                .unwrap();
        })
        .join()
        .unwrap();
    }
    let got = bpf.map_lookup_elem(&h, &k(7)).unwrap();
    assert_eq!(got, val(1010, 8));
    // Key 8: each CPU wrote its own slot (the first writer created it, others zero, then
    // each filled its own).
    assert_eq!(bpf.map_lookup_elem(&h, &k(8)).unwrap(), val(5, 8));
    let ph = m.ops().as_any().downcast_ref::<PercpuHash>().unwrap();
    assert_eq!(
        ph.update_current_cpu(&k(8), &[0; 8], BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        ph.update_current_cpu(&k(8), &[0; 7], BPF_ANY),
        Err(Errno::EINVAL)
    );
}

#[test]
fn flags_full_delete_iterate() {
    let bpf = bpf();
    let h = pcpu(&bpf, 8, 3);
    assert_eq!(
        bpf.map_update_elem(&h, &k(1), &val(1, 8), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    for i in 0..3 {
        bpf.map_update_elem(&h, &k(i), &val(1, 8), BPF_NOEXIST)
            .unwrap();
    }
    assert_eq!(
        bpf.map_update_elem(&h, &k(1), &val(1, 8), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        bpf.map_update_elem(&h, &k(9), &val(1, 8), BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(
        bpf.map_update_elem(&h, &k(9), &val(1, 8), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        bpf.map_update_elem(&h, &k(1), &val(1, 8), 3),
        Err(Errno::EINVAL)
    );
    bpf.map_update_elem(&h, &k(1), &val(9, 8), BPF_ANY).unwrap();
    assert_eq!(h.map().unwrap().entries().unwrap().len(), 3);
    assert_eq!(bpf.map_get_next_key(&h, Some(&k(77))).unwrap().len(), 4);
    bpf.map_delete_elem(&h, &k(1)).unwrap();
    assert_eq!(bpf.map_delete_elem(&h, &k(1)), Err(Errno::ENOENT));
    assert_eq!(bpf.map_lookup_elem(&h, &k(1)), Err(Errno::ENOENT));
    bpf.map_update_elem(&h, &k(9), &val(1, 8), BPF_ANY).unwrap();
    assert_eq!(h.map().unwrap().ops().elem_count(), 3);
    assert!(h.map().unwrap().mem_usage() > 3 * 8 * nr_cpus() as u64);
}

#[test]
fn concurrent_slot_counters() {
    // Each thread owns a slot and counts in it through program pointers while user space
    // inserts and deletes other keys: the counters add up exactly.
    let bpf = bpf();
    let h = pcpu(&bpf, 8, 1024);
    let m = h.map().unwrap().clone();
    bpf.map_update_elem(&h, &k(0), &val(0, 8), 0).unwrap();
    // Start every slot at zero.
    bpf.map_update_elem(&h, &k(0), &vec![0; 8 * nr_cpus()], 0)
        .unwrap();
    let n = nr_cpus();
    let ts: Vec<_> = (0..n)
        .map(|cpu| {
            let m = m.clone();
            std::thread::spawn(move || {
                set_current_cpu(cpu);
                for i in 0..20_000u32 {
                    let guard = crossbeam_epoch::pin();
                    let p = m.ops().lookup_ptr(&k(0), &guard).unwrap() as *const AtomicU64;
                    // SAFETY: valid while pinned; this thread is the only user of its slot.
                    unsafe { &*p }.fetch_add(1, Ordering::Relaxed);
                    let other = 1 + (i % 500) + 500 * cpu as u32;
                    if i % 2 == 0 {
                        m.update(&k(other), &vec![1; 8 * n], BPF_ANY).unwrap();
                    } else {
                        let _ = m.delete(&k(other));
                    }
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let got = bpf.map_lookup_elem(&h, &k(0)).unwrap();
    for c in 0..n {
        assert_eq!(
            u64::from_ne_bytes(got[c * 8..c * 8 + 8].try_into().unwrap()),
            20_000,
            "slot {c}"
        );
    }
    let listed = h.map().unwrap().entries().unwrap().len() as u64;
    assert_eq!(m.ops().elem_count(), listed);
}
