//! Live-object counters, one set per [`crate::Vfs`] so parallel tests do not see each other.
//! Tests use them to prove nothing leaks and nothing is freed early; `bpfvfs stats` prints them.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A counter bumped on hot paths from many threads: one cache line per stripe, each thread
/// sticking to one stripe, so concurrent walkers do not bounce a shared line.
#[derive(Debug, Default)]
pub(crate) struct StripedCounter([Stripe; 16]);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        (NEXT.fetch_add(1, Relaxed) % 16) as usize
    };
}

impl StripedCounter {
    #[inline]
    pub(crate) fn inc(&self) {
        let i = STRIPE.with(|s| *s);
        self.0[i].0.fetch_add(1, Relaxed);
    }
    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[derive(Default, Debug)]
pub struct Counters {
    /// Inodes whose memory is allocated (created, not yet freed after the grace period).
    pub(crate) inodes_live: AtomicI64,
    /// Inodes evicted (hooks run, data released) whose memory still waits for the grace period.
    pub(crate) inodes_evicted_pending_free: AtomicI64,
    pub(crate) inodes_evicted_total: AtomicU64,
    pub(crate) inodes_allocated_total: AtomicU64,
    pub(crate) dentries_live: AtomicI64,
    pub(crate) dentries_hashed: AtomicI64,
    pub(crate) addons_allocated: AtomicU64,
    pub(crate) files_open: AtomicI64,
    /// Watch (event) marks attached to inodes.
    pub(crate) watch_marks_attached: AtomicI64,
    /// Destruction watches attached and not yet fired or cancelled.
    pub(crate) destroy_watches_armed: AtomicI64,
    /// Marks of either kind whose memory is not yet freed.
    pub(crate) watch_marks_allocated: AtomicI64,
    pub(crate) walks_lockless: StripedCounter,
    pub(crate) walks_locked: StripedCounter,
}

/// A snapshot of one VFS instance's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsStats {
    pub inodes_live: i64,
    pub inodes_evicted_pending_free: i64,
    pub inodes_allocated_total: u64,
    pub inodes_evicted_total: u64,
    pub dentries_live: i64,
    pub dentries_hashed: i64,
    pub addons_allocated_total: u64,
    pub files_open: i64,
    #[serde(default)]
    pub watch_marks: i64,
    #[serde(default)]
    pub destroy_watches: i64,
    #[serde(default)]
    pub watch_marks_live: i64,
    pub walks_lockless: u64,
    pub walks_locked: u64,
}

impl Counters {
    pub fn snapshot(&self) -> VfsStats {
        VfsStats {
            inodes_live: self.inodes_live.load(Relaxed),
            inodes_evicted_pending_free: self.inodes_evicted_pending_free.load(Relaxed),
            inodes_allocated_total: self.inodes_allocated_total.load(Relaxed),
            inodes_evicted_total: self.inodes_evicted_total.load(Relaxed),
            dentries_live: self.dentries_live.load(Relaxed),
            dentries_hashed: self.dentries_hashed.load(Relaxed),
            addons_allocated_total: self.addons_allocated.load(Relaxed),
            files_open: self.files_open.load(Relaxed),
            watch_marks: self.watch_marks_attached.load(Relaxed),
            destroy_watches: self.destroy_watches_armed.load(Relaxed),
            watch_marks_live: self.watch_marks_allocated.load(Relaxed),
            walks_lockless: self.walks_lockless.sum(),
            walks_locked: self.walks_locked.sum(),
        }
    }
}
