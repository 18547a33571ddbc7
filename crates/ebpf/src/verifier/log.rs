//! Kernel-style rendering of registers and states for the verifier log, and the log buffer
//! itself (which can be rewound to a saved position when a path is abandoned, so that the
//! log ends up showing the rejected path).

use super::reg::{Reg, RegType};
use super::state::{Frame, Slot, SlotByte, State};
use super::MapInfo;
use std::fmt::Write;

/// Log buffer with rewind; keeps at most `cap` bytes (older text is dropped).
pub struct Log {
    pub enabled: bool,
    buf: String,
    /// Logical length of what was dropped from the front.
    dropped: usize,
    cap: usize,
}

impl Log {
    pub fn new(enabled: bool) -> Log {
        Log {
            enabled,
            buf: String::new(),
            dropped: 0,
            cap: 16 << 20,
        }
    }

    pub fn pos(&self) -> usize {
        self.dropped + self.buf.len()
    }

    pub fn rewind(&mut self, pos: usize) {
        if pos >= self.dropped {
            self.buf.truncate(pos - self.dropped);
        } else {
            self.buf.clear();
            self.dropped = pos;
        }
    }

    pub fn line(&mut self, s: &str) {
        if !self.enabled {
            return;
        }
        self.buf.push_str(s);
        self.buf.push('\n');
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap / 2;
            let cut = (cut..self.buf.len())
                .find(|&i| self.buf.is_char_boundary(i))
                .unwrap_or(cut);
            self.buf.drain(..cut);
            self.dropped += cut;
        }
    }

    pub fn into_string(self) -> String {
        self.buf
    }

    pub fn as_str(&self) -> &str {
        &self.buf
    }
}

fn scalar_body(r: &Reg, out: &mut String) {
    let mut parts: Vec<String> = Vec::new();
    if r.id != 0 {
        parts.push(format!("id={}", r.id));
    }
    if r.smin != i64::MIN {
        parts.push(format!("smin={}", r.smin));
    }
    if r.smax != i64::MAX {
        parts.push(format!("smax={}", r.smax));
    }
    if r.umin != 0 {
        parts.push(format!("umin={}", r.umin));
    }
    if r.umax != u64::MAX {
        parts.push(format!("umax={}", r.umax));
    }
    if !r.var.is_unknown() {
        parts.push(format!("var_off={}", r.var));
    }
    out.push_str(&parts.join(","));
}

fn map_desc(maps: &[MapInfo], idx: u32) -> String {
    match maps.get(idx as usize) {
        Some(m) => format!("map={},ks={},vs={}", m.name, m.key_size, m.value_size),
        None => format!("map=#{idx}"),
    }
}

/// One register, as the kernel prints it (`1`, `scalar()`, `ctx()`, `fp-8`, `map_value(...)`).
pub fn fmt_reg(r: &Reg, maps: &[MapInfo]) -> String {
    let mut s = String::new();
    match r.ty {
        RegType::NotInit => s.push('?'),
        RegType::Scalar => {
            if let Some(v) = r.const_value() {
                let _ = write!(s, "{}", v as i64);
            } else {
                s.push_str("scalar(");
                scalar_body(r, &mut s);
                s.push(')');
            }
        }
        RegType::Stack if r.var.is_const() => {
            if r.frame != 0 {
                let _ = write!(s, "fp[{}]", r.frame);
            } else {
                s.push_str("fp");
            }
            let _ = write!(s, "{}", r.off as i64 + r.var.value as i64);
        }
        _ => {
            s.push_str(r.ty.name());
            s.push('(');
            let mut parts: Vec<String> = Vec::new();
            if r.id != 0 && (r.ty.maybe_null() || r.ty.is_pkt_any()) {
                parts.push(format!("id={}", r.id));
            }
            if r.ref_id != 0 {
                parts.push(format!("ref_obj_id={}", r.ref_id));
            }
            match r.ty {
                RegType::MapValue | RegType::MapValueOrNull | RegType::MapPtr => {
                    parts.push(map_desc(maps, r.aux))
                }
                RegType::Mem | RegType::MemOrNull => parts.push(format!("sz={}", r.mem_size)),
                RegType::Stack => parts.push(format!("frame={}", r.frame)),
                RegType::Func => parts.push(format!("insn={}", r.aux)),
                _ => {}
            }
            if r.off != 0 {
                parts.push(format!("off={}", r.off));
            }
            if r.ty.is_pkt() {
                parts.push(format!("r={}", r.range));
            }
            if !r.var.is_const() {
                let mut b = String::new();
                scalar_body(&Reg { id: 0, ..r.clone() }, &mut b);
                parts.push(b);
            } else if r.var.value != 0 {
                parts.push(format!("var_off={}", r.var));
            }
            s.push_str(&parts.join(","));
            s.push(')');
        }
    }
    s
}

