//! The x86-64 JIT: [`Program`]s compiled to native code, with the interpreter's semantics,
//! modes, errors and helper machinery.
//!
//! # Why dynasm-rs
//! The backend is [dynasm-rs] (the `dynasm` macro and its `dynasmrt` runtime): instructions
//! are written in assembler syntax inside Rust and encoded at compile time of *this* crate,
//! with registers, immediates and displacements filled in at JIT time, dynamic labels and
//! relocations for jumps and calls, and an `ExecutableBuffer` that is never writable and
//! executable at once (W^X: code is assembled into writable memory, then remapped read+exec).
//! That is what a BPF JIT needs — a fixed, small instruction selection per BPF instruction,
//! like the kernel's `arch/x86/net/bpf_jit_comp.c` — without writing and testing an x86
//! encoder ourselves (REX/ModRM/SIB corner cases such as r12/r13 bases are dynasm's job).
//! An own emitter would save a dependency but re-create exactly that encoder; Cranelift
//! would bring an optimizing compiler (register allocation, SSA construction per program,
//! milliseconds of compile time and a large dependency) that a one-to-one translation of
//! verified bytecode does not profit from: BPF registers map directly to x86 registers, as in
//! the kernel. The one cost of dynasm seen here: a memory operand with a register chosen at
//! JIT time is always encoded with a SIB byte, and with a 32-bit displacement unless the
//! code asks for an 8-bit one (`[BYTE ...]`, done for loads and stores whose offset fits: 5
//! bytes instead of 3-4), which costs code size, not µops. (dynasm-rs is MPL-2.0: file-level copyleft on its
//! own sources, used unmodified here, compatible with this crate's MIT OR Apache-2.0.)
//!
//! # Register mapping (the kernel's)
//! | BPF | r0 | r1 | r2 | r3 | r4 | r5 | r6 | r7 | r8 | r9 | r10 |
//! |-----|----|----|----|----|----|----|----|----|----|----|-----|
//! | x86 | rax | rdi | rsi | rdx | rcx | r8 | rbx | r13 | r14 | r15 | rbp |
//!
//! r12 holds the run's context (`runtime::JitCtx`: stack bounds, region caches, budget,
//! error slots), r9 the back-edge budget, r10/r11 are scratch. r1-r5 are the System V argument
//! registers, so a helper call passes them as they are (the context goes in r9, the 6th
//! argument). Shifts by a register move the count through cl (saving rcx in r11); division
//! saves rax/rdx around `div`/`idiv` and handles x / 0, x % 0 and INT_MIN / -1 before x86
//! could fault.
//!
//! # Execution model
//! Like the interpreter's: the stack is a separate 8 × 512-byte buffer (r10 = rbp points into
//! it), registered as a region, so checked-mode accesses to it and stack contents are the
//! same in both engines. Every BPF function, the main program included, is entered with a
//! native `call` and `exit` is a `ret`; a local call pushes r6-r9, moves rbp down 512 bytes
//! and checks the depth against the stack bottom (`CallDepth`, as the interpreter). Helpers
//! are called directly or through a trampoline (see "Helper calls" below), in both cases
//! with the same [`crate::HelperCtx`] the interpreter builds; a static `call N` is bound to
//! the helper when the code is compiled (a [`JitProgram`] belongs to a [`Helpers`] table),
//! `callx` looks its number up at run time. Helpers that call back into the program
//! (`bpf_loop`) re-enter JIT code through the interpreter's [`RunState`](crate::interp) hook.
//! Unlike Linux (where the verifier makes them unreadable), r1-r5 survive helper calls, as
//! in the interpreter. Errors unwind to the entry by resetting rsp, and come back as the
//! interpreter's [`ExecError`]s with the same pcs; a panicking helper is caught in Rust and
//! resumed after the JIT code has been left.
//!
//! # Helper calls
//! Two paths, same semantics (same function, same `HelperCtx`, same errors):
//! - **Direct** (static `call N` of a helper registered with
//!   [`Helpers::register_direct`], a [`crate::helpers::DirectHelper`]; the map helpers and the
//!   cheap generic ones in [`Helpers::standard`]): the code calls
//!   `runtime::direct_entry::<H, CHECKED, TRACK>`, an `extern "sysv64" fn(r1..r5, ctx) ->
//!   (r0, failed)` instantiated per helper and per mode, into which `H::call` is inlined with
//!   the mode a constant — for a trivial helper in unchecked code the whole entry is the
//!   helper's own instructions (nine for the benchmarks' lookup), as with rbpf's plain `fn`
//!   helpers. The call site stores the budget, r10 and the pc in the context (depth and pc
//!   for `HelperCtx`), passes the context as the sixth argument, calls through a word after
//!   the code (`call [rip+slot]`), and checks rdx: a failed helper left its `HelperError` (or
//!   panic payload) in the context, out of band, and a cold stub unwinds with the pc and id.
//!   Around the call it saves only the r1-r5 the program may still read: a backward liveness
//!   pass over the whole program (`liveness.rs`; conservative at local calls, `callx` and
//!   subprogram exits) with the helper's declared argument count (`DirectHelper::ARGS`), so
//!   the usual "set up arguments, call" saves nothing. Function bodies keep rsp ≡ 0 (mod 16),
//!   so such a call needs no stack adjustment either. In unchecked code whose helpers are
//!   all direct and none looks up registered memory (`DirectHelper::USES_REGIONS`; no
//!   `callx`), map values are not registered at all (`TRACK = false`): nothing in the run
//!   could observe the registration, which was most of what a lookup cost besides the map.
//! - **Trampoline** (every other helper, and `callx` of a helper number): a shared routine
//!   saves r1-r5 and calls `runtime::jit_helper`, which finds the [`crate::HelperFn`] and
//!   calls it.
//!
//! Checked code refreshes its region cache after either (the value a lookup returned).
//!
//! # Modes
//! *Checked* code ([`Jit::run`]) validates every load, store and atomic that the loader did
//! not prove to stay inside the current stack frame (`FLAG_STACK_SAFE`): inline compares
//! against the last dynamic region (map value) and the last caller region used, then the
//! stack; a miss calls the interpreter's region check (`Memory::allows`) in Rust, which
//! refills the cache or records the same `MemoryAccess` error the interpreter reports.
//! Atomics also check alignment (`Misaligned`). *Unchecked* code ([`Jit::run_unchecked`]) has
//! plain `mov`s. Both count taken backward jumps and backward local calls against the budget
//! ([`Jit::set_budget`]) exactly as the interpreter does, so unverified programs cannot hang.
//! A run without a budget (unlimited, which can never run out) uses a second body of the
//! same code without the counting, compiled on first use ([`JitProgram`]): loops then cost
//! what their instructions cost, and r9 need not survive helper calls.
//!
//! # What the unchecked mode needs from a verifier
//! The unchecked code trusts the program exactly where the unchecked interpreter does, and in
//! a few places more, because x86 instructions replace Rust operations:
//! - every load, store and atomic is inside: the current frame or a caller's frame (through a
//!   pointer derived from r10), a region the caller passed to the run, or memory a helper
//!   handed out (map values, ring-buffer records) while it is still live; writes only to
//!   writable memory; no access through a pointer after `bpf_ringbuf_submit/discard`;
//! - atomics are naturally aligned (x86 would execute a misaligned `lock` op as a slow split
//!   lock, but the interpreter's `AtomicU64::from_ptr` requires alignment);
//! - helper arguments satisfy each helper's contract (pointers with their sizes, map
//!   handles, callbacks that are `lddw rX, subprog` values), since helpers skip their checks
//!   in unchecked runs;
//! - everything the loader already enforces stays as it is: jump and call targets inside the
//!   program and on instruction starts, a terminal `exit`/`ja`, r10 never written.
//!
//! Not needed from it, because both modes enforce them at run time: the call depth
//! (`CallDepth`), the back-edge budget, division by zero and `INT_MIN / -1` (Linux semantics,
//! never a fault), shift amounts (masked), `callx` targets (checked against the function
//! table), unknown helper numbers (`UnknownHelper`). Reading a register the program never
//! wrote is harmless (registers start at 0, r1-r5 survive calls), unlike in Linux.
//!
//! [dynasm-rs]: https://github.com/CensoredUsername/dynasm-rs

