//! Abstract register values: a type, and for scalars (or the variable part of a pointer's
//! offset) a tristate number plus unsigned and signed 64-bit bounds, kept consistent with each
//! other after every operation. Transfer functions for ALU operations and the refinement of
//! bounds by conditional jumps live here.

use super::tnum::Tnum;
use crate::insn::{AluOp, JmpCond};

/// What a register (or spilled stack slot) holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RegType {
    /// Never written on this path: reading it is an error.
    NotInit,
    Scalar,
    /// The program's context (`r1` at entry).
    Ctx,
    /// A pointer into a stack frame (`frame` says which).
    Stack,
    /// A pointer into the value of map `aux`.
    MapValue,
    MapValueOrNull,
    /// The map `aux` itself (`lddw rX, map[fd]`).
    MapPtr,
    /// Memory of `mem_size` bytes returned by a helper (ring-buffer record, ...).
    Mem,
    MemOrNull,
    /// A pointer to a modelled kernel struct (`aux` = index in the program type's struct table).
    BtfId,
    BtfIdOrNull,
    /// A subprogram (`aux` = first instruction), for callbacks.
    Func,
    /// A pointer into the packet data (`PTR_TO_PACKET`): `off` and `var` from the start of
    /// the data, `id` the family of pointers with the same variable part, `range` the bytes
    /// from that family's base proven to lie before the packet's end.
    Packet,
    /// A pointer into the metadata in front of the data (`PTR_TO_PACKET_META`); its end is
    /// the data pointer.
    PacketMeta,
    /// One past the end of the packet data (`PTR_TO_PACKET_END`): only compared, never
    /// dereferenced or moved.
    PacketEnd,
}

impl RegType {
    pub fn is_ptr(self) -> bool {
        !matches!(self, RegType::NotInit | RegType::Scalar)
    }

    /// `PTR_TO_PACKET` or `PTR_TO_PACKET_META`: pointers with a proven range.
    pub fn is_pkt(self) -> bool {
        matches!(self, RegType::Packet | RegType::PacketMeta)
    }

    /// Any of the three packet pointer types.
    pub fn is_pkt_any(self) -> bool {
        matches!(
            self,
            RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
        )
    }

    pub fn maybe_null(self) -> bool {
        matches!(
            self,
            RegType::MapValueOrNull | RegType::MemOrNull | RegType::BtfIdOrNull
        )
    }

    pub fn non_null(self) -> RegType {
        match self {
            RegType::MapValueOrNull => RegType::MapValue,
            RegType::MemOrNull => RegType::Mem,
            RegType::BtfIdOrNull => RegType::BtfId,
            t => t,
        }
    }

    /// The kernel's name (`reg_type_str`).
    pub fn name(self) -> &'static str {
        match self {
            RegType::NotInit => "?",
            RegType::Scalar => "scalar",
            RegType::Ctx => "ctx",
            RegType::Stack => "fp",
            RegType::MapValue => "map_value",
            RegType::MapValueOrNull => "map_value_or_null",
            RegType::MapPtr => "map_ptr",
            RegType::Mem => "mem",
            RegType::MemOrNull => "mem_or_null",
            RegType::BtfId => "ptr_",
            RegType::BtfIdOrNull => "ptr_or_null_",
            RegType::Func => "func",
            RegType::Packet => "pkt",
            RegType::PacketMeta => "pkt_meta",
            RegType::PacketEnd => "pkt_end",
        }
    }
}

/// An abstract register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reg {
    pub ty: RegType,
    /// Fixed offset of a pointer.
    pub off: i32,
    /// Scalar value, or variable offset of a pointer.
    pub var: Tnum,
    pub umin: u64,
    pub umax: u64,
    pub smin: i64,
    pub smax: i64,
    /// Null-check id of a maybe-null pointer, or link id of scalars copied from each other.
    pub id: u32,
    /// Acquired reference this pointer carries (ring-buffer record).
    pub ref_id: u32,
    /// Map index / struct index / subprogram start, by type.
    pub aux: u32,
    /// Size of `Mem` memory.
    pub mem_size: u32,
    /// Frame of a `Stack` pointer.
    pub frame: u8,
    /// `Mem` that must not be written.
    pub rdonly: bool,
    /// Packet pointers: bytes `[0, range)` from the base of the pointer's family are inside
    /// the packet; or [`AT_PKT_END`] / [`BEYOND_PKT_END`] after a failed bounds check.
    pub range: i32,
}

