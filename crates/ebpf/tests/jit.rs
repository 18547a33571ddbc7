//! The x86-64 JIT: the conformance suite, Linux's semantics in corner cases, errors (same
//! variants and pcs as the interpreter), helpers, callbacks, calls, modes, W^X, threads.
//! Each semantic check runs through `jit::equiv::compare`, so it also asserts that the
//! interpreter and the JIT (checked and unchecked) agree on r0, memory and stack.
#![cfg(target_arch = "x86_64")]

mod common;

use bpfvfs_ebpf::conformance::{engine_by_name, run_file, InterpEngine};
use bpfvfs_ebpf::helpers::{ids, HelperCtx, HelperError};
use bpfvfs_ebpf::insn::{AluOp, CallTarget, Instruction, LdImmKind, MemSize, Operand, Width};
use bpfvfs_ebpf::jit::equiv::{compare, Case};
use bpfvfs_ebpf::jit::{Jit, JitError, JitProgram, Mode};
use bpfvfs_ebpf::{Env, ExecError, Helpers, Interpreter, LoadError, Program, Region, RegionKind};
use std::cell::UnsafeCell;
use std::sync::Arc;

use common::{bpf_loop_program, conformance_files, func_ptr, load, load_insns, mov, TestMaps};

/// Runs `src` with `mem` through both engines in both modes (asserting they agree) and
/// returns the JIT's checked result.
fn eval_with(p: &Program, h: &Helpers, mem: &[u8], budget: Option<u64>) -> Result<u64, ExecError> {
    let case = Case {
        program: p,
        helpers: h,
        mem,
        budget,
        maps: None,
        reset: &|| {},
        snapshot: &Vec::new,
        unchecked: true,
    };
    match compare(&case) {
        Ok(a) => a.checked.result,
        Err(e) => panic!("engines disagree: {e}\n{}", p.disassemble()),
    }
}

fn eval(src: &str) -> Result<u64, ExecError> {
    eval_with(&load(src), &Helpers::standard(), &[], Some(1_000_000))
}

