//! Inode local storage, every test run once per layout (inode field, addons, blob, hash
//! table): user-space operations and their errnos, the helper-side get/delete, element
//! lifetime against inode eviction and map free, hard links, rename, unlinked-but-open
//! files, more maps than cache slots, re-entry.

use bpfvfs_bpf::maps::inode_storage::{storage_delete, storage_get, InodeStorageMap};
use bpfvfs_bpf::maps::local_storage::{
    set_reentry_probe, ElemStats, BPF_LOCAL_STORAGE_GET_F_CREATE as F_CREATE, STORAGE_GET_F_NOALLOC,
};
use bpfvfs_bpf::maps::ENOTSUPP;
use bpfvfs_bpf::uapi::*;
use bpfvfs_bpf::{Bpf, Handle, MapDef, MapType, ObjKind};
use bpfvfs_vfs::{oflags, rcu_barrier, AddonSlot, Cred, Errno, Inode, Vfs};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bpfvfs_bpf::maps::inode_storage::StorageLayout;

fn root() -> Cred {
    Cred::root()
}

fn setup(layout: StorageLayout) -> (Arc<Bpf>, Arc<Vfs>) {
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new_with_inode_storage(vfs.clone(), layout).unwrap();
    assert_eq!(bpf.inode_storage_layout(), Some(layout));
    (bpf, vfs)
}

fn mkmap(bpf: &Bpf, vs: u32) -> Handle {
    bpf.map_create(MapDef::new(MapType::InodeStorage, 4, vs, 0).with_flags(BPF_F_NO_PREALLOC))
        .unwrap()
}

fn ism(h: &Handle) -> &InodeStorageMap {
    InodeStorageMap::of(h.map().unwrap()).unwrap()
}

fn file(vfs: &Vfs, path: &str) -> Arc<Inode> {
    vfs.write_file(&root(), path.as_bytes(), b"x").unwrap();
    vfs.resolve(&root(), None, path.as_bytes(), 0)
        .unwrap()
        .inode()
        .clone()
}

fn v8(x: u64) -> Vec<u8> {
    x.to_ne_bytes().to_vec()
}

fn read_u64(p: NonNull<u8>) -> u64 {
    // SAFETY: values are AtomicU64 words, 8-aligned, valid under the caller's guard.
    unsafe { (*(p.as_ptr() as *const AtomicU64)).load(Ordering::Relaxed) }
}
fn write_u64(p: NonNull<u8>, x: u64) {
    // SAFETY: as above.
    unsafe { (*(p.as_ptr() as *const AtomicU64)).store(x, Ordering::Relaxed) }
}

fn each_layout(f: impl Fn(StorageLayout)) {
    for l in StorageLayout::ALL {
        f(l)
    }
}

