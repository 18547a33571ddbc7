//! BPF_MAP_TYPE_INODE_STORAGE: BPF local storage whose owners are inodes.
//!
//! Everything about elements, storages, caching and freeing is the shared core
//! (`local_storage.rs`); this file decides where an inode keeps its storage pointer and
//! hooks inode eviction.
//!
//! # Contract for the helpers (bpf_inode_storage_get = 145, bpf_inode_storage_delete = 146)
//!
//! ```ignore
//! // Resolve once, when the program is loaded (a downcast; not on the hot path):
//! let ism: &InodeStorageMap = InodeStorageMap::of(&map).expect("inode storage map");
//! // bpf_inode_storage_get(map, inode, value, flags):
//! let p: Option<NonNull<u8>> = ism.get(inode, init_value, flags, &guard);
//! // bpf_inode_storage_delete(map, inode):
//! let r: i64 = ism.delete(inode, &guard); // 0 or -errno
//! ```
//! or, with the generic map, `storage_get(&map, inode, init_value, flags, &guard)` and
//! `storage_delete(&map, inode, &guard)` (these add the downcast).
//!
//! - `inode: Option<&Inode>`: None is the program's NULL (get → None, delete → -EINVAL).
//!   The caller guarantees the inode's memory for the call (it holds an `Arc<Inode>` or a
//!   reference, as the kernel requires a refcount); an inode already being evicted gets no
//!   new storage (None).
//! - `flags`: the program's flags; anything but `BPF_LOCAL_STORAGE_GET_F_CREATE` → None.
//!   The engine (never the program) may add [`STORAGE_GET_F_NOALLOC`] when running where the
//!   heap must not be entered (signal handler): creation then uses only lock-free pools, and
//!   fails (None) only where the layout would need a heap allocation (the addons struct not
//!   yet allocated; hash-table layout).
//! - `init_value`: the initial value on creation, `value_size` bytes (shorter: zero-padded;
//!   None: zeroed); ignored when the element exists.
//! - The returned pointer is the value's first byte, 8-byte aligned, `value_size` bytes,
//!   valid while `guard` stays pinned — even if the element is deleted, replaced, its inode
//!   evicted or its map freed meanwhile (those only make it unreachable).
//! - Never blocks on a lock its own thread holds, never calls malloc in the create path for
//!   the pool-backed layouts. A call made while this thread is already inside storage code
//!   (re-entry) is refused: get may still return an existing element (no caching) but
//!   creates nothing (None), delete returns -EBUSY. Other threads are never refused.
//! - Any failure of get is None, as the kernel helper returns NULL; delete returns -ENOENT
//!   for no element, -EINVAL for a NULL inode, -EBUSY on re-entry.
//! - The verifier must pair this map type only with helpers 145/146 (check_map_func_
//!   compatibility), and the helpers only with this map type.
//!
//! # Where the pointer lives ([`StorageLayout`], seed 001)
//! Chosen per VFS when the storage domain is attached ([`attach`], before inodes that will
//! carry storage are allocated), so every layout runs on the same code and binary:
//! - `InodeField` (a): the inode's own pointer word (Song Liu's `i_bpf_storage`).
//! - `Addons` (b): the BPF word of the on-demand addons struct shared with watch marks
//!   (Brauner's `inode_addons`), allocated by compare-and-swap on first use. Default.
//! - `Blob` (c): a word reserved in the LSM-style blob every inode is allocated with once
//!   this layout is attached (the mainline `i_security` placement). Inodes allocated
//!   earlier have no blob: lookups find nothing, updates fail EBADF (as the kernel's for an
//!   inode without a BPF blob).
//! - `HashTable` (d): no per-inode field; a concurrent hash table (papaya) from inode
//!   address to storage, entries removed when their storage dies.
//!
//! All layouts release storage in the same eviction hook (registered once per VFS), exactly
//! once: see `local_storage.rs`.
//!
//! # Differences from Linux visible through bpf(2)
//! The user-space element operations take an inode (or a path), not an fd: bpfvfs has no
//! per-process fd table at this layer, so the fd-keyed [`MapOps`] answer EBADF (what Linux
//! returns for a key that is not an open fd); `crate::storage_api` has the inode- and
//! path-keyed forms. [`MapDef`] carries no BTF ids, so the kernel's "BTF key/value required"
//! (EINVAL without them) cannot be expressed: every map is created as if valid BTF was given.

