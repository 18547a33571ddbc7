//! # bpfvfs-cgroup
//!
//! A kernfs-like cgroup v2 tree mounted at `/sys/fs/cgroup` in a bpfvfs [`Vfs`]: the
//! filesystem owns its nodes (a group is a directory with its control files; users create and
//! remove groups with mkdir/rmdir, never files), processes join a group by writing their pid
//! to `cgroup.procs`, and other layers *expose* read-only seq files in groups (BPF views,
//! objects pinned in bpffs) that hold no reference the VFS knows about.
//!
//! Two modes ([`CgroupMode`]):
//! - **Local**: groups exist only here. A group's id is its directory's inode number, as the
//!   kernel's cgroup id is the kernfs node id (`stat -c %i` of the directory == `id()`).
//! - **Host**: a read-only mirror of the host's cgroup v2 hierarchy. Groups, names and ids
//!   are the host's (the host directory's inode number); membership is read from
//!   `/proc/PID/cgroup`. Our VFS numbers inodes from one process-wide allocator, so in host
//!   mode `st_ino` of a group directory (a VFS number) differs from `id()` (the host's);
//!   `of_inode` maps the former to the group. mkdir, rmdir, and writes are EROFS.
//!   Host groups appear when looked up or when their parent directory is opened
//!   (`ls`); groups gone on the host disappear when their parent directory is opened.
//!
//! The kernel's errnos, checked on a host cgroup2 mount: creating a regular file EACCES
//! (kernfs has no `create`), mknod/symlink/link/rename EPERM, unlink of a control or
//! exposed file EPERM, rmdir of a group with child groups or member processes EBUSY,
//! writing a pid that does not exist ESRCH, a malformed pid EINVAL.
//!
//! ## Lock order (outermost first)
//! 1. VFS directory locks (the VFS holds them when it calls `CgroupFs::mkdir`, `rmdir`,
//!    `lookup`, `populate_dir`)
//! 2. `CgroupTree::inner` (ids, inode numbers, membership, inherited exposures)
//! 3. per-group locks (`Cgroup::children`, `procs`, `dir`) and an exposure's `copies`;
//!    a parent's `children` before a child's
//!
//! Nothing of this crate calls into the VFS (which takes directory locks) while holding 2 or
//! 3. `on_remove` callbacks run with no lock of this crate held; for an rmdir they run from
//! `rmdir_done`, after the VFS released its directory locks, so a callback may do VFS
//! operations (remove exposed files elsewhere, drop links). Nothing is evicted while a VFS
//! directory lock is held: an exposed file removed from inside `populate_dir` (its exposure
//! was removed meanwhile) keeps an inode reference until the next unlocked call into the
//! tree drops it.

mod fs;
mod host;
mod tree;

pub use bpfvfs_vfs::Errno;
pub use fs::CGROUP2_SUPER_MAGIC;
pub use host::{check_host_root, find_host_cgroup2, host_cgroup_path_of_pid, HostError};
pub use tree::{Cgroup, CgroupTree, ExposedEntry, Exposure, ExposureMeta, RemoveCallback};

use bpfvfs_vfs::{Cred, Vfs};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};

/// Which hierarchy the tree shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// Groups created here (mkdir), ids = directory inode numbers.
    Local,
    /// A read-only mirror of the host cgroup v2 hierarchy mounted at this path.
    Host(PathBuf),
}

/// The orders of the kernel's cgroup iterator (`BPF_CGROUP_ITER_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkOrder {
    /// The start group, then each child's subtree in pre-order (children in creation order).
    DescendantsPre,
    /// Each child's subtree in post-order, then the start group.
    DescendantsPost,
    /// The start group, its parent, ..., the root.
    AncestorsUp,
    /// The start group alone.
    SelfOnly,
}

/// What reading an exposed file shows: generated once per open for the file's group, then
/// served at any offset from that snapshot (seq_file style).
pub trait SeqShow: Send + Sync {
    fn show(&self, group: &Arc<Cgroup>) -> Result<Vec<u8>, Errno>;
}

/// Where `install` mounts the tree.
pub const MOUNT_PATH: &str = "/sys/fs/cgroup";

/// Trees by the VFS they belong to. A `Weak<Vfs>` keeps the Vfs's allocation from being
/// reused while its entry exists, so the address comparison cannot confuse a dead Vfs with a
/// new one; dead entries are pruned on install.
/// Read on every program run that asks for the current group (`tree_of`): a read lock.
static TREES: RwLock<Vec<(Weak<Vfs>, Arc<CgroupTree>)>> = RwLock::new(Vec::new());

/// Create the tree of `vfs`: register the filesystem type "cgroup2", create
/// `/sys/fs/cgroup` (and its parents) and mount the tree there. EBUSY if `vfs` already has
/// one; in host mode ENOTDIR/ENOENT/EINVAL when the path is not a cgroup v2 mount (use
/// [`check_host_root`] first for a message).
pub fn install(vfs: &Arc<Vfs>, mode: CgroupMode) -> Result<Arc<CgroupTree>, Errno> {
    if tree_of(vfs).is_some() {
        return Err(Errno::EBUSY);
    }
    if let CgroupMode::Host(p) = &mode {
        host::check_host_root(p).map_err(|e| e.errno())?;
    }
    let tree = CgroupTree::new(vfs, mode)?;
    let t = tree.clone();
    let mounted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    vfs.register_fs_type(
        "cgroup2",
        Arc::new(move |_opts: &str| {
            // One superblock per tree: the groups know one directory each.
            if mounted.swap(true, std::sync::atomic::Ordering::AcqRel) {
                return Err(Errno::EBUSY);
            }
            Ok(Arc::new(fs::CgroupFs::new(t.clone())) as Arc<dyn bpfvfs_vfs::FileSystem>)
        }),
    );
    let cred = Cred::root();
    let mut path = String::new();
    for comp in MOUNT_PATH.split('/').filter(|c| !c.is_empty()) {
        path.push('/');
        path.push_str(comp);
        match vfs.mkdir(&cred, None, path.as_bytes(), 0o755) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    vfs.mount_type(&cred, "cgroup2", "", MOUNT_PATH.as_bytes())?;
    let mut all = TREES.write().unwrap_or_else(|e| e.into_inner());
    // Trees of dead VFSs leave the registry; they are dropped (running their removal
    // callbacks) after the registry lock is released, so a callback may call `tree_of`.
    let (live, dead): (Vec<_>, Vec<_>) = std::mem::take(&mut *all)
        .into_iter()
        .partition(|(w, _)| w.strong_count() > 0);
    *all = live;
    all.push((Arc::downgrade(vfs), tree.clone()));
    drop(all);
    drop(dead);
    Ok(tree)
}

/// The tree installed in `vfs`, if any.
pub fn tree_of(vfs: &Vfs) -> Option<Arc<CgroupTree>> {
    TREES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), vfs))
        .map(|(_, t)| t.clone())
}
