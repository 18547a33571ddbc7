//! Program preparation (decode, structural checks, lowering to [`Op`]s) and the interpreter.
//!
//! # Internal form
//! A [`Program`] is a vector of [`Op`]s, exactly one per 8-byte slot, so slot indices, jump
//! targets and verifier-log pcs are the same numbers everywhere. Each op is 16 bytes:
//! a dense [`Code`] (one value per operation × width × operand kind, so the interpreter's
//! `match` is a single jump table and nothing is re-decoded at run time), `dst`/`src` register
//! numbers, `off` (sign-extended memory offset, or the *absolute* target of jumps and local
//! calls), and a 64-bit `imm` that is already what the operation consumes (sign-extended for
//! 64-bit ALU/JMP, the full value of `lddw`, pre-masked shift counts, the resolved value of
//! pseudo `lddw`s). Division and modulo by an immediate zero are lowered away. The second slot
//! of `lddw` becomes [`Code::LdImm64Hi`], which is never executed.
//!
//! The structural checks done here make the fetch loop safe without per-instruction bounds
//! checks: every jump and call target is an instruction start inside the program, the last
//! instruction is `exit` or `ja` (nothing falls off the end, calls always have a return slot),
//! and no instruction writes r10.
//!
//! # Calls
//! `call N` calls helper N of the [`Helpers`] table (an unknown N is a load error);
//! `call pc+K` is a bpf-to-bpf call in a new 512-byte stack frame, r6-r9 and r10 restored on
//! return, at most [`MAX_CALL_FRAMES`] frames deep (callbacks included); `callx rX` calls the
//! function `rX` holds if it is a function pointer (a `lddw rX, subprog` value, tagged with
//! [`FUNC_TOKEN_TAG`]), else helper number `rX` (unknown: a run-time error). Tail calls are not
//! implemented.
//!
//! # Modes
//! [`Interpreter::run`] is the *checked* mode: every memory access is validated against the
//! registered regions ([`Region`]) and every failure is an [`ExecError`].
//! [`Interpreter::run_unchecked`] skips the memory checks; it is `unsafe` until a verifier
//! proves programs safe. Both modes enforce the call depth and the optional back-edge budget
//! ([`Interpreter::set_budget`]); neither costs anything measurable.

use crate::helpers::{Env, HelperCtx, HelperError, Helpers};
use crate::insn::{
    decode, AluOp, AtomicOp, CallTarget, DecodeError, Endian, Insn, Instruction, JmpCond,
    LdImmKind, MemSize, Operand, Width, FRAME_POINTER,
};
use crate::memory::{Memory, Region, RegionKind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Stack bytes per call frame (`MAX_BPF_STACK`).
pub const STACK_FRAME_SIZE: usize = 512;
/// Maximum call frames, the main program included (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;
/// Total interpreter stack.
pub const STACK_SIZE: usize = STACK_FRAME_SIZE * MAX_CALL_FRAMES;
/// Tag of the values `lddw rX, subprog` loads in the interpreter (low bits: the target pc).
pub const FUNC_TOKEN_TAG: u64 = 0xbf00_0000_0000_0000;

/// Operation codes of the internal form. `I` = immediate operand, `R` = register operand.
#[rustfmt::skip]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Code {
    // ALU64
    Add64I, Add64R, Sub64I, Sub64R, Mul64I, Mul64R, Div64I, Div64R, SDiv64I, SDiv64R,
    Mod64I, Mod64R, SMod64I, SMod64R, Or64I, Or64R, And64I, And64R, Xor64I, Xor64R,
    Lsh64I, Lsh64R, Rsh64I, Rsh64R, Arsh64I, Arsh64R, Mov64I, Mov64R, Neg64,
    MovSx64B, MovSx64H, MovSx64W,
    // ALU32 (results zero-extended)
    Add32I, Add32R, Sub32I, Sub32R, Mul32I, Mul32R, Div32I, Div32R, SDiv32I, SDiv32R,
    Mod32I, Mod32R, SMod32I, SMod32R, Or32I, Or32R, And32I, And32R, Xor32I, Xor32R,
    Lsh32I, Lsh32R, Rsh32I, Rsh32R, Arsh32I, Arsh32R, Mov32I, Mov32R, Neg32,
    MovSx32B, MovSx32H,
    // Byte order
    Le16, Le32, Le64, Be16, Be32, Be64, Swap16, Swap32, Swap64,
    // Loads and stores
    LdImm64, LdImm64Hi,
    Ldx8, Ldx16, Ldx32, Ldx64, Ldxs8, Ldxs16, Ldxs32,
    St8, St16, St32, St64, Stx8, Stx16, Stx32, Stx64,
    // Atomics
    AAdd32, AOr32, AAnd32, AXor32, AFAdd32, AFOr32, AFAnd32, AFXor32, Xchg32, CmpXchg32,
    AAdd64, AOr64, AAnd64, AXor64, AFAdd64, AFOr64, AFAnd64, AFXor64, Xchg64, CmpXchg64,
    // Jumps
    Ja,
    Jeq64I, Jeq64R, Jne64I, Jne64R, Jgt64I, Jgt64R, Jge64I, Jge64R, Jlt64I, Jlt64R,
    Jle64I, Jle64R, Jset64I, Jset64R, Jsgt64I, Jsgt64R, Jsge64I, Jsge64R, Jslt64I, Jslt64R,
    Jsle64I, Jsle64R,
    Jeq32I, Jeq32R, Jne32I, Jne32R, Jgt32I, Jgt32R, Jge32I, Jge32R, Jlt32I, Jlt32R,
    Jle32I, Jle32R, Jset32I, Jset32R, Jsgt32I, Jsgt32R, Jsge32I, Jsge32R, Jslt32I, Jslt32R,
    Jsle32I, Jsle32R,
    // Calls
    Call, CallLocal, CallX, Exit,
}

/// `Op::flags`: a memory access relative to r10 that stays inside the current frame (and is
/// aligned, for atomics), so even the checked mode need not check it.
pub const FLAG_STACK_SAFE: u8 = 1;
/// `Op::flags`: a jump or call whose target is at or before itself (a potential loop).
pub const FLAG_BACKWARD: u8 = 2;

/// One lowered instruction. See the module documentation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, align(16))]
pub struct Op {
    pub code: Code,
    pub dst: u8,
    pub src: u8,
    pub flags: u8,
    /// Memory offset (sign-extended), or absolute target slot of jumps and local calls.
    pub off: i32,
    /// Operand as the operation consumes it.
    pub imm: u64,
}

/// How pseudo `lddw`s (map fd, map value, BTF id, map index) are turned into values.
/// `PseudoLoad` describes one; the resolver returns the 64-bit value the register gets (a map
/// handle the caller's [`crate::helpers::MapAccess`] understands, or the address of a map value
/// whose memory the caller registers as a [`Region`] for each run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PseudoLoad {
    pub pc: usize,
    pub kind: LdImmKind,
    pub imm: i32,
    pub next_imm: i32,
}

/// Turns a pseudo `lddw` into the value its register gets, or says why it cannot.
pub type Resolver<'a> = &'a dyn Fn(&PseudoLoad) -> Result<u64, String>;

