//! Direct helper calls from JIT code (`DirectHelper`, `Helpers::register_direct`): the
//! registers the program still reads survive the call (liveness decides what is saved), the
//! arguments arrive, errors and panics come back as from the trampoline, callbacks and the
//! budget behave as in the interpreter, and map values stay registered whenever a helper of
//! the program could look them up. Semantic checks go through `jit::equiv::compare`
//! (interpreter and JIT, checked and unchecked, must agree).
#![cfg(target_arch = "x86_64")]

mod common;

use bpfvfs_ebpf::helpers::{ids, DirectHelper, HelperCtx, HelperError};
use bpfvfs_ebpf::jit::equiv::{compare, Case};
use bpfvfs_ebpf::jit::Jit;
use bpfvfs_ebpf::{Env, ExecError, Helpers, Interpreter, MapAccess, Program};
use std::cell::UnsafeCell;

use common::{load, TestMaps};

/// `a[..N]` mixed so that a lost or swapped argument changes the result.
struct Mix<const N: u8>;

// SAFETY: reads a[..N] only.
unsafe impl<const N: u8> DirectHelper for Mix<N> {
    const ARGS: u8 = N;
    const USES_REGIONS: bool = false;
    fn call(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        Ok(a[..N as usize]
            .iter()
            .enumerate()
            .fold(N as u64, |h, (i, &x)| {
                (h ^ x.rotate_left(7 * i as u32 + 1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            }))
    }
}

/// Fails for r1 == 0x5a.
struct MayFail;

// SAFETY: reads a[0] only.
unsafe impl DirectHelper for MayFail {
    const ARGS: u8 = 1;
    fn call(_: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        if a[0] == 0x5a {
            Err(HelperError::Other(format!("refused {}", a[0])))
        } else {
            Ok(a[0].wrapping_mul(3))
        }
    }
}

struct Panics;

// SAFETY: reads nothing.
unsafe impl DirectHelper for Panics {
    const ARGS: u8 = 0;
    fn call(_: &mut HelperCtx, _: [u64; 5]) -> Result<u64, HelperError> {
        panic!("direct helper panicked on purpose")
    }
}

/// The call's pc.
struct Pc;

// SAFETY: reads nothing.
unsafe impl DirectHelper for Pc {
    const ARGS: u8 = 0;
    fn call(ctx: &mut HelperCtx, _: [u64; 5]) -> Result<u64, HelperError> {
        Ok(ctx.pc() as u64)
    }
}

/// `callback(r1)(r2) + 1`, r1 a function pointer (`lddw rX, subprog`).
struct CallBack;

// SAFETY: reads a[0] and a[1].
unsafe impl DirectHelper for CallBack {
    const ARGS: u8 = 2;
    fn call(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        Ok(ctx.call_function(a[0], [a[1], 0, 0, 0, 0])?.wrapping_add(1))
    }
}

/// `CallBack` declared as needing no call site (`USES_CALL_SITE = false`), wrongly.
struct NoSiteCallBack;

// SAFETY: reads a[0] and a[1].
unsafe impl DirectHelper for NoSiteCallBack {
    const ARGS: u8 = 2;
    const USES_CALL_SITE: bool = false;
    fn call(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        CallBack::call(ctx, a)
    }
}

const MIX: u32 = 210; // MIX + n: Mix<n>
const MAY_FAIL: u32 = 216;
const PANICS: u32 = 217;
const PC: u32 = 218;
const CALL_BACK: u32 = 219;

fn helpers() -> Helpers {
    let mut h = Helpers::standard();
    h.register_direct::<Mix<0>>(MIX, "mix0");
    h.register_direct::<Mix<1>>(MIX + 1, "mix1");
    h.register_direct::<Mix<2>>(MIX + 2, "mix2");
    h.register_direct::<Mix<3>>(MIX + 3, "mix3");
    h.register_direct::<Mix<4>>(MIX + 4, "mix4");
    h.register_direct::<Mix<5>>(MIX + 5, "mix5");
    h.register_direct::<MayFail>(MAY_FAIL, "may_fail");
    h.register_direct::<Panics>(PANICS, "panics");
    h.register_direct::<Pc>(PC, "pc");
    h.register_direct::<CallBack>(CALL_BACK, "call_back");
    h
}

fn case<'a>(p: &'a Program, h: &'a Helpers, maps: Option<&'a dyn MapAccess>) -> Case<'a> {
    Case {
        program: p,
        helpers: h,
        mem: &[],
        budget: Some(100_000),
        maps,
        reset: &|| {},
        snapshot: &Vec::new,
        unchecked: true,
    }
}

