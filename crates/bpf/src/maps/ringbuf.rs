//! BPF_MAP_TYPE_RINGBUF: a multi-producer, single-consumer byte ring (kernel/bpf/ringbuf.c).
//!
//! `max_entries` is the data size: a power of two and a multiple of the page size; key and
//! value sizes must be 0. The element operations of bpf(2) do not apply and fail with
//! ENOTSUPP (524), as the kernel's ringbuf_map_*_elem do. The typed API is reached through
//! `map.ops().as_any().downcast_ref::<RingBuf>()`.
//!
//! # Records
//!
//! Each record is an 8-byte header — `len: u32` (payload length plus [`BPF_RINGBUF_BUSY_BIT`]
//! while reserved and [`BPF_RINGBUF_DISCARD_BIT`] when discarded), `pg_off: u32` — followed
//! by the payload, padded so every record starts 8-byte aligned. Producers ([`RingBuf::reserve`]
//! then [`RingBuf::submit`] / [`RingBuf::discard`], or [`RingBuf::output`]) serialize only to
//! advance the producer position; they fill their records concurrently. The consumer
//! ([`RingBuf::consume`]) reads records in order, skips discarded ones and stops at the first
//! one still busy.
//!
//! As in the kernel, the data area is mapped twice back to back (a memfd mapped at two
//! adjacent addresses), so a record that wraps past the end is still contiguous in memory:
//! programs get one pointer for the whole payload, the consumer one slice.
//!
//! Space rule (__bpf_ringbuf_reserve): a reservation fails when it would put the producer
//! more than `size - 1` bytes ahead of the consumer, or of the oldest record not yet
//! committed.

use crate::map::{MapDef, MapOps, MapTypeEntry};
use crate::uapi::*;
use bpfvfs_vfs::{Errno, Result};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const ENTRY: MapTypeEntry = MapTypeEntry {
    map_type: MapType::Ringbuf,
    check,
    alloc,
};

pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
pub const BPF_RINGBUF_HDR_SZ: u64 = 8;
/// submit/discard/output flags.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// bpf_ringbuf_query flags.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
pub const BPF_RB_RING_SIZE: u64 = 1;
pub const BPF_RB_CONS_POS: u64 = 2;
pub const BPF_RB_PROD_POS: u64 = 3;

const PAGE_SIZE: u64 = 4096;
const RINGBUF_PGOFF: u64 = 1;
const RINGBUF_POS_PAGES: u64 = 2;
/// RINGBUF_MAX_RECORD_SZ.
pub const RINGBUF_MAX_RECORD_SZ: u64 = u32::MAX as u64 / 4;
/// RINGBUF_MAX_DATA_SZ (the page offset in a record header is 24 bits).
pub const RINGBUF_MAX_DATA_SZ: u64 = ((1 << 24) - RINGBUF_POS_PAGES - RINGBUF_PGOFF) * PAGE_SIZE;

/// ringbuf_map_alloc's checks.
fn check(def: &MapDef) -> Result<()> {
    if def.map_flags & !BPF_F_NUMA_NODE != 0 {
        return Err(Errno::EINVAL);
    }
    if def.key_size != 0
        || def.value_size != 0
        || !def.max_entries.is_power_of_two()
        || def.max_entries as u64 & (PAGE_SIZE - 1) != 0
    {
        return Err(Errno::EINVAL);
    }
    if def.max_entries as u64 > RINGBUF_MAX_DATA_SZ {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

fn alloc(def: &MapDef) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(RingBuf::new(def.max_entries as usize)?))
}

