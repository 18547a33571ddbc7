//! A filesystem that owns its entries (kernfs-like): `Vfs::fs_add_entry` /
//! `fs_remove_entry`, `FileSystem::populate_dir`, `rmdir_removes_entries` and `rmdir_done`,
//! with a minimal filesystem whose every directory gets a `ctl` file at mkdir.

use bpfvfs_vfs::fsnotify::{GroupOptions, IN_CREATE, IN_DELETE};
use bpfvfs_vfs::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every directory gets a `ctl` file at mkdir; rmdir refuses directories named "busy".
#[derive(Default)]
struct OwnFs {
    /// `rmdir_done` calls.
    done: AtomicU32,
}

impl FileSystem for OwnFs {
    fn fs_type(&self) -> &'static str {
        "ownfs"
    }
    fn magic(&self) -> u64 {
        0x6f776e
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>> {
        let i = sb.alloc_inode(
            &NewInode {
                mode: S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                rdev: 0,
            },
            None,
            Box::new(()),
        );
        i.set_nlink(2);
        Ok(i)
    }
    fn statfs(&self, _sb: &SuperBlock) -> Result<StatFs> {
        Ok(StatFs::default())
    }
    fn create(&self, _: &Arc<SuperBlock>, _: &Inode, _: &[u8], _: &NewInode) -> Result<Arc<Inode>> {
        Err(Errno::EACCES)
    }
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        _name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        let i = sb.alloc_inode(attrs, None, Box::new(()));
        i.set_nlink(2);
        dir.inc_nlink();
        Ok(i)
    }
    fn symlink(
        &self,
        _: &Arc<SuperBlock>,
        _: &Inode,
        _: &[u8],
        _: &[u8],
        _: &NewInode,
    ) -> Result<Arc<Inode>> {
        Err(Errno::EPERM)
    }
    fn unlink(&self, _: &Inode, _: &[u8], _: &Inode) -> Result<()> {
        Err(Errno::EPERM)
    }
    fn populate_dir(&self, vfs: &Vfs, dir: &DentryRef) {
        vfs.fs_add_entry(dir.arc(), b"ctl", &file(dir.inode().sb()))
            .unwrap();
    }
    fn rmdir_removes_entries(&self) -> bool {
        true
    }
    fn rmdir(&self, dir: &Inode, name: &[u8], victim: &Inode) -> Result<()> {
        if name == b"busy" {
            return Err(Errno::EBUSY);
        }
        victim.clear_nlink();
        dir.drop_nlink();
        Ok(())
    }
    fn rmdir_done(&self, _victim: &Inode) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

fn file(sb: &Arc<SuperBlock>) -> Arc<Inode> {
    sb.alloc_inode(
        &NewInode {
            mode: S_IFREG | 0o444,
            uid: 0,
            gid: 0,
            rdev: 0,
        },
        None,
        Box::new(()),
    )
}

fn names(vfs: &Vfs, path: &[u8]) -> Vec<String> {
    let at = vfs.resolve(&Cred::root(), None, path, 0).unwrap();
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

#[test]
fn owned_entries() {
    let fs = Arc::new(OwnFs::default());
    let vfs = Vfs::new(fs.clone(), VfsOptions::default()).unwrap();
    let c = Cred::root();
    let base = vfs.stats();
    let g = Group::new(GroupOptions::default());
    vfs.mkdir(&c, None, b"/d", 0o755).unwrap();
    let wd = g.add_watch(&vfs, &c, b"/d", IN_CREATE | IN_DELETE).unwrap();
    // populate_dir gave the new directory its entry before anyone saw it.
    assert_eq!(names(&vfs, b"/d"), ["ctl"]);
    // The filesystem's own entries: added without permission checks; EEXIST for a taken
    // name; EXDEV for an inode of another superblock; IN_CREATE reported.
    let d = vfs.resolve(&c, None, b"/d", 0).unwrap();
    let sb = d.inode().sb().clone();
    let x = file(&sb);
    vfs.fs_add_entry(d.dentry.arc(), b"x", &x).unwrap();
    assert_eq!(
        vfs.fs_add_entry(d.dentry.arc(), b"x", &file(&sb)).err(),
        Some(Errno::EEXIST)
    );
    let other = Vfs::new_memfs();
    let osb = other.root().inode().sb().clone();
    assert_eq!(
        vfs.fs_add_entry(d.dentry.arc(), b"y", &file(&osb)).err(),
        Some(Errno::EXDEV)
    );
    assert_eq!(
        vfs.fs_add_entry(d.dentry.arc(), b"a/b", &file(&sb)).err(),
        Some(Errno::EINVAL)
    );
    let ev = g.read_events(16, Some(Duration::from_millis(100))).unwrap();
    assert!(ev
        .iter()
        .any(|e| e.wd == wd && e.mask & IN_CREATE != 0 && e.name.as_deref() == Some(&b"x"[..])));
    // Users cannot remove it; the filesystem can, only while the name still names it.
    assert_eq!(vfs.unlink(&c, None, b"/d/x").err(), Some(Errno::EPERM));
    assert_eq!(
        vfs.fs_remove_entry(d.dentry.arc(), b"x", Some(&file(&sb)))
            .err(),
        Some(Errno::ENOENT)
    );
    vfs.fs_remove_entry(d.dentry.arc(), b"x", Some(&x)).unwrap();
    assert_eq!(names(&vfs, b"/d"), ["ctl"]);
    assert_eq!(x.nlink(), 0);
    let ev = g.read_events(16, Some(Duration::from_millis(100))).unwrap();
    assert!(ev.iter().any(|e| e.mask & IN_DELETE != 0));
    drop(d);

    // rmdir: the filesystem decides (EBUSY), and the directory's entries go with it.
    vfs.mkdir(&c, None, b"/busy", 0o755).unwrap();
    assert_eq!(vfs.rmdir(&c, None, b"/busy").err(), Some(Errno::EBUSY));
    assert_eq!(names(&vfs, b"/busy"), ["ctl"]);
    vfs.rmdir(&c, None, b"/d").unwrap();
    assert_eq!(fs.done.load(Ordering::Relaxed), 1, "rmdir_done once");
    assert_eq!(vfs.stat(&c, None, b"/d", true).err(), Some(Errno::ENOENT));

    // fs_remove_entry of a directory takes its subtree.
    vfs.mkdir(&c, None, b"/busy/sub", 0o755).unwrap();
    let root = vfs.root();
    vfs.fs_remove_entry(root.dentry.arc(), b"busy", None)
        .unwrap();
    assert_eq!(names(&vfs, b"/"), Vec::<String>::new());
    drop(root);
    drop(g);
    drop(x);
    for _ in 0..500 {
        rcu_barrier();
        if vfs.stats().inodes_live == base.inodes_live {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        vfs.stats().inodes_live,
        base.inodes_live,
        "every inode freed"
    );
}
