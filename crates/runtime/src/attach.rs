//! Attaching LSM and tracing programs to the VFS hooks, and running them there.
//!
//! Each attach point (an LSM hook, or the entry or exit of a traced function) has a list of
//! attached programs, run in attach order. The lists are copy-on-write behind a
//! crossbeam-epoch pointer: a hook reads its list with no lock and no reference count (under
//! the guard its program runs pin anyway); attach and detach build a new list and retire the
//! old one after the grace period.
//!
//! Attaching makes a link ([`bpfvfs_bpf::Link`]): the link holds the program, and the list
//! entry is removed when the link is detached or freed (its last handle or pin gone), so a
//! pinned link keeps its program attached after the loader exits, as in Linux.
//!
//! The VFS calls [`BpfHooks`] (our [`VfsHooks`]) only while at least one program is
//! attached anywhere: otherwise each hook site costs the VFS one predictable branch.
//!
//! Lock order: the VFS may call a hook with a directory lock held; dispatch takes no lock at
//! all (epoch-protected list, program runs); attach/detach take `Attachments::write` only,
//! never while a VFS lock is held.

use crate::error::RuntimeError;
use crate::hook_run::{Dispatch, HookArg, RunPlan, MAX_ARGS};
use crate::hooks::{self, id, HookKind, HOOKS};
use crate::kobj::{attr, Iattr};
use crate::Runtime;
use bpfvfs_bpf::{Handle, Prog};
use bpfvfs_ebpf_obj::ProgramKind;
use bpfvfs_vfs::{Dentry, Errno, File, Inode, PathBorrow, SetAttr, TracePoint, VfsHooks};
use crossbeam_epoch::{Atomic, Guard, Owned};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where a program runs: a row of [`hooks::HOOKS`], and for functions entry or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    Lsm(usize),
    Entry(usize),
    Exit(usize),
}

impl Point {
    /// libbpf's attach type name (what `link show` prints).
    pub fn attach_type(self) -> &'static str {
        match self {
            Point::Lsm(_) => "lsm",
            Point::Entry(_) => "fentry",
            Point::Exit(_) => "fexit",
        }
    }
    pub fn target(self) -> &'static str {
        HOOKS[self.row()].name
    }
    fn row(self) -> usize {
        match self {
            Point::Lsm(i) | Point::Entry(i) | Point::Exit(i) => i,
        }
    }
    /// Slot number: two per row (entry or LSM, exit).
    fn slot(self) -> usize {
        self.row() * 2 + matches!(self, Point::Exit(_)) as usize
    }
}

#[derive(Clone)]
struct Entry {
    token: u64,
    prog: Arc<Prog>,
}

/// The programs at one attach point, in attach order, with what running them needs
/// (computed when the list is made, not per dispatch).
struct List {
    entries: Vec<Entry>,
    plan: RunPlan,
}

/// Every attach point's program list: one slot per (hook, entry/exit) of the hook table,
/// found by index, so a dispatch takes no lock.
pub struct Attachments {
    slots: Box<[Atomic<List>]>,
    /// Bit `slot` set while that slot has programs: the dispatch's first (and, with nothing
    /// attached there, only) test.
    mask: std::sync::atomic::AtomicU64,
    /// Serializes writers (attach, detach).
    write: Mutex<()>,
    next_token: AtomicU64,
    attached: AtomicUsize,
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            slots: (0..HOOKS.len() * 2).map(|_| Atomic::null()).collect(),
            mask: std::sync::atomic::AtomicU64::new(0),
            write: Mutex::new(()),
            next_token: AtomicU64::new(1),
            attached: AtomicUsize::new(0),
        }
    }
}

impl Drop for Attachments {
    fn drop(&mut self) {
        let guard = crossbeam_epoch::pin();
        for s in self.slots.iter() {
            let p = s.swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, &guard);
            if !p.is_null() {
                // SAFETY: unreachable now; readers that loaded it hold guards.
                unsafe { guard.defer_destroy(p) };
            }
        }
    }
}

impl Attachments {
    fn slot(&self, p: Point) -> &Atomic<List> {
        &self.slots[p.slot()]
    }

    /// Anything attached at `p`? One relaxed load.
    #[inline]
    fn has(&self, p: Point) -> bool {
        self.mask.load(Ordering::Relaxed) & (1 << p.slot()) != 0
    }

