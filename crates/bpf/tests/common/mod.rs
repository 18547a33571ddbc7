//! Setup shared by the map tests.
#![allow(dead_code)]

use bpfvfs_bpf::{Bpf, Handle};
use bpfvfs_vfs::Vfs;
use std::sync::Arc;

/// A fresh `Bpf` on an in-memory filesystem.
pub fn bpf() -> Arc<Bpf> {
    Bpf::new(Vfs::new_memfs()).unwrap()
}

/// A 4-byte key.
pub fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

/// An 8-byte value.
pub fn v(i: u64) -> [u8; 8] {
    i.to_ne_bytes()
}

/// Every 4-byte key of `h`, in `get_next_key` order, until the first error.
pub fn keys(bpf: &Bpf, h: &Handle) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    while let Ok(n) = bpf.map_get_next_key(h, cur.as_deref()) {
        out.push(u32::from_ne_bytes(n[..4].try_into().unwrap()));
        cur = Some(n);
    }
    out
}
