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
//! call sites are inlined; the delivery path is out of line). Installed, for a change an
//! edge's own request asked for when the listeners all ignore that edge
//! ([`ChangeListener::ignores_requested_by`]): a thread-local read, one more relaxed load and
//! a compare. Otherwise: an epoch pin and one virtual call per listener. Figures: docs/benchmarks.md,
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

    /// The edge whose requested changes this listener ignores (its own), if any. When every
    /// installed listener names the same edge, such changes are dropped at the call site
    /// without calling anyone (the cost an edge's own requests pay: a thread-local read and
    /// a compare).
    fn ignores_requested_by(&self) -> Option<Origin> {
        None
    }

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
    /// The origin every listener ignores requested changes of (0: none in common).
    skip: AtomicU64,
    list: Atomic<List>,
    write: Mutex<u64>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            on: AtomicBool::new(false),
            skip: AtomicU64::new(0),
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
        let mut skip = v.first().and_then(|(_, l)| l.ignores_requested_by());
        if v.iter().any(|(_, l)| l.ignores_requested_by() != skip) {
            skip = None;
        }
        self.list.store(Owned::new(v), Ordering::Release);
        // A change racing with this replacement may be judged by the old value: listeners
        // must tolerate a change they would have skipped (they check it themselves too).
        self.skip.store(skip.map_or(0, |o| o.0), Ordering::Relaxed);
        self.on.store(on, Ordering::Relaxed);
        if !old.is_null() {
            // SAFETY: unreachable for new readers; pinned readers are waited for.
            unsafe { guard.defer_destroy(old) };
            guard.flush();
        }
    }

    /// Deliver unless every listener ignores it (see `ignores_requested_by`).
    #[inline]
    fn maybe_deliver<'a>(&self, c: impl FnOnce(Option<Origin>) -> Change<'a>, requested: bool) {
        let o = origin();
        if requested {
            let skip = self.skip.load(Ordering::Relaxed);
            if skip != 0 && o.is_some_and(|o| o.0 == skip) {
                return;
            }
        }
        self.deliver(&c(o));
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
            self.changes.maybe_deliver(
                |origin| Change {
                    kind,
                    parent: parent.ino(),
                    name,
                    child: child.ino(),
                    origin,
                    requested,
                },
                requested,
            );
        }
    }

    /// Report that a mount or unmount at `mp` made its name show `now` (the mounted root,
    /// or the directory uncovered). Skipped for a mount point that is itself a mount's root
    /// (its name lives in the mount below, which this does not look up).
    pub(crate) fn note_mount(&self, mp: &crate::dentry::Dentry, now: &Inode) {
        if !self.changes.on.load(Ordering::Relaxed) {
            return;
        }
        if let Some(p) = mp.parent() {
            self.note_entry(ChangeKind::Added, p.inode(), &mp.name(), now, true);
        }
    }

    /// Report that the attributes (and with `data`, the contents) of `inode` changed by an
    /// operation asked for `inode`.
    #[inline]
    pub(crate) fn note_attr(&self, inode: &Inode, data: bool) {
        if self.changes.on.load(Ordering::Relaxed) {
            self.changes.maybe_deliver(
                |origin| Change {
                    kind: ChangeKind::Attr { data },
                    parent: 0,
                    name: &[],
                    child: inode.ino(),
                    origin,
                    requested: true,
                },
                true,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cred, Vfs};

    #[derive(Default)]
    struct Rec {
        seen: Mutex<Vec<String>>,
        children: Mutex<Vec<u64>>,
        ignore: Option<Origin>,
    }

    impl ChangeListener for Rec {
        fn changed(&self, c: &Change<'_>) {
            let kind = match c.kind {
                ChangeKind::Added => "add".to_string(),
                ChangeKind::Removed { last_link } => format!("rm{}", u8::from(last_link)),
                ChangeKind::Attr { data } => format!("attr{}", u8::from(data)),
            };
            self.children.lock().unwrap().push(c.child);
            self.seen.lock().unwrap().push(format!(
                "{kind} {} {} req={} own={}",
                String::from_utf8_lossy(c.name),
                c.child != 0,
                c.requested,
                c.origin.is_some()
            ));
        }
        fn ignores_requested_by(&self) -> Option<Origin> {
            self.ignore
        }
    }

    impl Rec {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.seen.lock().unwrap())
        }
    }

    #[test]
    fn every_namespace_change_is_reported_with_its_origin() {
        let vfs = Vfs::new_memfs();
        let root = Cred::root();
        vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
        let rec = Arc::new(Rec::default());
        let id = vfs.add_change_listener(rec.clone());
        vfs.write_file(&root, b"/d/f", b"x").unwrap();
        vfs.link(&root, b"/d/f", b"/d/g", false).unwrap();
        vfs.rename(&root, b"/d/g", b"/d/h", 0).unwrap();
        vfs.chmod(&root, b"/d/h", 0o600).unwrap();
        vfs.unlink(&root, None, b"/d/f").unwrap();
        vfs.unlink(&root, None, b"/d/h").unwrap();
        assert_eq!(
            rec.take(),
            [
                "add f true req=true own=false",
                "attr1  true req=true own=false", // the write (no name: an inode change)
                "add g true req=true own=false",
                "rm0 g true req=true own=false", // renamed away: the inode lives on
                "add h true req=true own=false",
                "attr0  true req=true own=false", // chmod
                "rm0 f true req=true own=false",  // h still names it
                "rm1 h true req=true own=false",
            ]
        );
        // Marked as an edge's thread: the origin is carried.
        let o = Origin::new();
        set_origin(Some(o));
        vfs.mkdir(&root, None, b"/d/e", 0o755).unwrap();
        set_origin(None);
        assert_eq!(rec.take(), ["add e true req=true own=true"]);
        // A mount and an unmount change what a name shows.
        let covered = vfs.stat(&root, None, b"/d/e", true).unwrap().ino;
        rec.children.lock().unwrap().clear();
        let m = vfs.mount_type(&root, "tmpfs", "", b"/d/e").unwrap();
        let mounted_root = m.root().inode().ino();
        vfs.umount(&root, b"/d/e").unwrap();
        let seen = rec.take();
        assert_eq!(
            seen,
            [
                "add e true req=true own=false",
                "add e true req=true own=false"
            ]
        );
        assert_eq!(*rec.children.lock().unwrap(), [mounted_root, covered]);
        assert!(vfs.remove_change_listener(id));
        assert!(!vfs.remove_change_listener(id));
        vfs.rmdir(&root, None, b"/d/e").unwrap();
        assert!(rec.take().is_empty());
    }

    #[test]
    fn requested_changes_of_the_ignored_edge_are_dropped_at_the_call_site() {
        let vfs = Vfs::new_memfs();
        let root = Cred::root();
        let own = Origin::new();
        let rec = Arc::new(Rec {
            ignore: Some(own),
            ..Default::default()
        });
        vfs.add_change_listener(rec.clone());
        set_origin(Some(own));
        vfs.mkdir(&root, None, b"/a", 0o755).unwrap();
        set_origin(Some(Origin::new()));
        vfs.mkdir(&root, None, b"/b", 0o755).unwrap();
        set_origin(None);
        vfs.mkdir(&root, None, b"/c", 0o755).unwrap();
        assert_eq!(
            rec.take(),
            [
                "add b true req=true own=true",
                "add c true req=true own=false"
            ]
        );
        // A second listener that ignores nobody: the edge's changes reach both again
        // (each listener filters for itself).
        let other = Arc::new(Rec::default());
        vfs.add_change_listener(other.clone());
        set_origin(Some(own));
        vfs.mkdir(&root, None, b"/d", 0o755).unwrap();
        set_origin(None);
        assert_eq!(rec.take(), ["add d true req=true own=true"]);
        assert_eq!(other.take(), ["add d true req=true own=true"]);
    }
}