/// `range` of a packet pointer known to be at or past the packet's end (`ptr >= end`).
pub const AT_PKT_END: i32 = -1;
/// `range` of a packet pointer known to be past the packet's end (`ptr > end`).
pub const BEYOND_PKT_END: i32 = -2;
/// Largest offset from a packet's start the range logic reasons about (`MAX_PACKET_OFF`).
pub const MAX_PACKET_OFF: u64 = 0xffff;

impl Default for Reg {
    fn default() -> Self {
        Reg::not_init()
    }
}

impl Reg {
    pub const fn not_init() -> Reg {
        Reg {
            ty: RegType::NotInit,
            off: 0,
            var: Tnum::UNKNOWN,
            umin: 0,
            umax: u64::MAX,
            smin: i64::MIN,
            smax: i64::MAX,
            id: 0,
            ref_id: 0,
            aux: 0,
            mem_size: 0,
            frame: 0,
            rdonly: false,
            range: 0,
        }
    }

    pub fn unknown() -> Reg {
        Reg {
            ty: RegType::Scalar,
            ..Reg::not_init()
        }
    }

    pub fn konst(v: u64) -> Reg {
        let mut r = Reg::unknown();
        r.set_const(v);
        r
    }

    /// An unknown scalar known to lie in `[lo, hi]` (unsigned).
    pub fn urange(lo: u64, hi: u64) -> Reg {
        let mut r = Reg::unknown();
        r.umin = lo;
        r.umax = hi;
        r.sync();
        r
    }

    /// A pointer of type `ty` with zero offset.
    pub fn ptr(ty: RegType) -> Reg {
        let mut r = Reg::konst(0);
        r.ty = ty;
        r
    }

    pub fn set_const(&mut self, v: u64) {
        self.var = Tnum::konst(v);
        self.umin = v;
        self.umax = v;
        self.smin = v as i64;
        self.smax = v as i64;
    }

    pub fn set_unknown_bounds(&mut self) {
        self.var = Tnum::UNKNOWN;
        self.umin = 0;
        self.umax = u64::MAX;
        self.smin = i64::MIN;
        self.smax = i64::MAX;
    }

    pub fn is_scalar(&self) -> bool {
        self.ty == RegType::Scalar
    }

    pub fn is_const(&self) -> bool {
        self.var.is_const()
    }

    pub fn const_value(&self) -> Option<u64> {
        self.var.is_const().then_some(self.var.value)
    }

    pub fn is_null(&self) -> bool {
        self.ty == RegType::Scalar && self.var.equals_const(0)
    }

    /// The bounds describe no value (an infeasible branch).
    pub fn is_empty(&self) -> bool {
        self.umin > self.umax || self.smin > self.smax || self.var.value & self.var.mask != 0
    }

    /// Brings tnum, unsigned and signed bounds into agreement. Returns `false` if they
    /// contradict each other (no value fits).
    pub fn sync(&mut self) -> bool {
        for _ in 0..3 {
            // From the tnum.
            self.umin = self.umin.max(self.var.umin());
            self.umax = self.umax.min(self.var.umax());
            self.smin = self.smin.max(self.var.smin());
            self.smax = self.smax.min(self.var.smax());
            // Signed range that does not cross zero is also an unsigned range.
            if self.smin >= 0 || self.smax < 0 {
                self.umin = self.umin.max(self.smin as u64);
                self.umax = self.umax.min(self.smax as u64);
            }
            // Unsigned range that does not cross 2^63 is also a signed range.
            if (self.umin as i64) <= (self.umax as i64) && (self.umin >> 63) == (self.umax >> 63) {
                self.smin = self.smin.max(self.umin as i64);
                self.smax = self.smax.min(self.umax as i64);
            }
            if self.is_empty() {
                return false;
            }
            self.var = self.var.intersect(Tnum::range(self.umin, self.umax));
            if self.var.value & self.var.mask != 0 {
                return false;
            }
        }
        !self.is_empty()
    }

