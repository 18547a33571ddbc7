//! Tristate numbers: a 64-bit value where each bit is known 0, known 1 or unknown.
//!
//! `value` holds the known-1 bits, `mask` the unknown bits (`value & mask == 0`). The
//! operations are the usual sound transfer functions for tristate arithmetic.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Tnum {
    pub value: u64,
    pub mask: u64,
}

#[allow(clippy::should_implement_trait)]
impl Tnum {
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    pub const fn konst(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// The smallest tnum containing every value of `[min, max]`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum {
            value: min & !delta,
            mask: delta,
        }
    }

    pub fn is_const(self) -> bool {
        self.mask == 0
    }

    pub fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// Smallest and largest unsigned members.
    pub fn umin(self) -> u64 {
        self.value
    }

    pub fn umax(self) -> u64 {
        self.value | self.mask
    }

    pub fn smin(self) -> i64 {
        if self.mask & (1 << 63) != 0 {
            (self.value | (self.mask & (1 << 63))) as i64
        } else {
            self.value as i64
        }
    }

    pub fn smax(self) -> i64 {
        if self.mask & (1 << 63) != 0 {
            ((self.value | self.mask) & !(1u64 << 63)) as i64
        } else {
            (self.value | self.mask) as i64
        }
    }

    pub fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum {
            value: sv & !mu,
            mask: mu,
        }
    }

    pub fn sub(self, b: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(b.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(b.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | b.mask;
        Tnum {
            value: dv & !mu,
            mask: mu,
        }
    }

    pub fn and(self, b: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = b.value | b.mask;
        let v = self.value & b.value;
        Tnum {
            value: v,
            mask: alpha & beta & !v,
        }
    }

    pub fn or(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask | b.mask;
        Tnum {
            value: v,
            mask: mu & !v,
        }
    }

    pub fn xor(self, b: Tnum) -> Tnum {
        let v = self.value ^ b.value;
        let mu = self.mask | b.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Multiplication by shift-and-add over the bits of `self`.
    pub fn mul(self, b: Tnum) -> Tnum {
        let mut a = self;
        let mut b = b;
        let acc_v = a.value.wrapping_mul(b.value);
        let mut acc_m = Tnum::konst(0);
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.mask,
                });
            } else if a.mask & 1 != 0 {
                acc_m = acc_m.add(Tnum {
                    value: 0,
                    mask: b.value | b.mask,
                });
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        Tnum::konst(acc_v).add(acc_m)
    }

    pub fn lshift(self, s: u32) -> Tnum {
        if s >= 64 {
            return Tnum::konst(0);
        }
        Tnum {
            value: self.value << s,
            mask: self.mask << s,
        }
    }

    pub fn rshift(self, s: u32) -> Tnum {
        if s >= 64 {
            return Tnum::konst(0);
        }
        Tnum {
            value: self.value >> s,
            mask: self.mask >> s,
        }
    }

    /// Arithmetic right shift of the low `bits` (32 or 64) bits.
    pub fn arshift(self, s: u32, bits: u32) -> Tnum {
        if bits == 32 {
            let v = ((self.value as u32 as i32) >> s) as u32 as u64;
            let m = ((self.mask as u32 as i32) >> s) as u32 as u64;
            Tnum { value: v, mask: m }
        } else {
            Tnum {
                value: ((self.value as i64) >> s) as u64,
                mask: ((self.mask as i64) >> s) as u64,
            }
        }
    }

    pub fn intersect(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Keeps the low `size` bytes.
    pub fn cast(self, size: u32) -> Tnum {
        if size >= 8 {
            return self;
        }
        let m = (1u64 << (size * 8)) - 1;
        Tnum {
            value: self.value & m,
            mask: self.mask & m,
        }
    }

    /// The low 32 bits.
    pub fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// Every member of `b` is a member of `self`.
    pub fn contains(self, b: Tnum) -> bool {
        if b.mask & !self.mask != 0 {
            return false;
        }
        b.value & !self.mask == self.value
    }

    /// `self` and `b` describe the same value.
    pub fn equals_const(self, v: u64) -> bool {
        self.is_const() && self.value == v
    }
}

impl fmt::Display for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}; {:#x})", self.value, self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_ops() {
        let r = Tnum::range(0, 7);
        assert_eq!(r, Tnum { value: 0, mask: 7 });
        assert_eq!(Tnum::konst(3).add(Tnum::konst(4)), Tnum::konst(7));
        assert!(Tnum::range(0, 255).contains(Tnum::konst(17)));
        assert!(!Tnum::konst(17).contains(Tnum::range(0, 255)));
        assert_eq!(Tnum::konst(6).mul(Tnum::konst(7)), Tnum::konst(42));
        let m = Tnum::range(0, 3).mul(Tnum::konst(4));
        assert!(m.contains(Tnum::konst(12)) && m.umax() <= 15);
        assert_eq!(
            Tnum::UNKNOWN.and(Tnum::konst(0xff)),
            Tnum {
                value: 0,
                mask: 0xff
            }
        );
        assert_eq!(
            Tnum::konst(-8i64 as u64).arshift(1, 64),
            Tnum::konst(-4i64 as u64)
        );
    }
}
