//! Differential checking: runs a program through the interpreter and the JIT on the same input
//! and compares everything observable — r0 or the error, the memory the program was given,
//! the stack, outside state (maps) and `bpf_trace_printk` output — in the checked mode and,
//! when that run succeeded, in the unchecked mode too (a successful checked run proves that
//! this input makes only valid accesses, and runs are deterministic here).
//!
//! [`compare`] is the general entry point (property tests use it with their own helpers and
//! maps); [`check_bytes`] takes raw program bytes and memory, for fuzz targets.
//!
//! Every run uses the same stack buffer (lent to each engine in turn and zeroed before each
//! run) and the same memory buffer, at the same addresses, so whatever a program computes from
//! an address — r0 = r10, `w0 = w10`, a stored stack pointer, a fault address — is the same
//! number in both engines. (Each engine owning its stack, as in normal use, made such programs
//! differ by the distance between the two stacks; the fuzz target found `w0 = w10`.) Results
//! are also kept as offsets from the stack (`Observed::result`) for readable reports.

use super::{Jit, JitError, Mode};
use crate::helpers::{Clock, Env, HelperError, Helpers, MapAccess, TaskInfo};
use crate::interp::{ExecError, Interpreter, Program, STACK_SIZE};
use crate::memory::{Region, RegionKind};
use std::fmt;

/// Views `u64`s as bytes (for 8-aligned byte buffers).
pub fn as_bytes_mut(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same bytes.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 8) }
}

fn fixed_clock(c: Clock) -> u64 {
    match c {
        Clock::Monotonic => 1_000_000_007,
        Clock::Boot => 2_000_000_011,
    }
}

/// An environment whose helpers answer the same on every run: fixed clocks, PRNG seed, task
/// and cpu.
pub fn deterministic_env<'a>() -> Env<'a> {
    let mut env = Env::new();
    env.clock = fixed_clock;
    env.prandom = 0x2545_f491_4f6c_dd1d;
    env.task = TaskInfo {
        pid: 4242,
        tgid: 4240,
        uid: 1000,
        gid: 100,
        comm: [0; 16],
        cpu: Some(1),
    }
    .with_comm("equiv");
    env
}

/// One input to compare the engines on.
pub struct Case<'a> {
    pub program: &'a Program,
    /// Must be deterministic given [`deterministic_env`] and `reset` (the unchecked runs rely
    /// on repeating the checked run's accesses).
    pub helpers: &'a Helpers,
    /// The memory region: r1 = its address, r2 = its length (0 and 0 if empty), writable,
    /// 8-byte aligned, as in the conformance suite.
    pub mem: &'a [u8],
    pub budget: Option<u64>,
    pub maps: Option<&'a dyn MapAccess>,
    /// Called before every run: puts outside state (maps) back to its initial value.
    pub reset: &'a dyn Fn(),
    /// Outside state compared after every run (e.g. map contents).
    pub snapshot: &'a dyn Fn() -> Vec<u8>,
    /// Also compare the unchecked modes when the checked run succeeded.
    pub unchecked: bool,
}

/// What one run left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// r0 or the error, as the engine returned it.
    pub raw_result: Result<u64, ExecError>,
    /// The same with values near the engine's stack made offsets from it (tagged).
    pub result: Result<u64, ExecError>,
    pub mem: Vec<u8>,
    pub stack: Vec<u8>,
    pub outside: Vec<u8>,
    pub trace: Vec<Vec<u8>>,
}

impl Observed {
    /// Same outcome: everything equal, the result either as returned or, where it refers to
    /// the engines' stacks, relative to them. (Comparing raw results first keeps an address
    /// in the shared memory that happens to lie near one engine's stack from being
    /// misread as a stack address.)
    pub fn agrees_with(&self, other: &Observed) -> bool {
        (self.raw_result == other.raw_result || self.result == other.result)
            && self.mem == other.mem
            && self.stack == other.stack
            && self.outside == other.outside
            && self.trace == other.trace
    }
}

