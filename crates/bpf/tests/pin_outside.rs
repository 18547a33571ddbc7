//! True pins outside bpffs (issue 9 item 1): a regular file in memfs holding one object
//! reference, released exactly once by the destruction watch when the inode dies, whatever
//! its hard links, renames and open handles.
use bpfvfs_bpf::*;
use bpfvfs_vfs::fsnotify::{Group, IN_CREATE};
use bpfvfs_vfs::{
    oflags, rcu_barrier, Cred, Errno, FileSystem, Inode, NewInode, Result as VResult, StatFs,
    SuperBlock, Vfs, VfsStats, S_IFDIR,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn setup() -> (Arc<Bpf>, Cred) {
    (Bpf::new(Vfs::new_memfs()).unwrap(), Cred::root())
}

fn map(bpf: &Bpf, name: &str) -> Handle {
    bpf.map_create(MapDef::new(MapType::Array, 4, 8, 4).with_name(name))
        .unwrap()
}

fn prog_info(name: &str) -> ProgInfo {
    ProgInfo {
        prog_type: ProgType::Tracing.as_u32(),
        name: name.to_string(),
        tag: [0; 8],
        insn_count: 2,
        license: "GPL".into(),
        map_ids: vec![],
        loaded_at: 0,
        uid: 0,
        attach_to: String::new(),
        jited_len: 0,
    }
}

/// What must return to its baseline once every pin is gone.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    maps: u64,
    progs: u64,
    links: u64,
    inodes: i64,
    watches: i64,
    files: i64,
}

fn counts(bpf: &Bpf) -> Counts {
    // Inode memory goes after the grace period (lockless walkers may still read it).
    rcu_barrier();
    let o = bpf.registry().stats();
    let v: VfsStats = bpf.vfs().stats();
    Counts {
        maps: o.maps_live,
        progs: o.progs_live,
        links: o.links_live,
        inodes: v.inodes_live,
        watches: v.destroy_watches,
        files: v.files_open,
    }
}

