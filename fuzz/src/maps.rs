//! Memory for the `verifier` target's runs: buffers with unmapped guard bytes on both sides,
//! and a [`MapAccess`] over them that behaves like the kernel's array, hash and ring-buffer
//! maps as far as memory is concerned (value sizes, entry counts, read-only maps).
//!
//! The point of the guards is the oracle: every buffer the program may touch is registered
//! as a region of exactly its size, and nothing around it is, so an access the verifier
//! wrongly allowed past the end of a value or context lands in unregistered memory and the
//! checked interpreter reports it, instead of silently hitting a neighbouring value.

use crate::Rng;
use bpfvfs_ebpf::memory::{Region, RegionKind};
use bpfvfs_ebpf::verifier::{MapInfo, MapType};
use bpfvfs_ebpf::{MapAccess, MemRef};
use std::cell::RefCell;
use std::ptr::NonNull;

/// Unregistered bytes on each side of a buffer.
pub const GUARD: usize = 64;
const GUARD_WORDS: usize = GUARD / 8;

/// What the guard bytes hold; a run that changed them wrote outside its regions.
const GUARD_BYTE: u8 = 0xa5;

/// Handle of the map at index `i` of the verifier's map list (what pseudo `lddw`s resolve
/// to); non-zero and far from small integers, so a scalar is never mistaken for a map.
pub const HANDLE_BASE: u64 = 0x6d61_7000;

/// A heap buffer of `len` usable bytes, 8-byte aligned, between two guard areas. Only ever
/// accessed through raw pointers (the program writes it behind Rust's back), so it holds a
/// raw allocation rather than a `Box`, whose uniqueness a program's writes would violate.
pub struct GuardedBuf {
    base: NonNull<u64>,
    words: usize,
    len: usize,
}

impl GuardedBuf {
    pub fn new(len: usize) -> GuardedBuf {
        let words = 2 * GUARD_WORDS + len.div_ceil(8);
        let fill = u64::from_ne_bytes([GUARD_BYTE; 8]);
        let raw = Box::into_raw(vec![fill; words].into_boxed_slice());
        // SAFETY: `Box::into_raw` never returns null.
        let base = unsafe { NonNull::new_unchecked(raw.cast::<u64>()) };
        let b = GuardedBuf { base, words, len };
        b.write(0, &vec![0; len]);
        b
    }

    /// First usable byte, with its provenance exposed (programs see plain addresses).
    pub fn ptr(&self) -> *mut u8 {
        // SAFETY: GUARD bytes into an allocation of at least 2 * GUARD bytes.
        let p = unsafe { self.base.as_ptr().cast::<u8>().add(GUARD) };
        let _ = p.expose_provenance();
        p
    }

