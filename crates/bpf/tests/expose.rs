//! Exposing objects in the cgroup tree (issue 9 item 3): files that hold no reference, removed
//! when the object's bpffs pin goes, when the group goes, or when the view link goes — in
//! every order and concurrently — with every counter back at its baseline.
use bpfvfs_bpf::expose::PinError;
use bpfvfs_bpf::*;
use bpfvfs_cgroup::{install, Cgroup, CgroupMode, SeqShow};
use bpfvfs_vfs::{rcu_barrier, Cred, Errno, Vfs};
use std::sync::Arc;

fn setup() -> (Arc<Bpf>, Cred) {
    let vfs = Vfs::new_memfs();
    let bpf = Bpf::new(vfs.clone()).unwrap();
    install(&vfs, CgroupMode::Local).unwrap();
    // A view factory as the runtime installs one: programs show their group; nothing else
    // has a view.
    bpf.set_view_factory(Arc::new(|o: &BpfObject| match o {
        BpfObject::Prog(p) => Some(Arc::new(GroupView(p.info().name.clone())) as Arc<dyn SeqShow>),
        _ => None,
    }));
    (bpf, Cred::root())
}

struct GroupView(String);
impl SeqShow for GroupView {
    fn show(&self, g: &Arc<Cgroup>) -> Result<Vec<u8>, Errno> {
        Ok(format!("{} in {} id {}\n", self.0, g.path(), g.id()).into_bytes())
    }
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

#[derive(Debug, PartialEq, Eq)]
struct Counts {
    progs: u64,
    maps: u64,
    links: u64,
    inodes: i64,
    watches: i64,
    exposed: usize,
}

fn counts(bpf: &Bpf) -> Counts {
    rcu_barrier();
    let o = bpf.registry().stats();
    let v = bpf.vfs().stats();
    Counts {
        progs: o.progs_live,
        maps: o.maps_live,
        links: o.links_live,
        inodes: v.inodes_live,
        watches: v.destroy_watches,
        exposed: bpf.exposures().count(),
    }
}

/// The counters once deferred frees have run: they run when every thread pinned at retire
/// time has unpinned, which under load can take more than one grace period, so wait (up to
/// 5 s) for `want` before comparing.
fn counts_settled(bpf: &Bpf, want: impl Fn(&Counts) -> bool) -> Counts {
    let mut c = counts(bpf);
    for _ in 0..500 {
        if want(&c) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        c = counts(bpf);
    }
    c
}

fn exists(bpf: &Bpf, path: &str) -> bool {
    bpf.vfs()
        .stat(&Cred::root(), None, path.as_bytes(), false)
        .is_ok()
}

#[test]
fn pinning_in_the_tree_needs_a_bpffs_pin_and_holds_no_reference() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/g", 0o755).unwrap();
    let base = counts(&bpf);
    let h = bpf
        .map_create(MapDef::new(MapType::Array, 4, 8, 4).with_name("m"))
        .unwrap();
    let id = h.obj.id();
    // No bpffs pin: refused with EPERM and the reason.
    let e = bpf
        .obj_pin_detailed(&root, &h, None, b"/sys/fs/cgroup/g/m", 0)
        .unwrap_err();
    assert!(matches!(e, PinError::NoBpffsPin), "{e:?}");
    assert_eq!(e.errno(), Errno::EPERM);
    assert!(e.to_string().contains("pin it in /sys/fs/bpf first"));
    assert!(!exists(&bpf, "/sys/fs/cgroup/g/m"));
    // True pins are never made in the tree.
    assert_eq!(bpf.true_pins().all().len(), 0);