/// Deferred frees run once every thread pinned at retire time has unpinned; other tests of
/// this binary pin too, so wait (bounded) rather than assume one barrier is enough.
fn settle(done: impl Fn() -> bool) {
    for _ in 0..500 {
        rcu_barrier();
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Wait for deferred frees and check a map's counters are back to zero.
fn assert_map_drained(stats: &ElemStats, what: &str) {
    settle(|| stats.snapshot().outstanding == 0);
    let c = stats.snapshot();
    assert_eq!(c.live, 0, "{what}: live elements {c:?}");
    assert_eq!(c.charged_storages, 0, "{what}: charged storages {c:?}");
    assert_eq!(
        c.outstanding, 0,
        "{what}: blocks not back in the pool {c:?}"
    );
    assert_eq!(c.created, c.unlinked, "{what}: {c:?}");
}

fn assert_domain_drained(bpf: &Bpf, what: &str) {
    settle(|| bpf.inode_storage_counts().unwrap().storages_outstanding == 0);
    let d = bpf.inode_storage_counts().unwrap();
    assert_eq!(d.storages_live, 0, "{what}: {d:?}");
    assert_eq!(d.storages_outstanding, 0, "{what}: {d:?}");
    assert_eq!(d.storages_created, d.storages_killed, "{what}: {d:?}");
    assert_eq!(d.table_entries, 0, "{what}: {d:?}");
}

#[test]
fn create_time_checks() {
    let (bpf, _vfs) = setup(StorageLayout::Addons);
    let d = |ks, vs, me, fl| MapDef::new(MapType::InodeStorage, ks, vs, me).with_flags(fl);
    let np = BPF_F_NO_PREALLOC;
    let e = |def: MapDef| bpf.map_create(def).err();
    assert_eq!(e(d(4, 8, 0, np)), None);
    assert_eq!(e(d(4, 8, 0, np | BPF_F_CLONE)), None);
    assert_eq!(e(d(4, 8, 0, 0)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 8, 1, np)), Some(Errno::EINVAL));
    assert_eq!(e(d(8, 8, 0, np)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 0, 0, np)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 8, 0, np | BPF_F_RDONLY_PROG)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 8, 0, np | BPF_F_RDONLY)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 8, 0, np | BPF_F_MMAPABLE)), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 8, 0, np | (1 << 20))), Some(Errno::EINVAL));
    assert_eq!(e(d(4, 65407, 0, np)), None);
    assert_eq!(e(d(4, 65408, 0, np)), Some(Errno::E2BIG));
    assert_eq!(e(d(4, u32::MAX, 0, np)), Some(Errno::E2BIG));
    let mut x = d(4, 8, 0, np);
    x.map_extra = 1;
    assert_eq!(e(x), Some(Errno::EINVAL));
}

#[test]
fn user_api_flags_values_and_errnos() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let f = file(&vfs, "/f");
        let g = file(&vfs, "/g");
        assert_eq!(bpf.inode_storage_lookup(&h, &f), Err(Errno::ENOENT));
        assert_eq!(
            bpf.inode_storage_update(&h, &f, &v8(1), BPF_EXIST),
            Err(Errno::ENOENT)
        );
        bpf.inode_storage_update(&h, &f, &v8(7), BPF_NOEXIST)
            .unwrap();
        assert_eq!(
            bpf.inode_storage_update(&h, &f, &v8(8), BPF_NOEXIST),
            Err(Errno::EEXIST)
        );
        assert_eq!(bpf.inode_storage_lookup(&h, &f).unwrap(), v8(7));
        bpf.inode_storage_update(&h, &f, &v8(9), BPF_EXIST).unwrap();
        assert_eq!(bpf.inode_storage_lookup(&h, &f).unwrap(), v8(9));
        bpf.inode_storage_update(&h, &f, &v8(10), BPF_ANY).unwrap();
        assert_eq!(bpf.inode_storage_lookup(&h, &f).unwrap(), v8(10));
        for bad in [3, BPF_F_LOCK, BPF_F_LOCK | BPF_EXIST, 8, 1 << 40] {
            assert_eq!(
                bpf.inode_storage_update(&h, &f, &v8(1), bad),
                Err(Errno::EINVAL),
                "flags {bad:#x}"
            );
        }
        assert_eq!(
            bpf.inode_storage_update(&h, &f, &[1, 2, 3], BPF_ANY),
            Err(Errno::EINVAL)
        );
        // Per inode: another file has nothing.
        assert_eq!(bpf.inode_storage_lookup(&h, &g), Err(Errno::ENOENT));
        assert_eq!(bpf.inode_storage_delete(&h, &g), Err(Errno::ENOENT));
        // Path forms.
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/f").unwrap(),
            v8(10)
        );
        bpf.inode_storage_update_path(&h, &root(), b"/g", &v8(3), BPF_ANY)
            .unwrap();
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/nope"),
            Err(Errno::ENOENT)
        );
        // Dump: (ino, value) by inode number.
        let mut want = vec![(f.ino(), v8(10)), (g.ino(), v8(3))];
        want.sort();
        assert_eq!(bpf.inode_storage_dump(&h).unwrap(), want);
        assert_eq!(h.map().unwrap().ops().elem_count(), 2);
        // Delete.
        bpf.inode_storage_delete(&h, &f).unwrap();
        assert_eq!(bpf.inode_storage_delete(&h, &f), Err(Errno::ENOENT));
        assert_eq!(bpf.inode_storage_lookup(&h, &f), Err(Errno::ENOENT));
        bpf.inode_storage_delete_path(&h, &root(), b"/g").unwrap();
        assert!(bpf.inode_storage_dump(&h).unwrap().is_empty());
        // Access modes.
        let id = h.map().unwrap().id();
        let ro = bpf
            .get_by_id(&root(), ObjKind::Map, id, BPF_F_RDONLY)
            .unwrap();
        let wo = bpf
            .get_by_id(&root(), ObjKind::Map, id, BPF_F_WRONLY)
            .unwrap();
        assert_eq!(
            bpf.inode_storage_update(&ro, &f, &v8(1), BPF_ANY),
            Err(Errno::EPERM)
        );
        assert_eq!(bpf.inode_storage_delete(&ro, &f), Err(Errno::EPERM));
        bpf.inode_storage_update(&wo, &f, &v8(4), BPF_ANY).unwrap();
        assert_eq!(bpf.inode_storage_lookup(&wo, &f), Err(Errno::EPERM));
        assert_eq!(bpf.inode_storage_lookup(&ro, &f).unwrap(), v8(4));
        bpf.map_freeze(&h).unwrap();
        assert_eq!(
            bpf.inode_storage_update(&h, &f, &v8(1), BPF_ANY),
            Err(Errno::EPERM)
        );
        // A map of another type.
        let hash = bpf.map_create(MapDef::new(MapType::Hash, 4, 8, 4)).unwrap();
        assert_eq!(bpf.inode_storage_lookup(&hash, &f), Err(Errno::EINVAL));
        // The fd-keyed map operations: every key is a bad fd; no key iteration.
        assert_eq!(bpf.map_lookup_elem(&h, &[0; 4]), Err(Errno::EBADF));
        assert_eq!(bpf.map_delete_elem(&h, &[0; 4]), Err(Errno::EPERM)); // frozen
        let h2 = mkmap(&bpf, 8);
        assert_eq!(
            bpf.map_update_elem(&h2, &[0; 4], &v8(1), BPF_ANY),
            Err(Errno::EBADF)
        );
        assert_eq!(bpf.map_delete_elem(&h2, &[0; 4]), Err(Errno::EBADF));
        assert_eq!(bpf.map_get_next_key(&h2, None), Err(ENOTSUPP));
        let stats = ism(&h).stats_handle();
        drop((h, ro, wo));
        assert_map_drained(&stats, l.name());
        drop((f, g));
        assert_domain_drained(&bpf, l.name());
    });
}