use super::local_storage::{
    self, CacheIdxAllocator, DomainCore, DomainCounts, Elem, ElemCounts, ElemStats, Home,
    LocalStorageMap, LsError, Owner, Storage, BPF_LOCAL_STORAGE_GET_F_CREATE,
    STORAGE_GET_F_NOALLOC,
};
use crate::map::{Map, MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use bpfvfs_vfs::{AddonSlot, Errno, Inode, Result, Vfs};
use crossbeam_epoch::Guard;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::InodeStorage,
    check: super::local_storage::alloc_check,
    alloc,
};

/// The kernel's `inode_cache`: cache slots are shared by all inode-storage maps of the
/// process, as in Linux they are by all such maps of the system.
pub static INODE_CACHE: CacheIdxAllocator = CacheIdxAllocator::new();

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(InodeStorageMap {
        inner: LocalStorageMap::new(def.value_size as usize, &INODE_CACHE),
    }))
}

// ---------------------------------------------------------------------------------------
// Layouts and the per-VFS domain

/// Where an inode's storage pointer lives (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageLayout {
    InodeField,
    Addons,
    Blob,
    HashTable,
}

impl StorageLayout {
    pub const ALL: [StorageLayout; 4] = [
        StorageLayout::InodeField,
        StorageLayout::Addons,
        StorageLayout::Blob,
        StorageLayout::HashTable,
    ];
    pub fn name(self) -> &'static str {
        match self {
            StorageLayout::InodeField => "field",
            StorageLayout::Addons => "addons",
            StorageLayout::Blob => "blob",
            StorageLayout::HashTable => "hash",
        }
    }
    /// The seed-001 letter: a, b, c, d.
    pub fn letter(self) -> char {
        match self {
            StorageLayout::InodeField => 'a',
            StorageLayout::Addons => 'b',
            StorageLayout::Blob => 'c',
            StorageLayout::HashTable => 'd',
        }
    }
    pub fn from_name(s: &str) -> Option<StorageLayout> {
        StorageLayout::ALL
            .into_iter()
            .find(|l| l.name() == s || s.len() == 1 && s.starts_with(l.letter()))
    }
    /// `BPFVFS_INODE_STORAGE_LAYOUT` (field|addons|blob|hash or a-d), else `Addons`.
    pub fn from_env() -> StorageLayout {
        std::env::var("BPFVFS_INODE_STORAGE_LAYOUT")
            .ok()
            .and_then(|s| StorageLayout::from_name(s.trim()))
            .unwrap_or(StorageLayout::Addons)
    }
}

/// One VFS's inode storage: the layout and the shared core (storage pool, table).
/// Installed in the VFS's per-client state ([`AddonSlot::LocalStorage`]).
pub struct InodeStorageDomain {
    layout: StorageLayout,
    blob_idx: usize,
    core: Arc<DomainCore>,
}

impl InodeStorageDomain {
    pub fn layout(&self) -> StorageLayout {
        self.layout
    }
    pub fn counts(&self) -> DomainCounts {
        self.core.counts()
    }

