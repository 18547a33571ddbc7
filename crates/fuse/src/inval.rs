//! Telling the kernel about changes it did not make: cache invalidation notifications.
//!
//! The kernel caches our entries and attributes for entry_ttl/attr_ttl. Changes made through
//! this mount's requests it knows already (it applies our replies to its dcache); changes
//! made any other way — the control socket pinning or unlinking, a filesystem adding or
//! removing its own entries (exposed files, cgroup groups), in-process calls — it would
//! show stale for up to the TTL. [`Inval`] is a [`ChangeListener`] of the VFS: it skips the
//! changes this mount's requests asked for (their thread carries our [`Origin`] and the
//! change is `requested`) and queues the rest to a notifier thread, which sends
//! `inval_entry` / `delete` for entries under directories the kernel holds (node ids in the
//! lookup table), and `inval_inode` for inodes whose attributes or data changed and for the
//! directories that gained or lost an entry.
//!
//! ## Deadlock rule
//! A notification is never sent from a FUSE request thread, nor while holding any VFS lock
//! (the listener is called under the directory lock): the kernel may hold a directory's
//! i_rwsem while it waits for our reply to a request in that directory, and `inval_entry`
//! takes that lock. So `changed` only queues (try_send on a bounded channel: never blocks;
//! on overflow the notification is dropped and counted — the TTL still bounds staleness),
//! and a dedicated thread, which serves no request and holds no VFS lock, writes to
//! /dev/fuse. [`Inval::sync`], which waits for that thread, refuses to wait on our own
//! worker threads. The thread exits at unmount ([`Inval::stop`]).
//!
//! ENOENT from the kernel (an entry or inode it never cached) is normal and ignored.

use crate::nodes::{NodeTable, ROOT_ID};
use bpfvfs_vfs::changes::{self, Change, ChangeKind, ChangeListener, Origin};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Notifications queued at most; beyond, they are dropped and counted.
pub const QUEUE_LEN: usize = 4096;
/// How long `sync` waits for the notifier before giving up (the TTL bounds staleness anyway).
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle notifier thread looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Where notifications go: the kernel (fuser's `Notifier`), or a recorder in tests.
pub trait Sink: Send + 'static {
    fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()>;
    fn delete(&self, parent: u64, child: u64, name: &[u8]) -> io::Result<()>;
    /// `offset` < 0: attributes only; else attributes and cached data from `offset`
    /// (`len` 0: to the end).
    fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> io::Result<()>;
}

impl Sink for fuser::Notifier {
    fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        fuser::Notifier::inval_entry(self, fuser::INodeNo(parent), OsStr::from_bytes(name))
    }
    fn delete(&self, parent: u64, child: u64, name: &[u8]) -> io::Result<()> {
        fuser::Notifier::delete(
            self,
            fuser::INodeNo(parent),
            fuser::INodeNo(child),
            OsStr::from_bytes(name),
        )
    }
    fn inval_inode(&self, ino: u64, offset: i64, len: i64) -> io::Result<()> {
        fuser::Notifier::inval_inode(self, fuser::INodeNo(ino), offset, len)
    }
}

enum Msg {
    Entry {
        kind: ChangeKind,
        parent: u64,
        child: u64,
        name: Box<[u8]>,
    },
    Attr {
        ino: u64,
        data: bool,
    },
    Stop,
}

/// Counters of the invalidation path (`bpfvfs stats`, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InvalStats {
    /// Changes made by this mount's own requests that reached the listener, not forwarded.
    /// (With this listener alone installed the VFS drops them at the call site, see
    /// `ignores_requested_by`, so this stays 0.)
    pub skipped: u64,
    /// Changes queued to the notifier.
    pub queued: u64,
    /// Changes dropped because the queue was full.
    pub dropped: u64,
    /// Notifications written to the kernel.
    pub sent: u64,
    /// Changes under directories the kernel does not hold (nothing to invalidate).
    pub unknown: u64,
    /// Notifications the kernel refused with something other than ENOENT.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    skipped: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    sent: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
}

