//! BPF_MAP_TYPE_HASH, and the bucket table every hash flavour is built on.
//!
//! # The table
//!
//! A power-of-two number of buckets (see [`Table::new`]), each a singly linked list, as in
//! kernel/bpf/hashtab.c. An element is one fixed-size block from the table's slab
//! ([`super::mem::Slab`]): a header ([`Elem`]: next pointer, hash, a type-specific tag), the
//! key padded to 8 bytes, then the value as `AtomicU64` words (so programs get 8-byte-aligned
//! pointers and user-space copies are word-atomic, as in [`crate::value`]).
//!
//! Readers (lookups, get_next_key, programs) take no lock: they walk a bucket under a
//! crossbeam-epoch guard. Writers serialize on a striped mutex (one stripe per bucket, or per
//! group of buckets in large tables), and only ever publish a new element at a bucket's head
//! with a release store or unlink one; an unlinked element is handed to the epoch collector
//! and returned to the slab after every guard that might have seen it is gone.
//!
//! Grace-period rule: an element reachable from a bucket while a reader's guard is pinned
//! stays allocated and unchanged in key (its value may be written in place by programs or,
//! for per-CPU maps, updates) until that guard is dropped — also across the table's own drop,
//! since the slab lives until the last deferred free has run. Updating an existing key of a
//! plain hash map links a new element and unlinks the old one, so a program that took the old
//! value's address (`lookup_ptr`) keeps valid memory until its guard goes; it simply no
//! longer sees later updates (as with the kernel's non-preallocated maps).
//!
//! Reclamation follows the epoch: a thread that keeps a guard pinned indefinitely (a program
//! that never finishes its run, as a stuck RCU reader in the kernel) holds back every
//! retired element, and the slab grows with each replacing update until it unpins.
//!
//! The hash is the kernel's jhash with a random seed per map (`BPF_F_ZERO_SEED`: seed 0). A
//! zero-seed map has the kernel's bucket count too, so with the same operations it lists its
//! keys in exactly the kernel's get_next_key order (the kernel differential test checks it).
//!
//! Divergences from the kernel, invisible through bpf(2): elements are taken from the slab on
//! demand whether or not the map is preallocated (the kernel differs in when memory is taken,
//! and reuses freed preallocated elements without waiting for readers), random-seed maps
//! have twice the kernel's bucket count, and `max_entries` is enforced with one atomic
//! counter for every map size.

use super::mem::{Region, Slab};
use super::{read_words, round8, write_words};
use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use bpfvfs_vfs::{Errno, Result};
use crossbeam_epoch::Guard;
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::Hash,
    check,
    alloc,
};

/// HTAB_CREATE_FLAG_MASK.
pub(crate) const HTAB_CREATE_FLAG_MASK: u32 = BPF_F_NO_PREALLOC
    | BPF_F_NO_COMMON_LRU
    | BPF_F_NUMA_NODE
    | BPF_F_RDONLY
    | BPF_F_WRONLY
    | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG
    | BPF_F_ZERO_SEED;

/// sizeof(struct htab_elem) on 64-bit kernels: part of the kernel's E2BIG bound.
const KERNEL_HTAB_ELEM_SIZE: u64 = 48;
/// PCPU_MIN_UNIT_SIZE: the largest per-CPU value.
pub(crate) const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;
/// Bucket-count cap. The kernel sizes the table to max_entries (up to 2^27); past 2^24
/// buckets (128 MiB of heads) we let chains grow instead.
pub const MAX_BUCKETS: u32 = 1 << 24;
const MAX_LOCK_STRIPES: usize = 1024;

/// `max_entries` as the kernel's htab_map_alloc adjusts it: with BPF_F_NO_COMMON_LRU every
/// CPU's LRU list gets the same share, so it is rounded up to a multiple of the CPU count
/// (down when that would overflow u32).
pub(crate) fn effective_max_entries(def: &MapDef) -> u64 {
    let m = def.max_entries as u64;
    if def.map_flags & BPF_F_NO_COMMON_LRU == 0 {
        return m;
    }
    let n = super::nr_cpus() as u64;
    let up = m.div_ceil(n) * n;
    if up > u32::MAX as u64 {
        m / n * n
    } else {
        up
    }
}