    /// Where `inode` keeps its storage pointer now, without allocating.
    fn home_existing<'a>(&self, inode: &'a Inode) -> Option<Home<'a>> {
        match self.layout {
            StorageLayout::InodeField => Some(Home::Word(inode.ext_word())),
            StorageLayout::Addons => inode
                .addons()
                .map(|a| Home::Word(a.word(AddonSlot::LocalStorage))),
            StorageLayout::Blob => inode.blob_word(self.blob_idx).map(Home::Word),
            StorageLayout::HashTable => Some(Home::Table(inode as *const Inode as usize)),
        }
    }

    /// The storage of `inode`, or null: the hot path (no allocation, no lock).
    #[inline]
    fn storage_of(&self, inode: &Inode) -> *mut Storage {
        let w = match self.layout {
            StorageLayout::InodeField => inode.ext_word(),
            StorageLayout::Addons => match inode.addons() {
                Some(a) => a.word(AddonSlot::LocalStorage),
                None => return std::ptr::null_mut(),
            },
            StorageLayout::Blob => match inode.blob_word(self.blob_idx) {
                Some(w) => w,
                None => return std::ptr::null_mut(),
            },
            StorageLayout::HashTable => return self.core.table_get(inode as *const Inode as usize),
        };
        w.load(Ordering::Acquire) as *mut Storage
    }

    /// Eviction: release the inode's storage (exactly once; see `local_storage::destroy`).
    fn evict(&self, inode: &Inode) {
        if let Some(home) = self.home_existing(inode) {
            // Most inodes never had storage: answer them without pinning. The fence pairs
            // with the one a creator issues after publishing (see `destroy`).
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.core.load(home).is_null() {
                return;
            }
            let guard = crossbeam_epoch::pin();
            local_storage::destroy(&self.core, home, &guard);
        }
    }

    /// Bytes a layout adds to every inode whatever its use, and to each inode that carries
    /// storage, beyond the storage and element blocks themselves (for the benchmark's
    /// accounted figure). `(always, per_inode_with_storage)`.
    pub fn layout_bytes(layout: StorageLayout) -> (usize, usize) {
        // glibc malloc: a request of n bytes takes max(32, round16(n + 8)).
        let chunk = |n: usize| (n + 8).next_multiple_of(16).max(32);
        match layout {
            // The word itself.
            StorageLayout::InodeField => (8, 0),
            // The addons pointer (shared with watch marks), and the struct once used.
            StorageLayout::Addons => (8, chunk(std::mem::size_of::<bpfvfs_vfs::InodeAddons>())),
            // The blob pointer and a one-word blob (length word + our word) in every inode.
            StorageLayout::Blob => (8 + chunk(16), 0),
            // A papaya entry: a boxed (key, value) pair plus a table slot (pointer + metadata
            // byte) at its load factor (~0.5 after growth) — an estimate; the RSS figure is
            // the measurement.
            StorageLayout::HashTable => (0, chunk(16) + 2 * 9),
        }
    }
}

/// The inode-storage domain of the VFS `inode` belongs to, if one is attached.
#[inline]
pub fn domain_of(inode: &Inode) -> Option<&InodeStorageDomain> {
    inode
        .sb()
        .inode_ext()
        .client_ref::<InodeStorageDomain>(AddonSlot::LocalStorage)
}

/// The domain attached to `vfs`, if any.
pub fn domain(vfs: &Vfs) -> Option<&InodeStorageDomain> {
    vfs.inode_ext()
        .client_ref::<InodeStorageDomain>(AddonSlot::LocalStorage)
}

/// Give `vfs` inode storage with `layout`, once: registers the eviction hook and, for the
/// layouts that need it, claims the inode word or reserves a blob word. Attach before
/// allocating the inodes that are to carry storage (the blob is sized at inode allocation).
/// Attaching again with the same layout is a no-op; with another, EBUSY.
pub fn attach(vfs: &Vfs, layout: StorageLayout) -> Result<StorageLayout> {
    let ext = vfs.inode_ext();
    if let Some(d) = domain(vfs) {
        return if d.layout == layout {
            Ok(layout)
        } else {
            Err(Errno::EBUSY)
        };
    }
    if layout == StorageLayout::InodeField && !ext.claim_inode_word() {
        return Err(Errno::EBUSY);
    }
    let blob_idx = if layout == StorageLayout::Blob {
        ext.reserve_blob_words(1)
    } else {
        0
    };
    let (v, mine) = ext.client_or_install(AddonSlot::LocalStorage, || {
        Box::new(InodeStorageDomain {
            layout,
            blob_idx,
            core: DomainCore::new(layout == StorageLayout::HashTable),
        })
    });
    let d = v.downcast_ref::<InodeStorageDomain>().ok_or(Errno::EBUSY)?;
    if mine {
        vfs.register_evict_hook(Arc::new(|inode: &Arc<Inode>| {
            if let Some(d) = domain_of(inode) {
                d.evict(inode);
            }
        }));
    }
    if d.layout != layout {
        return Err(Errno::EBUSY);
    }
    Ok(layout)
}

struct InodeOwner<'a> {
    d: &'a InodeStorageDomain,
    inode: &'a Inode,
}