    fn modify(&self, p: Point, f: impl FnOnce(&[Entry]) -> Vec<Entry>) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let l = self.slot(p);
        let guard = crossbeam_epoch::pin();
        let cur = l.load(Ordering::Acquire, &guard);
        // SAFETY: `cur` is null or a list published by a writer, valid under `guard`.
        let old: &[Entry] = unsafe { cur.as_ref() }.map_or(&[], |l| &l.entries);
        let entries = f(old);
        let new = List {
            plan: RunPlan::of(entries.iter().map(|e| &*e.prog)),
            entries,
        };
        let bit = 1u64 << p.slot();
        if new.entries.is_empty() {
            self.mask.fetch_and(!bit, Ordering::Relaxed);
        } else {
            self.mask.fetch_or(bit, Ordering::Relaxed);
        }
        let prev = l.swap(Owned::new(new), Ordering::AcqRel, &guard);
        if !prev.is_null() {
            // SAFETY: unreachable once swapped out; readers that loaded it hold guards.
            unsafe { guard.defer_destroy(prev) };
        }
        // Hand the old list (and the program references it holds) to the collector now, so
        // a detached program is freed one grace period later, not whenever this thread's
        // local garbage bag happens to fill.
        guard.flush();
        drop(guard);
        // Garbage is freed two epoch advances after it was retired, and the epoch advances
        // only when threads pin and collect: an idle daemon would keep a detached program
        // forever. A few pin/flush rounds move it along when no reader is still pinned
        // (attach and detach are rare; a reader in a program run holds it back, as it must).
        for _ in 0..4 {
            crossbeam_epoch::pin().flush();
        }
    }

    /// Programs attached at `p`, for one dispatch.
    fn programs<'g>(&'g self, p: Point, guard: &'g Guard) -> Option<&'g List> {
        let cur = self.slot(p).load(Ordering::Acquire, guard);
        // SAFETY: published lists are freed only after every guard that saw them.
        let list: &'g List = unsafe { cur.as_ref() }?;
        (!list.entries.is_empty()).then_some(list)
    }

    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::Relaxed)
    }

    /// The runtime is gone: no hook dispatches from now on.
    pub(crate) fn close(&self) {
        self.mask.store(0, Ordering::Relaxed);
    }
}

/// The VFS hooks of a runtime.
///
/// Holds what a dispatch needs (the attachment lists, the trace log) and only a weak
/// reference to the runtime, upgraded just for programs that read the current task or
/// cgroup: a hook invocation takes no reference count. When the runtime is dropped its
/// attachments are closed (`Attachments::close`), and the hooks run nothing from then on.
pub struct BpfHooks {
    rt: Weak<Runtime>,
    attachments: Arc<Attachments>,
    trace: Arc<crate::trace::TraceLog>,
}

impl BpfHooks {
    pub(crate) fn new(
        rt: Weak<Runtime>,
        attachments: Arc<Attachments>,
        trace: Arc<crate::trace::TraceLog>,
    ) -> BpfHooks {
        BpfHooks {
            rt,
            attachments,
            trace,
        }
    }

