//! Semantics that are easy to get wrong, checked against Linux's definitions, in both the
//! checked and the unchecked mode.

use bpfvfs_ebpf::helpers::{Clock, HelperCtx, HelperError};
use bpfvfs_ebpf::insn::{Insn, Instruction, LdImmKind};
use bpfvfs_ebpf::interp::{LoadOptions, PseudoLoad};
use bpfvfs_ebpf::{Env, ExecError, Helpers, Interpreter, LoadError, Program, Region, RegionKind};
use std::cell::UnsafeCell;

mod common;
use common::{bpf_loop_program, load, load_insns, TestMaps};

/// Runs in both modes and checks they agree.
fn run_mem(src: &str, mem: &mut [u8]) -> u64 {
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let mut env = Env::new();
    let mut copy = mem.to_vec();
    let checked = vm.run_mem(mem, &mut env).unwrap();
    let len = copy.len() as u64;
    let region = Region::writable(RegionKind::Mem, &mut copy);
    let args = if len == 0 {
        [0; 5]
    } else {
        [region.addr(), len, 0, 0, 0]
    };
    // SAFETY: these test programs only touch their stack and `copy`.
    let unchecked = unsafe { vm.run_unchecked(args, &[region], &mut env) }.unwrap();
    assert_eq!(checked, unchecked, "checked and unchecked modes disagree");
    assert_eq!(mem, &copy[..]);
    checked
}

fn run(src: &str) -> u64 {
    run_mem(src, &mut [])
}

fn run_err(src: &str, mem: &mut [u8]) -> ExecError {
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    vm.run_mem(mem, &mut Env::new()).unwrap_err()
}

#[test]
fn division_by_zero() {
    assert_eq!(run("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit"), 0);
    assert_eq!(run("mov %r0, 7\ndiv %r0, 0\nexit"), 0);
    assert_eq!(run("mov %r0, 7\nmov %r1, 0\nmod %r0, %r1\nexit"), 7);
    assert_eq!(run("mov %r0, 7\nmod %r0, 0\nexit"), 7);
    // 32-bit: only the low 32 bits of the divisor count; results are zero-extended.
    assert_eq!(
        run("lddw %r0, 0x100000007\nlddw %r1, 0x100000000\ndiv32 %r0, %r1\nexit"),
        0
    );
    assert_eq!(
        run("lddw %r0, 0x100000007\nlddw %r1, 0x100000000\nmod32 %r0, %r1\nexit"),
        7
    );
    assert_eq!(run("lddw %r0, 0x100000007\nmod32 %r0, 0\nexit"), 7);
    assert_eq!(run("lddw %r0, -7\nmov %r1, 0\nsdiv %r0, %r1\nexit"), 0);
    assert_eq!(
        run("lddw %r0, -7\nmov %r1, 0\nsmod %r0, %r1\nexit"),
        -7i64 as u64
    );
    assert_eq!(
        run("lddw %r0, -7\nsmod32 %r0, 0\nexit"),
        -7i32 as u32 as u64
    );
    // Unsigned division by a negative immediate divides by the sign-extended value.
    assert_eq!(run("lddw %r0, -1\ndiv %r0, -1\nexit"), 1);
    assert_eq!(run("mov %r0, -1\ndiv32 %r0, -1\nexit"), 1);
}

#[test]
fn signed_division_extremes() {
    assert_eq!(
        run("lddw %r0, 0x8000000000000000\nmov %r1, -1\nsdiv %r0, %r1\nexit"),
        0x8000000000000000
    );
    assert_eq!(run("lddw %r0, 0x8000000000000000\nsmod %r0, -1\nexit"), 0);
    assert_eq!(
        run("mov32 %r0, 0x80000000\nsdiv32 %r0, -1\nexit"),
        0x80000000
    );
    assert_eq!(
        run("mov32 %r0, 0x80000000\nmov %r1, -1\nsmod32 %r0, %r1\nexit"),
        0
    );
    // Truncating division, remainder has the dividend's sign.
    assert_eq!(run("mov %r0, -7\nsdiv %r0, 2\nexit"), -3i64 as u64);
    assert_eq!(run("mov %r0, -7\nsmod %r0, 2\nexit"), -1i64 as u64);
    assert_eq!(run("mov %r0, 7\nsmod %r0, -2\nexit"), 1);
}