impl Owner for InodeOwner<'_> {
    fn home(&self, alloc: bool, noalloc: bool) -> std::result::Result<Option<Home<'_>>, LsError> {
        let inode = self.inode;
        match self.d.layout {
            StorageLayout::InodeField => Ok(Some(Home::Word(inode.ext_word()))),
            StorageLayout::Addons => match inode.addons() {
                Some(a) => Ok(Some(Home::Word(a.word(AddonSlot::LocalStorage)))),
                None if !alloc => Ok(None),
                // The one heap allocation of this layout (seed 000's objection).
                None if noalloc => Err(LsError::NoMem),
                None => Ok(Some(Home::Word(
                    inode.addons_or_alloc().word(AddonSlot::LocalStorage),
                ))),
            },
            StorageLayout::Blob => match inode.blob_word(self.d.blob_idx) {
                Some(w) => Ok(Some(Home::Word(w))),
                None if alloc => Err(LsError::NoOwnerStorage),
                None => Ok(None),
            },
            // Inserting into the table allocates.
            StorageLayout::HashTable if alloc && noalloc => Err(LsError::NoMem),
            StorageLayout::HashTable => Ok(Some(Home::Table(inode as *const Inode as usize))),
        }
    }
    fn id(&self) -> u64 {
        self.inode.ino()
    }
    fn dying(&self) -> bool {
        self.inode.is_freeing()
    }
}

// ---------------------------------------------------------------------------------------
// The map

/// What the inlined part of a get found.
enum Fast {
    Hit(NonNull<u8>),
    /// The inode has no storage (or cannot have one): NULL unless creating.
    NoStorage,
    /// Not a cache hit: list walk, table lookup or creation.
    Slow,
}

/// An inode-storage map (the `MapOps` of `BPF_MAP_TYPE_INODE_STORAGE`).
pub struct InodeStorageMap {
    inner: LocalStorageMap,
}

impl InodeStorageMap {
    /// The inode-storage side of `map`, if it is one.
    pub fn of(map: &Map) -> Option<&InodeStorageMap> {
        map.ops().as_any().downcast_ref::<InodeStorageMap>()
    }

    pub fn value_size(&self) -> usize {
        self.inner.smap().value_size()
    }
    /// The cache slot this map uses in every storage (least-used at creation).
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
    /// Bytes of one element block.
    pub fn elem_bytes(&self) -> usize {
        self.inner.smap().elem_bytes()
    }
    /// Bytes mapped for this map's elements (live and free).
    pub fn pool_bytes(&self) -> u64 {
        self.inner.smap().pool_bytes()
    }

    /// bpf_inode_storage_get (see the contract at the top of this file).
    #[inline]
    pub fn get(
        &self,
        inode: Option<&Inode>,
        init_value: Option<&[u8]>,
        flags: u64,
        guard: &Guard,
    ) -> Option<NonNull<u8>> {
        if flags & !(BPF_LOCAL_STORAGE_GET_F_CREATE | STORAGE_GET_F_NOALLOC) != 0 {
            return None;
        }
        let inode = inode?;
        match self.cache_hit(inode) {
            Fast::Hit(p) => Some(p),
            Fast::NoStorage if flags & BPF_LOCAL_STORAGE_GET_F_CREATE == 0 => None,
            // A sibling call: the paths above need no saved registers.
            _ => self.get_cold(inode, init_value, flags, guard),
        }
    }

    /// The hit path: loads and compares only, no call. The hash-table layout always goes
    /// to `get_cold` (its lookup is a call of its own).
    #[inline(always)]
    fn cache_hit(&self, inode: &Inode) -> Fast {
        let Some(d) = domain_of(inode) else {
            return Fast::NoStorage;
        };
        let w = match d.layout {
            StorageLayout::InodeField => inode.ext_word(),
            StorageLayout::Addons => match inode.addons() {
                Some(a) => a.word(AddonSlot::LocalStorage),
                None => return Fast::NoStorage,
            },
            StorageLayout::Blob => match inode.blob_word(d.blob_idx) {
                Some(w) => w,
                None => return Fast::NoStorage,
            },
            StorageLayout::HashTable => return Fast::Slow,
        };
        let s = w.load(Ordering::Acquire) as *mut Storage;
        if s.is_null() {
            return Fast::NoStorage;
        }
        match NonNull::new(self.inner.smap().cached(s)) {
            Some(e) => Fast::Hit(Elem::value_ptr(e)),
            None => Fast::Slow,
        }
    }

