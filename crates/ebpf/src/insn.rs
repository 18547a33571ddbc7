//! The eBPF instruction encoding (RFC 9669), a strict decoder and a kernel-style disassembler.
//!
//! A program is a sequence of 8-byte slots ([`Insn`]). Every instruction takes one slot except
//! the 64-bit immediate load (`lddw`, opcode `0x18`), which takes two. The decoder turns slots
//! into [`Instruction`]s — a semantic form with one variant per instruction kind — and rejects
//! every encoding that the kernel rejects structurally (unknown opcodes, reserved fields that are
//! not zero, a truncated `lddw`), reporting the slot index and the reason. Pseudo sources of
//! `lddw` (map fd, map value, BTF id, function, map index) and of `call` (local, kfunc) are
//! kept as data: resolving them is the loader's business.
//!
//! The disassembler prints the text the kernel's verifier log and bpftool print
//! (`r0 = 1`, `w1 += w2`, `if r1 > 0x2 goto +3`, `*(u32 *)(r10 -4) = r1`, `call 1`).

use std::fmt;

// ---------------------------------------------------------------------------------------------
// Encoding constants (uapi/linux/bpf_common.h, uapi/linux/bpf.h)
// ---------------------------------------------------------------------------------------------

/// Instruction classes (low 3 bits of the opcode).
pub mod class {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
}

/// Size field of load/store opcodes.
pub mod size {
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
}

/// Mode field of load/store opcodes.
pub mod mode {
    pub const IMM: u8 = 0x00;
    pub const ABS: u8 = 0x20;
    pub const IND: u8 = 0x40;
    pub const MEM: u8 = 0x60;
    pub const MEMSX: u8 = 0x80;
    pub const ATOMIC: u8 = 0xc0;
}

/// Source bit of ALU and JMP opcodes.
pub mod src {
    /// Immediate operand.
    pub const K: u8 = 0x00;
    /// Register operand.
    pub const X: u8 = 0x08;
}

/// Operation field of ALU/ALU64 opcodes.
pub mod alu {
    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const MUL: u8 = 0x20;
    pub const DIV: u8 = 0x30;
    pub const OR: u8 = 0x40;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const NEG: u8 = 0x80;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const ARSH: u8 = 0xc0;
    pub const END: u8 = 0xd0;
}

/// Operation field of JMP/JMP32 opcodes.
pub mod jmp {
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const JSGT: u8 = 0x60;
    pub const JSGE: u8 = 0x70;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const JSLT: u8 = 0xc0;
    pub const JSLE: u8 = 0xd0;
}

/// `imm` values of `BPF_STX | BPF_ATOMIC` instructions.
pub mod atomic {
    pub const FETCH: i32 = 0x01;
    pub const ADD: i32 = 0x00;
    pub const OR: i32 = 0x40;
    pub const AND: i32 = 0x50;
    pub const XOR: i32 = 0xa0;
    pub const XCHG: i32 = 0xe0 | FETCH;
    pub const CMPXCHG: i32 = 0xf0 | FETCH;
}

/// `src_reg` values of `lddw` and `call`.
pub mod pseudo {
    pub const MAP_FD: u8 = 1;
    pub const MAP_VALUE: u8 = 2;
    pub const BTF_ID: u8 = 3;
    pub const FUNC: u8 = 4;
    pub const MAP_IDX: u8 = 5;
    pub const MAP_IDX_VALUE: u8 = 6;
    /// `call` with `src_reg == 1`: bpf-to-bpf call, `imm` is the pc-relative target.
    pub const CALL: u8 = 1;
    /// `call` with `src_reg == 2`: kfunc call, `imm` is a BTF id.
    pub const KFUNC_CALL: u8 = 2;
}

/// Number of registers r0..r10.
pub const NUM_REGS: usize = 11;
/// The read-only frame pointer.
pub const FRAME_POINTER: u8 = 10;
/// Size of one 8-byte instruction slot.
pub const INSN_SIZE: usize = 8;

// ---------------------------------------------------------------------------------------------
// Raw slot
// ---------------------------------------------------------------------------------------------

/// One raw 8-byte instruction slot, fields as in `struct bpf_insn`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Decodes the little-endian 8-byte encoding (dst in the low nibble of byte 1).
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    /// The slot read as one little-endian 64-bit word (opcode in the low byte), the way the
    /// conformance suite's `-- raw` sections write instructions.
    pub fn from_u64(w: u64) -> Self {
        Self::from_bytes(w.to_le_bytes())
    }

    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }

    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// Splits a byte string into slots. Fails if the length is not a multiple of 8.
    pub fn slots_from_bytes(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
        if bytes.len() % INSN_SIZE != 0 {
            return Err(DecodeError {
                pc: bytes.len() / INSN_SIZE,
                kind: DecodeErrorKind::TrailingBytes(bytes.len() % INSN_SIZE),
            });
        }
        Ok(bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| Insn::from_bytes(c.try_into().expect("8-byte chunk")))
            .collect())
    }

    pub fn slots_to_bytes(slots: &[Insn]) -> Vec<u8> {
        slots.iter().flat_map(|i| i.to_bytes()).collect()
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: {}, src: {}, off: {}, imm: {} }}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Decoded form
// ---------------------------------------------------------------------------------------------

/// Operand width of ALU and JMP instructions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Width {
    /// `BPF_ALU` / `BPF_JMP32`: operates on the low 32 bits; ALU results are zero-extended.
    W32,
    /// `BPF_ALU64` / `BPF_JMP`.
    W64,
}

/// Access size of loads, stores and atomics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemSize {
    B,
    H,
    W,
    DW,
}

impl MemSize {
    pub fn bytes(self) -> usize {
        match self {
            MemSize::B => 1,
            MemSize::H => 2,
            MemSize::W => 4,
            MemSize::DW => 8,
        }
    }

