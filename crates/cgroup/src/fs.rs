//! The cgroup2 filesystem: which operations it allows (kernfs + cgroup's rules, with the
//! host kernel's errnos), the control files, exposed files, and host-mode refresh.

use crate::tree::{lock, Cgroup, CgroupTree};
use crate::SeqShow;
use bpfvfs_vfs::{
    oflags, Cred, Dentry, DentryRef, Errno, File, FileSystem, FileType, Inode, NewInode, PathRef,
    Result, SetAttr, StatFs, SuperBlock, Vfs, S_IFDIR, S_IFMT, S_IFREG,
};
use std::any::Any;
use std::sync::{Arc, Weak};

/// statfs f_type of cgroup2 (CGROUP2_SUPER_MAGIC).
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// cgroup.procs (0644): member pids; write a pid to move it here.
    Procs,
    /// cgroup.controllers (0444): no controllers here, an empty line.
    Controllers,
}

const CONTROL_FILES: [(&[u8], Ctl, u32); 2] = [
    (b"cgroup.controllers", Ctl::Controllers, 0o444),
    (b"cgroup.procs", Ctl::Procs, 0o644),
];

pub(crate) struct ExposedFile {
    pub(crate) group: Weak<Cgroup>,
    pub(crate) show: Arc<dyn SeqShow>,
}

/// What an inode of this filesystem is.
pub(crate) enum Node {
    /// Strong: the group lives at least as long as its directory inode (rmdir_done needs it).
    Dir(Arc<Cgroup>),
    Ctl(Weak<Cgroup>, Ctl),
    Exposed(ExposedFile),
}

pub(crate) struct CgroupFs {
    tree: Arc<CgroupTree>,
}

impl CgroupFs {
    pub(crate) fn new(tree: Arc<CgroupTree>) -> CgroupFs {
        CgroupFs { tree }
    }

    fn group_of_dir(dir: &Inode) -> Result<Arc<Cgroup>> {
        match dir.private::<Node>() {
            Some(Node::Dir(g)) => Ok(g.clone()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_inode(&self, sb: &Arc<SuperBlock>, g: &Arc<Cgroup>, attrs: &NewInode) -> Arc<Inode> {
        let i = sb.alloc_inode(attrs, None, Box::new(Node::Dir(g.clone())));
        i.set_nlink(2);
        i
    }

    fn host_dir_attrs(g: &Cgroup) -> NewInode {
        let (uid, gid, mode) = g
            .host_path()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.uid(), m.gid(), m.mode() & 0o7777)
            })
            .unwrap_or((0, 0, 0o755));
        NewInode {
            mode: S_IFDIR | mode,
            uid,
            gid,
            rdev: 0,
        }
    }

    /// Host mode: bring the directory `g` in line with the host (new groups looked up so
    /// they get VFS nodes, vanished or replaced ones removed). Runs from open, where no
    /// directory lock is held.
    fn host_refresh(&self, g: &Arc<Cgroup>) {
        let current = self.tree.host_sync_children(g);
        self.tree.flush_pending();
        let (Some(vfs), Ok(at)) = (self.tree.vfs(), self.tree.dir_path(g)) else {
            return;
        };
        let cred = Cred::root();
        if let Ok(entries) = vfs.readdir(&at, 0, usize::MAX) {
            for e in entries {
                if e.kind != FileType::Directory || e.name == b"." || e.name == b".." {
                    continue;
                }
                let stale = match vfs.lookup_at(&cred, &at, &e.name) {
                    Ok(c) => match c.inode().private::<Node>() {
                        Some(Node::Dir(x)) => x.is_removed(),
                        _ => false,
                    },
                    Err(_) => false,
                };
                if stale {
                    let _ = vfs.fs_remove_entry(at.dentry.arc(), &e.name, None);
                }
            }
        }
        for c in current {
            if let Ok(p) = vfs.lookup_at(&cred, &at, c.name().as_bytes()) {
                c.set_dir(p.dentry.arc());
                // Host groups appear here, not through mkdir: inherited views follow them.
                self.tree.apply_inherited(&c, false);
            }
        }
        for (name, _, _) in CONTROL_FILES {
            let _ = vfs.lookup_at(&cred, &at, name);
        }
    }
}

/// The control files of a new group's directory, added as the filesystem's own entries.
pub(crate) fn add_control_files(vfs: &Vfs, g: &Arc<Cgroup>, dir: &Arc<Dentry>) {
    let sb = dir.inode().sb().clone();
    let (uid, gid) = (dir.inode().uid(), dir.inode().gid());
    for (name, kind, mode) in CONTROL_FILES {
        let inode = sb.alloc_inode(
            &NewInode {
                mode: S_IFREG | mode,
                uid,
                gid,
                rdev: 0,
            },
            None,
            Box::new(Node::Ctl(Arc::downgrade(g), kind)),
        );
        // Cannot collide: the directory is new and still hidden behind its parent's lock.
        let _ = vfs.fs_add_entry(dir, name, &inode);
    }
}

