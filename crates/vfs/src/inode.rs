//! Inodes and their lifecycle.
//!
//! Two counts, as in Linux, and one more thing that is not a count:
//! - `nlink`: directory entries naming the inode (the filesystem maintains it);
//! - `count` (i_count): live references — each dentry bound to the inode holds one, and so
//!   does anything that pins the inode directly ([`InodeRef`]). Open files hold a dentry.
//! - the memory, an `Arc<Inode>`, which also lives in dcache hash nodes that lockless walkers
//!   may still be reading.
//!
//! When `count` drops to zero and the filesystem's `drop_inode` says so (by default: no links
//! left), the inode is *evicted* at once: it is marked freeing, the registered eviction hooks
//! run (local storage and watch marks are released there), and the filesystem's
//! `evict_inode` frees its data. The struct itself, the symlink body inside it and the addons
//! struct are freed only when the last `Arc` goes, which for any inode ever reachable through
//! the dcache is after an epoch grace period: a lockless walker that raced the unlink still
//! reads valid memory (seed 003: i_link must be RCU-freed with the inode).

use crate::addons::{AddonsCell, InodeAddons, InodeBlob};
use crate::errno::{Errno, Result};
use crate::sb::SuperBlock;
use crate::types::*;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// atime/mtime/ctime, changed together under one small lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

/// A symlink's target. Short targets live inline in the inode ("fast symlinks", no second
/// allocation); long ones in a box owned by the inode. Either way the body is immutable and is
/// freed only with the inode's memory, after the grace period, so the lockless walk may follow
/// it with no reference held.
pub enum SymlinkBody {
    Inline {
        len: u8,
        bytes: [u8; SymlinkBody::INLINE_MAX],
    },
    Heap(Box<[u8]>),
}

impl SymlinkBody {
    pub const INLINE_MAX: usize = 60;

    pub fn new(target: &[u8]) -> SymlinkBody {
        if target.len() <= Self::INLINE_MAX {
            let mut bytes = [0u8; Self::INLINE_MAX];
            bytes[..target.len()].copy_from_slice(target);
            SymlinkBody::Inline {
                len: target.len() as u8,
                bytes,
            }
        } else {
            SymlinkBody::Heap(target.into())
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SymlinkBody::Inline { len, bytes } => &bytes[..*len as usize],
            SymlinkBody::Heap(b) => b,
        }
    }
    pub fn is_inline(&self) -> bool {
        matches!(self, SymlinkBody::Inline { .. })
    }
}

/// Attributes a filesystem gives a new inode; the VFS computes them (owner, group from the
/// parent's set-gid bit, mode after umask) before calling the filesystem.
#[derive(Clone, Debug)]
pub struct NewInode {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
}

pub struct Inode {
    ino: u64,
    sb: Arc<SuperBlock>,
    // Attributes read by the lockless walk (permission checks) are atomics.
    mode: AtomicU32,
    uid: AtomicU32,
    gid: AtomicU32,
    nlink: AtomicU32,
    size: AtomicU64,
    rdev: u32,
    times: Mutex<Times>,
    /// i_count: see the module comment.
    count: AtomicU32,
    /// Set once eviction starts; never cleared.
    freeing: AtomicBool,
    link: Option<SymlinkBody>,
    addons: AddonsCell,
    /// One opaque pointer word for the layer that claimed it
    /// ([`crate::addons::InodeExtensions::claim_inode_word`]): the generic form of a
    /// dedicated per-feature field such as the proposed i_bpf_storage. 8 bytes in every inode.
    ext_word: AtomicPtr<()>,
    /// Words reserved by layers at the time this inode was allocated (an LSM-style blob):
    /// 8 bytes here, plus the allocation when anything is reserved.
    blob: InodeBlob,
    /// The filesystem's own per-inode data (i_private).
    private: Box<dyn Any + Send + Sync>,
}

