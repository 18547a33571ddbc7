//! Map types, one file each. Each exports `ENTRY`, listed in `crate::map::MAP_TYPES`.
//!
//! Shared here: the per-CPU model ([`nr_cpus`], [`current_cpu`]), the errno the kernel leaks
//! from some map operations ([`ENOTSUPP`]), and word-array copy helpers used by the types
//! whose values live inside their own elements rather than in a [`crate::value::ValueBuf`].

pub mod array;
pub mod cgrp_storage;
pub mod hash;
pub mod inode_storage;
pub mod local_storage;
pub mod lru_hash;
mod mem;
pub mod percpu_array;
pub mod percpu_hash;
pub mod ringbuf;

use bpfvfs_vfs::Errno;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

/// ENOTSUPP (524): kernel-internal, but bpf(2) returns it as is for several map operations
/// (ring buffer element ops, BPF_F_NO_PREALLOC on LRU maps), and user space sees 524.
pub const ENOTSUPP: Errno = Errno(524);

/// The number of "CPUs" per-CPU maps keep a value for: the machine's available parallelism
/// (at least 1), fixed for the life of the process at its first use (the kernel's
/// `num_possible_cpus()`). Available parallelism follows the CPU affinity mask and cgroup
/// quota in force at that moment.
pub fn nr_cpus() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1)
    })
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// (thread sequence number, per-CPU slot); usize::MAX until first use.
    static THREAD_SLOT: Cell<(usize, usize)> = const { Cell::new((usize::MAX, usize::MAX)) };
}

#[inline]
fn thread_slot() -> (usize, usize) {
    THREAD_SLOT.with(|s| {
        let v = s.get();
        if v.0 != usize::MAX {
            return v;
        }
        let seq = NEXT_THREAD.fetch_add(1, Relaxed);
        let v = (seq, seq % nr_cpus());
        s.set(v);
        v
    })
}

/// The per-CPU slot of the calling thread (the kernel's `smp_processor_id()` for program-side
/// per-CPU access). Each thread gets a sequence number on first use and uses it modulo
/// [`nr_cpus`], unless it chose a slot with [`set_current_cpu`] (an engine that runs one
/// worker per CPU does that). Two threads may share a slot; their writes to the same per-CPU
/// value then interleave word by word (never torn within a word), as they would if the
/// kernel let two programs run on one CPU at once.
#[inline]
pub fn current_cpu() -> usize {
    thread_slot().1
}

/// Pin the calling thread to per-CPU slot `cpu % nr_cpus()`.
pub fn set_current_cpu(cpu: usize) {
    let seq = thread_slot().0;
    THREAD_SLOT.with(|s| s.set((seq, cpu % nr_cpus())));
}

/// The calling thread's sequence number (for spreading per-thread state over stripes).
#[inline]
pub(crate) fn thread_index() -> usize {
    thread_slot().0
}

/// `round_up(n, 8)`.
pub(crate) fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Copy `out.len()` bytes out of `words` (little-endian word layout, as [`crate::value`]).
#[inline]
pub(crate) fn read_words(words: &[AtomicU64], out: &mut [u8]) {
    let last = out.len() / 8;
    let mut chunks = out.chunks_exact_mut(8);
    for (w, c) in words.iter().zip(&mut chunks) {
        c.copy_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let w = words[last].load(Relaxed).to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&w[..n]);
    }
}

/// Copy `data` into `words`. Bytes of a last partial word beyond `data` keep their value
/// (the kernel's copy_map_value copies exactly `value_size` bytes).
#[inline]
pub(crate) fn write_words(words: &[AtomicU64], data: &[u8]) {
    let mut chunks = data.chunks_exact(8);
    for (w, c) in words.iter().zip(&mut chunks) {
        w.store(
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            Relaxed,
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let cell = &words[data.len() / 8];
        let mut b = cell.load(Relaxed).to_le_bytes();
        b[..rest.len()].copy_from_slice(rest);
        cell.store(u64::from_le_bytes(b), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        let w: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(u64::MAX)).collect();
        write_words(&w, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let mut out = [0u8; 10];
        read_words(&w, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(w[1].load(Relaxed), 0xffff_ffff_ffff_0a09);
    }

    #[test]
    fn cpu_slots() {
        assert!(nr_cpus() >= 1);
        let c = current_cpu();
        assert!(c < nr_cpus());
        assert_eq!(current_cpu(), c);
        set_current_cpu(nr_cpus() + 1);
        assert_eq!(current_cpu(), 1 % nr_cpus());
    }
}