#[test]
fn odd_and_large_values() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let f = file(&vfs, "/f");
        for vs in [1u32, 5, 13, 4096, 65407] {
            let h = mkmap(&bpf, vs);
            let val: Vec<u8> = (0..vs).map(|i| (i * 7 + vs) as u8).collect();
            bpf.inode_storage_update(&h, &f, &val, BPF_ANY).unwrap();
            assert_eq!(bpf.inode_storage_lookup(&h, &f).unwrap(), val);
            // Helper creation from a shorter init value is zero-padded.
            let g = crossbeam_epoch::pin();
            let f2 = file(&vfs, "/f2");
            let p = storage_get(h.map().unwrap(), Some(&f2), Some(&[9]), F_CREATE, &g).unwrap();
            assert_eq!(p.as_ptr() as usize % 8, 0);
            let mut want = vec![0u8; vs as usize];
            want[0] = 9;
            assert_eq!(bpf.inode_storage_lookup(&h, &f2).unwrap(), want);
            vfs.unlink(&root(), None, b"/f2").unwrap();
        }
    });
}

#[test]
fn mem_usage_counts_elements_and_storages() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 64);
        let m = h.map().unwrap().clone();
        let empty = m.mem_usage();
        let files: Vec<_> = (0..200).map(|i| file(&vfs, &format!("/f{i}"))).collect();
        for f in &files {
            bpf.inode_storage_update(&h, f, &[1; 64], BPF_ANY).unwrap();
        }
        let full = m.mem_usage();
        let per = (full - empty) / 200;
        // At least one element and one storage each (both charged to this map).
        assert!(
            per >= (ism(&h).elem_bytes() + bpfvfs_bpf::maps::local_storage::STORAGE_BYTES) as u64,
            "{l:?}: {per} bytes per element"
        );
        match bpf_show_memlock(&bpf, &h) {
            Some(ml) => assert_eq!(ml, m.mem_usage()),
            None => panic!("no memlock"),
        }
        assert_eq!(ism(&h).counts().charged_storages, 200);
    });
}

