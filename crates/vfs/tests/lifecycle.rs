//! Inode lifecycle: when eviction happens (last link and last reference gone), that it
//! happens exactly once, that memory outlives eviction by a grace period, that nothing leaks,
//! and the addons slot's allocation and release.
//!
//! Freeing is grace-period deferred, so checks on "memory" counters (inodes_live,
//! dentries_live, addon drops) poll with `rcu_barrier` for up to a few seconds; checks on
//! eviction (hooks, inodes_evicted_total) are synchronous: eviction happens in the call that
//! drops the last reference.

use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

macro_rules! ok {
    ($e:expr) => {{
        match $e {
            Ok(v) => v,
            Err(got) => panic!("`{}` failed with {:?}", stringify!($e), got),
        }
    }};
}

fn r() -> Cred {
    Cred::root()
}

/// Poll `cond` (after an rcu_barrier each time) for up to 3 s; panic with `what` otherwise.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    loop {
        rcu_barrier();
        if cond() {
            return;
        }
        if t0.elapsed() > Duration::from_secs(3) {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Eviction log: inode number -> (times evicted, size and nlink seen by the hook).
#[derive(Default)]
struct Evictions {
    count: Mutex<HashMap<u64, u32>>,
    seen: Mutex<HashMap<u64, (u64, u32)>>,
}

impl Evictions {
    fn times(&self, ino: u64) -> u32 {
        self.count.lock().unwrap().get(&ino).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.count
            .lock()
            .unwrap()
            .values()
            .map(|&n| n as usize)
            .sum()
    }
    fn all_once(&self) -> bool {
        self.count.lock().unwrap().values().all(|&n| n == 1)
    }
}

fn hooked() -> (Arc<Vfs>, Arc<Evictions>) {
    let vfs = Vfs::new_memfs();
    let ev = Arc::new(Evictions::default());
    let e = ev.clone();
    vfs.register_evict_hook(Arc::new(move |inode: &Arc<Inode>| {
        // The hook runs once eviction has started, before the filesystem frees the data.
        assert!(inode.is_freeing());
        *e.count.lock().unwrap().entry(inode.ino()).or_default() += 1;
        e.seen
            .lock()
            .unwrap()
            .insert(inode.ino(), (inode.size(), inode.nlink()));
    }));
    (vfs, ev)
}

fn ino(vfs: &Vfs, p: &[u8]) -> u64 {
    ok!(vfs.stat(&r(), None, p, false)).ino
}

#[test]
fn unlinked_open_file_lives_until_last_close() {
    let (vfs, ev) = hooked();
    let base = vfs.stats();
    ok!(vfs.write_file(&r(), b"/f", b"data"));
    let i = ino(&vfs, b"/f");
    let f1 = ok!(vfs.open(&r(), None, b"/f", O_RDWR, 0));
    let f2 = ok!(vfs.open(&r(), None, b"/f", O_RDONLY, 0));
    assert_eq!(vfs.stats().files_open, base.files_open + 2);
    ok!(vfs.unlink(&r(), None, b"/f"));
    assert_eq!(vfs.stat(&r(), None, b"/f", true), Err(Errno::ENOENT));
    assert_eq!(ev.times(i), 0, "evicted while open");
    // Still readable and writable through the handles; nlink is 0.
    assert_eq!(vfs.getattr(f1.path()).nlink, 0);
    assert_eq!(ok!(vfs.write(&f1, b"DATA+", 0)), 5);
    let mut buf = [0u8; 16];
    assert_eq!(ok!(vfs.read(&f2, &mut buf, 0)), 5);
    assert_eq!(&buf[..5], b"DATA+");
    ok!(vfs.setattr(
        &r(),
        f1.path(),
        &SetAttr {
            size: Some(3),
            ..Default::default()
        },
        true
    ));
    // A new file may take the old name meanwhile; it is a different inode.
    ok!(vfs.write_file(&r(), b"/f", b"new"));
    assert_ne!(ino(&vfs, b"/f"), i);
    drop(f1);
    assert_eq!(ev.times(i), 0, "evicted with a handle still open");
    drop(f2);
    assert_eq!(ev.times(i), 1);
    assert_eq!(ev.seen.lock().unwrap()[&i], (3, 0));
    assert_eq!(vfs.stats().files_open, base.files_open);
    ok!(vfs.unlink(&r(), None, b"/f"));
    assert_eq!(ev.total(), 2);
    assert!(ev.all_once());
    wait_for("inodes back to baseline", || {
        vfs.stats().inodes_live == base.inodes_live
    });
    let s = vfs.stats();
    assert_eq!(s.inodes_evicted_pending_free, 0);
    assert_eq!(s.inodes_evicted_total, base.inodes_evicted_total + 2);
}

#[test]
fn hard_links_evict_after_last_link() {
    let (vfs, ev) = hooked();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.write_file(&r(), b"/a", b"x"));
    let i = ino(&vfs, b"/a");
    ok!(vfs.link(&r(), b"/a", b"/b", false));
    ok!(vfs.link(&r(), b"/a", b"/d/c", false));
    ok!(vfs.unlink(&r(), None, b"/a"));
    ok!(vfs.unlink(&r(), None, b"/b"));
    assert_eq!(ev.times(i), 0);
    assert_eq!(ok!(vfs.read_file(&r(), b"/d/c")), b"x");
    // The last link goes while a handle is open: still not evicted.
    let f = ok!(vfs.open(&r(), None, b"/d/c", O_RDONLY, 0));
    ok!(vfs.unlink(&r(), None, b"/d/c"));
    assert_eq!(ev.times(i), 0);
    // A link to an unlinked (but open) file cannot be made.
    assert_eq!(
        vfs.link_at(&r(), f.path(), &vfs.root(), b"back").err(),
        Some(Errno::ENOENT)
    );
    drop(f);
    assert_eq!(ev.times(i), 1);
    // Holding a location (PathRef) pins like an open file.
    ok!(vfs.write_file(&r(), b"/p", b""));
    let j = ino(&vfs, b"/p");
    let p = ok!(vfs.resolve(&r(), None, b"/p", 0));
    ok!(vfs.unlink(&r(), None, b"/p"));
    assert_eq!(ev.times(j), 0);
    let p2 = p.clone();
    drop(p);
    assert_eq!(ev.times(j), 0);
    drop(p2);
    assert_eq!(ev.times(j), 1);
    // An InodeRef pins too.
    ok!(vfs.write_file(&r(), b"/q", b""));
    let k = ino(&vfs, b"/q");
    let iref = InodeRef::new(ok!(vfs.resolve(&r(), None, b"/q", 0)).inode().clone());
    ok!(vfs.unlink(&r(), None, b"/q"));
    assert_eq!(ev.times(k), 0);
    drop(iref);
    assert_eq!(ev.times(k), 1);
    assert!(ev.all_once());
}