mod codegen;
pub mod equiv;
mod liveness;
mod runtime;

pub(crate) use runtime::direct_entry;

use crate::conformance::Engine;
use crate::helpers::{Env, Helpers};
use crate::interp::{
    with_mem_args, ExecError, Frame, LoadError, Program, RunState, MAX_CALL_FRAMES, STACK_SIZE,
};
use crate::memory::{Memory, Region};
use dynasmrt::ExecutableBuffer;
use runtime::JitCtx;
use std::sync::{Arc, OnceLock};

/// x86-64 register numbers of BPF r0-r10.
pub(crate) const BPF_REGS: [u8; 11] = [0, 7, 6, 2, 1, 8, 3, 13, 14, 15, 5];

/// Which kind of code to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Memory accesses validated against the run's regions.
    Checked,
    /// Plain memory accesses, for verified programs.
    Unchecked,
}

/// Why a program could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("jit: {0}")]
    Codegen(String),
}

/// An array map's values, as JIT code may address them directly: `max_entries` values
/// `stride` bytes apart from `base`. Unchecked code compiled with the layouts of the arrays
/// a program uses ([`JitProgram::compile_with_arrays`]) computes `bpf_map_lookup_elem` on
/// them inline, without a call — as Linux's JIT does for array maps (`map_gen_lookup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayLayout {
    base: usize,
    max_entries: u32,
    stride: u32,
}

