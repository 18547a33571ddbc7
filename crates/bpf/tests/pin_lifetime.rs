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
    assert_eq!(
        bpf.obj_pin(&root, &h, None, b"/tmp-not-bpffs", 0).err(),
        Some(Errno::EPERM)
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