#[test]
fn rename_over_evicts_replaced_inode() {
    let (vfs, ev) = hooked();
    ok!(vfs.write_file(&r(), b"/x", b"x"));
    ok!(vfs.write_file(&r(), b"/y", b"y"));
    let (ix, iy) = (ino(&vfs, b"/x"), ino(&vfs, b"/y"));
    ok!(vfs.rename(&r(), b"/x", b"/y", 0));
    assert_eq!((ev.times(ix), ev.times(iy)), (0, 1));
    assert_eq!(ino(&vfs, b"/y"), ix);
    // Replaced while open: evicted when the handle goes.
    ok!(vfs.write_file(&r(), b"/z", b"z"));
    let iz = ino(&vfs, b"/z");
    let f = ok!(vfs.open(&r(), None, b"/z", O_RDONLY, 0));
    ok!(vfs.rename(&r(), b"/y", b"/z", 0));
    assert_eq!(ev.times(iz), 0);
    let mut b = [0u8; 1];
    assert_eq!(ok!(vfs.read(&f, &mut b, 0)), 1);
    assert_eq!(&b, b"z");
    drop(f);
    assert_eq!(ev.times(iz), 1);
    // Replacing one of two links evicts nothing.
    ok!(vfs.write_file(&r(), b"/h1", b""));
    ok!(vfs.link(&r(), b"/h1", b"/h2", false));
    let ih = ino(&vfs, b"/h1");
    ok!(vfs.rename(&r(), b"/z", b"/h2", 0));
    assert_eq!(ev.times(ih), 0);
    assert_eq!(ok!(vfs.stat(&r(), None, b"/h1", true)).nlink, 1);
    // Over an empty directory, across parents: the directory is evicted.
    ok!(vfs.mkdir(&r(), None, b"/a", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/b", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/b/victim", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/a/mover", 0o755));
    let iv = ino(&vfs, b"/b/victim");
    ok!(vfs.rename(&r(), b"/a/mover", b"/b/victim", 0));
    assert_eq!(ev.times(iv), 1);
    // EXCHANGE evicts nothing.
    let before = ev.total();
    ok!(vfs.rename(&r(), b"/h1", b"/b/victim", rename_flags::RENAME_EXCHANGE));
    assert_eq!(ev.total(), before);
    assert!(ev.all_once());
}

#[test]
fn rmdir_evicts_unless_held() {
    let (vfs, ev) = hooked();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let i = ino(&vfs, b"/d");
    let held = ok!(vfs.resolve(&r(), None, b"/d", 0));
    let dirf = ok!(vfs.open(&r(), None, b"/d", O_RDONLY | O_DIRECTORY, 0));
    ok!(vfs.rmdir(&r(), None, b"/d"));
    assert_eq!(ev.times(i), 0);
    assert_eq!(vfs.getattr(&held).nlink, 0);
    assert_eq!(vfs.readdir(dirf.path(), 0, 10), Err(Errno::ENOENT));
    drop(held);
    assert_eq!(ev.times(i), 0);
    drop(dirf);
    assert_eq!(ev.times(i), 1);
}

/// Create/delete churn of every kind leaves nothing behind, and every inode is evicted
/// exactly once.
#[test]
fn churn_returns_to_baseline() {
    let (vfs, ev) = hooked();
    let base = vfs.stats();
    assert_eq!(base.inodes_live, 1);
    let mut created = HashSet::new();
    for round in 0..40 {
        ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
        ok!(vfs.mkdir(&r(), None, b"/d/e", 0o755));
        for i in 0..10 {
            let p = format!("/d/f{i}");
            ok!(vfs.write_file(&r(), p.as_bytes(), &vec![i as u8; i * 1000]));
            created.insert(ino(&vfs, p.as_bytes()));
        }
        ok!(vfs.symlink(&r(), b"f1", None, b"/d/short"));
        ok!(vfs.symlink(&r(), &[b'x'; 300], None, b"/d/long"));
        ok!(vfs.link(&r(), b"/d/f2", b"/d/e/hl", false));
        ok!(vfs.rename(&r(), b"/d/f3", b"/d/e/moved", 0));
        ok!(vfs.rename(&r(), b"/d/f4", b"/d/f5", 0));
        ok!(vfs.mknod(&r(), None, b"/d/fifo", S_IFIFO | 0o644, 0));
        for n in ["short", "long", "fifo"] {
            created.insert(ino(&vfs, format!("/d/{n}").as_bytes()));
        }
        created.insert(ino(&vfs, b"/d"));
        created.insert(ino(&vfs, b"/d/e"));
        let f = ok!(vfs.open(&r(), None, b"/d/f6", O_RDWR, 0));
        for p in ["/d/e/hl", "/d/e/moved"] {
            ok!(vfs.unlink(&r(), None, p.as_bytes()));
        }
        ok!(vfs.rmdir(&r(), None, b"/d/e"));
        let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
        for e in ok!(vfs.readdir(&d, 2, 1000)) {
            ok!(vfs.unlink_at(&r(), &d, &e.name));
        }
        drop(d);
        ok!(vfs.rmdir(&r(), None, b"/d"));
        if round % 2 == 0 {
            ok!(vfs.write(&f, b"late", 0));
        }
        drop(f);
    }
    // Eviction is synchronous: all of them are evicted now, once each.
    assert_eq!(ev.total(), created.len());
    assert!(ev.all_once());
    for i in &created {
        assert_eq!(ev.times(*i), 1);
    }
    // Memory follows after the grace period.
    wait_for("inodes_live back to 1", || {
        vfs.stats().inodes_live == base.inodes_live
    });
    wait_for("dentries back to baseline", || {
        vfs.stats().dentries_live == base.dentries_live
    });
    let s = vfs.stats();
    assert_eq!(s.inodes_evicted_pending_free, 0);
    assert_eq!(s.dentries_hashed, base.dentries_hashed);
    assert_eq!(s.files_open, 0);
    assert_eq!(
        s.inodes_allocated_total - base.inodes_allocated_total,
        s.inodes_evicted_total - base.inodes_evicted_total
    );
}

#[test]
fn umount_and_drop_evict_everything() {
    let (vfs, ev) = hooked();
    ok!(vfs.mkdir(&r(), None, b"/mnt", 0o755));
    ok!(vfs.write_file(&r(), b"/keep", b"k"));
    let mnt = ok!(vfs.mount_type(&r(), "tmpfs", "", b"/mnt"));
    let mroot = ino(&vfs, b"/mnt");
    ok!(vfs.mkdir(&r(), None, b"/mnt/d", 0o755));
    ok!(vfs.write_file(&r(), b"/mnt/d/f", b"f"));
    ok!(vfs.symlink(&r(), b"d/f", None, b"/mnt/l"));
    let inner = [
        mroot,
        ino(&vfs, b"/mnt/d"),
        ino(&vfs, b"/mnt/d/f"),
        ino(&vfs, b"/mnt/l"),
    ];
    let mut all_inos: Vec<u64> = inner.to_vec();
    drop(mnt);
    ok!(vfs.umount(&r(), b"/mnt"));
    // Unmounting evicts every inode of that filesystem (generic_shutdown_super); the root
    // goes when the last mount-table snapshot naming the mount is freed (a grace period).
    for i in &inner[1..] {
        assert_eq!(ev.times(*i), 1, "ino {i} after umount");
    }
    wait_for("mount root evicted", || ev.times(mroot) == 1);
    assert_eq!(ev.total(), 4);
    assert_eq!(
        ok!(vfs.stat(&r(), None, b"/mnt", true)).ino,
        ino(&vfs, b"/mnt")
    );
    assert_eq!(vfs.mounts().len(), 1);
    // Dropping the tree evicts what is left, root included.
    all_inos.extend([ino(&vfs, b"/"), ino(&vfs, b"/mnt"), ino(&vfs, b"/keep")]);
    drop(vfs);
    wait_for("all evicted after drop", || ev.total() == all_inos.len());
    for i in all_inos {
        assert_eq!(ev.times(i), 1, "ino {i} after drop");
    }
}

/// While a reader may still hold a reference obtained without locks (an epoch guard is
/// pinned), an evicted inode's memory stays allocated; it is freed after the guard goes.
#[test]
fn evicted_memory_waits_for_the_grace_period() {
    let (vfs, ev) = hooked();
    ok!(vfs.write_file(&r(), b"/f", b"x"));
    let i = ino(&vfs, b"/f");
    let base_live = vfs.stats().inodes_live;
    let guard = crossbeam_epoch::pin();
    ok!(vfs.unlink(&r(), None, b"/f"));
    assert_eq!(ev.times(i), 1);
    for _ in 0..3 {
        rcu_barrier();
    }
    let s = vfs.stats();
    assert_eq!(s.inodes_live, base_live, "freed while a reader was pinned");
    assert_eq!(s.inodes_evicted_pending_free, 1);
    drop(guard);
    wait_for("memory freed after the grace period", || {
        let s = vfs.stats();
        s.inodes_live == base_live - 1 && s.inodes_evicted_pending_free == 0
    });
}

/// One thread resolves names while another unlinks, recreates and renames over them: each
/// resolution gives a live file that is one of the expected ones, or ENOENT; never anything
/// else, never a crash.
#[test]
fn lockless_resolve_races_unlink() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/d/sub", 0o755));
    let stop = Arc::new(AtomicBool::new(false));
    let before = vfs.stats();
    let writer = {
        let vfs = vfs.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in 0..3000u32 {
                let body = format!("v{}", i % 7);
                ok!(vfs.write_file(&r(), b"/d/sub/f", body.as_bytes()));
                // Replace the symlink with one of two targets, by rename-over.
                let t: &[u8] = if i % 2 == 0 { b"sub/f" } else { b"/d/sub/f" };
                ok!(vfs.symlink(&r(), t, None, b"/d/tmp"));
                ok!(vfs.rename(&r(), b"/d/tmp", b"/d/l", 0));
                if i % 3 == 0 {
                    ok!(vfs.unlink(&r(), None, b"/d/sub/f"));
                }
                if i % 50 == 0 {
                    // Move the directory away and back: ".." and renamed parents.
                    ok!(vfs.rename(&r(), b"/d/sub", b"/d/sub2", 0));
                    ok!(vfs.rename(&r(), b"/d/sub2", b"/d/sub", 0));
                }
            }
            stop.store(true, Ordering::Release);
        })
    };
    let mut oks = 0u64;
    let mut enoent = 0u64;
    let reader = |vfs: &Vfs, p: &[u8], oks: &mut u64, enoent: &mut u64| match vfs.resolve(
        &r(),
        None,
        p,
        LOOKUP_FOLLOW,
    ) {
        Ok(at) => {
            let i = at.inode();
            assert!(i.file_type() == FileType::Regular, "resolved to {:?}", i);
            // Reading through a location that may be unlinked meanwhile is still fine.
            if let Ok(f) = vfs.open_at(&r(), &at, O_RDONLY) {
                let mut b = [0u8; 8];
                let n = ok!(vfs.read(&f, &mut b, 0));
                assert!(
                    n == 0 || (n == 2 && b[0] == b'v' && (b'0'..b'7').contains(&b[1])),
                    "{:?}",
                    &b[..n]
                );
            }
            *oks += 1;
        }
        Err(Errno::ENOENT) => *enoent += 1,
        Err(e) => panic!("resolve {:?}: {e:?}", String::from_utf8_lossy(p)),
    };
    while !stop.load(Ordering::Acquire) {
        reader(&vfs, b"/d/sub/f", &mut oks, &mut enoent);
        reader(&vfs, b"/d/l", &mut oks, &mut enoent);
        reader(&vfs, b"/d/sub/../sub/./f", &mut oks, &mut enoent);
    }
    writer.join().unwrap();
    assert!(oks > 0, "never resolved");
    let after = vfs.stats();
    assert!(after.walks_lockless > before.walks_lockless);
    eprintln!("ok {oks} enoent {enoent} {after:?}");
}