/// Both engines, both modes, with a budget and without (the JIT's budget-free body); the
/// JIT's checked result.
fn eval(src: &str, h: &Helpers) -> Result<u64, ExecError> {
    let p = load(src);
    let mut c = case(&p, h, None);
    let mut results = Vec::new();
    for budget in [Some(100_000), None] {
        c.budget = budget;
        match compare(&c) {
            Ok(a) => results.push(a.checked.result),
            Err(e) => panic!("engines disagree (budget {budget:?}): {e}\n{src}"),
        }
    }
    assert_eq!(results[0], results[1], "{src}");
    results.pop().unwrap()
}

#[test]
fn live_registers_survive_and_arguments_arrive() {
    let h = helpers();
    let set = "mov %r1, 11\nmov %r2, 22\nmov %r3, 33\nmov %r4, 44\nmov %r5, 55\n";
    let sum = "mov %r0, %r1\nadd %r0, %r2\nadd %r0, %r3\nadd %r0, %r4\nadd %r0, %r5\n";
    for n in 0..=5 {
        // Everything read after the call: all five saved (odd count: no padding).
        let r = eval(
            &format!(
                "{set}call {}\nmov %r6, %r0\n{sum}add %r0, %r6\nexit",
                MIX + n
            ),
            &h,
        );
        assert!(r.is_ok(), "{r:?}");
        // Only some read after the call (even and odd counts of saved registers).
        for keep in [0b00010u32, 0b00110, 0b01110, 0b11110, 0b01010] {
            let mut src = format!("{set}call {}\n", MIX + n);
            src += "mov %r6, %r0\nmov %r0, 0\n";
            for r in 1..=5 {
                if keep & (1 << r) != 0 {
                    src += &format!("add %r0, %r{r}\n");
                } else {
                    src += &format!("mov %r{r}, 0\n");
                }
            }
            src += "xor %r0, %r6\nexit";
            eval(&src, &h).unwrap();
        }
    }
    // The arguments: r0 is the helper's mix of exactly r1..rN.
    let r = eval(&format!("{set}call {}\nexit", MIX + 3), &h).unwrap();
    let want = [11u64, 22, 33].iter().enumerate().fold(3u64, |h, (i, &x)| {
        (h ^ x.rotate_left(7 * i as u32 + 1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    });
    assert_eq!(r, want);
}

/// Random programs around direct calls of every arity: registers set, mixed, read after
/// calls or not, in branches, loops and local calls.
#[test]
fn random_programs_around_direct_calls_agree() {
    let h = helpers();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..400 {
        let mut body = Vec::new();
        let mut label = 0;
        let items = 4 + next(14);
        let with_sub = round % 3 == 0;
        for _ in 0..items {
            match next(8) {
                0 | 1 => body.push(format!("mov %r{}, {}", 1 + next(5), next(1000))),
                2 => body.push(format!("add %r6, %r{}", next(6))),
                3 | 4 => body.push(format!("call {}", MIX + next(6) as u32)),
                5 => {
                    // Skip a call on some paths.
                    label += 1;
                    body.push(format!("jgt %r{}, {}, l{label}", 1 + next(5), next(500)));
                    body.push(format!("call {}", MIX + next(6) as u32));
                    body.push(format!("xor %r6, %r{}", next(6)));
                    body.push(format!("l{label}:"));
                }
                6 => {
                    // A loop with a call inside.
                    label += 1;
                    body.push("mov %r7, 3".into());
                    body.push(format!("l{label}:"));
                    body.push(format!("call {}", MIX + next(6) as u32));
                    body.push(format!("add %r6, %r{}", next(6)));
                    body.push("sub %r7, 1".into());
                    body.push(format!("jne %r7, 0, l{label}"));
                }
                _ if with_sub => body.push("call local sub".into()),
                _ => body.push(format!("xor %r6, %r{}", 1 + next(5))),
            }
        }
        // Read a random set of r1-r5 at the end (the rest is dead after the last call).
        let reads = next(32);
        for r in 1..=5 {
            if reads & (1 << (r - 1)) != 0 {
                body.push(format!("add %r6, %r{r}"));
            }
        }
        body.push("mov %r0, %r6\nexit".into());
        if with_sub {
            body.push(format!(
                "sub:\nmov %r{}, 7\ncall {}\nadd %r0, %r{}\nexit",
                1 + next(5),
                MIX + next(6) as u32,
                1 + next(5)
            ));
        }
        let src = format!("mov %r6, 0\n{}", body.join("\n"));
        eval(&src, &h).unwrap_or_else(|e| panic!("{e}\n{src}"));
    }
}

#[test]
fn errors_panics_and_pcs_as_from_the_trampoline() {
    let h = helpers();
    let err = |pc, id: u32, error| ExecError::Helper {
        pc,
        id: id as u64,
        error,
    };
    let refused = || HelperError::Other("refused 90".into());
    assert_eq!(
        eval(&format!("mov %r1, 90\ncall {MAY_FAIL}\nexit"), &h),
        Err(err(1, MAY_FAIL, refused()))
    );
    assert_eq!(
        eval(&format!("mov %r1, 3\ncall {MAY_FAIL}\nexit"), &h),
        Ok(9)
    );
    // From a local call, with registers saved around the call: every frame unwinds.
    let src = format!(
        "mov %r3, 1\ncall local f\nexit\nf:\nmov %r1, 90\ncall {MAY_FAIL}\nadd %r0, %r3\nexit"
    );
    assert_eq!(eval(&src, &h), Err(err(4, MAY_FAIL, refused())));
    // The VM stays usable after an error.
    let p = load(&src);
    let mut vm = Jit::new(&p, &h).unwrap();
    for _ in 0..3 {
        assert_eq!(
            vm.run([0; 5], &[], &mut Env::new()),
            Err(err(4, MAY_FAIL, refused()))
        );
        // SAFETY: the program touches nothing but registers.
        let u = unsafe { vm.run_unchecked([0; 5], &[], &mut Env::new()) };
        assert_eq!(u, Err(err(4, MAY_FAIL, refused())));
    }
    // `callx` of a direct helper's number goes through the trampoline: same results.
    assert_eq!(
        eval(
            &format!("mov %r1, 90\nmov %r5, {MAY_FAIL}\ncall %r5\nexit"),
            &h
        ),
        Err(err(2, MAY_FAIL, refused()))
    );
    // The pc a helper sees.
    assert_eq!(
        eval(&format!("mov %r1, 1\nmov %r2, 2\ncall {PC}\nexit"), &h),
        Ok(2)
    );
    // A panic reaches the caller of `run`, in both modes; the VM stays usable.
    let p = load(&format!(
        "mov %r1, 1\ncall local f\nexit\nf:\ncall {PANICS}\nexit"
    ));
    let mut vm = Jit::new(&p, &h).unwrap();
    for unchecked in [false, true] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if unchecked {
                // SAFETY: the program touches nothing but registers.
                unsafe { vm.run_unchecked([0; 5], &[], &mut Env::new()) }
            } else {
                vm.run([0; 5], &[], &mut Env::new())
            }
        }));
        let payload = r.unwrap_err();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"direct helper panicked on purpose")
        );
    }
    let ok = load(&format!("mov %r1, 4\ncall {MAY_FAIL}\nexit"));
    let mut vm2 = Jit::new(&ok, &h).unwrap();
    assert_eq!(vm2.run([0; 5], &[], &mut Env::new()), Ok(12));
}

