//! The dentry hash: `(parent dentry id, name) -> dentry`, read without locks.
//!
//! This is the lockless walk's view of the tree (Linux's dentry_hashtable). Each bucket is a
//! singly linked list of nodes published with release stores and read under a
//! crossbeam-epoch guard. Writers serialize per bucket on a striped mutex, and only ever
//! add at the head or unlink a node; an unlinked node is handed to the epoch collector and
//! freed after every guard that might have seen it is gone.
//!
//! Grace-period rule (what readers may rely on): a node reachable from a bucket while the
//! reader's guard is pinned stays allocated until that guard is dropped, and so does the
//! dentry it holds (the node owns an `Arc`), and through the dentry its inode — including the
//! inode's symlink body. The dentry's own `id` is never reused, so a stale parent id cannot
//! match a new directory.

use crate::dentry::Dentry;
use crossbeam_epoch::{Atomic, Guard, Owned, Shared};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

struct Node {
    parent: u64,
    hash: u64,
    name: Box<[u8]>,
    dentry: Arc<Dentry>,
    next: Atomic<Node>,
}

pub(crate) struct DentryHash {
    buckets: Box<[Atomic<Node>]>,
    locks: Box<[Mutex<()>]>,
    mask: usize,
    seed: u64,
}

const LOCK_STRIPES: usize = 256;

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Name comparison inlined for short names (a libc memcmp call costs more than the compare).
#[inline]
fn names_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl DentryHash {
    /// A table of `2^bits` buckets; it does not grow (as Linux sizes its table once at boot).
    pub(crate) fn new(bits: u32) -> DentryHash {
        let n = 1usize << bits.clamp(4, 28);
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n as u64);
            h.finish() | 1
        };
        DentryHash {
            buckets: (0..n).map(|_| Atomic::null()).collect(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            mask: n - 1,
            seed,
        }
    }

    /// Hash of a name within a parent: 8 bytes at a time, folded multiply (wyhash-like).
    #[inline]
    pub(crate) fn hash(&self, parent: u64, name: &[u8]) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut h = mix(parent ^ self.seed, K ^ name.len() as u64);
        let mut chunks = name.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = mix(h ^ v, K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Fold the tail byte by byte: short names are the common case and a memcpy call
            // would cost more than the hash.
            let mut v = 0u64;
            for (i, &b) in rest.iter().enumerate() {
                v |= (b as u64) << (8 * i);
            }
            h = mix(h ^ v, K.rotate_left(17));
        }
        h
    }

    fn lock(&self, hash: u64) -> std::sync::MutexGuard<'_, ()> {
        self.locks[(hash as usize) & (LOCK_STRIPES - 1)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Lockless lookup. The reference lives as long as the guard (see the module comment).
    #[inline]
    pub(crate) fn lookup<'g>(
        &self,
        parent: u64,
        name: &[u8],
        guard: &'g Guard,
    ) -> Option<&'g Arc<Dentry>> {
        let hash = self.hash(parent, name);
        let mut cur = self.buckets[(hash as usize) & self.mask].load(Ordering::Acquire, guard);
        // SAFETY: every node reachable from a bucket was published with a release store and is
        // freed only through `defer_destroy` after being unlinked, so it stays valid while
        // `guard` is pinned (module comment, grace-period rule).
        while let Some(node) = unsafe { cur.as_ref() } {
            if node.hash == hash && node.parent == parent && names_equal(&node.name, name) {
                return Some(&node.dentry);
            }
            cur = node.next.load(Ordering::Acquire, guard);
        }
        None
    }

    /// Publish `dentry` under `(parent, name)`. Callers hold the parent directory's lock, so
    /// the name is not present.
    pub(crate) fn insert(&self, parent: u64, name: &[u8], dentry: Arc<Dentry>) {
        let hash = self.hash(parent, name);
        let _stripe = self.lock(hash);
        let guard = crossbeam_epoch::pin();
        let bucket = &self.buckets[(hash as usize) & self.mask];
        let head = bucket.load(Ordering::Acquire, &guard);
        let node = Owned::new(Node {
            parent,
            hash,
            name: name.into(),
            dentry,
            next: Atomic::null(),
        });
        node.next.store(head, Ordering::Relaxed);
        bucket.store(node, Ordering::Release);
    }

    /// Unpublish the node for `(parent, name)` that holds `dentry`; it is freed after the
    /// grace period. Returns whether it was found.
    pub(crate) fn remove(&self, parent: u64, name: &[u8], dentry: &Dentry) -> bool {
        let hash = self.hash(parent, name);
        let _stripe = self.lock(hash);
        let guard = crossbeam_epoch::pin();
        let mut link = &self.buckets[(hash as usize) & self.mask];
        loop {
            let cur = link.load(Ordering::Acquire, &guard);
            // SAFETY: as in `lookup`; additionally we hold the stripe lock, so no other writer
            // unlinks nodes of this bucket meanwhile.
            let Some(node) = (unsafe { cur.as_ref() }) else {
                return false;
            };
            if std::ptr::eq(&*node.dentry, dentry) && node.parent == parent && *node.name == *name {
                let next = node.next.load(Ordering::Acquire, &guard);
                link.store(next, Ordering::Release);
                // SAFETY: the node is now unreachable for new readers; readers that already
                // hold it are pinned, and the collector waits for them.
                unsafe { guard.defer_destroy(cur) };
                guard.flush();
                return true;
            }
            link = &node.next;
        }
    }
}

impl Drop for DentryHash {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no reader or writer can reach the table any more.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for b in self.buckets.iter() {
            let mut cur: Shared<'_, Node> = b.load(Ordering::Relaxed, guard);
            while !cur.is_null() {
                // SAFETY: exclusive access (above); each node is owned by exactly one link.
                let owned = unsafe { cur.into_owned() };
                cur = owned.next.load(Ordering::Relaxed, guard);
                drop(owned);
            }
        }
    }
}

/// Wait until garbage retired before this call has been freed (a best-effort rcu_barrier for
/// tests and shutdown): pins and flushes repeatedly so the global epoch advances.
pub fn rcu_barrier() {
    for _ in 0..256 {
        let g = crossbeam_epoch::pin();
        g.flush();
    }
}