fn run(src: &str) -> u64 {
    eval(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// The JIT's own error for `src` (checked mode), with `mem`.
fn jit_err(src: &str, mem: &mut [u8]) -> ExecError {
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Jit::new(&p, &h).unwrap();
    vm.set_budget(Some(10_000));
    vm.run_mem(mem, &mut Env::new()).unwrap_err()
}

fn interp_err(src: &str, mem: &mut [u8]) -> ExecError {
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    vm.set_budget(Some(10_000));
    vm.run_mem(mem, &mut Env::new()).unwrap_err()
}

// --- The conformance suite --------------------------------------------------------------------

#[test]
fn conformance_suite_jit() {
    let Some(files) = conformance_files() else {
        return;
    };
    assert_eq!(files.len(), 313);
    let jit = engine_by_name("jit").unwrap();
    let interp = InterpEngine::default();
    let mut passed = 0;
    let mut failed = Vec::new();
    for f in &files {
        let o = run_file(f, jit.as_ref());
        // Same verdict and reason text as the interpreter, file by file.
        assert_eq!(o, run_file(f, &interp), "{}", f.display());
        if o.passed {
            passed += 1;
        } else {
            failed.push(o.to_string());
        }
    }
    println!(
        "conformance (jit): {passed} passed, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
}

// --- Linux's semantics -----------------------------------------------------------------------

#[test]
fn division_by_zero_and_overflow() {
    // x / 0 = 0, x % 0 = x, in all widths and signednesses, register and immediate.
    for op in ["div", "mod", "sdiv", "smod"] {
        for w in ["", "32"] {
            let src = format!(
                "lddw %r1, 0xfedcba9876543210\nmov %r2, 0\n{op}{w} %r1, %r2\nmov %r0, %r1\nexit"
            );
            let expect = match (op, w) {
                ("div" | "sdiv", _) => 0,
                (_, "") => 0xfedcba9876543210,
                _ => 0x76543210,
            };
            assert_eq!(run(&src), expect, "{op}{w}");
        }
    }
    // INT_MIN / -1 = INT_MIN, INT_MIN % -1 = 0 (x86 faults on both).
    let min64 = "lddw %r1, 0x8000000000000000\n";
    assert_eq!(
        run(&format!(
            "{min64}mov %r2, -1\nsdiv %r1, %r2\nmov %r0, %r1\nexit"
        )),
        1 << 63
    );
    assert_eq!(
        run(&format!("{min64}sdiv %r1, -1\nmov %r0, %r1\nexit")),
        1 << 63
    );
    assert_eq!(
        run(&format!(
            "{min64}mov %r2, -1\nsmod %r1, %r2\nmov %r0, %r1\nexit"
        )),
        0
    );
    assert_eq!(run(&format!("{min64}smod %r1, -1\nmov %r0, %r1\nexit")), 0);
    assert_eq!(
        run("mov32 %r1, 0x80000000\nmov32 %r2, -1\nsdiv32 %r1, %r2\nmov %r0, %r1\nexit"),
        0x8000_0000
    );
    assert_eq!(
        run("mov32 %r1, 0x80000000\nsmod32 %r1, -1\nmov %r0, %r1\nexit"),
        0
    );
    // Signed remainder takes the dividend's sign.
    assert_eq!(
        run("mov %r1, -7\nsmod %r1, 2\nmov %r0, %r1\nexit"),
        (-1i64) as u64
    );
    assert_eq!(
        run("mov %r1, -7\nmov %r2, 2\nsdiv %r1, %r2\nmov %r0, %r1\nexit"),
        (-3i64) as u64
    );
    // Every register as destination and divisor, including r0 (rax) and r3 (rdx).
    for d in 0..10 {
        for s in 0..10 {
            if d == s {
                continue;
            }
            let src = format!(
                "mov %r0, 1000\nmov %r1, 1001\nmov %r2, 1002\nmov %r3, 1003\nmov %r4, 1004\n\
                 mov %r5, 1005\nmov %r6, 1006\nmov %r7, 1007\nmov %r8, 1008\nmov %r9, 1009\n\
                 mov %r{s}, 7\nmod %r{d}, %r{s}\nmov %r{s}, 13\ndiv %r{d}, %r{s}\n\
                 lsh %r0, 1\nadd %r0, %r1\nlsh %r0, 1\nadd %r0, %r2\nlsh %r0, 1\nadd %r0, %r3\n\
                 lsh %r0, 1\nadd %r0, %r4\nlsh %r0, 1\nadd %r0, %r5\nlsh %r0, 1\nadd %r0, %r6\n\
                 lsh %r0, 1\nadd %r0, %r7\nlsh %r0, 1\nadd %r0, %r8\nlsh %r0, 1\nadd %r0, %r9\nexit"
            );
            run(&src);
        }
    }
}

#[test]
fn shifts_mask_and_alu32_zero_extends() {
    assert_eq!(run("mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1\nexit"), 2);
    assert_eq!(run("mov %r0, 1\nmov %r1, 33\nlsh32 %r0, %r1\nexit"), 2);
    assert_eq!(
        run("lddw %r0, 0xffffffffffffffff\nmov %r1, 32\nlsh32 %r0, %r1\nexit"),
        0xffff_ffff
    );
    assert_eq!(
        run("lddw %r0, 0xffffffffffffffff\nlsh32 %r0, 0\nexit"),
        0xffff_ffff
    );
    assert_eq!(
        run("lddw %r0, 0x8000000000000000\nmov %r4, 63\narsh %r0, %r4\nexit"),
        u64::MAX
    );
    assert_eq!(
        run("mov32 %r0, 0x80000000\narsh32 %r0, 31\nexit"),
        0xffff_ffff
    );
    // The count in r4 (= rcx) and the shifted value in r4.
    assert_eq!(
        run("mov %r4, 3\nmov %r0, 1\nlsh %r0, %r4\nadd %r0, %r4\nexit"),
        11
    );
    assert_eq!(
        run("mov %r4, 3\nmov %r1, 2\nlsh %r4, %r1\nmov %r0, %r4\nexit"),
        12
    );
    assert_eq!(run("mov %r4, 3\nlsh %r4, %r4\nmov %r0, %r4\nexit"), 24);
    assert_eq!(run("lddw %r0, 0xffffffffffffffff\nadd32 %r0, 1\nexit"), 0);
    assert_eq!(
        run("lddw %r0, 0x1ffffffff\nmov32 %r0, %r0\nexit"),
        0xffff_ffff
    );
    assert_eq!(run("mov %r0, -1\nexit"), u64::MAX);
    assert_eq!(run("mov32 %r0, -1\nexit"), 0xffff_ffff);
    assert_eq!(run("mov %r0, 5\nneg32 %r0\nexit"), 0xffff_fffb);
}

#[test]
fn sign_extension_and_byte_swaps() {
    let insns = |bits: u8, width: Width| {
        load_insns(&[
            Instruction::LdImm64 {
                dst: 1,
                kind: LdImmKind::Imm64,
                imm: 0x8081_8283u32 as i32,
                next_imm: 0x1234_5678,
            },
            Instruction::MovSx {
                width,
                dst: 0,
                src: 1,
                bits,
            },
            Instruction::Exit,
        ])
    };
    let h = Helpers::standard();
    let e = |p: &Program| eval_with(p, &h, &[], None).unwrap();
    assert_eq!(e(&insns(8, Width::W64)), 0xffff_ffff_ffff_ff83);
    assert_eq!(e(&insns(16, Width::W64)), 0xffff_ffff_ffff_8283);
    assert_eq!(e(&insns(32, Width::W64)), 0xffff_ffff_8081_8283);
    assert_eq!(e(&insns(8, Width::W32)), 0xffff_ff83);
    assert_eq!(e(&insns(16, Width::W32)), 0xffff_8283);
    let x = "lddw %r0, 0x0102030405060708\n";
    assert_eq!(run(&format!("{x}be16 %r0\nexit")), 0x0807);
    assert_eq!(run(&format!("{x}be32 %r0\nexit")), 0x0807_0605);
    assert_eq!(run(&format!("{x}be64 %r0\nexit")), 0x0807_0605_0403_0201);
    assert_eq!(run(&format!("{x}le16 %r0\nexit")), 0x0708);
    assert_eq!(run(&format!("{x}le32 %r0\nexit")), 0x0506_0708);
    assert_eq!(run(&format!("{x}le64 %r0\nexit")), 0x0102_0304_0506_0708);
    // Sign-extending loads.
    let mem = [0x80u8, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87];
    let p = load(
        "ldxsb %r0, [%r1]\nldxsh %r2, [%r1]\nldxsw %r3, [%r1]\nadd %r0, %r2\nadd %r0, %r3\nexit",
    );
    let want =
        (0x80u8 as i8 as i64 + 0x8180u16 as i16 as i64 + 0x8382_8180u32 as i32 as i64) as u64;
    assert_eq!(eval_with(&p, &h, &mem, None).unwrap(), want);
    let p = load("ldxb %r0, [%r1+7]\nexit");
    assert_eq!(eval_with(&p, &h, &mem, None).unwrap(), 0x87);
}

#[test]
fn jumps_all_conditions() {
    // Each condition, 64 and 32 bits, register and immediate, on values where signed and
    // unsigned order differ.
    let conds = [
        "jeq", "jne", "jgt", "jge", "jlt", "jle", "jset", "jsgt", "jsge", "jslt", "jsle",
    ];
    let vals: [i64; 6] = [0, 1, -1, i64::MIN, 0x1_0000_0001, -0x1_0000_0000];
    let mut n = 0;
    for c in conds {
        for w in ["", "32"] {
            for &a in &vals {
                for &b in &[0i32, 1, -1, i32::MIN] {
                    let imm = format!(
                        "lddw %r1, {a}\n{c}{w} %r1, {b}, +2\nmov %r0, 1\nexit\nmov %r0, 2\nexit"
                    );
                    let reg = format!("lddw %r1, {a}\nmov %r2, {b}\n{c}{w} %r1, %r2, +2\nmov %r0, 1\nexit\nmov %r0, 2\nexit");
                    assert_eq!(run(&imm), run(&reg), "{c}{w} {a} {b}");
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 11 * 2 * 6 * 4);
    // gotol (JA32 with a 32-bit offset).
    let p = load_insns(&[
        Instruction::Ja { off: 1, long: true },
        Instruction::Exit,
        Instruction::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: 0,
            src: Operand::Imm(77),
        },
        Instruction::Exit,
    ]);
    assert_eq!(eval_with(&p, &Helpers::standard(), &[], None).unwrap(), 77);
}

#[test]
fn atomics() {
    let base = "stdw [%r10-8], 0x0f\nmov %r1, 0x3c\n";
    let get = "ldxdw %r0, [%r10-8]\nlsh %r0, 16\nor %r0, %r1\nexit";
    for (op, mem, fetched) in [
        ("add", 0x4b, 0x0f),
        ("or", 0x3f, 0x0f),
        ("and", 0x0c, 0x0f),
        ("xor", 0x33, 0x0f),
    ] {
        assert_eq!(
            run(&format!("{base}lock {op} [%r10-8], %r1\n{get}")),
            mem << 16 | 0x3c,
            "{op}"
        );
        assert_eq!(
            run(&format!("{base}lock fetch {op} [%r10-8], %r1\n{get}")),
            mem << 16 | fetched,
            "fetch {op}"
        );
        assert_eq!(
            run(&format!("{base}lock {op}32 [%r10-8], %r1\n{get}")),
            mem << 16 | 0x3c,
            "{op}32"
        );
        assert_eq!(
            run(&format!("{base}lock fetch {op}32 [%r10-8], %r1\n{get}")),
            mem << 16 | fetched,
            "fetch {op}32"
        );
    }
    assert_eq!(
        run(&format!("{base}lock xchg [%r10-8], %r1\n{get}")),
        0x3c << 16 | 0x0f
    );
    // Fetch or/and/xor with r0 as the operand (the cmpxchg loop uses rax).
    assert_eq!(
        run("stdw [%r10-8], 0x0f\nmov %r0, 0x3c\nlock fetch or [%r10-8], %r0\nldxdw %r1, [%r10-8]\nlsh %r1, 16\nor %r0, %r1\nexit"),
        0x3f << 16 | 0x0f
    );
    assert_eq!(
        run("stdw [%r10-8], 0x0f\nmov %r0, 0x3c\nlock fetch xor32 [%r10-8], %r0\nldxdw %r1, [%r10-8]\nlsh %r1, 16\nor %r0, %r1\nexit"),
        0x33 << 16 | 0x0f
    );
    // cmpxchg: match, mismatch, and 32-bit zero-extension of r0 on success.
    let cx = "mov %r1, 5\nstxdw [%r10-8], %r1\nmov %r1, 9\n";
    let tail = "ldxdw %r2, [%r10-8]\nlsh %r0, 8\nor %r0, %r2\nexit";
    assert_eq!(
        run(&format!(
            "{cx}mov %r0, 5\nlock cmpxchg [%r10-8], %r1\n{tail}"
        )),
        0x509
    );
    assert_eq!(
        run(&format!(
            "{cx}mov %r0, 4\nlock cmpxchg [%r10-8], %r1\n{tail}"
        )),
        0x505
    );
    assert_eq!(
        run(&format!(
            "{cx}lddw %r0, 0xffffffff00000005\nlock cmpxchg32 [%r10-8], %r1\n{tail}"
        )),
        0x509
    );
    // Through a pointer into the memory region (checked code path), base register r0.
    let mut mem = [0u8; 16];
    mem[8] = 3;
    let p = load("mov %r0, %r1\nmov %r2, 4\nlock fetch add [%r0+8], %r2\nldxdw %r0, [%r0+8]\nlsh %r0, 8\nor %r0, %r2\nexit");
    assert_eq!(
        eval_with(&p, &Helpers::standard(), &mem, None).unwrap(),
        7 << 8 | 3
    );
}

// --- Errors: same variants and pcs as the interpreter ------------------------------------------

#[test]
fn memory_errors_match_the_interpreter() {
    let cases: &[(&str, usize)] = &[
        ("mov %r1, 0\nldxdw %r0, [%r1]\nexit", 0),
        ("ldxdw %r0, [%r1+1]\nexit", 8),
        ("stxdw [%r10], %r1\nexit", 0),
        ("mov %r1, %r10\nadd %r1, -4097\nstb [%r1], 1\nexit", 0),
        ("mov %r1, 1\nlock add [%r10-15], %r1\nexit", 0),
        ("mov %r2, 1\nlock add [%r1+4], %r2\nexit", 16),
        ("mov %r2, 1\nlock fetch or32 [%r1+2], %r2\nexit", 16),
        ("ldxw %r0, [%r1+6]\nexit", 8),
        ("sth [%r1+7], 1\nexit", 8),
        (
            "mov %r2, %r10\nldxdw %r0, [%r2-4096]\nldxdw %r0, [%r2-4097]\nexit",
            0,
        ),
    ];
    for (src, len) in cases {
        let mut m1 = vec![0u8; *len];
        let mut m2 = vec![0u8; *len];
        let j = jit_err(src, &mut m1);
        let i = interp_err(src, &mut m2);
        // Addresses on the stack differ between the engines (each has its own stack).
        let strip = |e: &ExecError| match *e {
            ExecError::MemoryAccess { pc, len, write, .. } => format!("mem {pc} {len} {write}"),
            ExecError::Misaligned { pc, len, .. } => format!("misaligned {pc} {len}"),
            ref other => other.to_string(),
        };
        assert_eq!(strip(&j), strip(&i), "{src}");
        // Addresses in the caller's memory are the same.
        if let (ExecError::MemoryAccess { addr: a, .. }, Some(p)) = (&j, m1.first()) {
            let base = p as *const u8 as u64;
            assert!(a.wrapping_sub(base) < 64, "{src}: {a:#x} vs {base:#x}");
        }
    }
    // Read-only regions.
    let p = load("stb [%r1], 1\nexit");
    let h = Helpers::standard();
    let mut vm = Jit::new(&p, &h).unwrap();
    let ro = [0u8; 4];
    let r = Region::readonly(RegionKind::Context, &ro);
    assert_eq!(
        vm.run([r.addr(), 0, 0, 0, 0], &[r], &mut Env::new()),
        Err(ExecError::MemoryAccess {
            pc: 0,
            addr: r.addr(),
            len: 1,
            write: true
        })
    );
    // Reading it is fine, and a hit in the region cache does not let a write through.
    let p = load("ldxb %r0, [%r1]\nldxb %r0, [%r1+1]\nstb [%r1+2], 1\nexit");
    let mut vm = Jit::new(&p, &h).unwrap();
    assert!(matches!(
        vm.run([r.addr(), 0, 0, 0, 0], &[r], &mut Env::new()),
        Err(ExecError::MemoryAccess {
            pc: 2,
            write: true,
            ..
        })
    ));
}

#[test]
fn budget_and_call_depth() {
    // Taken backward jumps are counted exactly as in the interpreter.
    for budget in [0u64, 1, 2, 10, 99] {
        let p = load("mov %r0, 0\nmov %r1, 10\nadd %r0, 1\nsub %r1, 1\njne %r1, 0, -3\nexit");
        let h = Helpers::standard();
        let r = eval_with(&p, &h, &[], Some(budget));
        if budget >= 9 {
            assert_eq!(r, Ok(10));
        } else {
            assert_eq!(r, Err(ExecError::Budget { pc: 4 }));
        }
    }
    assert_eq!(
        jit_err("mov %r0, 0\nadd %r0, 1\nja -2\nexit", &mut []),
        ExecError::Budget { pc: 2 }
    );
    // Backward local calls count too; recursion depth is limited to 8 frames.
    let rec = |n: u32| {
        format!(
            "mov %r1, {n}\ncall local f\nexit\nf:\nmov %r0, %r1\njeq %r1, 1, +3\nsub %r1, 1\ncall local f\nadd %r0, 1\nexit"
        )
    };
    assert_eq!(run(&rec(7)), 7);
    assert_eq!(eval(&rec(8)), Err(ExecError::CallDepth { pc: 6 }));
    let p = load(&rec(5));
    assert_eq!(
        eval_with(&p, &Helpers::standard(), &[], Some(2)),
        Err(ExecError::Budget { pc: 6 })
    );
}

#[test]
fn frames_and_local_calls() {
    assert_eq!(run(common::OWN_FRAME_PROGRAM), 42);
    assert_eq!(run(common::CALLER_STACK_PROGRAM), 15);
    // r6-r9 are the caller's values in the callee, and restored afterwards.
    let src = "
        mov %r6, 1
        mov %r7, 2
        mov %r8, 3
        mov %r9, 4
        call local f
        add %r0, %r6
        add %r0, %r7
        add %r0, %r8
        add %r0, %r9
        exit
    f:
        mov %r0, %r6
        add %r0, %r7
        add %r0, %r8
        add %r0, %r9
        mul %r0, 100
        mov %r6, 50
        mov %r7, 50
        mov %r8, 50
        mov %r9, 50
        exit";
    assert_eq!(run(src), 1010);
}

#[test]
fn callx() {
    use Instruction as I;
    let h = Helpers::standard();
    // callx of a function pointer: a local call.
    let p = load_insns(&[
        /* 0 */ func_ptr(3, 5), // -> 6
        /* 2 */ mov(1, 20),
        /* 3 */ I::Call(CallTarget::Reg(3)),
        /* 4 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 0,
            src: Operand::Imm(1),
        },
        /* 5 */ I::Exit,
        /* 6 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: 0,
            src: Operand::Reg(1),
        },
        /* 7 */ I::Exit,
    ]);
    assert_eq!(eval_with(&p, &h, &[], None), Ok(21));
    // callx of a helper number.
    let p = load("mov %r2, 7\ncall %r2\nmov %r0, 5\nexit");
    assert_eq!(eval_with(&p, &h, &[], None), Ok(5));
    assert_eq!(
        jit_err("mov %r2, 9999\ncall %r2\nexit", &mut []),
        ExecError::UnknownHelper { pc: 1, id: 9999 }
    );
    // A tagged value that is not a function entry.
    let p = load_insns(&[
        I::LdImm64 {
            dst: 4,
            kind: LdImmKind::Imm64,
            imm: 1,
            next_imm: 0xbf00_0000u32 as i32,
        },
        I::Call(CallTarget::Reg(4)),
        I::Exit,
    ]);
    assert_eq!(
        eval_with(&p, &h, &[], None),
        Err(ExecError::InvalidCallTarget {
            pc: 2,
            target: 0xbf00_0000_0000_0001
        })
    );
    // Unknown static helpers are refused at load, like the interpreter.
    let p = load("call 9999\nexit");
    assert!(matches!(
        Jit::new(&p, &h),
        Err(JitError::Load(LoadError::UnknownHelper { pc: 0, id: 9999 }))
    ));
}

// --- Helpers --------------------------------------------------------------------------------

fn sum5(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    Ok(a[0]
        .wrapping_mul(1)
        .wrapping_add(a[1] << 8)
        .wrapping_add(a[2] << 16)
        .wrapping_add(a[3] << 24)
        .wrapping_add(a[4] << 32))
}

fn failing(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    Err(HelperError::Other(format!("refused {}", a[0])))
}

fn panicking(_: &mut HelperCtx, _: [u64; 5]) -> Result<u64, HelperError> {
    panic!("helper panicked on purpose")
}

fn depth_probe(ctx: &mut HelperCtx, _: [u64; 5]) -> Result<u64, HelperError> {
    Ok(ctx.pc() as u64)
}

fn test_helpers() -> Helpers {
    let mut h = Helpers::standard();
    h.register(200, "sum5", sum5);
    h.register(201, "failing", failing);
    h.register(202, "panicking", panicking);
    h.register(203, "pc", depth_probe);
    h
}

#[test]
fn helper_calls_pass_arguments_and_preserve_r1_to_r5() {
    let h = test_helpers();
    let p = load("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 200\nmov %r6, %r0\ncall 203\nlsh %r0, 40\nadd %r0, %r6\nadd %r0, %r1\nadd %r0, %r2\nadd %r0, %r3\nadd %r0, %r4\nadd %r0, %r5\nexit");
    let want = (7u64 << 40) + (1 + (2 << 8) + (3 << 16) + (4 << 24) + (5u64 << 32)) + 15;
    assert_eq!(eval_with(&p, &h, &[], None), Ok(want));
}

#[test]
fn helper_errors_and_panics() {
    let h = test_helpers();
    let p = load("mov %r1, 42\nmov %r6, 1\ncall 201\nexit");
    let mut vm = Jit::new(&p, &h).unwrap();
    assert_eq!(
        vm.run([0; 5], &[], &mut Env::new()),
        Err(ExecError::Helper {
            pc: 2,
            id: 201,
            error: HelperError::Other("refused 42".into())
        })
    );
    // From inside a local call: the error unwinds every frame, and the VM stays usable.
    let p = load("call local f\nexit\nf:\nmov %r1, 7\ncall 201\nexit");
    let mut vm = Jit::new(&p, &h).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            vm.run([0; 5], &[], &mut Env::new()),
            Err(ExecError::Helper { pc: 3, .. })
        ));
    }
    // A panicking helper: the panic reaches the caller of `run`, not the JIT frames.
    let p = load("call local f\nexit\nf:\ncall 202\nexit");
    let mut vm = Jit::new(&p, &h).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        vm.run([0; 5], &[], &mut Env::new())
    }));
    let msg = r.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<&str>(),
        Some(&"helper panicked on purpose")
    );
    // Still usable afterwards.
    let p2 = load("mov %r0, 3\nexit");
    let mut vm2 = Jit::new(&p2, &h).unwrap();
    assert_eq!(vm2.run([0; 5], &[], &mut Env::new()), Ok(3));
}

