//! Groups, the tree, membership, walks, exposures. The filesystem side is in `fs.rs`; lock
//! order at the top of `lib.rs`.

use crate::fs::{self, Node};
use crate::host;
use crate::{CgroupMode, SeqShow, WalkOrder};
use bpfvfs_vfs::{Cred, Dentry, Errno, Inode, InodeRef, Mount, NewInode, PathRef, Vfs, S_IFREG};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One group. Shared as `Arc`; a removed group stays valid memory for whoever holds it
/// (`is_removed()` says it is gone), as a css outlives its rmdir while referenced.
pub struct Cgroup {
    id: AtomicU64,
    level: u32,
    parent: Option<Arc<Cgroup>>,
    name: String,
    removed: AtomicBool,
    /// `on_remove` callbacks ran.
    finished: AtomicBool,
    storage: AtomicPtr<()>,
    /// Member processes (thread-group ids), in the order they joined (local mode).
    procs: Mutex<Vec<u32>>,
    /// Child groups in creation order; a removed child is taken out.
    children: Mutex<Vec<Arc<Cgroup>>>,
    /// The group's directory in the VFS (memory only: the parent's index holds it).
    dir: Mutex<Weak<Dentry>>,
    /// Host mode: the host directory mirrored.
    host: Option<PathBuf>,
    tree: Weak<CgroupTree>,
}

impl Cgroup {
    fn new(
        tree: Weak<CgroupTree>,
        id: u64,
        parent: Option<Arc<Cgroup>>,
        name: &str,
        host: Option<PathBuf>,
    ) -> Cgroup {
        Cgroup {
            tree,
            id: AtomicU64::new(id),
            level: parent.as_ref().map_or(0, |p| p.level + 1),
            parent,
            name: name.to_string(),
            removed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            storage: AtomicPtr::new(std::ptr::null_mut()),
            procs: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
            dir: Mutex::new(Weak::new()),
            host,
        }
    }
    /// Local mode: the directory's inode number; host mode: the host's cgroup id.
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }
    /// Root = 0.
    pub fn level(&self) -> u32 {
        self.level
    }
    pub fn parent(&self) -> Option<Arc<Cgroup>> {
        self.parent.clone()
    }
    /// Index i = id of the ancestor at level i; the last is this group's own id (the
    /// kernel's `cgrp->ancestors[]`).
    pub fn ancestor_ids(&self) -> Vec<u64> {
        let mut v = vec![self.id()];
        let mut p = self.parent.clone();
        while let Some(g) = p {
            v.push(g.id());
            p = g.parent.clone();
        }
        v.reverse();
        v
    }
    /// "" for the root.
    pub fn name(&self) -> String {
        self.name.clone()
    }
    /// "/" for the root, else "/a/b".
    pub fn path(&self) -> String {
        let mut parts = Vec::new();
        let mut g: Option<&Cgroup> = Some(self);
        while let Some(c) = g {
            if c.parent.is_some() {
                parts.push(c.name.as_str());
            }
            g = c.parent.as_deref();
        }
        if parts.is_empty() {
            return "/".into();
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
    /// Child groups, in creation order.
    pub fn children(&self) -> Vec<Arc<Cgroup>> {
        lock(&self.children).clone()
    }
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
    /// The owner word of the local-storage core (the kernel's `cgrp->bpf_cgrp_storage`).
    pub fn storage_word(&self) -> &AtomicPtr<()> {
        &self.storage
    }
    /// Member processes: local mode, the pids moved here that still exist; host mode, the
    /// host's `cgroup.procs`.
    pub fn procs(&self) -> Vec<u32> {
        if let Some(h) = &self.host {
            return std::fs::read_to_string(h.join("cgroup.procs"))
                .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
                .unwrap_or_default();
        }
        // Exited processes leave their group, as the kernel's do.
        if let Some(t) = self.tree() {
            let mut inner = lock(&t.inner);
            CgroupTree::prune_locked(&mut inner, self);
        }
        lock(&self.procs).clone()
    }
    /// The tree this group belongs (or belonged) to, while it exists.
    pub fn tree(&self) -> Option<Arc<CgroupTree>> {
        self.tree.upgrade()
    }
    /// The group's host directory (host mode).
    pub fn host_path(&self) -> Option<&std::path::Path> {
        self.host.as_deref()
    }
    pub(crate) fn dir(&self) -> Option<Arc<Dentry>> {
        lock(&self.dir).upgrade().filter(|d| live_dentry(d))
    }
    pub(crate) fn set_dir(&self, d: &Arc<Dentry>) {
        *lock(&self.dir) = Arc::downgrade(d);
    }
    pub(crate) fn set_id(&self, id: u64) {
        self.id.store(id, Ordering::Relaxed)
    }
    fn is_descendant_of(&self, anc: &Cgroup) -> bool {
        let mut g: Option<&Cgroup> = Some(self);
        while let Some(c) = g {
            if std::ptr::eq(c, anc) {
                return true;
            }
            g = c.parent.as_deref();
        }
        false
    }
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup")
            .field("id", &self.id())
            .field("path", &self.path())
            .field("removed", &self.is_removed())
            .finish()
    }
}

