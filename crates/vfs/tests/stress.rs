//! Concurrency stress: resolvers racing creators, renamers, unlinkers, linkers and file
//! handles in a small tree, then a full consistency check of what is left and a leak check
//! once everything is removed.
//!
//! Iteration counts are fixed (no time-based assertions); the whole file takes a few seconds
//! in a debug build.

use bpfvfs_vfs::oflags::*;
use bpfvfs_vfs::rename_flags::*;
use bpfvfs_vfs::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    loop {
        rcu_barrier();
        if cond() {
            return;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            panic!("timed out waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

const DIRS: [&str; 4] = ["/s/a", "/s/b", "/s/a/x", "/s/m"];
const NAMES: [&str; 6] = ["n0", "n1", "n2", "n3", "n4", "n5"];

/// A random path under /s: a few components from the directory and entry names, with the
/// occasional ".", ".." and doubled slash; sometimes through the mount at /s/m.
fn random_path(rng: &mut Rng) -> Vec<u8> {
    let mut p = DIRS[rng.below(DIRS.len())].to_string();
    for _ in 0..rng.below(3) {
        match rng.below(10) {
            0 => p.push_str("/.."),
            1 => p.push_str("/."),
            2 => p.push_str("//x"),
            _ => {
                p.push('/');
                p.push_str(NAMES[rng.below(NAMES.len())]);
            }
        }
    }
    p.push('/');
    p.push_str(NAMES[rng.below(NAMES.len())]);
    if rng.below(8) == 0 {
        p.push('/');
    }
    p.into_bytes()
}

/// Errors a racing operation may legitimately get.
fn expected(e: Errno) -> bool {
    [
        Errno::ENOENT,
        Errno::EEXIST,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::ENOTEMPTY,
        Errno::EINVAL, // moving a directory under itself
        Errno::EPERM,  // hard link to a directory
        Errno::EXDEV,  // across the mount
        Errno::ELOOP,  // random symlinks make loops
        Errno::EBUSY,  // renaming or removing the mount point
    ]
    .contains(&e)
}

fn writer(vfs: Arc<Vfs>, seed: u64, iters: usize, stats: Arc<Mutex<HashMap<String, u64>>>) {
    let mut rng = Rng(seed);
    let mut handles: Vec<Arc<File>> = Vec::new();
    let mut local: HashMap<String, u64> = HashMap::new();
    for _ in 0..iters {
        let a = random_path(&mut rng);
        let b = random_path(&mut rng);
        let op = rng.below(14);
        let res: Result<()> = match op {
            0 | 1 => vfs
                .open(&r(), None, &a, O_CREAT | O_RDWR, 0o644)
                .and_then(|f| vfs.write(&f, b"payload", 0).map(|_| ())),
            2 => vfs.mkdir(&r(), None, &a, 0o755).map(|_| ()),
            3 => {
                let t = NAMES[rng.below(NAMES.len())].as_bytes().to_vec();
                vfs.symlink(&r(), &t, None, &a).map(|_| ())
            }
            4 | 5 => vfs.rename(&r(), &a, &b, 0),
            6 => vfs.rename(&r(), &a, &b, RENAME_EXCHANGE),
            7 => vfs.rename(&r(), &a, &b, RENAME_NOREPLACE),
            8 | 9 => vfs.unlink(&r(), None, &a),
            10 => vfs.rmdir(&r(), None, &a),
            11 => vfs.link(&r(), &a, &b, rng.below(2) == 0).map(|_| ()),
            12 => match vfs.open(&r(), None, &a, O_RDWR, 0) {
                // Hold a handle across later operations (unlink-while-open and friends).
                Ok(f) => {
                    let _ = vfs.write(&f, b"held", 4);
                    handles.push(f);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            _ => {
                if !handles.is_empty() {
                    let f = handles.swap_remove(rng.below(handles.len()));
                    let mut buf = [0u8; 16];
                    let _ = vfs.read(&f, &mut buf, 0);
                }
                Ok(())
            }
        };
        let key = match &res {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                assert!(
                    expected(*e),
                    "op {op} {:?} {:?}: {e:?}",
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b)
                );
                e.name().to_string()
            }
        };
        *local.entry(key).or_default() += 1;
    }
    drop(handles);
    let mut s = stats.lock().unwrap();
    for (k, v) in local {
        *s.entry(k).or_default() += v;
    }
}

fn reader(vfs: Arc<Vfs>, seed: u64, max_iters: usize, done: Arc<AtomicBool>, hits: Arc<AtomicU64>) {
    let mut rng = Rng(seed);
    let mut i = 0;
    while i < max_iters && !done.load(Ordering::Acquire) {
        i += 1;
        let p = random_path(&mut rng);
        let follow = if rng.below(2) == 0 { LOOKUP_FOLLOW } else { 0 };
        match vfs.resolve(&r(), None, &p, follow) {
            Ok(at) => {
                hits.fetch_add(1, Ordering::Relaxed);
                let st = vfs.getattr(&at);
                assert!(st.file_type().is_some());
                match st.file_type().unwrap() {
                    FileType::Directory => {
                        if let Ok(ents) = vfs.readdir(&at, 0, 64) {
                            let names: HashSet<&Vec<u8>> = ents.iter().map(|e| &e.name).collect();
                            assert_eq!(names.len(), ents.len(), "duplicate in one readdir batch");
                        }
                    }
                    FileType::Regular => {
                        if let Ok(f) = vfs.open_at(&r(), &at, O_RDONLY) {
                            let mut buf = [0u8; 16];
                            ok!(vfs.read(&f, &mut buf, 0));
                        }
                    }
                    _ => {}
                }
            }
            Err(e) => assert!(
                [Errno::ENOENT, Errno::ENOTDIR, Errno::ELOOP].contains(&e),
                "resolve {:?}: {e:?}",
                String::from_utf8_lossy(&p)
            ),
        }
        // Parent lookups as creators do them.
        if let Ok((dir, last, _)) = vfs.resolve_parent(&r(), None, &p) {
            assert!(dir.inode().is_dir());
            assert!(!last.is_empty() && !last.contains(&b'/'));
        }
    }
}

/// Walk the tree: every readdir name once, every one found by lookup with the same inode and
/// type; directory link counts; file link counts equal to the names found. Returns the
/// number of names (entries other than "." and "..") seen.
fn check_tree(vfs: &Vfs) -> usize {
    let mut names_of_ino: HashMap<u64, (u32, u32)> = HashMap::new(); // ino -> (names, nlink)
    let mut total = 0;
    let mut stack = vec![vfs.root()];
    while let Some(dir) = stack.pop() {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut subdirs = 0;
        let mut off = 0;
        loop {
            let batch = ok!(vfs.readdir(&dir, off, 7));
            let Some(last) = batch.last() else { break };
            off = last.offset;
            for e in batch {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                assert!(
                    seen.insert(e.name.clone()),
                    "{:?} listed twice",
                    String::from_utf8_lossy(&e.name)
                );
                total += 1;
                let child = ok!(vfs.lookup_at(&r(), &dir, &e.name));
                // lookup_at crosses mounts; readdir reports the covered directory.
                let covered = !std::ptr::eq(&*child.mnt, &*dir.mnt);
                if !covered {
                    assert_eq!(
                        child.inode().ino(),
                        e.ino,
                        "{:?}",
                        String::from_utf8_lossy(&e.name)
                    );
                }
                assert_eq!(vfs.getattr(&child).file_type(), Some(e.kind));
                if e.kind == FileType::Directory {
                    subdirs += 1;
                    stack.push(child);
                } else {
                    let n = names_of_ino
                        .entry(e.ino)
                        .or_insert((0, child.inode().nlink()));
                    n.0 += 1;
                }
            }
        }
        assert_eq!(
            vfs.getattr(&dir).nlink,
            2 + subdirs,
            "directory {:?} link count",
            String::from_utf8_lossy(&vfs.path_of(&dir))
        );
    }
    for (ino, (names, nlink)) in names_of_ino {
        assert_eq!(names, nlink, "inode {ino}: {names} names, nlink {nlink}");
    }
    total
}

fn remove_all(vfs: &Vfs, dir: &PathRef) {
    for e in ok!(vfs.readdir(dir, 2, usize::MAX)) {
        let child = ok!(vfs.lookup_at(&r(), dir, &e.name));
        if e.kind == FileType::Directory {
            if !std::ptr::eq(&*child.mnt, &*dir.mnt) {
                continue; // a mount point: unmounted by the caller
            }
            remove_all(vfs, &child);
            ok!(vfs.rmdir_at(&r(), dir, &e.name));
        } else {
            ok!(vfs.unlink_at(&r(), dir, &e.name));
        }
    }
}

#[test]
fn stress_mixed_operations() {
    let vfs = Vfs::new_memfs();
    let evictions = Arc::new(Mutex::new(HashMap::<u64, u32>::new()));
    let ev = evictions.clone();
    vfs.register_evict_hook(Arc::new(move |i: &Arc<Inode>| {
        *ev.lock().unwrap().entry(i.ino()).or_default() += 1;
    }));
    let base = vfs.stats();
    assert_eq!(base.inodes_live, 1);
    ok!(vfs.mkdir(&r(), None, b"/s", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/s/a", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/s/b", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/s/a/x", 0o755));
    ok!(vfs.mkdir(&r(), None, b"/s/m", 0o755));
    ok!(vfs.mount_type(&r(), "tmpfs", "", b"/s/m"));
    for d in DIRS {
        for n in &NAMES[..3] {
            ok!(vfs.write_file(&r(), format!("{d}/{n}").as_bytes(), b"init"));
        }
    }

    let done = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(Mutex::new(HashMap::new()));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (vfs, stats) = (vfs.clone(), stats.clone());
            std::thread::spawn(move || writer(vfs, 0x9E3779B97F4A7C15 ^ (t + 1), 80_000, stats))
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (vfs, done, hits) = (vfs.clone(), done.clone(), hits.clone());
            std::thread::spawn(move || {
                reader(vfs, 0xD1B54A32D192ED03 ^ (t + 7), 200_000, done, hits)
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer panicked");
    }
    done.store(true, Ordering::Release);
    for rd in readers {
        rd.join().expect("reader panicked");
    }
    eprintln!("writer results: {:?}", stats.lock().unwrap());
    eprintln!("reader hits: {}", hits.load(Ordering::Relaxed));
    assert!(stats.lock().unwrap().get("ok").copied().unwrap_or(0) > 1000);
    assert!(hits.load(Ordering::Relaxed) > 0);

    // Consistency of what is left.
    let s0 = vfs.stats();
    let total = check_tree(&vfs);
    eprintln!("{total} names left; {s0:?}");
    assert_eq!(
        s0.dentries_hashed as usize, total,
        "hashed dentries vs names in the tree"
    );
    assert_eq!(s0.files_open, 0);
    assert!(s0.walks_lockless > 0, "the lockless walk never completed");
    assert!(s0.walks_locked > 0, "the locked walk never ran");

    // Remove everything: only the root is left, every other inode evicted exactly once.
    let m = ok!(vfs.resolve(&r(), None, b"/s/m", LOOKUP_FOLLOW));
    remove_all(&vfs, &m);
    // The mounted filesystem's space and inode accounting is back to "root only".
    let st = ok!(vfs.statfs(&m));
    assert_eq!((st.bfree, st.ffree), (st.blocks, st.files - 1));
    drop(m);
    ok!(vfs.umount(&r(), b"/s/m"));
    // (".." in the random paths lets names land anywhere, the root included.)
    remove_all(&vfs, &vfs.root());
    assert!(ok!(vfs.readdir(&vfs.root(), 2, 10)).is_empty());
    let st = ok!(vfs.statfs(&vfs.root()));
    assert_eq!((st.bfree, st.ffree), (st.blocks, st.files - 1));
    wait_for("inodes back to the root alone", || {
        vfs.stats().inodes_live == 1
    });
    wait_for("dentries back to the root alone", || {
        vfs.stats().dentries_live == 1
    });
    let end = vfs.stats();
    assert_eq!(end.dentries_hashed, 0);
    assert_eq!(end.inodes_evicted_pending_free, 0);
    assert_eq!(end.files_open, 0);
    assert_eq!(end.inodes_allocated_total - 1, end.inodes_evicted_total);
    let ev = evictions.lock().unwrap();
    assert_eq!(ev.len() as u64, end.inodes_evicted_total);
    assert!(ev.values().all(|&n| n == 1), "an inode was evicted twice");
}

/// Directories renamed back and forth across parents (and exchanged) while walkers go
/// through them with ".." and symlinks: a walk either fails with ENOENT or ends at one of the
/// objects that could be there.
#[test]
fn stress_directory_renames_and_dotdot() {
    let vfs = Vfs::new_memfs();
    for p in ["/p", "/q", "/p/d", "/p/d/e", "/q/f"] {
        ok!(vfs.mkdir(&r(), None, p.as_bytes(), 0o755));
    }
    ok!(vfs.write_file(&r(), b"/p/d/e/file", b"E"));
    ok!(vfs.write_file(&r(), b"/q/f/file", b"F"));
    ok!(vfs.symlink(&r(), b"/p/d/e", None, b"/le"));
    let ino = |p: &[u8]| ok!(vfs.stat(&r(), None, p, true)).ino;
    let (ip, iq) = (ino(b"/p"), ino(b"/q"));
    let (id, ie, if_) = (ino(b"/p/d"), ino(b"/p/d/e"), ino(b"/q/f"));
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let (vfs, done) = (vfs.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..12_000 {
                match i % 4 {
                    0 => ok!(vfs.rename(&r(), b"/p/d", b"/q/d", 0)),
                    1 => ok!(vfs.rename(&r(), b"/q/d", b"/p/d", 0)),
                    2 => ok!(vfs.rename(&r(), b"/p/d", b"/q/f", RENAME_EXCHANGE)),
                    _ => ok!(vfs.rename(&r(), b"/q/f", b"/p/d", RENAME_EXCHANGE)),
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut n = 0u64;
    let mut oks = 0u64;
    while !done.load(Ordering::Acquire) && n < 1_000_000 {
        n += 1;
        for (p, want) in [
            // ".." is taken on the directory as it is when the walk gets there: a directory
            // moved meanwhile answers with its new parent (as Linux's ref-walk does).
            (&b"/p/d/e/.."[..], vec![id]),
            (b"/p/d/..", vec![ip, iq]),
            (b"/q/d/..", vec![iq, ip]),
            (b"/p/d/e/../..", vec![ip, iq]),
            (b"/le/..", vec![id]),
            (b"/le/../..", vec![ip, iq]),
            (b"/le/file", vec![]),
            (b"/p/d", vec![id, if_]),
        ] {
            match vfs.resolve(&r(), None, p, LOOKUP_FOLLOW) {
                Ok(at) => {
                    oks += 1;
                    if !want.is_empty() {
                        assert!(
                            want.contains(&at.inode().ino()),
                            "{:?} -> ino {}",
                            String::from_utf8_lossy(p),
                            at.inode().ino()
                        );
                    }
                }
                Err(Errno::ENOENT) => {}
                Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(p)),
            }
        }
    }
    mover.join().unwrap();
    assert!(oks > 0);
    // A multiple of 4 moves: back where it started.
    assert_eq!(ino(b"/p/d"), id);
    assert_eq!(ino(b"/p/d/e"), ie);
    assert_eq!(ino(b"/q/f"), if_);
    assert_eq!(ok!(vfs.read_file(&r(), b"/le/file")), b"E");
    assert_eq!(ok!(vfs.stat(&r(), None, b"/p", true)).nlink, 3);
    assert_eq!(ok!(vfs.stat(&r(), None, b"/q", true)).nlink, 3);
}

/// Many threads creating and removing the same few names in one directory: every operation
/// either succeeds or gets the errno the state explains, and the directory ends consistent.
#[test]
fn stress_same_names_one_directory() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/d", 0o755));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let vfs = vfs.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ (t + 1));
                let mut created = 0u64;
                for _ in 0..10_000 {
                    let name = format!("/d/{}", NAMES[rng.below(NAMES.len())]);
                    let other = format!("/d/{}", NAMES[rng.below(NAMES.len())]);
                    let res = match rng.below(6) {
                        0 => vfs
                            .open(
                                &r(),
                                None,
                                name.as_bytes(),
                                O_CREAT | O_EXCL | O_RDWR,
                                0o644,
                            )
                            .map(|_| created += 1),
                        1 => vfs
                            .mkdir(&r(), None, name.as_bytes(), 0o755)
                            .map(|_| created += 1),
                        2 => vfs.unlink(&r(), None, name.as_bytes()),
                        3 => vfs.rmdir(&r(), None, name.as_bytes()),
                        4 => vfs.rename(&r(), name.as_bytes(), other.as_bytes(), 0),
                        _ => vfs
                            .link(&r(), name.as_bytes(), other.as_bytes(), false)
                            .map(|_| ()),
                    };
                    if let Err(e) = res {
                        assert!(
                            [
                                Errno::ENOENT,
                                Errno::EEXIST,
                                Errno::EISDIR,
                                Errno::ENOTDIR,
                                Errno::EPERM
                            ]
                            .contains(&e),
                            "{e:?}"
                        );
                    }
                }
                created
            })
        })
        .collect();
    let created: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(created > 0);
    assert_eq!(check_tree(&vfs) as i64, vfs.stats().dentries_hashed);
    let d = ok!(vfs.resolve(&r(), None, b"/d", 0));
    remove_all(&vfs, &d);
    drop(d);
    ok!(vfs.rmdir(&r(), None, b"/d"));
    wait_for("all freed", || {
        let s = vfs.stats();
        s.inodes_live == 1 && s.dentries_live == 1 && s.dentries_hashed == 0
    });
}

/// Lock order: a cross-directory rename between a directory and its own subdirectory must
/// lock the ancestor first, like every parent -> child locker (rmdir, rename's target check)
/// does, even when the subdirectory is older (smaller dentry id) than its parent — which a
/// rename makes possible. Otherwise rename (child, then parent) and rmdir (parent, then
/// child) deadlock.
#[test]
fn stress_rename_between_parent_and_child_vs_rmdir() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/Q", 0o755)); // older: smaller dentry id
    ok!(vfs.mkdir(&r(), None, b"/P", 0o755));
    ok!(vfs.rename(&r(), b"/Q", b"/P/Q", 0)); // now the child is older than its parent
    ok!(vfs.write_file(&r(), b"/P/Q/keep", b""));
    ok!(vfs.write_file(&r(), b"/P/x", b""));
    let (tx, rx) = std::sync::mpsc::channel();
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        })
    };
    let v1 = vfs.clone();
    spawn(Box::new(move || {
        for _ in 0..20_000 {
            ok!(v1.rename(&r(), b"/P/x", b"/P/Q/x", 0));
            ok!(v1.rename(&r(), b"/P/Q/x", b"/P/x", 0));
        }
    }));
    let v2 = vfs.clone();
    spawn(Box::new(move || {
        for _ in 0..40_000 {
            assert_eq!(v2.rmdir(&r(), None, b"/P/Q"), Err(Errno::ENOTEMPTY));
        }
    }));
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("deadlock: rename (child, parent) against rmdir (parent, child)");
    }
    assert_eq!(ok!(vfs.read_file(&r(), b"/P/x")), b"");
}

