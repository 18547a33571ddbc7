//! Map value memory.
//!
//! Programs read and write map values in place through pointers (as in the kernel), while user
//! space copies them in and out concurrently. Values are therefore stored as arrays of
//! `AtomicU64` words: user-space copies use relaxed word loads and stores (no data race in
//! Rust's model, and no torn words), and programs get the raw address of the first word,
//! 8-byte aligned as BPF atomics require. A value of `n` bytes takes `ceil(n/8)` words.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct ValueBuf(Box<[AtomicU64]>);

pub fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

impl ValueBuf {
    /// Zero-filled storage for `bytes` bytes.
    pub fn zeroed(bytes: usize) -> ValueBuf {
        ValueBuf((0..words_for(bytes)).map(|_| AtomicU64::new(0)).collect())
    }

    pub fn from_bytes(data: &[u8]) -> ValueBuf {
        let v = ValueBuf::zeroed(data.len());
        v.write_from(0, data);
        v
    }

    pub fn byte_len_capacity(&self) -> usize {
        self.0.len() * 8
    }

    /// Copy `out.len()` bytes starting at byte `offset` (a multiple of 8) into `out`.
    pub fn read_into(&self, offset: usize, out: &mut [u8]) {
        debug_assert!(offset.is_multiple_of(8));
        let first = offset / 8;
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let w = self.0[first + i].load(Relaxed).to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }

    /// Copy `data` in starting at byte `offset` (a multiple of 8). Bytes of a last partial
    /// word beyond `data` are left as they were.
    pub fn write_from(&self, offset: usize, data: &[u8]) {
        debug_assert!(offset.is_multiple_of(8));
        let first = offset / 8;
        for (i, chunk) in data.chunks(8).enumerate() {
            let cell = &self.0[first + i];
            if chunk.len() == 8 {
                cell.store(
                    u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                    Relaxed,
                );
            } else {
                let mut w = cell.load(Relaxed).to_le_bytes();
                w[..chunk.len()].copy_from_slice(chunk);
                cell.store(u64::from_le_bytes(w), Relaxed);
            }
        }
    }

    /// Zero every word.
    pub fn clear(&self) {
        for w in self.0.iter() {
            w.store(0, Relaxed);
        }
    }

    /// The address programs use. Valid as long as this buffer lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr() as *mut u8
    }
}

impl std::fmt::Debug for ValueBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ValueBuf({} words)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_partial_words() {
        let v = ValueBuf::zeroed(13);
        v.write_from(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        let mut out = [0u8; 13];
        v.read_into(0, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        let mut tail = [0u8; 5];
        v.read_into(8, &mut tail);
        assert_eq!(tail, [9, 10, 11, 12, 13]);
        assert_eq!(v.as_ptr() as usize % 8, 0);
    }
}
