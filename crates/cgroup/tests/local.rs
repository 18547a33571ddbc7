//! The local cgroup tree in process: groups as directories, ids, errnos, membership,
//! exposures, walks, removal callbacks, concurrency.

use bpfvfs_cgroup::{install, tree_of, Cgroup, CgroupMode, CgroupTree, SeqShow, WalkOrder};
use bpfvfs_vfs::{oflags, Cred, Errno, FileType, Vfs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn setup() -> (Arc<Vfs>, Arc<CgroupTree>) {
    let vfs = Vfs::new_memfs();
    let tree = install(&vfs, CgroupMode::Local).expect("install");
    (vfs, tree)
}

fn root() -> Cred {
    Cred::root()
}

fn ls(vfs: &Vfs, path: &str) -> Vec<String> {
    let at = vfs.resolve(&root(), None, path.as_bytes(), 0).unwrap();
    let mut v: Vec<String> = vfs
        .readdir(&at, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

fn ino(vfs: &Vfs, path: &str) -> u64 {
    vfs.stat(&root(), None, path.as_bytes(), true).unwrap().ino
}

/// Wait (bounded) for deferred frees: other tests of this binary pin epochs too.
fn settle(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        bpfvfs_vfs::rcu_barrier();
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

fn mkdir(vfs: &Vfs, path: &str) -> Result<(), Errno> {
    vfs.mkdir(&root(), None, path.as_bytes(), 0o755).map(drop)
}

fn rmdir(vfs: &Vfs, path: &str) -> Result<(), Errno> {
    vfs.rmdir(&root(), None, path.as_bytes())
}

fn write(vfs: &Vfs, path: &str, data: &[u8]) -> Result<usize, Errno> {
    let f = vfs.open(
        &root(),
        None,
        path.as_bytes(),
        oflags::O_WRONLY | oflags::O_TRUNC,
        0,
    )?;
    vfs.write(&f, data, 0)
}

fn read(vfs: &Vfs, path: &str) -> Result<Vec<u8>, Errno> {
    vfs.read_file(&root(), path.as_bytes())
}

#[test]
fn mount_root_and_control_files() {
    let (vfs, tree) = setup();
    assert!(vfs
        .mounts()
        .iter()
        .any(|(p, t, _)| p == "/sys/fs/cgroup" && t == "cgroup2"));
    assert_eq!(
        ls(&vfs, "/sys/fs/cgroup"),
        ["cgroup.controllers", "cgroup.procs"]
    );
    let r = tree.root();
    assert_eq!(r.id(), ino(&vfs, "/sys/fs/cgroup"));
    assert_eq!(
        (r.level(), r.name(), r.path()),
        (0, String::new(), "/".to_string())
    );
    assert_eq!(r.ancestor_ids(), vec![r.id()]);
    assert!(Arc::ptr_eq(&tree_of(&vfs).unwrap(), &tree));
    assert_eq!(tree.mount_path(), "/sys/fs/cgroup");
    assert_eq!(
        read(&vfs, "/sys/fs/cgroup/cgroup.controllers").unwrap(),
        b"\n"
    );
    let st = vfs
        .stat(&root(), None, b"/sys/fs/cgroup/cgroup.procs", true)
        .unwrap();
    assert_eq!(st.mode & 0o7777, 0o644);
    let sf = vfs
        .statfs(&vfs.resolve(&root(), None, b"/sys/fs/cgroup", 0).unwrap())
        .unwrap();
    assert_eq!(sf.fs_type, bpfvfs_cgroup::CGROUP2_SUPER_MAGIC);
    // A second install on the same VFS is refused; another VFS gets its own tree.
    assert_eq!(install(&vfs, CgroupMode::Local).err(), Some(Errno::EBUSY));
    let (vfs2, tree2) = setup();
    assert!(!Arc::ptr_eq(&tree_of(&vfs2).unwrap(), &tree));
    assert!(Arc::ptr_eq(&tree_of(&vfs2).unwrap(), &tree2));
}

#[test]
fn groups_ids_levels_paths() {
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/a/b").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/c").unwrap();
    assert_eq!(
        ls(&vfs, "/sys/fs/cgroup"),
        ["a", "c", "cgroup.controllers", "cgroup.procs"]
    );
    assert_eq!(
        ls(&vfs, "/sys/fs/cgroup/a"),
        ["b", "cgroup.controllers", "cgroup.procs"]
    );
    let a_id = ino(&vfs, "/sys/fs/cgroup/a");
    let b_id = ino(&vfs, "/sys/fs/cgroup/a/b");
    let b = tree.by_id(b_id).unwrap();
    assert_eq!(b.id(), b_id);
    assert_eq!(b.level(), 2);
    assert_eq!(b.name(), "b");
    assert_eq!(b.path(), "/a/b");
    assert_eq!(b.parent().unwrap().id(), a_id);
    assert_eq!(b.ancestor_ids(), vec![tree.root().id(), a_id, b_id]);
    assert!(Arc::ptr_eq(&tree.of_inode(b_id).unwrap(), &b));
    assert!(Arc::ptr_eq(&tree.by_path("/a/b").unwrap(), &b));
    let names: Vec<String> = tree.root().children().iter().map(|g| g.name()).collect();
    assert_eq!(names, ["a", "c"]);
    let st = vfs.stat(&root(), None, b"/sys/fs/cgroup/a", true).unwrap();
    assert_eq!(st.mode & 0o7777, 0o755);
    assert_eq!(st.nlink, 3);
}

#[test]
fn kernel_errnos() {
    let (vfs, _tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    let c = root();
    // touch: no create in kernfs.
    let e = vfs
        .open(
            &c,
            None,
            b"/sys/fs/cgroup/a/x",
            oflags::O_CREAT | oflags::O_WRONLY,
            0o644,
        )
        .err();
    assert_eq!(e, Some(Errno::EACCES));
    assert_eq!(
        vfs.mknod(&c, None, b"/sys/fs/cgroup/a/y", 0o010644, 0)
            .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.symlink(&c, b"x", None, b"/sys/fs/cgroup/a/l").err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.unlink(&c, None, b"/sys/fs/cgroup/a/cgroup.procs").err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.link(
            &c,
            b"/sys/fs/cgroup/a/cgroup.procs",
            b"/sys/fs/cgroup/a/h",
            false
        )
        .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.rename(&c, b"/sys/fs/cgroup/a", b"/sys/fs/cgroup/z", 0)
            .err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        mkdir(&vfs, "/sys/fs/cgroup/a/cgroup.procs"),
        Err(Errno::EEXIST)
    );
    assert_eq!(mkdir(&vfs, "/sys/fs/cgroup/bad\nname"), Err(Errno::EINVAL));
    assert_eq!(
        rmdir(&vfs, "/sys/fs/cgroup/a/cgroup.procs"),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup"), Err(Errno::EBUSY));
    // Malformed and absent pids.
    assert_eq!(
        write(&vfs, "/sys/fs/cgroup/a/cgroup.procs", b"abc\n"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        write(&vfs, "/sys/fs/cgroup/a/cgroup.procs", b"1 2\n"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        write(&vfs, "/sys/fs/cgroup/a/cgroup.procs", b"-1\n"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        write(&vfs, "/sys/fs/cgroup/a/cgroup.procs", b"2147483600\n"),
        Err(Errno::ESRCH)
    );
    assert_eq!(write(&vfs, "/sys/fs/cgroup/a/cgroup.procs", b""), Ok(0));
    // An unprivileged user cannot write cgroup.procs (0644 root).
    let user = Cred::user(1000, 1000);
    assert_eq!(
        vfs.open(
            &user,
            None,
            b"/sys/fs/cgroup/a/cgroup.procs",
            oflags::O_WRONLY,
            0
        )
        .err(),
        Some(Errno::EACCES)
    );
}

#[test]
fn procs_membership_and_rmdir_busy() {
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/a/b").unwrap();
    let me = std::process::id();
    let a = tree.by_path("/a").unwrap();
    let b = tree.by_path("/a/b").unwrap();
    assert!(Arc::ptr_eq(&tree.group_of_pid(me), &tree.root()));
    // rmdir of a group with a child group: EBUSY, as cgroup_rmdir.
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup/a"), Err(Errno::EBUSY));
    // A child process joins b.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let cpid = child.id();
    write(
        &vfs,
        "/sys/fs/cgroup/a/b/cgroup.procs",
        format!(" {cpid}\n").as_bytes(),
    )
    .unwrap();
    write(
        &vfs,
        "/sys/fs/cgroup/a/b/cgroup.procs",
        format!("{me}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(b.procs(), vec![cpid, me]);
    assert_eq!(
        read(&vfs, "/sys/fs/cgroup/a/b/cgroup.procs").unwrap(),
        format!("{cpid}\n{me}\n").into_bytes()
    );
    assert!(Arc::ptr_eq(&tree.group_of_pid(cpid), &b));
    // A thread of this process: its thread group's group.
    let tid = std::thread::spawn(|| unsafe { libc::gettid() } as u32)
        .join()
        .unwrap();
    let _ = tid; // that thread is gone; use a live one:
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() } as u32).unwrap();
        let _ = done_rx.recv();
    });
    let live_tid = rx.recv().unwrap();
    assert!(Arc::ptr_eq(&tree.group_of_pid(live_tid), &b));
    // current(): the recorded caller's group, root when none.
    bpfvfs_vfs::task::set_caller(Some(bpfvfs_vfs::task::Caller {
        pid: live_tid,
        uid: 0,
        gid: 0,
    }));
    assert!(Arc::ptr_eq(&tree.current(), &b));
    bpfvfs_vfs::task::set_caller(None);
    assert!(Arc::ptr_eq(&tree.current(), &tree.root()));
    done_tx.send(()).unwrap();
    t.join().unwrap();
    // Writing a thread id moves its whole thread group (stored once).
    write(
        &vfs,
        "/sys/fs/cgroup/a/cgroup.procs",
        format!("{me}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(b.procs(), vec![cpid]);
    assert_eq!(a.procs(), vec![me]);
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup/a/b"), Err(Errno::EBUSY));
    // The member exits: the group is removable (dead members are dropped).
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(b.procs().is_empty(), "an exited process leaves its group");
    assert_eq!(read(&vfs, "/sys/fs/cgroup/a/b/cgroup.procs").unwrap(), b"");
    rmdir(&vfs, "/sys/fs/cgroup/a/b").unwrap();
    assert!(b.is_removed());
    assert!(tree.by_path("/a/b").is_none());
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup/a"), Err(Errno::EBUSY));
    write(&vfs, "/sys/fs/cgroup/cgroup.procs", b"0\n").unwrap(); // 0: the writer
    assert!(Arc::ptr_eq(&tree.group_of_pid(me), &tree.root()));
    assert!(a.procs().is_empty());
    rmdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    assert_eq!(
        ls(&vfs, "/sys/fs/cgroup"),
        ["cgroup.controllers", "cgroup.procs"]
    );
}

#[test]
fn rmdir_frees_nodes_and_runs_callbacks_once() {
    let (vfs, tree) = setup();
    let removed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = removed.clone();
    tree.on_remove(Arc::new(move |g: &Arc<Cgroup>| {
        assert!(g.is_removed());
        r.lock().unwrap().push(g.id());
    }));
    let base = vfs.stats();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    let a_id = ino(&vfs, "/sys/fs/cgroup/a");
    assert_eq!(vfs.stats().inodes_live, base.inodes_live + 3);
    assert_eq!(
        rmdir(&vfs, "/sys/fs/cgroup/a/cgroup.procs"),
        Err(Errno::ENOTDIR)
    );
    rmdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    assert_eq!(*removed.lock().unwrap(), vec![a_id]);
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup/a"), Err(Errno::ENOENT));
    assert_eq!(*removed.lock().unwrap(), vec![a_id]);
    assert!(tree.by_id(a_id).is_none());
    assert!(tree.of_inode(a_id).is_none());
    assert!(
        settle(|| vfs.stats().inodes_live == base.inodes_live),
        "directory and control files evicted and freed: {:?} vs {:?}",
        vfs.stats(),
        base
    );
    let now = vfs.stats();
    assert_eq!(now.dentries_hashed, base.dentries_hashed);
}

struct Counter(AtomicU64);
impl SeqShow for Counter {
    fn show(&self, g: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(format!("group {} open {n}\n", g.path()).into_bytes())
    }
}

#[test]
fn exposed_files() {
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    let a = tree.by_path("/a").unwrap();
    let show = Arc::new(Counter(AtomicU64::new(0)));
    let x = tree.expose(&a, b"view", show.clone(), false).unwrap();
    assert_eq!(
        read(&vfs, "/sys/fs/cgroup/a/view").unwrap(),
        b"group /a open 0\n"
    );
    // Generated once per open, served at any offset from that snapshot.
    let f = vfs
        .open(&root(), None, b"/sys/fs/cgroup/a/view", oflags::O_RDONLY, 0)
        .unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(vfs.read(&f, &mut buf, 6).unwrap(), 4);
    assert_eq!(&buf, b"/a o");
    assert_eq!(vfs.read(&f, &mut buf, 12).unwrap(), 4);
    assert_eq!(&buf, b"n 1\n");
    assert_eq!(vfs.read(&f, &mut buf, 100).unwrap(), 0);
    drop(f);
    let st = vfs
        .stat(&root(), None, b"/sys/fs/cgroup/a/view", true)
        .unwrap();
    assert_eq!((st.mode & 0o7777, st.size), (0o444, 0));
    assert_eq!(st.mode & bpfvfs_vfs::S_IFMT, bpfvfs_vfs::S_IFREG);
    // Name taken: EEXIST; users cannot remove it.
    assert_eq!(
        tree.expose(&a, b"view", show.clone(), false).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        tree.expose(&a, b"cgroup.procs", show.clone(), false).err(),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        vfs.unlink(&root(), None, b"/sys/fs/cgroup/a/view").err(),
        Some(Errno::EPERM)
    );
    assert_eq!(x.copies(), 1);
    x.remove();
    x.remove();
    assert!(x.is_removed());
    assert_eq!(
        vfs.stat(&root(), None, b"/sys/fs/cgroup/a/view", true)
            .err(),
        Some(Errno::ENOENT)
    );
    // rmdir of a group holding an exposed file removes it with the group.
    let y = tree.expose(&a, b"view", show.clone(), false).unwrap();
    let base = vfs.stats();
    rmdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    assert_eq!(y.copies(), 0);
    y.remove();
    // The group's directory, its two control files and the exposed file: evicted now,
    // their memory freed after the grace period (other tests' pins may delay it).
    assert_eq!(
        vfs.stats().inodes_evicted_total,
        base.inodes_evicted_total + 4
    );
    settle(|| vfs.stats().inodes_evicted_pending_free == 0);
    let now = vfs.stats();
    assert_eq!(now.inodes_evicted_pending_free, 0);
    assert_eq!(
        now.inodes_live,
        base.inodes_live - base.inodes_evicted_pending_free - 4
    );
    // Exposing in a removed group: ENOENT.
    assert_eq!(
        tree.expose(&a, b"v2", show, false).err(),
        Some(Errno::ENOENT)
    );
}

#[test]
fn inherited_exposure() {
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/a/b").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/c").unwrap();
    let a = tree.by_path("/a").unwrap();
    let show = Arc::new(Counter(AtomicU64::new(0)));
    let x = tree.expose(&a, b"view", show, true).unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/a/b/d").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/c/e").unwrap();
    for p in ["a", "a/b", "a/b/d"] {
        let text = read(&vfs, &format!("/sys/fs/cgroup/{p}/view")).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(&format!("group /{p} open")), "{text}");
    }
    for p in ["c", "c/e", ""] {
        assert_eq!(
            read(&vfs, &format!("/sys/fs/cgroup/{p}/view")).err(),
            Some(Errno::ENOENT)
        );
    }
    assert_eq!(x.copies(), 3);
    // Listings: the copy in a/b is inherited from a; metadata set later is seen.
    x.set_meta(bpfvfs_cgroup::ExposureMeta {
        id: 7,
        attach_type: "view".into(),
        name: "v".into(),
    });
    let b = tree.by_path("/a/b").unwrap();
    let in_b = tree.exposures_in(&b);
    assert_eq!(in_b.len(), 1);
    assert!(in_b[0].inherit && in_b[0].inherited_copy);
    assert_eq!(in_b[0].file, b"view");
    assert_eq!(in_b[0].meta.as_ref().unwrap().id, 7);
    let in_a = tree.exposures_in(&a);
    assert!(!in_a[0].inherited_copy);
    assert!(tree.exposures_in(&tree.by_path("/c").unwrap()).is_empty());
    // Removing a descendant takes its copy; the others stay.
    rmdir(&vfs, "/sys/fs/cgroup/a/b/d").unwrap();
    assert_eq!(x.copies(), 2);
    x.remove();
    assert!(tree.exposures_in(&b).is_empty());
    for p in ["a", "a/b"] {
        assert_eq!(
            read(&vfs, &format!("/sys/fs/cgroup/{p}/view")).err(),
            Some(Errno::ENOENT)
        );
    }
    // New groups after remove() get nothing.
    mkdir(&vfs, "/sys/fs/cgroup/a/f").unwrap();
    assert_eq!(
        ls(&vfs, "/sys/fs/cgroup/a/f"),
        ["cgroup.controllers", "cgroup.procs"]
    );
}

#[test]
fn walk_orders() {
    let (vfs, tree) = setup();
    for p in ["a", "a/b", "a/c", "a/b/d", "e"] {
        mkdir(&vfs, &format!("/sys/fs/cgroup/{p}")).unwrap();
    }
    let paths = |v: Vec<Arc<Cgroup>>| v.iter().map(|g| g.path()).collect::<Vec<_>>();
    let r = tree.root();
    let a = tree.by_path("/a").unwrap();
    let d = tree.by_path("/a/b/d").unwrap();
    assert_eq!(
        paths(tree.walk(&r, WalkOrder::DescendantsPre)),
        ["/", "/a", "/a/b", "/a/b/d", "/a/c", "/e"]
    );
    assert_eq!(
        paths(tree.walk(&r, WalkOrder::DescendantsPost)),
        ["/a/b/d", "/a/b", "/a/c", "/a", "/e", "/"]
    );
    assert_eq!(
        paths(tree.walk(&a, WalkOrder::DescendantsPre)),
        ["/a", "/a/b", "/a/b/d", "/a/c"]
    );
    assert_eq!(
        paths(tree.walk(&d, WalkOrder::AncestorsUp)),
        ["/a/b/d", "/a/b", "/a", "/"]
    );
    assert_eq!(paths(tree.walk(&d, WalkOrder::SelfOnly)), ["/a/b/d"]);
}

/// Many threads create and remove groups and move processes between them at once; at the
/// end every count agrees: groups in the tree == directories, each process in one group.
#[test]
fn concurrent_mkdir_rmdir_moves() {
    let (vfs, tree) = setup();
    let removed = Arc::new(AtomicU64::new(0));
    let r = removed.clone();
    tree.on_remove(Arc::new(move |_g: &Arc<Cgroup>| {
        r.fetch_add(1, Ordering::Relaxed);
    }));
    let mut kids: Vec<std::process::Child> = (0..4)
        .map(|_| {
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Arc<Vec<u32>> = Arc::new(kids.iter().map(|c| c.id()).collect());
    for i in 0..4 {
        mkdir(&vfs, &format!("/sys/fs/cgroup/g{i}")).unwrap();
    }
    let created = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let vfs = vfs.clone();
            let pids = pids.clone();
            let created = created.clone();
            std::thread::spawn(move || {
                for n in 0..150u32 {
                    let g = (n + t) % 4;
                    let sub = format!("/sys/fs/cgroup/g{g}/s{}", (n * 7 + t) % 5);
                    match t % 3 {
                        0 => {
                            if mkdir(&vfs, &sub).is_ok() {
                                created.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        1 => {
                            let _ = rmdir(&vfs, &sub);
                        }
                        _ => {
                            let pid = pids[(n as usize) % pids.len()];
                            let target = if n % 2 == 0 {
                                sub
                            } else {
                                format!("/sys/fs/cgroup/g{g}")
                            };
                            match write(
                                &vfs,
                                &format!("{target}/cgroup.procs"),
                                format!("{pid}\n").as_bytes(),
                            ) {
                                Ok(_) | Err(Errno::ENOENT) | Err(Errno::ENODEV) => {}
                                Err(e) => panic!("move: {e:?}"),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every group in the tree has its directory and vice versa.
    let all = tree.walk(&tree.root(), WalkOrder::DescendantsPre);
    let mut dirs = 1;
    for i in 0..4 {
        let names = ls(&vfs, &format!("/sys/fs/cgroup/g{i}"));
        dirs += 1 + names.iter().filter(|n| n.starts_with('s')).count();
    }
    assert_eq!(all.len(), dirs);
    for g in &all {
        assert_eq!(g.id(), ino(&vfs, &format!("/sys/fs/cgroup{}", g.path())));
    }
    // Each process is in exactly one group.
    let mut seen = Vec::new();
    for g in &all {
        for p in g.procs() {
            seen.push(p);
            assert!(Arc::ptr_eq(&tree.group_of_pid(p), g));
        }
    }
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "a process listed twice");
    // Groups created == groups still there + groups removed.
    assert_eq!(
        created.load(Ordering::Relaxed),
        (all.len() - 5) as u64 + removed.load(Ordering::Relaxed)
    );
    for c in kids.iter_mut() {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[test]
fn dir_types_in_readdir() {
    let (vfs, _tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/a").unwrap();
    let at = vfs.resolve(&root(), None, b"/sys/fs/cgroup", 0).unwrap();
    let ents = vfs.readdir(&at, 0, usize::MAX).unwrap();
    let a = ents.iter().find(|e| e.name == b"a").unwrap();
    assert_eq!(a.kind, FileType::Directory);
    let p = ents.iter().find(|e| e.name == b"cgroup.procs").unwrap();
    assert_eq!(p.kind, FileType::Regular);
}

/// Inherited exposures made and removed while other threads create and remove groups below:
/// once the last exposure is removed no exposed file is left anywhere, and once every group
/// is gone every inode they used is evicted.
#[test]
fn concurrent_inherited_exposures_and_groups() {
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/p").unwrap();
    let p = tree.by_path("/p").unwrap();
    let base = vfs.stats();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn: Vec<_> = (0..3)
        .map(|t| {
            let (vfs, stop) = (vfs.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let g = format!("/sys/fs/cgroup/p/t{t}_{}", n % 4);
                    let _ = mkdir(&vfs, &g);
                    let _ = mkdir(&vfs, &format!("{g}/s"));
                    let _ = rmdir(&vfs, &format!("{g}/s"));
                    if n.is_multiple_of(3) {
                        let _ = rmdir(&vfs, &g);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let show = Arc::new(Counter(AtomicU64::new(0)));
    for i in 0..200 {
        let x = tree.expose(&p, format!("v{}", i % 3).as_bytes(), show.clone(), true);
        let x = x.unwrap();
        if i % 2 == 0 {
            std::thread::yield_now();
        }
        x.remove();
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        t.join().unwrap();
    }
    for g in tree.walk(&p, WalkOrder::DescendantsPre) {
        let path = format!("/sys/fs/cgroup{}", g.path());
        let names = ls(&vfs, &path);
        assert!(
            names.iter().all(|n| !n.starts_with('v')),
            "{path}: exposed file left: {names:?}"
        );
        assert!(tree.exposures_in(&g).is_empty());
    }
    for g in tree.walk(&p, WalkOrder::DescendantsPost) {
        if !Arc::ptr_eq(&g, &p) {
            rmdir(&vfs, &format!("/sys/fs/cgroup{}", g.path())).unwrap();
        }
    }
    // Every inode made since (directories, control files, exposed files, and those made
    // for a copy that found its name taken) is gone once the grace period passed.
    let settled = settle(|| {
        let now = vfs.stats();
        now.inodes_evicted_pending_free == 0
            && now.inodes_live == base.inodes_live - base.inodes_evicted_pending_free
    });
    assert!(settled, "inodes left: {:?} vs {:?}", vfs.stats(), base);
}

/// A process forked by a member belongs to its parent's group (the kernel's fork rule),
/// shows in that group's cgroup.procs and keeps it busy; a process whose ancestors are in
/// no group is in the root; moving the parent later does not move the child.
#[test]
fn children_of_members_inherit_the_group() {
    use std::io::{BufRead, BufReader, Write};
    let (vfs, tree) = setup();
    mkdir(&vfs, "/sys/fs/cgroup/g").unwrap();
    mkdir(&vfs, "/sys/fs/cgroup/h").unwrap();
    let g = tree.by_path("/g").unwrap();
    let h = tree.by_path("/h").unwrap();
    // A shell that forks a sleeper once told to (after it joined g).
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg("read go; sleep 30 & echo $!; wait")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let shpid = sh.id();
    write(
        &vfs,
        "/sys/fs/cgroup/g/cgroup.procs",
        format!("{shpid}\n").as_bytes(),
    )
    .unwrap();
    sh.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(sh.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    assert!(Arc::ptr_eq(&tree.group_of_pid(child), &g));
    assert_eq!(g.procs(), vec![shpid, child]);
    // The parent moves on; the child stays (fork fixed its group).
    write(
        &vfs,
        "/sys/fs/cgroup/h/cgroup.procs",
        format!("{shpid}\n").as_bytes(),
    )
    .unwrap();
    assert!(Arc::ptr_eq(&tree.group_of_pid(child), &g));
    assert!(Arc::ptr_eq(&tree.group_of_pid(shpid), &h));
    assert_eq!(rmdir(&vfs, "/sys/fs/cgroup/g"), Err(Errno::EBUSY));
    // This test process's ancestors are in no group: root.
    assert!(Arc::ptr_eq(
        &tree.group_of_pid(std::process::id()),
        &tree.root()
    ));
    // Once both exit, the groups empty and can go.
    // SAFETY: kill has no memory preconditions; the pids are our own children.
    unsafe {
        libc::kill(child as i32, libc::SIGKILL);
        libc::kill(shpid as i32, libc::SIGKILL);
    }
    let _ = sh.wait();
    assert!(settle(|| rmdir(&vfs, "/sys/fs/cgroup/g").is_ok()));
    assert!(settle(|| rmdir(&vfs, "/sys/fs/cgroup/h").is_ok()));
}