fn name_str(name: &[u8]) -> Result<&str> {
    std::str::from_utf8(name).map_err(|_| Errno::EINVAL)
}

fn ctl_kind(name: &[u8]) -> Option<(Ctl, u32)> {
    CONTROL_FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, k, m)| (k, m))
}

impl FileSystem for CgroupFs {
    fn fs_type(&self) -> &'static str {
        "cgroup2"
    }
    fn magic(&self) -> u64 {
        CGROUP2_SUPER_MAGIC
    }
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>> {
        let root = self.tree.root();
        let attrs = if self.tree.is_host() {
            Self::host_dir_attrs(&root)
        } else {
            NewInode {
                mode: S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                rdev: 0,
            }
        };
        let i = self.dir_inode(sb, &root, &attrs);
        if !self.tree.is_host() {
            // The root group's id is the root directory's inode number, as every group's.
            root.set_id(i.ino());
            lock(&self.tree.inner).by_id.insert(i.ino(), root.clone());
        }
        self.tree.record_ino(i.ino(), &root);
        Ok(i)
    }
    fn populate(&self, vfs: &Vfs, root: &PathRef) -> Result<()> {
        self.tree.set_mount(&root.mnt);
        let g = self.tree.root();
        g.set_dir(root.dentry.arc());
        if !self.tree.is_host() {
            add_control_files(vfs, &g, root.dentry.arc());
        }
        Ok(())
    }
    fn statfs(&self, _sb: &SuperBlock) -> Result<StatFs> {
        Ok(StatFs {
            fs_type: CGROUP2_SUPER_MAGIC,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
            ..Default::default()
        })
    }

    fn lookup(&self, sb: &Arc<SuperBlock>, dir: &Inode, name: &[u8]) -> Result<Option<Arc<Inode>>> {
        // Local mode: every entry lives in the dcache. Host mode: nodes are made on demand;
        // the directory is locked, so nothing is removed from the VFS here.
        if !self.tree.is_host() {
            return Ok(None);
        }
        let g = Self::group_of_dir(dir)?;
        if let Some((kind, mode)) = ctl_kind(name) {
            return Ok(Some(sb.alloc_inode(
                &NewInode {
                    mode: S_IFREG | mode,
                    uid: dir.uid(),
                    gid: dir.gid(),
                    rdev: 0,
                },
                None,
                Box::new(Node::Ctl(Arc::downgrade(&g), kind)),
            )));
        }
        let Ok(name) = name_str(name) else {
            return Ok(None);
        };
        let Some(c) = self.tree.host_child(&g, name) else {
            return Ok(None);
        };
        let i = self.dir_inode(sb, &c, &Self::host_dir_attrs(&c));
        dir.inc_nlink();
        self.tree.record_ino(i.ino(), &c);
        Ok(Some(i))
    }

    fn create(&self, _: &Arc<SuperBlock>, _: &Inode, _: &[u8], _: &NewInode) -> Result<Arc<Inode>> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        // kernfs has no create: the VFS answers EACCES.
        Err(Errno::EACCES)
    }
    fn mknod(&self, _: &Arc<SuperBlock>, _: &Inode, _: &[u8], _: &NewInode) -> Result<Arc<Inode>> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        Err(Errno::EPERM)
    }
    fn symlink(
        &self,
        _: &Arc<SuperBlock>,
        _: &Inode,
        _: &[u8],
        _: &[u8],
        _: &NewInode,
    ) -> Result<Arc<Inode>> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        Err(Errno::EPERM)
    }
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        let parent = Self::group_of_dir(dir)?;
        let name = name_str(name)?;
        // cgroup_mkdir: a newline would break /proc/PID/cgroup.
        if name.contains('\n') {
            return Err(Errno::EINVAL);
        }
        // The group's id is its directory's inode number: the inode is made with the group.
        let (_g, i) = self.tree.add_local(&parent, name, |g| {
            sb.alloc_inode(attrs, None, Box::new(Node::Dir(g.clone())))
        })?;
        i.set_nlink(2);
        dir.inc_nlink();
        dir.touch_modified();
        Ok(i)
    }
    fn populate_dir(&self, vfs: &Vfs, dir: &DentryRef) {
        if let Some(Node::Dir(g)) = dir.inode().private::<Node>() {
            self.tree.populate_group(vfs, g, dir.arc());
        }
    }
    fn mkobj(
        &self,
        _: &Arc<SuperBlock>,
        _: &Inode,
        _: &[u8],
        _: &NewInode,
        _: Box<dyn Any + Send + Sync>,
    ) -> Result<Arc<Inode>> {
        // No true pins in kernfs: exposing goes through `CgroupTree::expose`.
        Err(Errno::EPERM)
    }
    fn link(&self, _: &Inode, _: &Inode, _: &[u8]) -> Result<()> {
        Err(if self.tree.is_host() {
            Errno::EROFS
        } else {
            Errno::EPERM
        })
    }
    fn unlink(&self, _: &Inode, _: &[u8], _: &Inode) -> Result<()> {
        // Control and exposed files go only with their group or their exposure.
        Err(if self.tree.is_host() {
            Errno::EROFS
        } else {
            Errno::EPERM
        })
    }
    fn rmdir_removes_entries(&self) -> bool {
        true
    }
    fn rmdir(&self, dir: &Inode, _name: &[u8], victim: &Inode) -> Result<()> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        let g = Self::group_of_dir(victim)?;
        self.tree.remove_local(&g)?;
        victim.clear_nlink();
        victim.touch_changed();
        dir.drop_nlink();
        dir.touch_modified();
        Ok(())
    }
    fn rmdir_done(&self, victim: &Inode) {
        if let Ok(g) = Self::group_of_dir(victim) {
            self.tree.finish_removal(&g);
        }
    }
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &self,
        _: &Inode,
        _: &[u8],
        _: &Inode,
        _: &Inode,
        _: &[u8],
        _: Option<&Inode>,
        _: u32,
    ) -> Result<()> {
        Err(if self.tree.is_host() {
            Errno::EROFS
        } else {
            Errno::EPERM
        })
    }
    fn setattr(&self, inode: &Inode, attr: &SetAttr) -> Result<()> {
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        // kernfs files have no size to change: O_TRUNC (`echo PID > cgroup.procs`) is fine.
        let mut a = attr.clone();
        a.size = None;
        bpfvfs_vfs::generic_setattr(inode, &a);
        Ok(())
    }

    fn open(&self, inode: &Inode, flags: i32) -> Result<Box<dyn Any + Send + Sync>> {
        let write = flags & oflags::O_ACCMODE != oflags::O_RDONLY;
        match inode.private::<Node>() {
            Some(Node::Dir(g)) => {
                if self.tree.is_host() {
                    self.host_refresh(g);
                }
                Ok(Box::new(Vec::<u8>::new()))
            }
            Some(Node::Ctl(g, kind)) => {
                if write && self.tree.is_host() {
                    return Err(Errno::EROFS);
                }
                let g = g
                    .upgrade()
                    .filter(|g| !g.is_removed())
                    .ok_or(Errno::ENODEV)?;
                let text = match kind {
                    Ctl::Procs => {
                        let mut s = String::new();
                        for p in g.procs() {
                            s.push_str(&format!("{p}\n"));
                        }
                        s.into_bytes()
                    }
                    Ctl::Controllers => match g.host_path() {
                        Some(h) => std::fs::read(h.join("cgroup.controllers")).unwrap_or_default(),
                        None => b"\n".to_vec(),
                    },
                };
                Ok(Box::new(text))
            }
            Some(Node::Exposed(x)) => {
                let g = x
                    .group
                    .upgrade()
                    .filter(|g| !g.is_removed())
                    .ok_or(Errno::ENODEV)?;
                Ok(Box::new(x.show.show(&g)?))
            }
            None => Err(Errno::EIO),
        }
    }
    fn direct_io(&self, inode: &Inode) -> bool {
        inode.mode() & S_IFMT == S_IFREG
    }
    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        let text = file.private::<Vec<u8>>().ok_or(Errno::EINVAL)?;
        let off = offset.min(text.len() as u64) as usize;
        let n = buf.len().min(text.len() - off);
        buf[..n].copy_from_slice(&text[off..off + n]);
        Ok(n)
    }
    fn write(&self, file: &File, data: &[u8], _offset: u64) -> Result<usize> {
        let Some(Node::Ctl(g, Ctl::Procs)) = file.inode().private::<Node>() else {
            return Err(Errno::EINVAL);
        };
        if self.tree.is_host() {
            return Err(Errno::EROFS);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let g = g
            .upgrade()
            .filter(|g| !g.is_removed())
            .ok_or(Errno::ENODEV)?;
        // One pid per write, surrounding white space ignored (kstrtoint of strstrip).
        let pid: u32 = std::str::from_utf8(data)
            .ok()
            .map(str::trim)
            .and_then(|s| s.parse().ok())
            .ok_or(Errno::EINVAL)?;
        self.tree.move_pid(&g, pid)?;
        Ok(data.len())
    }

    fn evict_inode(&self, inode: &Inode) {
        if let Some(Node::Dir(_)) = inode.private::<Node>() {
            self.tree.forget_ino(inode.ino());
        }
    }
}