impl ArrayLayout {
    /// `None` if `stride` does not fit the generated code's immediate (2^31).
    ///
    /// # Safety
    /// `base .. base + max_entries * stride` must stay allocated, at this address, for as
    /// long as code compiled with this layout exists, and be what the runs' [`MapAccess`]
    /// returns for the map's handle (value `i` at `base + i * stride`).
    ///
    /// [`MapAccess`]: crate::MapAccess
    pub unsafe fn new(base: *mut u8, max_entries: u32, stride: usize) -> Option<ArrayLayout> {
        Some(ArrayLayout {
            base: base.expose_provenance(),
            max_entries,
            stride: u32::try_from(stride)
                .ok()
                .filter(|&s| s <= i32::MAX as u32)?,
        })
    }

    pub(crate) fn base(&self) -> usize {
        self.base
    }
    pub(crate) fn max_entries(&self) -> u32 {
        self.max_entries
    }
    pub(crate) fn stride(&self) -> u32 {
        self.stride
    }
}

/// Native code of one program in one [`Mode`], its static helper calls bound to the
/// functions of a [`Helpers`] table. Immutable and independent of memory and threads: compile
/// once, run from many threads (each with its own [`Jit`]).
///
/// Holds two bodies: the code that counts back-edges against a budget, compiled up front, and
/// the same code without the counting, compiled on the first run without a budget
/// ([`Jit::set_budget`]`(None)`, the default): an unlimited budget can never run out, so
/// counting it would only cost a register spill around every helper call and two
/// instructions per loop iteration.
pub struct JitProgram {
    bounded: Body,
    unbounded: OnceLock<Body>,
    mode: Mode,
    /// Whether runs need the region table: checked code, and unchecked code whose helpers
    /// may look up registered memory (`codegen::untracked`). Unchecked code without such
    /// helpers (or without helper calls) skips it: nothing in the run would consult it.
    uses_regions: bool,
    /// Fingerprint of the program's ops, to refuse code of another program.
    fingerprint: u64,
    /// The helper functions each static call was bound to (id, address, direct entry; 0 =
    /// not in the table / none).
    bound: Vec<(u64, usize, usize)>,
    /// Map lookups compiled inline: (pc of the call, the array's layout).
    inline_lookups: Vec<(usize, ArrayLayout)>,
}

