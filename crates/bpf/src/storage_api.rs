//! Inode local storage from user space: the kernel's fd-keyed map operations on
//! `BPF_MAP_TYPE_INODE_STORAGE`, keyed here by inode (or by a path resolved in the VFS the
//! [`Bpf`] was created on), plus a dump, which Linux does not offer (its `get_next_key` is
//! ENOTSUPP).
//!
//! Errors are Linux's for the same situations: EINVAL for a map of another type, a wrong
//! value size or bad flags; EPERM for a handle without the needed access (or a frozen map on
//! update/delete); ENOENT for no element (and on update with BPF_EXIST), EEXIST on update
//! with BPF_NOEXIST; EBADF when the inode cannot carry storage (blob layout, inode older
//! than the blob reservation).
//!
//! Each VFS gets its storage domain from `Bpf::new` (layout from
//! `BPFVFS_INODE_STORAGE_LAYOUT`, default `addons`); [`Bpf::new_with_inode_storage`] picks
//! the layout explicitly.

use crate::maps::inode_storage::{self, InodeStorageMap, StorageLayout};
use crate::maps::local_storage::DomainCounts;
use crate::uapi::*;
use crate::{Bpf, Handle, Map};
use bpfvfs_vfs::{Cred, Errno, Inode, PathRef, Result, Vfs, LOOKUP_FOLLOW};
use std::sync::Arc;

pub use crate::maps::inode_storage::{storage_delete, storage_get};

/// `Bpf::new`'s hookup: attach an inode-storage domain to `vfs` unless it has one (the
/// layout from the environment). A VFS whose inode word another layer has claimed keeps
/// working without inode storage.
pub(crate) fn attach_default(vfs: &Vfs) {
    if inode_storage::domain(vfs).is_none() {
        if let Err(e) = inode_storage::attach(vfs, StorageLayout::from_env()) {
            tracing::warn!("inode storage not available on this VFS: {e:?}");
        }
    }
}

impl Bpf {
    /// `Bpf::new` with inode storage in `layout` (attached before bpffs creates any inode).
    pub fn new_with_inode_storage(vfs: Arc<Vfs>, layout: StorageLayout) -> Result<Arc<Bpf>> {
        inode_storage::attach(&vfs, layout)?;
        Bpf::new(vfs)
    }

    /// The inode-storage layout of this instance's VFS.
    pub fn inode_storage_layout(&self) -> Option<StorageLayout> {
        inode_storage::domain(self.vfs()).map(|d| d.layout())
    }

    /// Storage counters of this instance's VFS (live storages, pool, table).
    pub fn inode_storage_counts(&self) -> Option<DomainCounts> {
        inode_storage::domain(self.vfs()).map(|d| d.counts())
    }

    /// The handle's map as inode storage, with the access `write` needs.
    fn storage_map(h: &Handle, write: bool) -> Result<(&Arc<Map>, &InodeStorageMap)> {
        let m = h.map()?;
        let ism = InodeStorageMap::of(m).ok_or(Errno::EINVAL)?;
        let flags = m.def().map_flags;
        let ok = if write {
            h.access.write && flags & BPF_F_RDONLY == 0
        } else {
            h.access.read && flags & BPF_F_WRONLY == 0
        };
        if !ok {
            return Err(Errno::EPERM);
        }
        if write && m.is_frozen() {
            return Err(Errno::EPERM);
        }
        Ok((m, ism))
    }

    /// BPF_MAP_LOOKUP_ELEM by inode: the value of the handle's element on `inode`.
    pub fn inode_storage_lookup(&self, h: &Handle, inode: &Inode) -> Result<Vec<u8>> {
        let (_, ism) = Self::storage_map(h, false)?;
        Ok(ism.lookup_value(inode)?)
    }

    /// BPF_MAP_UPDATE_ELEM by inode, with BPF_ANY / BPF_NOEXIST / BPF_EXIST.
    pub fn inode_storage_update(
        &self,
        h: &Handle,
        inode: &Inode,
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let (_, ism) = Self::storage_map(h, true)?;
        if value.len() != ism.value_size() {
            return Err(Errno::EINVAL);
        }
        Ok(ism.update_value(inode, value, flags)?)
    }

    /// BPF_MAP_DELETE_ELEM by inode.
    pub fn inode_storage_delete(&self, h: &Handle, inode: &Inode) -> Result<()> {
        let (_, ism) = Self::storage_map(h, true)?;
        let guard = crossbeam_epoch::pin();
        Ok(ism.delete_elem(inode, &guard)?)
    }

    /// Every element of the map: (inode number, value), by inode number.
    pub fn inode_storage_dump(&self, h: &Handle) -> Result<Vec<(u64, Vec<u8>)>> {
        let (_, ism) = Self::storage_map(h, false)?;
        Ok(ism.dump())
    }

    /// `path` resolved in this instance's VFS (symlinks followed), for the path forms. The
    /// returned reference keeps the inode alive (and unevicted) while it is used, as an open
    /// fd does in Linux.
    pub fn inode_storage_resolve(&self, cred: &Cred, path: &[u8]) -> Result<PathRef> {
        self.vfs().resolve(cred, None, path, LOOKUP_FOLLOW)
    }

    /// [`Bpf::inode_storage_lookup`] on the inode `path` names.
    pub fn inode_storage_lookup_path(
        &self,
        h: &Handle,
        cred: &Cred,
        path: &[u8],
    ) -> Result<Vec<u8>> {
        let at = self.inode_storage_resolve(cred, path)?;
        self.inode_storage_lookup(h, at.inode())
    }

    /// [`Bpf::inode_storage_update`] on the inode `path` names.
    pub fn inode_storage_update_path(
        &self,
        h: &Handle,
        cred: &Cred,
        path: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let at = self.inode_storage_resolve(cred, path)?;
        self.inode_storage_update(h, at.inode(), value, flags)
    }

    /// [`Bpf::inode_storage_delete`] on the inode `path` names.
    pub fn inode_storage_delete_path(&self, h: &Handle, cred: &Cred, path: &[u8]) -> Result<()> {
        let at = self.inode_storage_resolve(cred, path)?;
        self.inode_storage_delete(h, at.inode())
    }
}