    /// Everything but a cache hit: list walk (and caching), table lookup, creation.
    #[inline(never)]
    fn get_cold(
        &self,
        inode: &Inode,
        init_value: Option<&[u8]>,
        flags: u64,
        guard: &Guard,
    ) -> Option<NonNull<u8>> {
        let d = domain_of(inode)?;
        let smap = self.inner.smap();
        let s = d.storage_of(inode);
        if !s.is_null() {
            if let Some(e) = NonNull::new(smap.lookup_in(s)) {
                return Some(Elem::value_ptr(e));
            }
        }
        if flags & BPF_LOCAL_STORAGE_GET_F_CREATE == 0 {
            return None;
        }
        let owner = InodeOwner { d, inode };
        smap.get(&d.core, &owner, init_value, flags, guard)
            .ok()
            .map(Elem::value_ptr)
    }

    /// bpf_inode_storage_delete: 0 or -errno.
    pub fn delete(&self, inode: Option<&Inode>, guard: &Guard) -> i64 {
        let Some(inode) = inode else {
            return -(Errno::EINVAL.0 as i64);
        };
        match self.delete_elem(inode, guard) {
            Ok(()) => 0,
            Err(e) => -(e.errno().0 as i64),
        }
    }

    /// Delete this map's element on `inode`.
    pub fn delete_elem(&self, inode: &Inode, guard: &Guard) -> std::result::Result<(), LsError> {
        let Some(d) = domain_of(inode) else {
            return Err(LsError::NoEntry);
        };
        self.inner
            .smap()
            .delete(&d.core, &InodeOwner { d, inode }, guard)
    }

    /// User-space lookup: the value copied out (caches the element, as the syscall does).
    pub fn lookup_value(&self, inode: &Inode) -> std::result::Result<Vec<u8>, LsError> {
        let d = domain_of(inode).ok_or(LsError::NoEntry)?;
        let guard = crossbeam_epoch::pin();
        let smap = self.inner.smap();
        let e = smap.lookup(&d.core, &InodeOwner { d, inode }, &guard)?;
        let mut out = vec![0u8; smap.value_size()];
        smap.read_value(e, &mut out);
        Ok(out)
    }

    /// User-space update with BPF_ANY / BPF_NOEXIST / BPF_EXIST. `value` must be
    /// `value_size` bytes.
    pub fn update_value(
        &self,
        inode: &Inode,
        value: &[u8],
        flags: u64,
    ) -> std::result::Result<(), LsError> {
        let smap = self.inner.smap();
        if value.len() != smap.value_size() {
            return Err(LsError::Invalid);
        }
        let d = domain_of(inode).ok_or(LsError::NoOwnerStorage)?;
        let guard = crossbeam_epoch::pin();
        smap.update(&d.core, &InodeOwner { d, inode }, value, flags, &guard)
            .map(|_| ())
    }

    /// Every element: (inode number, value), by inode number.
    pub fn dump(&self) -> Vec<(u64, Vec<u8>)> {
        self.inner.smap().dump()
    }
}

/// bpf_inode_storage_get on a generic map handle (adds a downcast to
/// [`InodeStorageMap::get`]): None if `map` is not an inode-storage map.
#[inline]
pub fn storage_get(
    map: &Map,
    inode: Option<&Inode>,
    init_value: Option<&[u8]>,
    flags: u64,
    guard: &Guard,
) -> Option<NonNull<u8>> {
    InodeStorageMap::of(map)?.get(inode, init_value, flags, guard)
}

/// bpf_inode_storage_delete on a generic map handle: 0 or -errno (-EINVAL if `map` is not
/// an inode-storage map).
pub fn storage_delete(map: &Map, inode: Option<&Inode>, guard: &Guard) -> i64 {
    match InodeStorageMap::of(map) {
        Some(m) => m.delete(inode, guard),
        None => -(Errno::EINVAL.0 as i64),
    }
}

impl MapOps for InodeStorageMap {
    // The kernel's keys are fds of open files; there is no fd table here (see the module
    // comment), so every key is a bad fd.
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
