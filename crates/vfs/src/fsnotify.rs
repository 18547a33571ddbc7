//! Watch marks, after fsnotify: groups, marks, per-inode connectors, event delivery with
//! inotify's semantics, and inode-destruction watches (seed 002's `bpf_watch_inode`).
//!
//! ## Objects
//! - [`Group`]: one consumer. Its own bounded queue of [`Event`]s (overflow reported once, as
//!   inotify's `IN_Q_OVERFLOW` with wd -1), its marks by watch descriptor, a condition variable
//!   for blocking reads. Dropping (or [`Group::close`]) the group removes all its marks.
//! - `Mark`: one group's interest in one inode (event mask + `IN_ONESHOT`/`IN_EXCL_UNLINK`),
//!   or a destruction watch (a callback, no group). A group has at most one mark per inode;
//!   adding again modifies it, as `inotify_add_watch` does.
//! - `Connector`: the list of marks on one inode, in the inode's addons slot
//!   ([`AddonSlot::Watch`]), installed on the first mark by compare-and-swap and never
//!   detached: it is freed with the inode's memory. `InodeAddons::watch_mask` is the union of
//!   the event masks on the list, so an event on an unwatched inode costs one load; and
//!   [`active`] (a process-wide count of attached event marks) lets every hook return after a
//!   single load while nothing at all is watched.
//!
//! ## Who holds what
//! - A group holds its marks (`Arc<Mark>` by wd); an event mark holds its group
//!   (`Arc<GroupInner>`). The cycle is broken explicitly: closing the group takes every mark
//!   out of the group and off its inode.
//! - A connector's list holds `Arc<Mark>`s; a mark holds only a `Weak<Inode>`. Marks never
//!   hold an inode reference (i_count): a watched inode is evicted exactly as an unwatched
//!   one, and fsnotify code never drops a counted reference, so it never triggers eviction
//!   while holding one of its locks. When it upgrades the `Weak` (to take a mark off), it
//!   drops that `Arc` only after releasing its locks, since it may be the last. (Linux's
//!   inotify marks pin the inode; ours need not, because every filesystem here keeps named
//!   inodes in the dcache until unmount.)
//! - A [`DestroyWatch`] handle holds its mark; dropping the handle leaves the watch armed.
//!
//! ## Lock order
//! After every VFS lock of `lib.rs` (directory locks, links/attribute locks), never before:
//! 1. `GroupInner::marks` (mark_mutex): add/modify/remove marks of one group.
//! 2. `Connector::writer`: changes to one inode's mark list and union mask.
//! 3. `GroupInner::queue`: the event queue (leaf).
//!
//! Event delivery takes only 3, under an epoch guard. Directory events (create, delete,
//! moves) are delivered under the directory lock, so one directory's events are queued in
//! the order its entries changed. No fsnotify lock is held while a destruction callback runs
//! or while a cancelled callback is dropped; the eviction path drains the connector (2), lets
//! go, and only then takes group locks (1) per mark, as Linux's `fsnotify_destroy_marks` does.
//!
//! ## Grace period
//! A connector's list is an immutable `Vec` published through crossbeam-epoch: delivery pins
//! and iterates with no lock; writers (under `writer`) copy, modify, swap, and retire the old
//! `Vec` with `defer_destroy`. So a mark taken off an inode may still be seen by a delivery
//! that loaded the old list. That delivery is made harmless by the mark's `alive` flag, which
//! is read and cleared only under the group's queue lock: once `IN_IGNORED` is queued for a
//! wd, no event for that wd follows it.
//!
//! ## Destruction watches
//! [`watch_destruction`] registers a callback that runs exactly once, in the evicting thread,
//! when the inode is evicted (last link and last reference gone, or its filesystem
//! unmounted), with no VFS or fsnotify lock held; the mark is gone afterwards.
//! [`DestroyWatch::cancel`] and eviction race on one compare-and-swap of the mark's state:
//! exactly one of them wins, so the callback either runs (cancel returns `false`) or is
//! dropped uncalled (cancel returns `true`). A watch added after eviction started fails with
//! ENOENT: the attach checks the inode's freeing flag under the connector lock, and a SeqCst
//! fence on both sides (attach: after installing the connector; eviction: before looking for
//! it) makes sure one of the two sees the other.
//!
//! ## When events fire (inotify's rules)
//! - `IN_DELETE_SELF` fires when the last link goes and the dentry of that name is unused
//!   (Linux's `d_delete`), else when the inode is evicted (the last open file closes).
//!   Every event mark then gets `IN_IGNORED`. At unmount, marks still present get
//!   `IN_UNMOUNT` then `IN_IGNORED`.
//! - Events on a non-directory's or directory's contents/attributes (access, modify, attrib,
//!   open, close) go to the object's marks and, with the object's name, to its parent's.
//!   Link-count changes and `IN_MOVE_SELF` go to the object's marks only.
//! - Consecutive identical events (wd, mask, name) in a queue are merged, as inotify does.
//!
//! ## Consuming events (what `bpfvfs watch PATH` needs)
//! ```no_run
//! use bpfvfs_vfs::fsnotify::{mask_names, Group, ReadError, IN_ALL_EVENTS};
//! use bpfvfs_vfs::{Cred, Vfs};
//! use std::{sync::Arc, time::Duration};
//!
//! let vfs = Vfs::new_memfs();
//! let group = Arc::new(Group::default());
//! let wd = group.add_watch(&vfs, &Cred::root(), b"/", IN_ALL_EVENTS).unwrap();
//! // Another thread (a signal handler, a closed socket) calls group.wake() or close().
//! loop {
//!     match group.read_events(64, Some(Duration::from_secs(1))) {
//!         Ok(events) => {
//!             for e in events {
//!                 println!("{} {} {:?}", e.wd, mask_names(e.mask).join(","), e.name);
//!             }
//!         }
//!         Err(ReadError::Woken) | Err(ReadError::Closed) => break,
//!     }
//! }
//! # let _ = wd;
//! ```