/// One compiled body of a [`JitProgram`].
pub(crate) struct Body {
    buf: ExecutableBuffer,
    /// Address of the entry routine in `buf`.
    entry_addr: usize,
    /// `table[pc]`: address of the function starting at `pc`, or 0. Read by `callx`.
    table: Box<[u64]>,
}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("mode", &self.mode)
            .field("slots", &self.bounded.table.len())
            .field("code_bytes", &self.bounded.buf.len())
            .finish()
    }
}

type EntryFn = unsafe extern "sysv64" fn(*mut JitCtx, u64) -> u64;

impl Body {
    fn compile(
        prog: &Program,
        helpers: &Helpers,
        mode: Mode,
        bounded: bool,
        inline_lookups: &[(usize, ArrayLayout)],
    ) -> Result<Self, JitError> {
        let mut table = vec![0u64; prog.len()].into_boxed_slice();
        let c = codegen::compile(
            prog,
            helpers,
            mode == Mode::Checked,
            bounded,
            table.as_ptr(),
            inline_lookups,
        )
        .map_err(JitError::Codegen)?;
        for &(pc, o) in &c.functions {
            table[pc] = c.buf.ptr(o) as u64;
        }
        let entry_addr = c.buf.ptr(c.entry) as usize;
        Ok(Body {
            buf: c.buf,
            entry_addr,
            table,
        })
    }

    #[inline]
    fn function_address(&self, pc: usize) -> u64 {
        self.table.get(pc).copied().unwrap_or(0)
    }

    #[inline]
    fn entry_fn(&self) -> EntryFn {
        // SAFETY: `entry_addr` is the address of the entry routine inside `buf`, which
        // generates a System V function of this signature; `buf` is executable and lives as
        // long as self.
        unsafe { std::mem::transmute::<usize, EntryFn>(self.entry_addr) }
    }
}

impl JitProgram {
    /// Compiles `prog`, binding its static helper calls to `helpers`' functions (a call of a
    /// helper `helpers` lacks fails at run time, as `UnknownHelper`; [`Jit::new`] refuses such
    /// programs up front).
    pub fn compile(prog: &Program, helpers: &Helpers, mode: Mode) -> Result<Self, JitError> {
        Self::compile_with_arrays(prog, helpers, mode, &|_| None)
    }

    /// [`JitProgram::compile`], with `arrays(handle)` giving the layout of the array maps
    /// the program may look up in: unchecked code whose helpers register no memory computes
    /// those lookups inline ([`ArrayLayout`]). Checked code always calls the helper (it
    /// registers the value for its checks).
    pub fn compile_with_arrays(
        prog: &Program,
        helpers: &Helpers,
        mode: Mode,
        arrays: &dyn Fn(u64) -> Option<ArrayLayout>,
    ) -> Result<Self, JitError> {
        let inline_lookups: Vec<(usize, ArrayLayout)> = match mode {
            Mode::Checked => Vec::new(),
            Mode::Unchecked => codegen::constant_map_lookups(prog, helpers)
                .into_iter()
                .filter_map(|(pc, handle)| Some((pc, arrays(handle)?)))
                .collect(),
        };
        Ok(JitProgram {
            bounded: Body::compile(prog, helpers, mode, true, &inline_lookups)?,
            unbounded: OnceLock::new(),
            mode,
            uses_regions: mode == Mode::Checked || !codegen::untracked(prog, helpers),
            fingerprint: fingerprint(prog),
            bound: bound_helpers(prog, helpers),
            inline_lookups,
        })
    }