/// Options for [`Program::load`].
#[derive(Default, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Resolves pseudo `lddw`s other than `subprog` (which the interpreter resolves itself).
    /// Without it, a pseudo `lddw` is a load error.
    pub resolve: Option<Resolver<'a>>,
}

/// Why a program cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("insn {pc}: {reason}")]
    Invalid { pc: usize, reason: String },
    #[error("insn {pc}: {what} is not supported")]
    Unsupported { pc: usize, what: &'static str },
    #[error("insn {pc}: invalid func unknown#{id}")]
    UnknownHelper { pc: usize, id: i32 },
    #[error("insn {pc}: cannot resolve {kind:?} (imm {imm}): {reason}")]
    Unresolved {
        pc: usize,
        kind: LdImmKind,
        imm: i32,
        reason: String,
    },
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("insn {pc}: invalid {} of {len} bytes at {addr:#x}", if *.write { "write" } else { "read" })]
    MemoryAccess {
        pc: usize,
        addr: u64,
        len: u64,
        write: bool,
    },
    #[error("insn {pc}: misaligned atomic access of {len} bytes at {addr:#x}")]
    Misaligned { pc: usize, addr: u64, len: u64 },
    #[error("insn {pc}: call to unknown helper {id}")]
    UnknownHelper { pc: usize, id: u64 },
    #[error("insn {pc}: the call stack is more than {MAX_CALL_FRAMES} frames deep")]
    CallDepth { pc: usize },
    #[error("insn {pc}: instruction budget exhausted")]
    Budget { pc: usize },
    #[error("insn {pc}: helper {id} failed: {error}")]
    Helper {
        pc: usize,
        id: u64,
        error: HelperError,
    },
    #[error("insn {pc}: callx to {target:#x}, which is not a function")]
    InvalidCallTarget { pc: usize, target: u64 },
    #[error("insn {pc}: invalid instruction executed")]
    InvalidInstruction { pc: usize },
}

/// A decoded, checked and lowered program, independent of helpers and memory.
#[derive(Clone, Debug)]
pub struct Program {
    slots: Vec<Insn>,
    ops: Vec<Op>,
    /// `entries[pc]`: pc starts a function (0, local-call targets, `subprog` loads).
    entries: Vec<bool>,
    /// Helper ids of static helper calls, with their pcs.
    helper_calls: Vec<(usize, i32)>,
}

impl Program {
    /// Prepares a program from its bytes, without a pseudo-`lddw` resolver.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        Self::load(&Insn::slots_from_bytes(bytes)?, LoadOptions::default())
    }

    /// Decodes, checks and lowers `slots`.
    pub fn load(slots: &[Insn], opts: LoadOptions<'_>) -> Result<Self, LoadError> {
        let decoded = decode(slots)?;
        let n = slots.len();
        let mut starts = vec![false; n];
        for (pc, _) in &decoded {
            starts[*pc] = true;
        }
        let mut entries = vec![false; n];
        entries[0] = true;
        let invalid = |pc: usize, reason: String| LoadError::Invalid { pc, reason };
        let target_ok = |pc: usize, t: i64| -> Result<usize, LoadError> {
            if t < 0 || t >= n as i64 {
                return Err(invalid(
                    pc,
                    format!("jump out of range from insn {pc} to {t}"),
                ));
            }
            if !starts[t as usize] {
                return Err(invalid(
                    pc,
                    format!("jump into the middle of ldimm64 insn {}", t - 1),
                ));
            }
            Ok(t as usize)
        };

        // Terminal instruction.
        let (last_pc, last) = *decoded.last().expect("decode rejects empty programs");
        if !matches!(last, Instruction::Exit | Instruction::Ja { .. }) {
            return Err(invalid(last_pc, "last insn is not an exit or jmp".into()));
        }

        let mut ops = vec![
            Op {
                code: Code::LdImm64Hi,
                dst: 0,
                src: 0,
                flags: 0,
                off: 0,
                imm: 0
            };
            n
        ];
        let mut helper_calls = Vec::new();
        for &(pc, insn) in &decoded {
            // r10 is read-only.
            let writes = match insn {
                Instruction::Alu { dst, .. }
                | Instruction::Neg { dst, .. }
                | Instruction::MovSx { dst, .. }
                | Instruction::End { dst, .. }
                | Instruction::LdImm64 { dst, .. }
                | Instruction::Ldx { dst, .. } => Some(dst),
                Instruction::Atomic {
                    src,
                    fetch: true,
                    op,
                    ..
                } if op != AtomicOp::CmpXchg => Some(src),
                _ => None,
            };
            if writes == Some(FRAME_POINTER) {
                return Err(invalid(pc, "frame pointer is read only".into()));
            }
            if let Some(t) = insn.branch_target(pc) {
                let t = target_ok(pc, t)?;
                if matches!(insn, Instruction::Call(CallTarget::Local(_))) {
                    entries[t] = true;
                }
            }
            let op = lower(pc, insn, &opts, &target_ok, &mut entries)?;
            if let Instruction::Call(CallTarget::Helper(id)) = insn {
                helper_calls.push((pc, id));
            }
            ops[pc] = op;
        }
        Ok(Program {
            slots: slots.to_vec(),
            ops,
            entries,
            helper_calls,
        })
    }

    /// The lowered ops, one per slot.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The original slots.
    pub fn slots(&self) -> &[Insn] {
        &self.slots
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Does `pc` start a function (main program, local-call target, callback)?
    pub fn is_function_entry(&self, pc: usize) -> bool {
        self.entries.get(pc).copied().unwrap_or(false)
    }

    /// Static helper calls `(pc, id)`.
    pub fn helper_calls(&self) -> &[(usize, i32)] {
        &self.helper_calls
    }

    /// The kernel-style listing of the program.
    pub fn disassemble(&self) -> String {
        crate::insn::disassemble(&self.slots).unwrap_or_default()
    }
}

