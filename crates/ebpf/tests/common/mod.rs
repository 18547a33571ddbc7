//! Shared by the engine tests (`semantics.rs`, `jit.rs`, `conformance.rs`): loading programs,
//! instruction builders, a test map and the conformance suite's file list.
#![allow(dead_code)]

use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::helpers::{ids, MemRef};
use bpfvfs_ebpf::insn::{
    AluOp, CallTarget, Insn, Instruction, JmpCond, LdImmKind, MemSize, Operand, Width,
};
use bpfvfs_ebpf::interp::LoadOptions;
use bpfvfs_ebpf::{MapAccess, Program};
use std::cell::UnsafeCell;
use std::path::PathBuf;
use std::ptr::NonNull;

pub fn load(src: &str) -> Program {
    Program::load(&assemble(src).unwrap(), LoadOptions::default()).unwrap()
}

pub fn load_insns(insns: &[Instruction]) -> Program {
    let slots: Vec<Insn> = insns.iter().flat_map(|i| i.encode()).collect();
    Program::load(&slots, LoadOptions::default()).unwrap()
}

/// The directory of the eBPF conformance suite (../shared/conformance/tests).
pub fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/tests")
}

/// The suite's `.data` files, sorted; `None` (after printing SKIPPED) when the suite is absent.
pub fn conformance_files() -> Option<Vec<PathBuf>> {
    let dir = conformance_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("SKIPPED: conformance suite not found at {}", dir.display());
        return None;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    Some(files)
}

pub fn func_ptr(dst: u8, target_rel: i32) -> Instruction {
    Instruction::LdImm64 {
        dst,
        kind: LdImmKind::Func,
        imm: target_rel,
        next_imm: 0,
    }
}

pub fn mov(dst: u8, imm: i32) -> Instruction {
    Instruction::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Operand::Imm(imm),
    }
}

/// A map for tests: handle 1 is an array of 4 u64 values with u32 keys.
pub struct TestMaps {
    pub values: UnsafeCell<[u64; 4]>,
}

// SAFETY: values live as long as `self`, which outlives the runs in these tests.
unsafe impl MapAccess for TestMaps {
    fn key_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(4)
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(8)
    }
    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        let k = u32::from_ne_bytes(key.try_into().ok()?) as usize;
        if map != 1 || k >= 4 {
            return None;
        }
        // SAFETY: k < 4.
        let p = unsafe { (self.values.get() as *mut u64).add(k) };
        Some(MemRef {
            ptr: NonNull::new(p.cast()).unwrap(),
            len: 8,
            writable: true,
        })
    }
    fn update(&self, map: u64, key: &[u8], value: &[u8], _flags: u64) -> i64 {
        match self.lookup(map, key) {
            Some(m) => {
                // SAFETY: 8 bytes at a value of ours.
                unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), m.ptr.as_ptr(), 8) };
                0
            }
            None => -7,
        }
    }
    fn delete(&self, _map: u64, _key: &[u8]) -> i64 {
        -22
    }
}

/// `bpf_loop(10, cb, &counter, 0)`, cb adds i to counter and stops at i == 6; returns
/// `n << 8 | counter`.
pub fn bpf_loop_program() -> Vec<Instruction> {
    use Instruction as I;
    vec![
        /* 0 */
        I::St {
            size: MemSize::DW,
            dst: 10,
            off: -8,
            imm: 0,
        },
        /* 1 */ mov(1, 10),
        /* 2 */ func_ptr(2, 9), // -> 12
        /* 4 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: 3,
            src: Operand::Reg(10),
        },
        /* 5 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 3,
            src: Operand::Imm(-8),
        },
        /* 6 */ mov(4, 0),
        /* 7 */ I::Call(CallTarget::Helper(ids::LOOP as i32)),
        /* 8 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Lsh,
            dst: 0,
            src: Operand::Imm(8),
        },
        /* 9 */
        I::Ldx {
            size: MemSize::DW,
            signed: false,
            dst: 1,
            src: 10,
            off: -8,
        },
        /* 10 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Or,
            dst: 0,
            src: Operand::Reg(1),
        },
        /* 11 */ I::Exit,
        /* 12 */
        I::Ldx {
            size: MemSize::DW,
            signed: false,
            dst: 3,
            src: 2,
            off: 0,
        },
        /* 13 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 3,
            src: Operand::Reg(1),
        },
        /* 14 */
        I::Stx {
            size: MemSize::DW,
            dst: 2,
            src: 3,
            off: 0,
        },
        /* 15 */ mov(0, 0),
        /* 16 */
        I::Jmp {
            width: Width::W64,
            cond: JmpCond::Ne,
            dst: 1,
            src: Operand::Imm(6),
            off: 1,
        },
        /* 17 */ mov(0, 1),
        /* 18 */ I::Exit,
    ]
}

/// Each frame has its own stack; r6 survives the call; returns 42 (-1 if the callee's stack
/// write or r6 leaked into the caller).
pub const OWN_FRAME_PROGRAM: &str = "
    mov %r6, 6
    stdw [%r10-8], 111
    mov %r1, 1
    call local f
    ldxdw %r2, [%r10-8]
    jne %r2, 111, bad
    jne %r6, 6, bad
    exit
bad:
    mov %r0, -1
    exit
f:
    stdw [%r10-8], 222
    mov %r6, 0
    mov %r0, %r1
    add %r0, 41
    exit";

/// A callee works on the caller's stack through a pointer; returns 15.
pub const CALLER_STACK_PROGRAM: &str = "
    stdw [%r10-8], 5
    mov %r1, %r10
    add %r1, -8
    call local f
    ldxdw %r0, [%r10-8]
    exit
f:
    ldxdw %r2, [%r1]
    mul %r2, 3
    stxdw [%r1], %r2
    exit";