/// htab_map_alloc_check, then the size checks of htab_map_alloc, for all four hash flavours
/// (the same function in the kernel). BPF_F_ZERO_SEED's CAP_SYS_ADMIN check is the caller's.
pub(crate) fn htab_check(def: &MapDef) -> Result<()> {
    let kind = def.kind();
    let percpu = matches!(kind, Some(MapType::PercpuHash | MapType::LruPercpuHash));
    let lru = matches!(kind, Some(MapType::LruHash | MapType::LruPercpuHash));
    let percpu_lru = def.map_flags & BPF_F_NO_COMMON_LRU != 0;
    let prealloc = def.map_flags & BPF_F_NO_PREALLOC == 0;
    let numa = def.map_flags & BPF_F_NUMA_NODE != 0;

    if def.map_flags & !HTAB_CREATE_FLAG_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    if !lru && percpu_lru {
        return Err(Errno::EINVAL);
    }
    if lru && !prealloc {
        return Err(super::ENOTSUPP);
    }
    if numa && (percpu || percpu_lru) {
        return Err(Errno::EINVAL);
    }
    if def.max_entries == 0 || def.key_size == 0 || def.value_size == 0 {
        return Err(Errno::EINVAL);
    }
    if def.key_size as u64 + def.value_size as u64 >= KMALLOC_MAX_SIZE - KERNEL_HTAB_ELEM_SIZE {
        return Err(Errno::E2BIG);
    }
    if percpu && round8(def.value_size as usize) as u64 > PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    // htab_map_alloc: roundup_pow_of_two must not overflow, nor n_buckets * sizeof(bucket).
    let max = effective_max_entries(def);
    if max > 1 << 31 {
        return Err(Errno::E2BIG);
    }
    if max.next_power_of_two() > u32::MAX as u64 / 16 {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

fn check(def: &MapDef) -> Result<()> {
    htab_check(def)
}

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(HashMap::new(def)?))
}

/// The kernel's check_flags: BPF_NOEXIST on a present key, BPF_EXIST on a missing one.
pub(crate) fn check_flags(exists: bool, flags: u64) -> Result<()> {
    match flags & !BPF_F_LOCK {
        BPF_NOEXIST if exists => Err(Errno::EEXIST),
        BPF_EXIST if !exists => Err(Errno::ENOENT),
        f if f > BPF_EXIST => Err(Errno::EINVAL),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// jhash (include/linux/jhash.h)

const JHASH_INITVAL: u32 = 0xdead_beef;

#[inline(always)]
fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn jhash_final(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

#[inline(always)]
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The kernel's `jhash(key, len, initval)` on a little-endian CPU. For lengths that are a
/// multiple of 4 this equals `jhash2` over the key's u32 words, which is what htab_map_hash
/// uses for them, so one function covers both.
#[inline]
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let len = key.len() as u32;
    let mut a = JHASH_INITVAL.wrapping_add(len).wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(le32(&k[0..]));
        b = b.wrapping_add(le32(&k[4..]));
        c = c.wrapping_add(le32(&k[8..]));
        jhash_mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // The last 1..=12 bytes, zero-padded: adding the missing bytes as zero is what the
    // kernel's fall-through switch does.
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(le32(&tail[0..]));
    b = b.wrapping_add(le32(&tail[4..]));
    c = c.wrapping_add(le32(&tail[8..]));
    jhash_final(a, b, c)
}

fn random_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// Key comparison inlined for short keys (a memcmp call costs more than the compare).
#[inline(always)]
fn key_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4 => le32(a) == le32(b),
        8 => {
            u64::from_le_bytes(a.try_into().expect("8"))
                == u64::from_le_bytes(b.try_into().expect("8"))
        }
        n if n <= 16 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// Elements

/// Element header. The allocation continues with the key (padded to 8 bytes) and then the
/// value words; see [`Table::new_elem`].
#[repr(C)]
pub(crate) struct Elem {
    next: AtomicPtr<Elem>,
    hash: u32,
    /// Type-specific tag, immutable once published (the LRU slot number).
    aux: u32,
}

const HDR: usize = std::mem::size_of::<Elem>();

/// A published element, valid for `'g` (the reader's guard, and the table's borrow).
///
/// Holds the raw pointer (whose provenance covers the whole allocation), not a reference to
/// the header, so that key and value can be reached from it.
#[derive(Clone, Copy)]
pub(crate) struct ElemRef<'g> {
    p: NonNull<Elem>,
    _life: PhantomData<&'g Elem>,
}

impl<'g> ElemRef<'g> {
    #[inline(always)]
    fn hdr(self) -> &'g Elem {
        // SAFETY: an ElemRef is only made from a pointer loaded from a bucket or `next` link
        // while a guard is pinned (or while holding the bucket lock, which also pins), or from
        // a `NewElem` we own; by the grace-period rule (module comment) the allocation lives
        // for 'g, and the header is never written after publication except through atomics.
        unsafe { self.p.as_ref() }
    }
    #[inline]
    pub(crate) fn aux(self) -> u32 {
        self.hdr().aux
    }
    #[inline]
    pub(crate) fn as_ptr(self) -> *mut Elem {
        self.p.as_ptr()
    }
}