/// A callback run once per removed group (`CgroupTree::on_remove`).
pub type RemoveCallback = Arc<dyn Fn(&Arc<Cgroup>) + Send + Sync>;
type RemoveCb = RemoveCallback;

pub(crate) struct Inner {
    pub(crate) by_id: HashMap<u64, Arc<Cgroup>>,
    /// VFS inode number of a group directory -> group (equal to the id in local mode).
    pub(crate) by_ino: HashMap<u64, Weak<Cgroup>>,
    /// Local mode: thread-group id -> its group (absent: the root).
    members: HashMap<u32, Arc<Cgroup>>,
    /// Exposures with `inherit`, copied into groups created below their group.
    inherited: Vec<Arc<ExposureInner>>,
    /// Host mode: groups found gone while a directory lock may be held, finished later.
    pending: Vec<Arc<Cgroup>>,
    /// Every exposure made and not yet removed (for listings).
    exposures: Vec<Weak<ExposureInner>>,
    /// References whose drop (eviction) must wait until no VFS lock is held.
    deferred: Vec<InodeRef>,
}

/// The cgroup tree of one VFS.
pub struct CgroupTree {
    me: Weak<CgroupTree>,
    /// `layer_state` values by type.
    layers: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    mode: CgroupMode,
    vfs: Weak<Vfs>,
    root: Arc<Cgroup>,
    pub(crate) inner: Mutex<Inner>,
    on_remove: RwLock<Vec<RemoveCb>>,
    /// The mount (memory only, to build paths; the mount holds this tree through its fs).
    mnt: Mutex<Weak<Mount>>,
    /// Thread id -> thread-group id, so the per-request lookup does not read /proc twice.
    tgids: Mutex<HashMap<u32, u32>>,
    /// Thread groups seen with no member among their ancestors: they were born in the root
    /// group and stay there until moved (fork semantics), so later lookups skip /proc.
    born_in_root: Mutex<std::collections::HashSet<u32>>,
}

impl CgroupTree {
    pub(crate) fn new(vfs: &Arc<Vfs>, mode: CgroupMode) -> Result<Arc<CgroupTree>, Errno> {
        let (root_id, host) = match &mode {
            CgroupMode::Local => (0, None),
            CgroupMode::Host(p) => (host::host_id(p).ok_or(Errno::ENOENT)?, Some(p.clone())),
        };
        Ok(Arc::new_cyclic(|me: &Weak<CgroupTree>| {
            let root = Arc::new(Cgroup::new(me.clone(), root_id, None, "", host));
            let mut by_id = HashMap::new();
            if root_id != 0 {
                by_id.insert(root_id, root.clone());
            }
            CgroupTree {
                me: me.clone(),
                layers: Mutex::new(HashMap::new()),
                mode,
                vfs: Arc::downgrade(vfs),
                root,
                inner: Mutex::new(Inner {
                    by_id,
                    by_ino: HashMap::new(),
                    members: HashMap::new(),
                    inherited: Vec::new(),
                    exposures: Vec::new(),
                    deferred: Vec::new(),
                    pending: Vec::new(),
                }),
                on_remove: RwLock::new(Vec::new()),
                mnt: Mutex::new(Weak::new()),
                tgids: Mutex::new(HashMap::new()),
                born_in_root: Mutex::new(std::collections::HashSet::new()),
            }
        }))
    }

