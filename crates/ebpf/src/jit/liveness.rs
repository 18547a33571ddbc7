//! Which of r1-r5 a program may still read after each helper call, so a direct helper call
//! ([`crate::helpers::DirectHelper`]) saves only those around the native call.
//!
//! Both engines keep r1-r5 across helper calls (the interpreter simply does not touch them),
//! and the JIT must give the same results, verified program or not. Saving all five around
//! every call costs ten stack operations; a register that every path writes before reading it
//! (the common case: arguments are set up right before each call) needs no saving at all.
//!
//! Classic backward liveness over the whole program's control-flow graph (jumps may go
//! anywhere, as unverified programs run too), iterated to a fixed point. It is conservative
//! wherever it is not exact: uses are over-approximated (a local call or `callx` reads every
//! register; so does an `exit` when the program has local calls, since the caller resumes after
//! it), definitions under-approximated (atomics and calls define nothing but a helper's r0).

use crate::interp::{Code, Op};

/// Bit `i` = BPF register `ri`.
pub(crate) type RegSet = u16;

const ALL: RegSet = 0x7ff;
/// r1-r5.
pub(crate) const ARGS: RegSet = 0b11_1110;

fn bit(r: u8) -> RegSet {
    1 << (r & 15)
}

/// Registers `r1..=r{n}`.
pub(crate) fn first_args(n: u8) -> RegSet {
    ARGS & ((1 << (n.min(5) + 1)) - 1)
}