#[inline(always)]
fn load<'g>(link: &AtomicPtr<Elem>, _guard: &'g Guard) -> Option<ElemRef<'g>> {
    NonNull::new(link.load(Ordering::Acquire)).map(|p| ElemRef {
        p,
        _life: PhantomData,
    })
}

/// A new, not yet published element. Returned to the slab on drop unless published with
/// [`Bucket::push_head`].
pub(crate) struct NewElem<'t> {
    p: NonNull<Elem>,
    slab: &'t Slab,
}

impl NewElem<'_> {
    pub(crate) fn elem(&self) -> ElemRef<'_> {
        ElemRef {
            p: self.p,
            _life: PhantomData,
        }
    }
}

impl Drop for NewElem<'_> {
    fn drop(&mut self) {
        // Never published (push consumes the NewElem without running this): nobody else can
        // reach the block.
        self.slab.free(self.p.cast());
    }
}

// ---------------------------------------------------------------------------------------
// The table

pub(crate) struct Table {
    /// `n_buckets` AtomicPtr heads (zeroed memory is null pointers).
    buckets: Region,
    n_buckets: usize,
    mask: u32,
    lock_mask: u32,
    seed: u32,
    key_size: usize,
    val_off: usize,
    value_words: usize,
    elem_bytes: usize,
    /// Writer locks and element memory, shared with the epoch collector's deferred frees
    /// (which may run after the table is gone).
    shared: Arc<Shared>,
    /// Retired elements a stripe collects before handing them to the collector at once.
    retire_batch: usize,
    count: AtomicU32,
}

/// What a bucket stripe's lock guards besides the bucket lists: elements unlinked under it
/// and not yet handed to the epoch collector, and blocks whose grace period has passed,
/// ready for reuse by this stripe's writers. Batching the retirement, and reusing blocks
/// without going back to the slab, keeps an update at one lock.
#[derive(Default)]
struct StripeState {
    retired: Vec<usize>,
    cache: Vec<usize>,
}

struct Shared {
    slab: Slab,
    stripes: Box<[Mutex<StripeState>]>,
}

