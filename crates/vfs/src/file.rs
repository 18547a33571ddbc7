//! Open files (struct file). A file holds a counted reference to its dentry (and so to its
//! inode): an unlinked file stays readable until the last open handle closes, and only then
//! is the inode evicted.
//!
//! A file is allocated before it is opened (alloc_empty_file, then do_dentry_open): the
//! `file_open` hook sees it before the filesystem's `open` runs. Until
//! [`File::is_open`] (FMODE_OPENED) dropping it does nothing but release its path: no
//! `IN_CLOSE_*`, no `FileSystem::release`, not counted in `files_open`.

use crate::fileops_override::FileOpsOverride;
use crate::inode::Inode;
use crate::mount::PathRef;
use crate::types::oflags;
use std::any::Any;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub struct File {
    path: PathRef,
    flags: AtomicI32,
    /// The file position, for callers that use read/write without an explicit offset.
    pub pos: Mutex<u64>,
    /// The filesystem's per-open state; set once the open succeeded (FMODE_OPENED).
    private: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The layer's file operations when the inode had an override at open (f_op replaced):
    /// read/write/release go there instead of the filesystem. Empty for ordinary files.
    ops: OnceLock<Arc<dyn FileOpsOverride>>,
}

impl File {
    /// A file not opened yet (see the module docs).
    pub(crate) fn alloc(path: PathRef, flags: i32) -> File {
        File {
            path,
            flags: AtomicI32::new(flags),
            pos: Mutex::new(0),
            private: OnceLock::new(),
            ops: OnceLock::new(),
        }
    }
    /// The filesystem opened it: from now on it counts as open and its drop closes it.
    pub(crate) fn set_opened(&self, private: Box<dyn Any + Send + Sync>) {
        if self.private.set(private).is_ok() {
            self.path
                .inode()
                .sb()
                .counters
                .files_open
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Opened through a layer's override (set before `set_opened`).
    pub(crate) fn set_override(&self, ov: Arc<dyn FileOpsOverride>) {
        let _ = self.ops.set(ov);
    }
    /// The override this file was opened through, if any.
    #[inline]
    pub fn ops_override(&self) -> Option<&Arc<dyn FileOpsOverride>> {
        self.ops.get()
    }
    /// Whether reads must bypass size-based caching (FOPEN_DIRECT_IO at the FUSE edge): the
    /// override's answer, else the filesystem's.
    pub fn direct_io(&self) -> bool {
        match self.ops.get() {
            Some(ov) => ov.direct_io(),
            None => self.inode().sb().fs().direct_io(self.inode()),
        }
    }
    /// Whether the filesystem's open ran (false only while an open is in progress, e.g.
    /// for the `file_open` hook and the `vfs_open` entry trace).
    pub fn is_open(&self) -> bool {
        self.private.get().is_some()
    }
    #[inline]
    pub fn path(&self) -> &PathRef {
        &self.path
    }
    #[inline]
    pub fn inode(&self) -> &Arc<Inode> {
        self.path.inode()
    }
    #[inline]
    pub fn flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed)
    }
    /// fcntl(F_SETFL): only O_APPEND and O_NONBLOCK may change.
    pub fn set_status_flags(&self, flags: i32) {
        let keep = !(oflags::O_APPEND | oflags::O_NONBLOCK);
        let f = (self.flags() & keep) | (flags & (oflags::O_APPEND | oflags::O_NONBLOCK));
        self.flags.store(f, Ordering::Relaxed)
    }
    #[inline]
    pub fn readable(&self) -> bool {
        let acc = self.flags() & oflags::O_ACCMODE;
        acc == oflags::O_RDONLY || acc == oflags::O_RDWR
    }
    #[inline]
    pub fn writable(&self) -> bool {
        let acc = self.flags() & oflags::O_ACCMODE;
        acc == oflags::O_WRONLY || acc == oflags::O_RDWR
    }
    /// The filesystem's per-open state.
    pub fn private<T: Any>(&self) -> Option<&T> {
        self.private.get()?.downcast_ref::<T>()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if !self.is_open() {
            return; // never opened (a failed or denied open): nothing to close
        }
        // IN_CLOSE_* before the release and before `path` (and maybe the inode) goes.
        crate::fsnotify::file_closed(self);
        let sb = self.path.inode().sb().clone();
        match self.ops.get() {
            Some(ov) => ov.release(self),
            None => sb.fs().release(self),
        }
        sb.counters.files_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "File(ino {}, flags {:o})",
            self.inode().ino(),
            self.flags()
        )
    }
}
