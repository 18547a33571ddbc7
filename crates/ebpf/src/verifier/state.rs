//! Verifier states: call frames with registers and stack slots, acquired references, the held
//! spin lock; and the subsumption test used for pruning.

use super::cfg::{Cfg, RegSet};
use super::reg::{Reg, RegType};

/// What a stack byte holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SlotByte {
    /// Never written.
    Invalid,
    /// Some scalar data.
    Misc,
    /// Known zero.
    Zero,
    /// Part of a spilled register (the whole 8-byte slot).
    Spill,
}

/// One 8-byte stack slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub bytes: [SlotByte; 8],
    /// The spilled register when every byte is `Spill`.
    pub spill: Reg,
}

impl Slot {
    pub fn invalid() -> Slot {
        Slot {
            bytes: [SlotByte::Invalid; 8],
            spill: Reg::not_init(),
        }
    }

    pub fn is_spill(&self) -> bool {
        self.bytes[0] == SlotByte::Spill
    }

    /// Turns a spill into plain scalar bytes (used when part of it is overwritten).
    pub fn scrub_spill(&mut self) {
        if self.is_spill() {
            let zero = self.spill.is_null();
            for b in &mut self.bytes {
                *b = if zero { SlotByte::Zero } else { SlotByte::Misc };
            }
            self.spill = Reg::not_init();
        }
    }
}

/// A callback frame's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackInfo {
    pub ret_min: i64,
    pub ret_max: i64,
}

/// One call frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub regs: [Reg; 11],
    /// `stack[i]` covers offsets `[-(i+1)*8, -i*8)`.
    pub stack: Vec<Slot>,
    /// The call instruction in the caller (`usize::MAX` for the main frame).
    pub callsite: usize,
    pub subprog: usize,
    pub callback: Option<CallbackInfo>,
    /// How many times a callback called from this frame has been re-simulated (Linux's
    /// `callback_unroll_depth`): states of different iterations are never taken for an
    /// infinite loop of each other.
    pub cb_unroll: u32,
}

impl Frame {
    pub fn new(frameno: u8, callsite: usize, subprog: usize) -> Frame {
        let mut regs: [Reg; 11] = Default::default();
        let mut fp = Reg::ptr(RegType::Stack);
        fp.frame = frameno;
        regs[10] = fp;
        Frame {
            regs,
            stack: Vec::new(),
            callsite,
            subprog,
            callback: None,
            cb_unroll: 0,
        }
    }

    /// The slot covering byte offset `off` (negative), growing the stack as needed.
    pub fn slot_mut(&mut self, off: i64) -> &mut Slot {
        let spi = ((-off - 1) / 8) as usize;
        if self.stack.len() <= spi {
            self.stack.resize(spi + 1, Slot::invalid());
        }
        &mut self.stack[spi]
    }

    pub fn slot(&self, off: i64) -> Option<&Slot> {
        let spi = ((-off - 1) / 8) as usize;
        self.stack.get(spi)
    }

    /// State of the byte at `off` (negative).
    pub fn byte(&self, off: i64) -> SlotByte {
        let spi = ((-off - 1) / 8) as usize;
        let idx = off.rem_euclid(8);
        self.stack
            .get(spi)
            .map_or(SlotByte::Invalid, |s| s.bytes[idx as usize])
    }
}

/// An acquired reference that must be released before exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefState {
    pub id: u32,
    pub insn: usize,
    pub frame: usize,
}

/// A whole verifier state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub frames: Vec<Frame>,
    pub refs: Vec<RefState>,
    /// Held spin lock: (map index, pointer id).
    pub lock: Option<(u32, u32)>,
}

impl State {
    pub fn cur(&self) -> &Frame {
        self.frames.last().expect("a frame")
    }

    pub fn cur_mut(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a frame")
    }

    pub fn regs(&self) -> &[Reg; 11] {
        &self.cur().regs
    }

    pub fn regs_mut(&mut self) -> &mut [Reg; 11] {
        &mut self.cur_mut().regs
    }

    /// Applies `f` to every register and spilled register of every frame.
    pub fn for_each_reg(&mut self, mut f: impl FnMut(&mut Reg)) {
        for fr in &mut self.frames {
            for r in fr.regs.iter_mut() {
                f(r);
            }
            for s in fr.stack.iter_mut() {
                if s.is_spill() {
                    f(&mut s.spill);
                }
            }
        }
    }
}

/// Consistent renaming of ids between an old and a current state.
#[derive(Default)]
pub struct IdMap {
    pairs: Vec<(u32, u32)>,
}

impl IdMap {
    pub fn check(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 {
            return true;
        }
        if cur == 0 {
            return false;
        }
        for &(o, c) in &self.pairs {
            if o == old || c == cur {
                return o == old && c == cur;
            }
        }
        self.pairs.push((old, cur));
        true
    }
}