/// The counters once they equal `base`, or after 5 s: deferred frees run when every thread
/// pinned at retire time has unpinned, which under load can take more than one grace period.
fn counts_settled(bpf: &Bpf, base: &Counts) -> Counts {
    let mut c = counts(bpf);
    for _ in 0..500 {
        if c == *base {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        c = counts(bpf);
    }
    c
}

fn alive(bpf: &Bpf, id: u32) -> bool {
    bpf.registry().map_by_id(id).is_ok()
}

#[test]
fn pin_in_memfs_is_a_regular_file_holding_one_reference() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/proj", 0o755).unwrap();
    let group = Arc::new(Group::default());
    group.add_watch(&vfs, &root, b"/proj", IN_CREATE).unwrap();
    let base = counts(&bpf);
    let freed0 = bpf.registry().stats().maps_freed_total;

    let h = map(&bpf, "m");
    let id = h.obj.id();
    bpf.map_update_elem(&h, &1u32.to_ne_bytes(), &7u64.to_ne_bytes(), 0)
        .unwrap();
    let mut user = Cred::user(1000, 1000);
    user.umask = 0o022;
    // An unprivileged pinner needs write+search on the directory, as any create.
    assert_eq!(
        bpf.obj_pin(&user, &h, None, b"/proj/m", 0).err(),
        Some(Errno::EACCES)
    );
    vfs.chmod(&root, b"/proj", 0o777).unwrap();
    bpf.obj_pin(&user, &h, None, b"/proj/m", 0).unwrap();
    // The normal create path: IN_CREATE with the name.
    let ev = group.read_events(8, Some(Duration::from_secs(1))).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].mask, IN_CREATE);
    assert_eq!(ev[0].name.as_deref(), Some(&b"m"[..]));
    // A regular file, 0600 & ~umask, owned by the pinner, size 0.
    let st = vfs.stat(&root, None, b"/proj/m", true).unwrap();
    assert_eq!(st.mode, 0o100600);
    assert_eq!((st.uid, st.gid, st.size, st.nlink), (1000, 1000, 0, 1));
    assert_eq!(
        bpf.obj_pin(&root, &h, None, b"/proj/m", 0).err(),
        Some(Errno::EEXIST)
    );
    drop(h);
    assert!(alive(&bpf, id), "the pin holds it");
    // obj_get: the file's permission decides (0600, owner 1000).
    let got = bpf.obj_get(&user, None, b"/proj/m", 0).unwrap();
    assert_eq!(got.obj.id(), id);
    assert_eq!(
        bpf.map_lookup_elem(&got, &1u32.to_ne_bytes()).unwrap(),
        7u64.to_ne_bytes()
    );
    drop(got);
    let other = Cred::user(1001, 1001);
    assert_eq!(
        bpf.obj_get(&other, None, b"/proj/m", uapi::BPF_F_RDONLY)
            .err(),
        Some(Errno::EACCES)
    );
    vfs.chmod(&root, b"/proj/m", 0o644).unwrap();
    let ro = bpf
        .obj_get(&other, None, b"/proj/m", uapi::BPF_F_RDONLY)
        .unwrap();
    assert_eq!(
        bpf.map_update_elem(&ro, &1u32.to_ne_bytes(), &8u64.to_ne_bytes(), 0)
            .err(),
        Some(Errno::EPERM)
    );
    drop(ro);
    // `pinned` lines include it.
    assert_eq!(bpf.pinned_paths(ObjKind::Map, id), ["/proj/m"]);
    // Reading a map pin: EIO, as a bpffs pin without a view; writing cannot open either.
    assert_eq!(vfs.read_file(&root, b"/proj/m").err(), Some(Errno::EIO));
    assert_eq!(
        vfs.open(&root, None, b"/proj/m", oflags::O_WRONLY, 0).err(),
        Some(Errno::EIO)
    );
    // A plain file next to it is untouched by all this.
    vfs.write_file(&root, b"/proj/plain", b"x").unwrap();
    assert_eq!(vfs.read_file(&root, b"/proj/plain").unwrap(), b"x");
    vfs.unlink(&root, None, b"/proj/plain").unwrap();
    // The watch is listed as held by a true pin.
    let held = bpf.held_watches();
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].purpose.as_str(), held[0].kind, held[0].id),
        ("true-pin", ObjKind::Map, id)
    );
    assert_eq!(held[0].path.as_deref(), Some("/proj/m"));
    assert_eq!(held[0].state, "armed");

    vfs.unlink(&root, None, b"/proj/m").unwrap();
    assert!(!alive(&bpf, id));
    assert_eq!(bpf.registry().stats().maps_freed_total, freed0 + 1);
    assert!(bpf.held_watches().is_empty());
    assert_eq!(counts_settled(&bpf, &base), base);
}

#[test]
fn unlinked_while_open_released_at_last_close() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    let base = counts(&bpf);
    let h = map(&bpf, "m");
    let id = h.obj.id();
    bpf.obj_pin(&root, &h, None, b"/m", 0).unwrap();
    drop(h);
    // A map pin cannot be opened for reading, but an O_PATH handle holds the inode.
    let f = vfs
        .open(&root, None, b"/m", oflags::O_PATH | oflags::O_RDONLY, 0)
        .unwrap();
    let f2 = f.clone();
    vfs.unlink(&root, None, b"/m").unwrap();
    assert!(
        alive(&bpf, id),
        "an open handle keeps the inode, so the pin"
    );
    drop(f);
    assert!(alive(&bpf, id), "one handle left");
    drop(f2);
    assert!(!alive(&bpf, id), "last close evicts: released");
    assert_eq!(counts_settled(&bpf, &base), base);
}

