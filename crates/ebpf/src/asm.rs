//! An assembler for the conformance suite's assembly syntax, written from the suite's format
//! description (no code from that project):
//!
//! ```text
//! # comment                      mov32 %r0, 0          lddw %r1, 0x1122334455667788
//! label:                         add %r0, %r1          ldxw %r0, [%r1+4]
//! jne %r0, 15, label             neg32 %r0             stxdw [%r10-8], %r1
//! jeq32 %r1, %r2, +3             be16 %r0              stb [%r1], 0x12
//! ja32 label                     movsx832 %r0, %r1     lock fetch add [%r10-8], %r1
//! call 5                         call local func       lock cmpxchg32 [%r10-8], %r1
//! call %r2                       exit
//! ```
//!
//! ALU and jump mnemonics take a `32` suffix for the 32-bit forms (a `64` suffix is accepted
//! for the 64-bit ones). 32-bit immediates may be written signed or as unsigned 32-bit values
//! (`0xffffffff` = -1). Jump targets are labels or signed slot offsets (`+3`, `-1`). A jump to
//! the undefined label `exit` goes to the next `exit` instruction.

use crate::insn::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, Instruction, JmpCond, LdImmKind, MemSize, Operand,
    Width,
};
use std::collections::HashMap;

/// An assembly error, with the 1-based line in the assembled text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct AsmError {
    pub line: usize,
    pub msg: String,
}

enum Target {
    Rel(i64),
    Label(String),
}

enum Pending {
    Done(Instruction),
    /// A jump or local call whose offset is resolved in the second pass.
    Branch {
        make: Box<dyn Fn(i64) -> Result<Instruction, String>>,
        target: Target,
        is_exit_label: bool,
    },
}

/// Assembles `src` into instruction slots.
pub fn assemble(src: &str) -> Result<Vec<Insn>, AsmError> {
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut items: Vec<(usize, usize, Pending)> = Vec::new(); // (line, slot, insn)
    let mut exits: Vec<usize> = Vec::new();
    let mut slot = 0usize;
    for (idx, raw_line) in src.lines().enumerate() {
        let lineno = idx + 1;
        let err = |msg: String| AsmError { line: lineno, msg };
        let mut line = raw_line.split('#').next().unwrap_or("").trim();
        // Leading labels.
        while let Some(colon) = line.find(':') {
            let name = line[..colon].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                break;
            }
            if labels.insert(name.to_string(), slot).is_some() {
                return Err(err(format!("label `{name}` defined twice")));
            }
            line = line[colon + 1..].trim();
        }
        if line.is_empty() {
            continue;
        }
        let p = parse_line(line).map_err(err)?;
        if let Pending::Done(Instruction::Exit) = p {
            exits.push(slot);
        }
        let n = match &p {
            Pending::Done(i) => i.slots(),
            Pending::Branch { .. } => 1,
        };
        items.push((lineno, slot, p));
        slot += n;
    }
    let mut out = Vec::with_capacity(slot);
    for (line, pc, p) in items {
        let insn = match p {
            Pending::Done(i) => i,
            Pending::Branch {
                make,
                target,
                is_exit_label,
            } => {
                let rel = match target {
                    Target::Rel(r) => r,
                    Target::Label(name) => {
                        let t = match labels.get(&name) {
                            Some(&t) => t,
                            None if is_exit_label => match exits.iter().find(|&&e| e >= pc) {
                                Some(&e) => e,
                                None => {
                                    return Err(AsmError {
                                        line,
                                        msg: "no exit instruction after jump to `exit`".into(),
                                    })
                                }
                            },
                            None => {
                                return Err(AsmError {
                                    line,
                                    msg: format!("undefined label `{name}`"),
                                })
                            }
                        };
                        t as i64 - pc as i64 - 1
                    }
                };
                make(rel).map_err(|msg| AsmError { line, msg })?
            }
        };
        out.extend(insn.encode());
    }
    Ok(out)
}

fn parse_reg(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let t = t.strip_prefix('%').unwrap_or(t);
    let n = t
        .strip_prefix('r')
        .ok_or_else(|| format!("expected a register, found `{s}`"))?;
    match n.parse::<u8>() {
        Ok(r) if r <= 10 => Ok(r),
        _ => Err(format!("invalid register `{s}`")),
    }
}

fn is_reg(s: &str) -> bool {
    parse_reg(s).is_ok()
}

/// A number: decimal or 0x-hex, optionally signed.
fn parse_num(s: &str) -> Result<i128, String> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        body.parse::<u64>()
    }
    .map_err(|_| format!("invalid number `{s}`"))? as i128;
    Ok(if neg { -v } else { v })
}

