//! Path resolution: a lockless fast path over the dentry hash, falling back to a locked walk.
//!
//! Both modes run the same algorithm ([`Vfs::walk`]); they differ in how a child is looked up
//! and in what makes the result trustworthy:
//! - lockless ("rcu-walk"): under one epoch guard, no locks and no reference counts touched
//!   until the end; the result is valid only if the global rename sequence did not move during
//!   the walk (Linux's rename_lock seqlock). A miss, a `..` through a renamed directory, a
//!   dentry that died meanwhile, or a changed sequence all give up and retry locked.
//! - locked ("ref-walk"): each lookup holds the directory's lock (the authority for its
//!   entries), and filesystems that do not keep every entry in the dcache are asked
//!   (`FileSystem::lookup`).
//!
//! Borrowed references: every `&'g Dentry` / `&'g Arc<Mount>` the walk holds was reached
//! under `guard` from a structure whose contents are freed only after a grace period (dentry
//! hash nodes, mount table snapshots, `Links::parent` whose old value rename defers), or from a
//! counted reference the caller holds (the start and the root), so it stays valid until the
//! walk takes counted references on the result.

use crate::dentry::{Dentry, DentryRef};
use crate::errno::{Errno, Result};
use crate::mount::{Mount, MountTable, PathBorrow, PathRef};
use crate::types::*;
use crate::Vfs;
use crossbeam_epoch::Guard;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Follow a symlink in the last component.
pub const LOOKUP_FOLLOW: u32 = 1;
/// The result must be a directory.
pub const LOOKUP_DIRECTORY: u32 = 2;

#[derive(Clone, Copy)]
struct Cursor<'g> {
    mnt: &'g Arc<Mount>,
    dentry: &'g Dentry,
}

enum Want {
    /// Resolve everything.
    Full { flags: u32 },
    /// Stop before the last component and return it (for create, unlink, rename...).
    Parent,
}

enum WalkEnd<'g> {
    Full(Cursor<'g>),
    Parent {
        dir: Cursor<'g>,
        last: &'g [u8],
        trailing_slash: bool,
    },
}

enum Fail {
    Err(Errno),
    /// Lockless mode cannot decide: retry locked.
    Retry,
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Fail {
        Fail::Err(e)
    }
}

/// Reach a dentry through an `Arc` whose release is grace-period deferred.
#[inline]
fn rcu_ref<'g>(d: &Arc<Dentry>, _guard: &'g Guard) -> &'g Dentry {
    // SAFETY: callers pass an Arc read under `_guard` from a place whose Arcs are dropped only
    // through epoch deferral (dentry hash nodes; `Links::parent`, which rename replaces with
    // `defer`), so the pointee outlives the guard; see the module comment.
    unsafe { &*Arc::as_ptr(d) }
}

fn mount_table<'g>(vfs: &Vfs, guard: &'g Guard) -> &'g MountTable {
    let t = vfs.mounts.load(Ordering::Acquire, guard);
    // SAFETY: the table pointer is never null (set in Vfs::new, replaced by swap) and old
    // snapshots are freed with defer_destroy, so it is valid while `guard` is pinned.
    unsafe { t.deref() }
}

impl Vfs {
    /// Resolve `path` (absolute, or relative to `base`, default the root) to a location.
    pub fn resolve(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        flags: u32,
    ) -> Result<PathRef> {
        self.resolve_inner(cred, base, path, Want::Full { flags })
            .map(|(p, _, _)| p)
    }

