//! # bpfvfs-vfs
//!
//! A Linux-style virtual filesystem in user space: superblocks, inodes with the kernel's
//! lifecycle, dentries, mounts, and path resolution with a lockless fast path. Filesystems
//! plug in through [`FileSystem`]; [`memfs`] is the in-memory default (tmpfs-like).
//!
//! This crate knows nothing of BPF. It offers the extension points BPF layers use: eviction
//! hooks ([`Vfs::register_evict_hook`]), the per-inode addons slot ([`InodeAddons`]), and
//! [`InodeExtensions`] (a claimable pointer word in every inode, an LSM-style blob reserved
//! by layers, per-VFS client state) — generic places a layer may keep per-inode pointers.
//!
//! ## Lock order (outermost first)
//! 1. `Vfs::mount_lock` (mount/umount only)
//! 2. `SuperBlock::rename_mutex` (cross-directory rename only)
//! 3. directory locks (`Dentry::lock_children`), parent before child; two unrelated
//!    directories (rename) in ascending dentry id
//! 4. `Dentry::links` (parent/name), inode attribute/time locks, filesystem data locks
//! 5. dentry-hash stripe locks (leaf: nothing is taken while held)
//!
//! Watch marks (`fsnotify`) come after 1-4 and are never held while a VFS lock is taken:
//! `GroupInner::marks` → `Connector::writer` → `GroupInner::queue`. Directory events are
//! queued under the directory lock; destruction callbacks run with no lock held (from
//! eviction). Details at the top of `fsnotify.rs`.
//!
//! Eviction (hooks and `evict_inode`) never runs with a directory lock held: operations that
//! remove entries drop the removed references after unlocking.
//!
//! ## References
//! Who holds what: a hashed dentry is held by its parent's child index; a dentry holds its
//! inode (i_count); an open [`File`] and a [`PathRef`] hold a dentry and a mount. Memory
//! (`Arc`) is separate from these counts and outlives them by a grace period wherever a
//! lockless reader could still see it (see `dcache` and `namei`).

pub mod addons;
pub mod changes;
mod dcache;
pub mod dentry;
pub mod errno;
pub mod file;
pub mod fileops_override;
pub mod fsnotify;
pub mod hooks;
pub mod inode;
mod kernfs;
pub mod memfs;
mod mkobj;
pub mod mount;
pub mod namei;
pub mod ops;
pub mod sb;
pub mod stats;
pub mod task;
pub mod types;

pub use addons::{AddonSlot, InodeAddons, InodeExtensions};
pub use changes::{Change, ChangeKind, ChangeListener, ListenerId, Origin};
pub use dcache::rcu_barrier;
pub use dentry::{Dentry, DentryRef};
pub use errno::{Errno, Result};
pub use file::File;
pub use fileops_override::FileOpsOverride;
pub use fsnotify::{
    watch_destruction, DestroyState, DestroyWatch, Event, Group, GroupOptions, GroupStats,
    ReadError,
};
pub use hooks::{TracePoint, VfsHooks};
pub use inode::{Inode, InodeRef, NewInode, SymlinkBody};
pub use mount::{Mount, PathBorrow, PathRef};
pub use namei::{LOOKUP_DIRECTORY, LOOKUP_FOLLOW};
pub use sb::{
    generic_setattr, simple_link, simple_rename, simple_unlink, EvictHook, FileSystem, SuperBlock,
};
pub use stats::VfsStats;
pub use types::*;

use crossbeam_epoch::{Atomic, Owned};
use dentry::Dentry as D;
use mount::MountTable;
use stats::Counters;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Makes a filesystem instance from mount options ("size=1m,mode=0755", ...).
pub type FsFactory = Arc<dyn Fn(&str) -> Result<Arc<dyn FileSystem>> + Send + Sync>;

/// Tunables of one VFS instance.
#[derive(Clone, Debug)]
pub struct VfsOptions {
    /// log2 of the dentry hash's bucket count.
    pub dcache_bits: u32,
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions { dcache_bits: 18 }
    }
}

/// One tree of mounted filesystems.
pub struct Vfs {
    pub(crate) counters: Arc<Counters>,
    hooks: Arc<RwLock<Vec<EvictHook>>>,
    ext: Arc<InodeExtensions>,
    pub(crate) dcache: dcache::DentryHash,
    pub(crate) mounts: Atomic<MountTable>,
    mount_lock: Mutex<Vec<Arc<Mount>>>,
    pub(crate) root: PathRef,
    /// rename_lock as a sequence counter: odd while a rename or (u)mount changes the tree.
    pub(crate) rename_seq: AtomicU64,
    fs_types: RwLock<HashMap<String, FsFactory>>,
    /// Security/tracing hooks (see `hooks.rs`), installed once.
    security: Arc<std::sync::OnceLock<Arc<dyn hooks::VfsHooks>>>,
    /// Whether the call sites consult `security` at all: the one branch a hook costs.
    security_on: Arc<std::sync::atomic::AtomicBool>,
    /// Namespace-change listeners (`changes.rs`).
    pub(crate) changes: changes::Listeners,
}

