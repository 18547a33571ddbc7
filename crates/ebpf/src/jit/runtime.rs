//! The run-time side of the JIT: the per-run context the generated code addresses through r12
//! ([`JitCtx`]), the Rust routines it calls (helper trampoline, slow memory check), and the
//! [`CallHook`] through which the interpreter's helper machinery runs callbacks in JIT code.

use super::Body;
use crate::helpers::{DirectHelper, HelperCtx, HelperError, HelperFn, NO_CALL_SITE};
use crate::interp::{CallHook, ExecError, RunState, STACK_FRAME_SIZE};
use crate::memory::{RawRegion, RegionKind};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Error kinds the generated code reports by itself (`JitCtx::err_info`, low 4 bits; bits 4..8
/// an access length, bits 8.. the pc).
pub(crate) const ERR_BUDGET: u64 = 1;
pub(crate) const ERR_CALL_DEPTH: u64 = 2;
pub(crate) const ERR_MISALIGNED: u64 = 3;
pub(crate) const ERR_BAD_CALL: u64 = 4;
/// A direct helper entry failed: the error is in `JitCtx::helper_error` (or the panic in
/// `panic`), the helper id in `err_val`.
pub(crate) const ERR_HELPER: u64 = 5;

/// Addresses below this are never taken for region pointers when a helper returns (no memory
/// is mapped in the first page), which keeps the post-helper cache refresh cheap for helpers
/// returning small integers.
const MIN_POINTER: u64 = 4096;

/// A one-region cache the checked code compares against inline: an access of `1 << i` bytes
/// at `a` hits if `start <= a <= rlimit[i]` (reads) or `start <= a <= wlimit[i]` (writes).
/// Empty: `start = u64::MAX`, limits 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegionCache {
    pub start: u64,
    pub rlimit: [u64; 4],
    pub wlimit: [u64; 4],
    /// Not read by generated code.
    pub end: u64,
    pub writable: bool,
}

impl RegionCache {
    pub const EMPTY: RegionCache = RegionCache {
        start: u64::MAX,
        rlimit: [0; 4],
        wlimit: [0; 4],
        end: 0,
        writable: false,
    };

    fn is_empty(&self) -> bool {
        self.start == u64::MAX
    }

    fn set(&mut self, r: RawRegion) {
        if r.start == 0 || r.end <= r.start {
            // `start - 1` below must not wrap; empty regions hold nothing.
            *self = Self::EMPTY;
            return;
        }
        let size = r.end - r.start;
        let never = r.start - 1;
        let mut rl = [never; 4];
        for (i, l) in rl.iter_mut().enumerate() {
            let len = 1u64 << i;
            if size >= len {
                *l = r.end - len;
            }
        }
        *self = RegionCache {
            start: r.start,
            rlimit: rl,
            wlimit: if r.writable() { rl } else { [never; 4] },
            end: r.end,
            writable: r.writable(),
        };
    }
}

/// What the generated code and the Rust routines share during a run. `repr(C)`: the code
/// addresses the fields at their `offset_of!` offsets from r12.
#[repr(C)]
pub(crate) struct JitCtx {
    // --- written and read at every direct helper call: first, so the code addresses them
    // with 8-bit displacements (`off::*8`) -----------------------------------------------------
    /// The back-edge budget: lives in r9 while JIT code runs, here across helper calls and
    /// callbacks. The one copy of a JIT run (`RunState::budget` is not used): set at the start
    /// of the run, it is spilled at every helper call and stored back by every return from
    /// the entry routine — the points where the interpreter syncs `RunState::budget` — so a
    /// callback continues with, and hands back, the caller's count. (The budget-free body of
    /// runs without a budget never writes it.)
    pub budget: u64,
    /// Call site of the helper being called: `id << 32 | pc` (static calls through the
    /// trampoline) or `pc` (`callx`, direct calls); r10.
    pub call_info: u64,
    pub call_r10: u64,
    // --- read by generated code ------------------------------------------------------------
    /// Lowest stack address.
    pub stack_lo: u64,
    /// `stack_hi - len` for accesses of 1, 2, 4, 8 bytes.
    pub stack_limit: [u64; 4],
    /// A local call from a frame whose r10 is at or below this would exceed
    /// `MAX_CALL_FRAMES` (`stack_lo + STACK_FRAME_SIZE`).
    pub depth_limit: u64,
    /// Last dynamic region (map value, ring-buffer record) an access or helper touched.
    pub dcache: RegionCache,
    /// Last caller-supplied region an access touched.
    pub fcache: RegionCache,
    // --- written and read by generated code ------------------------------------------------
    /// rsp right after the entry's prologue, for unwinding on errors.
    pub entry_rsp: u64,
    /// Trampoline calls: the function (0 for `callx`: look `call_id` up), the id of a `callx`.
    pub call_fn: u64,
    pub call_id: u64,
    /// Errors the code detects itself: kind | len << 4 | pc << 8, and an address or value.
    pub err_info: u64,
    pub err_val: u64,
    /// Entry state: r1-r5 and r10.
    pub args: [u64; 5],
    pub r10: u64,
    // --- Rust only -------------------------------------------------------------------------
    pub st: *mut RunState<'static, 'static>,
    /// The body running (its function table and entry routine).
    pub code: *const Body,
    pub stack_hi: u64,
    /// The caller's regions of this run (never removed while it lasts).
    pub fixed: Vec<RawRegion>,
    pub error: Option<ExecError>,
    /// What a direct entry's helper returned as `Err` (reported with `ERR_HELPER`).
    pub helper_error: Option<HelperError>,
    pub panic: Option<Box<dyn Any + Send>>,
}