/// `old` (whose exploration is complete and safe) covers every behaviour of `cur`.
pub fn regsafe(old: &Reg, cur: &Reg, ids: &mut IdMap) -> bool {
    if old.ty == RegType::NotInit {
        return true;
    }
    if cur.ty != old.ty {
        return false;
    }
    if old.ty == RegType::Scalar {
        return old.range_within(cur) && ids.check(old.id, cur.id);
    }
    if old.ty.is_pkt() {
        // At least the old proven range (what was safe to access stays safe); the markers
        // of a failed bounds check decide branches, so they must match exactly. Id 0 is the
        // family of constant offsets from the packet's start: it must map to itself.
        let range_ok = if old.range < 0 || cur.range < 0 {
            old.range == cur.range
        } else {
            old.range <= cur.range
        };
        if !range_ok || (old.id == 0) != (cur.id == 0) {
            return false;
        }
    }
    old.off == cur.off
        && old.aux == cur.aux
        && old.mem_size == cur.mem_size
        && old.frame == cur.frame
        && old.rdonly == cur.rdonly
        && old.range_within(cur)
        && ids.check(old.id, cur.id)
        && ids.check(old.ref_id, cur.ref_id)
}

fn stack_safe(old: &Frame, cur: &Frame, ids: &mut IdMap) -> bool {
    for (spi, os) in old.stack.iter().enumerate() {
        let inv = Slot::invalid();
        let cs = cur.stack.get(spi).unwrap_or(&inv);
        if os.is_spill() {
            if os.spill.ty == RegType::NotInit {
                continue;
            }
            if !cs.is_spill() {
                // A spilled scalar covers plain data only if it is a fully unknown scalar.
                let unknown = os.spill.ty == RegType::Scalar
                    && os.spill.range_within(&Reg::unknown())
                    && os.spill.id == 0;
                let all_init = cs.bytes.iter().all(|b| *b != SlotByte::Invalid);
                let all_zero = cs.bytes.iter().all(|b| *b == SlotByte::Zero);
                if (unknown && all_init)
                    || (all_zero && os.spill.range_within(&Reg::konst(0)) && os.spill.id == 0)
                {
                    continue;
                }
                return false;
            }
            if !regsafe(&os.spill, &cs.spill, ids) {
                return false;
            }
            continue;
        }
        for k in 0..8 {
            let ok = match os.bytes[k] {
                SlotByte::Invalid => true,
                SlotByte::Misc => match cs.bytes[k] {
                    SlotByte::Misc | SlotByte::Zero => true,
                    SlotByte::Spill => cs.spill.ty == RegType::Scalar,
                    SlotByte::Invalid => false,
                },
                SlotByte::Zero => match cs.bytes[k] {
                    SlotByte::Zero => true,
                    SlotByte::Spill => cs.spill.is_null(),
                    _ => false,
                },
                SlotByte::Spill => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Whether `old` subsumes `cur` at instruction `insn` (registers dead there ignored).
pub fn subsumes(old: &State, cur: &State, cfg: &Cfg, insn: usize) -> bool {
    if old.frames.len() != cur.frames.len() || old.refs.len() != cur.refs.len() {
        return false;
    }
    let mut ids = IdMap::default();
    let top = old.frames.len() - 1;
    for (i, (of, cf)) in old.frames.iter().zip(&cur.frames).enumerate() {
        if of.callsite != cf.callsite || of.subprog != cf.subprog || of.callback != cf.callback {
            return false;
        }
        let live: RegSet = if i == top {
            cfg.live_in[insn]
        } else {
            let callee = &old.frames[i + 1];
            cfg.caller_live(callee.callsite, callee.callback.is_some())
        };
        for r in 0..11 {
            if live & (1 << r) != 0 && !regsafe(&of.regs[r], &cf.regs[r], &mut ids) {
                return false;
            }
        }
        if !stack_safe(of, cf, &mut ids) {
            return false;
        }
    }
    for (o, c) in old.refs.iter().zip(&cur.refs) {
        if !ids.check(o.id, c.id) {
            return false;
        }
    }
    match (old.lock, cur.lock) {
        (None, None) => true,
        (Some((om, oi)), Some((cm, ci))) => om == cm && ids.check(oi, ci),
        _ => false,
    }
}

/// Over-approximates `cur` so that the loop it is in converges: scalars (in registers and
/// spills) that differ from `old`'s become unknown, known-zero bytes that differ become data.
pub fn widen(old: &State, cur: &mut State) {
    if old.frames.len() != cur.frames.len() {
        return;
    }
    for (of, cf) in old.frames.iter().zip(cur.frames.iter_mut()) {
        for (o, c) in of.regs.iter().zip(cf.regs.iter_mut()) {
            if o.ty == RegType::Scalar && c.ty == RegType::Scalar && o != c {
                *c = Reg::unknown();
            }
        }
        for (spi, cs) in cf.stack.iter_mut().enumerate() {
            let Some(os) = of.stack.get(spi) else {
                continue;
            };
            if os.is_spill() && cs.is_spill() {
                if os.spill.ty == RegType::Scalar
                    && cs.spill.ty == RegType::Scalar
                    && os.spill != cs.spill
                {
                    cs.spill = Reg::unknown();
                }
            } else if cs.is_spill() {
                if cs.spill.ty == RegType::Scalar
                    && os.bytes.iter().all(|b| *b != SlotByte::Invalid)
                {
                    cs.bytes = [SlotByte::Misc; 8];
                    cs.spill = Reg::not_init();
                }
            } else {
                for k in 0..8 {
                    if cs.bytes[k] == SlotByte::Zero && os.bytes[k] != SlotByte::Zero {
                        cs.bytes[k] = SlotByte::Misc;
                    }
                }
            }
        }
    }
}
