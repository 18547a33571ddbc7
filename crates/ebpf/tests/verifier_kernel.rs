//! Kernel differential: every corpus program of a type the host kernel loads (socket_filter,
//! xdp, syscall), and a few hundred generated programs, go through both this verifier and the
//! kernel's (raw bpf(2), BPF_PROG_LOAD). The property: this verifier never accepts a program
//! the kernel rejects. The reverse (stricter here) is allowed and listed. Skipped, with the
//! reason printed, when not root or when the kernel refuses BPF_PROG_LOAD altogether.

mod verifier_common;

use bpfvfs_ebpf::insn::Insn;
use bpfvfs_ebpf::verifier::{verify, HelperProtos, ProgTypeSpec, VerifierEnv};
use verifier_common::kernel::{self, Verdict};
use verifier_common::{load_corpus, CorpusProgram, Expect, MapDef};

struct Outcome {
    ours: Result<(), String>,
    kernel: Verdict,
}

fn run_both(p: &CorpusProgram) -> Result<Outcome, String> {
    let ty = ProgTypeSpec::by_name(&p.prog_type).ok_or("unknown type")?;
    let maps = p.map_infos();
    let protos = HelperProtos::standard();
    let mut env = VerifierEnv::new(&ty, &maps, &protos);
    env.allow_loops = !p.no_loops;
    env.log = false;
    let ours = verify(&p.insns, &env, None)
        .map(|_| ())
        .map_err(|e| e.to_string());
    let kernel = kernel::load_corpus_program(p)?;
    Ok(Outcome { ours, kernel })
}

fn first_line(s: &str) -> String {
    // The kernel's reason is the line before "processed ...".
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    lines[..i].last().map(|s| s.to_string()).unwrap_or_default()
}