fn lower(
    pc: usize,
    insn: Instruction,
    opts: &LoadOptions<'_>,
    target_ok: &dyn Fn(usize, i64) -> Result<usize, LoadError>,
    entries: &mut [bool],
) -> Result<Op, LoadError> {
    use Code::*;
    let mk = |code, dst, src, off: i32, imm: u64| Op {
        code,
        dst,
        src,
        flags: 0,
        off,
        imm,
    };
    let sx = |i: i32| i as i64 as u64;
    let back = |t: usize| if t <= pc { FLAG_BACKWARD } else { 0 };
    let stack_flag = |base: u8, off: i16, size: MemSize, atomic: bool| {
        let off = off as i32;
        let sz = size.bytes() as i32;
        let in_frame = base == FRAME_POINTER && off >= -(STACK_FRAME_SIZE as i32) && off + sz <= 0;
        if in_frame && (!atomic || off % sz == 0) {
            FLAG_STACK_SAFE
        } else {
            0
        }
    };
    Ok(match insn {
        Instruction::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let w64 = width == Width::W64;
            let (ci, cr) = match (op, w64) {
                (AluOp::Add, true) => (Add64I, Add64R),
                (AluOp::Sub, true) => (Sub64I, Sub64R),
                (AluOp::Mul, true) => (Mul64I, Mul64R),
                (AluOp::Div, true) => (Div64I, Div64R),
                (AluOp::SDiv, true) => (SDiv64I, SDiv64R),
                (AluOp::Mod, true) => (Mod64I, Mod64R),
                (AluOp::SMod, true) => (SMod64I, SMod64R),
                (AluOp::Or, true) => (Or64I, Or64R),
                (AluOp::And, true) => (And64I, And64R),
                (AluOp::Xor, true) => (Xor64I, Xor64R),
                (AluOp::Lsh, true) => (Lsh64I, Lsh64R),
                (AluOp::Rsh, true) => (Rsh64I, Rsh64R),
                (AluOp::Arsh, true) => (Arsh64I, Arsh64R),
                (AluOp::Mov, true) => (Mov64I, Mov64R),
                (AluOp::Add, false) => (Add32I, Add32R),
                (AluOp::Sub, false) => (Sub32I, Sub32R),
                (AluOp::Mul, false) => (Mul32I, Mul32R),
                (AluOp::Div, false) => (Div32I, Div32R),
                (AluOp::SDiv, false) => (SDiv32I, SDiv32R),
                (AluOp::Mod, false) => (Mod32I, Mod32R),
                (AluOp::SMod, false) => (SMod32I, SMod32R),
                (AluOp::Or, false) => (Or32I, Or32R),
                (AluOp::And, false) => (And32I, And32R),
                (AluOp::Xor, false) => (Xor32I, Xor32R),
                (AluOp::Lsh, false) => (Lsh32I, Lsh32R),
                (AluOp::Rsh, false) => (Rsh32I, Rsh32R),
                (AluOp::Arsh, false) => (Arsh32I, Arsh32R),
                (AluOp::Mov, false) => (Mov32I, Mov32R),
            };
            match src {
                Operand::Reg(s) => mk(cr, dst, s, 0, 0),
                Operand::Imm(i) => {
                    let divlike = matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod);
                    let zero = if w64 { i == 0 } else { i as u32 == 0 };
                    if divlike && zero {
                        // x / 0 = 0; x % 0 = x (zero-extended for 32-bit).
                        match (op, w64) {
                            (AluOp::Div | AluOp::SDiv, true) => mk(Mov64I, dst, 0, 0, 0),
                            (AluOp::Div | AluOp::SDiv, false) => mk(Mov32I, dst, 0, 0, 0),
                            (_, true) => mk(Or64I, dst, 0, 0, 0),
                            (_, false) => mk(Mov32R, dst, dst, 0, 0),
                        }
                    } else {
                        let imm = match op {
                            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => {
                                (i as u64) & if w64 { 63 } else { 31 }
                            }
                            _ if w64 => sx(i),
                            _ => i as u32 as u64,
                        };
                        mk(ci, dst, 0, 0, imm)
                    }
                }
            }
        }
        Instruction::Neg { width, dst } => mk(
            if width == Width::W64 { Neg64 } else { Neg32 },
            dst,
            0,
            0,
            0,
        ),
        Instruction::MovSx {
            width,
            dst,
            src,
            bits,
        } => {
            let c = match (width, bits) {
                (Width::W64, 8) => MovSx64B,
                (Width::W64, 16) => MovSx64H,
                (Width::W64, _) => MovSx64W,
                (Width::W32, 8) => MovSx32B,
                (Width::W32, _) => MovSx32H,
            };
            mk(c, dst, src, 0, 0)
        }
        Instruction::End { kind, bits, dst } => {
            let c = match (kind, bits) {
                (Endian::ToLe, 16) => Le16,
                (Endian::ToLe, 32) => Le32,
                (Endian::ToLe, _) => Le64,
                (Endian::ToBe, 16) => Be16,
                (Endian::ToBe, 32) => Be32,
                (Endian::ToBe, _) => Be64,
                (Endian::Swap, 16) => Swap16,
                (Endian::Swap, 32) => Swap32,
                (Endian::Swap, _) => Swap64,
            };
            mk(c, dst, 0, 0, 0)
        }
        Instruction::LdImm64 {
            dst,
            kind,
            imm,
            next_imm,
        } => {
            let value = match kind {
                LdImmKind::Imm64 => Instruction::imm64(imm, next_imm),
                LdImmKind::Func => {
                    let t = target_ok(pc, pc as i64 + 1 + imm as i64)?;
                    entries[t] = true;
                    FUNC_TOKEN_TAG | t as u64
                }
                _ => {
                    let p = PseudoLoad {
                        pc,
                        kind,
                        imm,
                        next_imm,
                    };
                    let r = opts
                        .resolve
                        .ok_or_else(|| "no resolver given".to_string())
                        .and_then(|f| f(&p));
                    r.map_err(|reason| LoadError::Unresolved {
                        pc,
                        kind,
                        imm,
                        reason,
                    })?
                }
            };
            mk(LdImm64, dst, 0, 0, value)
        }
        Instruction::LdAbs { .. } | Instruction::LdInd { .. } => {
            return Err(LoadError::Unsupported {
                pc,
                what: "legacy packet access (BPF_ABS/BPF_IND)",
            })
        }
        Instruction::Ldx {
            size,
            signed,
            dst,
            src,
            off,
        } => {
            let c = match (size, signed) {
                (MemSize::B, false) => Ldx8,
                (MemSize::H, false) => Ldx16,
                (MemSize::W, false) => Ldx32,
                (MemSize::DW, _) => Ldx64,
                (MemSize::B, true) => Ldxs8,
                (MemSize::H, true) => Ldxs16,
                (MemSize::W, true) => Ldxs32,
            };
            Op {
                flags: stack_flag(src, off, size, false),
                ..mk(c, dst, src, off as i32, 0)
            }
        }
        Instruction::St {
            size,
            dst,
            off,
            imm,
        } => {
            let c = match size {
                MemSize::B => St8,
                MemSize::H => St16,
                MemSize::W => St32,
                MemSize::DW => St64,
            };
            Op {
                flags: stack_flag(dst, off, size, false),
                ..mk(c, dst, 0, off as i32, sx(imm))
            }
        }
        Instruction::Stx {
            size,
            dst,
            src,
            off,
        } => {
            let c = match size {
                MemSize::B => Stx8,
                MemSize::H => Stx16,
                MemSize::W => Stx32,
                MemSize::DW => Stx64,
            };
            Op {
                flags: stack_flag(dst, off, size, false),
                ..mk(c, dst, src, off as i32, 0)
            }
        }
        Instruction::Atomic {
            size,
            op,
            fetch,
            dst,
            src,
            off,
        } => {
            let w64 = size == MemSize::DW;
            let c = match (op, fetch, w64) {
                (AtomicOp::Add, false, false) => AAdd32,
                (AtomicOp::Or, false, false) => AOr32,
                (AtomicOp::And, false, false) => AAnd32,
                (AtomicOp::Xor, false, false) => AXor32,
                (AtomicOp::Add, true, false) => AFAdd32,
                (AtomicOp::Or, true, false) => AFOr32,
                (AtomicOp::And, true, false) => AFAnd32,
                (AtomicOp::Xor, true, false) => AFXor32,
                (AtomicOp::Xchg, _, false) => Xchg32,
                (AtomicOp::CmpXchg, _, false) => CmpXchg32,
                (AtomicOp::Add, false, true) => AAdd64,
                (AtomicOp::Or, false, true) => AOr64,
                (AtomicOp::And, false, true) => AAnd64,
                (AtomicOp::Xor, false, true) => AXor64,
                (AtomicOp::Add, true, true) => AFAdd64,
                (AtomicOp::Or, true, true) => AFOr64,
                (AtomicOp::And, true, true) => AFAnd64,
                (AtomicOp::Xor, true, true) => AFXor64,
                (AtomicOp::Xchg, _, true) => Xchg64,
                (AtomicOp::CmpXchg, _, true) => CmpXchg64,
            };
            Op {
                flags: stack_flag(dst, off, size, true),
                ..mk(c, dst, src, off as i32, 0)
            }
        }
        Instruction::Ja { off, .. } => {
            let t = target_ok(pc, pc as i64 + 1 + off as i64)?;
            Op {
                flags: back(t),
                ..mk(Ja, 0, 0, t as i32, 0)
            }
        }
        Instruction::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => {
            let t = target_ok(pc, pc as i64 + 1 + off as i64)?;
            let w64 = width == Width::W64;
            let (ci, cr) = match (cond, w64) {
                (JmpCond::Eq, true) => (Jeq64I, Jeq64R),
                (JmpCond::Ne, true) => (Jne64I, Jne64R),
                (JmpCond::Gt, true) => (Jgt64I, Jgt64R),
                (JmpCond::Ge, true) => (Jge64I, Jge64R),
                (JmpCond::Lt, true) => (Jlt64I, Jlt64R),
                (JmpCond::Le, true) => (Jle64I, Jle64R),
                (JmpCond::Set, true) => (Jset64I, Jset64R),
                (JmpCond::Sgt, true) => (Jsgt64I, Jsgt64R),
                (JmpCond::Sge, true) => (Jsge64I, Jsge64R),
                (JmpCond::Slt, true) => (Jslt64I, Jslt64R),
                (JmpCond::Sle, true) => (Jsle64I, Jsle64R),
                (JmpCond::Eq, false) => (Jeq32I, Jeq32R),
                (JmpCond::Ne, false) => (Jne32I, Jne32R),
                (JmpCond::Gt, false) => (Jgt32I, Jgt32R),
                (JmpCond::Ge, false) => (Jge32I, Jge32R),
                (JmpCond::Lt, false) => (Jlt32I, Jlt32R),
                (JmpCond::Le, false) => (Jle32I, Jle32R),
                (JmpCond::Set, false) => (Jset32I, Jset32R),
                (JmpCond::Sgt, false) => (Jsgt32I, Jsgt32R),
                (JmpCond::Sge, false) => (Jsge32I, Jsge32R),
                (JmpCond::Slt, false) => (Jslt32I, Jslt32R),
                (JmpCond::Sle, false) => (Jsle32I, Jsle32R),
            };
            let flags = back(t);
            match src {
                Operand::Reg(s) => Op {
                    flags,
                    ..mk(cr, dst, s, t as i32, 0)
                },
                Operand::Imm(i) => Op {
                    flags,
                    ..mk(ci, dst, 0, t as i32, sx(i))
                },
            }
        }
        Instruction::Call(CallTarget::Helper(id)) => mk(Call, 0, 0, 0, id as u32 as u64),
        Instruction::Call(CallTarget::Local(off)) => {
            let t = target_ok(pc, pc as i64 + 1 + off as i64)?;
            Op {
                flags: back(t),
                ..mk(CallLocal, 0, 0, t as i32, 0)
            }
        }
        Instruction::Call(CallTarget::Reg(r)) => mk(CallX, 0, r, 0, 0),
        Instruction::Call(CallTarget::Kfunc { .. }) => {
            return Err(LoadError::Unsupported {
                pc,
                what: "kfunc call",
            })
        }
        Instruction::Exit => mk(Exit, 0, 0, 0, 0),
    })
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