    /// Resolve `path` and call `f` once with the location: borrowed under the epoch guard,
    /// without taking any reference, when the lockless walk succeeds and no rename ran
    /// during it (checked before `f` runs, so `f` may act: run hooks); otherwise from a
    /// counted walk. `stat` with hooks on uses this.
    pub fn with_resolved_path<T>(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        flags: u32,
        f: impl FnOnce(PathBorrow<'_>) -> Result<T>,
    ) -> Result<T> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let start_ref = base.unwrap_or(&self.root);
        {
            let guard = crossbeam_epoch::pin();
            let seq = self.rename_seq.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let start = Cursor {
                    mnt: &start_ref.mnt,
                    dentry: &start_ref.dentry,
                };
                match self.walk(&guard, cred, start, path, &Want::Full { flags }, false) {
                    Ok(WalkEnd::Full(c))
                        if !c.dentry.is_dead()
                            && self.rename_seq.load(Ordering::Acquire) == seq =>
                    {
                        self.counters.walks_lockless.inc();
                        // The guard stays pinned while `f` runs: the dentry and inode it
                        // borrows are freed only after a grace period.
                        return f(PathBorrow {
                            mnt: c.mnt,
                            dentry: c.dentry,
                        });
                    }
                    Err(Fail::Err(e)) if self.rename_seq.load(Ordering::Acquire) == seq => {
                        return Err(e)
                    }
                    _ => {}
                }
            }
        }
        let at = self.resolve(cred, base, path, flags)?;
        f(at.as_borrowed())
    }

    /// Resolve `path` and hand the inode to `f` without taking any reference when the
    /// lockless walk succeeds: the inode is borrowed under the epoch guard, so concurrent
    /// walkers of the same path share no written cache line. Otherwise falls back to a
    /// counted walk. `access` and `stat` without hooks use this.
    pub fn with_resolved<T>(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        flags: u32,
        f: impl FnOnce(&crate::inode::Inode) -> T,
    ) -> Result<T> {
        self.with_resolved_path(cred, base, path, flags, |at| Ok(f(at.inode())))
    }

    /// Resolve all but the last component; returns the parent directory, the last name
    /// (may be "." or ".."), and whether a slash followed it.
    pub fn resolve_parent(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
    ) -> Result<(PathRef, Vec<u8>, bool)> {
        self.resolve_inner(cred, base, path, Want::Parent)
            .map(|(p, last, t)| (p, last.unwrap_or_default(), t))
    }

    fn resolve_inner(
        &self,
        cred: &Cred,
        base: Option<&PathRef>,
        path: &[u8],
        want: Want,
    ) -> Result<(PathRef, Option<Vec<u8>>, bool)> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let base = base.unwrap_or(&self.root);
        for locked in [false, true] {
            let guard = crossbeam_epoch::pin();
            let seq = self.rename_seq.load(Ordering::Acquire);
            if !locked && seq & 1 == 1 {
                continue;
            }
            let start = Cursor {
                mnt: &base.mnt,
                dentry: &base.dentry,
            };
            match self.walk(&guard, cred, start, path, &want, locked) {
                Err(Fail::Retry) => continue,
                Err(Fail::Err(e)) => {
                    // A lockless failure might come from a concurrent rename: only trust it
                    // if the sequence did not move.
                    if !locked && self.rename_seq.load(Ordering::Acquire) != seq {
                        continue;
                    }
                    return Err(e);
                }
                Ok(end) => {
                    let (cur, last, trailing) = match end {
                        WalkEnd::Full(c) => (c, None, false),
                        WalkEnd::Parent {
                            dir,
                            last,
                            trailing_slash,
                        } => (dir, Some(last.to_vec()), trailing_slash),
                    };
                    let Some(dentry) = cur.dentry.try_get_rcu() else {
                        if locked {
                            return Err(Errno::ENOENT);
                        }
                        continue;
                    };
                    if !locked && self.rename_seq.load(Ordering::Acquire) != seq {
                        continue;
                    }
                    let counter = if locked {
                        &self.counters.walks_locked
                    } else {
                        &self.counters.walks_lockless
                    };
                    counter.inc();
                    return Ok((
                        PathRef {
                            mnt: cur.mnt.clone(),
                            dentry,
                        },
                        last,
                        trailing,
                    ));
                }
            }
        }
        Err(Errno::EAGAIN)
    }

    /// The walk itself (see module docs). `locked` selects the lookup mode.
    fn walk<'g>(
        &'g self,
        guard: &'g Guard,
        cred: &Cred,
        start: Cursor<'g>,
        path: &'g [u8],
        want: &Want,
        locked: bool,
    ) -> std::result::Result<WalkEnd<'g>, Fail> {
        let root = Cursor {
            mnt: &self.root.mnt,
            dentry: &self.root.dentry,
        };
        // `rest` is the string being consumed; `outer` holds the remainders of the strings
        // a symlink interrupted (allocated only when a symlink is followed).
        let mut rest: &'g [u8] = path;
        let mut outer: Vec<&'g [u8]> = Vec::new();
        let mut links_followed = 0u32;
        // Whether the last component processed was followed by a slash, in the path or in the
        // body of the symlink it came from ("l -> f/"): the result must then be a directory.
        let mut last_had_slash = false;
        let mut cur = if path[0] == b'/' { root } else { start };

        loop {
            let trimmed = trim_slashes(rest);
            if trimmed.is_empty() {
                if let Some(o) = outer.pop() {
                    rest = o;
                    continue;
                }
                return match want {
                    Want::Full { flags } => {
                        let had_slash = path[path.len() - 1] == b'/';
                        if (flags & LOOKUP_DIRECTORY != 0 || had_slash || last_had_slash)
                            && !cur.dentry.inode().is_dir()
                        {
                            return Err(Fail::Err(Errno::ENOTDIR));
                        }
                        Ok(WalkEnd::Full(cur))
                    }
                    // Path was only slashes: "/" has no last component.
                    Want::Parent => Ok(WalkEnd::Parent {
                        dir: cur,
                        last: b".",
                        trailing_slash: true,
                    }),
                };
            }
            let end = trimmed
                .iter()
                .position(|&b| b == b'/')
                .unwrap_or(trimmed.len());
            let comp = &trimmed[..end];
            rest = &trimmed[end..];
            let only_slashes = |s: &[u8]| s.iter().all(|&b| b == b'/');
            let is_last = only_slashes(rest) && outer.iter().all(|s| only_slashes(s));
            let trailing_slash =
                is_last && (!rest.is_empty() || outer.iter().any(|s| !s.is_empty()));
            // A slash right after this component (also inside a symlink body).
            last_had_slash = !rest.is_empty();

            // Linux's order (link_path_walk): the current directory must be one (ENOTDIR),
            // searchable (may_lookup, EACCES, also for the last component's parent), and only
            // then is the name itself looked at (ENAMETOOLONG from ->lookup). So "file/<long>"
            // is ENOTDIR and "noexec/." is EACCES.
            let dir_inode = cur.dentry.inode();
            if !dir_inode.is_dir() {
                return Err(Fail::Err(Errno::ENOTDIR));
            }
            // DAC only: the `inode_permission` hook is not called per component (the
            // lockless walk holds no reference a hook could be handed, and must not block);
            // operations call it on the objects they act on (`Vfs::inode_permission`).
            dir_inode.permission(cred, may::EXEC)?;
            if comp.len() > NAME_MAX {
                return Err(Fail::Err(Errno::ENAMETOOLONG));
            }
            if let (true, Want::Parent) = (is_last, want) {
                return Ok(WalkEnd::Parent {
                    dir: cur,
                    last: comp,
                    trailing_slash,
                });
            }

            if comp == b"." {
                continue;
            }
            if comp == b".." {
                cur = self.step_up(guard, cur, root, locked)?;
                continue;
            }

            let child = self.lookup_child(guard, cur, comp, locked)?;
            let mut next = Cursor {
                mnt: cur.mnt,
                dentry: child,
            };
            next = self.cross_mounts(guard, next);

            let inode = next.dentry.inode();
            let follow = match want {
                Want::Full { flags } => flags & LOOKUP_FOLLOW != 0,
                Want::Parent => true,
            };
            if inode.is_symlink() && (!is_last || follow || trailing_slash) {
                links_followed += 1;
                if links_followed > MAXSYMLINKS {
                    return Err(Fail::Err(Errno::ELOOP));
                }
                let body = inode.link_body().map(|b| b.as_bytes()).unwrap_or(&[]);
                if body.is_empty() {
                    return Err(Fail::Err(Errno::ENOENT));
                }
                outer.push(rest);
                rest = body;
                if body[0] == b'/' {
                    cur = root;
                }
                continue;
            }
            cur = next;
        }
    }

    /// `..`: the parent, crossing mount roots upwards; never above the tree's root.
    fn step_up<'g>(
        &'g self,
        guard: &'g Guard,
        mut cur: Cursor<'g>,
        root: Cursor<'g>,
        locked: bool,
    ) -> std::result::Result<Cursor<'g>, Fail> {
        loop {
            if std::ptr::eq(cur.dentry, root.dentry) && Arc::ptr_eq(cur.mnt, root.mnt) {
                return Ok(cur);
            }
            if std::ptr::eq(cur.dentry, &**cur.mnt.root()) {
                match &cur.mnt.parent_mount() {
                    Some(pm) => {
                        let mp = cur
                            .mnt
                            .mountpoint()
                            .expect("a mount with a parent has a mountpoint");
                        cur = Cursor {
                            mnt: pm,
                            dentry: mp,
                        };
                        continue;
                    }
                    None => return Ok(cur),
                }
            }
            break;
        }
        let links = cur.dentry.links.read().unwrap_or_else(|e| e.into_inner());
        if !locked && !cur.dentry.is_hashed() {
            return Err(Fail::Retry);
        }
        let parent = match &links.parent {
            Some(p) => rcu_ref(p, guard),
            None => cur.dentry,
        };
        Ok(Cursor {
            mnt: cur.mnt,
            dentry: parent,
        })
    }

    fn lookup_child<'g>(
        &'g self,
        guard: &'g Guard,
        cur: Cursor<'g>,
        name: &[u8],
        locked: bool,
    ) -> std::result::Result<&'g Dentry, Fail> {
        if !locked {
            return match self.dcache.lookup(cur.dentry.id(), name, guard) {
                Some(d) => Ok(rcu_ref(d, guard)),
                None => Err(Fail::Retry),
            };
        }
        let children = cur.dentry.lock_children()?;
        if let Some(d) = self.dcache.lookup(cur.dentry.id(), name, guard) {
            return Ok(rcu_ref(d, guard));
        }
        // Not in the dcache: ask the filesystem (those that keep entries elsewhere).
        let dir = cur.dentry.inode();
        if cur.dentry.is_dead() || dir.nlink() == 0 {
            return Err(Fail::Err(Errno::ENOENT));
        }
        let sb = dir.sb().clone();
        match sb.fs().lookup(&sb, dir, name)? {
            None => Err(Fail::Err(Errno::ENOENT)),
            Some(inode) => {
                let parent = cur.dentry.try_get_rcu().ok_or(Fail::Err(Errno::ENOENT))?;
                let d = self.d_add(children, &parent, name, &inode);
                Ok(rcu_ref(d.arc(), guard))
            }
        }
    }

    fn cross_mounts<'g>(&'g self, guard: &'g Guard, mut c: Cursor<'g>) -> Cursor<'g> {
        while c.dentry.is_mountpoint() {
            match mount_table(self, guard)
                .by_point
                .get(&(c.mnt.id(), c.dentry.id()))
            {
                Some(m) => {
                    c = Cursor {
                        mnt: m,
                        dentry: m.root(),
                    }
                }
                None => break,
            }
        }
        c
    }

    /// Bind a new dentry for `inode` as `name` in the locked directory `parent`, publishing it
    /// in the index and the hash. Returns a new reference (the index holds its own).
    pub(crate) fn d_add(
        &self,
        mut children: std::sync::MutexGuard<'_, crate::dentry::Children>,
        parent: &DentryRef,
        name: &[u8],
        inode: &Arc<crate::inode::Inode>,
    ) -> DentryRef {
        self.d_add_locked(&mut children, parent, name, inode)
    }

    /// d_add with the directory lock kept by the caller (who may still report the new entry
    /// under it).
    pub(crate) fn d_add_locked(
        &self,
        children: &mut crate::dentry::Children,
        parent: &DentryRef,
        name: &[u8],
        inode: &Arc<crate::inode::Inode>,
    ) -> DentryRef {
        let d = Dentry::alloc(inode, Some(parent.arc().clone()), name);
        d.set_flag(crate::dentry::D_HASHED);
        self.dcache.insert(parent.id(), name, d.arc().clone());
        self.counters
            .dentries_hashed
            .fetch_add(1, Ordering::Relaxed);
        children.insert(name, d.clone());
        d
    }
}

fn trim_slashes(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b'/').count();
    &s[n..]
}
