//! Interpreter speed in ns per executed instruction, side by side with rbpf's interpreter on
//! the same bytecode:
//! - `loop_sum`: sum N..1 with a counted loop (3 instructions per iteration);
//! - `map_heavy`: a `bpf_map_lookup_elem` call per iteration on a trivial in-memory array map,
//!   incrementing the value found (14 instructions per iteration, the call counted as one).
//!
//! Criterion reports throughput in instructions per second; a closing table prints ns per
//! instruction and the speed-up over rbpf.

use bpfvfs_ebpf::asm::assemble;
use bpfvfs_ebpf::{Env, Helpers, Insn, Interpreter, MapAccess, MemRef, Program};
use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl Ours {
    fn new(src: &str) -> Self {
        Ours {
            prog: Program::from_bytes(&bytes(src)).unwrap(),
            helpers: Helpers::standard(),
        }
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

fn bench_program(c: &mut Criterion, name: &str, src: &str, insns: u64, expect: u64) {
    let ours = Ours::new(src);
    let code = bytes(src);
    let maps = BenchMap;
    let mut env = Env::new().with_maps(&maps);
    let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
    let rvm = rbpf_vm(&code);
    // Same answers first (map values change between runs, so only for loop_sum).
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
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_program(
        c,
        "loop_sum",
        &loop_sum_src(),
        loop_sum_insns(),
        N * (N + 1) / 2,
    );
    bench_program(c, "map_heavy", &map_heavy_src(), map_heavy_insns(), 0);
}

criterion_group!(group, benches);

/// Best-of-N wall-clock ns per instruction of `f`.
fn ns_per_insn(insns: u64, mut f: impl FnMut() -> u64) -> f64 {
    let mut best = Duration::MAX;
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed());
    }
    best.as_nanos() as f64 / insns as f64
}

fn summary() {
    println!("\nns per executed instruction (best of runs, N = {N}):");
    println!(
        "{:<10} {:>16} {:>18} {:>10} {:>14}",
        "program", "bpfvfs checked", "bpfvfs unchecked", "rbpf", "speed-up (chk)"
    );
    for (name, src, insns) in [
        ("loop_sum", loop_sum_src(), loop_sum_insns()),
        ("map_heavy", map_heavy_src(), map_heavy_insns()),
    ] {
        let ours = Ours::new(&src);
        let code = bytes(&src);
        let maps = BenchMap;
        let mut env = Env::new().with_maps(&maps);
        let mut vm = Interpreter::new(&ours.prog, &ours.helpers).unwrap();
        let rvm = rbpf_vm(&code);
        let chk = ns_per_insn(insns, || run_ours(&mut vm, &mut env, true));
        let unchk = ns_per_insn(insns, || run_ours(&mut vm, &mut env, false));
        let rb = ns_per_insn(insns, || rvm.execute_program(&mut []).unwrap());
        println!(
            "{name:<10} {chk:>16.3} {unchk:>18.3} {rb:>10.3} {:>13.1}x",
            rb / chk
        );
    }
    let _ = VALUES[0].load(Ordering::Relaxed);
}

fn main() {
    group();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
