//! Structural checks and static facts about the control-flow graph: subprogram boundaries,
//! jump ranges, reachability, optional back-edge rejection, prune points and register
//! liveness.

use crate::insn::{CallTarget, Instruction, LdImmKind};

/// A structural rejection: instruction and message.
pub type CfgError = (usize, String);

/// Registers as a bit set (bit n = rn).
pub type RegSet = u16;

pub const CALLER_SAVED: RegSet = 0b11_1111; // r0-r5
pub const CALLEE_SAVED: RegSet = 0b11_1100_0000; // r6-r9

pub struct Cfg {
    /// Start of each subprogram, ascending; `subprogs[0] == 0`.
    pub subprogs: Vec<usize>,
    /// Subprogram index of each slot.
    pub subprog_of: Vec<usize>,
    pub prune_point: Vec<bool>,
    /// Registers live on entry to each instruction.
    pub live_in: Vec<RegSet>,
    /// Static call edges: (call insn, callee subprog), including callback references.
    pub calls: Vec<(usize, usize)>,
}

fn succs(pc: usize, i: &Instruction) -> (Option<usize>, Option<i64>) {
    let next = pc + i.slots();
    match *i {
        Instruction::Exit => (None, None),
        Instruction::Ja { off, .. } => (None, Some(pc as i64 + 1 + off as i64)),
        Instruction::Jmp { off, .. } => (Some(next), Some(pc as i64 + 1 + off as i64)),
        _ => (Some(next), None),
    }
}

/// Registers an instruction reads and writes.
pub(crate) fn uses_defs(i: &Instruction) -> (RegSet, RegSet) {
    use Instruction::*;
    let b = |r: u8| 1u16 << r;
    match *i {
        Alu { op, dst, src, .. } => {
            let s = match src {
                crate::insn::Operand::Reg(r) => b(r),
                _ => 0,
            };
            let d = if op == crate::insn::AluOp::Mov {
                0
            } else {
                b(dst)
            };
            (s | d, b(dst))
        }
        Neg { dst, .. } | End { dst, .. } => (b(dst), b(dst)),
        MovSx { dst, src, .. } => (b(src), b(dst)),
        LdImm64 { dst, .. } => (0, b(dst)),
        LdAbs { .. } => (b(6), CALLER_SAVED),
        LdInd { src, .. } => (b(6) | b(src), CALLER_SAVED),
        Ldx { dst, src, .. } => (b(src), b(dst)),
        St { dst, .. } => (b(dst), 0),
        Stx { dst, src, .. } => (b(dst) | b(src), 0),
        Atomic {
            dst,
            src,
            op,
            fetch,
            ..
        } => {
            let mut u = b(dst) | b(src);
            let mut d = 0;
            if op == crate::insn::AtomicOp::CmpXchg {
                u |= b(0);
                d = b(0);
            } else if fetch {
                d = b(src);
            }
            (u, d)
        }
        Ja { .. } => (0, 0),
        Jmp { dst, src, .. } => {
            let s = match src {
                crate::insn::Operand::Reg(r) => b(r),
                _ => 0,
            };
            (b(dst) | s, 0)
        }
        Call(CallTarget::Reg(r)) => (0b11_1110 | b(r), CALLER_SAVED),
        Call(_) => (0b11_1110, CALLER_SAVED),
        Exit => (b(0), 0),
    }
}

