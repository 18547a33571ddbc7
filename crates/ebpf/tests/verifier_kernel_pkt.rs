//! Kernel differential for packet pointers: random XDP programs built from the pieces packet
//! code is made of (pointer copies, constant and variable offsets, bounds checks in every
//! comparison form and operand order, metadata checks, loads and stores at random offsets,
//! spills, `bpf_xdp_adjust_head`, pointer differences) go through this verifier and the
//! kernel's. Properties: this verifier never accepts a program the kernel rejects; and every
//! program both accept runs, on packets of several lengths, without a memory fault in the
//! checked interpreter and with the kernel's `BPF_PROG_TEST_RUN` results (retval, data_out) on
//! the interpreter and the JIT. Skipped, with the reason printed, when not root or when the
//! kernel refuses. `VERIFIER_PKT_COUNT` sets the number of programs (default 1500).

mod pkt_common;

use bpfvfs_ebpf::insn::Insn;
use bpfvfs_ebpf::interp::LoadOptions;
use bpfvfs_ebpf::jit::Jit;
use bpfvfs_ebpf::pktctx::XdpRun;
use bpfvfs_ebpf::verifier::{
    convert_ctx_accesses, verify, HelperProtos, ProgTypeSpec, VerifierEnv,
};
use bpfvfs_ebpf::{Env, Helpers, Interpreter, Program};
use pkt_common::kernel;
use std::collections::BTreeMap;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

/// Jump to the common exit, patched once the program's length is known.
const TO_OUT: i16 = i16::MIN;