#[test]
fn kernel_differential_corpus() {
    if let Err(why) = kernel::available() {
        println!("SKIPPED: kernel differential: {why}");
        return;
    }
    let corpus = load_corpus();
    let (mut both_ok, mut both_rej, mut stricter, mut skipped) = (0, 0, Vec::new(), 0);
    let mut violations = Vec::new();
    for p in &corpus {
        if kernel::kernel_type(&p.prog_type).is_none() || p.kernel_skip.is_some() {
            skipped += 1;
            continue;
        }
        let o = match run_both(p) {
            Ok(o) => o,
            Err(e) => {
                println!("{:<40} not loaded into the kernel: {e}", p.name);
                skipped += 1;
                continue;
            }
        };
        let k = match &o.kernel {
            Verdict::Accepted => "accept".to_string(),
            Verdict::Rejected { errno, log } => format!("reject ({}: {})", errno, first_line(log)),
        };
        let us = match &o.ours {
            Ok(()) => "accept".to_string(),
            Err(e) => format!("reject ({e})"),
        };
        println!("{:<40} ours: {us:<70} kernel: {k}", p.name);
        match (&o.ours, &o.kernel) {
            (Ok(()), Verdict::Accepted) => both_ok += 1,
            (Err(_), Verdict::Rejected { .. }) => both_rej += 1,
            (Err(e), Verdict::Accepted) => stricter.push(format!("{}: {e}", p.name)),
            (Ok(()), Verdict::Rejected { log, .. }) => violations.push(format!(
                "{}: accepted here, the kernel rejects it:\n{log}",
                p.name
            )),
        }
        if matches!(p.expect, Expect::Accept) && o.ours.is_err() {
            violations.push(format!("{}: corpus says accept", p.name));
        }
    }
    println!(
        "kernel differential (corpus): {both_ok} accepted by both, {both_rej} rejected by both, {} rejected only here, {} accepted only here, {skipped} not loadable into the kernel",
        stricter.len(),
        violations.len()
    );
    println!("rejected here but accepted by the kernel (allowed; stricter):");
    for s in &stricter {
        println!("  {s}");
    }
    assert!(violations.is_empty(), "{}", violations.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Generated programs
// ---------------------------------------------------------------------------------------------

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
}

const REGS: [u8; 8] = [0, 1, 2, 3, 4, 5, 7, 8];

/// A small random socket-filter program: straight-line ALU, stack and context accesses,
/// forward branches, map lookups with or without null checks, helper calls.
fn generate(seed: u64) -> CorpusProgram {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut v: Vec<Insn> = Vec::new();
    // Jumps are patched once the length is known: (index, wanted distance).
    let mut jumps: Vec<(usize, u64)> = Vec::new();
    v.push(Insn::new(0xbf, 6, 1, 0, 0)); // r6 = ctx
    let init = |v: &mut Vec<Insn>, r: &mut Rng, regs: &[u8]| {
        for &reg in regs {
            if r.below(12) != 0 {
                v.push(Insn::new(0xb7, reg, 0, 0, r.below(64) as i32));
            }
        }
    };
    init(&mut v, &mut r, &[0, 1, 2, 3, 4, 5, 7, 8]);
    let mut lddw_second = Vec::new();
    let n = 4 + r.below(14);
    if r.below(2) == 0 {
        for k in 1..=8 {
            v.push(Insn::new(0x7a, 10, 0, -8 * k, 0));
        }
    }
    let alu_ops = [
        0x07u8, 0x17, 0x27, 0x47, 0x57, 0x67, 0x77, 0xa7, 0xc7, 0x04, 0x24, 0x54, 0xb4, 0x37, 0x97,
    ];
    let alu_reg_ops = [
        0x0fu8, 0x1f, 0x2f, 0x4f, 0x5f, 0xaf, 0xbf, 0x0c, 0xbc, 0x3f, 0x9f,
    ];
    for _ in 0..n {
        let d = r.pick(&REGS);
        let s = r.pick(&[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 10]);
        match r.below(16) {
            0..=2 => {
                let op = r.pick(&alu_ops);
                let imm = if matches!(op, 0x67 | 0x77 | 0xc7) {
                    r.below(70) as i32
                } else {
                    r.below(300) as i32 - 100
                };
                v.push(Insn::new(op, d, 0, 0, imm));
            }
            3 | 4 => v.push(Insn::new(r.pick(&alu_reg_ops), d, s, 0, 0)),
            5 => {
                // stack store
                let sz = r.pick(&[(0x7au8, 8i16), (0x62, 4), (0x6a, 2), (0x72, 1)]);
                let off = -(r.below(72) as i16) - 1;
                let off = if r.below(10) != 0 {
                    off & !(sz.1 - 1)
                } else {
                    off
                };
                v.push(Insn::new(sz.0, 10, 0, off, r.below(3) as i32));
            }
            6 => {
                let sz = r.pick(&[0x7bu8, 0x63, 0x73]);
                let bytes = match sz {
                    0x7b => 8,
                    0x63 => 4,
                    _ => 1,
                };
                let off = (-(r.below(64) as i16) - 1) & !(bytes - 1);
                v.push(Insn::new(sz, 10, s, off, 0));
            }
            7 => {
                let sz = r.pick(&[(0x79u8, 8i16), (0x61, 4), (0x71, 1)]);
                let off = (-(r.below(64) as i16) - 1) & !(sz.1 - 1);
                v.push(Insn::new(sz.0, d, 10, off, 0));
            }
            8 => {
                // context load
                let sz = r.pick(&[(0x61u8, 4i16), (0x71, 1), (0x69, 2), (0x79, 8)]);
                let off = if r.below(8) != 0 {
                    r.pick(&[0i16, 4, 8, 16, 48, 52, 68])
                } else {
                    r.pick(&[76i16, 90, 200, 2])
                };
                v.push(Insn::new(sz.0, d, 6, off, 0));
            }
            9 | 10 => {
                // conditional forward jump
                let op = r.pick(&[
                    0x15u8, 0x25, 0x35, 0x45, 0x55, 0x65, 0x75, 0xa5, 0xb5, 0xc5, 0xd5, 0x1d, 0x2d,
                    0xad, 0x16, 0xa6,
                ]);
                let idx = v.len();
                if op & 0x08 != 0 {
                    v.push(Insn::new(op, d, s, 0, 0));
                } else {
                    v.push(Insn::new(op, d, 0, 0, r.below(80) as i32 - 10));
                }
                jumps.push((idx, 1 + r.below(6)));
            }
            11 => {
                // map lookup with a key on the stack, maybe null-checked, then a load
                v.push(Insn::new(0x62, 10, 0, -4, r.below(4) as i32));
                v.push(Insn::new(0xbf, 2, 10, 0, 0));
                v.push(Insn::new(0x07, 2, 0, 0, -4));
                v.push(Insn::new(0x18, 1, 1, 0, 0));
                lddw_second.push(v.len());
                v.push(Insn::new(0, 0, 0, 0, 0));
                v.push(Insn::new(0x85, 0, 0, 0, 1));
                if r.below(4) != 0 {
                    v.push(Insn::new(0x15, 0, 0, 1, 0));
                }
                let off = r.pick(&[0i16, 8, 12, 16, -8, 4]);
                v.push(Insn::new(r.pick(&[0x79u8, 0x61]), d, 0, off, 0));
                init(&mut v, &mut r, &[1, 2, 3, 4, 5]);
            }
            12 => {
                v.push(Insn::new(0x85, 0, 0, 0, r.pick(&[5, 7, 8, 14, 5, 7, 9999])));
                init(&mut v, &mut r, &[1, 2, 3, 4, 5]);
            }
            13 => {
                // stack pointer arithmetic then access
                v.push(Insn::new(0xbf, d, 10, 0, 0));
                v.push(Insn::new(0x07, d, 0, 0, -8 * (1 + r.below(5) as i32)));
                v.push(Insn::new(0x79, r.pick(&REGS), d, 0, 0));
            }
            14 => {
                // bounded variable index into the stack
                v.push(Insn::new(0x61, 9, 6, 0, 0));
                v.push(Insn::new(0x57, 9, 0, 0, r.pick(&[7, 8, 15, 24, 31, 32])));
                v.push(Insn::new(0xbf, d, 10, 0, 0));
                v.push(Insn::new(0x07, d, 0, 0, -32));
                v.push(Insn::new(0x0f, d, 9, 0, 0));
                v.push(Insn::new(0x71, r.pick(&REGS), d, 0, 0));
            }
            _ => v.push(Insn::new(0xb7, d, 0, 0, r.below(10) as i32)),
        }
    }
    if r.below(10) != 0 {
        v.push(Insn::new(0xb7, 0, 0, 0, r.below(3) as i32));
    }
    v.push(Insn::new(0x95, 0, 0, 0, 0));
    let len = v.len();
    for (idx, dist) in jumps {
        let max = (len - 1 - idx - 1) as u64;
        let mut d = dist.min(max);
        if lddw_second.contains(&(idx + 1 + d as usize)) {
            d -= 1;
        }
        v[idx].off = d as i16;
    }
    CorpusProgram {
        name: format!("gen{seed}"),
        prog_type: "socket_filter".into(),
        maps: vec![MapDef {
            map_type: bpfvfs_ebpf::verifier::MapType::ARRAY,
            key_size: 4,
            value_size: 16,
            max_entries: 4,
            flags: 0,
            spin_lock_off: None,
        }],
        expect: Expect::Accept,
        no_loops: false,
        kernel_skip: None,
        insns: v,
    }
}

#[test]
fn kernel_differential_generated() {
    if let Err(why) = kernel::available() {
        println!("SKIPPED: kernel differential: {why}");
        return;
    }
    let count: u64 = std::env::var("VERIFIER_GEN_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let (mut both_ok, mut both_rej, mut stricter) = (0, 0, 0);
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    let mut violations = Vec::new();
    for seed in 1..=count {
        let p = generate(seed);
        let o = run_both(&p).expect("kernel load");
        match (&o.ours, &o.kernel) {
            (Ok(()), Verdict::Accepted) => both_ok += 1,
            (Err(_), Verdict::Rejected { .. }) => both_rej += 1,
            (Err(e), Verdict::Accepted) => {
                stricter += 1;
                let reason = e.split_once(": ").map_or(e.as_str(), |x| x.1);
                let key: String = reason
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(60)
                    .collect();
                *reasons.entry(key).or_default() += 1;
            }
            (Ok(()), Verdict::Rejected { log, .. }) => {
                let dis = bpfvfs_ebpf::insn::disassemble(&p.insns).unwrap_or_default();
                violations.push(format!("seed {seed}: accepted here, rejected by the kernel:\n{dis}\nkernel log:\n{log}"));
            }
        }
    }
    println!(
        "kernel differential (generated, {count} programs): {both_ok} accepted by both, {both_rej} rejected by both, {stricter} rejected only here, {} accepted only here",
        violations.len()
    );
    for (r, n) in &reasons {
        println!("  stricter here: {n:>4} x {r}");
    }
    assert!(violations.is_empty(), "{}", violations.join("\n\n"));
}

/// Debug aid: `VERIFIER_GEN_DUMP=1` prints the kernel's reasons for generated programs.
#[test]
fn kernel_generated_reasons() {
    if std::env::var("VERIFIER_GEN_DUMP").is_err() || kernel::available().is_err() {
        return;
    }
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for seed in 1..=600 {
        let p = generate(seed);
        if let Ok(Outcome {
            kernel: Verdict::Rejected { log, .. },
            ..
        }) = run_both(&p)
        {
            let key: String = first_line(&log)
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            *reasons.entry(key).or_default() += 1;
        }
    }
    for (r, n) in reasons {
        println!("{n:>4} {r}");
    }
}