    bpf.obj_pin(&root, &h, None, b"/sys/fs/bpf/m", 0).unwrap();
    bpf.vfs()
        .link(&root, b"/sys/fs/bpf/m", b"/sys/fs/bpf/m2", false)
        .unwrap();
    bpf.obj_pin(&root, &h, None, b"/sys/fs/cgroup/g/m", 0)
        .unwrap();
    let st = vfs.stat(&root, None, b"/sys/fs/cgroup/g/m", false).unwrap();
    assert_eq!(st.mode & 0o170000, 0o100000);
    // The name is taken now.
    assert_eq!(
        bpf.obj_pin(&root, &h, None, b"/sys/fs/cgroup/g/m", 0).err(),
        Some(Errno::EEXIST)
    );
    // Not a pin: obj_get refuses it as bpf(2) refuses a file outside bpffs.
    assert_eq!(
        bpf.obj_get(&root, None, b"/sys/fs/cgroup/g/m", 0).err(),
        Some(Errno::EACCES)
    );
    // A map has no view: reading fails with EIO.
    assert_eq!(
        vfs.read_file(&root, b"/sys/fs/cgroup/g/m").err(),
        Some(Errno::EIO)
    );
    // One destruction watch, on the bpffs pin's inode (one per inode, not per name).
    let held = bpf.held_watches();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].purpose, "exposure");
    assert_eq!(held[0].id, id);
    assert_eq!(held[0].exposed_at.as_deref(), Some("/sys/fs/cgroup/g/m"));
    assert_eq!(
        held[0].ino,
        vfs.stat(&root, None, b"/sys/fs/bpf/m", false).unwrap().ino
    );
    // The exposed file holds no reference: the bpffs pin does.
    drop(h);
    assert!(bpf.registry().map_by_id(id).is_ok());
    vfs.unlink(&root, None, b"/sys/fs/bpf/m").unwrap();
    assert!(
        exists(&bpf, "/sys/fs/cgroup/g/m"),
        "a hard link still pins it"
    );
    vfs.unlink(&root, None, b"/sys/fs/bpf/m2").unwrap();
    assert!(
        !exists(&bpf, "/sys/fs/cgroup/g/m"),
        "gone with the last pin"
    );
    assert!(bpf.registry().map_by_id(id).is_err());
    assert!(bpf.held_watches().is_empty());
    assert_eq!(counts_settled(&bpf, |c| *c == base), base);
}

#[test]
fn view_program_exposed_by_pin_shows_its_group() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a/b", 0o755)
        .unwrap();
    let p = bpf.prog_add(prog_info("v"), None).unwrap();
    bpf.obj_pin(&root, &p, None, b"/sys/fs/bpf/v", 0).unwrap();
    bpf.obj_pin(&root, &p, None, b"/sys/fs/cgroup/a/b/show", 0)
        .unwrap();
    let ino = vfs
        .stat(&root, None, b"/sys/fs/cgroup/a/b", false)
        .unwrap()
        .ino;
    let text = vfs.read_file(&root, b"/sys/fs/cgroup/a/b/show").unwrap();
    assert_eq!(text, format!("v in /a/b id {ino}\n").as_bytes());
    // rmdir of the group removes the file and cancels the watch on the bpffs pin.
    let w0 = vfs.stats().destroy_watches;
    vfs.rmdir(&root, None, b"/sys/fs/cgroup/a/b").unwrap();
    assert_eq!(bpf.exposures().count(), 0);
    assert_eq!(vfs.stats().destroy_watches, w0 - 1);
    assert!(bpf.held_watches().is_empty());
    // The object lives on in bpffs.
    drop(p);
    assert!(bpf.obj_get(&root, None, b"/sys/fs/bpf/v", 0).is_ok());
}

#[test]
fn view_link_exposes_until_detached_and_inherits() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a/old", 0o755)
        .unwrap();
    let base = counts(&bpf);
    let p = bpf.prog_add(prog_info("opens"), None).unwrap();
    let l = bpf
        .view_link_create(&root, &p, b"/sys/fs/cgroup/a", true)
        .unwrap();
    let info = bpf.obj_get_info(&l);
    assert!(matches!(
        &info,
        ObjInfo::Link { attach_type, target, attached: true, .. }
            if attach_type == "view" && target == "/sys/fs/cgroup/a"
    ));
    drop(p);
    // Named after the program, in the group and (inherit) in every descendant, existing
    // or created later, each showing its own group.
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a/new", 0o755)
        .unwrap();
    for g in ["/a", "/a/old", "/a/new"] {
        let t = vfs
            .read_file(&root, format!("/sys/fs/cgroup{g}/opens").as_bytes())
            .unwrap();
        assert!(
            String::from_utf8(t)
                .unwrap()
                .starts_with(&format!("opens in {g} id ")),
            "{g}"
        );
    }
    assert!(!exists(&bpf, "/sys/fs/cgroup/opens"), "not in the parent");
    assert_eq!(bpf.exposures().list()[0].copies, 3);
    // A second link to the same group: the name is taken.
    let p2 = bpf.prog_add(prog_info("opens"), None).unwrap();
    assert_eq!(
        bpf.view_link_create(&root, &p2, b"/sys/fs/cgroup/a", false)
            .err()
            .map(|e| e.errno()),
        Some(Errno::EEXIST)
    );
    // Not a group directory.
    assert_eq!(
        bpf.view_link_create(&root, &p2, b"/sys/fs/bpf", false)
            .err()
            .map(|e| e.errno()),
        Some(Errno::ENOTDIR)
    );
    drop(p2);
    // Detach removes every copy; the link object lives on, defunct, while held.
    l.obj.as_link().unwrap().detach();
    for g in ["/a", "/a/old", "/a/new"] {
        assert!(!exists(&bpf, &format!("/sys/fs/cgroup{g}/opens")), "{g}");
    }
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a/later", 0o755)
        .unwrap();
    assert!(!exists(&bpf, "/sys/fs/cgroup/a/later/opens"));
    drop(l);
    for g in ["/sys/fs/cgroup/a/later", "/sys/fs/cgroup/a/new"] {
        vfs.rmdir(&root, None, g.as_bytes()).unwrap();
    }
    assert_eq!(counts_settled(&bpf, |c| *c == base), base);
}

