//! Security and tracing hooks: the extension point the LSM framework and fentry/fexit give
//! the kernel's VFS. The VFS knows nothing of what is behind them (BPF programs, a test
//! recorder); it calls one [`VfsHooks`] object per [`crate::Vfs`] at fixed points of its
//! operations.
//!
//! Cost when unused: every call site tests [`crate::Vfs::hooks`], one relaxed load of a
//! flag that stays false until hooks are installed *and* switched on
//! ([`crate::Vfs::set_hooks_enabled`]) — one predictable branch.
//!
//! # When each hook runs (the kernel's placement)
//! - `inode_*` LSM hooks: after the VFS's own checks (name, DAC permission, sticky bit, file
//!   type, mount points) and before the filesystem is asked, inside the directory lock the
//!   operation holds — so a denial leaves nothing changed and the objects cannot change under
//!   the hook. `Err(errno)` denies the operation with that errno.
//! - `file_open`: after the open's permission checks, before the file is handed out (a
//!   denied open leaves no open file behind); `file_permission`: before each read or write;
//!   `file_truncate`: before truncation through an open file (or O_TRUNC).
//! - `inode_getattr`: before attributes are returned by stat.
//! - `inode_permission`: in the permission checks of the operations (the final object of an
//!   open or access, directories being modified), after the DAC check allowed, with the
//!   same MAY_READ / MAY_WRITE / MAY_EXEC mask (Linux's MAY_OPEN / MAY_ACCESS /
//!   MAY_NOT_BLOCK bits are not passed, and the mask-only calls Linux makes for access(F_OK)
//!   and the open of a file O_CREAT just made are not made); not for each component of a
//!   lockless path walk (a documented difference from Linux, which calls it per component).
//! - `inode_free_security`: once per inode at eviction, before the filesystem frees it.
//! - `trace`: entry (`exit == None`) and exit (`Some(ret)`, 0 or -errno) of the traced VFS
//!   functions. Entry where Linux enters the function — once the lookups that produce its
//!   arguments are done, so an error those lookups decide (a missing name: ENOENT, an
//!   existing one for mkdir: EEXIST, rename's ancestry checks) is not traced, as in Linux;
//!   exit when the operation returns, after its directory locks are dropped. An operation
//!   reads [`crate::Vfs::hooks`] once for its trace point: entry and exit always pair up.
//!
//! # Per operation (`ops.rs`, `mkobj.rs`)
//! Hooks in call order; "perm(X, m)" is `inode_permission`, called right after the VFS's
//! DAC check of the same mask allowed (`Vfs::inode_permission`).
//! - create (`create_at` File, `open` O_CREAT of a new name; FUSE CREATE/MKNOD): perm(dir,
//!   W|X), `inode_create(dir, name, S_IFREG | mode & ~umask)`; then the open below. mknod
//!   of any type, and `mkobj_at` (bpffs pins, vfs_mkobj) also use `inode_create` — there
//!   is no `inode_mknod` — with the type bits in the mode.
//! - mkdir: `vfs_mkdir` entry (after EEXIST / dead-directory checks, directory locked),
//!   perm(dir, W|X), `inode_mkdir(dir, name, mode & 01777 & ~umask)`; exit with `created`.
//! - symlink: perm(dir, W|X), `inode_symlink`. link: perm(new dir, W|X), EPERM for a
//!   directory, `inode_link`, then ENOENT for an unlinked source (vfs_link's order).
//! - unlink / rmdir: victim looked up, `vfs_unlink`/`vfs_rmdir` entry, perm(dir, W|X),
//!   sticky, type, EBUSY, `inode_unlink` / `inode_rmdir` (rmdir: with the victim's own
//!   directory lock held, before ENOTEMPTY, which is the filesystem's check in Linux); exit
//!   after unlocking; eviction of the removed inode after that.
//! - rename: both names looked up, `vfs_rename` entry, perm on both directories (and on a
//!   directory changing parent, MAY_WRITE), `inode_rename` before EBUSY and ENOTEMPTY. An
//!   exchange calls `inode_rename` twice, the target's move first (as
//!   `security_inode_rename` does); renaming onto another link of the same inode returns 0
//!   inside `vfs_rename` without asking. The exit sees the moved dentry under its new name.
//! - setattr (chmod, chown, truncate, utimens, FUSE SETATTR): the permission rules
//!   (perm(inode, W) for a truncate by path and for utimens(NOW) by a non-owner, once),
//!   then `inode_setattr` with the attributes as applied (set-id bits a chown clears, the
//!   mtime a truncation sets) — also for a change of nothing. Linux runs its
//!   setattr_prepare checks inside `->setattr`, after the hook; here they come first.
//!   `setattr_file` (ftruncate; FUSE SETATTR with a handle): `file_truncate` first when it
//!   changes the size of a regular file open for writing.
//! - stat (`stat`, `stat_at` — FUSE GETATTR): `inode_getattr(path)`, once, after the walk
//!   was validated; `stat` keeps the reference-free lockless walk and hands the hook the
//!   location borrowed under its epoch guard (`PathBorrow`). `getattr` (attributes for a
//!   FUSE lookup's entry, internal uses) calls nothing.
//! - open (`open`, `open_at`, FUSE OPEN/OPENDIR/CREATE): ELOOP/ENOTDIR/EISDIR, perm(file,
//!   mask) (none for a file the open just created), then `vfs_open` entry, `file_open` on
//!   a file not yet opened ([`crate::File::is_open`] false), the filesystem's open,
//!   IN_OPEN, `vfs_open` exit; then for O_TRUNC `file_truncate` and `inode_setattr`
//!   (handle_truncate). A denied `file_open` leaves no open file: the allocated one is
//!   dropped unopened (no release, no IN_OPEN/IN_CLOSE_*); a denied truncation closes the
//!   opened file again (IN_OPEN then IN_CLOSE_WRITE, as in Linux). O_PATH: no permission
//!   check and no `file_open` (do_dentry_open returns before it), `vfs_open` still traced.
//! - read / write: `vfs_read`/`vfs_write` entry first (so EBADF is traced), EBADF, range,
//!   `file_permission(MAY_READ / MAY_WRITE)`, then the rest (EISDIR...); exit with the byte
//!   count. fallocate: `file_permission(MAY_WRITE)` after EBADF, as vfs_fallocate.
//! - access: perm(inode, mask); F_OK (mask 0) calls nothing. setxattr/removexattr:
//!   perm(inode, W) outside the security/system/trusted namespaces.
//! - Not hooked: the per-component search permission of the path walk (above), readdir
//!   (takes no `File`, so no `file_permission`), getxattr/listxattr (the FUSE edge checks
//!   them itself), inotify_add_watch's read check, statfs, readlink.
//!
//! # Rules for implementors
//! Hooks must not call back into the VFS operations of the same tree (they may be called
//! with a directory lock held: lock order "directory locks, then whatever the hook takes"),
//! must not block for long, and must not panic.