    pub fn addr(&self) -> u64 {
        self.ptr() as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` into the buffer at `off` (clipped to the buffer).
    pub fn write(&self, off: usize, data: &[u8]) {
        let n = data.len().min(self.len.saturating_sub(off));
        // SAFETY: `off..off+n` is inside the usable bytes; `data` is a separate allocation.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr().add(off), n) };
    }

    /// A copy of the usable bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        // SAFETY: the usable bytes are initialized and inside the allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(), v.as_mut_ptr(), self.len) };
        v
    }

    /// Are the guards (and the padding up to the next word) untouched?
    pub fn guards_intact(&self) -> bool {
        let total = self.words * 8;
        let base = self.base.as_ptr().cast::<u8>();
        (0..GUARD).chain(GUARD + self.len..total).all(|i| {
            // SAFETY: `i < total`, inside the allocation, initialized.
            unsafe { base.add(i).read() == GUARD_BYTE }
        })
    }

    /// The buffer as a region the program may access.
    pub fn region(&self, kind: RegionKind, writable: bool) -> Region<'_> {
        // SAFETY: the usable bytes stay allocated as long as `self`, which the region borrows;
        // no Rust reference to them exists (all accesses here go through raw pointers).
        unsafe { Region::from_raw_parts(kind, self.ptr(), self.len, writable) }
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.words);
        // SAFETY: allocated by `Box::into_raw` in `new` with exactly this length; dropped once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Key = u32 index below max_entries.
    Array,
    /// Up to max_entries keys; `lru` evicts instead of failing when full.
    Hash {
        lru: bool,
    },
    RingBuf,
    /// Types whose helpers are not in `Helpers::standard` (local storage): never looked up.
    Opaque,
}

fn shape(t: MapType) -> Shape {
    match t {
        MapType::ARRAY | MapType::PERCPU_ARRAY => Shape::Array,
        MapType::HASH | MapType::PERCPU_HASH => Shape::Hash { lru: false },
        MapType::LRU_HASH | MapType::LRU_PERCPU_HASH => Shape::Hash { lru: true },
        MapType::RINGBUF => Shape::RingBuf,
        _ => Shape::Opaque,
    }
}

struct RtMap {
    info: MapInfo,
    shape: Shape,
    /// One buffer per entry (arrays) or per hash slot.
    values: Vec<GuardedBuf>,
    /// Hash slots: the key stored in each, `None` when free.
    keys: RefCell<Vec<Option<Vec<u8>>>>,
}

const EINVAL: i64 = 22;
const ENOENT: i64 = 2;
const EEXIST: i64 = 17;
const E2BIG: i64 = 7;
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;
const BPF_F_LOCK: u64 = 4;

/// The maps of one run.
pub struct FuzzMaps {
    maps: Vec<RtMap>,
    /// Ring-buffer records handed out; kept until the run is over (the `MapAccess` contract).
    records: RefCell<Vec<GuardedBuf>>,
}

impl FuzzMaps {
    /// Maps for `infos` (entry counts are assumed small: the input decoder caps them), with
    /// values from `rng` and, for hashes, a few entries with keys 0, 1, 2, ...
    pub fn new(infos: &[MapInfo], rng: &mut Rng) -> FuzzMaps {
        let maps = infos
            .iter()
            .map(|info| {
                let shape = shape(info.map_type);
                let n = match shape {
                    Shape::Array | Shape::Hash { .. } => info.max_entries as usize,
                    _ => 0,
                };
                let values: Vec<GuardedBuf> = (0..n)
                    .map(|_| {
                        let b = GuardedBuf::new(info.value_size as usize);
                        let mut init = vec![0u8; info.value_size as usize];
                        rng.fill(&mut init);
                        // A lock word that starts non-zero would look held forever.
                        if let Some(off) = info.spin_lock_off {
                            let off = off as usize;
                            if let Some(w) = init.get_mut(off..off + 4) {
                                w.fill(0);
                            }
                        }
                        b.write(0, &init);
                        b
                    })
                    .collect();
                let mut keys = vec![None; values.len()];
                if let Shape::Hash { .. } = shape {
                    let used = (rng.next_u64() % (n as u64 + 1)).min(4) as usize;
                    for (i, k) in keys.iter_mut().take(used).enumerate() {
                        let mut key = vec![0u8; info.key_size as usize];
                        let le = (i as u64).to_le_bytes();
                        let m = key.len().min(8);
                        key[..m].copy_from_slice(&le[..m]);
                        *k = Some(key);
                    }
                }
                RtMap {
                    info: info.clone(),
                    shape,
                    values,
                    keys: RefCell::new(keys),
                }
            })
            .collect();
        FuzzMaps {
            maps,
            records: RefCell::new(Vec::new()),
        }
    }

    /// The value a pseudo `lddw rX, map[..][0]+off` points into: entry 0 of the map at
    /// `index`.
    pub fn direct_value(&self, index: usize) -> Option<&GuardedBuf> {
        let m = self.maps.get(index)?;
        (m.shape == Shape::Array)
            .then(|| m.values.first())
            .flatten()
    }

    /// Regions for the direct values (entry 0 of every array), which the program may reach
    /// without a lookup.
    pub fn direct_regions(&self) -> Vec<Region<'_>> {
        self.maps
            .iter()
            .filter(|m| m.shape == Shape::Array)
            .filter_map(|m| {
                m.values
                    .first()
                    .map(|v| v.region(RegionKind::MapValue, !m.info.read_only()))
            })
            .collect()
    }

    /// Did any run write outside a value or record?
    pub fn guards_intact(&self) -> bool {
        self.maps
            .iter()
            .all(|m| m.values.iter().all(GuardedBuf::guards_intact))
            && self.records.borrow().iter().all(GuardedBuf::guards_intact)
    }

    fn get(&self, handle: u64) -> Option<&RtMap> {
        let i = usize::try_from(handle.checked_sub(HANDLE_BASE)?).ok()?;
        self.maps.get(i)
    }

    fn value_ref(m: &RtMap, slot: usize) -> MemRef {
        let v = &m.values[slot];
        MemRef {
            ptr: NonNull::new(v.ptr()).expect("allocation is not null"),
            len: v.len(),
            writable: !m.info.read_only(),
        }
    }

    fn slot_of(m: &RtMap, key: &[u8]) -> Option<usize> {
        match m.shape {
            Shape::Array => {
                let idx = u32::from_ne_bytes(key.try_into().ok()?) as usize;
                (idx < m.values.len()).then_some(idx)
            }
            Shape::Hash { .. } => m
                .keys
                .borrow()
                .iter()
                .position(|k| k.as_deref() == Some(key)),
            _ => None,
        }
    }
}

// SAFETY: values are `GuardedBuf`s owned by `self.maps`, never freed or moved while `self`
// lives (deleting a hash entry only forgets its key); ring-buffer records are kept in
// `self.records` until `self` is dropped; `GuardedBuf::ptr` exposes provenance. A
// `FuzzMaps` outlives every run it is given to.
unsafe impl MapAccess for FuzzMaps {
    fn key_size(&self, map: u64) -> Option<usize> {
        self.get(map).map(|m| m.info.key_size as usize)
    }

    fn value_size(&self, map: u64) -> Option<usize> {
        self.get(map).map(|m| m.info.value_size as usize)
    }

    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let m = self.get(map)?;
        Self::slot_of(m, key).map(|s| Self::value_ref(m, s))
    }

    fn update(&self, map: u64, key: &[u8], value: &[u8], flags: u64) -> i64 {
        let Some(m) = self.get(map) else {
            return -EINVAL;
        };
        if flags & !BPF_F_LOCK > BPF_EXIST {
            return -EINVAL;
        }
        let existing = Self::slot_of(m, key);
        let slot = match m.shape {
            Shape::Array => match existing {
                None => return -E2BIG,
                Some(_) if flags & !BPF_F_LOCK == BPF_NOEXIST => return -EEXIST,
                Some(s) => s,
            },
            Shape::Hash { lru } => {
                let op = flags & !BPF_F_LOCK;
                match existing {
                    Some(_) if op == BPF_NOEXIST => return -EEXIST,
                    Some(s) => s,
                    None if op == BPF_EXIST => return -ENOENT,
                    None => {
                        let mut keys = m.keys.borrow_mut();
                        let free = keys.iter().position(Option::is_none);
                        let s = match (free, lru) {
                            (Some(s), _) => s,
                            (None, true) if !keys.is_empty() => 0,
                            _ => return -E2BIG,
                        };
                        keys[s] = Some(key.to_vec());
                        s
                    }
                }
            }
            _ => return -EINVAL,
        };
        m.values[slot].write(0, value);
        0
    }

    fn delete(&self, map: u64, key: &[u8]) -> i64 {
        let Some(m) = self.get(map) else {
            return -EINVAL;
        };
        match (m.shape, Self::slot_of(m, key)) {
            (Shape::Hash { .. }, Some(s)) => {
                m.keys.borrow_mut()[s] = None;
                0
            }
            (Shape::Hash { .. }, None) => -ENOENT,
            _ => -EINVAL,
        }
    }

    fn ringbuf_output(&self, map: u64, _data: &[u8], flags: u64) -> i64 {
        match self.get(map) {
            Some(m) if m.shape == Shape::RingBuf && flags <= 3 => 0,
            _ => -EINVAL,
        }
    }

    fn ringbuf_reserve(&self, map: u64, size: u64, flags: u64) -> Option<MemRef> {
        let m = self.get(map)?;
        // Linux: a record must fit in the ring with its 8-byte header.
        if m.shape != Shape::RingBuf || flags != 0 || size + 8 > m.info.max_entries as u64 {
            return None;
        }
        let rec = GuardedBuf::new(size as usize);
        let r = MemRef {
            ptr: NonNull::new(rec.ptr()).expect("allocation is not null"),
            len: rec.len(),
            writable: true,
        };
        self.records.borrow_mut().push(rec);
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_detect_overrun() {
        let b = GuardedBuf::new(5);
        assert!(b.guards_intact());
        // SAFETY: byte 5 is padding inside the allocation.
        unsafe { b.ptr().add(5).write(0) };
        assert!(!b.guards_intact());
    }

    #[test]
    fn hash_update_lookup_delete() {
        let info = MapInfo::new(0, MapType::HASH, 4, 8, 2);
        let maps = FuzzMaps::new(&[info], &mut Rng::new(0));
        let h = HANDLE_BASE;
        assert_eq!(maps.update(h, &[9, 0, 0, 0], &[1; 8], 0), 0);
        let v = maps.lookup(h, &[9, 0, 0, 0]).unwrap();
        assert_eq!(v.len, 8);
        assert_eq!(maps.update(h, &[9, 0, 0, 0], &[1; 8], BPF_NOEXIST), -EEXIST);
        assert_eq!(maps.delete(h, &[9, 0, 0, 0]), 0);
        assert!(maps.lookup(h, &[9, 0, 0, 0]).is_none());
        assert!(maps.lookup(h + 1, &[9, 0, 0, 0]).is_none());
    }
}
