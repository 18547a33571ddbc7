//! Property test: random programs run through the interpreter and the JIT
//! (`jit::equiv::compare`) must leave the same r0 or error, memory, stack, map contents and
//! trace output, in the checked mode and (when that run succeeds) the unchecked mode.
//!
//! The generator builds structurally valid programs from: ALU64/ALU32 with register and
//! "interesting" immediates (0, ±1, shift widths, INT_MIN…), negation, sign-extending moves,
//! byte swaps, loads/stores of every size to the stack (through r10 and through a derived
//! pointer), to a memory region and to map values, all atomics, forward conditional jumps of
//! every condition and width, bounded loops (backward conditional jumps, JMP32, `ja`
//! back-edges), helper calls (pure, memory-reading/writing, failing, clocks/task, map
//! lookup/update, `bpf_trace_printk`, `bpf_loop` with generated callbacks, `callx` of helper
//! numbers), bpf-to-bpf calls (direct and `callx`), and rarely an intentional fault (out of
//! bounds, misaligned atomic, unknown helper, bad callx target, runaway loop or recursion)
//! and small budgets. Pointers never flow into data registers, so r0 and memory contents are
//! engine-independent.
//!
//! `JIT_EQUIV_CASES` (default 3000) and `JIT_EQUIV_SEED` change the run.
#![cfg(target_arch = "x86_64")]

use bpfvfs_ebpf::helpers::{ids, HelperCtx, HelperError, MemRef};
use bpfvfs_ebpf::insn::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, Instruction, JmpCond, LdImmKind, MemSize, Operand,
    Width,
};
use bpfvfs_ebpf::interp::LoadOptions;
use bpfvfs_ebpf::jit::equiv::{compare, Case, EquivError};
use bpfvfs_ebpf::{ExecError, Helpers, MapAccess, Program};
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::ptr::NonNull;

// --- randomness ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

// --- a tiny assembler with labels ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
struct Label(usize);

enum Item {
    I(Instruction),
    Jmp {
        width: Width,
        cond: Option<JmpCond>,
        dst: u8,
        src: Operand,
        long: bool,
        to: Label,
    },
    Call(Label),
    Func(u8, Label),
    Mark(Label),
}

#[derive(Default)]
struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn i(&mut self, i: Instruction) {
        self.items.push(Item::I(i));
    }
    fn mark(&mut self, l: Label) {
        self.items.push(Item::Mark(l));
    }
    fn finish(self) -> Vec<Insn> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut slot = 0;
        for it in &self.items {
            match it {
                Item::I(i) => slot += i.slots(),
                Item::Func(..) => slot += 2,
                Item::Jmp { .. } | Item::Call(_) => slot += 1,
                Item::Mark(l) => pos[l.0] = slot,
            }
        }
        let mut out = Vec::new();
        let mut slot = 0i64;
        for it in self.items {
            let rel = |l: Label| pos[l.0] as i64 - slot - 1;
            let insn = match it {
                Item::I(i) => i,
                Item::Jmp {
                    width,
                    cond: Some(cond),
                    dst,
                    src,
                    to,
                    ..
                } => Instruction::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    off: rel(to) as i16,
                },
                Item::Jmp {
                    cond: None,
                    long,
                    to,
                    ..
                } => Instruction::Ja {
                    off: rel(to) as i32,
                    long,
                },
                Item::Call(to) => Instruction::Call(CallTarget::Local(rel(to) as i32)),
                Item::Func(dst, to) => Instruction::LdImm64 {
                    dst,
                    kind: LdImmKind::Func,
                    imm: rel(to) as i32,
                    next_imm: 0,
                },
                Item::Mark(_) => continue,
            };
            slot += insn.slots() as i64;
            out.extend(insn.encode());
        }
        out
    }
}

// --- the generator ---------------------------------------------------------------------------

const MEM_LEN: i64 = 64;
const MAP: i32 = 1;
const VALUE_SIZE: i64 = 16;

#[derive(Clone, Copy)]
struct Ctx {
    /// r7 is a loop counter: not a destination.
    in_loop: bool,
    /// A `bpf_loop` callback: r6-r9 start at 0, so r8/r9 are not pointers here.
    callback: bool,
    /// Subprogram nesting.
    depth: usize,
    /// Structure nesting (jumps, loops).
    nest: usize,
}

enum Sub {
    Local(Label, Ctx),
    Callback(Label),
    Recursive(Label),
}

#[derive(Default)]
struct Stats {
    programs: u64,
    slots: u64,
    items: BTreeMap<&'static str, u64>,
    results: BTreeMap<String, u64>,
    unchecked: u64,
}