fn bpf_show_memlock(bpf: &Bpf, h: &Handle) -> Option<u64> {
    match bpf.obj_get_info(h) {
        bpfvfs_bpf::ObjInfo::Map { memlock, .. } => Some(memlock),
        _ => None,
    }
}

#[test]
fn element_freed_when_inode_evicted() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let stats = ism(&h).stats_handle();
        let f = file(&vfs, "/f");
        let ino = f.ino();
        bpf.inode_storage_update(&h, &f, &v8(5), BPF_ANY).unwrap();
        let g = crossbeam_epoch::pin();
        let p = storage_get(h.map().unwrap(), Some(&f), None, 0, &g).unwrap();
        assert_eq!(read_u64(p), 5);
        drop(f); // memory only; the dentry holds the inode
        vfs.unlink(&root(), None, b"/f").unwrap();
        // Evicted at once (nothing else held it): the element is gone from the map...
        assert_eq!(stats.snapshot().live, 0, "{l:?}");
        assert!(bpf.inode_storage_dump(&h).unwrap().is_empty());
        assert_eq!(bpf.inode_storage_counts().unwrap().storages_live, 0);
        // ...but a program that still holds the pointer reads valid memory until it unpins.
        assert_eq!(read_u64(p), 5);
        drop(g);
        assert_map_drained(&stats, l.name());
        assert_domain_drained(&bpf, l.name());
        let _ = ino;
    });
}

#[test]
fn unlinked_open_file_keeps_storage_until_last_close() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let stats = ism(&h).stats_handle();
        vfs.write_file(&root(), b"/f", b"data").unwrap();
        let f1 = vfs.open(&root(), None, b"/f", oflags::O_RDONLY, 0).unwrap();
        let f2 = vfs.open(&root(), None, b"/f", oflags::O_RDONLY, 0).unwrap();
        bpf.inode_storage_update(&h, f1.inode(), &v8(42), BPF_ANY)
            .unwrap();
        vfs.unlink(&root(), None, b"/f").unwrap();
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/f"),
            Err(Errno::ENOENT)
        );
        assert_eq!(bpf.inode_storage_lookup(&h, f2.inode()).unwrap(), v8(42));
        drop(f1);
        assert_eq!(bpf.inode_storage_lookup(&h, f2.inode()).unwrap(), v8(42));
        assert_eq!(stats.snapshot().live, 1);
        drop(f2);
        assert_eq!(stats.snapshot().live, 0, "{l:?}");
        drop(h);
        assert_map_drained(&stats, l.name());
        assert_domain_drained(&bpf, l.name());
    });
}