/// `live_out[pc]`: registers possibly read after instruction `pc` before being written.
/// `call_uses(pc, id)` gives the registers a static helper call reads; every helper call
/// defines r0 (a trampoline call preserves r1-r5; a direct call saves what this says is live).
pub(crate) fn live_out(ops: &[Op], call_uses: impl Fn(u64) -> RegSet) -> Vec<RegSet> {
    use Code::*;
    let n = ops.len();
    let has_calls = ops.iter().any(|o| matches!(o.code, CallLocal | CallX));
    let exit_uses = if has_calls { ALL } else { bit(0) };
    // (uses, defs, successors) of each op.
    let mut uses = vec![0 as RegSet; n];
    let mut defs = vec![0 as RegSet; n];
    let mut succ: Vec<[Option<usize>; 2]> = vec![[None, None]; n];
    for (pc, op) in ops.iter().enumerate() {
        let (d, s) = (bit(op.dst), bit(op.src));
        let next = (pc + 1 < n).then_some(pc + 1);
        let target = Some(op.off as usize).filter(|&t| t < n);
        let (u, df, sc) = match op.code {
            Mov64I | Mov32I | LdImm64 => (0, d, [next, None]),
            Mov64R | Mov32R | MovSx64B | MovSx64H | MovSx64W | MovSx32B | MovSx32H => {
                (s, d, [next, None])
            }
            Neg64 | Neg32 | Le16 | Le32 | Le64 | Be16 | Be32 | Be64 | Swap16 | Swap32 | Swap64 => {
                (d, d, [next, None])
            }
            Add64I | Sub64I | Mul64I | Div64I | SDiv64I | Mod64I | SMod64I | Or64I | And64I
            | Xor64I | Lsh64I | Rsh64I | Arsh64I | Add32I | Sub32I | Mul32I | Div32I | SDiv32I
            | Mod32I | SMod32I | Or32I | And32I | Xor32I | Lsh32I | Rsh32I | Arsh32I => {
                (d, d, [next, None])
            }
            Add64R | Sub64R | Mul64R | Div64R | SDiv64R | Mod64R | SMod64R | Or64R | And64R
            | Xor64R | Lsh64R | Rsh64R | Arsh64R | Add32R | Sub32R | Mul32R | Div32R | SDiv32R
            | Mod32R | SMod32R | Or32R | And32R | Xor32R | Lsh32R | Rsh32R | Arsh32R => {
                (d | s, d, [next, None])
            }
            LdImm64Hi => (0, 0, [next, None]),
            Ldx8 | Ldx16 | Ldx32 | Ldx64 | Ldxs8 | Ldxs16 | Ldxs32 => (s, d, [next, None]),
            St8 | St16 | St32 | St64 => (d, 0, [next, None]),
            Stx8 | Stx16 | Stx32 | Stx64 => (d | s, 0, [next, None]),
            // Atomics: read base, operand and r0 (cmpxchg); what they write is left out.
            AAdd32 | AOr32 | AAnd32 | AXor32 | AFAdd32 | AFOr32 | AFAnd32 | AFXor32 | Xchg32
            | CmpXchg32 | AAdd64 | AOr64 | AAnd64 | AXor64 | AFAdd64 | AFOr64 | AFAnd64
            | AFXor64 | Xchg64 | CmpXchg64 => (d | s | bit(0), 0, [next, None]),
            Ja => (0, 0, [target, None]),
            Jeq64I | Jne64I | Jgt64I | Jge64I | Jlt64I | Jle64I | Jset64I | Jsgt64I | Jsge64I
            | Jslt64I | Jsle64I | Jeq32I | Jne32I | Jgt32I | Jge32I | Jlt32I | Jle32I | Jset32I
            | Jsgt32I | Jsge32I | Jslt32I | Jsle32I => (d, 0, [next, target]),
            Jeq64R | Jne64R | Jgt64R | Jge64R | Jlt64R | Jle64R | Jset64R | Jsgt64R | Jsge64R
            | Jslt64R | Jsle64R | Jeq32R | Jne32R | Jgt32R | Jge32R | Jlt32R | Jle32R | Jset32R
            | Jsgt32R | Jsge32R | Jslt32R | Jsle32R => (d | s, 0, [next, target]),
            Call => (call_uses(op.imm), bit(0), [next, None]),
            CallLocal | CallX => (ALL, 0, [next, None]),
            Exit => (exit_uses, 0, [None, None]),
        };
        uses[pc] = u;
        defs[pc] = df;
        succ[pc] = sc;
    }
    // Backward passes until nothing changes (loops need a few).
    let mut live_in = vec![0 as RegSet; n];
    let mut out = vec![0 as RegSet; n];
    loop {
        let mut changed = false;
        for pc in (0..n).rev() {
            let o = succ[pc]
                .iter()
                .flatten()
                .fold(0, |acc, &t| acc | live_in[t]);
            let i = uses[pc] | (o & !defs[pc]);
            if o != out[pc] || i != live_in[pc] {
                out[pc] = o;
                live_in[pc] = i;
                changed = true;
            }
        }
        if !changed {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use crate::interp::{LoadOptions, Program};

    fn live(src: &str, args: u8) -> Vec<RegSet> {
        let p = Program::load(&assemble(src).unwrap(), LoadOptions::default()).unwrap();
        live_out(p.ops(), |_| first_args(args))
    }

    #[test]
    fn args_set_up_before_each_call_are_dead_after_it() {
        let l = live(
            "mov %r6, 10
         loop:
             mov %r1, %r6
             mov %r2, %r10
             add %r2, -4
             call 1
             sub %r6, 1
             jne %r6, 0, loop
             exit",
            2,
        );
        assert_eq!(l[4] & ARGS, 0);
        // With all five read by the call, r3-r5 stay live around the loop.
        let l = live(
            "mov %r6, 10
         loop:
             mov %r1, %r6
             mov %r2, %r10
             call 1
             sub %r6, 1
             jne %r6, 0, loop
             exit",
            5,
        );
        assert_eq!(l[3] & ARGS, first_args(5) & !first_args(2));
    }

    #[test]
    fn reads_after_the_call_keep_registers_live() {
        let l = live("mov %r1, 1\nmov %r3, 7\ncall 1\nmov %r0, %r3\nexit", 1);
        assert_eq!(l[2] & ARGS, bit(3));
        // Through a branch.
        let l = live(
            "mov %r4, 7\ncall 1\njeq %r0, 0, out\nmov %r4, 1\nout:\nmov %r0, %r4\nexit",
            0,
        );
        assert_eq!(l[1] & ARGS, bit(4));
    }

    #[test]
    fn local_calls_make_everything_live() {
        let l = live("call 1\ncall local f\nexit\nf:\nmov %r0, 0\nexit", 0);
        assert_eq!(l[0] & ARGS, ARGS);
        // The subprogram's exit returns to a caller that may read r1-r5.
        let l = live("call local f\nexit\nf:\ncall 1\nexit", 0);
        assert_eq!(l[2] & ARGS, ARGS);
    }
}
