//! BTF-typed printing: what `bpf_seq_printf_btf` (helper 150) writes for a `struct btf_ptr
//! { void *ptr; __u32 type_id; __u32 flags; }` — the object at `ptr` shown as its type in
//! the kernel's BTF (for bpfvfs, [`crate::kernel_btf`], the BTF of include/bpfvfs/vmlinux.h),
//! in the format of the kernel's `btf_show` (kernel/bpf/btf.c), checked byte for byte
//! against the host kernel by tests/seq_printf_btf.rs:
//!
//! ```text
//! (struct path){
//!  .mnt = (struct vfsmount *)0x00000000c37712c7,
//!  .dentry = (struct dentry *)0x000000002c1a0b55,
//! }
//! ```
//!
//! One space of indent per level and a newline per line unless `BTF_F_COMPACT`; no member
//! or type names with `BTF_F_NONAME` (the braces stay); zero values (and nested objects
//! whose every value is zero) left out unless `BTF_F_ZERO` — except at the top level;
//! integers in decimal, bitfields and 128-bit integers in hex; an enum as its enumerator's
//! name, or the number if none matches; char arrays as characters up to the first NUL;
//! pointers as 16 hex digits, raw with `BTF_F_PTR_RAW`, otherwise hashed like the kernel's
//! `%p` (a per-process keyed hash truncated to 32 bits, as the kernel's per-boot one; NULL
//! and error values are printed raw). Kinds the kernel does not print (float, func, fwd)
//! show `<unsupported kind:N>`.
//!
//! The object is read as the kernel reads it: 32 bytes at a time, each chunk copied only if
//! the whole chunk is readable ([`ShowMem`]; the helper's view is the run's registered
//! regions), and a failed copy leaves out what needed it and sets the status the helper
//! returns (-EFAULT; -ERANGE for addresses in the NULL page, where the kernel refuses user
//! addresses). The status is the last copy's, as the kernel's.
//!
//! Kernel details kept on purpose, all visible in the output: the top-level object keeps a
//! typedef's name (`(__u64)5`: the kernel's vmlinux BTF has no resolved ids); an array whose
//! elements have no size of their own (pointers, arrays) repeats its first element; an enum
//! is read as 4 bytes whatever its size; a union's members are separated by `,` (the `|` of
//! compact mode only appears for an empty union); a name longer than 79 bytes is cut; a
//! DATASEC gets no closing brace. One modelling choice: a struct that bpfvfs's vmlinux.h only
//! declares (a BTF FWD, e.g. `struct vfsmount`) is named `struct vfsmount` as the kernel,
//! which defines it, names it.

use bpfvfs_ebpf_obj::btf::{BtfArray, BtfMember, BTF_INT_CHAR, BTF_INT_SIGNED};
use bpfvfs_ebpf_obj::{Btf, BtfKind, BtfType, TypeId};
use bpfvfs_vfs::Errno;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// `BTF_F_COMPACT`: no indentation or newlines.
pub const BTF_F_COMPACT: u64 = 1;
/// `BTF_F_NONAME`: no member or type names.
pub const BTF_F_NONAME: u64 = 2;
/// `BTF_F_PTR_RAW`: pointers as they are, not hashed.
pub const BTF_F_PTR_RAW: u64 = 4;
/// `BTF_F_ZERO`: zero values shown too.
pub const BTF_F_ZERO: u64 = 8;
/// Every flag a program may pass.
pub const BTF_F_ALL: u64 = BTF_F_COMPACT | BTF_F_NONAME | BTF_F_PTR_RAW | BTF_F_ZERO;
/// `sizeof(struct btf_ptr)`.
pub const BTF_PTR_SIZE: u32 = 16;

/// The kernel's safe-copy chunk.
const CHUNK: usize = 32;
/// The largest base value (a 128-bit integer): a chunk must still hold this much after the
/// value's start, or a new chunk is copied.
const BASE_MAX: u64 = 16;
/// Depth of pointer/array/typedef chains a type name is built through.
const NAME_CHAIN: usize = 10;
/// A type name is cut to this many bytes (the kernel's 80-byte buffer).
const NAME_MAX: usize = 79;
/// Addresses below this are the NULL page: -ERANGE, as the kernel's refusal of user addresses.
const NULL_PAGE: u64 = 4096;