/// The engines disagreed.
#[derive(Debug)]
pub struct Mismatch {
    pub mode: Mode,
    pub interp: Observed,
    pub jit: Observed,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, j) = (&self.interp, &self.jit);
        write!(f, "{:?} mode: ", self.mode)?;
        if i.raw_result != j.raw_result && i.result != j.result {
            return write!(
                f,
                "interpreter {:x?}, jit {:x?}",
                i.raw_result, j.raw_result
            );
        }
        let first = |a: &[u8], b: &[u8]| (0..a.len().max(b.len())).find(|&k| a.get(k) != b.get(k));
        if let Some(k) = first(&i.mem, &j.mem) {
            return write!(
                f,
                "memory differs at byte {k}: {:?} vs {:?}",
                i.mem.get(k),
                j.mem.get(k)
            );
        }
        if let Some(k) = first(&i.stack, &j.stack) {
            return write!(
                f,
                "stack differs at r10-{}: {:?} vs {:?}",
                STACK_SIZE - k,
                i.stack.get(k),
                j.stack.get(k)
            );
        }
        if let Some(k) = first(&i.outside, &j.outside) {
            return write!(
                f,
                "outside state differs at byte {k}: {:02x?} vs {:02x?}",
                i.outside, j.outside
            );
        }
        write!(f, "trace output differs: {:?} vs {:?}", i.trace, j.trace)
    }
}

/// Why [`compare`] failed.
#[derive(Debug)]
pub enum EquivError {
    /// The JIT could not compile a program the interpreter loads.
    Compile(JitError),
    /// One engine refused the program (unknown helper) and the other did not.
    Load(String),
    Mismatch(Box<Mismatch>),
}

impl fmt::Display for EquivError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EquivError::Compile(e) => write!(f, "jit compile: {e}"),
            EquivError::Load(e) => write!(f, "load: {e}"),
            EquivError::Mismatch(m) => m.fmt(f),
        }
    }
}

impl std::error::Error for EquivError {}

/// How the engines agreed.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// The (common) checked-mode observation.
    pub checked: Observed,
    /// Whether the unchecked modes were run and compared too.
    pub unchecked_compared: bool,
}

const STACK_CANON: u64 = 0x57ac_0000_0000_0000;
const WINDOW: u64 = 1 << 16;

/// `v` as an offset from the stack at `lo` (tagged) if it points near it, else `v`.
fn canon(v: u64, lo: u64) -> u64 {
    let rel = v.wrapping_sub(lo);
    if rel.wrapping_add(WINDOW) < 2 * WINDOW + STACK_SIZE as u64 {
        STACK_CANON.wrapping_add(rel)
    } else {
        v
    }
}

fn canon_helper_error(e: HelperError, lo: u64) -> HelperError {
    match e {
        HelperError::Fault { addr, len, write } => HelperError::Fault {
            addr: canon(addr, lo),
            len,
            write,
        },
        HelperError::Callback(inner) => HelperError::Callback(Box::new(canon_error(*inner, lo))),
        other => other,
    }
}

fn canon_error(e: ExecError, lo: u64) -> ExecError {
    match e {
        ExecError::MemoryAccess {
            pc,
            addr,
            len,
            write,
        } => ExecError::MemoryAccess {
            pc,
            addr: canon(addr, lo),
            len,
            write,
        },
        ExecError::Misaligned { pc, addr, len } => ExecError::Misaligned {
            pc,
            addr: canon(addr, lo),
            len,
        },
        ExecError::InvalidCallTarget { pc, target } => ExecError::InvalidCallTarget {
            pc,
            target: canon(target, lo),
        },
        ExecError::Helper { pc, id, error } => ExecError::Helper {
            pc,
            id,
            error: canon_helper_error(error, lo),
        },
        other => other,
    }
}