    /// How many `bpf_map_lookup_elem` calls were compiled inline.
    pub fn inlined_lookups(&self) -> usize {
        self.inline_lookups.len()
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Size of the generated code in bytes (the body that counts back-edges).
    pub fn code_size(&self) -> usize {
        self.bounded.buf.len()
    }

    /// The generated code (for disassembly): the body that counts back-edges.
    pub fn code(&self) -> &[u8] {
        &self.bounded.buf
    }

    /// The body without back-edge counting, if a run without a budget compiled it.
    pub fn unbounded_code(&self) -> Option<&[u8]> {
        self.unbounded.get().map(|b| &b.buf[..])
    }

    /// Runs this code in `state` (a thread's [`JitState`], shared by the programs it runs):
    /// r1-r5 = `args`, `regions` the memory the program may touch besides its stack, no
    /// back-edge budget. Returns r0. What [`Jit::run_unchecked`] does, without a [`Jit`]
    /// per program.
    ///
    /// # Safety
    /// `prog` and `helpers` must be the program and helper table this code was compiled from
    /// (or a table binding the same functions to the same ids: what [`Jit::with_code`]
    /// checks, checked once by the caller instead of per run); and, for unchecked code, the
    /// contract of [`Jit::run_unchecked`].
    #[inline]
    pub unsafe fn run_in(
        &self,
        state: &mut JitState,
        prog: &Program,
        helpers: &Helpers,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        debug_assert_eq!(self.fingerprint, fingerprint(prog));
        state.run(prog, helpers, self, None, args, regions, env)
    }

    /// The body for a run with or without a budget. `prog` and `helpers` must be the ones
    /// this code was compiled from (or bind the same functions), as [`Jit::with_code`]
    /// checks; if compiling the budget-free body fails, the counting one serves.
    fn body(&self, bounded: bool, prog: &Program, helpers: &Helpers) -> &Body {
        if bounded {
            return &self.bounded;
        }
        if let Some(b) = self.unbounded.get() {
            return b;
        }
        match Body::compile(prog, helpers, self.mode, false, &self.inline_lookups) {
            Ok(b) => self.unbounded.get_or_init(|| b),
            Err(_) => &self.bounded,
        }
    }
}

/// The function each static helper call of `prog` resolves to in `helpers`.
fn bound_helpers(prog: &Program, helpers: &Helpers) -> Vec<(u64, usize, usize)> {
    prog.helper_calls()
        .iter()
        .map(|&(_, id)| {
            let id = id as u32 as u64;
            let h = helpers.get(id);
            (
                id,
                h.map_or(0, |h| h.func as usize),
                h.and_then(|h| h.direct).map_or(0, |d| d.checked),
            )
        })
        .collect()
}

/// A hash of everything code generation reads from `prog`.
fn fingerprint(prog: &Program) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (pc, op) in prog.ops().iter().enumerate() {
        (op.code, op.dst, op.src, op.flags, op.off, op.imm).hash(&mut h);
        prog.is_function_entry(pc).hash(&mut h);
    }
    h.finish()
}

/// Runs a program's JIT code, with the same interface as [`crate::Interpreter`]: owns the stack
/// (8 frames × 512 bytes, zeroed at creation, not cleared between runs) and the region set.
/// One per thread.
pub struct Jit<'p> {
    prog: &'p Program,
    helpers: &'p Helpers,
    checked: Arc<JitProgram>,
    unchecked: OnceLock<Arc<JitProgram>>,
    budget: Option<u64>,
    pub(crate) state: JitState,
}

/// What a run of JIT code needs besides the code: the stack (8 frames × 512 bytes, zeroed
/// at creation, not cleared between runs), the region set, the call frames and the
/// generated code's context. Belongs to no program: a thread keeps one and runs any
/// program's code in it ([`JitProgram::run_unchecked_in`]), as kernel programs run on the
/// current thread's stack — no per-program pool, no reference counting per run.
pub struct JitState {
    pub(crate) stack: Box<[u64]>,
    mem: Memory,
    frames: [Frame; MAX_CALL_FRAMES],
    ctx: Box<JitCtx>,
}

// SAFETY: the raw pointers in the context are only set and used during a run, which holds
// `&mut self`; everything else is owned.
unsafe impl Send for JitState {}

impl Default for JitState {
    fn default() -> Self {
        JitState::new()
    }
}

impl std::fmt::Debug for JitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitState").finish_non_exhaustive()
    }
}

impl JitState {
    pub fn new() -> Self {
        JitState {
            stack: vec![0u64; STACK_SIZE / 8].into_boxed_slice(),
            mem: Memory::default(),
            frames: [Frame::default(); MAX_CALL_FRAMES],
            ctx: Box::new(JitCtx::new()),
        }
    }