fn fmt_slot_bytes(b: &[SlotByte; 8]) -> String {
    b.iter()
        .rev()
        .map(|x| match x {
            SlotByte::Invalid => '?',
            SlotByte::Misc => 'm',
            SlotByte::Zero => '0',
            SlotByte::Spill => 'r',
        })
        .collect()
}

/// A frame's initialized registers and stack slots: `R1=ctx() R10=fp0 fp-8=mmmmmmmm`.
pub fn fmt_frame(f: &Frame, maps: &[MapInfo]) -> String {
    let mut parts = Vec::new();
    for (i, r) in f.regs.iter().enumerate() {
        if r.ty != RegType::NotInit {
            parts.push(format!("R{i}={}", fmt_reg(r, maps)));
        }
    }
    for (spi, s) in f.stack.iter().enumerate() {
        if s.bytes.iter().all(|b| *b == SlotByte::Invalid) {
            continue;
        }
        let off = -8 * (spi as i64 + 1);
        if s.is_spill() {
            parts.push(format!("fp{off}={}", fmt_reg(&s.spill, maps)));
        } else {
            parts.push(format!("fp{off}={}", fmt_slot_bytes(&s.bytes)));
        }
    }
    parts.join(" ")
}

/// The whole state; caller frames are prefixed with their frame number.
pub fn fmt_state(st: &State, maps: &[MapInfo]) -> String {
    let mut out = String::new();
    let n = st.frames.len();
    for (i, f) in st.frames.iter().enumerate() {
        if n > 1 {
            let _ = write!(out, "{}frame{i}: ", if i > 0 { " " } else { "" });
        }
        out.push_str(&fmt_frame(f, maps));
    }
    if !st.refs.is_empty() {
        let ids: Vec<String> = st.refs.iter().map(|r| r.id.to_string()).collect();
        let _ = write!(out, " refs={}", ids.join(","));
    }
    out
}

impl Log {
    /// Appends `; text` to the last line, padded like the kernel's log.
    pub fn append_to_last(&mut self, text: &str) {
        if !self.enabled || !self.buf.ends_with('\n') {
            return;
        }
        self.buf.pop();
        let start = self.buf.rfind('\n').map_or(0, |i| i + 1);
        let len = self.buf.len() - start;
        if len < 38 {
            self.buf.push_str(&" ".repeat(38 - len));
        }
        self.buf.push_str("; ");
        self.buf.push_str(text);
        self.buf.push('\n');
    }
}

/// What the log needs of the state before an instruction to print what it changed.
pub struct Snapshot {
    pub depth: usize,
    pub regs: [Reg; 11],
    pub stack: Option<Vec<Slot>>,
}

impl Snapshot {
    /// The registers and stack slots of the current frame the instruction changed.
    pub fn changes(&self, after: &State, maps: &[MapInfo]) -> String {
        if self.depth != after.frames.len() {
            return fmt_state(after, maps);
        }
        let a = after.cur();
        let mut parts = Vec::new();
        for i in 0..11 {
            if a.regs[i] != self.regs[i] && a.regs[i].ty != RegType::NotInit {
                parts.push(format!("R{i}_w={}", fmt_reg(&a.regs[i], maps)));
            }
        }
        if let Some(before) = &self.stack {
            for (spi, s) in a.stack.iter().enumerate() {
                if before.get(spi) != Some(s) && s.bytes.iter().any(|x| *x != SlotByte::Invalid) {
                    let off = -8 * (spi as i64 + 1);
                    if s.is_spill() {
                        parts.push(format!("fp{off}_w={}", fmt_reg(&s.spill, maps)));
                    } else {
                        parts.push(format!("fp{off}_w={}", fmt_slot_bytes(&s.bytes)));
                    }
                }
            }
        }
        parts.join(" ")
    }
}