struct Gen<'a> {
    rng: &'a mut Rng,
    asm: Asm,
    subs: Vec<Sub>,
    stats: &'a mut Stats,
    /// At most one intentional fault per program.
    faulted: bool,
    fault_percent: u64,
}

fn alu(width: Width, op: AluOp, dst: u8, src: Operand) -> Instruction {
    Instruction::Alu {
        width,
        op,
        dst,
        src,
    }
}

fn mov(dst: u8, imm: i32) -> Instruction {
    alu(Width::W64, AluOp::Mov, dst, Operand::Imm(imm))
}

fn movr(dst: u8, src: u8) -> Instruction {
    alu(Width::W64, AluOp::Mov, dst, Operand::Reg(src))
}

fn lddw(dst: u8, v: u64) -> Instruction {
    Instruction::LdImm64 {
        dst,
        kind: LdImmKind::Imm64,
        imm: v as u32 as i32,
        next_imm: (v >> 32) as u32 as i32,
    }
}

fn call(id: u32) -> Instruction {
    Instruction::Call(CallTarget::Helper(id as i32))
}

const SIZES: [MemSize; 4] = [MemSize::B, MemSize::H, MemSize::W, MemSize::DW];

impl Gen<'_> {
    fn note(&mut self, what: &'static str) {
        *self.stats.items.entry(what).or_default() += 1;
    }

    fn data_reg(&mut self, c: Ctx) -> u8 {
        loop {
            let r = self.rng.below(8) as u8;
            if !(c.in_loop && r == 7) {
                return r;
            }
        }
    }

    fn imm(&mut self) -> i32 {
        match self.rng.below(3) {
            0 => self
                .rng
                .pick(&[0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 255]),
            1 => self
                .rng
                .pick(&[i32::MIN, i32::MAX, -2, 0x7fff, -0x8000, 0x1234_5678]),
            _ => self.rng.next() as i32,
        }
    }

    fn fault(&mut self) -> bool {
        if !self.faulted && self.rng.chance(self.fault_percent) {
            self.faulted = true;
            true
        } else {
            false
        }
    }

    /// A (base, offset) for an access of `size` bytes, inside memory unless `bad`.
    fn addr(&mut self, c: Ctx, size: MemSize, atomic: bool, bad: bool) -> (u8, i16) {
        let sz = size.bytes() as i64;
        let bases: &[u8] = if c.callback { &[10] } else { &[10, 9, 8] };
        let base = self.rng.pick(bases);
        let (lo, hi) = match base {
            10 => (-512, -sz),
            9 => (-256, 256 - sz),
            _ => (0, MEM_LEN - sz),
        };
        let mut off = self.rng.range(lo, hi);
        if atomic {
            off -= off.rem_euclid(sz);
            if off < lo {
                off += sz;
            }
        }
        if bad {
            off = match self.rng.below(3) {
                0 => hi + self.rng.range(1, 8),
                1 => lo - self.rng.range(1, 8),
                _ => hi + 4096,
            };
        }
        (base, off as i16)
    }

    fn item(&mut self, c: Ctx) {
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.alu(c),
            30..=35 => self.unary(c),
            36..=45 => self.store(c),
            46..=53 => self.load(c),
            54..=60 => self.atomic(c),
            61..=69 if c.nest < 3 => self.fwd_jump(c),
            70..=75 if c.nest < 2 && !c.in_loop => self.loop_(c),
            76..=87 => self.helper(c),
            88..=92 if !c.callback && c.depth < 3 => self.local_call(c),
            93..=94 => self.bad(c),
            _ => self.alu(c),
        }
    }

    fn alu(&mut self, c: Ctx) {
        use AluOp::*;
        let width = if self.rng.chance(50) {
            Width::W64
        } else {
            Width::W32
        };
        let op = self.rng.pick(&[
            Add, Sub, Mul, Div, SDiv, Or, And, Lsh, Rsh, Mod, SMod, Xor, Mov, Arsh,
        ]);
        let dst = self.data_reg(c);
        let src = if self.rng.chance(50) {
            Operand::Reg(self.rng.below(8) as u8)
        } else {
            Operand::Imm(self.imm())
        };
        self.asm.i(alu(width, op, dst, src));
        self.note(match op {
            Div | SDiv | Mod | SMod => "alu.divmod",
            Lsh | Rsh | Arsh => "alu.shift",
            _ => "alu.other",
        });
    }

    fn unary(&mut self, c: Ctx) {
        let dst = self.data_reg(c);
        let i = match self.rng.below(3) {
            0 => Instruction::Neg {
                width: self.rng.pick(&[Width::W32, Width::W64]),
                dst,
            },
            1 => {
                let (width, bits) = self.rng.pick(&[
                    (Width::W64, 8),
                    (Width::W64, 16),
                    (Width::W64, 32),
                    (Width::W32, 8),
                    (Width::W32, 16),
                ]);
                Instruction::MovSx {
                    width,
                    dst,
                    src: self.rng.below(8) as u8,
                    bits,
                }
            }
            _ => Instruction::End {
                kind: self.rng.pick(&[Endian::ToLe, Endian::ToBe, Endian::Swap]),
                bits: self.rng.pick(&[16, 32, 64]),
                dst,
            },
        };
        self.asm.i(i);
        self.note("unary");
    }

    fn store(&mut self, c: Ctx) {
        let size = self.rng.pick(&SIZES);
        let (dst, off) = self.addr(c, size, false, false);
        if self.rng.chance(40) {
            let imm = self.imm();
            self.asm.i(Instruction::St {
                size,
                dst,
                off,
                imm,
            });
        } else {
            let src = self.rng.below(8) as u8;
            self.asm.i(Instruction::Stx {
                size,
                dst,
                src,
                off,
            });
        }
        self.note(match dst {
            10 => "store.r10",
            9 => "store.ptr",
            _ => "store.mem",
        });
    }

    fn load(&mut self, c: Ctx) {
        let size = self.rng.pick(&SIZES);
        let signed = size != MemSize::DW && self.rng.chance(30);
        let (src, off) = self.addr(c, size, false, false);
        let dst = self.data_reg(c);
        self.asm.i(Instruction::Ldx {
            size,
            signed,
            dst,
            src,
            off,
        });
        self.note(match src {
            10 => "load.r10",
            9 => "load.ptr",
            _ => "load.mem",
        });
    }

    fn atomic(&mut self, c: Ctx) {
        let size = self.rng.pick(&[MemSize::W, MemSize::DW]);
        let op = self.rng.pick(&[
            AtomicOp::Add,
            AtomicOp::Or,
            AtomicOp::And,
            AtomicOp::Xor,
            AtomicOp::Xchg,
            AtomicOp::CmpXchg,
        ]);
        let fetch = matches!(op, AtomicOp::Xchg | AtomicOp::CmpXchg) || self.rng.chance(50);
        let (dst, off) = self.addr(c, size, true, false);
        let mut src = self.data_reg(c);
        if fetch && c.in_loop && src == 7 {
            src = 6;
        }
        if op == AtomicOp::CmpXchg && self.rng.chance(50) {
            // Make a match likely: compare with what is there (for 32 bits, with the upper
            // half of r0 often nonzero: only the low half is compared).
            self.asm.i(Instruction::Ldx {
                size,
                signed: false,
                dst: 0,
                src: dst,
                off,
            });
            if size == MemSize::W {
                self.asm.i(Instruction::MovSx {
                    width: Width::W64,
                    dst: 0,
                    src: 0,
                    bits: 32,
                });
            }
        }
        self.asm.i(Instruction::Atomic {
            size,
            op,
            fetch,
            dst,
            src,
            off,
        });
        self.note(if fetch { "atomic.fetch" } else { "atomic" });
    }

    fn cond_jump(&mut self, c: Ctx, to: Label) {
        let width = self.rng.pick(&[Width::W64, Width::W32]);
        let cond = self.rng.pick(&[
            JmpCond::Eq,
            JmpCond::Ne,
            JmpCond::Gt,
            JmpCond::Ge,
            JmpCond::Lt,
            JmpCond::Le,
            JmpCond::Set,
            JmpCond::Sgt,
            JmpCond::Sge,
            JmpCond::Slt,
            JmpCond::Sle,
        ]);
        let src = if self.rng.chance(50) {
            Operand::Reg(self.rng.below(8) as u8)
        } else {
            Operand::Imm(self.imm())
        };
        let dst = self.data_reg(c);
        self.asm.items.push(Item::Jmp {
            width,
            cond: Some(cond),
            dst,
            src,
            long: false,
            to,
        });
    }

    fn fwd_jump(&mut self, c: Ctx) {
        let to = self.asm.label();
        if self.rng.chance(15) {
            let long = self.rng.chance(50);
            self.asm.items.push(Item::Jmp {
                width: Width::W64,
                cond: None,
                dst: 0,
                src: Operand::Imm(0),
                long,
                to,
            });
            self.note("ja.forward");
        } else {
            self.cond_jump(c, to);
            self.note("jcc.forward");
        }
        let inner = Ctx {
            nest: c.nest + 1,
            ..c
        };
        for _ in 0..self.rng.range(1, 4) {
            self.item(inner);
        }
        self.asm.mark(to);
    }

    fn loop_(&mut self, c: Ctx) {
        let n = self.rng.range(1, 6) as i32;
        self.asm.i(mov(7, n));
        let top = self.asm.label();
        self.asm.mark(top);
        let inner = Ctx {
            in_loop: true,
            nest: c.nest + 1,
            ..c
        };
        for _ in 0..self.rng.range(1, 6) {
            self.item(inner);
        }
        let style = self.rng.below(5);
        let dec = match self.rng.below(3) {
            0 => alu(Width::W64, AluOp::Sub, 7, Operand::Imm(1)),
            1 => alu(Width::W64, AluOp::Add, 7, Operand::Imm(-1)),
            _ => alu(Width::W32, AluOp::Sub, 7, Operand::Imm(1)),
        };
        self.asm.i(dec);
        let back = |cond, width| Item::Jmp {
            width,
            cond: Some(cond),
            dst: 7,
            src: Operand::Imm(0),
            long: false,
            to: top,
        };
        match style {
            0 => self.asm.items.push(back(JmpCond::Ne, Width::W64)),
            1 => self.asm.items.push(back(JmpCond::Sgt, Width::W64)),
            2 => self.asm.items.push(back(JmpCond::Ne, Width::W32)),
            3 => self.asm.items.push(back(JmpCond::Gt, Width::W64)),
            _ => {
                let out = self.asm.label();
                self.asm.items.push(Item::Jmp {
                    width: Width::W64,
                    cond: Some(JmpCond::Eq),
                    dst: 7,
                    src: Operand::Imm(0),
                    long: false,
                    to: out,
                });
                let long = self.rng.chance(30);
                self.asm.items.push(Item::Jmp {
                    width: Width::W64,
                    cond: None,
                    dst: 0,
                    src: Operand::Imm(0),
                    long,
                    to: top,
                });
                self.asm.mark(out);
            }
        }
        self.note("loop");
    }

    /// Stack offset (from r10) of a scratch area of `len` bytes, aligned to 8.
    fn scratch(&mut self, len: i64) -> i16 {
        let off = self.rng.range(len, 512);
        (-(off - off % 8).max((len + 7) / 8 * 8)) as i16
    }

    fn helper(&mut self, c: Ctx) {
        match self.rng.below(11) {
            0 | 1 => {
                self.asm.i(call(200));
                self.note("helper.pure");
            }
            2 => {
                // Reads and rewrites `len` bytes at a pointer.
                let len = self.rng.range(1, 16);
                let bad = self.fault();
                let (base, off) = if c.callback || self.rng.chance(50) {
                    (10, -self.rng.range(len, 512))
                } else {
                    (8, self.rng.range(0, MEM_LEN - len))
                };
                let off = if bad { off + 600 } else { off };
                self.asm.i(movr(1, base));
                self.asm
                    .i(alu(Width::W64, AluOp::Add, 1, Operand::Imm(off as i32)));
                self.asm.i(mov(2, len as i32));
                self.asm.i(call(201));
                self.asm.i(mov(1, self.rng.next() as u16 as i32));
                self.note("helper.memory");
            }
            3 => {
                if self.rng.chance(30) {
                    self.asm.i(mov(1, 0x5a));
                }
                self.asm.i(call(202));
                self.note("helper.may_fail");
            }
            4 => {
                let id = self.rng.pick(&[
                    ids::KTIME_GET_NS,
                    ids::GET_PRANDOM_U32,
                    ids::GET_SMP_PROCESSOR_ID,
                    ids::GET_CURRENT_PID_TGID,
                    ids::GET_CURRENT_UID_GID,
                    ids::KTIME_GET_BOOT_NS,
                ]);
                self.asm.i(call(id));
                self.note("helper.env");
            }
            5 | 6 => self.map_lookup(c),
            7 => {
                // map_update(map, &key, &value, 0)
                let k = self.scratch(8);
                let v = self.scratch(16);
                let key = self.rng.range(0, 4) as i32;
                let val = self.imm();
                self.asm.i(Instruction::St {
                    size: MemSize::W,
                    dst: 10,
                    off: k,
                    imm: key,
                });
                self.asm.i(Instruction::St {
                    size: MemSize::DW,
                    dst: 10,
                    off: v,
                    imm: val,
                });
                self.asm.i(Instruction::St {
                    size: MemSize::DW,
                    dst: 10,
                    off: v + 8,
                    imm: !val,
                });
                self.asm.i(lddw(1, MAP as u64));
                self.asm.i(movr(2, 10));
                self.asm
                    .i(alu(Width::W64, AluOp::Add, 2, Operand::Imm(k as i32)));
                self.asm.i(movr(3, 10));
                self.asm
                    .i(alu(Width::W64, AluOp::Add, 3, Operand::Imm(v as i32)));
                self.asm.i(mov(4, 0));
                self.asm.i(call(ids::MAP_UPDATE_ELEM));
                self.asm.i(mov(2, 2));
                self.asm.i(mov(3, 3));
                self.note("helper.map_update");
            }
            8 => {
                // bpf_trace_printk("v=%d\n", 6, rX)
                let k = self.scratch(8);
                let x = self.rng.below(8) as u8;
                self.asm.i(movr(3, x));
                self.asm.i(lddw(1, u64::from_le_bytes(*b"v=%d\n\0\0\0")));
                self.asm.i(Instruction::Stx {
                    size: MemSize::DW,
                    dst: 10,
                    src: 1,
                    off: k,
                });
                self.asm.i(movr(1, 10));
                self.asm
                    .i(alu(Width::W64, AluOp::Add, 1, Operand::Imm(k as i32)));
                self.asm.i(mov(2, 6));
                self.asm.i(call(ids::TRACE_PRINTK));
                self.asm.i(mov(1, 1));
                self.note("helper.trace_printk");
            }
            9 if !c.callback => {
                // bpf_loop(n, cb, ctx, flags)
                let cb = self.asm.label();
                self.subs.push(Sub::Callback(cb));
                let n = self.rng.range(0, 6) as i32;
                self.asm.i(mov(1, n));
                self.asm.items.push(Item::Func(2, cb));
                let k = self.imm();
                self.asm.i(mov(3, k));
                self.asm.i(mov(4, if self.rng.chance(5) { 1 } else { 0 }));
                self.asm.i(call(ids::LOOP));
                self.note("helper.bpf_loop");
            }
            _ => {
                // callx of a helper number.
                let r = self.data_reg(c);
                self.asm.i(mov(r, 200));
                self.asm.i(Instruction::Call(CallTarget::Reg(r)));
                self.note("helper.callx");
            }
        }
    }

    fn map_lookup(&mut self, c: Ctx) {
        let k = self.scratch(8);
        let key = self.rng.range(0, 4) as i32; // 4: a miss
        self.asm.i(Instruction::St {
            size: MemSize::W,
            dst: 10,
            off: k,
            imm: key,
        });
        self.asm.i(lddw(1, MAP as u64));
        self.asm.i(movr(2, 10));
        self.asm
            .i(alu(Width::W64, AluOp::Add, 2, Operand::Imm(k as i32)));
        self.asm.i(call(ids::MAP_LOOKUP_ELEM));
        // r2 still points to the key (r1-r5 survive calls here): no pointers in data registers.
        self.asm.i(mov(2, 2));
        let miss = self.asm.label();
        self.asm.items.push(Item::Jmp {
            width: Width::W64,
            cond: Some(JmpCond::Eq),
            dst: 0,
            src: Operand::Imm(0),
            long: false,
            to: miss,
        });
        for _ in 0..self.rng.range(1, 3) {
            let size = self.rng.pick(&SIZES);
            let sz = size.bytes() as i64;
            let bad = self.fault();
            let mut off = self.rng.range(0, VALUE_SIZE - sz);
            let x = self.rng.range(1, 6) as u8;
            let x = if c.in_loop && x == 7 { 6 } else { x };
            match self.rng.below(3) {
                0 => {
                    if bad {
                        off = VALUE_SIZE;
                    }
                    self.asm.i(Instruction::Ldx {
                        size,
                        signed: false,
                        dst: x,
                        src: 0,
                        off: off as i16,
                    });
                }
                1 => {
                    if bad {
                        off = -sz;
                    }
                    self.asm.i(Instruction::Stx {
                        size,
                        dst: 0,
                        src: x,
                        off: off as i16,
                    });
                }
                _ => {
                    let size = self.rng.pick(&[MemSize::W, MemSize::DW]);
                    let sz = size.bytes() as i64;
                    let off = if bad {
                        1
                    } else {
                        self.rng.range(0, VALUE_SIZE / sz - 1) * sz
                    };
                    self.asm.i(Instruction::Atomic {
                        size,
                        op: AtomicOp::Add,
                        fetch: self.rng.chance(50),
                        dst: 0,
                        src: x,
                        off: off as i16,
                    });
                }
            }
        }
        self.asm.mark(miss);
        // No map pointers in data registers.
        self.asm.i(mov(0, self.rng.next() as u16 as i32));
        self.note("helper.map_lookup");
    }

    fn local_call(&mut self, c: Ctx) {
        let l = self.asm.label();
        if self.fault() && self.rng.chance(30) {
            self.subs.push(Sub::Recursive(l));
            self.asm.items.push(Item::Call(l));
            self.note("call.recursive");
            return;
        }
        self.subs.push(Sub::Local(
            l,
            Ctx {
                in_loop: false,
                callback: false,
                depth: c.depth + 1,
                nest: 0,
            },
        ));
        if self.rng.chance(30) {
            let r = self.data_reg(c);
            self.asm.items.push(Item::Func(r, l));
            self.asm.i(Instruction::Call(CallTarget::Reg(r)));
            self.note("call.callx");
        } else {
            self.asm.items.push(Item::Call(l));
            self.note("call.local");
        }
    }

    /// An intentional fault, at most one per program.
    fn bad(&mut self, c: Ctx) {
        if !self.fault() {
            return self.alu(c);
        }
        match self.rng.below(6) {
            0 | 1 => {
                let size = self.rng.pick(&SIZES);
                let (src, off) = self.addr(c, size, false, true);
                let dst = self.data_reg(c);
                self.asm.i(Instruction::Ldx {
                    size,
                    signed: false,
                    dst,
                    src,
                    off,
                });
                self.note("fault.oob");
            }
            2 => {
                let size = self.rng.pick(&[MemSize::W, MemSize::DW]);
                let (dst, off) = self.addr(c, size, true, false);
                let src = self.data_reg(c);
                self.asm.i(Instruction::Atomic {
                    size,
                    op: AtomicOp::Add,
                    fetch: false,
                    dst,
                    src,
                    off: off + 2,
                });
                self.note("fault.misaligned");
            }
            3 => {
                let r = self.data_reg(c);
                self.asm.i(mov(r, 9999));
                self.asm.i(Instruction::Call(CallTarget::Reg(r)));
                self.note("fault.unknown_helper");
            }
            4 => {
                let r = self.data_reg(c);
                self.asm.i(lddw(r, 0xbf00_0000_0001_0003));
                self.asm.i(Instruction::Call(CallTarget::Reg(r)));
                self.note("fault.bad_callx");
            }
            _ => {
                // A loop that never ends.
                let top = self.asm.label();
                self.asm.mark(top);
                self.asm.i(alu(Width::W64, AluOp::Add, 0, Operand::Imm(1)));
                self.asm.items.push(Item::Jmp {
                    width: Width::W64,
                    cond: None,
                    dst: 0,
                    src: Operand::Imm(0),
                    long: false,
                    to: top,
                });
                self.note("fault.runaway");
            }
        }
    }

    fn program(mut self) -> Vec<Insn> {
        let c = Ctx {
            in_loop: false,
            callback: false,
            depth: 0,
            nest: 0,
        };
        self.asm.i(movr(8, 1));
        self.asm.i(movr(9, 10));
        self.asm
            .i(alu(Width::W64, AluOp::Add, 9, Operand::Imm(-256)));
        for r in 0..8 {
            let i = if self.rng.chance(30) {
                lddw(r, self.rng.next())
            } else {
                mov(r, self.imm())
            };
            self.asm.i(i);
        }
        for _ in 0..self.rng.range(3, 40) {
            self.item(c);
        }
        self.fold_and_exit();
        let mut done = 0;
        while done < self.subs.len() {
            match std::mem::replace(&mut self.subs[done], Sub::Recursive(Label(usize::MAX))) {
                Sub::Local(l, c) => {
                    self.asm.mark(l);
                    for _ in 0..self.rng.range(1, 12) {
                        self.item(c);
                    }
                    self.asm.i(Instruction::Exit);
                }
                Sub::Callback(l) => {
                    self.asm.mark(l);
                    let c = Ctx {
                        in_loop: false,
                        callback: true,
                        depth: 1,
                        nest: 0,
                    };
                    for _ in 0..self.rng.range(1, 10) {
                        self.item(c);
                    }
                    // Mostly keep going; sometimes stop at a given index.
                    self.asm.i(mov(0, 0));
                    if self.rng.chance(40) {
                        let stop = self.rng.range(0, 4) as i32;
                        self.asm.i(Instruction::Jmp {
                            width: Width::W64,
                            cond: JmpCond::Ne,
                            dst: 1,
                            src: Operand::Imm(stop),
                            off: 1,
                        });
                        self.asm.i(mov(0, 1));
                    }
                    self.asm.i(Instruction::Exit);
                }
                Sub::Recursive(l) => {
                    if l.0 != usize::MAX {
                        self.asm.mark(l);
                        self.asm.i(alu(Width::W64, AluOp::Add, 0, Operand::Imm(1)));
                        self.asm.items.push(Item::Call(l));
                        self.asm.i(Instruction::Exit);
                    }
                }
            }
            done += 1;
        }
        self.asm.finish()
    }

    fn fold_and_exit(&mut self) {
        for r in 1..8 {
            let op = self.rng.pick(&[AluOp::Xor, AluOp::Add, AluOp::Sub]);
            self.asm.i(alu(Width::W64, op, 0, Operand::Reg(r)));
            self.asm
                .i(alu(Width::W64, AluOp::Mul, 0, Operand::Imm(0x2f)));
        }
        self.asm.i(Instruction::Exit);
    }
}

