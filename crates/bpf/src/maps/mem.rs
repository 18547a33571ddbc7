//! Memory for the hash tables: zeroed regions straight from mmap, and a slab of fixed-size
//! elements carved out of them.
//!
//! Why not the global allocator: a random lookup in a large table touches a bucket and an
//! element far apart, and with 4 KiB pages each costs a TLB miss on top of the cache miss
//! (under virtualization a TLB miss is a two-dimensional page walk). The kernel's maps sit in
//! its huge-page direct map; here large regions ask for transparent huge pages
//! (MADV_HUGEPAGE, honoured when THP is "madvise" or "always"), and elements are packed
//! densely, without malloc headers.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;
/// Largest slab chunk (elements larger than this get a chunk each).
const MAX_CHUNK: usize = 16 << 20;

/// An anonymous private mapping: zero-filled, committed page by page on first touch.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Region is plain memory owned by one structure; all access to its contents goes
// through that structure's synchronization (atomics, locks, or the epoch rules).
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// `len` zeroed bytes (rounded up to pages), page-aligned — 2 MiB-aligned, with
    /// MADV_HUGEPAGE, when at least 2 MiB; None if mmap fails.
    pub(crate) fn zeroed(len: usize) -> Option<Region> {
        let len = len.max(1).next_multiple_of(PAGE);
        let huge = len >= HUGE;
        let map_len = if huge { len + HUGE } else { len };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected. The result is
        // checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let mut start = p as usize;
        if huge {
            // Keep the 2 MiB-aligned `len` bytes inside the mapping, unmap the rest.
            let aligned = start.next_multiple_of(HUGE);
            let head = aligned - start;
            let tail = map_len - head - len;
            // SAFETY: both ranges lie inside the mapping just made and outside the part we
            // keep; page-aligned (HUGE and `len` are page multiples).
            unsafe {
                if head > 0 {
                    libc::munmap(start as *mut libc::c_void, head);
                }
                if tail > 0 {
                    libc::munmap((aligned + len) as *mut libc::c_void, tail);
                }
                // Advice on our own mapping; failure only means no huge pages.
                libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
            start = aligned;
        }
        Some(Region {
            ptr: NonNull::new(start as *mut u8)?,
            len,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: mapped in `zeroed` with this length and unmapped once; the owner guarantees
        // nothing refers into it any more.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

struct Bump {
    chunks: Vec<Region>,
    next: usize,
    end: usize,
    chunk_len: usize,
}

/// Fixed-size, 16-byte-aligned blocks. Freed blocks go to a free list (striped by thread, to
/// keep concurrent updaters apart) and are reused; memory returns to the system when the
/// slab is dropped.
pub(crate) struct Slab {
    size: usize,
    bump: Mutex<Bump>,
    free: Box<[Mutex<Vec<usize>>]>,
    reserved: AtomicU64,
}

impl Slab {
    /// Blocks of `size` bytes (rounded up to 16); `expected` sizes the first chunk.
    pub(crate) fn new(size: usize, expected: u64) -> Slab {
        let size = size.max(16).next_multiple_of(16);
        let want = (size as u64).saturating_mul(expected.max(1));
        // Chunks of 2 MiB and up are huge-page aligned; smaller maps get smaller chunks.
        let first = (want.min(MAX_CHUNK as u64) as usize)
            .max(size)
            .next_multiple_of(PAGE);
        let first = if first > HUGE {
            first.next_multiple_of(HUGE)
        } else {
            first
        };
        Slab {
            size,
            bump: Mutex::new(Bump {
                chunks: Vec::new(),
                next: 0,
                end: 0,
                chunk_len: first,
            }),
            free: (0..super::nr_cpus().next_power_of_two())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            reserved: AtomicU64::new(0),
        }
    }

    pub(crate) fn block_size(&self) -> usize {
        self.size
    }

    /// Bytes mapped for blocks.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    #[inline]
    fn stripe(&self) -> usize {
        super::thread_index() & (self.free.len() - 1)
    }

    /// A block with unspecified contents (zero when fresh, old bytes when reused).
    pub(crate) fn alloc(&self) -> Option<NonNull<u8>> {
        let s = self.stripe();
        if let Some(a) = lock(&self.free[s]).pop() {
            return NonNull::new(a as *mut u8);
        }
        {
            let mut b = lock(&self.bump);
            if b.next + self.size > b.end {
                let len = b.chunk_len.max(self.size).next_multiple_of(PAGE);
                let len = if len > HUGE {
                    len.next_multiple_of(HUGE)
                } else {
                    len
                };
                if let Some(r) = Region::zeroed(len) {
                    b.next = r.as_ptr() as usize;
                    b.end = b.next + r.len();
                    self.reserved.fetch_add(r.len() as u64, Ordering::Relaxed);
                    b.chunks.push(r);
                    b.chunk_len = (len * 2).min(MAX_CHUNK);
                }
            }
            if b.next + self.size <= b.end {
                let a = b.next;
                b.next += self.size;
                return NonNull::new(a as *mut u8);
            }
        }
        // Out of memory for a new chunk: take a block freed on another slot.
        for f in self.free.iter() {
            if let Some(a) = lock(f).pop() {
                return NonNull::new(a as *mut u8);
            }
        }
        None
    }

    /// Return a block obtained from `alloc` on this slab.
    pub(crate) fn free(&self, p: NonNull<u8>) {
        lock(&self.free[self.stripe()]).push(p.as_ptr() as usize);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_and_grows() {
        let s = Slab::new(40, 2);
        assert_eq!(s.block_size(), 48);
        let a = s.alloc().unwrap();
        let b = s.alloc().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_ptr() as usize % 16, 0);
        s.free(a);
        assert_eq!(s.alloc().unwrap(), a);
        let many: Vec<_> = (0..10_000).map(|_| s.alloc().unwrap()).collect();
        let set: std::collections::HashSet<_> = many.iter().collect();
        assert_eq!(set.len(), many.len());
        assert!(s.reserved() >= 10_000 * 48);
    }

    #[test]
    fn region_is_zeroed() {
        let r = Region::zeroed(3 * HUGE).unwrap();
        assert_eq!(r.as_ptr() as usize % HUGE, 0);
        // SAFETY: inside the mapping.
        assert_eq!(unsafe { *r.as_ptr().add(HUGE + 5) }, 0);
        assert_eq!(r.len(), 3 * HUGE);
    }
}