    /// Per-tree state of a client layer (cgroup storage's domain, ...), made by `init` on
    /// first use; one value per type.
    pub fn layer_state<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut l = lock(&self.layers);
        let v = l
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(init()) as Arc<dyn Any + Send + Sync>)
            .clone();
        drop(l);
        // The entry for TypeId::of::<T>() always holds a T.
        v.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("layer state type"))
    }

    pub fn mode(&self) -> &CgroupMode {
        &self.mode
    }
    pub(crate) fn is_host(&self) -> bool {
        matches!(self.mode, CgroupMode::Host(_))
    }
    pub fn root(&self) -> Arc<Cgroup> {
        self.root.clone()
    }
    /// "/sys/fs/cgroup".
    pub fn mount_path(&self) -> &'static str {
        crate::MOUNT_PATH
    }
    /// Groups known now, the root included (host mode: those found so far).
    pub fn group_count(&self) -> usize {
        lock(&self.inner).by_id.len()
    }
    pub fn by_id(&self, id: u64) -> Option<Arc<Cgroup>> {
        lock(&self.inner).by_id.get(&id).cloned()
    }
    /// The group whose directory has inode number `ino` (a VFS number).
    pub fn of_inode(&self, ino: u64) -> Option<Arc<Cgroup>> {
        lock(&self.inner)
            .by_ino
            .get(&ino)
            .and_then(Weak::upgrade)
            .filter(|g| !g.is_removed())
    }
    /// The group at `path` ("/" or "/a/b"), relative to the tree's root.
    pub fn by_path(&self, path: &str) -> Option<Arc<Cgroup>> {
        if self.is_host() {
            let g = self.host_group(path);
            return (g.path() == normalize(path)).then_some(g);
        }
        let mut g = self.root.clone();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let next = g.children().into_iter().find(|c| c.name == comp)?;
            g = next;
        }
        Some(g)
    }

    pub(crate) fn set_mount(&self, m: &Arc<Mount>) {
        *lock(&self.mnt) = Arc::downgrade(m);
    }

    fn tgid(&self, pid: u32) -> Option<u32> {
        if let Some(&t) = lock(&self.tgids).get(&pid) {
            return Some(t);
        }
        let t = host::tgid_of(pid)?;
        let mut m = lock(&self.tgids);
        if m.len() > 65536 {
            m.clear(); // pids get reused; a bounded cache forgets rather than lies for long
        }
        m.insert(pid, t);
        Some(t)
    }

    /// The group of task `pid` (a thread or process id): its own membership, else its
    /// thread group's; the root when none.
    pub fn group_of_pid(&self, pid: u32) -> Arc<Cgroup> {
        if self.is_host() {
            return match host::host_cgroup_path_of_pid(pid) {
                Some(p) => self.host_group(&p),
                None => self.root.clone(),
            };
        }
        {
            let inner = lock(&self.inner);
            if inner.members.is_empty() {
                return self.root.clone();
            }
            if let Some(g) = inner.members.get(&pid) {
                return g.clone();
            }
        }
        let Some(t) = self.tgid(pid) else {
            return self.root.clone();
        };
        if t != pid {
            if let Some(g) = lock(&self.inner).members.get(&t) {
                return g.clone();
            }
        }
        self.inherit_group(t)
    }

    /// A thread group that is not a member: as the kernel's fork puts a child in its
    /// parent's group, it belongs to the group of its nearest ancestor process that is a
    /// member (or the root). We see processes only when they make requests, so the group is
    /// decided at first sight rather than at fork, and recorded: moving the parent later
    /// does not move it (as in the kernel), it shows in its group's `cgroup.procs` and keeps
    /// the group busy until it exits.
    fn inherit_group(&self, tgid: u32) -> Arc<Cgroup> {
        if lock(&self.born_in_root).contains(&tgid) {
            return self.root.clone();
        }
        let mut p = tgid;
        let mut found = None;
        for _ in 0..64 {
            match host::ppid_of(p) {
                Some(pp) if pp > 1 => {
                    if let Some(g) = lock(&self.inner).members.get(&pp) {
                        found = Some(g.clone());
                        break;
                    }
                    p = pp;
                }
                _ => break,
            }
        }
        match found {
            Some(g) => {
                let mut inner = lock(&self.inner);
                // Raced with a move of this process, or the group went: what is recorded wins.
                if let Some(cur) = inner.members.get(&tgid) {
                    return cur.clone();
                }
                if g.is_removed() {
                    return self.root.clone();
                }
                inner.members.insert(tgid, g.clone());
                lock(&g.procs).push(tgid);
                g
            }
            None => {
                let mut born = lock(&self.born_in_root);
                if born.len() > 65536 {
                    born.clear(); // pids get reused: forget rather than lie for long
                }
                born.insert(tgid);
                self.root.clone()
            }
        }
    }

    /// The group of the caller of the request this thread serves (`task::caller()`), the
    /// root when none is recorded.
    pub fn current(&self) -> Arc<Cgroup> {
        match bpfvfs_vfs::task::caller() {
            Some(c) => self.group_of_pid(c.pid),
            None => self.root.clone(),
        }
    }

    /// Move process `pid` (0: the caller) into `group` (writing cgroup.procs). The whole
    /// thread group moves, as for cgroup.procs. ESRCH if no such task exists on the host,
    /// ENODEV if the group was removed, EROFS in host mode.
    pub fn move_pid(&self, group: &Arc<Cgroup>, pid: u32) -> Result<(), Errno> {
        if self.is_host() {
            return Err(Errno::EROFS);
        }
        let pid = if pid == 0 {
            bpfvfs_vfs::task::caller().map_or(std::process::id(), |c| c.pid)
        } else {
            pid
        };
        if !host::pid_exists(pid) {
            return Err(Errno::ESRCH);
        }
        let tgid = self.tgid(pid).ok_or(Errno::ESRCH)?;
        lock(&self.born_in_root).remove(&tgid);
        let mut inner = lock(&self.inner);
        if group.is_removed() {
            return Err(Errno::ENODEV);
        }
        let old = inner.members.insert(tgid, group.clone());
        if let Some(old) = old {
            if Arc::ptr_eq(&old, group) {
                return Ok(());
            }
            lock(&old.procs).retain(|&p| p != tgid);
        }
        lock(&group.procs).push(tgid);
        Ok(())
    }

    /// Forget members that no longer exist on the host (the kernel drops exited tasks).
    pub(crate) fn prune_locked(inner: &mut Inner, g: &Cgroup) {
        let mut procs = lock(&g.procs);
        procs.retain(|&p| {
            let alive = host::pid_exists(p);
            if !alive {
                inner.members.remove(&p);
            }
            alive
        });
    }

    /// Every group from `start` in `order` (the kernel cgroup iterator's orders).
    pub fn walk(&self, start: &Arc<Cgroup>, order: WalkOrder) -> Vec<Arc<Cgroup>> {
        if self.is_host()
            && matches!(
                order,
                WalkOrder::DescendantsPre | WalkOrder::DescendantsPost
            )
        {
            self.host_refresh_subtree(start);
        }
        let mut out = Vec::new();
        match order {
            WalkOrder::SelfOnly => out.push(start.clone()),
            WalkOrder::AncestorsUp => {
                let mut g = Some(start.clone());
                while let Some(c) = g {
                    g = c.parent();
                    out.push(c);
                }
            }
            WalkOrder::DescendantsPre => pre(start, &mut out),
            WalkOrder::DescendantsPost => post(start, &mut out),
        }
        out
    }

    /// Register a callback run once per removed group, after it left the tree.
    pub fn on_remove(&self, cb: RemoveCallback) {
        self.on_remove
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(cb);
    }

    /// Run the `on_remove` callbacks for `g` once. No lock of this crate is held.
    pub(crate) fn finish_removal(&self, g: &Arc<Cgroup>) {
        self.drain_deferred();
        if !g.is_removed() || g.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let cbs = self
            .on_remove
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for cb in cbs {
            cb(g);
        }
    }

    /// Take `g` out of the tree's indexes (the caller checked it may go).
    pub(crate) fn unlink_locked(&self, inner: &mut Inner, g: &Arc<Cgroup>) {
        g.removed.store(true, Ordering::Release);
        if let Some(p) = &g.parent {
            lock(&p.children).retain(|c| !Arc::ptr_eq(c, g));
        }
        if inner.by_id.get(&g.id()).is_some_and(|x| Arc::ptr_eq(x, g)) {
            inner.by_id.remove(&g.id());
        }
        for p in lock(&g.procs).drain(..) {
            inner.members.remove(&p);
        }
        inner
            .inherited
            .retain(|e| e.base.upgrade().is_some_and(|b| !b.is_removed()));
    }

    /// Local mkdir: a new group `name` under `parent`, its directory inode made by `inode`
    /// (the group's id is that inode's number).
    pub(crate) fn add_local(
        &self,
        parent: &Arc<Cgroup>,
        name: &str,
        inode: impl FnOnce(&Arc<Cgroup>) -> Arc<Inode>,
    ) -> Result<(Arc<Cgroup>, Arc<Inode>), Errno> {
        let mut inner = lock(&self.inner);
        if parent.is_removed() {
            return Err(Errno::ENOENT);
        }
        let g = Arc::new(Cgroup::new(
            self.me.clone(),
            0,
            Some(parent.clone()),
            name,
            None,
        ));
        let i = inode(&g);
        g.set_id(i.ino());
        lock(&parent.children).push(g.clone());
        inner.by_id.insert(i.ino(), g.clone());
        inner.by_ino.insert(i.ino(), Arc::downgrade(&g));
        Ok((g, i))
    }

    pub(crate) fn vfs(&self) -> Option<Arc<Vfs>> {
        self.vfs.upgrade()
    }

    pub(crate) fn record_ino(&self, ino: u64, g: &Arc<Cgroup>) {
        lock(&self.inner).by_ino.insert(ino, Arc::downgrade(g));
    }

    pub(crate) fn forget_ino(&self, ino: u64) {
        let mut inner = lock(&self.inner);
        if inner
            .by_ino
            .get(&ino)
            .is_some_and(|w| w.upgrade().is_none_or(|g| g.is_removed()))
        {
            inner.by_ino.remove(&ino);
        }
    }

    /// rmdir of local group `g`: EBUSY with child groups or live members; else it leaves
    /// the tree (callbacks later, from `finish_removal`).
    pub(crate) fn remove_local(&self, g: &Arc<Cgroup>) -> Result<(), Errno> {
        if g.parent.is_none() {
            return Err(Errno::EBUSY);
        }
        let mut inner = lock(&self.inner);
        if g.is_removed() {
            return Err(Errno::ENOENT);
        }
        if !lock(&g.children).is_empty() {
            return Err(Errno::EBUSY);
        }
        Self::prune_locked(&mut inner, g);
        if !lock(&g.procs).is_empty() {
            return Err(Errno::EBUSY);
        }
        self.unlink_locked(&mut inner, g);
        Ok(())
    }

    // ---- host mode ----

    /// The host child `name` of `parent`, created in the tree if new; a stale child (gone
    /// or replaced on the host) is unlinked and queued for `flush_pending`.
    pub(crate) fn host_child(&self, parent: &Arc<Cgroup>, name: &str) -> Option<Arc<Cgroup>> {
        let hp = parent.host.as_ref()?.join(name);
        let id = host::host_id(&hp);
        let mut inner = lock(&self.inner);
        let existing = lock(&parent.children)
            .iter()
            .find(|c| c.name == name)
            .cloned();
        if let Some(e) = existing {
            if Some(e.id()) == id {
                return Some(e);
            }
            self.host_unlink_subtree(&mut inner, &e);
        }
        let id = id?;
        if parent.is_removed() {
            return None;
        }
        let g = Arc::new(Cgroup::new(
            self.me.clone(),
            id,
            Some(parent.clone()),
            name,
            Some(hp),
        ));
        let mut ch = lock(&parent.children);
        let at = ch.partition_point(|c| c.id() < id);
        ch.insert(at, g.clone());
        drop(ch);
        inner.by_id.insert(id, g.clone());
        Some(g)
    }

    fn host_unlink_subtree(&self, inner: &mut Inner, g: &Arc<Cgroup>) {
        for c in g.children() {
            self.host_unlink_subtree(inner, &c);
        }
        self.unlink_locked(inner, g);
        inner.pending.push(g.clone());
    }

    /// The deepest known-or-found group along host path `path`.
    pub(crate) fn host_group(&self, path: &str) -> Arc<Cgroup> {
        let mut g = self.root.clone();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            match self.host_child(&g, comp) {
                Some(c) => g = c,
                None => break,
            }
        }
        g
    }

    /// Bring `g`'s children in line with the host (data only). Returns the current ones.
    pub(crate) fn host_sync_children(&self, g: &Arc<Cgroup>) -> Vec<Arc<Cgroup>> {
        let Some(hp) = g.host.clone() else {
            return Vec::new();
        };
        let on_host = host::host_children(&hp);
        for c in g.children() {
            if !on_host.iter().any(|(n, id)| *n == c.name && *id == c.id()) {
                let mut inner = lock(&self.inner);
                self.host_unlink_subtree(&mut inner, &c);
            }
        }
        for (name, _) in &on_host {
            self.host_child(g, name);
        }
        g.children()
    }

    fn host_refresh_subtree(&self, g: &Arc<Cgroup>) {
        for c in self.host_sync_children(g) {
            self.host_refresh_subtree(&c);
        }
    }

    /// Finish groups found gone on the host: callbacks, and their directories leave the
    /// VFS. Called only where no directory lock is held.
    pub(crate) fn flush_pending(&self) {
        let pending = std::mem::take(&mut lock(&self.inner).pending);
        let vfs = self.vfs.upgrade();
        for g in pending {
            if let (Some(vfs), Some(d)) = (&vfs, g.dir()) {
                if let Some(p) = d.parent() {
                    let _ = vfs.fs_remove_entry(&p, g.name.as_bytes(), Some(d.inode()));
                }
            }
            self.finish_removal(&g);
        }
    }

    /// The group's directory as a location, looked up from the mount root (host mode: this
    /// creates the VFS nodes on the way). Only where no directory lock is held.
    pub(crate) fn dir_path(&self, g: &Arc<Cgroup>) -> Result<PathRef, Errno> {
        let vfs = self.vfs.upgrade().ok_or(Errno::ENODEV)?;
        let m = lock(&self.mnt).upgrade().ok_or(Errno::ENODEV)?;
        let mut at = PathRef {
            mnt: m.clone(),
            dentry: m.root().clone(),
        };
        let chain = g.ancestor_chain();
        for c in chain.iter().skip(1) {
            at = vfs.lookup_at(&Cred::root(), &at, c.name.as_bytes())?;
        }
        if g.is_removed() {
            return Err(Errno::ENOENT);
        }
        g.set_dir(at.dentry.arc());
        Ok(at)
    }

    /// The group's directory dentry, finding it through the mount in host mode.
    fn dir_of(&self, g: &Arc<Cgroup>) -> Result<Arc<Dentry>, Errno> {
        if g.is_removed() {
            return Err(Errno::ENOENT);
        }
        if let Some(d) = g.dir() {
            return Ok(d);
        }
        if self.is_host() {
            return Ok(self.dir_path(g)?.dentry.arc().clone());
        }
        Err(Errno::ENOENT)
    }

    // ---- exposures ----

    /// The exposed files present in `group`'s directory now.
    pub fn exposures_in(&self, group: &Arc<Cgroup>) -> Vec<ExposedEntry> {
        let Some(dir) = group.dir() else {
            return Vec::new();
        };
        let all: Vec<Arc<ExposureInner>> = lock(&self.inner)
            .exposures
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut out = Vec::new();
        for e in all {
            if e.removed.load(Ordering::Acquire) {
                continue;
            }
            let here = lock(&e.copies).iter().any(|(d, i)| {
                d.upgrade().is_some_and(|d| Arc::ptr_eq(&d, &dir))
                    && i.upgrade().is_some_and(|i| i.nlink() > 0)
            });
            if here {
                let base = e.base.upgrade();
                out.push(ExposedEntry {
                    file: e.name.clone(),
                    inherit: e.inherit,
                    inherited_copy: base.as_ref().is_some_and(|b| !Arc::ptr_eq(b, group)),
                    base,
                    meta: lock(&e.meta).clone(),
                });
            }
        }
        out
    }

    /// Create the read-only file `name` (mode 0444, owned by root, size 0, read with direct
    /// I/O) in `group`'s directory; opening it runs `show.show(group)` once. With
    /// `inherit`, the file also appears in every descendant, existing and future (local
    /// mode; in host mode, in the descendants that exist now). EEXIST if the name is taken
    /// in `group`; a taken name in a descendant just skips that copy.
    pub fn expose(
        self: &Arc<Self>,
        group: &Arc<Cgroup>,
        name: &[u8],
        show: Arc<dyn SeqShow>,
        inherit: bool,
    ) -> Result<Exposure, Errno> {
        if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
            return Err(Errno::EINVAL);
        }
        let e = Arc::new(ExposureInner {
            name: name.to_vec(),
            show,
            base: Arc::downgrade(group),
            tree: Arc::downgrade(self),
            removed: AtomicBool::new(false),
            copies: Mutex::new(Vec::new()),
            meta: Mutex::new(None),
            inherit,
        });
        self.drain_deferred();
        self.add_copy(&e, group, false)?;
        {
            let mut inner = lock(&self.inner);
            inner.exposures.retain(|w| w.strong_count() > 0);
            inner.exposures.push(Arc::downgrade(&e));
        }
        if inherit {
            lock(&self.inner).inherited.push(e.clone());
            // Registered first: a group created from now on copies it in `populate_dir`;
            // one whose directory is not there yet is skipped here and done there.
            for d in self.walk(group, WalkOrder::DescendantsPre).iter().skip(1) {
                if d.dir().is_some() || self.is_host() {
                    let _ = self.add_copy(&e, d, false);
                }
            }
        }
        Ok(Exposure(e))
    }

    /// Add `e`'s file to `g`'s directory. `locked`: a VFS directory lock is held (populate),
    /// so nothing may be evicted here.
    fn add_copy(&self, e: &Arc<ExposureInner>, g: &Arc<Cgroup>, locked: bool) -> Result<(), Errno> {
        let vfs = self.vfs.upgrade().ok_or(Errno::ENODEV)?;
        let dir = self.dir_of(g)?;
        let sb = dir.inode().sb().clone();
        let attrs = NewInode {
            mode: S_IFREG | 0o444,
            uid: 0,
            gid: 0,
            rdev: 0,
        };
        let inode = sb.alloc_inode(
            &attrs,
            None,
            Box::new(Node::Exposed(fs::ExposedFile {
                group: Arc::downgrade(g),
                show: e.show.clone(),
            })),
        );
        let d = vfs.fs_add_entry(&dir, &e.name, &inode)?;
        drop(d);
        let mut copies = lock(&e.copies);
        // Copies whose directory is gone (group removed) are forgotten, so an inherited
        // exposure over churning groups does not grow without bound.
        copies.retain(|(d, _)| d.strong_count() > 0);
        copies.push((Arc::downgrade(&dir), Arc::downgrade(&inode)));
        if e.removed.load(Ordering::Acquire) {
            // remove() ran meanwhile and may have missed this copy: take it back out.
            copies.pop();
            drop(copies);
            // Under a directory lock the file's eviction must wait: a reference kept here
            // is dropped at the next unlocked call into the tree (`drain_deferred`).
            let hold = locked.then(|| InodeRef::new(inode.clone()));
            let _ = vfs.fs_remove_entry(&dir, &e.name, Some(&inode));
            if let Some(h) = hold {
                lock(&self.inner).deferred.push(h);
            }
        }
        Ok(())
    }

    /// populate_dir of a new local group: remember its directory, add the control files
    /// and the inherited exposures. Runs with the parent directory locked.
    pub(crate) fn populate_group(&self, vfs: &Vfs, g: &Arc<Cgroup>, dir: &Arc<Dentry>) {
        g.set_dir(dir);
        fs::add_control_files(vfs, g, dir);
        self.apply_inherited(g, true);
    }

    /// Drop the inode references `add_copy` kept under a directory lock (may evict: only
    /// where no VFS lock is held).
    pub(crate) fn drain_deferred(&self) {
        let held = std::mem::take(&mut lock(&self.inner).deferred);
        drop(held);
    }

    /// Copy into `g` the inherited exposures of its ancestors (a copy already there, or a
    /// name taken, is skipped).
    pub(crate) fn apply_inherited(&self, g: &Arc<Cgroup>, locked: bool) {
        let inherited: Vec<Arc<ExposureInner>> = lock(&self.inner)
            .inherited
            .iter()
            .filter(|e| {
                !e.removed.load(Ordering::Acquire)
                    && e.base.upgrade().is_some_and(|b| g.is_descendant_of(&b))
            })
            .cloned()
            .collect();
        for e in inherited {
            let _ = self.add_copy(&e, g, locked);
        }
    }
}