    /// The range and tnum of `self` include those of `cur` (scalar subsumption).
    pub fn range_within(&self, cur: &Reg) -> bool {
        self.umin <= cur.umin
            && cur.umax <= self.umax
            && self.smin <= cur.smin
            && cur.smax <= self.smax
            && self.var.contains(cur.var)
    }

    /// The low 32 bits as a view (unsigned range in u64, signed range in i64, tnum).
    pub fn view32(&self) -> View {
        let sub = self.var.subreg();
        let mut umin = sub.umin();
        let mut umax = sub.umax();
        if self.umax <= u32::MAX as u64 {
            umin = umin.max(self.umin);
            umax = umax.min(self.umax);
        } else if self.umin >> 32 == self.umax >> 32 {
            umin = umin.max(self.umin & 0xffff_ffff);
            umax = umax.min(self.umax & 0xffff_ffff);
        }
        if self.smin >> 32 == self.smax >> 32 {
            umin = umin.max(self.smin as u64 & 0xffff_ffff);
            umax = umax.min(self.smax as u64 & 0xffff_ffff);
        }
        let (mut smin, mut smax) = (i32::MIN as i64, i32::MAX as i64);
        if umin >> 31 == umax >> 31 {
            smin = umin as u32 as i32 as i64;
            smax = umax as u32 as i32 as i64;
        }
        if self.smin >= i32::MIN as i64 && self.smax <= i32::MAX as i64 {
            smin = smin.max(self.smin);
            smax = smax.min(self.smax);
        }
        View {
            umin,
            umax,
            smin,
            smax,
            var: sub,
        }
    }

    pub fn view64(&self) -> View {
        View {
            umin: self.umin,
            umax: self.umax,
            smin: self.smin,
            smax: self.smax,
            var: self.var,
        }
    }

    /// The zero-extended low 32 bits as a 64-bit scalar.
    pub fn zext32(&self) -> Reg {
        let v = self.view32();
        let mut r = Reg::unknown();
        r.var = v.var;
        r.umin = v.umin;
        r.umax = v.umax;
        r.sync();
        r
    }

    /// Truncates a 64-bit result to its zero-extended low 32 bits.
    fn trunc32(mut self) -> Reg {
        if self.umax > u32::MAX as u64 || self.umin > self.umax {
            self.var = self.var.subreg();
            self.umin = 0;
            self.umax = u32::MAX as u64;
            self.smin = 0;
            self.smax = u32::MAX as i64;
        } else {
            self.smin = self.umin as i64;
            self.smax = self.umax as i64;
        }
        self.sync();
        self
    }
}

/// Bounds of a 64-bit value or of a 32-bit subregister.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub umin: u64,
    pub umax: u64,
    pub smin: i64,
    pub smax: i64,
    pub var: Tnum,
}

impl View {
    pub fn konst(v: u64, bits32: bool) -> View {
        if bits32 {
            let v = v & 0xffff_ffff;
            View {
                umin: v,
                umax: v,
                smin: v as u32 as i32 as i64,
                smax: v as u32 as i32 as i64,
                var: Tnum::konst(v),
            }
        } else {
            View {
                umin: v,
                umax: v,
                smin: v as i64,
                smax: v as i64,
                var: Tnum::konst(v),
            }
        }
    }
}