/// Why nothing, or not everything, was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShowError {
    #[error("flags {0:#x} outside BTF_F_ALL")]
    BadFlags(u64),
    #[error("ptr_size {0} is not sizeof(struct btf_ptr) (16)")]
    BadPtrSize(u32),
    #[error("btf_ptr type_id 0")]
    NoTypeId,
    #[error("type id {0} is not in the kernel's BTF")]
    NoSuchType(u32),
    #[error("{0:#x} is in the NULL page")]
    NullPage(u64),
    #[error("{addr:#x}+{len} is not readable")]
    Fault { addr: u64, len: usize },
    #[error("type {0} has no size")]
    NoSize(TypeId),
}

impl ShowError {
    /// The errno the helper returns (negated).
    pub fn errno(&self) -> Errno {
        match self {
            ShowError::BadFlags(_) | ShowError::BadPtrSize(_) | ShowError::NoTypeId => {
                Errno::EINVAL
            }
            ShowError::NoSize(_) => Errno::EINVAL,
            ShowError::NoSuchType(_) => Errno::ENOENT,
            ShowError::NullPage(_) => Errno::ERANGE,
            ShowError::Fault { .. } => Errno::EFAULT,
        }
    }
}

/// Memory the shown object is read from.
pub trait ShowMem {
    /// Fill `buf` from `addr` if all of `[addr, addr + buf.len())` is readable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

/// A byte slice placed at address `base`, for showing values outside a program run.
pub struct SliceMem<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl ShowMem for SliceMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = addr.checked_sub(self.base) else {
            return false;
        };
        let Some(src) = usize::try_from(off)
            .ok()
            .and_then(|o| self.bytes.get(o..o.checked_add(buf.len())?))
        else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

/// The helper's checks before anything is read (the kernel's `bpf_btf_printf_prepare`):
/// flags, the btf_ptr size, the type id.
pub fn prepare(btf: &Btf, ptr_size: u32, type_id: u32, flags: u64) -> Result<(), ShowError> {
    check_call(ptr_size, flags)?;
    check_type(btf, type_id)
}

/// The checks that need no `struct btf_ptr`: flags within [`BTF_F_ALL`], `ptr_size` 16.
pub fn check_call(ptr_size: u32, flags: u64) -> Result<(), ShowError> {
    if flags & !BTF_F_ALL != 0 {
        return Err(ShowError::BadFlags(flags));
    }
    if ptr_size != BTF_PTR_SIZE {
        return Err(ShowError::BadPtrSize(ptr_size));
    }
    Ok(())
}

/// The btf_ptr's type id: not 0, and in `btf`.
pub fn check_type(btf: &Btf, type_id: u32) -> Result<(), ShowError> {
    if type_id == 0 {
        return Err(ShowError::NoTypeId);
    }
    // The kernel keeps the id in an s32: ids past i32::MAX are not found either.
    if type_id > i32::MAX as u32 || btf.type_by_id(type_id).is_err() {
        return Err(ShowError::NoSuchType(type_id));
    }
    Ok(())
}

/// Show the object at `addr` as type `type_id` of `btf`, handing each piece of output to
/// `out` (one call per line or value, as the kernel's one `seq_printf` per piece: a seq
/// buffer that overflows drops whole pieces). Returns the status: `Ok` or the last failed
/// copy's error. `flags` must be within [`BTF_F_ALL`] ([`prepare`]).
pub fn show(
    btf: &Btf,
    type_id: TypeId,
    addr: u64,
    flags: u64,
    mem: &dyn ShowMem,
    out: &mut dyn FnMut(&[u8]),
) -> Result<(), ShowError> {
    let mut s = Shower {
        btf,
        flags,
        mem,
        out,
        depth: 0,
        depth_to_show: 0,
        depth_check: 0,
        array_member: false,
        array_terminated: false,
        array_encoding: 0,
        type_id: 0,
        cur: None,
        member: None,
        status: Ok(()),
        head: 0,
        size: 0,
        win: 0,
        safe: [0; CHUNK],
        line: Vec::with_capacity(128),
    };
    s.show_type(type_id, type_id, addr, 0);
    s.status
}

/// Show into a `Vec` (tests, tools).
pub fn show_to_vec(
    btf: &Btf,
    type_id: TypeId,
    addr: u64,
    flags: u64,
    mem: &dyn ShowMem,
) -> (Vec<u8>, Result<(), ShowError>) {
    let mut v = Vec::new();
    let r = show(btf, type_id, addr, flags, mem, &mut |b| {
        v.extend_from_slice(b)
    });
    (v, r)
}

/// The kernel's `%p`: a keyed hash of the address, 32 bits, stable for the process; NULL
/// and error pointers (the last 4095 values) as they are.
pub fn hash_ptr(v: u64) -> u64 {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    if v == 0 || v >= (-4095i64) as u64 {
        return v;
    }
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write_u64(v);
    h.finish() & 0xffff_ffff
}

/// Is `c` printed as a character in a char array (the kernel's `isprint`, Latin-1 included)?
fn printable(c: u8) -> bool {
    (0x20..0x7f).contains(&c) || c >= 0xa0
}

/// The state of one show: where the output stands (depth, the zero-check pass), what is
/// being shown (its type, the member naming it), and the copied chunk of the object.
struct Shower<'a> {
    btf: &'a Btf,
    flags: u64,
    mem: &'a dyn ShowMem,
    out: &'a mut dyn FnMut(&[u8]),
    depth: u32,
    /// Deepest level a shown (non-zero) value was found at, during a zero check.
    depth_to_show: u32,
    /// Non-zero during a zero-check pass (output suppressed): the depth the pass started at
    /// plus one.
    depth_check: u32,
    array_member: bool,
    array_terminated: bool,
    array_encoding: u8,
    /// The id naming the value being shown (a typedef's, not the type it resolves to).
    type_id: TypeId,
    /// The type being shown (what the delimiter looks at), between start and end.
    cur: Option<TypeId>,
    member: Option<BtfMember>,
    status: Result<(), ShowError>,
    /// The top-level object: address and size.
    head: u64,
    size: u64,
    /// Address the copied chunk starts at, and the chunk.
    win: u64,
    safe: [u8; CHUNK],
    /// The line being built (reused).
    line: Vec<u8>,
}