use crate::addons::{AddonSlot, InodeAddons};
use crate::dentry::Dentry;
use crate::errno::{Errno, Result};
use crate::file::File;
use crate::inode::Inode;
use crate::mount::PathRef;
use crate::namei::{LOOKUP_DIRECTORY, LOOKUP_FOLLOW};
use crate::stats::Counters;
use crate::types::{may, oflags, Cred, SetAttr};
use crate::Vfs;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

// ---- masks: Linux's inotify values, so a consumer can print them with inotify's names ----

pub const IN_ACCESS: u32 = 0x0000_0001;
pub const IN_MODIFY: u32 = 0x0000_0002;
pub const IN_ATTRIB: u32 = 0x0000_0004;
pub const IN_CLOSE_WRITE: u32 = 0x0000_0008;
pub const IN_CLOSE_NOWRITE: u32 = 0x0000_0010;
pub const IN_OPEN: u32 = 0x0000_0020;
pub const IN_MOVED_FROM: u32 = 0x0000_0040;
pub const IN_MOVED_TO: u32 = 0x0000_0080;
pub const IN_CREATE: u32 = 0x0000_0100;
pub const IN_DELETE: u32 = 0x0000_0200;
pub const IN_DELETE_SELF: u32 = 0x0000_0400;
pub const IN_MOVE_SELF: u32 = 0x0000_0800;
pub const IN_UNMOUNT: u32 = 0x0000_2000;
pub const IN_Q_OVERFLOW: u32 = 0x0000_4000;
pub const IN_IGNORED: u32 = 0x0000_8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
pub const IN_MASK_ADD: u32 = 0x2000_0000;
pub const IN_ISDIR: u32 = 0x4000_0000;
pub const IN_ONESHOT: u32 = 0x8000_0000;

pub const IN_CLOSE: u32 = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE;
pub const IN_MOVE: u32 = IN_MOVED_FROM | IN_MOVED_TO;
/// Every event a mark can ask for.
pub const IN_ALL_EVENTS: u32 = IN_ACCESS
    | IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE
    | IN_OPEN
    | IN_MOVE
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF;

/// Events about an object that its parent directory's marks also receive, with the name.
const CHILD_EVENTS: u32 = IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE | IN_OPEN;
/// Flags kept on a mark (the rest of the add flags only steer the add itself).
const MARK_FLAGS: u32 = IN_ONESHOT | IN_EXCL_UNLINK;
/// Bits that may appear in an event's mask.
const REPORTED: u32 = IN_ALL_EVENTS | IN_ISDIR | IN_UNMOUNT | IN_IGNORED | IN_Q_OVERFLOW;
/// Bits `add_watch` understands; a mask with none of them is EINVAL.
const KNOWN_BITS: u32 = IN_ALL_EVENTS
    | IN_UNMOUNT
    | IN_Q_OVERFLOW
    | IN_IGNORED
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
    | IN_MASK_CREATE
    | IN_MASK_ADD
    | IN_ISDIR
    | IN_ONESHOT;

const NAMES: [(u32, &str); 18] = [
    (IN_ACCESS, "ACCESS"),
    (IN_MODIFY, "MODIFY"),
    (IN_ATTRIB, "ATTRIB"),
    (IN_CLOSE_WRITE, "CLOSE_WRITE"),
    (IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"),
    (IN_OPEN, "OPEN"),
    (IN_MOVED_FROM, "MOVED_FROM"),
    (IN_MOVED_TO, "MOVED_TO"),
    (IN_CREATE, "CREATE"),
    (IN_DELETE, "DELETE"),
    (IN_DELETE_SELF, "DELETE_SELF"),
    (IN_MOVE_SELF, "MOVE_SELF"),
    (IN_UNMOUNT, "UNMOUNT"),
    (IN_Q_OVERFLOW, "Q_OVERFLOW"),
    (IN_IGNORED, "IGNORED"),
    (IN_ISDIR, "ISDIR"),
    (IN_ONESHOT, "ONESHOT"),
    (IN_EXCL_UNLINK, "EXCL_UNLINK"),
];

/// inotify's names of the bits set in `mask` ("CREATE", "ISDIR", ...), lowest bit first.
pub fn mask_names(mask: u32) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|&(_, n)| n)
        .collect()
}

