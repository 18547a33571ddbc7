//! Code generation: one pass over the lowered [`Op`]s, emitting x86-64 with dynasm-rs.
//!
//! Layout of the generated buffer: shared routines (entry/epilogue, unwind, helper call, slow
//! memory check, error exits), then the program, one dynamic label per slot (loop heads on 32
//! bytes), then the words holding direct helper entries' addresses (`call [rip+slot]`), then
//! cold stubs (slow-path calls and error exits of individual instructions) so the hot path
//! falls through.
//!
//! Register use, beside the BPF mapping of [`super::BPF_REGS`]: r12 = [`JitCtx`] (callee-saved,
//! survives helper calls), r9 = back-edge budget (spilled to the context around Rust calls;
//! unused in the budget-free body),
//! r10 and r11 = scratch. Stack discipline: in every BPF function body rsp ≡ 0 (mod 16), so a
//! direct helper call with an even number of saved registers (usually none) calls Rust
//! without adjusting rsp; a local call pushes r6-r9 (rbx, r13, r14, r15) and 8 bytes of
//! padding before `call`, so bodies keep that invariant, and the shared routines align to 16
//! before calling Rust.

// dynasm's expansion of dynamic registers (`Rq(r)` with `r: u8`) converts `u8` into `u8`.
#![allow(clippy::useless_conversion)]

use super::liveness::{self, RegSet};
use super::runtime::{
    jit_helper, jit_mem_slow, off, JitCtx, ERR_BAD_CALL, ERR_BUDGET, ERR_CALL_DEPTH, ERR_HELPER,
    ERR_MISALIGNED,
};
use super::ArrayLayout;
use super::BPF_REGS;
use crate::helpers::{DirectEntry, Helpers};
use crate::interp::{
    Code, Op, Program, FLAG_BACKWARD, FLAG_STACK_SAFE, FUNC_TOKEN_TAG, STACK_FRAME_SIZE,
};
use dynasmrt::x64::Assembler;
use dynasmrt::{dynasm, AssemblyOffset, DynamicLabel, DynasmApi, DynasmLabelApi, ExecutableBuffer};

macro_rules! asm {
    ($a:expr; $($t:tt)*) => {
        dynasm!($a ; .arch x64 ; $($t)*)
    };
}

// `Gen::alu_imm` operations.
const ADD: u8 = 0;
const SUB: u8 = 1;
const AND: u8 = 2;
const OR: u8 = 3;
const XOR: u8 = 4;
const CMP: u8 = 5;
const IMUL: u8 = 6;

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;

/// The output of [`compile`].
pub(crate) struct Compiled {
    pub buf: ExecutableBuffer,
    pub entry: AssemblyOffset,
    /// `(pc, offset)` of every function entry.
    pub functions: Vec<(usize, AssemblyOffset)>,
}

/// x86 condition codes used by jumps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cc {
    E,
    Ne,
    A,
    Ae,
    B,
    Be,
    G,
    Ge,
    L,
    Le,
}

impl Cc {
    fn inverse(self) -> Cc {
        match self {
            Cc::E => Cc::Ne,
            Cc::Ne => Cc::E,
            Cc::A => Cc::Be,
            Cc::Ae => Cc::B,
            Cc::B => Cc::Ae,
            Cc::Be => Cc::A,
            Cc::G => Cc::Le,
            Cc::Ge => Cc::L,
            Cc::L => Cc::Ge,
            Cc::Le => Cc::G,
        }
    }
}

/// Out-of-line code of one instruction, emitted after the program.
enum Stub {
    /// Call the slow memory check with `info` in r11 (address in r10), then resume.
    MemSlow {
        at: DynamicLabel,
        resume: DynamicLabel,
        info: u64,
    },
    /// Report an error: `info` in r11; `val_reg`, if any, copied to r10 (the value reported).
    Fail {
        at: DynamicLabel,
        info: u64,
        val_reg: Option<u8>,
    },
    /// Report an error: `info` in r11, `val` in r10.
    FailWith {
        at: DynamicLabel,
        info: u64,
        val: u64,
    },
}

struct Gen<'a> {
    a: Assembler,
    helpers: &'a Helpers,
    ops: &'a [Op],
    labels: Vec<DynamicLabel>,
    stubs: Vec<Stub>,
    checked: bool,
    /// Count back-edges (and callback entries' charge, in the hook) against the budget in r9.
    /// The budget-free body leaves r9 alone and never writes `ctx.budget`.
    bounded: bool,
    /// Address of the function table (`table[pc]` = native address of function `pc`, or 0).
    table: u64,
    /// Words after the stubs holding direct helper entries' addresses (`call [slot]`).
    slots: Vec<(u64, DynamicLabel)>,
    /// Registers live after each instruction (computed when the program calls a direct
    /// helper; empty otherwise).
    live_out: Vec<RegSet>,
    /// Unchecked code whose helpers are all direct and never look up registered memory:
    /// direct entries that do not register map values.
    untracked: bool,
    /// Slots control can reach other than from the slot before: jump targets and function
    /// entries.
    entered: Vec<bool>,
    /// `bpf_map_lookup_elem` calls compiled inline: (pc of the call, the array's layout).
    inline_lookups: &'a [(usize, ArrayLayout)],
}

