//! # The verifier
//!
//! Proves, before a program runs, what Linux's BPF verifier proves: every path terminates
//! within an instruction budget, no register or stack byte is read before it is written,
//! every memory access stays inside the object its pointer points to (context fields per
//! program type, the stack frame, map values, helper-returned memory), helpers are called
//! with arguments matching their prototypes and only where the program type allows them,
//! pointers do not leak, references (ring-buffer records) are released, and the exit value
//! lies in the program type's range.
//!
//! It is a path-sensitive abstract interpreter over the instruction stream, in the manner of
//! `kernel/bpf/verifier.c` (written from its documented behaviour; no code copied):
//!
//! - [`cfg`](mod@cfg): structural checks first — subprogram boundaries from call targets, jumps in
//!   range and inside their subprogram, no unreachable instruction, each subprogram ending
//!   in `exit` or `ja`, optionally no back-edge — then prune points and register liveness.
//! - [`reg`] / [`tnum`]: the abstract value of a register: a type (scalar, context, stack,
//!   map value, map value or null, map, memory, struct pointer, function) and, for scalars and
//!   pointer offsets, a tristate number plus unsigned/signed bounds.
//! - [`state`]: a verifier state is the stack of call frames (registers, stack slots with
//!   per-byte initialization and spilled registers), acquired references and the held lock.
//!   At prune points, states whose exploration finished are kept; a new state that one of
//!   them subsumes (same types, narrower ranges, dead registers ignored) is pruned. A state
//!   equal to one still being explored at a loop head is an infinite loop.
//! - [`check`]: the depth-first exploration of all paths, pushing the other side of every
//!   undecided branch, with the instruction budget (Linux's 1,000,000).
//! - [`progtype`] and [`protos`]: data tables of program types (context layout, allowed
//!   helpers, return range) and helper prototypes, both extensible by the caller.
//!
//! The engine knows nothing of the VFS: everything (program type, maps, prototypes) comes
//! from the caller in a [`VerifierEnv`].

pub mod cfg;
pub mod check;
pub mod log;
pub mod progtype;
pub mod protos;
pub mod reg;
pub mod state;
pub mod tnum;

pub use progtype::{
    CtxAccess, CtxConvertFn, CtxField, CtxLayout, FieldKind, HelperSet, PacketPtr, ProgTypeSpec,
    StructSpec,
};
pub use protos::{ArgKind, HelperProto, HelperProtos, RetKind};

use crate::insn::{Insn, MemSize};
use std::fmt;

/// Linux's limit on processed instructions (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const COMPLEXITY_LIMIT_INSNS: u64 = 1_000_000;
/// Stack size of one frame (`MAX_BPF_STACK`).
pub const MAX_BPF_STACK: i64 = 512;
/// Maximum call depth (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;

/// A map type, by Linux's `enum bpf_map_type` number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MapType(pub u32);

impl MapType {
    pub const HASH: MapType = MapType(1);
    pub const ARRAY: MapType = MapType(2);
    pub const PROG_ARRAY: MapType = MapType(3);
    pub const PERF_EVENT_ARRAY: MapType = MapType(4);
    pub const PERCPU_HASH: MapType = MapType(5);
    pub const PERCPU_ARRAY: MapType = MapType(6);
    pub const LRU_HASH: MapType = MapType(9);
    pub const LRU_PERCPU_HASH: MapType = MapType(10);
    pub const RINGBUF: MapType = MapType(27);
    pub const INODE_STORAGE: MapType = MapType(28);
    pub const TASK_STORAGE: MapType = MapType(29);
    pub const CGRP_STORAGE: MapType = MapType(32);

    /// Helpers restricted to this map type: these maps may be passed to no other helper.
    pub fn only_helpers(self) -> Option<&'static [u32]> {
        match self {
            MapType::RINGBUF => Some(&[130, 131, 134]),
            MapType::INODE_STORAGE => Some(&[145, 146]),
            MapType::TASK_STORAGE => Some(&[156, 157]),
            MapType::CGRP_STORAGE => Some(&[210, 211]),
            MapType::PROG_ARRAY => Some(&[12]),
            MapType::PERF_EVENT_ARRAY => Some(&[25, 22, 55]),
            _ => None,
        }
    }

    /// Whether `lddw rX, map[fd][0]+off` (direct value access) is allowed.
    pub fn direct_value_access(self) -> bool {
        self == MapType::ARRAY
    }
}

/// `BPF_F_RDONLY_PROG`: the program may not write the map.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// What the verifier knows of a map the program references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// The value `lddw rX, map[fd:N]` carries in `imm` to name this map
    /// (`map[idx:N]` names `maps[N]`).
    pub fd: i32,
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    /// Offset of a `struct bpf_spin_lock` in the value, if it has one.
    pub spin_lock_off: Option<u32>,
}

impl MapInfo {
    pub fn new(
        fd: i32,
        map_type: MapType,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> MapInfo {
        MapInfo {
            fd,
            name: format!("map{fd}"),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: 0,
            spin_lock_off: None,
        }
    }

    pub fn read_only(&self) -> bool {
        self.flags & BPF_F_RDONLY_PROG != 0
    }
}

/// Everything the verifier is told about the program's surroundings.
#[derive(Clone, Copy)]
pub struct VerifierEnv<'a> {
    pub prog_type: &'a ProgTypeSpec,
    pub maps: &'a [MapInfo],
    pub helper_protos: &'a HelperProtos,
    /// Budget of processed instructions (Linux: 1,000,000).
    pub max_insns: u64,
    /// Bounded loops allowed (Linux with `CAP_BPF`); if not, every back-edge is rejected.
    pub allow_loops: bool,
    /// Build the verifier log (the path to the error, or the whole exploration summary).
    pub log: bool,
}