impl Vfs {
    /// A tree whose root is a fresh instance of `root_fs`.
    pub fn new(root_fs: Arc<dyn FileSystem>, opts: VfsOptions) -> Result<Arc<Vfs>> {
        let counters = Arc::new(Counters::default());
        let hooks: Arc<RwLock<Vec<EvictHook>>> = Arc::default();
        let ext: Arc<InodeExtensions> = Arc::default();
        let sb = SuperBlock::new(
            root_fs.clone(),
            counters.clone(),
            hooks.clone(),
            ext.clone(),
        );
        let root_inode = root_fs.fill_super(&sb)?;
        let root_dentry = D::alloc(&root_inode, None, b"/");
        sb.set_root(root_dentry.clone());
        let mnt = Mount::new(sb, root_dentry.clone(), None, root_fs.fs_type().to_string());
        let vfs = Vfs {
            counters,
            hooks,
            ext,
            dcache: dcache::DentryHash::new(opts.dcache_bits),
            mounts: Atomic::new(MountTable::default()),
            mount_lock: Mutex::new(vec![mnt.clone()]),
            root: PathRef {
                mnt,
                dentry: root_dentry,
            },
            rename_seq: AtomicU64::new(0),
            fs_types: RwLock::new(HashMap::new()),
            security: Arc::default(),
            security_on: Arc::default(),
            changes: changes::Listeners::default(),
        };
        // Watch marks leave an inode when it is evicted (IN_DELETE_SELF / IN_UNMOUNT, then
        // IN_IGNORED; destruction callbacks run).
        vfs.register_evict_hook(Arc::new(fsnotify::inode_evicted));
        vfs.register_fs_type(
            "tmpfs",
            Arc::new(|opts: &str| {
                Ok(Arc::new(memfs::MemFs::from_options(opts)?) as Arc<dyn FileSystem>)
            }),
        );
        Ok(Arc::new(vfs))
    }

    /// A tree with the in-memory filesystem at its root, default limits.
    pub fn new_memfs() -> Arc<Vfs> {
        Vfs::new(
            Arc::new(memfs::MemFs::new(memfs::MemFsOptions::default())),
            VfsOptions::default(),
        )
        .expect("memfs root cannot fail")
    }

    pub fn root(&self) -> PathRef {
        self.root.clone()
    }

    pub fn stats(&self) -> VfsStats {
        self.counters.snapshot()
    }