impl Table {
    /// A table for `max_entries` elements whose values take `value_bytes` (a multiple of 8).
    ///
    /// Bucket count: with `zero_seed`, the kernel's (roundup_pow_of_two(max_entries)), so a
    /// zero-seed map walks its keys in exactly the kernel's order; otherwise twice that
    /// (the same memory as the kernel's 16-byte buckets, with half the chain length), since
    /// a random seed makes the order unobservable anyway. At most [`MAX_BUCKETS`].
    pub(crate) fn new(
        key_size: usize,
        value_bytes: usize,
        max_entries: u64,
        zero_seed: bool,
    ) -> Result<Table> {
        debug_assert!(value_bytes & 7 == 0);
        let n = (max_entries.max(1).next_power_of_two() << u32::from(!zero_seed))
            .min(MAX_BUCKETS as u64) as usize;
        let buckets =
            Region::zeroed(n * std::mem::size_of::<AtomicPtr<Elem>>()).ok_or(Errno::ENOMEM)?;
        let stripes = n.min(MAX_LOCK_STRIPES);
        let val_off = HDR + round8(key_size);
        let elem_bytes = val_off + value_bytes;
        let slab = Slab::new(elem_bytes, max_entries);
        // At most ~2 KiB of retired elements per stripe wait for their batch.
        let retire_batch = (2048 / slab.block_size()).clamp(1, 32);
        Ok(Table {
            buckets,
            n_buckets: n,
            mask: (n - 1) as u32,
            lock_mask: (stripes - 1) as u32,
            seed: if zero_seed { 0 } else { random_seed() },
            key_size,
            val_off,
            value_words: value_bytes / 8,
            elem_bytes,
            shared: Arc::new(Shared {
                slab,
                stripes: (0..stripes).map(|_| Mutex::default()).collect(),
            }),
            retire_batch,
            count: AtomicU32::new(0),
        })
    }

    #[inline(always)]
    fn buckets(&self) -> &[AtomicPtr<Elem>] {
        // SAFETY: the region holds at least n_buckets pointer-sized, page-aligned slots,
        // zero-filled (null) at creation and only ever accessed as AtomicPtr; it lives as long
        // as the table.
        unsafe {
            std::slice::from_raw_parts(
                self.buckets.as_ptr() as *const AtomicPtr<Elem>,
                self.n_buckets,
            )
        }
    }

    /// htab_map_hash.
    #[inline(always)]
    pub(crate) fn hash(&self, key: &[u8]) -> u32 {
        jhash(key, self.seed)
    }

    pub(crate) fn key_size(&self) -> usize {
        self.key_size
    }

    pub(crate) fn n_buckets(&self) -> usize {
        self.n_buckets
    }