/// Whether a conditional jump is always (`Some(true)`) or never (`Some(false)`) taken.
pub fn branch_taken(cond: JmpCond, a: &View, b: &View) -> Option<bool> {
    use JmpCond::*;
    let eq = || -> Option<bool> {
        if a.var.is_const() && b.var.is_const() {
            return Some(a.var.value == b.var.value);
        }
        if a.umin > b.umax || a.umax < b.umin || a.smin > b.smax || a.smax < b.smin {
            return Some(false);
        }
        let known = !(a.var.mask | b.var.mask);
        if (a.var.value ^ b.var.value) & known != 0 {
            return Some(false);
        }
        None
    };
    match cond {
        Eq => eq(),
        Ne => eq().map(|x| !x),
        Set => {
            if a.var.value & b.var.value != 0 {
                Some(true)
            } else if (a.var.value | a.var.mask) & (b.var.value | b.var.mask) == 0 {
                Some(false)
            } else {
                None
            }
        }
        Gt => tri(a.umin > b.umax, a.umax <= b.umin),
        Ge => tri(a.umin >= b.umax, a.umax < b.umin),
        Lt => tri(a.umax < b.umin, a.umin >= b.umax),
        Le => tri(a.umax <= b.umin, a.umin > b.umax),
        Sgt => tri(a.smin > b.smax, a.smax <= b.smin),
        Sge => tri(a.smin >= b.smax, a.smax < b.smin),
        Slt => tri(a.smax < b.smin, a.smin >= b.smax),
        Sle => tri(a.smax <= b.smin, a.smin > b.smax),
    }
}

fn tri(always: bool, never: bool) -> Option<bool> {
    if always {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    }
}

/// The condition that holds on the fall-through path (`None` for `jset`, whose negation is
/// not a comparison).
pub fn negate(cond: JmpCond) -> Option<JmpCond> {
    use JmpCond::*;
    Some(match cond {
        Eq => Ne,
        Ne => Eq,
        Gt => Le,
        Ge => Lt,
        Lt => Ge,
        Le => Gt,
        Sgt => Sle,
        Sge => Slt,
        Slt => Sge,
        Sle => Sgt,
        Set => return None,
    })
}

/// Narrows `a` and `b` (64-bit scalars) assuming `a cond b` holds. Returns `false` if the
/// assumption is infeasible.
pub fn refine(cond: JmpCond, a: &mut Reg, b: &mut Reg) -> bool {
    use JmpCond::*;
    match cond {
        Eq => {
            let var = a.var.intersect(b.var);
            let umin = a.umin.max(b.umin);
            let umax = a.umax.min(b.umax);
            let smin = a.smin.max(b.smin);
            let smax = a.smax.min(b.smax);
            for r in [&mut *a, &mut *b] {
                r.var = var;
                r.umin = umin;
                r.umax = umax;
                r.smin = smin;
                r.smax = smax;
            }
        }
        Ne => {
            if let Some(c) = b.const_value() {
                if !exclude(a, c) {
                    return false;
                }
            }
            if let Some(c) = a.const_value() {
                if !exclude(b, c) {
                    return false;
                }
            }
        }
        Lt => {
            if b.umax == 0 || a.umin == u64::MAX {
                return false;
            }
            a.umax = a.umax.min(b.umax - 1);
            b.umin = b.umin.max(a.umin + 1);
        }
        Le => {
            a.umax = a.umax.min(b.umax);
            b.umin = b.umin.max(a.umin);
        }
        Gt => return refine(Lt, b, a),
        Ge => return refine(Le, b, a),
        Slt => {
            if b.smax == i64::MIN || a.smin == i64::MAX {
                return false;
            }
            a.smax = a.smax.min(b.smax - 1);
            b.smin = b.smin.max(a.smin + 1);
        }
        Sle => {
            a.smax = a.smax.min(b.smax);
            b.smin = b.smin.max(a.smin);
        }
        Sgt => return refine(Slt, b, a),
        Sge => return refine(Sle, b, a),
        Set => {
            if let Some(c) = b.const_value() {
                if c.is_power_of_two() {
                    a.var = a.var.or(Tnum::konst(c));
                    a.var.mask &= !c;
                }
            }
        }
    }
    a.sync() && b.sync()
}

