//! The JIT's size-driven code choices keep the interpreter's semantics: 8-bit immediates and
//! displacements where they fit (edges of the range included), `jeq`/`jne` against 0 using the
//! flags of the ALU operation just before (and not when control can arrive from elsewhere, or
//! the operation sets no flags, or widths differ), loop heads padded with long NOPs. Each
//! case runs through `jit::equiv::compare` (interpreter and JIT, checked and unchecked).
#![cfg(target_arch = "x86_64")]

mod common;

use bpfvfs_ebpf::jit::equiv::{compare, Case};
use bpfvfs_ebpf::{ExecError, Helpers};

use common::load;

fn eval(src: &str) -> Result<u64, ExecError> {
    let p = load(src);
    let h = Helpers::standard();
    for budget in [Some(1_000_000), None] {
        let c = Case {
            program: &p,
            helpers: &h,
            mem: &[],
            budget,
            maps: None,
            reset: &|| {},
            snapshot: &Vec::new,
            unchecked: true,
        };
        if let Err(e) = compare(&c) {
            panic!("engines disagree (budget {budget:?}): {e}\n{src}");
        }
    }
    let c = Case {
        program: &p,
        helpers: &h,
        mem: &[],
        budget: None,
        maps: None,
        reset: &|| {},
        snapshot: &Vec::new,
        unchecked: false,
    };
    compare(&c).unwrap().checked.result
}

#[test]
fn immediates_and_displacements_at_the_edges_of_8_bits() {
    for imm in [
        -129i64,
        -128,
        -1,
        0,
        1,
        127,
        128,
        255,
        256,
        -2147483648,
        2147483647,
    ] {
        for op in [
            "add", "sub", "and", "or", "xor", "mul", "add32", "sub32", "and32", "or32", "xor32",
            "mul32",
        ] {
            let src = format!("lddw %r1, 0x123456789abcdef0\n{op} %r1, {imm}\nmov %r0, %r1\nexit");
            eval(&src).unwrap();
        }
        for j in [
            "jeq", "jne", "jgt", "jsgt", "jlt", "jslt", "jeq32", "jsgt32",
        ] {
            for v in [imm - 1, imm, imm + 1] {
                let src = format!(
                    "lddw %r1, {v}\nmov %r0, 1\n{j} %r1, {imm}, out\nmov %r0, 2\nout:\nexit"
                );
                eval(&src).unwrap();
            }
        }
    }
    // Stack offsets around -128 (8-bit) and -129 (32-bit displacement), every width.
    for off in [-8, -128, -136, -512] {
        for (st, ld) in [
            ("stxb", "ldxb"),
            ("stxh", "ldxh"),
            ("stxw", "ldxw"),
            ("stxdw", "ldxdw"),
        ] {
            let src = format!(
                "lddw %r1, 0x1122334455667788\n{st} [%r10{off:+}], %r1\n{ld} %r0, [%r10{off:+}]\nexit"
            );
            eval(&src).unwrap();
        }
        let src = format!("stdw [%r10{off:+}], -3\nldxdw %r0, [%r10{off:+}]\nexit");
        assert_eq!(eval(&src), Ok(-3i64 as u64));
    }
}

#[test]
fn zero_tests_reuse_the_flags_of_the_operation_before_only_when_they_may() {
    // Counted loops: `sub` then `jne 0` (the common shape).
    for (op, width) in [("sub", ""), ("sub32", "32"), ("add", ""), ("add32", "32")] {
        let step = if op.starts_with("sub") { 1 } else { -1 };
        let src = format!(
            "mov %r1, 10\nmov %r0, 0\nloop:\nadd %r0, %r1\n{op} %r1, {step}\njne{width} %r1, 0, loop\nexit"
        );
        assert_eq!(eval(&src), Ok(55), "{src}");
    }
    // Every flag-setting operation, both jump widths, zero and non-zero results, and upper
    // bits that differ from the low 32 (a 64-bit result with zero low half must not count
    // as zero for a 64-bit test, nor as non-zero for a 32-bit one).
    let values: [i64; 4] = [0, 1, 0x1_0000_0000, -1];
    let ops = [
        "add %r1, 0",
        "add %r1, 1",
        "sub %r1, 1",
        "and %r1, 0",
        "and %r1, -1",
        "or %r1, 0",
        "or %r1, 2",
        "xor %r1, 0",
        "xor %r1, -1",
        "neg %r1",
        "add %r1, %r2",
        "sub %r1, %r2",
        "and %r1, %r2",
        "or %r1, %r2",
        "xor %r1, %r2",
        "xor %r1, %r1",
        "add32 %r1, 0",
        "sub32 %r1, %r2",
        "and32 %r1, %r2",
        "xor32 %r1, %r1",
        "neg32 %r1",
        "mov %r1, 0",
        "lsh %r1, 1",
        "lsh %r1, 0",
        "rsh %r1, 32",
        "mul %r1, %r2",
        "div %r1, 1",
    ];
    for a in values {
        for b in values {
            for op in ops {
                for j in ["jeq", "jne", "jeq32", "jne32"] {
                    let src = format!(
                        "lddw %r1, {a}\nlddw %r2, {b}\nmov %r0, 1\n{op}\n{j} %r1, 0, out\nmov %r0, 2\nout:\nexit"
                    );
                    eval(&src).unwrap();
                }
            }
        }
    }
    // The test may not be skipped when the jump is also reached by a jump (flags of another
    // path: here ZF = 0 from `jne %r3`'s test while r1 is 0), or when it starts a function
    // (flags of the caller: ZF = 0 from `add %r3, 1` while r2 is 0), though an ALU operation
    // on the same register precedes it.
    let src = "mov %r1, 0\nmov %r3, 1\njne %r3, 0, mid\nsub %r1, 1\nmid:\njeq %r1, 0, out\nmov %r0, 1\nexit\nout:\nmov %r0, 2\nexit";
    assert_eq!(eval(src), Ok(2));
    let src = "mov %r2, 0\nmov %r3, 0\nadd %r3, 1\ncall local f\nexit\nsub %r2, 1\nf:\njeq %r2, 0, z\nmov %r0, 3\nexit\nz:\nmov %r0, 4\nexit";
    assert_eq!(eval(src), Ok(4));
}