/// The inverse of [`mask_names`] for one name (case-insensitive); also "CLOSE", "MOVE",
/// "ALL_EVENTS". For command lines (`-e create,delete`).
pub fn mask_from_name(name: &str) -> Option<u32> {
    let up = name.to_ascii_uppercase();
    let up = up.strip_prefix("IN_").unwrap_or(&up);
    match up {
        "CLOSE" => Some(IN_CLOSE),
        "MOVE" => Some(IN_MOVE),
        "ALL_EVENTS" => Some(IN_ALL_EVENTS),
        "ONLYDIR" => Some(IN_ONLYDIR),
        "DONT_FOLLOW" => Some(IN_DONT_FOLLOW),
        "MASK_ADD" => Some(IN_MASK_ADD),
        "MASK_CREATE" => Some(IN_MASK_CREATE),
        _ => NAMES.iter().find(|(_, n)| *n == up).map(|&(b, _)| b),
    }
}

/// One event, as inotify reports it: the mark's watch descriptor (-1 for an overflow), the
/// event bits (plus `IN_ISDIR` when the object is a directory), the cookie that pairs
/// `IN_MOVED_FROM` with `IN_MOVED_TO` (0 otherwise), and the child's name for events a
/// directory's mark receives about an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    pub name: Option<Box<[u8]>>,
}

impl Event {
    pub fn mask_names(&self) -> Vec<&'static str> {
        mask_names(self.mask)
    }
    pub fn is_overflow(&self) -> bool {
        self.mask & IN_Q_OVERFLOW != 0
    }
    /// inotify's merge rule: same wd, mask and name (the cookie is not compared), and the
    /// queued one is not an `IN_IGNORED`.
    fn merges_into(&self, queued: &Event) -> bool {
        queued.mask & IN_IGNORED == 0
            && queued.wd == self.wd
            && queued.mask == self.mask
            && queued.name == self.name
    }
}

/// Why a blocking read returned without events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// [`Group::wake`] was called (once per call; a wake with no reader waits for the next).
    #[error("watch group read interrupted by wake()")]
    Woken,
    /// The group was closed: no more events will come.
    #[error("watch group closed")]
    Closed,
}

/// Limits of a group (inotify's `max_queued_events` and `max_user_watches`).
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Events queued before `IN_Q_OVERFLOW` replaces further ones (at least 1).
    pub max_events: usize,
    /// Marks the group may hold; ENOSPC beyond.
    pub max_marks: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            max_events: 16384,
            max_marks: 65536,
        }
    }
}

/// Counters of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub marks: usize,
    pub queued: usize,
    pub events_total: u64,
    pub merged_total: u64,
    pub dropped_total: u64,
}

/// One mark of a group, as `Group::watches` lists it (inotify's fdinfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchInfo {
    pub wd: i32,
    pub ino: u64,
    pub dev: u64,
    /// Event bits plus `IN_ONESHOT` / `IN_EXCL_UNLINK`.
    pub mask: u32,
}

// ---- process-wide state ----

/// Event marks attached anywhere in the process. Zero means every hook returns at once.
static ACTIVE: AtomicI64 = AtomicI64::new(0);
/// fsnotify_sync_cookie: one counter for all rename pairs.
static COOKIE: AtomicU32 = AtomicU32::new(0);

/// Is any event mark attached anywhere? One relaxed load; the VFS hooks test it first.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) > 0
}