/// Counts drops: the value installed in an addon slot.
struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn addons_allocated_once_and_freed_with_inode() {
    let vfs = Vfs::new_memfs();
    let base = vfs.stats().addons_allocated_total;
    // Untouched inodes have none.
    ok!(vfs.write_file(&r(), b"/plain", b""));
    let plain = ok!(vfs.resolve(&r(), None, b"/plain", 0));
    assert!(plain.inode().addons().is_none());
    drop(plain);

    // Racing allocations on many fresh inodes: one struct per inode, counted once.
    const THREADS: usize = 4;
    const FILES: usize = 100;
    for i in 0..FILES {
        ok!(vfs.write_file(&r(), format!("/f{i}").as_bytes(), b""));
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let installs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (vfs, drops, installs, barrier) = (
                vfs.clone(),
                drops.clone(),
                installs.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..FILES {
                    let at = ok!(vfs.resolve(&r(), None, format!("/f{i}").as_bytes(), 0));
                    barrier.wait();
                    let a = at.inode().addons_or_alloc();
                    let v = a.get_or_install(AddonSlot::Watch, || {
                        installs.fetch_add(1, Ordering::SeqCst);
                        Box::new(DropCounter(drops.clone()))
                    });
                    assert!(v.downcast_ref::<DropCounter>().is_some());
                    out.push((
                        a as *const InodeAddons as usize,
                        v as *const (dyn std::any::Any + Send + Sync) as *const u8 as usize,
                    ));
                }
                out
            })
        })
        .collect();
    let results: Vec<Vec<(usize, usize)>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for i in 0..FILES {
        let first = results[0][i];
        assert!(
            results.iter().all(|r| r[i] == first),
            "file {i}: threads saw different addons"
        );
    }
    assert_eq!(vfs.stats().addons_allocated_total - base, FILES as u64);
    // Losing installers' values were dropped at once; the winners' are alive.
    let inst = installs.load(Ordering::SeqCst);
    assert!(inst >= FILES);
    assert_eq!(drops.load(Ordering::SeqCst), inst - FILES);
    // Slots are independent.
    let at = ok!(vfs.resolve(&r(), None, b"/f0", 0));
    let a = at.inode().addons().expect("allocated");
    assert!(a.get(AddonSlot::LocalStorage).is_none());
    a.get_or_install(AddonSlot::LocalStorage, || {
        Box::new(DropCounter(drops.clone()))
    });
    a.watch_mask.store(0x10, Ordering::Relaxed);
    assert_eq!(
        at.inode()
            .addons_or_alloc()
            .watch_mask
            .load(Ordering::Relaxed),
        0x10
    );
    assert_eq!(vfs.stats().addons_allocated_total - base, FILES as u64);
    drop(at);
    // Nothing is freed while the inodes live...
    rcu_barrier();
    assert_eq!(drops.load(Ordering::SeqCst), inst - FILES);
    // ...and everything after eviction and the grace period.
    for i in 0..FILES {
        ok!(vfs.unlink(&r(), None, format!("/f{i}").as_bytes()));
    }
    wait_for("addon values dropped with their inodes", || {
        drops.load(Ordering::SeqCst) == inst + 1
    });
    wait_for("inodes freed", || vfs.stats().inodes_live == 2);
}