    /// One run of `code` (compiled from `prog` with `helpers`' functions).
    #[allow(clippy::too_many_arguments)] // the run's inputs, passed through as they are
    fn run(
        &mut self,
        prog: &Program,
        helpers: &Helpers,
        code: &JitProgram,
        budget: Option<u64>,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        let lo = self.stack.as_mut_ptr().expose_provenance() as u64;
        let checked = code.mode == Mode::Checked;
        // Unchecked code consults no region table of its own; helpers may (see
        // `JitProgram::uses_regions`). When none can, the table is left as the last run
        // left it: empty (cleared below after every run that filled it).
        if code.uses_regions {
            self.mem.reset(lo, STACK_SIZE as u64, regions);
        }
        self.ctx.reset(lo, STACK_SIZE as u64);
        if checked {
            self.ctx.reset_caches();
            self.ctx.fixed.extend(regions.iter().map(|r| r.raw));
        }
        self.ctx.code = code.body(budget.is_some(), prog, helpers);
        self.ctx.budget = budget.unwrap_or(u64::MAX);
        let ctx: *mut JitCtx = &mut *self.ctx;
        let mut st = RunState {
            prog,
            helpers,
            mem: &mut self.mem,
            env,
            stack_top: lo + STACK_SIZE as u64,
            budget: budget.unwrap_or(u64::MAX),
            checked,
            frames: &mut self.frames,
            hook: Some(runtime::hook(ctx)),
        };
        // Enters the JIT code as the hook does for callbacks (which reach it through
        // `RunState::call`), without the indirection.
        // SAFETY: `ctx` is this run's context, set up above; `st` is its RunState.
        let res = unsafe { runtime::jit_hook(ctx.cast(), &mut st, 0, args, 0) };
        // Regions borrow caller memory only for this run.
        if code.uses_regions {
            self.mem.clear();
            self.ctx.fixed.clear();
        }
        self.ctx.st = std::ptr::null_mut();
        self.ctx.code = std::ptr::null();
        res
    }
}

// SAFETY: as JitState; everything else is shared immutable data (`Program`, `Helpers`,
// `JitProgram` are Sync).
unsafe impl Send for Jit<'_> {}

impl<'p> Jit<'p> {
    /// Compiles `prog` in the checked mode (the unchecked code is compiled on first use).
    /// Fails like [`crate::Interpreter::new`] if a static helper call names a helper the table
    /// does not have.
    pub fn new(prog: &'p Program, helpers: &'p Helpers) -> Result<Self, JitError> {
        Self::check_helpers(prog, helpers)?;
        let checked = Arc::new(JitProgram::compile(prog, helpers, Mode::Checked)?);
        Ok(Self::build(prog, helpers, checked, None))
    }

    /// Uses code compiled before (e.g. shared between threads). `checked` must be
    /// `prog`'s checked code and `unchecked`, if given, its unchecked code, both compiled with
    /// helpers that bind the same functions as `helpers`.
    pub fn with_code(
        prog: &'p Program,
        helpers: &'p Helpers,
        checked: Arc<JitProgram>,
        unchecked: Option<Arc<JitProgram>>,
    ) -> Result<Self, JitError> {
        Self::check_helpers(prog, helpers)?;
        let bad = |what: &str| {
            Err(JitError::Codegen(format!(
                "{what} code of another program or helper table"
            )))
        };
        let fp = fingerprint(prog);
        let bound = bound_helpers(prog, helpers);
        let fits = |c: &JitProgram| c.fingerprint == fp && c.bound == bound;
        if checked.mode != Mode::Checked || !fits(&checked) {
            return bad("checked");
        }
        if let Some(u) = &unchecked {
            if u.mode != Mode::Unchecked || !fits(u) {
                return bad("unchecked");
            }
        }
        Ok(Self::build(prog, helpers, checked, unchecked))
    }

    fn check_helpers(prog: &Program, helpers: &Helpers) -> Result<(), LoadError> {
        for &(pc, id) in prog.helper_calls() {
            if helpers.get(id as u32 as u64).is_none() {
                return Err(LoadError::UnknownHelper { pc, id });
            }
        }
        Ok(())
    }