/// A fresh non-zero cookie for one rename.
pub(crate) fn next_cookie() -> u32 {
    loop {
        let c = COOKIE.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if c != 0 {
            return c;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- marks ----

/// The callback of a destruction watch. Gets the inode being evicted (its `nlink` tells a
/// deletion, 0, from an unmount).
pub type DestroyFn = Box<dyn FnOnce(&Arc<Inode>) + Send>;

const ARMED: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;

struct EventMark {
    group: Arc<GroupInner>,
    wd: i32,
    /// Event bits | MARK_FLAGS. Written under the group's `marks` lock.
    mask: AtomicU32,
    /// May still receive events. Read and cleared only under the group's queue lock.
    alive: AtomicBool,
}

struct DestroyMark {
    state: AtomicU8,
    callback: Mutex<Option<DestroyFn>>,
}

enum Kind {
    Events(EventMark),
    Destroy(DestroyMark),
}

pub(crate) struct Mark {
    inode: Weak<Inode>,
    ino: u64,
    dev: u64,
    counters: Arc<Counters>,
    kind: Kind,
}

impl Mark {
    fn new(inode: &Arc<Inode>, kind: Kind) -> Mark {
        let counters = inode.sb().counters.clone();
        counters
            .watch_marks_allocated
            .fetch_add(1, Ordering::Relaxed);
        Mark {
            inode: Arc::downgrade(inode),
            ino: inode.ino(),
            dev: inode.sb().dev(),
            counters,
            kind,
        }
    }
    fn events(&self) -> Option<&EventMark> {
        match &self.kind {
            Kind::Events(e) => Some(e),
            Kind::Destroy(_) => None,
        }
    }
    fn event_bits(&self) -> u32 {
        self.events()
            .map_or(0, |e| e.mask.load(Ordering::Relaxed) & IN_ALL_EVENTS)
    }
    /// Bookkeeping when the mark joins (`+1`) or leaves (`-1`) an inode's list.
    fn account_attached(&self, delta: i64) {
        match &self.kind {
            Kind::Events(_) => {
                ACTIVE.fetch_add(delta, Ordering::Relaxed);
                self.counters
                    .watch_marks_attached
                    .fetch_add(delta, Ordering::Relaxed);
            }
            Kind::Destroy(_) => {
                self.counters
                    .destroy_watches_armed
                    .fetch_add(delta, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.counters
            .watch_marks_allocated
            .fetch_sub(1, Ordering::Relaxed);
    }
}

// ---- connectors ----

type MarkList = Vec<Arc<Mark>>;

/// The marks on one inode (fsnotify_mark_connector). Lives in the inode's addons slot.
pub(crate) struct Connector {
    /// Serializes writers; `true` once the inode was evicted (no mark may join after).
    writer: Mutex<bool>,
    /// Epoch-published list; null when empty.
    list: Atomic<MarkList>,
}

impl Connector {
    fn new() -> Connector {
        Connector {
            writer: Mutex::new(false),
            list: Atomic::null(),
        }
    }

    fn current<'g>(&self, guard: &'g Guard) -> &'g [Arc<Mark>] {
        let s = self.list.load(Ordering::Acquire, guard);
        // SAFETY: lists are only freed through `defer_destroy` after being unpublished (or in
        // Drop, when no reader can hold the inode), so one loaded under `guard` stays valid
        // for the guard's lifetime.
        unsafe { s.as_ref() }.map_or(&[], |v| v.as_slice())
    }

    /// Replace the published list; the caller holds `writer`. Also recomputes the inode's
    /// union mask from the new list.
    fn publish(&self, addons: &InodeAddons, new: MarkList) {
        let union = new.iter().fold(0, |acc, m| acc | m.event_bits());
        let guard = epoch::pin();
        let new = if new.is_empty() {
            Shared::null()
        } else {
            Owned::new(new).into_shared(&guard)
        };
        let old = self.list.swap(new, Ordering::AcqRel, &guard);
        addons.watch_mask.store(union, Ordering::Release);
        if !old.is_null() {
            // SAFETY: `old` is no longer reachable from the connector; readers that loaded
            // it are pinned, and the collector waits for them.
            unsafe { guard.defer_destroy(old) };
        }
    }

    fn snapshot(&self) -> MarkList {
        let guard = epoch::pin();
        self.current(&guard).to_vec()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // SAFETY: the connector goes with the inode's memory: nobody holds the inode, so
        // nobody can be reading the list.
        unsafe {
            let g = epoch::unprotected();
            let l = self.list.swap(Shared::null(), Ordering::AcqRel, g);
            if !l.is_null() {
                drop(l.into_owned());
            }
        }
    }
}

fn connector(inode: &Inode) -> Option<&Connector> {
    inode
        .addons()?
        .get(AddonSlot::Watch)?
        .downcast_ref::<Connector>()
}

fn connector_or_install(inode: &Inode) -> (&InodeAddons, &Connector) {
    let addons = inode.addons_or_alloc();
    let c = addons
        .get_or_install(AddonSlot::Watch, || Box::new(Connector::new()))
        .downcast_ref::<Connector>()
        .expect("the watch slot holds a Connector");
    (addons, c)
}

/// The union of event masks on `inode` (0 if unwatched): the one load per event.
#[inline]
fn watch_mask(inode: &Inode) -> u32 {
    inode
        .addons()
        .map_or(0, |a| a.watch_mask.load(Ordering::Acquire))
}

/// Put `m` on `inode`'s list. ENOENT if the inode is being evicted.
fn attach(inode: &Inode, m: Arc<Mark>) -> Result<()> {
    let (addons, conn) = connector_or_install(inode);
    // Pairs with the fence in `inode_evicted`: either eviction sees this connector (and
    // drains it under `writer`), or we see the freeing flag below.
    fence(Ordering::SeqCst);
    let dead = lock(&conn.writer);
    if *dead || inode.is_freeing() {
        return Err(Errno::ENOENT);
    }
    let mut list = conn.snapshot();
    m.account_attached(1);
    list.push(m);
    conn.publish(addons, list);
    drop(dead);
    Ok(())
}

/// Take `m` off its inode's list if it is still there.
///
/// Returns the inode's memory reference it had to take (the mark holds only a `Weak`). The
/// caller drops it after releasing its own locks: it may be the last one, and freeing an
/// inode drops its filesystem's private data, which is not ours to run under a group lock.
#[must_use = "drop the returned inode after releasing locks"]
fn detach(m: &Arc<Mark>) -> Option<Arc<Inode>> {
    // If the inode's memory is gone it was evicted, and eviction drained the list.
    let inode = m.inode.upgrade()?;
    if let (Some(addons), Some(conn)) = (inode.addons(), connector(&inode)) {
        let _w = lock(&conn.writer);
        let mut list = conn.snapshot();
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, m));
        if list.len() != before {
            m.account_attached(-1);
            conn.publish(addons, list);
        }
    }
    Some(inode)
}

/// Recompute the union mask after a mark's mask changed (caller holds the group's marks).
fn refresh_mask(inode: &Inode) {
    let (addons, conn) = connector_or_install(inode);
    let _w = lock(&conn.writer);
    let guard = epoch::pin();
    let union = conn
        .current(&guard)
        .iter()
        .fold(0, |acc, m| acc | m.event_bits());
    addons.watch_mask.store(union, Ordering::Release);
}

// ---- groups ----

struct GroupMarks {
    by_wd: BTreeMap<i32, Arc<Mark>>,
    /// idr_alloc_cyclic's cursor: descriptors are not reused right away.
    next_wd: i32,
    closed: bool,
}

struct Queue {
    events: VecDeque<Event>,
    /// The overflow event is in `events` (it is queued at most once at a time).
    overflow_queued: bool,
    wake: bool,
    shutdown: bool,
}

struct GroupInner {
    opts: GroupOptions,
    marks: Mutex<GroupMarks>,
    queue: Mutex<Queue>,
    ready: Condvar,
    events_total: AtomicU64,
    merged_total: AtomicU64,
    dropped_total: AtomicU64,
}

impl GroupInner {
    /// Queue `ev` for the event mark `em` (of this group). Returns true if this consumed a
    /// one-shot mark, which the caller must then destroy (outside its epoch guard).
    fn enqueue(&self, em: &EventMark, ev: Event) -> bool {
        let mut q = lock(&self.queue);
        if q.shutdown || !em.alive.load(Ordering::Relaxed) {
            return false;
        }
        let oneshot = em.mask.load(Ordering::Relaxed) & IN_ONESHOT != 0;
        if oneshot {
            em.alive.store(false, Ordering::Relaxed);
        }
        self.push(&mut q, ev, true);
        drop(q);
        self.ready.notify_all();
        oneshot
    }

    /// fsnotify_insert_event: a full queue gets one overflow event; otherwise merge with an
    /// identical tail event (inotify_merge) or append.
    fn push(&self, q: &mut Queue, ev: Event, merge: bool) {
        if q.events.len() >= self.opts.max_events.max(1) {
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            if !q.overflow_queued {
                q.overflow_queued = true;
                q.events.push_back(Event {
                    wd: -1,
                    mask: IN_Q_OVERFLOW,
                    cookie: 0,
                    name: None,
                });
            }
            return;
        }
        if merge && q.events.back().is_some_and(|last| ev.merges_into(last)) {
            self.merged_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.events_total.fetch_add(1, Ordering::Relaxed);
        q.events.push_back(ev);
    }

    /// fsnotify_destroy_mark for an event mark: whoever takes it out of the group's table
    /// detaches it and queues its `IN_IGNORED`. Returns false if someone else already did.
    fn destroy_mark(&self, m: &Arc<Mark>) -> bool {
        let Some(em) = m.events() else {
            return false;
        };
        let mut gm = lock(&self.marks);
        match gm.by_wd.get(&em.wd) {
            Some(x) if Arc::ptr_eq(x, m) => {}
            _ => return false,
        }
        gm.by_wd.remove(&em.wd);
        let keep = detach(m);
        self.send_ignored(em);
        drop(gm);
        drop(keep);
        true
    }

    fn send_ignored(&self, em: &EventMark) {
        let mut q = lock(&self.queue);
        em.alive.store(false, Ordering::Relaxed);
        if !q.shutdown {
            self.push(
                &mut q,
                Event {
                    wd: em.wd,
                    mask: IN_IGNORED,
                    cookie: 0,
                    name: None,
                },
                false,
            );
        }
        drop(q);
        self.ready.notify_all();
    }

    /// fsnotify_destroy_group: stop queueing, drop the queue, take every mark off its inode
    /// (no `IN_IGNORED`: nobody will read it), wake readers.
    fn shutdown(&self) {
        {
            let mut q = lock(&self.queue);
            if q.shutdown {
                return;
            }
            q.shutdown = true;
            q.events.clear();
            q.overflow_queued = false;
        }
        self.ready.notify_all();
        let marks = {
            let mut gm = lock(&self.marks);
            gm.closed = true;
            std::mem::take(&mut gm.by_wd)
        };
        for m in marks.into_values() {
            if let Some(em) = m.events() {
                em.alive.store(false, Ordering::Relaxed);
            }
            drop(detach(&m));
        }
    }
}

/// A watch group: one consumer of events with its own queue (an inotify instance).
///
/// Share it between a reading thread and a waking/closing one with `Arc<Group>`. Dropping
/// the last handle closes it: all its marks are removed.
pub struct Group {
    inner: Arc<GroupInner>,
}

impl Default for Group {
    fn default() -> Self {
        Group::new(GroupOptions::default())
    }
}

impl Group {
    pub fn new(opts: GroupOptions) -> Group {
        Group {
            inner: Arc::new(GroupInner {
                opts,
                marks: Mutex::new(GroupMarks {
                    by_wd: BTreeMap::new(),
                    next_wd: 1,
                    closed: false,
                }),
                queue: Mutex::new(Queue {
                    events: VecDeque::new(),
                    overflow_queued: false,
                    wake: false,
                    shutdown: false,
                }),
                ready: Condvar::new(),
                events_total: AtomicU64::new(0),
                merged_total: AtomicU64::new(0),
                dropped_total: AtomicU64::new(0),
            }),
        }
    }

    /// inotify_add_watch(2): resolve `path` (following a final symlink unless
    /// `IN_DONT_FOLLOW`; a directory required with `IN_ONLYDIR`), check read permission,
    /// and add or modify this group's mark on the inode. Returns the watch descriptor.
    pub fn add_watch(&self, vfs: &Vfs, cred: &Cred, path: &[u8], mask: u32) -> Result<i32> {
        check_add_mask(mask)?;
        let mut flags = 0;
        if mask & IN_DONT_FOLLOW == 0 {
            flags |= LOOKUP_FOLLOW;
        }
        if mask & IN_ONLYDIR != 0 {
            flags |= LOOKUP_DIRECTORY;
        }
        let at = vfs.resolve(cred, None, path, flags)?;
        at.inode().permission(cred, may::READ)?;
        self.add_mark(&at, mask)
    }

    /// Add or modify this group's mark on the inode at `at` (no permission check: the
    /// caller's business, as for a kernel-internal fsnotify user).
    pub fn add_mark(&self, at: &PathRef, mask: u32) -> Result<i32> {
        self.add_inode_mark(at.inode(), mask)
    }

    /// Add or modify this group's mark on `inode`. With a mark already there: EEXIST under
    /// `IN_MASK_CREATE`, the masks OR-ed under `IN_MASK_ADD`, else replaced.
    pub fn add_inode_mark(&self, inode: &Arc<Inode>, mask: u32) -> Result<i32> {
        check_add_mask(mask)?;
        if mask & IN_ONLYDIR != 0 && !inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let wanted = mask & (IN_ALL_EVENTS | MARK_FLAGS);
        let g = &self.inner;
        let mut gm = lock(&g.marks);
        if gm.closed {
            return Err(Errno::EBADF);
        }
        let existing = connector(inode).and_then(|c| {
            let guard = epoch::pin();
            c.current(&guard)
                .iter()
                .find(|m| m.events().is_some_and(|e| Arc::ptr_eq(&e.group, g)))
                .cloned()
        });
        if let Some(m) = existing {
            if mask & IN_MASK_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            let em = m.events().expect("found as an event mark");
            let new = if mask & IN_MASK_ADD != 0 {
                em.mask.load(Ordering::Relaxed) | wanted
            } else {
                wanted
            };
            em.mask.store(new, Ordering::Relaxed);
            refresh_mask(inode);
            return Ok(em.wd);
        }
        if gm.by_wd.len() >= g.opts.max_marks {
            return Err(Errno::ENOSPC);
        }
        let mut wd = gm.next_wd;
        while gm.by_wd.contains_key(&wd) {
            wd = wd.checked_add(1).unwrap_or(1);
        }
        let m = Arc::new(Mark::new(
            inode,
            Kind::Events(EventMark {
                group: g.clone(),
                wd,
                mask: AtomicU32::new(wanted),
                alive: AtomicBool::new(true),
            }),
        ));
        attach(inode, m.clone())?;
        gm.next_wd = wd.checked_add(1).unwrap_or(1);
        gm.by_wd.insert(wd, m);
        Ok(wd)
    }

    /// inotify_rm_watch(2): remove the mark; its `IN_IGNORED` is queued. EINVAL if `wd` is
    /// not (or no longer) a mark of this group.
    pub fn remove_watch(&self, wd: i32) -> Result<()> {
        let m = lock(&self.inner.marks)
            .by_wd
            .get(&wd)
            .cloned()
            .ok_or(Errno::EINVAL)?;
        if self.inner.destroy_mark(&m) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// This group's marks, by watch descriptor.
    pub fn watches(&self) -> Vec<WatchInfo> {
        lock(&self.inner.marks)
            .by_wd
            .values()
            .filter_map(|m| {
                let em = m.events()?;
                Some(WatchInfo {
                    wd: em.wd,
                    ino: m.ino,
                    dev: m.dev,
                    mask: em.mask.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Up to `max` queued events, waiting for at least one for up to `timeout` (`None`:
    /// forever). `Ok(vec![])` on timeout; `Err(Woken)` if [`Group::wake`] was called
    /// (during the wait or before it); `Err(Closed)` once the group is closed.
    pub fn read_events(
        &self,
        max: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<Vec<Event>, ReadError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let g = &self.inner;
        let mut q = lock(&g.queue);
        loop {
            if q.shutdown {
                return Err(ReadError::Closed);
            }
            if !q.events.is_empty() {
                let n = max.min(q.events.len());
                let out: Vec<Event> = q.events.drain(..n).collect();
                if out.iter().any(Event::is_overflow) {
                    q.overflow_queued = false;
                }
                return Ok(out);
            }
            if q.wake {
                q.wake = false;
                return Err(ReadError::Woken);
            }
            q = match deadline {
                None => g.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(Vec::new());
                    }
                    g.ready
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Queued events without waiting (up to `max`).
    pub fn try_read_events(&self, max: usize) -> std::result::Result<Vec<Event>, ReadError> {
        self.read_events(max, Some(Duration::ZERO))
    }

    /// Make one blocked (or the next) `read_events` return `Err(Woken)`; for a consumer
    /// that must stop or re-check something (a signal, a client gone).
    pub fn wake(&self) {
        lock(&self.inner.queue).wake = true;
        self.inner.ready.notify_all();
    }

    /// Close the group: marks removed (no `IN_IGNORED`), queue dropped, readers get
    /// `Err(Closed)`. Idempotent; also done on drop.
    pub fn close(&self) {
        self.inner.shutdown();
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner.queue).shutdown
    }

    pub fn stats(&self) -> GroupStats {
        let g = &self.inner;
        GroupStats {
            marks: lock(&g.marks).by_wd.len(),
            queued: lock(&g.queue).events.len(),
            events_total: g.events_total.load(Ordering::Relaxed),
            merged_total: g.merged_total.load(Ordering::Relaxed),
            dropped_total: g.dropped_total.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("stats", &self.stats())
            .finish()
    }
}

/// inotify_add_watch's mask checks, before the path is looked at.
fn check_add_mask(mask: u32) -> Result<()> {
    if mask & KNOWN_BITS == 0 {
        return Err(Errno::EINVAL);
    }
    if mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

// ---- destruction watches ----

/// A registered inode-destruction callback ([`watch_destruction`]).
pub struct DestroyWatch {
    mark: Arc<Mark>,
}

/// Where a destruction watch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyState {
    /// Registered; the callback has not run.
    Armed,
    /// The inode was evicted; the callback ran (or is running, in the evicting thread).
    Fired,
    /// Cancelled before eviction; the callback was dropped uncalled.
    Cancelled,
}

/// Run `callback` once when `inode` is evicted: after its last link and last reference are
/// gone, or when its filesystem is unmounted. It runs in the evicting thread with no VFS or
/// watch lock held; it must not block on the inode's own references. ENOENT if the inode is
/// already being evicted. Dropping the returned handle keeps the watch armed.
pub fn watch_destruction(
    inode: &Arc<Inode>,
    callback: impl FnOnce(&Arc<Inode>) + Send + 'static,
) -> Result<DestroyWatch> {
    let m = Arc::new(Mark::new(
        inode,
        Kind::Destroy(DestroyMark {
            state: AtomicU8::new(ARMED),
            callback: Mutex::new(Some(Box::new(callback))),
        }),
    ));
    attach(inode, m.clone())?;
    Ok(DestroyWatch { mark: m })
}

impl DestroyWatch {
    fn dm(&self) -> &DestroyMark {
        match &self.mark.kind {
            Kind::Destroy(d) => d,
            Kind::Events(_) => unreachable!("a DestroyWatch holds a destruction mark"),
        }
    }

    /// Cancel the watch. True if the callback will never run (it is dropped here); false if
    /// eviction got there first (the callback has run or is running in the evicting
    /// thread) or the watch was already cancelled.
    pub fn cancel(&self) -> bool {
        let d = self.dm();
        if d.state
            .compare_exchange(ARMED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let cb = lock(&d.callback).take();
        let keep = detach(&self.mark);
        // Dropped with no lock held: the callback's captures may release anything.
        drop(cb);
        drop(keep);
        true
    }

    pub fn state(&self) -> DestroyState {
        match self.dm().state.load(Ordering::Acquire) {
            ARMED => DestroyState::Armed,
            FIRED => DestroyState::Fired,
            _ => DestroyState::Cancelled,
        }
    }

    /// The watched inode's number.
    pub fn ino(&self) -> u64 {
        self.mark.ino
    }
}

impl std::fmt::Debug for DestroyWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestroyWatch")
            .field("ino", &self.mark.ino)
            .field("state", &self.state())
            .finish()
    }
}

// ---- event emission (called by the VFS operations) ----

fn isdir(inode: &Inode, mask: u32) -> u32 {
    if inode.is_dir() {
        mask | IN_ISDIR
    } else {
        mask
    }
}

/// The mask an event carries. inotify has never reported `IN_ISDIR` with the self events
/// (`IN_DELETE_SELF`, `IN_MOVE_SELF`), and programs may depend on that: the kernel masks it
/// out there, and so do we (checked against the kernel in `tests/fsnotify_kernel.rs`).
fn reported(mask: u32) -> u32 {
    let mask = mask & REPORTED;
    if mask & (IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
        mask & !IN_ISDIR
    } else {
        mask
    }
}

/// Hand `mask` to every event mark on `inode` that wants it.
fn deliver(inode: &Inode, mask: u32, name: Option<&[u8]>, cookie: u32, unlinked: bool) {
    if watch_mask(inode) & mask & IN_ALL_EVENTS == 0 {
        return;
    }
    let Some(conn) = connector(inode) else {
        return;
    };
    let mut consumed: Vec<Arc<Mark>> = Vec::new();
    {
        let guard = epoch::pin();
        for m in conn.current(&guard) {
            let Some(em) = m.events() else { continue };
            let mm = em.mask.load(Ordering::Relaxed);
            if mm & mask & IN_ALL_EVENTS == 0 {
                continue;
            }
            if unlinked && mm & IN_EXCL_UNLINK != 0 {
                continue;
            }
            let ev = Event {
                wd: em.wd,
                mask: reported(mask),
                cookie,
                name: name.map(Box::from),
            };
            if em.group.enqueue(em, ev) {
                consumed.push(m.clone());
            }
        }
    }
    for m in consumed {
        if let Some(em) = m.events() {
            em.group.destroy_mark(&m);
        }
    }
}

/// An event about the object `d` names (fsnotify_parent + the object): its parent
/// directory's marks get it with the name, then the object's own marks.
#[inline]
pub(crate) fn notify_dentry(d: &Dentry, mask: u32) {
    if active() {
        notify_dentry_slow(d, mask)
    }
}

fn notify_dentry_slow(d: &Dentry, mask: u32) {
    let inode = d.inode();
    let mask = isdir(inode, mask);
    let (parent, name, unlinked) = {
        let l = d.links.read().unwrap_or_else(|e| e.into_inner());
        match &l.parent {
            Some(p) if watch_mask(p.inode()) & mask & CHILD_EVENTS != 0 => (
                Some(p.inode().clone()),
                Some(l.name.clone()),
                !d.is_hashed(),
            ),
            Some(_) => (None, None, !d.is_hashed()),
            None => (None, None, false),
        }
    };
    if let Some(p) = parent {
        deliver(
            &p,
            mask & (CHILD_EVENTS | IN_ISDIR),
            name.as_deref(),
            0,
            unlinked,
        );
    }
    deliver(inode, mask, None, 0, unlinked);
}

/// An event for the object's own marks only (fsnotify_inode): link-count changes
/// (`IN_ATTRIB`), `IN_MOVE_SELF`.
#[inline]
pub(crate) fn notify_inode(inode: &Inode, mask: u32) {
    if active() {
        deliver(inode, isdir(inode, mask), None, 0, false);
    }
}

/// A directory event about entry `name` (fsnotify_name): create, delete, moved from/to.
#[inline]
pub(crate) fn notify_name(dir: &Inode, mask: u32, child_is_dir: bool, name: &[u8], cookie: u32) {
    if active() {
        let mask = if child_is_dir { mask | IN_ISDIR } else { mask };
        deliver(dir, mask, Some(name), cookie, false);
    }
}

/// A file was opened (not O_PATH).
#[inline]
pub(crate) fn file_opened(f: &File) {
    if active() && f.flags() & oflags::O_PATH == 0 {
        notify_dentry(&f.path().dentry, IN_OPEN);
    }
}

/// The last handle of an open file goes (before the filesystem's release and before the
/// dentry reference is dropped, so `IN_CLOSE_*` precedes a resulting `IN_DELETE_SELF`).
#[inline]
pub(crate) fn file_closed(f: &File) {
    if active() && f.flags() & oflags::O_PATH == 0 {
        let mask = if f.writable() {
            IN_CLOSE_WRITE
        } else {
            IN_CLOSE_NOWRITE
        };
        notify_dentry(&f.path().dentry, mask);
    }
}

/// The events a successful setattr reports (fsnotify_change): owner, group or mode →
/// `IN_ATTRIB`; size → `IN_MODIFY`; both times → `IN_ATTRIB`, atime alone → `IN_ACCESS`,
/// mtime alone → `IN_MODIFY`.
pub(crate) fn setattr_mask(attr: &SetAttr) -> u32 {
    let mut mask = 0;
    if attr.uid.is_some() || attr.gid.is_some() || attr.mode.is_some() {
        mask |= IN_ATTRIB;
    }
    if attr.size.is_some() {
        mask |= IN_MODIFY;
    }
    match (attr.atime.is_some(), attr.mtime.is_some()) {
        (true, true) => mask |= IN_ATTRIB,
        (true, false) => mask |= IN_ACCESS,
        (false, true) => mask |= IN_MODIFY,
        (false, false) => {}
    }
    mask
}

/// The last link of `inode` went and the dentry that named it is unused (d_delete's
/// dentry_unlink_inode): `IN_DELETE_SELF` to its marks, then every event mark is destroyed
/// (`IN_IGNORED`). Destruction watches stay: they fire at eviction.
pub(crate) fn inode_removed(inode: &Inode) {
    if !active() {
        return;
    }
    let Some(conn) = connector(inode) else {
        return;
    };
    deliver(inode, isdir(inode, IN_DELETE_SELF), None, 0, false);
    for m in conn.snapshot() {
        if let Some(em) = m.events() {
            em.group.destroy_mark(&m);
        }
    }
}

/// The eviction hook (registered by `Vfs::new`): every mark leaves the inode. Event marks get
/// `IN_DELETE_SELF` (inode deleted) or `IN_UNMOUNT` (filesystem going) and `IN_IGNORED`;
/// destruction watches that win their state race run their callback, here, with no lock
/// held.
pub(crate) fn inode_evicted(inode: &Arc<Inode>) {
    // Pairs with the fence in `attach`; see the module comment.
    fence(Ordering::SeqCst);
    let Some(addons) = inode.addons() else {
        return;
    };
    let Some(conn) = connector(inode) else {
        return;
    };
    let drained = {
        let mut dead = lock(&conn.writer);
        *dead = true;
        let list = conn.snapshot();
        for m in &list {
            m.account_attached(-1);
        }
        conn.publish(addons, Vec::new());
        list
    };
    if drained.is_empty() {
        return;
    }
    let self_event = if inode.nlink() == 0 {
        Some(IN_DELETE_SELF)
    } else if inode.sb().is_dying() {
        Some(IN_UNMOUNT)
    } else {
        None
    };
    for m in &drained {
        let Some(em) = m.events() else { continue };
        if let Some(ev) = self_event {
            // IN_UNMOUNT goes to every mark (inotify marks always carry it).
            if ev == IN_UNMOUNT || em.mask.load(Ordering::Relaxed) & ev != 0 {
                let e = Event {
                    wd: em.wd,
                    mask: reported(isdir(inode, ev)),
                    cookie: 0,
                    name: None,
                };
                em.group.enqueue(em, e);
            }
        }
        em.group.destroy_mark(m);
    }
    for m in &drained {
        let Kind::Destroy(d) = &m.kind else { continue };
        if d.state
            .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let cb = lock(&d.callback).take();
            if let Some(cb) = cb {
                cb(inode);
            }
        }
    }
}