#[test]
fn shifts_mask_their_amount() {
    assert_eq!(run("mov %r0, 1\nmov %r1, 65\nlsh %r0, %r1\nexit"), 2);
    assert_eq!(run("mov %r0, 1\nmov %r1, 33\nlsh32 %r0, %r1\nexit"), 2);
    assert_eq!(run("mov %r0, 1\nlsh32 %r0, 32\nexit"), 1);
    assert_eq!(
        run("lddw %r0, 0x8000000000000000\narsh %r0, 63\nexit"),
        u64::MAX
    );
    assert_eq!(
        run("mov32 %r0, 0x80000000\narsh32 %r0, 31\nexit"),
        0xffffffff
    );
    assert_eq!(run("lddw %r0, 0xffffffff00000000\nrsh32 %r0, 1\nexit"), 0);
    assert_eq!(run("mov %r0, -1\nmov %r1, -1\nrsh %r0, %r1\nexit"), 1);
}

#[test]
fn alu32_zero_extends_and_mov_imm_sign_extends() {
    assert_eq!(run("mov %r0, -1\nadd32 %r0, 1\nexit"), 0);
    assert_eq!(run("mov %r0, -1\nexit"), u64::MAX);
    assert_eq!(run("mov32 %r0, -1\nexit"), 0xffffffff);
    assert_eq!(
        run("lddw %r1, 0x1ffffffff\nmov32 %r0, %r1\nexit"),
        0xffffffff
    );
    assert_eq!(run("mov %r0, 5\nneg32 %r0\nexit"), 0xfffffffb);
    assert_eq!(run("mov %r0, 5\nneg %r0\nexit"), -5i64 as u64);
    assert_eq!(run("lddw %r0, 0x1ffffffff\nmul32 %r0, 2\nexit"), 0xfffffffe);
}

#[test]
fn sign_extension() {
    assert_eq!(
        run("mov %r1, 0x80\nmovsx864 %r0, %r1\nexit"),
        0xffffffffffffff80
    );
    assert_eq!(run("mov %r1, 0x80\nmovsx832 %r0, %r1\nexit"), 0xffffff80);
    assert_eq!(
        run("mov %r1, 0x8000\nmovsx1664 %r0, %r1\nexit"),
        0xffffffffffff8000
    );
    assert_eq!(
        run("mov32 %r1, 0x80000000\nmovsx3264 %r0, %r1\nexit"),
        0xffffffff80000000
    );
    let mut mem = [0x80, 0x00, 0x00, 0x80];
    assert_eq!(
        run_mem("ldxsb %r0, [%r1]\nexit", &mut mem),
        0xffffffffffffff80
    );
    assert_eq!(
        run_mem("ldxsh %r0, [%r1+2]\nexit", &mut mem),
        0xffffffffffff8000
    );
    assert_eq!(
        run_mem("ldxsw %r0, [%r1]\nexit", &mut mem),
        0xffffffff80000080
    );
    assert_eq!(run_mem("ldxw %r0, [%r1]\nexit", &mut mem), 0x80000080);
    // Immediates of 64-bit jumps are sign-extended, of 32-bit ones compared as 32 bits.
    assert_eq!(
        run("mov %r0, 0\nmov %r1, -1\njeq %r1, -1, +1\nexit\nmov %r0, 1\nexit"),
        1
    );
    assert_eq!(
        run("mov %r0, 0\nmov32 %r1, -1\njeq %r1, -1, +1\nexit\nmov %r0, 1\nexit"),
        0
    );
}