    #[inline(always)]
    pub(crate) fn key_of<'g>(&self, e: ElemRef<'g>) -> &'g [u8] {
        // SAFETY: `e` heads a slab block of at least `elem_bytes` (all elements of a table
        // share the size); bytes HDR..HDR+key_size hold the key, written in `new_elem` before
        // publication and never again.
        unsafe { std::slice::from_raw_parts((e.p.as_ptr() as *const u8).add(HDR), self.key_size) }
    }

    #[inline(always)]
    pub(crate) fn value_of<'g>(&self, e: ElemRef<'g>) -> &'g [AtomicU64] {
        // SAFETY: as in `key_of`; the value words start at `val_off` (a multiple of 8 in a
        // 16-aligned block) and are only ever accessed atomically, or by programs through
        // `value_ptr`.
        unsafe {
            std::slice::from_raw_parts(
                (e.p.as_ptr() as *const u8).add(self.val_off) as *const AtomicU64,
                self.value_words,
            )
        }
    }

    /// The address programs use for the value (8-byte aligned).
    #[inline(always)]
    pub(crate) fn value_ptr(&self, e: ElemRef<'_>) -> *mut u8 {
        self.value_of(e).as_ptr() as *mut u8
    }

    /// Lock-free lookup; the element lives as long as the guard.
    #[inline]
    pub(crate) fn find<'g>(&'g self, key: &[u8], guard: &'g Guard) -> Option<ElemRef<'g>> {
        self.find_hashed(key, self.hash(key), guard)
    }

    #[inline]
    pub(crate) fn find_hashed<'g>(
        &'g self,
        key: &[u8],
        hash: u32,
        guard: &'g Guard,
    ) -> Option<ElemRef<'g>> {
        let mut cur = load(&self.buckets()[(hash & self.mask) as usize], guard);
        while let Some(e) = cur {
            let h = e.hdr();
            if h.hash == hash && key_eq(self.key_of(e), key) {
                return Some(e);
            }
            cur = load(&h.next, guard);
        }
        None
    }

    /// Lock the bucket `hash` falls in, for writing.
    pub(crate) fn lock(&self, hash: u32) -> Bucket<'_> {
        let stripe = (hash & self.lock_mask) as usize;
        Bucket {
            t: self,
            head: &self.buckets()[(hash & self.mask) as usize],
            stripe,
            state: RefCell::new(
                self.shared.stripes[stripe]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            ),
        }
    }

    /// Reserve room for one more element: false (E2BIG) when `max` are present.
    pub(crate) fn try_inc_count(&self, max: u32) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                (c < max).then_some(c + 1)
            })
            .is_ok()
    }
    pub(crate) fn inc_count(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }
    pub(crate) fn dec_count(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// htab_map_delete_elem: unlink `key`'s element under its bucket lock, else ENOENT.
    pub(crate) fn delete(&self, key: &[u8]) -> Result<()> {
        let hash = self.hash(key);
        let guard = crossbeam_epoch::pin();
        let b = self.lock(hash);
        let e = b.find(key, hash, &guard).ok_or(Errno::ENOENT)?.as_ptr();
        b.remove(e, &guard);
        self.dec_count();
        Ok(())
    }

    /// htab_map_get_next_key: the next element in `key`'s bucket, else the first element of
    /// the following non-empty bucket; a missing (or no) key restarts from bucket 0.
    pub(crate) fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()> {
        let guard = crossbeam_epoch::pin();
        let mut start = 0usize;
        if let Some(k) = key {
            let hash = self.hash(k);
            if let Some(e) = self.find_hashed(k, hash, &guard) {
                if let Some(n) = load(&e.hdr().next, &guard) {
                    next.copy_from_slice(self.key_of(n));
                    return Ok(());
                }
                start = (hash & self.mask) as usize + 1;
            }
        }
        for b in &self.buckets()[start..] {
            if let Some(e) = load(b, &guard) {
                next.copy_from_slice(self.key_of(e));
                return Ok(());
            }
        }
        Err(Errno::ENOENT)
    }

    /// Bytes of the table: buckets, locks, and the element slab (elements in use, freed
    /// ones awaiting reuse, and the unused rest of the last chunk).
    pub(crate) fn mem_usage(&self) -> u64 {
        (self.n_buckets * std::mem::size_of::<AtomicPtr<Elem>>()
            + self.shared.stripes.len() * std::mem::size_of::<Mutex<StripeState>>()
            + std::mem::size_of::<Table>()) as u64
            + self.shared.slab.reserved()
    }
}

// Dropping a table needs no walk: elements live in the slab, which goes with the last
// reference (the table's, or a pending deferred free's).

/// A locked bucket: the only way to change a bucket's list.
pub(crate) struct Bucket<'t> {
    t: &'t Table,
    head: &'t AtomicPtr<Elem>,
    stripe: usize,
    state: RefCell<MutexGuard<'t, StripeState>>,
}