impl Shower<'_> {
    fn ty(&self, id: TypeId) -> Option<&BtfType> {
        self.btf.type_by_id(id).ok()
    }

    fn compact(&self) -> bool {
        self.flags & BTF_F_COMPACT != 0
    }

    fn emit(&mut self, s: &[u8]) {
        if self.depth_check == 0 {
            (self.out)(s);
        }
    }

    /// Output is suppressed (a zero-check pass): lines need not be built.
    fn silent(&self) -> bool {
        self.depth_check != 0
    }

    /// Emit one piece built by `f` into the reused line buffer.
    fn emit_with(&mut self, f: impl FnOnce(&Self, &mut Vec<u8>)) {
        if self.silent() {
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        f(self, &mut line);
        (self.out)(&line);
        self.line = line;
    }

    fn indent(&self, out: &mut Vec<u8>) {
        if !self.compact() {
            out.resize(out.len() + self.depth.min(32) as usize, b' ');
        }
    }

    fn newline(&self) -> &'static [u8] {
        if self.compact() {
            b""
        } else {
            b"\n"
        }
    }

    fn delim(&self) -> &'static [u8] {
        if self.depth == 0 {
            return b"";
        }
        let union = self
            .cur
            .and_then(|id| self.ty(id))
            .is_some_and(|t| t.kind == BtfKind::Union);
        if self.compact() && union {
            b"|"
        } else {
            b","
        }
    }

    /// `[.member = ](type name)` plus the opening bracket of an aggregate, appended to
    /// `out`.
    fn name(&self, out: &mut Vec<u8>) {
        if self.array_member {
            return;
        }
        let btf = self.btf;
        let (mut id, member) = match self.member {
            Some(m) => (m.type_id, btf.string_at(m.name_off).unwrap_or("")),
            None => (self.type_id, ""),
        };
        let Some(mut t) = self.ty(id) else {
            return;
        };
        let (mut typedef_name, mut ptrs, mut arrays) = (None, 0usize, 0usize);
        let (mut saw_ptr, mut saw_array, mut saw_typedef) = (false, false, false);
        let mut parens = "";
        let mut i = 0;
        while i < NAME_CHAIN {
            match t.kind {
                BtfKind::Typedef => {
                    if typedef_name.is_none() {
                        typedef_name = Some(btf.string_at(t.name_off).unwrap_or(""));
                    }
                    saw_typedef = true;
                    id = t.size_or_type;
                }
                BtfKind::Array => {
                    saw_array = true;
                    parens = "[";
                    arrays = (arrays + 1).min(NAME_CHAIN);
                    id = t.array().map_or(0, |a| a.elem_type);
                }
                BtfKind::Ptr => {
                    saw_ptr = true;
                    ptrs = (ptrs + 1).min(NAME_CHAIN);
                    id = t.size_or_type;
                }
                _ => id = 0,
            }
            if id == 0 {
                break;
            }
            // Qualifiers (not typedefs) are skipped.
            let mut q = id;
            for _ in 0..=NAME_CHAIN * 4 {
                match self.ty(q) {
                    Some(qt) if qt.is_modifier() => q = qt.size_or_type,
                    _ => break,
                }
            }
            match self.ty(q) {
                Some(qt) => t = qt,
                None => return,
            }
            i += 1;
        }
        if i == NAME_CHAIN {
            return;
        }
        let name = typedef_name.unwrap_or_else(|| btf.string_at(t.name_off).unwrap_or(""));
        let mut prefix = match t.kind {
            BtfKind::Struct | BtfKind::Union => {
                if !saw_array {
                    parens = "{";
                }
                if t.kind == BtfKind::Struct {
                    "struct"
                } else {
                    "union"
                }
            }
            BtfKind::Enum | BtfKind::Enum64 => "enum",
            // Declared only in bpfvfs's vmlinux.h; the kernel has the struct itself.
            BtfKind::Fwd if t.kind_flag => "union",
            BtfKind::Fwd => "struct",
            _ => "",
        };
        if saw_ptr {
            parens = "";
        }
        if saw_typedef {
            prefix = "";
        }
        let start = out.len();
        if self.flags & BTF_F_NONAME != 0 {
            out.extend_from_slice(parens.as_bytes());
        } else {
            if !member.is_empty() {
                out.push(b'.');
                out.extend_from_slice(member.as_bytes());
                out.extend_from_slice(b" = ");
            }
            out.push(b'(');
            out.extend_from_slice(prefix.as_bytes());
            if !prefix.is_empty() && !name.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
            if ptrs > 0 {
                out.push(b' ');
            }
            out.resize(out.len() + ptrs, b'*');
            for _ in 0..arrays {
                out.extend_from_slice(b"[]");
            }
            out.push(b')');
            out.extend_from_slice(parens.as_bytes());
        }
        out.truncate(start + (out.len() - start).min(NAME_MAX));
    }

    /// One value: `indent name value delim newline`, left out when zero below the top level
    /// (unless BTF_F_ZERO); a shown value marks its depth for the zero check.
    fn value(&mut self, v: &[u8], zero: bool) {
        if !zero || self.flags & BTF_F_ZERO != 0 || self.depth == 0 {
            self.values(v);
        }
    }

    fn values(&mut self, v: &[u8]) {
        self.emit_with(|s, line| {
            s.indent(line);
            s.name(line);
            line.extend_from_slice(v);
            line.extend_from_slice(s.delim());
            line.extend_from_slice(s.newline());
        });
        self.depth_to_show = self.depth_to_show.max(self.depth);
    }

    /// Make the `min(size, 16)` bytes at `addr` available in the chunk, copying a new chunk
    /// (up to 32 bytes, not past the top-level object) if they are not in it; the offset
    /// of `addr` in the chunk, or `None` (status set) when the type has no size or the copy
    /// fails.
    fn safe(&mut self, t_id: TypeId, addr: u64) -> Option<usize> {
        let size = match self.btf.resolve_size(t_id) {
            Ok(s) => u64::from(s),
            Err(_) => {
                self.status = Err(ShowError::NoSize(t_id));
                return None;
            }
        };
        if self.depth == 0 {
            self.size = size;
            self.head = addr;
        } else {
            let need = size.min(BASE_MAX);
            if addr >= self.win && addr.wrapping_add(need) < self.win.wrapping_add(CHUNK as u64) {
                return Some((addr - self.win) as usize);
            }
        }
        // What is left of the object from `addr`, at most a chunk (the kernel's int
        // arithmetic: past the end is a copy that cannot succeed).
        let left = self.head as i128 + self.size as i128 - addr as i128;
        let len = left.min(CHUNK as i128);
        self.status = if addr < NULL_PAGE {
            Err(ShowError::NullPage(addr))
        } else if len < 0 {
            Err(ShowError::Fault { addr, len: CHUNK })
        } else if len == 0 || self.mem.read(addr, &mut self.safe[..len as usize]) {
            Ok(())
        } else {
            Err(ShowError::Fault {
                addr,
                len: len as usize,
            })
        };
        if self.status.is_ok() {
            self.win = addr;
            Some(0)
        } else {
            None
        }
    }

    /// `n` bytes of the chunk from `off` (zeros past its end).
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        for (i, x) in b.iter_mut().enumerate() {
            *x = self.safe.get(off + i).copied().unwrap_or(0);
        }
        b
    }

    fn start_type(&mut self, t_id: TypeId, type_id: TypeId, addr: u64) -> Option<usize> {
        self.cur = Some(t_id);
        self.type_id = type_id;
        self.safe(t_id, addr)
    }

    fn end_type(&mut self) {
        self.cur = None;
        self.type_id = 0;
    }

    fn start_aggr(&mut self, t_id: TypeId, type_id: TypeId, addr: u64) -> Option<usize> {
        let off = self.start_type(t_id, type_id, addr)?;
        self.emit_with(|s, line| {
            s.indent(line);
            s.name(line);
            line.extend_from_slice(s.newline());
        });
        self.depth += 1;
        Some(off)
    }

    fn end_aggr(&mut self, close: &[u8]) {
        self.depth = self.depth.saturating_sub(1);
        self.emit_with(|s, line| {
            s.indent(line);
            line.extend_from_slice(close);
            line.extend_from_slice(s.delim());
            line.extend_from_slice(s.newline());
        });
        self.end_type();
    }

    /// Show the value at `addr`: `t_id` is the type whose layout is used, `type_id` the one
    /// that names it (they differ below a typedef).
    fn show_type(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, bits: u8) {
        let Some(t) = self.ty(t_id) else {
            return;
        };
        match t.kind {
            BtfKind::Int => self.int(t_id, type_id, addr, bits),
            BtfKind::Ptr => self.ptr(t_id, type_id, addr),
            BtfKind::Array => self.zero_checked(t_id, type_id, addr, bits, Self::array),
            BtfKind::Struct | BtfKind::Union => {
                self.zero_checked(t_id, type_id, addr, bits, Self::structure)
            }
            BtfKind::Enum => self.enumeration(t_id, type_id, addr, false),
            BtfKind::Enum64 => self.enumeration(t_id, type_id, addr, true),
            BtfKind::Typedef
            | BtfKind::Volatile
            | BtfKind::Const
            | BtfKind::Restrict
            | BtfKind::TypeTag => {
                // The layout of what it resolves to, the name of the typedef (no resolved
                // ids in the kernel's vmlinux BTF, so the id is not replaced).
                if let Ok((rid, _)) = self.btf.skip_mods_and_typedefs(t_id) {
                    self.show_type(rid, type_id, addr, bits);
                }
            }
            BtfKind::Var => {
                if let Ok((rid, _)) = self.btf.skip_mods_and_typedefs(t.size_or_type) {
                    self.show_type(rid, rid, addr, bits);
                }
            }
            BtfKind::DataSec => self.datasec(t_id, type_id, addr, bits),
            k => {
                let s = format!("<unsupported kind:{}>", k as u32);
                self.emit(s.as_bytes());
            }
        }
    }

    fn int(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, bits: u8) {
        let Some(int) = self.ty(t_id).and_then(|t| t.int()) else {
            return;
        };
        let Some(off) = self.start_type(t_id, type_id, addr) else {
            return;
        };
        let signed = int.encoding & BTF_INT_SIGNED != 0;
        if bits != 0 || int.offset != 0 || int.bits % 8 != 0 {
            self.int_bits(off, bits, int.offset, int.bits);
            self.end_type();
            return;
        }
        match int.bits {
            128 => self.int128(u128::from_le_bytes(self.bytes(off))),
            64 => {
                let v = u64::from_le_bytes(self.bytes(off));
                let s = if signed {
                    (v as i64).to_string()
                } else {
                    v.to_string()
                };
                self.value(s.as_bytes(), v == 0);
            }
            32 => {
                let v = u32::from_le_bytes(self.bytes(off));
                let s = if signed {
                    (v as i32).to_string()
                } else {
                    v.to_string()
                };
                self.value(s.as_bytes(), v == 0);
            }
            16 => {
                let v = u16::from_le_bytes(self.bytes(off));
                let s = if signed {
                    (v as i16).to_string()
                } else {
                    v.to_string()
                };
                self.value(s.as_bytes(), v == 0);
            }
            8 => {
                let [c] = self.bytes::<1>(off);
                if self.array_encoding == BTF_INT_CHAR {
                    if self.array_terminated {
                        self.end_type();
                        return;
                    }
                    if c == 0 {
                        self.array_terminated = true;
                        self.end_type();
                        return;
                    }
                    if printable(c) {
                        self.value(&[b'\'', c, b'\''], false);
                        self.end_type();
                        return;
                    }
                }
                let s = if signed {
                    (c as i8).to_string()
                } else {
                    c.to_string()
                };
                self.value(s.as_bytes(), c == 0);
            }
            n => self.int_bits(off, 0, 0, n),
        }
        self.end_type();
    }

    /// An integer that is not a whole number of bytes at a byte boundary (bitfields too):
    /// `nr_bits` bits from bit `bits + int_off` of the chunk at `off`, in hex.
    fn int_bits(&mut self, off: usize, bits: u8, int_off: u8, nr_bits: u8) {
        let total = u32::from(bits) + u32::from(int_off);
        self.bitfield(off + (total / 8) as usize, (total % 8) as u8, nr_bits);
    }

    fn bitfield(&mut self, off: usize, bits: u8, nr_bits: u8) {
        let copy_bits = u32::from(nr_bits) + u32::from(bits);
        let copy_bytes = copy_bits.div_ceil(8).min(16) as usize;
        let raw: [u8; 16] = self.bytes(off);
        let mut b = [0u8; 16];
        b[..copy_bytes].copy_from_slice(&raw[..copy_bytes]);
        let v = u128::from_le_bytes(b);
        let v = v.checked_shl(128u32.saturating_sub(copy_bits)).unwrap_or(0);
        let v = v
            .checked_shr(128u32.saturating_sub(u32::from(nr_bits)))
            .unwrap_or(0);
        self.int128(v);
    }

    fn int128(&mut self, v: u128) {
        let (hi, lo) = ((v >> 64) as u64, v as u64);
        if hi == 0 {
            self.value(format!("0x{lo:x}").as_bytes(), lo == 0);
        } else {
            self.values(format!("0x{hi:x}{lo:016x}").as_bytes());
        }
    }

    fn ptr(&mut self, t_id: TypeId, type_id: TypeId, addr: u64) {
        let Some(off) = self.start_type(t_id, type_id, addr) else {
            return;
        };
        let v = u64::from_le_bytes(self.bytes(off));
        let shown = if self.flags & BTF_F_PTR_RAW != 0 {
            v
        } else {
            hash_ptr(v)
        };
        self.value(format!("0x{shown:016x}").as_bytes(), v == 0);
        self.end_type();
    }

    fn enumeration(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, wide: bool) {
        let Some(off) = self.start_type(t_id, type_id, addr) else {
            return;
        };
        let Some(t) = self.ty(t_id) else {
            return;
        };
        let signed = t.kind_flag;
        // An ENUM is read as an int whatever its size; its enumerators compare as 32 bits.
        let (v, width_mask) = if wide {
            (u64::from_le_bytes(self.bytes(off)), u64::MAX)
        } else {
            (u64::from(u32::from_le_bytes(self.bytes(off))), 0xffff_ffff)
        };
        let found = t
            .enum_values()
            .iter()
            .find(|e| e.value & width_mask == v)
            .map(|e| self.btf.string_at(e.name_off).unwrap_or("").to_string());
        if let Some(name) = found {
            // A name is never "zero": shown even for the value 0.
            self.value(name.as_bytes(), false);
        } else {
            let s = match (wide, signed) {
                (true, true) => (v as i64).to_string(),
                (false, true) => (v as u32 as i32).to_string(),
                _ => v.to_string(),
            };
            self.value(s.as_bytes(), v == 0);
        }
        self.end_type();
    }

    /// Arrays and structs below the top level without BTF_F_ZERO: a silent pass first
    /// finds whether anything non-zero would be shown; only then the shown pass. A pass
    /// already in progress further up decides for this one too.
    fn zero_checked(
        &mut self,
        t_id: TypeId,
        type_id: TypeId,
        addr: u64,
        bits: u8,
        body: fn(&mut Self, TypeId, TypeId, u64, u8),
    ) {
        let member = self.member;
        if self.depth > 0 && self.flags & BTF_F_ZERO == 0 {
            if self.depth_check == 0 {
                self.depth_check = self.depth + 1;
                self.depth_to_show = 0;
            }
            body(self, t_id, type_id, addr, bits);
            self.member = member;
            if self.depth_check != self.depth + 1 {
                return;
            }
            self.depth_check = 0;
            if self.depth_to_show <= self.depth {
                return;
            }
        }
        body(self, t_id, type_id, addr, bits);
    }

    fn array(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, bits: u8) {
        let Some(BtfArray {
            elem_type, nelems, ..
        }) = self.ty(t_id).and_then(|t| t.array())
        else {
            return;
        };
        let elem = self.btf.skip_mods_and_typedefs(elem_type).ok();
        // Only elements with a size of their own advance (pointers and arrays do not).
        let elem_size = elem.as_ref().map_or(0, |(_, et)| {
            if et.has_size() {
                u64::from(et.size_or_type)
            } else {
                0
            }
        });
        let mut encoding = 0;
        if let Some(int) = elem.as_ref().and_then(|(_, et)| et.int()) {
            // A one-byte element is shown as a character (BTF_INT_CHAR is never set).
            encoding = if elem_size == 1 {
                BTF_INT_CHAR
            } else {
                int.encoding
            };
        }
        self.array_encoding = encoding;
        self.array_terminated = false;
        if self.start_aggr(t_id, type_id, addr).is_none() {
            return;
        }
        if let Some((elem_id, _)) = elem {
            let mut a = addr;
            for _ in 0..nelems {
                self.array_member = true;
                self.member = None;
                self.show_type(elem_id, elem_type, a, bits);
                a = a.wrapping_add(elem_size);
                self.array_member = false;
                self.member = None;
                if self.array_terminated {
                    break;
                }
            }
        }
        self.array_encoding = 0;
        self.array_terminated = false;
        self.end_aggr(b"]");
    }

    fn structure(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, _bits: u8) {
        // Borrowed from the BTF, not from `self`.
        let btf = self.btf;
        let Ok(t) = btf.type_by_id(t_id) else {
            return;
        };
        let members = t.members();
        if self.start_aggr(t_id, type_id, addr).is_none() {
            return;
        }
        for &m in members {
            self.member = Some(m);
            let at = addr.wrapping_add(u64::from(m.bit_offset / 8));
            let bits = (m.bit_offset % 8) as u8;
            if m.bitfield_size != 0 {
                if let Some(off) = self.start_type(m.type_id, m.type_id, at) {
                    self.bitfield(off, bits, m.bitfield_size);
                }
                self.end_type();
            } else {
                self.show_type(m.type_id, m.type_id, at, bits);
            }
            self.member = None;
        }
        self.end_aggr(b"}");
    }

    fn datasec(&mut self, t_id: TypeId, type_id: TypeId, addr: u64, bits: u8) {
        let Some(t) = self.ty(t_id) else {
            return;
        };
        let (name, vars) = (
            self.btf.string_at(t.name_off).unwrap_or("").to_string(),
            t.datasec_vars().to_vec(),
        );
        if self.start_type(t_id, type_id, addr).is_none() {
            return;
        }
        self.value(format!("section (\"{name}\") = {{").as_bytes(), false);
        for (i, v) in vars.iter().enumerate() {
            if i > 0 {
                self.emit(b",");
            }
            self.show_type(
                v.type_id,
                v.type_id,
                addr.wrapping_add(u64::from(v.offset)),
                bits,
            );
        }
        self.end_type();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_hash_is_stable_32_bits_and_keeps_null_and_errors() {
        let a = hash_ptr(0x7f00_1234_5678);
        assert_eq!(a, hash_ptr(0x7f00_1234_5678));
        assert!(a <= 0xffff_ffff);
        assert_eq!(hash_ptr(0), 0);
        assert_eq!(hash_ptr((-22i64) as u64), (-22i64) as u64);
    }

    #[test]
    fn printable_is_the_kernels_isprint() {
        assert!(printable(b'a') && printable(b' ') && printable(b'~'));
        assert!(!printable(0x7f) && !printable(b'\n') && !printable(0x9f));
        assert!(printable(0xa0) && printable(0xe9));
    }

    #[test]
    fn slice_mem_reads_only_inside() {
        let bytes = [1u8, 2, 3, 4];
        let m = SliceMem {
            base: 0x1000,
            bytes: &bytes,
        };
        let mut b = [0u8; 2];
        assert!(m.read(0x1002, &mut b));
        assert_eq!(b, [3, 4]);
        assert!(!m.read(0x1003, &mut b));
        assert!(!m.read(0xfff, &mut b));
    }
}