#[test]
fn map_freed_while_inodes_live() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h1 = mkmap(&bpf, 8);
        let h2 = mkmap(&bpf, 8);
        let (s1, s2) = (ism(&h1).stats_handle(), ism(&h2).stats_handle());
        let files: Vec<_> = (0..50).map(|i| file(&vfs, &format!("/f{i}"))).collect();
        for (i, f) in files.iter().enumerate() {
            bpf.inode_storage_update(&h1, f, &v8(i as u64), BPF_ANY)
                .unwrap();
            if i % 2 == 0 {
                bpf.inode_storage_update(&h2, f, &v8(1000 + i as u64), BPF_ANY)
                    .unwrap();
            }
        }
        assert_eq!(bpf.inode_storage_counts().unwrap().storages_live, 50);
        // A program holds an element of map 1 across the map's free.
        let g = crossbeam_epoch::pin();
        let p = ism(&h1).get(Some(&files[1]), None, 0, &g).unwrap();
        drop(h1);
        assert_eq!(s1.snapshot().live, 0, "{l:?}");
        assert_eq!(read_u64(p), 1);
        drop(g);
        assert_map_drained(&s1, l.name());
        // Inodes that only had map 1's element lost their storage; the others keep map 2's.
        assert_eq!(bpf.inode_storage_counts().unwrap().storages_live, 25);
        for (i, f) in files.iter().enumerate() {
            let r = bpf.inode_storage_lookup(&h2, f);
            if i % 2 == 0 {
                assert_eq!(r.unwrap(), v8(1000 + i as u64));
            } else {
                assert_eq!(r, Err(Errno::ENOENT));
            }
        }
        // The storages are now charged to map 2.
        assert_eq!(s2.snapshot().charged_storages, 25);
        // New elements of a new map on the same inodes.
        let h3 = mkmap(&bpf, 8);
        bpf.inode_storage_update(&h3, &files[1], &v8(3), BPF_ANY)
            .unwrap();
        drop((h2, h3));
        assert_map_drained(&s2, l.name());
        assert_domain_drained(&bpf, l.name());
        // Inodes are fine without storage.
        drop(files);
        for i in 0..50 {
            vfs.unlink(&root(), None, format!("/f{i}").as_bytes())
                .unwrap();
        }
        assert_domain_drained(&bpf, l.name());
    });
}

#[test]
fn hard_links_share_and_rename_keeps_storage() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let stats = ism(&h).stats_handle();
        vfs.write_file(&root(), b"/f", b"x").unwrap();
        vfs.link(&root(), b"/f", b"/g", false).unwrap();
        bpf.inode_storage_update_path(&h, &root(), b"/f", &v8(11), BPF_ANY)
            .unwrap();
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/g").unwrap(),
            v8(11)
        );
        bpf.inode_storage_update_path(&h, &root(), b"/g", &v8(12), BPF_EXIST)
            .unwrap();
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/f").unwrap(),
            v8(12)
        );
        assert_eq!(bpf.inode_storage_dump(&h).unwrap().len(), 1);
        vfs.mkdir(&root(), None, b"/d", 0o755).unwrap();
        vfs.rename(&root(), b"/f", b"/d/h", 0).unwrap();
        assert_eq!(
            bpf.inode_storage_lookup_path(&h, &root(), b"/d/h").unwrap(),
            v8(12)
        );
        // Unlinking one name keeps it; the last name evicts it.
        vfs.unlink(&root(), None, b"/g").unwrap();
        assert_eq!(stats.snapshot().live, 1);
        vfs.unlink(&root(), None, b"/d/h").unwrap();
        assert_eq!(stats.snapshot().live, 0, "{l:?}");
        drop(h);
        assert_map_drained(&stats, l.name());
        assert_domain_drained(&bpf, l.name());
    });
}

#[test]
fn twenty_maps_on_one_inode() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let f = file(&vfs, "/f");
        let maps: Vec<Handle> = (0..20).map(|_| mkmap(&bpf, 8)).collect();
        let stats: Vec<_> = maps.iter().map(|h| ism(h).stats_handle()).collect();
        let g = crossbeam_epoch::pin();
        for (i, h) in maps.iter().enumerate() {
            let p = ism(h)
                .get(Some(&f), Some(&v8(i as u64)), F_CREATE, &g)
                .unwrap();
            assert_eq!(read_u64(p), i as u64);
        }
        // Round-robin, past the 16 slots: every get still finds its own element.
        for round in 0..5 {
            for (i, h) in maps.iter().enumerate() {
                let p = ism(h).get(Some(&f), None, 0, &g).unwrap();
                assert_eq!(read_u64(p), i as u64, "{l:?} round {round} map {i}");
                let p2 = ism(h).get(Some(&f), None, 0, &g).unwrap();
                assert_eq!(p, p2);
            }
        }
        for (i, h) in maps.iter().enumerate() {
            assert_eq!(bpf.inode_storage_lookup(h, &f).unwrap(), v8(i as u64));
        }
        // Delete every third; the rest stay reachable.
        for (i, h) in maps.iter().enumerate().step_by(3) {
            assert_eq!(ism(h).delete(Some(&f), &g), 0);
            assert!(ism(h).get(Some(&f), None, 0, &g).is_none(), "map {i}");
        }
        for (i, h) in maps.iter().enumerate() {
            let r = ism(h).get(Some(&f), None, 0, &g);
            assert_eq!(r.is_some(), i % 3 != 0, "{l:?} map {i}");
        }
        drop(g);
        assert_eq!(bpf.inode_storage_counts().unwrap().storages_live, 1);
        drop(f);
        vfs.unlink(&root(), None, b"/f").unwrap();
        drop(maps);
        for s in &stats {
            assert_map_drained(s, l.name());
        }
        assert_domain_drained(&bpf, l.name());
    });
}