/// The listener half (installed in the VFS) and the handle to the notifier thread.
pub struct Inval {
    origin: Origin,
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    /// Changes the notifier has finished with; `sync` waits on it.
    done: Arc<(Mutex<u64>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Inval {
    /// Start the notifier thread. `nodes` tells which node ids the kernel holds.
    pub fn start(
        origin: Origin,
        nodes: Arc<dyn KnownNodes>,
        sink: impl Sink,
    ) -> io::Result<Arc<Inval>> {
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let counters = Arc::new(Counters::default());
        let done = Arc::new((Mutex::new(0u64), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Notifier {
            rx,
            nodes,
            sink,
            counters: counters.clone(),
            done: done.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("fuse-inval".into())
            .spawn(move || worker.run())?;
        Ok(Arc::new(Inval {
            origin,
            tx,
            counters,
            done,
            stop,
            thread: Mutex::new(Some(thread)),
        }))
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn stats(&self) -> InvalStats {
        let c = &self.counters;
        InvalStats {
            skipped: c.skipped.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            unknown: c.unknown.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Stop the notifier thread (at unmount; the listener must already be out of the VFS).
    /// Waits a bounded time: a thread stuck in a kernel write is left to end on its own.
    pub fn stop(&self, wait: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.try_send(Msg::Stop);
        // Wake a `sync` that would otherwise wait for notifications that will never be sent.
        self.done.1.notify_all();
        let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let deadline = Instant::now() + wait;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("the FUSE notifier thread did not stop within {wait:?}; leaving it");
        }
    }
}

impl ChangeListener for Inval {
    fn ignores_requested_by(&self) -> Option<Origin> {
        Some(self.origin)
    }

    fn changed(&self, c: &Change<'_>) {
        // Called under VFS locks: only counters and a non-blocking send (module comment).
        if c.requested && c.origin == Some(self.origin) {
            // Our own request asked for it: the kernel applies our reply itself.
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let m = match c.kind {
            ChangeKind::Attr { data } => Msg::Attr { ino: c.child, data },
            kind => Msg::Entry {
                kind,
                parent: c.parent,
                child: c.child,
                name: c.name.into(),
            },
        };
        match self.tx.try_send(m) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Wait until every change queued so far was handed to the kernel. Never on one of our
    /// worker threads (the notifier may be waiting for a lock the kernel holds until that
    /// thread replies), and never longer than 2 s (`SYNC_TIMEOUT`).
    fn sync(&self) {
        if changes::origin() == Some(self.origin) || self.stop.load(Ordering::SeqCst) {
            return;
        }
        let target = self.counters.queued.load(Ordering::Acquire);
        let (m, cv) = &*self.done;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        let mut done = m.lock().unwrap_or_else(|e| e.into_inner());
        while *done < target && !self.stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::debug!(target, done = *done, "inval sync timed out");
                return;
            }
            done = cv
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Which node ids the kernel holds (the lookup table), and the VFS inode -> node id map.
pub trait KnownNodes: Send + Sync + 'static {
    fn nodeid_of(&self, ino: u64) -> u64;
    fn known(&self, nodeid: u64) -> bool;
}

impl KnownNodes for NodeTable {
    fn nodeid_of(&self, ino: u64) -> u64 {
        NodeTable::nodeid_of(self, ino)
    }
    fn known(&self, nodeid: u64) -> bool {
        nodeid == ROOT_ID || self.lookup_count(nodeid) > 0
    }
}

struct Notifier<S: Sink> {
    rx: Receiver<Msg>,
    nodes: Arc<dyn KnownNodes>,
    sink: S,
    counters: Arc<Counters>,
    done: Arc<(Mutex<u64>, Condvar)>,
    stop: Arc<AtomicBool>,
}

/// Messages handled per round before the directory attribute invalidations go out.
const BATCH: usize = 256;

impl<S: Sink> Notifier<S> {
    fn run(self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match self.rx.recv_timeout(IDLE_POLL) {
                Ok(m) => batch.push(m),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut n = 0u64;
            let mut dirs = BTreeSet::new();
            for m in batch.drain(..) {
                match m {
                    Msg::Stop => return,
                    m => {
                        self.handle(m, &mut dirs);
                        n += 1;
                    }
                }
            }
            // A directory that gained or lost an entry changed size, mtime and maybe nlink;
            // the kernel invalidates those only when it had the entry cached. Once per
            // directory per round.
            for d in dirs {
                self.send(self.sink.inval_inode(d, -1, 0));
            }
            let (m, cv) = &*self.done;
            *m.lock().unwrap_or_else(|e| e.into_inner()) += n;
            cv.notify_all();
        }
    }

    fn handle(&self, m: Msg, dirs: &mut BTreeSet<u64>) {
        match m {
            Msg::Entry {
                kind,
                parent,
                child,
                name,
            } => {
                let p = self.nodes.nodeid_of(parent);
                if !self.nodes.known(p) {
                    // The kernel holds no dentry below a directory it does not know.
                    self.counters.unknown.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let c = self.nodes.nodeid_of(child);
                let r = match kind {
                    // The last name of an inode the kernel holds: `delete` also drops the
                    // kernel's link count and tells its inotify watchers.
                    ChangeKind::Removed { last_link: true } if self.nodes.known(c) => {
                        self.sink.delete(p, c, &name)
                    }
                    _ => self.sink.inval_entry(p, &name),
                };
                self.send(r);
                if matches!(kind, ChangeKind::Removed { last_link: false }) && self.nodes.known(c) {
                    // Another name remains: its link count changed.
                    self.send(self.sink.inval_inode(c, -1, 0));
                }
                dirs.insert(p);
            }
            Msg::Attr { ino, data } => {
                let n = self.nodes.nodeid_of(ino);
                if !self.nodes.known(n) {
                    self.counters.unknown.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.send(self.sink.inval_inode(n, if data { 0 } else { -1 }, 0));
            }
            Msg::Stop => {}
        }
    }

    fn send(&self, r: io::Result<()>) {
        match r {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            // fuser already maps ENOENT to Ok; anything else (ENOTDIR, ENOTEMPTY and EBUSY
            // from a delete of a busy directory, ENODEV once unmounted) is counted: the TTL
            // still bounds how long the kernel's copy lives.
            Err(e) => {
                tracing::debug!("FUSE notification refused: {e}");
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Records what would go to the kernel. With a gate set, a send waits at the gate
    /// (counted in `.2` first), which holds the notifier thread inside a send.
    #[derive(Clone, Default)]
    struct Rec(
        Arc<Mutex<Vec<String>>>,
        Arc<Mutex<Option<Arc<std::sync::Barrier>>>>,
        Arc<AtomicU64>,
    );

    impl Rec {
        fn log(&self, s: String) {
            let gate = self.1.lock().unwrap().clone();
            if let Some(b) = gate {
                self.2.fetch_add(1, Ordering::SeqCst);
                b.wait();
            }
            self.0.lock().unwrap().push(s);
        }
        /// Wait until the notifier is held at the gate, then let it go.
        fn release(&self, gate: &std::sync::Barrier) {
            while self.2.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            *self.1.lock().unwrap() = None;
            gate.wait();
        }
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl Sink for Rec {
        fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
            self.log(format!("entry {parent} {}", String::from_utf8_lossy(name)));
            Ok(())
        }
        fn delete(&self, parent: u64, child: u64, name: &[u8]) -> io::Result<()> {
            self.log(format!(
                "delete {parent} {child} {}",
                String::from_utf8_lossy(name)
            ));
            Ok(())
        }
        fn inval_inode(&self, ino: u64, offset: i64, _len: i64) -> io::Result<()> {
            self.log(format!("inode {ino} {offset}"));
            Ok(())
        }
    }

    struct Known(HashSet<u64>);
    impl KnownNodes for Known {
        fn nodeid_of(&self, ino: u64) -> u64 {
            ino
        }
        fn known(&self, n: u64) -> bool {
            self.0.contains(&n)
        }
    }

    fn change(kind: ChangeKind, parent: u64, name: &[u8], child: u64) -> Change<'_> {
        Change {
            kind,
            parent,
            name,
            child,
            origin: None,
            requested: true,
        }
    }

    #[test]
    fn translation_and_own_requests() {
        let rec = Rec::default();
        let known = Arc::new(Known([1, 10, 20, 21].into_iter().collect()));
        let origin = Origin::new();
        let inval = Inval::start(origin, known, rec.clone()).unwrap();
        // Made by our own request: skipped.
        let mut c = change(ChangeKind::Added, 1, b"mine", 30);
        c.origin = Some(origin);
        inval.changed(&c);
        // A side effect on our own thread (an exposed file removed in an eviction): sent.
        let mut c = change(ChangeKind::Removed { last_link: true }, 10, b"side", 20);
        c.origin = Some(origin);
        c.requested = false;
        inval.changed(&c);
        // Another edge's changes.
        inval.changed(&change(ChangeKind::Added, 1, b"new", 30));
        inval.changed(&change(
            ChangeKind::Removed { last_link: true },
            1,
            b"gone",
            31,
        ));
        inval.changed(&change(
            ChangeKind::Removed { last_link: false },
            1,
            b"ln",
            20,
        ));
        inval.changed(&change(ChangeKind::Added, 99, b"unknown-parent", 32));
        inval.changed(&change(ChangeKind::Attr { data: true }, 0, b"", 20));
        inval.changed(&change(ChangeKind::Attr { data: false }, 0, b"", 21));
        inval.changed(&change(ChangeKind::Attr { data: false }, 0, b"", 77));
        inval.sync();
        let got = rec.take();
        // The directory invalidations close each round; rounds depend on timing, so check
        // the entry part in order and the directories as a set.
        let entries: Vec<&String> = got.iter().filter(|s| !is_dir_inval(s)).collect();
        assert_eq!(
            entries,
            [
                "delete 10 20 side",
                "entry 1 new",
                "entry 1 gone", // child 31 unknown to the kernel: no delete
                "entry 1 ln",
                "inode 20 -1", // another name remains
                "inode 20 0",
                "inode 21 -1",
            ]
        );
        assert!(got.contains(&"inode 1 -1".to_string()), "{got:?}");
        assert!(got.contains(&"inode 10 -1".to_string()), "{got:?}");
        let s = inval.stats();
        assert_eq!(s.skipped, 1);
        assert_eq!(s.queued, 8);
        assert_eq!(s.unknown, 2);
        assert_eq!(s.dropped, 0);
        inval.stop(Duration::from_secs(2));
        assert!(inval.thread.lock().unwrap().is_none());
    }

    /// The per-round directory invalidations (directories 1 and 10 in the test above);
    /// where rounds end depends on timing.
    fn is_dir_inval(s: &str) -> bool {
        s == "inode 1 -1" || s == "inode 10 -1"
    }

    #[test]
    fn overflow_drops_and_counts_without_blocking() {
        let rec = Rec::default();
        // Hold the notifier inside its first send until we release it.
        let gate = Arc::new(std::sync::Barrier::new(2));
        *rec.1.lock().unwrap() = Some(gate.clone());
        let known = Arc::new(Known([1].into_iter().collect()));
        let inval = Inval::start(Origin::new(), known, rec.clone()).unwrap();
        let n = QUEUE_LEN + 500;
        for i in 0..n {
            let name = format!("f{i}");
            inval.changed(&change(
                ChangeKind::Added,
                1,
                name.as_bytes(),
                100 + i as u64,
            ));
        }
        let s = inval.stats();
        // The notifier took at most one batch out before blocking; the rest filled the
        // queue and the overflow was dropped, without blocking us.
        assert!(s.dropped > 0, "{s:?}");
        assert_eq!(s.queued + s.dropped, n as u64);
        rec.release(&gate);
        inval.sync();
        let sent = rec.take();
        let entries = sent.iter().filter(|s| s.starts_with("entry")).count() as u64;
        assert_eq!(entries, s.queued);
        inval.stop(Duration::from_secs(2));
    }

    #[test]
    fn sync_does_not_wait_on_own_threads() {
        let rec = Rec::default();
        let gate = Arc::new(std::sync::Barrier::new(2));
        *rec.1.lock().unwrap() = Some(gate.clone());
        let known = Arc::new(Known([1].into_iter().collect()));
        let origin = Origin::new();
        let inval = Inval::start(origin, known, rec.clone()).unwrap();
        inval.changed(&change(ChangeKind::Added, 1, b"x", 5));
        while rec.2.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The notifier is held in its send; a worker thread of ours must not wait for it.
        changes::set_origin(Some(origin));
        let t = Instant::now();
        inval.sync();
        assert!(t.elapsed() < Duration::from_millis(500));
        changes::set_origin(None);
        rec.release(&gate);
        inval.sync();
        assert_eq!(rec.take(), ["entry 1 x", "inode 1 -1"]);
        inval.stop(Duration::from_secs(2));
    }
}
