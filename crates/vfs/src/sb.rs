//! Superblocks and the filesystem trait (super_operations + inode_operations +
//! file_operations in one object per mounted filesystem instance).
//!
//! A filesystem implements [`FileSystem`]; the VFS does the rest (path walk, dentries,
//! permission checks, locking, reference counts). The default method bodies are the libfs
//! "simple_*" helpers: a filesystem whose directories live entirely in the dcache (tmpfs,
//! bpffs) only writes what differs.

use crate::addons::InodeExtensions;
use crate::errno::{Errno, Result};
use crate::file::File;
use crate::inode::{Inode, NewInode};
use crate::stats::Counters;
use crate::types::*;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Called with each inode as it is evicted (before the filesystem frees its data).
pub type EvictHook = Arc<dyn Fn(&Arc<Inode>) + Send + Sync>;

/// Inode numbers are unique across all superblocks of the process, so one FUSE mount can show
/// several filesystems without `find` or `tar` mistaking two files for hard links.
static NEXT_INO: AtomicU64 = AtomicU64::new(1);
static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

pub struct SuperBlock {
    dev: u64,
    fs: Arc<dyn FileSystem>,
    pub(crate) counters: Arc<Counters>,
    hooks: Arc<RwLock<Vec<EvictHook>>>,
    /// The VFS-wide inode extension points (blob size, client layers' state).
    ext: Arc<InodeExtensions>,
    dying: AtomicBool,
    /// The root dentry, set once by the mount; dropped at unmount (`kill_sb`). It must be
    /// dropped explicitly: the root dentry holds the root inode, which holds this
    /// superblock, so a reference kept here forever is a cycle that leaks the superblock, the
    /// filesystem and the root, and keeps the root inode from ever being evicted.
    pub(crate) root: Mutex<Option<crate::dentry::DentryRef>>,
    /// s_vfs_rename_mutex: serializes cross-directory renames so the ancestor check and the
    /// two directory locks are taken without deadlock (lock order: this, then the directory
    /// locks: an ancestor before its descendant, unrelated ones in ascending dentry id).
    pub(crate) rename_mutex: std::sync::Mutex<()>,
}

impl SuperBlock {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        counters: Arc<Counters>,
        hooks: Arc<RwLock<Vec<EvictHook>>>,
        ext: Arc<InodeExtensions>,
    ) -> Arc<SuperBlock> {
        Arc::new(SuperBlock {
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            fs,
            counters,
            hooks,
            ext,
            dying: AtomicBool::new(false),
            root: Mutex::new(None),
            rename_mutex: std::sync::Mutex::new(()),
        })
    }

    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }
    /// The extension points of the VFS this superblock belongs to.
    #[inline]
    pub fn inode_ext(&self) -> &InodeExtensions {
        &self.ext
    }
    pub fn dev(&self) -> u64 {
        self.dev
    }
    pub fn magic(&self) -> u64 {
        self.fs.magic()
    }
    pub fn fs_type(&self) -> &'static str {
        self.fs.fs_type()
    }
    pub(crate) fn is_dying(&self) -> bool {
        self.dying.load(Ordering::Acquire)
    }
    pub(crate) fn set_dying(&self) {
        self.dying.store(true, Ordering::Release)
    }
    pub(crate) fn set_root(&self, root: crate::dentry::DentryRef) {
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some(root);
    }
    pub(crate) fn take_root(&self) -> Option<crate::dentry::DentryRef> {
        self.root.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    pub(crate) fn evict_hooks(&self) -> Vec<EvictHook> {
        self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// new_inode: allocate an inode of this superblock with a fresh, process-unique number.
    /// Its reference count starts at zero; binding it to a dentry takes the first reference.
    pub fn alloc_inode(
        self: &Arc<Self>,
        attrs: &NewInode,
        symlink_target: Option<&[u8]>,
        private: Box<dyn Any + Send + Sync>,
    ) -> Arc<Inode> {
        let ino = NEXT_INO.fetch_add(1, Ordering::Relaxed);
        Arc::new(Inode::new(
            self.clone(),
            ino,
            attrs,
            symlink_target,
            private,
            self.ext.blob_words(),
        ))
    }
}

impl std::fmt::Debug for SuperBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SuperBlock({} dev {})", self.fs_type(), self.dev)
    }
}