/// Per-run state shared by the fetch loop, helpers and nested executions (callbacks).
pub(crate) struct RunState<'a, 'e> {
    pub prog: &'a Program,
    pub helpers: &'a Helpers,
    pub mem: &'a mut Memory,
    pub env: &'a mut Env<'e>,
    /// Address one past the stack buffer: r10 of frame 0.
    pub stack_top: u64,
    pub budget: u64,
    pub checked: bool,
    /// Saved caller state, indexed by absolute call depth (so nested executions for
    /// callbacks use disjoint entries and nothing is initialised per run).
    pub frames: &'a mut [Frame; MAX_CALL_FRAMES],
    /// Set by another engine (the JIT) to run functions, callbacks included, itself.
    pub hook: Option<CallHook>,
}

pub(crate) type CallHookFn =
    unsafe fn(*mut (), &mut RunState<'_, '_>, usize, [u64; 5], usize) -> Result<u64, ExecError>;

/// How another engine runs a function of the program: `run(data, state, entry, args, depth)`
/// with [`RunState::call`]'s meaning. Lets helpers' callbacks (`bpf_loop`) run in the engine
/// that called the helper.
#[derive(Clone, Copy)]
pub(crate) struct CallHook {
    pub run: CallHookFn,
    /// The engine's per-run data, valid while the hook is installed.
    pub data: *mut (),
}

impl RunState<'_, '_> {
    /// Runs the function starting at `entry` with `args` in r1-r5 in a new frame at call depth
    /// `depth` (0 = main program).
    pub fn call(&mut self, entry: usize, args: [u64; 5], depth: usize) -> Result<u64, ExecError> {
        if let Some(h) = self.hook {
            // SAFETY: whoever installed the hook keeps `data` valid while it is installed.
            return unsafe { (h.run)(h.data, self, entry, args, depth) };
        }
        if depth > 0 {
            // A callback invocation (each `bpf_loop` iteration) costs one unit of the budget,
            // like a back-edge: the callback itself need not loop, so without this a checked
            // run under any budget could take 2^23 iterations per `bpf_loop`, and 2^23 to the
            // power of the nesting depth with `bpf_loop`s inside callbacks. Found by the
            // `equiv` fuzz target (one `bpf_loop` of 4 million iterations: 40 s). The JIT
            // charges its own count the same way in its hook.
            if self.budget == 0 {
                return Err(ExecError::Budget { pc: entry });
            }
            self.budget -= 1;
        }
        if self.checked {
            exec::<true>(self, entry, args, depth)
        } else {
            exec::<false>(self, entry, args, depth)
        }
    }
}

#[derive(Clone, Copy, Default)]
pub(crate) struct Frame {
    ret: usize,
    saved: [u64; 4],
}

#[inline(always)]
fn addr_of(base: u64, off: i32) -> u64 {
    base.wrapping_add(off as i64 as u64)
}

#[inline(always)]
fn ptr<T>(addr: u64) -> *mut T {
    std::ptr::with_exposed_provenance_mut::<T>(addr as usize)
}