#[test]
fn byte_swaps() {
    assert_eq!(run("lddw %r0, 0x1122334455667788\nbe16 %r0\nexit"), 0x8877);
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nbe32 %r0\nexit"),
        0x88776655
    );
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nbe64 %r0\nexit"),
        0x8877665544332211
    );
    assert_eq!(run("lddw %r0, 0x1122334455667788\nle16 %r0\nexit"), 0x7788);
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nle32 %r0\nexit"),
        0x55667788
    );
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nle64 %r0\nexit"),
        0x1122334455667788
    );
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nbswap16 %r0\nexit"),
        0x8877
    );
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nbswap32 %r0\nexit"),
        0x88776655
    );
    assert_eq!(
        run("lddw %r0, 0x1122334455667788\nbswap64 %r0\nexit"),
        0x8877665544332211
    );
}

#[test]
fn jmp32_compares_low_halves() {
    let p = |cond: &str, a: &str, b: &str| {
        run(&format!(
            "lddw %r1, {a}\nlddw %r2, {b}\nmov %r0, 0\n{cond} %r1, %r2, +1\nexit\nmov %r0, 1\nexit"
        ))
    };
    assert_eq!(p("jeq32", "0x100000005", "0x200000005"), 1);
    assert_eq!(p("jeq", "0x100000005", "0x200000005"), 0);
    assert_eq!(p("jgt32", "0x000000002", "0x1000000001"), 1);
    assert_eq!(p("jgt", "0x000000002", "0x1000000001"), 0);
    assert_eq!(p("jslt32", "0x80000000", "0"), 1); // negative as s32
    assert_eq!(p("jslt", "0x80000000", "0"), 0); // positive as s64
    assert_eq!(p("jset32", "0x100000000", "0x100000000"), 0);
    assert_eq!(p("jset", "0x100000000", "0x100000000"), 1);
    assert_eq!(p("jsge32", "0xffffffff", "0xfffffffe"), 1);
    assert_eq!(p("jle32", "0xffffffff00000001", "1"), 1);
    assert_eq!(run("mov %r0, 0\nja32 +1\nexit\nmov %r0, 9\nexit"), 9);
}

#[test]
fn atomics() {
    let base = "lddw %r0, 0x0f0f0f0f0f0f0f0f\nstxdw [%r10-8], %r0\n";
    assert_eq!(
        run(&format!(
            "{base}mov %r1, 1\nlock add [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit"
        )),
        0x0f0f0f0f0f0f0f10
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, 0xf0\nlock or32 [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit"
        )),
        0x0f0f0f0f0f0f0fff
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, 0xff\nlock and [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit"
        )),
        0x0f
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, -1\nlock xor32 [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit"
        )),
        0x0f0f0f0ff0f0f0f0
    );
    // FETCH returns the old value (zero-extended for 32 bit).
    assert_eq!(
        run(&format!(
            "{base}mov %r1, 1\nlock fetch add [%r10-8], %r1\nmov %r0, %r1\nexit"
        )),
        0x0f0f0f0f0f0f0f0f
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, -1\nlock fetch add32 [%r10-8], %r1\nmov %r0, %r1\nexit"
        )),
        0x0f0f0f0f
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, 7\nlock xchg [%r10-8], %r1\nldxdw %r0, [%r10-8]\nadd %r0, %r1\nexit"
        )),
        0x0f0f0f0f0f0f0f16
    );
    assert_eq!(
        run(&format!(
            "{base}mov %r1, -1\nlock xchg32 [%r10-8], %r1\nmov %r0, %r1\nexit"
        )),
        0x0f0f0f0f
    );
}

