//! A loaded program's executable form, and running it.
//!
//! # References and grace periods
//!
//! A [`LoadedProg`] holds a strong reference to every map the program uses (the kernel's
//! `used_maps`), so maps outlive every run of the program. Map helpers get memory through
//! [`RunMaps`], which pins a crossbeam-epoch guard for the whole run: a value a program got
//! from `bpf_map_lookup_elem` stays allocated until the run ends even if user space deletes
//! the element meanwhile (the RCU read-side section a kernel program runs in).
//!
//! # Checked and unchecked runs
//!
//! Programs reach this module only after the verifier accepted them, so by default they run
//! unchecked (no per-access bounds checks), as in the kernel. [`crate::RuntimeConfig::checked`]
//! runs them checked instead: every access is validated against the context, stack, map
//! values handed out and the program's direct map values (global data), which are registered
//! as regions for each run.

use crate::progtypes::ProgTypeEntry;
use bpfvfs_bpf::maps::ringbuf::RingBuf;
use bpfvfs_bpf::uapi::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use bpfvfs_bpf::Map;
use bpfvfs_ebpf::verifier::VerifiedInfo;
use bpfvfs_ebpf::{
    Env, ExecError, Helpers, Interpreter, MapAccess, MemRef, Program, Region, RegionKind,
};
use crossbeam_epoch::Guard;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use bpfvfs_ebpf::jit::{Jit, JitProgram};

/// Which engine runs programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Interp,
    Jit,
}

/// Memory a program reaches without a helper: the value of a global-data array map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectValue {
    pub addr: usize,
    pub len: usize,
    pub writable: bool,
}

/// Prepared runners of one program, reused across runs: one slot per thread class, taken by
/// swapping it out and put back by compare-and-swap, so no lock is taken on the run path.
pub(crate) struct RunnerPool {
    slots: [AtomicPtr<Runner<'static>>; POOL_SLOTS],
}

const POOL_SLOTS: usize = 16;

// Pooled runners move between threads (a slot is shared by a class of threads).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Runner<'static>>();
};

impl Default for RunnerPool {
    fn default() -> Self {
        RunnerPool {
            slots: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }
}

impl Drop for RunnerPool {
    fn drop(&mut self) {
        for s in &self.slots {
            let p = s.swap(std::ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: every non-null slot holds a Box::into_raw of ours, taken once.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

fn pool_slot() -> usize {
    use std::cell::Cell;
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % POOL_SLOTS);
        }
        s.get()
    })
}

/// A runner borrowed from its program's pool; returned on drop.
pub struct PooledRunner<'p> {
    runner: Option<Box<Runner<'static>>>,
    pool: &'p RunnerPool,
    _lp: std::marker::PhantomData<&'p LoadedProg>,
}

impl<'p> std::ops::Deref for PooledRunner<'p> {
    type Target = Runner<'p>;
    fn deref(&self) -> &Runner<'p> {
        self.runner.as_deref().expect("present until drop")
    }
}

impl<'p> std::ops::DerefMut for PooledRunner<'p> {
    fn deref_mut(&mut self) -> &mut Runner<'p> {
        // SAFETY: shortening 'static to 'p; the runner borrows the LoadedProg, which outlives
        // 'p.
        unsafe {
            std::mem::transmute::<&mut Runner<'static>, &mut Runner<'p>>(
                self.runner.as_deref_mut().expect("present until drop"),
            )
        }
    }
}