    fn dispatch(&self) -> Dispatch<'_> {
        Dispatch {
            trace: &self.trace,
            rt: &self.rt,
        }
    }

    /// Run every program at an LSM point; the first non-zero return denies with it.
    #[inline]
    fn lsm(&self, row: usize, args: &[HookArg<'_>]) -> bpfvfs_vfs::Result<()> {
        if !self.attachments.has(Point::Lsm(row)) {
            return Ok(());
        }
        self.lsm_run(row, args)
    }

    #[inline(never)]
    fn lsm_run(&self, row: usize, args: &[HookArg<'_>]) -> bpfvfs_vfs::Result<()> {
        let guard = crossbeam_epoch::pin();
        let Some(list) = self.attachments.programs(Point::Lsm(row), &guard) else {
            return Ok(());
        };
        let name = HOOKS[row].name;
        let mut verdict = Ok(());
        let progs = list.entries.iter().map(|e| &*e.prog);
        self.dispatch()
            .run_many_pinned(&guard, &list.plan, progs, args, |p, r| match r {
                Ok(r) if (r as i32) < 0 => {
                    // The first denial wins; later programs do not run (as the kernel's
                    // call_int_hook stops at the first non-zero return).
                    verdict = Err(Errno(-(r as i32)));
                    false
                }
                Ok(_) => true,
                Err(err) => {
                    tracing::warn!(prog = %p.info().name, hook = name, "program failed: {err}");
                    true
                }
            });
        verdict
    }

    fn trace_point(&self, row: usize, exit: Option<i64>, args: &[HookArg<'_>]) {
        let point = match exit {
            None => Point::Entry(row),
            Some(_) => Point::Exit(row),
        };
        if !self.attachments.has(point) {
            return;
        }
        let name = HOOKS[row].name;
        let guard = crossbeam_epoch::pin();
        let Some(list) = self.attachments.programs(point, &guard) else {
            return;
        };
        // The arguments, and for fexit the return value after them (on the stack: every
        // modelled function has fewer arguments than a program context holds).
        let mut buf = [HookArg::Scalar(0); MAX_ARGS + 1];
        let spilled: Vec<HookArg<'_>>;
        let n = args.len();
        let all: &[HookArg<'_>] = if n <= MAX_ARGS {
            buf[..n].copy_from_slice(args);
            match exit {
                Some(r) => {
                    buf[n] = HookArg::Scalar(r as u64);
                    &buf[..=n]
                }
                None => &buf[..n],
            }
        } else {
            // Longer than any context: build_ctx refuses it with a clear error.
            spilled = args
                .iter()
                .copied()
                .chain(exit.map(|r| HookArg::Scalar(r as u64)))
                .collect();
            &spilled
        };
        let progs = list.entries.iter().map(|e| &*e.prog);
        self.dispatch()
            .run_many_pinned(&guard, &list.plan, progs, all, |p, r| {
                if let Err(err) = r {
                    tracing::warn!(prog = %p.info().name, point = name, "program failed: {err}");
                }
                true
            });
    }
}

fn iattr_of(a: &SetAttr) -> Iattr {
    let mut ia = Iattr::default();
    if let Some(m) = a.mode {
        ia.valid |= attr::MODE;
        ia.mode = m;
    }
    if let Some(u) = a.uid {
        ia.valid |= attr::UID;
        ia.uid = u;
    }
    if let Some(g) = a.gid {
        ia.valid |= attr::GID;
        ia.gid = g;
    }
    if let Some(s) = a.size {
        ia.valid |= attr::SIZE;
        ia.size = s;
    }
    if a.atime.is_some() {
        ia.valid |= attr::ATIME;
    }
    if a.mtime.is_some() {
        ia.valid |= attr::MTIME;
    }
    ia
}

impl VfsHooks for BpfHooks {
    fn inode_create(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_CREATE,
            &[
                HookArg::Inode(parent.inode()),
                HookArg::NewDentry {
                    parent,
                    name,
                    inode: None,
                },
                HookArg::Scalar(mode as u64),
            ],
        )
    }
    fn inode_mkdir(&self, parent: &Arc<Dentry>, name: &[u8], mode: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_MKDIR,
            &[
                HookArg::Inode(parent.inode()),
                HookArg::NewDentry {
                    parent,
                    name,
                    inode: None,
                },
                HookArg::Scalar(mode as u64),
            ],
        )
    }
    fn inode_symlink(
        &self,
        parent: &Arc<Dentry>,
        name: &[u8],
        target: &[u8],
    ) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_SYMLINK,
            &[
                HookArg::Inode(parent.inode()),
                HookArg::NewDentry {
                    parent,
                    name,
                    inode: None,
                },
                HookArg::Str(target),
            ],
        )
    }
    fn inode_link(
        &self,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
    ) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_LINK,
            &[
                HookArg::Dentry(old),
                HookArg::Inode(new_parent.inode()),
                HookArg::NewDentry {
                    parent: new_parent,
                    name: new_name,
                    inode: None,
                },
            ],
        )
    }
    fn inode_unlink(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_UNLINK,
            &[HookArg::Inode(parent.inode()), HookArg::Dentry(victim)],
        )
    }
    fn inode_rmdir(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_RMDIR,
            &[HookArg::Inode(parent.inode()), HookArg::Dentry(victim)],
        )
    }
    fn inode_rename(
        &self,
        old_parent: &Arc<Dentry>,
        old: &Arc<Dentry>,
        new_parent: &Arc<Dentry>,
        new_name: &[u8],
        new_existing: Option<&Arc<Dentry>>,
    ) -> bpfvfs_vfs::Result<()> {
        let new = match new_existing {
            Some(d) => HookArg::Dentry(d),
            None => HookArg::NewDentry {
                parent: new_parent,
                name: new_name,
                inode: None,
            },
        };
        self.lsm(
            id::INODE_RENAME,
            &[
                HookArg::Inode(old_parent.inode()),
                HookArg::Dentry(old),
                HookArg::Inode(new_parent.inode()),
                new,
            ],
        )
    }
    fn inode_setattr(&self, dentry: &Arc<Dentry>, a: &SetAttr) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_SETATTR,
            &[HookArg::Dentry(dentry), HookArg::Iattr(iattr_of(a))],
        )
    }
    fn inode_getattr(&self, at: PathBorrow<'_>) -> bpfvfs_vfs::Result<()> {
        self.lsm(id::INODE_GETATTR, &[HookArg::Path(at.dentry)])
    }
    fn inode_permission(&self, inode: &Arc<Inode>, mask: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::INODE_PERMISSION,
            &[HookArg::Inode(inode), HookArg::Scalar(mask as u64)],
        )
    }
    fn file_open(&self, file: &File) -> bpfvfs_vfs::Result<()> {
        self.lsm(id::FILE_OPEN, &[HookArg::File(file)])
    }
    fn file_permission(&self, file: &File, mask: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            id::FILE_PERMISSION,
            &[HookArg::File(file), HookArg::Scalar(mask as u64)],
        )
    }
    fn file_truncate(&self, file: &File) -> bpfvfs_vfs::Result<()> {
        self.lsm(id::FILE_TRUNCATE, &[HookArg::File(file)])
    }
    fn inode_free_security(&self, inode: &Arc<Inode>) {
        let _ = self.lsm(id::INODE_FREE_SECURITY, &[HookArg::Inode(inode)]);
    }
    fn trace(&self, point: TracePoint<'_>, exit: Option<i64>) {
        // The common case, nothing attached at this point: one match and one load, before
        // any argument is gathered.
        let row = match point {
            TracePoint::VfsOpen { .. } => id::VFS_OPEN,
            TracePoint::VfsRead { .. } => id::VFS_READ,
            TracePoint::VfsWrite { .. } => id::VFS_WRITE,
            TracePoint::VfsUnlink { .. } => id::VFS_UNLINK,
            TracePoint::VfsMkdir { .. } => id::VFS_MKDIR,
            TracePoint::VfsRmdir { .. } => id::VFS_RMDIR,
            TracePoint::VfsRename { .. } => id::VFS_RENAME,
            TracePoint::Evict { .. } => id::EVICT,
        };
        let at = match exit {
            None => Point::Entry(row),
            Some(_) => Point::Exit(row),
        };
        if self.attachments.has(at) {
            self.trace_args(point, exit);
        }
    }
}