/// Removes the constant `c` from the ends of `x`'s ranges.
fn exclude(x: &mut Reg, c: u64) -> bool {
    if x.umin == c {
        if c == u64::MAX {
            return false;
        }
        x.umin += 1;
    }
    if x.umax == c {
        if c == 0 {
            return false;
        }
        x.umax -= 1;
    }
    if x.smin == c as i64 {
        if x.smin == i64::MAX {
            return false;
        }
        x.smin += 1;
    }
    if x.smax == c as i64 {
        if x.smax == i64::MIN {
            return false;
        }
        x.smax -= 1;
    }
    true
}

/// Narrows `a` assuming `a & b == 0` (the fall-through of `jset`).
pub fn refine_not_set(a: &mut Reg, b: &Reg) -> bool {
    if let Some(c) = b.const_value() {
        a.var = a.var.and(Tnum::konst(!c));
    }
    a.sync()
}

fn checked_range_add(a: &Reg, b: &Reg) -> (u64, u64, i64, i64) {
    let (umin, umax) = match (a.umin.checked_add(b.umin), a.umax.checked_add(b.umax)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (0, u64::MAX),
    };
    let (smin, smax) = match (a.smin.checked_add(b.smin), a.smax.checked_add(b.smax)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (i64::MIN, i64::MAX),
    };
    (umin, umax, smin, smax)
}

fn checked_range_sub(a: &Reg, b: &Reg) -> (u64, u64, i64, i64) {
    let (umin, umax) = if a.umin >= b.umax {
        (a.umin - b.umax, a.umax - b.umin)
    } else {
        (0, u64::MAX)
    };
    let (smin, smax) = match (a.smin.checked_sub(b.smax), a.smax.checked_sub(b.smin)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (i64::MIN, i64::MAX),
    };
    (umin, umax, smin, smax)
}

fn with_bounds(var: Tnum, (umin, umax, smin, smax): (u64, u64, i64, i64)) -> Reg {
    let mut r = Reg::unknown();
    r.var = var;
    r.umin = umin;
    r.umax = umax;
    r.smin = smin;
    r.smax = smax;
    r.sync();
    r
}

fn from_tnum(var: Tnum) -> Reg {
    let mut r = Reg::unknown();
    r.var = var;
    r.sync();
    r
}

/// Constant-folds an ALU operation with the interpreter's semantics.
pub fn fold(op: AluOp, a: u64, b: u64, w32: bool) -> u64 {
    if w32 {
        let (x, y) = (a as u32, b as u32);
        let r: u32 = match op {
            AluOp::Add => x.wrapping_add(y),
            AluOp::Sub => x.wrapping_sub(y),
            AluOp::Mul => x.wrapping_mul(y),
            AluOp::Div => x.checked_div(y).unwrap_or(0),
            AluOp::Mod => {
                if y == 0 {
                    x
                } else {
                    x % y
                }
            }
            AluOp::SDiv => {
                if y == 0 {
                    0
                } else {
                    (x as i32).wrapping_div(y as i32) as u32
                }
            }
            AluOp::SMod => {
                if y == 0 {
                    x
                } else {
                    (x as i32).wrapping_rem(y as i32) as u32
                }
            }
            AluOp::Or => x | y,
            AluOp::And => x & y,
            AluOp::Xor => x ^ y,
            AluOp::Lsh => x.wrapping_shl(y & 31),
            AluOp::Rsh => x.wrapping_shr(y & 31),
            AluOp::Arsh => ((x as i32).wrapping_shr(y & 31)) as u32,
            AluOp::Mov => y,
        };
        r as u64
    } else {
        match op {
            AluOp::Add => a.wrapping_add(b),
            AluOp::Sub => a.wrapping_sub(b),
            AluOp::Mul => a.wrapping_mul(b),
            AluOp::Div => a.checked_div(b).unwrap_or(0),
            AluOp::Mod => {
                if b == 0 {
                    a
                } else {
                    a % b
                }
            }
            AluOp::SDiv => {
                if b == 0 {
                    0
                } else {
                    (a as i64).wrapping_div(b as i64) as u64
                }
            }
            AluOp::SMod => {
                if b == 0 {
                    a
                } else {
                    (a as i64).wrapping_rem(b as i64) as u64
                }
            }
            AluOp::Or => a | b,
            AluOp::And => a & b,
            AluOp::Xor => a ^ b,
            AluOp::Lsh => a.wrapping_shl((b & 63) as u32),
            AluOp::Rsh => a.wrapping_shr((b & 63) as u32),
            AluOp::Arsh => ((a as i64).wrapping_shr((b & 63) as u32)) as u64,
            AluOp::Mov => b,
        }
    }
}