impl<'t> Bucket<'t> {
    /// A zeroed element for `key`, not yet published: a block this stripe got back from
    /// the collector, else one from the slab.
    pub(crate) fn new_elem(&self, key: &[u8], hash: u32, aux: u32) -> Result<NewElem<'t>> {
        let t = self.t;
        debug_assert_eq!(key.len(), t.key_size);
        let cached = self.state.borrow_mut().cache.pop();
        let p = match cached {
            Some(a) => NonNull::new(a as *mut u8),
            None => t.shared.slab.alloc(),
        }
        .ok_or(Errno::ENOMEM)?;
        let e: NonNull<Elem> = p.cast();
        // SAFETY: `p` is a slab block of at least `elem_bytes`, 16-aligned, that nobody else
        // uses (fresh, or retired and past its grace period); we zero it and write the header
        // and the key.
        unsafe {
            std::ptr::write_bytes(p.as_ptr(), 0, t.elem_bytes);
            e.as_ptr().write(Elem {
                next: AtomicPtr::new(std::ptr::null_mut()),
                hash,
                aux,
            });
            std::ptr::copy_nonoverlapping(key.as_ptr(), p.as_ptr().add(HDR), t.key_size);
        }
        Ok(NewElem {
            p: e,
            slab: &t.shared.slab,
        })
    }

    /// The element for `key` (with its precomputed `hash`).
    pub(crate) fn find<'g>(
        &'g self,
        key: &[u8],
        hash: u32,
        guard: &'g Guard,
    ) -> Option<ElemRef<'g>> {
        self.t.find_hashed(key, hash, guard)
    }

    /// The first element of this bucket matching `pred`.
    pub(crate) fn find_by<'g>(
        &'g self,
        guard: &'g Guard,
        mut pred: impl FnMut(ElemRef<'g>) -> bool,
    ) -> Option<ElemRef<'g>> {
        let mut cur = load(self.head, guard);
        while let Some(e) = cur {
            if pred(e) {
                return Some(e);
            }
            cur = load(&e.hdr().next, guard);
        }
        None
    }

    /// Publish `e` at the head of the bucket (so concurrent readers find it before an older
    /// element with the same key).
    pub(crate) fn push_head(&self, e: NewElem<'_>) {
        let p = e.p.as_ptr();
        std::mem::forget(e);
        let head = self.head.load(Ordering::Relaxed);
        // SAFETY: `p` is still private to us (not yet published).
        unsafe { (*p).next.store(head, Ordering::Relaxed) };
        // Release: the header, key and value written before are visible to any reader that
        // loads `p` with Acquire.
        self.head.store(p, Ordering::Release);
    }

    /// Unlink `target` if it is in this bucket and free it after the grace period. Returns
    /// whether it was found. Only pointer identity is compared, so a stale pointer is harmless.
    pub(crate) fn remove(&self, target: *mut Elem, guard: &Guard) -> bool {
        let mut link: &AtomicPtr<Elem> = self.head;
        loop {
            let cur = link.load(Ordering::Acquire);
            if cur.is_null() {
                return false;
            }
            // SAFETY: reachable from the bucket and we hold its lock (so no one else unlinks
            // anything here) and a guard: valid, as in `ElemRef::hdr`.
            let next_link = unsafe { &(*cur).next };
            if cur == target {
                link.store(next_link.load(Ordering::Acquire), Ordering::Release);
                // `cur` is now unreachable for new readers; readers that already hold it are
                // pinned. It is retired with this stripe's batch: when the batch is full, the
                // collector gets it, and returns the blocks to this stripe's cache only after
                // every guard pinned now is gone. The closure owns a reference to the shared
                // part (not the table), so it may run after the table is dropped.
                let mut st = self.state.borrow_mut();
                st.retired.push(cur as usize);
                if st.retired.len() >= self.t.retire_batch {
                    let batch =
                        std::mem::replace(&mut st.retired, Vec::with_capacity(self.t.retire_batch));
                    let shared = self.t.shared.clone();
                    let stripe = self.stripe;
                    guard.defer(move || {
                        shared.stripes[stripe]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .cache
                            .extend_from_slice(&batch);
                    });
                }
                return true;
            }
            link = next_link;
        }
    }
}

// ---------------------------------------------------------------------------------------
// BPF_MAP_TYPE_HASH