impl Inode {
    pub(crate) fn new(
        sb: Arc<SuperBlock>,
        ino: u64,
        attrs: &NewInode,
        link: Option<&[u8]>,
        private: Box<dyn Any + Send + Sync>,
        blob_words: usize,
    ) -> Inode {
        let now = Timespec::now();
        sb.counters.inodes_live.fetch_add(1, Ordering::Relaxed);
        sb.counters
            .inodes_allocated_total
            .fetch_add(1, Ordering::Relaxed);
        Inode {
            ino,
            mode: AtomicU32::new(attrs.mode),
            uid: AtomicU32::new(attrs.uid),
            gid: AtomicU32::new(attrs.gid),
            nlink: AtomicU32::new(1),
            size: AtomicU64::new(link.map(|l| l.len() as u64).unwrap_or(0)),
            rdev: attrs.rdev,
            times: Mutex::new(Times {
                atime: now,
                mtime: now,
                ctime: now,
            }),
            count: AtomicU32::new(0),
            freeing: AtomicBool::new(false),
            link: link.map(SymlinkBody::new),
            addons: AddonsCell::default(),
            ext_word: AtomicPtr::new(std::ptr::null_mut()),
            blob: InodeBlob::new(blob_words),
            private,
            sb,
        }
    }

    #[inline]
    pub fn ino(&self) -> u64 {
        self.ino
    }
    #[inline]
    pub fn sb(&self) -> &Arc<SuperBlock> {
        &self.sb
    }
    #[inline]
    pub fn mode(&self) -> u32 {
        self.mode.load(Ordering::Acquire)
    }
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode()).unwrap_or(FileType::Regular)
    }
    #[inline]
    pub fn is_dir(&self) -> bool {
        self.mode() & S_IFMT == S_IFDIR
    }
    #[inline]
    pub fn is_symlink(&self) -> bool {
        self.mode() & S_IFMT == S_IFLNK
    }
    #[inline]
    pub fn uid(&self) -> u32 {
        self.uid.load(Ordering::Acquire)
    }
    #[inline]
    pub fn gid(&self) -> u32 {
        self.gid.load(Ordering::Acquire)
    }
    #[inline]
    pub fn nlink(&self) -> u32 {
        self.nlink.load(Ordering::Acquire)
    }
    #[inline]
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    #[inline]
    pub fn rdev(&self) -> u32 {
        self.rdev
    }
    pub fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The symlink body, for symlinks.
    pub fn link_body(&self) -> Option<&SymlinkBody> {
        self.link.as_ref()
    }
    pub fn is_freeing(&self) -> bool {
        self.freeing.load(Ordering::Acquire)
    }
    /// Live references (i_count).
    pub fn ref_count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The filesystem's private data, downcast.
    pub fn private<T: Any>(&self) -> Option<&T> {
        self.private.downcast_ref::<T>()
    }

    /// The addons struct if some layer already allocated it.
    #[inline]
    pub fn addons(&self) -> Option<&InodeAddons> {
        self.addons.get()
    }
    /// The addons struct, allocated by compare-and-swap on first use.
    pub fn addons_or_alloc(&self) -> &InodeAddons {
        self.addons.get_or_alloc(|| {
            self.sb
                .counters
                .addons_allocated
                .fetch_add(1, Ordering::Relaxed);
        })
    }

    /// The per-inode pointer word (see the field). The VFS never reads it: the layer that
    /// claimed it stores and clears it, and must clear it (releasing what it points to) no
    /// later than eviction, since the word's memory goes with the inode's.
    #[inline]
    pub fn ext_word(&self) -> &AtomicPtr<()> {
        &self.ext_word
    }

    /// Word `i` of this inode's blob, if the blob has it (inodes allocated before word `i`
    /// was reserved do not). Same rule as [`Inode::ext_word`]: cleared by eviction.
    #[inline]
    pub fn blob_word(&self, i: usize) -> Option<&AtomicPtr<()>> {
        self.blob.word(i)
    }

    /// Bytes of this inode's blob allocation (0 if none), for memory accounting.
    pub fn blob_bytes(&self) -> usize {
        self.blob.allocated_bytes()
    }

    // ---- attribute setters, for filesystems (inode_operations implementations) ----

    pub fn set_mode(&self, mode: u32) {
        self.mode.store(mode, Ordering::Release)
    }
    pub fn set_uid(&self, uid: u32) {
        self.uid.store(uid, Ordering::Release)
    }
    pub fn set_gid(&self, gid: u32) {
        self.gid.store(gid, Ordering::Release)
    }
    pub fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release)
    }
    pub fn set_nlink(&self, n: u32) {
        self.nlink.store(n, Ordering::Release)
    }
    pub fn inc_nlink(&self) {
        self.nlink.fetch_add(1, Ordering::AcqRel);
    }
    pub fn drop_nlink(&self) {
        let _ = self
            .nlink
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
    pub fn clear_nlink(&self) {
        self.nlink.store(0, Ordering::Release)
    }
    pub fn update_times(&self, f: impl FnOnce(&mut Times)) {
        let mut t = self.times.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut t)
    }
    /// mtime = ctime = now (a change to the contents).
    pub fn touch_modified(&self) {
        let now = Timespec::now();
        self.update_times(|t| {
            t.mtime = now;
            t.ctime = now;
        })
    }
    /// ctime = now (a change to the inode).
    pub fn touch_changed(&self) {
        let now = Timespec::now();
        self.update_times(|t| t.ctime = now)
    }

    /// The attributes stat(2) reports, before any filesystem override.
    pub fn generic_stat(&self) -> Stat {
        let t = self.times();
        let size = self.size();
        Stat {
            dev: self.sb.dev(),
            ino: self.ino,
            mode: self.mode(),
            nlink: self.nlink(),
            uid: self.uid(),
            gid: self.gid(),
            rdev: self.rdev,
            size,
            blksize: 4096,
            blocks: size.div_ceil(512),
            atime: t.atime,
            mtime: t.mtime,
            ctime: t.ctime,
        }
    }

    /// generic_permission: may the caller access this inode with `mask` (may::*)?
    /// Lock-free: reads only atomics, so the lockless walk uses it too.
    pub fn permission(&self, cred: &Cred, mask: u32) -> Result<()> {
        let mode = self.mode();
        let uid = self.uid();
        if cred.is_privileged() {
            // CAP_DAC_OVERRIDE: read/write always; exec only if some x bit is set or a dir.
            if mask & may::EXEC == 0 || mode & 0o111 != 0 || mode & S_IFMT == S_IFDIR {
                return Ok(());
            }
            return Err(Errno::EACCES);
        }
        let bits = if cred.uid == uid {
            (mode >> 6) & 7
        } else if cred.in_group(self.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        if bits & mask == mask {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    // ---- reference counting ----

    pub(crate) fn get(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// iput: drop one reference; the last one evicts the inode if the filesystem agrees.
    pub(crate) fn put(self: &Arc<Self>) {
        if self.count.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if self.sb.is_dying() || self.sb.fs().drop_inode(self) {
            self.evict();
        }
    }

    /// Eviction: run once, when the last reference to an inode that should not stay cached
    /// goes. Hooks first (they may still look at the inode's data), then the filesystem.
    fn evict(self: &Arc<Self>) {
        if self.freeing.swap(true, Ordering::AcqRel) {
            return;
        }
        for hook in self.sb.evict_hooks().iter() {
            hook(self);
        }
        self.sb.fs().evict_inode(self);
        self.sb
            .counters
            .inodes_evicted_total
            .fetch_add(1, Ordering::Relaxed);
        self.sb
            .counters
            .inodes_evicted_pending_free
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        // The memory goes now: after the grace period for anything a lockless walker could
        // have reached. The symlink body and the addons struct go with it.
        self.sb.counters.inodes_live.fetch_sub(1, Ordering::Relaxed);
        if *self.freeing.get_mut() {
            self.sb
                .counters
                .inodes_evicted_pending_free
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Inode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inode")
            .field("ino", &self.ino)
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("nlink", &self.nlink())
            .field("count", &self.ref_count())
            .finish()
    }
}

/// A counted reference to an inode (igrab/iput as RAII).
pub struct InodeRef(Arc<Inode>);

impl InodeRef {
    pub fn new(inode: Arc<Inode>) -> InodeRef {
        inode.get();
        InodeRef(inode)
    }
    pub fn arc(&self) -> &Arc<Inode> {
        &self.0
    }
}

impl Clone for InodeRef {
    fn clone(&self) -> Self {
        InodeRef::new(self.0.clone())
    }
}

impl std::ops::Deref for InodeRef {
    type Target = Inode;
    fn deref(&self) -> &Inode {
        &self.0
    }
}

impl Drop for InodeRef {
    fn drop(&mut self) {
        self.0.put()
    }
}
