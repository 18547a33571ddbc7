use bpfvfs_vfs::*;

#[test]
fn smoke() {
    let vfs = Vfs::new_memfs();
    let root = Cred::root();
    vfs.mkdir(&root, None, b"/a", 0o755).unwrap();
    vfs.mkdir(&root, None, b"/a/b", 0o755).unwrap();
    vfs.write_file(&root, b"/a/b/f", b"hello").unwrap();
    assert_eq!(vfs.read_file(&root, b"/a/b/f").unwrap(), b"hello");
    vfs.symlink(&root, b"b/f", None, b"/a/l").unwrap();
    assert_eq!(vfs.read_file(&root, b"/a/l").unwrap(), b"hello");
    vfs.rename(&root, b"/a/b", b"/c", 0).unwrap();
    assert_eq!(vfs.read_file(&root, b"/c/f").unwrap(), b"hello");
    assert_eq!(vfs.stat(&root, None, b"/a/b", true), Err(Errno::ENOENT));
    vfs.unlink(&root, None, b"/c/f").unwrap();
    vfs.rmdir(&root, None, b"/c").unwrap();
    vfs.unlink(&root, None, b"/a/l").unwrap();
    vfs.rmdir(&root, None, b"/a").unwrap();
    rcu_barrier();
    let s = vfs.stats();
    eprintln!("{s:?}");
    assert_eq!(s.inodes_live, 1);
}