    /// The size field of a load/store opcode.
    fn code(self) -> u8 {
        match self {
            MemSize::B => size::B,
            MemSize::H => size::H,
            MemSize::W => size::W,
            MemSize::DW => size::DW,
        }
    }

    fn from_code(code: u8) -> MemSize {
        match code & 0x18 {
            size::W => MemSize::W,
            size::H => MemSize::H,
            size::B => MemSize::B,
            _ => MemSize::DW,
        }
    }

    fn unsigned_name(self) -> &'static str {
        match self {
            MemSize::B => "u8",
            MemSize::H => "u16",
            MemSize::W => "u32",
            MemSize::DW => "u64",
        }
    }

    fn signed_name(self) -> &'static str {
        match self {
            MemSize::B => "s8",
            MemSize::H => "s16",
            MemSize::W => "s32",
            MemSize::DW => "s64",
        }
    }
}

/// Second operand of ALU and conditional jump instructions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Operand {
    Reg(u8),
    Imm(i32),
}

/// Binary ALU operations. `SDiv`/`SMod` are `DIV`/`MOD` with `off == 1`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    SDiv,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    SMod,
    Xor,
    Mov,
    Arsh,
}

impl AluOp {
    fn symbol(self) -> &'static str {
        match self {
            AluOp::Add => "+=",
            AluOp::Sub => "-=",
            AluOp::Mul => "*=",
            AluOp::Div => "/=",
            AluOp::SDiv => "s/=",
            AluOp::Or => "|=",
            AluOp::And => "&=",
            AluOp::Lsh => "<<=",
            AluOp::Rsh => ">>=",
            AluOp::Mod => "%=",
            AluOp::SMod => "s%=",
            AluOp::Xor => "^=",
            AluOp::Mov => "=",
            AluOp::Arsh => "s>>=",
        }
    }
}

/// Conditions of conditional jumps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum JmpCond {
    Eq,
    Gt,
    Ge,
    Set,
    Ne,
    Sgt,
    Sge,
    Lt,
    Le,
    Slt,
    Sle,
}

impl JmpCond {
    fn symbol(self) -> &'static str {
        match self {
            JmpCond::Eq => "==",
            JmpCond::Gt => ">",
            JmpCond::Ge => ">=",
            JmpCond::Set => "&",
            JmpCond::Ne => "!=",
            JmpCond::Sgt => "s>",
            JmpCond::Sge => "s>=",
            JmpCond::Lt => "<",
            JmpCond::Le => "<=",
            JmpCond::Slt => "s<",
            JmpCond::Sle => "s<=",
        }
    }
}

/// Read-modify-write operations of `BPF_ATOMIC`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AtomicOp {
    Add,
    Or,
    And,
    Xor,
    /// Always fetches.
    Xchg,
    /// Always fetches; compares with r0, old value goes to r0.
    CmpXchg,
}

/// Byte-order operations (`BPF_END`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Endian {
    /// `BPF_ALU | BPF_END | BPF_TO_LE`: on a little-endian host, truncation to `bits`.
    ToLe,
    /// `BPF_ALU | BPF_END | BPF_TO_BE`.
    ToBe,
    /// `BPF_ALU64 | BPF_END`: unconditional byte swap.
    Swap,
}

/// What a `lddw` loads, by its `src_reg`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LdImmKind {
    /// Plain 64-bit immediate.
    Imm64,
    /// `imm` is a map fd; the register gets the map.
    MapFd,
    /// `imm` is a map fd, `next_imm` an offset into the map's value.
    MapValue,
    /// `imm` is the BTF id of a kernel variable.
    BtfId,
    /// `imm` is the pc-relative start of a subprogram (callback).
    Func,
    /// `imm` is an index into the program's map-fd array.
    MapIdx,
    /// `imm` an index into the map-fd array, `next_imm` an offset into the value.
    MapIdxValue,
}

/// Call targets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CallTarget {
    /// Helper by static id (`src_reg == 0`).
    Helper(i32),
    /// bpf-to-bpf call; target slot = pc + 1 + offset.
    Local(i32),
    /// kfunc by BTF id; `off` selects the BTF object (0 = vmlinux).
    Kfunc { btf_id: i32, off: i16 },
    /// `callx`: the register holds the target.
    Reg(u8),
}