impl JitCtx {
    pub fn new() -> Self {
        JitCtx {
            stack_lo: 0,
            stack_limit: [0; 4],
            depth_limit: 0,
            dcache: RegionCache::EMPTY,
            fcache: RegionCache::EMPTY,
            budget: 0,
            entry_rsp: 0,
            call_fn: 0,
            call_info: 0,
            call_id: 0,
            call_r10: 0,
            err_info: 0,
            err_val: 0,
            args: [0; 5],
            r10: 0,
            st: std::ptr::null_mut(),
            code: std::ptr::null(),
            stack_hi: 0,
            fixed: Vec::new(),
            error: None,
            helper_error: None,
            panic: None,
        }
    }

    /// The region caches and fixed regions of checked code, emptied (`reset` leaves them:
    /// unchecked code never reads them).
    #[inline]
    pub fn reset_caches(&mut self) {
        self.dcache = RegionCache::EMPTY;
        self.fcache = RegionCache::EMPTY;
        self.fixed.clear();
    }

    /// Prepares a run over the stack `[lo, lo + size)`; checked runs also `reset_caches`
    /// and add their regions to `fixed`.
    #[inline]
    pub fn reset(&mut self, lo: u64, size: u64) {
        self.stack_lo = lo;
        self.stack_hi = lo + size;
        for i in 0..4 {
            self.stack_limit[i] = self.stack_hi - (1 << i);
        }
        self.depth_limit = lo + STACK_FRAME_SIZE as u64;
        self.err_info = 0;
        // Runs leave these empty (`jit_hook` takes what a run stored); clear a stray one.
        if self.error.is_some() || self.helper_error.is_some() || self.panic.is_some() {
            self.error = None;
            self.helper_error = None;
            self.panic = None;
        }
    }
}

/// Byte offsets of the fields the generated code uses.
pub(crate) mod off {
    use super::{JitCtx, RegionCache};
    use std::mem::offset_of;
    pub const STACK_LO: i32 = offset_of!(JitCtx, stack_lo) as i32;
    pub const STACK_LIMIT: i32 = offset_of!(JitCtx, stack_limit) as i32;
    pub const DEPTH_LIMIT: i32 = offset_of!(JitCtx, depth_limit) as i32;
    pub const DCACHE: i32 = offset_of!(JitCtx, dcache) as i32;
    pub const FCACHE: i32 = offset_of!(JitCtx, fcache) as i32;
    pub const C_START: i32 = offset_of!(RegionCache, start) as i32;
    pub const C_RLIMIT: i32 = offset_of!(RegionCache, rlimit) as i32;
    pub const C_WLIMIT: i32 = offset_of!(RegionCache, wlimit) as i32;
    pub const BUDGET: i32 = offset_of!(JitCtx, budget) as i32;
    pub const ENTRY_RSP: i32 = offset_of!(JitCtx, entry_rsp) as i32;
    pub const CALL_FN: i32 = offset_of!(JitCtx, call_fn) as i32;
    pub const CALL_INFO: i32 = offset_of!(JitCtx, call_info) as i32;
    pub const CALL_ID: i32 = offset_of!(JitCtx, call_id) as i32;
    pub const CALL_R10: i32 = offset_of!(JitCtx, call_r10) as i32;
    pub const ERR_INFO: i32 = offset_of!(JitCtx, err_info) as i32;
    pub const ERR_VAL: i32 = offset_of!(JitCtx, err_val) as i32;
    pub const ARGS: i32 = offset_of!(JitCtx, args) as i32;
    pub const R10: i32 = offset_of!(JitCtx, r10) as i32;

