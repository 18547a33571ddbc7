//! Dentries: the names of inodes, with their parent links, and the per-directory child index.
//!
//! In the in-memory filesystems the dentry tree *is* the directory (as with Linux's libfs:
//! tmpfs, bpffs): a directory dentry's `children` index is authoritative and holds one counted
//! reference ([`DentryRef`]) to each child. The same children are also published in the
//! global lock-free [`crate::dcache::DentryHash`] for the lockless walk.
//!
//! Locking (see also `lib.rs`): a directory's `children` mutex plays the role of the
//! directory inode's i_rwsem. It is held while the directory's entries change (create, link,
//! unlink, rename) and by the locked walk while it looks a name up. `links` (parent and name)
//! is written only by rename, under the directory locks.

use crate::errno::{Errno, Result};
use crate::inode::Inode;
use crate::stats::Counters;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

static NEXT_DENTRY_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) const D_HASHED: u32 = 1;
pub(crate) const D_MOUNTED: u32 = 2;
pub(crate) const D_DEAD: u32 = 4;

pub(crate) struct Links {
    /// The parent; `None` only for a superblock's root. An `Arc` (memory), not a counted
    /// reference: a directory with children cannot be removed, and a dead child only needs
    /// its parent's memory for `..` of an unlinked directory.
    pub(crate) parent: Option<Arc<Dentry>>,
    pub(crate) name: Box<[u8]>,
}

/// First offset handed to an entry; 1 and 2 are taken by "." and "..".
pub(crate) const FIRST_OFFSET: u64 = 3;

/// A directory's entries: by name for lookup, by offset for readdir. Offsets are handed out
/// in increasing order and never reused, so a readdir resumed at an offset neither repeats
/// nor skips entries that stayed in place (as Linux's simple_offset does for tmpfs).
pub(crate) struct Children {
    pub(crate) by_name: HashMap<Box<[u8]>, (u64, DentryRef)>,
    pub(crate) by_offset: BTreeMap<u64, Box<[u8]>>,
    next_offset: u64,
}