#[test]
fn cmpxchg() {
    let base = "mov %r1, 5\nstxdw [%r10-8], %r1\nmov %r1, 9\n";
    // Match: memory gets the new value, r0 the old one.
    assert_eq!(run(&format!("{base}mov %r0, 5\nlock cmpxchg [%r10-8], %r1\nldxdw %r2, [%r10-8]\nlsh %r0, 8\nor %r0, %r2\nexit")), 0x509);
    // Mismatch: memory unchanged, r0 = current value.
    assert_eq!(run(&format!("{base}mov %r0, 4\nlock cmpxchg [%r10-8], %r1\nldxdw %r2, [%r10-8]\nlsh %r0, 8\nor %r0, %r2\nexit")), 0x505);
    // 32-bit compares the low halves of r0 and zero-extends the result into r0.
    assert_eq!(run(&format!("{base}lddw %r0, 0xffffffff00000005\nlock cmpxchg32 [%r10-8], %r1\nldxdw %r2, [%r10-8]\nlsh %r0, 8\nor %r0, %r2\nexit")), 0x509);
}

#[test]
fn call_frames() {
    // Each frame has its own 512-byte stack; r6-r9 survive; r10 is restored.
    assert_eq!(run(common::OWN_FRAME_PROGRAM), 42);
    // A callee can use the caller's stack through a pointer.
    assert_eq!(run(common::CALLER_STACK_PROGRAM), 15);
    // Recursion to depth 8 is fine, to 9 is an error.
    let rec = |n: u32| {
        format!(
            "mov %r1, {n}\ncall local f\nexit\nf:\nmov %r0, %r1\njeq %r1, 1, +3\nsub %r1, 1\ncall local f\nadd %r0, 1\nexit"
        )
    };
    assert_eq!(run(&rec(7)), 7);
    assert!(matches!(
        run_err(&rec(8), &mut []),
        ExecError::CallDepth { .. }
    ));
}

