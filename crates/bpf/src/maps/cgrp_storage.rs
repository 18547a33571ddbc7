//! BPF_MAP_TYPE_CGRP_STORAGE: BPF local storage whose owners are cgroups — the same core as
//! inode storage (`local_storage.rs`), with a different owner: proof that the core is
//! generic over owners, as the kernel's `bpf_local_storage` is.
//!
//! A group keeps its storage pointer in its own word ([`Cgroup::storage_word`], the kernel's
//! `cgrp->bpf_cgrp_storage`). Each cgroup tree has one storage domain ([`DomainCore`]),
//! kept in the tree's per-layer state and made on first use, which also registers the
//! tree's `on_remove` callback: when a group is removed its storage is destroyed (every
//! element unlinked from its map and freed after the grace period). The kernel does this
//! when the cgroup is freed (`css_free_rwork_fn`), which follows rmdir once the last
//! reference goes; here the group's removal is the end of its storage. A tree dropped with
//! groups still in it removes them first (see `CgroupTree`'s Drop), so a group's word never
//! outlives the storage published in it.
//!
//! # Contract for the helpers (bpf_cgrp_storage_get = 210, bpf_cgrp_storage_delete = 211)
//!
//! ```ignore
//! let csm: &CgrpStorageMap = CgrpStorageMap::of(&map).expect("cgrp storage map");
//! // bpf_cgrp_storage_get(map, cgroup, value, flags):
//! let p: Option<NonNull<u8>> = csm.get(Some(&cgroup), init_value, flags, &guard);
//! // bpf_cgrp_storage_delete(map, cgroup):
//! let r: i64 = csm.delete(Some(&cgroup), &guard); // 0 or -errno
//! ```
//! (or `cgrp_storage_get(&map, ...)` / `cgrp_storage_delete(&map, ...)`, which downcast).
//! Same rules as inode storage's helpers: `None` is the program's NULL (get → None, delete
//! → -EINVAL); flags other than `BPF_LOCAL_STORAGE_GET_F_CREATE` (plus the engine's
//! `STORAGE_GET_F_NOALLOC`) → None; a removed group gets no new storage; the pointer is
//! valid while `guard` stays pinned; re-entry creates nothing and delete returns -EBUSY.
//! The hit path is two loads and a compare (the group's word, the map's cache slot).
//!
//! # User space
//! The kernel keys elements by an fd of the group's cgroup v2 directory; at this layer there
//! is no fd table, so the fd-keyed [`MapOps`] answer EBADF and the `Bpf` methods below take
//! the group (or a path to its directory in the tree). Dumps give (cgroup id, value).

use super::local_storage::{
    CacheIdxAllocator, DomainCore, DomainCounts, Elem, ElemCounts, ElemStats, Home,
    LocalStorageMap, LsError, Owner, BPF_LOCAL_STORAGE_GET_F_CREATE, STORAGE_GET_F_NOALLOC,
};
use crate::map::{Map, MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use crate::{Bpf, Handle};
use bpfvfs_cgroup::{Cgroup, CgroupTree};
use bpfvfs_vfs::{Cred, Errno, Result, LOOKUP_FOLLOW};
use crossbeam_epoch::Guard;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::CgrpStorage,
    check: super::local_storage::alloc_check,
    alloc,
};

/// The kernel's `cgroup_cache`: cache slots shared by all cgroup-storage maps.
pub static CGROUP_CACHE: CacheIdxAllocator = CacheIdxAllocator::new();

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(CgrpStorageMap {
        inner: LocalStorageMap::new(def.value_size as usize, &CGROUP_CACHE),
    }))
}

/// One cgroup tree's storage domain (storage pool and counters).
pub struct CgrpStorageDomain {
    core: Arc<DomainCore>,
}

impl CgrpStorageDomain {
    pub fn counts(&self) -> DomainCounts {
        self.core.counts()
    }
}

/// The storage domain of `tree`, made (and hooked to group removal) on first use.
pub fn domain(tree: &CgroupTree) -> Arc<CgrpStorageDomain> {
    tree.layer_state(|| {
        let core = DomainCore::new(false);
        let c = core.clone();
        tree.on_remove(Arc::new(move |g: &Arc<Cgroup>| destroy_storage(&c, g)));
        CgrpStorageDomain { core }
    })
}

/// A removed group's storage goes: every element unlinked and freed after the grace period.
fn destroy_storage(core: &DomainCore, g: &Cgroup) {
    // The group is marked removed before this runs (creators check it after publishing,
    // with the fence `destroy` pairs with), so nothing is attached after this.
    std::sync::atomic::fence(Ordering::SeqCst);
    if g.storage_word().load(Ordering::Acquire).is_null() {
        return;
    }
    let guard = crossbeam_epoch::pin();
    super::local_storage::destroy(core, Home::Word(g.storage_word()), &guard);
}

struct CgroupOwner<'a>(&'a Cgroup);