/// memfs's space and inode accounting under concurrent creates, hard links (each holding an
/// inode slot, as in tmpfs), writes, renames over linked files and unlinks of the names of
/// one inode from different directories: never more in use than the limits, and everything
/// back once the tree is empty.
#[test]
fn stress_memfs_accounting() {
    let vfs = Vfs::new_memfs();
    ok!(vfs.mkdir(&r(), None, b"/lim", 0o755));
    let fs = Arc::new(ok!(bpfvfs_vfs::memfs::MemFs::from_options(
        "size=256k,nr_inodes=64"
    )));
    ok!(vfs.mount(&r(), fs.clone(), b"/lim"));
    for d in ["/lim/a", "/lim/b", "/lim/c"] {
        ok!(vfs.mkdir(&r(), None, d.as_bytes(), 0o755));
    }
    let lim = ok!(vfs.resolve(&r(), None, b"/lim", LOOKUP_FOLLOW));
    let total = ok!(vfs.statfs(&lim));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (vfs, lim) = (vfs.clone(), lim.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x5851_F42D_4C95_7F2D ^ (t + 3));
                let dirs = ["/lim/a", "/lim/b", "/lim/c"];
                for _ in 0..3000 {
                    let a = format!("{}/{}", dirs[rng.below(3)], NAMES[rng.below(NAMES.len())]);
                    let b = format!("{}/{}", dirs[rng.below(3)], NAMES[rng.below(NAMES.len())]);
                    let res = match rng.below(6) {
                        0 => vfs
                            .open(&r(), None, a.as_bytes(), O_CREAT | O_WRONLY, 0o644)
                            .and_then(|f| {
                                vfs.write(&f, &[1u8; 9000], rng.below(4) as u64 * 4096)
                                    .map(|_| ())
                            }),
                        1 | 2 => vfs
                            .link(&r(), a.as_bytes(), b.as_bytes(), false)
                            .map(|_| ()),
                        3 => vfs.rename(&r(), a.as_bytes(), b.as_bytes(), 0),
                        _ => vfs.unlink(&r(), None, a.as_bytes()),
                    };
                    if let Err(e) = res {
                        assert!(
                            [Errno::ENOENT, Errno::EEXIST, Errno::ENOSPC].contains(&e),
                            "{e:?}"
                        );
                    }
                    let st = ok!(vfs.statfs(&lim));
                    assert!(st.ffree <= st.files && st.bfree <= st.blocks, "{st:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let _ = check_tree(&vfs);
    for d in ["/lim/a", "/lim/b", "/lim/c"] {
        let p = ok!(vfs.resolve(&r(), None, d.as_bytes(), 0));
        remove_all(&vfs, &p);
    }
    let st = ok!(vfs.statfs(&lim));
    assert_eq!((st.bfree, st.ffree), (total.bfree, total.ffree));
    assert_eq!(fs.pages_used(), 0);
}
