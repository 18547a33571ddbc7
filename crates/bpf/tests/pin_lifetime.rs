use bpfvfs_bpf::*;
use bpfvfs_vfs::{Cred, Errno, Vfs, LOOKUP_FOLLOW};

fn setup() -> (std::sync::Arc<Bpf>, Cred) {
    let vfs = Vfs::new_memfs();
    (Bpf::new(vfs).unwrap(), Cred::root())
}

#[test]
fn pin_get_unpin_frees_map() {
    let (bpf, root) = setup();
    let h = bpf
        .map_create(MapDef::new(MapType::Array, 4, 8, 4).with_name("arr"))
        .unwrap();
    let id = h.obj.id();
    bpf.map_update_elem(&h, &1u32.to_ne_bytes(), &7u64.to_ne_bytes(), 0)
        .unwrap();
    bpf.obj_pin(&root, &h, None, b"/sys/fs/bpf/m", 0).unwrap();
    let st = bpf.vfs().stat(&root, None, b"/sys/fs/bpf/m", true).unwrap();
    assert_eq!(st.mode, 0o100600);
    drop(h);
    // The pin keeps it alive.
    let h2 = bpf.obj_get(&root, None, b"/sys/fs/bpf/m", 0).unwrap();
    assert_eq!(h2.obj.id(), id);
    assert_eq!(
        bpf.map_lookup_elem(&h2, &1u32.to_ne_bytes()).unwrap(),
        7u64.to_ne_bytes()
    );
    drop(h2);
    assert!(bpf.registry().map_by_id(id).is_ok());
    bpf.vfs().unlink(&root, None, b"/sys/fs/bpf/m").unwrap();
    assert_eq!(bpf.registry().map_by_id(id).err(), Some(Errno::ENOENT));
}

#[test]
fn bpffs_rules() {
    let (bpf, root) = setup();
    let vfs = bpf.vfs();
    assert_eq!(
        vfs.stat(&root, None, b"/sys/fs/bpf/no.such", true).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        vfs.mkdir(&root, None, b"/sys/fs/bpf/a.b", 0o755).err(),
        Some(Errno::EPERM)
    );
    assert!(vfs
        .stat(&root, None, b"/sys/fs/bpf/maps.debug", true)
        .is_ok());
    let st = vfs.stat(&root, None, b"/sys/fs/bpf", true).unwrap();
    assert_eq!(st.mode, 0o41777);
    let h = bpf
        .map_create(MapDef::new(MapType::Array, 4, 8, 4).with_name("arr"))
        .unwrap();
    // Outside bpffs (memfs) a pin is a true pin (issue 9; tests/pin_outside.rs).
    bpf.obj_pin(&root, &h, None, b"/tmp-not-bpffs", 0).unwrap();
    assert_eq!(
        vfs.stat(&root, None, b"/tmp-not-bpffs", true).unwrap().mode,
        0o100600
    );
    let text = String::from_utf8(vfs.read_file(&root, b"/sys/fs/bpf/maps.debug").unwrap()).unwrap();
    assert!(
        text.starts_with("  id name             max_entries  cur_entries\n"),
        "{text}"
    );
    assert!(text.contains(" arr "), "{text}");
    let p = vfs
        .resolve(&root, None, b"/sys/fs/bpf", LOOKUP_FOLLOW)
        .unwrap();
    let names: Vec<String> = vfs
        .readdir(&p, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    assert_eq!(names, [".", "..", "maps.debug", "progs.debug"]);
}

fn prog_info(name: &str) -> ProgInfo {
    ProgInfo {
        prog_type: ProgType::Syscall.as_u32(),
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

/// Every order in which the three kinds of holder — handle, pin, link — can let go of a
/// program: it is freed exactly when the last one goes, never before, and the link's detach
/// callback runs exactly once.
#[test]
fn prog_freed_when_last_of_handle_pin_link_goes_in_every_order() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    // 0 = drop the handle, 1 = unlink the prog pin, 2 = drop the link (handle + its pin).
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
        let base = bpf.registry().stats();
        let detached = Arc::new(AtomicU32::new(0));
        let mut prog = Some(bpf.prog_add(prog_info("p"), None).unwrap());
        let id = prog.as_ref().unwrap().obj.id();
        bpf.obj_pin(&root, prog.as_ref().unwrap(), None, b"/sys/fs/bpf/p", 0)
            .unwrap();
        let d = detached.clone();
        let link = bpf
            .link_create(
                prog.as_ref().unwrap(),
                "test",
                "t",
                Some(Box::new(move || {
                    d.fetch_add(1, Ordering::SeqCst);
                })),
            )
            .unwrap();
        bpf.obj_pin(&root, &link, None, b"/sys/fs/bpf/l", 0)
            .unwrap();
        let mut link = Some(link);
        for (step, what) in order.iter().enumerate() {
            assert!(
                bpf.registry().prog_by_id(id).is_ok(),
                "{order:?}: freed before step {step}"
            );
            match what {
                0 => drop(prog.take()),
                1 => bpf.vfs().unlink(&root, None, b"/sys/fs/bpf/p").unwrap(),
                _ => {
                    drop(link.take());
                    bpf.vfs().unlink(&root, None, b"/sys/fs/bpf/l").unwrap();
                }
            }
        }
        assert_eq!(
            bpf.registry().prog_by_id(id).err(),
            Some(Errno::ENOENT),
            "{order:?}"
        );
        assert_eq!(
            detached.load(Ordering::SeqCst),
            1,
            "{order:?}: detach ran once"
        );
        let s = bpf.registry().stats();
        assert_eq!(
            (s.progs_live, s.links_live),
            (base.progs_live, base.links_live),
            "{order:?}"
        );
        assert_eq!(s.progs_freed_total, base.progs_freed_total + 1, "{order:?}");
        assert_eq!(s.links_freed_total, base.links_freed_total + 1, "{order:?}");
    }
}

/// A map held by a handle and two hard-linked pins: freed only after all three go.
#[test]
fn map_with_hard_linked_pins_freed_after_last_name_and_handle() {
    let (bpf, root) = setup();
    let h = bpf
        .map_create(MapDef::new(MapType::Hash, 4, 4, 8).with_name("h"))
        .unwrap();
    let id = h.obj.id();
    bpf.obj_pin(&root, &h, None, b"/sys/fs/bpf/a", 0).unwrap();
    bpf.vfs()
        .link(&root, b"/sys/fs/bpf/a", b"/sys/fs/bpf/b", false)
        .unwrap();
    let st = bpf.vfs().stat(&root, None, b"/sys/fs/bpf/b", true).unwrap();
    assert_eq!(st.nlink, 2);
    bpf.vfs().unlink(&root, None, b"/sys/fs/bpf/a").unwrap();
    drop(h);
    assert!(
        bpf.registry().map_by_id(id).is_ok(),
        "one name still pins it"
    );
    let again = bpf.obj_get(&root, None, b"/sys/fs/bpf/b", 0).unwrap();
    assert_eq!(again.obj.id(), id);
    bpf.vfs().unlink(&root, None, b"/sys/fs/bpf/b").unwrap();
    assert!(
        bpf.registry().map_by_id(id).is_ok(),
        "the handle from obj_get still holds it"
    );
    drop(again);
    assert_eq!(bpf.registry().map_by_id(id).err(), Some(Errno::ENOENT));
}
