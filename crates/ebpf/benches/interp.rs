//! Interpreter and JIT speed in ns per executed instruction, side by side with rbpf's
//! interpreter and rbpf's JIT on the same bytecode:
//! - `loop_sum`: sum N..1 with a counted loop (3 instructions per iteration);
//! - `map_heavy`: a `bpf_map_lookup_elem` call per iteration on a trivial in-memory array map,
//!   incrementing the value found (14 instructions per iteration, the call counted as one);
//! - `alu_chain`: the kernel anchor's JIT loop (../shared/anchors/kernel/RESULTS.md: 11
//!   instructions per iteration — mul, add, mov, rsh, xor, mov, add, add, add, jeq, ja — on a
//!   dependent multiply chain, `x = x * C1 + C2; x ^= x >> 17; x += i`), where the kernel's JIT
//!   takes 2.48 ns per iteration, 0.23 ns per instruction;
//! - `map_raw`: `map_heavy` with rbpf's trivial lookup function as our helper 1 too, so the
//!   engines differ in their call paths only, not in the map machinery behind the helper;
//! - `map_heavy` gives our JIT the bench map's array layout, as the runtime does for array
//!   maps: unchecked code computes the lookup inline (Linux's `map_gen_lookup`); `map_call`
//!   is the same bytecode without it, every lookup a call through the map machinery.
//!
//! Criterion reports throughput in instructions per second; a closing table prints ns per
//! instruction for every engine, the interpreter's speed-up over rbpf's, and the JIT against
//! the kernel's JIT and rbpf's JIT. (`JIT` rows need x86-64.)

use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::helpers::{DirectHelper, HelperCtx, HelperError};
#[cfg(target_arch = "x86_64")]
use bpfvfs_ebpf::jit::{ArrayLayout, Jit, JitProgram, Mode};
use bpfvfs_ebpf::{Env, Helpers, Insn, Interpreter, MapAccess, MemRef, Program, RegionKind};
use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const N: u64 = 100_000;

fn loop_sum_src() -> String {
    format!("mov %r0, 0\nmov %r1, {N}\nloop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, loop\nexit")
}
fn loop_sum_insns() -> u64 {
    2 + 3 * N + 1
}

/// Map handle 1 is the bench map.
fn map_heavy_src() -> String {
    format!(
        "mov %r6, {N}
         mov %r7, 0
     loop:
         mov %r1, %r6
         and %r1, 255
         stxw [%r10-4], %r1
         lddw %r1, 1
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, skip
         ldxdw %r1, [%r0]
         add %r1, 1
         stxdw [%r0], %r1
         add %r7, %r1
     skip:
         sub %r6, 1
         jne %r6, 0, loop
         mov %r0, %r7
         exit"
    )
}
fn map_heavy_insns() -> u64 {
    2 + 14 * N + 2
}

/// The kernel anchor's ALU loop (see the module docs), N iterations.
fn alu_chain_src() -> String {
    format!(
        "mov %r6, 1
         lddw %r7, 6364136223846793005
         lddw %r8, 1442695040888963407
         mov %r2, 0
         mov %r4, 0
     loop:
         mul %r6, %r7
         add %r6, %r8
         mov %r1, %r6
         rsh %r1, 17
         xor %r6, %r1
         mov %r3, %r2
         add %r6, %r3
         add %r2, 1
         add %r4, 1
         jeq %r2, {N}, out
         ja loop
     out:
         mov %r0, %r6
         exit"
    )
}
fn alu_chain_insns() -> u64 {
    5 + 11 * N - 1 + 2
}
fn alu_chain_expect() -> u64 {
    let mut x: u64 = 1;
    for i in 0..N {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x ^= x >> 17;
        x = x.wrapping_add(i);
    }
    x
}

/// The kernel's JIT on `alu_chain` (RESULTS.md): 2.48 ns per 11-instruction iteration.
const KERNEL_NS_PER_INSN: f64 = 2.48 / 11.0;

fn bytes(src: &str) -> Vec<u8> {
    Insn::slots_to_bytes(&assemble(src).unwrap())
}

// --- the map, for both engines ----------------------------------------------------------------

static VALUES: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

fn value_ptr(key: u32) -> *mut u8 {
    VALUES[(key & 255) as usize].as_ptr().cast()
}

struct BenchMap;