    /// Register a hook that runs for every inode evicted in this tree, on any filesystem.
    /// Install the security/tracing hooks (once: EBUSY after). They stay off until
    /// [`Vfs::set_hooks_enabled`]. `inode_free_security` and the `evict` trace point are
    /// delivered from an eviction hook registered here.
    pub fn set_hooks(&self, h: Arc<dyn hooks::VfsHooks>) -> Result<()> {
        self.security.set(h).map_err(|_| Errno::EBUSY)?;
        let (sec, on) = (self.security.clone(), self.security_on.clone());
        self.register_evict_hook(Arc::new(move |inode: &Arc<Inode>| {
            if on.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(h) = sec.get() {
                    h.trace(hooks::TracePoint::Evict { inode }, None);
                    h.inode_free_security(inode);
                    h.trace(hooks::TracePoint::Evict { inode }, Some(0));
                }
            }
        }));
        Ok(())
    }

    /// Switch the installed hooks on or off (off: every call site costs one load).
    pub fn set_hooks_enabled(&self, on: bool) {
        self.security_on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// With hooks on, one epoch pin held across an operation that calls hooks: each hook
    /// dispatch (which reads its program list under a pin) and the operation's own dcache
    /// reads nest in it, so the operation pays one atomic pin instead of one per hook.
    /// Grace-period rule: while it is held the operation must not wait for a grace period
    /// (`rcu_barrier`); none does.
    #[inline]
    pub(crate) fn hook_section(&self) -> Option<crossbeam_epoch::Guard> {
        self.hooks().map(|_| crossbeam_epoch::pin())
    }

    /// The hooks, if installed and switched on.
    #[inline]
    pub fn hooks(&self) -> Option<&dyn hooks::VfsHooks> {
        if !self.security_on.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.security.get().map(|h| &**h)
    }

    pub fn register_evict_hook(&self, hook: EvictHook) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// The generic inode extension points of this tree (inode word, blob reservations,
    /// client layers' per-VFS state); see [`InodeExtensions`].
    pub fn inode_ext(&self) -> &Arc<InodeExtensions> {
        &self.ext
    }

    /// Make a filesystem type mountable by name.
    pub fn register_fs_type(&self, name: &str, factory: FsFactory) {
        self.fs_types
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), factory);
    }

    /// mount -t TYPE -o OPTIONS none TARGET
    pub fn mount_type(
        &self,
        cred: &Cred,
        fs_type: &str,
        options: &str,
        target: &[u8],
    ) -> Result<Arc<Mount>> {
        if !cred.is_privileged() {
            // As mount(2): the target is resolved first (ENOENT...), then EPERM.
            self.resolve(cred, None, target, LOOKUP_FOLLOW)?;
            return Err(Errno::EPERM);
        }
        let factory = self
            .fs_types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fs_type)
            .cloned()
            .ok_or(Errno::ENODEV)?;
        let fs = factory(options)?;
        self.mount(cred, fs, target)
    }

    /// Attach a new instance of `fs` over the directory `target`.
    pub fn mount(&self, cred: &Cred, fs: Arc<dyn FileSystem>, target: &[u8]) -> Result<Arc<Mount>> {
        // mount(2) resolves the target before checking privilege (user_path_at, then
        // may_mount), so an unprivileged caller sees ENOENT for a missing target.
        if !cred.is_privileged() {
            self.resolve(cred, None, target, LOOKUP_FOLLOW)?;
            return Err(Errno::EPERM);
        }
        let at = self.resolve(cred, None, target, LOOKUP_FOLLOW | LOOKUP_DIRECTORY)?;
        let sb = SuperBlock::new(
            fs.clone(),
            self.counters.clone(),
            self.hooks.clone(),
            self.ext.clone(),
        );
        let root_inode = fs.fill_super(&sb)?;
        let root_dentry = D::alloc(&root_inode, None, b"/");
        sb.set_root(root_dentry.clone());
        let mnt = Mount::new(
            sb,
            root_dentry,
            Some((at.mnt.clone(), at.dentry.clone())),
            fs.fs_type().to_string(),
        );
        if let Err(e) = fs.populate(
            self,
            &PathRef {
                mnt: mnt.clone(),
                dentry: mnt.root().clone(),
            },
        ) {
            // Never attached: tear the half-built instance down like an unmount, so its
            // inodes are evicted and the superblock's root reference does not leak.
            self.kill_sb(&mnt);
            return Err(e);
        }
        let mut all = self.mount_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.swap_mount_table(|t| {
            t.by_point
                .insert((at.mnt.id(), at.dentry.id()), mnt.clone());
        });
        at.dentry.set_flag(dentry::D_MOUNTED);
        self.note_mount(&at.dentry, mnt.root().inode());
        all.push(mnt.clone());
        Ok(mnt)
    }

    /// Detach the mount whose root `target` names. EBUSY if other mounts sit on it.
    pub fn umount(&self, cred: &Cred, target: &[u8]) -> Result<()> {
        // As umount(2): resolve first, then EPERM (can_umount).
        let at = self.resolve(cred, None, target, LOOKUP_FOLLOW)?;
        if !cred.is_privileged() {
            return Err(Errno::EPERM);
        }
        if !std::ptr::eq(&*at.dentry, &**at.mnt.root()) {
            return Err(Errno::EINVAL);
        }
        let Some(mp) = at.mnt.mountpoint().cloned() else {
            return Err(Errno::EBUSY);
        };
        let parent = at.mnt.parent_mount().cloned().ok_or(Errno::EBUSY)?;
        let mut all = self.mount_lock.lock().unwrap_or_else(|e| e.into_inner());
        if all
            .iter()
            .any(|m| m.parent_mount().is_some_and(|p| Arc::ptr_eq(p, &at.mnt)))
        {
            return Err(Errno::EBUSY);
        }
        self.swap_mount_table(|t| {
            t.by_point.remove(&(parent.id(), mp.id()));
        });
        if !self.mount_table_has_point(mp.id()) {
            mp.clear_flag(dentry::D_MOUNTED);
        }
        self.note_mount(&mp, mp.inode());
        all.retain(|m| !Arc::ptr_eq(m, &at.mnt));
        let mnt = at.mnt.clone();
        drop(all);
        drop(at);
        self.kill_sb(&mnt);
        Ok(())
    }

    /// Every mount, root first: (mount point path, filesystem type, options).
    pub fn mounts(&self) -> Vec<(String, String, String)> {
        let all = self
            .mount_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        all.iter()
            .map(|m| {
                let p = match m.mountpoint() {
                    Some(_) => String::from_utf8_lossy(&self.path_of(&PathRef {
                        mnt: m.clone(),
                        dentry: m.root().clone(),
                    }))
                    .into_owned(),
                    None => "/".to_string(),
                };
                (p, m.sb().fs_type().to_string(), m.sb().fs().show_options())
            })
            .collect()
    }

    fn mount_table_has_point(&self, dentry_id: u64) -> bool {
        let guard = crossbeam_epoch::pin();
        let t = self.mounts.load(Ordering::Acquire, &guard);
        // SAFETY: never null; old snapshots are freed only after the grace period.
        let t = unsafe { t.deref() };
        t.by_point.keys().any(|(_, d)| *d == dentry_id)
    }

    fn swap_mount_table(&self, f: impl FnOnce(&mut MountTable)) {
        self.rename_seq.fetch_add(1, Ordering::AcqRel);
        let guard = crossbeam_epoch::pin();
        let old = self.mounts.load(Ordering::Acquire, &guard);
        // SAFETY: never null; we hold mount_lock so nobody else swaps it meanwhile.
        let mut t = unsafe { old.deref() }.clone();
        f(&mut t);
        self.mounts.store(Owned::new(t), Ordering::Release);
        // SAFETY: the old snapshot is unreachable for new readers; pinned readers are waited for.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
        self.rename_seq.fetch_add(1, Ordering::AcqRel);
    }

    /// Tear down a detached superblock: every dentry is unhashed and dropped, every inode
    /// evicted (generic_shutdown_super).
    fn kill_sb(&self, mnt: &Arc<Mount>) {
        mnt.sb().set_dying();
        let root = mnt.root().clone();
        self.shrink_subtree(&root);
        // Break the superblock -> root dentry -> root inode -> superblock cycle; the root is
        // evicted when the last reference (the mount's own, once no snapshot of the mount
        // table names it any more) goes.
        drop(mnt.sb().take_root());
    }

    fn shrink_subtree(&self, dir: &DentryRef) {
        let removed: Vec<(Vec<u8>, DentryRef)> = match dir.lock_children() {
            Ok(mut c) => {
                let names: Vec<Box<[u8]>> = c.by_name.keys().cloned().collect();
                names
                    .into_iter()
                    .filter_map(|n| c.remove(&n).map(|d| (n.to_vec(), d)))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for (name, d) in removed {
            self.unhash(dir, &name, &d);
            self.shrink_subtree(&d);
        }
    }

    /// Take `d` (named `name` in `parent`) out of the hash. The caller removes it from the
    /// parent's index and drops that reference after unlocking.
    pub(crate) fn unhash(&self, parent: &D, name: &[u8], d: &D) {
        d.clear_flag(dentry::D_HASHED);
        if self.dcache.remove(parent.id(), name, d) {
            self.counters
                .dentries_hashed
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The path of a location from the tree's root, as far as it is known ("/a/b").
    pub fn path_of(&self, p: &PathRef) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut mnt = p.mnt.clone();
        let mut d: Arc<D> = p.dentry.arc().clone();
        loop {
            if Arc::ptr_eq(&d, mnt.root().arc()) {
                match (mnt.parent_mount().cloned(), mnt.mountpoint()) {
                    (Some(pm), Some(mp)) => {
                        d = mp.arc().clone();
                        mnt = pm;
                        continue;
                    }
                    _ => break,
                }
            }
            match d.parent() {
                Some(parent) => {
                    parts.push(d.name());
                    d = parent;
                }
                None => break,
            }
        }
        let mut out = Vec::new();
        for part in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(part);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }
}

impl Drop for Vfs {
    fn drop(&mut self) {
        // Unmount everything so each filesystem sees its inodes evicted.
        let all: Vec<Arc<Mount>> =
            std::mem::take(&mut *self.mount_lock.lock().unwrap_or_else(|e| e.into_inner()));
        for m in all.iter().rev() {
            self.kill_sb(m);
        }
        // SAFETY: `&mut self`: no reader can hold the table any more.
        unsafe {
            let g = crossbeam_epoch::unprotected();
            let t = self
                .mounts
                .swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, g);
            if !t.is_null() {
                drop(t.into_owned());
            }
        }
    }
}
pub use ops::NewKind;
