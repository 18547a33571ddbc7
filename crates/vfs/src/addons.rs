//! The per-inode extension slot ("addons", seed 000).
//!
//! Every inode carries one pointer-sized field, empty until some layer first needs per-inode
//! state. The first user allocates an [`InodeAddons`] and installs it by compare-and-swap; if
//! another thread won the race, the loser's allocation is dropped and the winner's used (the
//! `file_f_owner_allocate` pattern). The struct is freed with the inode's memory, after the
//! grace period, never earlier: readers holding an `&Inode` may use it without further checks.
//!
//! The VFS does not know what lives in the slots: the watch-mark layer and the BPF local
//! storage layer each own one slot (see [`AddonSlot`]). A slot has two parts: a typed value
//! set once per inode by the same racy-install rule and freed with the inode's memory
//! ([`InodeAddons::get_or_install`]), and an opaque pointer word ([`InodeAddons::word`]) the
//! client sets and clears itself — for state that must die at eviction, not at memory free
//! (a client using it releases it from an eviction hook; the VFS never reads it).
//!
//! This file also holds the other generic extension points a layer can choose from
//! ([`InodeExtensions`], per VFS): one pointer word in every inode ([`crate::Inode::ext_word`],
//! claimed by at most one layer), a blob of words allocated with every inode once a layer has
//! reserved space in it (the LSM blob's model), and per-VFS state for each client layer. They
//! exist so a layer can be measured with its per-inode pointer in any of these places (seed
//! 001); none of them knows what the layer stores.

use once_cell::race::OnceBox;
use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Which extension a slot holds. One slot per client layer, fixed at compile time so that
/// reaching a slot is an array index, not a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum AddonSlot {
    /// fsnotify-like watch marks (the connector of marks on this inode).
    Watch = 0,
    /// BPF inode local storage (the `bpf_local_storage` of this inode).
    LocalStorage = 1,
    /// A layer's file operations for this inode (`fileops_override.rs`).
    FileOps = 2,
}

const SLOTS: usize = 3;

/// The on-demand per-inode struct: an event mask readable without locks plus, per client
/// layer, one install-once typed value and one client-managed pointer word.
#[derive(Default)]
pub struct InodeAddons {
    /// Union of the event masks of all watch marks on the inode (fsnotify's i_fsnotify_mask),
    /// so an event on an unwatched inode costs one load.
    pub watch_mask: AtomicU32,
    slots: [OnceBox<Box<dyn Any + Send + Sync>>; SLOTS],
    words: [AtomicPtr<()>; SLOTS],
}

impl InodeAddons {
    /// The client-managed pointer word of `slot` (null until the client stores something).
    /// The VFS never dereferences or frees it: a client that stores a pointer here clears it
    /// and releases what it points to no later than the inode's eviction (an eviction hook),
    /// because the word's memory goes with the inode's.
    #[inline]
    pub fn word(&self, slot: AddonSlot) -> &AtomicPtr<()> {
        &self.words[slot as usize]
    }

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
    #[inline]
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

/// Per-VFS registry of the generic inode extension points, shared by a [`crate::Vfs`] and all
/// its superblocks (so it is reachable from any inode: `inode.sb().inode_ext()`).
///
/// - **Inode word**: every inode has one pointer word ([`crate::Inode::ext_word`]); one layer
///   may claim it ([`InodeExtensions::claim_inode_word`]). It costs 8 bytes in every inode
///   whether or not anyone claims it (the price seed 001 argues about).
/// - **Blob**: layers reserve pointer-sized words ([`InodeExtensions::reserve_blob_words`]);
///   every inode allocated afterwards gets a zeroed blob of all reserved words, allocated with
///   it and freed with its memory ([`crate::Inode::blob_word`]). Inodes allocated before a
///   reservation have a shorter (or no) blob, as an LSM enabled late would see.
/// - **Client state**: one install-once value per [`AddonSlot`] for the layer's per-VFS
///   state, reachable in one load from any inode ([`InodeExtensions::client_ref`]).
#[derive(Default)]
pub struct InodeExtensions {
    blob_words: AtomicUsize,
    word_claimed: AtomicBool,
    clients: [OnceBox<Box<dyn Any + Send + Sync>>; SLOTS],
    /// Address and type of each installed client value, for [`InodeExtensions::client_ref`].
    client_fast: [OnceLock<(usize, TypeId)>; SLOTS],
}

impl InodeExtensions {
    /// Reserve `words` pointer-sized words in the blob of every inode allocated from now on.
    /// Returns the index of the first reserved word.
    pub fn reserve_blob_words(&self, words: usize) -> usize {
        self.blob_words.fetch_add(words, Ordering::AcqRel)
    }

    /// Words currently reserved (the blob size of an inode allocated now).
    pub fn blob_words(&self) -> usize {
        self.blob_words.load(Ordering::Acquire)
    }

    /// Claim the per-inode pointer word for one layer. False if another layer has it.
    pub fn claim_inode_word(&self) -> bool {
        !self.word_claimed.swap(true, Ordering::AcqRel)
    }

    /// The per-VFS state of the layer owning `slot`, if installed.
    pub fn client(&self, slot: AddonSlot) -> Option<&(dyn Any + Send + Sync)> {
        self.clients[slot as usize].get().map(|b| &**b)
    }