/// A decoded instruction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Instruction {
    Alu {
        width: Width,
        op: AluOp,
        dst: u8,
        src: Operand,
    },
    Neg {
        width: Width,
        dst: u8,
    },
    /// Sign-extending move: `dst = (s<bits>) src`.
    MovSx {
        width: Width,
        dst: u8,
        src: u8,
        bits: u8,
    },
    End {
        kind: Endian,
        bits: u8,
        dst: u8,
    },
    /// Two-slot 64-bit immediate load; `imm` is the first slot's, `next_imm` the second's.
    LdImm64 {
        dst: u8,
        kind: LdImmKind,
        imm: i32,
        next_imm: i32,
    },
    /// Legacy packet access `r0 = *(size *)skb[imm]`.
    LdAbs {
        size: MemSize,
        imm: i32,
    },
    /// Legacy packet access `r0 = *(size *)skb[src + imm]`.
    LdInd {
        size: MemSize,
        src: u8,
        imm: i32,
    },
    /// `dst = *(size *)(src + off)`, sign-extending if `signed` (`BPF_MEMSX`).
    Ldx {
        size: MemSize,
        signed: bool,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// `*(size *)(dst + off) = imm`.
    St {
        size: MemSize,
        dst: u8,
        off: i16,
        imm: i32,
    },
    /// `*(size *)(dst + off) = src`.
    Stx {
        size: MemSize,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// Atomic read-modify-write on `*(size *)(dst + off)` with `src`.
    Atomic {
        size: MemSize,
        op: AtomicOp,
        fetch: bool,
        dst: u8,
        src: u8,
        off: i16,
    },
    /// Unconditional jump; `long` for `gotol` (`BPF_JMP32 | BPF_JA`, offset in `imm`).
    Ja {
        off: i32,
        long: bool,
    },
    Jmp {
        width: Width,
        cond: JmpCond,
        dst: u8,
        src: Operand,
        off: i16,
    },
    Call(CallTarget),
    Exit,
}

impl Instruction {
    /// Number of slots the instruction occupies (2 for `lddw`).
    pub fn slots(&self) -> usize {
        match self {
            Instruction::LdImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// The 64-bit value of a plain `lddw`.
    pub fn imm64(imm: i32, next_imm: i32) -> u64 {
        ((next_imm as u32 as u64) << 32) | imm as u32 as u64
    }

    /// Jump target slot of a jump at `pc`, if the instruction is a jump or local call.
    pub fn branch_target(&self, pc: usize) -> Option<i64> {
        let rel = match *self {
            Instruction::Ja { off, .. } => off as i64,
            Instruction::Jmp { off, .. } => off as i64,
            Instruction::Call(CallTarget::Local(off)) => off as i64,
            _ => return None,
        };
        Some(pc as i64 + 1 + rel)
    }

    /// Encodes the instruction back into its slots (one, or two for `lddw`).
    pub fn encode(&self) -> Vec<Insn> {
        let w = |width: Width, c32: u8| if width == Width::W32 { c32 } else { c32 | 0x03 };
        let alu_class = |width| w(width, class::ALU);
        let jmp_class = |width: Width| {
            if width == Width::W32 {
                class::JMP32
            } else {
                class::JMP
            }
        };
        let sz = MemSize::code;
        match *self {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let (code, off) = match op {
                    AluOp::Add => (alu::ADD, 0),
                    AluOp::Sub => (alu::SUB, 0),
                    AluOp::Mul => (alu::MUL, 0),
                    AluOp::Div => (alu::DIV, 0),
                    AluOp::SDiv => (alu::DIV, 1),
                    AluOp::Or => (alu::OR, 0),
                    AluOp::And => (alu::AND, 0),
                    AluOp::Lsh => (alu::LSH, 0),
                    AluOp::Rsh => (alu::RSH, 0),
                    AluOp::Mod => (alu::MOD, 0),
                    AluOp::SMod => (alu::MOD, 1),
                    AluOp::Xor => (alu::XOR, 0),
                    AluOp::Mov => (alu::MOV, 0),
                    AluOp::Arsh => (alu::ARSH, 0),
                };
                match src {
                    Operand::Reg(r) => {
                        vec![Insn::new(alu_class(width) | code | src::X, dst, r, off, 0)]
                    }
                    Operand::Imm(i) => {
                        vec![Insn::new(alu_class(width) | code | src::K, dst, 0, off, i)]
                    }
                }
            }
            Instruction::Neg { width, dst } => {
                vec![Insn::new(alu_class(width) | alu::NEG, dst, 0, 0, 0)]
            }
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => {
                vec![Insn::new(
                    alu_class(width) | alu::MOV | src::X,
                    dst,
                    src,
                    bits as i16,
                    0,
                )]
            }
            Instruction::End { kind, bits, dst } => {
                let code = match kind {
                    Endian::ToLe => class::ALU | alu::END | src::K,
                    Endian::ToBe => class::ALU | alu::END | src::X,
                    Endian::Swap => class::ALU64 | alu::END,
                };
                vec![Insn::new(code, dst, 0, 0, bits as i32)]
            }
            Instruction::LdImm64 {
                dst,
                kind,
                imm,
                next_imm,
            } => {
                let s = match kind {
                    LdImmKind::Imm64 => 0,
                    LdImmKind::MapFd => pseudo::MAP_FD,
                    LdImmKind::MapValue => pseudo::MAP_VALUE,
                    LdImmKind::BtfId => pseudo::BTF_ID,
                    LdImmKind::Func => pseudo::FUNC,
                    LdImmKind::MapIdx => pseudo::MAP_IDX,
                    LdImmKind::MapIdxValue => pseudo::MAP_IDX_VALUE,
                };
                vec![
                    Insn::new(class::LD | mode::IMM | size::DW, dst, s, 0, imm),
                    Insn::new(0, 0, 0, 0, next_imm),
                ]
            }
            Instruction::LdAbs { size, imm } => {
                vec![Insn::new(class::LD | mode::ABS | sz(size), 0, 0, 0, imm)]
            }
            Instruction::LdInd { size, src, imm } => {
                vec![Insn::new(class::LD | mode::IND | sz(size), 0, src, 0, imm)]
            }
            Instruction::Ldx {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let m = if signed { mode::MEMSX } else { mode::MEM };
                vec![Insn::new(class::LDX | m | sz(size), dst, src, off, 0)]
            }
            Instruction::St {
                size,
                dst,
                off,
                imm,
            } => vec![Insn::new(
                class::ST | mode::MEM | sz(size),
                dst,
                0,
                off,
                imm,
            )],
            Instruction::Stx {
                size,
                dst,
                src,
                off,
            } => {
                vec![Insn::new(
                    class::STX | mode::MEM | sz(size),
                    dst,
                    src,
                    off,
                    0,
                )]
            }
            Instruction::Atomic {
                size,
                op,
                fetch,
                dst,
                src,
                off,
            } => {
                let f = if fetch { atomic::FETCH } else { 0 };
                let imm = match op {
                    AtomicOp::Add => atomic::ADD | f,
                    AtomicOp::Or => atomic::OR | f,
                    AtomicOp::And => atomic::AND | f,
                    AtomicOp::Xor => atomic::XOR | f,
                    AtomicOp::Xchg => atomic::XCHG,
                    AtomicOp::CmpXchg => atomic::CMPXCHG,
                };
                vec![Insn::new(
                    class::STX | mode::ATOMIC | sz(size),
                    dst,
                    src,
                    off,
                    imm,
                )]
            }
            Instruction::Ja { off, long } => {
                if long {
                    vec![Insn::new(class::JMP32 | jmp::JA, 0, 0, 0, off)]
                } else {
                    vec![Insn::new(class::JMP | jmp::JA, 0, 0, off as i16, 0)]
                }
            }
            Instruction::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                let op = match cond {
                    JmpCond::Eq => jmp::JEQ,
                    JmpCond::Gt => jmp::JGT,
                    JmpCond::Ge => jmp::JGE,
                    JmpCond::Set => jmp::JSET,
                    JmpCond::Ne => jmp::JNE,
                    JmpCond::Sgt => jmp::JSGT,
                    JmpCond::Sge => jmp::JSGE,
                    JmpCond::Lt => jmp::JLT,
                    JmpCond::Le => jmp::JLE,
                    JmpCond::Slt => jmp::JSLT,
                    JmpCond::Sle => jmp::JSLE,
                };
                match src {
                    Operand::Reg(r) => {
                        vec![Insn::new(jmp_class(width) | op | src::X, dst, r, off, 0)]
                    }
                    Operand::Imm(i) => {
                        vec![Insn::new(jmp_class(width) | op | src::K, dst, 0, off, i)]
                    }
                }
            }
            Instruction::Call(t) => {
                let c = class::JMP | jmp::CALL;
                vec![match t {
                    CallTarget::Helper(id) => Insn::new(c, 0, 0, 0, id),
                    CallTarget::Local(off) => Insn::new(c, 0, pseudo::CALL, 0, off),
                    CallTarget::Kfunc { btf_id, off } => {
                        Insn::new(c, 0, pseudo::KFUNC_CALL, off, btf_id)
                    }
                    CallTarget::Reg(r) => Insn::new(c | src::X, r, 0, 0, 0),
                }]
            }
            Instruction::Exit => vec![Insn::new(class::JMP | jmp::EXIT, 0, 0, 0, 0)],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// Why a slot does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    #[error("program length is not a multiple of 8 ({0} trailing bytes)")]
    TrailingBytes(usize),
    #[error("empty program")]
    Empty,
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("invalid register r{0}")]
    InvalidRegister(u8),
    #[error("{0} uses reserved fields")]
    ReservedFields(&'static str),
    #[error("invalid BPF_END size {0} (must be 16, 32 or 64)")]
    InvalidEndSize(i32),
    #[error("invalid movsx offset {0}")]
    InvalidMovsx(i16),
    #[error("invalid atomic operation {0:#x}")]
    InvalidAtomicOp(i32),
    #[error("invalid atomic size (only 32 and 64 bit)")]
    InvalidAtomicSize,
    #[error("lddw is missing its second slot")]
    TruncatedLdImm64,
    #[error("invalid second slot of lddw")]
    InvalidLdImm64Second,
    #[error("invalid lddw source {0}")]
    InvalidLdImm64Src(u8),
    #[error("invalid call source {0}")]
    InvalidCallSrc(u8),
}

/// A decode failure at a slot index.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("insn {pc}: {kind}")]
pub struct DecodeError {
    /// Slot index.
    pub pc: usize,
    pub kind: DecodeErrorKind,
}

fn reg(pc: usize, r: u8) -> Result<u8, DecodeError> {
    if (r as usize) < NUM_REGS {
        Ok(r)
    } else {
        Err(DecodeError {
            pc,
            kind: DecodeErrorKind::InvalidRegister(r),
        })
    }
}

/// Decodes the instruction starting at slot `pc`. `next` is the following slot (needed for
/// `lddw`).
pub fn decode_one(pc: usize, insn: Insn, next: Option<Insn>) -> Result<Instruction, DecodeError> {
    use DecodeErrorKind as K;
    let err = |kind| DecodeError { pc, kind };
    let reserved = |what| Err(err(K::ReservedFields(what)));
    let code = insn.code;
    // The second operand of ALU and conditional jump instructions; the unused field must be 0.
    let operand = |x_what, k_what| {
        if code & src::X != 0 {
            if insn.imm != 0 {
                return Err(err(K::ReservedFields(x_what)));
            }
            Ok(Operand::Reg(reg(pc, insn.src)?))
        } else {
            if insn.src != 0 {
                return Err(err(K::ReservedFields(k_what)));
            }
            Ok(Operand::Imm(insn.imm))
        }
    };
    let cls = code & 0x07;
    match cls {
        class::ALU | class::ALU64 => {
            let width = if cls == class::ALU64 {
                Width::W64
            } else {
                Width::W32
            };
            let dst = reg(pc, insn.dst)?;
            let op = code & 0xf0;
            let is_x = code & src::X != 0;
            match op {
                alu::END => {
                    if insn.src != 0 || insn.off != 0 {
                        return reserved("BPF_END");
                    }
                    if !matches!(insn.imm, 16 | 32 | 64) {
                        return Err(err(K::InvalidEndSize(insn.imm)));
                    }
                    let kind = match (width, is_x) {
                        (Width::W32, false) => Endian::ToLe,
                        (Width::W32, true) => Endian::ToBe,
                        (Width::W64, false) => Endian::Swap,
                        (Width::W64, true) => return reserved("BPF_END"),
                    };
                    Ok(Instruction::End {
                        kind,
                        bits: insn.imm as u8,
                        dst,
                    })
                }
                alu::NEG => {
                    if is_x || insn.src != 0 || insn.off != 0 || insn.imm != 0 {
                        return reserved("BPF_NEG");
                    }
                    Ok(Instruction::Neg { width, dst })
                }
                0xe0 | 0xf0 => Err(err(K::UnknownOpcode(code))),
                _ => {
                    let signed_ok = matches!(op, alu::DIV | alu::MOD);
                    let aop = match (op, insn.off) {
                        (alu::ADD, 0) => AluOp::Add,
                        (alu::SUB, 0) => AluOp::Sub,
                        (alu::MUL, 0) => AluOp::Mul,
                        (alu::DIV, 0) => AluOp::Div,
                        (alu::DIV, 1) => AluOp::SDiv,
                        (alu::OR, 0) => AluOp::Or,
                        (alu::AND, 0) => AluOp::And,
                        (alu::LSH, 0) => AluOp::Lsh,
                        (alu::RSH, 0) => AluOp::Rsh,
                        (alu::MOD, 0) => AluOp::Mod,
                        (alu::MOD, 1) => AluOp::SMod,
                        (alu::XOR, 0) => AluOp::Xor,
                        (alu::MOV, 0) => AluOp::Mov,
                        (alu::ARSH, 0) => AluOp::Arsh,
                        (alu::MOV, off) => {
                            // movsx: register source, offset 8/16 (ALU) or 8/16/32 (ALU64).
                            let ok = match width {
                                Width::W32 => matches!(off, 8 | 16),
                                Width::W64 => matches!(off, 8 | 16 | 32),
                            };
                            if !is_x || insn.imm != 0 || !ok {
                                return Err(err(K::InvalidMovsx(off)));
                            }
                            let src = reg(pc, insn.src)?;
                            return Ok(Instruction::MovSx {
                                width,
                                dst,
                                src,
                                bits: off as u8,
                            });
                        }
                        _ => {
                            return reserved(if signed_ok {
                                "BPF_DIV/BPF_MOD"
                            } else {
                                "BPF_ALU"
                            });
                        }
                    };
                    let src = operand("BPF_ALU | BPF_X", "BPF_ALU | BPF_K")?;
                    Ok(Instruction::Alu {
                        width,
                        op: aop,
                        dst,
                        src,
                    })
                }
            }
        }
        class::JMP | class::JMP32 => {
            let width = if cls == class::JMP {
                Width::W64
            } else {
                Width::W32
            };
            let op = code & 0xf0;
            let is_x = code & src::X != 0;
            match op {
                jmp::JA => {
                    if is_x || insn.dst != 0 || insn.src != 0 {
                        return reserved("BPF_JA");
                    }
                    if width == Width::W64 {
                        if insn.imm != 0 {
                            return reserved("BPF_JA");
                        }
                        Ok(Instruction::Ja {
                            off: insn.off as i32,
                            long: false,
                        })
                    } else {
                        if insn.off != 0 {
                            return reserved("BPF_JA");
                        }
                        Ok(Instruction::Ja {
                            off: insn.imm,
                            long: true,
                        })
                    }
                }
                jmp::CALL => {
                    if width == Width::W32 {
                        return Err(err(K::UnknownOpcode(code)));
                    }
                    if is_x {
                        // callx: LLVM puts the register in dst_reg; older encodings (and uBPF)
                        // put it in imm. Accept both, dst_reg first.
                        if insn.src != 0 || insn.off != 0 {
                            return reserved("BPF_CALL | BPF_X");
                        }
                        let r = if insn.dst == 0 && (1..=10).contains(&insn.imm) {
                            insn.imm as u8
                        } else if insn.imm == 0 || insn.imm == insn.dst as i32 {
                            reg(pc, insn.dst)?
                        } else {
                            return reserved("BPF_CALL | BPF_X");
                        };
                        return Ok(Instruction::Call(CallTarget::Reg(r)));
                    }
                    if insn.dst != 0 {
                        return reserved("BPF_CALL");
                    }
                    match insn.src {
                        0 | pseudo::CALL if insn.off != 0 => reserved("BPF_CALL"),
                        0 => Ok(Instruction::Call(CallTarget::Helper(insn.imm))),
                        pseudo::CALL => Ok(Instruction::Call(CallTarget::Local(insn.imm))),
                        pseudo::KFUNC_CALL => Ok(Instruction::Call(CallTarget::Kfunc {
                            btf_id: insn.imm,
                            off: insn.off,
                        })),
                        s => Err(err(K::InvalidCallSrc(s))),
                    }
                }
                jmp::EXIT => {
                    if width == Width::W32 {
                        return Err(err(K::UnknownOpcode(code)));
                    }
                    if is_x || insn.dst != 0 || insn.src != 0 || insn.off != 0 || insn.imm != 0 {
                        return reserved("BPF_EXIT");
                    }
                    Ok(Instruction::Exit)
                }
                0xe0 | 0xf0 => Err(err(K::UnknownOpcode(code))),
                _ => {
                    let cond = match op {
                        jmp::JEQ => JmpCond::Eq,
                        jmp::JGT => JmpCond::Gt,
                        jmp::JGE => JmpCond::Ge,
                        jmp::JSET => JmpCond::Set,
                        jmp::JNE => JmpCond::Ne,
                        jmp::JSGT => JmpCond::Sgt,
                        jmp::JSGE => JmpCond::Sge,
                        jmp::JLT => JmpCond::Lt,
                        jmp::JLE => JmpCond::Le,
                        jmp::JSLT => JmpCond::Slt,
                        _ => JmpCond::Sle,
                    };
                    let dst = reg(pc, insn.dst)?;
                    let src = operand("BPF_JMP | BPF_X", "BPF_JMP | BPF_K")?;
                    Ok(Instruction::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        off: insn.off,
                    })
                }
            }
        }
        class::LD => {
            let m = code & 0xe0;
            let sz = MemSize::from_code(code);
            match m {
                mode::IMM if sz == MemSize::DW => {
                    let dst = reg(pc, insn.dst)?;
                    if insn.off != 0 {
                        return reserved("BPF_LD_IMM64");
                    }
                    let kind = match insn.src {
                        0 => LdImmKind::Imm64,
                        pseudo::MAP_FD => LdImmKind::MapFd,
                        pseudo::MAP_VALUE => LdImmKind::MapValue,
                        pseudo::BTF_ID => LdImmKind::BtfId,
                        pseudo::FUNC => LdImmKind::Func,
                        pseudo::MAP_IDX => LdImmKind::MapIdx,
                        pseudo::MAP_IDX_VALUE => LdImmKind::MapIdxValue,
                        s => return Err(err(K::InvalidLdImm64Src(s))),
                    };
                    let next = next.ok_or(err(K::TruncatedLdImm64))?;
                    if next.code != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
                        return Err(DecodeError {
                            pc: pc + 1,
                            kind: K::InvalidLdImm64Second,
                        });
                    }
                    Ok(Instruction::LdImm64 {
                        dst,
                        kind,
                        imm: insn.imm,
                        next_imm: next.imm,
                    })
                }
                mode::ABS | mode::IND if sz != MemSize::DW => {
                    if insn.dst != 0 || insn.off != 0 {
                        return reserved("BPF_LD_[ABS|IND]");
                    }
                    if m == mode::ABS {
                        if insn.src != 0 {
                            return reserved("BPF_LD_ABS");
                        }
                        Ok(Instruction::LdAbs {
                            size: sz,
                            imm: insn.imm,
                        })
                    } else {
                        Ok(Instruction::LdInd {
                            size: sz,
                            src: reg(pc, insn.src)?,
                            imm: insn.imm,
                        })
                    }
                }
                _ => Err(err(K::UnknownOpcode(code))),
            }
        }
        class::LDX => {
            let m = code & 0xe0;
            let sz = MemSize::from_code(code);
            let signed = match m {
                mode::MEM => false,
                mode::MEMSX if sz != MemSize::DW => true,
                _ => return Err(err(K::UnknownOpcode(code))),
            };
            if insn.imm != 0 {
                return reserved("BPF_LDX");
            }
            Ok(Instruction::Ldx {
                size: sz,
                signed,
                dst: reg(pc, insn.dst)?,
                src: reg(pc, insn.src)?,
                off: insn.off,
            })
        }
        class::ST => {
            if code & 0xe0 != mode::MEM {
                return Err(err(K::UnknownOpcode(code)));
            }
            if insn.src != 0 {
                return reserved("BPF_ST");
            }
            Ok(Instruction::St {
                size: MemSize::from_code(code),
                dst: reg(pc, insn.dst)?,
                off: insn.off,
                imm: insn.imm,
            })
        }
        _ => {
            // STX
            let sz = MemSize::from_code(code);
            let dst = reg(pc, insn.dst)?;
            let src = reg(pc, insn.src)?;
            match code & 0xe0 {
                mode::MEM => {
                    if insn.imm != 0 {
                        return reserved("BPF_STX");
                    }
                    Ok(Instruction::Stx {
                        size: sz,
                        dst,
                        src,
                        off: insn.off,
                    })
                }
                mode::ATOMIC => {
                    if !matches!(sz, MemSize::W | MemSize::DW) {
                        return Err(err(K::InvalidAtomicSize));
                    }
                    let (op, fetch) = match insn.imm {
                        atomic::XCHG => (AtomicOp::Xchg, true),
                        atomic::CMPXCHG => (AtomicOp::CmpXchg, true),
                        i => {
                            let fetch = i & atomic::FETCH != 0;
                            let op = match i & !atomic::FETCH {
                                atomic::ADD => AtomicOp::Add,
                                atomic::OR => AtomicOp::Or,
                                atomic::AND => AtomicOp::And,
                                atomic::XOR => AtomicOp::Xor,
                                _ => return Err(err(K::InvalidAtomicOp(i))),
                            };
                            (op, fetch)
                        }
                    };
                    Ok(Instruction::Atomic {
                        size: sz,
                        op,
                        fetch,
                        dst,
                        src,
                        off: insn.off,
                    })
                }
                _ => Err(err(K::UnknownOpcode(code))),
            }
        }
    }
}

/// Decodes a whole program into `(slot index, instruction)` pairs, in order.
pub fn decode(slots: &[Insn]) -> Result<Vec<(usize, Instruction)>, DecodeError> {
    if slots.is_empty() {
        return Err(DecodeError {
            pc: 0,
            kind: DecodeErrorKind::Empty,
        });
    }
    let mut out = Vec::with_capacity(slots.len());
    let mut pc = 0;
    while pc < slots.len() {
        let i = decode_one(pc, slots[pc], slots.get(pc + 1).copied())?;
        out.push((pc, i));
        pc += i.slots();
    }
    Ok(out)
}

/// Decodes a program given as bytes.
pub fn decode_bytes(bytes: &[u8]) -> Result<Vec<(usize, Instruction)>, DecodeError> {
    decode(&Insn::slots_from_bytes(bytes)?)
}

// ---------------------------------------------------------------------------------------------
// Disassembler
// ---------------------------------------------------------------------------------------------

fn rn(width: Width) -> char {
    if width == Width::W32 {
        'w'
    } else {
        'r'
    }
}

struct Off(i32);

impl fmt::Display for Off {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+}", self.0)
    }
}