#[test]
fn checked_mode_catches_bad_accesses() {
    let e = run_err("mov %r1, 0\nldxdw %r0, [%r1]\nexit", &mut []);
    assert_eq!(
        e,
        ExecError::MemoryAccess {
            pc: 1,
            addr: 0,
            len: 8,
            write: false
        }
    );
    let e = run_err("ldxdw %r0, [%r1+1]\nexit", &mut [0; 8]);
    assert!(
        matches!(
            e,
            ExecError::MemoryAccess {
                pc: 0,
                len: 8,
                write: false,
                ..
            }
        ),
        "{e}"
    );
    let e = run_err("stxdw [%r10], %r1\nexit", &mut []);
    assert!(
        matches!(e, ExecError::MemoryAccess { write: true, .. }),
        "{e}"
    );
    // Below the stack.
    let e = run_err("mov %r1, %r10\nadd %r1, -4097\nstb [%r1], 1\nexit", &mut []);
    assert!(
        matches!(
            e,
            ExecError::MemoryAccess {
                write: true,
                len: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = run_err("mov %r1, 1\nlock add [%r10-15], %r1\nexit", &mut []);
    assert!(matches!(e, ExecError::Misaligned { .. }), "{e}");
    // Read-only regions.
    let p = load("stb [%r1], 1\nexit");
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let ro = [0u8; 4];
    let r = Region::readonly(RegionKind::Context, &ro);
    assert!(matches!(
        vm.run([r.addr(), 0, 0, 0, 0], &[r], &mut Env::new()),
        Err(ExecError::MemoryAccess { write: true, .. })
    ));
}

#[test]
fn budget_stops_infinite_loops() {
    let p = load("mov %r0, 0\nadd %r0, 1\nja -2\nexit");
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    vm.set_budget(Some(1000));
    assert!(matches!(
        vm.run([0; 5], &[], &mut Env::new()),
        Err(ExecError::Budget { pc: 2 })
    ));
}

#[test]
fn unknown_helpers() {
    let p = load("call 9999\nexit");
    let h = Helpers::standard();
    assert!(matches!(
        Interpreter::new(&p, &h),
        Err(LoadError::UnknownHelper { pc: 0, id: 9999 })
    ));
    let e = run_err("mov %r2, 9999\ncall %r2\nexit", &mut []);
    assert_eq!(e, ExecError::UnknownHelper { pc: 1, id: 9999 });
}

#[test]
fn task_and_time_helpers() {
    let p = load("call 14\nexit");
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let mut env = Env::new();
    env.task.pid = 7;
    env.task.tgid = 5;
    assert_eq!(vm.run([0; 5], &[], &mut env).unwrap(), (5 << 32) | 7);

    let p = load("call 5\nmov %r6, %r0\ncall 125\nsub %r0, %r6\nexit");
    let mut vm = Interpreter::new(&p, &h).unwrap();
    env.clock = |c| if c == Clock::Monotonic { 100 } else { 1100 };
    assert_eq!(vm.run([0; 5], &[], &mut env).unwrap(), 1000);

    let p = load("mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\ncall 16\nldxdw %r0, [%r10-16]\nexit");
    let mut vm = Interpreter::new(&p, &h).unwrap();
    env.task = env.task.clone().with_comm("abc");
    assert_eq!(
        vm.run([0; 5], &[], &mut env).unwrap(),
        u64::from_le_bytes(*b"abc\0\0\0\0\0")
    );

    let p = load("call 7\nmov %r6, %r0\ncall 7\nxor %r0, %r6\nexit");
    let mut vm = Interpreter::new(&p, &h).unwrap();
    assert_ne!(vm.run([0; 5], &[], &mut env).unwrap(), 0);
}

#[test]
fn map_helpers_through_map_access() {
    let maps = TestMaps {
        values: UnsafeCell::new([10, 20, 30, 40]),
    };
    // v = lookup(map 1, key 2); *v += 5; update(map 1, key 3, &99); return *v
    let src = "
        stw [%r10-4], 2
        lddw %r1, 1
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, miss
        ldxdw %r6, [%r0]
        add %r6, 5
        stxdw [%r0], %r6
        stw [%r10-4], 3
        stdw [%r10-16], 99
        lddw %r1, 1
        mov %r2, %r10
        add %r2, -4
        mov %r3, %r10
        add %r3, -16
        mov %r4, 0
        call 2
        mov %r0, %r6
        exit
    miss:
        mov %r0, -1
        exit";
    let p = load(src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let mut env = Env::new().with_maps(&maps);
    assert_eq!(vm.run([0; 5], &[], &mut env).unwrap(), 35);
    assert_eq!(unsafe { *maps.values.get() }, [10, 20, 35, 99]);
    // The value pointer is usable only within its 8 bytes.
    let p = load("stw [%r10-4], 0\nlddw %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\nldxdw %r0, [%r0+8]\nexit");
    let mut vm = Interpreter::new(&p, &h).unwrap();
    assert!(matches!(
        vm.run([0; 5], &[], &mut env),
        Err(ExecError::MemoryAccess { pc: 6, .. })
    ));
    // No MapAccess: the helper aborts the run.
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
fn pseudo_map_lddw_goes_through_the_resolver() {
    let slots: Vec<Insn> = [
        Instruction::LdImm64 {
            dst: 0,
            kind: LdImmKind::MapFd,
            imm: 3,
            next_imm: 0,
        },
        Instruction::Exit,
    ]
    .iter()
    .flat_map(|i| i.encode())
    .collect();
    let resolve = |p: &PseudoLoad| {
        if p.imm == 3 {
            Ok(0xabc)
        } else {
            Err("no such fd".into())
        }
    };
    let p = Program::load(
        &slots,
        LoadOptions {
            resolve: Some(&resolve),
        },
    )
    .unwrap();
    let h = Helpers::empty();
    assert_eq!(
        Interpreter::new(&p, &h)
            .unwrap()
            .run([0; 5], &[], &mut Env::new())
            .unwrap(),
        0xabc
    );
}

#[test]
fn bpf_loop_calls_back_into_the_interpreter() {
    // counter = 0; n = bpf_loop(10, cb, &counter, 0); return n << 8 | counter
    // cb(i, ctx): *ctx += i; return i == 6
    let p = load_insns(&bpf_loop_program());
    assert!(p.is_function_entry(12));
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    // 7 iterations (the 7th callback returns 1); 0 + 1 + ... + 6 = 21.
    let r = vm.run([0; 5], &[], &mut Env::new()).unwrap();
    assert_eq!(r, (7 << 8) | 21, "{r:#x}");
    // SAFETY: the program touches only its stack.
    let r = unsafe { vm.run_unchecked([0; 5], &[], &mut Env::new()) }.unwrap();
    assert_eq!(r, (7 << 8) | 21, "{r:#x}");
}

/// Code that stores `bytes` (padded to 8) on the stack ending at r10-`end`, returning the
/// start offset.
fn stack_bytes(bytes: &[u8], end: i32, src: &mut String) -> i32 {
    let n = bytes.len().div_ceil(8) as i32;
    let start = -end - 8 * n;
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        let v = u64::from_le_bytes(w);
        *src += &format!(
            "lddw %r1, {v:#x}\nstxdw [%r10{:+}], %r1\n",
            start + 8 * i as i32
        );
    }
    start
}

#[test]
fn trace_printk_formats_like_linux() {
    let mut lines: Vec<String> = Vec::new();
    let mut sink = |m: &[u8]| lines.push(String::from_utf8_lossy(m).into_owned());
    let mut src = String::new();
    let hi = stack_bytes(b"hi\0", 0, &mut src);
    let fmt = stack_bytes(b"%d|%5x|%-3s\n\0", 8, &mut src);
    src += &format!(
        "mov %r1, %r10\nadd %r1, {fmt}\nmov %r2, 13\nmov %r3, -5\nmov %r4, 255\nmov %r5, %r10\nadd %r5, {hi}\ncall 6\nexit"
    );
    let p = load(&src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let mut env = Env::new().with_trace(&mut sink);
    let n = vm.run([0; 5], &[], &mut env).unwrap();
    assert_eq!(lines, ["-5|   ff|hi \n"]);
    assert_eq!(n, 13);

    // More specifiers than trace_printk's three arguments: -EINVAL, nothing printed.
    let mut src = String::new();
    let fmt = stack_bytes(b"%d %d %d %d\0", 0, &mut src);
    src += &format!("mov %r1, %r10\nadd %r1, {fmt}\nmov %r2, 12\ncall 6\nexit");
    let p = load(&src);
    let mut vm = Interpreter::new(&p, &h).unwrap();
    assert_eq!(vm.run([0; 5], &[], &mut Env::new()).unwrap(), -22i64 as u64);
}

fn snprintf_run(fmt: &[u8], args: &[u64], out: &mut [u8]) -> u64 {
    let mut src = String::from("mov %r6, %r1\nmov %r7, %r2\n");
    let f = stack_bytes(fmt, 0, &mut src);
    let mut data = Vec::new();
    for a in args {
        data.extend_from_slice(&a.to_le_bytes());
    }
    let d = stack_bytes(&data, -f, &mut src);
    src += &format!(
        "mov %r1, %r6\nmov %r2, %r7\nmov %r3, %r10\nadd %r3, {f}\nmov %r4, %r10\nadd %r4, {d}\nmov %r5, {}\ncall 165\nexit",
        data.len()
    );
    let p = load(&src);
    let h = Helpers::standard();
    let mut vm = Interpreter::new(&p, &h).unwrap();
    let len = out.len() as u64;
    let region = Region::writable(RegionKind::Mem, out);
    vm.run([region.addr(), len, 0, 0, 0], &[region], &mut Env::new())
        .unwrap()
}

#[test]
fn snprintf_truncates_and_counts() {
    let mut out = [0xffu8; 8];
    assert_eq!(snprintf_run(b"%d-%d\0", &[12345, 678], &mut out), 10);
    assert_eq!(&out, b"12345-6\0");
    let mut out = [0xffu8; 16];
    assert_eq!(
        snprintf_run(
            b"%03u|%c|%+d|%llx\0",
            &[7, b'A' as u64, 5, 0x1_0000_0000],
            &mut out
        ),
        19
    );
    assert_eq!(&out, b"007|A|+5|100000\0");
    let mut out = [0u8; 32];
    assert_eq!(
        snprintf_run(
            b"%ld %lu %x\0",
            &[-1i64 as u64, -1i64 as u64, -1i64 as u64],
            &mut out
        ),
        33
    );
    assert_eq!(&out[..31], b"-1 18446744073709551615 fffffff");
    assert_eq!(snprintf_run(b"%q\0", &[1], &mut out), -22i64 as u64);
}

#[test]
fn probe_read_never_faults() {
    // probe_read from an unregistered address: -EFAULT, destination zeroed.
    let src = "stdw [%r10-8], -1\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, 16\ncall 113\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nexit";
    assert_eq!(run(src), -14i64 as u64);
    // From registered memory: a copy.
    let mut mem = 0x1122334455667788u64.to_le_bytes();
    let src =
        "mov %r3, %r1\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 113\nldxdw %r0, [%r10-8]\nexit";
    assert_eq!(run_mem(src, &mut mem), 0x1122334455667788);
}

#[test]
fn spin_lock_pairs() {
    let src = "stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\ncall 93\nldxw %r6, [%r10-8]\nmov %r1, %r10\nadd %r1, -8\ncall 94\nldxw %r0, [%r10-8]\nlsh %r6, 4\nor %r0, %r6\nexit";
    assert_eq!(run(src), 0x10);
}

#[test]
fn custom_helpers_extend_the_table() {
    fn add3(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        Ok(a[0] + a[1] + a[2])
    }
    let mut h = Helpers::standard();
    h.register(1000, "add3", add3);
    let p = load("mov %r1, 1\nmov %r2, 2\nmov %r3, 3\ncall 1000\nexit");
    assert_eq!(
        Interpreter::new(&p, &h)
            .unwrap()
            .run([0; 5], &[], &mut Env::new())
            .unwrap(),
        6
    );
}

#[test]
fn callx_of_a_function_pointer_is_a_local_call() {
    use bpfvfs_ebpf::insn::{AluOp, CallTarget, Operand, Width};
    use Instruction as I;
    let prog = [
        /* 0 */
        I::LdImm64 {
            dst: 3,
            kind: LdImmKind::Func,
            imm: 4,
            next_imm: 0,
        }, // -> 5
        /* 2 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: 1,
            src: Operand::Imm(20),
        },
        /* 3 */ I::Call(CallTarget::Reg(3)),
        /* 4 */ I::Exit,
        /* 5 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: 0,
            src: Operand::Reg(1),
        },
        /* 6 */
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 0,
            src: Operand::Imm(22),
        },
        /* 7 */ I::Exit,
    ];
    let slots: Vec<Insn> = prog.iter().flat_map(|i| i.encode()).collect();
    let p = Program::load(&slots, LoadOptions::default()).unwrap();
    let h = Helpers::standard();
    assert_eq!(
        Interpreter::new(&p, &h)
            .unwrap()
            .run([0; 5], &[], &mut Env::new())
            .unwrap(),
        42
    );
    // A pointer into the middle of a function is refused.
    let e = run_err("lddw %r3, 0xbf00000000000001\ncallx %r3\nexit", &mut []);
    assert!(
        matches!(e, ExecError::InvalidCallTarget { pc: 2, .. }),
        "{e}"
    );
}

#[test]
fn disassembly_listing() {
    let p =
        load("mov %r0, 1\nstxw [%r10-4], %r1\njgt %r1, 2, +1\ncall 1\nlddw %r2, 0x100000000\nexit");
    assert_eq!(
        p.disassemble(),
        "0: (b7) r0 = 1\n1: (63) *(u32 *)(r10 -4) = r1\n2: (25) if r1 > 0x2 goto +1\n3: (85) call 1\n\
         4: (18) r2 = 0x100000000\n6: (95) exit\n"
    );
}
