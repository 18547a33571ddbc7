//! `bpf_map_lookup_elem` on array maps compiled inline (`JitProgram::compile_with_arrays`,
//! Linux's `map_gen_lookup`): same results as the helper call in every case — keys in and out
//! of range, values updated through the returned pointer — with no call made; and no
//! inlining where it would not be the same: checked code, a map handle that is not a constant
//! at the call, a jump target between the `lddw` and the call, a replaced helper 1, or code
//! whose helpers look up registered memory.
#![cfg(target_arch = "x86_64")]

use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::jit::{ArrayLayout, Jit, JitProgram, Mode};
use bpfvfs_ebpf::{Env, HelperCtx, HelperError, Helpers, Interpreter, MapAccess, MemRef, Program};
use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;
use std::sync::Arc;

const ENTRIES: u32 = 16;

/// Handle 1: an array of 16 u64 values; counts the lookups that reach it.
struct Array {
    values: UnsafeCell<[u64; ENTRIES as usize]>,
    lookups: Cell<u32>,
}

impl Array {
    fn new() -> Self {
        Array {
            values: UnsafeCell::new(std::array::from_fn(|i| i as u64 * 100)),
            lookups: Cell::new(0),
        }
    }
    fn layout(&self) -> impl Fn(u64) -> Option<ArrayLayout> + '_ {
        move |h| {
            // SAFETY: the values live in self, which outlives every JIT program of these
            // tests, and `lookup` hands out the same addresses.
            (h == 1)
                .then(|| unsafe { ArrayLayout::new(self.values.get().cast(), ENTRIES, 8) })
                .flatten()
        }
    }
    fn snapshot(&self) -> [u64; ENTRIES as usize] {
        // SAFETY: no run in progress.
        unsafe { *self.values.get() }
    }
}

// SAFETY: the values live as long as `self`, which outlives the runs.
unsafe impl MapAccess for Array {
    fn key_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(4)
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(8)
    }
    fn lookup(&self, map: u64, key: &[u8]) -> Option<MemRef> {
        self.lookups.set(self.lookups.get() + 1);
        let k = u32::from_ne_bytes(key.try_into().ok()?);
        if map != 1 || k >= ENTRIES {
            return None;
        }
        // SAFETY: k < ENTRIES.
        let p = unsafe { (self.values.get() as *mut u64).add(k as usize) };
        Some(MemRef {
            ptr: NonNull::new(p.cast()).unwrap(),
            len: 8,
            writable: true,
        })
    }
    fn update(&self, _: u64, _: &[u8], _: &[u8], _: u64) -> i64 {
        -22
    }
    fn delete(&self, _: u64, _: &[u8]) -> i64 {
        -22
    }
}

/// For keys 0..20 (4 past the end): look up, add the key to the value found, sum what is
/// found; returns sum * 100 + misses.
const SUM: &str = "
        mov %r6, 0
        mov %r7, 0
        mov %r8, 0
    loop:
        stxw [%r10-4], %r6
        lddw %r1, 1
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, miss
        ldxdw %r1, [%r0]
        add %r1, %r6
        stxdw [%r0], %r1
        add %r7, %r1
        ja next
    miss:
        add %r8, 1
    next:
        add %r6, 1
        jlt %r6, 20, loop
        mul %r7, 100
        add %r7, %r8
        mov %r0, %r7
        exit";

fn program(src: &str) -> Program {
    Program::load(&assemble(src).unwrap(), Default::default()).unwrap()
}