impl Cfg {
    /// `decoded[pc]` is the instruction starting at slot `pc` (`None` for the second slot of
    /// `lddw`).
    pub fn build(decoded: &[Option<Instruction>], allow_loops: bool) -> Result<Cfg, CfgError> {
        let n = decoded.len();
        let mut starts = vec![0usize];
        let mut calls = Vec::new();
        for (pc, i) in decoded.iter().enumerate() {
            let Some(i) = i else { continue };
            let target = match *i {
                Instruction::Call(CallTarget::Local(off)) => Some(pc as i64 + 1 + off as i64),
                Instruction::LdImm64 {
                    kind: LdImmKind::Func,
                    imm,
                    ..
                } => Some(pc as i64 + 1 + imm as i64),
                _ => None,
            };
            if let Some(t) = target {
                if t < 0 || t >= n as i64 || decoded[t as usize].is_none() {
                    return Err((pc, "call to invalid destination".into()));
                }
                starts.push(t as usize);
                calls.push((pc, t as usize));
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut subprog_of = vec![0; n];
        for (k, w) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(n);
            for s in subprog_of.iter_mut().take(end).skip(*w) {
                *s = k;
            }
        }
        let calls = calls
            .into_iter()
            .map(|(pc, t)| (pc, subprog_of[t]))
            .collect();

        // Jump ranges and subprogram ends.
        for (pc, i) in decoded.iter().enumerate() {
            let Some(i) = i else { continue };
            let sp = subprog_of[pc];
            let (lo, hi) = (starts[sp], starts.get(sp + 1).copied().unwrap_or(n));
            if let (_, Some(t)) = succs(pc, i) {
                if t < lo as i64 || t >= hi as i64 {
                    return Err((pc, format!("jump out of range from insn {pc} to {t}")));
                }
                if decoded[t as usize].is_none() {
                    return Err((
                        pc,
                        format!("jump into the middle of ldimm64 insn {}", t - 1),
                    ));
                }
            }
        }
        for (k, _) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(n);
            let last = (0..end).rev().find(|&p| decoded[p].is_some()).unwrap_or(0);
            if !matches!(
                decoded[last],
                Some(Instruction::Exit | Instruction::Ja { .. })
            ) {
                return Err((last, "last insn is not an exit or jmp".into()));
            }
        }

        // Depth-first walk from the entry, following calls into their callees.
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut color = vec![WHITE; n];
        let mut prune_point = vec![false; n];
        for &s in &starts {
            prune_point[s] = true;
        }
        let mut roots = vec![0usize];
        let edges = |pc: usize, roots: &mut Vec<usize>| -> Vec<usize> {
            let i = decoded[pc].as_ref().expect("instruction start");
            let mut v = Vec::new();
            let (f, t) = succs(pc, i);
            if let Some(f) = f {
                v.push(f);
            }
            if let Some(t) = t {
                v.push(t as usize);
            }
            match *i {
                Instruction::Call(CallTarget::Local(off)) => {
                    roots.push((pc as i64 + 1 + off as i64) as usize)
                }
                Instruction::LdImm64 {
                    kind: LdImmKind::Func,
                    imm,
                    ..
                } => roots.push((pc as i64 + 1 + imm as i64) as usize),
                _ => {}
            }
            v
        };
        let mut stack: Vec<(usize, Vec<usize>, usize)> = Vec::new();
        while let Some(root) = roots.pop() {
            if color[root] != WHITE {
                continue;
            }
            color[root] = GREY;
            let e = edges(root, &mut roots);
            stack.push((root, e, 0));
            while let Some(top) = stack.last_mut() {
                let pc = top.0;
                if top.2 < top.1.len() {
                    let w = top.1[top.2];
                    top.2 += 1;
                    if w >= n {
                        return Err((pc, format!("jump out of range from insn {pc} to {w}")));
                    }
                    match color[w] {
                        WHITE => {
                            color[w] = GREY;
                            let e = edges(w, &mut roots);
                            stack.push((w, e, 0));
                        }
                        GREY => {
                            if !allow_loops {
                                return Err((pc, format!("back-edge from insn {pc} to {w}")));
                            }
                            prune_point[w] = true;
                        }
                        _ => {}
                    }
                } else {
                    color[pc] = BLACK;
                    stack.pop();
                }
            }
        }
        for pc in 0..n {
            if decoded[pc].is_some() && color[pc] == WHITE {
                return Err((pc, format!("unreachable insn {pc}")));
            }
        }

        // Prune points: jump targets, fall-through of conditional jumps, calls.
        for (pc, i) in decoded.iter().enumerate() {
            let Some(i) = i else { continue };
            match *i {
                Instruction::Jmp { .. } => {
                    let (f, t) = succs(pc, i);
                    prune_point[t.unwrap() as usize] = true;
                    prune_point[f.unwrap()] = true;
                }
                Instruction::Ja { .. } => {
                    let (_, t) = succs(pc, i);
                    prune_point[t.unwrap() as usize] = true;
                }
                Instruction::Call(_) => {
                    prune_point[pc] = true;
                    if pc + 1 < n {
                        prune_point[pc + 1] = true;
                    }
                }
                _ => {}
            }
        }

        // Liveness: backward dataflow inside each subprogram.
        let mut live_in: Vec<RegSet> = vec![0; n];
        let mut changed = true;
        while changed {
            changed = false;
            for pc in (0..n).rev() {
                let Some(i) = decoded[pc].as_ref() else {
                    continue;
                };
                let (f, t) = succs(pc, i);
                let mut out: RegSet = 0;
                if let Some(f) = f {
                    if f < n {
                        out |= live_in[f];
                    }
                }
                if let Some(t) = t {
                    out |= live_in[t as usize];
                }
                let (u, d) = uses_defs(i);
                let v = u | (out & !d) | (1 << 10);
                if v != live_in[pc] {
                    live_in[pc] = v;
                    changed = true;
                }
            }
        }

        Ok(Cfg {
            subprogs: starts,
            subprog_of,
            prune_point,
            live_in,
            calls,
        })
    }

    /// Registers of a caller frame that matter while its callee at `callsite` runs.
    pub fn caller_live(&self, callsite: usize, callback: bool) -> RegSet {
        if callback {
            self.live_in[callsite]
        } else {
            self.live_in.get(callsite + 1).copied().unwrap_or(0) & (CALLEE_SAVED | (1 << 10))
        }
    }
}