/// Still in the tree: referenced and hashed (a superblock root is never hashed).
fn live_dentry(d: &Dentry) -> bool {
    !d.is_dead() && (d.is_hashed() || d.parent().is_none())
}

fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

impl Cgroup {
    /// Root first, self last.
    fn ancestor_chain(self: &Arc<Self>) -> Vec<Arc<Cgroup>> {
        let mut v = vec![self.clone()];
        let mut p = self.parent.clone();
        while let Some(g) = p {
            p = g.parent.clone();
            v.push(g);
        }
        v.reverse();
        v
    }
}

impl Drop for CgroupTree {
    /// The tree goes (its VFS is gone): every group still in it is removed, deepest first,
    /// and the `on_remove` callbacks run for each, so per-group state hanging off groups
    /// (local storage) is released while the layers that own it still exist.
    fn drop(&mut self) {
        let mut all = Vec::new();
        post(&self.root, &mut all);
        for g in all {
            g.removed.store(true, Ordering::Release);
            self.finish_removal(&g);
            lock(&g.children).clear();
        }
    }
}

fn pre(g: &Arc<Cgroup>, out: &mut Vec<Arc<Cgroup>>) {
    out.push(g.clone());
    for c in g.children() {
        pre(&c, out);
    }
}

fn post(g: &Arc<Cgroup>, out: &mut Vec<Arc<Cgroup>>) {
    for c in g.children() {
        post(&c, out);
    }
    out.push(g.clone());
}

