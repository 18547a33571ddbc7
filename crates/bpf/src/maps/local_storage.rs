//! BPF local storage, the part every owner type shares (the kernel's bpf_local_storage):
//! per-owner storages holding at most one element per map, a 16-slot per-owner cache, and
//! the rules for who frees what when an element, its owner or its map goes. Inode storage
//! (`inode_storage.rs`) supplies only where an owner keeps its storage pointer; task storage
//! can reuse all of this with a different [`Home`].
//!
//! # Objects
//! - [`Smap`]: one storage map. Its elements are fixed-size blocks of its own [`Pool`], so
//!   the map never needs a list of its elements: the pool's chunks *are* that list (walked at
//!   map free and for dumps). A map holds a cache index (`cache_idx`), assigned at creation as
//!   Linux does: the least-used of the 16 slots, lowest index on ties.
//! - [`Elem`]: header (storage-list link, map, owning storage, state) + the value as
//!   `AtomicU64` words (programs get 8-byte-aligned pointers; copies never tear a word).
//! - `Storage`: one per owner that has at least one element: 16 cache slots, the element
//!   list, a spin lock, the owner's id, and where the owner's pointer to it lives (its
//!   [`Home`]) so it can be unpublished without the owner. Storages come from the domain's
//!   pool.
//! - [`DomainCore`]: per owner domain (one per VFS for inodes): the storage pool, the side
//!   table for table homes, counters.
//!
//! # Concurrency
//! Readers (get, lookup, dump) take no lock: they run under the caller's crossbeam-epoch
//! guard and follow `home → storage → cache slot or list → element`. Writers change a
//! storage's list, cache and liveness only under that storage's spin lock; that lock is the
//! only lock in this file, and nothing else is taken while it is held except the owner table
//! (`papaya`, lock-free) when a storage is unpublished. So the lock order is simply: storage
//! lock → (owner table). There is no map-side lock at all.
//!
//! Every element state change LIVE → DEAD happens under its storage's lock, by exactly one of
//! delete / replacing update / owner destroy / map free — whichever takes the lock first; the
//! others find it gone. A storage dies (dead flag, home cleared) under its own lock when its
//! last element leaves, exactly once. Dead elements and storages return to their pools only
//! after the epoch grace period, so a pointer a reader found stays valid until it unpins.
//!
//! # Who frees what, when
//! - **delete / update**: the element goes back to its map's pool after the grace period; if
//!   it was the storage's last, the storage is unpublished and goes too.
//! - **owner destroyed** (inode eviction hook): every element of its storage is unlinked, the
//!   storage unpublished; all go back after the grace period. Other owners are untouched.
//! - **map freed** (last reference): every LIVE block of the map's pool is unlinked from its
//!   storage (storages left empty die); the map's memory itself is released by a deferred
//!   drop, after every reader that might hold one of its elements — and after every pending
//!   element return, each of which holds a reference to the map's core.
//! - Either order, or both at once: both paths take the storage lock and check the element's
//!   state, so each element is unlinked once and freed once (pool pushes assert it).
//!
//! # Never blocking, re-entry, signal time (seed 000)
//! A per-thread busy count marks "this thread is inside a storage critical section". A
//! re-entrant call (a program run from inside storage code on the same thread — the kernel's
//! fentry-on-storage-code or NMI case) is detected with one thread-local load: lookups still
//! work (lock-free, no caching), creation returns NULL and delete returns -EBUSY, as task
//! storage's `_recur` helpers do; it never spins on a lock its own thread holds. Because the
//! count is per thread and not per CPU, a *different* thread is never refused (the kernel's
//! percpu counter gave spurious -EBUSY to other tasks on the same CPU).
//!
//! Element and storage memory come from lock-free pools (Treiber stacks; a popped block is
//! pushed back only through the epoch, so a popper's stale view cannot be re-pushed under it:
//! no ABA). Pools grow with `mmap`, never `malloc`, so a get that creates takes no allocator
//! lock: safe for a caller that interrupted its thread inside `malloc`. The storage spin lock
//! is only ever taken by a thread that is not already inside a critical section, so it cannot
//! self-deadlock; other threads hold it for a few stores.
//! What still allocates: the owner's home when it is allocated on demand (the inode addons
//! struct, hash-table entries) — refused under [`STORAGE_GET_F_NOALLOC`] — and the epoch's own
//! bookkeeping on retire (once per 64 retirements), which is why, as in Linux since 2026,
//! delete is not promised at signal time.
//!
//! Divergences from Linux, all on purpose: a create that races another create on the same
//! owner adopts the winner's storage instead of failing with -EAGAIN; a concurrent creator of
//! the same element gets that element instead of NULL; element memory is charged to the map
//! (`mem_usage`), storage memory to the map whose element created it.

use super::mem::Region;
use bpfvfs_vfs::Errno;
use crossbeam_epoch::Guard;
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex};

/// BPF_LOCAL_STORAGE_CACHE_SIZE.
pub const CACHE_SIZE: usize = 16;
/// BPF_LOCAL_STORAGE_GET_F_CREATE: the only flag a program may pass to the get helper.
pub const BPF_LOCAL_STORAGE_GET_F_CREATE: u64 = 1;
/// Hidden flag the engine adds (never a program), like the kernel's hidden gfp argument: the
/// caller runs where the heap may not be entered (signal handler): creation uses only the
/// pools and fails (NULL) where the owner's home would need a heap allocation.
pub const STORAGE_GET_F_NOALLOC: u64 = 1 << 63;

/// Largest value: the kernel's BPF_LOCAL_STORAGE_MAX_VALUE_SIZE with its 128-byte selem
/// (U16_MAX - sizeof(struct bpf_local_storage_elem)); checked against the host kernel.
pub const MAX_VALUE_SIZE: u32 = u16::MAX as u32 - 128;

/// BPF_LOCAL_STORAGE_CREATE_FLAG_MASK.
const CREATE_FLAG_MASK: u32 = crate::uapi::BPF_F_NO_PREALLOC | crate::uapi::BPF_F_CLONE;

/// bpf_local_storage_map_alloc_check: the create-time rules every local-storage map type
/// (inode, cgroup) shares.
pub fn alloc_check(def: &crate::map::MapDef) -> bpfvfs_vfs::Result<()> {
    if def.map_flags & !CREATE_FLAG_MASK != 0
        || def.map_flags & crate::uapi::BPF_F_NO_PREALLOC == 0
        || def.max_entries != 0
        || def.key_size != 4
        || def.value_size == 0
        || def.map_extra != 0
    {
        return Err(Errno::EINVAL);
    }
    if def.value_size > MAX_VALUE_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// What can go wrong; each maps to the errno Linux returns for it.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsError {
    #[error("no such element")]
    NoEntry,
    #[error("element exists")]
    Exists,
    #[error("invalid flags or arguments")]
    Invalid,
    /// The owner cannot carry storage: no blob (inode allocated before the layer reserved
    /// one), being destroyed, or no storage domain on its VFS.
    #[error("owner cannot carry local storage")]
    NoOwnerStorage,
    #[error("re-entrant call inside local storage on this thread")]
    Busy,
    #[error("out of memory")]
    NoMem,
}