impl Owner for CgroupOwner<'_> {
    fn home(&self, _alloc: bool, _noalloc: bool) -> std::result::Result<Option<Home<'_>>, LsError> {
        // The word is part of the group: nothing to allocate.
        Ok(Some(Home::Word(self.0.storage_word())))
    }
    fn id(&self) -> u64 {
        self.0.id()
    }
    fn dying(&self) -> bool {
        self.0.is_removed()
    }
}

/// A cgroup-storage map (the `MapOps` of `BPF_MAP_TYPE_CGRP_STORAGE`).
pub struct CgrpStorageMap {
    inner: LocalStorageMap,
}

impl CgrpStorageMap {
    /// The cgroup-storage side of `map`, if it is one.
    pub fn of(map: &Map) -> Option<&CgrpStorageMap> {
        map.ops().as_any().downcast_ref::<CgrpStorageMap>()
    }
    pub fn value_size(&self) -> usize {
        self.inner.smap().value_size()
    }
    pub fn cache_idx(&self) -> usize {
        self.inner.smap().cache_idx()
    }
    /// Element counters; the `Arc` outlives the map.
    pub fn stats_handle(&self) -> Arc<ElemStats> {
        self.inner.smap().stats().clone()
    }
    pub fn counts(&self) -> ElemCounts {
        self.inner.smap().stats().snapshot()
    }

    /// bpf_cgrp_storage_get (see the contract at the top of this file).
    #[inline]
    pub fn get(
        &self,
        group: Option<&Arc<Cgroup>>,
        init_value: Option<&[u8]>,
        flags: u64,
        guard: &Guard,
    ) -> Option<NonNull<u8>> {
        if flags & !(BPF_LOCAL_STORAGE_GET_F_CREATE | STORAGE_GET_F_NOALLOC) != 0 {
            return None;
        }
        let g = group?;
        let smap = self.inner.smap();
        let s = g.storage_word().load(Ordering::Acquire) as *mut super::local_storage::Storage;
        if !s.is_null() {
            if let Some(e) = NonNull::new(smap.cached(s)) {
                return Some(Elem::value_ptr(e));
            }
            if let Some(e) = NonNull::new(smap.lookup_in(s)) {
                return Some(Elem::value_ptr(e));
            }
        }
        if flags & BPF_LOCAL_STORAGE_GET_F_CREATE == 0 || g.is_removed() {
            return None;
        }
        let d = domain(&*g.tree()?);
        smap.get(&d.core, &CgroupOwner(g), init_value, flags, guard)
            .ok()
            .map(Elem::value_ptr)
    }

    /// bpf_cgrp_storage_delete: 0 or -errno.
    pub fn delete(&self, group: Option<&Arc<Cgroup>>, guard: &Guard) -> i64 {
        let Some(g) = group else {
            return -(Errno::EINVAL.0 as i64);
        };
        match self.delete_elem(g, guard) {
            Ok(()) => 0,
            Err(e) => -(e.errno().0 as i64),
        }
    }

    /// Delete this map's element on `group`.
    pub fn delete_elem(&self, group: &Cgroup, guard: &Guard) -> std::result::Result<(), LsError> {
        let tree = group.tree().ok_or(LsError::NoEntry)?;
        let d = domain(&tree);
        self.inner
            .smap()
            .delete(&d.core, &CgroupOwner(group), guard)
    }

    /// User-space lookup: the value copied out.
    pub fn lookup_value(&self, group: &Cgroup) -> std::result::Result<Vec<u8>, LsError> {
        let tree = group.tree().ok_or(LsError::NoEntry)?;
        let d = domain(&tree);
        let guard = crossbeam_epoch::pin();
        let smap = self.inner.smap();
        let e = smap.lookup(&d.core, &CgroupOwner(group), &guard)?;
        let mut out = vec![0u8; smap.value_size()];
        smap.read_value(e, &mut out);
        Ok(out)
    }

    /// User-space update with BPF_ANY / BPF_NOEXIST / BPF_EXIST (`value`: `value_size`
    /// bytes). A removed group is EBADF, as an fd of a cgroup being freed cannot be had.
    pub fn update_value(
        &self,
        group: &Cgroup,
        value: &[u8],
        flags: u64,
    ) -> std::result::Result<(), LsError> {
        let smap = self.inner.smap();
        if value.len() != smap.value_size() {
            return Err(LsError::Invalid);
        }
        if group.is_removed() {
            return Err(LsError::NoOwnerStorage);
        }
        let tree = group.tree().ok_or(LsError::NoOwnerStorage)?;
        let d = domain(&tree);
        let guard = crossbeam_epoch::pin();
        smap.update(&d.core, &CgroupOwner(group), value, flags, &guard)
            .map(|_| ())
    }

    /// Every element: (cgroup id, value), by id.
    pub fn dump(&self) -> Vec<(u64, Vec<u8>)> {
        self.inner.smap().dump()
    }
}