impl Drop for PooledRunner<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.runner.take() {
            let p = Box::into_raw(r);
            let slot = &self.pool.slots[pool_slot()];
            if slot
                .compare_exchange(
                    std::ptr::null_mut(),
                    p,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                // SAFETY: `p` came from Box::into_raw just above and was not published.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// What a [`bpfvfs_bpf::Prog`] carries as its executable (`Prog::exec::<LoadedProg>()`).
pub struct LoadedProg {
    /// Declared first so it is dropped first: pooled runners borrow the fields below.
    pub(crate) pool: RunnerPool,
    pub(crate) program: Program,
    pub(crate) helpers: Arc<Helpers>,
    #[cfg(target_arch = "x86_64")]
    pub(crate) jit: Option<(Arc<JitProgram>, Arc<JitProgram>)>,
    /// The maps the program references; map handle `h` in the program is `maps[h - 1]`.
    pub(crate) maps: Vec<Arc<Map>>,
    pub(crate) direct: Vec<DirectValue>,
    pub type_entry: &'static ProgTypeEntry,
    /// The section kind (fentry and fexit share a program type).
    pub section_kind: bpfvfs_ebpf_obj::ProgramKind,
    pub verified: VerifiedInfo,
    /// What of the kernel-object views this program can read.
    pub(crate) view_needs: crate::kobj::Needs,
    /// Calls a helper that reads the current task's view or cgroup (bpf_get_current_task_btf,
    /// bpf_get_current_cgroup_id): hook runs prepare those (`cgroup_helpers::prepare`).
    pub(crate) uses_current: bool,
    /// Calls a helper that reads the task (`bpf_get_current_pid_tgid`, `_uid_gid`, `_comm`):
    /// hook runs look it up only then.
    pub(crate) uses_task: bool,
    pub(crate) checked: bool,
}

impl LoadedProg {
    /// A runner for this program: a pooled one (no allocation, no JIT fingerprinting), or a
    /// new one the first time on this thread class.
    pub fn runner(&self) -> Result<PooledRunner<'_>, crate::RuntimeError> {
        let slot = &self.pool.slots[pool_slot()];
        let p = slot.swap(std::ptr::null_mut(), Ordering::Acquire);
        let runner = if p.is_null() {
            let r = Runner::new(self)?;
            // SAFETY: lengthening the borrow of `self` to 'static for storage in self.pool.
            // The runner is only ever used through PooledRunner<'_> (re-shortened to a borrow
            // of self) and is dropped with the pool, which is declared first in LoadedProg
            // and so dropped before the program and helpers it borrows; LoadedProg itself
            // never moves (it lives boxed in its Prog). Runners hold no thread-bound state.
            Box::new(unsafe { std::mem::transmute::<Runner<'_>, Runner<'static>>(r) })
        } else {
            // SAFETY: non-null slots hold a Box::into_raw of ours; the swap took ownership.
            unsafe { Box::from_raw(p) }
        };
        Ok(PooledRunner {
            runner: Some(runner),
            pool: &self.pool,
            _lp: std::marker::PhantomData,
        })
    }

    /// Runs the program once with r1..r5 = `args`; `regions` are the memory the arguments
    /// point to. Unchecked JIT code runs in the calling thread's [`JitState`] (no runner
    /// taken from the pool, no reference counted per run); everything else through
    /// [`LoadedProg::runner`].
    pub fn run(
        &self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, crate::RuntimeError> {
        let r = if self.runs_in_jit_state() {
            with_jit_state(|state| self.run_in_state(state, args, regions, env))
        } else {
            self.run_in_state(None, args, regions, env)
        };
        r.map_err(|e| *e)
    }

    /// Unchecked JIT code: what [`LoadedProg::run_in_state`] runs in a [`JitState`].
    fn runs_in_jit_state(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.jit.is_some() && !self.checked
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// [`LoadedProg::run`] in a JIT state the caller holds (one borrow of the thread's state
    /// for several runs: [`with_jit_state`]).
    #[inline]
    pub fn run_in_state(
        &self,
        state: Option<&mut JitState>,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, Box<crate::RuntimeError>> {
        #[cfg(target_arch = "x86_64")]
        if let (Some((_, unchecked)), false, Some(state)) = (&self.jit, self.checked, state) {
            return with_direct_regions(self, regions, |all| {
                // SAFETY: `unchecked` was compiled at load from `self.program` with
                // `self.helpers` (load.rs), which the LoadedProg keeps unchanged; the rest is
                // Runner::run_all's argument: the verifier accepted this program, so every
                // access it can make is to its stack, the context and packet memory in
                // `regions`, memory map helpers returned (valid for the run, see RunMaps), or
                // the direct map values whose maps the LoadedProg keeps alive.
                unsafe { unchecked.run_in(state, &self.program, &self.helpers, args, all, env) }
            })
            .map_err(|e| Box::new(e.into()));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = state;
        let mut runner = self.runner().map_err(Box::new)?;
        runner
            .run(args, regions, env)
            .map_err(|e| Box::new(e.into()))
    }

    pub fn maps(&self) -> &[Arc<Map>] {
        &self.maps
    }
    /// The program as prepared (after map references were resolved).
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// `bpf_map_lookup_elem` calls the JIT compiled inline (array maps, unchecked code).
    pub fn inlined_lookups(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some((_, u)) = &self.jit {
            return u.inlined_lookups();
        }
        0
    }

    /// Bytes of native code, when JIT-compiled.
    pub fn jited_len(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some((_, u)) = &self.jit {
            return u.code_size();
        }
        0
    }
}

impl std::fmt::Debug for LoadedProg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProg")
            .field("type", &self.type_entry.name)
            .field("insns", &self.program.len())
            .field("maps", &self.maps.len())
            .finish()
    }
}

/// The maps of one run, as the engine's map helpers see them.
pub struct RunMaps<'p> {
    maps: &'p [Arc<Map>],
    guard: RunGuard<'p>,
}

/// The epoch pin a run's map values live under: its own, or one the caller holds for
/// several runs (a hook invocation pins once for all its programs).
enum RunGuard<'g> {
    Own(Guard),
    Held(&'g Guard),
}

impl std::ops::Deref for RunGuard<'_> {
    type Target = Guard;
    fn deref(&self) -> &Guard {
        match self {
            RunGuard::Own(g) => g,
            RunGuard::Held(g) => g,
        }
    }
}

impl<'p> RunMaps<'p> {
    pub fn new(lp: &'p LoadedProg) -> RunMaps<'p> {
        RunMaps {
            maps: &lp.maps,
            guard: RunGuard::Own(crossbeam_epoch::pin()),
        }
    }

    /// Under `guard`, which the caller keeps pinned until the run ends.
    pub fn pinned(lp: &'p LoadedProg, guard: &'p Guard) -> RunMaps<'p> {
        RunMaps {
            maps: &lp.maps,
            guard: RunGuard::Held(guard),
        }
    }