#[test]
fn map_helpers_and_region_caches() {
    let maps = TestMaps {
        values: UnsafeCell::new([10, 20, 30, 40]),
    };
    // Sum of all values + 1 each, through lookups in a loop.
    let src = "
        mov %r6, 0
        mov %r7, 0
    loop:
        stxw [%r10-4], %r6
        lddw %r1, 1
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, miss
        ldxdw %r1, [%r0]
        add %r1, 1
        stxdw [%r0], %r1
        add %r7, %r1
        lock add [%r0], %r6
    miss:
        add %r6, 1
        jne %r6, 5, loop
        mov %r0, %r7
        exit";
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Jit::new(&p, &h).unwrap();
    let mut env = Env::new().with_maps(&maps);
    assert_eq!(vm.run([0; 5], &[], &mut env), Ok(104));
    // SAFETY: no run in progress.
    assert_eq!(unsafe { *maps.values.get() }, [11, 22, 33, 44]);
    // A value pointer is valid for its 8 bytes only, even right after a hit.
    let p = load("stw [%r10-4], 0\nlddw %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\nldxdw %r1, [%r0]\nldxdw %r0, [%r0+8]\nexit");
    let mut vm = Jit::new(&p, &h).unwrap();
    assert!(matches!(
        vm.run([0; 5], &[], &mut env),
        Err(ExecError::MemoryAccess { pc: 7, len: 8, .. })
    ));
    let mut bare = Env::new();
    assert!(matches!(
        vm.run([0; 5], &[], &mut bare),
        Err(ExecError::Helper {
            error: HelperError::NoMaps,
            ..
        })
    ));
}

