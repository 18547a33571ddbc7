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
//!   open or access, directories being modified); not for each component of a lockless path
//!   walk (a documented difference from Linux, which calls it per component).
//! - `inode_free_security`: once per inode at eviction, before the filesystem frees it.
//! - `trace`: entry (`exit == None`) and exit (`Some(ret)`, 0 or -errno) of the traced VFS
//!   functions, around the whole operation, outside directory locks where the operation
//!   allows (exit after the locks are dropped).
//!
//! # Rules for implementors
//! Hooks must not call back into the VFS operations of the same tree (they may be called
//! with a directory lock held: lock order "directory locks, then whatever the hook takes"),
//! must not block for long, and must not panic.

use crate::dentry::Dentry;
use crate::errno::Result;
use crate::file::File;
use crate::inode::Inode;
use crate::mount::PathRef;
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
    fn inode_getattr(&self, at: &PathRef) -> Result<()> {
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
