//! # bpfvfs-ebpf
//!
//! The eBPF engine: bytes in, runnable programs out.
//!
//! - [`insn`]: the instruction encoding of RFC 9669 (all classes, `lddw`, sign-extending loads
//!   and moves, signed division, byte swaps, `gotol`, atomics, calls), a strict decoder with
//!   errors that name the slot and the reason, and a disassembler printing the kernel's
//!   verifier-log syntax.
//! - [`interp`]: preparation of a program into a compact internal form ([`Program`], one
//!   16-byte [`interp::Op`] per slot) and an interpreter for the whole ISA with Linux's
//!   semantics ([`Interpreter`]), in a checked mode (every memory access validated against
//!   registered [`Region`]s, typed [`ExecError`]s) and an unchecked mode for verified programs.
//! - [`helpers`]: the helper registry ([`Helpers`], Linux's helper numbers), the context
//!   helpers run in, the generic helpers (time, random, task info, `trace_printk`,
//!   `snprintf`, `loop`, spin locks, `probe_read`), and the map/ring-buffer helpers, which go
//!   through a caller-supplied [`MapAccess`].
//! - [`jit`] (x86-64): the same programs compiled to native code with dynasm-rs, in the same
//!   checked and unchecked modes, with the interpreter's errors, helpers and callbacks.
//! - [`pktctx`]: XDP and socket-filter contexts around a packet, built as Linux's
//!   `BPF_PROG_TEST_RUN` builds them (the run-time `xdp_buff` verified XDP programs are
//!   rewritten for, the `__sk_buff` with its hidden trailer), and the packet helpers' view of
//!   them.
//! - [`asm`] and [`conformance`]: an assembler for the conformance suite's syntax, its file
//!   format, a runner over an [`conformance::Engine`] (interpreter now, JIT later) and the
//!   suite's plugin protocol.
//!
//! What this crate must not do: know about the VFS, bpffs, bpf(2), object ids or the daemon.
//! Maps exist here only as opaque 64-bit handles behind [`MapAccess`]; pseudo `lddw`s (map fds,
//! map values, BTF ids) are resolved by a caller-supplied function at load time; helpers that
//! need the outside world are registered by other crates. It does not parse ELF or BTF (that
//! is `bpfvfs-ebpf-obj`). The verifier ([`verifier`]) proves a program safe against a
//! program-type table and helper prototypes the caller supplies; only verified programs may run
//! in the unchecked modes, everything else runs checked.

pub mod asm;
pub mod conformance;
pub mod helpers;
pub mod insn;
pub mod interp;
#[cfg(target_arch = "x86_64")]
pub mod jit;
pub mod memory;
pub mod pktctx;
pub mod verifier;

pub use helpers::{Env, HelperCtx, HelperError, HelperFn, Helpers, MapAccess, MemRef, TaskInfo};
pub use insn::{decode, disassemble, DecodeError, Insn, Instruction};
pub use interp::{ExecError, Interpreter, LoadError, LoadOptions, Program};
pub use memory::{Region, RegionKind};