/// 64-bit scalar ALU transfer function.
pub fn alu64(op: AluOp, a: &Reg, b: &Reg) -> Reg {
    if let (Some(x), Some(y)) = (a.const_value(), b.const_value()) {
        return Reg::konst(fold(op, x, y, false));
    }
    match op {
        AluOp::Mov => {
            let mut r = b.clone();
            r.id = 0;
            r
        }
        AluOp::Add => with_bounds(a.var.add(b.var), checked_range_add(a, b)),
        AluOp::Sub => with_bounds(a.var.sub(b.var), checked_range_sub(a, b)),
        AluOp::Mul => {
            let umax = a.umax.checked_mul(b.umax);
            let u = match umax {
                Some(hi) => (a.umin * b.umin, hi),
                None => (0, u64::MAX),
            };
            let prods = [
                a.smin.checked_mul(b.smin),
                a.smin.checked_mul(b.smax),
                a.smax.checked_mul(b.smin),
                a.smax.checked_mul(b.smax),
            ];
            let s = if prods.iter().all(Option::is_some) {
                let v: Vec<i64> = prods.iter().map(|p| p.unwrap()).collect();
                (*v.iter().min().unwrap(), *v.iter().max().unwrap())
            } else {
                (i64::MIN, i64::MAX)
            };
            with_bounds(a.var.mul(b.var), (u.0, u.1, s.0, s.1))
        }
        // Like the kernel: no range tracking through division (constants aside).
        AluOp::Div | AluOp::Mod => Reg::unknown(),
        AluOp::SDiv | AluOp::SMod => Reg::unknown(),
        AluOp::And => {
            let var = a.var.and(b.var);
            with_bounds(var, (var.umin(), a.umax.min(b.umax), i64::MIN, i64::MAX))
        }
        AluOp::Or => {
            let var = a.var.or(b.var);
            with_bounds(var, (a.umin.max(b.umin), u64::MAX, i64::MIN, i64::MAX))
        }
        AluOp::Xor => from_tnum(a.var.xor(b.var)),
        AluOp::Lsh => {
            if b.umax >= 64 {
                return Reg::unknown();
            }
            let (lo, hi) = (b.umin as u32, b.umax as u32);
            let var = if lo == hi {
                a.var.lshift(lo)
            } else {
                Tnum::UNKNOWN
            };
            let u = if a.umax.leading_zeros() >= hi {
                (a.umin << lo, a.umax << hi)
            } else {
                (0, u64::MAX)
            };
            with_bounds(var, (u.0, u.1, i64::MIN, i64::MAX))
        }
        AluOp::Rsh => {
            if b.umax >= 64 {
                return Reg::unknown();
            }
            let (lo, hi) = (b.umin as u32, b.umax as u32);
            let var = if lo == hi {
                a.var.rshift(lo)
            } else {
                Tnum::UNKNOWN
            };
            with_bounds(var, (a.umin >> hi, a.umax >> lo, i64::MIN, i64::MAX))
        }
        AluOp::Arsh => {
            if b.umax >= 64 || b.umin != b.umax {
                return Reg::unknown();
            }
            let s = b.umin as u32;
            with_bounds(
                a.var.arshift(s, 64),
                (0, u64::MAX, a.smin >> s, a.smax >> s),
            )
        }
    }
}