// --- helpers and maps the programs use ----------------------------------------------------------

fn mix(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    Ok(a[0].wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ a[1].rotate_left(13)
        ^ a[2].wrapping_add(a[3]).rotate_right(7)
        ^ a[4])
}

fn rewrite(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let len = (a[1] as usize).min(16);
    let mut buf = [0u8; 16];
    ctx.read(a[0], &mut buf[..len])?;
    let mut sum = 0u64;
    for (i, b) in buf[..len].iter_mut().enumerate() {
        sum = sum.wrapping_mul(31).wrapping_add(*b as u64);
        *b ^= 0x5a ^ i as u8;
    }
    ctx.write(a[0], &buf[..len])?;
    Ok(sum)
}

fn may_fail(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    if a[0] & 0xff == 0x5a {
        Err(HelperError::Other("refused".into()))
    } else {
        Ok(a[0].wrapping_mul(3))
    }
}

fn helpers() -> Helpers {
    let mut h = Helpers::standard();
    h.register(200, "mix", mix);
    h.register(201, "rewrite", rewrite);
    h.register(202, "may_fail", may_fail);
    h
}

/// Map 1: 4 entries of 16 bytes, u32 keys.
struct Maps {
    values: UnsafeCell<[u64; 8]>,
}

const MAP_INIT: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

