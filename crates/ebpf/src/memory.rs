//! Memory regions a program may touch, and the checks of the checked execution mode.
//!
//! Programs see real host addresses: r1 points into the caller's context buffer, r10 into the
//! interpreter's stack, `bpf_map_lookup_elem` returns a pointer into memory the map owns. In
//! checked mode every load, store and atomic is validated against the set of registered
//! regions (stack, the caller's regions, and regions helpers registered during the run, e.g.
//! map values) before it happens; a miss is a typed error, never undefined behaviour.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;

/// What a region is, for error messages and for helpers that care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RegionKind {
    /// The program's context (`r1` at entry for most program types).
    Context,
    /// The interpreter's stack (all call frames).
    Stack,
    /// A map value returned by a helper, or a direct map value (`lddw` map value).
    MapValue,
    /// Packet data.
    Packet,
    /// Generic memory (the conformance suite's `-- mem`).
    Mem,
    /// A ring buffer record handed out by `bpf_ringbuf_reserve`.
    RingBuf,
    /// Anything else.
    Other,
}

impl RegionKind {
    const ALL: [RegionKind; 7] = [
        RegionKind::Context,
        RegionKind::Stack,
        RegionKind::MapValue,
        RegionKind::Packet,
        RegionKind::Mem,
        RegionKind::RingBuf,
        RegionKind::Other,
    ];
}

/// A region as the checks see it. `meta` packs writability (bit 0) and the kind (bits 8..),
/// so a region is three words that move through registers in one piece (separate `bool`
/// fields caused store-forwarding stalls on the map-lookup path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawRegion {
    pub start: u64,
    pub end: u64,
    meta: u64,
}

impl RawRegion {
    #[inline]
    pub fn new(start: u64, end: u64, writable: bool, kind: RegionKind) -> Self {
        RawRegion {
            start,
            end,
            meta: writable as u64 | (kind as u64) << 8,
        }
    }

    #[inline]
    pub fn writable(&self) -> bool {
        self.meta & 1 != 0
    }

    pub fn kind(&self) -> RegionKind {
        RegionKind::ALL[(self.meta >> 8) as usize % RegionKind::ALL.len()]
    }

    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let size = self.end - self.start;
        addr >= self.start && len <= size && addr - self.start <= size - len
    }
}