pub(crate) struct ExposureInner {
    name: Vec<u8>,
    show: Arc<dyn SeqShow>,
    base: Weak<Cgroup>,
    tree: Weak<CgroupTree>,
    removed: AtomicBool,
    /// Every copy made: the directory (memory only) and the file's inode.
    /// Memory-only references: the tree holds inherited exposures, and a strong inode
    /// reference here would keep the superblock (and through it this tree) alive.
    copies: Mutex<Vec<(Weak<Dentry>, Weak<Inode>)>>,
    meta: Mutex<Option<ExposureMeta>>,
    inherit: bool,
}

/// What an exposure stands for, for listings such as `cgroup tree` (set by the layer that
/// made it: a view program attached through a link, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposureMeta {
    /// The program's id (bpftool's ID column).
    pub id: u32,
    /// bpftool's AttachType column ("view").
    pub attach_type: String,
    /// The program's name.
    pub name: String,
}

/// One exposed file as seen from a group (`CgroupTree::exposures_in`).
#[derive(Clone, Debug)]
pub struct ExposedEntry {
    /// The file's name in the group's directory.
    pub file: Vec<u8>,
    /// Made with `inherit`.
    pub inherit: bool,
    /// This copy is inherited from an ancestor (not the group it was exposed in).
    pub inherited_copy: bool,
    /// The group it was exposed in.
    pub base: Option<Arc<Cgroup>>,
    pub meta: Option<ExposureMeta>,
}

