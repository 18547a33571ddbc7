//! Entries a filesystem makes and removes itself, as kernfs does for its nodes (a cgroup
//! directory's control files, files exposed by other layers).
//!
//! A user's create/unlink goes through `ops.rs` (permission checks, LSM hooks, the
//! filesystem's `create`/`unlink`, which a kernfs-like filesystem refuses). The filesystem's
//! own entries must bypass all of that: they are not a user's request, and an LSM program
//! must not be able to keep a group's control file from being created or an exposed file
//! from being removed. These two calls only do the dcache work, under the directory lock,
//! and report the watch events a user would see (IN_CREATE / IN_DELETE).
//!
//! Besides these, two [`crate::FileSystem`] methods make a kernfs-like tree possible:
//! `populate_dir` (called right after a directory was created, with the parent's lock
//! held, so the directory never appears without its control files) and
//! `rmdir_removes_entries` (rmdir asks the filesystem instead of answering ENOTEMPTY, and
//! removes the directory's remaining entries with it).
//!
//! Concurrency: the lock order of `lib.rs` applies (parent directory before child). The
//! removed references are dropped after every directory lock is released (they may evict).

use crate::changes::ChangeKind;
use crate::dentry::{Dentry, DentryRef};
use crate::errno::{Errno, Result};
use crate::fsnotify::{self, IN_CREATE, IN_DELETE};
use crate::inode::Inode;
use crate::types::NAME_MAX;
use crate::Vfs;
use std::sync::Arc;

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(Errno::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

impl Vfs {
    /// Bind `inode` (allocated by the filesystem of `parent`) as `name` in the directory
    /// `parent` (kernfs_add_one). No permission check and no LSM hook: this is the
    /// filesystem's own entry. ENOENT if `parent` is no longer in the tree, EEXIST if the
    /// name is taken, EXDEV if `inode` belongs to another superblock.
    pub fn fs_add_entry(
        &self,
        parent: &Arc<Dentry>,
        name: &[u8],
        inode: &Arc<Inode>,
    ) -> Result<DentryRef> {
        check_name(name)?;
        if !Arc::ptr_eq(parent.inode().sb(), inode.sb()) {
            return Err(Errno::EXDEV);
        }
        if !parent.inode().is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let p = parent.try_get_rcu().ok_or(Errno::ENOENT)?;
        let mut children = p.lock_children()?;
        if p.is_dead() || p.inode().nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        if children.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        let d = self.d_add_locked(&mut children, &p, name, inode);
        fsnotify::notify_name(p.inode(), IN_CREATE, inode.is_dir(), name, 0);
        // Not a client's request: every edge that caches names must hear of it.
        self.note_entry(ChangeKind::Added, p.inode(), name, inode, false);
        drop(children);
        Ok(d)
    }

    /// Remove the entry `name` of `parent` that the filesystem made (kernfs_remove), with
    /// everything below it if it is a directory. With `expect`, only if the entry still
    /// names that inode (else ENOENT: someone else's entry took the name). Link counts of
    /// the removed inodes drop to zero, so each is evicted when its last reference goes.
    /// EBUSY for a mount point.
    pub fn fs_remove_entry(
        &self,
        parent: &Arc<Dentry>,
        name: &[u8],
        expect: Option<&Arc<Inode>>,
    ) -> Result<()> {
        check_name(name)?;
        let p = parent.try_get_rcu().ok_or(Errno::ENOENT)?;
        let mut removed = Vec::new();
        {
            let mut children = p.lock_children()?;
            let victim = children.get(name).cloned().ok_or(Errno::ENOENT)?;
            if expect.is_some_and(|i| !Arc::ptr_eq(i, victim.inode())) {
                return Err(Errno::ENOENT);
            }
            if victim.is_mountpoint() {
                return Err(Errno::EBUSY);
            }
            if victim.inode().is_dir() {
                let mut vchildren = victim.lock_children()?;
                self.drain_fs_entries(&victim, &mut vchildren, &mut removed)?;
                drop(vchildren);
                victim.inode().clear_nlink();
                p.inode().drop_nlink();
            } else {
                victim.inode().clear_nlink();
            }
            victim.inode().touch_changed();
            p.inode().touch_modified();
            self.unhash(&p, name, &victim);
            if let Some(r) = children.remove(name) {
                removed.push(r);
            }
            if victim.ref_count() == 2 {
                fsnotify::inode_removed(victim.inode());
            }
            fsnotify::notify_name(p.inode(), IN_DELETE, victim.inode().is_dir(), name, 0);
            let gone = ChangeKind::Removed { last_link: true };
            self.note_entry(gone, p.inode(), name, victim.inode(), false);
            removed.push(victim);
        }
        // No directory lock held: dropping may evict.
        drop(removed);
        Ok(())
    }

    /// Take every entry out of the locked directory `dir` (recursively), for rmdir of a
    /// directory whose filesystem owns its entries and for `fs_remove_entry`. Pushes the
    /// removed references into `out`, for the caller to drop once unlocked. A mount point
    /// anywhere below is EBUSY, before anything is removed at that level.
    pub(crate) fn drain_fs_entries(
        &self,
        dir: &DentryRef,
        children: &mut crate::dentry::Children,
        out: &mut Vec<DentryRef>,
    ) -> Result<()> {
        if children.by_name.values().any(|(_, d)| d.is_mountpoint()) {
            return Err(Errno::EBUSY);
        }
        let names: Vec<Box<[u8]>> = children.by_name.keys().cloned().collect();
        for name in names {
            let Some(d) = children.remove(&name) else {
                continue;
            };
            if d.inode().is_dir() {
                let mut sub = d.lock_children()?;
                self.drain_fs_entries(&d, &mut sub, out)?;
                drop(sub);
                dir.inode().drop_nlink();
            }
            d.inode().clear_nlink();
            self.unhash(dir, &name, &d);
            if d.ref_count() == 1 {
                fsnotify::inode_removed(d.inode());
            }
            fsnotify::notify_name(dir.inode(), IN_DELETE, d.inode().is_dir(), &name, 0);
            let gone = ChangeKind::Removed { last_link: true };
            self.note_entry(gone, dir.inode(), &name, d.inode(), false);
            out.push(d);
        }
        Ok(())
    }
}