/// The three ways an exposure goes — the bpffs pin dies (for the pinned exposure), the
/// group goes (both), the link goes (for the view link) — in all six orders.
#[test]
fn every_order_of_pin_group_and_link_removal() {
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let (bpf, root) = setup();
        let vfs = bpf.vfs().clone();
        let base = counts(&bpf);
        vfs.mkdir(&root, None, b"/sys/fs/cgroup/g", 0o755).unwrap();
        let p = bpf.prog_add(prog_info("v"), None).unwrap();
        bpf.obj_pin(&root, &p, None, b"/sys/fs/bpf/v", 0).unwrap();
        bpf.obj_pin(&root, &p, None, b"/sys/fs/cgroup/g/pinned", 0)
            .unwrap();
        let mut link = Some(
            bpf.view_link_create(&root, &p, b"/sys/fs/cgroup/g", false)
                .unwrap(),
        );
        drop(p);
        assert!(exists(&bpf, "/sys/fs/cgroup/g/pinned"));
        assert!(exists(&bpf, "/sys/fs/cgroup/g/v"));
        let (mut pin_gone, mut group_gone, mut link_gone) = (false, false, false);
        for what in order {
            match what {
                0 => {
                    vfs.unlink(&root, None, b"/sys/fs/bpf/v").unwrap();
                    pin_gone = true;
                }
                1 => {
                    vfs.rmdir(&root, None, b"/sys/fs/cgroup/g").unwrap();
                    group_gone = true;
                }
                _ => {
                    drop(link.take());
                    link_gone = true;
                }
            }
            assert_eq!(
                exists(&bpf, "/sys/fs/cgroup/g/pinned"),
                !pin_gone && !group_gone,
                "{order:?}"
            );
            assert_eq!(
                exists(&bpf, "/sys/fs/cgroup/g/v"),
                !link_gone && !group_gone,
                "{order:?}"
            );
        }
        assert_eq!(counts_settled(&bpf, |c| *c == base), base, "{order:?}");
        assert!(bpf.held_watches().is_empty(), "{order:?}");
    }
}

/// The same three removals raced by three threads, many times.
#[test]
fn concurrent_removals_leave_nothing_behind() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    let base = counts(&bpf);
    for i in 0..60 {
        let g = format!("/sys/fs/cgroup/g{i}");
        vfs.mkdir(&root, None, g.as_bytes(), 0o755).unwrap();
        let p = bpf.prog_add(prog_info("v"), None).unwrap();
        let pin = format!("/sys/fs/bpf/v{i}");
        bpf.obj_pin(&root, &p, None, pin.as_bytes(), 0).unwrap();
        bpf.obj_pin(&root, &p, None, format!("{g}/pinned").as_bytes(), 0)
            .unwrap();
        let link = bpf
            .view_link_create(&root, &p, g.as_bytes(), i % 2 == 0)
            .unwrap();
        drop(p);
        let barrier = &std::sync::Barrier::new(3);
        let (vfs, root, pin, g) = (&vfs, &root, &pin, &g);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                vfs.unlink(root, None, pin.as_bytes()).unwrap();
            });
            s.spawn(|| {
                barrier.wait();
                vfs.rmdir(root, None, g.as_bytes()).unwrap();
            });
            s.spawn(move || {
                barrier.wait();
                let BpfObject::Link(l) = &link.obj else {
                    unreachable!()
                };
                l.detach();
                drop(link);
            });
        });
    }
    assert_eq!(counts_settled(&bpf, |c| *c == base), base);
    assert!(bpf.held_watches().is_empty());
}