    fn build(
        prog: &'p Program,
        helpers: &'p Helpers,
        checked: Arc<JitProgram>,
        unchecked: Option<Arc<JitProgram>>,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(u) = unchecked {
            let _ = cell.set(u);
        }
        Jit {
            prog,
            helpers,
            checked,
            unchecked: cell,
            budget: None,
            state: JitState::new(),
        }
    }

    pub fn program(&self) -> &'p Program {
        self.prog
    }

    /// The checked code.
    pub fn checked_code(&self) -> &Arc<JitProgram> {
        &self.checked
    }

    /// The unchecked code, compiled now if it was not yet.
    pub fn unchecked_code(&self) -> Result<&Arc<JitProgram>, JitError> {
        if let Some(u) = self.unchecked.get() {
            return Ok(u);
        }
        let u = Arc::new(JitProgram::compile(
            self.prog,
            self.helpers,
            Mode::Unchecked,
        )?);
        Ok(self.unchecked.get_or_init(|| u))
    }

    /// Limits how many backward jumps and backward local calls a run may take, as
    /// [`crate::Interpreter::set_budget`]; `None` (default) = unlimited.
    pub fn set_budget(&mut self, budget: Option<u64>) {
        self.budget = budget;
    }

    /// Checked run: r1-r5 = `args`, `regions` the memory the program may touch besides its
    /// stack. Returns r0.
    pub fn run(
        &mut self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        self.state.run(
            self.prog,
            self.helpers,
            &self.checked,
            self.budget,
            args,
            regions,
            env,
        )
    }

    /// Unchecked run: like [`Jit::run`], without memory checks. Compiles the unchecked code on
    /// first use (a compilation failure is reported as `InvalidInstruction { pc: 0 }`; call
    /// [`Jit::unchecked_code`] first to see it).
    ///
    /// # Safety
    /// As [`crate::Interpreter::run_unchecked`]: every memory access the program can make must
    /// be inside `regions`, the stack frame of the running function (or a caller's, through a
    /// pointer), or memory a helper handed out and that stays valid for the run, with atomics
    /// naturally aligned; helper arguments must satisfy the helpers' contracts. That is what a
    /// verifier establishes.
    pub unsafe fn run_unchecked(
        &mut self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        if self.unchecked_code().is_err() {
            return Err(ExecError::InvalidInstruction { pc: 0 });
        }
        let code = self.unchecked.get().expect("compiled just above");
        self.state.run(
            self.prog,
            self.helpers,
            code,
            self.budget,
            args,
            regions,
            env,
        )
    }

    /// Checked run in the conformance suite's convention: r1 = address of `mem`, r2 = its
    /// length (both 0 if empty), `mem` writable.
    pub fn run_mem(&mut self, mem: &mut [u8], env: &mut Env<'_>) -> Result<u64, ExecError> {
        with_mem_args(mem, |args, regions| self.run(args, regions, env))
    }
}

/// The JIT as a conformance-suite [`Engine`]: checked mode, [`Helpers::standard`], and the
/// interpreter engine's back-edge budget.
pub struct JitEngine {
    pub helpers: Helpers,
    pub budget: Option<u64>,
}

impl Default for JitEngine {
    fn default() -> Self {
        JitEngine {
            helpers: Helpers::standard(),
            budget: Some(100_000_000),
        }
    }
}

impl Engine for JitEngine {
    fn name(&self) -> &str {
        "jit"
    }

    fn run(&self, program: &[u8], mem: &mut [u8]) -> Result<u64, String> {
        let prog = Program::from_bytes(program).map_err(|e| format!("load: {e}"))?;
        let mut vm = Jit::new(&prog, &self.helpers).map_err(|e| format!("load: {e}"))?;
        vm.set_budget(self.budget);
        // 8-byte alignment for the memory, as the suite's atomics expect.
        let mut aligned = vec![0u64; mem.len().div_ceil(8)];
        let buf = &mut equiv::as_bytes_mut(&mut aligned)[..mem.len()];
        buf.copy_from_slice(mem);
        let mut env = Env::new();
        let r = vm.run_mem(buf, &mut env).map_err(|e| format!("run: {e}"));
        mem.copy_from_slice(buf);
        r
    }
}
