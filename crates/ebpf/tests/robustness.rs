//! Random programs in checked mode: whatever the bytes, loading and running return a value or
//! a typed error — no panic, no crash, no hang.

use bpfvfs_ebpf::insn::Insn;
use bpfvfs_ebpf::{Env, Helpers, Interpreter, Program};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const HELPERS: &[i32] = &[
    1, 2, 3, 5, 6, 7, 8, 14, 15, 16, 113, 130, 131, 132, 165, 181, 9999,
];

fn reg(r: &mut Rng) -> u8 {
    (r.next() % 11) as u8
}

fn off(r: &mut Rng) -> i16 {
    match r.next() % 4 {
        0 => r.pick(&[0, 1, 8, -8, -512, -4096]),
        1 => (r.next() % 16) as i16 - 8,
        2 => -((r.next() % 520) as i16),
        _ => r.next() as i16,
    }
}

fn imm(r: &mut Rng) -> i32 {
    match r.next() % 4 {
        0 => r.pick(&[0, 1, -1, 16, 32, 64, 63, i32::MIN, i32::MAX]),
        1 => (r.next() % 16) as i32 - 8,
        2 => r.pick(HELPERS),
        _ => r.next() as i32,
    }
}

fn random_insn(r: &mut Rng, n: i32) -> Vec<Insn> {
    use bpfvfs_ebpf::insn::*;
    let width = if r.next() % 2 == 0 {
        Width::W32
    } else {
        Width::W64
    };
    let size = r.pick(&[MemSize::B, MemSize::H, MemSize::W, MemSize::DW]);
    let operand = |r: &mut Rng| {
        if r.next() % 2 == 0 {
            Operand::Reg(reg(r))
        } else {
            Operand::Imm(imm(r))
        }
    };
    let jump = |r: &mut Rng| (r.next() % (n as u64 + 4)) as i16 - 3;
    // Avoid writing r10 most of the time, so that programs load.
    let dst = |r: &mut Rng| (r.next() % 10) as u8;
    let i = match r.next() % 16 {
        0..=3 => Instruction::Alu {
            width,
            op: r.pick(&[
                AluOp::Add,
                AluOp::Sub,
                AluOp::Mul,
                AluOp::Div,
                AluOp::SDiv,
                AluOp::Or,
                AluOp::And,
                AluOp::Lsh,
                AluOp::Rsh,
                AluOp::Mod,
                AluOp::SMod,
                AluOp::Xor,
                AluOp::Mov,
                AluOp::Arsh,
            ]),
            dst: dst(r),
            src: operand(r),
        },
        4 => Instruction::Neg { width, dst: dst(r) },
        5 => Instruction::End {
            kind: r.pick(&[Endian::ToLe, Endian::ToBe, Endian::Swap]),
            bits: r.pick(&[16, 32, 64]),
            dst: dst(r),
        },
        6 => Instruction::LdImm64 {
            dst: dst(r),
            kind: LdImmKind::Imm64,
            imm: imm(r),
            next_imm: imm(r),
        },
        7 => Instruction::Ldx {
            size,
            signed: size != MemSize::DW && r.next() % 3 == 0,
            dst: dst(r),
            src: reg(r),
            off: off(r),
        },
        8 => Instruction::St {
            size,
            dst: reg(r),
            off: off(r),
            imm: imm(r),
        },
        9 => Instruction::Stx {
            size,
            dst: reg(r),
            src: reg(r),
            off: off(r),
        },
        10 => Instruction::Atomic {
            size: if r.next() % 2 == 0 {
                MemSize::W
            } else {
                MemSize::DW
            },
            op: r.pick(&[
                AtomicOp::Add,
                AtomicOp::Or,
                AtomicOp::And,
                AtomicOp::Xor,
                AtomicOp::Xchg,
                AtomicOp::CmpXchg,
            ]),
            fetch: r.next() % 2 == 0,
            dst: reg(r),
            src: dst(r),
            off: off(r),
        },
        11 => Instruction::Ja {
            off: jump(r) as i32,
            long: r.next() % 2 == 0,
        },
        12 | 13 => Instruction::Jmp {
            width,
            cond: r.pick(&[
                JmpCond::Eq,
                JmpCond::Gt,
                JmpCond::Ge,
                JmpCond::Set,
                JmpCond::Ne,
                JmpCond::Sgt,
                JmpCond::Sge,
                JmpCond::Lt,
                JmpCond::Le,
                JmpCond::Slt,
                JmpCond::Sle,
            ]),
            dst: reg(r),
            src: operand(r),
            off: jump(r),
        },
        14 => match r.next() % 4 {
            0 => Instruction::Call(CallTarget::Local(jump(r) as i32)),
            1 => Instruction::Call(CallTarget::Reg(reg(r))),
            _ => Instruction::Call(CallTarget::Helper(r.pick(HELPERS))),
        },
        _ => Instruction::Exit,
    };
    // Some raw noise too.
    if r.next() % 50 == 0 {
        return vec![Insn::new(r.next() as u8, reg(r), reg(r), off(r), imm(r))];
    }
    i.encode()
}

#[test]
fn random_programs_never_crash() {
    let helpers = Helpers::standard();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut loaded, mut ran_ok) = (0, 0);
    for _ in 0..std::env::var("EBPF_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
    {
        let n = 2 + (rng.next() % 24) as i32;
        let mut slots: Vec<Insn> = (0..n).flat_map(|_| random_insn(&mut rng, n)).collect();
        slots.push(Insn::new(0x95, 0, 0, 0, 0));
        let Ok(p) = Program::load(&slots, Default::default()) else {
            continue;
        };
        let Ok(mut vm) = Interpreter::new(&p, &helpers) else {
            continue;
        };
        loaded += 1;
        vm.set_budget(Some(10_000));
        let mut mem = [0u8; 64];
        let mut env = Env::new();
        if vm.run_mem(&mut mem, &mut env).is_ok() {
            ran_ok += 1;
        }
    }
    println!("{loaded} programs loaded, {ran_ok} ran to exit");
    assert!(
        loaded > 1000 && ran_ok > 100,
        "generator too weak: {loaded} loaded, {ran_ok} ran"
    );
}
