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
use crate::hook_run::HookArg;
use crate::hooks::{self, HookKind};
use crate::kobj::{attr, Iattr};
use crate::Runtime;
use bpfvfs_bpf::{Handle, Prog};
use bpfvfs_ebpf_obj::ProgramKind;
use bpfvfs_vfs::{Dentry, Errno, File, Inode, PathRef, SetAttr, TracePoint, VfsHooks};
use crossbeam_epoch::{Atomic, Guard, Owned};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    Lsm(&'static str),
    Entry(&'static str),
    Exit(&'static str),
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
        match self {
            Point::Lsm(n) | Point::Entry(n) | Point::Exit(n) => n,
        }
    }
}

struct Entry {
    token: u64,
    prog: Arc<Prog>,
}

type List = Vec<Entry>;

/// Every attach point's program list: one slot per (hook, entry/exit) of the hook table,
/// found by index, so a dispatch takes no lock.
pub struct Attachments {
    slots: Box<[Atomic<List>]>,
    /// Serializes writers (attach, detach).
    write: Mutex<()>,
    next_token: AtomicU64,
    attached: AtomicUsize,
}

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            slots: (0..hooks::HOOKS.len() * 2)
                .map(|_| Atomic::null())
                .collect(),
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
        let i = hooks::HOOKS
            .iter()
            .position(|h| {
                h.name == p.target() && (h.kind == HookKind::Lsm) == matches!(p, Point::Lsm(_))
            })
            .expect("points come from the hook table");
        let exit = matches!(p, Point::Exit(_)) as usize;
        &self.slots[i * 2 + exit]
    }

    fn modify(&self, p: Point, f: impl FnOnce(&List) -> List) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let l = self.slot(p);
        let guard = crossbeam_epoch::pin();
        let cur = l.load(Ordering::Acquire, &guard);
        let empty = Vec::new();
        // SAFETY: `cur` is null or a list published by a writer, valid under `guard`.
        let old: &List = unsafe { cur.as_ref() }.unwrap_or(&empty);
        let new = f(old);
        let prev = l.swap(Owned::new(new), Ordering::AcqRel, &guard);
        if !prev.is_null() {
            // SAFETY: unreachable once swapped out; readers that loaded it hold guards.
            unsafe { guard.defer_destroy(prev) };
        }
        // Hand the old list (and the program references it holds) to the collector now, so
        // a detached program is freed one grace period later, not whenever this thread's
        // local garbage bag happens to fill.
        guard.flush();
    }

    /// Programs attached at `p`, for one dispatch.
    fn programs<'g>(&'g self, p: Point, guard: &'g Guard) -> Option<&'g List> {
        let cur = self.slot(p).load(Ordering::Acquire, guard);
        // SAFETY: published lists are freed only after every guard that saw them.
        let list: &'g List = unsafe { cur.as_ref() }?;
        (!list.is_empty()).then_some(list)
    }

    pub fn attached(&self) -> usize {
        self.attached.load(Ordering::Relaxed)
    }
}

/// The VFS hooks of a runtime.
pub struct BpfHooks {
    rt: Weak<Runtime>,
}

impl BpfHooks {
    pub(crate) fn new(rt: Weak<Runtime>) -> BpfHooks {
        BpfHooks { rt }
    }

