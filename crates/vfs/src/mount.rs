//! Mounts and the mount table.
//!
//! A [`Mount`] attaches a superblock's root at a dentry of a parent mount. The table maps
//! `(parent mount id, mountpoint dentry id)` to the mount and is published as an immutable
//! snapshot behind an epoch pointer: the lockless walk reads it with the same guard it uses
//! for the dentry hash, and mount/umount (rare) copy, modify and swap it under `Vfs::mount_lock`,
//! freeing the old snapshot after the grace period.

use crate::dentry::DentryRef;
use crate::sb::SuperBlock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_MOUNT_ID: AtomicU64 = AtomicU64::new(1);

pub struct Mount {
    id: u64,
    sb: Arc<SuperBlock>,
    root: DentryRef,
    /// Where it is attached: the parent mount and the dentry it covers. None for the root.
    parent: Option<(Arc<Mount>, DentryRef)>,
    /// The source string ("tmpfs", "bpf", "none") and options, for listings.
    source: String,
}

impl Mount {
    pub(crate) fn new(
        sb: Arc<SuperBlock>,
        root: DentryRef,
        parent: Option<(Arc<Mount>, DentryRef)>,
        source: String,
    ) -> Arc<Mount> {
        Arc::new(Mount {
            id: NEXT_MOUNT_ID.fetch_add(1, Ordering::Relaxed),
            sb,
            root,
            parent,
            source,
        })
    }
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn sb(&self) -> &Arc<SuperBlock> {
        &self.sb
    }
    pub fn root(&self) -> &DentryRef {
        &self.root
    }
    pub fn parent_mount(&self) -> Option<&Arc<Mount>> {
        self.parent.as_ref().map(|(m, _)| m)
    }
    pub fn mountpoint(&self) -> Option<&DentryRef> {
        self.parent.as_ref().map(|(_, d)| d)
    }
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mount({} {})", self.id, self.sb.fs_type())
    }
}

/// An immutable snapshot of all mounts.
#[derive(Default, Clone)]
pub(crate) struct MountTable {
    pub(crate) by_point: HashMap<(u64, u64), Arc<Mount>>,
}

/// A location in the tree: a dentry as seen through a mount (struct path). Holding one keeps
/// both alive.
#[derive(Clone)]
pub struct PathRef {
    pub mnt: Arc<Mount>,
    pub dentry: DentryRef,
}

impl PathRef {
    pub fn inode(&self) -> &Arc<crate::inode::Inode> {
        self.dentry.inode()
    }
    pub fn same_as(&self, other: &PathRef) -> bool {
        Arc::ptr_eq(&self.mnt, &other.mnt) && self.dentry.ptr_eq(&other.dentry)
    }
}

/// A location borrowed for the length of a call (what hooks that take a `struct path` get):
/// from a [`PathRef`], or from a lockless walk, where the dentry holds no reference and
/// stays valid because the walk's epoch guard is held until the call returns (dentries are
/// freed after a grace period).
#[derive(Clone, Copy)]
pub struct PathBorrow<'a> {
    pub mnt: &'a Arc<Mount>,
    pub dentry: &'a crate::dentry::Dentry,
}

impl<'a> PathBorrow<'a> {
    pub fn inode(&self) -> &'a Arc<crate::inode::Inode> {
        self.dentry.inode()
    }
}

impl PathRef {
    /// This location, borrowed.
    pub fn as_borrowed(&self) -> PathBorrow<'_> {
        PathBorrow {
            mnt: &self.mnt,
            dentry: &self.dentry,
        }
    }
}

impl std::fmt::Debug for PathRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PathRef({:?}, {:?})", self.mnt, self.dentry)
    }
}