#[test]
fn helper_get_and_delete_semantics() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let m = h.map().unwrap();
        let f = file(&vfs, "/f");
        let g = crossbeam_epoch::pin();
        assert!(storage_get(m, Some(&f), None, 0, &g).is_none());
        assert!(storage_get(m, Some(&f), None, 2, &g).is_none());
        assert!(storage_get(m, Some(&f), None, F_CREATE | 2, &g).is_none());
        assert!(storage_get(m, None, None, F_CREATE, &g).is_none());
        let p = storage_get(m, Some(&f), Some(&v8(77)), F_CREATE, &g).unwrap();
        assert_eq!(read_u64(p), 77);
        // Existing element: returned as is, init ignored.
        let p2 = storage_get(m, Some(&f), Some(&v8(1)), F_CREATE, &g).unwrap();
        assert_eq!(p, p2);
        write_u64(p, 78);
        assert_eq!(bpf.inode_storage_lookup(&h, &f).unwrap(), v8(78));
        // Zeroed without init.
        let f2 = file(&vfs, "/f2");
        let p3 = storage_get(m, Some(&f2), None, F_CREATE, &g).unwrap();
        assert_eq!(read_u64(p3), 0);
        assert_eq!(storage_delete(m, None, &g), -(Errno::EINVAL.0 as i64));
        assert_eq!(storage_delete(m, Some(&f), &g), 0);
        assert_eq!(storage_delete(m, Some(&f), &g), -(Errno::ENOENT.0 as i64));
        // Not an inode-storage map.
        let hash = bpf.map_create(MapDef::new(MapType::Hash, 4, 8, 4)).unwrap();
        assert!(storage_get(hash.map().unwrap(), Some(&f), None, F_CREATE, &g).is_none());
        assert_eq!(
            storage_delete(hash.map().unwrap(), Some(&f), &g),
            -(Errno::EINVAL.0 as i64)
        );
        // Where the pointer went.
        let stored = match l {
            StorageLayout::InodeField => !f2.ext_word().load(Ordering::Relaxed).is_null(),
            StorageLayout::Addons => !f2
                .addons()
                .unwrap()
                .word(AddonSlot::LocalStorage)
                .load(Ordering::Relaxed)
                .is_null(),
            StorageLayout::Blob => !f2.blob_word(0).unwrap().load(Ordering::Relaxed).is_null(),
            StorageLayout::HashTable => bpf.inode_storage_counts().unwrap().table_entries == 1,
        };
        assert!(stored, "{l:?}");
        if l != StorageLayout::InodeField {
            assert!(f2.ext_word().load(Ordering::Relaxed).is_null());
        }
    });
}

#[test]
fn concurrent_creators_get_one_element() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        for round in 0..20 {
            let f = file(&vfs, &format!("/f{round}"));
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let ptrs: Vec<usize> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|t| {
                        let (f, h, barrier) = (&f, &h, barrier.clone());
                        s.spawn(move || {
                            let g = crossbeam_epoch::pin();
                            barrier.wait();
                            let p = ism(h)
                                .get(Some(f), Some(&v8(t)), F_CREATE, &g)
                                .expect("no spurious failure");
                            p.as_ptr() as usize
                        })
                    })
                    .collect();
                hs.into_iter().map(|j| j.join().unwrap()).collect()
            });
            assert!(ptrs.windows(2).all(|w| w[0] == w[1]), "{l:?}: {ptrs:?}");
        }
        assert_eq!(ism(&h).counts().live, 20);
        assert_eq!(bpf.inode_storage_counts().unwrap().storages_live, 20);
    });
}