/// 32-bit scalar ALU transfer function (result zero-extended).
pub fn alu32(op: AluOp, a: &Reg, b: &Reg) -> Reg {
    let (za, zb) = (a.zext32(), b.zext32());
    if let (Some(x), Some(y)) = (za.const_value(), zb.const_value()) {
        return Reg::konst(fold(op, x, y, true));
    }
    match op {
        AluOp::Mov => zb,
        AluOp::SDiv | AluOp::SMod | AluOp::Div | AluOp::Mod => Reg::urange(0, u32::MAX as u64),
        AluOp::Arsh => {
            if zb.umax >= 32 || !zb.is_const() {
                return Reg::urange(0, u32::MAX as u64);
            }
            from_tnum(za.var.arshift(zb.umin as u32, 32)).trunc32()
        }
        AluOp::Lsh | AluOp::Rsh if zb.umax >= 32 => Reg::urange(0, u32::MAX as u64),
        _ => alu64(op, &za, &zb).trunc32(),
    }
}

/// Sign-extending move of the low `bits` of `a` (`movsx`).
pub fn movsx(a: &Reg, bits: u8, w32: bool) -> Reg {
    if let Some(v) = a.const_value() {
        let x = match bits {
            8 => v as u8 as i8 as i64,
            16 => v as u16 as i16 as i64,
            _ => v as u32 as i32 as i64,
        } as u64;
        return Reg::konst(if w32 { x & 0xffff_ffff } else { x });
    }
    let half = 1u64 << (bits - 1);
    if a.umax < half {
        let mut r = a.clone();
        r.id = 0;
        return r;
    }
    if w32 {
        Reg::urange(0, u32::MAX as u64)
    } else {
        let mut r = Reg::unknown();
        r.smin = -(half as i64);
        r.smax = half as i64 - 1;
        r.sync();
        r
    }
}

/// Byte-order operations: `to_le` truncates, the others swap.
pub fn endian(a: &Reg, swap: bool, bits: u8) -> Reg {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    if let Some(v) = a.const_value() {
        let r = if !swap {
            v & mask
        } else {
            match bits {
                16 => (v as u16).swap_bytes() as u64,
                32 => (v as u32).swap_bytes() as u64,
                _ => v.swap_bytes(),
            }
        };
        return Reg::konst(r);
    }
    if !swap {
        if bits == 64 {
            let mut r = a.clone();
            r.id = 0;
            return r;
        }
        return alu64(AluOp::And, a, &Reg::konst(mask));
    }
    if bits == 64 {
        Reg::unknown()
    } else {
        Reg::urange(0, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_after_and_and_compare() {
        let r = alu64(AluOp::And, &Reg::unknown(), &Reg::konst(0xff));
        assert_eq!((r.umin, r.umax, r.smin, r.smax), (0, 255, 0, 255));
        let mut a = Reg::unknown();
        let mut b = Reg::konst(10);
        assert!(refine(JmpCond::Lt, &mut a, &mut b));
        assert_eq!((a.umin, a.umax), (0, 9));
        let r = alu64(AluOp::Mul, &a, &Reg::konst(8));
        assert_eq!((r.umin, r.umax), (0, 72));
        let r = alu32(AluOp::Add, &Reg::konst(0xffff_ffff), &Reg::konst(2));
        assert_eq!(r.const_value(), Some(1));
        let r = alu32(AluOp::Sub, &Reg::urange(0, 5), &Reg::konst(1));
        assert!(r.umax <= u32::MAX as u64);
    }

    #[test]
    fn branch_decisions() {
        let a = Reg::urange(0, 9).view64();
        assert_eq!(
            branch_taken(JmpCond::Lt, &a, &View::konst(10, false)),
            Some(true)
        );
        assert_eq!(
            branch_taken(JmpCond::Gt, &a, &View::konst(9, false)),
            Some(false)
        );
        assert_eq!(branch_taken(JmpCond::Eq, &a, &View::konst(3, false)), None);
        let mut s = Reg::unknown();
        let mut z = Reg::konst(0);
        assert!(refine(JmpCond::Sge, &mut s, &mut z));
        assert_eq!(s.smin, 0);
        assert_eq!(s.umax, i64::MAX as u64);
    }
}