// SAFETY: the values live as long as `self`, which outlives every run.
unsafe impl MapAccess for Maps {
    fn key_size(&self, map: u64) -> Option<usize> {
        (map == MAP as u64).then_some(4)
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        (map == MAP as u64).then_some(VALUE_SIZE as usize)
    }
    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let k = u32::from_ne_bytes(key.try_into().ok()?) as usize;
        if map != MAP as u64 || k >= 4 {
            return None;
        }
        // SAFETY: k < 4: entry k is words 2k, 2k+1.
        let p = unsafe { (self.values.get() as *mut u64).add(2 * k) };
        Some(MemRef {
            ptr: NonNull::new(p.cast()).unwrap(),
            len: VALUE_SIZE as usize,
            writable: true,
        })
    }
    fn update(&self, map: u64, key: &[u8], value: &[u8], _flags: u64) -> i64 {
        match self.lookup(map, key) {
            Some(m) => {
                // SAFETY: 16 bytes of an entry of ours; no run holds a reference to it.
                unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), m.ptr.as_ptr(), 16) };
                0
            }
            None => -7,
        }
    }
    fn delete(&self, _: u64, _: &[u8]) -> i64 {
        -22
    }
}

/// Replaces instructions by no-ops (`ja +0`, keeping every offset valid) while `fails` still
/// holds: a small program showing a mismatch.
fn minimize(mut slots: Vec<Insn>, fails: &dyn Fn(&[Insn]) -> bool) -> Vec<Insn> {
    let nop = Instruction::Ja {
        off: 0,
        long: false,
    }
    .encode()[0];
    loop {
        let mut changed = false;
        let decoded = bpfvfs_ebpf::decode(&slots).unwrap();
        for &(pc, insn) in decoded.iter().rev() {
            if matches!(insn, Instruction::Exit | Instruction::Ja { off: 0, .. }) {
                continue;
            }
            let mut t = slots.clone();
            for s in &mut t[pc..pc + insn.slots()] {
                *s = nop;
            }
            if fails(&t) {
                slots = t;
                changed = true;
            }
        }
        if !changed {
            return slots;
        }
    }
}