static REENTRY_CALLS: AtomicUsize = AtomicUsize::new(0);
static REENTRY_BAD: AtomicI64 = AtomicI64::new(0);
/// (map, inode with an element, inode without).
type ReentryCtx = (Handle, Arc<Inode>, Arc<Inode>);
static REENTRY_MAP: std::sync::Mutex<Option<ReentryCtx>> = std::sync::Mutex::new(None);

/// Stands in for a program firing inside storage code on the same thread.
fn reentrant_program() {
    REENTRY_CALLS.fetch_add(1, Ordering::SeqCst);
    let guard = REENTRY_MAP.try_lock();
    let Ok(guard) = guard else {
        REENTRY_BAD.fetch_add(1000, Ordering::SeqCst);
        return;
    };
    let (h, existing, fresh) = guard.as_ref().unwrap();
    let m = h.map().unwrap();
    let g = crossbeam_epoch::pin();
    // Creating is refused (NULL), not deadlocked...
    if storage_get(m, Some(fresh), None, F_CREATE, &g).is_some() {
        REENTRY_BAD.fetch_add(1, Ordering::SeqCst);
    }
    // ...delete is -EBUSY...
    if storage_delete(m, Some(existing), &g) != -(Errno::EBUSY.0 as i64) {
        REENTRY_BAD.fetch_add(10, Ordering::SeqCst);
    }
    // ...and an existing element can still be read.
    if storage_get(m, Some(existing), None, 0, &g).is_none() {
        REENTRY_BAD.fetch_add(100, Ordering::SeqCst);
    }
}

#[test]
fn reentry_returns_null_or_ebusy() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let existing = file(&vfs, "/e");
        let fresh = file(&vfs, "/n");
        let other = file(&vfs, "/o");
        bpf.inode_storage_update(&h, &existing, &v8(1), BPF_ANY)
            .unwrap();
        *REENTRY_MAP.lock().unwrap() = Some((h.clone(), existing.clone(), fresh.clone()));
        REENTRY_CALLS.store(0, Ordering::SeqCst);
        REENTRY_BAD.store(0, Ordering::SeqCst);
        set_reentry_probe(Some(reentrant_program));
        let g = crossbeam_epoch::pin();
        // The probe fires inside create (new storage and existing storage), update, delete.
        assert!(ism(&h).get(Some(&other), None, F_CREATE, &g).is_some());
        let h2 = mkmap(&bpf, 8);
        assert!(ism(&h2).get(Some(&other), None, F_CREATE, &g).is_some());
        bpf.inode_storage_update(&h, &other, &v8(5), BPF_ANY)
            .unwrap();
        assert_eq!(ism(&h).delete(Some(&other), &g), 0);
        set_reentry_probe(None);
        assert!(REENTRY_CALLS.load(Ordering::SeqCst) >= 4, "{l:?}");
        assert_eq!(REENTRY_BAD.load(Ordering::SeqCst), 0, "{l:?}");
        // Nothing was created by the refused calls, the existing element is intact, and the
        // thread is usable again.
        assert_eq!(bpf.inode_storage_lookup(&h, &fresh), Err(Errno::ENOENT));
        assert_eq!(bpf.inode_storage_lookup(&h, &existing).unwrap(), v8(1));
        assert!(ism(&h).get(Some(&fresh), None, F_CREATE, &g).is_some());
        assert_eq!(ism(&h).delete(Some(&fresh), &g), 0);
        // Another thread is never refused while this one is inside storage code.
        set_reentry_probe(Some(|| {
            let r = std::thread::scope(|s| {
                s.spawn(|| {
                    let guard = REENTRY_MAP.lock().unwrap();
                    let (h, _, fresh) = guard.as_ref().unwrap();
                    let g = crossbeam_epoch::pin();
                    let ok =
                        storage_get(h.map().unwrap(), Some(fresh), None, F_CREATE, &g).is_some();
                    let del = storage_delete(h.map().unwrap(), Some(fresh), &g);
                    ok && del == 0
                })
                .join()
                .unwrap()
            });
            if !r {
                REENTRY_BAD.fetch_add(1, Ordering::SeqCst);
            }
        }));
        assert_eq!(ism(&h2).delete(Some(&other), &g), 0);
        set_reentry_probe(None);
        assert_eq!(REENTRY_BAD.load(Ordering::SeqCst), 0, "{l:?}");
        *REENTRY_MAP.lock().unwrap() = None;
    });
}

