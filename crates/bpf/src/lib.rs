//! # bpfvfs-bpf
//!
//! BPF objects on top of the VFS: maps (one file per type under `maps/`), programs and links
//! with Linux's reference and id semantics, bpffs, and [`Bpf`], the bpf(2)-equivalent API.
//! Depends on the VFS; the VFS does not know this crate exists.

pub mod bench;
pub mod bpffs;
pub mod expose;
pub mod map;
pub mod maps;
pub mod object;
pub mod pin_outside;
pub mod prog;
pub mod storage_api;
pub mod sys;
pub mod uapi;
pub mod value;

pub use map::{Map, MapDef, MapOps};
pub use object::{BpfObject, ObjKind, ObjStats, Registry};
pub use prog::{Link, LinkDetails, Prog, ProgInfo, SeqSource};
pub use sys::{Access, Bpf, Handle, ObjInfo};
pub use uapi::{MapType, ProgType};