impl fmt::Display for Instruction {
    /// Kernel verifier-log / bpftool style, without the `pc: (code)` prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let c = rn(width);
                match src {
                    Operand::Reg(s) => write!(f, "{c}{dst} {} {c}{s}", op.symbol()),
                    Operand::Imm(i) => write!(f, "{c}{dst} {} {i}", op.symbol()),
                }
            }
            Instruction::Neg { width, dst } => {
                let c = rn(width);
                write!(f, "{c}{dst} = -{c}{dst}")
            }
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => {
                let c = rn(width);
                write!(f, "{c}{dst} = (s{bits}){c}{src}")
            }
            Instruction::End { kind, bits, dst } => {
                let k = match kind {
                    Endian::ToLe => "le",
                    Endian::ToBe => "be",
                    Endian::Swap => "bswap",
                };
                write!(f, "r{dst} = {k}{bits} r{dst}")
            }
            Instruction::LdImm64 {
                dst,
                kind,
                imm,
                next_imm,
            } => match kind {
                LdImmKind::Imm64 => write!(f, "r{dst} = {:#x}", Instruction::imm64(imm, next_imm)),
                LdImmKind::MapFd => write!(f, "r{dst} = map[fd:{imm}]"),
                LdImmKind::MapValue => write!(f, "r{dst} = map[fd:{imm}][0]+{next_imm}"),
                LdImmKind::BtfId => write!(f, "r{dst} = btf_id[{imm}]"),
                LdImmKind::Func => write!(f, "r{dst} = subprog[{}]", Off(imm)),
                LdImmKind::MapIdx => write!(f, "r{dst} = map[idx:{imm}]"),
                LdImmKind::MapIdxValue => write!(f, "r{dst} = map[idx:{imm}][0]+{next_imm}"),
            },
            Instruction::LdAbs { size, imm } => {
                write!(f, "r0 = *({} *)skb[{imm}]", size.unsigned_name())
            }
            Instruction::LdInd { size, src, imm } => {
                write!(f, "r0 = *({} *)skb[r{src} + {imm}]", size.unsigned_name())
            }
            Instruction::Ldx {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let t = if signed {
                    size.signed_name()
                } else {
                    size.unsigned_name()
                };
                write!(f, "r{dst} = *({t} *)(r{src} {})", Off(off as i32))
            }
            Instruction::St {
                size,
                dst,
                off,
                imm,
            } => {
                write!(
                    f,
                    "*({} *)(r{dst} {}) = {imm}",
                    size.unsigned_name(),
                    Off(off as i32)
                )
            }
            Instruction::Stx {
                size,
                dst,
                src,
                off,
            } => {
                write!(
                    f,
                    "*({} *)(r{dst} {}) = r{src}",
                    size.unsigned_name(),
                    Off(off as i32)
                )
            }
            Instruction::Atomic {
                size,
                op,
                fetch,
                dst,
                src,
                off,
            } => {
                let t = size.unsigned_name();
                let o = Off(off as i32);
                let sfx = if size == MemSize::DW { "64" } else { "" };
                let name = match op {
                    AtomicOp::Add => "add",
                    AtomicOp::Or => "or",
                    AtomicOp::And => "and",
                    AtomicOp::Xor => "xor",
                    AtomicOp::Xchg => "xchg",
                    AtomicOp::CmpXchg => "cmpxchg",
                };
                match op {
                    AtomicOp::Xchg => {
                        write!(f, "r{src} = atomic{sfx}_xchg(({t} *)(r{dst} {o}), r{src})")
                    }
                    AtomicOp::CmpXchg => {
                        write!(
                            f,
                            "r0 = atomic{sfx}_cmpxchg(({t} *)(r{dst} {o}), r0, r{src})"
                        )
                    }
                    _ if fetch => write!(
                        f,
                        "r{src} = atomic{sfx}_fetch_{name}(({t} *)(r{dst} {o}), r{src})"
                    ),
                    _ => {
                        let sym = match op {
                            AtomicOp::Add => "+=",
                            AtomicOp::Or => "|=",
                            AtomicOp::And => "&=",
                            _ => "^=",
                        };
                        write!(f, "lock *({t} *)(r{dst} {o}) {sym} r{src}")
                    }
                }
            }
            Instruction::Ja { off, long } => {
                write!(f, "{} {}", if long { "gotol" } else { "goto" }, Off(off))
            }
            Instruction::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                let c = rn(width);
                match src {
                    Operand::Reg(s) => write!(
                        f,
                        "if {c}{dst} {} {c}{s} goto {}",
                        cond.symbol(),
                        Off(off as i32)
                    ),
                    Operand::Imm(i) => {
                        write!(
                            f,
                            "if {c}{dst} {} {:#x} goto {}",
                            cond.symbol(),
                            i as u32,
                            Off(off as i32)
                        )
                    }
                }
            }
            Instruction::Call(t) => match t {
                CallTarget::Helper(id) => write!(f, "call {id}"),
                CallTarget::Local(off) => write!(f, "call pc{}", Off(off)),
                CallTarget::Kfunc { btf_id, off } => {
                    if off == 0 {
                        write!(f, "call kfunc#{btf_id}")
                    } else {
                        write!(f, "call kfunc#{btf_id}[btf:{off}]")
                    }
                }
                CallTarget::Reg(r) => write!(f, "callx r{r}"),
            },
            Instruction::Exit => write!(f, "exit"),
        }
    }
}