/// Runs `prog` in the interpreter and in JIT code compiled with the array's layout (each on a
/// fresh array, unchecked); returns (interpreter r0, JIT r0, lookups that reached the map in
/// the JIT run, inlined call sites), after checking both left the same values.
fn both(prog: &Program, helpers: &Helpers) -> (u64, u64, u32, usize) {
    let (a, b) = (Array::new(), Array::new());
    let mut env = Env::new().with_maps(&a);
    let mut vm = Interpreter::new(prog, helpers).unwrap();
    // SAFETY: the program touches its stack and the array's values only.
    let r_int = unsafe { vm.run_unchecked([0; 5], &[], &mut env) }.unwrap();
    let layout = b.layout();
    let code = JitProgram::compile_with_arrays(prog, helpers, Mode::Unchecked, &layout).unwrap();
    let inlined = code.inlined_lookups();
    let checked = JitProgram::compile(prog, helpers, Mode::Checked).unwrap();
    let mut jit = Jit::with_code(prog, helpers, Arc::new(checked), Some(Arc::new(code))).unwrap();
    let mut env = Env::new().with_maps(&b);
    // SAFETY: as above.
    let r_jit = unsafe { jit.run_unchecked([0; 5], &[], &mut env) }.unwrap();
    assert_eq!(a.snapshot(), b.snapshot(), "values after the runs");
    (r_int, r_jit, b.lookups.get(), inlined)
}

#[test]
fn inline_lookups_match_the_helper() {
    let helpers = Helpers::standard();
    let (i, j, reached, inlined) = both(&program(SUM), &helpers);
    let expect: u64 = (0..16u64).map(|k| k * 100 + k).sum::<u64>() * 100 + 4;
    assert_eq!((i, j), (expect, expect));
    assert_eq!(inlined, 1, "the one lookup site is inline");
    assert_eq!(reached, 0, "no lookup went through the helper");
    // Checked code always calls (it registers the value for its checks).
    let a = Array::new();
    let layout = a.layout();
    let checked =
        JitProgram::compile_with_arrays(&program(SUM), &helpers, Mode::Checked, &layout).unwrap();
    assert_eq!(checked.inlined_lookups(), 0);
}

#[test]
fn no_inlining_where_the_map_is_not_known_at_the_call() {
    let helpers = Helpers::standard();
    // r1 copied from r9, not loaded by `lddw` right before the call.
    let via_reg = SUM
        .replace("mov %r8, 0\n", "mov %r8, 0\n        lddw %r9, 1\n")
        .replace("lddw %r1, 1", "mov %r1, %r9");
    // A jump lands between the `lddw` and the call.
    let entered = SUM.replace(
        "lddw %r1, 1\n        mov %r2, %r10",
        "lddw %r1, 1\n        ja inner\n    inner:\n        mov %r2, %r10",
    );
    for src in [via_reg, entered] {
        let (i, j, reached, inlined) = both(&program(&src), &helpers);
        assert_eq!(i, j, "{src}");
        assert_eq!(inlined, 0, "{src}");
        assert_eq!(reached, 20, "{src}");
    }
}

/// A replacement registered as helper 1.
fn other_lookup(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    let mut key = [0u8; 4];
    ctx.read(a[1], &mut key)?;
    Ok(u32::from_ne_bytes(key) as u64 % 3)
}

#[test]
fn no_inlining_for_a_replaced_lookup_or_region_users() {
    // Helper 1 replaced: its own semantics, no inlining.
    let mut replaced = Helpers::standard();
    replaced.register(1, "other_lookup", other_lookup);
    let src = "
        mov %r6, 7
        stxw [%r10-4], %r6
        lddw %r1, 1
        mov %r2, %r10
        add %r2, -4
        call 1
        exit";
    let (i, j, _, inlined) = both(&program(src), &replaced);
    assert_eq!((i, j, inlined), (1, 1, 0));
    // A helper that looks up registered memory (bpf_trace_printk's %s, through the
    // trampoline) makes the code keep registering values: no inlining there either.
    let printk = SUM.replace(
        "    next:",
        "        mov %r1, %r10\n        add %r1, -4\n        mov %r2, 4\n        call 6\n    next:",
    );
    let (i, j, reached, inlined) = both(&program(&printk), &Helpers::standard());
    assert_eq!(i, j);
    assert_eq!((inlined, reached), (0, 20));
}