#[test]
fn hard_links_and_renames_release_once_at_the_last_name() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/a", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/b", 0o755).unwrap();
    let base = counts(&bpf);
    let freed0 = bpf.registry().stats().maps_freed_total;
    let h = map(&bpf, "m");
    let id = h.obj.id();
    bpf.obj_pin(&root, &h, None, b"/a/m", 0).unwrap();
    drop(h);
    vfs.link(&root, b"/a/m", b"/b/m2", false).unwrap();
    assert_eq!(vfs.stat(&root, None, b"/b/m2", true).unwrap().nlink, 2);
    vfs.unlink(&root, None, b"/a/m").unwrap();
    assert!(alive(&bpf, id), "one hard link left");
    assert_eq!(bpf.obj_get(&root, None, b"/b/m2", 0).unwrap().obj.id(), id);
    vfs.rename(&root, b"/b/m2", b"/a/renamed", 0).unwrap();
    assert_eq!(
        bpf.obj_get(&root, None, b"/a/renamed", 0).unwrap().obj.id(),
        id
    );
    assert!(alive(&bpf, id));
    // A rename onto the pin replaces (unlinks) it: the last name goes.
    vfs.write_file(&root, b"/a/other", b"x").unwrap();
    vfs.rename(&root, b"/a/other", b"/a/renamed", 0).unwrap();
    assert!(!alive(&bpf, id));
    assert_eq!(bpf.registry().stats().maps_freed_total, freed0 + 1);
    vfs.unlink(&root, None, b"/a/renamed").unwrap();
    assert_eq!(counts_settled(&bpf, &base), base);

    // The creation name follows a rename in the `pinned` lines.
    let h = map(&bpf, "n");
    let id = h.obj.id();
    bpf.obj_pin(&root, &h, None, b"/a/n", 0).unwrap();
    vfs.rename(&root, b"/a/n", b"/b/n", 0).unwrap();
    assert_eq!(bpf.pinned_paths(ObjKind::Map, id), ["/b/n"]);
    vfs.unlink(&root, None, b"/b/n").unwrap();
    assert!(alive(&bpf, id), "the handle still holds it");
    drop(h);
    assert!(!alive(&bpf, id));
}

/// rm -r as a tool does it: children first, then the directory.
fn rm_r(vfs: &Vfs, cred: &Cred, path: &str) {
    let at = vfs.resolve(cred, None, path.as_bytes(), 0).unwrap();
    if at.inode().is_dir() {
        let ents = vfs.readdir(&at, 0, 1024).unwrap();
        drop(at);
        for e in ents {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            rm_r(
                vfs,
                cred,
                &format!("{path}/{}", String::from_utf8_lossy(&e.name)),
            );
        }
        vfs.rmdir(cred, None, path.as_bytes()).unwrap();
    } else {
        drop(at);
        vfs.unlink(cred, None, path.as_bytes()).unwrap();
    }
}

#[test]
fn removing_the_pins_directory_recursively_releases_them() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    let base = counts(&bpf);
    vfs.mkdir(&root, None, b"/proj", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/proj/sub", 0o755).unwrap();
    let mut ids = Vec::new();
    for (i, p) in ["/proj/m0", "/proj/sub/m1", "/proj/sub/m2"]
        .iter()
        .enumerate()
    {
        let h = map(&bpf, &format!("m{i}"));
        ids.push(h.obj.id());
        bpf.obj_pin(&root, &h, None, p.as_bytes(), 0).unwrap();
    }
    vfs.link(&root, b"/proj/sub/m2", b"/proj/m2-link", false)
        .unwrap();
    assert!(ids.iter().all(|&id| alive(&bpf, id)));
    rm_r(&vfs, &root, "/proj");
    assert!(ids.iter().all(|&id| !alive(&bpf, id)));
    assert_eq!(counts_settled(&bpf, &base), base);
}

#[test]
fn unmount_releases_pins_in_that_filesystem() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/mnt", 0o755).unwrap();
    vfs.mount_type(&root, "tmpfs", "", b"/mnt").unwrap();
    let h = map(&bpf, "m");
    let id = h.obj.id();
    bpf.obj_pin(&root, &h, None, b"/mnt/m", 0).unwrap();
    drop(h);
    assert_eq!(bpf.pinned_paths(ObjKind::Map, id), ["/mnt/m"]);
    assert!(alive(&bpf, id));
    vfs.umount(&root, b"/mnt").unwrap();
    assert!(!alive(&bpf, id), "eviction at unmount fires the watch");
}