/// What a filesystem implements. `dir` arguments are directories whose lock the VFS holds;
/// the VFS has already checked permissions, name validity and existence, so implementations
/// decide only what their filesystem allows and how its data changes.
pub trait FileSystem: Send + Sync + 'static {
    /// The type name shown in mount listings ("tmpfs", "bpf", ...).
    fn fs_type(&self) -> &'static str;
    /// statfs f_type (e.g. TMPFS_MAGIC).
    fn magic(&self) -> u64;
    /// Create the root inode (fill_super).
    fn fill_super(&self, sb: &Arc<SuperBlock>) -> Result<Arc<Inode>>;
    fn statfs(&self, sb: &SuperBlock) -> Result<StatFs>;
    /// Called once the new instance is mounted, to create its initial entries (bpffs's
    /// maps.debug, a kernfs tree's nodes) through ordinary VFS calls.
    fn populate(&self, vfs: &crate::Vfs, root: &crate::PathRef) -> Result<()> {
        let _ = (vfs, root);
        Ok(())
    }
    /// Mount options as /proc/mounts shows them.
    fn show_options(&self) -> String {
        String::new()
    }

    // ---- inode_operations ----

    /// Find `name` in `dir` when the dcache does not have it. Filesystems whose directories
    /// live wholly in the dcache (the default) answer "no such entry".
    fn lookup(&self, sb: &Arc<SuperBlock>, dir: &Inode, name: &[u8]) -> Result<Option<Arc<Inode>>> {
        let _ = (sb, dir, name);
        Ok(None)
    }

    /// A regular file (also a fifo or socket via mknod).
    fn create(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>>;
    fn mkdir(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>>;
    fn symlink(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        target: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>>;
    fn mknod(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
    ) -> Result<Arc<Inode>> {
        let _ = (sb, dir, name, attrs);
        Err(Errno::EPERM)
    }
    /// A special file carrying `payload` (vfs_mkobj: how bpffs pins objects). Filesystems
    /// that do not hold such files refuse with EPERM.
    fn mkobj(
        &self,
        sb: &Arc<SuperBlock>,
        dir: &Inode,
        name: &[u8],
        attrs: &NewInode,
        payload: Box<dyn Any + Send + Sync>,
    ) -> Result<Arc<Inode>> {
        let _ = (sb, dir, name, attrs, payload);
        Err(Errno::EPERM)
    }
    /// A new name for `old` in `dir` (simple_link).
    fn link(&self, old: &Inode, dir: &Inode, name: &[u8]) -> Result<()> {
        simple_link(old, dir, name)
    }
    /// Remove `name` (naming `victim`, not a directory) from `dir` (simple_unlink).
    fn unlink(&self, dir: &Inode, name: &[u8], victim: &Inode) -> Result<()> {
        simple_unlink(dir, name, victim)
    }
    /// Remove the empty directory `victim` (simple_rmdir).
    fn rmdir(&self, dir: &Inode, name: &[u8], victim: &Inode) -> Result<()> {
        let _ = name;
        victim.clear_nlink();
        victim.touch_changed();
        dir.drop_nlink();
        dir.touch_modified();
        Ok(())
    }
    /// Whether rmdir leaves emptiness to this filesystem: the VFS then asks `rmdir` even
    /// when the directory has entries, and removes them with it (kernfs: a cgroup directory
    /// holds its control files; `rmdir` refuses what must not go). Default: false, a
    /// directory with entries is ENOTEMPTY.
    fn rmdir_removes_entries(&self) -> bool {
        false
    }
    /// A successful rmdir of `victim` finished and every directory lock is released (the
    /// place for work that must not run under them). Default: nothing.
    fn rmdir_done(&self, victim: &Inode) {
        let _ = victim;
    }
    /// The directory `dir` was just created (mkdir), its parent still locked: a kernfs-like
    /// filesystem adds its own entries (`Vfs::fs_add_entry`) so the directory is never seen
    /// without them. Default: nothing.
    fn populate_dir(&self, vfs: &crate::Vfs, dir: &crate::DentryRef) {
        let _ = (vfs, dir);
    }
    /// Move `victim` from `old_dir/old_name` to `new_dir/new_name`, replacing `target` if
    /// any (already checked compatible), or exchanging with it (RENAME_EXCHANGE).
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &self,
        old_dir: &Inode,
        old_name: &[u8],
        victim: &Inode,
        new_dir: &Inode,
        new_name: &[u8],
        target: Option<&Inode>,
        flags: u32,
    ) -> Result<()> {
        simple_rename(old_dir, old_name, victim, new_dir, new_name, target, flags)
    }
    /// Apply attribute changes the VFS has authorized (simple_setattr). Filesystems with data
    /// override it to truncate.
    fn setattr(&self, inode: &Inode, attr: &SetAttr) -> Result<()> {
        if attr.size.is_some() {
            return Err(Errno::EPERM);
        }
        generic_setattr(inode, attr);
        Ok(())
    }
    fn getattr(&self, inode: &Inode) -> Stat {
        inode.generic_stat()
    }

    // ---- file_operations ----

    /// Prepare per-open state; the VFS already checked access. Default: no state.
    fn open(&self, inode: &Inode, flags: i32) -> Result<Box<dyn Any + Send + Sync>> {
        let _ = (inode, flags);
        Ok(Box::new(()))
    }
    fn read(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<usize> {
        let _ = (file, buf, offset);
        Err(Errno::EINVAL)
    }
    /// Whether reads of `inode` bypass size-based caching: its contents are generated at
    /// open and its reported size (0) says nothing about them (seq_file-like files such as
    /// bpffs's maps.debug). The FUSE edge opens such files with FOPEN_DIRECT_IO, else the
    /// host kernel trusts the size 0 and reads nothing. Default: false.
    fn direct_io(&self, inode: &Inode) -> bool {
        let _ = inode;
        false
    }
    fn write(&self, file: &File, data: &[u8], offset: u64) -> Result<usize> {
        let _ = (file, data, offset);
        Err(Errno::EINVAL)
    }
    fn fsync(&self, file: &File, datasync: bool) -> Result<()> {
        let _ = (file, datasync);
        Ok(())
    }
    /// Space reservation (fallocate mode 0 / KEEP_SIZE); default unsupported.
    fn fallocate(&self, inode: &Inode, mode: i32, offset: u64, len: u64) -> Result<()> {
        let _ = (inode, mode, offset, len);
        Err(Errno::EOPNOTSUPP)
    }
    fn release(&self, file: &File) {
        let _ = file;
    }

    // ---- xattrs (optional) ----
    fn getxattr(&self, inode: &Inode, name: &[u8]) -> Result<Vec<u8>> {
        let _ = (inode, name);
        Err(Errno::EOPNOTSUPP)
    }
    fn setxattr(&self, inode: &Inode, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        let _ = (inode, name, value, flags);
        Err(Errno::EOPNOTSUPP)
    }
    fn listxattr(&self, inode: &Inode) -> Result<Vec<Vec<u8>>> {
        let _ = inode;
        Err(Errno::EOPNOTSUPP)
    }
    fn removexattr(&self, inode: &Inode, name: &[u8]) -> Result<()> {
        let _ = (inode, name);
        Err(Errno::EOPNOTSUPP)
    }

    // ---- capabilities ----

    /// Whether a layer may bind its own state to a regular file created here through the
    /// normal create path (issue 9's true pins: the file holds an object until its inode is
    /// evicted). Filesystems whose nodes the filesystem itself owns (kernfs-like trees)
    /// answer false. Default: true.
    fn allows_true_pins(&self) -> bool {
        true
    }

    // ---- super_operations ----

    /// Should an inode whose last reference went be evicted now (generic_drop_inode)?
    fn drop_inode(&self, inode: &Inode) -> bool {
        inode.nlink() == 0
    }
    /// Release the inode's data (evict_inode). Runs once, after the eviction hooks.
    fn evict_inode(&self, inode: &Inode) {
        let _ = inode;
    }
}

/// simple_link: the default [`FileSystem::link`], for filesystems that extend it.
pub fn simple_link(old: &Inode, dir: &Inode, name: &[u8]) -> Result<()> {
    let _ = name;
    if old.nlink() >= LINK_MAX {
        return Err(Errno::EMLINK);
    }
    old.inc_nlink();
    old.touch_changed();
    dir.touch_modified();
    Ok(())
}

/// simple_unlink: the default [`FileSystem::unlink`], for filesystems that extend it.
pub fn simple_unlink(dir: &Inode, name: &[u8], victim: &Inode) -> Result<()> {
    let _ = name;
    victim.drop_nlink();
    victim.touch_changed();
    dir.touch_modified();
    Ok(())
}

/// simple_rename: the default [`FileSystem::rename`] (link counts and times), for
/// filesystems that extend it.
#[allow(clippy::too_many_arguments)]
pub fn simple_rename(
    old_dir: &Inode,
    old_name: &[u8],
    victim: &Inode,
    new_dir: &Inode,
    new_name: &[u8],
    target: Option<&Inode>,
    flags: u32,
) -> Result<()> {
    let _ = (old_name, new_name);
    let exchange = flags & rename_flags::RENAME_EXCHANGE != 0;
    if exchange {
        let target = target.ok_or(Errno::ENOENT)?;
        if victim.is_dir() != target.is_dir() {
            if victim.is_dir() {
                old_dir.drop_nlink();
                new_dir.inc_nlink();
            } else {
                new_dir.drop_nlink();
                old_dir.inc_nlink();
            }
        }
        target.touch_changed();
    } else {
        if let Some(t) = target {
            if t.is_dir() {
                t.clear_nlink();
                new_dir.drop_nlink();
            } else {
                t.drop_nlink();
            }
            t.touch_changed();
        }
        if victim.is_dir() {
            old_dir.drop_nlink();
            new_dir.inc_nlink();
        }
    }
    victim.touch_changed();
    old_dir.touch_modified();
    new_dir.touch_modified();
    Ok(())
}

/// setattr_copy: apply an authorized change to the inode's attributes.
pub fn generic_setattr(inode: &Inode, attr: &SetAttr) {
    let now = Timespec::now();
    if let Some(uid) = attr.uid {
        inode.set_uid(uid);
    }
    if let Some(gid) = attr.gid {
        inode.set_gid(gid);
    }
    if let Some(mode) = attr.mode {
        inode.set_mode((inode.mode() & S_IFMT) | (mode & 0o7777));
    }
    inode.update_times(|t| {
        match attr.atime {
            Some(TimeSet::Now) => t.atime = now,
            Some(TimeSet::At(ts)) => t.atime = ts,
            None => {}
        }
        match attr.mtime {
            Some(TimeSet::Now) => t.mtime = now,
            Some(TimeSet::At(ts)) => t.mtime = ts,
            None => {}
        }
        t.ctime = attr.ctime.unwrap_or(now);
    });
}