    const fn disp8(o: usize) -> i8 {
        assert!(o < 128, "field out of 8-bit displacement range");
        o as i8
    }
    /// The direct call site's fields, as 8-bit displacements (`[BYTE r12 + ..]`).
    pub const BUDGET8: i8 = disp8(offset_of!(JitCtx, budget));
    pub const CALL_INFO8: i8 = disp8(offset_of!(JitCtx, call_info));
    pub const CALL_R108: i8 = disp8(offset_of!(JitCtx, call_r10));
}

/// What the helper trampoline returns to the generated code: r0 in rax, failure flag in rdx
/// (a two-integer `repr(C)` struct is returned in rax:rdx under the System V ABI).
#[repr(C)]
pub(crate) struct HelperRet {
    pub value: u64,
    pub failed: u64,
}

/// Called by the generated code for `call N` and `callx` of a helper number: r1-r5 in the
/// argument registers, the context in r9 (6th argument); the call site is described by
/// `ctx.call_*` (static calls carry the helper's function, resolved at compile time), the
/// budget is in `ctx.budget`. On failure the error (or panic payload) is left in the context
/// and the code unwinds.
///
/// # Safety
/// `ctx` must be the context of a run in progress (its `st` valid), and a nonzero `call_fn`
/// a [`HelperFn`] (the compiler only embeds those).
pub(crate) unsafe extern "sysv64" fn jit_helper(
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
    ctx: *mut JitCtx,
) -> HelperRet {
    // Raw-pointer field accesses only: a callback run re-enters this context.
    // SAFETY: `ctx` is the live context (caller's contract); the generated code wrote the
    // call-site fields just before calling.
    let (func, info, r10, hi) = unsafe {
        (
            (*ctx).call_fn,
            (*ctx).call_info,
            (*ctx).call_r10,
            (*ctx).stack_hi,
        )
    };
    let pc = info as u32 as usize;
    let fail = HelperRet {
        value: 0,
        failed: 1,
    };
    // SAFETY: `st` points at the RunState of the run in progress, installed by `jit_hook` from
    // the `&mut RunState` it was given; nothing else uses it while this call lasts.
    let st = unsafe { &mut *(*ctx).st };
    let (f, id) = if func != 0 {
        // SAFETY: the caller's contract: a nonzero `call_fn` is a `HelperFn`.
        (
            unsafe { std::mem::transmute::<u64, HelperFn>(func) },
            info >> 32,
        )
    } else {
        // SAFETY: as above.
        let id = unsafe { (*ctx).call_id };
        match st.helpers.get(id) {
            Some(h) => (h.func, id),
            None => {
                // SAFETY: as above.
                unsafe { (*ctx).error = Some(ExecError::UnknownHelper { pc, id }) };
                return fail;
            }
        }
    };
    let depth = ((hi - r10) / STACK_FRAME_SIZE as u64) as usize;
    let res = catch_unwind(AssertUnwindSafe(|| {
        let mut hc = HelperCtx::new(st, depth, pc);
        f(&mut hc, [a1, a2, a3, a4, a5])
    }));
    // SAFETY: as above; the helper (and any callback run) has finished with the context.
    unsafe {
        match res {
            Ok(Ok(v)) => {
                if st.checked {
                    refresh_dcache(ctx, st, v);
                }
                HelperRet {
                    value: v,
                    failed: 0,
                }
            }
            Ok(Err(error)) => {
                (*ctx).error = Some(ExecError::Helper { pc, id, error });
                fail
            }
            Err(payload) => {
                (*ctx).panic = Some(payload);
                fail
            }
        }
    }
}