fn stack_bytes(stack: &[u64]) -> Vec<u8> {
    stack.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

enum Vm<'p> {
    Interp(Interpreter<'p>),
    Jit(Jit<'p>),
}

impl Vm<'_> {
    fn stack(&self) -> &[u64] {
        match self {
            Vm::Interp(v) => &v.stack,
            Vm::Jit(v) => &v.state.stack,
        }
    }

    fn stack_mut(&mut self) -> &mut Box<[u64]> {
        match self {
            Vm::Interp(v) => &mut v.stack,
            Vm::Jit(v) => &mut v.state.stack,
        }
    }

    fn run(
        &mut self,
        checked: bool,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        match (self, checked) {
            (Vm::Interp(v), true) => v.run(args, regions, env),
            (Vm::Jit(v), true) => v.run(args, regions, env),
            // SAFETY: `compare` runs the unchecked modes only on an input whose checked run
            // succeeded in both engines, i.e. made only valid accesses and helper calls; runs
            // are deterministic (fresh VM, same memory, fixed environment, outside state
            // reset, deterministic helpers per `Case`), so the unchecked run makes the same.
            (Vm::Interp(v), false) => unsafe { v.run_unchecked(args, regions, env) },
            // SAFETY: as for the interpreter just above.
            (Vm::Jit(v), false) => unsafe { v.run_unchecked(args, regions, env) },
        }
    }
}

/// Runs `vm` once on `case` (memory copied into `buf`, at a fixed address), on `stack`,
/// zeroed first and swapped into the engine for the run (both engines read their stack's
/// address at the start of each run).
fn observe(
    vm: &mut Vm<'_>,
    checked: bool,
    case: &Case<'_>,
    buf: &mut [u64],
    stack: &mut Box<[u64]>,
) -> Observed {
    stack.fill(0);
    std::mem::swap(vm.stack_mut(), stack);
    let observed = observe_on_own_stack(vm, checked, case, buf);
    std::mem::swap(vm.stack_mut(), stack);
    observed
}

fn observe_on_own_stack(
    vm: &mut Vm<'_>,
    checked: bool,
    case: &Case<'_>,
    buf: &mut [u64],
) -> Observed {
    (case.reset)();
    let bytes = &mut as_bytes_mut(buf)[..case.mem.len()];
    bytes.copy_from_slice(case.mem);
    let mut trace: Vec<Vec<u8>> = Vec::new();
    let mut sink = |m: &[u8]| trace.push(m.to_vec());
    let mut env = deterministic_env();
    env.maps = case.maps;
    env.trace = Some(&mut sink);
    let lo = vm.stack().as_ptr() as u64;
    let result = if bytes.is_empty() {
        vm.run(checked, [0; 5], &[], &mut env)
    } else {
        let len = bytes.len() as u64;
        let region = Region::writable(RegionKind::Mem, bytes);
        vm.run(checked, [region.addr(), len, 0, 0, 0], &[region], &mut env)
    };
    Observed {
        result: result
            .clone()
            .map(|v| canon(v, lo))
            .map_err(|e| canon_error(e, lo)),
        raw_result: result,
        mem: as_bytes_mut(buf)[..case.mem.len()].to_vec(),
        stack: stack_bytes(vm.stack()),
        outside: (case.snapshot)(),
        trace,
    }
}

/// Runs `case` through the interpreter and the JIT (fresh VMs, one zeroed stack for every run)
/// and compares what they leave behind.
pub fn compare(case: &Case<'_>) -> Result<Agreement, EquivError> {
    let interp = Interpreter::new(case.program, case.helpers);
    let jit = Jit::new(case.program, case.helpers);
    let (mut iv, mut jv) = match (interp, jit) {
        (Ok(i), Ok(j)) => (i, j),
        (Err(a), Err(JitError::Load(b))) if a == b => {
            return Ok(Agreement {
                checked: Observed {
                    raw_result: Err(ExecError::InvalidInstruction { pc: 0 }),
                    result: Err(ExecError::InvalidInstruction { pc: 0 }),
                    mem: case.mem.to_vec(),
                    stack: Vec::new(),
                    outside: Vec::new(),
                    trace: Vec::new(),
                },
                unchecked_compared: false,
            })
        }
        (_, Err(JitError::Codegen(e))) => return Err(EquivError::Compile(JitError::Codegen(e))),
        (a, b) => {
            return Err(EquivError::Load(format!(
                "interpreter {:?}, jit {:?}",
                a.err(),
                b.err()
            )))
        }
    };
    iv.set_budget(case.budget);
    jv.set_budget(case.budget);
    let mut iv = Vm::Interp(iv);
    let mut jv = Vm::Jit(jv);
    let mut buf = vec![0u64; case.mem.len().div_ceil(8)];
    let mut stack = vec![0u64; STACK_SIZE / 8].into_boxed_slice();
    let i = observe(&mut iv, true, case, &mut buf, &mut stack);
    let j = observe(&mut jv, true, case, &mut buf, &mut stack);
    if !i.agrees_with(&j) {
        return Err(EquivError::Mismatch(Box::new(Mismatch {
            mode: Mode::Checked,
            interp: i,
            jit: j,
        })));
    }
    let mut unchecked_compared = false;
    if case.unchecked && i.result.is_ok() {
        // Fresh VMs: no state of the checked runs (frames, budget) carries over.
        let mut iv = Vm::Interp(
            Interpreter::new(case.program, case.helpers)
                .map_err(|e| EquivError::Load(e.to_string()))?,
        );
        let mut jv = Vm::Jit(Jit::new(case.program, case.helpers).map_err(EquivError::Compile)?);
        if let (Vm::Interp(a), Vm::Jit(b)) = (&mut iv, &mut jv) {
            a.set_budget(case.budget);
            b.set_budget(case.budget);
        }
        let iu = observe(&mut iv, false, case, &mut buf, &mut stack);
        let ju = observe(&mut jv, false, case, &mut buf, &mut stack);
        if !iu.agrees_with(&ju) {
            return Err(EquivError::Mismatch(Box::new(Mismatch {
                mode: Mode::Unchecked,
                interp: iu,
                jit: ju,
            })));
        }
        unchecked_compared = true;
    }
    Ok(Agreement {
        checked: i,
        unchecked_compared,
    })
}

/// [`compare`] for raw program bytes and memory, with [`Helpers::standard`], no maps, a
/// budget of `budget` back-edges, and the unchecked modes compared when the checked run
/// succeeds. Programs that do not load are fine (`Ok`). For fuzz targets.
pub fn check_bytes(program: &[u8], mem: &[u8], budget: u64) -> Result<(), EquivError> {
    let prog = match Program::from_bytes(program) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    let helpers = Helpers::standard();
    let case = Case {
        program: &prog,
        helpers: &helpers,
        mem,
        budget: Some(budget),
        maps: None,
        reset: &|| {},
        snapshot: &Vec::new,
        unchecked: true,
    };
    compare(&case).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::Insn;

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        Insn::slots_to_bytes(insns)
    }

    /// Found by the `equiv` fuzz target: values computed from r10 (here its low half, and a
    /// stack pointer stored on the stack) differed by the distance between the engines' own
    /// stacks, which no canonicalization of r0 could undo.
    #[test]
    fn values_derived_from_the_stack_address_agree() {
        // w0 = w10; exit
        let low_half = bytes(&[Insn::new(0xbc, 0, 10, 0, 0), Insn::new(0x95, 0, 0, 0, 0)]);
        check_bytes(&low_half, &[], 16).unwrap();
        // *(u64 *)(r10 - 8) = r10; r0 = 0; exit
        let stored = bytes(&[
            Insn::new(0x7b, 10, 10, -8, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ]);
        check_bytes(&stored, &[], 16).unwrap();
    }

    /// Regression (equiv fuzz target): a `bpf_loop` of 2^23 iterations stops at the budget in
    /// both engines, with the same error (it used to run all of them, four times).
    #[test]
    fn bpf_loop_stops_at_the_budget_in_both_engines() {
        let prog = Insn::slots_to_bytes(&crate::interp::tests::bpf_loop_slots(1 << 23));
        check_bytes(&prog, &[], 16).unwrap();
    }
}