/// Disassembles a program, one line per instruction, in the verifier-log format
/// `pc: (code) text`.
pub fn disassemble(slots: &[Insn]) -> Result<String, DecodeError> {
    let mut out = String::new();
    for (pc, i) in decode(slots)? {
        use std::fmt::Write;
        let _ = writeln!(out, "{pc}: ({:02x}) {i}", slots[pc].code);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dis(i: Instruction) -> String {
        i.to_string()
    }

    #[test]
    fn raw_roundtrip() {
        let w = 0x5566778800000018u64;
        let i = Insn::from_u64(w);
        assert_eq!(i.code, 0x18);
        assert_eq!(i.imm, 0x55667788);
        assert_eq!(i.to_u64(), w);
        let i = Insn::new(0x63, 10, 1, -4, 0);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
        assert_eq!(i.to_bytes()[1], 0x1a);
    }

    #[test]
    fn disasm_kernel_style() {
        assert_eq!(
            dis(Instruction::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: 0,
                src: Operand::Imm(1)
            }),
            "r0 = 1"
        );
        assert_eq!(
            dis(Instruction::Alu {
                width: Width::W32,
                op: AluOp::Add,
                dst: 1,
                src: Operand::Reg(2)
            }),
            "w1 += w2"
        );
        assert_eq!(
            dis(Instruction::Jmp {
                width: Width::W64,
                cond: JmpCond::Gt,
                dst: 1,
                src: Operand::Imm(2),
                off: 3
            }),
            "if r1 > 0x2 goto +3"
        );
        assert_eq!(
            dis(Instruction::Jmp {
                width: Width::W32,
                cond: JmpCond::Sle,
                dst: 1,
                src: Operand::Imm(-1),
                off: -3
            }),
            "if w1 s<= 0xffffffff goto -3"
        );
        assert_eq!(
            dis(Instruction::Stx {
                size: MemSize::W,
                dst: 10,
                src: 1,
                off: -4
            }),
            "*(u32 *)(r10 -4) = r1"
        );
        assert_eq!(
            dis(Instruction::Ldx {
                size: MemSize::B,
                signed: true,
                dst: 0,
                src: 1,
                off: 0
            }),
            "r0 = *(s8 *)(r1 +0)"
        );
        assert_eq!(dis(Instruction::Call(CallTarget::Helper(1))), "call 1");
        assert_eq!(dis(Instruction::Call(CallTarget::Local(4))), "call pc+4");
        assert_eq!(
            dis(Instruction::MovSx {
                width: Width::W64,
                dst: 0,
                src: 1,
                bits: 8
            }),
            "r0 = (s8)r1"
        );
        assert_eq!(
            dis(Instruction::End {
                kind: Endian::ToBe,
                bits: 16,
                dst: 3
            }),
            "r3 = be16 r3"
        );
        assert_eq!(
            dis(Instruction::Atomic {
                size: MemSize::DW,
                op: AtomicOp::Add,
                fetch: true,
                dst: 10,
                src: 1,
                off: -8
            }),
            "r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)"
        );
        assert_eq!(
            dis(Instruction::Atomic {
                size: MemSize::W,
                op: AtomicOp::Or,
                fetch: false,
                dst: 2,
                src: 1,
                off: 0
            }),
            "lock *(u32 *)(r2 +0) |= r1"
        );
        assert_eq!(
            dis(Instruction::LdImm64 {
                dst: 0,
                kind: LdImmKind::Imm64,
                imm: 0x55667788,
                next_imm: 0x11223344
            }),
            "r0 = 0x1122334455667788"
        );
        assert_eq!(
            dis(Instruction::Alu {
                width: Width::W64,
                op: AluOp::SDiv,
                dst: 0,
                src: Operand::Reg(1)
            }),
            "r0 s/= r1"
        );
    }

    #[test]
    fn encode_decode_roundtrip() {
        let all = [
            Instruction::Alu {
                width: Width::W64,
                op: AluOp::SMod,
                dst: 3,
                src: Operand::Imm(-7),
            },
            Instruction::Alu {
                width: Width::W32,
                op: AluOp::Arsh,
                dst: 3,
                src: Operand::Reg(9),
            },
            Instruction::Neg {
                width: Width::W32,
                dst: 4,
            },
            Instruction::MovSx {
                width: Width::W64,
                dst: 1,
                src: 2,
                bits: 32,
            },
            Instruction::End {
                kind: Endian::Swap,
                bits: 64,
                dst: 1,
            },
            Instruction::LdImm64 {
                dst: 1,
                kind: LdImmKind::MapValue,
                imm: 3,
                next_imm: 16,
            },
            Instruction::Ldx {
                size: MemSize::H,
                signed: true,
                dst: 0,
                src: 10,
                off: -2,
            },
            Instruction::St {
                size: MemSize::DW,
                dst: 10,
                off: -8,
                imm: -1,
            },
            Instruction::Atomic {
                size: MemSize::W,
                op: AtomicOp::CmpXchg,
                fetch: true,
                dst: 10,
                src: 1,
                off: -4,
            },
            Instruction::Ja {
                off: 100_000,
                long: true,
            },
            Instruction::Jmp {
                width: Width::W32,
                cond: JmpCond::Set,
                dst: 1,
                src: Operand::Reg(2),
                off: -1,
            },
            Instruction::Call(CallTarget::Reg(2)),
            Instruction::Call(CallTarget::Kfunc { btf_id: 77, off: 1 }),
            Instruction::Exit,
        ];
        let slots: Vec<Insn> = all.iter().flat_map(|i| i.encode()).collect();
        let dec: Vec<Instruction> = decode(&slots)
            .unwrap()
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        assert_eq!(dec, all);
    }

    #[test]
    fn decoder_errors() {
        let e = decode(&[Insn::new(0xff, 0, 0, 0, 0)]).unwrap_err();
        assert_eq!(e.to_string(), "insn 0: unknown opcode 0xff");
        let e = decode(&[Insn::new(0xb7, 0, 0, 0, 0), Insn::new(0x18, 0, 0, 0, 1)]).unwrap_err();
        assert_eq!(
            e,
            DecodeError {
                pc: 1,
                kind: DecodeErrorKind::TruncatedLdImm64
            }
        );
        let e = decode(&[Insn::new(0xb7, 11, 0, 0, 0)]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidRegister(11));
        let e = decode(&[Insn::new(0x87, 0, 1, 0, 0)]).unwrap_err();
        assert_eq!(e.to_string(), "insn 0: BPF_NEG uses reserved fields");
        let e = decode(&[Insn::new(0xdf, 0, 0, 0, 16)]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::ReservedFields("BPF_END"));
        let e = decode(&[Insn::new(0xc3, 0, 1, 0, 0x10)]).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidAtomicOp(0x10));
        assert!(Insn::slots_from_bytes(&[0; 9]).is_err());
        let e = decode(&[Insn::new(0x18, 0, 0, 0, 0), Insn::new(0x95, 0, 0, 0, 0)]).unwrap_err();
        assert_eq!(
            e,
            DecodeError {
                pc: 1,
                kind: DecodeErrorKind::InvalidLdImm64Second
            }
        );
    }

    #[test]
    fn callx_register_encodings() {
        // LLVM: register in dst_reg; uBPF-style: in imm.
        assert_eq!(
            decode_one(0, Insn::new(0x8d, 2, 0, 0, 0), None).unwrap(),
            Instruction::Call(CallTarget::Reg(2))
        );
        assert_eq!(
            decode_one(0, Insn::new(0x8d, 0, 0, 0, 2), None).unwrap(),
            Instruction::Call(CallTarget::Reg(2))
        );
    }
}
