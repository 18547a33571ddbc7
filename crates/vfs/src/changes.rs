//! Namespace-change listeners: who else caches this tree must hear when it changes.
//!
//! An edge that lets another cache hold names and attributes of this tree (the FUSE mount:
//! the host kernel's dcache and attribute cache, for entry_ttl/attr_ttl) must be told when
//! the tree changes by any other way than through that edge: the control socket pinning or
//! unlinking, a filesystem adding or removing its own entries (kernfs-like trees, exposed
//! files), in-process library calls. A [`ChangeListener`] installed with
//! [`Vfs::add_change_listener`] is told, for every entry bound or unbound in any directory,
//! `(parent inode number, name, child inode number)`, and for attribute or data changes the
//! inode number ([`Change`]).
//!
//! ## Origin
//! Each edge takes a tag ([`Origin::new`]) and sets it on the threads serving its requests
//! ([`set_origin`]); every change carries the tag of the thread that made it and whether it
//! is the effect the operation was asked for ([`Change::requested`]: the name a
//! create/unlink/rename/link/mkobj named, the inode a setattr/write changed) or a side effect
//! (a filesystem's own entries, [`Vfs::fs_add_entry`] / [`Vfs::fs_remove_entry`], which may
//! run inside any request, e.g. an eviction that removes an exposed file). An edge skips the
//! changes its own requests asked for (its client already knows them) and forwards the rest.
//!
//! ## Rules for listeners
//! `changed` is called where the change is made: under the directory lock (so one
//! directory's changes are reported in the order they happened) and sometimes inside an
//! eviction. It must not block, sleep, take a lock that is held while calling into the VFS,
//! or call into the VFS; queue and return. `sync` is called with no VFS lock held, by an
//! edge that wants the changes made so far to be delivered before it answers its client.
//!
//! ## Cost
//! No listener installed: one relaxed load of a flag and a not-taken branch per change (the
//! call sites are inlined; the delivery path is out of line). Installed: an epoch pin, a
//! thread-local read, and one virtual call per listener. Figures: docs/benchmarks.md,
//! "Change listeners".

use crate::inode::Inode;
use crate::Vfs;
use crossbeam_epoch::{Atomic, Owned};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// `name` in `parent` now names `child` (create, mkdir, link, mkobj, rename target,
    /// a filesystem's own entry).
    Added,
    /// `name` in `parent` no longer names `child`. `last_link`: the child has no name left
    /// (its link count is zero), so a cache may forget the inode too.
    Removed { last_link: bool },
    /// The attributes of `child` changed (`parent` is 0, `name` empty); `data`: its contents
    /// or size changed too.
    Attr { data: bool },
}

/// An edge's tag, carried by the threads that serve its requests (0 is "none").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin(pub u64);

static NEXT_ORIGIN: AtomicU64 = AtomicU64::new(1);

impl Origin {
    /// A tag no other edge in the process has.
    pub fn new() -> Origin {
        Origin(NEXT_ORIGIN.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Origin {
    fn default() -> Self {
        Origin::new()
    }
}

thread_local! {
    static ORIGIN: Cell<u64> = const { Cell::new(0) };
}

/// Mark this thread as serving requests of `o` (None: acting for nobody in particular).
pub fn set_origin(o: Option<Origin>) {
    ORIGIN.with(|c| c.set(o.map_or(0, |o| o.0)));
}

/// The edge this thread serves, if one marked it.
pub fn origin() -> Option<Origin> {
    let v = ORIGIN.with(|c| c.get());
    (v != 0).then_some(Origin(v))
}

/// One change, as a listener sees it.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub kind: ChangeKind,
    /// Inode number of the directory (0 for [`ChangeKind::Attr`]).
    pub parent: u64,
    /// The entry's name (empty for [`ChangeKind::Attr`]).
    pub name: &'a [u8],
    /// Inode number of the entry's inode.
    pub child: u64,
    /// The edge whose thread made the change.
    pub origin: Option<Origin>,
    /// The change is what the operation was asked to do (see the module comment); false for
    /// a filesystem's own entries, which no client asked for.
    pub requested: bool,
}

/// Told of every change to the tree. See the module comment for what an implementation
/// may do inside `changed`.
pub trait ChangeListener: Send + Sync {
    fn changed(&self, c: &Change<'_>);

    /// Deliver what was reported so far before returning (bounded wait). Called with no
    /// VFS lock held; the default does nothing.
    fn sync(&self) {}
}

/// Handle of an installed listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerId(u64);

type List = Vec<(u64, Arc<dyn ChangeListener>)>;

/// The listeners of one tree: an epoch-published list (readers never lock), replaced
/// under `write`.
pub(crate) struct Listeners {
    /// Whether any listener is installed: the one load every change site pays.
    on: AtomicBool,
    list: Atomic<List>,
    write: Mutex<u64>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            on: AtomicBool::new(false),
            list: Atomic::null(),
            write: Mutex::new(1),
        }
    }
}

impl Listeners {
    fn replace(&self, f: impl FnOnce(&mut List)) {
        let guard = crossbeam_epoch::pin();
        let old = self.list.load(Ordering::Acquire, &guard);
        // SAFETY: snapshots are only freed through defer_destroy after being replaced, and
        // the caller holds `write`, so `old` stays valid while we copy it.
        let mut v = unsafe { old.as_ref() }.cloned().unwrap_or_default();
        f(&mut v);
        let on = !v.is_empty();
        self.list.store(Owned::new(v), Ordering::Release);
        self.on.store(on, Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: unreachable for new readers; pinned readers are waited for.
            unsafe { guard.defer_destroy(old) };
            guard.flush();
        }
    }