impl BpfHooks {
    #[inline(never)]
    fn trace_args(&self, point: TracePoint<'_>, exit: Option<i64>) {
        match point {
            TracePoint::VfsOpen { at, file } => self.trace_point(
                id::VFS_OPEN,
                exit,
                &[HookArg::Path(at.dentry.arc()), HookArg::File(file)],
            ),
            TracePoint::VfsRead { file, count, pos } => self.trace_point(
                id::VFS_READ,
                exit,
                &[
                    HookArg::File(file),
                    HookArg::Scalar(0),
                    HookArg::Scalar(count),
                    HookArg::Scalar(pos),
                ],
            ),
            TracePoint::VfsWrite { file, count, pos } => self.trace_point(
                id::VFS_WRITE,
                exit,
                &[
                    HookArg::File(file),
                    HookArg::Scalar(0),
                    HookArg::Scalar(count),
                    HookArg::Scalar(pos),
                ],
            ),
            TracePoint::VfsUnlink { parent, victim } => self.trace_point(
                id::VFS_UNLINK,
                exit,
                &[
                    HookArg::Scalar(0),
                    HookArg::Inode(parent.inode()),
                    HookArg::Dentry(victim),
                    HookArg::Scalar(0),
                ],
            ),
            TracePoint::VfsMkdir {
                parent,
                name,
                mode,
                created,
            } => {
                let d = match created {
                    Some(c) => HookArg::Dentry(c),
                    None => HookArg::NewDentry {
                        parent,
                        name,
                        inode: None,
                    },
                };
                self.trace_point(
                    id::VFS_MKDIR,
                    exit,
                    &[
                        HookArg::Scalar(0),
                        HookArg::Inode(parent.inode()),
                        d,
                        HookArg::Scalar(mode as u64),
                    ],
                )
            }
            TracePoint::VfsRmdir { parent, victim } => self.trace_point(
                id::VFS_RMDIR,
                exit,
                &[
                    HookArg::Scalar(0),
                    HookArg::Inode(parent.inode()),
                    HookArg::Dentry(victim),
                ],
            ),
            TracePoint::VfsRename { .. } => {
                self.trace_point(id::VFS_RENAME, exit, &[HookArg::Scalar(0)])
            }
            TracePoint::Evict { inode } => {
                self.trace_point(id::EVICT, exit, &[HookArg::Inode(inode)])
            }
        }
    }
}