pub struct HashMap {
    t: Table,
    max_entries: u32,
    value_size: usize,
}

impl HashMap {
    fn new(def: &MapDef) -> Result<HashMap> {
        Ok(HashMap {
            t: Table::new(
                def.key_size as usize,
                round8(def.value_size as usize),
                def.max_entries as u64,
                def.map_flags & BPF_F_ZERO_SEED != 0,
            )?,
            max_entries: def.max_entries,
            value_size: def.value_size as usize,
        })
    }

    /// Buckets in the table (a power of two).
    pub fn n_buckets(&self) -> usize {
        self.t.n_buckets()
    }
}

impl MapOps for HashMap {
    #[inline]
    fn lookup(&self, key: &[u8], out: &mut [u8]) -> Result<()> {
        let guard = crossbeam_epoch::pin();
        let e = self.t.find(key, &guard).ok_or(Errno::ENOENT)?;
        read_words(self.t.value_of(e), &mut out[..self.value_size]);
        Ok(())
    }

    /// htab_map_update_elem: under the bucket lock, flags are checked, a new key must fit
    /// under max_entries (E2BIG), the new element is built, published at the bucket head,
    /// and the old one unlinked.
    fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        let hash = self.t.hash(key);
        let guard = crossbeam_epoch::pin();
        let b = self.t.lock(hash);
        let old = b.find(key, hash, &guard).map(ElemRef::as_ptr);
        check_flags(old.is_some(), flags)?;
        if old.is_none() && !self.t.try_inc_count(self.max_entries) {
            return Err(Errno::E2BIG);
        }
        let new = match b.new_elem(key, hash, 0) {
            Ok(n) => n,
            Err(e) => {
                if old.is_none() {
                    self.t.dec_count();
                }
                return Err(e);
            }
        };
        write_words(self.t.value_of(new.elem()), &value[..self.value_size]);
        b.push_head(new);
        if let Some(o) = old {
            b.remove(o, &guard);
        }
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.t.delete(key)
    }

    fn get_next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<()> {
        self.t.get_next_key(key, next)
    }

    fn mem_usage(&self) -> u64 {
        self.t.mem_usage() + std::mem::size_of::<Self>() as u64
    }

    fn elem_count(&self) -> u64 {
        self.t.count() as u64
    }

    #[inline]
    fn lookup_ptr(&self, key: &[u8], guard: &Guard) -> Option<*mut u8> {
        let e = self.t.find(key, guard)?;
        Some(self.t.value_ptr(e))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_known_values() {
        // Empty input returns the initial state unchanged.
        assert_eq!(jhash(&[], 0), JHASH_INITVAL);
        // Word-multiple lengths equal jhash2 over the words (here by construction); the
        // differential test checks real values against the kernel's bucket order.
        let k = 0x1234_5678u32.to_le_bytes();
        assert_eq!(jhash(&k, 7), jhash(&k, 7));
        assert_ne!(jhash(&k, 0), jhash(&k, 1));
    }

    #[test]
    fn table_basic() {
        let def = MapDef::new(MapType::Hash, 4, 8, 4).with_flags(BPF_F_ZERO_SEED);
        let m = HashMap::new(&def).unwrap();
        assert_eq!(m.n_buckets(), 4);
        for i in 0..4u32 {
            m.update(&i.to_ne_bytes(), &(i as u64).to_ne_bytes(), BPF_ANY)
                .unwrap();
        }
        assert_eq!(
            m.update(&9u32.to_ne_bytes(), &[0; 8], BPF_ANY),
            Err(Errno::E2BIG)
        );
        let mut out = [0u8; 8];
        m.lookup(&2u32.to_ne_bytes(), &mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out), 2);
        m.delete(&2u32.to_ne_bytes()).unwrap();
        assert_eq!(m.elem_count(), 3);
        assert_eq!(m.lookup(&2u32.to_ne_bytes(), &mut out), Err(Errno::ENOENT));
    }
}