    #[cold]
    #[inline(never)]
    fn deliver(&self, c: &Change<'_>) {
        let guard = crossbeam_epoch::pin();
        let l = self.list.load(Ordering::Acquire, &guard);
        // SAFETY: published with a release store, freed only after the grace period.
        if let Some(v) = unsafe { l.as_ref() } {
            for (_, x) in v {
                x.changed(c);
            }
        }
    }

    fn snapshot(&self) -> List {
        let guard = crossbeam_epoch::pin();
        let l = self.list.load(Ordering::Acquire, &guard);
        // SAFETY: as in `deliver`.
        unsafe { l.as_ref() }.cloned().unwrap_or_default()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader can hold the list any more.
        unsafe {
            let g = crossbeam_epoch::unprotected();
            let t = self
                .list
                .swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, g);
            if !t.is_null() {
                drop(t.into_owned());
            }
        }
    }
}

impl Vfs {
    /// Install a listener told of every change to this tree (see [`crate::changes`]).
    pub fn add_change_listener(&self, l: Arc<dyn ChangeListener>) -> ListenerId {
        let mut next = self.changes.write.lock().unwrap_or_else(|e| e.into_inner());
        let id = *next;
        *next += 1;
        self.changes.replace(|v| v.push((id, l)));
        ListenerId(id)
    }

    /// Remove a listener; whether it was installed. A change being delivered concurrently
    /// may still reach it once.
    pub fn remove_change_listener(&self, id: ListenerId) -> bool {
        let _w = self.changes.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        self.changes.replace(|v| {
            let n = v.len();
            v.retain(|(i, _)| *i != id.0);
            found = v.len() != n;
        });
        found
    }

    /// Ask every listener to deliver the changes reported so far (an edge calls this before
    /// answering a request that changed the tree, with no VFS lock held).
    pub fn sync_changes(&self) {
        if !self.changes.on.load(Ordering::Relaxed) {
            return;
        }
        for (_, l) in self.changes.snapshot() {
            l.sync();
        }
    }

    /// Report that `name` in `parent` was bound to or unbound from `child`.
    #[inline]
    pub(crate) fn note_entry(
        &self,
        kind: ChangeKind,
        parent: &Inode,
        name: &[u8],
        child: &Inode,
        requested: bool,
    ) {
        // The whole cost with no listener: this load and branch.
        if self.changes.on.load(Ordering::Relaxed) {
            self.changes.deliver(&Change {
                kind,
                parent: parent.ino(),
                name,
                child: child.ino(),
                origin: origin(),
                requested,
            });
        }
    }

    /// Report that the attributes (and with `data`, the contents) of `inode` changed by an
    /// operation asked for `inode`.
    #[inline]
    pub(crate) fn note_attr(&self, inode: &Inode, data: bool) {
        if self.changes.on.load(Ordering::Relaxed) {
            self.changes.deliver(&Change {
                kind: ChangeKind::Attr { data },
                parent: 0,
                name: &[],
                child: inode.ino(),
                origin: origin(),
                requested: true,
            });
        }
    }
}