fn generate(seed: u64) -> Vec<Insn> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let i = Insn::new;
    let mut v = vec![
        i(0xbf, 6, 1, 0, 0), // r6 = ctx
        i(0x61, 2, 6, 0, 0), // r2 = data
        i(0x61, 3, 6, 4, 0), // r3 = data_end
        i(0xb7, 0, 0, 0, 2), // r0 = XDP_PASS
        i(0xb7, 9, 0, 0, 0), // r9 = 0
        i(0x61, 8, 6, 8, 0), // r8 = data_meta
        i(0xbf, 4, 2, 0, 0), // r4, r5, r7 = data
        i(0xbf, 5, 2, 0, 0),
        i(0xbf, 7, 2, 0, 0),
        i(0x7b, 10, 2, -8, 0), // fp-8 = data
    ];
    let ptrs = [2u8, 3, 4, 5, 7, 8];
    let movable = [2u8, 4, 5, 7, 8];
    let n = 3 + r.below(12);
    for _ in 0..n {
        match r.below(120) {
            0..=11 => {
                let (d, s) = (r.pick(&[4u8, 5, 7]), r.pick(&ptrs));
                v.push(i(0xbf, d, s, 0, 0));
            }
            12..=27 => {
                let d = r.pick(&movable);
                v.push(i(0x07, d, 0, 0, r.range(-2, 66) as i32));
            }
            28..=41 => {
                // A bounds check.
                let meta = r.below(5) == 0;
                let (a, b) = if meta {
                    (r.pick(&[8u8, 4, 5]), 2u8)
                } else {
                    (r.pick(&[4u8, 5, 7, 2]), 3u8)
                };
                let (a, b) = if r.below(2) == 0 { (a, b) } else { (b, a) };
                let op = if r.below(6) == 0 {
                    r.pick(&[0x1du8, 0x5d, 0x6d])
                } else {
                    r.pick(&[0x2du8, 0x3d, 0xad, 0xbd])
                };
                let off = if r.below(5) < 3 {
                    TO_OUT
                } else {
                    r.range(1, 3) as i16
                };
                v.push(i(op, a, b, off, 0));
            }
            42..=45 => {
                let sz = r.pick(&[0x71u8, 0x69, 0x61, 0x79]);
                let d = r.pick(&[0u8, 0, 9]);
                v.push(i(sz, d, r.pick(&movable), r.range(-2, 24) as i16, 0));
            }
            46..=48 => {
                let base = r.pick(&movable);
                let off = r.range(-1, 20) as i16;
                if r.below(2) == 0 {
                    let op = r.pick(&[0x72u8, 0x6a, 0x62]);
                    v.push(i(op, base, 0, off, r.range(0, 255) as i32));
                } else {
                    let op = r.pick(&[0x73u8, 0x6b, 0x63]);
                    v.push(i(op, base, 0, off, 0));
                }
            }
            49..=56 => {
                // A variable offset from a packet byte.
                v.push(i(0x71, 9, r.pick(&movable), r.range(0, 20) as i16, 0));
                v.push(i(0x57, 9, 0, 0, r.pick(&[7, 15, 63, 255])));
                if r.below(3) == 0 {
                    v.push(i(0x67, 9, 0, 0, 2));
                }
                if r.below(8) == 0 {
                    v.push(i(0x17, 9, 0, 0, 4));
                }
                v.push(i(0x0f, r.pick(&[4u8, 5, 7]), 9, 0, 0));
            }
            57..=61 => {
                if r.below(2) == 0 {
                    v.push(i(0x7b, 10, r.pick(&movable), -8, 0));
                } else {
                    v.push(i(0x79, r.pick(&[4u8, 5, 7]), 10, -8, 0));
                }
            }
            62..=64 => {
                v.push(i(0xbf, 1, 6, 0, 0));
                v.push(i(0xb7, 2, 0, 0, r.range(-8, 8) as i32));
                v.push(i(0x85, 0, 0, 0, 44));
                v.push(i(0xb7, 0, 0, 0, 2));
                if r.below(5) != 0 {
                    v.push(i(0x61, 2, 6, 0, 0));
                    v.push(i(0x61, 3, 6, 4, 0));
                    v.push(i(0xbf, 4, 2, 0, 0));
                    v.push(i(0xbf, 5, 2, 0, 0));
                }
            }
            65..=67 => {
                v.push(i(0xbf, 9, 3, 0, 0));
                v.push(i(0x1f, 9, 2, 0, 0));
                v.push(i(0xa5, 9, 0, 1, 20)); // if r9 < 20 skip one
                v.push(i(0xb7, 0, 0, 0, 1));
            }
            68 => v.push(i(0x15, r.pick(&movable), 0, 1, 0)),
            _ => {
                // A checked access: q = base + K; leave unless q is within the packet (in
                // one of the ways compilers write it); then access base + off, usually
                // inside [0, K).
                let base = r.pick(&[2u8, 2, 5, 7, 8]);
                let (bound, k) = if base == 8 {
                    (2u8, r.range(1, 8))
                } else {
                    (3u8, r.range(1, 40))
                };
                v.push(i(0xbf, 4, base, 0, 0));
                v.push(i(0x07, 4, 0, 0, k as i32));
                match r.below(5) {
                    0 => v.push(i(0x2d, 4, bound, TO_OUT, 0)), // q > end: out
                    1 => v.push(i(0xad, bound, 4, TO_OUT, 0)), // end < q: out
                    2 => v.push(i(0x3d, 4, bound, TO_OUT, 0)), // q >= end: out
                    3 => v.push(i(0xbd, bound, 4, TO_OUT, 0)), // end <= q: out
                    _ => {
                        v.push(i(0xbd, 4, bound, 1, 0)); // q <= end: over the exit
                        v.push(i(0x05, 0, 0, TO_OUT, 0));
                    }
                }
                let size = r.pick(&[1i64, 2, 4, 8]);
                let off = if r.below(8) == 0 {
                    k - size + 1
                } else {
                    r.range(0, (k - size).max(0))
                };
                let sz = match size {
                    1 => 0x10,
                    2 => 0x08,
                    4 => 0x00,
                    _ => 0x18,
                };
                match r.below(3) {
                    0 => v.push(i(0x62 | sz, base, 0, off as i16, 0x5a)), // st
                    1 => v.push(i(0x63 | sz, base, 9, off as i16, 0)),    // stx
                    _ => v.push(i(0x61 | sz, 0, base, off as i16, 0)),    // ldx
                }
            }
        }
    }
    let out = v.len();
    v.push(i(0x57, 0, 0, 0, 3));
    v.push(i(0x95, 0, 0, 0, 0));
    let len = v.len();
    for (k, ins) in v.iter_mut().enumerate() {
        let is_jmp = ins.code & 0x07 == 0x05 && ins.code != 0x85 && ins.code != 0x95;
        if !is_jmp {
            continue;
        }
        if ins.off == TO_OUT {
            ins.off = (out - k - 1) as i16;
        } else {
            ins.off = ins.off.min((len - k - 2) as i16);
        }
    }
    v
}

fn packets() -> Vec<Vec<u8>> {
    [14usize, 23, 40, 70]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|b| (b as u8).wrapping_mul(37).wrapping_add(5))
                .collect()
        })
        .collect()
}