use crate::dentry::Dentry;
use crate::errno::Result;
use crate::file::File;
use crate::inode::Inode;
use crate::mount::{PathBorrow, PathRef};
use crate::types::SetAttr;
use std::sync::Arc;

/// A traced VFS function and its arguments.
#[derive(Clone, Copy)]
pub enum TracePoint<'a> {
    /// `vfs_open(path, file)`.
    VfsOpen { at: &'a PathRef, file: &'a File },
    /// `vfs_read(file, buf, count, pos)`.
    VfsRead {
        file: &'a File,
        count: u64,
        pos: u64,
    },
    /// `vfs_write(file, buf, count, pos)`.
    VfsWrite {
        file: &'a File,
        count: u64,
        pos: u64,
    },
    /// `vfs_unlink(dir, dentry)`.
    VfsUnlink {
        parent: &'a Arc<Dentry>,
        victim: &'a Arc<Dentry>,
    },
    /// `vfs_mkdir(dir, dentry, mode)`: `created` is the new dentry at exit (None at entry
    /// and on failure).
    VfsMkdir {
        parent: &'a Arc<Dentry>,
        name: &'a [u8],
        mode: u32,
        created: Option<&'a Arc<Dentry>>,
    },
    /// `vfs_rmdir(dir, dentry)`.
    VfsRmdir {
        parent: &'a Arc<Dentry>,
        victim: &'a Arc<Dentry>,
    },
    /// `vfs_rename(...)`.
    VfsRename {
        old_parent: &'a Arc<Dentry>,
        old: &'a Arc<Dentry>,
        new_parent: &'a Arc<Dentry>,
        new_name: &'a [u8],
    },
    /// `evict(inode)`.
    Evict { inode: &'a Arc<Inode> },
}

impl TracePoint<'_> {
    /// The kernel function's name (`vfs_open`, ..., `evict`).
    pub fn name(&self) -> &'static str {
        match self {
            TracePoint::VfsOpen { .. } => "vfs_open",
            TracePoint::VfsRead { .. } => "vfs_read",
            TracePoint::VfsWrite { .. } => "vfs_write",
            TracePoint::VfsUnlink { .. } => "vfs_unlink",
            TracePoint::VfsMkdir { .. } => "vfs_mkdir",
            TracePoint::VfsRmdir { .. } => "vfs_rmdir",
            TracePoint::VfsRename { .. } => "vfs_rename",
            TracePoint::Evict { .. } => "evict",
        }
    }
}

/// The hooks. Every method has a default that allows and does nothing.
#[allow(unused_variables)]
pub trait VfsHooks: Send + Sync + 'static {
    fn inode_create(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> Result<()> {
        Ok(())
    }
    fn inode_mkdir(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> Result<()> {
        Ok(())
    }
    fn inode_symlink(&self, parent: &Arc<Dentry>, name: &[u8], target: &[u8]) -> Result<()> {
        Ok(())
    }
    fn inode_link(
        &self,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
    ) -> Result<()> {
        Ok(())
    }
    fn inode_unlink(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> Result<()> {
        Ok(())
    }
    fn inode_rmdir(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> Result<()> {
        Ok(())
    }
    /// `new_existing`: the dentry the rename replaces (or exchanges with), if any.
    fn inode_rename(
        &self,
        old_parent: &Arc<Dentry>,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
        new_existing: Option<&Arc<Dentry>>,
    ) -> Result<()> {
        Ok(())
    }
    fn inode_setattr(&self, dentry: &Arc<Dentry>, attr: &SetAttr) -> Result<()> {
        Ok(())
    }
    /// Called once per stat, with the resolved location borrowed: under the lockless walk's
    /// epoch guard when that walk succeeded (no references taken), else from a counted walk.
    fn inode_getattr(&self, at: PathBorrow<'_>) -> Result<()> {
        Ok(())
    }
    /// `mask`: MAY_READ / MAY_WRITE / MAY_EXEC bits.
    fn inode_permission(&self, inode: &Arc<Inode>, mask: u32) -> Result<()> {
        Ok(())
    }
    fn file_open(&self, file: &File) -> Result<()> {
        Ok(())
    }
    fn file_permission(&self, file: &File, mask: u32) -> Result<()> {
        Ok(())
    }
    fn file_truncate(&self, file: &File) -> Result<()> {
        Ok(())
    }
    fn inode_free_security(&self, inode: &Arc<Inode>) {}
    /// Entry (`exit == None`) or exit (`Some(0 or -errno)`) of a traced function.
    fn trace(&self, point: TracePoint<'_>, exit: Option<i64>) {}
}