/// A handle on an exposed file and its inherited copies. Dropping it leaves the files;
/// `remove` takes them all out.
pub struct Exposure(Arc<ExposureInner>);

impl Exposure {
    /// Remove the file and every inherited copy (idempotent). Copies already gone with
    /// their group are skipped.
    pub fn remove(&self) {
        let e = &self.0;
        if e.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        let tree = e.tree.upgrade();
        if let Some(t) = &tree {
            lock(&t.inner).inherited.retain(|x| !Arc::ptr_eq(x, e));
        }
        let copies = std::mem::take(&mut *lock(&e.copies));
        if let Some(t) = &tree {
            t.drain_deferred();
        }
        let Some(vfs) = tree.and_then(|t| t.vfs.upgrade()) else {
            return;
        };
        for (dir, inode) in copies {
            // A copy whose inode memory is gone was removed with its group long ago.
            if let (Some(d), Some(i)) = (dir.upgrade(), inode.upgrade()) {
                let _ = vfs.fs_remove_entry(&d, &e.name, Some(&i));
            }
        }
    }
    /// The file's name.
    pub fn name(&self) -> &[u8] {
        &self.0.name
    }
    /// The group it was exposed in.
    pub fn group(&self) -> Option<Arc<Cgroup>> {
        self.0.base.upgrade()
    }
    pub fn is_removed(&self) -> bool {
        self.0.removed.load(Ordering::Acquire)
    }
    /// Say what this exposure stands for (shown by listings).
    pub fn set_meta(&self, meta: ExposureMeta) {
        *lock(&self.0.meta) = Some(meta);
    }
    /// How many copies exist now (the file itself and its inherited copies still in the
    /// tree).
    pub fn copies(&self) -> usize {
        lock(&self.0.copies)
            .iter()
            .filter(|(d, i)| {
                d.upgrade().is_some_and(|d| live_dentry(&d))
                    && i.upgrade().is_some_and(|i| i.nlink() > 0)
            })
            .count()
    }
}