impl<'a> VerifierEnv<'a> {
    pub fn new(
        prog_type: &'a ProgTypeSpec,
        maps: &'a [MapInfo],
        helper_protos: &'a HelperProtos,
    ) -> Self {
        VerifierEnv {
            prog_type,
            maps,
            helper_protos,
            max_insns: COMPLEXITY_LIMIT_INSNS,
            allow_loops: true,
            log: true,
        }
    }
}

/// What verification found out about an accepted program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedInfo {
    /// First instruction of each subprogram (the first is 0).
    pub subprog_starts: Vec<usize>,
    /// Stack depth in bytes of each subprogram.
    pub stack_depth: Vec<u32>,
    /// Combined stack depth of the deepest call chain.
    pub max_combined_stack: u32,
    /// Instructions processed (the complexity).
    pub processed_insns: u64,
    pub total_states: u64,
    pub peak_states: u64,
    pub max_states_per_insn: u64,
    /// Highest context byte accessed + 1 (what a syscall program's buffer must hold).
    pub max_ctx_offset: u32,
    /// Loads and stores whose memory operand is the context, by instruction index: what
    /// [`convert_ctx_accesses`] rewrites.
    pub ctx_access_insns: Vec<usize>,
    /// Fields of kernel structs (`ProgTypeSpec::structs`) the program reads, as
    /// (struct, field) names: a runtime need only build what is read.
    pub struct_reads: Vec<(String, String)>,
    /// Helper ids called.
    pub helpers_used: Vec<u32>,
    /// Highest byte + 1 reached through each buffer slot of the context
    /// (`FieldKind::Buf`: the kernel's max_rdonly_access / max_rdwr_access).
    pub max_buf_access: [u32; 2],
    /// The verifier log: the summary line `processed N insns (limit ...) ...`.
    pub log: String,
}

/// A rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierError {
    /// Instruction (slot) index where the program was rejected.
    pub insn_idx: usize,
    /// Source line of that instruction, when line info was given.
    pub line: Option<String>,
    /// The reason, worded like the kernel's verifier.
    pub message: String,
    /// The log of the rejected path, kernel-style, ending in `message`.
    pub log: String,
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.line {
            Some(l) => write!(f, "insn {} ({}): {}", self.insn_idx, l, self.message),
            None => write!(f, "insn {}: {}", self.insn_idx, self.message),
        }
    }
}

impl std::error::Error for VerifierError {}

/// Source-line lookup: instruction index → `"x = y; @ file.c:12"`.
pub type LineInfo<'a> = &'a dyn Fn(usize) -> Option<String>;

/// Verifies `insns` in `env`. `line_info` maps instruction indices to source lines for the
/// log and the error.
pub fn verify(
    insns: &[Insn],
    env: &VerifierEnv,
    line_info: Option<LineInfo<'_>>,
) -> Result<VerifiedInfo, VerifierError> {
    check::Verifier::run(insns, env, line_info)
}

/// Rewrites the context accesses of a verified program for the run-time context of its type
/// (Linux's `convert_ctx_accesses`): each load or store in [`VerifiedInfo::ctx_access_insns`]
/// gets the offset and size [`ProgTypeSpec::ctx_convert`] gives. Types whose program view is
/// the run-time layout (no `ctx_convert`) get their instructions back unchanged. Run only
/// the converted program: for XDP, the unconverted one would read 32 bits of a 64-bit
/// pointer (the engine's regions keep a checked run safe, but an unchecked run would not be).
pub fn convert_ctx_accesses(
    insns: &[Insn],
    spec: &ProgTypeSpec,
    info: &VerifiedInfo,
) -> Result<Vec<Insn>, String> {
    let mut out = insns.to_vec();
    let Some(convert) = spec.ctx_convert else {
        return Ok(out);
    };
    const CLASS_ST: u8 = 0x02;
    const CLASS_STX: u8 = 0x03;
    for &pc in &info.ctx_access_insns {
        let ins = out
            .get_mut(pc)
            .ok_or_else(|| format!("context access at insn {pc} is outside the program"))?;
        let size = match ins.code & 0x18 {
            0x00 => MemSize::W,
            0x08 => MemSize::H,
            0x10 => MemSize::B,
            _ => MemSize::DW,
        };
        let class = ins.code & 0x07;
        let write = class == CLASS_ST || class == CLASS_STX;
        let (off, new_size) = convert(ins.off, size, write).ok_or_else(|| {
            format!(
                "insn {pc}: context access off={} size={} has no run-time equivalent",
                ins.off,
                size.bytes()
            )
        })?;
        let size_bits = match new_size {
            MemSize::W => 0x00,
            MemSize::H => 0x08,
            MemSize::B => 0x10,
            MemSize::DW => 0x18,
        };
        ins.code = (ins.code & !0x18) | size_bits;
        ins.off = off;
    }
    Ok(out)
}
