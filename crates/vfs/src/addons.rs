//! The per-inode extension slot ("addons", seed 000).
//!
//! Every inode carries one pointer-sized field, empty until some layer first needs per-inode
//! state. The first user allocates an [`InodeAddons`] and installs it by compare-and-swap; if
//! another thread won the race, the loser's allocation is dropped and the winner's used (the
//! `file_f_owner_allocate` pattern). The struct is freed with the inode's memory, after the
//! grace period, never earlier: readers holding an `&Inode` may use it without further checks.
//!
//! The VFS does not know what lives in the slots: the watch-mark layer and the BPF local
//! storage layer each own one typed slot (see [`AddonSlot`]), set once per inode by the same
//! racy-install rule. Nothing else grows the inode.

use once_cell::race::OnceBox;
use std::any::Any;
use std::sync::atomic::AtomicU32;

/// Which extension a slot holds. One slot per client layer, fixed at compile time so that
/// reaching a slot is an array index, not a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum AddonSlot {
    /// fsnotify-like watch marks (the connector of marks on this inode).
    Watch = 0,
    /// BPF inode local storage (the `bpf_local_storage` of this inode).
    LocalStorage = 1,
}

const SLOTS: usize = 2;

/// The on-demand per-inode struct: an event mask readable without locks plus one
/// install-once slot per client layer.
#[derive(Default)]
pub struct InodeAddons {
    /// Union of the event masks of all watch marks on the inode (fsnotify's i_fsnotify_mask),
    /// so an event on an unwatched inode costs one load.
    pub watch_mask: AtomicU32,
    slots: [OnceBox<Box<dyn Any + Send + Sync>>; SLOTS],
}

impl InodeAddons {
    /// The value in `slot`, if one was installed.
    pub fn get(&self, slot: AddonSlot) -> Option<&(dyn Any + Send + Sync)> {
        self.slots[slot as usize].get().map(|b| &**b)
    }

    /// The value in `slot`, installing `init()` if empty. Racing installers each build a
    /// value; exactly one is kept and the others are dropped (never blocks, never waits).
    pub fn get_or_install(
        &self,
        slot: AddonSlot,
        init: impl FnOnce() -> Box<dyn Any + Send + Sync>,
    ) -> &(dyn Any + Send + Sync) {
        &**self.slots[slot as usize].get_or_init(|| Box::new(init()))
    }
}

/// The slot itself: one pointer in the inode.
#[derive(Default)]
pub struct AddonsCell(OnceBox<InodeAddons>);

impl AddonsCell {
    pub fn get(&self) -> Option<&InodeAddons> {
        self.0.get()
    }

    /// Allocate on first use by compare-and-swap; the loser of a race frees its copy.
    /// `on_alloc` runs once per cell, for the allocation that was installed: racing losers
    /// also build a struct (OnceBox runs every racer's initializer) but are not counted.
    pub fn get_or_alloc(&self, on_alloc: impl FnOnce()) -> &InodeAddons {
        if let Some(a) = self.0.get() {
            return a;
        }
        let mut mine: *const InodeAddons = std::ptr::null();
        let a = self.0.get_or_init(|| {
            let b = Box::new(InodeAddons::default());
            mine = &*b;
            b
        });
        // Our box is the installed one iff the addresses match (a loser's box is freed only
        // after the winner's is in place, so the two cannot share an address).
        if std::ptr::eq(a, mine) {
            on_alloc();
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn racing_installers_keep_exactly_one() {
        let cell = Arc::new(AddonsCell::default());
        let ptrs: Vec<usize> = (0..8)
            .map(|_| {
                let c = cell.clone();
                std::thread::spawn(move || c.get_or_alloc(|| ()) as *const _ as usize)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(ptrs.windows(2).all(|w| w[0] == w[1]));
        let a = cell.get().unwrap();
        let v = a.get_or_install(AddonSlot::Watch, || Box::new(7u32));
        assert_eq!(v.downcast_ref::<u32>(), Some(&7));
        let v2 = a.get_or_install(AddonSlot::Watch, || Box::new(9u32));
        assert_eq!(v2.downcast_ref::<u32>(), Some(&7));
        assert!(a.get(AddonSlot::LocalStorage).is_none());
    }
}