/// A direct helper calling back into the program: callbacks run in JIT code, share the
/// budget, and their errors come back wrapped, as with the trampoline.
#[test]
fn callbacks_from_direct_helpers() {
    let h = helpers();
    // cb(x): loops x times (x back-edges), returns 100 + x.
    let src = |x: u32| {
        format!(
            "mov %r3, 5
             lddw %r1, cb
             mov %r2, {x}
             call {CALL_BACK}
             add %r0, %r3
             exit
         cb:
             mov %r0, 100
             mov %r6, %r1
         loop:
             jeq %r6, 0, out
             sub %r6, 1
             add %r0, 1
             ja loop
         out:
             exit"
        )
    };
    // `lddw r1, cb` (a function pointer) patched in with the instruction builder: slot 1,
    // `cb` at slot 7, so the offset is 7 - 1 - 1.
    let prog = {
        let src = src(4).replace("lddw %r1, cb", "lddw %r1, 0");
        let mut slots = bpfvfs_ebpf::asm::assemble(&src).unwrap();
        let f = common::func_ptr(1, 5).encode();
        slots[1] = f[0];
        slots[2] = f[1];
        Program::load(&slots, Default::default()).unwrap()
    };
    let run = |budget: Option<u64>| {
        let mut c = case(&prog, &h, None);
        c.budget = budget;
        compare(&c).map(|a| a.checked.result)
    };
    // 100 + 4 back-edges + 1, + r3 (survives the call).
    assert_eq!(run(None).unwrap(), Ok(110));
    // The budget covers the callback's back-edges and its invocation, in both engines.
    let mut seen = Vec::new();
    for budget in 0..8 {
        let r = run(Some(budget)).unwrap_or_else(|e| panic!("budget {budget}: {e}"));
        seen.push(r.is_ok());
        if let Err(e) = r {
            assert!(
                matches!(e, ExecError::Helper { id, error: HelperError::Callback(_), .. } if id == CALL_BACK as u64),
                "{e}"
            );
        }
    }
    assert!(seen.contains(&true) && seen.contains(&false), "{seen:?}");
}

