//! Host mode against the real cgroup v2 mount: a scratch subtree made on the host shows up
//! with the host's names, ids, levels and order; the mirror is read-only. Skips with the
//! reason where there is no cgroup v2 hierarchy or we are not root.

use bpfvfs_cgroup::{find_host_cgroup2, install, CgroupMode, WalkOrder};
use bpfvfs_vfs::{oflags, Cred, Errno, Vfs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A scratch subtree of the host hierarchy, removed on drop (children first; member
/// processes moved back to the root first).
struct Scratch {
    host_root: PathBuf,
    top: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Scratch {
    fn new(host_root: &Path, tag: &str, rel: &[&str]) -> std::io::Result<Scratch> {
        // Tests of this binary run in parallel: one top directory each.
        let top = host_root.join(format!("bpfvfs-test-{tag}-{}", std::process::id()));
        let mut s = Scratch {
            host_root: host_root.to_path_buf(),
            top: top.clone(),
            dirs: Vec::new(),
        };
        std::fs::create_dir(&top)?;
        s.dirs.push(top.clone());
        for r in rel {
            let p = top.join(r);
            std::fs::create_dir(&p)?;
            s.dirs.push(p);
        }
        Ok(s)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for p in procs.lines() {
                    let _ = std::fs::write(self.host_root.join("cgroup.procs"), p);
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn host() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root (creating host cgroups needs it)");
        return None;
    }
    match find_host_cgroup2() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn host_mirror_matches_host() {
    let Some(h) = host() else { return };
    let scratch = Scratch::new(&h, "mirror", &["a", "a/b", "c", "a/d"]).expect("scratch cgroups");
    let top_name = scratch
        .top
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let vfs = Vfs::new_memfs();
    let tree = install(&vfs, CgroupMode::Host(h.clone())).expect("install host mode");
    let root = Cred::root();

    assert_eq!(tree.root().id(), std::fs::metadata(&h).unwrap().ino());
    // Ids, levels, names as on the host.
    for rel in ["", "a", "a/b", "c", "a/d"] {
        let hp = scratch.top.join(rel);
        let gpath = if rel.is_empty() {
            format!("/{top_name}")
        } else {
            format!("/{top_name}/{rel}")
        };
        let g = tree.by_path(&gpath).unwrap_or_else(|| panic!("{gpath}"));
        assert_eq!(g.id(), std::fs::metadata(&hp).unwrap().ino(), "{gpath}");
        assert_eq!(g.level() as usize, gpath.matches('/').count());
        assert_eq!(g.path(), gpath);
        // Through the VFS: the directory exists; its group is found by inode number.
        let st = vfs
            .stat(
                &root,
                None,
                format!("/sys/fs/cgroup{gpath}").as_bytes(),
                true,
            )
            .unwrap();
        assert!(Arc::ptr_eq(&tree.of_inode(st.ino).unwrap(), &g));
    }
    // Walk order: creation order (a before c; b before d).
    let top = tree.by_path(&format!("/{top_name}")).unwrap();
    let names: Vec<String> = tree
        .walk(&top, WalkOrder::DescendantsPre)
        .iter()
        .map(|g| g.path())
        .collect();
    let p = |s: &str| format!("/{top_name}{s}");
    assert_eq!(names, [p(""), p("/a"), p("/a/b"), p("/a/d"), p("/c")]);
    let post: Vec<String> = tree
        .walk(&top, WalkOrder::DescendantsPost)
        .iter()
        .map(|g| g.path())
        .collect();
    assert_eq!(post, [p("/a/b"), p("/a/d"), p("/a"), p("/c"), p("")]);

    // readdir of the mirror lists the host's groups; new host groups appear, removed ones go.
    let ls = |path: &str| -> Vec<String> {
        let f = vfs
            .open(
                &root,
                None,
                path.as_bytes(),
                oflags::O_RDONLY | oflags::O_DIRECTORY,
                0,
            )
            .unwrap();
        let mut v: Vec<String> = vfs
            .readdir(f.path(), 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .filter(|n| !n.starts_with('.') && !n.starts_with("cgroup."))
            .collect();
        v.sort();
        v
    };
    let vtop = format!("/sys/fs/cgroup/{top_name}");
    assert_eq!(ls(&vtop), ["a", "c"]);
    // An inherited exposure on the scratch top reaches host groups made afterwards.
    struct Id;
    impl bpfvfs_cgroup::SeqShow for Id {
        fn show(&self, g: &Arc<bpfvfs_cgroup::Cgroup>) -> Result<Vec<u8>, Errno> {
            Ok(format!("{}\n", g.id()).into_bytes())
        }
    }
    let x = tree.expose(&top, b"id.view", Arc::new(Id), true).unwrap();
    std::fs::create_dir(scratch.top.join("e")).unwrap();
    assert_eq!(ls(&vtop), ["a", "c", "e", "id.view"]);
    let e_host_id = std::fs::metadata(scratch.top.join("e")).unwrap().ino();
    assert_eq!(
        vfs.read_file(&root, format!("{vtop}/e/id.view").as_bytes())
            .unwrap(),
        format!("{e_host_id}\n").into_bytes()
    );
    assert_eq!(x.copies(), 6); // top, a, a/b, a/d, c, e
    x.remove();
    assert_eq!(ls(&vtop), ["a", "c", "e"]);
    let e = tree.by_path(&format!("/{top_name}/e")).unwrap();
    std::fs::remove_dir(scratch.top.join("e")).unwrap();
    assert_eq!(ls(&vtop), ["a", "c"]);
    assert!(e.is_removed());

    // Read-only.
    assert_eq!(
        vfs.mkdir(&root, None, format!("{vtop}/x").as_bytes(), 0o755)
            .err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        vfs.rmdir(&root, None, format!("{vtop}/c").as_bytes()).err(),
        Some(Errno::EROFS)
    );
    assert_eq!(
        vfs.open(
            &root,
            None,
            format!("{vtop}/a/cgroup.procs").as_bytes(),
            oflags::O_WRONLY,
            0
        )
        .err(),
        Some(Errno::EROFS)
    );

    // Membership from the host: a process moved into a/b on the host is in that group.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(
        scratch.top.join("a/b/cgroup.procs"),
        format!("{}\n", child.id()),
    )
    .unwrap();
    let b = tree.by_path(&format!("/{top_name}/a/b")).unwrap();
    assert!(Arc::ptr_eq(&tree.group_of_pid(child.id()), &b));
    assert_eq!(b.procs(), vec![child.id()]);
    let text = vfs
        .read_file(&root, format!("{vtop}/a/b/cgroup.procs").as_bytes())
        .unwrap();
    assert_eq!(text, format!("{}\n", child.id()).into_bytes());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(scratch);
}

/// Rough cost of finding a task's group in host mode (reads /proc/PID/cgroup), printed.
#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn host_group_of_pid_cost() {
    let Some(h) = host() else { return };
    let vfs = Vfs::new_memfs();
    let tree = install(&vfs, CgroupMode::Host(h)).unwrap();
    let me = std::process::id();
    let n = 20_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(tree.group_of_pid(me));
    }
    println!("host mode group_of_pid: {:?}", t.elapsed() / n);
}

/// The same operations on a scratch group of the host's cgroup2 mount and on a local-mode
/// group: every errno must match.
#[test]
fn local_mode_errnos_match_the_host_kernel() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Some(h) = host() else { return };
    let scratch = Scratch::new(&h, "errnos", &["g", "g/child", "m"]).expect("scratch cgroups");
    let vfs = Vfs::new_memfs();
    let _tree = install(&vfs, CgroupMode::Local).unwrap();
    let root = Cred::root();
    for p in ["g", "g/child", "m"] {
        vfs.mkdir(&root, None, format!("/sys/fs/cgroup/{p}").as_bytes(), 0o755)
            .unwrap();
    }
    // One member in m on both sides (a child process of ours).
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    std::fs::write(scratch.top.join("m/cgroup.procs"), format!("{pid}\n")).unwrap();
    let f = vfs
        .open(
            &root,
            None,
            b"/sys/fs/cgroup/m/cgroup.procs",
            oflags::O_WRONLY,
            0,
        )
        .unwrap();
    vfs.write(&f, format!("{pid}\n").as_bytes(), 0).unwrap();

    let host_errno = |r: i32| {
        if r < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        } else {
            0
        }
    };
    let hp = |rel: &str| CString::new(scratch.top.join(rel).as_os_str().as_bytes()).unwrap();
    let vp = |rel: &str| format!("/sys/fs/cgroup/{rel}").into_bytes();
    let ve = |r: Result<(), Errno>| r.err().map_or(0, |e| e.0);
    let host_write = |rel: &str, data: &[u8]| -> i32 {
        match std::fs::OpenOptions::new()
            .write(true)
            .open(scratch.top.join(rel))
            .and_then(|mut f| std::io::Write::write(&mut f, data))
        {
            Ok(_) => 0,
            Err(e) => e.raw_os_error().unwrap(),
        }
    };
    let local_write = |rel: &str, data: &[u8]| -> i32 {
        let f = vfs
            .open(&root, None, &vp(rel), oflags::O_WRONLY, 0)
            .unwrap();
        ve(vfs.write(&f, data, 0).map(drop))
    };
    let mut diffs = Vec::new();
    let mut check = |what: &str, host: i32, local: i32| {
        if host != local {
            diffs.push(format!("{what}: host {host}, bpfvfs {local}"));
        }
    };
    // SAFETY (each libc call below): valid NUL-terminated paths; plain system calls.
    check(
        "create a regular file",
        host_errno(unsafe {
            libc::open(hp("g/x").as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644)
        }),
        ve(vfs
            .open(
                &root,
                None,
                &vp("g/x"),
                oflags::O_CREAT | oflags::O_WRONLY,
                0o644,
            )
            .map(drop)),
    );
    check(
        "mknod fifo",
        host_errno(unsafe { libc::mknod(hp("g/p").as_ptr(), libc::S_IFIFO | 0o644, 0) }),
        ve(vfs
            .mknod(&root, None, &vp("g/p"), bpfvfs_vfs::S_IFIFO | 0o644, 0)
            .map(drop)),
    );
    check(
        "symlink",
        host_errno(unsafe { libc::symlink(c"x".as_ptr(), hp("g/l").as_ptr()) }),
        ve(vfs.symlink(&root, b"x", None, &vp("g/l")).map(drop)),
    );
    check(
        "link a control file",
        host_errno(unsafe { libc::link(hp("g/cgroup.procs").as_ptr(), hp("g/h").as_ptr()) }),
        ve(vfs
            .link(&root, &vp("g/cgroup.procs"), &vp("g/h"), false)
            .map(drop)),
    );
    check(
        "rename a group",
        host_errno(unsafe { libc::rename(hp("g/child").as_ptr(), hp("g/other").as_ptr()) }),
        ve(vfs.rename(&root, &vp("g/child"), &vp("g/other"), 0)),
    );
    check(
        "unlink a control file",
        host_errno(unsafe { libc::unlink(hp("g/cgroup.procs").as_ptr()) }),
        ve(vfs.unlink(&root, None, &vp("g/cgroup.procs"))),
    );
    check(
        "unlink a group",
        host_errno(unsafe { libc::unlink(hp("g/child").as_ptr()) }),
        ve(vfs.unlink(&root, None, &vp("g/child"))),
    );
    check(
        "rmdir a control file",
        host_errno(unsafe { libc::rmdir(hp("g/cgroup.procs").as_ptr()) }),
        ve(vfs.rmdir(&root, None, &vp("g/cgroup.procs"))),
    );
    check(
        "rmdir a group with a child group",
        host_errno(unsafe { libc::rmdir(hp("g").as_ptr()) }),
        ve(vfs.rmdir(&root, None, &vp("g"))),
    );
    check(
        "rmdir a group with a member",
        host_errno(unsafe { libc::rmdir(hp("m").as_ptr()) }),
        ve(vfs.rmdir(&root, None, &vp("m"))),
    );
    check(
        "mkdir over a control file",
        host_errno(unsafe { libc::mkdir(hp("g/cgroup.procs").as_ptr(), 0o755) }),
        ve(vfs
            .mkdir(&root, None, &vp("g/cgroup.procs"), 0o755)
            .map(drop)),
    );
    check(
        "mkdir with a newline",
        host_errno(unsafe { libc::mkdir(hp("g/a\nb").as_ptr(), 0o755) }),
        ve(vfs.mkdir(&root, None, &vp("g/a\nb"), 0o755).map(drop)),
    );
    for data in [&b"abc\n"[..], b"1 2\n", b"-1\n", b"2147483600\n", b"\n"] {
        check(
            &format!("write {:?} to cgroup.procs", String::from_utf8_lossy(data)),
            host_write("g/cgroup.procs", data),
            local_write("g/cgroup.procs", data),
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(scratch);
    assert!(
        diffs.is_empty(),
        "differences from the kernel:\n{}",
        diffs.join("\n")
    );
}
