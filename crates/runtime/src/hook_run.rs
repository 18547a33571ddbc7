//! Running LSM and tracing programs with kernel-object arguments, and the helpers that need
//! those objects (inode storage, `bpf_probe_read_kernel_str`), registered in every runtime's
//! helper table.
//!
//! A run builds the views of its arguments in a [`ViewArena`], sets `r1` to the argument
//! array (u64 per argument: a view's address or a number), and hands the helpers a
//! [`RunExt`] through the engine's `Env::user` slot: the arena (to map an inode view back to
//! its inode) and the program's maps (to map a map handle back to its map). Both are borrowed
//! for the run only.

use crate::error::RuntimeError;
use crate::exec::{LoadedProg, RunMaps};
use crate::kobj::{Iattr, ViewArena};
use crate::Runtime;
use bpfvfs_bpf::maps::inode_storage;
use bpfvfs_bpf::{Map, Prog};
use bpfvfs_ebpf::helpers::HelperCtx;
use bpfvfs_ebpf::verifier::{ArgKind, HelperProto, HelperProtos, RetKind};
use bpfvfs_ebpf::{Env, HelperError, Helpers, Region, RegionKind};
use bpfvfs_vfs::{Dentry, Errno, File, Inode};
use std::sync::Arc;

/// One argument of a hook invocation.
#[derive(Clone, Copy)]
pub enum HookArg<'a> {
    Inode(&'a Arc<Inode>),
    /// An existing (positive) dentry.
    Dentry(&'a Arc<Dentry>),
    /// The name an operation is about to create (negative unless `inode` is given).
    NewDentry {
        parent: &'a Arc<Dentry>,
        name: &'a [u8],
        inode: Option<&'a Arc<Inode>>,
    },
    File(&'a File),
    /// A `struct path` of a positive dentry (borrowed: held by the caller, or under its
    /// epoch guard, for the run).
    Path(&'a Dentry),
    Iattr(Iattr),
    /// A NUL-terminated string the program may read with bpf_probe_read_kernel_str.
    Str(&'a [u8]),
    Scalar(u64),
}

/// What the runtime's helpers find in `Env::user` during a run.
pub struct RunExt {
    pub(crate) arena: *const ViewArena,
    pub(crate) maps: *const [Arc<Map>],
}

impl RunExt {
    pub(crate) fn of<'c>(ctx: &'c mut HelperCtx) -> Result<&'c RunExt, HelperError> {
        ctx.env()
            .user
            .as_deref()
            .and_then(|u| u.downcast_ref::<RunExt>())
            .ok_or_else(|| HelperError::Other("helper needs a hook run".into()))
    }
    /// SAFETY (for callers): valid for the run that installed this RunExt.
    pub(crate) fn map(&self, h: u64) -> Result<&Map, HelperError> {
        // SAFETY: the maps slice is the running LoadedProg's, alive for the run.
        let maps = unsafe { &*self.maps };
        (h as usize)
            .checked_sub(1)
            .and_then(|i| maps.get(i))
            .map(|m| &**m)
            .ok_or(HelperError::InvalidMap(h))
    }
    /// The inode behind a view address, borrowed for the helper call (no reference count
    /// taken: the arena holds one for the whole run).
    fn inode(&self, addr: u64) -> Option<*const Inode> {
        // SAFETY: the arena outlives the run that installed this RunExt.
        unsafe { &*self.arena }.inode_at(addr)
    }
}

const EFAULT: i64 = 14;
const E2BIG: i64 = 7;

/// bpf_inode_storage_get(map, inode, value, flags).
fn inode_storage_get(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let ext = RunExt::of(ctx)?;
    let map: *const Map = ext.map(a[0])?;
    let inode = if a[1] == 0 { None } else { ext.inode(a[1]) };
    if a[1] != 0 && inode.is_none() {
        // Not a view of this run: the verifier only passes inode pointers here.
        return Err(HelperError::Other(format!("{:#x} is not an inode", a[1])));
    }
    // SAFETY: as RunExt::map.
    let map = unsafe { &*map };
    // SAFETY: the arena holds an Arc of the inode until the run ends.
    let inode: Option<&Inode> = inode.map(|p| unsafe { &*p });
    let vs = map.def().value_size as usize;
    let mut init = [0u8; 256];
    let mut big = Vec::new();
    let init: Option<&[u8]> = if a[2] == 0 {
        None
    } else if vs <= init.len() {
        ctx.read(a[2], &mut init[..vs])?;
        Some(&init[..vs])
    } else {
        big.resize(vs, 0);
        ctx.read(a[2], &mut big)?;
        Some(&big)
    };
    // Nested in the run's own pin (RunMaps): the value stays valid until the run ends.
    let guard = crossbeam_epoch::pin();
    match inode_storage::storage_get(map, inode, init, a[3], &guard) {
        // SAFETY: the storage contract: valid while this thread stays pinned, which the run's
        // guard ensures until the run ends.
        Some(p) => Ok(unsafe { ctx.register_region(RegionKind::MapValue, p, vs, true) }),
        None => Ok(0),
    }
}

/// bpf_inode_storage_delete(map, inode).
fn inode_storage_delete(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let ext = RunExt::of(ctx)?;
    let map: *const Map = ext.map(a[0])?;
    let inode = if a[1] == 0 { None } else { ext.inode(a[1]) };
    // SAFETY: as RunExt::map.
    let map = unsafe { &*map };
    // SAFETY: the arena holds an Arc of the inode until the run ends.
    let inode: Option<&Inode> = inode.map(|p| unsafe { &*p });
    let guard = crossbeam_epoch::pin();
    Ok(inode_storage::storage_delete(map, inode, &guard) as u64)
}

/// bpf_probe_read_kernel_str(dst, size, unsafe_ptr): the string with its NUL, at most
/// `size` bytes; the length copied (NUL included) or -EFAULT (dst zeroed).
fn probe_read_kernel_str(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let (dst, size, src) = (a[0], a[1] as usize, a[2]);
    if size == 0 {
        return Ok(0);
    }
    ctx.check(dst, size as u64, true)?;
    match ctx.read_cstr(src, size - 1) {
        Some(mut s) => {
            s.push(0);
            ctx.write(dst, &s)?;
            Ok(s.len() as u64)
        }
        None => {
            ctx.write(dst, &vec![0u8; size])?;
            Ok((-EFAULT) as u64)
        }
    }
}

/// Register the runtime's helpers (those that need objects the engine does not know).
pub(crate) fn register(helpers: &mut Helpers, protos: &mut HelperProtos) {
    helpers.register(145, "bpf_inode_storage_get", inode_storage_get);
    helpers.register(146, "bpf_inode_storage_delete", inode_storage_delete);
    helpers.register(115, "bpf_probe_read_kernel_str", probe_read_kernel_str);
    let wr = ArgKind::Mem {
        read: false,
        write: true,
        nullable: false,
    };
    protos.register(
        115,
        HelperProto::new(
            "bpf_probe_read_kernel_str",
            RetKind::Integer(None),
            &[wr, ArgKind::ConstSizeOrZero, ArgKind::Anything],
        ),
    );
    let _ = E2BIG;
}

impl Runtime {
    /// Run an LSM or tracing program once with `args` (what a hook passes it). Returns r0.
    pub fn run_with_args(&self, prog: &Prog, args: &[HookArg<'_>]) -> Result<u64, RuntimeError> {
        let mut out = Ok(0);
        self.run_many(std::iter::once(prog), args, |_, r| {
            out = r;
            false
        });
        out
    }

    /// Run `progs` in order with the same `args` (one hook invocation): the kernel-object
    /// views are built once, for what any of the programs reads, and shared by the runs.
    /// `each(prog, result)` says whether to go on.
    pub fn run_many<'p>(
        &self,
        progs: impl Iterator<Item = &'p Prog> + Clone,
        args: &[HookArg<'_>],
        mut each: impl FnMut(&'p Prog, Result<u64, RuntimeError>) -> bool,
    ) {
        let guard = crossbeam_epoch::pin();
        let plan = RunPlan::of(progs.clone());
        Dispatch {
            trace: &self.trace,
            rt: &self.me,
        }
        .run_many_pinned(&guard, &plan, progs, args, |p, r| {
            each(p, r.map_err(|e| *e))
        })
    }
}

/// What running a set of programs together needs, from all of them: which views to
/// build, whether to prepare the current task and cgroup views, whether to look up the
/// task. Attachment lists compute theirs when they change.
#[derive(Clone, Copy)]
pub(crate) struct RunPlan {
    needs: crate::kobj::Needs,
    current: bool,
    uses_task: bool,
}

impl RunPlan {
    pub(crate) fn of<'p>(progs: impl Iterator<Item = &'p Prog>) -> RunPlan {
        let mut plan = RunPlan {
            needs: crate::kobj::Needs::NONE,
            current: false,
            uses_task: false,
        };
        for lp in progs.filter_map(|p| p.exec::<LoadedProg>()) {
            plan.needs = plan.needs.union(lp.view_needs);
            plan.current |= lp.uses_current;
            plan.uses_task |= lp.uses_task;
        }
        plan
    }
}

/// What running a hook's programs needs of the runtime: the trace log, and (only for
/// programs that read the current task or cgroup) the runtime itself. The VFS hooks hold
/// these without holding the runtime, so a dispatch takes no reference.
pub(crate) struct Dispatch<'a> {
    pub trace: &'a crate::trace::TraceLog,
    pub rt: &'a std::sync::Weak<Runtime>,
}

impl Dispatch<'_> {
    /// [`Runtime::run_many`] under the caller's epoch pin, held until this returns: it
    /// covers the map values of every run, so a hook invocation pins once for all its
    /// programs (the RCU read-side section around the kernel's program array walk).
    pub(crate) fn run_many_pinned<'p>(
        &self,
        guard: &crossbeam_epoch::Guard,
        plan: &RunPlan,
        progs: impl Iterator<Item = &'p Prog> + Clone,
        args: &[HookArg<'_>],
        mut each: impl FnMut(&'p Prog, HookResult) -> bool,
    ) {
        let loaded = |p: &'p Prog| {
            p.exec::<LoadedProg>().ok_or_else(|| {
                Box::new(RuntimeError::test_run(
                    Errno::ENOTSUP_,
                    format!("program {} has no executable form here", p.info().name),
                ))
            })
        };
        let RunPlan {
            needs,
            current,
            uses_task,
        } = *plan;
        // One arena per thread, reused (a nested run on the same thread gets its own).
        thread_local! {
            static ARENA: std::cell::RefCell<ViewArena> = std::cell::RefCell::new(ViewArena::new());
        }
        let mut go = |arena: &mut ViewArena| {
            arena.reset(needs);
            let mut ctx = [0u64; MAX_ARGS];
            if let Err(e) = build_ctx(arena, args, &mut ctx) {
                if let Some(p) = progs.clone().next() {
                    each(p, Err(Box::new(e)));
                }
                return;
            }
            // What the task and cgroup helpers read (built only for programs calling them).
            if current {
                if let Some(rt) = self.rt.upgrade() {
                    for p in progs.clone() {
                        if let Ok(lp) = loaded(p) {
                            let _ = crate::cgroup_helpers::prepare(arena, rt.bpf().vfs(), lp);
                        }
                    }
                }
            }
            let arena: &ViewArena = arena;
            let n = args.len().max(1);
            // SAFETY: u64 words viewed as bytes for the context region; borrowed for the runs.
            let ctx_bytes = unsafe { std::slice::from_raw_parts(ctx.as_ptr().cast::<u8>(), n * 8) };
            let ctx_region = Region::readonly(RegionKind::Context, ctx_bytes);
            let r1 = ctx_region.addr();
            // The usual case fits a stack array (views, names, context): no allocation.
            let mut fixed = [ctx_region; 3];
            let spilled: Vec<Region<'_>>;
            let regions: &[Region<'_>] = match arena.regions_into(&mut fixed[..2]) {
                Some(k) => {
                    fixed[k] = ctx_region;
                    &fixed[..=k]
                }
                None => {
                    let mut v = arena.regions();
                    v.push(ctx_region);
                    spilled = v;
                    &spilled
                }
            };
            let task = if uses_task { current_task() } else { NO_TASK };
            // One borrow of the thread's JIT state for all the runs.
            crate::exec::with_jit_state(|mut state| {
                for p in progs.clone() {
                    let r = loaded(p).and_then(|lp| {
                        let run = HookRun {
                            guard,
                            arena,
                            task: &task,
                            r1,
                            regions,
                        };
                        self.run_prog(lp, &run, state.as_deref_mut())
                    });
                    if !each(p, r) {
                        return;
                    }
                }
            })
        };
        ARENA.with(|cell| match cell.try_borrow_mut() {
            Ok(mut arena) => {
                go(&mut arena);
                arena.release();
            }
            Err(_) => go(&mut ViewArena::new()),
        })
    }

    fn run_prog(
        &self,
        lp: &LoadedProg,
        run: &HookRun<'_>,
        state: Option<&mut crate::exec::JitState>,
    ) -> HookResult {
        let (arena, task) = (run.arena, run.task);
        let maps = RunMaps::pinned(lp, run.guard);
        let mut ext = RunExt {
            arena,
            maps: &lp.maps[..],
        };
        // The task is looked up only for programs that read it (`LoadedProg::uses_task`) or
        // when a message is printed.
        let mut sink = |m: &[u8]| {
            let t = current_task();
            self.trace.push(&t.comm, t.pid, 0, m)
        };
        // Built field by field: Env::new asks the kernel for the task and the time.
        let mut env = Env {
            maps: Some(&maps),
            trace: Some(&mut sink),
            // NO_TASK unless a program of the invocation reads it (`RunPlan::uses_task`).
            task: task.clone(),
            clock: bpfvfs_ebpf::helpers::real_clock,
            prandom: next_seed(),
            user: Some(&mut ext),
        };
        lp.run_in_state(state, [run.r1, 0, 0, 0, 0], run.regions, &mut env)
    }
}

/// Arguments a program context holds.
pub(crate) const MAX_ARGS: usize = 12;

/// One run's result on the dispatch path: the error boxed, so the common `Ok` moves through
/// the layers as two words, not a 104-byte `RuntimeError`.
pub(crate) type HookResult = Result<u64, Box<RuntimeError>>;

/// What the runs of one hook invocation share.
struct HookRun<'a> {
    guard: &'a crossbeam_epoch::Guard,
    arena: &'a ViewArena,
    task: &'a bpfvfs_ebpf::TaskInfo,
    /// The argument array's address.
    r1: u64,
    regions: &'a [Region<'a>],
}