// SAFETY: VALUES is a static.
unsafe impl MapAccess for BenchMap {
    fn key_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(4)
    }
    fn value_size(&self, map: u64) -> Option<usize> {
        (map == 1).then_some(8)
    }
    fn lookup(&self, _map: u64, key: &[u8]) -> Option<MemRef> {
        let k = u32::from_ne_bytes(key.try_into().ok()?);
        if k >= 256 {
            return None;
        }
        Some(MemRef {
            ptr: NonNull::new(value_ptr(k)).unwrap(),
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

fn rbpf_lookup(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    if map != 1 {
        return 0;
    }
    // SAFETY: rbpf passes the program's pointer to its stack.
    let k = unsafe { (key as *const u32).read_unaligned() };
    if k >= 256 {
        return 0;
    }
    value_ptr(k) as u64
}

// --- runners -----------------------------------------------------------------------------------

struct Ours {
    prog: Program,
    helpers: Helpers,
    /// The JIT's unchecked code gets the bench map's layout (lookups inline).
    arrays: bool,
}

impl Ours {
    /// `name` selects the helpers: `map_raw` gets rbpf's lookup helper as helper 1;
    /// `map_heavy` gives the JIT the bench map's array layout (as the runtime does for array
    /// maps), `map_call` is the same bytecode without it (a helper call per lookup).
    fn new(name: &str, src: &str) -> Self {
        let mut helpers = Helpers::standard();
        if name == "map_raw" {
            helpers.register_direct::<RawLookup>(1, "raw_lookup");
        }
        Ours {
            prog: Program::from_bytes(&bytes(src)).unwrap(),
            helpers,
            arrays: name == "map_heavy",
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn jit(&self) -> Jit<'_> {
        if !self.arrays {
            return Jit::new(&self.prog, &self.helpers).unwrap();
        }
        let layout = |h: u64| {
            // SAFETY: VALUES is a static of 256 8-byte values, what BenchMap hands out.
            (h == 1)
                .then(|| unsafe { ArrayLayout::new(VALUES.as_ptr() as *mut u8, 256, 8) })
                .flatten()
        };
        let checked = JitProgram::compile(&self.prog, &self.helpers, Mode::Checked).unwrap();
        let unchecked =
            JitProgram::compile_with_arrays(&self.prog, &self.helpers, Mode::Unchecked, &layout)
                .unwrap();
        assert_eq!(unchecked.inlined_lookups(), 1);
        Jit::with_code(
            &self.prog,
            &self.helpers,
            Arc::new(checked),
            Some(Arc::new(unchecked)),
        )
        .unwrap()
    }
}

/// `rbpf_lookup` as a bpfvfs helper, so `map_raw` compares call overhead, not map machinery:
/// the key read with a plain load and the value pointer computed from it, as rbpf's; checked
/// runs read the key through the checks and register the value (what makes it accessible).
/// Registered with a direct JIT entry, as the standard map helpers are.
struct RawLookup;

// SAFETY: `raw_lookup` reads a[0] and a[1] only.
unsafe impl DirectHelper for RawLookup {
    const ARGS: u8 = 2;
    // Like the map helpers: looks up no registered memory, reads no pc, runs no callback.
    const USES_REGIONS: bool = false;
    const USES_CALL_SITE: bool = false;
    #[inline(always)]
    fn call(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
        raw_lookup(ctx, a)
    }
}

#[inline(always)]
fn raw_lookup(ctx: &mut HelperCtx, a: [u64; 5]) -> Result<u64, HelperError> {
    if a[0] != 1 {
        return Ok(0);
    }
    let k = if ctx.is_checked() {
        let mut b = [0u8; 4];
        ctx.read(a[1], &mut b)?;
        u32::from_ne_bytes(b)
    } else {
        // SAFETY: unchecked runs are of the bench programs, whose key pointer is their stack.
        unsafe { std::ptr::with_exposed_provenance::<u32>(a[1] as usize).read_unaligned() }
    };
    if k >= 256 {
        return Ok(0);
    }
    let p = value_ptr(k);
    if ctx.is_checked() {
        // SAFETY: VALUES is a static.
        Ok(unsafe { ctx.register_region(RegionKind::MapValue, NonNull::new(p).unwrap(), 8, true) })
    } else {
        Ok(p.expose_provenance() as u64)
    }
}

fn run_ours(vm: &mut Interpreter<'_>, env: &mut Env<'_>, checked: bool) -> u64 {
    if checked {
        vm.run([0; 5], &[], env).unwrap()
    } else {
        // SAFETY: the bench programs touch only their stack and the bench map's values.
        unsafe { vm.run_unchecked([0; 5], &[], env) }.unwrap()
    }
}

fn rbpf_vm(prog: &[u8]) -> rbpf::EbpfVmRaw<'_> {
    let mut vm = rbpf::EbpfVmRaw::new(Some(prog)).unwrap();
    vm.register_helper(1, rbpf_lookup).unwrap();
    let lo = VALUES.as_ptr() as u64;
    vm.register_allowed_memory(lo..lo + 256 * 8);
    vm
}

#[cfg(target_arch = "x86_64")]
fn rbpf_jit_vm(prog: &[u8]) -> rbpf::EbpfVmRaw<'_> {
    let mut vm = rbpf_vm(prog);
    vm.jit_compile().unwrap();
    vm
}

#[cfg(target_arch = "x86_64")]
fn run_rbpf_jit(vm: &rbpf::EbpfVmRaw<'_>) -> u64 {
    // SAFETY: the bench programs touch only their stack and the bench map's values.
    unsafe { vm.execute_program_jit(&mut []) }.unwrap()
}

#[cfg(target_arch = "x86_64")]
fn run_jit(vm: &mut Jit<'_>, env: &mut Env<'_>, checked: bool) -> u64 {
    if checked {
        vm.run([0; 5], &[], env).unwrap()
    } else {
        // SAFETY: the bench programs touch only their stack and the bench map's values.
        unsafe { vm.run_unchecked([0; 5], &[], env) }.unwrap()
    }
}

fn bench_program(c: &mut Criterion, name: &str, src: &str, insns: u64, expect: u64) {
    let ours = Ours::new(name, src);
    let code = bytes(src);
    let maps = BenchMap;
    let mut env = Env::new().with_maps(&maps);
    let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
    let rvm = rbpf_vm(&code);
    // Same answers first (map values change between runs, so only for the others).
    let a = run_ours(&mut vm, &mut env, true);
    let b = rvm.execute_program(&mut []).unwrap();
    if expect != 0 {
        assert_eq!(a, expect);
        assert_eq!(b, expect);
    }

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(insns));
    g.bench_function(BenchmarkId::new("bpfvfs", "checked"), |bn| {
        bn.iter(|| black_box(run_ours(&mut vm, &mut env, true)))
    });
    g.bench_function(BenchmarkId::new("bpfvfs", "unchecked"), |bn| {
        bn.iter(|| black_box(run_ours(&mut vm, &mut env, false)))
    });
    g.bench_function(BenchmarkId::new("rbpf", "interp"), |bn| {
        bn.iter(|| black_box(rvm.execute_program(&mut []).unwrap()))
    });
    #[cfg(target_arch = "x86_64")]
    {
        let mut jvm = ours.jit();
        let rjit = rbpf_jit_vm(&code);
        if expect != 0 {
            assert_eq!(run_jit(&mut jvm, &mut env, true), expect);
            assert_eq!(run_jit(&mut jvm, &mut env, false), expect);
            assert_eq!(run_rbpf_jit(&rjit), expect);
        }
        g.bench_function(BenchmarkId::new("bpfvfs-jit", "checked"), |bn| {
            bn.iter(|| black_box(run_jit(&mut jvm, &mut env, true)))
        });
        g.bench_function(BenchmarkId::new("bpfvfs-jit", "unchecked"), |bn| {
            bn.iter(|| black_box(run_jit(&mut jvm, &mut env, false)))
        });
        g.bench_function(BenchmarkId::new("rbpf", "jit"), |bn| {
            bn.iter(|| black_box(run_rbpf_jit(&rjit)))
        });
    }
    g.finish();
}

fn programs() -> [(&'static str, String, u64, u64); 5] {
    [
        (
            "loop_sum",
            loop_sum_src(),
            loop_sum_insns(),
            N * (N + 1) / 2,
        ),
        ("map_heavy", map_heavy_src(), map_heavy_insns(), 0),
        ("map_call", map_heavy_src(), map_heavy_insns(), 0),
        ("map_raw", map_heavy_src(), map_heavy_insns(), 0),
        (
            "alu_chain",
            alu_chain_src(),
            alu_chain_insns(),
            alu_chain_expect(),
        ),
    ]
}

fn benches(c: &mut Criterion) {
    for (name, src, insns, expect) in programs() {
        bench_program(c, name, &src, insns, expect);
    }
}

criterion_group!(group, benches);

/// Wall-clock ns per instruction of each of `fs`, measured in interleaved rounds (so load
/// from other processes falls on every engine alike): per round and engine, the best of runs
/// for ~100 ms. Returns, per engine, the per-round figures.
fn ns_per_insn_rounds(insns: u64, fs: &mut [&mut dyn FnMut() -> u64]) -> Vec<Vec<f64>> {
    const ROUNDS: usize = 7;
    let mut out = vec![Vec::with_capacity(ROUNDS); fs.len()];
    for _ in 0..ROUNDS {
        for (f, o) in fs.iter_mut().zip(&mut out) {
            let mut best = Duration::MAX;
            let deadline = Instant::now() + Duration::from_millis(100);
            while Instant::now() < deadline {
                let t = Instant::now();
                black_box(f());
                best = best.min(t.elapsed());
            }
            o.push(best.as_nanos() as f64 / insns as f64);
        }
    }
    out
}

fn best(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn summary() {
    println!("\nns per executed instruction (best of 7 interleaved rounds, N = {N}):");
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  {:>9} {:>11} {:>11} {:>11}",
        "program",
        "interp",
        "interp-u",
        "rbpf",
        "jit",
        "jit-u",
        "rbpf-jit",
        "interp/rb",
        "jit-u/kern",
        "rbjit/jit-u",
        "(median)"
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "checked", "unchckd", "interp", "checked", "unchckd", ""
    );
    // `INTERP_PROGRAMS=map_raw,map_heavy` limits the table to those programs.
    let only = std::env::var("INTERP_PROGRAMS").ok();
    for (name, src, insns, _) in programs() {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|p| p == name))
        {
            continue;
        }
        let ours = Ours::new(name, &src);
        let code = bytes(&src);
        let maps = BenchMap;
        let mut env = Env::new().with_maps(&maps);
        let mut env2 = Env::new().with_maps(&maps);
        let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
        let mut vm2 = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
        let rvm = rbpf_vm(&code);
        let mut chk = || run_ours(&mut vm, &mut env, true);
        let mut unchk = || run_ours(&mut vm2, &mut env2, false);
        let mut rb = || rvm.execute_program(&mut []).unwrap();
        #[cfg(target_arch = "x86_64")]
        let r = {
            let mut jvm = ours.jit();
            let mut jvm2 = ours.jit();
            let (mut env3, mut env4) = (Env::new().with_maps(&maps), Env::new().with_maps(&maps));
            let rjit = rbpf_jit_vm(&code);
            let mut jc = || run_jit(&mut jvm, &mut env3, true);
            let mut ju = || run_jit(&mut jvm2, &mut env4, false);
            let mut rj = || run_rbpf_jit(&rjit);
            ns_per_insn_rounds(
                insns,
                &mut [&mut chk, &mut unchk, &mut rb, &mut jc, &mut ju, &mut rj],
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = {
            let mut r = ns_per_insn_rounds(insns, &mut [&mut chk, &mut unchk, &mut rb]);
            r.extend([vec![f64::NAN], vec![f64::NAN], vec![f64::NAN]]);
            r
        };
        let [chk, unchk, rb, jc, ju, rj] = [0, 1, 2, 3, 4, 5].map(|i| best(&r[i]));
        let ratio_median = median(r[5].iter().zip(&r[4]).map(|(a, b)| a / b).collect());
        let kern = if name == "alu_chain" {
            format!("{:.2}x", ju / KERNEL_NS_PER_INSN)
        } else {
            "-".into()
        };
        println!(
            "{name:<10} {chk:>8.3} {unchk:>8.3} {rb:>8.3} {jc:>8.3} {ju:>8.3} {rj:>8.3}  {:>8.1}x {kern:>11} {:>10.2}x {ratio_median:>10.2}x",
            rb / chk,
            rj / ju
        );
    }
    println!(
        "kernel JIT on alu_chain (RESULTS.md): {KERNEL_NS_PER_INSN:.3} ns/insn; target: jit <= 1.5x kernel, <= rbpf-jit"
    );
    let _ = VALUES[0].load(Ordering::Relaxed);
}

/// `INTERP_ONE=program:engine[:reps]` (engine: interp, interp-u, rbpf, jit, jit-u, rbpf-jit;
/// jit-b, jit-ub: the JIT with a budget set)
/// runs one program `reps` times (default 1) on one engine and exits, for instruction counts:
/// `valgrind --tool=callgrind` at reps 1 and 11, difference / (10 N) = instructions per loop
/// iteration (scripts in docs/benchmarks.md).
fn one(spec: &str) {
    let mut parts = spec.split(':');
    let (name, engine) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let reps: u64 = parts.next().map_or(1, |r| r.parse().expect("reps"));
    let (_, src, _, _) = programs()
        .into_iter()
        .find(|p| p.0 == name)
        .unwrap_or_else(|| panic!("unknown program {name}"));
    let ours = Ours::new(name, &src);
    let code = bytes(&src);
    let maps = BenchMap;
    let mut env = Env::new().with_maps(&maps);
    let mut acc = 0u64;
    let mut rep = |f: &mut dyn FnMut() -> u64| {
        for _ in 0..reps {
            acc = acc.wrapping_add(black_box(f()));
        }
    };
    match engine {
        "interp" | "interp-u" => {
            let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
            rep(&mut || run_ours(&mut vm, &mut env, engine == "interp"));
        }
        "rbpf" => {
            let rvm = rbpf_vm(&code);
            rep(&mut || rvm.execute_program(&mut []).unwrap());
        }
        #[cfg(target_arch = "x86_64")]
        "jit" | "jit-u" | "jit-b" | "jit-ub" => {
            // `-b`: with a budget (the body that counts back-edges).
            let mut jvm = ours.jit();
            if engine.ends_with('b') {
                jvm.set_budget(Some(u64::MAX));
            }
            let checked = !engine.starts_with("jit-u");
            rep(&mut || run_jit(&mut jvm, &mut env, checked));
            // `INTERP_DUMP=FILE`: the code that ran (no budget: the body without back-edge
            // counting), for `objdump -D -b binary -mi386:x86-64 FILE`.
            if let Ok(path) = std::env::var("INTERP_DUMP") {
                let code = if !checked {
                    jvm.unchecked_code().unwrap().clone()
                } else {
                    jvm.checked_code().clone()
                };
                std::fs::write(path, code.unbounded_code().unwrap_or(code.code())).unwrap();
            }
        }
        #[cfg(target_arch = "x86_64")]
        "rbpf-jit" => {
            let rjit = rbpf_jit_vm(&code);
            rep(&mut || run_rbpf_jit(&rjit));
        }
        _ => panic!("unknown engine {engine}"),
    }
    println!("{name} {engine} x{reps}: {acc}");
}

/// Every engine gives the same r0 on the map programs from the same map contents.
fn check_map_results() {
    for (name, src, _, _) in programs() {
        if !name.starts_with("map") {
            continue;
        }
        let ours = Ours::new(name, &src);
        let code = bytes(&src);
        let maps = BenchMap;
        let mut env = Env::new().with_maps(&maps);
        let reset = || VALUES.iter().for_each(|v| v.store(0, Ordering::Relaxed));
        let mut results = Vec::new();
        let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
        reset();
        results.push(("interp", run_ours(&mut vm, &mut env, true)));
        reset();
        results.push(("interp-u", run_ours(&mut vm, &mut env, false)));
        reset();
        results.push(("rbpf", rbpf_vm(&code).execute_program(&mut []).unwrap()));
        #[cfg(target_arch = "x86_64")]
        {
            let mut jvm = ours.jit();
            reset();
            results.push(("jit", run_jit(&mut jvm, &mut env, true)));
            reset();
            results.push(("jit-u", run_jit(&mut jvm, &mut env, false)));
            reset();
            results.push(("rbpf-jit", run_rbpf_jit(&rbpf_jit_vm(&code))));
        }
        for (engine, r) in &results {
            assert_eq!(*r, results[0].1, "{name}: {engine} disagrees: {results:?}");
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("INTERP_ONE") {
        one(&spec);
        return;
    }
    check_map_results();
    group();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
