//! Cgroup local storage (BPF_MAP_TYPE_CGRP_STORAGE) on the shared local-storage core:
//! create rules, user-space operations and their errnos, the helper-side get/delete,
//! elements freed when their group is removed, map free, and group removal racing updates.

use bpfvfs_bpf::maps::cgrp_storage::{
    cgrp_storage_delete, cgrp_storage_get, domain, CgrpStorageMap,
};
use bpfvfs_bpf::maps::local_storage::{ElemStats, BPF_LOCAL_STORAGE_GET_F_CREATE as F_CREATE};
use bpfvfs_bpf::maps::ENOTSUPP;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType};
use bpfvfs_cgroup::{install, Cgroup, CgroupMode, CgroupTree};
use bpfvfs_vfs::{rcu_barrier, Cred, Errno, Vfs};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn root() -> Cred {
    Cred::root()
}

fn setup() -> (Arc<Bpf>, Arc<Vfs>, Arc<CgroupTree>) {
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    let tree = install(&vfs, CgroupMode::Local).unwrap();
    (bpf, vfs, tree)
}

fn mkmap(bpf: &Bpf, vs: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::CgrpStorage, 4, vs, 0).with_flags(BPF_F_NO_PREALLOC))
        .unwrap()
}

fn csm(h: &Handle) -> &CgrpStorageMap {
    CgrpStorageMap::of(h.map().unwrap()).unwrap()
}

fn group(vfs: &Vfs, tree: &CgroupTree, path: &str) -> Arc<Cgroup> {
    vfs.mkdir(
        &root(),
        None,
        format!("/sys/fs/cgroup{path}").as_bytes(),
        0o755,
    )
    .unwrap();
    tree.by_path(path).unwrap()
}

fn rmdir(vfs: &Vfs, path: &str) -> Result<(), Errno> {
    vfs.rmdir(&root(), None, format!("/sys/fs/cgroup{path}").as_bytes())
}

fn v8(x: u64) -> Vec<u8> {
    x.to_ne_bytes().to_vec()
}

fn read_u64(p: NonNull<u8>) -> u64 {
    // SAFETY: values are AtomicU64 words, 8-aligned, valid under the caller's guard.
    unsafe { (*(p.as_ptr() as *const AtomicU64)).load(Ordering::Relaxed) }
}