/// A piece of memory the caller lends to one program run. The lifetime ties it to the borrow
/// it was made from, so the memory outlives the run.
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    pub(crate) raw: RawRegion,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Region<'a> {
    /// A region the program may read but not write (stores to it fail in checked mode; a
    /// verifier must reject them for the unchecked mode).
    pub fn readonly(kind: RegionKind, mem: &'a [u8]) -> Self {
        let start = mem.as_ptr().expose_provenance() as u64;
        Region {
            raw: RawRegion::new(start, start + mem.len() as u64, false, kind),
            _borrow: PhantomData,
        }
    }

    /// A region the program may read and write.
    pub fn writable(kind: RegionKind, mem: &'a mut [u8]) -> Self {
        let start = mem.as_mut_ptr().expose_provenance() as u64;
        Region {
            raw: RawRegion::new(start, start + mem.len() as u64, true, kind),
            _borrow: PhantomData,
        }
    }

    /// A region from a raw pointer.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be valid for reads (and writes if `writable`) for `'a`, and nothing
    /// else may hold a Rust reference to it that the program's accesses would invalidate. The
    /// pointer's provenance must have been exposed (`expose_provenance`), as raw pointers from
    /// most allocators are when they reach this point; this function exposes it again.
    pub unsafe fn from_raw_parts(
        kind: RegionKind,
        ptr: *mut u8,
        len: usize,
        writable: bool,
    ) -> Self {
        let start = ptr.expose_provenance() as u64;
        Region {
            raw: RawRegion::new(start, start + len as u64, writable, kind),
            _borrow: PhantomData,
        }
    }

    /// Address of the first byte, as the program sees it.
    pub fn addr(&self) -> u64 {
        self.raw.start
    }

    pub fn len(&self) -> usize {
        (self.raw.end - self.raw.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> RegionKind {
        self.raw.kind()
    }
}

/// Hasher for region start addresses (the std one is needlessly slow for this).
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The region set of one run: the stack, the caller's regions (a short list), and regions
/// helpers registered (map values, ring-buffer records). Helper-registered regions are kept
/// in a hash index (re-registering the same value, the common case, is one probe) and an
/// ordered map (containment of an arbitrary address); the last region added or hit is
/// checked first, which catches the accesses through the pointer a lookup just returned.
#[derive(Default)]
pub(crate) struct Memory {
    stack_lo: u64,
    /// `stack_hi - stack_lo`.
    stack_size: u64,
    fixed: Vec<RawRegion>,
    index: HashMap<u64, RawRegion, BuildHasherDefault<AddrHasher>>,
    ordered: BTreeMap<u64, RawRegion>,
    last: Cell<Option<RawRegion>>,
}

impl Memory {
    pub fn reset(&mut self, stack_lo: u64, stack_size: u64, regions: &[Region<'_>]) {
        self.stack_lo = stack_lo;
        self.stack_size = stack_size;
        self.fixed.clear();
        self.fixed.extend(regions.iter().map(|r| r.raw));
        self.clear_dynamic();
    }

    fn clear_dynamic(&mut self) {
        if !self.index.is_empty() {
            self.index.clear();
            self.ordered.clear();
        }
        self.last.set(None);
    }

    /// Forget every region (keeps allocations).
    pub fn clear(&mut self) {
        self.stack_size = 0;
        self.fixed.clear();
        self.clear_dynamic();
    }

    /// Is `[addr, addr+len)` inside one registered region (writable, if `write`)?
    /// `len` is at most 8 on the interpreter's paths.
    #[inline(always)]
    pub fn allows(&self, addr: u64, len: u64, write: bool) -> bool {
        // Stack fast path: one subtraction and one compare.
        if addr.wrapping_sub(self.stack_lo) <= self.stack_size.wrapping_sub(len)
            && len <= self.stack_size
        {
            return true;
        }
        // Second fast path: the region last added or hit (typically the map value a lookup
        // just returned).
        if let Some(r) = self.last.get() {
            if r.contains(addr, len) {
                return !write || r.writable();
            }
        }
        self.allows_slow(addr, len, write)
    }

    #[inline(never)]
    fn allows_slow(&self, addr: u64, len: u64, write: bool) -> bool {
        match self.find(addr, len) {
            Some(r) => !write || r.writable(),
            None => false,
        }
    }

    /// The non-stack region containing `[addr, addr+len)`.
    fn find(&self, addr: u64, len: u64) -> Option<RawRegion> {
        if let Some(r) = self.last.get() {
            if r.contains(addr, len) {
                return Some(r);
            }
        }
        for r in &self.fixed {
            if r.contains(addr, len) {
                return Some(*r);
            }
        }
        match self.ordered.range(..=addr).next_back() {
            Some((_, r)) if r.contains(addr, len) => {
                self.last.set(Some(*r));
                Some(*r)
            }
            _ => None,
        }
    }

    /// The region containing `addr`, if any (stack included).
    pub fn region_of(&self, addr: u64) -> Option<RawRegion> {
        if addr.wrapping_sub(self.stack_lo) < self.stack_size {
            return Some(RawRegion::new(
                self.stack_lo,
                self.stack_lo + self.stack_size,
                true,
                RegionKind::Stack,
            ));
        }
        self.find(addr, 1)
    }

    /// Registers `[start, end)`. Takes fields, not a `RawRegion`, so they travel in registers
    /// (a by-reference struct here caused a store-forwarding stall on every map lookup).
    pub fn add_dynamic(&mut self, start: u64, end: u64, writable: bool, kind: RegionKind) {
        let r = RawRegion::new(start, end, writable, kind);
        if self.last.get() == Some(r) {
            return;
        }
        self.last.set(Some(r));
        match self.index.get(&r.start) {
            Some(old) if *old == r => {}
            _ => {
                self.index.insert(r.start, r);
                self.ordered.insert(r.start, r);
            }
        }
    }

    pub fn remove_dynamic(&mut self, start: u64) -> bool {
        if self.last.get().is_some_and(|r| r.start == start) {
            self.last.set(None);
        }
        self.ordered.remove(&start);
        self.index.remove(&start).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_checks() {
        let mut stack = [0u8; 64];
        let mut ctx = [0u8; 16];
        let ro = [0u8; 8];
        let lo = stack.as_mut_ptr() as u64;
        let regions = [
            Region::writable(RegionKind::Context, &mut ctx),
            Region::readonly(RegionKind::Mem, &ro),
        ];
        let c = regions[0].addr();
        let r = regions[1].addr();
        let mut m = Memory::default();
        m.reset(lo, 64, &regions);
        assert!(m.allows(lo, 8, true));
        assert!(m.allows(lo + 56, 8, true));
        assert!(!m.allows(lo + 57, 8, true));
        assert!(!m.allows(lo.wrapping_sub(1), 1, false));
        assert!(m.allows(c + 8, 8, true));
        assert!(!m.allows(c + 9, 8, false));
        assert!(m.allows(r, 8, false));
        assert!(!m.allows(r, 8, true));
        assert!(!m.allows(u64::MAX - 3, 8, false));
        m.add_dynamic(0x1000, 0x1010, true, RegionKind::MapValue);
        assert_eq!(
            m.region_of(0x1001).map(|r| (r.kind(), r.writable())),
            Some((RegionKind::MapValue, true))
        );
        assert!(m.allows(0x1008, 8, true));
        assert!(!m.allows(0x1009, 8, true));
        assert!(m.remove_dynamic(0x1000));
        assert!(!m.allows(0x1008, 8, true));
    }
}