/// Eviction hooks see every filesystem of the tree, and run with no directory lock held:
/// a hook may call back into the VFS.
#[test]
fn hooks_may_reenter_the_vfs() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/log", 0o777));
    let weak = Arc::downgrade(&vfs);
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    vfs.register_evict_hook(Arc::new(move |inode: &Arc<Inode>| {
        s2.fetch_add(1, Ordering::SeqCst);
        if let Some(vfs) = weak.upgrade() {
            // Reads and writes elsewhere in the tree from inside the hook.
            let _ = vfs.stat(&Cred::root(), None, b"/log", true);
            let _ = vfs.write_file(
                &Cred::root(),
                format!("/log/{}", inode.ino()).as_bytes(),
                b"",
            );
        }
    }));
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    ok!(vfs.write_file(&r(), b"/d/f", b""));
    let i = ino(&vfs, b"/d/f");
    ok!(vfs.unlink(&r(), None, b"/d/f"));
    ok!(vfs.rmdir(&r(), None, b"/d"));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    ok!(vfs.stat(&r(), None, format!("/log/{i}").as_bytes(), true));
}

/// A filesystem whose `populate` fails after creating something: the mount fails and the
/// half-built instance is torn down (its inodes evicted, nothing leaked).
struct FailingPopulate(bpfvfs_vfs::memfs::MemFs);