/// The argument array of a hook invocation, views built in `arena`.
fn build_ctx(
    arena: &mut ViewArena,
    args: &[HookArg<'_>],
    ctx: &mut [u64; MAX_ARGS],
) -> Result<(), RuntimeError> {
    if args.len() > ctx.len() {
        return Err(RuntimeError::test_run(
            Errno::EINVAL,
            "more than 12 arguments",
        ));
    }
    let full = |_| RuntimeError::test_run(Errno::E2BIG, "too many kernel objects");
    for (slot, a) in ctx.iter_mut().zip(args) {
        *slot = match a {
            HookArg::Inode(i) => arena.inode(i).map_err(full)?,
            HookArg::Dentry(d) => arena.dentry(d).map_err(full)?,
            HookArg::NewDentry {
                parent,
                name,
                inode,
            } => arena
                .dentry_for(name, Some(parent), *inode, parent.inode().sb())
                .map_err(full)?,
            HookArg::File(f) => arena.file(f).map_err(full)?,
            HookArg::Path(d) => arena.path(d).map_err(full)?,
            HookArg::Iattr(ia) => arena.iattr(ia).map_err(full)?,
            HookArg::Str(b) => arena.string(b),
            HookArg::Scalar(v) => *v,
        };
    }
    Ok(())
}

/// The task of runs whose programs do not read it.
const NO_TASK: bpfvfs_ebpf::TaskInfo = bpfvfs_ebpf::TaskInfo {
    pid: 0,
    tgid: 0,
    uid: 0,
    gid: 0,
    comm: [0; 16],
    cpu: None,
};

/// A fresh non-zero PRNG state per run (bpf_get_prandom_u32), from a per-thread sequence.
pub(crate) fn next_seed() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            bpfvfs_ebpf::helpers::real_clock(bpfvfs_ebpf::helpers::Clock::Monotonic)
                ^ (&STATE as *const _ as u64).rotate_left(17),
        );
    }
    STATE.with(|s| {
        let x = s.get().wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        s.set(x);
        x | 1
    })
}

/// The task a hook runs for: the caller the edge recorded (a FUSE request's process), with
/// its thread-group id and name from /proc (cached per thread for the last pid seen), or
/// the serving thread itself.
pub fn current_task() -> bpfvfs_ebpf::TaskInfo {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(u32, u32, bpfvfs_ebpf::TaskInfo)>> = const { RefCell::new(None) };
    }
    thread_local! {
        static SELF: bpfvfs_ebpf::TaskInfo = bpfvfs_ebpf::TaskInfo::current();
    }
    let Some(c) = bpfvfs_vfs::task::caller() else {
        return SELF.with(|t| t.clone());
    };
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((pid, uid, t)) = &*last {
            if *pid == c.pid && *uid == c.uid && t.gid == c.gid {
                return t.clone();
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
        };
        let tgid = field("Tgid:").and_then(|v| v.parse().ok()).unwrap_or(c.pid);
        let name = field("Name:").unwrap_or_default();
        let mut t = bpfvfs_ebpf::TaskInfo::current().with_comm(&name);
        t.pid = c.pid;
        t.tgid = tgid;
        t.uid = c.uid;
        t.gid = c.gid;
        *last = Some((c.pid, c.uid, t.clone()));
        t
    })
}