/// bpf_cgrp_storage_get on a generic map handle: None if `map` is not a cgroup-storage map.
#[inline]
pub fn cgrp_storage_get(
    map: &Map,
    group: Option<&Arc<Cgroup>>,
    init_value: Option<&[u8]>,
    flags: u64,
    guard: &Guard,
) -> Option<NonNull<u8>> {
    CgrpStorageMap::of(map)?.get(group, init_value, flags, guard)
}

/// bpf_cgrp_storage_delete on a generic map handle: 0 or -errno (-EINVAL for another type).
pub fn cgrp_storage_delete(map: &Map, group: Option<&Arc<Cgroup>>, guard: &Guard) -> i64 {
    match CgrpStorageMap::of(map) {
        Some(m) => m.delete(group, guard),
        None => -(Errno::EINVAL.0 as i64),
    }
}

impl MapOps for CgrpStorageMap {
    // The kernel's keys are fds of cgroup directories; no fd table here (module comment).
    fn lookup(&self, _key: &[u8], _out: &mut [u8]) -> Result<()> {
        Err(Errno::EBADF)
    }
    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<()> {
        Err(Errno::EBADF)
    }
    fn delete(&self, _key: &[u8]) -> Result<()> {
        Err(Errno::EBADF)
    }
    /// notsupp_get_next_key.
    fn get_next_key(&self, _key: Option<&[u8]>, _next: &mut [u8]) -> Result<()> {
        Err(super::ENOTSUPP)
    }
    fn mem_usage(&self) -> u64 {
        self.inner.smap().mem_usage()
    }
    fn elem_count(&self) -> u64 {
        self.counts().live.max(0) as u64
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------
// User space through `Bpf` (errnos as for inode storage, see `storage_api.rs`)

impl Bpf {
    /// The handle's map as cgroup storage, with the access `write` needs.
    fn cgrp_storage_map(h: &Handle, write: bool) -> Result<&CgrpStorageMap> {
        let m = h.map()?;
        let csm = CgrpStorageMap::of(m).ok_or(Errno::EINVAL)?;
        let flags = m.def().map_flags;
        let ok = if write {
            h.access.write && flags & BPF_F_RDONLY == 0
        } else {
            h.access.read && flags & BPF_F_WRONLY == 0
        };
        if !ok || (write && m.is_frozen()) {
            return Err(Errno::EPERM);
        }
        Ok(csm)
    }

    /// The cgroup tree of this instance's VFS.
    pub fn cgroup_tree(&self) -> Option<Arc<CgroupTree>> {
        bpfvfs_cgroup::tree_of(self.vfs())
    }

    /// The group whose directory `path` names in this instance's VFS (what the kernel gets
    /// from an fd of a cgroup v2 directory); EBADF for anything else, as
    /// `cgroup_v1v2_get_from_fd` says of an fd that is not a cgroup.
    pub fn cgroup_of_path(&self, cred: &Cred, path: &[u8]) -> Result<Arc<Cgroup>> {
        let at = self.vfs().resolve(cred, None, path, LOOKUP_FOLLOW)?;
        self.cgroup_tree()
            .and_then(|t| t.of_inode(at.inode().ino()))
            .ok_or(Errno::EBADF)
    }

    /// BPF_MAP_LOOKUP_ELEM on a cgroup-storage map, keyed by group.
    pub fn cgrp_storage_lookup(&self, h: &Handle, group: &Cgroup) -> Result<Vec<u8>> {
        Ok(Self::cgrp_storage_map(h, false)?.lookup_value(group)?)
    }

    /// BPF_MAP_UPDATE_ELEM keyed by group, with BPF_ANY / BPF_NOEXIST / BPF_EXIST.
    pub fn cgrp_storage_update(
        &self,
        h: &Handle,
        group: &Cgroup,
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let csm = Self::cgrp_storage_map(h, true)?;
        if value.len() != csm.value_size() {
            return Err(Errno::EINVAL);
        }
        Ok(csm.update_value(group, value, flags)?)
    }

    /// BPF_MAP_DELETE_ELEM keyed by group.
    pub fn cgrp_storage_delete(&self, h: &Handle, group: &Cgroup) -> Result<()> {
        let csm = Self::cgrp_storage_map(h, true)?;
        let guard = crossbeam_epoch::pin();
        Ok(csm.delete_elem(group, &guard)?)
    }

    /// Every element of the map: (cgroup id, value), by id.
    pub fn cgrp_storage_dump(&self, h: &Handle) -> Result<Vec<(u64, Vec<u8>)>> {
        Ok(Self::cgrp_storage_map(h, false)?.dump())
    }

    /// Storage counters of this instance's cgroup tree (live storages, pool).
    pub fn cgrp_storage_counts(&self) -> Option<DomainCounts> {
        self.cgroup_tree().map(|t| domain(&t).counts())
    }
}