fn imm32(s: &str) -> Result<i32, String> {
    let v = parse_num(s)?;
    if (i32::MIN as i128..=u32::MAX as i128).contains(&v) {
        Ok(v as i64 as u32 as i32)
    } else {
        Err(format!("immediate `{s}` does not fit in 32 bits"))
    }
}

fn off16(v: i128, what: &str) -> Result<i16, String> {
    i16::try_from(v).map_err(|_| format!("{what} {v} does not fit in 16 bits"))
}

/// `[%rN]`, `[%rN+off]`, `[%rN-off]`.
fn parse_mem(s: &str) -> Result<(u8, i16), String> {
    let t = s.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| format!("expected a memory operand, found `{s}`"))?;
    let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    let split = inner.find(['+', '-']);
    let (r, off) = match split {
        Some(i) => (&inner[..i], off16(parse_num(&inner[i..])?, "offset")?),
        None => (&inner[..], 0),
    };
    Ok((parse_reg(r)?, off))
}

fn parse_target(s: &str) -> Target {
    let t = s.trim();
    match parse_num(t) {
        Ok(v) => Target::Rel(v as i64),
        Err(_) => Target::Label(t.to_string()),
    }
}

fn operands(s: &str) -> Vec<&str> {
    if s.trim().is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::trim).collect()
    }
}

fn want(ops: &[&str], n: usize, m: &str) -> Result<(), String> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(format!("`{m}` takes {n} operand(s), found {}", ops.len()))
    }
}

/// Splits a mnemonic into base and width suffix.
fn width_of(m: &str) -> (&str, Width) {
    if let Some(b) = m.strip_suffix("32") {
        (b, Width::W32)
    } else if let Some(b) = m.strip_suffix("64") {
        (b, Width::W64)
    } else {
        (m, Width::W64)
    }
}

fn size_of(s: &str) -> Option<MemSize> {
    Some(match s {
        "b" => MemSize::B,
        "h" => MemSize::H,
        "w" => MemSize::W,
        "dw" => MemSize::DW,
        _ => return None,
    })
}

fn alu_op(b: &str) -> Option<AluOp> {
    Some(match b {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "mov" => AluOp::Mov,
        "arsh" => AluOp::Arsh,
        _ => return None,
    })
}

fn jmp_cond(b: &str) -> Option<JmpCond> {
    Some(match b {
        "jeq" => JmpCond::Eq,
        "jne" => JmpCond::Ne,
        "jgt" => JmpCond::Gt,
        "jge" => JmpCond::Ge,
        "jlt" => JmpCond::Lt,
        "jle" => JmpCond::Le,
        "jset" => JmpCond::Set,
        "jsgt" => JmpCond::Sgt,
        "jsge" => JmpCond::Sge,
        "jslt" => JmpCond::Slt,
        "jsle" => JmpCond::Sle,
        _ => return None,
    })
}

