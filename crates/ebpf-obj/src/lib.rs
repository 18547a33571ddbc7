//! Parser for BPF ELF objects as `clang -O2 -g -target bpf` emits them against
//! libbpf's headers (`bpf_helpers.h`, `bpf_tracing.h`, `bpf_core_read.h`).
//!
//! Bytes in, [`LoadedObject`] out: no system calls, no files, no knowledge of how
//! programs run (in the spirit of `aya-obj`). The caller creates the maps,
//! patches their handles into the programs, optionally applies CO-RE
//! relocations against a target BTF, and hands the instructions to a verifier.
//!
//! # What is parsed
//!
//! * **Programs.** Every function symbol in an executable section other than
//!   `.text` is a program; the section name gives its [`ProgramKind`] and attach
//!   target ([`parse_section`]: `"lsm/file_open"` → `Lsm`, `"file_open"`).
//!   Several programs may share a section. Functions in `.text` (and any other
//!   function a program calls) are *sub-programs*: like libbpf, the loader appends
//!   each sub-program a program uses (transitively) after the program's own
//!   instructions and rewrites the pc-relative immediates of bpf-to-bpf calls
//!   (`call` with `src_reg = 1`) and of callback addresses (`lddw` with
//!   `src_reg = BPF_PSEUDO_FUNC`, e.g. for `bpf_loop`). Instructions are 8-byte
//!   [`Insn`] slots. [`ProgramSpec::functions`] tells where each function landed.
//! * **Maps.** BTF-defined maps in `.maps` (`__uint(type, ...)`,
//!   `__type(key, ...)`, `__uint(max_entries, ...)`, `__uint(map_flags, ...)`,
//!   `__uint(pinning, ...)`, `__array(values, ...)` with initial slots), legacy
//!   `struct bpf_map_def` maps in `maps`, and one single-entry `ARRAY` map per
//!   global data section (`.data`, `.data.*`, `.rodata`, `.rodata.*` such as
//!   `.rodata.str1.1`, `.bss`, `.bss.*`) with its initial bytes and libbpf's
//!   name ([`internal_map_name`]: `"globals.data"`, `".rodata.str1.1"`).
//! * **Relocations.** `R_BPF_64_64` on an `lddw` against a map symbol becomes a
//!   [`MapReloc`] of kind [`MapRelocKind::Map`]; against a global data symbol,
//!   [`MapRelocKind::Value`] with the byte offset (symbol value + addend).
//!   `R_BPF_64_32` on calls and `R_BPF_64_64` against code are resolved while
//!   linking. Relocations in `.maps` fill map-in-map and prog-array slots.
//!   [`ProgramSpec::patch_map_references`] writes the handles
//!   (`src_reg = BPF_PSEUDO_MAP_FD` / `BPF_PSEUDO_MAP_VALUE`).
//! * **BTF** ([`Btf`]): every kind (INT … ENUM64, DECL_TAG, TYPE_TAG), names,
//!   sizes through typedefs/modifiers, a C-like printer. DATASEC sizes and
//!   variable offsets, which clang leaves to the linker, are filled in from the
//!   ELF sections and symbols as libbpf does.
//! * **BTF.ext** ([`BtfExt`]): func_info, line_info (file, line, column and
//!   source text per instruction, see [`ProgramSpec::line_info_for`]) and CO-RE
//!   relocations, all re-based onto each linked program's instruction indices.
//! * **CO-RE** ([`apply_core_relocations`]): field byte offset/size/existence/
//!   signedness/bitfield shifts, type id/existence/size/matches and enum value
//!   relocations, resolved against a caller-supplied target [`Btf`] with
//!   libbpf's `___flavor` name rule and field-by-name matching.
//!
//! # Errors
//!
//! Malformed, truncated or unsupported input yields an [`ObjError`] naming the
//! section, relocation, instruction, map or type and the reason; the parser does
//! not panic on any input (it is fuzzed with truncations and bit flips of real
//! objects in the tests).
//!
//! # Example
//!
//! ```no_run
//! use bpfvfs_ebpf_obj::{LoadedObject, Btf, object_name_from_path};
//!
//! let path = "prog.bpf.o";
//! let bytes = std::fs::read(path).unwrap();
//! let mut obj = LoadedObject::parse(&bytes, &object_name_from_path(path)).unwrap();
//! // Create maps (obj.maps) somewhere, remembering a handle for each index...
//! let handles: Vec<u32> = (0..obj.maps.len() as u32).map(|i| 100 + i).collect();
//! if let Ok(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux") {
//!     obj.apply_core_relocations(&Btf::parse(&vmlinux).unwrap()).unwrap();
//! }
//! for prog in &mut obj.programs {
//!     prog.patch_map_references(|i| handles.get(i).copied()).unwrap();
//!     println!("{} ({:?} {:?}): {} insns", prog.name, prog.kind, prog.attach_target, prog.insns.len());
//! }
//! ```
//!
//! # Not supported
//!
//! Extern symbols (`__ksym` kfuncs/variables, `__kconfig`), `struct_ops` maps,
//! big-endian (`bpfeb`) objects and split (module) BTF are rejected with an
//! error; static linking of several objects is out of scope.

#![warn(missing_docs)]

pub mod btf;
pub mod core;
mod error;
pub mod insn;
pub mod maps;
mod obj;
mod section;

pub use crate::btf::{Btf, BtfExt, BtfKind, BtfType, TypeId};
pub use crate::core::{apply_core_relocations, CoreReloKind, CoreReloResult};
pub use crate::error::{BtfError, ObjError};
pub use crate::insn::Insn;
pub use crate::maps::{
    internal_map_name, DataSection, MapSlot, MapSource, MapSpec, Pinning, SlotTarget,
};
pub use crate::obj::{
    object_name_from_path, CoreRelo, FuncInfo, FunctionSpan, LineInfo, LoadedObject, MapReloc,
    MapRelocKind, ProgramSpec,
};
pub use crate::section::{parse_section, ProgramKind, SectionSpec};