/// Compiles `prog` in the checked or unchecked mode, static helper calls resolved in
/// `helpers`. `table` is the address of the
/// `prog.len()`-entry function table the caller fills in after finalisation (callx reads it).
pub(crate) fn compile(
    prog: &Program,
    helpers: &Helpers,
    checked: bool,
    bounded: bool,
    table: *const u64,
    inline_lookups: &[(usize, ArrayLayout)],
) -> Result<Compiled, String> {
    let a = Assembler::new().map_err(|e| format!("cannot allocate executable memory: {e}"))?;
    let mut g = Gen {
        a,
        helpers,
        ops: prog.ops(),
        labels: Vec::new(),
        stubs: Vec::new(),
        checked,
        bounded,
        table: table as u64,
        live_out: Vec::new(),
        untracked: false,
        slots: Vec::new(),
        entered: entered(prog),
        inline_lookups: if checked { &[] } else { inline_lookups },
    };
    let direct = |id: u64| helpers.get(id).and_then(|h| h.direct);
    g.untracked = !checked && untracked(prog, helpers);
    if g.ops
        .iter()
        .any(|o| o.code == Code::Call && direct(o.imm).is_some())
    {
        g.live_out = liveness::live_out(g.ops, |id| match direct(id) {
            Some(d) => liveness::first_args(d.args),
            None => liveness::ARGS,
        });
    }
    g.labels = (0..g.ops.len()).map(|_| g.a.new_dynamic_label()).collect();
    let entry = g.routines();
    // Loop heads (targets of backward jumps) start on 32 bytes: the padding (long NOPs) runs
    // once per loop entry, and a loop body starts a decoded-uop window instead of straddling
    // one — a 4-instruction loop of 19 bytes aligned to 16 crossed a 32-byte boundary and
    // ran at 2 cycles per iteration instead of 1 (loop_sum, docs/benchmarks.md).
    let mut loop_head = vec![false; g.ops.len()];
    for op in g.ops {
        if op.flags & FLAG_BACKWARD != 0 && op.code != Code::CallLocal {
            loop_head[op.off as usize] = true;
        }
    }
    for (pc, &head) in loop_head.iter().enumerate() {
        if head {
            g.align_with_nops(32);
        }
        let l = g.labels[pc];
        asm!(g.a; =>l);
        g.op(pc);
    }
    g.emit_stubs();
    let functions = (0..prog.len())
        .filter(|&pc| prog.is_function_entry(pc))
        .map(|pc| {
            g.a.labels()
                .resolve_dynamic(g.labels[pc])
                .map(|o| (pc, o))
                .map_err(|e| format!("{e:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    g.a.commit().map_err(|e| format!("assembler: {e:?}"))?;
    let buf =
        g.a.finalize()
            .map_err(|_| "assembler: cannot finalize".to_string())?;
    Ok(Compiled {
        buf,
        entry,
        functions,
    })
}

/// The `bpf_map_lookup_elem` calls of `prog` whose map is a constant: `(pc, handle)` for each
/// `call` of the standard lookup whose r1 was last set by `lddw r1, handle` in the same
/// straight-line run of instructions (no jump target, call or other write of r1 between), as
/// clang emits every map access. Only for unchecked code that registers no memory
/// (`untracked`): an inlined lookup registers no value.
pub(crate) fn constant_map_lookups(prog: &Program, helpers: &Helpers) -> Vec<(usize, u64)> {
    if !untracked(prog, helpers) || !helpers.is_standard_map_lookup(1) {
        return Vec::new();
    }
    let ops = prog.ops();
    let entered = entered(prog);
    let mut sites = Vec::new();
    for (pc, op) in ops.iter().enumerate() {
        if op.code != Code::Call || op.imm != 1 || entered[pc] {
            continue;
        }
        let mut at = pc;
        while at > 0 {
            at -= 1;
            let o = &ops[at];
            if o.code == Code::LdImm64 && o.dst == 1 {
                sites.push((pc, o.imm));
                break;
            }
            // Stop at anything that may set r1, transfer control, or be entered from elsewhere.
            let plain = matches!(
                o.code,
                Code::LdImm64Hi
                    | Code::St8
                    | Code::St16
                    | Code::St32
                    | Code::St64
                    | Code::Stx8
                    | Code::Stx16
                    | Code::Stx32
                    | Code::Stx64
            ) || (writes_dst_only(o.code) && o.dst != 1);
            if !plain || entered[at] {
                break;
            }
        }
    }
    sites
}

/// Slots control can reach other than from the slot before: jump targets and function
/// entries.
fn entered(prog: &Program) -> Vec<bool> {
    let ops = prog.ops();
    let mut entered = vec![false; ops.len()];
    for (pc, op) in ops.iter().enumerate() {
        let jump = cond_of(op.code).is_some() || op.code == Code::Ja;
        if (jump || op.code == Code::CallLocal) && (op.off as usize) < entered.len() {
            entered[op.off as usize] = true;
        }
        if prog.is_function_entry(pc) {
            entered[pc] = true;
        }
    }
    entered
}

/// ALU, move and load instructions: they write their destination register and nothing else.
fn writes_dst_only(c: Code) -> bool {
    use Code::*;
    matches!(
        c,
        Mov64I
            | Mov32I
            | LdImm64
            | Mov64R
            | Mov32R
            | MovSx64B
            | MovSx64H
            | MovSx64W
            | MovSx32B
            | MovSx32H
            | Neg64
            | Neg32
            | Le16
            | Le32
            | Le64
            | Be16
            | Be32
            | Be64
            | Swap16
            | Swap32
            | Swap64
            | Add64I
            | Sub64I
            | Mul64I
            | Div64I
            | SDiv64I
            | Mod64I
            | SMod64I
            | Or64I
            | And64I
            | Xor64I
            | Lsh64I
            | Rsh64I
            | Arsh64I
            | Add32I
            | Sub32I
            | Mul32I
            | Div32I
            | SDiv32I
            | Mod32I
            | SMod32I
            | Or32I
            | And32I
            | Xor32I
            | Lsh32I
            | Rsh32I
            | Arsh32I
            | Add64R
            | Sub64R
            | Mul64R
            | Div64R
            | SDiv64R
            | Mod64R
            | SMod64R
            | Or64R
            | And64R
            | Xor64R
            | Lsh64R
            | Rsh64R
            | Arsh64R
            | Add32R
            | Sub32R
            | Mul32R
            | Div32R
            | SDiv32R
            | Mod32R
            | SMod32R
            | Or32R
            | And32R
            | Xor32R
            | Lsh32R
            | Rsh32R
            | Arsh32R
            | Ldx8
            | Ldx16
            | Ldx32
            | Ldx64
            | Ldxs8
            | Ldxs16
            | Ldxs32
    )
}

/// Whether unchecked code of `prog` can run without a region table: every helper it calls
/// is direct and looks up no registered memory (`DirectHelper::USES_REGIONS`), and it has no
/// `callx` (whose target could be any helper).
pub(crate) fn untracked(prog: &Program, helpers: &Helpers) -> bool {
    prog.ops().iter().all(|o| match o.code {
        Code::CallX => false,
        Code::Call => helpers
            .get(o.imm)
            .and_then(|h| h.direct)
            .is_some_and(|d| !d.uses_regions),
        _ => true,
    })
}

fn fail_info(kind: u64, pc: usize, len: u64) -> u64 {
    kind | len << 4 | (pc as u64) << 8
}

impl Gen<'_> {
    /// The shared routines; returns the entry's offset.
    fn routines(&mut self) -> AssemblyOffset {
        let bounded = self.bounded;
        let a = &mut self.a;
        let entry = a.offset();
        // entry(ctx: rdi, target: rsi) -> r0, System V.
        asm!(a
            ; push rbp
            ; push rbx
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; mov r12, rdi
            // Nested entries (callbacks) keep the outer unwind point.
            ; push QWORD [r12 + off::ENTRY_RSP]
            ; mov [r12 + off::ENTRY_RSP], rsp
            ; mov r11, rsi
            ; mov rbp, [r12 + off::R10]
            ; mov r9, [r12 + off::BUDGET]
            ; mov rdi, [r12 + off::ARGS]
            ; mov rsi, [r12 + off::ARGS + 8]
            ; mov rdx, [r12 + off::ARGS + 16]
            ; mov rcx, [r12 + off::ARGS + 24]
            ; mov r8, [r12 + off::ARGS + 32]
            ; xor eax, eax
            ; xor ebx, ebx
            ; xor r13d, r13d
            ; xor r14d, r14d
            ; xor r15d, r15d
            // rsp ≡ 0 (mod 16) here (8 for the return address + 7 pushes): 8 more, so the
            // body runs with rsp ≡ 0 after the `call`.
            ; sub rsp, 8
            ; call r11
            ; add rsp, 8
        );
        // The budget-free body's r9 is not a count (direct calls clobber it).
        if bounded {
            asm!(a; mov [r12 + off::BUDGET], r9);
        }
        asm!(a
            ; ->epilogue:
            ; pop QWORD [r12 + off::ENTRY_RSP]
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbx
            ; pop rbp
            ; ret

            // Errors: the context holds what happened; drop every BPF frame.
            ; ->unwind:
            ; mov rsp, [r12 + off::ENTRY_RSP]
            ; xor eax, eax
            ; jmp ->epilogue

            // r11 = kind | len << 4 | pc << 8, r10 = address or value.
            ; ->fail:
            ; mov [r12 + off::ERR_INFO], r11
            ; mov [r12 + off::ERR_VAL], r10
            ; jmp ->unwind

            // Helper call: r10 = the helper function (0: look up `ctx.call_id`),
            // r11 = id << 32 | pc; r1-r5 preserved (as the interpreter does), r0 = result.
            ; ->helper_call:
        );
        if bounded {
            asm!(a; mov [r12 + off::BUDGET], r9);
        }
        asm!(a
            ; mov [r12 + off::CALL_R10], rbp
            ; mov [r12 + off::CALL_FN], r10
            ; mov [r12 + off::CALL_INFO], r11
            ; push rdi
            ; push rsi
            ; push rdx
            ; push rcx
            ; push r8
            // rsp ≡ 0 (mod 16): body 0, return address 8, five pushes 40.
            ; mov r9, r12
            ; mov rax, QWORD jit_helper as *const () as i64
            ; call rax
            ; mov r11, rdx
            ; pop r8
            ; pop rcx
            ; pop rdx
            ; pop rsi
            ; pop rdi
            ; test r11, r11
            ; jnz ->unwind
        );
        if bounded {
            asm!(a; mov r9, [r12 + off::BUDGET]);
        }
        asm!(a
            ; ret

            // Slow memory check: r10 = address, r11 = pc << 3 | log2(len) << 1 | write.
            // Preserves every BPF register and r10.
            ; ->mem_slow:
            ; push rax
            ; push rdi
            ; push rsi
            ; push rdx
            ; push rcx
            ; push r8
            ; push r9
            ; push r10
            ; mov rdi, r12
            ; mov rsi, r10
            ; mov rdx, r11
            // Body 0, stub's return address 8, eight pushes 64: 8 more.
            ; sub rsp, 8
            ; mov rax, QWORD jit_mem_slow as *const () as i64
            ; call rax
            ; add rsp, 8
            ; mov r11, rax
            ; pop r10
            ; pop r9
            ; pop r8
            ; pop rcx
            ; pop rdx
            ; pop rsi
            ; pop rdi
            ; pop rax
            ; test r11, r11
            ; jz ->unwind
            ; ret
        );
        entry
    }

    /// Does ZF after the code of slot `pc - 1` say whether BPF register `r` (its low 32 bits
    /// unless `w64`) is zero, for a `jeq`/`jne` against 0 at `pc` to use without a `test`?
    /// Only if control reaches `pc` from `pc - 1` alone and that slot is an ALU operation on
    /// `r` whose x86 code ends in an instruction setting ZF from the result (add, sub, and,
    /// or, xor, neg; not mov, shifts, multiplication, division; not the immediate forms that
    /// emit nothing). A 32-bit operation zero-extends, so it serves 64-bit tests too.
    fn zf_of(&self, pc: usize, r: u8, w64: bool) -> bool {
        use Code::*;
        if pc == 0 || self.entered[pc] {
            return false;
        }
        let p = self.ops[pc - 1];
        if p.dst != r {
            return false;
        }
        match p.code {
            Add64I | Sub64I | Or64I | Xor64I => w64 && p.imm != 0,
            Add64R | Sub64R | And64I | And64R | Or64R | Xor64R | Neg64 => w64,
            Add32I | Add32R | Sub32I | Sub32R | And32I | And32R | Or32I | Or32R | Xor32I
            | Xor32R | Neg32 => true,
            _ => false,
        }
    }

    /// Pads with the recommended multi-byte NOPs (at most 9 bytes each) to a multiple of `to`.
    fn align_with_nops(&mut self, to: usize) {
        const NOPS: [&[u8]; 9] = [
            &[0x90],
            &[0x66, 0x90],
            &[0x0f, 0x1f, 0x00],
            &[0x0f, 0x1f, 0x40, 0x00],
            &[0x0f, 0x1f, 0x44, 0x00, 0x00],
            &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
            &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
            &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
            &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        ];
        let mut pad = (to - self.a.offset().0 % to) % to;
        while pad > 0 {
            let n = pad.min(NOPS.len());
            self.a.extend(NOPS[n - 1].iter().copied());
            pad -= n;
        }
    }

    /// The label of the word holding `addr` (one per address).
    fn entry_slot(&mut self, addr: usize) -> DynamicLabel {
        let addr = addr as u64;
        if let Some(&(_, l)) = self.slots.iter().find(|(a, _)| *a == addr) {
            return l;
        }
        let l = self.a.new_dynamic_label();
        self.slots.push((addr, l));
        l
    }

    fn emit_stubs(&mut self) {
        let stubs = std::mem::take(&mut self.stubs);
        let slots = std::mem::take(&mut self.slots);
        let a = &mut self.a;
        // Data words first (read-only like the rest of the buffer), 8-byte aligned.
        a.align(8, 0xcc);
        for (addr, l) in slots {
            asm!(a; =>l; .u64 addr);
        }
        for s in stubs {
            match s {
                Stub::MemSlow { at, resume, info } => {
                    asm!(a
                        ; =>at
                        ; mov r11, QWORD info as i64
                        ; call ->mem_slow
                        ; jmp =>resume
                    );
                }
                Stub::FailWith { at, info, val } => {
                    asm!(a
                        ; =>at
                        ; mov r10, QWORD val as i64
                        ; mov r11, QWORD info as i64
                        ; jmp ->fail
                    );
                }
                Stub::Fail { at, info, val_reg } => {
                    asm!(a; =>at);
                    if let Some(r) = val_reg {
                        asm!(a; mov r10, Rq(r));
                    }
                    asm!(a
                        ; mov r11, QWORD info as i64
                        ; jmp ->fail
                    );
                }
            }
        }
    }

    fn fail_stub(&mut self, info: u64, val_reg: Option<u8>) -> DynamicLabel {
        let at = self.a.new_dynamic_label();
        self.stubs.push(Stub::Fail { at, info, val_reg });
        at
    }

    fn jcc(&mut self, cc: Cc, l: DynamicLabel) {
        let a = &mut self.a;
        match cc {
            Cc::E => asm!(a; je =>l),
            Cc::Ne => asm!(a; jne =>l),
            Cc::A => asm!(a; ja =>l),
            Cc::Ae => asm!(a; jae =>l),
            Cc::B => asm!(a; jb =>l),
            Cc::Be => asm!(a; jbe =>l),
            Cc::G => asm!(a; jg =>l),
            Cc::Ge => asm!(a; jge =>l),
            Cc::L => asm!(a; jl =>l),
            Cc::Le => asm!(a; jle =>l),
        }
    }

    /// Charges one back-edge to the budget (r9); `Budget { pc }` when it is exhausted.
    fn charge_budget(&mut self, pc: usize) {
        if !self.bounded {
            return;
        }
        let stub = self.fail_stub(fail_info(ERR_BUDGET, pc, 0), None);
        asm!(self.a
            ; sub r9, 1
            ; jb =>stub
        );
    }

    /// A jump (taken when `cc` holds, or always) from `pc` to `op.off`.
    fn branch(&mut self, pc: usize, op: &Op, cc: Option<Cc>) {
        let target = self.labels[op.off as usize];
        if op.flags & FLAG_BACKWARD == 0 || !self.bounded {
            match cc {
                Some(cc) => self.jcc(cc, target),
                None if op.off as usize == pc + 1 => {}
                None => asm!(self.a; jmp =>target),
            }
            return;
        }
        // Backward: the budget is charged only when the jump is taken; the jump back is the
        // no-borrow branch of the charge (`jmp stub` right after it is never reached when
        // budget remains).
        let skip = self.a.new_dynamic_label();
        if let Some(cc) = cc {
            self.jcc(cc.inverse(), skip);
        }
        let stub = self.fail_stub(fail_info(ERR_BUDGET, pc, 0), None);
        asm!(self.a
            ; sub r9, 1
            ; jae =>target
            ; jmp =>stub
            ; =>skip
        );
    }

    /// Checked mode, an access not known to stay in the current frame: validates
    /// `[base + off, +len)` (the address ends up in r10), falling back to the Rust check.
    fn check_access(
        &mut self,
        pc: usize,
        base: u8,
        off: i32,
        log2len: u32,
        write: bool,
        atomic: bool,
    ) {
        let ok = self.a.new_dynamic_label();
        let slow = self.a.new_dynamic_label();
        let l8 = 8 * log2len as i32;
        let lim = if write { off::C_WLIMIT } else { off::C_RLIMIT };
        let d_start = off::DCACHE + off::C_START;
        let d_lim = off::DCACHE + lim + l8;
        let f_start = off::FCACHE + off::C_START;
        let f_lim = off::FCACHE + lim + l8;
        let s_lim = off::STACK_LIMIT + l8;
        asm!(self.a
            ; lea r10, [Rq(base) + off]
            ; cmp r10, [r12 + d_start]
            ; jb >fixed
            ; cmp r10, [r12 + d_lim]
            ; jbe =>ok
            ; fixed:
            ; cmp r10, [r12 + f_start]
            ; jb >stack
            ; cmp r10, [r12 + f_lim]
            ; jbe =>ok
            ; stack:
            ; cmp r10, [r12 + off::STACK_LO]
            ; jb =>slow
            ; cmp r10, [r12 + s_lim]
            ; ja =>slow
            ; =>ok
        );
        self.stubs.push(Stub::MemSlow {
            at: slow,
            resume: ok,
            info: (pc as u64) << 3 | (log2len as u64) << 1 | write as u64,
        });
        if atomic && log2len > 0 {
            let len = 1u64 << log2len;
            let stub = self.fail_stub(fail_info(ERR_MISALIGNED, pc, len), None);
            asm!(self.a
                ; test r10b, (len - 1) as i8
                ; jnz =>stub
            );
        }
    }

    /// Emits the memory check an access needs in this mode, if any.
    fn guard(&mut self, pc: usize, op: &Op, base: u8, log2len: u32, write: bool, atomic: bool) {
        if self.checked && op.flags & FLAG_STACK_SAFE == 0 {
            self.check_access(pc, base, op.off, log2len, write, atomic);
        }
    }

    /// A bpf-to-bpf call to `target` (a label, or the address in r10 if `None`).
    fn local_call(&mut self, pc: usize, backward: bool, target: Option<DynamicLabel>) {
        let stub = self.fail_stub(fail_info(ERR_CALL_DEPTH, pc, 0), None);
        asm!(self.a
            ; cmp rbp, [r12 + off::DEPTH_LIMIT]
            ; jbe =>stub
        );
        if backward {
            self.charge_budget(pc);
        }
        asm!(self.a
            ; push rbx
            ; push r13
            ; push r14
            ; push r15
            ; sub rsp, 8
            ; sub rbp, STACK_FRAME_SIZE as i32
        );
        match target {
            Some(l) => asm!(self.a; call =>l),
            None => asm!(self.a; call r10),
        }
        asm!(self.a
            ; add rbp, STACK_FRAME_SIZE as i32
            ; add rsp, 8
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop rbx
        );
    }

    /// `op d, imm` (`imul d, d, imm` for `IMUL`), 64- or 32-bit, in the sign-extended 8-bit
    /// immediate form when `imm` fits (3-4 bytes instead of 6-7; dynasm fixes the immediate
    /// size at compile time, hence the two arms per operation; it has no 8-bit form of `cmp`
    /// with a register chosen at run time).
    fn alu_imm(&mut self, op: u8, w64: bool, d: u8, imm: i32) {
        let a = &mut self.a;
        match (op, w64, i8::try_from(imm)) {
            (ADD, true, Ok(b)) => asm!(a; add Rq(d), BYTE b),
            (SUB, true, Ok(b)) => asm!(a; sub Rq(d), BYTE b),
            (AND, true, Ok(b)) => asm!(a; and Rq(d), BYTE b),
            (OR, true, Ok(b)) => asm!(a; or Rq(d), BYTE b),
            (XOR, true, Ok(b)) => asm!(a; xor Rq(d), BYTE b),
            (IMUL, true, Ok(b)) => asm!(a; imul Rq(d), Rq(d), BYTE b),
            (ADD, false, Ok(b)) => asm!(a; add Rd(d), BYTE b),
            (SUB, false, Ok(b)) => asm!(a; sub Rd(d), BYTE b),
            (AND, false, Ok(b)) => asm!(a; and Rd(d), BYTE b),
            (OR, false, Ok(b)) => asm!(a; or Rd(d), BYTE b),
            (XOR, false, Ok(b)) => asm!(a; xor Rd(d), BYTE b),
            (IMUL, false, Ok(b)) => asm!(a; imul Rd(d), Rd(d), BYTE b),
            (ADD, true, _) => asm!(a; add Rq(d), imm),
            (SUB, true, _) => asm!(a; sub Rq(d), imm),
            (AND, true, _) => asm!(a; and Rq(d), imm),
            (OR, true, _) => asm!(a; or Rq(d), imm),
            (XOR, true, _) => asm!(a; xor Rq(d), imm),
            (CMP, true, _) => asm!(a; cmp Rq(d), imm),
            (IMUL, true, _) => asm!(a; imul Rq(d), Rq(d), imm),
            (ADD, false, _) => asm!(a; add Rd(d), imm),
            (SUB, false, _) => asm!(a; sub Rd(d), imm),
            (AND, false, _) => asm!(a; and Rd(d), imm),
            (OR, false, _) => asm!(a; or Rd(d), imm),
            (XOR, false, _) => asm!(a; xor Rd(d), imm),
            (CMP, false, _) => asm!(a; cmp Rd(d), imm),
            (_, false, _) => asm!(a; imul Rd(d), Rd(d), imm),
            (_, true, _) => asm!(a; imul Rq(d), Rq(d), imm),
        }
    }

    /// `mov dst, imm` for a 64-bit value, shortest form.
    fn mov_imm64(&mut self, d: u8, v: u64) {
        let a = &mut self.a;
        if v == 0 {
            asm!(a; xor Rd(d), Rd(d));
        } else if v <= u32::MAX as u64 {
            asm!(a; mov Rd(d), v as u32 as i32);
        } else if v as i64 >= i32::MIN as i64 && v as i64 <= i32::MAX as i64 {
            asm!(a; mov Rq(d), v as i64 as i32);
        } else {
            asm!(a; mov Rq(d), QWORD v as i64);
        }
    }

    /// Shift of `d` by the register `s` (x86 wants the count in cl; masking is the same).
    fn shift_reg(&mut self, kind: u8, w64: bool, d: u8, s: u8) {
        // kind: 0 shl, 1 shr, 2 sar.
        macro_rules! sh {
            ($r:expr) => {
                match (kind, w64) {
                    (0, true) => asm!(self.a; shl Rq($r), cl),
                    (1, true) => asm!(self.a; shr Rq($r), cl),
                    (_, true) => asm!(self.a; sar Rq($r), cl),
                    (0, false) => asm!(self.a; shl Rd($r), cl),
                    (1, false) => asm!(self.a; shr Rd($r), cl),
                    (_, false) => asm!(self.a; sar Rd($r), cl),
                }
            };
        }
        if s == RCX {
            sh!(d);
        } else if d == RCX {
            asm!(self.a
                ; mov r11, rcx
                ; mov ecx, Rd(s)
            );
            sh!(11u8);
            asm!(self.a; mov rcx, r11);
        } else {
            asm!(self.a
                ; mov r11, rcx
                ; mov ecx, Rd(s)
            );
            sh!(d);
            asm!(self.a; mov rcx, r11);
        }
    }

    /// Division and modulo with Linux's semantics: x / 0 = 0, x % 0 = x, INT_MIN / -1 =
    /// INT_MIN, INT_MIN % -1 = 0 (x86 would fault on the first and last). `src` = register or
    /// (nonzero: lowered away otherwise) immediate.
    fn divmod(&mut self, div: bool, signed: bool, w64: bool, d: u8, src: Result<u8, u64>) {
        let done = self.a.new_dynamic_label();
        let zero = self.a.new_dynamic_label();
        let minus1 = self.a.new_dynamic_label();
        match src {
            Ok(s) if w64 => asm!(self.a; mov r11, Rq(s)),
            Ok(s) => asm!(self.a; mov r11d, Rd(s)),
            Err(imm) => {
                if signed
                    && (if w64 {
                        imm == u64::MAX
                    } else {
                        imm as u32 == u32::MAX
                    })
                {
                    // Division by the constant -1.
                    self.div_minus1(div, w64, d);
                    return;
                }
                self.mov_imm64(11, if w64 { imm } else { imm as u32 as u64 });
            }
        }
        if src.is_ok() {
            if w64 {
                asm!(self.a; test r11, r11; jz =>zero);
                if signed {
                    asm!(self.a; cmp r11, -1; je =>minus1);
                }
            } else {
                asm!(self.a; test r11d, r11d; jz =>zero);
                if signed {
                    asm!(self.a; cmp r11d, -1; je =>minus1);
                }
            }
        }
        if d != RAX {
            asm!(self.a; mov r10, rax);
        }
        if d != RDX {
            asm!(self.a; push rdx);
        }
        if d != RAX {
            asm!(self.a; mov rax, Rq(d));
        }
        match (signed, w64) {
            (false, true) => asm!(self.a; xor edx, edx; div r11),
            (true, true) => asm!(self.a; cqo; idiv r11),
            (false, false) => asm!(self.a; xor edx, edx; div r11d),
            (true, false) => asm!(self.a; cdq; idiv r11d),
        }
        let res = if div { RAX } else { RDX };
        if d == RAX {
            if res != RAX {
                asm!(self.a; mov rax, rdx);
            }
            asm!(self.a; pop rdx);
        } else if d == RDX {
            if res != RDX {
                asm!(self.a; mov rdx, rax);
            }
            asm!(self.a; mov rax, r10);
        } else {
            asm!(self.a
                ; mov Rq(d), Rq(res)
                ; pop rdx
                ; mov rax, r10
            );
        }
        if src.is_ok() {
            asm!(self.a; jmp =>done; =>zero);
            match (div, w64) {
                (true, _) => asm!(self.a; xor Rd(d), Rd(d)),
                (false, true) => {}
                (false, false) => asm!(self.a; mov Rd(d), Rd(d)),
            }
            if signed {
                asm!(self.a; jmp =>done; =>minus1);
                self.div_minus1(div, w64, d);
            }
        }
        asm!(self.a; =>done);
    }

    fn div_minus1(&mut self, div: bool, w64: bool, d: u8) {
        match (div, w64) {
            (true, true) => asm!(self.a; neg Rq(d)),
            (true, false) => asm!(self.a; neg Rd(d)),
            (false, _) => asm!(self.a; xor Rd(d), Rd(d)),
        }
    }

    /// `src = atomic op(*(dst + off), src)` returning the old value, for or/and/xor, which x86
    /// has no fetching form of: a cmpxchg loop (rax is the comparand; r0 is saved around it).
    fn atomic_fetch_loop(&mut self, kind: u8, w64: bool, b: u8, off: i32, s: u8) {
        let lp = self.a.new_dynamic_label();
        asm!(self.a
            ; lea r10, [Rq(b) + off]
            ; push rax
        );
        if w64 {
            asm!(self.a; mov rax, QWORD [r10]; =>lp; mov r11, rax);
        } else {
            asm!(self.a; mov eax, DWORD [r10]; =>lp; mov r11d, eax);
        }
        // The operand: `s`, or the saved r0 if `s` is r0 (rax is the comparand now).
        match (kind, w64, s == RAX) {
            (0, true, false) => asm!(self.a; or r11, Rq(s)),
            (1, true, false) => asm!(self.a; and r11, Rq(s)),
            (_, true, false) => asm!(self.a; xor r11, Rq(s)),
            (0, true, true) => asm!(self.a; or r11, QWORD [rsp]),
            (1, true, true) => asm!(self.a; and r11, QWORD [rsp]),
            (_, true, true) => asm!(self.a; xor r11, QWORD [rsp]),
            (0, false, false) => asm!(self.a; or r11d, Rd(s)),
            (1, false, false) => asm!(self.a; and r11d, Rd(s)),
            (_, false, false) => asm!(self.a; xor r11d, Rd(s)),
            (0, false, true) => asm!(self.a; or r11d, DWORD [rsp]),
            (1, false, true) => asm!(self.a; and r11d, DWORD [rsp]),
            (_, false, true) => asm!(self.a; xor r11d, DWORD [rsp]),
        }
        if w64 {
            asm!(self.a; lock cmpxchg QWORD [r10], r11; jne =>lp);
        } else {
            asm!(self.a; lock cmpxchg DWORD [r10], r11d; jne =>lp);
        }
        if s == RAX {
            asm!(self.a; add rsp, 8);
        } else {
            if w64 {
                asm!(self.a; mov Rq(s), rax);
            } else {
                asm!(self.a; mov Rd(s), eax);
            }
            asm!(self.a; pop rax);
        }
    }

    /// `bpf_map_lookup_elem` on an array map, inline (as Linux's `array_map_gen_lookup`):
    /// r0 = the value's address if the u32 key at r2 is below `max_entries`, else 0. No call,
    /// no region registered (only unchecked code that registers none gets this), r1-r5 kept.
    ///
    /// ```text
    ///   mov r11d, [rsi]; cmp r11d, max_entries; jae null
    ///   imul r11, r11, stride; mov rax, base; add rax, r11; jmp done
    /// null: xor eax, eax
    /// done:
    /// ```
    fn array_lookup(&mut self, l: ArrayLayout) {
        let (null, done) = (self.a.new_dynamic_label(), self.a.new_dynamic_label());
        let r2 = BPF_REGS[2];
        asm!(self.a
            ; mov r11d, DWORD [Rq(r2)]
            ; cmp r11d, l.max_entries() as i32
            ; jae =>null
            ; imul r11, r11, l.stride() as i32
            ; mov rax, QWORD l.base() as i64
            ; add rax, r11
            ; jmp =>done
            ; =>null
            ; xor eax, eax
            ; =>done
        );
    }

    /// A helper call: static (`Ok(id)`, the function resolved now if the table has it) or
    /// `callx` (`Err(reg)`: the id is in the register, looked up at run time).
    fn helper_call(&mut self, pc: usize, id: Result<u64, u8>) {
        match id {
            Ok(id) if self.helpers.get(id).and_then(|h| h.direct).is_some() => {
                let d = self.helpers.get(id).and_then(|h| h.direct).unwrap();
                self.direct_call(pc, id, d);
                return;
            }
            Ok(id) => {
                let f = self.helpers.get(id).map_or(0, |h| h.func as usize as u64);
                self.mov_imm64(10, f);
                self.mov_imm64(11, id << 32 | pc as u64);
            }
            Err(r) => {
                asm!(self.a
                    ; mov [r12 + off::CALL_ID], Rq(r)
                    ; xor r10d, r10d
                );
                self.mov_imm64(11, pc as u64);
            }
        }
        asm!(self.a; call ->helper_call);
    }

    /// A static call of a helper with a direct entry: a native call of the entry, saving
    /// only the r1-r5 the program may still read (liveness), failure checked in rdx.
    ///
    /// ```text
    ///   push <live r1-r5>; [sub rsp, 8]    ; rsp ≡ 0 (mod 16) at the call
    ///   mov [ctx.budget], r9; mov [ctx.call_r10], rbp; mov [ctx.call_info], pc  ; call site:
    ///                                       ; checked code, or USES_CALL_SITE helpers
    ///   mov r9, r12; call [entry slot]      ; the entry's address, after the stubs
    ///   test rdx, rdx; jnz fail             ; cold stub: ERR_HELPER, pc, id
    ///   mov r9, [ctx.budget]; [add rsp, 8]; pop <live r1-r5>
    /// ```
    fn direct_call(&mut self, pc: usize, id: u64, d: DirectEntry) {
        let entry = match (self.checked, self.untracked) {
            (true, _) => d.checked,
            (false, false) => d.unchecked,
            (false, true) => d.untracked,
        };
        let slot = self.entry_slot(entry);
        let live = self.live_out.get(pc).copied().unwrap_or(liveness::ARGS);
        let save: Vec<u8> = (1..=5)
            .filter(|&r| live & (1 << r) != 0)
            .map(|r| BPF_REGS[r])
            .collect();
        // Function bodies run with rsp ≡ 0 (mod 16).
        let pad = save.len() % 2 == 1;
        let fail = self.a.new_dynamic_label();
        self.stubs.push(Stub::FailWith {
            at: fail,
            info: fail_info(ERR_HELPER, pc, 0),
            val: id,
        });
        for &r in &save {
            asm!(self.a; push Rq(r));
        }
        if pad {
            asm!(self.a; sub rsp, 8);
        }
        if self.bounded {
            asm!(self.a; mov [BYTE r12 + off::BUDGET8], r9);
        }
        // Unchecked code skips the call site for helpers that never read it (no callbacks,
        // no `pc()`): the entry then passes none (`DirectHelper::USES_CALL_SITE`).
        if self.checked || d.uses_call_site {
            asm!(self.a
                ; mov [BYTE r12 + off::CALL_R108], rbp
                ; mov QWORD [BYTE r12 + off::CALL_INFO8], pc as i32
            );
        }
        asm!(self.a
            ; mov r9, r12
            ; call QWORD [=>slot]
            ; test rdx, rdx
            ; jnz =>fail
        );
        if self.bounded {
            asm!(self.a; mov r9, [BYTE r12 + off::BUDGET8]);
        }
        if pad {
            asm!(self.a; add rsp, 8);
        }
        for &r in save.iter().rev() {
            asm!(self.a; pop Rq(r));
        }
    }

    fn op(&mut self, pc: usize) {
        use Code::*;
        let op = self.ops[pc];
        let d = BPF_REGS[op.dst as usize];
        let s = BPF_REGS[op.src as usize];
        let imm = op.imm;
        let i32v = imm as i32; // the low 32 bits, as x86 imm32 (sign-extended for 64-bit ops)
        let b = d; // base register of stores and atomics
        let mo = op.off; // memory offset
        match op.code {
            // --- ALU64 -----------------------------------------------------------------------
            Add64I => {
                if imm != 0 {
                    self.alu_imm(ADD, true, d, i32v)
                }
            }
            Add64R => asm!(self.a; add Rq(d), Rq(s)),
            Sub64I => {
                if imm != 0 {
                    self.alu_imm(SUB, true, d, i32v)
                }
            }
            Sub64R => asm!(self.a; sub Rq(d), Rq(s)),
            Mul64I => self.alu_imm(IMUL, true, d, i32v),
            Mul64R => asm!(self.a; imul Rq(d), Rq(s)),
            Div64I => self.divmod(true, false, true, d, Err(imm)),
            Div64R => self.divmod(true, false, true, d, Ok(s)),
            SDiv64I => self.divmod(true, true, true, d, Err(imm)),
            SDiv64R => self.divmod(true, true, true, d, Ok(s)),
            Mod64I => self.divmod(false, false, true, d, Err(imm)),
            Mod64R => self.divmod(false, false, true, d, Ok(s)),
            SMod64I => self.divmod(false, true, true, d, Err(imm)),
            SMod64R => self.divmod(false, true, true, d, Ok(s)),
            Or64I => {
                if imm != 0 {
                    self.alu_imm(OR, true, d, i32v)
                }
            }
            Or64R => asm!(self.a; or Rq(d), Rq(s)),
            And64I => self.alu_imm(AND, true, d, i32v),
            And64R => asm!(self.a; and Rq(d), Rq(s)),
            Xor64I => {
                if imm != 0 {
                    self.alu_imm(XOR, true, d, i32v)
                }
            }
            Xor64R => asm!(self.a; xor Rq(d), Rq(s)),
            Lsh64I => {
                if imm != 0 {
                    asm!(self.a; shl Rq(d), imm as i8)
                }
            }
            Lsh64R => self.shift_reg(0, true, d, s),
            Rsh64I => {
                if imm != 0 {
                    asm!(self.a; shr Rq(d), imm as i8)
                }
            }
            Rsh64R => self.shift_reg(1, true, d, s),
            Arsh64I => {
                if imm != 0 {
                    asm!(self.a; sar Rq(d), imm as i8)
                }
            }
            Arsh64R => self.shift_reg(2, true, d, s),
            Mov64I => self.mov_imm64(d, imm),
            Mov64R => {
                if d != s {
                    asm!(self.a; mov Rq(d), Rq(s))
                }
            }
            Neg64 => asm!(self.a; neg Rq(d)),
            MovSx64B => asm!(self.a; movsx Rq(d), Rb(s)),
            MovSx64H => asm!(self.a; movsx Rq(d), Rw(s)),
            MovSx64W => asm!(self.a; movsxd Rq(d), Rd(s)),

            // --- ALU32: every 32-bit x86 destination write zero-extends ----------------------
            Add32I => self.alu_imm(ADD, false, d, i32v),
            Add32R => asm!(self.a; add Rd(d), Rd(s)),
            Sub32I => self.alu_imm(SUB, false, d, i32v),
            Sub32R => asm!(self.a; sub Rd(d), Rd(s)),
            Mul32I => self.alu_imm(IMUL, false, d, i32v),
            Mul32R => asm!(self.a; imul Rd(d), Rd(s)),
            Div32I => self.divmod(true, false, false, d, Err(imm)),
            Div32R => self.divmod(true, false, false, d, Ok(s)),
            SDiv32I => self.divmod(true, true, false, d, Err(imm)),
            SDiv32R => self.divmod(true, true, false, d, Ok(s)),
            Mod32I => self.divmod(false, false, false, d, Err(imm)),
            Mod32R => self.divmod(false, false, false, d, Ok(s)),
            SMod32I => self.divmod(false, true, false, d, Err(imm)),
            SMod32R => self.divmod(false, true, false, d, Ok(s)),
            Or32I => self.alu_imm(OR, false, d, i32v),
            Or32R => asm!(self.a; or Rd(d), Rd(s)),
            And32I => self.alu_imm(AND, false, d, i32v),
            And32R => asm!(self.a; and Rd(d), Rd(s)),
            Xor32I => self.alu_imm(XOR, false, d, i32v),
            Xor32R => asm!(self.a; xor Rd(d), Rd(s)),
            Lsh32I | Rsh32I | Arsh32I if imm == 0 => asm!(self.a; mov Rd(d), Rd(d)),
            Lsh32I => asm!(self.a; shl Rd(d), imm as i8),
            Lsh32R => self.shift_reg(0, false, d, s),
            Rsh32I => asm!(self.a; shr Rd(d), imm as i8),
            Rsh32R => self.shift_reg(1, false, d, s),
            Arsh32I => asm!(self.a; sar Rd(d), imm as i8),
            Arsh32R => self.shift_reg(2, false, d, s),
            Mov32I => self.mov_imm64(d, imm as u32 as u64),
            Mov32R => asm!(self.a; mov Rd(d), Rd(s)),
            Neg32 => asm!(self.a; neg Rd(d)),
            MovSx32B => asm!(self.a; movsx Rd(d), Rb(s)),
            MovSx32H => asm!(self.a; movsx Rd(d), Rw(s)),

            // --- Byte order (little-endian host) ---------------------------------------------
            Le16 => asm!(self.a; movzx Rd(d), Rw(d)),
            Le32 => asm!(self.a; mov Rd(d), Rd(d)),
            Le64 => {}
            Be16 | Swap16 => asm!(self.a; ror Rw(d), 8; movzx Rd(d), Rw(d)),
            Be32 | Swap32 => asm!(self.a; bswap Rd(d)),
            Be64 | Swap64 => asm!(self.a; bswap Rq(d)),

            // --- Loads and stores ------------------------------------------------------------
            LdImm64 => self.mov_imm64(d, imm),
            // Never executed: `LdImm64` covers both slots and nothing jumps here.
            LdImm64Hi => {}
            Ldx8 | Ldx16 | Ldx32 | Ldx64 | Ldxs8 | Ldxs16 | Ldxs32 => {
                let log2 = match op.code {
                    Ldx8 | Ldxs8 => 0,
                    Ldx16 | Ldxs16 => 1,
                    Ldx32 | Ldxs32 => 2,
                    _ => 3,
                };
                self.guard(pc, &op, s, log2, false, false);
                let a = &mut self.a;
                // An 8-bit displacement when the offset fits (dynasm fixes the size at
                // compile time: `[BYTE ...]`), the common stack offsets among them.
                match (op.code, i8::try_from(mo)) {
                    (Ldx8, Ok(m8)) => asm!(a; movzx Rd(d), BYTE [BYTE Rq(s) + m8]),
                    (Ldx16, Ok(m8)) => asm!(a; movzx Rd(d), WORD [BYTE Rq(s) + m8]),
                    (Ldx32, Ok(m8)) => asm!(a; mov Rd(d), DWORD [BYTE Rq(s) + m8]),
                    (Ldx64, Ok(m8)) => asm!(a; mov Rq(d), QWORD [BYTE Rq(s) + m8]),
                    (Ldxs8, Ok(m8)) => asm!(a; movsx Rq(d), BYTE [BYTE Rq(s) + m8]),
                    (Ldxs16, Ok(m8)) => asm!(a; movsx Rq(d), WORD [BYTE Rq(s) + m8]),
                    (_, Ok(m8)) => asm!(a; movsxd Rq(d), DWORD [BYTE Rq(s) + m8]),
                    (Ldx8, _) => asm!(a; movzx Rd(d), BYTE [Rq(s) + mo]),
                    (Ldx16, _) => asm!(a; movzx Rd(d), WORD [Rq(s) + mo]),
                    (Ldx32, _) => asm!(a; mov Rd(d), DWORD [Rq(s) + mo]),
                    (Ldx64, _) => asm!(a; mov Rq(d), QWORD [Rq(s) + mo]),
                    (Ldxs8, _) => asm!(a; movsx Rq(d), BYTE [Rq(s) + mo]),
                    (Ldxs16, _) => asm!(a; movsx Rq(d), WORD [Rq(s) + mo]),
                    _ => asm!(a; movsxd Rq(d), DWORD [Rq(s) + mo]),
                }
            }
            St8 | St16 | St32 | St64 => {
                let log2 = match op.code {
                    St8 => 0,
                    St16 => 1,
                    St32 => 2,
                    _ => 3,
                };
                self.guard(pc, &op, b, log2, true, false);
                let a = &mut self.a;
                match (op.code, i8::try_from(mo)) {
                    (St8, Ok(m8)) => asm!(a; mov BYTE [BYTE Rq(b) + m8], imm as i8),
                    (St16, Ok(m8)) => asm!(a; mov WORD [BYTE Rq(b) + m8], imm as i16),
                    (St32, Ok(m8)) => asm!(a; mov DWORD [BYTE Rq(b) + m8], i32v),
                    (_, Ok(m8)) => asm!(a; mov QWORD [BYTE Rq(b) + m8], i32v),
                    (St8, _) => asm!(a; mov BYTE [Rq(b) + mo], imm as i8),
                    (St16, _) => asm!(a; mov WORD [Rq(b) + mo], imm as i16),
                    (St32, _) => asm!(a; mov DWORD [Rq(b) + mo], i32v),
                    _ => asm!(a; mov QWORD [Rq(b) + mo], i32v),
                }
            }
            Stx8 | Stx16 | Stx32 | Stx64 => {
                let log2 = match op.code {
                    Stx8 => 0,
                    Stx16 => 1,
                    Stx32 => 2,
                    _ => 3,
                };
                self.guard(pc, &op, b, log2, true, false);
                let a = &mut self.a;
                match (op.code, i8::try_from(mo)) {
                    (Stx8, Ok(m8)) => asm!(a; mov BYTE [BYTE Rq(b) + m8], Rb(s)),
                    (Stx16, Ok(m8)) => asm!(a; mov WORD [BYTE Rq(b) + m8], Rw(s)),
                    (Stx32, Ok(m8)) => asm!(a; mov DWORD [BYTE Rq(b) + m8], Rd(s)),
                    (_, Ok(m8)) => asm!(a; mov QWORD [BYTE Rq(b) + m8], Rq(s)),
                    (Stx8, _) => asm!(a; mov BYTE [Rq(b) + mo], Rb(s)),
                    (Stx16, _) => asm!(a; mov WORD [Rq(b) + mo], Rw(s)),
                    (Stx32, _) => asm!(a; mov DWORD [Rq(b) + mo], Rd(s)),
                    _ => asm!(a; mov QWORD [Rq(b) + mo], Rq(s)),
                }
            }

            // --- Atomics (x86 locked instructions are sequentially consistent) ---------------
            AAdd32 | AOr32 | AAnd32 | AXor32 | AFAdd32 | AFOr32 | AFAnd32 | AFXor32 | Xchg32
            | CmpXchg32 => {
                self.guard(pc, &op, b, 2, true, true);
                let a = &mut self.a;
                match op.code {
                    AAdd32 => asm!(a; lock add DWORD [Rq(b) + mo], Rd(s)),
                    AOr32 => asm!(a; lock or DWORD [Rq(b) + mo], Rd(s)),
                    AAnd32 => asm!(a; lock and DWORD [Rq(b) + mo], Rd(s)),
                    AXor32 => asm!(a; lock xor DWORD [Rq(b) + mo], Rd(s)),
                    AFAdd32 => asm!(a; lock xadd DWORD [Rq(b) + mo], Rd(s)),
                    Xchg32 => asm!(a; xchg DWORD [Rq(b) + mo], Rd(s)),
                    // eax is left as it was on success: zero-extend it either way.
                    CmpXchg32 => asm!(a; lock cmpxchg DWORD [Rq(b) + mo], Rd(s); mov eax, eax),
                    AFOr32 => self.atomic_fetch_loop(0, false, b, mo, s),
                    AFAnd32 => self.atomic_fetch_loop(1, false, b, mo, s),
                    _ => self.atomic_fetch_loop(2, false, b, mo, s),
                }
            }
            AAdd64 | AOr64 | AAnd64 | AXor64 | AFAdd64 | AFOr64 | AFAnd64 | AFXor64 | Xchg64
            | CmpXchg64 => {
                self.guard(pc, &op, b, 3, true, true);
                let a = &mut self.a;
                match op.code {
                    AAdd64 => asm!(a; lock add QWORD [Rq(b) + mo], Rq(s)),
                    AOr64 => asm!(a; lock or QWORD [Rq(b) + mo], Rq(s)),
                    AAnd64 => asm!(a; lock and QWORD [Rq(b) + mo], Rq(s)),
                    AXor64 => asm!(a; lock xor QWORD [Rq(b) + mo], Rq(s)),
                    AFAdd64 => asm!(a; lock xadd QWORD [Rq(b) + mo], Rq(s)),
                    Xchg64 => asm!(a; xchg QWORD [Rq(b) + mo], Rq(s)),
                    CmpXchg64 => asm!(a; lock cmpxchg QWORD [Rq(b) + mo], Rq(s)),
                    AFOr64 => self.atomic_fetch_loop(0, true, b, mo, s),
                    AFAnd64 => self.atomic_fetch_loop(1, true, b, mo, s),
                    _ => self.atomic_fetch_loop(2, true, b, mo, s),
                }
            }

            // --- Jumps -----------------------------------------------------------------------
            Ja => self.branch(pc, &op, None),
            Jeq64I | Jne64I | Jgt64I | Jge64I | Jlt64I | Jle64I | Jset64I | Jsgt64I | Jsge64I
            | Jslt64I | Jsle64I => {
                let cc = cond(op.code);
                if op.code == Jset64I {
                    asm!(self.a; test Rq(d), i32v);
                } else if imm == 0 && matches!(cc, Cc::E | Cc::Ne) && self.zf_of(pc, op.dst, true) {
                    // ZF is already that of `d` (the ALU op just before set it).
                } else if imm == 0 {
                    // Same flags as `cmp d, 0` for every condition (CF = OF = 0).
                    asm!(self.a; test Rq(d), Rq(d));
                } else {
                    self.alu_imm(CMP, true, d, i32v);
                }
                self.branch(pc, &op, Some(cc));
            }
            Jeq64R | Jne64R | Jgt64R | Jge64R | Jlt64R | Jle64R | Jset64R | Jsgt64R | Jsge64R
            | Jslt64R | Jsle64R => {
                if op.code == Jset64R {
                    asm!(self.a; test Rq(d), Rq(s));
                } else {
                    asm!(self.a; cmp Rq(d), Rq(s));
                }
                self.branch(pc, &op, Some(cond(op.code)));
            }
            Jeq32I | Jne32I | Jgt32I | Jge32I | Jlt32I | Jle32I | Jset32I | Jsgt32I | Jsge32I
            | Jslt32I | Jsle32I => {
                if op.code == Jset32I {
                    asm!(self.a; test Rd(d), i32v);
                } else if i32v == 0
                    && matches!(cond(op.code), Cc::E | Cc::Ne)
                    && self.zf_of(pc, op.dst, false)
                {
                    // As above.
                } else if i32v == 0 {
                    asm!(self.a; test Rd(d), Rd(d));
                } else {
                    self.alu_imm(CMP, false, d, i32v);
                }
                self.branch(pc, &op, Some(cond(op.code)));
            }
            Jeq32R | Jne32R | Jgt32R | Jge32R | Jlt32R | Jle32R | Jset32R | Jsgt32R | Jsge32R
            | Jslt32R | Jsle32R => {
                if op.code == Jset32R {
                    asm!(self.a; test Rd(d), Rd(s));
                } else {
                    asm!(self.a; cmp Rd(d), Rd(s));
                }
                self.branch(pc, &op, Some(cond(op.code)));
            }

            // --- Calls -----------------------------------------------------------------------
            Call => match self.inline_lookups.iter().find(|(at, _)| *at == pc) {
                Some(&(_, layout)) => self.array_lookup(layout),
                None => self.helper_call(pc, Ok(imm)),
            },
            CallLocal => {
                let t = self.labels[op.off as usize];
                self.local_call(pc, op.flags & FLAG_BACKWARD != 0, Some(t));
            }
            CallX => {
                // A function pointer (`lddw rX, subprog`) is a local call; anything else a
                // helper number.
                let helper = self.a.new_dynamic_label();
                let done = self.a.new_dynamic_label();
                let bad = self.fail_stub(fail_info(ERR_BAD_CALL, pc, 0), Some(s));
                let n = self.ops.len() as i32;
                let table = self.table as i64;
                asm!(self.a
                    ; mov r11, Rq(s)
                    ; mov r10, QWORD FUNC_TOKEN_TAG as i64
                    ; and r11, r10
                    ; cmp r11, r10
                    ; jne =>helper
                    ; mov r11, Rq(s)
                    ; xor r11, r10
                    ; cmp r11, n
                    ; jae =>bad
                    ; mov r10, QWORD table
                    ; mov r10, [r10 + r11 * 8]
                    ; test r10, r10
                    ; jz =>bad
                );
                self.local_call(pc, false, None);
                asm!(self.a; jmp =>done; =>helper);
                self.helper_call(pc, Err(s));
                asm!(self.a; =>done);
            }
            Exit => asm!(self.a; ret),
        }
    }
}

/// The condition of a conditional jump, `None` for anything else.
fn cond_of(c: Code) -> Option<Cc> {
    use Code::*;
    match c {
        Jeq64I | Jne64I | Jgt64I | Jge64I | Jlt64I | Jle64I | Jset64I | Jsgt64I | Jsge64I
        | Jslt64I | Jsle64I | Jeq64R | Jne64R | Jgt64R | Jge64R | Jlt64R | Jle64R | Jset64R
        | Jsgt64R | Jsge64R | Jslt64R | Jsle64R | Jeq32I | Jne32I | Jgt32I | Jge32I | Jlt32I
        | Jle32I | Jset32I | Jsgt32I | Jsge32I | Jslt32I | Jsle32I | Jeq32R | Jne32R | Jgt32R
        | Jge32R | Jlt32R | Jle32R | Jset32R | Jsgt32R | Jsge32R | Jslt32R | Jsle32R => {
            Some(cond(c))
        }
        _ => None,
    }
}

fn cond(c: Code) -> Cc {
    use Code::*;
    match c {
        Jeq64I | Jeq64R | Jeq32I | Jeq32R => Cc::E,
        Jne64I | Jne64R | Jne32I | Jne32R | Jset64I | Jset64R | Jset32I | Jset32R => Cc::Ne,
        Jgt64I | Jgt64R | Jgt32I | Jgt32R => Cc::A,
        Jge64I | Jge64R | Jge32I | Jge32R => Cc::Ae,
        Jlt64I | Jlt64R | Jlt32I | Jlt32R => Cc::B,
        Jle64I | Jle64R | Jle32I | Jle32R => Cc::Be,
        Jsgt64I | Jsgt64R | Jsgt32I | Jsgt32R => Cc::G,
        Jsge64I | Jsge64R | Jsge32I | Jsge32R => Cc::Ge,
        Jslt64I | Jslt64R | Jslt32I | Jslt32R => Cc::L,
        _ => Cc::Le,
    }
}

/// The context type the generated code expects in r12 (for documentation links).
#[allow(dead_code)]
type Ctx = JitCtx;