#[test]
fn noalloc_flag_never_touches_the_heap_for_homes() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let f = file(&vfs, "/f");
        let g = crossbeam_epoch::pin();
        let r = ism(&h).get(Some(&f), None, F_CREATE | STORAGE_GET_F_NOALLOC, &g);
        match l {
            // The addons struct does not exist yet: allocating it is what a signal-time
            // caller must not do.
            StorageLayout::Addons => {
                assert!(r.is_none());
                assert!(f.addons().is_none());
                // Once it exists (allocated by a normal caller, or by watch marks), fine.
                f.addons_or_alloc();
                assert!(ism(&h)
                    .get(Some(&f), None, F_CREATE | STORAGE_GET_F_NOALLOC, &g)
                    .is_some());
            }
            StorageLayout::HashTable => assert!(r.is_none()),
            _ => assert!(r.is_some(), "{l:?}"),
        }
        let _ = bpf;
    });
}

#[test]
fn blob_layout_inodes_older_than_the_reservation() {
    let vfs = Vfs::new_memfs();
    let old = file(&vfs, "/old");
    let bpf = Bpf::new_with_inode_storage(vfs.clone(), StorageLayout::Blob).unwrap();
    let h = mkmap(&bpf, 8);
    assert!(old.blob_word(0).is_none());
    assert_eq!(bpf.inode_storage_lookup(&h, &old), Err(Errno::ENOENT));
    assert_eq!(
        bpf.inode_storage_update(&h, &old, &v8(1), BPF_ANY),
        Err(Errno::EBADF)
    );
    assert_eq!(bpf.inode_storage_delete(&h, &old), Err(Errno::ENOENT));
    let g = crossbeam_epoch::pin();
    assert!(ism(&h).get(Some(&old), None, F_CREATE, &g).is_none());
    let new = file(&vfs, "/new");
    assert_eq!(new.blob_bytes(), 16);
    bpf.inode_storage_update(&h, &new, &v8(1), BPF_ANY).unwrap();
    // Attaching another layout to the same VFS is refused; the same one is a no-op.
    assert_eq!(
        bpfvfs_bpf::maps::inode_storage::attach(&vfs, StorageLayout::Addons),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        bpfvfs_bpf::maps::inode_storage::attach(&vfs, StorageLayout::Blob),
        Ok(StorageLayout::Blob)
    );
}

#[test]
fn inodes_evicted_at_unmount_and_vfs_drop_release_storage() {
    each_layout(|l| {
        let (bpf, vfs) = setup(l);
        let h = mkmap(&bpf, 8);
        let stats = ism(&h).stats_handle();
        vfs.mkdir(&root(), None, b"/mnt", 0o755).unwrap();
        vfs.mount_type(&root(), "tmpfs", "", b"/mnt").unwrap();
        for i in 0..20 {
            let f = file(&vfs, &format!("/mnt/f{i}"));
            bpf.inode_storage_update(&h, &f, &v8(i), BPF_ANY).unwrap();
        }
        assert_eq!(stats.snapshot().live, 20);
        vfs.umount(&root(), b"/mnt").unwrap();
        assert_eq!(stats.snapshot().live, 0, "{l:?}");
        let f = file(&vfs, "/top");
        bpf.inode_storage_update(&h, &f, &v8(1), BPF_ANY).unwrap();
        drop(f);
        drop(bpf);
        drop(vfs);
        assert_eq!(stats.snapshot().live, 0, "{l:?}");
        drop(h);
        assert_map_drained(&stats, l.name());
    });
}