impl Runtime {
    pub fn attachments(&self) -> &Attachments {
        &self.attachments
    }

    /// Attach `prog` where its section says (`lsm/HOOK`, `fentry/FUNC`, `fexit/FUNC`),
    /// or at `target` if given; returns the link (a handle holding one reference). The
    /// program stays attached while the link lives (pinned, or a handle open).
    pub fn attach(&self, prog: &Handle, target: Option<&str>) -> Result<Handle, RuntimeError> {
        let p = prog.obj.as_prog().map_err(|errno| RuntimeError::Os {
            context: "attach: not a program".into(),
            errno,
        })?;
        let lp = p
            .exec::<crate::LoadedProg>()
            .ok_or_else(|| RuntimeError::NotSupported {
                what: format!("attaching program {}", p.info().name),
                why: "it has no executable form here".into(),
            })?;
        let name = target.unwrap_or(&p.info().attach_to);
        let kind = match lp.type_entry.prog_type {
            bpfvfs_bpf::ProgType::Lsm => HookKind::Lsm,
            bpfvfs_bpf::ProgType::Tracing => HookKind::Func,
            _ => {
                return Err(RuntimeError::NotSupported {
                    what: format!("attaching a {} program to a VFS hook", lp.type_entry.name),
                    why: "only lsm and fentry/fexit programs attach to VFS hooks".into(),
                })
            }
        };
        let row = hooks::index(kind, name).ok_or_else(|| RuntimeError::ProgType {
            prog: p.info().name.clone(),
            reason: format!("no attach point {name:?}"),
        })?;
        let point = match (kind, lp.section_kind) {
            (HookKind::Lsm, _) => Point::Lsm(row),
            (_, ProgramKind::Fexit) => Point::Exit(row),
            _ => Point::Entry(row),
        };
        if self.hooks_installed.load(Ordering::Relaxed) == 0 {
            return Err(RuntimeError::Os {
                context: "attach: this VFS has another runtime's hooks installed".into(),
                errno: Errno::EBUSY,
            });
        }
        let token = self.attachments.next_token.fetch_add(1, Ordering::Relaxed);
        let prog_arc = p.clone();
        self.attachments.modify(point, |old| {
            let mut v = old.to_vec();
            v.push(Entry {
                token,
                prog: prog_arc,
            });
            v
        });
        let n = self.attachments.attached.fetch_add(1, Ordering::Relaxed) + 1;
        self.bpf().vfs().set_hooks_enabled(n > 0);
        let me = self.me.clone();
        let detach: bpfvfs_bpf::prog::Detach = Box::new(move || {
            if let Some(rt) = me.upgrade() {
                rt.attachments.modify(point, |old| {
                    old.iter().filter(|e| e.token != token).cloned().collect()
                });
                let n = rt.attachments.attached.fetch_sub(1, Ordering::Relaxed) - 1;
                rt.bpf().vfs().set_hooks_enabled(n > 0);
            }
        });
        self.bpf()
            .link_create(prog, point.attach_type(), point.target(), Some(detach))
            .map_err(|errno| RuntimeError::Os {
                context: "link_create".into(),
                errno,
            })
    }
}
