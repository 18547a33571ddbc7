//! Open files (struct file). A file holds a counted reference to its dentry (and so to its
//! inode): an unlinked file stays readable until the last open handle closes, and only then
//! is the inode evicted.

use crate::inode::Inode;
use crate::mount::PathRef;
use crate::types::oflags;
use std::any::Any;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

pub struct File {
    path: PathRef,
    flags: AtomicI32,
    /// The file position, for callers that use read/write without an explicit offset.
    pub pos: Mutex<u64>,
    private: Box<dyn Any + Send + Sync>,
}

impl File {
    pub(crate) fn new(path: PathRef, flags: i32, private: Box<dyn Any + Send + Sync>) -> File {
        path.inode()
            .sb()
            .counters
            .files_open
            .fetch_add(1, Ordering::Relaxed);
        File {
            path,
            flags: AtomicI32::new(flags),
            pos: Mutex::new(0),
            private,
        }
    }
    pub fn path(&self) -> &PathRef {
        &self.path
    }
    pub fn inode(&self) -> &Arc<Inode> {
        self.path.inode()
    }
    pub fn flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed)
    }
    /// fcntl(F_SETFL): only O_APPEND and O_NONBLOCK may change.
    pub fn set_status_flags(&self, flags: i32) {
        let keep = !(oflags::O_APPEND | oflags::O_NONBLOCK);
        let f = (self.flags() & keep) | (flags & (oflags::O_APPEND | oflags::O_NONBLOCK));
        self.flags.store(f, Ordering::Relaxed)
    }
    pub fn readable(&self) -> bool {
        let acc = self.flags() & oflags::O_ACCMODE;
        acc == oflags::O_RDONLY || acc == oflags::O_RDWR
    }
    pub fn writable(&self) -> bool {
        let acc = self.flags() & oflags::O_ACCMODE;
        acc == oflags::O_WRONLY || acc == oflags::O_RDWR
    }
    /// The filesystem's per-open state.
    pub fn private<T: Any>(&self) -> Option<&T> {
        self.private.downcast_ref::<T>()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // IN_CLOSE_* before the release and before `path` (and maybe the inode) goes.
        crate::fsnotify::file_closed(self);
        let sb = self.path.inode().sb().clone();
        sb.fs().release(self);
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