/// The fetch-decode-execute loop. `CHECKED` selects the checked mode at compile time, so the
/// unchecked instantiation contains no memory checks at all.
fn exec<const CHECKED: bool>(
    st: &mut RunState<'_, '_>,
    entry: usize,
    args: [u64; 5],
    depth0: usize,
) -> Result<u64, ExecError> {
    let prog: &Program = st.prog;
    let ops: &[Op] = &prog.ops;
    // Registers live in a 16-entry file indexed by `x & 15`: the compiler then knows every
    // index is in bounds, without unsafe and without a check.
    let mut r = [0u64; 16];
    r[1..6].copy_from_slice(&args);
    r[10] = st.stack_top - (depth0 * STACK_FRAME_SIZE) as u64;
    let mut depth = 0usize;
    let mut budget = st.budget;
    let mut pc = entry;
    debug_assert!(prog.is_function_entry(entry));

    macro_rules! fault {
        ($addr:expr, $len:expr, $write:expr) => {
            return Err(ExecError::MemoryAccess {
                pc: pc - 1,
                addr: $addr,
                len: $len,
                write: $write,
            })
        };
    }
    macro_rules! check {
        ($op:expr, $addr:expr, $len:expr, $write:expr) => {
            if CHECKED && $op.flags & FLAG_STACK_SAFE == 0 && !st.mem.allows($addr, $len, $write) {
                fault!($addr, $len, $write)
            }
        };
    }
    macro_rules! check_atomic {
        ($op:expr, $addr:expr, $len:expr) => {
            if CHECKED && $op.flags & FLAG_STACK_SAFE == 0 {
                if !st.mem.allows($addr, $len, true) {
                    fault!($addr, $len, true)
                }
                if $addr & ($len - 1) != 0 {
                    return Err(ExecError::Misaligned {
                        pc: pc - 1,
                        addr: $addr,
                        len: $len,
                    });
                }
            }
        };
    }
    macro_rules! jump {
        ($op:expr, $cond:expr) => {
            if $cond {
                // Counted in both modes: besides bounding runaway programs, the branch keeps
                // the compiler from turning jumps into `cmov`s on `pc`, which would make every
                // fetch wait for the comparison instead of being predicted.
                if $op.flags & FLAG_BACKWARD != 0 {
                    if budget == 0 {
                        return Err(ExecError::Budget { pc: pc - 1 });
                    }
                    budget -= 1;
                }
                pc = $op.off as usize;
            }
        };
    }
    macro_rules! load {
        ($op:expr, $t:ty) => {{
            let a = addr_of(r[($op.src & 15) as usize], $op.off);
            check!($op, a, std::mem::size_of::<$t>() as u64, false);
            // SAFETY: checked mode: `a..a+size` lies in a region registered for this run,
            // whose memory is valid for the run (Region's borrow / MapAccess's contract).
            // Unchecked mode: the caller of `run_unchecked` guarantees the same.
            unsafe { ptr::<$t>(a).read_unaligned() }
        }};
    }
    macro_rules! store {
        ($op:expr, $t:ty, $v:expr) => {{
            let a = addr_of(r[($op.dst & 15) as usize], $op.off);
            check!($op, a, std::mem::size_of::<$t>() as u64, true);
            // SAFETY: as for `load!`, with a writable region.
            unsafe { ptr::<$t>(a).write_unaligned($v as $t) }
        }};
    }
    macro_rules! atomic64 {
        ($op:expr) => {{
            let a = addr_of(r[($op.dst & 15) as usize], $op.off);
            check_atomic!($op, a, 8u64);
            debug_assert!(a & 7 == 0);
            // SAFETY: `a` is 8-aligned and inside a writable region valid for the run (checked
            // above, or guaranteed by the verifier in unchecked mode); concurrent access to it
            // is atomic as far as BPF programs are concerned.
            unsafe { AtomicU64::from_ptr(ptr::<u64>(a)) }
        }};
    }
    macro_rules! atomic32 {
        ($op:expr) => {{
            let a = addr_of(r[($op.dst & 15) as usize], $op.off);
            check_atomic!($op, a, 4u64);
            debug_assert!(a & 3 == 0);
            // SAFETY: as for `atomic64!`, 4-aligned.
            unsafe { AtomicU32::from_ptr(ptr::<u32>(a)) }
        }};
    }

    const SC: Ordering = Ordering::SeqCst;
    loop {
        debug_assert!(pc < ops.len());
        // SAFETY: `Program::load` guarantees that every jump/call target is an instruction
        // start inside the program and that the last instruction cannot fall through, so
        // `pc` is always in bounds; entries come from `is_function_entry`-checked pcs.
        let op = unsafe { *ops.get_unchecked(pc) };
        pc += 1;
        let d = (op.dst & 15) as usize;
        let s = (op.src & 15) as usize;
        match op.code {
            Code::Add64I => r[d] = r[d].wrapping_add(op.imm),
            Code::Add64R => r[d] = r[d].wrapping_add(r[s]),
            Code::Sub64I => r[d] = r[d].wrapping_sub(op.imm),
            Code::Sub64R => r[d] = r[d].wrapping_sub(r[s]),
            Code::Mul64I => r[d] = r[d].wrapping_mul(op.imm),
            Code::Mul64R => r[d] = r[d].wrapping_mul(r[s]),
            Code::Div64I => r[d] /= op.imm, // imm != 0: lowered away
            Code::Div64R => r[d] = r[d].checked_div(r[s]).unwrap_or(0),
            Code::SDiv64I => r[d] = (r[d] as i64).wrapping_div(op.imm as i64) as u64,
            Code::SDiv64R => {
                let v = r[s] as i64;
                r[d] = if v == 0 {
                    0
                } else {
                    (r[d] as i64).wrapping_div(v) as u64
                }
            }
            Code::Mod64I => r[d] %= op.imm,
            Code::Mod64R => {
                if r[s] != 0 {
                    r[d] %= r[s]
                }
            }
            Code::SMod64I => r[d] = (r[d] as i64).wrapping_rem(op.imm as i64) as u64,
            Code::SMod64R => {
                let v = r[s] as i64;
                if v != 0 {
                    r[d] = (r[d] as i64).wrapping_rem(v) as u64
                }
            }
            Code::Or64I => r[d] |= op.imm,
            Code::Or64R => r[d] |= r[s],
            Code::And64I => r[d] &= op.imm,
            Code::And64R => r[d] &= r[s],
            Code::Xor64I => r[d] ^= op.imm,
            Code::Xor64R => r[d] ^= r[s],
            Code::Lsh64I => r[d] = r[d].wrapping_shl(op.imm as u32),
            Code::Lsh64R => r[d] = r[d].wrapping_shl(r[s] as u32),
            Code::Rsh64I => r[d] = r[d].wrapping_shr(op.imm as u32),
            Code::Rsh64R => r[d] = r[d].wrapping_shr(r[s] as u32),
            Code::Arsh64I => r[d] = (r[d] as i64).wrapping_shr(op.imm as u32) as u64,
            Code::Arsh64R => r[d] = (r[d] as i64).wrapping_shr(r[s] as u32) as u64,
            Code::Mov64I => r[d] = op.imm,
            Code::Mov64R => r[d] = r[s],
            Code::Neg64 => r[d] = r[d].wrapping_neg(),
            Code::MovSx64B => r[d] = r[s] as i8 as i64 as u64,
            Code::MovSx64H => r[d] = r[s] as i16 as i64 as u64,
            Code::MovSx64W => r[d] = r[s] as i32 as i64 as u64,

            Code::Add32I => r[d] = (r[d] as u32).wrapping_add(op.imm as u32) as u64,
            Code::Add32R => r[d] = (r[d] as u32).wrapping_add(r[s] as u32) as u64,
            Code::Sub32I => r[d] = (r[d] as u32).wrapping_sub(op.imm as u32) as u64,
            Code::Sub32R => r[d] = (r[d] as u32).wrapping_sub(r[s] as u32) as u64,
            Code::Mul32I => r[d] = (r[d] as u32).wrapping_mul(op.imm as u32) as u64,
            Code::Mul32R => r[d] = (r[d] as u32).wrapping_mul(r[s] as u32) as u64,
            Code::Div32I => r[d] = (r[d] as u32 / op.imm as u32) as u64,
            Code::Div32R => r[d] = (r[d] as u32).checked_div(r[s] as u32).unwrap_or(0) as u64,
            Code::SDiv32I => r[d] = (r[d] as i32).wrapping_div(op.imm as i32) as u32 as u64,
            Code::SDiv32R => {
                let v = r[s] as i32;
                r[d] = if v == 0 {
                    0
                } else {
                    (r[d] as i32).wrapping_div(v) as u32 as u64
                }
            }
            Code::Mod32I => r[d] = (r[d] as u32 % op.imm as u32) as u64,
            Code::Mod32R => {
                let v = r[s] as u32;
                r[d] = if v == 0 {
                    r[d] as u32 as u64
                } else {
                    (r[d] as u32 % v) as u64
                }
            }
            Code::SMod32I => r[d] = (r[d] as i32).wrapping_rem(op.imm as i32) as u32 as u64,
            Code::SMod32R => {
                let v = r[s] as i32;
                r[d] = if v == 0 {
                    r[d] as u32 as u64
                } else {
                    (r[d] as i32).wrapping_rem(v) as u32 as u64
                }
            }
            Code::Or32I => r[d] = (r[d] as u32 | op.imm as u32) as u64,
            Code::Or32R => r[d] = (r[d] as u32 | r[s] as u32) as u64,
            Code::And32I => r[d] = (r[d] as u32 & op.imm as u32) as u64,
            Code::And32R => r[d] = (r[d] as u32 & r[s] as u32) as u64,
            Code::Xor32I => r[d] = (r[d] as u32 ^ op.imm as u32) as u64,
            Code::Xor32R => r[d] = (r[d] as u32 ^ r[s] as u32) as u64,
            Code::Lsh32I => r[d] = (r[d] as u32).wrapping_shl(op.imm as u32) as u64,
            Code::Lsh32R => r[d] = (r[d] as u32).wrapping_shl(r[s] as u32) as u64,
            Code::Rsh32I => r[d] = (r[d] as u32).wrapping_shr(op.imm as u32) as u64,
            Code::Rsh32R => r[d] = (r[d] as u32).wrapping_shr(r[s] as u32) as u64,
            Code::Arsh32I => r[d] = (r[d] as i32).wrapping_shr(op.imm as u32) as u32 as u64,
            Code::Arsh32R => r[d] = (r[d] as i32).wrapping_shr(r[s] as u32) as u32 as u64,
            Code::Mov32I => r[d] = op.imm as u32 as u64,
            Code::Mov32R => r[d] = r[s] as u32 as u64,
            Code::Neg32 => r[d] = (r[d] as u32).wrapping_neg() as u64,
            Code::MovSx32B => r[d] = r[s] as i8 as i32 as u32 as u64,
            Code::MovSx32H => r[d] = r[s] as i16 as i32 as u32 as u64,

            Code::Le16 => r[d] = (r[d] as u16).to_le() as u64,
            Code::Le32 => r[d] = (r[d] as u32).to_le() as u64,
            Code::Le64 => r[d] = r[d].to_le(),
            Code::Be16 => r[d] = (r[d] as u16).to_be() as u64,
            Code::Be32 => r[d] = (r[d] as u32).to_be() as u64,
            Code::Be64 => r[d] = r[d].to_be(),
            Code::Swap16 => r[d] = (r[d] as u16).swap_bytes() as u64,
            Code::Swap32 => r[d] = (r[d] as u32).swap_bytes() as u64,
            Code::Swap64 => r[d] = r[d].swap_bytes(),

            Code::LdImm64 => {
                r[d] = op.imm;
                pc += 1;
            }
            Code::LdImm64Hi => return Err(ExecError::InvalidInstruction { pc: pc - 1 }),
            Code::Ldx8 => r[d] = load!(op, u8) as u64,
            Code::Ldx16 => r[d] = load!(op, u16) as u64,
            Code::Ldx32 => r[d] = load!(op, u32) as u64,
            Code::Ldx64 => r[d] = load!(op, u64),
            Code::Ldxs8 => r[d] = load!(op, i8) as i64 as u64,
            Code::Ldxs16 => r[d] = load!(op, i16) as i64 as u64,
            Code::Ldxs32 => r[d] = load!(op, i32) as i64 as u64,
            Code::St8 => store!(op, u8, op.imm),
            Code::St16 => store!(op, u16, op.imm),
            Code::St32 => store!(op, u32, op.imm),
            Code::St64 => store!(op, u64, op.imm),
            Code::Stx8 => store!(op, u8, r[s]),
            Code::Stx16 => store!(op, u16, r[s]),
            Code::Stx32 => store!(op, u32, r[s]),
            Code::Stx64 => store!(op, u64, r[s]),

            Code::AAdd32 => {
                atomic32!(op).fetch_add(r[s] as u32, SC);
            }
            Code::AOr32 => {
                atomic32!(op).fetch_or(r[s] as u32, SC);
            }
            Code::AAnd32 => {
                atomic32!(op).fetch_and(r[s] as u32, SC);
            }
            Code::AXor32 => {
                atomic32!(op).fetch_xor(r[s] as u32, SC);
            }
            Code::AFAdd32 => r[s] = atomic32!(op).fetch_add(r[s] as u32, SC) as u64,
            Code::AFOr32 => r[s] = atomic32!(op).fetch_or(r[s] as u32, SC) as u64,
            Code::AFAnd32 => r[s] = atomic32!(op).fetch_and(r[s] as u32, SC) as u64,
            Code::AFXor32 => r[s] = atomic32!(op).fetch_xor(r[s] as u32, SC) as u64,
            Code::Xchg32 => r[s] = atomic32!(op).swap(r[s] as u32, SC) as u64,
            Code::CmpXchg32 => {
                let a = atomic32!(op);
                r[0] = match a.compare_exchange(r[0] as u32, r[s] as u32, SC, SC) {
                    Ok(v) | Err(v) => v as u64,
                }
            }
            Code::AAdd64 => {
                atomic64!(op).fetch_add(r[s], SC);
            }
            Code::AOr64 => {
                atomic64!(op).fetch_or(r[s], SC);
            }
            Code::AAnd64 => {
                atomic64!(op).fetch_and(r[s], SC);
            }
            Code::AXor64 => {
                atomic64!(op).fetch_xor(r[s], SC);
            }
            Code::AFAdd64 => r[s] = atomic64!(op).fetch_add(r[s], SC),
            Code::AFOr64 => r[s] = atomic64!(op).fetch_or(r[s], SC),
            Code::AFAnd64 => r[s] = atomic64!(op).fetch_and(r[s], SC),
            Code::AFXor64 => r[s] = atomic64!(op).fetch_xor(r[s], SC),
            Code::Xchg64 => r[s] = atomic64!(op).swap(r[s], SC),
            Code::CmpXchg64 => {
                let a = atomic64!(op);
                r[0] = match a.compare_exchange(r[0], r[s], SC, SC) {
                    Ok(v) | Err(v) => v,
                }
            }

            Code::Ja => jump!(op, true),
            Code::Jeq64I => jump!(op, r[d] == op.imm),
            Code::Jeq64R => jump!(op, r[d] == r[s]),
            Code::Jne64I => jump!(op, r[d] != op.imm),
            Code::Jne64R => jump!(op, r[d] != r[s]),
            Code::Jgt64I => jump!(op, r[d] > op.imm),
            Code::Jgt64R => jump!(op, r[d] > r[s]),
            Code::Jge64I => jump!(op, r[d] >= op.imm),
            Code::Jge64R => jump!(op, r[d] >= r[s]),
            Code::Jlt64I => jump!(op, r[d] < op.imm),
            Code::Jlt64R => jump!(op, r[d] < r[s]),
            Code::Jle64I => jump!(op, r[d] <= op.imm),
            Code::Jle64R => jump!(op, r[d] <= r[s]),
            Code::Jset64I => jump!(op, r[d] & op.imm != 0),
            Code::Jset64R => jump!(op, r[d] & r[s] != 0),
            Code::Jsgt64I => jump!(op, (r[d] as i64) > op.imm as i64),
            Code::Jsgt64R => jump!(op, (r[d] as i64) > r[s] as i64),
            Code::Jsge64I => jump!(op, (r[d] as i64) >= op.imm as i64),
            Code::Jsge64R => jump!(op, (r[d] as i64) >= r[s] as i64),
            Code::Jslt64I => jump!(op, (r[d] as i64) < op.imm as i64),
            Code::Jslt64R => jump!(op, (r[d] as i64) < r[s] as i64),
            Code::Jsle64I => jump!(op, (r[d] as i64) <= op.imm as i64),
            Code::Jsle64R => jump!(op, (r[d] as i64) <= r[s] as i64),
            Code::Jeq32I => jump!(op, r[d] as u32 == op.imm as u32),
            Code::Jeq32R => jump!(op, r[d] as u32 == r[s] as u32),
            Code::Jne32I => jump!(op, r[d] as u32 != op.imm as u32),
            Code::Jne32R => jump!(op, r[d] as u32 != r[s] as u32),
            Code::Jgt32I => jump!(op, r[d] as u32 > op.imm as u32),
            Code::Jgt32R => jump!(op, r[d] as u32 > r[s] as u32),
            Code::Jge32I => jump!(op, r[d] as u32 >= op.imm as u32),
            Code::Jge32R => jump!(op, r[d] as u32 >= r[s] as u32),
            Code::Jlt32I => jump!(op, (r[d] as u32) < op.imm as u32),
            Code::Jlt32R => jump!(op, (r[d] as u32) < r[s] as u32),
            Code::Jle32I => jump!(op, r[d] as u32 <= op.imm as u32),
            Code::Jle32R => jump!(op, r[d] as u32 <= r[s] as u32),
            Code::Jset32I => jump!(op, r[d] as u32 & op.imm as u32 != 0),
            Code::Jset32R => jump!(op, r[d] as u32 & r[s] as u32 != 0),
            Code::Jsgt32I => jump!(op, (r[d] as i32) > op.imm as i32),
            Code::Jsgt32R => jump!(op, (r[d] as i32) > r[s] as i32),
            Code::Jsge32I => jump!(op, (r[d] as i32) >= op.imm as i32),
            Code::Jsge32R => jump!(op, (r[d] as i32) >= r[s] as i32),
            Code::Jslt32I => jump!(op, (r[d] as i32) < op.imm as i32),
            Code::Jslt32R => jump!(op, (r[d] as i32) < r[s] as i32),
            Code::Jsle32I => jump!(op, (r[d] as i32) <= op.imm as i32),
            Code::Jsle32R => jump!(op, (r[d] as i32) <= r[s] as i32),

            Code::CallX if r[s] & FUNC_TOKEN_TAG == FUNC_TOKEN_TAG => {
                // callx of a function pointer (`lddw rX, subprog`): a local call.
                let t = (r[s] ^ FUNC_TOKEN_TAG) as usize;
                if !prog.is_function_entry(t) {
                    return Err(ExecError::InvalidCallTarget {
                        pc: pc - 1,
                        target: r[s],
                    });
                }
                if depth0 + depth + 1 >= MAX_CALL_FRAMES {
                    return Err(ExecError::CallDepth { pc: pc - 1 });
                }
                st.frames[depth0 + depth] = Frame {
                    ret: pc,
                    saved: [r[6], r[7], r[8], r[9]],
                };
                depth += 1;
                r[10] -= STACK_FRAME_SIZE as u64;
                pc = t;
            }
            Code::Call | Code::CallX => {
                let id = if op.code == Code::Call { op.imm } else { r[s] };
                let f = match st.helpers.get(id) {
                    Some(h) => h.func,
                    None => return Err(ExecError::UnknownHelper { pc: pc - 1, id }),
                };
                st.budget = budget;
                let res = {
                    let mut ctx = HelperCtx::new(st, depth0 + depth, pc - 1);
                    f(&mut ctx, [r[1], r[2], r[3], r[4], r[5]])
                };
                budget = st.budget;
                match res {
                    Ok(v) => r[0] = v,
                    Err(error) => {
                        return Err(ExecError::Helper {
                            pc: pc - 1,
                            id,
                            error,
                        })
                    }
                }
            }
            Code::CallLocal => {
                if depth0 + depth + 1 >= MAX_CALL_FRAMES {
                    return Err(ExecError::CallDepth { pc: pc - 1 });
                }
                if op.flags & FLAG_BACKWARD != 0 {
                    if budget == 0 {
                        return Err(ExecError::Budget { pc: pc - 1 });
                    }
                    budget -= 1;
                }
                st.frames[depth0 + depth] = Frame {
                    ret: pc,
                    saved: [r[6], r[7], r[8], r[9]],
                };
                depth += 1;
                r[10] -= STACK_FRAME_SIZE as u64;
                pc = op.off as usize;
            }
            Code::Exit => {
                if depth == 0 {
                    st.budget = budget;
                    return Ok(r[0]);
                }
                depth -= 1;
                let f = st.frames[depth0 + depth];
                r[6..10].copy_from_slice(&f.saved);
                r[10] += STACK_FRAME_SIZE as u64;
                pc = f.ret;
            }
        }
    }
}