/// `cgroup attach`-style view links: the instance keeps the link after the caller's handle
/// goes; `view_detach` (or the group's removal) ends it.
#[test]
fn kept_view_links_outlive_the_callers_handle() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/a", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/b", 0o755).unwrap();
    let base = counts(&bpf);
    let p = bpf.prog_add(prog_info("v"), None).unwrap();
    let pid = p.obj.id();
    for g in ["/sys/fs/cgroup/a", "/sys/fs/cgroup/b"] {
        let l = bpf.view_attach(&root, &p, g.as_bytes(), false).unwrap();
        drop(l);
    }
    drop(p);
    assert!(exists(&bpf, "/sys/fs/cgroup/a/v"));
    assert!(exists(&bpf, "/sys/fs/cgroup/b/v"));
    assert_eq!(bpf.registry().stats().links_live, base.links + 2);
    // Detach of a program that is not attached there: ENOENT.
    assert_eq!(
        bpf.view_detach(&root, b"/sys/fs/cgroup/a", pid + 100)
            .err()
            .map(|e| e.errno()),
        Some(Errno::ENOENT)
    );
    bpf.view_detach(&root, b"/sys/fs/cgroup/a", pid).unwrap();
    assert!(!exists(&bpf, "/sys/fs/cgroup/a/v"));
    assert_eq!(
        bpf.view_detach(&root, b"/sys/fs/cgroup/a", pid)
            .err()
            .map(|e| e.errno()),
        Some(Errno::ENOENT)
    );
    // The group's removal ends the other attachment (and frees link and program).
    vfs.rmdir(&root, None, b"/sys/fs/cgroup/b").unwrap();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/b", 0o755).unwrap();
    assert!(!exists(&bpf, "/sys/fs/cgroup/b/v"));
    let c = counts_settled(&bpf, |c| {
        (c.progs, c.links, c.exposed) == (base.progs, base.links, 0)
    });
    assert_eq!((c.progs, c.links, c.exposed), (base.progs, base.links, 0));
}

/// The bpffs pin dies while obj_pin is exposing the object (before, during or after the
/// watch is armed): the exposure never outlives it, and nothing leaks.
#[test]
fn pin_dying_during_exposure_setup() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs().clone();
    vfs.mkdir(&root, None, b"/sys/fs/cgroup/g", 0o755).unwrap();
    let base = counts(&bpf);
    let mut exposed_ok = 0;
    for i in 0..200u32 {
        let h = bpf
            .map_create(MapDef::new(MapType::Array, 4, 8, 1).with_name("m"))
            .unwrap();
        bpf.obj_pin(&root, &h, None, b"/sys/fs/bpf/m", 0).unwrap();
        let (bpf2, root2) = (bpf.clone(), root.clone());
        let h2 = h.clone();
        let go = Arc::new(std::sync::Barrier::new(2));
        let go2 = go.clone();
        let t = std::thread::spawn(move || {
            go2.wait();
            bpf2.obj_pin(&root2, &h2, None, b"/sys/fs/cgroup/g/x", 0)
        });
        go.wait();
        // Vary where the unlink lands in the exposing thread's work.
        for _ in 0..(i % 40) * 100 {
            std::hint::spin_loop();
        }
        vfs.unlink(&root, None, b"/sys/fs/bpf/m").unwrap();
        match t.join().unwrap() {
            Ok(()) => exposed_ok += 1,
            // The pin was gone before the walk found it.
            Err(e) => assert_eq!(e, Errno::EPERM),
        }
        drop(h);
        // Whatever the interleaving, the file is gone once the pin is.
        assert!(!exists(&bpf, "/sys/fs/cgroup/g/x"));
    }
    assert_eq!(counts_settled(&bpf, |c| *c == base), base);
    println!("{exposed_ok}/200 exposures were made before their pin died");
}