/// A helper declared `USES_CALL_SITE = false` is called without its call site from unchecked
/// JIT code (two stores fewer per call); if it then runs a callback anyway, the run fails with
/// `NoCallSite` instead of opening a frame at a wrong depth. Checked code always passes it.
#[test]
fn helpers_without_a_call_site_cannot_run_callbacks() {
    const NO_SITE: u32 = 220;
    let mut h = helpers();
    h.register_direct::<NoSiteCallBack>(NO_SITE, "no_site_call_back");
    let src = format!(
        "lddw %r1, 0
         mov %r2, 3
         call {NO_SITE}
         exit
     cb:
         mov %r0, %r1
         exit"
    );
    let prog = {
        let mut slots = bpfvfs_ebpf::asm::assemble(&src).unwrap();
        let f = common::func_ptr(1, 4).encode();
        slots[0] = f[0];
        slots[1] = f[1];
        Program::load(&slots, Default::default()).unwrap()
    };
    let mut env = Env::new();
    let mut jit = Jit::new(&prog, &h).unwrap();
    assert_eq!(jit.run([0; 5], &[], &mut env).unwrap(), 4);
    // SAFETY: the program touches no memory; the callback fails before it could run.
    let err = unsafe { jit.run_unchecked([0; 5], &[], &mut env) }.unwrap_err();
    assert!(
        matches!(err, ExecError::Helper { id, error: HelperError::NoCallSite, .. } if id == NO_SITE as u64),
        "{err}"
    );
    // The interpreter always has the call site.
    let mut vm = Interpreter::new(&prog, &h).unwrap();
    // SAFETY: as above.
    assert_eq!(
        unsafe { vm.run_unchecked([0; 5], &[], &mut env) }.unwrap(),
        4
    );
}