fn parse_line(line: &str) -> Result<Pending, String> {
    let (m, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let m = m.to_ascii_lowercase();
    let ops = operands(rest);
    let done = |i| Ok(Pending::Done(i));

    if m == "exit" {
        want(&ops, 0, &m)?;
        return done(Instruction::Exit);
    }
    if m == "lock" {
        return parse_lock(rest);
    }
    if m == "call" || m == "callx" {
        let arg = rest.trim();
        if let Some(l) = arg.strip_prefix("local") {
            let target = parse_target(l);
            return Ok(Pending::Branch {
                make: Box::new(|rel| {
                    let rel =
                        i32::try_from(rel).map_err(|_| "call offset out of range".to_string())?;
                    Ok(Instruction::Call(CallTarget::Local(rel)))
                }),
                target,
                is_exit_label: false,
            });
        }
        if is_reg(arg) {
            return done(Instruction::Call(CallTarget::Reg(parse_reg(arg)?)));
        }
        return done(Instruction::Call(CallTarget::Helper(imm32(arg)?)));
    }
    if m == "ja" || m == "ja32" || m == "gotol" {
        want(&ops, 1, &m)?;
        let long = m != "ja";
        let target = parse_target(ops[0]);
        let is_exit_label = matches!(&target, Target::Label(l) if l == "exit");
        return Ok(Pending::Branch {
            make: Box::new(move |rel| {
                if long {
                    let off =
                        i32::try_from(rel).map_err(|_| "jump offset out of range".to_string())?;
                    Ok(Instruction::Ja { off, long })
                } else {
                    Ok(Instruction::Ja {
                        off: off16(rel as i128, "jump offset")? as i32,
                        long,
                    })
                }
            }),
            target,
            is_exit_label,
        });
    }
    if m == "lddw" {
        want(&ops, 2, &m)?;
        let dst = parse_reg(ops[0])?;
        let v = parse_num(ops[1])?;
        if !(i64::MIN as i128..=u64::MAX as i128).contains(&v) {
            return Err(format!("immediate `{}` does not fit in 64 bits", ops[1]));
        }
        let v = v as i64 as u64;
        return done(Instruction::LdImm64 {
            dst,
            kind: LdImmKind::Imm64,
            imm: v as u32 as i32,
            next_imm: (v >> 32) as u32 as i32,
        });
    }
    if let Some(bits) = m.strip_prefix("movsx") {
        want(&ops, 2, &m)?;
        let (b, width) = match bits {
            "832" => (8, Width::W32),
            "1632" => (16, Width::W32),
            "864" => (8, Width::W64),
            "1664" => (16, Width::W64),
            "3264" => (32, Width::W64),
            _ => return Err(format!("unknown mnemonic `{m}`")),
        };
        return done(Instruction::MovSx {
            width,
            dst: parse_reg(ops[0])?,
            src: parse_reg(ops[1])?,
            bits: b,
        });
    }
    for (prefix, kind) in [
        ("bswap", Endian::Swap),
        ("swap", Endian::Swap),
        ("be", Endian::ToBe),
        ("le", Endian::ToLe),
    ] {
        if let Some(bits) = m.strip_prefix(prefix) {
            if let Ok(bits @ (16 | 32 | 64)) = bits.parse::<u8>() {
                want(&ops, 1, &m)?;
                return done(Instruction::End {
                    kind,
                    bits,
                    dst: parse_reg(ops[0])?,
                });
            }
        }
    }
    if let Some(sz) = m.strip_prefix("ldxs").and_then(size_of) {
        want(&ops, 2, &m)?;
        if sz == MemSize::DW {
            return Err("ldxsdw does not exist".into());
        }
        let (src, off) = parse_mem(ops[1])?;
        return done(Instruction::Ldx {
            size: sz,
            signed: true,
            dst: parse_reg(ops[0])?,
            src,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("ldx").and_then(size_of) {
        want(&ops, 2, &m)?;
        let (src, off) = parse_mem(ops[1])?;
        return done(Instruction::Ldx {
            size: sz,
            signed: false,
            dst: parse_reg(ops[0])?,
            src,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("stx").and_then(size_of) {
        want(&ops, 2, &m)?;
        let (dst, off) = parse_mem(ops[0])?;
        return done(Instruction::Stx {
            size: sz,
            dst,
            src: parse_reg(ops[1])?,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("st").and_then(size_of) {
        want(&ops, 2, &m)?;
        let (dst, off) = parse_mem(ops[0])?;
        return done(Instruction::St {
            size: sz,
            dst,
            off,
            imm: imm32(ops[1])?,
        });
    }
    let (base, width) = width_of(&m);
    if base == "neg" {
        want(&ops, 1, &m)?;
        return done(Instruction::Neg {
            width,
            dst: parse_reg(ops[0])?,
        });
    }
    if let Some(op) = alu_op(base) {
        want(&ops, 2, &m)?;
        let dst = parse_reg(ops[0])?;
        let src = if is_reg(ops[1]) {
            Operand::Reg(parse_reg(ops[1])?)
        } else {
            Operand::Imm(imm32(ops[1])?)
        };
        return done(Instruction::Alu {
            width,
            op,
            dst,
            src,
        });
    }
    if let Some(cond) = jmp_cond(base) {
        want(&ops, 3, &m)?;
        let dst = parse_reg(ops[0])?;
        let src = if is_reg(ops[1]) {
            Operand::Reg(parse_reg(ops[1])?)
        } else {
            Operand::Imm(imm32(ops[1])?)
        };
        let target = parse_target(ops[2]);
        let is_exit_label = matches!(&target, Target::Label(l) if l == "exit");
        return Ok(Pending::Branch {
            make: Box::new(move |rel| {
                Ok(Instruction::Jmp {
                    width,
                    cond,
                    dst,
                    src,
                    off: off16(rel as i128, "jump offset")?,
                })
            }),
            target,
            is_exit_label,
        });
    }
    Err(format!("unknown mnemonic `{m}`"))
}

/// `lock [fetch] OP[32|64] [%rD+off], %rS`.
fn parse_lock(rest: &str) -> Result<Pending, String> {
    let mut words = rest.splitn(2, char::is_whitespace);
    let mut m = words.next().unwrap_or("").to_ascii_lowercase();
    let mut tail = words.next().unwrap_or("").trim().to_string();
    let mut fetch = false;
    if m == "fetch" {
        fetch = true;
        let mut w = tail.splitn(2, char::is_whitespace);
        m = w.next().unwrap_or("").to_ascii_lowercase();
        tail = w.next().unwrap_or("").trim().to_string();
    }
    let (base, width) = width_of(&m);
    let op = match base {
        "add" => AtomicOp::Add,
        "or" => AtomicOp::Or,
        "and" => AtomicOp::And,
        "xor" => AtomicOp::Xor,
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::CmpXchg,
        _ => return Err(format!("unknown atomic operation `{m}`")),
    };
    if matches!(op, AtomicOp::Xchg | AtomicOp::CmpXchg) {
        fetch = true;
    }
    let ops = operands(&tail);
    want(&ops, 2, "lock")?;
    let (dst, off) = parse_mem(ops[0])?;
    let size = if width == Width::W32 {
        MemSize::W
    } else {
        MemSize::DW
    };
    Ok(Pending::Done(Instruction::Atomic {
        size,
        op,
        fetch,
        dst,
        src: parse_reg(ops[1])?,
        off,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::decode;

    fn asm1(s: &str) -> Instruction {
        decode(&assemble(s).unwrap()).unwrap()[0].1
    }

    #[test]
    fn basic_forms() {
        assert_eq!(
            asm1("mov32 %r0, 0"),
            Instruction::Alu {
                width: Width::W32,
                op: AluOp::Mov,
                dst: 0,
                src: Operand::Imm(0)
            }
        );
        assert_eq!(
            asm1("add %r0, %r1"),
            Instruction::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 0,
                src: Operand::Reg(1)
            }
        );
        assert_eq!(
            asm1("mov %r0, 0xffffffff"),
            Instruction::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: 0,
                src: Operand::Imm(-1)
            }
        );
        assert_eq!(
            asm1("ldxb %r0, [%r1+0x2]"),
            Instruction::Ldx {
                size: MemSize::B,
                signed: false,
                dst: 0,
                src: 1,
                off: 2
            }
        );
        assert_eq!(
            asm1("stxdw [%r10-8], %r1"),
            Instruction::Stx {
                size: MemSize::DW,
                dst: 10,
                src: 1,
                off: -8
            }
        );
        assert_eq!(
            asm1("sth [%r0], 0x1234"),
            Instruction::St {
                size: MemSize::H,
                dst: 0,
                off: 0,
                imm: 0x1234
            }
        );
        assert_eq!(
            asm1("lock fetch add32 [%r10-4], %r1"),
            Instruction::Atomic {
                size: MemSize::W,
                op: AtomicOp::Add,
                fetch: true,
                dst: 10,
                src: 1,
                off: -4
            }
        );
        assert_eq!(asm1("call %r2"), Instruction::Call(CallTarget::Reg(2)));
        assert_eq!(asm1("call 5"), Instruction::Call(CallTarget::Helper(5)));
        assert_eq!(
            asm1("swap16 %r3"),
            Instruction::End {
                kind: Endian::Swap,
                bits: 16,
                dst: 3
            }
        );
        assert_eq!(
            asm1("movsx1664 %r3, %r4"),
            Instruction::MovSx {
                width: Width::W64,
                dst: 3,
                src: 4,
                bits: 16
            }
        );
        let s = assemble("lddw %r0, 0x1122334455667788\nexit").unwrap();
        assert_eq!(
            s.iter().map(|i| i.to_u64()).collect::<Vec<_>>(),
            [0x5566778800000018, 0x1122334400000000, 0x95]
        );
    }

    #[test]
    fn labels_and_exit() {
        let s = assemble("ja L2\nL1:\nmov %r2, 0\nexit\nL2: mov %r0, 0\nja L1").unwrap();
        let d = decode(&s).unwrap();
        assert_eq!(
            d[0].1,
            Instruction::Ja {
                off: 2,
                long: false
            }
        );
        assert_eq!(
            d[4].1,
            Instruction::Ja {
                off: -4,
                long: false
            }
        );
        let s = assemble("jeq %r1, 1, exit\nmov %r0, 0\nexit").unwrap();
        assert_eq!(decode(&s).unwrap()[0].1.branch_target(0), Some(2));
        let e = assemble("mov %r0, 1\nja nowhere\nexit").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(assemble("mov %r11, 1").is_err());
        assert!(assemble("frob %r1").is_err());
    }
}