/// Runs an accepted program on our engines: checked interpreter (a fault here means the
/// verifier accepted an unsafe program) and unchecked JIT.
fn run_ours(
    insns: &[Insn],
    info: &bpfvfs_ebpf::verifier::VerifiedInfo,
    pkt: &[u8],
) -> [(u32, Vec<u8>); 2] {
    let spec = ProgTypeSpec::xdp();
    let conv = convert_ctx_accesses(insns, &spec, info).expect("convert");
    let prog = Program::load(&conv, LoadOptions::default()).expect("prepare");
    let helpers = Helpers::standard();
    let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
    for jit in [false, true] {
        let mut run = XdpRun::new(pkt, None).expect("context");
        let args = run.args();
        let regions = run.regions();
        let mut env = Env::new();
        let r0 = if jit {
            let mut j = Jit::new(&prog, &helpers).expect("jit");
            // SAFETY: verified and converted for this context.
            unsafe { j.run_unchecked(args, &regions, &mut env) }
        } else {
            let mut i = Interpreter::new(&prog, &helpers).expect("interp");
            i.run(args, &regions, &mut env)
        };
        let r0 = r0.unwrap_or_else(|e| {
            panic!(
                "accepted program faulted ({}): {e}\n{}",
                if jit { "JIT" } else { "checked interpreter" },
                bpfvfs_ebpf::insn::disassemble(insns).unwrap_or_default()
            )
        });
        out.push((r0 as u32, run.data_out().to_vec()));
    }
    [out[0].clone(), out[1].clone()]
}

#[test]
fn packet_programs_never_accepted_when_the_kernel_rejects() {
    if let Err(why) = kernel::available() {
        println!("SKIPPED: kernel differential: {why}");
        return;
    }
    let count: u64 = std::env::var("VERIFIER_PKT_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let spec = ProgTypeSpec::xdp();
    let protos = HelperProtos::standard();
    let mut env = VerifierEnv::new(&spec, &[], &protos);
    env.log = false;
    let (mut both_ok, mut both_rej, mut runs) = (0, 0, 0);
    let mut stricter: BTreeMap<String, usize> = BTreeMap::new();
    let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    for seed in 1..=count {
        let insns = generate(seed);
        let ours = verify(&insns, &env, None);
        let theirs = kernel::prog_load(6, &insns, 0);
        match (&ours, &theirs) {
            (Ok(info), Ok(fd)) => {
                both_ok += 1;
                for pkt in packets() {
                    let (kr, kd, _, _) =
                        kernel::test_run(fd, Some(&pkt), None, false, true).expect("test run");
                    let kd = kd.unwrap();
                    for (engine, (r0, data)) in
                        ["interp", "jit"].iter().zip(run_ours(&insns, info, &pkt))
                    {
                        runs += 1;
                        if (r0, &data) != (kr, &kd) {
                            violations.push(format!(
                                "seed {seed}, {} byte packet, {engine}: ours ({r0}, {data:?}), kernel ({kr}, {kd:?})\n{}",
                                pkt.len(),
                                bpfvfs_ebpf::insn::disassemble(&insns).unwrap_or_default()
                            ));
                        }
                    }
                }
            }
            (Err(e), Err(_)) => {
                both_rej += 1;
                let key: String = e
                    .message
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(50)
                    .collect();
                *rejected.entry(key).or_default() += 1;
            }
            (Err(e), Ok(_)) => {
                let key: String = e
                    .message
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(60)
                    .collect();
                if std::env::var("VERIFIER_PKT_SHOW").is_ok_and(|v| key.contains(&v)) {
                    println!(
                        "seed {seed}: {}\n{}",
                        e.message,
                        bpfvfs_ebpf::insn::disassemble(&insns).unwrap_or_default()
                    );
                }
                *stricter.entry(key).or_default() += 1;
            }
            (Ok(_), Err((_, log))) => violations.push(format!(
                "seed {seed}: accepted here, rejected by the kernel:\n{}\nkernel log:\n{log}",
                bpfvfs_ebpf::insn::disassemble(&insns).unwrap_or_default()
            )),
        }
    }
    println!(
        "packet-pointer differential ({count} programs): {both_ok} accepted by both ({runs} runs matching the kernel's test run), {both_rej} rejected by both, {} rejected only here, {} violations",
        stricter.values().sum::<usize>(),
        violations.len()
    );
    for (r, n) in &stricter {
        println!("  stricter here: {n:>4} x {r}");
    }
    for (r, n) in &rejected {
        println!("  rejected by both: {n:>4} x {r}");
    }
    assert!(violations.is_empty(), "{}", violations.join("\n\n"));
}