/// A filesystem that creates nothing and refuses true pins.
struct NoPins;
impl FileSystem for NoPins {
    fn fs_type(&self) -> &'static str {
        "nopins"
    }
    fn magic(&self) -> u64 {
        0x6e6f
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> VResult<Arc<Inode>> {
        let root = sb.alloc_inode(
            &NewInode {
                mode: S_IFDIR | 0o777,
                uid: 0,
                gid: 0,
                rdev: 0,
            },
            None,
            Box::new(()),
        );
        root.set_nlink(2);
        Ok(root)
    }
    fn statfs(&self, _sb: &SuperBlock) -> VResult<StatFs> {
        Ok(StatFs::default())
    }
    fn create(
        &self,
        _sb: &Arc<SuperBlock>,
        _dir: &Inode,
        _name: &[u8],
        _attrs: &NewInode,
    ) -> VResult<Arc<Inode>> {
        Err(Errno::EACCES)
    }
    fn mkdir(
        &self,
        _sb: &Arc<SuperBlock>,
        _dir: &Inode,
        _name: &[u8],
        _attrs: &NewInode,
    ) -> VResult<Arc<Inode>> {
        Err(Errno::EPERM)
    }
    fn symlink(
        &self,
        _sb: &Arc<SuperBlock>,
        _dir: &Inode,
        _name: &[u8],
        _target: &[u8],
        _attrs: &NewInode,
    ) -> VResult<Arc<Inode>> {
        Err(Errno::EPERM)
    }
    fn allows_true_pins(&self) -> bool {
        false
    }
}

#[test]
fn filesystems_that_refuse_true_pins_say_eperm() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/np", 0o755).unwrap();
    vfs.mount(&root, Arc::new(NoPins), b"/np").unwrap();
    let h = map(&bpf, "m");
    assert_eq!(
        bpf.obj_pin(&root, &h, None, b"/np/m", 0).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.stat(&root, None, b"/np/m", true).err(),
        Some(Errno::ENOENT)
    );
    // bpffs keeps its own rules: a dotted name is EPERM there.
    assert_eq!(
        bpf.obj_pin(&root, &h, None, b"/sys/fs/bpf/a.b", 0).err(),
        Some(Errno::EPERM)
    );
}

struct Text(AtomicU32);
impl SeqSource for Text {
    fn read_all(&self) -> Result<Vec<u8>, Errno> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Ok(format!("run {n}: {}\n", "x".repeat(5000)).into_bytes())
    }
}

#[test]
fn truly_pinned_iterator_link_runs_at_each_open() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    let base = counts(&bpf);
    let p = bpf.prog_add(prog_info("it"), None).unwrap();
    let l = bpf.link_create(&p, "iter", "bpf_map", None).unwrap();
    let BpfObject::Link(link) = &l.obj else {
        panic!("not a link")
    };
    link.set_seq(Arc::new(Text(AtomicU32::new(0))));
    let lid = link.id();
    bpf.obj_pin(&root, &l, None, b"/it", 0).unwrap();
    drop(l);
    drop(p);
    let first = vfs.read_file(&root, b"/it").unwrap();
    assert!(first.starts_with(b"run 0: xxx") && first.len() == 5008);
    // One run per open; reads at offsets serve that run's text.
    let f = vfs.open(&root, None, b"/it", oflags::O_RDONLY, 0).unwrap();
    assert!(f.direct_io());
    let mut buf = [0u8; 6];
    assert_eq!(vfs.read(&f, &mut buf, 0).unwrap(), 6);
    assert_eq!(&buf, b"run 1:");
    assert_eq!(vfs.read(&f, &mut buf, 5004).unwrap(), 4);
    assert_eq!(&buf[..4], b"xxx\n");
    assert_eq!(vfs.read(&f, &mut buf, 9999).unwrap(), 0);
    assert_eq!(vfs.write(&f, b"no", 0).err(), Some(Errno::EBADF));
    vfs.unlink(&root, None, b"/it").unwrap();
    assert!(bpf.registry().link_by_id(lid).is_ok(), "open file holds it");
    assert_eq!(vfs.read(&f, &mut buf, 0).unwrap(), 6);
    drop(f);
    assert!(bpf.registry().link_by_id(lid).is_err());
    assert_eq!(counts_settled(&bpf, &base), base);
}