impl LsError {
    pub fn errno(self) -> Errno {
        match self {
            LsError::NoEntry => Errno::ENOENT,
            LsError::Exists => Errno::EEXIST,
            LsError::Invalid => Errno::EINVAL,
            LsError::NoOwnerStorage => Errno::EBADF,
            LsError::Busy => Errno::EBUSY,
            LsError::NoMem => Errno::ENOMEM,
        }
    }
}

impl From<LsError> for Errno {
    fn from(e: LsError) -> Errno {
        e.errno()
    }
}

// ---------------------------------------------------------------------------------------
// Per-thread busy count and the re-entry probe

thread_local! {
    static BUSY: Cell<u32> = const { Cell::new(0) };
    static PROBE: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// "This thread is inside a storage critical section" while alive.
struct Busy(());

impl Busy {
    /// For paths that may be refused (get-create, update, delete): None when re-entrant.
    fn try_enter() -> Option<Busy> {
        BUSY.with(|b| {
            if b.get() != 0 {
                None
            } else {
                b.set(1);
                Some(Busy(()))
            }
        })
    }
    /// For paths that must complete (owner destroy, map free).
    fn enter_nested() -> Busy {
        BUSY.with(|b| b.set(b.get() + 1));
        Busy(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(b.get() - 1));
    }
}

/// Whether the calling thread is inside a local-storage critical section (a call now would
/// be re-entrant).
pub fn in_critical_section() -> bool {
    BUSY.with(|b| b.get() != 0)
}

/// Test hook: `f` runs inside every create/update/delete critical section of this thread
/// (storage lock held), standing in for a program that fires there (fentry on storage code,
/// a signal). Calls it makes are re-entrant.
#[doc(hidden)]
pub fn set_reentry_probe(f: Option<fn()>) {
    PROBE.with(|p| p.set(f));
}

#[inline]
fn probe() {
    if let Some(f) = PROBE.with(|p| p.get()) {
        f()
    }
}

// ---------------------------------------------------------------------------------------
// Cache index assignment

/// One per owner type (the kernel's `bpf_local_storage_cache`): usage count of each of the
/// 16 cache slots by live maps. Map creation/free only, so a mutex is fine.
pub struct CacheIdxAllocator {
    counts: Mutex<[u64; CACHE_SIZE]>,
}

impl CacheIdxAllocator {
    pub const fn new() -> CacheIdxAllocator {
        CacheIdxAllocator {
            counts: Mutex::new([0; CACHE_SIZE]),
        }
    }

    /// The least-used slot (the first unused one if any), counted as used once more.
    pub fn get(&self) -> usize {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut best = 0;
        for i in 0..CACHE_SIZE {
            if c[i] < c[best] {
                best = i;
            }
            if c[best] == 0 {
                break;
            }
        }
        c[best] += 1;
        best
    }

    pub fn free(&self, idx: usize) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c[idx] = c[idx].saturating_sub(1);
    }

    /// Current usage counts (for tests and `map show`-style diagnostics).
    pub fn usage(&self) -> [u64; CACHE_SIZE] {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for CacheIdxAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// Spin lock

/// Held for a handful of stores. Only taken by threads not already inside a critical
/// section, so a holder never waits for itself; waiters spin briefly, then yield.
struct SpinLock(AtomicBool);

impl SpinLock {
    #[inline]
    fn lock(&self) {
        let mut spins = 0u32;
        loop {
            if self
                .0
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            while self.0.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 100 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
    #[inline]
    fn unlock(&self) {
        self.0.store(false, Ordering::Release)
    }
}

// ---------------------------------------------------------------------------------------
// Lock-free block pool

/// Block states, at a fixed offset in every block (so double frees are caught).
const FREE: u32 = 0;
/// Popped; being initialized or never published.
const NEW: u32 = 1;
const LIVE: u32 = 2;
/// Unlinked; waiting for the grace period.
const DEAD: u32 = 3;

const PAGE: usize = 4096;
const MAX_CHUNK: usize = 2 << 20;

#[repr(C)]
struct ChunkHdr {
    next: *mut ChunkHdr,
    region: Region,
    first: usize,
    count: usize,
}
const CHUNK_HDR: usize = 64;

/// Fixed-size blocks carved from mmap'd chunks; the free list is a Treiber stack whose link
/// is the block's first word (an atomic pointer in every block type). Chunks stay mapped
/// until the pool is dropped, so walking them (map free, dump) is always safe.
pub(crate) struct Pool {
    block: usize,
    state_off: usize,
    free: AtomicPtr<u8>,
    chunks: AtomicPtr<ChunkHdr>,
    next_chunk: AtomicUsize,
    reserved: AtomicU64,
    counts: Arc<PoolCounts>,
}

/// Blocks popped from and returned to a pool; shared so a map's counters outlive its pool.
#[derive(Default, Debug)]
pub struct PoolCounts {
    pub popped: AtomicU64,
    pub returned: AtomicU64,
}

// SAFETY: all shared state is atomic; chunk headers are written before being published with
// a release CAS and never changed afterwards (except by Drop, which has `&mut self`).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Pool {
    fn new(block: usize, state_off: usize, first_chunk: usize) -> Pool {
        Pool {
            block: block.next_multiple_of(16),
            state_off,
            free: AtomicPtr::new(ptr::null_mut()),
            chunks: AtomicPtr::new(ptr::null_mut()),
            next_chunk: AtomicUsize::new(first_chunk.max(PAGE)),
            reserved: AtomicU64::new(0),
            counts: Arc::default(),
        }
    }

    #[inline]
    fn link(b: *mut u8) -> &'static AtomicPtr<u8> {
        // SAFETY: every block starts with an atomic pointer word and lives as long as the
        // pool's chunks; callers only use the reference while the pool is alive.
        unsafe { &*(b as *const AtomicPtr<u8>) }
    }

    #[inline]
    fn state(&self, b: *mut u8) -> &AtomicU32 {
        // SAFETY: `state_off` is the offset of an AtomicU32 inside every block.
        unsafe { &*(b.add(self.state_off) as *const AtomicU32) }
    }

    /// A free block, state NEW. The guard is what makes this ABA-free: blocks are pushed back
    /// only after a grace period (`retire`), never while a popper may hold a stale head.
    fn pop(&self, _guard: &Guard) -> Option<NonNull<u8>> {
        loop {
            let h = self.free.load(Ordering::Acquire);
            if h.is_null() {
                return None;
            }
            let next = Self::link(h).load(Ordering::Acquire);
            if self
                .free
                .compare_exchange_weak(h, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let prev = self.state(h).swap(NEW, Ordering::AcqRel);
                assert_eq!(
                    prev, FREE,
                    "local storage: popped a block that was not free"
                );
                self.counts.popped.fetch_add(1, Ordering::Relaxed);
                return NonNull::new(h);
            }
        }
    }

    /// Map another chunk and put its blocks on the free list. mmap only (no malloc).
    fn grow(&self) -> bool {
        let want = self.next_chunk.load(Ordering::Relaxed);
        let len = want.max(CHUNK_HDR + self.block).next_multiple_of(PAGE);
        let Some(region) = Region::zeroed(len) else {
            return false;
        };
        let len = region.len();
        self.next_chunk
            .fetch_max((len * 2).min(MAX_CHUNK), Ordering::Relaxed);
        let base = region.as_ptr();
        let count = (len - CHUNK_HDR) / self.block;
        let first = base as usize + CHUNK_HDR;
        // SAFETY: `base` is a fresh, exclusively owned mapping of `len` >= CHUNK_HDR +
        // block bytes, page-aligned; the header fits in CHUNK_HDR bytes.
        unsafe {
            ptr::write(
                base as *mut ChunkHdr,
                ChunkHdr {
                    next: ptr::null_mut(),
                    region,
                    first,
                    count,
                },
            );
        }
        let blk = |i: usize| (first + i * self.block) as *mut u8;
        for i in 0..count - 1 {
            Self::link(blk(i)).store(blk(i + 1), Ordering::Relaxed);
        }
        let hdr = base as *mut ChunkHdr;
        let mut old = self.chunks.load(Ordering::Acquire);
        loop {
            // SAFETY: the header is ours until the CAS publishes it.
            unsafe { (*hdr).next = old };
            match self
                .chunks
                .compare_exchange_weak(old, hdr, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
        self.splice(blk(0), blk(count - 1));
        self.reserved.fetch_add(len as u64, Ordering::Relaxed);
        true
    }

    fn splice(&self, first: *mut u8, last: *mut u8) {
        let mut old = self.free.load(Ordering::Acquire);
        loop {
            Self::link(last).store(old, Ordering::Relaxed);
            match self
                .free
                .compare_exchange_weak(old, first, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(cur) => old = cur,
            }
        }
    }

    /// Put back a block popped earlier, now that no reader can hold it (grace period over)
    /// or it was never published. Catches double frees.
    fn push_now(&self, b: *mut u8) {
        let prev = self.state(b).swap(FREE, Ordering::AcqRel);
        assert!(
            prev == NEW || prev == DEAD,
            "local storage: block freed twice (state {prev})"
        );
        self.counts.returned.fetch_add(1, Ordering::Relaxed);
        self.splice(b, b);
    }

    /// Every block of every chunk (free or not).
    fn for_each_block(&self, mut f: impl FnMut(*mut u8)) {
        let mut c = self.chunks.load(Ordering::Acquire);
        while !c.is_null() {
            // SAFETY: published chunk headers are immutable and mapped until Drop.
            let (first, count, next) = unsafe { ((*c).first, (*c).count, (*c).next) };
            for i in 0..count {
                f((first + i * self.block) as *mut u8);
            }
            c = next;
        }
    }

    /// Blocks handed out and not yet returned.
    pub(crate) fn outstanding(&self) -> i64 {
        self.counts.popped.load(Ordering::Relaxed) as i64
            - self.counts.returned.load(Ordering::Relaxed) as i64
    }
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }
    pub(crate) fn block_size(&self) -> usize {
        self.block
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut c = *self.chunks.get_mut();
        while !c.is_null() {
            // SAFETY: `&mut self`: no other user; each header was written once by `grow`
            // and is read out once here, after which its mapping is unmapped.
            let hdr = unsafe { ptr::read(c) };
            c = hdr.next;
            drop(hdr.region);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Elements, storages, maps, domains

/// A storage element. The value's words follow the header.
#[repr(C)]
pub struct Elem {
    /// Next element of the owner's storage list; the pool's free link while free.
    next: AtomicPtr<Elem>,
    smap: AtomicPtr<Smap>,
    storage: AtomicPtr<Storage>,
    state: AtomicU32,
    _pad: u32,
}
const ELEM_HDR: usize = std::mem::size_of::<Elem>();
const ELEM_STATE_OFF: usize = std::mem::offset_of!(Elem, state);

impl Elem {
    /// The value's first byte (8-byte aligned).
    #[inline]
    pub fn value_ptr(e: NonNull<Elem>) -> NonNull<u8> {
        // SAFETY: the value follows the header inside the same block.
        unsafe { NonNull::new_unchecked((e.as_ptr() as *mut u8).add(ELEM_HDR)) }
    }
    #[inline]
    fn words<'a>(e: *mut Elem, n: usize) -> &'a [AtomicU64] {
        // SAFETY: a block holds the header plus `n` words; blocks are 16-aligned.
        unsafe { std::slice::from_raw_parts((e as *mut u8).add(ELEM_HDR) as *const AtomicU64, n) }
    }
}

/// The per-owner storage (bpf_local_storage).
#[repr(C)]
pub(crate) struct Storage {
    /// Element list head; the pool's free link while free.
    head: AtomicPtr<Elem>,
    cache: [AtomicPtr<Elem>; CACHE_SIZE],
    lock: SpinLock,
    dead: AtomicBool,
    state: AtomicU32,
    owner_id: AtomicU64,
    /// The owner's pointer word, for `Home::Word`; null for table homes.
    home_word: AtomicPtr<AtomicPtr<()>>,
    /// The table key, for `Home::Table`.
    key: AtomicUsize,
    /// The map this storage's memory is charged to (under `lock`; always the map of a
    /// linked element).
    charged_to: AtomicPtr<Smap>,
    /// The domain whose pool this came from; the storage holds one count on it.
    domain: AtomicPtr<DomainCore>,
}
const STORAGE_STATE_OFF: usize = std::mem::offset_of!(Storage, state);
/// Bytes one storage takes (its pool block).
pub const STORAGE_BYTES: usize = std::mem::size_of::<Storage>().next_multiple_of(16);

/// Counters of one map's elements; kept in their own `Arc` so tests can read them after the
/// map is gone.
#[derive(Default, Debug)]
pub struct ElemStats {
    /// Elements linked into a storage now.
    pub live: AtomicI64,
    /// Elements ever linked.
    pub created: AtomicU64,
    /// Elements unlinked (by delete, update, owner destroy or map free).
    pub unlinked: AtomicU64,
    /// Storages charged to this map now.
    pub charged_storages: AtomicI64,
    /// The element pool's counts.
    pub pool: Arc<PoolCounts>,
}

/// A snapshot of [`ElemStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElemCounts {
    pub live: i64,
    pub created: u64,
    pub unlinked: u64,
    pub charged_storages: i64,
    /// Blocks handed out and not yet back in the pool (live + waiting for the grace period).
    pub outstanding: i64,
}

impl ElemStats {
    pub fn snapshot(&self) -> ElemCounts {
        ElemCounts {
            live: self.live.load(Ordering::Relaxed),
            created: self.created.load(Ordering::Relaxed),
            unlinked: self.unlinked.load(Ordering::Relaxed),
            charged_storages: self.charged_storages.load(Ordering::Relaxed),
            outstanding: self.pool.popped.load(Ordering::Relaxed) as i64
                - self.pool.returned.load(Ordering::Relaxed) as i64,
        }
    }
}

/// One local-storage map's core.
pub struct Smap {
    value_size: usize,
    words: usize,
    cache_idx: usize,
    pool: Pool,
    cache_alloc: &'static CacheIdxAllocator,
    stats: Arc<ElemStats>,
}

impl Smap {
    pub fn cache_idx(&self) -> usize {
        self.cache_idx
    }
    pub fn value_size(&self) -> usize {
        self.value_size
    }
    pub fn stats(&self) -> &Arc<ElemStats> {
        &self.stats
    }
    /// Bytes of one element block.
    pub fn elem_bytes(&self) -> usize {
        self.pool.block_size()
    }
    /// Bytes mapped by this map's element pool.
    pub fn pool_bytes(&self) -> u64 {
        self.pool.reserved()
    }
    /// Bytes charged to this map: its structures, every chunk its pool mapped (live and free
    /// elements alike), and the storages charged to it.
    pub fn mem_usage(&self) -> u64 {
        std::mem::size_of::<Smap>() as u64
            + std::mem::size_of::<ElemStats>() as u64
            + self.pool.reserved()
            + self.stats.charged_storages.load(Ordering::Relaxed).max(0) as u64
                * STORAGE_BYTES as u64
    }
}

/// Counters of one owner domain.
#[derive(Default, Debug)]
pub struct DomainStats {
    /// Storages published in an owner now.
    pub storages_live: AtomicI64,
    pub storages_created: AtomicU64,
    /// Storages that died (last element gone, or owner destroyed).
    pub storages_killed: AtomicU64,
    /// Creates that lost the publish race and adopted the winner's storage.
    pub publish_races: AtomicU64,
    /// Owner destroys that found a storage.
    pub destroys: AtomicU64,
}

/// A snapshot of [`DomainStats`] plus the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainCounts {
    pub storages_live: i64,
    pub storages_created: u64,
    pub storages_killed: u64,
    pub publish_races: u64,
    pub destroys: u64,
    /// Storage blocks handed out and not back in the pool.
    pub storages_outstanding: i64,
    /// Bytes mapped for storages.
    pub storage_pool_bytes: u64,
    /// Entries in the owner table (table homes only).
    pub table_entries: u64,
}

/// The side table for owners without a pointer word: owner key → storage address.
pub type OwnerTable = papaya::HashMap<usize, usize, FastHash>;

/// A fast hasher for word keys (addresses): one multiply, high bits first.
#[derive(Clone, Copy, Default)]
pub struct FastHash;

pub struct FastHasher(u64);

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        // Addresses: low bits are alignment zeros; fold them away and spread.
        let x = (n as u64 ^ (n as u64 >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 32);
    }
}

/// One owner domain: where storages come from and, for table homes, the table.
pub struct DomainCore {
    pool: Pool,
    table: Option<OwnerTable>,
    stats: DomainStats,
}

impl DomainCore {
    pub fn new(with_table: bool) -> Arc<DomainCore> {
        Arc::new(DomainCore {
            pool: Pool::new(STORAGE_BYTES, STORAGE_STATE_OFF, 16 * PAGE),
            table: with_table.then(|| papaya::HashMap::builder().hasher(FastHash).build()),
            stats: DomainStats::default(),
        })
    }

    pub fn counts(&self) -> DomainCounts {
        let s = &self.stats;
        DomainCounts {
            storages_live: s.storages_live.load(Ordering::Relaxed),
            storages_created: s.storages_created.load(Ordering::Relaxed),
            storages_killed: s.storages_killed.load(Ordering::Relaxed),
            publish_races: s.publish_races.load(Ordering::Relaxed),
            destroys: s.destroys.load(Ordering::Relaxed),
            storages_outstanding: self.pool.outstanding(),
            storage_pool_bytes: self.pool.reserved(),
            table_entries: self.table.as_ref().map_or(0, |t| t.len() as u64),
        }
    }

    /// The storage at `home`, or null.
    #[inline]
    pub(crate) fn load(&self, home: Home<'_>) -> *mut Storage {
        match home {
            Home::Word(w) => w.load(Ordering::Acquire) as *mut Storage,
            Home::Table(k) => self.table_get(k),
        }
    }

    // Out of line: the table lookup is large, and inlined into the get path it would cost
    // every layout a heavier prologue.
    #[inline(never)]
    pub(crate) fn table_get(&self, k: usize) -> *mut Storage {
        let t = self.table.as_ref().expect("table home without a table");
        t.pin()
            .get(&k)
            .map_or(ptr::null_mut(), |v| *v as *mut Storage)
    }

    fn alloc_storage(&self, guard: &Guard) -> Option<*mut Storage> {
        loop {
            if let Some(b) = self.pool.pop(guard) {
                return Some(b.as_ptr() as *mut Storage);
            }
            if !self.pool.grow() {
                return None;
            }
        }
    }

    /// Install `s` at an empty `home`; false if another storage is there.
    fn publish(&self, home: Home<'_>, s: *mut Storage) -> bool {
        match home {
            Home::Word(w) => w
                .compare_exchange(
                    ptr::null_mut(),
                    s as *mut (),
                    Ordering::SeqCst,
                    Ordering::Acquire,
                )
                .is_ok(),
            Home::Table(k) => self
                .table
                .as_ref()
                .expect("table home without a table")
                .pin()
                .try_insert(k, s as usize)
                .is_ok(),
        }
    }
}

/// Where an owner keeps its storage pointer.
#[derive(Clone, Copy)]
pub enum Home<'a> {
    /// A pointer word in the owner or in something hanging off it. Its memory must outlive
    /// the storage: the owner's destroy hook runs [`destroy`] before the word goes.
    Word(&'a AtomicPtr<()>),
    /// An entry keyed by the owner's identity in the domain's table.
    Table(usize),
}

/// An owner as the core sees it.
pub trait Owner {
    /// Where its storage pointer is. `alloc`: the caller is about to create, so a home that
    /// is allocated on demand may be allocated now (`noalloc` forbids heap allocation).
    /// Ok(None): no home and none needed (lookups answer "no element").
    fn home(&self, alloc: bool, noalloc: bool) -> Result<Option<Home<'_>>, LsError>;
    /// Reported by dumps (the inode number).
    fn id(&self) -> u64;
    /// Being destroyed: no new storage may be attached.
    fn dying(&self) -> bool;
}

/// How an update treats an existing element.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Helper get with F_CREATE: an existing element is returned as is.
    GetCreate,
    /// BPF_ANY / BPF_NOEXIST / BPF_EXIST: the element is replaced.
    Update(u64),
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to move a block address into a deferred function; the block is owned
// by that function from then on.
unsafe impl<T> Send for SendPtr<T> {}

impl Smap {
    /// A map with `value_size`-byte values, taking a cache slot from `cache_alloc`.
    pub fn new(value_size: usize, cache_alloc: &'static CacheIdxAllocator) -> Arc<Smap> {
        let words = value_size.div_ceil(8);
        let block = ELEM_HDR + words * 8;
        let pool = Pool::new(block, ELEM_STATE_OFF, PAGE);
        let stats = Arc::new(ElemStats {
            pool: pool.counts.clone(),
            ..Default::default()
        });
        Arc::new(Smap {
            value_size,
            words,
            cache_idx: cache_alloc.get(),
            pool,
            cache_alloc,
            stats,
        })
    }

    #[inline]
    fn me(&self) -> *mut Smap {
        self as *const Smap as *mut Smap
    }

    /// Cache hit: the element in this map's slot of `s`, if it is this map's. `s` must have
    /// been loaded from a home under the caller's guard.
    #[inline(always)]
    pub(crate) fn cached(&self, s: *mut Storage) -> *mut Elem {
        // SAFETY: `s` was loaded from a home under the caller's guard: valid until it unpins.
        // Elements in cache slots are valid under the same guard.
        unsafe {
            let e = (*s).cache[self.cache_idx].load(Ordering::Acquire);
            if !e.is_null() && (*e).smap.load(Ordering::Relaxed) == self.me() {
                return e;
            }
        }
        ptr::null_mut()
    }

    /// This map's element in `s` by walking its list (lock-free).
    fn find(&self, s: *mut Storage) -> *mut Elem {
        // SAFETY: as in `cached`; unlinked elements keep their `next`, so a walk that raced
        // an unlink continues over valid (retired, not yet freed) elements.
        unsafe {
            let mut e = (*s).head.load(Ordering::Acquire);
            while !e.is_null() {
                if (*e).smap.load(Ordering::Relaxed) == self.me() {
                    return e;
                }
                e = (*e).next.load(Ordering::Acquire);
            }
        }
        ptr::null_mut()
    }

    /// Lookup in a storage: cache slot, then list; a list hit is cached (under the storage
    /// lock, only if still linked — caching an unlinked element would hand it out after it
    /// is freed), unless this call is re-entrant.
    #[inline]
    pub(crate) fn lookup_in(&self, s: *mut Storage) -> *mut Elem {
        let e = self.cached(s);
        if !e.is_null() {
            return e;
        }
        self.lookup_slow(s)
    }

    #[inline(never)]
    fn lookup_slow(&self, s: *mut Storage) -> *mut Elem {
        let e = self.find(s);
        if e.is_null() {
            return e;
        }
        if let Some(_busy) = Busy::try_enter() {
            // SAFETY: `s` and `e` valid under the caller's guard.
            unsafe {
                let st = &*s;
                st.lock.lock();
                if (*e).state.load(Ordering::Relaxed) == LIVE
                    && (*e).storage.load(Ordering::Relaxed) == s
                {
                    st.cache[self.cache_idx].store(e, Ordering::Release);
                }
                st.lock.unlock();
            }
        }
        e
    }

    /// Look up this map's element on `owner`.
    pub fn lookup(
        &self,
        dom: &DomainCore,
        owner: &dyn Owner,
        _guard: &Guard,
    ) -> Result<NonNull<Elem>, LsError> {
        let Some(home) = owner.home(false, true)? else {
            return Err(LsError::NoEntry);
        };
        let s = dom.load(home);
        if s.is_null() {
            return Err(LsError::NoEntry);
        }
        NonNull::new(self.lookup_in(s)).ok_or(LsError::NoEntry)
    }

    /// The helper's get: existing element, or (with F_CREATE) a new one initialized from
    /// `init` (zero-padded; None: zeroed).
    pub fn get(
        &self,
        dom: &Arc<DomainCore>,
        owner: &dyn Owner,
        init: Option<&[u8]>,
        flags: u64,
        guard: &Guard,
    ) -> Result<NonNull<Elem>, LsError> {
        match self.lookup(dom, owner, guard) {
            Err(LsError::NoEntry) if flags & BPF_LOCAL_STORAGE_GET_F_CREATE != 0 => self.upsert(
                dom,
                owner,
                init,
                Mode::GetCreate,
                flags & STORAGE_GET_F_NOALLOC != 0,
                guard,
            ),
            r => r,
        }
    }

    /// User-space update: BPF_ANY / BPF_NOEXIST / BPF_EXIST (validated by the caller).
    pub fn update(
        &self,
        dom: &Arc<DomainCore>,
        owner: &dyn Owner,
        value: &[u8],
        flags: u64,
        guard: &Guard,
    ) -> Result<NonNull<Elem>, LsError> {
        use crate::uapi::{BPF_EXIST, BPF_F_LOCK};
        // No value here carries a bpf_spin_lock (no BTF), so BPF_F_LOCK is EINVAL as in
        // Linux for such values; NOEXIST|EXIST and unknown bits are EINVAL.
        if flags & BPF_F_LOCK != 0 || flags > BPF_EXIST {
            return Err(LsError::Invalid);
        }
        self.upsert(dom, owner, Some(value), Mode::Update(flags), false, guard)
    }

    fn alloc_elem(&self, guard: &Guard) -> Result<*mut Elem, LsError> {
        loop {
            if let Some(b) = self.pool.pop(guard) {
                return Ok(b.as_ptr() as *mut Elem);
            }
            if !self.pool.grow() {
                return Err(LsError::NoMem);
            }
        }
    }

    fn upsert(
        &self,
        dom: &Arc<DomainCore>,
        owner: &dyn Owner,
        value: Option<&[u8]>,
        mode: Mode,
        noalloc: bool,
        guard: &Guard,
    ) -> Result<NonNull<Elem>, LsError> {
        let Some(_busy) = Busy::try_enter() else {
            return Err(LsError::Busy);
        };
        if owner.dying() {
            return Err(LsError::NoOwnerStorage);
        }
        let home = owner.home(true, noalloc)?.ok_or(LsError::NoOwnerStorage)?;
        let e = self.alloc_elem(guard)?;
        // SAFETY: `e` is a block we own (state NEW) of this map's pool.
        unsafe {
            (*e).smap.store(self.me(), Ordering::Relaxed);
            let w = Elem::words(e, self.words);
            for x in w {
                x.store(0, Ordering::Relaxed);
            }
            if let Some(v) = value {
                super::write_words(w, &v[..v.len().min(self.value_size)]);
            }
        }
        let mut spare: *mut Storage = ptr::null_mut();
        let mut used = false;
        let result = loop {
            let s = dom.load(home);
            if s.is_null() {
                if mode == Mode::Update(crate::uapi::BPF_EXIST) {
                    break Err(LsError::NoEntry);
                }
                let ns = if spare.is_null() {
                    match dom.alloc_storage(guard) {
                        Some(ns) => ns,
                        None => break Err(LsError::NoMem),
                    }
                } else {
                    std::mem::replace(&mut spare, ptr::null_mut())
                };
                // SAFETY: `ns` is a storage block we own (state NEW), unpublished.
                unsafe {
                    let st = &*ns;
                    for c in &st.cache {
                        c.store(ptr::null_mut(), Ordering::Relaxed);
                    }
                    st.cache[self.cache_idx].store(e, Ordering::Relaxed);
                    st.head.store(e, Ordering::Relaxed);
                    st.dead.store(false, Ordering::Relaxed);
                    st.owner_id.store(owner.id(), Ordering::Relaxed);
                    match home {
                        Home::Word(w) => {
                            st.home_word
                                .store(w as *const _ as *mut _, Ordering::Relaxed);
                            st.key.store(0, Ordering::Relaxed);
                        }
                        Home::Table(k) => {
                            st.home_word.store(ptr::null_mut(), Ordering::Relaxed);
                            st.key.store(k, Ordering::Relaxed);
                        }
                    }
                    st.charged_to.store(self.me(), Ordering::Relaxed);
                    st.domain
                        .store(Arc::as_ptr(dom) as *mut DomainCore, Ordering::Relaxed);
                    (*e).next.store(ptr::null_mut(), Ordering::Relaxed);
                    (*e).storage.store(ns, Ordering::Relaxed);
                    (*e).state.store(LIVE, Ordering::Release);
                    st.state.store(LIVE, Ordering::Release);
                }
                if dom.publish(home, ns) {
                    // The storage's count on its domain, dropped when it returns to the pool.
                    // SAFETY: `dom` is a live Arc.
                    unsafe { Arc::increment_strong_count(Arc::as_ptr(dom)) };
                    used = true;
                    self.stats.live.fetch_add(1, Ordering::Relaxed);
                    self.stats.created.fetch_add(1, Ordering::Relaxed);
                    self.stats.charged_storages.fetch_add(1, Ordering::Relaxed);
                    dom.stats.storages_live.fetch_add(1, Ordering::Relaxed);
                    dom.stats.storages_created.fetch_add(1, Ordering::Relaxed);
                    probe();
                    // Eviction sets its flag, fences, then looks at the home; we published,
                    // fence, then look at the flag: one of us sees the other.
                    fence(Ordering::SeqCst);
                    if owner.dying() {
                        destroy(dom, home, guard);
                        break Err(LsError::NoOwnerStorage);
                    }
                    // SAFETY: non-null block.
                    break Ok(unsafe { NonNull::new_unchecked(e) });
                }
                // Lost the race: adopt the winner's storage on the next turn.
                dom.stats.publish_races.fetch_add(1, Ordering::Relaxed);
                // SAFETY: never published; we still own both blocks.
                unsafe {
                    (*e).state.store(NEW, Ordering::Relaxed);
                    (*ns).state.store(NEW, Ordering::Relaxed);
                }
                spare = ns;
                continue;
            }
            // SAFETY: loaded from the home under our guard.
            let st = unsafe { &*s };
            st.lock.lock();
            if st.dead.load(Ordering::Relaxed) {
                // Its killer cleared the home before unlocking: reload.
                st.lock.unlock();
                continue;
            }
            probe();
            let old = self.find(s);
            let r = match mode {
                Mode::GetCreate if !old.is_null() => Some(Ok(old)),
                Mode::GetCreate => None,
                // check_flags: NOEXIST on a present element, EXIST on a missing one.
                Mode::Update(f) => match f & !crate::uapi::BPF_F_LOCK {
                    crate::uapi::BPF_NOEXIST if !old.is_null() => Some(Err(LsError::Exists)),
                    crate::uapi::BPF_EXIST if old.is_null() => Some(Err(LsError::NoEntry)),
                    _ => None,
                },
            };
            if let Some(r) = r {
                st.lock.unlock();
                // SAFETY: non-null when Ok.
                break r.map(|p| unsafe { NonNull::new_unchecked(p) });
            }
            // SAFETY: `e` is ours; `s` is locked and alive.
            unsafe {
                (*e).storage.store(s, Ordering::Relaxed);
                (*e).next
                    .store(st.head.load(Ordering::Relaxed), Ordering::Relaxed);
                (*e).state.store(LIVE, Ordering::Release);
                st.head.store(e, Ordering::Release);
                st.cache[self.cache_idx].store(e, Ordering::Release);
            }
            used = true;
            self.stats.live.fetch_add(1, Ordering::Relaxed);
            self.stats.created.fetch_add(1, Ordering::Relaxed);
            if !old.is_null() {
                // The new element is linked, so the storage cannot become empty here.
                let killed = unlink_locked(dom, st, old);
                debug_assert!(!killed);
            }
            st.lock.unlock();
            if !old.is_null() {
                // SAFETY: `old` was this map's (we hold the map), unlinked by us.
                unsafe { retire_elem(old, guard) };
            }
            // SAFETY: non-null block.
            break Ok(unsafe { NonNull::new_unchecked(e) });
        };
        // SAFETY: blocks popped by this call and never published go back through the
        // grace period (a concurrent popper may still hold them as a stale head).
        unsafe {
            if !used {
                retire_elem(e, guard);
            }
            if !spare.is_null() {
                retire_storage(spare, guard);
            }
        }
        result
    }

    /// Delete this map's element on `owner`.
    pub fn delete(
        &self,
        dom: &DomainCore,
        owner: &dyn Owner,
        guard: &Guard,
    ) -> Result<(), LsError> {
        let Some(_busy) = Busy::try_enter() else {
            return Err(LsError::Busy);
        };
        let Some(home) = owner.home(false, true)? else {
            return Err(LsError::NoEntry);
        };
        loop {
            let s = dom.load(home);
            if s.is_null() {
                return Err(LsError::NoEntry);
            }
            // SAFETY: loaded under our guard.
            let st = unsafe { &*s };
            st.lock.lock();
            if st.dead.load(Ordering::Relaxed) {
                st.lock.unlock();
                continue;
            }
            probe();
            let e = self.find(s);
            if e.is_null() {
                st.lock.unlock();
                return Err(LsError::NoEntry);
            }
            let killed = unlink_locked(dom, st, e);
            st.lock.unlock();
            // SAFETY: unlinked by us under the lock; we hold the map.
            unsafe {
                retire_elem(e, guard);
                if killed {
                    retire_storage(s, guard);
                }
            }
            return Ok(());
        }
    }

    /// Every element: (owner id, value), sorted by owner id. A snapshot: concurrent changes
    /// may or may not show.
    pub fn dump(&self) -> Vec<(u64, Vec<u8>)> {
        let guard = crossbeam_epoch::pin();
        let mut out = Vec::new();
        self.pool.for_each_block(|b| {
            let e = b as *mut Elem;
            // SAFETY: blocks are mapped for the pool's life; a LIVE element's storage is
            // valid under our guard (it is retired only after the element is unlinked).
            unsafe {
                if (*e).state.load(Ordering::Acquire) != LIVE {
                    return;
                }
                let s = (*e).storage.load(Ordering::Acquire);
                if s.is_null() {
                    return;
                }
                let id = (*s).owner_id.load(Ordering::Relaxed);
                let mut v = vec![0u8; self.value_size];
                super::read_words(Elem::words(e, self.words), &mut v);
                if (*e).state.load(Ordering::Acquire) == LIVE {
                    out.push((id, v));
                }
            }
        });
        drop(guard);
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Copy an element's value out.
    pub fn read_value(&self, e: NonNull<Elem>, out: &mut [u8]) {
        super::read_words(Elem::words(e.as_ptr(), self.words), out);
    }
}

/// Unlink `e` from `s` (lock held): list, cache slot, state, counters, charge. If it was the
/// last element the storage dies here (dead, home cleared) and `true` is returned; the
/// caller retires the element (and the storage) after unlocking.
fn unlink_locked(dom: &DomainCore, s: &Storage, e: *mut Elem) -> bool {
    // SAFETY: the lock is held; `e` is linked in `s`, so its map is alive (a map's free
    // unlinks every element before its memory can go).
    unsafe {
        let smap = (*e).smap.load(Ordering::Relaxed);
        let mut link = &s.head;
        loop {
            let cur = link.load(Ordering::Relaxed);
            assert!(!cur.is_null(), "local storage: element not in its storage");
            if cur == e {
                link.store((*e).next.load(Ordering::Relaxed), Ordering::Release);
                break;
            }
            link = &(*cur).next;
        }
        let idx = (*smap).cache_idx;
        let _ =
            s.cache[idx].compare_exchange(e, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
        (*e).state.store(DEAD, Ordering::Release);
        (&*smap).stats.live.fetch_sub(1, Ordering::Relaxed);
        (&*smap).stats.unlinked.fetch_add(1, Ordering::Relaxed);
        let head = s.head.load(Ordering::Relaxed);
        let charged = s.charged_to.load(Ordering::Relaxed);
        if head.is_null() {
            kill_locked(dom, s, charged);
            return true;
        }
        if charged == smap {
            // Keep the charge on a map that still has an element here.
            let to = (*head).smap.load(Ordering::Relaxed);
            (&*smap)
                .stats
                .charged_storages
                .fetch_sub(1, Ordering::Relaxed);
            (&*to)
                .stats
                .charged_storages
                .fetch_add(1, Ordering::Relaxed);
            s.charged_to.store(to, Ordering::Relaxed);
        }
        false
    }
}

/// The storage dies (lock held, list empty): dead flag, uncharge, home cleared. Exactly
/// once per storage, since only a holder of the lock that sees `dead == false` gets here.
fn kill_locked(dom: &DomainCore, s: &Storage, charged: *mut Smap) {
    s.dead.store(true, Ordering::Release);
    if !charged.is_null() {
        // SAFETY: the charge is always on a map with an element here until now (alive).
        unsafe {
            (&*charged)
                .stats
                .charged_storages
                .fetch_sub(1, Ordering::Relaxed)
        };
        s.charged_to.store(ptr::null_mut(), Ordering::Relaxed);
    }
    let me = s as *const Storage as *mut Storage;
    let w = s.home_word.load(Ordering::Relaxed);
    if !w.is_null() {
        // SAFETY: the owner's word outlives every storage published in it: the owner's
        // destroy hook runs before it goes and waits for this lock (see `destroy`).
        let ok = unsafe {
            (*w).compare_exchange(
                me as *mut (),
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
        };
        debug_assert!(ok.is_ok(), "local storage: home held another storage");
    } else if let Some(t) = dom.table.as_ref() {
        let k = s.key.load(Ordering::Relaxed);
        let _ = t.pin().remove_if(&k, |_, v| *v == me as usize);
    }
    dom.stats.storages_live.fetch_sub(1, Ordering::Relaxed);
    dom.stats.storages_killed.fetch_add(1, Ordering::Relaxed);
}

/// Return an unlinked (or never published) element to its map's pool after the grace
/// period. The pending return holds a count on the map's core.
///
/// # Safety
/// `e` is DEAD (unlinked by the caller) or NEW (popped by the caller, never published), and
/// its map's core is alive now (the caller holds the map, or found `e` linked under the
/// storage lock — a map's free cannot finish while it has a linked element).
unsafe fn retire_elem(e: *mut Elem, guard: &Guard) {
    let smap = (*e).smap.load(Ordering::Relaxed);
    Arc::increment_strong_count(smap);
    let (e, smap) = (SendPtr(e), SendPtr(smap));
    guard.defer(move || {
        let (e, smap) = (e, smap);
        // SAFETY: the count taken above keeps the map's core (and its pool) alive.
        unsafe {
            (*smap.0).pool.push_now(e.0 as *mut u8);
            Arc::decrement_strong_count(smap.0);
        }
    });
}

/// Return a dead (or never published) storage to its domain's pool after the grace period.
///
/// # Safety
/// `s` was killed by the caller, or popped by it and never published.
unsafe fn retire_storage(s: *mut Storage, guard: &Guard) {
    let published = (*s).state.load(Ordering::Relaxed) == LIVE;
    if published {
        (*s).state.store(DEAD, Ordering::Relaxed);
    }
    let dom = (*s).domain.load(Ordering::Relaxed);
    if !published {
        // Never published: no count on the domain was taken for it; the caller's domain is
        // alive for the duration of the deferred call only if we take one.
        Arc::increment_strong_count(dom);
    }
    let (s, dom) = (SendPtr(s), SendPtr(dom));
    guard.defer(move || {
        let (s, dom) = (s, dom);
        // SAFETY: the count held (published) or taken above keeps the domain alive.
        unsafe {
            (*dom.0).pool.push_now(s.0 as *mut u8);
            Arc::decrement_strong_count(dom.0);
        }
    });
}

/// The owner at `home` is going away: unlink every element of its storage from their maps,
/// unpublish and free the storage. Runs from the owner's destroy hook (inode eviction) and
/// from a create that found its owner dying after publishing. Exactly once per storage.
pub fn destroy(dom: &DomainCore, home: Home<'_>, guard: &Guard) {
    let _busy = Busy::enter_nested();
    fence(Ordering::SeqCst);
    loop {
        let s = dom.load(home);
        if s.is_null() {
            return;
        }
        // SAFETY: loaded under the guard.
        let st = unsafe { &*s };
        st.lock.lock();
        if st.dead.load(Ordering::Relaxed) {
            st.lock.unlock();
            continue;
        }
        dom.stats.destroys.fetch_add(1, Ordering::Relaxed);
        // SAFETY: lock held; every listed element is LIVE, so its map is alive.
        unsafe {
            let mut e = st.head.load(Ordering::Relaxed);
            while !e.is_null() {
                let next = (*e).next.load(Ordering::Relaxed);
                let smap = (*e).smap.load(Ordering::Relaxed);
                let _ = st.cache[(*smap).cache_idx].compare_exchange(
                    e,
                    ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                (*e).state.store(DEAD, Ordering::Release);
                (&*smap).stats.live.fetch_sub(1, Ordering::Relaxed);
                (&*smap).stats.unlinked.fetch_add(1, Ordering::Relaxed);
                retire_elem(e, guard);
                e = next;
            }
            st.head.store(ptr::null_mut(), Ordering::Release);
            kill_locked(dom, st, st.charged_to.load(Ordering::Relaxed));
        }
        st.lock.unlock();
        // SAFETY: killed by us.
        unsafe { retire_storage(s, guard) };
    }
}

/// Owning handle of an [`Smap`]: dropping it frees the map (unlinks every element it has on
/// any owner) and releases its memory after the grace period.
pub struct LocalStorageMap {
    smap: Option<Arc<Smap>>,
}

impl LocalStorageMap {
    pub fn new(value_size: usize, cache_alloc: &'static CacheIdxAllocator) -> LocalStorageMap {
        LocalStorageMap {
            smap: Some(Smap::new(value_size, cache_alloc)),
        }
    }
    #[inline]
    pub fn smap(&self) -> &Smap {
        self.smap.as_deref().expect("map freed")
    }
    pub fn smap_arc(&self) -> &Arc<Smap> {
        self.smap.as_ref().expect("map freed")
    }
}

impl Drop for LocalStorageMap {
    fn drop(&mut self) {
        let Some(smap) = self.smap.take() else {
            return;
        };
        smap.cache_alloc.free(smap.cache_idx);
        let _busy = Busy::enter_nested();
        let mut guard = crossbeam_epoch::pin();
        let mut n = 0u32;
        smap.pool.for_each_block(|b| {
            n = n.wrapping_add(1);
            if n.is_multiple_of(256) {
                guard.repin();
            }
            let e = b as *mut Elem;
            // SAFETY: a LIVE element's storage is valid under the guard; no new element
            // of this map can appear (nobody else holds the map).
            unsafe {
                if (*e).state.load(Ordering::Acquire) != LIVE {
                    return;
                }
                let s = (*e).storage.load(Ordering::Acquire);
                let st = &*s;
                st.lock.lock();
                if (*e).state.load(Ordering::Relaxed) != LIVE
                    || (*e).storage.load(Ordering::Relaxed) != s
                {
                    st.lock.unlock();
                    return;
                }
                let dom = &*st.domain.load(Ordering::Relaxed);
                let killed = unlink_locked(dom, st, e);
                st.lock.unlock();
                retire_elem(e, &guard);
                if killed {
                    retire_storage(s, &guard);
                }
            }
        });
        // The core goes after every reader that may hold one of its elements, and after every
        // pending element return (each holds a count).
        guard.defer(move || drop(smap));
        guard.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_idx_least_used() {
        let a = CacheIdxAllocator::new();
        let got: Vec<usize> = (0..18).map(|_| a.get()).collect();
        assert_eq!(&got[..16], &(0..16).collect::<Vec<_>>()[..]);
        assert_eq!(got[16], 0);
        assert_eq!(got[17], 1);
        a.free(5);
        a.free(5);
        assert_eq!(a.get(), 5);
        assert_eq!(a.usage()[5], 1);
    }

    #[test]
    fn pool_pop_grow_push() {
        let p = Pool::new(48, ELEM_STATE_OFF, PAGE);
        let g = crossbeam_epoch::pin();
        assert!(p.pop(&g).is_none());
        assert!(p.grow());
        let mut got = Vec::new();
        while let Some(b) = p.pop(&g) {
            got.push(b.as_ptr());
            if got.len() > 1000 {
                break;
            }
        }
        assert_eq!(got.len(), (PAGE - CHUNK_HDR) / 48);
        assert_eq!(p.outstanding(), got.len() as i64);
        for b in &got {
            p.push_now(*b);
        }
        assert_eq!(p.outstanding(), 0);
        let mut n = 0;
        p.for_each_block(|_| n += 1);
        assert_eq!(n, got.len());
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn pool_catches_double_free() {
        let p = Pool::new(48, ELEM_STATE_OFF, PAGE);
        let g = crossbeam_epoch::pin();
        p.grow();
        let b = p.pop(&g).unwrap().as_ptr();
        p.push_now(b);
        p.push_now(b);
    }

    #[test]
    fn layout_sizes() {
        assert_eq!(ELEM_HDR, 32);
        const { assert!(STORAGE_BYTES <= 224) };
    }
}