    fn map(&self, h: u64) -> Option<&Arc<Map>> {
        let i = (h as usize).checked_sub(1)?;
        self.maps.get(i)
    }

    fn ringbuf(&self, h: u64) -> Option<&RingBuf> {
        self.map(h)?.ops().as_any().downcast_ref::<RingBuf>()
    }
}

fn neg(e: bpfvfs_vfs::Errno) -> i64 {
    -(e.0 as i64)
}

// SAFETY: `lookup` returns memory from `MapOps::lookup_ptr`, valid while `self.guard` is
// pinned, i.e. for the whole run (RunMaps lives as long as the run's Env); array values live
// as long as the map, which the LoadedProg keeps. Ring-buffer records are valid until
// committed, and the ring lives as long as its map.
unsafe impl MapAccess for RunMaps<'_> {
    fn key_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.key_size())
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        self.map(map).map(|m| m.def().value_size as usize)
    }
    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let m = self.map(map)?;
        let p = m.ops().lookup_ptr(key, &self.guard)?;
        Some(MemRef {
            ptr: NonNull::new(p)?,
            len: m.def().value_size as usize,
            writable: m.def().map_flags & bpfvfs_bpf::uapi::BPF_F_RDONLY_PROG == 0,
        })
    }
    fn update(&self, map: u64, key: &[u8], value: &[u8], flags: u64) -> i64 {
        let Some(m) = self.map(map) else {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        };
        if flags & !(BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK) != 0
            || flags & (BPF_NOEXIST | BPF_EXIST) == BPF_NOEXIST | BPF_EXIST
        {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        }
        match m.ops().prog_update(key, value, flags) {
            Ok(()) => 0,
            Err(e) => neg(e),
        }
    }
    fn delete(&self, map: u64, key: &[u8]) -> i64 {
        let Some(m) = self.map(map) else {
            return neg(bpfvfs_vfs::Errno::EINVAL);
        };
        match m.ops().delete(key) {
            Ok(()) => 0,
            Err(e) => neg(e),
        }
    }
    fn ringbuf_output(&self, map: u64, data: &[u8], flags: u64) -> i64 {
        match self.ringbuf(map) {
            Some(rb) => match rb.output(data, flags) {
                Ok(()) => 0,
                Err(e) => neg(e),
            },
            None => neg(bpfvfs_vfs::Errno::EINVAL),
        }
    }
    fn ringbuf_reserve(&self, map: u64, size: u64, flags: u64) -> Option<MemRef> {
        if flags != 0 {
            return None;
        }
        let rb = self.ringbuf(map)?;
        let p = rb.reserve(size)?;
        Some(MemRef {
            ptr: p,
            len: size as usize,
            writable: true,
        })
    }
    fn ringbuf_commit(&self, addr: u64, flags: u64, discard: bool) {
        let Some(p) = NonNull::new(addr as usize as *mut u8) else {
            return;
        };
        // The record names its ring only by address: the ring that accepts it owns it.
        for m in self.maps {
            if let Some(rb) = m.ops().as_any().downcast_ref::<RingBuf>() {
                let r = if discard {
                    rb.discard(p, flags)
                } else {
                    rb.submit(p, flags)
                };
                if r.is_ok() {
                    return;
                }
            }
        }
    }
}

enum Vm<'p> {
    Interp(Box<Interpreter<'p>>),
    #[cfg(target_arch = "x86_64")]
    Jit(Box<Jit<'p>>),
}

/// Runs one loaded program, reusing its stack and region set across runs (one per thread).
pub struct Runner<'p> {
    lp: &'p LoadedProg,
    vm: Vm<'p>,
}