impl Children {
    fn new() -> Children {
        Children {
            by_name: HashMap::new(),
            by_offset: BTreeMap::new(),
            next_offset: FIRST_OFFSET,
        }
    }
    pub(crate) fn get(&self, name: &[u8]) -> Option<&DentryRef> {
        self.by_name.get(name).map(|(_, d)| d)
    }
    pub(crate) fn insert(&mut self, name: &[u8], d: DentryRef) {
        let off = self.next_offset;
        self.next_offset += 1;
        self.by_offset.insert(off, name.into());
        if let Some((old_off, _)) = self.by_name.insert(name.into(), (off, d)) {
            self.by_offset.remove(&old_off);
        }
    }
    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<DentryRef> {
        let (off, d) = self.by_name.remove(name)?;
        self.by_offset.remove(&off);
        Some(d)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

pub struct Dentry {
    id: u64,
    inode: Arc<Inode>,
    /// d_count: counted references ([`DentryRef`]); the parent's index holds one while hashed.
    count: AtomicU32,
    flags: AtomicU32,
    pub(crate) links: RwLock<Links>,
    /// Directories only: the child index, whose mutex is the directory lock.
    children: Option<Mutex<Children>>,
    counters: Arc<Counters>,
}

impl Dentry {
    /// A new dentry for `inode`, holding a reference on it; returned with d_count 1.
    pub(crate) fn alloc(inode: &Arc<Inode>, parent: Option<Arc<Dentry>>, name: &[u8]) -> DentryRef {
        inode.get();
        let counters = inode.sb().counters.clone();
        counters.dentries_live.fetch_add(1, Ordering::Relaxed);
        let children = if inode.is_dir() {
            Some(Mutex::new(Children::new()))
        } else {
            None
        };
        DentryRef(Arc::new(Dentry {
            id: NEXT_DENTRY_ID.fetch_add(1, Ordering::Relaxed),
            inode: inode.clone(),
            count: AtomicU32::new(1),
            flags: AtomicU32::new(0),
            links: RwLock::new(Links {
                parent,
                name: name.into(),
            }),
            children,
            counters,
        }))
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    #[inline]
    pub fn inode(&self) -> &Arc<Inode> {
        &self.inode
    }
    pub fn name(&self) -> Vec<u8> {
        self.links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .name
            .to_vec()
    }
    /// The parent and the name under one read of the links, without copying the name (for
    /// callers that snapshot both, like the BPF object views).
    pub fn with_parent_and_name<R>(&self, f: impl FnOnce(Option<&Arc<Dentry>>, &[u8]) -> R) -> R {
        let l = self.links.read().unwrap_or_else(|e| e.into_inner());
        f(l.parent.as_ref(), &l.name)
    }
    pub fn parent(&self) -> Option<Arc<Dentry>> {
        self.links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .parent
            .clone()
    }
    pub fn is_hashed(&self) -> bool {
        self.flags.load(Ordering::Acquire) & D_HASHED != 0
    }
    pub fn is_dead(&self) -> bool {
        self.flags.load(Ordering::Acquire) & D_DEAD != 0
    }
    pub fn is_mountpoint(&self) -> bool {
        self.flags.load(Ordering::Acquire) & D_MOUNTED != 0
    }
    pub(crate) fn set_flag(&self, f: u32) {
        self.flags.fetch_or(f, Ordering::AcqRel);
    }
    pub(crate) fn clear_flag(&self, f: u32) {
        self.flags.fetch_and(!f, Ordering::AcqRel);
    }

    /// The directory lock and child index. ENOTDIR for non-directories.
    pub(crate) fn lock_children(&self) -> Result<MutexGuard<'_, Children>> {
        match &self.children {
            Some(m) => Ok(m.lock().unwrap_or_else(|e| e.into_inner())),
            None => Err(Errno::ENOTDIR),
        }
    }

    pub fn ref_count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// `try_get` for a dentry reached by borrowing under an epoch guard (the lockless walk).
    pub(crate) fn try_get_rcu(&self) -> Option<DentryRef> {
        let mut c = self.count.load(Ordering::Acquire);
        loop {
            if c == 0 {
                return None;
            }
            match self
                .count
                .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // SAFETY: every Dentry is allocated by `Arc::new` in `Dentry::alloc` (the only
        // constructor), and `self` is alive (the caller borrows it under a guard or a
        // reference), so its Arc strong count is non-zero: adding one and rebuilding an Arc
        // from the pointer is sound.
        let arc = unsafe {
            Arc::increment_strong_count(self as *const Dentry);
            Arc::from_raw(self as *const Dentry)
        };
        Some(DentryRef(arc))
    }
}

impl Drop for Dentry {
    fn drop(&mut self) {
        self.counters.dentries_live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Dentry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dentry")
            .field("id", &self.id)
            .field("name", &String::from_utf8_lossy(&self.name()))
            .field("ino", &self.inode.ino())
            .field("count", &self.ref_count())
            .finish()
    }
}

/// A counted reference to a dentry (dget/dput as RAII). Holding one keeps the dentry and,
/// through it, its inode from being evicted: this is what an open file holds.
pub struct DentryRef(Arc<Dentry>);

impl DentryRef {
    pub fn arc(&self) -> &Arc<Dentry> {
        &self.0
    }
    pub fn ptr_eq(&self, other: &DentryRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Clone for DentryRef {
    fn clone(&self) -> Self {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        DentryRef(self.0.clone())
    }
}

impl std::ops::Deref for DentryRef {
    type Target = Dentry;
    fn deref(&self) -> &Dentry {
        &self.0
    }
}

impl Drop for DentryRef {
    fn drop(&mut self) {
        // dput: the last reference kills the dentry, which drops its inode reference. A
        // hashed dentry always has its parent's reference, so only unhashed ones die here.
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.set_flag(D_DEAD);
            self.0.inode.put();
        }
    }
}

impl std::fmt::Debug for DentryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