/// The data area, mapped twice: bytes `[i]` and `[size + i]` are the same memory.
struct DoubleMap {
    base: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain shared memory owned by the ring; every access to it follows
// the record protocol (headers through atomics, payloads only by the record's owner — the
// producer between reserve and commit, the consumer after it loaded the committed header).
unsafe impl Send for DoubleMap {}
// SAFETY: as above.
unsafe impl Sync for DoubleMap {}

impl DoubleMap {
    fn new(size: usize) -> Result<DoubleMap> {
        // SAFETY: plain libc calls with checked results; `base` is a fresh reservation of
        // 2*size bytes that we replace, half by half, with MAP_FIXED mappings of the memfd
        // (MAP_FIXED over our own reservation cannot clobber anything else). On any failure
        // everything created so far is released.
        unsafe {
            let fd = libc::memfd_create(c"bpfvfs-ringbuf".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(Errno::ENOMEM);
            }
            if libc::ftruncate(fd, size as libc::off_t) != 0 {
                libc::close(fd);
                return Err(Errno::ENOMEM);
            }
            let base = libc::mmap(
                std::ptr::null_mut(),
                2 * size,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                libc::close(fd);
                return Err(Errno::ENOMEM);
            }
            for half in 0..2 {
                let want = (base as *mut u8).add(half * size) as *mut libc::c_void;
                let p = libc::mmap(
                    want,
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    0,
                );
                if p == libc::MAP_FAILED || p != want {
                    libc::munmap(base, 2 * size);
                    libc::close(fd);
                    return Err(Errno::ENOMEM);
                }
            }
            libc::close(fd);
            Ok(DoubleMap {
                base: NonNull::new(base as *mut u8).ok_or(Errno::ENOMEM)?,
                size,
            })
        }
    }
}

impl Drop for DoubleMap {
    fn drop(&mut self) {
        // SAFETY: the region was mapped in `new` and is unmapped exactly once, when the ring
        // (the only owner of the mapping) goes; no reference into it outlives the ring.
        unsafe {
            libc::munmap(self.base.as_ptr() as *mut libc::c_void, 2 * self.size);
        }
    }
}

/// Keeps the two positions on separate cache lines (the kernel puts them on separate pages).
#[repr(align(128))]
struct Padded<T>(T);

pub struct RingBuf {
    data: DoubleMap,
    mask: u64,
    consumer_pos: Padded<AtomicU64>,
    producer_pos: Padded<AtomicU64>,
    /// The producers' lock (rb->spinlock), guarding `pending_pos`.
    producer: Mutex<u64>,
    /// Serializes consumers (the ring has one consumer at a time).
    consumer: Mutex<()>,
    waiters: AtomicUsize,
    wake: Mutex<u64>,
    cond: Condvar,
}

#[inline]
fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl RingBuf {
    /// A ring of `size` data bytes (a power of two, multiple of 4096).
    pub fn new(size: usize) -> Result<RingBuf> {
        if !size.is_power_of_two() || size as u64 & (PAGE_SIZE - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(RingBuf {
            data: DoubleMap::new(size)?,
            mask: size as u64 - 1,
            consumer_pos: Padded(AtomicU64::new(0)),
            producer_pos: Padded(AtomicU64::new(0)),
            producer: Mutex::new(0),
            consumer: Mutex::new(()),
            waiters: AtomicUsize::new(0),
            wake: Mutex::new(0),
            cond: Condvar::new(),
        })
    }

    /// Data bytes (max_entries).
    pub fn size(&self) -> u64 {
        self.mask + 1
    }

    /// Bytes between the consumer and producer positions, committed or not
    /// (ringbuf_avail_data_sz; what makes the kernel's poll report EPOLLIN).
    pub fn available(&self) -> u64 {
        let cons = self.consumer_pos.0.load(Ordering::Acquire);
        let prod = self.producer_pos.0.load(Ordering::Acquire);
        prod - cons
    }

    /// bpf_ringbuf_query.
    pub fn query(&self, flags: u64) -> u64 {
        match flags {
            BPF_RB_AVAIL_DATA => self.available(),
            BPF_RB_RING_SIZE => self.size(),
            BPF_RB_CONS_POS => self.consumer_pos.0.load(Ordering::Acquire),
            BPF_RB_PROD_POS => self.producer_pos.0.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// The header word (`len`) of the record at offset `off` (< size, 8-aligned).
    #[inline]
    fn hdr_len(&self, off: u64) -> &AtomicU32 {
        debug_assert!(off <= self.mask && off & 7 == 0);
        // SAFETY: `off` is inside the first copy of the data area and 4-aligned (the mapping
        // is page-aligned); the memory lives as long as `self`. A header is only accessed
        // through atomics while it is a header (between its reservation and the consumer
        // moving past it); payload writes to the same bytes happen in other periods, ordered
        // by the release/acquire pairs on the header and the positions.
        unsafe { &*(self.data.base.as_ptr().add(off as usize) as *const AtomicU32) }
    }

    #[inline]
    fn hdr_pg_off(&self, off: u64) -> &AtomicU32 {
        // SAFETY: as `hdr_len`, 4 bytes further (the header is 8 bytes, inside the area).
        unsafe { &*(self.data.base.as_ptr().add(off as usize + 4) as *const AtomicU32) }
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// bpf_ringbuf_reserve: room for a `size`-byte record, or None when the record is too
    /// large or there is no space. The pointer (8-byte aligned, `size` writable bytes, even
    /// across the wrap) stays the caller's until it passes it to [`RingBuf::submit`] or
    /// [`RingBuf::discard`]; until then the consumer stops at this record.
    pub fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        if size > RINGBUF_MAX_RECORD_SZ {
            return None;
        }
        let len = round8(size + BPF_RINGBUF_HDR_SZ);
        if len > self.size() {
            return None;
        }
        let cons = self.consumer_pos.0.load(Ordering::Acquire);
        let mut pending = Self::lock(&self.producer);
        let prod = self.producer_pos.0.load(Ordering::Relaxed);
        let new_prod = prod + len;
        // Advance past records committed since last time: the oldest busy record bounds
        // how far the producer may run ahead, like the consumer does.
        let mut pend = *pending;
        while pend < prod {
            let l = self.hdr_len(pend & self.mask).load(Ordering::Acquire);
            if l & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            pend += round8((l & !BPF_RINGBUF_DISCARD_BIT) as u64 + BPF_RINGBUF_HDR_SZ);
        }
        *pending = pend;
        if new_prod - cons > self.mask || new_prod - pend > self.mask {
            return None;
        }
        let off = prod & self.mask;
        self.hdr_len(off)
            .store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        self.hdr_pg_off(off).store(
            ((off + (RINGBUF_PGOFF + RINGBUF_POS_PAGES) * PAGE_SIZE) / PAGE_SIZE) as u32,
            Ordering::Relaxed,
        );
        // Pairs with the consumer's acquire load: it sees the busy header.
        self.producer_pos.0.store(new_prod, Ordering::Release);
        drop(pending);
        // SAFETY: off + 8 < 2 * size, inside the mapping.
        NonNull::new(unsafe { self.data.base.as_ptr().add(off as usize + 8) })
    }

    /// bpf_ringbuf_submit: hand a reserved record to the consumer.
    /// EINVAL if `sample` is not a record of this ring still reserved (a program that passes
    /// anything else would have been rejected by the verifier).
    pub fn submit(&self, sample: NonNull<u8>, flags: u64) -> Result<()> {
        self.commit(sample, flags, false)
    }

    /// bpf_ringbuf_discard: release a reserved record; the consumer skips it.
    pub fn discard(&self, sample: NonNull<u8>, flags: u64) -> Result<()> {
        self.commit(sample, flags, true)
    }

    /// bpf_ringbuf_output: reserve, copy, submit. EINVAL for unknown flags, EAGAIN when
    /// there is no space.
    pub fn output(&self, data: &[u8], flags: u64) -> Result<()> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(Errno::EINVAL);
        }
        let rec = self.reserve(data.len() as u64).ok_or(Errno::EAGAIN)?;
        // SAFETY: `reserve` gave us `data.len()` writable bytes at `rec` that nobody else
        // touches until we commit.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), rec.as_ptr(), data.len()) };
        self.commit(rec, flags, false)
    }

    fn commit(&self, sample: NonNull<u8>, flags: u64, discard: bool) -> Result<()> {
        let base = self.data.base.as_ptr() as usize;
        let addr = sample.as_ptr() as usize;
        if addr < base + 8 || addr - base - 8 > self.mask as usize || (addr - base) & 7 != 0 {
            return Err(Errno::EINVAL);
        }
        let off = (addr - base - 8) as u64;
        let h = self.hdr_len(off);
        let mut cur = h.load(Ordering::Relaxed);
        loop {
            if cur & BPF_RINGBUF_BUSY_BIT == 0 {
                return Err(Errno::EINVAL);
            }
            let mut new = cur ^ BPF_RINGBUF_BUSY_BIT;
            if discard {
                new |= BPF_RINGBUF_DISCARD_BIT;
            }
            // Release: the payload written before is visible to the consumer that sees the
            // header without the busy bit.
            match h.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        let cons = self.consumer_pos.0.load(Ordering::Acquire) & self.mask;
        if flags & BPF_RB_FORCE_WAKEUP != 0 || (cons == off && flags & BPF_RB_NO_WAKEUP == 0) {
            self.notify();
        }
        Ok(())
    }

    fn notify(&self) {
        // Pairs with the fence in `wait`: either the waiter sees our record, or we see it
        // waiting.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            *Self::lock(&self.wake) += 1;
            self.cond.notify_all();
        }
    }

    /// Wait until data is available (epoll on the map) or `timeout` passes; true if there
    /// is data.
    pub fn wait(&self, timeout: Duration) -> bool {
        if self.available() > 0 {
            return true;
        }
        let deadline = Instant::now() + timeout;
        let mut g = Self::lock(&self.wake);
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seq = *g;
        while self.available() == 0 && *g == seq {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = self
                .cond
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        drop(g);
        self.available() > 0
    }

    /// Consume committed records in order, calling `f` with each payload (discarded records
    /// are skipped), until the ring is empty or the next record is still busy. Returns the
    /// number of records passed to `f`. One consumer at a time (others wait); `f` must not
    /// consume from the same ring.
    pub fn consume(&self, mut f: impl FnMut(&[u8])) -> usize {
        let _one = Self::lock(&self.consumer);
        let mut cons = self.consumer_pos.0.load(Ordering::Relaxed);
        let mut n = 0;
        loop {
            let prod = self.producer_pos.0.load(Ordering::Acquire);
            if cons >= prod {
                return n;
            }
            while cons < prod {
                let off = cons & self.mask;
                let l = self.hdr_len(off).load(Ordering::Acquire);
                if l & BPF_RINGBUF_BUSY_BIT != 0 {
                    return n;
                }
                let len = (l & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) as u64;
                if l & BPF_RINGBUF_DISCARD_BIT == 0 {
                    // SAFETY: the record was committed (acquire load of a header without the
                    // busy bit, pairing with the producer's release), so its `len` payload
                    // bytes are initialized and no producer writes them until we move the
                    // consumer position past them; off + 8 + len <= off + size < 2 * size,
                    // inside the double mapping.
                    let rec = unsafe {
                        std::slice::from_raw_parts(
                            self.data.base.as_ptr().add(off as usize + 8),
                            len as usize,
                        )
                    };
                    f(rec);
                    n += 1;
                }
                cons += round8(len + BPF_RINGBUF_HDR_SZ);
                // Release: producers may reuse the space once they see this.
                self.consumer_pos.0.store(cons, Ordering::Release);
            }
        }
    }
}

impl MapOps for RingBuf {
    fn lookup(&self, _key: &[u8], _out: &mut [u8]) -> Result<()> {
        Err(super::ENOTSUPP)
    }
    fn update(&self, _key: &[u8], _value: &[u8], _flags: u64) -> Result<()> {
        Err(super::ENOTSUPP)
    }
    fn delete(&self, _key: &[u8]) -> Result<()> {
        Err(super::ENOTSUPP)
    }
    fn get_next_key(&self, _key: Option<&[u8]>, _next: &mut [u8]) -> Result<()> {
        Err(super::ENOTSUPP)
    }
    /// ringbuf_map_mem_usage: the data pages, the consumer/producer pages, the header page,
    /// and the page array of the double mapping.
    fn mem_usage(&self) -> u64 {
        let data_pages = self.size() / PAGE_SIZE;
        let meta_pages = RINGBUF_PGOFF + RINGBUF_POS_PAGES;
        (meta_pages + data_pages) * PAGE_SIZE
            + (meta_pages + 2 * data_pages) * 8
            + std::mem::size_of::<Self>() as u64
    }
    fn elem_count(&self) -> u64 {
        0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_mapping_aliases() {
        let rb = RingBuf::new(4096).unwrap();
        let p = rb.data.base.as_ptr();
        // SAFETY: both addresses are inside the 2*4096-byte mapping and nothing else uses it.
        unsafe {
            p.add(10).write(0xab);
            assert_eq!(p.add(4096 + 10).read(), 0xab);
        }
    }

    #[test]
    fn reserve_submit_consume() {
        let rb = RingBuf::new(4096).unwrap();
        let r = rb.reserve(5).unwrap();
        assert_eq!(r.as_ptr() as usize % 8, 0);
        assert_eq!(rb.consume(|_| panic!("busy record consumed")), 0);
        // SAFETY: 5 reserved bytes.
        unsafe { std::ptr::copy_nonoverlapping(b"hello".as_ptr(), r.as_ptr(), 5) };
        rb.submit(r, 0).unwrap();
        assert_eq!(rb.submit(r, 0), Err(Errno::EINVAL));
        assert_eq!(rb.available(), 16);
        let mut got = Vec::new();
        assert_eq!(rb.consume(|d| got.push(d.to_vec())), 1);
        assert_eq!(got, vec![b"hello".to_vec()]);
        assert_eq!(rb.available(), 0);
    }
}