impl<'p> Runner<'p> {
    pub fn new(lp: &'p LoadedProg) -> Result<Runner<'p>, crate::RuntimeError> {
        #[cfg(target_arch = "x86_64")]
        if let Some((checked, unchecked)) = &lp.jit {
            let vm = Jit::with_code(
                &lp.program,
                &lp.helpers,
                checked.clone(),
                Some(unchecked.clone()),
            )
            .map_err(|e| crate::RuntimeError::Jit {
                prog: String::new(),
                error: e.to_string(),
            })?;
            return Ok(Runner {
                lp,
                vm: Vm::Jit(Box::new(vm)),
            });
        }
        let vm = Interpreter::new(&lp.program, &lp.helpers).map_err(|error| {
            crate::RuntimeError::Prepare {
                prog: String::new(),
                error,
            }
        })?;
        Ok(Runner {
            lp,
            vm: Vm::Interp(Box::new(vm)),
        })
    }

    /// Run once with r1..r5 = `args`; `regions` are the memory the arguments point to (the
    /// context, packet data).
    pub fn run(
        &mut self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        with_direct_regions(self.lp, regions, |all| self.run_all(args, all, env))
    }

    fn run_all(
        &mut self,
        args: [u64; 5],
        all: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        if self.lp.checked {
            return match &mut self.vm {
                Vm::Interp(vm) => vm.run(args, all, env),
                #[cfg(target_arch = "x86_64")]
                Vm::Jit(vm) => vm.run(args, all, env),
            };
        }
        // SAFETY: the verifier accepted this program for its type: every access it can make
        // is to its stack, the context and packet memory described by `regions` (built by the
        // program type's context builder to the layout the verifier checked against),
        // memory map helpers returned (valid for the run, see RunMaps), or the direct map
        // values whose maps the LoadedProg keeps alive.
        unsafe {
            match &mut self.vm {
                Vm::Interp(vm) => vm.run_unchecked(args, all, env),
                #[cfg(target_arch = "x86_64")]
                Vm::Jit(vm) => vm.run_unchecked(args, all, env),
            }
        }
    }
}

/// Calls `f` with `regions` followed by the program's direct map values (global data).
///
fn with_direct_regions<R>(
    lp: &LoadedProg,
    regions: &[Region<'_>],
    f: impl FnOnce(&[Region<'_>]) -> R,
) -> R {
    // The program's direct map values (global data) are registered in every run, checked
    // or not: the verifier proved the program's own loads and stores, but helpers that
    // follow a pointer the program passes (`%s` of a `.rodata` string in bpf_trace_printk,
    // bpf_snprintf, bpf_seq_printf) find the memory through the region table. The usual
    // case fits a stack array; programs without global data pay nothing.
    let direct = |d: &DirectValue| {
        // SAFETY: `d` is the value memory of an array map the LoadedProg holds; it is
        // valid for the map's life, longer than this run.
        unsafe {
            Region::from_raw_parts(RegionKind::MapValue, d.addr as *mut u8, d.len, d.writable)
        }
    };
    let n = regions.len() + lp.direct.len();
    let mut fixed: [Region<'_>; 8];
    let spilled: Vec<Region<'_>>;
    let all: &[Region<'_>] = match lp.direct.first() {
        None => regions,
        Some(first) if n <= 8 => {
            fixed = [direct(first); 8];
            for (slot, r) in fixed
                .iter_mut()
                .zip(regions.iter().copied().chain(lp.direct.iter().map(direct)))
            {
                *slot = r;
            }
            &fixed[..n]
        }
        Some(_) => {
            spilled = regions
                .iter()
                .copied()
                .chain(lp.direct.iter().map(direct))
                .collect();
            &spilled
        }
    };
    f(all)
}

#[cfg(target_arch = "x86_64")]
pub use bpfvfs_ebpf::jit::JitState;

/// No JIT here: nothing to hold.
#[cfg(not(target_arch = "x86_64"))]
pub struct JitState;

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The thread's JIT state (stack, region table, JIT context), shared by every program
    /// the thread runs unchecked; borrowed for one run, or for a hook's runs together.
    static JIT_STATE: std::cell::RefCell<JitState> = std::cell::RefCell::new(JitState::new());
}

/// Calls `f` with the thread's JIT state for several [`LoadedProg::run_in_state`] runs
/// (`None` where there is no JIT). A call nested in another on the same thread (a helper
/// that reaches a hook) gets a fresh state.
pub fn with_jit_state<R>(f: impl FnOnce(Option<&mut JitState>) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        JIT_STATE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut state) => f(Some(&mut state)),
            Err(_) => f(Some(&mut JitState::new())),
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        f(None)
    }
}