/// The direct entry of helper `H` ([`DirectHelper`]) for code of one mode (`CHECKED`), `TRACK`
/// = register helper-handed memory in unchecked runs: called by the generated code with r1-r5
/// in the argument registers (r{ARGS+1}-r5 undefined) and the context in r9, after it stored
/// the budget, r10 and the pc (`call_info`) in the context. Runs `H::call` in the
/// [`HelperCtx`] the trampoline builds (with the mode a constant, so the helper's
/// `is_checked` branches fold); an `Err` or a panic is left in the context and reported as
/// failed (rdx != 0), and the code unwinds with `ERR_HELPER`. What only errors need is out
/// of line, so the unchecked success path is the helper's body and a few loads.
///
/// # Safety
/// `ctx` must be the context of a run in progress (its `st` valid, `st.checked == CHECKED`),
/// with the call-site fields written as above; `TRACK == false` only for unchecked code whose
/// helpers all have `USES_REGIONS == false`.
pub(crate) unsafe extern "sysv64" fn direct_entry<
    H: DirectHelper,
    const CHECKED: bool,
    const TRACK: bool,
>(
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
    ctx: *mut JitCtx,
) -> HelperRet {
    // Only the first ARGS registers hold anything meaningful (the constant folds this away).
    let n = H::ARGS as usize;
    let a = [a1, a2, a3, a4, a5];
    let a = std::array::from_fn(|i| if i < n { a[i] } else { 0 });
    // Raw-pointer field accesses only: a callback run re-enters this context.
    // SAFETY: `ctx` is the live context and `st` the RunState of the run in progress (see
    // `jit_helper`); the generated code wrote the call-site fields just before calling.
    let st = unsafe { &mut *(*ctx).st };
    // Unchecked code of a helper that needs no call site did not store one (see `direct_call`).
    let (pc, depth) = if CHECKED || H::USES_CALL_SITE {
        // SAFETY: as above.
        let (pc, r10, hi) = unsafe {
            (
                (*ctx).call_info as u32 as usize,
                (*ctx).call_r10,
                (*ctx).stack_hi,
            )
        };
        (pc, ((hi - r10) / STACK_FRAME_SIZE as u64) as usize)
    } else {
        (0, NO_CALL_SITE)
    };
    let res = catch_unwind(AssertUnwindSafe(|| {
        H::call(&mut HelperCtx::new_direct(st, depth, pc, CHECKED, TRACK), a)
    }));
    // Every arm moves its payload out, so nothing is left to drop on the success path.
    match res {
        Ok(Ok(v)) => {
            if CHECKED {
                // SAFETY: as above; the helper (and any callback run) has finished.
                unsafe { refresh_dcache(ctx, st, v) };
            }
            HelperRet {
                value: v,
                failed: 0,
            }
        }
        // SAFETY: as above.
        Ok(Err(error)) => unsafe { direct_failed(ctx, Ok(error)) },
        // SAFETY: as above.
        Err(payload) => unsafe { direct_failed(ctx, Err(payload)) },
    }
}

/// A direct entry's helper returned an error or panicked: keeps it for `jit_hook`.
///
/// # Safety
/// `ctx` is the live context, no helper running.
#[cold]
#[inline(never)]
unsafe fn direct_failed(
    ctx: *mut JitCtx,
    failure: Result<HelperError, Box<dyn Any + Send>>,
) -> HelperRet {
    // SAFETY: caller's contract.
    unsafe {
        match failure {
            Ok(error) => (*ctx).helper_error = Some(error),
            Err(payload) => (*ctx).panic = Some(payload),
        }
    }
    HelperRet {
        value: 0,
        failed: 1,
    }
}

/// After a helper, in checked runs: a pointer `r0` into a dynamic region (the map value a
/// lookup just returned) makes that region the cached one; otherwise the cached region stays
/// if it is still registered (the helper may have removed it: `bpf_ringbuf_submit`).
///
/// # Safety
/// `ctx` is the live context.
unsafe fn refresh_dcache(ctx: *mut JitCtx, st: &RunState<'_, '_>, r0: u64) {
    // SAFETY: caller's contract.
    let (d, fixed) = unsafe { (&mut (*ctx).dcache, &(*ctx).fixed) };
    if r0 >= MIN_POINTER {
        if let Some(r) = st.mem.region_of(r0) {
            if r.kind() != RegionKind::Stack && !fixed.contains(&r) {
                d.set(r);
                return;
            }
        }
    }
    if !d.is_empty() && !st.mem.allows(d.start, d.end - d.start, d.writable) {
        *d = RegionCache::EMPTY;
    }
}