    /// The per-VFS state of `slot`, installing `init()` if empty (racing installers: one
    /// value is kept, the others dropped). The flag says whether this call's value was the
    /// one installed, so exactly one caller does the one-time setup that goes with it.
    pub fn client_or_install(
        &self,
        slot: AddonSlot,
        init: impl FnOnce() -> Box<dyn Any + Send + Sync>,
    ) -> (&(dyn Any + Send + Sync), bool) {
        let mut mine: *const () = std::ptr::null();
        let v: &(dyn Any + Send + Sync) = &**self.clients[slot as usize].get_or_init(|| {
            let b = Box::new(init());
            mine = &**b as *const (dyn Any + Send + Sync) as *const ();
            b
        });
        let addr = v as *const (dyn Any + Send + Sync) as *const ();
        let _ = self.client_fast[slot as usize].set((addr as usize, (*v).type_id()));
        (v, std::ptr::eq(addr, mine))
    }

    /// The installed per-VFS state of `slot` if it is a `T`: one load and a type-id compare,
    /// no virtual call, for hot paths.
    #[inline]
    pub fn client_ref<T: Any>(&self, slot: AddonSlot) -> Option<&T> {
        let (addr, ty) = self.client_fast[slot as usize].get()?;
        if *ty != TypeId::of::<T>() {
            return None;
        }
        // SAFETY: `addr` is the address of the value installed in `clients[slot]`, whose
        // concrete type is `T` (checked above); install-once values live as long as `self`.
        Some(unsafe { &*(*addr as *const T) })
    }
}

/// The blob of an inode: a thin pointer to `[len, word 0, word 1, ...]`, or null. Thin (8
/// bytes in the inode, like `i_security`); the length lives in the allocation so a blob stays
/// valid whatever is reserved after its inode was allocated.
pub(crate) struct InodeBlob(Option<std::ptr::NonNull<usize>>);

// SAFETY: the words are atomics; the length word is written once before the inode is shared.
unsafe impl Send for InodeBlob {}
// SAFETY: as above.
unsafe impl Sync for InodeBlob {}

impl InodeBlob {
    fn layout(words: usize) -> std::alloc::Layout {
        std::alloc::Layout::array::<usize>(words + 1).expect("blob size")
    }

    pub(crate) fn new(words: usize) -> InodeBlob {
        if words == 0 {
            return InodeBlob(None);
        }
        // SAFETY: a non-zero-sized layout; the result is checked; zeroed memory is a valid
        // null AtomicPtr for every word.
        unsafe {
            let p = std::alloc::alloc_zeroed(Self::layout(words)) as *mut usize;
            let Some(p) = std::ptr::NonNull::new(p) else {
                std::alloc::handle_alloc_error(Self::layout(words));
            };
            p.as_ptr().write(words);
            InodeBlob(Some(p))
        }
    }

    /// Word `i`, if this blob has it.
    #[inline]
    pub(crate) fn word(&self, i: usize) -> Option<&AtomicPtr<()>> {
        let p = self.0?;
        // SAFETY: the allocation holds `len + 1` words, word 0 being the length, written
        // before the inode was published and never changed; AtomicPtr<()> has usize's size
        // and alignment.
        unsafe {
            if i >= *p.as_ptr() {
                return None;
            }
            Some(&*(p.as_ptr().add(1 + i) as *const AtomicPtr<()>))
        }
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        // SAFETY: as in `word`.
        self.0.map_or(0, |p| unsafe { (*p.as_ptr() + 1) * 8 })
    }
}

impl Drop for InodeBlob {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            // SAFETY: allocated in `new` with this layout (length from word 0), freed once.
            unsafe {
                let words = *p.as_ptr();
                std::alloc::dealloc(p.as_ptr() as *mut u8, Self::layout(words));
            }
        }
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
        assert!(a
            .word(AddonSlot::LocalStorage)
            .load(Ordering::Relaxed)
            .is_null());
    }

    #[test]
    fn extensions_blob_claim_and_clients() {
        let e = InodeExtensions::default();
        assert!(e.claim_inode_word());
        assert!(!e.claim_inode_word());
        assert_eq!(e.reserve_blob_words(1), 0);
        assert_eq!(e.reserve_blob_words(2), 1);
        let b = InodeBlob::new(e.blob_words());
        assert_eq!(b.allocated_bytes(), 32);
        assert!(b.word(2).unwrap().load(Ordering::Relaxed).is_null());
        assert!(b.word(3).is_none());
        assert!(InodeBlob::new(0).word(0).is_none());
        assert!(e.client_ref::<u64>(AddonSlot::LocalStorage).is_none());
        let (v, mine) = e.client_or_install(AddonSlot::LocalStorage, || Box::new(5u64));
        assert!(mine);
        assert_eq!(v.downcast_ref::<u64>(), Some(&5));
        let (_, mine2) = e.client_or_install(AddonSlot::LocalStorage, || Box::new(6u64));
        assert!(!mine2);
        assert_eq!(e.client_ref::<u64>(AddonSlot::LocalStorage), Some(&5));
        assert!(e.client_ref::<u32>(AddonSlot::LocalStorage).is_none());
    }
}
