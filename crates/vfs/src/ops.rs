//! The VFS operations: what a system call does between resolving its path and calling the
//! filesystem (name checks, permission checks, locking, dcache updates, reference drops).
//!
//! Each operation has an `_at` form taking an already-resolved parent directory and a name
//! (the FUSE edge works that way) and a path form that resolves first.
//!
//! Security and tracing hooks ([`crate::hooks`]) are called here at the kernel's places
//! (the per-operation table is in that module's docs). Each call site costs one branch on
//! [`Vfs::hooks`] when they are off. Concurrency: LSM hooks run inside the directory locks
//! the operation holds (lock order: directory locks, then whatever the hook takes); no hook
//! is called with a watch-mark lock, a dentry-hash stripe lock or `Dentry::links` held, and
//! eviction (`inode_free_security`, the `evict` trace) never runs with a directory lock held.
//! An operation reads [`Vfs::hooks`] once for its trace point, so entry and exit always come
//! in pairs even if the hooks are switched meanwhile.

use crate::changes::ChangeKind;
use crate::dentry::DentryRef;
use crate::errno::{Errno, Result};
use crate::file::File;
use crate::fsnotify::{self, IN_ACCESS, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MODIFY};
use crate::hooks::{TracePoint, VfsHooks};
use crate::inode::{Inode, NewInode};
use crate::mount::PathRef;
use crate::namei::{LOOKUP_DIRECTORY, LOOKUP_FOLLOW};
use crate::types::*;
use crate::Vfs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Called on a new inode before its name is published (`fileops_override.rs`).
pub(crate) type BindFn<'a> = &'a mut dyn FnMut(&Arc<Inode>);