/// Deferred frees run once every thread pinned at retire time has unpinned.
fn settle(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        rcu_barrier();
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

fn drained(stats: &ElemStats) -> bool {
    let c = stats.snapshot();
    c.live == 0 && c.outstanding == 0
}

#[test]
fn create_rules() {
    let (bpf, _vfs, _tree) = setup();
    let def = |k: u32, v: u32, max: u32, flags: u32| {
        MapDef::new(MapType::CgrpStorage, k, v, max).with_flags(flags)
    };
    assert!(bpf.map_create(def(4, 8, 0, BPF_F_NO_PREALLOC)).is_ok());
    assert!(bpf
        .map_create(def(4, 8, 0, BPF_F_NO_PREALLOC | BPF_F_CLONE))
        .is_ok());
    for (d, e) in [
        (def(4, 8, 0, 0), Errno::EINVAL), // NO_PREALLOC required
        (def(4, 8, 1, BPF_F_NO_PREALLOC), Errno::EINVAL), // max_entries must be 0
        (def(8, 8, 0, BPF_F_NO_PREALLOC), Errno::EINVAL), // key: an int (fd)
        (def(4, 0, 0, BPF_F_NO_PREALLOC), Errno::EINVAL), // value_size 0
        (
            def(4, 8, 0, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG),
            Errno::EINVAL,
        ),
        (def(4, 65536, 0, BPF_F_NO_PREALLOC), Errno::E2BIG),
    ] {
        assert_eq!(bpf.map_create(d.clone()).err(), Some(e), "{d:?}");
    }
}

#[test]
fn user_space_ops_and_errnos() {
    let (bpf, vfs, tree) = setup();
    let h = mkmap(&bpf, 8);
    let a = group(&vfs, &tree, "/a");
    let b = group(&vfs, &tree, "/b");
    assert_eq!(bpf.cgrp_storage_lookup(&h, &a).err(), Some(Errno::ENOENT));
    assert_eq!(bpf.cgrp_storage_delete(&h, &a).err(), Some(Errno::ENOENT));
    assert_eq!(
        bpf.cgrp_storage_update(&h, &a, &v8(1), BPF_EXIST).err(),
        Some(Errno::ENOENT)
    );
    bpf.cgrp_storage_update(&h, &a, &v8(1), BPF_NOEXIST)
        .unwrap();
    assert_eq!(
        bpf.cgrp_storage_update(&h, &a, &v8(2), BPF_NOEXIST).err(),
        Some(Errno::EEXIST)
    );
    bpf.cgrp_storage_update(&h, &a, &v8(3), BPF_EXIST).unwrap();
    bpf.cgrp_storage_update(&h, &b, &v8(4), BPF_ANY).unwrap();
    assert_eq!(bpf.cgrp_storage_lookup(&h, &a).unwrap(), v8(3));
    assert_eq!(
        bpf.cgrp_storage_update(&h, &a, &v8(3)[..4], BPF_ANY).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        bpf.cgrp_storage_update(&h, &a, &v8(3), 99).err(),
        Some(Errno::EINVAL)
    );
    let mut dump = bpf.cgrp_storage_dump(&h).unwrap();
    dump.sort();
    let mut want = vec![(a.id(), v8(3)), (b.id(), v8(4))];
    want.sort();
    assert_eq!(dump, want);
    // By path, as an fd of the group's directory would be; a non-group is EBADF.
    let ga = bpf.cgroup_of_path(&root(), b"/sys/fs/cgroup/a").unwrap();
    assert!(Arc::ptr_eq(&ga, &a));
    assert_eq!(
        bpf.cgroup_of_path(&root(), b"/sys/fs/cgroup/a/cgroup.procs")
            .err(),
        Some(Errno::EBADF)
    );
    assert_eq!(
        bpf.cgroup_of_path(&root(), b"/sys").err(),
        Some(Errno::EBADF)
    );
    bpf.cgrp_storage_delete(&h, &a).unwrap();
    assert_eq!(bpf.cgrp_storage_lookup(&h, &a).err(), Some(Errno::ENOENT));
    // The fd-keyed operations have no fd table here: EBADF; no key iteration: ENOTSUPP.
    let m = h.map().unwrap();
    let mut out = [0u8; 8];
    assert_eq!(m.ops().lookup(&[0; 4], &mut out).err(), Some(Errno::EBADF));
    assert_eq!(
        m.ops().get_next_key(None, &mut [0; 4]).err(),
        Some(ENOTSUPP)
    );
    // Another map type through these calls: EINVAL.
    let arr = bpf
        .map_create(MapDef::new(MapType::Array, 4, 8, 1))
        .unwrap();
    assert_eq!(bpf.cgrp_storage_lookup(&arr, &a).err(), Some(Errno::EINVAL));
}

#[test]
fn helpers_get_create_delete() {
    let (bpf, vfs, tree) = setup();
    let h = mkmap(&bpf, 16);
    let map = h.map().unwrap();
    let a = group(&vfs, &tree, "/a");
    let guard = crossbeam_epoch::pin();
    assert!(cgrp_storage_get(map, Some(&a), None, 0, &guard).is_none());
    assert!(cgrp_storage_get(map, None, None, F_CREATE, &guard).is_none());
    assert!(cgrp_storage_get(map, Some(&a), None, 2, &guard).is_none());
    let p = cgrp_storage_get(map, Some(&a), Some(&v8(7)), F_CREATE, &guard).unwrap();
    assert_eq!(read_u64(p), 7);
    // The same element again, with or without F_CREATE (the hit path).
    assert_eq!(cgrp_storage_get(map, Some(&a), None, 0, &guard), Some(p));
    assert_eq!(
        cgrp_storage_get(map, Some(&a), Some(&v8(9)), F_CREATE, &guard),
        Some(p)
    );
    assert_eq!(bpf.cgrp_storage_lookup(&h, &a).unwrap()[..8], v8(7)[..]);
    assert_eq!(cgrp_storage_delete(map, Some(&a), &guard), 0);
    assert_eq!(
        cgrp_storage_delete(map, Some(&a), &guard),
        -(Errno::ENOENT.0 as i64)
    );
    assert_eq!(
        cgrp_storage_delete(map, None, &guard),
        -(Errno::EINVAL.0 as i64)
    );
    // Root group works too.
    let r = tree.root();
    assert!(cgrp_storage_get(map, Some(&r), None, F_CREATE, &guard).is_some());
    assert_eq!(csm(&h).counts().live, 1);
}

#[test]
fn freed_when_group_removed() {
    let (bpf, vfs, tree) = setup();
    let h1 = mkmap(&bpf, 8);
    let h2 = mkmap(&bpf, 64);
    let a = group(&vfs, &tree, "/a");
    let b = group(&vfs, &tree, "/a/b");
    for g in [&a, &b] {
        bpf.cgrp_storage_update(&h1, g, &v8(g.id()), BPF_ANY)
            .unwrap();
        bpf.cgrp_storage_update(&h2, g, &[1u8; 64], BPF_ANY)
            .unwrap();
    }
    let dom = domain(&tree);
    assert_eq!(dom.counts().storages_live, 2);
    assert_eq!(csm(&h1).counts().live, 2);
    // Not removable yet (child): nothing freed.
    assert_eq!(rmdir(&vfs, "/a"), Err(Errno::EBUSY));
    assert_eq!(csm(&h1).counts().live, 2);
    rmdir(&vfs, "/a/b").unwrap();
    assert_eq!(csm(&h1).counts().live, 1);
    assert_eq!(csm(&h2).counts().live, 1);
    assert_eq!(dom.counts().storages_live, 1);
    assert_eq!(bpf.cgrp_storage_lookup(&h1, &b).err(), Some(Errno::ENOENT));
    // A removed group takes no new storage: update EBADF, helper get NULL.
    assert_eq!(
        bpf.cgrp_storage_update(&h1, &b, &v8(1), BPF_ANY).err(),
        Some(Errno::EBADF)
    );
    let guard = crossbeam_epoch::pin();
    assert!(cgrp_storage_get(h1.map().unwrap(), Some(&b), None, F_CREATE, &guard).is_none());
    drop(guard);
    rmdir(&vfs, "/a").unwrap();
    let (s1, s2) = (csm(&h1).stats_handle(), csm(&h2).stats_handle());
    assert!(
        settle(|| drained(&s1) && drained(&s2)),
        "{:?}",
        s1.snapshot()
    );
    assert!(settle(|| {
        let c = dom.counts();
        c.storages_live == 0 && c.storages_outstanding == 0
    }));
    assert_eq!(bpf.cgrp_storage_dump(&h1).unwrap(), vec![]);
}

#[test]
fn map_freed_first() {
    let (bpf, vfs, tree) = setup();
    let h = mkmap(&bpf, 8);
    let a = group(&vfs, &tree, "/a");
    bpf.cgrp_storage_update(&h, &a, &v8(5), BPF_ANY).unwrap();
    let stats = csm(&h).stats_handle();
    drop(h);
    assert!(settle(|| drained(&stats)));
    let dom = domain(&tree);
    assert!(settle(|| dom.counts().storages_live == 0));
    // The group goes later: nothing left to free, no double free.
    rmdir(&vfs, "/a").unwrap();
    assert!(settle(|| dom.counts().storages_outstanding == 0));
}

/// Groups are removed while other threads update and create their elements: each element
/// is freed exactly once (pool counters balance), nothing is left on removed groups.
#[test]
fn removal_races_updates() {
    let (bpf, vfs, tree) = setup();
    let h = Arc::new(mkmap(&bpf, 8));
    let stats = csm(&h).stats_handle();
    for round in 0..20 {
        let groups: Vec<Arc<Cgroup>> = (0..8)
            .map(|i| group(&vfs, &tree, &format!("/r{round}g{i}")))
            .collect();
        let groups = Arc::new(groups);
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (bpf, h, groups) = (bpf.clone(), h.clone(), groups.clone());
                std::thread::spawn(move || {
                    for n in 0..200u64 {
                        let g = &groups[(n as usize + t) % groups.len()];
                        if t == 0 {
                            let guard = crossbeam_epoch::pin();
                            let _ =
                                cgrp_storage_get(h.map().unwrap(), Some(g), None, F_CREATE, &guard);
                        } else {
                            match bpf.cgrp_storage_update(&h, g, &v8(n), BPF_ANY) {
                                Ok(()) | Err(Errno::EBADF) => {}
                                Err(e) => panic!("update: {e:?}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for i in 0..8 {
            rmdir(&vfs, &format!("/r{round}g{i}")).unwrap();
        }
        for w in writers {
            w.join().unwrap();
        }
        for g in groups.iter() {
            assert!(g.is_removed());
            assert_eq!(bpf.cgrp_storage_lookup(&h, g).err(), Some(Errno::ENOENT));
            assert!(g.storage_word().load(Ordering::Acquire).is_null());
        }
    }
    assert!(settle(|| drained(&stats)), "{:?}", stats.snapshot());
    let c = stats.snapshot();
    assert_eq!(c.created, c.unlinked);
    let dom = domain(&tree);
    assert!(settle(|| dom.counts().storages_outstanding == 0));
}