/// The checked code's slow path: `[addr, addr + len)` missed the stack and both caches.
/// `info` = pc << 3 | log2(len) << 1 | write. Returns 1 if the access is allowed (and caches
/// its region), else records the interpreter's error and returns 0.
///
/// # Safety
/// `ctx` must be the context of a run in progress.
pub(crate) unsafe extern "sysv64" fn jit_mem_slow(ctx: *mut JitCtx, addr: u64, info: u64) -> u64 {
    let write = info & 1 != 0;
    let len = 1u64 << ((info >> 1) & 3);
    // SAFETY: caller's contract: `st` is valid, and no helper is running (the generated code
    // is), so nothing else holds a reference into the context.
    unsafe {
        let st = &*(*ctx).st;
        if !st.mem.allows(addr, len, write) {
            (*ctx).error = Some(ExecError::MemoryAccess {
                pc: (info >> 3) as usize,
                addr,
                len,
                write,
            });
            return 0;
        }
        let fits = |r: &RawRegion| r.contains(addr, len) && (!write || r.writable());
        if let Some(r) = (*ctx).fixed.iter().find(|r| fits(r)) {
            (*ctx).fcache.set(*r);
        } else if let Some(r) = st.mem.region_of(addr) {
            if r.kind() != RegionKind::Stack && fits(&r) {
                (*ctx).dcache.set(r);
            }
        }
        1
    }
}

/// The [`CallHook`] of JIT runs: runs the function at `entry` in JIT code, for the main
/// program and for callbacks helpers make.
///
/// # Safety
/// `data` is the `JitCtx` of the run in progress, whose `code` is the program's compiled code
/// in the mode `st.checked` says; `entry` is a function entry of the program.
#[inline]
pub(crate) unsafe fn jit_hook(
    data: *mut (),
    st: &mut RunState<'_, '_>,
    entry: usize,
    args: [u64; 5],
    depth: usize,
) -> Result<u64, ExecError> {
    let ctx = data.cast::<JitCtx>();
    // SAFETY: the caller's contract; `code` outlives the run (the Jit borrows it).
    unsafe {
        let code = &*(*ctx).code;
        let target = code.function_address(entry);
        debug_assert!(target != 0, "{entry} is not a function entry");
        let saved_st = (*ctx).st;
        // Nested helper calls derive their `&mut RunState` from the one we were given.
        (*ctx).st = (st as *mut RunState<'_, '_>).cast();
        (*ctx).args = args;
        (*ctx).r10 = st.stack_top - (depth * STACK_FRAME_SIZE) as u64;
        // A callback invocation costs one unit of the budget, as in the interpreter (see
        // `RunState::call`); `ctx.budget` is the run's current count here.
        if depth > 0 {
            if (*ctx).budget == 0 {
                (*ctx).st = saved_st;
                return Err(ExecError::Budget { pc: entry });
            }
            (*ctx).budget -= 1;
        }
        let r0 = (code.entry_fn())(ctx, target);
        (*ctx).st = saved_st;
        if let Some(p) = (*ctx).panic.take() {
            std::panic::resume_unwind(p);
        }
        let info = (*ctx).err_info;
        if info != 0 {
            (*ctx).err_info = 0;
            let pc = (info >> 8) as usize;
            let val = (*ctx).err_val;
            return Err(match info & 15 {
                ERR_BUDGET => ExecError::Budget { pc },
                ERR_CALL_DEPTH => ExecError::CallDepth { pc },
                ERR_MISALIGNED => ExecError::Misaligned {
                    pc,
                    addr: val,
                    len: (info >> 4) & 15,
                },
                ERR_BAD_CALL => ExecError::InvalidCallTarget { pc, target: val },
                ERR_HELPER => ExecError::Helper {
                    pc,
                    id: val,
                    error: (*ctx)
                        .helper_error
                        .take()
                        .unwrap_or_else(|| HelperError::Other("lost helper error".into())),
                },
                _ => ExecError::InvalidInstruction { pc },
            });
        }
        if let Some(e) = (*ctx).error.take() {
            return Err(e);
        }
        Ok(r0)
    }
}

/// The hook for a run whose context is `ctx`.
pub(crate) fn hook(ctx: *mut JitCtx) -> CallHook {
    CallHook {
        run: jit_hook,
        data: ctx.cast(),
    }
}