fn result_kind(r: &Result<u64, ExecError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(ExecError::Helper { error, .. }) => match error {
            HelperError::Callback(inner) => {
                format!("helper(callback({}))", result_kind(&Err((**inner).clone())))
            }
            HelperError::Fault { .. } => "helper(fault)".into(),
            HelperError::Other(_) => "helper(other)".into(),
            e => format!("helper({e:?})"),
        },
        Err(e) => format!("{e:?}")
            .split([' ', '{'])
            .next()
            .unwrap()
            .to_string(),
    }
}

#[test]
fn random_programs_agree() {
    let cases: u64 = std::env::var("JIT_EQUIV_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("JIT_EQUIV_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00c0_ffee_5eed);
    let h = helpers();
    let maps = Maps {
        values: UnsafeCell::new(MAP_INIT),
    };
    // SAFETY (reset, snapshot): called between runs, when no program holds a map pointer.
    let reset = || unsafe { *maps.values.get() = MAP_INIT };
    let snapshot = || {
        unsafe { *maps.values.get() }
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect()
    };
    let mut stats = Stats::default();
    let only: Option<u64> = std::env::var("JIT_EQUIV_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for case in 0..cases {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        let case_seed = seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = Rng(case_seed);
        let fault_percent = rng.pick(&[0, 0, 3, 10]);
        // Unlimited only without intentional faults (one of them is a runaway loop).
        let budget = match rng.below(10) {
            0 => Some(rng.below(20)),
            1 if fault_percent == 0 => None,
            _ => Some(10_000),
        };
        let mut mem = vec![0u8; MEM_LEN as usize];
        for b in &mut mem {
            *b = rng.next() as u8;
        }
        let slots = Gen {
            rng: &mut rng,
            asm: Asm::default(),
            subs: Vec::new(),
            stats: &mut stats,
            faulted: false,
            fault_percent,
        }
        .program();
        let prog = Program::load(&slots, LoadOptions::default()).unwrap_or_else(|e| {
            panic!("case {case} (seed {case_seed:#x}): generated an invalid program: {e}")
        });
        stats.programs += 1;
        stats.slots += prog.len() as u64;
        let c = Case {
            program: &prog,
            helpers: &h,
            mem: &mem,
            budget,
            maps: Some(&maps),
            reset: &reset,
            snapshot: &snapshot,
            unchecked: true,
        };
        match compare(&c) {
            Ok(a) => {
                *stats
                    .results
                    .entry(result_kind(&a.checked.result))
                    .or_default() += 1;
                stats.unchecked += a.unchecked_compared as u64;
            }
            Err(EquivError::Mismatch(m)) => {
                if std::env::var("JIT_EQUIV_MINIMIZE").is_ok() {
                    let small = minimize(slots, &|s: &[Insn]| {
                        let Ok(p) = Program::load(s, LoadOptions::default()) else {
                            return false;
                        };
                        matches!(
                            compare(&Case { program: &p, ..c }),
                            Err(EquivError::Mismatch(_))
                        )
                    });
                    let p = Program::load(&small, LoadOptions::default()).unwrap();
                    let m = compare(&Case { program: &p, ..c }).unwrap_err();
                    panic!("minimized (case {case}): {m}\n{}", p.disassemble());
                }
                panic!(
                "case {case} (JIT_EQUIV_SEED={seed}, case seed {case_seed:#x}, budget {budget:?}): {m}\n\
                 interpreter: {:x?}\njit: {:x?}\n{}",
                m.interp.result,
                m.jit.result,
                prog.disassemble()
            )
            }
            Err(e) => panic!("case {case}: {e}\n{}", prog.disassemble()),
        }
    }
    println!(
        "{} programs, {} slots (mean {:.1}); unchecked modes compared on {}",
        stats.programs,
        stats.slots,
        stats.slots as f64 / stats.programs as f64,
        stats.unchecked
    );
    println!("results: {:#?}", stats.results);
    println!("generated: {:#?}", stats.items);
    // The generator must reach every outcome (else it silently lost coverage).
    if cases >= 1000 {
        for kind in [
            "ok",
            "MemoryAccess",
            "Misaligned",
            "Budget",
            "CallDepth",
            "UnknownHelper",
            "InvalidCallTarget",
            "helper(other)",
            "helper(fault)",
        ] {
            assert!(
                stats.results.keys().any(|k| k.starts_with(kind)),
                "no case ended in {kind}: {:?}",
                stats.results
            );
        }
    }
}