impl FileSystem for FailingPopulate {
    fn fs_type(&self) -> &'static str {
        "failing"
    }
    fn magic(&self) -> u64 {
        1
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>> {
        self.0.fill_super(sb)
    }
    fn statfs(&self, sb: &SuperBlock) -> Result<StatFs> {
        self.0.statfs(sb)
    }
    fn populate(&self, vfs: &Vfs, root: &PathRef) -> Result<()> {
        vfs.create_at(&Cred::root(), root, b"early", NewKind::File, 0o644)?;
        Err(Errno::ENOMEM)
    }
    fn create(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        self.0.create(sb, dir, name, attrs)
    }
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        self.0.mkdir(sb, dir, name, attrs)
    }
    fn symlink(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        target: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        self.0.symlink(sb, dir, name, target, attrs)
    }
}

#[test]
fn failed_populate_leaves_nothing() {
    let (vfs, ev) = hooked();
    ok!(vfs.mkdir(&r(), None, b"/mnt", 0o755));
    let base = vfs.stats();
    let fs = Arc::new(FailingPopulate(bpfvfs_vfs::memfs::MemFs::new(
        Default::default(),
    )));
    assert_eq!(vfs.mount(&r(), fs, b"/mnt").err(), Some(Errno::ENOMEM));
    assert_eq!(vfs.mounts().len(), 1);
    assert!(ok!(vfs.readdir(&ok!(vfs.resolve(&r(), None, b"/mnt", 0)), 2, 10)).is_empty());
    // Its root and the file populate made are evicted, and their memory freed.
    assert_eq!(ev.total(), 2);
    assert!(ev.all_once());
    wait_for("failed mount freed", || {
        let s = vfs.stats();
        s.inodes_live == base.inodes_live && s.dentries_live == base.dentries_live
    });
}