    /// Run every program at an LSM point; the first non-zero return denies with it.
    fn lsm(&self, name: &'static str, args: &[HookArg<'_>]) -> bpfvfs_vfs::Result<()> {
        let Some(rt) = self.rt.upgrade() else {
            return Ok(());
        };
        let guard = crossbeam_epoch::pin();
        let Some(list) = rt.attachments().programs(Point::Lsm(name), &guard) else {
            return Ok(());
        };
        for e in list {
            match rt.run_with_args(&e.prog, args) {
                Ok(r) => {
                    let r = r as i32;
                    if r < 0 {
                        return Err(Errno(-r));
                    }
                }
                Err(err) => {
                    tracing::warn!(prog = %e.prog.info().name, hook = name, "program failed: {err}");
                }
            }
        }
        Ok(())
    }

    fn trace_point(&self, name: &'static str, exit: Option<i64>, args: &[HookArg<'_>]) {
        let Some(rt) = self.rt.upgrade() else {
            return;
        };
        let point = match exit {
            None => Point::Entry(name),
            Some(_) => Point::Exit(name),
        };
        let guard = crossbeam_epoch::pin();
        let Some(list) = rt.attachments().programs(point, &guard) else {
            return;
        };
        let mut all: Vec<HookArg<'_>> = Vec::with_capacity(args.len() + 1);
        all.extend_from_slice(args);
        if let Some(r) = exit {
            all.push(HookArg::Scalar(r as u64));
        }
        for e in list {
            if let Err(err) = rt.run_with_args(&e.prog, &all) {
                tracing::warn!(prog = %e.prog.info().name, point = name, "program failed: {err}");
            }
        }
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
            "inode_create",
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
            "inode_mkdir",
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
            "inode_symlink",
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
            "inode_link",
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
            "inode_unlink",
            &[HookArg::Inode(parent.inode()), HookArg::Dentry(victim)],
        )
    }
    fn inode_rmdir(&self, parent: &Arc<Dentry>, victim: &Arc<Dentry>) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            "inode_rmdir",
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
            "inode_rename",
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
            "inode_setattr",
            &[HookArg::Dentry(dentry), HookArg::Iattr(iattr_of(a))],
        )
    }
    fn inode_getattr(&self, at: &PathRef) -> bpfvfs_vfs::Result<()> {
        self.lsm("inode_getattr", &[HookArg::Path(at.dentry.arc())])
    }
    fn inode_permission(&self, inode: &Arc<Inode>, mask: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            "inode_permission",
            &[HookArg::Inode(inode), HookArg::Scalar(mask as u64)],
        )
    }
    fn file_open(&self, file: &File) -> bpfvfs_vfs::Result<()> {
        self.lsm("file_open", &[HookArg::File(file)])
    }
    fn file_permission(&self, file: &File, mask: u32) -> bpfvfs_vfs::Result<()> {
        self.lsm(
            "file_permission",
            &[HookArg::File(file), HookArg::Scalar(mask as u64)],
        )
    }
    fn file_truncate(&self, file: &File) -> bpfvfs_vfs::Result<()> {
        self.lsm("file_truncate", &[HookArg::File(file)])
    }
    fn inode_free_security(&self, inode: &Arc<Inode>) {
        let _ = self.lsm("inode_free_security", &[HookArg::Inode(inode)]);
    }
    fn trace(&self, point: TracePoint<'_>, exit: Option<i64>) {
        match point {
            TracePoint::VfsOpen { at, file } => self.trace_point(
                "vfs_open",
                exit,
                &[HookArg::Path(at.dentry.arc()), HookArg::File(file)],
            ),
            TracePoint::VfsRead { file, count, pos } => self.trace_point(
                "vfs_read",
                exit,
                &[
                    HookArg::File(file),
                    HookArg::Scalar(0),
                    HookArg::Scalar(count),
                    HookArg::Scalar(pos),
                ],
            ),
            TracePoint::VfsWrite { file, count, pos } => self.trace_point(
                "vfs_write",
                exit,
                &[
                    HookArg::File(file),
                    HookArg::Scalar(0),
                    HookArg::Scalar(count),
                    HookArg::Scalar(pos),
                ],
            ),
            TracePoint::VfsUnlink { parent, victim } => self.trace_point(
                "vfs_unlink",
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
                    "vfs_mkdir",
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
                "vfs_rmdir",
                exit,
                &[
                    HookArg::Scalar(0),
                    HookArg::Inode(parent.inode()),
                    HookArg::Dentry(victim),
                ],
            ),
            TracePoint::VfsRename { .. } => {
                self.trace_point("vfs_rename", exit, &[HookArg::Scalar(0)])
            }
            TracePoint::Evict { inode } => {
                self.trace_point("evict", exit, &[HookArg::Inode(inode)])
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
        let def = hooks::find(kind, name).ok_or_else(|| RuntimeError::ProgType {
            prog: p.info().name.clone(),
            reason: format!("no attach point {name:?}"),
        })?;
        let point = match (kind, lp.section_kind) {
            (HookKind::Lsm, _) => Point::Lsm(def.name),
            (_, ProgramKind::Fexit) => Point::Exit(def.name),
            _ => Point::Entry(def.name),
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
            let mut v: List = old
                .iter()
                .map(|e| Entry {
                    token: e.token,
                    prog: e.prog.clone(),
                })
                .collect();
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
                    old.iter()
                        .filter(|e| e.token != token)
                        .map(|e| Entry {
                            token: e.token,
                            prog: e.prog.clone(),
                        })
                        .collect()
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