#[test]
fn bpf_loop_callbacks_run_in_jit_code() {
    let p = load_insns(&bpf_loop_program());
    let h = test_helpers();
    assert_eq!(eval_with(&p, &h, &[], None), Ok((7 << 8) | 21));
    let mut vm = Jit::new(&p, &h).unwrap();
    // SAFETY: the program touches only its stack.
    assert_eq!(
        unsafe { vm.run_unchecked([0; 5], &[], &mut Env::new()) },
        Ok((7 << 8) | 21)
    );

    // A callback's error comes back wrapped, as from the interpreter; the callback's own
    // memory error is at the callback's pc.
    let mut insns = bpf_loop_program();
    // r10 + 600 in the callback's frame (depth 1) is past the top of the stack.
    insns[15] = Instruction::Ldx {
        size: MemSize::DW,
        signed: false,
        dst: 0,
        src: 10,
        off: 600,
    };
    let p = load_insns(&insns);
    let interp = Interpreter::new(&p, &h)
        .unwrap()
        .run([0; 5], &[], &mut Env::new());
    let jit = Jit::new(&p, &h).unwrap().run([0; 5], &[], &mut Env::new());
    let inner = |e: ExecError| match e {
        ExecError::Helper {
            pc,
            id,
            error: HelperError::Callback(inner),
        } => match *inner {
            ExecError::MemoryAccess {
                pc: ipc,
                len,
                write,
                ..
            } => (pc, id, ipc, len, write),
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    };
    assert_eq!(inner(jit.unwrap_err()), inner(interp.unwrap_err()));
    assert_eq!(
        inner(
            Jit::new(&p, &h)
                .unwrap()
                .run([0; 5], &[], &mut Env::new())
                .unwrap_err()
        ),
        (7, ids::LOOP as u64, 16, 8, false)
    );

    // The budget is shared with callbacks: 1000 callbacks, each charged one unit on entry,
    // with 2 back-edges each.
    use bpfvfs_ebpf::insn::JmpCond;
    let mut insns = bpf_loop_program();
    insns[1] = mov(1, 1000);
    insns.truncate(11);
    insns.extend([
        /* 12 */ mov(0, 3),
        /* 13 */
        Instruction::Alu {
            width: Width::W64,
            op: AluOp::Sub,
            dst: 0,
            src: Operand::Imm(1),
        },
        /* 14 */
        Instruction::Jmp {
            width: Width::W64,
            cond: JmpCond::Ne,
            dst: 0,
            src: Operand::Imm(0),
            off: -2,
        },
        /* 15 */ Instruction::Exit,
    ]);
    let p = load_insns(&insns);
    for budget in [0u64, 5, 2999, 3000] {
        let i = {
            let mut vm = Interpreter::new(&p, &h).unwrap();
            vm.set_budget(Some(budget));
            vm.run([0; 5], &[], &mut Env::new())
        };
        let mut vm = Jit::new(&p, &h).unwrap();
        vm.set_budget(Some(budget));
        let j = vm.run([0; 5], &[], &mut Env::new());
        assert_eq!(j, i, "budget {budget}");
        assert_eq!(j.is_ok(), budget >= 3000, "budget {budget}: {j:?}");
    }
}

#[test]
fn unchecked_mode_and_reuse() {
    let p = load("ldxdw %r0, [%r10-8]\nadd %r0, 1\nstxdw [%r10-8], %r0\nldxdw %r2, [%r1]\nadd %r0, %r2\nexit");
    let h = Helpers::standard();
    let mut vm = Jit::new(&p, &h).unwrap();
    let mut mem = 100u64.to_ne_bytes();
    let r = Region::writable(RegionKind::Context, &mut mem);
    let args = [r.addr(), 0, 0, 0, 0];
    // The stack is not cleared between runs (as in the interpreter and the kernel).
    assert_eq!(vm.run(args, &[r], &mut Env::new()), Ok(101));
    // SAFETY: the program reads its stack and 8 bytes of `mem`.
    assert_eq!(
        unsafe { vm.run_unchecked(args, &[r], &mut Env::new()) },
        Ok(102)
    );
    assert_eq!(vm.run(args, &[r], &mut Env::new()), Ok(103));
    assert_eq!(vm.unchecked_code().unwrap().mode(), Mode::Unchecked);
    assert_eq!(vm.checked_code().mode(), Mode::Checked);
}

#[test]
fn code_is_never_writable_and_executable() {
    let p = load("mov %r0, 1\nexit");
    let code = JitProgram::compile(&p, &Helpers::standard(), Mode::Checked).unwrap();
    let addr = code.code().as_ptr() as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            a <= addr && addr < b
        })
        .expect("code mapping");
    let perms = line.split_whitespace().nth(1).unwrap();
    assert_eq!(&perms[..3], "r-x", "{line}");
}

#[test]
fn compiled_code_is_shared_between_threads() {
    let p = Arc::new(load("mov %r0, %r1\nmul %r0, 3\nexit"));
    let code = Arc::new(JitProgram::compile(&p, &Helpers::standard(), Mode::Checked).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (p, code) = (p.clone(), code.clone());
            std::thread::spawn(move || {
                let h = Helpers::standard();
                let mut vm = Jit::with_code(&p, &h, code, None).unwrap();
                (0..1000u64)
                    .map(|i| {
                        vm.run([t * 1000 + i, 0, 0, 0, 0], &[], &mut Env::new())
                            .unwrap()
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 3 * (0..4000u64).sum::<u64>());
    // Code of another program is refused.
    let other = load("mov %r0, 1\nmov %r0, 2\nexit");
    let h = Helpers::standard();
    assert!(Jit::with_code(&other, &h, code, None).is_err());
}