/// Threads pinning, linking, renaming and removing many pins at once: every object is freed
/// exactly once and every counter returns to its baseline.
#[test]
fn concurrent_pins_and_removals_balance() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/c", 0o777).unwrap();
    let base = counts(&bpf);
    let freed0 = bpf.registry().stats().maps_freed_total;
    const T: usize = 4;
    const N: usize = 50;
    std::thread::scope(|s| {
        for t in 0..T {
            let bpf = bpf.clone();
            let vfs = vfs.clone();
            let root = root.clone();
            s.spawn(move || {
                for i in 0..N {
                    let h = map(&bpf, "m");
                    let a = format!("/c/{t}-{i}");
                    let b = format!("/c/{t}-{i}-l");
                    bpf.obj_pin(&root, &h, None, a.as_bytes(), 0).unwrap();
                    drop(h);
                    vfs.link(&root, a.as_bytes(), b.as_bytes(), false).unwrap();
                    let f = vfs
                        .open(&root, None, b.as_bytes(), oflags::O_PATH, 0)
                        .unwrap();
                    // Another thread's view races the removals below.
                    let _ = bpf.obj_get(&root, None, a.as_bytes(), 0);
                    vfs.unlink(&root, None, a.as_bytes()).unwrap();
                    vfs.unlink(&root, None, b.as_bytes()).unwrap();
                    drop(f);
                }
            });
        }
    });
    assert_eq!(
        bpf.registry().stats().maps_freed_total,
        freed0 + (T * N) as u64
    );
    assert!(bpf.true_pins().all().is_empty());
    assert_eq!(counts_settled(&bpf, &base), base);
}

struct Fixed4k;
impl SeqSource for Fixed4k {
    fn read_all(&self) -> Result<Vec<u8>, Errno> {
        Ok(vec![b'x'; 4096])
    }
}

/// Figures for docs: open + read 4 KiB + close, in-process, per file kind. Run with
/// `cargo test --release -p bpfvfs-bpf --test pin_outside -- --ignored --nocapture`.
#[test]
#[ignore = "prints timing figures for docs/benchmarks.md, asserts nothing: run with -- --ignored --nocapture"]
fn cost_of_reading_pins() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.write_file(&root, b"/plain", &[b'x'; 4096]).unwrap();
    let p = bpf.prog_add(prog_info("it"), None).unwrap();
    let l = bpf.link_create(&p, "iter", "bpf_map", None).unwrap();
    l.obj.as_link().unwrap().set_seq(Arc::new(Fixed4k));
    bpf.obj_pin(&root, &l, None, b"/sys/fs/bpf/it", 0).unwrap();
    bpf.obj_pin(&root, &l, None, b"/it", 0).unwrap();
    let n = 200_000;
    for path in [&b"/plain"[..], b"/sys/fs/bpf/it", b"/it"] {
        let mut buf = vec![0u8; 8192];
        let t = std::time::Instant::now();
        for _ in 0..n {
            let f = vfs.open(&root, None, path, oflags::O_RDONLY, 0).unwrap();
            assert_eq!(vfs.read(&f, &mut buf, 0).unwrap(), 4096);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{:<16} open+read 4 KiB+close: {ns:.0} ns",
            String::from_utf8_lossy(path)
        );
    }
    // Open+close alone of a plain file (the override check is on this path).
    let t = std::time::Instant::now();
    for _ in 0..n {
        drop(
            vfs.open(&root, None, b"/plain", oflags::O_RDONLY, 0)
                .unwrap(),
        );
    }
    println!(
        "plain open+close: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
