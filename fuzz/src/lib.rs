//! The bodies of the fuzz targets, kept in a library so that a crash input can be replayed
//! with an ordinary debugger-friendly binary and so that the seed writer (`src/bin/seeds.rs`)
//! encodes inputs with the same code the targets decode them with.
//!
//! - [`loader`]: bytes → `LoadedObject::parse` (or `Btf::parse` for non-ELF input), then every
//!   accessor, CO-RE against the object's own BTF, map patching and decoding of the linked
//!   programs. Oracle: no panic.
//! - [`verifier`]: a small header (program type, options, maps) and instruction slots →
//!   `verify`; an accepted program is run in the interpreter's *checked* mode over a context
//!   and map values laid out with unmapped guard bytes around them. Oracle: no panic, and an
//!   accepted program never makes an invalid memory access, a misaligned atomic, an invalid
//!   call, a context write outside its writable fields, or returns outside its type's range.
//! - [`equiv`]: a memory length byte, memory and program bytes → `jit::equiv::check_bytes`.
//!   Oracle: interpreter and JIT agree on everything observable.
//!
//! Each target's input format and oracle are described in docs/fuzzing.md.

pub mod equiv;
pub mod loader;
pub mod maps;
pub mod verifier;

/// xorshift64*: fills contexts and map values from an input's seed, so the same input always
/// runs the same way (libFuzzer needs reproducible crashes).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Mixed so that small seeds do not start with small outputs; never 0.
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Small values are what programs compare against, so a third of the bytes are 0 or 1
    /// instead of uniformly random.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            let v = self.next_u64();
            *b = match v % 3 {
                0 => (v >> 8) as u8 & 1,
                _ => (v >> 16) as u8,
            };
        }
    }
}