/// What to create.
#[derive(Clone, Debug)]
pub enum NewKind<'a> {
    File,
    Dir,
    Symlink(&'a [u8]),
    /// A fifo, socket or device node: the mode's type bits say which.
    Node {
        rdev: u32,
    },
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// may_mknod: which file types mknod(2) makes (a directory is EPERM, a symlink EINVAL).
fn may_mknod(mode: u32) -> Result<()> {
    match mode & S_IFMT {
        0 | S_IFREG | S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => Ok(()),
        S_IFDIR => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// renameat2 flags: known ones only; EXCHANGE goes with neither NOREPLACE nor WHITEOUT; and
/// WHITEOUT (overlayfs's) is not supported.
fn check_rename_flags(flags: u32) -> Result<()> {
    use rename_flags::*;
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & RENAME_EXCHANGE != 0 && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & RENAME_WHITEOUT != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// rw_verify_area: a read or write whose range ends beyond the largest loff_t is EINVAL
/// (a zero-length one at i64::MAX is fine).
fn check_rw_range(offset: u64, len: usize) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// A traced function's return value: 0 or -errno.
#[inline]
fn trace_ret<T>(r: &Result<T>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => -i64::from(e.raw()),
    }
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// may_delete's sticky-directory rule: in a sticky directory only the owner of the entry, the
/// owner of the directory or a privileged caller may remove or rename it.
fn check_sticky(cred: &Cred, dir: &Inode, victim: &Inode) -> Result<()> {
    if dir.mode() & S_ISVTX == 0
        || cred.is_privileged()
        || cred.uid == victim.uid()
        || cred.uid == dir.uid()
    {
        return Ok(());
    }
    Err(Errno::EPERM)
}

impl Vfs {
    /// inode_permission: the DAC check (generic_permission), then, once it allowed, the
    /// `inode_permission` hook with the same mask. Every permission check of an operation
    /// goes through here; the per-component search check of the path walk does not (see
    /// `namei.rs`).
    #[inline]
    pub fn inode_permission(&self, cred: &Cred, inode: &Arc<Inode>, mask: u32) -> Result<()> {
        inode.permission(cred, mask)?;
        if let Some(h) = self.hooks() {
            h.inode_permission(inode, mask)?;
        }
        Ok(())
    }

    /// xattr_permission, reduced: the security, system and trusted namespaces are left to
    /// the filesystem; anything else needs the access asked for.
    fn xattr_permission(
        &self,
        cred: &Cred,
        inode: &Arc<Inode>,
        name: &[u8],
        mask: u32,
    ) -> Result<()> {
        if name.starts_with(b"security.")
            || name.starts_with(b"system.")
            || name.starts_with(b"trusted.")
        {
            return Ok(());
        }
        self.inode_permission(cred, inode, mask)
    }

    /// Write and search permission on a directory whose entries change (may_create /
    /// may_delete's inode_permission).
    fn may_modify_dir(&self, cred: &Cred, dir: &PathRef) -> Result<()> {
        let inode = dir.inode();
        if !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.inode_permission(cred, inode, may::WRITE | may::EXEC)
    }

    fn new_inode_attrs(&self, cred: &Cred, dir: &Inode, mode: u32, rdev: u32) -> NewInode {
        let mut mode = mode;
        let ftype = mode & S_IFMT;
        mode = ftype | (mode & 0o7777 & !cred.umask);
        let gid;
        if dir.mode() & S_ISGID != 0 {
            gid = dir.gid();
            if ftype == S_IFDIR {
                mode |= S_ISGID;
            } else if mode & S_ISGID != 0
                && mode & 0o010 != 0
                && !cred.in_group(gid)
                && !cred.is_privileged()
            {
                mode &= !S_ISGID;
            }
        } else {
            gid = cred.gid;
        }
        NewInode {
            mode,
            uid: cred.uid,
            gid,
            rdev,
        }
    }

    /// Create `name` in `parent`. Returns the new location.
    pub fn create_at(
        &self,
        cred: &Cred,
        parent: &PathRef,
        name: &[u8],
        kind: NewKind<'_>,
        mode: u32,
    ) -> Result<PathRef> {
        self.create_at_bound(cred, parent, name, kind, mode, None)
    }

    /// `create_at`, with `bind` run on the new inode before it is published (see
    /// `fileops_override.rs`).
    pub(crate) fn create_at_bound(
        &self,
        cred: &Cred,
        parent: &PathRef,
        name: &[u8],
        kind: NewKind<'_>,
        mode: u32,
        bind: Option<BindFn<'_>>,
    ) -> Result<PathRef> {
        let _section = self.hook_section();
        // Linux's order: the symlink target and the node type are checked first (getname,
        // may_mknod), then the name is looked up (EEXIST, so open(O_CREAT) of an existing
        // file in a read-only directory still opens it), then may_create: a dead directory
        // (ENOENT), then write+search permission (EACCES).
        if let NewKind::Symlink(t) = kind {
            if t.is_empty() {
                return Err(Errno::ENOENT);
            }
            if t.len() >= PATH_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
        }
        if let NewKind::Node { .. } = kind {
            may_mknod(mode)?;
        }
        check_name(name)?;
        if is_dot(name) {
            return Err(Errno::EEXIST);
        }
        let dir = parent.inode();
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let mut children = parent.dentry.lock_children()?;
        if children.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        if parent.dentry.is_dead() || dir.nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        // vfs_mkdir is entered here, with the name looked up (filename_create) and the
        // directory locked; its exit is traced once the lock is dropped.
        let traced = match kind {
            NewKind::Dir => self.hooks(),
            _ => None,
        };
        let dmode = mode & 0o1777 & !cred.umask; // vfs_mkdir's mode (umask applied)
        if let Some(h) = traced {
            h.trace(
                TracePoint::VfsMkdir {
                    parent: parent.dentry.arc(),
                    name,
                    mode: dmode,
                    created: None,
                },
                None,
            );
        }
        let r = self.create_locked(cred, parent, &mut children, name, kind, mode, bind);
        drop(children);
        if let Some(h) = traced {
            h.trace(
                TracePoint::VfsMkdir {
                    parent: parent.dentry.arc(),
                    name,
                    mode: dmode,
                    created: r.as_ref().ok().map(|p| p.dentry.arc()),
                },
                Some(trace_ret(&r)),
            );
        }
        r
    }

    /// create_at's part under the directory lock, from may_create on (vfs_create,
    /// vfs_mkdir, vfs_symlink, vfs_mknod): the LSM hook runs after the VFS's checks, right
    /// before the filesystem is asked.
    #[allow(clippy::too_many_arguments)]
    fn create_locked(
        &self,
        cred: &Cred,
        parent: &PathRef,
        children: &mut crate::dentry::Children,
        name: &[u8],
        kind: NewKind<'_>,
        mode: u32,
        bind: Option<BindFn<'_>>,
    ) -> Result<PathRef> {
        let dir = parent.inode();
        self.may_modify_dir(cred, parent)?;
        let sb = dir.sb().clone();
        let fs = sb.fs().clone();
        let inode = match kind {
            NewKind::File => {
                let attrs = self.new_inode_attrs(cred, dir, S_IFREG | (mode & 0o7777), 0);
                if let Some(h) = self.hooks() {
                    h.inode_create(parent.dentry.arc(), name, attrs.mode)?;
                }
                fs.create(&sb, dir, name, &attrs)?
            }
            NewKind::Dir => {
                if let Some(h) = self.hooks() {
                    h.inode_mkdir(parent.dentry.arc(), name, mode & 0o1777 & !cred.umask)?;
                }
                fs.mkdir(
                    &sb,
                    dir,
                    name,
                    &self.new_inode_attrs(cred, dir, S_IFDIR | (mode & 0o7777), 0),
                )?
            }
            NewKind::Symlink(target) => {
                if let Some(h) = self.hooks() {
                    h.inode_symlink(parent.dentry.arc(), name, target)?;
                }
                fs.symlink(
                    &sb,
                    dir,
                    name,
                    target,
                    &self.new_inode_attrs(cred, dir, S_IFLNK | 0o777, 0),
                )?
            }
            NewKind::Node { rdev } => {
                let ft = mode & S_IFMT;
                let ft = if ft == 0 { S_IFREG } else { ft };
                if matches!(ft, S_IFCHR | S_IFBLK) && !cred.is_privileged() {
                    return Err(Errno::EPERM);
                }
                let attrs = self.new_inode_attrs(cred, dir, ft | (mode & 0o7777), rdev);
                // mknod(S_IFREG) is vfs_create in Linux too; other types go to the same
                // hook here (there is no inode_mknod): the mode's type bits tell them apart.
                if let Some(h) = self.hooks() {
                    h.inode_create(parent.dentry.arc(), name, attrs.mode)?;
                }
                if ft == S_IFREG {
                    fs.create(&sb, dir, name, &attrs)?
                } else {
                    fs.mknod(&sb, dir, name, &attrs)?
                }
            }
        };
        if let Some(b) = bind {
            b(&inode); // before publication: nobody else can reach the inode yet
        }
        let d = self.d_add_locked(children, &parent.dentry, name, &inode);
        if inode.is_dir() {
            // A kernfs-like filesystem adds the new directory's own entries (control
            // files) before anyone can see it without them: the parent is still locked.
            fs.populate_dir(self, &d);
        }
        // Under the directory lock: one directory's events are queued in the order its
        // entries changed.
        fsnotify::notify_name(dir, IN_CREATE, inode.is_dir(), name, 0);
        self.note_entry(ChangeKind::Added, dir, name, &inode, true);
        Ok(PathRef {
            mnt: parent.mnt.clone(),
            dentry: d,
        })
    }

    /// The child `name` of `parent` (no symlink following, mounts crossed), like a FUSE lookup.
    pub fn lookup_at(&self, cred: &Cred, parent: &PathRef, name: &[u8]) -> Result<PathRef> {
        check_name(name)?;
        if !parent.inode().is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.resolve(cred, Some(parent), name, 0)
    }

    fn child_locked(children: &crate::dentry::Children, name: &[u8]) -> Result<DentryRef> {
        children.get(name).cloned().ok_or(Errno::ENOENT)
    }

    /// unlink(2) of `name` in `parent`.
    pub fn unlink_at(&self, cred: &Cred, parent: &PathRef, name: &[u8]) -> Result<()> {
        let _section = self.hook_section();
        check_name(name)?;
        if is_dot(name) {
            return Err(Errno::EISDIR);
        }
        let mut children = parent.dentry.lock_children()?;
        // Linux's order: lookup (ENOENT), then vfs_unlink: may_delete: permission on the
        // directory (EACCES), the sticky rule (EPERM), the type (EISDIR); then mount points
        // (EBUSY), then the LSM hook.
        let victim = Self::child_locked(&children, name)?;
        // vfs_unlink is entered once the victim is found (under the directory lock).
        let traced = self.hooks();
        let point = TracePoint::VfsUnlink {
            parent: parent.dentry.arc(),
            victim: victim.arc(),
        };
        if let Some(h) = traced {
            h.trace(point, None);
        }
        let r = self.unlink_locked(cred, parent, &mut children, name, &victim);
        drop(children);
        if let Some(h) = traced {
            h.trace(point, Some(trace_ret(&r)));
        }
        drop(victim);
        // The removed entry is dropped with no directory lock held: this may evict the inode.
        r.map(drop)
    }

    fn unlink_locked(
        &self,
        cred: &Cred,
        parent: &PathRef,
        children: &mut crate::dentry::Children,
        name: &[u8],
        victim: &DentryRef,
    ) -> Result<Option<DentryRef>> {
        let vi = victim.inode();
        self.may_modify_dir(cred, parent)?;
        check_sticky(cred, parent.inode(), vi)?;
        if vi.is_dir() {
            return Err(Errno::EISDIR);
        }
        if victim.is_mountpoint() {
            return Err(Errno::EBUSY);
        }
        if let Some(h) = self.hooks() {
            h.inode_unlink(parent.dentry.arc(), victim.arc())?;
        }
        parent.inode().sb().fs().unlink(parent.inode(), name, vi)?;
        fsnotify::notify_inode(vi, IN_ATTRIB); // the link count changed
        self.unhash(&parent.dentry, name, victim);
        let removed = children.remove(name);
        self.notify_deleted(parent, name, victim);
        Ok(removed)
    }

    /// rmdir(2) of `name` in `parent`.
    pub fn rmdir_at(&self, cred: &Cred, parent: &PathRef, name: &[u8]) -> Result<()> {
        let _section = self.hook_section();
        check_name(name)?;
        if name == b"." {
            return Err(Errno::EINVAL);
        }
        if name == b".." {
            return Err(Errno::ENOTEMPTY);
        }
        let mut children = parent.dentry.lock_children()?;
        // As in unlink_at: ENOENT, EACCES, EPERM (sticky), ENOTDIR, EBUSY, the LSM hook
        // (with the victim locked, as vfs_rmdir), ENOTEMPTY (the filesystem's in Linux).
        let victim = Self::child_locked(&children, name)?;
        let traced = self.hooks();
        let point = TracePoint::VfsRmdir {
            parent: parent.dentry.arc(),
            victim: victim.arc(),
        };
        if let Some(h) = traced {
            h.trace(point, None);
        }
        let r = self.rmdir_locked(cred, parent, &mut children, name, &victim);
        drop(children);
        if let Some(h) = traced {
            h.trace(point, Some(trace_ret(&r)));
        }
        if r.is_ok() {
            // Unlocked now: the filesystem may finish the removal (run callbacks that take
            // other locks or call back into the VFS).
            victim.inode().sb().fs().rmdir_done(victim.inode());
        }
        drop(victim);
        r.map(drop)
    }

    fn rmdir_locked(
        &self,
        cred: &Cred,
        parent: &PathRef,
        children: &mut crate::dentry::Children,
        name: &[u8],
        victim: &DentryRef,
    ) -> Result<(Option<DentryRef>, Vec<DentryRef>)> {
        let vi = victim.inode();
        self.may_modify_dir(cred, parent)?;
        check_sticky(cred, parent.inode(), vi)?;
        if !vi.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if victim.is_mountpoint() {
            return Err(Errno::EBUSY);
        }
        let mut vchildren = victim.lock_children()?;
        if let Some(h) = self.hooks() {
            h.inode_rmdir(parent.dentry.arc(), victim.arc())?;
        }
        // A kernfs-like filesystem decides emptiness itself (a cgroup with only control
        // files is removable, one with child groups is EBUSY) and its entries go with it.
        let fs = vi.sb().fs().clone();
        let owns = fs.rmdir_removes_entries();
        if !owns && !vchildren.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        if owns && vchildren.by_name.values().any(|(_, d)| d.is_mountpoint()) {
            return Err(Errno::EBUSY);
        }
        fs.rmdir(parent.inode(), name, vi)?;
        let mut owned = Vec::new();
        if owns {
            // Entries of such a filesystem are its own files (subdirectories are refused
            // by its rmdir), so nothing below can be a mount point: this cannot fail.
            self.drain_fs_entries(victim, &mut vchildren, &mut owned)?;
        }
        drop(vchildren);
        self.unhash(&parent.dentry, name, victim);
        let removed = children.remove(name);
        self.notify_deleted(parent, name, victim);
        Ok((removed, owned))
    }

    /// link(2): a new name `new_name` in `new_parent` for the inode at `old`.
    pub fn link_at(
        &self,
        cred: &Cred,
        old: &PathRef,
        new_parent: &PathRef,
        new_name: &[u8],
    ) -> Result<PathRef> {
        let _section = self.hook_section();
        check_name(new_name)?;
        if is_dot(new_name) {
            return Err(Errno::EEXIST);
        }
        let inode = old.inode().clone();
        // Linux's order (do_linkat, vfs_link): the new name must be free (EEXIST), on the
        // same mount (EXDEV), in a live directory we may write (ENOENT, EACCES); only then
        // is a directory source refused (EPERM), or an unlinked one (ENOENT).
        let mut children = new_parent.dentry.lock_children()?;
        if children.get(new_name).is_some() {
            return Err(Errno::EEXIST);
        }
        if !Arc::ptr_eq(&old.mnt, &new_parent.mnt) {
            return Err(Errno::EXDEV);
        }
        if new_parent.dentry.is_dead() || new_parent.inode().nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        self.may_modify_dir(cred, new_parent)?;
        if inode.is_dir() {
            return Err(Errno::EPERM);
        }
        // vfs_link: the LSM hook before the unlinked-source check.
        if let Some(h) = self.hooks() {
            h.inode_link(old.dentry.arc(), new_parent.dentry.arc(), new_name)?;
        }
        if inode.nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        inode.sb().fs().link(&inode, new_parent.inode(), new_name)?;
        fsnotify::notify_inode(&inode, IN_ATTRIB); // the link count changed
        let d = self.d_add_locked(&mut children, &new_parent.dentry, new_name, &inode);
        fsnotify::notify_name(new_parent.inode(), IN_CREATE, false, new_name, 0);
        self.note_entry(
            ChangeKind::Added,
            new_parent.inode(),
            new_name,
            &inode,
            true,
        );
        drop(children);
        Ok(PathRef {
            mnt: new_parent.mnt.clone(),
            dentry: d,
        })
    }

    /// renameat2(2).
    pub fn rename_at(
        &self,
        cred: &Cred,
        old_parent: &PathRef,
        old_name: &[u8],
        new_parent: &PathRef,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        self.rename_inner(
            cred, old_parent, old_name, new_parent, new_name, flags, false, false,
        )
    }

    /// rename_at, plus whether each path had a trailing slash (the path form's business:
    /// a slash demands a directory, except on an exchange's target that is one).
    ///
    /// The checks come in Linux's order (do_renameat2, then vfs_rename and may_delete /
    /// may_create): flags; EXDEV; "." / ".." (EBUSY, or EEXIST with NOREPLACE); source lookup
    /// (ENOENT); NOREPLACE (EEXIST); EXCHANGE without target (ENOENT); trailing slashes
    /// (ENOTDIR); ancestry (EINVAL / ENOTEMPTY); same inode (success, nothing done);
    /// permission on the directories (EACCES); sticky (EPERM); type mismatch (EISDIR /
    /// ENOTDIR); write permission on a directory changing parent (EACCES); mount points
    /// (EBUSY); a non-empty target directory (ENOTEMPTY).
    #[allow(clippy::too_many_arguments)]
    fn rename_inner(
        &self,
        cred: &Cred,
        old_parent: &PathRef,
        old_name: &[u8],
        new_parent: &PathRef,
        new_name: &[u8],
        flags: u32,
        old_slash: bool,
        new_slash: bool,
    ) -> Result<()> {
        let _section = self.hook_section();
        use rename_flags::*;
        check_rename_flags(flags)?;
        check_name(old_name)?;
        check_name(new_name)?;
        if !Arc::ptr_eq(&old_parent.mnt, &new_parent.mnt) {
            return Err(Errno::EXDEV);
        }
        if is_dot(old_name) {
            return Err(Errno::EBUSY);
        }
        if is_dot(new_name) {
            return Err(if flags & RENAME_NOREPLACE != 0 {
                Errno::EEXIST
            } else {
                Errno::EBUSY
            });
        }
        if !old_parent.inode().is_dir() || !new_parent.inode().is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let sb = old_parent.inode().sb().clone();
        let same_dir = old_parent.dentry.ptr_eq(&new_parent.dentry);

        // Lock order: rename mutex (cross-directory only), then the directories: an ancestor
        // before its descendant (the order rmdir and every parent -> child locker uses; a
        // rename can make a child's id smaller than its parent's, so ids alone would
        // deadlock against them: lock_rename does the same), unrelated ones by id. Ancestry
        // is stable here: cross-directory renames are serialized by the mutex.
        let _rename_guard = if same_dir {
            None
        } else {
            Some(sb.rename_mutex.lock().unwrap_or_else(|e| e.into_inner()))
        };
        let old_first = !same_dir
            && if self.is_ancestor(&old_parent.dentry, &new_parent.dentry) {
                true
            } else if self.is_ancestor(&new_parent.dentry, &old_parent.dentry) {
                false
            } else {
                old_parent.dentry.id() < new_parent.dentry.id()
            };
        let (mut g_old, mut g_new) = if same_dir {
            (Some(old_parent.dentry.lock_children()?), None)
        } else if old_first {
            let a = old_parent.dentry.lock_children()?;
            let b = new_parent.dentry.lock_children()?;
            (Some(a), Some(b))
        } else {
            let b = new_parent.dentry.lock_children()?;
            let a = old_parent.dentry.lock_children()?;
            (Some(a), Some(b))
        };
        let victim = Self::child_locked(g_old.as_ref().unwrap(), old_name)?;
        let target = {
            let g = if same_dir {
                g_old.as_ref().unwrap()
            } else {
                g_new.as_ref().unwrap()
            };
            g.get(new_name).cloned()
        };
        if new_parent.dentry.is_dead() || new_parent.inode().nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        if flags & RENAME_NOREPLACE != 0 && target.is_some() {
            return Err(Errno::EEXIST);
        }
        if exchange {
            match &target {
                None => return Err(Errno::ENOENT),
                Some(t) if new_slash && !t.inode().is_dir() => return Err(Errno::ENOTDIR),
                _ => {}
            }
        }
        let vi = victim.inode().clone();
        if !vi.is_dir() && (old_slash || (new_slash && !exchange)) {
            return Err(Errno::ENOTDIR);
        }
        // Ancestry: moving a directory under itself, or over one of its ancestors.
        if !same_dir {
            if vi.is_dir() && self.is_ancestor(&victim, &new_parent.dentry) {
                return Err(Errno::EINVAL);
            }
            if let Some(t) = &target {
                if self.is_ancestor(t, &old_parent.dentry) {
                    return Err(if exchange {
                        Errno::EINVAL
                    } else {
                        Errno::ENOTEMPTY
                    });
                }
            }
        }
        // vfs_rename is entered here: both names looked up, the lookups' errors (ENOENT,
        // EEXIST, ENOTDIR, ancestry) decided. Its exit is traced after the locks are dropped.
        let traced = self.hooks();
        let point = TracePoint::VfsRename {
            old_parent: old_parent.dentry.arc(),
            old: victim.arc(),
            new_parent: new_parent.dentry.arc(),
            new_name,
        };
        if let Some(h) = traced {
            h.trace(point, None);
        }
        let mut dropped: Vec<DentryRef> = Vec::new();
        let r = (|| -> Result<()> {
            if let Some(t) = &target {
                if Arc::ptr_eq(t.inode(), &vi) {
                    return Ok(()); // Both names are the same file: nothing to do (POSIX).
                }
            }

            // may_delete(old_dir, victim)
            self.may_modify_dir(cred, old_parent)?;
            check_sticky(cred, old_parent.inode(), &vi)?;
            match &target {
                // may_create(new_dir)
                None => self.may_modify_dir(cred, new_parent)?,
                // may_delete(new_dir, target)
                Some(t) => {
                    let ti = t.inode();
                    self.may_modify_dir(cred, new_parent)?;
                    check_sticky(cred, new_parent.inode(), ti)?;
                    if !exchange {
                        if vi.is_dir() && !ti.is_dir() {
                            return Err(Errno::ENOTDIR);
                        }
                        if !vi.is_dir() && ti.is_dir() {
                            return Err(Errno::EISDIR);
                        }
                    }
                }
            }
            if !same_dir {
                // A directory changing parent has its ".." rewritten: needs write on it
                // (always granted to a privileged caller, but the hook is still asked).
                if vi.is_dir() {
                    self.inode_permission(cred, &vi, may::WRITE)?;
                }
                if exchange {
                    if let Some(t) = &target {
                        if t.inode().is_dir() {
                            self.inode_permission(cred, t.inode(), may::WRITE)?;
                        }
                    }
                }
            }
            // security_inode_rename: after the permission checks, before the mount point and
            // emptiness checks (vfs_rename's order). An exchange asks twice, the target's move
            // first, as the LSM framework does.
            if let Some(h) = self.hooks() {
                if let (true, Some(t)) = (exchange, &target) {
                    h.inode_rename(
                        new_parent.dentry.arc(),
                        t.arc(),
                        old_parent.dentry.arc(),
                        old_name,
                        Some(victim.arc()),
                    )?;
                }
                h.inode_rename(
                    old_parent.dentry.arc(),
                    victim.arc(),
                    new_parent.dentry.arc(),
                    new_name,
                    target.as_ref().map(|t| t.arc()),
                )?;
            }
            if victim.is_mountpoint() || target.as_ref().is_some_and(|t| t.is_mountpoint()) {
                return Err(Errno::EBUSY);
            }
            if let Some(t) = &target {
                if !exchange && t.inode().is_dir() && !t.lock_children()?.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
            sb.fs().rename(
                old_parent.inode(),
                old_name,
                &vi,
                new_parent.inode(),
                new_name,
                target.as_ref().map(|t| &**t.inode()),
                flags,
            )?;

            // Update the dcache; lockless walkers see an odd sequence and retry locked.
            self.rename_seq.fetch_add(1, Ordering::AcqRel);
            {
                let old_children = g_old.as_mut().unwrap();
                self.unhash(&old_parent.dentry, old_name, &victim);
                let v = old_children
                    .remove(old_name)
                    .expect("victim is in its parent");
                let t = target.as_ref().map(|t| {
                    self.unhash(&new_parent.dentry, new_name, t);
                    let g = if same_dir {
                        g_old.as_mut().unwrap()
                    } else {
                        g_new.as_mut().unwrap()
                    };
                    g.remove(new_name).expect("target is in its parent")
                });
                self.set_links(&v, &new_parent.dentry, new_name);
                {
                    let g = if same_dir {
                        g_old.as_mut().unwrap()
                    } else {
                        g_new.as_mut().unwrap()
                    };
                    self.rehash(&new_parent.dentry, new_name, &v);
                    g.insert(new_name, v);
                }
                if let Some(t) = t {
                    if exchange {
                        self.set_links(&t, &old_parent.dentry, old_name);
                        self.rehash(&old_parent.dentry, old_name, &t);
                        g_old.as_mut().unwrap().insert(old_name, t);
                    } else {
                        dropped.push(t);
                    }
                }
            }
            self.rename_seq.fetch_add(1, Ordering::AcqRel);
            // Both names changed what they bind (for an exchange the old name now binds
            // the target).
            match (&target, exchange) {
                (Some(t), true) => self.note_entry(
                    ChangeKind::Added,
                    old_parent.inode(),
                    old_name,
                    t.inode(),
                    true,
                ),
                _ => self.note_entry(
                    ChangeKind::Removed { last_link: false },
                    old_parent.inode(),
                    old_name,
                    &vi,
                    true,
                ),
            }
            self.note_entry(ChangeKind::Added, new_parent.inode(), new_name, &vi, true);
            if fsnotify::active() {
                // Still under the directory locks, as the dcache change itself.
                self.notify_rename(
                    old_parent, old_name, new_parent, new_name, &vi, &target, exchange,
                );
            }
            Ok(())
        })();
        drop(g_new);
        drop(g_old);
        drop(_rename_guard);
        if let Some(h) = traced {
            h.trace(point, Some(trace_ret(&r)));
        }
        drop(victim);
        drop(target);
        drop(dropped);
        r
    }

    /// fsnotify_move, once per moved entry (twice for an exchange): MOVED_FROM / MOVED_TO
    /// with one cookie, the replaced target's link count (ATTRIB), MOVE_SELF; then, as
    /// d_delete would, DELETE_SELF for a replaced target whose last link went.
    #[allow(clippy::too_many_arguments)]
    fn notify_rename(
        &self,
        old_parent: &PathRef,
        old_name: &[u8],
        new_parent: &PathRef,
        new_name: &[u8],
        moved: &Arc<Inode>,
        target: &Option<DentryRef>,
        exchange: bool,
    ) {
        use fsnotify::{IN_MOVED_FROM, IN_MOVED_TO, IN_MOVE_SELF};
        let (od, nd) = (old_parent.inode(), new_parent.inode());
        let c = fsnotify::next_cookie();
        fsnotify::notify_name(od, IN_MOVED_FROM, moved.is_dir(), old_name, c);
        fsnotify::notify_name(nd, IN_MOVED_TO, moved.is_dir(), new_name, c);
        if let (Some(t), false) = (target, exchange) {
            fsnotify::notify_inode(t.inode(), IN_ATTRIB);
        }
        fsnotify::notify_inode(moved, IN_MOVE_SELF);
        match target {
            Some(t) if exchange => {
                let ti = t.inode();
                let c = fsnotify::next_cookie();
                fsnotify::notify_name(nd, IN_MOVED_FROM, ti.is_dir(), new_name, c);
                fsnotify::notify_name(od, IN_MOVED_TO, ti.is_dir(), old_name, c);
                fsnotify::notify_inode(ti, IN_MOVE_SELF);
            }
            // `t` and the reference taken out of the index (dropped after unlocking).
            Some(t) if t.inode().nlink() == 0 && t.ref_count() == 2 => {
                fsnotify::inode_removed(t.inode());
            }
            _ => {}
        }
    }

    /// After an unlink or rmdir, under the directory lock (`victim` is our reference, the
    /// index's was just taken out): DELETE_SELF if the last link went and nothing else uses
    /// the dentry (d_delete; otherwise it comes at eviction), then the directory's DELETE.
    fn notify_deleted(&self, parent: &PathRef, name: &[u8], victim: &DentryRef) {
        let last_link = victim.inode().nlink() == 0;
        self.note_entry(
            ChangeKind::Removed { last_link },
            parent.inode(),
            name,
            victim.inode(),
            true,
        );
        if !fsnotify::active() {
            return;
        }
        let vi = victim.inode();
        if vi.nlink() == 0 && victim.ref_count() == 2 {
            fsnotify::inode_removed(vi);
        }
        fsnotify::notify_name(parent.inode(), IN_DELETE, vi.is_dir(), name, 0);
    }

    fn rehash(&self, parent: &DentryRef, name: &[u8], d: &DentryRef) {
        d.set_flag(crate::dentry::D_HASHED);
        self.dcache.insert(parent.id(), name, d.arc().clone());
        self.counters
            .dentries_hashed
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Point `d` at its new parent and name. The old parent `Arc` is released only after the
    /// grace period: a lockless walker may be reading it through `..`.
    fn set_links(&self, d: &DentryRef, parent: &DentryRef, name: &[u8]) {
        let mut links = d.links.write().unwrap_or_else(|e| e.into_inner());
        let old = links.parent.replace(parent.arc().clone());
        links.name = name.into();
        drop(links);
        if let Some(old) = old {
            let guard = crossbeam_epoch::pin();
            guard.defer(move || drop(old));
            guard.flush();
        }
    }

    /// Is `anc` `d` or one of its ancestors (within one superblock)?
    fn is_ancestor(&self, anc: &DentryRef, d: &DentryRef) -> bool {
        let mut cur = d.arc().clone();
        loop {
            if Arc::ptr_eq(&cur, anc.arc()) {
                return true;
            }
            match cur.parent() {
                Some(p) => cur = p,
                None => return false,
            }
        }
    }

    /// setattr with the permission rules of chmod, chown, truncate and utimens (setattr_prepare).
    /// `via_open_file`: a truncate through a file opened for writing needs no write permission.
    pub fn setattr(
        &self,
        cred: &Cred,
        at: &PathRef,
        attr: &SetAttr,
        via_open_file: bool,
    ) -> Result<Stat> {
        let inode = at.inode();
        let owner = cred.uid == inode.uid() || cred.is_privileged();
        let mut attr = attr.clone();
        if let Some(uid) = attr.uid {
            if uid != inode.uid() && !cred.is_privileged() {
                return Err(Errno::EPERM);
            }
            if uid == inode.uid() && !owner {
                return Err(Errno::EPERM);
            }
        }
        if let Some(gid) = attr.gid {
            if gid != inode.gid()
                && !cred.is_privileged()
                && !(cred.uid == inode.uid() && cred.in_group(gid))
            {
                return Err(Errno::EPERM);
            }
            if gid == inode.gid() && !owner {
                return Err(Errno::EPERM);
            }
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            // chown clears set-user-ID, and set-group-ID when group-executable, on non-dirs.
            if !inode.is_dir() && attr.mode.is_none() {
                let mut m = inode.mode() & 0o7777;
                let before = m;
                m &= !S_ISUID;
                if m & 0o010 != 0 {
                    m &= !S_ISGID;
                }
                if m != before {
                    attr.mode = Some(m);
                }
            }
        }
        if let Some(mut mode) = attr.mode {
            if !owner {
                return Err(Errno::EPERM);
            }
            let gid = attr.gid.unwrap_or(inode.gid());
            if !cred.is_privileged() && !cred.in_group(gid) {
                mode &= !S_ISGID;
            }
            // An unprivileged owner may not set the sticky bit on a non-directory? Linux allows
            // it (only some BSDs refuse), so keep it.
            attr.mode = Some(mode);
        }
        if let Some(size) = attr.size {
            if inode.is_dir() {
                return Err(Errno::EISDIR);
            }
            if !inode.file_type().eq(&FileType::Regular) {
                return Err(Errno::EINVAL);
            }
            if !via_open_file {
                self.inode_permission(cred, inode, may::WRITE)?;
            }
            if size > i64::MAX as u64 {
                // A negative loff_t to truncate(2): EINVAL (EFBIG is for sizes beyond the
                // filesystem's limit, which for memfs is i64::MAX itself).
                return Err(Errno::EINVAL);
            }
            if size != inode.size() || attr.mtime.is_none() {
                attr.mtime.get_or_insert(TimeSet::Now);
            }
        }
        let mut touch_checked = false;
        for t in [attr.atime, attr.mtime] {
            match t {
                Some(TimeSet::At(_)) if !owner => return Err(Errno::EPERM),
                Some(TimeSet::Now) if !owner && attr.size.is_none() && !touch_checked => {
                    // The DAC refusal is EACCES whatever it was; a hook's errno stands.
                    // One check for both times (may_setattr's ATTR_TOUCH).
                    inode
                        .permission(cred, may::WRITE)
                        .map_err(|_| Errno::EACCES)?;
                    if let Some(h) = self.hooks() {
                        h.inode_permission(inode, may::WRITE)?;
                    }
                    touch_checked = true;
                }
                _ => {}
            }
        }
        // security_inode_setattr, with the attributes as they will be applied (the set-id
        // bits a chown clears, the mtime a truncation sets), after the checks above (which
        // Linux makes in setattr_prepare, inside ->setattr: after the hook). Also for a
        // change of nothing (chown(f, -1, -1)), which Linux also hands to notify_change.
        if let Some(h) = self.hooks() {
            h.inode_setattr(at.dentry.arc(), &attr)?;
        }
        if attr.is_empty() {
            return Ok(inode.sb().fs().getattr(inode));
        }
        inode.sb().fs().setattr(inode, &attr)?;
        self.note_attr(inode, attr.size.is_some());
        let mask = fsnotify::setattr_mask(&attr);
        if mask != 0 {
            fsnotify::notify_dentry(&at.dentry, mask);
        }
        Ok(inode.sb().fs().getattr(inode))
    }

    /// The attributes, unchecked (no hook): for the VFS's own use and replies that carry
    /// attributes without a stat (a FUSE lookup's entry). A stat is [`Vfs::stat_at`].
    pub fn getattr(&self, at: &PathRef) -> Stat {
        at.inode().sb().fs().getattr(at.inode())
    }

    /// setattr through an open file (ftruncate, fchmod, futimens; a FUSE SETATTR with a
    /// handle): a size change of a regular file opened for writing is a truncation of the
    /// open file (do_ftruncate): the `file_truncate` hook first, then [`Vfs::setattr`]
    /// without the write permission check.
    pub fn setattr_file(&self, cred: &Cred, file: &File, attr: &SetAttr) -> Result<Stat> {
        let writable = file.writable();
        if attr.size.is_some() && writable && file.inode().file_type() == FileType::Regular {
            if let Some(h) = self.hooks() {
                h.file_truncate(file)?;
            }
        }
        self.setattr(cred, file.path(), attr, writable)
    }

    /// stat of a resolved location (vfs_getattr): the `inode_getattr` hook, then the
    /// attributes. The FUSE edge's GETATTR.
    pub fn stat_at(&self, at: &PathRef) -> Result<Stat> {
        if let Some(h) = self.hooks() {
            h.inode_getattr(at.as_borrowed())?;
        }
        Ok(self.getattr(at))
    }

    /// Open the file at `at` (already resolved): access checks, truncation, the filesystem's
    /// open. Used by `open` and by the FUSE edge.
    pub fn open_at(&self, cred: &Cred, at: &PathRef, flags: i32) -> Result<Arc<File>> {
        let _section = self.hook_section();
        let inode = at.inode();
        let acc = flags & oflags::O_ACCMODE;
        if flags & oflags::O_PATH == 0 {
            if inode.is_symlink() {
                return Err(Errno::ELOOP);
            }
            if flags & oflags::O_DIRECTORY != 0 && !inode.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if inode.is_dir() && (acc != oflags::O_RDONLY || flags & oflags::O_TRUNC != 0) {
                return Err(Errno::EISDIR);
            }
            let mut mask = 0;
            if acc == oflags::O_RDONLY || acc == oflags::O_RDWR {
                mask |= may::READ;
            }
            if acc == oflags::O_WRONLY || acc == oflags::O_RDWR || flags & oflags::O_TRUNC != 0 {
                mask |= may::WRITE;
            }
            if acc == 3 {
                mask |= may::READ | may::WRITE;
            }
            self.inode_permission(cred, inode, mask)?;
        }
        // The file exists from here on: IN_OPEN was reported (before the truncation's
        // IN_MODIFY, as vfs_open does), and a failed truncation closes it again
        // (IN_CLOSE_*, release).
        let file = self.vfs_open(at, flags)?;
        if flags & oflags::O_TRUNC != 0 && inode.file_type() == FileType::Regular {
            let attr = SetAttr {
                size: Some(0),
                mtime: Some(TimeSet::Now),
                ..Default::default()
            };
            // handle_truncate: security_file_truncate, then do_truncate's notify_change
            // (security_inode_setattr).
            if let Some(h) = self.hooks() {
                h.file_truncate(&file)?;
                h.inode_setattr(at.dentry.arc(), &attr)?;
            }
            inode.sb().fs().setattr(inode, &attr)?;
            fsnotify::notify_dentry(&at.dentry, IN_MODIFY);
        }
        Ok(file)
    }

    /// vfs_open (do_dentry_open): a file is allocated unopened, the `file_open` hook sees
    /// it, then the filesystem opens it and IN_OPEN is reported. A denied or failed open
    /// drops the unopened file: no release, no IN_OPEN / IN_CLOSE_*. Traced as `vfs_open`.
    fn vfs_open(&self, at: &PathRef, flags: i32) -> Result<Arc<File>> {
        let file = Arc::new(File::alloc(at.clone(), flags));
        let traced = self.hooks();
        if let Some(h) = traced {
            let point = TracePoint::VfsOpen { at, file: &file };
            h.trace(point, None);
            // O_PATH: do_dentry_open returns before security_file_open.
            let r = if flags & oflags::O_PATH != 0 {
                self.finish_open(&file)
            } else {
                h.file_open(&file).and_then(|()| self.finish_open(&file))
            };
            h.trace(point, Some(trace_ret(&r)));
            r?;
        } else {
            self.finish_open(&file)?;
        }
        Ok(file)
    }

    #[inline]
    fn finish_open(&self, file: &File) -> Result<()> {
        let inode = file.inode();
        // A layer's per-inode file operations replace the filesystem's (one load and a
        // branch when there is none: `fileops_override.rs`).
        let private = match crate::fileops_override::override_of(inode) {
            None => inode.sb().fs().open(inode, file.flags())?,
            Some(ov) => {
                let p = ov.open(file)?;
                file.set_override(ov.clone());
                p
            }
        };
        file.set_opened(private);
        fsnotify::file_opened(file);
        Ok(())
    }

    /// open(2) / openat(2), creating with O_CREAT.
    pub fn open(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<Arc<File>> {
        let follow = if flags & oflags::O_NOFOLLOW != 0 {
            0
        } else {
            LOOKUP_FOLLOW
        };
        if flags & oflags::O_CREAT == 0 {
            let dflag = if flags & oflags::O_DIRECTORY != 0 {
                LOOKUP_DIRECTORY
            } else {
                0
            };
            let at = self.resolve(cred, base, path, follow | dflag)?;
            return self.open_at(cred, &at, flags);
        }
        if flags & oflags::O_DIRECTORY != 0 {
            // O_CREAT | O_DIRECTORY has no meaning; Linux 6.4+ refuses it (build_open_flags).
            return Err(Errno::EINVAL);
        }
        let mut base = base.cloned();
        let mut path = path.to_vec();
        let mut links = 0u32;
        loop {
            let (parent, last, trailing) = self.resolve_parent(cred, base.as_ref(), &path)?;
            if is_dot(&last) || trailing {
                return Err(Errno::EISDIR);
            }
            match self.create_at(cred, &parent, &last, NewKind::File, mode) {
                Ok(at) => {
                    // A file just created is opened with the mode it was asked for, whatever
                    // its permission bits say (open(2)): no permission check (Linux's
                    // may_open asks inode_permission with MAY_OPEN alone; no rwx bits, so
                    // no hook call here), and no truncation.
                    return self.vfs_open(&at, flags);
                }
                Err(Errno::EEXIST) if flags & oflags::O_EXCL == 0 => {
                    match self.resolve(cred, Some(&parent), &last, follow) {
                        Ok(at) => {
                            if at.inode().is_dir() {
                                return Err(Errno::EISDIR);
                            }
                            return self.open_at(cred, &at, flags);
                        }
                        Err(Errno::ENOENT) if follow != 0 => {
                            // The name exists but leads nowhere: a dangling symlink. open(2)
                            // follows it and creates its target (unless O_EXCL / O_NOFOLLOW).
                            let l = self.resolve(cred, Some(&parent), &last, 0)?;
                            let body = match l.inode().link_body() {
                                Some(b) if l.inode().is_symlink() => b.as_bytes().to_vec(),
                                _ => return Err(Errno::ENOENT),
                            };
                            links += 1;
                            if links > MAXSYMLINKS {
                                return Err(Errno::ELOOP);
                            }
                            base = Some(parent);
                            path = body;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// pread: read at `offset`. Traced as `vfs_read` (exit: the byte count or -errno).
    pub fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        let Some(h) = self.hooks() else {
            return self.read_inner(file, buf, offset, None);
        };
        let point = TracePoint::VfsRead {
            file,
            count: buf.len() as u64,
            pos: offset,
        };
        h.trace(point, None);
        let r = self.read_inner(file, buf, offset, Some(h));
        h.trace(
            point,
            Some(r.map_or_else(|e| -i64::from(e.raw()), |n| n as i64)),
        );
        r
    }

    #[inline]
    fn read_inner(
        &self,
        file: &File,
        buf: &mut [u8],
        offset: u64,
        hooks: Option<&dyn VfsHooks>,
    ) -> Result<usize> {
        if !file.readable() {
            return Err(Errno::EBADF);
        }
        // rw_verify_area: the range, then security_file_permission.
        check_rw_range(offset, buf.len())?;
        if let Some(h) = hooks {
            h.file_permission(file, may::READ)?;
        }
        if file.inode().is_dir() {
            return Err(Errno::EISDIR);
        }
        let n = match file.ops_override() {
            None => file.inode().sb().fs().read(file, buf, offset)?,
            Some(ov) => ov.read(file, buf, offset)?,
        };
        if n > 0 {
            fsnotify::notify_dentry(&file.path().dentry, IN_ACCESS);
        }
        Ok(n)
    }

    /// pwrite: write at `offset` (at the end with O_APPEND). Returns bytes written.
    /// Traced as `vfs_write` (exit: the byte count or -errno).
    pub fn write(&self, file: &File, data: &[u8], offset: u64) -> Result<usize> {
        let Some(h) = self.hooks() else {
            return self.write_inner(file, data, offset, None);
        };
        let point = TracePoint::VfsWrite {
            file,
            count: data.len() as u64,
            pos: offset,
        };
        h.trace(point, None);
        let r = self.write_inner(file, data, offset, Some(h));
        h.trace(
            point,
            Some(r.map_or_else(|e| -i64::from(e.raw()), |n| n as i64)),
        );
        r
    }

    #[inline]
    fn write_inner(
        &self,
        file: &File,
        data: &[u8],
        offset: u64,
        hooks: Option<&dyn VfsHooks>,
    ) -> Result<usize> {
        if !file.writable() {
            return Err(Errno::EBADF);
        }
        check_rw_range(offset, data.len())?;
        if let Some(h) = hooks {
            h.file_permission(file, may::WRITE)?;
        }
        let n = match file.ops_override() {
            None => file.inode().sb().fs().write(file, data, offset)?,
            Some(ov) => ov.write(file, data, offset)?,
        };
        if n > 0 {
            fsnotify::notify_dentry(&file.path().dentry, IN_MODIFY);
            self.note_attr(file.inode(), true);
        }
        Ok(n)
    }

    /// fallocate(2) on an open file: the checks of vfs_fallocate, then the filesystem's;
    /// IN_MODIFY on success.
    pub fn fallocate(&self, file: &File, mode: i32, offset: u64, len: u64) -> Result<()> {
        if !file.writable() {
            return Err(Errno::EBADF);
        }
        // vfs_fallocate asks security_file_permission(MAY_WRITE) before the type checks.
        if let Some(h) = self.hooks() {
            h.file_permission(file, may::WRITE)?;
        }
        let inode = file.inode();
        if inode.is_dir() {
            return Err(Errno::EISDIR);
        }
        if inode.file_type() != FileType::Regular {
            return Err(Errno::ENODEV);
        }
        match file.ops_override() {
            None => inode.sb().fs().fallocate(inode, mode, offset, len)?,
            Some(ov) => ov.fallocate(file, mode, offset, len)?,
        }
        fsnotify::notify_dentry(&file.path().dentry, IN_MODIFY);
        self.note_attr(inode, true);
        Ok(())
    }

    /// setxattr(2) on a resolved location; IN_ATTRIB on success. Permission as
    /// xattr_permission: write access, except in the security/system/trusted namespaces,
    /// whose rules are the filesystem's.
    pub fn setxattr_at(
        &self,
        cred: &Cred,
        at: &PathRef,
        name: &[u8],
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.xattr_permission(cred, at.inode(), name, may::WRITE)?;
        at.inode()
            .sb()
            .fs()
            .setxattr(at.inode(), name, value, flags)?;
        fsnotify::notify_dentry(&at.dentry, IN_ATTRIB);
        Ok(())
    }

    /// removexattr(2) on a resolved location; IN_ATTRIB on success.
    pub fn removexattr_at(&self, cred: &Cred, at: &PathRef, name: &[u8]) -> Result<()> {
        self.xattr_permission(cred, at.inode(), name, may::WRITE)?;
        at.inode().sb().fs().removexattr(at.inode(), name)?;
        fsnotify::notify_dentry(&at.dentry, IN_ATTRIB);
        Ok(())
    }

    pub fn fsync(&self, file: &File, datasync: bool) -> Result<()> {
        file.inode().sb().fs().fsync(file, datasync)
    }

    /// Directory entries after cookie `offset` (0 = from the start), "." and ".." first; at
    /// most `max` entries. Each entry's `offset` is the cookie to resume after it.
    pub fn readdir(&self, dir: &PathRef, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let inode = dir.inode();
        if !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let children = dir.dentry.lock_children()?;
        if dir.dentry.is_dead() || inode.nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        let mut out = Vec::new();
        if offset < 1 && out.len() < max {
            out.push(DirEntry {
                ino: inode.ino(),
                offset: 1,
                kind: FileType::Directory,
                name: b".".to_vec(),
            });
        }
        if offset < 2 && out.len() < max {
            let pino = self.parent_ino(dir);
            out.push(DirEntry {
                ino: pino,
                offset: 2,
                kind: FileType::Directory,
                name: b"..".to_vec(),
            });
        }
        // Any cookie may come back from a client (FUSE passes them through): no overflow.
        let from = offset.max(2).saturating_add(1);
        for (&off, name) in children.by_offset.range(from..) {
            if out.len() >= max {
                break;
            }
            if let Some(d) = children.get(name) {
                let i = d.inode();
                out.push(DirEntry {
                    ino: i.ino(),
                    offset: off,
                    kind: i.file_type(),
                    name: name.to_vec(),
                });
            }
        }
        drop(children);
        // iterate_dir reports IN_ACCESS for every getdents call.
        fsnotify::notify_dentry(&dir.dentry, IN_ACCESS);
        Ok(out)
    }

    fn parent_ino(&self, dir: &PathRef) -> u64 {
        if std::ptr::eq(&*dir.dentry, &*self.root.dentry) {
            return dir.inode().ino();
        }
        if std::ptr::eq(&*dir.dentry, &**dir.mnt.root()) {
            return match dir.mnt.mountpoint() {
                Some(mp) => mp
                    .parent()
                    .map(|p| p.inode().ino())
                    .unwrap_or(mp.inode().ino()),
                None => dir.inode().ino(),
            };
        }
        dir.dentry
            .parent()
            .map(|p| p.inode().ino())
            .unwrap_or(dir.inode().ino())
    }

    pub fn statfs(&self, at: &PathRef) -> Result<StatFs> {
        let sb = at.inode().sb();
        sb.fs().statfs(sb)
    }

    pub fn readlink_at(&self, at: &PathRef) -> Result<Vec<u8>> {
        match at.inode().link_body() {
            Some(b) if at.inode().is_symlink() => Ok(b.as_bytes().to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// access(2) on a resolved location (real ids are the caller's business).
    pub fn access_at(&self, cred: &Cred, at: &PathRef, mask: u32) -> Result<()> {
        if mask == 0 {
            return Ok(()); // F_OK: Linux asks inode_permission(MAY_ACCESS) alone; no hook
        }
        self.inode_permission(cred, at.inode(), mask)
    }

    // ---- path forms ----

    pub fn mkdir(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        mode: u32,
    ) -> Result<PathRef> {
        let (parent, last, _) = self.resolve_parent(cred, base, path)?;
        if is_dot(&last) {
            return Err(Errno::EEXIST);
        }
        self.create_at(cred, &parent, &last, NewKind::Dir, mode)
    }

    pub fn mknod(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        mode: u32,
        rdev: u32,
    ) -> Result<PathRef> {
        may_mknod(mode)?;
        let (parent, last, trailing) = self.resolve_parent(cred, base, path)?;
        if is_dot(&last) {
            return Err(Errno::EEXIST);
        }
        if trailing {
            return Err(Errno::ENOENT);
        }
        self.create_at(cred, &parent, &last, NewKind::Node { rdev }, mode)
    }

    pub fn symlink(
        &self,
        cred: &Cred,
        target: &[u8],
        base: Option<&PathRef>,
        path: &[u8],
    ) -> Result<PathRef> {
        let (parent, last, trailing) = self.resolve_parent(cred, base, path)?;
        if is_dot(&last) {
            return Err(Errno::EEXIST);
        }
        if trailing {
            // symlink("x", "newname/"): Linux says ENOENT unless the name exists.
            return match self.lookup_at(cred, &parent, &last) {
                Ok(_) => Err(Errno::EEXIST),
                Err(_) => Err(Errno::ENOENT),
            };
        }
        self.create_at(cred, &parent, &last, NewKind::Symlink(target), 0o777)
    }

    pub fn unlink(&self, cred: &Cred, base: Option<&PathRef>, path: &[u8]) -> Result<()> {
        let (parent, last, trailing) = self.resolve_parent(cred, base, path)?;
        if trailing {
            let at = self.lookup_at(cred, &parent, &last)?;
            return Err(if at.inode().is_dir() {
                Errno::EISDIR
            } else {
                Errno::ENOTDIR
            });
        }
        self.unlink_at(cred, &parent, &last)
    }

    pub fn rmdir(&self, cred: &Cred, base: Option<&PathRef>, path: &[u8]) -> Result<()> {
        let (parent, last, _) = self.resolve_parent(cred, base, path)?;
        if path.iter().all(|&b| b == b'/') {
            // rmdir("/"): the root has no last component (LAST_ROOT): EBUSY, not "." EINVAL.
            return Err(Errno::EBUSY);
        }
        self.rmdir_at(cred, &parent, &last)
    }

    pub fn link(
        &self,
        cred: &Cred,
        old_path: &[u8],
        new_path: &[u8],
        follow: bool,
    ) -> Result<PathRef> {
        let old = self.resolve(cred, None, old_path, if follow { LOOKUP_FOLLOW } else { 0 })?;
        let (parent, last, trailing) = self.resolve_parent(cred, None, new_path)?;
        if trailing {
            return Err(if self.lookup_at(cred, &parent, &last).is_ok() {
                Errno::EEXIST
            } else {
                Errno::ENOENT
            });
        }
        self.link_at(cred, &old, &parent, &last)
    }

    pub fn rename(&self, cred: &Cred, old_path: &[u8], new_path: &[u8], flags: u32) -> Result<()> {
        // Bad flags are refused before any path is looked at.
        check_rename_flags(flags)?;
        let (op, oname, otrail) = self.resolve_parent(cred, None, old_path)?;
        let (np, nname, ntrail) = self.resolve_parent(cred, None, new_path)?;
        self.rename_inner(cred, &op, &oname, &np, &nname, flags, otrail, ntrail)
    }

    pub fn stat(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        follow: bool,
    ) -> Result<Stat> {
        let flags = if follow { LOOKUP_FOLLOW } else { 0 };
        if let Some(h) = self.hooks() {
            // inode_getattr takes the path: borrowed from the lockless walk when it succeeds.
            return self.with_resolved_path(cred, base, path, flags, |at| {
                h.inode_getattr(at)?;
                let inode = at.inode();
                Ok(inode.sb().fs().getattr(inode))
            });
        }
        self.with_resolved(cred, base, path, flags, |inode| {
            inode.sb().fs().getattr(inode)
        })
    }

    pub fn readlink(&self, cred: &Cred, base: Option<&PathRef>, path: &[u8]) -> Result<Vec<u8>> {
        let at = self.resolve(cred, base, path, 0)?;
        self.readlink_at(&at)
    }

    pub fn chmod(&self, cred: &Cred, path: &[u8], mode: u32) -> Result<()> {
        let at = self.resolve(cred, None, path, LOOKUP_FOLLOW)?;
        self.setattr(
            cred,
            &at,
            &SetAttr {
                mode: Some(mode),
                ..Default::default()
            },
            false,
        )
        .map(|_| ())
    }

    pub fn chown(
        &self,
        cred: &Cred,
        path: &[u8],
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    ) -> Result<()> {
        let at = self.resolve(cred, None, path, if follow { LOOKUP_FOLLOW } else { 0 })?;
        self.setattr(
            cred,
            &at,
            &SetAttr {
                uid,
                gid,
                ..Default::default()
            },
            false,
        )
        .map(|_| ())
    }

    pub fn truncate(&self, cred: &Cred, path: &[u8], size: u64) -> Result<()> {
        let at = self.resolve(cred, None, path, LOOKUP_FOLLOW)?;
        self.setattr(
            cred,
            &at,
            &SetAttr {
                size: Some(size),
                ..Default::default()
            },
            false,
        )
        .map(|_| ())
    }

    pub fn utimens(
        &self,
        cred: &Cred,
        path: &[u8],
        atime: Option<TimeSet>,
        mtime: Option<TimeSet>,
    ) -> Result<()> {
        let at = self.resolve(cred, None, path, LOOKUP_FOLLOW)?;
        self.setattr(
            cred,
            &at,
            &SetAttr {
                atime,
                mtime,
                ..Default::default()
            },
            false,
        )
        .map(|_| ())
    }

    /// Read a whole file (convenience for tests and the CLI).
    pub fn read_file(&self, cred: &Cred, path: &[u8]) -> Result<Vec<u8>> {
        let f = self.open(cred, None, path, oflags::O_RDONLY, 0)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read(&f, &mut buf, out.len() as u64)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Create or replace a file with `data` (convenience for tests and the CLI).
    pub fn write_file(&self, cred: &Cred, path: &[u8], data: &[u8]) -> Result<()> {
        let f = self.open(
            cred,
            None,
            path,
            oflags::O_WRONLY | oflags::O_CREAT | oflags::O_TRUNC,
            0o644,
        )?;
        let mut off = 0;
        while off < data.len() {
            off += self.write(&f, &data[off..], off as u64)?;
        }
        Ok(())
    }
}