/// Calls `run` with the conformance suite's convention for `mem`: r1 = its address, r2 = its
/// length (both 0 if empty), `mem` the one writable region (no region if empty).
pub(crate) fn with_mem_args<R>(
    mem: &mut [u8],
    run: impl FnOnce([u64; 5], &[Region<'_>]) -> R,
) -> R {
    if mem.is_empty() {
        return run([0; 5], &[]);
    }
    let len = mem.len() as u64;
    let region = Region::writable(RegionKind::Mem, mem);
    run([region.addr(), len, 0, 0, 0], &[region])
}

/// Runs a prepared [`Program`] with a [`Helpers`] table. Owns the stack (8 frames × 512 bytes,
/// zeroed once at creation; like the kernel's, it is not cleared between runs) and the
/// region set, so a run allocates nothing. One interpreter per thread.
pub struct Interpreter<'p> {
    prog: &'p Program,
    helpers: &'p Helpers,
    pub(crate) stack: Box<[u64]>,
    mem: Memory,
    frames: [Frame; MAX_CALL_FRAMES],
    budget: Option<u64>,
}

impl<'p> Interpreter<'p> {
    /// Fails if a static helper call names a helper the table does not have (the kernel's
    /// `invalid func unknown#N`).
    pub fn new(prog: &'p Program, helpers: &'p Helpers) -> Result<Self, LoadError> {
        for &(pc, id) in prog.helper_calls() {
            if helpers.get(id as u32 as u64).is_none() {
                return Err(LoadError::UnknownHelper { pc, id });
            }
        }
        Ok(Interpreter {
            prog,
            helpers,
            stack: vec![0u64; STACK_SIZE / 8].into_boxed_slice(),
            mem: Memory::default(),
            frames: [Frame::default(); MAX_CALL_FRAMES],
            budget: None,
        })
    }

    pub fn program(&self) -> &'p Program {
        self.prog
    }

    /// Limits how many backward jumps, backward local calls and callback invocations a run
    /// may take (counted across callbacks, in both modes); `None` (default) = unlimited.
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
        self.run_mode(true, args, regions, env)
    }

    /// Unchecked run: like [`Interpreter::run`], without memory checks.
    ///
    /// # Safety
    /// Every memory access the program can make must be inside `regions`, the stack frame of
    /// the running function (or a caller's, through a pointer), or memory a helper handed out
    /// and that stays valid for the run, with atomics naturally aligned; helper arguments must
    /// satisfy the helpers' contracts. That is what a verifier establishes.
    pub unsafe fn run_unchecked(
        &mut self,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        self.run_mode(false, args, regions, env)
    }

    /// Checked run in the conformance suite's convention: r1 = address of `mem`, r2 = its
    /// length (both 0 if empty), `mem` writable.
    pub fn run_mem(&mut self, mem: &mut [u8], env: &mut Env<'_>) -> Result<u64, ExecError> {
        with_mem_args(mem, |args, regions| self.run(args, regions, env))
    }

    fn run_mode(
        &mut self,
        checked: bool,
        args: [u64; 5],
        regions: &[Region<'_>],
        env: &mut Env<'_>,
    ) -> Result<u64, ExecError> {
        let lo = self.stack.as_mut_ptr().expose_provenance() as u64;
        self.mem.reset(lo, STACK_SIZE as u64, regions);
        let mut st = RunState {
            prog: self.prog,
            helpers: self.helpers,
            mem: &mut self.mem,
            env,
            stack_top: lo + STACK_SIZE as u64,
            budget: self.budget.unwrap_or(u64::MAX),
            checked,
            frames: &mut self.frames,
            hook: None,
        };
        let res = st.call(0, args, 0);
        // Regions borrow caller memory only for this run.
        self.mem.clear();
        res
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn prog(insns: &[Instruction]) -> Result<Program, LoadError> {
        let slots: Vec<Insn> = insns.iter().flat_map(|i| i.encode()).collect();
        Program::load(&slots, LoadOptions::default())
    }

    #[test]
    fn structural_checks() {
        use Instruction as I;
        let mov = |d, i| I::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: d,
            src: Operand::Imm(i),
        };
        assert!(matches!(
            prog(&[mov(0, 1)]),
            Err(LoadError::Invalid { pc: 0, .. })
        ));
        assert!(matches!(
            prog(&[mov(10, 1), I::Exit]),
            Err(LoadError::Invalid { pc: 0, .. })
        ));
        assert!(matches!(
            prog(&[
                I::Ja {
                    off: 5,
                    long: false
                },
                I::Exit
            ]),
            Err(LoadError::Invalid { .. })
        ));
        let ld = I::LdImm64 {
            dst: 0,
            kind: LdImmKind::Imm64,
            imm: 1,
            next_imm: 0,
        };
        let e = prog(&[
            I::Ja {
                off: 1,
                long: false,
            },
            ld,
            I::Exit,
        ])
        .unwrap_err();
        assert!(e.to_string().contains("middle of ldimm64"), "{e}");
        let e = prog(&[
            I::LdImm64 {
                dst: 1,
                kind: LdImmKind::MapFd,
                imm: 3,
                next_imm: 0,
            },
            I::Exit,
        ])
        .unwrap_err();
        assert!(matches!(e, LoadError::Unresolved { pc: 0, .. }));
        let resolve = |p: &PseudoLoad| Ok(0x1000 + p.imm as u64);
        let slots = I::LdImm64 {
            dst: 1,
            kind: LdImmKind::MapFd,
            imm: 3,
            next_imm: 0,
        }
        .encode();
        let slots: Vec<Insn> = slots.into_iter().chain(I::Exit.encode()).collect();
        let p = Program::load(
            &slots,
            LoadOptions {
                resolve: Some(&resolve),
            },
        )
        .unwrap();
        assert_eq!(p.ops()[0].imm, 0x1003);
    }

    #[test]
    fn op_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Op>(), 16);
    }

    /// `r0 = bpf_loop(n, cb, 0, 0)`; cb returns 0 (so every iteration runs).
    pub(crate) fn bpf_loop_slots(n: i32) -> Vec<Insn> {
        vec![
            Insn::new(0xb7, 1, 0, 0, n),
            Insn::new(0x18, 2, 4, 0, 5), // r2 = subprog at 1 + 1 + 5 = 7
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(0xb7, 3, 0, 0, 0),
            Insn::new(0xb7, 4, 0, 0, 0),
            Insn::new(0x85, 0, 0, 0, 181),
            Insn::new(0x95, 0, 0, 0, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ]
    }

    /// Regression (equiv fuzz target): callback invocations are charged to the budget, one
    /// each, so `bpf_loop`'s 2^23 iterations cannot outlast it.
    #[test]
    fn callbacks_are_charged_to_the_budget() {
        let helpers = Helpers::standard();
        let run = |n: i32, budget: u64| {
            let p = Program::load(&bpf_loop_slots(n), LoadOptions::default()).unwrap();
            let mut vm = Interpreter::new(&p, &helpers).unwrap();
            vm.set_budget(Some(budget));
            vm.run([0; 5], &[], &mut Env::new())
        };
        assert_eq!(run(1000, 1000), Ok(1000));
        assert_eq!(
            run(1 << 23, 1000),
            Err(ExecError::Helper {
                pc: 5,
                id: 181,
                error: HelperError::Callback(Box::new(ExecError::Budget { pc: 7 })),
            })
        );
    }
}
