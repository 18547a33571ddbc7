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

// ---------------------------------------------------------------------------------------
// The same operations against the host kernel (root and a cgroup v2 mount needed; skipped
// with the reason otherwise). The kernel keys elements by a cgroup directory's fd; bpfvfs
// by the group (or its directory's path), so the errnos are compared case by case.

mod kernel {
    use super::*;

    const BPF_MAP_CREATE: i32 = 0;
    const BPF_MAP_LOOKUP_ELEM: i32 = 1;
    const BPF_MAP_UPDATE_ELEM: i32 = 2;
    const BPF_MAP_DELETE_ELEM: i32 = 3;
    const BPF_MAP_GET_NEXT_KEY: i32 = 4;
    const BPF_BTF_LOAD: i32 = 18;

    #[repr(C, align(8))]
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 128])
        }
        fn u32(mut self, off: usize, v: u32) -> Attr {
            self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(mut self, off: usize, v: u64) -> Attr {
            self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
    }

    fn sys_bpf(cmd: i32, attr: &mut Attr) -> Result<i64, i32> {
        // SAFETY: `attr` is a valid 128-byte buffer for the call; every pointer stored in it
        // points to a live buffer of the size the kernel reads or writes for this map.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                attr.0.as_mut_ptr(),
                attr.0.len() as libc::c_long,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(r)
        }
    }

    struct Fd(i32);
    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: an fd this test owns, closed once.
            unsafe { libc::close(self.0) };
        }
    }

    /// BTF [1] int, [2] char, [3] char[value_size]: what the kernel requires of a
    /// local-storage map (bpfvfs's MapDef carries no BTF).
    fn load_btf(value_size: u32) -> Result<Fd, i32> {
        let strs = b"\0int\0char\0";
        let mut types: Vec<u32> = Vec::new();
        types.extend([1, 1 << 24, 4, (1 << 24) | 32]);
        types.extend([5, 1 << 24, 1, 8]);
        types.extend([0, 3 << 24, 0, 2, 1, value_size]);
        let type_len = (types.len() * 4) as u32;
        let mut blob = Vec::new();
        blob.extend(0xEB9F_u16.to_ne_bytes());
        blob.extend([1u8, 0u8]);
        for w in [24u32, 0, type_len, type_len, strs.len() as u32] {
            blob.extend(w.to_ne_bytes());
        }
        for w in &types {
            blob.extend(w.to_ne_bytes());
        }
        blob.extend(strs);
        let mut a = Attr::new()
            .u64(0, blob.as_ptr() as u64)
            .u32(16, blob.len() as u32);
        Ok(Fd(sys_bpf(BPF_BTF_LOAD, &mut a)? as i32))
    }

    fn k_create(def: &MapDef) -> Result<Fd, i32> {
        let btf = load_btf(def.value_size.clamp(1, 65535))?;
        let mut a = Attr::new()
            .u32(0, def.map_type)
            .u32(4, def.key_size)
            .u32(8, def.value_size)
            .u32(12, def.max_entries)
            .u32(16, def.map_flags)
            .u32(48, btf.0 as u32)
            .u32(52, 1)
            .u32(56, 3);
        Ok(Fd(sys_bpf(BPF_MAP_CREATE, &mut a)? as i32))
    }

    fn k_elem(cmd: i32, map: &Fd, key_fd: i32, value: &mut [u8], flags: u64) -> Result<(), i32> {
        let key = key_fd.to_ne_bytes();
        let mut a = Attr::new()
            .u32(0, map.0 as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(
                16,
                if value.is_empty() {
                    0
                } else {
                    value.as_mut_ptr() as u64
                },
            )
            .u64(24, flags);
        sys_bpf(cmd, &mut a).map(drop)
    }

    fn errno_of<T>(r: Result<T, Errno>) -> i32 {
        r.err().map_or(0, |e| e.0)
    }
    fn k_errno<T>(r: Result<T, i32>) -> i32 {
        r.err().unwrap_or(0)
    }

    #[test]
    fn kernel_diff_cgrp_storage() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root");
            return;
        }
        let host = match bpfvfs_cgroup::find_host_cgroup2() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let np = BPF_F_NO_PREALLOC;
        let d = |ks, vs, me, fl| MapDef::new(MapType::CgrpStorage, ks, vs, me).with_flags(fl);
        let probe = match k_create(&d(4, 8, 0, np)) {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("skipped: the kernel refuses a cgrp_storage map ({e})");
                return;
            }
        };
        drop(probe);
        let (bpf, vfs, tree) = setup();
        let mut diffs = Vec::new();
        for (name, def) in [
            ("ok", d(4, 8, 0, np)),
            ("NO_PREALLOC | CLONE", d(4, 8, 0, np | BPF_F_CLONE)),
            ("without NO_PREALLOC", d(4, 8, 0, 0)),
            ("max_entries 1", d(4, 8, 1, np)),
            ("key_size 8", d(8, 8, 0, np)),
            ("value_size 0", d(4, 0, 0, np)),
            ("value_size 65407", d(4, 65407, 0, np)),
            ("value_size 65408", d(4, 65408, 0, np)),
            ("BPF_F_RDONLY_PROG", d(4, 8, 0, np | BPF_F_RDONLY_PROG)),
            ("BPF_F_MMAPABLE", d(4, 8, 0, np | BPF_F_MMAPABLE)),
        ] {
            let k = k_errno(k_create(&def));
            let b = errno_of(bpf.map_create(def));
            if k != b {
                diffs.push(format!("create {name}: kernel {k}, bpfvfs {b}"));
            }
        }

        // Element operations: the kernel on the host's root cgroup (by fd), bpfvfs on a
        // group (by path).
        let kmap = k_create(&d(4, 8, 0, np)).unwrap();
        let cg = std::fs::File::open(&host).unwrap();
        use std::os::fd::AsRawFd;
        let cfd = cg.as_raw_fd();
        let h = mkmap(&bpf, 8);
        let g = group(&vfs, &tree, "/k");
        let mut v = [0u8; 8];
        let steps: Vec<(&str, i32, i32)> = vec![
            (
                "lookup, no element",
                k_errno(k_elem(BPF_MAP_LOOKUP_ELEM, &kmap, cfd, &mut v, 0)),
                errno_of(bpf.cgrp_storage_lookup(&h, &g)),
            ),
            (
                "delete, no element",
                k_errno(k_elem(BPF_MAP_DELETE_ELEM, &kmap, cfd, &mut [], 0)),
                errno_of(bpf.cgrp_storage_delete(&h, &g)),
            ),
            (
                "update EXIST, no element",
                k_errno(k_elem(
                    BPF_MAP_UPDATE_ELEM,
                    &kmap,
                    cfd,
                    &mut v8(1),
                    BPF_EXIST,
                )),
                errno_of(bpf.cgrp_storage_update(&h, &g, &v8(1), BPF_EXIST)),
            ),
            (
                "update NOEXIST",
                k_errno(k_elem(
                    BPF_MAP_UPDATE_ELEM,
                    &kmap,
                    cfd,
                    &mut v8(2),
                    BPF_NOEXIST,
                )),
                errno_of(bpf.cgrp_storage_update(&h, &g, &v8(2), BPF_NOEXIST)),
            ),
            (
                "update NOEXIST again",
                k_errno(k_elem(
                    BPF_MAP_UPDATE_ELEM,
                    &kmap,
                    cfd,
                    &mut v8(3),
                    BPF_NOEXIST,
                )),
                errno_of(bpf.cgrp_storage_update(&h, &g, &v8(3), BPF_NOEXIST)),
            ),
            (
                "update flags 99",
                k_errno(k_elem(BPF_MAP_UPDATE_ELEM, &kmap, cfd, &mut v8(3), 99)),
                errno_of(bpf.cgrp_storage_update(&h, &g, &v8(3), 99)),
            ),
            (
                "update EXIST",
                k_errno(k_elem(
                    BPF_MAP_UPDATE_ELEM,
                    &kmap,
                    cfd,
                    &mut v8(4),
                    BPF_EXIST,
                )),
                errno_of(bpf.cgrp_storage_update(&h, &g, &v8(4), BPF_EXIST)),
            ),
            (
                "get_next_key",
                k_errno(k_elem(BPF_MAP_GET_NEXT_KEY, &kmap, cfd, &mut [0u8; 4], 0)),
                errno_of(h.map().unwrap().ops().get_next_key(None, &mut [0u8; 4])),
            ),
        ];
        for (name, k, b) in steps {
            if k != b {
                diffs.push(format!("{name}: kernel {k}, bpfvfs {b}"));
            }
        }
        let mut kv = [0u8; 8];
        k_elem(BPF_MAP_LOOKUP_ELEM, &kmap, cfd, &mut kv, 0).unwrap();
        assert_eq!(kv.to_vec(), bpf.cgrp_storage_lookup(&h, &g).unwrap());
        // A key that is not a cgroup: an fd of a regular file / a path that is not a group.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let k = k_errno(k_elem(
            BPF_MAP_LOOKUP_ELEM,
            &kmap,
            f.as_raw_fd(),
            &mut kv,
            0,
        ));
        let b = errno_of(bpf.cgroup_of_path(&root(), b"/sys/fs/cgroup/k/cgroup.procs"));
        if k != b {
            diffs.push(format!("key not a cgroup: kernel {k}, bpfvfs {b}"));
        }
        k_elem(BPF_MAP_DELETE_ELEM, &kmap, cfd, &mut [], 0).unwrap();
        bpf.cgrp_storage_delete(&h, &g).unwrap();
        assert!(
            diffs.is_empty(),
            "differences from the kernel:\n{}",
            diffs.join("\n")
        );
    }
}