/// Map values stay registered in unchecked runs whenever a helper of the program could look
/// them up (`bpf_spin_lock` on a value), and the map helpers' errors are typed.
#[test]
fn map_helpers_direct_in_both_modes() {
    let h = helpers();
    let maps = TestMaps {
        values: UnsafeCell::new([0; 4]),
    };
    let lookup = "stw [%r10-4], 1\nlddw %r1, 1\nmov %r2, %r10\nadd %r2, -4\ncall 1\n";
    let locked = format!(
        "{lookup}jeq %r0, 0, out\nmov %r6, %r0\nmov %r1, %r0\ncall {}\nldxdw %r7, [%r6]\nmov %r1, %r6\ncall {}\nmov %r0, %r7\nout:\nexit",
        ids::SPIN_LOCK,
        ids::SPIN_UNLOCK
    );
    let plain = format!("{lookup}jeq %r0, 0, out\nldxdw %r1, [%r0]\nadd %r1, 7\nstxdw [%r0], %r1\nmov %r0, %r1\nout:\nexit");
    for src in [&locked, &plain] {
        let p = load(src);
        let reset = || {
            // SAFETY: no run in progress.
            unsafe { *maps.values.get() = [0; 4] }
        };
        let snap = || {
            // SAFETY: no run in progress.
            unsafe { *maps.values.get() }
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect()
        };
        let mut c = case(&p, &h, Some(&maps));
        c.reset = &reset;
        c.snapshot = &snap;
        let a = compare(&c).unwrap_or_else(|e| panic!("{e}\n{src}"));
        assert!(a.unchecked_compared);
        assert!(a.checked.result.is_ok(), "{:?}", a.checked.result);
        // Explicitly: the unchecked JIT run of the spin-lock program succeeds.
        let mut vm = Jit::new(&p, &h).unwrap();
        let mut env = Env::new().with_maps(&maps);
        // SAFETY: the program touches its stack and the value the lookup returned.
        assert!(unsafe { vm.run_unchecked([0; 5], &[], &mut env) }.is_ok());
    }
    // Typed errors from the direct entries, as from the interpreter.
    let cases = [
        (format!("{lookup}exit"), None, HelperError::NoMaps),
        (
            "stw [%r10-4], 1\nlddw %r1, 7\nmov %r2, %r10\nadd %r2, -4\ncall 1\nexit".into(),
            Some(&maps as &dyn MapAccess),
            HelperError::InvalidMap(7),
        ),
        (
            "lddw %r1, 1\nmov %r2, 16\ncall 1\nexit".into(),
            Some(&maps as &dyn MapAccess),
            HelperError::Fault {
                addr: 16,
                len: 4,
                write: false,
            },
        ),
    ];
    for (src, m, want) in cases {
        let p = load(&src);
        let mut env = Env::new();
        env.maps = m;
        let i = Interpreter::new(&p, &h).unwrap().run([0; 5], &[], &mut env);
        let j = Jit::new(&p, &h).unwrap().run([0; 5], &[], &mut env);
        assert_eq!(j, i, "{src}");
        assert!(
            matches!(&j, Err(ExecError::Helper { id: 1, error, .. }) if *error == want),
            "{j:?}"
        );
    }
}

/// The same code object serves runs with and without a budget (two bodies), alternately.
#[test]
fn runs_with_and_without_a_budget_alternate() {
    let h = helpers();
    let p = load(&format!(
        "mov %r6, 50\nloop:\nmov %r1, %r6\ncall {}\nadd %r7, %r0\nsub %r6, 1\njne %r6, 0, loop\nmov %r0, %r7\nexit",
        MIX + 1
    ));
    let want = Interpreter::new(&p, &h)
        .unwrap()
        .run([0; 5], &[], &mut Env::new())
        .unwrap();
    let mut vm = Jit::new(&p, &h).unwrap();
    for round in 0..3 {
        vm.set_budget(None);
        assert_eq!(vm.run([0; 5], &[], &mut Env::new()), Ok(want));
        // SAFETY: the program touches nothing but registers.
        assert_eq!(
            unsafe { vm.run_unchecked([0; 5], &[], &mut Env::new()) },
            Ok(want)
        );
        vm.set_budget(Some(10 + round));
        assert_eq!(
            vm.run([0; 5], &[], &mut Env::new()),
            Err(ExecError::Budget { pc: 5 })
        );
        vm.set_budget(Some(49));
        assert_eq!(vm.run([0; 5], &[], &mut Env::new()), Ok(want));
    }
    assert!(vm.checked_code().unbounded_code().is_some());
    assert!(vm.unchecked_code().unwrap().unbounded_code().is_some());
}
